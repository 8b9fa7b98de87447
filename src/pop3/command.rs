//! The POP3 command parser (RFC 1939, CAPA of RFC 2449, AUTH of RFC 5034, STLS of RFC 2595).
//!
//! Sans-I/O: one command line without its line end in, a [`Command`] or a [`ParseError`] out.
//! It knows nothing of session state (USER after login, RETR before it): the session judges
//! that. Keywords are case-insensitive; arguments are separated by spaces.
//!
//! Security note: it never panics and never allocates more than the line it is given; control
//! characters and invalid UTF-8 are refused, so nothing a client sends can reach a log line or
//! a reply as a line break. The PASS argument is the rest of the line verbatim (RFC 1939 §7
//! lets a server accept spaces in passwords) and is never part of an error message.

/// One POP3 command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `USER name`.
    User(String),
    /// `PASS secret` (the rest of the line, spaces included).
    Pass(String),
    /// `AUTH [mechanism [initial-response]]`; a bare `AUTH` lists the mechanisms (as the
    /// RFC 1734 clients that still exist expect).
    Auth {
        mechanism: Option<String>,
        initial: Option<String>,
    },
    /// `STLS` (RFC 2595).
    Stls,
    /// `CAPA` (RFC 2449).
    Capa,
    Quit,
    Stat,
    /// `LIST [msg]`.
    List(Option<u32>),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    /// `TOP msg n`: the header and the first `n` body lines.
    Top(u32, u64),
    /// `UIDL [msg]`.
    Uidl(Option<u32>),
}

/// Why a line is not a command we can run; the `Display` text is the `-ERR` text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty command")]
    Empty,
    #[error("unknown command")]
    Unknown,
    /// A command of RFC 1939 this server deliberately does not offer.
    #[error("{0} is not supported")]
    NotSupported(&'static str),
    #[error("{0} needs an argument")]
    MissingArgument(&'static str),
    #[error("too many arguments to {0}")]
    TooManyArguments(&'static str),
    /// A message number or line count that is not a plain decimal number in range.
    #[error("invalid number in {0}")]
    BadNumber(&'static str),
    #[error("control characters or invalid UTF-8 in command")]
    BadText,
}

/// Longest keyword (RFC 2449 §4: 3 or 4 characters; a longer one is simply unknown).
const MAX_KEYWORD: usize = 4;

/// Parses one command line (without CRLF).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(ParseError::BadText);
    }
    let line = std::str::from_utf8(line).map_err(|_| ParseError::BadText)?;
    let (keyword, rest) = match line.split_once(' ') {
        Some((k, r)) => (k, r),
        None => (line, ""),
    };
    if keyword.is_empty() {
        return Err(if line.trim().is_empty() {
            ParseError::Empty
        } else {
            ParseError::Unknown
        });
    }
    if keyword.len() > MAX_KEYWORD {
        return Err(ParseError::Unknown);
    }
    let kw = keyword.to_ascii_uppercase();
    if kw == "PASS" {
        // The whole rest of the line: a password may hold spaces.
        return if rest.is_empty() {
            Err(ParseError::MissingArgument("PASS"))
        } else {
            Ok(Command::Pass(rest.to_string()))
        };
    }
    let args: Vec<&str> = rest.split(' ').filter(|a| !a.is_empty()).collect();
    let none = |name: &'static str, cmd: Command| {
        if args.is_empty() {
            Ok(cmd)
        } else {
            Err(ParseError::TooManyArguments(name))
        }
    };
    match kw.as_str() {
        "USER" => match args.as_slice() {
            [] => Err(ParseError::MissingArgument("USER")),
            [name] => Ok(Command::User((*name).to_string())),
            _ => Err(ParseError::TooManyArguments("USER")),
        },
        "AUTH" => match args.as_slice() {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial: None,
            }),
            [m] => Ok(Command::Auth {
                mechanism: Some(m.to_ascii_uppercase()),
                initial: None,
            }),
            [m, ir] => Ok(Command::Auth {
                mechanism: Some(m.to_ascii_uppercase()),
                initial: Some((*ir).to_string()),
            }),
            _ => Err(ParseError::TooManyArguments("AUTH")),
        },
        "STLS" => none("STLS", Command::Stls),
        "CAPA" => none("CAPA", Command::Capa),
        "QUIT" => none("QUIT", Command::Quit),
        "STAT" => none("STAT", Command::Stat),
        "NOOP" => none("NOOP", Command::Noop),
        "RSET" => none("RSET", Command::Rset),
        "LIST" => optional_msg("LIST", &args).map(Command::List),
        "UIDL" => optional_msg("UIDL", &args).map(Command::Uidl),
        "RETR" => one_msg("RETR", &args).map(Command::Retr),
        "DELE" => one_msg("DELE", &args).map(Command::Dele),
        "TOP" => match args.as_slice() {
            [] | [_] => Err(ParseError::MissingArgument("TOP")),
            [m, n] => Ok(Command::Top(number(m, "TOP")?, number(n, "TOP")?)),
            _ => Err(ParseError::TooManyArguments("TOP")),
        },
        "APOP" => Err(ParseError::NotSupported("APOP")),
        "LAST" => Err(ParseError::NotSupported("LAST")),
        _ => Err(ParseError::Unknown),
    }
}

