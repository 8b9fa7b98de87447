//! Test harness: real `mailnode` processes on 127.0.N.x, a cluster PKI, and an HTTPS client for
//! the admin API. Each test picks its own 127.0.N.0/24 so tests can run in parallel and
//! firewall rules (partitions) only touch that test's nodes.
#![allow(dead_code)]

pub mod ctl;
pub mod daemons;
pub mod dns;
pub mod line;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::net::TcpStream;

pub const TOKEN: &str = "test-admin-token-0123456789abcdef";

/// A node process and its files.
pub struct NodeProc {
    pub id: u64,
    pub ip: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub child: Option<Child>,
    /// Extra environment for the process (e.g. libfaketime's), set before `start`.
    pub env: Vec<(String, String)>,
}

impl NodeProc {
    pub fn raft_addr(&self) -> String {
        format!("{}:7400", self.ip)
    }
    pub fn api_addr(&self) -> String {
        format!("{}:8080", self.ip)
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mailnode"))
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info,openraft=warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn mailnode");
        self.child = Some(child);
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
    }

    /// kill -9, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait for the exit (bounded).
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let mut c = self.child.take().unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!(
                    "node {} did not exit within {within:?} after SIGTERM",
                    self.id
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGCONT,
            );
        }
        self.kill9();
    }
}

/// Extra `[cluster]` settings for a test.
#[derive(Clone)]
pub struct Tuning {
    pub snapshot_every: u64,
    pub keep_after_snapshot: u64,
    pub write_timeout_ms: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            snapshot_every: 10_000,
            keep_after_snapshot: 1_000,
            write_timeout_ms: 3_000,
        }
    }
}

pub struct TestCluster {
    pub tmp: tempfile::TempDir,
    pub net: u8,
    pub nodes: Vec<NodeProc>,
    pub pki: PathBuf,
    pub tuning: Tuning,
}

/// Where a node's configuration points.
pub struct Files<'a> {
    pub data: &'a Path,
    pub pki: &'a Path,
    pub token: &'a Path,
}

pub fn write_config(path: &Path, id: u64, ip: &str, files: &Files, bootstrap: bool, t: &Tuning) {
    let (data, pki, token) = (files.data, files.pki, files.token);
    let cfg = format!(
        r#"[node]
id = {id}
name = "n{id}"
data_dir = "{data}"

[cluster]
listen = "{ip}:7400"
ca_file = "{pki}/ca.pem"
cert_file = "{pki}/n{id}.pem"
key_file = "{pki}/n{id}.key"
bootstrap = {bootstrap}
snapshot_every = {se}
keep_after_snapshot = {keep}
write_timeout_ms = {wt}

[http]
listen = "{ip}:8080"
admin_token_file = "{token}"

[shutdown]
grace_secs = 3
"#,
        data = data.display(),
        pki = pki.display(),
        token = token.display(),
        se = t.snapshot_every,
        keep = t.keep_after_snapshot,
        wt = t.write_timeout_ms,
    );
    std::fs::write(path, cfg).unwrap();
}

/// The `[mail]`, `[queue]` and (with `store`) `[mailstore]` sections for a node on `ip`: MX on
/// `ip:2525`, local mail over LMTP to `ip:2424`, and a store created at `store` if missing.
/// `queue` holds extra `[queue]` lines (e.g. `dns_servers`). Append it to the node's config.
pub fn mail_config(ip: &str, store: Option<&Path>, queue: &str) -> String {
    let mut cfg = format!(
        r#"
[mail]
mx_listen = "{ip}:2525"
lmtp_addr = "{ip}:2424"

[queue]
{queue}
"#
    );
    if let Some(root) = store {
        cfg.push_str(&format!(
            r#"
[mailstore]
root = "{}"
lmtp_listen = "{ip}:2424"
create_if_missing = true
"#,
            root.display()
        ));
    }
    cfg
}

