//! SMTP/LMTP replies: a code, an enhanced status code (RFC 3463) and text, formatted as the
//! wire expects — and the one place where every error of this module becomes a reply code.
//!
//! This file must never decide policy: it only maps a decision (a parse error, a verdict, a
//! queue or store failure) to its code. Enhanced status codes go on every reply except the
//! 220 greeting, the EHLO/LHLO/HELO response and the 334/354 intermediate replies, where
//! RFC 2034 §4 and RFC 3463 (no class 3) forbid them.
//!
//! Security note: reply text may carry strings from other components (a queue's error
//! message); [`Reply::write_to`] replaces control characters so no text can end a reply line
//! early and inject a second reply.

use std::fmt;
use std::io;

use super::command::ParseError;
use super::data::ContentError;
use super::policy::{AcceptError, AuthFailure, DeliveryError, Verdict};

/// An enhanced status code (RFC 3463): class.subject.detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enhanced(pub u8, pub u16, pub u16);

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One reply, possibly multi-line (lines separated by `\n` in `text`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The enhanced status, on every reply that RFC 2034 allows it on.
    pub status: Option<Enhanced>,
    /// Human-readable text; `\n` separates the lines of a multi-line reply.
    pub text: String,
}

impl Reply {
    /// A reply with an enhanced status code.
    pub fn new(code: u16, status: Enhanced, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: Some(status),
            text: text.into(),
        }
    }

    /// A reply without one (greeting, EHLO response, 334, 354).
    pub fn bare(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: None,
            text: text.into(),
        }
    }

    /// Whether the client should read this as success (2xx) or an intermediate step (3xx).
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Whether the reply blames the client in a way that counts toward the session's error
    /// limit: syntax, sequence, unknown commands and parameters, missing authentication,
    /// unknown or refused addresses, relay attempts. Our own temporary failures, size and
    /// content verdicts and AUTH failures (limited separately) do not count.
    pub fn counts_as_error(&self) -> bool {
        matches!(self.code, 500..=504 | 530 | 550 | 553 | 555)
            || (self.code == 554
                && matches!(self.status, Some(Enhanced(5, 7, 1) | Enhanced(5, 5, 1))))
    }

    /// Appends the reply in wire format.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut lines = self.text.split('\n').peekable();
        loop {
            let line = lines.next().unwrap_or_default();
            let last = lines.peek().is_none();
            out.extend_from_slice(self.code.to_string().as_bytes());
            out.push(if last { b' ' } else { b'-' });
            if let Some(status) = self.status {
                out.extend_from_slice(status.to_string().as_bytes());
                out.push(b' ');
            }
            out.extend(
                line.bytes()
                    .map(|b| if b < 0x20 || b == 0x7f { b' ' } else { b }),
            );
            out.extend_from_slice(b"\r\n");
            if last {
                break;
            }
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        self.write_to(&mut out);
        f.write_str(String::from_utf8_lossy(&out).trim_end())
    }
}

/// Out-of-sequence command (RFC 5321 503 with 5.5.1).
pub(crate) fn bad_sequence(text: &str) -> Reply {
    Reply::new(503, Enhanced(5, 5, 1), text)
}

/// Storage trouble while spooling a message: a full disk or quota is `452 4.3.1` (the client
/// retries later, nothing is lost), anything else a temporary `451 4.3.0`.
pub(crate) fn storage_error(e: &io::Error) -> Reply {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            Reply::new(452, Enhanced(4, 3, 1), "insufficient system storage")
        }
        _ => Reply::new(451, Enhanced(4, 3, 0), "local error in processing"),
    }
}

impl From<&ParseError> for Reply {
    fn from(e: &ParseError) -> Reply {
        let text = e.to_string();
        match e {
            ParseError::Unknown => Reply::new(500, Enhanced(5, 5, 2), text),
            ParseError::NotImplemented => Reply::new(502, Enhanced(5, 5, 1), text),
            ParseError::UnknownParameter(_) => Reply::new(555, Enhanced(5, 5, 4), text),
            ParseError::UnknownMechanism => Reply::new(504, Enhanced(5, 5, 4), text),
            ParseError::BadAddress(_) => Reply::new(501, Enhanced(5, 1, 3), text),
            ParseError::Syntax(_) | ParseError::BadParameter(_) => {
                Reply::new(501, Enhanced(5, 5, 4), text)
            }
        }
    }
}

