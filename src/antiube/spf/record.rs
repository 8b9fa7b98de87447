//! SPF record parsing (RFC 7208 sections 4.5, 4.6, 5, 6 and 12's ABNF).
//!
//! A [`Record`] borrows the TXT string it was parsed from: domain-specs and modifier values
//! stay `&str` (validated here, expanded later by `macros`), so parsing allocates one vector of
//! directives and nothing on success otherwise. Every syntax error is a [`ParseError`], which
//! the evaluator turns into `permerror`.

use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use super::macros::{self, Context};

/// Why a record (or a macro string in it) is not valid SPF. Evaluation turns every one of these
/// into `permerror`; the text is for logs and `Received-SPF` comments, telling the domain's
/// owner what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// A byte outside printable US-ASCII in the record.
    #[error("SPF records must be 7-bit ASCII; fix the record")]
    NonAscii,
    /// A term that is neither a known mechanism nor a `name=value` modifier.
    #[error("unknown mechanism {0:?}")]
    UnknownMechanism(String),
    /// A mechanism with a malformed argument.
    #[error("malformed term {term:?}: {why}")]
    BadTerm {
        /// The term as written.
        term: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A macro string with bad syntax.
    #[error("malformed macro string {text:?}: {why}")]
    Macro {
        /// The macro string as written.
        text: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `redirect=` or `exp=` given twice.
    #[error("modifier {0}= appears more than once")]
    DuplicateModifier(&'static str),
}

/// A directive's qualifier (section 4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    /// `+` (the default).
    Pass,
    /// `-`.
    Fail,
    /// `~`.
    SoftFail,
    /// `?`.
    Neutral,
}

/// A mechanism (section 5) with its arguments; domain-specs are unexpanded macro strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism<'a> {
    /// `all`.
    All,
    /// `include:<domain-spec>`.
    Include(&'a str),
    /// `a[:<domain-spec>][/<cidr4>][//<cidr6>]`.
    A {
        /// Target domain (`None`: the current domain).
        domain: Option<&'a str>,
        /// IPv4 prefix length.
        cidr4: u8,
        /// IPv6 prefix length.
        cidr6: u8,
    },
    /// `mx[:<domain-spec>][/<cidr4>][//<cidr6>]`.
    Mx {
        /// Target domain (`None`: the current domain).
        domain: Option<&'a str>,
        /// IPv4 prefix length.
        cidr4: u8,
        /// IPv6 prefix length.
        cidr6: u8,
    },
    /// `ptr[:<domain-spec>]`.
    Ptr(Option<&'a str>),
    /// `ip4:<network>[/<cidr>]`.
    Ip4(Ipv4Addr, u8),
    /// `ip6:<network>[/<cidr>]`.
    Ip6(Ipv6Addr, u8),
    /// `exists:<domain-spec>`.
    Exists(&'a str),
}

impl Mechanism<'_> {
    /// Whether evaluating it costs DNS queries (the 10-term limit of section 4.6.4).
    pub fn queries_dns(&self) -> bool {
        !matches!(
            self,
            Mechanism::All | Mechanism::Ip4(..) | Mechanism::Ip6(..)
        )
    }
}

/// A qualifier and a mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Directive<'a> {
    /// The result when the mechanism matches.
    pub qualifier: Qualifier,
    /// What to match.
    pub mechanism: Mechanism<'a>,
}

/// A parsed `v=spf1` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The directives, in evaluation order.
    pub directives: Vec<Directive<'a>>,
    /// `redirect=<domain-spec>`.
    pub redirect: Option<&'a str>,
    /// `exp=<domain-spec>`.
    pub exp: Option<&'a str>,
}

/// Whether a TXT string is an SPF record: `v=spf1` followed by a space or nothing (section
/// 4.5; case-insensitive like every ABNF literal).
pub fn is_spf_record(txt: &str) -> bool {
    let b = txt.as_bytes();
    b.len() >= 6 && b[..6].eq_ignore_ascii_case(b"v=spf1") && (b.len() == 6 || b[6] == b' ')
}

