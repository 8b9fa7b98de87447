//! One open mailbox: its in-memory index (UIDs, flags, modseqs), the index log it mirrors, and
//! the change notifications sessions subscribe to.
//!
//! Two locks: the *log* lock serialises writers and is held across the index append and its
//! `fdatasync`; the *state* lock guards the in-memory index and is only ever held for
//! microseconds. A change takes the log lock, reads what it needs under the state lock, appends
//! and syncs the record, then applies the change and broadcasts its event under the state lock.
//! So memory never runs ahead of the disk, readers (snapshots, fetches) never wait for a disk
//! flush, and a session that subscribes and snapshots under the state lock sees every later
//! change exactly once. The expensive parts (writing, syncing and renaming message files)
//! happen before any lock is taken. Lock order: user, log, state. Writers block: callers run
//! them on `spawn_blocking`. This module never touches another mailbox or the user's list.
//!
//! Security note: UIDs and flags come from sessions; every lookup is a binary search that
//! tolerates unknown UIDs, and nothing here panics on client input.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

use super::error::StoreError;
use super::flags::{FlagOp, Flags, SystemFlag};
use super::fsio::{fsync_dir, remove_if_exists, Step};
use super::index::{write_index, IndexLog};
use super::record::{AppendRecord, Record, INDEX_VERSION};
use super::user::UsageCounters;
use super::view::{FlagUpdate, MailboxEvent, MessageMeta, Snapshot, StoreFlagsOutcome};
use super::Shared;

/// A message about to be committed: its file is already durable in `msg/`.
pub(crate) struct NewMessage {
    pub file: Arc<str>,
    pub size: u64,
    pub crc: u32,
    pub flags: Flags,
    pub internal_date: i64,
}

/// The mutable part of a mailbox.
pub(crate) struct MailboxState {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    pub messages: Arc<Vec<MessageMeta>>,
    /// Sum of message sizes.
    pub bytes: u64,
    pub deleted: bool,
    /// Set when an index write failed and could not be rolled back: memory and disk may
    /// disagree, so writes are refused until the mailbox is loaded again.
    pub broken: Option<String>,
    /// Files of committed expunges not yet unlinked. A compacted index forgets expunges, so
    /// compaction unlinks these first (else a crash could bring them back as recovered mail).
    pub unlinking: HashSet<Arc<str>>,
}

impl MailboxState {
    fn writable(&self, name: &str) -> Result<(), StoreError> {
        if self.deleted {
            return Err(StoreError::MailboxNotFound(name.to_string()));
        }
        if let Some(why) = &self.broken {
            return Err(StoreError::Unavailable(why.clone()));
        }
        Ok(())
    }

    fn position(&self, uid: u32) -> Option<usize> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            uidvalidity: self.uidvalidity,
            uidnext: self.uidnext,
            highestmodseq: self.highestmodseq,
            messages: Arc::clone(&self.messages),
        }
    }
}

/// The records of a complete index holding exactly `messages`.
pub(crate) fn full_index(
    uidvalidity: u32,
    uidnext: u32,
    highestmodseq: u64,
    messages: &[MessageMeta],
) -> Vec<Record> {
    let mut recs = Vec::with_capacity(messages.len() + 1);
    recs.push(Record::Header {
        version: INDEX_VERSION,
        uidvalidity,
        uidnext,
        highestmodseq,
    });
    recs.extend(messages.iter().map(|m| Record::Append(append_record(m))));
    recs
}

pub(crate) fn append_record(m: &MessageMeta) -> AppendRecord {
    AppendRecord {
        uid: m.uid,
        modseq: m.modseq,
        internal_date: m.internal_date,
        size: m.size,
        crc: m.crc,
        flags: m.flags.clone(),
        file: m.file.to_string(),
    }
}

/// An open mailbox, shared by every session and delivery that uses it.
pub(crate) struct Mailbox {
    /// The directory id (stable across renames).
    pub id: u64,
    pub dir: PathBuf,
    pub msg_dir: PathBuf,
    log: Mutex<IndexLog>,
    state: Mutex<MailboxState>,
    events: broadcast::Sender<Arc<MailboxEvent>>,
    usage: Arc<UsageCounters>,
}

