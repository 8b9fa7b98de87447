//! The client side of SMTP and LMTP: one connection ([`Session`]) and one mail transaction
//! ([`transaction`]) shared by the LMTP and SMTP delivery agents.
//!
//! The session only moves bytes (with a timeout on every read and write) and leaves parsing to
//! `wire`. The transaction sends MAIL, one RCPT per recipient and DATA without pipelining, and
//! maps each reply to a per-recipient result: 2xx delivered, 4xx temporary, 5xx permanent;
//! LMTP reads one final reply per accepted recipient (RFC 2033 §4.2).
//!
//! It must never report a recipient delivered without the server's 2xx after the final dot.
//! Security note: nothing from a reply is used as a command; commands are built from the
//! validated envelope, with DSN values xtext-encoded.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::envelope::BodyType;
use super::transport::{Delivery, RcptResult, RcptStatus};
use super::wire::{take_reply, xtext, Capabilities, DotStuffer, Reply, ReplyError};

/// Why a session broke.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("timed out talking to {0}")]
    Timeout(String),
    #[error("{0} closed the connection")]
    Closed(String),
    #[error("I/O error with {peer}: {source}")]
    Io { peer: String, source: io::Error },
    #[error("bad reply from {peer}: {source}")]
    Reply { peer: String, source: ReplyError },
    #[error("TLS handshake with {peer} failed: {source}")]
    Tls { peer: String, source: io::Error },
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// One client connection.
pub(crate) struct Session {
    io: Io,
    inbuf: Vec<u8>,
    timeout: Duration,
    /// The server's name (MX host or LMTP address) for logs and `Remote-MTA`.
    pub peer: String,
}

impl Session {
    /// Connects and reads the greeting.
    pub async fn connect(
        addr: SocketAddr,
        peer: String,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<(Session, Reply), SessionError> {
        let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(SessionError::Connect { addr, source }),
            Err(_) => return Err(SessionError::Timeout(peer)),
        };
        let _ = tcp.set_nodelay(true);
        let mut s = Session {
            io: Io::Plain(tcp),
            inbuf: Vec::with_capacity(1024),
            timeout,
            peer,
        };
        let greeting = s.read_reply(timeout).await?;
        Ok((s, greeting))
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }

    async fn write_all(&mut self, data: &[u8]) -> Result<(), SessionError> {
        let fut = async {
            match &mut self.io {
                Io::Plain(s) => s.write_all(data).await,
                Io::Tls(s) => {
                    s.write_all(data).await?;
                    s.flush().await
                }
            }
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(SessionError::Io {
                peer: self.peer.clone(),
                source,
            }),
            Err(_) => Err(SessionError::Timeout(self.peer.clone())),
        }
    }

