//! The message store under real crashes and a really full disk.
//!
//! `kill_9_during_delivery_loses_nothing` runs this test binary again as a child
//! (`store_crash_child`, ignored unless run that way) that delivers, flags and expunges in a
//! loop on a shared root and prints a line after each acknowledged operation; the parent kills it
//! with SIGKILL at a random moment, reopens the store in-process and checks that every
//! acknowledged delivery is present and intact, every acknowledged expunge absent, every message
//! whole (each carries a digest of its own body), UIDVALIDITY unchanged, and that `check` finds
//! leftovers only — and nothing once the users are loaded. Rounds accumulate on one root, so
//! later rounds recover from earlier crashes. A process kill keeps the page cache, so this tests
//! atomicity at every instant, not power loss (the unit tests cut index tails by hand).
//!
//! `a_full_volume_answers_no_space_and_loses_nothing` mounts a small tmpfs (needs root, as the
//! cluster tests do) and fills it.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mailnode::store::{FlagOp, Flags, Store, StoreConfig, StoreError, SystemFlag};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

const CHILD_ROOT: &str = "MAILNODE_STORE_CRASH_ROOT";
const CHILD_SEED: &str = "MAILNODE_STORE_CRASH_SEED";
const USERS: [&str; 2] = ["alice@example.org", "bob/odd@example.org"];
const MAILBOXES: [&str; 2] = ["INBOX", "Archive/2024"];

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A message whose first header is the SHA-256 of its body, so any stored copy proves itself.
fn make_message(rng: &mut StdRng) -> (Vec<u8>, String) {
    let len = if rng.gen_ratio(1, 10) {
        rng.gen_range(100_000..300_000)
    } else {
        rng.gen_range(10..20_000)
    };
    let mut body = Vec::with_capacity(len + len / 76 * 2);
    for i in 0..len {
        body.push(b'a' + rng.gen_range(0..26u8));
        if i % 76 == 75 {
            body.extend_from_slice(b"\r\n");
        }
    }
    let digest = hex(&Sha256::digest(&body));
    let mut msg = format!("X-Digest: {digest}\r\nSubject: crash test\r\n\r\n").into_bytes();
    msg.extend_from_slice(&body);
    (msg, digest)
}

/// Checks a stored message against its own digest header.
fn self_digest(msg: &[u8]) -> Option<String> {
    let head = std::str::from_utf8(msg.get(..75)?).ok()?;
    let want = head.strip_prefix("X-Digest: ")?.get(..64)?.to_string();
    let split = msg.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    (hex(&Sha256::digest(&msg[split..])) == want).then_some(want)
}

fn child_config() -> StoreConfig {
    StoreConfig {
        create_if_missing: true,
        // Compact often, so kills land inside compactions too.
        compact_min_records: 16,
        ..StoreConfig::default()
    }
}

