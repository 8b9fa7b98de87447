//! IMAP and POP3 benchmark: one `mailnode` process serving its message store against Dovecot
//! from Debian (a private instance, shipped defaults except its process and connection
//! limits), on the same machine, with the same users, password hashes, messages and clients.
//!
//! Run `bench/imap-setup.sh` once (installs dovecot-core, -imapd, -pop3d and -lmtpd from
//! Debian), then `cargo bench --bench imap` (or `cargo bench --bench imap -- --quick`: a small
//! run that proves the whole path works). Cargo builds the `mailnode` binary the benchmark
//! starts (`CARGO_BIN_EXE_mailnode`) with the same bench profile. Environment (defaults, quick
//! defaults in brackets): `BENCH_USERS` 200 [50], `BENCH_MESSAGES` per user 50 [20],
//! `BENCH_ITERATIONS` per IMAP phase 600 [100], `BENCH_OPEN_ITERATIONS` per open-session phase
//! 5 × that, `BENCH_IDLE` idle sessions 10000 [500], `BENCH_IDLE_CONCURRENCY` logins in flight
//! while opening them 50, `BENCH_DOVECOT=0` to skip Dovecot.
//!
//! For each system in turn (never both running at once: the machine has few cores): start it
//! with the users; deliver every user's messages over its LMTP (untimed); restart it so the
//! process that is measured has not handled the delivery; log every user in once (the
//! mailboxes are then open, as an active user's are); open the idle sessions (LOGIN, SELECT,
//! IDLE) and take the memory they added; close them; then the timed phases — the IMAP
//! session with 20 and 200 concurrent clients, the same commands on sessions kept open, and
//! POP3 retrieving every message of every maildrop with 20 and 200 clients. Memory and CPU are
//! read from `/proc` for every process of the side (module `procs`). The program installs
//! nothing and stops every process it started, also on panic or Ctrl-C.

#[path = "imap/client.rs"]
mod client;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "imap/dovecot_side.rs"]
mod dovecot_side;
#[path = "imap/load.rs"]
mod load;
#[path = "imap/mailnode_side.rs"]
mod mailnode_side;
// Shared with the directory benchmark; not all of it is used here.
#[allow(dead_code)]
#[path = "directory/measure.rs"]
mod measure;
#[path = "imap/procs.rs"]
mod procs;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;

use dovecot_side::DovecotSide;
use load::{ImapPhase, Pop3Phase, Users};
use mailnode_side::MailnodeSide;
use measure::{fmt_count, fmt_duration, fmt_kib, machine};
use procs::Memory;

/// The mail domain of every user, on both sides.
pub const DOMAIN: &str = "bench.example";
/// The same ports on both sides (mailnode on 127.0.202.1, Dovecot on 127.0.202.2).
pub const IMAP_PORT: u16 = 2143;
pub const POP3_PORT: u16 = 2110;
pub const LMTP_PORT: u16 = 2424;
/// Every user's password (argon2id-hashed in both user databases).
const PASSWORD: &str = "bench-password-2026";
/// The goals of issue 4.
const GOAL_RATIO: f64 = 1.5;
const GOAL_IDLE_KIB: f64 = 64.0;
const GOAL_IDLE_SESSIONS: usize = 10_000;
/// Concurrent clients of each timed phase.
const CLIENTS: [usize; 2] = [20, 200];
/// LMTP connections delivering the messages.
const LMTP_CONNECTIONS: usize = 10;

/// What the run does.
struct Params {
    quick: bool,
    users: usize,
    per_user: usize,
    iterations: usize,
    open_iterations: usize,
    idle: usize,
    idle_concurrency: usize,
    dovecot: bool,
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
                    "unknown argument {other:?}; usage: cargo bench --bench imap [-- --quick]"
                );
                std::process::exit(2);
            }
        }
    }
    let (users, per_user, iterations, idle) = if quick {
        (50, 20, 100, 500)
    } else {
        (200, 50, 600, GOAL_IDLE_SESSIONS)
    };
    let iterations = env_usize("BENCH_ITERATIONS", iterations).max(1);
    Params {
        quick,
        users: env_usize("BENCH_USERS", users).max(1),
        per_user: env_usize("BENCH_MESSAGES", per_user).max(1),
        iterations,
        open_iterations: env_usize("BENCH_OPEN_ITERATIONS", iterations * 5).max(1),
        idle: env_usize("BENCH_IDLE", idle),
        idle_concurrency: env_usize("BENCH_IDLE_CONCURRENCY", 50).max(1),
        dovecot: std::env::var("BENCH_DOVECOT").map_or(true, |v| v != "0"),
    }
}

