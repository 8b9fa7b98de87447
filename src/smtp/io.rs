//! The session's side of the connection: a bounded read buffer cut into lines, a reply buffer
//! flushed only when the client has nothing more buffered (PIPELINING, RFC 2920), and the
//! STARTTLS hand-over.
//!
//! It never interprets a line; it only enforces the line-length limit while reading (a longer
//! line is read to its end and discarded, never stored), so a session holds at most one line
//! plus one read chunk whatever the client sends.
//!
//! Security note: on STARTTLS the caller discards everything still buffered
//! ([`Io::discard_buffered`]) before the handshake, so plaintext pipelined after the command
//! can never be executed inside the TLS session (CVE-2011-0411).

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::net::{Conn, ShutdownSignal};

use super::reply::Reply;

/// Octets asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;
/// Reply bytes buffered before a flush even while commands remain: bounds the output buffer
/// when a client pipelines many commands without reading.
const MAX_PENDING_OUTPUT: usize = 16 * 1024;

/// What reading a line produced.
#[derive(Debug)]
pub(crate) enum Input {
    /// A line, its LF included (and its CR, when the client sent one).
    Line(BytesMut),
    /// A line longer than the limit; it was read to its end and dropped.
    TooLong,
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

    /// Queues a reply; it is sent at the next flush.
    pub(crate) fn reply(&mut self, reply: &Reply) {
        tracing::trace!(%reply, "reply");
        reply.write_to(&mut self.wbuf);
    }

    /// Sends queued replies.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.conn.write_all(&self.wbuf).await?;
            self.conn.flush().await?;
            self.wbuf.clear();
            if self.wbuf.capacity() > MAX_PENDING_OUTPUT {
                self.wbuf.shrink_to(MAX_PENDING_OUTPUT);
            }
        }
        Ok(())
    }

    /// Flushes if the output buffer grew large (a client pipelining without reading).
    pub(crate) async fn flush_if_full(&mut self) -> io::Result<()> {
        if self.wbuf.len() >= MAX_PENDING_OUTPUT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Bytes received and not yet consumed.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.rbuf
    }

    /// Drops the first `n` buffered bytes.
    pub(crate) fn consume(&mut self, n: usize) {
        self.rbuf.advance(n);
    }

    /// Drops everything buffered; returns how much that was.
    pub(crate) fn discard_buffered(&mut self) -> usize {
        let n = self.rbuf.len();
        self.rbuf.clear();
        n
    }

    /// Flushes replies, then waits for more bytes. `Ok(0)` is end of stream; an idle timeout
    /// is an `Err` of kind `TimedOut`. Not interrupted by shutdown: used inside a transfer,
    /// which the shutdown grace period is there to let finish.
    pub(crate) async fn fill(&mut self) -> io::Result<usize> {
        self.flush().await?;
        self.rbuf.reserve(READ_CHUNK);
        self.conn.read_buf(&mut self.rbuf).await
    }

    /// The next line, at most `max` octets with its line end. Replies are flushed before any
    /// wait, so pipelined commands are answered in one write. While waiting, `shutdown` (if
    /// given) ends the read.
    pub(crate) async fn read_line(
        &mut self,
        max: usize,
        shutdown: Option<&ShutdownSignal>,
    ) -> io::Result<Input> {
        let mut scanned = 0;
        let mut discarding = false;
        loop {
            if let Some(i) = self.rbuf[scanned..].iter().position(|&b| b == b'\n') {
                let line = self.rbuf.split_to(scanned + i + 1);
                if discarding || line.len() > max {
                    return Ok(Input::TooLong);
                }
                return Ok(Input::Line(line));
            }
            scanned = self.rbuf.len();
            if scanned > max {
                // Keep nothing of an overlong line: read on to its end and report it.
                discarding = true;
                self.rbuf.clear();
                scanned = 0;
            }
            self.flush().await?;
            self.rbuf.reserve(READ_CHUNK);
            let read = match shutdown {
                Some(signal) => tokio::select! {
                    () = signal.triggered() => return Ok(Input::Shutdown),
                    read = self.conn.read_buf(&mut self.rbuf) => read,
                },
                None => self.conn.read_buf(&mut self.rbuf).await,
            };
            match read {
                Ok(0) => return Ok(Input::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(Input::Timeout),
                Err(e) => return Err(e),
            }
        }
    }

    /// STARTTLS: sends the queued 220, then performs the TLS handshake. The read buffer
    /// must have been discarded: plaintext must never reach the TLS session.
    pub(crate) async fn upgrade(mut self) -> io::Result<Self> {
        if !self.rbuf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "plaintext still buffered at STARTTLS",
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

/// Strips the line end (CRLF, or a bare LF) and tells whether it was a proper CRLF.
pub(crate) fn strip_line_end(line: &[u8]) -> (&[u8], bool) {
    match line.strip_suffix(b"\r\n") {
        Some(l) => (l, true),
        None => (line.strip_suffix(b"\n").unwrap_or(line), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::duplex;

    #[tokio::test]
    async fn lines_long_lines_and_eof() {
        let (mut client, server) = duplex(64 * 1024);
        let mut io = Io::new(Conn::plain(server, Duration::from_secs(5)));
        let long = vec![b'x'; 3000];
        client.write_all(b"NOOP\r\nQUIT\n").await.unwrap();
        client.write_all(&long).await.unwrap();
        client.write_all(b"\r\nAFTER\r\n").await.unwrap();
        drop(client);
        let mut got = Vec::new();
        loop {
            match io.read_line(1000, None).await.unwrap() {
                Input::Line(l) => got.push(String::from_utf8(l.to_vec()).unwrap()),
                Input::TooLong => got.push("<too long>".into()),
                Input::Eof => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, ["NOOP\r\n", "QUIT\n", "<too long>", "AFTER\r\n"]);
        assert!(
            io.rbuf.capacity() < 16 * 1024,
            "the long line was not stored"
        );
    }

    #[test]
    fn line_ends() {
        assert_eq!(strip_line_end(b"a\r\n"), (&b"a"[..], true));
        assert_eq!(strip_line_end(b"a\n"), (&b"a"[..], false));
        assert_eq!(strip_line_end(b"a\r\r\n"), (&b"a\r"[..], true));
    }
}
