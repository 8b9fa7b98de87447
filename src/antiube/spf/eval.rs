//! `check_host()` (RFC 7208 sections 4 to 6): record selection, mechanism matching, include and
//! redirect, the processing limits of section 4.6.4 and the explanation of a `fail`.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;

use super::dns::{DnsError, DnsResult, SpfDns};
use super::macros::{self, Context, MacroVars};
use super::record::{is_spf_record, Mechanism, Qualifier, Record};
use super::{SpfOptions, SpfOutcome, SpfResult};

/// Names of an MX or PTR answer followed at most (section 4.6.4).
const MAX_NAMES: usize = 10;

/// Why evaluation stopped early.
enum Abort {
    /// `temperror`, with the reason.
    Temp(String),
    /// `permerror`, with the reason.
    Perm(String),
}

/// The result of one record (the top one, an include's or a redirect's target).
struct Verdict {
    result: SpfResult,
    explanation: Option<String>,
}

/// One `check_host()` evaluation: the inputs and the limit counters shared by every nested
/// include and redirect.
pub(super) struct Eval<'e, D> {
    dns: &'e D,
    opts: &'e SpfOptions,
    /// The client (v4-mapped IPv6 already turned into IPv4).
    ip: IpAddr,
    /// The sender's local part (`postmaster` when it had none).
    local: &'e str,
    /// The sender's domain (`%{o}`).
    sender_domain: &'e str,
    /// The HELO name (`%{h}`).
    helo: &'e str,
    /// Seconds since the epoch (`%{t}`).
    now: u64,
    /// Terms that queried DNS so far (include, a, mx, ptr, exists, redirect).
    dns_terms: u32,
    /// Void lookups so far (NXDOMAIN or no data).
    voids: u32,
}

