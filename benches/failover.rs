//! Failover figures (issue 5): on three real nodes sharing one store directory, with the default
//! lease timings (lease 3 s, renew 0.5 s, margin 1 s), under a steady SMTP load through every
//! node:
//! - unplanned: time from kill -9 of the holder to the first successful IMAP LOGIN on the new
//!   holder (there is no virtual IP yet: the client tries every node's IMAP port, as a client
//!   behind a load balancer would);
//! - planned: time from `POST /api/mailstore/switchover` to the first successful IMAP LOGIN on
//!   the new holder;
//! - messages lost or duplicated: every SMTP `250` checked in the store afterwards;
//! - double service: every node's LMTP greeting sampled every 5 ms (never two).
//!
//! `cargo bench --bench failover` runs 20 rounds of each; `-- --quick` runs 3. The nodes are
//! the test harness's (`tests/common`), on 127.0.203.x.

#[path = "../tests/common/mod.rs"]
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

const NET: u8 = 203;
const USER: &str = "bench@example.org";
const PASSWORD: &str = "failover-bench-pass";

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
imap_listen = "{ip}:2143"
allow_plaintext_login = true
create_if_missing = true

[failover]
"#,
        ip = ip(id),
        root = root.display(),
        spool = spool.display(),
    )
}

/// One line from `r`, or an error after the socket's read timeout.
fn line(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut l = String::new();
    if r.read_line(&mut l)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(l)
}

