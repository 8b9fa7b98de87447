//! Anti-UBE filtering inside the SMTP transaction of a real node: the policy set through the
//! admin API (replicated like the directory), DNS from a real `dnsmasq` serving a test DNSBL
//! zone and SPF records, clients on distinct loopback addresses, and the mailboxes read from
//! the store after the node stopped.
//!
//! Covers: DNSBL refusal at RCPT (`554 5.7.1 … blocked using bl.test`) and a lower-weight list
//! only adding to the score, a list whose DNS never answers (`451 4.7.1` with
//! `on_error = "tempfail"`), SPF fail refused at MAIL FROM (`550 5.7.23`) and softfail scored,
//! header_checks REJECT with its text, body_checks DISCARD (claimed, kept nowhere), GTUBE
//! refused as spam, a scoring rule tagging a message (delivered to Junk with `X-Spam-Flag`),
//! ham delivered to INBOX with `Received-SPF`, `Authentication-Results` and `X-Spam-Status`,
//! the allowlist, pregreet, the per-IP connection limit, greylisting, a bad map refused with
//! its name and line (the previous policy stays in force), the decision metrics and events.
//!
//! The scanners (second test), with real daemons from `common::daemons`: clamd refusing EICAR
//! in a base64 attachment at the end of DATA (`554 5.7.1 virus found: …`) from every client,
//! allowlisted ones too, and passing clean mail; clamd down giving `451 4.7.1` with
//! `on_error = "tempfail"` and acceptance with `"skip"`; spamd's score (weight 1) tagging
//! GTUBE into Junk (our own GTUBE score set to 0); spamd down skipped; their metrics.
//!
//! Addresses: 127.0.92.0/24 for the first test (.1 the node and dnsmasq; clients bind
//! .20–.30), 127.0.93.0/24 for the second (.1 the node and dnsmasq, .2 clamd, .3 spamd; clients
//! .21 and the allowlisted .30). Needs the Debian packages dnsmasq-base, clamav-daemon and
//! spamassassin (the second test skips, saying so, when clamd or spamd is not installed).

mod common;
#[allow(dead_code)]
#[path = "queue/servers.rs"]
mod servers;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::daemons::{eicar_mail, Clamd, Spamd, EICAR_FOUND};
use common::{TestCluster, Tuning};
use mailnode::store::{Store, StoreConfig};
use serde_json::{json, Value};
use servers::dnsmasq;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpSocket;

/// The first test's network.
const NET: u8 = 92;
/// The scanner test's network: the node and dnsmasq on .1, clamd .2, spamd .3.
const SCAN_NET: u8 = 93;

/// A line-oriented SMTP client bound to a chosen source address.
struct Client {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Client {
    /// Connects from 127.0.`net`.`from` to the node's MX on 127.0.`net`.1 without reading the
    /// greeting.
    async fn open(net: u8, from: u8) -> Client {
        let sock = TcpSocket::new_v4().unwrap();
        let local: SocketAddr = format!("127.0.{net}.{from}:0").parse().unwrap();
        sock.bind(local).unwrap();
        let server: SocketAddr = format!("127.0.{net}.1:2525").parse().unwrap();
        let tcp = sock.connect(server).await.unwrap();
        let (r, w) = tcp.into_split();
        Client {
            r: BufReader::new(r),
            w,
        }
    }

    /// Connects and reads the greeting, which must be 220.
    async fn connect(net: u8, from: u8) -> Client {
        let mut c = Client::open(net, from).await;
        let g = c.reply().await;
        assert!(g.starts_with("220"), "greeting: {g}");
        c
    }

    /// One (possibly multi-line) reply; empty when the server closed.
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(20), self.r.read_line(&mut line))
                .await
                .expect("reply within 20 s")
                .unwrap_or(0);
            if n == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    /// Sends a message (LF or CRLF line ends) after DATA's 354 and returns the final reply.
    async fn data(&mut self, message: &str) -> String {
        let r = self.cmd("DATA").await;
        assert!(r.starts_with("354"), "DATA: {r}");
        let mut text = message.replace("\r\n", "\n").replace('\n', "\r\n");
        if !text.ends_with("\r\n") {
            text.push_str("\r\n");
        }
        self.w.write_all(text.as_bytes()).await.unwrap();
        self.w.write_all(b".\r\n").await.unwrap();
        self.reply().await
    }
}