impl Mailbox {
    pub(crate) fn new(
        id: u64,
        dir: PathBuf,
        log: IndexLog,
        state: MailboxState,
        usage: Arc<UsageCounters>,
        capacity: usize,
    ) -> Mailbox {
        let (events, _) = broadcast::channel(capacity.max(1));
        Mailbox {
            id,
            msg_dir: dir.join("msg"),
            dir,
            log: Mutex::new(log),
            state: Mutex::new(state),
            events,
            usage,
        }
    }

    /// The state lock. A poisoned lock means a panic mid-change (a bug): refuse to go on with
    /// state that may be half-updated.
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, MailboxState>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::Unavailable("a previous operation panicked".into()))
    }

    /// The writers' lock (see the module documentation).
    pub(crate) fn lock_log(&self) -> Result<MutexGuard<'_, IndexLog>, StoreError> {
        self.log
            .lock()
            .map_err(|_| StoreError::Unavailable("a previous operation panicked".into()))
    }

    /// Records that memory and disk may disagree.
    fn set_broken(&self, why: String) {
        if let Ok(mut st) = self.lock() {
            st.broken = Some(why);
        }
    }

    /// A snapshot and a receiver for every change after it, taken atomically.
    pub(crate) fn subscribe(
        &self,
    ) -> Result<(Snapshot, broadcast::Receiver<Arc<MailboxEvent>>), StoreError> {
        let st = self.lock()?;
        Ok((st.snapshot(), self.events.subscribe()))
    }

    pub(crate) fn notify(&self, event: MailboxEvent) {
        // No receivers is normal (nobody has the mailbox open).
        let _ = self.events.send(Arc::new(event));
    }

    /// The file of a live message.
    pub(crate) fn file_of(&self, name: &str, uid: u32) -> Result<Arc<str>, StoreError> {
        let st = self.lock()?;
        if st.deleted {
            return Err(StoreError::MailboxNotFound(name.to_string()));
        }
        let i = st.position(uid).ok_or(StoreError::NoSuchMessage(uid))?;
        Ok(Arc::clone(&st.messages[i].file))
    }

    /// Assigns UIDs to messages whose files are durable and linked into `msg/`, and commits them
    /// to the index, then syncs `msg/` (see [`IndexLog::append`] for why in that order);
    /// returns the UIDVALIDITY and the new messages. On failure the files are removed, unless
    /// the index may hold them after all (a failed rollback): then they stay, and the next load
    /// finds them either indexed or unindexed and recovers them, which can duplicate a message
    /// but never loses or half-stores one.
    pub(crate) fn commit_appends(
        &self,
        sh: &Shared,
        name: &str,
        items: Vec<NewMessage>,
        origin: u64,
    ) -> Result<(u32, Vec<MessageMeta>), StoreError> {
        let mut log = match self.lock_log() {
            Ok(l) => l,
            Err(e) => {
                self.discard_files(items.iter().map(|i| &i.file));
                return Err(e);
            }
        };
        let n = items.len() as u64;
        let pre = self.lock().and_then(|st| {
            st.writable(name)?;
            if st.uidnext as u64 + n > u32::MAX as u64 {
                return Err(StoreError::UidsExhausted(name.to_string()));
            }
            Ok((st.uidvalidity, st.uidnext, st.highestmodseq + 1))
        });
        let (uidvalidity, first, modseq) = match pre {
            Ok(v) => v,
            Err(e) => {
                drop(log);
                self.discard_files(items.iter().map(|i| &i.file));
                return Err(e);
            }
        };
        if items.is_empty() {
            return Ok((uidvalidity, Vec::new()));
        }
        let metas: Vec<MessageMeta> = items
            .into_iter()
            .enumerate()
            .map(|(i, it)| MessageMeta {
                uid: first + i as u32,
                modseq,
                flags: it.flags,
                internal_date: it.internal_date,
                size: it.size,
                file: it.file,
                crc: it.crc,
            })
            .collect();
        let records: Vec<Record> = metas
            .iter()
            .map(|m| Record::Append(append_record(m)))
            .collect();
        if let Err(f) = log.append(&records, &sh.faults, Some(&self.msg_dir)) {
            if f.rolled_back {
                drop(log);
                self.discard_files(metas.iter().map(|m| &m.file));
            } else {
                self.set_broken(f.error.to_string());
            }
            return Err(f.error);
        }
        {
            let mut st = self.lock()?;
            st.uidnext = first + n as u32;
            st.highestmodseq = modseq;
            st.bytes += metas.iter().map(|m| m.size).sum::<u64>();
            Arc::make_mut(&mut st.messages).extend(metas.iter().cloned());
            self.usage.messages.fetch_add(n, Ordering::Relaxed);
            self.notify(MailboxEvent::Exists {
                messages: metas.clone(),
                uidnext: st.uidnext,
                origin,
            });
        }
        self.maybe_compact(&mut log, sh);
        Ok((uidvalidity, metas))
    }

    fn discard_files<'a>(&self, files: impl Iterator<Item = &'a Arc<str>>) {
        for f in files {
            if let Err(e) = remove_if_exists(&self.msg_dir.join(&**f)) {
                tracing::warn!(error = %e, "cannot remove the file of an uncommitted message");
            }
        }
    }

    /// Appends `rec` under the log lock; a failed rollback marks the mailbox broken.
    fn append_one(&self, log: &mut IndexLog, sh: &Shared, rec: Record) -> Result<(), StoreError> {
        log.append(&[rec], &sh.faults, None).map_err(|f| {
            if !f.rolled_back {
                self.set_broken(f.error.to_string());
            }
            f.error
        })
    }

    /// IMAP STORE: changes flags, one new modseq for every message that actually changes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn store_flags(
        &self,
        sh: &Shared,
        name: &str,
        uids: &[u32],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<u64>,
        origin: u64,
    ) -> Result<StoreFlagsOutcome, StoreError> {
        let mut uids = uids.to_vec();
        uids.sort_unstable();
        uids.dedup();
        let mut log = self.lock_log()?;
        let mut out = StoreFlagsOutcome::default();
        let mut changes: Vec<(u32, Flags)> = Vec::new();
        let modseq = {
            let st = self.lock()?;
            st.writable(name)?;
            for uid in uids {
                let Some(i) = st.position(uid) else { continue };
                let m = &st.messages[i];
                if unchanged_since.is_some_and(|since| m.modseq > since) {
                    out.conflicts.push(uid);
                    continue;
                }
                let new = m.flags.apply(op, flags);
                if new == m.flags {
                    out.unchanged.push(FlagUpdate {
                        uid,
                        modseq: m.modseq,
                        flags: new,
                    });
                } else {
                    changes.push((uid, new));
                }
            }
            st.highestmodseq + 1
        };
        if changes.is_empty() {
            return Ok(out);
        }
        self.append_one(
            &mut log,
            sh,
            Record::Flags {
                modseq,
                changes: changes.clone(),
            },
        )?;
        {
            let mut st = self.lock()?;
            st.highestmodseq = modseq;
            // Writers are serialised by the log lock, so positions have not moved.
            let msgs = Arc::make_mut(&mut st.messages);
            for (uid, f) in changes {
                if let Ok(i) = msgs.binary_search_by_key(&uid, |m| m.uid) {
                    msgs[i].flags = f.clone();
                    msgs[i].modseq = modseq;
                }
                out.updated.push(FlagUpdate {
                    uid,
                    modseq,
                    flags: f,
                });
            }
            self.notify(MailboxEvent::Flags {
                updates: out.updated.clone(),
                origin,
            });
        }
        self.maybe_compact(&mut log, sh);
        Ok(out)
    }

    /// Removes messages: commits the expunge, then unlinks their files outside the locks.
    /// `uids`: these messages (`None`: all); `only_deleted`: only those flagged `\Deleted` at
    /// this instant (IMAP EXPUNGE / UID EXPUNGE). Returns the UIDs removed, ascending.
    pub(crate) fn expunge(
        &self,
        sh: &Shared,
        name: &str,
        uids: Option<&[u32]>,
        only_deleted: bool,
        origin: u64,
    ) -> Result<Vec<u32>, StoreError> {
        let mut log = self.lock_log()?;
        let (gone, modseq) = {
            let st = self.lock()?;
            st.writable(name)?;
            let wanted = |m: &MessageMeta| !only_deleted || m.flags.contains(SystemFlag::Deleted);
            let mut gone: Vec<u32> = match uids {
                Some(uids) => uids
                    .iter()
                    .filter_map(|u| st.position(*u))
                    .map(|i| &st.messages[i])
                    .filter(|m| wanted(m))
                    .map(|m| m.uid)
                    .collect(),
                None => st
                    .messages
                    .iter()
                    .filter(|m| wanted(m))
                    .map(|m| m.uid)
                    .collect(),
            };
            gone.sort_unstable();
            gone.dedup();
            (gone, st.highestmodseq + 1)
        };
        if gone.is_empty() {
            return Ok(gone);
        }
        self.append_one(
            &mut log,
            sh,
            Record::Expunge {
                modseq,
                uids: gone.clone(),
            },
        )?;
        let mut files = Vec::with_capacity(gone.len());
        {
            let mut st = self.lock()?;
            st.highestmodseq = modseq;
            let mut bytes = 0;
            Arc::make_mut(&mut st.messages).retain(|m| {
                if gone.binary_search(&m.uid).is_ok() {
                    files.push(Arc::clone(&m.file));
                    bytes += m.size;
                    false
                } else {
                    true
                }
            });
            st.bytes -= bytes;
            self.usage.release(bytes, gone.len() as u64);
            st.unlinking.extend(files.iter().cloned());
            self.notify(MailboxEvent::Expunge {
                uids: gone.clone(),
                modseq,
                origin,
            });
        }
        drop(log);
        // Committed: a crash from here on leaves files that the next load removes.
        sh.faults.at(Step::ExpungeCommitted, &self.msg_dir)?;
        let mut removed = Vec::with_capacity(files.len());
        for f in files {
            match remove_if_exists(&self.msg_dir.join(&*f)) {
                Ok(()) => removed.push(f),
                Err(e) => tracing::warn!(error = %e, "cannot remove an expunged message file"),
            }
        }
        self.lock()?.unlinking.retain(|f| !removed.contains(f));
        let mut log = self.lock_log()?;
        self.maybe_compact(&mut log, sh);
        Ok(gone)
    }

    fn maybe_compact(&self, log: &mut IndexLog, sh: &Shared) {
        let live = match self.lock() {
            Ok(st) => st.messages.len() as u64 + 1,
            Err(_) => return,
        };
        if log.records < sh.config.compact_min_records || log.records <= 2 * live {
            return;
        }
        if let Err(e) = self.compact(log, sh) {
            tracing::warn!(error = %e, mailbox = self.id, "index compaction failed; will retry");
        }
    }

    /// Rewrites the index as a header plus one record per live message. Runs under the log
    /// lock, so the state it copies cannot change until the new index is in place.
    fn compact(&self, log: &mut IndexLog, sh: &Shared) -> Result<(), StoreError> {
        let (recs, unlinking) = {
            let st = self.lock()?;
            st.writable("")?;
            let recs = full_index(st.uidvalidity, st.uidnext, st.highestmodseq, &st.messages);
            (recs, st.unlinking.clone())
        };
        for f in &unlinking {
            remove_if_exists(&self.msg_dir.join(&**f))?;
        }
        // The unlinks must be durable before the index that forgets the expunges.
        fsync_dir(&self.msg_dir)?;
        match write_index(&self.dir, &recs, &sh.faults) {
            Ok(new) => {
                *log = new;
                self.lock()?.unlinking.retain(|f| !unlinking.contains(f));
                Ok(())
            }
            Err(f) => {
                if f.replaced {
                    self.set_broken(format!("index replaced but not reopened: {}", f.error));
                }
                Err(f.error)
            }
        }
    }

    /// Whether `file` belongs to a live message or to an expunge still being cleaned up.
    pub(crate) fn is_known_file(&self, file: &str) -> Result<bool, StoreError> {
        let st = self.lock()?;
        Ok(st.unlinking.contains(file) || st.messages.iter().any(|m| &*m.file == file))
    }

    /// Rewrites the index from memory now (repair of an index damaged on disk).
    pub(crate) fn compact_now(&self, sh: &Shared) -> Result<(), StoreError> {
        let mut log = self.lock_log()?;
        self.compact(&mut log, sh)
    }

    /// Sum of sizes and number of messages.
    pub(crate) fn totals(&self) -> Result<(u64, u64), StoreError> {
        let st = self.lock()?;
        Ok((st.bytes, st.messages.len() as u64))
    }
}
