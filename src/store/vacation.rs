//! Per-user memory of what Sieve did on the delivery side: vacation responses (RFC 5230 §4.2,
//! "don't answer the same sender twice within `:days`") and the delivery keys whose redirects
//! already left, so a delivery the queue repeats (`XDELIVERY`) forwards nothing twice.
//!
//! One small JSON file per user, `<user dir>/sieve-memory.json`, replaced atomically and
//! durably (temp file, fsync, rename, directory fsync) on each change: it lives on the
//! mailstore volume, so it follows the mailstore through a failover. Entries expire (a
//! vacation entry after its `:days`, a redirect key after [`REDIRECT_MEMORY_SECS`]) and each
//! map is bounded ([`MAX_ENTRIES`], the entries closest to expiry go first), so the file stays
//! under about 150 KB whatever the mail volume. A missing or unreadable file is an empty
//! memory: the worst case is one extra vacation reply, never a lost message.
//!
//! Security note: senders and keys are stored only as SHA-256-derived hashes, never as paths
//! or plain addresses; the file is read with a size bound.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{at, StoreError};
use super::fsio::write_atomic;
use super::{Shared, Store};

/// The memory file in a user's directory.
pub(crate) const MEMORY_FILE: &str = "sieve-memory.json";
/// How long a delivery key whose redirects were sent is remembered: longer than the queue's
/// retry of a delivery whose reply was lost, as the store's own keys (`once`).
pub const REDIRECT_MEMORY_SECS: i64 = 7 * 24 * 3600;
/// Most entries per map.
pub const MAX_ENTRIES: usize = 1500;
/// A memory file larger than this is ignored (and replaced).
const MAX_FILE: u64 = 1 << 20;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Memory {
    /// Hash of (handle, sender) → unix time until which no new reply goes out.
    #[serde(default)]
    vacation: BTreeMap<String, i64>,
    /// Hash of a delivery key → unix time until which it is remembered.
    #[serde(default)]
    redirects: BTreeMap<String, i64>,
}

/// Serialises read-modify-write of memory files; sharded by user so users do not wait on
/// each other (a user's deliveries are few at a time).
static LOCKS: [Mutex<()>; 64] = [const { Mutex::new(()) }; 64];

fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn prune(map: &mut BTreeMap<String, i64>, now: i64) {
    map.retain(|_, until| *until > now);
    if map.len() > MAX_ENTRIES {
        let mut by_expiry: Vec<(i64, String)> = map.iter().map(|(k, v)| (*v, k.clone())).collect();
        by_expiry.sort();
        for (_, k) in by_expiry.into_iter().take(map.len() - MAX_ENTRIES) {
            map.remove(&k);
        }
    }
}

fn read(path: &Path) -> Memory {
    let Ok(meta) = std::fs::metadata(path) else {
        return Memory::default();
    };
    if meta.len() > MAX_FILE {
        tracing::warn!(path = %path.display(), "Sieve memory file too large; starting afresh");
        return Memory::default();
    }
    match std::fs::read(path).map(|b| serde_json::from_slice::<Memory>(&b)) {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable Sieve memory file; starting afresh");
            Memory::default()
        }
        Err(_) => Memory::default(),
    }
}

/// Runs `f` on the user's memory under its lock; writes the memory back when `f` says so.
fn with_memory<T>(
    sh: &Shared,
    dir: &Path,
    f: impl FnOnce(&mut Memory) -> (T, bool),
) -> Result<T, StoreError> {
    let shard = dir
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0usize, |a, &b| a.wrapping_mul(31).wrapping_add(b.into()))
        % LOCKS.len();
    let _guard = LOCKS[shard].lock().unwrap_or_else(|p| p.into_inner());
    let path = dir.join(MEMORY_FILE);
    let mut memory = read(&path);
    let (out, changed) = f(&mut memory);
    if changed {
        std::fs::create_dir_all(dir).map_err(at(dir))?;
        let json = serde_json::to_vec(&memory).map_err(|e| StoreError::Internal(e.to_string()))?;
        write_atomic(&path, &json, &sh.faults)?;
    }
    Ok(out)
}

impl Store {
    /// Decides whether a vacation reply to `sender` under `handle` may go out at `now`
    /// (unix seconds) and, if so, records it durably for `days` days before returning `true`
    /// — the reply is sent after this, so a crash can lose a reply but never send two.
    pub async fn vacation_reply_due(
        &self,
        user: &str,
        handle: &str,
        sender: &str,
        days: u32,
        now: i64,
    ) -> Result<bool, StoreError> {
        let u = self.user(user).await?;
        let key = hash(&[handle, &sender.to_ascii_lowercase()]);
        let until = now.saturating_add(i64::from(days) * 86_400);
        self.blocking(move |sh| {
            with_memory(sh, &u.dir, |m| {
                prune(&mut m.vacation, now);
                if m.vacation.contains_key(&key) {
                    return (false, false);
                }
                m.vacation.insert(key, until);
                prune(&mut m.vacation, now);
                (true, true)
            })
        })
        .await
    }

