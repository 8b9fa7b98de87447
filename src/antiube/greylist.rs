//! Greylisting: the first attempt of an unknown (client, sender, recipient) triplet is
//! deferred; a retry after `greylist.delay_s` and within `greylist.retry_window_s` passes, and
//! the triplet then passes at once for `greylist.pass_ttl_s` after its last message.
//!
//! Job: [`Greylist::check`] answers [`GreyVerdict::Pass`] or [`GreyVerdict::Defer`] (the RCPT
//! stage answers `451 4.7.1` with it) and records the attempt. Triplets are kept in memory,
//! bounded by `greylist.max_entries` (the least recently seen forgotten first), and saved to a
//! snapshot file on the node's local disk with [`Greylist::save`] (the caller runs it
//! periodically and at shutdown, off the async threads: it does blocking I/O). Each node keeps
//! its own: a sender retrying through another MX is deferred there once more, which costs a
//! delay, never a message.
//!
//! Never: block mail for good. A corrupt or unreadable-format snapshot is logged and ignored,
//! a triplet that did not retry in time starts over, a clock stepped backwards restarts the
//! wait instead of stretching it, and a full table forgets old triplets instead of refusing
//! new ones. Never reads the clock in [`Greylist::check`]: the caller passes `now`.
//!
//! Security note: clients, senders and recipients are attacker-controlled. Work per check is
//! one hash and one table operation (eviction is amortised over many inserts), memory is
//! bounded by `max_entries`, and no input panics. Triplets are stored only as keyed hashes
//! (SHA-256 over a random per-file salt, truncated to 128 bits), so the snapshot holds no
//! address in clear and every entry has the same size; anyone holding the file can still
//! test a guessed triplet against it, which is why it stays on the node's local disk (0600).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::policy::GreylistSettings;

/// The answer for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GreyVerdict {
    /// Accept (greylisting is off, or the triplet passed).
    Pass,
    /// Defer with a temporary error; the earliest useful retry is this many seconds away.
    Defer {
        /// Seconds until a retry can pass.
        retry_after_s: u64,
    },
}

/// A triplet's key: the first 128 bits of its salted SHA-256.
type Key = [u8; 16];

/// What is remembered of a triplet (times in seconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// The first attempt of the current round: the delay and the retry window count from it.
    first: u64,
    /// The last attempt: eviction order, and the start of `pass_ttl_s` once passed.
    last: u64,
    /// A retry came in the window: the triplet passes until `last + pass_ttl_s`.
    passed: bool,
}

#[derive(Debug)]
struct Inner {
    settings: GreylistSettings,
    /// Makes the keys of this file differ from any other's (no precomputed tables).
    salt: [u8; 16],
    entries: HashMap<Key, Entry>,
}

/// The triplet store of one node. Shared by the sessions (`Arc<Greylist>`); every method takes
/// `&self`.
#[derive(Debug)]
pub struct Greylist {
    /// The snapshot file.
    path: PathBuf,
    inner: Mutex<Inner>,
    /// Orders concurrent [`Greylist::save`]s, so an older snapshot never replaces a newer one.
    saving: Mutex<()>,
}