fn optional_msg(name: &'static str, args: &[&str]) -> Result<Option<u32>, ParseError> {
    match args {
        [] => Ok(None),
        [m] => number(m, name).map(Some),
        _ => Err(ParseError::TooManyArguments(name)),
    }
}

fn one_msg(name: &'static str, args: &[&str]) -> Result<u32, ParseError> {
    match args {
        [] => Err(ParseError::MissingArgument(name)),
        [m] => number(m, name),
        _ => Err(ParseError::TooManyArguments(name)),
    }
}

/// A decimal number: digits only (no sign, no spaces), within the target type.
fn number<T: std::str::FromStr>(text: &str, name: &'static str) -> Result<T, ParseError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadNumber(name));
    }
    text.parse().map_err(|_| ParseError::BadNumber(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Command::*;
    use ParseError as E;

    #[test]
    fn table() {
        let auth = |m: Option<&str>, ir: Option<&str>| Auth {
            mechanism: m.map(str::to_string),
            initial: ir.map(str::to_string),
        };
        let cases: Vec<(&[u8], Result<Command, ParseError>)> = vec![
            (
                b"USER alice@example.org",
                Ok(User("alice@example.org".into())),
            ),
            (b"user alice", Ok(User("alice".into()))),
            (b"USER", Err(E::MissingArgument("USER"))),
            (b"USER a b", Err(E::TooManyArguments("USER"))),
            (b"PASS secret", Ok(Pass("secret".into()))),
            (b"PASS  two words ", Ok(Pass(" two words ".into()))),
            (b"PASS", Err(E::MissingArgument("PASS"))),
            (b"PASS ", Err(E::MissingArgument("PASS"))),
            (b"AUTH", Ok(auth(None, None))),
            (b"AUTH plain", Ok(auth(Some("PLAIN"), None))),
            (
                b"AUTH PLAIN AGFAAGI=",
                Ok(auth(Some("PLAIN"), Some("AGFAAGI="))),
            ),
            (b"AUTH PLAIN =", Ok(auth(Some("PLAIN"), Some("=")))),
            (b"AUTH PLAIN a b", Err(E::TooManyArguments("AUTH"))),
            (b"STLS", Ok(Stls)),
            (b"stls x", Err(E::TooManyArguments("STLS"))),
            (b"CAPA", Ok(Capa)),
            (b"QUIT", Ok(Quit)),
            (b"QUIT ", Ok(Quit)),
            (b"STAT", Ok(Stat)),
            (b"NOOP", Ok(Noop)),
            (b"RSET", Ok(Rset)),
            (b"LIST", Ok(List(None))),
            (b"LIST 2", Ok(List(Some(2)))),
            (b"LIST 0", Ok(List(Some(0)))),
            (b"LIST -1", Err(E::BadNumber("LIST"))),
            (b"LIST +1", Err(E::BadNumber("LIST"))),
            (b"LIST 4294967296", Err(E::BadNumber("LIST"))),
            (b"LIST 1 2", Err(E::TooManyArguments("LIST"))),
            (b"UIDL", Ok(Uidl(None))),
            (b"UIDL 7", Ok(Uidl(Some(7)))),
            (b"RETR 1", Ok(Retr(1))),
            (b"RETR", Err(E::MissingArgument("RETR"))),
            (b"RETR x", Err(E::BadNumber("RETR"))),
            (b"DELE 4294967295", Ok(Dele(u32::MAX))),
            (b"TOP 1 0", Ok(Top(1, 0))),
            (b"TOP 1 10", Ok(Top(1, 10))),
            (b"TOP 1", Err(E::MissingArgument("TOP"))),
            (b"TOP 1 1 1", Err(E::TooManyArguments("TOP"))),
            (b"TOP 1 99999999999999999999999", Err(E::BadNumber("TOP"))),
            (b"APOP alice 0123", Err(E::NotSupported("APOP"))),
            (b"LAST", Err(E::NotSupported("LAST"))),
            (b"", Err(E::Empty)),
            (b"   ", Err(E::Empty)),
            (b" STAT", Err(E::Unknown)),
            (b"HELO", Err(E::Unknown)),
            (b"RETRIEVE 1", Err(E::Unknown)),
            (b"STAT\0", Err(E::BadText)),
            (b"USER a\rb", Err(E::BadText)),
            (b"PASS \xff\xfe", Err(E::BadText)),
            (b"PASS p\xc3\xa9", Ok(Pass("p\u{e9}".into()))),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), want, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let alphabet = b"RETOPLISUDAHQ 0123456789\r\x00\xff.-";
            let line: Vec<u8> = (0..len)
                .map(|i| alphabet[((seed >> (i % 8 * 8)) as usize + i) % alphabet.len()])
                .collect();
            let _ = parse(&line);
        }
    }
}
