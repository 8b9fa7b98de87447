//! POP3 (RFC 1939) on the message store, with CAPA (RFC 2449), UIDL, TOP, USER/PASS, AUTH
//! PLAIN (RFC 5034), STLS (RFC 2595) and implicit TLS (POP3S): how users of old clients and
//! fetchmail-style collectors download their INBOX.
//!
//! Its job is the protocol: [`Pop3Server`] is a [`Protocol`] for [`crate::net::serve`] and one
//! value serves both the STLS listener (110) and the POP3S one (995), so they share the
//! maildrop locks and the login limits. A login goes through an [`Authenticator`] (the
//! directory via [`crate::auth::authenticate`] in production, legacy-hash rehash included);
//! the maildrop is the user's INBOX, fixed at login from one store snapshot. The only store
//! writes happen at QUIT (the UPDATE state): `\Seen` on the messages RETR sent (as Cyrus and
//! Dovecot do; TOP does not count), then the expunge of the messages marked with DELE. A
//! session that ends any other way (EOF, idle timeout, shutdown, abort) changes nothing.
//! It never reads a whole message into memory: RETR and TOP stream the message file.
//!
//! Unique ids (UIDL) are `{uidvalidity:x}.{uid:x}` ([`unique_id`]): both come from the store's
//! index on the volume, so they survive sessions, restarts and failovers, and never depend on
//! anything held by this process.
//!
//! One POP3 session per maildrop at a time (RFC 1939 §8): a second successful login for the
//! same user gets `-ERR [IN-USE]` while the first session lives. The lock is in-process (the
//! mailstore is served by one node at a time) and released when the session ends, however it
//! ends.
//!
//! Security note: before TLS, USER, PASS and AUTH are refused with `-ERR [SYS/PERM]` and CAPA
//! omits USER and SASL unless `[mailstore] allow_plaintext_login` is set (dev only). Failed
//! logins are answered after a growing delay and limited per session, per address and per user
//! name ([`LoginLimiter`]), with `-ERR [AUTH]` (RFC 3206). Every limit is in [`Pop3Config`]:
//! command lines over 255 octets get `-ERR`, a line that does not end within
//! `max_unterminated_line` closes the session, as do `max_errors` client errors. STLS discards
//! pipelined plaintext. Passwords are never logged.
//!
//! Code map: `command` (sans-I/O parser), `transfer` (sans-I/O RETR/TOP encoder), `io`
//! (buffered lines and replies), `session` (state machine and transaction commands), `login`
//! (USER/PASS/AUTH and the maildrop lock), `limiter`, `config`; `fuzz` runs the parser and the
//! encoder under the seeded mutation fuzzer of `imap::fuzz`.

pub mod command;
mod config;
#[cfg(test)]
mod fuzz;
mod io;
mod limiter;
mod login;
mod session;
mod transfer;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::AuthError;
use crate::cluster::Cluster;
use crate::net::{Conn, Protocol, RejectReason, SessionCtx};
use crate::store::Store;

pub use config::Pop3Config;
pub use limiter::LoginLimiter;

use session::Shared;

/// Why a login failed, as the session needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password (`-ERR [AUTH]`, counted and slowed).
    #[error("invalid credentials")]
    Invalid,
    /// Right password, disabled account (`-ERR [AUTH]`).
    #[error("account disabled")]
    Disabled,
    /// The credentials could not be checked (`-ERR [SYS/TEMP]`).
    #[error("credentials could not be checked: {0}")]
    Temporary(String),
}

/// Checks a user name and password; returns the canonical user (the store's owner name).
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate(
        &self,
        user: &str,
        password: &str,
    ) -> impl Future<Output = Result<String, LoginError>> + Send;
}

/// Production: the replicated directory, with the transparent rehash of legacy hashes.
impl Authenticator for Cluster {
    async fn authenticate(&self, user: &str, password: &str) -> Result<String, LoginError> {
        match crate::auth::authenticate(self, user, password).await {
            Ok(login) => Ok(login.address),
            Err(AuthError::Failed) => Err(LoginError::Invalid),
            Err(AuthError::Disabled) => Err(LoginError::Disabled),
            Err(AuthError::BadHash(why)) => Err(LoginError::Temporary(why)),
        }
    }
}

/// The UIDL unique id of a message: stable as long as the store keeps the mailbox's
/// UIDVALIDITY, i.e. across sessions, restarts and failovers.
pub fn unique_id(uidvalidity: u32, uid: u32) -> String {
    format!("{uidvalidity:x}.{uid:x}")
}

/// Users with a POP3 session in the TRANSACTION state.
#[derive(Debug, Default)]
pub(crate) struct MaildropLocks {
    held: Mutex<HashSet<String>>,
}

/// A held maildrop lock; dropping it (also when the session is aborted) releases it.
#[derive(Debug)]
pub(crate) struct MaildropLock {
    locks: Arc<MaildropLocks>,
    user: String,
}

impl MaildropLocks {
    /// Takes `user`'s lock, unless another session holds it.
    pub(crate) fn try_lock(self: &Arc<Self>, user: &str) -> Option<MaildropLock> {
        let user = user.to_lowercase();
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.insert(user.clone()).then(|| MaildropLock {
            locks: Arc::clone(self),
            user,
        })
    }
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&self.user);
    }
}

/// The POP3 server: a [`Protocol`] for [`crate::net::serve`]. Serve the STLS and the POP3S
/// listener with the same `Arc<Pop3Server>` so they share maildrop locks and login limits.
pub struct Pop3Server<A> {
    shared: Shared<A>,
}

impl<A: Authenticator> Pop3Server<A> {
    /// A server logging in through `auth` and serving maildrops from `store`. Logins need TLS
    /// unless [`Pop3Server::allow_plaintext_login`] says otherwise.
    pub fn new(cfg: Pop3Config, auth: Arc<A>, store: Store) -> Self {
        Pop3Server {
            shared: Shared {
                limiter: LoginLimiter::new(&cfg),
                cfg,
                auth,
                store,
                plaintext_login: false,
                locks: Arc::new(MaildropLocks::default()),
            },
        }
    }

    /// Allows USER/PASS/AUTH before TLS (dev on loopback only).
    pub fn allow_plaintext_login(mut self, allow: bool) -> Self {
        self.shared.plaintext_login = allow;
        self
    }

    /// Runs one session over any stream (tests drive it over in-memory I/O).
    pub async fn serve_conn<S>(&self, conn: Conn<S>, ctx: SessionCtx)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        session::run(&self.shared, conn, ctx).await;
    }
}

impl<A: Authenticator> Protocol for Pop3Server<A> {
    async fn serve(&self, conn: Conn<TcpStream>, ctx: SessionCtx) {
        self.serve_conn(conn, ctx).await;
    }

    async fn reject(&self, mut conn: Conn<TcpStream>, reason: RejectReason) {
        let line = format!("-ERR [SYS/TEMP] {reason}, try again later\r\n");
        let _ = conn.write_all(line.as_bytes()).await;
        let _ = conn.flush().await;
    }
}

#[cfg(test)]
mod tests;
