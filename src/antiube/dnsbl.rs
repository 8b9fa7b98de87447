//! DNS blocklists (DNSBL/RBL) of the client address: is the connecting address listed, and
//! how heavily?
//!
//! Job: [`Dnsbl::check`] asks every configured list in parallel (`d.c.b.a.zone` for IPv4, 32
//! reversed nibbles for IPv6; an IPv4-mapped IPv6 client is its IPv4 address) and returns a
//! [`DnsblOutcome`]: the summed weight of the lists that list the client, their answers, and the
//! lists that could not answer with their `on_error`. Outcomes are cached per address
//! (bounded by `cache_entries`, `cache_ttl_s`); an outcome with a failure is kept at most
//! [`ERROR_CACHE_TTL`] so a list that is down costs one lookup timeout per client and per
//! 30 seconds rather than one per connection, and a recovered list is used again quickly.
//!
//! Never: decide anything (the policy compares the score with `reject_score` and turns a
//! `tempfail` into `451`), or do I/O other than A lookups through [`SpfDns`].
//!
//! Security note: answers come from the lists' servers, or from whoever hijacked or took over a
//! zone, so an answer only counts when it is inside 127.0.0.0/8 and matches the list's `codes`.
//! A zone that answers every query with a public address (wildcarding, a parked domain) lists
//! no one: such answers are reported as a failure that is always skipped. So are 127.255.255.x
//! answers when `codes` is empty: Spamhaus-style lists use them to say "you may not query me
//! through this resolver", which must not list every client. Work per check is bounded: at
//! most one A lookup per list (32 lists at most, validated by the policy), each bounded by the
//! resolver's timeout; the cache's memory by `cache_entries`.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use thiserror::Error;

use super::policy::{parse_code_range, DnsblSettings, OnError};
use super::spf::{DnsError, SpfDns};

/// The longest time an outcome holding a failure stays cached (shorter when `cache_ttl_s` is).
pub const ERROR_CACHE_TTL: Duration = Duration::from_secs(30);

/// A list of the settings cannot be used. The policy's validation refuses such settings, so this
/// only happens with settings built in code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DnsblError {
    /// The zone is empty or not a domain name.
    #[error("dnsbl zone {0:?} is not a domain name: write the list's zone, e.g. zen.spamhaus.org")]
    BadZone(String),
    /// A `codes` entry does not parse.
    #[error("dnsbl list {zone}: {message}")]
    BadCode {
        /// The list's zone.
        zone: String,
        /// What is wrong with the code.
        message: String,
    },
}

/// A list that lists the client.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsblHit {
    /// The list's zone.
    pub zone: String,
    /// The answers that matched the list's codes (what the list says about the client).
    pub answers: Vec<Ipv4Addr>,
    /// The list's weight, added to [`DnsblOutcome::score`].
    pub weight: f64,
}

/// A list that gave no usable answer.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsblFailure {
    /// The list's zone.
    pub zone: String,
    /// What went wrong, for the log.
    pub error: String,
    /// What the policy does about it: the list's `on_error` for a lookup that failed
    /// (timeout, SERVFAIL, REFUSED), always [`OnError::Skip`] for answers the list must not
    /// give (outside 127.0.0.0/8, or 127.255.255.x error codes).
    pub on_error: OnError,
}

/// What the lists say about one client address.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DnsblOutcome {
    /// Sum of the weights of [`hits`](Self::hits) (negative weights are allowlists).
    pub score: f64,
    /// The lists that list the client, in configuration order.
    pub hits: Vec<DnsblHit>,
    /// The lists that could not answer, in configuration order.
    pub errors: Vec<DnsblFailure>,
    /// Some failing list says [`OnError::Tempfail`]: the client should get `451` rather than
    /// a verdict made without that list.
    pub tempfail: bool,
}

impl DnsblOutcome {
    /// Whether the client is to be refused at `reject_score`: at least one list lists it and
    /// the summed weight reaches the threshold. Without a hit this is false whatever the
    /// threshold, so a threshold of 0 does not refuse unlisted clients.
    pub fn listed(&self, reject_score: f64) -> bool {
        !self.hits.is_empty() && self.score >= reject_score
    }

    /// The zones that list the client, for the reply text and the log.
    pub fn zones(&self) -> impl Iterator<Item = &str> {
        self.hits.iter().map(|h| h.zone.as_str())
    }

