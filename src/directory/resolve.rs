//! Recipient resolution: from an address to the local mailboxes and external addresses that
//! receive its mail, following aliases and lists; and the graph checks (loops, references)
//! that keep the directory resolvable.
//!
//! Rules, in order, for each address: an exact user, alias or list; else, for
//! `base+tag@domain`, the entry at `base@domain`; else the domain's catch-all; else unknown.
//! Addresses outside the served domains are external forwards. Expansion is breadth-first with a
//! depth limit ([`MAX_DEPTH`]) and a visited set, so even a loop that slipped past the write-time
//! check terminates. Disabled users do not receive mail: as the top-level recipient they are
//! [`ResolveError::Disabled`]; inside an alias or list they are skipped and reported in
//! [`Resolution::skipped`]. This module must never do I/O or change the directory.
//!
//! Security note: resolution runs for every `RCPT TO` from the network, so its cost is bounded
//! by the depth limit and the visited set, never by the input.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::address::{domain_of, Address, AddressError, SUBADDRESS_SEPARATOR};
use super::state::{Directory, Entity};

/// Most alias/list hops followed from the address a message was sent to.
pub const MAX_DEPTH: usize = 10;
/// Most referrers named in a [`DirectoryError::InUse`](super::DirectoryError::InUse) message.
const MAX_REFERRERS_SHOWN: usize = 10;

/// Where mail for one address goes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Resolution {
    /// Enabled local users to deliver to, deduplicated, nearest first.
    pub mailboxes: Vec<Address>,
    /// External addresses to forward to, deduplicated, nearest first.
    pub forwards: Vec<Address>,
    /// Targets of aliases or lists that received nothing (disabled, unknown, too deep).
    pub skipped: Vec<ResolveError>,
    /// The tag of a `user+tag@domain` address matched through its base address.
    pub detail: Option<String>,
}

/// Why an address receives no mail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ResolveError {
    /// The address does not parse.
    #[error("invalid address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// The rule it breaks.
        reason: AddressError,
    },
    /// The domain is not served here (relay decisions are not the directory's business).
    #[error("domain {domain} is not local")]
    NotLocal {
        /// The domain.
        domain: String,
    },
    /// A local domain with no such user, alias, list or catch-all.
    #[error("no such user {address}")]
    UnknownUser {
        /// The address.
        address: String,
    },
    /// The user exists but is disabled.
    #[error("user {address} is disabled")]
    Disabled {
        /// The user.
        address: String,
    },
    /// Aliases and lists nest deeper than [`MAX_DEPTH`].
    #[error("{address} is nested more than {MAX_DEPTH} aliases or lists deep")]
    TooDeep {
        /// The first address beyond the limit.
        address: String,
    },
    /// An alias or list whose expansion reaches nobody (e.g. an empty list).
    #[error("{address} has no recipients")]
    NoRecipients {
        /// The alias or list.
        address: String,
    },
}

