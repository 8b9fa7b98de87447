//! One user's part of the store: the mailbox list (`mailboxes.json`), the open mailboxes, the
//! quota counters, and loading all of it back after any stop.
//!
//! Layout under the user's directory (see [`user_dir`]):
//! `mailboxes.json` maps mailbox names to numeric directory ids and holds the subscriptions and
//! the UIDVALIDITY counter; `mbox/<id>/` is a mailbox (`index`, `msg/`, and a `name` hint used
//! only to recover a lost list); `tmp/` holds messages being written and mailboxes being built;
//! `trash/` holds deleted mailboxes until they are removed. The list is replaced atomically, so
//! creating, deleting or renaming a whole hierarchy is one durable step.
//!
//! Loading repairs what a crash leaves (temp files, half-deleted or half-created mailbox
//! directories) and reports it; it never deletes a mailbox directory that holds messages unless
//! it was already moved to the trash. Security note: the user name only reaches the file system
//! through [`names::user_dir_name`](super::names::user_dir_name).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::check::{Finding, FindingKind};
use super::error::{at, StoreError};
use super::fsio::{list_dir, now_secs, remove_if_exists, write_atomic};
use super::mailbox::Mailbox;
use super::names::{normalize_mailbox, user_dir_name};
use super::once::Deliveries;
use super::recover;
use super::write::Delivered;
use super::Shared;

/// The user's mailbox list file.
pub(crate) const META_FILE: &str = "mailboxes.json";
const META_VERSION: u32 = 1;
/// A mailbox directory's name hint (for recovery only; `mailboxes.json` is authoritative).
pub(crate) const NAME_HINT: &str = "name";

/// SPECIAL-USE attributes (RFC 6154).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpecialUse {
    #[serde(rename = "\\All")]
    All,
    #[serde(rename = "\\Archive")]
    Archive,
    #[serde(rename = "\\Drafts")]
    Drafts,
    #[serde(rename = "\\Flagged")]
    Flagged,
    #[serde(rename = "\\Junk")]
    Junk,
    #[serde(rename = "\\Sent")]
    Sent,
    #[serde(rename = "\\Trash")]
    Trash,
}

impl SpecialUse {
    const ALL: [SpecialUse; 7] = [
        SpecialUse::All,
        SpecialUse::Archive,
        SpecialUse::Drafts,
        SpecialUse::Flagged,
        SpecialUse::Junk,
        SpecialUse::Sent,
        SpecialUse::Trash,
    ];

    /// The IMAP attribute, with its backslash.
    pub fn imap_name(self) -> &'static str {
        match self {
            SpecialUse::All => "\\All",
            SpecialUse::Archive => "\\Archive",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Flagged => "\\Flagged",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Trash => "\\Trash",
        }
    }

    /// Parses an attribute case-insensitively.
    pub fn from_imap(name: &str) -> Option<SpecialUse> {
        SpecialUse::ALL
            .into_iter()
            .find(|u| u.imap_name().eq_ignore_ascii_case(name))
    }
}

/// Messages and bytes a user stores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub messages: u64,
    /// Includes messages being delivered right now (reserved before their bytes are written).
    pub bytes: u64,
}

/// Lock-free quota accounting shared by the user's mailboxes.
#[derive(Debug, Default)]
pub(crate) struct UsageCounters {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
}

impl UsageCounters {
    /// Reserves `bytes` against `limit` (0 = unlimited), atomically with other deliveries.
    pub(crate) fn reserve(&self, bytes: u64, limit: u64) -> Result<(), StoreError> {
        let mut cur = self.bytes.load(Ordering::Acquire);
        loop {
            if limit > 0 && cur.saturating_add(bytes) > limit {
                return Err(StoreError::QuotaExceeded {
                    used: cur,
                    limit,
                    needed: bytes,
                });
            }
            match self.bytes.compare_exchange_weak(
                cur,
                cur + bytes,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }

    pub(crate) fn release(&self, bytes: u64, messages: u64) {
        let sub = |v: u64, d: u64| Some(v.saturating_sub(d));
        let _ = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| sub(v, bytes));
        let _ = self
            .messages
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| sub(v, messages));
    }

    pub(crate) fn get(&self) -> Usage {
        Usage {
            messages: self.messages.load(Ordering::Acquire),
            bytes: self.bytes.load(Ordering::Acquire),
        }
    }

    fn set(&self, u: Usage) {
        self.messages.store(u.messages, Ordering::Release);
        self.bytes.store(u.bytes, Ordering::Release);
    }
}

