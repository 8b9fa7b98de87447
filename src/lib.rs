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
//! - [`node`]: assembles a running node from a configuration.
#![forbid(unsafe_code)]

pub mod directory;
pub mod net;
pub mod tls;
