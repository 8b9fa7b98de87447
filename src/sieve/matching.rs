//! Comparators (RFC 4790 as used by RFC 5228 §2.7.3), match types (`:is`, `:contains`,
//! `:matches` with RFC 5229 match variables) and relational ordering (RFC 5231).

use std::cmp::Ordering;

use super::ast::{Comparator, Relation};

/// Work left in a run; `:matches` backtracking draws on it so a hostile pattern cannot spin.
pub(crate) struct Budget {
    pub left: u64,
}

/// The budget ran out.
#[derive(Debug)]
pub(crate) struct Exhausted;

impl Budget {
    pub(crate) fn spend(&mut self, n: u64) -> Result<(), Exhausted> {
        if self.left < n {
            self.left = 0;
            return Err(Exhausted);
        }
        self.left -= n;
        Ok(())
    }
}

fn fold(c: char, cmp: Comparator) -> char {
    if cmp == Comparator::AsciiCasemap {
        c.to_ascii_lowercase()
    } else {
        c
    }
}

fn eq_char(a: char, b: char, cmp: Comparator) -> bool {
    fold(a, cmp) == fold(b, cmp)
}

/// `i;ascii-numeric`: the value of the leading digits; no leading digit is "infinity" (`None`).
fn numeric(s: &str) -> Option<u128> {
    let digits: &str = &s[..s.bytes().take_while(u8::is_ascii_digit).count()];
    if digits.is_empty() {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    if trimmed.len() > 38 {
        return Some(u128::MAX);
    }
    Some(trimmed.parse().unwrap_or(0))
}

/// The comparator's ordering of `a` against `b`.
pub(crate) fn order(a: &str, b: &str, cmp: Comparator) -> Ordering {
    match cmp {
        Comparator::Octet => a.as_bytes().cmp(b.as_bytes()),
        Comparator::AsciiCasemap => a
            .bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.bytes().map(|c| c.to_ascii_lowercase())),
        Comparator::AsciiNumeric => match (numeric(a), numeric(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        },
    }
}

pub(crate) fn relation_holds(rel: Relation, ord: Ordering) -> bool {
    match rel {
        Relation::Gt => ord == Ordering::Greater,
        Relation::Ge => ord != Ordering::Less,
        Relation::Lt => ord == Ordering::Less,
        Relation::Le => ord != Ordering::Greater,
        Relation::Eq => ord == Ordering::Equal,
        Relation::Ne => ord != Ordering::Equal,
    }
}

pub(crate) fn is(value: &str, key: &str, cmp: Comparator) -> bool {
    order(value, key, cmp) == Ordering::Equal
}

pub(crate) fn contains(
    value: &str,
    key: &str,
    cmp: Comparator,
    budget: &mut Budget,
) -> Result<bool, Exhausted> {
    match cmp {
        Comparator::Octet => {
            budget.spend(1 + value.len() as u64 / 64)?;
            Ok(value.contains(key))
        }
        _ => {
            budget.spend(1 + value.len() as u64 / 64)?;
            let v = value.to_ascii_lowercase();
            Ok(v.contains(&key.to_ascii_lowercase()))
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pat {
    Star,
    One,
    Lit(char),
}

fn compile_glob(key: &str) -> Vec<Pat> {
    let mut out = Vec::new();
    let mut it = key.chars();
    while let Some(c) = it.next() {
        out.push(match c {
            '*' => Pat::Star,
            '?' => Pat::One,
            '\\' => match it.next() {
                Some(n) => Pat::Lit(n),
                None => Pat::Lit('\\'),
            },
            c => Pat::Lit(c),
        });
    }
    out
}

/// `:matches`: `*` any sequence, `?` one character, `\` quotes. On success returns the match
/// variables: `${0}` the whole value, then one per wildcard, earlier wildcards as short as
/// possible (RFC 5229 §3.2).
pub(crate) fn matches(
    value: &str,
    key: &str,
    cmp: Comparator,
    budget: &mut Budget,
) -> Result<Option<Vec<String>>, Exhausted> {
    let pat = compile_glob(key);
    let text: Vec<char> = value.chars().collect();
    Ok(glob(&pat, &text, cmp, budget)?.map(|caps| {
        let mut out = vec![value.to_string()];
        out.extend(
            caps.iter()
                .map(|&(s, e)| text[s..e].iter().collect::<String>()),
        );
        out
    }))
}

/// Iterative wildcard matching: on a mismatch only the most recent `*` grows by one character
/// (growing an earlier one cannot help), so earlier wildcards stay as short as possible, there is
/// no recursion to overflow the stack, and the cost is at most |pattern| x |text| steps.
fn glob(
    pat: &[Pat],
    text: &[char],
    cmp: Comparator,
    budget: &mut Budget,
) -> Result<Option<Vec<(usize, usize)>>, Exhausted> {
    let n = text.len();
    let (mut p, mut t) = (0, 0);
    let mut caps: Vec<(usize, usize)> = Vec::new();
    // The latest `*`: its pattern index and the index of its capture.
    let mut star: Option<(usize, usize)> = None;
    loop {
        budget.spend(1)?;
        match pat.get(p) {
            Some(Pat::Star) if p + 1 == pat.len() => {
                caps.push((t, n));
                return Ok(Some(caps));
            }
            Some(Pat::Star) => {
                caps.push((t, t));
                star = Some((p, caps.len() - 1));
                p += 1;
                continue;
            }
            Some(Pat::One) if t < n => {
                caps.push((t, t + 1));
                p += 1;
                t += 1;
                continue;
            }
            Some(Pat::Lit(c)) if t < n && eq_char(text[t], *c, cmp) => {
                p += 1;
                t += 1;
                continue;
            }
            None if t == n => return Ok(Some(caps)),
            _ => {}
        }
        let Some((sp, ci)) = star else {
            return Ok(None);
        };
        let (start, end) = caps[ci];
        if end >= n {
            return Ok(None);
        }
        caps.truncate(ci + 1);
        caps[ci] = (start, end + 1);
        p = sp + 1;
        t = end + 1;
    }
}
