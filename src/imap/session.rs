//! One IMAP session: reading commands (lines and literals, with every limit applied before a
//! byte of a literal is read), the state machine, login, and the commands that need no
//! mailbox. Mailbox and message commands live in `mailboxes`, `messages` and `fetch`. An
//! APPEND message over `spool_memory_limit` is written to a temporary file as it arrives.
//!
//! What a client turned on (CONDSTORE, IMAP4rev2, UTF8=ACCEPT) is kept here and served by
//! module `features`; `\Recent` by module `recent`.
//!
//! Security note: client mistakes are counted and past `max_errors` the session ends with
//! `* BYE`; a non-synchronising literal over a limit ends the session (its bytes would
//! otherwise be read as commands); STARTTLS discards whatever the client pipelined after it;
//! AUTHENTICATE and LOGIN are slowed and limited by the shared `LoginLimiter`.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::net::{Conn, SessionCtx};

use super::command::{self, Command, ParseLimits};
use super::io::{Input, Io};
use super::mutf7;
use super::parser::{literal_at_end, tag_and_name};
use super::response::status_line;
use super::selected::Selected;
use super::Shared;

/// What the command loop tells its driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    StartTls,
    Close,
}

/// What reading a command produced.
enum Read {
    Command(Vec<u8>),
    /// Refused before it was complete (a literal over a limit, APPEND in the wrong state).
    Refused {
        tag: Option<String>,
        status: &'static str,
        text: String,
    },
    /// A line over the limit, dropped.
    TooLong,
    /// The session must end with this untagged BYE text.
    Bye(&'static str),
    /// The client closed the connection.
    Gone,
}

pub(crate) struct Session<'a> {
    pub sh: &'a Shared,
    pub ctx: &'a SessionCtx,
    pub user: Option<String>,
    pub selected: Option<Selected>,
    /// ENABLE CONDSTORE (or a CONDSTORE-enabling command) happened.
    pub condstore: bool,
    /// ENABLE IMAP4rev2 happened: RFC 9051 behaviour (no `\Recent`, ESEARCH for SEARCH,
    /// UTF-8 mailbox names, LIST with SELECT).
    pub rev2: bool,
    /// ENABLE UTF8=ACCEPT happened (RFC 6855).
    pub utf8_accept: bool,
    pub tls: bool,
    errors: u32,
    pub(crate) auth_failures: u32,
    /// A large APPEND message, written to a temporary file while it arrived; the command's
    /// literal is then empty and APPEND takes the message from here.
    pub spooled: Option<tempfile::NamedTempFile>,
}

