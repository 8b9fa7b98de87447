//! File-system helpers with the durability rules of the store: fsync of files and directories,
//! atomic replacement of small files, unique time-ordered file names, and the test-only fault
//! injection points that let crash tests stop an operation at every step boundary.
//!
//! Every helper here is blocking; callers run them on `spawn_blocking`. Nothing here decides
//! what to write, only how to make it durable.
//!
//! Security note: file names made here are hex and dots only, so they never contain a path
//! separator and are recognisable among foreign files (see [`is_message_file_name`]).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::{at, StoreError};

/// Flushes a directory's entries (new, renamed or removed names) to disk.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}

/// Replaces `path` with `bytes` atomically and durably: write `path.tmp`, fsync, rename over
/// `path`, fsync the directory. A crash leaves either the old or the new contents (and maybe
/// a stale `.tmp`, which readers ignore and loaders remove).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], faults: &Faults) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let res = (|| {
        let mut f = File::create(&tmp).map_err(at(&tmp))?;
        f.write_all(bytes).map_err(at(&tmp))?;
        f.sync_all().map_err(at(&tmp))?;
        faults.at(Step::MetaWritten, &tmp)?;
        fs::rename(&tmp, path).map_err(at(path))
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Creates a new file that must not exist yet.
pub(crate) fn create_new(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(at(path))
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(at(path)(e)),
        _ => Ok(()),
    }
}

/// Lists the names in a directory; a missing directory is empty. Names that are not UTF-8
/// are returned lossily converted (the store never creates such names).
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<String>, StoreError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(at(dir)(e)),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(at(dir))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// The `SystemTime` of a Unix timestamp (negative = before 1970).
pub(crate) fn system_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + std::time::Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - std::time::Duration::from_secs(secs.unsigned_abs())
    }
}

static NAME_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh file name: microseconds since the epoch (fixed width, so names sort by creation
/// time and recovered messages get UIDs in arrival order), a process counter and random bits
/// (so names stay unique across processes and failovers).
pub(crate) fn unique_name() -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{micros:014x}.{n:x}.{:08x}", rand::random::<u32>())
}

/// Whether a name has the shape [`unique_name`] produces. Anything else in a message
/// directory is a foreign file that the store reports but never touches.
pub(crate) fn is_message_file_name(name: &str) -> bool {
    (3..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'.')
}

/// The boundaries between the durable steps of store operations, where crash tests stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Step {
    /// Message bytes written to the temp file, not yet synced.
    MessageWritten,
    /// Temp file synced.
    MessageSynced,
    /// About to hard-link a message file (tests fail it as a file system without links would).
    HardLink,
    /// Temp file renamed (or linked) into the mailbox's `msg/`.
    MessageLinked,
    /// `msg/` directory synced.
    MessageDirSynced,
    /// Index record(s) written, not yet synced.
    IndexWritten,
    /// Index synced; the change is committed.
    IndexSynced,
    /// Expunge committed, files not yet removed.
    ExpungeCommitted,
    /// Compacted index written and synced under its temp name.
    CompactWritten,
    /// Compacted index renamed over the old one.
    CompactRenamed,
    /// A small file (user metadata) written under its temp name.
    MetaWritten,
    /// A mailbox scanned at load, its repairs not yet applied.
    LoadScanned,
    /// A new mailbox directory built, not yet renamed into place.
    MailboxBuilt,
    /// A mailbox directory moved (into place, or to the trash).
    MailboxMoved,
}

/// Checked at every [`Step`]: the write fence (a node whose mailstore lease ran out writes
/// nothing more), and in tests a fault-injection hook that may return an error (to test
/// failure handling) or panic (to simulate a crash: no cleanup code runs after it).
#[derive(Default)]
pub(crate) struct Faults {
    #[cfg(test)]
    pub hook: std::sync::Mutex<Option<FaultHook>>,
    pub fence: Option<std::sync::Arc<WriteFence>>,
}

/// The store's side of the mailstore lease: writes are allowed until a deadline on this
/// process's monotonic clock, which the lease holder pushes forward with every committed
/// renewal. A process paused past its lease (SIGSTOP, a long GC-like stall, a hung VM) finds
/// the deadline passed when it resumes and refuses every durable step, even if a session
/// runs before the failover task has fenced the node.
#[derive(Debug, Default)]
pub struct WriteFence {
    /// Milliseconds since [`mono_base`]; 0 = closed.
    until_ms: AtomicU64,
}

fn mono_base() -> std::time::Instant {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(std::time::Instant::now)
}

impl WriteFence {
    /// A closed fence (nothing may be written until [`WriteFence::open_until`]).
    pub fn new() -> WriteFence {
        WriteFence::default()
    }

    /// Allows writes until `deadline`.
    pub fn open_until(&self, deadline: std::time::Instant) {
        let ms = deadline.saturating_duration_since(mono_base()).as_millis() as u64;
        self.until_ms.store(ms.max(1), Ordering::SeqCst);
    }

    /// Refuses writes from now on.
    pub fn close(&self) {
        self.until_ms.store(0, Ordering::SeqCst);
    }

    /// Whether a write may proceed now.
    pub fn is_open(&self) -> bool {
        let until = self.until_ms.load(Ordering::SeqCst);
        until != 0 && (mono_base().elapsed().as_millis() as u64) < until
    }
}

#[cfg(test)]
pub(crate) type FaultHook =
    std::sync::Arc<dyn Fn(Step) -> Option<std::io::Error> + Send + Sync + 'static>;

impl Faults {
    pub(crate) fn with_fence(fence: Option<std::sync::Arc<WriteFence>>) -> Faults {
        Faults {
            #[cfg(test)]
            hook: std::sync::Mutex::new(None),
            fence,
        }
    }

    pub(crate) fn at(&self, step: Step, path: &Path) -> Result<(), StoreError> {
        if let Some(f) = &self.fence {
            if !f.is_open() {
                return Err(StoreError::Fenced);
            }
        }
        self.hook_at(step, path)
    }

    #[cfg(test)]
    fn hook_at(&self, step: Step, path: &Path) -> Result<(), StoreError> {
        let hook = self.hook.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match hook.and_then(|h| h(step)) {
            Some(e) => Err(at(path)(e)),
            None => Ok(()),
        }
    }

    #[cfg(not(test))]
    #[inline(always)]
    fn hook_at(&self, _step: Step, _path: &Path) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_sort_by_time_and_are_recognised() {
        let a = unique_name();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = unique_name();
        assert!(a < b, "{a} {b}");
        assert!(is_message_file_name(&a));
        for foreign in ["index", ".nfs0001", "a/b", "1.txt", "", "ab"] {
            assert!(!is_message_file_name(foreign), "{foreign}");
        }
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        write_atomic(&p, b"one", &Faults::default()).unwrap();
        write_atomic(&p, b"two", &Faults::default()).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(list_dir(dir.path()).unwrap(), ["m.json"]);
    }

    #[test]
    fn times_round_trip() {
        for s in [-86_400, 0, 1_700_000_000] {
            let t = system_time(s);
            let back = match t.duration_since(UNIX_EPOCH) {
                Ok(d) => d.as_secs() as i64,
                Err(e) => -(e.duration().as_secs() as i64),
            };
            assert_eq!(back, s);
        }
    }
}
