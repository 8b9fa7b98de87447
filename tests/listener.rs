//! Integration tests of the shared listener layer (`mailnode::net`) with a tiny line protocol
//! defined here, over real loopback TCP on port 0: plaintext, implicit TLS, STARTTLS, limits,
//! idle timeout and graceful shutdown.
//!
//! They never reach beyond 127.0.0.1, never sleep longer than the timeouts under test, and bound
//! every wait so a regression fails instead of hanging. Certificates come from `mailnode::tls`.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailnode::net::{
    serve, Conn, ListenerConfig, ListenerStats, Protocol, RejectReason, SessionCtx, Shutdown,
    TlsMode,
};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// Upper bound for any single wait; far above what a passing run needs.
const BOUND: Duration = Duration::from_secs(10);

async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The test protocol. Greeting `HELLO <id> tls=<bool>`; `ECHO x` → `x`; `STARTTLS` → `OK` then a
/// TLS handshake; `STUBBORN` → the session stops watching the shutdown signal; `QUIT` → `BYE`.
/// On shutdown it says `BYE shutting down`, on idle timeout `BYE idle timeout`.
struct LineProto;

impl Protocol for LineProto {
    async fn serve(&self, conn: Conn, ctx: SessionCtx) {
        let _ = session(conn, ctx).await;
    }

    async fn reject(&self, mut conn: Conn, reason: RejectReason) {
        let _ = conn.write_all(format!("ERR {reason}\r\n").as_bytes()).await;
        let _ = conn.flush().await;
    }
}

async fn reply(conn: &mut Conn, line: &str) -> io::Result<()> {
    conn.write_all(format!("{line}\r\n").as_bytes()).await?;
    conn.flush().await
}

async fn session(mut conn: Conn, ctx: SessionCtx) -> io::Result<()> {
    let greeting = format!("HELLO {} tls={}", ctx.id, conn.is_tls());
    reply(&mut conn, &greeting).await?;
    // A plain buffer and cancel-safe `read`, so a read can race the shutdown signal without
    // losing bytes — the pattern real protocols use with their sans-I/O parsers.
    let mut buf = Vec::new();
    let mut stubborn = false;
    loop {
        let line = loop {
            if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                break String::from_utf8_lossy(&line).trim_end().to_owned();
            }
            let mut chunk = [0u8; 512];
            let read = tokio::select! {
                () = ctx.shutdown.triggered(), if !stubborn => {
                    return reply(&mut conn, "BYE shutting down").await;
                }
                read = conn.read(&mut chunk) => read,
            };
            match read {
                Ok(0) => return Ok(()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return reply(&mut conn, "BYE idle timeout").await;
                }
                Err(e) => return Err(e),
            }
        };
        let (verb, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match verb {
            "ECHO" => reply(&mut conn, arg).await?,
            // Bytes pipelined after STARTTLS were sent in clear: refuse rather than carry them.
            "STARTTLS" if conn.starttls_available() && buf.is_empty() => {
                reply(&mut conn, "OK begin TLS").await?;
                conn = conn.upgrade().await?;
            }
            "STARTTLS" => reply(&mut conn, "ERR STARTTLS not available").await?,
            "STUBBORN" => {
                stubborn = true;
                reply(&mut conn, "OK ignoring shutdown").await?;
            }
            "QUIT" => return reply(&mut conn, "BYE").await,
            _ => reply(&mut conn, "ERR unknown command").await?,
        }
    }
}

