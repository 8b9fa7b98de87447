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

use common::{set_extra_config, TestCluster, Tuning};
use mailnode::store::{Store, StoreConfig};
use serde_json::{json, Value};

const NET: u8 = 61;

fn ip(id: u64) -> String {
    format!("127.0.{NET}.{id}")
}

fn node_config(id: u64, root: &Path, spool: &Path) -> String {
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
"#,
        ip = ip(id),
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
            for n in &c.nodes {
                eprintln!("--- node {} log:\n{}", n.id, n.log());
            }
            panic!(
                "no active mailstore within {within:?}: {:?}",
                lease(c, ask).await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_moves_on_kill_switchover_and_drain_and_mail_is_delivered_once() {
    let mut c = TestCluster::new(NET, 3, Tuning::default());
    let root = c.tmp.path().join("mailstore");
    for id in 1..=3 {
        let spool = c.nodes[(id - 1) as usize].data_dir().join("spool");
        set_extra_config(&c, id, &node_config(id, &root, &spool));
    }
    c.form().await;
    let (first, epoch) = active_holder(&c, 1, None, Duration::from_secs(20)).await;
    assert!(epoch >= 1);

    // Never two nodes serving: sample every node's LMTP port all along.
    let stop = Arc::new(AtomicBool::new(false));
    let double = Arc::new(Mutex::new(Vec::<Vec<u64>>::new()));
    let sampler = {
        let (stop, double) = (stop.clone(), double.clone());
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let serving: Vec<u64> = (1..=3)
                    .filter(|id| {
                        let addr = format!("{}:2424", ip(*id)).parse().unwrap();
                        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                    })
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

    let api = c.api(1);
    assert_eq!(
        api.call("POST", "/api/domains", Some(json!({"name": "example.org"})))
            .await
            .0,
        200
    );
    let user = json!({"address": "alice@example.org", "password_hash": "{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="});
    assert_eq!(api.call("POST", "/api/users", Some(user)).await.0, 201);

    // Load through the MX of every node.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for t in 1..=3u64 {
        let (acked, stop) = (acked.clone(), stop.clone());
        clients.push(std::thread::spawn(move || {
            let mx = format!("{}:2525", ip(t));
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
    let wait_acked = |n: usize| {
        let acked = acked.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while acked.lock().unwrap().len() < n {
                assert!(Instant::now() < deadline, "the load did not make progress");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_acked(20).await;

    // (a) kill -9 the holder: another node takes over after the lease expires.
    let killed_at = Instant::now();
    c.node(first).kill9();
    let ask = if first == 1 { 2 } else { 1 };
    let (second, epoch2) = active_holder(&c, ask, Some(first), Duration::from_secs(20)).await;
    let took = killed_at.elapsed();
    eprintln!("kill -9 of node {first}: node {second} active after {took:?} (epoch {epoch2})");
    assert!(epoch2 > epoch);
    assert!(
        took >= Duration::from_millis(1500),
        "granted before the lease expired: {took:?}"
    );
    let n = acked.lock().unwrap().len();
    wait_acked(n + 20).await;
    c.node(first).start();
    c.api(first).wait_ready(Duration::from_secs(20)).await;

    // (e) planned switchover with mailctl, to the restarted node.
    let started = Instant::now();
    let out = mailctl(&c, ask, &["failover", "--to", &format!("n{first}")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (third, epoch3) = active_holder(&c, ask, Some(second), Duration::from_secs(10)).await;
    eprintln!("switchover to node {third}: {:?}", started.elapsed());
    assert_eq!(third, first);
    assert!(epoch3 > epoch2);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("is the active mailstore"), "{text}");
    let status = mailctl(&c, ask, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("switchover requested by the operator"),
        "{text}"
    );
    // A switchover to the holder itself, or to an unknown node, is refused.
    let out = mailctl(&c, ask, &["failover", "--to", &format!("n{first}")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = mailctl(&c, ask, &["failover", "--to", "n9"]);
    assert_eq!(out.status.code(), Some(2));
    let n = acked.lock().unwrap().len();
    wait_acked(n + 20).await;

    // Drain the holder: it hands over; undrain lets it back.
    let out = mailctl(&c, ask, &["node", "drain", &first.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (fourth, _) = active_holder(&c, ask, Some(first), Duration::from_secs(10)).await;
    assert_ne!(fourth, first);
    let m = lease(&c, ask).await.unwrap();
    assert_eq!(m["drained"], json!([first]));
    let out = mailctl(&c, ask, &["node", "undrain", &first.to_string()]);
    assert!(out.status.success());
    let n = acked.lock().unwrap().len();
    wait_acked(n + 20).await;

    stop.store(true, Ordering::Relaxed);
    for cl in clients {
        cl.join().unwrap();
    }
    let samples = sampler.join().unwrap();
    let doubles = double.lock().unwrap().clone();
    assert!(
        doubles.is_empty(),
        "two nodes served LMTP at once: {doubles:?}"
    );
    assert!(samples > 100, "too few samples: {samples}");

    // Every queue drains; then stop everything and read the shared store.
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
        assert!(
            Instant::now() < deadline,
            "queues did not drain: {waiting} left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in 1..=3 {
        c.node(id).terminate(Duration::from_secs(15));
    }
    let seen = delivered(&root, "alice@example.org").await;
    let acked = acked.lock().unwrap().clone();
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
