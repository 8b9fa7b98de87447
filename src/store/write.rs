//! The write path shared by LMTP delivery and IMAP APPEND/COPY/MOVE.
//!
//! Writing a message: reserve its size against the quota, write it to a temp file in the
//! user's `tmp/`, fsync, rename into the mailbox's `msg/`, then commit an index record (fsync)
//! and fsync the directory (in that order: one journal commit on XFS and ext4, see
//! `IndexLog::append`). A caller is told `Ok` after all of that. Any failure before
//! the commit removes what was written and releases the reservation, so a full disk leaves
//! nothing behind. COPY hard-links the files (same volume; a durable copy where links are
//! refused) and commits all records in one append. Everything here blocks; callers run it on
//! `spawn_blocking`. Nothing here decides UIDs or touches the index directly: `mailbox` does.
//!
//! Security note: message sizes are bounded (`StoreConfig::max_message_size`) while copying,
//! not just from the declared length, so a growing source file cannot exceed the limit.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::error::{at, StoreError};
use super::flags::Flags;
use super::fsio::{create_new, remove_if_exists, system_time, unique_name, Step};
use super::mailbox::{Mailbox, NewMessage};
use super::user::UserState;

/// Where a message's bytes come from.
#[derive(Debug, Clone)]
pub enum MessageSource {
    /// In memory (an LMTP DATA buffer, an IMAP literal).
    Bytes(Bytes),
    /// A file to copy (a queue file on the node's local disk).
    File(PathBuf),
}

impl From<Bytes> for MessageSource {
    fn from(b: Bytes) -> Self {
        MessageSource::Bytes(b)
    }
}

impl From<Vec<u8>> for MessageSource {
    fn from(b: Vec<u8>) -> Self {
        MessageSource::Bytes(b.into())
    }
}

impl From<&[u8]> for MessageSource {
    fn from(b: &[u8]) -> Self {
        MessageSource::Bytes(Bytes::copy_from_slice(b))
    }
}

impl From<PathBuf> for MessageSource {
    fn from(p: PathBuf) -> Self {
        MessageSource::File(p)
    }
}

impl From<&Path> for MessageSource {
    fn from(p: &Path) -> Self {
        MessageSource::File(p.to_path_buf())
    }
}

impl MessageSource {
    pub(crate) fn len(&self) -> Result<u64, StoreError> {
        match self {
            MessageSource::Bytes(b) => Ok(b.len() as u64),
            MessageSource::File(p) => Ok(fs::metadata(p).map_err(at(p))?.len()),
        }
    }
}

/// A stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub uid: u32,
    pub uidvalidity: u32,
    pub size: u64,
}

/// The result of COPY/MOVE, for UIDPLUS `COPYUID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyResult {
    /// The destination's UIDVALIDITY.
    pub uidvalidity: u32,
    /// (source UID, destination UID), ascending. Source UIDs that no longer existed are absent.
    pub mapping: Vec<(u32, u32)>,
}

/// Copies `src` into `f`, returning its size and CRC-32; refuses more than `limit` bytes.
pub(crate) fn write_source(
    f: &mut File,
    src: &MessageSource,
    path: &Path,
    limit: u64,
) -> Result<(u64, u32), StoreError> {
    let mut h = crc32fast::Hasher::new();
    match src {
        MessageSource::Bytes(b) => {
            f.write_all(b).map_err(at(path))?;
            h.update(b);
            Ok((b.len() as u64, h.finalize()))
        }
        MessageSource::File(p) => {
            let mut input = File::open(p).map_err(at(p))?;
            let mut buf = vec![0; 256 * 1024];
            let mut size = 0u64;
            loop {
                let n = input.read(&mut buf).map_err(at(p))?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                if limit > 0 && size > limit {
                    return Err(StoreError::TooLarge { size, limit });
                }
                f.write_all(&buf[..n]).map_err(at(path))?;
                h.update(&buf[..n]);
            }
            Ok((size, h.finalize()))
        }
    }
}

