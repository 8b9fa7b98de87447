//! The directory's records: domains, users, aliases and lists, as replicated and persisted.
//!
//! These are plain serde data. Fields hold normalised text (lowercase addresses) once a record
//! has gone through [`Directory::apply`](super::Directory::apply); records built by callers are
//! normalised and validated there, never trusted. This module must never do I/O.
//!
//! Security note: a [`User`] carries a password *hash* only; plaintext passwords never reach
//! these types, the Raft log or the persisted records.
//!
//! Compatibility: records are persisted and shipped in snapshots, so new fields must carry
//! `#[serde(default)]` and no field may be renamed; unknown fields are ignored so a node can
//! read records written by a newer version during a rolling upgrade.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The mailstore group a user lives in when none is given.
pub const DEFAULT_MAIL_HOST: &str = "default";
/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 256;
/// Longest mailstore group name.
pub const MAX_MAIL_HOST: usize = 63;
/// Longest preference key.
pub const MAX_PREF_KEY: usize = 128;
/// Largest preference value (a webmail signature is the big one), in bytes.
pub const MAX_PREF_VALUE: usize = 64 * 1024;

/// A domain this cluster receives mail for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainEntry {
    /// Lowercase domain name.
    pub name: String,
    /// Where mail for unknown local parts of this domain goes; `None` rejects it. Must name
    /// an existing user, alias or list, or an external address.
    #[serde(default)]
    pub catch_all: Option<String>,
}

/// A mailbox owner who can log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login name and primary address.
    pub address: String,
    /// Shown by webmail and used as the default `From` name.
    #[serde(default)]
    pub display_name: String,
    /// A hash understood by [`password::verify_password`](super::password::verify_password),
    /// or [`password::NO_PASSWORD`](super::password::NO_PASSWORD) for an account that
    /// receives mail but cannot log in.
    pub password_hash: String,
    /// Mailbox quota in bytes; 0 means unlimited.
    #[serde(default)]
    pub quota_bytes: u64,
    /// The mailstore group holding the mailbox (the reference deployment's `mailHost`).
    #[serde(default = "default_mail_host")]
    pub mail_host: String,
    /// A disabled user can neither log in nor receive mail.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Webmail preferences (signature, identities, special folders), by key.
    #[serde(default)]
    pub prefs: BTreeMap<String, String>,
}

impl User {
    /// A user with the defaults: enabled, unlimited quota, the default mailstore group, no
    /// display name and no preferences.
    pub fn new(address: impl Into<String>, password_hash: impl Into<String>) -> User {
        User {
            address: address.into(),
            display_name: String::new(),
            password_hash: password_hash.into(),
            quota_bytes: 0,
            mail_host: DEFAULT_MAIL_HOST.to_string(),
            enabled: true,
            prefs: BTreeMap::new(),
        }
    }
}

/// An address that forwards to other addresses, local or external.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    /// The alias address.
    pub address: String,
    /// Where mail goes; never empty.
    pub targets: Vec<String>,
}

/// A distribution list: like an alias, but managed member by member and allowed to be empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct List {
    /// The list address.
    pub address: String,
    /// Member addresses, local or external.
    #[serde(default)]
    pub members: Vec<String>,
}

/// What an address is, when it is in the directory: one address is never two of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// A [`User`].
    User,
    /// An [`Alias`].
    Alias,
    /// A [`List`].
    List,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::User => "user",
            Kind::Alias => "alias",
            Kind::List => "list",
        })
    }
}

/// How many records of each kind the directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Domains served.
    pub domains: usize,
    /// Users.
    pub users: usize,
    /// Aliases.
    pub aliases: usize,
    /// Lists.
    pub lists: usize,
}

fn default_mail_host() -> String {
    DEFAULT_MAIL_HOST.to_string()
}

fn default_true() -> bool {
    true
}

/// Checks a display name: bounded, printable. Returns the reason on failure.
pub(crate) fn check_display_name(name: &str) -> Result<(), String> {
    if name.chars().count() > MAX_DISPLAY_NAME {
        return Err(format!("longer than {MAX_DISPLAY_NAME} characters"));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!("control character {c:?}"));
    }
    Ok(())
}

/// Normalises a mailstore group name (lowercase; empty means the default group).
pub(crate) fn normalise_mail_host(host: &str) -> Result<String, String> {
    if host.is_empty() {
        return Ok(DEFAULT_MAIL_HOST.to_string());
    }
    if host.len() > MAX_MAIL_HOST {
        return Err(format!("longer than {MAX_MAIL_HOST} characters"));
    }
    if let Some(c) = host
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
    {
        return Err(format!(
            "character {c:?} not allowed (use letters, digits, '-', '_', '.')"
        ));
    }
    Ok(host.to_ascii_lowercase())
}

/// Checks a preference key: short, printable ASCII without spaces.
pub(crate) fn check_pref_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_PREF_KEY {
        return Err(format!("key must be 1 to {MAX_PREF_KEY} characters"));
    }
    if let Some(c) = key.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!("character {c:?} not allowed in a key"));
    }
    Ok(())
}

/// Checks a preference value: bounded size, no NUL (some clients truncate at it).
pub(crate) fn check_pref_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_PREF_VALUE {
        return Err(format!("value is larger than {MAX_PREF_VALUE} bytes"));
    }
    if value.contains('\0') {
        return Err("value contains a NUL character".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_defaults_survive_sparse_json() {
        let u: User =
            serde_json::from_str(r#"{"address":"a@example.org","password_hash":"!","future":1}"#)
                .unwrap();
        assert_eq!(u, User::new("a@example.org", "!"));
    }

    #[test]
    fn field_checks() {
        assert!(check_display_name("Alice Ünicode").is_ok());
        assert!(check_display_name("a\nb").is_err());
        assert!(check_display_name(&"x".repeat(257)).is_err());
        assert_eq!(normalise_mail_host("").unwrap(), "default");
        assert_eq!(normalise_mail_host("Store-2").unwrap(), "store-2");
        assert!(normalise_mail_host("a b").is_err());
        assert!(check_pref_key("signature").is_ok());
        assert!(check_pref_key("").is_err());
        assert!(check_pref_key("a key").is_err());
        assert!(check_pref_value("-- \nAlice").is_ok());
        assert!(check_pref_value(&"x".repeat(MAX_PREF_VALUE + 1)).is_err());
    }
}
