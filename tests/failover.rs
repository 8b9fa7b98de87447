//! The Raft-elected active mailstore on three real nodes sharing one store directory (no block
//! device or virtual IP here: the queues deliver to the lease holder's own LMTP address).
//! Checked continuously: never two nodes serving LMTP at once. Then: kill -9 of the holder
//! under load, a planned switchover with `mailctl failover`, a drain; every message that got a
//! `250` is in the mailbox exactly once.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{set_extra_config, Cut, TestCluster, Tuning};
use mailnode::store::{Store, StoreConfig};
use serde_json::{json, Value};

fn ip(net: u8, id: u64) -> String {
    format!("127.0.{net}.{id}")
}

fn node_config(net: u8, id: u64, root: &Path, spool: &Path) -> String {
    let fenced = root.with_file_name("fenced.log");
    let vip = if net == 61 {
        // A dummy interface in the shared namespace: the wiring (claim on activation, release
        // when fencing); tests/vip.rs proves the address and announcements between namespaces.
        "\n[failover.vip]\naddress = \"10.61.0.100\"\ninterface = \"mnfo61\"\ngarp_count = 0\n"
    } else {
        ""
    };
    format!(
        r#"
[mail]
mx_listen = "{ip}:2525"

[smtp]
spool_dir = "{spool}"

[queue]
lmtp_retry_ms = 200

[mailstore]
root = "{root}"
lmtp_listen = "{ip}:2424"
create_if_missing = true

[failover]
lease_ms = 1500
renew_ms = 250
safety_margin_ms = 600
fence_grace_ms = 300
fence_command = ["sh", "-c", "echo {{node}} {{name}} >> {fenced}"]
fence_timeout_ms = 5000
{vip}"#,
        fenced = fenced.display(),
        ip = ip(net, id),
        root = root.display(),
        spool = spool.display(),
    )
}

/// Sends one message; `Ok(true)` when the server answered 250 to the data.
fn send(addr: &str, rcpt: &str, tag: &str) -> std::io::Result<bool> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = tcp.try_clone()?;
    let mut r = BufReader::new(tcp);
    let mut reply = || -> std::io::Result<String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Ok(all);
            }
        }
    };
    reply()?;
    for s in [
        "EHLO load.example\r\n".to_string(),
        "MAIL FROM:<load@remote.example>\r\n".to_string(),
        format!("RCPT TO:<{rcpt}>\r\n"),
        "DATA\r\n".to_string(),
    ] {
        w.write_all(s.as_bytes())?;
        let rep = reply()?;
        if !(rep.starts_with('2') || rep.starts_with('3')) {
            return Ok(false);
        }
    }
    let body = format!("From: load@remote.example\r\nTo: {rcpt}\r\nSubject: load {tag}\r\nX-Test-Id: {tag}\r\n\r\nmessage {tag}\r\n.\r\n");
    w.write_all(body.as_bytes())?;
    Ok(reply()?.starts_with("250"))
}

/// The lease as a node reports it.
async fn lease(c: &TestCluster, id: u64) -> Option<Value> {
    match c.api(id).try_call("GET", "/api/status", None).await {
        Some((200, v)) => Some(v["mailstore"].clone()),
        _ => None,
    }
}

/// Waits until a node other than `not` is the active holder (as `ask` reports it).
async fn active_holder(
    c: &TestCluster,
    ask: u64,
    not: Option<u64>,
    within: Duration,
) -> (u64, u64) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(m) = lease(c, ask).await {
            let epoch = m["epoch"].as_u64().unwrap_or(0);
            if let Some(h) = m["holder"].as_u64() {
                if Some(h) != not && m["active_epoch"].as_u64() == Some(epoch) {
                    return (h, epoch);
                }
            }
        }
        if Instant::now() >= deadline {
            dump(c).await;
            panic!(
                "no active mailstore within {within:?}: {:?}",
                lease(c, ask).await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Prints what each node says and the end of its log, before a failing assertion.
async fn dump(c: &TestCluster) {
    for n in &c.nodes {
        let status = c.api(n.id).try_call("GET", "/api/status", None).await;
        eprintln!("--- node {} status: {status:?}", n.id);
        let log = n.log();
        let lines: Vec<&str> = log.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.contains("panicked") && !l.contains("RaftMsg") && !l.contains("Fatal") {
                let around = &lines[i.saturating_sub(40)..(i + 8).min(lines.len())];
                eprintln!(
                    "--- node {} log around line {i}:\n{}",
                    n.id,
                    around.join("\n")
                );
            }
        }
        let failover: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("mailnode::failover"))
            .collect();
        eprintln!("--- node {} failover log:\n{}", n.id, failover.join("\n"));
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        eprintln!(
            "--- node {} log (last 60 lines, newest first):\n{}",
            n.id,
            tail.join("\n")
        );
    }
}

