//! The POP3 servers' settings: every limit a client can run into, with a default.
//!
//! Plain data with serde (`deny_unknown_fields`, every field defaulted) so it sits in the node's
//! TOML file as the `[pop3]` section; [`Pop3Config::validate`] names the offending key. The
//! listeners themselves and the plaintext-login switch live in `[mailstore]`, next to the store
//! they serve. This file does no I/O.
//!
//! Security note: the login limits are what make guessing passwords over POP3 slow; the
//! defaults allow a handful of typos per user and address per window and no more.

use std::time::Duration;

use serde::Deserialize;

/// Settings shared by the POP3 (STLS) and POP3S listeners.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pop3Config {
    /// Longest command line, CRLF included. RFC 2449 §4 caps commands at 255 octets; a longer
    /// line that still ends within `max_unterminated_line` gets `-ERR` and the session goes on.
    pub max_line_length: usize,
    /// Octets received without a line end before the session is closed; also the longest SASL
    /// response line (RFC 5034 does not hold those to 255 octets).
    pub max_unterminated_line: usize,
    /// Client errors (syntax, unknown commands, commands in the wrong state, bad message
    /// numbers, overlong lines) before the session is closed.
    pub max_errors: u32,
    /// How long the server waits for a command (or for the client to read a reply) before the
    /// session ends with `-ERR` and no UPDATE. RFC 1939 §3 asks for at least 10 minutes.
    pub idle_timeout_secs: u64,
    /// Failed logins in one session before it is closed.
    pub max_auth_failures: u32,
    /// Failed logins from one address (IPv4, or IPv6 /64) within `auth_failure_window_secs`
    /// before that address is disconnected at each further attempt until the window passes.
    pub auth_failures_per_ip: u32,
    /// Failed logins for one user name within the window before logins for that name are
    /// refused (`-ERR [SYS/TEMP]`) until the window passes, whatever the password.
    pub auth_failures_per_user: u32,
    /// The window of both failure counts.
    pub auth_failure_window_secs: u64,
    /// Delay before answering a failed login; doubles with each failure counted for the
    /// address or the user name, whichever has more.
    pub auth_failure_delay_ms: u64,
    /// Cap of that delay.
    pub auth_failure_delay_max_ms: u64,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            max_line_length: 255,
            max_unterminated_line: 8 * 1024,
            max_errors: 10,
            idle_timeout_secs: 600,
            max_auth_failures: 3,
            auth_failures_per_ip: 10,
            auth_failures_per_user: 10,
            auth_failure_window_secs: 900,
            auth_failure_delay_ms: 1000,
            auth_failure_delay_max_ms: 16_000,
        }
    }
}

impl Pop3Config {
    /// Checks the values; the error is `(key, reason)` for the config loader to report.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let checks: [(&'static str, bool, &str); 4] = [
            (
                "max_line_length",
                (255..=65_536).contains(&self.max_line_length),
                "must be between 255 (RFC 2449) and 65536",
            ),
            (
                "max_unterminated_line",
                (self.max_line_length..=1 << 20).contains(&self.max_unterminated_line),
                "must be between max_line_length and 1048576",
            ),
            ("max_errors", self.max_errors > 0, "must be > 0"),
            (
                "idle_timeout_secs",
                self.idle_timeout_secs > 0,
                "must be > 0",
            ),
        ];
        first_failed(checks)?;
        self.validate_login_limits()
    }

    /// Checks the login-limit keys (`max_auth_failures` to `auth_failure_delay_max_ms`), which
    /// `[managesieve]` shares (its validation calls this on its `login_limits`); the error is
    /// `(key, reason)`, the key without its section.
    pub(crate) fn validate_login_limits(&self) -> Result<(), (&'static str, String)> {
        first_failed([
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
            (
                "auth_failures_per_user",
                self.auth_failures_per_user > 0,
                "must be > 0",
            ),
            (
                "auth_failure_window_secs",
                self.auth_failure_window_secs > 0,
                "must be > 0",
            ),
            (
                "auth_failure_delay_max_ms",
                self.auth_failure_delay_max_ms >= self.auth_failure_delay_ms,
                "must be at least auth_failure_delay_ms",
            ),
        ])
    }

    /// The idle timeout for the listeners.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    pub(crate) fn auth_window(&self) -> Duration {
        Duration::from_secs(self.auth_failure_window_secs)
    }
}

/// The first `(key, ok, reason)` that is not ok, as `(key, reason)`.
fn first_failed<const N: usize>(
    checks: [(&'static str, bool, &str); N],
) -> Result<(), (&'static str, String)> {
    match checks.into_iter().find(|(_, ok, _)| !ok) {
        Some((key, _, reason)) => Err((key, reason.into())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        assert_eq!(Pop3Config::default().validate(), Ok(()));
        let cases: [(Pop3Config, &str); 4] = [
            (
                Pop3Config {
                    max_line_length: 100,
                    ..Default::default()
                },
                "max_line_length",
            ),
            (
                Pop3Config {
                    max_unterminated_line: 200,
                    ..Default::default()
                },
                "max_unterminated_line",
            ),
            (
                Pop3Config {
                    auth_failures_per_user: 0,
                    ..Default::default()
                },
                "auth_failures_per_user",
            ),
            (
                Pop3Config {
                    auth_failure_delay_ms: 20_000,
                    ..Default::default()
                },
                "auth_failure_delay_max_ms",
            ),
        ];
        for (cfg, key) in cases {
            assert_eq!(cfg.validate().unwrap_err().0, key);
        }
        let parsed: Pop3Config = toml::from_str("max_errors = 3").unwrap();
        assert_eq!(parsed.max_errors, 3);
        assert!(toml::from_str::<Pop3Config>("max_error = 3").is_err());
    }
}
