//! The session-facing API: [`MailboxHandle`], one IMAP/POP3 session's view of one mailbox.
//!
//! A handle reads through the mailbox's state lock (held for microseconds, never across I/O),
//! so snapshots, subscriptions and message paths are synchronous; everything that writes runs
//! on `spawn_blocking` through the write path ([`write`](super::write)) or the mailbox's own
//! operations. Each handle has an `origin` id that tags the events it causes.
//!
//! Security note: a handle is bound to one user, chosen by the caller after authentication;
//! nothing here lets a session name another user's mailbox.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::broadcast;

use super::error::{at, StoreError};
use super::flags::{FlagOp, Flags, SystemFlag};
use super::mailbox::Mailbox;
use super::user::UserState;
use super::view::{MailboxEvent, Snapshot, StoreFlagsOutcome};
use super::write::{append_blocking, copy_blocking, CopyResult, Delivered, MessageSource};
use super::Store;

/// IMAP STATUS figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxStatus {
    pub messages: u32,
    pub unseen: u32,
    pub deleted: u32,
    pub size: u64,
    pub uidnext: u32,
    pub uidvalidity: u32,
    pub highestmodseq: u64,
}

impl MailboxStatus {
    pub(crate) fn of(s: &Snapshot) -> MailboxStatus {
        let count =
            |f: &dyn Fn(&Flags) -> bool| s.messages.iter().filter(|m| f(&m.flags)).count() as u32;
        MailboxStatus {
            messages: s.messages.len() as u32,
            unseen: count(&|f| !f.contains(SystemFlag::Seen)),
            deleted: count(&|f| f.contains(SystemFlag::Deleted)),
            size: s.messages.iter().map(|m| m.size).sum(),
            uidnext: s.uidnext,
            uidvalidity: s.uidvalidity,
            highestmodseq: s.highestmodseq,
        }
    }
}

/// One session's view of one mailbox. Cheap to clone; many handles may share a mailbox.
#[derive(Clone)]
pub struct MailboxHandle {
    pub(crate) store: Store,
    pub(crate) user: Arc<UserState>,
    pub(crate) mailbox: Arc<Mailbox>,
    pub(crate) origin: u64,
}

impl MailboxHandle {
    /// This handle's id in [`MailboxEvent`]s.
    pub fn origin(&self) -> u64 {
        self.origin
    }

    pub fn user(&self) -> &str {
        &self.user.name
    }

    /// The mailbox's current name (`None` once deleted).
    pub fn name(&self) -> Option<String> {
        self.user.name_of(self.mailbox.id)
    }

    fn name_or_default(&self) -> String {
        self.name().unwrap_or_default()
    }

