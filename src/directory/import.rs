//! Bulk import of users from CSV and LDIF files (`mailctl user import FILE`).
//!
//! [`parse_csv`] and [`parse_ldif`] turn file text into one result per record, so one bad line
//! never hides the good ones; [`import_command`] turns the good records into a single
//! [`Command::ImportUsers`] once plaintext passwords have been hashed. The parsers take text
//! and return values: they must never do I/O (LDIF `attr:< URL` values are refused, not
//! fetched), and they never consult the directory — whether an address is free or its domain
//! exists is decided when the command is applied.
//!
//! Security note: a plaintext password from the file lives only in [`ImportPassword::Plain`],
//! whose `Debug` output is redacted, until the server hashes it with argon2id; it never reaches
//! a command. An imported hash must be of a scheme [`verify_password`] understands, or the
//! record is refused, so nobody is imported with a password that could never work.
//!
//! [`verify_password`]: super::password::verify_password

mod csv_format;
mod ldif;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use csv_format::parse_csv;
pub use ldif::parse_ldif;

use super::address::Address;
use super::command::Command;
use super::model::{check_display_name, normalise_mail_host, Alias, User};
use super::password::{scheme_of, NO_PASSWORD};

/// Longest plaintext password accepted from a file, in bytes.
pub const MAX_PLAINTEXT_PASSWORD: usize = 1024;

/// One user to import, with the extra addresses that should reach them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRecord {
    /// Line of the file where the record starts (1-based), to report apply errors against.
    pub line: usize,
    /// The user.
    pub user: ImportUser,
    /// Addresses that become aliases of the user (normalised, without the user's own).
    pub aliases: Vec<String>,
}

/// A user as read from an import file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportUser {
    /// Normalised address.
    pub address: String,
    /// Display name, possibly empty.
    pub display_name: String,
    /// Quota in bytes; 0 means unlimited.
    pub quota_bytes: u64,
    /// Mailstore group.
    pub mail_host: String,
    /// Whether the account starts enabled.
    pub enabled: bool,
    /// The password, hashed or not.
    pub password: ImportPassword,
}

/// The password of an imported user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportPassword {
    /// A hash from the old system, of a scheme this server verifies (e.g. `{SSHA}…`, `$6$…`).
    Hash(String),
    /// A plaintext password, to be hashed with argon2id by the server and then forgotten.
    Plain(String),
    /// No password in the file: the account receives mail but cannot log in until one is set.
    None,
}

impl fmt::Debug for ImportPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportPassword::Hash(h) => f.debug_tuple("Hash").field(h).finish(),
            ImportPassword::Plain(_) => f.write_str("Plain(<redacted>)"),
            ImportPassword::None => f.write_str("None"),
        }
    }
}

/// A record of the file that cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("line {line}: {reason}")]
pub struct LineError {
    /// Line where the record starts (1-based).
    pub line: usize,
    /// What is wrong and, where it helps, what to do.
    pub reason: String,
}

/// Builds the bulk command for `records`. `hash` turns each plaintext password into a stored
/// hash (the server passes [`hash_password`](super::password::hash_password)); users without
/// a password get [`NO_PASSWORD`]. `users[i]` of the command is `records[i]`, so
/// [`ItemError`](super::ItemError)s map back to [`ImportRecord::line`]. Each alternate address
/// becomes an alias targeting its user. Large files should be split into several commands
/// (a record and its aliases always stay together) to keep Raft log entries small.
pub fn import_command(
    records: Vec<ImportRecord>,
    create_domains: bool,
    mut hash: impl FnMut(&str) -> String,
) -> Command {
    let mut users = Vec::with_capacity(records.len());
    let mut aliases = Vec::new();
    for record in records {
        let u = record.user;
        let password_hash = match u.password {
            ImportPassword::Hash(h) => h,
            ImportPassword::Plain(p) => hash(&p),
            ImportPassword::None => NO_PASSWORD.to_string(),
        };
        aliases.extend(record.aliases.into_iter().map(|alt| Alias {
            address: alt,
            targets: vec![u.address.clone()],
        }));
        users.push(User {
            address: u.address,
            display_name: u.display_name,
            password_hash,
            quota_bytes: u.quota_bytes,
            mail_host: u.mail_host,
            enabled: u.enabled,
            prefs: BTreeMap::new(),
        });
    }
    Command::ImportUsers {
        users,
        aliases,
        create_domains,
    }
}

/// The fields of one record, as text, before validation. Shared by both formats.
#[derive(Debug, Default)]
struct Fields {
    address: String,
    display_name: String,
    password: String,
    password_hash: String,
    quota: String,
    mail_host: String,
    enabled: String,
    aliases: Vec<String>,
}

