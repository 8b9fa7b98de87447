//! The node's metrics: one Prometheus registry, the handles every component records into, and
//! the text exposition served at `GET /metrics` by the admin listener. The catalogue (name,
//! type, labels, meaning) is `docs/METRICS.md`; keep the two in step.
//!
//! Two kinds of figures. *Events* (sessions, commands, rejections, deliveries, failovers) are
//! counted where they happen, through the functions of this module: each is an atomic add on a
//! handle resolved once (arrays of `OnceLock` per label combination, so the hot path never
//! hashes label values). *States* (Raft indexes, the lease, the queue, the store, process RSS)
//! are read at scrape time from the components that own them (module `scrape`), so nothing
//! has to keep them up to date.
//!
//! Must never: take a label value from client input or the directory (no addresses, user
//! names or IPs — label sets are fixed here, unknown commands become `other`), block, or
//! panic. `[metrics] enabled = false` turns every recording function into one relaxed atomic
//! load, and `/metrics` into a 404 (for measuring what instrumentation costs).
//!
//! Security note: `/metrics` is served without the admin token (Prometheus scrapes without
//! one); it carries no addresses, names of users or message data, only counts.

pub mod maillog;
pub mod scrape;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::smtp::Mode;

/// Whether events are recorded (`[metrics] enabled`). On by default.
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns recording (and `/metrics`) on or off for the whole process.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether metrics are recorded and served.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Latency buckets (seconds) shared by the protocol command histograms: 0.5 ms to 30 s.
const LATENCY: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Failover durations (seconds): grant to services answering.
const FAILOVER: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// SMTP-family services, the `service` label.
const SERVICES: [&str; 3] = ["mx", "submission", "lmtp"];

fn service(mode: Mode) -> usize {
    match mode {
        Mode::Mx => 0,
        Mode::Submission => 1,
        Mode::Lmtp => 2,
    }
}

/// SMTP/LMTP commands, the `command` label, as `smtp::Command::name` spells them; anything else is `other`.
const SMTP_COMMANDS: [&str; 15] = [
    "EHLO", "HELO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY", "HELP",
    "STARTTLS", "AUTH", "other",
];

/// IMAP commands as `Command::name` spells them; anything else is `other`.
const IMAP_COMMANDS: [&str; 35] = [
    "CAPABILITY",
    "NOOP",
    "LOGOUT",
    "STARTTLS",
    "LOGIN",
    "AUTHENTICATE",
    "ID",
    "ENABLE",
    "NAMESPACE",
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LSUB",
    "LIST",
    "STATUS",
    "APPEND",
    "CHECK",
    "CLOSE",
    "UNSELECT",
    "EXPUNGE",
    "SEARCH",
    "SORT",
    "FETCH",
    "STORE",
    "COPY",
    "MOVE",
    "IDLE",
    "GETQUOTA",
    "GETQUOTAROOT",
    "SETQUOTA",
    "other",
];

const POP3_COMMANDS: [&str; 15] = [
    "USER", "PASS", "AUTH", "STLS", "CAPA", "QUIT", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET",
    "TOP", "UIDL", "other",
];

const MANAGESIEVE_COMMANDS: [&str; 15] = [
    "AUTHENTICATE",
    "STARTTLS",
    "LOGOUT",
    "CAPABILITY",
    "NOOP",
    "UNAUTHENTICATE",
    "HAVESPACE",
    "PUTSCRIPT",
    "CHECKSCRIPT",
    "LISTSCRIPTS",
    "SETACTIVE",
    "GETSCRIPT",
    "DELETESCRIPT",
    "RENAMESCRIPT",
    "other",
];

/// Where in an SMTP transaction a refusal happened, the `stage` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Mail,
    Rcpt,
    Data,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
        }
    }
}

