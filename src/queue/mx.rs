//! MX resolution for outbound SMTP (RFC 5321 §5.1) with hickory-resolver: MX records in
//! preference order (equal preferences shuffled), the domain itself as implicit MX when it has
//! none, null MX (RFC 7505) and non-existent domains as permanent failures, DNS trouble as
//! temporary.
//!
//! The nameservers are the system's unless the queue config names some (tests point them at a
//! DNS server on loopback). This module only resolves; it never connects to a mail server.
//!
//! Security note: answers are untrusted. The number of MX hosts used is capped, and names are
//! used only as DNS names and TLS server names, never in commands.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use rand::seq::SliceRandom;

use crate::antiube::spf::{HickoryDns, ResolverSetupError};

use super::config::QueueConfig;
use super::QueueError;

/// One mail exchanger and its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MxHost {
    /// The host name, without the trailing dot.
    pub name: String,
    /// Its addresses (A and AAAA).
    pub addrs: Vec<IpAddr>,
}

/// Why a domain has no usable MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MxError {
    /// Retry later (DNS timeout, SERVFAIL, no address for any MX host).
    Temporary(String),
    /// Bounce (NXDOMAIN, null MX, no MX and no address).
    Permanent(String),
}

/// A resolver configured from the queue config: `queue.dns_servers`, or the system's servers
/// when none are named; each query waits the connect timeout (clamped to 0.5-5 s) per attempt.
pub(crate) fn resolver(cfg: &QueueConfig) -> Result<TokioResolver, QueueError> {
    let timeout = Duration::from_millis(cfg.connect_timeout_ms.clamp(500, 5_000));
    HickoryDns::build_resolver(&cfg.dns_servers, timeout).map_err(|e| match e {
        ResolverSetupError::System(e) => QueueError::Transport(format!(
            "cannot read the system DNS configuration ({e}): set queue.dns_servers"
        )),
        ResolverSetupError::Build(e) => {
            QueueError::Transport(format!("cannot build the DNS resolver: {e}"))
        }
    })
}

fn nxdomain(e: &NetError) -> bool {
    matches!(e, NetError::Dns(DnsError::NoRecordsFound(nr)) if nr.response_code == ResponseCode::NXDomain)
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// Resolves `domain`'s mail exchangers, at most `max_hosts` of them, with their addresses.
pub(crate) async fn lookup(
    resolver: &TokioResolver,
    domain: &str,
    max_hosts: usize,
) -> Result<Vec<MxHost>, MxError> {
    let names: Vec<String> = match resolver.mx_lookup(fqdn(domain)).await {
        Ok(lookup) => {
            let mut mxs: Vec<(u16, String)> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                    _ => None,
                })
                .collect();
            if mxs.iter().any(|(_, n)| n == "." || n.is_empty()) {
                return Err(MxError::Permanent(format!(
                    "556 5.1.10 domain {domain} accepts no mail (null MX)"
                )));
            }
            if mxs.is_empty() {
                vec![domain.to_string()]
            } else {
                order(&mut mxs);
                mxs.into_iter()
                    .map(|(_, n)| n.trim_end_matches('.').to_string())
                    .collect()
            }
        }
        Err(e) if nxdomain(&e) => {
            return Err(MxError::Permanent(format!(
                "550 5.4.4 domain {domain} does not exist (NXDOMAIN)"
            )))
        }
        Err(e) if e.is_no_records_found() => vec![domain.to_string()],
        Err(e) => {
            return Err(MxError::Temporary(format!(
                "4.4.3 MX lookup for {domain} failed: {e}"
            )))
        }
    };
    let implicit = names.len() == 1 && names[0] == domain;
    let mut hosts = Vec::new();
    let mut last_err = String::new();
    for name in names.into_iter().take(max_hosts) {
        match resolver.lookup_ip(fqdn(&name)).await {
            Ok(ips) => {
                let addrs: Vec<IpAddr> = ips.iter().collect();
                if !addrs.is_empty() {
                    hosts.push(MxHost { name, addrs });
                }
            }
            Err(e) if implicit && (nxdomain(&e) || e.is_no_records_found()) => {
                return Err(MxError::Permanent(format!(
                    "550 5.4.4 domain {domain} has no MX and no address record"
                )))
            }
            Err(e) => last_err = format!("4.4.3 address lookup for {name} failed: {e}"),
        }
    }
    if hosts.is_empty() {
        return Err(MxError::Temporary(if last_err.is_empty() {
            format!("4.4.3 no address for any MX host of {domain}")
        } else {
            last_err
        }));
    }
    Ok(hosts)
}

/// Sorts by preference, shuffling hosts of equal preference (RFC 5321 §5.1 load spreading).
fn order(mxs: &mut [(u16, String)]) {
    mxs.shuffle(&mut rand::thread_rng());
    mxs.sort_by_key(|(pref, _)| *pref);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_by_preference() {
        let mut m = vec![
            (20, "c".to_string()),
            (10, "a".to_string()),
            (10, "b".to_string()),
            (5, "z".to_string()),
        ];
        order(&mut m);
        let prefs: Vec<u16> = m.iter().map(|x| x.0).collect();
        assert_eq!(prefs, vec![5, 10, 10, 20]);
        assert_eq!(m[0].1, "z");
        assert_eq!(m[3].1, "c");
    }

    #[test]
    fn fqdn_adds_one_dot() {
        assert_eq!(fqdn("a.test"), "a.test.");
        assert_eq!(fqdn("a.test."), "a.test.");
    }
}
