//! The spool: message and envelope files under `<data_dir>/queue/`, written so that a crash at
//! any instant leaves either the whole queued message or nothing.
//!
//! Layout: `<id>.msg` (the message as received), `<id>.env` (the JSON [`Envelope`]), `<id>.hold`
//! (an empty marker: held by the operator), `tmp/` (files being written), `corrupt/` (envelopes
//! that did not parse, kept for the operator). The hold marker is a file of its own so that an
//! operator can hold a message while a delivery task owns its envelope.
//! A new message is written to `tmp/`, fsynced, renamed into place — message first, envelope
//! last — and the directory is fsynced; only then does `store` return. The envelope is the
//! commit record: a message file without an envelope was never acknowledged and is deleted at
//! start, and removal goes envelope first. Envelope rewrites use the same temp + fsync + rename
//! + directory fsync, so a reader sees the old or the new version, never a torn one.
//!
//! This module is blocking file I/O only: callers run it on `spawn_blocking`. It must never
//! delete an envelope it cannot parse (that is moved to `corrupt/`), and never report success
//! before the fsyncs. Security note: file names come only from [`QueueId`]s (fixed-length hex),
//! never from message content, and files are created mode 0600.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::envelope::{Envelope, QueueId};
use super::QueueError;

/// Most header bytes read for a DSN or `queue show`.
pub(crate) const MAX_HEADER_BYTES: usize = 256 * 1024;

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

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
}

