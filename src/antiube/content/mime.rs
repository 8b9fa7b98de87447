//! Byte-level MIME helpers for the content scanner: header line recognition, the
//! `Content-Type` and `Content-Transfer-Encoding` grammars (lenient, RFC 2045/2046), lenient
//! base64 and quoted-printable decoders, header value decoding (RFC 2047 through mail-parser)
//! and charset decoding to UTF-8.
//!
//! Never: allocate more than the input's size (decoders only shrink), or panic on any input.

use std::borrow::Cow;

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::parsers::MessageStream;
use mail_parser::HeaderValue;

/// A part's `Content-Transfer-Encoding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cte {
    /// Absent, `7bit`, `8bit` or `binary`: the body is the content.
    Identity,
    /// `base64`.
    Base64,
    /// `quoted-printable`.
    QuotedPrintable,
    /// Anything else (`x-uuencode`, typos): not decoded, never descended into.
    Other,
}

/// Where the colon of a header line is, when `line` starts a header field: a name of printable
/// ASCII without `:`, optional blanks (RFC 5322's obsolete syntax), then `:`.
pub(super) fn header_colon(line: &[u8]) -> Option<usize> {
    let name = line
        .iter()
        .position(|&b| !(33..=126).contains(&b) || b == b':')
        .unwrap_or(line.len());
    if name == 0 {
        return None;
    }
    let colon = name
        + line[name..]
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(line.len() - name);
    (line.get(colon) == Some(&b':')).then_some(colon)
}

/// Whether Postfix counts the field as a MIME header (header_opts.c, `HDR_OPT_MIME`): those go
/// to `mime_header_checks` wherever they appear.
pub(super) fn is_mime_header(name: &[u8]) -> bool {
    [
        &b"content-type"[..],
        b"content-transfer-encoding",
        b"content-disposition",
        b"content-description",
        b"content-id",
        b"mime-version",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n))
}

