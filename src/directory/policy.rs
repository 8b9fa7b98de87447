//! The cluster-wide anti-UBE policy document as the directory holds it: one
//! [`PolicyDoc`](crate::antiube::policy::PolicyDoc) (settings TOML plus named maps) and its
//! version, set by [`Command::SetPolicy`](super::Command::SetPolicy) as a compare-and-set.
//!
//! The version is the Raft log index of the entry that last changed the document (the state
//! machine passes it to [`Directory::apply_at`](super::Directory::apply_at)); outside the log
//! (tests) [`Directory::apply`](super::Directory::apply) counts changes instead. Either way it
//! only grows, and 0 means "no document: built-in defaults".
//!
//! `apply` checks the names and the limits but never compiles the document: compiling is the
//! receiving node's job (`PolicyDoc::compile` before proposing), so that a replica of another
//! version, whose compiler may be stricter or laxer, still reaches the same state. This module
//! does no I/O.
//!
//! Persistence: `p/settings` holds `{version, settings}` and `p/m/<name>` one map each, so a
//! change to one map rewrites one map record, not the whole document.
//!
//! Security note: the document is operator input and may be megabytes; every size is bounded
//! here, before it reaches memory of every node, and the total stays well under a Raft frame.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::command::{Change, DirectoryError, Outcome};
use super::state::Directory;
use crate::antiube::policy::{valid_map_name, PolicyDoc, MAX_MAPS, MAX_MAP_BYTES, MAX_MAP_NAME};

/// The most bytes of the settings text.
pub const MAX_POLICY_SETTINGS_BYTES: usize = 1024 * 1024;
/// The most bytes of a whole document (settings plus maps): one Raft entry carries it, and a
/// Raft frame is at most 64 MiB once JSON-escaped.
pub const MAX_POLICY_BYTES: usize = 16 * 1024 * 1024;

/// Record key of the settings and version.
pub(crate) const POLICY_SETTINGS_KEY: &str = "p/settings";
/// Record key prefix of a map (`p/m/<name>`).
pub(crate) const POLICY_MAP_PREFIX: &str = "p/m/";
/// Record key prefix of every policy record.
pub(crate) const POLICY_PREFIX: &str = "p/";

/// The stored document and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    /// Raft log index of the change that set it (a change counter outside the log); never 0.
    pub version: u64,
    /// The document as the operator wrote it.
    pub doc: PolicyDoc,
}

/// The `p/settings` record.
#[derive(Serialize, Deserialize)]
struct SettingsRecord {
    version: u64,
    settings: String,
}

/// A `p/m/<name>` record.
#[derive(Serialize, Deserialize)]
struct MapRecord {
    name: String,
    text: String,
}

/// Checks a document against the limits `apply` enforces (names, counts, sizes); the admin API
/// calls it too, so an oversized document is refused before it is compiled or proposed.
pub fn check_policy_doc(doc: &PolicyDoc) -> Result<(), DirectoryError> {
    let limit = |reason: String| DirectoryError::PolicyLimit { reason };
    if doc.settings.len() > MAX_POLICY_SETTINGS_BYTES {
        return Err(limit(format!(
            "the settings are {} bytes; at most {MAX_POLICY_SETTINGS_BYTES}",
            doc.settings.len()
        )));
    }
    if doc.maps.len() > MAX_MAPS {
        return Err(limit(format!(
            "{} maps; at most {MAX_MAPS}: remove unused maps with `mailctl policy map rm NAME`",
            doc.maps.len()
        )));
    }
    let mut total = doc.settings.len();
    for (name, text) in &doc.maps {
        if !valid_map_name(name) {
            return Err(limit(format!(
                "map name {name:?}: use 1-{MAX_MAP_NAME} letters, digits, '.', '_' or '-', not starting with '.'"
            )));
        }
        if text.len() > MAX_MAP_BYTES {
            return Err(limit(format!(
                "map {name} is {} bytes; at most {MAX_MAP_BYTES}: split it",
                text.len()
            )));
        }
        total += text.len();
    }
    if total > MAX_POLICY_BYTES {
        return Err(limit(format!(
            "the document is {total} bytes; at most {MAX_POLICY_BYTES} in all"
        )));
    }
    Ok(())
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    // Plain strings and integers: serialisation cannot fail.
    serde_json::to_vec(value).expect("policy records always serialise to JSON")
}