/// The persisted mailbox list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MetaFile {
    pub version: u32,
    /// The owner, checked on load so a directory mix-up can never serve another user's mail.
    pub user: String,
    pub next_id: u64,
    /// Every UIDVALIDITY handed out is below this, so a recreated name never reuses one.
    pub next_uidvalidity: u32,
    pub mailboxes: Vec<MetaEntry>,
    #[serde(default)]
    pub subscriptions: BTreeSet<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MetaEntry {
    pub name: String,
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub special_use: Option<SpecialUse>,
}

impl MetaFile {
    fn new(user: &str) -> MetaFile {
        MetaFile {
            version: META_VERSION,
            user: user.to_string(),
            next_id: 1,
            next_uidvalidity: 1,
            mailboxes: Vec::new(),
            subscriptions: BTreeSet::new(),
        }
    }

    /// A fresh UIDVALIDITY: the current time when that is higher (so values stay unique even
    /// if a list is lost and rebuilt), else one more than the last.
    pub(crate) fn alloc_uidvalidity(&mut self) -> u32 {
        let now = now_secs().clamp(1, u32::MAX as i64 - 1) as u32;
        let v = self.next_uidvalidity.max(now);
        self.next_uidvalidity = v.saturating_add(1);
        v
    }

    pub(crate) fn find(&self, name: &str) -> Option<&MetaEntry> {
        self.mailboxes.iter().find(|e| e.name == name)
    }
}

/// Where a user's files live.
pub(crate) fn user_dir(root: &Path, user: &str) -> PathBuf {
    let (shard, name) = user_dir_name(user);
    root.join("users").join(shard).join(name)
}

/// A loaded user.
pub(crate) struct UserState {
    pub name: String,
    pub dir: PathBuf,
    pub sh: Arc<Shared>,
    pub usage: Arc<UsageCounters>,
    pub(crate) inner: Mutex<UserInner>,
    /// Names of message files being written (in `tmp/` or already in a `msg/` but not yet
    /// indexed), so `check` does not mistake work in progress for crash leftovers.
    pub inflight: Mutex<HashSet<Arc<str>>>,
    /// What loading repaired.
    pub load_findings: Vec<Finding>,
    /// Keyed deliveries already stored, so a retry is not stored twice (module `once`).
    pub deliveries: Mutex<Deliveries>,
}

pub(crate) struct UserInner {
    pub meta: MetaFile,
    pub open: HashMap<u64, Arc<Mailbox>>,
    /// Whether the user directory exists (it is created with the first mailbox).
    pub on_disk: bool,
}

impl UserState {
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, UserInner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Unavailable("a previous operation panicked".into()))
    }

    pub(crate) fn mbox_dir(&self, id: u64) -> PathBuf {
        self.dir.join("mbox").join(id.to_string())
    }

    /// The mailbox of that (normalised) name and its list entry.
    pub(crate) fn mailbox(&self, name: &str) -> Result<(Arc<Mailbox>, MetaEntry), StoreError> {
        let inner = self.lock()?;
        let entry = inner
            .meta
            .find(name)
            .ok_or_else(|| StoreError::MailboxNotFound(name.to_string()))?;
        let mb = inner
            .open
            .get(&entry.id)
            .ok_or_else(|| StoreError::MailboxNotFound(name.to_string()))?;
        Ok((Arc::clone(mb), entry.clone()))
    }

    /// The current name of mailbox `id` (it changes on rename).
    pub(crate) fn name_of(&self, id: u64) -> Option<String> {
        let inner = self.lock().ok()?;
        inner
            .meta
            .mailboxes
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.name.clone())
    }

    pub(crate) fn inflight_add(&self, name: &Arc<str>) {
        if let Ok(mut s) = self.inflight.lock() {
            s.insert(Arc::clone(name));
        }
    }

    pub(crate) fn inflight_remove(&self, name: &str) {
        if let Ok(mut s) = self.inflight.lock() {
            s.remove(name);
        }
    }

    pub(crate) fn is_inflight(&self, name: &str) -> bool {
        self.inflight
            .lock()
            .map(|s| s.contains(name))
            .unwrap_or(false)
    }
}

/// What is on disk for a user, read without changing anything.
pub(crate) struct UserScan {
    /// `None`: no list file (new user, or lost).
    pub meta: Option<MetaFile>,
    /// The list file exists but cannot be read.
    pub meta_damaged: Option<String>,
    /// Mailbox directory ids that exist.
    pub dir_ids: BTreeSet<u64>,
    pub findings: Vec<Finding>,
}