pub(crate) async fn run<S>(sh: &Shared, conn: Conn<S>, ctx: SessionCtx)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut conn = conn;
    conn.set_idle_timeout(sh.cfg.login_timeout());
    let tls = conn.is_tls();
    let mut io = Io::new(conn, sh.cfg.max_output_buffer);
    let mut s = Session {
        sh,
        ctx: &ctx,
        user: None,
        selected: None,
        condstore: false,
        rev2: false,
        utf8_accept: false,
        tls,
        errors: 0,
        auth_failures: 0,
        spooled: None,
    };
    if ctx.shutdown.is_triggered() {
        io.out
            .extend_from_slice(b"* BYE [UNAVAILABLE] server shutting down\r\n");
    } else {
        let greeting = format!(
            "* OK [CAPABILITY {}] {} IMAP4rev1 Mailnode ready\r\n",
            s.capabilities(&io.conn),
            sh.cfg.hostname
        );
        io.out.extend_from_slice(greeting.as_bytes());
        loop {
            match s.commands(&mut io).await {
                Ok(Flow::StartTls) => match io.upgrade().await {
                    Ok(upgraded) => {
                        io = upgraded;
                        s.tls = true;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "STARTTLS handshake failed");
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

impl Session<'_> {
    pub fn limits(&self) -> ParseLimits {
        ParseLimits {
            max_nesting: self.sh.cfg.max_nesting,
            max_ranges: self.sh.cfg.max_sequence_ranges,
            max_search_depth: self.sh.cfg.max_search_depth,
        }
    }

    pub(crate) fn login_allowed(&self) -> bool {
        self.tls || self.sh.allow_plaintext_login
    }

    /// Counts a client mistake; true when the session must end.
    pub fn count_error(&mut self) -> bool {
        self.errors += 1;
        self.errors >= self.sh.cfg.max_errors
    }

    /// The user's quota in bytes (0: none), from the directory now.
    pub fn quota(&self) -> u64 {
        let Some(user) = &self.user else { return 0 };
        self.sh
            .cluster
            .read_directory()
            .user(user)
            .map_or(0, |u| u.quota_bytes)
    }

    /// Whether mailbox names are UTF-8 on the wire (IMAP4rev2 or UTF8=ACCEPT enabled) rather
    /// than modified UTF-7.
    pub fn utf8_names(&self) -> bool {
        self.rev2 || self.utf8_accept
    }

    /// A client mailbox name as the store's UTF-8 name.
    pub fn decode_name(&self, wire: &str) -> Result<String, String> {
        let name = if self.utf8_names() {
            wire.to_string()
        } else {
            mutf7::decode(wire).map_err(|e| e.to_string())?
        };
        self.sh.store.normalize(&name).map_err(|e| e.to_string())
    }

    /// Reads and runs commands until the session ends or STARTTLS.
    async fn commands<S>(&mut self, io: &mut Io<S>) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        loop {
            let read = self.read_command(io).await?;
            let flow = match read {
                Read::Gone => return Ok(Flow::Close),
                Read::Bye(text) => {
                    io.out
                        .extend_from_slice(format!("* BYE {text}\r\n").as_bytes());
                    return Ok(Flow::Close);
                }
                Read::TooLong => {
                    io.out
                        .extend_from_slice(b"* BAD [TOOBIG] command line too long\r\n");
                    self.after_error(io)
                }
                Read::Refused { tag, status, text } => {
                    status_line(&mut io.out, tag.as_deref().unwrap_or("*"), status, &text);
                    self.after_error(io)
                }
                Read::Command(buf) => match command::parse(&buf, self.limits()) {
                    Ok((tag, cmd)) => {
                        tracing::debug!(command = cmd.name(), "command");
                        let _timed = crate::metrics::imap_command(cmd.name());
                        self.execute(io, &tag, cmd).await?
                    }
                    // An unsupported charset is well-formed: NO (RFC 3501 §6.4.4), not BAD.
                    Err(bad) if bad.text.starts_with("[BADCHARSET") => {
                        status_line(
                            &mut io.out,
                            bad.tag.as_deref().unwrap_or("*"),
                            "NO",
                            &bad.text,
                        );
                        Flow::Continue
                    }
                    Err(bad) => {
                        status_line(
                            &mut io.out,
                            bad.tag.as_deref().unwrap_or("*"),
                            "BAD",
                            &bad.text,
                        );
                        self.after_error(io)
                    }
                },
            };
            match flow {
                Flow::Continue => io.flush_if_full().await?,
                other => return Ok(other),
            }
        }
    }

    pub(crate) fn after_error<S>(&mut self, io: &mut Io<S>) -> Flow {
        crate::metrics::imap_error();
        if self.count_error() {
            io.out.extend_from_slice(b"* BYE too many errors\r\n");
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    /// Assembles one command: a line, and for each literal it announces, the literal's bytes
    /// and the next line.
    async fn read_command<S>(&mut self, io: &mut Io<S>) -> io::Result<Read>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let cfg = &self.sh.cfg;
        self.spooled = None;
        let mut buf: Vec<u8> = Vec::new();
        let mut literals = 0;
        loop {
            let shutdown = buf.is_empty().then_some(&self.ctx.shutdown);
            let line = match io.read_line(cfg.max_line_length, shutdown).await? {
                Input::Line(l) => l,
                Input::TooLong if buf.is_empty() => return Ok(Read::TooLong),
                // Mid-command we cannot know where the command ends any more.
                Input::TooLong => return Ok(Read::Bye("[TOOBIG] command line too long")),
                Input::Eof => return Ok(Read::Gone),
                Input::Timeout => return Ok(Read::Bye("idle timeout, closing connection")),
                Input::Shutdown => return Ok(Read::Bye("[UNAVAILABLE] server shutting down")),
            };
            let content = line
                .strip_suffix(b"\r\n")
                .or_else(|| line.strip_suffix(b"\n"))
                .unwrap_or(&line);
            buf.extend_from_slice(content);
            let Some(lit) = literal_at_end(content) else {
                return Ok(Read::Command(buf));
            };
            buf.extend_from_slice(b"\r\n");
            literals += 1;
            let (tag, name) = tag_and_name(&buf);
            let append = name.as_deref() == Some("APPEND");
            let refuse = |status, text: String| {
                if lit.sync {
                    Ok(Read::Refused {
                        tag: tag.clone(),
                        status,
                        text,
                    })
                } else {
                    // Its bytes are on their way and would be read as commands.
                    Ok(Read::Bye("[TOOBIG] non-synchronising literal refused"))
                }
            };
            if append && self.user.is_none() {
                return refuse("NO", "log in first".into());
            }
            let limit = if append {
                u64::from(cfg.max_append_size)
            } else {
                u64::from(cfg.max_literal_size)
            };
            if literals > cfg.max_literals {
                return refuse("BAD", "[LIMIT] too many literals in one command".into());
            }
            if lit.len > limit {
                return refuse(
                    "NO",
                    format!(
                        "[TOOBIG] literal of {} bytes exceeds the limit of {limit}",
                        lit.len
                    ),
                );
            }
            // APPEND's message goes to a file when large; everything else stays in memory,
            // bounded by max_command_size (plus one in-memory message for APPEND).
            let spool =
                append && lit.len > u64::from(cfg.spool_memory_limit) && self.spooled.is_none();
            let in_memory_limit = cfg.max_command_size as u64
                + if append {
                    u64::from(cfg.spool_memory_limit)
                } else {
                    0
                };
            let grown = (buf.len() as u64).saturating_add(lit.len);
            if !spool && grown > in_memory_limit {
                return refuse("BAD", "[TOOBIG] command too long".into());
            }
            // A synchronising literal over quota is refused before it is sent; a LITERAL+ one
            // is on its way anyway, so the store refuses it after it is read.
            if append && lit.sync {
                if let Some(text) = self.append_precheck(lit.len).await {
                    return refuse("NO", text);
                }
            }
            if lit.sync {
                io.out.extend_from_slice(b"+ Ready for literal data\r\n");
            }
            if spool {
                // Keep the command's shape with an empty literal; the bytes go to a file.
                let announced = buf.len() - 2 - content.len()
                    + content.iter().rposition(|&b| b == b'{').unwrap_or(0);
                buf.truncate(announced);
                buf.extend_from_slice(b"{0}\r\n");
                let file = match &cfg.spool_dir {
                    Some(dir) => tempfile::NamedTempFile::new_in(dir),
                    None => tempfile::NamedTempFile::new(),
                };
                let file = match file {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot create an APPEND spool file");
                        return Ok(Read::Bye("[UNAVAILABLE] cannot accept the message now"));
                    }
                };
                let mut w = tokio::fs::File::from_std(file.as_file().try_clone()?);
                match io.read_literal_to(lit.len, &mut w).await? {
                    None => {}
                    Some(Input::Timeout) => {
                        return Ok(Read::Bye("idle timeout, closing connection"))
                    }
                    Some(_) => return Ok(Read::Gone),
                }
                self.spooled = Some(file);
                continue;
            }
            let n = usize::try_from(lit.len).unwrap_or(usize::MAX);
            buf.reserve(n.min(cfg.max_append_size as usize));
            match io.read_literal(n, &mut buf).await? {
                None => {}
                Some(Input::Timeout) => return Ok(Read::Bye("idle timeout, closing connection")),
                Some(_) => return Ok(Read::Gone),
            }
        }
    }

    /// Whether an APPEND of `len` bytes would exceed the quota: answered before the message
    /// is sent.
    async fn append_precheck(&self, len: u64) -> Option<String> {
        let user = self.user.as_deref()?;
        let quota = self.quota();
        if quota == 0 {
            return None;
        }
        let used = self.sh.store.usage(user).await.ok()?.bytes;
        (used.saturating_add(len) > quota)
            .then(|| format!("[OVERQUOTA] quota exceeded: {used} of {quota} bytes used"))
    }

    /// Runs one parsed command; its responses go to `io.out`.
    async fn execute<S>(&mut self, io: &mut Io<S>, tag: &str, cmd: Command) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let authed = self.user.is_some();
        let selected = self.selected.is_some();
        let ok = |io: &mut Io<S>, text: &str| status_line(&mut io.out, tag, "OK", text);
        if let (true, Some(text)) = (authed, self.refusal(&cmd)) {
            status_line(&mut io.out, tag, "BAD", text);
            return Ok(self.after_error(io));
        }
        match cmd {
            Command::Capability => {
                let caps = self.capabilities(&io.conn);
                io.out
                    .extend_from_slice(format!("* CAPABILITY {caps}\r\n").as_bytes());
                ok(io, "CAPABILITY completed");
            }
            Command::Noop | Command::Check => {
                if let Some(sel) = self.selected.as_mut() {
                    sel.absorb();
                    sel.announce(&mut io.out, true, self.condstore);
                }
                ok(io, &format!("{} completed", cmd.name()));
            }
            Command::Logout => {
                io.out.extend_from_slice(
                    format!("* BYE {} logging out\r\n", self.sh.cfg.hostname).as_bytes(),
                );
                ok(io, "LOGOUT completed");
                return Ok(Flow::Close);
            }
            Command::StartTls => {
                if authed || !io.conn.starttls_available() {
                    status_line(&mut io.out, tag, "BAD", "STARTTLS not available");
                    return Ok(self.after_error(io));
                }
                let dropped = io.discard_buffered();
                if dropped > 0 {
                    tracing::debug!(
                        bytes = dropped,
                        "discarded plaintext pipelined after STARTTLS"
                    );
                }
                ok(io, "Begin TLS negotiation now");
                return Ok(Flow::StartTls);
            }
            Command::Id => {
                io.out
                    .extend_from_slice(b"* ID (\"name\" \"Mailnode\")\r\n");
                ok(io, "ID completed");
            }
            Command::Login { user, password } => {
                if authed {
                    status_line(&mut io.out, tag, "BAD", "already authenticated");
                    return Ok(self.after_error(io));
                }
                return self.login(io, tag, &user, &password).await;
            }
            Command::Authenticate { mechanism, initial } => {
                if authed {
                    status_line(&mut io.out, tag, "BAD", "already authenticated");
                    return Ok(self.after_error(io));
                }
                return self.authenticate(io, tag, &mechanism, initial).await;
            }
            _ if !authed => {
                status_line(&mut io.out, tag, "BAD", "command not valid before login");
                return Ok(self.after_error(io));
            }
            Command::Enable(caps) => {
                self.enable(&mut io.out, &caps);
                ok(io, "ENABLE completed");
            }
            Command::Namespace => {
                io.out
                    .extend_from_slice(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
                ok(io, "NAMESPACE completed");
            }
            Command::Idle => return self.idle(io, tag).await,
            Command::Select {
                mailbox,
                read_only,
                condstore,
            } => self.select(io, tag, &mailbox, read_only, condstore).await,
            Command::Create { .. }
            | Command::Delete(_)
            | Command::Rename { .. }
            | Command::Subscribe(_)
            | Command::Unsubscribe(_)
            | Command::List { .. }
            | Command::Status { .. }
            | Command::Append { .. }
            | Command::GetQuota(_)
            | Command::GetQuotaRoot(_)
            | Command::SetQuota => {
                if self.mailbox_command(io, tag, cmd).await {
                    return Ok(self.after_error(io));
                }
            }
            _ if !selected => {
                status_line(&mut io.out, tag, "BAD", "no mailbox selected");
                return Ok(self.after_error(io));
            }
            other => {
                if self.message_command(io, tag, other).await? {
                    return Ok(self.after_error(io));
                }
            }
        }
        Ok(Flow::Continue)
    }
}
