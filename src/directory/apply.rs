//! Applying a [`Command`] to the [`Directory`]: the Raft state machine's transition function.
//!
//! Every handler first validates everything against the current state without touching it,
//! then mutates through the infallible `put_*`/`del*` helpers; so an `Err` always leaves the
//! directory exactly as it was (atomicity), and the same command on the same state gives the
//! same result on every node (determinism: no clocks, no randomness, no hash-map iteration
//! order in results). This module must never do I/O, and must never hash passwords — that is
//! done before the command is proposed, so replicas only copy hashes.
//!
//! Security note: commands come from authenticated administrators, but are validated as if
//! hostile: addresses, hashes (a scheme we cannot verify is refused), field sizes, and the
//! alias/list graph (no loops, no local target that names nothing).

use std::collections::HashSet;

use super::address::{domain_of, key, parse_domain, Address};
use super::command::{Applied, Change, Command, DirectoryError, ItemError, ItemKind, Outcome};
use super::model::{
    check_display_name, check_pref_key, check_pref_value, normalise_mail_host, Alias, DomainEntry,
    Kind, List, User,
};
use super::password::scheme_of;
use super::state::Directory;

impl Directory {
    /// Validates and applies `cmd` outside the Raft log (tests, tools): like
    /// [`Directory::apply_at`] with no log index, so a policy change counts its version up.
    pub fn apply(&mut self, cmd: &Command) -> Result<Applied, DirectoryError> {
        self.apply_at(0, cmd)
    }

