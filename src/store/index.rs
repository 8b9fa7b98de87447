//! A mailbox's index file on disk: appending records durably, rolling back a failed append,
//! and writing a whole new index (creation, compaction, rebuild) by write–fsync–rename.
//!
//! Durability rule: [`IndexLog::append`] returns only after the records (and the directory
//! entries of the files they name) are on disk (`fdatasync`, `fsync`); if writing or syncing fails it truncates the file back to its previous
//! length so no half-record is left for a later append to follow. It never interprets records;
//! `mailbox` and `recover` do.
//!
//! Security note: the index is only ever written by this process (the Raft lease guarantees a
//! single owner of the volume); nothing here trusts its contents.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{at, StoreError};
use super::fsio::{fsync_dir, Faults, Step};
use super::record::{encode, Record};

/// File name of a mailbox's index.
pub(crate) const INDEX_FILE: &str = "index";
/// Temp name of a compacted or rebuilt index before it replaces [`INDEX_FILE`].
pub(crate) const INDEX_NEW: &str = "index.new";

/// An open index file positioned for appends.
pub(crate) struct IndexLog {
    path: PathBuf,
    file: File,
    /// Bytes known to be valid and durable; a failed append truncates back to it.
    len: u64,
    /// Records in the file, to decide when compaction pays off.
    pub records: u64,
}

/// Why an append failed, and whether the file is back to its previous state.
pub(crate) struct AppendFailure {
    pub error: StoreError,
    /// `false` when the rollback failed too: the records may or may not be on disk, so the
    /// in-memory state can no longer be trusted to match the file.
    pub rolled_back: bool,
}

impl IndexLog {
    /// Opens `path` for appending; `len` is the valid length found when it was read (a torn
    /// tail beyond it is cut off here, before anything is appended after it).
    pub(crate) fn open(path: &Path, len: u64, records: u64) -> Result<IndexLog, StoreError> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(at(path))?;
        let on_disk = file.metadata().map_err(at(path))?.len();
        if on_disk != len {
            file.set_len(len).map_err(at(path))?;
            file.sync_data().map_err(at(path))?;
        }
        Ok(IndexLog {
            path: path.to_path_buf(),
            file,
            len,
            records,
        })
    }

    /// Appends `records` and syncs them; then, with `msg_dir`, syncs that directory too (the
    /// records name files just renamed or linked into it).
    ///
    /// The directory is synced after the index, not before: on the journalling file systems
    /// the store runs on (XFS, ext4) the index's sync commits the journal transaction that also
    /// holds the rename, so the directory's sync finds nothing left to do — one journal commit
    /// instead of two. Where a file system makes the index durable but not the name, recovery
    /// drops the record of a missing file; nothing was acknowledged, since the caller answers
    /// only after both syncs.
    pub(crate) fn append(
        &mut self,
        records: &[Record],
        faults: &Faults,
        msg_dir: Option<&Path>,
    ) -> Result<(), AppendFailure> {
        let mut buf = Vec::with_capacity(128 * records.len());
        for r in records {
            encode(r, &mut buf);
        }
        let res = (|| {
            self.file.write_all(&buf).map_err(at(&self.path))?;
            faults.at(Step::IndexWritten, &self.path)?;
            self.file.sync_data().map_err(at(&self.path))?;
            faults.at(Step::IndexSynced, &self.path)?;
            if let Some(dir) = msg_dir {
                fsync_dir(dir)?;
                faults.at(Step::MessageDirSynced, dir)?;
            }
            Ok(())
        })();
        match res {
            Ok(()) => {
                self.len += buf.len() as u64;
                self.records += records.len() as u64;
                Ok(())
            }
            Err(error) => {
                let rolled_back = self
                    .file
                    .set_len(self.len)
                    .and_then(|_| self.file.sync_data())
                    .is_ok();
                Err(AppendFailure { error, rolled_back })
            }
        }
    }
}

/// A failed [`write_index`], saying whether the new file had already replaced the old one
/// (then an `IndexLog` opened on the old file points at an unlinked inode and must not be used).
pub(crate) struct WriteIndexFailure {
    pub error: StoreError,
    pub replaced: bool,
}

