//! The Raft log, vote and state machine, stored in sled on the node's local disk.
//!
//! One sled database per node (`<data_dir>/raft`), three trees:
//! - `log`: entries keyed by big-endian index, so sled's ordering is the log's order;
//! - `meta`: the vote, the committed log id, the last purged log id and the current snapshot;
//! - `sm`: the state machine — directory records (`d/…`, `u/…`, `s/…`, `a/…`, `l/…`, and the
//!   anti-UBE policy's `p/…`) plus the reserved keys `_applied` and `_membership`, written in
//!   one atomic batch per apply so a crash leaves the state machine at an entry boundary
//!   (openraft replays the log from `_applied`).
//!
//! The directory is also held in memory ([`SharedDirectory`]) so lookups never touch the disk.
//! Durability: every log append, truncation and vote is flushed (fsync) before openraft is told
//! it is done. Never does this module decide anything about the protocol; it only stores what
//! openraft hands it.

// openraft's trait signatures fix the error type; helpers return the same one.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftLogReader, RaftSnapshotBuilder,
    StorageIOError,
};
use serde::{Deserialize, Serialize};

use super::types::{
    Entry, LogId, NodeInfo, Request, Response, Snapshot, SnapshotMeta, StorageError,
    StoredMembership, TypeConfig, Vote,
};
use crate::directory::{Directory, Outcome};
use crate::failover::state::{LeaseOutcome, MailstoreState};

/// The in-memory directory, shared by the state machine (the only writer) and every reader.
pub type SharedDirectory = Arc<RwLock<Directory>>;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";
const SNAPSHOT: &[u8] = b"snapshot";
const APPLIED: &str = "_applied";
const MEMBERSHIP: &str = "_membership";
const MAILSTORE: &str = "_mailstore";

/// The mailstore lease state, shared with the failover task, which is woken on every change.
pub type SharedMailstore = Arc<tokio::sync::watch::Sender<MailstoreState>>;

/// The applied anti-UBE policy version (0: none), so the node's policy task wakes on a change.
pub type SharedPolicyVersion = Arc<tokio::sync::watch::Sender<u64>>;

fn sio(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    sio(ErrorSubject::Store, ErrorVerb::Read, e)
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    sio(ErrorSubject::Store, ErrorVerb::Write, e)
}

fn get_json<T: for<'de> Deserialize<'de>>(
    tree: &sled::Tree,
    key: &[u8],
) -> Result<Option<T>, StorageError> {
    match tree.get(key).map_err(read_err)? {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(read_err)?)),
        None => Ok(None),
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(v).map_err(write_err)
}

/// Opens (or creates) the node's Raft database.
/// sled's page cache. Its default (1 GiB) made each node hold ~300 MiB after a 35,000-user
/// import; the directory itself lives in memory anyway, so the cache only serves the log.
const CACHE_BYTES: u64 = 32 * 1024 * 1024;

pub fn open_db(path: &std::path::Path) -> Result<sled::Db, sled::Error> {
    sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_BYTES)
        .mode(sled::Mode::HighThroughput)
        .open()
}

/// The Raft log and vote.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
}

impl LogStore {
    pub fn new(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(LogStore {
            db: db.clone(),
            log: db.open_tree("log")?,
            meta: db.open_tree("meta")?,
        })
    }

    async fn flush(&self) -> Result<(), StorageError> {
        self.db.flush_async().await.map(|_| ()).map_err(write_err)
    }

    /// The committed index as last recorded (for status displays).
    pub fn committed_index(&self) -> Option<u64> {
        get_json::<Option<LogId>>(&self.meta, COMMITTED)
            .ok()
            .flatten()
            .flatten()
            .map(|l| l.index)
    }

