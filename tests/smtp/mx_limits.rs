//! Bad input and limits: long lines, bare LF, NUL, undeclared 8-bit, sizes, recipients, hop
//! count, error limit, idle timeout, shutdown, connection limit, spooling, queue failures.

use std::time::Duration;

use mailnode::smtp::{AcceptError, Mode, SmtpConfig};

use super::harness::*;

const GREETING: &str = "220 mx.test ESMTP";

async fn ready(s: &Server) -> Client {
    let mut c = Client::connect(s, GREETING).await;
    c.cmd("EHLO client.test", "250 ").await;
    c
}

/// MAIL, RCPT alice, DATA, then `content` and the terminator; returns the final reply.
async fn send(c: &mut Client, mail_params: &str, content: &[u8]) -> Reply {
    c.cmd(
        &format!("MAIL FROM:<s@remote.test>{mail_params}"),
        "250 2.1.0",
    )
    .await;
    c.cmd("RCPT TO:<alice@example.org>", "250 2.1.5").await;
    c.cmd("DATA", "354").await;
    c.write(content).await;
    c.write(b".\r\n").await;
    c.reply().await
}

#[tokio::test]
async fn unknown_commands_and_long_lines_are_errors_and_too_many_close_the_session() {
    let cfg = SmtpConfig {
        max_errors: 4,
        ..config()
    };
    let s = start(Mode::Mx, Transport::Plain, cfg).await;
    let mut c = ready(&s).await;
    c.cmd("FOO bar", "500 5.5.2").await;
    c.send(&format!("NOOP {}", "x".repeat(5000))).await;
    c.expect_reply("500 5.5.2 line too long").await;
    c.cmd("NOOP", "250 2.0.0").await;
    c.write(b"NOOP\n").await;
    c.expect_reply("500 5.5.2 bare LF").await;
    c.cmd("MAIL FROM:<a@remote.test> XFOO", "555 5.5.4").await;
    c.expect_reply("421 4.7.0").await;
    c.expect_closed().await;
}

#[tokio::test]
async fn bare_lf_in_data_closes_the_session_and_nothing_is_queued() {
    let s = start(Mode::Mx, Transport::Plain, config()).await;
    let mut c = ready(&s).await;
    c.cmd("MAIL FROM:<s@remote.test>", "250 2.1.0").await;
    c.cmd("RCPT TO:<alice@example.org>", "250 2.1.5").await;
    c.cmd("DATA", "354").await;
    // The SMTP smuggling shape: a "\n.\n" end that another server might honour.
    c.write(b"Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@remote.test>\r\n")
        .await;
    c.expect_reply("500 5.5.2").await;
    c.expect_closed().await;
    assert_eq!(s.queue.count(), 0);
}

#[tokio::test]
async fn bad_content_is_refused_after_the_transfer_and_the_session_goes_on() {
    let s = start(Mode::Mx, Transport::Plain, config()).await;
    let mut c = ready(&s).await;
    let long = format!("Subject: x\r\n\r\n{}\r\n", "y".repeat(999));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("", b"Subject: x\r\n\r\na\0b\r\n".to_vec(), "554 5.6.0"),
        (
            "",
            "Subject: x\r\n\r\nbody é\r\n".as_bytes().to_vec(),
            "554 5.6.0 8-bit",
        ),
        ("", long.into_bytes(), "554 5.6.0"),
        (
            " BODY=8BITMIME",
            "Subject: x\r\n\r\nbody é\r\n".as_bytes().to_vec(),
            "250 2.0.0",
        ),
        (
            " SMTPUTF8",
            "Subject: é\r\n\r\nbody é\r\n".as_bytes().to_vec(),
            "250 2.0.0",
        ),
        (
            " BODY=7BIT",
            b"Subject: x\r\n\r\nfine\r\n".to_vec(),
            "250 2.0.0",
        ),
    ];
    for (params, content, want) in cases {
        let r = send(&mut c, params, &content).await;
        assert!(r.last().starts_with(want), "{params:?}: {:?}", r.lines);
        c.cmd("NOOP", "250 2.0.0").await;
    }
    assert_eq!(s.queue.count(), 3);
    assert!(s.queue.last().contains("with ESMTP "));
    let accepted = s.queue.accepted.lock().unwrap();
    assert!(accepted[1].content.contains("with UTF8SMTP "));
}

#[tokio::test]
async fn size_limits_at_mail_and_after_the_data() {
    let cfg = SmtpConfig {
        max_message_size: 1000,
        ..config()
    };
    let s = start(Mode::Mx, Transport::Plain, cfg).await;
    let mut c = Client::connect(&s, GREETING).await;
    let r = c.cmd("EHLO client.test", "250 ").await;
    assert!(r.has_line("SIZE 1000"), "{:?}", r.lines);
    c.cmd("MAIL FROM:<s@remote.test> SIZE=1001", "552 5.3.4")
        .await;
    let big = "0123456789012345678901234567890123456789\r\n".repeat(50);
    let r = send(&mut c, " SIZE=10", big.as_bytes()).await;
    assert!(r.last().starts_with("552 5.3.4"), "{:?}", r.lines);
    c.cmd("MAIL FROM:<s@remote.test>", "250 2.1.0").await;
    c.cmd("RCPT TO:<alice@example.org>", "250 2.1.5").await;
    c.write(format!("BDAT {} LAST\r\n{big}", big.len()).as_bytes())
        .await;
    c.expect_reply("552 5.3.4").await;
    c.cmd("NOOP", "250 2.0.0").await;
    assert_eq!(s.queue.count(), 0);
}

