//! Forward-confirmed reverse DNS (FCrDNS) of the client: does a PTR name of the address map
//! back to it?
//!
//! Job: [`fcrdns`] looks up the address's PTR names, then the A (IPv4) or AAAA (IPv6) records
//! of the first [`MAX_PTR_NAMES`] of them, in parallel, and answers [`Fcrdns::Confirmed`] with
//! the first name (in answer order) that maps back to the address. The policy scores or
//! refuses on it (`connection.fcrdns_score`, `require_fcrdns`: `450 4.7.25` on
//! [`Fcrdns::TempError`], `550 5.7.25` on [`Fcrdns::Unconfirmed`], as Postfix's
//! `reject_unknown_client_hostname`).
//!
//! Never: trust a PTR name that is not confirmed, or decide anything.
//!
//! Security note: PTR answers are chosen by whoever controls the client's reverse zone. At most
//! [`MAX_PTR_NAMES`] names are followed (RFC 7208's bound for `ptr`), each lookup bounded by the
//! resolver's timeout; names that are not syntactically host names, or that spell an IP
//! address (a PTR of `1.2.3.4` is a classic way to look like someone else), are ignored. The
//! confirmed name is returned lowercased, without a trailing dot, and safe to put in a
//! `Received:` header or a log line.

use std::net::IpAddr;

use futures_util::future::join_all;

use super::spf::{DnsError, SpfDns};

/// Most PTR names followed.
pub const MAX_PTR_NAMES: usize = 10;

/// The outcome of the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fcrdns {
    /// This PTR name (lowercase, no trailing dot) has an address record equal to the client's.
    Confirmed(String),
    /// No PTR, or no PTR name maps back to the client.
    Unconfirmed,
    /// A lookup failed (timeout, SERVFAIL) before any name could be confirmed: ask again later.
    TempError,
}

impl Fcrdns {
    /// The confirmed name, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Fcrdns::Confirmed(n) => Some(n),
            _ => None,
        }
    }
}

/// Checks the forward-confirmed reverse DNS of `ip` (an IPv4-mapped IPv6 address is checked as
/// IPv4). Takes at most two lookup timeouts of `dns` (PTR, then the names in parallel).
pub async fn fcrdns<D: SpfDns>(dns: &D, ip: IpAddr) -> Fcrdns {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let names = match dns.ptr(ip).await {
        Ok(names) => names,
        Err(DnsError::NxDomain) => return Fcrdns::Unconfirmed,
        Err(DnsError::Timeout | DnsError::Temporary(_)) => return Fcrdns::TempError,
    };
    let names: Vec<String> = names
        .into_iter()
        .take(MAX_PTR_NAMES)
        .filter_map(|n| host_name(&n))
        .collect();
    let forward = join_all(names.iter().map(|n| maps_to(dns, n, ip))).await;
    let mut temp = false;
    for (name, answer) in names.into_iter().zip(forward) {
        match answer {
            Ok(true) => return Fcrdns::Confirmed(name),
            Ok(false) => {}
            Err(()) => temp = true,
        }
    }
    if temp {
        Fcrdns::TempError
    } else {
        Fcrdns::Unconfirmed
    }
}

/// Whether `name` has an address record equal to `ip`; `Err` on a temporary failure.
async fn maps_to<D: SpfDns>(dns: &D, name: &str, ip: IpAddr) -> Result<bool, ()> {
    let r = match ip {
        IpAddr::V4(v4) => dns.a(name).await.map(|v| v.contains(&v4)),
        IpAddr::V6(v6) => dns.aaaa(name).await.map(|v| v.contains(&v6)),
    };
    match r {
        Ok(found) => Ok(found),
        Err(DnsError::NxDomain) => Ok(false),
        Err(DnsError::Timeout | DnsError::Temporary(_)) => Err(()),
    }
}