/// `2xx`, `4xx`, `5xx` for a reply code.
fn class(code: u16) -> &'static str {
    match code / 100 {
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Handles resolved on first use, one per label combination.
struct Cells<M> {
    cells: Box<[OnceLock<M>]>,
}

impl<M> Cells<M> {
    fn new(n: usize) -> Self {
        Cells {
            cells: (0..n).map(|_| OnceLock::new()).collect(),
        }
    }

    fn get(&self, i: usize, make: impl FnOnce() -> M) -> &M {
        self.cells[i].get_or_init(make)
    }
}

/// Every handle of the catalogue.
pub(crate) struct Metrics {
    pub(crate) registry: Registry,

    // Node.
    pub(crate) node_info: IntGaugeVec,
    pub(crate) cert_expiry: IntGaugeVec,

    // Listeners (every protocol, from the shared listener layer).
    listener_connections: IntCounterVec,
    listener_active: IntGaugeVec,
    listener_rejected: IntCounterVec,

    // SMTP family.
    smtp_sessions: IntCounterVec,
    smtp_sessions_active: IntGaugeVec,
    smtp_tls: IntCounterVec,
    smtp_commands: IntCounterVec,
    smtp_command_seconds: HistogramVec,
    smtp_command_cells: Cells<(IntCounter, Histogram)>,
    smtp_transactions: IntCounterVec,
    smtp_rejects: IntCounterVec,
    smtp_recipients: IntCounterVec,
    smtp_bytes: IntCounterVec,
    smtp_auth: IntCounterVec,
    smtp_errors: IntCounterVec,
    antiube_decisions: IntCounterVec,
    antiube_check_errors: IntCounterVec,
    antiube_policy_errors: IntCounter,
    antiube_policy_version: IntGauge,

    // IMAP and POP3.
    imap_commands: IntCounterVec,
    imap_command_seconds: HistogramVec,
    imap_cells: Cells<(IntCounter, Histogram)>,
    imap_errors: IntCounter,
    pop3_commands: IntCounterVec,
    pop3_command_seconds: HistogramVec,
    pop3_cells: Cells<(IntCounter, Histogram)>,
    pop3_errors: IntCounter,
    managesieve_commands: IntCounterVec,
    managesieve_command_seconds: HistogramVec,
    managesieve_cells: Cells<(IntCounter, Histogram)>,
    managesieve_errors: IntCounter,
    login_failures: IntCounterVec,

    // Queue.
    queue_deliveries: IntCounterVec,

    // Mailstore role (events; the state is read at scrape time).
    failovers: IntCounterVec,
    failover_seconds: Histogram,
    activations: IntCounterVec,
    leases_lost: IntCounter,
    volume_errors: IntCounterVec,
    vip_errors: IntCounterVec,

    // Scrape-time gauges (module `scrape`).
    pub(crate) raft: scrape::RaftGauges,
    pub(crate) mailstore: scrape::MailstoreGauges,
    pub(crate) queue: scrape::QueueGauges,
    pub(crate) store: scrape::StoreGauges,
}

pub(crate) fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

pub(crate) fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

pub(crate) fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(g.clone()))
        .expect("metric names are unique");
    g
}

