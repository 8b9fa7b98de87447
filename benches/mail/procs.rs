//! The server processes of one side and what they use, read from `/proc`: every process under
//! the side's root processes (mailnode: its one process; the peer: Postfix's `master` and
//! Dovecot's `dovecot`, with every child they fork), their summed resident memory (`VmRSS`) and
//! proportional memory (`Pss`, shared pages split between the processes sharing them), a
//! sampler thread that keeps the peak of the sum, and a wait for the servers to go quiet.
//!
//! Processes come and go under the peer's masters (one `smtpd` per session, `cleanup`, `lmtp`),
//! so every reader here tolerates a process that has vanished or is a zombie.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Every live process whose ancestry reaches one of `roots` (the roots included).
pub fn tree(roots: &[u32]) -> Vec<u32> {
    let mut parent: HashMap<u32, u32> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(st) = stat(pid) {
                parent.insert(pid, st.ppid);
            }
        }
    }
    parent
        .keys()
        .copied()
        .filter(|&pid| {
            let mut p = pid;
            // Bounded: a cycle cannot happen in /proc, but a racing reader must not spin.
            for _ in 0..64 {
                if roots.contains(&p) {
                    return true;
                }
                match parent.get(&p) {
                    Some(&pp) if pp > 1 => p = pp,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

/// What `/proc/PID/stat` tells: parent, CPU time so far (clock ticks), and zombie state.
struct Stat {
    ppid: u32,
    ticks: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after the last `)` do not.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split(' ').collect();
    // After the name: state (0), ppid (1), …, utime (11), stime (12).
    if f.first() == Some(&"Z") {
        return None;
    }
    Some(Stat {
        ppid: f.get(1)?.parse().ok()?,
        ticks: f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
    })
}

/// A KiB field of `/proc/PID/status` (`VmRSS`, `VmHWM`); `None` when the process is gone or
/// has no memory (a zombie).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kib_field(&text, field)
}

fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Memory of a set of processes at one instant.
#[derive(Clone, Copy, Default, Debug)]
pub struct Memory {
    /// Sum of `VmRSS`: shared pages (libraries, a forked parent's pages) count once per process.
    pub rss_kib: u64,
    /// Sum of `Pss` (`/proc/PID/smaps_rollup`): shared pages split between their sharers, so
    /// the sum is what the processes together hold.
    pub pss_kib: u64,
    /// How many processes were counted.
    pub processes: usize,
}

/// `VmRSS` and `Pss` summed over `pids` (vanished processes count nothing). Reading
/// `smaps_rollup` walks each process's mappings: fine between phases, too slow to sample.
pub fn memory(pids: &[u32]) -> Memory {
    let mut m = Memory::default();
    for &pid in pids {
        let Some(rss) = status_kib(pid, "VmRSS") else {
            continue;
        };
        let pss = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .ok()
            .and_then(|t| kib_field(&t, "Pss"))
            .unwrap_or(rss);
        m.rss_kib += rss;
        m.pss_kib += pss;
        m.processes += 1;
    }
    m
}

/// Sums of `VmRSS` and of `RssAnon` (its anonymous part: no file-backed pages such as shared
/// libraries) over the process tree under `roots`, and the number of processes.
fn rss_now(roots: &[u32]) -> (u64, u64, usize) {
    let pids = tree(roots);
    let (mut rss, mut anon) = (0, 0);
    for &pid in &pids {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        rss += kib_field(&text, "VmRSS").unwrap_or(0);
        anon += kib_field(&text, "RssAnon").unwrap_or(0);
    }
    (rss, anon, pids.len())
}

/// What a [`PeakSampler`] saw in one window.
#[derive(Clone, Copy, Default, Debug)]
pub struct Peak {
    /// Highest sum of `VmRSS`, KiB.
    pub rss_kib: u64,
    /// Highest sum of `RssAnon`, KiB (read in the same samples; its peak may fall on another).
    pub anon_kib: u64,
    /// Most processes at once.
    pub processes: usize,
}

/// A thread that sums the resident memory of a side's processes every 100 ms and keeps the
/// highest sums (and the most processes) seen since it started or was last taken. A thread, not
/// a task: scanning `/proc` is blocking work that must not stall the load generator's clients.
/// (`Pss` would be the fairer sum, but reading it costs about a millisecond per process.)
pub struct PeakSampler {
    /// Highest sums of `VmRSS` and `RssAnon` seen, KiB; most processes seen at once.
    rss: Arc<AtomicU64>,
    anon: Arc<AtomicU64>,
    processes: Arc<AtomicU64>,
    /// Tells the thread to end.
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How often the sampler reads the processes.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

impl PeakSampler {
    pub fn start(roots: Vec<u32>) -> PeakSampler {
        let rss = Arc::new(AtomicU64::new(0));
        let anon = Arc::new(AtomicU64::new(0));
        let processes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (rss, anon, processes, stop) =
                (rss.clone(), anon.clone(), processes.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (r, a, n) = rss_now(&roots);
                    rss.fetch_max(r, Ordering::Relaxed);
                    anon.fetch_max(a, Ordering::Relaxed);
                    processes.fetch_max(n as u64, Ordering::Relaxed);
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
        };
        PeakSampler {
            rss,
            anon,
            processes,
            stop,
            thread: Some(thread),
        }
    }

    /// The peaks since the start or the last `take`; then starts a new window.
    pub fn take(&self) -> Peak {
        Peak {
            rss_kib: self.rss.swap(0, Ordering::Relaxed),
            anon_kib: self.anon.swap(0, Ordering::Relaxed),
            processes: self.processes.swap(0, Ordering::Relaxed) as usize,
        }
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until the processes under `roots` together use under 10% of one CPU over half a
/// second (at most `max`), so that one phase's leftover work (queue runs, index writes,
/// processes winding down) does not land in the next phase; returns how long that took.
pub async fn settle(roots: &[u32], max: Duration) -> Duration {
    let start = Instant::now();
    let ticks = || -> HashMap<u32, u64> {
        tree(roots)
            .into_iter()
            .filter_map(|p| Some((p, stat(p)?.ticks)))
            .collect()
    };
    let mut before = ticks();
    while start.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = ticks();
        // Only processes alive at both reads: one that exited took its ticks along.
        let used: u64 = now
            .iter()
            .filter_map(|(p, t)| Some(t.saturating_sub(*before.get(p)?)))
            .sum();
        if used <= 5 {
            break;
        }
        before = now;
    }
    start.elapsed()
}

/// The soft limit on open files of this process (`ulimit -n`), which the servers inherit.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
