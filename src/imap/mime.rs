//! A stored message as IMAP shows it: ENVELOPE, BODY/BODYSTRUCTURE and the bytes of
//! `BODY[section]`, from the MIME tree `mail-parser` builds.
//!
//! Offsets come from the parser. A message/rfc822 part's own parts index the enclosing bytes
//! when it was parsed in place, or its decoded bytes (`raw_message`) when it was encoded;
//! [`inner_raw`] tells which, and every function carries the bytes its offsets index.
//! Nothing here does I/O. Security note: the
//! parser bounds nesting itself; every slice is taken with `get`, so an odd offset yields an
//! empty section rather than a panic.

use std::borrow::Cow;

use base64::Engine;
use mail_parser::{Address, Header, HeaderValue, Message, MessagePart, MimeHeaders, PartType};

use super::fetch_items::{Section, SectionText};
use super::response::{string, utf8_string};

/// Parses a stored message. `None` when it has no header at all (then it is all body).
pub fn parse(raw: &[u8]) -> Option<Message<'_>> {
    mail_parser::MessageParser::new().parse(raw)
}

/// The bytes the offsets of `inner` (the message of `part`, found in `raw`) index.
fn inner_raw<'a>(raw: &'a [u8], part: &MessagePart, inner: &'a Message) -> &'a [u8] {
    match inner.parts.first() {
        Some(root) if root.offset_header == part.offset_body && part.offset_body > 0 => raw,
        _ => inner.raw_message(),
    }
}

fn slice(raw: &[u8], from: u32, to: u32) -> &[u8] {
    raw.get(from as usize..to as usize).unwrap_or_default()
}

/// A header's value as written: unfolded, surrounding whitespace removed.
fn raw_value<'a>(raw: &'a [u8], h: &Header) -> Cow<'a, [u8]> {
    let v = trim(slice(raw, h.offset_start, h.offset_end));
    if v.contains(&b'\n') {
        Cow::Owned(
            v.iter()
                .copied()
                .filter(|&b| b != b'\r' && b != b'\n')
                .collect(),
        )
    } else {
        Cow::Borrowed(v)
    }
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if first.is_ascii_whitespace() {
            v = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = v {
        if last.is_ascii_whitespace() {
            v = rest;
        } else {
            break;
        }
    }
    v
}

fn find<'p, 'x>(part: &'p MessagePart<'x>, name: &str) -> Option<&'p Header<'x>> {
    part.headers
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))
}

fn raw_header<'a>(raw: &'a [u8], part: &MessagePart, name: &str) -> Option<Cow<'a, [u8]>> {
    find(part, name).map(|h| raw_value(raw, h))
}

/// ENVELOPE of a message (`None`: a message without headers, all NIL). `utf8`: the session
/// takes UTF-8 strings (`ENABLE UTF8=ACCEPT` or IMAP4rev2), else every string is 7-bit.
pub fn envelope(out: &mut Vec<u8>, raw: &[u8], msg: Option<&Message>, utf8: bool) {
    let Some(m) = msg else {
        out.extend_from_slice(b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
        return;
    };
    let root = m.root_part();
    out.push(b'(');
    ntext(out, raw_header(raw, root, "Date").as_deref(), utf8);
    out.push(b' ');
    ntext(out, raw_header(raw, root, "Subject").as_deref(), utf8);
    let addr = |name: &str| find(root, name).and_then(|h| h.value().as_address());
    let from = addr("From");
    for a in [
        from,
        addr("Sender").or(from),
        addr("Reply-To").or(from),
        addr("To"),
        addr("Cc"),
        addr("Bcc"),
    ] {
        out.push(b' ');
        address_list(out, a, utf8);
    }
    out.push(b' ');
    ntext(out, raw_header(raw, root, "In-Reply-To").as_deref(), utf8);
    out.push(b' ');
    ntext(out, raw_header(raw, root, "Message-ID").as_deref(), utf8);
    out.push(b')');
}

/// One address of an ENVELOPE list.
fn address(out: &mut Vec<u8>, name: Option<&str>, email: Option<&str>, utf8: bool) {
    if !utf8 && email.is_some_and(|e| !e.is_ascii()) {
        // An SMTPUTF8 address has no 7-bit form. As RFC 6858 §3 downgrades it, a 7-bit
        // session sees an empty group whose name is the whole mailbox in encoded words: shown
        // readably, never mistaken for an address it could reply to.
        let shown = match name {
            Some(n) => format!("{n} <{}>", email.unwrap_or_default()),
            None => email.unwrap_or_default().to_string(),
        };
        out.extend_from_slice(b"(NIL NIL ");
        text(out, shown.as_bytes(), false);
        out.extend_from_slice(b" NIL)(NIL NIL NIL NIL)");
        return;
    }
    out.push(b'(');
    ntext(out, name.map(str::as_bytes), utf8);
    out.extend_from_slice(b" NIL ");
    let (local, host) = match email {
        Some(e) => match e.rsplit_once('@') {
            Some((l, h)) => (Some(l), Some(h)),
            None => (Some(e), None),
        },
        None => (None, None),
    };
    ntext(out, local.map(str::as_bytes), utf8);
    out.push(b' ');
    // RFC 3501: an empty host would mean a group; a bare name gets a placeholder host.
    text(out, host.unwrap_or("missing-domain").as_bytes(), utf8);
    out.push(b')');
}

fn address_list(out: &mut Vec<u8>, a: Option<&Address>, utf8: bool) {
    let Some(a) = a else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let mut body = Vec::new();
    match a {
        Address::List(list) => {
            for x in list {
                address(&mut body, x.name.as_deref(), x.address.as_deref(), utf8);
            }
        }
        Address::Group(groups) => {
            for g in groups {
                if let Some(name) = &g.name {
                    body.extend_from_slice(b"(NIL NIL ");
                    text(&mut body, name.as_bytes(), utf8);
                    body.extend_from_slice(b" NIL)");
                }
                for x in &g.addresses {
                    address(&mut body, x.name.as_deref(), x.address.as_deref(), utf8);
                }
                if g.name.is_some() {
                    body.extend_from_slice(b"(NIL NIL NIL NIL)");
                }
            }
        }
    }
    if body.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b'(');
        out.extend_from_slice(&body);
        out.push(b')');
    }
}

