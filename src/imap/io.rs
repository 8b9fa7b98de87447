//! The session's side of the connection: a bounded read buffer cut into lines and literal
//! bytes, a response buffer that is written out whenever it passes a bound, and the STARTTLS
//! hand-over. It never interprets what it reads.
//!
//! Security note: a line longer than the limit is read to its end and dropped, never stored;
//! literals are read only up to the length the session accepted; the response buffer is
//! flushed (a write the client must read, under the idle timeout) whenever it passes
//! `max_output`, so a client that stops reading holds at most that much of the server's
//! memory before its session times out. On STARTTLS anything buffered is discarded.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::net::{Conn, ShutdownSignal};

const READ_CHUNK: usize = 8 * 1024;

/// What waiting for the client produced.
#[derive(Debug)]
pub enum Input {
    /// A line with its line end.
    Line(BytesMut),
    /// A line longer than the limit; read to its end and dropped.
    TooLong,
    Eof,
    Timeout,
    Shutdown,
}

pub struct Io<S> {
    pub conn: Conn<S>,
    rbuf: BytesMut,
    pub out: Vec<u8>,
    max_output: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    pub fn new(conn: Conn<S>, max_output: usize) -> Self {
        Io {
            conn,
            rbuf: BytesMut::new(),
            out: Vec::new(),
            max_output,
        }
    }

    /// Writes out buffered responses.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.conn.write_all(&self.out).await?;
            self.conn.flush().await?;
            self.out.clear();
            if self.out.capacity() > self.max_output {
                self.out.shrink_to(self.max_output);
            }
        }
        Ok(())
    }

    /// Flushes when the buffer passed its bound (long FETCH responses).
    pub async fn flush_if_full(&mut self) -> io::Result<()> {
        if self.out.len() >= self.max_output {
            self.flush().await?;
        }
        Ok(())
    }

    /// The next line (at most `max` bytes with its line end). Responses are flushed before
    /// any wait; `shutdown`, if given, ends the wait.
    pub async fn read_line(
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
                discarding = true;
                self.rbuf.clear();
                scanned = 0;
            }
            match self.fill(shutdown).await? {
                Some(Input::Line(_)) | None => {}
                Some(other) => return Ok(other),
            }
        }
    }

    /// Reads exactly `n` literal bytes onto `into`. Not interrupted by shutdown (the grace
    /// period lets a transfer finish).
    pub async fn read_literal(
        &mut self,
        n: usize,
        into: &mut Vec<u8>,
    ) -> io::Result<Option<Input>> {
        let mut left = n;
        loop {
            let take = left.min(self.rbuf.len());
            into.extend_from_slice(&self.rbuf[..take]);
            self.rbuf.advance(take);
            left -= take;
            if left == 0 {
                return Ok(None);
            }
            match self.fill(None).await? {
                None => {}
                Some(other) => return Ok(Some(other)),
            }
        }
    }

    /// Reads exactly `n` literal bytes into `w` (a spool file).
    pub async fn read_literal_to<W: AsyncWrite + Unpin>(
        &mut self,
        n: u64,
        w: &mut W,
    ) -> io::Result<Option<Input>> {
        let mut left = n;
        loop {
            let take = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.rbuf.len());
            w.write_all(&self.rbuf[..take]).await?;
            self.rbuf.advance(take);
            left -= take as u64;
            if left == 0 {
                w.flush().await?;
                return Ok(None);
            }
            match self.fill(None).await? {
                None => {}
                Some(other) => return Ok(Some(other)),
            }
        }
    }

    /// One read from the client after flushing; `Some` when it ended the wait.
    async fn fill(&mut self, shutdown: Option<&ShutdownSignal>) -> io::Result<Option<Input>> {
        self.flush().await?;
        self.rbuf.reserve(READ_CHUNK);
        let read = match shutdown {
            Some(signal) => tokio::select! {
                () = signal.triggered() => return Ok(Some(Input::Shutdown)),
                read = self.conn.read_buf(&mut self.rbuf) => read,
            },
            None => self.conn.read_buf(&mut self.rbuf).await,
        };
        match read {
            Ok(0) => Ok(Some(Input::Eof)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(Some(Input::Timeout)),
            Err(e) => Err(e),
        }
    }

    /// Drops everything buffered; returns how much that was.
    pub fn discard_buffered(&mut self) -> usize {
        let n = self.rbuf.len();
        self.rbuf.clear();
        n
    }

    /// STARTTLS: sends the queued OK, then performs the handshake.
    pub async fn upgrade(mut self) -> io::Result<Self> {
        self.rbuf.clear();
        self.flush().await?;
        Ok(Io {
            conn: self.conn.upgrade().await?,
            rbuf: BytesMut::new(),
            out: Vec::new(),
            max_output: self.max_output,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::duplex;

    #[tokio::test]
    async fn lines_literals_and_long_lines() {
        let (mut client, server) = duplex(64 * 1024);
        let mut io = Io::new(Conn::plain(server, Duration::from_secs(5)), 4096);
        client.write_all(b"a LOGIN {3}\r\nxyz\r\n").await.unwrap();
        client.write_all(&vec![b'x'; 3000]).await.unwrap();
        client.write_all(b"\r\nb NOOP\r\n").await.unwrap();
        drop(client);
        let Input::Line(l) = io.read_line(1000, None).await.unwrap() else {
            panic!()
        };
        assert_eq!(&l[..], b"a LOGIN {3}\r\n");
        let mut lit = Vec::new();
        assert!(io.read_literal(3, &mut lit).await.unwrap().is_none());
        assert_eq!(lit, b"xyz");
        let Input::Line(l) = io.read_line(1000, None).await.unwrap() else {
            panic!()
        };
        assert_eq!(&l[..], b"\r\n");
        assert!(matches!(
            io.read_line(1000, None).await.unwrap(),
            Input::TooLong
        ));
        let Input::Line(l) = io.read_line(1000, None).await.unwrap() else {
            panic!()
        };
        assert_eq!(&l[..], b"b NOOP\r\n");
        assert!(matches!(
            io.read_line(1000, None).await.unwrap(),
            Input::Eof
        ));
        let mut lit = Vec::new();
        assert!(matches!(
            io.read_literal(5, &mut lit).await.unwrap(),
            Some(Input::Eof)
        ));
    }
}
