//! RFC 5229 variables: names, `${...}` expansion, `set` modifiers; and RFC 5228 §2.4.2.4
//! encoded characters, which share the `${...}` syntax.

use std::collections::HashMap;

use super::ast::Modifier;

/// `identifier` of RFC 5228: a letter or `_`, then letters, digits and `_`.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces `${hex:41 42}` and `${unicode:263a}` with the characters they encode. Anything else,
/// including malformed sequences, stays as written (RFC 5228 §2.4.2.4).
pub(crate) fn decode_encoded_characters(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let decoded = after.find('}').and_then(|end| {
            let body = &after[..end];
            let (kind, list) = body.split_once(':')?;
            let decoded = match kind.to_ascii_lowercase().as_str() {
                "hex" => {
                    let bytes = list
                        .split_ascii_whitespace()
                        .map(|h| u8::from_str_radix(h, 16).ok().filter(|_| h.len() <= 2))
                        .collect::<Option<Vec<u8>>>()
                        .filter(|b| !b.is_empty())?;
                    Some(String::from_utf8(bytes).map_err(|_| {
                        "encoded characters ${hex:...} are not valid UTF-8".to_string()
                    }))
                }
                "unicode" => {
                    let chars = list
                        .split_ascii_whitespace()
                        .map(|h| u32::from_str_radix(h, 16).ok())
                        .collect::<Option<Vec<u32>>>()
                        .filter(|c| !c.is_empty())?;
                    Some(
                        chars
                            .into_iter()
                            .map(|c| {
                                char::from_u32(c).ok_or_else(|| {
                                    format!("${{unicode:{c:x}}} is not a Unicode scalar value")
                                })
                            })
                            .collect::<Result<String, String>>(),
                    )
                }
                _ => None,
            }?;
            Some((decoded, end))
        });
        match decoded {
            Some((Ok(text), end)) => {
                out.push_str(&text);
                rest = &after[end + 1..];
            }
            Some((Err(e), _)) => return Err(e),
            None => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Variables of one run: named ones (case-insensitive names) and the match variables `${0}`..
#[derive(Debug, Default)]
pub(crate) struct Vars {
    pub named: HashMap<String, String>,
    pub matched: Vec<String>,
}

impl Vars {
    /// Expands `${name}` and `${n}`; an unknown name expands to "" (RFC 5229 §3), and anything
    /// that is not a variable reference stays as written.
    /// The result is cut at `cap` bytes (or the literal's own length, if longer) so that many
    /// references to a large variable cannot blow up memory.
    pub(crate) fn expand(&self, s: &str, cap: usize) -> String {
        if !s.contains("${") {
            return s.to_string();
        }
        let cap = cap.max(s.len());
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find("${") {
            if out.len() > cap {
                break;
            }
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let reference = after.find('}').map(|end| (&after[..end], end));
            match reference {
                Some((name, end))
                    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    let n: usize = name.parse().unwrap_or(usize::MAX);
                    out.push_str(self.matched.get(n).map_or("", String::as_str));
                    rest = &after[end + 1..];
                }
                Some((name, end)) if is_identifier(name) => {
                    let key = name.to_ascii_lowercase();
                    out.push_str(self.named.get(&key).map_or("", String::as_str));
                    rest = &after[end + 1..];
                }
                _ => {
                    out.push_str("${");
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        truncate(out, cap)
    }
}

/// Applies `set` modifiers, already sorted highest precedence first.
pub(crate) fn apply_modifiers(value: String, modifiers: &[Modifier]) -> String {
    modifiers.iter().fold(value, |v, m| match m {
        Modifier::Lower => v.to_lowercase(),
        Modifier::Upper => v.to_uppercase(),
        Modifier::LowerFirst => first_char(v, |c| c.to_lowercase().collect()),
        Modifier::UpperFirst => first_char(v, |c| c.to_uppercase().collect()),
        Modifier::QuoteWildcard => {
            let mut out = String::with_capacity(v.len());
            for c in v.chars() {
                if matches!(c, '*' | '?' | '\\') {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        }
        Modifier::Length => v.chars().count().to_string(),
    })
}

fn first_char(v: String, f: impl Fn(char) -> String) -> String {
    let mut chars = v.chars();
    match chars.next() {
        Some(c) => f(c) + chars.as_str(),
        None => v,
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}
