//! The delivery interface between the scheduler and the agents that speak to other servers:
//! [`Router`] says where a recipient's mail goes, [`Transport`] performs one transaction.
//!
//! The scheduler knows nothing about sockets; an agent knows nothing about the spool's state.
//! Tests substitute either side. Implementations: [`LmtpTransport`](super::LmtpTransport),
//! [`SmtpTransport`](super::SmtpTransport), and [`Dispatch`] which picks one per destination.
//!
//! Security note: a transport must report what the server said, per recipient, and never claim
//! delivery it did not see acknowledged — the queue deletes mail on the strength of it.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::envelope::{BodyType, QueueId, Recipient, Ret};

/// A boxed, sendable future (keeps [`Transport`] object-safe without an extra crate).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where mail for a recipient goes; also the key of the per-destination concurrency limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "via", content = "to")]
pub enum Destination {
    /// Local delivery over LMTP to the active mailstore of this `mail_host` group.
    Lmtp(String),
    /// Relay over SMTP to this domain's MX.
    Smtp(String),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Lmtp(g) => write!(f, "lmtp:{g}"),
            Destination::Smtp(d) => write!(f, "smtp:{d}"),
        }
    }
}

/// Decides each recipient's destination at delivery time (so a user moved to another mailstore
/// group, or a domain added to the directory, is routed correctly on the next retry).
///
/// Recipients reach the queue already expanded (aliases and lists resolved by the caller, the
/// original kept as ORCPT): the router only tells local mailboxes from remote addresses.
pub trait Router: Send + Sync {
    /// The destination for `recipient`.
    fn route(&self, recipient: &str) -> Destination;
}

impl<F> Router for F
where
    F: Fn(&str) -> Destination + Send + Sync,
{
    fn route(&self, recipient: &str) -> Destination {
        self(recipient)
    }
}

/// One transaction's worth of work: a message and the recipients that share a destination.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The queue id (for logs and `Received`-style tracing on the remote).
    pub id: QueueId,
    /// Where to.
    pub destination: Destination,
    /// Reverse path; empty for `<>`.
    pub sender: String,
    /// The recipients, in the order results are expected.
    pub recipients: Vec<Recipient>,
    /// `ENVID=`.
    pub envid: Option<String>,
    /// `RET=`.
    pub ret: Option<Ret>,
    /// `BODY=`.
    pub body: BodyType,
    /// `SMTPUTF8`.
    pub smtputf8: bool,
    /// Message size in bytes.
    pub size: u64,
    /// The spooled message file, streamed by the transport.
    pub message: PathBuf,
}

/// What happened to one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptStatus {
    /// Final delivery (LMTP accepted it into the mailbox).
    Delivered,
    /// Accepted by a remote MX; `dsn_passed` when the MX took our DSN parameters and will
    /// report success itself.
    Relayed {
        /// The remote advertised DSN and got NOTIFY/ORCPT.
        dsn_passed: bool,
    },
    /// Try again later.
    Temporary,
    /// Will never work: bounce.
    Permanent,
}

/// The result for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptResult {
    /// Outcome.
    pub status: RcptStatus,
    /// The server's reply (`250 2.1.5 ok`) or our own description of the failure.
    pub detail: String,
    /// The server that answered, if one did.
    pub remote: Option<String>,
}

/// The result of one [`Transport::deliver`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// One entry per recipient of the [`Delivery`], in order.
    pub results: Vec<RcptResult>,
    /// The destination could not be reached at all (no connection, greeting refused): the
    /// scheduler stops trying it for a while instead of connecting once per message.
    pub unreachable: bool,
    /// The transaction carried an idempotency key the server honours (our LMTP server's
    /// `XDELIVERY`): repeating it stores nothing twice.
    pub keyed: bool,
}

impl DeliveryOutcome {
    /// Every recipient gets the same result.
    pub fn all(
        n: usize,
        status: RcptStatus,
        detail: &str,
        remote: Option<&str>,
        unreachable: bool,
    ) -> Self {
        DeliveryOutcome {
            results: (0..n)
                .map(|_| RcptResult {
                    status,
                    detail: detail.to_string(),
                    remote: remote.map(str::to_string),
                })
                .collect(),
            unreachable,
            keyed: false,
        }
    }
}

/// Something that can carry a message to a destination.
pub trait Transport: Send + Sync {
    /// Performs the transaction. Never fails as a whole: problems become per-recipient results.
    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, DeliveryOutcome>;
}

/// Sends LMTP destinations to one transport and SMTP destinations to another.
pub struct Dispatch {
    /// For [`Destination::Lmtp`].
    pub lmtp: Arc<dyn Transport>,
    /// For [`Destination::Smtp`].
    pub smtp: Arc<dyn Transport>,
}

impl Transport for Dispatch {
    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, DeliveryOutcome> {
        match delivery.destination {
            Destination::Lmtp(_) => self.lmtp.deliver(delivery),
            Destination::Smtp(_) => self.smtp.deliver(delivery),
        }
    }
}
