//! Logging in: USER/PASS (RFC 1939 §7), AUTH PLAIN with an initial response or a continuation
//! (RFC 5034), the brute-force defence, and entering the TRANSACTION state — the maildrop lock
//! and the snapshot of the INBOX.
//!
//! It never verifies a password itself (the [`Authenticator`] does) and never logs one; a user
//! name as the client typed it is logged escaped (`?user`), since AUTH PLAIN can carry any
//! character in it.
//!
//! Security note: before TLS every login command is refused unless plaintext login is allowed.
//! An address over its failure limit is disconnected before its credentials are checked, so
//! reconnecting buys no guesses; a user name over its limit is refused whatever the password.
//! The lock is taken only after a successful login, so `[IN-USE]` tells nothing to someone who
//! does not know the password.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::smtp::sasl::{self, SaslError};
use crate::store::{StoreError, SystemFlag, INBOX};

use super::io::{strip_line_end, Input, Io};
use super::session::{Flow, Maildrop, Msg, Session};
use super::{Authenticator, LoginError};

/// The refusal of a login command before TLS.
const TLS_FIRST: &str =
    "[SYS/PERM] plaintext login is disabled: use STLS (or the POP3S port) first";

impl<A: Authenticator> Session<'_, A> {
    /// USER: remembers the name for PASS. Always `+OK`, so it does not tell who exists.
    pub(crate) fn user<S>(&mut self, io: &mut Io<S>, name: String)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if !self.login_allowed() {
            self.user = None;
            self.fail(io, TLS_FIRST);
            return;
        }
        self.user = Some(name);
        io.ok("send PASS");
    }

    pub(crate) async fn pass<S>(&mut self, io: &mut Io<S>, password: String) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if !self.login_allowed() {
            self.fail(io, TLS_FIRST);
            return Ok(Flow::Continue);
        }
        let Some(user) = self.user.take() else {
            self.fail(io, "send USER first");
            return Ok(Flow::Continue);
        };
        self.login(io, user, password).await
    }

    /// AUTH: a bare AUTH lists the mechanisms; AUTH PLAIN takes its credentials from the
    /// initial response or from one continuation.
    pub(crate) async fn auth<S>(
        &mut self,
        io: &mut Io<S>,
        mechanism: Option<String>,
        initial: Option<String>,
    ) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        self.user = None;
        if !self.login_allowed() {
            self.fail(io, TLS_FIRST);
            return Ok(Flow::Continue);
        }
        let Some(mechanism) = mechanism else {
            io.ok("SASL mechanisms follow");
            io.queue(b"PLAIN\r\n.\r\n");
            return Ok(Flow::Continue);
        };
        if mechanism != "PLAIN" {
            self.fail(io, "unsupported SASL mechanism (PLAIN is offered)");
            return Ok(Flow::Continue);
        }
        if self.shared.limiter.ip_blocked(self.ctx.peer.ip()) {
            return Ok(self.address_blocked(io));
        }
        let response = match initial {
            Some(ir) => sasl::decode_response(ir.as_bytes()),
            None => {
                io.queue(b"+ \r\n");
                let hard = self.shared.cfg.max_unterminated_line;
                match io.read_line(hard, hard, &self.ctx.shutdown).await? {
                    Input::Line(line) => sasl::decode_response(strip_line_end(&line)),
                    // An overlong response ends the exchange (counted as an error); EOF,
                    // timeout and shutdown end the session.
                    other => return Ok(self.not_a_line(io, other)),
                }
            }
        };
        match response.and_then(|r| sasl::decode_plain(&r)) {
            Ok((user, password)) => self.login(io, user, password).await,
            Err(SaslError::Cancelled) => {
                io.err("authentication cancelled");
                Ok(Flow::Continue)
            }
            Err(e) => {
                self.fail(io, e);
                Ok(Flow::Continue)
            }
        }
    }

    /// `-ERR` and close for an address over its failure limit.
    fn address_blocked<S>(&self, io: &mut Io<S>) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        tracing::info!("login from an address over its failure limit");
        io.err("[SYS/TEMP] too many failed logins from your address, try again later");
        Flow::Close
    }

    /// Checks the credentials, with the brute-force defence, and enters TRANSACTION.
    async fn login<S>(&mut self, io: &mut Io<S>, user: String, password: String) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let ip = self.ctx.peer.ip();
        let limiter = &self.shared.limiter;
        let max_failures = self.shared.cfg.max_auth_failures;
        if limiter.ip_blocked(ip) {
            return Ok(self.address_blocked(io));
        }
        if limiter.user_blocked(&user) {
            self.auth_failures += 1;
            tracing::info!(user = ?user, "login for a user over its failure limit");
            io.err("[SYS/TEMP] too many failed logins for this user, try again later");
            return Ok(if self.auth_failures >= max_failures {
                Flow::Close
            } else {
                Flow::Continue
            });
        }
        match self.shared.auth.authenticate(&user, &password).await {
            Ok(canonical) => Ok(self.enter_transaction(io, canonical).await),
            Err(LoginError::Invalid) => {
                self.auth_failures += 1;
                let delay = limiter.record_failure(ip, &user);
                crate::metrics::login_failed("pop3");
                tracing::info!(user = ?user, failures = self.auth_failures, "POP3 login failed");
                // The growing delay is what makes guessing slow; the client cannot pipeline
                // past it. Shutdown cuts it short.
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = self.ctx.shutdown.triggered() => {
                        io.err("server shutting down");
                        return Ok(Flow::Close);
                    }
                }
                if self.auth_failures >= max_failures || limiter.ip_blocked(ip) {
                    io.err("[AUTH] authentication failed; too many failures, closing connection");
                    return Ok(Flow::Close);
                }
                io.err("[AUTH] authentication failed");
                Ok(Flow::Continue)
            }
            Err(LoginError::Disabled) => {
                self.auth_failures += 1;
                tracing::info!(user = ?user, "POP3 login to a disabled account");
                io.err("[AUTH] account disabled");
                Ok(Flow::Continue)
            }
            Err(LoginError::Temporary(why)) => {
                tracing::warn!(user = ?user, %why, "credentials could not be checked");
                io.err("[SYS/TEMP] cannot check credentials now, try again later");
                Ok(Flow::Continue)
            }
        }
    }

    /// Locks the maildrop and takes its snapshot; stays in AUTHORIZATION when either fails.
    async fn enter_transaction<S>(&mut self, io: &mut Io<S>, user: String) -> Flow
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(lock) = self.shared.locks.try_lock(&user) else {
            tracing::info!(user = %user, "maildrop in use");
            io.err("[IN-USE] maildrop is locked by another POP3 session");
            return Flow::Continue;
        };
        let handle = match self.shared.store.open_mailbox(&user, INBOX).await {
            Ok(h) => Some(h),
            Err(StoreError::MailboxNotFound(_)) => None,
            Err(e) => {
                tracing::warn!(user = %user, error = %e, "cannot open the maildrop");
                io.err("[SYS/TEMP] maildrop unavailable, try again later");
                return Flow::Continue;
            }
        };
        let (uidvalidity, messages) = match &handle {
            Some(h) => match h.snapshot() {
                Ok(snap) => (
                    snap.uidvalidity,
                    snap.messages
                        .iter()
                        .map(|m| Msg {
                            uid: m.uid,
                            size: m.size,
                            deleted: false,
                            seen: m.flags.contains(SystemFlag::Seen),
                            retrieved: false,
                        })
                        .collect(),
                ),
                Err(e) => {
                    tracing::warn!(user = %user, error = %e, "cannot read the maildrop");
                    io.err("[SYS/TEMP] maildrop unavailable, try again later");
                    return Flow::Continue;
                }
            },
            None => (0, Vec::new()),
        };
        tracing::info!(user = %user, tls = self.tls, messages = messages.len(), "POP3 login");
        let md = Maildrop {
            user,
            handle,
            uidvalidity,
            messages,
            _lock: lock,
        };
        let (n, octets) = (
            md.messages.len(),
            md.messages.iter().map(|m| m.size).sum::<u64>(),
        );
        self.maildrop = Some(md);
        self.user = None;
        io.ok(format!("maildrop has {n} messages ({octets} octets)"));
        Flow::Continue
    }
}
