//! Helpers for the queue tests: configurations with millisecond timings, routers, waiting, and
//! DSN inspection with Python's `email` package (a real MIME parser, not ours).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailnode::queue::{Destination, Envelope, LmtpResolver, Queue, QueueConfig, Recipient, Router};
use serde_json::Value;

/// A queue config whose every timing is in milliseconds, using the test DNS on `127.0.NET.1`.
pub fn config(net: u8) -> QueueConfig {
    QueueConfig {
        hostname: "mx.queue.test".into(),
        backoff_min_ms: 50,
        backoff_max_ms: 200,
        lmtp_retry_ms: 30,
        connect_timeout_ms: 1_000,
        command_timeout_ms: 5_000,
        data_timeout_ms: 5_000,
        delay_warning_secs: 0,
        dns_servers: vec![format!("127.0.{net}.1:5353").parse().unwrap()],
        smtp_port: 2525,
        tls_ca_file: "/nonexistent".into(),
        ..QueueConfig::default()
    }
}

/// `*@local.test` (and `*@inbox.test`) are local mailboxes in group "default"; `*@down.test`
/// in group "down"; everything else is remote.
pub fn router() -> Arc<dyn Router> {
    Arc::new(|rcpt: &str| {
        let domain = rcpt.rsplit_once('@').map_or("", |(_, d)| d).to_string();
        match domain.as_str() {
            "local.test" | "inbox.test" => Destination::Lmtp("default".into()),
            "down.test" => Destination::Lmtp("down".into()),
            _ => Destination::Smtp(domain),
        }
    })
}

/// An LMTP resolver whose "default" group address the test can change (None: no mailstore).
pub fn lmtp_resolver(addr: Arc<Mutex<Option<SocketAddr>>>) -> LmtpResolver {
    Arc::new(move |group: &str| match group {
        "default" => *addr.lock().unwrap(),
        _ => None,
    })
}

pub async fn start(cfg: QueueConfig, dir: &Path, lmtp: Arc<Mutex<Option<SocketAddr>>>) -> Queue {
    let transport = Queue::default_transport(&cfg, lmtp_resolver(lmtp), "n1").unwrap();
    Queue::start(cfg, dir, router(), transport).await.unwrap()
}

pub fn envelope(sender: &str, rcpts: &[&str]) -> Envelope {
    let mut e = Envelope::new(sender);
    e.recipients = rcpts.iter().map(|r| Recipient::new(*r)).collect();
    e
}

pub fn message(id: &str, subject: &str) -> Vec<u8> {
    format!(
        "Received: from client by mx.queue.test\r\nMessage-ID: <{id}@test>\r\nSubject: {subject}\r\n\
         From: sender@local.test\r\n\r\nHello.\r\n.A line starting with a dot\r\nBye.\r\n"
    )
    .into_bytes()
}

/// Polls `f` every 10 ms until it holds; panics with `what` after `secs`.
pub async fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn wait_empty(q: &Queue, secs: u64) {
    wait_for(secs, "an empty queue", || q.stats().messages == 0).await;
}

/// Parses a DSN with Python's `email` package and returns its structure as JSON.
pub fn python_dsn(bytes: &[u8]) -> Value {
    const SCRIPT: &str = r#"
import email, json, sys
m = email.message_from_bytes(sys.stdin.buffer.read())
parts = m.get_payload() if m.is_multipart() else []
out = {
  "content_type": m.get_content_type(),
  "report_type": m.get_param("report-type"),
  "from": m["From"], "to": m["To"], "subject": m["Subject"],
  "auto_submitted": m["Auto-Submitted"],
  "parts": [p.get_content_type() for p in parts],
  "per_message": {}, "recipients": [], "returned_subject": None,
}
if len(parts) >= 2:
    blocks = parts[1].get_payload()
    out["per_message"] = dict(blocks[0].items())
    out["recipients"] = [dict(b.items()) for b in blocks[1:]]
if len(parts) >= 3:
    p = parts[2]
    if p.get_content_type() == "message/rfc822":
        out["returned_subject"] = p.get_payload()[0]["Subject"]
    else:
        inner = email.message_from_string(p.get_payload())
        out["returned_subject"] = inner["Subject"]
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python could not parse the DSN");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Checks the RFC 3464 frame every DSN must have.
pub fn assert_dsn_frame(v: &Value, to: &str) {
    assert_eq!(v["content_type"], "multipart/report", "{v}");
    assert_eq!(v["report_type"], "delivery-status", "{v}");
    assert_eq!(v["parts"][0], "text/plain", "{v}");
    assert_eq!(v["parts"][1], "message/delivery-status", "{v}");
    assert_eq!(v["to"], format!("<{to}>"), "{v}");
    assert_eq!(v["auto_submitted"], "auto-replied", "{v}");
    assert_eq!(
        v["per_message"]["Reporting-MTA"], "dns; mx.queue.test",
        "{v}"
    );
}