impl Directory {
    /// Resolves `address` to the mailboxes and forwards that receive its mail.
    ///
    /// Errors when nothing at all would receive the message; a partial expansion is `Ok`, with
    /// the lost branches in [`Resolution::skipped`].
    pub fn resolve(&self, address: &str) -> Result<Resolution, ResolveError> {
        let addr = Address::parse(address).map_err(|reason| ResolveError::InvalidAddress {
            address: address.to_string(),
            reason,
        })?;
        if !self.domains.contains_key(addr.domain()) {
            return Err(ResolveError::NotLocal {
                domain: addr.domain().to_string(),
            });
        }
        let mut out = Resolution::default();
        if self.entity(addr.as_str()).is_none() {
            if let Some((base, tag)) = addr.split_subaddress() {
                if self.entity(base.as_str()).is_some() {
                    out.detail = Some(tag.to_string());
                }
            }
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let mut delivered: HashSet<&str> = HashSet::new();
        let mut queue: VecDeque<(&str, usize)> = VecDeque::new();
        queue.push_back((addr.as_str(), 0));
        while let Some((target, depth)) = queue.pop_front() {
            if !seen.insert(target) {
                continue;
            }
            if depth > MAX_DEPTH {
                out.skipped.push(ResolveError::TooDeep {
                    address: target.to_string(),
                });
                continue;
            }
            let domain = domain_of(target);
            let Some(slot) = self.domains.get(domain) else {
                match Address::parse(target) {
                    Ok(a) => out.forwards.push(a),
                    Err(reason) => out.skipped.push(ResolveError::InvalidAddress {
                        address: target.to_string(),
                        reason,
                    }),
                }
                continue;
            };
            match self.entity_or_base(target) {
                Some(Entity::User(u)) if !u.enabled => out.skipped.push(ResolveError::Disabled {
                    address: u.address.clone(),
                }),
                Some(Entity::User(u)) => {
                    if delivered.insert(&u.address) {
                        // Stored addresses were validated on the way in.
                        if let Ok(a) = Address::parse(&u.address) {
                            out.mailboxes.push(a);
                        }
                    }
                }
                Some(entity) => {
                    let targets = entity.targets();
                    if targets.is_empty() && depth == 0 {
                        return Err(ResolveError::NoRecipients {
                            address: entity.address().to_string(),
                        });
                    }
                    // An alias reached through a subaddress is visited under its own name too.
                    seen.insert(entity.address());
                    queue.extend(targets.iter().map(|t| (t.as_str(), depth + 1)));
                }
                None => match &slot.entry.catch_all {
                    Some(catch_all) => queue.push_back((catch_all.as_str(), depth + 1)),
                    None => out.skipped.push(ResolveError::UnknownUser {
                        address: target.to_string(),
                    }),
                },
            }
        }
        if out.mailboxes.is_empty() && out.forwards.is_empty() {
            return Err(if out.skipped.is_empty() {
                ResolveError::NoRecipients {
                    address: addr.into_string(),
                }
            } else {
                out.skipped.swap_remove(0)
            });
        }
        Ok(out)
    }

    /// The entry at `address`, or at its base address when it is `base+tag@domain` and nothing
    /// sits at the exact address. `address` must be normalised.
    pub(crate) fn entity_or_base(&self, address: &str) -> Option<Entity<'_>> {
        self.entity(address)
            .or_else(|| self.entity(&base_address(address)?))
    }

    /// Whether a local target or member would reach nothing (no entry, even through its base).
    /// External addresses always count as reachable.
    pub(crate) fn target_missing(&self, target: &str, owner: &str) -> bool {
        self.domains.contains_key(domain_of(target))
            && !points_to(target, owner)
            && self.entity_or_base(target).is_none()
    }

    /// The loop that giving `owner` the targets `new_targets` would create, as a path from
    /// `owner` back to itself; `None` when there is none. Assumes the rest of the graph is
    /// acyclic, which every successful apply maintains.
    pub(crate) fn find_cycle(&self, owner: &str, new_targets: &[String]) -> Option<Vec<String>> {
        let mut parent: HashMap<&str, &str> = HashMap::new();
        let mut stack: Vec<&str> = Vec::new();
        for t in new_targets {
            if !parent.contains_key(t.as_str()) {
                parent.insert(t, owner);
                stack.push(t);
            }
        }
        while let Some(node) = stack.pop() {
            if points_to(node, owner) && self.entity(node).is_none_or(|e| e.address() == owner) {
                let mut path = vec![owner.to_string(), node.to_string()];
                let mut cur = node;
                while let Some(&p) = parent.get(cur) {
                    if p == owner {
                        break;
                    }
                    path.insert(1, p.to_string());
                    cur = p;
                }
                if path.last().map(String::as_str) != Some(owner) {
                    path.push(owner.to_string());
                }
                return Some(path);
            }
            let Some(entity) = self.entity_or_base(node) else {
                continue;
            };
            for t in entity.targets() {
                if !parent.contains_key(t.as_str()) {
                    parent.insert(t, node);
                    stack.push(t);
                }
            }
        }
        None
    }

    /// Descriptions of the aliases, lists and catch-alls that send mail to `address`, sorted;
    /// empty when nothing does.
    pub(crate) fn referrers(&self, address: &str) -> Vec<String> {
        let hits = |t: &String| {
            t == address
                || (self.entity(t).is_none() && base_address(t).as_deref() == Some(address))
        };
        let mut found: Vec<String> = self
            .aliases
            .values()
            .filter(|a| a.targets.iter().any(hits))
            .map(|a| format!("alias {}", a.address))
            .chain(
                self.lists
                    .values()
                    .filter(|l| l.members.iter().any(hits))
                    .map(|l| format!("list {}", l.address)),
            )
            .chain(
                self.domains
                    .values()
                    .filter(|s| s.entry.catch_all.as_ref().is_some_and(hits))
                    .map(|s| format!("catch-all of {}", s.entry.name)),
            )
            .collect();
        found.sort();
        if found.len() > MAX_REFERRERS_SHOWN {
            let more = found.len() - MAX_REFERRERS_SHOWN;
            found.truncate(MAX_REFERRERS_SHOWN);
            found.push(format!("{more} more"));
        }
        found
    }
}

