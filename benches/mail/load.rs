//! The load generator: raw SMTP clients on the benchmark's own tokio runtime, the same bytes
//! for both systems. A client connects, reads the greeting, says EHLO, then per message sends
//! `MAIL`, `RCPT` and `DATA` in one write (both servers offer PIPELINING), the message, and
//! waits for the `250`; after `per_connection` messages it says QUIT and connects again. Also
//! the idle sessions of the memory measurement: connected, greeted, EHLO answered, then silent.
//!
//! A failed message (connection refused or reset, a 4xx, a timeout) is retried on a new
//! connection a few times and counted; one that keeps failing ends the benchmark, since a
//! figure over messages that were never accepted would mean nothing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::measure::Latencies;

/// The envelope sender of every message (a remote domain: the MX case).
const SENDER: &str = "load@remote.example";
/// Time allowed for a connection, each reply, and each write.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts per message before the benchmark gives up.
const ATTEMPTS: usize = 5;
/// Longest reply line read.
const MAX_LINE: usize = 4096;

/// One SMTP connection.
pub struct Session {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

fn fail(what: impl Into<String>) -> std::io::Error {
    std::io::Error::other(what.into())
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .map_err(|_| fail(format!("{what}: no answer within {STEP_TIMEOUT:?}")))?
}

impl Session {
    /// Connects, reads the `220` greeting and says EHLO; checks that PIPELINING is offered.
    pub async fn open(addr: SocketAddr) -> std::io::Result<Session> {
        let tcp = timed("connect", TcpStream::connect(addr)).await?;
        tcp.set_nodelay(true)?;
        let (r, w) = tcp.into_split();
        let mut s = Session {
            r: BufReader::new(r),
            w,
        };
        s.expect("greeting", 220).await?;
        s.send(b"EHLO client.remote.example\r\n").await?;
        let ehlo = s.expect("EHLO", 250).await?;
        if !ehlo.to_ascii_uppercase().contains("PIPELINING") {
            return Err(fail(format!("the server offers no PIPELINING: {ehlo}")));
        }
        Ok(s)
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        timed("write", self.w.write_all(bytes)).await
    }

    /// Reads one (possibly multi-line) reply: its code and its text.
    async fn reply(&mut self) -> std::io::Result<(u16, String)> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = timed("reply", async {
                let mut limited = (&mut self.r).take(MAX_LINE as u64);
                limited.read_line(&mut line).await
            })
            .await?;
            if n == 0 {
                return Err(fail(format!("connection closed after {all:?}")));
            }
            all.push_str(&line);
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| fail(format!("not an SMTP reply: {line:?}")))?;
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, all));
            }
        }
    }

    async fn expect(&mut self, what: &str, code: u16) -> std::io::Result<String> {
        let (got, text) = self.reply().await?;
        if got != code {
            return Err(fail(format!(
                "{what}: expected {code}, got {}",
                text.trim()
            )));
        }
        Ok(text)
    }

    /// One message to `rcpt`; `Ok` once the server has answered `250` to the data.
    async fn deliver(&mut self, rcpt: &str, message: &[u8]) -> std::io::Result<()> {
        let envelope = format!("MAIL FROM:<{SENDER}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n");
        self.send(envelope.as_bytes()).await?;
        // Read all three replies before judging, so the session stays in step.
        let mail = self.reply().await?;
        let rcpt_reply = self.reply().await?;
        let data = self.reply().await?;
        if mail.0 != 250 || rcpt_reply.0 != 250 || data.0 != 354 {
            return Err(fail(format!(
                "MAIL/RCPT/DATA answered {} / {} / {}",
                mail.1.trim(),
                rcpt_reply.1.trim(),
                data.1.trim()
            )));
        }
        self.send(message).await?;
        self.expect("end of data", 250).await?;
        Ok(())
    }

    async fn quit(mut self) {
        if self.send(b"QUIT\r\n").await.is_ok() {
            let _ = self.reply().await;
        }
    }
}

/// The body of every message of one size: 76-character lines of letters, digits and spaces
/// (never a leading dot, so no dot-stuffing), enough that header + body is about `size` octets.
pub fn body(size: usize) -> Arc<Vec<u8>> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789";
    // The header `message` writes is about 230 octets.
    let target = size.saturating_sub(230);
    let mut out = Vec::with_capacity(target + 80);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    while out.len() + 78 <= target.max(78) {
        out.push(b'L');
        for _ in 0..75 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push(CHARS[(x % CHARS.len() as u64) as usize]);
        }
        out.extend_from_slice(b"\r\n");
    }
    Arc::new(out)
}