/// A string taken from a header, for this session. ASCII goes out as it is. Anything else
/// (raw UTF-8 from SMTPUTF8 mail, decoded display names and parameters, stray 8-bit bytes,
/// which become U+FFFD) is UTF-8 for a session that takes it (RFC 6855 §3, RFC 9051) and RFC
/// 2047 encoded words for every other one (RFC 6855 §5: no 8-bit to a client that did not
/// ask): a 7-bit session never receives a byte over 0x7f. NUL, which no IMAP string may hold,
/// is dropped.
fn text(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    let s: Cow<[u8]> = if s.contains(&0) {
        Cow::Owned(s.iter().copied().filter(|&b| b != 0).collect())
    } else {
        Cow::Borrowed(s)
    };
    if s.is_ascii() {
        return string(out, &s);
    }
    let s = String::from_utf8_lossy(&s);
    if utf8 {
        utf8_string(out, &s);
    } else {
        string(out, encode_words(&s).as_bytes());
    }
}

/// `NIL` or [`text`].
fn ntext(out: &mut Vec<u8>, s: Option<&[u8]>, utf8: bool) {
    match s {
        Some(s) => text(out, s, utf8),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Longest text in one encoded word: `=?utf-8?b?` + 60 base64 characters + `?=` is 72, under
/// RFC 2047's 75.
const WORD_BYTES: usize = 45;

/// `s` as RFC 2047 `B` encoded words of at most 75 characters, cut between characters and
/// separated by spaces (which decoders drop between encoded words).
pub fn encode_words(s: &str) -> String {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let mut words = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let mut cut = rest.len().min(WORD_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (word, tail) = rest.split_at(cut);
        words.push(format!("=?utf-8?b?{}?=", b64.encode(word)));
        rest = tail;
    }
    words.join(" ")
}

/// BODYSTRUCTURE (`extended`) or BODY of a message; `utf8` as for [`envelope`].
pub fn body_structure(
    out: &mut Vec<u8>,
    raw: &[u8],
    msg: Option<&Message>,
    extended: bool,
    utf8: bool,
) {
    match msg {
        Some(m) => part_structure(out, raw, m, 0, extended, false, utf8),
        None => {
            let lines = raw.iter().filter(|&&b| b == b'\n').count();
            out.extend_from_slice(
                format!(
                    "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" {} {lines}{})",
                    raw.len(),
                    if extended { " NIL NIL NIL NIL" } else { "" }
                )
                .as_bytes(),
            );
        }
    }
}

fn params(
    out: &mut Vec<u8>,
    attrs: Option<&[mail_parser::Attribute]>,
    default: &[(&str, &str)],
    utf8: bool,
) {
    let mut pairs: Vec<(&str, &str)> = attrs
        .unwrap_or_default()
        .iter()
        .map(|a| (a.name.as_ref(), a.value.as_ref()))
        .collect();
    if pairs.is_empty() {
        pairs.extend_from_slice(default);
    }
    if pairs.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        text(out, k.as_bytes(), utf8);
        out.push(b' ');
        text(out, v.as_bytes(), utf8);
    }
    out.push(b')');
}

