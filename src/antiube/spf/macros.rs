//! Macro strings (RFC 7208 section 7): validation at parse time and expansion at evaluation
//! time.
//!
//! A macro string is kept as the record's own `&str` and scanned twice: once by the parser (so
//! a bad macro is a permerror before anything is looked up) and once per expansion, writing
//! straight into the caller's buffer. Expansion allocates nothing beyond that buffer.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::record::ParseError;

/// One piece of a macro string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// Literal characters, copied as they are.
    Literal(&'a str),
    /// `%%`, `%_` or `%-`: a fixed expansion (`%`, a space, `%20`).
    Escape(&'static str),
    /// `%{...}`: a macro letter with its transformers.
    Macro(Macro<'a>),
}

/// A `%{letter digits r delimiters}` expansion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Macro<'a> {
    /// The letter, lower-cased.
    pub letter: u8,
    /// Upper-case letter: the value is URL-escaped (section 7.3).
    pub escape: bool,
    /// Number of right-hand parts kept (`None`: all).
    pub keep: Option<usize>,
    /// The `r` transformer: parts reversed before keeping.
    pub reverse: bool,
    /// The delimiters the value is split on (empty: `.`).
    pub delimiters: &'a str,
}

/// Where a macro string appears, which decides the letters and characters it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// A domain-spec or an unknown modifier's value: no `c`, `r`, `t`, no spaces.
    Domain,
    /// An explanation string (the TXT record `exp=` points to): every letter, spaces allowed.
    Explanation,
}

fn is_literal(c: u8, ctx: Context) -> bool {
    matches!(c, 0x21..=0x24 | 0x26..=0x7e) || (c == b' ' && ctx == Context::Explanation)
}

fn is_delimiter(c: u8) -> bool {
    matches!(c, b'.' | b'-' | b'+' | b',' | b'/' | b'_' | b'=')
}

/// Iterates over the tokens of a macro string, failing on the first syntax error.
pub(crate) struct Tokens<'a> {
    s: &'a str,
    pos: usize,
    ctx: Context,
}

impl<'a> Tokens<'a> {
    pub(crate) fn new(s: &'a str, ctx: Context) -> Self {
        Tokens { s, pos: 0, ctx }
    }

    fn bad(&self, why: &'static str) -> ParseError {
        ParseError::Macro {
            text: self.s.to_string(),
            why,
        }
    }

    fn next_token(&mut self) -> Result<Option<Token<'a>>, ParseError> {
        let b = self.s.as_bytes();
        let start = self.pos;
        if start >= b.len() {
            return Ok(None);
        }
        if b[start] != b'%' {
            let mut end = start;
            while end < b.len() && b[end] != b'%' {
                if !is_literal(b[end], self.ctx) {
                    return Err(self.bad("character not allowed in a macro string"));
                }
                end += 1;
            }
            self.pos = end;
            return Ok(Some(Token::Literal(&self.s[start..end])));
        }
        let Some(&next) = b.get(start + 1) else {
            return Err(self.bad("'%' at the end (write '%%' for a percent sign)"));
        };
        let fixed = match next {
            b'%' => Some("%"),
            b'_' => Some(" "),
            b'-' => Some("%20"),
            b'{' => None,
            _ => return Err(self.bad("'%' must be followed by '{', '%', '_' or '-'")),
        };
        if let Some(f) = fixed {
            self.pos = start + 2;
            return Ok(Some(Token::Escape(f)));
        }
        let mut i = start + 2;
        let Some(&raw) = b.get(i) else {
            return Err(self.bad("unterminated '%{'"));
        };
        let letter = raw.to_ascii_lowercase();
        let allowed: &[u8] = match self.ctx {
            Context::Domain => b"slodiphv",
            Context::Explanation => b"slodiphvcrt",
        };
        if !allowed.contains(&letter) {
            return Err(self.bad(if b"crt".contains(&letter) {
                "macro letters c, r and t are allowed only in explanations"
            } else {
                "unknown macro letter"
            }));
        }
        i += 1;
        let digits_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let keep = if i > digits_start {
            // More parts than any name can have just means "all of them".
            let n = self.s[digits_start..i].bytes().fold(0usize, |n, d| {
                n.saturating_mul(10).saturating_add((d - b'0') as usize)
            });
            if n == 0 {
                return Err(self.bad("the digit transformer must not be zero"));
            }
            Some(n)
        } else {
            None
        };
        let reverse = matches!(b.get(i), Some(b'r' | b'R'));
        if reverse {
            i += 1;
        }
        let delim_start = i;
        while i < b.len() && is_delimiter(b[i]) {
            i += 1;
        }
        if b.get(i) != Some(&b'}') {
            return Err(self.bad("bad macro: expected '}' after the letter and transformers"));
        }
        self.pos = i + 1;
        Ok(Some(Token::Macro(Macro {
            letter,
            escape: raw.is_ascii_uppercase(),
            keep,
            reverse,
            delimiters: &self.s[delim_start..i],
        })))
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Result<Token<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_token() {
            Ok(t) => t.map(Ok),
            Err(e) => {
                self.pos = self.s.len();
                Some(Err(e))
            }
        }
    }
}

