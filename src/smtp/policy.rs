//! What the SMTP/LMTP sessions ask of the rest of the node, as traits: who may send and
//! receive ([`MailPolicy`]), who is who ([`MailPolicy::authenticate`]), and where an accepted
//! message goes — the queue for SMTP ([`Acceptor`]), the mailstore for LMTP
//! ([`LmtpDelivery`]).
//!
//! The sessions never write the store or the queue themselves (invariant 5): the only way a
//! message leaves a session is through one of these traits, and the session sends `250` only
//! when that call returned success — so the implementation must return only once the message
//! is durable (fsync of the file and its directory; invariant 1).
//!
//! Security note: implementations receive validated addresses but must treat the message
//! content as hostile; a verdict is final for the command it answers.

use std::fmt;
use std::future::Future;

use crate::directory::Address;

use super::envelope::Envelope;
use super::message::Message;
use super::Mode;

/// A decision on an envelope address. [`super::reply`] maps each to its reply code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Accept,
    /// A local domain without this user (`550 5.1.1`).
    UnknownUser,
    /// The user exists but is disabled (`550 5.2.1`).
    Disabled,
    /// Not a local domain and the client may not relay (`554 5.7.1`).
    RelayDenied,
    /// The sender (envelope or `From:`) is not the authenticated user's (`553 5.7.1`).
    NotOwned,
    /// Authenticate first (`530 5.7.0`).
    AuthRequired,
    /// Aliases nest too deep: a routing loop (`550 5.4.6`).
    Loop,
    /// The decision cannot be made now (`451 4.3.0`); the text is for logs.
    TempFail(String),
}

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// Wrong user or password, or a disabled account (`535 5.7.8`; counts toward the limits).
    #[error("invalid credentials")]
    Invalid,
    /// The directory cannot answer now (`454 4.7.0`); the text is for logs.
    #[error("temporary authentication failure: {0}")]
    Temporary(String),
}

/// Who may send and receive, and login. One value serves every session of a listener.
pub trait MailPolicy: Send + Sync + 'static {
    /// Judges `MAIL FROM` (`None` is the null sender `<>`); also called for each address of
    /// the `From:` header on submission. `auth_user` is the canonical address of the
    /// authenticated user.
    fn check_sender(
        &self,
        mode: Mode,
        auth_user: Option<&str>,
        sender: Option<&Address>,
    ) -> Verdict;

    /// Judges one `RCPT TO`.
    fn check_rcpt(&self, mode: Mode, auth_user: Option<&str>, rcpt: &Address) -> Verdict;

    /// Verifies a password; on success returns the user's canonical address. Should take
    /// about as long for unknown users as for known ones.
    fn authenticate(
        &self,
        user: &str,
        password: &str,
    ) -> impl Future<Output = Result<String, AuthFailure>> + Send;
}

/// The queue's id for an accepted message, quoted in the `250` reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueId(pub String);

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why the queue did not take a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcceptError {
    /// The disk is full or over quota (`452 4.3.1`); nothing was kept.
    #[error("insufficient storage")]
    NoSpace,
    /// Try again later (`451 4.3.0`).
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// Never try again (`554 5.3.0`).
    #[error("refused: {0}")]
    Permanent(String),
}

/// Takes accepted SMTP mail: implemented by the queue.
pub trait Acceptor: Send + Sync + 'static {
    /// Makes the message and its envelope durable and returns the queue id. Must return `Ok`
    /// only once both are on disk (file and directory fsynced): the client gets `250` then.
    /// The message may be moved with [`Message::persist`].
    fn accept(
        &self,
        envelope: Envelope,
        message: Message,
    ) -> impl Future<Output = Result<QueueId, AcceptError>> + Send;
}

/// Why one LMTP recipient's delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Over quota (`452 4.2.2`): the queue retries.
    #[error("mailbox full")]
    QuotaExceeded,
    /// The volume is full (`452 4.3.1`).
    #[error("insufficient storage")]
    NoSpace,
    /// No such mailbox (`550 5.1.1`).
    #[error("no such mailbox")]
    UnknownUser,
    /// Try again later (`451 4.3.0`), e.g. the mailstore is failing over.
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// Never try again (`554 5.3.0`).
    #[error("delivery refused: {0}")]
    Permanent(String),
    /// The recipient's Sieve script refused the message (`reject`/`ereject`, RFC 5429):
    /// `550 5.7.1` with the script's reason.
    #[error("rejected: {0}")]
    Rejected(String),
}

/// Delivers LMTP mail into mailboxes: implemented over the message store.
pub trait LmtpDelivery: Send + Sync + 'static {
    /// Delivers `message` to every recipient of `envelope` and returns one result per
    /// recipient, in `envelope.recipients` order (a missing result counts as a temporary
    /// failure). An `Ok` must mean durable in that mailbox. One call for all recipients lets
    /// the store write the content once.
    fn deliver(
        &self,
        envelope: &Envelope,
        message: &Message,
    ) -> impl Future<Output = Vec<Result<(), DeliveryError>>> + Send;
}