    /// Whether the redirects of the delivery `key` (the LMTP `XDELIVERY` id and recipient)
    /// were already sent.
    pub async fn redirects_sent(
        &self,
        user: &str,
        key: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let u = self.user(user).await?;
        let key = hash(&[key]);
        self.blocking(move |_| {
            let m = read(&u.dir.join(MEMORY_FILE));
            Ok(m.redirects.get(&key).is_some_and(|until| *until > now))
        })
        .await
    }

    /// Records durably that the redirects of delivery `key` were sent.
    pub async fn remember_redirects(
        &self,
        user: &str,
        key: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let u = self.user(user).await?;
        let key = hash(&[key]);
        self.blocking(move |sh| {
            with_memory(sh, &u.dir, |m| {
                prune(&mut m.redirects, now);
                m.redirects.insert(key, now + REDIRECT_MEMORY_SECS);
                prune(&mut m.redirects, now);
                ((), true)
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    const NOW: i64 = 1_780_000_000;
    const DAY: i64 = 86_400;

    fn store(dir: &Path) -> Store {
        let cfg = StoreConfig {
            create_if_missing: true,
            ..StoreConfig::default()
        };
        Store::open(dir, cfg).unwrap()
    }

    #[tokio::test]
    async fn one_reply_per_sender_and_handle_within_days_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let u = "alice@example.org";
        assert!(s
            .vacation_reply_due(u, "h", "bob@x.example", 3, NOW)
            .await
            .unwrap());
        assert!(!s
            .vacation_reply_due(u, "h", "BOB@x.example", 3, NOW + DAY)
            .await
            .unwrap());
        assert!(s
            .vacation_reply_due(u, "other", "bob@x.example", 3, NOW)
            .await
            .unwrap());
        assert!(s
            .vacation_reply_due(u, "h", "carol@x.example", 3, NOW)
            .await
            .unwrap());
        assert!(
            s.vacation_reply_due("zed@example.org", "h", "bob@x.example", 3, NOW)
                .await
                .unwrap(),
            "memories are per user"
        );
        // Reopened (another process after a failover): still remembered, then expired.
        drop(s);
        let s = store(dir.path());
        assert!(!s
            .vacation_reply_due(u, "h", "bob@x.example", 3, NOW + 2 * DAY)
            .await
            .unwrap());
        assert!(s
            .vacation_reply_due(u, "h", "bob@x.example", 3, NOW + 3 * DAY + 1)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn redirect_keys_are_remembered_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let u = "alice@example.org";
        assert!(!s
            .redirects_sent(u, "n1.1\nalice@example.org", NOW)
            .await
            .unwrap());
        s.remember_redirects(u, "n1.1\nalice@example.org", NOW)
            .await
            .unwrap();
        assert!(s
            .redirects_sent(u, "n1.1\nalice@example.org", NOW + 60)
            .await
            .unwrap());
        assert!(!s
            .redirects_sent(u, "n1.2\nalice@example.org", NOW)
            .await
            .unwrap());
        assert!(!s
            .redirects_sent(u, "n1.1\nalice@example.org", NOW + REDIRECT_MEMORY_SECS + 1)
            .await
            .unwrap());
    }

    #[test]
    fn maps_are_bounded_and_drop_the_soonest_to_expire() {
        let mut m = BTreeMap::new();
        for i in 0..(MAX_ENTRIES as i64 + 10) {
            m.insert(format!("k{i}"), NOW + 100 + i);
        }
        m.insert("gone".into(), NOW - 1);
        prune(&mut m, NOW);
        assert_eq!(m.len(), MAX_ENTRIES);
        assert!(!m.contains_key("gone") && !m.contains_key("k0") && !m.contains_key("k9"));
        assert!(m.contains_key("k10"));
    }

    #[tokio::test]
    async fn a_damaged_file_is_an_empty_memory() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let u = "alice@example.org";
        assert!(s
            .vacation_reply_due(u, "h", "bob@x.example", 3, NOW)
            .await
            .unwrap());
        let file = crate::store::user::user_dir(dir.path(), u).join(MEMORY_FILE);
        std::fs::write(&file, b"{not json").unwrap();
        assert!(s
            .vacation_reply_due(u, "h", "bob@x.example", 3, NOW)
            .await
            .unwrap());
        assert!(!s
            .vacation_reply_due(u, "h", "bob@x.example", 3, NOW)
            .await
            .unwrap());
    }
}