    /// Validates and applies `cmd`, the Raft log entry at `index`. On `Err` nothing changed;
    /// on `Ok` the returned [`Applied::changes`] are the records to persist. The index is only
    /// used as the anti-UBE policy's version (see `directory::policy`).
    pub fn apply_at(&mut self, index: u64, cmd: &Command) -> Result<Applied, DirectoryError> {
        let mut changes = Vec::new();
        let outcome = match cmd {
            Command::AddDomain { name } => {
                let name = domain_name(name)?;
                if self.domains.contains_key(&name) {
                    return Err(DirectoryError::DomainExists { name });
                }
                changes.push(self.put_domain(DomainEntry {
                    name,
                    catch_all: None,
                }));
                Outcome::Done
            }
            Command::RemoveDomain { name } => {
                let name = domain_name(name)?;
                let slot = self
                    .domains
                    .get(&name)
                    .ok_or_else(|| unknown_domain(&name))?;
                if !(slot.users.is_empty() && slot.aliases.is_empty() && slot.lists.is_empty()) {
                    return Err(DirectoryError::DomainInUse {
                        users: slot.users.len(),
                        aliases: slot.aliases.len(),
                        lists: slot.lists.len(),
                        name,
                    });
                }
                changes.push(self.del_domain(&name));
                Outcome::Done
            }
            Command::SetCatchAll { domain, target } => {
                let name = domain_name(domain)?;
                let mut entry = self
                    .domain(&name)
                    .ok_or_else(|| unknown_domain(&name))?
                    .clone();
                entry.catch_all = match target {
                    None => None,
                    Some(t) => {
                        let t = address(t)?.into_string();
                        if self.target_missing(&t, "") {
                            return Err(DirectoryError::TargetMissing {
                                owner: format!("catch-all of {name}"),
                                target: t,
                            });
                        }
                        Some(t)
                    }
                };
                changes.push(self.put_domain(entry));
                Outcome::Done
            }
            Command::AddUser(user) => {
                let user = self.check_new_user(user, false)?;
                changes.push(self.put_user(user));
                Outcome::Done
            }
            Command::RemoveUser { address } => self.remove(Kind::User, address, &mut changes)?,
            Command::RemoveAlias { address } => self.remove(Kind::Alias, address, &mut changes)?,
            Command::RemoveList { address } => self.remove(Kind::List, address, &mut changes)?,
            Command::SetPasswordHash { address, hash } => {
                let mut user = self.existing_user(address)?.clone();
                check_hash(&user.address, hash)?;
                user.password_hash = hash.clone();
                changes.push(self.put_user(user));
                Outcome::Done
            }
            Command::RehashPassword {
                address,
                old_hash,
                new_hash,
            } => {
                let addr = self::address(address)?;
                check_hash(addr.as_str(), new_hash)?;
                match self.users.get(addr.as_str()) {
                    Some(u) if u.password_hash == *old_hash => {
                        let mut user = u.clone();
                        user.password_hash = new_hash.clone();
                        changes.push(self.put_user(user));
                        Outcome::Done
                    }
                    // Someone changed the password (or removed the user) since the login
                    // that asked for this rehash: theirs wins.
                    _ => Outcome::Unchanged,
                }
            }
            Command::UpdateUser {
                address,
                display_name,
                quota_bytes,
                mail_host,
                enabled,
                set_prefs,
                remove_prefs,
            } => {
                let mut user = self.existing_user(address)?.clone();
                let field = |field: &str, reason: String| DirectoryError::InvalidField {
                    address: user.address.clone(),
                    field: field.to_string(),
                    reason,
                };
                if let Some(name) = display_name {
                    check_display_name(name).map_err(|r| field("display_name", r))?;
                }
                let mail_host = match mail_host {
                    Some(h) => Some(normalise_mail_host(h).map_err(|r| field("mail_host", r))?),
                    None => None,
                };
                for (k, v) in set_prefs {
                    check_pref_key(k).map_err(|r| field("prefs", r))?;
                    check_pref_value(v).map_err(|r| field(&format!("prefs.{k}"), r))?;
                }
                if let Some(k) = remove_prefs.iter().find(|k| set_prefs.contains_key(*k)) {
                    return Err(field(
                        &format!("prefs.{k}"),
                        "both set and removed in one update".to_string(),
                    ));
                }
                if let Some(name) = display_name {
                    user.display_name = name.clone();
                }
                if let Some(q) = quota_bytes {
                    user.quota_bytes = *q;
                }
                if let Some(h) = mail_host {
                    user.mail_host = h;
                }
                if let Some(e) = enabled {
                    user.enabled = *e;
                }
                for k in remove_prefs {
                    user.prefs.remove(k);
                }
                user.prefs
                    .extend(set_prefs.iter().map(|(k, v)| (k.clone(), v.clone())));
                if self.users.get(&user.address) == Some(&user) {
                    Outcome::Unchanged
                } else {
                    changes.push(self.put_user(user));
                    Outcome::Done
                }
            }
            Command::AddAlias { address, targets } => {
                let alias = self.check_new_alias(address, targets)?;
                changes.push(self.put_alias(alias));
                Outcome::Done
            }
            Command::AddList { address, members } => {
                let addr = self.check_new_address(address, false)?;
                let members = self.check_targets(addr.as_str(), members, &[])?;
                changes.push(self.put_list(List {
                    address: addr.into_string(),
                    members,
                }));
                Outcome::Done
            }
            Command::ListAddMembers { address, members } => {
                let mut list = self.existing_list(address)?.clone();
                let added = self.check_targets(&list.address, members, &list.members)?;
                if added.is_empty() {
                    Outcome::Unchanged
                } else {
                    list.members.extend(added);
                    changes.push(self.put_list(list));
                    Outcome::Done
                }
            }
            Command::ListRemoveMembers { address, members } => {
                let mut list = self.existing_list(address)?.clone();
                // Lowercased, not validated: any member that is there can be taken out.
                let remove: HashSet<String> = members.iter().map(|m| key(m).into_owned()).collect();
                let before = list.members.len();
                list.members.retain(|m| !remove.contains(m));
                if list.members.len() == before {
                    Outcome::Unchanged
                } else {
                    changes.push(self.put_list(list));
                    Outcome::Done
                }
            }
            Command::PutSieveScript {
                user,
                name,
                source,
                activate,
            } => self.put_sieve_script(user, name, source, *activate, &mut changes)?,
            Command::ActivateSieveScript { user, name } => {
                self.activate_sieve_script(user, name.as_deref(), &mut changes)?
            }
            Command::RenameSieveScript { user, from, to } => {
                self.rename_sieve_script(user, from, to, &mut changes)?
            }
            Command::DeleteSieveScript { user, name } => {
                self.delete_sieve_script(user, name, &mut changes)?
            }
            Command::SetPolicy {
                doc,
                expected_version,
            } => self.set_policy(index, doc, *expected_version, &mut changes)?,
            Command::ImportUsers {
                users,
                aliases,
                create_domains,
            } => self.import(users, aliases, *create_domains, &mut changes),
        };
        Ok(Applied { outcome, changes })
    }

