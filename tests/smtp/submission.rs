//! Submission: AUTH only after TLS (or with the dev switch), PLAIN and LOGIN exchanges,
//! sender ownership of the envelope and `From:`, added `Date:`/`Message-ID:`, brute-force
//! defence, implicit TLS.

use std::time::{Duration, Instant};

use mailnode::smtp::{Mode, SmtpConfig};

use super::harness::*;

const GREETING: &str = "220 mx.test ESMTP";

#[tokio::test]
async fn starttls_then_auth_then_mail_from_own_addresses_only() {
    let s = start(Mode::Submission, Transport::StartTls, config()).await;
    let mut c = Client::connect(&s, GREETING).await;
    let r = c.cmd("EHLO client.test", "250 ").await;
    assert!(r.has_line("STARTTLS") && !r.lines.iter().any(|l| l.contains("AUTH")));
    c.cmd(
        &format!("AUTH PLAIN {}", plain("alice@example.org", PASSWORD)),
        "530 5.7.0",
    )
    .await;
    c.cmd("MAIL FROM:<alice@example.org>", "530 5.7.0").await;
    c.starttls().await;
    let r = c.cmd("EHLO client.test", "250 ").await;
    assert!(
        r.has_line("AUTH PLAIN LOGIN") && !r.has_line("STARTTLS"),
        "{:?}",
        r.lines
    );
    c.cmd("MAIL FROM:<alice@example.org>", "530 5.7.0").await;
    let r = c.login("alice@example.org", "wrong").await;
    assert!(r.last().starts_with("535 5.7.8"), "{:?}", r.lines);
    let r = c.login("Alice@Example.org", PASSWORD).await;
    assert!(r.last().starts_with("235 2.7.0"), "{:?}", r.lines);
    c.cmd("AUTH LOGIN", "503 5.5.1").await;
    c.cmd("MAIL FROM:<carol@example.org>", "553 5.7.1").await;
    c.cmd("MAIL FROM:<>", "553 5.7.1").await;
    c.cmd("MAIL FROM:<postmaster@example.org>", "250 2.1.0")
        .await;
    c.cmd("RSET", "250 2.0.0").await;
    c.cmd("MAIL FROM:<alice@example.org>", "250 2.1.0").await;
    c.cmd("RCPT TO:<someone@remote.test>", "250 2.1.5").await;
    c.cmd("RCPT TO:<nobody@example.org>", "550 5.1.1").await;
    c.cmd("DATA", "354").await;
    c.write(b"From: Alice <alice@example.org>\r\nSubject: s\r\n\r\nhi\r\n.\r\n")
        .await;
    c.expect_reply("250 2.0.0 OK queued as Q1").await;
    {
        let accepted = s.queue.accepted.lock().unwrap();
        let m = &accepted[0];
        assert_eq!(m.envelope.auth_user.as_deref(), Some("alice@example.org"));
        assert_eq!(m.envelope.mode, Mode::Submission);
        assert!(
            m.content.contains(" with ESMTPSA (TLSv1.3 "),
            "{}",
            m.content
        );
        let header_end = m.content.find("\r\n\r\nhi\r\n").unwrap();
        let header = &m.content[..header_end];
        assert!(header.contains("\r\nSubject: s\r\nDate: "), "{header}");
        assert!(header.contains("\r\nMessage-ID: <"), "{header}");
        assert!(header.ends_with("@mx.test>"), "{header}");
    }

    // A From: that is not alice's is refused after the data; present fields are kept as is.
    let cases: Vec<(&str, &str)> = vec![
        ("From: Carol <carol@example.org>\r\n", "553 5.7.1"),
        ("From: alice@example.org, carol@example.org\r\n", "553 5.7.1"),
        ("From: \"alice@example.org\" <carol@example.org>\r\n", "553 5.7.1"),
        ("From: undisclosed\r\n", "553 5.7.1"),
        (
            "From: <alice+x@example.org>\r\nDate: Tue, 1 Apr 2025 12:00:00 +0000\r\nMessage-ID: <m@x>\r\n",
            "250 2.0.0",
        ),
    ];
    for (header, want) in cases {
        c.cmd("MAIL FROM:<alice@example.org>", "250 2.1.0").await;
        c.cmd("RCPT TO:<someone@remote.test>", "250 2.1.5").await;
        c.cmd("DATA", "354").await;
        c.write(format!("{header}Subject: s\r\n\r\nbody\r\n.\r\n").as_bytes())
            .await;
        let r = c.reply().await;
        assert!(r.last().starts_with(want), "{header:?}: {:?}", r.lines);
    }
    let last = s.queue.last();
    assert_eq!(last.matches("Message-ID:").count(), 1, "{last}");
    assert_eq!(last.matches("\r\nDate:").count(), 1, "{last}");
}

