//! SpamAssassin: a client of spamd (the SPAMC/SPAMD protocol, version 1.5).
//!
//! Job: [`check`] sends one message with `SYMBOLS` and returns a [`SpamdReport`]: spamd's
//! verdict, score, threshold and the names of the rules that hit. The policy adds the score
//! (times `spamd.weight`) to its own; nothing here tags or rejects. Wire parsing
//! ([`parse_response`]) does no I/O.
//!
//! Never: decide what happens to the mail, retry, send a message over `spamd.max_bytes` (it is
//! not sent: [`ScanError::OverMaxBytes`], "not scanned", see [`ScanError::not_scanned`]), or
//! ask spamd to learn or report (`TELL`).
//!
//! Security note: the message is attacker-controlled and reaches spamd byte for byte; spamd's
//! answer is bounded by [`MAX_RESPONSE`] bytes and parsed without panics, and the whole
//! exchange (connect, send, answer) by `spamd.timeout_ms`. No user name is sent, so spamd
//! applies its site configuration only.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::policy::SpamdSettings;
pub use super::scanner::ScanError;
use super::scanner::{truncate, Conn, Scanner};

/// The longest answer accepted from spamd (a `SYMBOLS` answer is a few hundred bytes).
pub const MAX_RESPONSE: usize = 64 * 1024;

const DAEMON: Scanner = Scanner { name: "spamd" };

/// What spamd said about a message.
#[derive(Debug, Clone, PartialEq)]
pub struct SpamdReport {
    /// Whether spamd calls it spam (`score >= threshold` under spamd's configuration).
    pub spam: bool,
    /// spamd's score.
    pub score: f64,
    /// spamd's `required_score`.
    pub threshold: f64,
    /// The rules that hit (`GTUBE`, `NO_RELAYS`, …), in spamd's order.
    pub symbols: Vec<String>,
}

/// Checks `message` with spamd at `settings.address`, within `settings.timeout_ms`.
///
/// A message over `settings.max_bytes` is not sent: [`ScanError::OverMaxBytes`].
pub async fn check(settings: &SpamdSettings, message: &[u8]) -> Result<SpamdReport, ScanError> {
    DAEMON.check_size(message.len(), settings.max_bytes)?;
    let talk = |mut conn: Box<dyn Conn>| async move {
        let head = format!(
            "SYMBOLS SPAMC/1.5\r\nContent-length: {}\r\n\r\n",
            message.len()
        );
        let sent = async {
            conn.write_all(head.as_bytes()).await?;
            conn.write_all(message).await?;
            conn.flush().await?;
            // As spamc does: spamd may read to the end of the stream.
            conn.shutdown().await
        }
        .await;
        let response = read_response(&mut conn).await;
        match (sent, response) {
            // spamd refuses a bad request and closes while it is still coming: its answer
            // says why better than the broken pipe does.
            (_, Ok(r)) if !r.is_empty() => parse_response(&r),
            (Err(e), _) => Err(io_err(e)),
            (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(_)) => Err(protocol("the connection closed without an answer")),
        }
    };
    DAEMON
        .exchange(&settings.address, settings.timeout_ms, talk)
        .await
}

fn io_err(source: io::Error) -> ScanError {
    DAEMON.io(source)
}

fn protocol(detail: impl Into<String>) -> ScanError {
    DAEMON.protocol(detail)
}

/// Reads the answer: its headers and `Content-length` bytes of body, or up to the end of the
/// stream when there is no `Content-length` (error answers), at most [`MAX_RESPONSE`] bytes.
async fn read_response<R: AsyncRead + Unpin>(rd: &mut R) -> Result<Vec<u8>, ScanError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(total) = response_len(&buf) {
            if buf.len() >= total {
                buf.truncate(total);
                return Ok(buf);
            }
        }
        let n = match rd.read(&mut chunk).await {
            Ok(n) => n,
            // A reset after a complete error answer still leaves that answer to parse.
            Err(_) if !buf.is_empty() => return Ok(buf),
            Err(e) => return Err(io_err(e)),
        };
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        if buf.len() > MAX_RESPONSE {
            return Err(protocol(format!("an answer over {MAX_RESPONSE} bytes")));
        }
    }
}

