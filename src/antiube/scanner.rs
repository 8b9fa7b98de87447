//! What the clients of the scanner daemons ([`clamd`](super::clamd) and
//! [`spamd`](super::spamd)) share: the [`ScanError`] they return, the connection to a daemon
//! (`host:port` or an absolute Unix socket path) and the deadline on a whole exchange.
//!
//! Never: speak a daemon's protocol (each client does), retry, or decide what an error means
//! for the mail (the policy does, from the error and the scanner's `on_error`).
//!
//! Security note: a daemon's answer is trusted only as far as its format; every exchange,
//! connect included, is bounded by the scanner's `timeout_ms`, and a message over its
//! `max_bytes` is never sent.

use std::future::Future;
use std::io;
use std::path::Path;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// Why a scanner daemon (clamd or spamd) gave no verdict.
///
/// Every variant but [`OverMaxBytes`](ScanError::OverMaxBytes) and
/// [`TooLarge`](ScanError::TooLarge) is a failure of the daemon or of the way to it: the
/// caller applies the scanner's `on_error` (`tempfail`: answer 451 so the sender retries;
/// `skip`: go on unscanned, logged and counted). The two size variants are "not scanned"
/// ([`ScanError::not_scanned`]): retrying gives the same answer, so the caller delivers the
/// message without this scanner's verdict (logged and counted), whatever `on_error` says.
#[derive(Debug, Error)]
pub enum ScanError {
    /// No connection: the daemon is not running, or the address is wrong.
    #[error("{daemon} at {address} is not reachable ({source}): start {daemon} or fix {daemon}.address in the policy")]
    Connect {
        /// `clamd` or `spamd`.
        daemon: &'static str,
        /// The configured address.
        address: String,
        /// The connect error.
        #[source]
        source: io::Error,
    },
    /// Connect, send and answer took longer than the deadline.
    #[error("{daemon} did not answer within {timeout_ms} ms: check its load and logs, or raise {daemon}.timeout_ms")]
    Timeout {
        /// `clamd` or `spamd`.
        daemon: &'static str,
        /// The deadline in force.
        timeout_ms: u64,
    },
    /// The connection broke during the exchange.
    #[error("{daemon}: the connection broke during the exchange ({source}): check {daemon}'s log")]
    Io {
        /// `clamd` or `spamd`.
        daemon: &'static str,
        /// The read or write error.
        #[source]
        source: io::Error,
    },
    /// The message is larger than the scanner's `max_bytes`: it was not sent (not scanned).
    #[error("{daemon}: the message ({size} bytes) is over {daemon}.max_bytes ({max}): not sent, not scanned")]
    OverMaxBytes {
        /// `clamd` or `spamd`.
        daemon: &'static str,
        /// The message's size.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// clamd refused the stream as longer than its `StreamMaxLength` (not scanned).
    #[error("{daemon} refused the message as over its own size limit: set {daemon}.max_bytes below clamd's StreamMaxLength, or raise StreamMaxLength in clamd.conf")]
    TooLarge {
        /// `clamd`.
        daemon: &'static str,
    },
    /// The daemon answered with an error of its own (clamd `... ERROR`, spamd a non-`EX_OK`
    /// code).
    #[error("{daemon} reported an error: {message}: see {daemon}'s log")]
    Daemon {
        /// `clamd` or `spamd`.
        daemon: &'static str,
        /// The daemon's words.
        message: String,
    },
    /// The answer is not the protocol's.
    #[error("{daemon} answered outside its protocol ({detail}): check that {daemon}.address points at {daemon}")]
    Protocol {
        /// `clamd` or `spamd`.
        daemon: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl ScanError {
    /// Whether the message was not scanned because of its size ([`ScanError::OverMaxBytes`],
    /// [`ScanError::TooLarge`]): deliver without this scanner's verdict instead of applying
    /// `on_error`, since a retry would meet the same limit.
    pub fn not_scanned(&self) -> bool {
        matches!(
            self,
            ScanError::OverMaxBytes { .. } | ScanError::TooLarge { .. }
        )
    }
}

/// One scanner daemon, by the name its errors and their advice use (`clamd`, `spamd`: also
/// the name of its policy section).
#[derive(Debug, Clone, Copy)]
pub(super) struct Scanner {
    /// `clamd` or `spamd`.
    pub name: &'static str,
}

/// A byte stream to a daemon: TCP or a Unix socket.
pub(super) trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

impl Scanner {
    /// Refuses (with [`ScanError::OverMaxBytes`]) a message of `size` bytes over the
    /// scanner's `max_bytes`, before anything is sent.
    pub fn check_size(self, size: usize, max_bytes: usize) -> Result<(), ScanError> {
        if size > max_bytes {
            return Err(ScanError::OverMaxBytes {
                daemon: self.name,
                size,
                max: max_bytes,
            });
        }
        Ok(())
    }

    /// Connects to `address` and runs `talk` over the connection, the whole of it (connect
    /// included) within `timeout_ms`, else [`ScanError::Timeout`].
    pub async fn exchange<T, F>(
        self,
        address: &str,
        timeout_ms: u64,
        talk: impl FnOnce(Box<dyn Conn>) -> F,
    ) -> Result<T, ScanError>
    where
        F: Future<Output = Result<T, ScanError>>,
    {
        let run = async { talk(self.connect(address).await?).await };
        tokio::time::timeout(Duration::from_millis(timeout_ms), run)
            .await
            .unwrap_or(Err(ScanError::Timeout {
                daemon: self.name,
                timeout_ms,
            }))
    }

    /// Connects to `address`: an absolute path is a Unix socket, anything else `host:port`.
    async fn connect(self, address: &str) -> Result<Box<dyn Conn>, ScanError> {
        let err = |source| ScanError::Connect {
            daemon: self.name,
            address: address.to_string(),
            source,
        };
        if Path::new(address).is_absolute() {
            Ok(Box::new(UnixStream::connect(address).await.map_err(err)?))
        } else {
            let s = TcpStream::connect(address).await.map_err(err)?;
            // Chunks and commands are written whole; no reason to hold them back.
            s.set_nodelay(true).map_err(err)?;
            Ok(Box::new(s))
        }
    }

    /// The connection broke during the exchange.
    pub fn io(self, source: io::Error) -> ScanError {
        ScanError::Io {
            daemon: self.name,
            source,
        }
    }

    /// The answer is not the protocol's: `detail` says how.
    pub fn protocol(self, detail: impl Into<String>) -> ScanError {
        ScanError::Protocol {
            daemon: self.name,
            detail: detail.into(),
        }
    }
}

/// At most `max` bytes of `s`, cut on a character boundary.
pub(super) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const TEST: Scanner = Scanner { name: "clamd" };

    #[test]
    fn size_limit_and_not_scanned() {
        assert!(TEST.check_size(10, 10).is_ok());
        match TEST.check_size(11, 10) {
            Err(
                e @ ScanError::OverMaxBytes {
                    size: 11, max: 10, ..
                },
            ) => {
                assert!(e.not_scanned());
                assert!(e.to_string().contains("clamd.max_bytes"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(ScanError::TooLarge { daemon: "clamd" }.not_scanned());
        assert!(!TEST.io(io::ErrorKind::BrokenPipe.into()).not_scanned());
    }

    #[test]
    fn truncate_cuts_on_a_character_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("", 0), "");
    }

    #[tokio::test]
    async fn exchange_is_bounded_and_connects_by_address_kind() {
        // A listener that never accepts: the exchange waits for an answer that never comes.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let start = std::time::Instant::now();
        let r = TEST
            .exchange(&addr, 150, |mut c| async move {
                c.read(&mut [0u8; 1]).await.map_err(|e| TEST.io(e))
            })
            .await;
        assert!(
            matches!(
                r,
                Err(ScanError::Timeout {
                    timeout_ms: 150,
                    ..
                })
            ),
            "{r:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(2));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scanner.sock");
        let l = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"hi").await.unwrap();
        });
        let got = TEST
            .exchange(&path.to_string_lossy(), 2_000, |mut c| async move {
                let mut v = Vec::new();
                c.read_to_end(&mut v).await.map_err(|e| TEST.io(e))?;
                Ok(v)
            })
            .await
            .unwrap();
        assert_eq!(got, b"hi");

        let missing = dir.path().join("absent.sock");
        let r = TEST
            .exchange(&missing.to_string_lossy(), 2_000, |_| async { Ok(()) })
            .await;
        match r {
            Err(e @ ScanError::Connect { .. }) => {
                assert!(e.to_string().contains("clamd.address"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        drop(silent);
    }
}