impl Fields {
    /// Validates the fields into a record starting at `line`.
    fn into_record(self, line: usize) -> Result<ImportRecord, LineError> {
        let err = |reason: String| LineError { line, reason };
        let address = Address::parse(self.address.trim())
            .map_err(|e| err(format!("address {:?}: {e}", self.address)))?
            .into_string();
        check_display_name(&self.display_name).map_err(|r| err(format!("display name: {r}")))?;
        let password = match (self.password.is_empty(), self.password_hash.is_empty()) {
            (true, true) => ImportPassword::None,
            (false, true) => {
                if self.password.len() > MAX_PLAINTEXT_PASSWORD {
                    return Err(err(format!(
                        "password is longer than {MAX_PLAINTEXT_PASSWORD} bytes"
                    )));
                }
                ImportPassword::Plain(self.password)
            }
            (true, false) => {
                scheme_of(&self.password_hash).map_err(|e| err(e.to_string()))?;
                ImportPassword::Hash(self.password_hash)
            }
            (false, false) => {
                return Err(err(
                    "both a password and a password hash: keep only one".to_string()
                ))
            }
        };
        let quota_bytes = parse_quota(&self.quota).map_err(err)?;
        let enabled = parse_bool(&self.enabled).map_err(err)?;
        let mail_host = normalise_mail_host(&self.mail_host)
            .map_err(|r| err(format!("mail host {:?}: {r}", self.mail_host)))?;
        let mut aliases: Vec<String> = Vec::new();
        for alias in &self.aliases {
            let a = Address::parse(alias.trim())
                .map_err(|e| err(format!("alias {alias:?}: {e}")))?
                .into_string();
            if a != address && !aliases.contains(&a) {
                aliases.push(a);
            }
        }
        Ok(ImportRecord {
            line,
            user: ImportUser {
                address,
                display_name: self.display_name,
                quota_bytes,
                mail_host,
                enabled,
                password,
            },
            aliases,
        })
    }
}

/// Parses a quota: bytes, or a number with a binary `K`, `M`, `G` or `T` suffix (an optional
/// `B` after it is allowed). Empty means 0, unlimited.
fn parse_quota(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(0);
    }
    let upper = t.to_ascii_uppercase();
    let number = upper.strip_suffix('B').unwrap_or(&upper);
    let (digits, shift) = match number.char_indices().last() {
        Some((i, 'K')) => (&number[..i], 10),
        Some((i, 'M')) => (&number[..i], 20),
        Some((i, 'G')) => (&number[..i], 30),
        Some((i, 'T')) => (&number[..i], 40),
        _ => (number, 0),
    };
    let bad = || format!("quota {text:?} is not a size (bytes, or a number with K, M, G or T)");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// Parses `enabled`: true/false, yes/no, 1/0, any case; empty means true.
fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(format!("enabled {text:?} is not true/false, yes/no or 1/0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas() {
        let ok = [
            ("", 0),
            ("0", 0),
            ("1024", 1024),
            ("500K", 500 << 10),
            ("100m", 100 << 20),
            ("2G", 2 << 30),
            ("2GB", 2 << 30),
            ("1T", 1 << 40),
        ];
        for (text, want) in ok {
            assert_eq!(parse_quota(text), Ok(want), "{text}");
        }
        for text in [
            "-1",
            "1.5G",
            "G",
            "12X",
            "99999999999999999999",
            "16777216T",
        ] {
            assert!(parse_quota(text).is_err(), "{text}");
        }
    }

    #[test]
    fn booleans() {
        for t in ["", "true", "YES", "1"] {
            assert_eq!(parse_bool(t), Ok(true));
        }
        for t in ["false", "No", "0"] {
            assert_eq!(parse_bool(t), Ok(false));
        }
        assert!(parse_bool("maybe").is_err());
    }

    #[test]
    fn plaintext_is_redacted_from_debug() {
        let p = ImportPassword::Plain("hunter2".to_string());
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn command_from_records() {
        let mk = |addr: &str, password: ImportPassword, aliases: &[&str]| ImportRecord {
            line: 2,
            user: ImportUser {
                address: addr.to_string(),
                display_name: String::new(),
                quota_bytes: 0,
                mail_host: "default".to_string(),
                enabled: true,
                password,
            },
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        };
        let records = vec![
            mk(
                "a@x.org",
                ImportPassword::Plain("pw".into()),
                &["a1@x.org", "a2@x.org"],
            ),
            mk(
                "b@x.org",
                ImportPassword::Hash("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=".into()),
                &[],
            ),
            mk("c@x.org", ImportPassword::None, &[]),
        ];
        let cmd = import_command(records, true, |p| format!("hashed:{p}"));
        let Command::ImportUsers {
            users,
            aliases,
            create_domains,
        } = cmd
        else {
            panic!("wrong command");
        };
        assert!(create_domains);
        let hashes: Vec<&str> = users.iter().map(|u| u.password_hash.as_str()).collect();
        assert_eq!(
            hashes,
            ["hashed:pw", "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "!"]
        );
        assert_eq!(
            aliases,
            vec![
                Alias {
                    address: "a1@x.org".into(),
                    targets: vec!["a@x.org".into()]
                },
                Alias {
                    address: "a2@x.org".into(),
                    targets: vec!["a@x.org".into()]
                },
            ]
        );
    }
}
