//! A client connection as protocols see it: plaintext or TLS, upgradable once by STARTTLS, with
//! an idle timeout enforced underneath every read and write.
//!
//! Its job is the byte stream and nothing above it: it never parses, never buffers (so no
//! plaintext read before STARTTLS can leak into the TLS session — CVE-2011-0411 style command
//! injection is the protocol's buffer to discard), and never decides a protocol reply.
//!
//! Security note: the idle timeout is what stops a client from holding a session (and its
//! connection slot) forever by sending nothing, or by never reading our replies; TLS handshakes
//! are bounded by the same timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::{server::TlsStream, TlsAcceptor};

/// Longest idle timeout honoured; longer values (e.g. `Duration::MAX` for "forever") are clamped
/// so deadline arithmetic cannot overflow.
const MAX_IDLE: Duration = Duration::from_secs(365 * 24 * 3600);

/// Wraps any stream so that a read fails with [`io::ErrorKind::TimedOut`] once it has waited
/// `timeout` for the peer without a byte arriving, and a write once it has waited that long for
/// the peer to accept data. Time spent *between* reads (the server thinking) does not count:
/// the clock starts when a read first has to wait and restarts whenever one completes.
pub struct IdleTimeout<S> {
    inner: S,
    timeout: Duration,
    read: Timer,
    write: Timer,
}

/// One direction's clock. The `Sleep` is boxed so the wrapper stays `Unpin`, and kept once
/// created so arming it again is a reset, not an allocation.
#[derive(Default)]
struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl Timer {
    /// Called when the inner stream returned `Pending`: starts the clock if it is not running
    /// and reports whether it has run out (registering a wake-up for when it will).
    fn poll_expired(&mut self, timeout: Duration, cx: &mut Context<'_>) -> bool {
        if !self.armed {
            let deadline = Instant::now() + timeout;
            match &mut self.sleep {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
        }
        let expired = match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx).is_ready(),
            None => false,
        };
        if expired {
            // Disarm so a caller that chooses to carry on gets a fresh period.
            self.armed = false;
        }
        expired
    }
}

impl<S> IdleTimeout<S> {
    /// Wraps `inner` with the given timeout.
    pub fn new(inner: S, timeout: Duration) -> Self {
        IdleTimeout {
            inner,
            timeout: timeout.min(MAX_IDLE),
            read: Timer::default(),
            write: Timer::default(),
        }
    }

    /// The current timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes the timeout from the next wait on (e.g. IMAP's 30 minutes once authenticated).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout.min(MAX_IDLE);
        self.read.armed = false;
        self.write.armed = false;
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("idle timeout: {what}"))
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending if this.read.poll_expired(this.timeout, cx) => {
                Poll::Ready(Err(timed_out("no data from the client")))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> IdleTimeout<S> {
    fn guard_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.write.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending if self.write.poll_expired(self.timeout, cx) => {
                Poll::Ready(Err(timed_out("the client is not reading")))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.guard_write(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.guard_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.guard_write(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.guard_write(cx, r)
    }
}

/// The transport under a [`Conn`].
enum Transport<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
}

/// A client connection handed to a protocol session: plaintext or TLS over `S` (a TCP stream
/// from the listener; any stream, e.g. `tokio::io::duplex`, in tests), with the listener's idle
/// timeout on every read and write. On a STARTTLS listener, [`Conn::upgrade`] turns a plaintext
/// connection into TLS exactly once.
pub struct Conn<S = TcpStream> {
    io: IdleTimeout<Transport<S>>,
    /// Present only while a STARTTLS upgrade is still possible.
    starttls: Option<TlsAcceptor>,
}

impl<S> std::fmt::Debug for Conn<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("tls", &self.is_tls())
            .field("starttls_available", &self.starttls_available())
            .field("idle_timeout", &self.io.timeout())
            .finish()
    }
}

impl<S> Conn<S> {
    /// A plaintext connection with no STARTTLS.
    pub fn plain(io: S, idle_timeout: Duration) -> Self {
        Conn {
            io: IdleTimeout::new(Transport::Plain(io), idle_timeout),
            starttls: None,
        }
    }

