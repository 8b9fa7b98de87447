//! Sans-I/O pieces of the SMTP/LMTP client: reply parsing, EHLO capabilities, dot-stuffing
//! and xtext encoding.
//!
//! Everything here takes bytes or values and returns values or a typed error, so the client in
//! `client` only moves bytes and every rule is table-tested. Must never do I/O.
//!
//! Security note: replies come from remote servers we do not control; parsing is bounded (line
//! length, lines per reply) and never panics, and reply text is sanitised before it is stored
//! or echoed into a DSN.

/// Longest reply line accepted (RFC 5321 allows 512; servers exceed it).
pub(crate) const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one multi-line reply.
pub(crate) const MAX_REPLY_LINES: usize = 128;

/// One complete server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line, without code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx.
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
    /// 3xx (e.g. 354 after DATA).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }
    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
    /// The reply as one line for logs and DSNs: `550 5.1.1 no such user`.
    pub fn one_line(&self) -> String {
        let text = self.lines.join(" ");
        let text: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(500)
            .collect();
        format!("{} {}", self.code, text.trim())
    }
}

/// A reply that does not follow RFC 5321 §4.2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReplyError {
    /// A line without a valid three-digit code.
    #[error("malformed reply line")]
    Malformed,
    /// Continuation lines with a different code.
    #[error("reply code changed inside a multi-line reply")]
    CodeMismatch,
    /// Longer than [`MAX_REPLY_LINE`] or more than [`MAX_REPLY_LINES`] lines.
    #[error("reply too long")]
    TooLong,
}

/// Takes the first complete reply off the front of `buf`. `Ok(None)` means more bytes are
/// needed; on success the consumed bytes are removed.
pub(crate) fn take_reply(buf: &mut Vec<u8>) -> Result<Option<Reply>, ReplyError> {
    let mut pos = 0;
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            if buf.len() - pos > MAX_REPLY_LINE {
                return Err(ReplyError::TooLong);
            }
            return Ok(None);
        };
        let mut line = &buf[pos..pos + nl];
        if line.len() > MAX_REPLY_LINE {
            return Err(ReplyError::TooLong);
        }
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if line.len() < 3
            || !line[..3].iter().all(u8::is_ascii_digit)
            || line[0] < b'2'
            || line[0] > b'5'
        {
            return Err(ReplyError::Malformed);
        }
        let this: u16 =
            (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16;
        if *code.get_or_insert(this) != this {
            return Err(ReplyError::CodeMismatch);
        }
        let more = match line.get(3) {
            None | Some(b' ') => false,
            Some(b'-') => true,
            Some(_) => return Err(ReplyError::Malformed),
        };
        let text = line.get(4..).unwrap_or_default();
        lines.push(String::from_utf8_lossy(text).into_owned());
        if lines.len() > MAX_REPLY_LINES {
            return Err(ReplyError::TooLong);
        }
        pos += nl + 1;
        if !more {
            buf.drain(..pos);
            return Ok(Some(Reply { code: this, lines }));
        }
    }
}

/// What an EHLO/LHLO reply advertised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Capabilities {
    pub starttls: bool,
    /// `SIZE n`; `Some(0)` means "no fixed limit".
    pub size: Option<u64>,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    /// Our LMTP server's `XDELIVERY`: MAIL FROM may carry an idempotency id.
    pub xdelivery: bool,
}

impl Capabilities {
    /// Reads the keywords of an EHLO reply (the first line is the greeting and is skipped).
    pub fn parse(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(kw) = words.next() else { continue };
            match kw.to_ascii_uppercase().as_str() {
                "STARTTLS" => caps.starttls = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => caps.eightbitmime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "DSN" => caps.dsn = true,
                "XDELIVERY" => caps.xdelivery = true,
                _ => {}
            }
        }
        caps
    }
}

