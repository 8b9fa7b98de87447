//! Login brute-force defence shared by every session of the POP3 listeners: failures are
//! counted per client address (IPv4, or IPv6 /64) and per user name in a fixed window; each
//! failure earns a growing delay before its `-ERR`, an address over its limit is disconnected,
//! and a user name over its limit may not log in until its window ends.
//!
//! It only counts and computes delays; it never sleeps, replies or closes anything. (The SMTP
//! `AuthLimiter` counts per address only and is configured from the SMTP section, hence this
//! one.)
//!
//! Security note: both tables are bounded ([`MAX_TRACKED`]); when one is full of live entries
//! a new key is not tracked (it still meets the per-session limit and the delay). A success
//! does not reset a count: one valid account must not buy unlimited guesses at others. The
//! per-user limit lets an attacker lock a user out of POP3 for one window at most, which is
//! the price of stopping a botnet guessing one password from many addresses.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Pop3Config;

/// Most keys tracked at once per table.
pub const MAX_TRACKED: usize = 100_000;

/// Longest user name kept as a key; longer names are cut (they cannot exist anyway).
const MAX_USER_KEY: usize = 320;

/// Failures per key in a fixed window.
#[derive(Debug)]
struct Counter<K> {
    max: u32,
    window: Duration,
    entries: Mutex<HashMap<K, (u32, Instant)>>,
}

impl<K: Hash + Eq> Counter<K> {
    fn new(max: u32, window: Duration) -> Self {
        Counter {
            max,
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn is_blocked(&self, key: &K, now: Instant) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .is_some_and(|&(n, since)| now.duration_since(since) < self.window && n >= self.max)
    }

    /// Counts one failure; returns the failures in the window so far.
    fn record(&self, key: K, now: Instant) -> u32 {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if !entries.contains_key(&key) && entries.len() >= MAX_TRACKED {
            entries.retain(|_, &mut (_, since)| now.duration_since(since) < self.window);
            if entries.len() >= MAX_TRACKED {
                return 1;
            }
        }
        let entry = entries.entry(key).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
        entry.0
    }
}

/// Counts failed POP3 logins per address and per user name. One per node, shared by the POP3
/// and POP3S listeners.
#[derive(Debug)]
pub struct LoginLimiter {
    per_ip: Counter<IpAddr>,
    per_user: Counter<String>,
    base_delay: Duration,
    max_delay: Duration,
}

impl LoginLimiter {
    pub fn new(cfg: &Pop3Config) -> Self {
        LoginLimiter {
            per_ip: Counter::new(cfg.auth_failures_per_ip, cfg.auth_window()),
            per_user: Counter::new(cfg.auth_failures_per_user, cfg.auth_window()),
            base_delay: Duration::from_millis(cfg.auth_failure_delay_ms),
            max_delay: Duration::from_millis(cfg.auth_failure_delay_max_ms),
        }
    }

    /// Whether `ip` has used up its attempts.
    pub fn ip_blocked(&self, ip: IpAddr) -> bool {
        self.per_ip.is_blocked(&ip_key(ip), Instant::now())
    }

    /// Whether logins for `user` are refused for now.
    pub fn user_blocked(&self, user: &str) -> bool {
        self.per_user.is_blocked(&user_key(user), Instant::now())
    }

    /// Records a failed login; returns how long to wait before answering it.
    pub fn record_failure(&self, ip: IpAddr, user: &str) -> Duration {
        self.record_failure_at(ip, user, Instant::now())
    }

    fn record_failure_at(&self, ip: IpAddr, user: &str, now: Instant) -> Duration {
        let by_ip = self.per_ip.record(ip_key(ip), now);
        let by_user = self.per_user.record(user_key(user), now);
        let doublings = by_ip.max(by_user).saturating_sub(1).min(16);
        self.base_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }
}

/// IPv4 as is (also when mapped into IPv6), IPv6 by /64: one client usually owns a /64.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
    }
}

/// User names compare case-insensitively, as the directory does.
fn user_key(user: &str) -> String {
    let mut end = user.len().min(MAX_USER_KEY);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    user[..end].to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> LoginLimiter {
        LoginLimiter::new(&Pop3Config {
            auth_failures_per_ip: 3,
            auth_failures_per_user: 4,
            auth_failure_window_secs: 60,
            auth_failure_delay_ms: 100,
            auth_failure_delay_max_ms: 300,
            ..Default::default()
        })
    }

    #[test]
    fn delays_grow_and_addresses_are_blocked_until_the_window_ends() {
        let l = limiter();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let delays: Vec<_> = ["a", "b", "c", "d"]
            .iter()
            .map(|u| l.record_failure_at(ip, u, t0))
            .collect();
        assert_eq!(delays, vec![ms(100), ms(200), ms(300), ms(300)]);
        assert!(l.per_ip.is_blocked(&ip_key(ip), t0));
        assert!(l
            .per_ip
            .is_blocked(&ip_key("::ffff:192.0.2.1".parse().unwrap()), t0));
        assert!(!l
            .per_ip
            .is_blocked(&ip_key("192.0.2.2".parse().unwrap()), t0));
        assert!(!l.per_user.is_blocked(&user_key("a"), t0));
        let later = t0 + Duration::from_secs(61);
        assert!(!l.per_ip.is_blocked(&ip_key(ip), later));
        assert_eq!(l.record_failure_at(ip, "e", later), ms(100));
    }

    #[test]
    fn a_user_guessed_from_many_addresses_is_blocked() {
        let l = limiter();
        let t0 = Instant::now();
        for i in 1..=4u8 {
            let ip = IpAddr::from([198, 51, 100, i]);
            l.record_failure_at(ip, if i % 2 == 0 { "Bob@X.org" } else { "bob@x.org" }, t0);
        }
        assert!(l.per_user.is_blocked(&user_key("BOB@x.org"), t0));
        assert!(!l.per_user.is_blocked(&user_key("alice@x.org"), t0));
        // Each address failed once, but the user's count sets the delay.
        assert_eq!(
            l.record_failure_at(IpAddr::from([198, 51, 100, 9]), "bob@x.org", t0),
            Duration::from_millis(300)
        );
    }

    #[test]
    fn ipv6_counts_per_64_and_long_names_are_cut_safely() {
        let l = limiter();
        let t0 = Instant::now();
        for i in 1..=3 {
            l.record_failure_at(format!("2001:db8:0:1::{i}").parse().unwrap(), "x", t0);
        }
        assert!(l
            .per_ip
            .is_blocked(&ip_key("2001:db8:0:1::ffff".parse().unwrap()), t0));
        assert!(!l
            .per_ip
            .is_blocked(&ip_key("2001:db8:0:2::1".parse().unwrap()), t0));
        let long = "é".repeat(400);
        assert!(user_key(&long).len() <= MAX_USER_KEY);
    }
}
