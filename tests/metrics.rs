//! Observability with real parts: three `mailnode` processes on 127.0.81.x sharing a mailstore
//! directory (as tests/failover.rs), Debian's `promtool` and a real `prometheus` scraping them
//! with the alert rules of cluster/monitoring/.
//!
//! - every node's `/metrics` passes `promtool check metrics` and is served without the token;
//!   `/readyz` and `/readyz/mailstore` say what docs/METRICS.md says;
//! - `promtool check rules`, `promtool test rules` (the rule logic) and `check config` on the
//!   shipped files;
//! - Prometheus sees `MailstoreLost` fire after kill -9 of the mailstore holder and resolve
//!   after the failover, and `MailstoreFailover` fire; every expression of the Grafana
//!   dashboard is valid PromQL.
//!
//! The tools come from the Debian package `prometheus` (.ci/run installs it); without them the
//! tests say so and pass only if `apt-get install prometheus` fails here too.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{set_extra_config, TestCluster, Tuning};
use serde_json::Value;

const NET: u8 = 81;

fn ip(id: u64) -> String {
    format!("127.0.{NET}.{id}")
}

fn monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/monitoring")
}

/// `promtool` and `prometheus`, installing the Debian package once if they are missing.
/// `None` (the test is skipped, loudly) only when that is impossible here.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let find = || {
        let which = |name: &str| {
            ["/usr/bin", "/usr/local/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.exists())
        };
        Some((which("promtool")?, which("prometheus")?))
    };
    if let Some(t) = find() {
        return Some(t);
    }
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", "prometheus"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    match (installed, find()) {
        (true, Some(t)) => Some(t),
        _ => {
            eprintln!(
                "SKIPPED: promtool/prometheus are not installed and `apt-get install prometheus` \
                 failed: install the Debian package `prometheus` to run this test"
            );
            None
        }
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn the_shipped_rules_and_prometheus_config_pass_promtool() {
    let Some((promtool, _)) = tools() else { return };
    let dir = monitoring();
    let out = run_ok(
        Command::new(&promtool)
            .arg("check")
            .arg("rules")
            .arg(dir.join("alerts.yml")),
    );
    assert!(out.contains("SUCCESS"), "{out}");
    // The rule logic: synthetic series in, expected alerts out.
    let out = run_ok(Command::new(&promtool).current_dir(&dir).args([
        "test",
        "rules",
        "alerts_test.yml",
    ]));
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run_ok(Command::new(&promtool).current_dir(&dir).args([
        "check",
        "config",
        "--syntax-only",
        "prometheus.yml",
    ]));
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The `[mail]`, `[mailstore]` and `[failover]` sections of node `id`. The lease is long (20 s)
/// so that the outage after kill -9 outlasts MailstoreLost's `for: 10s` with room to spare.
fn node_config(id: u64, root: &Path) -> String {
    format!(
        r#"
[mail]
mx_listen = "{ip}:2525"

[mailstore]
root = "{root}"
lmtp_listen = "{ip}:2424"
create_if_missing = true

[failover]
lease_ms = 20000
renew_ms = 500
safety_margin_ms = 3000
fence_grace_ms = 500
"#,
        ip = ip(id),
        root = root.display(),
    )
}

/// A plain HTTP GET against Prometheus; the JSON body.
fn prom_get(addr: &str, path: &str) -> Option<Value> {
    let mut tcp = TcpStream::connect(addr).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The alerts Prometheus has active: (name, state, labels).
fn alerts(addr: &str) -> Vec<(String, String, Value)> {
    let Some(v) = prom_get(addr, "/api/v1/alerts") else {
        return Vec::new();
    };
    v["data"]["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                        x["state"].as_str().unwrap_or("").to_string(),
                        x["labels"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn firing(addr: &str, name: &str) -> bool {
    alerts(addr)
        .iter()
        .any(|(n, s, _)| n == name && s == "firing")
}

/// Kills Prometheus when the test ends, however it ends.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Which node serves the mailstore, by `/readyz/mailstore`.
async fn serving(c: &TestCluster) -> Vec<u64> {
    let mut out = Vec::new();
    for n in &c.nodes {
        if n.child.is_none() {
            continue;
        }
        if let Some((200, _)) = c.api(n.id).try_call("GET", "/readyz/mailstore", None).await {
            out.push(n.id);
        }
    }
    out
}

async fn wait_serving(c: &TestCluster, not: Option<u64>, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let s = serving(c).await;
        if let [one] = s.as_slice() {
            if Some(*one) != not {
                return *one;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no single node serves the mailstore within {within:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends one message through `addr` (SMTP MX) so the SMTP and queue series exist.
fn send_one(addr: &str) {
    let tcp = TcpStream::connect(addr).expect("MX reachable");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = tcp.try_clone().unwrap();
    let mut r = BufReader::new(tcp);
    // Reads one (possibly multi-line) reply.
    let mut reply = || loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "MX closed");
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return line;
        }
    };
    reply();
    for cmd in [
        "EHLO metrics.test\r\n",
        "MAIL FROM:<probe@remote.example>\r\n",
        "RCPT TO:<nobody@example.org>\r\n",
        "QUIT\r\n",
    ] {
        w.write_all(cmd.as_bytes()).unwrap();
        reply();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_the_mailstore_lost_and_found_after_kill9() {
    let Some((promtool, prometheus)) = tools() else {
        return;
    };
    let mut c = TestCluster::new(NET, 3, Tuning::default());
    let root = c.tmp.path().join("mailstore");
    for id in 1..=3 {
        set_extra_config(&c, id, &node_config(id, &root));
    }
    c.form().await;
    let holder = wait_serving(&c, None, Duration::from_secs(30)).await;
    send_one(&format!("{}:2525", ip(1)));

    // Every node: /metrics without the admin token, valid for promtool, with the catalogue.
    for id in 1..=3u64 {
        let api = c.api(id).with_token("not-the-token");
        let (status, body) = api.call("GET", "/metrics", None).await;
        assert_eq!(status, 200, "node {id}: /metrics {body}");
        let text = body.as_str().expect("text exposition").to_string();
        let mut check = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        check
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "node {id}: promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for name in [
            "mailnode_raft_term ",
            "mailnode_raft_leader_id ",
            "mailnode_raft_applied_index ",
            "mailnode_mailstore_epoch ",
            "mailnode_mailstore_role{state=\"standby\"}",
            "mailnode_queue_messages{state=\"waiting\"}",
            "mailnode_tls_certificate_expiry_timestamp_seconds{cert=\"cluster\"}",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "mailnode_listener_connections_total{listener=\"http\"}",
        ] {
            assert!(text.contains(name), "node {id}: no {name} in\n{text}");
        }
        let serving_line = format!("mailnode_mailstore_serving {}", u8::from(id == holder));
        assert!(text.contains(&serving_line), "node {id}: {serving_line}");
        if id == 1 {
            assert!(
                text.contains(r#"mailnode_smtp_rejects_total{class="5xx",reason="relay_denied",service="mx",stage="rcpt"} 1"#)
                    || text.contains(r#"reason="unknown_user",service="mx",stage="rcpt"} 1"#),
                "node 1: the refused RCPT is not counted:\n{text}"
            );
        }
        if id == holder {
            assert!(
                text.contains("mailnode_mailstore_lease_age_seconds "),
                "{text}"
            );
            assert!(text.contains("mailnode_store_messages "), "{text}");
        } else {
            assert!(!text.contains("mailnode_store_messages "), "{text}");
        }
        let (s, _) = api.call("GET", "/readyz", None).await;
        assert_eq!(s, 200, "node {id} /readyz");
        let (s, _) = api.call("GET", "/readyz/mailstore", None).await;
        assert_eq!(s, if id == holder { 200 } else { 503 }, "node {id}");
    }

    // A real Prometheus scraping the three nodes every second, with the shipped rules.
    let dir = c.tmp.path().join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(monitoring().join("alerts.yml"), dir.join("alerts.yml")).unwrap();
    let targets: Vec<String> = (1..=3).map(|id| format!("\"{}:8080\"", ip(id))).collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
         rule_files:\n  - alerts.yml\n\
         scrape_configs:\n  - job_name: mailnode\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n\
         \x20   static_configs:\n      - targets: [{targets}]\n",
        ca = c.pki.join("ca.pem").display(),
        targets = targets.join(", "),
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    run_ok(
        Command::new(&promtool)
            .arg("check")
            .arg("config")
            .arg(dir.join("prometheus.yml")),
    );
    let web = format!("{}:9090", ip(10));
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let _prom = Prometheus(
        Command::new(&prometheus)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let prom_log = || std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    // All three targets up.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = prom_get(
            &web,
            &format!(
                "/api/v1/query?query={}",
                encode("sum(up{job=\"mailnode\"})")
            ),
        )
        .and_then(|v| {
            v["data"]["result"][0]["value"][1]
                .as_str()
                .map(String::from)
        });
        if up.as_deref() == Some("3") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus does not see 3 targets up ({up:?}); its log:\n{}",
            prom_log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Every panel of the dashboard is valid PromQL against these series.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring().join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() > 20, "{} expressions", exprs.len());
    for e in &exprs {
        let v = prom_get(&web, &format!("/api/v1/query?query={}", encode(e)))
            .unwrap_or_else(|| panic!("no answer for {e}"));
        assert_eq!(v["status"], "success", "{e}: {v}");
    }
    // Before the kill: the mailstore is served, no alert about it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!firing(&web, "MailstoreLost"), "{:?}", alerts(&web));

    // kill -9 the holder: no node serves for about a lease (20 s); MailstoreLost fires.
    let killed = Instant::now();
    c.node(holder).kill9();
    let deadline = killed + Duration::from_secs(40);
    while !firing(&web, "MailstoreLost") {
        assert!(
            serving(&c).await.is_empty() || killed.elapsed() < Duration::from_secs(2),
            "the failover ended before the alert fired: {:?}",
            alerts(&web)
        );
        assert!(
            Instant::now() < deadline,
            "MailstoreLost did not fire: {:?}\n{}",
            alerts(&web),
            prom_log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let fired = killed.elapsed();
    // The failover: another node serves, and the alert resolves.
    let next = wait_serving(&c, Some(holder), Duration::from_secs(60)).await;
    let served = killed.elapsed();
    let deadline = Instant::now() + Duration::from_secs(20);
    while firing(&web, "MailstoreLost") || alerts(&web).iter().any(|(n, _, _)| n == "MailstoreLost")
    {
        assert!(
            Instant::now() < deadline,
            "MailstoreLost did not resolve after node {next} took over: {:?}",
            alerts(&web)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let resolved = killed.elapsed();
    eprintln!(
        "kill -9 of node {holder}: MailstoreLost firing after {fired:?}, node {next} serving after {served:?}, resolved after {resolved:?}"
    );
    // The grant was counted by the leader: the info alert says a failover happened, and why.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = alerts(&web)
            .into_iter()
            .find(|(n, s, _)| n == "MailstoreFailover" && s == "firing");
        if let Some((_, _, labels)) = found {
            assert_eq!(labels["reason"], "expired", "{labels}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "MailstoreFailover did not fire: {:?}",
            alerts(&web)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The new holder's own figures.
    let (_, body) = c.api(next).call("GET", "/metrics", None).await;
    let text = body.as_str().unwrap_or_default().to_string();
    assert!(text.contains("mailnode_mailstore_serving 1"), "{text}");
    assert!(
        text.contains("mailnode_mailstore_role{state=\"active\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("mailnode_mailstore_activations_total{result=\"ok\"} 1"),
        "{text}"
    );
}
