//! The anti-UBE filter the SMTP session calls: one [`Filter`] per node, one [`UbeSession`] per
//! SMTP session. It runs the stages in the order of the transaction and turns their findings
//! into decisions with the policy in force:
//!
//! - connect: per-IP limits ([`super::anvil`]); the DNSBL lookups and forward-confirmed
//!   reverse DNS start in the background (they overlap the pregreet wait and the client's
//!   first commands) and are judged at the first RCPT, so that refusals name the sender and
//!   recipient and the client gets a reply it will not retry at once;
//! - MAIL FROM: SPF of the MAIL FROM and HELO identities;
//! - RCPT TO: DNSBL score, reverse DNS requirement, greylisting;
//! - end of DATA: Postfix maps, scoring rules, GTUBE, DKIM/DMARC, clamd, spamd; the score
//!   adds everything found since connect and decides reject, tag or accept.
//!
//! Every refusal and every finished message is a structured [`Event`] (tracing target
//! `antiube`, one JSON object, and a broadcast channel for the statistics feature) and is
//! counted per policy and action.
//!
//! Never: write the queue or the store (it returns verdicts and headers; the session acts), or
//! let a failing check decide by accident: a DNS or scanner failure does what the policy's
//! `on_error` says, nothing else. Clients in `connection.allow_networks` and authenticated
//! submission skip every check but the virus scan.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::anvil::{Anvil, AnvilGuard};
use super::content::ContentScanner;
use super::dkim::AuthVerifier;
use super::dnsbl::{Dnsbl, DnsblOutcome};
use super::greylist::{GreyVerdict, Greylist};
use super::policy::{parse_server, OnError, Policy, SpfFail};
use super::rdns::{fcrdns, Fcrdns};
use super::spf::{self, HickoryDns, SpfOptions, SpfOutcome, SpfResult};
use super::PolicyHandle;

mod data;

/// A decision on one step of the transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Go on.
    Accept,
    /// Refuse with this reply (`code` 4xx or 5xx, enhanced status, text).
    Refuse(Refusal),
    /// Claim delivery and drop the message (a map's DISCARD).
    Discard(String),
}

/// A refusal's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 421, 450, 451, 550, 554…
    pub code: u16,
    /// The enhanced status code.
    pub status: (u8, u16, u16),
    /// The reply text.
    pub text: String,
    /// Close the connection after the reply (pregreet, connection limits).
    pub close: bool,
    /// The policy that refused (one of [`POLICIES`]), for the mail log.
    pub policy: &'static str,
}

impl Refusal {
    fn new(code: u16, status: (u8, u16, u16), text: impl Into<String>) -> Self {
        Refusal {
            code,
            status,
            text: text.into(),
            close: false,
            policy: "antiube",
        }
    }
}

/// The end-of-DATA result: the verdict, and the header fields to put on top of the message
/// (`Authentication-Results`, `Received-SPF`, `X-Spam-*`), and header or body lines an
/// `IGNORE` rule removes.
#[derive(Debug, Clone)]
pub struct ContentDecision {
    /// What to do with the message.
    pub verdict: Verdict,
    /// Header fields to prepend, CRLF-terminated.
    pub prepend: Vec<u8>,
    /// Byte ranges of the scanned message (as given) to delete.
    pub remove: Vec<std::ops::Range<usize>>,
    /// Tagged as spam (the `X-Spam-Flag: YES` header is in `prepend`).
    pub tagged: bool,
    /// The total score.
    pub score: f64,
}

/// One decision, for the statistics feature and the log.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Unix time in milliseconds.
    pub time_ms: u64,
    /// The node that decided.
    pub node: String,
    /// `connect`, `mail`, `rcpt` or `data`.
    pub stage: &'static str,
    /// The policy that decided (fixed set: see [`POLICIES`]).
    pub policy: &'static str,
    /// What fired: DNSBL zones, rule names, `map:line`, the virus name…
    pub rule: String,
    /// The total score at the decision.
    pub score: f64,
    /// The client.
    pub client_ip: IpAddr,
    /// Its HELO name.
    pub helo: String,
    /// MAIL FROM (empty for `<>` or before MAIL).
    pub sender: String,
    /// The recipients (accepted so far, or the one refused).
    pub recipients: Vec<String>,
    /// `reject`, `tempfail`, `discard`, `tag`, `accept`, `warn` or `close`.
    pub action: &'static str,
    /// The reply sent, when one was.
    pub reply: String,
}

