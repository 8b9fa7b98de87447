//! Sieve benchmark (issue 7): compile time and per-message execution cost of a typical 50-rule
//! script, Mailnode's `sieve` module against Dovecot's Pigeonhole (Debian `dovecot-sieve`) on
//! the same machine, in the same run, with the same script and messages.
//!
//! Run `apt-get install dovecot-sieve` once (for `sievec` and `sieve-filter`), then
//! `cargo bench --bench sieve` (`-- --quick` for a short run). Environment: `BENCH_MESSAGES`
//! per kind (default 100 [quick 20]), `BENCH_ROUNDS` passes over the messages (default 20
//! [quick 3]), `BENCH_COMPILES` (default 2000 [quick 200]), `BENCH_DOVECOT=0` to skip Pigeonhole.
//!
//! The messages come in three kinds: small (about 1.5 KB, plain text), 100 KB plain text, and
//! MIME multipart (text, HTML and a 60 KB base64 attachment); headers vary (senders, subjects,
//! lists, priorities, spam scores) so the rules take different paths.
//!
//! Mailnode: `sieve::compile` timed `BENCH_COMPILES` times; then for every message, every
//! round, `MessageView::from_raw` (MIME parsing and decoding) and `sieve::run`, timed apart, on
//! one thread. Pigeonhole: `sievec` of a directory of 100 copies of the script minus `sievec`
//! of one copy, divided by 99 (median of 7 runs each); `sieve-filter` (dry run: evaluates the script, performs nothing)
//! over a Maildir per kind, minus `sieve-filter` over a one-message Maildir, median of 5 runs,
//! divided by the messages. So Pigeonhole's figure is a mean per message that includes reading
//! the message from its Maildir file and Dovecot's mailbox layer; Mailnode's parse + run starts
//! from bytes in memory. Run as root, the Dovecot tools run as `nobody` (Dovecot refuses root).
//! The program installs nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mailnode::sieve::{self, Envelope, Limits, MessageView, SieveTime};

