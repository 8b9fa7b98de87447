//! Building IMAP response text: strings as quoted strings or literals, `NIL`, flag lists,
//! response codes, and the mapping of store errors to tagged `NO` responses (in one place).
//! No I/O: everything appends to a byte buffer.

use crate::store::{Flags, StoreError};

/// Appends `s` as a quoted string if it can be one, else as a literal.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() < 1024 && s.iter().all(|&b| (0x20..0x7f).contains(&b));
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

/// Appends `{n}\r\n` and the bytes.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// `NIL` or the string.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// A mailbox name for LIST/STATUS: an atom-safe name as a quoted string, else a literal.
pub fn mailbox(out: &mut Vec<u8>, wire_name: &str) {
    string(out, wire_name.as_bytes());
}

/// `(\Seen $Junk)`, plus `\Recent` never (see the session).
pub fn flags(out: &mut Vec<u8>, f: &Flags) {
    out.extend_from_slice(f.to_string().as_bytes());
}

/// A tagged or untagged status response.
pub fn status_line(out: &mut Vec<u8>, tag: &str, status: &str, text: &str) {
    out.extend_from_slice(tag.as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.as_bytes());
    out.push(b' ');
    // Never let client-influenced text break the line.
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// How a store error is answered: `NO [CODE] text` (or `BAD` for a client mistake).
pub fn store_error(e: &StoreError) -> (&'static str, String) {
    use StoreError as E;
    let (kind, code) = match e {
        E::MailboxNotFound(_) => ("NO", "[NONEXISTENT] "),
        E::MailboxExists(_) => ("NO", "[ALREADYEXISTS] "),
        E::QuotaExceeded { .. } => ("NO", "[OVERQUOTA] "),
        E::TooLarge { .. } => ("NO", "[TOOBIG] "),
        E::NoSpace { .. } => ("NO", "[SERVERBUG] "),
        E::InvalidName { .. } | E::InvalidKeyword { .. } => ("NO", "[CANNOT] "),
        E::NotPermitted(_) => ("NO", "[CANNOT] "),
        E::TooManyMailboxes(_) => ("NO", "[LIMIT] "),
        E::NoSuchMessage(_) => ("NO", "[EXPUNGEISSUED] "),
        E::Unavailable(_) | E::Io { .. } | E::Internal(_) | E::Corrupt { .. } => {
            ("NO", "[UNAVAILABLE] ")
        }
        _ => ("NO", ""),
    };
    let text = match e {
        // Paths are for operators, not clients.
        E::NoSpace { .. } => "the mail volume is full, try again later".to_string(),
        E::Io { .. } | E::Internal(_) | E::Corrupt { .. } | E::Unavailable(_) => {
            tracing::warn!(error = %e, "store error in an IMAP session");
            "server error, try again later".to_string()
        }
        _ => e.to_string(),
    };
    (kind, format!("{code}{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings() {
        let cases: [(&[u8], &str); 5] = [
            (b"abc", "\"abc\""),
            (b"a\"b\\c", "\"a\\\"b\\\\c\""),
            (b"", "\"\""),
            (b"line\r\nbreak", "{11}\r\nline\r\nbreak"),
            ("é".as_bytes(), "{2}\r\né"),
        ];
        for (s, want) in cases {
            let mut out = Vec::new();
            string(&mut out, s);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
        let mut out = Vec::new();
        status_line(&mut out, "a1", "NO", "x\r\ny");
        assert_eq!(out, b"a1 NO x  y\r\n");
    }

    #[test]
    fn store_errors_map_to_codes() {
        let (k, t) = store_error(&StoreError::QuotaExceeded {
            used: 1,
            limit: 2,
            needed: 3,
        });
        assert_eq!(k, "NO");
        assert!(t.starts_with("[OVERQUOTA]"), "{t}");
        let (_, t) = store_error(&StoreError::MailboxNotFound("x".into()));
        assert!(t.starts_with("[NONEXISTENT]"));
    }
}
