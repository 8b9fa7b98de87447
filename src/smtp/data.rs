//! Message content on the wire: the DATA decoder (terminator, dot-unstuffing, line-ending
//! discipline) and the content checker shared by DATA and BDAT (line length, NUL, 8-bit,
//! size).
//!
//! Sans-I/O: both take byte slices and report how far they got and what they found; they
//! keep at most a few bytes of state between calls, so a message of any size streams
//! through them.
//!
//! Security note: DATA ends only at `<CRLF>.<CRLF>`, and a bare CR or LF anywhere in DATA is
//! fatal for the session ([`Decoded::BareNewline`]). That closes SMTP smuggling
//! (CVE-2023-51764 and kin): no `\n.\n` or `\r.\r` variant can end a message here while a
//! different server downstream would see it differently — and since we cannot know where a
//! client with broken line ends thinks its message ends, we refuse to guess and close the
//! connection. BDAT content is framed by its length, so there a bare CR or LF only fails the
//! transaction ([`ContentError::BareNewline`]). Either way, a stored message has CRLF line
//! ends only and can be relayed with DATA unchanged.

/// What [`DataDecoder::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// All input consumed; the message continues.
    More,
    /// The terminating `.` line was consumed; input after it belongs to the next command.
    Done,
    /// A CR or LF not part of a CRLF pair.
    BareNewline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    LineStart,
    /// After a `.` at the start of a line.
    Dot,
    /// After `.` CR at the start of a line.
    DotCr,
    /// Inside a line.
    Mid,
    /// After a CR inside a line.
    Cr,
}

/// Decodes DATA content: removes the stuffed leading dots and finds the terminator.
#[derive(Debug)]
pub struct DataDecoder {
    state: State,
}

impl Default for DataDecoder {
    fn default() -> Self {
        DataDecoder {
            state: State::LineStart,
        }
    }
}

impl DataDecoder {
    /// A decoder at the start of the content (right after the 354 reply).
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes as much of `input` as belongs to the message, appending content to `out`
    /// (CRLFs included, the terminator excluded). Returns the octets consumed and the status;
    /// after `Done` or `BareNewline` the decoder must not be fed again.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Decoded) {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::LineStart | State::Mid => {
                    if self.state == State::LineStart && b == b'.' {
                        self.state = State::Dot;
                        i += 1;
                        continue;
                    }
                    // Copy the run up to the next CR or LF in one go.
                    let run = memchr::memchr2(b'\r', b'\n', &input[i..]).unwrap_or(input.len() - i);
                    out.extend_from_slice(&input[i..i + run]);
                    i += run;
                    self.state = State::Mid;
                    match input.get(i) {
                        Some(b'\r') => {
                            self.state = State::Cr;
                            i += 1;
                        }
                        Some(_) => return (i + 1, Decoded::BareNewline),
                        None => {}
                    }
                }
                State::Cr => {
                    if b != b'\n' {
                        return (i, Decoded::BareNewline);
                    }
                    out.extend_from_slice(b"\r\n");
                    self.state = State::LineStart;
                    i += 1;
                }
                State::Dot => match b {
                    b'\r' => {
                        self.state = State::DotCr;
                        i += 1;
                    }
                    b'\n' => return (i + 1, Decoded::BareNewline),
                    // The stuffed dot is dropped; the rest of the line is content.
                    _ => self.state = State::Mid,
                },
                State::DotCr => {
                    if b == b'\n' {
                        return (i + 1, Decoded::Done);
                    }
                    return (i, Decoded::BareNewline);
                }
            }
        }
        (i, Decoded::More)
    }
}

/// Why message content was refused. The transfer is read to its end either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    /// More octets than the configured limit.
    #[error("message size exceeds fixed maximum message size of {0} octets")]
    TooBig(u64),
    /// A line longer than the configured limit (CRLF included).
    #[error("message line longer than {0} octets")]
    LineTooLong(usize),
    /// A NUL octet.
    #[error("message contains NUL octets")]
    Nul,
    /// An octet above 127 without `BODY=8BITMIME` (or `SMTPUTF8`).
    #[error("8-bit data requires BODY=8BITMIME")]
    EightBit,
    /// A CR or LF not part of a CRLF pair (BDAT).
    #[error("bare CR or LF received; lines must end with CRLF")]
    BareNewline,
}

