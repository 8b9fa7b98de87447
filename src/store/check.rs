//! `Store::check`: verify the store against its own files, report, and optionally repair
//! (backs `mailctl store check [--repair]`).
//!
//! Users that are not loaded are examined read-only: the index is replayed and compared with
//! the message files, and every message file is read back and compared with the size and
//! CRC-32 its index record holds. With `repair`, such a user is loaded, which applies every
//! fix [`recover`](super::recover) knows (and reports them as fixed). Loaded users are checked
//! against their in-memory index, skipping files that deliveries are writing right now.
//! Findings are split into crash leftovers (expected after a kill or power loss, repaired
//! automatically on load) and damage (a fault or a manual edit; see [`FindingKind::is_damage`]).
//!
//! This module never deletes a message that an index still lists, and never changes a user
//! when `repair` is false. (A user first used by a session while it is being examined
//! read-only may show that session's work in progress as leftovers; a second run settles it.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::error::StoreError;
use super::flags::Flags;
use super::fsio::{is_message_file_name, list_dir, remove_if_exists};
use super::index::INDEX_FILE;
use super::mailbox::{Mailbox, NewMessage};
use super::record::{parse_log, Tail};
use super::recover::{self, read_message_file};
use super::user::{is_empty_mailbox_dir, scan_user, user_dir, MetaFile, UserState, META_FILE};
use super::Store;

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A message or mailbox being written when the process stopped (in `tmp/`).
    TempFile,
    /// The index ends in a record a crash cut short.
    TornIndexTail,
    /// A message file made durable whose index record was not.
    UnindexedMessage,
    /// The file of an expunged message, not yet removed.
    ExpungedLeftover,
    /// A compacted index that never replaced the old one.
    CompactionLeftover,
    /// A mailbox directory whose creation never reached the mailbox list.
    MailboxDirLeftover,
    /// A list entry whose directory a deletion had already moved away.
    MissingMailboxDir,
    /// A deleted mailbox not yet removed.
    TrashLeftover,
    /// A mailbox list replacement that never happened.
    MetaTempLeftover,
    /// The index is missing or damaged mid-file (rebuilt from the message files under a new
    /// UIDVALIDITY).
    DamagedIndex,
    /// An indexed message has no file (dropped from the index).
    MissingMessage,
    /// A message file's size differs from its index record.
    SizeMismatch,
    /// A message file's contents differ from its index record's checksum.
    ChecksumMismatch,
    /// A message file cannot be read.
    UnreadableMessage,
    /// A file the store did not create (reported, never touched).
    ForeignFile,
    /// The mailbox list is missing or unreadable (rebuilt from the mailbox directories).
    DamagedUserMeta,
    /// A mailbox directory holding messages that the list does not name (adopted).
    OrphanMailbox,
}

impl FindingKind {
    /// Damage rather than a crash leftover: worth an operator's attention.
    pub fn is_damage(self) -> bool {
        !matches!(
            self,
            FindingKind::TempFile
                | FindingKind::TornIndexTail
                | FindingKind::UnindexedMessage
                | FindingKind::ExpungedLeftover
                | FindingKind::CompactionLeftover
                | FindingKind::MailboxDirLeftover
                | FindingKind::MissingMailboxDir
                | FindingKind::TrashLeftover
                | FindingKind::MetaTempLeftover
        )
    }
}

/// One thing a check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub user: String,
    pub mailbox: Option<String>,
    pub kind: FindingKind,
    /// A file name, UID or reason; never message contents.
    pub detail: String,
    /// Whether it was repaired (by this check or by loading the user).
    pub fixed: bool,
}

impl Finding {
    pub(crate) fn new(kind: FindingKind, detail: String) -> Finding {
        Finding {
            user: String::new(),
            mailbox: None,
            kind,
            detail,
            fixed: false,
        }
    }

    pub(crate) fn at(mut self, user: &str, mailbox: Option<&str>) -> Finding {
        self.user = user.to_string();
        self.mailbox = mailbox.map(str::to_string);
        self
    }

    fn fixed(mut self, fixed: bool) -> Finding {
        self.fixed = fixed;
        self
    }
}

/// The result of [`Store::check`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub repair: bool,
    pub users: u64,
    pub mailboxes: u64,
    pub messages: u64,
    pub bytes: u64,
    pub findings: Vec<Finding>,
}

impl CheckReport {
    /// Nothing found at all.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// Findings that are damage, not crash leftovers.
    pub fn damage(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.kind.is_damage())
    }

    /// Findings that are still there.
    pub fn unfixed(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !f.fixed)
    }
}

