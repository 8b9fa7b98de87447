//! Mail-in benchmark, end to end: SMTP → queue → LMTP → store on one `mailnode` process,
//! against Postfix → Dovecot LMTP from Debian (private instances, shipped durability
//! settings), on the same machine, with the same clients and messages.
//!
//! Run `bench/mail-setup.sh` once (installs postfix, dovecot-core and dovecot-lmtpd from
//! Debian), then `cargo bench --bench mail` (or `cargo bench --bench mail -- --quick`: a small
//! run that proves the whole path works). Cargo builds the `mailnode` binary the benchmark
//! starts (`CARGO_BIN_EXE_mailnode`) with the same bench profile. Environment:
//! `BENCH_MESSAGES_4K` (default 5000; quick 400) and `BENCH_MESSAGES_100K` (2000; quick 200)
//! messages per phase, `BENCH_IDLE` (1000; quick 200) idle sessions, `BENCH_USERS` (100)
//! recipients, `BENCH_PER_CONNECTION` (1) messages per SMTP connection, `BENCH_PEER=0` to skip
//! Postfix + Dovecot, `BENCH_MAILNODE_CONFIG` (TOML sections appended to the node's
//! configuration, e.g. `$'[queue]\ndestination_concurrency = 50'`, to compare tunings).
//!
//! For each system in turn (never both running at once: the machine has few cores): start it;
//! open the idle sessions (greeting, EHLO, then silence) and take the resident memory they
//! added; then four load phases (4 KB and 100 KB messages with 20 concurrent clients, then
//! with 200), each timed until the last `250` (accepted) and until the last message is in its
//! mailbox (delivered), then checked untimed: the queue empties and every mailbox holds
//! exactly what was sent. Memory is read from `/proc` for every process of the side (module
//! `procs`). The program installs nothing and stops every process it started, also on panic or
//! Ctrl-C.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "mail/load.rs"]
mod load;
#[path = "mail/mailnode_side.rs"]
mod mailnode_side;
// Shared with the directory benchmark; not all of it is used here.
#[allow(dead_code)]
#[path = "directory/measure.rs"]
mod measure;
#[path = "mail/peer_side.rs"]
mod peer_side;
#[path = "mail/procs.rs"]
mod procs;
#[path = "mail/smtp_wait.rs"]
mod smtp_wait;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use load::Load;
use mailnode_side::MailnodeSide;
use measure::{fmt_count, fmt_duration, fmt_kib, machine};
use peer_side::PeerSide;
use procs::{memory, settle, tree, Memory, Peak, PeakSampler};
pub use smtp_wait::{greets, wait_for_smtp};

/// The mail domain of every recipient, on both sides.
pub const DOMAIN: &str = "bench.example";
/// The goals of issue 3.
const GOAL_DELIVERED_RATIO: f64 = 2.0;
const GOAL_IDLE_KIB: f64 = 64.0;
/// How long a phase may take to deliver before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(600);

/// What the run does.
struct Params {
    quick: bool,
    /// Messages per phase of 4 KB, of 100 KB.
    small: usize,
    large: usize,
    idle: usize,
    users: usize,
    per_connection: usize,
    peer: bool,
}

/// One load configuration.
#[derive(Clone, Copy)]
struct Phase {
    /// Message size in octets (header + body).
    size: usize,
    clients: usize,
    messages: usize,
}

impl Phase {
    fn label(&self) -> String {
        format!(
            "{} KB, {} clients ({} msgs)",
            self.size / 1024,
            self.clients,
            fmt_count(self.messages as u64)
        )
    }
}

/// What the benchmark measured of one system.
#[derive(Default)]
struct Figures {
    /// Started and quiet, before any session.
    started: Memory,
    /// The idle sessions: memory before, with them open, and how many.
    idle: Option<(Memory, Memory, usize)>,
    /// Per phase: the load, and the peaks of the side's memory during it.
    loads: Vec<(Load, Peak)>,
    /// mailnode only: the process's VmHWM at the end (the idle sessions included).
    hwm: Option<u64>,
}