/// Configures node 1 of `c` as a one-node mail store for the protocol tests: [`mail_config`]
/// (MX, LMTP, a store at `<node dir>/mailstore`, `queue` lines), then `mailstore` lines added
/// to its `[mailstore]` section (listeners, login policy), an `[smtp]` spool folder (created),
/// and `sections` (whole sections such as `[pop3]`).
pub fn configure_store_node(c: &TestCluster, queue: &str, mailstore: &str, sections: &str) {
    let n = &c.nodes[0];
    let spool = n.data_dir().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let mut extra = mail_config(&n.ip, Some(&n.dir.join("mailstore")), queue);
    // `mail_config` ends inside `[mailstore]`: these lines extend that section.
    extra.push_str(mailstore);
    extra.push_str(&format!(
        "\n[smtp]\nspool_dir = \"{}\"\n\n{sections}",
        spool.display()
    ));
    set_extra_config(c, 1, &extra);
}

/// Rewrites a node's config as `write_config` made it, plus `extra` (e.g. [`mail_config`]).
pub fn set_extra_config(c: &TestCluster, id: u64, extra: &str) {
    let n = &c.nodes[(id - 1) as usize];
    let data = n.data_dir();
    let token = c.tmp.path().join("admin.token");
    let files = Files {
        data: &data,
        pki: &c.pki,
        token: &token,
    };
    write_config(&n.config, id, &n.ip, &files, id == 1, &c.tuning);
    let mut cfg = std::fs::read_to_string(&n.config).unwrap();
    cfg.push_str(extra);
    std::fs::write(&n.config, cfg).unwrap();
}

impl TestCluster {
    /// Prepares `n` nodes on 127.0.`net`.1..=n (not started). Node 1 bootstraps.
    pub fn new(net: u8, n: u64, tuning: Tuning) -> TestCluster {
        let tmp = tempfile::tempdir().unwrap();
        let pki = tmp.path().join("pki");
        std::fs::create_dir_all(&pki).unwrap();
        let ca = mailnode::tls::generate_ca("test cluster CA").unwrap();
        ca.write_bundle(&pki, "ca").unwrap();
        let token = tmp.path().join("admin.token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        let mut nodes = Vec::new();
        for id in 1..=n {
            let ip = format!("127.0.{net}.{id}");
            mailnode::tls::issue_node_cert(
                &ca.cert_pem,
                &ca.key_pem,
                &format!("n{id}"),
                std::slice::from_ref(&ip),
            )
            .unwrap()
            .write_bundle(&pki, &format!("n{id}"))
            .unwrap();
            let dir = tmp.path().join(format!("n{id}"));
            std::fs::create_dir_all(&dir).unwrap();
            let config = dir.join("mailnode.toml");
            let data = dir.join("data");
            let files = Files {
                data: &data,
                pki: &pki,
                token: &token,
            };
            write_config(&config, id, &ip, &files, id == 1, &tuning);
            nodes.push(NodeProc {
                id,
                ip,
                dir,
                config,
                child: None,
                env: Vec::new(),
            });
        }
        TestCluster {
            tmp,
            net,
            nodes,
            pki,
            tuning,
        }
    }

    pub fn node(&mut self, id: u64) -> &mut NodeProc {
        &mut self.nodes[(id - 1) as usize]
    }

    pub fn api(&self, id: u64) -> Api {
        Api::new(
            &self.nodes[(id - 1) as usize].api_addr(),
            &self.pki.join("ca.pem"),
        )
    }

    /// Starts every node and joins nodes 2..=n through node 1.
    pub async fn form(&mut self) {
        for n in &mut self.nodes {
            n.start();
        }
        let a1 = self.api(1);
        a1.wait_ready(Duration::from_secs(20)).await;
        for i in 1..self.nodes.len() {
            let n = &self.nodes[i];
            let body = serde_json::json!({"id": n.id, "name": format!("n{}", n.id), "raft_addr": n.raft_addr(), "api_addr": n.api_addr()});
            // The node may still be starting (a loaded machine): retry while it is unreachable.
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let (s, v) = a1.call("POST", "/api/nodes", Some(body.clone())).await;
                let starting = s == 409 && v.to_string().contains("cannot reach node");
                if starting && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                assert_eq!(s, 200, "adding node {}: {v}", n.id);
                break;
            }
        }
    }

