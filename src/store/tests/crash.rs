//! Crash consistency at every step boundary, by fault injection: a hook panics at a step (a
//! crash — no cleanup code after it runs) or returns an error there (a full disk). After a
//! crash the store is reopened and must be consistent: every acknowledged message intact, the
//! interrupted one fully present or absent, `check` showing leftovers only and then nothing.
//! (Page-cache loss of unsynced data is out of reach in-process; torn index tails are made by
//! hand in `damage.rs`, and `tests/store_crash.rs` kills a real process.)

use std::sync::Arc;

use crate::store::fsio::Step;

use super::*;

pub(super) fn crash_at(store: &Store, step: Step) {
    *store.faults().hook.lock().unwrap() = Some(Arc::new(move |s| {
        if s == step {
            panic!("simulated crash at {s:?}");
        }
        None
    }));
}

pub(super) fn fail_at(store: &Store, step: Step) {
    *store.faults().hook.lock().unwrap() = Some(Arc::new(move |s| {
        (s == step).then(|| std::io::Error::from_raw_os_error(nix::libc::ENOSPC))
    }));
}

pub(super) fn clear_faults(store: &Store) {
    *store.faults().hook.lock().unwrap() = None;
}

pub(super) const DELIVERY: [Step; 6] = [
    Step::MessageWritten,
    Step::MessageSynced,
    Step::MessageLinked,
    Step::IndexWritten,
    Step::IndexSynced,
    Step::MessageDirSynced,
];

fn kinds(report: &CheckReport) -> Vec<FindingKind> {
    report.findings.iter().map(|f| f.kind).collect()
}

async fn assert_clean(store: &Store) {
    let report = store.check(false).await.unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
}

#[tokio::test]
async fn crash_at_every_delivery_step() {
    for step in DELIVERY {
        let dir = tempfile::tempdir().unwrap();
        let uidvalidity = {
            let store = open(dir.path());
            let mut uv = 0;
            for n in 1..=3 {
                uv = store
                    .deliver(ALICE, "INBOX", message(n), Flags::new(), None, 0)
                    .await
                    .unwrap()
                    .uidvalidity;
            }
            crash_at(&store, step);
            let err = store
                .deliver(ALICE, "INBOX", message(99), Flags::new(), None, 0)
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Internal(_)), "{step:?}: {err}");
            uv
        };
        let store = open(dir.path());
        // Before anything is loaded: leftovers of the crash, never damage.
        let report = store.check(false).await.unwrap();
        let want: &[FindingKind] = match step {
            Step::MessageWritten | Step::MessageSynced => &[FindingKind::TempFile],
            Step::MessageLinked => &[FindingKind::UnindexedMessage],
            _ => &[],
        };
        assert_eq!(kinds(&report), want, "{step:?}");
        let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
        let snap = h.snapshot().unwrap();
        assert_eq!(snap.uidvalidity, uidvalidity, "{step:?}");
        for n in 1..=3 {
            assert_eq!(h.fetch(n as u32).await.unwrap(), message(n), "{step:?}");
        }
        // The interrupted message is whole or absent: absent until its file is in place,
        // present (recovered or indexed) from then on.
        let present = !matches!(step, Step::MessageWritten | Step::MessageSynced);
        assert_eq!(snap.messages.len(), if present { 4 } else { 3 }, "{step:?}");
        if present {
            assert_eq!(h.fetch(4).await.unwrap(), message(99), "{step:?}");
        }
        assert_eq!(
            store.usage(ALICE).await.unwrap().messages,
            snap.messages.len() as u64
        );
        assert_clean(&store).await;
        let next = store
            .deliver(ALICE, "INBOX", message(5), Flags::new(), None, 0)
            .await
            .unwrap();
        assert_eq!(next.uid, snap.uidnext, "{step:?}");
        assert!(next.uid > 3);
    }
}

