//! The RFC 5230 / RFC 3834 vacation reply as bytes: pure, so it is table-tested here and the
//! delivery side only decides whether to send it and submits it with the null sender.
//!
//! The reply: `From:` the recipient (or `:from`), `To:` the envelope sender, `Subject:` the
//! script's `:subject` or "Auto: " and the original subject, `In-Reply-To:`/`References:`
//! threading it under the original, `Auto-Submitted: auto-replied` (so other responders stay
//! quiet), `Date:`, `Message-ID:`, and the reason as a `text/plain` UTF-8 body — or, with
//! `:mime`, as the MIME entity the script gave.
//!
//! Security note: every header value comes from a script or a message, so control characters
//! (CR and LF above all) are removed before they are written: no header injection. Non-ASCII
//! subjects are RFC 2047 encoded.

use base64::Engine;
use sha2::{Digest, Sha256};

/// What goes into one reply.
#[derive(Debug, Clone)]
pub struct Reply<'a> {
    /// `From:` (an address, or a display name and address as the script wrote it).
    pub from: &'a str,
    /// `To:`: the original's envelope sender.
    pub to: &'a str,
    /// The final subject (see [`reply_subject`]).
    pub subject: &'a str,
    /// The original's `Message-ID:`, with or without angle brackets.
    pub in_reply_to: Option<&'a str>,
    /// The original's `References:`.
    pub references: Option<&'a str>,
    /// The reply text, or with `mime` a MIME entity (its headers, a blank line, its body).
    pub reason: &'a str,
    /// `reason` is a MIME entity.
    pub mime: bool,
    /// The `Date:` value.
    pub date: &'a str,
    /// The `Message-ID:` value, with angle brackets.
    pub message_id: &'a str,
}

/// `:subject` if given, else "Auto: " and the original subject (RFC 5230 §4.1).
pub fn reply_subject(given: Option<&str>, original: Option<&str>) -> String {
    match given {
        Some(s) => s.to_string(),
        None => format!("Auto: {}", original.unwrap_or("").trim()),
    }
}

