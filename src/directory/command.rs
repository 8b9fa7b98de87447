//! The directory's write vocabulary: [`Command`]s (the Raft log entries), what applying one
//! returns ([`Applied`], [`Change`]), and why it can be refused ([`DirectoryError`]).
//!
//! These are serde data shared by every node and persisted in the Raft log, so a field may be
//! added (with `#[serde(default)]`) but never renamed. Commands carry raw, caller-supplied text:
//! validation happens in [`Directory::apply`](super::Directory::apply), never at
//! deserialisation, so a rule that becomes stricter cannot make an old log entry unreadable.
//! This module does no I/O.
//!
//! Security note: no command carries a plaintext password — only hashes, produced by
//! [`password::hash_password`](super::password::hash_password) on the node that received the
//! request — because the log is stored on every node's disk and shipped in snapshots.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::address::AddressError;
use super::model::{Alias, Kind, User};
use super::password::PasswordError;
use crate::antiube::policy::PolicyDoc;

/// One change to the directory, as replicated through the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Start receiving mail for a domain.
    AddDomain {
        /// Domain name.
        name: String,
    },
    /// Stop receiving mail for a domain; refused while it holds users, aliases or lists.
    RemoveDomain {
        /// Domain name.
        name: String,
    },
    /// Set or clear the address receiving mail for unknown local parts of `domain`.
    SetCatchAll {
        /// Domain name.
        domain: String,
        /// An existing local user, alias or list, or an external address; `None` clears.
        target: Option<String>,
    },
    /// Create a user; its domain must exist and its address must be free.
    AddUser(User),
    /// Delete a user; refused while an alias, list or catch-all still points to it.
    RemoveUser {
        /// The user's address.
        address: String,
    },
    /// Replace a user's password hash (an administrator's or the user's own change).
    SetPasswordHash {
        /// The user's address.
        address: String,
        /// The new hash; never a plaintext password.
        hash: String,
    },
    /// Replace a hash after a successful login, only if nobody changed it in between.
    /// When the stored hash differs from `old_hash` (or the user is gone) this is a no-op.
    RehashPassword {
        /// The user's address.
        address: String,
        /// The hash the login was verified against.
        old_hash: String,
        /// Its argon2id replacement.
        new_hash: String,
    },
    /// Change some of a user's attributes; `None` fields stay as they are.
    UpdateUser {
        /// The user's address.
        address: String,
        /// New display name.
        #[serde(default)]
        display_name: Option<String>,
        /// New quota in bytes (0 = unlimited).
        #[serde(default)]
        quota_bytes: Option<u64>,
        /// New mailstore group.
        #[serde(default)]
        mail_host: Option<String>,
        /// Enable or disable the account.
        #[serde(default)]
        enabled: Option<bool>,
        /// Preferences to set or overwrite.
        #[serde(default)]
        set_prefs: BTreeMap<String, String>,
        /// Preference keys to delete; a key may not be both set and removed.
        #[serde(default)]
        remove_prefs: Vec<String>,
    },
    /// Create an alias with at least one target.
    AddAlias {
        /// The alias address.
        address: String,
        /// Local or external addresses.
        targets: Vec<String>,
    },
    /// Delete an alias; refused while something still points to it.
    RemoveAlias {
        /// The alias address.
        address: String,
    },
    /// Create a list (it may start empty).
    AddList {
        /// The list address.
        address: String,
        /// Local or external addresses.
        #[serde(default)]
        members: Vec<String>,
    },
    /// Delete a list; refused while something still points to it.
    RemoveList {
        /// The list address.
        address: String,
    },
    /// Add members to a list; members already present are ignored.
    ListAddMembers {
        /// The list address.
        address: String,
        /// Addresses to add.
        members: Vec<String>,
    },
    /// Remove members from a list; addresses that are not members are ignored.
    ListRemoveMembers {
        /// The list address.
        address: String,
        /// Addresses to remove.
        members: Vec<String>,
    },
    /// Bulk import. Users are applied first, in order, then aliases (which may point to the
    /// users just imported). Each item succeeds or fails on its own; failures are reported in
    /// [`Outcome::Import`] and do not fail the command.
    ImportUsers {
        /// Users to create.
        users: Vec<User>,
        /// Aliases to create.
        #[serde(default)]
        aliases: Vec<Alias>,
        /// Create missing domains of imported users instead of refusing those users.
        #[serde(default)]
        create_domains: bool,
    },
    /// Store (create or replace) one of a user's Sieve scripts. The receiving node compiles
    /// the script before proposing this; `apply` checks only the name and the limits.
    PutSieveScript {
        /// The owner's address.
        user: String,
        /// The script's name (RFC 5804 rules).
        name: String,
        /// The script's source text.
        source: String,
        /// Also make it the active script.
        #[serde(default)]
        activate: bool,
    },
    /// Make one of a user's scripts the active one, or deactivate all (`None`).
    ActivateSieveScript {
        /// The owner's address.
        user: String,
        /// The script to run at delivery; `None` runs none.
        name: Option<String>,
    },
    /// Rename a script; the active script stays active under its new name.
    RenameSieveScript {
        /// The owner's address.
        user: String,
        /// Current name.
        from: String,
        /// New name; must be free.
        to: String,
    },
    /// Delete a script; refused for the active script (deactivate it first).
    DeleteSieveScript {
        /// The owner's address.
        user: String,
        /// The script's name.
        name: String,
    },
    /// Replace the cluster-wide anti-UBE policy document. The receiving node compiles it
    /// before proposing this; `apply` checks only names and limits (see `directory::policy`).
    SetPolicy {
        /// The whole document: settings and every map.
        doc: PolicyDoc,
        /// Compare-and-set: refused unless the stored version is this one (0: none stored).
        /// `None` replaces whatever is stored.
        #[serde(default)]
        expected_version: Option<u64>,
    },
}

