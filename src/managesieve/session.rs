//! One ManageSieve session: the greeting (the capability list), the non-authenticated state
//! (STARTTLS, AUTHENTICATE PLAIN/LOGIN) and the authenticated state (the script commands),
//! with CAPABILITY, NOOP and LOGOUT in both.
//!
//! Every answer is `OK`, `NO` or `BYE`, with a response code where RFC 5804 section 1.3 has
//! one, mapped in this file only. Client mistakes are answered `NO` and counted; past
//! `max_errors` the session ends with `BYE`. Shutdown and the idle timeout end it with `BYE`.
//!
//! Security note: input is read through the [`Framer`], so the buffer never holds more than
//! one bounded command; a refused literal is dropped as it arrives, never parsed. Script names
//! are checked before they reach a log or the directory; passwords are never logged.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cluster::ClusterError;
use crate::directory::{
    check_sieve_name, Command as DirCommand, SieveScripts, MAX_SIEVE_SCRIPTS,
    MAX_SIEVE_SCRIPT_BYTES,
};
use crate::net::{Conn, SessionCtx};
use crate::pop3::{Authenticator, LoginError};
use crate::sieve::Extension;
use crate::smtp::sasl::{self, SaslError};

use super::command::{self, Command, Frame, FrameLimits, Framer, ParseError, SieveString};
use super::ManageSieveServer;

/// Octets asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;
/// Reply octets buffered before they are written even while pipelined commands remain.
const MAX_PENDING_OUTPUT: usize = 64 * 1024;
/// Most literals in one command (PUTSCRIPT and RENAMESCRIPT have two arguments).
const MAX_LITERALS: usize = 4;

/// What reading produced.
enum Input {
    /// One whole command (or SASL response), line end included.
    Frame(BytesMut),
    /// A command refused while framing (too long, literal too big).
    Refused(ParseError),
    Eof,
    Timeout,
    Shutdown,
}

/// What a command tells the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
    StartTls,
}

/// A `NO`/`BYE` response code (RFC 5804 section 1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    NonExistent,
    Active,
    AlreadyExists,
    MaxScripts,
    MaxSize,
    TryLater,
    EncryptNeeded,
}

impl Code {
    fn text(self) -> &'static str {
        match self {
            Code::NonExistent => "NONEXISTENT",
            Code::Active => "ACTIVE",
            Code::AlreadyExists => "ALREADYEXISTS",
            Code::MaxScripts => "QUOTA/MAXSCRIPTS",
            Code::MaxSize => "QUOTA/MAXSIZE",
            Code::TryLater => "TRYLATER",
            Code::EncryptNeeded => "ENCRYPT-NEEDED",
        }
    }
}

/// A refusal: its code (if any) and its text.
type Refusal = (Option<Code>, String);

struct Session<'a, S> {
    server: &'a ManageSieveServer,
    ctx: &'a SessionCtx,
    conn: Conn<S>,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    framer: Framer,
    tls: bool,
    /// The authenticated user (canonical address).
    user: Option<String>,
    errors: u32,
    auth_failures: u32,
}

