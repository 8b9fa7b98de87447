//! The spool: queued messages under `<data_dir>/queue/`, written so that a crash at any instant
//! leaves either the whole queued message or nothing.
//!
//! Layout: `<id>.msg` (the message as received, followed by the envelope it was queued with and
//! a fixed-size trailer, see [`TRAILER_LEN`]), `<id>.env` (a later version of the JSON
//! [`Envelope`], written once deliveries have changed it), `<id>.hold` (an empty marker: held by
//! the operator), `tmp/` (files being written), `corrupt/` (envelopes that did not parse, kept
//! for the operator). The hold marker is a file of its own so that an operator can hold a
//! message while a delivery task owns its envelope.
//!
//! A new message is written to `tmp/` with its envelope appended, fsynced, renamed into place
//! and the directory is fsynced; only then does `commit` return. That one rename is the commit
//! record: a file in `tmp/` was never acknowledged and is deleted at start. One file per queued
//! message (not a message file and an envelope file) is one inode to allocate, sync and free
//! less per message — the largest file-system cost of the queue. Envelope rewrites go to
//! `<id>.env` with temp + fsync + rename + directory fsync, so a reader sees the old or the new
//! version, never a torn one; `<id>.env`, when present, supersedes the embedded one. Removal
//! goes message file first: an `<id>.env` left alone by a crash is deleted at start, while the
//! reverse order could revive the embedded, older envelope and deliver again.
//! Files of the earlier layout (`<id>.msg` holding only the message, always with an
//! `<id>.env`) are still read.
//!
//! This module is blocking file I/O only: callers run it on `spawn_blocking`. It must never
//! delete an envelope it cannot parse (that is moved to `corrupt/`), and never report success
//! before the fsyncs. Security note: file names come only from [`QueueId`]s (fixed-length hex),
//! never from message content, and files are created mode 0600.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::envelope::{Envelope, QueueId};
use super::group_sync::GroupSync;
use super::QueueError;

/// Most header bytes read for a DSN or `queue show`.
pub(crate) const MAX_HEADER_BYTES: usize = 256 * 1024;

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The trailer's fixed start; then 10 decimal digits (the embedded envelope's length) and LF.
const TRAILER_MAGIC: &[u8] = b"\nMAILNODE-ENVELOPE ";
/// Length of the trailer that ends a message file of the current layout.
const TRAILER_LEN: usize = TRAILER_MAGIC.len() + 11;
/// Largest embedded envelope read back (an envelope of 10,000 recipients is about 2 MB).
const MAX_ENVELOPE_BYTES: u64 = 64 * 1024 * 1024;

fn trailer(env_len: usize) -> Vec<u8> {
    let mut t = TRAILER_MAGIC.to_vec();
    t.extend_from_slice(format!("{env_len:010}\n").as_bytes());
    t
}

/// Where a message file's parts are: the message is `[0, content_len)`; the embedded envelope,
/// when the file has one, `[content_len, content_len + env_len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    content_len: u64,
    /// `None`: a file of the earlier layout (message only).
    env_len: Option<u64>,
}

/// Reads a message file's trailer. `Err` only for I/O errors.
fn layout(f: &File) -> io::Result<Layout> {
    let len = f.metadata()?.len();
    let old = Layout {
        content_len: len,
        env_len: None,
    };
    if len < TRAILER_LEN as u64 {
        return Ok(old);
    }
    let mut t = [0u8; TRAILER_LEN];
    f.read_exact_at(&mut t, len - TRAILER_LEN as u64)?;
    let (magic, rest) = t.split_at(TRAILER_MAGIC.len());
    let digits = &rest[..10];
    let env_len =
        (magic == TRAILER_MAGIC && rest[10] == b'\n' && digits.iter().all(u8::is_ascii_digit))
            .then(|| std::str::from_utf8(digits).ok()?.parse::<u64>().ok())
            .flatten()
            .filter(|&n| n + TRAILER_LEN as u64 <= len);
    Ok(match env_len {
        Some(n) => Layout {
            content_len: len - TRAILER_LEN as u64 - n,
            env_len: Some(n),
        },
        None => old,
    })
}