    /// The current leader as node 1..n report it (asking each reachable node).
    pub async fn leader(&self) -> Option<u64> {
        for i in 1..=self.nodes.len() as u64 {
            if self.nodes[(i - 1) as usize].child.is_none() {
                continue;
            }
            if let Some((200, v)) = self.api(i).try_call("GET", "/api/status", None).await {
                if let Some(l) = v["leader"].as_u64() {
                    return Some(l);
                }
            }
        }
        None
    }
}

/// A tiny HTTPS client for the admin API.
#[derive(Clone)]
pub struct Api {
    pub addr: String,
    tls: Arc<rustls::ClientConfig>,
    token: String,
}

impl Api {
    pub fn new(addr: &str, ca: &Path) -> Api {
        Api {
            addr: addr.to_string(),
            tls: mailnode::tls::client_config_trusting(ca).unwrap(),
            token: TOKEN.to_string(),
        }
    }

    pub fn with_token(mut self, token: &str) -> Api {
        self.token = token.to_string();
        self
    }

    /// One request; `None` when the node cannot be reached (or does not answer within 10 s).
    pub async fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        let fut = async {
            let tcp = TcpStream::connect(&self.addr).await.ok()?;
            let host = self.addr.rsplit_once(':').unwrap().0.to_string();
            let name = rustls_pki_types::ServerName::try_from(host).ok()?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .ok()?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .ok()?;
            tokio::spawn(conn);
            let body = body.map(|b| b.to_string()).unwrap_or_default();
            let req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", &self.addr)
                .header("authorization", format!("Bearer {}", self.token))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let resp = sender.send_request(req).await.ok()?;
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.ok()?.to_bytes();
            let v = serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
            Some((status, v))
        };
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .ok()
            .flatten()
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|| panic!("{} unreachable for {method} {path}", self.addr))
    }

    /// Creates `domain` and the `(address, password)` users in it; panics unless each is
    /// created.
    pub async fn add_users(&self, domain: &str, users: &[(&str, &str)]) {
        let (s, v) = self
            .call(
                "POST",
                "/api/domains",
                Some(serde_json::json!({ "name": domain })),
            )
            .await;
        assert_eq!(s, 200, "adding domain {domain}: {v}");
        for (address, password) in users {
            let body = serde_json::json!({ "address": address, "password": password });
            let (s, v) = self.call("POST", "/api/users", Some(body)).await;
            assert_eq!(s, 201, "adding user {address}: {v}");
        }
    }

    /// Waits until the node answers /readyz with 200.
    pub async fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some((200, _)) = self.try_call("GET", "/readyz", None).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within {within:?}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `path` until `pred` holds.
    pub async fn wait_for(
        &self,
        path: &str,
        within: Duration,
        pred: impl Fn(u16, &Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some((s, v)) = self.try_call("GET", path, None).await {
                if pred(s, &v) {
                    return v;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{}: GET {path} never satisfied the condition within {within:?}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Drops traffic between two IPs in both directions while alive (iptables on the loopback).
pub struct Cut {
    rules: Vec<(String, String)>,
}

impl Cut {
    pub fn between(groups_a: &[&str], groups_b: &[&str]) -> Cut {
        let mut rules = Vec::new();
        for a in groups_a {
            for b in groups_b {
                rules.push((a.to_string(), b.to_string()));
                rules.push((b.to_string(), a.to_string()));
            }
        }
        for (s, d) in &rules {
            let ok = Command::new("iptables").args(["-I", "INPUT", "-s", s, "-d", d, "-j", "DROP"]).status().expect("iptables is needed for partition tests (apt-get install iptables; run as root)");
            assert!(
                ok.success(),
                "iptables -I failed: partition tests need root"
            );
        }
        Cut { rules }
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        for (s, d) in &self.rules {
            let _ = Command::new("iptables")
                .args(["-D", "INPUT", "-s", s, "-d", d, "-j", "DROP"])
                .status();
        }
    }
}