fn map_key(name: &str) -> String {
    format!("{POLICY_MAP_PREFIX}{name}")
}

impl Directory {
    /// The stored anti-UBE policy document, if one was ever set.
    pub fn policy(&self) -> Option<&StoredPolicy> {
        self.policy.as_ref()
    }

    /// The stored policy's version; 0 when none was set (built-in defaults).
    pub fn policy_version(&self) -> u64 {
        self.policy.as_ref().map_or(0, |p| p.version)
    }

    /// `SetPolicy` at log index `index`: limits, then the compare-and-set, then the records of
    /// what changed.
    pub(crate) fn set_policy(
        &mut self,
        index: u64,
        doc: &PolicyDoc,
        expected_version: Option<u64>,
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, DirectoryError> {
        check_policy_doc(doc)?;
        let current = self.policy_version();
        if let Some(expected) = expected_version {
            if expected != current {
                return Err(DirectoryError::PolicyConflict { expected, current });
            }
        }
        let old_maps = match &self.policy {
            Some(p) if p.doc == *doc => return Ok(Outcome::Unchanged),
            Some(p) => p.doc.maps.clone(),
            None => BTreeMap::new(),
        };
        // A log index is always past the current version; max() keeps the version growing
        // even for a caller that passes a smaller one.
        let version = index.max(current + 1);
        changes.push(Change {
            key: POLICY_SETTINGS_KEY.to_string(),
            value: Some(to_json(&SettingsRecord {
                version,
                settings: doc.settings.clone(),
            })),
        });
        for (name, text) in &doc.maps {
            if old_maps.get(name) != Some(text) {
                changes.push(Change {
                    key: map_key(name),
                    value: Some(to_json(&MapRecord {
                        name: name.clone(),
                        text: text.clone(),
                    })),
                });
            }
        }
        for name in old_maps.keys().filter(|n| !doc.maps.contains_key(*n)) {
            changes.push(Change {
                key: map_key(name),
                value: None,
            });
        }
        self.policy = Some(StoredPolicy {
            version,
            doc: doc.clone(),
        });
        Ok(Outcome::Done)
    }

    /// The policy's records, settings first then maps by name.
    pub(crate) fn policy_records(&self) -> Vec<(String, Vec<u8>)> {
        let Some(p) = &self.policy else {
            return Vec::new();
        };
        let mut out = vec![(
            POLICY_SETTINGS_KEY.to_string(),
            to_json(&SettingsRecord {
                version: p.version,
                settings: p.doc.settings.clone(),
            }),
        )];
        out.extend(p.doc.maps.iter().map(|(name, text)| {
            (
                map_key(name),
                to_json(&MapRecord {
                    name: name.clone(),
                    text: text.clone(),
                }),
            )
        }));
        out
    }
}

/// Collects policy records during `Directory::from_records`.
#[derive(Default)]
pub(crate) struct PolicyLoader {
    settings: Option<(u64, String)>,
    maps: BTreeMap<String, String>,
}

impl PolicyLoader {
    /// Takes one record whose key starts with [`POLICY_PREFIX`]. Sizes are not re-checked (a
    /// newer version may allow more); structure is: key matches content, no duplicates.
    pub(crate) fn add(&mut self, key: &str, value: &[u8]) -> Result<(), DirectoryError> {
        let bad = |reason: String| DirectoryError::BadRecord {
            key: key.to_string(),
            reason,
        };
        let json = |e: serde_json::Error| bad(format!("invalid JSON: {e}"));
        if key == POLICY_SETTINGS_KEY {
            let r: SettingsRecord = serde_json::from_slice(value).map_err(json)?;
            if r.version == 0 {
                return Err(bad("policy version 0".to_string()));
            }
            if self.settings.replace((r.version, r.settings)).is_some() {
                return Err(bad("duplicate policy settings record".to_string()));
            }
        } else if let Some(name) = key.strip_prefix(POLICY_MAP_PREFIX) {
            let r: MapRecord = serde_json::from_slice(value).map_err(json)?;
            if r.name != name || !valid_map_name(name) {
                return Err(bad(format!(
                    "key does not match the map's name {:?}",
                    r.name
                )));
            }
            if self.maps.insert(r.name, r.text).is_some() {
                return Err(bad("duplicate policy map".to_string()));
            }
        } else {
            return Err(bad("unknown policy record".to_string()));
        }
        Ok(())
    }

