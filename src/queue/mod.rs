//! The mail queue on the node's local disk, its scheduler and its delivery agents.
//!
//! Job: take a message and its envelope from the SMTP server ([`Queue::enqueue`]), make both
//! durable before the caller may answer `250` (invariant 1), and deliver every recipient —
//! locally over LMTP to the active mailstore of the user's group, remotely over SMTP to the
//! domain's MX — with retries, bounded concurrency, delivery status notifications and operator
//! control (`list`, `show`, `flush`, `delete`, `hold`, `release`).
//!
//! Shape (after Postfix's qmgr): the [`spool`](self) holds every message on disk; an in-memory
//! index keeps only ids and due times; a bounded *active set* (`active_limit`) of messages is
//! loaded and worked on, each destination with its own concurrency limit. A recipient's state
//! is rewritten durably right after the transaction that decided it, so a restart re-delivers
//! only what was not acknowledged — except the unavoidable window between the server's final
//! reply and that rewrite (milliseconds: one temp-file write, fsync, rename, directory fsync),
//! where a crash means the recipient is delivered again: at-least-once, never lost; a
//! destination's connection slot is held until that write is done, so at most
//! `destination_concurrency` transactions per destination are ever in the window. DSNs are
//! likewise at-least-once (enqueued before the recipient is marked notified).
//!
//! Must never: acknowledge before fsync; bounce a bounce (null sender `<>` gets no DSN);
//! bounce local mail because the mailstore is failing over (LMTP temporary failures retry on
//! `lmtp_retry_ms` until the lifetime); write the message store (only LMTP does, invariant 5).
//!
//! Security note: everything in an envelope came from the network and is validated before it
//! is spooled ([`Envelope::validate`]); file names are queue ids, never message data; the hop
//! limit stops mail loops; remote replies are parsed with bounded, non-panicking parsers.
//!
//! Code map: `config` ([`QueueConfig`]), `envelope` ([`Envelope`], [`QueueId`]), `spool`
//! (durable files), `index` (ids and due times), `scheduler` (active set, retries), `notify`
//! (expiry and DSN decisions), `ops` (operator API),
//! `dsn` (RFC 3464 reports), `schedule` (backoff arithmetic), `transport` ([`Router`],
//! [`Transport`]), `client` + `wire` (SMTP/LMTP client), [`LmtpTransport`], [`SmtpTransport`]
//! and `mx` (MX lookup).

mod acceptor;
mod client;
mod config;
mod dsn;
mod envelope;
mod group_sync;
mod index;
mod lmtp;
mod mx;
mod notify;
mod ops;
mod schedule;
mod scheduler;
mod smtp;
mod spool;
mod transport;
mod wire;

pub use acceptor::{accept_error, envelope_from_smtp};
pub use config::{InvalidSetting, QueueConfig, TlsPolicy};
pub use envelope::{
    BodyType, ClientInfo, Envelope, EnvelopeError, Notify, QueueId, RcptState, Recipient, Ret,
};
pub use lmtp::{LmtpResolver, LmtpTransport};
pub use ops::{MessageState, QueueDetail, QueueEntry, QueuePage, QueueStats};
pub use smtp::SmtpTransport;
pub use transport::{
    BoxFuture, Delivery, DeliveryOutcome, Destination, Dispatch, RcptResult, RcptStatus, Router,
    Transport,
};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use scheduler::Inner;

