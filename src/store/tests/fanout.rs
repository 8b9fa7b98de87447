//! One message to several mailboxes: written once, linked into each, one result per target.

use std::os::unix::fs::MetadataExt;

use super::crash::{clear_faults, fail_at};
use super::*;
use crate::store::fsio::Step;

fn target(user: &str, mailbox: &str, quota_bytes: u64) -> DeliveryTarget {
    DeliveryTarget {
        user: user.into(),
        mailbox: mailbox.into(),
        flags: Flags::new(),
        quota_bytes,
        key: None,
    }
}

#[tokio::test]
async fn each_recipient_gets_its_own_result_and_the_content_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create_mailbox("bob@x", "Lists", None).await.unwrap();
    let msg = message(5);
    let mut seen = Flags::new().with(SystemFlag::Seen);
    seen.insert_keyword("$List");
    let targets = [
        target(ALICE, "INBOX", 0),
        DeliveryTarget {
            flags: seen,
            ..target("bob@x", "Lists", 0)
        },
        target("carol@x", "INBOX", 10),
        target("dave@x", "Nope", 0),
        target("", "INBOX", 0),
    ];
    let res = store.deliver_many(msg.clone(), Some(1234), &targets).await;
    assert_eq!(res.len(), 5);
    assert_eq!(res[0].as_ref().unwrap().uid, 1);
    assert_eq!(res[1].as_ref().unwrap().size, msg.len() as u64);
    assert!(matches!(res[2], Err(StoreError::QuotaExceeded { .. })));
    assert!(matches!(&res[3], Err(StoreError::MailboxNotFound(n)) if n == "Nope"));
    assert!(matches!(res[4], Err(StoreError::InvalidUser(_))));
    let a = store.open_mailbox(ALICE, "INBOX").await.unwrap();
    let b = store.open_mailbox("bob@x", "Lists").await.unwrap();
    assert_eq!(a.fetch(1).await.unwrap(), msg);
    assert_eq!(b.fetch(1).await.unwrap(), msg);
    let bm = b.snapshot().unwrap();
    assert!(bm.get(1).unwrap().flags.has_keyword("$List"));
    assert_eq!(bm.get(1).unwrap().internal_date, 1234);
    // One inode, two names: the content was written once.
    let ino = |h: &MailboxHandle| std::fs::metadata(h.message_path(1).unwrap()).unwrap().ino();
    assert_eq!(ino(&a), ino(&b));
    // Quota is charged to each recipient in full.
    assert_eq!(store.usage(ALICE).await.unwrap().bytes, msg.len() as u64);
    assert_eq!(store.usage("bob@x").await.unwrap().bytes, msg.len() as u64);
    assert_eq!(store.usage("carol@x").await.unwrap(), Usage::default());
    // Expunging one recipient's copy leaves the other's.
    a.expunge(&[1]).await.unwrap();
    assert_eq!(b.fetch(1).await.unwrap(), msg);
    assert!(files_below(&dir.path().join("tmp")).is_empty());
    assert!(store.check(false).await.unwrap().is_clean());
}

#[tokio::test]
async fn a_failure_reaches_every_recipient_and_leaves_nothing_behind() {
    for step in [
        Step::MessageWritten,
        Step::MessageSynced,
        Step::MessageLinked,
        Step::MessageDirSynced,
        Step::IndexSynced,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        for u in [ALICE, "bob@x"] {
            store.ensure_default_mailboxes(u).await.unwrap();
        }
        let before = files_below(dir.path());
        fail_at(&store, step);
        let res = store
            .deliver_many(
                message(1),
                None,
                &[target(ALICE, "INBOX", 0), target("bob@x", "INBOX", 0)],
            )
            .await;
        clear_faults(&store);
        assert!(
            res.iter()
                .all(|r| matches!(r, Err(StoreError::NoSpace { .. }))),
            "{step:?}: {res:?}"
        );
        assert_eq!(files_below(dir.path()), before, "{step:?}");
        assert!(store.check(false).await.unwrap().is_clean());
        assert_eq!(store.usage(ALICE).await.unwrap(), Usage::default());
    }
}

#[tokio::test]
async fn a_staged_file_left_by_a_crash_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    std::fs::write(
        dir.path().join("tmp").join("0661606f72a6c2.34.f05972dd"),
        b"half",
    )
    .unwrap();
    drop(store);
    open(dir.path());
    assert!(files_below(&dir.path().join("tmp")).is_empty());
}

#[tokio::test]
async fn without_hard_links_the_content_is_copied() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create_mailbox(ALICE, "Archive", None).await.unwrap();
    store
        .deliver(ALICE, "INBOX", message(1), Flags::new(), None, 0)
        .await
        .unwrap();
    *store.faults().hook.lock().unwrap() = Some(std::sync::Arc::new(|s| {
        (s == Step::HardLink).then(|| std::io::Error::from_raw_os_error(nix::libc::EXDEV))
    }));
    let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
    let c = h.copy(&[1], "Archive", 0).await.unwrap();
    let res = store
        .deliver_many(
            message(2),
            None,
            &[target(ALICE, "INBOX", 0), target("bob@x", "INBOX", 0)],
        )
        .await;
    clear_faults(&store);
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    let archive = store.open_mailbox(ALICE, "Archive").await.unwrap();
    let (src, dst) = (
        h.message_path(1).unwrap(),
        archive.message_path(c.mapping[0].1).unwrap(),
    );
    let ino = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
    assert_ne!(ino(&src), ino(&dst));
    assert_eq!(archive.fetch(c.mapping[0].1).await.unwrap(), message(1));
    let bob = store.open_mailbox("bob@x", "INBOX").await.unwrap();
    assert_eq!(bob.fetch(1).await.unwrap(), message(2));
    assert!(store.check(false).await.unwrap().is_clean());
}
