//! ClamAV: a client of clamd's `INSTREAM` command. The connection, the deadline and the
//! [`ScanError`] it returns are shared with [`spamd`] (the other scanner daemon the content
//! stage talks to) in `scanner`.
//!
//! Job: [`scan`] streams one message to clamd (`zINSTREAM\0`, chunks of `<u32 big-endian
//! length><bytes>`, a zero-length chunk to end) and returns a [`ClamdVerdict`]; [`ping`] checks
//! that the daemon answers. clamd parses the message itself (MIME, base64, archives), so the
//! message is sent as received. Wire parsing ([`parse_reply`]) does no I/O.
//!
//! Never: decide what happens to the mail (the policy does, from the verdict or the error and
//! `clamd.on_error`), retry, or send a message over `clamd.max_bytes`: such a message is not
//! sent and comes back as [`ScanError::OverMaxBytes`] — "not scanned" (see
//! [`ScanError::not_scanned`]).
//!
//! Security note: the message is attacker-controlled and the daemon's answer is only trusted
//! as far as its format: the whole exchange (connect, send, answer) is bounded by
//! `clamd.timeout_ms`, the answer by [`MAX_REPLY`] bytes, and no answer can panic the parser.
//!
//! [`spamd`]: super::spamd

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::policy::ScannerSettings;
pub use super::scanner::ScanError;
use super::scanner::{truncate, Conn, Scanner};

/// Bytes of message per `INSTREAM` chunk.
pub const CHUNK: usize = 64 * 1024;
/// The longest answer accepted from clamd (a verdict line is well under 1 KiB).
pub const MAX_REPLY: usize = 4096;

/// What clamd found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdVerdict {
    /// Nothing: `stream: OK`.
    Clean,
    /// A signature matched: its name as clamd reports it (`Eicar-Test-Signature`; signatures
    /// of local, unsigned databases carry a `.UNOFFICIAL` suffix).
    Virus(String),
}

const DAEMON: Scanner = Scanner { name: "clamd" };

/// Scans `message` with clamd at `settings.address`, within `settings.timeout_ms`.
///
/// A message over `settings.max_bytes` is not sent: [`ScanError::OverMaxBytes`].
pub async fn scan(settings: &ScannerSettings, message: &[u8]) -> Result<ClamdVerdict, ScanError> {
    DAEMON.check_size(message.len(), settings.max_bytes)?;
    DAEMON
        .exchange(&settings.address, settings.timeout_ms, |conn| async {
            parse_reply(&instream(conn, message).await?)
        })
        .await
}

/// Checks that clamd answers `PING` with `PONG` within `settings.timeout_ms`.
pub async fn ping(settings: &ScannerSettings) -> Result<(), ScanError> {
    DAEMON
        .exchange(
            &settings.address,
            settings.timeout_ms,
            |mut conn| async move {
                conn.write_all(b"zPING\0").await.map_err(io_err)?;
                conn.flush().await.map_err(io_err)?;
                match read_reply(&mut conn).await?.as_slice() {
                    b"PONG" => Ok(()),
                    other => Err(DAEMON.protocol(format!(
                        "PING answered {:?}",
                        String::from_utf8_lossy(other)
                    ))),
                }
            },
        )
        .await
}

fn io_err(source: io::Error) -> ScanError {
    DAEMON.io(source)
}

/// Sends the message and reads the answer at the same time: clamd answers `INSTREAM size
/// limit exceeded` and closes while the message is still coming, and that answer must not be
/// lost to the broken pipe the rest of the stream then meets.
async fn instream(conn: Box<dyn Conn>, message: &[u8]) -> Result<Vec<u8>, ScanError> {
    let (mut rd, mut wr) = tokio::io::split(conn);
    let send = async move {
        wr.write_all(b"zINSTREAM\0").await?;
        let mut buf = Vec::with_capacity(4 + CHUNK);
        for chunk in message.chunks(CHUNK) {
            buf.clear();
            // A chunk is at most CHUNK (64 KiB) long, so its length fits a u32.
            buf.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
            buf.extend_from_slice(chunk);
            wr.write_all(&buf).await?;
        }
        wr.write_all(&0u32.to_be_bytes()).await?;
        wr.flush().await?;
        // Handed back and kept open until the answer is in: clamd may take a half-closed
        // connection for a client gone away.
        Ok::<_, io::Error>(wr)
    };
    let receive = read_reply(&mut rd);
    tokio::pin!(send, receive);
    let mut sent = false;
    let mut send_error = None;
    let mut _open_write_half = None;
    loop {
        tokio::select! {
            r = &mut send, if !sent => {
                sent = true;
                match r {
                    Ok(wr) => _open_write_half = Some(wr),
                    Err(e) => send_error = Some(e),
                }
            }
            reply = &mut receive => {
                return match (reply, send_error) {
                    // The answer, even after a failed send, is what clamd has to say.
                    (Ok(r), _) if !r.is_empty() => Ok(r),
                    (_, Some(e)) => Err(io_err(e)),
                    (r, None) => r,
                };
            }
        }
    }
}

