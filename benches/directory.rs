//! Directory benchmark: a three-node mailnode cluster (fsync on) against OpenLDAP `slapd` as a
//! provider/consumer (syncrepl) pair, on the same machine, with the same users.
//!
//! Run `bench/setup.sh` once (installs slapd and ldap-utils from Debian), then
//! `cargo bench --bench directory`. Environment: `BENCH_USERS` (default 35000) users to import
//! and look up, `BENCH_WRITES` (1000) single-user adds per write phase, `BENCH_CLIENTS` (16)
//! connections for the concurrent write phase, `BENCH_BATCH` to pass `--batch N` to
//! `mailctl user import` (records per request; default: mailctl's), `BENCH_SLAPD=0` to skip
//! the slapd side.
//!
//! Phases, for each system in turn (never both running at once, the machine has few cores):
//! import the LDIF file until every replica holds every user; look each user up once;
//! single-user adds from one client, then from `BENCH_CLIENTS` clients. Peak memory is the
//! sum of the server processes' `VmHWM`. Before both, the in-process lookup path the mail
//! services use (`Directory::user` + `Directory::resolve`) on a directory built from the same
//! file. The program installs nothing and stops every process it started, also on panic or
//! Ctrl-C.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "directory/data.rs"]
mod data;
#[path = "directory/mailnode_side.rs"]
mod mailnode_side;
#[path = "directory/measure.rs"]
mod measure;
#[path = "directory/slapd_side.rs"]
mod slapd_side;

use std::sync::Arc;
use std::time::Duration;

use mailnode_side::MailnodeSide;
use measure::{
    fmt_count, fmt_duration, fmt_kib, machine, settle, status_kib, vm_hwm_kib, ImportTime,
    Latencies,
};
use slapd_side::SlapdPair;

/// What the benchmark measured of one networked system.
#[derive(Default)]
struct Figures {
    /// Import until every replica holds every user.
    import: Option<ImportTime>,
    /// Sum of the servers' VmHWM once started, before the import.
    memory_idle: Option<u64>,
    /// Sum of the servers' VmHWM after import and lookups.
    memory_after_lookups: Option<u64>,
    /// Sum of the servers' VmHWM at the end of the run (after the write phases too).
    memory_at_end: Option<u64>,
    /// Each user looked up once over one connection.
    lookups: Option<Latencies>,
    /// Single-user adds from one client.
    writes: Option<Latencies>,
    /// Single-user adds from many clients.
    concurrent_writes: Option<Latencies>,
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// One thread for the whole client side: each request's task and its connection's task then
/// run on the same thread, so no request pays a cross-thread wake-up, and the servers keep the
/// machine's other core.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Leaving `select!` drops `run`, and with it the node and slapd handles, which stop their
    // processes; a panic unwinds through the same drops.
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
    let n_users = env_usize("BENCH_USERS", 35_000);
    let n_writes = env_usize("BENCH_WRITES", 1_000);
    let clients = env_usize("BENCH_CLIENTS", 16).max(1);
    let batch = std::env::var("BENCH_BATCH")
        .ok()
        .map(|_| env_usize("BENCH_BATCH", 0));
    let with_slapd = std::env::var("BENCH_SLAPD").map_or(true, |v| v != "0");
    if with_slapd {
        if let Some(why) = slapd_side::missing() {
            eprintln!(
                "the slapd side cannot run: {why}.\n\
                 Run bench/setup.sh (as root) first, or set BENCH_SLAPD=0 to skip slapd."
            );
            std::process::exit(2);
        }
    }

    println!("directory benchmark: {} users", fmt_count(n_users as u64));
    println!("machine: {}", machine());
    println!("temporary files under {}", std::env::temp_dir().display());
    if with_slapd {
        println!("peer: {}", slapd_side::version());
    }

    let users = data::users("u", n_users, true);
    let ldif = data::ldif(&users);
    let work = tempfile::tempdir().expect("temporary folder");
    let ldif_path = work.path().join("users.ldif");
    std::fs::write(&ldif_path, &ldif).expect("write the LDIF file");
    let order = data::shuffled(n_users);
    let sequential = Arc::new(data::users("w", n_writes, false));
    let concurrent = Arc::new(data::users("c", n_writes, false));
    let last_dn = users.last().expect("at least one user").dn();

    println!("\n[in-process] building a Directory from the file, then user() + resolve() each");
    let (built, local, local_untimed) = mailnode_side::local_lookups(&ldif, &users, &order);
    println!(
        "  built in {}; lookups p50 {} p99 {}, {} for all (without clock reads: {})",
        fmt_duration(built),
        fmt_duration(local.p50()),
        fmt_duration(local.p99()),
        fmt_duration(local.wall),
        fmt_duration(local_untimed)
    );

