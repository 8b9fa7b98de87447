//! Message flags: the five stored IMAP system flags and keywords, and how STORE changes them.
//!
//! `\Recent` is not here: it belongs to a session, not to the message, so the IMAP server
//! derives it. Keywords are kept as given (case preserved) in a sorted set, so equal flag sets
//! compare and encode identically. This module does no I/O.
//!
//! Security note: keywords come from clients; [`Flags::validate`] bounds their number and length
//! and restricts them to IMAP atom characters so they can be echoed in responses unquoted.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use super::error::StoreError;

/// A system flag that is stored with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SystemFlag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
}

impl SystemFlag {
    /// Every stored system flag, in bit order.
    pub const ALL: [SystemFlag; 5] = [
        SystemFlag::Seen,
        SystemFlag::Answered,
        SystemFlag::Flagged,
        SystemFlag::Deleted,
        SystemFlag::Draft,
    ];

    fn bit(self) -> u8 {
        match self {
            SystemFlag::Seen => 1,
            SystemFlag::Answered => 2,
            SystemFlag::Flagged => 4,
            SystemFlag::Deleted => 8,
            SystemFlag::Draft => 16,
        }
    }

    /// The IMAP spelling, with its backslash.
    pub fn imap_name(self) -> &'static str {
        match self {
            SystemFlag::Seen => "\\Seen",
            SystemFlag::Answered => "\\Answered",
            SystemFlag::Flagged => "\\Flagged",
            SystemFlag::Deleted => "\\Deleted",
            SystemFlag::Draft => "\\Draft",
        }
    }

    /// Parses an IMAP system flag name, case-insensitively (`\seen` is `\Seen`).
    pub fn from_imap(name: &str) -> Option<SystemFlag> {
        SystemFlag::ALL
            .into_iter()
            .find(|f| f.imap_name().eq_ignore_ascii_case(name))
    }
}

/// The flags of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    system: u8,
    keywords: BTreeSet<String>,
}

/// How STORE combines the given flags with a message's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// `+FLAGS`: set these, keep the others.
    Add,
    /// `-FLAGS`: clear these, keep the others.
    Remove,
    /// `FLAGS`: exactly these.
    Replace,
}

/// Bits that name a system flag; anything else in a stored byte is corruption.
pub(crate) const SYSTEM_MASK: u8 = 0b1_1111;

impl Flags {
    /// No flags.
    pub fn new() -> Flags {
        Flags::default()
    }

    /// Builds flags from IMAP names: `\Seen` etc. are system flags, anything else a keyword.
    /// `\Recent` and other backslash names are refused (clients may not set them).
    pub fn from_imap<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Flags, StoreError> {
        let mut flags = Flags::new();
        for name in names {
            if let Some(f) = SystemFlag::from_imap(name) {
                flags.insert(f);
            } else if name.starts_with('\\') {
                return Err(StoreError::InvalidKeyword {
                    keyword: name.chars().take(100).collect(),
                    reason: "not a settable system flag",
                });
            } else {
                flags.insert_keyword(name);
            }
        }
        Ok(flags)
    }

    /// Builds flags from stored parts (the index decoder).
    pub(crate) fn from_parts(system: u8, keywords: BTreeSet<String>) -> Flags {
        Flags { system, keywords }
    }

    /// Adds a system flag.
    pub fn with(mut self, flag: SystemFlag) -> Flags {
        self.insert(flag);
        self
    }

    pub fn contains(&self, flag: SystemFlag) -> bool {
        self.system & flag.bit() != 0
    }

    pub fn insert(&mut self, flag: SystemFlag) {
        self.system |= flag.bit();
    }

    pub fn remove(&mut self, flag: SystemFlag) {
        self.system &= !flag.bit();
    }

    pub fn insert_keyword(&mut self, keyword: &str) {
        self.keywords.insert(keyword.to_string());
    }

    pub fn has_keyword(&self, keyword: &str) -> bool {
        self.keywords.contains(keyword)
    }

    /// The keywords, sorted.
    pub fn keywords(&self) -> impl Iterator<Item = &str> {
        self.keywords.iter().map(String::as_str)
    }

    /// The system flags as a bit set (stable: stored in the index).
    pub(crate) fn system_bits(&self) -> u8 {
        self.system
    }