/// Snapshot layout: magic, salt, entry count (u64 LE), entries, CRC-32 of everything before.
const MAGIC: &[u8; 8] = b"MNGREYL1";
const HEADER: usize = 8 + 16 + 8;
/// key, first (u64 LE), last (u64 LE), passed (0 or 1).
const ENTRY: usize = 16 + 8 + 8 + 1;
const TRAILER: usize = 4;

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Greylist {
    /// Opens the greylist saved at `path`, or an empty one when there is no file yet. A file
    /// that is not a valid snapshot is logged and ignored (the next [`Greylist::save`]
    /// replaces it). Triplets already expired are dropped, and the oldest beyond
    /// `settings.max_entries`.
    ///
    /// Errors: the file exists but cannot be read (permissions, I/O): fix the file or remove
    /// it.
    pub fn open(path: impl AsRef<Path>, settings: &GreylistSettings) -> io::Result<Greylist> {
        let path = path.as_ref().to_path_buf();
        let (salt, entries) = match load(&path) {
            Ok(Some(loaded)) => loaded,
            Ok(None) => (rand::random(), HashMap::new()),
            Err(Load::Io(e)) => return Err(e),
            Err(Load::Corrupt(why)) => {
                tracing::warn!(
                    path = %path.display(),
                    "greylist snapshot ignored ({why}): starting empty; it is replaced at the next save"
                );
                (rand::random(), HashMap::new())
            }
        };
        let g = Greylist {
            path,
            inner: Mutex::new(Inner {
                settings: settings.clone(),
                salt,
                entries,
            }),
            saving: Mutex::new(()),
        };
        g.purge_expired(SystemTime::now());
        {
            let mut inner = lock(&g.inner);
            let max = inner.settings.max_entries;
            evict_oldest(&mut inner.entries, max);
        }
        Ok(g)
    }

    /// Replaces the settings (the policy changed). Triplets are kept; a lower `max_entries`
    /// forgets the oldest at once. Changing `by_network` changes the keys: triplets seen
    /// under the old setting are greylisted once more and the old entries age out.
    pub fn update_settings(&self, settings: &GreylistSettings) {
        let mut inner = lock(&self.inner);
        inner.settings = settings.clone();
        evict_oldest(&mut inner.entries, settings.max_entries);
    }

    /// Checks and records one attempt of (`ip`, `sender`, `rcpt`) at `now`. Sender and
    /// recipient are compared without case; `ip` counts as its /24 (IPv4) or /64 (IPv6) when
    /// `by_network` is set. Always [`GreyVerdict::Pass`] when greylisting is disabled.
    pub fn check(&self, ip: IpAddr, sender: &str, rcpt: &str, now: SystemTime) -> GreyVerdict {
        let now = secs(now);
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        let s = &inner.settings;
        if !s.enabled {
            return GreyVerdict::Pass;
        }
        let (delay, window, ttl) = (s.delay_s, s.retry_window_s, s.pass_ttl_s);
        let key = triplet_key(&inner.salt, ip, s.by_network, sender, rcpt);
        let fresh = Entry {
            first: now,
            last: now,
            passed: false,
        };
        let defer = GreyVerdict::Defer {
            retry_after_s: delay,
        };
        let Some(e) = inner.entries.get_mut(&key) else {
            if inner.entries.len() >= s.max_entries {
                make_room(&mut inner.entries, s, now);
            }
            inner.entries.insert(key, fresh);
            return defer;
        };
        if e.passed {
            if now <= e.last.saturating_add(ttl) {
                e.last = e.last.max(now);
                return GreyVerdict::Pass;
            }
        } else if now >= e.first {
            let waited = now - e.first;
            if waited < delay {
                e.last = e.last.max(now);
                return GreyVerdict::Defer {
                    retry_after_s: delay - waited,
                };
            }
            if waited <= window {
                e.passed = true;
                e.last = now;
                return GreyVerdict::Pass;
            }
        }
        // Expired, no retry in the window, or the clock went back past the first attempt.
        *e = fresh;
        defer
    }

    /// Forgets every triplet expired at `now`: pending ones past their retry window, passed
    /// ones unused for `pass_ttl_s`. Returns how many.
    pub fn purge_expired(&self, now: SystemTime) -> usize {
        let now = secs(now);
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        let before = inner.entries.len();
        let s = &inner.settings;
        inner.entries.retain(|_, e| !expired(e, s, now));
        before - inner.entries.len()
    }

    /// How many triplets are remembered.
    pub fn len(&self) -> usize {
        lock(&self.inner).entries.len()
    }

    /// Whether no triplet is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the snapshot atomically: a temporary file in the same directory, fsync, rename
    /// over the old one, fsync of the directory. Blocking: call it from `spawn_blocking`.
    ///
    /// Errors: the directory is not writable or the disk is full; the previous snapshot stays.
    pub fn save(&self) -> io::Result<()> {
        let _order = lock(&self.saving);
        let bytes = {
            let inner = lock(&self.inner);
            serialize(&inner.salt, &inner.entries)
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".greylist.")
            .tempfile_in(dir)?;
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        File::open(dir)?.sync_all()
    }
}

fn expired(e: &Entry, s: &GreylistSettings, now: u64) -> bool {
    if e.passed {
        now > e.last.saturating_add(s.pass_ttl_s)
    } else {
        now > e.first.saturating_add(s.retry_window_s)
    }
}