/// The extension data shared by every part: disposition, language, location.
fn ext_tail(out: &mut Vec<u8>, raw: &[u8], part: &MessagePart, utf8: bool) {
    out.push(b' ');
    match part.content_disposition() {
        Some(d) => {
            out.push(b'(');
            text(out, d.ctype().as_bytes(), utf8);
            out.push(b' ');
            params(out, d.attributes(), &[], utf8);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match part.content_language() {
        HeaderValue::Text(t) => {
            out.push(b'(');
            text(out, t.as_bytes(), utf8);
            out.push(b')');
        }
        HeaderValue::TextList(list) if !list.is_empty() => {
            out.push(b'(');
            for (i, t) in list.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                text(out, t.as_bytes(), utf8);
            }
            out.push(b')');
        }
        _ => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    ntext(
        out,
        raw_header(raw, part, "Content-Location").as_deref(),
        utf8,
    );
}

fn part_structure(
    out: &mut Vec<u8>,
    raw: &[u8],
    m: &Message,
    pid: usize,
    extended: bool,
    in_digest: bool,
    utf8: bool,
) {
    let Some(part) = m.parts.get(pid) else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let ct = part.content_type();
    if let PartType::Multipart(children) = &part.body {
        out.push(b'(');
        let subtype = ct.and_then(|c| c.subtype()).unwrap_or("mixed");
        let digest = subtype.eq_ignore_ascii_case("digest");
        for &c in children {
            part_structure(out, raw, m, c as usize, extended, digest, utf8);
        }
        out.push(b' ');
        text(out, subtype.as_bytes(), utf8);
        if extended {
            out.push(b' ');
            params(out, ct.and_then(|c| c.attributes()), &[], utf8);
            ext_tail(out, raw, part, utf8);
        }
        out.push(b')');
        return;
    }
    let nested = match &part.body {
        PartType::Message(n) => Some(n),
        _ => None,
    };
    let (ctype, subtype) = match ct {
        Some(c) => (c.ctype().to_string(), c.subtype().unwrap_or("").to_string()),
        None if nested.is_some() || in_digest => ("message".into(), "rfc822".into()),
        None => ("text".into(), "plain".into()),
    };
    let body = slice(raw, part.offset_body, part.offset_end);
    out.push(b'(');
    text(out, ctype.as_bytes(), utf8);
    out.push(b' ');
    text(out, subtype.as_bytes(), utf8);
    out.push(b' ');
    let is_text = ctype.eq_ignore_ascii_case("text");
    params(
        out,
        ct.and_then(|c| c.attributes()),
        if is_text {
            &[("charset", "us-ascii")]
        } else {
            &[]
        },
        utf8,
    );
    out.push(b' ');
    ntext(out, raw_header(raw, part, "Content-ID").as_deref(), utf8);
    out.push(b' ');
    ntext(
        out,
        raw_header(raw, part, "Content-Description").as_deref(),
        utf8,
    );
    out.push(b' ');
    let enc = raw_header(raw, part, "Content-Transfer-Encoding");
    text(out, enc.as_deref().unwrap_or(b"7bit"), utf8);
    out.extend_from_slice(format!(" {}", body.len()).as_bytes());
    let lines = body.iter().filter(|&&b| b == b'\n').count();
    match nested {
        Some(n) if ctype.eq_ignore_ascii_case("message") => {
            let nraw = inner_raw(raw, part, n);
            out.push(b' ');
            envelope(out, nraw, Some(n), utf8);
            out.push(b' ');
            part_structure(out, nraw, n, 0, extended, false, utf8);
            out.extend_from_slice(format!(" {lines}").as_bytes());
        }
        _ if is_text => out.extend_from_slice(format!(" {lines}").as_bytes()),
        _ => {}
    }
    if extended {
        out.extend_from_slice(b" NIL");
        ext_tail(out, raw, part, utf8);
    }
    out.push(b')');
}

/// Where a section path leads: a message and one of its parts.
fn navigate<'m>(
    raw: &'m [u8],
    m: &'m Message<'m>,
    path: &[u32],
) -> Option<(&'m [u8], &'m Message<'m>, usize)> {
    let (mut raw, mut cur, mut pid) = (raw, m, 0usize);
    for &n in path {
        let i = n.checked_sub(1)? as usize;
        let part = cur.parts.get(pid)?;
        match &part.body {
            PartType::Multipart(children) => pid = *children.get(i)? as usize,
            PartType::Message(inner) => {
                let root = inner.parts.first()?;
                raw = inner_raw(raw, part, inner);
                match &root.body {
                    PartType::Multipart(children) => {
                        cur = inner;
                        pid = *children.get(i)? as usize;
                    }
                    _ if i == 0 => {
                        cur = inner;
                        pid = 0;
                    }
                    _ => return None,
                }
            }
            // A single-part message (or message body) is its own part 1.
            _ if i == 0 && pid == 0 => {}
            _ => return None,
        }
    }
    Some((raw, cur, pid))
}

/// The bytes of `BODY[section]` (before any partial range). `None`: no such part (answered
/// as an empty string, like other servers).
pub fn section<'a>(
    raw: &'a [u8],
    msg: Option<&'a Message<'a>>,
    s: &Section,
) -> Option<Cow<'a, [u8]>> {
    let Some(m) = msg else {
        // No header: the header is empty and the text is everything.
        return match (&s.part[..], &s.text) {
            ([], None) | ([], Some(SectionText::Text)) | ([1], None) => Some(Cow::Borrowed(raw)),
            ([], Some(_)) => Some(Cow::Borrowed(b"\r\n")),
            _ => None,
        };
    };
    if s.part.is_empty() {
        let root = m.root_part();
        return Some(match &s.text {
            None => Cow::Borrowed(raw),
            Some(t) => message_text(raw, root, raw.len(), t),
        });
    }
    let (raw, cur, pid) = navigate(raw, m, &s.part)?;
    let part = cur.parts.get(pid)?;
    Some(match &s.text {
        None => Cow::Borrowed(slice(raw, part.offset_body, part.offset_end)),
        Some(SectionText::Mime) => Cow::Borrowed(slice(raw, part.offset_header, part.offset_body)),
        Some(t) => match &part.body {
            PartType::Message(inner) => {
                let root = inner.parts.first()?;
                let iraw = inner_raw(raw, part, inner);
                // Parsed in place: it ends where its part ends; decoded: at its own end.
                let end = if std::ptr::eq(iraw.as_ptr(), raw.as_ptr()) {
                    part.offset_end as usize
                } else {
                    iraw.len()
                };
                message_text(iraw, root, end, t)
            }
            _ => return None,
        },
    })
}