/// What one transaction got: MAIL's reply, RCPT's, and DATA's (when it got that far).
#[derive(Debug)]
struct Outcome {
    mail: String,
    rcpt: String,
    data: Option<String>,
}

async fn send(net: u8, from: u8, helo: &str, sender: &str, rcpt: &str, message: &str) -> Outcome {
    let mut c = Client::connect(net, from).await;
    let r = c.cmd(&format!("EHLO {helo}")).await;
    assert!(r.starts_with("250"), "EHLO: {r}");
    let mail = c.cmd(&format!("MAIL FROM:<{sender}>")).await;
    if !mail.starts_with("250") {
        return Outcome {
            mail,
            rcpt: String::new(),
            data: None,
        };
    }
    let rcpt = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
    if !rcpt.starts_with("250") {
        return Outcome {
            mail,
            rcpt,
            data: None,
        };
    }
    let data = Some(c.data(message).await);
    c.cmd("QUIT").await;
    Outcome { mail, rcpt, data }
}

fn msg(from: &str, subject: &str, body: &str) -> String {
    format!(
        "From: {from}\nTo: alice@example.org\nSubject: {subject}\nMessage-ID: <{}@remote.test>\nDate: {}\n\n{body}\n",
        subject.replace(' ', "-"),
        now_date(),
    )
}

