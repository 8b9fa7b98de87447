//! Messages through the public API: deliver → list → fetch → flags → expunge → quota, copy and
//! move, persistence across reopen, compaction.

use super::*;

#[test]
fn open_refuses_a_root_without_marker() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(dir.path(), StoreConfig::default())
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::NotInitialised { .. }), "{err}");
    assert!(err.to_string().contains("is the volume mounted"));
    assert!(
        !dir.path().join("users").exists(),
        "nothing written to a bare mount point"
    );
    open(dir.path());
    std::fs::write(dir.path().join(MARKER), br#"{"format":99}"#).unwrap();
    let err = Store::open(dir.path(), config()).err().unwrap();
    assert!(matches!(
        err,
        StoreError::UnsupportedFormat { found: 99, .. }
    ));
}

#[test]
fn config_reads_from_toml_with_defaults() {
    let c: StoreConfig = toml::from_str(
        r#"
        max_message_size = 1000
        default_mailboxes = [{ name = "INBOX" }, { name = "Gesendet", special_use = "\\Sent" }]
        "#,
    )
    .unwrap();
    assert_eq!(c.max_message_size, 1000);
    assert_eq!(c.event_capacity, StoreConfig::default().event_capacity);
    assert!(!c.create_if_missing);
    assert_eq!(c.default_mailboxes[1].special_use, Some(SpecialUse::Sent));
    assert!(toml::from_str::<StoreConfig>("max_mesage_size = 1").is_err());
    assert!(toml::from_str::<StoreConfig>(
        "default_mailboxes = [{ name = \"X\", special_use = \"\\\\Bogus\" }]"
    )
    .is_err());
}

#[tokio::test]
async fn deliver_list_fetch_flags_expunge() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let d1 = store
        .deliver(
            ALICE,
            "INBOX",
            message(1),
            Flags::new(),
            Some(1_600_000_000),
            0,
        )
        .await
        .unwrap();
    let d2 = store
        .deliver(
            ALICE,
            "inbox",
            message(2),
            Flags::new().with(SystemFlag::Seen),
            None,
            0,
        )
        .await
        .unwrap();
    assert_eq!((d1.uid, d2.uid), (1, 2));
    assert_eq!(d1.uidvalidity, d2.uidvalidity);
    assert_eq!(d1.size, message(1).len() as u64);

    let list = store.list_mailboxes(ALICE).await.unwrap();
    assert_eq!(
        list.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["INBOX"]
    );

    let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
    let snap = h.snapshot().unwrap();
    assert_eq!(snap.uidnext, 3);
    assert_eq!(snap.messages.len(), 2);
    let m1 = snap.get(1).unwrap();
    assert_eq!(m1.internal_date, 1_600_000_000);
    assert!(snap.get(2).unwrap().flags.contains(SystemFlag::Seen));
    assert_eq!(h.fetch(1).await.unwrap(), message(1));
    assert_eq!(h.fetch(2).await.unwrap(), message(2));
    assert!(matches!(
        h.fetch(9).await,
        Err(StoreError::NoSuchMessage(9))
    ));
    let status = h.status().unwrap();
    assert_eq!((status.messages, status.unseen, status.deleted), (2, 1, 0));

    let out = h
        .store_flags(
            &[1, 2, 7],
            FlagOp::Add,
            &Flags::from_imap(["\\Deleted", "$Label1"]).unwrap(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.updated.len(), 2);
    let modseq = out.updated[0].modseq;
    assert!(modseq > snap.highestmodseq);
    assert!(out
        .updated
        .iter()
        .all(|u| u.modseq == modseq && u.flags.has_keyword("$Label1")));
    // Setting flags a message already has changes nothing and bumps no modseq.
    let again = h
        .store_flags(
            &[1],
            FlagOp::Add,
            &Flags::new().with(SystemFlag::Deleted),
            None,
        )
        .await
        .unwrap();
    assert!(again.updated.is_empty());
    assert_eq!(again.unchanged[0].modseq, modseq);
    // CONDSTORE: a message modified after UNCHANGEDSINCE is refused.
    let cond = h
        .store_flags(
            &[1],
            FlagOp::Remove,
            &Flags::new().with(SystemFlag::Deleted),
            Some(modseq - 1),
        )
        .await
        .unwrap();
    assert_eq!(cond.conflicts, [1]);
    h.store_flags(
        &[2],
        FlagOp::Remove,
        &Flags::new().with(SystemFlag::Deleted),
        None,
    )
    .await
    .unwrap();

    let usage = store.usage(ALICE).await.unwrap();
    assert_eq!(usage.messages, 2);
    assert_eq!(usage.bytes, (message(1).len() + message(2).len()) as u64);
    assert_eq!(h.expunge_deleted(None).await.unwrap(), [1]);
    let snap = h.snapshot().unwrap();
    assert_eq!(snap.messages.iter().map(|m| m.uid).collect::<Vec<_>>(), [2]);
    assert_eq!(
        store.usage(ALICE).await.unwrap(),
        Usage {
            messages: 1,
            bytes: message(2).len() as u64
        }
    );
    assert!(matches!(
        h.fetch(1).await,
        Err(StoreError::NoSuchMessage(1))
    ));
    assert_eq!(h.expunge(&[2, 2, 99]).await.unwrap(), [2]);
    // UIDs are never reused.
    let d3 = store
        .deliver(ALICE, "INBOX", message(3), Flags::new(), None, 0)
        .await
        .unwrap();
    assert_eq!(d3.uid, 3);
}

