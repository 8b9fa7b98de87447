//! The in-memory directory: its maps and indexes, the read API, and the conversion to and from
//! the persisted records that the cluster stores and ships in snapshots.
//!
//! Lookups by address are hash-map lookups; a per-domain index of sorted addresses serves
//! listings and the "is this domain empty" check, and makes every iteration order
//! deterministic. This module must never do I/O, and must never change state except through
//! the raw `put_*`/`del_*` helpers, which keep the maps and the index in step.
//!
//! Security note: [`Directory::from_records`] trusts record syntax (so that a stricter address
//! rule in a newer version cannot stop a node from starting) but checks the structure — key
//! matches content, every record's domain exists, no address is two things — and fails loudly
//! rather than serve a half-loaded directory.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::address::{domain_of, key};
use super::command::{Change, DirectoryError};
use super::model::{Alias, Counts, DomainEntry, Kind, List, User};
use super::policy::{PolicyLoader, StoredPolicy, POLICY_PREFIX};
use super::sieve::SieveScripts;

/// The replicated directory: domains, users, aliases and lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    /// Domains by name, each with the sorted addresses it holds.
    pub(crate) domains: BTreeMap<String, DomainSlot>,
    /// Users by normalised address.
    pub(crate) users: HashMap<String, User>,
    /// Aliases by normalised address.
    pub(crate) aliases: HashMap<String, Alias>,
    /// Lists by normalised address.
    pub(crate) lists: HashMap<String, List>,
    /// Users' Sieve scripts by the user's normalised address (only users that have some).
    pub(crate) sieve: HashMap<String, SieveScripts>,
    /// The cluster-wide anti-UBE policy document, once one was set.
    pub(crate) policy: Option<StoredPolicy>,
}

/// A domain and the index of what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DomainSlot {
    pub(crate) entry: DomainEntry,
    pub(crate) users: BTreeSet<String>,
    pub(crate) aliases: BTreeSet<String>,
    pub(crate) lists: BTreeSet<String>,
}

impl DomainSlot {
    fn new(entry: DomainEntry) -> DomainSlot {
        DomainSlot {
            entry,
            users: BTreeSet::new(),
            aliases: BTreeSet::new(),
            lists: BTreeSet::new(),
        }
    }

    fn index(&mut self, kind: Kind) -> &mut BTreeSet<String> {
        match kind {
            Kind::User => &mut self.users,
            Kind::Alias => &mut self.aliases,
            Kind::List => &mut self.lists,
        }
    }
}

/// A directory entry found by address.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entity<'a> {
    User(&'a User),
    Alias(&'a Alias),
    List(&'a List),
}

impl<'a> Entity<'a> {
    pub(crate) fn address(self) -> &'a str {
        match self {
            Entity::User(u) => &u.address,
            Entity::Alias(a) => &a.address,
            Entity::List(l) => &l.address,
        }
    }

    /// Where mail for this entry goes next; empty for a user.
    pub(crate) fn targets(self) -> &'a [String] {
        match self {
            Entity::User(_) => &[],
            Entity::Alias(a) => &a.targets,
            Entity::List(l) => &l.members,
        }
    }
}

/// Record key prefixes.
const DOMAIN_PREFIX: &str = "d/";
const USER_PREFIX: &str = "u/";
const ALIAS_PREFIX: &str = "a/";
const LIST_PREFIX: &str = "l/";
const SIEVE_PREFIX: &str = "s/";

fn record_key(kind: Option<Kind>, name: &str) -> String {
    let prefix = match kind {
        None => DOMAIN_PREFIX,
        Some(Kind::User) => USER_PREFIX,
        Some(Kind::Alias) => ALIAS_PREFIX,
        Some(Kind::List) => LIST_PREFIX,
    };
    format!("{prefix}{name}")
}