/// Encodes a message body for DATA: CRLF line ends (bare LF becomes CRLF), a leading `.` on a
/// line doubled (RFC 5321 §4.5.2), and [`DotStuffer::finish`] adds the final CRLF if missing and
/// the `.` line. State carries across chunks, so files can be streamed in any chunk size.
#[derive(Debug)]
pub(crate) struct DotStuffer {
    at_line_start: bool,
    last_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            last_cr: false,
        }
    }
}

impl DotStuffer {
    /// Appends the encoded `chunk` to `out`.
    pub fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + chunk.len() / 64 + 4);
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.at_line_start && rest[0] == b'.' {
                out.push(b'.');
            }
            // One line (or the chunk's unfinished tail) at a time.
            let (line, ends) = match memchr::memchr(b'\n', rest) {
                Some(p) => (&rest[..p], true),
                None => (rest, false),
            };
            out.extend_from_slice(line);
            if let Some(&last) = line.last() {
                self.last_cr = last == b'\r';
            }
            if ends {
                if !self.last_cr {
                    out.push(b'\r');
                }
                out.push(b'\n');
                self.last_cr = false;
                self.at_line_start = true;
                rest = &rest[line.len() + 1..];
            } else {
                self.at_line_start = false;
                rest = &[];
            }
        }
    }

    /// Appends the terminator.
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            if !self.last_cr {
                out.push(b'\r');
            }
            out.push(b'\n');
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// xtext (RFC 3461 §4): `+XX` for `+`, `=`, and anything outside `!`..`~`.
pub(crate) fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// The enhanced status code at the start of a reply's text (`550 5.1.1 ...` → `5.1.1`), or
/// one derived from the basic code (`5.0.0` / `4.0.0`).
pub(crate) fn status_of(reply_line: &str) -> String {
    let mut words = reply_line.split_ascii_whitespace();
    let code = words.next().unwrap_or("");
    if is_enhanced(code) {
        return code.to_string();
    }
    let class = match code.as_bytes().first() {
        Some(b'5') => '5',
        Some(b'2') => '2',
        _ => '4',
    };
    if let Some(w) = words.next() {
        if is_enhanced(w) && w.starts_with(class) {
            return w.to_string();
        }
    }
    format!("{class}.0.0")
}