/// The fixed `policy` values of events and metrics.
pub const POLICIES: &[&str] = &[
    "anvil",
    "pregreet",
    "dnsbl",
    "fcrdns",
    "spf",
    "greylist",
    "header_checks",
    "mime_header_checks",
    "body_checks",
    "mime",
    "score",
    "dmarc",
    "virus",
    "clamd",
    "spamd",
    "allowlist",
];

/// The fixed `action` values.
pub const ACTIONS: &[&str] = &[
    "reject", "tempfail", "discard", "tag", "accept", "warn", "close",
];

/// The stages built from one policy version; rebuilt when the policy changes.
struct Stages {
    version: u64,
    policy: Arc<Policy>,
    dns: Arc<HickoryDns>,
    dnsbl: Arc<Dnsbl>,
    content: ContentScanner,
    auth: AuthVerifier,
}

/// The node's filter, shared by its MX and submission listeners.
pub struct Filter {
    handle: Arc<PolicyHandle>,
    hostname: String,
    node: String,
    anvil: Anvil,
    greylist: Option<Greylist>,
    stages: Mutex<Option<Arc<Stages>>>,
    events: broadcast::Sender<Arc<Event>>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("node", &self.node)
            .field("version", &self.handle.version())
            .finish()
    }
}

impl Filter {
    /// The filter of node `node` answering as `hostname`, enforcing `handle`'s policy;
    /// greylisting triplets are kept in `greylist_file` (on the node's local disk).
    pub fn new(
        handle: Arc<PolicyHandle>,
        hostname: &str,
        node: &str,
        greylist_file: &Path,
    ) -> std::io::Result<Filter> {
        let policy = handle.get();
        let greylist = Greylist::open(greylist_file, &policy.settings.greylist)?;
        Ok(Filter {
            handle,
            hostname: hostname.to_string(),
            node: node.to_string(),
            anvil: Anvil::new(),
            greylist: Some(greylist),
            stages: Mutex::new(None),
            events: broadcast::channel(1024).0,
        })
    }

    /// Decisions as they are made (a slow receiver loses the oldest: the log has them all).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Writes the greylisting triplets to disk (called periodically and at shutdown).
    pub fn save(&self) -> std::io::Result<()> {
        match &self.greylist {
            Some(g) => g.save(),
            None => Ok(()),
        }
    }

    /// The stages of the policy in force, rebuilt when its version changed.
    fn stages(&self) -> Result<Arc<Stages>, String> {
        let version = self.handle.version();
        let mut cur = self.stages.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = cur.as_ref().filter(|s| s.version == version) {
            return Ok(s.clone());
        }
        let policy = self.handle.get();
        let built = build(version, policy.clone()).map_err(|e| {
            format!("anti-UBE policy version {version} cannot be put in force: {e}")
        })?;
        if let Some(g) = &self.greylist {
            g.update_settings(&policy.settings.greylist);
        }
        let built = Arc::new(built);
        *cur = Some(built.clone());
        Ok(built)
    }

    fn emit(&self, mut event: Event) {
        event.node.clone_from(&self.node);
        crate::metrics::antiube_decision(event.policy, event.action);
        match serde_json::to_string(&event) {
            Ok(json) => tracing::info!(target: "antiube", decision = %json, "anti-UBE decision"),
            Err(e) => tracing::warn!(error = %e, "cannot encode an anti-UBE event"),
        }
        let _ = self.events.send(Arc::new(event));
    }

