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

/// Peak resident set size (`VmHWM`) of a running process, in KiB.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
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
