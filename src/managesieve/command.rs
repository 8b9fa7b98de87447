//! The ManageSieve command grammar (RFC 5804 section 4), sans-I/O: [`Framer`] finds where a
//! command ends in the bytes received so far (following literals), [`parse`] turns one whole
//! command into a [`Command`] or a typed [`ParseError`].
//!
//! A command is an atom (its name, case-insensitive) followed by space-separated arguments,
//! each a quoted string (`"…"` with `\"` and `\\` escapes, at most 1024 octets), a literal
//! (`{n+}` CRLF and `n` octets, the non-synchronising form clients send; the synchronising
//! `{n}` is accepted too, without a continuation, which ManageSieve does not have) or a number,
//! and ends with CRLF (a bare LF is forgiven).
//!
//! It never does I/O and never allocates more than the limits allow: a physical line is at
//! most `max_line` octets, a literal at most `max_literal`, a command at most `max_literals`
//! literals. Past a limit the framer reports the error once and then tells the session to
//! drop the rest of that command (a literal's announced octets included) as it arrives, so a
//! script sent after a refused literal is never read as commands.
//!
//! Security note: names and scripts must be UTF-8 without NUL; script names are checked
//! against RFC 5804 section 1.6 by [`crate::directory::check_sieve_name`] in the session.

use std::fmt;

/// Longest quoted string, in octets (RFC 5804 section 4, `quoted`).
pub const MAX_QUOTED: usize = 1024;

/// The framer's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Longest physical line (between literals), line end included.
    pub max_line: usize,
    /// Largest literal, in octets.
    pub max_literal: u64,
    /// Most literals in one command.
    pub max_literals: usize,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A line over `max_line`.
    #[error("line too long (limit {0} octets)")]
    LineTooLong(usize),
    /// A literal over `max_literal` (`NO (QUOTA/MAXSIZE)` when it is a script).
    #[error("literal of {size} octets is over the limit of {max} octets")]
    LiteralTooBig { size: u64, max: u64 },
    /// More literals than any command needs.
    #[error("too many literals in one command (limit {0})")]
    TooManyLiterals(usize),
    /// Not a command name, or one this server does not know.
    #[error("unknown command {0}")]
    UnknownCommand(String),
    /// Missing, extra or malformed arguments.
    #[error("{0}")]
    Syntax(String),
    /// A string that is not UTF-8 or holds NUL.
    #[error("{0} must be UTF-8 text without NUL characters")]
    BadText(&'static str),
}

/// One argument as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// A quoted string or a literal, unescaped.
    Str(Vec<u8>),
    /// A number (HAVESPACE's size).
    Number(u64),
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `AUTHENTICATE mechanism [initial-response]`; the mechanism is upper-cased.
    Authenticate {
        mechanism: String,
        initial: Option<String>,
    },
    StartTls,
    Logout,
    Capability,
    /// `NOOP [tag]`: the tag is echoed in a `TAG` response code.
    Noop(Option<String>),
    Unauthenticate,
    HaveSpace {
        name: String,
        size: u64,
    },
    PutScript {
        name: String,
        script: String,
    },
    CheckScript(String),
    ListScripts,
    /// `SETACTIVE ""` deactivates (`None`).
    SetActive(Option<String>),
    GetScript(String),
    DeleteScript(String),
    RenameScript {
        from: String,
        to: String,
    },
}

impl Command {
    /// The command's name, for logs and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Authenticate { .. } => "AUTHENTICATE",
            Command::StartTls => "STARTTLS",
            Command::Logout => "LOGOUT",
            Command::Capability => "CAPABILITY",
            Command::Noop(_) => "NOOP",
            Command::Unauthenticate => "UNAUTHENTICATE",
            Command::HaveSpace { .. } => "HAVESPACE",
            Command::PutScript { .. } => "PUTSCRIPT",
            Command::CheckScript(_) => "CHECKSCRIPT",
            Command::ListScripts => "LISTSCRIPTS",
            Command::SetActive(_) => "SETACTIVE",
            Command::GetScript(_) => "GETSCRIPT",
            Command::DeleteScript(_) => "DELETESCRIPT",
            Command::RenameScript { .. } => "RENAMESCRIPT",
        }
    }

    /// Every command name, for tests and metrics.
    pub const NAMES: [&'static str; 14] = [
        "AUTHENTICATE",
        "STARTTLS",
        "LOGOUT",
        "CAPABILITY",
        "NOOP",
        "UNAUTHENTICATE",
        "HAVESPACE",
        "PUTSCRIPT",
        "CHECKSCRIPT",
        "LISTSCRIPTS",
        "SETACTIVE",
        "GETSCRIPT",
        "DELETESCRIPT",
        "RENAMESCRIPT",
    ];
}

