//! The benchmark's clients, speaking raw protocol bytes on the benchmark's own tokio runtime,
//! the same bytes to both systems: IMAP (every response read up to its tagged line, literals
//! counted and skipped), POP3 (multi-line responses read up to the lone dot), and LMTP (the
//! untimed delivery of the messages both systems serve). Also the messages themselves.
//!
//! Every read and write is bounded by [`STEP_TIMEOUT`]; a server that answers with anything
//! but success gets an error naming the command and the answer, never a panic here.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Time allowed for a connection, each response and each write.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest response line read (literal data excluded).
const MAX_LINE: u64 = 64 * 1024;
/// Largest literal accepted from a server.
const MAX_LITERAL: usize = 16 * 1024 * 1024;

pub fn fail(what: impl Into<String>) -> std::io::Error {
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

/// A line-oriented connection: buffered reads, direct writes.
struct Line {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    buf: Vec<u8>,
}

impl Line {
    async fn connect(addr: SocketAddr) -> std::io::Result<Line> {
        let tcp = timed("connect", TcpStream::connect(addr)).await?;
        tcp.set_nodelay(true)?;
        let (r, w) = tcp.into_split();
        Ok(Line {
            r: BufReader::with_capacity(16 * 1024, r),
            w,
            buf: Vec::with_capacity(256),
        })
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        timed("write", self.w.write_all(bytes)).await
    }

    /// Reads one line (CRLF included) into `self.buf`; an error at end of stream.
    async fn line(&mut self) -> std::io::Result<()> {
        self.buf.clear();
        let n = timed("read", async {
            let mut limited = (&mut self.r).take(MAX_LINE);
            limited.read_until(b'\n', &mut self.buf).await
        })
        .await?;
        if n == 0 {
            return Err(fail("the server closed the connection"));
        }
        if !self.buf.ends_with(b"\n") {
            return Err(fail(format!("a response line over {MAX_LINE} octets")));
        }
        Ok(())
    }

    /// Reads and drops `n` octets.
    async fn skip(&mut self, n: usize) -> std::io::Result<()> {
        let copied = timed("read literal", async {
            let mut limited = (&mut self.r).take(n as u64);
            tokio::io::copy(&mut limited, &mut tokio::io::sink()).await
        })
        .await?;
        if copied != n as u64 {
            return Err(fail("the server closed the connection inside a literal"));
        }
        Ok(())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).trim_end().to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// IMAP

/// What one IMAP command got back, besides its tagged `OK`.
#[derive(Default)]
pub struct Reply {
    /// `* n EXISTS`, if any.
    pub exists: Option<u32>,
    /// Untagged `FETCH` responses, in order: those the command asked for, and any the server
    /// added about flags other sessions changed.
    pub fetches: Vec<Fetch>,
    /// Sizes of every literal in the responses (message data).
    pub literals: Vec<usize>,
}

/// One untagged `FETCH` response.
pub struct Fetch {
    pub uid: Option<u32>,
    /// Sizes of its literals.
    pub literals: Vec<usize>,
}

/// One IMAP connection.
pub struct Imap {
    c: Line,
    next_tag: u32,
}

impl Imap {
    /// Connects and reads the `* OK` greeting.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Imap> {
        let mut c = Line::connect(addr).await?;
        c.line().await?;
        if !c.buf.starts_with(b"* OK") {
            return Err(fail(format!("IMAP greeting: {}", c.text())));
        }
        Ok(Imap { c, next_tag: 1 })
    }

    /// Sends `cmd` with a fresh tag and reads every response up to the tagged one, which must
    /// be `OK`.
    pub async fn command(&mut self, cmd: &str) -> std::io::Result<Reply> {
        let tag = format!("a{}", self.next_tag);
        self.next_tag += 1;
        self.c.send(format!("{tag} {cmd}\r\n").as_bytes()).await?;
        let mut reply = Reply::default();
        loop {
            // One response: a line, and after each literal it announces, the rest of it.
            self.c.line().await?;
            let first = self.c.text();
            let mut untagged_fetch = false;
            if let Some(rest) = first.strip_prefix("* ") {
                let mut words = rest.split(' ');
                let (n, kind) = (words.next(), words.next());
                if kind == Some("EXISTS") {
                    reply.exists = n.and_then(|n| n.parse().ok());
                }
                if kind == Some("FETCH") {
                    untagged_fetch = true;
                }
            }
            let mut text = first.clone();
            let mut literals = Vec::new();
            while let Some(n) = literal_size(&self.c.buf) {
                if n > MAX_LITERAL {
                    return Err(fail(format!("{cmd}: a literal of {n} octets")));
                }
                literals.push(n);
                self.c.skip(n).await?;
                self.c.line().await?;
                text.push_str(&self.c.text());
            }
            reply.literals.extend_from_slice(&literals);
            if untagged_fetch {
                reply.fetches.push(Fetch {
                    uid: fetch_uid(&text),
                    literals,
                });
            }
            if let Some(status) = first.strip_prefix(&format!("{tag} ")) {
                if status.starts_with("OK") {
                    return Ok(reply);
                }
                return Err(fail(format!("{cmd}: {first}")));
            }
            if first.starts_with("* BYE") && !cmd.eq_ignore_ascii_case("LOGOUT") {
                return Err(fail(format!("{cmd}: {first}")));
            }
        }
    }

    /// `LOGIN user "password"`.
    pub async fn login(&mut self, user: &str, password: &str) -> std::io::Result<()> {
        self.command(&format!("LOGIN {user} \"{password}\""))
            .await
            .map(|_| ())
    }

    /// `IDLE`, up to the server's `+` continuation; the session then stays idle until the
    /// connection is dropped.
    pub async fn idle(&mut self) -> std::io::Result<()> {
        let tag = format!("a{}", self.next_tag);
        self.next_tag += 1;
        self.c.send(format!("{tag} IDLE\r\n").as_bytes()).await?;
        loop {
            self.c.line().await?;
            if self.c.buf.starts_with(b"+") {
                return Ok(());
            }
            if !self.c.buf.starts_with(b"* ") || self.c.buf.starts_with(b"* BYE") {
                return Err(fail(format!("IDLE: {}", self.c.text())));
            }
        }
    }
}

/// The size announced by a literal at the end of a response line (`{123}` or `{123+}`).
fn literal_size(line: &[u8]) -> Option<usize> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = inner.get(open + 1..)?;
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The `UID n` item of a FETCH response's text (literal data excluded).
fn fetch_uid(text: &str) -> Option<u32> {
    let at = text.find("UID ")?;
    let digits: String = text[at + 4..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// POP3

/// One POP3 connection.
pub struct Pop3 {
    c: Line,
}

impl Pop3 {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Pop3> {
        let mut c = Line::connect(addr).await?;
        c.line().await?;
        if !c.buf.starts_with(b"+OK") {
            return Err(fail(format!("POP3 greeting: {}", c.text())));
        }
        Ok(Pop3 { c })
    }

    /// Sends one command; its status line must be `+OK`, which is returned.
    pub async fn command(&mut self, cmd: &str) -> std::io::Result<String> {
        self.c.send(format!("{cmd}\r\n").as_bytes()).await?;
        self.c.line().await?;
        if !self.c.buf.starts_with(b"+OK") {
            let shown = if cmd.starts_with("PASS ") {
                "PASS"
            } else {
                cmd
            };
            return Err(fail(format!("{shown}: {}", self.c.text())));
        }
        Ok(self.c.text())
    }

    /// `STAT`: messages and octets.
    pub async fn stat(&mut self) -> std::io::Result<(usize, u64)> {
        let line = self.command("STAT").await?;
        let mut w = line.split(' ').skip(1);
        match (
            w.next().and_then(|n| n.parse().ok()),
            w.next().and_then(|n| n.parse().ok()),
        ) {
            (Some(n), Some(size)) => Ok((n, size)),
            _ => Err(fail(format!("STAT: {line}"))),
        }
    }

    /// `RETR n`: the octets of the message as sent (CRLF line ends, dot-stuffing removed).
    pub async fn retr(&mut self, n: usize) -> std::io::Result<u64> {
        self.command(&format!("RETR {n}")).await?;
        let mut octets = 0u64;
        loop {
            self.c.line().await?;
            if self.c.buf == b".\r\n" {
                return Ok(octets);
            }
            let stuffed = self.c.buf.starts_with(b"..");
            octets += self.c.buf.len() as u64 - u64::from(stuffed);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// LMTP

/// One LMTP connection, for delivering the benchmark's messages (untimed).
pub struct Lmtp {
    c: Line,
}

impl Lmtp {
    /// Connects, reads the `220` and says LHLO.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Lmtp> {
        let mut l = Lmtp {
            c: Line::connect(addr).await?,
        };
        l.expect("greeting", 220).await?;
        l.c.send(b"LHLO bench.example\r\n").await?;
        l.expect("LHLO", 250).await?;
        Ok(l)
    }

    /// Reads one (possibly multi-line) reply and checks its code.
    async fn expect(&mut self, what: &str, code: u16) -> std::io::Result<()> {
        loop {
            self.c.line().await?;
            let got = self
                .c
                .buf
                .get(..3)
                .and_then(|c| std::str::from_utf8(c).ok())
                .and_then(|c| c.parse::<u16>().ok());
            if got != Some(code) {
                return Err(fail(format!(
                    "{what}: expected {code}, got {}",
                    self.c.text()
                )));
            }
            if self.c.buf.get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    }

    /// Delivers `message` (already dot-terminated) to `rcpt`. MAIL, RCPT and DATA go in one
    /// write (both servers offer PIPELINING).
    pub async fn deliver(&mut self, rcpt: &str, message: &[u8]) -> std::io::Result<()> {
        let envelope = format!("MAIL FROM:<load@remote.example>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n");
        self.c.send(envelope.as_bytes()).await?;
        self.expect("MAIL", 250).await?;
        self.expect("RCPT", 250).await?;
        self.expect("DATA", 354).await?;
        self.c.send(message).await?;
        self.expect("end of data", 250).await
    }

    pub async fn quit(mut self) {
        if self.c.send(b"QUIT\r\n").await.is_ok() {
            let _ = self.c.line().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

/// The sizes of a mailbox's messages, in turn (header + body, octets): mostly small, a few
/// large; 18.4 KB on average.
pub const SIZES: [usize; 10] = [
    4096, 4096, 4096, 4096, 4096, 8192, 8192, 16384, 32768, 102_400,
];

/// Message `j` of `user`: exactly `SIZES[j % 10]` octets of header and plain-text body, lines
/// of 76 letters, digits and spaces (never a leading dot), then the LMTP terminator.
pub fn message(user: &str, j: usize) -> Vec<u8> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789";
    let size = SIZES[j % SIZES.len()];
    let header = format!(
        "From: Sender {j} <sender{j}@remote.example>\r\nTo: <{user}>\r\n\
         Subject: benchmark message {j} for {user}\r\n\
         Date: Sun, 29 Nov 2026 {:02}:{:02}:00 +0000\r\nMessage-ID: <{j}.{user}@remote.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
        j / 60 % 24,
        j % 60
    );
    let mut m = header.into_bytes();
    let body = size.saturating_sub(m.len());
    // Lines of 78 octets (76 + CRLF); the first one takes the remainder.
    let lines = (body / 78).max(1);
    let first_extra = body.saturating_sub(lines * 78);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (j as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
    for i in 0..lines {
        let len = 76 + if i == 0 { first_extra } else { 0 };
        m.push(b'L');
        for _ in 1..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            m.push(CHARS[(x % CHARS.len() as u64) as usize]);
        }
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b".\r\n");
    m
}
