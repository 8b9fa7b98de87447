//! ManageSieve (RFC 5804) on the mailstore: how users and their mail clients upload, list,
//! activate and remove their Sieve scripts (port 4190, STARTTLS, SASL PLAIN and LOGIN).
//!
//! Its job is the protocol: [`ManageSieveServer`] is a [`Protocol`] for
//! [`crate::net::serve`]. Scripts live in the replicated directory (`s/<user>` records), not
//! on the volume: every command that changes one is a directory `Command` written through
//! [`Cluster::write`] (linearizable), and every read first waits for a linearizable read index
//! ([`Cluster::linearizable`]), so a session sees its own writes and everyone else's that
//! finished before. A script is compiled by [`crate::sieve::compile`] before it is proposed:
//! one that does not compile is refused with its line and column and never stored.
//!
//! Never: writes the store, keeps scripts of its own, or logs a password or a script.
//!
//! Security note: before TLS, AUTHENTICATE is refused with `NO (ENCRYPT-NEEDED)` and the SASL
//! capability is empty unless `[mailstore] allow_plaintext_login` is set (dev only), as for
//! IMAP and POP3. Logins go through [`crate::auth`] (via the POP3 server's
//! [`crate::pop3::Authenticator`] for [`Cluster`]) and the shared failed-login limiter
//! ([`crate::pop3::LoginLimiter`]: growing delays, per address and per user name). Every
//! limit is in [`ManageSieveConfig`] or the directory's script limits: lines, literals (at most
//! `MAX_SIEVE_SCRIPT_BYTES`), client errors, idle time. STARTTLS discards pipelined plaintext.
//!
//! Code map: `command` (sans-I/O framer and parser, and the string encoder for replies),
//! `session` (state machine, login, script commands), `config`; `fuzz` runs the framer and the
//! parser under the seeded mutation fuzzer of `imap::fuzz`.

pub mod command;
mod config;
#[cfg(test)]
mod fuzz;
mod session;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cluster::Cluster;
use crate::directory::MAX_SIEVE_SCRIPT_BYTES;
use crate::net::{Conn, Protocol, RejectReason, SessionCtx};
use crate::pop3::LoginLimiter;

pub use config::ManageSieveConfig;

/// The ManageSieve server: a [`Protocol`] for [`crate::net::serve`].
pub struct ManageSieveServer {
    cfg: ManageSieveConfig,
    cluster: Cluster,
    limiter: LoginLimiter,
    /// Whether AUTHENTICATE is allowed before TLS.
    plaintext_login: bool,
    /// What scripts are compiled against: the directory's size limit, the interpreter's
    /// other limits.
    sieve_limits: crate::sieve::Limits,
}

impl ManageSieveServer {
    /// A server logging users in and keeping their scripts through `cluster`.
    pub fn new(cfg: ManageSieveConfig, cluster: Cluster, plaintext_login: bool) -> Self {
        ManageSieveServer {
            limiter: LoginLimiter::new(&cfg.login_limits()),
            cfg,
            cluster,
            plaintext_login,
            sieve_limits: crate::sieve::Limits {
                max_script_size: MAX_SIEVE_SCRIPT_BYTES,
                ..crate::sieve::Limits::default()
            },
        }
    }

    /// Runs one session over any stream.
    pub async fn serve_conn<S>(&self, conn: Conn<S>, ctx: SessionCtx)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        session::run(self, conn, ctx).await;
    }
}

impl Protocol for ManageSieveServer {
    async fn serve(&self, conn: Conn<TcpStream>, ctx: SessionCtx) {
        self.serve_conn(conn, ctx).await;
    }

    async fn reject(&self, mut conn: Conn<TcpStream>, reason: RejectReason) {
        let line = format!("BYE (TRYLATER) \"{reason}, try again later\"\r\n");
        let _ = conn.write_all(line.as_bytes()).await;
        let _ = conn.flush().await;
    }
}