impl<'a> Record<'a> {
    /// Parses a record that [`is_spf_record`] accepted (the version is checked again here).
    pub fn parse(txt: &'a str) -> Result<Record<'a>, ParseError> {
        if !txt.is_ascii() {
            return Err(ParseError::NonAscii);
        }
        if !is_spf_record(txt) {
            return Err(ParseError::BadTerm {
                term: txt.chars().take(16).collect(),
                why: "the record must start with \"v=spf1\"",
            });
        }
        let mut record = Record {
            directives: Vec::new(),
            redirect: None,
            exp: None,
        };
        for term in txt[6..].split(' ').filter(|t| !t.is_empty()) {
            if let Some((name, value)) = modifier(term) {
                let slot = if name.eq_ignore_ascii_case("redirect") {
                    Some((&mut record.redirect, "redirect"))
                } else if name.eq_ignore_ascii_case("exp") {
                    Some((&mut record.exp, "exp"))
                } else {
                    None
                };
                match slot {
                    Some((slot, which)) => {
                        if slot.is_some() {
                            return Err(ParseError::DuplicateModifier(which));
                        }
                        domain_spec(value)?;
                        *slot = Some(value);
                    }
                    None => {
                        macros::validate(value, Context::Domain)?;
                    }
                }
            } else {
                record.directives.push(directive(term)?);
            }
        }
        Ok(record)
    }
}

/// Splits `name=value` when `term` is a modifier (`name = ALPHA *(ALPHA / DIGIT / - / _ / .)`).
fn modifier(term: &str) -> Option<(&str, &str)> {
    let eq = term.find('=')?;
    let name = &term[..eq];
    let mut bytes = name.bytes();
    let first = bytes.next()?;
    if first.is_ascii_alphabetic()
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Some((name, &term[eq + 1..]))
    } else {
        None
    }
}

fn bad(term: &str, why: &'static str) -> ParseError {
    ParseError::BadTerm {
        term: term.to_string(),
        why,
    }
}

/// Checks a domain-spec: a macro string ending in a macro or in `.toplabel[.]`.
fn domain_spec(spec: &str) -> Result<(), ParseError> {
    if spec.is_empty() {
        return Err(bad(spec, "empty domain"));
    }
    if macros::validate(spec, Context::Domain)? {
        return Ok(());
    }
    let s = spec.strip_suffix('.').unwrap_or(spec);
    let Some(dot) = s.rfind('.') else {
        return Err(bad(spec, "a domain needs at least two labels"));
    };
    let top = &s[dot + 1..];
    // Only alphanumerics and '-' in the top label, so its dot is a literal one.
    let ok = !top.is_empty()
        && top.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !top.starts_with('-')
        && !top.ends_with('-')
        && !top.bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(bad(spec, "the top-level label is not a valid name"))
    }
}

/// Parses a CIDR length `/n` with no leading zero and `n <= max`.
fn cidr(term: &str, digits: &str, max: u8) -> Result<u8, ParseError> {
    let valid = !digits.is_empty()
        && digits.len() <= 3
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    match digits.parse::<u8>() {
        Ok(n) if valid && n <= max => Ok(n),
        _ => Err(bad(term, "bad CIDR prefix length")),
    }
}

/// Splits `[:domain-spec][/cidr4][//cidr6]` for `a` and `mx`.
fn dual_cidr<'a>(term: &str, rest: &'a str) -> Result<(Option<&'a str>, u8, u8), ParseError> {
    let mut rest = rest;
    let mut cidr6 = 128;
    if let Some(pos) = rest.rfind("//") {
        let digits = &rest[pos + 2..];
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            cidr6 = cidr(term, digits, 128)?;
            rest = &rest[..pos];
        }
    }
    let mut cidr4 = 32;
    if let Some(pos) = rest.rfind('/') {
        let digits = &rest[pos + 1..];
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            cidr4 = cidr(term, digits, 32)?;
            rest = &rest[..pos];
        }
    }
    let domain = if rest.is_empty() {
        None
    } else if let Some(d) = rest.strip_prefix(':') {
        domain_spec(d)?;
        Some(d)
    } else {
        return Err(bad(
            term,
            "expected ':domain' or '/prefix' after the mechanism",
        ));
    };
    Ok((domain, cidr4, cidr6))
}

