//! What instrumentation costs (issue 8): the mail-in path (SMTP → queue → LMTP → store, one
//! `mailnode` process, as in `benches/mail.rs`) with metrics on and with `[metrics] enabled =
//! false`, in alternating rounds on the same machine in one run.
//!
//! Two figures per round and setting: delivered messages per second (what the issue names, but
//! it moves by ±20 % between runs on a shared machine), and the server's CPU time per message
//! (user + system time of the process from `/proc/<pid>/stat`, which counts exited threads too),
//! which other work on the machine disturbs far less. Each round starts a fresh node for each
//! setting (the order alternates between rounds), sends a warm-up, then times
//! `BENCH_MESSAGES` 4 KB messages from 20 clients until the last one is in its mailbox and the
//! queue is empty. The medians over rounds are compared; the goal is a difference within 3 %.
//! Both move by more than 3 % between rounds even on an idle machine, so the program also
//! counts the metric updates per message (from `/metrics` before and after each run with
//! metrics on), times one update in this process with the same prometheus types (two threads
//! contending), and compares their product with the CPU time a message costs.
//!
//! `cargo bench --bench metrics_cost` (or `-- --quick`). Environment: `BENCH_ROUNDS` (5; quick
//! 2), `BENCH_MESSAGES` (4000; quick 600), `BENCH_USERS` (100). Uses 127.0.201.0/24 like the
//! mail benchmark: never run the two at once.

#[path = "../tests/common/mod.rs"]
mod common;
// Shared with the mail benchmark; not all of them is used here.
#[allow(dead_code)]
#[path = "mail/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "mail/mailnode_side.rs"]
mod mailnode_side;
#[allow(dead_code)]
#[path = "directory/measure.rs"]
mod measure;
#[path = "mail/smtp_wait.rs"]
mod smtp_wait;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailnode_side::MailnodeSide;
use measure::machine;
pub use smtp_wait::wait_for_smtp;

/// The mail domain of every recipient (`mailnode_side` uses it).
pub const DOMAIN: &str = "bench.example";
/// Issue 8's bound on the cost of instrumentation.
const GOAL_PERCENT: f64 = 3.0;
const CLIENTS: usize = 20;
const SIZE: usize = 4 * 1024;
const WARM_UP: usize = 200;
const PATIENCE: Duration = Duration::from_secs(600);

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("{name}={v:?} is not a number");
            std::process::exit(2)
        }),
        Err(_) => default,
    }
}

/// One timed run of one setting.
struct Sample {
    per_sec: f64,
    cpu_us_per_msg: f64,
    /// Metric updates per message, from `/metrics` before and after (metrics on only).
    updates_per_msg: Option<f64>,
}

/// Sample values by series (`name{labels}`) and metric types by family name, from the text
/// exposition format.
fn parse_exposition(text: &str) -> (HashMap<String, f64>, HashMap<String, String>) {
    let (mut values, mut types) = (HashMap::new(), HashMap::new());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                types.insert(name.to_string(), kind.trim().to_string());
            }
        } else if !line.starts_with('#') {
            if let Some((series, value)) = line.rsplit_once(' ') {
                if let Ok(v) = value.parse::<f64>() {
                    values.insert(series.to_string(), v);
                }
            }
        }
    }
    (values, types)
}

/// How many metric updates (counter increments, histogram observations) happened between two
/// scrapes. A counter of bytes moves by a message's size in one update: it counts one update
/// per message. Gauges are computed at scrape time and cost nothing per message.
fn updates_between(before: &str, after: &str, messages: usize) -> f64 {
    let (b, _) = parse_exposition(before);
    let (a, types) = parse_exposition(after);
    let mut updates = 0.0;
    for (series, v) in &a {
        let name = series.split('{').next().unwrap_or(series);
        let delta = v - b.get(series).copied().unwrap_or(0.0);
        if delta <= 0.0 {
            continue;
        }
        let counted = match types.get(name).map(String::as_str) {
            Some("counter") if name.contains("bytes") => messages as f64,
            Some("counter") => delta,
            // A histogram family's observations are its `_count`.
            None if name.ends_with("_count")
                && types
                    .get(name.trim_end_matches("_count"))
                    .map(String::as_str)
                    == Some("histogram") =>
            {
                delta
            }
            _ => 0.0,
        };
        updates += counted;
    }
    updates
}

/// CPU nanoseconds per metric update, measured in this process with the same prometheus types
/// the node uses, two threads updating the same series at once (the node's two cores
/// contending): `(counter looked up by labels then incremented, histogram observation of a
/// timer)`. The node resolves most handles once, so the first is an upper bound.
fn ns_per_update() -> (f64, f64) {
    use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};
    const N: u32 = 2_000_000;
    const THREADS: u32 = 2;
    let counter =
        IntCounterVec::new(Opts::new("c_total", "c"), &["service", "result"]).expect("counter");
    let histogram = Histogram::with_opts(HistogramOpts::new("h_seconds", "h")).expect("histogram");
    let per_op = |f: &(dyn Fn() + Sync)| {
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for _ in 0..N {
                        f();
                    }
                });
            }
        });
        t.elapsed().as_nanos() as f64 * THREADS as f64 / (N * THREADS) as f64
    };
    let c = per_op(&|| counter.with_label_values(&["smtp", "accepted"]).inc());
    let h = per_op(&|| {
        let started = Instant::now();
        histogram.observe(std::hint::black_box(started).elapsed().as_secs_f64());
    });
    (c, h)
}

/// User + system CPU time of a process (all its threads, living or exited), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading /proc/PID/stat");
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // The kernel's clock tick (USER_HZ): 100 on every Linux this runs on; ask to be sure.
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    ticks as f64 / hz
}