    println!("\n[mailnode] starting 3 nodes on 127.0.200.1-3");
    let mut mn = Figures::default();
    {
        let cluster = MailnodeSide::start().await;
        println!("  leader: n{}", cluster.leader());
        mn.memory_idle = Some(memory("idle", &cluster.pids()));
        let t = cluster.import(&ldif_path, n_users, batch).await;
        report_import("mailctl", t);
        memory("after import", &cluster.pids());
        quiet(&cluster.pids()).await;
        mn.import = Some(t);
        let l = cluster.lookups(&users, &order).await;
        report("lookups (GET /api/users/ADDR, follower)", &l);
        mn.lookups = Some(l);
        mn.memory_after_lookups = Some(memory("after import + lookups", &cluster.pids()));
        let w = cluster.writes(sequential.clone(), 1).await;
        report("writes, 1 client", &w);
        mn.writes = Some(w);
        let w = cluster.writes(concurrent.clone(), clients).await;
        report(&format!("writes, {clients} clients"), &w);
        mn.concurrent_writes = Some(w);
        mn.memory_at_end = Some(memory("at the end", &cluster.pids()));
    }

    let mut sl = Figures::default();
    if with_slapd {
        println!("\n[slapd] starting provider 127.0.200.11:3890 and consumer 127.0.200.12:3890");
        let pair = SlapdPair::start().await;
        sl.memory_idle = Some(memory("idle", &pair.pids()));
        let t = pair.import(&ldif_path, &last_dn, n_users).await;
        report_import("ldapadd", t);
        memory("after import", &pair.pids());
        quiet(&pair.pids()).await;
        sl.import = Some(t);
        let l = pair.lookups(&users, &order).await;
        report("lookups (search (mail=ADDR), consumer)", &l);
        sl.lookups = Some(l);
        sl.memory_after_lookups = Some(memory("after import + lookups", &pair.pids()));
        let w = pair.writes(sequential.clone(), 1).await;
        report("writes, 1 client", &w);
        sl.writes = Some(w);
        let w = pair.writes(concurrent.clone(), clients).await;
        report(&format!("writes, {clients} clients"), &w);
        sl.concurrent_writes = Some(w);
        sl.memory_at_end = Some(memory("at the end", &pair.pids()));
    }

    println!();
    print_table(n_users, n_writes, clients, &mn, &sl, &local, local_untimed);
    println!();
    print_goals(&mn, &sl, &local);
}

/// Prints each server process's peak (VmHWM) and current (VmRSS) resident memory; returns
/// the sum of the peaks.
fn memory(when: &str, pids: &[u32]) -> u64 {
    let peaks: Vec<u64> = pids.iter().map(|&p| vm_hwm_kib(p)).collect();
    let now: Vec<String> = pids
        .iter()
        .map(|&p| fmt_kib(status_kib(&p.to_string(), "VmRSS")))
        .collect();
    let sum = peaks.iter().sum();
    let each: Vec<String> = peaks.iter().map(|&k| fmt_kib(k)).collect();
    println!(
        "  peak memory {when}: {} ({}); resident now {}",
        fmt_kib(sum),
        each.join(" + "),
        now.join(" + ")
    );
    sum
}

/// Waits for the servers to go quiet before the next phase, and says how long that took.
async fn quiet(pids: &[u32]) {
    let waited = settle(pids, Duration::from_secs(60)).await;
    println!(
        "  servers quiet (< 10% of a CPU) after {}",
        fmt_duration(waited)
    );
}

fn report_import(command: &str, t: ImportTime) {
    println!(
        "  import: {command} returned after {}, every replica complete after {}",
        fmt_duration(t.command),
        fmt_duration(t.complete)
    );
}

fn report(what: &str, l: &Latencies) {
    println!(
        "  {what}: {} ops in {}, {:.0}/s, p50 {}, p99 {}",
        fmt_count(l.count() as u64),
        fmt_duration(l.wall),
        l.per_sec(),
        fmt_duration(l.p50()),
        fmt_duration(l.p99())
    );
}

/// One row: mailnode's figure, slapd's, and mailnode / slapd.
fn row<T: Copy>(
    label: &str,
    mn: Option<T>,
    sl: Option<T>,
    show: impl Fn(T) -> String,
    value: impl Fn(T) -> f64,
) {
    let ratio = match (mn, sl) {
        (Some(a), Some(b)) if value(b) > 0.0 => format!("{:.2}", value(a) / value(b)),
        _ => "—".to_string(),
    };
    let cell = |v: Option<T>| v.map_or("—".to_string(), &show);
    println!("| {label} | {} | {} | {ratio} |", cell(mn), cell(sl));
}

