//! The message store on the mailstore volume: per-user mailboxes, messages as files, an
//! append-only index per mailbox, quota accounting, and change notifications for sessions.
//!
//! Its job is to keep mail: every write is durable before it is acknowledged (message file
//! fsynced and renamed into place, index record appended and fsynced, then the directory), and
//! after a crash at any instant the store opens consistently — each message fully present or
//! absent — repairing leftovers as each user is first loaded (module `recover`). `check` verifies
//! and repairs on demand. Only LMTP delivery and IMAP/POP3 sessions call it (invariant 5); it
//! never speaks a protocol, never consults the directory (the caller passes the quota), and
//! assumes it is the only process writing the volume (the Raft lease guarantees that), so its
//! locks are in-process: one per user for the mailbox list, two per mailbox (writers, state).
//! Users are loaded lazily and evicted when idle, so opening a volume of tens of thousands of
//! users is cheap.
//!
//! Layout: `<root>/MAILSTORE` (format marker), `<root>/tmp/` (content staged for several
//! mailboxes), `<root>/users/<shard>/<user>/` (module `user`).
//!
//! Security note: user and mailbox names never become paths unencoded (module `names`); every
//! client-supplied value (names, flags, UIDs, message sizes) is validated or bounded; a store
//! root without the marker is refused, so an unmounted volume's bare mount point is never
//! filled with mail.

mod check;
mod error;
mod fanout;
mod flags;
mod fsio;
mod handle;
mod index;
mod mailbox;
mod manage;
mod names;
mod once;
mod record;
mod recover;
mod user;
mod vacation;
mod view;
mod write;

#[cfg(test)]
mod tests;

pub use check::{CheckReport, Finding, FindingKind};
pub use error::StoreError;
pub use fanout::DeliveryTarget;
pub use flags::{FlagOp, Flags, SystemFlag};
pub use fsio::WriteFence;
pub use handle::{MailboxHandle, MailboxStatus};
pub use manage::MailboxInfo;
pub use names::{INBOX, SEPARATOR};
pub use user::{SpecialUse, Usage};
pub use view::{FlagUpdate, MailboxEvent, MessageMeta, Snapshot, StoreFlagsOutcome};
pub use write::{CopyResult, Delivered, MessageSource};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use error::at;
use fsio::{fsync_dir, write_atomic, Faults};
use user::{UsageCounters, UserState};

/// The volume format this build reads and writes.
pub const FORMAT: u32 = 1;
/// The marker file at the store root.
pub const MARKER: &str = "MAILSTORE";

/// A mailbox every user gets from [`Store::ensure_default_mailboxes`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultMailbox {
    pub name: String,
    #[serde(default)]
    pub special_use: Option<SpecialUse>,
}

/// Store settings; every limit has a default. (The root is passed to [`Store::open`].)
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Initialise an empty root (write the marker). Dev mode only: in production the volume
    /// is initialised once, and a missing marker means it is not mounted.
    pub create_if_missing: bool,
    /// Largest message stored, in bytes (0 = no limit). Protocols enforce their own, smaller
    /// limits first; this one protects the volume.
    pub max_message_size: u64,
    /// Mailboxes per user (0 = no limit).
    pub max_mailboxes: usize,
    /// Longest mailbox name, in UTF-8 bytes.
    pub max_mailbox_name: usize,
    /// Deepest mailbox hierarchy.
    pub max_depth: usize,
    /// Keywords per message.
    pub max_keywords: usize,
    /// Longest keyword, in bytes.
    pub max_keyword_len: usize,
    /// Events buffered per mailbox for slow sessions before they must resynchronise.
    pub event_capacity: usize,
    /// Compact an index once it holds at least this many records and more than twice as many
    /// as there are messages.
    pub compact_min_records: u64,
    /// Users kept in memory; beyond it, users with no open handle are dropped (their state
    /// is reloaded from disk when next used).
    pub max_loaded_users: usize,
    /// Mailboxes created for every user.
    pub default_mailboxes: Vec<DefaultMailbox>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let d = |name: &str, special_use| DefaultMailbox {
            name: name.into(),
            special_use,
        };
        StoreConfig {
            create_if_missing: false,
            max_message_size: 256 << 20,
            max_mailboxes: 10_000,
            max_mailbox_name: 1024,
            max_depth: 32,
            max_keywords: 64,
            max_keyword_len: 128,
            event_capacity: 1024,
            compact_min_records: 1024,
            max_loaded_users: 4096,
            default_mailboxes: vec![
                d(INBOX, None),
                d("Sent", Some(SpecialUse::Sent)),
                d("Drafts", Some(SpecialUse::Drafts)),
                d("Trash", Some(SpecialUse::Trash)),
                d("Junk", Some(SpecialUse::Junk)),
            ],
        }
    }
}