/// Writes a message durably into `mb`'s `msg/` (not yet indexed) as `name` (default: a
/// unique name). The name stays in the user's in-flight set until the caller has committed or
/// given up.
fn stage(
    user: &UserState,
    mb: &Mailbox,
    src: &MessageSource,
    date: i64,
    name: Option<Arc<str>>,
) -> Result<(Arc<str>, u64, u32), StoreError> {
    let sh = &user.sh;
    let name: Arc<str> = name.unwrap_or_else(|| unique_name().into());
    user.inflight_add(&name);
    let tmp = user.dir.join("tmp").join(&*name);
    let dest = mb.msg_dir.join(&*name);
    let res = (|| {
        let mut f = create_new(&tmp)?;
        let (size, crc) = write_source(&mut f, src, &tmp, sh.config.max_message_size)?;
        // The mtime carries the internal date, so recovery of an unindexed file keeps it.
        f.set_modified(system_time(date)).map_err(at(&tmp))?;
        sh.faults.at(Step::MessageWritten, &tmp)?;
        f.sync_all().map_err(at(&tmp))?;
        sh.faults.at(Step::MessageSynced, &tmp)?;
        drop(f);
        fs::rename(&tmp, &dest).map_err(|e| match mb.lock() {
            Ok(st) if st.deleted => StoreError::MailboxNotFound(String::new()),
            _ => at(&dest)(e),
        })?;
        // `msg/` is synced with the index record, in `commit_appends`.
        sh.faults.at(Step::MessageLinked, &dest)?;
        Ok((size, crc))
    })();
    match res {
        Ok((size, crc)) => Ok((name, size, crc)),
        Err(e) => {
            let _ = remove_if_exists(&tmp);
            let _ = remove_if_exists(&dest);
            user.inflight_remove(&name);
            Err(e)
        }
    }
}

/// The whole append: quota, stage, commit. Blocking. `file` names the message file (a keyed
/// delivery's name, module `once`); `None` picks a unique one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn append_blocking(
    user: &UserState,
    mb: &Mailbox,
    name: &str,
    src: &MessageSource,
    flags: Flags,
    internal_date: i64,
    quota_bytes: u64,
    origin: u64,
    file: Option<Arc<str>>,
) -> Result<Delivered, StoreError> {
    let cfg = &user.sh.config;
    flags.validate(cfg.max_keywords, cfg.max_keyword_len)?;
    let estimate = src.len()?;
    if cfg.max_message_size > 0 && estimate > cfg.max_message_size {
        return Err(StoreError::TooLarge {
            size: estimate,
            limit: cfg.max_message_size,
        });
    }
    user.usage.reserve(estimate, quota_bytes)?;
    let (file, size, crc) = match stage(user, mb, src, internal_date, file) {
        Ok(v) => v,
        Err(e) => {
            user.usage.release(estimate, 0);
            return Err(rename_not_found(e, name));
        }
    };
    // A source file may have changed size since it was measured; account what was stored.
    if size > estimate {
        let _ = user.usage.reserve(size - estimate, 0);
    } else {
        user.usage.release(estimate - size, 0);
    }
    let item = NewMessage {
        file: Arc::clone(&file),
        size,
        crc,
        flags,
        internal_date,
    };
    let res = mb.commit_appends(&user.sh, name, vec![item], origin);
    user.inflight_remove(&file);
    match res {
        Ok((uidvalidity, metas)) => Ok(Delivered {
            uid: metas[0].uid,
            uidvalidity,
            size,
        }),
        Err(e) => {
            user.usage.release(size, 0);
            Err(e)
        }
    }
}

pub(crate) fn rename_not_found(e: StoreError, name: &str) -> StoreError {
    match e {
        StoreError::MailboxNotFound(n) if n.is_empty() => {
            StoreError::MailboxNotFound(name.to_string())
        }
        e => e,
    }
}

