//! AUTH brute-force defence shared by all sessions of the submission listeners: failures are
//! counted per client address (IPv4, or IPv6 /64) in a fixed window; each failure earns a
//! growing delay before its `535`, and an address over the limit may not try again until its
//! window ends.
//!
//! This file only counts and computes delays; it never sleeps, replies or closes anything.
//!
//! Security note: the table is bounded ([`MAX_TRACKED`]); when it is full of live entries a
//! new address is not tracked (it still meets the per-session limit and the delay), which
//! costs an attacker with that many addresses nothing they did not already have. A success
//! does not reset the count: one valid account must not buy unlimited guesses at others.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::SmtpConfig;

/// Most addresses tracked at once.
pub const MAX_TRACKED: usize = 100_000;

/// Counts AUTH failures per client address. Share one between the listeners that offer AUTH.
#[derive(Debug)]
pub struct AuthLimiter {
    max_failures: u32,
    window: Duration,
    base_delay: Duration,
    max_delay: Duration,
    /// Failures and the start of their window, per address key.
    entries: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl AuthLimiter {
    /// A limiter with the configuration's limits.
    pub fn new(cfg: &SmtpConfig) -> Self {
        AuthLimiter {
            max_failures: cfg.auth_failures_per_ip,
            window: cfg.auth_window(),
            base_delay: Duration::from_millis(cfg.auth_failure_delay_ms),
            max_delay: Duration::from_millis(cfg.auth_failure_delay_max_ms),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` has used up its attempts.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.is_blocked_at(ip, Instant::now())
    }

    /// Records a failure from `ip`; returns how long to wait before answering it.
    pub fn record_failure(&self, ip: IpAddr) -> Duration {
        self.record_failure_at(ip, Instant::now())
    }

    fn is_blocked_at(&self, ip: IpAddr, now: Instant) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(&key(ip)).is_some_and(|&(n, since)| {
            now.duration_since(since) < self.window && n >= self.max_failures
        })
    }

    fn record_failure_at(&self, ip: IpAddr, now: Instant) -> Duration {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key = key(ip);
        if !entries.contains_key(&key) && entries.len() >= MAX_TRACKED {
            entries.retain(|_, &mut (_, since)| now.duration_since(since) < self.window);
        }
        let count = if entries.len() < MAX_TRACKED || entries.contains_key(&key) {
            let entry = entries.entry(key).or_insert((0, now));
            if now.duration_since(entry.1) >= self.window {
                *entry = (0, now);
            }
            entry.0 = entry.0.saturating_add(1);
            entry.0
        } else {
            1
        };
        let doublings = count.saturating_sub(1).min(16);
        self.base_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }
}

/// IPv4 as is (also when mapped into IPv6), IPv6 by /64: one client usually owns a /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> AuthLimiter {
        AuthLimiter::new(&SmtpConfig {
            auth_failures_per_ip: 3,
            auth_failure_window_secs: 60,
            auth_failure_delay_ms: 100,
            auth_failure_delay_max_ms: 300,
            ..Default::default()
        })
    }

    #[test]
    fn delays_grow_and_the_address_is_blocked_until_the_window_ends() {
        let l = limiter();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        let delays: Vec<_> = (0..4).map(|_| l.record_failure_at(ip, t0)).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(delays, vec![ms(100), ms(200), ms(300), ms(300)]);
        assert!(l.is_blocked_at(ip, t0));
        assert!(l.is_blocked_at("::ffff:192.0.2.1".parse().unwrap(), t0));
        assert!(!l.is_blocked_at(other, t0));
        let later = t0 + Duration::from_secs(61);
        assert!(!l.is_blocked_at(ip, later));
        assert_eq!(l.record_failure_at(ip, later), ms(100));
    }

    #[test]
    fn ipv6_counts_per_64() {
        let l = limiter();
        let t0 = Instant::now();
        for i in 1..=3 {
            l.record_failure_at(format!("2001:db8:0:1::{i}").parse().unwrap(), t0);
        }
        assert!(l.is_blocked_at("2001:db8:0:1::ffff".parse().unwrap(), t0));
        assert!(!l.is_blocked_at("2001:db8:0:2::1".parse().unwrap(), t0));
    }
}
