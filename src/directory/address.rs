//! Mail addresses and domain names: parsing, validation and normalisation.
//!
//! Every address that enters the directory — from a command, an import file or an SMTP
//! `RCPT TO` — goes through [`Address::parse`], which lowercases it and checks it against a
//! conservative subset of RFC 5321: a dot-atom local part (no quoted strings, no UTF-8) and an
//! LDH domain (no address literals). This module must never consult the directory or do I/O.
//!
//! Security note: the accepted set is deliberately narrow — no whitespace, control characters,
//! quotes, backslashes, `<>`, `()`, `,`, `;` or `:` — so a valid address can be written into
//! SMTP/LMTP paths, Sieve string literals and log lines without quoting, and `..` can never
//! occur. It is still not a safe file name: `/` and `%` are legal in a local part, so storage
//! must encode addresses before using them as paths. Do not widen the set without checking
//! those sinks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest local part, in octets (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_LEN: usize = 64;
/// Longest domain name, in octets (RFC 1035, without the trailing dot).
pub const MAX_DOMAIN_LEN: usize = 253;
/// Longest label of a domain name, in octets.
pub const MAX_LABEL_LEN: usize = 63;
/// Longest whole address: the 256-octet reverse/forward path minus its angle brackets.
pub const MAX_ADDRESS_LEN: usize = 254;
/// Separates a user's local part from the optional tag (`alice+lists@example.org`).
pub const SUBADDRESS_SEPARATOR: char = '+';

/// Why an address or a domain name was refused. Each message names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AddressError {
    /// The text is empty.
    #[error("empty address")]
    Empty,
    /// No `@` separates the local part from the domain.
    #[error("missing '@' between local part and domain")]
    MissingAt,
    /// More than one `@`: quoted local parts are not supported.
    #[error("more than one '@' (quoted local parts are not supported)")]
    ExtraAt,
    /// Nothing before the `@`.
    #[error("empty local part before '@'")]
    EmptyLocal,
    /// The local part is longer than [`MAX_LOCAL_LEN`].
    #[error("local part is longer than {MAX_LOCAL_LEN} characters")]
    LocalTooLong,
    /// The whole address is longer than [`MAX_ADDRESS_LEN`].
    #[error("address is longer than {MAX_ADDRESS_LEN} characters")]
    TooLong,
    /// A character outside the allowed set; whitespace and control characters land here.
    #[error("character {0:?} is not allowed in an address")]
    BadChar(char),
    /// A local part starting or ending with a dot, or with two dots in a row.
    #[error("misplaced '.' in local part (leading, trailing or doubled)")]
    BadDot,
    /// The domain is empty.
    #[error("empty domain")]
    EmptyDomain,
    /// The domain is longer than [`MAX_DOMAIN_LEN`].
    #[error("domain is longer than {MAX_DOMAIN_LEN} characters")]
    DomainTooLong,
    /// A domain label is empty (`a..b`, leading or trailing dot).
    #[error("empty domain label (leading, trailing or doubled '.')")]
    EmptyLabel,
    /// A domain label is longer than [`MAX_LABEL_LEN`].
    #[error("domain label longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong,
    /// A domain label starts or ends with a hyphen.
    #[error("domain label starts or ends with '-'")]
    LabelHyphen,
    /// The last label is all digits: this is an IP address, not a domain name.
    #[error(
        "domain ends in a numeric label (IP addresses and address literals are not supported)"
    )]
    NumericTld,
}

/// A validated, lowercased `local@domain` address.
///
/// Construct it with [`Address::parse`]; the invariant (valid and lowercase) holds for every
/// value, so code holding an `Address` never re-validates.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Address {
    /// The normalised address text.
    text: String,
    /// Byte offset of the `@`, so `local()` and `domain()` need no search.
    at: usize,
}

impl Address {
    /// Parses, validates and lowercases `text`. Surrounding whitespace is an error, not trimmed:
    /// callers that read user input trim it themselves, so that nothing is silently changed.
    pub fn parse(text: &str) -> Result<Address, AddressError> {
        if text.is_empty() {
            return Err(AddressError::Empty);
        }
        if let Some(c) = text.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(AddressError::BadChar(c));
        }
        let mut parts = text.split('@');
        let local = parts.next().unwrap_or_default();
        let domain = parts.next().ok_or(AddressError::MissingAt)?;
        if parts.next().is_some() {
            return Err(AddressError::ExtraAt);
        }
        validate_local(local)?;
        validate_domain(domain)?;
        if text.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong);
        }
        Ok(Address {
            text: text.to_ascii_lowercase(),
            at: local.len(),
        })
    }

    /// The whole normalised address.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The part before the `@`.
    pub fn local(&self) -> &str {
        &self.text[..self.at]
    }

    /// The part after the `@`.
    pub fn domain(&self) -> &str {
        &self.text[self.at + 1..]
    }

    /// For `user+tag@domain`, the base address `user@domain` and the tag. `None` when the
    /// local part holds no separator or nothing precedes it.
    pub fn split_subaddress(&self) -> Option<(Address, &str)> {
        let (base, tag) = self.local().split_once(SUBADDRESS_SEPARATOR)?;
        if base.is_empty() || base.ends_with('.') {
            return None;
        }
        let text = format!("{base}@{}", self.domain());
        Some((
            Address {
                at: base.len(),
                text,
            },
            tag,
        ))
    }

    /// Consumes the address, returning its normalised text.
    pub fn into_string(self) -> String {
        self.text
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({:?})", self.text)
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

impl TryFrom<String> for Address {
    type Error = AddressError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Address::parse(&s)
    }
}

impl From<Address> for String {
    fn from(a: Address) -> String {
        a.text
    }
}

