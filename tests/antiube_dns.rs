//! The anti-UBE connection stage's DNS checks (`mailnode::antiube::dnsbl`, `::rdns`) against a
//! real DNS server: `dnsmasq` (Debian's dnsmasq-base) on 127.0.88.x:5353, asked through
//! `HickoryDns`.
//!
//! - `dnsbl_lists_over_real_dns`: two DNSBL zones with codes and weights, an IPv6 listing, a
//!   zone wildcarding a public address (must list no one), a zone dnsmasq refuses (REFUSED).
//! - `dnsbl_failing_lists_follow_on_error`: lists whose zones dnsmasq forwards to a server on
//!   127.0.88.2 that never answers (timeout within the lookup timeout, lists asked in
//!   parallel) or answers SERVFAIL, with `on_error = tempfail` and `skip`.
//! - `fcrdns_over_real_dns` (clients in 192.0.2.0/24, only named in DNS): PTR + A confirmed, PTR with a mismatching A, no PTR, IPv6, a
//!   reverse zone and a forward zone that time out.
//!
//! Each test runs its own dnsmasq on its own address (nextest runs tests in parallel).

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::dns::{dnsmasq, have_dnsmasq};
use mailnode::antiube::dnsbl::Dnsbl;
use mailnode::antiube::policy::{DnsblList, DnsblSettings, OnError};
use mailnode::antiube::rdns::{fcrdns, Fcrdns};
use mailnode::antiube::spf::HickoryDns;