pub(crate) fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric definition");
    r.register(Box::new(g.clone()))
        .expect("metric names are unique");
    g
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric definition");
    r.register(Box::new(h.clone()))
        .expect("metric names are unique");
    h
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            // process_resident_memory_bytes, process_open_fds, process_max_fds, CPU, threads.
            let _ = r.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        let m = Metrics {
            node_info: gauge_vec(
                &r,
                "mailnode_node_info",
                "Always 1: this node's id, name and version.",
                &["id", "name", "version"],
            ),
            cert_expiry: gauge_vec(
                &r,
                "mailnode_tls_certificate_expiry_timestamp_seconds",
                "When a certificate this node presents or trusts expires (Unix time).",
                &["cert"],
            ),
            listener_connections: counter_vec(
                &r,
                "mailnode_listener_connections_total",
                "Connections admitted by a listener.",
                &["listener"],
            ),
            listener_active: gauge_vec(
                &r,
                "mailnode_listener_connections_active",
                "Sessions running now on a listener (TLS handshakes included).",
                &["listener"],
            ),
            listener_rejected: counter_vec(
                &r,
                "mailnode_listener_rejected_total",
                "Connections refused by a listener's limits (max_connections, max_per_ip).",
                &["listener"],
            ),
            smtp_sessions: counter_vec(
                &r,
                "mailnode_smtp_sessions_total",
                "SMTP, submission and LMTP sessions started.",
                &["service"],
            ),
            smtp_sessions_active: gauge_vec(
                &r,
                "mailnode_smtp_sessions_active",
                "SMTP, submission and LMTP sessions running now.",
                &["service"],
            ),
            smtp_tls: counter_vec(
                &r,
                "mailnode_smtp_tls_sessions_total",
                "Sessions that ran TLS: implicit (port 465) or after STARTTLS.",
                &["service", "mode"],
            ),
            smtp_commands: counter_vec(
                &r,
                "mailnode_smtp_commands_total",
                "SMTP/LMTP commands received, by command (unknown or unparseable: other).",
                &["service", "command"],
            ),
            smtp_command_seconds: histogram_vec(
                &r,
                "mailnode_smtp_command_duration_seconds",
                "Time from reading a command to its reply being ready (DATA/BDAT: to the final reply, transfer included).",
                &["service", "command"],
                LATENCY,
            ),
            smtp_command_cells: Cells::new(SERVICES.len() * SMTP_COMMANDS.len()),
            smtp_transactions: counter_vec(
                &r,
                "mailnode_smtp_transactions_total",
                "Messages whose content was transferred, by result: accepted (queued or delivered), rejected (5xx), deferred (4xx). LMTP counts once per message.",
                &["service", "result"],
            ),
            smtp_rejects: counter_vec(
                &r,
                "mailnode_smtp_rejects_total",
                "Refusals of MAIL, RCPT or a message, by reply code class and policy reason.",
                &["service", "stage", "class", "reason"],
            ),
            smtp_recipients: counter_vec(
                &r,
                "mailnode_smtp_recipients_total",
                "RCPT commands by result (accepted or rejected).",
                &["service", "result"],
            ),
            smtp_bytes: counter_vec(
                &r,
                "mailnode_smtp_received_bytes_total",
                "Bytes of accepted messages (as stored, with our Received: field).",
                &["service"],
            ),
            smtp_auth: counter_vec(
                &r,
                "mailnode_smtp_auth_total",
                "Submission AUTH attempts by result: success, failure (wrong credentials), tempfail, blocked (address over its failure limit).",
                &["result"],
            ),
            smtp_errors: counter_vec(
                &r,
                "mailnode_smtp_errors_total",
                "Session problems: client_error (a reply that blames the client), too_many_errors, idle_timeout, bare_newline, tls_failed, io.",
                &["service", "kind"],
            ),
            antiube_decisions: counter_vec(
                &r,
                "mailnode_antiube_decisions_total",
                "Anti-UBE decisions by policy (anvil, pregreet, dnsbl, fcrdns, spf, greylist, header_checks, mime_header_checks, body_checks, mime, score, dmarc, virus, clamd, spamd) and action (reject, tempfail, discard, tag, accept, warn, close).",
                &["policy", "action"],
            ),
            antiube_check_errors: counter_vec(
                &r,
                "mailnode_antiube_check_errors_total",
                "Anti-UBE checks that could not answer (DNS timeout or SERVFAIL, scanner down or slow, message too large to scan), by check: policy, spf, dnsbl, clamd, clamd_size, spamd.",
                &["check"],
            ),
            antiube_policy_errors: counter(
                &r,
                "mailnode_antiube_policy_errors_total",
                "Replicated anti-UBE policy versions this node could not put in force (it keeps the previous one).",
            ),
            antiube_policy_version: gauge(
                &r,
                "mailnode_antiube_policy_version",
                "The version (Raft log index) of the anti-UBE policy this node enforces; 0: built-in defaults. Differs between nodes, or stays below the stored version, when a node cannot compile it.",
            ),
            imap_commands: counter_vec(
                &r,
                "mailnode_imap_commands_total",
                "IMAP commands run, by command (UID variants count as the base command).",
                &["command"],
            ),
            imap_command_seconds: histogram_vec(
                &r,
                "mailnode_imap_command_duration_seconds",
                "IMAP command processing time (IDLE is not timed).",
                &["command"],
                LATENCY,
            ),
            imap_cells: Cells::new(IMAP_COMMANDS.len()),
            imap_errors: counter(
                &r,
                "mailnode_imap_errors_total",
                "IMAP client errors (BAD: unparseable, unknown or refused commands; too long lines).",
            ),
            pop3_commands: counter_vec(
                &r,
                "mailnode_pop3_commands_total",
                "POP3 commands run, by command.",
                &["command"],
            ),
            pop3_command_seconds: histogram_vec(
                &r,
                "mailnode_pop3_command_duration_seconds",
                "POP3 command processing time (RETR/TOP: the transfer included).",
                &["command"],
                LATENCY,
            ),
            pop3_cells: Cells::new(POP3_COMMANDS.len()),
            pop3_errors: counter(
                &r,
                "mailnode_pop3_errors_total",
                "POP3 client errors (-ERR for an unknown, malformed or misplaced command).",
            ),
            managesieve_commands: counter_vec(
                &r,
                "mailnode_managesieve_commands_total",
                "ManageSieve commands run, by command.",
                &["command"],
            ),
            managesieve_command_seconds: histogram_vec(
                &r,
                "mailnode_managesieve_command_duration_seconds",
                "ManageSieve command processing time (directory writes and linearizable reads included).",
                &["command"],
                LATENCY,
            ),
            managesieve_cells: Cells::new(MANAGESIEVE_COMMANDS.len()),
            managesieve_errors: counter(
                &r,
                "mailnode_managesieve_errors_total",
                "ManageSieve client errors (NO for an unknown, malformed, oversized or misplaced command).",
            ),
            login_failures: counter_vec(
                &r,
                "mailnode_login_failures_total",
                "Failed logins (wrong credentials) by protocol: imap, pop3, managesieve (SMTP: mailnode_smtp_auth_total).",
                &["protocol"],
            ),
            queue_deliveries: counter_vec(
                &r,
                "mailnode_queue_deliveries_total",
                "Recipient delivery attempts by transport (lmtp, smtp) and result (delivered, deferred, bounced).",
                &["transport", "result"],
            ),
            failovers: counter_vec(
                &r,
                "mailnode_mailstore_failovers_total",
                "Mailstore lease grants made by this node as Raft leader, by reason: initial, released, switchover, expired.",
                &["reason"],
            ),
            failover_seconds: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "mailnode_mailstore_failover_duration_seconds",
                        "On the new holder: from seeing the lease granted to its services answering (fence agent, mount, VIP, listeners).",
                    )
                    .buckets(FAILOVER.to_vec()),
                )
                .expect("valid metric definition");
                r.register(Box::new(h.clone()))
                    .expect("metric names are unique");
                h
            },
            activations: counter_vec(
                &r,
                "mailnode_mailstore_activations_total",
                "Activations of the mailstore on this node, by result (ok, failed).",
                &["result"],
            ),
            leases_lost: counter(
                &r,
                "mailnode_mailstore_leases_lost_total",
                "Times this node fenced itself because its lease was gone (not renewable, or granted elsewhere).",
            ),
            volume_errors: counter_vec(
                &r,
                "mailnode_mailstore_volume_errors_total",
                "Failures to take (mount, owner record) or release (unmount) the mailstore volume, or to arm or disarm its watchdog.",
                &["op"],
            ),
            vip_errors: counter_vec(
                &r,
                "mailnode_mailstore_vip_errors_total",
                "Failures to claim or release the virtual IP.",
                &["op"],
            ),
            raft: scrape::RaftGauges::new(&r),
            mailstore: scrape::MailstoreGauges::new(&r),
            queue: scrape::QueueGauges::new(&r),
            store: scrape::StoreGauges::new(&r),
            registry: r,
        };
        // Label sets an alert takes `increase()` of exist from the start at 0: a series born
        // at 1 would hide its first event.
        for reason in ["initial", "released", "switchover", "expired"] {
            m.failovers.with_label_values(&[reason]);
        }
        for result in ["ok", "failed"] {
            m.activations.with_label_values(&[result]);
        }
        for op in ["take", "release", "watchdog"] {
            m.volume_errors.with_label_values(&[op]);
        }
        for op in ["claim", "release"] {
            m.vip_errors.with_label_values(&[op]);
        }
        for result in ["success", "failure", "tempfail", "blocked"] {
            m.smtp_auth.with_label_values(&[result]);
        }
        for policy in crate::antiube::filter::POLICIES {
            for action in crate::antiube::filter::ACTIONS {
                m.antiube_decisions.with_label_values(&[policy, action]);
            }
        }
        for check in ANTIUBE_CHECKS {
            m.antiube_check_errors.with_label_values(&[check]);
        }
        for transport in ["lmtp", "smtp"] {
            for result in ["delivered", "deferred", "bounced"] {
                m.queue_deliveries.with_label_values(&[transport, result]);
            }
        }
        m
    }
}

