//! What a script sees of a message and its delivery: values built by the caller, never read from
//! the store by the interpreter.

use std::collections::BTreeSet;

use mail_parser::MimeHeaders;

/// A message as Sieve tests see it.
#[derive(Debug, Clone, Default)]
pub struct MessageView {
    /// Header fields in message order: name as written, value unfolded and RFC 2047-decoded.
    pub headers: Vec<(String, String)>,
    /// The raw body (after the blank line), for `body :raw`.
    pub body: Vec<u8>,
    /// Decoded leaf parts with their media type, for `body :text` and `body :content`.
    pub parts: Vec<BodyPart>,
    /// Size of the whole message in octets, for the `size` test.
    pub size: u64,
}

/// One leaf MIME part, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPart {
    /// `type/subtype`, lower case (`text/plain` when the part has no Content-Type).
    pub content_type: String,
    /// The decoded content (transfer encoding and charset undone).
    pub text: String,
}

/// The delivery this run is for.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// MAIL FROM, "" for the null reverse-path.
    pub from: String,
    /// The RCPT TO this delivery is for.
    pub to: String,
    /// The recipient's existing mailboxes, for `mailboxexists` (RFC 5490). Names compare
    /// exactly, except INBOX which is case-insensitive.
    pub mailboxes: BTreeSet<String>,
}

impl MessageView {
    /// Builds the view of a raw RFC 5322 message with `mail-parser` (the one place this module
    /// parses MIME; delivery may pass an already-parsed view instead).
    pub fn from_raw(raw: &[u8]) -> MessageView {
        let size = raw.len() as u64;
        let Some(msg) = mail_parser::MessageParser::default().parse(raw) else {
            return MessageView {
                size,
                body: raw.to_vec(),
                ..Default::default()
            };
        };
        let root = msg.root_part();
        let headers = root
            .headers()
            .iter()
            .map(|h| {
                let value = match h.value().as_text() {
                    Some(t) => t.to_string(),
                    None => {
                        let start = (h.offset_start() as usize).min(raw.len());
                        let end = (h.offset_end() as usize).clamp(start, raw.len());
                        unfold(&String::from_utf8_lossy(&raw[start..end]))
                    }
                };
                (h.name().to_string(), value)
            })
            .collect();
        let body_start = (root.raw_body_offset() as usize).min(raw.len());
        let parts = msg
            .parts
            .iter()
            .filter(|p| !p.is_multipart() && !p.is_message())
            .filter_map(|p| {
                let content_type = p
                    .content_type()
                    .map(|ct| match ct.subtype() {
                        Some(sub) => format!("{}/{}", ct.ctype(), sub),
                        None => ct.ctype().to_string(),
                    })
                    .unwrap_or_else(|| "text/plain".into())
                    .to_ascii_lowercase();
                let text = p.text_contents()?.to_string();
                Some(BodyPart { content_type, text })
            })
            .collect();
        MessageView {
            headers,
            body: raw[body_start..].to_vec(),
            parts,
            size,
        }
    }

    /// Values of the fields named `name` (case-insensitive), in message order.
    pub(crate) fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Unfolds a raw header value and trims it.
fn unfold(v: &str) -> String {
    v.replace("\r\n", "").replace('\n', "").trim().to_string()
}