    fn import(
        &mut self,
        users: &[User],
        aliases: &[Alias],
        create_domains: bool,
        changes: &mut Vec<Change>,
    ) -> Outcome {
        let mut applied = 0;
        let mut domains_created = Vec::new();
        let mut errors = Vec::new();
        for (index, user) in users.iter().enumerate() {
            match self.check_new_user(user, create_domains) {
                Ok(user) => {
                    let domain = domain_of(&user.address);
                    if !self.domains.contains_key(domain) {
                        domains_created.push(domain.to_string());
                        changes.push(self.put_domain(DomainEntry {
                            name: domain.to_string(),
                            catch_all: None,
                        }));
                    }
                    changes.push(self.put_user(user));
                    applied += 1;
                }
                Err(reason) => errors.push(ItemError {
                    kind: ItemKind::User,
                    index,
                    address: user.address.clone(),
                    reason,
                }),
            }
        }
        for (index, alias) in aliases.iter().enumerate() {
            match self.check_new_alias(&alias.address, &alias.targets) {
                Ok(alias) => {
                    changes.push(self.put_alias(alias));
                    applied += 1;
                }
                Err(reason) => errors.push(ItemError {
                    kind: ItemKind::Alias,
                    index,
                    address: alias.address.clone(),
                    reason,
                }),
            }
        }
        Outcome::Import {
            applied,
            domains_created,
            errors,
        }
    }

    /// Removes a user, alias or list that nothing points to.
    fn remove(
        &mut self,
        kind: Kind,
        address: &str,
        changes: &mut Vec<Change>,
    ) -> Result<Outcome, DirectoryError> {
        let addr = self.existing(kind, address)?;
        let referrers = self.referrers(&addr);
        if !referrers.is_empty() {
            return Err(DirectoryError::InUse {
                address: addr,
                referrers,
            });
        }
        if kind == Kind::User && self.sieve.contains_key(&addr) {
            changes.push(self.del_sieve(&addr));
        }
        changes.push(self.del(kind, &addr));
        Ok(Outcome::Done)
    }

    /// Validates a new user and returns it normalised. With `allow_missing_domain`, an unknown
    /// (but well-formed) domain is accepted: the import creates it.
    fn check_new_user(
        &self,
        user: &User,
        allow_missing_domain: bool,
    ) -> Result<User, DirectoryError> {
        let addr = self.check_new_address(&user.address, allow_missing_domain)?;
        check_hash(addr.as_str(), &user.password_hash)?;
        let field = |field: &str, reason: String| DirectoryError::InvalidField {
            address: addr.to_string(),
            field: field.to_string(),
            reason,
        };
        check_display_name(&user.display_name).map_err(|r| field("display_name", r))?;
        let mail_host = normalise_mail_host(&user.mail_host).map_err(|r| field("mail_host", r))?;
        for (k, v) in &user.prefs {
            check_pref_key(k).map_err(|r| field("prefs", r))?;
            check_pref_value(v).map_err(|r| field(&format!("prefs.{k}"), r))?;
        }
        Ok(User {
            address: addr.into_string(),
            mail_host,
            ..user.clone()
        })
    }