/// The catalogue, created at first use.
static M: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The exposition in the Prometheus text format 0.0.4; `None` when metrics are disabled.
pub fn render(sources: &scrape::Sources<'_>) -> Option<Vec<u8>> {
    if !enabled() {
        return None;
    }
    let _one = scrape::SCRAPE.lock().unwrap_or_else(|p| p.into_inner());
    scrape::update(&M, sources);
    let mut out = Vec::with_capacity(32 * 1024);
    TextEncoder::new()
        .encode(&M.registry.gather(), &mut out)
        .ok()?;
    Some(out)
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Records this node's identity (`mailnode_node_info`).
pub fn node_info(id: u64, name: &str) {
    M.node_info
        .with_label_values(&[&id.to_string(), name, env!("CARGO_PKG_VERSION")])
        .set(1);
}

/// Records when the certificate in `path` expires, as `cert` (`cluster`, `http`, `ca`).
/// An unreadable certificate is skipped: the TLS set-up reports it.
pub fn certificate(cert: &str, path: &std::path::Path) {
    if let Ok(ts) = crate::tls::not_after(path) {
        M.cert_expiry.with_label_values(&[cert]).set(ts);
    }
}

// ---- Listeners ---------------------------------------------------------------------------

/// One listener's connection counters (resolved once per listener).
#[derive(Clone)]
pub struct ListenerMetrics {
    connections: IntCounter,
    active: IntGauge,
    rejected: IntCounter,
}

/// Handles for the listener called `name` (a fixed name from the node's assembly).
pub fn listener(name: &str) -> ListenerMetrics {
    ListenerMetrics {
        connections: M.listener_connections.with_label_values(&[name]),
        active: M.listener_active.with_label_values(&[name]),
        rejected: M.listener_rejected.with_label_values(&[name]),
    }
}

/// Counts a running session until dropped.
pub struct Open(Option<IntGauge>);

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

impl ListenerMetrics {
    /// A connection was admitted; the session counts as active until the guard drops.
    pub fn opened(&self) -> Open {
        if !enabled() {
            return Open(None);
        }
        self.connections.inc();
        self.active.inc();
        Open(Some(self.active.clone()))
    }

    /// A connection was refused by a limit.
    pub fn rejected(&self) {
        if enabled() {
            self.rejected.inc();
        }
    }
}

// ---- SMTP, submission, LMTP --------------------------------------------------------------

/// An SMTP-family session, counted as active until dropped.
pub struct SmtpSession(Option<IntGauge>);

impl Drop for SmtpSession {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

/// A session started on `mode`'s listener; `implicit_tls` for port 465.
pub fn smtp_session(mode: Mode, implicit_tls: bool) -> SmtpSession {
    if !enabled() {
        return SmtpSession(None);
    }
    let s = SERVICES[service(mode)];
    M.smtp_sessions.with_label_values(&[s]).inc();
    if implicit_tls {
        M.smtp_tls.with_label_values(&[s, "implicit"]).inc();
    }
    let g = M.smtp_sessions_active.with_label_values(&[s]);
    g.inc();
    SmtpSession(Some(g))
}

/// STARTTLS completed.
pub fn smtp_starttls(mode: Mode) {
    if enabled() {
        M.smtp_tls
            .with_label_values(&[SERVICES[service(mode)], "starttls"])
            .inc();
    }
}

/// Times one command from creation to drop.
pub struct Timer {
    started: Instant,
    histogram: Option<Histogram>,
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(h) = &self.histogram {
            h.observe(self.started.elapsed().as_secs_f64());
        }
    }
}

impl Timer {
    fn off() -> Timer {
        Timer {
            started: Instant::now(),
            histogram: None,
        }
    }
}

/// Counts a command and times it until the returned guard drops.
pub fn smtp_command(mode: Mode, name: &str) -> Timer {
    if !enabled() {
        return Timer::off();
    }
    let (s, c) = (service(mode), index_of(&SMTP_COMMANDS, name));
    let (count, hist) = M.smtp_command_cells.get(s * SMTP_COMMANDS.len() + c, || {
        let labels = [SERVICES[s], SMTP_COMMANDS[c]];
        (
            M.smtp_commands.with_label_values(&labels),
            M.smtp_command_seconds.with_label_values(&labels),
        )
    });
    count.inc();
    Timer {
        started: Instant::now(),
        histogram: Some(hist.clone()),
    }
}

/// A refusal at `stage` with reply `code`; `reason` is one of the fixed policy reasons
/// (see docs/METRICS.md).
pub fn smtp_reject(mode: Mode, stage: Stage, code: u16, reason: &'static str) {
    if enabled() {
        M.smtp_rejects
            .with_label_values(&[SERVICES[service(mode)], stage.label(), class(code), reason])
            .inc();
        if stage == Stage::Rcpt {
            M.smtp_recipients
                .with_label_values(&[SERVICES[service(mode)], "rejected"])
                .inc();
        }
    }
}

/// A recipient accepted.
pub fn smtp_rcpt_accepted(mode: Mode) {
    if enabled() {
        M.smtp_recipients
            .with_label_values(&[SERVICES[service(mode)], "accepted"])
            .inc();
    }
}

/// A finished message: its first reply `code` and, when accepted, its size.
pub fn smtp_transaction(mode: Mode, code: u16, size: u64) {
    if !enabled() {
        return;
    }
    let s = SERVICES[service(mode)];
    let result = match code / 100 {
        2 => "accepted",
        4 => "deferred",
        _ => "rejected",
    };
    M.smtp_transactions.with_label_values(&[s, result]).inc();
    if code / 100 == 2 {
        M.smtp_bytes.with_label_values(&[s]).inc_by(size);
    }
}

/// AUTH result: `success`, `failure`, `tempfail`, `blocked`.
pub fn smtp_auth(result: &'static str) {
    if enabled() {
        M.smtp_auth.with_label_values(&[result]).inc();
    }
}

/// The checks of `mailnode_antiube_check_errors_total`.
const ANTIUBE_CHECKS: &[&str] = &["policy", "spf", "dnsbl", "clamd", "clamd_size", "spamd"];

/// An anti-UBE decision; `policy` and `action` are constants from the fixed sets
/// `antiube::filter::POLICIES` and `ACTIONS` (never client input).
pub fn antiube_decision(policy: &'static str, action: &'static str) {
    if enabled() {
        M.antiube_decisions
            .with_label_values(&[policy, action])
            .inc();
    }
}

/// An anti-UBE check that could not answer.
pub fn antiube_check_error(check: &'static str) {
    if enabled() {
        M.antiube_check_errors.with_label_values(&[check]).inc();
    }
}

/// The anti-UBE policy version in force.
pub fn antiube_policy_version(version: u64) {
    if enabled() {
        M.antiube_policy_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
    }
}

/// A replicated policy version this node could not put in force.
pub fn antiube_policy_error() {
    if enabled() {
        M.antiube_policy_errors.inc();
    }
}

/// A session problem of `kind` (see [`Metrics`]' help text for the fixed kinds).
pub fn smtp_error(mode: Mode, kind: &'static str) {
    if enabled() {
        M.smtp_errors
            .with_label_values(&[SERVICES[service(mode)], kind])
            .inc();
    }
}

// ---- IMAP and POP3 -----------------------------------------------------------------------

fn index_of(names: &[&str], name: &str) -> usize {
    names
        .iter()
        .position(|n| *n == name)
        .unwrap_or(names.len() - 1)
}

/// Counts an IMAP command (by `Command::name`) and times it until the guard drops.
pub fn imap_command(name: &str) -> Timer {
    if !enabled() {
        return Timer::off();
    }
    let i = index_of(&IMAP_COMMANDS, name);
    let (count, hist) = M.imap_cells.get(i, || {
        (
            M.imap_commands.with_label_values(&[IMAP_COMMANDS[i]]),
            M.imap_command_seconds
                .with_label_values(&[IMAP_COMMANDS[i]]),
        )
    });
    count.inc();
    Timer {
        started: Instant::now(),
        // IDLE lasts as long as the client wants: a count, not a latency.
        histogram: (IMAP_COMMANDS[i] != "IDLE").then(|| hist.clone()),
    }
}

/// An IMAP client error (answered BAD).
pub fn imap_error() {
    if enabled() {
        M.imap_errors.inc();
    }
}

fn pop3_name(cmd: &crate::pop3::command::Command) -> &'static str {
    use crate::pop3::command::Command as C;
    match cmd {
        C::User(_) => "USER",
        C::Pass(_) => "PASS",
        C::Auth { .. } => "AUTH",
        C::Stls => "STLS",
        C::Capa => "CAPA",
        C::Quit => "QUIT",
        C::Stat => "STAT",
        C::List(_) => "LIST",
        C::Retr(_) => "RETR",
        C::Dele(_) => "DELE",
        C::Noop => "NOOP",
        C::Rset => "RSET",
        C::Top(..) => "TOP",
        C::Uidl(_) => "UIDL",
    }
}