#[tokio::test]
async fn implicit_tls_offers_auth_and_login_works_step_by_step() {
    let s = start(Mode::Submission, Transport::Implicit, config()).await;
    let mut c = Client::connect_tls(&s, GREETING).await;
    let r = c.cmd("EHLO client.test", "250 ").await;
    assert!(
        r.has_line("AUTH PLAIN LOGIN") && !r.has_line("STARTTLS"),
        "{:?}",
        r.lines
    );
    c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6").await;
    c.cmd(&b64("carol@example.org"), "334 UGFzc3dvcmQ6").await;
    c.cmd(&b64(PASSWORD), "235 2.7.0").await;
    let r = c
        .mail(
            "carol@example.org",
            &["alice@example.org"],
            "From: carol@example.org\r\n\r\nx\r\n",
        )
        .await;
    assert!(r.last().starts_with("250 2.0.0"), "{:?}", r.lines);
}

#[tokio::test]
async fn auth_exchanges_can_be_cancelled_and_malformed_ones_are_refused() {
    let cfg = SmtpConfig {
        allow_plaintext_auth: true,
        ..config()
    };
    let s = start(Mode::Submission, Transport::Plain, cfg).await;
    let mut c = Client::connect(&s, GREETING).await;
    c.cmd("AUTH PLAIN", "503 5.5.1").await;
    let r = c.cmd("EHLO client.test", "250 ").await;
    assert!(r.has_line("AUTH PLAIN LOGIN"), "dev switch: {:?}", r.lines);
    c.cmd("AUTH PLAIN", "334").await;
    c.cmd("*", "501 5.7.0").await;
    c.cmd("AUTH PLAIN", "334").await;
    c.cmd("!!!", "501 5.5.2").await;
    c.cmd("AUTH PLAIN =", "501 5.5.2").await;
    c.cmd("AUTH CRAM-MD5", "504 5.5.4").await;
    c.cmd(
        &format!("AUTH PLAIN {}", plain("tempfail@example.org", "x")),
        "454 4.7.0",
    )
    .await;
    c.cmd(
        &format!("AUTH LOGIN {}", b64("alice@example.org")),
        "334 UGFzc3dvcmQ6",
    )
    .await;
    c.cmd(&b64(PASSWORD), "235 2.7.0").await;
}

#[tokio::test]
async fn auth_failures_are_slowed_down_and_limited_per_session_and_per_address() {
    let cfg = SmtpConfig {
        allow_plaintext_auth: true,
        max_auth_failures: 3,
        auth_failures_per_ip: 5,
        auth_failure_delay_ms: 40,
        auth_failure_delay_max_ms: 160,
        ..config()
    };
    let s = start(Mode::Submission, Transport::Plain, cfg).await;
    let wrong = plain("alice@example.org", "wrong");
    let mut c = Client::connect(&s, GREETING).await;
    c.cmd("EHLO client.test", "250 ").await;
    let started = Instant::now();
    c.cmd(&format!("AUTH PLAIN {wrong}"), "535 5.7.8").await;
    let first = started.elapsed();
    c.cmd(&format!("AUTH PLAIN {wrong}"), "535 5.7.8").await;
    c.cmd(&format!("AUTH PLAIN {wrong}"), "421 4.7.0").await;
    c.expect_closed().await;
    // Delays of 40, 80 and 160 ms: growing, and all waited out.
    assert!(first >= Duration::from_millis(40), "{first:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(280),
        "{:?}",
        started.elapsed()
    );

    // The address has used 3 of its 5: a new session gets one 535, then the limit.
    let mut c = Client::connect(&s, GREETING).await;
    c.cmd("EHLO client.test", "250 ").await;
    c.cmd(&format!("AUTH PLAIN {wrong}"), "535 5.7.8").await;
    c.cmd(&format!("AUTH PLAIN {wrong}"), "421 4.7.0").await;
    c.expect_closed().await;

    // Now even the right password is not looked at from this address.
    let mut c = Client::connect(&s, GREETING).await;
    c.cmd("EHLO client.test", "250 ").await;
    c.cmd(
        &format!("AUTH PLAIN {}", plain("alice@example.org", PASSWORD)),
        "421 4.7.0",
    )
    .await;
    c.expect_closed().await;
}

#[tokio::test]
async fn without_tls_or_the_dev_switch_auth_is_never_offered() {
    let s = start(Mode::Submission, Transport::Plain, config()).await;
    let mut c = Client::connect(&s, GREETING).await;
    let r = c.cmd("EHLO client.test", "250 ").await;
    assert!(!r
        .lines
        .iter()
        .any(|l| l.contains("AUTH") || l.contains("STARTTLS")));
    c.cmd(
        &format!("AUTH PLAIN {}", plain("alice@example.org", PASSWORD)),
        "530 5.7.0",
    )
    .await;
    c.cmd("MAIL FROM:<alice@example.org>", "530 5.7.0").await;
}
