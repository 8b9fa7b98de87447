//! Message transfer inside a session: DATA and BDAT, assembling the stored message (our
//! `Received:` first, then the content with any fields submission must add), the checks that
//! can only be made once the content is in (hop count, `From:` ownership), and the sinks that
//! hand a finished message to the queue or to LMTP delivery.
//!
//! A refused message is still read to its end (so the client stays in sync and gets its
//! reply) but nothing more is kept once the refusal is known; the spool (memory, then a
//! temporary file) bounds memory whatever the size. This file never makes a message durable
//! itself: the sink does, before it reports success.
//!
//! Security note: the content is decoded and checked by the sans-I/O `data` module, so the
//! only way out of DATA is a real `<CRLF>.<CRLF>`; BDAT reads exactly the announced octets.

use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::directory::Address;
use crate::metrics::maillog;

use super::data::{ContentChecker, DataDecoder, Decoded};
use super::envelope::{BodyType, Envelope};
use super::header::{self, HeaderInfo, HeaderScanner, Trace};
use super::io::Io;
use super::message::{Message, Spool};
use super::policy::{Acceptor, DeliveryError, LmtpDelivery, MailPolicy, Verdict};
use super::reply::{bad_sequence, storage_error, Enhanced, Reply};
use super::session::{policy_reason, refusal_reply, Finished, Flow, Session, Sink, Transaction};
use super::Mode;
use crate::antiube::filter::{ContentDecision, TxInfo, UbeSession, Verdict as UbeVerdict};

/// The message being assembled: content goes through the header scanner into the spool.
pub(crate) struct Body {
    scanner: HeaderScanner,
    spool: Spool,
    /// Reused between writes.
    out: Vec<u8>,
    /// The first spool failure; after it nothing more is written.
    error: Option<io::Error>,
    received_at: SystemTime,
}

impl Body {
    async fn write(&mut self, decoded: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.scanner.push(decoded, &mut self.out);
        if let Err(e) = self.spool.write(&self.out).await {
            self.error = Some(e);
        }
        self.out.clear();
    }

    async fn finish(self) -> (io::Result<Message>, HeaderInfo) {
        let Body {
            scanner,
            mut spool,
            mut out,
            error,
            ..
        } = self;
        let info = scanner.finish(&mut out);
        if let Some(e) = error {
            return (Err(e), info);
        }
        let message = match spool.write(&out).await {
            Ok(()) => spool.finish().await,
            Err(e) => Err(e),
        };
        (message, info)
    }
}

/// A BDAT transfer in progress.
pub(crate) struct Chunked {
    checker: ContentChecker,
    body: Body,
}

/// How reading an announced number of octets ended.
enum ChunkEnd {
    Complete,
    Eof,
    Timeout,
}

/// Reads `size` octets, feeding them to `chunked` (or dropping them when `None`).
async fn read_chunk<S>(
    io: &mut Io<S>,
    mut chunked: Option<&mut Chunked>,
    size: u64,
) -> io::Result<ChunkEnd>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut remaining = size;
    while remaining > 0 {
        if io.buffered().is_empty() {
            match io.fill().await {
                Ok(0) => return Ok(ChunkEnd::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(ChunkEnd::Timeout),
                Err(e) => return Err(e),
            }
        }
        let n = io
            .buffered()
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        if let Some(c) = chunked.as_deref_mut() {
            let chunk = &io.buffered()[..n];
            if c.checker.check(chunk).is_ok() {
                c.body.write(chunk).await;
            }
        }
        io.consume(n);
        remaining -= n as u64;
    }
    Ok(ChunkEnd::Complete)
}