impl From<WriteIndexFailure> for StoreError {
    fn from(f: WriteIndexFailure) -> StoreError {
        f.error
    }
}

/// Writes `records` as the complete index of the mailbox in `dir`: to [`INDEX_NEW`], fsync,
/// rename over [`INDEX_FILE`], fsync `dir`. Returns the new file opened for appends. A crash
/// at any point leaves either the old index or the new one; a stale [`INDEX_NEW`] is removed
/// by the next load.
pub(crate) fn write_index(
    dir: &Path,
    records: &[Record],
    faults: &Faults,
) -> Result<IndexLog, WriteIndexFailure> {
    let tmp = dir.join(INDEX_NEW);
    let path = dir.join(INDEX_FILE);
    let mut buf = Vec::with_capacity(96 * records.len());
    for r in records {
        encode(r, &mut buf);
    }
    let res = (|| {
        let mut f = File::create(&tmp).map_err(at(&tmp))?;
        f.write_all(&buf).map_err(at(&tmp))?;
        f.sync_all().map_err(at(&tmp))?;
        faults.at(Step::CompactWritten, &tmp)?;
        fs::rename(&tmp, &path).map_err(at(&path))
    })();
    if let Err(error) = res {
        let _ = fs::remove_file(&tmp);
        return Err(WriteIndexFailure {
            error,
            replaced: false,
        });
    }
    let replaced = |error| WriteIndexFailure {
        error,
        replaced: true,
    };
    faults.at(Step::CompactRenamed, &path).map_err(replaced)?;
    fsync_dir(dir).map_err(replaced)?;
    IndexLog::open(&path, buf.len() as u64, records.len() as u64).map_err(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{parse_log, Tail, INDEX_VERSION};

    fn header() -> Record {
        Record::Header {
            version: INDEX_VERSION,
            uidvalidity: 7,
            uidnext: 1,
            highestmodseq: 1,
        }
    }

    #[test]
    fn append_then_reopen_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = write_index(dir.path(), &[header()], &Faults::default())
            .ok()
            .unwrap();
        let ex = Record::Expunge {
            modseq: 2,
            uids: vec![1],
        };
        log.append(std::slice::from_ref(&ex), &Faults::default(), None)
            .ok()
            .unwrap();
        let good = fs::metadata(dir.path().join(INDEX_FILE)).unwrap().len();
        // A crash in the middle of the next append leaves part of a frame.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(INDEX_FILE))
            .unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2]).unwrap();
        let bytes = fs::read(dir.path().join(INDEX_FILE)).unwrap();
        let parsed = parse_log(&bytes);
        assert_eq!(parsed.tail, Tail::Torn { offset: good });
        let mut log = IndexLog::open(&dir.path().join(INDEX_FILE), parsed.valid_len, 2).unwrap();
        log.append(
            &[Record::Expunge {
                modseq: 3,
                uids: vec![],
            }],
            &Faults::default(),
            None,
        )
        .ok()
        .unwrap();
        let parsed = parse_log(&fs::read(dir.path().join(INDEX_FILE)).unwrap());
        assert_eq!(parsed.tail, Tail::Clean);
        assert_eq!(parsed.records.len(), 3);
    }

    #[test]
    fn failed_append_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = write_index(dir.path(), &[header()], &Faults::default())
            .ok()
            .unwrap();
        let before = fs::read(dir.path().join(INDEX_FILE)).unwrap();
        let faults = Faults::default();
        *faults.hook.lock().unwrap() = Some(std::sync::Arc::new(|s| {
            (s == Step::IndexWritten).then(|| std::io::Error::from_raw_os_error(nix::libc::ENOSPC))
        }));
        let err = log
            .append(
                &[Record::Expunge {
                    modseq: 2,
                    uids: vec![1],
                }],
                &faults,
                None,
            )
            .err()
            .unwrap();
        assert!(err.rolled_back);
        assert!(matches!(err.error, StoreError::NoSpace { .. }));
        assert_eq!(fs::read(dir.path().join(INDEX_FILE)).unwrap(), before);
        assert_eq!(log.records, 1);
    }
}