    /// Reads one complete reply, waiting at most `timeout`.
    pub async fn read_reply(&mut self, timeout: Duration) -> Result<Reply, SessionError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut chunk = [0u8; 4096];
        loop {
            match take_reply(&mut self.inbuf) {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(source) => {
                    return Err(SessionError::Reply {
                        peer: self.peer.clone(),
                        source,
                    })
                }
            }
            let read = async {
                match &mut self.io {
                    Io::Plain(s) => s.read(&mut chunk).await,
                    Io::Tls(s) => s.read(&mut chunk).await,
                }
            };
            match tokio::time::timeout_at(deadline, read).await {
                Ok(Ok(0)) => return Err(SessionError::Closed(self.peer.clone())),
                Ok(Ok(n)) => self.inbuf.extend_from_slice(&chunk[..n]),
                Ok(Err(source)) => {
                    return Err(SessionError::Io {
                        peer: self.peer.clone(),
                        source,
                    })
                }
                Err(_) => return Err(SessionError::Timeout(self.peer.clone())),
            }
        }
    }

    /// Sends one command line and reads its reply.
    pub async fn command(&mut self, line: &str) -> Result<Reply, SessionError> {
        let mut buf = Vec::with_capacity(line.len() + 2);
        buf.extend_from_slice(line.as_bytes());
        buf.extend_from_slice(b"\r\n");
        self.write_all(&buf).await?;
        self.read_reply(self.timeout).await
    }

    /// After a `220` to STARTTLS: runs the TLS handshake on the same connection.
    pub async fn upgrade(
        self,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Session, SessionError> {
        let Io::Plain(tcp) = self.io else {
            return Ok(self);
        };
        // Bytes after the 220 would be a plaintext injection into the TLS session (CVE-2011-0411
        // class): refuse rather than carry them over.
        if !self.inbuf.is_empty() {
            return Err(SessionError::Tls {
                peer: self.peer,
                source: io::Error::new(io::ErrorKind::InvalidData, "data after 220 to STARTTLS"),
            });
        }
        let connector = TlsConnector::from(config);
        match tokio::time::timeout(self.timeout, connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => Ok(Session {
                io: Io::Tls(Box::new(tls)),
                inbuf: Vec::new(),
                timeout: self.timeout,
                peer: self.peer,
            }),
            Ok(Err(source)) => Err(SessionError::Tls {
                peer: self.peer,
                source,
            }),
            Err(_) => Err(SessionError::Timeout(self.peer)),
        }
    }

    /// Streams the first `len` octets of the spooled message (the rest of the file is the
    /// spool's envelope), dot-stuffed, followed by `.`. Read in steps of up to 256 KiB, each one
    /// trip to the blocking pool: one for most messages.
    async fn send_body(&mut self, path: &Path, len: u64) -> Result<(), SessionError> {
        const STEP: u64 = 256 * 1024;
        let spool_err = |source| SessionError::Io {
            peer: format!("spool file {}", path.display()),
            source,
        };
        let mut stuffer = DotStuffer::default();
        let mut out = Vec::new();
        let mut file = None;
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(STEP) as usize;
            let (p, f) = (path.to_path_buf(), file.take());
            let (f, chunk) = tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let mut f = match f {
                    Some(f) => f,
                    None => std::fs::File::open(&p)?,
                };
                let mut chunk = Vec::with_capacity(want);
                (&mut f).take(want as u64).read_to_end(&mut chunk)?;
                Ok::<_, io::Error>((f, chunk))
            })
            .await
            .map_err(|e| spool_err(io::Error::other(e)))?
            .map_err(spool_err)?;
            if chunk.len() < want {
                return Err(spool_err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the file ends at {} of the message's {len} octets",
                        done + chunk.len() as u64
                    ),
                )));
            }
            done += chunk.len() as u64;
            file = Some(f);
            out.clear();
            out.reserve(chunk.len() + chunk.len() / 64 + 8);
            stuffer.encode(&chunk, &mut out);
            self.write_all(&out).await?;
        }
        out.clear();
        stuffer.finish(&mut out);
        self.write_all(&out).await
    }

    /// Says goodbye without caring about the answer.
    pub async fn quit(mut self) {
        self.timeout = self.timeout.min(Duration::from_secs(5));
        let _ = self.command("QUIT").await;
        if let Io::Tls(mut s) = self.io {
            let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
        }
    }
}

/// How a transaction ended, beyond the per-recipient results.
#[derive(Debug)]
pub(crate) struct TxnOutcome {
    /// One per recipient of the delivery.
    pub results: Vec<RcptResult>,
    /// Nothing was handed over (failure before the final dot was sent): trying another MX host
    /// now cannot cause a duplicate.
    pub may_try_elsewhere: bool,
    /// The transaction ran to its end and every reply was read: the session is between
    /// transactions and may carry another one.
    pub clean: bool,
}

fn result(status: RcptStatus, detail: String, peer: &str) -> RcptResult {
    RcptResult {
        status,
        detail,
        remote: Some(peer.to_string()),
    }
}

fn reply_status(r: &Reply, ok: RcptStatus) -> RcptStatus {
    if r.is_ok() {
        ok
    } else if r.is_permanent() {
        RcptStatus::Permanent
    } else {
        RcptStatus::Temporary
    }
}