    /// A plaintext connection that may be upgraded with [`Conn::upgrade`] using `config`.
    pub fn with_starttls(io: S, idle_timeout: Duration, config: Arc<ServerConfig>) -> Self {
        Conn {
            io: IdleTimeout::new(Transport::Plain(io), idle_timeout),
            starttls: Some(TlsAcceptor::from(config)),
        }
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.io.get_ref(), Transport::Tls(_))
    }

    /// Whether the protocol may offer STARTTLS: the listener allows it and it has not happened.
    pub fn starttls_available(&self) -> bool {
        self.starttls.is_some() && !self.is_tls()
    }

    /// The TLS session (negotiated version, cipher suite, SNI), for `Received:` headers and logs.
    pub fn tls_connection(&self) -> Option<&rustls::ServerConnection> {
        match self.io.get_ref() {
            Transport::Tls(tls) => Some(tls.get_ref().1),
            Transport::Plain(_) => None,
        }
    }

    /// The idle timeout in force.
    pub fn idle_timeout(&self) -> Duration {
        self.io.timeout()
    }

    /// Changes the idle timeout, e.g. to RFC 9051's 30 minutes once an IMAP client is
    /// authenticated.
    pub fn set_idle_timeout(&mut self, timeout: Duration) {
        self.io.set_timeout(timeout);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Performs the TLS handshake of an implicit-TLS listener (IMAPS, POP3S, submissions),
    /// bounded by `idle_timeout`.
    pub async fn accept_tls(
        io: S,
        idle_timeout: Duration,
        config: Arc<ServerConfig>,
    ) -> io::Result<Self> {
        handshake(TlsAcceptor::from(config), io, idle_timeout).await
    }

    /// STARTTLS: performs the TLS handshake on this plaintext connection and returns the
    /// encrypted one. The caller must have discarded every byte it read past the STARTTLS
    /// command (treating any as a protocol error): they were sent in clear and must not be
    /// interpreted as if protected. Fails — and the connection is closed — when the listener
    /// does not offer STARTTLS or the connection is already TLS; check
    /// [`Conn::starttls_available`] first.
    pub async fn upgrade(self) -> io::Result<Self> {
        let Some(acceptor) = self.starttls else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "STARTTLS is not offered on this listener",
            ));
        };
        let timeout = self.io.timeout();
        match self.io.into_inner() {
            Transport::Plain(io) => handshake(acceptor, io, timeout).await,
            Transport::Tls(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "connection is already TLS",
            )),
        }
    }
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    acceptor: TlsAcceptor,
    io: S,
    timeout: Duration,
) -> io::Result<Conn<S>> {
    let tls = tokio::time::timeout(timeout.min(MAX_IDLE), acceptor.accept(io))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    Ok(Conn {
        io: IdleTimeout::new(Transport::Tls(Box::new(tls)), timeout),
        starttls: None,
    })
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Transport<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Transport<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    const BOUND: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn silent_peer_times_out_but_thinking_server_does_not() {
        let (mut client, server) = duplex(1024);
        let mut conn = Conn::plain(server, Duration::from_millis(100));
        client.write_all(b"a").await.unwrap();
        // The server "thinks" longer than the timeout before reading: that is not idleness.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let mut b = [0u8; 1];
        conn.read_exact(&mut b).await.unwrap();
        let started = std::time::Instant::now();
        let err = tokio::time::timeout(BOUND, conn.read(&mut b))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(100));
        // The connection still works afterwards: the protocol can send its goodbye.
        conn.write_all(b"bye").await.unwrap();
        let mut out = [0u8; 3];
        client.read_exact(&mut out).await.unwrap();
        assert_eq!(&out, b"bye");
    }

    #[tokio::test]
    async fn peer_that_never_reads_times_out_a_write() {
        let (_client, server) = duplex(16);
        let mut conn = Conn::plain(server, Duration::from_millis(100));
        let big = vec![0u8; 1024];
        let err = tokio::time::timeout(BOUND, conn.write_all(&big))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn upgrade_needs_a_starttls_listener() {
        let (_client, server) = duplex(1024);
        let conn = Conn::plain(server, BOUND);
        assert!(!conn.starttls_available());
        let err = conn.upgrade().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn starttls_upgrade_over_in_memory_io() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::tls::generate_ca("t").unwrap();
        let node = crate::tls::issue_node_cert(&ca.cert_pem, &ca.key_pem, "node-a", &[]).unwrap();
        let ca_paths = ca.write_bundle(dir.path(), "ca").unwrap();
        let paths = node.write_bundle(dir.path(), "node").unwrap();
        let server_cfg = crate::tls::server_config(&paths.cert, &paths.key).unwrap();
        let client_cfg = crate::tls::client_config_trusting(&ca_paths.cert).unwrap();

        let (client, server) = duplex(64 * 1024);
        let conn = Conn::with_starttls(server, BOUND, server_cfg);
        assert!(conn.starttls_available() && !conn.is_tls());
        let server = async move {
            let mut conn = conn.upgrade().await.unwrap();
            assert!(conn.is_tls() && !conn.starttls_available());
            assert!(conn.tls_connection().is_some());
            let mut b = [0u8; 4];
            conn.read_exact(&mut b).await.unwrap();
            conn.write_all(&b).await.unwrap();
            conn.flush().await.unwrap();
            conn
        };
        let client = async move {
            let name = rustls_pki_types::ServerName::try_from("node-a").unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(client_cfg)
                .connect(name, client)
                .await
                .unwrap();
            tls.write_all(b"ping").await.unwrap();
            tls.flush().await.unwrap();
            let mut b = [0u8; 4];
            tls.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"ping");
        };
        let (conn, ()) = tokio::time::timeout(BOUND, async { tokio::join!(server, client) })
            .await
            .unwrap();
        let err = conn.upgrade().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
