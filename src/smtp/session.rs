//! One SMTP, submission or LMTP session: the command loop, the state machine (greeting →
//! EHLO/LHLO → optional STARTTLS/AUTH → MAIL → RCPT… → DATA/BDAT), and the envelope
//! commands. Content transfer lives in `transfer`, the AUTH exchange in `login`.
//!
//! The session is generic over the connection's stream so tests can drive it over in-memory
//! I/O. It never writes the store or the queue: a finished message goes to the listener's
//! sink (queue or LMTP delivery), and the `250` is sent only when that sink says it is
//! durable.
//!
//! Security note: every client mistake is answered and counted; past `max_errors` the session
//! ends with `421 4.7.0`. Pipelined commands are answered in order and flushed only when the
//! client has nothing more buffered; STARTTLS discards anything buffered after it and forgets
//! everything learnt in plaintext (RFC 3207 §4.2).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::antiube::filter::{Filter, Refusal, UbeSession, Verdict as UbeVerdict};

use crate::directory::Address;
use crate::net::{Conn, RejectReason, SessionCtx};

use crate::metrics::{self, maillog};

use super::command::{self, Command, MailFrom, RcptTo, ReversePath};
use super::envelope::{Envelope, Recipient};
use super::io::{strip_line_end, Input, Io};
use super::limiter::AuthLimiter;
use super::message::Message;
use super::policy::{MailPolicy, Verdict};
use super::reply::{bad_sequence, Enhanced, Reply};
use super::transfer::Chunked;
use super::{Mode, SmtpConfig};

/// Where finished messages go, and the replies that says (one for SMTP, one per recipient
/// for LMTP).
pub(crate) trait Sink: Send + Sync + 'static {
    fn finish(&self, envelope: Envelope, message: Message)
        -> impl Future<Output = Finished> + Send;
}

/// What a sink did with a message.
pub(crate) struct Finished {
    /// One reply (SMTP) or one per recipient (LMTP).
    pub(crate) replies: Vec<Reply>,
    /// The queue id (SMTP) or the delivery key (LMTP `XDELIVERY`), for the mail log.
    pub(crate) queue_id: Option<String>,
    /// Why it failed, when it did (the mail log's `policy`).
    pub(crate) policy: Option<&'static str>,
}

/// What one listener's sessions share.
pub(crate) struct Shared<P, K> {
    pub(crate) cfg: SmtpConfig,
    pub(crate) mode: Mode,
    pub(crate) policy: Arc<P>,
    pub(crate) sink: K,
    pub(crate) limiter: Arc<AuthLimiter>,
    /// Anti-UBE filtering (MX and submission; `None`: none).
    pub(crate) filter: Option<Arc<Filter>>,
}

/// What the command loop tells its driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close,
    StartTls,
}

/// The open mail transaction.
pub(crate) struct Transaction {
    pub(crate) mail: MailFrom,
    pub(crate) sender: Option<Address>,
    pub(crate) rcpts: Vec<Recipient>,
    /// Present between the first BDAT and BDAT LAST.
    pub(crate) chunked: Option<Chunked>,
}

pub(crate) struct Session<'a, P, K> {
    pub(crate) shared: &'a Shared<P, K>,
    pub(crate) ctx: &'a SessionCtx,
    /// The client's HELO/EHLO/LHLO name and whether it used EHLO/LHLO.
    pub(crate) helo: Option<(String, bool)>,
    pub(crate) auth_user: Option<String>,
    pub(crate) tx: Option<Transaction>,
    /// TLS version and cipher suite once encrypted.
    pub(crate) tls: Option<String>,
    errors: u32,
    pub(crate) auth_failures: u32,
    /// Messages finished in this session, for `Received:` ids.
    pub(crate) messages: u64,
    /// The anti-UBE filter's view of this session.
    pub(crate) ube: Option<UbeSession>,
}