#[test]
#[ignore = "helper process of kill_9_during_delivery_loses_nothing"]
fn store_crash_child() {
    let (Ok(root), Ok(seed)) = (std::env::var(CHILD_ROOT), std::env::var(CHILD_SEED)) else {
        return;
    };
    let seed: u64 = seed.parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = Store::open(&root, child_config()).unwrap();
        for u in USERS {
            store.ensure_default_mailboxes(u).await.unwrap();
            match store.create_mailbox(u, MAILBOXES[1], None).await {
                Ok(()) | Err(StoreError::MailboxExists(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        println!("\nREADY");
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed * 1000 + t);
                let (user, mailbox) = (USERS[t as usize % 2], MAILBOXES[t as usize / 2]);
                let h = store.open_mailbox(user, mailbox).await.unwrap();
                let mut mine: Vec<u32> = Vec::new();
                for i in 0u64.. {
                    let (msg, digest) = make_message(&mut rng);
                    let d = store
                        .deliver(user, mailbox, msg, Flags::new(), None, 0)
                        .await
                        .unwrap();
                    println!("D {t} {} {} {digest}", d.uid, d.uidvalidity);
                    mine.push(d.uid);
                    if i % 3 == 2 {
                        let uid = mine[rng.gen_range(0..mine.len())];
                        h.store_flags(
                            &[uid],
                            FlagOp::Add,
                            &Flags::new().with(SystemFlag::Seen),
                            None,
                        )
                        .await
                        .unwrap();
                        println!("F {t} {uid}");
                    }
                    if i % 5 == 4 {
                        let uid = mine.swap_remove(rng.gen_range(0..mine.len()));
                        println!("e {t} {uid}");
                        h.expunge(&[uid]).await.unwrap();
                        println!("E {t} {uid}");
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// What the parent learnt from the children's acknowledgements. Keys are (task, uid); a task
/// always writes the same user and mailbox.
#[derive(Default)]
struct Acks {
    delivered: HashMap<(usize, u32), String>,
    seen: HashSet<(usize, u32)>,
    expunging: HashSet<(usize, u32)>,
    expunged: HashSet<(usize, u32)>,
    uidvalidity: HashMap<usize, u32>,
}

impl Acks {
    fn take(&mut self, line: &str) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let key = |t: &str, u: &str| (t.parse::<usize>().unwrap(), u.parse::<u32>().unwrap());
        match f.as_slice() {
            ["D", t, uid, uv, digest] => {
                let k = key(t, uid);
                let uv: u32 = uv.parse().unwrap();
                let old = self.uidvalidity.insert(k.0, uv);
                assert!(
                    old.is_none() || old == Some(uv),
                    "UIDVALIDITY changed: {old:?} → {uv}"
                );
                self.delivered.insert(k, digest.to_string());
            }
            ["F", t, uid] => {
                self.seen.insert(key(t, uid));
            }
            ["e", t, uid] => {
                self.expunging.insert(key(t, uid));
            }
            ["E", t, uid] => {
                self.expunged.insert(key(t, uid));
            }
            _ => {}
        }
    }
}

/// Runs one child until a random moment after it is ready, kills it with SIGKILL, and returns
/// the complete lines it printed.
fn run_and_kill(root: &Path, seed: u64, rng: &mut StdRng) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "store_crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROOT, root)
        .env(CHILD_SEED, seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || loop {
        let mut line = Vec::new();
        match out.read_until(b'\n', &mut line) {
            // A line cut by the kill has no newline: it was never acknowledged.
            Ok(_) if line.ends_with(b"\n") => {
                if tx
                    .send(String::from_utf8_lossy(&line).trim_end().to_string())
                    .is_err()
                {
                    return;
                }
            }
            _ => return,
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("child ready");
        let ready = line.ends_with("READY");
        lines.push(line);
        if ready {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(rng.gen_range(30..600)));
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    lines
}

/// Returns the crash leftovers found and the messages stored.
async fn verify(root: &Path, acks: &Acks) -> (usize, usize) {
    let store = Store::open(root, StoreConfig::default()).unwrap();
    let report = store.check(false).await.unwrap();
    let damage: Vec<_> = report.damage().collect();
    assert!(damage.is_empty(), "damage after kill -9: {damage:#?}");
    let leftovers = report.findings.len();
    let mut handles = HashMap::new();
    for t in 0..4usize {
        let h = store
            .open_mailbox(USERS[t % 2], MAILBOXES[t / 2])
            .await
            .unwrap();
        let snap = h.snapshot().unwrap();
        if let Some(uv) = acks.uidvalidity.get(&t) {
            assert_eq!(snap.uidvalidity, *uv, "task {t}: UIDVALIDITY changed");
        }
        // Every stored message is whole, acknowledged or not.
        for m in snap.messages.iter() {
            let bytes = h.fetch(m.uid).await.unwrap();
            assert_eq!(bytes.len() as u64, m.size);
            assert!(
                self_digest(&bytes).is_some(),
                "task {t} UID {}: message not intact",
                m.uid
            );
        }
        handles.insert(t, (h, snap));
    }
    for (&(t, uid), digest) in &acks.delivered {
        let (h, snap) = &handles[&t];
        let k = (t, uid);
        if acks.expunged.contains(&k) {
            assert!(
                snap.get(uid).is_none(),
                "task {t} UID {uid}: acknowledged expunge undone"
            );
            continue;
        }
        if acks.expunging.contains(&k) {
            continue; // interrupted expunge: either outcome is correct
        }
        let m = snap
            .get(uid)
            .unwrap_or_else(|| panic!("task {t} UID {uid}: acknowledged delivery lost"));
        let bytes = h.fetch(uid).await.unwrap();
        assert_eq!(
            self_digest(&bytes).as_deref(),
            Some(digest.as_str()),
            "task {t} UID {uid}: wrong message"
        );
        if acks.seen.contains(&k) {
            assert!(
                m.flags.contains(SystemFlag::Seen),
                "task {t} UID {uid}: acknowledged flag lost"
            );
        }
    }
    drop(handles);
    let report = store.check(false).await.unwrap();
    assert!(report.is_clean(), "after recovery: {:#?}", report.findings);
    (leftovers, report.messages as usize)
}

#[test]
fn kill_9_during_delivery_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let seed: u64 = std::env::var("STORE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::random::<u16>() as u64);
    eprintln!("store crash test seed {seed} (set STORE_CRASH_SEED to repeat)");
    let mut rng = StdRng::seed_from_u64(seed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut acks = Acks::default();
    let (mut stored, mut leftovers) = (0, 0);
    for round in 0..8 {
        for line in run_and_kill(dir.path(), seed * 100 + round, &mut rng) {
            acks.take(&line);
        }
        let (l, s) = rt.block_on(verify(dir.path(), &acks));
        leftovers += l;
        stored = s;
    }
    eprintln!(
        "{} deliveries and {} expunges acknowledged, {stored} messages stored, {leftovers} crash leftovers repaired",
        acks.delivered.len(),
        acks.expunged.len()
    );
    assert!(
        acks.delivered.len() >= 40,
        "too few deliveries to prove anything: {}",
        acks.delivered.len()
    );
}

/// A tmpfs mount that is removed when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "mounting a tmpfs failed: the disk-full test needs root (as the cluster tests do)"
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_volume_answers_no_space_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let _mount = Tmpfs::mount(dir.path(), "2m");
    let root = dir.path().join("store");
    let store = Store::open(
        &root,
        StoreConfig {
            create_if_missing: true,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    let user = USERS[0];
    store.ensure_default_mailboxes(user).await.unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut acked: Vec<(u32, String)> = Vec::new();
    let mut refusals = 0;
    // Big messages first, then ever smaller ones to fill the last pages (index appends
    // then meet the full disk too).
    for size in [60_000usize, 9_000, 1_500, 200, 20] {
        for _ in 0..200 {
            let len = rng.gen_range(size / 2..size + 1);
            let body: Vec<u8> = (0..len).map(|_| b'a' + rng.gen_range(0..26u8)).collect();
            let digest = hex(&Sha256::digest(&body));
            let mut msg = format!("X-Digest: {digest}\r\nSubject: full\r\n\r\n").into_bytes();
            msg.extend_from_slice(&body);
            match store
                .deliver(user, "INBOX", msg, Flags::new(), None, 0)
                .await
            {
                Ok(d) => acked.push((d.uid, digest)),
                Err(StoreError::NoSpace { .. }) => {
                    refusals += 1;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!(
        acked.len() >= 10 && refusals >= 3,
        "{} stored, {refusals} refused",
        acked.len()
    );
    let tmp: Vec<_> = walk(&root)
        .into_iter()
        .filter(|p| {
            p.strip_prefix(root.to_str().unwrap())
                .is_some_and(|r| r.contains("/tmp/"))
        })
        .collect();
    assert!(tmp.is_empty(), "left behind: {tmp:?}");
    let report = store.check(false).await.unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
    let h = store.open_mailbox(user, "INBOX").await.unwrap();
    for (uid, digest) in &acked {
        assert_eq!(
            self_digest(&h.fetch(*uid).await.unwrap()).as_ref(),
            Some(digest)
        );
    }
    // Freeing space makes delivery work again.
    let first: Vec<u32> = acked.iter().take(5).map(|(u, _)| *u).collect();
    h.expunge(&first).await.unwrap();
    store
        .deliver(
            user,
            "INBOX",
            b"Subject: again\r\n\r\nhi\r\n".as_slice(),
            Flags::new(),
            None,
            0,
        )
        .await
        .unwrap();
    drop((h, store));
    let store = Store::open(&root, StoreConfig::default()).unwrap();
    assert_eq!(
        store.status(user, "INBOX").await.unwrap().messages as usize,
        acked.len() - 5 + 1
    );
    assert!(store.check(false).await.unwrap().is_clean());
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}
