//! Damage a crash cannot cause (and torn tails it can), made by hand on disk: what `check`
//! reports, what loading and `check --repair` fix, and that no message is lost in the process.

use std::io::Write;
use std::path::PathBuf;

use crate::store::user::user_dir;

use super::*;

/// The mailbox directories of `ALICE`, by id.
fn mbox_dir(root: &Path, id: u64) -> PathBuf {
    user_dir(root, ALICE).join("mbox").join(id.to_string())
}

fn msg_files(root: &Path, id: u64) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(mbox_dir(root, id).join("msg"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

async fn three_messages(root: &Path) -> u32 {
    let store = open(root);
    let mut uv = 0;
    for n in 1..=3 {
        uv = store
            .deliver(ALICE, "INBOX", message(n), Flags::new(), None, 0)
            .await
            .unwrap()
            .uidvalidity;
    }
    uv
}

fn kinds(report: &CheckReport) -> Vec<FindingKind> {
    report.findings.iter().map(|f| f.kind).collect()
}

#[tokio::test]
async fn torn_index_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let uv = three_messages(dir.path()).await;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(mbox_dir(dir.path(), 1).join("index"))
        .unwrap();
    f.write_all(&[77, 0, 0, 0, 1, 2, 3, 4, 2, 9, 9]).unwrap();
    drop(f);
    let store = open(dir.path());
    assert_eq!(
        kinds(&store.check(false).await.unwrap()),
        [FindingKind::TornIndexTail]
    );
    let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
    assert_eq!(h.snapshot().unwrap().uidvalidity, uv);
    assert_eq!(h.snapshot().unwrap().messages.len(), 3);
    assert!(store.check(false).await.unwrap().is_clean());
    assert_eq!(
        store
            .deliver(ALICE, "INBOX", message(4), Flags::new(), None, 0)
            .await
            .unwrap()
            .uid,
        4
    );
    drop((h, store));
    let store = open(dir.path());
    assert_eq!(store.status(ALICE, "INBOX").await.unwrap().messages, 4);
}

#[tokio::test]
async fn damaged_index_is_rebuilt_from_the_files_under_a_new_uidvalidity() {
    for damage in ["flip", "remove"] {
        let dir = tempfile::tempdir().unwrap();
        let uv = three_messages(dir.path()).await;
        let index = mbox_dir(dir.path(), 1).join("index");
        if damage == "flip" {
            // Inside the first append record: valid records follow, so this is not a torn tail.
            let mut bytes = std::fs::read(&index).unwrap();
            bytes[40] ^= 0xff;
            std::fs::write(&index, bytes).unwrap();
        } else {
            std::fs::remove_file(&index).unwrap();
        }
        let store = open(dir.path());
        let report = store.check(false).await.unwrap();
        assert!(
            kinds(&report).contains(&FindingKind::DamagedIndex),
            "{damage}: {:?}",
            report.findings
        );
        assert!(report.unfixed().count() > 0);
        let repaired = store.check(true).await.unwrap();
        assert!(repaired
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::DamagedIndex && f.fixed));
        let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
        let snap = h.snapshot().unwrap();
        assert!(
            snap.uidvalidity > uv,
            "{damage}: clients must resynchronise"
        );
        let mut bodies = Vec::new();
        for m in snap.messages.iter() {
            bodies.push(h.fetch(m.uid).await.unwrap());
        }
        bodies.sort();
        let mut want: Vec<_> = (1..=3).map(message).collect();
        want.sort();
        assert_eq!(bodies, want, "{damage}: no message lost");
        assert!(store.check(false).await.unwrap().is_clean());
        // The damaged index is kept for inspection.
        assert!(
            files_below(&mbox_dir(dir.path(), 1))
                .iter()
                .any(|f| f.starts_with("index.damaged-"))
                || damage == "remove"
        );
    }
}