impl<P: MailPolicy, K: Sink> Session<'_, P, K> {
    fn checker(&self, tx: &Transaction) -> ContentChecker {
        let cfg = &self.shared.cfg;
        // SMTPUTF8 content is 8-bit by nature (RFC 6531 §3.1 requires 8BITMIME with it).
        let eight_bit = tx.mail.body == Some(BodyType::EightBitMime) || tx.mail.smtputf8;
        ContentChecker::new(cfg.max_line_length, cfg.max_message_size, eight_bit)
    }

    /// The `with` clause of `Received:` (RFC 3848, RFC 6531).
    fn protocol(&self, tx: &Transaction) -> String {
        let lmtp = self.shared.mode == Mode::Lmtp;
        let esmtp = self.helo.as_ref().is_some_and(|(_, extended)| *extended);
        let mut with = match (tx.mail.smtputf8, lmtp, esmtp) {
            (true, true, _) => "UTF8LMTP",
            (true, false, _) => "UTF8SMTP",
            (false, true, _) => "LMTP",
            (false, false, true) => "ESMTP",
            (false, false, false) => "SMTP",
        }
        .to_string();
        if self.tls.is_some() {
            with.push('S');
        }
        if self.auth_user.is_some() {
            with.push('A');
        }
        with
    }

    /// Starts a message: writes our `Received:` into a fresh spool.
    async fn start_body(&self, tx: &Transaction, seq: u64) -> Body {
        let cfg = &self.shared.cfg;
        let now = SystemTime::now();
        let date = header::rfc5322_date(now);
        let rcpt = match tx.rcpts.as_slice() {
            [only] => Some(only.address.as_str()),
            _ => None,
        };
        let trace = Trace {
            helo: self
                .helo
                .as_ref()
                .map_or("unknown", |(name, _)| name.as_str()),
            peer: self.ctx.peer.ip(),
            hostname: &cfg.hostname,
            with: &self.protocol(tx),
            tls: self.tls.as_deref(),
            id: &format!("{}.{seq}", self.ctx.id),
            rcpt,
            date: &date,
        };
        let additions = (self.shared.mode == Mode::Submission)
            .then(|| (date.clone(), header::new_message_id(&cfg.hostname, now)));
        let mut spool = Spool::new(cfg.spool_memory_limit, cfg.spool_dir());
        let error = spool.write(header::received(&trace).as_bytes()).await.err();
        Body {
            scanner: HeaderScanner::new(cfg.max_line_length, cfg.max_from_header, additions),
            spool,
            out: Vec::new(),
            error,
            received_at: now,
        }
    }

    pub(crate) async fn data<S>(&mut self, io: &mut Io<S>) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let tx = match self.tx.take() {
            None => {
                self.send(io, bad_sequence("need MAIL before DATA"));
                return Ok(Flow::Continue);
            }
            Some(tx) if tx.chunked.is_some() => {
                self.tx = Some(tx);
                self.send(io, bad_sequence("DATA not permitted during BDAT"));
                return Ok(Flow::Continue);
            }
            Some(tx) if tx.rcpts.is_empty() => {
                self.tx = Some(tx);
                self.send(
                    io,
                    Reply::new(554, Enhanced(5, 5, 1), "no valid recipients"),
                );
                return Ok(Flow::Continue);
            }
            Some(tx) => tx,
        };
        io.reply(&Reply::bare(354, "end data with <CR><LF>.<CR><LF>"));
        let mut checker = self.checker(&tx);
        self.messages += 1;
        let mut body = self.start_body(&tx, self.messages).await;
        let mut decoder = DataDecoder::new();
        let mut out = Vec::new();
        loop {
            let (n, status) = decoder.feed(io.buffered(), &mut out);
            io.consume(n);
            if checker.check(&out).is_ok() {
                body.write(&out).await;
            }
            out.clear();
            match status {
                Decoded::Done => break,
                Decoded::BareNewline => {
                    tracing::info!("bare CR or LF in DATA; closing");
                    io.reply(&Reply::new(
                        500,
                        Enhanced(5, 5, 2),
                        "bare CR or LF in message; lines must end with CRLF; closing connection",
                    ));
                    return Ok(Flow::Close);
                }
                Decoded::More => match io.fill().await {
                    Ok(0) => return Ok(Flow::Close),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        io.reply(&self.idle_reply());
                        return Ok(Flow::Close);
                    }
                    Err(e) => return Err(e),
                },
            }
        }
        // Verdicts on content (including a refused From:) do not count as client errors.
        for reply in self.end_message(tx, checker, body).await {
            io.reply(&reply);
        }
        Ok(Flow::Continue)
    }

    pub(crate) async fn bdat<S>(
        &mut self,
        io: &mut Io<S>,
        size: u64,
        last: bool,
    ) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let refusal = match &self.tx {
            None => Some(bad_sequence("need MAIL before BDAT")),
            Some(tx) if tx.rcpts.is_empty() => {
                Some(Reply::new(554, Enhanced(5, 5, 1), "no valid recipients"))
            }
            Some(_) => None,
        };
        if let Some(tx) = self
            .tx
            .as_ref()
            .filter(|tx| tx.chunked.is_none() && refusal.is_none())
        {
            let checker = self.checker(tx);
            let body = self.start_body(tx, self.messages + 1).await;
            self.messages += 1;
            if let Some(tx) = self.tx.as_mut() {
                tx.chunked = Some(Chunked { checker, body });
            }
        }
        let chunked = match refusal {
            Some(_) => None,
            None => self.tx.as_mut().and_then(|tx| tx.chunked.as_mut()),
        };
        match read_chunk(io, chunked, size).await? {
            ChunkEnd::Complete => {}
            ChunkEnd::Eof => return Ok(Flow::Close),
            ChunkEnd::Timeout => {
                io.reply(&self.idle_reply());
                return Ok(Flow::Close);
            }
        }
        if let Some(reply) = refusal {
            self.send(io, reply);
            return Ok(Flow::Continue);
        }
        let Some(mut tx) = self.tx.take() else {
            return Ok(Flow::Continue);
        };
        let Some(chunked) = tx.chunked.take() else {
            return Ok(Flow::Continue);
        };
        if last {
            for reply in self.end_message(tx, chunked.checker, chunked.body).await {
                io.reply(&reply);
            }
        } else if let Some(e) = chunked.checker.error() {
            // RFC 3030 §2: a failed chunk fails the transaction; later chunks get 503.
            tracing::info!(error = %e, "BDAT chunk refused");
            self.send(io, Reply::from(&e));
        } else {
            tx.chunked = Some(chunked);
            self.tx = Some(tx);
            let text = format!("{size} octets received");
            self.send(io, Reply::new(250, Enhanced(2, 0, 0), text));
        }
        Ok(Flow::Continue)
    }

    /// Judges the finished content and hands it to the sink; returns the replies (LMTP: one
    /// per recipient, even when the content itself was refused — RFC 2033 §4.2).
    async fn end_message(
        &mut self,
        tx: Transaction,
        checker: ContentChecker,
        body: Body,
    ) -> Vec<Reply> {
        let mut ube = self.ube.take();
        let replies = self.judge_message(tx, checker, body, ube.as_mut()).await;
        self.ube = ube;
        replies
    }

    async fn judge_message(
        &mut self,
        tx: Transaction,
        mut checker: ContentChecker,
        body: Body,
        ube: Option<&mut UbeSession>,
    ) -> Vec<Reply> {
        let per_rcpt = if self.shared.mode == Mode::Lmtp {
            tx.rcpts.len()
        } else {
            1
        };
        let received_at = body.received_at;
        let (message, info) = body.finish().await;
        let recipients: Vec<String> = tx.rcpts.iter().map(|r| r.address.to_string()).collect();
        let sender = tx.sender.as_ref().map_or("", Address::as_str).to_string();
        let log = |finished: &Finished, size: u64| {
            let rcpts: Vec<&str> = recipients.iter().map(String::as_str).collect();
            let first = finished.replies.first();
            let text = first.map(ToString::to_string).unwrap_or_default();
            let t = maillog::Transaction {
                queue_id: finished.queue_id.as_deref(),
                sender: &sender,
                recipients: &rcpts,
                size,
                code: first.map_or(451, |r| r.code),
                reply: &text,
                policy: finished.policy,
            };
            maillog::transaction(&self.client(), &t);
        };
        let refuse = |reply: Reply, policy: &'static str| {
            let finished = Finished {
                replies: vec![reply; per_rcpt],
                queue_id: None,
                policy: Some(policy),
            };
            log(&finished, 0);
            finished.replies
        };
        let message = match (checker.finish(), message) {
            (Err(e), _) => return refuse(Reply::from(&e), "content"),
            (Ok(()), Err(e)) => {
                tracing::warn!(error = %e, "cannot spool message");
                return refuse(storage_error(&e), "storage");
            }
            (Ok(()), Ok(m)) => m,
        };
        if let Some((reply, policy)) = self.check_header(&info) {
            return refuse(reply, policy);
        }
        let message = match ube.filter(|u| u.wants_content()) {
            None => message,
            Some(ube) => {
                let rcpts: Vec<&str> = recipients.iter().map(String::as_str).collect();
                let helo = self.helo.as_ref().map_or("", |(n, _)| n.as_str());
                let info = TxInfo {
                    helo,
                    sender: &sender,
                    recipients: &rcpts,
                };
                match filter_message(ube, message, &info).await {
                    Ok(Some(m)) => m,
                    Ok(None) => {
                        // DISCARD: claimed delivered, kept nowhere.
                        let finished = Finished {
                            replies: vec![Reply::new(250, Enhanced(2, 0, 0), "OK"); per_rcpt],
                            queue_id: None,
                            policy: Some("discarded"),
                        };
                        log(&finished, 0);
                        return finished.replies;
                    }
                    Err((reply, policy)) => return refuse(reply, policy),
                }
            }
        };
        let envelope = Envelope {
            mode: self.shared.mode,
            sender: tx.sender,
            recipients: tx.rcpts,
            body: tx.mail.body.unwrap_or_default(),
            smtputf8: tx.mail.smtputf8,
            ret: tx.mail.ret,
            envid: tx.mail.envid,
            delivery: tx.mail.delivery,
            auth_user: self.auth_user.clone(),
            helo: self
                .helo
                .as_ref()
                .map(|(n, _)| n.clone())
                .unwrap_or_default(),
            peer: self.ctx.peer,
            session_id: self.ctx.id,
            tls: self.tls.clone(),
            received_at,
        };
        let size = message.len();
        let finished = self.shared.sink.finish(envelope, message).await;
        log(&finished, size);
        finished.replies
    }

    /// Checks that need the header: the hop count, and on submission that every `From:`
    /// address belongs to the authenticated user.
    /// The refusal and its `policy` reason.
    fn check_header(&self, info: &HeaderInfo) -> Option<(Reply, &'static str)> {
        let cfg = &self.shared.cfg;
        if info.received > cfg.max_hops {
            let reply = Reply::new(
                554,
                Enhanced(5, 4, 6),
                format!(
                    "too many hops ({} Received: fields): mail loop detected",
                    info.received
                ),
            );
            return Some((reply, "loop"));
        }
        if self.shared.mode != Mode::Submission {
            return None;
        }
        let bad_from = |why: &str| {
            let reply = Reply::new(553, Enhanced(5, 7, 1), format!("From: header {why}"));
            Some((reply, "from_header"))
        };
        if info.from_truncated {
            return bad_from("too long");
        }
        for value in &info.from {
            let Some(addresses) = header::mailbox_addresses(value) else {
                return bad_from("has no valid address");
            };
            for text in addresses {
                let Ok(address) = Address::parse(&text) else {
                    return bad_from("has an invalid address");
                };
                let verdict = self.shared.policy.check_sender(
                    Mode::Submission,
                    self.auth_user.as_deref(),
                    Some(&address),
                );
                if verdict != Verdict::Accept {
                    let reply = verdict.reply(&format!("From: <{address}>"));
                    return Some((reply, policy_reason(&verdict)));
                }
            }
        }
        None
    }
}

