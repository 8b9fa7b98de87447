//! BINARY (RFC 3516, the FETCH side of which IMAP4rev2 folds in): a body part with its
//! Content-Transfer-Encoding undone, so a client gets an attachment's bytes without decoding
//! base64 or quoted-printable itself.
//!
//! Sans-I/O: module `mime` finds the part and its encoding, this module decodes. Identity
//! encodings (`7bit`, `8bit`, `binary`, none) are returned as stored; `base64` and
//! `quoted-printable` are decoded leniently (what a mail reader would show, never an error);
//! any other encoding is [`BinaryError::UnknownCte`], which FETCH answers with
//! `NO [UNKNOWN-CTE]`. Security note: decoding only shrinks its input (base64 by a quarter,
//! quoted-printable never grows), so a part costs at most its own size in memory.

use std::borrow::Cow;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use mail_parser::Message;

use super::mime;

/// A part this server cannot decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    #[error("[UNKNOWN-CTE] cannot decode the content transfer encoding {0:?}")]
    UnknownCte(String),
}

/// The decoded bytes of `BINARY[part]`; `Ok(None)` when there is no such part.
pub fn section<'a>(
    raw: &'a [u8],
    msg: Option<&'a Message<'a>>,
    part: &[u32],
) -> Result<Option<Cow<'a, [u8]>>, BinaryError> {
    let Some(p) = mime::part_body(raw, msg, part) else {
        return Ok(None);
    };
    decode(p.body, p.cte.as_deref()).map(Some)
}

/// Undoes the encoding named by a Content-Transfer-Encoding header value.
pub fn decode<'a>(body: &'a [u8], cte: Option<&[u8]>) -> Result<Cow<'a, [u8]>, BinaryError> {
    let name = cte.map(mechanism).unwrap_or_default();
    match name.as_str() {
        "" | "7bit" | "8bit" | "binary" => Ok(Cow::Borrowed(body)),
        "base64" => Ok(Cow::Owned(base64_lenient(body))),
        "quoted-printable" => Ok(Cow::Owned(quoted_printable(body))),
        _ => Err(BinaryError::UnknownCte(name.chars().take(64).collect())),
    }
}

/// The mechanism of a header value: its first token, lowercased (`Base64 (comment)` is base64).
fn mechanism(value: &[u8]) -> String {
    let v = String::from_utf8_lossy(value);
    v.trim()
        .split(|c: char| c.is_whitespace() || c == ';' || c == '(')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Base64 as mail readers decode it: characters outside the alphabet (line breaks, stray
/// spaces) are skipped, decoding stops at padding, and a dangling final character is dropped.
fn base64_lenient(body: &[u8]) -> Vec<u8> {
    let mut clean: Vec<u8> = body
        .iter()
        .copied()
        .take_while(|&b| b != b'=')
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .collect();
    if clean.len() % 4 == 1 {
        clean.pop();
    }
    let engine = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    // Cannot fail on a cleaned input; an empty result is the lenient answer if it did.
    engine.decode(&clean).unwrap_or_default()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Quoted-printable (RFC 2045 §6.7): `=XX` is a byte, `=` at a line end (after optional
/// transport whitespace) joins lines, trailing whitespace of a line is dropped, and a
/// malformed `=` is kept as it is.
fn quoted_printable(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&b| b == b'\n') {
        let (text, eol): (&[u8], &[u8]) = match line {
            [t @ .., b'\r', b'\n'] => (t, b"\r\n"),
            [t @ .., b'\n'] => (t, b"\n"),
            t => (t, b""),
        };
        let mut text = text;
        while let [t @ .., b' ' | b'\t'] = text {
            text = t;
        }
        let (text, soft) = match text {
            [t @ .., b'='] => (t, true),
            t => (t, false),
        };
        let mut i = 0;
        while i < text.len() {
            let b = text[i];
            let pair = (text.get(i + 1).copied(), text.get(i + 2).copied());
            match (b, pair) {
                (b'=', (Some(h), Some(l))) if hex(h).is_some() && hex(l).is_some() => {
                    out.push((hex(h).unwrap_or_default() << 4) | hex(l).unwrap_or_default());
                    i += 3;
                }
                _ => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        if !soft {
            out.extend_from_slice(eol);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_table() {
        let cases: [(&str, Option<&str>, &[u8]); 10] = [
            ("plain\r\n", None, b"plain\r\n"),
            ("plain\r\n", Some("7BIT"), b"plain\r\n"),
            ("a\0b", Some("binary"), b"a\0b"),
            ("aGVs\r\nbG8=\r\n", Some("base64"), b"hello"),
            ("aGVsbG8\r\n", Some(" Base64 (sent by x)"), b"hello"),
            ("AAEC/w==", Some("base64"), &[0, 1, 2, 255]),
            ("aGVsbG8*", Some("base64"), b"hello"),
            (
                "caf=C3=A9 =\r\nau lait  \r\nx=3D1\r\n",
                Some("quoted-printable"),
                "café au lait\r\nx=1\r\n".as_bytes(),
            ),
            ("a=ZZb=\n", Some("Quoted-Printable"), b"a=ZZb"),
            ("end=", Some("quoted-printable"), b"end"),
        ];
        for (body, cte, want) in cases {
            let got = decode(body.as_bytes(), cte.map(str::as_bytes)).unwrap();
            assert_eq!(&*got, want, "{body:?} {cte:?}");
        }
        assert_eq!(
            decode(b"begin 644 x", Some(b"x-uuencode")),
            Err(BinaryError::UnknownCte("x-uuencode".into()))
        );
    }

    #[test]
    fn sections_of_a_message() {
        let msg = b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\
Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
na=C3=AFve\r\n--B\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--B\r\n\
Content-Transfer-Encoding: x-gzip64\r\n\r\nzzz\r\n--B--\r\n";
        let parsed = mime::parse(msg);
        let get = |p: &[u32]| section(msg, parsed.as_ref(), p).map(|o| o.map(Cow::into_owned));
        assert_eq!(get(&[1]).unwrap().unwrap(), "naïve".as_bytes());
        assert_eq!(get(&[2]).unwrap().unwrap(), [0, 1, 2]);
        assert!(matches!(get(&[3]), Err(BinaryError::UnknownCte(_))));
        assert_eq!(get(&[4]).unwrap(), None);
        assert_eq!(get(&[]).unwrap().unwrap(), msg);
        // A message without a header is all body, part 1 included.
        assert_eq!(section(b"x", None, &[1]).unwrap().unwrap(), &b"x"[..]);
        assert_eq!(section(b"x", None, &[2]).unwrap(), None);
    }
}