/// Counts messages by X-Test-Id in the shared store (all nodes stopped).
async fn delivered(root: &Path, user: &str) -> HashMap<String, usize> {
    let store = Store::open(root, StoreConfig::default()).unwrap();
    let mb = store.open_mailbox(user, "INBOX").await.unwrap();
    let snap = mb.snapshot().unwrap();
    let mut seen = HashMap::new();
    for m in snap.messages.iter() {
        let bytes = mb.fetch(m.uid).await.unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("X-Test-Id: "))
            .expect("test id")
            .trim()
            .to_string();
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

fn mailctl(c: &TestCluster, server: u64, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mailctl"))
        .arg("--server")
        .arg(c.nodes[(server - 1) as usize].api_addr())
        .arg("--token-file")
        .arg(c.tmp.path().join("admin.token"))
        .arg("--ca-file")
        .arg(c.pki.join("ca.pem"))
        .args(args)
        .output()
        .unwrap()
}

/// Serving, as a client sees it: the LMTP greeting arrives. (A paused process still accepts
/// TCP connections into its backlog, but never greets.)
fn greets(addr: &str) -> bool {
    let Ok(addr) = addr.parse() else { return false };
    let Ok(tcp) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(300)));
    let mut line = String::new();
    BufReader::new(tcp).read_line(&mut line).is_ok() && line.starts_with("220")
}

/// Three nodes with a shared store directory, a sampler of who serves LMTP, and SMTP load
/// through every node's MX.
struct Rig {
    c: TestCluster,
    net: u8,
    root: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    double: Arc<Mutex<Vec<Vec<u64>>>>,
    sampler: Option<std::thread::JoinHandle<u64>>,
    clients: Vec<std::thread::JoinHandle<()>>,
    acked: Arc<Mutex<Vec<String>>>,
}

impl Rig {
    async fn start(net: u8) -> Rig {
        Rig::start_with(net, |_| {}).await
    }