/// What every part of the store shares.
pub(crate) struct Shared {
    pub root: PathBuf,
    pub config: StoreConfig,
    pub faults: Faults,
    next_origin: AtomicU64,
}

/// A user's slot: loaded at most once at a time, by whoever asks first.
#[derive(Default)]
struct UserSlot {
    cell: tokio::sync::OnceCell<Arc<UserState>>,
}

struct StoreInner {
    sh: Arc<Shared>,
    users: Mutex<HashMap<String, Arc<UserSlot>>>,
    /// Per-user counters, kept across evictions so statistics stay cheap.
    usage: Mutex<HashMap<String, Arc<UsageCounters>>>,
}

/// The message store. Cheap to clone; one per process and volume.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

#[derive(serde::Serialize, Deserialize)]
struct Marker {
    format: u32,
}

impl Store {
    /// Opens the store at `root` (the volume's mount point). Cheap: users are loaded, and
    /// repaired if needed, when first used.
    pub fn open(root: impl Into<PathBuf>, config: StoreConfig) -> Result<Store, StoreError> {
        Store::open_fenced(root, config, None)
    }

    /// [`Store::open`] for the lease holder: every durable step first checks `fence`, so
    /// nothing is written once the lease has run out (see [`WriteFence`]).
    pub fn open_fenced(
        root: impl Into<PathBuf>,
        config: StoreConfig,
        fence: Option<Arc<WriteFence>>,
    ) -> Result<Store, StoreError> {
        let root = root.into();
        let marker = root.join(MARKER);
        let faults = Faults::with_fence(fence);
        match std::fs::read(&marker) {
            Ok(bytes) => {
                let m: Marker =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                        path: marker.clone(),
                        reason: e.to_string(),
                    })?;
                if m.format != FORMAT {
                    return Err(StoreError::UnsupportedFormat {
                        root,
                        found: m.format,
                        supported: FORMAT,
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !config.create_if_missing {
                    return Err(StoreError::NotInitialised { root });
                }
                std::fs::create_dir_all(&root).map_err(at(&root))?;
                let json = serde_json::to_vec(&Marker { format: FORMAT })
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                write_atomic(&marker, &json, &faults)?;
            }
            Err(e) => return Err(at(&marker)(e)),
        }
        for sub in ["users", fanout::STAGING] {
            let dir = root.join(sub);
            if !dir.is_dir() {
                std::fs::create_dir_all(&dir).map_err(at(&dir))?;
                fsync_dir(&root)?;
            }
        }
        // Content staged for several mailboxes by a process that stopped: every mailbox that
        // got it holds its own link, so the staged name can go.
        let staging = root.join(fanout::STAGING);
        for n in fsio::list_dir(&staging)? {
            fsio::remove_if_exists(&staging.join(n))?;
        }
        Ok(Store {
            inner: Arc::new(StoreInner {
                sh: Arc::new(Shared {
                    root,
                    config,
                    faults,
                    next_origin: AtomicU64::new(1),
                }),
                users: Mutex::new(HashMap::new()),
                usage: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.sh.root
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.sh.config
    }

    #[cfg(test)]
    pub(crate) fn faults(&self) -> &Faults {
        &self.inner.sh.faults
    }

    /// Runs blocking store work off the async threads.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Shared) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let sh = Arc::clone(&self.inner.sh);
        tokio::task::spawn_blocking(move || f(&sh))
            .await
            .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }

    /// Validates and normalises a mailbox name with this store's limits.
    pub fn normalize(&self, name: &str) -> Result<String, StoreError> {
        let c = self.config();
        names::normalize_mailbox(name, c.max_mailbox_name, c.max_depth)
    }

    fn lock_users(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<UserSlot>>> {
        // The map holds no invariant a panic could break half-way.
        self.inner.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A user, loading (and repairing) it on first use.
    pub(crate) async fn user(&self, name: &str) -> Result<Arc<UserState>, StoreError> {
        names::check_user(name)?;
        let slot = {
            let mut users = self.lock_users();
            if !users.contains_key(name) && users.len() >= self.config().max_loaded_users {
                evict_idle(&mut users);
            }
            Arc::clone(users.entry(name.to_string()).or_default())
        };
        if let Some(u) = slot.cell.get() {
            return Ok(Arc::clone(u));
        }
        // Loading repairs files, so it must never run twice at once for a user. The cell
        // serialises loads, but a caller that gives up mid-load (a timed-out session) would
        // let the next caller start another while the first one's blocking work goes on: so
        // the load runs in its own task, which finishes whatever happens to the caller.
        let counters = {
            let mut usage = self.inner.usage.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(usage.entry(name.to_string()).or_default())
        };
        let (sh, n) = (Arc::clone(&self.inner.sh), name.to_string());
        let task = tokio::spawn(async move {
            let loaded = slot
                .cell
                .get_or_try_init(|| async {
                    let u = tokio::task::spawn_blocking(move || user::load(sh, &n, counters))
                        .await
                        .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))??;
                    Ok::<_, StoreError>(Arc::new(u))
                })
                .await?;
            Ok::<_, StoreError>(Arc::clone(loaded))
        });
        task.await
            .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }

    /// The user if it is loaded now.
    pub(crate) fn loaded_user(&self, name: &str) -> Option<Arc<UserState>> {
        self.lock_users()
            .get(name)
            .and_then(|s| s.cell.get().cloned())
    }

    /// Runs `f` on a loaded user off the async threads.
    async fn with_user<T, F>(&self, user: &str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&UserState) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let u = self.user(user).await?;
        self.blocking(move |_| f(&u)).await
    }

    /// LMTP delivery (and Sieve `fileinto`): stores a message durably and returns its UID.
    /// Delivery to INBOX creates INBOX if needed; any other mailbox must exist.
    /// `quota_bytes` is the user's `quota_bytes` from the directory (0 = unlimited).
    pub async fn deliver(
        &self,
        user: &str,
        mailbox: &str,
        message: impl Into<MessageSource>,
        flags: Flags,
        internal_date: Option<i64>,
        quota_bytes: u64,
    ) -> Result<Delivered, StoreError> {
        let target = DeliveryTarget {
            user: user.to_string(),
            mailbox: mailbox.to_string(),
            flags,
            quota_bytes,
            key: None,
        };
        let date = internal_date.unwrap_or_else(fsio::now_secs);
        self.deliver_target(target, message.into(), date).await
    }

    /// One delivery, at most once per `target.key`.
    async fn deliver_target(
        &self,
        t: DeliveryTarget,
        src: MessageSource,
        date: i64,
    ) -> Result<Delivered, StoreError> {
        let name = self.normalize(&t.mailbox)?;
        self.with_user(&t.user, move |u| {
            once::once(&u.deliveries, t.key.as_deref(), |file| {
                if name == INBOX {
                    u.ensure_inbox()?;
                }
                let (mb, _) = u.mailbox(&name)?;
                write::append_blocking(u, &mb, &name, &src, t.flags, date, t.quota_bytes, 0, file)
            })
        })
        .await
    }

    /// IMAP CREATE (with RFC 6154's `USE` when given). Superior names are not created.
    pub async fn create_mailbox(
        &self,
        user: &str,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<(), StoreError> {
        let name = self.normalize(name)?;
        self.with_user(user, move |u| u.create_mailbox(&name, special_use))
            .await
    }

    /// IMAP DELETE. INBOX cannot be deleted; inferior mailboxes stay.
    pub async fn delete_mailbox(&self, user: &str, name: &str) -> Result<(), StoreError> {
        let name = self.normalize(name)?;
        self.with_user(user, move |u| u.delete_mailbox(&name)).await
    }

    /// IMAP RENAME, inferiors included (INBOX: see RFC 3501 §6.3.5).
    pub async fn rename_mailbox(&self, user: &str, old: &str, new: &str) -> Result<(), StoreError> {
        let (old, new) = (self.normalize(old)?, self.normalize(new)?);
        self.with_user(user, move |u| u.rename_mailbox(&old, &new))
            .await
    }

    /// IMAP LIST: every mailbox of the user, sorted by name.
    pub async fn list_mailboxes(&self, user: &str) -> Result<Vec<MailboxInfo>, StoreError> {
        self.with_user(user, |u| u.list()).await
    }

    /// Creates the configured default mailboxes that are missing (INBOX, Sent, Drafts, Trash,
    /// Junk with their SPECIAL-USE) and subscribes them. Returns the names created.
    pub async fn ensure_default_mailboxes(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let defaults: Vec<_> = self
            .config()
            .default_mailboxes
            .iter()
            .map(|d| (d.name.clone(), d.special_use))
            .collect();
        self.with_user(user, move |u| u.ensure_defaults(&defaults))
            .await
    }

    /// IMAP SUBSCRIBE.
    pub async fn subscribe(&self, user: &str, name: &str) -> Result<(), StoreError> {
        let name = self.normalize(name)?;
        self.with_user(user, move |u| u.set_subscribed(&name, true))
            .await
    }

    /// IMAP UNSUBSCRIBE.
    pub async fn unsubscribe(&self, user: &str, name: &str) -> Result<(), StoreError> {
        let name = self.normalize(name)?;
        self.with_user(user, move |u| u.set_subscribed(&name, false))
            .await
    }

    /// Subscribed names, sorted (they need not exist).
    pub async fn subscriptions(&self, user: &str) -> Result<Vec<String>, StoreError> {
        self.with_user(user, |u| u.subscriptions()).await
    }

    /// IMAP SELECT/EXAMINE, POP3 login: a handle on one mailbox.
    pub async fn open_mailbox(&self, user: &str, name: &str) -> Result<MailboxHandle, StoreError> {
        let name = self.normalize(name)?;
        let u = self.user(user).await?;
        let (mailbox, _) = u.mailbox(&name)?;
        Ok(MailboxHandle {
            store: self.clone(),
            user: u,
            mailbox,
            origin: self.inner.sh.next_origin.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// IMAP STATUS without opening a handle.
    pub async fn status(&self, user: &str, name: &str) -> Result<MailboxStatus, StoreError> {
        let name = self.normalize(name)?;
        let u = self.user(user).await?;
        let (mb, _) = u.mailbox(&name)?;
        let snap = mb.lock()?.snapshot();
        Ok(MailboxStatus::of(&snap))
    }

    /// A user's usage (loads the user if needed).
    pub async fn usage(&self, user: &str) -> Result<Usage, StoreError> {
        Ok(self.user(user).await?.usage.get())
    }

    /// Usage of every user loaded since the store was opened (for metrics; see
    /// [`Store::load_all`] to include everyone). No I/O, no per-user locks.
    pub fn usage_snapshot(&self) -> Vec<(String, Usage)> {
        let usage = self.inner.usage.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = usage.iter().map(|(u, c)| (u.clone(), c.get())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Loads every user on the volume once (repairing crash leftovers and filling the usage
    /// statistics), keeping at most `max_loaded_users` in memory. Returns the number of users.
    pub async fn load_all(&self) -> Result<usize, StoreError> {
        let root = self.root().to_path_buf();
        let names = self.blocking(move |_| check::user_names(&root)).await?;
        for name in &names {
            self.user(name).await?;
        }
        Ok(names.len())
    }
}

/// Drops users nobody holds (no handle, no operation in progress). Their counters stay.
fn evict_idle(users: &mut HashMap<String, Arc<UserSlot>>) {
    users.retain(|_, slot| {
        Arc::strong_count(slot) > 1 || slot.cell.get().is_some_and(|u| Arc::strong_count(u) > 1)
    });
}