/// Hard-links `src` as `dest`; where the file system refuses links, copies durably instead.
pub(crate) fn link_or_copy(user: &UserState, src: &Path, dest: &Path) -> Result<(), StoreError> {
    let linked = match user.sh.faults.at(Step::HardLink, dest) {
        Err(StoreError::Io { source, .. }) => Err(source),
        _ => fs::hard_link(src, dest),
    };
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(at(src)(e)),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(
                    nix::libc::EXDEV | nix::libc::EMLINK | nix::libc::EPERM | nix::libc::EOPNOTSUPP
                )
            ) =>
        {
            let name: Arc<str> = unique_name().into();
            user.inflight_add(&name);
            let tmp = user.dir.join("tmp").join(&*name);
            let res = (|| {
                let mut out = create_new(&tmp)?;
                let mut input = File::open(src).map_err(at(src))?;
                std::io::copy(&mut input, &mut out).map_err(at(&tmp))?;
                out.sync_all().map_err(at(&tmp))?;
                fs::rename(&tmp, dest).map_err(at(dest))
            })();
            if res.is_err() {
                let _ = remove_if_exists(&tmp);
            }
            user.inflight_remove(&name);
            res
        }
        Err(e) => Err(at(dest)(e)),
    }
}

/// COPY: link the files, commit them in the destination in one record batch. Blocking.
#[allow(clippy::too_many_arguments)]
pub(crate) fn copy_blocking(
    user: &UserState,
    src: &Mailbox,
    src_name: &str,
    dst: &Mailbox,
    dst_name: &str,
    uids: &[u32],
    quota_bytes: u64,
    origin: u64,
) -> Result<CopyResult, StoreError> {
    let snap = {
        let st = src.lock()?;
        if st.deleted {
            return Err(StoreError::MailboxNotFound(src_name.to_string()));
        }
        st.snapshot()
    };
    let mut uids = uids.to_vec();
    uids.sort_unstable();
    uids.dedup();
    let wanted: Vec<_> = uids.iter().filter_map(|u| snap.get(*u)).collect();
    let total: u64 = wanted.iter().map(|m| m.size).sum();
    user.usage.reserve(total, quota_bytes)?;
    let mut items = Vec::with_capacity(wanted.len());
    let mut src_uids = Vec::with_capacity(wanted.len());
    let mut skipped = 0;
    let cleanup = |items: &[NewMessage]| {
        for it in items {
            let _ = remove_if_exists(&dst.msg_dir.join(&*it.file));
            user.inflight_remove(&it.file);
        }
    };
    for m in wanted {
        let file: Arc<str> = unique_name().into();
        user.inflight_add(&file);
        let from = src.msg_dir.join(&*m.file);
        match link_or_copy(user, &from, &dst.msg_dir.join(&*file)) {
            Ok(()) => {
                src_uids.push(m.uid);
                items.push(NewMessage {
                    file,
                    size: m.size,
                    crc: m.crc,
                    flags: m.flags.clone(),
                    internal_date: m.internal_date,
                });
            }
            // Expunged since the snapshot: COPY skips it, as if it had been gone already.
            Err(_) if !from.exists() => {
                user.inflight_remove(&file);
                skipped += m.size;
            }
            Err(e) => {
                user.inflight_remove(&file);
                cleanup(&items);
                user.usage.release(total, 0);
                return Err(if dst.lock().is_ok_and(|st| st.deleted) {
                    StoreError::MailboxNotFound(dst_name.to_string())
                } else {
                    e
                });
            }
        }
    }
    user.usage.release(skipped, 0);
    let copied: u64 = items.iter().map(|i| i.size).sum();
    // `msg/` is synced with the index records, in `commit_appends`.
    if let Err(e) = user.sh.faults.at(Step::MessageLinked, &dst.msg_dir) {
        cleanup(&items);
        user.usage.release(copied, 0);
        return Err(e);
    }
    let files: Vec<Arc<str>> = items.iter().map(|i| Arc::clone(&i.file)).collect();
    let res = dst.commit_appends(&user.sh, dst_name, items, origin);
    for f in &files {
        user.inflight_remove(f);
    }
    match res {
        Ok((uidvalidity, metas)) => Ok(CopyResult {
            uidvalidity,
            mapping: src_uids
                .into_iter()
                .zip(metas.iter().map(|m| m.uid))
                .collect(),
        }),
        Err(e) => {
            user.usage.release(copied, 0);
            Err(e)
        }
    }
}
