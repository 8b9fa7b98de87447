//! LMTP: LHLO only, one reply per accepted recipient after DATA or BDAT LAST — also when the
//! content itself is refused — and over quota as `452 4.2.2`.

use mailnode::smtp::Mode;

use super::harness::*;

const GREETING: &str = "220 mx.test LMTP";

#[tokio::test]
async fn lhlo_and_a_reply_per_recipient() {
    let s = start(Mode::Lmtp, Transport::Plain, config()).await;
    let mut c = Client::connect(&s, GREETING).await;
    c.cmd("MAIL FROM:<s@remote.test>", "503 5.5.1 send LHLO first")
        .await;
    c.cmd("EHLO mx1.test", "500 5.5.1").await;
    c.cmd("HELO mx1.test", "500 5.5.1").await;
    let r = c.cmd("LHLO mx1.test", "250 ").await;
    assert_eq!(r.lines[0], "250-mx.test");
    assert!(
        r.has_line("PIPELINING") && r.has_line("CHUNKING") && r.has_line("ENHANCEDSTATUSCODES")
    );
    assert!(!r
        .lines
        .iter()
        .any(|l| l.contains("AUTH") || l.contains("DSN")));
    c.cmd("MAIL FROM:<s@remote.test>", "250 2.1.0").await;
    c.cmd("RCPT TO:<alice@example.org>", "250 2.1.5").await;
    c.cmd("RCPT TO:<full@example.org>", "250 2.1.5").await;
    c.cmd("RCPT TO:<nobody@example.org>", "550 5.1.1").await;
    c.cmd("RCPT TO:<bob@example.org>", "550 5.2.1").await;
    c.cmd("RCPT TO:<postmaster@example.org>", "550 5.1.1").await;
    c.cmd("RCPT TO:<carol+box@example.org>", "250 2.1.5").await;
    c.cmd("DATA", "354").await;
    c.write(b"Subject: lmtp\r\n\r\nhello\r\n.\r\n").await;
    c.expect_reply("250 2.1.5 <alice@example.org>").await;
    c.expect_reply("452 4.2.2 <full@example.org>").await;
    c.expect_reply("250 2.1.5 <carol+box@example.org>").await;
    let delivered = s.store.delivered.lock().unwrap().clone();
    let rcpts: Vec<_> = delivered.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(rcpts, ["alice@example.org", "carol+box@example.org"]);
    assert!(delivered[0]
        .1
        .starts_with("Received: from mx1.test ([127.0.0.1])"));
    assert!(delivered[0].1.contains(" with LMTP id "));
    assert!(delivered[0].1.ends_with("Subject: lmtp\r\n\r\nhello\r\n"));
    assert_eq!(s.queue.count(), 0, "LMTP never goes to the queue");
}

#[tokio::test]
async fn refused_content_is_answered_once_per_recipient() {
    let s = start(Mode::Lmtp, Transport::Plain, config()).await;
    let mut c = Client::connect(&s, GREETING).await;
    c.cmd("LHLO mx1.test", "250 ").await;
    c.write(
        b"MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\n\
          RCPT TO:<carol@example.org>\r\nDATA\r\n",
    )
    .await;
    for want in ["250 2.1.0", "250 2.1.5", "250 2.1.5", "354"] {
        c.expect_reply(want).await;
    }
    c.write(b"Subject: x\r\n\r\nnul\0here\r\n.\r\n").await;
    c.expect_reply("554 5.6.0").await;
    c.expect_reply("554 5.6.0").await;
    c.cmd("NOOP", "250 2.0.0").await;
    assert!(s.store.delivered.lock().unwrap().is_empty());
}

#[tokio::test]
async fn bdat_last_gets_a_reply_per_recipient() {
    let s = start(Mode::Lmtp, Transport::Plain, config()).await;
    let mut c = Client::connect(&s, GREETING).await;
    c.cmd("LHLO mx1.test", "250 ").await;
    c.cmd("MAIL FROM:<s@remote.test>", "250 2.1.0").await;
    c.cmd("RCPT TO:<full@example.org>", "250 2.1.5").await;
    c.cmd("RCPT TO:<alice@example.org>", "250 2.1.5").await;
    let content = "Subject: chunked\r\n\r\nbody\r\n";
    c.write(format!("BDAT {} LAST\r\n{content}", content.len()).as_bytes())
        .await;
    c.expect_reply("452 4.2.2 <full@example.org>").await;
    c.expect_reply("250 2.1.5 <alice@example.org>").await;
    let delivered = s.store.delivered.lock().unwrap();
    assert!(delivered[0].1.ends_with(content));
}
