//! The Raft type configuration and the values that travel through the log.
//!
//! Everything here is serialised into the replicated log or onto the wire between nodes, so
//! changing a type is a wire and on-disk format change.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::directory::{Command, Outcome};
use crate::failover::state::{LeaseCommand, LeaseOutcome};

/// A node's identity in the Raft membership: what peers and operators need to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Operator-facing name (also the name in the node's certificate).
    pub name: String,
    /// `host:port` of the node's Raft RPC listener (mutual TLS).
    pub raft_addr: String,
    /// `host:port` of the node's HTTPS admin API, so `mailctl` can be pointed at any member.
    pub api_addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (raft {}, api {})",
            self.name, self.raft_addr, self.api_addr
        )
    }
}

/// An entry of application data in the Raft log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// A change to the directory.
    Directory(Command),
    /// A change to the mailstore lease.
    Mailstore(LeaseCommand),
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Directory(cmd) => write!(f, "directory {}", cmd.name()),
            Request::Mailstore(cmd) => write!(f, "mailstore {cmd}"),
        }
    }
}

/// The result of applying one log entry, returned to the writer.
///
/// Validation failures are results, not storage errors: the entry is committed and applied on
/// every node identically, and it changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Applied (also the answer to blank and membership entries, as `Outcome::Done`).
    Applied(Outcome),
    /// The command was refused; the directory is unchanged.
    Refused(String),
    /// A mailstore lease command's result.
    Lease(LeaseOutcome),
}

openraft::declare_raft_types!(
    /// Mailnode's Raft types: node ids are u64, entries carry [`Request`]s.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<u64, NodeInfo>;
pub type SnapshotMeta = openraft::SnapshotMeta<u64, NodeInfo>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<u64>;