/// Runs one session to its end.
pub(crate) async fn run<S, P, K>(shared: &Shared<P, K>, conn: Conn<S>, ctx: SessionCtx)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    P: MailPolicy,
    K: Sink,
{
    let _counted = metrics::smtp_session(shared.mode, conn.is_tls());
    let mut io = Io::new(conn);
    let mut session = Session {
        shared,
        ctx: &ctx,
        helo: None,
        auth_user: None,
        tx: None,
        tls: tls_info(&io.conn),
        errors: 0,
        auth_failures: 0,
        messages: 0,
        ube: None,
    };
    let host = &shared.cfg.hostname;
    if let Some(filter) = &shared.filter {
        match filter.connect(ctx.peer.ip(), shared.mode == Mode::Mx) {
            Ok(ube) => session.ube = ube,
            Err(r) => return refuse_connection(shared.mode, io, &r).await,
        }
    }
    let pregreet = session
        .ube
        .as_ref()
        .map_or(Duration::ZERO, UbeSession::pregreet);
    if !pregreet.is_zero() {
        // Postscreen's pregreet test: a client that talks before our greeting is a bot that
        // does not wait for replies.
        match tokio::time::timeout(pregreet, io.fill()).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => {
                if let Some(ube) = &session.ube {
                    let r = ube.pregreeted(n);
                    return refuse_connection(shared.mode, io, &r).await;
                }
            }
        }
    }
    if ctx.shutdown.is_triggered() {
        io.reply(&Reply::new(
            421,
            Enhanced(4, 3, 2),
            format!("{host} shutting down"),
        ));
    } else {
        let kind = if shared.mode == Mode::Lmtp {
            "LMTP"
        } else {
            "ESMTP"
        };
        io.reply(&Reply::bare(220, format!("{host} {kind} Mailnode ready")));
        loop {
            match session.commands(&mut io).await {
                Ok(Flow::StartTls) => match io.upgrade().await {
                    Ok(upgraded) => {
                        io = upgraded;
                        metrics::smtp_starttls(shared.mode);
                        session.after_starttls(tls_info(&io.conn));
                    }
                    Err(e) => {
                        metrics::smtp_error(shared.mode, "tls_failed");
                        tracing::debug!(error = %e, "STARTTLS handshake failed");
                        return;
                    }
                },
                Ok(_) => break,
                Err(e) => {
                    metrics::smtp_error(shared.mode, "io");
                    tracing::debug!(error = %e, "connection failed");
                    return;
                }
            }
        }
    }
    let _ = io.flush().await;
    let _ = io.conn.shutdown().await;
}

/// Sends an anti-UBE refusal instead of the greeting, then closes.
async fn refuse_connection<S>(mode: Mode, mut io: Io<S>, r: &Refusal)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    metrics::smtp_reject(mode, metrics::Stage::Connect, r.code, r.policy);
    io.reply(&refusal_reply(r));
    let _ = io.flush().await;
    let _ = io.conn.shutdown().await;
}

/// The SMTP reply of an anti-UBE refusal.
pub(crate) fn refusal_reply(r: &Refusal) -> Reply {
    let (a, b, c) = r.status;
    Reply::new(r.code, Enhanced(a, b, c), r.text.clone())
}

/// Tells a client over the connection limits why it is refused.
pub(crate) async fn reject<S>(hostname: &str, mut conn: Conn<S>, reason: RejectReason)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let reply = Reply::new(
        421,
        Enhanced(4, 7, 0),
        format!("{hostname} {reason}, try again later"),
    );
    let mut out = Vec::new();
    reply.write_to(&mut out);
    let _ = conn.write_all(&out).await;
    let _ = conn.flush().await;
}

/// "TLSv1.3 TLS13_AES_256_GCM_SHA384" for `Received:` and logs.
fn tls_info<S>(conn: &Conn<S>) -> Option<String> {
    let tls = conn.tls_connection()?;
    let version = match tls.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "TLS".to_string(),
    };
    Some(match tls.negotiated_cipher_suite() {
        Some(suite) => format!("{version} {:?}", suite.suite()),
        None => version,
    })
}