#[tokio::test]
async fn recipients_and_hops_are_limited() {
    let cfg = SmtpConfig {
        max_recipients: 2,
        max_hops: 3,
        ..config()
    };
    let s = start(Mode::Mx, Transport::Plain, cfg).await;
    let mut c = ready(&s).await;
    c.cmd("MAIL FROM:<s@remote.test>", "250 2.1.0").await;
    c.cmd("RCPT TO:<alice@example.org>", "250 2.1.5").await;
    c.cmd("RCPT TO:<carol@example.org>", "250 2.1.5").await;
    c.cmd("RCPT TO:<postmaster@example.org>", "452 4.5.3").await;
    c.cmd("RSET", "250 2.0.0").await;
    let looped =
        "Received: from a\r\nReceived: from b\r\n\tby c\r\nReceived: d\r\nReceived: e\r\n\r\nx\r\n";
    let r = send(&mut c, "", looped.as_bytes()).await;
    assert!(r.last().starts_with("554 5.4.6"), "{:?}", r.lines);
    let fine = "Received: from a\r\nReceived: b\r\nReceived: c\r\n\r\nx\r\n";
    let r = send(&mut c, "", fine.as_bytes()).await;
    assert!(r.last().starts_with("250 2.0.0"), "{:?}", r.lines);
}

#[tokio::test]
async fn big_messages_are_spooled_to_disk_and_cleaned_up() {
    let cfg = SmtpConfig {
        spool_memory_limit: 1024,
        ..config()
    };
    let s = start(Mode::Mx, Transport::Plain, cfg).await;
    let mut c = ready(&s).await;
    let body: String = (0..2000).map(|i| format!("line {i}\r\n")).collect();
    let r = send(&mut c, "", format!("Subject: big\r\n\r\n{body}").as_bytes()).await;
    assert!(r.last().starts_with("250 2.0.0"), "{:?}", r.lines);
    {
        let accepted = s.queue.accepted.lock().unwrap();
        assert!(accepted[0].spooled);
        assert!(accepted[0].content.ends_with(&body));
    }
    // The test queue did not keep the file: it is gone with the message.
    assert_eq!(std::fs::read_dir(&s.spool).unwrap().count(), 0);
}

#[tokio::test]
async fn queue_failures_become_temporary_or_permanent_replies() {
    let s = start(Mode::Mx, Transport::Plain, config()).await;
    let mut c = ready(&s).await;
    let cases = [
        (AcceptError::NoSpace, "452 4.3.1"),
        (AcceptError::Temporary("busy".into()), "451 4.3.0"),
        (AcceptError::Permanent("no".into()), "554 5.3.0"),
    ];
    for (error, want) in cases {
        *s.queue.fail.lock().unwrap() = Some(error);
        let r = send(&mut c, "", b"Subject: x\r\n\r\nx\r\n").await;
        assert!(r.last().starts_with(want), "{:?}", r.lines);
    }
    *s.queue.fail.lock().unwrap() = None;
    let r = send(&mut c, "", b"Subject: x\r\n\r\nx\r\n").await;
    assert!(r.last().starts_with("250 2.0.0"), "{:?}", r.lines);
}

#[tokio::test]
async fn idle_clients_are_told_before_they_are_dropped() {
    let s = start_with(Mode::Mx, Transport::Plain, config(), |l| {
        l.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let mut c = ready(&s).await;
    c.expect_reply("421 4.4.2").await;
    c.expect_closed().await;

    let mut c = ready(&s).await;
    c.cmd("MAIL FROM:<s@remote.test>", "250 2.1.0").await;
    c.cmd("RCPT TO:<alice@example.org>", "250 2.1.5").await;
    c.cmd("DATA", "354").await;
    c.write(b"Subject: stalled\r\n").await;
    c.expect_reply("421 4.4.2").await;
    c.expect_closed().await;
    assert_eq!(s.queue.count(), 0);
}

#[tokio::test]
async fn shutdown_says_421_and_the_listener_drains() {
    let s = start(Mode::Mx, Transport::Plain, config()).await;
    let mut c = ready(&s).await;
    s.shutdown.trigger();
    c.expect_reply("421 4.3.2 mx.test shutting down").await;
    c.expect_closed().await;
    bounded("listener drain", s.task).await.unwrap();
}

#[tokio::test]
async fn connection_limit_rejects_with_421() {
    let s = start_with(Mode::Mx, Transport::Plain, config(), |l| {
        l.max_connections = 1
    })
    .await;
    let mut first = ready(&s).await;
    let mut second = Client::connect(&s, "421 4.7.0 mx.test too many connections").await;
    second.expect_closed().await;
    first.cmd("NOOP", "250 2.0.0").await;
    assert_eq!(s.stats.rejected(), 1);
}
