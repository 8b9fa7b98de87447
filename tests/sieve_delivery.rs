//! Users' Sieve scripts at LMTP delivery through a real node: scripts stored through the admin
//! API, mail delivered over LMTP (and over the MX through the queue), forwarded mail and
//! vacation replies received by Postfix's `smtp-sink` as the remote MX (found by `dnsmasq`),
//! and the mailboxes read from the store after the node stopped.
//!
//! Covers fileinto (+ `:create`, imap4flags), a fileinto to a missing mailbox (kept), discard,
//! reject (`550 5.7.1` per LMTP recipient), redirect (SRS0 sender at the remote MX, sent once
//! when the queue repeats a keyed delivery; a bounce to the SRS address forwarded back, a forged
//! one refused), vacation (one reply, none again within `:days`, none to a list), and a script
//! that fails at run time (kept).
//!
//! Addresses: 127.0.85.0/24 (.1 the node and dnsmasq, .2 smtp-sink). Needs the Debian packages
//! postfix (smtp-sink) and dnsmasq-base.

mod common;
#[allow(dead_code)]
#[path = "queue/servers.rs"]
mod servers;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestCluster, Tuning};
use mailnode::store::{Store, StoreConfig, SystemFlag};
use serde_json::json;
use servers::{dnsmasq, sink_dumps, smtp_sink};

const NET: u8 = 85;

/// A line-oriented SMTP/LMTP client.
struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let tcp = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Client {
            w: tcp.try_clone().unwrap(),
            r: BufReader::new(tcp),
        };
        let greeting = c.reply();
        assert!(greeting.starts_with("220"), "{greeting}");
        c
    }

    /// One (possibly multi-line) reply.
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            assert!(
                self.r.read_line(&mut line).unwrap() > 0,
                "closed after {all}"
            );
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }
}

/// One LMTP transaction; returns the reply to each recipient (or to RCPT, if refused there).
fn lmtp(mail_from: &str, rcpts: &[&str], message: &str) -> Vec<String> {
    let mut c = Client::connect(&format!("127.0.{NET}.1:2424"));
    assert!(c.cmd("LHLO test.example").starts_with("250"));
    let r = c.cmd(&format!("MAIL FROM:{mail_from}"));
    assert!(r.starts_with("250"), "{r}");
    let mut accepted = 0;
    for rcpt in rcpts {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!(r.starts_with("250"), "{rcpt}: {r}");
        accepted += 1;
    }
    assert!(c.cmd("DATA").starts_with("354"));
    c.w.write_all(message.replace('\n', "\r\n").as_bytes())
        .unwrap();
    c.w.write_all(b".\r\n").unwrap();
    let replies = (0..accepted).map(|_| c.reply()).collect();
    c.cmd("QUIT");
    replies
}

/// One SMTP transaction to the MX; returns the reply to RCPT, and to the data if accepted.
fn smtp(mail_from: &str, rcpt: &str, message: &str) -> (String, Option<String>) {
    let mut c = Client::connect(&format!("127.0.{NET}.1:2525"));
    assert!(c.cmd("EHLO test.example").starts_with("250"));
    assert!(c.cmd(&format!("MAIL FROM:{mail_from}")).starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    if !r.starts_with("250") {
        return (r, None);
    }
    assert!(c.cmd("DATA").starts_with("354"));
    c.w.write_all(message.replace('\n', "\r\n").as_bytes())
        .unwrap();
    c.w.write_all(b".\r\n").unwrap();
    let done = c.reply();
    c.cmd("QUIT");
    (r, Some(done))
}

fn msg(from: &str, to: &str, subject: &str, extra: &str) -> String {
    format!(
        "From: {from}\nTo: {to}\nSubject: {subject}\nMessage-ID: <{}@remote.test>\n{extra}\nbody of {subject}\n",
        subject.replace(' ', "-")
    )
}

async fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn queue_is_empty(data: &Path) -> bool {
    std::fs::read_dir(data.join("queue")).map_or(true, |rd| {
        !rd.flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".msg"))
    })
}

/// The dumps of transactions `smtp-sink` received for `rcpt` that contain `text`.
fn dumps_for(dir: &Path, rcpt: &str, text: &str) -> Vec<String> {
    sink_dumps(dir)
        .into_iter()
        .filter(|d| d.contains(&format!("X-Rcpt-Args: <{rcpt}>")) && d.contains(text))
        .collect()
}