/// Reads a user directory's list and leftovers.
pub(crate) fn scan_user(dir: &Path) -> Result<UserScan, StoreError> {
    let mut s = UserScan {
        meta: None,
        meta_damaged: None,
        dir_ids: BTreeSet::new(),
        findings: Vec::new(),
    };
    for n in list_dir(&dir.join("tmp"))? {
        s.findings.push(Finding::new(FindingKind::TempFile, n));
    }
    for n in list_dir(&dir.join("trash"))? {
        s.findings.push(Finding::new(FindingKind::TrashLeftover, n));
    }
    if dir.join(META_FILE).with_extension("tmp").exists() {
        s.findings.push(Finding::new(
            FindingKind::MetaTempLeftover,
            "mailboxes.tmp".into(),
        ));
    }
    for n in list_dir(&dir.join("mbox"))? {
        match n.parse::<u64>() {
            Ok(id) if id.to_string() == n => {
                s.dir_ids.insert(id);
            }
            _ => s
                .findings
                .push(Finding::new(FindingKind::ForeignFile, format!("mbox/{n}"))),
        }
    }
    let path = dir.join(META_FILE);
    match fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<MetaFile>(&bytes) {
            Ok(m) if m.version == META_VERSION => s.meta = Some(m),
            Ok(m) => {
                return Err(StoreError::Corrupt {
                    path,
                    reason: format!("list format {}, this build reads {META_VERSION}", m.version),
                })
            }
            Err(e) => s.meta_damaged = Some(e.to_string()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !s.dir_ids.is_empty() {
                s.meta_damaged = Some("mailbox list missing".into());
            }
        }
        Err(e) => return Err(at(&path)(e)),
    }
    if let Some(why) = &s.meta_damaged {
        s.findings
            .push(Finding::new(FindingKind::DamagedUserMeta, why.clone()));
    }
    if let Some(m) = &s.meta {
        for e in &m.mailboxes {
            if !s.dir_ids.contains(&e.id) {
                s.findings.push(
                    Finding::new(FindingKind::MissingMailboxDir, format!("mbox/{}", e.id))
                        .at(&m.user, Some(&e.name)),
                );
            }
        }
    }
    Ok(s)
}

/// Whether a mailbox directory holds no message at all (a create that crashed before its
/// list entry was written).
pub(crate) fn is_empty_mailbox_dir(dir: &Path) -> bool {
    match recover::scan(dir) {
        Ok(s) => s.live.is_empty() && s.unindexed.is_empty(),
        Err(_) => false,
    }
}

fn remove_any(path: &Path) -> Result<(), StoreError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(at(path)),
        Ok(_) => remove_if_exists(path),
        Err(_) => Ok(()),
    }
}

