//! The Raft control plane: the replicated log that carries the directory (and, later, the
//! mailstore lease and cluster policy), run by openraft over mutual TLS.
//!
//! This is the only module that imports openraft. Everything else sees a [`Cluster`] handle:
//! linearizable writes from any node (forwarded to the leader over the Raft RPC channel), local
//! reads of the in-memory directory, a linearizable read barrier, and membership changes.
//! Security: peers are authenticated by certificates from the cluster CA; a forwarded write is
//! trusted because only members can open the channel. The admin API authenticates operators
//! before it ever calls in here.

mod rpc;
mod store;
mod types;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;

pub use rpc::Dialer;
use rpc::{Forward, ForwardError, ForwardReply, PeerClient, RpcRequest, RpcResponse};
pub use store::SharedDirectory;
use store::{LogStore, SharedMailstore, SharedPolicyVersion, StateMachine};
use types::Raft;
pub use types::{NodeInfo, Request, Response};

use crate::directory::Command;
use crate::failover::state::{LeaseCommand, LeaseOutcome, MailstoreState};

/// How long the leader waits for a node it is about to add to say who it is.
const IDENTIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the leader waits for a new node to catch up before making it a voter.
const ADD_NODE_CATCH_UP: Duration = Duration::from_secs(60);

/// Timings and retention of the control plane (from the `[cluster]` config section).
#[derive(Debug, Clone)]
pub struct RaftSettings {
    pub heartbeat: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot (for followers slightly behind).
    pub keep_after_snapshot: u64,
    /// How long a write may wait for a leader before failing.
    pub write_timeout: Duration,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            heartbeat: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(400),
            election_timeout_max: Duration::from_millis(800),
            snapshot_every: 10_000,
            keep_after_snapshot: 1_000,
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// Errors seen by callers of the control plane. Messages say what the operator can do.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no Raft leader reachable within {0:?}: is a majority of the nodes up and connected? run `mailctl status` on each node")]
    NoLeader(Duration),
    #[error("{0}")]
    Refused(String),
    #[error("the cluster is already initialized")]
    AlreadyInitialized,
    #[error("this node is not part of an initialized cluster yet: run `mailctl cluster bootstrap` on the first node, or `mailctl node add` from a member")]
    NotInitialized,
    /// Another member of the cluster is known under this node's id.
    #[error("{0}")]
    DuplicateId(String),
    #[error("cannot open the Raft store at {path}: {reason}")]
    Store { path: String, reason: String },
    #[error("control plane error: {0}")]
    Raft(String),
    /// The change reached (or may have reached) a leader that lost its majority or its
    /// leadership before answering: it may or may not have been applied. Retrying blindly may
    /// apply it twice, so the caller checks first.
    #[error("{0}; the change may or may not have been applied: check with a read, then retry")]
    OutcomeUnknown(String),
}

/// Where a node stands, for `mailctl status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub id: u64,
    pub name: String,
    pub state: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
    pub committed: Option<u64>,
    pub applied: Option<u64>,
    pub snapshot: Option<u64>,
    pub purged: Option<u64>,
    pub initialized: bool,
    pub nodes: Vec<MemberStatus>,
}

/// This node's Raft role and, on the leader, how far each follower has replicated.
#[derive(Debug, Clone, Default)]
pub struct RaftView {
    pub is_leader: bool,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub voters: Vec<u64>,
    /// On the leader: the highest index each node is known to hold.
    pub matched: BTreeMap<u64, Option<u64>>,
}

/// Plain numbers for `/metrics` and `/readyz`, from this node's local Raft metrics (no RPC).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftFigures {
    /// "leader", "follower", "candidate", "learner" or "shutdown".
    pub state: &'static str,
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// This node is in the membership (voter or learner) of an initialized cluster.
    pub member: bool,
    pub voters: usize,
    pub last_log_index: Option<u64>,
    pub committed: Option<u64>,
    pub applied: Option<u64>,
    pub snapshot: Option<u64>,
    /// On the leader, per other member: (id, highest index it holds, entries behind the
    /// leader's last log index). Empty elsewhere.
    pub replication: Vec<(u64, Option<u64>, Option<u64>)>,
}

