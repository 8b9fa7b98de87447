//! Tests of `eval`: the limits of RFC 7208 section 4.6.4 over an in-memory zone, and seeded
//! random records.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::super::{check_mail_from, SpfOptions};
use super::*;

/// A zone in memory: (type, name) → answers; missing names are NXDOMAIN.
#[derive(Default)]
struct Mem {
    rrs: HashMap<(&'static str, String), Vec<String>>,
    queries: AtomicUsize,
}

impl Mem {
    fn add(&mut self, t: &'static str, name: &str, v: &str) -> &mut Self {
        self.rrs
            .entry((t, name.to_string()))
            .or_default()
            .push(v.to_string());
        self
    }
    fn get<T: std::str::FromStr>(&self, t: &'static str, name: &str) -> DnsResult<T> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        match self.rrs.get(&(t, name.to_ascii_lowercase())) {
            Some(v) => Ok(v.iter().filter_map(|s| s.parse().ok()).collect()),
            None if self.rrs.keys().any(|(_, n)| n == name) => Ok(Vec::new()),
            None => Err(DnsError::NxDomain),
        }
    }
}

impl SpfDns for Mem {
    async fn txt(&self, name: &str) -> DnsResult<String> {
        self.get("TXT", name)
    }
    async fn a(&self, name: &str) -> DnsResult<Ipv4Addr> {
        self.get("A", name)
    }
    async fn aaaa(&self, name: &str) -> DnsResult<Ipv6Addr> {
        self.get("AAAA", name)
    }
    async fn mx(&self, name: &str) -> DnsResult<String> {
        self.get("MX", name)
    }
    async fn ptr(&self, ip: IpAddr) -> DnsResult<String> {
        self.get("PTR", &ip.to_string())
    }
}

async fn result(dns: &Mem, ip: &str, sender: &str) -> SpfResult {
    let o = SpfOptions::default();
    check_mail_from(dns, &o, ip.parse().unwrap(), "helo.t", sender)
        .await
        .result
}

fn includes(n: usize) -> String {
    let mut r = "v=spf1".to_string();
    for i in 0..n {
        r.push_str(&format!(" include:i{i}.t"));
    }
    r + " -all"
}

#[tokio::test]
async fn ten_dns_terms_are_allowed_not_eleven() {
    let mut dns = Mem::default();
    dns.add("TXT", "ten.t", &includes(10))
        .add("TXT", "eleven.t", &includes(11));
    for i in 0..11 {
        dns.add("TXT", &format!("i{i}.t"), "v=spf1 ?all");
    }
    assert_eq!(result(&dns, "192.0.2.1", "a@ten.t").await, SpfResult::Fail);
    assert_eq!(
        result(&dns, "192.0.2.1", "a@eleven.t").await,
        SpfResult::PermError
    );
    // Loops end at the limit too.
    dns.add("TXT", "loop1.t", "v=spf1 redirect=loop2.t")
        .add("TXT", "loop2.t", "v=spf1 redirect=loop1.t")
        .add("TXT", "self.t", "v=spf1 include:self.t -all");
    assert_eq!(
        result(&dns, "192.0.2.1", "a@loop1.t").await,
        SpfResult::PermError
    );
    assert_eq!(
        result(&dns, "192.0.2.1", "a@self.t").await,
        SpfResult::PermError
    );
}