/// The idle sessions of one side.
struct Idle {
    n: usize,
    opened: Duration,
    with: Memory,
}

/// What the benchmark measured of one system.
#[derive(Default)]
struct Figures {
    delivered: Option<(Duration, u64)>,
    /// Restarted, quiet, before any session.
    started: Memory,
    /// After one login per user.
    warm: Memory,
    idle: Option<Idle>,
    sessions: Vec<ImapPhase>,
    open: Vec<ImapPhase>,
    pop3: Vec<Pop3Phase>,
    /// mailnode only: the process's VmHWM at the end.
    hwm: Option<u64>,
    /// Dovecot only: warnings and errors in its log.
    log_notes: Vec<String>,
}

/// One system under test, as the measurement sees it.
trait Side {
    fn imap(&self) -> SocketAddr;
    fn pop3(&self) -> SocketAddr;
    fn lmtp(&self) -> SocketAddr;
    fn roots(&self) -> Vec<u32>;
    async fn restart(&mut self);
    fn log_tail(&self) -> String;
}

impl Side for MailnodeSide {
    fn imap(&self) -> SocketAddr {
        MailnodeSide::imap(self)
    }
    fn pop3(&self) -> SocketAddr {
        MailnodeSide::pop3(self)
    }
    fn lmtp(&self) -> SocketAddr {
        MailnodeSide::lmtp(self)
    }
    fn roots(&self) -> Vec<u32> {
        MailnodeSide::roots(self)
    }
    async fn restart(&mut self) {
        MailnodeSide::restart(self).await
    }
    fn log_tail(&self) -> String {
        MailnodeSide::log_tail(self)
    }
}

impl Side for DovecotSide {
    fn imap(&self) -> SocketAddr {
        DovecotSide::imap(self)
    }
    fn pop3(&self) -> SocketAddr {
        DovecotSide::pop3(self)
    }
    fn lmtp(&self) -> SocketAddr {
        DovecotSide::lmtp(self)
    }
    fn roots(&self) -> Vec<u32> {
        DovecotSide::roots(self)
    }
    async fn restart(&mut self) {
        DovecotSide::restart(self).await
    }
    fn log_tail(&self) -> String {
        DovecotSide::log_tail(self)
    }
}