impl From<&ContentError> for Reply {
    fn from(e: &ContentError) -> Reply {
        let text = e.to_string();
        match e {
            ContentError::TooBig(_) => Reply::new(552, Enhanced(5, 3, 4), text),
            ContentError::BareNewline => Reply::new(500, Enhanced(5, 5, 2), text),
            ContentError::LineTooLong(_) | ContentError::Nul | ContentError::EightBit => {
                Reply::new(554, Enhanced(5, 6, 0), text)
            }
        }
    }
}

impl Verdict {
    /// The reply to a refused MAIL or RCPT (or a refused `From:` at the end of DATA).
    /// `what` names the address for the text.
    pub(crate) fn reply(&self, what: &str) -> Reply {
        match self {
            Verdict::Accept => Reply::new(250, Enhanced(2, 1, 0), format!("{what} OK")),
            Verdict::UnknownUser => Reply::new(
                550,
                Enhanced(5, 1, 1),
                format!("{what}: recipient address rejected: user unknown"),
            ),
            Verdict::Disabled => Reply::new(
                550,
                Enhanced(5, 2, 1),
                format!("{what}: mailbox disabled, not accepting messages"),
            ),
            Verdict::RelayDenied => Reply::new(
                554,
                Enhanced(5, 7, 1),
                format!("{what}: relay access denied"),
            ),
            Verdict::NotOwned => Reply::new(
                553,
                Enhanced(5, 7, 1),
                format!("{what}: sender address not owned by the authenticated user"),
            ),
            Verdict::AuthRequired => Reply::new(530, Enhanced(5, 7, 0), "authentication required"),
            Verdict::Loop => Reply::new(
                550,
                Enhanced(5, 4, 6),
                format!("{what}: alias expansion too deep (routing loop)"),
            ),
            Verdict::TempFail(_) => Reply::new(
                451,
                Enhanced(4, 3, 0),
                format!("{what}: temporary lookup failure, try again later"),
            ),
        }
    }
}

impl From<&AuthFailure> for Reply {
    fn from(e: &AuthFailure) -> Reply {
        match e {
            AuthFailure::Invalid => {
                Reply::new(535, Enhanced(5, 7, 8), "authentication credentials invalid")
            }
            AuthFailure::Temporary(_) => {
                Reply::new(454, Enhanced(4, 7, 0), "temporary authentication failure")
            }
        }
    }
}

impl From<&AcceptError> for Reply {
    fn from(e: &AcceptError) -> Reply {
        match e {
            AcceptError::NoSpace => {
                Reply::new(452, Enhanced(4, 3, 1), "insufficient system storage")
            }
            AcceptError::Temporary(text) => Reply::new(
                451,
                Enhanced(4, 3, 0),
                format!("local error in processing: {text}"),
            ),
            AcceptError::Permanent(text) => {
                Reply::new(554, Enhanced(5, 3, 0), format!("message refused: {text}"))
            }
        }
    }
}

impl DeliveryError {
    /// The LMTP reply for one recipient.
    pub(crate) fn reply(&self, rcpt: &str) -> Reply {
        match self {
            DeliveryError::QuotaExceeded => Reply::new(
                452,
                Enhanced(4, 2, 2),
                format!("<{rcpt}> mailbox full, over quota"),
            ),
            DeliveryError::NoSpace => Reply::new(
                452,
                Enhanced(4, 3, 1),
                format!("<{rcpt}> insufficient system storage"),
            ),
            DeliveryError::UnknownUser => {
                Reply::new(550, Enhanced(5, 1, 1), format!("<{rcpt}> user unknown"))
            }
            DeliveryError::Temporary(text) => Reply::new(
                451,
                Enhanced(4, 3, 0),
                format!("<{rcpt}> temporary failure: {text}"),
            ),
            DeliveryError::Permanent(text) => Reply::new(
                554,
                Enhanced(5, 3, 0),
                format!("<{rcpt}> delivery failed: {text}"),
            ),
            DeliveryError::Rejected(reason) => {
                Reply::new(550, Enhanced(5, 7, 1), reject_text(reason))
            }
        }
    }
}

