//! Mailnode: a highly available mail appliance.
//!
//! Code map (see ARCHITECTURE.md for the bird's-eye view):
//!
//! - [`config`]: the node's TOML configuration, parsed and validated before any port is bound.
//! - [`tls`]: the cluster PKI (CA, node certificates) and rustls configurations.
//! - [`net`]: the shared listener layer every protocol plugs into (TLS, limits, idle timeouts,
//!   per-session spans, graceful drain).
//! - [`directory`]: the replicated directory — domains, users, aliases, lists, recipient
//!   resolution, password hashing. Pure data and logic, no I/O.
//! - [`cluster`]: the Raft control plane (openraft over mutual TLS; log, vote and state machine
//!   in sled). The only module that imports openraft.
//! - [`admin`]: the admin HTTP API that `mailctl` talks to.
//! - [`auth`]: login through the directory, with transparent rehash of legacy hashes.
//! - [`imap`]: the IMAP4rev1 server of the mailstore (sans-I/O parser, sessions, IDLE and
//!   multi-session updates from the store's change events); reads and writes mailboxes only
//!   through `store`.
//! - [`queue`]: the durable mail queue on local disk, its scheduler, and LMTP/SMTP delivery.
//! - [`store`]: the message store on the mailstore volume — mailboxes, messages as files,
//!   durable append-only indexes, quota, change notifications, crash recovery and `check`.
//! - [`mail`]: glue between SMTP, the queue and the store (alias expansion, routing, LMTP
//!   delivery into the store).
//! - [`metrics`]: the Prometheus registry and catalogue behind `/metrics`, and the mail log
//!   (one stable line per SMTP transaction and per delivery).
//! - [`node`]: assembles a running node from a configuration.
//! - [`ctl`]: the `mailctl` operator CLI (a client of the admin API).
//! - [`smtp`]: SMTP (MX, submission) and LMTP servers; hand mail to the queue or the store
//!   through traits, never writing either themselves.
//! - [`sieve`]: the Sieve filter language (RFC 5228 and extensions): a sans-I/O compiler with
//!   line:column errors and an interpreter that turns a message into delivery actions.
//! - [`managesieve`]: ManageSieve (RFC 5804) on the mailstore: users' Sieve scripts, compiled
//!   at upload and kept in the replicated directory.
//! - [`pop3`]: POP3 (STLS, POP3S, CAPA, UIDL, TOP, AUTH PLAIN) on the store's INBOX; one
//!   session per maildrop, DELE applied only at QUIT.
#![forbid(unsafe_code)]

pub mod admin;
pub mod antiube;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod ctl;
pub mod directory;
pub mod failover;
pub mod imap;
pub mod mail;
pub mod mailstore;
pub mod managesieve;
pub mod metrics;
pub mod net;
pub mod node;
pub mod pop3;
pub mod queue;
pub mod sieve;
pub mod smtp;
pub mod store;
pub mod tls;