/// One thread for the whole client side: the servers keep the machine's other core, and a
/// client's reads and writes pay no cross-thread wake-ups.
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
    if p.dovecot {
        if let Some(why) = dovecot_side::missing() {
            eprintln!(
                "the Dovecot side cannot run: {why}.\n\
                 Run bench/imap-setup.sh (as root) first, or set BENCH_DOVECOT=0 to skip it."
            );
            std::process::exit(2);
        }
    }
    // The idle sessions' client sockets here, their server sockets in mailnode (one process)
    // or spread over Dovecot's (its log process holds a pipe per session process); the
    // servers inherit this limit.
    let fds = procs::raise_open_files();
    let needed = (p.idle + 400) as u64;
    if fds < needed {
        eprintln!(
            "the open-files limit (ulimit -n) is {fds}, below the {needed} that {} idle sessions \
             need, and its hard limit cannot be raised here; raise it (ulimit -Hn / -n) or lower \
             BENCH_IDLE",
            p.idle
        );
        std::process::exit(2);
    }
    let clients_max = CLIENTS.iter().copied().max().unwrap_or(1);
    assert!(
        p.iterations * 2 <= p.users * p.per_user,
        "BENCH_ITERATIONS × 2 must not exceed BENCH_USERS × BENCH_MESSAGES (each iteration \
         sets \\Seen on a message of its own)"
    );

    println!(
        "IMAP + POP3 benchmark{}: {} users × {} messages (4–100 KB, {} KB on average), \
         {} iterations per IMAP phase, {} per open-session phase, {} idle sessions",
        if p.quick { " (quick)" } else { "" },
        fmt_count(p.users as u64),
        p.per_user,
        client::SIZES.iter().sum::<usize>() / client::SIZES.len() / 1024,
        fmt_count(p.iterations as u64),
        fmt_count(p.open_iterations as u64),
        fmt_count(p.idle as u64)
    );
    println!("machine: {}", machine());
    println!("load average at the start: {}", load_average());
    println!("open-files limit: {fds}");
    println!("temporary files under {}", std::env::temp_dir().display());
    println!("mailnode: {}", env!("CARGO_BIN_EXE_mailnode"));
    if p.dovecot {
        println!("peer: {}", dovecot_side::version());
    }

    let t = Instant::now();
    let users = argon2_users(p.users);
    println!(
        "{} argon2id hashes (mailnode's parameters) made in {}",
        users.len(),
        fmt_duration(t.elapsed())
    );
    let bench_users = Arc::new(Users {
        names: users.iter().map(|(u, _)| u.clone()).collect(),
        password: PASSWORD.to_string(),
        per_user: p.per_user,
    });

    println!("\n[mailnode] one node on 127.0.202.1: LMTP :{LMTP_PORT}, IMAP :{IMAP_PORT}, POP3 :{POP3_PORT}");
    let mn = {
        let mut side = MailnodeSide::start(&users, p.idle + clients_max + 1000).await;
        let mut f = measure_side(&mut side, &p, &bench_users).await;
        f.hwm = procs::status_kib(side.roots()[0], "VmHWM");
        f
    };

    let dc = if p.dovecot {
        println!(
            "\n[dovecot] private instance on 127.0.202.2: LMTP :{LMTP_PORT}, IMAP :{IMAP_PORT}, POP3 :{POP3_PORT}"
        );
        let mut side = DovecotSide::start(&users).await;
        let mut f = measure_side(&mut side, &p, &bench_users).await;
        f.log_notes = side.log_notes();
        Some(f)
    } else {
        None
    };

    println!();
    print_tables(&p, &mn, dc.as_ref());
    println!();
    print_goals(&p, &mn, dc.as_ref());
    println!("load average at the end: {}", load_average());
}

/// `u0@bench.example` … with argon2id hashes of [`PASSWORD`] made by mailnode's own
/// `hash_password` (its default parameters, a salt each), on both cores.
fn argon2_users(n: usize) -> Vec<(String, String)> {
    let names: Vec<String> = (0..n).map(|i| format!("u{i}@{DOMAIN}")).collect();
    let half = n.div_ceil(2);
    let hashes: Vec<String> = std::thread::scope(|s| {
        let parts: Vec<_> = names
            .chunks(half.max(1))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|_| mailnode::directory::password::hash_password(PASSWORD))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().expect("hashing thread"))
            .collect()
    });
    names.into_iter().zip(hashes).collect()
}

/// The first three fields of /proc/loadavg: the machine may be shared with other work.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Waits for the side's processes to go quiet before the next step.
async fn quiet(roots: &[u32]) {
    let waited = procs::settle(roots, Duration::from_secs(60)).await;
    if waited > Duration::from_secs(2) {
        println!(
            "  (servers quiet (< 10% of a CPU) after {})",
            fmt_duration(waited)
        );
    }
}

fn fmt_memory(m: &Memory) -> String {
    format!(
        "{} resident in {} process(es) (anonymous {}, Pss {})",
        fmt_kib(m.rss),
        m.processes,
        fmt_kib(m.anon),
        fmt_kib(m.pss)
    )
}

