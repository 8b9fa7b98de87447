//! A raw client for CRLF line protocols (POP3, ManageSieve, SMTP) as the protocol tests drive
//! them: bytes out, lines (and literals) in, over plain TCP or TLS trusting the test cluster's
//! CA. Every read, write, connect and handshake is bounded by [`BOUND`] and panics with what it
//! was waiting for when that passes. It knows nothing of any protocol's replies: the tests'
//! own clients build on it.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Upper bound of any single wait; far above what a passing run needs.
pub const BOUND: Duration = Duration::from_secs(15);

/// A byte stream: TCP, or TLS over it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// `fut`, or a panic naming `what` after [`BOUND`].
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A TLS client trusting the test cluster's CA, for the node's address.
pub struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl Tls {
    pub fn new(ca: &Path, ip: &str) -> Tls {
        let cfg: Arc<rustls::ClientConfig> = mailnode::tls::client_config_trusting(ca).unwrap();
        Tls {
            connector: TlsConnector::from(cfg),
            name: ServerName::try_from(ip.to_string()).unwrap(),
        }
    }

    /// The TLS handshake over `s`.
    pub async fn wrap(&self, s: Box<dyn Stream>) -> Box<dyn Stream> {
        let tls = bounded(
            "TLS handshake",
            self.connector.connect(self.name.clone(), s),
        )
        .await
        .expect("TLS handshake");
        Box::new(tls)
    }
}

/// A connection read line by line: what the server sent and no line has taken yet is in
/// `buf`.
pub struct Lines {
    pub s: Box<dyn Stream>,
    pub buf: Vec<u8>,
}

impl Lines {
    pub fn new(s: Box<dyn Stream>) -> Lines {
        Lines { s, buf: Vec::new() }
    }

    /// A plain TCP connection to `addr`.
    pub async fn connect(addr: &str) -> Lines {
        let tcp = bounded("connect", TcpStream::connect(addr)).await.unwrap();
        Lines::new(Box::new(tcp))
    }

    /// The TLS handshake (after the server accepted STARTTLS/STLS). Nothing may have been
    /// sent after that response: such bytes would be a plaintext injection.
    pub async fn upgrade(self, tls: &Tls) -> Lines {
        assert!(self.buf.is_empty(), "data after the STARTTLS response");
        Lines::new(tls.wrap(self.s).await)
    }

    pub async fn send_raw(&mut self, data: &[u8]) {
        bounded("write", self.s.write_all(data)).await.unwrap();
    }

    /// `line` and CRLF.
    pub async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
    }

    /// Reads what the server sent; 0 at EOF (or on a read error).
    pub async fn fill(&mut self) -> usize {
        self.buf.reserve(16 * 1024);
        bounded("server data", self.s.read_buf(&mut self.buf))
            .await
            .unwrap_or(0)
    }

    /// One line with its CRLF; `None` at EOF.
    pub async fn raw_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                return Some(self.buf.drain(..i + 2).collect());
            }
            if self.fill().await == 0 {
                return None;
            }
        }
    }

    /// One line without CRLF; "" at EOF.
    pub async fn line(&mut self) -> String {
        match self.raw_line().await {
            Some(l) => String::from_utf8_lossy(&l[..l.len() - 2]).into_owned(),
            None => String::new(),
        }
    }

    /// Exactly `n` octets.
    pub async fn octets(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await > 0, "EOF inside a literal");
        }
        self.buf.drain(..n).collect()
    }
}

/// Declares `struct $name(Lines)`: a protocol's own client that derefs to [`Lines`], so
/// `send`, `line`, `octets`, … work on it directly and it adds only its protocol's replies.
#[macro_export]
macro_rules! line_client {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        struct $name($crate::common::line::Lines);

        impl std::ops::Deref for $name {
            type Target = $crate::common::line::Lines;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        impl std::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.0
            }
        }
    };
}