impl AsRef<str> for Address {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

/// Validates a domain name and returns it lowercased.
pub fn parse_domain(name: &str) -> Result<String, AddressError> {
    if let Some(c) = name.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(AddressError::BadChar(c));
    }
    validate_domain(name)?;
    Ok(name.to_ascii_lowercase())
}

/// Lowercases `text` for use as a map key, borrowing when it is already lowercase. No
/// validation: lookups of malformed text simply find nothing.
pub(crate) fn key(text: &str) -> std::borrow::Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(text.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// The domain part of a normalised address, or "" when there is no `@`.
pub(crate) fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
}

/// `atext` of RFC 5322 §3.2.3: the characters of a dot-atom besides the dot.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

fn validate_local(local: &str) -> Result<(), AddressError> {
    if local.is_empty() {
        return Err(AddressError::EmptyLocal);
    }
    if local.len() > MAX_LOCAL_LEN {
        return Err(AddressError::LocalTooLong);
    }
    if let Some(c) = local.chars().find(|&c| c != '.' && !is_atext(c)) {
        return Err(AddressError::BadChar(c));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(AddressError::BadDot);
    }
    Ok(())
}

fn validate_domain(domain: &str) -> Result<(), AddressError> {
    if domain.is_empty() {
        return Err(AddressError::EmptyDomain);
    }
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(AddressError::DomainTooLong);
    }
    let mut last = "";
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(AddressError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(AddressError::LabelTooLong);
        }
        if let Some(c) = label
            .chars()
            .find(|&c| !c.is_ascii_alphanumeric() && c != '-')
        {
            return Err(AddressError::BadChar(c));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(AddressError::LabelHyphen);
        }
        last = label;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddressError::NumericTld);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_addresses_are_normalised() {
        let cases = [
            ("alice@example.org", "alice@example.org"),
            ("Alice.Smith@Example.ORG", "alice.smith@example.org"),
            ("a+tag@sub.example.org", "a+tag@sub.example.org"),
            ("o'brien@example.org", "o'brien@example.org"),
            ("x@localhost", "x@localhost"),
            (
                "user_1-x@xn--bcher-kva.example",
                "user_1-x@xn--bcher-kva.example",
            ),
        ];
        for (input, want) in cases {
            let a = Address::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(a.as_str(), want, "{input}");
            assert_eq!(format!("{}@{}", a.local(), a.domain()), want);
        }
    }

    #[test]
    fn invalid_addresses_name_the_reason() {
        let long_local = format!("{}@example.org", "a".repeat(65));
        let long_label = format!("a@{}.org", "b".repeat(64));
        let long_domain = format!("a@{}org", "abcdefghi.".repeat(26));
        let long_address = format!("{}@{}org", "a".repeat(60), "abcdefghi.".repeat(20));
        let cases: Vec<(&str, AddressError)> = vec![
            ("", AddressError::Empty),
            ("alice", AddressError::MissingAt),
            ("a@b@example.org", AddressError::ExtraAt),
            ("@example.org", AddressError::EmptyLocal),
            (&long_local, AddressError::LocalTooLong),
            ("al ice@example.org", AddressError::BadChar(' ')),
            ("alice@example.org ", AddressError::BadChar(' ')),
            ("ali\u{7}ce@example.org", AddressError::BadChar('\u{7}')),
            ("al(ice@example.org", AddressError::BadChar('(')),
            ("élise@example.org", AddressError::BadChar('é')),
            (".alice@example.org", AddressError::BadDot),
            ("alice.@example.org", AddressError::BadDot),
            ("al..ice@example.org", AddressError::BadDot),
            ("alice@", AddressError::EmptyDomain),
            ("alice@example..org", AddressError::EmptyLabel),
            ("alice@example.org.", AddressError::EmptyLabel),
            ("alice@.example.org", AddressError::EmptyLabel),
            (&long_label, AddressError::LabelTooLong),
            (&long_domain, AddressError::DomainTooLong),
            (&long_address, AddressError::TooLong),
            ("alice@-example.org", AddressError::LabelHyphen),
            ("alice@example-.org", AddressError::LabelHyphen),
            ("alice@exa_mple.org", AddressError::BadChar('_')),
            ("alice@[192.0.2.1]", AddressError::BadChar('[')),
            ("alice@192.0.2.1", AddressError::NumericTld),
        ];
        for (input, want) in cases {
            assert_eq!(Address::parse(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn error_messages_are_readable() {
        assert_eq!(
            Address::parse("alice").unwrap_err().to_string(),
            "missing '@' between local part and domain"
        );
        assert_eq!(
            Address::parse(&format!("a@{}.org", "b".repeat(64)))
                .unwrap_err()
                .to_string(),
            "domain label longer than 63 characters"
        );
    }

    #[test]
    fn domains() {
        assert_eq!(parse_domain("Example.ORG").unwrap(), "example.org");
        assert_eq!(parse_domain("a b.org"), Err(AddressError::BadChar(' ')));
        assert_eq!(parse_domain(""), Err(AddressError::EmptyDomain));
        assert_eq!(parse_domain("x@y.org"), Err(AddressError::BadChar('@')));
    }

    #[test]
    fn subaddress() {
        let a = Address::parse("Bob+Lists+x@example.org").unwrap();
        let (base, tag) = a.split_subaddress().unwrap();
        assert_eq!(base.as_str(), "bob@example.org");
        assert_eq!(base.local(), "bob");
        assert_eq!(tag, "lists+x");
        assert!(Address::parse("bob@example.org")
            .unwrap()
            .split_subaddress()
            .is_none());
        assert!(Address::parse("+x@example.org")
            .unwrap()
            .split_subaddress()
            .is_none());
    }
}