#[tokio::test]
async fn void_lookups_mx_and_ptr_limits() {
    let mut dns = Mem::default();
    dns.add("TXT", "two.t", "v=spf1 a:n1.t exists:n2.t -all")
        .add("TXT", "three.t", "v=spf1 a:n1.t exists:n2.t mx:n3.t -all")
        .add("TXT", "mx10.t", "v=spf1 mx -all")
        .add("TXT", "mx11.t", "v=spf1 mx -all")
        .add("TXT", "ptr.t", "v=spf1 ptr -all");
    for i in 0..11 {
        let host = format!("h{i}.ptr.t");
        if i < 10 {
            dns.add("MX", "mx10.t", &host);
        }
        dns.add("MX", "mx11.t", &host);
        dns.add("PTR", "192.0.2.9", &host);
    }
    // Only the 11th MX host and the 11th PTR name have the client's address.
    dns.add("A", "h10.ptr.t", "192.0.2.9");
    assert_eq!(result(&dns, "192.0.2.1", "a@two.t").await, SpfResult::Fail);
    assert_eq!(
        result(&dns, "192.0.2.1", "a@three.t").await,
        SpfResult::PermError
    );
    assert_eq!(result(&dns, "192.0.2.9", "a@mx10.t").await, SpfResult::Fail);
    assert_eq!(
        result(&dns, "192.0.2.9", "a@mx11.t").await,
        SpfResult::PermError
    );
    assert_eq!(result(&dns, "192.0.2.9", "a@ptr.t").await, SpfResult::Fail);
    dns.add("A", "h3.ptr.t", "192.0.2.9");
    assert_eq!(result(&dns, "192.0.2.9", "a@ptr.t").await, SpfResult::Pass);
    assert_eq!(result(&dns, "192.0.2.9", "a@mx10.t").await, SpfResult::Pass);
}

/// Seeded random records that refer to each other: evaluation never panics and its DNS
/// work stays bounded whatever the records say.
#[tokio::test]
async fn random_records_evaluate_within_bounds() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(4_6_4);
    let terms = [
        "a",
        "a:r0.t",
        "a/24",
        "mx",
        "mx:r1.t//64",
        "ptr",
        "ptr:r2.t",
        "exists:%{ir}.r3.t",
        "include:r0.t",
        "include:r1.t",
        "include:%{d1}.t",
        "redirect=r2.t",
        "redirect=r3.t",
        "exp=r0.t",
        "ip4:192.0.2.0/24",
        "ip6:2001:db8::/32",
        "-all",
        "~all",
        "?all",
        "%{p}.t",
        "exists:%{p}.%{l}.t",
        "x=%{s}",
        "include:nx.t",
        "a:%{h}",
    ];
    for round in 0..300 {
        let mut dns = Mem::default();
        for r in 0..4 {
            let mut rec = "v=spf1".to_string();
            for _ in 0..rng.gen_range(0..14) {
                rec.push(' ');
                rec.push_str(terms[rng.gen_range(0..terms.len())]);
            }
            dns.add("TXT", &format!("r{r}.t"), &rec);
            dns.add("A", &format!("r{r}.t"), "192.0.2.7");
            dns.add("MX", &format!("r{r}.t"), &format!("r{}.t", (r + 1) % 4));
        }
        dns.add("PTR", "192.0.2.7", "r0.t");
        let ip = if round % 2 == 0 {
            "192.0.2.7"
        } else {
            "2001:db8::7"
        };
        let _ = result(&dns, ip, "someone@r0.t").await;
        let queries = dns.queries.load(Ordering::Relaxed);
        assert!(queries < 400, "round {round}: {queries} queries");
    }
}

#[test]
fn networks_and_names() {
    let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    assert!(in_net4(a("192.0.2.77"), a("192.0.2.0"), 24));
    assert!(!in_net4(a("192.0.3.77"), a("192.0.2.0"), 24));
    assert!(in_net4(a("10.0.0.1"), a("192.0.2.0"), 0));
    assert!(in_net4(a("192.0.2.1"), a("192.0.2.1"), 32));
    let b = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    assert!(in_net6(b("2001:db8::1"), b("2001:db8::"), 32));
    assert!(!in_net6(b("2001:db9::1"), b("2001:db8::"), 32));
    assert!(in_net6(b("::1"), b("2001:db8::"), 0));
    assert!(is_same_or_sub("mail.Example.com", "example.com."));
    assert!(is_same_or_sub("example.com", "example.com"));
    assert!(!is_same_or_sub("badexample.com", "example.com"));
    assert!(valid_domain("a.b"));
    assert!(!valid_domain("nodot"));
    assert!(!valid_domain("a..b"));
    assert!(!valid_domain("[1.2.3.4]"));
    assert!(!valid_domain(&format!("{}.com", "x".repeat(64))));
}
