//! POP3 end to end on a real node (network 127.0.51.0/24): mail arrives over SMTP → queue →
//! LMTP → store, and is read over POP3 with raw bytes (greeting, CAPA before and after STLS,
//! USER/PASS, AUTH PLAIN in both forms, STAT/LIST/UIDL/RETR/TOP, dot-stuffing, a 4 MB message,
//! DELE+RSET, DELE+QUIT, IN-USE, `\Seen` after RETR at QUIT as IMAP sees it (not after TOP,
//! not without QUIT), bad commands, overlong and unterminated lines, wrong state,
//! idle timeout, brute-force delays and limits), with Python's poplib (STLS and POP3_SSL) and
//! with fetchmail (STLS, keeping mail; POP3S, deleting it). Then the node restarts with
//! plaintext login off: the UIDLs are unchanged, login before STLS is refused, and SIGTERM
//! gives a logged-in session its `-ERR` goodbye.
//!
//! Every wait is bounded; the node is killed when the test ends.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use common::line::{bounded, Lines, Stream, Tls, BOUND};
use common::{configure_store_node, TestCluster, Tuning};
use mailnode::store::{Store, StoreConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const NET: u8 = 51;
const ALICE: &str = "alice@example.org";
const ALICE_PW: &str = "alice pass";
const CAROL: &str = "carol@example.org";
const CAROL_PW: &str = "carol-pass";
/// `[pop3]` of the test node: small delays and limits so the brute-force checks are quick.
const IDLE_SECS: u64 = 3;

crate::line_client!(
    /// A raw POP3 client: lines in, bytes out, every read bounded.
    Client
);

impl Client {
    async fn over(s: Box<dyn Stream>) -> (Client, String) {
        let mut c = Client(Lines::new(s));
        let greeting = c.line().await;
        (c, greeting)
    }

    async fn plain(addr: &str) -> Client {
        let tcp = bounded("connect", TcpStream::connect(addr)).await.unwrap();
        let (c, greeting) = Client::over(Box::new(tcp)).await;
        assert!(greeting.starts_with("+OK "), "{greeting}");
        c
    }

    /// Connects from a chosen loopback address (for the per-address limits).
    async fn plain_from(src: &str, addr: &str) -> Client {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
        let tcp = bounded("connect", sock.connect(addr.parse::<SocketAddr>().unwrap()))
            .await
            .unwrap();
        let (c, greeting) = Client::over(Box::new(tcp)).await;
        assert!(greeting.starts_with("+OK "), "{greeting}");
        c
    }

    async fn tls(addr: &str, tls: &Tls) -> Client {
        let tcp = bounded("connect", TcpStream::connect(addr)).await.unwrap();
        let s = tls.wrap(Box::new(tcp)).await;
        let (c, greeting) = Client::over(s).await;
        assert!(greeting.starts_with("+OK "), "{greeting}");
        c
    }

    /// STLS, then the handshake; returns the encrypted client.
    async fn stls(mut self, tls: &Tls) -> Client {
        assert!(self.cmd("STLS").await.starts_with("+OK"));
        Client(self.0.upgrade(tls).await)
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(line).await;
        self.line().await
    }

    /// The data of a multi-line response, raw (stuffing intact), without the final `.` line.
    async fn multi(&mut self) -> Vec<u8> {
        let mut data = Vec::new();
        loop {
            let line = self
                .raw_line()
                .await
                .expect("EOF inside a multi-line response");
            if line == b".\r\n" {
                return data;
            }
            data.extend_from_slice(&line);
        }
    }

    async fn multi_text(&mut self) -> Vec<String> {
        String::from_utf8(self.multi().await)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    async fn login(&mut self, user: &str, pass: &str) -> String {
        let r = self.cmd(&format!("USER {user}")).await;
        assert!(r.starts_with("+OK"), "USER: {r}");
        self.cmd(&format!("PASS {pass}")).await
    }

    /// The server closed the connection (after any lines still buffered).
    async fn assert_closed(&mut self) {
        let rest = self.line().await;
        assert_eq!(rest, "", "expected EOF");
    }
}

/// The node's config: mail listeners, a store, POP3 on 2110 (STLS) and 2995 (POP3S).
fn configure(c: &TestCluster, plaintext: bool) {
    let ip = &c.nodes[0].ip;
    let mailstore = format!(
        r#"pop3_listen = "{ip}:2110"
pop3s_listen = "{ip}:2995"
imap_listen = "{ip}:2143"
allow_plaintext_login = {plaintext}
"#
    );
    let sections = format!(
        r#"[pop3]
idle_timeout_secs = {IDLE_SECS}
auth_failure_delay_ms = 100
auth_failure_delay_max_ms = 400
auth_failures_per_ip = 5
auth_failures_per_user = 4
"#
    );
    configure_store_node(c, "lmtp_retry_ms = 200", &mailstore, &sections);
}

/// Sends one message over SMTP (dot-stuffing its lines); panics unless it gets a 250.
async fn smtp_send(mx: &str, rcpt: &str, message: &str) {
    let tcp = bounded("SMTP connect", TcpStream::connect(mx))
        .await
        .unwrap();
    let (mut c, greeting) = Client::over(Box::new(tcp)).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    c.send("EHLO test.example").await;
    loop {
        let l = c.line().await;
        assert!(l.starts_with("250"), "{l}");
        if l.as_bytes().get(3) == Some(&b' ') {
            break;
        }
    }
    for step in [
        "MAIL FROM:<sender@remote.example>".to_string(),
        format!("RCPT TO:<{rcpt}>"),
        "DATA".to_string(),
    ] {
        let r = c.cmd(&step).await;
        assert!(r.starts_with('2') || r.starts_with('3'), "{step}: {r}");
    }
    let mut data = String::with_capacity(message.len() + 1024);
    for line in message.split_inclusive("\r\n") {
        if line.starts_with('.') {
            data.push('.');
        }
        data.push_str(line);
    }
    data.push_str(".\r\n");
    bounded("DATA", c.s.write_all(data.as_bytes()))
        .await
        .unwrap();
    let r = c.line().await;
    assert!(r.starts_with("250"), "end of DATA: {r}");
    let _ = c.cmd("QUIT").await;
}

/// Logs in, returns STAT's message count, logs out.
async fn stat(addr: &str) -> u64 {
    let mut c = Client::plain(addr).await;
    let r = c.login(ALICE, ALICE_PW).await;
    assert!(r.starts_with("+OK"), "{r}");
    let s = c.cmd("STAT").await;
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    s.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Sends a message and waits until alice's maildrop holds `count` messages.
async fn deliver(mx: &str, pop: &str, message: &str, count: u64) {
    smtp_send(mx, ALICE, message).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stat(pop).await < count {
        assert!(Instant::now() < deadline, "message {count} never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `n uid` lines of UIDL as pairs.
fn uidl_pairs(lines: &[String]) -> Vec<(u32, String)> {
    lines
        .iter()
        .map(|l| {
            let (n, id) = l.split_once(' ').unwrap();
            (n.parse().unwrap(), id.to_string())
        })
        .collect()
}

/// Un-stuffs raw multi-line data (what a client does).
fn unstuff(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for line in raw.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 must be installed");
    assert!(
        out.status.success(),
        "python: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const BIG_LINES: usize = 50_000;

fn big_message() -> String {
    let mut m = String::from("From: sender@remote.example\r\nSubject: big\r\n\r\n");
    for i in 0..BIG_LINES {
        if i % 1000 == 0 {
            m.push_str(".dot line\r\n");
        }
        m.push_str(&format!("{i:08} {}\r\n", "x".repeat(70)));
    }
    m.push_str("big end\r\n");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_end_to_end() {
    let mut c = TestCluster::new(NET, 1, Tuning::default());
    configure(&c, true);
    c.node(1).start();
    let api = c.api(1);
    api.wait_ready(Duration::from_secs(20)).await;
    let ip = c.nodes[0].ip.clone();
    let (mx, pop, pops) = (
        format!("{ip}:2525"),
        format!("{ip}:2110"),
        format!("{ip}:2995"),
    );
    let ca = c.pki.join("ca.pem");
    let tls = Tls::new(&ca, &ip);
    api.add_users("example.org", &[(ALICE, ALICE_PW), (CAROL, CAROL_PW)])
        .await;

    // An empty maildrop (no INBOX yet) is a maildrop with no messages.
    assert_eq!(stat(&pop).await, 0);
    deliver(
        &mx,
        &pop,
        "From: sender@remote.example\r\nSubject: one\r\n\r\nfirst message\r\nline two\r\n",
        1,
    )
    .await;
    deliver(
        &mx,
        &pop,
        "From: sender@remote.example\r\nSubject: dots\r\n\r\n.hidden\r\n..two dots\r\n.\r\nafter\r\n",
        2,
    )
    .await;
    let big = big_message();
    deliver(&mx, &pop, &big, 3).await;

    // Boxed: the phases' futures together would overflow the test thread's stack in debug.
    Box::pin(raw_protocol(&pop, &tls)).await;
    Box::pin(transaction(&pop)).await;
    Box::pin(seen_at_quit(&pop, &format!("{ip}:2143"))).await;
    Box::pin(limits(&pop)).await;
    Box::pin(brute_force(&pop)).await;
    Box::pin(poplib(&ip, &ca)).await;
    Box::pin(fetchmail(&ip, &ca, c.tmp.path(), &pop)).await;

    // New mail after the expunges gets a new UIDL; record the listing before the restart.
    deliver(&mx, &pop, "Subject: later\r\n\r\nlater\r\n", 1).await;
    let mut p = Client::plain(&pop).await;
    assert!(p.login(ALICE, ALICE_PW).await.starts_with("+OK"));
    assert!(p.cmd("UIDL").await.starts_with("+OK"));
    let uidls = uidl_pairs(&p.multi_text().await);
    assert!(p.cmd("QUIT").await.starts_with("+OK"));

    // Restart with plaintext login off: UIDLs survive, login needs TLS.
    c.node(1).terminate(Duration::from_secs(15));
    configure(&c, false);
    c.node(1).start();
    api.wait_ready(Duration::from_secs(20)).await;
    let mut p = Client::plain(&pop).await;
    let capa = {
        assert!(p.cmd("CAPA").await.starts_with("+OK"));
        p.multi_text().await
    };
    assert!(capa.contains(&"STLS".to_string()), "{capa:?}");
    assert!(
        !capa.iter().any(|l| l == "USER" || l.starts_with("SASL")),
        "{capa:?}"
    );
    let r = p.cmd(&format!("USER {ALICE}")).await;
    assert!(
        r.starts_with("-ERR [SYS/PERM]") && r.contains("STLS"),
        "{r}"
    );
    let r = p.cmd(&format!("PASS {ALICE_PW}")).await;
    assert!(r.starts_with("-ERR [SYS/PERM]"), "{r}");
    let r = p
        .cmd(&format!("AUTH PLAIN {}", plain_ir(ALICE, ALICE_PW)))
        .await;
    assert!(r.starts_with("-ERR [SYS/PERM]"), "{r}");
    let mut p = p.stls(&tls).await;
    assert!(p.cmd("CAPA").await.starts_with("+OK"));
    let capa = p.multi_text().await;
    assert!(capa.contains(&"USER".to_string()) && !capa.contains(&"STLS".to_string()));
    assert!(p.login(ALICE, ALICE_PW).await.starts_with("+OK"));
    assert!(p.cmd("UIDL").await.starts_with("+OK"));
    assert_eq!(
        uidl_pairs(&p.multi_text().await),
        uidls,
        "UIDLs changed across the restart"
    );
    assert!(p.cmd("QUIT").await.starts_with("+OK"));

    // SIGTERM: a logged-in POP3S session gets its goodbye, and nothing is expunged.
    let mut s = Client::tls(&pops, &tls).await;
    assert!(s.login(ALICE, ALICE_PW).await.starts_with("+OK"));
    assert!(s.cmd("DELE 1").await.starts_with("+OK"));
    c.node(1).signal(nix::sys::signal::Signal::SIGTERM);
    let bye = s.line().await;
    assert_eq!(bye, "-ERR server shutting down");
    s.assert_closed().await;
    let mut child = c.node(1).child.take().unwrap();
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
    let store = Store::open(c.nodes[0].dir.join("mailstore"), StoreConfig::default()).unwrap();
    let inbox = store.open_mailbox(ALICE, "INBOX").await.unwrap();
    assert_eq!(
        inbox.snapshot().unwrap().messages.len(),
        1,
        "DELE without QUIT applied"
    );
}

fn plain_ir(user: &str, pass: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"))
}

/// Greeting, CAPA before and after STLS, wrong state, bad commands, logins.
async fn raw_protocol(pop: &str, tls: &Tls) {
    let mut p = Client::plain(pop).await;
    assert!(p.cmd("CAPA").await.starts_with("+OK"));
    let capa = p.multi_text().await;
    for cap in [
        "TOP",
        "UIDL",
        "USER",
        "SASL PLAIN",
        "STLS",
        "RESP-CODES",
        "PIPELINING",
    ] {
        assert!(capa.contains(&cap.to_string()), "{cap} missing: {capa:?}");
    }
    // Wrong state and bad commands: -ERR, and the session goes on.
    for bad in ["STAT", "RETR 1", "FOO"] {
        let r = p.cmd(bad).await;
        assert!(r.starts_with("-ERR"), "{bad}: {r}");
    }
    assert!(p.cmd("CAPA").await.starts_with("+OK"));
    p.multi().await;
    // After STLS: no STLS in CAPA, USER still offered, and a plain USER from before is gone.
    assert!(p.cmd(&format!("USER {ALICE}")).await.starts_with("+OK"));
    let mut p = p.stls(tls).await;
    assert!(p.cmd("CAPA").await.starts_with("+OK"));
    let capa = p.multi_text().await;
    assert!(!capa.contains(&"STLS".to_string()), "{capa:?}");
    assert!(capa.contains(&"USER".to_string()), "{capa:?}");
    assert!(p.cmd(&format!("PASS {ALICE_PW}")).await.starts_with("-ERR"));
    assert!(p.cmd("STLS").await.starts_with("-ERR"));
    // AUTH PLAIN with an initial response.
    let r = p
        .cmd(&format!("AUTH PLAIN {}", plain_ir(ALICE, ALICE_PW)))
        .await;
    assert!(r.starts_with("+OK"), "{r}");
    assert!(
        p.cmd("USER x").await.starts_with("-ERR"),
        "USER after login"
    );
    assert!(p.cmd("STLS").await.starts_with("-ERR"));
    // A second session for the same maildrop: IN-USE, after a successful password check.
    let mut q = Client::plain(pop).await;
    let r = q.login(ALICE, ALICE_PW).await;
    assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
    assert!(p.cmd("QUIT").await.starts_with("+OK"));
    p.assert_closed().await;
    // Released at QUIT: AUTH PLAIN with a continuation now works.
    assert!(q.cmd("AUTH PLAIN").await.starts_with("+ "));
    let r = q.cmd(&plain_ir(ALICE, ALICE_PW)).await;
    assert!(r.starts_with("+OK maildrop has 3 messages"), "{r}");
    assert!(q.cmd("QUIT").await.starts_with("+OK"));
    // Bare AUTH lists mechanisms; cancelled and malformed exchanges; unknown mechanisms.
    let mut r = Client::plain(pop).await;
    assert!(r.cmd("AUTH").await.starts_with("+OK"));
    assert_eq!(r.multi_text().await, ["PLAIN"]);
    assert!(r.cmd("AUTH PLAIN").await.starts_with("+ "));
    assert!(r.cmd("*").await.starts_with("-ERR"));
    assert!(r.cmd("AUTH PLAIN !!!").await.starts_with("-ERR"));
    assert!(r.cmd("AUTH CRAM-MD5").await.starts_with("-ERR"));
    assert!(r.cmd("QUIT").await.starts_with("+OK"));
    r.assert_closed().await;
}

/// STAT/LIST/UIDL/RETR/TOP, dot-stuffing, DELE+RSET, an aborted session, DELE+QUIT.
async fn transaction(pop: &str) {
    let mut p = Client::plain(pop).await;
    assert!(p.login(ALICE, ALICE_PW).await.starts_with("+OK"));
    assert!(p.cmd("LIST").await.starts_with("+OK 3 messages"));
    let sizes: Vec<u64> = p
        .multi_text()
        .await
        .iter()
        .map(|l| l.split_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert_eq!(sizes.len(), 3);
    let stat = p.cmd("STAT").await;
    assert_eq!(stat, format!("+OK 3 {}", sizes.iter().sum::<u64>()));
    assert_eq!(p.cmd("LIST 2").await, format!("+OK 2 {}", sizes[1]));
    assert!(p.cmd("LIST 4").await.starts_with("-ERR"));
    assert!(p.cmd("LIST 0").await.starts_with("-ERR"));
    assert!(p.cmd("UIDL").await.starts_with("+OK"));
    let uidls = uidl_pairs(&p.multi_text().await);
    assert_eq!(uidls.len(), 3);
    for (_, id) in &uidls {
        let (v, u) = id.split_once('.').unwrap();
        assert!(u32::from_str_radix(v, 16).is_ok() && u32::from_str_radix(u, 16).is_ok());
    }
    assert_eq!(p.cmd("UIDL 3").await, format!("+OK 3 {}", uidls[2].1));

    // RETR: exact size, CRLF lines, dot-stuffed; the stored message ends with what was sent.
    for (i, size) in sizes.iter().enumerate() {
        let r = p.cmd(&format!("RETR {}", i + 1)).await;
        assert_eq!(r, format!("+OK {size} octets"));
        let raw = p.multi().await;
        let plain = unstuff(&raw);
        assert_eq!(plain.len() as u64, *size, "RETR {} size", i + 1);
        if i == 1 {
            let text = String::from_utf8(raw.clone()).unwrap();
            assert!(
                text.ends_with("\r\n\r\n..hidden\r\n...two dots\r\n..\r\nafter\r\n"),
                "{text}"
            );
        }
        if i == 2 {
            assert!(plain.ends_with(big_message().split("\r\n\r\n").nth(1).unwrap().as_bytes()));
            assert!(*size > 4_000_000);
        }
    }
    // TOP: the header, the blank line, n body lines.
    assert!(p.cmd("TOP 1 0").await.starts_with("+OK"));
    let top0 = String::from_utf8(p.multi().await).unwrap();
    assert!(
        top0.contains("Subject: one\r\n") && top0.ends_with("\r\n\r\n"),
        "{top0}"
    );
    assert!(p.cmd("TOP 1 1").await.starts_with("+OK"));
    let top1 = String::from_utf8(p.multi().await).unwrap();
    assert_eq!(top1, format!("{top0}first message\r\n"));
    assert!(p.cmd("TOP 3 2").await.starts_with("+OK"));
    let top_big = String::from_utf8(p.multi().await).unwrap();
    let first_lines = format!("\r\n\r\n..dot line\r\n00000000 {}\r\n", "x".repeat(70));
    assert!(top_big.ends_with(&first_lines), "{top_big}");
    assert!(top_big.len() < 2000);

    // DELE hides a message until RSET.
    assert_eq!(p.cmd("DELE 1").await, "+OK message 1 deleted");
    assert!(p.cmd("DELE 1").await.starts_with("-ERR"));
    for cmd in ["RETR 1", "TOP 1 0", "LIST 1", "UIDL 1"] {
        assert!(
            p.cmd(cmd).await.starts_with("-ERR"),
            "{cmd} of a deleted message"
        );
    }
    assert_eq!(
        p.cmd("STAT").await,
        format!("+OK 2 {}", sizes[1] + sizes[2])
    );
    assert!(p
        .cmd("RSET")
        .await
        .starts_with("+OK maildrop has 3 messages"));
    assert!(p.cmd("RETR 1").await.starts_with("+OK"));
    p.multi().await;
    // A session that ends without QUIT changes nothing, and frees the maildrop.
    assert!(p.cmd("DELE 1").await.starts_with("+OK"));
    assert!(p.cmd("DELE 2").await.starts_with("+OK"));
    drop(p);
    let mut p = pop3_login_when_free(pop).await;
    assert_eq!(p.cmd("STAT").await, stat);
    // DELE + QUIT: expunged at UPDATE; the others keep their UIDLs.
    assert!(p.cmd("DELE 1").await.starts_with("+OK"));
    assert_eq!(
        p.cmd("QUIT").await,
        "+OK Mailnode POP3 server signing off (2 messages left)"
    );
    p.assert_closed().await;
    let mut p = Client::plain(pop).await;
    assert!(p
        .login(ALICE, ALICE_PW)
        .await
        .starts_with("+OK maildrop has 2 messages"));
    assert!(p.cmd("UIDL").await.starts_with("+OK"));
    let after = uidl_pairs(&p.multi_text().await);
    let ids = |v: &[(u32, String)]| v.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&uidls[1..]));
    assert_eq!(after[0].0, 1, "renumbered from 1 in a new session");
    // Pipelined commands are answered in order.
    p.send("NOOP\r\nSTAT\r\nLIST 1").await;
    assert_eq!(p.line().await, "+OK");
    assert!(p.line().await.starts_with("+OK 2 "));
    assert_eq!(p.line().await, format!("+OK 1 {}", sizes[1]));
    assert!(p.cmd("QUIT").await.starts_with("+OK"));
}

/// Logs in to POP3, waiting while an aborted session of alice's still holds the maildrop.
async fn pop3_login_when_free(pop: &str) -> Client {
    let deadline = Instant::now() + BOUND;
    loop {
        let mut p = Client::plain(pop).await;
        let r = p.login(ALICE, ALICE_PW).await;
        if r.starts_with("+OK") {
            return p;
        }
        assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
        assert!(
            Instant::now() < deadline,
            "the aborted session kept its lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends an IMAP command and returns every line up to the tagged one.
async fn imap(c: &mut Client, tag: &str, cmd: &str) -> Vec<String> {
    c.send(&format!("{tag} {cmd}")).await;
    let mut lines = Vec::new();
    loop {
        let l = c.line().await;
        assert!(!l.is_empty(), "IMAP connection closed after {lines:?}");
        let done = l.starts_with(&format!("{tag} "));
        lines.push(l);
        if done {
            assert!(
                lines.last().unwrap().starts_with(&format!("{tag} OK")),
                "{cmd}: {lines:?}"
            );
            return lines;
        }
    }
}

/// Which messages IMAP reports `\Seen` in these `* n FETCH (… FLAGS (…))` lines, by number.
fn seen_numbers(lines: &[String]) -> Vec<u32> {
    lines
        .iter()
        .filter(|l| l.contains(" FETCH (") && l.contains("\\Seen"))
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect()
}

/// The messages of the selected mailbox that have `\Seen`, by number.
async fn seen_flags(c: &mut Client, tag: &str) -> Vec<u32> {
    seen_numbers(&imap(c, tag, "FETCH 1:* (FLAGS)").await)
}

/// RETR marks a message `\Seen` when the session QUITs (the UPDATE state, as Cyrus and Dovecot
/// do), and an IMAP session on the mailbox sees it; TOP does not, and a session that ends
/// without QUIT changes nothing (its RETRs included).
async fn seen_at_quit(pop: &str, imap_addr: &str) {
    let tcp = bounded("IMAP connect", TcpStream::connect(imap_addr))
        .await
        .unwrap();
    let (mut i, greeting) = Client::over(Box::new(tcp)).await;
    assert!(greeting.starts_with("* OK"), "{greeting}");
    imap(&mut i, "a", &format!("LOGIN {ALICE} \"{ALICE_PW}\"")).await;
    let sel = imap(&mut i, "b", "SELECT INBOX").await;
    assert!(sel.contains(&"* 2 EXISTS".to_string()), "{sel:?}");
    // `transaction` retrieved every message in a session that ended without QUIT.
    assert_eq!(
        seen_flags(&mut i, "c").await,
        Vec::<u32>::new(),
        "RETR without QUIT"
    );

    // RETR, then the connection drops: still nothing.
    let mut p = pop3_login_when_free(pop).await;
    assert!(p.cmd("RETR 1").await.starts_with("+OK"));
    p.multi().await;
    drop(p);
    let mut p = pop3_login_when_free(pop).await;
    // TOP is no retrieval.
    assert!(p.cmd("TOP 1 0").await.starts_with("+OK"));
    p.multi().await;
    assert!(p.cmd("TOP 2 3").await.starts_with("+OK"));
    p.multi().await;
    assert!(p.cmd("QUIT").await.starts_with("+OK"));
    p.assert_closed().await;
    assert_eq!(
        seen_flags(&mut i, "d").await,
        Vec::<u32>::new(),
        "TOP + QUIT"
    );

    // RETR 2 + QUIT: \Seen, announced to the open IMAP session and stored.
    let mut p = pop3_login_when_free(pop).await;
    assert!(p.cmd("RETR 2").await.starts_with("+OK"));
    p.multi().await;
    assert!(p.cmd("QUIT").await.starts_with("+OK"));
    p.assert_closed().await;
    let noop = imap(&mut i, "e", "NOOP").await;
    assert_eq!(seen_numbers(&noop), [2], "NOOP after RETR + QUIT: {noop:?}");
    assert_eq!(seen_flags(&mut i, "f").await, [2]);
    imap(&mut i, "g", "LOGOUT").await;
}

/// Overlong lines, unterminated lines, too many errors, idle timeout.
async fn limits(pop: &str) {
    let mut p = Client::plain(pop).await;
    let long = format!("USER {}", "a".repeat(300));
    let r = p.cmd(&long).await;
    assert!(r.starts_with("-ERR line too long"), "{r}");
    assert!(
        p.cmd("CAPA").await.starts_with("+OK"),
        "the session goes on"
    );
    p.multi().await;
    // A line that never ends closes the session.
    let endless = vec![b'x'; 20_000];
    let _ = p.s.write_all(&endless).await;
    assert!(p.line().await.starts_with("-ERR"));
    p.assert_closed().await;
    // Too many errors (max_errors, 10 by default) close the session.
    let mut p = Client::plain(pop).await;
    for i in 0..9 {
        assert!(p.cmd("BOGUS").await.starts_with("-ERR"), "error {i}");
    }
    assert!(p.cmd("BOGUS").await.starts_with("-ERR"));
    assert_eq!(p.line().await, "-ERR too many errors, closing connection");
    p.assert_closed().await;
    // Idle timeout: -ERR goodbye, then close; nothing of the session is applied.
    let mut p = Client::plain(pop).await;
    assert!(p.login(ALICE, ALICE_PW).await.starts_with("+OK"));
    assert!(p.cmd("DELE 1").await.starts_with("+OK"));
    let started = Instant::now();
    let r = p.line().await;
    assert!(r.starts_with("-ERR autologout"), "{r}");
    assert!(started.elapsed() >= Duration::from_secs(IDLE_SECS) - Duration::from_millis(100));
    p.assert_closed().await;
    let mut p = Client::plain(pop).await;
    assert!(p
        .login(ALICE, ALICE_PW)
        .await
        .starts_with("+OK maildrop has 2 messages"));
    assert!(p.cmd("QUIT").await.starts_with("+OK"));
}

/// Failed logins get slower; a session, an address and a user name each have a limit.
async fn brute_force(pop: &str) {
    let attacker = format!("127.0.{NET}.100");
    let mut p = Client::plain_from(&attacker, pop).await;
    let mut delays = Vec::new();
    for i in 0..3 {
        let t = Instant::now();
        let r = p.login(&format!("guess{i}@example.org"), "wrong").await;
        delays.push(t.elapsed());
        assert!(r.starts_with("-ERR [AUTH]"), "{r}");
    }
    // max_auth_failures (3): the third failure closes the session.
    p.assert_closed().await;
    assert!(delays[0] >= Duration::from_millis(100), "{delays:?}");
    assert!(delays[1] >= Duration::from_millis(200), "{delays:?}");
    assert!(delays[2] >= Duration::from_millis(400), "{delays:?}");
    // Two more from the address reach auth_failures_per_ip (5): the fifth closes.
    let mut p = Client::plain_from(&attacker, pop).await;
    assert!(p
        .login("guess3@example.org", "wrong")
        .await
        .starts_with("-ERR [AUTH]"));
    let r = p.login("guess4@example.org", "wrong").await;
    assert!(r.starts_with("-ERR [AUTH]") && r.contains("closing"), "{r}");
    p.assert_closed().await;
    // Now even the right password from that address is refused without being checked.
    let mut p = Client::plain_from(&attacker, pop).await;
    let r = p.login(ALICE, ALICE_PW).await;
    assert!(
        r.starts_with("-ERR [SYS/TEMP]") && r.contains("address"),
        "{r}"
    );
    p.assert_closed().await;
    // Another address is unaffected.
    let mut p = Client::plain_from(&format!("127.0.{NET}.101"), pop).await;
    assert!(p.login(ALICE, ALICE_PW).await.starts_with("+OK"));
    assert!(p.cmd("QUIT").await.starts_with("+OK"));
    // A user guessed at from several addresses (auth_failures_per_user = 4) is locked, even
    // with the right password, while other users are not.
    for (k, src) in [102, 103].iter().enumerate() {
        let mut p = Client::plain_from(&format!("127.0.{NET}.{src}"), pop).await;
        for j in 0..2 {
            let r = p.login(CAROL, &format!("wrong{k}{j}")).await;
            assert!(r.starts_with("-ERR [AUTH]"), "{r}");
        }
        assert!(p.cmd("QUIT").await.starts_with("+OK"));
    }
    let mut p = Client::plain_from(&format!("127.0.{NET}.104"), pop).await;
    let r = p.login(CAROL, CAROL_PW).await;
    assert!(
        r.starts_with("-ERR [SYS/TEMP]") && r.contains("user"),
        "{r}"
    );
    assert!(p.login(ALICE, ALICE_PW).await.starts_with("+OK"));
    assert!(p.cmd("QUIT").await.starts_with("+OK"));
}

/// Python's poplib over STLS and over POP3S: what it retrieves matches the raw protocol.
async fn poplib(ip: &str, ca: &Path) {
    let script = r#"
import json, poplib, ssl, sys
ip, ca, user, pw = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
out = {}
p = poplib.POP3(ip, 2110, timeout=10)
out['capa_plain'] = sorted(p.capa().keys())
p.stls(context=ctx)
out['capa_tls'] = sorted(p.capa().keys())
p.user(user)
p.pass_(pw)
out['stat'] = list(p.stat())
out['list'] = [l.decode() for l in p.list()[1]]
out['uidl'] = [l.decode() for l in p.uidl()[1]]
resp, lines, octets = p.retr(1)
out['retr1'] = [l.decode() for l in lines]
out['retr1_octets'] = octets
resp, lines, octets = p.retr(2)
out['retr2_lines'] = len(lines)
out['retr2_last'] = lines[-1].decode()
out['retr2_dots'] = sum(1 for l in lines if l == b'.dot line')
out['top'] = [l.decode() for l in p.top(1, 1)[1]]
p.quit()
s = poplib.POP3_SSL(ip, 2995, context=ctx, timeout=10)
s.user(user)
s.pass_(pw)
out['ssl_stat'] = list(s.stat())
out['ssl_uidl'] = [l.decode() for l in s.uidl()[1]]
s.quit()
print(json.dumps(out))
"#;
    let ca = ca.to_str().unwrap().to_string();
    let ip = ip.to_string();
    let out = tokio::task::spawn_blocking(move || python(script, &[&ip, &ca, ALICE, ALICE_PW]))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let caps = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    assert!(caps("capa_plain").contains(&"STLS".to_string()), "{v}");
    assert!(!caps("capa_tls").contains(&"STLS".to_string()), "{v}");
    assert_eq!(v["stat"][0], 2, "{v}");
    assert_eq!(v["uidl"], v["ssl_uidl"], "{v}");
    let retr1: Vec<String> = caps("retr1");
    let tail = ["", ".hidden", "..two dots", ".", "after"];
    assert_eq!(&retr1[retr1.len() - tail.len()..], tail, "{v}");
    assert_eq!(v["retr2_last"], "big end", "{v}");
    assert_eq!(v["retr2_dots"], BIG_LINES as u64 / 1000, "{v}");
    let top = caps("top");
    assert_eq!(top.last().unwrap(), ".hidden", "{v}");
    assert!(top.contains(&"Subject: dots".to_string()), "{v}");
}

/// fetchmail: over STLS keeping mail (nothing changes), then over POP3S deleting it. fetchmail
/// checks only the certificate's names, not its IP addresses, so it is told the node's name.
async fn fetchmail(ip: &str, ca: &Path, tmp: &Path, pop: &str) {
    let dir = tmp.join("fetchmail");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("mbox");
    let run = |name: &str, port: u16, ssl: &str, keep: &str| {
        let rc = dir.join(name);
        let text = format!(
            "set no syslog\n\
             poll {ip} with proto POP3 port {port} uidl\n\
             \x20 user \"{ALICE}\" there with password \"{ALICE_PW}\" is root here\n\
             \x20 {ssl} sslcertck sslcertfile \"{ca}\" sslcommonname n1\n\
             \x20 fetchall {keep}\n\
             \x20 mda \"/bin/sh -c 'cat >> {out}'\"\n",
            ca = ca.display(),
            out = out.display(),
        );
        std::fs::write(&rc, text).unwrap();
        std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let o = Command::new("timeout")
            .arg("60")
            .arg("fetchmail")
            .arg("-f")
            .arg(&rc)
            .arg("--idfile")
            .arg(dir.join(format!("{name}.ids")))
            .arg("--nodetach")
            .arg("-v")
            .env("HOME", &dir)
            .output()
            .expect("fetchmail must be installed (apt-get install fetchmail)");
        let log = format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "fetchmail {name}: {log}");
        log
    };
    let log = tokio::task::block_in_place(|| run("keep.rc", 2110, "sslproto TLS1.2+", "keep"));
    assert!(log.contains("STLS"), "fetchmail did not use STLS: {log}");
    let mbox = std::fs::read_to_string(&out).unwrap();
    assert!(
        mbox.contains("Subject: dots") && mbox.contains("big end"),
        "{log}"
    );
    assert!(
        mbox.contains("\n.hidden\r\n") || mbox.contains("\n.hidden\n"),
        "{log}"
    );
    assert_eq!(stat(pop).await, 2, "keep must not delete");
    std::fs::remove_file(&out).unwrap();
    let log = tokio::task::block_in_place(|| run("delete.rc", 2995, "ssl", ""));
    let mbox = std::fs::read_to_string(&out).unwrap();
    assert!(
        mbox.contains("Subject: dots") && mbox.contains("big end"),
        "{log}"
    );
    assert_eq!(stat(pop).await, 0, "fetchmail's DELE+QUIT: {log}");
}
