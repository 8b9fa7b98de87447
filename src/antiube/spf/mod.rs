//! SPF (RFC 7208): may this client send mail for the MAIL FROM or HELO domain?
//!
//! Job: [`check_mail_from`] and [`check_helo`] (both RFC 7208's `check_host()`, see
//! [`check_host`]) return an [`SpfOutcome`]: one of the seven results, the domain's
//! explanation for a `fail`, and the reason for a `temperror`/`permerror`. The policy that
//! rejects or scores on it belongs to the caller (the SMTP envelope stage, not wired yet).
//!
//! Never: decide what happens to the mail, or do I/O other than through [`SpfDns`].
//!
//! Layout: `record` parses a `v=spf1` record into borrowed terms (sections 4.6, 5, 6, 12);
//! `macros` validates and expands macro strings (section 7); `eval` runs `check_host()` over
//! an [`SpfDns`] (sections 4, 5, 6, with the limits of section 4.6.4); `dns` holds that trait
//! and [`HickoryDns`], its implementation over hickory-resolver with a per-lookup timeout.
//! Parsing and macro expansion do no I/O; evaluation does I/O only through [`SpfDns`], so tests
//! run it over an in-memory zone (tests/spf_suite.rs runs the RFC 7208 test suite that way).
//!
//! Security note: records, DNS answers, HELO names and senders are attacker-controlled. At most
//! 10 DNS-querying terms (include, a, mx, ptr, exists, redirect) and 2 void lookups per
//! evaluation, at most 10 names of an MX or PTR answer, expanded names capped at 253
//! characters, every lookup bounded by [`HickoryDns`]'s timeout; parse errors are values
//! (`permerror`), never panics. A caller that wants a bound on the whole evaluation (RFC 7208
//! suggests 20 seconds) wraps the call in `tokio::time::timeout` and treats expiry as
//! `temperror`.

mod dns;
mod eval;
mod macros;
mod record;

use std::fmt;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

pub use dns::{DnsError, DnsResult, HickoryDns, ResolverSetupError, SpfDns};
pub use record::{is_spf_record, Directive, Mechanism, ParseError, Qualifier, Record};

/// An SPF result (RFC 7208 section 2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpfResult {
    /// No SPF record, or no valid domain to check.
    None,
    /// The domain makes no assertion about this client.
    Neutral,
    /// The client is authorized.
    Pass,
    /// The client is not authorized.
    Fail,
    /// Probably not authorized (the domain asks not to reject outright).
    SoftFail,
    /// A transient DNS problem: try again later.
    TempError,
    /// The domain's records are broken; needs its owner's intervention.
    PermError,
}

impl SpfResult {
    /// The result's name as written in `Received-SPF` and `Authentication-Results`.
    pub fn as_str(self) -> &'static str {
        match self {
            SpfResult::None => "none",
            SpfResult::Neutral => "neutral",
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }
}

impl fmt::Display for SpfResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an evaluation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfOutcome {
    /// The result.
    pub result: SpfResult,
    /// For `fail` only: the domain's explanation (its `exp=` text, macros expanded), if it has
    /// one that could be fetched. The caller supplies its own default otherwise.
    pub explanation: Option<String>,
    /// For `none`, `temperror` and `permerror`: why, in words for the log (a broken record
    /// names its domain and the bad term).
    pub problem: Option<String>,
}

/// Evaluation settings.
#[derive(Debug, Clone)]
pub struct SpfOptions {
    /// DNS-querying mechanisms and redirects allowed per evaluation (RFC 7208: 10).
    pub max_dns_terms: u32,
    /// Lookups answering NXDOMAIN or nothing allowed per evaluation (RFC 7208: 2).
    pub max_void_lookups: u32,
    /// This host's name, the `%{r}` macro of explanations (`unknown` by default).
    pub receiver: String,
}

impl Default for SpfOptions {
    fn default() -> Self {
        SpfOptions {
            max_dns_terms: 10,
            max_void_lookups: 2,
            receiver: "unknown".to_string(),
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A v4-mapped IPv6 client (`::ffff:a.b.c.d`, from a dual-stack socket) is an IPv4 client.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// RFC 7208's `check_host(ip, domain, sender)`: evaluates `domain`'s SPF record for a client at
/// `ip` that said `helo`, for the sender `sender_local@sender_domain` (section 4.3: an empty
/// local part is `postmaster`).
pub async fn check_host<D: SpfDns>(
    dns: &D,
    opts: &SpfOptions,
    ip: IpAddr,
    domain: &str,
    sender_local: &str,
    sender_domain: &str,
    helo: &str,
) -> SpfOutcome {
    let local = if sender_local.is_empty() {
        "postmaster"
    } else {
        sender_local
    };
    eval::Eval::new(dns, opts, canonical(ip), local, sender_domain, helo, now())
        .run(domain)
        .await
}

/// The "MAIL FROM" identity (section 2.4): the reverse-path's domain, or for the null
/// reverse-path `<>` the HELO name with local part `postmaster`. `mail_from` is the address
/// without angle brackets.
pub async fn check_mail_from<D: SpfDns>(
    dns: &D,
    opts: &SpfOptions,
    ip: IpAddr,
    helo: &str,
    mail_from: &str,
) -> SpfOutcome {
    if mail_from.is_empty() {
        return check_helo(dns, opts, ip, helo).await;
    }
    let (local, domain) = match mail_from.rsplit_once('@') {
        Some((l, d)) => (l, d),
        None => ("", mail_from),
    };
    check_host(dns, opts, ip, domain, local, domain, helo).await
}

/// The "HELO" identity (section 2.3): the HELO/EHLO name with local part `postmaster`. An
/// address literal or a name that is not a domain gives `none`.
pub async fn check_helo<D: SpfDns>(
    dns: &D,
    opts: &SpfOptions,
    ip: IpAddr,
    helo: &str,
) -> SpfOutcome {
    check_host(dns, opts, ip, helo, "postmaster", helo, helo).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SMTP session runs on a multi-threaded runtime: evaluations must be `Send`.
    #[tokio::test]
    async fn evaluation_futures_are_send() {
        fn send<T: Send>(_: &T) {}
        let dns = HickoryDns::with_servers(
            &["127.0.0.1:53".parse().unwrap()],
            std::time::Duration::from_secs(1),
        )
        .unwrap();
        let o = SpfOptions::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        send(&check_mail_from(&dns, &o, ip, "h.example", "a@b.example"));
        send(&check_helo(&dns, &o, ip, "h.example"));
        assert_eq!(SpfResult::SoftFail.to_string(), "softfail");
    }
}
