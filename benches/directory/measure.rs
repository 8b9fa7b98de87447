//! Latency samples and their percentiles, process memory, and what the machine is.

use std::time::Duration;

/// Per-operation latencies of one phase, and the phase's wall time.
pub struct Latencies {
    /// Every operation's latency, sorted.
    sorted: Vec<Duration>,
    /// From the first operation's start to the last one's end (all clients together).
    pub wall: Duration,
}

impl Latencies {
    pub fn new(mut samples: Vec<Duration>, wall: Duration) -> Latencies {
        assert!(!samples.is_empty(), "a phase without samples");
        samples.sort_unstable();
        Latencies {
            sorted: samples,
            wall,
        }
    }

    /// Nearest-rank percentile: the smallest sample with at least `p`% of samples at or below.
    pub fn percentile(&self, p: f64) -> Duration {
        let n = self.sorted.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.sorted[rank.clamp(1, n) - 1]
    }

    pub fn p50(&self) -> Duration {
        self.percentile(50.0)
    }

    pub fn p99(&self) -> Duration {
        self.percentile(99.0)
    }

    pub fn count(&self) -> usize {
        self.sorted.len()
    }

    /// Operations per second over the wall time.
    pub fn per_sec(&self) -> f64 {
        self.sorted.len() as f64 / self.wall.as_secs_f64()
    }
}

/// How long an import took.
#[derive(Clone, Copy)]
pub struct ImportTime {
    /// Until the import command (`mailctl`, `ldapadd`) returned.
    pub command: Duration,
    /// Until every replica held every user: the figure that counts.
    pub complete: Duration,
}

/// Peak resident set size (`VmHWM`) of a running process, in KiB.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    status_kib(&pid.to_string(), "VmHWM")
}

/// A KiB field (`VmRSS`, `VmHWM`) of `/proc/{pid}/status`; `pid` may be `self`.
pub fn status_kib(pid: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// CPU time (user + system) a process has used so far, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0)
}

/// Waits until `pids` together use under 10% of one CPU over half a second (at most `max`),
/// so that background work left over from a phase (flushes, index and cache work) does not
/// land in the next phase's latencies; returns how long that took.
pub async fn settle(pids: &[u32], max: Duration) -> Duration {
    let start = std::time::Instant::now();
    let total = || pids.iter().map(|&p| cpu_ticks(p)).sum::<u64>();
    let mut before = total();
    while start.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = total();
        if now - before <= 5 {
            break;
        }
        before = now;
    }
    start.elapsed()
}

/// `2 × Intel(R) Xeon(R) … , 23.5 GiB RAM`, from /proc.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_string();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    format!(
        "{cpus} × {model}, {:.1} GiB RAM",
        mem_kib as f64 / (1024.0 * 1024.0)
    )
}

/// A duration with a unit that keeps three significant figures: `7.41 µs`, `1.23 ms`, `4.56 s`.
pub fn fmt_duration(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    let (value, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$} {unit}")
}

/// `35,000`.
pub fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// KiB as MiB with one decimal.
pub fn fmt_kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