/// Counts a POP3 command and times it until the guard drops.
pub fn pop3_command(cmd: &crate::pop3::command::Command) -> Timer {
    if !enabled() {
        return Timer::off();
    }
    let i = index_of(&POP3_COMMANDS, pop3_name(cmd));
    let (count, hist) = M.pop3_cells.get(i, || {
        (
            M.pop3_commands.with_label_values(&[POP3_COMMANDS[i]]),
            M.pop3_command_seconds
                .with_label_values(&[POP3_COMMANDS[i]]),
        )
    });
    count.inc();
    Timer {
        started: Instant::now(),
        histogram: Some(hist.clone()),
    }
}

/// A POP3 client error (answered -ERR).
pub fn pop3_error() {
    if enabled() {
        M.pop3_errors.inc();
    }
}

/// Counts a ManageSieve command (by `Command::name`) and times it until the guard drops.
pub fn managesieve_command(name: &str) -> Timer {
    if !enabled() {
        return Timer::off();
    }
    let i = index_of(&MANAGESIEVE_COMMANDS, name);
    let (count, hist) = M.managesieve_cells.get(i, || {
        (
            M.managesieve_commands
                .with_label_values(&[MANAGESIEVE_COMMANDS[i]]),
            M.managesieve_command_seconds
                .with_label_values(&[MANAGESIEVE_COMMANDS[i]]),
        )
    });
    count.inc();
    Timer {
        started: Instant::now(),
        histogram: Some(hist.clone()),
    }
}

