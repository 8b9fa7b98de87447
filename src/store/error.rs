//! The store's error type: one enum for every caller (LMTP, IMAP, POP3, the admin API).
//!
//! Protocols map these to their replies in one place each; the variants are chosen so that the
//! mapping needs no string matching: [`StoreError::QuotaExceeded`] is LMTP `452 4.2.2` and IMAP
//! `NO [OVERQUOTA]`, [`StoreError::NoSpace`] is LMTP `452 4.3.1`, [`StoreError::MailboxNotFound`]
//! is IMAP `NO [NONEXISTENT]`. [`StoreError::is_temporary`] tells delivery whether to retry.
//! Messages say what to do; they never include message contents.

use std::io;
use std::path::{Path, PathBuf};

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store root lacks its marker file, so it is not a mailstore volume (or the volume is
    /// not mounted and `root` is the bare mount point).
    #[error(
        "{root} is not an initialised mailstore (no MAILSTORE marker): is the volume mounted? \
         Initialise a new, empty volume with `create_if_missing`"
    )]
    NotInitialised { root: PathBuf },
    /// The marker names a format this build cannot read.
    #[error("{root} holds mailstore format {found}; this build reads format {supported}")]
    UnsupportedFormat {
        root: PathBuf,
        found: u32,
        supported: u32,
    },
    /// The user name cannot name a mailbox owner (empty, too long, control characters).
    #[error("invalid user name {0:?}")]
    InvalidUser(String),
    /// The mailbox name breaks a naming rule.
    #[error("invalid mailbox name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// A flag keyword breaks a rule (syntax, length, count).
    #[error("invalid keyword {keyword:?}: {reason}")]
    InvalidKeyword {
        keyword: String,
        reason: &'static str,
    },
    /// No mailbox of that name (or it was deleted while in use).
    #[error("mailbox {0:?} does not exist")]
    MailboxNotFound(String),
    /// CREATE or RENAME onto a name that is taken.
    #[error("mailbox {0:?} already exists")]
    MailboxExists(String),
    /// The operation is not allowed on this mailbox (deleting INBOX, renaming under itself).
    #[error("{0}")]
    NotPermitted(&'static str),
    /// The user holds [`StoreConfig::max_mailboxes`](super::StoreConfig::max_mailboxes).
    #[error("too many mailboxes (limit {0})")]
    TooManyMailboxes(usize),
    /// No message with this UID in the mailbox (never existed or expunged).
    #[error("no message with UID {0}")]
    NoSuchMessage(u32),
    /// Storing the message would take the user past their quota. Temporary: the user may
    /// delete mail.
    #[error("quota exceeded: {used} of {limit} bytes used, {needed} more needed")]
    QuotaExceeded { used: u64, limit: u64, needed: u64 },
    /// The volume (or a filesystem quota) is full. Temporary; nothing half-written remains.
    #[error("the mailstore volume is full ({path}): free space or grow the volume")]
    NoSpace { path: PathBuf },
    /// The message is larger than [`StoreConfig::max_message_size`](super::StoreConfig).
    #[error("message of {size} bytes exceeds the store's limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    /// The mailbox has handed out every UID (2^32 − 1). Needs a new UIDVALIDITY: recreate it.
    #[error("mailbox {0:?} has used every UID: rename it and create a new one")]
    UidsExhausted(String),
    /// A write to the mailbox index failed and could not be rolled back; the mailbox refuses
    /// writes until the store is reopened (which replays the index from disk).
    #[error("mailbox is unavailable after a failed index write ({0}); reopen the store")]
    Unavailable(String),
    /// A file the store wrote is not in the shape it wrote it (`mailctl store check`).
    #[error("corrupt store file {path}: {reason}; run `mailctl store check --repair`")]
    Corrupt { path: PathBuf, reason: String },
    /// Any other I/O failure.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A background task panicked or was cancelled (a bug, not client input).
    #[error("internal store error: {0}")]
    Internal(String),
    /// This node's mailstore lease has run out: it writes nothing more (another node serves
    /// the mailstore, or will in a moment).
    #[error("this node no longer holds the mailstore lease; try again (another node takes over)")]
    Fenced,
}