/// Every step on one side.
async fn measure_side(side: &mut impl Side, p: &Params, users: &Arc<Users>) -> Figures {
    let mut f = Figures::default();

    let (took, octets) = load::deliver(side.lmtp(), users, LMTP_CONNECTIONS).await;
    let n = users.names.len() * users.per_user;
    println!(
        "  delivered {} messages ({}) over {LMTP_CONNECTIONS} LMTP connections in {} ({:.0}/s)",
        fmt_count(n as u64),
        fmt_kib(octets / 1024),
        fmt_duration(took),
        n as f64 / took.as_secs_f64()
    );
    f.delivered = Some((took, octets));
    side.restart().await;

    let roots = side.roots();
    quiet(&roots).await;
    f.started = procs::memory(&roots);
    println!("  started: {}", fmt_memory(&f.started));
    let t = Instant::now();
    load::warm_up(side.imap(), users, p.idle_concurrency).await;
    quiet(&roots).await;
    f.warm = procs::memory(&roots);
    println!(
        "  every user logged in once ({}): {}",
        fmt_duration(t.elapsed()),
        fmt_memory(&f.warm)
    );

    if p.idle > 0 {
        let t = Instant::now();
        let sessions = load::idle_sessions(side.imap(), users, p.idle, p.idle_concurrency).await;
        let opened = t.elapsed();
        quiet(&roots).await;
        let with = procs::memory(&roots);
        println!(
            "  {} sessions in IDLE, opened in {}: {}; {} per session ({} from the start), \
             anonymous {} per session, Pss {} per session",
            fmt_count(p.idle as u64),
            fmt_duration(opened),
            fmt_memory(&with),
            fmt_per(with.rss, f.warm.rss, p.idle),
            fmt_per(with.rss, f.started.rss, p.idle),
            fmt_per(with.anon, f.warm.anon, p.idle),
            fmt_per(with.pss, f.warm.pss, p.idle),
        );
        f.idle = Some(Idle {
            n: p.idle,
            opened,
            with,
        });
        drop(sessions);
        // Wait until the sessions' processes (Dovecot: one each) are gone.
        let deadline = Instant::now() + Duration::from_secs(120);
        while procs::tree(&roots).len() > f.warm.processes + 10 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let mut offset = 0;
    for clients in CLIENTS {
        quiet(&roots).await;
        let ph =
            load::imap_sessions(side.imap(), &roots, users, clients, p.iterations, offset).await;
        offset += p.iterations;
        print_imap("IMAP sessions", &ph);
        f.sessions.push(ph);
    }
    for clients in CLIENTS {
        quiet(&roots).await;
        let ph = load::imap_open(side.imap(), &roots, users, clients, p.open_iterations).await;
        print_imap("IMAP, sessions kept open", &ph);
        f.open.push(ph);
    }
    for clients in CLIENTS {
        quiet(&roots).await;
        let ph = load::pop3(side.pop3(), &roots, users, clients).await;
        println!(
            "  POP3, {} clients: {} sessions, {} messages ({}) in {}: {:.0} messages/s; \
             session p50 {}, p99 {}; CPU: servers {:.1} s, client {:.1} s{}",
            ph.clients,
            ph.sessions,
            fmt_count(ph.messages as u64),
            fmt_kib(ph.octets / 1024),
            fmt_duration(ph.session.wall),
            ph.messages_per_sec(),
            fmt_duration(ph.session.p50()),
            fmt_duration(ph.session.p99()),
            ph.cpu.server,
            ph.cpu.client,
            retried(ph.retries)
        );
        f.pop3.push(ph);
    }
    if !side.log_tail().is_empty() && std::env::var("BENCH_SHOW_LOG").is_ok() {
        println!("{}", side.log_tail());
    }
    f
}

fn retried(n: usize) -> String {
    if n > 0 {
        format!("; {n} attempts retried")
    } else {
        String::new()
    }
}

fn print_imap(what: &str, ph: &ImapPhase) {
    let cpu = &ph.cpu;
    let login = ph.login.as_ref().map_or(String::new(), |l| {
        format!(
            "LOGIN (with connect) p50 {}, p99 {}; ",
            fmt_duration(l.p50()),
            fmt_duration(l.p99())
        )
    });
    println!(
        "  {what}, {} clients: {} iterations in {}: {:.1} iterations/s, {:.0} commands/s; \
         {login}other commands p50 {}, p99 {}; {} of message bodies; CPU: servers {:.1} s \
         ({:.1} ms per iteration), client {:.1} s{}",
        ph.clients,
        fmt_count(ph.iterations as u64),
        fmt_duration(ph.iteration.wall),
        ph.iterations_per_sec(),
        ph.commands_per_sec(),
        fmt_duration(ph.command.p50()),
        fmt_duration(ph.command.p99()),
        fmt_kib(ph.body_octets / 1024),
        cpu.server,
        cpu.server * 1000.0 / ph.iterations as f64,
        cpu.client,
        retried(ph.retries)
    );
}

/// Whether `addr` greets (IMAP `* OK`, POP3 `+OK`, SMTP/LMTP `220`).
pub async fn greets(addr: SocketAddr) -> bool {
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut line = String::new();
        tokio::io::BufReader::new(tcp)
            .read_line(&mut line)
            .await
            .ok()?;
        Some(line.starts_with("* OK") || line.starts_with("+OK") || line.starts_with("220"))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Waits until `addr` greets, or panics with `log()`.
pub async fn wait_for_greeting(
    addr: SocketAddr,
    what: &str,
    within: Duration,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + within;
    while !greets(addr).await {
        assert!(
            Instant::now() < deadline,
            "no greeting from {what} on {addr}:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(after - before) / n` KiB as `12.3 KiB`.
fn fmt_per(after: u64, before: u64, n: usize) -> String {
    format!("{:.1} KiB", per_kib(after, before, n))
}

fn per_kib(after: u64, before: u64, n: usize) -> f64 {
    (after as f64 - before as f64) / n.max(1) as f64
}

fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}", a / b)
}

fn print_tables(p: &Params, mn: &Figures, dc: Option<&Figures>) {
    let none = || "—".to_string();

    println!("IMAP sessions: connect, LOGIN, SELECT INBOX, FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)]), UID FETCH n BODY.PEEK[], UID STORE n +FLAGS (\\Seen), LOGOUT");
    println!();
    println!("| clients ({} iterations) | mailnode logins/s | mailnode commands/s | Dovecot logins/s | Dovecot commands/s | mailnode / Dovecot |", fmt_count(p.iterations as u64));
    println!("|---|---|---|---|---|---|");
    for (i, m) in mn.sessions.iter().enumerate() {
        let d = dc.map(|d| &d.sessions[i]);
        println!(
            "| {} | {:.1}/s | {:.0}/s | {} | {} | {} |",
            m.clients,
            m.iterations_per_sec(),
            m.commands_per_sec(),
            d.map_or_else(none, |d| format!("{:.1}/s", d.iterations_per_sec())),
            d.map_or_else(none, |d| format!("{:.0}/s", d.commands_per_sec())),
            d.map_or_else(none, |d| ratio(m.commands_per_sec(), d.commands_per_sec())),
        );
    }
    println!();
    println!("| clients: latency p50 / p99 | mailnode connect + LOGIN | mailnode other commands | Dovecot connect + LOGIN | Dovecot other commands |");
    println!("|---|---|---|---|---|");
    let lat =
        |l: &measure::Latencies| format!("{} / {}", fmt_duration(l.p50()), fmt_duration(l.p99()));
    for (i, m) in mn.sessions.iter().enumerate() {
        let d = dc.map(|d| &d.sessions[i]);
        println!(
            "| {} | {} | {} | {} | {} |",
            m.clients,
            m.login.as_ref().map_or_else(none, lat),
            lat(&m.command),
            d.and_then(|d| d.login.as_ref()).map_or_else(none, lat),
            d.map_or_else(none, |d| lat(&d.command)),
        );
    }
    println!();
    println!("| clients: CPU per iteration (servers) / load generator's CPU share | mailnode | Dovecot |");
    println!("|---|---|---|");
    let cpu = |ph: &ImapPhase| {
        format!(
            "{:.1} ms / {:.0}%",
            ph.cpu.server * 1000.0 / ph.iterations as f64,
            100.0 * ph.cpu.client / ph.iteration.wall.as_secs_f64()
        )
    };
    for (i, m) in mn.sessions.iter().enumerate() {
        println!(
            "| {} | {} | {} |",
            m.clients,
            cpu(m),
            dc.map_or_else(none, |d| cpu(&d.sessions[i]))
        );
    }

    println!();
    println!("IMAP on sessions kept open (logged in before the clock starts): SELECT INBOX, FETCH headers, UID FETCH body, UID STORE ±FLAGS (\\Flagged)");
    println!();
    println!("| clients ({} iterations) | mailnode commands/s | Dovecot commands/s | mailnode / Dovecot | command p50 / p99, mailnode | Dovecot |", fmt_count(p.open_iterations as u64));
    println!("|---|---|---|---|---|---|");
    for (i, m) in mn.open.iter().enumerate() {
        let d = dc.map(|d| &d.open[i]);
        println!(
            "| {} | {:.0}/s | {} | {} | {} | {} |",
            m.clients,
            m.commands_per_sec(),
            d.map_or_else(none, |d| format!("{:.0}/s", d.commands_per_sec())),
            d.map_or_else(none, |d| ratio(m.commands_per_sec(), d.commands_per_sec())),
            lat(&m.command),
            d.map_or_else(none, |d| lat(&d.command)),
        );
    }

    println!();
    println!("POP3: USER, PASS, STAT, RETR of every message, QUIT; each maildrop once");
    println!();
    println!("| clients | mailnode messages/s | Dovecot messages/s | mailnode / Dovecot | session p50 / p99, mailnode | Dovecot |");
    println!("|---|---|---|---|---|---|");
    for (i, m) in mn.pop3.iter().enumerate() {
        let d = dc.map(|d| &d.pop3[i]);
        println!(
            "| {} ({} sessions, {} messages) | {:.0}/s | {} | {} | {} | {} |",
            m.clients,
            m.sessions,
            fmt_count(m.messages as u64),
            m.messages_per_sec(),
            d.map_or_else(none, |d| format!("{:.0}/s", d.messages_per_sec())),
            d.map_or_else(none, |d| ratio(m.messages_per_sec(), d.messages_per_sec())),
            lat(&m.session),
            d.map_or_else(none, |d| lat(&d.session)),
        );
    }

    println!();
    println!("| memory | mailnode | Dovecot |");
    println!("|---|---|---|");
    let mem = |m: &Memory| {
        format!(
            "{} ({} process(es); anonymous {}, Pss {})",
            fmt_kib(m.rss),
            m.processes,
            fmt_kib(m.anon),
            fmt_kib(m.pss)
        )
    };
    println!(
        "| restarted, no session: sum of VmRSS | {} | {} |",
        mem(&mn.started),
        dc.map_or_else(none, |d| mem(&d.started))
    );
    println!(
        "| after one login per user | {} | {} |",
        mem(&mn.warm),
        dc.map_or_else(none, |d| mem(&d.warm))
    );
    if let Some(mi) = &mn.idle {
        let di = dc.and_then(|d| d.idle.as_ref().map(|i| (d, i)));
        println!(
            "| with {} sessions in IDLE | {} | {} |",
            fmt_count(mi.n as u64),
            mem(&mi.with),
            di.map_or_else(none, |(_, i)| mem(&i.with))
        );
        let per = |f: &Figures, i: &Idle| {
            format!(
                "{} (anonymous {}, Pss {})",
                fmt_per(i.with.rss, f.warm.rss, i.n),
                fmt_per(i.with.anon, f.warm.anon, i.n),
                fmt_per(i.with.pss, f.warm.pss, i.n)
            )
        };
        println!(
            "| per idle session: VmRSS growth / sessions (from after the logins) | {} | {} |",
            per(mn, mi),
            di.map_or_else(none, |(d, i)| per(d, i))
        );
        println!(
            "| per idle session, from the restarted process | {} | {} |",
            fmt_per(mi.with.rss, mn.started.rss, mi.n),
            di.map_or_else(none, |(d, i)| fmt_per(i.with.rss, d.started.rss, i.n))
        );
        println!(
            "| time to open them ({} logins in flight) | {} | {} |",
            p.idle_concurrency,
            fmt_duration(mi.opened),
            di.map_or_else(none, |(_, i)| fmt_duration(i.opened))
        );
    }
    if let Some(hwm) = mn.hwm {
        println!(
            "| mailnode VmHWM at the end (whole run) | {} | — |",
            fmt_kib(hwm)
        );
    }
    let delivery = |f: &Figures| {
        f.delivered.map_or_else(none, |(t, o)| {
            format!(
                "{} ({:.0} messages/s, {})",
                fmt_duration(t),
                (p.users * p.per_user) as f64 / t.as_secs_f64(),
                fmt_kib(o / 1024)
            )
        })
    };
    println!(
        "| delivery of the messages over LMTP (untimed setup) | {} | {} |",
        delivery(mn),
        dc.map_or_else(none, delivery)
    );
    if let Some(d) = dc {
        if !d.log_notes.is_empty() {
            println!();
            println!("Dovecot's log:");
            for n in &d.log_notes {
                println!("  {n}");
            }
        }
    }
}

fn print_goals(p: &Params, mn: &Figures, dc: Option<&Figures>) {
    match dc {
        Some(dc) => {
            let mut ratios = Vec::new();
            for (i, m) in mn.sessions.iter().enumerate() {
                let d = &dc.sessions[i];
                ratios.push((
                    format!("IMAP sessions, {} clients", m.clients),
                    m.commands_per_sec() / d.commands_per_sec(),
                ));
            }
            for (i, m) in mn.pop3.iter().enumerate() {
                let d = &dc.pop3[i];
                ratios.push((
                    format!("POP3, {} clients", m.clients),
                    m.messages_per_sec() / d.messages_per_sec(),
                ));
            }
            let met = ratios.iter().filter(|(_, r)| *r >= GOAL_RATIO).count();
            let shown: Vec<String> = ratios
                .iter()
                .map(|(what, r)| format!("{what} {r:.2}×"))
                .collect();
            println!(
                "goal: at least {GOAL_RATIO}× Dovecot's throughput: {} (met in {met} of {}: {})",
                if met == ratios.len() {
                    "met"
                } else {
                    "NOT met"
                },
                ratios.len(),
                shown.join(", ")
            );
            let open: Vec<String> = mn
                .open
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    format!(
                        "{} clients {:.2}×",
                        m.clients,
                        m.commands_per_sec() / dc.open[i].commands_per_sec()
                    )
                })
                .collect();
            println!(
                "  (not part of the goal: the same commands on sessions kept open: {})",
                open.join(", ")
            );
        }
        None => println!(
            "goal: at least {GOAL_RATIO}× Dovecot's throughput: not measured (BENCH_DOVECOT=0)"
        ),
    }
    match &mn.idle {
        Some(i) => {
            let per = per_kib(i.with.rss, mn.warm.rss, i.n);
            let from_start = per_kib(i.with.rss, mn.started.rss, i.n);
            println!(
                "goal: at most {GOAL_IDLE_KIB} KB per idle connection: {} ({per:.1} KiB per \
                 session, {from_start:.1} KiB counting the first login of every user too; {} sessions)",
                if per <= GOAL_IDLE_KIB { "met" } else { "NOT met" },
                fmt_count(i.n as u64)
            );
            println!(
                "goal: {} idle IDLE connections on one node: {}",
                fmt_count(GOAL_IDLE_SESSIONS as u64),
                if i.n >= GOAL_IDLE_SESSIONS {
                    format!("met ({} sessions held in IDLE)", fmt_count(i.n as u64))
                } else {
                    format!(
                        "not measured in this run ({} sessions{})",
                        fmt_count(i.n as u64),
                        if p.quick { ", --quick" } else { "" }
                    )
                }
            );
        }
        None => println!("goal: idle connections: not measured (BENCH_IDLE=0)"),
    }
}