/// Frees room for one insert into a full table: expired triplets first, then the oldest —
/// 1/64 of the table at once, so the O(n) pass is paid once per many inserts.
fn make_room(entries: &mut HashMap<Key, Entry>, s: &GreylistSettings, now: u64) {
    entries.retain(|_, e| !expired(e, s, now));
    if entries.len() >= s.max_entries {
        let batch = (s.max_entries / 64).max(1);
        evict_oldest(entries, s.max_entries.saturating_sub(batch));
    }
}

/// Keeps the `keep` most recently seen triplets.
fn evict_oldest(entries: &mut HashMap<Key, Entry>, keep: usize) {
    let Some(excess) = entries.len().checked_sub(keep).filter(|n| *n > 0) else {
        return;
    };
    let mut ages: Vec<(u64, Key)> = entries.iter().map(|(k, e)| (e.last, *k)).collect();
    ages.select_nth_unstable(excess - 1);
    for (_, k) in ages.iter().take(excess) {
        entries.remove(k);
    }
}

/// The salted key of a triplet; lengths are hashed too, so no two triplets share an input.
fn triplet_key(salt: &[u8; 16], ip: IpAddr, by_network: bool, sender: &str, rcpt: &str) -> Key {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let mut h = Sha256::new();
    h.update(b"mailnode greylist v1\0");
    h.update(salt);
    match ip {
        IpAddr::V4(a) => {
            let mask = if by_network { 0xffff_ff00 } else { u32::MAX };
            h.update([4u8]);
            h.update((u32::from(a) & mask).to_be_bytes());
        }
        IpAddr::V6(a) => {
            let mask = if by_network {
                u128::MAX << 64
            } else {
                u128::MAX
            };
            h.update([6u8]);
            h.update((u128::from(a) & mask).to_be_bytes());
        }
    }
    for part in [sender.to_lowercase(), rcpt.to_lowercase()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

fn serialize(salt: &[u8; 16], entries: &HashMap<Key, Entry>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + entries.len() * ENTRY + TRAILER);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(salt);
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (k, e) in entries {
        out.extend_from_slice(k);
        out.extend_from_slice(&e.first.to_le_bytes());
        out.extend_from_slice(&e.last.to_le_bytes());
        out.push(u8::from(e.passed));
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

enum Load {
    Io(io::Error),
    Corrupt(String),
}

type Loaded = ([u8; 16], HashMap<Key, Entry>);

/// Reads a snapshot: `None` when there is none.
fn load(path: &Path) -> Result<Option<Loaded>, Load> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Load::Io(e)),
    };
    let size = f.metadata().map_err(Load::Io)?.len();
    let mut header = [0u8; HEADER];
    if size < (HEADER + TRAILER) as u64 {
        return Err(Load::Corrupt(format!("{size} bytes, too short")));
    }
    f.read_exact(&mut header).map_err(Load::Io)?;
    if header.get(..8) != Some(&MAGIC[..]) {
        return Err(Load::Corrupt("not a greylist snapshot".into()));
    }
    let field = |r: std::ops::Range<usize>| header.get(r).unwrap_or(&[]);
    let count = u64::from_le_bytes(field(24..32).try_into().unwrap_or([0xff; 8]));
    // The size is checked before anything of that size is allocated.
    let expected = count
        .checked_mul(ENTRY as u64)
        .and_then(|n| n.checked_add((HEADER + TRAILER) as u64));
    if expected != Some(size) {
        return Err(Load::Corrupt(format!(
            "{size} bytes for {count} entries: truncated or damaged"
        )));
    }
    let mut rest = Vec::new();
    f.read_to_end(&mut rest).map_err(Load::Io)?;
    let split = rest.len().saturating_sub(TRAILER);
    let (body, trailer) = rest.split_at(split);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header);
    crc.update(body);
    if trailer != crc.finalize().to_le_bytes()
        || body.len() as u64 != size - (HEADER + TRAILER) as u64
    {
        return Err(Load::Corrupt("checksum mismatch".into()));
    }
    let mut salt = [0u8; 16];
    salt.copy_from_slice(field(8..24));
    let mut entries = HashMap::with_capacity(body.len() / ENTRY);
    for rec in body.chunks_exact(ENTRY) {
        let mut key = [0u8; 16];
        key.copy_from_slice(&rec[..16]);
        let int = |r: std::ops::Range<usize>| {
            u64::from_le_bytes(rec.get(r).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]))
        };
        let passed = match rec.get(32) {
            Some(0) => false,
            Some(1) => true,
            _ => return Err(Load::Corrupt("an entry with a bad state byte".into())),
        };
        entries.insert(
            key,
            Entry {
                first: int(16..24),
                last: int(24..32),
                passed,
            },
        );
    }
    Ok(Some((salt, entries)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T0: u64 = 1_800_000_000;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(T0 + s)
    }

    fn settings() -> GreylistSettings {
        GreylistSettings {
            enabled: true,
            delay_s: 300,
            retry_window_s: 4 * 3600,
            pass_ttl_s: 86_400,
            max_entries: 1000,
            by_network: true,
        }
    }

    fn open(dir: &tempfile::TempDir, s: &GreylistSettings) -> Greylist {
        Greylist::open(dir.path().join("greylist"), s).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn defer(s: u64) -> GreyVerdict {
        GreyVerdict::Defer { retry_after_s: s }
    }

    #[test]
    fn first_attempt_defers_and_a_timely_retry_passes() {
        let dir = tempfile::tempdir().unwrap();
        let g = open(&dir, &settings());
        let c = ip("192.0.2.10");
        assert_eq!(
            g.check(c, "a@example.com", "b@example.org", at(0)),
            defer(300)
        );
        assert_eq!(
            g.check(c, "a@example.com", "b@example.org", at(100)),
            defer(200)
        );
        assert_eq!(
            g.check(c, "a@example.com", "b@example.org", at(299)),
            defer(1)
        );
        assert_eq!(
            g.check(c, "A@Example.COM", "b@EXAMPLE.org", at(300)),
            GreyVerdict::Pass
        );
        // Passed: passes at once, for pass_ttl_s after each use.
        assert_eq!(
            g.check(c, "a@example.com", "b@example.org", at(50_000)),
            GreyVerdict::Pass
        );
        assert_eq!(
            g.check(c, "a@example.com", "b@example.org", at(50_000 + 86_400)),
            GreyVerdict::Pass
        );
        assert_eq!(
            g.check(
                c,
                "a@example.com",
                "b@example.org",
                at(50_000 + 2 * 86_400 + 1)
            ),
            defer(300)
        );
        // Another recipient is another triplet.
        assert_eq!(
            g.check(c, "a@example.com", "c@example.org", at(300)),
            defer(300)
        );
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn a_late_retry_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let g = open(&dir, &settings());
        let c = ip("192.0.2.10");
        assert_eq!(g.check(c, "a@x", "b@y", at(0)), defer(300));
        assert_eq!(g.check(c, "a@x", "b@y", at(4 * 3600)), GreyVerdict::Pass);
        assert_eq!(g.check(c, "a@x", "c@y", at(0)), defer(300));
        assert_eq!(g.check(c, "a@x", "c@y", at(4 * 3600 + 1)), defer(300));
        assert_eq!(
            g.check(c, "a@x", "c@y", at(4 * 3600 + 301)),
            GreyVerdict::Pass
        );
    }

    #[test]
    fn networks_group_clients_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings();
        let g = open(&dir, &s);
        assert_eq!(g.check(ip("192.0.2.10"), "a@x", "b@y", at(0)), defer(300));
        assert_eq!(
            g.check(ip("192.0.2.200"), "a@x", "b@y", at(400)),
            GreyVerdict::Pass
        );
        assert_eq!(
            g.check(ip("::ffff:192.0.2.7"), "a@x", "b@y", at(500)),
            GreyVerdict::Pass
        );
        assert_eq!(g.check(ip("192.0.3.10"), "a@x", "b@y", at(500)), defer(300));
        assert_eq!(g.check(ip("2001:db8::1"), "a@x", "b@y", at(0)), defer(300));
        assert_eq!(
            g.check(ip("2001:db8::ffff:2"), "a@x", "b@y", at(300)),
            GreyVerdict::Pass
        );
        assert_eq!(
            g.check(ip("2001:db8:0:1::1"), "a@x", "b@y", at(300)),
            defer(300)
        );
        s.by_network = false;
        g.update_settings(&s);
        assert_eq!(g.check(ip("198.51.100.1"), "a@x", "b@y", at(0)), defer(300));
        assert_eq!(
            g.check(ip("198.51.100.2"), "a@x", "b@y", at(400)),
            defer(300)
        );
    }

    #[test]
    fn disabled_passes_without_recording() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings();
        s.enabled = false;
        let g = open(&dir, &s);
        assert_eq!(
            g.check(ip("192.0.2.1"), "a@x", "b@y", at(0)),
            GreyVerdict::Pass
        );
        assert!(g.is_empty());
    }

    #[test]
    fn a_clock_stepped_back_restarts_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let g = open(&dir, &settings());
        let c = ip("192.0.2.1");
        assert_eq!(g.check(c, "a@x", "b@y", at(10_000)), defer(300));
        assert_eq!(g.check(c, "a@x", "b@y", at(0)), defer(300));
        assert_eq!(g.check(c, "a@x", "b@y", at(300)), GreyVerdict::Pass);
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings();
        s.max_entries = 3;
        let g = open(&dir, &s);
        let c = ip("192.0.2.1");
        for (i, r) in ["r1@y", "r2@y", "r3@y"].iter().enumerate() {
            g.check(c, "a@x", r, at(i as u64));
        }
        // r1 retried: most recently seen now.
        assert_eq!(g.check(c, "a@x", "r1@y", at(10)), defer(290));
        g.check(c, "a@x", "r4@y", at(11));
        assert_eq!(g.len(), 3);
        // r2 (last seen at 1) was forgotten: it starts over; r3 still waits from 2.
        assert_eq!(g.check(c, "a@x", "r3@y", at(302)), GreyVerdict::Pass);
        assert_eq!(g.check(c, "a@x", "r1@y", at(303)), GreyVerdict::Pass);
        assert_eq!(g.check(c, "a@x", "r2@y", at(303)), defer(300));
        s.max_entries = 1;
        g.update_settings(&s);
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn a_full_table_forgets_expired_triplets_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings();
        s.max_entries = 2;
        let g = open(&dir, &s);
        let c = ip("192.0.2.1");
        g.check(c, "a@x", "passed@y", at(0));
        assert_eq!(g.check(c, "a@x", "passed@y", at(300)), GreyVerdict::Pass);
        g.check(c, "a@x", "stale@y", at(100));
        g.check(c, "a@x", "stale@y", at(350));
        // "stale" was seen last but its window closed at 100 + 4 h: it goes, "passed" stays.
        g.check(c, "a@x", "new@y", at(20_000));
        assert_eq!(g.len(), 2);
        assert_eq!(g.check(c, "a@x", "passed@y", at(20_001)), GreyVerdict::Pass);
        assert_eq!(g.purge_expired(at(20_000 + 4 * 3600 + 1)), 1);
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn snapshots_round_trip_and_hold_no_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("greylist");
        let s = settings();
        let now = SystemTime::now();
        let plus = |n: u64| now + Duration::from_secs(n);
        let g = Greylist::open(&path, &s).unwrap();
        let c = ip("192.0.2.55");
        g.check(c, "alice@example.com", "bob@example.org", now);
        g.check(c, "alice@example.com", "bob@example.org", plus(300));
        g.check(c, "carol@example.com", "bob@example.org", now);
        g.save().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), HEADER + 2 * ENTRY + TRAILER);
        for needle in [&b"alice"[..], b"example", b"192.0.2", &[192, 0, 2]] {
            assert!(memchr::memmem::find(&bytes, needle).is_none());
        }
        let g = Greylist::open(&path, &s).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(
            g.check(c, "alice@example.com", "bob@example.org", plus(301)),
            GreyVerdict::Pass
        );
        assert_eq!(
            g.check(c, "carol@example.com", "bob@example.org", plus(310)),
            GreyVerdict::Pass
        );
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_corrupt_snapshot_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("greylist");
        let s = settings();
        let g = Greylist::open(&path, &s).unwrap();
        g.check(ip("192.0.2.1"), "a@x", "b@y", SystemTime::now());
        g.save().unwrap();
        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[HEADER + 20] ^= 1;
        let mut huge_count = good.clone();
        huge_count[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        for bad in [
            flipped,
            huge_count,
            good[..good.len() - 1].to_vec(),
            b"garbage".to_vec(),
            Vec::new(),
        ] {
            std::fs::write(&path, &bad).unwrap();
            let g = Greylist::open(&path, &s).unwrap();
            assert!(g.is_empty());
            // ... and the next save replaces it with a valid one.
            g.check(ip("192.0.2.1"), "a@x", "b@y", SystemTime::now());
            g.save().unwrap();
            assert_eq!(Greylist::open(&path, &s).unwrap().len(), 1);
        }
    }
}