/// Loads a user, repairing crash leftovers (see the module documentation).
pub(crate) fn load(
    sh: Arc<Shared>,
    name: &str,
    usage: Arc<UsageCounters>,
) -> Result<UserState, StoreError> {
    let dir = user_dir(&sh.root, name);
    let on_disk = dir.is_dir();
    let scan = scan_user(&dir)?;
    let mut found = Vec::new();
    for f in &scan.findings {
        found.push(f.clone().at(name, f.mailbox.as_deref()));
    }
    for sub in ["tmp", "trash"] {
        for n in list_dir(&dir.join(sub))? {
            remove_any(&dir.join(sub).join(n))?;
        }
        if on_disk {
            // Recreated if someone removed it, so writes never fail on a missing directory.
            fs::create_dir_all(dir.join(sub)).map_err(at(&dir))?;
        }
    }
    remove_if_exists(&dir.join(META_FILE).with_extension("tmp"))?;
    let mut changed = scan.meta_damaged.is_some();
    if scan.meta_damaged.is_some() && dir.join(META_FILE).exists() {
        let aside = dir.join(format!("{META_FILE}.damaged-{}", now_secs()));
        fs::rename(dir.join(META_FILE), &aside).map_err(at(&aside))?;
    }
    let mut meta = scan.meta.unwrap_or_else(|| MetaFile::new(name));
    if meta.user != name {
        return Err(StoreError::Corrupt {
            path: dir.join(META_FILE),
            reason: format!("belongs to user {:?}, not {name:?}", meta.user),
        });
    }
    let before = meta.mailboxes.len();
    meta.mailboxes.retain(|e| scan.dir_ids.contains(&e.id));
    changed |= meta.mailboxes.len() != before;
    let listed: HashSet<u64> = meta.mailboxes.iter().map(|e| e.id).collect();
    // Directories the list does not name: a create that crashed (empty) or a lost list.
    for &id in scan.dir_ids.iter().filter(|id| !listed.contains(id)) {
        let mdir = dir.join("mbox").join(id.to_string());
        if scan.meta_damaged.is_none() && is_empty_mailbox_dir(&mdir) {
            remove_any(&mdir)?;
            found.push(
                Finding::new(FindingKind::MailboxDirLeftover, format!("mbox/{id}")).at(name, None),
            );
            continue;
        }
        let hint = fs::read_to_string(mdir.join(NAME_HINT)).unwrap_or_default();
        let cfg = &sh.config;
        let mut mname = normalize_mailbox(hint.trim_end(), cfg.max_mailbox_name, cfg.max_depth)
            .unwrap_or_else(|_| format!("Recovered/{id}"));
        let mut n = 1;
        while meta.find(&mname).is_some() {
            mname = format!("Recovered/{id}-{n}");
            n += 1;
        }
        found.push(
            Finding::new(FindingKind::OrphanMailbox, format!("mbox/{id} adopted"))
                .at(name, Some(&mname)),
        );
        meta.mailboxes.push(MetaEntry {
            name: mname,
            id,
            special_use: None,
        });
        changed = true;
    }
    if let Some(max) = scan.dir_ids.iter().max() {
        meta.next_id = meta.next_id.max(max + 1);
    }
    let mut open = HashMap::new();
    let mut total = Usage::default();
    for e in meta.mailboxes.clone() {
        let mdir = dir.join("mbox").join(e.id.to_string());
        let uv_before = meta.next_uidvalidity;
        let (mb, fixes) = recover::load(&sh, e.id, &mdir, Arc::clone(&usage), &mut || {
            meta.alloc_uidvalidity()
        })?;
        changed |= meta.next_uidvalidity != uv_before;
        for f in fixes {
            found.push(f.at(name, Some(&e.name)));
        }
        let (bytes, messages) = mb.totals()?;
        total.bytes += bytes;
        total.messages += messages;
        open.insert(e.id, Arc::new(mb));
    }
    if changed {
        let json =
            serde_json::to_vec_pretty(&meta).map_err(|e| StoreError::Internal(e.to_string()))?;
        write_atomic(&dir.join(META_FILE), &json, &sh.faults)?;
    }
    usage.set(total);
    for f in &found {
        if f.kind.is_damage() {
            tracing::warn!(user = name, mailbox = ?f.mailbox, kind = ?f.kind, detail = %f.detail, "store damage repaired at load");
        } else {
            tracing::info!(user = name, mailbox = ?f.mailbox, kind = ?f.kind, detail = %f.detail, "crash leftover repaired at load");
        }
    }
    let mut deliveries = Deliveries::default();
    for mb in open.values() {
        let snap = mb.lock()?.snapshot();
        for m in snap.messages.iter() {
            let d = Delivered {
                uid: m.uid,
                uidvalidity: snap.uidvalidity,
                size: m.size,
            };
            deliveries.remember_file(&m.file, d);
        }
    }
    Ok(UserState {
        name: name.to_string(),
        dir,
        sh,
        usage,
        inner: Mutex::new(UserInner {
            meta,
            open,
            on_disk,
        }),
        inflight: Mutex::new(HashSet::new()),
        load_findings: found,
        deliveries: Mutex::new(deliveries),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_reservations_are_atomic_and_bounded() {
        let u = UsageCounters::default();
        u.reserve(60, 100).unwrap();
        assert!(matches!(
            u.reserve(41, 100),
            Err(StoreError::QuotaExceeded {
                used: 60,
                limit: 100,
                needed: 41
            })
        ));
        u.reserve(40, 100).unwrap();
        u.release(100, 0);
        u.reserve(1_000_000, 0).unwrap();
        u.release(u64::MAX, 5);
        assert_eq!(u.get(), Usage::default());
    }

    #[test]
    fn uidvalidity_is_monotonic() {
        let mut m = MetaFile::new("u");
        let a = m.alloc_uidvalidity();
        let b = m.alloc_uidvalidity();
        assert!(b > a && a >= 1_600_000_000);
    }

    #[test]
    fn special_use_names() {
        assert_eq!(SpecialUse::from_imap("\\sent"), Some(SpecialUse::Sent));
        assert_eq!(SpecialUse::from_imap("\\Nope"), None);
        assert_eq!(
            serde_json::to_string(&SpecialUse::Junk).unwrap(),
            "\"\\\\Junk\""
        );
    }
}
