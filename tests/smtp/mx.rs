//! MX good paths and protocol errors: EHLO, delivery with the envelope and `Received:`,
//! relay refusal, sequence errors, PIPELINING, BDAT, STARTTLS.

use mailnode::smtp::{BodyType, Mode, NotifyOn, Ret};

use super::harness::*;

const GREETING: &str = "220 mx.test ESMTP";

#[tokio::test]
async fn ehlo_advertises_the_extensions_and_simple_commands_work() {
    let s = start(Mode::Mx, Transport::StartTls, config()).await;
    let mut c = Client::connect(&s, GREETING).await;
    let r = c.cmd("EHLO client.test", "250 ").await;
    assert_eq!(r.lines[0], "250-mx.test Hello client.test");
    for kw in [
        "PIPELINING",
        "SIZE 52428800",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
        "CHUNKING",
        "DSN",
    ] {
        assert!(r.has_line(kw), "{kw} missing from {:?}", r.lines);
    }
    assert!(
        !r.lines.iter().any(|l| l.contains("AUTH")),
        "no AUTH on the MX"
    );
    c.cmd("HELO client.test", "250 mx.test").await;
    c.cmd("NOOP", "250 2.0.0").await;
    c.cmd("VRFY alice", "252 2.5.0").await;
    c.cmd("HELP", "214 2.0.0").await;
    c.cmd("RSET", "250 2.0.0").await;
    c.cmd("AUTH PLAIN AGFAYg==", "502 5.5.1").await;
    c.cmd("EXPN staff", "502 5.5.1").await;
    c.cmd("QUIT", "221 2.0.0").await;
    c.expect_closed().await;
}

#[tokio::test]
async fn local_mail_is_queued_with_its_envelope_and_a_received_header() {
    let s = start(Mode::Mx, Transport::Plain, config()).await;
    let mut c = Client::connect(&s, GREETING).await;
    c.cmd("EHLO client.test", "250 ").await;
    c.cmd(
        "MAIL FROM:<sender@remote.test> BODY=8BITMIME RET=HDRS ENVID=abc+2Bd SIZE=100",
        "250 2.1.0",
    )
    .await;
    c.cmd(
        "RCPT TO:<Alice@Example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Alice@Example.org",
        "250 2.1.5",
    )
    .await;
    c.cmd("DATA", "354").await;
    c.write("Subject: test\r\n\r\n..leading dot\r\nbody é\r\n.\r\n".as_bytes())
        .await;
    c.expect_reply("250 2.0.0 OK queued as Q1").await;

    {
        let accepted = s.queue.accepted.lock().unwrap();
        let m = &accepted[0];
        let e = &m.envelope;
        assert_eq!(e.mode, Mode::Mx);
        assert_eq!(e.sender.as_ref().unwrap().as_str(), "sender@remote.test");
        assert_eq!(e.recipients.len(), 1);
        let r = &e.recipients[0];
        assert_eq!(r.address.as_str(), "alice@example.org");
        let notify = NotifyOn {
            success: true,
            failure: true,
            delay: false,
        };
        assert_eq!(r.notify, Some(notify));
        assert_eq!(r.orcpt.as_ref().unwrap().address, "Alice@Example.org");
        assert_eq!(e.body, BodyType::EightBitMime);
        assert_eq!(e.ret, Some(Ret::Headers));
        assert_eq!(e.envid.as_deref(), Some("abc+d"));
        assert_eq!(e.helo, "client.test");
        assert_eq!((e.auth_user.as_deref(), e.tls.as_deref()), (None, None));
        assert!(m.content.starts_with(
            "Received: from client.test ([127.0.0.1])\r\n\tby mx.test (Mailnode) with ESMTP id "
        ));
        assert!(m.content.contains("\r\n\tfor <alice@example.org>;\r\n\t"));
        assert!(m
            .content
            .ends_with("+0000\r\nSubject: test\r\n\r\n.leading dot\r\nbody é\r\n"));
        assert!(
            !m.content.contains("Message-ID"),
            "the MX adds no Message-ID"
        );
        assert!(!m.spooled);
    }

    // A second transaction in the same session; two recipients, so no `for` clause.
    c.cmd("MAIL FROM:<>", "250 2.1.0").await;
    c.cmd("RCPT TO:<alice@example.org>", "250 2.1.5").await;
    c.cmd("RCPT TO:<postmaster@example.org>", "250 2.1.5").await;
    c.cmd("DATA", "354").await;
    c.write(b"Subject: bounce\r\n\r\nx\r\n.\r\n").await;
    c.expect_reply("250 2.0.0 OK queued as Q2").await;
    let accepted = s.queue.accepted.lock().unwrap();
    assert_eq!(accepted[1].envelope.sender, None);
    assert!(!accepted[1].content.contains("\tfor <"));
}