    pub fn is_empty(&self) -> bool {
        self.system == 0 && self.keywords.is_empty()
    }

    /// IMAP names of all flags: system flags in a fixed order, then keywords.
    pub fn imap_names(&self) -> Vec<String> {
        SystemFlag::ALL
            .into_iter()
            .filter(|f| self.contains(*f))
            .map(|f| f.imap_name().to_string())
            .chain(self.keywords.iter().cloned())
            .collect()
    }

    /// The result of applying `op` with `given` to these flags.
    pub fn apply(&self, op: FlagOp, given: &Flags) -> Flags {
        match op {
            FlagOp::Replace => given.clone(),
            FlagOp::Add => Flags {
                system: self.system | given.system,
                keywords: self.keywords.union(&given.keywords).cloned().collect(),
            },
            FlagOp::Remove => Flags {
                system: self.system & !given.system,
                keywords: self.keywords.difference(&given.keywords).cloned().collect(),
            },
        }
    }

    /// Checks keywords against IMAP atom syntax and the given limits.
    pub fn validate(&self, max_keywords: usize, max_keyword_len: usize) -> Result<(), StoreError> {
        if self.keywords.len() > max_keywords {
            return Err(StoreError::InvalidKeyword {
                keyword: String::new(),
                reason: "too many keywords on one message",
            });
        }
        for k in &self.keywords {
            let bad = |reason| StoreError::InvalidKeyword {
                keyword: k.chars().take(100).collect(),
                reason,
            };
            if k.is_empty() || k.len() > max_keyword_len {
                return Err(bad("empty or too long"));
            }
            if !k.bytes().all(is_atom_char) {
                return Err(bad("only IMAP atom characters are allowed"));
            }
        }
        Ok(())
    }
}

/// IMAP `ATOM-CHAR` minus `]` (RFC 3501 flag-keyword = atom).
fn is_atom_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b)
        && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({})", self.imap_names().join(" "))
    }
}

impl Serialize for Flags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.imap_names().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(names: &[&str]) -> Flags {
        Flags::from_imap(names.iter().copied()).unwrap()
    }

    /// (flags before, operation, flags given, flags after)
    type Case = (
        &'static [&'static str],
        FlagOp,
        &'static [&'static str],
        &'static [&'static str],
    );

    #[test]
    fn store_operations_table() {
        let cases: [Case; 6] = [
            (
                &["\\Seen"],
                FlagOp::Add,
                &["\\Flagged"],
                &["\\Seen", "\\Flagged"],
            ),
            (
                &["\\Seen", "$Junk"],
                FlagOp::Remove,
                &["$Junk"],
                &["\\Seen"],
            ),
            (
                &["\\Seen", "$Junk"],
                FlagOp::Replace,
                &["\\Draft"],
                &["\\Draft"],
            ),
            (&[], FlagOp::Remove, &["\\Seen"], &[]),
            (&["a"], FlagOp::Add, &["b", "a"], &["a", "b"]),
            (&["\\Deleted", "x"], FlagOp::Replace, &[], &[]),
        ];
        for (start, op, given, want) in cases {
            assert_eq!(
                f(start).apply(op, &f(given)),
                f(want),
                "{start:?} {op:?} {given:?}"
            );
        }
    }

    #[test]
    fn imap_names_round_trip() {
        let flags = f(&["\\draft", "\\SEEN", "$Label1"]);
        assert_eq!(flags.imap_names(), ["\\Seen", "\\Draft", "$Label1"]);
        assert_eq!(flags.to_string(), "(\\Seen \\Draft $Label1)");
        assert!(Flags::from_imap(["\\Recent"]).is_err());
        assert!(Flags::from_imap(["\\Whatever"]).is_err());
    }

    #[test]
    fn keywords_are_validated() {
        assert!(f(&["$Junk", "NonJunk"]).validate(10, 20).is_ok());
        for bad in ["a b", "a(b", "x]", "q\"", "é", &"k".repeat(21)] {
            let mut flags = Flags::new();
            flags.insert_keyword(bad);
            assert!(flags.validate(10, 20).is_err(), "{bad:?}");
        }
        assert!(f(&["a", "b", "c"]).validate(2, 20).is_err());
    }
}