/// A ManageSieve client error (answered NO).
pub fn managesieve_error() {
    if enabled() {
        M.managesieve_errors.inc();
    }
}

/// A failed login (wrong credentials) over `protocol` (`imap`, `pop3`, `managesieve`).
pub fn login_failed(protocol: &'static str) {
    if enabled() {
        M.login_failures.with_label_values(&[protocol]).inc();
    }
}

// ---- Queue -------------------------------------------------------------------------------

/// One recipient's delivery attempt: `transport` `lmtp`/`smtp`, `result`
/// `delivered`/`deferred`/`bounced`.
pub(crate) fn queue_delivery(transport: &'static str, result: &'static str) {
    if enabled() {
        M.queue_deliveries
            .with_label_values(&[transport, result])
            .inc();
    }
}

// ---- Mailstore role ----------------------------------------------------------------------

/// The Raft leader granted the mailstore lease; `reason`: `initial`, `released`,
/// `switchover`, `expired`.
pub fn failover_granted(reason: &'static str) {
    if enabled() {
        M.failovers.with_label_values(&[reason]).inc();
    }
}

/// This node's mailstore services answer, `took` after it saw the grant.
pub fn mailstore_activated(took: Duration) {
    if enabled() {
        M.activations.with_label_values(&["ok"]).inc();
        M.failover_seconds.observe(took.as_secs_f64());
    }
}

