//! Queue ids and envelopes: who a queued message is from, who it is for, and how far delivery
//! to each recipient has got.
//!
//! An [`Envelope`] is what the SMTP server hands to the queue next to the message bytes, and
//! also what the queue persists (as JSON, next to the message file) and rewrites after every
//! delivery attempt: per-recipient state, attempts, last error and next retry live here. This
//! module is data and validation only; it must never do I/O.
//!
//! Security note: addresses, ENVID and ORCPT come from the network and are later written into
//! SMTP/LMTP commands, DSNs and log lines, so [`Envelope::validate`] refuses anything holding
//! whitespace, control characters or angle brackets. A [`QueueId`] becomes a file name and is
//! therefore restricted to a fixed-length lowercase hex string.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

/// Longest address (RFC 5321 §4.5.3.1.3: a 256-octet path minus its angle brackets).
pub const MAX_ADDRESS_LEN: usize = 254;
/// Longest ENVID (RFC 3461 §4.4).
pub const MAX_ENVID_LEN: usize = 100;
/// Longest ORCPT value we keep.
pub const MAX_ORCPT_LEN: usize = 500;

const ID_LEN: usize = 20;

/// A queued message's id: 14 hex digits of the enqueue time in microseconds and 6 of a
/// process-wide counter, so ids sort by arrival and never collide within a process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QueueId(String);

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

impl QueueId {
    /// A fresh id for a message enqueued at `unix_micros`.
    pub(crate) fn generate(unix_micros: u64) -> QueueId {
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed) & 0xff_ffff;
        QueueId(format!(
            "{:014x}{:06x}",
            unix_micros & 0xff_ffff_ffff_ffff,
            seq
        ))
    }

    /// Parses an id typed by an operator or read from a file name.
    pub fn parse(text: &str) -> Option<QueueId> {
        let ok = text.len() == ID_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| QueueId(text.to_string()))
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the message was queued (µs since the epoch, from the id's first 14 digits).
    pub fn received_micros(&self) -> u64 {
        self.0
            .get(..14)
            .and_then(|t| u64::from_str_radix(t, 16).ok())
            .unwrap_or(0)
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for QueueId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        QueueId::parse(&s).ok_or_else(|| format!("invalid queue id {s:?}"))
    }
}

impl From<QueueId> for String {
    fn from(id: QueueId) -> String {
        id.0
    }
}

/// The message body's declared encoding (the SMTP `BODY=` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyType {
    /// Plain 7-bit text (no `BODY=` parameter).
    #[default]
    SevenBit,
    /// `BODY=8BITMIME` (RFC 6152).
    EightBitMime,
    /// `BODY=BINARYMIME` (RFC 3030).
    BinaryMime,
}

/// What a failure DSN returns of the original message (`RET=`, RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ret {
    /// The whole message.
    Full,
    /// The headers only.
    Hdrs,
}

/// When the sender wants a DSN for a recipient (`NOTIFY=`, RFC 3461 §4.1). All false is
/// `NOTIFY=NEVER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    /// `SUCCESS`.
    pub success: bool,
    /// `FAILURE`.
    pub failure: bool,
    /// `DELAY`.
    pub delay: bool,
}

impl Notify {
    /// `NOTIFY=NEVER`.
    pub const NEVER: Notify = Notify {
        success: false,
        failure: false,
        delay: false,
    };

    /// The parameter value, e.g. `SUCCESS,FAILURE` or `NEVER`.
    pub fn to_param(self) -> String {
        let mut parts = Vec::new();
        if self.success {
            parts.push("SUCCESS");
        }
        if self.failure {
            parts.push("FAILURE");
        }
        if self.delay {
            parts.push("DELAY");
        }
        if parts.is_empty() {
            "NEVER".to_string()
        } else {
            parts.join(",")
        }
    }
}

/// Where one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptState {
    /// Not delivered yet; retried at `next_attempt`.
    #[default]
    Pending,
    /// Accepted by the final LMTP server, or relayed to a remote MX.
    Delivered,
    /// Permanently refused, or still undeliverable when the message expired.
    Failed,
}