/// Checks decoded content, chunk by chunk; the first error sticks.
#[derive(Debug)]
pub struct ContentChecker {
    /// Longest line, CRLF included.
    max_line: usize,
    allow_8bit: bool,
    max_size: u64,
    /// Octets of the current line so far, CR excluded.
    line_len: usize,
    /// The previous chunk ended in a CR.
    pending_cr: bool,
    size: u64,
    error: Option<ContentError>,
}

impl ContentChecker {
    /// A checker for one message.
    pub fn new(max_line: usize, max_size: u64, allow_8bit: bool) -> Self {
        ContentChecker {
            max_line,
            allow_8bit,
            max_size,
            line_len: 0,
            pending_cr: false,
            size: 0,
            error: None,
        }
    }

    /// Octets seen so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The first error found, if any.
    pub fn error(&self) -> Option<ContentError> {
        self.error
    }

    /// Checks the next chunk. After an error it only counts octets.
    pub fn check(&mut self, chunk: &[u8]) -> Result<(), ContentError> {
        self.size += chunk.len() as u64;
        if self.error.is_none() && self.size > self.max_size {
            self.error = Some(ContentError::TooBig(self.max_size));
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        // One word-at-a-time pass instead of a look at every run's octets, for the usual chunk.
        let find_8bit = !self.allow_8bit && !chunk.is_ascii();
        let mut i = 0;
        while i < chunk.len() {
            if !self.pending_cr {
                // A run of ordinary octets in one step: up to the next CR, LF or NUL, and the
                // first 8-bit octet where those are refused.
                let rest = &chunk[i..];
                let mut run = memchr::memchr3(b'\r', b'\n', 0, rest).unwrap_or(rest.len());
                if find_8bit {
                    if let Some(p) = rest[..run].iter().position(|&b| b >= 0x80) {
                        run = p;
                    }
                }
                if run > 0 {
                    // Octet k of the run (from 0) is refused when line_len + k + 2 >= max_line.
                    if self.line_len + run + 1 >= self.max_line {
                        let e = ContentError::LineTooLong(self.max_line);
                        self.error = Some(e);
                        return Err(e);
                    }
                    self.line_len += run;
                    i += run;
                    continue;
                }
            }
            let b = chunk[i];
            i += 1;
            let e = match b {
                b'\n' if self.pending_cr => {
                    self.pending_cr = false;
                    self.line_len = 0;
                    continue;
                }
                _ if self.pending_cr => ContentError::BareNewline,
                b'\r' => {
                    self.pending_cr = true;
                    continue;
                }
                b'\n' => ContentError::BareNewline,
                0 => ContentError::Nul,
                0x80.. if !self.allow_8bit => ContentError::EightBit,
                _ if self.line_len + 2 >= self.max_line => ContentError::LineTooLong(self.max_line),
                _ => {
                    self.line_len += 1;
                    continue;
                }
            };
            self.error = Some(e);
            return Err(e);
        }
        Ok(())
    }

    /// Ends the content: a trailing lone CR is an error.
    pub fn finish(&mut self) -> Result<(), ContentError> {
        if self.error.is_none() && self.pending_cr {
            self.error = Some(ContentError::BareNewline);
        }
        self.error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The run-skipping checker against the octet-at-a-time rule it replaced, on random content
    /// (CR, LF, NUL and 8-bit octets made frequent, short line limits) cut into random chunks.
    #[test]
    fn content_checker_matches_the_octet_rule() {
        fn reference(data: &[u8], max_line: usize, allow_8bit: bool) -> Option<ContentError> {
            let (mut line_len, mut pending_cr) = (0, false);
            for &b in data {
                let e = match b {
                    b'\n' if pending_cr => {
                        pending_cr = false;
                        line_len = 0;
                        continue;
                    }
                    _ if pending_cr => ContentError::BareNewline,
                    b'\r' => {
                        pending_cr = true;
                        continue;
                    }
                    b'\n' => ContentError::BareNewline,
                    0 => ContentError::Nul,
                    0x80.. if !allow_8bit => ContentError::EightBit,
                    _ if line_len + 2 >= max_line => ContentError::LineTooLong(max_line),
                    _ => {
                        line_len += 1;
                        continue;
                    }
                };
                return Some(e);
            }
            pending_cr.then_some(ContentError::BareNewline)
        }
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5322);
        let alphabet = [b'a', b'a', b'a', b'a', b'\r', b'\n', 0, 0xC3];
        for _ in 0..20_000 {
            let len = rng.gen_range(0..30);
            let data: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let max_line = rng.gen_range(3..12);
            let allow_8bit = rng.gen_bool(0.5);
            let mut c = ContentChecker::new(max_line, u64::MAX, allow_8bit);
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = rng.gen_range(1..=rest.len());
                let _ = c.check(&rest[..n]);
                rest = &rest[n..];
            }
            let got = c.error().or_else(|| c.finish().err());
            assert_eq!(
                got,
                reference(&data, max_line, allow_8bit),
                "{data:?} max_line {max_line} 8bit {allow_8bit}"
            );
        }
    }