/// `base@domain` for a normalised `base+tag@domain`; `None` without a usable separator.
fn base_address(address: &str) -> Option<String> {
    let (local, domain) = address.rsplit_once('@')?;
    let (base, _) = local.split_once(SUBADDRESS_SEPARATOR)?;
    if base.is_empty() || base.ends_with('.') {
        return None;
    }
    Some(format!("{base}@{domain}"))
}

/// Whether mail to `target` would land on `owner` by exact match or through its base address
/// (ignoring what else the directory holds).
fn points_to(target: &str, owner: &str) -> bool {
    target == owner || base_address(target).as_deref() == Some(owner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{Command, User};

    const HASH: &str = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";

    fn dir_with(commands: Vec<Command>) -> Directory {
        let mut dir = Directory::new();
        for cmd in commands {
            dir.apply(&cmd)
                .unwrap_or_else(|e| panic!("{cmd:?} refused: {e}"));
        }
        dir
    }

    fn alias(address: &str, targets: &[&str]) -> Command {
        Command::AddAlias {
            address: address.to_string(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn list(address: &str, members: &[&str]) -> Command {
        Command::AddList {
            address: address.to_string(),
            members: members.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn user(address: &str, enabled: bool) -> Command {
        let mut u = User::new(address, HASH);
        u.enabled = enabled;
        Command::AddUser(u)
    }

    fn names(addrs: &[Address]) -> Vec<&str> {
        addrs.iter().map(Address::as_str).collect()
    }

    fn fixture() -> Directory {
        dir_with(vec![
            Command::AddDomain {
                name: "example.org".into(),
            },
            Command::AddDomain {
                name: "catch.org".into(),
            },
            user("alice@example.org", true),
            user("bob@example.org", true),
            user("carl@example.org", false),
            user("postmaster@catch.org", true),
            list(
                "team@example.org",
                &["alice@example.org", "bob@example.org", "carl@example.org"],
            ),
            list("empty@example.org", &[]),
            alias(
                "all@example.org",
                &[
                    "team@example.org",
                    "alice@example.org",
                    "ext@far.net",
                    "EXT@far.net",
                ],
            ),
            alias("off@example.org", &["carl@example.org"]),
            alias(
                "both@example.org",
                &["bob+x@example.org", "bob@example.org"],
            ),
            Command::SetCatchAll {
                domain: "catch.org".into(),
                target: Some("all@example.org".into()),
            },
        ])
    }

    #[test]
    fn users_aliases_and_lists() {
        let dir = fixture();
        let r = dir.resolve("Alice@Example.org").unwrap();
        assert_eq!(names(&r.mailboxes), ["alice@example.org"]);
        assert!(r.forwards.is_empty() && r.skipped.is_empty() && r.detail.is_none());

        let r = dir.resolve("all@example.org").unwrap();
        assert_eq!(
            names(&r.mailboxes),
            ["alice@example.org", "bob@example.org"]
        );
        assert_eq!(names(&r.forwards), ["ext@far.net"]);
        assert_eq!(
            r.skipped,
            [ResolveError::Disabled {
                address: "carl@example.org".into()
            }]
        );

        let r = dir.resolve("both@example.org").unwrap();
        assert_eq!(names(&r.mailboxes), ["bob@example.org"]);
    }

    #[test]
    fn refusals() {
        let dir = fixture();
        let cases = [
            (
                "carl@example.org",
                ResolveError::Disabled {
                    address: "carl@example.org".into(),
                },
            ),
            (
                "off@example.org",
                ResolveError::Disabled {
                    address: "carl@example.org".into(),
                },
            ),
            (
                "ghost@example.org",
                ResolveError::UnknownUser {
                    address: "ghost@example.org".into(),
                },
            ),
            (
                "ghost+x@example.org",
                ResolveError::UnknownUser {
                    address: "ghost+x@example.org".into(),
                },
            ),
            (
                "someone@far.net",
                ResolveError::NotLocal {
                    domain: "far.net".into(),
                },
            ),
            (
                "empty@example.org",
                ResolveError::NoRecipients {
                    address: "empty@example.org".into(),
                },
            ),
            (
                "not an address",
                ResolveError::InvalidAddress {
                    address: "not an address".into(),
                    reason: AddressError::BadChar(' '),
                },
            ),
        ];
        for (addr, want) in cases {
            assert_eq!(dir.resolve(addr), Err(want), "{addr}");
        }
    }

    #[test]
    fn subaddress_and_catch_all() {
        let dir = fixture();
        let r = dir.resolve("bob+Lists@example.org").unwrap();
        assert_eq!(names(&r.mailboxes), ["bob@example.org"]);
        assert_eq!(r.detail.as_deref(), Some("lists"));
        let r = dir.resolve("team+x@example.org").unwrap();
        assert_eq!(
            names(&r.mailboxes),
            ["alice@example.org", "bob@example.org"]
        );

        // Exact and subaddress matches win over the catch-all.
        let r = dir.resolve("postmaster@catch.org").unwrap();
        assert_eq!(names(&r.mailboxes), ["postmaster@catch.org"]);
        let r = dir.resolve("postmaster+x@catch.org").unwrap();
        assert_eq!(names(&r.mailboxes), ["postmaster@catch.org"]);
        let r = dir.resolve("anything@catch.org").unwrap();
        assert_eq!(
            names(&r.mailboxes),
            ["alice@example.org", "bob@example.org"]
        );
        assert_eq!(names(&r.forwards), ["ext@far.net"]);
    }

    #[test]
    fn depth_limit() {
        // a0 -> a1 -> ... -> a11 -> u: u is 12 hops from a0.
        let mut commands = vec![
            Command::AddDomain {
                name: "d.org".into(),
            },
            user("u@d.org", true),
        ];
        commands.push(alias("a11@d.org", &["u@d.org"]));
        for i in (0..11).rev() {
            commands.push(alias(
                &format!("a{i}@d.org"),
                &[&format!("a{}@d.org", i + 1)],
            ));
        }
        let dir = dir_with(commands);
        assert!(dir.resolve("a2@d.org").is_ok(), "10 hops are allowed");
        assert_eq!(
            dir.resolve("a1@d.org"),
            Err(ResolveError::TooDeep {
                address: "u@d.org".into()
            })
        );
        assert_eq!(
            dir.resolve("a0@d.org"),
            Err(ResolveError::TooDeep {
                address: "a11@d.org".into()
            })
        );
    }

    #[test]
    fn a_loop_in_stored_records_still_terminates() {
        // Written around `apply`, which would refuse it, as a damaged or older store might be.
        let records = vec![
            ("d/d.org".to_string(), br#"{"name":"d.org"}"#.to_vec()),
            (
                "u/u@d.org".to_string(),
                br#"{"address":"u@d.org","password_hash":"!"}"#.to_vec(),
            ),
            (
                "a/a@d.org".to_string(),
                br#"{"address":"a@d.org","targets":["b@d.org"]}"#.to_vec(),
            ),
            (
                "a/b@d.org".to_string(),
                br#"{"address":"b@d.org","targets":["a@d.org","u@d.org"]}"#.to_vec(),
            ),
        ];
        let dir = Directory::from_records(records.into_iter()).unwrap();
        let r = dir.resolve("a@d.org").unwrap();
        assert_eq!(names(&r.mailboxes), ["u@d.org"]);
    }

    #[test]
    fn dangling_targets_after_a_domain_becomes_local_are_skipped() {
        let mut dir = dir_with(vec![
            Command::AddDomain {
                name: "d.org".into(),
            },
            user("u@d.org", true),
            alias("a@d.org", &["u@d.org", "x@later.org"]),
        ]);
        dir.apply(&Command::AddDomain {
            name: "later.org".into(),
        })
        .unwrap();
        let r = dir.resolve("a@d.org").unwrap();
        assert_eq!(names(&r.mailboxes), ["u@d.org"]);
        assert_eq!(
            r.skipped,
            [ResolveError::UnknownUser {
                address: "x@later.org".into()
            }]
        );
    }
}
