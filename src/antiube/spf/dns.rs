//! The DNS the evaluator asks ([`SpfDns`]) and its implementation over hickory-resolver
//! ([`HickoryDns`]), with a timeout on every lookup.
//!
//! Security note: answers are untrusted; the evaluator bounds how many it asks for and how many
//! names of an MX or PTR answer it follows (RFC 7208 section 4.6.4).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::{Resolver, TokioResolver};
use thiserror::Error;

/// A lookup that produced no usable answer. An empty `Ok` list is "no data" (RCODE 0 with no
/// answer of the asked type).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DnsError {
    /// The name does not exist (RCODE 3, NXDOMAIN).
    #[error("no such domain")]
    NxDomain,
    /// No answer within the lookup timeout.
    #[error("DNS lookup timed out")]
    Timeout,
    /// SERVFAIL, REFUSED, a network error or a malformed answer.
    #[error("DNS lookup failed: {0}")]
    Temporary(String),
}

/// The outcome of one lookup.
pub type DnsResult<T> = Result<Vec<T>, DnsError>;

/// The DNS lookups SPF evaluation needs. Names are given without a trailing dot and are always
/// absolute. Implementations follow CNAMEs and return only records of the asked type.
pub trait SpfDns: Sync {
    /// TXT records of `name`, each record's strings concatenated (RFC 7208 section 3.3);
    /// bytes that are not UTF-8 become U+FFFD (which makes an SPF record invalid, as it must be).
    fn txt(&self, name: &str) -> impl Future<Output = DnsResult<String>> + Send;
    /// A records of `name`.
    fn a(&self, name: &str) -> impl Future<Output = DnsResult<Ipv4Addr>> + Send;
    /// AAAA records of `name`.
    fn aaaa(&self, name: &str) -> impl Future<Output = DnsResult<Ipv6Addr>> + Send;
    /// The exchange names of `name`'s MX records (without trailing dots; preferences do not
    /// matter to SPF).
    fn mx(&self, name: &str) -> impl Future<Output = DnsResult<String>> + Send;
    /// PTR names of `ip` (`in-addr.arpa` / `ip6.arpa`), without trailing dots.
    fn ptr(&self, ip: IpAddr) -> impl Future<Output = DnsResult<String>> + Send;
}

/// Building the resolver failed.
#[derive(Debug, Error)]
pub enum ResolverSetupError {
    /// `/etc/resolv.conf` could not be used.
    #[error("cannot read the system DNS configuration ({0}): name the DNS servers explicitly")]
    System(String),
    /// hickory refused the configuration.
    #[error("cannot build the DNS resolver: {0}")]
    Build(String),
}

/// [`SpfDns`] over hickory-resolver. Every lookup is bounded by `timeout` (a server that does
/// not answer gives [`DnsError::Timeout`], hence `temperror`); answers are cached by hickory.
#[derive(Clone)]
pub struct HickoryDns {
    /// The shared resolver (its cache serves repeated SPF lookups of popular domains).
    resolver: TokioResolver,
    /// Bound on each lookup, retries included.
    timeout: Duration,
}

impl HickoryDns {
    /// Wraps an existing resolver.
    pub fn new(resolver: TokioResolver, timeout: Duration) -> Self {
        HickoryDns { resolver, timeout }
    }

    /// A resolver asking `servers` (UDP, TCP for truncated answers), or the system's servers
    /// from `/etc/resolv.conf` when `servers` is empty.
    pub fn with_servers(
        servers: &[SocketAddr],
        timeout: Duration,
    ) -> Result<Self, ResolverSetupError> {
        Ok(HickoryDns {
            resolver: Self::build_resolver(servers, timeout)?,
            timeout,
        })
    }