fn directive(term: &str) -> Result<Directive<'_>, ParseError> {
    let (qualifier, body) = match term.as_bytes()[0] {
        b'+' => (Qualifier::Pass, &term[1..]),
        b'-' => (Qualifier::Fail, &term[1..]),
        b'~' => (Qualifier::SoftFail, &term[1..]),
        b'?' => (Qualifier::Neutral, &term[1..]),
        _ => (Qualifier::Pass, term),
    };
    let name_end = body.find([':', '/']).unwrap_or(body.len());
    let (name, rest) = body.split_at(name_end);
    let lower = |n: &str| name.eq_ignore_ascii_case(n);
    let required = |rest: &'_ str| -> Result<(), ParseError> {
        match rest.strip_prefix(':') {
            Some(d) => domain_spec(d),
            None => Err(bad(term, "expected ':' and a domain")),
        }
    };
    let mechanism = if lower("all") {
        if !rest.is_empty() {
            return Err(bad(term, "'all' takes no argument"));
        }
        Mechanism::All
    } else if lower("include") {
        required(rest)?;
        Mechanism::Include(&rest[1..])
    } else if lower("exists") {
        required(rest)?;
        Mechanism::Exists(&rest[1..])
    } else if lower("a") {
        let (domain, cidr4, cidr6) = dual_cidr(term, rest)?;
        Mechanism::A {
            domain,
            cidr4,
            cidr6,
        }
    } else if lower("mx") {
        let (domain, cidr4, cidr6) = dual_cidr(term, rest)?;
        Mechanism::Mx {
            domain,
            cidr4,
            cidr6,
        }
    } else if lower("ptr") {
        if rest.is_empty() {
            Mechanism::Ptr(None)
        } else {
            required(rest)?;
            Mechanism::Ptr(Some(&rest[1..]))
        }
    } else if lower("ip4") || lower("ip6") {
        let Some(net) = body[name_end..].strip_prefix(':') else {
            return Err(bad(term, "expected ':' and an address"));
        };
        let (addr, len) = match net.find('/') {
            Some(p) => (&net[..p], Some(&net[p + 1..])),
            None => (net, None),
        };
        if lower("ip4") {
            let a: Ipv4Addr = addr.parse().map_err(|_| bad(term, "not an IPv4 address"))?;
            let len = len.map(|l| cidr(term, l, 32)).transpose()?.unwrap_or(32);
            Mechanism::Ip4(a, len)
        } else {
            let a: Ipv6Addr = addr.parse().map_err(|_| bad(term, "not an IPv6 address"))?;
            let len = len.map(|l| cidr(term, l, 128)).transpose()?.unwrap_or(128);
            Mechanism::Ip6(a, len)
        }
    } else {
        return Err(ParseError::UnknownMechanism(term.to_string()));
    };
    Ok(Directive {
        qualifier,
        mechanism,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_mechanism_and_modifier() {
        let r = Record::parse(
            "v=spf1 +all -include:_spf.example.com ~a a:%{d}.x.org/24//64 mx/30 ?mx:m.example.com \
             ptr ptr:example.com ip4:192.0.2.0/24 ip6:2001:db8::/32 exists:%{ir}.bl.example.org \
             redirect=other.example.com exp=exp.%{d} foo-bar=%{l}",
        )
        .unwrap();
        use Mechanism::*;
        let mechs: Vec<_> = r.directives.iter().map(|d| d.mechanism).collect();
        assert_eq!(
            mechs,
            vec![
                All,
                Include("_spf.example.com"),
                A {
                    domain: None,
                    cidr4: 32,
                    cidr6: 128
                },
                A {
                    domain: Some("%{d}.x.org"),
                    cidr4: 24,
                    cidr6: 64
                },
                Mx {
                    domain: None,
                    cidr4: 30,
                    cidr6: 128
                },
                Mx {
                    domain: Some("m.example.com"),
                    cidr4: 32,
                    cidr6: 128
                },
                Ptr(None),
                Ptr(Some("example.com")),
                Ip4("192.0.2.0".parse().unwrap(), 24),
                Ip6("2001:db8::".parse().unwrap(), 32),
                Exists("%{ir}.bl.example.org"),
            ]
        );
        let quals: Vec<_> = r.directives.iter().map(|d| d.qualifier).collect();
        assert_eq!(
            quals[..4],
            [
                Qualifier::Pass,
                Qualifier::Fail,
                Qualifier::SoftFail,
                Qualifier::Pass
            ]
        );
        assert_eq!(quals[5], Qualifier::Neutral);
        assert_eq!(r.redirect, Some("other.example.com"));
        assert_eq!(r.exp, Some("exp.%{d}"));
    }

    #[test]
    fn version_detection() {
        assert!(is_spf_record("v=spf1"));
        assert!(is_spf_record("V=SPF1 -all"));
        assert!(!is_spf_record("v=spf10 -all"));
        assert!(!is_spf_record("v=spf2.0/pra -all"));
        assert!(Record::parse("v=spf1   ").unwrap().directives.is_empty());
    }

    #[test]
    fn errors() {
        for bad in [
            "v=spf1 foo",
            "v=spf1 all:x",
            "v=spf1 include",
            "v=spf1 include:",
            "v=spf1 a:example",
            "v=spf1 a:foo.123",
            "v=spf1 a:foo.-com",
            "v=spf1 a/33",
            "v=spf1 a//129",
            "v=spf1 a/024",
            "v=spf1 a:",
            "v=spf1 ip4:1.2.3",
            "v=spf1 ip4:1.2.3.4/33",
            "v=spf1 ip4:01.2.3.4",
            "v=spf1 ip6:1.2.3.4",
            "v=spf1 ip6::::1",
            "v=spf1 ip6:::1//64",
            "v=spf1 exists:%{c}.example.com",
            "v=spf1 exists:%{s0}.example.com",
            "v=spf1 redirect=a.example.com redirect=b.example.com",
            "v=spf1 exp=a.example.com exp=b.example.com",
            "v=spf1 redirect=%",
            "v=spf1 unknown=%{",
            "v=spf1 ptr:",
            "v=spf1 -all é",
            "v=spf1 =foo",
            "v=spf1\t-all",
        ] {
            assert!(Record::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(matches!(
            Record::parse("v=spf1 moo"),
            Err(ParseError::UnknownMechanism(_))
        ));
    }

    /// Seeded random records (mutations of a valid one plus random bytes) never panic.
    #[test]
    fn random_records_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7208);
        let seed = b"v=spf1 a:%{d2r-}.x.org/24//64 mx ip4:192.0.2.0/24 ip6:::1/128 \
                     include:%{ir}.%{v}._spf.%{d} exists:%{l1r+-}.e.com redirect=%{o} exp=%% -all";
        let alphabet = b"v=spf1 %{}:/.-+~?_,0123456789aAdDiIlLmMpPrRsSxX\xc3\xa9";
        let vars = super::super::macros::MacroVars {
            local: "a-b",
            sender_domain: "example.com",
            domain: "example.com",
            ip: "2001:db8::1".parse().unwrap(),
            helo: "h.example.com",
            validated: "unknown",
            receiver: "unknown",
            now: 0,
        };
        let mut out = String::new();
        for _ in 0..20_000 {
            let mut rec = seed.to_vec();
            for _ in 0..rng.gen_range(1..8) {
                let pos = rng.gen_range(0..=rec.len());
                match rng.gen_range(0..3) {
                    0 if pos < rec.len() => {
                        rec.remove(pos);
                    }
                    1 if pos < rec.len() => {
                        rec[pos] = alphabet[rng.gen_range(0..alphabet.len())];
                    }
                    _ => rec.insert(pos, alphabet[rng.gen_range(0..alphabet.len())]),
                }
            }
            let text = String::from_utf8_lossy(&rec);
            if let Ok(r) = Record::parse(&text) {
                for spec in r.directives.iter().filter_map(|d| match d.mechanism {
                    Mechanism::Include(s) | Mechanism::Exists(s) => Some(s),
                    Mechanism::A { domain, .. } | Mechanism::Mx { domain, .. } => domain,
                    Mechanism::Ptr(d) => d,
                    _ => None,
                }) {
                    macros::expand_domain(spec, &vars, &mut out).unwrap();
                }
            }
            let _ = macros::expand(&text, Context::Explanation, &vars, &mut out);
        }
    }
}