fn print_table(
    n_users: usize,
    n_writes: usize,
    clients: usize,
    mn: &Figures,
    sl: &Figures,
    local: &Latencies,
    local_untimed: Duration,
) {
    let users = fmt_count(n_users as u64);
    let writes = fmt_count(n_writes as u64);
    let dur = |d: Duration| fmt_duration(d);
    let secs = |d: Duration| d.as_secs_f64();
    let rate = |l: &Latencies| format!("{:.0}/s", l.per_sec());
    println!("| measure | mailnode, 3 nodes | slapd provider + consumer | mailnode / slapd |");
    println!("|---|---|---|---|");
    row(
        &format!("import {users} users, until every replica has all"),
        mn.import.map(|t| t.complete),
        sl.import.map(|t| t.complete),
        dur,
        secs,
    );
    row(
        "… of which the import command (mailctl / ldapadd) ran",
        mn.import.map(|t| t.command),
        sl.import.map(|t| t.command),
        dur,
        secs,
    );
    row(
        "peak memory, started and idle (sum of VmHWM)",
        mn.memory_idle,
        sl.memory_idle,
        fmt_kib,
        |k| k as f64,
    );
    row(
        "peak memory after import + lookups (sum of VmHWM)",
        mn.memory_after_lookups,
        sl.memory_after_lookups,
        fmt_kib,
        |k| k as f64,
    );
    let lat = |f: &Figures, p: fn(&Latencies) -> Duration| f.lookups.as_ref().map(p);
    row(
        &format!("network lookup p50 ({users} users, 1 connection)"),
        lat(mn, Latencies::p50),
        lat(sl, Latencies::p50),
        dur,
        secs,
    );
    row(
        "network lookup p99",
        lat(mn, Latencies::p99),
        lat(sl, Latencies::p99),
        dur,
        secs,
    );
    row(
        &format!("network lookup, all {users} users"),
        mn.lookups.as_ref().map(|l| l.wall),
        sl.lookups.as_ref().map(|l| l.wall),
        dur,
        secs,
    );
    let write_rows = |name: String, a: Option<&Latencies>, b: Option<&Latencies>| {
        let ratio = match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}", a.per_sec() / b.per_sec()),
            _ => "—".into(),
        };
        println!(
            "| {name}: writes/s | {} | {} | {ratio} |",
            a.map_or("—".into(), rate),
            b.map_or("—".into(), rate),
        );
        let (p50, p99) = (Latencies::p50, Latencies::p99);
        row(&format!("{name}: p50"), a.map(p50), b.map(p50), dur, secs);
        row(&format!("{name}: p99"), a.map(p99), b.map(p99), dur, secs);
    };
    write_rows(
        format!("writes, 1 client ({writes} adds)"),
        mn.writes.as_ref(),
        sl.writes.as_ref(),
    );
    write_rows(
        format!("writes, {clients} clients ({writes} adds)"),
        mn.concurrent_writes.as_ref(),
        sl.concurrent_writes.as_ref(),
    );
    row(
        "peak memory at the end (sum of VmHWM)",
        mn.memory_at_end,
        sl.memory_at_end,
        fmt_kib,
        |k| k as f64,
    );
    println!(
        "| local lookup, in-process user() + resolve(): p50 / p99 | {} / {} | (no in-process path) | — |",
        dur(local.p50()),
        dur(local.p99())
    );
    println!(
        "| local lookup, all {users} users (timed / without clock reads) | {} / {} | — | — |",
        dur(local.wall),
        dur(local_untimed)
    );
}

fn print_goals(mn: &Figures, sl: &Figures, local: &Latencies) {
    match (mn.import.map(|t| t.complete), sl.import.map(|t| t.complete)) {
        (Some(a), Some(b)) => println!(
            "goal: import faster than the slapd pair: {} ({} vs {}, {:.1}× {})",
            if a < b { "met" } else { "NOT met" },
            fmt_duration(a),
            fmt_duration(b),
            if a < b {
                secs_ratio(b, a)
            } else {
                secs_ratio(a, b)
            },
            if a < b { "faster" } else { "slower" }
        ),
        _ => println!("goal: import faster than the slapd pair: not measured (BENCH_SLAPD=0)"),
    }
    let goal = Duration::from_micros(50);
    println!(
        "goal: local lookup p99 under 50 µs: {} (in-process p99 {}; over the admin API p99 {})",
        if local.p99() < goal { "met" } else { "NOT met" },
        fmt_duration(local.p99()),
        mn.lookups
            .as_ref()
            .map_or("—".into(), |l| fmt_duration(l.p99()))
    );
}

fn secs_ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