/// One persisted record that a command created, replaced or deleted. The cluster writes
/// these to the state machine's store in the same transaction as the applied log index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// `d/<domain>`, `u/<address>`, `s/<address>` (Sieve scripts), `a/<address>`,
    /// `l/<address>`, or `p/settings` / `p/m/<map>` (the anti-UBE policy).
    pub key: String,
    /// The record as JSON, or `None` when it was deleted.
    pub value: Option<Vec<u8>>,
}

/// What a successful [`Directory::apply`](super::Directory::apply) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// What to tell the caller.
    pub outcome: Outcome,
    /// Records to persist, in the order they changed. Empty when nothing changed.
    pub changes: Vec<Change>,
}

impl Command {
    /// The command's name, for logs (never its content: it may carry password hashes).
    pub fn name(&self) -> &'static str {
        match self {
            Command::AddDomain { .. } => "AddDomain",
            Command::RemoveDomain { .. } => "RemoveDomain",
            Command::SetCatchAll { .. } => "SetCatchAll",
            Command::AddUser(_) => "AddUser",
            Command::RemoveUser { .. } => "RemoveUser",
            Command::SetPasswordHash { .. } => "SetPasswordHash",
            Command::RehashPassword { .. } => "RehashPassword",
            Command::UpdateUser { .. } => "UpdateUser",
            Command::AddAlias { .. } => "AddAlias",
            Command::RemoveAlias { .. } => "RemoveAlias",
            Command::AddList { .. } => "AddList",
            Command::RemoveList { .. } => "RemoveList",
            Command::ListAddMembers { .. } => "ListAddMembers",
            Command::ListRemoveMembers { .. } => "ListRemoveMembers",
            Command::ImportUsers { .. } => "ImportUsers",
            Command::PutSieveScript { .. } => "PutSieveScript",
            Command::ActivateSieveScript { .. } => "ActivateSieveScript",
            Command::RenameSieveScript { .. } => "RenameSieveScript",
            Command::DeleteSieveScript { .. } => "DeleteSieveScript",
            Command::SetPolicy { .. } => "SetPolicy",
        }
    }
}

/// The caller-facing result of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The command changed the directory.
    Done,
    /// The command was valid but had nothing to do (a stale rehash, members already present).
    Unchanged,
    /// Result of [`Command::ImportUsers`].
    Import {
        /// Users and aliases created.
        applied: usize,
        /// Domains created because `create_domains` was set.
        domains_created: Vec<String>,
        /// Items refused, in the order they were tried.
        errors: Vec<ItemError>,
    },
}

/// Which list of an import an [`ItemError`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemKind {
    /// `users[index]`.
    User,
    /// `aliases[index]`.
    Alias,
}

/// One refused item of a bulk import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemError {
    /// Whether `index` counts in `users` or in `aliases`.
    pub kind: ItemKind,
    /// Position in that list, from 0.
    pub index: usize,
    /// The item's address as given.
    pub address: String,
    /// Why it was refused.
    pub reason: DirectoryError,
}