/// A message file written to `tmp/` but not yet committed; removed when dropped.
#[derive(Debug)]
pub(crate) struct Staged {
    path: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        // After a commit the file has been renamed away and this finds nothing.
        let _ = fs::remove_file(&self.path);
    }
}

/// The queue directory.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    tmp: PathBuf,
    corrupt: PathBuf,
    dir_sync: GroupSync,
}

impl Spool {
    /// Opens (creating if needed) the spool at `dir` and clears `tmp/`: anything there was being
    /// written when the process died and was never acknowledged.
    pub(crate) fn open(dir: &Path) -> Result<Spool, QueueError> {
        let spool = Spool {
            dir: dir.to_path_buf(),
            tmp: dir.join("tmp"),
            corrupt: dir.join("corrupt"),
            dir_sync: GroupSync::default(),
        };
        for d in [&spool.dir, &spool.tmp, &spool.corrupt] {
            fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
        }
        for entry in fs::read_dir(&spool.tmp).map_err(|e| io_err(&spool.tmp, e))? {
            let entry = entry.map_err(|e| io_err(&spool.tmp, e))?;
            tracing::info!(file = %entry.path().display(), "queue: removing unfinished temp file");
            fs::remove_file(entry.path()).map_err(|e| io_err(&entry.path(), e))?;
        }
        Ok(spool)
    }

    /// Path of a message file.
    pub(crate) fn message_path(&self, id: &QueueId) -> PathBuf {
        self.dir.join(format!("{id}.msg"))
    }

    fn envelope_path(&self, id: &QueueId) -> PathBuf {
        self.dir.join(format!("{id}.env"))
    }

    fn hold_path(&self, id: &QueueId) -> PathBuf {
        self.dir.join(format!("{id}.hold"))
    }