/// Checks that a record sits under the key its (lowercase) name calls for.
fn check_key(key_text: &str, name: &str) -> Result<(), DirectoryError> {
    if key_text[2..] != *name || *key(name) != *name {
        return Err(DirectoryError::BadRecord {
            key: key_text.to_string(),
            reason: format!("key does not match the record's name {name:?}"),
        });
    }
    Ok(())
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    // The model types have only string map keys and plain fields: serialisation cannot fail.
    serde_json::to_vec(value).expect("directory records always serialise to JSON")
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Directory {
        Directory::default()
    }

    /// The domain `name`, if served here.
    pub fn domain(&self, name: &str) -> Option<&DomainEntry> {
        self.domains.get(key(name).as_ref()).map(|s| &s.entry)
    }

    /// All domains, sorted by name.
    pub fn domains(&self) -> impl Iterator<Item = &DomainEntry> {
        self.domains.values().map(|s| &s.entry)
    }

    /// The user with this address (case-insensitive).
    pub fn user(&self, address: &str) -> Option<&User> {
        self.users.get(key(address).as_ref())
    }

    /// Users of one domain, or of all domains; sorted by domain, then address.
    pub fn users(&self, domain: Option<&str>) -> impl Iterator<Item = &User> {
        self.slots(domain)
            .flat_map(|s| s.users.iter())
            .filter_map(|a| self.users.get(a))
    }

    /// The alias with this address (case-insensitive).
    pub fn alias(&self, address: &str) -> Option<&Alias> {
        self.aliases.get(key(address).as_ref())
    }

    /// Aliases of one domain, or of all domains; sorted by domain, then address.
    pub fn aliases(&self, domain: Option<&str>) -> impl Iterator<Item = &Alias> {
        self.slots(domain)
            .flat_map(|s| s.aliases.iter())
            .filter_map(|a| self.aliases.get(a))
    }

    /// The list with this address (case-insensitive).
    pub fn list(&self, address: &str) -> Option<&List> {
        self.lists.get(key(address).as_ref())
    }

    /// Lists of one domain, or of all domains; sorted by domain, then address.
    pub fn lists(&self, domain: Option<&str>) -> impl Iterator<Item = &List> {
        self.slots(domain)
            .flat_map(|s| s.lists.iter())
            .filter_map(|a| self.lists.get(a))
    }

    /// What `address` is, if anything (exact match only, no subaddress or catch-all).
    pub fn kind_of(&self, address: &str) -> Option<Kind> {
        self.entity(&key(address)).map(|e| match e {
            Entity::User(_) => Kind::User,
            Entity::Alias(_) => Kind::Alias,
            Entity::List(_) => Kind::List,
        })
    }

    /// How many records of each kind there are.
    pub fn counts(&self) -> Counts {
        Counts {
            domains: self.domains.len(),
            users: self.users.len(),
            aliases: self.aliases.len(),
            lists: self.lists.len(),
        }
    }

    /// Every record as `(key, JSON)`, in a deterministic order (each domain followed by its
    /// users, their Sieve scripts, aliases and lists; then the anti-UBE policy).
    /// [`Directory::from_records`] rebuilds an equal directory.
    pub fn records(&self) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
        let policy = self.policy_records();
        self.domains
            .values()
            .flat_map(move |slot| {
                let domain =
                    std::iter::once((record_key(None, &slot.entry.name), to_json(&slot.entry)));
                let users = slot.users.iter().filter_map(move |a| {
                    let u = self.users.get(a)?;
                    Some((record_key(Some(Kind::User), a), to_json(u)))
                });
                let sieve = slot.users.iter().filter_map(move |a| {
                    let s = self.sieve.get(a)?;
                    Some((format!("{SIEVE_PREFIX}{a}"), to_json(s)))
                });
                let aliases = slot.aliases.iter().filter_map(move |a| {
                    let x = self.aliases.get(a)?;
                    Some((record_key(Some(Kind::Alias), a), to_json(x)))
                });
                let lists = slot.lists.iter().filter_map(move |a| {
                    let l = self.lists.get(a)?;
                    Some((record_key(Some(Kind::List), a), to_json(l)))
                });
                domain.chain(users).chain(sieve).chain(aliases).chain(lists)
            })
            .chain(policy)
    }

    /// Rebuilds a directory from persisted records, in any order.
    pub fn from_records(
        records: impl Iterator<Item = (String, Vec<u8>)>,
    ) -> Result<Directory, DirectoryError> {
        let mut dir = Directory::new();
        // Domains first, whatever the input order, so that every entry finds its domain.
        let mut entries: Vec<(String, Entry)> = Vec::new();
        let mut scripts: Vec<(String, SieveScripts)> = Vec::new();
        let mut policy = PolicyLoader::default();
        for (k, value) in records {
            let bad = |reason: String| DirectoryError::BadRecord {
                key: k.clone(),
                reason,
            };
            let json = |e: serde_json::Error| bad(format!("invalid JSON: {e}"));
            let (name, entry) = if k.starts_with(DOMAIN_PREFIX) {
                let d: DomainEntry = serde_json::from_slice(&value).map_err(json)?;
                check_key(&k, &d.name)?;
                if dir.domains.contains_key(&d.name) {
                    return Err(bad("duplicate domain".to_string()));
                }
                dir.put_domain(d);
                continue;
            } else if k.starts_with(USER_PREFIX) {
                let u: User = serde_json::from_slice(&value).map_err(json)?;
                (u.address.clone(), Entry::User(u))
            } else if k.starts_with(ALIAS_PREFIX) {
                let a: Alias = serde_json::from_slice(&value).map_err(json)?;
                (a.address.clone(), Entry::Alias(a))
            } else if k.starts_with(SIEVE_PREFIX) {
                let s: SieveScripts = serde_json::from_slice(&value).map_err(json)?;
                check_key(&k, &s.user)?;
                scripts.push((k, s));
                continue;
            } else if k.starts_with(POLICY_PREFIX) {
                policy.add(&k, &value)?;
                continue;
            } else if k.starts_with(LIST_PREFIX) {
                let l: List = serde_json::from_slice(&value).map_err(json)?;
                (l.address.clone(), Entry::List(l))
            } else {
                return Err(bad("unknown key prefix".to_string()));
            };
            check_key(&k, &name)?;
            entries.push((k, entry));
        }
        for (k, entry) in entries {
            let bad = |reason: &str| DirectoryError::BadRecord {
                key: k.clone(),
                reason: reason.to_string(),
            };
            let address = &k[2..];
            if !dir.domains.contains_key(domain_of(address)) {
                return Err(bad("its domain has no record"));
            }
            if dir.entity(address).is_some() {
                return Err(bad("the address is already used by another record"));
            }
            match entry {
                Entry::User(u) => dir.put_user(u),
                Entry::Alias(a) => dir.put_alias(a),
                Entry::List(l) => dir.put_list(l),
            };
        }
        for (k, s) in scripts {
            let bad = |reason: &str| DirectoryError::BadRecord {
                key: k.clone(),
                reason: reason.to_string(),
            };
            if !dir.users.contains_key(&s.user) {
                return Err(bad("Sieve scripts of a user that has no record"));
            }
            if s.active
                .as_ref()
                .is_some_and(|a| !s.scripts.contains_key(a))
            {
                return Err(bad("the active Sieve script does not exist"));
            }
            if dir.sieve.contains_key(&s.user) {
                return Err(bad("duplicate Sieve record"));
            }
            dir.put_sieve(s);
        }
        dir.policy = policy.finish()?;
        Ok(dir)
    }

    /// The user, alias or list at exactly this (normalised) address.
    pub(crate) fn entity(&self, address: &str) -> Option<Entity<'_>> {
        if let Some(u) = self.users.get(address) {
            Some(Entity::User(u))
        } else if let Some(a) = self.aliases.get(address) {
            Some(Entity::Alias(a))
        } else {
            self.lists.get(address).map(Entity::List)
        }
    }

    fn slots(&self, domain: Option<&str>) -> impl Iterator<Item = &DomainSlot> {
        let wanted = domain.map(|d| key(d).into_owned());
        self.domains
            .iter()
            .filter(move |(name, _)| wanted.as_ref().is_none_or(|w| w == *name))
            .map(|(_, slot)| slot)
    }

    // Raw mutations: no validation (callers validate first), index kept in step, and a Change
    // returned for persistence.

    pub(crate) fn put_domain(&mut self, entry: DomainEntry) -> Change {
        let change = Change {
            key: record_key(None, &entry.name),
            value: Some(to_json(&entry)),
        };
        match self.domains.get_mut(&entry.name) {
            Some(slot) => slot.entry = entry,
            None => {
                self.domains
                    .insert(entry.name.clone(), DomainSlot::new(entry));
            }
        }
        change
    }

    pub(crate) fn del_domain(&mut self, name: &str) -> Change {
        self.domains.remove(name);
        Change {
            key: record_key(None, name),
            value: None,
        }
    }

    pub(crate) fn put_user(&mut self, user: User) -> Change {
        let change = self.index(Kind::User, &user.address, Some(to_json(&user)));
        self.users.insert(user.address.clone(), user);
        change
    }

    pub(crate) fn put_alias(&mut self, alias: Alias) -> Change {
        let change = self.index(Kind::Alias, &alias.address, Some(to_json(&alias)));
        self.aliases.insert(alias.address.clone(), alias);
        change
    }

    pub(crate) fn put_list(&mut self, list: List) -> Change {
        let change = self.index(Kind::List, &list.address, Some(to_json(&list)));
        self.lists.insert(list.address.clone(), list);
        change
    }

    pub(crate) fn put_sieve(&mut self, scripts: SieveScripts) -> Change {
        let change = Change {
            key: format!("{SIEVE_PREFIX}{}", scripts.user),
            value: Some(to_json(&scripts)),
        };
        self.sieve.insert(scripts.user.clone(), scripts);
        change
    }

    pub(crate) fn del_sieve(&mut self, user: &str) -> Change {
        self.sieve.remove(user);
        Change {
            key: format!("{SIEVE_PREFIX}{user}"),
            value: None,
        }
    }

    pub(crate) fn del(&mut self, kind: Kind, address: &str) -> Change {
        match kind {
            Kind::User => self.users.remove(address).map(drop),
            Kind::Alias => self.aliases.remove(address).map(drop),
            Kind::List => self.lists.remove(address).map(drop),
        };
        self.index(kind, address, None)
    }

    fn index(&mut self, kind: Kind, address: &str, value: Option<Vec<u8>>) -> Change {
        if let Some(slot) = self.domains.get_mut(domain_of(address)) {
            if value.is_some() {
                slot.index(kind).insert(address.to_string());
            } else {
                slot.index(kind).remove(address);
            }
        }
        Change {
            key: record_key(Some(kind), address),
            value,
        }
    }
}