/// Runs the anti-UBE content checks on a finished message: `Ok(Some)` the message to hand on
/// (with the filter's header fields on top and `IGNORE`d lines removed), `Ok(None)` discard
/// it, `Err` the refusal.
async fn filter_message(
    ube: &mut UbeSession,
    message: Message,
    info: &TxInfo<'_>,
) -> Result<Option<Message>, (Reply, &'static str)> {
    let wanted = ube.wanted_bytes();
    let complete = message.len() <= wanted as u64;
    let spooled;
    let head: &[u8] = match (message.as_bytes(), message.path()) {
        (Some(b), _) => b,
        (None, path) => {
            let path = path.map(std::path::Path::to_path_buf);
            let read = tokio::task::spawn_blocking(move || match path {
                Some(p) => Message::read_head(&p, wanted),
                None => Ok(Vec::new()),
            })
            .await
            .map_err(io::Error::other)
            .and_then(|r| r);
            match read {
                Ok(b) => {
                    spooled = b;
                    &spooled
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the spooled message");
                    return Err((storage_error(&e), "storage"));
                }
            }
        }
    };
    let decision = ube.content(head, complete, info).await;
    match decision.verdict {
        UbeVerdict::Refuse(r) => return Err((refusal_reply(&r), r.policy)),
        UbeVerdict::Discard(_) => return Ok(None),
        UbeVerdict::Accept => {}
    }
    let ContentDecision {
        prepend, remove, ..
    } = decision;
    let edited = if message.as_bytes().is_some() {
        message.edit(&prepend, &remove)
    } else {
        tokio::task::spawn_blocking(move || message.edit(&prepend, &remove))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
    };
    edited.map(Some).map_err(|e| {
        tracing::warn!(error = %e, "cannot add the filter's header fields");
        (storage_error(&e), "storage")
    })
}