    /// No list lists the client and every list answered.
    pub fn is_clean(&self) -> bool {
        self.hits.is_empty() && self.errors.is_empty()
    }
}

/// One configured list, parsed.
#[derive(Debug)]
struct List {
    /// Zone without a trailing dot.
    zone: String,
    /// Added to the score on a hit.
    weight: f64,
    /// Inclusive ranges of answers that count; empty: 127.0.0.0/8 except 127.255.255.0/24.
    codes: Vec<(u32, u32)>,
    /// What a failed lookup does.
    on_error: OnError,
}

/// The result of asking one list.
enum Answer {
    /// Not listed (NXDOMAIN, no data, or only answers that do not count).
    Clean,
    /// Listed with these matching answers.
    Hit(Vec<Ipv4Addr>),
    /// A failure, with what the policy does about it.
    Failed(String, OnError),
}

/// The cache of outcomes by client address, bounded in entries and time.
#[derive(Debug, Default)]
struct Cache {
    /// The outcome of each address and when it expires.
    map: HashMap<IpAddr, (Instant, Arc<DnsblOutcome>)>,
    /// Insertion order (address, expiry): the oldest is evicted first when full. A record whose
    /// expiry differs from the map's is stale (the address was stored again) and only counts
    /// against the bound until it is popped, so `map.len() <= order.len() <= capacity`.
    order: VecDeque<(IpAddr, Instant)>,
}

impl Cache {
    /// Drops the oldest record, and its map entry when that record is the entry's live one.
    fn pop_oldest(&mut self) {
        if let Some((ip, exp)) = self.order.pop_front() {
            if self.map.get(&ip).is_some_and(|(e, _)| *e == exp) {
                self.map.remove(&ip);
            }
        }
    }
}

/// The DNSBL stage: the lists of the policy and a cache of outcomes. Built once per policy
/// version and shared by the node's MX sessions.
#[derive(Debug)]
pub struct Dnsbl {
    /// The lists, in configuration order.
    lists: Vec<List>,
    /// How long a clean or listed outcome is cached.
    ttl: Duration,
    /// How long an outcome with a failure is cached (`min(ttl, ERROR_CACHE_TTL)`).
    error_ttl: Duration,
    /// Most cached addresses (0: no cache).
    capacity: usize,
    /// Outcomes by address.
    cache: Mutex<Cache>,
    /// The outcome with no list configured, shared.
    empty: Arc<DnsblOutcome>,
}

impl Dnsbl {
    /// The lists of `settings`, with an empty cache. Fails only on settings the policy's
    /// validation refuses (bad zone or code).
    pub fn new(settings: &DnsblSettings) -> Result<Self, DnsblError> {
        let mut lists = Vec::with_capacity(settings.lists.len());
        for l in &settings.lists {
            let zone = l.zone.trim_matches('.').to_ascii_lowercase();
            if zone.is_empty()
                || zone.len() > 200
                || !zone
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
            {
                return Err(DnsblError::BadZone(l.zone.clone()));
            }
            let mut codes = Vec::with_capacity(l.codes.len());
            for c in &l.codes {
                let (a, b) = parse_code_range(c).map_err(|message| DnsblError::BadCode {
                    zone: zone.clone(),
                    message,
                })?;
                codes.push((u32::from(a), u32::from(b)));
            }
            lists.push(List {
                zone,
                weight: l.weight,
                codes,
                on_error: l.on_error,
            });
        }
        let ttl = Duration::from_secs(settings.cache_ttl_s);
        Ok(Dnsbl {
            lists,
            ttl,
            error_ttl: ttl.min(ERROR_CACHE_TTL),
            capacity: if ttl.is_zero() {
                0
            } else {
                settings.cache_entries
            },
            cache: Mutex::default(),
            empty: Arc::default(),
        })
    }

    /// Whether no list is configured (then [`check`](Self::check) does nothing).
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// How many addresses are cached (for metrics and tests).
    pub fn cached(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }

