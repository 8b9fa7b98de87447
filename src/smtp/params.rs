//! The ESMTP side of MAIL and RCPT: cutting the path out of its brackets and parsing the
//! parameters we advertise (SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH, NOTIFY, ORCPT), with the
//! xtext encoding of RFC 3461.
//!
//! Sans-I/O like the rest of the parser: text in, values or [`ParseError`] out. It never
//! validates an address beyond its brackets (the session does, with
//! [`crate::directory::Address`]) and never decides policy.
//!
//! Security note: decoded DSN values are bounded ([`MAX_ENVID`], [`MAX_ORCPT`]) and must be
//! printable, so they can be stored and relayed without re-checking.

use super::command::{Command, ParseError};
use super::envelope::{BodyType, NotifyOn, Orcpt, Ret};

/// Longest `ENVID` value once decoded (RFC 3461 §4.4).
pub const MAX_ENVID: usize = 100;
/// Longest `ORCPT` address once decoded (RFC 3461 §4.2 allows 500 octets).
pub const MAX_ORCPT: usize = 500;
/// Longest `XDELIVERY` id once decoded.
pub const MAX_DELIVERY_ID: usize = 128;

/// The reverse path of `MAIL FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>`: a bounce or other notification.
    Null,
    /// The mailbox as written between the brackets, source route removed.
    Mailbox(String),
}

/// `MAIL FROM` and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFrom {
    /// The sender.
    pub sender: ReversePath,
    /// `SIZE=` (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=` (RFC 6152).
    pub body: Option<BodyType>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `RET=` (RFC 3461).
    pub ret: Option<Ret>,
    /// `ENVID=`, xtext-decoded (RFC 3461).
    pub envid: Option<String>,
    /// `AUTH=` (RFC 4954 §5), xtext-decoded; accepted and ignored.
    pub auth: Option<String>,
    /// `XDELIVERY=` (LMTP only, our own extension), xtext-decoded: the sending queue's id for
    /// this delivery, so the store stores a retried delivery once (see `store::once`).
    pub delivery: Option<String>,
}

/// `RCPT TO` and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptTo {
    /// The recipient as written between the brackets, source route removed.
    pub recipient: String,
    /// `NOTIFY=` (RFC 3461); `Some` with every flag false means `NEVER`.
    pub notify: Option<NotifyOn>,
    /// `ORCPT=` (RFC 3461), xtext-decoded.
    pub orcpt: Option<Orcpt>,
}

/// Strips `keyword` (case-insensitive, e.g. `FROM:`) from the start of `rest`.
fn strip_keyword<'a>(rest: &'a str, keyword: &str) -> Option<&'a str> {
    let head = rest.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| &rest[keyword.len()..])
}

/// Splits `<path> params` into the path's content (source route removed) and the rest.
/// Tolerates one space after the colon, as most servers do.
fn path(rest: &str) -> Result<(String, &str), ParseError> {
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let inner = rest
        .strip_prefix('<')
        .ok_or(ParseError::BadAddress("use <address>"))?;
    // Find the closing bracket outside quoted strings.
    let mut quoted = false;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let end = end.ok_or(ParseError::BadAddress("missing '>'"))?;
    let mut mailbox = &inner[..end];
    // A source route (`@a,@b:user@c`) is obsolete and ignored (RFC 5321 §4.1.1.3).
    if mailbox.starts_with('@') {
        let colon = mailbox
            .find(':')
            .ok_or(ParseError::BadAddress("bad source route"))?;
        mailbox = &mailbox[colon + 1..];
    }
    if mailbox.contains(char::is_whitespace) {
        return Err(ParseError::BadAddress("space in address"));
    }
    let after = &inner[end + 1..];
    if !(after.is_empty() || after.starts_with(' ')) {
        return Err(ParseError::BadAddress("junk after '>'"));
    }
    Ok((mailbox.to_string(), after))
}

/// Iterates `KEY[=VALUE]` parameters, keyword upper-cased.
fn params(rest: &str) -> impl Iterator<Item = (String, Option<&str>)> {
    rest.split(' ')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
            None => (p.to_ascii_uppercase(), None),
        })
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(ParseError::BadParameter(name));
    }
    *slot = Some(value);
    Ok(())
}

