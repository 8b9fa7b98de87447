//! The SMTP/LMTP command parser (RFC 5321 with the ESMTP extensions we offer: SIZE, 8BITMIME,
//! SMTPUTF8, DSN, CHUNKING, AUTH, STARTTLS; LHLO from RFC 2033).
//!
//! Sans-I/O: [`parse`] takes one command line without its CRLF and returns a [`Command`] or a
//! typed [`ParseError`]; it knows nothing about sessions, sequencing or policy, and never
//! validates an address against the directory (it only cuts the path out of its brackets).
//!
//! Security note: every input byte is hostile. The parser never panics, never allocates more
//! than the line it was given, and rejects control characters in arguments that later end up
//! in `Received:` headers or logs.

use super::params::{mail, rcpt};
pub use super::params::{xtext_decode, xtext_encode, MailFrom, RcptTo, ReversePath};

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain`.
    Ehlo(String),
    /// `HELO domain`.
    Helo(String),
    /// `LHLO domain` (LMTP).
    Lhlo(String),
    /// `MAIL FROM:<path> [params]`.
    Mail(MailFrom),
    /// `RCPT TO:<path> [params]`.
    Rcpt(RcptTo),
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030).
    Bdat {
        /// Octets of the chunk that follow the command line.
        size: u64,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY string`: answered 252 without looking anything up.
    Vrfy,
    /// `HELP [string]`.
    Help,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// The SASL mechanism.
        mechanism: Mechanism,
        /// The initial response as sent (base64, or `=` for an empty one).
        initial: Option<String>,
    },
}

impl Command {
    /// The command's verb, upper case (`STARTTLS` for [`Command::StartTls`]): logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Lhlo(_) => "LHLO",
            Command::Mail(_) => "MAIL",
            Command::Rcpt(_) => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy => "VRFY",
            Command::Help => "HELP",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
        }
    }
}

/// SASL mechanisms offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// The de-facto `LOGIN` mechanism (username and password as two base64 lines).
    Login,
}

/// Why a command line was refused. [`super::reply`] maps each to its code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not an SMTP command at all.
    #[error("command not recognized")]
    Unknown,
    /// A real command we do not implement (EXPN, TURN, ETRN…).
    #[error("command not implemented")]
    NotImplemented,
    /// Malformed arguments.
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    /// A path that is not `<…>`.
    #[error("syntax error in address: {0}")]
    BadAddress(&'static str),
    /// An ESMTP parameter we do not know or did not advertise.
    #[error("parameter {0} not supported")]
    UnknownParameter(String),
    /// A known parameter with a bad value, or given twice.
    #[error("invalid or repeated {0} parameter")]
    BadParameter(&'static str),
    /// `AUTH` with a mechanism we do not offer.
    #[error("unsupported authentication mechanism")]
    UnknownMechanism,
}

/// Parses one command line (without CRLF).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line = std::str::from_utf8(line).map_err(|_| ParseError::Syntax("invalid UTF-8"))?;
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ParseError::Syntax("control character in command"));
    }
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let no_args = |cmd: Command| {
        if rest.trim().is_empty() {
            Ok(cmd)
        } else {
            Err(ParseError::Syntax("no parameters allowed"))
        }
    };
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" => domain_arg(rest).map(Command::Ehlo),
        "HELO" => domain_arg(rest).map(Command::Helo),
        "LHLO" => domain_arg(rest).map(Command::Lhlo),
        "MAIL" => mail(rest),
        "RCPT" => rcpt(rest),
        "DATA" => no_args(Command::Data),
        "BDAT" => bdat(rest),
        "RSET" => no_args(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(Command::Quit),
        "VRFY" if rest.trim().is_empty() => Err(ParseError::Syntax("VRFY needs an argument")),
        "VRFY" => Ok(Command::Vrfy),
        "HELP" => Ok(Command::Help),
        "STARTTLS" => no_args(Command::StartTls),
        "AUTH" => auth(rest),
        "EXPN" | "TURN" | "ETRN" | "ATRN" | "SEND" | "SOML" | "SAML" => {
            Err(ParseError::NotImplemented)
        }
        _ => Err(ParseError::Unknown),
    }
}

/// The argument of EHLO/HELO/LHLO: one printable-ASCII token (a domain or an address
/// literal). Kept only for `Received:`, so anything outside that set is refused.
fn domain_arg(rest: &str) -> Result<String, ParseError> {
    let arg = rest.trim();
    if arg.is_empty() {
        return Err(ParseError::Syntax("a domain name is required"));
    }
    if arg.contains(char::is_whitespace) || !arg.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ParseError::Syntax("invalid domain name"));
    }
    Ok(arg.to_string())
}