/// What the framer found in the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The first `n` octets are one whole command (line end included): [`parse`] them.
    Command(usize),
    /// Drop the first `n` octets; when `Some`, the command they belong to is refused with
    /// this error (reported once; the framer may ask for more drops to reach its end).
    Discard(usize, Option<ParseError>),
    /// Nothing complete yet: read more.
    Need,
}

/// Where a command ends, across reads. One per session.
#[derive(Debug, Clone)]
pub struct Framer {
    limits: FrameLimits,
    /// Octets still to drop of a refused command's literal, then its lines until one ends
    /// without a literal; `None` while reading commands normally.
    skipping: Option<u64>,
}

impl Framer {
    pub fn new(limits: FrameLimits) -> Framer {
        Framer {
            limits,
            skipping: None,
        }
    }

    /// Forgets any command in progress (after STARTTLS the buffer is discarded).
    pub fn reset(&mut self) {
        self.skipping = None;
    }

    /// Examines `buf` (the unconsumed input) and says what to do with its start.
    pub fn next(&mut self, buf: &[u8]) -> Frame {
        if let Some(literal) = self.skipping {
            return self.skip(buf, literal);
        }
        let lim = self.limits;
        let mut pos = 0;
        let mut literals = 0;
        loop {
            let Some(i) = buf[pos..].iter().position(|&b| b == b'\n') else {
                if buf.len() - pos > lim.max_line {
                    self.skipping = Some(0);
                    return Frame::Discard(buf.len(), Some(ParseError::LineTooLong(lim.max_line)));
                }
                return Frame::Need;
            };
            let end = pos + i + 1;
            let line = &buf[pos..end];
            let marker = literal_marker(line);
            if line.len() > lim.max_line {
                // A long line that announces a literal: the literal goes too.
                self.skipping = marker.map(|(n, _)| n);
                return Frame::Discard(end, Some(ParseError::LineTooLong(lim.max_line)));
            }
            let Some((n, _)) = marker else {
                return Frame::Command(end);
            };
            literals += 1;
            let error = if n > lim.max_literal {
                Some(ParseError::LiteralTooBig {
                    size: n,
                    max: lim.max_literal,
                })
            } else if literals > lim.max_literals {
                Some(ParseError::TooManyLiterals(lim.max_literals))
            } else {
                None
            };
            if let Some(e) = error {
                self.skipping = Some(n);
                return Frame::Discard(end, Some(e));
            }
            // n ≤ max_literal, which fits in memory by construction.
            let after = end + n as usize;
            if buf.len() < after {
                return Frame::Need;
            }
            pos = after;
        }
    }

    /// Drops a refused command: `literal` more octets, then its lines.
    fn skip(&mut self, buf: &[u8], literal: u64) -> Frame {
        if buf.is_empty() {
            return Frame::Need;
        }
        if literal > 0 {
            let n = literal.min(buf.len() as u64);
            self.skipping = Some(literal - n);
            return Frame::Discard(n as usize, None);
        }
        match buf.iter().position(|&b| b == b'\n') {
            None => Frame::Discard(buf.len(), None),
            Some(i) => {
                self.skipping = literal_marker(&buf[..=i]).map(|(n, _)| n);
                Frame::Discard(i + 1, None)
            }
        }
    }
}

