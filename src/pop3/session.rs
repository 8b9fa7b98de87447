//! One POP3 session: the command loop and the state machine of RFC 1939 — AUTHORIZATION
//! (greeting, CAPA, STLS, USER/PASS, AUTH) → TRANSACTION (STAT, LIST, UIDL, RETR, TOP, DELE,
//! RSET, NOOP) → UPDATE (QUIT: set `\Seen` on what RETR sent, as Cyrus and Dovecot do, then
//! expunge what DELE marked). The login commands live in `login`.
//!
//! The session is generic over the connection's stream so tests can drive it over in-memory
//! I/O. Its view of the maildrop is fixed at login (RFC 1939 numbers messages for the session);
//! messages delivered later appear in the next session, and one expunged meanwhile by IMAP
//! answers `-ERR` when retrieved.
//!
//! Security note: every client mistake is answered with `-ERR` and counted; past `max_errors`
//! the session ends. Message numbers are checked against the session's own list, never used
//! as an index unchecked. RETR and TOP stream the file in chunks through `transfer`, so memory
//! per session stays bounded whatever the message size; a client that stops reading is ended
//! by the idle timeout on writes.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::net::{Conn, SessionCtx};
use crate::store::{FlagOp, Flags, MailboxHandle, Store, StoreError, SystemFlag};

use super::command::{self, Command};
use super::io::{strip_line_end, Input, Io};
use super::limiter::LoginLimiter;
use super::transfer::Stuffer;
use super::{unique_id, Authenticator, MaildropLock, MaildropLocks, Pop3Config};

/// Octets of a message file read (and encoded) per trip to the blocking pool.
const FILE_CHUNK: usize = 128 * 1024;

/// What the listeners' sessions share.
pub(crate) struct Shared<A> {
    pub(crate) cfg: Pop3Config,
    pub(crate) auth: Arc<A>,
    pub(crate) store: Store,
    /// Whether USER/PASS/AUTH are allowed before TLS.
    pub(crate) plaintext_login: bool,
    pub(crate) locks: Arc<MaildropLocks>,
    pub(crate) limiter: LoginLimiter,
}

/// What a command tells the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close,
    StartTls,
}

/// One message of the maildrop as the session numbers it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Msg {
    pub(crate) uid: u32,
    pub(crate) size: u64,
    pub(crate) deleted: bool,
    /// It had `\Seen` when the maildrop was locked.
    pub(crate) seen: bool,
    /// RETR sent it whole in this session: it gets `\Seen` at QUIT (TOP does not count).
    pub(crate) retrieved: bool,
}

/// The TRANSACTION state: the locked maildrop.
pub(crate) struct Maildrop {
    pub(crate) user: String,
    /// `None` when the user has no INBOX yet (nothing was ever delivered): an empty maildrop.
    pub(crate) handle: Option<MailboxHandle>,
    pub(crate) uidvalidity: u32,
    /// Message number n is `messages[n - 1]`.
    pub(crate) messages: Vec<Msg>,
    pub(crate) _lock: MaildropLock,
}

impl Maildrop {
    /// Message `n`, unless it does not exist or is marked deleted.
    fn get(&self, n: u32) -> Result<Msg, String> {
        let msg = (n as usize)
            .checked_sub(1)
            .and_then(|i| self.messages.get(i))
            .ok_or_else(|| format!("no such message: {n}"))?;
        if msg.deleted {
            return Err(format!("message {n} is deleted"));
        }
        Ok(*msg)
    }

    /// Messages not marked deleted and their octets.
    fn stat(&self) -> (usize, u64) {
        self.live()
            .fold((0, 0), |(n, o), (_, m)| (n + 1, o + m.size))
    }

    /// Numbered messages not marked deleted.
    fn live(&self) -> impl Iterator<Item = (usize, &Msg)> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.deleted)
            .map(|(i, m)| (i + 1, m))
    }
}

pub(crate) struct Session<'a, A> {
    pub(crate) shared: &'a Shared<A>,
    pub(crate) ctx: &'a SessionCtx,
    /// The connection is encrypted (POP3S, or after STLS).
    pub(crate) tls: bool,
    /// The name given by USER, waiting for PASS.
    pub(crate) user: Option<String>,
    /// Present in the TRANSACTION state.
    pub(crate) maildrop: Option<Maildrop>,
    pub(crate) errors: u32,
    pub(crate) auth_failures: u32,
}