/// Runs one session to its end.
pub(super) async fn run<S>(server: &ManageSieveServer, conn: Conn<S>, ctx: SessionCtx)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let limits = FrameLimits {
        max_line: server.cfg.max_line_length,
        max_literal: MAX_SIEVE_SCRIPT_BYTES as u64,
        max_literals: MAX_LITERALS,
    };
    let mut s = Session {
        server,
        ctx: &ctx,
        tls: conn.is_tls(),
        conn,
        rbuf: BytesMut::new(),
        wbuf: Vec::new(),
        framer: Framer::new(limits),
        user: None,
        errors: 0,
        auth_failures: 0,
    };
    if ctx.shutdown.is_triggered() {
        s.bye(None, "server shutting down");
    } else {
        s.capabilities();
        s.ok("Mailnode ManageSieve ready");
        loop {
            match s.commands().await {
                // The `OK` goes out first; the read buffer was discarded by `starttls`, so
                // plaintext never reaches the TLS session.
                Ok(Flow::StartTls) if s.flush().await.is_err() => return,
                Ok(Flow::StartTls) => match s.conn.upgrade().await {
                    Ok(upgraded) => {
                        s.conn = upgraded;
                        s.tls = true;
                        s.framer.reset();
                        tracing::debug!("STARTTLS done");
                        // RFC 5804 section 2.2: the capabilities again, then OK.
                        s.capabilities();
                        s.ok("TLS negotiation successful");
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
    let _ = s.flush().await;
    let _ = s.conn.shutdown().await;
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<'_, S> {
    fn status(&mut self, status: &str, code: Option<Code>, text: &str) {
        let mut line = status.to_string();
        if let Some(code) = code {
            line.push_str(&format!(" ({})", code.text()));
        }
        if !text.is_empty() {
            line.push_str(&format!(" {}", SieveString(text)));
        }
        tracing::trace!(reply = %line, "reply");
        self.wbuf.extend_from_slice(line.as_bytes());
        self.wbuf.extend_from_slice(b"\r\n");
    }

    fn ok(&mut self, text: &str) {
        self.status("OK", None, text);
    }

    fn no(&mut self, code: Option<Code>, text: &str) {
        self.status("NO", code, text);
    }

    fn bye(&mut self, code: Option<Code>, text: &str) {
        self.status("BYE", code, text);
    }

    /// Answers a client mistake with `NO` and counts it.
    fn fail(&mut self, code: Option<Code>, text: &str) {
        crate::metrics::managesieve_error();
        self.errors += 1;
        self.no(code, text);
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.conn.write_all(&self.wbuf).await?;
            self.conn.flush().await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// The next framed command (or a framing error), reading as needed; replies are flushed
    /// before any wait.
    async fn next_frame(&mut self) -> io::Result<Input> {
        loop {
            match self.framer.next(&self.rbuf) {
                Frame::Command(n) => return Ok(Input::Frame(self.rbuf.split_to(n))),
                Frame::Discard(n, error) => {
                    self.rbuf.advance(n);
                    if let Some(e) = error {
                        return Ok(Input::Refused(e));
                    }
                }
                Frame::Need => {
                    self.flush().await?;
                    self.rbuf.reserve(READ_CHUNK);
                    let read = tokio::select! {
                        () = self.ctx.shutdown.triggered() => return Ok(Input::Shutdown),
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
        }
    }

    /// Reads and answers commands until the session ends or asks for STARTTLS.
    async fn commands(&mut self) -> io::Result<Flow> {
        loop {
            let parsed = match self.next_frame().await? {
                Input::Frame(bytes) => Some(command::parse(&bytes)),
                Input::Refused(e) => Some(Err(e)),
                other => {
                    let flow = self.not_a_frame(other);
                    if flow != Flow::Continue {
                        return Ok(flow);
                    }
                    None
                }
            };
            let flow = match parsed {
                None => Flow::Continue,
                Some(Ok(cmd)) => self.dispatch(cmd).await?,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "bad command");
                    if matches!(e, ParseError::UnknownCommand(_)) {
                        drop(crate::metrics::managesieve_command("other"));
                    }
                    let code =
                        matches!(e, ParseError::LiteralTooBig { .. }).then_some(Code::MaxSize);
                    self.fail(code, &e.to_string());
                    Flow::Continue
                }
            };
            if flow != Flow::Continue {
                return Ok(flow);
            }
            if self.errors >= self.server.cfg.max_errors {
                tracing::info!(errors = self.errors, "too many errors; closing");
                self.bye(None, "too many errors, closing connection");
                return Ok(Flow::Close);
            }
            // A client pipelining GETSCRIPTs without reading must not grow the output buffer.
            if self.wbuf.len() >= MAX_PENDING_OUTPUT {
                self.flush().await?;
            }
        }
    }

    async fn dispatch(&mut self, cmd: Command) -> io::Result<Flow> {
        let _timed = crate::metrics::managesieve_command(cmd.name());
        let authenticated = self.user.is_some();
        match cmd {
            Command::Capability => {
                self.capabilities();
                self.ok("");
            }
            Command::Logout => {
                self.ok("Logout complete");
                return Ok(Flow::Close);
            }
            Command::Noop(tag) => match tag {
                Some(tag) => {
                    let line = format!("OK (TAG {}) \"Done\"\r\n", SieveString(&tag));
                    self.wbuf.extend_from_slice(line.as_bytes());
                }
                None => self.ok("Done"),
            },
            Command::StartTls if authenticated => {
                self.fail(None, "STARTTLS is only allowed before AUTHENTICATE")
            }
            Command::StartTls => return Ok(self.starttls()),
            Command::Authenticate { .. } if authenticated => {
                self.fail(None, "already authenticated: UNAUTHENTICATE first")
            }
            Command::Authenticate { mechanism, initial } => {
                return self.authenticate(mechanism, initial).await
            }
            _ if !authenticated => self.fail(None, "AUTHENTICATE first"),
            Command::Unauthenticate => {
                if let Some(user) = self.user.take() {
                    tracing::info!(user = %user, "ManageSieve UNAUTHENTICATE");
                }
                self.ok("Unauthenticated");
            }
            cmd => {
                let user = self.user.clone().unwrap_or_default();
                if let Err((code, text)) = self.script_command(&user, cmd).await {
                    self.no(code, &text);
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// Whether AUTHENTICATE may be used now.
    fn login_allowed(&self) -> bool {
        self.tls || self.server.plaintext_login
    }

    /// The capability lines (RFC 5804 section 1.7), without the final OK.
    fn capabilities(&mut self) {
        let extensions: Vec<&str> = Extension::ALL.iter().map(|e| e.name()).collect();
        let sasl = if self.user.is_none() && self.login_allowed() {
            "PLAIN LOGIN"
        } else {
            ""
        };
        let max_redirects = self.server.sieve_limits.max_redirects.to_string();
        let mut caps: Vec<(&str, Option<String>)> = vec![
            ("IMPLEMENTATION", Some("Mailnode".to_string())),
            ("SASL", Some(sasl.to_string())),
            ("SIEVE", Some(extensions.join(" "))),
            ("MAXREDIRECTS", Some(max_redirects)),
        ];
        if self.user.is_none() && self.conn.starttls_available() {
            caps.push(("STARTTLS", None));
        }
        if let Some(user) = &self.user {
            caps.push(("OWNER", Some(user.clone())));
        }
        caps.push(("VERSION", Some("1.0".to_string())));
        for (name, value) in caps {
            let line = match value {
                Some(v) => format!("{} {}\r\n", SieveString(name), SieveString(&v)),
                None => format!("{}\r\n", SieveString(name)),
            };
            self.wbuf.extend_from_slice(line.as_bytes());
        }
    }

    fn starttls(&mut self) -> Flow {
        if self.tls {
            self.fail(None, "TLS is already active");
            return Flow::Continue;
        }
        if !self.conn.starttls_available() {
            self.fail(None, "STARTTLS is not offered on this port");
            return Flow::Continue;
        }
        let dropped = self.rbuf.len();
        self.rbuf.clear();
        if dropped > 0 {
            tracing::info!(octets = dropped, "discarded input pipelined after STARTTLS");
        }
        self.ok("Begin TLS negotiation now");
        Flow::StartTls
    }

    /// Answers the end of input: EOF, the idle timeout, shutdown.
    fn not_a_frame(&mut self, input: Input) -> Flow {
        match input {
            Input::Frame(_) | Input::Refused(_) => Flow::Continue,
            Input::Eof => Flow::Close,
            Input::Timeout => {
                self.bye(None, "idle for too long, closing connection");
                Flow::Close
            }
            Input::Shutdown => {
                self.bye(None, "server shutting down");
                Flow::Close
            }
        }
    }

    /// Sends a SASL challenge (already base64) and reads the client's response, decoded from
    /// base64.
    /// `Err(flow)`: the exchange ended (cancelled, malformed: answered; or the session ends).
    async fn challenge(&mut self, challenge: &str) -> io::Result<Result<Vec<u8>, Flow>> {
        let line = format!("{}\r\n", SieveString(challenge));
        self.wbuf.extend_from_slice(line.as_bytes());
        let parsed = match self.next_frame().await? {
            Input::Frame(bytes) => command::parse_response(&bytes),
            Input::Refused(e) => Err(e),
            other => return Ok(Err(self.not_a_frame(other))),
        };
        let response = match parsed {
            Ok(r) => r,
            Err(e) => {
                self.fail(None, &format!("bad SASL response: {e}"));
                return Ok(Err(Flow::Continue));
            }
        };
        match sasl::decode_response(response.as_bytes()) {
            Ok(r) => Ok(Ok(r)),
            Err(SaslError::Cancelled) => {
                self.no(None, "authentication cancelled");
                Ok(Err(Flow::Continue))
            }
            Err(e) => {
                self.fail(None, &e.to_string());
                Ok(Err(Flow::Continue))
            }
        }
    }

    /// AUTHENTICATE: PLAIN (initial response or one challenge) or LOGIN (two challenges).
    async fn authenticate(
        &mut self,
        mechanism: String,
        initial: Option<String>,
    ) -> io::Result<Flow> {
        if !self.login_allowed() {
            self.fail(
                Some(Code::EncryptNeeded),
                "plaintext authentication is disabled: use STARTTLS first",
            );
            return Ok(Flow::Continue);
        }
        if mechanism != "PLAIN" && mechanism != "LOGIN" {
            self.fail(
                None,
                "unsupported SASL mechanism (PLAIN and LOGIN are offered)",
            );
            return Ok(Flow::Continue);
        }
        if self.server.limiter.ip_blocked(self.ctx.peer.ip()) {
            return Ok(self.address_blocked());
        }
        let initial = match initial.map(|ir| sasl::decode_response(ir.as_bytes())) {
            None => None,
            Some(Ok(ir)) => Some(ir),
            Some(Err(SaslError::Cancelled)) => {
                self.no(None, "authentication cancelled");
                return Ok(Flow::Continue);
            }
            Some(Err(e)) => {
                self.fail(None, &e.to_string());
                return Ok(Flow::Continue);
            }
        };
        let credentials = if mechanism == "PLAIN" {
            let msg = match initial {
                Some(ir) => ir,
                None => match self.challenge("").await? {
                    Ok(r) => r,
                    Err(flow) => return Ok(flow),
                },
            };
            sasl::decode_plain(&msg)
        } else {
            let user = match initial {
                Some(ir) => ir,
                None => match self.challenge(sasl::LOGIN_USERNAME).await? {
                    Ok(r) => r,
                    Err(flow) => return Ok(flow),
                },
            };
            let password = match self.challenge(sasl::LOGIN_PASSWORD).await? {
                Ok(r) => r,
                Err(flow) => return Ok(flow),
            };
            sasl::decode_text(&user).and_then(|u| Ok((u, sasl::decode_text(&password)?)))
        };
        match credentials {
            Ok((user, password)) => self.login(user, password).await,
            Err(e) => {
                self.fail(None, &e.to_string());
                Ok(Flow::Continue)
            }
        }
    }

    /// `BYE` for an address over its failure limit.
    fn address_blocked(&mut self) -> Flow {
        tracing::info!("login from an address over its failure limit");
        self.bye(
            Some(Code::TryLater),
            "too many failed logins from your address, try again later",
        );
        Flow::Close
    }

    /// Checks the credentials with the brute-force defence.
    async fn login(&mut self, user: String, password: String) -> io::Result<Flow> {
        let ip = self.ctx.peer.ip();
        let limiter = &self.server.limiter;
        let max_failures = self.server.cfg.max_auth_failures;
        if limiter.ip_blocked(ip) {
            return Ok(self.address_blocked());
        }
        if limiter.user_blocked(&user) {
            self.auth_failures += 1;
            tracing::info!(user = ?user, "login for a user over its failure limit");
            self.no(
                Some(Code::TryLater),
                "too many failed logins for this user, try again later",
            );
            return Ok(self.after_failure(max_failures));
        }
        match self.server.cluster.authenticate(&user, &password).await {
            Ok(canonical) => {
                tracing::info!(user = %canonical, tls = self.tls, "ManageSieve login");
                self.user = Some(canonical);
                self.ok("Logged in");
                Ok(Flow::Continue)
            }
            Err(LoginError::Invalid) => {
                self.auth_failures += 1;
                let delay = limiter.record_failure(ip, &user);
                crate::metrics::login_failed("managesieve");
                tracing::info!(user = ?user, failures = self.auth_failures, "ManageSieve login failed");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = self.ctx.shutdown.triggered() => {
                        self.bye(None, "server shutting down");
                        return Ok(Flow::Close);
                    }
                }
                if self.auth_failures >= max_failures || limiter.ip_blocked(ip) {
                    self.bye(
                        None,
                        "authentication failed; too many failures, closing connection",
                    );
                    return Ok(Flow::Close);
                }
                self.no(None, "authentication failed");
                Ok(Flow::Continue)
            }
            Err(LoginError::Disabled) => {
                self.auth_failures += 1;
                tracing::info!(user = ?user, "ManageSieve login to a disabled account");
                self.no(None, "account disabled");
                Ok(self.after_failure(max_failures))
            }
            Err(LoginError::Temporary(why)) => {
                tracing::warn!(user = ?user, %why, "credentials could not be checked");
                self.no(
                    Some(Code::TryLater),
                    "cannot check credentials now, try again later",
                );
                Ok(Flow::Continue)
            }
        }
    }

    fn after_failure(&mut self, max_failures: u32) -> Flow {
        if self.auth_failures >= max_failures {
            self.bye(None, "too many failed logins, closing connection");
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    /// Reads the user's scripts at a linearizable point (after every write that finished).
    async fn read<T>(
        &self,
        user: &str,
        f: impl FnOnce(Option<&SieveScripts>) -> T,
    ) -> Result<T, Refusal> {
        self.server
            .cluster
            .linearizable()
            .await
            .map_err(|e| unavailable(&e))?;
        let dir = self.server.cluster.read_directory();
        Ok(f(dir.sieve(user)))
    }

    /// Writes one directory command.
    async fn write(&self, cmd: DirCommand) -> Result<(), Refusal> {
        match self.server.cluster.write(cmd).await {
            Ok(_) => Ok(()),
            Err(ClusterError::Refused(why)) => Err((None, why)),
            Err(e) => Err(unavailable(&e)),
        }
    }

    /// Compiles a script; the error names its line and column.
    fn compile(&self, script: &str) -> Result<(), Refusal> {
        if script.len() > MAX_SIEVE_SCRIPT_BYTES {
            return Err((
                Some(Code::MaxSize),
                format!("script over the limit of {MAX_SIEVE_SCRIPT_BYTES} octets"),
            ));
        }
        crate::sieve::compile(script, &self.server.sieve_limits)
            .map(drop)
            .map_err(|e| (None, e.to_string()))
    }

    /// The commands of the authenticated state.
    async fn script_command(&mut self, user: &str, cmd: Command) -> Result<(), Refusal> {
        match cmd {
            Command::HaveSpace { name, size } => {
                valid_name(&name)?;
                if size > MAX_SIEVE_SCRIPT_BYTES as u64 {
                    return Err((
                        Some(Code::MaxSize),
                        format!("scripts are limited to {MAX_SIEVE_SCRIPT_BYTES} octets"),
                    ));
                }
                self.read(user, |s| room_for(s, &name)).await??;
                self.ok("");
            }
            Command::CheckScript(script) => {
                self.compile(&script)?;
                self.ok("");
            }
            Command::PutScript { name, script } => {
                valid_name(&name)?;
                self.compile(&script)?;
                self.read(user, |s| room_for(s, &name)).await??;
                self.write(DirCommand::PutSieveScript {
                    user: user.to_string(),
                    name: name.clone(),
                    source: script,
                    activate: false,
                })
                .await?;
                tracing::info!(user = %user, script = %name, "Sieve script stored");
                self.ok("");
            }
            Command::ListScripts => {
                let list = self
                    .read(user, |s| {
                        s.map(|s| {
                            s.scripts
                                .keys()
                                .map(|n| (n.clone(), s.active.as_deref() == Some(n)))
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default()
                    })
                    .await?;
                let mut out = String::new();
                for (name, active) in list {
                    out.push_str(&SieveString(&name).to_string());
                    out.push_str(if active { " ACTIVE\r\n" } else { "\r\n" });
                }
                self.wbuf.extend_from_slice(out.as_bytes());
                self.ok("");
            }
            Command::SetActive(name) => {
                if let Some(name) = &name {
                    self.read(user, |s| exists(s, name)).await??;
                }
                self.write(DirCommand::ActivateSieveScript {
                    user: user.to_string(),
                    name: name.clone(),
                })
                .await?;
                tracing::info!(user = %user, script = ?name, "Sieve script activated");
                self.ok("");
            }
            Command::GetScript(name) => {
                let source = self
                    .read(user, |s| {
                        exists(s, &name)?;
                        Ok(s.and_then(|s| s.scripts.get(&name).cloned())
                            .unwrap_or_default())
                    })
                    .await??;
                let head = format!("{{{}}}\r\n", source.len());
                self.wbuf.extend_from_slice(head.as_bytes());
                self.wbuf.extend_from_slice(source.as_bytes());
                self.wbuf.extend_from_slice(b"\r\n");
                self.ok("");
            }
            Command::DeleteScript(name) => {
                self.read(user, |s| {
                    exists(s, &name)?;
                    if s.and_then(|s| s.active.as_deref()) == Some(name.as_str()) {
                        return Err((
                            Some(Code::Active),
                            "this is the active script: deactivate it (SETACTIVE \"\") first"
                                .to_string(),
                        ));
                    }
                    Ok(())
                })
                .await??;
                self.write(DirCommand::DeleteSieveScript {
                    user: user.to_string(),
                    name: name.clone(),
                })
                .await?;
                tracing::info!(user = %user, script = %name, "Sieve script deleted");
                self.ok("");
            }
            Command::RenameScript { from, to } => {
                valid_name(&to)?;
                self.read(user, |s| {
                    exists(s, &from)?;
                    if from != to && s.is_some_and(|s| s.scripts.contains_key(&to)) {
                        return Err((
                            Some(Code::AlreadyExists),
                            "a script with the new name exists already".to_string(),
                        ));
                    }
                    Ok(())
                })
                .await??;
                self.write(DirCommand::RenameSieveScript {
                    user: user.to_string(),
                    from: from.clone(),
                    to: to.clone(),
                })
                .await?;
                tracing::info!(user = %user, from = %from, to = %to, "Sieve script renamed");
                self.ok("");
            }
            // The other commands are answered by `dispatch`.
            _ => self.ok(""),
        }
        Ok(())
    }
}

/// `NO (TRYLATER)` for a cluster that cannot answer now.
fn unavailable(e: &ClusterError) -> Refusal {
    tracing::warn!(error = %e, "ManageSieve: the directory is unavailable");
    (
        Some(Code::TryLater),
        "the directory is unavailable now, try again later".to_string(),
    )
}

fn valid_name(name: &str) -> Result<(), Refusal> {
    check_sieve_name(name).map_err(|why| (None, why))
}

fn exists(s: Option<&SieveScripts>, name: &str) -> Result<(), Refusal> {
    if s.is_some_and(|s| s.scripts.contains_key(name)) {
        Ok(())
    } else {
        Err((
            Some(Code::NonExistent),
            "there is no script by that name".to_string(),
        ))
    }
}

/// Whether `name` may be stored: replacing one is always fine, a new one needs a free slot.
fn room_for(s: Option<&SieveScripts>, name: &str) -> Result<(), Refusal> {
    let (has, count) = s.map_or((false, 0), |s| {
        (s.scripts.contains_key(name), s.scripts.len())
    });
    if !has && count >= MAX_SIEVE_SCRIPTS {
        return Err((
            Some(Code::MaxScripts),
            format!("you have {MAX_SIEVE_SCRIPTS} scripts, the most allowed: delete one first"),
        ));
    }
    Ok(())
}