    /// Creates or removes the hold marker, durably.
    pub(crate) fn set_hold(&self, id: &QueueId, held: bool) -> Result<(), QueueError> {
        let p = self.hold_path(id);
        if held {
            File::create(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| io_err(&p, e))?;
        } else {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err(&p, e)),
            }
        }
        Ok(())
    }

    fn temp_path(&self, id: &QueueId, ext: &str) -> PathBuf {
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("{id}.{ext}.{n}"))
    }

    /// Scans the spool after a start: returns every message file with a readable envelope, and
    /// whether it is held; deletes message files of the earlier layout without an envelope
    /// (never acknowledged), and envelopes and hold markers without a message file (a removal
    /// cut short); moves message files whose envelope does not parse to `corrupt/`.
    pub(crate) fn recover(&self) -> Result<Vec<(QueueId, Envelope, bool)>, QueueError> {
        let mut envs = Vec::new();
        let mut msgs = Vec::new();
        let mut holds = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| io_err(&self.dir, e))? {
            let entry = entry.map_err(|e| io_err(&self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            match name.rsplit_once('.') {
                Some((stem, "env")) => match QueueId::parse(stem) {
                    Some(id) => envs.push(id),
                    None => tracing::warn!(file = name, "queue: ignoring unexpected file"),
                },
                Some((stem, "msg")) => match QueueId::parse(stem) {
                    Some(id) => msgs.push(id),
                    None => tracing::warn!(file = name, "queue: ignoring unexpected file"),
                },
                Some((stem, "hold")) => match QueueId::parse(stem) {
                    Some(id) => holds.push(id),
                    None => tracing::warn!(file = name, "queue: ignoring unexpected file"),
                },
                _ if name == "tmp" || name == "corrupt" => {}
                _ => tracing::warn!(file = name, "queue: ignoring unexpected file"),
            }
        }
        let mut out = Vec::with_capacity(msgs.len());
        let mut removed = false;
        let rewritten: std::collections::HashSet<&QueueId> = envs.iter().collect();
        for id in &msgs {
            let env = if rewritten.contains(id) {
                self.read_envelope(id).map_err(|e| e.to_string())
            } else {
                match self.read_embedded(id)? {
                    Embedded::Envelope(env) => Ok(env),
                    Embedded::Garbled(why) => Err(why),
                    Embedded::None => {
                        // The earlier layout's message file without its envelope.
                        tracing::info!(%id, "queue: removing message file without envelope (never acknowledged)");
                        let p = self.message_path(id);
                        fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
                        removed = true;
                        continue;
                    }
                }
            };
            match env {
                Ok(env) => out.push((id.clone(), env, self.hold_path(id).exists())),
                Err(e) => {
                    tracing::error!(%id, error = %e, "queue: unreadable envelope; moved to corrupt/");
                    self.quarantine(id)?;
                }
            }
        }
        let present: std::collections::HashSet<&QueueId> = msgs.iter().collect();
        for id in envs.iter().filter(|id| !present.contains(id)) {
            // The message file went first in a removal that a crash interrupted.
            tracing::info!(%id, "queue: removing the envelope of a removed message");
            let p = self.envelope_path(id);
            fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
            removed = true;
        }
        for id in holds {
            if !self.message_path(&id).exists() {
                let p = self.hold_path(&id);
                fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn quarantine(&self, id: &QueueId) -> Result<(), QueueError> {
        for p in [self.envelope_path(id), self.message_path(id)] {
            if p.exists() {
                let to = self.corrupt.join(p.file_name().unwrap_or_default());
                fs::rename(&p, &to).map_err(|e| io_err(&p, e))?;
            }
        }
        sync_dir(&self.dir)
    }

    /// [`Spool::stage`] for a message in memory.
    pub(crate) fn stage_bytes(&self, id: &QueueId, msg: &[u8]) -> Result<Staged, QueueError> {
        self.stage(id, |p| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(p)?;
            f.write_all(msg)
        })
    }

    /// Step one of a store: `write` creates the message file at the temp path it is given
    /// (which does not exist yet). The returned guard deletes the file unless committed.
    pub(crate) fn stage(
        &self,
        id: &QueueId,
        write: impl FnOnce(&Path) -> io::Result<()>,
    ) -> Result<Staged, QueueError> {
        let staged = Staged {
            path: self.temp_path(id, "msg"),
        };
        write(&staged.path).map_err(|e| io_err(&staged.path, e))?;
        Ok(staged)
    }

    /// The header section of a staged message (capped), for checks before committing.
    pub(crate) fn staged_headers(&self, staged: &Staged) -> Result<Vec<u8>, QueueError> {
        let f = File::open(&staged.path).map_err(|e| io_err(&staged.path, e))?;
        // In steps, up to the empty line: the body is not read.
        let mut input = f.take(MAX_HEADER_BYTES as u64);
        let mut buf = Vec::with_capacity(16 * 1024);
        loop {
            let n = (&mut input)
                .take(16 * 1024)
                .read_to_end(&mut buf)
                .map_err(|e| io_err(&staged.path, e))?;
            if let Some(end) = super::dsn::header_end(&buf) {
                buf.truncate(end);
                return Ok(buf);
            }
            if n == 0 {
                return Ok(buf);
            }
        }
    }

    /// Step two: append the envelope and the trailer to the staged message, fsync it, rename
    /// it into place (the commit) and fsync the directory.
    pub(crate) fn commit(
        &self,
        id: &QueueId,
        env: &Envelope,
        staged: Staged,
    ) -> Result<(), QueueError> {
        let mut tail = serde_json::to_vec(env).map_err(|e| QueueError::Io {
            path: self.message_path(id),
            source: io::Error::other(e),
        })?;
        let t = trailer(tail.len());
        tail.extend_from_slice(&t);
        let final_msg = self.message_path(id);
        if final_msg.exists() || self.envelope_path(id).exists() {
            return Err(QueueError::Io {
                path: final_msg,
                source: io::Error::new(io::ErrorKind::AlreadyExists, "queue id collision"),
            });
        }
        let result = (|| {
            let mut f = OpenOptions::new()
                .append(true)
                .open(&staged.path)
                .map_err(|e| io_err(&staged.path, e))?;
            f.write_all(&tail).map_err(|e| io_err(&staged.path, e))?;
            f.sync_all().map_err(|e| io_err(&staged.path, e))?;
            rename(&staged.path, &final_msg)?;
            self.dir_sync.sync(|| sync_dir(&self.dir))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&final_msg);
            let _ = sync_dir(&self.dir);
        }
        drop(staged);
        result
    }

    /// Replaces an envelope durably (temp, fsync, rename, directory fsync).
    pub(crate) fn write_envelope(&self, id: &QueueId, env: &Envelope) -> Result<(), QueueError> {
        let json = serde_json::to_vec(env).map_err(|e| QueueError::Io {
            path: self.envelope_path(id),
            source: io::Error::other(e),
        })?;
        let tmp = self.temp_path(id, "env");
        let result = (|| {
            write_synced(&tmp, &json)?;
            rename(&tmp, &self.envelope_path(id))?;
            self.dir_sync.sync(|| sync_dir(&self.dir))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Reads an envelope: the rewritten `<id>.env`, else the one embedded in the message file.
    pub(crate) fn read_envelope(&self, id: &QueueId) -> Result<Envelope, QueueError> {
        let p = self.envelope_path(id);
        let bytes = match fs::read(&p) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return match self.read_embedded(id)? {
                    Embedded::Envelope(env) => Ok(env),
                    Embedded::Garbled(why) => Err(QueueError::Io {
                        path: self.message_path(id),
                        source: io::Error::new(io::ErrorKind::InvalidData, why),
                    }),
                    Embedded::None => Err(QueueError::NotFound(id.clone())),
                };
            }
            Err(e) => return Err(io_err(&p, e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| QueueError::Io {
            path: p,
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })
    }

    /// The envelope embedded in a message file.
    fn read_embedded(&self, id: &QueueId) -> Result<Embedded, QueueError> {
        let p = self.message_path(id);
        let mut f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Embedded::None),
            Err(e) => return Err(io_err(&p, e)),
        };
        let l = layout(&f).map_err(|e| io_err(&p, e))?;
        let Some(n) = l.env_len else {
            return Ok(Embedded::None);
        };
        if n > MAX_ENVELOPE_BYTES {
            return Ok(Embedded::Garbled(format!("embedded envelope of {n} bytes")));
        }
        let mut json = vec![0u8; n as usize];
        f.seek(SeekFrom::Start(l.content_len))
            .and_then(|_| f.read_exact(&mut json))
            .map_err(|e| io_err(&p, e))?;
        Ok(match serde_json::from_slice::<Envelope>(&json) {
            Ok(env) if env.size == l.content_len => Embedded::Envelope(env),
            Ok(env) => Embedded::Garbled(format!(
                "embedded envelope says {} bytes, the file holds {}",
                env.size, l.content_len
            )),
            Err(e) => Embedded::Garbled(e.to_string()),
        })
    }

    /// Deletes a message: message file first (the commit record), then a rewritten envelope
    /// and the hold marker.
    pub(crate) fn remove(&self, id: &QueueId) -> Result<(), QueueError> {
        self.unlink(id)?;
        self.dir_sync.sync(|| sync_dir(&self.dir))
    }

    /// Deletes a message whose every delivery was keyed (LMTP with `XDELIVERY`), without
    /// syncing the directory: if a crash undoes the unlink, the message is delivered again and
    /// the store answers with the first delivery's result, storing nothing twice. Saves a
    /// journal commit per message delivered to the mailstore.
    pub(crate) fn remove_delivered_keyed(&self, id: &QueueId) -> Result<(), QueueError> {
        self.unlink(id)
    }

    fn unlink(&self, id: &QueueId) -> Result<(), QueueError> {
        for p in [
            self.message_path(id),
            self.envelope_path(id),
            self.hold_path(id),
        ] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&p, e)),
            }
        }
        Ok(())
    }

    /// The header section (up to and including the blank line) of a message of `len` octets
    /// (its envelope's `size`), capped at [`MAX_HEADER_BYTES`]; or, with `whole_up_to`, the
    /// entire message when it is no larger.
    pub(crate) fn read_original(
        &self,
        id: &QueueId,
        len: u64,
        whole_up_to: Option<u64>,
    ) -> Result<(Vec<u8>, bool), QueueError> {
        let p = self.message_path(id);
        let f = File::open(&p).map_err(|e| io_err(&p, e))?;
        let mut f = f.take(len);
        if whole_up_to.is_some_and(|limit| len <= limit) {
            let mut all = Vec::with_capacity(len as usize);
            f.read_to_end(&mut all).map_err(|e| io_err(&p, e))?;
            return Ok((all, true));
        }
        let mut buf = vec![0u8; MAX_HEADER_BYTES.min(len as usize)];
        let mut filled = 0;
        while filled < buf.len() {
            let n = f.read(&mut buf[filled..]).map_err(|e| io_err(&p, e))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        let end = super::dsn::header_end(&buf).unwrap_or(buf.len());
        buf.truncate(end);
        Ok((buf, false))
    }
}