impl Spool {
    /// Opens (creating if needed) the spool at `dir` and clears `tmp/`: anything there was being
    /// written when the process died and was never acknowledged.
    pub(crate) fn open(dir: &Path) -> Result<Spool, QueueError> {
        let spool = Spool {
            dir: dir.to_path_buf(),
            tmp: dir.join("tmp"),
            corrupt: dir.join("corrupt"),
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

    /// Scans the spool after a start: returns every message with a readable envelope and its
    /// message file, and whether it is held; deletes message files and hold markers without an
    /// envelope (never acknowledged, or already deleted); moves unreadable envelopes, and
    /// envelopes whose message file is missing, to `corrupt/`.
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
        let mut out = Vec::with_capacity(envs.len());
        for id in &envs {
            if !self.message_path(id).exists() {
                tracing::error!(%id, "queue: envelope without message file; moved to corrupt/");
                self.quarantine(id)?;
                continue;
            }
            match self.read_envelope(id) {
                Ok(env) => out.push((id.clone(), env, self.hold_path(id).exists())),
                Err(e) => {
                    tracing::error!(%id, error = %e, "queue: unreadable envelope; moved to corrupt/");
                    self.quarantine(id)?;
                }
            }
        }
        let mut removed = false;
        for id in msgs {
            // Quarantined messages have already moved away with their envelope.
            let p = self.message_path(&id);
            if !self.envelope_path(&id).exists() && p.exists() {
                tracing::info!(%id, "queue: removing message file without envelope (never acknowledged)");
                fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
                removed = true;
            }
        }
        for id in holds {
            if !self.envelope_path(&id).exists() {
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
        let mut f = File::open(&staged.path).map_err(|e| io_err(&staged.path, e))?;
        let mut buf = Vec::with_capacity(8192);
        (&mut f)
            .take(MAX_HEADER_BYTES as u64)
            .read_to_end(&mut buf)
            .map_err(|e| io_err(&staged.path, e))?;
        let end = super::dsn::header_end(&buf).unwrap_or(buf.len());
        buf.truncate(end);
        Ok(buf)
    }

    /// Step two: fsync the staged message, write the envelope, rename both into place
    /// (message first, envelope — the commit record — last) and fsync the directory.
    pub(crate) fn commit(
        &self,
        id: &QueueId,
        env: &Envelope,
        staged: Staged,
    ) -> Result<(), QueueError> {
        let env_json = serde_json::to_vec(env).map_err(|e| QueueError::Io {
            path: self.envelope_path(id),
            source: io::Error::other(e),
        })?;
        let tmp_env = self.temp_path(id, "env");
        let final_msg = self.message_path(id);
        let final_env = self.envelope_path(id);
        if final_msg.exists() || final_env.exists() {
            return Err(QueueError::Io {
                path: final_msg,
                source: io::Error::new(io::ErrorKind::AlreadyExists, "queue id collision"),
            });
        }
        let result = (|| {
            // The message and the envelope are synced at the same time, on two threads: their
            // block allocations then land in one journal transaction (XFS, ext4), committed
            // once for both instead of once each.
            let env_file = write_unsynced(&tmp_env, &env_json)?;
            // Without a thread to spare, one after the other.
            std::thread::scope(|scope| {
                let env_sync = std::thread::Builder::new()
                    .name("queue-sync".into())
                    .spawn_scoped(scope, || env_file.sync_all());
                let msg = File::open(&staged.path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| io_err(&staged.path, e));
                let env = match env_sync {
                    Ok(handle) => handle
                        .join()
                        .unwrap_or_else(|_| Err(io::Error::other("envelope sync panicked"))),
                    Err(_) => env_file.sync_all(),
                };
                msg.and(env.map_err(|e| io_err(&tmp_env, e)))
            })?;
            rename(&staged.path, &final_msg)?;
            rename(&tmp_env, &final_env)?;
            sync_dir(&self.dir)
        })();
        if result.is_err() {
            for p in [&tmp_env, &final_env, &final_msg] {
                let _ = fs::remove_file(p);
            }
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
            sync_dir(&self.dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Reads an envelope.
    pub(crate) fn read_envelope(&self, id: &QueueId) -> Result<Envelope, QueueError> {
        let p = self.envelope_path(id);
        let bytes = fs::read(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                QueueError::NotFound(id.clone())
            } else {
                io_err(&p, e)
            }
        })?;
        serde_json::from_slice(&bytes).map_err(|e| QueueError::Io {
            path: p,
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })
    }

    /// Deletes a message: envelope first (the commit record), then the message file.
    pub(crate) fn remove(&self, id: &QueueId) -> Result<(), QueueError> {
        self.unlink(id)?;
        sync_dir(&self.dir)
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
            self.envelope_path(id),
            self.message_path(id),
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

    /// The message's header section (up to and including the blank line), capped at
    /// [`MAX_HEADER_BYTES`]; or, with `whole_up_to`, the entire message when it is no larger.
    pub(crate) fn read_original(
        &self,
        id: &QueueId,
        whole_up_to: Option<u64>,
    ) -> Result<(Vec<u8>, bool), QueueError> {
        let p = self.message_path(id);
        let mut f = File::open(&p).map_err(|e| io_err(&p, e))?;
        let len = f.metadata().map_err(|e| io_err(&p, e))?.len();
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

    #[test]
    fn store_recover_rewrite_remove() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path()).unwrap();
        let id = QueueId::generate(1);
        s.store(&id, &env(), b"Subject: x\r\n\r\nbody\r\n").unwrap();
        let got = s.recover().unwrap();
        assert_eq!(got, vec![(id.clone(), env(), false)]);
        s.set_hold(&id, true).unwrap();
        assert!(s.recover().unwrap()[0].2);
        s.set_hold(&id, false).unwrap();
        s.set_hold(&id, false).unwrap();
        assert!(!s.recover().unwrap()[0].2);
        let mut e2 = env();
        e2.recipients[0].attempts = 3;
        s.write_envelope(&id, &e2).unwrap();
        assert_eq!(s.read_envelope(&id).unwrap(), e2);
        let (h, whole) = s.read_original(&id, None).unwrap();
        assert_eq!((h.as_slice(), whole), (&b"Subject: x\r\n\r\n"[..], false));
        let (all, whole) = s.read_original(&id, Some(1000)).unwrap();
        assert!(whole && all.ends_with(b"body\r\n"));
        s.remove(&id).unwrap();
        assert!(s.recover().unwrap().is_empty());
        assert!(matches!(s.read_envelope(&id), Err(QueueError::NotFound(_))));
    }

    #[test]
    fn recovery_discards_orphans_and_quarantines_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path()).unwrap();
        let orphan = QueueId::generate(2);
        let garbled = QueueId::generate(3);
        let lonely = QueueId::generate(4);
        let good = QueueId::generate(5);
        fs::write(s.message_path(&orphan), b"x").unwrap();
        fs::write(s.message_path(&garbled), b"x").unwrap();
        fs::write(s.envelope_path(&garbled), b"{not json").unwrap();
        fs::write(
            s.envelope_path(&lonely),
            serde_json::to_vec(&env()).unwrap(),
        )
        .unwrap();
        s.store(&good, &env(), b"m").unwrap();
        fs::write(s.tmp.join("half-written"), b"x").unwrap();
        drop(s);
        let s = Spool::open(dir.path()).unwrap();
        assert!(fs::read_dir(&s.tmp).unwrap().next().is_none());
        let got = s.recover().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, good);
        assert!(!s.message_path(&orphan).exists());
        assert!(s.corrupt.join(format!("{garbled}.env")).exists());
        assert!(s.corrupt.join(format!("{lonely}.env")).exists());
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