/// A Sieve reject reason as one reply line: printable ASCII, at most 200 characters (the
/// script's text is user input; a line break would forge further replies).
fn reject_text(reason: &str) -> String {
    let mut out: String = reason
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if out.len() > 200 {
        out.truncate(200);
    }
    if out.is_empty() {
        out.push_str("rejected by the recipient's filter");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Reply) -> String {
        let mut out = Vec::new();
        r.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_single_multi_and_bare_replies() {
        let cases = [
            (Reply::new(250, Enhanced(2, 0, 0), "OK"), "250 2.0.0 OK\r\n"),
            (Reply::bare(354, "go ahead"), "354 go ahead\r\n"),
            (
                Reply::bare(250, "mx.example\nPIPELINING\nDSN"),
                "250-mx.example\r\n250-PIPELINING\r\n250 DSN\r\n",
            ),
            (
                Reply::new(451, Enhanced(4, 3, 0), "a\rb\u{1}c"),
                "451 4.3.0 a b c\r\n",
            ),
            (Reply::bare(334, ""), "334 \r\n"),
        ];
        for (reply, want) in cases {
            assert_eq!(wire(&reply), want);
        }
    }

    #[test]
    fn sieve_reject_reason_is_one_clean_line() {
        let r =
            DeliveryError::Rejected("No thanks.\r\n250 2.0.0 forged\tline é".into()).reply("a@b.c");
        assert_eq!(wire(&r), "550 5.7.1 No thanks. 250 2.0.0 forged line\r\n");
        let long = DeliveryError::Rejected("x".repeat(1000)).reply("a@b.c");
        assert!(wire(&long).len() < 220);
        let empty = DeliveryError::Rejected("\n".into()).reply("a@b.c");
        assert_eq!(
            wire(&empty),
            "550 5.7.1 rejected by the recipient's filter\r\n"
        );
    }

    #[test]
    fn client_mistakes_count_and_our_failures_do_not() {
        let counted = [
            Reply::new(500, Enhanced(5, 5, 2), ""),
            Reply::new(530, Enhanced(5, 7, 0), ""),
            Verdict::UnknownUser.reply("x"),
            Verdict::RelayDenied.reply("x"),
            Reply::new(554, Enhanced(5, 5, 1), "no valid recipients"),
        ];
        let not_counted = [
            Reply::new(250, Enhanced(2, 0, 0), ""),
            Reply::from(&ContentError::TooBig(1)),
            Reply::from(&ContentError::Nul),
            Reply::from(&AuthFailure::Invalid),
            Reply::from(&AcceptError::Permanent("x".into())),
            Reply::new(452, Enhanced(4, 5, 3), ""),
        ];
        assert!(counted.iter().all(Reply::counts_as_error));
        assert!(!not_counted.iter().any(Reply::counts_as_error));
    }

    #[test]
    fn error_mapping_is_one_table() {
        let cases: Vec<(Reply, u16, Enhanced)> = vec![
            ((&ParseError::Unknown).into(), 500, Enhanced(5, 5, 2)),
            (
                (&ParseError::UnknownParameter("X".into())).into(),
                555,
                Enhanced(5, 5, 4),
            ),
            ((&ContentError::TooBig(10)).into(), 552, Enhanced(5, 3, 4)),
            ((&ContentError::Nul).into(), 554, Enhanced(5, 6, 0)),
            (
                Verdict::UnknownUser.reply("<a@b.c>"),
                550,
                Enhanced(5, 1, 1),
            ),
            (Verdict::NotOwned.reply("<a@b.c>"), 553, Enhanced(5, 7, 1)),
            ((&AuthFailure::Invalid).into(), 535, Enhanced(5, 7, 8)),
            ((&AcceptError::NoSpace).into(), 452, Enhanced(4, 3, 1)),
            (
                DeliveryError::QuotaExceeded.reply("a@b.c"),
                452,
                Enhanced(4, 2, 2),
            ),
            (
                DeliveryError::Rejected("go away".into()).reply("a@b.c"),
                550,
                Enhanced(5, 7, 1),
            ),
            (
                storage_error(&io::Error::from(io::ErrorKind::StorageFull)),
                452,
                Enhanced(4, 3, 1),
            ),
            (
                storage_error(&io::Error::from(io::ErrorKind::PermissionDenied)),
                451,
                Enhanced(4, 3, 0),
            ),
        ];
        for (reply, code, status) in cases {
            assert_eq!((reply.code, reply.status), (code, Some(status)), "{reply}");
        }
    }
}