pub(super) fn mail(rest: &str) -> Result<Command, ParseError> {
    let rest = strip_keyword(rest, "FROM:").ok_or(ParseError::Syntax("use MAIL FROM:<address>"))?;
    let (mailbox, rest) = path(rest)?;
    let sender = if mailbox.is_empty() {
        ReversePath::Null
    } else {
        ReversePath::Mailbox(mailbox)
    };
    let mut m = MailFrom {
        sender,
        size: None,
        body: None,
        smtputf8: false,
        ret: None,
        envid: None,
        auth: None,
        delivery: None,
    };
    for (key, value) in params(rest) {
        match (key.as_str(), value) {
            ("SIZE", Some(v)) => {
                let n = v.parse().map_err(|_| ParseError::BadParameter("SIZE"))?;
                set_once(&mut m.size, n, "SIZE")?;
            }
            ("BODY", Some(v)) => {
                let body = match v.to_ascii_uppercase().as_str() {
                    "7BIT" => BodyType::SevenBit,
                    "8BITMIME" => BodyType::EightBitMime,
                    _ => return Err(ParseError::BadParameter("BODY")),
                };
                set_once(&mut m.body, body, "BODY")?;
            }
            ("SMTPUTF8", None) if !m.smtputf8 => m.smtputf8 = true,
            ("SMTPUTF8", _) => return Err(ParseError::BadParameter("SMTPUTF8")),
            ("RET", Some(v)) => {
                let ret = match v.to_ascii_uppercase().as_str() {
                    "FULL" => Ret::Full,
                    "HDRS" => Ret::Headers,
                    _ => return Err(ParseError::BadParameter("RET")),
                };
                set_once(&mut m.ret, ret, "RET")?;
            }
            ("ENVID", Some(v)) => {
                let id = xtext_decode(v).ok_or(ParseError::BadParameter("ENVID"))?;
                if id.is_empty() || id.len() > MAX_ENVID {
                    return Err(ParseError::BadParameter("ENVID"));
                }
                set_once(&mut m.envid, id, "ENVID")?;
            }
            ("AUTH", Some(v)) => {
                let who = xtext_decode(v).ok_or(ParseError::BadParameter("AUTH"))?;
                set_once(&mut m.auth, who, "AUTH")?;
            }
            ("XDELIVERY", Some(v)) => {
                let id = xtext_decode(v).ok_or(ParseError::BadParameter("XDELIVERY"))?;
                if id.is_empty() || id.len() > MAX_DELIVERY_ID {
                    return Err(ParseError::BadParameter("XDELIVERY"));
                }
                set_once(&mut m.delivery, id, "XDELIVERY")?;
            }
            ("SIZE" | "BODY" | "RET" | "ENVID" | "AUTH" | "XDELIVERY", None) => {
                return Err(ParseError::BadParameter("value missing"))
            }
            _ => return Err(ParseError::UnknownParameter(key)),
        }
    }
    Ok(Command::Mail(m))
}

pub(super) fn rcpt(rest: &str) -> Result<Command, ParseError> {
    let rest = strip_keyword(rest, "TO:").ok_or(ParseError::Syntax("use RCPT TO:<address>"))?;
    let (recipient, rest) = path(rest)?;
    if recipient.is_empty() {
        return Err(ParseError::BadAddress("empty recipient"));
    }
    let mut r = RcptTo {
        recipient,
        notify: None,
        orcpt: None,
    };
    for (key, value) in params(rest) {
        match (key.as_str(), value) {
            ("NOTIFY", Some(v)) => set_once(&mut r.notify, notify(v)?, "NOTIFY")?,
            ("ORCPT", Some(v)) => set_once(&mut r.orcpt, orcpt(v)?, "ORCPT")?,
            ("NOTIFY" | "ORCPT", None) => return Err(ParseError::BadParameter("value missing")),
            _ => return Err(ParseError::UnknownParameter(key)),
        }
    }
    Ok(Command::Rcpt(r))
}

/// `NEVER`, or a comma list of `SUCCESS`, `FAILURE`, `DELAY` (RFC 3461 §4.1).
fn notify(v: &str) -> Result<NotifyOn, ParseError> {
    let bad = ParseError::BadParameter("NOTIFY");
    if v.eq_ignore_ascii_case("NEVER") {
        return Ok(NotifyOn::default());
    }
    let mut n = NotifyOn::default();
    for item in v.split(',') {
        let flag = match item.to_ascii_uppercase().as_str() {
            "SUCCESS" => &mut n.success,
            "FAILURE" => &mut n.failure,
            "DELAY" => &mut n.delay,
            _ => return Err(bad),
        };
        if *flag {
            return Err(bad);
        }
        *flag = true;
    }
    Ok(n)
}

/// `addr-type;xtext` (RFC 3461 §4.2).
fn orcpt(v: &str) -> Result<Orcpt, ParseError> {
    let bad = ParseError::BadParameter("ORCPT");
    let (kind, addr) = v.split_once(';').ok_or(bad.clone())?;
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(bad);
    }
    let address = xtext_decode(addr).ok_or(bad.clone())?;
    if address.is_empty() || address.len() > MAX_ORCPT {
        return Err(bad);
    }
    Ok(Orcpt {
        addr_type: kind.to_ascii_lowercase(),
        address,
    })
}

/// Decodes xtext (RFC 3461 §4): printable ASCII except `+` and `=`, with `+XX` hex escapes.
/// `None` when malformed, not UTF-8, or when it decodes to a control character (a CRLF in an
/// ENVID must never reach a DSN's header).
pub fn xtext_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex
                    .bytes()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
                {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            c @ b'!'..=b'~' if c != b'=' => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    let text = String::from_utf8(out).ok()?;
    (!text.chars().any(char::is_control)).then_some(text)
}

/// Encodes `s` as xtext, for relaying `ENVID` and `ORCPT` onwards.
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext_round_trip() {
        for s in ["plain", "a+b=c d", "é", "", "\"q\"@x"] {
            assert_eq!(xtext_decode(&xtext_encode(s)).as_deref(), Some(s));
        }
        assert_eq!(xtext_decode("+4"), None);
        assert_eq!(xtext_decode("+4a"), None);
        assert_eq!(xtext_decode("a b"), None);
        assert_eq!(xtext_decode("id+0D+0ABcc:x"), None);
        assert_eq!(xtext_decode("+C3+A9").as_deref(), Some("é"));
    }
}
