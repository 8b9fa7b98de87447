//! Addresses in header fields and the envelope: extraction from an RFC 5322 address list, the
//! parts `:localpart`/`:domain`/`:all` (RFC 5228 §2.7.4) and `:user`/`:detail` (RFC 5233).

use super::ast::AddrPart;

/// The separator between user and detail in a local part (`user+detail`).
pub(crate) const SUBADDRESS_SEPARATOR: char = '+';

/// The addr-specs of an address-list header value: display names, comments and group syntax are
/// dropped; `undisclosed-recipients:;` yields nothing.
pub(crate) fn parse_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut angle: Option<String> = None;
    let mut in_quote = false;
    let mut comment = 0usize;
    let mut chars = value.chars();
    let flush = |cur: &mut String, angle: &mut Option<String>, out: &mut Vec<String>| {
        let a = match angle.take() {
            Some(a) => a,
            None => cur.split_whitespace().collect::<Vec<_>>().join(""),
        };
        let a = a.trim().to_string();
        if !a.is_empty() {
            out.push(a);
        }
        cur.clear();
    };
    while let Some(c) = chars.next() {
        if comment > 0 {
            match c {
                '(' => comment += 1,
                ')' => comment -= 1,
                '\\' => {
                    chars.next();
                }
                _ => {}
            }
            continue;
        }
        if in_quote {
            match c {
                '"' => {
                    in_quote = false;
                    cur.push('"');
                }
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
                c => cur.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                in_quote = true;
                cur.push('"');
            }
            '(' => comment = 1,
            '<' => {
                let mut a = String::new();
                for n in chars.by_ref() {
                    if n == '>' {
                        break;
                    }
                    a.push(n);
                }
                // A source route `<@a,@b:user@c>` is obsolete syntax; keep the mailbox.
                let a = a.rsplit_once(':').map_or(a.clone(), |(_, m)| m.to_string());
                angle = Some(a.split_whitespace().collect());
            }
            ':' if angle.is_none() => cur.clear(), // group name
            ',' | ';' => flush(&mut cur, &mut angle, &mut out),
            c => cur.push(c),
        }
    }
    flush(&mut cur, &mut angle, &mut out);
    out.retain(|a| !a.starts_with('"') || a.contains('@'));
    out
}

/// The requested part of `addr`; `None` when it has no such part (`:detail` without a `+`).
pub(crate) fn part(addr: &str, part: AddrPart) -> Option<String> {
    let (local, domain) = match addr.rsplit_once('@') {
        Some((l, d)) => (l, d),
        None => (addr, ""),
    };
    match part {
        AddrPart::All => Some(addr.to_string()),
        AddrPart::Local => Some(local.to_string()),
        AddrPart::Domain => Some(domain.to_string()),
        AddrPart::User => Some(
            local
                .split_once(SUBADDRESS_SEPARATOR)
                .map_or(local, |(u, _)| u)
                .to_string(),
        ),
        AddrPart::Detail => local
            .split_once(SUBADDRESS_SEPARATOR)
            .map(|(_, d)| d.to_string()),
    }
}

/// A redirect target must be one plain `local@domain` address (RFC 5228 §4.2).
pub(crate) fn check_redirect(addr: &str) -> Result<(), String> {
    let list = parse_list(addr);
    match list.as_slice() {
        [one] if valid_mailbox(one) => Ok(()),
        _ => Err(format!(
            "redirect needs one address like user@example.org, not \"{addr}\""
        )),
    }
}

pub(crate) fn valid_mailbox(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((l, d)) => {
            !l.is_empty()
                && !d.is_empty()
                && !d.starts_with('.')
                && !d.ends_with('.')
                && d.chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
                && !a
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ','))
        }
        None => false,
    }
}