/// Everything the queue can refuse or fail at. [`QueueError::smtp_reply`] gives the SMTP answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The queue's disk (or the mailnode user's quota) is full. Nothing was written.
    #[error("the queue disk is full (writing {}): free space on the node's local disk; clients are told to retry", path.display())]
    NoSpace {
        /// The file being written.
        path: PathBuf,
    },
    /// Larger than `max_message_size`.
    #[error("message of {size} bytes exceeds the queue limit of {limit} bytes")]
    TooBig {
        /// The message size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// More `Received:` headers than `hop_limit`: a mail loop.
    #[error("mail loop: {hops} hops (Received headers), the limit is {limit}")]
    TooManyHops {
        /// Hops counted.
        hops: u32,
        /// The limit.
        limit: u32,
    },
    /// The envelope cannot be queued.
    #[error("invalid envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// No such message.
    #[error("no message {0} in the queue (see `mailctl queue list`)")]
    NotFound(QueueId),
    /// The queue is stopping and accepts nothing more.
    #[error("the queue is shutting down")]
    ShuttingDown,
    /// A disk error other than a full disk.
    #[error("queue I/O error on {}: {source} — check the node's local disk", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("queue configuration: `{key}`: {reason}")]
    Config {
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// A delivery agent could not be set up (DNS configuration, TLS trust anchors).
    #[error("{0}")]
    Transport(String),
}

impl QueueError {
    /// The SMTP reply for an `enqueue` failure: code, enhanced status, text.
    pub fn smtp_reply(&self) -> (u16, &'static str, &'static str) {
        match self {
            QueueError::NoSpace { .. } => (452, "4.3.1", "Insufficient system storage"),
            QueueError::TooBig { .. } => (552, "5.3.4", "Message too big for system"),
            QueueError::TooManyHops { .. } => {
                (554, "5.4.6", "Too many hops: routing loop detected")
            }
            QueueError::Envelope(_) => (550, "5.1.3", "Bad envelope address or parameter"),
            QueueError::ShuttingDown => (421, "4.3.2", "System shutting down, try again later"),
            _ => (451, "4.3.0", "Local error in processing, try again later"),
        }
    }
}

/// The running queue: a cheap, cloneable handle.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

impl Queue {
    /// Opens the spool at `<data_dir>/queue`, reloads every queued message (discarding
    /// unfinished temp files), and starts the scheduler on the current tokio runtime.
    pub async fn start(
        config: QueueConfig,
        data_dir: &Path,
        router: Arc<dyn Router>,
        transport: Arc<dyn Transport>,
    ) -> Result<Queue, QueueError> {
        config.validate().map_err(|e| QueueError::Config {
            key: e.key,
            reason: e.reason,
        })?;
        let inner = Inner::open(config, data_dir.join("queue"), router, transport).await?;
        scheduler::spawn(inner.clone());
        Ok(Queue { inner })
    }

    /// The standard delivery agents: LMTP through `lmtp` for local groups, SMTP by MX for the
    /// rest.
    pub fn default_transport(
        config: &QueueConfig,
        lmtp: LmtpResolver,
        origin: &str,
    ) -> Result<Arc<dyn Transport>, QueueError> {
        Ok(Arc::new(Dispatch {
            lmtp: Arc::new(LmtpTransport::new(config, lmtp, origin)),
            smtp: Arc::new(SmtpTransport::new(config)?),
        }))
    }

    /// Queues a message. Returns only after the message and envelope are on disk and fsynced,
    /// so the caller may answer `250 2.0.0 Ok: queued as <id>`. The queue sets `received_ms`,
    /// `size`, the hop count (the larger of the given one and the `Received:` headers) and the
    /// recipients' delivery state; everything else comes from the caller.
    pub async fn enqueue(
        &self,
        envelope: Envelope,
        message: impl Into<Bytes>,
    ) -> Result<QueueId, QueueError> {
        let source = scheduler::MessageSource::Bytes(message.into());
        self.inner.enqueue(envelope, source).await
    }

    /// Like [`Queue::enqueue`] for content that is already in a file (e.g. spooled by the SMTP
    /// session): `write` must create the file at the path it is given (a rename is ideal) and
    /// `len` is its size. The queue fsyncs it.
    pub async fn enqueue_with(
        &self,
        envelope: Envelope,
        len: u64,
        write: impl FnOnce(&Path) -> std::io::Result<()> + Send + 'static,
    ) -> Result<QueueId, QueueError> {
        let source = scheduler::MessageSource::Writer {
            len,
            write: Box::new(write),
        };
        self.inner.enqueue(envelope, source).await
    }

    /// The configuration in force.
    pub fn config(&self) -> &QueueConfig {
        &self.inner.cfg
    }

    /// Stops scheduling, gives deliveries in progress up to `grace` to finish, then aborts the
    /// rest (their recipients are retried after the next start; nothing acknowledged is lost).
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutdown(grace).await
    }
}