    /// [`Rig::start`], with `prepare` run on the cluster before the nodes start.
    async fn start_with(net: u8, prepare: impl FnOnce(&mut TestCluster)) -> Rig {
        let mut c = TestCluster::new(net, 3, Tuning::default());
        prepare(&mut c);
        let root = c.tmp.path().join("mailstore");
        for id in 1..=3 {
            let spool = c.nodes[(id - 1) as usize].data_dir().join("spool");
            set_extra_config(&c, id, &node_config(net, id, &root, &spool));
        }
        c.form().await;
        let api = c.api(1);
        assert_eq!(
            api.call("POST", "/api/domains", Some(json!({"name": "example.org"})))
                .await
                .0,
            200
        );
        let user = json!({"address": "alice@example.org", "password_hash": "{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="});
        assert_eq!(api.call("POST", "/api/users", Some(user)).await.0, 201);
        let stop = Arc::new(AtomicBool::new(false));
        let double = Arc::new(Mutex::new(Vec::<Vec<u64>>::new()));
        // Never two nodes serving: sample every node's LMTP greeting all along.
        let sampler = {
            let (stop, double) = (stop.clone(), double.clone());
            std::thread::spawn(move || {
                let mut samples = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let serving: Vec<u64> = (1..=3)
                        .filter(|id| greets(&format!("{}:2424", ip(net, *id))))
                        .collect();
                    if serving.len() > 1 {
                        double.lock().unwrap().push(serving);
                    }
                    samples += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                samples
            })
        };
        let acked = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut clients = Vec::new();
        for t in 1..=3u64 {
            let (acked, stop) = (acked.clone(), stop.clone());
            clients.push(std::thread::spawn(move || {
                let mx = format!("{}:2525", ip(net, t));
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let tag = format!("{t}-{n}");
                    n += 1;
                    match send(&mx, "alice@example.org", &tag) {
                        Ok(true) => acked.lock().unwrap().push(tag),
                        Ok(false) => {}
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }));
        }
        Rig {
            c,
            net,
            root,
            stop,
            double,
            sampler: Some(sampler),
            clients,
            acked,
        }
    }

    /// Waits for `more` acknowledged messages.
    async fn more_acked(&self, more: usize) {
        let target = self.acked.lock().unwrap().len() + more;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.acked.lock().unwrap().len() < target {
            if Instant::now() >= deadline {
                dump(&self.c).await;
                panic!("the load did not make progress");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the load and the sampler, drains the queues, stops the nodes, and checks: never
    /// two serving, every acknowledged message delivered exactly once.
    async fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for cl in self.clients.drain(..) {
            cl.join().unwrap();
        }
        let samples = self.sampler.take().unwrap().join().unwrap();
        let doubles = self.double.lock().unwrap().clone();
        if !doubles.is_empty() {
            dump(&self.c).await;
            panic!("two nodes served LMTP at once: {doubles:?}");
        }
        // The check has power only if it ran: a round probes three nodes and may wait 300 ms
        // for each greeting (a paused node accepts but never greets), so under a loaded CI
        // machine a few dozen rounds is what a short test gets.
        assert!(samples >= 20, "the sampler barely ran: {samples} rounds");
        let c = &mut self.c;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut waiting = 0;
            for id in 1..=3 {
                if let Some((200, v)) = c.api(id).try_call("GET", "/api/status", None).await {
                    waiting += v["queue"]["messages"].as_u64().unwrap_or(0);
                }
            }
            if waiting == 0 {
                break;
            }
            if Instant::now() >= deadline {
                dump(c).await;
                panic!("queues did not drain: {waiting} left");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for id in 1..=3 {
            if c.nodes[(id - 1) as usize].child.is_some() {
                c.node(id).terminate(Duration::from_secs(15));
            }
        }
        let seen = delivered(&self.root, "alice@example.org").await;
        let acked = self.acked.lock().unwrap().clone();
        let missing: Vec<&String> = acked.iter().filter(|t| !seen.contains_key(*t)).collect();
        assert!(
            missing.is_empty(),
            "{} acknowledged messages lost: {missing:?}",
            missing.len()
        );
        let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(dups.is_empty(), "delivered twice: {dups:?}");
        eprintln!(
            "{} acknowledged, {} delivered, LMTP sampled {samples} times",
            acked.len(),
            seen.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_moves_on_kill_switchover_and_drain_and_mail_is_delivered_once() {
    let _dummy = Dummy::new("mnfo61");
    let mut rig = Rig::start(61).await;
    let (first, epoch) = active_holder(&rig.c, 1, None, Duration::from_secs(20)).await;
    assert!(epoch >= 1);
    rig.more_acked(20).await;

    // (a) kill -9 the holder: another node takes over after the lease expires.
    let killed_at = Instant::now();
    rig.c.node(first).kill9();
    let ask = if first == 1 { 2 } else { 1 };
    let (second, epoch2) = active_holder(&rig.c, ask, Some(first), Duration::from_secs(20)).await;
    let took = killed_at.elapsed();
    eprintln!("kill -9 of node {first}: node {second} active after {took:?} (epoch {epoch2})");
    assert!(epoch2 > epoch);
    // The leader counts `lease_ms` (1,500) from the last renewal it applied, and the holder
    // renewed up to `renew_ms` (250) before the kill: the earliest legal grant is 1,250 ms
    // after it. (Asserting 1,500 failed about one run in four, when the kill came just before
    // a renewal was due.)
    assert!(
        took >= Duration::from_millis(1500 - 250),
        "granted before the lease expired: {took:?}"
    );
    // The new holder ran the fence agent against the old one before mounting.
    let fenced = std::fs::read_to_string(rig.root.with_file_name("fenced.log")).unwrap();
    assert_eq!(fenced, format!("{first} n{first}\n"));
    rig.more_acked(20).await;
    rig.c.node(first).start();
    rig.c.api(first).wait_ready(Duration::from_secs(20)).await;

    // (e) planned switchover with mailctl, to the restarted node.
    let c = &rig.c;
    let started = Instant::now();
    let out = mailctl(c, ask, &["failover", "--to", &format!("n{first}")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (third, epoch3) = active_holder(c, ask, Some(second), Duration::from_secs(10)).await;
    eprintln!("switchover to node {third}: {:?}", started.elapsed());
    assert_eq!(third, first);
    assert!(epoch3 > epoch2);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("is the active mailstore"), "{text}");
    let status = mailctl(c, ask, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("switchover requested by the operator"),
        "{text}"
    );
    // Every member's own view: one active node with the volume and the services, two standby.
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("NODE"))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    let active: Vec<&&str> = rows.iter().filter(|r| r.contains(" active ")).collect();
    assert_eq!(active.len(), 1, "{text}");
    assert!(active[0].starts_with(&format!("{first} ")), "{text}");
    assert_eq!(
        active[0].matches("yes").count(),
        3,
        "volume, VIP and services: {text}"
    );
    assert_eq!(
        rows.iter().filter(|r| r.contains(" standby ")).count(),
        2,
        "{text}"
    );
    // A switchover to the holder itself, or to an unknown node, is refused.
    let out = mailctl(c, ask, &["failover", "--to", &format!("n{first}")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = mailctl(c, ask, &["failover", "--to", "n9"]);
    assert_eq!(out.status.code(), Some(2));
    rig.more_acked(20).await;

    // Drain the holder: it hands over; undrain lets it back.
    let c = &rig.c;
    let out = mailctl(c, ask, &["node", "drain", &first.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (fourth, _) = active_holder(c, ask, Some(first), Duration::from_secs(10)).await;
    assert_ne!(fourth, first);
    let m = lease(c, ask).await.unwrap();
    assert_eq!(m["drained"], json!([first]));
    let out = mailctl(c, ask, &["node", "undrain", &first.to_string()]);
    assert!(out.status.success());
    rig.more_acked(20).await;
    assert!(
        vip_present("mnfo61", "10.61.0.100"),
        "the active holder has the VIP"
    );
    rig.finish().await;
    assert!(
        !vip_present("mnfo61", "10.61.0.100"),
        "released at shutdown"
    );
}

/// An interface for the VIP (one end of a veth pair: this kernel has no dummy driver),
/// removed at the end.
struct Dummy(&'static str);

impl Dummy {
    fn new(name: &'static str) -> Dummy {
        let ip = |args: &[&str]| std::process::Command::new("ip").args(args).status();
        let peer = format!("{name}p");
        let _ = ip(&["link", "del", name]);
        let ok = ip(&["link", "add", name, "type", "veth", "peer", "name", &peer]);
        assert!(ok.unwrap().success(), "ip link add {name} type veth");
        for dev in [name, peer.as_str()] {
            assert!(ip(&["link", "set", dev, "up"]).unwrap().success());
        }
        Dummy(name)
    }
}

impl Drop for Dummy {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", self.0])
            .status();
    }
}

fn vip_present(interface: &str, address: &str) -> bool {
    let out = std::process::Command::new("ip")
        .args(["-o", "addr", "show", "dev", interface])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("inet {address}/"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_fences_itself_before_another_takes_over() {
    let mut rig = Rig::start(62).await;
    let (first, _) = active_holder(&rig.c, 1, None, Duration::from_secs(20)).await;
    rig.more_acked(10).await;

    // (b) SIGSTOP the holder for longer than the lease, then SIGCONT: another node takes
    // over, and the resumed node neither greets nor writes (its lease ran out while paused).
    rig.c.node(first).signal(nix::sys::signal::Signal::SIGSTOP);
    let other = if first == 1 { 2 } else { 1 };
    let (second, _) = active_holder(&rig.c, other, Some(first), Duration::from_secs(20)).await;
    assert_ne!(second, first);
    rig.more_acked(10).await;
    rig.c.node(first).signal(nix::sys::signal::Signal::SIGCONT);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((200, v)) = rig.c.api(first).try_call("GET", "/api/status", None).await {
            if v["mailstore"]["local"]["state"] == "standby" {
                break;
            }
        }
        if Instant::now() >= deadline {
            dump(&rig.c).await;
            panic!("the resumed node did not fence itself");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rig.more_acked(10).await;
    rig.finish().await;
}

/// libfaketime (Debian's `faketime`) under every node, driven by one file per node, so a test
/// can move a node's wall clock while its monotonic clock runs on.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

fn set_wall_clock_offset(c: &TestCluster, id: u64, offset: &str) {
    std::fs::write(c.nodes[(id - 1) as usize].dir.join("faketime"), offset).unwrap();
}

/// The newest RFC 3339 timestamp at the start of a node's log lines (the tracing format).
fn last_log_time(c: &TestCluster, id: u64) -> Option<String> {
    let log = c.nodes[(id - 1) as usize].log();
    log.lines()
        .map(strip_ansi)
        .filter_map(|l| l.get(..19).map(str::to_string))
        .filter(|t| t.len() == 19 && t.as_bytes()[4] == b'-' && t.as_bytes()[10] == b'T')
        .max()
}

/// A log line without its terminal colour codes (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A wall-clock jump (NTP stepping the clock, an operator's `date -s`) on the holder and on
/// another node, an hour forward and an hour back, under load: the lease, the write fence and
/// Raft's timers run on the monotonic clock, so nothing moves — same holder, same epoch — and
/// every acknowledged message is delivered once. libfaketime fakes only the wall clock
/// (`FAKETIME_DONT_FAKE_MONOTONIC=1`); the test checks from the nodes' log timestamps that the
/// jump really happened in the processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_jumps_do_not_move_the_lease() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: apt-get install faketime"
    );
    let rig = Rig::start_with(64, |c| {
        for n in &mut c.nodes {
            let file = n.dir.join("faketime");
            std::fs::write(&file, "+0").unwrap();
            n.env = vec![
                ("LD_PRELOAD".into(), LIBFAKETIME.into()),
                ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
                ("FAKETIME_NO_CACHE".into(), "1".into()),
                ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ];
        }
    })
    .await;
    let (holder, epoch) = active_holder(&rig.c, 1, None, Duration::from_secs(20)).await;
    rig.more_acked(10).await;
    let other = if holder == 1 { 2 } else { 1 };
    set_wall_clock_offset(&rig.c, holder, "+3600");
    set_wall_clock_offset(&rig.c, other, "-3600");
    // Two leases' worth of load with the clocks apart, then back.
    let until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < until {
        rig.more_acked(5).await;
    }
    let ahead = last_log_time(&rig.c, holder).unwrap_or_default();
    set_wall_clock_offset(&rig.c, holder, "+0");
    set_wall_clock_offset(&rig.c, other, "+0");
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        rig.more_acked(5).await;
    }
    // The jump reached the holder: it logged (renewals, mail) with a clock 50+ minutes ahead.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ahead_secs = rfc3339_secs(&ahead);
    assert!(
        ahead_secs >= now + 50 * 60 - 30,
        "the holder's log shows no jumped clock (last time {ahead:?}): is libfaketime working?"
    );
    for id in 1..=3 {
        let m = lease(&rig.c, id).await.expect("status");
        assert_eq!(
            (m["holder"].as_u64(), m["epoch"].as_u64()),
            (Some(holder), Some(epoch)),
            "node {id} sees the lease moved after a wall-clock jump: {m}"
        );
    }
    rig.finish().await;
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS` (UTC).
fn rfc3339_secs(t: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| t.get(r).and_then(|x| x.parse::<i64>().ok()).unwrap_or(0);
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)).max(0) as u64
}

/// Partitions. This test failed about one run in four until lease grants carried the renewal
/// count they were decided on: a leader cut off from the holder saw no renewals and proposed a
/// grant that, forwarded once the partition healed, took the lease from the healthy holder
/// (found by cluster/nemesis.sh). It passed 14 runs of 14 after that fix. Seen once before it,
/// never since: openraft's debug assertion `Some(log_id) <= self.committed()`
/// (log_state_reader.rs:23) in the Raft core of the node cut off while it led, as it rejoined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_holder_fences_itself_and_a_cut_off_leader_does_not_stop_mail() {
    let rig = Rig::start(63).await;
    let (second, _) = active_holder(&rig.c, 1, None, Duration::from_secs(20)).await;
    rig.more_acked(10).await;

    // (c) cut the holder off from the other two: it fences itself; they take over.
    let net = rig.net;
    let others: Vec<String> = (1..=3)
        .filter(|i| *i != second)
        .map(|i| ip(net, i))
        .collect();
    let others: Vec<&str> = others.iter().map(String::as_str).collect();
    let holder_ip = ip(net, second);
    {
        let _cut = Cut::between(&[holder_ip.as_str()], &others);
        let ask = (1..=3).find(|i| *i != second).unwrap();
        let (third, _) = active_holder(&rig.c, ask, Some(second), Duration::from_secs(20)).await;
        eprintln!("cut off node {second}: node {third} took over");
        rig.more_acked(10).await;
    }
    // (d) cut off the Raft leader when it is not the holder: the holder keeps serving (it
    // renews through the new leader) or hands over cleanly; mail keeps flowing.
    let leader = rig.c.leader().await.expect("a leader");
    let (holder, _) = active_holder(&rig.c, leader, None, Duration::from_secs(20)).await;
    if leader != holder {
        let others: Vec<String> = (1..=3)
            .filter(|i| *i != leader)
            .map(|i| ip(net, i))
            .collect();
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        let leader_ip = ip(net, leader);
        let _cut = Cut::between(&[leader_ip.as_str()], &others);
        rig.more_acked(15).await;
    }
    rig.more_acked(10).await;
    rig.finish().await;
}