/// A full IMAP login on `id`'s IMAP port: greeting, LOGIN, tagged OK.
fn imap_login(id: u64) -> bool {
    let Ok(addr) = format!("{}:2143", ip(id)).parse() else {
        return false;
    };
    let Ok(tcp) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
    let Ok(mut w) = tcp.try_clone() else {
        return false;
    };
    let mut r = BufReader::new(tcp);
    if !line(&mut r).is_ok_and(|g| g.starts_with("* OK")) {
        return false;
    }
    if w.write_all(format!("a LOGIN {USER} {PASSWORD}\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    loop {
        match line(&mut r) {
            Ok(l) if l.starts_with("a OK") => {
                let _ = w.write_all(b"b LOGOUT\r\n");
                return true;
            }
            Ok(l) if l.starts_with("a ") => return false,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

/// The first node (other than `not`) that accepts an IMAP login, and when.
fn first_login(not: Option<u64>, within: Duration) -> Option<(u64, Instant)> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        for id in 1..=3 {
            if Some(id) != not && imap_login(id) {
                return Some((id, Instant::now()));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn greets(addr: &str) -> bool {
    let Ok(addr) = addr.parse() else { return false };
    let Ok(tcp) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(300)));
    let mut r = BufReader::new(tcp);
    line(&mut r).is_ok_and(|l| l.starts_with("220"))
}

fn send(addr: &str, tag: &str) -> std::io::Result<bool> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = tcp.try_clone()?;
    let mut r = BufReader::new(tcp);
    let mut reply = || -> std::io::Result<String> {
        loop {
            let l = line(&mut r)?;
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return Ok(l);
            }
        }
    };
    reply()?;
    for s in [
        "EHLO bench.example\r\n".to_string(),
        "MAIL FROM:<load@remote.example>\r\n".to_string(),
        format!("RCPT TO:<{USER}>\r\n"),
        "DATA\r\n".to_string(),
    ] {
        w.write_all(s.as_bytes())?;
        let rep = reply()?;
        if !(rep.starts_with('2') || rep.starts_with('3')) {
            return Ok(false);
        }
    }
    let body = format!("Subject: load {tag}\r\nX-Test-Id: {tag}\r\n\r\nmessage {tag}\r\n.\r\n");
    w.write_all(body.as_bytes())?;
    Ok(reply()?.starts_with("250"))
}

async fn holder(c: &TestCluster, ask: u64) -> Option<(u64, u64)> {
    let (s, v): (u16, Value) = c.api(ask).try_call("GET", "/api/status", None).await?;
    let m = &v["mailstore"];
    let epoch = m["epoch"].as_u64()?;
    (s == 200 && m["active_epoch"].as_u64() == Some(epoch))
        .then(|| m["holder"].as_u64().map(|h| (h, epoch)))
        .flatten()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "{name:<34} {:>3} runs   p50 {:>6.2} s   max {:>6.2} s",
        v.len(),
        percentile(&v, 0.5).as_secs_f64(),
        v.last().copied().unwrap_or_default().as_secs_f64()
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds: usize = std::env::var("FAILOVER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 3 } else { 20 });
    let mut c = TestCluster::new(NET, 3, Tuning::default());
    let root = c.tmp.path().join("mailstore");
    for id in 1..=3 {
        let spool = c.nodes[(id - 1) as usize].data_dir().join("spool");
        set_extra_config(&c, id, &node_config(id, &root, &spool));
    }
    c.form().await;
    let api = c.api(1);
    api.call("POST", "/api/domains", Some(json!({"name": "example.org"})))
        .await;
    let (s, v) = api
        .call(
            "POST",
            "/api/users",
            Some(json!({"address": USER, "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let start = Instant::now();
    while first_login(None, Duration::from_secs(1)).is_none() {
        assert!(start.elapsed() < Duration::from_secs(30), "no IMAP service");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let doubles = Arc::new(Mutex::new(0u64));
    let sampler = {
        let (stop, doubles) = (stop.clone(), doubles.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let serving = (1..=3)
                    .filter(|id| greets(&format!("{}:2424", ip(*id))))
                    .count();
                if serving > 1 {
                    *doubles.lock().unwrap() += 1;
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            n
        })
    };
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut load = Vec::new();
    for t in 1..=3u64 {
        let (acked, stop) = (acked.clone(), stop.clone());
        load.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let tag = format!("{t}-{n}");
                n += 1;
                if let Ok(true) = send(&format!("{}:2525", ip(t)), &tag) {
                    acked.lock().unwrap().push(tag);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }));
    }

    let mut unplanned = Vec::new();
    let mut planned = Vec::new();
    for round in 0..rounds {
        // Unplanned: kill -9 the holder.
        let ask = |not: u64| if not == 1 { 2 } else { 1 };
        let (h, _) = loop {
            if let Some(x) = holder(&c, 1).await {
                break x;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let killed = Instant::now();
        c.node(h).kill9();
        let (new, at) =
            tokio::task::spawn_blocking(move || first_login(Some(h), Duration::from_secs(30)))
                .await
                .unwrap()
                .expect("no IMAP login within 30 s after kill -9");
        unplanned.push(at - killed);
        eprintln!(
            "round {round}: kill -9 of node {h}: node {new} takes IMAP logins after {:.2} s",
            (at - killed).as_secs_f64()
        );
        c.node(h).start();
        c.api(h).wait_ready(Duration::from_secs(30)).await;
        // Planned: switchover to the restarted node.
        let requested = Instant::now();
        let (s, v) = c
            .api(ask(h))
            .call("POST", "/api/mailstore/switchover", Some(json!({"to": h})))
            .await;
        assert_eq!(s, 200, "switchover: {v}");
        let (to, at) =
            tokio::task::spawn_blocking(move || first_login(Some(new), Duration::from_secs(30)))
                .await
                .unwrap()
                .expect("no IMAP login within 30 s after a switchover");
        planned.push(at - requested);
        eprintln!(
            "round {round}: switchover {new} → {to}: IMAP logins after {:.2} s",
            (at - requested).as_secs_f64()
        );
    }

    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.join().unwrap();
    }
    let samples = sampler.join().unwrap();
    // Queues drain, then the store is read with every node stopped.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut waiting = 0;
        for id in 1..=3 {
            if let Some((200, v)) = c.api(id).try_call("GET", "/api/status", None).await {
                waiting += v["queue"]["messages"].as_u64().unwrap_or(0);
            }
        }
        if waiting == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in 1..=3 {
        c.node(id).terminate(Duration::from_secs(15));
    }
    let store = Store::open(&root, StoreConfig::default()).unwrap();
    let mb = store.open_mailbox(USER, "INBOX").await.unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in mb.snapshot().unwrap().messages.iter() {
        let text = String::from_utf8_lossy(&mb.fetch(m.uid).await.unwrap()).into_owned();
        if let Some(id) = text.lines().find_map(|l| l.strip_prefix("X-Test-Id: ")) {
            *seen.entry(id.trim().to_string()).or_insert(0) += 1;
        }
    }
    let acked = acked.lock().unwrap().clone();
    let lost = acked.iter().filter(|t| !seen.contains_key(*t)).count();
    let dups = seen.values().filter(|n| **n > 1).count();
    let doubles = *doubles.lock().unwrap();

    println!();
    println!("Failover figures: 3 nodes, lease 3 s / renew 0.5 s / margin 1 s (defaults), SMTP load on every node");
    println!(
        "{}",
        summary("kill -9 → first IMAP LOGIN", unplanned.clone())
    );
    println!(
        "{}",
        summary("switchover → first IMAP LOGIN", planned.clone())
    );
    println!(
        "messages: {} acknowledged, {lost} lost, {dups} delivered twice",
        acked.len()
    );
    println!("double service: {doubles} of {samples} samples of every node's LMTP greeting");
    let mut u = unplanned;
    u.sort();
    let mut p = planned;
    p.sort();
    println!(
        "goals: unplanned p50 < 5 s: {}; planned p50 < 2 s: {}; zero lost: {}; zero double service: {}",
        if percentile(&u, 0.5) < Duration::from_secs(5) { "met" } else { "NOT met" },
        if percentile(&p, 0.5) < Duration::from_secs(2) { "met" } else { "NOT met" },
        if lost == 0 && dups == 0 { "met" } else { "NOT met" },
        if doubles == 0 { "met" } else { "NOT met" },
    );
}