/// A running listener and what the tests need to talk to it.
struct Server {
    addr: SocketAddr,
    shutdown: Shutdown,
    stats: ListenerStats,
    task: JoinHandle<()>,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

enum Encryption {
    Plain,
    Implicit,
    StartTls,
}

async fn start(tls: Encryption, tweak: impl FnOnce(&mut ListenerConfig)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["127.0.0.1".to_owned(), "localhost".to_owned()];
    let pki = mailnode::tls::ensure_dev_pki(dir.path(), "node-a", &hosts).unwrap();
    let server_config = mailnode::tls::server_config(&pki.cert, &pki.key).unwrap();
    let mut cfg = ListenerConfig::new("test");
    cfg.tls = match tls {
        Encryption::Plain => TlsMode::Plain,
        Encryption::Implicit => TlsMode::Implicit(server_config),
        Encryption::StartTls => TlsMode::StartTls(server_config),
    };
    cfg.idle_timeout = BOUND;
    tweak(&mut cfg);
    let stats = cfg.stats.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(serve(listener, cfg, Arc::new(LineProto), shutdown.clone()));
    Server {
        addr,
        shutdown,
        stats,
        task,
        ca: pki.ca,
        _dir: dir,
    }
}

impl Server {
    /// Waits until the listener counts `n` active sessions (sessions end asynchronously).
    async fn wait_active(&self, n: usize) {
        bounded("active session count", async {
            while self.stats.active() != n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }
}

/// A line-oriented client over any stream.
struct Client<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    fn new(io: S) -> Self {
        Client {
            io: BufReader::new(io),
        }
    }

    async fn send(&mut self, line: &str) {
        let io = self.io.get_mut();
        bounded("send", async {
            io.write_all(format!("{line}\r\n").as_bytes()).await?;
            io.flush().await
        })
        .await
        .unwrap();
    }

    /// The next line without its CRLF, or `None` at end of stream (or on a reset: an aborted
    /// session may close with unread data).
    async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match bounded("a line", self.io.read_line(&mut line)).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end().to_owned()),
        }
    }

    async fn expect(&mut self, prefix: &str) -> String {
        let line = self.line().await;
        match line {
            Some(l) if l.starts_with(prefix) => l,
            other => panic!("expected {prefix:?}, got {other:?}"),
        }
    }

    async fn expect_eof(&mut self) {
        assert_eq!(self.line().await, None);
    }
}

async fn connect(addr: SocketAddr) -> Client<TcpStream> {
    Client::new(bounded("connect", TcpStream::connect(addr)).await.unwrap())
}

