//! The IMAP server's settings: every limit a client can run into, with a default.
//!
//! Plain data with serde (`deny_unknown_fields`, every field defaulted) so it sits in the
//! node's TOML file as the `[imap]` section; [`ImapConfig::validate`] names the offending key.
//! This file does no I/O. Security note: the defaults bound what one session can make the
//! server hold (a command line, its literals, the reply buffer) to a few megabytes; a large
//! APPEND message goes to a temporary file, bounded by `max_append_size`.

use std::time::Duration;

use serde::Deserialize;

/// Settings of the IMAP and IMAPS listeners.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImapConfig {
    /// The server's name in the greeting and in `* BYE`.
    pub hostname: String,
    /// Longest command line (one line between literals), CRLF included.
    pub max_line_length: usize,
    /// Largest literal in a command other than APPEND (a password, a search string).
    pub max_literal_size: u32,
    /// Largest message APPEND accepts (advertised as `APPENDLIMIT`).
    pub max_append_size: u32,
    /// Bytes of one command, its literals included (APPEND's message excepted).
    pub max_command_size: usize,
    /// Literals in one command.
    pub max_literals: usize,
    /// Deepest nesting of parenthesised lists (SEARCH criteria, FETCH items).
    pub max_nesting: usize,
    /// Deepest nesting of SEARCH and SORT criteria: `NOT`, `OR` and parentheses each add a
    /// level (clients build long `OR OR OR …` chains; the parser and the matcher recurse).
    pub max_search_depth: usize,
    /// Ranges in one sequence set (`1,3,5:7` is three).
    pub max_sequence_ranges: usize,
    /// Client errors (BAD replies) before the session is closed with `* BYE`.
    pub max_errors: u32,
    /// Failed logins in one session before it is closed.
    pub max_auth_failures: u32,
    /// Failed logins from one address (IPv4, or IPv6 /64) within `auth_failure_window_secs`
    /// before that address may not try again until the window passes.
    pub auth_failures_per_ip: u32,
    /// Failed logins for one user name within the window before that user may not log in
    /// (from anywhere) until the window passes.
    pub auth_failures_per_user: u32,
    /// The window of the two limits above.
    pub auth_failure_window_secs: u64,
    /// Delay before answering a failed login; doubles with each failure from the address.
    pub auth_failure_delay_ms: u64,
    /// Cap of that delay.
    pub auth_failure_delay_max_ms: u64,
    /// Idle timeout before login (RFC 9051 §5.4 asks for at least 30 minutes only once
    /// authenticated).
    pub login_timeout_secs: u64,
    /// Idle timeout once authenticated, IDLE included (at least 30 minutes by RFC 9051).
    pub idle_timeout_secs: u64,
    /// Reply bytes buffered before the session waits for the client to read them; a client
    /// that stops reading then meets the idle timeout.
    pub max_output_buffer: usize,
    /// Messages a SEARCH or SORT that reads message contents may examine; beyond it the
    /// command fails with `NO [LIMIT]`.
    pub max_search_messages: usize,
    /// APPEND messages larger than this are written to a temporary file as they arrive
    /// instead of being held in memory.
    pub spool_memory_limit: u32,
    /// Where those temporary files go (`None`: the system's temporary directory). Put it on
    /// the mailstore volume's file system to spare a copy across file systems.
    pub spool_dir: Option<std::path::PathBuf>,
    /// Bytes of message headers kept in memory for FETCH ENVELOPE and `BODY[HEADER.FIELDS …]`,
    /// shared by all sessions (0: none; every such FETCH reads the message files).
    pub header_cache_bytes: usize,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            hostname: "localhost".into(),
            max_line_length: 64 * 1024,
            max_literal_size: 64 * 1024,
            max_append_size: 50 * 1024 * 1024,
            max_command_size: 1024 * 1024,
            max_literals: 64,
            max_nesting: 16,
            max_search_depth: 100,
            max_sequence_ranges: 10_000,
            max_errors: 20,
            max_auth_failures: 3,
            auth_failures_per_ip: 10,
            auth_failures_per_user: 20,
            auth_failure_window_secs: 900,
            auth_failure_delay_ms: 1000,
            auth_failure_delay_max_ms: 16_000,
            login_timeout_secs: 60,
            idle_timeout_secs: 1800,
            max_output_buffer: 256 * 1024,
            max_search_messages: 100_000,
            spool_memory_limit: 256 * 1024,
            spool_dir: None,
            header_cache_bytes: 16 * 1024 * 1024,
        }
    }
}

impl ImapConfig {
    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    pub fn auth_window(&self) -> Duration {
        Duration::from_secs(self.auth_failure_window_secs)
    }

    /// Checks the relations between limits; the error names the key (without `imap.`).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive: [(&'static str, u64); 15] = [
            ("max_line_length", self.max_line_length as u64),
            ("max_literal_size", self.max_literal_size.into()),
            ("max_append_size", self.max_append_size.into()),
            ("max_command_size", self.max_command_size as u64),
            ("max_literals", self.max_literals as u64),
            ("max_nesting", self.max_nesting as u64),
            ("max_search_depth", self.max_search_depth as u64),
            ("max_sequence_ranges", self.max_sequence_ranges as u64),
            ("max_errors", self.max_errors.into()),
            ("max_auth_failures", self.max_auth_failures.into()),
            ("auth_failures_per_ip", self.auth_failures_per_ip.into()),
            ("auth_failures_per_user", self.auth_failures_per_user.into()),
            ("login_timeout_secs", self.login_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("max_search_messages", self.max_search_messages as u64),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err((key, "must be positive".into()));
            }
        }
        if self.max_line_length < 1000 {
            return Err((
                "max_line_length",
                "must be at least 1000 (clients send long UID sets)".into(),
            ));
        }
        if self.max_output_buffer < 4096 {
            return Err(("max_output_buffer", "must be at least 4096".into()));
        }
        if self.auth_failure_delay_max_ms < self.auth_failure_delay_ms {
            return Err((
                "auth_failure_delay_max_ms",
                "must be at least auth_failure_delay_ms".into(),
            ));
        }
        if self.hostname.is_empty() || self.hostname.chars().any(|c| c.is_whitespace()) {
            return Err(("hostname", "must be a non-empty name without spaces".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        ImapConfig::default().validate().unwrap();
        let cases: [(ImapConfig, &str); 4] = [
            (
                ImapConfig {
                    max_nesting: 0,
                    ..Default::default()
                },
                "max_nesting",
            ),
            (
                ImapConfig {
                    max_line_length: 100,
                    ..Default::default()
                },
                "max_line_length",
            ),
            (
                ImapConfig {
                    auth_failure_delay_max_ms: 1,
                    ..Default::default()
                },
                "auth_failure_delay_max_ms",
            ),
            (
                ImapConfig {
                    hostname: "a b".into(),
                    ..Default::default()
                },
                "hostname",
            ),
        ];
        for (cfg, key) in cases {
            assert_eq!(cfg.validate().unwrap_err().0, key);
        }
    }
}