impl StoreError {
    /// Whether the same request may succeed later (LMTP `4xx` rather than `5xx`).
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            StoreError::QuotaExceeded { .. }
                | StoreError::NoSpace { .. }
                | StoreError::Unavailable(_)
                | StoreError::Io { .. }
                | StoreError::Internal(_)
                | StoreError::NotInitialised { .. }
                | StoreError::Fenced
        )
    }
}

impl StoreError {
    /// An equal error, for reporting one failure to several recipients (`io::Error` is not
    /// `Clone`; the copy keeps the OS error code, or else the kind and message).
    pub(crate) fn duplicate(&self) -> StoreError {
        use StoreError::*;
        match self {
            NotInitialised { root } => NotInitialised { root: root.clone() },
            UnsupportedFormat {
                root,
                found,
                supported,
            } => UnsupportedFormat {
                root: root.clone(),
                found: *found,
                supported: *supported,
            },
            InvalidUser(u) => InvalidUser(u.clone()),
            InvalidName { name, reason } => InvalidName {
                name: name.clone(),
                reason,
            },
            InvalidKeyword { keyword, reason } => InvalidKeyword {
                keyword: keyword.clone(),
                reason,
            },
            MailboxNotFound(n) => MailboxNotFound(n.clone()),
            MailboxExists(n) => MailboxExists(n.clone()),
            NotPermitted(w) => NotPermitted(w),
            TooManyMailboxes(n) => TooManyMailboxes(*n),
            NoSuchMessage(u) => NoSuchMessage(*u),
            QuotaExceeded {
                used,
                limit,
                needed,
            } => QuotaExceeded {
                used: *used,
                limit: *limit,
                needed: *needed,
            },
            NoSpace { path } => NoSpace { path: path.clone() },
            TooLarge { size, limit } => TooLarge {
                size: *size,
                limit: *limit,
            },
            UidsExhausted(n) => UidsExhausted(n.clone()),
            Unavailable(w) => Unavailable(w.clone()),
            Corrupt { path, reason } => Corrupt {
                path: path.clone(),
                reason: reason.clone(),
            },
            Io { path, source } => Io {
                path: path.clone(),
                source: match source.raw_os_error() {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(source.kind(), source.to_string()),
                },
            },
            Internal(w) => Internal(w.clone()),
            Fenced => Fenced,
        }
    }
}

/// Wraps an I/O error with the path it concerns, turning "disk full" and "filesystem quota
/// exceeded" into [`StoreError::NoSpace`] so callers can answer `452 4.3.1`.
pub(crate) fn io_err(path: &Path, e: io::Error) -> StoreError {
    if is_no_space(&e) {
        StoreError::NoSpace {
            path: path.to_path_buf(),
        }
    } else {
        StoreError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// ENOSPC or EDQUOT.
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT
    )
}

/// Builds a closure for `map_err` that attaches `path`.
pub(crate) fn at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |e| io_err(path, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_and_fs_quota_become_no_space() {
        for code in [nix::libc::ENOSPC, nix::libc::EDQUOT] {
            let e = io_err(Path::new("/x"), io::Error::from_raw_os_error(code));
            assert!(matches!(e, StoreError::NoSpace { .. }), "{code}: {e}");
            assert!(e.is_temporary());
        }
        let e = io_err(
            Path::new("/x"),
            io::Error::from_raw_os_error(nix::libc::EIO),
        );
        assert!(matches!(e, StoreError::Io { .. }));
    }

    #[test]
    fn permanent_errors_are_not_temporary() {
        assert!(!StoreError::MailboxNotFound("x".into()).is_temporary());
        assert!(!StoreError::TooLarge { size: 2, limit: 1 }.is_temporary());
    }
}