/// A header as Postfix hands it to `header_checks`: the logical header with its folding line
/// breaks as `\n`, without the final line end.
pub(super) fn header_text(raw: &[u8]) -> Cow<'_, str> {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    if memchr::memchr(b'\r', raw).is_none() {
        return String::from_utf8_lossy(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = memchr::memmem::find(rest, b"\r\n") {
        out.extend_from_slice(&rest[..i]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    Cow::Owned(into_string(out))
}

/// A header field's value, unfolded, RFC 2047 encoded-words decoded, runs of blanks collapsed to
/// one space, trimmed.
pub(super) fn decode_header_value(raw: &[u8]) -> String {
    if memchr::memmem::find(raw, b"=?").is_none() {
        let text = String::from_utf8_lossy(raw);
        let mut out = String::with_capacity(text.len());
        for word in text.split_ascii_whitespace() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
        return out;
    }
    // mail-parser's unstructured parser needs the value's line end to know where it stops.
    let owned;
    let input = if raw.ends_with(b"\n") {
        raw
    } else {
        owned = [raw, b"\n"].concat();
        &owned
    };
    match MessageStream::new(input).parse_unstructured() {
        HeaderValue::Text(t) => t.into_owned(),
        _ => String::new(),
    }
}

/// Skips blanks, line breaks and (nested) comments from `i`.
fn skip_cfws(v: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while let Some(&b) = v.get(i) {
        match b {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => i += 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => break,
        }
        i += 1;
    }
    i
}

/// RFC 2045 token characters.
fn is_token(b: u8) -> bool {
    b > b' ' && b < 0x7f && !b"()<>@,;:\\\"/[]?=".contains(&b)
}

fn token(v: &[u8], i: usize) -> (&[u8], usize) {
    let end = i + v[i.min(v.len())..]
        .iter()
        .position(|&b| !is_token(b))
        .unwrap_or(v.len().saturating_sub(i));
    (v.get(i..end).unwrap_or_default(), end)
}

/// A parsed `Content-Type` value. Type and subtype are as written (compare ignoring case).
#[derive(Debug, Default)]
pub(super) struct ContentType<'a> {
    /// `text`, `multipart`, …; empty when unparsable.
    pub(super) ty: &'a [u8],
    /// `plain`, `mixed`, …
    pub(super) sub: &'a [u8],
    /// The `boundary` parameter, unquoted.
    pub(super) boundary: Option<Cow<'a, [u8]>>,
    /// The `charset` parameter, unquoted.
    pub(super) charset: Option<Cow<'a, [u8]>>,
}

/// Parses a `Content-Type` value leniently (comments, folding, quoted parameters with escapes,
/// stray separators). The first `boundary` and `charset` win.
pub(super) fn parse_content_type(v: &[u8]) -> ContentType<'_> {
    let mut ct = ContentType::default();
    let i = skip_cfws(v, 0);
    let (ty, i) = token(v, i);
    let i = skip_cfws(v, i);
    if v.get(i) != Some(&b'/') {
        return ct;
    }
    let i = skip_cfws(v, i + 1);
    let (sub, mut i) = token(v, i);
    ct.ty = ty;
    ct.sub = sub;
    while i < v.len() {
        i = skip_cfws(v, i);
        let (name, after) = token(v, i);
        if name.is_empty() {
            // `;` or anything stray: step over it.
            i += 1;
            continue;
        }
        i = skip_cfws(v, after);
        if v.get(i) != Some(&b'=') {
            continue;
        }
        i = skip_cfws(v, i + 1);
        let value: Cow<'_, [u8]>;
        if v.get(i) == Some(&b'"') {
            let (q, end) = quoted(v, i + 1);
            value = q;
            i = end;
        } else {
            let start = i;
            while i < v.len() && !matches!(v[i], b';' | b' ' | b'\t' | b'\r' | b'\n') {
                i += 1;
            }
            value = Cow::Borrowed(&v[start..i]);
        }
        if name.eq_ignore_ascii_case(b"boundary") && ct.boundary.is_none() {
            ct.boundary = Some(value);
        } else if name.eq_ignore_ascii_case(b"charset") && ct.charset.is_none() {
            ct.charset = Some(value);
        }
    }
    ct
}

/// A quoted string's content from `i` (after the opening quote): escapes resolved, folding
/// removed. Returns the content and the index after the closing quote (or the end).
fn quoted(v: &[u8], i: usize) -> (Cow<'_, [u8]>, usize) {
    let rest = v.get(i..).unwrap_or_default();
    match rest
        .iter()
        .position(|&b| matches!(b, b'"' | b'\\' | b'\r' | b'\n'))
    {
        Some(n) if rest[n] == b'"' => return (Cow::Borrowed(&rest[..n]), i + n + 1),
        None => return (Cow::Borrowed(rest), v.len()),
        Some(_) => {}
    }
    let mut out = Vec::with_capacity(rest.len().min(256));
    let mut j = 0;
    while let Some(&b) = rest.get(j) {
        match b {
            b'"' => return (Cow::Owned(out), i + j + 1),
            b'\\' => {
                if let Some(&e) = rest.get(j + 1) {
                    out.push(e);
                }
                j += 1;
            }
            b'\r' | b'\n' => {}
            _ => out.push(b),
        }
        j += 1;
    }
    (Cow::Owned(out), v.len())
}

/// Parses a `Content-Transfer-Encoding` value.
pub(super) fn parse_cte(v: &[u8]) -> Cte {
    let i = skip_cfws(v, 0);
    let (t, _) = token(v, i);
    if t.is_empty()
        || t.eq_ignore_ascii_case(b"7bit")
        || t.eq_ignore_ascii_case(b"8bit")
        || t.eq_ignore_ascii_case(b"binary")
    {
        Cte::Identity
    } else if t.eq_ignore_ascii_case(b"base64") {
        Cte::Base64
    } else if t.eq_ignore_ascii_case(b"quoted-printable") {
        Cte::QuotedPrintable
    } else {
        Cte::Other
    }
}