/// What a message file says about its envelope.
enum Embedded {
    Envelope(Envelope),
    /// The trailer is there but what it points to is not this message's envelope.
    Garbled(String),
    /// No file, or a file of the earlier layout.
    None,
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), QueueError> {
    let f = write_unsynced(path, data)?;
    f.sync_all().map_err(|e| io_err(path, e))
}

/// Creates `path` (which must not exist) holding `data`, not yet synced.
fn write_unsynced(path: &Path, data: &[u8]) -> Result<File, QueueError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.write_all(data).map_err(|e| io_err(path, e))?;
    Ok(f)
}

fn rename(from: &Path, to: &Path) -> Result<(), QueueError> {
    fs::rename(from, to).map_err(|e| io_err(to, e))
}

/// Makes renames and unlinks in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// Maps an I/O error, singling out a full disk (or exhausted quota) as [`QueueError::NoSpace`].
pub(crate) fn io_err(path: &Path, e: io::Error) -> QueueError {
    let full = e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(c) if c == nix::libc::ENOSPC || c == nix::libc::EDQUOT);
    if full {
        QueueError::NoSpace {
            path: path.to_path_buf(),
        }
    } else {
        QueueError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::envelope::Recipient;
    use super::*;

    impl Spool {
        fn store(&self, id: &QueueId, env: &Envelope, msg: &[u8]) -> Result<(), QueueError> {
            let staged = self.stage_bytes(id, msg)?;
            self.commit(id, env, staged)
        }
    }

    fn env() -> Envelope {
        let mut e = Envelope::new("a@b.example");
        e.recipients.push(Recipient::new("c@d.example"));
        e
    }

    /// An envelope for a message of `size` octets.
    fn env_of(size: usize) -> Envelope {
        Envelope {
            size: size as u64,
            ..env()
        }
    }

    fn spool() -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path()).unwrap();
        (dir, s)
    }

    #[test]
    fn store_recover_rewrite_remove() {
        let (dir, s) = spool();
        let id = QueueId::generate(1);
        let e1 = env_of(b"Subject: x\r\n\r\nbody\r\n".len());
        s.store(&id, &e1, b"Subject: x\r\n\r\nbody\r\n").unwrap();
        // One file per queued message: the envelope is inside it.
        assert!(s.message_path(&id).exists() && !s.envelope_path(&id).exists());
        let got = s.recover().unwrap();
        assert_eq!(got, vec![(id.clone(), e1.clone(), false)]);
        assert_eq!(s.read_envelope(&id).unwrap(), e1);
        s.set_hold(&id, true).unwrap();
        assert!(s.recover().unwrap()[0].2);
        s.set_hold(&id, false).unwrap();
        s.set_hold(&id, false).unwrap();
        assert!(!s.recover().unwrap()[0].2);
        let mut e2 = e1.clone();
        e2.recipients[0].attempts = 3;
        s.write_envelope(&id, &e2).unwrap();
        assert_eq!(s.read_envelope(&id).unwrap(), e2);
        assert_eq!(s.recover().unwrap()[0].1, e2, "the rewritten envelope wins");
        let len = b"Subject: x\r\n\r\nbody\r\n".len() as u64;
        let (h, whole) = s.read_original(&id, len, None).unwrap();
        assert_eq!((h.as_slice(), whole), (&b"Subject: x\r\n\r\n"[..], false));
        let (all, whole) = s.read_original(&id, len, Some(1000)).unwrap();
        assert!(whole && all.ends_with(b"body\r\n") && all.len() as u64 == len);
        s.remove(&id).unwrap();
        assert!(s.recover().unwrap().is_empty());
        assert!(matches!(s.read_envelope(&id), Err(QueueError::NotFound(_))));
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "only tmp/ and corrupt/"
        );
    }

    #[test]
    fn a_removal_cut_short_leaves_nothing_to_deliver() {
        let (_dir, s) = spool();
        let id = QueueId::generate(6);
        let mut e = env_of(1);
        s.store(&id, &e, b"m").unwrap();
        e.recipients[0].attempts = 1;
        s.write_envelope(&id, &e).unwrap();
        s.set_hold(&id, true).unwrap();
        // The crash came after the message file (the commit record) was unlinked.
        fs::remove_file(s.message_path(&id)).unwrap();
        assert!(s.recover().unwrap().is_empty());
        assert!(!s.envelope_path(&id).exists() && !s.hold_path(&id).exists());
        assert_eq!(fs::read_dir(&s.corrupt).unwrap().count(), 0);
    }

    #[test]
    fn files_of_the_earlier_layout_are_read() {
        let (_dir, s) = spool();
        let id = QueueId::generate(7);
        // A message whose last line looks like a trailer: its envelope file decides.
        let msg = format!(
            "Subject: x\r\n\r\nbody{}",
            String::from_utf8_lossy(&trailer(3))
        );
        let e = env_of(msg.len());
        fs::write(s.message_path(&id), &msg).unwrap();
        fs::write(s.envelope_path(&id), serde_json::to_vec(&e).unwrap()).unwrap();
        assert_eq!(s.recover().unwrap(), vec![(id.clone(), e.clone(), false)]);
        let (all, whole) = s.read_original(&id, e.size, Some(1000)).unwrap();
        assert!(whole && all == msg.as_bytes());
    }

    #[test]
    fn recovery_discards_orphans_and_quarantines_garbage() {
        let (dir, s) = spool();
        let orphan = QueueId::generate(2);
        let garbled = QueueId::generate(3);
        let lonely = QueueId::generate(4);
        let good = QueueId::generate(5);
        let torn = QueueId::generate(8);
        let liar = QueueId::generate(9);
        fs::write(s.message_path(&orphan), b"x").unwrap();
        fs::write(s.message_path(&garbled), b"x").unwrap();
        fs::write(s.envelope_path(&garbled), b"{not json").unwrap();
        fs::write(
            s.envelope_path(&lonely),
            serde_json::to_vec(&env()).unwrap(),
        )
        .unwrap();
        let e = env_of(1);
        s.store(&good, &e, b"m").unwrap();
        // A trailer pointing at something that is not an envelope, and an envelope that
        // disagrees with the file about the message's size.
        let mut bad = b"m{not json".to_vec();
        bad.extend_from_slice(&trailer(9));
        fs::write(s.message_path(&torn), &bad).unwrap();
        let json = serde_json::to_vec(&e).unwrap();
        let mut bad = b"mm".to_vec();
        bad.extend_from_slice(&json);
        bad.extend_from_slice(&trailer(json.len()));
        fs::write(s.message_path(&liar), &bad).unwrap();
        fs::write(s.tmp.join("half-written"), b"x").unwrap();
        drop(s);
        let s = Spool::open(dir.path()).unwrap();
        assert!(fs::read_dir(&s.tmp).unwrap().next().is_none());
        let got = s.recover().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, good);
        assert!(!s.message_path(&orphan).exists());
        assert!(s.corrupt.join(format!("{garbled}.env")).exists());
        assert!(s.corrupt.join(format!("{torn}.msg")).exists());
        assert!(s.corrupt.join(format!("{liar}.msg")).exists());
        // An envelope without its message: the end of a removal.
        assert!(!s.envelope_path(&lonely).exists());
    }

    #[test]
    fn enospc_maps_to_no_space() {
        let e = io_err(
            Path::new("/x"),
            io::Error::from_raw_os_error(nix::libc::ENOSPC),
        );
        assert!(matches!(e, QueueError::NoSpace { .. }));
        let e = io_err(
            Path::new("/x"),
            io::Error::from_raw_os_error(nix::libc::EACCES),
        );
        assert!(matches!(e, QueueError::Io { .. }));
    }
}