/// One member as seen from the leader (replication) or locally (membership only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: u64,
    pub name: String,
    pub raft_addr: String,
    pub api_addr: String,
    pub voter: bool,
    /// Highest log index the leader knows this node holds (None: unknown or not replicating).
    pub matched: Option<u64>,
    /// Entries this node is behind the leader's last log index.
    pub lag: Option<u64>,
}

struct Inner {
    id: u64,
    info: NodeInfo,
    raft: Raft,
    directory: SharedDirectory,
    mailstore: SharedMailstore,
    /// The applied anti-UBE policy version, for [`Cluster::policy_version`].
    policy_version: SharedPolicyVersion,
    dialer: Dialer,
    settings: RaftSettings,
    log: LogStore,
    /// Connections used to forward requests to the leader, per leader id.
    forwarders: Mutex<HashMap<u64, Forwarder>>,
}

/// A connection to forward requests to one leader, with the address it was opened for (kept
/// outside the connection's lock, which a request in flight holds).
type Forwarder = (String, Arc<Mutex<PeerClient>>);

/// A handle to this node's control plane. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl Cluster {
    /// Opens the store under `dir` and starts Raft. Does not bind anything: the caller serves
    /// the RPC listener with [`Cluster::serve_rpc_conn`].
    pub async fn start(
        id: u64,
        info: NodeInfo,
        dir: &Path,
        settings: RaftSettings,
        tls: Arc<rustls::ClientConfig>,
        source_ip: Option<IpAddr>,
    ) -> Result<Cluster, ClusterError> {
        let store_err = |reason: String| ClusterError::Store {
            path: dir.display().to_string(),
            reason,
        };
        let db = store::open_db(dir).map_err(|e| store_err(e.to_string()))?;
        let log = LogStore::new(&db).map_err(|e| store_err(e.to_string()))?;
        let sm = StateMachine::open(&db).map_err(|e| store_err(e.to_string()))?;
        let directory = sm.directory();
        let mailstore = sm.mailstore();
        let policy_version = sm.policy_version();
        let config = openraft::Config {
            cluster_name: "mailnode".into(),
            heartbeat_interval: settings.heartbeat.as_millis() as u64,
            election_timeout_min: settings.election_timeout_min.as_millis() as u64,
            election_timeout_max: settings.election_timeout_max.as_millis() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(settings.snapshot_every),
            max_in_snapshot_log_to_keep: settings.keep_after_snapshot,
            ..Default::default()
        };
        let config = Arc::new(
            config
                .validate()
                .map_err(|e| ClusterError::Raft(e.to_string()))?,
        );
        let dialer = Dialer {
            tls,
            source_ip,
            connect_timeout: Duration::from_secs(2),
        };
        let network = rpc::Network {
            dialer: dialer.clone(),
        };
        let raft = Raft::new(id, config, network, log.clone(), sm)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        // Two nodes answering to one id would each take the other's votes and log positions:
        // refuse to run as a member this node is not (its name is the one in its certificate).
        let known = raft
            .with_raft_state(move |st| {
                st.membership_state
                    .effective()
                    .membership()
                    .get_node(&id)
                    .cloned()
            })
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        if let Some(known) = known.filter(|k| k.name != info.name) {
            let _ = raft.shutdown().await;
            return Err(ClusterError::DuplicateId(format!(
                "node id {id} belongs to {known} in this cluster's membership, but this node is named {:?}: set `[node] id` to this node's own id (see `mailctl node list`), or, if it replaces {}, run `mailctl node remove {id}` and wipe {}",
                info.name,
                known.name,
                dir.display()
            )));
        }
        Ok(Cluster {
            inner: Arc::new(Inner {
                id,
                info,
                raft,
                directory,
                mailstore,
                policy_version,
                dialer,
                settings,
                log,
                forwarders: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The local copy of the directory. Reads may lag the leader by about one heartbeat; call
    /// [`Cluster::linearizable`] first when that matters.
    pub fn directory(&self) -> &SharedDirectory {
        &self.inner.directory
    }

    /// Read access to the local directory (see [`Cluster::directory`]). Poisoning is ignored:
    /// `Directory::apply` validates everything before it changes anything.
    pub fn read_directory(&self) -> std::sync::RwLockReadGuard<'_, crate::directory::Directory> {
        self.inner
            .directory
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub async fn is_initialized(&self) -> bool {
        self.inner.raft.is_initialized().await.unwrap_or(false)
    }

    /// Whether this node is a member of an initialized cluster and knows a leader (for
    /// `/readyz`; local state only, no RPC).
    pub fn has_leader(&self) -> bool {
        let m = self.inner.raft.metrics().borrow().clone();
        m.current_leader.is_some()
            && m.membership_config
                .membership()
                .voter_ids()
                .next()
                .is_some()
    }

    /// Figures for `/metrics` and `/readyz` (local state only, no RPC).
    pub fn figures(&self) -> RaftFigures {
        let m = self.inner.raft.metrics().borrow().clone();
        let me = self.inner.id;
        let is_leader = m.state == ServerState::Leader;
        let last = m.last_log_index;
        let replication = match (&m.replication, is_leader) {
            (Some(r), true) => r
                .iter()
                .filter(|(id, _)| **id != me)
                .map(|(id, l)| {
                    let matched = l.map(|l| l.index);
                    let lag = last.map(|last| last.saturating_sub(matched.unwrap_or(0)));
                    (*id, matched, lag)
                })
                .collect(),
            _ => Vec::new(),
        };
        let membership = m.membership_config.membership();
        let member = membership.nodes().any(|(id, _)| *id == me);
        let voters = membership.voter_ids().count();
        RaftFigures {
            state: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            },
            term: m.current_term,
            leader: m.current_leader,
            member,
            voters,
            last_log_index: last,
            committed: self.inner.log.committed_index(),
            applied: m.last_applied.map(|l| l.index),
            snapshot: m.snapshot.map(|l| l.index),
            replication,
        }
    }

    /// Makes this node the first member of a new cluster.
    pub async fn bootstrap(&self) -> Result<(), ClusterError> {
        if self.is_initialized().await {
            return Err(ClusterError::AlreadyInitialized);
        }
        let members = BTreeMap::from([(self.inner.id, self.inner.info.clone())]);
        match self.inner.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {
                Err(ClusterError::AlreadyInitialized)
            }
            Err(e) => Err(ClusterError::Raft(e.to_string())),
        }
    }

    /// Applies a directory command through the Raft log (on the leader, wherever it is).
    /// [`ClusterError::OutcomeUnknown`] when the leader lost its majority or its leadership
    /// with the command in hand: read before retrying, most commands are not idempotent.
    pub async fn write(&self, cmd: Command) -> Result<Response, ClusterError> {
        match self
            .on_leader(Forward::Write(Request::Directory(cmd)))
            .await?
        {
            ForwardReply::Written(Response::Refused(reason)) => Err(ClusterError::Refused(reason)),
            ForwardReply::Written(r) => Ok(r),
            other => Err(ClusterError::Raft(format!("unexpected reply {other:?}"))),
        }
    }

    /// Applies a mailstore lease command through the Raft log. `Stale` is an answer, not an
    /// error: the compare-and-set lost. Errors (including [`ClusterError::OutcomeUnknown`])
    /// leave the local state machine as the judge: the failover loops retry from what it holds.
    pub async fn lease(&self, cmd: LeaseCommand) -> Result<LeaseOutcome, ClusterError> {
        match self
            .on_leader(Forward::Write(Request::Mailstore(cmd)))
            .await?
        {
            ForwardReply::Written(Response::Lease(outcome)) => Ok(outcome),
            other => Err(ClusterError::Raft(format!("unexpected reply {other:?}"))),
        }
    }

    /// The local copy of the mailstore lease state; `changed()` wakes on every applied change.
    pub fn mailstore(&self) -> tokio::sync::watch::Receiver<MailstoreState> {
        self.inner.mailstore.subscribe()
    }

    /// The version of the anti-UBE policy this node has applied (0: none stored);
    /// `changed()` wakes when an applied entry or an installed snapshot changes it. The
    /// document itself is read from [`Cluster::read_directory`].
    pub fn policy_version(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.policy_version.subscribe()
    }

    /// What the failover task needs of Raft, from local metrics (no RPC).
    pub fn raft_view(&self) -> RaftView {
        let m = self.inner.raft.metrics().borrow().clone();
        let matched = m
            .replication
            .as_ref()
            .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect())
            .unwrap_or_default();
        RaftView {
            is_leader: m.state == ServerState::Leader && m.current_leader == Some(self.inner.id),
            term: m.current_term,
            last_log_index: m.last_log_index,
            voters: m.membership_config.membership().voter_ids().collect(),
            matched,
        }
    }

    /// Waits until this node has applied everything the leader had committed when called, so
    /// that a following local read is linearizable.
    pub async fn linearizable(&self) -> Result<(), ClusterError> {
        let index = match self.on_leader(Forward::ReadIndex).await? {
            ForwardReply::ReadIndex(i) => i,
            other => return Err(ClusterError::Raft(format!("unexpected reply {other:?}"))),
        };
        self.inner
            .raft
            .wait(Some(self.inner.settings.write_timeout))
            .applied_index_at_least(index, "linearizable read")
            .await
            .map(|_| ())
            .map_err(|_| ClusterError::NoLeader(self.inner.settings.write_timeout))
    }

    /// Adds a node: as a learner first (it catches up from the log or a snapshot), then as a voter.
    pub async fn add_node(&self, id: u64, node: NodeInfo) -> Result<(), ClusterError> {
        self.on_leader(Forward::AddNode { id, node })
            .await
            .map(|_| ())
    }

    /// Removes a node from the membership.
    pub async fn remove_node(&self, id: u64) -> Result<(), ClusterError> {
        self.on_leader(Forward::RemoveNode { id }).await.map(|_| ())
    }

    /// This node's view, completed with the leader's replication progress when reachable.
    pub async fn status(&self) -> Status {
        let m = self.inner.raft.metrics().borrow().clone();
        let committed = self.inner.log.committed_index();
        let progress: HashMap<u64, Option<u64>> = match self.on_leader_once(Forward::Progress).await
        {
            Ok(ForwardReply::Progress(p)) => p.into_iter().collect(),
            _ => HashMap::new(),
        };
        let leader_last = if m.state == ServerState::Leader {
            m.last_log_index
        } else {
            None
        };
        let leader_last = leader_last.or_else(|| progress.values().flatten().max().copied());
        let nodes = store::members(&m.membership_config)
            .into_iter()
            .map(|(id, n, voter)| {
                let matched = progress.get(&id).copied().flatten();
                MemberStatus {
                    id,
                    name: n.name,
                    raft_addr: n.raft_addr,
                    api_addr: n.api_addr,
                    voter,
                    matched,
                    lag: match (leader_last, matched) {
                        (Some(l), Some(m)) => Some(l.saturating_sub(m)),
                        _ => None,
                    },
                }
            })
            .collect();
        Status {
            id: self.inner.id,
            name: self.inner.info.name.clone(),
            state: format!("{:?}", m.state),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            committed,
            applied: m.last_applied.map(|l| l.index),
            snapshot: m.snapshot.map(|l| l.index),
            purged: m.purged.map(|l| l.index),
            initialized: m
                .membership_config
                .membership()
                .voter_ids()
                .next()
                .is_some(),
            nodes,
        }
    }

    /// Serves one Raft RPC connection (already authenticated by mutual TLS) until it closes.
    pub async fn serve_rpc_conn<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
    ) -> std::io::Result<()> {
        while let Some(req) = rpc::read_frame::<_, RpcRequest>(&mut stream).await? {
            let resp = self.handle_rpc(req).await;
            rpc::write_frame(&mut stream, &resp).await?;
        }
        Ok(())
    }

    /// Stops Raft (used at shutdown after the listeners drained).
    pub async fn shutdown(&self) {
        let _ = self.inner.raft.shutdown().await;
    }

    async fn handle_rpc(&self, req: RpcRequest) -> RpcResponse {
        let raft = &self.inner.raft;
        match req {
            RpcRequest::AppendEntries(r) => {
                RpcResponse::AppendEntries(raft.append_entries(r).await)
            }
            RpcRequest::Vote(r) => RpcResponse::Vote(raft.vote(r).await),
            RpcRequest::InstallSnapshot(r) => {
                RpcResponse::InstallSnapshot(raft.install_snapshot(r).await)
            }
            RpcRequest::Forward(f) => RpcResponse::Forward(self.execute_as_leader(f).await),
            RpcRequest::Identify => RpcResponse::Identity {
                id: self.inner.id,
                name: self.inner.info.name.clone(),
            },
        }
    }

    /// Runs a request on this node, which must be the leader.
    async fn execute_as_leader(&self, f: Forward) -> Result<ForwardReply, ForwardError> {
        let raft = &self.inner.raft;
        let not_leader =
            |e: &ClientWriteError<u64, NodeInfo>| matches!(e, ClientWriteError::ForwardToLeader(_));
        match f {
            Forward::Write(req) => {
                let timeout = self.inner.settings.write_timeout;
                match tokio::time::timeout(timeout, raft.client_write(req)).await {
                    Ok(Ok(r)) => Ok(ForwardReply::Written(r.data)),
                    Ok(Err(RaftError::APIError(e))) if not_leader(&e) => Err(ForwardError::NotLeader(self.inner.id)),
                    Ok(Err(e)) => Err(ForwardError::Failed(e.to_string())),
                    Err(_) => Err(ForwardError::Unknown(format!(
                        "the leader (node {}) did not commit the change within {timeout:?}: it cannot reach a majority of the nodes (`mailctl status`)",
                        self.inner.id
                    ))),
                }
            }
            Forward::ReadIndex => match raft.ensure_linearizable().await {
                Ok(log_id) => Ok(ForwardReply::ReadIndex(log_id.map(|l| l.index))),
                Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(
                    _,
                ))) => Err(ForwardError::NotLeader(self.inner.id)),
                Err(e) => Err(ForwardError::Failed(e.to_string())),
            },
            Forward::Progress => {
                let m = raft.metrics().borrow().clone();
                match m.replication {
                    Some(r) if m.state == ServerState::Leader => Ok(ForwardReply::Progress(
                        r.into_iter()
                            .map(|(id, l)| (id, l.map(|l| l.index)))
                            .collect(),
                    )),
                    _ => Err(ForwardError::NotLeader(self.inner.id)),
                }
            }
            Forward::AddNode { id, node } => self.add_node_as_leader(id, node).await,
            Forward::RemoveNode { id } => self.remove_node_as_leader(id).await,
        }
    }

    async fn add_node_as_leader(
        &self,
        id: u64,
        node: NodeInfo,
    ) -> Result<ForwardReply, ForwardError> {
        let raft = &self.inner.raft;
        let m = raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return Err(ForwardError::NotLeader(self.inner.id));
        }
        let membership = m.membership_config.membership();
        for (other, info) in membership.nodes() {
            if *other == id && info != &node {
                return Err(ForwardError::Failed(format!(
                    "node id {id} is already used by {info}: remove it first with `mailctl node remove {id}`"
                )));
            }
            if *other != id && (info.name == node.name || info.raft_addr == node.raft_addr) {
                return Err(ForwardError::Failed(format!(
                    "node {} ({}) already uses that name or Raft address",
                    other, info.name
                )));
            }
        }
        if membership.voter_ids().any(|v| v == id) {
            return Ok(ForwardReply::Done);
        }
        // Fail fast, with the reason, when the new node cannot be reached, presents a
        // certificate this cluster does not trust, or is configured with another id or name,
        // rather than waiting for catch-up to time out (or running two nodes under one id).
        let mut peer = PeerClient::new(id, node.raft_addr.clone(), self.inner.dialer.clone());
        let unreachable = |e: &dyn std::fmt::Display| {
            ForwardError::Failed(format!(
                "cannot reach node {id} at {}: {e}. Is it running, and is its certificate issued by this cluster's CA (`mailctl cluster issue`)?",
                node.raft_addr
            ))
        };
        match peer.call(&RpcRequest::Identify, IDENTIFY_TIMEOUT).await {
            Ok(RpcResponse::Identity { id: theirs, name }) => {
                if theirs != id || name != node.name {
                    return Err(ForwardError::Failed(format!(
                        "the node at {} is configured as node {theirs} named {name:?}, not node {id} named {:?}: add it with its own id and name, or fix `[node] id` / `name` in its config and restart it",
                        node.raft_addr, node.name
                    )));
                }
            }
            Ok(_) => return Err(unreachable(&"unexpected answer to identify")),
            Err(e) => return Err(unreachable(&e)),
        }
        let map_err = |e: RaftError<u64, ClientWriteError<u64, NodeInfo>>| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                ForwardError::NotLeader(self.inner.id)
            }
            e => ForwardError::Failed(e.to_string()),
        };
        // Blocking: returns once the learner has caught up, so promoting it cannot stall commits.
        let added = tokio::time::timeout(ADD_NODE_CATCH_UP, raft.add_learner(id, node.clone(), true))
            .await
            .map_err(|_| {
                ForwardError::Failed(format!(
                    "node {} did not catch up within {ADD_NODE_CATCH_UP:?}: is it running and does its certificate come from this cluster's CA? It stays a learner; run `mailctl node add` again once it is reachable",
                    node.raft_addr
                ))
            })?;
        added.map_err(map_err)?;
        let change =
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false);
        self.membership_within(change).await?.map_err(map_err)?;
        Ok(ForwardReply::Done)
    }

    /// Bounds a membership change (two entries to commit: the joint and the new
    /// configuration) by twice the write timeout, so a leader cut off from its majority answers.
    async fn membership_within<T>(
        &self,
        change: impl std::future::Future<Output = T>,
    ) -> Result<T, ForwardError> {
        let within = 2 * self.inner.settings.write_timeout;
        tokio::time::timeout(within, change).await.map_err(|_| {
            ForwardError::Unknown(format!(
                "the leader (node {}) did not commit the membership change within {within:?}: it cannot reach a majority of the nodes (`mailctl status`); see `mailctl node list`",
                self.inner.id
            ))
        })
    }

    async fn remove_node_as_leader(&self, id: u64) -> Result<ForwardReply, ForwardError> {
        let raft = &self.inner.raft;
        let m = raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return Err(ForwardError::NotLeader(self.inner.id));
        }
        let membership = m.membership_config.membership();
        if !membership.nodes().any(|(n, _)| *n == id) {
            return Err(ForwardError::Failed(format!(
                "node {id} is not a member: see `mailctl node list`"
            )));
        }
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        if voters.len() == 1 && voters.contains(&id) {
            return Err(ForwardError::Failed(
                "refusing to remove the last voter: the cluster would stop".into(),
            ));
        }
        let change = if voters.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.membership_within(raft.change_membership(change, false))
            .await?
            .map_err(|e| match e {
                RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                    ForwardError::NotLeader(self.inner.id)
                }
                e => ForwardError::Failed(e.to_string()),
            })?;
        Ok(ForwardReply::Done)
    }

    /// Runs `f` on the current leader, retrying through elections until the write timeout.
    async fn on_leader(&self, f: Forward) -> Result<ForwardReply, ClusterError> {
        let deadline = Instant::now() + self.inner.settings.write_timeout;
        // Forward is not Clone (it may carry a large import); serialise once to retry cheaply.
        let encoded = serde_json::to_vec(&f).map_err(|e| ClusterError::Raft(e.to_string()))?;
        loop {
            let f: Forward =
                serde_json::from_slice(&encoded).map_err(|e| ClusterError::Raft(e.to_string()))?;
            match self.try_on_leader(f).await {
                Ok(r) => return Ok(r),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(Attempt::Retry) => {
                    if !self.is_initialized().await {
                        return Err(ClusterError::NotInitialized);
                    }
                    return Err(ClusterError::NoLeader(self.inner.settings.write_timeout));
                }
            }
        }
    }

    /// One attempt, no retries (for best-effort status information).
    async fn on_leader_once(&self, f: Forward) -> Result<ForwardReply, ClusterError> {
        self.try_on_leader(f).await.map_err(|e| match e {
            Attempt::Final(e) => e,
            Attempt::Retry => ClusterError::NoLeader(Duration::ZERO),
        })
    }

    /// How long a forwarded request may wait for the leader's answer: what the leader itself
    /// may take (its write timeout; a minute of catch-up for a new node), plus an election
    /// timeout for the round trip. A leader that is alive answers within it, even with a
    /// failure; past it the request is treated as lost in the network.
    fn forward_ttl(&self, f: &Forward) -> Duration {
        let s = &self.inner.settings;
        let leader_side = match f {
            Forward::AddNode { .. } => ADD_NODE_CATCH_UP + 2 * s.write_timeout,
            Forward::RemoveNode { .. } => 2 * s.write_timeout,
            _ => s.write_timeout,
        };
        leader_side + s.election_timeout_max
    }

    async fn try_on_leader(&self, f: Forward) -> Result<ForwardReply, Attempt> {
        // The leader and, below, the watch for its change come from the same metrics channel,
        // so a change is a change (not a lag between two views).
        let mut metrics = self.inner.raft.metrics();
        let (leader, addr) = {
            let m = metrics.borrow_and_update();
            let leader = m.current_leader.ok_or(Attempt::Retry)?;
            let info = m.membership_config.membership().get_node(&leader).cloned();
            (leader, info.map(|i| i.raft_addr))
        };
        if leader == self.inner.id {
            return self.execute_as_leader(f).await.map_err(Attempt::from);
        }
        let addr = addr.ok_or(Attempt::Retry)?;
        let client = {
            // Never waits on a connection's lock here: one may be held by a request in flight.
            let mut map = self.inner.forwarders.lock().await;
            match map.get(&leader) {
                Some((known, client)) if *known == addr => client.clone(),
                _ => {
                    let client = Arc::new(Mutex::new(PeerClient::new(
                        leader,
                        addr.clone(),
                        self.inner.dialer.clone(),
                    )));
                    map.insert(leader, (addr, client.clone()));
                    client
                }
            }
        };
        let idempotent = matches!(f, Forward::ReadIndex | Forward::Progress);
        let ttl = self.forward_ttl(&f);
        // Watch this node's view of the leader while waiting: once it names another node (or
        // none: an election is under way), `leader` has lost its majority or its leadership,
        // and its answer may never come (a partition drops packets; TCP would notice only after
        // about a minute).
        let mut client = tokio::select! {
            biased;
            c = client.lock() => c,
            // Nothing was sent: trying again is safe.
            () = leader_moved(&mut metrics, leader) => return Err(Attempt::Retry),
        };
        tokio::select! {
            biased;
            r = client.connect() => r.map_err(|e| {
                tracing::debug!(leader, error = %e, "cannot connect to the leader; retrying");
                Attempt::Retry
            })?,
            () = leader_moved(&mut metrics, leader) => return Err(Attempt::Retry),
        }
        let request = RpcRequest::Forward(f);
        let resp = tokio::select! {
            biased;
            r = client.call(&request, ttl) => r,
            () = leader_moved(&mut metrics, leader) => {
                let now = self.inner.raft.metrics().borrow().current_leader;
                tracing::info!(leader, ?now, idempotent, "the leader changed while a forwarded request was in flight");
                if idempotent {
                    return Err(Attempt::Retry);
                }
                let now = now.map_or("an election is under way".to_string(), |n| format!("node {n} leads now"));
                return Err(Attempt::Final(ClusterError::OutcomeUnknown(format!(
                    "node {leader} stopped leading while it held this change ({now})"
                ))));
            }
        };
        drop(client);
        match resp {
            Ok(RpcResponse::Forward(r)) => r.map_err(Attempt::from),
            Ok(_) => Err(Attempt::Final(ClusterError::Raft(
                "unexpected answer from the leader".into(),
            ))),
            Err(rpc::CallError::TooLarge) => Err(Attempt::Final(ClusterError::Refused(format!(
                "the request is larger than {} bytes: split it (e.g. smaller import batches)",
                rpc::MAX_FRAME
            )))),
            Err(rpc::CallError::Network(e)) if !idempotent => {
                Err(Attempt::Final(ClusterError::OutcomeUnknown(format!(
                    "the leader (node {leader}) did not answer ({e}; waited at most {ttl:?})"
                ))))
            }
            Err(e) => {
                tracing::debug!(leader, error = %e, "forwarding to the leader failed; retrying");
                Err(Attempt::Retry)
            }
        }
    }
}

/// Returns once `metrics` names a leader other than `leader`, or none. Pending forever when the
/// Raft task has stopped (the caller's own timeout then ends the wait).
async fn leader_moved(
    metrics: &mut tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, NodeInfo>>,
    leader: u64,
) {
    loop {
        if metrics.borrow_and_update().current_leader != Some(leader) {
            return;
        }
        if metrics.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

enum Attempt {
    Retry,
    Final(ClusterError),
}

impl From<ForwardError> for Attempt {
    fn from(e: ForwardError) -> Self {
        match e {
            ForwardError::NotLeader(_) => Attempt::Retry,
            ForwardError::Failed(reason) => Attempt::Final(ClusterError::Refused(reason)),
            ForwardError::Unknown(reason) => Attempt::Final(ClusterError::OutcomeUnknown(reason)),
        }
    }
}

#[doc(hidden)]
pub mod testing {
    //! Entry points for the storage conformance suite (tests/raft_store.rs).
    pub use super::store::{open_db, LogStore, StateMachine};
    pub use super::types::TypeConfig;
}
