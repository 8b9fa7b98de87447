//! The SMTP, submission and LMTP servers' settings: every limit a client can run into, with a
//! default, and the switches that differ between production and dev.
//!
//! Plain data with serde (`deny_unknown_fields`, every field defaulted) so it can sit in the
//! node's TOML file as a section; [`SmtpConfig::validate`] names the offending key. This file
//! does no I/O.
//!
//! Security note: `allow_plaintext_auth` sends passwords in clear when true; it exists for
//! dev mode on loopback and must stay false in production.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Settings shared by the MX, submission and LMTP listeners.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// This node's name in greetings, `Received:` fields and generated `Message-ID`s.
    pub hostname: String,
    /// Largest message accepted, in octets (advertised as `SIZE`).
    pub max_message_size: u64,
    /// Recipients per transaction; more get `452 4.5.3`.
    pub max_recipients: usize,
    /// Longest command or text line, CRLF included (RFC 5321 §4.5.3.1.6 requires 1000).
    pub max_line_length: usize,
    /// Client errors (syntax, sequence, unknown commands and users) before the session is
    /// closed with `421 4.7.0`.
    pub max_errors: u32,
    /// `Received:` fields a message may already carry; more is a loop (`554 5.4.6`).
    pub max_hops: usize,
    /// Failed AUTH attempts in one session before it is closed.
    pub max_auth_failures: u32,
    /// Failed AUTH attempts from one address (IPv4, or IPv6 /64) within
    /// `auth_failure_window_secs` before that address may not try again until the window
    /// passes.
    pub auth_failures_per_ip: u32,
    /// The window of `auth_failures_per_ip`.
    pub auth_failure_window_secs: u64,
    /// Delay before answering a failed AUTH; doubles with each failure from the address.
    pub auth_failure_delay_ms: u64,
    /// Cap of that delay.
    pub auth_failure_delay_max_ms: u64,
    /// Offer AUTH on submission without TLS. Dev only.
    pub allow_plaintext_auth: bool,
    /// Where messages larger than `spool_memory_limit` are written while they arrive. Put it
    /// on the queue's file system so the queue can take a message by renaming it. `None`:
    /// the system temporary directory.
    pub spool_dir: Option<PathBuf>,
    /// Octets of a message kept in memory before it is spooled to a file.
    pub spool_memory_limit: usize,
    /// Octets of `From:` header kept for the submission sender check; a longer `From:` is
    /// refused on submission.
    pub max_from_header: usize,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            hostname: "localhost".into(),
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 100,
            max_line_length: 1000,
            max_errors: 10,
            max_hops: 100,
            max_auth_failures: 3,
            auth_failures_per_ip: 10,
            auth_failure_window_secs: 900,
            auth_failure_delay_ms: 1000,
            auth_failure_delay_max_ms: 16_000,
            allow_plaintext_auth: false,
            spool_dir: None,
            spool_memory_limit: 128 * 1024,
            max_from_header: 16 * 1024,
        }
    }
}

impl SmtpConfig {
    /// Checks the values; the error is `(key, reason)` for the config loader to report.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let host_ok = !self.hostname.is_empty()
            && self.hostname.len() <= 253
            && self
                .hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !host_ok {
            return Err((
                "hostname",
                "must be a host name (letters, digits, '.', '-')".into(),
            ));
        }
        let checks: [(&'static str, bool, &str); 6] = [
            ("max_message_size", self.max_message_size > 0, "must be > 0"),
            ("max_recipients", self.max_recipients > 0, "must be > 0"),
            (
                "max_line_length",
                (512..=65_536).contains(&self.max_line_length),
                "must be between 512 and 65536",
            ),
            ("max_errors", self.max_errors > 0, "must be > 0"),
            (
                "max_auth_failures",
                self.max_auth_failures > 0,
                "must be > 0",
            ),
            (
                "auth_failures_per_ip",
                self.auth_failures_per_ip > 0,
                "must be > 0",
            ),
        ];
        for (key, ok, reason) in checks {
            if !ok {
                return Err((key, reason.into()));
            }
        }
        if self.auth_failure_delay_max_ms < self.auth_failure_delay_ms {
            return Err((
                "auth_failure_delay_max_ms",
                "must be at least auth_failure_delay_ms".into(),
            ));
        }
        Ok(())
    }

    /// The spool directory to use.
    pub(crate) fn spool_dir(&self) -> PathBuf {
        self.spool_dir.clone().unwrap_or_else(std::env::temp_dir)
    }

    pub(crate) fn auth_window(&self) -> Duration {
        Duration::from_secs(self.auth_failure_window_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_toml_overrides_them() {
        SmtpConfig::default().validate().unwrap();
        let c: SmtpConfig =
            toml::from_str("hostname = \"mx.example.org\"\nmax_recipients = 5\n").unwrap();
        assert_eq!(c.hostname, "mx.example.org");
        assert_eq!(c.max_recipients, 5);
        assert_eq!(c.max_message_size, 50 * 1024 * 1024);
        assert!(toml::from_str::<SmtpConfig>("max_recipent = 5").is_err());
    }

    #[test]
    fn invalid_values_name_the_key() {
        let cases: Vec<(SmtpConfig, &str)> = vec![
            (
                SmtpConfig {
                    hostname: "mx example".into(),
                    ..Default::default()
                },
                "hostname",
            ),
            (
                SmtpConfig {
                    max_line_length: 100,
                    ..Default::default()
                },
                "max_line_length",
            ),
            (
                SmtpConfig {
                    max_recipients: 0,
                    ..Default::default()
                },
                "max_recipients",
            ),
            (
                SmtpConfig {
                    auth_failure_delay_max_ms: 1,
                    ..Default::default()
                },
                "auth_failure_delay_max_ms",
            ),
        ];
        for (cfg, key) in cases {
            assert_eq!(cfg.validate().unwrap_err().0, key);
        }
    }
}
