//! The failover VIP (module `failover::vip`) against the real kernel, as root.
//!
//! Each test makes two network namespaces, `mnvip-test-<pid>-<tag>-a` and `-b`, joined by a
//! veth pair (`va` in A, `vb` in B); a guard deletes them (and the pair) when the test ends,
//! also on failure, and each test first removes namespaces left by test processes that no
//! longer exist. The code under test runs in A on a dedicated thread that entered A with
//! `setns`, on a current-thread tokio runtime built on that thread, so the netlink and packet
//! sockets it opens (and the announcer task) live in A. A packet socket on `vb`, opened by a
//! thread that entered B, records what arrives from A; B's own neighbour table shows whether
//! its kernel accepted the announcements (an entry with a wrong MAC is overridden).
//!
//! The addresses (198.51.100.0/24, 2001:db8:5::/64, documentation ranges) exist only inside
//! these namespaces; no frame leaves them. Every wait is bounded.

use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use mailnode::failover::vip::{Vip, VipConfig, VipError};
use nix::sys::socket::{self, AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType};

const MAC_A: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x0a];
const MAC_A_TEXT: &str = "02:00:5e:00:00:0a";
/// What B's neighbour entry for the VIP says before the announcements: an old holder.
const OLD_MAC: &str = "02:00:5e:00:00:99";
const PACKET_OUTGOING: u8 = 4;

/// Runs `ip` (bounded by coreutils' `timeout`) and returns its output; fails the test on error.
fn ip(args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("10")
        .arg("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The two namespaces of one test; dropping it deletes them, which deletes the veth pair.
struct Netns {
    a: String,
    b: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        remove_stale_namespaces();
        let base = format!("mnvip-test-{}-{tag}", std::process::id());
        // The guard exists before anything is made, so a failed step still cleans up.
        let ns = Netns {
            a: format!("{base}-a"),
            b: format!("{base}-b"),
        };
        ip(&["netns", "add", &ns.a]);
        ip(&["netns", "add", &ns.b]);
        ip(&[
            "link",
            "add",
            "va",
            "address",
            MAC_A_TEXT,
            "netns",
            &ns.a,
            "type",
            "veth",
            "peer",
            "name",
            "vb",
            "address",
            "02:00:5e:00:00:0b",
            "netns",
            &ns.b,
        ]);
        for (n, dev) in [(&ns.a, "va"), (&ns.b, "vb")] {
            ip(&["-n", n, "link", "set", "lo", "up"]);
            ip(&["-n", n, "link", "set", dev, "up"]);
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in [&self.a, &self.b] {
            let _ = Command::new("timeout")
                .args(["10", "ip", "netns", "del", n])
                .status();
        }
    }
}

/// Namespaces of earlier test processes that were killed before their guard ran.
fn remove_stale_namespaces() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("mnvip-test-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("timeout")
                    .args(["10", "ip", "netns", "del", &name])
                    .status();
            }
        }
    }
}

/// Enters namespace `ns` on the current thread.
fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("open the namespace");
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns (needs root)");
}

/// Runs `scenario` in namespace `ns` on its own thread and current-thread runtime, for at most
/// `limit`; a panic in it fails the test with its own message.
fn in_netns<T, F, Fut>(ns: &str, limit: Duration, scenario: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let (tx, rx) = mpsc::channel();
    let ns_name = ns.to_string();
    let thread = std::thread::spawn(move || {
        enter(&ns_name);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let out = rt
            .block_on(async { tokio::time::timeout(limit, scenario()).await })
            .expect("the scenario ran out of time");
        let _ = tx.send(out);
    });
    match rx.recv_timeout(limit + Duration::from_secs(5)) {
        Ok(out) => {
            let _ = thread.join();
            out
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!("the scenario thread ended without a result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the scenario in {ns} did not finish"),
    }
}

/// One frame received on the peer end.
struct Frame {
    /// When the kernel received it.
    at: SystemTime,
    bytes: Vec<u8>,
}

/// Records every frame that arrives on `vb` in namespace B until stopped.
struct Capture {
    stop: Arc<AtomicBool>,
    frames: mpsc::Receiver<Vec<Frame>>,
}

impl Capture {
    fn start(ns: &str) -> Capture {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (frames_tx, frames_rx) = mpsc::channel();
        let (ns, stop2) = (ns.to_string(), stop.clone());
        std::thread::spawn(move || {
            enter(&ns);
            let fd = open_capture("vb");
            let _ = ready_tx.send(());
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut frames = Vec::new();
            let mut buf = [0u8; 2048];
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                // The kernel's receive timestamp, not this thread's clock: on a loaded machine
                // the thread may read two frames back to back that arrived far apart.
                let got = {
                    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
                    socket::recvmsg::<LinkAddr>(
                        fd.as_raw_fd(),
                        &mut iov,
                        Some(&mut cmsg),
                        socket::MsgFlags::empty(),
                    )
                    .ok()
                    .map(|m| {
                        let at = m.cmsgs().ok().and_then(|mut c| {
                            c.find_map(|c| match c {
                                socket::ControlMessageOwned::ScmTimestampns(ts) => Some(
                                    SystemTime::UNIX_EPOCH
                                        + Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32),
                                ),
                                _ => None,
                            })
                        });
                        (m.bytes, m.address, at)
                    })
                };
                match got {
                    Some((n, Some(from), at)) if from.pkttype() != PACKET_OUTGOING => {
                        frames.push(Frame {
                            at: at.unwrap_or_else(SystemTime::now),
                            bytes: buf.get(..n).unwrap_or_default().to_vec(),
                        })
                    }
                    _ => {}
                }
            }
            let _ = frames_tx.send(frames);
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the capture did not start");
        Capture {
            stop,
            frames: frames_rx,
        }
    }

    fn finish(self) -> Vec<Frame> {
        self.stop.store(true, Ordering::SeqCst);
        self.frames
            .recv_timeout(Duration::from_secs(10))
            .expect("the capture did not stop")
    }
}

/// A packet socket receiving every protocol on `dev`, with a short receive timeout.
fn open_capture(dev: &str) -> OwnedFd {
    let fd = socket::socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::EthAll,
    )
    .expect("packet socket (needs root)");
    let addr = nix::ifaddrs::getifaddrs()
        .expect("getifaddrs")
        .filter(|a| a.interface_name == dev)
        .find_map(|a| a.address.and_then(|s| s.as_link_addr().copied()))
        .expect("the capture interface");
    socket::bind(fd.as_raw_fd(), &addr).expect("bind the capture socket");
    let tv = nix::sys::time::TimeVal::new(0, 50_000);
    socket::setsockopt(&fd, socket::sockopt::ReceiveTimeout, &tv).expect("SO_RCVTIMEO");
    socket::setsockopt(&fd, socket::sockopt::ReceiveTimestampns, &true).expect("SO_TIMESTAMPNS");
    fd
}