impl Store {
    /// Checks every user on the volume; with `repair`, fixes what can be fixed.
    pub async fn check(&self, repair: bool) -> Result<CheckReport, StoreError> {
        let root = self.root().to_path_buf();
        let users = tokio::task::spawn_blocking(move || list_users(&root))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))??;
        let mut report = CheckReport {
            repair,
            ..CheckReport::default()
        };
        for u in users {
            match u {
                Ok(name) => self.check_into(&name, repair, &mut report).await?,
                Err(f) => report.findings.push(f),
            }
        }
        Ok(report)
    }

    /// Checks one user.
    pub async fn check_user(&self, user: &str, repair: bool) -> Result<CheckReport, StoreError> {
        let mut report = CheckReport {
            repair,
            ..CheckReport::default()
        };
        self.check_into(user, repair, &mut report).await?;
        Ok(report)
    }

    async fn check_into(
        &self,
        name: &str,
        repair: bool,
        report: &mut CheckReport,
    ) -> Result<(), StoreError> {
        let loaded = self.loaded_user(name);
        let user = match (loaded, repair) {
            (Some(u), _) => u,
            (None, true) => {
                let u = self.user(name).await?;
                report.findings.extend(u.load_findings.iter().cloned());
                u
            }
            (None, false) => {
                let dir = user_dir(self.root(), name);
                let name = name.to_string();
                let part = self.blocking(move |_| check_unloaded(&name, &dir)).await?;
                merge(report, part);
                return Ok(());
            }
        };
        let part = self.blocking(move |_| check_loaded(&user, repair)).await?;
        merge(report, part);
        Ok(())
    }
}

fn merge(into: &mut CheckReport, part: CheckReport) {
    into.users += part.users;
    into.mailboxes += part.mailboxes;
    into.messages += part.messages;
    into.bytes += part.bytes;
    into.findings.extend(part.findings);
}