/// The header block's end (after its blank line), if complete.
fn header_end(buf: &[u8]) -> Option<usize> {
    memchr::memmem::find(buf, b"\r\n\r\n").map(|i| i + 4)
}

/// The whole answer's length once its headers are in and name a `Content-length`.
fn response_len(buf: &[u8]) -> Option<usize> {
    let end = header_end(buf)?;
    let head = std::str::from_utf8(buf.get(..end)?).ok()?;
    let len = head.lines().skip(1).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    })?;
    end.checked_add(len)
}

/// The names of sysexits(3) codes, as spamd uses them.
fn exit_name(code: u32) -> &'static str {
    match code {
        64 => "EX_USAGE",
        65 => "EX_DATAERR",
        66 => "EX_NOINPUT",
        67 => "EX_NOUSER",
        68 => "EX_NOHOST",
        69 => "EX_UNAVAILABLE",
        70 => "EX_SOFTWARE",
        71 => "EX_OSERR",
        72 => "EX_OSFILE",
        73 => "EX_CANTCREAT",
        74 => "EX_IOERR",
        75 => "EX_TEMPFAIL",
        76 => "EX_PROTOCOL",
        77 => "EX_NOPERM",
        78 => "EX_CONFIG",
        _ => "unknown code",
    }
}

/// Parses spamd's whole answer to `SYMBOLS`.
pub fn parse_response(response: &[u8]) -> Result<SpamdReport, ScanError> {
    let (head, body) = match header_end(response) {
        Some(end) => (
            response.get(..end).unwrap_or(&[]),
            response.get(end..).unwrap_or(&[]),
        ),
        None => (response, &[][..]),
    };
    let head = std::str::from_utf8(head).map_err(|_| protocol("headers that are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let shown = || truncate(status, 200).to_string();
    let mut words = status.splitn(3, ' ');
    let version = words.next().unwrap_or("");
    if !version.starts_with("SPAMD/1.") {
        return Err(protocol(format!("not a SPAMD status line: {:?}", shown())));
    }
    let code: u32 = words
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| protocol(format!("no code in {:?}", shown())))?;
    let text = words.next().unwrap_or("").trim();
    if code != 0 {
        return Err(ScanError::Daemon {
            daemon: DAEMON.name,
            message: format!("{} ({code}): {}", exit_name(code), truncate(text, 200)),
        });
    }
    if header_end(response).is_none() {
        return Err(protocol("an EX_OK answer without its headers"));
    }
    let mut verdict = None;
    let mut length = None;
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(protocol(format!(
                "a header line without a colon: {:?}",
                truncate(line, 200)
            )));
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("spam") {
            verdict = Some(parse_spam_header(value.trim())?);
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| protocol(format!("Content-length {:?}", truncate(value, 40))))?,
            );
        }
    }
    let (spam, score, threshold) =
        verdict.ok_or_else(|| protocol("an EX_OK answer without a Spam header"))?;
    let body = match length {
        Some(n) => body
            .get(..n)
            .ok_or_else(|| protocol(format!("a body shorter than its Content-length {n}")))?,
        None => body,
    };
    let body =
        std::str::from_utf8(body).map_err(|_| protocol("a symbol list that is not UTF-8"))?;
    let symbols = body
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    Ok(SpamdReport {
        spam,
        score,
        threshold,
        symbols,
    })
}

