//! The queue's configuration: lifetimes, retry timings, concurrency, sizes, TLS policy and DNS.
//!
//! One plain struct with a [`Default`] for every field, so the node's TOML section can be
//! `#[serde(default)]` and tests can shrink every timing to milliseconds. Units are in the key
//! names (`_secs`, `_ms`), like the rest of the node's configuration. This module does no I/O;
//! [`QueueConfig::validate`] names the offending key so the config loader can report it.
//!
//! Security note: the defaults are the conservative ones — opportunistic TLS (never plaintext
//! when the peer offers STARTTLS), a hop limit against mail loops, and a bounded active set so a
//! flood of queued mail cannot exhaust memory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How outbound SMTP treats STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// Never use STARTTLS (for test rigs and broken peers only).
    None,
    /// Use STARTTLS when offered, accept any certificate: encryption against passive
    /// eavesdroppers without letting a certificate problem block delivery (RFC 7435).
    #[default]
    Opportunistic,
    /// Require STARTTLS and a certificate that chains to `tls_ca_file` and names the MX host;
    /// otherwise the delivery is deferred.
    Verify,
}

/// Everything the queue and its delivery agents can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// This node's name in EHLO/LHLO, in DSNs (`Reporting-MTA`) and as MAILER-DAEMON's domain.
    pub hostname: String,
    /// How long a message may stay queued before its undelivered recipients are bounced.
    pub lifetime_secs: u64,
    /// Age at which the sender gets one "still trying" DSN; 0 sends none.
    pub delay_warning_secs: u64,
    /// First retry delay after a temporary failure; doubles per attempt.
    pub backoff_min_ms: u64,
    /// Longest retry delay.
    pub backoff_max_ms: u64,
    /// Retry interval while the mailstore (LMTP) is unreachable, e.g. during a failover: short,
    /// because the standby takes over in seconds and local mail should not wait minutes.
    pub lmtp_retry_ms: u64,
    /// Most simultaneous connections to one destination (a mailstore group or a remote domain).
    pub destination_concurrency: usize,
    /// Most messages in delivery at once (the active set); the rest wait on disk only.
    pub active_limit: usize,
    /// Largest message accepted into the queue, in bytes (the SMTP server's SIZE should match).
    pub max_message_size: u64,
    /// Most `Received:` headers (hops) a message may carry before it is refused as a loop.
    pub hop_limit: u32,
    /// STARTTLS policy for outbound SMTP.
    pub tls: TlsPolicy,
    /// Trust anchors (PEM) for `tls = "verify"`: Debian's bundle by default.
    pub tls_ca_file: PathBuf,
    /// DNS servers for MX lookups; empty means the system's `/etc/resolv.conf`.
    pub dns_servers: Vec<SocketAddr>,
    /// Port of remote MXs. Always 25 in production; tests point it at a sink.
    pub smtp_port: u16,
    /// Time allowed to open a TCP connection.
    pub connect_timeout_ms: u64,
    /// Time allowed for each reply (greeting, EHLO, MAIL, RCPT, DATA's 354) and each write.
    pub command_timeout_ms: u64,
    /// Time allowed for the reply after the final `.` (RFC 5321 §4.5.3.2.6: 10 minutes).
    pub data_timeout_ms: u64,
    /// Time allowed for each reply of the mailstore's LMTP server before `DATA`'s final reply
    /// (greeting, LHLO, MAIL, RCPT, 354). Our own mailstore answers these in milliseconds; a
    /// connection that stays silent is one to a node that just lost the mailstore (its socket
    /// can outlive the failover), so it is given up quickly and the message retried on the
    /// new holder, instead of after SMTP's 5 minutes.
    pub lmtp_command_timeout_ms: u64,
    /// Most recipients per SMTP/LMTP transaction (RFC 5321 guarantees servers take 100).
    pub max_rcpt_per_transaction: usize,
    /// Most MX hosts tried per delivery attempt.
    pub max_mx_hosts: usize,
    /// Largest original message returned whole inside a failure DSN; above it, headers only.
    pub dsn_return_limit: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            hostname: "localhost".to_string(),
            lifetime_secs: 5 * 24 * 3600,
            delay_warning_secs: 4 * 3600,
            backoff_min_ms: 60_000,
            backoff_max_ms: 3_600_000,
            lmtp_retry_ms: 3_000,
            destination_concurrency: 20,
            active_limit: 500,
            max_message_size: 50 * 1024 * 1024,
            hop_limit: 50,
            tls: TlsPolicy::Opportunistic,
            tls_ca_file: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            dns_servers: Vec::new(),
            smtp_port: 25,
            connect_timeout_ms: 30_000,
            command_timeout_ms: 300_000,
            data_timeout_ms: 600_000,
            lmtp_command_timeout_ms: 30_000,
            max_rcpt_per_transaction: 100,
            max_mx_hosts: 5,
            dsn_return_limit: 100 * 1024,
        }
    }
}