async fn tls_wrap<S: AsyncRead + AsyncWrite + Unpin>(
    ca: &Path,
    io: S,
) -> tokio_rustls::client::TlsStream<S> {
    let config = mailnode::tls::client_config_trusting(ca).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    bounded(
        "TLS handshake",
        TlsConnector::from(config).connect(name, io),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn plain_echo_and_quit() {
    let server = start(Encryption::Plain, |_| {}).await;
    let mut c = connect(server.addr).await;
    c.expect("HELLO").await;
    c.send("ECHO hello world").await;
    assert_eq!(c.line().await.as_deref(), Some("hello world"));
    c.send("STARTTLS").await;
    c.expect("ERR").await;
    c.send("QUIT").await;
    c.expect("BYE").await;
    c.expect_eof().await;
    server.wait_active(0).await;
    assert_eq!(server.stats.accepted(), 1);
}

#[tokio::test]
async fn session_ids_are_unique_and_increasing() {
    let server = start(Encryption::Plain, |_| {}).await;
    let id = |l: String| l.split(' ').nth(1).unwrap().parse::<u64>().unwrap();
    let first = id(connect(server.addr).await.expect("HELLO").await);
    let second = id(connect(server.addr).await.expect("HELLO").await);
    assert!(second > first);
}

#[tokio::test]
async fn implicit_tls_serves_a_client_trusting_the_ca() {
    let server = start(Encryption::Implicit, |_| {}).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut c = Client::new(tls_wrap(&server.ca, tcp).await);
    assert!(c.expect("HELLO").await.ends_with("tls=true"));
    c.send("ECHO secret").await;
    assert_eq!(c.line().await.as_deref(), Some("secret"));
    c.send("STARTTLS").await;
    c.expect("ERR").await;
}

#[tokio::test]
async fn starttls_upgrades_then_echoes_over_tls() {
    let server = start(Encryption::StartTls, |_| {}).await;
    let mut c = connect(server.addr).await;
    assert!(c.expect("HELLO").await.ends_with("tls=false"));
    c.send("STARTTLS").await;
    c.expect("OK begin TLS").await;
    assert!(c.io.buffer().is_empty());
    let mut c = Client::new(tls_wrap(&server.ca, c.io.into_inner()).await);
    c.send("ECHO over tls").await;
    assert_eq!(c.line().await.as_deref(), Some("over tls"));
    c.send("STARTTLS").await;
    c.expect("ERR").await;
    c.send("QUIT").await;
    c.expect("BYE").await;
}

#[tokio::test]
async fn per_address_limit_calls_the_reject_hook() {
    let server = start(Encryption::Plain, |cfg| cfg.max_per_ip = 1).await;
    let mut first = connect(server.addr).await;
    first.expect("HELLO").await;
    let mut second = connect(server.addr).await;
    assert_eq!(
        second.line().await.as_deref(),
        Some("ERR too many connections from your address")
    );
    second.expect_eof().await;
    assert_eq!(server.stats.rejected(), 1);
    first.send("QUIT").await;
    first.expect("BYE").await;
    server.wait_active(0).await;
    connect(server.addr).await.expect("HELLO").await;
}

#[tokio::test]
async fn global_limit_calls_the_reject_hook() {
    let server = start(Encryption::Plain, |cfg| {
        cfg.max_connections = 2;
        cfg.max_per_ip = 0;
    })
    .await;
    let mut a = connect(server.addr).await;
    a.expect("HELLO").await;
    let mut b = connect(server.addr).await;
    b.expect("HELLO").await;
    let mut c = connect(server.addr).await;
    assert_eq!(c.line().await.as_deref(), Some("ERR too many connections"));
    c.expect_eof().await;
    assert_eq!(server.stats.active(), 2);
}

#[tokio::test]
async fn rejection_on_implicit_tls_is_readable_over_tls() {
    let server = start(Encryption::Implicit, |cfg| cfg.max_per_ip = 1).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut first = Client::new(tls_wrap(&server.ca, tcp).await);
    first.expect("HELLO").await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut second = Client::new(tls_wrap(&server.ca, tcp).await);
    second.expect("ERR too many connections").await;
}

#[tokio::test]
async fn idle_timeout_ends_the_session_with_the_protocol_goodbye() {
    let idle = Duration::from_millis(200);
    let server = start(Encryption::Plain, |cfg| cfg.idle_timeout = idle).await;
    let mut c = connect(server.addr).await;
    c.expect("HELLO").await;
    let started = Instant::now();
    c.expect("BYE idle timeout").await;
    assert!(started.elapsed() >= idle - Duration::from_millis(20));
    c.expect_eof().await;
    server.wait_active(0).await;
}

#[tokio::test]
async fn shutdown_sends_goodbyes_and_serve_returns_within_grace() {
    let server = start(Encryption::StartTls, |_| {}).await;
    let mut plain = connect(server.addr).await;
    plain.expect("HELLO").await;
    let mut upgraded = connect(server.addr).await;
    upgraded.expect("HELLO").await;
    upgraded.send("STARTTLS").await;
    upgraded.expect("OK").await;
    let mut upgraded = Client::new(tls_wrap(&server.ca, upgraded.io.into_inner()).await);
    upgraded.send("ECHO ready").await;
    upgraded.expect("ready").await;

    let grace = Duration::from_secs(5);
    let started = Instant::now();
    server.shutdown.drain(grace);
    plain.expect("BYE shutting down").await;
    upgraded.expect("BYE shutting down").await;
    bounded("serve to return", server.task).await.unwrap();
    assert!(
        started.elapsed() < grace,
        "serve waited {:?}",
        started.elapsed()
    );
    assert_eq!(server.stats.active(), 0);
    plain.expect_eof().await;
}

#[tokio::test]
async fn session_ignoring_shutdown_is_aborted_after_grace() {
    let server = start(Encryption::Plain, |_| {}).await;
    let mut stubborn = connect(server.addr).await;
    stubborn.expect("HELLO").await;
    stubborn.send("STUBBORN").await;
    stubborn.expect("OK").await;
    let mut polite = connect(server.addr).await;
    polite.expect("HELLO").await;

    let grace = Duration::from_millis(300);
    let started = Instant::now();
    server.shutdown.drain(grace);
    polite.expect("BYE shutting down").await;
    bounded("serve to return", server.task).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= grace - Duration::from_millis(20),
        "aborted early: {waited:?}"
    );
    assert_eq!(server.stats.active(), 0);
    // Aborting dropped the connection without a goodbye.
    stubborn.expect_eof().await;
}

#[tokio::test]
async fn serve_returns_at_once_when_already_shut_down() {
    let server = start(Encryption::Plain, |_| {}).await;
    server.shutdown.trigger();
    bounded("serve to return", server.task).await.unwrap();
    assert_eq!(server.stats.accepted(), 0);
}