/// Header + body + the terminating dot of message `n` of a phase.
fn message(tag: &str, n: usize, rcpt: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "From: Load Generator <{SENDER}>\r\nTo: <{rcpt}>\r\nSubject: benchmark message {n} of {tag}\r\n\
         Date: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{n}.{tag}@remote.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(body);
    m.extend_from_slice(b".\r\n");
    m
}

/// What one load phase measured.
pub struct Load {
    /// Per message, from the start of its transaction (the connect, for the first message of
    /// a connection) to its `250`; `wall` is from the phase's start to the last `250`.
    pub accepted: Latencies,
    /// From the phase's start until every message was in its mailbox.
    pub delivered: Duration,
    /// Attempts that failed and were retried.
    pub retries: usize,
}

/// A phase: `total` messages with `body`, to `users` in turn, from `clients` concurrent
/// clients on `addr`, `per_connection` messages per connection. `in_mailboxes` counts the
/// messages in the side's mailboxes (a directory walk, run off the runtime every 20 ms); the
/// phase ends when it reaches `before + total`, or panics after `patience`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    addr: SocketAddr,
    tag: &str,
    users: Arc<Vec<String>>,
    body: Arc<Vec<u8>>,
    clients: usize,
    total: usize,
    per_connection: usize,
    in_mailboxes: Arc<dyn Fn() -> usize + Send + Sync>,
    patience: Duration,
) -> Load {
    let before = in_mailboxes();
    let target = before + total;
    let start = Instant::now();
    let watcher = {
        let count = in_mailboxes.clone();
        tokio::task::spawn_blocking(move || loop {
            let n = count();
            if n >= target {
                return Ok(start.elapsed());
            }
            if start.elapsed() > patience {
                return Err(n);
            }
            std::thread::sleep(Duration::from_millis(20));
        })
    };
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    // A JoinSet aborts the clients if the phase is dropped (Ctrl-C, a panic elsewhere).
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let (users, body, next, retries) =
            (users.clone(), body.clone(), next.clone(), retries.clone());
        let tag = tag.to_string();
        tasks.spawn(async move {
            let mut samples = Vec::new();
            let mut session: Option<Session> = None;
            let mut sent_on_session = 0;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let rcpt = &users[n % users.len()];
                let msg = message(&tag, n, rcpt, &body);
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let t = Instant::now();
                    let result = async {
                        let s = match session.as_mut() {
                            Some(s) => s,
                            None => session.insert(Session::open(addr).await?),
                        };
                        s.deliver(rcpt, &msg).await
                    }
                    .await;
                    match result {
                        Ok(()) => {
                            samples.push(t.elapsed());
                            sent_on_session += 1;
                            if sent_on_session >= per_connection {
                                if let Some(s) = session.take() {
                                    s.quit().await;
                                }
                                sent_on_session = 0;
                            }
                            break;
                        }
                        Err(e) => {
                            session = None;
                            sent_on_session = 0;
                            assert!(
                                attempt < ATTEMPTS,
                                "message {n} to {rcpt} failed {attempt} times, last: {e}"
                            );
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
            if let Some(s) = session.take() {
                s.quit().await;
            }
            samples
        });
    }
    let mut samples = Vec::with_capacity(total);
    while let Some(done) = tasks.join_next().await {
        samples.extend(done.expect("a client panicked"));
    }
    let accepted = Latencies::new(samples, start.elapsed());
    let delivered = match watcher.await.expect("the mailbox watcher panicked") {
        Ok(d) => d,
        Err(n) => panic!(
            "only {} of {total} messages reached the mailboxes within {patience:?}",
            n - before
        ),
    };
    Load {
        accepted,
        delivered,
        retries: retries.load(Ordering::Relaxed),
    }
}

/// Opens `n` sessions (greeting read, EHLO answered) and keeps them open, silent, until the
/// result is dropped. Opens up to 50 at a time; panics if one cannot be opened.
pub async fn idle_sessions(addr: SocketAddr, n: usize) -> Vec<Session> {
    let mut open = Vec::with_capacity(n);
    while open.len() < n {
        let batch = (n - open.len()).min(50);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..batch {
            tasks.spawn(Session::open(addr));
        }
        while let Some(s) = tasks.join_next().await {
            let s = s.expect("a session task panicked");
            open.push(s.unwrap_or_else(|e| {
                panic!(
                    "idle session {} of {n} could not be opened: {e}",
                    open.len() + 1
                )
            }));
        }
    }
    open
}