#[tokio::test]
async fn quota_is_enforced_and_freed_by_expunge() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let body = vec![b'x'; 1000];
    let limit = 2500;
    store
        .deliver(ALICE, "INBOX", body.clone(), Flags::new(), None, limit)
        .await
        .unwrap();
    store
        .deliver(ALICE, "INBOX", body.clone(), Flags::new(), None, limit)
        .await
        .unwrap();
    let err = store
        .deliver(ALICE, "INBOX", body.clone(), Flags::new(), None, limit)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::QuotaExceeded {
                used: 2000,
                limit: 2500,
                needed: 1000
            }
        ),
        "{err}"
    );
    assert!(err.is_temporary());
    // Nothing was written for the refused message.
    let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
    assert_eq!(h.snapshot().unwrap().messages.len(), 2);
    assert!(files_below(&dir.path().join("users"))
        .iter()
        .all(|f| !f.contains("/tmp/")));
    // 0 means unlimited.
    store
        .deliver(ALICE, "INBOX", body.clone(), Flags::new(), None, 0)
        .await
        .unwrap();
    h.expunge(&[1, 2]).await.unwrap();
    store
        .deliver(ALICE, "INBOX", body.clone(), Flags::new(), None, limit)
        .await
        .unwrap();
    // Copies count against the quota too.
    store.create_mailbox(ALICE, "Archive", None).await.unwrap();
    let err = h.copy(&[3, 4], "Archive", limit).await.unwrap_err();
    assert!(matches!(err, StoreError::QuotaExceeded { .. }));
    assert_eq!(store.usage(ALICE).await.unwrap().bytes, 2000);
}

#[tokio::test]
async fn limits_on_size_and_keywords() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreConfig {
            max_message_size: 100,
            ..config()
        },
    )
    .unwrap();
    let err = store
        .deliver(ALICE, "INBOX", vec![0; 101], Flags::new(), None, 0)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::TooLarge {
            size: 101,
            limit: 100
        }
    ));
    let big = dir.path().join("big.eml");
    std::fs::write(&big, vec![b'a'; 500]).unwrap();
    assert!(matches!(
        store
            .deliver(ALICE, "INBOX", big.as_path(), Flags::new(), None, 0)
            .await,
        Err(StoreError::TooLarge { .. })
    ));
    let mut bad = Flags::new();
    bad.insert_keyword("has space");
    assert!(matches!(
        store.deliver(ALICE, "INBOX", vec![1], bad, None, 0).await,
        Err(StoreError::InvalidKeyword { .. })
    ));
    assert!(matches!(
        store.deliver(ALICE, "Nope", vec![1], Flags::new(), None, 0).await,
        Err(StoreError::MailboxNotFound(n)) if n == "Nope"
    ));
    assert!(matches!(
        store
            .deliver("", "INBOX", vec![1], Flags::new(), None, 0)
            .await,
        Err(StoreError::InvalidUser(_))
    ));
    assert_eq!(store.usage(ALICE).await.unwrap(), Usage::default());
}