    /// Feeds `input` in pieces of `step` octets; returns the output, the status and the
    /// octets consumed.
    fn decode(input: &[u8], step: usize) -> (Vec<u8>, Decoded, usize) {
        let mut d = DataDecoder::new();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + step).min(input.len());
            let (n, status) = d.feed(&input[pos..end], &mut out);
            pos += n;
            if status != Decoded::More {
                return (out, status, pos);
            }
            assert_eq!(pos, end, "More consumes everything");
        }
        (out, Decoded::More, pos)
    }

    #[test]
    fn decoder_table() {
        let cases: Vec<(&[u8], &[u8], Decoded, usize)> = vec![
            (b".\r\n", b"", Decoded::Done, 3),
            (b"a\r\n.\r\nQUIT\r\n", b"a\r\n", Decoded::Done, 6),
            (b"..\r\n.\r\n", b".\r\n", Decoded::Done, 7),
            (b"..x\r\n.y\r\n.\r\n", b".x\r\ny\r\n", Decoded::Done, 12),
            (b"a.\r\nb\r\n.\r\n", b"a.\r\nb\r\n", Decoded::Done, 10),
            (b"a\r\n", b"a\r\n", Decoded::More, 3),
            (b"a\nb", b"a", Decoded::BareNewline, 2),
            (b"a\rb", b"a", Decoded::BareNewline, 2),
            (b"a\r\n.\n", b"a\r\n", Decoded::BareNewline, 5),
            (b"a\r\n.\rX", b"a\r\n", Decoded::BareNewline, 5),
            // The smuggling forms: none of them ends the message.
            (b"a\n.\r\n", b"a", Decoded::BareNewline, 2),
            (b"a\r\n.\n\r\n", b"a\r\n", Decoded::BareNewline, 5),
        ];
        for (input, want, status, consumed) in cases {
            for step in [1, 2, 3, input.len()] {
                let (out, got, n) = decode(input, step);
                let name = String::from_utf8_lossy(input);
                assert_eq!(
                    (out.as_slice(), got),
                    (want, status),
                    "{name:?} step {step}"
                );
                assert_eq!(n, consumed, "{name:?} step {step}");
            }
        }
    }

    #[test]
    fn checker_table() {
        let big = "z\r\n".repeat(700).into_bytes();
        let long = [b'x'; 998];
        let mut ok_line = long.to_vec();
        ok_line.extend_from_slice(b"\r\n");
        let mut long_line = b"y".to_vec();
        long_line.extend_from_slice(&ok_line);
        let cases: Vec<(&[u8], bool, Result<(), ContentError>)> = vec![
            (b"Subject: x\r\n\r\nbody\r\n", false, Ok(())),
            (&ok_line, false, Ok(())),
            (&long_line, false, Err(ContentError::LineTooLong(1000))),
            (b"a\0b\r\n", false, Err(ContentError::Nul)),
            ("é\r\n".as_bytes(), false, Err(ContentError::EightBit)),
            ("é\r\n".as_bytes(), true, Ok(())),
            (b"a\nb", false, Err(ContentError::BareNewline)),
            (b"a\rb", false, Err(ContentError::BareNewline)),
            (b"a\r", false, Err(ContentError::BareNewline)),
            (&big, true, Err(ContentError::TooBig(1500))),
        ];
        for (input, eight, want) in cases {
            for step in [1, 7, input.len().max(1)] {
                let mut c = ContentChecker::new(1000, 1500, eight);
                let mut got = Ok(());
                for chunk in input.chunks(step) {
                    got = got.and(c.check(chunk));
                }
                let got = got.and(c.finish());
                let shown = String::from_utf8_lossy(&input[..input.len().min(40)]);
                assert_eq!(got, want, "{shown:?} step {step}");
                assert_eq!(c.size(), input.len() as u64);
            }
        }
    }
}