#[tokio::test]
async fn missing_and_altered_message_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    three_messages(dir.path()).await;
    let files = msg_files(dir.path(), 1);
    std::fs::remove_file(&files[0]).unwrap();
    let len = std::fs::metadata(&files[1]).unwrap().len() as usize;
    std::fs::write(&files[1], vec![b'?'; len]).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&files[2])
        .unwrap()
        .write_all(b"extra")
        .unwrap();
    std::fs::write(
        mbox_dir(dir.path(), 1).join("msg").join("README.txt"),
        b"not mail",
    )
    .unwrap();
    let store = open(dir.path());
    let mut k = kinds(&store.check(false).await.unwrap());
    k.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(
        k,
        [
            FindingKind::ChecksumMismatch,
            FindingKind::ForeignFile,
            FindingKind::MissingMessage,
            FindingKind::SizeMismatch
        ]
    );
    let report = store.check(true).await.unwrap();
    assert!(report
        .findings
        .iter()
        .any(|f| f.kind == FindingKind::MissingMessage && f.fixed));
    let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
    assert_eq!(
        h.snapshot()
            .unwrap()
            .messages
            .iter()
            .map(|m| m.uid)
            .collect::<Vec<_>>(),
        [2, 3]
    );
    // What cannot be repaired stays reported; the foreign file is left alone.
    let again = kinds(&store.check(true).await.unwrap());
    assert!(
        again.contains(&FindingKind::ChecksumMismatch)
            && again.contains(&FindingKind::SizeMismatch)
    );
    assert!(mbox_dir(dir.path(), 1)
        .join("msg")
        .join("README.txt")
        .exists());
}

#[tokio::test]
async fn check_of_a_loaded_user_finds_changes_behind_its_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for n in 1..=3 {
        store
            .deliver(ALICE, "INBOX", message(n), Flags::new(), None, 0)
            .await
            .unwrap();
    }
    let files = msg_files(dir.path(), 1);
    std::fs::remove_file(&files[0]).unwrap();
    // A message file that no record names (as if restored from a backup by hand).
    std::fs::copy(
        &files[1],
        mbox_dir(dir.path(), 1)
            .join("msg")
            .join("0fffffffffffff.1.00000000"),
    )
    .unwrap();
    let report = store.check(false).await.unwrap();
    let mut k = kinds(&report);
    k.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(
        k,
        [FindingKind::MissingMessage, FindingKind::UnindexedMessage]
    );
    let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
    let (_, mut rx) = h.subscribe().unwrap();
    let report = store.check(true).await.unwrap();
    assert!(
        report.findings.iter().all(|f| f.fixed),
        "{:?}",
        report.findings
    );
    // Sessions hear about the repairs like any other change.
    assert!(matches!(
        *rx.recv().await.unwrap(),
        MailboxEvent::Expunge { .. }
    ));
    assert!(matches!(
        *rx.recv().await.unwrap(),
        MailboxEvent::Exists { .. }
    ));
    let snap = h.snapshot().unwrap();
    assert_eq!(
        snap.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    assert_eq!(h.fetch(4).await.unwrap(), message(2));
    assert!(store.check(false).await.unwrap().is_clean());
    assert_eq!(store.usage(ALICE).await.unwrap().messages, 3);
}

#[tokio::test]
async fn a_lost_mailbox_list_is_rebuilt_from_the_directories() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.ensure_default_mailboxes(ALICE).await.unwrap();
        store
            .deliver(ALICE, "INBOX", message(1), Flags::new(), None, 0)
            .await
            .unwrap();
        store
            .create_mailbox(ALICE, "Projects/X", None)
            .await
            .unwrap();
        store
            .deliver(ALICE, "Projects/X", message(2), Flags::new(), None, 0)
            .await
            .unwrap();
        store
            .rename_mailbox(ALICE, "Projects", "Done")
            .await
            .unwrap();
    }
    std::fs::remove_file(user_dir(dir.path(), ALICE).join("mailboxes.json")).unwrap();
    let store = open(dir.path());
    let report = store.check(false).await.unwrap();
    assert!(
        kinds(&report).contains(&FindingKind::DamagedUserMeta),
        "{:?}",
        report.findings
    );
    let list = store.list_mailboxes(ALICE).await.unwrap();
    let names: Vec<_> = list.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["Done/X", "Drafts", "INBOX", "Junk", "Sent", "Trash"]
    );
    let h = store.open_mailbox(ALICE, "Done/X").await.unwrap();
    assert_eq!(h.fetch(1).await.unwrap(), message(2));
    assert!(store.check(false).await.unwrap().is_clean());
    // New mailboxes get fresh ids, not those of the adopted directories.
    store.create_mailbox(ALICE, "Fresh", None).await.unwrap();
    store
        .deliver(ALICE, "Fresh", message(3), Flags::new(), None, 0)
        .await
        .unwrap();
    assert_eq!(store.status(ALICE, "INBOX").await.unwrap().messages, 1);
}

#[tokio::test]
async fn another_users_list_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    three_messages(dir.path()).await;
    let path = user_dir(dir.path(), ALICE).join("mailboxes.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(ALICE, "mallory@example.org");
    std::fs::write(&path, text).unwrap();
    let store = open(dir.path());
    assert!(matches!(
        store.status(ALICE, "INBOX").await,
        Err(StoreError::Corrupt { .. })
    ));
}
