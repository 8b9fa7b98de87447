//! The envelope of one accepted message: who sent it, to whom, with which ESMTP options, and
//! where it came from. This is what the session hands to the queue (SMTP) or the store
//! (LMTP) together with the message, and what the queue persists next to it.
//!
//! Plain data, no I/O. Addresses are already validated ([`Address`]) and every recipient was
//! accepted by the policy; nothing here is client text that still needs checking, except the
//! HELO name (printable ASCII, checked by the parser) and the DSN strings (decoded xtext).

use std::net::SocketAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::directory::Address;

use super::Mode;

/// `BODY=` of `MAIL FROM` (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BodyType {
    /// 7-bit ASCII only (the default).
    #[default]
    SevenBit,
    /// 8-bit MIME content.
    EightBitMime,
}

/// `RET=` of `MAIL FROM` (RFC 3461): how much of the message a DSN returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ret {
    /// The whole message.
    Full,
    /// Headers only.
    Headers,
}

/// `NOTIFY=` of `RCPT TO` (RFC 3461). All false means `NEVER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NotifyOn {
    /// A DSN on successful delivery.
    pub success: bool,
    /// A DSN on failure.
    pub failure: bool,
    /// A DSN when delivery is delayed.
    pub delay: bool,
}

/// `ORCPT=` of `RCPT TO` (RFC 3461): the recipient as the original sender wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orcpt {
    /// The address type, lowercase (`rfc822`, `utf-8`).
    pub addr_type: String,
    /// The address, xtext-decoded.
    pub address: String,
}

/// One accepted recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address, normalised.
    pub address: Address,
    /// DSN request; `None` means the default (failure and delay).
    pub notify: Option<NotifyOn>,
    /// The original recipient, for DSNs.
    pub orcpt: Option<Orcpt>,
}

/// Everything known about a message besides its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The listener kind that received it.
    pub mode: Mode,
    /// The reverse path; `None` for the null sender `<>` (a bounce: never bounce it).
    pub sender: Option<Address>,
    /// Accepted recipients, in RCPT order (LMTP replies follow this order).
    pub recipients: Vec<Recipient>,
    /// `BODY=`.
    pub body: BodyType,
    /// `SMTPUTF8` was given.
    pub smtputf8: bool,
    /// `RET=`.
    pub ret: Option<Ret>,
    /// `ENVID=`, decoded.
    pub envid: Option<String>,
    /// `XDELIVERY=` (LMTP): the client's id for this delivery, so a retry is stored once.
    #[serde(default)]
    pub delivery: Option<String>,
    /// The authenticated user (submission), canonical address.
    pub auth_user: Option<String>,
    /// The client's HELO/EHLO/LHLO name.
    pub helo: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// The session that received it (also in the `Received:` header).
    pub session_id: u64,
    /// Negotiated TLS version and cipher suite, when encrypted.
    pub tls: Option<String>,
    /// When the transfer of the content began.
    pub received_at: SystemTime,
}
