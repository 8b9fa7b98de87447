//! Retry timing: exponential backoff with jitter for ordinary temporary failures, and the short
//! fixed interval for a mailstore that is failing over.
//!
//! Pure arithmetic on milliseconds with the random draw passed in, so the rules are table-tested
//! without clocks. Must never sleep or read the time.
//!
//! Security note: delays are clamped to the configured bounds, so a hostile reply cannot make
//! the queue spin (too short) or sit on mail past its lifetime (too long).

use super::config::QueueConfig;
use super::transport::Destination;
use super::wire::status_of;

/// Delay before retry number `attempts + 1`: `backoff_min · 2^(attempts−1)`, capped at
/// `backoff_max`, then scaled by a jitter factor in [0.8, 1.2) so retries of many messages that
/// failed together spread out; the result stays within [min, max]. `r` is uniform in [0, 1).
pub(crate) fn backoff_ms(cfg: &QueueConfig, attempts: u32, r: f64) -> u64 {
    let (min, max) = (cfg.backoff_min_ms, cfg.backoff_max_ms);
    let shift = attempts.saturating_sub(1).min(40);
    let base = min.saturating_mul(1u64 << shift).min(max);
    let jittered = (base as f64 * (0.8 + 0.4 * r.clamp(0.0, 1.0))) as u64;
    jittered.clamp(min, max)
}

/// Delay while a mailstore group is unreachable: `lmtp_retry_ms` with the same jitter.
pub(crate) fn lmtp_retry_ms(cfg: &QueueConfig, r: f64) -> u64 {
    ((cfg.lmtp_retry_ms as f64 * (0.8 + 0.4 * r.clamp(0.0, 1.0))) as u64).max(1)
}

/// Whether a temporary failure is a mailstore availability problem (retried on the short LMTP
/// interval) rather than a per-mailbox condition. A full mailbox (`x.2.2`) is the one LMTP
/// answer that waits with the ordinary backoff: retrying it every few seconds cannot help.
pub(crate) fn fast_retry(dest: &Destination, detail: &str) -> bool {
    matches!(dest, Destination::Lmtp(_)) && !status_of(detail).ends_with(".2.2")
}

/// The delay after a temporary failure with `detail`, at `attempts` attempts so far.
pub(crate) fn retry_delay_ms(
    cfg: &QueueConfig,
    dest: &Destination,
    detail: &str,
    attempts: u32,
    r: f64,
) -> u64 {
    if fast_retry(dest, detail) {
        lmtp_retry_ms(cfg, r)
    } else {
        backoff_ms(cfg, attempts, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> QueueConfig {
        QueueConfig {
            backoff_min_ms: 60_000,
            backoff_max_ms: 3_600_000,
            lmtp_retry_ms: 3_000,
            ..QueueConfig::default()
        }
    }

    #[test]
    fn backoff_table() {
        let c = cfg();
        for (attempts, r, want) in [
            (1, 0.5, 60_000),
            (2, 0.5, 120_000),
            (3, 0.5, 240_000),
            (7, 0.5, 3_600_000),
            (100, 0.5, 3_600_000),
            (1, 0.0, 60_000),
            (2, 0.0, 96_000),
            (2, 0.999, 143_952),
            (7, 0.999, 3_600_000),
            (0, 0.5, 60_000),
        ] {
            assert_eq!(
                backoff_ms(&c, attempts, r),
                want,
                "attempts {attempts} r {r}"
            );
        }
    }

    #[test]
    fn lmtp_failures_retry_fast_except_full_mailboxes() {
        let c = cfg();
        let lmtp = Destination::Lmtp("default".into());
        let smtp = Destination::Smtp("remote.test".into());
        let d = |dest: &Destination, detail: &str| retry_delay_ms(&c, dest, detail, 5, 0.5);
        assert_eq!(d(&lmtp, "4.4.1 mailstore default: cannot connect"), 3_000);
        assert_eq!(d(&lmtp, "421 4.3.2 shutting down"), 3_000);
        assert_eq!(d(&lmtp, "451 4.3.0 store unavailable"), 3_000);
        assert_eq!(d(&lmtp, "452 4.2.2 mailbox full"), 960_000);
        assert_eq!(d(&smtp, "451 4.3.0 try later"), 960_000);
        let r: Vec<u64> = [0.0, 0.999].iter().map(|&r| lmtp_retry_ms(&c, r)).collect();
        assert_eq!(r, vec![2_400, 3_598]);
    }
}