/// Why a command was refused. When `apply` returns one of these, the directory is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DirectoryError {
    /// An address does not parse.
    #[error("invalid address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// The rule it breaks.
        reason: AddressError,
    },
    /// A domain name does not parse.
    #[error("invalid domain name {name:?}: {reason}")]
    InvalidDomain {
        /// The name as given.
        name: String,
        /// The rule it breaks.
        reason: AddressError,
    },
    /// The domain is not served by this cluster.
    #[error("domain {domain} is not served here: add it first with `mailctl domain add {domain}`")]
    UnknownDomain {
        /// The domain.
        domain: String,
    },
    /// `AddDomain` for a domain that exists.
    #[error("domain {name} already exists")]
    DomainExists {
        /// The domain.
        name: String,
    },
    /// `RemoveDomain` for a domain that still holds records.
    #[error("domain {name} still holds {users} user(s), {aliases} alias(es) and {lists} list(s): remove them first")]
    DomainInUse {
        /// The domain.
        name: String,
        /// Users left.
        users: usize,
        /// Aliases left.
        aliases: usize,
        /// Lists left.
        lists: usize,
    },
    /// The address already names a user, alias or list.
    #[error("{address} is already taken by an existing {kind}: choose another address or remove the {kind} first")]
    AddressTaken {
        /// The address.
        address: String,
        /// What it already is.
        kind: Kind,
    },
    /// No such user, alias or list.
    #[error("no {kind} {address}: check the address with `mailctl {kind} list`")]
    NotFound {
        /// The address.
        address: String,
        /// What was expected.
        kind: Kind,
    },
    /// A password hash that [`verify_password`](super::password::verify_password) cannot use.
    #[error("password hash for {address} refused: {reason}")]
    InvalidPasswordHash {
        /// The user.
        address: String,
        /// Why.
        reason: PasswordError,
    },
    /// A target or member in a local domain that names nothing.
    #[error("{owner}: {target} does not exist in its (local) domain: create it first or correct the address")]
    TargetMissing {
        /// The alias, list or domain (for a catch-all) being changed.
        owner: String,
        /// The missing address.
        target: String,
    },
    /// The change would let mail go round in circles.
    #[error("{owner}: this change would create a mail loop ({}): remove one of those references", path.join(" -> "))]
    Loop {
        /// The alias or list being changed.
        owner: String,
        /// The loop, starting and ending at `owner`.
        path: Vec<String>,
    },
    /// The address cannot be removed while other records point to it.
    #[error("{address} is still used by {}: remove those references first", referrers.join(", "))]
    InUse {
        /// The address.
        address: String,
        /// What points to it, e.g. `alias sales@example.org`, `catch-all of example.org`.
        referrers: Vec<String>,
    },
    /// An alias without targets.
    #[error("alias {address} needs at least one target (use a list for an empty group)")]
    NoTargets {
        /// The alias.
        address: String,
    },
    /// A user attribute out of bounds.
    #[error("invalid {field} for {address}: {reason}")]
    InvalidField {
        /// The record.
        address: String,
        /// The attribute, e.g. `display_name` or `prefs.signature`.
        field: String,
        /// Why.
        reason: String,
    },
    /// The user has no Sieve script of that name.
    #[error("{user} has no Sieve script named {name:?}: see `mailctl sieve list {user}`")]
    NoSieveScript {
        /// The owner.
        user: String,
        /// The name asked for.
        name: String,
    },
    /// A rename onto a name that is taken.
    #[error(
        "{user} already has a Sieve script named {name:?}: choose another name or delete it first"
    )]
    SieveScriptExists {
        /// The owner.
        user: String,
        /// The name asked for.
        name: String,
    },
    /// Deleting the active script.
    #[error(
        "Sieve script {name:?} is {user}'s active script: activate another one (or none) first"
    )]
    SieveScriptActive {
        /// The owner.
        user: String,
        /// The script.
        name: String,
    },
    /// A script or the number of scripts over the limits.
    #[error("Sieve scripts of {user}: {reason}")]
    SieveLimit {
        /// The owner.
        user: String,
        /// Which limit.
        reason: String,
    },
    /// `SetPolicy` whose `expected_version` is not the stored one: someone else changed the
    /// policy since the caller read it.
    #[error("the anti-UBE policy changed since it was read (version {expected} was read, {current} is stored): run `mailctl policy show` and make the change again")]
    PolicyConflict {
        /// The version the caller read.
        expected: u64,
        /// The version stored.
        current: u64,
    },
    /// A policy document over a limit or with a bad map name.
    #[error("anti-UBE policy refused: {reason}")]
    PolicyLimit {
        /// Which limit, and what to do.
        reason: String,
    },
    /// A persisted record that cannot be loaded: the state machine's store is damaged.
    #[error("directory record {key} is damaged ({reason}): restore the node from a snapshot or re-join it to the cluster")]
    BadRecord {
        /// The record's key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}
