//! The server processes of one side and what they use, read from `/proc`: every process whose
//! parent chain reaches one of the side's roots (mailnode: its one process; Dovecot: its
//! `dovecot` master, which forks every other process of the instance — `imap-login`, `auth`,
//! one `imap` per session, `anvil`, `log`, `config`, …), their summed memory, and their CPU
//! time including that of children already exited and reaped by the master.
//!
//! Processes come and go under Dovecot's master (one per session), so every reader here
//! tolerates a process that has vanished or is a zombie.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What `/proc/PID/stat` tells.
struct Stat {
    ppid: u32,
    /// utime + stime, clock ticks.
    ticks: u64,
    /// cutime + cstime: children waited for.
    child_ticks: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after the last `)` do not.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split(' ').collect();
    // After the name: state (0), ppid (1), … utime (11), stime (12), cutime (13), cstime (14).
    if f.first() == Some(&"Z") {
        return None;
    }
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        ppid: num(1)? as u32,
        ticks: num(11)? + num(12)?,
        child_ticks: num(13)? + num(14)?,
    })
}

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

/// CPU time of the processes under `roots`, in clock ticks (1/100 s): each live process's own,
/// plus what the roots collected from children they reaped (Dovecot's master reaps every
/// session process). A process that exited between two reads without being reaped yet is
/// missed until it is.
pub fn cpu_ticks(roots: &[u32]) -> u64 {
    let mut total = 0;
    for pid in tree(roots) {
        if let Some(st) = stat(pid) {
            total += st.ticks;
            if roots.contains(&pid) {
                total += st.child_ticks;
            }
        }
    }
    total
}

/// CPU time of this process (the load generator), clock ticks.
pub fn own_ticks() -> u64 {
    stat(std::process::id()).map_or(0, |s| s.ticks)
}

/// Memory of a set of processes at one instant, KiB.
#[derive(Clone, Copy, Default, Debug)]
pub struct Memory {
    /// Sum of `VmRSS`: shared pages (libraries, the page cache of mapped files) count once per
    /// process that maps them.
    pub rss: u64,
    /// Sum of `RssAnon`: the anonymous part of `VmRSS` (heap, stacks), private to each process
    /// unless inherited copy-on-write from a fork.
    pub anon: u64,
    /// Sum of `Pss` (`/proc/PID/smaps_rollup`): every shared page divided between its sharers,
    /// so the sum is what the processes hold together.
    pub pss: u64,
    pub processes: usize,
}

fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A KiB field of `/proc/PID/status` (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kib_field(&text, field)
}

/// Memory summed over the processes under `roots`. Reading `smaps_rollup` walks each
/// process's mappings (about 0.1 ms for a small one): fine between phases, not to sample.
pub fn memory(roots: &[u32]) -> Memory {
    let mut m = Memory::default();
    for pid in tree(roots) {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let Some(rss) = kib_field(&status, "VmRSS") else {
            continue;
        };
        let pss = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .ok()
            .and_then(|t| kib_field(&t, "Pss"))
            .unwrap_or(rss);
        m.rss += rss;
        m.anon += kib_field(&status, "RssAnon").unwrap_or(0);
        m.pss += pss;
        m.processes += 1;
    }
    m
}

/// Waits until the processes under `roots` together use under 10% of one CPU over half a
/// second (at most `max`), so that one phase's leftovers (index writes, processes winding
/// down) do not land in the next; returns how long that took.
pub async fn settle(roots: &[u32], max: Duration) -> Duration {
    let start = Instant::now();
    let mut before = cpu_ticks(roots);
    while start.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = cpu_ticks(roots);
        if now.saturating_sub(before) <= 5 {
            break;
        }
        before = now;
    }
    start.elapsed()
}

/// Raises this process's soft limit on open files to its hard limit (the servers started
/// afterwards inherit it); returns the limit now in force.
pub fn raise_open_files() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

/// CPU used during a phase, seconds.
#[derive(Clone, Copy, Default, Debug)]
pub struct Cpu {
    /// By the side's server processes.
    pub server: f64,
    /// By this process (the load generator).
    pub client: f64,
}

/// Clock ticks per second of `/proc/PID/stat` (USER_HZ: 100 on Linux).
const TICKS: f64 = 100.0;

/// Measures [`Cpu`] from `start` to `stop`.
pub struct CpuClock {
    roots: Vec<u32>,
    server: u64,
    client: u64,
}

impl CpuClock {
    pub fn start(roots: &[u32]) -> CpuClock {
        CpuClock {
            roots: roots.to_vec(),
            server: cpu_ticks(roots),
            client: own_ticks(),
        }
    }

    pub fn stop(&self) -> Cpu {
        Cpu {
            server: cpu_ticks(&self.roots).saturating_sub(self.server) as f64 / TICKS,
            client: own_ticks().saturating_sub(self.client) as f64 / TICKS,
        }
    }
}
