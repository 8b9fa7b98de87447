//! Building IMAP response text: strings as quoted strings or literals, `NIL`, flag lists,
//! response codes, and the mapping of store errors to tagged `NO` responses (in one place).
//! No I/O: everything appends to a byte buffer.

use crate::store::{Flags, StoreError};

use super::mutf7;

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

/// Appends `s` as a literal8 (`~{n}`, RFC 3516) when it holds NUL, else as a literal.
pub fn literal8(out: &mut Vec<u8>, s: &[u8]) {
    if s.contains(&0) {
        out.push(b'~');
    }
    literal(out, s);
}

/// A mailbox name as the client sent it (LIST/STATUS echo): a quoted string if it can be
/// one, else a literal.
pub fn mailbox(out: &mut Vec<u8>, wire_name: &str) {
    string(out, wire_name.as_bytes());
}

/// A stored (UTF-8) mailbox name for a session: modified UTF-7 for IMAP4rev1, UTF-8 — quoted,
/// as IMAP4rev2 and RFC 6855 allow — once the session enabled IMAP4rev2 or UTF8=ACCEPT.
pub fn mailbox_name(out: &mut Vec<u8>, name: &str, utf8: bool) {
    if utf8 {
        utf8_string(out, name);
    } else {
        string(out, mutf7::encode(name).as_bytes());
    }
}

/// UTF-8 text for a session that enabled it (RFC 6855 §3, IMAP4rev2's `QUOTED-CHAR`): a quoted
/// string if it can be one, else a literal.
pub fn utf8_string(out: &mut Vec<u8>, s: &str) {
    if s.len() < 1024 && !s.chars().any(char::is_control) {
        out.push(b'"');
        for b in s.bytes() {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, s.as_bytes());
    }
}

/// `(\Seen $Junk)`, with `\Recent` first when the message is recent in this session.
pub fn flags(out: &mut Vec<u8>, f: &Flags, recent: bool) {
    if !recent {
        return out.extend_from_slice(f.to_string().as_bytes());
    }
    out.extend_from_slice(b"(\\Recent");
    for name in f.imap_names() {
        out.push(b' ');
        out.extend_from_slice(name.as_bytes());
    }
    out.push(b')');
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
        let mut out = Vec::new();
        literal8(&mut out, b"a\0");
        literal8(&mut out, b"ab");
        assert_eq!(out, b"~{2}\r\na\0{2}\r\nab");
    }

    #[test]
    fn names_and_flags() {
        let render = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            f(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            render(&|o| mailbox_name(o, "Entwürfe", false)),
            "\"Entw&APw-rfe\""
        );
        assert_eq!(
            render(&|o| mailbox_name(o, "Entwürfe", true)),
            "\"Entwürfe\""
        );
        assert_eq!(render(&|o| mailbox_name(o, "a\"b&", true)), "\"a\\\"b&\"");
        assert_eq!(render(&|o| mailbox_name(o, "a\tb", true)), "{3}\r\na\tb");
        let f = Flags::from_imap(["\\Seen", "$Work"]).unwrap();
        assert_eq!(render(&|o| flags(o, &f, false)), "(\\Seen $Work)");
        assert_eq!(render(&|o| flags(o, &f, true)), "(\\Recent \\Seen $Work)");
        assert_eq!(render(&|o| flags(o, &Flags::new(), true)), "(\\Recent)");
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