    /// What the lists say about `ip`: from the cache when fresh, else by asking every list in
    /// parallel through `dns`. Takes as long as the slowest list, bounded by `dns`'s timeout.
    pub async fn check<D: SpfDns>(&self, dns: &D, ip: IpAddr) -> Arc<DnsblOutcome> {
        if self.lists.is_empty() {
            return self.empty.clone();
        }
        let ip = canonical(ip);
        if let Some(hit) = self.cached_outcome(ip, Instant::now()) {
            return hit;
        }
        let reversed = reversed_name(ip);
        let answers = join_all(self.lists.iter().map(|l| ask(dns, l, &reversed))).await;
        let mut out = DnsblOutcome::default();
        for (list, answer) in self.lists.iter().zip(answers) {
            match answer {
                Answer::Clean => {}
                Answer::Hit(answers) => {
                    out.score += list.weight;
                    out.hits.push(DnsblHit {
                        zone: list.zone.clone(),
                        answers,
                        weight: list.weight,
                    });
                }
                Answer::Failed(error, on_error) => {
                    out.tempfail |= on_error == OnError::Tempfail;
                    out.errors.push(DnsblFailure {
                        zone: list.zone.clone(),
                        error,
                        on_error,
                    });
                }
            }
        }
        let out = Arc::new(out);
        self.store(ip, out.clone(), Instant::now());
        out
    }

    /// The cached outcome of `ip` if it has not expired at `now`.
    fn cached_outcome(&self, ip: IpAddr, now: Instant) -> Option<Arc<DnsblOutcome>> {
        if self.capacity == 0 {
            return None;
        }
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.map.get(&ip) {
            Some((exp, o)) if *exp > now => Some(o.clone()),
            _ => None,
        }
    }

    /// Caches `out` for `ip`, evicting expired records and then the oldest while full.
    fn store(&self, ip: IpAddr, out: Arc<DnsblOutcome>, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        let ttl = if out.errors.is_empty() {
            self.ttl
        } else {
            self.error_ttl
        };
        let exp = now + ttl;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // Records expire roughly in insertion order (two TTLs only), so expired ones are
        // mostly at the front; one left behind a longer-lived record is evicted by age later.
        while cache.order.front().is_some_and(|(_, e)| *e <= now) {
            cache.pop_oldest();
        }
        while cache.order.len() >= self.capacity {
            cache.pop_oldest();
        }
        cache.order.push_back((ip, exp));
        cache.map.insert(ip, (exp, out));
    }
}

/// An IPv4-mapped IPv6 address as IPv4; others unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The address's labels in DNSBL order, without the zone: `4.3.2.1` for 1.2.3.4, 32 nibbles
/// (least significant first) for IPv6.
fn reversed_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(64);
            for byte in v6.octets().iter().rev() {
                let _ = write!(s, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
            s.pop();
            s
        }
    }
}

/// Asks one list about the address whose reversed labels are `reversed`.
async fn ask<D: SpfDns>(dns: &D, list: &List, reversed: &str) -> Answer {
    let name = format!("{reversed}.{}", list.zone);
    match dns.a(&name).await {
        Ok(addrs) => classify(list, &addrs),
        Err(DnsError::NxDomain) => Answer::Clean,
        Err(e @ (DnsError::Timeout | DnsError::Temporary(_))) => {
            Answer::Failed(e.to_string(), list.on_error)
        }
    }
}