#[tokio::test]
async fn deliver_from_a_file_and_odd_user_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let src = dir.path().join("queued.eml");
    std::fs::write(&src, message(42)).unwrap();
    for user in ["a/b@example.org", "../x@example.org", "%2F@example.org"] {
        let d = store
            .deliver(user, "INBOX", src.clone(), Flags::new(), None, 0)
            .await
            .unwrap();
        let h = store.open_mailbox(user, "INBOX").await.unwrap();
        assert_eq!(h.fetch(d.uid).await.unwrap(), message(42));
    }
    // Nothing escaped the users directory.
    for f in files_below(dir.path()) {
        assert!(
            f == MARKER || f == "queued.eml" || f.starts_with("users/"),
            "{f}"
        );
    }
    assert_eq!(store.usage("a/b@example.org").await.unwrap().messages, 1);
    assert_eq!(store.usage("%2F@example.org").await.unwrap().messages, 1);
}

#[tokio::test]
async fn copy_and_move_report_uid_mappings() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 1..=4 {
        store
            .deliver(
                ALICE,
                "INBOX",
                message(i),
                Flags::new(),
                Some(1000 + i as i64),
                0,
            )
            .await
            .unwrap();
    }
    store.create_mailbox(ALICE, "Archive", None).await.unwrap();
    let inbox = store.open_mailbox(ALICE, "INBOX").await.unwrap();
    inbox
        .store_flags(
            &[2],
            FlagOp::Add,
            &Flags::new().with(SystemFlag::Flagged),
            None,
        )
        .await
        .unwrap();
    let c = inbox.copy(&[4, 2, 9], "Archive", 0).await.unwrap();
    let archive = store.open_mailbox(ALICE, "Archive").await.unwrap();
    assert_eq!(c.uidvalidity, archive.snapshot().unwrap().uidvalidity);
    assert_eq!(c.mapping, [(2, 1), (4, 2)]);
    let snap = archive.snapshot().unwrap();
    assert!(snap.get(1).unwrap().flags.contains(SystemFlag::Flagged));
    assert_eq!(snap.get(2).unwrap().internal_date, 1004);
    assert_eq!(archive.fetch(2).await.unwrap(), message(4));
    // Copies are independent: expunging the original keeps the copy.
    inbox.expunge(&[4]).await.unwrap();
    assert_eq!(archive.fetch(2).await.unwrap(), message(4));
    let m = inbox.move_to(&[1, 3], "Archive").await.unwrap();
    assert_eq!(m.mapping, [(1, 3), (3, 4)]);
    assert_eq!(
        inbox
            .snapshot()
            .unwrap()
            .messages
            .iter()
            .map(|m| m.uid)
            .collect::<Vec<_>>(),
        [2]
    );
    assert_eq!(archive.fetch(4).await.unwrap(), message(3));
    // A copy into the same mailbox.
    let c = archive.copy(&[1], "Archive", 0).await.unwrap();
    assert_eq!(c.mapping, [(1, 5)]);
    assert!(matches!(
        inbox.copy(&[2], "Nope", 0).await,
        Err(StoreError::MailboxNotFound(_))
    ));
    let usage = store.usage(ALICE).await.unwrap();
    assert_eq!(usage.messages, 6);
    let total: usize = [2, 2, 4, 1, 3, 2].iter().map(|i| message(*i).len()).sum();
    assert_eq!(usage.bytes, total as u64);
    drop((inbox, archive));
    let report = store.check(false).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(report.messages, 6);
}