/// The current time as an RFC 5322 date: spamd scores dates far in the past.
fn now_date() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-R"])
        .output()
        .expect("run date(1)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// The settings of the test policy; `extra` is appended (later keys of a table must not
/// repeat earlier ones, so the variable parts are passed in).
fn settings(connection: &str, greylist: bool, dead_list: bool) -> String {
    let dead = if dead_list {
        "[[dnsbl.lists]]\nzone = \"dead.test\"\nweight = 1.0\non_error = \"tempfail\"\n"
    } else {
        ""
    };
    format!(
        r#"
[connection]
allow_networks = ["127.0.{NET}.30"]
{connection}

[dns]
servers = ["127.0.{NET}.1:5353"]
timeout_ms = 1000

[dnsbl]
reject_score = 1.0
cache_ttl_s = 1

[[dnsbl.lists]]
zone = "bl.test"
weight = 1.0
codes = ["127.0.0.2-127.0.0.11"]

[[dnsbl.lists]]
zone = "low.test"
weight = 0.5

{dead}
[spf]
on_fail = "reject"
softfail_score = 2.0

[greylist]
enabled = {greylist}
delay_s = 1
retry_window_s = 60

[content]
header_checks = "regexp:hc"
body_checks = "pcre:bc"
tag_score = 5.0
reject_score = 15.0

[[content.rules]]
name = "CHEAP_PILLS"
target = "body"
pattern = "cheap pills"
score = 6.0
"#
    )
}

const HEADER_CHECKS: &str =
    "# header checks of the test\n/^Subject:.*win a prize/ REJECT no prizes here\n";
const BODY_CHECKS: &str = "/^discard-me$/ DISCARD\n";

/// The version of the policy the node has in force.
async fn in_force(api: &common::Api) -> u64 {
    let (status, body) = api.call("GET", "/api/policy", None).await;
    assert_eq!(status, 200, "{body}");
    body["in_force_version"].as_u64().unwrap_or(0)
}

/// Stores the settings and waits until the node enforces them.
async fn set_settings(api: &common::Api, text: &str) {
    let (status, body) = api
        .call("PUT", "/api/policy", Some(json!({ "settings": text })))
        .await;
    assert_eq!(status, 200, "{body}");
    let version = body["version"].as_u64().expect("version in the answer");
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_force(api).await < version {
        assert!(Instant::now() < deadline, "policy {version} not in force");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn put_map(api: &common::Api, name: &str, text: &str) -> (u16, Value) {
    api.call(
        "PUT",
        &format!("/api/policy/maps/{name}"),
        Some(json!({ "text": text })),
    )
    .await
}

/// Messages in one mailbox, as text.
async fn mailbox(store: &Store, user: &str, name: &str) -> Vec<String> {
    let Ok(mb) = store.open_mailbox(user, name).await else {
        return Vec::new();
    };
    let snap = mb.snapshot().unwrap();
    let mut out = Vec::new();
    for m in snap.messages.iter() {
        let bytes = mb.fetch(m.uid).await.unwrap();
        out.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    out
}

fn subject(m: &str) -> &str {
    m.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or("")
        .trim()
}

/// Prints the end of the node's log when the test fails.
struct ShowLogOnPanic(std::path::PathBuf);

impl Drop for ShowLogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            for line in tail.iter().rev() {
                eprintln!("node: {line}");
            }
        }
    }
}

/// A started one-node cluster on 127.0.`net`.1: MX on port 2525, the mailstore (with its LMTP)
/// on the same node, domain example.org with the user alice.
struct MailNode {
    // First, so that it reads the log before the cluster's folder is removed.
    _log: ShowLogOnPanic,
    c: TestCluster,
    api: common::Api,
    /// The mailstore's root.
    root: std::path::PathBuf,
}

impl MailNode {
    async fn start(mut c: TestCluster) -> MailNode {
        let ip = format!("127.0.{}.1", c.net);
        let n = &c.nodes[0];
        let root = n.dir.join("mailstore");
        let extra = format!(
            r#"
[mail]
mx_listen = "{ip}:2525"
lmtp_addr = "{ip}:2424"

[mailstore]
root = "{root}"
lmtp_listen = "{ip}:2424"
create_if_missing = true

[queue]
lmtp_retry_ms = 200
backoff_min_ms = 100
backoff_max_ms = 500
"#,
            root = root.display(),
        );
        let mut cfg = std::fs::read_to_string(&n.config).unwrap();
        cfg.push_str(&extra);
        std::fs::write(&n.config, cfg).unwrap();
        c.node(1).start();
        let log = ShowLogOnPanic(c.nodes[0].dir.join("log"));
        let api = c.api(1);
        api.wait_ready(Duration::from_secs(20)).await;
        let (status, body) = api
            .call("POST", "/api/domains", Some(json!({"name": "example.org"})))
            .await;
        assert_eq!(status, 200, "{body}");
        let u = json!({"address": "alice@example.org", "password_hash": "{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="});
        assert_eq!(api.call("POST", "/api/users", Some(u)).await.0, 201);
        MailNode {
            _log: log,
            c,
            api,
            root,
        }
    }

    /// The node's /metrics text.
    async fn metrics(&self) -> String {
        let (status, metrics) = self.api.call("GET", "/metrics", None).await;
        assert_eq!(status, 200);
        metrics.as_str().unwrap_or_default().to_string()
    }

    /// Waits until the queue has delivered everything, stops the node and opens its store.
    async fn stop(&mut self) -> Store {
        let data = self.c.nodes[0].data_dir();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::read_dir(data.join("queue")).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".msg"))
        }) {
            assert!(Instant::now() < deadline, "queue not drained");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = self.c.node(1).terminate(Duration::from_secs(15));
        assert!(status.success(), "{status:?}");
        Store::open(&self.root, StoreConfig::default()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtering_inside_the_smtp_transaction() {
    let c = TestCluster::new(NET, 1, Tuning::default());
    let ip = format!("127.0.{NET}.1");
    let _dns = dnsmasq(
        &ip,
        &[
            // Client .20 is on bl.test; .21 only on low.test (which adds to the score).
            format!("--host-record=20.{NET}.0.127.bl.test,127.0.0.2"),
            format!("--host-record=21.{NET}.0.127.low.test,127.0.0.3"),
            // dead.test is forwarded to a server that never answers.
            format!("--server=/dead.test/127.0.{NET}.1#5399"),
            // No quotes: there is no shell, and dnsmasq would keep them in the record.
            format!("--txt-record=pass.test,v=spf1 ip4:127.0.{NET}.0/24 -all"),
            "--txt-record=fail.test,v=spf1 -all".into(),
            "--txt-record=soft.test,v=spf1 ~all".into(),
        ],
    );
    let mut node = MailNode::start(c).await;
    let api = &node.api;

    // The maps first (settings may only name stored maps), then the settings.
    assert_eq!(put_map(api, "hc", HEADER_CHECKS).await.0, 200);
    assert_eq!(put_map(api, "bc", BODY_CHECKS).await.0, 200);
    set_settings(api, &settings("", false, false)).await;

    // A listed client: refused at RCPT, naming the list.
    let o = send(
        NET,
        20,
        "bot.remote.test",
        "a@pass.test",
        "alice@example.org",
        "x",
    )
    .await;
    assert!(o.mail.starts_with("250"), "{o:?}");
    assert!(
        o.rcpt.starts_with("554 5.7.1") && o.rcpt.contains("bl.test"),
        "{o:?}"
    );

    // SPF fail: refused at MAIL FROM.
    let o = send(
        NET,
        21,
        "mx.fail.test",
        "x@fail.test",
        "alice@example.org",
        "x",
    )
    .await;
    assert!(o.mail.starts_with("550 5.7.23"), "{o:?}");

    // GTUBE: refused as spam.
    let o = send(
        NET,
        21,
        "mx.pass.test",
        "s@pass.test",
        "alice@example.org",
        &msg("s@pass.test", "gtube", GTUBE),
    )
    .await;
    let d = o.data.unwrap_or_default();
    assert!(d.starts_with("550 5.7.1") && d.contains("spam"), "{d}");

    // header_checks REJECT with its text.
    let o = send(
        NET,
        21,
        "mx.pass.test",
        "s@pass.test",
        "alice@example.org",
        &msg("s@pass.test", "you win a prize", "hello"),
    )
    .await;
    let d = o.data.unwrap_or_default();
    assert!(d.starts_with("550 5.7.1 no prizes here"), "{d}");

    // body_checks DISCARD: 250, kept nowhere.
    let o = send(
        NET,
        21,
        "mx.pass.test",
        "s@pass.test",
        "alice@example.org",
        &msg("s@pass.test", "discarded", "discard-me"),
    )
    .await;
    assert!(o.data.unwrap_or_default().starts_with("250"));

    // Tagged: rule (6) + softfail (2) + low.test (0.5) = 8.5 ≥ 5: delivered to Junk.
    let o = send(
        NET,
        21,
        "mx.soft.test",
        "s@soft.test",
        "alice@example.org",
        &msg("s@soft.test", "pills", "cheap pills here"),
    )
    .await;
    assert!(o.data.unwrap_or_default().starts_with("250"));

    // Ham: delivered to INBOX with the filter's fields.
    let o = send(
        NET,
        21,
        "mx.pass.test",
        "friend@pass.test",
        "alice@example.org",
        &msg("friend@pass.test", "hello alice", "see you soon"),
    )
    .await;
    assert!(o.data.unwrap_or_default().starts_with("250"));

    // The allowlisted client skips the checks (GTUBE passes).
    let o = send(
        NET,
        30,
        "relay.internal",
        "app@fail.test",
        "alice@example.org",
        &msg("app@fail.test", "allowlisted gtube", GTUBE),
    )
    .await;
    assert!(o.data.unwrap_or_default().starts_with("250"), "allowlisted");

    // A bad map is refused with its name and line; the previous one stays in force.
    let (status, body) = put_map(api, "hc", "/ok/ WARN\n/^Subject: (/ REJECT\n").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("hc:2"), "{body}");
    let o = send(
        NET,
        21,
        "mx.pass.test",
        "s@pass.test",
        "alice@example.org",
        &msg("s@pass.test", "win a prize again", "hello"),
    )
    .await;
    assert!(o
        .data
        .unwrap_or_default()
        .starts_with("550 5.7.1 no prizes here"));

    // Pregreet: a client talking before the greeting is refused and disconnected.
    set_settings(
        api,
        &settings(
            "pregreet_ms = 400\nmax_connections_per_ip = 2",
            false,
            false,
        ),
    )
    .await;
    let mut early = Client::open(NET, 22).await;
    early.w.write_all(b"EHLO early.bot\r\n").await.unwrap();
    let r = early.reply().await;
    assert!(r.starts_with("554 5.7.1"), "pregreet: {r}");
    assert_eq!(early.reply().await, "", "closed after the refusal");
    // A patient client gets the (delayed) greeting.
    let mut patient = Client::connect(NET, 23).await;
    // Per-IP connection limit: two open from .23, the third is refused.
    let _second = Client::connect(NET, 23).await;
    let mut third = Client::open(NET, 23).await;
    let r = third.reply().await;
    assert!(r.starts_with("421 4.7.0"), "third connection: {r}");
    patient.cmd("QUIT").await;

    // A DNSBL whose DNS never answers: tempfail (on_error = "tempfail"), never accept-all.
    set_settings(api, &settings("", false, true)).await;
    let o = send(
        NET,
        25,
        "mx.pass.test",
        "s@pass.test",
        "alice@example.org",
        "x",
    )
    .await;
    assert!(
        o.rcpt.starts_with("451 4.7.1") && o.rcpt.contains("dead.test"),
        "{o:?}"
    );
    // Greylisting (delay 1 s): first attempt deferred, a retry after the delay accepted.
    set_settings(api, &settings("", true, false)).await;
    let o = send(
        NET,
        24,
        "mx.pass.test",
        "new@pass.test",
        "alice@example.org",
        &msg("new@pass.test", "grey", "x"),
    )
    .await;
    assert!(o.rcpt.starts_with("450 4.2.0"), "{o:?}");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let o = send(
        NET,
        24,
        "mx.pass.test",
        "new@pass.test",
        "alice@example.org",
        &msg("new@pass.test", "grey", "x"),
    )
    .await;
    assert!(o.rcpt.starts_with("250"), "{o:?}");

    // Metrics and events.
    let metrics = node.metrics().await;
    for want in [
        r#"mailnode_antiube_decisions_total{action="reject",policy="dnsbl"} 1"#,
        r#"mailnode_antiube_decisions_total{action="reject",policy="spf"} 1"#,
        r#"mailnode_antiube_decisions_total{action="tag",policy="score"} 1"#,
        r#"mailnode_antiube_decisions_total{action="close",policy="pregreet"} 1"#,
        r#"mailnode_antiube_decisions_total{action="close",policy="anvil"} 1"#,
        r#"mailnode_antiube_decisions_total{action="tempfail",policy="greylist"} 1"#,
        r#"mailnode_antiube_decisions_total{action="tempfail",policy="dnsbl"} 1"#,
        r#"mailnode_antiube_decisions_total{action="discard",policy="body_checks"} 1"#,
    ] {
        assert!(metrics.contains(want), "missing {want}");
    }
    let log = node.c.nodes[0].log();
    let event = log
        .lines()
        .find(|l| l.contains("anti-UBE decision") && l.contains(r#"\"policy\":\"dnsbl\""#))
        .or_else(|| {
            log.lines()
                .find(|l| l.contains("anti-UBE decision") && l.contains(r#""policy":"dnsbl""#))
        })
        .expect("a dnsbl event in the log");
    assert!(
        event.contains("127.0.92.20") && event.contains("alice@example.org"),
        "{event}"
    );

    let store = node.stop().await;
    let inbox = mailbox(&store, "alice@example.org", "INBOX").await;
    let junk = mailbox(&store, "alice@example.org", "Junk").await;
    let inbox_subjects: Vec<&str> = inbox.iter().map(|m| subject(m)).collect();
    let junk_subjects: Vec<&str> = junk.iter().map(|m| subject(m)).collect();
    assert_eq!(junk_subjects, ["pills"], "junk");
    assert_eq!(
        inbox_subjects,
        ["hello alice", "allowlisted gtube", "grey"],
        "inbox"
    );
    let pills = &junk[0];
    assert!(pills.contains("X-Spam-Flag: YES\r\n"), "{pills}");
    assert!(pills.contains("tests=CHEAP_PILLS"), "{pills}");
    assert!(pills.contains("Received-SPF: softfail"), "{pills}");
    let ham = &inbox[0];
    assert!(ham.contains("Received-SPF: pass"), "{ham}");
    // Only the low-weight list adds to ham's score (client .21 is on low.test).
    assert!(ham.contains("X-Spam-Score: 0.50\r\n"), "{ham}");
    assert!(
        ham.contains("X-Spam-Status: No, score=0.5 required=5.0 tests=DNSBL_low.test\r\n"),
        "{ham}"
    );
    assert!(ham.contains("Authentication-Results: "), "{ham}");
    assert!(!ham.contains("X-Spam-Flag"), "{ham}");
    assert!(
        !inbox[1].contains("X-Spam-Status"),
        "the allowlisted client is not scored"
    );
}

/// The scanner test's policy: no DNSBL, SPF and DKIM against dnsmasq, `scanners` appended
/// (`[clamd]` and `[spamd]` tables). GTUBE scores nothing of its own and nothing is refused
/// for its score, so a spamd score shows as a tag.
fn scanner_settings(scanners: &str) -> String {
    format!(
        r#"
[connection]
allow_networks = ["127.0.{SCAN_NET}.30"]

[dns]
servers = ["127.0.{SCAN_NET}.1:5353"]
timeout_ms = 1000

[content]
tag_score = 5.0
reject_score = 100000.0
gtube_score = 0.0

{scanners}
"#
    )
}

fn clamd_table(address: &str, on_error: &str) -> String {
    format!("[clamd]\naddress = \"{address}\"\ntimeout_ms = 10000\non_error = \"{on_error}\"\n")
}

fn spamd_table(address: &str) -> String {
    format!(
        "[spamd]\naddress = \"{address}\"\ntimeout_ms = 10000\non_error = \"skip\"\nweight = 1.0\n"
    )
}

/// The value of one metric line (`name{labels}`) in a scrape; 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The X-Spam-Status field of a message.
fn spam_status(m: &str) -> &str {
    m.lines()
        .find_map(|l| l.strip_prefix("X-Spam-Status: "))
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virus_and_spam_scanners_inside_the_smtp_transaction() {
    let net = SCAN_NET;
    let ip = format!("127.0.{net}.1");
    let started = Instant::now();
    let (clamd, spamd) = tokio::join!(
        tokio::task::spawn_blocking(move || Clamd::start(&format!("127.0.{net}.2"))),
        tokio::task::spawn_blocking(move || Spamd::start(&format!("127.0.{net}.3"))),
    );
    let (Some(mut clamd), Some(mut spamd)) = (clamd.unwrap(), spamd.unwrap()) else {
        return;
    };
    eprintln!("scanners ready after {:?}", started.elapsed());
    let _dns = dnsmasq(
        &ip,
        &[format!(
            "--txt-record=pass.test,v=spf1 ip4:127.0.{net}.0/24 -all"
        )],
    );
    let mut node = MailNode::start(TestCluster::new(net, 1, Tuning::default())).await;
    let api = &node.api;
    let to = "alice@example.org";
    let eicar = eicar_mail("s@pass.test", to, "virus");
    let send_from = |from: u8, message: String| async move {
        let o = send(net, from, "mx.pass.test", "s@pass.test", to, &message).await;
        assert!(o.rcpt.starts_with("250"), "{o:?}");
        o.data.unwrap_or_default()
    };

    // clamd up, on_error = "tempfail".
    set_settings(
        api,
        &scanner_settings(&clamd_table(&clamd.addr, "tempfail")),
    )
    .await;
    let virus = format!("554 5.7.1 virus found: {EICAR_FOUND}");
    let d = send_from(21, eicar.clone()).await;
    assert!(d.starts_with(&virus), "{d}\n{}", clamd.daemon.logs());
    let d = send_from(21, msg("s@pass.test", "clean", "nothing to see")).await;
    assert!(d.starts_with("250"), "{d}");
    // Viruses are refused for everyone, allowlisted clients too.
    let d = send_from(30, eicar.clone()).await;
    assert!(d.starts_with(&virus), "allowlisted: {d}");

    // clamd down: tempfail for everyone; with on_error = "skip", accepted unscanned.
    clamd.daemon.stop();
    let d = send_from(21, msg("s@pass.test", "clamd down", "x")).await;
    assert!(d.starts_with("451 4.7.1"), "{d}");
    let d = send_from(30, msg("s@pass.test", "clamd down allowlisted", "x")).await;
    assert!(d.starts_with("451 4.7.1"), "allowlisted: {d}");
    set_settings(api, &scanner_settings(&clamd_table(&clamd.addr, "skip"))).await;
    let d = send_from(21, msg("s@pass.test", "clamd skipped", "x")).await;
    assert!(d.starts_with("250"), "{d}");

    // spamd's score (weight 1) tags GTUBE; plain mail stays below the tag score.
    set_settings(api, &scanner_settings(&spamd_table(&spamd.addr))).await;
    let d = send_from(21, msg("s@pass.test", "gtube", GTUBE)).await;
    assert!(d.starts_with("250"), "{d}\n{}", spamd.daemon.logs());
    let ham = "Hi Alice,\n\nshall we meet for lunch at noon tomorrow?\n\nBob";
    let d = send_from(21, msg("s@pass.test", "lunch tomorrow", ham)).await;
    assert!(d.starts_with("250"), "{d}");
    // spamd down, on_error = "skip": accepted, not scored by spamd.
    spamd.daemon.stop();
    let d = send_from(21, msg("s@pass.test", "spamd down", "x")).await;
    assert!(d.starts_with("250"), "{d}");

    let metrics = node.metrics().await;
    for (series, want) in [
        (
            r#"mailnode_antiube_decisions_total{action="reject",policy="virus"}"#,
            2.0,
        ),
        (
            r#"mailnode_antiube_decisions_total{action="tempfail",policy="clamd"}"#,
            2.0,
        ),
        // Two tempfails and one skip.
        (r#"mailnode_antiube_check_errors_total{check="clamd"}"#, 3.0),
        (r#"mailnode_antiube_check_errors_total{check="spamd"}"#, 1.0),
        (
            r#"mailnode_antiube_decisions_total{action="tag",policy="score"}"#,
            1.0,
        ),
    ] {
        assert_eq!(metric(&metrics, series), want, "{series}");
    }
    let log = node.c.nodes[0].log();
    let event = log
        .lines()
        .find(|l| {
            l.contains("anti-UBE decision")
                && l.contains(EICAR_FOUND)
                && l.contains(&format!("127.0.{net}.30"))
        })
        .expect("a virus event for the allowlisted client in the log");
    assert!(event.contains("virus"), "{event}");

    let store = node.stop().await;
    let inbox = mailbox(&store, to, "INBOX").await;
    let junk = mailbox(&store, to, "Junk").await;
    let inbox_subjects: Vec<&str> = inbox.iter().map(|m| subject(m)).collect();
    let junk_subjects: Vec<&str> = junk.iter().map(|m| subject(m)).collect();
    assert_eq!(
        inbox_subjects,
        ["clean", "clamd skipped", "lunch tomorrow", "spamd down"],
        "inbox"
    );
    assert_eq!(junk_subjects, ["gtube"], "junk");
    let gtube = &junk[0];
    assert!(gtube.contains("X-Spam-Flag: YES\r\n"), "{gtube}");
    let status = spam_status(gtube);
    assert!(
        status.starts_with("Yes, score=") && status.contains("SPAMD"),
        "{status}"
    );
    let score: f64 = gtube
        .lines()
        .find_map(|l| l.strip_prefix("X-Spam-Score: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    // GTUBE is 1000 in spamd, plus its small rules (ALL_TRUSTED -1: our Received is from
    // loopback); our own GTUBE rule scores 0 here.
    assert!(
        (990.0..=1010.0).contains(&score),
        "spamd scores GTUBE about 1000: {score}\n{gtube}"
    );
    let lunch = spam_status(&inbox[2]);
    assert!(lunch.starts_with("No, score="), "{lunch}");
    let down = spam_status(&inbox[3]);
    assert!(
        down.starts_with("No, score=") && !down.contains("SPAMD"),
        "{down}"
    );
    eprintln!("scanner test took {:?}", started.elapsed());
}