#[tokio::test]
async fn a_failure_at_any_delivery_step_leaves_nothing_behind() {
    for step in DELIVERY {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        for n in 1..=2 {
            store
                .deliver(ALICE, "INBOX", message(n), Flags::new(), None, 0)
                .await
                .unwrap();
        }
        let before = files_below(dir.path());
        let index = store.user(ALICE).await.unwrap().mbox_dir(1).join("index");
        let index_len = std::fs::metadata(&index).unwrap().len();
        let usage = store.usage(ALICE).await.unwrap();
        fail_at(&store, step);
        let err = store
            .deliver(ALICE, "INBOX", message(3), Flags::new(), None, 0)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NoSpace { .. }), "{step:?}: {err}");
        clear_faults(&store);
        assert_eq!(files_below(dir.path()), before, "{step:?}");
        assert_eq!(
            std::fs::metadata(&index).unwrap().len(),
            index_len,
            "{step:?}"
        );
        assert_eq!(store.usage(ALICE).await.unwrap(), usage);
        assert_clean(&store).await;
        let d = store
            .deliver(ALICE, "INBOX", message(3), Flags::new(), None, 0)
            .await
            .unwrap();
        assert_eq!(d.uid, 3, "{step:?}");
        drop(store);
        let store = open(dir.path());
        assert_eq!(store.status(ALICE, "INBOX").await.unwrap().messages, 3);
        assert_clean(&store).await;
    }
}

#[tokio::test]
async fn a_failed_copy_leaves_nothing_behind() {
    for step in [
        Step::MessageLinked,
        Step::MessageDirSynced,
        Step::IndexWritten,
        Step::IndexSynced,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.create_mailbox(ALICE, "Archive", None).await.unwrap();
        for n in 1..=3 {
            store
                .deliver(ALICE, "INBOX", message(n), Flags::new(), None, 0)
                .await
                .unwrap();
        }
        let before = files_below(dir.path());
        let usage = store.usage(ALICE).await.unwrap();
        let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
        fail_at(&store, step);
        assert!(matches!(
            h.copy(&[1, 2, 3], "Archive", 0).await,
            Err(StoreError::NoSpace { .. })
        ));
        assert!(matches!(
            h.move_to(&[1], "Archive").await,
            Err(StoreError::NoSpace { .. })
        ));
        clear_faults(&store);
        assert_eq!(files_below(dir.path()), before, "{step:?}");
        assert_eq!(store.usage(ALICE).await.unwrap(), usage);
        assert_eq!(h.snapshot().unwrap().messages.len(), 3);
        assert_clean(&store).await;
    }
}

#[tokio::test]
async fn crash_between_expunge_and_unlink() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        for n in 1..=3 {
            store
                .deliver(ALICE, "INBOX", message(n), Flags::new(), None, 0)
                .await
                .unwrap();
        }
        let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
        crash_at(&store, Step::ExpungeCommitted);
        assert!(h.expunge(&[2]).await.is_err());
    }
    let store = open(dir.path());
    assert_eq!(
        kinds(&store.check(false).await.unwrap()),
        [FindingKind::ExpungedLeftover]
    );
    let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
    let uids: Vec<u32> = h
        .snapshot()
        .unwrap()
        .messages
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(uids, [1, 3]);
    assert_clean(&store).await;
    let msgs = files_below(dir.path())
        .into_iter()
        .filter(|f| f.contains("/msg/"))
        .count();
    assert_eq!(msgs, 2);
}

