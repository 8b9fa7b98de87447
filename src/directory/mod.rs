//! The replicated directory: domains, users, aliases, lists and preferences; recipient
//! resolution; password hashing; and the parsers for bulk imports.
//!
//! [`Directory`] is the state of the Raft state machine's directory part: the cluster module
//! feeds committed [`Command`]s to [`Directory::apply`], persists the returned [`Change`]s, and
//! snapshots through [`Directory::records`] / [`Directory::from_records`]. Every node reads its
//! own copy (SMTP routing through [`Directory::resolve`], logins through
//! [`password::verify_password`]).
//!
//! This module is pure data and logic: it must never do I/O, spawn tasks, read clocks, or
//! import openraft or sled, so that `apply` is deterministic on every node and everything here
//! can be table-tested.
//!
//! Security note: plaintext passwords exist only transiently on the node that received them
//! ([`password::hash_password`], [`import::ImportPassword`]); commands, records and snapshots
//! carry hashes only. Every command is validated as hostile input, and a refused command
//! changes nothing.
//!
//! Code map: [`address`] (parsing and normalising addresses), `model` (the records), `sieve`
//! (users' Sieve scripts), `policy` (the cluster-wide anti-UBE policy document),
//! `command` (commands, results, errors), `state` (maps, read API, persistence records),
//! `apply` (the transition function), `resolve` (recipient resolution and graph checks),
//! [`password`], [`import`] (CSV and LDIF).

pub mod address;
mod apply;
mod command;
pub mod import;
mod model;
pub mod password;
mod policy;
mod resolve;
mod sieve;
mod state;

pub use address::{Address, AddressError};
pub use command::{Applied, Change, Command, DirectoryError, ItemError, ItemKind, Outcome};
pub use model::{
    Alias, Counts, DomainEntry, Kind, List, User, DEFAULT_MAIL_HOST, MAX_DISPLAY_NAME,
    MAX_PREF_KEY, MAX_PREF_VALUE,
};
pub use policy::{check_policy_doc, StoredPolicy, MAX_POLICY_BYTES, MAX_POLICY_SETTINGS_BYTES};
pub use resolve::{Resolution, ResolveError, MAX_DEPTH};
pub use sieve::{
    check_sieve_name, SieveScripts, MAX_SIEVE_NAME, MAX_SIEVE_SCRIPTS, MAX_SIEVE_SCRIPT_BYTES,
};
pub use state::Directory;