impl<P: MailPolicy, K: Sink> Session<'_, P, K> {
    /// Queues `reply`, counting it if it blames the client.
    pub(crate) fn send<S>(&mut self, io: &mut Io<S>, reply: Reply)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if reply.counts_as_error() {
            self.errors += 1;
            metrics::smtp_error(self.shared.mode, "client_error");
        }
        io.reply(&reply);
    }

    pub(crate) fn hostname(&self) -> &str {
        &self.shared.cfg.hostname
    }

    /// `421 4.4.2` after the idle timeout.
    pub(crate) fn idle_reply(&self) -> Reply {
        Reply::new(
            421,
            Enhanced(4, 4, 2),
            format!("{} idle timeout, closing connection", self.hostname()),
        )
    }

    /// `421 4.3.2` at shutdown.
    pub(crate) fn shutdown_reply(&self) -> Reply {
        Reply::new(
            421,
            Enhanced(4, 3, 2),
            format!("{} shutting down", self.hostname()),
        )
    }

    /// Reads and answers commands until the session ends or asks for STARTTLS.
    async fn commands<S>(&mut self, io: &mut Io<S>) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let max_line = self.shared.cfg.max_line_length;
        loop {
            let flow = match io.read_line(max_line, Some(&self.ctx.shutdown)).await? {
                Input::Line(line) => {
                    let (text, crlf) = strip_line_end(&line);
                    if !crlf {
                        metrics::smtp_error(self.shared.mode, "bare_newline");
                        let reply = Reply::new(
                            500,
                            Enhanced(5, 5, 2),
                            "bare LF received; lines must end with CRLF",
                        );
                        self.send(io, reply);
                        Flow::Continue
                    } else {
                        match command::parse(text) {
                            Ok(cmd) => {
                                let _timed = metrics::smtp_command(self.shared.mode, cmd.name());
                                self.dispatch(io, cmd).await?
                            }
                            Err(e) => {
                                drop(metrics::smtp_command(self.shared.mode, "other"));
                                tracing::debug!(error = %e, "bad command");
                                self.send(io, (&e).into());
                                Flow::Continue
                            }
                        }
                    }
                }
                Input::TooLong => {
                    let text = format!("line too long (limit {max_line} octets)");
                    self.send(io, Reply::new(500, Enhanced(5, 5, 2), text));
                    Flow::Continue
                }
                Input::Eof => return Ok(Flow::Close),
                Input::Timeout => {
                    metrics::smtp_error(self.shared.mode, "idle_timeout");
                    io.reply(&self.idle_reply());
                    return Ok(Flow::Close);
                }
                Input::Shutdown => {
                    io.reply(&self.shutdown_reply());
                    return Ok(Flow::Close);
                }
            };
            if flow != Flow::Continue {
                return Ok(flow);
            }
            if self.errors >= self.shared.cfg.max_errors {
                metrics::smtp_error(self.shared.mode, "too_many_errors");
                tracing::info!(errors = self.errors, "too many errors; closing");
                let text = format!("{} too many errors, closing connection", self.hostname());
                io.reply(&Reply::new(421, Enhanced(4, 7, 0), text));
                return Ok(Flow::Close);
            }
            io.flush_if_full().await?;
        }
    }

    async fn dispatch<S>(&mut self, io: &mut Io<S>, cmd: Command) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let lmtp = self.shared.mode == Mode::Lmtp;
        let ok = |text: &str| Reply::new(250, Enhanced(2, 0, 0), text);
        let reply = match cmd {
            Command::Ehlo(_) | Command::Helo(_) if lmtp => {
                Reply::new(500, Enhanced(5, 5, 1), "this is LMTP: use LHLO")
            }
            Command::Lhlo(_) if !lmtp => Reply::from(&command::ParseError::Unknown),
            Command::Ehlo(name) | Command::Lhlo(name) => {
                self.helo = Some((name, true));
                self.tx = None;
                self.ehlo_reply(io.conn.starttls_available())
            }
            Command::Helo(name) => {
                self.helo = Some((name, false));
                self.tx = None;
                Reply::bare(250, self.hostname().to_string())
            }
            Command::Mail(m) => self.mail(m).await,
            Command::Rcpt(r) => self.rcpt(r).await,
            Command::Data => return self.data(io).await,
            Command::Bdat { size, last } => return self.bdat(io, size, last).await,
            Command::Rset => {
                self.tx = None;
                ok("OK")
            }
            Command::Noop => ok("OK"),
            Command::Quit => {
                let text = format!("{} closing connection", self.hostname());
                io.reply(&Reply::new(221, Enhanced(2, 0, 0), text));
                return Ok(Flow::Close);
            }
            Command::Vrfy => Reply::new(
                252,
                Enhanced(2, 5, 0),
                "cannot VRFY user, but will accept message and attempt delivery",
            ),
            Command::Help => Reply::new(214, Enhanced(2, 0, 0), "see RFC 5321"),
            Command::StartTls => return Ok(self.starttls(io)),
            Command::Auth { mechanism, initial } => return self.auth(io, mechanism, initial).await,
        };
        self.send(io, reply);
        Ok(Flow::Continue)
    }

    /// Whether AUTH is offered now: submission, and TLS (unless plaintext is allowed).
    pub(crate) fn auth_offered(&self) -> bool {
        self.shared.mode == Mode::Submission
            && (self.tls.is_some() || self.shared.cfg.allow_plaintext_auth)
    }

    fn ehlo_reply(&self, starttls: bool) -> Reply {
        let cfg = &self.shared.cfg;
        let lmtp = self.shared.mode == Mode::Lmtp;
        let mut lines = vec![match &self.helo {
            Some((name, _)) if !lmtp => format!("{} Hello {name}", cfg.hostname),
            _ => cfg.hostname.clone(),
        }];
        lines.push("PIPELINING".into());
        lines.push(format!("SIZE {}", cfg.max_message_size));
        lines.push("8BITMIME".into());
        lines.push("SMTPUTF8".into());
        lines.push("ENHANCEDSTATUSCODES".into());
        if starttls {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.push("CHUNKING".into());
        if lmtp {
            // Our own extension: MAIL FROM's XDELIVERY=<id> makes a retried delivery idempotent.
            lines.push("XDELIVERY".into());
        } else {
            lines.push("DSN".into());
        }
        Reply::bare(250, lines.join("\n"))
    }

    fn starttls<S>(&mut self, io: &mut Io<S>) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let reply = if self.tls.is_some() {
            bad_sequence("TLS already active")
        } else if !io.conn.starttls_available() {
            Reply::from(&command::ParseError::NotImplemented)
        } else if self.tx.is_some() {
            bad_sequence("STARTTLS not permitted during a mail transaction")
        } else {
            let dropped = io.discard_buffered();
            if dropped > 0 {
                tracing::info!(octets = dropped, "discarded input pipelined after STARTTLS");
            }
            io.reply(&Reply::new(220, Enhanced(2, 0, 0), "ready to start TLS"));
            return Flow::StartTls;
        };
        self.send(io, reply);
        Flow::Continue
    }

    /// RFC 3207 §4.2: forget everything the client said in plaintext.
    fn after_starttls(&mut self, tls: Option<String>) {
        tracing::debug!(tls = tls.as_deref().unwrap_or("?"), "STARTTLS done");
        self.tls = tls;
        self.helo = None;
        self.auth_user = None;
        self.tx = None;
    }

    /// What the mail log says about this session's client.
    pub(crate) fn client(&self) -> maillog::Client<'_> {
        maillog::Client {
            mode: self.shared.mode,
            session: self.ctx.id,
            ip: self.ctx.peer.ip(),
            helo: self.helo.as_ref().map_or("", |(name, _)| name.as_str()),
            tls: self.tls.as_deref(),
            auth: self.auth_user.as_deref(),
        }
    }

    /// Logs and counts a refused MAIL (`rcpt` `None`) or RCPT.
    fn log_reject(
        &self,
        sender: Option<&ReversePath>,
        rcpt: Option<&str>,
        reply: &Reply,
        policy: &'static str,
    ) {
        let sender = sender.map(|s| match s {
            ReversePath::Null => "",
            ReversePath::Mailbox(m) => m.as_str(),
        });
        let text = reply.to_string();
        maillog::reject(&self.client(), sender, rcpt, reply.code, &text, policy);
    }

    fn greeted(&self) -> Result<(), Reply> {
        match (&self.helo, self.shared.mode) {
            (Some(_), _) => Ok(()),
            (None, Mode::Lmtp) => Err(bad_sequence("send LHLO first")),
            (None, _) => Err(bad_sequence("send EHLO or HELO first")),
        }
    }

    async fn mail(&mut self, m: MailFrom) -> Reply {
        if let Err(r) = self.greeted() {
            return r;
        }
        if self.tx.is_some() {
            return bad_sequence("nested MAIL command");
        }
        let mode = self.shared.mode;
        if m.delivery.is_some() && mode != Mode::Lmtp {
            return Reply::from(&command::ParseError::UnknownParameter("XDELIVERY".into()));
        }
        if mode == Mode::Submission && self.auth_user.is_none() {
            return Verdict::AuthRequired.reply("");
        }
        let max = self.shared.cfg.max_message_size;
        if m.size.is_some_and(|size| size > max) {
            let reply = Reply::new(
                552,
                Enhanced(5, 3, 4),
                format!("message size exceeds fixed maximum message size of {max} octets"),
            );
            self.log_reject(Some(&m.sender), None, &reply, "size");
            return reply;
        }
        let sender = match &m.sender {
            ReversePath::Null => None,
            ReversePath::Mailbox(text) => match parse_address(text, Enhanced(5, 1, 7), "sender") {
                Ok(a) => Some(a),
                Err(r) => return r,
            },
        };
        let shown = format!("<{}>", sender.as_ref().map_or("", Address::as_str));
        let verdict =
            self.shared
                .policy
                .check_sender(mode, self.auth_user.as_deref(), sender.as_ref());
        if verdict != Verdict::Accept {
            let reply = verdict.reply(&shown);
            self.log_reject(Some(&m.sender), None, &reply, policy_reason(&verdict));
            return reply;
        }
        if let Some(ube) = &mut self.ube {
            let helo = self.helo.as_ref().map_or("", |(n, _)| n.as_str());
            let from = sender.as_ref().map_or("", Address::as_str);
            if let UbeVerdict::Refuse(r) = ube.mail_from(helo, from).await {
                let reply = refusal_reply(&r);
                self.log_reject(Some(&m.sender), None, &reply, r.policy);
                return reply;
            }
        }
        self.tx = Some(Transaction {
            mail: m,
            sender,
            rcpts: Vec::new(),
            chunked: None,
        });
        Reply::new(250, Enhanced(2, 1, 0), format!("sender {shown} OK"))
    }

    async fn rcpt(&mut self, r: RcptTo) -> Reply {
        let mode = self.shared.mode;
        let max = self.shared.cfg.max_recipients;
        let Some(tx) = &mut self.tx else {
            return bad_sequence("need MAIL before RCPT");
        };
        if tx.chunked.is_some() {
            return bad_sequence("RCPT not permitted during BDAT");
        }
        if tx.rcpts.len() >= max {
            let reply = Reply::new(452, Enhanced(4, 5, 3), "too many recipients");
            let sender = tx.mail.sender.clone();
            self.log_reject(
                Some(&sender),
                Some(&r.recipient),
                &reply,
                "too_many_recipients",
            );
            return reply;
        }
        let address = match parse_address(&r.recipient, Enhanced(5, 1, 3), "recipient") {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        let shown = format!("<{address}>");
        let verdict = self
            .shared
            .policy
            .check_rcpt(mode, self.auth_user.as_deref(), &address);
        if verdict != Verdict::Accept {
            let reply = verdict.reply(&shown);
            let sender = tx.mail.sender.clone();
            let policy = policy_reason(&verdict);
            self.log_reject(Some(&sender), Some(address.as_str()), &reply, policy);
            return reply;
        }
        if let Some(ube) = &mut self.ube {
            let helo = self.helo.as_ref().map_or("", |(n, _)| n.as_str());
            let from = tx.sender.as_ref().map_or("", Address::as_str);
            if let UbeVerdict::Refuse(refusal) = ube.rcpt(helo, from, address.as_str()).await {
                let reply = refusal_reply(&refusal);
                let sender = tx.mail.sender.clone();
                self.log_reject(
                    Some(&sender),
                    Some(address.as_str()),
                    &reply,
                    refusal.policy,
                );
                return reply;
            }
        }
        let Some(tx) = &mut self.tx else {
            return bad_sequence("need MAIL before RCPT");
        };
        metrics::smtp_rcpt_accepted(mode);
        tx.rcpts.push(Recipient {
            address,
            notify: r.notify,
            orcpt: r.orcpt,
        });
        Reply::new(250, Enhanced(2, 1, 5), format!("recipient {shown} OK"))
    }
}

/// The fixed `policy` value (mail log, metrics) of a refusing verdict.
pub(crate) fn policy_reason(v: &Verdict) -> &'static str {
    match v {
        Verdict::Accept => "accepted",
        Verdict::UnknownUser => "unknown_user",
        Verdict::Disabled => "disabled",
        Verdict::RelayDenied => "relay_denied",
        Verdict::NotOwned => "not_owned",
        Verdict::AuthRequired => "auth_required",
        Verdict::Loop => "loop",
        Verdict::TempFail(_) => "tempfail",
    }
}

/// Validates an envelope address. Non-ASCII mailboxes (RFC 6531) are refused: the directory
/// holds ASCII addresses only.
fn parse_address(text: &str, status: Enhanced, what: &str) -> Result<Address, Reply> {
    if !text.is_ascii() {
        return Err(Reply::new(
            553,
            Enhanced(5, 6, 7),
            format!("non-ASCII {what} addresses are not supported"),
        ));
    }
    Address::parse(text).map_err(|e| Reply::new(501, status, format!("bad {what} address: {e}")))
}
