//! Per-address connection limits for the MX, like Postfix's anvil: how many connections one
//! client address holds at once, and how many it opens per minute.
//!
//! Job: [`Anvil::open`] counts a new connection from an address and refuses it
//! ([`AnvilRefusal`], shown in the `421` reply) when the address already holds `max_conn`
//! connections or has opened more than `max_rate_per_min` in the current 60-second window;
//! the [`AnvilGuard`] it returns gives the connection back when dropped. One `Anvil` per node,
//! shared by its MX sessions. An IPv4-mapped IPv6 address counts as its IPv4 address; other
//! IPv6 addresses count one by one (as Postfix does: hosts of one provider may share a /64).
//!
//! The rate is counted over fixed 60-second windows that start at an address's first
//! connection (Postfix's `anvil_rate_time_unit`). Every attempt counts, refused ones included,
//! so a client that keeps hammering stays refused until it slows down.
//!
//! Never: sleep, do I/O or decide anything beyond the two limits it is given.
//!
//! Security note: addresses are client-chosen, so memory is bounded: an address with no open
//! connection and an expired window is forgotten (on its last close, and by a sweep at most
//! once per window), and at most [`DEFAULT_MAX_TRACKED`] addresses are tracked. When the table
//! is full of live addresses, a new address is let in untracked (fail-open): refusing it would
//! let a flood of distinct addresses lock every new client out, and the listener's global
//! connection limit still bounds them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The rate window.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Most addresses tracked at once by [`Anvil::new`].
pub const DEFAULT_MAX_TRACKED: usize = 200_000;

/// Why a connection was refused. Displays as the text of a `421 4.7.0` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AnvilRefusal {
    /// The address already holds this many connections (the limit).
    #[error("too many connections from your address (at most {0}): try again later")]
    TooManyConnections(u32),
    /// The address opened more than this many connections (the limit) in the last minute.
    #[error("too many connections per minute from your address (at most {0}): slow down and try again later")]
    TooFast(u32),
}

/// What is known about one address.
#[derive(Debug)]
struct Entry {
    /// Connections open now.
    open: u32,
    /// Start of the current rate window.
    window_start: Instant,
    /// Connection attempts in the current window.
    attempts: u32,
}

impl Entry {
    /// Nothing open and the window over: the entry carries no information.
    fn idle(&self, now: Instant) -> bool {
        self.open == 0 && now.saturating_duration_since(self.window_start) >= RATE_WINDOW
    }
}

#[derive(Debug)]
struct Table {
    /// Entries by address.
    map: HashMap<IpAddr, Entry>,
    /// When idle entries were last swept.
    last_sweep: Instant,
}

#[derive(Debug)]
struct Inner {
    /// The table, behind a std mutex (held for a hash lookup; never across an await).
    table: Mutex<Table>,
    /// Most addresses tracked.
    max_tracked: usize,
}

/// The node's per-address connection counters. Cheap to share: wrap it in an `Arc` or clone
/// it (clones share the counters).
#[derive(Debug, Clone)]
pub struct Anvil {
    inner: Arc<Inner>,
}

impl Default for Anvil {
    fn default() -> Self {
        Anvil::new()
    }
}

/// One counted connection; dropping it gives the connection back.
#[derive(Debug)]
#[must_use = "the connection is given back when the guard is dropped"]
pub struct AnvilGuard {
    /// The counters and the address, or `None` when the address was let in untracked.
    slot: Option<(Arc<Inner>, IpAddr)>,
}

impl Drop for AnvilGuard {
    fn drop(&mut self) {
        let Some((inner, ip)) = self.slot.take() else {
            return;
        };
        let mut t = inner.table.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(e) = t.map.get_mut(&ip) {
            e.open = e.open.saturating_sub(1);
            if e.idle(now) {
                t.map.remove(&ip);
            }
        }
    }
}

impl Anvil {
    /// Counters tracking at most [`DEFAULT_MAX_TRACKED`] addresses.
    pub fn new() -> Self {
        Anvil::with_max_tracked(DEFAULT_MAX_TRACKED)
    }