/// Checks a macro string's syntax; returns whether it ends with a macro expansion (which makes
/// a domain-spec's `domain-end` valid without a literal top label).
pub(crate) fn validate(s: &str, ctx: Context) -> Result<bool, ParseError> {
    let mut ends_with_macro = false;
    for t in Tokens::new(s, ctx) {
        ends_with_macro = !matches!(t?, Token::Literal(_));
    }
    Ok(ends_with_macro)
}

/// Whether a macro string uses the `p` letter (whose value costs DNS lookups).
pub(crate) fn uses_p(s: &str, ctx: Context) -> bool {
    Tokens::new(s, ctx).any(|t| matches!(t, Ok(Token::Macro(m)) if m.letter == b'p'))
}

/// The values macro letters expand to.
#[derive(Debug, Clone, Copy)]
pub struct MacroVars<'a> {
    /// `l`: the sender's local part (`postmaster` when it has none).
    pub local: &'a str,
    /// `o`: the sender's domain.
    pub sender_domain: &'a str,
    /// `d`: the domain whose record is being evaluated.
    pub domain: &'a str,
    /// `i`, `c`, `v`: the client's address.
    pub ip: IpAddr,
    /// `h`: the HELO/EHLO name.
    pub helo: &'a str,
    /// `p`: the validated name of the client (`unknown` when none), looked up by the caller
    /// before expanding a string that uses it.
    pub validated: &'a str,
    /// `r`: the receiving host's name (`unknown` when not configured).
    pub receiver: &'a str,
    /// `t`: the current time, seconds since the epoch.
    pub now: u64,
}

/// Writes one macro letter's raw value.
fn raw_value(out: &mut String, letter: u8, v: &MacroVars<'_>) {
    match letter {
        b's' => {
            out.push_str(v.local);
            out.push('@');
            out.push_str(v.sender_domain);
        }
        b'l' => out.push_str(v.local),
        b'o' => out.push_str(v.sender_domain),
        b'd' => out.push_str(v.domain),
        b'i' => match v.ip {
            IpAddr::V4(a) => {
                let _ = write!(out, "{a}");
            }
            IpAddr::V6(a) => {
                for (n, byte) in a.octets().iter().enumerate() {
                    if n > 0 {
                        out.push('.');
                    }
                    let _ = write!(out, "{:x}.{:x}", byte >> 4, byte & 0xf);
                }
            }
        },
        b'p' => out.push_str(v.validated),
        b'v' => out.push_str(if v.ip.is_ipv4() { "in-addr" } else { "ip6" }),
        b'h' => out.push_str(v.helo),
        b'c' => {
            let _ = write!(out, "{}", v.ip);
        }
        b'r' => out.push_str(v.receiver),
        b't' => {
            let _ = write!(out, "{}", v.now);
        }
        _ => {}
    }
}

