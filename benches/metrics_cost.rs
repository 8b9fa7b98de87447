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
    let cpu_before = cpu_seconds(pid);
    let (u, b) = (users.clone(), body.clone());
    let l = load::run(mx, tag, u, b, CLIENTS, n, 1, count, PATIENCE).await;
    drained(&side).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    Sample {
        per_sec: n as f64 / l.delivered.as_secs_f64(),
        cpu_us_per_msg: cpu * 1e6 / n as f64,
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
    println!("load average at the end: {}", load_average());
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}