/// Every user directory on the volume: the user's name, or a finding when it cannot be told.
fn list_users(root: &Path) -> Result<Vec<Result<String, Finding>>, StoreError> {
    let users = root.join("users");
    let mut out = Vec::new();
    for shard in list_dir(&users)? {
        for d in list_dir(&users.join(&shard))? {
            let dir = users.join(&shard).join(&d);
            let from_meta = std::fs::read(dir.join(META_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice::<MetaFile>(&b).ok())
                .map(|m| m.user);
            match from_meta.or_else(|| decode_user_dir(&d)) {
                Some(name) if user_dir(root, &name) == dir => out.push(Ok(name)),
                _ => out.push(Err(Finding::new(
                    FindingKind::DamagedUserMeta,
                    format!("users/{shard}/{d}: owner unknown (mailbox list unreadable); inspect by hand"),
                )
                .at(&d, None))),
            }
        }
    }
    Ok(out)
}

/// The users on the volume whose owner is known.
pub(crate) fn user_names(root: &Path) -> Result<Vec<String>, StoreError> {
    Ok(list_users(root)?
        .into_iter()
        .filter_map(Result::ok)
        .collect())
}

/// Reverses the percent-encoding of a user directory name (not the hashed long form).
fn decode_user_dir(d: &str) -> Option<String> {
    if d.contains('~') {
        return None;
    }
    let b = d.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Compares a message file with its record; a finding if they differ.
fn verify_file(path: &Path, size: u64, crc: u32, uid: u32) -> Option<Finding> {
    match read_message_file(path) {
        Ok((s, _, _)) if s != size => Some(Finding::new(
            FindingKind::SizeMismatch,
            format!("UID {uid}: {s} bytes on disk, {size} indexed"),
        )),
        Ok((_, c, _)) if c != crc => Some(Finding::new(
            FindingKind::ChecksumMismatch,
            format!("UID {uid}"),
        )),
        Ok(_) => None,
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Some(Finding::new(
                FindingKind::MissingMessage,
                format!("UID {uid}"),
            ))
        }
        Err(e) => Some(Finding::new(
            FindingKind::UnreadableMessage,
            format!("UID {uid}: {e}"),
        )),
    }
}

fn check_unloaded(name: &str, dir: &Path) -> Result<CheckReport, StoreError> {
    let mut r = CheckReport {
        users: 1,
        ..CheckReport::default()
    };
    let scan = scan_user(dir)?;
    r.findings.extend(scan.findings.iter().map(|f| {
        let mb = f.mailbox.clone();
        f.clone().at(name, mb.as_deref())
    }));
    let listed: Vec<(String, u64)> = scan
        .meta
        .iter()
        .flat_map(|m| m.mailboxes.iter().map(|e| (e.name.clone(), e.id)))
        .collect();
    for &id in &scan.dir_ids {
        let mdir: PathBuf = dir.join("mbox").join(id.to_string());
        let Some((mname, _)) = listed.iter().find(|(_, i)| *i == id) else {
            let kind = if scan.meta_damaged.is_none() && is_empty_mailbox_dir(&mdir) {
                FindingKind::MailboxDirLeftover
            } else {
                FindingKind::OrphanMailbox
            };
            r.findings
                .push(Finding::new(kind, format!("mbox/{id}")).at(name, None));
            continue;
        };
        let s = recover::scan(&mdir)?;
        r.mailboxes += 1;
        let mut found = recover::findings(&s);
        for m in s.live.values().filter(|m| !s.missing.contains(&m.uid)) {
            r.messages += 1;
            r.bytes += m.size;
            found.extend(verify_file(
                &mdir.join("msg").join(&*m.file),
                m.size,
                m.crc,
                m.uid,
            ));
        }
        r.findings
            .extend(found.into_iter().map(|f| f.at(name, Some(mname))));
    }
    Ok(r)
}

fn check_loaded(user: &Arc<UserState>, repair: bool) -> Result<CheckReport, StoreError> {
    let mut r = CheckReport {
        users: 1,
        ..CheckReport::default()
    };
    let (entries, open) = {
        let inner = user.lock()?;
        // tmp/ is checked under the user lock, so no mailbox is being built in it.
        for n in list_dir(&user.dir.join("tmp"))? {
            if user.is_inflight(&n) {
                continue;
            }
            let path = user.dir.join("tmp").join(&n);
            let fixed = repair
                && (if path.is_dir() {
                    std::fs::remove_dir_all(&path).is_ok()
                } else {
                    remove_if_exists(&path).is_ok()
                });
            r.findings.push(
                Finding::new(FindingKind::TempFile, n)
                    .at(&user.name, None)
                    .fixed(fixed),
            );
        }
        (inner.meta.mailboxes.clone(), inner.open.clone())
    };
    for e in entries {
        let Some(mb) = open.get(&e.id) else { continue };
        let mut found = Vec::new();
        check_mailbox(user, &e.name, mb, repair, &mut r, &mut found)?;
        r.mailboxes += 1;
        r.findings
            .extend(found.into_iter().map(|f| f.at(&user.name, Some(&e.name))));
    }
    Ok(r)
}

fn check_mailbox(
    user: &UserState,
    name: &str,
    mb: &Mailbox,
    repair: bool,
    r: &mut CheckReport,
    found: &mut Vec<Finding>,
) -> Result<(), StoreError> {
    let sh = &user.sh;
    let snap = mb.lock()?.snapshot();
    for m in snap.messages.iter() {
        r.messages += 1;
        r.bytes += m.size;
        let Some(f) = verify_file(&mb.msg_dir.join(&*m.file), m.size, m.crc, m.uid) else {
            continue;
        };
        if f.kind == FindingKind::MissingMessage {
            // Expunged since the snapshot?
            if mb.file_of(name, m.uid).ok().as_deref() != Some(&*m.file) {
                continue;
            }
            let fixed = repair && mb.expunge(sh, name, Some(&[m.uid]), false, 0).is_ok();
            found.push(f.fixed(fixed));
        } else {
            found.push(f);
        }
    }
    let live: std::collections::HashSet<&str> = snap.messages.iter().map(|m| &*m.file).collect();
    for n in list_dir(&mb.msg_dir)? {
        if live.contains(n.as_str()) {
            continue;
        }
        if !is_message_file_name(&n) {
            found.push(Finding::new(FindingKind::ForeignFile, n));
            continue;
        }
        // In flight first, then committed: a delivery leaves the in-flight set only after
        // its commit, so a file that is neither is really unindexed.
        if user.is_inflight(&n) || mb.is_known_file(&n)? {
            continue;
        }
        let mut fixed = false;
        if repair {
            let (size, crc, mtime) = read_message_file(&mb.msg_dir.join(&n))?;
            let item = NewMessage {
                file: n.as_str().into(),
                size,
                crc,
                flags: Flags::new(),
                internal_date: mtime,
            };
            user.usage.reserve(size, 0)?;
            match mb.commit_appends(sh, name, vec![item], 0) {
                Ok(_) => fixed = true,
                Err(_) => user.usage.release(size, 0),
            }
        }
        found.push(Finding::new(FindingKind::UnindexedMessage, n).fixed(fixed));
    }
    // The on-disk index must still parse; a torn tail may be an append in progress.
    if let Ok(bytes) = std::fs::read(mb.dir.join(INDEX_FILE)) {
        if let Tail::Corrupt { offset, reason } = parse_log(&bytes).tail {
            let fixed = repair && mb.compact_now(sh).is_ok();
            found.push(
                Finding::new(
                    FindingKind::DamagedIndex,
                    format!("bad record at byte {offset}: {reason}"),
                )
                .fixed(fixed),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::names::user_dir_name;

    #[test]
    fn user_dir_names_decode() {
        for u in ["alice@example.org", "a/b%c@x", ".hidden@x", "ünï@x"] {
            assert_eq!(decode_user_dir(&user_dir_name(u).1).as_deref(), Some(u));
        }
        assert_eq!(decode_user_dir("%zz"), None);
        assert_eq!(decode_user_dir("%4"), None);
    }

    #[test]
    fn leftovers_are_not_damage() {
        assert!(!FindingKind::TornIndexTail.is_damage());
        assert!(!FindingKind::UnindexedMessage.is_damage());
        assert!(FindingKind::ChecksumMismatch.is_damage());
        assert!(FindingKind::DamagedIndex.is_damage());
    }
}