/// One envelope recipient and its delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address mail is delivered to (after alias expansion by the caller).
    pub address: String,
    /// `ORCPT=` as given (`rfc822;alice@example.org`, xtext-decoded): reported in DSNs.
    #[serde(default)]
    pub orcpt: Option<String>,
    /// `NOTIFY=`; `None` when absent (then failures and delays are reported).
    #[serde(default)]
    pub notify: Option<Notify>,
    /// Delivery state.
    #[serde(default)]
    pub state: RcptState,
    /// Delivery attempts so far (drives the backoff).
    #[serde(default)]
    pub attempts: u32,
    /// The last error or the final reply, e.g. `550 5.1.1 <x@y>: no such user`.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The host that gave `last_error` or accepted the recipient (`Remote-MTA` in DSNs).
    #[serde(default)]
    pub remote: Option<String>,
    /// Unix milliseconds of the last attempt.
    #[serde(default)]
    pub last_attempt_ms: Option<u64>,
    /// Unix milliseconds before which the recipient is not retried.
    #[serde(default)]
    pub next_attempt_ms: u64,
    /// True once the sender has been sent the DSN this recipient's final state calls for (or
    /// none is called for); a restart re-sends only those still false.
    #[serde(default)]
    pub notified: bool,
    /// Whether the remote accepted our DSN parameters, so it (not we) reports success.
    #[serde(default)]
    pub dsn_relayed: bool,
}

impl Recipient {
    /// A pending recipient without DSN parameters.
    pub fn new(address: impl Into<String>) -> Recipient {
        Recipient {
            address: address.into(),
            orcpt: None,
            notify: None,
            state: RcptState::Pending,
            attempts: 0,
            last_error: None,
            remote: None,
            last_attempt_ms: None,
            next_attempt_ms: 0,
            notified: false,
            dsn_relayed: false,
        }
    }

    /// The domain part (after the last `@`).
    pub fn domain(&self) -> &str {
        domain_of(&self.address)
    }

    /// Whether the sender asked to hear about a failure of this recipient.
    pub fn wants_failure(&self) -> bool {
        self.notify.is_none_or(|n| n.failure)
    }
    /// Whether the sender asked to hear about a delay.
    pub fn wants_delay(&self) -> bool {
        self.notify.is_none_or(|n| n.delay)
    }
    /// Whether the sender asked to hear about success.
    pub fn wants_success(&self) -> bool {
        self.notify.is_some_and(|n| n.success)
    }
}

/// Who handed the message over: for logs, `mailctl queue show` and loop diagnosis.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The client's IP address.
    #[serde(default)]
    pub addr: Option<IpAddr>,
    /// Its HELO/EHLO name.
    #[serde(default)]
    pub helo: String,
    /// The protocol as in a `Received:` header (`ESMTPS`, `ESMTPSA`, ...).
    #[serde(default)]
    pub protocol: String,
}

/// A queued message's envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The reverse path; empty for the null sender `<>` (bounces), which never gets a DSN.
    pub sender: String,
    /// Recipients, each with its own state.
    pub recipients: Vec<Recipient>,
    /// `ENVID=` (xtext-decoded).
    #[serde(default)]
    pub envid: Option<String>,
    /// `RET=`.
    #[serde(default)]
    pub ret: Option<Ret>,
    /// `BODY=`.
    #[serde(default)]
    pub body: BodyType,
    /// The `SMTPUTF8` parameter was given.
    #[serde(default)]
    pub smtputf8: bool,
    /// Unix milliseconds when the queue accepted the message (set by the queue).
    #[serde(default)]
    pub received_ms: u64,
    /// Hops seen so far; the queue raises it to the number of `Received:` headers.
    #[serde(default)]
    pub hops: u32,
    /// The authenticated submitter, if any.
    #[serde(default)]
    pub auth_user: Option<String>,
    /// The client that handed the message over.
    #[serde(default)]
    pub client: Option<ClientInfo>,
    /// Message size in bytes (set by the queue).
    #[serde(default)]
    pub size: u64,
    /// The delay-warning DSN has been sent.
    #[serde(default)]
    pub delay_warned: bool,
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// No recipients.
    #[error("no recipients")]
    NoRecipients,
    /// An address that cannot be written into an SMTP command safely.
    #[error("invalid address {0:?}: must be local@domain without spaces, controls or <>")]
    BadAddress(String),
    /// ENVID or ORCPT too long or with forbidden characters.
    #[error("invalid DSN parameter {0}")]
    BadDsnParam(&'static str),
}

impl Envelope {
    /// An envelope from `sender` (empty for `<>`) with no recipients yet.
    pub fn new(sender: impl Into<String>) -> Envelope {
        Envelope {
            sender: sender.into(),
            recipients: Vec::new(),
            envid: None,
            ret: None,
            body: BodyType::SevenBit,
            smtputf8: false,
            received_ms: 0,
            hops: 0,
            auth_user: None,
            client: None,
            size: 0,
            delay_warned: false,
        }
    }