fn vip_config(address: &str, prefix: u8, interface: &str, count: u32, ms: u64) -> VipConfig {
    VipConfig {
        address: address.parse().unwrap(),
        prefix_len: Some(prefix),
        interface: interface.into(),
        garp_count: count,
        garp_interval_ms: ms,
    }
}

/// The frames that announce `vip`: gratuitous ARP or unsolicited NA, checked field by field.
fn announcements(frames: &[Frame], vip: IpAddr) -> Vec<&Frame> {
    frames
        .iter()
        .filter(|f| match vip {
            IpAddr::V4(ip) => {
                let b = &f.bytes;
                b.len() >= 42
                    && b[12..14] == [0x08, 0x06]
                    && b[28..32] == ip.octets()
                    && is_arp_announcement(b, ip.octets())
            }
            IpAddr::V6(ip) => {
                let b = &f.bytes;
                b.len() >= 86 && b[12..14] == [0x86, 0xdd] && b[20] == 58 && b[54] == 136 && {
                    assert_na(b, ip);
                    true
                }
            }
        })
        .collect()
}

fn is_arp_announcement(b: &[u8], ip: [u8; 4]) -> bool {
    assert_eq!(&b[0..6], &[0xff; 6], "broadcast");
    assert_eq!(&b[6..12], &MAC_A, "Ethernet source");
    assert_eq!(&b[14..20], &[0, 1, 8, 0, 6, 4], "Ethernet/IPv4 ARP");
    assert_eq!(&b[20..22], &[0, 1], "a request");
    assert_eq!(&b[22..28], &MAC_A, "sender hardware address");
    assert_eq!(&b[38..42], &ip, "target IP == sender IP");
    true
}

fn assert_na(b: &[u8], ip: Ipv6Addr) {
    let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
    assert_eq!(&b[0..6], &[0x33, 0x33, 0, 0, 0, 1], "all-nodes MAC");
    assert_eq!(&b[6..12], &MAC_A, "Ethernet source");
    assert_eq!(b[21], 255, "hop limit");
    assert_eq!(&b[22..38], &ip.octets(), "IPv6 source");
    assert_eq!(&b[38..54], &all_nodes.octets(), "IPv6 destination");
    assert_eq!(b[58], 0x20, "override flag only");
    assert_eq!(&b[62..78], &ip.octets(), "target");
    assert_eq!(&b[78..80], &[2, 1], "target link-layer address option");
    assert_eq!(&b[80..86], &MAC_A, "its address");
    // The checksum, summed here independently over pseudo-header + message, folds to 0xffff.
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for c in bytes.chunks(2) {
            sum += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
        }
    };
    add(&b[22..54]);
    add(&[0, 0, 0, 32, 0, 0, 0, 58]);
    add(&b[54..86]);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    assert_eq!(sum, 0xffff, "ICMPv6 checksum");
}