    /// The loaded document; maps without a settings record mean a damaged store.
    pub(crate) fn finish(self) -> Result<Option<StoredPolicy>, DirectoryError> {
        match self.settings {
            Some((version, settings)) => Ok(Some(StoredPolicy {
                version,
                doc: PolicyDoc {
                    settings,
                    maps: self.maps,
                },
            })),
            None => match self.maps.keys().next() {
                Some(name) => Err(DirectoryError::BadRecord {
                    key: map_key(name),
                    reason: "a policy map without the policy's settings record".to_string(),
                }),
                None => Ok(None),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::Command;

    fn doc(settings: &str, maps: &[(&str, &str)]) -> PolicyDoc {
        PolicyDoc {
            settings: settings.to_string(),
            maps: maps
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
        }
    }

    fn set(doc: PolicyDoc, expected_version: Option<u64>) -> Command {
        Command::SetPolicy {
            doc,
            expected_version,
        }
    }

    /// Rebuilds a directory from `dir`'s records and checks it is equal.
    fn round_trip(dir: &Directory) {
        let back = Directory::from_records(dir.records()).unwrap();
        assert_eq!(&back, dir);
    }

    #[test]
    fn versions_are_log_indexes_and_compare_and_set_refuses_stale_writers() {
        let mut d = Directory::new();
        assert_eq!(d.policy_version(), 0);
        let first = doc("[content]\ntag_score = 4.0\n", &[("hc", "/x/ REJECT\n")]);
        // Some(0): "I read no policy"; refused once one exists.
        d.apply_at(7, &set(first.clone(), Some(0))).unwrap();
        assert_eq!(d.policy_version(), 7);
        assert_eq!(d.policy().unwrap().doc, first);
        round_trip(&d);

        let second = doc("", &[("hc", "/y/ WARN\n"), ("bc", "/z/ DISCARD\n")]);
        let err = d.apply_at(9, &set(second.clone(), Some(0))).unwrap_err();
        assert_eq!(
            err,
            DirectoryError::PolicyConflict {
                expected: 0,
                current: 7
            }
        );
        assert!(err.to_string().contains("mailctl policy show"), "{err}");
        assert_eq!(d.policy_version(), 7, "a refused write changes nothing");

        let applied = d.apply_at(10, &set(second.clone(), Some(7))).unwrap();
        assert_eq!(applied.outcome, Outcome::Done);
        assert_eq!(d.policy_version(), 10);
        let keys: Vec<&str> = applied.changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["p/settings", "p/m/bc", "p/m/hc"]);
        round_trip(&d);

        // Removing a map deletes its record and only that one is touched.
        let third = doc("", &[("hc", "/y/ WARN\n")]);
        let applied = d.apply_at(12, &set(third.clone(), None)).unwrap();
        let changed: Vec<(&str, bool)> = applied
            .changes
            .iter()
            .map(|c| (c.key.as_str(), c.value.is_some()))
            .collect();
        assert_eq!(changed, [("p/settings", true), ("p/m/bc", false)]);
        round_trip(&d);

        // The same document again: unchanged, version kept.
        let again = d.apply_at(13, &set(third, Some(12))).unwrap();
        assert_eq!(again.outcome, Outcome::Unchanged);
        assert!(again.changes.is_empty());
        assert_eq!(d.policy_version(), 12);

        // Outside the log, apply counts.
        d.apply(&set(doc("", &[]), None)).unwrap();
        assert_eq!(d.policy_version(), 13);
    }

    #[test]
    fn set_policy_round_trips_through_json_and_defaults_expected_version() {
        let cmd = set(doc("a = 1\n", &[("m", "/x/ WARN\n")]), Some(4));
        let text = serde_json::to_string(&cmd).unwrap();
        assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), cmd);
        let sparse = r#"{"SetPolicy":{"doc":{"settings":""}}}"#;
        assert_eq!(
            serde_json::from_str::<Command>(sparse).unwrap(),
            set(PolicyDoc::default(), None)
        );
    }

