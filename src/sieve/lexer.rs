//! Tokens of RFC 5228 §2 (and §8.1's grammar): identifiers, tags, numbers with K/M/G, quoted and
//! `text:` multi-line strings, brackets and separators; comments are skipped here.

use super::{CompileError, Pos};

/// One lexical token and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    Ident(String),
    Tag(String),
    Number(u64),
    Str(String),
    LBracket,
    RBracket,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Semi,
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier `{s}`"),
            Tok::Tag(s) => format!("tag `:{s}`"),
            Tok::Number(n) => format!("number {n}"),
            Tok::Str(_) => "a string".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBrace => "`{`".into(),
            Tok::RBrace => "`}`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Semi => "`;`".into(),
        }
    }
}

struct Cursor<'a> {
    src: &'a [u8],
    i: usize,
    line: u32,
    col: u32,
}

impl Cursor<'_> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }
    fn peek(&self) -> Option<u8> {
        self.src.get(self.i).copied()
    }
    fn peek_at(&self, k: usize) -> Option<u8> {
        self.src.get(self.i + k).copied()
    }
    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        if b == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if b & 0xC0 != 0x80 {
            // Columns count characters, not UTF-8 continuation bytes.
            self.col += 1;
        }
        Some(b)
    }
    fn err(&self, at: Pos, msg: impl Into<String>) -> CompileError {
        CompileError {
            line: at.line,
            col: at.col,
            message: msg.into(),
        }
    }
}

/// Splits `src` into tokens. The source must be UTF-8 (RFC 5228 §2.2).
pub(crate) fn lex(src: &str) -> Result<Vec<(Tok, Pos)>, CompileError> {
    let mut c = Cursor {
        src: src.as_bytes(),
        i: 0,
        line: 1,
        col: 1,
    };
    let mut out = Vec::new();
    while let Some(b) = c.peek() {
        let at = c.pos();
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                c.bump();
            }
            b'#' => skip_line(&mut c),
            b'/' if c.peek_at(1) == Some(b'*') => {
                c.bump();
                c.bump();
                loop {
                    match c.bump() {
                        None => return Err(c.err(at, "unterminated bracketed comment `/* ... */`")),
                        Some(b'*') if c.peek() == Some(b'/') => {
                            c.bump();
                            break;
                        }
                        Some(_) => {}
                    }
                }
            }
            b'[' | b']' | b'(' | b')' | b'{' | b'}' | b',' | b';' => {
                c.bump();
                let t = match b {
                    b'[' => Tok::LBracket,
                    b']' => Tok::RBracket,
                    b'(' => Tok::LParen,
                    b')' => Tok::RParen,
                    b'{' => Tok::LBrace,
                    b'}' => Tok::RBrace,
                    b',' => Tok::Comma,
                    _ => Tok::Semi,
                };
                out.push((t, at));
            }
            b'"' => {
                c.bump();
                out.push((Tok::Str(quoted(&mut c, at)?), at));
            }
            b':' => {
                c.bump();
                let name = ident(&mut c);
                if name.is_empty() {
                    return Err(c.err(at, "expected a tag name after `:`"));
                }
                out.push((Tok::Tag(name.to_ascii_lowercase()), at));
            }
            b'0'..=b'9' => out.push((Tok::Number(number(&mut c, at)?), at)),
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let name = ident(&mut c);
                if name.eq_ignore_ascii_case("text") && c.peek() == Some(b':') {
                    c.bump();
                    out.push((Tok::Str(multiline(&mut c, at)?), at));
                } else {
                    out.push((Tok::Ident(name.to_ascii_lowercase()), at));
                }
            }
            _ => {
                let ch = src.get(c.i..).and_then(|s| s.chars().next()).unwrap_or('?');
                return Err(c.err(at, format!("unexpected character `{ch}`")));
            }
        }
    }
    Ok(out)
}

fn skip_line(c: &mut Cursor<'_>) {
    while let Some(b) = c.bump() {
        if b == b'\n' {
            break;
        }
    }
}

fn ident(c: &mut Cursor<'_>) -> String {
    let start = c.i;
    while matches!(c.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_') {
        c.bump();
    }
    String::from_utf8_lossy(&c.src[start..c.i]).into_owned()
}

fn number(c: &mut Cursor<'_>, at: Pos) -> Result<u64, CompileError> {
    let mut n: u64 = 0;
    while let Some(d @ b'0'..=b'9') = c.peek() {
        c.bump();
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or_else(|| c.err(at, "number too large"))?;
    }
    let mult: u64 = match c.peek().map(|b| b.to_ascii_uppercase()) {
        Some(b'K') => 1 << 10,
        Some(b'M') => 1 << 20,
        Some(b'G') => 1 << 30,
        _ => 1,
    };
    if mult != 1 {
        c.bump();
    }
    if matches!(c.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_') {
        return Err(c.err(at, "a number may only be followed by K, M or G"));
    }
    n.checked_mul(mult)
        .ok_or_else(|| c.err(at, "number too large"))
}

fn quoted(c: &mut Cursor<'_>, at: Pos) -> Result<String, CompileError> {
    let mut buf = Vec::new();
    loop {
        match c.bump() {
            None => return Err(c.err(at, "unterminated quoted string")),
            Some(b'"') => break,
            // RFC 5228 §2.4.2: `\` makes the next character literal (only `\\` and `\"` are
            // defined, others are taken as the character itself).
            Some(b'\\') => match c.bump() {
                Some(b) => buf.push(b),
                None => return Err(c.err(at, "unterminated quoted string")),
            },
            Some(b) => buf.push(b),
        }
    }
    Ok(normalise_newlines(buf))
}

/// RFC 5228 §2.4.2: `text:` [whitespace] [hash-comment] CRLF, lines, then `.` CRLF; a leading
/// `..` stands for `.`.
fn multiline(c: &mut Cursor<'_>, at: Pos) -> Result<String, CompileError> {
    while matches!(c.peek(), Some(b' ' | b'\t')) {
        c.bump();
    }
    match c.peek() {
        Some(b'#') => skip_line(c),
        Some(b'\r') if c.peek_at(1) == Some(b'\n') => {
            c.bump();
            c.bump();
        }
        Some(b'\n') => {
            c.bump();
        }
        _ => return Err(c.err(at, "`text:` must be followed by the end of the line")),
    }
    let mut out = String::new();
    loop {
        if c.peek().is_none() {
            return Err(c.err(
                at,
                "unterminated `text:` string (missing a line with a single `.`)",
            ));
        }
        let start = c.i;
        while !matches!(c.peek(), None | Some(b'\n')) {
            c.bump();
        }
        let mut line = &c.src[start..c.i];
        c.bump();
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if line == b"." {
            break;
        }
        if line.starts_with(b"..") {
            line = &line[1..];
        }
        out.push_str(&String::from_utf8_lossy(line));
        out.push_str("\r\n");
    }
    Ok(out)
}

/// Quoted strings may contain bare line breaks; Sieve strings use CRLF.
fn normalise_newlines(buf: Vec<u8>) -> String {
    let s = String::from_utf8_lossy(&buf);
    if !s.contains('\n') {
        return s.into_owned();
    }
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}