/// A UDP DNS server on 127.0.88.2 (ephemeral port) that either never answers or answers every
/// query SERVFAIL. Stopped and joined on drop.
struct Upstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start(servfail: bool) -> Upstream {
        let sock = UdpSocket::bind("127.0.88.2:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if !servfail || n < 12 {
                    continue;
                }
                // The query echoed back as a response: QR and RA set, RCODE 2 (SERVFAIL).
                let mut r = buf[..n].to_vec();
                r[2] |= 0x80;
                r[3] = (r[3] & 0x70) | 0x80 | 0x02;
                let _ = sock.send_to(&r, from);
            }
        });
        Upstream {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// dnsmasq's `--server` value forwarding `domain` here.
    fn server_for(&self, domain: &str) -> String {
        format!("--server=/{domain}/{}#{}", self.addr.ip(), self.addr.port())
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn resolver(ip: &str, timeout: Duration) -> HickoryDns {
    let server: SocketAddr = format!("{ip}:5353").parse().unwrap();
    HickoryDns::with_servers(&[server], timeout).unwrap()
}

fn list(zone: &str, weight: f64, codes: &[&str], on_error: OnError) -> DnsblList {
    DnsblList {
        zone: zone.into(),
        weight,
        codes: codes.iter().map(|c| c.to_string()).collect(),
        on_error,
    }
}

fn dnsbl(lists: Vec<DnsblList>) -> Dnsbl {
    Dnsbl::new(&DnsblSettings {
        lists,
        ..DnsblSettings::default()
    })
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn dnsbl_lists_over_real_dns() {
    if !have_dnsmasq() {
        return;
    }
    let v6 = "5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test";
    let _dns = dnsmasq(
        "127.0.88.1",
        &args(&[
            "--host-record=2.0.0.127.bl.test,127.0.0.2",
            "--host-record=10.88.0.127.bl.test,127.0.0.10",
            "--host-record=10.88.0.127.bl2.test,127.0.0.3",
            "--host-record=11.88.0.127.bl2.test,127.0.0.20",
            &format!("--host-record={v6},127.0.0.4"),
            // A zone answering every name with a public address.
            "--address=/wild.test/8.8.8.8",
        ]),
    );
    let dns = resolver("127.0.88.1", Duration::from_secs(2));
    let bl = dnsbl(vec![
        list("bl.test", 1.0, &[], OnError::Tempfail),
        list("bl2.test", 2.0, &["127.0.0.2-127.0.0.3"], OnError::Tempfail),
        list("wild.test", 5.0, &[], OnError::Tempfail),
    ]);

    // The DNSBL test address (RFC 5782: 127.0.0.2 is always listed).
    let o = bl.check(&dns, ip("127.0.0.2")).await;
    assert_eq!(o.zones().collect::<Vec<_>>(), ["bl.test"], "{o:?}");
    assert_eq!(
        o.hits[0].answers,
        ["127.0.0.2".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert!(o.listed(1.0) && !o.tempfail);

    // Two lists: the weights add up.
    let o = bl.check(&dns, ip("127.0.88.10")).await;
    assert_eq!(
        o.zones().collect::<Vec<_>>(),
        ["bl.test", "bl2.test"],
        "{o:?}"
    );
    assert_eq!(o.score, 3.0);
    // The same client as IPv4-mapped IPv6 (answered from the cache, same outcome).
    assert_eq!(*bl.check(&dns, ip("::ffff:127.0.88.10")).await, *o);

    // An answer outside the list's codes does not count.
    let o = bl.check(&dns, ip("127.0.88.11")).await;
    assert!(o.hits.is_empty() && !o.listed(0.0), "{o:?}");

    // Not listed anywhere (NXDOMAIN), except by the wildcarding zone, which lists no one and
    // does not tempfail either.
    let o = bl.check(&dns, ip("127.0.88.12")).await;
    assert!(o.hits.is_empty(), "{o:?}");
    assert_eq!(o.errors.len(), 1, "{o:?}");
    assert_eq!(o.errors[0].zone, "wild.test");
    assert_eq!(o.errors[0].on_error, OnError::Skip);
    assert!(o.errors[0].error.contains("8.8.8.8"), "{o:?}");
    assert!(!o.tempfail);

    // IPv6: 32 reversed nibbles.
    let o = bl.check(&dns, ip("2001:db8::25")).await;
    assert_eq!(o.zones().collect::<Vec<_>>(), ["bl.test"], "{o:?}");
    let o = bl.check(&dns, ip("2001:db8::26")).await;
    assert!(o.hits.is_empty(), "{o:?}");

    // A zone dnsmasq refuses (no upstream for it): a failure with the list's on_error.
    let refused = dnsbl(vec![
        list("bl.test", 1.0, &[], OnError::Skip),
        list("bl.nowhere", 1.0, &[], OnError::Tempfail),
    ]);
    let o = refused.check(&dns, ip("127.0.0.2")).await;
    assert!(o.listed(1.0), "{o:?}");
    assert_eq!(o.errors.len(), 1, "{o:?}");
    assert_eq!(o.errors[0].zone, "bl.nowhere");
    assert!(o.errors[0].error.contains("Refused"), "{o:?}");
    assert!(o.tempfail);
}

#[tokio::test]
async fn dnsbl_failing_lists_follow_on_error() {
    if !have_dnsmasq() {
        return;
    }
    let silent = Upstream::start(false);
    let servfail = Upstream::start(true);
    let _dns = dnsmasq(
        "127.0.88.3",
        &[
            "--host-record=2.0.0.127.bl.test,127.0.0.2".to_string(),
            silent.server_for("slow.test"),
            silent.server_for("slow2.test"),
            servfail.server_for("broken.test"),
        ],
    );
    let timeout = Duration::from_millis(600);
    let dns = resolver("127.0.88.3", timeout);

    // Two silent lists and a listing one: one timeout in all (parallel), tempfail.
    let bl = dnsbl(vec![
        list("slow.test", 1.0, &[], OnError::Tempfail),
        list("slow2.test", 1.0, &[], OnError::Skip),
        list("bl.test", 1.0, &[], OnError::Skip),
    ]);
    let started = Instant::now();
    let o = bl.check(&dns, ip("127.0.0.2")).await;
    let took = started.elapsed();
    assert_eq!(o.zones().collect::<Vec<_>>(), ["bl.test"], "{o:?}");
    let failed: Vec<_> = o
        .errors
        .iter()
        .map(|e| (e.zone.as_str(), e.on_error))
        .collect();
    assert_eq!(
        failed,
        [
            ("slow.test", OnError::Tempfail),
            ("slow2.test", OnError::Skip)
        ],
        "{o:?}"
    );
    assert!(
        o.errors.iter().all(|e| e.error.contains("timed out")),
        "{o:?}"
    );
    assert!(o.tempfail);
    assert!(took >= timeout - Duration::from_millis(50), "{took:?}");
    assert!(
        took < timeout * 2,
        "took {took:?} with a {timeout:?} lookup timeout"
    );

    // The failure is cached (briefly): asked again, no new timeout.
    let started = Instant::now();
    assert!(bl.check(&dns, ip("127.0.0.2")).await.tempfail);
    assert!(started.elapsed() < Duration::from_millis(100));

    // Only skip-lists failing: the verdict stands on the lists that answered.
    let bl = dnsbl(vec![
        list("slow.test", 1.0, &[], OnError::Skip),
        list("bl.test", 1.0, &[], OnError::Skip),
    ]);
    let o = bl.check(&dns, ip("127.0.0.2")).await;
    assert!(o.listed(1.0) && !o.tempfail && o.errors.len() == 1, "{o:?}");

    // SERVFAIL from the list's servers.
    let bl = dnsbl(vec![
        list("broken.test", 1.0, &[], OnError::Tempfail),
        list("bl.test", 1.0, &[], OnError::Skip),
    ]);
    let started = Instant::now();
    let o = bl.check(&dns, ip("127.0.88.40")).await;
    assert!(o.hits.is_empty(), "{o:?}");
    assert_eq!(o.errors.len(), 1, "{o:?}");
    assert_eq!(o.errors[0].zone, "broken.test");
    assert!(o.errors[0].error.contains("Server Failure"), "{o:?}");
    assert!(o.tempfail);
    assert!(
        started.elapsed() < timeout,
        "SERVFAIL must not wait for the timeout"
    );
    let skip = dnsbl(vec![list("broken.test", 1.0, &[], OnError::Skip)]);
    let o = skip.check(&dns, ip("127.0.88.40")).await;
    assert!(!o.tempfail && o.errors.len() == 1, "{o:?}");
}

#[tokio::test]
async fn fcrdns_over_real_dns() {
    if !have_dnsmasq() {
        return;
    }
    let silent = Upstream::start(false);
    let _dns = dnsmasq(
        "127.0.88.4",
        &[
            // Clients are TEST-NET-1 addresses (only named in DNS, never contacted): hickory
            // answers reverse lookups of 127.0.0.0/8 itself (RFC 6761 `localhost`). Unknown
            // reverse names in 192.0.2.0/24 are NXDOMAIN, not REFUSED.
            "--local=/2.0.192.in-addr.arpa/".to_string(),
            // A + PTR that confirm each other.
            "--host-record=Mail.FC.test,192.0.2.20".to_string(),
            // A PTR whose name has another address.
            "--ptr-record=21.2.0.192.in-addr.arpa,liar.fc.test".to_string(),
            "--host-record=liar.fc.test,192.0.2.22".to_string(),
            // IPv6.
            "--host-record=v6.fc.test,2001:db8::25".to_string(),
            // A PTR spelling an address.
            "--ptr-record=24.2.0.192.in-addr.arpa,192.0.2.24".to_string(),
            // A reverse zone that does not answer; a PTR into a forward zone that does not.
            silent.server_for("30.2.0.192.in-addr.arpa"),
            "--ptr-record=31.2.0.192.in-addr.arpa,host.slow.test".to_string(),
            silent.server_for("slow.test"),
        ],
    );
    let timeout = Duration::from_millis(600);
    let dns = resolver("127.0.88.4", timeout);

    assert_eq!(
        fcrdns(&dns, ip("192.0.2.20")).await,
        Fcrdns::Confirmed("mail.fc.test".into())
    );
    assert_eq!(
        fcrdns(&dns, ip("::ffff:192.0.2.20")).await.name(),
        Some("mail.fc.test")
    );
    assert_eq!(fcrdns(&dns, ip("192.0.2.21")).await, Fcrdns::Unconfirmed);
    assert_eq!(fcrdns(&dns, ip("192.0.2.23")).await, Fcrdns::Unconfirmed);
    assert_eq!(fcrdns(&dns, ip("192.0.2.24")).await, Fcrdns::Unconfirmed);
    assert_eq!(
        fcrdns(&dns, ip("2001:db8::25")).await,
        Fcrdns::Confirmed("v6.fc.test".into())
    );
    // dnsmasq REFUSES reverse names of 2001:db8::/32 other than its own records: a DNS
    // failure, never a verdict.
    assert_eq!(fcrdns(&dns, ip("2001:db8::26")).await, Fcrdns::TempError);

    for client in ["192.0.2.30", "192.0.2.31"] {
        let started = Instant::now();
        assert_eq!(
            fcrdns(&dns, ip(client)).await,
            Fcrdns::TempError,
            "{client}"
        );
        let took = started.elapsed();
        // A timeout (not a quick REFUSED), bounded by the lookup timeouts.
        assert!(
            took >= timeout - Duration::from_millis(50),
            "{client}: took {took:?}"
        );
        assert!(took < timeout * 3, "{client}: took {took:?}");
    }
}