/// Runs one session to its end.
pub(crate) async fn run<S, A>(shared: &Shared<A>, conn: Conn<S>, ctx: SessionCtx)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    A: Authenticator,
{
    let mut io = Io::new(conn);
    let mut session = Session {
        shared,
        ctx: &ctx,
        tls: io.conn.is_tls(),
        user: None,
        maildrop: None,
        errors: 0,
        auth_failures: 0,
    };
    if ctx.shutdown.is_triggered() {
        io.err("server shutting down");
    } else {
        io.ok("Mailnode POP3 server ready");
        loop {
            match session.commands(&mut io).await {
                Ok(Flow::StartTls) => match io.upgrade().await {
                    Ok(upgraded) => {
                        io = upgraded;
                        session.tls = true;
                        session.user = None;
                        tracing::debug!("STLS done");
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "STLS handshake failed");
                        return;
                    }
                },
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "connection failed");
                    return;
                }
            }
        }
    }
    let _ = io.flush().await;
    let _ = io.conn.shutdown().await;
}

impl<A: Authenticator> Session<'_, A> {
    /// Answers a client mistake and counts it.
    pub(crate) fn fail<S>(&mut self, io: &mut Io<S>, text: impl std::fmt::Display)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        crate::metrics::pop3_error();
        self.errors += 1;
        io.err(text);
    }

    /// Reads and answers commands until the session ends or asks for STLS.
    async fn commands<S>(&mut self, io: &mut Io<S>) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let (max, hard) = (
            self.shared.cfg.max_line_length,
            self.shared.cfg.max_unterminated_line,
        );
        loop {
            let flow = match io.read_line(max, hard, &self.ctx.shutdown).await? {
                Input::Line(line) => match command::parse(strip_line_end(&line)) {
                    Ok(cmd) => self.dispatch(io, cmd).await?,
                    Err(e) => {
                        tracing::debug!(error = %e, "bad command");
                        self.fail(io, e);
                        Flow::Continue
                    }
                },
                other => self.not_a_line(io, other),
            };
            if flow != Flow::Continue {
                return Ok(flow);
            }
            if self.errors >= self.shared.cfg.max_errors {
                tracing::info!(errors = self.errors, "too many errors; closing");
                io.err("too many errors, closing connection");
                return Ok(Flow::Close);
            }
            io.flush_if_full().await?;
        }
    }

    /// Answers what the reader produced instead of a line.
    pub(crate) fn not_a_line<S>(&mut self, io: &mut Io<S>, input: Input) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match input {
            Input::Line(_) => Flow::Continue,
            Input::TooLong => {
                let max = self.shared.cfg.max_line_length;
                self.fail(io, format!("line too long (limit {max} octets)"));
                Flow::Continue
            }
            Input::Unterminated => {
                tracing::info!("unterminated line; closing");
                io.err("line too long, closing connection");
                Flow::Close
            }
            Input::Eof => Flow::Close,
            Input::Timeout => {
                io.err("autologout: idle for too long, closing connection");
                Flow::Close
            }
            Input::Shutdown => {
                io.err("server shutting down");
                Flow::Close
            }
        }
    }

    async fn dispatch<S>(&mut self, io: &mut Io<S>, cmd: Command) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let _timed = crate::metrics::pop3_command(&cmd);
        let in_transaction = self.maildrop.is_some();
        match cmd {
            Command::Capa => self.capa(io),
            Command::Quit => return self.quit(io).await,
            Command::Stls | Command::User(_) | Command::Pass(_) | Command::Auth { .. }
                if in_transaction =>
            {
                self.fail(io, "command not valid in the TRANSACTION state");
            }
            Command::Stls => return Ok(self.stls(io)),
            Command::User(name) => self.user(io, name),
            Command::Pass(password) => return self.pass(io, password).await,
            Command::Auth { mechanism, initial } => return self.auth(io, mechanism, initial).await,
            _ if !in_transaction => self.fail(io, "command not valid before login"),
            Command::Retr(n) => return self.send_message(io, n, None).await,
            Command::Top(n, lines) => return self.send_message(io, n, Some(lines)).await,
            cmd => self.transaction(io, cmd),
        }
        Ok(Flow::Continue)
    }

    /// Whether USER/PASS/AUTH may be used now.
    pub(crate) fn login_allowed(&self) -> bool {
        self.tls || self.shared.plaintext_login
    }

    fn capa<S>(&self, io: &mut Io<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut caps = vec!["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"];
        let authorization = self.maildrop.is_none();
        if authorization && self.login_allowed() {
            caps.extend(["USER", "SASL PLAIN"]);
        }
        if authorization && io.conn.starttls_available() {
            caps.push("STLS");
        }
        caps.push("IMPLEMENTATION Mailnode");
        io.ok("capability list follows");
        for cap in caps {
            io.queue(cap.as_bytes());
            io.queue(b"\r\n");
        }
        io.queue(b".\r\n");
    }

    fn stls<S>(&mut self, io: &mut Io<S>) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.tls {
            self.fail(io, "TLS is already active");
        } else if !io.conn.starttls_available() {
            self.fail(io, "STLS is not offered on this port");
        } else {
            let dropped = io.discard_buffered();
            if dropped > 0 {
                tracing::info!(octets = dropped, "discarded input pipelined after STLS");
            }
            io.ok("begin TLS negotiation");
            return Flow::StartTls;
        }
        Flow::Continue
    }

    /// QUIT: in TRANSACTION, the UPDATE state — mark what RETR sent `\Seen`, remove what DELE
    /// marked — then goodbye.
    async fn quit<S>(&mut self, io: &mut Io<S>) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(md) = self.maildrop.take() else {
            io.ok("Mailnode POP3 server signing off");
            return Ok(Flow::Close);
        };
        let gone: Vec<u32> = md
            .messages
            .iter()
            .filter(|m| m.deleted)
            .map(|m| m.uid)
            .collect();
        let read: Vec<u32> = md
            .messages
            .iter()
            .filter(|m| m.retrieved && !m.seen && !m.deleted)
            .map(|m| m.uid)
            .collect();
        let (left, _) = md.stat();
        let mut failed = false;
        if let Some(handle) = &md.handle {
            if !read.is_empty() {
                let seen = Flags::new().with(SystemFlag::Seen);
                if let Err(e) = handle.store_flags(&read, FlagOp::Add, &seen, None).await {
                    tracing::warn!(user = %md.user, error = %e, "POP3 update: \\Seen not set");
                    failed = true;
                }
            }
            if !gone.is_empty() {
                if let Err(e) = handle.expunge(&gone).await {
                    tracing::warn!(user = %md.user, error = %e, "POP3 update: expunge failed");
                    failed = true;
                }
            }
        }
        if failed {
            io.err("[SYS/TEMP] some changes were not saved");
        } else {
            tracing::info!(
                user = %md.user,
                deleted = gone.len(),
                seen = read.len(),
                left,
                "POP3 update done"
            );
            io.ok(format!(
                "Mailnode POP3 server signing off ({left} messages left)"
            ));
        }
        // The lock goes with `md`, after the store has finished.
        drop(md);
        Ok(Flow::Close)
    }

    /// STAT, LIST, UIDL, DELE, RSET and NOOP: answered from the session's own list.
    fn transaction<S>(&mut self, io: &mut Io<S>, cmd: Command)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(md) = self.maildrop.as_mut() else {
            return;
        };
        let reply: Result<(), String> = match cmd {
            Command::Stat => {
                let (n, octets) = md.stat();
                io.ok(format!("{n} {octets}"));
                Ok(())
            }
            Command::List(Some(n)) => md.get(n).map(|m| io.ok(format!("{n} {}", m.size))),
            Command::List(None) => {
                let (n, octets) = md.stat();
                io.ok(format!("{n} messages ({octets} octets)"));
                let mut out = String::new();
                for (i, m) in md.live() {
                    out.push_str(&format!("{i} {}\r\n", m.size));
                }
                io.queue(out.as_bytes());
                io.queue(b".\r\n");
                Ok(())
            }
            Command::Uidl(Some(n)) => md
                .get(n)
                .map(|m| io.ok(format!("{n} {}", unique_id(md.uidvalidity, m.uid)))),
            Command::Uidl(None) => {
                io.ok("unique-id listing follows");
                let mut out = String::new();
                for (i, m) in md.live() {
                    out.push_str(&format!("{i} {}\r\n", unique_id(md.uidvalidity, m.uid)));
                }
                io.queue(out.as_bytes());
                io.queue(b".\r\n");
                Ok(())
            }
            Command::Dele(n) => md.get(n).map(|_| {
                if let Some(m) = md.messages.get_mut(n as usize - 1) {
                    m.deleted = true;
                }
                io.ok(format!("message {n} deleted"));
            }),
            Command::Rset => {
                for m in &mut md.messages {
                    m.deleted = false;
                }
                let (n, octets) = md.stat();
                io.ok(format!("maildrop has {n} messages ({octets} octets)"));
                Ok(())
            }
            Command::Noop => {
                io.ok("");
                Ok(())
            }
            _ => Err("command not valid in the TRANSACTION state".to_string()),
        };
        if let Err(text) = reply {
            self.fail(io, text);
        }
    }

    /// RETR (`top: None`) and TOP: streams the message file through the encoder.
    async fn send_message<S>(
        &mut self,
        io: &mut Io<S>,
        n: u32,
        top: Option<u64>,
    ) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(md) = self.maildrop.as_ref() else {
            return Ok(Flow::Continue);
        };
        let (msg, handle) = match (md.get(n), &md.handle) {
            (Ok(msg), Some(handle)) => (msg, handle.clone()),
            (Err(text), _) => {
                self.fail(io, text);
                return Ok(Flow::Continue);
            }
            (Ok(_), None) => {
                self.fail(io, format!("no such message: {n}"));
                return Ok(Flow::Continue);
            }
        };
        let removed =
            |io: &mut Io<S>| io.err(format!("message {n} was removed by another session"));
        let path = match handle.message_path(msg.uid) {
            Ok(p) => p,
            Err(StoreError::NoSuchMessage(_)) => {
                removed(io);
                return Ok(Flow::Continue);
            }
            Err(e) => {
                tracing::warn!(uid = msg.uid, error = %e, "cannot find a message");
                io.err("[SYS/TEMP] cannot read the message now");
                return Ok(Flow::Continue);
            }
        };
        let stuffer = match top {
            None => Stuffer::retr(),
            Some(lines) => Stuffer::top(lines),
        };
        // Opening and the first chunk (for most messages, all of it) in one blocking call,
        // before the `+OK`, so a message unlinked meanwhile still gets its `-ERR`.
        let size = msg.size;
        let first = blocking(move || {
            let mut t = Transfer::new(std::fs::File::open(&path)?, stuffer, size);
            t.step()?;
            Ok(t)
        })
        .await;
        let mut t = match first {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                removed(io);
                return Ok(Flow::Continue);
            }
            Err(e) => {
                tracing::warn!(uid = msg.uid, error = %e, "cannot read a message");
                io.err("[SYS/TEMP] cannot read the message now");
                return Ok(Flow::Continue);
            }
        };
        match top {
            None => io.ok(format!("{} octets", msg.size)),
            Some(_) => io.ok("top of message follows"),
        }
        loop {
            io.write(&t.out).await?;
            if t.done {
                break;
            }
            // After the `+OK` the response cannot turn into `-ERR`: a read error ends the
            // session (without UPDATE) rather than sending a truncated message as whole.
            t = blocking(move || t.step().map(|()| t)).await?;
        }
        if top.is_none() {
            if let Some(m) = self
                .maildrop
                .as_mut()
                .zip((n as usize).checked_sub(1))
                .and_then(|(md, i)| md.messages.get_mut(i))
            {
                m.retrieved = true;
            }
        }
        Ok(Flow::Continue)
    }
}