    #[test]
    fn apply_checks_limits_but_does_not_compile() {
        let mut d = Directory::new();
        // Not valid TOML nor a valid map: stored all the same (the receiving node compiles).
        d.apply(&set(doc("[[[", &[("m", "FROB\n")]), None)).unwrap();
        let before = d.clone();
        let many: Vec<(String, String)> = (0..=MAX_MAPS)
            .map(|i| (format!("m{i}"), String::new()))
            .collect();
        let many = PolicyDoc {
            settings: String::new(),
            maps: many.into_iter().collect(),
        };
        let big = "x".repeat(MAX_MAP_BYTES + 1);
        let total: Vec<(String, String)> = (0..5)
            .map(|i| (format!("m{i}"), "x".repeat(MAX_MAP_BYTES)))
            .collect();
        let total = PolicyDoc {
            settings: String::new(),
            maps: total.into_iter().collect(),
        };
        for (bad, want) in [
            (
                doc(&"#".repeat(MAX_POLICY_SETTINGS_BYTES + 1), &[]),
                "settings are",
            ),
            (many, "maps; at most"),
            (doc("", &[("big", &big)]), "map big is"),
            (doc("", &[(".hidden", "")]), "map name"),
            (doc("", &[("a/b", "")]), "map name"),
            (doc("", &[("", "")]), "map name"),
            (total, "in all"),
        ] {
            let err = d.apply_at(50, &set(bad, None)).unwrap_err();
            assert!(
                matches!(err, DirectoryError::PolicyLimit { .. }) && err.to_string().contains(want),
                "{err}"
            );
            assert_eq!(d, before);
        }
    }

    #[test]
    fn damaged_policy_records_are_refused() {
        let rec = |k: &str, v: &str| (k.to_string(), v.as_bytes().to_vec());
        let settings = rec("p/settings", r#"{"version":3,"settings":""}"#);
        let cases = vec![
            (
                vec![rec("p/m/a", r#"{"name":"a","text":""}"#)],
                "without the policy's settings",
            ),
            (
                vec![settings.clone(), rec("p/m/a", r#"{"name":"b","text":""}"#)],
                "does not match",
            ),
            (vec![settings.clone(), settings.clone()], "duplicate"),
            (
                vec![rec("p/settings", r#"{"version":0,"settings":""}"#)],
                "version 0",
            ),
            (vec![rec("p/other", "{}")], "unknown policy record"),
            (vec![rec("p/settings", "{")], "invalid JSON"),
        ];
        for (records, want) in cases {
            let err = Directory::from_records(records.into_iter()).unwrap_err();
            assert!(
                matches!(err, DirectoryError::BadRecord { .. }) && err.to_string().contains(want),
                "{want}: {err}"
            );
        }
        let d = Directory::from_records(vec![settings].into_iter()).unwrap();
        assert_eq!(d.policy_version(), 3);
    }
}