/// Subjects and flags of the messages in one mailbox.
async fn mailbox(store: &Store, user: &str, name: &str) -> Vec<(String, mailnode::store::Flags)> {
    let Ok(mb) = store.open_mailbox(user, name).await else {
        return Vec::new();
    };
    let snap = mb.snapshot().unwrap();
    let mut out = Vec::new();
    for m in snap.messages.iter() {
        let bytes = mb.fetch(m.uid).await.unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let subject = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or("")
            .trim()
            .to_string();
        out.push((subject, m.flags.clone()));
    }
    out
}

fn subjects(list: &[(String, mailnode::store::Flags)]) -> Vec<&str> {
    list.iter().map(|(s, _)| s.as_str()).collect()
}

/// Prints the end of the node's log when the test fails.
struct ShowLogOnPanic(std::path::PathBuf);

impl Drop for ShowLogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            for line in tail.iter().rev() {
                eprintln!("node: {line}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sieve_actions_at_delivery() {
    let mut c = TestCluster::new(NET, 1, Tuning::default());
    let ip = format!("127.0.{NET}.1");
    let _dns = dnsmasq(
        &ip,
        &[
            "--mx-host=remote.test,mx.remote.test,10".into(),
            format!("--host-record=mx.remote.test,127.0.{NET}.2"),
        ],
    );
    let sink = c.tmp.path().join("sink");
    let _sink = smtp_sink(&format!("127.0.{NET}.2:2525"), &sink, &[]);

    let n = &c.nodes[0];
    let root = n.dir.join("mailstore");
    let secret = n.dir.join("srs.secret");
    std::fs::write(&secret, "a-test-srs-secret-0123456789abcdef\n").unwrap();
    let extra = format!(
        r#"
[mail]
mx_listen = "{ip}:2525"
lmtp_addr = "{ip}:2424"
srs_secret_file = "{secret}"

[mailstore]
root = "{root}"
lmtp_listen = "{ip}:2424"
create_if_missing = true

[smtp]
spool_dir = "{spool}"

[queue]
lmtp_retry_ms = 200
backoff_min_ms = 100
backoff_max_ms = 500
dns_servers = ["{ip}:5353"]
smtp_port = 2525
tls = "none"
"#,
        secret = secret.display(),
        root = root.display(),
        spool = n.data_dir().join("spool").display(),
    );
    let mut cfg = std::fs::read_to_string(&n.config).unwrap();
    cfg.push_str(&extra);
    std::fs::write(&n.config, cfg).unwrap();
    c.node(1).start();
    let _log = ShowLogOnPanic(c.nodes[0].dir.join("log"));
    let api = c.api(1);
    api.wait_ready(Duration::from_secs(20)).await;
    let (status, body) = api
        .call("POST", "/api/domains", Some(json!({"name": "example.org"})))
        .await;
    assert_eq!(status, 200, "{body}");
    let scripts = [
        (
            "alice",
            r#"require ["fileinto", "imap4flags", "mailbox"];
if header :contains "subject" "project" {
  fileinto :create :flags ["\\Seen", "$Work"] "Projects";
} elsif header :contains "subject" "missing" {
  fileinto "Nope";
}"#,
        ),
        (
            "bob",
            r#"if header :contains "subject" "spam" { discard; }"#,
        ),
        (
            "carol",
            r#"require "reject";
if header :contains "subject" "unwanted" { reject "I do not want this"; }"#,
        ),
        ("dave", r#"redirect "friend@remote.test";"#),
        (
            "erin",
            r#"require "vacation";
vacation :days 3 :subject "Away" "I am away until Monday.";"#,
        ),
        (
            "frank",
            "require \"variables\";\nset \"a\" \"not an address\";\nredirect \"${a}\";\n",
        ),
    ];
    for (user, source) in scripts {
        let address = format!("{user}@example.org");
        let u = json!({"address": address, "password_hash": "{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="});
        assert_eq!(api.call("POST", "/api/users", Some(u)).await.0, 201);
        let (status, body) = api
            .call(
                "PUT",
                &format!("/api/users/{address}/sieve/main"),
                Some(json!({"source": source, "activate": true})),
            )
            .await;
        assert!(status == 200 || status == 201, "{user}: {status} {body}");
    }
    let grace = json!({"address": "grace@example.org", "password_hash": "{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="});
    assert_eq!(api.call("POST", "/api/users", Some(grace)).await.0, 201);

    // One LMTP transaction for several users: per-recipient replies, reject as 550 5.7.1,
    // grace (no script) on the plain path.
    let r = lmtp(
        "<s1@remote.test>",
        &["carol@example.org", "grace@example.org", "bob@example.org"],
        &msg(
            "s1@remote.test",
            "carol@example.org",
            "unwanted spam offer",
            "",
        ),
    );
    assert!(r[0].starts_with("550 5.7.1 I do not want this"), "{r:?}");
    assert!(r[1].starts_with("250") && r[2].starts_with("250"), "{r:?}");
    let r = lmtp(
        "<s1@remote.test>",
        &["carol@example.org", "bob@example.org"],
        &msg("s1@remote.test", "carol@example.org", "hello ham", ""),
    );
    assert!(r.iter().all(|r| r.starts_with("250")), "{r:?}");

    // fileinto with :create and flags, and to a missing mailbox; once over the MX (queue,
    // keyed LMTP) too.
    for subject in ["project plan", "missing box"] {
        let r = lmtp(
            "<s2@remote.test>",
            &["alice@example.org"],
            &msg("s2@remote.test", "alice@example.org", subject, ""),
        );
        assert!(r[0].starts_with("250"), "{r:?}");
    }
    let (rcpt, done) = smtp(
        "<s2@remote.test>",
        "alice@example.org",
        &msg("s2@remote.test", "alice@example.org", "project via mx", ""),
    );
    assert!(rcpt.starts_with("250") && done.unwrap().starts_with("250"));

    // A script that fails at run time keeps the message.
    let r = lmtp(
        "<s3@remote.test>",
        &["frank@example.org"],
        &msg("s3@remote.test", "frank@example.org", "for frank", ""),
    );
    assert!(r[0].starts_with("250"), "{r:?}");

    // Redirect: a keyed delivery repeated by the queue (same XDELIVERY) forwards once.
    let fwd = msg("orig@remote.test", "dave@example.org", "forward me", "");
    for _ in 0..2 {
        let r = lmtp(
            "<orig@remote.test> XDELIVERY=t85.1",
            &["dave@example.org"],
            &fwd,
        );
        assert!(r[0].starts_with("250"), "{r:?}");
    }
    wait_for(20, "the redirected copy at the remote MX", || {
        !dumps_for(&sink, "friend@remote.test", "Subject: forward me").is_empty()
    })
    .await;
    let got = dumps_for(&sink, "friend@remote.test", "Subject: forward me");
    let dump = &got[0];
    let srs = dump
        .lines()
        .find_map(|l| l.strip_prefix("X-Mail-Args: <"))
        .and_then(|l| l.split('>').next())
        .expect("MAIL FROM in the dump")
        .to_string();
    assert!(
        srs.to_ascii_uppercase().starts_with("SRS0=")
            && srs
                .to_ascii_lowercase()
                .ends_with("=remote.test=orig@example.org"),
        "SRS sender: {srs}"
    );
    assert!(
        dump.contains("X-Sieve-Redirected-From: <dave@example.org>"),
        "{dump}"
    );

    // A message this user redirected before comes back: kept, not redirected again.
    let looped = msg(
        "orig@remote.test",
        "dave@example.org",
        "looped",
        "X-Sieve-Redirected-From: <dave@example.org>\n",
    );
    let r = lmtp("<orig@remote.test>", &["dave@example.org"], &looped);
    assert!(r[0].starts_with("250"), "{r:?}");

    // A bounce to the SRS address is forwarded to the original sender; a forged one refused.
    let (rcpt, done) = smtp(
        "<>",
        &srs,
        &msg("MAILER-DAEMON@remote.test", &srs, "bounce of forward", ""),
    );
    assert!(rcpt.starts_with("250"), "{rcpt}");
    assert!(done.unwrap().starts_with("250"));
    wait_for(20, "the bounce forwarded back", || {
        !dumps_for(&sink, "orig@remote.test", "Subject: bounce of forward").is_empty()
    })
    .await;
    let bounce = &dumps_for(&sink, "orig@remote.test", "Subject: bounce of forward")[0];
    assert!(bounce.contains("X-Mail-Args: <>"), "{bounce}");
    let mut forged = srs.clone().into_bytes();
    forged[5] = if forged[5].eq_ignore_ascii_case(&b'a') {
        b'b'
    } else {
        b'a'
    };
    let forged = String::from_utf8(forged).unwrap();
    let (rcpt, _) = smtp("<>", &forged, "Subject: x\n\nx\n");
    assert!(rcpt.starts_with("550 5.1.1"), "forged SRS: {rcpt}");

    // Vacation: one reply per sender within :days; none to a list; another sender gets one.
    for (from, subject, extra) in [
        ("v1@remote.test", "first", ""),
        ("v1@remote.test", "second", ""),
        (
            "v2@remote.test",
            "list post",
            "List-Id: <news.remote.test>\n",
        ),
        ("v3@remote.test", "bulk post", "Precedence: bulk\n"),
        (
            "v4@remote.test",
            "robot",
            "Auto-Submitted: auto-generated\n",
        ),
        ("v5@remote.test", "other", ""),
        ("erin@example.org", "note to self", ""),
    ] {
        let r = lmtp(
            &format!("<{from}>"),
            &["erin@example.org"],
            &msg(from, "Erin <erin@example.org>", subject, extra),
        );
        assert!(r[0].starts_with("250"), "{r:?}");
    }
    wait_for(20, "vacation replies", || {
        !dumps_for(&sink, "v1@remote.test", "Subject: Away").is_empty()
            && !dumps_for(&sink, "v5@remote.test", "Subject: Away").is_empty()
    })
    .await;
    let first = &dumps_for(&sink, "v1@remote.test", "Subject: Away")[0];
    assert!(first.contains("X-Mail-Args: <>"), "{first}");
    assert!(first.contains("Auto-Submitted: auto-replied"), "{first}");
    assert!(
        first.contains("In-Reply-To: <first@remote.test>"),
        "{first}"
    );
    assert!(first.contains("From: erin@example.org"), "{first}");
    assert!(first.contains("I am away until Monday."), "{first}");

    // Drain, then stop the node and read the store.
    let data = c.nodes[0].data_dir();
    wait_for(30, "an empty queue", || queue_is_empty(&data)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        dumps_for(&sink, "friend@remote.test", "Subject: forward me").len(),
        1,
        "the repeated delivery forwarded nothing again"
    );
    assert_eq!(
        dumps_for(&sink, "v1@remote.test", "Subject: Away").len(),
        1,
        "one vacation reply within :days"
    );
    for quiet in ["v2@remote.test", "v3@remote.test", "v4@remote.test"] {
        assert!(
            dumps_for(&sink, quiet, "Subject: Away").is_empty(),
            "no vacation reply to {quiet}"
        );
    }
    let status = c.node(1).terminate(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");

    let store = Store::open(&root, StoreConfig::default()).unwrap();
    let projects = mailbox(&store, "alice@example.org", "Projects").await;
    assert_eq!(subjects(&projects), ["project plan", "project via mx"]);
    for (_, flags) in &projects {
        assert!(flags.contains(SystemFlag::Seen) && flags.has_keyword("$Work"));
    }
    let inbox = mailbox(&store, "alice@example.org", "INBOX").await;
    assert_eq!(subjects(&inbox), ["missing box"], "kept: no such mailbox");
    assert!(mailbox(&store, "alice@example.org", "Nope")
        .await
        .is_empty());
    assert_eq!(
        subjects(&mailbox(&store, "bob@example.org", "INBOX").await),
        ["hello ham"],
        "spam discarded"
    );
    assert_eq!(
        subjects(&mailbox(&store, "carol@example.org", "INBOX").await),
        ["hello ham"],
        "rejected mail is not stored"
    );
    assert_eq!(
        subjects(&mailbox(&store, "grace@example.org", "INBOX").await),
        ["unwanted spam offer"]
    );
    assert_eq!(
        subjects(&mailbox(&store, "frank@example.org", "INBOX").await),
        ["for frank"],
        "a failing script keeps"
    );
    assert_eq!(
        subjects(&mailbox(&store, "dave@example.org", "INBOX").await),
        ["looped"],
        "redirected, not kept; a loop kept"
    );
    assert!(dumps_for(&sink, "friend@remote.test", "Subject: looped").is_empty());
    let erin = mailbox(&store, "erin@example.org", "INBOX").await;
    assert_eq!(
        erin.len(),
        7,
        "vacation keeps every message, and never answers the user's own address: {:?}",
        subjects(&erin)
    );
}
