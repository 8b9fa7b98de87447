//! Login brute-force defence for IMAP: failures counted per client address (IPv4, or IPv6
//! /64) and per user name in a fixed window. Each failure earns a growing delay before its
//! `NO`; an address or a user over its limit may not try again until the window ends.
//!
//! (The SMTP `AuthLimiter` counts per address only; IMAP also limits per user, so that many
//! addresses guessing one account's password are stopped too.) This file only counts and
//! computes delays; it never sleeps or replies. Security note: both tables are bounded
//! ([`MAX_TRACKED`]); a full table stops tracking new keys, which still leaves the per-session
//! limit and the delay.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::ImapConfig;

/// Most keys tracked per table.
pub const MAX_TRACKED: usize = 100_000;

#[derive(Debug)]
struct Table<K> {
    limit: u32,
    entries: HashMap<K, (u32, Instant)>,
}

impl<K: Eq + Hash> Table<K> {
    fn blocked(&self, k: &K, now: Instant, window: Duration) -> bool {
        self.entries
            .get(k)
            .is_some_and(|&(n, since)| now.duration_since(since) < window && n >= self.limit)
    }

    fn record(&mut self, k: K, now: Instant, window: Duration) -> u32 {
        if !self.entries.contains_key(&k) && self.entries.len() >= MAX_TRACKED {
            self.entries
                .retain(|_, &mut (_, since)| now.duration_since(since) < window);
            if self.entries.len() >= MAX_TRACKED {
                return 1;
            }
        }
        let e = self.entries.entry(k).or_insert((0, now));
        if now.duration_since(e.1) >= window {
            *e = (0, now);
        }
        e.0 = e.0.saturating_add(1);
        e.0
    }
}

/// Counts failed logins. One per node, shared by the IMAP listeners.
#[derive(Debug)]
pub struct LoginLimiter {
    window: Duration,
    base_delay: Duration,
    max_delay: Duration,
    ips: Mutex<Table<IpAddr>>,
    users: Mutex<Table<String>>,
}

impl LoginLimiter {
    pub fn new(cfg: &ImapConfig) -> Self {
        LoginLimiter {
            window: cfg.auth_window(),
            base_delay: Duration::from_millis(cfg.auth_failure_delay_ms),
            max_delay: Duration::from_millis(cfg.auth_failure_delay_max_ms),
            ips: Mutex::new(Table {
                limit: cfg.auth_failures_per_ip,
                entries: HashMap::new(),
            }),
            users: Mutex::new(Table {
                limit: cfg.auth_failures_per_user,
                entries: HashMap::new(),
            }),
        }
    }

    /// Whether a login for `user` from `ip` is refused without checking the password.
    pub fn is_blocked(&self, ip: IpAddr, user: &str) -> bool {
        self.is_blocked_at(ip, user, Instant::now())
    }

    /// Records a failure; returns how long to wait before answering it.
    pub fn record_failure(&self, ip: IpAddr, user: &str) -> Duration {
        self.record_failure_at(ip, user, Instant::now())
    }

    fn is_blocked_at(&self, ip: IpAddr, user: &str, now: Instant) -> bool {
        let ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        ips.blocked(&key(ip), now, self.window)
            || users.blocked(&user.to_ascii_lowercase(), now, self.window)
    }

    fn record_failure_at(&self, ip: IpAddr, user: &str, now: Instant) -> Duration {
        let n =
            self.ips
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(key(ip), now, self.window);
        if !user.is_empty() && user.len() <= 320 {
            self.users.lock().unwrap_or_else(|e| e.into_inner()).record(
                user.to_ascii_lowercase(),
                now,
                self.window,
            );
        }
        let doublings = n.saturating_sub(1).min(16);
        self.base_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }
}

/// IPv4 as is (also when mapped into IPv6), IPv6 by /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> LoginLimiter {
        LoginLimiter::new(&ImapConfig {
            auth_failures_per_ip: 3,
            auth_failures_per_user: 4,
            auth_failure_window_secs: 60,
            auth_failure_delay_ms: 100,
            auth_failure_delay_max_ms: 300,
            ..Default::default()
        })
    }

    #[test]
    fn per_ip_and_per_user_limits() {
        let l = limiter();
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let delays: Vec<_> = (0..3).map(|_| l.record_failure_at(a, "x@y", t0)).collect();
        assert_eq!(delays, vec![ms(100), ms(200), ms(300)]);
        assert!(l.is_blocked_at(a, "other@y", t0));
        // The user has 3 failures; one more from elsewhere blocks it everywhere.
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(!l.is_blocked_at(b, "X@Y", t0));
        l.record_failure_at(b, "x@y", t0);
        assert!(l.is_blocked_at("2001:db8:1::1".parse().unwrap(), "X@y", t0));
        assert!(!l.is_blocked_at("2001:db8:1::1".parse().unwrap(), "z@y", t0));
        let later = t0 + Duration::from_secs(61);
        assert!(!l.is_blocked_at(a, "x@y", later));
    }
}