/// Runs MAIL / RCPT* / DATA for `d` on an open session whose EHLO/LHLO reply was `caps`.
/// `ok` is the status given to accepted recipients ([`RcptStatus::Delivered`] for LMTP).
/// `delivery_id` is sent as `XDELIVERY=` when the server offers it (our LMTP server), so a
/// retry of this delivery after a lost reply or a crash is stored once.
pub(crate) async fn transaction(
    s: &mut Session,
    d: &Delivery,
    caps: &Capabilities,
    lmtp: bool,
    ok: RcptStatus,
    data_timeout: Duration,
    delivery_id: Option<&str>,
) -> TxnOutcome {
    let n = d.recipients.len();
    let peer = s.peer.clone();
    let all = |status, detail: String, elsewhere| TxnOutcome {
        results: (0..n)
            .map(|_| result(status, detail.clone(), &peer))
            .collect(),
        may_try_elsewhere: elsewhere,
        clean: false,
    };
    if let Some(limit) = caps.size.filter(|&l| l > 0) {
        if d.size > limit {
            let msg = format!(
                "552 5.3.4 message size {} exceeds {}'s limit of {limit}",
                d.size, s.peer
            );
            return all(RcptStatus::Permanent, msg, false);
        }
    }
    let mut mail = format!("MAIL FROM:<{}>", d.sender);
    if caps.size.is_some() {
        mail.push_str(&format!(" SIZE={}", d.size));
    }
    if d.body != BodyType::SevenBit && caps.eightbitmime {
        mail.push_str(" BODY=8BITMIME");
    }
    if d.smtputf8 {
        let needs_utf8 = !d.sender.is_ascii() || d.recipients.iter().any(|r| !r.address.is_ascii());
        if caps.smtputf8 {
            mail.push_str(" SMTPUTF8");
        } else if needs_utf8 {
            let msg = format!(
                "550 5.6.7 {} does not support SMTPUTF8, required by the addresses",
                s.peer
            );
            return all(RcptStatus::Permanent, msg, false);
        }
    }
    if caps.dsn {
        if let Some(ret) = d.ret {
            mail.push_str(match ret {
                super::envelope::Ret::Full => " RET=FULL",
                super::envelope::Ret::Hdrs => " RET=HDRS",
            });
        }
        if let Some(envid) = &d.envid {
            mail.push_str(&format!(" ENVID={}", xtext(envid)));
        }
    }
    if let Some(id) = delivery_id.filter(|_| caps.xdelivery) {
        mail.push_str(&format!(" XDELIVERY={}", xtext(id)));
    }
    let reply = match s.command(&mail).await {
        Ok(r) => r,
        Err(e) => return all(RcptStatus::Temporary, e.to_string(), true),
    };
    if !reply.is_ok() {
        let status = reply_status(&reply, RcptStatus::Temporary);
        return all(status, reply.one_line(), status == RcptStatus::Temporary);
    }
    let mut results: Vec<Option<RcptResult>> = vec![None; n];
    let mut accepted = Vec::with_capacity(n);
    for (i, r) in d.recipients.iter().enumerate() {
        let mut cmd = format!("RCPT TO:<{}>", r.address);
        if caps.dsn {
            if let Some(notify) = r.notify {
                cmd.push_str(&format!(" NOTIFY={}", notify.to_param()));
            }
            if let Some(orcpt) = &r.orcpt {
                let (kind, addr) = orcpt.split_once(';').unwrap_or(("rfc822", orcpt));
                cmd.push_str(&format!(" ORCPT={};{}", kind.trim(), xtext(addr.trim())));
            }
        }
        match s.command(&cmd).await {
            Ok(reply) if reply.is_ok() => accepted.push(i),
            Ok(reply) => {
                results[i] = Some(result(reply_status(&reply, ok), reply.one_line(), &s.peer));
            }
            Err(e) => {
                return finish(
                    results,
                    RcptStatus::Temporary,
                    &e.to_string(),
                    &s.peer,
                    accepted.is_empty(),
                );
            }
        }
    }
    if accepted.is_empty() {
        let _ = s.command("RSET").await;
        return finish(
            results,
            RcptStatus::Temporary,
            "no recipient accepted",
            &s.peer,
            false,
        );
    }
    match s.command("DATA").await {
        Ok(r) if r.is_intermediate() => {}
        Ok(r) => {
            let status = reply_status(&r, RcptStatus::Temporary);
            for &i in &accepted {
                results[i] = Some(result(status, r.one_line(), &s.peer));
            }
            return finish(results, RcptStatus::Temporary, "", &s.peer, false);
        }
        Err(e) => {
            return finish(
                results,
                RcptStatus::Temporary,
                &e.to_string(),
                &s.peer,
                false,
            )
        }
    }
    if let Err(e) = s.send_body(&d.message, d.size).await {
        return finish(
            results,
            RcptStatus::Temporary,
            &e.to_string(),
            &s.peer,
            false,
        );
    }
    // From here on the server may have delivered: a lost reply is a temporary failure and a
    // possible duplicate (RFC 1047), never a success we did not see.
    let replies = if lmtp { accepted.len() } else { 1 };
    for k in 0..replies {
        match s.read_reply(data_timeout).await {
            Ok(r) => {
                let status = reply_status(&r, ok);
                let targets: &[usize] = if lmtp { &accepted[k..=k] } else { &accepted };
                for &i in targets {
                    results[i] = Some(result(status, r.one_line(), &s.peer));
                }
            }
            Err(e) => {
                return finish(
                    results,
                    RcptStatus::Temporary,
                    &e.to_string(),
                    &s.peer,
                    false,
                )
            }
        }
    }
    TxnOutcome {
        clean: true,
        ..finish(results, RcptStatus::Temporary, "", &s.peer, false)
    }
}

/// Fills every recipient without a result with `status`/`detail`.
fn finish(
    results: Vec<Option<RcptResult>>,
    status: RcptStatus,
    detail: &str,
    peer: &str,
    elsewhere: bool,
) -> TxnOutcome {
    TxnOutcome {
        results: results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| result(status, detail.to_string(), peer)))
            .collect(),
        may_try_elsewhere: elsewhere,
        clean: false,
    }
}