/// A decoded address record during [`Directory::from_records`].
enum Entry {
    User(User),
    Alias(Alias),
    List(List),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::Command;

    type Record = (String, Vec<u8>);

    fn rec(key: &str, json: &str) -> Record {
        (key.to_string(), json.as_bytes().to_vec())
    }

    #[test]
    fn records_load_in_any_order() {
        let mut dir = Directory::new();
        for cmd in [
            Command::AddDomain {
                name: "a.org".into(),
            },
            Command::AddUser(User::new("u@a.org", "!")),
            Command::AddAlias {
                address: "x@a.org".into(),
                targets: vec!["u@a.org".into()],
            },
        ] {
            dir.apply(&cmd).unwrap();
        }
        let mut records: Vec<_> = dir.records().collect();
        assert_eq!(records[0].0, "d/a.org");
        records.reverse();
        assert_eq!(Directory::from_records(records.into_iter()).unwrap(), dir);
        assert_eq!(
            Directory::from_records(std::iter::empty()).unwrap(),
            Directory::new()
        );
    }

    #[test]
    fn damaged_records_are_refused() {
        let domain = rec("d/a.org", r#"{"name":"a.org"}"#);
        let user = rec("u/u@a.org", r#"{"address":"u@a.org","password_hash":"!"}"#);
        let cases: Vec<(Vec<Record>, &str)> = vec![
            (vec![rec("x/a.org", "{}")], "unknown key prefix"),
            (vec![rec("d/a.org", "{not json")], "invalid JSON"),
            (
                vec![rec("d/b.org", r#"{"name":"a.org"}"#)],
                "does not match",
            ),
            (
                vec![rec("d/A.org", r#"{"name":"A.org"}"#)],
                "does not match",
            ),
            (vec![domain.clone(), domain.clone()], "duplicate domain"),
            (vec![user.clone()], "domain has no record"),
            (
                vec![
                    domain.clone(),
                    user.clone(),
                    rec("l/u@a.org", r#"{"address":"u@a.org","members":[]}"#),
                ],
                "already used",
            ),
        ];
        for (records, want) in cases {
            let err = Directory::from_records(records.into_iter()).unwrap_err();
            assert!(
                matches!(err, DirectoryError::BadRecord { .. }) && err.to_string().contains(want),
                "{err}"
            );
        }
    }
}
