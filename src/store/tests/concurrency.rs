//! Many sessions on one mailbox: every handle sees every other handle's changes, exactly once
//! and in order, and concurrent writers never share a UID.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::broadcast::error::TryRecvError;

use super::*;

async fn next(
    rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<MailboxEvent>>,
) -> std::sync::Arc<MailboxEvent> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("event in time")
        .expect("event")
}

#[tokio::test]
async fn two_handles_see_each_others_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .deliver(ALICE, "INBOX", message(1), Flags::new(), None, 0)
        .await
        .unwrap();
    let a = store.open_mailbox(ALICE, "INBOX").await.unwrap();
    let b = store.open_mailbox(ALICE, "INBOX").await.unwrap();
    assert_ne!(a.origin(), b.origin());
    let (snap_a, mut rx_a) = a.subscribe().unwrap();
    let (_, mut rx_b) = b.subscribe().unwrap();
    assert_eq!(snap_a.messages.len(), 1);

    b.store_flags(
        &[1],
        FlagOp::Add,
        &Flags::new().with(SystemFlag::Seen),
        None,
    )
    .await
    .unwrap();
    match &*next(&mut rx_a).await {
        MailboxEvent::Flags { updates, origin } => {
            assert_eq!(*origin, b.origin());
            assert_eq!(updates.len(), 1);
            assert!(updates[0].flags.contains(SystemFlag::Seen));
            assert!(updates[0].modseq > snap_a.highestmodseq);
        }
        e => panic!("unexpected {e:?}"),
    }
    store
        .deliver(ALICE, "INBOX", message(2), Flags::new(), None, 0)
        .await
        .unwrap();
    match &*next(&mut rx_a).await {
        MailboxEvent::Exists {
            messages,
            uidnext,
            origin,
        } => {
            assert_eq!((messages[0].uid, *uidnext, *origin), (2, 3, 0));
        }
        e => panic!("unexpected {e:?}"),
    }
    a.append(message(3), Flags::new(), None, 0).await.unwrap();
    a.expunge(&[1]).await.unwrap();
    // b saw all four changes, in order.
    let kinds: Vec<_> = [0; 4]
        .iter()
        .map(|_| match rx_b.try_recv() {
            Ok(e) => match &*e {
                MailboxEvent::Flags { .. } => "flags",
                MailboxEvent::Exists { .. } => "exists",
                MailboxEvent::Expunge { .. } => "expunge",
                _ => "other",
            },
            Err(_) => "none",
        })
        .collect();
    assert_eq!(kinds, ["flags", "exists", "exists", "expunge"]);
    assert!(matches!(rx_b.try_recv(), Err(TryRecvError::Empty)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_get_distinct_ascending_uids() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.ensure_default_mailboxes(ALICE).await.unwrap();
    let watcher = store.open_mailbox(ALICE, "INBOX").await.unwrap();
    let (snap, mut rx) = watcher.subscribe().unwrap();
    assert!(snap.messages.is_empty());
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut uids = Vec::new();
            for i in 0..12 {
                let n = t * 100 + i;
                let d = store
                    .deliver(ALICE, "INBOX", message(n), Flags::new(), None, 0)
                    .await
                    .unwrap();
                uids.push((d.uid, n));
                // Other users proceed in parallel.
                store
                    .deliver(
                        &format!("u{t}@x"),
                        "INBOX",
                        message(n),
                        Flags::new(),
                        None,
                        0,
                    )
                    .await
                    .unwrap();
            }
            uids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let uids: BTreeSet<u32> = all.iter().map(|(u, _)| *u).collect();
    assert_eq!(uids.len(), 96);
    assert_eq!(
        uids.iter().copied().collect::<Vec<_>>(),
        (1..=96).collect::<Vec<_>>()
    );
    // The watcher saw every message exactly once, in UID order.
    let mut seen = Vec::new();
    while seen.len() < 96 {
        if let MailboxEvent::Exists { messages, .. } = &*next(&mut rx).await {
            seen.extend(messages.iter().map(|m| m.uid));
        }
    }
    assert_eq!(seen, (1..=96).collect::<Vec<_>>());
    for (uid, n) in all {
        assert_eq!(watcher.fetch(uid).await.unwrap(), message(n));
    }
    assert_eq!(store.usage(ALICE).await.unwrap().messages, 96);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribing_during_writes_misses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.ensure_default_mailboxes(ALICE).await.unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..60 {
                store
                    .deliver(ALICE, "INBOX", message(i), Flags::new(), None, 0)
                    .await
                    .unwrap();
            }
        })
    };
    let mut views = Vec::new();
    for _ in 0..6 {
        let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
        views.push(h.subscribe().unwrap());
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    writer.await.unwrap();
    for (snap, mut rx) in views {
        let mut uids: Vec<u32> = snap.messages.iter().map(|m| m.uid).collect();
        while uids.len() < 60 {
            if let MailboxEvent::Exists { messages, .. } = &*next(&mut rx).await {
                uids.extend(messages.iter().map(|m| m.uid));
            }
        }
        assert_eq!(uids, (1..=60).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_slow_session_is_told_it_lagged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreConfig {
            event_capacity: 4,
            ..config()
        },
    )
    .unwrap();
    store
        .deliver(ALICE, "INBOX", message(0), Flags::new(), None, 0)
        .await
        .unwrap();
    let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
    let (_, mut rx) = h.subscribe().unwrap();
    for i in 1..=10 {
        store
            .deliver(ALICE, "INBOX", message(i), Flags::new(), None, 0)
            .await
            .unwrap();
    }
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Lagged(_))));
    // Resynchronising from a fresh snapshot gives the full state.
    assert_eq!(h.snapshot().unwrap().messages.len(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_caller_giving_up_mid_load_never_causes_a_second_repair() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        for i in 0..10 {
            store
                .deliver(ALICE, "INBOX", message(i), Flags::new(), None, 0)
                .await
                .unwrap();
        }
    }
    // Lose every append record, so loading has repairs to make.
    let index = crate::store::user::user_dir(dir.path(), ALICE).join("mbox/1/index");
    let bytes = std::fs::read(&index).unwrap();
    let header = crate::store::record::decode_frame(&bytes).unwrap().1;
    std::fs::write(&index, &bytes[..header]).unwrap();
    let store = open(dir.path());
    // The first load stalls between scanning and repairing (a slow disk).
    let first = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    *store.faults().hook.lock().unwrap() = Some(std::sync::Arc::new(move |s| {
        if s == crate::store::fsio::Step::LoadScanned
            && first.swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            std::thread::sleep(Duration::from_millis(300));
        }
        None
    }));
    // A session that gives up while the user is loading...
    let _ = tokio::time::timeout(Duration::from_millis(20), store.status(ALICE, "INBOX")).await;
    // ...must not let the next one load the user again beside the stalled load: that second
    // state would hand out UID 11, which the stalled repair would then cut from the index.
    assert_eq!(store.status(ALICE, "INBOX").await.unwrap().messages, 10);
    let flagged = Flags::new().with(SystemFlag::Flagged);
    let d = store
        .deliver(ALICE, "INBOX", message(99), flagged.clone(), None, 0)
        .await
        .unwrap();
    assert_eq!(d.uid, 11);
    tokio::time::sleep(Duration::from_millis(400)).await;
    drop(store);
    let store = open(dir.path());
    let report = store.check(false).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
    let h = store.open_mailbox(ALICE, "INBOX").await.unwrap();
    assert_eq!(h.snapshot().unwrap().get(11).unwrap().flags, flagged);
    assert_eq!(h.fetch(11).await.unwrap(), message(99));
}
