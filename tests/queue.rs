//! The queue against real parts: Postfix's `smtp-sink` as remote MX and as an LMTP server,
//! `dnsmasq` serving a test zone on loopback for MX lookups, Python's `email` package checking
//! DSN structure, kill -9 of a queue process, and a full tmpfs. A minimal in-test LMTP/SMTP
//! server (tests/queue/servers.rs) injects per-recipient failures, outages and STARTTLS.
//!
//! Addresses: each test owns 127.0.N.0/24 with N in 70..=82 or 94 (.1 DNS, .2 MX, .3 a dead MX,
//! .4 LMTP). Needs the Debian packages postfix (smtp-sink), dnsmasq-base and python3.

mod common;
#[path = "queue/crash.rs"]
mod crash;
#[path = "queue/servers.rs"]
mod servers;
#[path = "queue/support.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailnode::queue::{MessageState, Notify, QueueConfig, QueueError, TlsPolicy};
use servers::{dnsmasq, sink_dumps, smtp_sink, MiniServer};
use support::*;

fn shared(addr: Option<std::net::SocketAddr>) -> Arc<Mutex<Option<std::net::SocketAddr>>> {
    Arc::new(Mutex::new(addr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lmtp_per_recipient_results_and_failure_dsn() {
    let dir = tempfile::tempdir().unwrap();
    let lmtp = MiniServer::start("127.0.70.4", true, None).await;
    lmtp.set_reply(|rcpt, _| {
        if rcpt.starts_with("bob@") {
            format!("550 5.1.1 <{rcpt}>: no such user")
        } else {
            "250 2.1.5 delivered".into()
        }
    });
    let q = start(config(70), dir.path(), shared(Some(lmtp.addr))).await;
    let mut env = envelope("sender@local.test", &["alice@local.test", "bob@local.test"]);
    env.recipients[1].orcpt = Some("rfc822;Bob@Local.test".into());
    q.enqueue(env, message("t1", "hello")).await.unwrap();
    wait_empty(&q, 10).await;

    let got = lmtp.received();
    let to_alice: Vec<_> = got
        .iter()
        .filter(|r| r.rcpt == "alice@local.test")
        .collect();
    assert_eq!(to_alice.len(), 1, "alice gets the message exactly once");
    let body = String::from_utf8_lossy(&to_alice[0].data).into_owned();
    assert!(
        body.contains("\r\n.A line starting with a dot\r\n"),
        "dot-stuffing round trip: {body}"
    );
    assert!(!got.iter().any(|r| r.rcpt == "bob@local.test"));
    assert_eq!(
        lmtp.script.lock().unwrap().offered["bob@local.test"],
        1,
        "a 5xx is not retried"
    );

    let dsns: Vec<_> = got.iter().filter(|r| r.from.is_empty()).collect();
    assert_eq!(dsns.len(), 1, "one DSN, from the null sender");
    assert_eq!(dsns[0].rcpt, "sender@local.test");
    let v = python_dsn(&dsns[0].data);
    assert_dsn_frame(&v, "sender@local.test");
    assert_eq!(v["parts"][2], "message/rfc822");
    assert_eq!(v["returned_subject"], "hello");
    let r = &v["recipients"];
    assert_eq!(r.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(r[0]["Final-Recipient"], "rfc822; bob@local.test");
    assert_eq!(r[0]["Original-Recipient"], "rfc822; Bob@Local.test");
    assert_eq!(r[0]["Action"], "failed");
    assert_eq!(r[0]["Status"], "5.1.1");
    assert!(r[0]["Diagnostic-Code"]
        .as_str()
        .unwrap()
        .starts_with("smtp; 550 5.1.1"));
    q.shutdown(Duration::from_secs(1)).await;
}

/// A delivery that finishes a message removes it at once, unless a recipient asked for a
/// success DSN (`NOTIFY=SUCCESS`): that one is sent first, exactly once, and only for that
/// recipient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_dsn_only_where_asked_then_removed() {
    let dir = tempfile::tempdir().unwrap();
    let lmtp = MiniServer::start("127.0.82.4", true, None).await;
    lmtp.set_reply(|_, _| "250 2.1.5 delivered".into());
    let q = start(config(82), dir.path(), shared(Some(lmtp.addr))).await;
    let mut env = envelope("sender@local.test", &["alice@local.test", "bob@local.test"]);
    env.envid = Some("E82".into());
    env.recipients[0].notify = Some(Notify {
        success: true,
        failure: true,
        delay: false,
    });
    q.enqueue(env, message("t82", "hello")).await.unwrap();
    // Without a success DSN wanted: removed right after the delivery, nothing sent back.
    q.enqueue(
        envelope("sender@local.test", &["carol@local.test"]),
        message("t82b", "plain"),
    )
    .await
    .unwrap();
    wait_empty(&q, 10).await;
    let got = lmtp.received();
    for rcpt in ["alice@local.test", "bob@local.test", "carol@local.test"] {
        let n = got
            .iter()
            .filter(|r| r.rcpt == rcpt && !r.from.is_empty())
            .count();
        assert_eq!(n, 1, "{rcpt} gets the message exactly once: {got:?}");
    }
    let dsns: Vec<_> = got.iter().filter(|r| r.from.is_empty()).collect();
    assert_eq!(dsns.len(), 1, "one success DSN: {got:?}");
    assert_eq!(dsns[0].rcpt, "sender@local.test");
    let v = python_dsn(&dsns[0].data);
    assert_dsn_frame(&v, "sender@local.test");
    assert_eq!(v["per_message"]["Original-Envelope-Id"], "E82");
    let r = v["recipients"].as_array().unwrap();
    assert_eq!(r.len(), 1, "only alice asked: {v}");
    assert_eq!(r[0]["Final-Recipient"], "rfc822; alice@local.test");
    assert_eq!(r[0]["Action"], "delivered");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("queue"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "spool empty after delivery: {left:?}");
    q.shutdown(Duration::from_secs(1)).await;
}

/// A mailstore address that accepts connections but never greets (a node that lost the lease
/// with its sockets still open) is given up after `lmtp_command_timeout_ms`, not SMTP's
/// 5 minutes, and the message goes to the new holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_mailstore_is_left_after_the_lmtp_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let silent = tokio::net::TcpListener::bind("127.0.83.5:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    let accept = tokio::spawn(async move {
        while let Ok((sock, _)) = silent.accept().await {
            keep.lock().unwrap().push(sock);
        }
    });
    let lmtp = MiniServer::start("127.0.83.4", true, None).await;
    let cfg = QueueConfig {
        lmtp_command_timeout_ms: 300,
        backoff_min_ms: 3_600_000,
        backoff_max_ms: 3_600_000,
        ..config(83)
    };
    let target = shared(Some(silent_addr));
    let q = start(cfg, dir.path(), target.clone()).await;
    q.enqueue(
        envelope("sender@local.test", &["alice@local.test"]),
        message("t83", "silent"),
    )
    .await
    .unwrap();
    wait_for(5, "a connection to the silent mailstore", || {
        !held.lock().unwrap().is_empty()
    })
    .await;
    *target.lock().unwrap() = Some(lmtp.addr);
    // The command timeout is 5 s in this config: only the LMTP timeout can make this.
    wait_empty(&q, 4).await;
    let got = lmtp.received();
    assert_eq!(got.len(), 1, "delivered once, no DSN: {got:?}");
    accept.abort();
    q.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lmtp_failover_is_retried_fast_and_never_bounced() {
    let dir = tempfile::tempdir().unwrap();
    let mut lmtp = MiniServer::start("127.0.71.4", true, None).await;
    lmtp.pause();
    let cfg = QueueConfig {
        backoff_min_ms: 3_600_000,
        backoff_max_ms: 3_600_000,
        ..config(71)
    };
    let target = shared(None);
    let q = start(cfg, dir.path(), target.clone()).await;
    let id = q
        .enqueue(
            envelope("sender@local.test", &["alice@local.test"]),
            message("t2", "failover"),
        )
        .await
        .unwrap();

    // No active mailstore at all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let l = q.list().await.unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].id, id);
    // Retried every few ms, so it may be caught in the act.
    assert!(
        matches!(l[0].state, MessageState::Deferred | MessageState::Active),
        "{l:?}"
    );
    assert!(
        l[0].last_error
            .as_deref()
            .unwrap()
            .contains("no active mailstore"),
        "{l:?}"
    );
    // A mailstore address that refuses connections, then one that answers 421.
    *target.lock().unwrap() = Some(lmtp.addr);
    tokio::time::sleep(Duration::from_millis(300)).await;
    lmtp.script.lock().unwrap().greeting = "421 4.3.2 failing over".into();
    lmtp.resume().await;
    wait_for(5, "421 greetings", || {
        lmtp.script.lock().unwrap().sessions >= 3
    })
    .await;
    let d = q.show(&id).await.unwrap();
    assert!(
        d.envelope.recipients[0].attempts >= 5,
        "retried on the short interval: {d:?}"
    );
    assert!(lmtp.received().is_empty());
    // The standby is up: delivered within the LMTP retry interval, although backoff is 1 h.
    lmtp.script.lock().unwrap().greeting = "220 mailstore ready".into();
    wait_empty(&q, 5).await;
    let got = lmtp.received();
    assert_eq!(got.len(), 1, "delivered once, no DSN: {got:?}");
    assert_eq!(got[0].rcpt, "alice@local.test");
    q.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_by_mx_preference_to_smtp_sink_and_bounce_nxdomain() {
    let dir = tempfile::tempdir().unwrap();
    let _dns = dnsmasq(
        "127.0.72.1",
        &[
            "--mx-host=remote.test,mx1.remote.test,10".into(),
            "--mx-host=remote.test,mx2.remote.test,20".into(),
            "--host-record=mx1.remote.test,127.0.72.3".into(),
            "--host-record=mx2.remote.test,127.0.72.2".into(),
            "--host-record=amx.test,127.0.72.2".into(),
        ],
    );
    let dumps = dir.path().join("sink");
    let _sink = smtp_sink("127.0.72.2:2525", &dumps, &[]);
    let lmtp = MiniServer::start("127.0.72.4", true, None).await;
    let q = start(
        config(72),
        &dir.path().join("data"),
        shared(Some(lmtp.addr)),
    )
    .await;
    q.enqueue(
        envelope("sender@local.test", &["a@remote.test", "b@remote.test"]),
        message("t3a", "relay"),
    )
    .await
    .unwrap();
    q.enqueue(
        envelope("sender@local.test", &["c@amx.test"]),
        message("t3b", "implicit mx"),
    )
    .await
    .unwrap();
    q.enqueue(
        envelope("sender@local.test", &["d@nosuch.test"]),
        message("t3c", "nxdomain"),
    )
    .await
    .unwrap();
    wait_empty(&q, 15).await;
    wait_for(5, "two dumps", || {
        sink_dumps(&dumps)
            .iter()
            .filter(|d| d.contains("Bye."))
            .count()
            == 2
    })
    .await;

    let all = sink_dumps(&dumps);
    let relay = all
        .iter()
        .find(|d| d.contains("Subject: relay"))
        .expect("relayed message");
    assert!(
        relay.contains("X-Mail-Args: <sender@local.test>"),
        "{relay}"
    );
    assert!(
        relay.contains("X-Rcpt-Args: <a@remote.test>")
            && relay.contains("X-Rcpt-Args: <b@remote.test>"),
        "{relay}"
    );
    assert!(relay.contains("X-Helo-Args: mx.queue.test"), "{relay}");
    let implicit = all
        .iter()
        .find(|d| d.contains("Subject: implicit mx"))
        .expect("implicit MX");
    assert!(implicit.contains("X-Rcpt-Args: <c@amx.test>"), "{implicit}");
    // mx1 (preference 10) is dead, so everything went to mx2; NXDOMAIN bounced at once.
    let got = lmtp.received();
    assert_eq!(got.len(), 1, "only the NXDOMAIN bounce: {got:?}");
    let v = python_dsn(&got[0].data);
    assert_dsn_frame(&v, "sender@local.test");
    assert_eq!(v["recipients"][0]["Action"], "failed");
    assert_eq!(v["recipients"][0]["Status"], "5.4.4");
    q.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_4xx_is_retried_and_5xx_bounced_with_dsn() {
    let dir = tempfile::tempdir().unwrap();
    let _dns = dnsmasq(
        "127.0.73.1",
        &[
            "--mx-host=remote.test,mx.remote.test,10".into(),
            "--host-record=mx.remote.test,127.0.73.2".into(),
        ],
    );
    let dumps = dir.path().join("sink");
    let lmtp = MiniServer::start("127.0.73.4", true, None).await;
    let q = start(
        config(73),
        &dir.path().join("data"),
        shared(Some(lmtp.addr)),
    )
    .await;

    let sink = smtp_sink("127.0.73.2:2525", &dumps, &["-r", "RCPT"]);
    let id = q
        .enqueue(
            envelope("sender@local.test", &["a@remote.test"]),
            message("t4a", "soft"),
        )
        .await
        .unwrap();
    let mut attempts = 0;
    for _ in 0..500 {
        attempts = q.show(&id).await.unwrap().envelope.recipients[0].attempts;
        if attempts >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(attempts >= 2, "4xx retried");
    let d = q.show(&id).await.unwrap();
    assert!(
        d.entry
            .last_error
            .as_deref()
            .unwrap_or("")
            .starts_with("450 4.3.0"),
        "{d:?}"
    );
    drop(sink);
    let _sink = smtp_sink("127.0.73.2:2525", &dumps, &[]);
    wait_empty(&q, 10).await;
    assert_eq!(sink_dumps(&dumps).len(), 1);
    assert!(lmtp.received().is_empty(), "no DSN for a retried success");
    drop(_sink);

    let _hard = smtp_sink(
        "127.0.73.2:2525",
        &dir.path().join("sink2"),
        &["-f", "RCPT"],
    );
    let mut env = envelope("sender@local.test", &["b@remote.test"]);
    env.envid = Some("ENV-73".into());
    q.enqueue(env, message("t4b", "hard")).await.unwrap();
    wait_empty(&q, 10).await;
    let got = lmtp.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let v = python_dsn(&got[0].data);
    assert_dsn_frame(&v, "sender@local.test");
    assert_eq!(v["per_message"]["Original-Envelope-Id"], "ENV-73");
    let r = &v["recipients"][0];
    assert_eq!(r["Action"], "failed");
    assert_eq!(r["Status"], "5.3.0");
    assert_eq!(r["Remote-MTA"], "dns; mx.remote.test");
    assert_eq!(v["returned_subject"], "hard");
    q.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_policies() {
    let dir = tempfile::tempdir().unwrap();
    let ca = mailnode::tls::generate_ca("queue test CA").unwrap();
    let ca_paths = ca.write_bundle(dir.path(), "ca").unwrap();
    let cert =
        mailnode::tls::issue_node_cert(&ca.cert_pem, &ca.key_pem, "mx.tls.test", &[]).unwrap();
    let cert_paths = cert.write_bundle(dir.path(), "mx").unwrap();
    let other = mailnode::tls::generate_ca("someone else")
        .unwrap()
        .write_bundle(dir.path(), "other")
        .unwrap();
    let server_cfg = mailnode::tls::server_config(&cert_paths.cert, &cert_paths.key).unwrap();
    let _dns = dnsmasq(
        "127.0.74.1",
        &[
            "--mx-host=tls.test,mx.tls.test,10".into(),
            "--host-record=mx.tls.test,127.0.74.2".into(),
        ],
    );
    let mx = MiniServer::start("127.0.74.2", false, Some(server_cfg)).await;
    let cases = [
        (TlsPolicy::Opportunistic, ca_paths.cert.clone(), Some(true)),
        (TlsPolicy::Verify, ca_paths.cert.clone(), Some(true)),
        (TlsPolicy::None, ca_paths.cert.clone(), Some(false)),
        (TlsPolicy::Verify, other.cert.clone(), None),
    ];
    for (n, (policy, ca_file, want_tls)) in cases.into_iter().enumerate() {
        let cfg = QueueConfig {
            tls: policy,
            tls_ca_file: ca_file,
            smtp_port: mx.addr.port(),
            ..config(74)
        };
        let q = start(cfg, &dir.path().join(format!("q{n}")), shared(None)).await;
        let before = mx.received().len();
        let id = q
            .enqueue(
                envelope("sender@local.test", &[&format!("u{n}@tls.test")]),
                message("t5", "tls"),
            )
            .await
            .unwrap();
        match want_tls {
            Some(tls) => {
                wait_empty(&q, 10).await;
                let got = mx.received();
                assert_eq!(got.len(), before + 1, "{policy:?}");
                assert_eq!(got[before].tls, tls, "{policy:?}");
            }
            None => {
                let mut err = String::new();
                for _ in 0..1000 {
                    let d = q.show(&id).await.unwrap();
                    err = d.envelope.recipients[0]
                        .last_error
                        .clone()
                        .unwrap_or_default();
                    if err.contains("4.7.5") {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                assert!(err.contains("4.7.5") && err.contains("TLS"), "{err}");
                assert_eq!(
                    mx.received().len(),
                    before,
                    "nothing sent without a valid certificate"
                );
                assert_eq!(q.stats().messages, 1, "kept for retry, not bounced");
            }
        }
        q.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_sender_loops_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let lmtp = MiniServer::start("127.0.75.4", true, None).await;
    lmtp.set_reply(|r, _| {
        if r.starts_with("bob@") {
            "550 5.1.1 no".into()
        } else {
            "250 ok".into()
        }
    });
    let cfg = QueueConfig {
        max_message_size: 4_000,
        ..config(75)
    };
    let q = start(cfg, dir.path(), shared(Some(lmtp.addr))).await;
    q.enqueue(envelope("", &["bob@local.test"]), message("t6", "bounce"))
        .await
        .unwrap();
    wait_empty(&q, 10).await;
    assert!(lmtp.received().is_empty(), "never a bounce to a bounce");

    let hops = |n: usize| {
        let mut m = "Received: from x by y\r\n".repeat(n).into_bytes();
        m.extend_from_slice(b"Subject: loop\r\n\r\nbody\r\n");
        m
    };
    let e = q
        .enqueue(envelope("a@local.test", &["alice@local.test"]), hops(51))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            QueueError::TooManyHops {
                hops: 51,
                limit: 50
            }
        ),
        "{e}"
    );
    assert_eq!((e.smtp_reply().0, e.smtp_reply().1), (554, "5.4.6"));
    q.enqueue(envelope("a@local.test", &["alice@local.test"]), hops(50))
        .await
        .unwrap();
    let e = q
        .enqueue(
            envelope("a@local.test", &["alice@local.test"]),
            vec![b'x'; 5_000],
        )
        .await
        .unwrap_err();
    assert_eq!((e.smtp_reply().0, e.smtp_reply().1), (552, "5.3.4"));
    let e = q
        .enqueue(
            envelope("a@local.test", &["x y@local.test"]),
            message("t6b", "x"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, QueueError::Envelope(_)), "{e}");
    wait_empty(&q, 10).await;
    assert_eq!(lmtp.received().len(), 1, "only the 50-hop message");
    let leftovers = std::fs::read_dir(dir.path().join("queue/tmp"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "refused messages leave nothing in tmp/");
    q.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_warning_once_then_expiry_dsn() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = MiniServer::start("127.0.76.4", true, None).await;
    let cfg = QueueConfig {
        lifetime_secs: 2,
        delay_warning_secs: 1,
        ..config(76)
    };
    let q = start(cfg, dir.path(), shared(Some(inbox.addr))).await;
    let mut env = envelope("sender@inbox.test", &["x@down.test"]);
    env.envid = Some("E76".into());
    env.recipients[0].notify = Some(Notify {
        success: false,
        failure: true,
        delay: true,
    });
    q.enqueue(env, message("t7", "slow")).await.unwrap();
    wait_empty(&q, 10).await;
    let got = inbox.received();
    assert_eq!(got.len(), 2, "one delay warning, one failure: {got:?}");
    let delay = python_dsn(&got[0].data);
    assert_dsn_frame(&delay, "sender@inbox.test");
    assert_eq!(delay["recipients"][0]["Action"], "delayed");
    assert_eq!(delay["recipients"][0]["Status"], "4.4.3");
    assert!(delay["recipients"][0]["Will-Retry-Until"].is_string());
    assert_eq!(delay["parts"][2], "text/rfc822-headers");
    assert_eq!(delay["returned_subject"], "slow");
    let fail = python_dsn(&got[1].data);
    assert_dsn_frame(&fail, "sender@inbox.test");
    assert_eq!(fail["per_message"]["Original-Envelope-Id"], "E76");
    assert_eq!(fail["recipients"][0]["Action"], "failed");
    assert_eq!(fail["recipients"][0]["Status"], "4.4.7");
    q.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reloads_spool_and_operator_api() {
    let dir = tempfile::tempdir().unwrap();
    let target = shared(None);
    // A long mailstore retry keeps every message deferred (not active) between operations.
    let cfg = QueueConfig {
        lmtp_retry_ms: 60_000,
        ..config(77)
    };
    let q = start(cfg.clone(), dir.path(), target.clone()).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = q
            .enqueue(
                envelope("s@local.test", &["alice@local.test"]),
                message(&format!("t8-{n}"), &format!("m{n}")),
            )
            .await
            .unwrap();
        ids.push(id);
    }
    for _ in 0..500 {
        let l = q.list().await.unwrap();
        if l.iter().all(|e| e.state == MessageState::Deferred) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let d = q.show(&ids[0]).await.unwrap();
    assert_eq!(d.entry.state, MessageState::Deferred, "{d:?}");
    assert!(
        d.headers.contains("Subject: m0") && d.headers.ends_with("\r\n\r\n"),
        "{}",
        d.headers
    );
    serde_json::to_string(&d).unwrap();
    q.hold(&ids[0]).await.unwrap();
    q.delete(&ids[1]).await.unwrap();
    assert!(matches!(
        q.delete(&ids[1]).await,
        Err(QueueError::NotFound(_))
    ));
    let list = q.list().await.unwrap();
    let states: Vec<_> = list.iter().map(|e| (e.id.clone(), e.state)).collect();
    assert_eq!(
        states,
        vec![
            (ids[0].clone(), MessageState::Held),
            (ids[2].clone(), MessageState::Deferred)
        ]
    );
    assert!(list[1].next_attempt.is_some() && list[0].next_attempt.is_none());
    assert_eq!(q.stats().held, 1);
    q.shutdown(Duration::from_secs(1)).await;
    drop(q);
    let junk = dir.path().join("queue/tmp/half-written.msg");
    std::fs::write(&junk, b"junk").unwrap();

    let lmtp = MiniServer::start("127.0.77.4", true, None).await;
    *target.lock().unwrap() = Some(lmtp.addr);
    let q = start(cfg, dir.path(), target.clone()).await;
    assert!(
        !junk.exists(),
        "unfinished temp files are discarded at start"
    );
    let list = q.list().await.unwrap();
    assert_eq!(list.len(), 2, "reloaded: {list:?}");
    assert_eq!(list[0].state, MessageState::Held, "hold survives restarts");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        lmtp.received().is_empty(),
        "the retry time survives restarts"
    );
    assert_eq!(q.flush(None).await.unwrap(), 1, "flush skips held messages");
    wait_for(10, "the flushed message", || lmtp.received().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(lmtp.received().len(), 1, "held stays held");
    q.release(&ids[0]).await.unwrap();
    wait_empty(&q, 10).await;
    let bodies: Vec<String> = lmtp
        .received()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .collect();
    assert_eq!(bodies.len(), 2);
    assert!(bodies[0].contains("Subject: m2") && bodies[1].contains("Subject: m0"));
    q.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lmtp_into_postfix_smtp_sink_in_lmtp_mode() {
    let dir = tempfile::tempdir().unwrap();
    let dumps = dir.path().join("sink");
    let _sink = smtp_sink("127.0.80.4:2424", &dumps, &["-L"]);
    let addr = "127.0.80.4:2424".parse().unwrap();
    let q = start(config(80), &dir.path().join("data"), shared(Some(addr))).await;
    q.enqueue(
        envelope("s@local.test", &["alice@local.test", "bob@local.test"]),
        message("t11", "lmtp"),
    )
    .await
    .unwrap();
    wait_empty(&q, 10).await;
    wait_for(5, "the dump", || {
        sink_dumps(&dumps).iter().any(|d| d.contains("Bye."))
    })
    .await;
    let all = sink_dumps(&dumps);
    assert_eq!(all.len(), 1, "one transaction for both recipients");
    assert!(all[0].contains("X-Client-Proto: LMTP"), "{}", all[0]);
    assert!(all[0].contains("X-Helo-Args: mx.queue.test"), "{}", all[0]);
    assert!(
        all[0].contains("X-Rcpt-Args: <alice@local.test>")
            && all[0].contains("X-Rcpt-Args: <bob@local.test>"),
        "{}",
        all[0]
    );
    q.shutdown(Duration::from_secs(1)).await;
}

/// Deliveries one after the other reuse one LMTP session (no new connection, greeting and
/// LHLO per message), and each still gets its own transaction and reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lmtp_sessions_are_reused_between_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let lmtp = MiniServer::start("127.0.94.4", true, None).await;
    lmtp.set_reply(|_, _| "250 2.1.5 delivered".into());
    let q = start(config(94), dir.path(), shared(Some(lmtp.addr))).await;
    for i in 0..5 {
        q.enqueue(
            envelope("sender@local.test", &["alice@local.test"]),
            message(&format!("t94-{i}"), "hello"),
        )
        .await
        .unwrap();
        wait_empty(&q, 10).await;
    }
    let got = lmtp.received();
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(
        lmtp.script.lock().unwrap().sessions,
        1,
        "one session for five deliveries"
    );
    // A failure that may be the session's own closes it: the next delivery opens a new one.
    lmtp.set_reply(|_, n| {
        if n == 5 {
            "451 4.3.0 try again".into()
        } else {
            "250 2.1.5 delivered".into()
        }
    });
    q.enqueue(
        envelope("sender@local.test", &["alice@local.test"]),
        message("t94-retry", "hello"),
    )
    .await
    .unwrap();
    wait_empty(&q, 10).await;
    assert_eq!(lmtp.received().len(), 6);
    assert_eq!(
        lmtp.script.lock().unwrap().sessions,
        2,
        "a new session after the 451"
    );
    q.shutdown(Duration::from_secs(1)).await;
}