fn push_escaped(out: &mut String, part: &str, escape: bool) {
    if !escape {
        out.push_str(part);
        return;
    }
    for b in part.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Expands one macro into `out`; `scratch` holds the raw value (reused between calls).
fn expand_macro(out: &mut String, scratch: &mut String, m: &Macro<'_>, v: &MacroVars<'_>) {
    scratch.clear();
    raw_value(scratch, m.letter, v);
    let delims = if m.delimiters.is_empty() {
        "."
    } else {
        m.delimiters
    };
    let split = |c: char| delims.contains(c);
    let total = scratch.split(split).count();
    let keep = m.keep.unwrap_or(total).min(total);
    let skip = total - keep;
    let mut first = true;
    let mut emit = |part: &str| {
        if !first {
            out.push('.');
        }
        first = false;
        push_escaped(out, part, m.escape);
    };
    if m.reverse {
        scratch.rsplit(split).skip(skip).for_each(&mut emit);
    } else {
        scratch.split(split).skip(skip).for_each(&mut emit);
    }
}

/// Expands a macro string into `out` (cleared first).
pub(crate) fn expand(
    s: &str,
    ctx: Context,
    vars: &MacroVars<'_>,
    out: &mut String,
) -> Result<(), ParseError> {
    out.clear();
    let mut scratch = String::new();
    for t in Tokens::new(s, ctx) {
        match t? {
            Token::Literal(l) => out.push_str(l),
            Token::Escape(e) => out.push_str(e),
            Token::Macro(m) => expand_macro(out, &mut scratch, &m, vars),
        }
    }
    Ok(())
}

/// Expands a domain-spec into a name to look up: section 7.3's truncation to 253 characters
/// (leftmost labels dropped) and without a trailing dot.
pub(crate) fn expand_domain(
    s: &str,
    vars: &MacroVars<'_>,
    out: &mut String,
) -> Result<(), ParseError> {
    expand(s, Context::Domain, vars, out)?;
    if out.ends_with('.') {
        out.pop();
    }
    if out.len() > 253 {
        let mut cut = out.len() - 253;
        // Drop whole labels: advance to just past the next dot.
        match out[cut..].find('.') {
            Some(dot) if out.as_bytes()[cut - 1] != b'.' => cut += dot + 1,
            _ => {}
        }
        out.drain(..cut);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(ip: &str) -> MacroVars<'static> {
        MacroVars {
            local: "strong-bad",
            sender_domain: "email.example.com",
            domain: "email.example.com",
            ip: ip.parse().unwrap(),
            helo: "mx.example.org",
            validated: "mx.example.org",
            receiver: "receiver.example.net",
            now: 1_000_000_000,
        }
    }

    fn x(s: &str, ip: &str, ctx: Context) -> String {
        let mut out = String::new();
        expand(s, ctx, &vars(ip), &mut out).unwrap();
        out
    }

    /// Every example of RFC 7208 section 7.4.
    #[test]
    fn rfc7208_section_7_4_examples() {
        let d = |s| x(s, "192.0.2.3", Context::Domain);
        assert_eq!(d("%{s}"), "strong-bad@email.example.com");
        assert_eq!(d("%{o}"), "email.example.com");
        assert_eq!(d("%{d}"), "email.example.com");
        assert_eq!(d("%{d4}"), "email.example.com");
        assert_eq!(d("%{d3}"), "email.example.com");
        assert_eq!(d("%{d2}"), "example.com");
        assert_eq!(d("%{d1}"), "com");
        assert_eq!(d("%{dr}"), "com.example.email");
        assert_eq!(d("%{d2r}"), "example.email");
        assert_eq!(d("%{l}"), "strong-bad");
        assert_eq!(d("%{l-}"), "strong.bad");
        assert_eq!(d("%{lr}"), "strong-bad");
        assert_eq!(d("%{lr-}"), "bad.strong");
        assert_eq!(d("%{l1r-}"), "strong");
        assert_eq!(
            d("%{ir}.%{v}._spf.%{d2}"),
            "3.2.0.192.in-addr._spf.example.com"
        );
        assert_eq!(d("%{lr-}.lp._spf.%{d2}"), "bad.strong.lp._spf.example.com");
        assert_eq!(
            d("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}"),
            "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"
        );
        assert_eq!(
            d("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}"),
            "3.2.0.192.in-addr.strong.lp._spf.example.com"
        );
        assert_eq!(
            d("%{d2}.trusted-domains.example.net"),
            "example.com.trusted-domains.example.net"
        );
        assert_eq!(
            x("%{ir}.%{v}._spf.%{d2}", "2001:db8::cb01", Context::Domain),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
        );
    }

    #[test]
    fn escapes_url_encoding_and_explanation_letters() {
        let e = |s| x(s, "192.0.2.3", Context::Explanation);
        assert_eq!(e("%% %_ %-"), "%   %20");
        assert_eq!(e("%{S}"), "strong-bad%40email.example.com");
        assert_eq!(
            e("%{c} %{r} %{t}"),
            "192.0.2.3 receiver.example.net 1000000000"
        );
        assert_eq!(
            x("%{c}", "2001:db8::cb01", Context::Explanation),
            "2001:db8::cb01"
        );
        assert_eq!(e("%{h} %{p} %{v}"), "mx.example.org mx.example.org in-addr");
        assert_eq!(e("%{d9999999999999999999999}"), "email.example.com");
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "%", "%x", "%{", "%{s", "%{q}", "%{s0}", "%{s:}", "a b", "%{c}", "%{r}", "%{t}", "é",
        ] {
            assert!(validate(bad, Context::Domain).is_err(), "{bad:?}");
        }
        assert!(validate("%{c} a b", Context::Explanation).is_ok());
        assert_eq!(validate("%{d}", Context::Domain), Ok(true));
        assert_eq!(validate("a.%{d}.com", Context::Domain), Ok(false));
        assert!(uses_p("x.%{p}", Context::Domain));
        assert!(!uses_p("x.%{d}", Context::Domain));
    }

    #[test]
    fn long_names_are_truncated_by_whole_labels() {
        let label = "a".repeat(60);
        let v = MacroVars {
            domain: "example.com",
            ..vars("192.0.2.3")
        };
        let s = format!("{label}.{label}.{label}.{label}.%{{d}}");
        let mut out = String::new();
        expand_domain(&s, &v, &mut out).unwrap();
        assert!(out.len() <= 253, "{}", out.len());
        assert_eq!(out, format!("{label}.{label}.{label}.example.com"));
    }
}