    /// Starts the checks of a new connection from `ip`. `mx` is false for submission (whose
    /// authenticated users skip everything but the virus scan). `Err` is the reply to send
    /// instead of the greeting (then close); `Ok(None)`: this session goes unfiltered (the
    /// filter cannot be built and the client is allowlisted or on submission).
    pub fn connect(self: &Arc<Self>, ip: IpAddr, mx: bool) -> Result<Option<UbeSession>, Refusal> {
        let stages = match self.stages() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "anti-UBE filter unavailable");
                crate::metrics::antiube_check_error("policy");
                let trusted = !mx
                    || self
                        .handle
                        .get()
                        .settings
                        .connection
                        .allow_networks
                        .iter()
                        .any(|n| n.contains(ip));
                if trusted {
                    return Ok(None);
                }
                // Never accept-all by accident: the MX answers 421 until the policy works.
                let mut r = Refusal::new(421, (4, 3, 0), "filter unavailable, try again later");
                r.close = true;
                return Err(r);
            }
        };
        let s = &stages.policy.settings;
        let allowed = s.connection.allow_networks.iter().any(|n| n.contains(ip));
        let mut session = UbeSession {
            filter: self.clone(),
            stages: stages.clone(),
            ip,
            mx,
            exempt: allowed || !mx,
            anvil: None,
            pending: None,
            conn: None,
            helo_spf: None,
            spf: None,
        };
        if !mx {
            return Ok(Some(session));
        }
        if !allowed {
            let c = &s.connection;
            match self
                .anvil
                .open(ip, c.max_connections_per_ip, c.max_connection_rate_per_ip)
            {
                Ok(g) => session.anvil = Some(g),
                Err(e) => {
                    let mut r = Refusal::new(421, (4, 7, 0), format!("{e}, try again later"));
                    r.close = true;
                    session.event(
                        "connect",
                        "anvil",
                        e.to_string(),
                        "close",
                        &mut r,
                        &[],
                        "",
                        "",
                    );
                    return Err(r);
                }
            }
            let stages = stages.clone();
            let need_rdns = s.connection.require_fcrdns || s.connection.fcrdns_score != 0.0;
            session.pending = Some(tokio::spawn(async move {
                let dnsbl = async {
                    if stages.policy.settings.dnsbl.lists.is_empty() {
                        None
                    } else {
                        Some(stages.dnsbl.check(&*stages.dns, ip).await)
                    }
                };
                let rdns = async {
                    if need_rdns {
                        Some(fcrdns(&*stages.dns, ip).await)
                    } else {
                        None
                    }
                };
                let (dnsbl, rdns) = tokio::join!(dnsbl, rdns);
                ConnChecks { dnsbl, rdns }
            }));
        }
        Ok(Some(session))
    }
}

fn build(version: u64, policy: Arc<Policy>) -> Result<Stages, String> {
    let s = &policy.settings;
    let servers = s
        .dns
        .servers
        .iter()
        .map(|x| parse_server(x))
        .collect::<Result<Vec<_>, _>>()?;
    let timeout = Duration::from_millis(s.dns.timeout_ms);
    let dns = HickoryDns::with_servers(&servers, timeout).map_err(|e| e.to_string())?;
    // One resolver (and cache) for SPF, DNSBL, reverse DNS, DKIM and DMARC.
    let auth = AuthVerifier::with_dns(&dns);
    Ok(Stages {
        version,
        dns: Arc::new(dns),
        dnsbl: Arc::new(Dnsbl::new(&s.dnsbl).map_err(|e| e.to_string())?),
        content: ContentScanner::new(&policy)?,
        auth,
        policy,
    })
}

/// What the background connection checks found.
#[derive(Debug, Clone)]
struct ConnChecks {
    dnsbl: Option<Arc<DnsblOutcome>>,
    rdns: Option<Fcrdns>,
}

/// The filter's view of one SMTP session.
pub struct UbeSession {
    filter: Arc<Filter>,
    stages: Arc<Stages>,
    ip: IpAddr,
    mx: bool,
    exempt: bool,
    #[allow(dead_code)] // held for its Drop: the connection count
    anvil: Option<AnvilGuard>,
    pending: Option<JoinHandle<ConnChecks>>,
    conn: Option<ConnChecks>,
    helo_spf: Option<(String, SpfOutcome)>,
    /// SPF of the current transaction's MAIL FROM: (domain checked, outcome).
    spf: Option<(String, SpfOutcome)>,
}

impl Drop for UbeSession {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            p.abort();
        }
    }
}

/// What an end-of-DATA check needs to know about the transaction.
pub struct TxInfo<'a> {
    /// The HELO name.
    pub helo: &'a str,
    /// MAIL FROM (empty for `<>`).
    pub sender: &'a str,
    /// The accepted recipients.
    pub recipients: &'a [&'a str],
}

impl UbeSession {
    /// How long the MX waits for a client talking before the greeting (zero: no wait).
    pub fn pregreet(&self) -> Duration {
        if self.exempt {
            Duration::ZERO
        } else {
            Duration::from_millis(self.stages.policy.settings.connection.pregreet_ms)
        }
    }

    /// The client talked before the greeting: the reply (then close).
    pub fn pregreeted(&self, octets: usize) -> Refusal {
        let mut r = Refusal::new(
            554,
            (5, 7, 1),
            format!(
                "{} protocol violation: talked before the greeting",
                self.filter.hostname
            ),
        );
        r.close = true;
        self.event(
            "connect",
            "pregreet",
            format!("{octets} octets before the greeting"),
            "close",
            &mut r,
            &[],
            "",
            "",
        );
        r
    }