#[tokio::test]
async fn the_mx_is_not_an_open_relay_and_checks_recipients() {
    let s = start(Mode::Mx, Transport::Plain, config()).await;
    let mut c = Client::connect(&s, GREETING).await;
    c.cmd("EHLO client.test", "250 ").await;
    c.cmd("MAIL FROM:<bad@@remote.test>", "501 5.1.7").await;
    c.cmd("MAIL FROM:<sender@remote.test>", "250 2.1.0").await;
    c.cmd("RCPT TO:<someone@remote.test>", "554 5.7.1").await;
    c.cmd("RCPT TO:<nobody@example.org>", "550 5.1.1").await;
    c.cmd("RCPT TO:<bob@example.org>", "550 5.2.1").await;
    c.cmd("RCPT TO:<alice>", "501 5.1.3").await;
    c.cmd("RCPT TO:alice@example.org", "501 5.1.3").await;
    c.cmd("RCPT TO:<jøran@example.org>", "553 5.6.7").await;
    c.cmd("RCPT TO:<alice@example.org> FOO=1", "555 5.5.4")
        .await;
    c.cmd("DATA", "554 5.5.1").await;
    c.cmd("RCPT TO:<alice+tag@example.org>", "250 2.1.5").await;
    assert_eq!(s.queue.count(), 0);
}

#[tokio::test]
async fn commands_out_of_order_are_refused() {
    let s = start(Mode::Mx, Transport::Plain, config()).await;
    let mut c = Client::connect(&s, GREETING).await;
    c.cmd("MAIL FROM:<a@remote.test>", "503 5.5.1").await;
    c.cmd("EHLO client.test", "250 ").await;
    c.cmd("RCPT TO:<alice@example.org>", "503 5.5.1").await;
    c.cmd("DATA", "503 5.5.1").await;
    // A refused BDAT still consumes its chunk: "hello" must not be read as a command.
    c.write(b"BDAT 5\r\nhello").await;
    c.expect_reply("503 5.5.1").await;
    c.cmd("MAIL FROM:<a@remote.test>", "250 2.1.0").await;
    c.cmd("MAIL FROM:<a@remote.test>", "503 5.5.1").await;
    c.write(b"BDAT 3 LAST\r\nabc").await;
    c.expect_reply("554 5.5.1").await;
    c.cmd("LHLO client.test", "500 5.5.2").await;
    c.cmd("STARTTLS", "502 5.5.1").await;
    c.cmd("NOOP", "250 2.0.0").await;
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let s = start(Mode::Mx, Transport::Plain, config()).await;
    let mut c = Client::connect(&s, GREETING).await;
    c.write(
        b"EHLO client.test\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\n\
          RCPT TO:<nobody@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n",
    )
    .await;
    c.expect_reply("250 DSN").await;
    for want in ["250 2.1.0", "250 2.1.5", "550 5.1.1", "250 2.1.5", "354"] {
        c.expect_reply(want).await;
    }
    // The end of one message, a whole transaction and the start of the next in one write.
    c.write(
        b"Subject: one\r\n\r\nx\r\n.\r\nMAIL FROM:<s2@remote.test>\r\n\
          RCPT TO:<alice@example.org>\r\nDATA\r\n",
    )
    .await;
    for want in ["250 2.0.0 OK queued as Q1", "250 2.1.0", "250 2.1.5", "354"] {
        c.expect_reply(want).await;
    }
    c.write(b"Subject: two\r\n\r\ny\r\n.\r\nQUIT\r\n").await;
    c.expect_reply("250 2.0.0 OK queued as Q2").await;
    c.expect_reply("221 2.0.0").await;
    c.expect_closed().await;
    {
        let accepted = s.queue.accepted.lock().unwrap();
        assert_eq!(accepted[0].envelope.recipients.len(), 2);
        assert!(accepted[1].content.ends_with("Subject: two\r\n\r\ny\r\n"));
    }

    // Many pipelined commands from a client that reads late: all answered, in order.
    let mut c = Client::connect(&s, GREETING).await;
    let many = "NOOP\r\n".repeat(2000);
    c.write(many.as_bytes()).await;
    for _ in 0..2000 {
        c.expect_reply("250 2.0.0").await;
    }
}

