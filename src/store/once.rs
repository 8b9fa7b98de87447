//! Exactly-once delivery: a delivery that carries a key (the LMTP client's queue id and the
//! recipient) is stored at most once per user, however often it is retried.
//!
//! The queue records a recipient as delivered only after the mailstore's reply; a crash between
//! the two — or a crash of the store after the message file is in place but before the reply —
//! makes the queue deliver again. So the store remembers keys: a keyed message's file is named
//! `<micros>.<hash>` with the 128-bit hash of the key, which puts the key in the same durable
//! steps as the message itself (the file name is in the directory entry and in the index
//! record, and survives compaction and recovery). Each loaded user keeps a map from hash to the
//! first delivery's result, rebuilt at load from the file names of the last
//! [`MEMORY_SECS`]; a retry with a known key is answered with that result and writes nothing.
//! A retry racing with the first attempt (same key in progress) gets a temporary error, so
//! the client retries once the first attempt has finished.
//!
//! Limits of the guarantee: a keyed message expunged and then forgotten (user unloaded) before
//! the retry is delivered again; keys older than [`MEMORY_SECS`] are forgotten (the queue
//! gives up long before: its default lifetime is five days).
//!
//! Security note: keys come from the LMTP client, which is trusted infrastructure (the
//! mailstore's LMTP port is reachable only from the cluster). A key is only ever compared by
//! its SHA-256-derived hash, never used as a path; a client that reused another delivery's key
//! would suppress that one delivery, which is why the key includes the queue id.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::error::StoreError;
use super::write::Delivered;

/// How long a delivery key is remembered (seven days: longer than any queue lifetime).
pub(crate) const MEMORY_SECS: u64 = 7 * 24 * 3600;

/// The 128-bit hash of a delivery key.
pub(crate) fn key_hash(key: &str) -> u128 {
    let digest = Sha256::digest(key.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(b)
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The file name of a keyed message: creation time (so names sort by arrival, like
/// [`super::fsio::unique_name`]) and the key's hash. Unique per user by construction.
pub(crate) fn keyed_name(hash: u128) -> String {
    format!("{:014x}.{hash:032x}", now_micros())
}

/// The key hash and creation time (µs) of a keyed file name; `None` for any other name.
pub(crate) fn parse_keyed_name(name: &str) -> Option<(u128, u64)> {
    let (time, hash) = name.split_once('.')?;
    if time.len() != 14 || hash.len() != 32 {
        return None;
    }
    Some((
        u128::from_str_radix(hash, 16).ok()?,
        u64::from_str_radix(time, 16).ok()?,
    ))
}

/// One user's remembered deliveries.
#[derive(Default)]
pub(crate) struct Deliveries {
    /// Key hash → the first delivery's result and when it happened (µs).
    done: HashMap<u128, (Delivered, u64)>,
    /// Keys being delivered right now.
    pending: HashSet<u128>,
    /// Map size after the last pruning; the next prune runs at twice that.
    pruned_at: usize,
}

impl Deliveries {
    /// Remembers a delivery found on disk at load (ignored when older than the memory).
    pub(crate) fn remember_file(&mut self, file: &str, d: Delivered) {
        if let Some((hash, micros)) = parse_keyed_name(file) {
            if now_micros().saturating_sub(micros) < MEMORY_SECS * 1_000_000 {
                self.done.insert(hash, (d, micros));
            }
        }
    }

    fn prune(&mut self) {
        if self.done.len() < (self.pruned_at * 2).max(1024) {
            return;
        }
        let horizon = now_micros().saturating_sub(MEMORY_SECS * 1_000_000);
        self.done.retain(|_, (_, at)| *at >= horizon);
        self.pruned_at = self.done.len();
    }
}

/// Runs `deliver` at most once per `key` for this user. `deliver` gets the file name to use
/// (`None`: no key, any unique name). A known key returns the first result without calling it.
pub(crate) fn once(
    memory: &Mutex<Deliveries>,
    key: Option<&str>,
    deliver: impl FnOnce(Option<Arc<str>>) -> Result<Delivered, StoreError>,
) -> Result<Delivered, StoreError> {
    let Some(key) = key else {
        return deliver(None);
    };
    let hash = key_hash(key);
    let lock = || {
        memory
            .lock()
            .map_err(|_| StoreError::Unavailable("a previous delivery panicked".into()))
    };
    {
        let mut m = lock()?;
        if let Some((d, _)) = m.done.get(&hash) {
            tracing::info!(
                uid = d.uid,
                "delivery already done (retry of an acknowledged delivery); not stored again"
            );
            return Ok(*d);
        }
        if !m.pending.insert(hash) {
            return Err(StoreError::Unavailable(
                "the same delivery is in progress; try again".into(),
            ));
        }
    }
    let name: Arc<str> = keyed_name(hash).into();
    let res = deliver(Some(name));
    // Never leave the key pending, even when the lock was poisoned meanwhile.
    let mut m = memory.lock().unwrap_or_else(|p| p.into_inner());
    m.pending.remove(&hash);
    if let Ok(d) = &res {
        m.done.insert(hash, (*d, now_micros()));
        m.prune();
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fsio::is_message_file_name;

    fn delivered(uid: u32) -> Delivered {
        Delivered {
            uid,
            uidvalidity: 7,
            size: 10,
        }
    }

    #[test]
    fn keyed_names_round_trip_and_look_like_message_files() {
        let h = key_hash("n1.0001\nalice@example.org");
        let name = keyed_name(h);
        assert!(is_message_file_name(&name), "{name}");
        assert_eq!(parse_keyed_name(&name).map(|(k, _)| k), Some(h));
        assert_ne!(h, key_hash("n1.0001\nbob@example.org"));
        for other in ["0123456789abcd.1.deadbeef", "x.y", "", "0123456789abcd.zz"] {
            assert_eq!(parse_keyed_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_key_is_delivered_once() {
        let m = Mutex::new(Deliveries::default());
        let mut calls = 0;
        let first = once(&m, Some("k"), |name| {
            calls += 1;
            assert!(name.is_some());
            Ok(delivered(5))
        })
        .unwrap();
        let again = once(&m, Some("k"), |_| {
            calls += 1;
            Ok(delivered(6))
        })
        .unwrap();
        assert_eq!((first, again, calls), (delivered(5), delivered(5), 1));
        // No key: always delivered.
        once(&m, None, |name| {
            assert!(name.is_none());
            Ok(delivered(7))
        })
        .unwrap();
    }

    #[test]
    fn a_failed_delivery_is_forgotten_and_a_concurrent_one_waits() {
        let m = Mutex::new(Deliveries::default());
        let err = once(&m, Some("k"), |_| {
            // The same key while this one is in progress: temporary refusal.
            let inner = once(&m, Some("k"), |_| Ok(delivered(1)));
            assert!(matches!(inner, Err(StoreError::Unavailable(_))));
            Err(StoreError::Unavailable("disk".into()))
        });
        assert!(err.is_err());
        assert_eq!(once(&m, Some("k"), |_| Ok(delivered(2))).unwrap().uid, 2);
    }

    #[test]
    fn old_files_are_not_remembered() {
        let mut d = Deliveries::default();
        let h = key_hash("old");
        let old = now_micros() - (MEMORY_SECS + 60) * 1_000_000;
        d.remember_file(&format!("{old:014x}.{h:032x}"), delivered(1));
        d.remember_file(&keyed_name(key_hash("new")), delivered(2));
        assert_eq!(d.done.len(), 1);
    }
}