/// Which of a list's A answers count. Answers outside 127.0.0.0/8, and 127.255.255.x when
/// the list has no explicit codes, never count and are reported as a skipped failure.
fn classify(list: &List, addrs: &[Ipv4Addr]) -> Answer {
    let mut matched = Vec::new();
    let mut bogus: Option<Ipv4Addr> = None;
    for &a in addrs {
        let n = u32::from(a);
        if a.octets()[0] != 127 {
            bogus.get_or_insert(a);
        } else if list.codes.is_empty() {
            if n >> 8 == u32::from(Ipv4Addr::new(127, 255, 255, 0)) >> 8 {
                bogus.get_or_insert(a);
            } else {
                matched.push(a);
            }
        } else if list.codes.iter().any(|&(lo, hi)| (lo..=hi).contains(&n)) {
            matched.push(a);
        }
    }
    match (matched.is_empty(), bogus) {
        (false, _) => Answer::Hit(matched),
        (true, Some(b)) if b.is_loopback() => Answer::Failed(
            format!(
                "the list answered {b}, an error code (e.g. queries through a public resolver \
                 are refused): use a resolver of your own for this list, or name codes"
            ),
            OnError::Skip,
        ),
        (true, Some(b)) => Answer::Failed(
            format!(
                "the list answered {b}, outside 127.0.0.0/8: the zone wildcards or was taken \
                 over; ignored, remove the list from the policy"
            ),
            OnError::Skip,
        ),
        (true, None) => Answer::Clean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::antiube::policy::DnsblList;
    use crate::antiube::spf::DnsResult;
    use std::net::Ipv6Addr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// In-memory DNS: A answers by name; absent names are NXDOMAIN. Counts lookups.
    #[derive(Default)]
    struct Zone {
        a: HashMap<String, DnsResult<Ipv4Addr>>,
        lookups: AtomicUsize,
    }

    impl Zone {
        fn with(mut self, name: &str, r: DnsResult<Ipv4Addr>) -> Self {
            self.a.insert(name.to_string(), r);
            self
        }
        fn lookups(&self) -> usize {
            self.lookups.load(Ordering::Relaxed)
        }
    }

    impl SpfDns for Zone {
        async fn txt(&self, _: &str) -> DnsResult<String> {
            Err(DnsError::NxDomain)
        }
        async fn a(&self, name: &str) -> DnsResult<Ipv4Addr> {
            self.lookups.fetch_add(1, Ordering::Relaxed);
            self.a.get(name).cloned().unwrap_or(Err(DnsError::NxDomain))
        }
        async fn aaaa(&self, _: &str) -> DnsResult<Ipv6Addr> {
            Err(DnsError::NxDomain)
        }
        async fn mx(&self, _: &str) -> DnsResult<String> {
            Err(DnsError::NxDomain)
        }
        async fn ptr(&self, _: IpAddr) -> DnsResult<String> {
            Err(DnsError::NxDomain)
        }
    }

    fn list(zone: &str, weight: f64, codes: &[&str], on_error: OnError) -> DnsblList {
        DnsblList {
            zone: zone.into(),
            weight,
            codes: codes.iter().map(|c| c.to_string()).collect(),
            on_error,
        }
    }

    fn settings(lists: Vec<DnsblList>) -> DnsblSettings {
        DnsblSettings {
            lists,
            ..DnsblSettings::default()
        }
    }

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn query_names() {
        assert_eq!(reversed_name(ip("192.0.2.99")), "99.2.0.192");
        assert_eq!(
            reversed_name(ip("2001:db8::1")),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
        );
        assert_eq!(canonical(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(canonical(ip("::1")), ip("::1"));
    }

    #[tokio::test]
    async fn hits_sum_weights_and_codes_filter() {
        let dns = Zone::default()
            .with(
                "2.0.0.127.zen.test",
                Ok(vec![a("127.0.0.2"), a("127.0.0.10")]),
            )
            .with("2.0.0.127.pbl.test", Ok(vec![a("127.0.0.10")]))
            .with("2.0.0.127.any.test", Ok(vec![a("127.0.0.4")]))
            .with("2.0.0.127.allow.test", Ok(vec![a("127.0.10.2")]))
            .with("2.0.0.127.nodata.test", Ok(vec![]));
        let d = Dnsbl::new(&settings(vec![
            list("zen.test", 2.0, &["127.0.0.2-127.0.0.9"], OnError::Skip),
            list("pbl.test", 1.0, &["127.0.0.2-127.0.0.9"], OnError::Skip),
            list("any.test.", 0.5, &[], OnError::Tempfail),
            list(
                "allow.test",
                -1.0,
                &["127.0.10.1-127.0.10.3"],
                OnError::Skip,
            ),
            list("nodata.test", 7.0, &[], OnError::Tempfail),
            list("absent.test", 7.0, &[], OnError::Tempfail),
        ]))
        .unwrap();
        let o = d.check(&dns, ip("127.0.0.2")).await;
        assert_eq!(
            o.zones().collect::<Vec<_>>(),
            ["zen.test", "any.test", "allow.test"]
        );
        assert_eq!(o.hits[0].answers, [a("127.0.0.2")]);
        assert_eq!(o.score, 1.5);
        assert!(o.errors.is_empty() && !o.tempfail);
        assert!(o.listed(1.5));
        assert!(!o.listed(1.6));
        // Unlisted: no hit even at a threshold of 0.
        let o = d.check(&dns, ip("127.0.0.3")).await;
        assert!(o.is_clean());
        assert!(!o.listed(0.0));
        assert_eq!(o.score, 0.0);
    }

    #[tokio::test]
    async fn answers_outside_loopback_never_count() {
        let dns = Zone::default()
            .with("1.2.0.192.wild.test", Ok(vec![a("8.8.8.8")]))
            .with("1.2.0.192.coded.test", Ok(vec![a("8.8.8.8")]))
            .with("1.2.0.192.spamhaus.test", Ok(vec![a("127.255.255.254")]))
            .with(
                "1.2.0.192.mixed.test",
                Ok(vec![a("10.0.0.1"), a("127.0.0.3")]),
            );
        let d = Dnsbl::new(&settings(vec![
            list("wild.test", 5.0, &[], OnError::Tempfail),
            list(
                "coded.test",
                5.0,
                &["0.0.0.0-255.255.255.255"],
                OnError::Tempfail,
            ),
            list("spamhaus.test", 5.0, &[], OnError::Tempfail),
            list("mixed.test", 1.0, &[], OnError::Skip),
        ]))
        .unwrap();
        let o = d.check(&dns, ip("192.0.2.1")).await;
        assert_eq!(o.zones().collect::<Vec<_>>(), ["mixed.test"]);
        assert_eq!(o.hits[0].answers, [a("127.0.0.3")]);
        assert_eq!(o.score, 1.0);
        let zones: Vec<_> = o.errors.iter().map(|e| e.zone.as_str()).collect();
        assert_eq!(zones, ["wild.test", "coded.test", "spamhaus.test"]);
        assert!(o.errors.iter().all(|e| e.on_error == OnError::Skip));
        assert!(o.errors[0].error.contains("outside 127.0.0.0/8"), "{o:?}");
        assert!(o.errors[2].error.contains("127.255.255.254"), "{o:?}");
        assert!(
            !o.tempfail,
            "a list's wrong answers must not tempfail everyone"
        );
        // Explicit codes may ask for 127.255.255.x.
        let dns = Zone::default().with("1.2.0.192.x.test", Ok(vec![a("127.255.255.2")]));
        let d = Dnsbl::new(&settings(vec![list(
            "x.test",
            1.0,
            &["127.255.255.2"],
            OnError::Skip,
        )]))
        .unwrap();
        assert!(d.check(&dns, ip("192.0.2.1")).await.listed(1.0));
    }

    #[tokio::test]
    async fn failures_carry_each_lists_on_error() {
        let dns = Zone::default()
            .with("1.2.0.192.slow.test", Err(DnsError::Timeout))
            .with(
                "1.2.0.192.broken.test",
                Err(DnsError::Temporary("SERVFAIL".into())),
            )
            .with("1.2.0.192.ok.test", Ok(vec![a("127.0.0.2")]));
        let d = Dnsbl::new(&settings(vec![
            list("slow.test", 1.0, &[], OnError::Skip),
            list("broken.test", 1.0, &[], OnError::Tempfail),
            list("ok.test", 1.0, &[], OnError::Skip),
        ]))
        .unwrap();
        let o = d.check(&dns, ip("192.0.2.1")).await;
        assert_eq!(o.hits.len(), 1);
        assert_eq!(
            o.errors,
            [
                DnsblFailure {
                    zone: "slow.test".into(),
                    error: "DNS lookup timed out".into(),
                    on_error: OnError::Skip
                },
                DnsblFailure {
                    zone: "broken.test".into(),
                    error: "DNS lookup failed: SERVFAIL".into(),
                    on_error: OnError::Tempfail
                },
            ]
        );
        assert!(o.tempfail);
        // Only skip-lists failing: no tempfail.
        let d = Dnsbl::new(&settings(vec![list("slow.test", 1.0, &[], OnError::Skip)])).unwrap();
        let o = d.check(&dns, ip("192.0.2.1")).await;
        assert!(!o.tempfail && o.errors.len() == 1 && !o.listed(1.0));
    }

    #[tokio::test]
    async fn ipv6_and_mapped_clients() {
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test";
        let dns = Zone::default()
            .with(v6, Ok(vec![a("127.0.0.2")]))
            .with("1.2.0.192.bl.test", Ok(vec![a("127.0.0.3")]));
        let d = Dnsbl::new(&settings(vec![list("bl.test", 1.0, &[], OnError::Skip)])).unwrap();
        assert!(d.check(&dns, ip("2001:db8::1")).await.listed(1.0));
        assert!(!d.check(&dns, ip("2001:db8::2")).await.listed(1.0));
        let o = d.check(&dns, ip("::ffff:192.0.2.1")).await;
        assert_eq!(o.hits[0].answers, [a("127.0.0.3")]);
        // The mapped form and the IPv4 form share one cache entry.
        let before = dns.lookups();
        d.check(&dns, ip("192.0.2.1")).await;
        assert_eq!(dns.lookups(), before);
    }

    #[tokio::test]
    async fn cache_hits_share_the_outcome_and_expire() {
        let dns = Zone::default().with("1.2.0.192.bl.test", Ok(vec![a("127.0.0.2")]));
        let d = Dnsbl::new(&settings(vec![list("bl.test", 1.0, &[], OnError::Skip)])).unwrap();
        let first = d.check(&dns, ip("192.0.2.1")).await;
        let second = d.check(&dns, ip("192.0.2.1")).await;
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(dns.lookups(), 1);
        let now = Instant::now();
        assert!(d
            .cached_outcome(ip("192.0.2.1"), now + Duration::from_secs(299))
            .is_some());
        assert!(d
            .cached_outcome(ip("192.0.2.1"), now + Duration::from_secs(301))
            .is_none());
        // No lists: nothing asked, nothing cached.
        let none = Dnsbl::new(&DnsblSettings::default()).unwrap();
        assert!(none.is_empty());
        assert!(none.check(&dns, ip("192.0.2.1")).await.is_clean());
        assert_eq!((dns.lookups(), none.cached()), (1, 0));
    }

    #[tokio::test]
    async fn failures_are_cached_briefly() {
        let dns = Zone::default().with("1.2.0.192.bl.test", Err(DnsError::Timeout));
        let d = Dnsbl::new(&settings(vec![list(
            "bl.test",
            1.0,
            &[],
            OnError::Tempfail,
        )]))
        .unwrap();
        let o = d.check(&dns, ip("192.0.2.1")).await;
        assert!(o.tempfail);
        d.check(&dns, ip("192.0.2.1")).await;
        assert_eq!(dns.lookups(), 1);
        let now = Instant::now();
        assert!(d
            .cached_outcome(ip("192.0.2.1"), now + Duration::from_secs(29))
            .is_some());
        assert!(d
            .cached_outcome(ip("192.0.2.1"), now + Duration::from_secs(31))
            .is_none());
    }

    #[tokio::test]
    async fn cache_is_bounded() {
        let dns = Zone::default();
        let mut s = settings(vec![list("bl.test", 1.0, &[], OnError::Skip)]);
        s.cache_entries = 3;
        let d = Dnsbl::new(&s).unwrap();
        for i in 1..=5u8 {
            d.check(&dns, IpAddr::V4(Ipv4Addr::new(192, 0, 2, i))).await;
        }
        assert_eq!(d.cached(), 3);
        assert_eq!(d.cache.lock().unwrap().order.len(), 3);
        // The oldest went first: .1 is asked again, .5 is not.
        let before = dns.lookups();
        d.check(&dns, ip("192.0.2.5")).await;
        assert_eq!(dns.lookups(), before);
        d.check(&dns, ip("192.0.2.1")).await;
        assert_eq!(dns.lookups(), before + 1);
        // Storing an address again leaves a stale record that is evicted without harm.
        let now = Instant::now();
        d.store(ip("192.0.2.9"), Arc::default(), now);
        d.store(
            ip("192.0.2.9"),
            Arc::default(),
            now + Duration::from_secs(1),
        );
        {
            let c = d.cache.lock().unwrap();
            assert!(c.map.len() <= c.order.len() && c.order.len() <= 3);
            assert!(c.map.contains_key(&ip("192.0.2.9")));
        }
        // Expired records are dropped before evicting live ones.
        d.store(
            ip("192.0.2.10"),
            Arc::default(),
            now + Duration::from_secs(1000),
        );
        assert_eq!(d.cached(), 1);
        // cache_ttl_s = 0 disables the cache.
        s.cache_ttl_s = 0;
        let d = Dnsbl::new(&s).unwrap();
        d.check(&dns, ip("192.0.2.1")).await;
        assert_eq!(d.cached(), 0);
    }

    #[test]
    fn bad_settings_are_errors() {
        let e = Dnsbl::new(&settings(vec![list("..", 1.0, &[], OnError::Skip)])).unwrap_err();
        assert!(matches!(e, DnsblError::BadZone(_)));
        let e = Dnsbl::new(&settings(vec![list("a b", 1.0, &[], OnError::Skip)])).unwrap_err();
        assert!(matches!(e, DnsblError::BadZone(_)));
        let e = Dnsbl::new(&settings(vec![list(
            "bl.test",
            1.0,
            &["127.0.0.9-127.0.0.2"],
            OnError::Skip,
        )]))
        .unwrap_err();
        assert!(e.to_string().contains("bl.test"), "{e}");
    }
}
