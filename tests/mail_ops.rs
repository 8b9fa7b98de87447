//! The operator verbs for mail, end to end: a real node takes mail on its MX from Python's
//! smtplib, delivers a local message over LMTP into its store (`mailctl store usage` sees it),
//! and keeps a message for an unresolvable remote domain queued, which `mailctl queue
//! list|show|hold|flush|release|delete` then steer; `mailctl store check` finds a planted
//! foreign file and exits 1; a node without the store answers 409; a stopped node exits 3.
//! Network 127.0.41.0/24; the "dead" DNS server is 127.0.41.9:53, where nothing listens.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::ctl::Ctl;
use common::{mail_config, set_extra_config, TestCluster, Tuning};
use serde_json::Value;

const NET: u8 = 41;
const REMOTE: &str = "someone@far.test";

/// Polls a `--json` command until `pred` holds (bounded).
fn wait_json(ctl: &Ctl, args: &[&str], what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = ctl.json(args);
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: last answer {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends one message with Python's smtplib to the node's MX.
fn smtplib(ip: &str, rcpt: &str, subject: &str) {
    let script = r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], 2525, local_hostname='py.test', timeout=10)
refused = s.sendmail('bob@sender.test', [sys.argv[2]],
                     ('Subject: %s\r\nFrom: bob@sender.test\r\n\r\nhello\r\n' % sys.argv[3]).encode())
assert not refused, refused
s.quit()
"#;
    let out = Command::new("python3")
        .args(["-c", script, ip, rcpt, subject])
        .output()
        .expect("python3 must be installed");
    assert!(
        out.status.success(),
        "smtplib to {rcpt}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `msg/` directory of a mailbox holding at least one message.
fn a_message_dir(root: &Path) -> PathBuf {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "msg")
                    && std::fs::read_dir(&p).unwrap().next().is_some()
                {
                    out.push(p.clone());
                }
                walk(&p, out);
            }
        }
    }
    let mut found = Vec::new();
    walk(&root.join("users"), &mut found);
    assert_eq!(found.len(), 1, "one mailbox with mail expected: {found:?}");
    found.pop().unwrap()
}

fn queue_entry(list: &Value) -> Option<&Value> {
    list["entries"]
        .as_array()?
        .iter()
        .find(|e| e["recipients"].as_array().is_some_and(|r| r == &[REMOTE]))
}