/// Activating the mailstore here failed (volume, VIP, services, fence agent).
pub fn mailstore_activation_failed() {
    if enabled() {
        M.activations.with_label_values(&["failed"]).inc();
    }
}

/// This node fenced itself because its lease was gone.
pub fn mailstore_lease_lost() {
    if enabled() {
        M.leases_lost.inc();
    }
}

/// Taking (`take`) or releasing (`release`) the volume failed.
pub fn volume_error(op: &'static str) {
    if enabled() {
        M.volume_errors.with_label_values(&[op]).inc();
    }
}

/// Claiming (`claim`) or releasing (`release`) the virtual IP failed.
pub fn vip_error(op: &'static str) {
    if enabled() {
        M.vip_errors.with_label_values(&[op]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_commands_are_other_and_labels_are_bounded() {
        assert_eq!(IMAP_COMMANDS[index_of(&IMAP_COMMANDS, "FETCH")], "FETCH");
        assert_eq!(IMAP_COMMANDS[index_of(&IMAP_COMMANDS, "alice@x")], "other");
        assert_eq!(SMTP_COMMANDS[index_of(&SMTP_COMMANDS, "XEXPS")], "other");
        assert_eq!(
            SMTP_COMMANDS[index_of(&SMTP_COMMANDS, "STARTTLS")],
            "STARTTLS"
        );
        // Every command the SMTP parser knows has its own label, none falls into `other`.
        for line in [
            "EHLO a",
            "HELO a",
            "LHLO a",
            "MAIL FROM:<>",
            "RCPT TO:<a@b>",
            "DATA",
            "BDAT 1",
            "RSET",
            "NOOP",
            "QUIT",
            "VRFY a",
            "HELP",
            "STARTTLS",
            "AUTH PLAIN",
        ] {
            let cmd = crate::smtp::command::parse(line.as_bytes()).unwrap();
            assert_ne!(
                SMTP_COMMANDS[index_of(&SMTP_COMMANDS, cmd.name())],
                "other",
                "{line}"
            );
        }
        // Every ManageSieve command has its own label.
        for name in crate::managesieve::command::Command::NAMES {
            assert_eq!(
                MANAGESIEVE_COMMANDS[index_of(&MANAGESIEVE_COMMANDS, name)],
                name
            );
        }
        assert_eq!(
            MANAGESIEVE_COMMANDS[index_of(&MANAGESIEVE_COMMANDS, "alice")],
            "other"
        );
        assert_eq!(class(250), "2xx");
        assert_eq!(class(451), "4xx");
        assert_eq!(class(999), "5xx");
    }

    #[test]
    fn events_show_up_in_the_exposition() {
        drop(smtp_command(Mode::Mx, "MAIL"));
        smtp_reject(Mode::Mx, Stage::Rcpt, 550, "unknown_user");
        drop(imap_command("NOSUCH"));
        let text = String::from_utf8(
            TextEncoder::new()
                .encode_to_string(&M.registry.gather())
                .unwrap()
                .into_bytes(),
        )
        .unwrap();
        assert!(
            text.contains(r#"mailnode_smtp_commands_total{command="MAIL",service="mx"}"#),
            "{text}"
        );
        assert!(text.contains(
            r#"mailnode_smtp_rejects_total{class="5xx",reason="unknown_user",service="mx",stage="rcpt"}"#
        ));
        assert!(text.contains(r#"mailnode_imap_commands_total{command="other"}"#));
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