/// Reads one `z`-style answer: up to its NUL terminator, or the end of the stream.
async fn read_reply<R: AsyncRead + Unpin>(rd: &mut R) -> Result<Vec<u8>, ScanError> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = rd.read(&mut buf).await.map_err(io_err)?;
        if n == 0 {
            if reply.is_empty() {
                return Err(DAEMON.protocol("the connection closed without an answer"));
            }
            return Ok(reply);
        }
        let got = buf.get(..n).unwrap_or(&[]);
        if let Some(end) = got.iter().position(|&b| b == 0) {
            reply.extend_from_slice(got.get(..end).unwrap_or(&[]));
            return Ok(reply);
        }
        reply.extend_from_slice(got);
        if reply.len() > MAX_REPLY {
            return Err(DAEMON.protocol(format!("an answer over {MAX_REPLY} bytes")));
        }
    }
}

/// Parses clamd's answer to `INSTREAM` (without its NUL terminator).
pub fn parse_reply(reply: &[u8]) -> Result<ClamdVerdict, ScanError> {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches(['\0', '\n', '\r']).trim();
    let protocol = |what: &str| DAEMON.protocol(format!("{what}: {:?}", truncate(text, 200)));
    if let Some(err) = text.strip_suffix(" ERROR") {
        let err = err.strip_prefix("stream:").unwrap_or(err).trim();
        if err.to_ascii_lowercase().contains("size limit exceeded") {
            return Err(ScanError::TooLarge {
                daemon: DAEMON.name,
            });
        }
        return Err(ScanError::Daemon {
            daemon: DAEMON.name,
            message: truncate(err, 200).to_string(),
        });
    }
    let Some(rest) = text.strip_prefix("stream:") else {
        return Err(protocol("not an INSTREAM answer"));
    };
    let rest = rest.trim();
    if rest == "OK" {
        return Ok(ClamdVerdict::Clean);
    }
    let Some(name) = rest.strip_suffix(" FOUND") else {
        return Err(protocol("neither OK, FOUND nor ERROR"));
    };
    // ExtendedDetectionInfo appends `(hash:size)` to the name.
    let name = match name.find('(') {
        Some(i) if name.ends_with(')') => name.get(..i).unwrap_or(name),
        _ => name,
    }
    .trim();
    if name.is_empty() || name.chars().any(|c| c.is_control() || c == ' ') {
        return Err(protocol("a FOUND answer without a signature name"));
    }
    Ok(ClamdVerdict::Virus(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::TcpListener;

    fn settings(address: String) -> ScannerSettings {
        ScannerSettings {
            address,
            timeout_ms: 2_000,
            on_error: super::super::policy::OnError::Tempfail,
            max_bytes: 1024 * 1024,
        }
    }

    #[test]
    fn answers_parse() {
        assert_eq!(parse_reply(b"stream: OK").unwrap(), ClamdVerdict::Clean);
        assert_eq!(
            parse_reply(b"stream: Eicar-Test-Signature FOUND").unwrap(),
            ClamdVerdict::Virus("Eicar-Test-Signature".into())
        );
        assert_eq!(
            parse_reply(b"stream: Eicar-Test-Signature.UNOFFICIAL(44d88612fea8a8f36de82e1278abb02f:68) FOUND\n")
                .unwrap(),
            ClamdVerdict::Virus("Eicar-Test-Signature.UNOFFICIAL".into())
        );
        assert!(matches!(
            parse_reply(b"INSTREAM size limit exceeded. ERROR"),
            Err(ScanError::TooLarge { .. })
        ));
        match parse_reply(b"stream: Can't allocate memory ERROR") {
            Err(ScanError::Daemon { message, .. }) => assert_eq!(message, "Can't allocate memory"),
            other => panic!("{other:?}"),
        }
        for bad in [
            &b""[..],
            b"UNKNOWN COMMAND",
            b"stream: FOUND",
            b"stream:  FOUND",
            b"stream: maybe",
            b"PONG",
            b"\xff\xfe stream",
        ] {
            assert!(
                matches!(parse_reply(bad), Err(ScanError::Protocol { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn size_errors_are_not_scanned() {
        assert!(ScanError::TooLarge { daemon: "clamd" }.not_scanned());
        assert!(!ScanError::Timeout {
            daemon: "clamd",
            timeout_ms: 1
        }
        .not_scanned());
    }

    /// A fake clamd that checks the framing and answers `answer`.
    async fn fake(answer: &'static [u8]) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut cmd = [0u8; 10];
            s.read_exact(&mut cmd).await.unwrap();
            assert_eq!(&cmd, b"zINSTREAM\0");
            let mut body = Vec::new();
            loop {
                let mut len = [0u8; 4];
                s.read_exact(&mut len).await.unwrap();
                let len = u32::from_be_bytes(len) as usize;
                assert!(len <= CHUNK);
                if len == 0 {
                    break;
                }
                let mut chunk = vec![0; len];
                s.read_exact(&mut chunk).await.unwrap();
                body.extend_from_slice(&chunk);
            }
            s.write_all(answer).await.unwrap();
            body
        });
        (addr, h)
    }

    #[tokio::test]
    async fn streams_in_chunks_and_reads_the_verdict() {
        let message: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (addr, h) = fake(b"stream: Test.Sig FOUND\0").await;
        let v = scan(&settings(addr), &message).await.unwrap();
        assert_eq!(v, ClamdVerdict::Virus("Test.Sig".into()));
        assert_eq!(h.await.unwrap(), message);
    }

    #[tokio::test]
    async fn a_limit_answer_mid_stream_is_not_lost() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut start = [0u8; 14];
            s.read_exact(&mut start).await.unwrap();
            s.write_all(b"INSTREAM size limit exceeded. ERROR\0")
                .await
                .unwrap();
            // Closes with the rest of the stream unread, as clamd does.
        });
        let r = scan(&settings(addr), &vec![b'x'; 1024 * 1024]).await;
        assert!(matches!(r, Err(ScanError::TooLarge { .. })), "{r:?}");
    }

    #[tokio::test]
    async fn over_max_bytes_is_not_sent() {
        // Nothing listens there: a connection attempt would give Connect, not OverMaxBytes.
        let mut s = settings("127.0.0.1:1".into());
        s.max_bytes = 10;
        match scan(&s, &[b'x'; 11]).await {
            Err(
                e @ ScanError::OverMaxBytes {
                    size: 11, max: 10, ..
                },
            ) => assert!(e.not_scanned()),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_unanswered_connection_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut s = settings(l.local_addr().unwrap().to_string());
        s.timeout_ms = 200;
        let start = std::time::Instant::now();
        let r = scan(&s, b"Subject: x\r\n\r\nx\r\n").await;
        assert!(
            matches!(
                r,
                Err(ScanError::Timeout {
                    timeout_ms: 200,
                    ..
                })
            ),
            "{r:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(matches!(ping(&s).await, Err(ScanError::Timeout { .. })));
        drop(l);
    }

    #[tokio::test]
    async fn unix_socket_addresses_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clamd.sock");
        let l = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut cmd = [0u8; 6];
            s.read_exact(&mut cmd).await.unwrap();
            assert_eq!(&cmd, b"zPING\0");
            s.write_all(b"PONG\0").await.unwrap();
        });
        ping(&settings(path.to_string_lossy().into_owned()))
            .await
            .unwrap();
        let missing = dir.path().join("absent.sock");
        assert!(matches!(
            ping(&settings(missing.to_string_lossy().into_owned())).await,
            Err(ScanError::Connect { .. })
        ));
    }
}