fn attempts(show: &Value) -> u64 {
    show["envelope"]["recipients"][0]["attempts"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_and_store_verbs_end_to_end() {
    let mut c = TestCluster::new(NET, 1, Tuning::default());
    let ip = c.nodes[0].ip.clone();
    let store = c.tmp.path().join("mailstore");
    // A DNS server that does not exist: MX lookups fail at once (temporarily), so the remote
    // message stays queued; the default 60 s backoff keeps it still between our commands.
    let queue = format!("dns_servers = [\"127.0.{NET}.9:53\"]\nconnect_timeout_ms = 1000");
    set_extra_config(&c, 1, &mail_config(&ip, Some(&store), &queue));
    c.node(1).start();
    c.api(1).wait_ready(Duration::from_secs(20)).await;
    let ctl = Ctl::new(&c, 1);

    let pw = c.tmp.path().join("pw.txt");
    std::fs::write(&pw, "secret pass\n").unwrap();
    ctl.expect(0, &["domain", "add", "example.org"]);
    let pwf = pw.to_str().unwrap();
    ctl.expect(
        0,
        &[
            "user",
            "add",
            "alice@example.org",
            "--quota",
            "10M",
            "--password-file",
            pwf,
        ],
    );
    ctl.expect(0, &["alias", "add", "fwd@example.org", REMOTE]);

    // Local mail lands in the store.
    smtplib(&ip, "alice@example.org", "local");
    let usage = wait_json(
        &ctl,
        &["store", "usage", "alice@example.org"],
        "delivery to alice",
        |v| v["messages"] == 1,
    );
    assert_eq!(usage["quota_bytes"], 10 << 20);
    let inbox = usage["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "INBOX")
        .expect("INBOX listed");
    assert_eq!(inbox["messages"], 1);
    assert_eq!(inbox["unseen"], 1);
    let (table, _) = ctl.expect(0, &["store", "usage", "ALICE@example.org"]);
    assert!(table.contains("user      alice@example.org"), "{table}");
    assert!(table.contains("quota     10M (0% used)"), "{table}");
    assert!(table.contains("MAILBOX  ROLE"), "{table}");
    let (_, err) = ctl.expect(1, &["store", "usage", "nobody@example.org"]);
    assert!(err.contains("no user nobody@example.org"), "{err}");

    // Remote mail that cannot be delivered waits in the queue.
    smtplib(&ip, "fwd@example.org", "remote");
    let list = wait_json(&ctl, &["queue", "list"], "a deferred remote message", |v| {
        queue_entry(v).is_some_and(|e| e["state"] == "deferred" && !e["last_error"].is_null())
    });
    let id = queue_entry(&list).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (table, _) = ctl.expect(0, &["queue", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["ID", "SENDER", "RCPTS", "SIZE", "AGE", "STATE", "NEXT", "LAST", "ERROR"],
        "{table}"
    );
    let row = lines.iter().find(|l| l.starts_with(&id)).expect("row");
    assert!(
        row.contains("bob@sender.test") && row.contains(REMOTE),
        "{row}"
    );
    assert!(row.contains("deferred") && row.contains(" in "), "{row}");

    let show = ctl.json(&["queue", "show", &id]);
    assert_eq!(attempts(&show), 1);
    assert!(show["headers"]
        .as_str()
        .unwrap()
        .contains("Subject: remote"));
    let (text, _) = ctl.expect(0, &["queue", "show", &id]);
    assert!(text.contains("state         deferred"), "{text}");
    assert!(text.contains("Subject: remote"), "{text}");

    // Hold: no delivery, even when flushed.
    let (out, _) = ctl.expect(0, &["queue", "hold", &id]);
    assert!(out.contains("held"), "{out}");
    let held = ctl.json(&["queue", "list"]);
    assert_eq!(queue_entry(&held).unwrap()["state"], "held");
    assert!(queue_entry(&held).unwrap()["next_attempt"].is_null());
    let (out, _) = ctl.expect(0, &["queue", "flush", &id]);
    assert!(out.contains("is held"), "{out}");
    let flushed = ctl.json(&["queue", "flush"]);
    assert_eq!(flushed["flushed"], 0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(attempts(&ctl.json(&["queue", "show", &id])), 1);

    // Release retries at once (despite the 60 s backoff); so does a flush.
    ctl.expect(0, &["queue", "release", &id]);
    wait_json(
        &ctl,
        &["queue", "show", &id],
        "a retry after release",
        |v| attempts(v) == 2 && v["entry"]["state"] == "deferred",
    );
    let (out, _) = ctl.expect(0, &["queue", "flush", &id]);
    assert!(out.contains("will be retried now"), "{out}");
    wait_json(&ctl, &["queue", "show", &id], "a retry after flush", |v| {
        attempts(v) == 3 && v["entry"]["state"] == "deferred"
    });
    let (out, _) = ctl.expect(0, &["queue", "flush"]);
    assert!(out.contains("1 message will be retried now"), "{out}");
    wait_json(
        &ctl,
        &["queue", "show", &id],
        "a retry after flushing all",
        |v| attempts(v) == 4 && v["entry"]["state"] == "deferred",
    );

    // Ids: malformed is a usage error locally and a 400 from the API; unknown is a 404 with
    // the hint.
    let unknown = "0123456789abcdef0123";
    let (_, err) = ctl.expect(1, &["queue", "show", unknown]);
    assert!(err.contains(&format!("no message {unknown}")), "{err}");
    assert!(err.contains("mailctl queue list"), "{err}");
    ctl.expect(1, &["queue", "hold", unknown]);
    let (_, err) = ctl.expect(2, &["queue", "delete", "not-an-id"]);
    assert!(err.contains("not a queue id"), "{err}");
    let api = c.api(1);
    let (s, v) = api.call("GET", "/api/queue/not-an-id", None).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = api
        .call("DELETE", &format!("/api/queue/{unknown}"), None)
        .await;
    assert_eq!(s, 404, "{v}");
    assert!(v["hint"].as_str().unwrap().contains("mailctl queue list"));

    // Pages: oldest first, a cursor to the next page, the counters of the whole queue.
    smtplib(&ip, "fwd@example.org", "second");
    let list = wait_json(&ctl, &["queue", "list"], "a second queued message", |v| {
        v["stats"]["messages"] == 2 && v["stats"]["active"] == 0
    });
    let second = list["entries"][1]["id"].as_str().unwrap().to_string();
    assert_eq!(list["entries"][0]["id"], id.as_str());
    assert!(list["next_after"].is_null());
    assert!(list["stats"]["oldest_age_secs"].as_u64().is_some());
    let (out, _) = ctl.expect(0, &["queue", "list", "--limit", "1"]);
    assert!(out.contains(&id) && !out.contains(&second), "{out}");
    assert!(
        out.contains(&format!(
            "more after this page: mailctl queue list --after {id}"
        )),
        "{out}"
    );
    assert!(
        out.contains("2 messages — 0 active, 2 waiting, 0 held"),
        "{out}"
    );
    let (out, _) = ctl.expect(0, &["queue", "list", "--after", &id, "--limit", "1"]);
    assert!(
        out.contains(&second) && out.contains("(last page)"),
        "{out}"
    );
    ctl.expect(2, &["queue", "list", "--limit", "0"]);
    ctl.expect(2, &["queue", "list", "--after", "nope"]);
    let (s, v) = api.call("GET", "/api/queue?limit=100000", None).await;
    assert_eq!(s, 400, "{v}");
    let (out, _) = ctl.expect(0, &["status"]);
    assert!(
        out.contains("mail queue (this node): 2 messages — 0 active, 2 waiting, 0 held"),
        "{out}"
    );
    assert_eq!(ctl.json(&["status"])["queue"]["messages"], 2);
    ctl.expect(0, &["queue", "delete", &second]);

    // Delete.
    let (out, _) = ctl.expect(0, &["queue", "delete", &id]);
    assert!(out.contains("deleted"), "{out}");
    let (out, _) = ctl.expect(0, &["queue", "list"]);
    assert_eq!(out, "the queue is empty\n");
    ctl.expect(1, &["queue", "show", &id]);

    // Store check: clean, then a planted foreign file is damage that --repair leaves alone.
    let (out, _) = ctl.expect(0, &["store", "check"]);
    assert!(out.contains("no problems found"), "{out}");
    let report = ctl.json(&["store", "check", "--repair", "--user", "alice@example.org"]);
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["messages"], 1, "{report}");
    let foreign = a_message_dir(&store).join("notes.txt");
    std::fs::write(&foreign, "left here by hand").unwrap();
    let (out, err) = ctl.expect(1, &["store", "check"]);
    assert!(
        out.contains("foreign_file") && out.contains("notes.txt"),
        "{out}"
    );
    assert!(err.contains("mailctl store check --repair"), "{err}");
    let (_, err) = ctl.expect(1, &["store", "check", "--repair"]);
    assert!(err.contains("could not be repaired"), "{err}");
    assert!(
        foreign.exists(),
        "check must never touch a file it did not create"
    );
    std::fs::remove_file(&foreign).unwrap();
    ctl.expect(0, &["store", "check"]);

    // A node that does not serve the store says where to go; its queue still answers.
    c.node(1).terminate(Duration::from_secs(10));
    set_extra_config(&c, 1, &mail_config(&ip, None, &queue));
    c.node(1).start();
    c.api(1).wait_ready(Duration::from_secs(20)).await;
    for args in [
        &["store", "check"][..],
        &["store", "usage", "alice@example.org"],
    ] {
        let (_, err) = ctl.expect(1, args);
        assert!(
            err.contains("does not serve the message store")
                && err.contains("active mailstore node"),
            "{err}"
        );
    }
    ctl.expect(0, &["queue", "list"]);

    // A stopped node is unreachable.
    c.node(1).terminate(Duration::from_secs(10));
    ctl.expect(3, &["queue", "list"]);
}