#[tokio::test]
async fn bdat_chunks_are_taken_verbatim() {
    let s = start(Mode::Mx, Transport::Plain, config()).await;
    let mut c = Client::connect(&s, GREETING).await;
    c.cmd("EHLO client.test", "250 ").await;
    let first = "Subject: bdat\r\n\r\n";
    let second = "line one\r\n.dot stays\r\n";
    c.write(
        format!(
            "MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nBDAT {}\r\n{first}",
            first.len()
        )
        .as_bytes(),
    )
    .await;
    c.expect_reply("250 2.1.0").await;
    c.expect_reply("250 2.1.5").await;
    c.expect_reply(&format!("250 2.0.0 {} octets received", first.len()))
        .await;
    c.cmd("DATA", "503 5.5.1").await;
    c.cmd("RCPT TO:<carol@example.org>", "503 5.5.1").await;
    c.write(format!("BDAT {}\r\n{second}BDAT 0 LAST\r\n", second.len()).as_bytes())
        .await;
    c.expect_reply("250 2.0.0").await;
    c.expect_reply("250 2.0.0 OK queued as Q1").await;
    assert!(s.queue.last().ends_with(&format!("{first}{second}")));

    // A bad chunk fails the transaction; the chunks after it are consumed and refused.
    c.cmd("MAIL FROM:<s@remote.test>", "250 2.1.0").await;
    c.cmd("RCPT TO:<alice@example.org>", "250 2.1.5").await;
    c.write(b"BDAT 5\r\na\nb\r\n").await;
    c.expect_reply("500 5.5.2").await;
    c.write(b"BDAT 3 LAST\r\nx\r\n").await;
    c.expect_reply("503 5.5.1").await;
    c.cmd("NOOP", "250 2.0.0").await;
    assert_eq!(s.queue.count(), 1);
}

#[tokio::test]
async fn starttls_discards_pipelined_plaintext_and_resets_the_session() {
    let s = start(Mode::Mx, Transport::StartTls, config()).await;
    let mut c = Client::connect(&s, GREETING).await;
    c.cmd("EHLO client.test", "250 ").await;
    // Injected after STARTTLS in the same packet: must never run inside TLS.
    c.write(b"STARTTLS\r\nMAIL FROM:<evil@remote.test>\r\n")
        .await;
    c.expect_reply("220 2.0.0").await;
    c.finish_starttls().await;
    c.cmd("RCPT TO:<alice@example.org>", "503 5.5.1").await;
    c.cmd("MAIL FROM:<a@remote.test>", "503 5.5.1").await;
    let r = c.cmd("EHLO client.test", "250 ").await;
    assert!(!r.has_line("STARTTLS"), "no second STARTTLS: {:?}", r.lines);
    c.cmd("STARTTLS", "503 5.5.1").await;
    c.mail(
        "a@remote.test",
        &["alice@example.org"],
        "Subject: tls\r\n\r\nx\r\n",
    )
    .await;
    let accepted = s.queue.accepted.lock().unwrap();
    assert_eq!(accepted.len(), 1);
    let m = &accepted[0];
    assert!(
        m.content.contains("with ESMTPS (TLSv1.3 TLS13_"),
        "{}",
        m.content
    );
    assert!(m.envelope.tls.as_deref().unwrap().starts_with("TLSv1.3"));
}

#[tokio::test]
async fn tls_handshake_garbage_closes_only_that_connection() {
    let s = start(Mode::Mx, Transport::StartTls, config()).await;
    let mut bad = Client::connect(&s, GREETING).await;
    bad.cmd("STARTTLS", "220 2.0.0").await;
    bad.write(b"this is not a TLS ClientHello\r\n\r\n").await;
    // At most a TLS alert, then the end: no SMTP reply.
    let rest = bad.read_to_end().await;
    assert!(!rest.windows(2).any(|w| w == b"\r\n"), "{rest:?}");

    let implicit = start(Mode::Submission, Transport::Implicit, config()).await;
    let mut raw = tokio::net::TcpStream::connect(implicit.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw.write_all(b"EHLO plaintext.test\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = bounded("close", raw.read(&mut buf)).await.unwrap_or(0);
    assert!(
        !buf[..n].starts_with(b"220"),
        "no plaintext reply on an implicit-TLS port"
    );

    // Both servers still serve others.
    let mut good = Client::connect(&s, GREETING).await;
    good.cmd("EHLO client.test", "250 ").await;
    good.starttls().await;
    good.cmd("EHLO client.test", "250 ").await;
    let mut good = Client::connect_tls(&implicit, GREETING).await;
    good.cmd("EHLO client.test", "250 ").await;
}