/// A part's body as stored, and how it is encoded.
pub struct PartBody<'a> {
    pub body: &'a [u8],
    /// The Content-Transfer-Encoding header's value, if any.
    pub cte: Option<Cow<'a, [u8]>>,
}

/// The body of part `path`, for `BINARY[path]`. The whole message (`path` empty) has no
/// encoding of its own. `None`: no such part.
pub fn part_body<'a>(
    raw: &'a [u8],
    msg: Option<&'a Message<'a>>,
    path: &[u32],
) -> Option<PartBody<'a>> {
    let whole = PartBody {
        body: raw,
        cte: None,
    };
    let Some(m) = msg else {
        return matches!(path, [] | [1]).then_some(whole);
    };
    if path.is_empty() {
        return Some(whole);
    }
    let (raw, cur, pid) = navigate(raw, m, path)?;
    let part = cur.parts.get(pid)?;
    Some(PartBody {
        body: slice(raw, part.offset_body, part.offset_end),
        cte: raw_header(raw, part, "Content-Transfer-Encoding"),
    })
}

/// HEADER, HEADER.FIELDS[.NOT] or TEXT of a message whose root part is `root`.
fn message_text<'a>(
    raw: &'a [u8],
    root: &MessagePart,
    end: usize,
    t: &SectionText,
) -> Cow<'a, [u8]> {
    let header = slice(raw, root.offset_header, root.offset_body);
    match t {
        SectionText::Header | SectionText::Mime => Cow::Borrowed(header),
        SectionText::Text => {
            Cow::Borrowed(raw.get(root.offset_body as usize..end).unwrap_or_default())
        }
        SectionText::HeaderFields { not, fields } => {
            Cow::Owned(filter_headers(header, fields, *not))
        }
    }
}

/// The header fields named in `fields` (or all others, with `not`), then the empty line.
pub fn filter_headers(block: &[u8], fields: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in block.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            let name = trim(name);
            let listed = fields
                .iter()
                .any(|f| f.as_bytes().eq_ignore_ascii_case(name));
            keep = listed != not;
        }
        if keep {
            out.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests;