/// `name` lowercased without its trailing dot if it is a host name: labels of 1-63 letters,
/// digits, `-` and `_` (not starting or ending with `-`), at most 253 octets, at least two
/// labels, and not an IPv4 address in disguise (all-numeric last label).
fn host_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let mut labels = 0;
    for label in name.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return None;
        }
        labels += 1;
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    if labels < 2 || last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::antiube::spf::DnsResult;
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::Mutex;

    /// In-memory DNS: PTR, A and AAAA by name; absent names are NXDOMAIN. Records which names
    /// were asked.
    #[derive(Default)]
    struct Zone {
        ptr: HashMap<IpAddr, DnsResult<String>>,
        a: HashMap<String, DnsResult<Ipv4Addr>>,
        aaaa: HashMap<String, DnsResult<Ipv6Addr>>,
        asked: Mutex<Vec<String>>,
    }

    impl Zone {
        fn ptr(mut self, ip: &str, r: DnsResult<&str>) -> Self {
            let r = r.map(|v| v.into_iter().map(String::from).collect());
            self.ptr.insert(ip.parse().unwrap(), r);
            self
        }
        fn a(mut self, name: &str, r: DnsResult<&str>) -> Self {
            let r = r.map(|v| v.into_iter().map(|s| s.parse().unwrap()).collect());
            self.a.insert(name.into(), r);
            self
        }
        fn aaaa(mut self, name: &str, r: DnsResult<&str>) -> Self {
            let r = r.map(|v| v.into_iter().map(|s| s.parse().unwrap()).collect());
            self.aaaa.insert(name.into(), r);
            self
        }
    }

    impl SpfDns for Zone {
        async fn txt(&self, _: &str) -> DnsResult<String> {
            Err(DnsError::NxDomain)
        }
        async fn a(&self, name: &str) -> DnsResult<Ipv4Addr> {
            self.asked.lock().unwrap().push(name.into());
            self.a.get(name).cloned().unwrap_or(Err(DnsError::NxDomain))
        }
        async fn aaaa(&self, name: &str) -> DnsResult<Ipv6Addr> {
            self.asked.lock().unwrap().push(name.into());
            self.aaaa
                .get(name)
                .cloned()
                .unwrap_or(Err(DnsError::NxDomain))
        }
        async fn mx(&self, _: &str) -> DnsResult<String> {
            Err(DnsError::NxDomain)
        }
        async fn ptr(&self, ip: IpAddr) -> DnsResult<String> {
            self.ptr
                .get(&ip)
                .cloned()
                .unwrap_or(Err(DnsError::NxDomain))
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn confirmed(n: &str) -> Fcrdns {
        Fcrdns::Confirmed(n.into())
    }

    #[tokio::test]
    async fn confirmed_and_unconfirmed() {
        let z = Zone::default()
            .ptr("192.0.2.1", Ok(vec!["Mail.Example.TEST."]))
            .a("Mail.Example.TEST", Ok(vec!["192.0.2.9"]))
            .a("mail.example.test", Ok(vec!["192.0.2.9", "192.0.2.1"]))
            .ptr("192.0.2.2", Ok(vec!["liar.test"]))
            .a("liar.test", Ok(vec!["192.0.2.3"]))
            .ptr("192.0.2.4", Ok(vec![]))
            .ptr("192.0.2.5", Ok(vec!["gone.test"]));
        // Names are checked as lowercased, and returned so.
        assert_eq!(
            fcrdns(&z, ip("192.0.2.1")).await,
            confirmed("mail.example.test")
        );
        assert_eq!(
            fcrdns(&z, ip("::ffff:192.0.2.1")).await.name(),
            Some("mail.example.test")
        );
        assert_eq!(fcrdns(&z, ip("192.0.2.2")).await, Fcrdns::Unconfirmed);
        assert_eq!(fcrdns(&z, ip("192.0.2.3")).await, Fcrdns::Unconfirmed);
        assert_eq!(fcrdns(&z, ip("192.0.2.4")).await, Fcrdns::Unconfirmed);
        assert_eq!(fcrdns(&z, ip("192.0.2.5")).await, Fcrdns::Unconfirmed);
    }

    #[tokio::test]
    async fn ipv6_uses_aaaa() {
        let z = Zone::default()
            .ptr("2001:db8::25", Ok(vec!["mx.test"]))
            .aaaa("mx.test", Ok(vec!["2001:db8::25"]))
            .a("mx.test", Ok(vec!["192.0.2.1"]));
        assert_eq!(fcrdns(&z, ip("2001:db8::25")).await, confirmed("mx.test"));
        assert_eq!(*z.asked.lock().unwrap(), ["mx.test"]);
    }

    #[tokio::test]
    async fn first_confirming_name_in_answer_order() {
        let z = Zone::default()
            .ptr("192.0.2.1", Ok(vec!["a.test", "b.test", "c.test"]))
            .a("a.test", Ok(vec!["192.0.2.7"]))
            .a("b.test", Ok(vec!["192.0.2.1"]))
            .a("c.test", Ok(vec!["192.0.2.1"]));
        assert_eq!(fcrdns(&z, ip("192.0.2.1")).await, confirmed("b.test"));
    }

    #[tokio::test]
    async fn temporary_failures() {
        let z = Zone::default()
            .ptr("192.0.2.1", Err(DnsError::Timeout))
            .ptr("192.0.2.2", Err(DnsError::Temporary("SERVFAIL".into())))
            .ptr("192.0.2.3", Ok(vec!["slow.test", "other.test"]))
            .a("slow.test", Err(DnsError::Timeout))
            .a("other.test", Ok(vec!["192.0.2.9"]))
            .ptr("192.0.2.4", Ok(vec!["slow.test", "good.test"]))
            .a("good.test", Ok(vec!["192.0.2.4"]));
        assert_eq!(fcrdns(&z, ip("192.0.2.1")).await, Fcrdns::TempError);
        assert_eq!(fcrdns(&z, ip("192.0.2.2")).await, Fcrdns::TempError);
        // A failed name and no confirmation: we cannot know.
        assert_eq!(fcrdns(&z, ip("192.0.2.3")).await, Fcrdns::TempError);
        // A confirmation wins over another name's failure.
        assert_eq!(fcrdns(&z, ip("192.0.2.4")).await, confirmed("good.test"));
    }

    #[tokio::test]
    async fn at_most_ten_names_and_no_bogus_names() {
        let names: Vec<String> = (0..20).map(|i| format!("n{i}.test")).collect();
        let mut z = Zone::default();
        z.ptr.insert(ip("192.0.2.1"), Ok(names.clone()));
        for n in &names {
            z = z.a(n, Ok(vec!["192.0.2.99"]));
        }
        z = z.a("n15.test", Ok(vec!["192.0.2.1"]));
        assert_eq!(fcrdns(&z, ip("192.0.2.1")).await, Fcrdns::Unconfirmed);
        assert_eq!(z.asked.lock().unwrap().len(), MAX_PTR_NAMES);

        // A PTR spelling an address, or not a host name, is never followed.
        let z = Zone::default()
            .ptr(
                "192.0.2.1",
                Ok(vec!["192.0.2.1", "bad name.test", "-x.test", "single"]),
            )
            .a("192.0.2.1", Ok(vec!["192.0.2.1"]))
            .a("bad name.test", Ok(vec!["192.0.2.1"]))
            .a("-x.test", Ok(vec!["192.0.2.1"]))
            .a("single", Ok(vec!["192.0.2.1"]));
        assert_eq!(fcrdns(&z, ip("192.0.2.1")).await, Fcrdns::Unconfirmed);
        assert!(z.asked.lock().unwrap().is_empty());
    }

    #[test]
    fn host_names() {
        assert_eq!(
            host_name("MX1.Example.ORG.").as_deref(),
            Some("mx1.example.org")
        );
        assert_eq!(
            host_name("a_b.example.org").as_deref(),
            Some("a_b.example.org")
        );
        assert_eq!(
            host_name("1.2.3.4.in-addr.example").as_deref(),
            Some("1.2.3.4.in-addr.example")
        );
        for bad in [
            "",
            ".",
            "a..b",
            "x.123",
            "1.2.3.4",
            "a.b-",
            "é.test",
            "localhost",
        ] {
            assert_eq!(host_name(bad), None, "{bad}");
        }
        assert_eq!(host_name(&format!("{}.test", "a".repeat(64))), None);
        assert_eq!(host_name(&format!("{}.test", "a.".repeat(126))), None);
    }
}