/// SMTP: accepted mail goes to the queue.
pub(crate) struct QueueSink<A>(pub(crate) Arc<A>);

impl<A: Acceptor> Sink for QueueSink<A> {
    async fn finish(&self, envelope: Envelope, message: Message) -> Finished {
        match self.0.accept(envelope, message).await {
            Ok(id) => Finished {
                replies: vec![Reply::new(
                    250,
                    Enhanced(2, 0, 0),
                    format!("OK queued as {id}"),
                )],
                queue_id: Some(id.0),
                policy: None,
            },
            Err(e) => {
                tracing::warn!(error = %e, "queue refused a message");
                Finished {
                    replies: vec![Reply::from(&e)],
                    queue_id: None,
                    policy: Some("queue"),
                }
            }
        }
    }
}

/// LMTP: mail goes to the mailboxes, one reply per recipient.
pub(crate) struct LmtpSink<D>(pub(crate) Arc<D>);

impl<D: LmtpDelivery> Sink for LmtpSink<D> {
    async fn finish(&self, envelope: Envelope, message: Message) -> Finished {
        let results = self.0.deliver(&envelope, &message).await;
        // The first failure's reason, as the log's policy.
        let policy = results.iter().find_map(|r| match r {
            Ok(()) => None,
            Err(DeliveryError::QuotaExceeded) => Some("quota"),
            Err(DeliveryError::NoSpace) => Some("storage"),
            Err(DeliveryError::UnknownUser) => Some("unknown_user"),
            Err(DeliveryError::Temporary(_)) => Some("tempfail"),
            Err(DeliveryError::Permanent(_) | DeliveryError::Rejected(_)) => Some("refused"),
        });
        let replies = envelope
            .recipients
            .iter()
            .enumerate()
            .map(|(i, rcpt)| match results.get(i) {
                Some(Ok(())) => Reply::new(
                    250,
                    Enhanced(2, 1, 5),
                    format!("<{}> delivered", rcpt.address),
                ),
                Some(Err(e)) => e.reply(rcpt.address.as_str()),
                None => Reply::new(
                    451,
                    Enhanced(4, 3, 0),
                    format!("<{}> delivery result missing", rcpt.address),
                ),
            })
            .collect();
        Finished {
            replies,
            queue_id: envelope.delivery.clone(),
            policy,
        }
    }
}