/// The handle of a vacation without `:handle`: derived from the arguments that shape the
/// reply, so a changed reply text starts a fresh memory (RFC 5230 §4.2).
pub fn default_handle(
    reason: &str,
    subject: Option<&str>,
    from: Option<&str>,
    mime: bool,
) -> String {
    let mut h = Sha256::new();
    for part in [reason, subject.unwrap_or("\u{1}"), from.unwrap_or("\u{1}")] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update([u8::from(mime)]);
    h.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A header value with every control character replaced by a space, trimmed.
fn clean(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// `v` as RFC 2047 encoded words when it is not plain ASCII, folded into short lines.
fn encode_words(v: &str) -> String {
    if v.is_ascii() {
        return v.to_string();
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in v.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// `<id>` for a Message-ID given with or without brackets.
fn bracketed(id: &str) -> String {
    let id = clean(id);
    if id.starts_with('<') {
        id
    } else {
        format!("<{id}>")
    }
}

/// Text with CRLF line ends (lone CR or LF become CRLF), ending with one.
fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    out
}

/// The reply message.
pub fn build(r: &Reply<'_>) -> Vec<u8> {
    let mut m = String::new();
    let mut header = |name: &str, value: &str| {
        m.push_str(name);
        m.push_str(": ");
        m.push_str(value);
        m.push_str("\r\n");
    };
    header("From", &clean(r.from));
    header("To", &format!("<{}>", clean(r.to)));
    header("Subject", &encode_words(&clean(r.subject)));
    header("Date", &clean(r.date));
    header("Message-ID", &clean(r.message_id));
    if let Some(id) = r.in_reply_to.filter(|i| !i.trim().is_empty()) {
        let id = bracketed(id);
        header("In-Reply-To", &id);
        let refs = match r.references.map(clean).filter(|s| !s.is_empty()) {
            Some(refs) => format!("{refs} {id}"),
            None => id,
        };
        header("References", &refs);
    }
    header("Auto-Submitted", "auto-replied (vacation)");
    header("MIME-Version", "1.0");
    if r.mime {
        // The script's entity: its own header fields, a blank line and its body.
        let entity = crlf(r.reason.trim_start_matches(['\r', '\n']));
        if entity.contains("\r\n\r\n") {
            m.push_str(&entity);
        } else {
            m.push_str("\r\n");
            m.push_str(&entity);
        }
    } else {
        let cte = if r.reason.is_ascii() { "7bit" } else { "8bit" };
        m.push_str("Content-Type: text/plain; charset=utf-8\r\n");
        m.push_str(&format!("Content-Transfer-Encoding: {cte}\r\n\r\n"));
        m.push_str(&crlf(r.reason));
    }
    m.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MimeHeaders;

    fn reply<'a>(subject: &'a str, reason: &'a str, mime: bool) -> Reply<'a> {
        Reply {
            from: "alice@example.org",
            to: "bob@remote.example",
            subject,
            in_reply_to: Some("orig@remote.example"),
            references: Some("<first@remote.example>"),
            reason,
            mime,
            date: "Sun, 29 Nov 2026 10:00:00 +0000",
            message_id: "<v1@example.org>",
        }
    }

    fn parse(bytes: &[u8]) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default().parse(bytes).unwrap()
    }

    #[test]
    fn headers_of_rfc_3834_and_5230() {
        let bytes = build(&reply("Auto: hello", "I am away.\nBack Monday.", false));
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains("\r\nAuto-Submitted: auto-replied (vacation)\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nIn-Reply-To: <orig@remote.example>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nReferences: <first@remote.example> <orig@remote.example>\r\n"),
            "{text}"
        );
        assert!(text.starts_with("From: alice@example.org\r\nTo: <bob@remote.example>\r\n"));
        assert!(
            text.ends_with("\r\n\r\nI am away.\r\nBack Monday.\r\n"),
            "{text}"
        );
        assert!(
            !text.replace("\r\n", "").contains('\n'),
            "bare LF: {text:?}"
        );
        let m = parse(&bytes);
        assert_eq!(m.subject(), Some("Auto: hello"));
        assert_eq!(
            m.body_text(0).as_deref(),
            Some("I am away.\r\nBack Monday.\r\n")
        );
    }

    #[test]
    fn non_ascii_subject_is_encoded_and_injection_removed() {
        let subject = "Réponse automatique: très très longue ligne de sujet accentuée, vraiment";
        let bytes = build(&reply(subject, "Absent — de retour lundi", false));
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("Subject: =?UTF-8?B?"), "{text}");
        assert!(text.contains("Content-Transfer-Encoding: 8bit"));
        assert_eq!(parse(&bytes).subject(), Some(subject));

        let evil = reply("hi\r\nBcc: victim@x.example", "x", false);
        let text = String::from_utf8(build(&evil)).unwrap();
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(
            text.contains("Subject: hi  Bcc: victim@x.example\r\n"),
            "{text}"
        );
    }

    #[test]
    fn mime_reason_is_the_entity() {
        let reason = "Content-Type: text/html; charset=utf-8\n\n<p>Away</p>\n";
        let bytes = build(&reply("s", reason, true));
        let m = parse(&bytes);
        assert_eq!(
            m.root_part().content_type().map(|c| c.subtype()),
            Some(Some("html"))
        );
        assert!(String::from_utf8_lossy(&bytes).ends_with("\r\n\r\n<p>Away</p>\r\n"));
    }

    #[test]
    fn subject_default_and_handles() {
        assert_eq!(reply_subject(None, Some(" Lunch? ")), "Auto: Lunch?");
        assert_eq!(reply_subject(None, None), "Auto: ");
        assert_eq!(reply_subject(Some("Away"), Some("x")), "Away");
        let a = default_handle("away", None, None, false);
        assert_eq!(a, default_handle("away", None, None, false));
        assert_ne!(a, default_handle("away!", None, None, false));
        assert_ne!(a, default_handle("away", Some("s"), None, false));
        assert_ne!(a, default_handle("away", None, None, true));
    }
}