/// `{n}` or `{n+}` at the end of a line (before CRLF or LF): the literal's size and whether it
/// is non-synchronising. Sizes that do not fit in a `u64` count as `u64::MAX` (over any limit).
fn literal_marker(line: &[u8]) -> Option<(u64, bool)> {
    let line = strip_line_end(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let (digits, plus) = match digits.strip_suffix(b"+") {
        Some(d) => (d, true),
        None => (digits, false),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    Some((n.unwrap_or(u64::MAX), plus))
}

/// Strips CRLF or LF.
pub fn strip_line_end(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .unwrap_or(line)
}

/// A cursor over one whole command.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        matches!(self.peek(), None | Some(b'\r' | b'\n'))
            && strip_line_end(&self.buf[self.pos..]).is_empty()
    }

    fn atom(&mut self) -> &[u8] {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    /// One argument after its separating space.
    fn arg(&mut self) -> Result<Arg, ParseError> {
        match self.peek() {
            Some(b'"') => self.quoted().map(Arg::Str),
            Some(b'{') => self.literal().map(Arg::Str),
            Some(b) if b.is_ascii_digit() => {
                let digits = self.atom();
                std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .map(Arg::Number)
                    .ok_or_else(|| ParseError::Syntax("bad number".into()))
            }
            _ => Err(ParseError::Syntax(
                "expected a quoted string, a literal or a number".into(),
            )),
        }
    }

    fn quoted(&mut self) -> Result<Vec<u8>, ParseError> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(ParseError::Syntax("unterminated quoted string".into()));
            };
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => match self.peek() {
                    Some(e @ (b'"' | b'\\')) => {
                        self.pos += 1;
                        out.push(e);
                    }
                    _ => {
                        return Err(ParseError::Syntax(
                            "only \\\" and \\\\ may be escaped in a quoted string".into(),
                        ))
                    }
                },
                b'\r' | b'\n' => {
                    return Err(ParseError::Syntax("unterminated quoted string".into()))
                }
                0 => return Err(ParseError::BadText("a quoted string")),
                b => out.push(b),
            }
            if out.len() > MAX_QUOTED {
                return Err(ParseError::Syntax(format!(
                    "quoted string over {MAX_QUOTED} octets: send a literal"
                )));
            }
        }
        Ok(out)
    }

    fn literal(&mut self) -> Result<Vec<u8>, ParseError> {
        let rest = &self.buf[self.pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(ParseError::Syntax("bad literal".into()));
        };
        let Some((n, _)) = literal_marker(&rest[..=nl]) else {
            return Err(ParseError::Syntax("bad literal".into()));
        };
        // The marker must be the whole rest of the line: `{` here, `}` before the line end.
        let head = strip_line_end(&rest[..=nl]);
        if head.iter().filter(|&&b| b == b'{').count() != 1 {
            return Err(ParseError::Syntax("bad literal".into()));
        }
        let start = self.pos + nl + 1;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| start.checked_add(n))
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| ParseError::Syntax("literal shorter than announced".into()))?;
        self.pos = end;
        Ok(self.buf[start..end].to_vec())
    }
}

/// Parses one whole command (as [`Framer`] delimited it, line end included).
pub fn parse(cmd: &[u8]) -> Result<Command, ParseError> {
    let mut c = Cursor { buf: cmd, pos: 0 };
    let name = c.atom().to_ascii_uppercase();
    if name.is_empty() {
        return Err(ParseError::Syntax("expected a command name".into()));
    }
    let name = String::from_utf8(name).unwrap_or_default();
    let mut args = Vec::new();
    while !c.at_end() {
        if c.peek() != Some(b' ') {
            return Err(ParseError::Syntax(format!(
                "unexpected character after {}",
                if args.is_empty() {
                    "the command name".to_string()
                } else {
                    format!("argument {}", args.len())
                }
            )));
        }
        c.pos += 1;
        args.push(c.arg()?);
    }
    build(&name, args)
}

/// Parses a SASL response line of AUTHENTICATE (one string, RFC 5804 section 2.1), as
/// [`Framer`] delimited it. `"*"` is the client's cancellation; the caller checks it.
pub fn parse_response(line: &[u8]) -> Result<String, ParseError> {
    let mut c = Cursor { buf: line, pos: 0 };
    let arg = c.arg()?;
    if !c.at_end() {
        return Err(ParseError::Syntax(
            "expected one string as the SASL response".into(),
        ));
    }
    text(arg, "the SASL response")
}

fn text(arg: Arg, what: &'static str) -> Result<String, ParseError> {
    match arg {
        Arg::Str(b) if !b.contains(&0) => {
            String::from_utf8(b).map_err(|_| ParseError::BadText(what))
        }
        Arg::Str(_) => Err(ParseError::BadText(what)),
        Arg::Number(_) => Err(ParseError::Syntax(format!("{what} must be a string"))),
    }
}

