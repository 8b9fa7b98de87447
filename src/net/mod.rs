//! The shared listener layer: every network protocol (SMTP, submission, LMTP, IMAP, POP3,
//! ManageSieve, the HTTP admin API) accepts its connections through [`serve`].
//!
//! Its job is everything a protocol should not have to repeat: TLS (implicit or STARTTLS),
//! connection limits (global and per client address, with a protocol-specific rejection),
//! idle timeouts on every read and write ([`IdleTimeout`]), a tracing span with a unique
//! session id, and a graceful drain on shutdown ([`Shutdown`]). It knows nothing about any
//! protocol: it never parses client bytes, never writes a reply of its own, and never touches
//! the store or the queue. Protocols implement [`Protocol`]; their sessions take a [`Conn`],
//! which is generic over the stream so they can be driven over in-memory I/O in tests.
//!
//! Security note: every accepted connection holds a slot until its session ends, and every
//! session is bounded by the idle timeout and by the shutdown deadline, so neither a flood of
//! connections, nor a silent client, nor a session that ignores the shutdown signal can exhaust
//! the node or keep it from stopping. Rejections run with a short timeout in a small fixed pool.

mod conn;
mod listener;
mod shutdown;

pub use conn::{Conn, IdleTimeout};
pub use listener::{serve, ListenerStats, REJECT_TIMEOUT};
pub use shutdown::{wait_for_signal, Shutdown, ShutdownSignal, Signals, DEFAULT_GRACE};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpSocket};

/// Pending connections a listener holds before the kernel drops SYNs (capped by
/// `net.core.somaxconn`). tokio's own `TcpListener::bind` asks for 128, which 200 clients
/// connecting at once overflow while the node is busy: each dropped SYN costs that client a
/// one-second retransmission (seen as a 1 s p99 in benches/mail.rs). Postfix and Dovecot ask
/// for more too.
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds a listening TCP socket on `addr` (address reuse on, as tokio's `bind`) with
/// [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How a listener speaks TLS.
#[derive(Clone, Debug)]
pub enum TlsMode {
    /// Plaintext only (LMTP on a private network, dev ports).
    Plain,
    /// TLS from the first byte (IMAPS 993, POP3S 995, submissions 465, HTTPS).
    Implicit(Arc<ServerConfig>),
    /// Plaintext with a STARTTLS upgrade offered (SMTP 25/587, IMAP 143, POP3 110, Sieve 4190).
    StartTls(Arc<ServerConfig>),
}

/// One listener's settings.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// Names the listener in logs, spans and stats (`smtp-mx`, `imaps`, …).
    pub name: String,
    /// Whether and how connections are encrypted.
    pub tls: TlsMode,
    /// Sessions open at once on this listener; beyond it new connections are rejected.
    /// 0 disables the limit.
    pub max_connections: usize,
    /// Sessions open at once from one client address (IPv4 address, or IPv6 /64 network, since
    /// one IPv6 client usually owns a whole /64). 0 disables the limit.
    pub max_per_ip: usize,
    /// How long a read may wait for the client, or a write for the client to read, before it
    /// fails with `TimedOut`. Also bounds TLS handshakes. Protocols may change it per session.
    pub idle_timeout: Duration,
    /// Counters for this listener. Clone it before handing the config to [`serve`] to read them.
    pub stats: ListenerStats,
}

impl ListenerConfig {
    /// A plaintext listener with conservative defaults: 1000 connections, 20 per address,
    /// 5 minutes idle (the SMTP command timeout of RFC 5321 §4.5.3.2).
    pub fn new(name: impl Into<String>) -> Self {
        ListenerConfig {
            name: name.into(),
            tls: TlsMode::Plain,
            max_connections: 1000,
            max_per_ip: 20,
            idle_timeout: Duration::from_secs(300),
            stats: ListenerStats::default(),
        }
    }
}

/// Why a connection was refused before its session started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// The listener's `max_connections` is reached.
    TooManyConnections,
    /// The client's address already has `max_per_ip` sessions.
    TooManyFromAddress,
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RejectReason::TooManyConnections => "too many connections",
            RejectReason::TooManyFromAddress => "too many connections from your address",
        })
    }
}

/// What a session knows about its connection and the node.
#[derive(Clone, Debug)]
pub struct SessionCtx {
    /// Unique within the process and assigned in accept order: ties log lines, queue entries
    /// and `Received:` headers to one session.
    pub id: u64,
    /// The client's address (for limits, logs, `Received:`, anti-UBE checks).
    pub peer: SocketAddr,
    /// The address the client connected to (which VIP or interface).
    pub local: SocketAddr,
    /// The listener's name, shared by its sessions.
    pub listener: Arc<str>,
    /// Fires when the node starts draining: the session should say its goodbye and end.
    pub shutdown: ShutdownSignal,
}

impl SessionCtx {
    /// A context with the next session id; [`serve`] uses it, and so can protocol tests.
    pub fn new(
        peer: SocketAddr,
        local: SocketAddr,
        listener: Arc<str>,
        shutdown: ShutdownSignal,
    ) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        SessionCtx {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            peer,
            local,
            listener,
            shutdown,
        }
    }
}

/// A protocol served by [`serve`]. One value serves every session of a listener, so shared
/// state (config, queue handle, directory) lives in it.
///
/// Implementations may write `async fn serve(&self, …)`; the future must be `Send`.
pub trait Protocol: Send + Sync + 'static {
    /// Runs one session to completion. It must watch `ctx.shutdown` while waiting for the client
    /// and then send its goodbye; a session still running at the shutdown deadline is aborted.
    /// A read or write failing with `TimedOut` means the idle timeout passed: say goodbye.
    fn serve(&self, conn: Conn, ctx: SessionCtx) -> impl Future<Output = ()> + Send;

    /// Tells a client it was refused (e.g. SMTP `421 4.7.0 too many connections`), then returns;
    /// the connection is closed afterwards. It runs under [`REJECT_TIMEOUT`], so it should write
    /// one line, flush, and not wait for the client. The default just closes.
    fn reject(&self, conn: Conn, reason: RejectReason) -> impl Future<Output = ()> + Send {
        let _ = reason;
        async move { drop(conn) }
    }
}