    /// The mailbox now.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(self.mailbox.lock()?.snapshot())
    }

    /// The mailbox now, and every change after it. A receiver that falls more than
    /// `StoreConfig::event_capacity` events behind gets `Lagged` and should resynchronise from
    /// a new snapshot.
    pub fn subscribe(
        &self,
    ) -> Result<(Snapshot, broadcast::Receiver<Arc<MailboxEvent>>), StoreError> {
        self.mailbox.subscribe()
    }

    pub fn status(&self) -> Result<MailboxStatus, StoreError> {
        Ok(MailboxStatus::of(&self.snapshot()?))
    }

    /// The path of a message file, to stream it. The file may be unlinked by an expunge at any
    /// time; open it promptly (an open file stays readable) or use [`Self::open_message`].
    pub fn message_path(&self, uid: u32) -> Result<PathBuf, StoreError> {
        let file = self.mailbox.file_of(&self.name_or_default(), uid)?;
        Ok(self.mailbox.msg_dir.join(&*file))
    }

    /// Opens a message for streaming.
    pub async fn open_message(&self, uid: u32) -> Result<tokio::fs::File, StoreError> {
        let path = self.message_path(uid)?;
        tokio::fs::File::open(&path)
            .await
            .map_err(|e| gone_or(uid, &path, e))
    }

    /// A message's bytes.
    pub async fn fetch(&self, uid: u32) -> Result<Vec<u8>, StoreError> {
        let path = self.message_path(uid)?;
        tokio::fs::read(&path)
            .await
            .map_err(|e| gone_or(uid, &path, e))
    }

    /// IMAP STORE (with CONDSTORE's `UNCHANGEDSINCE`).
    pub async fn store_flags(
        &self,
        uids: &[u32],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<u64>,
    ) -> Result<StoreFlagsOutcome, StoreError> {
        let cfg = self.store.config();
        flags.validate(cfg.max_keywords, cfg.max_keyword_len)?;
        let (h, uids, flags) = (self.clone(), uids.to_vec(), flags.clone());
        self.store
            .blocking(move |sh| {
                let name = h.name_or_default();
                h.mailbox
                    .store_flags(sh, &name, &uids, op, &flags, unchanged_since, h.origin)
            })
            .await
    }

    /// Removes these messages whatever their flags (POP3 DELE at QUIT, the second half of
    /// MOVE). Returns the UIDs removed.
    pub async fn expunge(&self, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        self.expunge_inner(Some(uids.to_vec()), false).await
    }

    /// IMAP EXPUNGE (`within: None`) and UID EXPUNGE: removes the messages flagged `\Deleted`.
    pub async fn expunge_deleted(&self, within: Option<&[u32]>) -> Result<Vec<u32>, StoreError> {
        self.expunge_inner(within.map(<[u32]>::to_vec), true).await
    }

    async fn expunge_inner(
        &self,
        uids: Option<Vec<u32>>,
        only_deleted: bool,
    ) -> Result<Vec<u32>, StoreError> {
        let h = self.clone();
        self.store
            .blocking(move |sh| {
                let name = h.name_or_default();
                h.mailbox
                    .expunge(sh, &name, uids.as_deref(), only_deleted, h.origin)
            })
            .await
    }

    /// IMAP APPEND into this mailbox.
    pub async fn append(
        &self,
        message: impl Into<MessageSource>,
        flags: Flags,
        internal_date: Option<i64>,
        quota_bytes: u64,
    ) -> Result<Delivered, StoreError> {
        let (h, src) = (self.clone(), message.into());
        let date = internal_date.unwrap_or_else(super::fsio::now_secs);
        self.store
            .blocking(move |_| {
                let name = h.name_or_default();
                append_blocking(
                    &h.user,
                    &h.mailbox,
                    &name,
                    &src,
                    flags,
                    date,
                    quota_bytes,
                    h.origin,
                    None,
                )
            })
            .await
    }

    /// IMAP COPY into another mailbox of the same user (or this one).
    pub async fn copy(
        &self,
        uids: &[u32],
        dest: &str,
        quota_bytes: u64,
    ) -> Result<CopyResult, StoreError> {
        let dest = self.store.normalize(dest)?;
        let (h, uids) = (self.clone(), uids.to_vec());
        self.store
            .blocking(move |_| {
                let (dst, _) = h.user.mailbox(&dest)?;
                let name = h.name_or_default();
                copy_blocking(
                    &h.user,
                    &h.mailbox,
                    &name,
                    &dst,
                    &dest,
                    &uids,
                    quota_bytes,
                    h.origin,
                )
            })
            .await
    }

    /// IMAP MOVE (RFC 6851): copy, then expunge the copied messages here. Not subject to quota:
    /// it does not grow the user's usage.
    pub async fn move_to(&self, uids: &[u32], dest: &str) -> Result<CopyResult, StoreError> {
        let dest = self.store.normalize(dest)?;
        let (h, uids) = (self.clone(), uids.to_vec());
        self.store
            .blocking(move |sh| {
                let (dst, _) = h.user.mailbox(&dest)?;
                let name = h.name_or_default();
                let res =
                    copy_blocking(&h.user, &h.mailbox, &name, &dst, &dest, &uids, 0, h.origin)?;
                let moved: Vec<u32> = res.mapping.iter().map(|(s, _)| *s).collect();
                h.mailbox
                    .expunge(sh, &name, Some(&moved), false, h.origin)?;
                Ok(res)
            })
            .await
    }
}

fn gone_or(uid: u32, path: &Path, e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StoreError::NoSuchMessage(uid)
    } else {
        at(path)(e)
    }
}