#[tokio::test]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = open(dir.path());
        for i in 1..=5 {
            store
                .deliver(ALICE, "INBOX", message(i), Flags::new(), None, 0)
                .await
                .unwrap();
        }
        let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
        h.store_flags(
            &[2, 3],
            FlagOp::Replace,
            &Flags::from_imap(["\\Answered", "Work"]).unwrap(),
            None,
        )
        .await
        .unwrap();
        h.expunge(&[5, 1]).await.unwrap();
        h.snapshot().unwrap()
    };
    let store = open(dir.path());
    let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
    let after = h.snapshot().unwrap();
    assert_eq!(after.uidvalidity, before.uidvalidity);
    assert_eq!(after.uidnext, 6);
    assert_eq!(after.highestmodseq, before.highestmodseq);
    assert_eq!(after.messages, before.messages);
    assert_eq!(store.usage(ALICE).await.unwrap().messages, 3);
    let report = store.check(false).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
}

#[tokio::test]
async fn compaction_keeps_state_and_bounds_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        compact_min_records: 20,
        ..config()
    };
    let store = Store::open(dir.path(), cfg.clone()).unwrap();
    for i in 1..=5 {
        store
            .deliver(ALICE, "INBOX", message(i), Flags::new(), None, 0)
            .await
            .unwrap();
    }
    let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
    for round in 0..200 {
        let op = if round % 2 == 0 {
            FlagOp::Add
        } else {
            FlagOp::Remove
        };
        h.store_flags(
            &[1 + round % 5],
            op,
            &Flags::new().with(SystemFlag::Seen),
            None,
        )
        .await
        .unwrap();
    }
    h.expunge(&[3]).await.unwrap();
    let before = h.snapshot().unwrap();
    let index = {
        let u = store.user(ALICE).await.unwrap();
        u.mbox_dir(h.mailbox.id).join("index")
    };
    let records = crate::store::record::parse_log(&std::fs::read(&index).unwrap())
        .records
        .len();
    assert!(
        records < 20 + 2 * 5,
        "index not compacted: {records} records"
    );
    drop((h, store));
    let store = Store::open(dir.path(), cfg).unwrap();
    let after = store
        .open_mailbox(ALICE, "INBOX")
        .await
        .unwrap()
        .snapshot()
        .unwrap();
    assert_eq!(after.messages, before.messages);
    assert_eq!(
        (after.uidnext, after.highestmodseq),
        (before.uidnext, before.highestmodseq)
    );
    assert!(store.check(false).await.unwrap().is_clean());
}

#[tokio::test]
async fn usage_statistics_and_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreConfig {
            max_loaded_users: 2,
            ..config()
        },
    )
    .unwrap();
    for u in 0..5 {
        for i in 0..=u {
            store
                .deliver(
                    &format!("u{u}@x"),
                    "INBOX",
                    message(i),
                    Flags::new(),
                    None,
                    0,
                )
                .await
                .unwrap();
        }
    }
    assert!(store.inner.users.lock().unwrap().len() <= 3);
    let stats = store.usage_snapshot();
    assert_eq!(stats.len(), 5);
    assert_eq!(
        stats[4],
        (
            "u4@x".to_string(),
            Usage {
                messages: 5,
                bytes: (0..=4).map(|i| message(i).len() as u64).sum(),
            }
        )
    );
    // An evicted user comes back from disk.
    let h = store.open_mailbox("u0@x", "INBOX").await.unwrap();
    assert_eq!(h.fetch(1).await.unwrap(), message(0));
    // A fresh store sees everyone after load_all.
    let store = open(dir.path());
    assert!(store.usage_snapshot().is_empty());
    assert_eq!(store.load_all().await.unwrap(), 5);
    assert_eq!(store.usage_snapshot().len(), 5);
}