fn bdat(rest: &str) -> Result<Command, ParseError> {
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let size = words
        .next()
        .filter(|w| w.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|w| w.parse().ok())
        .ok_or(ParseError::Syntax("BDAT needs a chunk size"))?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(ParseError::Syntax("BDAT size [LAST]")),
    };
    if words.next().is_some() {
        return Err(ParseError::Syntax("BDAT size [LAST]"));
    }
    Ok(Command::Bdat { size, last })
}

fn auth(rest: &str) -> Result<Command, ParseError> {
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let mechanism = match words.next().map(str::to_ascii_uppercase).as_deref() {
        None => return Err(ParseError::Syntax("AUTH needs a mechanism")),
        Some("PLAIN") => Mechanism::Plain,
        Some("LOGIN") => Mechanism::Login,
        Some(_) => return Err(ParseError::UnknownMechanism),
    };
    let initial = words.next().map(str::to_string);
    if words.next().is_some() {
        return Err(ParseError::Syntax("AUTH mechanism [initial-response]"));
    }
    Ok(Command::Auth { mechanism, initial })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::envelope::{BodyType, NotifyOn, Orcpt, Ret};

    fn mail_from(sender: ReversePath) -> MailFrom {
        MailFrom {
            sender,
            size: None,
            body: None,
            smtputf8: false,
            ret: None,
            envid: None,
            auth: None,
            delivery: None,
        }
    }

    fn mbox(s: &str) -> ReversePath {
        ReversePath::Mailbox(s.into())
    }

    #[test]
    fn valid_commands() {
        let full = MailFrom {
            size: Some(1234),
            body: Some(BodyType::EightBitMime),
            smtputf8: true,
            ret: Some(Ret::Headers),
            envid: Some("QQ314159 x".into()),
            ..mail_from(mbox("a@b.org"))
        };
        let cases: Vec<(&str, Command)> =
            vec![
            ("EHLO client.example", Command::Ehlo("client.example".into())),
            ("ehlo [192.0.2.1]", Command::Ehlo("[192.0.2.1]".into())),
            ("HELO x", Command::Helo("x".into())),
            ("LHLO mx1", Command::Lhlo("mx1".into())),
            ("MAIL FROM:<>", Command::Mail(mail_from(ReversePath::Null))),
            ("mail from:<a@b.org>", Command::Mail(mail_from(mbox("a@b.org")))),
            ("MAIL FROM: <a@b.org>", Command::Mail(mail_from(mbox("a@b.org")))),
            (
                "MAIL FROM:<@r1,@r2:a@b.org>",
                Command::Mail(mail_from(mbox("a@b.org"))),
            ),
            (
                "MAIL FROM:<\"x>y\"@b.org>",
                Command::Mail(mail_from(mbox("\"x>y\"@b.org"))),
            ),
            (
                "MAIL FROM:<a@b.org> size=1234 BODY=8bitmime SMTPUTF8 RET=HDRS ENVID=QQ314159+20x",
                Command::Mail(full),
            ),
            (
                "MAIL FROM:<a@b.org> XDELIVERY=n1.0123+2Fx",
                Command::Mail(MailFrom {
                    delivery: Some("n1.0123/x".into()),
                    ..mail_from(mbox("a@b.org"))
                }),
            ),
            (
                "MAIL FROM:<a@b.org> AUTH=<>",
                Command::Mail(MailFrom {
                    auth: Some("<>".into()),
                    ..mail_from(mbox("a@b.org"))
                }),
            ),
            (
                "RCPT TO:<c@d.org>",
                Command::Rcpt(RcptTo {
                    recipient: "c@d.org".into(),
                    notify: None,
                    orcpt: None,
                }),
            ),
            (
                "RCPT TO:<c@d.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;c+2Bx@d.org",
                Command::Rcpt(RcptTo {
                    recipient: "c@d.org".into(),
                    notify: Some(NotifyOn {
                        success: true,
                        failure: false,
                        delay: true,
                    }),
                    orcpt: Some(Orcpt {
                        addr_type: "rfc822".into(),
                        address: "c+x@d.org".into(),
                    }),
                }),
            ),
            (
                "RCPT TO:<c@d.org> NOTIFY=never",
                Command::Rcpt(RcptTo {
                    recipient: "c@d.org".into(),
                    notify: Some(NotifyOn::default()),
                    orcpt: None,
                }),
            ),
            ("DATA", Command::Data),
            ("BDAT 0 LAST", Command::Bdat { size: 0, last: true }),
            ("bdat 1000", Command::Bdat { size: 1000, last: false }),
            ("RSET", Command::Rset),
            ("NOOP anything", Command::Noop),
            ("QUIT", Command::Quit),
            ("VRFY bob", Command::Vrfy),
            ("HELP", Command::Help),
            ("STARTTLS", Command::StartTls),
            (
                "AUTH PLAIN AGFAYg==",
                Command::Auth {
                    mechanism: Mechanism::Plain,
                    initial: Some("AGFAYg==".into()),
                },
            ),
            (
                "auth login",
                Command::Auth {
                    mechanism: Mechanism::Login,
                    initial: None,
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line.as_bytes()), Ok(want), "{line}");
        }
    }

    #[test]
    fn invalid_commands() {
        use ParseError::*;
        let cases: Vec<(&[u8], ParseError)> = vec![
            (b"", Unknown),
            (b"FOO bar", Unknown),
            (b"EXPN staff", NotImplemented),
            (b"EHLO", Syntax("a domain name is required")),
            (b"EHLO a\x01b", Syntax("control character in command")),
            (b"EHLO caf\xc3\xa9", Syntax("invalid domain name")),
            (b"EHLO \xff", Syntax("invalid UTF-8")),
            (b"MAIL TO:<a@b.org>", Syntax("use MAIL FROM:<address>")),
            (b"MAIL FROM:a@b.org", BadAddress("use <address>")),
            (b"MAIL FROM:<a@b.org", BadAddress("missing '>'")),
            (b"MAIL FROM:<a@b.org>x", BadAddress("junk after '>'")),
            (b"MAIL FROM:<a b@c.org>", BadAddress("space in address")),
            (b"MAIL FROM:<@r1a@b.org>", BadAddress("bad source route")),
            (b"MAIL FROM:<a@b.org> SIZE=x", BadParameter("SIZE")),
            (
                b"MAIL FROM:<a@b.org> SIZE=99999999999999999999",
                BadParameter("SIZE"),
            ),
            (b"MAIL FROM:<a@b.org> SIZE=1 SIZE=2", BadParameter("SIZE")),
            (b"MAIL FROM:<a@b.org> BODY=BINARYMIME", BadParameter("BODY")),
            (b"MAIL FROM:<a@b.org> SIZE", BadParameter("value missing")),
            (
                b"MAIL FROM:<a@b.org> SMTPUTF8=yes",
                BadParameter("SMTPUTF8"),
            ),
            (b"MAIL FROM:<a@b.org> ENVID=a=b", BadParameter("ENVID")),
            (b"MAIL FROM:<a@b.org> ENVID=+zz", BadParameter("ENVID")),
            (b"MAIL FROM:<a@b.org> XDELIVERY=", BadParameter("XDELIVERY")),
            (
                b"MAIL FROM:<a@b.org> XDELIVERY=a XDELIVERY=b",
                BadParameter("XDELIVERY"),
            ),
            (
                b"MAIL FROM:<a@b.org> XFORWARD=1",
                UnknownParameter("XFORWARD".into()),
            ),
            (b"RCPT TO:<>", BadAddress("empty recipient")),
            (b"RCPT FROM:<a@b.org>", Syntax("use RCPT TO:<address>")),
            (
                b"RCPT TO:<a@b.org> NOTIFY=NEVER,SUCCESS",
                BadParameter("NOTIFY"),
            ),
            (
                b"RCPT TO:<a@b.org> NOTIFY=SUCCESS,SUCCESS",
                BadParameter("NOTIFY"),
            ),
            (b"RCPT TO:<a@b.org> ORCPT=rfc822", BadParameter("ORCPT")),
            (b"RCPT TO:<a@b.org> FOO", UnknownParameter("FOO".into())),
            (b"DATA now", Syntax("no parameters allowed")),
            (b"BDAT", Syntax("BDAT needs a chunk size")),
            (b"BDAT -1", Syntax("BDAT needs a chunk size")),
            (b"BDAT 10 FIRST", Syntax("BDAT size [LAST]")),
            (b"BDAT 10 LAST x", Syntax("BDAT size [LAST]")),
            (
                b"BDAT 99999999999999999999",
                Syntax("BDAT needs a chunk size"),
            ),
            (b"VRFY", Syntax("VRFY needs an argument")),
            (b"STARTTLS now", Syntax("no parameters allowed")),
            (b"AUTH CRAM-MD5", UnknownMechanism),
            (b"AUTH", Syntax("AUTH needs a mechanism")),
            (
                b"AUTH PLAIN a b",
                Syntax("AUTH mechanism [initial-response]"),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), Err(want), "{}", String::from_utf8_lossy(line));
        }
    }
}
