//! What sessions see of a mailbox: message metadata, snapshots, STORE results and the change
//! events broadcast to every session on a mailbox. Plain data, no I/O, no locks.
//!
//! Security note: none of these types carries message contents, so events can be fanned out to
//! many sessions and logged without exposing mail.

use std::sync::Arc;

use super::flags::Flags;

/// What the store knows about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub uid: u32,
    /// The CONDSTORE mod-sequence of the message's last change.
    pub modseq: u64,
    pub flags: Flags,
    /// IMAP INTERNALDATE, seconds since the Unix epoch.
    pub internal_date: i64,
    /// RFC822.SIZE: the stored bytes.
    pub size: u64,
    /// File name under the mailbox's `msg/`; several mailboxes may link the same file.
    pub(crate) file: Arc<str>,
    /// CRC-32 of the message bytes.
    pub(crate) crc: u32,
}

/// A consistent view of a mailbox at one instant. Cheap to take: the message list is shared
/// with the mailbox until its next change, which then copies the list if a snapshot still
/// holds it. So a session should build its own view (sequence numbers, flags) from a snapshot
/// and the events that follow, and drop the snapshot rather than keep it for the session.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    /// Sorted by UID; the position + 1 is the IMAP message sequence number at this instant.
    pub messages: Arc<Vec<MessageMeta>>,
}

impl Snapshot {
    /// The message with this UID.
    pub fn get(&self, uid: u32) -> Option<&MessageMeta> {
        self.messages
            .binary_search_by_key(&uid, |m| m.uid)
            .ok()
            .map(|i| &self.messages[i])
    }
}

/// A message's flags after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagUpdate {
    pub uid: u32,
    pub modseq: u64,
    pub flags: Flags,
}

/// The result of a STORE.
#[derive(Debug, Clone, Default)]
pub struct StoreFlagsOutcome {
    /// Messages whose flags changed, all at one new modseq.
    pub updated: Vec<FlagUpdate>,
    /// Messages that already had the resulting flags (no new modseq, RFC 7162).
    pub unchanged: Vec<FlagUpdate>,
    /// UIDs refused because their modseq exceeded `UNCHANGEDSINCE` (the `MODIFIED` set).
    pub conflicts: Vec<u32>,
}

/// A change to a mailbox, broadcast to every session that subscribed. `origin` is the
/// [`MailboxHandle::origin`](super::MailboxHandle::origin) that made it (0: delivery or the
/// store itself), so a session can tell its own changes from others'.
#[derive(Debug, Clone)]
pub enum MailboxEvent {
    /// New messages (IMAP `EXISTS`).
    Exists {
        messages: Vec<MessageMeta>,
        uidnext: u32,
        origin: u64,
    },
    /// Flags changed (IMAP `FETCH (FLAGS MODSEQ)`).
    Flags {
        updates: Vec<FlagUpdate>,
        origin: u64,
    },
    /// Messages removed (IMAP `EXPUNGE` / `VANISHED`).
    Expunge {
        uids: Vec<u32>,
        modseq: u64,
        origin: u64,
    },
    /// The mailbox now has another name. After a rename of INBOX this mailbox holds the old
    /// INBOX's messages under the new name and INBOX is a new, empty mailbox.
    Renamed { name: String },
    /// The mailbox was deleted; every operation on it now fails.
    Deleted,
}