/// `True ; 15.3 / 5.0` (older spamd versions say `Yes`/`No`).
fn parse_spam_header(value: &str) -> Result<(bool, f64, f64), ScanError> {
    let bad = || protocol(format!("Spam header {:?}", truncate(value, 100)));
    let (flag, scores) = value.split_once(';').ok_or_else(bad)?;
    let spam = match flag.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" => true,
        "false" | "no" => false,
        _ => return Err(bad()),
    };
    let (score, threshold) = scores.split_once('/').ok_or_else(bad)?;
    let number = |s: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    Ok((
        spam,
        number(score).ok_or_else(bad)?,
        number(threshold).ok_or_else(bad)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::antiube::policy::OnError;
    use tokio::net::TcpListener;

    fn settings(address: String) -> SpamdSettings {
        SpamdSettings {
            address,
            timeout_ms: 2_000,
            on_error: OnError::Skip,
            max_bytes: 1024,
            weight: 1.0,
        }
    }

    #[test]
    fn answers_parse() {
        let r = parse_response(
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 55\r\nSpam: True ; 1000.3 / 5.0\r\n\r\nGTUBE,MSGID_SHORT,NO_RECEIVED,NO_RELAYS,TVD_SPACE_RATIO",
        )
        .unwrap();
        assert!(r.spam);
        assert_eq!((r.score, r.threshold), (1000.3, 5.0));
        assert_eq!(r.symbols.len(), 5);
        assert_eq!(r.symbols[0], "GTUBE");
        let r = parse_response(
            b"SPAMD/1.1 0 EX_OK\r\nSpam: No ; -1.9 / 5.0\r\nContent-length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            r,
            SpamdReport {
                spam: false,
                score: -1.9,
                threshold: 5.0,
                symbols: vec![]
            }
        );
        // A trailing newline and spaces around names are not part of them.
        let r = parse_response(b"SPAMD/1.1 0 EX_OK\r\nspam: False ; 0.3 / 5.0\r\n\r\nA, B\r\n")
            .unwrap();
        assert_eq!(r.symbols, ["A", "B"]);
    }

    #[test]
    fn error_codes_are_daemon_errors() {
        match parse_response(b"SPAMD/1.0 76 Bad header line: FROB SPAMC/1.5\r\n") {
            Err(ScanError::Daemon { message, .. }) => {
                assert!(message.starts_with("EX_PROTOCOL (76)"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_response(b"SPAMD/1.1 75 EX_TEMPFAIL\r\n\r\n"),
            Err(ScanError::Daemon { .. })
        ));
    }

    #[test]
    fn malformed_answers_are_protocol_errors() {
        for bad in [
            &b""[..],
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"SPAMD/1.1 x EX_OK\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 3\r\n\r\nA",
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nSpam: Maybe ; 1 / 5\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; NaN / 5\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nSpam True\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1 / 5\r\n\r\n\xff",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(parse_response(bad), Err(ScanError::Protocol { .. })),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[tokio::test]
    async fn sends_symbols_request_and_reads_by_content_length() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            s.read_to_end(&mut req).await.unwrap();
            // Answer, then keep the connection open: the client must stop at Content-length.
            s.write_all(
                b"SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\nSpam: False ; 1.5 / 5.0\r\n\r\nA,B_C",
            )
            .await
            .unwrap();
            let _ = s.read(&mut [0u8; 1]).await;
            req
        });
        let r = check(&settings(addr), b"Subject: hi\r\n\r\nhello\r\n")
            .await
            .unwrap();
        assert_eq!(r.symbols, ["A", "B_C"]);
        assert!(!r.spam);
        let req = server.await.unwrap();
        assert_eq!(
            req,
            b"SYMBOLS SPAMC/1.5\r\nContent-length: 22\r\n\r\nSubject: hi\r\n\r\nhello\r\n"
        );
    }

    #[tokio::test]
    async fn limits_hold() {
        let mut s = settings("127.0.0.1:1".into());
        assert!(matches!(
            check(&s, &[b'x'; 1025]).await,
            Err(ScanError::OverMaxBytes {
                size: 1025,
                max: 1024,
                ..
            })
        ));
        // An endless answer is cut at MAX_RESPONSE.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        s.address = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut c, _) = l.accept().await.unwrap();
            let junk = vec![b'a'; 8192];
            while c.write_all(&junk).await.is_ok() {}
        });
        let r = check(&s, b"x").await;
        assert!(matches!(r, Err(ScanError::Protocol { .. })), "{r:?}");
        // A silent server times out.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        s.address = l.local_addr().unwrap().to_string();
        s.timeout_ms = 150;
        let r = check(&s, b"x").await;
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
    }
}
