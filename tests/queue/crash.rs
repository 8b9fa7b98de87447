//! Crashes and full disks: a queue process killed with SIGKILL in the middle of delivering
//! loses nothing it acknowledged and delivers twice only inside the documented window; a full
//! file system is a typed error that leaves nothing half-written.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailnode::queue::{QueueConfig, QueueError};

use super::servers::MiniServer;
use super::support::*;

const CHILD_DIR: &str = "MAILNODE_QUEUE_CHILD_DIR";
const CHILD_LMTP: &str = "MAILNODE_QUEUE_CHILD_LMTP";
const MESSAGES: usize = 300;
const CONCURRENCY: usize = 4;

fn crash_config() -> QueueConfig {
    QueueConfig {
        destination_concurrency: CONCURRENCY,
        ..config(78)
    }
}

/// The process that gets killed: enqueues messages, printing `ACK n` once each is durable,
/// while delivering them. Runs only when started by `kill_9_during_delivery`.
#[test]
#[ignore = "helper process for kill_9_during_delivery"]
fn kill9_child() {
    let (Ok(dir), Ok(lmtp)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_LMTP)) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let addr = Arc::new(Mutex::new(Some(lmtp.parse().unwrap())));
        let q = start(crash_config(), std::path::Path::new(&dir), addr).await;
        let mut out = std::io::stdout();
        for n in 0..MESSAGES {
            q.enqueue(
                envelope("s@local.test", &["alice@local.test"]),
                message(&format!("k{n}"), "crash"),
            )
            .await
            .unwrap();
            writeln!(out, "ACK {n}").unwrap();
            out.flush().unwrap();
        }
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    });
}

fn message_ids(received: &[super::servers::Received]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in received {
        let text = String::from_utf8_lossy(&r.data);
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: <"))
            .and_then(|l| l.split('@').next())
            .unwrap_or_default()
            .to_string();
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let lmtp = MiniServer::start("127.0.78.4", true, None).await;
    lmtp.script.lock().unwrap().data_delay = Duration::from_millis(20);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash::kill9_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_LMTP, lmtp.addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let acks = Arc::new(Mutex::new(Vec::<usize>::new()));
    let reader = {
        let acks = acks.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("ACK ").and_then(|n| n.parse().ok()) {
                    acks.lock().unwrap().push(n);
                }
            }
        })
    };
    wait_for(60, "acknowledgements and deliveries under way", || {
        acks.lock().unwrap().len() >= MESSAGES / 2 && lmtp.received().len() >= 20
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    let acked = acks.lock().unwrap().clone();
    let before_restart = lmtp.received().len();
    assert!(
        before_restart < acked.len(),
        "the kill must hit before everything was delivered"
    );

    let q = start(
        crash_config(),
        dir.path(),
        Arc::new(Mutex::new(Some(lmtp.addr))),
    )
    .await;
    wait_empty(&q, 60).await;
    let seen = message_ids(&lmtp.received());
    for n in &acked {
        assert!(
            seen.contains_key(&format!("k{n}")),
            "acknowledged message k{n} was lost"
        );
    }
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    eprintln!(
        "kill -9: {} acknowledged, {before_restart} delivered before the kill, {} messages after restart, {duplicates} duplicates",
        acked.len(),
        seen.len()
    );
    assert!(
        duplicates <= CONCURRENCY,
        "{duplicates} duplicates; at most one per transaction in flight at the kill ({CONCURRENCY})"
    );
    q.shutdown(Duration::from_secs(1)).await;
}

/// Unmounts the test tmpfs even when the test fails.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_is_no_space_and_leaves_nothing() {
    let uid = Command::new("id").arg("-u").output().unwrap().stdout;
    if String::from_utf8_lossy(&uid).trim() != "0" {
        eprintln!("full_disk_is_no_space_and_leaves_nothing needs root to mount a tmpfs; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs");
    let _mount = Mount(mnt.clone());
    let q = start(config(79), &mnt, Arc::new(Mutex::new(None))).await;
    let big = vec![b'x'; 400 * 1024];
    let e = q
        .enqueue(envelope("s@local.test", &["alice@local.test"]), big)
        .await
        .unwrap_err();
    assert!(matches!(e, QueueError::NoSpace { .. }), "{e}");
    assert_eq!((e.smtp_reply().0, e.smtp_reply().1), (452, "4.3.1"));
    let leftovers: Vec<_> = std::fs::read_dir(mnt.join("queue"))
        .unwrap()
        .chain(std::fs::read_dir(mnt.join("queue/tmp")).unwrap())
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .collect();
    assert!(leftovers.is_empty(), "nothing half-written: {leftovers:?}");
    q.enqueue(
        envelope("s@local.test", &["alice@local.test"]),
        message("t10", "small"),
    )
    .await
    .unwrap();
    assert_eq!(q.list().await.unwrap().len(), 1, "the queue still works");
    q.shutdown(Duration::from_secs(1)).await;
}
