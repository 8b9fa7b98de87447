//! Users' Sieve scripts in the replicated directory: the record ([`SieveScripts`]), its limits,
//! and the transitions of the four script commands (put, activate, rename, delete).
//!
//! A user owns any number (up to [`MAX_SIEVE_SCRIPTS`]) of named scripts, at most one of them
//! active — ManageSieve's model (RFC 5804). Scripts are stored as the source text the user
//! uploaded. `apply` never compiles them: whether a script compiles depends on the program's
//! version, and a replica must reach the same state from the same log whatever its version.
//! The node that receives a script compiles it before proposing the command, and delivery
//! compiles (and caches) the active script when it runs it; a script that does not compile
//! there is treated as absent (implicit keep).
//!
//! This module does no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::command::{Change, DirectoryError, Outcome};
use super::state::Directory;

/// Most scripts one user may own.
pub const MAX_SIEVE_SCRIPTS: usize = 20;
/// Largest script, in bytes of source text.
pub const MAX_SIEVE_SCRIPT_BYTES: usize = 64 * 1024;
/// Longest script name, in characters.
pub const MAX_SIEVE_NAME: usize = 128;

/// One user's Sieve scripts (record key `s/<address>`; absent when the user has none).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SieveScripts {
    /// The owner's (normalised) address.
    pub user: String,
    /// Source text by script name.
    #[serde(default)]
    pub scripts: BTreeMap<String, String>,
    /// The name of the script run at delivery, if any; always a key of `scripts`.
    #[serde(default)]
    pub active: Option<String>,
}

impl SieveScripts {
    /// The active script as `(name, source)`.
    pub fn active_script(&self) -> Option<(&str, &str)> {
        let name = self.active.as_deref()?;
        self.scripts.get(name).map(|s| (name, s.as_str()))
    }
}

