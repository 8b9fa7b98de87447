//! The lowest layer of the IMAP command parser: command framing (where a line announces a
//! literal) and a lexer over one complete command (atoms, quoted strings, literals, lists).
//!
//! Sans-I/O: the session reads lines and literal bytes and asks [`literal_at_end`] whether a
//! line announces a literal *before* it reads one, so an oversized literal is refused without
//! a byte of it being read or a `+` being sent. The lexer then works on the assembled command
//! (lines and literal bytes in order, the final CRLF removed). Module `command` builds
//! commands on top of it.
//!
//! Security note: every position is checked (no indexing past the end), numbers are bounded,
//! list nesting is counted against a limit, and literal lengths come from the framing, which
//! the session has already bounded.

use std::borrow::Cow;

/// A literal announced at the end of a line: `{n}` (synchronising) or `{n+}` (LITERAL+),
/// possibly as a `~{n}` literal8 (RFC 3516), whose `~` stays part of the line before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiteralHeader {
    /// The announced length; saturates at `u64::MAX` for absurd announcements.
    pub len: u64,
    /// Whether the client waits for `+` before sending it.
    pub sync: bool,
}

/// Whether `line` (without its CRLF) ends with a literal announcement.
pub fn literal_at_end(line: &[u8]) -> Option<LiteralHeader> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let mut digits = &body[open + 1..];
    let mut sync = true;
    if let Some(d) = digits.strip_suffix(b"+") {
        digits = d;
        sync = false;
    }
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len = digits.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Some(LiteralHeader { len, sync })
}

/// The tag and command name at the start of a (partial) command, if they parse: used to
/// answer a command the session refuses before it is complete.
pub fn tag_and_name(buf: &[u8]) -> (Option<String>, Option<String>) {
    let mut words = buf.splitn(3, |&b| b == b' ');
    let tag = words
        .next()
        .filter(|t| !t.is_empty() && t.iter().all(|&b| is_tag_char(b)))
        .map(|t| String::from_utf8_lossy(t).into_owned());
    let name = words.next().map(|n| {
        let end = n
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(n.len());
        String::from_utf8_lossy(&n[..end]).to_ascii_uppercase()
    });
    (tag, name)
}

/// A syntax error at some point of a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SyntaxError(pub Cow<'static, str>);

pub type PResult<T> = Result<T, SyntaxError>;

pub fn err<T>(msg: impl Into<Cow<'static, str>>) -> PResult<T> {
    Err(SyntaxError(msg.into()))
}

/// `ATOM-CHAR` of RFC 3501.
pub fn is_atom_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b)
        && !matches!(
            b,
            b'(' | b')' | b'{' | b' ' | b'%' | b'*' | b'"' | b'\\' | b']'
        )
}

/// `ASTRING-CHAR`: atom characters and `]`.
pub fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// Tag characters: `ASTRING-CHAR` except `+`.
pub fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

/// `list-mailbox` characters: atom characters, the wildcards, and `]`.
fn is_list_char(b: u8) -> bool {
    is_astring_char(b) || b == b'%' || b == b'*'
}

/// Bytes of UTF-8 sequences. IMAP atoms are ASCII, but clients that enabled UTF-8 (Python's
/// imaplib, for one) send non-ASCII mailbox names unquoted; astrings take them, and the
/// session refuses non-ASCII names where UTF-8 is not enabled.
fn is_utf8_byte(b: u8) -> bool {
    b >= 0x80
}