    /// Whether the session has authenticated: everything but the virus scan is skipped.
    pub fn authenticated(&mut self) {
        self.exempt = true;
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        stage: &'static str,
        policy: &'static str,
        rule: String,
        action: &'static str,
        reply: &mut Refusal,
        recipients: &[&str],
        helo: &str,
        sender: &str,
    ) {
        reply.policy = policy;
        self.filter.emit(Event {
            time_ms: now_ms(),
            node: String::new(),
            stage,
            policy,
            rule,
            score: 0.0,
            client_ip: self.ip,
            helo: helo.to_string(),
            sender: sender.to_string(),
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
            action,
            reply: format!(
                "{} {}.{}.{} {}",
                reply.code, reply.status.0, reply.status.1, reply.status.2, reply.text
            ),
        });
    }

    /// MAIL FROM: SPF of the sender (and of the HELO name, once per session).
    pub async fn mail_from(&mut self, helo: &str, sender: &str) -> Verdict {
        self.spf = None;
        let s = &self.stages.policy.settings.spf;
        if self.exempt || !s.enabled {
            return Verdict::Accept;
        }
        let opts = SpfOptions {
            receiver: self.filter.hostname.clone(),
            ..SpfOptions::default()
        };
        let dns = &*self.stages.dns;
        if s.helo && self.helo_spf.as_ref().is_none_or(|(h, _)| h != helo) {
            let out = spf::check_helo(dns, &opts, self.ip, helo).await;
            self.helo_spf = Some((helo.to_string(), out));
        }
        let out = spf::check_mail_from(dns, &opts, self.ip, helo, sender).await;
        let domain = if sender.is_empty() {
            helo.to_string()
        } else {
            sender
                .rsplit_once('@')
                .map_or(sender, |(_, d)| d)
                .to_string()
        };
        let mut worst = (out.result, domain.clone(), out.explanation.clone());
        if let Some((h, o)) = &self.helo_spf {
            if o.result == SpfResult::Fail && worst.0 != SpfResult::Fail {
                worst = (o.result, h.clone(), o.explanation.clone());
            }
        }
        self.spf = Some((domain, out));
        match worst.0 {
            SpfResult::Fail if s.on_fail == SpfFail::Reject => {
                let why = worst.2.unwrap_or_else(|| {
                    format!(
                        "{} does not designate {} as permitted sender",
                        worst.1, self.ip
                    )
                });
                let mut r = Refusal::new(550, (5, 7, 23), format!("SPF fail: {why}"));
                self.event(
                    "mail",
                    "spf",
                    format!("fail:{}", worst.1),
                    "reject",
                    &mut r,
                    &[],
                    helo,
                    sender,
                );
                Verdict::Refuse(r)
            }
            SpfResult::TempError if s.on_temperror == OnError::Tempfail => {
                crate::metrics::antiube_check_error("spf");
                let mut r = Refusal::new(
                    451,
                    (4, 7, 24),
                    format!("SPF temporary error for {}, try again later", worst.1),
                );
                self.event(
                    "mail",
                    "spf",
                    format!("temperror:{}", worst.1),
                    "tempfail",
                    &mut r,
                    &[],
                    helo,
                    sender,
                );
                Verdict::Refuse(r)
            }
            _ => Verdict::Accept,
        }
    }