/// Checks a script name as RFC 5804 section 1.6 defines it: 1 to [`MAX_SIEVE_NAME`]
/// characters, none of them a control character (C0, DEL, C1) or a line/paragraph separator.
pub fn check_sieve_name(name: &str) -> Result<(), String> {
    let count = name.chars().count();
    if count == 0 || count > MAX_SIEVE_NAME {
        return Err(format!(
            "a script name must be 1 to {MAX_SIEVE_NAME} characters"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
    {
        return Err(format!("character {c:?} is not allowed in a script name"));
    }
    Ok(())
}

impl Directory {
    /// The user's scripts, if they have any.
    pub fn sieve(&self, user: &str) -> Option<&SieveScripts> {
        self.sieve.get(super::address::key(user).as_ref())
    }

    /// The user's active script as `(name, source)`, if any.
    pub fn active_sieve(&self, user: &str) -> Option<(&str, &str)> {
        self.sieve(user)?.active_script()
    }

    pub(crate) fn put_sieve_script(
        &mut self,
        user: &str,
        name: &str,
        source: &str,
        activate: bool,
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, DirectoryError> {
        let mut record = self.sieve_record(user)?;
        check_name(&record.user, name)?;
        if source.len() > MAX_SIEVE_SCRIPT_BYTES {
            return Err(DirectoryError::SieveLimit {
                user: record.user,
                reason: format!(
                    "script {name:?} is {} bytes, more than the limit of {MAX_SIEVE_SCRIPT_BYTES}",
                    source.len()
                ),
            });
        }
        if source.contains('\0') {
            return Err(DirectoryError::InvalidField {
                address: record.user,
                field: format!("sieve script {name:?}"),
                reason: "the script contains a NUL character".to_string(),
            });
        }
        if !record.scripts.contains_key(name) && record.scripts.len() >= MAX_SIEVE_SCRIPTS {
            return Err(DirectoryError::SieveLimit {
                user: record.user,
                reason: format!(
                    "already {MAX_SIEVE_SCRIPTS} scripts, the most one user may keep: delete one first"
                ),
            });
        }
        let unchanged = record.scripts.get(name).map(String::as_str) == Some(source)
            && (!activate || record.active.as_deref() == Some(name));
        if unchanged {
            return Ok(Outcome::Unchanged);
        }
        record.scripts.insert(name.to_string(), source.to_string());
        if activate {
            record.active = Some(name.to_string());
        }
        changes.push(self.put_sieve(record));
        Ok(Outcome::Done)
    }

    pub(crate) fn activate_sieve_script(
        &mut self,
        user: &str,
        name: Option<&str>,
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, DirectoryError> {
        let mut record = self.sieve_record(user)?;
        if let Some(name) = name {
            if !record.scripts.contains_key(name) {
                return Err(no_script(&record.user, name));
            }
        }
        if record.active.as_deref() == name {
            return Ok(Outcome::Unchanged);
        }
        record.active = name.map(str::to_string);
        changes.push(self.put_sieve(record));
        Ok(Outcome::Done)
    }

    pub(crate) fn rename_sieve_script(
        &mut self,
        user: &str,
        from: &str,
        to: &str,
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, DirectoryError> {
        let mut record = self.sieve_record(user)?;
        check_name(&record.user, to)?;
        let Some(source) = record.scripts.remove(from) else {
            return Err(no_script(&record.user, from));
        };
        if from == to {
            return Ok(Outcome::Unchanged);
        }
        if record.scripts.contains_key(to) {
            return Err(DirectoryError::SieveScriptExists {
                user: record.user,
                name: to.to_string(),
            });
        }
        record.scripts.insert(to.to_string(), source);
        if record.active.as_deref() == Some(from) {
            record.active = Some(to.to_string());
        }
        changes.push(self.put_sieve(record));
        Ok(Outcome::Done)
    }

    pub(crate) fn delete_sieve_script(
        &mut self,
        user: &str,
        name: &str,
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, DirectoryError> {
        let mut record = self.sieve_record(user)?;
        if !record.scripts.contains_key(name) {
            return Err(no_script(&record.user, name));
        }
        if record.active.as_deref() == Some(name) {
            return Err(DirectoryError::SieveScriptActive {
                user: record.user,
                name: name.to_string(),
            });
        }
        record.scripts.remove(name);
        changes.push(self.put_sieve(record));
        Ok(Outcome::Done)
    }

    /// A copy of the user's record (empty when they have none); the user must exist.
    fn sieve_record(&self, user: &str) -> Result<SieveScripts, DirectoryError> {
        let user = self.existing_user_key(user)?;
        Ok(self.sieve.get(&user).cloned().unwrap_or(SieveScripts {
            user,
            ..SieveScripts::default()
        }))
    }
}

fn check_name(user: &str, name: &str) -> Result<(), DirectoryError> {
    check_sieve_name(name).map_err(|reason| DirectoryError::InvalidField {
        address: user.to_string(),
        field: "sieve script name".to_string(),
        reason,
    })
}

fn no_script(user: &str, name: &str) -> DirectoryError {
    DirectoryError::NoSieveScript {
        user: user.to_string(),
        name: name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{Command, User};

    fn dir() -> Directory {
        let mut d = Directory::new();
        for cmd in [
            Command::AddDomain {
                name: "a.org".into(),
            },
            Command::AddUser(User::new("u@a.org", "!")),
        ] {
            d.apply(&cmd).unwrap();
        }
        d
    }

    fn put(name: &str, source: &str, activate: bool) -> Command {
        Command::PutSieveScript {
            user: "U@a.org".into(),
            name: name.into(),
            source: source.into(),
            activate,
        }
    }

    #[test]
    fn scripts_follow_managesieve_rules() {
        let mut d = dir();
        d.apply(&put("main", "keep;", false)).unwrap();
        assert_eq!(d.active_sieve("u@a.org"), None);
        assert_eq!(
            d.apply(&put("main", "keep;", false)).unwrap().outcome,
            Outcome::Unchanged
        );
        d.apply(&Command::ActivateSieveScript {
            user: "u@a.org".into(),
            name: Some("main".into()),
        })
        .unwrap();
        assert_eq!(d.active_sieve("u@A.org"), Some(("main", "keep;")));
        // The active script cannot be deleted; renaming it keeps it active.
        let err = d
            .apply(&Command::DeleteSieveScript {
                user: "u@a.org".into(),
                name: "main".into(),
            })
            .unwrap_err();
        assert!(
            matches!(err, DirectoryError::SieveScriptActive { .. }),
            "{err}"
        );
        d.apply(&Command::RenameSieveScript {
            user: "u@a.org".into(),
            from: "main".into(),
            to: "vacation".into(),
        })
        .unwrap();
        assert_eq!(d.active_sieve("u@a.org"), Some(("vacation", "keep;")));
        d.apply(&put("other", "discard;", true)).unwrap();
        assert_eq!(d.active_sieve("u@a.org"), Some(("other", "discard;")));
        let err = d
            .apply(&Command::RenameSieveScript {
                user: "u@a.org".into(),
                from: "vacation".into(),
                to: "other".into(),
            })
            .unwrap_err();
        assert!(
            matches!(err, DirectoryError::SieveScriptExists { .. }),
            "{err}"
        );
        d.apply(&Command::ActivateSieveScript {
            user: "u@a.org".into(),
            name: None,
        })
        .unwrap();
        d.apply(&Command::DeleteSieveScript {
            user: "u@a.org".into(),
            name: "other".into(),
        })
        .unwrap();
        let names: Vec<_> = d
            .sieve("u@a.org")
            .unwrap()
            .scripts
            .keys()
            .cloned()
            .collect();
        assert_eq!(names, ["vacation"]);
        // Records round-trip, and removing the user removes its scripts.
        let again = Directory::from_records(d.records()).unwrap();
        assert_eq!(again, d);
        d.apply(&Command::RemoveUser {
            address: "u@a.org".into(),
        })
        .unwrap();
        assert_eq!(d.sieve("u@a.org"), None);
        assert_eq!(Directory::from_records(d.records()).unwrap(), d);
    }

    #[test]
    fn bad_scripts_change_nothing() {
        let mut d = dir();
        let before = d.clone();
        let cases = [
            (put("", "keep;", false), "1 to 128"),
            (put("a\nb", "keep;", false), "not allowed"),
            (
                put("x", &"#".repeat(MAX_SIEVE_SCRIPT_BYTES + 1), false),
                "limit",
            ),
            (put("x", "keep;\0", false), "NUL"),
        ];
        for (cmd, want) in cases {
            let err = d.apply(&cmd).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
        let err = d
            .apply(&Command::PutSieveScript {
                user: "nobody@a.org".into(),
                name: "x".into(),
                source: "keep;".into(),
                activate: false,
            })
            .unwrap_err();
        assert!(matches!(err, DirectoryError::NotFound { .. }), "{err}");
        let err = d
            .apply(&Command::ActivateSieveScript {
                user: "u@a.org".into(),
                name: Some("missing".into()),
            })
            .unwrap_err();
        assert!(matches!(err, DirectoryError::NoSieveScript { .. }), "{err}");
        assert_eq!(d, before);
        for i in 0..MAX_SIEVE_SCRIPTS {
            d.apply(&put(&format!("s{i}"), "keep;", false)).unwrap();
        }
        let err = d.apply(&put("one-more", "keep;", false)).unwrap_err();
        assert!(matches!(err, DirectoryError::SieveLimit { .. }), "{err}");
        // Replacing an existing script is still allowed at the limit.
        d.apply(&put("s0", "discard;", false)).unwrap();
    }
}