#[tokio::test]
async fn crash_during_compaction() {
    for step in [Step::CompactWritten, Step::CompactRenamed] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            compact_min_records: 12,
            ..config()
        };
        let expected = {
            let store = Store::open(dir.path(), cfg.clone()).unwrap();
            for n in 1..=3 {
                store
                    .deliver(ALICE, "INBOX", message(n), Flags::new(), None, 0)
                    .await
                    .unwrap();
            }
            let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
            h.expunge(&[1]).await.unwrap();
            crash_at(&store, step);
            let mut flags = Flags::new();
            let mut crashed = false;
            for i in 0..20 {
                let mut f = Flags::new();
                f.insert_keyword(&format!("k{i}"));
                // The record is committed before compaction runs, so a crashed call still counts.
                flags = f.clone();
                if h.store_flags(&[2], FlagOp::Replace, &f, None)
                    .await
                    .is_err()
                {
                    crashed = true;
                    break;
                }
            }
            assert!(crashed, "{step:?}: compaction never ran");
            flags
        };
        let store = Store::open(dir.path(), cfg).unwrap();
        let report = store.check(false).await.unwrap();
        assert!(
            report.damage().next().is_none(),
            "{step:?}: {:#?}",
            report.findings
        );
        let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
        let snap = h.snapshot().unwrap();
        assert_eq!(
            snap.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
            [2, 3]
        );
        assert_eq!(snap.get(2).unwrap().flags, expected, "{step:?}");
        assert_eq!(h.fetch(3).await.unwrap(), message(3));
        assert_clean(&store).await;
    }
}

#[tokio::test]
async fn crash_while_creating_a_mailbox() {
    for step in [
        Step::CompactWritten,
        Step::MailboxBuilt,
        Step::MailboxMoved,
        Step::MetaWritten,
    ] {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            store
                .deliver(ALICE, "INBOX", message(1), Flags::new(), None, 0)
                .await
                .unwrap();
            crash_at(&store, step);
            assert!(store.create_mailbox(ALICE, "New", None).await.is_err());
        }
        let store = open(dir.path());
        let report = store.check(false).await.unwrap();
        assert!(
            report.damage().next().is_none(),
            "{step:?}: {:#?}",
            report.findings
        );
        let list = store.list_mailboxes(ALICE).await.unwrap();
        assert_eq!(
            list.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            ["INBOX"],
            "{step:?}"
        );
        assert_clean(&store).await;
        store.create_mailbox(ALICE, "New", None).await.unwrap();
        store
            .deliver(ALICE, "New", message(2), Flags::new(), None, 0)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn crash_while_deleting_a_mailbox() {
    for step in [Step::MailboxMoved, Step::MetaWritten] {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            store
                .deliver(ALICE, "INBOX", message(1), Flags::new(), None, 0)
                .await
                .unwrap();
            store.create_mailbox(ALICE, "Doomed", None).await.unwrap();
            store
                .deliver(ALICE, "Doomed", message(2), Flags::new(), None, 0)
                .await
                .unwrap();
            crash_at(&store, step);
            assert!(store.delete_mailbox(ALICE, "Doomed").await.is_err());
        }
        let store = open(dir.path());
        let report = store.check(false).await.unwrap();
        assert!(
            report.damage().next().is_none(),
            "{step:?}: {:#?}",
            report.findings
        );
        let list = store.list_mailboxes(ALICE).await.unwrap();
        assert_eq!(list.len(), 1, "{step:?}: the delete completes at load");
        assert_eq!(store.usage(ALICE).await.unwrap().messages, 1);
        assert_clean(&store).await;
    }
}

#[tokio::test]
async fn crash_while_renaming() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.create_mailbox(ALICE, "A", None).await.unwrap();
        store.create_mailbox(ALICE, "A/B", None).await.unwrap();
        crash_at(&store, Step::MetaWritten);
        assert!(store.rename_mailbox(ALICE, "A", "Z").await.is_err());
    }
    let store = open(dir.path());
    let list = store.list_mailboxes(ALICE).await.unwrap();
    assert_eq!(
        list.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["A", "A/B"]
    );
    assert_clean(&store).await;

    for step in [Step::MailboxBuilt, Step::MailboxMoved, Step::MetaWritten] {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            store
                .deliver(ALICE, "INBOX", message(1), Flags::new(), None, 0)
                .await
                .unwrap();
            crash_at(&store, step);
            assert!(store.rename_mailbox(ALICE, "INBOX", "Old").await.is_err());
        }
        let store = open(dir.path());
        let list = store.list_mailboxes(ALICE).await.unwrap();
        assert_eq!(
            list.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            ["INBOX"],
            "{step:?}"
        );
        assert_eq!(store.status(ALICE, "INBOX").await.unwrap().messages, 1);
        assert_clean(&store).await;
    }
}
