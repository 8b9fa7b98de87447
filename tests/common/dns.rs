//! A real DNS server for tests: `dnsmasq` (Debian's dnsmasq-base) answering for `*.test` on
//! `ip:5353` with the records a test gives, started as a child process, waited for until it
//! answers a query, and killed (SIGKILL, its own pid only) when dropped.
//!
//! It never forwards anywhere unless a test passes `--server=…`: names outside its local zones
//! and forwarded domains get REFUSED (no upstream, no /etc/resolv.conf, no /etc/hosts). It binds
//! only the given loopback address.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL, its own pid only) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `dnsmasq` is installed; says on stderr why the test is skipped when not.
pub fn have_dnsmasq() -> bool {
    let found = Command::new("dnsmasq")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        eprintln!("SKIPPED: dnsmasq not found (install the Debian package dnsmasq-base)");
    }
    found
}

/// `dnsmasq` answering for `*.test` on `ip:5353` with the given extra options (records such as
/// `--txt-record=…`, `--host-record=…`, `--server=/zone/addr#port`). On the command line a
/// `--txt-record` value is taken as is: no quotes (there is no shell, and dnsmasq would keep
/// them in the record), and a comma starts a new character-string. Returns once it answers a
/// query (panics after 10 s). `&[String]`, not a generic slice: callers build records with
/// `"…".into()` and `format!`.
pub fn dnsmasq(ip: &str, records: &[String]) -> Proc {
    let child = Command::new("dnsmasq")
        .args([
            "-k",
            "--conf-file=/dev/null",
            "--port=5353",
            "--bind-interfaces",
        ])
        .arg(format!("--listen-address={ip}"))
        .args([
            "--no-resolv",
            "--no-hosts",
            "--local=/test/",
            "--log-facility=-",
            "--pid-file=",
        ])
        .args(records)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq (Debian package dnsmasq-base) must be installed");
    let p = Proc(child);
    // Wait until it answers a query (SOA of `test.`).
    let q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04test\x00\x00\x06\x00\x01";
    let sock = UdpSocket::bind(format!("{ip}:0")).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = sock.send_to(q, format!("{ip}:5353"));
        let mut b = [0u8; 512];
        if sock.recv_from(&mut b).is_ok() {
            return p;
        }
        assert!(Instant::now() < deadline, "dnsmasq did not start on {ip}");
    }
}