/// One system under test, as the measurement sees it.
trait Side {
    fn mx(&self) -> SocketAddr;
    fn roots(&self) -> Vec<u32>;
    fn in_mailboxes(&self) -> Arc<dyn Fn() -> usize + Send + Sync>;
    fn queue_empty(&self) -> bool;
    fn log_tail(&self) -> String;
    /// After the idle sessions closed, before the load.
    fn after_idle(&self) {}
}

impl Side for MailnodeSide {
    fn mx(&self) -> SocketAddr {
        MailnodeSide::mx(self)
    }
    fn roots(&self) -> Vec<u32> {
        MailnodeSide::roots(self)
    }
    fn in_mailboxes(&self) -> Arc<dyn Fn() -> usize + Send + Sync> {
        MailnodeSide::in_mailboxes(self)
    }
    fn queue_empty(&self) -> bool {
        MailnodeSide::queue_empty(self)
    }
    fn log_tail(&self) -> String {
        MailnodeSide::log_tail(self)
    }
}

impl Side for PeerSide {
    fn mx(&self) -> SocketAddr {
        PeerSide::mx(self)
    }
    fn roots(&self) -> Vec<u32> {
        PeerSide::roots(self)
    }
    fn in_mailboxes(&self) -> Arc<dyn Fn() -> usize + Send + Sync> {
        PeerSide::in_mailboxes(self)
    }
    fn queue_empty(&self) -> bool {
        PeerSide::queue_empty(self)
    }
    fn log_tail(&self) -> String {
        PeerSide::log_tail(self)
    }
    /// `postfix reload`: the smtpd processes left idle by the closed sessions exit (otherwise
    /// they linger for `max_idle`, 100 s, and would count in the load phases' memory).
    fn after_idle(&self) {
        PeerSide::reload(self);
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn params() -> Params {
    let mut quick = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--quick" => quick = true,
            // cargo bench passes --bench to every bench program.
            "--bench" => {}
            other => {
                eprintln!(
                    "unknown argument {other:?}; usage: cargo bench --bench mail [-- --quick]"
                );
                std::process::exit(2);
            }
        }
    }
    let (small, large, idle) = if quick {
        (400, 200, 200)
    } else {
        (5000, 2000, 1000)
    };
    Params {
        quick,
        small: env_usize("BENCH_MESSAGES_4K", small).max(1),
        large: env_usize("BENCH_MESSAGES_100K", large).max(1),
        idle: env_usize("BENCH_IDLE", idle),
        users: env_usize("BENCH_USERS", 100).max(1),
        per_connection: env_usize("BENCH_PER_CONNECTION", 1).max(1),
        peer: std::env::var("BENCH_PEER").map_or(true, |v| v != "0"),
    }
}

/// One thread for the whole client side (as in the directory benchmark): the servers keep the
/// machine's other core, and a client's reads and writes pay no cross-thread wake-ups.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Leaving `select!` drops `run`, and with it the sides, which stop their processes; a
    // panic unwinds through the same drops.
    let interrupted = tokio::select! {
        () = run() => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    if interrupted {
        eprintln!("interrupted: the servers were stopped");
        std::process::exit(130);
    }
}