/// Runs blocking file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// A message file on its way out: read and encoded [`FILE_CHUNK`] octets per blocking step,
/// so a typical message costs one trip to the blocking pool and a large one never sits in
/// memory whole.
struct Transfer {
    file: std::fs::File,
    stuffer: Stuffer,
    buf: Vec<u8>,
    /// The encoding of the last step.
    out: Vec<u8>,
    /// The response is complete (`.` line included).
    done: bool,
}

impl Transfer {
    fn new(file: std::fs::File, stuffer: Stuffer, size: u64) -> Transfer {
        // One more than the file, so its end is seen without a second buffer growth.
        let cap = usize::try_from(size).unwrap_or(FILE_CHUNK).min(FILE_CHUNK) + 1;
        Transfer {
            file,
            stuffer,
            buf: Vec::with_capacity(cap),
            out: Vec::with_capacity(cap + cap / 32 + 8),
            done: false,
        }
    }

    /// Reads the next chunk and encodes it; at the end of the file (or of TOP) adds the
    /// final `.` line and sets `done`. Blocking.
    fn step(&mut self) -> io::Result<()> {
        use std::io::Read;
        self.buf.clear();
        self.out.clear();
        let read = (&mut self.file)
            .take(FILE_CHUNK as u64)
            .read_to_end(&mut self.buf)?;
        let more = read > 0 && self.stuffer.push(&self.buf, &mut self.out);
        if !more || read < FILE_CHUNK {
            self.stuffer.finish(&mut self.out);
            self.done = true;
        }
        Ok(())
    }
}