fn build(name: &str, args: Vec<Arg>) -> Result<Command, ParseError> {
    let arity = |min: usize, max: usize| -> Result<(), ParseError> {
        if (min..=max).contains(&args.len()) {
            return Ok(());
        }
        Err(ParseError::Syntax(match (min, max) {
            (0, 0) => format!("{name} takes no arguments"),
            (a, b) if a == b => format!("{name} takes {a} argument(s)"),
            (a, b) => format!("{name} takes {a} to {b} arguments"),
        }))
    };
    let cmd = match name {
        "AUTHENTICATE" => {
            arity(1, 2)?;
            let mut it = args.into_iter();
            let mechanism = it
                .next()
                .map(|a| text(a, "the mechanism"))
                .transpose()?
                .unwrap_or_default()
                .to_ascii_uppercase();
            let initial = it
                .next()
                .map(|a| text(a, "the initial response"))
                .transpose()?;
            Command::Authenticate { mechanism, initial }
        }
        "STARTTLS" => arity(0, 0).map(|()| Command::StartTls)?,
        "LOGOUT" => arity(0, 0).map(|()| Command::Logout)?,
        "CAPABILITY" => arity(0, 0).map(|()| Command::Capability)?,
        "UNAUTHENTICATE" => arity(0, 0).map(|()| Command::Unauthenticate)?,
        "LISTSCRIPTS" => arity(0, 0).map(|()| Command::ListScripts)?,
        "NOOP" => {
            arity(0, 1)?;
            let tag = args
                .into_iter()
                .next()
                .map(|a| text(a, "the tag"))
                .transpose()?;
            Command::Noop(tag)
        }
        "HAVESPACE" => {
            arity(2, 2)?;
            let mut it = args.into_iter();
            let name = it.next().map(|a| text(a, "the script name")).transpose()?;
            let size = match it.next() {
                Some(Arg::Number(n)) => n,
                _ => {
                    return Err(ParseError::Syntax(
                        "HAVESPACE's size must be a number".into(),
                    ))
                }
            };
            Command::HaveSpace {
                name: name.unwrap_or_default(),
                size,
            }
        }
        "PUTSCRIPT" => {
            arity(2, 2)?;
            let mut it = args.into_iter();
            let name = it.next().map(|a| text(a, "the script name")).transpose()?;
            let script = it.next().map(|a| text(a, "the script")).transpose()?;
            Command::PutScript {
                name: name.unwrap_or_default(),
                script: script.unwrap_or_default(),
            }
        }
        "CHECKSCRIPT" => {
            arity(1, 1)?;
            let script = args.into_iter().next().map(|a| text(a, "the script"));
            Command::CheckScript(script.transpose()?.unwrap_or_default())
        }
        "SETACTIVE" | "GETSCRIPT" | "DELETESCRIPT" => {
            arity(1, 1)?;
            let script = args.into_iter().next().map(|a| text(a, "the script name"));
            let script = script.transpose()?.unwrap_or_default();
            match name {
                "SETACTIVE" => Command::SetActive(Some(script).filter(|s| !s.is_empty())),
                "GETSCRIPT" => Command::GetScript(script),
                _ => Command::DeleteScript(script),
            }
        }
        "RENAMESCRIPT" => {
            arity(2, 2)?;
            let mut it = args.into_iter();
            let from = it.next().map(|a| text(a, "the script name")).transpose()?;
            let to = it.next().map(|a| text(a, "the script name")).transpose()?;
            Command::RenameScript {
                from: from.unwrap_or_default(),
                to: to.unwrap_or_default(),
            }
        }
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(ParseError::UnknownCommand(shown));
        }
    };
    Ok(cmd)
}

/// A string as the server sends it: quoted when it can be, else a literal (`{n}` CRLF text).
pub struct SieveString<'a>(pub &'a str);