    async fn conn_checks(&mut self) -> Option<&ConnChecks> {
        if let Some(p) = self.pending.take() {
            match p.await {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "anti-UBE connection checks failed");
                    self.conn = Some(ConnChecks {
                        dnsbl: None,
                        rdns: None,
                    });
                }
            }
        }
        self.conn.as_ref()
    }

    /// RCPT TO of a recipient the directory accepted: DNSBL, reverse DNS, greylisting.
    pub async fn rcpt(&mut self, helo: &str, sender: &str, rcpt: &str) -> Verdict {
        if self.exempt {
            return Verdict::Accept;
        }
        let stages = self.stages.clone();
        let s = &stages.policy.settings;
        let ip = self.ip;
        if let Some(c) = self.conn_checks().await.cloned() {
            if let Some(d) = &c.dnsbl {
                if d.score >= s.dnsbl.reject_score && !d.hits.is_empty() {
                    let zones: Vec<&str> = d.hits.iter().map(|h| h.zone.as_str()).collect();
                    let mut r = Refusal::new(
                        554,
                        (5, 7, 1),
                        format!(
                            "Service unavailable; client [{ip}] blocked using {}",
                            zones.join(", ")
                        ),
                    );
                    self.event(
                        "rcpt",
                        "dnsbl",
                        zones.join(","),
                        "reject",
                        &mut r,
                        &[rcpt],
                        helo,
                        sender,
                    );
                    return Verdict::Refuse(r);
                }
                if d.tempfail {
                    crate::metrics::antiube_check_error("dnsbl");
                    let zones: Vec<&str> = d.errors.iter().map(|e| e.zone.as_str()).collect();
                    let mut r = Refusal::new(
                        451,
                        (4, 7, 1),
                        format!(
                            "blocklist lookup failed ({}), try again later",
                            zones.join(", ")
                        ),
                    );
                    self.event(
                        "rcpt",
                        "dnsbl",
                        zones.join(","),
                        "tempfail",
                        &mut r,
                        &[rcpt],
                        helo,
                        sender,
                    );
                    return Verdict::Refuse(r);
                }
            }
            if s.connection.require_fcrdns {
                match &c.rdns {
                    Some(Fcrdns::Confirmed(_)) | None => {}
                    Some(Fcrdns::TempError) => {
                        let mut r = Refusal::new(
                            450,
                            (4, 7, 25),
                            format!("cannot find your hostname, [{ip}]"),
                        );
                        self.event(
                            "rcpt",
                            "fcrdns",
                            "temperror".into(),
                            "tempfail",
                            &mut r,
                            &[rcpt],
                            helo,
                            sender,
                        );
                        return Verdict::Refuse(r);
                    }
                    Some(Fcrdns::Unconfirmed) => {
                        let mut r = Refusal::new(
                            550,
                            (5, 7, 25),
                            format!(
                                "cannot find your hostname, [{ip}]: reverse DNS does not match"
                            ),
                        );
                        self.event(
                            "rcpt",
                            "fcrdns",
                            "unconfirmed".into(),
                            "reject",
                            &mut r,
                            &[rcpt],
                            helo,
                            sender,
                        );
                        return Verdict::Refuse(r);
                    }
                }
            }
        }
        if s.greylist.enabled {
            if let Some(g) = &self.filter.greylist {
                if let GreyVerdict::Defer { retry_after_s } =
                    g.check(ip, sender, rcpt, SystemTime::now())
                {
                    let mut r = Refusal::new(
                        450,
                        (4, 2, 0),
                        format!("greylisted, try again in {retry_after_s} seconds"),
                    );
                    self.event(
                        "rcpt",
                        "greylist",
                        String::new(),
                        "tempfail",
                        &mut r,
                        &[rcpt],
                        helo,
                        sender,
                    );
                    return Verdict::Refuse(r);
                }
            }
        }
        Verdict::Accept
    }

    /// Whether this is an MX session.
    pub fn is_mx(&self) -> bool {
        self.mx
    }

    /// Whether the end of DATA has anything to check: a trusted session (allowlisted or
    /// authenticated) without a virus scanner has not, and its message is not read again.
    pub fn wants_content(&self) -> bool {
        !self.exempt || self.stages.policy.settings.clamd.is_some()
    }

    /// How many bytes of a message the content checks want: the larger of the scan limit and
    /// the scanners' limits.
    pub fn wanted_bytes(&self) -> usize {
        let s = &self.stages.policy.settings;
        let mut n = s.content.scan_limit_bytes;
        if let Some(c) = &s.clamd {
            n = n.max(c.max_bytes);
        }
        if let Some(sd) = &s.spamd {
            n = n.max(sd.max_bytes);
        }
        n
    }
}

/// RFC 7208 section 9.1's `Received-SPF:` field.
fn received_spf(
    out: &SpfOutcome,
    domain: &str,
    ip: IpAddr,
    tx: &TxInfo<'_>,
    hostname: &str,
) -> String {
    let comment = match out.result {
        SpfResult::Pass => format!("{hostname}: domain of {domain} designates {ip} as permitted sender"),
        SpfResult::Fail => format!("{hostname}: domain of {domain} does not designate {ip} as permitted sender"),
        SpfResult::SoftFail => format!("{hostname}: transitioning domain of {domain} does not designate {ip} as permitted sender"),
        SpfResult::Neutral => format!("{hostname}: {ip} is neither permitted nor denied by domain of {domain}"),
        SpfResult::None => format!("{hostname}: domain of {domain} does not provide an SPF record"),
        SpfResult::TempError => format!("{hostname}: error in processing during lookup of {domain}"),
        SpfResult::PermError => format!("{hostname}: permanent error in processing domain of {domain}"),
    };
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_control() && !matches!(c, ';' | '(' | ')' | '"' | '\\'))
            .take(255)
            .collect()
    };
    format!(
        "Received-SPF: {} ({}) client-ip={ip}; envelope-from=\"{}\"; helo={}; receiver={};\r\n",
        out.result,
        clean(&comment),
        clean(tx.sender),
        clean(tx.helo),
        clean(hostname),
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
