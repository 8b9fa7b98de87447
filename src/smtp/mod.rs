//! SMTP (RFC 5321) for the MX and submission listeners, and LMTP (RFC 2033) for the
//! mailstore: the protocol side of receiving mail.
//!
//! Its job is to speak the protocol correctly and defensively and to hand each accepted
//! message to someone else: [`SmtpServer`] gives MX and submission mail to an [`Acceptor`]
//! (the queue); [`LmtpServer`] gives LMTP mail to an [`LmtpDelivery`] (the store). Who may
//! send and receive is a [`MailPolicy`] ([`DirectoryPolicy`] in production). This module must
//! never write the store or the queue itself (invariant 5), and sends `250` only when the
//! acceptor or delivery reported the message durable (invariant 1).
//!
//! With a filter ([`SmtpServer::with_filter`]) the session asks `antiube` at connect (limits,
//! pregreet), MAIL FROM (SPF), RCPT TO (DNSBL, reverse DNS, greylisting) and the end of DATA
//! (content); its refusals are answered in the transaction, its header fields prepended.
//!
//! Security note: every limit (line length, message size, recipients, errors, AUTH failures
//! per session and per address) is in [`SmtpConfig`] with a default and answers with its
//! enhanced status code; a bare CR or LF in DATA closes the session (no SMTP smuggling);
//! STARTTLS discards pipelined plaintext; AUTH is offered on submission only, after TLS.
//!
//! Code map: `command` and `params` (sans-I/O command parser), `data` (sans-I/O DATA decoder and content
//! checks), `header` (header scanning, `Received:`, dates), `sasl` (AUTH messages), `reply`
//! (replies and the error → code table), `io` (buffered lines, pipelining flushes),
//! `session` / `transfer` / `login` (the session), `policy` (the traits), `envelope`,
//! `message` (spool), `limiter` (AUTH brute force), `directory_policy`, `config`.
//!
//! Decisions where the RFCs leave room: a bare LF ends neither a command nor DATA; in a
//! command line it earns `500 5.5.2`, in DATA it closes the session after `500 5.5.2`
//! (we cannot know where such a client's message ends), in BDAT it fails the transaction.
//! Message lines over `max_line_length`, NUL octets and undeclared 8-bit data are refused
//! after the transfer with `554 5.6.0`. Enhanced status codes are on every reply except the
//! greeting, the EHLO/LHLO/HELO response and 334/354, as RFC 2034 requires.

pub mod command;
mod config;
pub mod data;
mod directory_policy;
mod envelope;
mod header;
mod io;
mod limiter;
mod login;
mod message;
mod params;
mod policy;
pub mod reply;
pub mod sasl;
mod session;
mod transfer;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::net::{Conn, Protocol, RejectReason, SessionCtx};

pub use config::SmtpConfig;
pub use directory_policy::{rcpt_verdict, sender_verdict, DirectoryPolicy};
pub use envelope::{BodyType, Envelope, NotifyOn, Orcpt, Recipient, Ret};
pub(crate) use header::rfc5322_date;
pub use limiter::AuthLimiter;
pub use message::{Message, MessageReader};
pub use policy::{
    AcceptError, Acceptor, AuthFailure, DeliveryError, LmtpDelivery, MailPolicy, QueueId, Verdict,
};

use session::Shared;
use transfer::{LmtpSink, QueueSink};

/// Which service a listener offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Port 25 (dev 2525): mail from the internet for our domains only.
    Mx,
    /// Ports 587/465 (dev 2587/2465): authenticated users sending anywhere.
    Submission,
    /// Port 24 (dev 2424): final delivery into the mailstore.
    Lmtp,
}

/// The MX or submission server: a [`Protocol`] for [`crate::net::serve`].
pub struct SmtpServer<P, A> {
    shared: Shared<P, QueueSink<A>>,
}

impl<P: MailPolicy, A: Acceptor> SmtpServer<P, A> {
    /// An MX server (no AUTH; only local recipients, as the policy decides).
    pub fn mx(cfg: SmtpConfig, policy: Arc<P>, acceptor: Arc<A>) -> Self {
        Self::new(Mode::Mx, cfg, policy, acceptor)
    }

    /// A submission server (AUTH required; offered after TLS). Use it on a STARTTLS listener
    /// (587) and on an implicit-TLS one (465), sharing one [`AuthLimiter`] between them with
    /// [`SmtpServer::with_auth_limiter`].
    pub fn submission(cfg: SmtpConfig, policy: Arc<P>, acceptor: Arc<A>) -> Self {
        Self::new(Mode::Submission, cfg, policy, acceptor)
    }

    fn new(mode: Mode, cfg: SmtpConfig, policy: Arc<P>, acceptor: Arc<A>) -> Self {
        SmtpServer {
            shared: Shared {
                limiter: Arc::new(AuthLimiter::new(&cfg)),
                cfg,
                mode,
                policy,
                sink: QueueSink(acceptor),
                filter: None,
            },
        }
    }

    /// Shares an AUTH failure counter with other listeners.
    pub fn with_auth_limiter(mut self, limiter: Arc<AuthLimiter>) -> Self {
        self.shared.limiter = limiter;
        self
    }

    /// Filters the sessions' mail through the node's anti-UBE filter.
    pub fn with_filter(mut self, filter: Arc<crate::antiube::filter::Filter>) -> Self {
        self.shared.filter = Some(filter);
        self
    }

    /// This server's AUTH failure counter.
    pub fn auth_limiter(&self) -> Arc<AuthLimiter> {
        self.shared.limiter.clone()
    }

    /// Runs one session over any stream (tests drive it over in-memory I/O).
    pub async fn serve_conn<S>(&self, conn: Conn<S>, ctx: SessionCtx)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        session::run(&self.shared, conn, ctx).await;
    }
}

impl<P: MailPolicy, A: Acceptor> Protocol for SmtpServer<P, A> {
    async fn serve(&self, conn: Conn<TcpStream>, ctx: SessionCtx) {
        self.serve_conn(conn, ctx).await;
    }

    async fn reject(&self, conn: Conn<TcpStream>, reason: RejectReason) {
        session::reject(&self.shared.cfg.hostname, conn, reason).await;
    }
}

/// The LMTP server of the mailstore: a [`Protocol`] for [`crate::net::serve`].
pub struct LmtpServer<P, D> {
    shared: Shared<P, LmtpSink<D>>,
}

impl<P: MailPolicy, D: LmtpDelivery> LmtpServer<P, D> {
    /// An LMTP server delivering through `delivery`; `policy` judges recipients
    /// ([`Mode::Lmtp`]).
    pub fn new(cfg: SmtpConfig, policy: Arc<P>, delivery: Arc<D>) -> Self {
        LmtpServer {
            shared: Shared {
                limiter: Arc::new(AuthLimiter::new(&cfg)),
                cfg,
                mode: Mode::Lmtp,
                policy,
                sink: LmtpSink(delivery),
                filter: None,
            },
        }
    }

    /// Runs one session over any stream.
    pub async fn serve_conn<S>(&self, conn: Conn<S>, ctx: SessionCtx)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        session::run(&self.shared, conn, ctx).await;
    }
}

impl<P: MailPolicy, D: LmtpDelivery> Protocol for LmtpServer<P, D> {
    async fn serve(&self, conn: Conn<TcpStream>, ctx: SessionCtx) {
        self.serve_conn(conn, ctx).await;
    }

    async fn reject(&self, conn: Conn<TcpStream>, reason: RejectReason) {
        session::reject(&self.shared.cfg.hostname, conn, reason).await;
    }
}
