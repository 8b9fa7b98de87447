//! Modified UTF-7 (RFC 3501 §5.1.3): how IMAP4rev1 spells non-ASCII mailbox names.
//!
//! The store keeps names in UTF-8; this module converts at the protocol edge. Decoding is
//! strict — a name that is not canonical modified UTF-7 (unterminated shift, bad base64,
//! `&-` encodings of printable ASCII, lone surrogates, an empty shift) is an error — so two
//! different wire names never map to one stored name. No I/O.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid modified UTF-7 mailbox name: {0}")]
pub struct Mutf7Error(&'static str);

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn value(b: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == b).map(|p| p as u32)
}

/// UTF-8 to modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut units: Vec<u16> = Vec::new();
    let flush = |units: &mut Vec<u16>, out: &mut String| {
        if units.is_empty() {
            return;
        }
        out.push('&');
        let mut bits: u32 = 0;
        let mut n = 0;
        for u in units.drain(..) {
            bits = (bits << 16) | u32::from(u);
            n += 16;
            while n >= 6 {
                n -= 6;
                out.push(ALPHABET[((bits >> n) & 63) as usize] as char);
            }
        }
        if n > 0 {
            out.push(ALPHABET[((bits << (6 - n)) & 63) as usize] as char);
        }
        out.push('-');
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut units, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut units, &mut out);
    out
}

/// Modified UTF-7 to UTF-8.
pub fn decode(name: &str) -> Result<String, Mutf7Error> {
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    // Where the last base64 shift ended: a shift starting right there is not canonical.
    let mut last_shift_end = None;
    while i < bytes.len() {
        let b = bytes[i];
        if !(0x20..=0x7e).contains(&b) {
            return Err(Mutf7Error(
                "only printable ASCII may appear outside a shift",
            ));
        }
        if b != b'&' {
            out.push(b as char);
            i += 1;
            continue;
        }
        let amp = i;
        let end = bytes[i + 1..]
            .iter()
            .position(|&c| c == b'-')
            .map(|p| i + 1 + p)
            .ok_or(Mutf7Error("unterminated '&' shift"))?;
        let run = &bytes[i + 1..end];
        i = end + 1;
        if run.is_empty() {
            out.push('&');
            continue;
        }
        let mut units = Vec::with_capacity(run.len() * 6 / 16);
        let (mut bits, mut n) = (0u32, 0);
        for &c in run {
            let v = value(c).ok_or(Mutf7Error("invalid base64 in a shift"))?;
            bits = ((bits << 6) | v) & 0x3f_ffff;
            n += 6;
            if n >= 16 {
                n -= 16;
                units.push(((bits >> n) & 0xffff) as u16);
            }
        }
        if n >= 6 || (bits & ((1 << n) - 1)) != 0 {
            return Err(Mutf7Error("a shift does not end on a UTF-16 boundary"));
        }
        let text = String::from_utf16(&units).map_err(|_| Mutf7Error("lone UTF-16 surrogate"))?;
        if text.chars().any(|c| (' '..='~').contains(&c)) {
            return Err(Mutf7Error("printable ASCII must not be base64-encoded"));
        }
        if last_shift_end == Some(amp) {
            return Err(Mutf7Error("two adjacent shifts"));
        }
        last_shift_end = Some(i);
        out.push_str(&text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let cases = [
            ("INBOX", "INBOX"),
            ("a&b", "a&-b"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("📧", "&2D3c5w-"),
            ("Ünïcödé", "&ANw-n&AO8-c&APY-d&AOk-"),
        ];
        for (utf8, wire) in cases {
            assert_eq!(encode(utf8), wire, "{utf8}");
            assert_eq!(decode(wire).unwrap(), utf8, "{wire}");
        }
    }

    #[test]
    fn invalid_names_are_refused() {
        for bad in [
            "&",
            "abc&AAA",
            "&Jjo!-",
            "&AGE-",
            "&2D0-",
            "a\u{e9}",
            "&U,BTFw-&ZeVnLIqe-",
            "&AP-",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }
}