    fn check_new_alias(&self, address: &str, targets: &[String]) -> Result<Alias, DirectoryError> {
        let addr = self.check_new_address(address, false)?;
        let targets = self.check_targets(addr.as_str(), targets, &[])?;
        if targets.is_empty() {
            return Err(DirectoryError::NoTargets {
                address: addr.into_string(),
            });
        }
        Ok(Alias {
            address: addr.into_string(),
            targets,
        })
    }

    /// Parses an address for a new entry: its domain served here (unless allowed missing) and
    /// the address not yet a user, alias or list.
    fn check_new_address(
        &self,
        text: &str,
        allow_missing_domain: bool,
    ) -> Result<Address, DirectoryError> {
        let addr = address(text)?;
        if !allow_missing_domain && !self.domains.contains_key(addr.domain()) {
            return Err(unknown_domain(addr.domain()));
        }
        if let Some(kind) = self.kind_of(addr.as_str()) {
            return Err(DirectoryError::AddressTaken {
                address: addr.into_string(),
                kind,
            });
        }
        Ok(addr)
    }

    /// Normalises `new` targets of `owner`, drops duplicates and those already in `existing`,
    /// and checks that local ones exist and that none closes a loop. Returns the ones to add.
    fn check_targets(
        &self,
        owner: &str,
        new: &[String],
        existing: &[String],
    ) -> Result<Vec<String>, DirectoryError> {
        // Sets, not `Vec::contains`: a list may have tens of thousands of members.
        let mut seen: HashSet<String> = existing.iter().cloned().collect();
        let mut out: Vec<String> = Vec::with_capacity(new.len());
        for t in new {
            let t = address(t)?.into_string();
            if !seen.insert(t.clone()) {
                continue;
            }
            if self.target_missing(&t, owner) {
                return Err(DirectoryError::TargetMissing {
                    owner: owner.to_string(),
                    target: t,
                });
            }
            out.push(t);
        }
        if let Some(path) = self.find_cycle(owner, &out) {
            return Err(DirectoryError::Loop {
                owner: owner.to_string(),
                path,
            });
        }
        Ok(out)
    }

    /// The key of an existing entry of `kind`. Looked up by lowercased text before any
    /// validation, so that an entry stored under an older, laxer rule can still be changed or
    /// removed.
    fn existing(&self, kind: Kind, text: &str) -> Result<String, DirectoryError> {
        let k = key(text).into_owned();
        if self.kind_of(&k) == Some(kind) {
            return Ok(k);
        }
        Err(DirectoryError::NotFound {
            address: address(text)?.into_string(),
            kind,
        })
    }

    /// The normalised address of an existing user.
    pub(crate) fn existing_user_key(&self, text: &str) -> Result<String, DirectoryError> {
        self.existing(Kind::User, text)
    }

    fn existing_user(&self, text: &str) -> Result<&User, DirectoryError> {
        let k = self.existing(Kind::User, text)?;
        Ok(&self.users[&k])
    }

    fn existing_list(&self, text: &str) -> Result<&List, DirectoryError> {
        let k = self.existing(Kind::List, text)?;
        Ok(&self.lists[&k])
    }
}

fn address(text: &str) -> Result<Address, DirectoryError> {
    Address::parse(text).map_err(|reason| DirectoryError::InvalidAddress {
        address: text.to_string(),
        reason,
    })
}

fn domain_name(text: &str) -> Result<String, DirectoryError> {
    parse_domain(text).map_err(|reason| DirectoryError::InvalidDomain {
        name: text.to_string(),
        reason,
    })
}

fn unknown_domain(name: &str) -> DirectoryError {
    DirectoryError::UnknownDomain {
        domain: name.to_string(),
    }
}

fn check_hash(address: &str, hash: &str) -> Result<(), DirectoryError> {
    scheme_of(hash)
        .map(drop)
        .map_err(|reason| DirectoryError::InvalidPasswordHash {
            address: address.to_string(),
            reason,
        })
}

#[cfg(test)]
mod tests;