/// `class.subject.detail` with class 2, 4 or 5 (RFC 3463).
fn is_enhanced(w: &str) -> bool {
    let parts: Vec<&str> = w.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_table() {
        type Case<'a> = (&'a [u8], Result<Option<(u16, usize)>, ReplyError>, usize);
        let cases: Vec<Case> = vec![
            (b"250 ok\r\n", Ok(Some((250, 1))), 0),
            (b"250-a\r\n250-b\r\n250 c\r\nrest", Ok(Some((250, 3))), 4),
            (b"250-a\r\n250", Ok(None), 10),
            (b"220\r\n", Ok(Some((220, 1))), 0),
            (b"250 bare lf\n", Ok(Some((250, 1))), 0),
            (b"25x ok\r\n", Err(ReplyError::Malformed), 8),
            (b"250-a\r\n550 b\r\n", Err(ReplyError::CodeMismatch), 14),
            (b"250_ok\r\n", Err(ReplyError::Malformed), 8),
            (b"650 ok\r\n", Err(ReplyError::Malformed), 8),
            (b"", Ok(None), 0),
        ];
        for (input, want, left) in cases {
            let mut buf = input.to_vec();
            let got = take_reply(&mut buf).map(|r| r.map(|r| (r.code, r.lines.len())));
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(buf.len(), left, "{:?}", String::from_utf8_lossy(input));
        }
        let mut long = vec![b'2'; MAX_REPLY_LINE + 10];
        assert_eq!(take_reply(&mut long), Err(ReplyError::TooLong));
    }

    #[test]
    fn one_line_strips_controls() {
        let r = Reply {
            code: 550,
            lines: vec!["5.1.1 no\tsuch".into(), "user".into()],
        };
        assert_eq!(r.one_line(), "550 5.1.1 no such user");
    }

    #[test]
    fn capabilities() {
        let r = Reply {
            code: 250,
            lines: vec![
                "mx.example greets you".into(),
                "PIPELINING".into(),
                "SIZE 1000".into(),
                "starttls".into(),
                "8BITMIME".into(),
                "DSN".into(),
            ],
        };
        let c = Capabilities::parse(&r);
        assert!(c.starttls && c.eightbitmime && c.dsn && !c.smtputf8);
        assert_eq!(c.size, Some(1000));
        let bare = Reply {
            code: 250,
            lines: vec!["x".into(), "SIZE".into()],
        };
        assert_eq!(Capabilities::parse(&bare).size, Some(0));
    }

    #[test]
    fn dot_stuffing_across_chunks() {
        let cases: Vec<(Vec<&[u8]>, &[u8])> = vec![
            (vec![b"a\r\n.b\r\n"], b"a\r\n..b\r\n.\r\n"),
            (vec![b".x"], b"..x\r\n.\r\n"),
            (vec![b"a\r", b"\n", b".", b"b"], b"a\r\n..b\r\n.\r\n"),
            (vec![b"a\n.\nb\n"], b"a\r\n..\r\nb\r\n.\r\n"),
            (vec![b""], b".\r\n"),
            (vec![b"end\r"], b"end\r\n.\r\n"),
        ];
        for (chunks, want) in cases {
            let mut s = DotStuffer::default();
            let mut out = Vec::new();
            for c in &chunks {
                s.encode(c, &mut out);
            }
            s.finish(&mut out);
            assert_eq!(out, want, "{chunks:?}");
        }
    }

    /// The line-at-a-time encoder against the octet-at-a-time rule it replaced, on random
    /// content (CR, LF and dots made frequent) cut into random chunks.
    #[test]
    fn dot_stuffing_matches_the_octet_rule() {
        fn reference(chunks: &[&[u8]]) -> Vec<u8> {
            let (mut at_start, mut last_cr, mut out) = (true, false, Vec::new());
            for &b in chunks.concat().iter() {
                if at_start && b == b'.' {
                    out.push(b'.');
                }
                if b == b'\n' && !last_cr {
                    out.push(b'\r');
                }
                out.push(b);
                at_start = b == b'\n';
                last_cr = b == b'\r';
            }
            if !at_start {
                if !last_cr {
                    out.push(b'\r');
                }
                out.push(b'\n');
            }
            out.extend_from_slice(b".\r\n");
            out
        }
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5321);
        for _ in 0..5_000 {
            let len = rng.gen_range(0..40);
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    *[b'.', b'\r', b'\n', b'a', 0x80]
                        .get(rng.gen_range(0..5))
                        .unwrap_or(&b'a')
                })
                .collect();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = rng.gen_range(1..=rest.len());
                chunks.push(&rest[..n]);
                rest = &rest[n..];
            }
            let mut s = DotStuffer::default();
            let mut out = Vec::new();
            for c in &chunks {
                s.encode(c, &mut out);
            }
            s.finish(&mut out);
            assert_eq!(out, reference(&chunks), "{chunks:?}");
        }
    }

    #[test]
    fn xtext_and_status() {
        assert_eq!(xtext("rfc822;a+b=c@d"), "rfc822;a+2Bb+3Dc@d");
        assert_eq!(xtext("é"), "+C3+A9");
        for (line, want) in [
            ("550 5.1.1 no such user", "5.1.1"),
            ("451 4.3.0 try later", "4.3.0"),
            ("550 no such user", "5.0.0"),
            ("450 5.1.1 mismatched class", "4.0.0"),
            ("421", "4.0.0"),
            ("connection refused", "4.0.0"),
            ("250 2.1.5 ok", "2.1.5"),
            ("4.4.7 message expired", "4.4.7"),
            ("4.4.1 cannot connect", "4.4.1"),
        ] {
            assert_eq!(status_of(line), want, "{line}");
        }
    }
}