const fn base64_table() -> [u8; 256] {
    let mut t = [0xffu8; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
}

static BASE64: [u8; 256] = base64_table();

/// Decodes base64 leniently into `out` (appending): characters outside the alphabet are
/// skipped, `=` ends a quantum (so concatenated encodings decode), a trailing partial
/// quantum gives the bytes it holds.
pub(super) fn decode_base64(input: &[u8], out: &mut Vec<u8>) {
    out.reserve(input.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut n = 0u8;
    let flush = |acc: u32, n: u8, out: &mut Vec<u8>| match n {
        2 => out.push((acc >> 4) as u8),
        3 => {
            out.push((acc >> 10) as u8);
            out.push((acc >> 2) as u8);
        }
        _ => {}
    };
    for &b in input {
        let v = BASE64[usize::from(b)];
        if v == 0xff {
            if b == b'=' {
                flush(acc, n, out);
                acc = 0;
                n = 0;
            }
            continue;
        }
        acc = (acc << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    flush(acc, n, out);
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes quoted-printable leniently into `out` (appending): `=XX` (either case), soft line
/// breaks (`=` before optional blanks and a line end); any other `=` stays literal.
pub(super) fn decode_qp(input: &[u8], out: &mut Vec<u8>) {
    out.reserve(input.len());
    let mut rest = input;
    while let Some(i) = memchr::memchr(b'=', rest) {
        out.extend_from_slice(&rest[..i]);
        let after = &rest[i + 1..];
        if let (Some(h), Some(l)) = (
            after.first().copied().and_then(hex),
            after.get(1).copied().and_then(hex),
        ) {
            out.push(h << 4 | l);
            rest = &after[2..];
            continue;
        }
        let blanks = after
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(after.len());
        let tail = &after[blanks..];
        if tail.is_empty() {
            rest = tail;
        } else if let Some(t) = tail
            .strip_prefix(b"\r\n")
            .or_else(|| tail.strip_prefix(b"\n"))
        {
            rest = t;
        } else {
            out.push(b'=');
            rest = after;
        }
    }
    out.extend_from_slice(rest);
}

/// Decodes `bytes` in `charset` to UTF-8: UTF-8 and US-ASCII (often mislabelled UTF-8) and
/// unknown charsets are read as UTF-8 with replacement characters; others through
/// mail-parser's tables (multi-byte East Asian charsets fall back to UTF-8 in the tree's
/// build of mail-parser, which lacks `full_encoding`).
pub(super) fn to_utf8<'b>(bytes: &'b [u8], charset: Option<&[u8]>) -> Cow<'b, str> {
    let Some(charset) = charset else {
        return String::from_utf8_lossy(bytes);
    };
    let mut name = [0u8; 24];
    let mut len = 0;
    for b in charset
        .iter()
        .filter(|b| b.is_ascii_alphanumeric())
        .take(name.len())
    {
        name[len] = b.to_ascii_lowercase();
        len += 1;
    }
    let name = &name[..len];
    if matches!(name, b"utf8" | b"usascii" | b"ascii" | b"") {
        return String::from_utf8_lossy(bytes);
    }
    // ASCII reads the same in every ASCII-compatible charset; UTF-7/16/32 are not.
    let ascii_compatible =
        !(name.starts_with(b"utf") || name.starts_with(b"ucs") || name.starts_with(b"unicode"));
    if ascii_compatible && bytes.is_ascii() {
        return String::from_utf8_lossy(bytes);
    }
    match charset_decoder(charset) {
        Some(decode) => Cow::Owned(decode(bytes)),
        None => String::from_utf8_lossy(bytes),
    }
}

/// `bytes` as a `String`, invalid sequences replaced.
pub(super) fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