    fn last_purged(&self) -> Result<Option<LogId>, StorageError> {
        get_json(&self.meta, PURGED)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for kv in self.log.range(start.to_be_bytes()..) {
            let (k, v) = kv.map_err(read_err)?;
            let idx = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
                read_err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "bad log key",
                ))
            })?);
            if !range.contains(&idx) {
                break;
            }
            out.push(serde_json::from_slice(&v).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.last_purged()?;
        let last = match self.log.last().map_err(read_err)? {
            Some((_, v)) => Some(
                serde_json::from_slice::<Entry>(&v)
                    .map_err(read_err)?
                    .log_id,
            ),
            None => None,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.meta
            .insert(VOTE, to_json(vote)?)
            .map_err(|e| sio(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        self.flush().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        get_json(&self.meta, VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed: losing it only means replaying a little more on restart.
        self.meta
            .insert(COMMITTED, to_json(&committed)?)
            .map_err(write_err)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(get_json::<Option<LogId>>(&self.meta, COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            batch.insert(&entry.log_id.index.to_be_bytes(), to_json(&entry)?);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| sio(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        let flushed = self
            .db
            .flush_async()
            .await
            .map(|_| ())
            .map_err(std::io::Error::other);
        callback.log_io_completed(flushed);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for k in self.log.range(log_id.index.to_be_bytes()..).keys() {
            batch.remove(k.map_err(read_err)?);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        self.flush().await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: a crash between the two leaves extra entries, never a
        // gap that get_log_state would not report.
        self.meta
            .insert(PURGED, to_json(&log_id)?)
            .map_err(write_err)?;
        self.flush().await?;
        let mut batch = sled::Batch::default();
        for k in self.log.range(..=log_id.index.to_be_bytes()).keys() {
            batch.remove(k.map_err(read_err)?);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        Ok(())
    }
}

/// A snapshot as stored and shipped: the full state machine at `last_applied`.
#[derive(Serialize, Deserialize)]
struct SnapshotImage {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// Directory records (key, JSON text).
    records: Vec<(String, String)>,
    /// The mailstore lease (absent in snapshots of older versions).
    #[serde(default)]
    mailstore: MailstoreState,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The state machine: the directory, mirrored in sled.
#[derive(Clone)]
pub struct StateMachine {
    sm: sled::Tree,
    meta: sled::Tree,
    db: sled::Db,
    directory: SharedDirectory,
    mailstore: SharedMailstore,
    policy_version: SharedPolicyVersion,
}

impl StateMachine {
    /// Loads the state machine from disk, rebuilding the in-memory directory.
    pub fn open(db: &sled::Db) -> Result<Self, StorageError> {
        let sm = db.open_tree("sm").map_err(read_err)?;
        let meta = db.open_tree("meta").map_err(read_err)?;
        let mut records = Vec::new();
        for kv in sm.iter() {
            let (k, v) = kv.map_err(read_err)?;
            if k.starts_with(b"_") {
                continue;
            }
            let key = String::from_utf8(k.to_vec()).map_err(read_err)?;
            records.push((key, v.to_vec()));
        }
        let directory = Directory::from_records(records.into_iter())
            .map_err(|e| sio(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
        let mailstore = get_json::<MailstoreState>(&sm, MAILSTORE.as_bytes())?.unwrap_or_default();
        let policy_version = directory.policy_version();
        Ok(StateMachine {
            sm,
            meta,
            db: db.clone(),
            directory: Arc::new(RwLock::new(directory)),
            mailstore: Arc::new(tokio::sync::watch::Sender::new(mailstore)),
            policy_version: Arc::new(tokio::sync::watch::Sender::new(policy_version)),
        })
    }

    /// The applied anti-UBE policy version, for the node's policy task.
    pub fn policy_version(&self) -> SharedPolicyVersion {
        self.policy_version.clone()
    }

    /// The mailstore lease state, for the failover task.
    pub fn mailstore(&self) -> SharedMailstore {
        self.mailstore.clone()
    }

    /// The in-memory directory, for local reads.
    pub fn directory(&self) -> SharedDirectory {
        self.directory.clone()
    }

    fn applied(&self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((
            get_json::<Option<LogId>>(&self.sm, APPLIED.as_bytes())?.flatten(),
            get_json(&self.sm, MEMBERSHIP.as_bytes())?.unwrap_or_default(),
        ))
    }

    fn image(&self) -> Result<SnapshotImage, StorageError> {
        let (last_applied, membership) = self.applied()?;
        let dir = self.directory.read().unwrap_or_else(|p| p.into_inner());
        let records = dir
            .records()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        Ok(SnapshotImage {
            last_applied,
            membership,
            records,
            mailstore: self.mailstore.borrow().clone(),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let image = self.image()?;
        let data = serde_json::to_vec(&image).map_err(write_err)?;
        let snapshot_id = match &image.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, rand::random::<u32>()),
            None => format!("empty-{}", rand::random::<u32>()),
        };
        let meta = SnapshotMeta {
            last_log_id: image.last_applied,
            last_membership: image.membership,
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        self.meta
            .insert(SNAPSHOT, to_json(&stored)?)
            .map_err(write_err)?;
        self.db.flush_async().await.map_err(write_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.applied()
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        let mut batch = sled::Batch::default();
        let mut last = None;
        let mut membership = None;
        let mut lease = self.mailstore.borrow().clone();
        let mut lease_changed = false;
        let policy_version;
        {
            let mut dir = self.directory.write().unwrap_or_else(|p| p.into_inner());
            for entry in entries {
                last = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => responses.push(Response::Applied(Outcome::Done)),
                    EntryPayload::Membership(m) => {
                        membership = Some(StoredMembership::new(Some(entry.log_id), m));
                        responses.push(Response::Applied(Outcome::Done));
                    }
                    EntryPayload::Normal(Request::Directory(cmd)) => {
                        match dir.apply_at(entry.log_id.index, &cmd) {
                            Ok(applied) => {
                                for change in &applied.changes {
                                    match &change.value {
                                        Some(v) => batch.insert(change.key.as_bytes(), v.clone()),
                                        None => batch.remove(change.key.as_bytes()),
                                    }
                                }
                                responses.push(Response::Applied(applied.outcome));
                            }
                            Err(e) => responses.push(Response::Refused(e.to_string())),
                        }
                    }
                    EntryPayload::Normal(Request::Mailstore(cmd)) => {
                        let outcome = lease.apply(&cmd);
                        lease_changed |= outcome == LeaseOutcome::Done;
                        responses.push(Response::Lease(outcome));
                    }
                }
            }
            policy_version = dir.policy_version();
        }
        if lease_changed {
            batch.insert(MAILSTORE.as_bytes(), to_json(&lease)?);
        }
        if let Some(last) = last {
            batch.insert(APPLIED.as_bytes(), to_json(&Some(last))?);
        }
        if let Some(m) = membership {
            batch.insert(MEMBERSHIP.as_bytes(), to_json(&m)?);
        }
        self.sm
            .apply_batch(batch)
            .map_err(|e| sio(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
        if lease_changed {
            self.mailstore.send_replace(lease);
        }
        // After the batch is stored: a woken reader finds the directory and the disk agreeing.
        self.policy_version.send_if_modified(|v| {
            let changed = *v != policy_version;
            *v = policy_version;
            changed
        });
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let image: SnapshotImage = serde_json::from_slice(&data).map_err(|e| {
            sio(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                e,
            )
        })?;
        let records: Vec<(String, Vec<u8>)> = image
            .records
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        let new_dir = Directory::from_records(records.clone().into_iter()).map_err(|e| {
            sio(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                e,
            )
        })?;

        let mut batch = sled::Batch::default();
        for k in self.sm.iter().keys() {
            batch.remove(k.map_err(read_err)?);
        }
        for (k, v) in records {
            batch.insert(k.as_bytes(), v);
        }
        batch.insert(APPLIED.as_bytes(), to_json(&meta.last_log_id)?);
        batch.insert(MEMBERSHIP.as_bytes(), to_json(&meta.last_membership)?);
        batch.insert(MAILSTORE.as_bytes(), to_json(&image.mailstore)?);
        self.sm.apply_batch(batch).map_err(write_err)?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.meta
            .insert(SNAPSHOT, to_json(&stored)?)
            .map_err(write_err)?;
        self.db.flush_async().await.map_err(write_err)?;
        let policy_version = new_dir.policy_version();
        *self.directory.write().unwrap_or_else(|p| p.into_inner()) = new_dir;
        self.mailstore.send_replace(image.mailstore);
        self.policy_version.send_if_modified(|v| {
            let changed = *v != policy_version;
            *v = policy_version;
            changed
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(
            get_json::<StoredSnapshot>(&self.meta, SNAPSHOT)?.map(|s| Snapshot {
                meta: s.meta,
                snapshot: Box::new(Cursor::new(s.data)),
            }),
        )
    }
}

/// Membership of the node, for status displays: voters and learners with their info.
pub fn members(m: &StoredMembership) -> Vec<(u64, NodeInfo, bool)> {
    let voters: std::collections::BTreeSet<u64> = m.membership().voter_ids().collect();
    m.membership()
        .nodes()
        .map(|(id, n)| (*id, n.clone(), voters.contains(id)))
        .collect()
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;

    struct SledBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().map_err(write_err)?;
            let db = open_db(dir.path()).map_err(write_err)?;
            let log = LogStore::new(&db).map_err(write_err)?;
            let sm = StateMachine::open(&db)?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's own storage conformance suite, against the sled store.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(SledBuilder).expect("storage suite");
    }
}
