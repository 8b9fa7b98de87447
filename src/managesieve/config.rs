//! The ManageSieve server's settings: every limit a client can run into, with a default.
//!
//! Plain data with serde (`deny_unknown_fields`, every field defaulted) so it sits in the node's
//! TOML file as the `[managesieve]` section; [`ManageSieveConfig::validate`] names the offending
//! key. The listener and the plaintext-login switch live in `[mailstore]`, like IMAP's and
//! POP3's. The script limits themselves (size, count, name length) are the directory's
//! (`MAX_SIEVE_SCRIPT_BYTES`, …): every node must agree on them. This file does no I/O.

use std::time::Duration;

use serde::Deserialize;

use crate::pop3::Pop3Config;

/// Settings of the ManageSieve listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManageSieveConfig {
    /// Longest physical command line (between literals), CRLF included; longer lines get `NO`.
    pub max_line_length: usize,
    /// Client errors (syntax, unknown commands, commands in the wrong state) before `BYE`.
    pub max_errors: u32,
    /// How long the server waits for a command (or for the client to read a reply) before
    /// the session ends with `BYE`.
    pub idle_timeout_secs: u64,
    /// Failed logins in one session before it is closed.
    pub max_auth_failures: u32,
    /// Failed logins from one address (IPv4, or IPv6 /64) within the window before that
    /// address is disconnected at each further attempt.
    pub auth_failures_per_ip: u32,
    /// Failed logins for one user name within the window before its logins are refused.
    pub auth_failures_per_user: u32,
    /// The window of both failure counts.
    pub auth_failure_window_secs: u64,
    /// Delay before answering a failed login; doubles with each failure counted.
    pub auth_failure_delay_ms: u64,
    /// Cap of that delay.
    pub auth_failure_delay_max_ms: u64,
}

impl Default for ManageSieveConfig {
    fn default() -> Self {
        let p = Pop3Config::default();
        ManageSieveConfig {
            max_line_length: 8 * 1024,
            max_errors: 10,
            idle_timeout_secs: 600,
            max_auth_failures: p.max_auth_failures,
            auth_failures_per_ip: p.auth_failures_per_ip,
            auth_failures_per_user: p.auth_failures_per_user,
            auth_failure_window_secs: p.auth_failure_window_secs,
            auth_failure_delay_ms: p.auth_failure_delay_ms,
            auth_failure_delay_max_ms: p.auth_failure_delay_max_ms,
        }
    }
}

impl ManageSieveConfig {
    /// Checks the values; the error is `(key, reason)` for the config loader to report. The
    /// login-limit keys are checked as `[pop3]` checks them, with the same reasons.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let checks: [(&'static str, bool, &str); 3] = [
            (
                "max_line_length",
                (1024..=1 << 20).contains(&self.max_line_length),
                "must be between 1024 (a quoted string's limit) and 1048576",
            ),
            ("max_errors", self.max_errors > 0, "must be > 0"),
            (
                "idle_timeout_secs",
                self.idle_timeout_secs > 0,
                "must be > 0",
            ),
        ];
        if let Some((key, _, reason)) = checks.into_iter().find(|(_, ok, _)| !ok) {
            return Err((key, reason.into()));
        }
        self.login_limits().validate_login_limits()
    }

    /// The idle timeout for the listener.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// The login limits in the form the shared limiter ([`crate::pop3::LoginLimiter`]) takes.
    pub(crate) fn login_limits(&self) -> Pop3Config {
        Pop3Config {
            max_auth_failures: self.max_auth_failures,
            auth_failures_per_ip: self.auth_failures_per_ip,
            auth_failures_per_user: self.auth_failures_per_user,
            auth_failure_window_secs: self.auth_failure_window_secs,
            auth_failure_delay_ms: self.auth_failure_delay_ms,
            auth_failure_delay_max_ms: self.auth_failure_delay_max_ms,
            ..Pop3Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        assert_eq!(ManageSieveConfig::default().validate(), Ok(()));
        let bad = ManageSieveConfig {
            max_line_length: 100,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "max_line_length");
        let bad = ManageSieveConfig {
            auth_failure_delay_ms: 20_000,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "auth_failure_delay_max_ms");
        // The login limits are this section's own values, not POP3's.
        let bad = ManageSieveConfig {
            auth_failures_per_user: 0,
            ..Default::default()
        };
        assert_eq!(
            bad.validate().unwrap_err(),
            ("auth_failures_per_user", "must be > 0".to_string())
        );
        let bad = ManageSieveConfig {
            idle_timeout_secs: 0,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "idle_timeout_secs");
        let parsed: ManageSieveConfig = toml::from_str("max_errors = 3").unwrap();
        assert_eq!(parsed.max_errors, 3);
        assert!(toml::from_str::<ManageSieveConfig>("max_error = 3").is_err());
    }
}