/// claim → announcements seen and accepted by the peer → claim again → release → release again.
fn claim_announce_release(tag: &str, vip: &str, prefix: u8, peer: &str, family: &'static str) {
    let ns = Netns::new(tag);
    ip(&["-n", &ns.b, "addr", "add", peer, "dev", "vb", "nodad"]);
    ip(&[
        "-n", &ns.b, "neigh", "add", vip, "lladdr", OLD_MAC, "dev", "vb", "nud", "stale",
    ]);
    let (count, interval_ms) = (3u32, 100u64);
    let capture = Capture::start(&ns.b);
    let (a, b, vip_s) = (ns.a.clone(), ns.b.clone(), vip.to_string());
    let shown = move || ip(&["-n", &a, "-o", family, "addr", "show", "dev", "va"]);
    in_netns(&ns.a, Duration::from_secs(20), move || async move {
        let address: IpAddr = vip_s.parse().unwrap();
        let v = Vip::new(vip_config(&vip_s, prefix, "va", count, interval_ms));
        assert!(!v.is_held().await.unwrap(), "held before the claim");

        let t0 = Instant::now();
        v.claim().await.unwrap();
        assert!(
            t0.elapsed() < Duration::from_millis(interval_ms * u64::from(count - 1)),
            "claim waited for the announcements"
        );
        assert!(v.is_held().await.unwrap());
        let out = shown();
        let line = out
            .lines()
            .find(|l| l.contains(&format!(" {vip_s}/{prefix} ")));
        let line = line.unwrap_or_else(|| panic!("not on va: {out}"));
        assert!(
            !line.contains("tentative"),
            "the VIP must be usable at once: {line}"
        );

        // Let the announcements finish (and a little more, to see that no extra one comes).
        tokio::time::sleep(Duration::from_millis(interval_ms * u64::from(count) + 400)).await;
        let frames = capture.finish();
        let seen = announcements(&frames, address);
        assert_eq!(seen.len(), count as usize, "announcements on the peer");
        for pair in seen.windows(2) {
            let gap = pair[1].at.duration_since(pair[0].at).unwrap_or_default();
            assert!(
                gap >= Duration::from_millis(interval_ms / 2),
                "announcements {gap:?} apart"
            );
        }
        let neigh = ip(&["-n", &b, "neigh", "show", &vip_s, "dev", "vb"]);
        assert!(
            neigh.contains(MAC_A_TEXT),
            "the peer did not learn the new holder: {neigh}"
        );

        v.claim().await.expect("claiming a held address again");
        assert!(v.is_held().await.unwrap());

        v.release().await.unwrap();
        assert!(!v.is_held().await.unwrap());
        let out = shown();
        assert!(!out.contains(&vip_s), "still on va: {out}");
        v.release()
            .await
            .expect("releasing a released address again");
    });
}

#[test]
fn ipv4_claim_announces_with_gratuitous_arp_and_release_removes() {
    claim_announce_release("v4", "198.51.100.7", 24, "198.51.100.2/24", "-4");
}

#[test]
fn ipv6_claim_announces_with_unsolicited_na_and_release_removes() {
    claim_announce_release("v6", "2001:db8:5::7", 64, "2001:db8:5::2/64", "-6");
}

/// A fenced holder must not go on announcing: release stops the announcements at once.
#[test]
fn release_stops_the_announcements() {
    let ns = Netns::new("stop");
    let capture = Capture::start(&ns.b);
    in_netns(&ns.a, Duration::from_secs(20), move || async move {
        let address: IpAddr = "198.51.100.8".parse().unwrap();
        let v = Vip::new(vip_config("198.51.100.8", 32, "va", 50, 100));
        v.claim().await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        v.release().await.unwrap();
        let released = SystemTime::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let frames = capture.finish();
        let seen = announcements(&frames, address);
        assert!(
            (2..=5).contains(&seen.len()),
            "{} announcements",
            seen.len()
        );
        let late = seen
            .iter()
            .filter(|f| f.at > released + Duration::from_millis(20))
            .count();
        assert_eq!(late, 0, "announced after the release");
    });
}

#[test]
fn a_missing_or_unsuitable_interface_is_named() {
    let ns = Netns::new("noif");
    let a = ns.a.clone();
    in_netns(&ns.a, Duration::from_secs(20), move || async move {
        let v = Vip::new(vip_config("198.51.100.9", 24, "eth9", 5, 200));
        let err = v.claim().await.unwrap_err();
        assert!(matches!(err, VipError::NoInterface { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "interface eth9 does not exist: check failover.vip.interface (`ip link`)"
        );
        assert!(matches!(
            v.is_held().await,
            Err(VipError::NoInterface { .. })
        ));
        // Nothing can be held on an interface that does not exist: fencing goes on.
        v.release().await.unwrap();

        // Loopback has no ARP: refused before the address is added.
        let v = Vip::new(vip_config("198.51.100.9", 32, "lo", 5, 200));
        let err = v.claim().await.unwrap_err();
        assert!(matches!(err, VipError::Arp { .. }), "{err:?}");
        assert!(err.to_string().contains("garp_count = 0"), "{err}");
        assert!(!v.is_held().await.unwrap());
        // Without announcements it is just an address.
        let v = Vip::new(vip_config("198.51.100.9", 32, "lo", 0, 200));
        v.claim().await.unwrap();
        assert!(
            ip(&["-n", &a, "-o", "-4", "addr", "show", "dev", "lo"]).contains("198.51.100.9/32")
        );
        v.release().await.unwrap();
        assert!(!v.is_held().await.unwrap());
    });
}