    /// Counters tracking at most `max_tracked` addresses (0: no limit is ever enforced).
    pub fn with_max_tracked(max_tracked: usize) -> Self {
        Anvil {
            inner: Arc::new(Inner {
                table: Mutex::new(Table {
                    map: HashMap::new(),
                    last_sweep: Instant::now(),
                }),
                max_tracked,
            }),
        }
    }

    /// Counts a new connection from `ip` and admits it, or refuses it when `ip` holds
    /// `max_conn` connections already or has made more than `max_rate_per_min` attempts in the
    /// current window (each limit 0: none). The rate is checked first; a refused attempt still
    /// counts towards the rate.
    pub fn open(
        &self,
        ip: IpAddr,
        max_conn: u32,
        max_rate_per_min: u32,
    ) -> Result<AnvilGuard, AnvilRefusal> {
        self.open_at(ip, max_conn, max_rate_per_min, Instant::now())
    }

    /// Addresses tracked now (for metrics and tests).
    pub fn tracked(&self) -> usize {
        self.inner
            .table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }

    /// Connections open from `ip` now.
    pub fn open_count(&self, ip: IpAddr) -> u32 {
        let t = self.inner.table.lock().unwrap_or_else(|e| e.into_inner());
        t.map.get(&canonical(ip)).map_or(0, |e| e.open)
    }

    fn open_at(
        &self,
        ip: IpAddr,
        max_conn: u32,
        max_rate_per_min: u32,
        now: Instant,
    ) -> Result<AnvilGuard, AnvilRefusal> {
        if max_conn == 0 && max_rate_per_min == 0 {
            return Ok(AnvilGuard { slot: None });
        }
        let ip = canonical(ip);
        let mut t = self.inner.table.lock().unwrap_or_else(|e| e.into_inner());
        if now.saturating_duration_since(t.last_sweep) >= RATE_WINDOW {
            t.map.retain(|_, e| !e.idle(now));
            t.last_sweep = now;
        }
        if !t.map.contains_key(&ip) && t.map.len() >= self.inner.max_tracked {
            // Full of live entries (idle ones would have been swept within the window):
            // sweeping now would cost a full scan per new address during a flood.
            return Ok(AnvilGuard { slot: None });
        }
        let e = t.map.entry(ip).or_insert(Entry {
            open: 0,
            window_start: now,
            attempts: 0,
        });
        if now.saturating_duration_since(e.window_start) >= RATE_WINDOW {
            e.window_start = now;
            e.attempts = 0;
        }
        e.attempts = e.attempts.saturating_add(1);
        if max_rate_per_min > 0 && e.attempts > max_rate_per_min {
            return Err(AnvilRefusal::TooFast(max_rate_per_min));
        }
        if max_conn > 0 && e.open >= max_conn {
            return Err(AnvilRefusal::TooManyConnections(max_conn));
        }
        e.open += 1;
        Ok(AnvilGuard {
            slot: Some((self.inner.clone(), ip)),
        })
    }
}

