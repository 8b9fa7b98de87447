//! The body of a RETR or TOP response: a stored message turned into POP3 multi-line data
//! (RFC 1939 §3): every line ends in CRLF, a line starting with `.` gets one more, and the
//! response ends with `.` CRLF. For TOP, only the header, the blank line and the first `n` body
//! lines go out.
//!
//! Sans-I/O and incremental: the session feeds the message file chunk by chunk and writes what
//! comes out, so a 100 MB message never sits in memory. State carried across chunks (line
//! start, a CR at the end of a chunk, header or body, lines left) makes the output independent
//! of where the chunks are cut.
//!
//! Security note: the output can never contain a lone `.` line before the end, whatever the
//! stored bytes are, so a message cannot end the response early and inject fake responses;
//! a bare LF becomes CRLF, which also keeps line counts honest for TOP.

/// Encodes one message as POP3 multi-line data.
#[derive(Debug)]
pub(crate) struct Stuffer {
    /// TOP's body lines still to send; `None` for RETR (everything).
    body_lines: Option<u64>,
    in_header: bool,
    at_line_start: bool,
    /// The current line holds nothing but CRs so far (a blank line ends the header).
    line_blank: bool,
    /// The last byte was a CR, so an LF after it (maybe in the next chunk) needs no CR.
    prev_cr: bool,
    done: bool,
}

impl Stuffer {
    /// For RETR: the whole message.
    pub(crate) fn retr() -> Self {
        Self::new(None)
    }

    /// For TOP: the header and `lines` lines of the body.
    pub(crate) fn top(lines: u64) -> Self {
        Self::new(Some(lines))
    }

    fn new(body_lines: Option<u64>) -> Self {
        Stuffer {
            body_lines,
            in_header: true,
            at_line_start: true,
            line_blank: true,
            prev_cr: false,
            done: false,
        }
    }

    /// Appends the encoding of the next chunk of the message to `out`. Returns false once TOP
    /// has everything it needs: the caller may stop reading.
    pub(crate) fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> bool {
        if self.done {
            return false;
        }
        out.reserve(input.len() + input.len() / 64 + 4);
        while let Some(&first) = input.first() {
            if self.at_line_start && first == b'.' {
                out.push(b'.');
            }
            let Some(lf) = input.iter().position(|&b| b == b'\n') else {
                self.text(input, out);
                return true;
            };
            let (text, rest) = input.split_at(lf);
            self.text(text, out);
            input = rest.get(1..).unwrap_or_default();
            if !self.prev_cr {
                out.push(b'\r');
            }
            out.push(b'\n');
            if self.end_of_line() {
                self.done = true;
                return false;
            }
        }
        true
    }

    /// Bytes of one line without its LF.
    fn text(&mut self, text: &[u8], out: &mut Vec<u8>) {
        let Some(&last) = text.last() else { return };
        out.extend_from_slice(text);
        self.at_line_start = false;
        self.prev_cr = last == b'\r';
        self.line_blank &= text.iter().all(|&b| b == b'\r');
    }

    /// A line ended; true when TOP is complete.
    fn end_of_line(&mut self) -> bool {
        let blank = self.line_blank;
        self.at_line_start = true;
        self.line_blank = true;
        self.prev_cr = false;
        if self.in_header {
            if blank {
                self.in_header = false;
                return self.body_lines == Some(0);
            }
            return false;
        }
        match &mut self.body_lines {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        }
    }

    /// Ends the response: completes an unterminated last line and adds the `.` line.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            if !self.prev_cr {
                out.push(b'\r');
            }
            out.push(b'\n');
        }
        out.extend_from_slice(b".\r\n");
        self.at_line_start = true;
        self.prev_cr = false;
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes `msg` cut into chunks of every size from 1 to its length; all must agree.
    fn encode(msg: &[u8], top: Option<u64>) -> Vec<u8> {
        let mut results = Vec::new();
        for chunk in 1..=msg.len().max(1) {
            let mut s = Stuffer::new(top);
            let mut out = Vec::new();
            for piece in msg.chunks(chunk) {
                if !s.push(piece, &mut out) {
                    break;
                }
            }
            s.finish(&mut out);
            results.push(out);
        }
        for r in &results[1..] {
            assert_eq!(r, &results[0], "chunking changed the output for {msg:?}");
        }
        results.swap_remove(0)
    }

    #[test]
    fn retr_table() {
        let cases: [(&[u8], &[u8]); 9] = [
            (b"", b".\r\n"),
            (b"A: b\r\n\r\nhi\r\n", b"A: b\r\n\r\nhi\r\n.\r\n"),
            (b"A: b\r\n\r\n.\r\n", b"A: b\r\n\r\n..\r\n.\r\n"),
            (
                b"A: b\r\n\r\n.hidden\r\n..two\r\nnot.first\r\n",
                b"A: b\r\n\r\n..hidden\r\n...two\r\nnot.first\r\n.\r\n",
            ),
            (b"A: b\n\nbare lf\n", b"A: b\r\n\r\nbare lf\r\n.\r\n"),
            (b"A: b\r\n\r\nno end", b"A: b\r\n\r\nno end\r\n.\r\n"),
            (
                b"A: b\r\n\r\nends in cr\r",
                b"A: b\r\n\r\nends in cr\r\n.\r\n",
            ),
            (b"x\ry\r\n", b"x\ry\r\n.\r\n"),
            (b".", b"..\r\n.\r\n"),
        ];
        for (msg, want) in cases {
            assert_eq!(
                encode(msg, None),
                want,
                "{:?}",
                String::from_utf8_lossy(msg)
            );
        }
    }

    #[test]
    fn top_table() {
        let msg: &[u8] = b"Subject: x\r\nFrom: y\r\n\r\none\r\n.two\r\nthree\r\n";
        let cases: [(u64, &[u8]); 5] = [
            (0, b"Subject: x\r\nFrom: y\r\n\r\n.\r\n"),
            (1, b"Subject: x\r\nFrom: y\r\n\r\none\r\n.\r\n"),
            (2, b"Subject: x\r\nFrom: y\r\n\r\none\r\n..two\r\n.\r\n"),
            (
                3,
                b"Subject: x\r\nFrom: y\r\n\r\none\r\n..two\r\nthree\r\n.\r\n",
            ),
            (
                99,
                b"Subject: x\r\nFrom: y\r\n\r\none\r\n..two\r\nthree\r\n.\r\n",
            ),
        ];
        for (n, want) in cases {
            assert_eq!(
                encode(msg, Some(n)),
                want,
                "TOP {n}: {:?}",
                String::from_utf8_lossy(&encode(msg, Some(n)))
            );
        }
        // No body separator: the whole message is header.
        assert_eq!(encode(b"A: b\r\nC: d", Some(0)), b"A: b\r\nC: d\r\n.\r\n");
        // Bare LFs count as line ends for TOP too.
        assert_eq!(
            encode(b"A: b\n\none\ntwo\n", Some(1)),
            b"A: b\r\n\r\none\r\n.\r\n"
        );
    }

    #[test]
    fn stops_reading_once_top_is_complete() {
        let mut s = Stuffer::top(1);
        let mut out = Vec::new();
        assert!(s.push(b"A: b\r\n", &mut out));
        assert!(!s.push(b"\r\nbody\r\nmore\r\n", &mut out));
        assert!(!s.push(b"ignored\r\n", &mut out));
        s.finish(&mut out);
        assert_eq!(out, b"A: b\r\n\r\nbody\r\n.\r\n");
    }
}