/// Waits until the side's queue holds nothing.
async fn drained(side: &MailnodeSide) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !side.queue_empty() {
        assert!(
            Instant::now() < deadline,
            "the queue did not empty within 2 minutes:\n{}",
            side.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn one(
    metrics: bool,
    users: &Arc<Vec<String>>,
    body: &Arc<Vec<u8>>,
    n: usize,
    tag: &str,
) -> Sample {
    let more = if metrics {
        ""
    } else {
        "\n[metrics]\nenabled = false\n"
    };
    let side = MailnodeSide::start_with(users, 1000, more).await;
    let mx: SocketAddr = side.mx();
    let count = side.in_mailboxes();
    let warm = format!("{tag}-warm");
    let (u, b) = (users.clone(), body.clone());
    load::run(
        mx,
        &warm,
        u,
        b,
        CLIENTS,
        WARM_UP,
        1,
        count.clone(),
        PATIENCE,
    )
    .await;
    drained(&side).await;
    let pid = side.roots()[0];
    let scrape_before = if metrics {
        Some(side.metrics_text().await)
    } else {
        None
    };
    let cpu_before = cpu_seconds(pid);
    let (u, b) = (users.clone(), body.clone());
    let l = load::run(mx, tag, u, b, CLIENTS, n, 1, count, PATIENCE).await;
    drained(&side).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    let updates_per_msg = match scrape_before {
        Some(before) => {
            let after = side.metrics_text().await;
            Some(updates_between(&before, &after, n) / n as f64)
        }
        None => None,
    };
    Sample {
        per_sec: n as f64 / l.delivered.as_secs_f64(),
        cpu_us_per_msg: cpu * 1e6 / n as f64,
        updates_per_msg,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[tokio::main]
async fn main() {
    let mut quick = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--quick" => quick = true,
            "--bench" => {}
            other => {
                eprintln!("unknown argument {other:?}; usage: cargo bench --bench metrics_cost [-- --quick]");
                std::process::exit(2);
            }
        }
    }
    let rounds = env_usize("BENCH_ROUNDS", if quick { 2 } else { 5 }).max(1);
    let n = env_usize("BENCH_MESSAGES", if quick { 600 } else { 4000 }).max(1);
    let users: Arc<Vec<String>> = Arc::new(
        (0..env_usize("BENCH_USERS", 100).max(1))
            .map(|i| format!("u{i}@{DOMAIN}"))
            .collect(),
    );
    let body = load::body(SIZE);
    println!(
        "instrumentation cost{}: {n} messages of 4 KB from {CLIENTS} clients per run, {rounds} round(s), metrics on and off alternating",
        if quick { " (quick)" } else { "" }
    );
    println!("machine: {}", machine());
    println!("load average at the start: {}", load_average());
    let (mut on, mut off) = (Vec::new(), Vec::new());
    println!("\n| round | setting | delivered/s | server CPU µs/message |\n|---|---|---|---|");
    for r in 0..rounds {
        let order = if r % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for metrics in order {
            let s = one(metrics, &users, &body, n, &format!("r{r}-{metrics}")).await;
            println!(
                "| {} | {} | {:.0} | {:.1} |",
                r + 1,
                if metrics { "on" } else { "off" },
                s.per_sec,
                s.cpu_us_per_msg
            );
            if metrics {
                on.push(s)
            } else {
                off.push(s)
            }
        }
    }
    let rate = |v: &[Sample]| median(v.iter().map(|s| s.per_sec).collect());
    let cpu = |v: &[Sample]| median(v.iter().map(|s| s.cpu_us_per_msg).collect());
    let (rate_on, rate_off, cpu_on, cpu_off) = (rate(&on), rate(&off), cpu(&on), cpu(&off));
    let rate_cost = (rate_off - rate_on) / rate_off * 100.0;
    let cpu_cost = (cpu_on - cpu_off) / cpu_off * 100.0;
    println!("\n| median over {rounds} round(s) | metrics on | metrics off | cost of metrics |\n|---|---|---|---|");
    println!("| delivered/s | {rate_on:.0} | {rate_off:.0} | {rate_cost:+.1} % |");
    println!("| server CPU µs/message | {cpu_on:.1} | {cpu_off:.1} | {cpu_cost:+.1} % |");
    let verdict = |x: f64| if x <= GOAL_PERCENT { "met" } else { "NOT met" };
    println!(
        "\ngoal: instrumentation costs at most {GOAL_PERCENT} %: CPU per message {} ({cpu_cost:+.1} %), throughput {} ({rate_cost:+.1} %)",
        verdict(cpu_cost),
        verdict(rate_cost)
    );
    // The robust figure: what the updates themselves cost, against the CPU a message takes.
    let updates = median(on.iter().filter_map(|s| s.updates_per_msg).collect());
    let (ns_counter, ns_histogram) = ns_per_update();
    let ns_worst = ns_counter.max(ns_histogram);
    let cost_us = updates * ns_worst / 1000.0;
    let share = cost_us / cpu_off * 100.0;
    println!(
        "\nmetric updates per message (from /metrics before and after each run): {updates:.1}; \
         CPU per update, 2 threads on one series: {ns_counter:.0} ns (counter found by labels), \
         {ns_histogram:.0} ns (histogram timer)"
    );
    println!(
        "instrumentation CPU per message: at most {updates:.1} × {ns_worst:.0} ns = {cost_us:.2} µs, \
         {share:.3} % of the {cpu_off:.0} µs a message costs with metrics off: {}",
        verdict(share)
    );
    println!("load average at the end: {}", load_average());
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}