/// An IPv4-mapped IPv6 address as IPv4; others unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn concurrency_limit_and_release_on_drop() {
        let a = Anvil::new();
        let c = ip("192.0.2.1");
        let g1 = a.open(c, 2, 0).unwrap();
        let g2 = a.open(ip("::ffff:192.0.2.1"), 2, 0).unwrap();
        assert_eq!(a.open_count(c), 2);
        assert_eq!(
            a.open(c, 2, 0).unwrap_err(),
            AnvilRefusal::TooManyConnections(2)
        );
        // Another address is not affected.
        let other = a.open(ip("192.0.2.2"), 2, 0).unwrap();
        drop(g1);
        assert_eq!(a.open_count(c), 1);
        let g3 = a.open(c, 2, 0).unwrap();
        drop((g2, g3, other));
        assert_eq!(a.open_count(c), 0);
    }

    #[test]
    fn rate_limit_counts_attempts_per_window() {
        let a = Anvil::new();
        let c = ip("2001:db8::1");
        let t0 = Instant::now();
        for _ in 0..3 {
            drop(a.open_at(c, 0, 3, t0).unwrap());
        }
        assert_eq!(
            a.open_at(c, 0, 3, t0).unwrap_err(),
            AnvilRefusal::TooFast(3)
        );
        // Refused attempts count: still refused later in the same window.
        let later = t0 + Duration::from_secs(59);
        assert!(a.open_at(c, 0, 3, later).is_err());
        // A new window admits again.
        let next = t0 + RATE_WINDOW;
        drop(a.open_at(c, 0, 3, next).unwrap());
        // A neighbour in the same /64 has its own count.
        drop(a.open_at(ip("2001:db8::2"), 0, 3, t0).unwrap());
    }

    #[test]
    fn both_limits_together() {
        let a = Anvil::new();
        let c = ip("192.0.2.1");
        let g = a.open(c, 1, 2).unwrap();
        assert_eq!(
            a.open(c, 1, 2).unwrap_err(),
            AnvilRefusal::TooManyConnections(1)
        );
        drop(g);
        // Third attempt in the window: rate refusal, checked first.
        assert_eq!(a.open(c, 1, 2).unwrap_err(), AnvilRefusal::TooFast(2));
    }

    #[test]
    fn no_limits_track_nothing() {
        let a = Anvil::new();
        let g = a.open(ip("192.0.2.1"), 0, 0).unwrap();
        assert_eq!(a.tracked(), 0);
        drop(g);
    }

    #[test]
    fn idle_entries_are_forgotten() {
        let a = Anvil::new();
        let t0 = Instant::now();
        // Closed within the window: kept (the rate still needs it).
        drop(a.open_at(ip("192.0.2.1"), 5, 5, t0).unwrap());
        let held = a.open_at(ip("192.0.2.2"), 5, 5, t0).unwrap();
        assert_eq!(a.tracked(), 2);
        // A sweep after the window drops the idle one, keeps the one with an open connection.
        let _g = a
            .open_at(ip("192.0.2.3"), 5, 5, t0 + RATE_WINDOW * 2)
            .unwrap();
        assert_eq!(a.tracked(), 2);
        assert_eq!(a.open_count(ip("192.0.2.1")), 0);
        assert_eq!(a.open_count(ip("192.0.2.2")), 1);
        // The last close after the window forgets the address (Drop uses the real clock, so
        // make the window look old by opening it in the past).
        drop(held);
        let past = Instant::now().checked_sub(RATE_WINDOW * 2);
        if let Some(past) = past {
            let g = a.open_at(ip("192.0.2.4"), 5, 5, past).unwrap();
            assert_eq!(a.open_count(ip("192.0.2.4")), 1);
            drop(g);
            assert_eq!(a.open_count(ip("192.0.2.4")), 0);
            assert!(!a
                .inner
                .table
                .lock()
                .unwrap()
                .map
                .contains_key(&ip("192.0.2.4")));
        }
    }

    #[test]
    fn full_table_admits_new_addresses_untracked() {
        let a = Anvil::with_max_tracked(2);
        let t0 = Instant::now();
        let _g1 = a.open_at(ip("192.0.2.1"), 1, 0, t0).unwrap();
        let _g2 = a.open_at(ip("192.0.2.2"), 1, 0, t0).unwrap();
        let c = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
        let u1 = a.open_at(c, 1, 0, t0).unwrap();
        let u2 = a.open_at(c, 1, 0, t0).unwrap();
        assert_eq!(a.tracked(), 2);
        drop((u1, u2));
        // Tracked addresses keep their limits.
        assert!(a.open_at(ip("192.0.2.1"), 1, 0, t0).is_err());
    }

    #[test]
    fn refusal_texts() {
        assert_eq!(
            AnvilRefusal::TooManyConnections(10).to_string(),
            "too many connections from your address (at most 10): try again later"
        );
        assert!(AnvilRefusal::TooFast(30).to_string().contains("per minute"));
    }

    #[test]
    fn shared_between_threads() {
        let a = Anvil::new();
        let c = ip("192.0.2.1");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        if let Ok(g) = a.open(c, 4, 0) {
                            drop(g);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(a.open_count(c), 0);
    }
}