/// A refused setting: the key (relative to the queue section) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSetting {
    /// The key, e.g. `backoff_max_ms`.
    pub key: &'static str,
    /// What is wrong with its value.
    pub reason: String,
}

impl QueueConfig {
    /// Checks the values that would make the queue misbehave rather than fail loudly.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let bad = |key, reason: &str| {
            Err(InvalidSetting {
                key,
                reason: reason.to_string(),
            })
        };
        if self.hostname.is_empty()
            || self.hostname.len() > 253
            || !self
                .hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return bad("hostname", "must be a DNS name (letters, digits, '-', '.')");
        }
        if self.lifetime_secs == 0 {
            return bad("lifetime_secs", "must be greater than 0");
        }
        if self.backoff_min_ms == 0 {
            return bad("backoff_min_ms", "must be greater than 0");
        }
        if self.backoff_max_ms < self.backoff_min_ms {
            return bad("backoff_max_ms", "must not be smaller than backoff_min_ms");
        }
        if self.lmtp_retry_ms == 0 {
            return bad("lmtp_retry_ms", "must be greater than 0");
        }
        for (key, v) in [
            ("destination_concurrency", self.destination_concurrency),
            ("active_limit", self.active_limit),
            ("max_rcpt_per_transaction", self.max_rcpt_per_transaction),
            ("max_mx_hosts", self.max_mx_hosts),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if self.max_message_size == 0 {
            return bad("max_message_size", "must be greater than 0");
        }
        if self.hop_limit == 0 {
            return bad("hop_limit", "must be at least 1");
        }
        for (key, v) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("command_timeout_ms", self.command_timeout_ms),
            ("data_timeout_ms", self.data_timeout_ms),
            ("lmtp_command_timeout_ms", self.lmtp_command_timeout_ms),
        ] {
            if v == 0 {
                return bad(key, "must be greater than 0");
            }
        }
        Ok(())
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub(crate) fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
    pub(crate) fn data_timeout(&self) -> Duration {
        Duration::from_millis(self.data_timeout_ms)
    }
    pub(crate) fn lmtp_command_timeout(&self) -> Duration {
        Duration::from_millis(self.lmtp_command_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_issue() {
        let c = QueueConfig::default();
        c.validate().unwrap();
        assert_eq!(c.lifetime_secs, 5 * 86400);
        assert_eq!(c.delay_warning_secs, 4 * 3600);
        assert_eq!(c.tls, TlsPolicy::Opportunistic);
    }

    #[test]
    fn invalid_values_name_their_key() {
        type Case = (fn(&mut QueueConfig), &'static str);
        let cases: Vec<Case> = vec![
            (|c| c.hostname = "a b".into(), "hostname"),
            (|c| c.lifetime_secs = 0, "lifetime_secs"),
            (|c| c.backoff_max_ms = 1, "backoff_max_ms"),
            (|c| c.backoff_min_ms = 0, "backoff_min_ms"),
            (|c| c.active_limit = 0, "active_limit"),
            (|c| c.destination_concurrency = 0, "destination_concurrency"),
            (|c| c.hop_limit = 0, "hop_limit"),
            (|c| c.data_timeout_ms = 0, "data_timeout_ms"),
            (|c| c.lmtp_command_timeout_ms = 0, "lmtp_command_timeout_ms"),
        ];
        for (mutate, key) in cases {
            let mut c = QueueConfig::default();
            mutate(&mut c);
            assert_eq!(c.validate().unwrap_err().key, key);
        }
    }

    #[test]
    fn parses_from_sparse_toml_and_rejects_unknown_keys() {
        let c: QueueConfig = toml::from_str("tls = \"verify\"\nbackoff_min_ms = 5").unwrap();
        assert_eq!(c.tls, TlsPolicy::Verify);
        assert_eq!(c.backoff_min_ms, 5);
        assert_eq!(c.lifetime_secs, QueueConfig::default().lifetime_secs);
        assert!(toml::from_str::<QueueConfig>("lifetime = 3").is_err());
    }
}