async fn run() {
    let p = params();
    if p.peer {
        if let Some(why) = peer_side::missing() {
            eprintln!(
                "the Postfix + Dovecot side cannot run: {why}.\n\
                 Run bench/mail-setup.sh (as root) first, or set BENCH_PEER=0 to skip it."
            );
            std::process::exit(2);
        }
    }
    // 20 clients first: Postfix keeps an idle smtpd per past session for `max_idle` (100 s),
    // so a phase after a 200-client phase would count those in its memory.
    let phases = [
        (4 * 1024, 20, p.small),
        (100 * 1024, 20, p.large),
        (4 * 1024, 200, p.small),
        (100 * 1024, 200, p.large),
    ]
    .map(|(size, clients, messages)| Phase {
        size,
        clients,
        messages,
    });
    // Client sockets of the idle sessions and of the busiest phase, and the servers' own
    // (mailnode and Postfix's master inherit this limit).
    let fds = (p.idle + 200) as u64 * 2 + 256;
    if procs::open_files_limit().is_some_and(|l| l < fds) {
        eprintln!(
            "the open-files limit (ulimit -n) is below the {fds} this run needs; raise it \
             (ulimit -n {fds}) or lower BENCH_IDLE"
        );
        std::process::exit(2);
    }

    println!(
        "mail-in benchmark{}: SMTP → queue → LMTP → mailbox, {} recipients, {} message(s) per connection",
        if p.quick { " (quick)" } else { "" },
        p.users,
        p.per_connection
    );
    println!("machine: {}", machine());
    println!("load average at the start: {}", load_average());
    println!("temporary files under {}", std::env::temp_dir().display());
    println!("mailnode: {}", env!("CARGO_BIN_EXE_mailnode"));
    if p.peer {
        println!("peer: {}", peer_side::version());
    }

    let users: Arc<Vec<String>> =
        Arc::new((0..p.users).map(|i| format!("u{i}@{DOMAIN}")).collect());
    let small = load::body(4 * 1024);
    let large = load::body(100 * 1024);
    let body = |size: usize| {
        if size > 4 * 1024 {
            large.clone()
        } else {
            small.clone()
        }
    };

    println!("\n[mailnode] one node on 127.0.201.1: MX :2525, LMTP + store :2424");
    let mn = {
        let more = std::env::var("BENCH_MAILNODE_CONFIG").unwrap_or_default();
        if !more.is_empty() {
            println!("  with BENCH_MAILNODE_CONFIG:\n{more}");
        }
        let side = if more.is_empty() {
            MailnodeSide::start(&users, p.idle + 1000).await
        } else {
            MailnodeSide::start_with(&users, p.idle + 1000, &more).await
        };
        let mut f = measure_side(&side, "mn", &p, &phases, &users, &body).await;
        f.hwm = procs::status_kib(side.roots()[0], "VmHWM");
        f
    };

    let peer = if p.peer {
        println!(
            "\n[postfix + dovecot] smtpd on 127.0.201.2:2525 → Dovecot LMTP on 127.0.201.3:2424"
        );
        let side = PeerSide::start(&users, p.idle + 500).await;
        Some(measure_side(&side, "pd", &p, &phases, &users, &body).await)
    } else {
        None
    };

    println!();
    print_tables(&p, &phases, &mn, peer.as_ref());
    println!();
    print_goals(&phases, &mn, peer.as_ref());
    println!("load average at the end: {}", load_average());
}