    /// Checks everything that later ends up in a protocol command or a DSN.
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        if !self.sender.is_empty() && !address_ok(&self.sender) {
            return Err(EnvelopeError::BadAddress(self.sender.clone()));
        }
        if self.recipients.is_empty() {
            return Err(EnvelopeError::NoRecipients);
        }
        for r in &self.recipients {
            if !address_ok(&r.address) {
                return Err(EnvelopeError::BadAddress(r.address.clone()));
            }
            if let Some(o) = &r.orcpt {
                if o.len() > MAX_ORCPT_LEN || !param_ok(o) {
                    return Err(EnvelopeError::BadDsnParam("ORCPT"));
                }
            }
        }
        if let Some(e) = &self.envid {
            if e.len() > MAX_ENVID_LEN || !param_ok(e) {
                return Err(EnvelopeError::BadDsnParam("ENVID"));
            }
        }
        Ok(())
    }

    /// Whether any recipient still waits for delivery.
    pub fn has_pending(&self) -> bool {
        self.recipients
            .iter()
            .any(|r| r.state == RcptState::Pending)
    }

    /// The earliest `next_attempt_ms` of a pending recipient.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.recipients
            .iter()
            .filter(|r| r.state == RcptState::Pending)
            .map(|r| r.next_attempt_ms)
            .min()
    }
}

/// The part after the last `@`.
pub(crate) fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

/// A path we can put between `<` `>` verbatim: `local@domain`, no whitespace, controls, `<>`,
/// bounded length. UTF-8 is allowed (SMTPUTF8); the SMTP server did the RFC-level parsing.
fn address_ok(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && a.len() <= MAX_ADDRESS_LEN
        && !a
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
}

/// ENVID/ORCPT values (decoded): printable, no spaces or controls.
fn param_ok(v: &str) -> bool {
    !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_sortable_and_parse_back() {
        let a = QueueId::generate(1_700_000_000_000_000);
        let b = QueueId::generate(1_700_000_000_000_000);
        let c = QueueId::generate(1_700_000_000_000_001);
        assert_ne!(a, b);
        assert!(a < c && b < c);
        assert_eq!(QueueId::parse(a.as_str()), Some(a.clone()));
        for bad in [
            "",
            "../../etc/passwd",
            "0123456789abcdef012",
            "0123456789ABCDEF0123",
        ] {
            assert_eq!(QueueId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn validation_table() {
        let ok = |s: &str, r: &str| {
            let mut e = Envelope::new(s);
            e.recipients.push(Recipient::new(r));
            e.validate()
        };
        assert!(ok("a@b.example", "c@d.example").is_ok());
        assert!(ok("", "c@d.example").is_ok());
        assert!(ok("ü@b.example", "用户@例子.测试").is_ok());
        for (s, r) in [
            ("a b@c", "c@d"),
            ("a@b", "c@d>\r\nRCPT TO:<x@y"),
            ("a@b", "nodomain"),
            ("a@b", "@d"),
            ("a@b", "c@"),
            ("a@b", &format!("{}@d", "x".repeat(260))),
        ] {
            assert!(ok(s, r).is_err(), "{s:?} {r:?}");
        }
        assert_eq!(
            Envelope::new("a@b").validate(),
            Err(EnvelopeError::NoRecipients)
        );
        let mut e = Envelope::new("a@b");
        e.recipients.push(Recipient::new("c@d"));
        e.envid = Some("x y".into());
        assert_eq!(e.validate(), Err(EnvelopeError::BadDsnParam("ENVID")));
    }

    #[test]
    fn notify_defaults_follow_rfc3461() {
        let mut r = Recipient::new("a@b");
        assert!(r.wants_failure() && r.wants_delay() && !r.wants_success());
        r.notify = Some(Notify::NEVER);
        assert!(!r.wants_failure() && !r.wants_delay());
        assert_eq!(Notify::NEVER.to_param(), "NEVER");
        let n = Notify {
            success: true,
            failure: true,
            delay: false,
        };
        assert_eq!(n.to_param(), "SUCCESS,FAILURE");
    }

    #[test]
    fn envelope_json_roundtrip_and_sparse_read() {
        let mut e = Envelope::new("a@b");
        e.recipients.push(Recipient::new("c@d"));
        let j = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Envelope>(&j).unwrap(), e);
        let sparse: Envelope =
            serde_json::from_str(r#"{"sender":"","recipients":[{"address":"x@y"}]}"#).unwrap();
        assert_eq!(sparse.recipients[0].state, RcptState::Pending);
    }
}
