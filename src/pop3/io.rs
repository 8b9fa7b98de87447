//! The session's side of the connection: a bounded read buffer cut into lines, a reply buffer
//! flushed only when the client has nothing more buffered (RFC 2449 PIPELINING), and the STLS
//! hand-over.
//!
//! It never interprets a line. It enforces two limits while reading: a line longer than the
//! command limit is dropped whole and reported, and a client that sends more than the hard
//! limit without any line end is reported so the session can close. So a session holds at most
//! the hard limit plus one read chunk, whatever the client sends.
//!
//! Security note: STLS must discard everything still buffered ([`Io::discard_buffered`])
//! before the handshake, so plaintext pipelined after the command can never be executed inside
//! the TLS session (CVE-2011-0411, RFC 2595 §4).

use std::fmt::Display;
use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::net::{Conn, ShutdownSignal};

/// Octets asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;
/// Reply bytes buffered before they are written even while commands remain or a message is
/// still being read: bounds the output buffer.
const MAX_PENDING_OUTPUT: usize = 64 * 1024;

/// What reading a line produced.
#[derive(Debug)]
pub(crate) enum Input {
    /// A line, its LF included (and its CR, when the client sent one).
    Line(BytesMut),
    /// A line longer than the limit but terminated; it was dropped.
    TooLong,
    /// More than the hard limit arrived without a line end.
    Unterminated,
    /// The client closed the connection.
    Eof,
    /// The idle timeout passed.
    Timeout,
    /// The node is shutting down.
    Shutdown,
}

pub(crate) struct Io<S> {
    pub(crate) conn: Conn<S>,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    pub(crate) fn new(conn: Conn<S>) -> Self {
        Io {
            conn,
            rbuf: BytesMut::new(),
            wbuf: Vec::new(),
        }
    }

    /// Queues `+OK text`.
    pub(crate) fn ok(&mut self, text: impl Display) {
        self.status("+OK", text);
    }

    /// Queues `-ERR text`.
    pub(crate) fn err(&mut self, text: impl Display) {
        self.status("-ERR", text);
    }

    fn status(&mut self, status: &str, text: impl Display) {
        let line = format!("{status} {text}");
        tracing::trace!(reply = %line, "reply");
        self.wbuf.extend_from_slice(line.trim_end().as_bytes());
        self.wbuf.extend_from_slice(b"\r\n");
    }

    /// Queues raw bytes (multi-line data, SASL challenges).
    pub(crate) fn queue(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Queues raw bytes and writes them out once enough has piled up (message data).
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.wbuf.extend_from_slice(bytes);
        self.flush_if_full().await
    }

    /// Sends queued replies.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.conn.write_all(&self.wbuf).await?;
            self.conn.flush().await?;
            self.wbuf.clear();
            if self.wbuf.capacity() > 2 * MAX_PENDING_OUTPUT {
                self.wbuf.shrink_to(MAX_PENDING_OUTPUT);
            }
        }
        Ok(())
    }

    /// Flushes if the output buffer grew large (a long message, or a client pipelining
    /// without reading).
    pub(crate) async fn flush_if_full(&mut self) -> io::Result<()> {
        if self.wbuf.len() >= MAX_PENDING_OUTPUT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Drops everything buffered; returns how much that was.
    pub(crate) fn discard_buffered(&mut self) -> usize {
        let n = self.rbuf.len();
        self.rbuf.clear();
        n
    }

    /// The next line: at most `max` octets with its line end, else [`Input::TooLong`]; more
    /// than `hard_max` octets without a line end is [`Input::Unterminated`]. Replies are
    /// flushed before any wait, so pipelined commands are answered in one write. While
    /// waiting, `shutdown` ends the read.
    pub(crate) async fn read_line(
        &mut self,
        max: usize,
        hard_max: usize,
        shutdown: &ShutdownSignal,
    ) -> io::Result<Input> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.rbuf[scanned..].iter().position(|&b| b == b'\n') {
                let line = self.rbuf.split_to(scanned + i + 1);
                if line.len() > max {
                    return Ok(Input::TooLong);
                }
                return Ok(Input::Line(line));
            }
            scanned = self.rbuf.len();
            if scanned > hard_max {
                return Ok(Input::Unterminated);
            }
            self.flush().await?;
            self.rbuf.reserve(READ_CHUNK);
            let read = tokio::select! {
                () = shutdown.triggered() => return Ok(Input::Shutdown),
                read = self.conn.read_buf(&mut self.rbuf) => read,
            };
            match read {
                Ok(0) => return Ok(Input::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(Input::Timeout),
                Err(e) => return Err(e),
            }
        }
    }

    /// STLS: sends the queued `+OK`, then performs the TLS handshake. The read buffer must
    /// have been discarded: plaintext must never reach the TLS session.
    pub(crate) async fn upgrade(mut self) -> io::Result<Self> {
        if !self.rbuf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "plaintext still buffered at STLS",
            ));
        }
        self.flush().await?;
        Ok(Io {
            conn: self.conn.upgrade().await?,
            rbuf: BytesMut::new(),
            wbuf: Vec::new(),
        })
    }
}

/// Strips the line end (CRLF, or a bare LF, which POP3 clients are forgiven).
pub(crate) fn strip_line_end(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Shutdown;
    use std::time::Duration;
    use tokio::io::duplex;

    #[tokio::test]
    async fn lines_long_lines_unterminated_and_eof() {
        let (mut client, server) = duplex(64 * 1024);
        let mut io = Io::new(Conn::plain(server, Duration::from_secs(5)));
        let shutdown = Shutdown::new();
        let signal = shutdown.signal();
        client.write_all(b"STAT\r\nNOOP\n").await.unwrap();
        client.write_all(&[b'x'; 300]).await.unwrap();
        client.write_all(b"\r\nLIST\r\n").await.unwrap();
        client.write_all(&[b'y'; 5000]).await.unwrap();
        let mut got = Vec::new();
        loop {
            match io.read_line(255, 4096, &signal).await.unwrap() {
                Input::Line(l) => got.push(String::from_utf8(l.to_vec()).unwrap()),
                Input::TooLong => got.push("<too long>".into()),
                Input::Unterminated => {
                    got.push("<unterminated>".into());
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            got,
            [
                "STAT\r\n",
                "NOOP\n",
                "<too long>",
                "LIST\r\n",
                "<unterminated>"
            ]
        );
        drop(client);
        io.discard_buffered();
        assert!(matches!(
            io.read_line(255, 4096, &signal).await.unwrap(),
            Input::Eof
        ));
    }

    #[tokio::test]
    async fn shutdown_ends_a_wait() {
        let (_client, server) = duplex(1024);
        let mut io = Io::new(Conn::plain(server, Duration::from_secs(5)));
        let shutdown = Shutdown::new();
        let signal = shutdown.signal();
        shutdown.trigger();
        assert!(matches!(
            io.read_line(255, 4096, &signal).await.unwrap(),
            Input::Shutdown
        ));
    }

    #[test]
    fn line_ends() {
        assert_eq!(strip_line_end(b"a\r\n"), b"a");
        assert_eq!(strip_line_end(b"a\n"), b"a");
        assert_eq!(strip_line_end(b"a"), b"a");
    }
}