/// The first three fields of /proc/loadavg: the machine may be shared with other work.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The idle sessions, then each phase, on one side.
async fn measure_side(
    side: &impl Side,
    name: &str,
    p: &Params,
    phases: &[Phase],
    users: &Arc<Vec<String>>,
    body: &impl Fn(usize) -> Arc<Vec<u8>>,
) -> Figures {
    let roots = side.roots();
    let mut f = Figures::default();
    quiet(&roots).await;
    f.started = memory(&tree(&roots));
    println!(
        "  started: {} resident in {} process(es) (Pss {})",
        fmt_kib(f.started.rss_kib),
        f.started.processes,
        fmt_kib(f.started.pss_kib)
    );
    let sampler = PeakSampler::start(roots.clone());

    if p.idle > 0 {
        let before = memory(&tree(&roots));
        let t = Instant::now();
        let sessions = load::idle_sessions(side.mx(), p.idle).await;
        let opened = t.elapsed();
        quiet(&roots).await;
        let with = memory(&tree(&roots));
        println!(
            "  {} idle sessions opened in {}: resident {} → {} ({} processes), {} per session (Pss {} per session)",
            p.idle,
            fmt_duration(opened),
            fmt_kib(before.rss_kib),
            fmt_kib(with.rss_kib),
            with.processes,
            fmt_per(with.rss_kib, before.rss_kib, p.idle),
            fmt_per(with.pss_kib, before.pss_kib, p.idle),
        );
        f.idle = Some((before, with, p.idle));
        drop(sessions);
        side.after_idle();
        // Wait until the sessions' processes (Postfix: one smtpd each) are gone.
        let deadline = Instant::now() + Duration::from_secs(60);
        while tree(&roots).len() > before.processes + 10 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    for ph in phases {
        quiet(&roots).await;
        sampler.take();
        let tag = format!("{name}-{}k-{}", ph.size / 1024, ph.clients);
        let count = side.in_mailboxes();
        let before = count();
        let l = load::run(
            side.mx(),
            &tag,
            users.clone(),
            body(ph.size),
            ph.clients,
            ph.messages,
            p.per_connection,
            count.clone(),
            PATIENCE,
        )
        .await;
        let peak = sampler.take();
        println!(
            "  {}: accepted in {} ({:.0}/s, p50 {}, p99 {}), in the mailboxes after {} ({:.0}/s); \
             peak resident {} (anonymous {}) in up to {} process(es){}",
            ph.label(),
            fmt_duration(l.accepted.wall),
            l.accepted.per_sec(),
            fmt_duration(l.accepted.p50()),
            fmt_duration(l.accepted.p99()),
            fmt_duration(l.delivered),
            ph.messages as f64 / l.delivered.as_secs_f64(),
            fmt_kib(peak.rss_kib),
            fmt_kib(peak.anon_kib),
            peak.processes,
            if l.retries > 0 {
                format!("; {} attempts retried", l.retries)
            } else {
                String::new()
            }
        );
        // Untimed: the queue empties and the mailboxes hold exactly what was sent.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !side.queue_empty() {
            assert!(
                Instant::now() < deadline,
                "the {name} queue did not empty within 2 minutes after the phase:\n{}",
                side.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let now = count();
        assert_eq!(
            now - before,
            ph.messages,
            "the mailboxes gained {} messages, not {}:\n{}",
            now - before,
            ph.messages,
            side.log_tail()
        );
        f.loads.push((l, peak));
    }
    f
}

/// Waits for the servers to go quiet before the next phase.
async fn quiet(roots: &[u32]) {
    let waited = settle(roots, Duration::from_secs(60)).await;
    if waited > Duration::from_secs(2) {
        println!(
            "  (servers quiet (< 10% of a CPU) after {})",
            fmt_duration(waited)
        );
    }
}

/// `(after - before) / n` KiB as `12.3 KiB`.
fn fmt_per(after: u64, before: u64, n: usize) -> String {
    format!("{:.1} KiB", per_kib(after, before, n))
}

fn per_kib(after: u64, before: u64, n: usize) -> f64 {
    (after as f64 - before as f64) / n.max(1) as f64
}

fn delivered_rate(ph: &Phase, l: &Load) -> f64 {
    ph.messages as f64 / l.delivered.as_secs_f64()
}

fn print_tables(p: &Params, phases: &[Phase], mn: &Figures, pd: Option<&Figures>) {
    let none = "—".to_string();
    println!("| configuration | mailnode accepted/s | mailnode delivered/s | Postfix + Dovecot accepted/s | Postfix + Dovecot delivered/s | delivered ratio |");
    println!("|---|---|---|---|---|---|");
    for (i, ph) in phases.iter().enumerate() {
        let (ml, _) = &mn.loads[i];
        let peer = pd.map(|f| &f.loads[i].0);
        println!(
            "| {} | {:.0}/s | {:.0}/s | {} | {} | {} |",
            ph.label(),
            ml.accepted.per_sec(),
            delivered_rate(ph, ml),
            peer.map_or(none.clone(), |l| format!("{:.0}/s", l.accepted.per_sec())),
            peer.map_or(none.clone(), |l| format!("{:.0}/s", delivered_rate(ph, l))),
            peer.map_or(none.clone(), |l| format!(
                "{:.2}",
                delivered_rate(ph, ml) / delivered_rate(ph, l)
            )),
        );
    }
    println!();
    println!("| configuration: time to 250, p50 / p99 | mailnode | Postfix + Dovecot |");
    println!("|---|---|---|");
    for (i, ph) in phases.iter().enumerate() {
        let lat = |l: &Load| {
            format!(
                "{} / {}",
                fmt_duration(l.accepted.p50()),
                fmt_duration(l.accepted.p99())
            )
        };
        println!(
            "| {} | {} | {} |",
            ph.label(),
            lat(&mn.loads[i].0),
            pd.map_or(none.clone(), |f| lat(&f.loads[i].0))
        );
    }
    println!();
    println!("| memory | mailnode | Postfix + Dovecot |");
    println!("|---|---|---|");
    let cell =
        |f: Option<&Figures>, show: &dyn Fn(&Figures) -> String| f.map_or(none.clone(), show);
    let started = |f: &Figures| {
        format!(
            "{} ({} processes; Pss {})",
            fmt_kib(f.started.rss_kib),
            f.started.processes,
            fmt_kib(f.started.pss_kib)
        )
    };
    println!(
        "| started, no session: sum of VmRSS | {} | {} |",
        started(mn),
        cell(pd, &started)
    );
    for (i, ph) in phases.iter().enumerate() {
        let peak = |f: &Figures| {
            let p = f.loads[i].1;
            format!(
                "{} / {} ({} processes)",
                fmt_kib(p.rss_kib),
                fmt_kib(p.anon_kib),
                p.processes
            )
        };
        println!(
            "| peak during {}: sum of VmRSS / of RssAnon, sampled every 100 ms | {} | {} |",
            ph.label(),
            peak(mn),
            cell(pd, &peak)
        );
    }
    if p.idle > 0 {
        let idle = |f: &Figures, pss: bool| {
            f.idle.map_or(none.clone(), |(b, w, n)| {
                if pss {
                    fmt_per(w.pss_kib, b.pss_kib, n)
                } else {
                    format!(
                        "{} ({} → {})",
                        fmt_per(w.rss_kib, b.rss_kib, n),
                        fmt_kib(b.rss_kib),
                        fmt_kib(w.rss_kib)
                    )
                }
            })
        };
        println!(
            "| per idle SMTP session ({} sessions): VmRSS growth / sessions | {} | {} |",
            fmt_count(p.idle as u64),
            idle(mn, false),
            cell(pd, &|f| idle(f, false))
        );
        println!(
            "| per idle SMTP session: Pss growth / sessions | {} | {} |",
            idle(mn, true),
            cell(pd, &|f| idle(f, true))
        );
    }
    if let Some(hwm) = mn.hwm {
        println!(
            "| mailnode VmHWM at the end (whole run, idle sessions included) | {} | — |",
            fmt_kib(hwm)
        );
    }
}

fn print_goals(phases: &[Phase], mn: &Figures, pd: Option<&Figures>) {
    match pd {
        Some(pd) => {
            let ratios: Vec<f64> = phases
                .iter()
                .enumerate()
                .map(|(i, ph)| delivered_rate(ph, &mn.loads[i].0) / delivered_rate(ph, &pd.loads[i].0))
                .collect();
            let met = ratios.iter().filter(|&&r| r >= GOAL_DELIVERED_RATIO).count();
            let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}×")).collect();
            println!(
                "goal: delivered messages/s at least {GOAL_DELIVERED_RATIO}× Postfix + Dovecot's: {} \
                 (met in {met} of {} configurations: {})",
                if met == ratios.len() { "met" } else { "NOT met" },
                ratios.len(),
                shown.join(", ")
            );
        }
        None => println!(
            "goal: delivered messages/s at least {GOAL_DELIVERED_RATIO}× Postfix + Dovecot's: not measured (BENCH_PEER=0)"
        ),
    }
    match mn.idle {
        Some((b, w, n)) => {
            let per = per_kib(w.rss_kib, b.rss_kib, n);
            println!(
                "goal: at most {GOAL_IDLE_KIB} KB per idle SMTP session: {} ({per:.1} KiB per session, {n} sessions)",
                if per <= GOAL_IDLE_KIB { "met" } else { "NOT met" }
            );
        }
        None => println!(
            "goal: at most {GOAL_IDLE_KIB} KB per idle SMTP session: not measured (BENCH_IDLE=0)"
        ),
    }
}