    /// The resolver every DNS client of the node uses (SPF, DKIM/DMARC, outbound MX): it asks
    /// `servers` over UDP, and over TCP for truncated answers, or the system's servers from
    /// `/etc/resolv.conf` when `servers` is empty; each query waits `timeout` per attempt, two
    /// attempts.
    pub fn build_resolver(
        servers: &[SocketAddr],
        timeout: Duration,
    ) -> Result<TokioResolver, ResolverSetupError> {
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| ResolverSetupError::System(e.to_string()))?
        } else {
            let servers = servers
                .iter()
                .map(|sa| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = sa.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = sa.port();
                    NameServerConfig::new(sa.ip(), true, vec![udp, tcp])
                })
                .collect();
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let opts = builder.options_mut();
        opts.timeout = timeout;
        opts.attempts = 2;
        builder
            .build()
            .map_err(|e| ResolverSetupError::Build(e.to_string()))
    }

    /// The underlying resolver, to share its cache with other DNS clients (DKIM, DMARC).
    pub fn resolver(&self) -> &TokioResolver {
        &self.resolver
    }

    /// The bound on each lookup.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn run<T>(
        &self,
        lookup: impl Future<Output = Result<hickory_resolver::lookup::Lookup, NetError>>,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> DnsResult<T> {
        match tokio::time::timeout(self.timeout, lookup).await {
            Err(_) => Err(DnsError::Timeout),
            Ok(Ok(l)) => Ok(l.answers().iter().filter_map(|r| pick(&r.data)).collect()),
            Ok(Err(e)) => map_error(&e),
        }
    }
}

/// hickory reports "no data" (RCODE 0 without an answer of the type) as an error; SPF wants
/// an empty answer, which counts as a void lookup.
fn map_error<T>(e: &NetError) -> DnsResult<T> {
    match e {
        NetError::Dns(HickoryDnsError::NoRecordsFound(nr)) => match nr.response_code {
            ResponseCode::NXDomain => Err(DnsError::NxDomain),
            ResponseCode::NoError => Ok(Vec::new()),
            other => Err(DnsError::Temporary(other.to_string())),
        },
        NetError::Timeout => Err(DnsError::Timeout),
        other => Err(DnsError::Temporary(other.to_string())),
    }
}

/// The query name. ASCII names go to DNS label by label as they are (a macro expansion may put
/// `%`, `+` or `=` in a label, which IDNA processing would refuse); others through IDNA. A
/// name DNS cannot carry (label over 63 octets, name over 255) does not exist.
fn dns_name(name: &str) -> Result<Name, DnsError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let parsed = if name.is_ascii() {
        Name::from_labels(name.split('.').map(str::as_bytes))
    } else {
        Name::from_utf8(name)
    };
    let mut n = parsed.map_err(|_| DnsError::NxDomain)?;
    n.set_fqdn(true);
    Ok(n)
}

fn name_text(n: &Name) -> String {
    let mut s = n.to_ascii();
    if s.ends_with('.') {
        s.pop();
    }
    s
}

impl SpfDns for HickoryDns {
    async fn txt(&self, name: &str) -> DnsResult<String> {
        self.run(self.resolver.txt_lookup(dns_name(name)?), |d| match d {
            RData::TXT(t) => {
                let mut s = String::new();
                for part in t.txt_data.iter() {
                    s.push_str(&String::from_utf8_lossy(part));
                }
                Some(s)
            }
            _ => None,
        })
        .await
    }

    async fn a(&self, name: &str) -> DnsResult<Ipv4Addr> {
        self.run(self.resolver.ipv4_lookup(dns_name(name)?), |d| match d {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .await
    }

    async fn aaaa(&self, name: &str) -> DnsResult<Ipv6Addr> {
        self.run(self.resolver.ipv6_lookup(dns_name(name)?), |d| match d {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .await
    }

    async fn mx(&self, name: &str) -> DnsResult<String> {
        self.run(self.resolver.mx_lookup(dns_name(name)?), |d| match d {
            RData::MX(mx) => Some(name_text(&mx.exchange)),
            _ => None,
        })
        .await
    }

    async fn ptr(&self, ip: IpAddr) -> DnsResult<String> {
        let name = Name::from(ip);
        self.run(self.resolver.reverse_lookup(name), |d| match d {
            RData::PTR(p) => Some(name_text(&p.0)),
            _ => None,
        })
        .await
    }
}