/// The recipient every message is delivered to.
const RCPT: &str = "alice@example.org";

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let env_num = |k: &str, full: usize, q: usize| -> usize {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if quick { q } else { full })
    };
    let per_kind = env_num("BENCH_MESSAGES", 100, 20).max(2);
    let rounds = env_num("BENCH_ROUNDS", 20, 3).max(1);
    let compiles = env_num("BENCH_COMPILES", 2000, 200).max(1);
    let dovecot = std::env::var("BENCH_DOVECOT").map_or(true, |v| v != "0");

    let script = script();
    let rules = script.matches("\nif ").count();
    let kinds = [
        ("small", messages(per_kind, Kind::Small)),
        ("100 KB", messages(per_kind, Kind::Large)),
        ("multipart", messages(per_kind, Kind::Multipart)),
    ];
    println!(
        "Sieve benchmark: {rules}-rule script of {} bytes",
        script.len()
    );
    println!("machine: {}", machine());
    println!(
        "messages: {per_kind} per kind × 3 kinds (mean sizes {}), {rounds} rounds, {compiles} compiles",
        kinds
            .iter()
            .map(|(n, m)| format!("{n} {:.1} KB", mean_len(m) as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();

    // Mailnode: compile.
    let limits = Limits::default();
    let mut samples = Vec::with_capacity(compiles);
    for _ in 0..compiles {
        let t = Instant::now();
        let compiled = sieve::compile(&script, &limits).expect("the benchmark script compiles");
        samples.push(t.elapsed());
        std::hint::black_box(compiled);
    }
    let compile = Stats::new(samples);
    let compiled = sieve::compile(&script, &limits).expect("the benchmark script compiles");

    // Mailnode: run, per kind.
    let now = SieveTime {
        unix: 1_795_000_000,
        offset_minutes: 60,
    };
    let mut rows = Vec::new();
    let mut all_total = Vec::new();
    let mut actions = 0usize;
    for (name, msgs) in &kinds {
        let mut parse = Vec::new();
        let mut run = Vec::new();
        let mut total = Vec::new();
        for _ in 0..rounds {
            for (raw, from) in msgs {
                let env = Envelope {
                    from: from.clone(),
                    to: RCPT.into(),
                    ..Default::default()
                };
                let t0 = Instant::now();
                let view = MessageView::from_raw(raw);
                let t1 = Instant::now();
                let outcome = sieve::run(&compiled, &view, &env, now, &limits)
                    .unwrap_or_else(|_| sieve::Outcome::fallback());
                let t2 = Instant::now();
                actions += outcome.actions.len();
                std::hint::black_box(outcome);
                parse.push(t1 - t0);
                run.push(t2 - t1);
                total.push(t2 - t0);
            }
        }
        all_total.extend_from_slice(&total);
        rows.push((*name, Stats::new(parse), Stats::new(run), Stats::new(total)));
    }
    let mix = Stats::new(all_total);

    println!("Mailnode (sieve::compile, MessageView::from_raw + sieve::run, one thread)");
    println!(
        "  compile: median {}, p99 {}",
        us(compile.p(50.0)),
        us(compile.p(99.0))
    );
    println!(
        "  {:<10} {:>12} {:>12} {:>12} {:>12} {:>14}",
        "messages", "parse p50", "run p50", "run p99", "total p99", "total mean"
    );
    for (name, parse, run, total) in &rows {
        println!(
            "  {:<10} {:>12} {:>12} {:>12} {:>12} {:>14}",
            name,
            us(parse.p(50.0)),
            us(run.p(50.0)),
            us(run.p(99.0)),
            us(total.p(99.0)),
            us(total.mean())
        );
    }
    println!(
        "  mix: total median {}, p99 {}, mean {} → {:.0} messages/s per core ({} actions)",
        us(mix.p(50.0)),
        us(mix.p(99.0)),
        us(mix.mean()),
        1.0 / mix.mean().as_secs_f64(),
        actions / rounds
    );

    if !dovecot {
        return;
    }
    println!();
    match pigeonhole(&script, &kinds) {
        Ok(p) => {
            println!("Pigeonhole {} (sievec, sieve-filter dry run)", p.version);
            println!(
                "  compile: {} per script (sievec of 100 copies {} minus sievec of 1 copy {}, / 99)",
                us(p.compile),
                us(p.sievec_script),
                us(p.sievec_trivial)
            );
            println!("  {:<10} {:>14}", "messages", "mean per msg");
            for (name, mean) in &p.per_kind {
                println!("  {:<10} {:>14}", name, us(*mean));
            }
            let mix_mean = p.per_kind.iter().map(|(_, d)| *d).sum::<Duration>() / 3;
            println!(
                "  mix: mean {} → {:.0} messages/s per core",
                us(mix_mean),
                1.0 / mix_mean.as_secs_f64()
            );
            println!();
            println!(
                "Ratios (Pigeonhole / Mailnode): compile {:.1}x; per message (mean) {}; mix {:.1}x",
                p.compile.as_secs_f64() / compile.p(50.0).as_secs_f64(),
                p.per_kind
                    .iter()
                    .zip(&rows)
                    .map(|((n, d), (_, _, _, t))| format!(
                        "{n} {:.1}x",
                        d.as_secs_f64() / t.mean().as_secs_f64()
                    ))
                    .collect::<Vec<_>>()
                    .join(", "),
                mix_mean.as_secs_f64() / mix.mean().as_secs_f64()
            );
        }
        Err(e) => println!("Pigeonhole: not measured: {e}"),
    }
}

/// Sorted samples.
struct Stats(Vec<Duration>);

impl Stats {
    fn new(mut v: Vec<Duration>) -> Stats {
        assert!(!v.is_empty());
        v.sort_unstable();
        Stats(v)
    }
    /// Nearest-rank percentile.
    fn p(&self, p: f64) -> Duration {
        let n = self.0.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.0[rank.clamp(1, n) - 1]
    }
    fn mean(&self) -> Duration {
        self.0.iter().sum::<Duration>() / self.0.len() as u32
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn mean_len(m: &[(Vec<u8>, String)]) -> usize {
    m.iter().map(|(r, _)| r.len()).sum::<usize>() / m.len().max(1)
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_string();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{cpus} × {model}; load average {}", load.join(" "))
}

/// The 50-rule script: list routing, partner senders, subaddress tags, ticket subjects with
/// variables, finance rules, body tests, size, spam score (relational), priority flags and a
/// vacation reply. Only extensions both implementations support.
fn script() -> String {
    let mut s = String::from(
        "require [\"fileinto\", \"envelope\", \"imap4flags\", \"body\", \"variables\", \
         \"vacation\", \"copy\", \"relational\", \"comparator-i;ascii-numeric\", \
         \"subaddress\", \"mailbox\"];\n\
         # A typical user's filters.\n",
    );
    s.push_str("if header :matches \"subject\" \"*\" { set \"subj\" \"${1}\"; }\n");
    for n in 0..10 {
        s.push_str(&format!(
            "if header :contains \"list-id\" \"<list{n}.lists.example>\" {{ fileinto :create \"Lists/list{n}\"; stop; }}\n"
        ));
    }
    for n in 0..10 {
        s.push_str(&format!(
            "if address :is :domain \"from\" \"partner{n}.example\" {{ addflag \"\\\\Flagged\"; fileinto :copy \"Partners/p{n}\"; }}\n"
        ));
    }
    for n in 0..5 {
        s.push_str(&format!(
            "if envelope :is :detail \"to\" \"tag{n}\" {{ fileinto \"Tags/tag{n}\"; }}\n"
        ));
    }
    for n in 0..5 {
        s.push_str(&format!(
            "if header :matches \"subject\" \"*[project{n} #*]*\" {{ set \"ticket\" \"${{2}}\"; addflag \"ticket-${{ticket}}\"; fileinto \"Projects/p{n}\"; }}\n"
        ));
    }
    for (n, word) in ["invoice", "receipt", "statement", "payment", "order"]
        .iter()
        .enumerate()
    {
        s.push_str(&format!(
            "if allof(address :localpart :is \"from\" [\"billing\", \"accounts\", \"noreply\"], header :contains \"subject\" \"{word}\") {{ fileinto \"Finance/f{n}\"; }}\n"
        ));
    }
    s.push_str("if body :text :contains \"unsubscribe\" { fileinto \"Newsletters\"; }\n");
    s.push_str("if body :content \"text/html\" :contains \"webinar\" { addflag \"promo\"; }\n");
    s.push_str("if body :raw :contains \"CONFIDENTIAL\" { addflag \"confidential\"; }\n");
    s.push_str("if size :over 500K { addflag \"large\"; }\n");
    s.push_str("if header :contains \"subject\" [\"urgent\", \"asap\"] { addflag \"urgent\"; }\n");
    s.push_str(
        "if header :value \"ge\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"8\" { fileinto \"Junk\"; stop; }\n",
    );
    s.push_str(
        "if header :value \"ge\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"5\" { addflag \"$Junk\"; }\n",
    );
    s.push_str(
        "if header :is \"x-priority\" [\"1\", \"1 (Highest)\"] { addflag \"\\\\Flagged\"; }\n",
    );
    s.push_str("if exists \"x-mailer\" { set \"mailer\" \"yes\"; }\n");
    s.push_str(
        "if anyof(header :contains \"from\" \"ceo@example.org\", header :contains \"cc\" \"board@example.org\") { addflag \"\\\\Flagged\"; fileinto :copy \"Important\"; }\n",
    );
    s.push_str("if address :is \"to\" \"postmaster@example.org\" { fileinto \"Admin\"; }\n");
    s.push_str("if header :contains [\"subject\"] [\"[SPAM]\", \"***SPAM***\"] { fileinto \"Junk\"; stop; }\n");
    s.push_str("if string :is \"${mailer}\" \"yes\" { addflag \"has-mailer\"; }\n");
    s.push_str(
        "if not anyof(exists \"list-id\", header :is \"precedence\" [\"bulk\", \"list\", \"junk\"]) {\n    vacation :days 7 :subject \"Away: ${subj}\" :addresses [\"alice.smith@example.org\"] \"I am away until Monday and will answer then.\";\n}\n",
    );
    s
}

#[derive(Clone, Copy)]
enum Kind {
    Small,
    Large,
    Multipart,
}

/// Deterministic pseudo-random numbers (xorshift), so every run sees the same messages.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "meeting",
    "report",
    "quarterly",
    "review",
    "please",
    "attached",
    "thanks",
    "schedule",
    "project",
    "update",
    "budget",
    "draft",
    "unsubscribe",
    "webinar",
    "question",
    "follow-up",
];

fn text(rng: &mut Rng, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 80);
    let mut line = 0;
    while out.len() < bytes {
        let w = WORDS[rng.below(WORDS.len() as u64) as usize];
        out.push_str(w);
        line += w.len() + 1;
        if line > 70 {
            out.push_str("\r\n");
            line = 0;
        } else {
            out.push(' ');
        }
    }
    out.push_str("\r\n");
    out
}

/// `n` messages of one kind, with their envelope senders.
fn messages(n: usize, kind: Kind) -> Messages {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (kind as u64 + 1));
    (0..n)
        .map(|i| {
            let from = match rng.below(6) {
                0 => format!("billing@vendor{}.example", rng.below(20)),
                1 => format!("someone@partner{}.example", rng.below(15)),
                2 => "ceo@example.org".to_string(),
                _ => format!("user{}@elsewhere{}.example", rng.below(1000), rng.below(50)),
            };
            let subject = match rng.below(5) {
                0 => format!("Your invoice {} is ready", rng.below(100_000)),
                1 => format!("Re: [project{} #{}] build fails", rng.below(8), rng.below(9999)),
                2 => format!("{} {}", WORDS[i % WORDS.len()], WORDS[(i * 7) % WORDS.len()]),
                3 => "[SPAM] cheap watches".to_string(),
                _ => format!("Meeting notes {i}"),
            };
            let to = if rng.below(4) == 0 {
                format!("alice+tag{}@example.org", rng.below(8))
            } else {
                RCPT.to_string()
            };
            let mut h = format!(
                "Return-Path: <{from}>\r\nReceived: from mx.elsewhere.example (mx.elsewhere.example [192.0.2.{}])\r\n\tby mail.example.org with ESMTPS id {i:08x}; Mon, 2 Nov 2026 10:{:02}:00 +0000\r\n\
                 From: Sender {i} <{from}>\r\nTo: Alice <{to}>\r\nSubject: {subject}\r\n\
                 Date: Mon, 2 Nov 2026 10:{:02}:00 +0000\r\nMessage-ID: <{i}.{}@elsewhere.example>\r\nMIME-Version: 1.0\r\n",
                rng.below(250),
                i % 60,
                i % 60,
                rng.below(1 << 30),
            );
            if rng.below(4) == 0 {
                h.push_str(&format!(
                    "List-Id: Discussion <list{}.lists.example>\r\nPrecedence: list\r\n",
                    rng.below(14)
                ));
            }
            if rng.below(3) == 0 {
                h.push_str(&format!("X-Spam-Score: {}\r\n", rng.below(10)));
            }
            if rng.below(5) == 0 {
                h.push_str("X-Priority: 1\r\nX-Mailer: Example Mail 3.1\r\n");
            }
            let raw = match kind {
                Kind::Small => format!(
                    "{h}Content-Type: text/plain; charset=utf-8\r\n\r\n{}",
                    text(&mut rng, 1000)
                ),
                Kind::Large => format!(
                    "{h}Content-Type: text/plain; charset=utf-8\r\n\r\n{}",
                    text(&mut rng, 100 * 1024)
                ),
                Kind::Multipart => {
                    let mut attachment = String::new();
                    let blob: Vec<u8> = (0..45_000).map(|_| rng.next() as u8).collect();
                    let b64 = base64_encode(&blob);
                    for chunk in b64.as_bytes().chunks(76) {
                        attachment.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                        attachment.push_str("\r\n");
                    }
                    format!(
                        "{h}Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
                         This is a multi-part message in MIME format.\r\n--outer\r\n\
                         Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n--inner\r\n\
                         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n--inner\r\n\
                         Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>{}</p></body></html>\r\n--inner--\r\n--outer\r\n\
                         Content-Type: application/pdf; name=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\
                         Content-Disposition: attachment; filename=\"report.pdf\"\r\n\r\n{attachment}--outer--\r\n",
                        text(&mut rng, 2000),
                        text(&mut rng, 4000)
                    )
                }
            };
            (raw.into_bytes(), from)
        })
        .collect()
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// What Pigeonhole measured.
struct Pigeonhole {
    version: String,
    sievec_script: Duration,
    sievec_trivial: Duration,
    compile: Duration,
    per_kind: Vec<(&'static str, Duration)>,
}

/// Raw messages with their envelope senders.
type Messages = Vec<(Vec<u8>, String)>;

fn pigeonhole(script: &str, kinds: &[(&'static str, Messages)]) -> Result<Pigeonhole, String> {
    for tool in ["sievec", "sieve-filter"] {
        if Command::new(tool).arg("-h").output().is_err() {
            return Err(format!("{tool} not found: apt-get install dovecot-sieve"));
        }
    }
    let version = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "dovecot-sieve"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = tmp.path();
    let conf = root.join("dovecot.conf");
    write(
        &conf,
        "protocols =\nlog_path = /dev/stderr\nssl = no\nmail_location = maildir:~/Maildir\n",
    )?;
    write(&root.join("script.sieve"), script)?;
    let mut dirs = Vec::new();
    for (name, msgs) in kinds {
        let dir = root.join(name.replace(' ', ""));
        maildir(&dir, msgs)?;
        dirs.push((*name, dir, msgs.len()));
    }
    let one = root.join("one");
    maildir(&one, &kinds[0].1[..1])?;
    chown_nobody(root)?;

    // sievec compiles every script of a directory in one process: K copies against one copy
    // takes the process start out of the figure.
    let copies = 100;
    for (dir, n) in [("many", copies), ("single", 1)] {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        for i in 0..n {
            write(&d.join(format!("s{i}.sieve")), script)?;
        }
    }
    chown_nobody(root)?;
    let sievec = |dir: &str| -> Result<Duration, String> {
        let d = root.join(dir);
        let mut samples = Vec::new();
        for _ in 0..7 {
            for e in std::fs::read_dir(&d).map_err(|e| e.to_string())?.flatten() {
                if e.path().extension().is_some_and(|x| x == "svbin") {
                    std::fs::remove_file(e.path()).map_err(|e| e.to_string())?;
                }
            }
            let t = Instant::now();
            run(tool("sievec")
                .arg("-c")
                .arg(&conf)
                .arg(&d)
                .env("HOME", root))?;
            samples.push(t.elapsed());
        }
        Ok(Stats::new(samples).p(50.0))
    };
    // The script must compile there too, or the comparison means nothing.
    let sievec_script = sievec("many")?;
    let sievec_trivial = sievec("single")?;
    let filter = |home: &Path| -> Result<Duration, String> {
        let cmd = |c: &mut Command| {
            c.arg("-c")
                .arg(&conf)
                .arg(root.join("script.sieve"))
                .arg("INBOX")
                .env("HOME", home)
                .env("USER", "nobody");
        };
        // Once untimed: Dovecot builds its mailbox index.
        let mut c = tool("sieve-filter");
        cmd(&mut c);
        run(&mut c)?;
        let mut samples = Vec::new();
        for _ in 0..5 {
            let mut c = tool("sieve-filter");
            cmd(&mut c);
            let t = Instant::now();
            run(&mut c)?;
            samples.push(t.elapsed());
        }
        Ok(Stats::new(samples).p(50.0))
    };
    let base = filter(&one)?;
    let mut per_kind = Vec::new();
    for (name, dir, n) in &dirs {
        let t = filter(dir)?;
        per_kind.push((*name, t.saturating_sub(base) / (*n as u32 - 1)));
    }
    Ok(Pigeonhole {
        version,
        sievec_script,
        sievec_trivial,
        compile: sievec_script.saturating_sub(sievec_trivial) / (copies - 1),
        per_kind,
    })
}

/// A Dovecot tool, as `nobody` when this program runs as root (Dovecot refuses root).
fn tool(name: &str) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", name]);
        c
    } else {
        Command::new(name)
    }
}

fn run(c: &mut Command) -> Result<(), String> {
    let out = c.output().map_err(|e| format!("{c:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{c:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn write(p: &Path, s: &str) -> Result<(), String> {
    std::fs::write(p, s).map_err(|e| format!("{}: {e}", p.display()))
}

/// A home directory holding `Maildir/` with `msgs` in `cur/`.
fn maildir(home: &Path, msgs: &[(Vec<u8>, String)]) -> Result<(), String> {
    let md = home.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).map_err(|e| e.to_string())?;
    }
    for (i, (raw, _)) in msgs.iter().enumerate() {
        let p: PathBuf = md.join("cur").join(format!("{i}.bench:2,"));
        std::fs::write(&p, raw).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn chown_nobody(root: &Path) -> Result<(), String> {
    if !is_root() {
        return Ok(());
    }
    let st = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(root)
        .status()
        .map_err(|e| e.to_string())?;
    if !st.success() {
        return Err("chown of the benchmark directory failed".into());
    }
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| e.to_string())
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