impl fmt::Display for SieveString<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s.len() <= MAX_QUOTED && !s.contains(['\r', '\n', '\0']) {
            f.write_str("\"")?;
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")
        } else {
            write!(f, "{{{}}}\r\n{s}", s.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: FrameLimits = FrameLimits {
        max_line: 64,
        max_literal: 100,
        max_literals: 4,
    };

    fn one(input: &[u8]) -> Result<Command, ParseError> {
        let mut f = Framer::new(LIMITS);
        match f.next(input) {
            Frame::Command(n) => {
                assert_eq!(n, input.len(), "{input:?} left input");
                parse(&input[..n])
            }
            Frame::Discard(_, Some(e)) => Err(e),
            other => panic!("{input:?}: {other:?}"),
        }
    }

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn commands() {
        let cases: Vec<(&[u8], Command)> = vec![
            (b"CAPABILITY\r\n", Command::Capability),
            (b"capability\n", Command::Capability),
            (b"STARTTLS\r\n", Command::StartTls),
            (b"Logout\r\n", Command::Logout),
            (b"NOOP\r\n", Command::Noop(None)),
            (
                b"NOOP \"STARTTLS-SYNC-42\"\r\n",
                Command::Noop(Some(s("STARTTLS-SYNC-42"))),
            ),
            (b"UNAUTHENTICATE\r\n", Command::Unauthenticate),
            (
                b"AUTHENTICATE \"plain\" \"AGEAYg==\"\r\n",
                Command::Authenticate {
                    mechanism: s("PLAIN"),
                    initial: Some(s("AGEAYg==")),
                },
            ),
            (
                b"AUTHENTICATE \"LOGIN\"\r\n",
                Command::Authenticate {
                    mechanism: s("LOGIN"),
                    initial: None,
                },
            ),
            (
                b"AUTHENTICATE \"PLAIN\" {8+}\r\nAGEAYg==\r\n",
                Command::Authenticate {
                    mechanism: s("PLAIN"),
                    initial: Some(s("AGEAYg==")),
                },
            ),
            (
                b"HAVESPACE \"myscript\" 999999\r\n",
                Command::HaveSpace {
                    name: s("myscript"),
                    size: 999_999,
                },
            ),
            (
                b"PUTSCRIPT \"a \\\"b\\\" \\\\c\" {10+}\r\nkeep;\r\nx;\n\r\n",
                Command::PutScript {
                    name: s("a \"b\" \\c"),
                    script: s("keep;\r\nx;\n"),
                },
            ),
            (
                b"PUTSCRIPT {3}\r\nabc {0}\r\n\r\n",
                Command::PutScript {
                    name: s("abc"),
                    script: s(""),
                },
            ),
            (
                b"CHECKSCRIPT \"keep;\"\r\n",
                Command::CheckScript(s("keep;")),
            ),
            (b"LISTSCRIPTS\r\n", Command::ListScripts),
            (
                b"SETACTIVE \"vacation\"\r\n",
                Command::SetActive(Some(s("vacation"))),
            ),
            (b"SETACTIVE \"\"\r\n", Command::SetActive(None)),
            (
                b"GETSCRIPT \"r\xc3\xa9gles\"\r\n",
                Command::GetScript(s("régles")),
            ),
            (b"DELETESCRIPT \"x\"\r\n", Command::DeleteScript(s("x"))),
            (
                b"RENAMESCRIPT \"a\" \"b\"\r\n",
                Command::RenameScript {
                    from: s("a"),
                    to: s("b"),
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(one(input), Ok(want), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn bad_commands() {
        type Check = fn(&ParseError) -> bool;
        let cases: Vec<(&[u8], Check)> = vec![
            (b"\r\n", |e| matches!(e, ParseError::Syntax(_))),
            (
                b"FROB\r\n",
                |e| matches!(e, ParseError::UnknownCommand(n) if n == "FROB"),
            ),
            (
                b"GETSCRIPT \"abc\r\n",
                |e| matches!(e, ParseError::Syntax(m) if m.contains("unterminated")),
            ),
            (
                b"GETSCRIPT \"a\\nb\"\r\n",
                |e| matches!(e, ParseError::Syntax(m) if m.contains("escaped")),
            ),
            (b"GETSCRIPT \"a\0b\"\r\n", |e| {
                matches!(e, ParseError::BadText(_))
            }),
            (b"GETSCRIPT {3+}\r\na\0b\r\n", |e| {
                matches!(e, ParseError::BadText(_))
            }),
            (b"GETSCRIPT \"\xff\xfe\"\r\n", |e| {
                matches!(e, ParseError::BadText(_))
            }),
            (b"GETSCRIPT abc\r\n", |e| matches!(e, ParseError::Syntax(_))),
            (
                b"GETSCRIPT\r\n",
                |e| matches!(e, ParseError::Syntax(m) if m.contains("1 argument")),
            ),
            (
                b"LISTSCRIPTS \"x\"\r\n",
                |e| matches!(e, ParseError::Syntax(m) if m.contains("no arguments")),
            ),
            (b"GETSCRIPT \"a\"\"b\"\r\n", |e| {
                matches!(e, ParseError::Syntax(_))
            }),
            (
                b"HAVESPACE \"a\" \"10\"\r\n",
                |e| matches!(e, ParseError::Syntax(m) if m.contains("number")),
            ),
            (
                b"HAVESPACE \"a\" 99999999999999999999999\r\n",
                |e| matches!(e, ParseError::Syntax(m) if m.contains("number")),
            ),
            (b"PUTSCRIPT \"a\" {101+}\r\n", |e| {
                matches!(
                    e,
                    ParseError::LiteralTooBig {
                        size: 101,
                        max: 100
                    }
                )
            }),
            (b"PUTSCRIPT \"a\" {99999999999999999999999+}\r\n", |e| {
                matches!(e, ParseError::LiteralTooBig { size: u64::MAX, .. })
            }),
            (b"NOOP {0}\r\n {0}\r\n {0}\r\n {0}\r\n {0}\r\n\r\n", |e| {
                matches!(e, ParseError::TooManyLiterals(4))
            }),
        ];
        for (input, check) in cases {
            let got = one(input);
            assert!(
                matches!(&got, Err(e) if check(e)),
                "{:?}: {got:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long = format!("GETSCRIPT \"{}\"\r\n", "x".repeat(100));
        assert_eq!(one(long.as_bytes()), Err(ParseError::LineTooLong(64)));
        let quoted = format!("NOOP {{1030}}\r\n{}\r\n", "x".repeat(1030));
        let mut f = Framer::new(FrameLimits {
            max_literal: 2000,
            ..LIMITS
        });
        assert_eq!(f.next(quoted.as_bytes()), Frame::Command(quoted.len()));
        assert!(parse(quoted.as_bytes()).is_ok());
        let quoted = format!("NOOP \"{}\"\r\n", "x".repeat(1030));
        assert!(
            matches!(parse(quoted.as_bytes()), Err(ParseError::Syntax(m)) if m.contains("literal"))
        );
    }

    /// Feeds `input` in pieces of `chunk` octets, as a socket would; returns what the session
    /// would see: commands (parsed) and errors, in order.
    fn session_view(input: &[u8], chunk: usize) -> Vec<Result<Command, ParseError>> {
        let mut f = Framer::new(LIMITS);
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let mut fed = 0;
        loop {
            match f.next(&buf) {
                Frame::Command(n) => {
                    out.push(parse(&buf[..n]));
                    buf.drain(..n);
                }
                Frame::Discard(n, e) => {
                    assert!(n > 0 && n <= buf.len());
                    buf.drain(..n);
                    out.extend(e.map(Err));
                }
                Frame::Need => {
                    if fed == input.len() {
                        return out;
                    }
                    let end = (fed + chunk).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
            }
            assert!(buf.len() <= LIMITS.max_line + 2 * (LIMITS.max_literal as usize) + 2 * chunk);
        }
    }

    #[test]
    fn refused_commands_are_skipped_whole_across_reads() {
        let script = "DELETESCRIPT \"x\"\r\n".repeat(20);
        let input = format!(
            "PUTSCRIPT \"big\" {{{}+}}\r\n{script}\r\nNOOP\r\n{}\r\nLISTSCRIPTS\r\n",
            script.len(),
            "y".repeat(200)
        );
        for chunk in [1, 3, 7, 64, 4096] {
            let got = session_view(input.as_bytes(), chunk);
            assert_eq!(
                got,
                vec![
                    Err(ParseError::LiteralTooBig {
                        size: script.len() as u64,
                        max: 100
                    }),
                    Ok(Command::Noop(None)),
                    Err(ParseError::LineTooLong(64)),
                    Ok(Command::ListScripts),
                ],
                "chunk {chunk}"
            );
        }
        // A literal split over reads, then a command in the same read.
        let input = b"PUTSCRIPT \"s\" {6+}\r\nkeep;\n\r\nLOGOUT\r\n";
        for chunk in [1, 2, 5, 100] {
            assert_eq!(
                session_view(input, chunk),
                vec![
                    Ok(Command::PutScript {
                        name: s("s"),
                        script: s("keep;\n")
                    }),
                    Ok(Command::Logout)
                ]
            );
        }
    }

    #[test]
    fn strings_out() {
        assert_eq!(SieveString("a\"b\\c").to_string(), "\"a\\\"b\\\\c\"");
        assert_eq!(SieveString("x\r\ny").to_string(), "{4}\r\nx\r\ny");
        assert_eq!(literal_marker(b"X {12+}\r\n"), Some((12, true)));
        assert_eq!(literal_marker(b"X {12}\n"), Some((12, false)));
        assert_eq!(literal_marker(b"X {}\r\n"), None);
        assert_eq!(literal_marker(b"X {1a}\r\n"), None);
        assert_eq!(literal_marker(b"X \"{1}\"\r\n"), None);
    }
}