/// A cursor over one assembled command.
pub struct Lexer<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: usize,
    max_depth: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(buf: &'a [u8], max_depth: usize) -> Self {
        Lexer {
            buf,
            pos: 0,
            depth: 0,
            max_depth,
        }
    }

    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Skips `n` bytes (at most to the end).
    pub fn advance(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.buf.len());
    }

    /// Everything left, consumed.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let r = self.rest();
        self.pos = self.buf.len();
        r
    }

    /// Consumes `b` if it is next.
    pub fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub fn expect(&mut self, b: u8, what: &'static str) -> PResult<()> {
        if self.eat(b) {
            Ok(())
        } else {
            err(what)
        }
    }

    pub fn sp(&mut self) -> PResult<()> {
        self.expect(b' ', "expected a space")
    }

    pub fn end(&self) -> PResult<()> {
        if self.at_end() {
            Ok(())
        } else {
            err("unexpected characters at the end of the command")
        }
    }

    /// Consumes a case-insensitive keyword if it is next and not followed by more atom chars.
    pub fn keyword(&mut self, kw: &str) -> bool {
        let n = kw.len();
        match self.buf.get(self.pos..self.pos + n) {
            Some(s) if s.eq_ignore_ascii_case(kw.as_bytes()) => {
                let next = self.buf.get(self.pos + n).copied();
                if next.is_some_and(is_atom_char) {
                    return false;
                }
                self.pos += n;
                true
            }
            _ => false,
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    pub fn tag(&mut self) -> PResult<&'a [u8]> {
        let t = self.take_while(is_tag_char);
        if t.is_empty() {
            return err("missing tag");
        }
        Ok(t)
    }

    /// An atom, uppercased.
    pub fn atom_upper(&mut self) -> PResult<String> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            return err("expected an atom");
        }
        Ok(String::from_utf8_lossy(a).to_ascii_uppercase())
    }

    /// An atom as written.
    pub fn atom(&mut self) -> PResult<&'a [u8]> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            return err("expected an atom");
        }
        Ok(a)
    }

    /// Raw characters of a sequence set.
    pub fn seq_chars(&mut self) -> PResult<&'a [u8]> {
        let s = self.take_while(|b| b.is_ascii_digit() || matches!(b, b':' | b',' | b'*' | b'$'));
        if s.is_empty() {
            return err("expected a sequence set");
        }
        Ok(s)
    }

    pub fn number(&mut self) -> PResult<u32> {
        u32::try_from(self.number64()?).or_else(|_| err("number out of range"))
    }

    pub fn number64(&mut self) -> PResult<u64> {
        let d = self.take_while(|b| b.is_ascii_digit());
        if d.is_empty() || d.len() > 19 {
            return err("expected a number");
        }
        Ok(d.iter()
            .fold(0u64, |acc, &c| acc * 10 + u64::from(c - b'0')))
    }

    /// A quoted string or a literal.
    pub fn string(&mut self) -> PResult<Cow<'a, [u8]>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal().map(Cow::Borrowed),
            _ => err("expected a string"),
        }
    }

    fn quoted(&mut self) -> PResult<Cow<'a, [u8]>> {
        self.pos += 1;
        let start = self.pos;
        let mut owned: Option<Vec<u8>> = None;
        loop {
            let Some(b) = self.peek() else {
                return err("unterminated quoted string");
            };
            self.pos += 1;
            match b {
                b'"' => {
                    return Ok(match owned {
                        Some(v) => Cow::Owned(v),
                        None => Cow::Borrowed(&self.buf[start..self.pos - 1]),
                    })
                }
                b'\\' => {
                    let esc = self.peek();
                    if !matches!(esc, Some(b'"' | b'\\')) {
                        return err("invalid escape in a quoted string");
                    }
                    self.pos += 1;
                    let v = owned.get_or_insert_with(|| self.buf[start..self.pos - 2].to_vec());
                    v.push(esc.unwrap_or_default());
                }
                b'\r' | b'\n' | 0 => return err("CR, LF or NUL in a quoted string"),
                _ => {
                    if let Some(v) = owned.as_mut() {
                        v.push(b);
                    }
                }
            }
        }
    }

    /// A literal8 (`~{n}`, RFC 3516: may hold NUL) or a plain literal.
    pub fn literal8(&mut self) -> PResult<&'a [u8]> {
        self.eat(b'~');
        self.literal()
    }

    /// A literal: `{n}` or `{n+}`, CRLF, then n bytes (already read by the session).
    pub fn literal(&mut self) -> PResult<&'a [u8]> {
        self.expect(b'{', "expected a literal")?;
        let n = self.number64()?;
        self.eat(b'+');
        self.expect(b'}', "invalid literal announcement")?;
        self.expect(b'\r', "expected CRLF after a literal announcement")?;
        self.expect(b'\n', "expected CRLF after a literal announcement")?;
        let n = usize::try_from(n).or_else(|_| err("literal too long"))?;
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return err("literal shorter than announced");
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// `astring`: an atom (with `]`) or a string.
    pub fn astring(&mut self) -> PResult<Cow<'a, [u8]>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                let a = self.take_while(|b| is_astring_char(b) || is_utf8_byte(b));
                if a.is_empty() {
                    return err("expected an atom or a string");
                }
                Ok(Cow::Borrowed(a))
            }
        }
    }

    /// `astring` as UTF-8 text.
    pub fn astring_utf8(&mut self) -> PResult<String> {
        let s = self.astring()?;
        String::from_utf8(s.into_owned()).or_else(|_| err("string is not UTF-8"))
    }

    /// `list-mailbox`: atom characters with wildcards, or a string.
    pub fn list_mailbox(&mut self) -> PResult<String> {
        let s = match self.peek() {
            Some(b'"' | b'{') => self.string()?,
            _ => {
                let a = self.take_while(|b| is_list_char(b) || is_utf8_byte(b));
                if a.is_empty() {
                    return err("expected a mailbox pattern");
                }
                Cow::Borrowed(a)
            }
        };
        String::from_utf8(s.into_owned()).or_else(|_| err("pattern is not UTF-8"))
    }

    /// `nstring`: NIL or a string.
    pub fn nstring(&mut self) -> PResult<Option<Cow<'a, [u8]>>> {
        if self.keyword("NIL") {
            Ok(None)
        } else {
            self.string().map(Some)
        }
    }

    /// Opens a parenthesised list, counting its depth.
    pub fn open(&mut self) -> PResult<()> {
        self.expect(b'(', "expected '('")?;
        self.depth += 1;
        if self.depth > self.max_depth {
            return err("lists nested too deeply");
        }
        Ok(())
    }

    /// Closes a list if `)` is next.
    pub fn close(&mut self) -> bool {
        if self.eat(b')') {
            self.depth = self.depth.saturating_sub(1);
            true
        } else {
            false
        }
    }

    /// Parses `( item *(SP item) )` (an empty list if `allow_empty`).
    pub fn list<T>(
        &mut self,
        allow_empty: bool,
        mut item: impl FnMut(&mut Self) -> PResult<T>,
    ) -> PResult<Vec<T>> {
        self.open()?;
        let mut out = Vec::new();
        if self.close() {
            return if allow_empty {
                Ok(out)
            } else {
                err("empty list")
            };
        }
        loop {
            out.push(item(self)?);
            if self.close() {
                return Ok(out);
            }
            self.sp()?;
        }
    }

    /// A flag: `\Name` or a keyword atom.
    pub fn flag(&mut self) -> PResult<String> {
        let backslash = self.eat(b'\\');
        let a = self.atom()?;
        let a = String::from_utf8_lossy(a).into_owned();
        Ok(if backslash { format!("\\{a}") } else { a })
    }

    /// Current depth (for tests).
    #[cfg(test)]
    pub fn depth(&self) -> usize {
        self.depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_announcements() {
        let cases: [(&str, Option<(u64, bool)>); 8] = [
            ("a LOGIN {5}", Some((5, true))),
            ("a APPEND x {12+}", Some((12, false))),
            ("a APPEND x {4294967296}", Some((4_294_967_296, true))),
            (
                "a APPEND x {99999999999999999999999}",
                Some((u64::MAX, true)),
            ),
            ("a LOGIN \"x\"", None),
            ("a LOGIN {}", None),
            ("a LOGIN {5a}", None),
            ("a NOOP", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                literal_at_end(line.as_bytes()).map(|l| (l.len, l.sync)),
                want,
                "{line}"
            );
        }
    }

    #[test]
    fn strings_and_atoms() {
        let mut l = Lexer::new(b"\"a\\\"b\" {3}\r\nxyz atom] NIL \"\"", 4);
        assert_eq!(&*l.string().unwrap(), b"a\"b");
        l.sp().unwrap();
        assert_eq!(&*l.astring().unwrap(), b"xyz");
        l.sp().unwrap();
        assert_eq!(&*l.astring().unwrap(), b"atom]");
        l.sp().unwrap();
        assert_eq!(l.nstring().unwrap(), None);
        l.sp().unwrap();
        assert_eq!(&*l.string().unwrap(), b"");
        l.end().unwrap();
        for bad in ["\"abc", "\"a\\x\"", "{5}\r\nab", "{3}xyz", "\"a\rb\""] {
            assert!(Lexer::new(bad.as_bytes(), 4).string().is_err(), "{bad:?}");
        }
        // literal8 may hold NUL; UTF-8 in an unquoted astring is taken (the session decides).
        let mut l = Lexer::new(b"~{3}\r\na\0b Entw\xc3\xbcrfe x", 4);
        assert_eq!(l.literal8().unwrap(), b"a\0b");
        l.sp().unwrap();
        assert_eq!(l.astring_utf8().unwrap(), "Entwürfe");
        assert!(Lexer::new(b"\xc3 x", 4).atom().is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "(".repeat(100) + &")".repeat(100);
        fn nested(l: &mut Lexer) -> PResult<()> {
            l.list(true, nested).map(|_| ())
        }
        let mut l = Lexer::new(deep.as_bytes(), 8);
        assert!(nested(&mut l).is_err());
        let ok = "((()))";
        let mut l = Lexer::new(ok.as_bytes(), 8);
        nested(&mut l).unwrap();
        assert_eq!(l.depth(), 0);
    }

    #[test]
    fn tag_and_name_of_partial_commands() {
        assert_eq!(
            tag_and_name(b"a1 append INBOX {999}"),
            (Some("a1".into()), Some("APPEND".into()))
        );
        assert_eq!(tag_and_name(b"a1 noop\r\n").1, Some("NOOP".into()));
        assert_eq!(tag_and_name(b"+bad x").0, None);
    }
}