/// Whether `domain` can be looked up at all (section 4.3): at least two labels, none empty or
/// longer than 63 octets, letters, digits, `-` and `_` only.
pub(super) fn valid_domain(domain: &str) -> bool {
    let d = domain.strip_suffix('.').unwrap_or(domain);
    !d.is_empty()
        && d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn in_net4(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_net6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

fn is_same_or_sub(name: &str, domain: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    name.eq_ignore_ascii_case(domain)
        || (name.len() > domain.len()
            && name.as_bytes()[name.len() - domain.len() - 1] == b'.'
            && name[name.len() - domain.len()..].eq_ignore_ascii_case(domain))
}

fn temp(what: &str, name: &str, e: &DnsError) -> Abort {
    Abort::Temp(format!("{what} lookup of {name}: {e}"))
}

impl<'e, D: SpfDns> Eval<'e, D> {
    pub(super) fn new(
        dns: &'e D,
        opts: &'e SpfOptions,
        ip: IpAddr,
        local: &'e str,
        sender_domain: &'e str,
        helo: &'e str,
        now: u64,
    ) -> Self {
        Eval {
            dns,
            opts,
            ip,
            local,
            sender_domain,
            helo,
            now,
            dns_terms: 0,
            voids: 0,
        }
    }

    /// Runs `check_host()` for `domain`.
    pub(super) async fn run(mut self, domain: &str) -> SpfOutcome {
        if !valid_domain(domain) {
            return SpfOutcome {
                result: SpfResult::None,
                explanation: None,
                problem: Some(format!("{domain:?} is not a domain name that can have SPF")),
            };
        }
        match self.check(domain.to_string(), true, false).await {
            Ok(v) => SpfOutcome {
                result: v.result,
                explanation: v.explanation,
                problem: None,
            },
            Err(Abort::Temp(why)) => SpfOutcome {
                result: SpfResult::TempError,
                explanation: None,
                problem: Some(why),
            },
            Err(Abort::Perm(why)) => SpfOutcome {
                result: SpfResult::PermError,
                explanation: None,
                problem: Some(why),
            },
        }
    }

    fn vars<'v>(&'v self, domain: &'v str, validated: &'v str) -> MacroVars<'v> {
        MacroVars {
            local: self.local,
            sender_domain: self.sender_domain,
            domain,
            ip: self.ip,
            helo: self.helo,
            validated,
            receiver: &self.opts.receiver,
            now: self.now,
        }
    }

    fn count_term(&mut self) -> Result<(), Abort> {
        self.dns_terms += 1;
        if self.dns_terms > self.opts.max_dns_terms {
            return Err(Abort::Perm(format!(
                "more than {} DNS-querying mechanisms and redirects (RFC 7208 section 4.6.4)",
                self.opts.max_dns_terms
            )));
        }
        Ok(())
    }

    /// A term's lookup: temporary errors abort, NXDOMAIN and no data count as void lookups.
    fn void_checked<T>(
        &mut self,
        what: &str,
        name: &str,
        r: DnsResult<T>,
    ) -> Result<Vec<T>, Abort> {
        match r {
            Ok(v) if !v.is_empty() => Ok(v),
            Ok(_) | Err(DnsError::NxDomain) => {
                self.voids += 1;
                if self.voids > self.opts.max_void_lookups {
                    return Err(Abort::Perm(format!(
                        "more than {} lookups without an answer (RFC 7208 section 4.6.4); \
                         the last was {what} {name}",
                        self.opts.max_void_lookups
                    )));
                }
                Ok(Vec::new())
            }
            Err(e) => Err(temp(what, name, &e)),
        }
    }

    /// The SPF record of `domain`: `None` when it has none.
    async fn fetch(&mut self, domain: &str) -> Result<Option<String>, Abort> {
        let txts = match self.dns.txt(domain).await {
            Ok(t) => t,
            Err(DnsError::NxDomain) => return Ok(None),
            Err(e) => return Err(temp("TXT", domain, &e)),
        };
        let mut found = None;
        for t in txts {
            if is_spf_record(&t) {
                if found.is_some() {
                    return Err(Abort::Perm(format!(
                        "{domain} has more than one SPF record; it must have one"
                    )));
                }
                found = Some(t);
            }
        }
        Ok(found)
    }

    /// Evaluates `domain`'s record, following its redirect. `want_exp`: compute the explanation
    /// of a `fail` (not inside an include, where a fail is only "no match"). `redirected`: a
    /// missing record is a permerror (section 6.1).
    fn check(
        &mut self,
        domain: String,
        want_exp: bool,
        redirected: bool,
    ) -> Pin<Box<dyn Future<Output = Result<Verdict, Abort>> + Send + '_>> {
        Box::pin(self.check_record(domain, want_exp, redirected))
    }

    async fn check_record(
        &mut self,
        mut domain: String,
        want_exp: bool,
        mut redirected: bool,
    ) -> Result<Verdict, Abort> {
        loop {
            let Some(txt) = self.fetch(&domain).await? else {
                if redirected {
                    return Err(Abort::Perm(format!(
                        "redirect to {domain}, which has no SPF record"
                    )));
                }
                return Ok(Verdict {
                    result: SpfResult::None,
                    explanation: None,
                });
            };
            let record =
                Record::parse(&txt).map_err(|e| Abort::Perm(format!("record of {domain}: {e}")))?;
            for d in &record.directives {
                if d.mechanism.queries_dns() {
                    self.count_term()?;
                }
                if self.matches(&d.mechanism, &domain).await? {
                    let result = match d.qualifier {
                        Qualifier::Pass => SpfResult::Pass,
                        Qualifier::Fail => SpfResult::Fail,
                        Qualifier::SoftFail => SpfResult::SoftFail,
                        Qualifier::Neutral => SpfResult::Neutral,
                    };
                    let explanation = match (result, record.exp) {
                        (SpfResult::Fail, Some(exp)) if want_exp => {
                            self.explain(exp, &domain).await
                        }
                        _ => None,
                    };
                    return Ok(Verdict {
                        result,
                        explanation,
                    });
                }
            }
            let Some(spec) = record.redirect else {
                return Ok(Verdict {
                    result: SpfResult::Neutral,
                    explanation: None,
                });
            };
            self.count_term()?;
            let Some(next) = self.target(Some(spec), &domain).await? else {
                return Err(Abort::Perm(format!(
                    "redirect={spec} of {domain} does not expand to a domain name"
                )));
            };
            drop(record);
            domain = next;
            redirected = true;
        }
    }

    /// Expands a mechanism's domain-spec (or returns the current domain). `None`: the expansion
    /// is not a name DNS can hold (an empty label, a label over 63 octets), which the caller
    /// treats as a name that does not exist, without asking DNS (RFC 7208 leaves this case
    /// open; the test suite accepts it).
    async fn target(&mut self, spec: Option<&str>, domain: &str) -> Result<Option<String>, Abort> {
        let Some(spec) = spec else {
            return Ok(Some(domain.to_string()));
        };
        let validated = if macros::uses_p(spec, Context::Domain) {
            self.validated_name(domain).await
        } else {
            String::new()
        };
        let mut out = String::with_capacity(spec.len() + 32);
        macros::expand_domain(spec, &self.vars(domain, &validated), &mut out)
            .map_err(|e| Abort::Perm(e.to_string()))?;
        let dns_name = !out.is_empty() && out.split('.').all(|l| !l.is_empty() && l.len() <= 63);
        Ok(dns_name.then_some(out))
    }

    /// Addresses of `name` of the client's family; `void`: count an empty answer.
    async fn addr_match(
        &mut self,
        name: &str,
        cidr4: u8,
        cidr6: u8,
        void: bool,
    ) -> Result<bool, Abort> {
        match self.ip {
            IpAddr::V4(ip) => {
                let r = self.dns.a(name).await;
                let addrs = if void {
                    self.void_checked("A", name, r)?
                } else {
                    match r {
                        Ok(a) => a,
                        Err(DnsError::NxDomain) => Vec::new(),
                        Err(e) => return Err(temp("A", name, &e)),
                    }
                };
                Ok(addrs.into_iter().any(|a| in_net4(ip, a, cidr4)))
            }
            IpAddr::V6(ip) => {
                let r = self.dns.aaaa(name).await;
                let addrs = if void {
                    self.void_checked("AAAA", name, r)?
                } else {
                    match r {
                        Ok(a) => a,
                        Err(DnsError::NxDomain) => Vec::new(),
                        Err(e) => return Err(temp("AAAA", name, &e)),
                    }
                };
                Ok(addrs.into_iter().any(|a| in_net6(ip, a, cidr6)))
            }
        }
    }

    /// Whether `name` has an address record equal to the client's address (errors: no).
    async fn forward_confirms(&self, name: &str) -> bool {
        match self.ip {
            IpAddr::V4(ip) => matches!(self.dns.a(name).await, Ok(a) if a.contains(&ip)),
            IpAddr::V6(ip) => matches!(self.dns.aaaa(name).await, Ok(a) if a.contains(&ip)),
        }
    }

    /// The PTR names of the client (at most ten), or none on any error.
    async fn ptr_names(&mut self, count_void: bool) -> Result<Vec<String>, Abort> {
        let r = self.dns.ptr(self.ip).await;
        let mut names = match r {
            Ok(n) if !n.is_empty() => n,
            Ok(_) | Err(DnsError::NxDomain) if count_void => {
                self.void_checked(
                    "PTR",
                    "the client address",
                    Ok::<Vec<String>, _>(Vec::new()),
                )?;
                Vec::new()
            }
            _ => Vec::new(),
        };
        names.truncate(MAX_NAMES);
        Ok(names)
    }

    /// The `p` macro (section 7.3): a forward-confirmed PTR name of the client, preferring
    /// `domain` or a subdomain of it; `unknown` when there is none.
    async fn validated_name(&mut self, domain: &str) -> String {
        let names = self.ptr_names(false).await.unwrap_or_default();
        let mut fallback = None;
        for name in names {
            if self.forward_confirms(&name).await {
                if is_same_or_sub(&name, domain) {
                    return name;
                }
                fallback.get_or_insert(name);
            }
        }
        fallback.unwrap_or_else(|| "unknown".to_string())
    }

    async fn matches(&mut self, m: &Mechanism<'_>, domain: &str) -> Result<bool, Abort> {
        match *m {
            Mechanism::All => Ok(true),
            Mechanism::Ip4(net, len) => {
                Ok(matches!(self.ip, IpAddr::V4(ip) if in_net4(ip, net, len)))
            }
            Mechanism::Ip6(net, len) => {
                Ok(matches!(self.ip, IpAddr::V6(ip) if in_net6(ip, net, len)))
            }
            Mechanism::A {
                domain: spec,
                cidr4,
                cidr6,
            } => {
                let Some(target) = self.target(spec, domain).await? else {
                    return Ok(false);
                };
                self.addr_match(&target, cidr4, cidr6, true).await
            }
            Mechanism::Mx {
                domain: spec,
                cidr4,
                cidr6,
            } => {
                let Some(target) = self.target(spec, domain).await? else {
                    return Ok(false);
                };
                let r = self.dns.mx(&target).await;
                let hosts = self.void_checked("MX", &target, r)?;
                if hosts.len() > MAX_NAMES {
                    return Err(Abort::Perm(format!(
                        "{target} has more than {MAX_NAMES} MX records (RFC 7208 section 4.6.4)"
                    )));
                }
                for host in &hosts {
                    if self.addr_match(host, cidr4, cidr6, false).await? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr(spec) => {
                let Some(target) = self.target(spec, domain).await? else {
                    return Ok(false);
                };
                for name in self.ptr_names(true).await? {
                    if is_same_or_sub(&name, &target) && self.forward_confirms(&name).await {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Exists(spec) => {
                let Some(target) = self.target(Some(spec), domain).await? else {
                    return Ok(false);
                };
                let r = self.dns.a(&target).await;
                Ok(!self.void_checked("A", &target, r)?.is_empty())
            }
            Mechanism::Include(spec) => {
                let Some(target) = self.target(Some(spec), domain).await? else {
                    return Err(Abort::Perm(format!(
                        "include:{spec} does not expand to a domain name"
                    )));
                };
                let v = self.check(target.clone(), false, false).await?;
                match v.result {
                    SpfResult::Pass => Ok(true),
                    SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => Ok(false),
                    SpfResult::None => Err(Abort::Perm(format!(
                        "include:{target}, which has no SPF record"
                    ))),
                    SpfResult::TempError => Err(Abort::Temp(format!("include:{target}"))),
                    SpfResult::PermError => Err(Abort::Perm(format!("include:{target}"))),
                }
            }
        }
    }

    /// The explanation of a `fail` (section 6.2); any problem means none.
    async fn explain(&mut self, spec: &str, domain: &str) -> Option<String> {
        let target = self.target(Some(spec), domain).await.ok()??;
        let txts = self.dns.txt(&target).await.ok()?;
        let [txt] = txts.as_slice() else {
            return None;
        };
        let validated = if macros::uses_p(txt, Context::Explanation) {
            self.validated_name(domain).await
        } else {
            String::new()
        };
        let mut out = String::with_capacity(txt.len() + 32);
        macros::expand(
            txt,
            Context::Explanation,
            &self.vars(domain, &validated),
            &mut out,
        )
        .ok()?;
        Some(out)
    }
}

#[cfg(test)]
#[path = "eval_tests.rs"]
mod tests;
