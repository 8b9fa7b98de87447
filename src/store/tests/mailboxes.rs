//! Mailbox management: defaults with SPECIAL-USE, create, delete, rename (hierarchies and
//! INBOX), subscriptions, UIDVALIDITY on re-creation.

use super::*;

fn names(list: &[MailboxInfo]) -> Vec<&str> {
    list.iter().map(|m| m.name.as_str()).collect()
}

#[tokio::test]
async fn default_mailboxes_with_special_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // A migrated user already has a \Sent mailbox under another name.
    store
        .create_mailbox(ALICE, "Sent Items", Some(SpecialUse::Sent))
        .await
        .unwrap();
    let created = store.ensure_default_mailboxes(ALICE).await.unwrap();
    assert_eq!(created, ["INBOX", "Drafts", "Trash", "Junk"]);
    assert!(store
        .ensure_default_mailboxes(ALICE)
        .await
        .unwrap()
        .is_empty());
    let list = store.list_mailboxes(ALICE).await.unwrap();
    assert_eq!(
        names(&list),
        ["Drafts", "INBOX", "Junk", "Sent Items", "Trash"]
    );
    let uses: Vec<_> = list.iter().map(|m| m.special_use).collect();
    assert_eq!(
        uses,
        [
            Some(SpecialUse::Drafts),
            None,
            Some(SpecialUse::Junk),
            Some(SpecialUse::Sent),
            Some(SpecialUse::Trash)
        ]
    );
    assert!(list
        .iter()
        .all(|m| m.subscribed != (m.name == "Sent Items")));
    assert_eq!(
        store.subscriptions(ALICE).await.unwrap(),
        ["Drafts", "INBOX", "Junk", "Trash"]
    );
}

#[tokio::test]
async fn create_validates_and_refuses_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreConfig {
            max_mailboxes: 3,
            ..config()
        },
    )
    .unwrap();
    store
        .create_mailbox(ALICE, "Lists/rust", None)
        .await
        .unwrap();
    assert!(matches!(
        store.create_mailbox(ALICE, "Lists/rust", None).await,
        Err(StoreError::MailboxExists(_))
    ));
    for bad in ["", "a//b", "/a", "a*", "x\r\ny"] {
        assert!(matches!(
            store.create_mailbox(ALICE, bad, None).await,
            Err(StoreError::InvalidName { .. })
        ));
    }
    store.create_mailbox(ALICE, "inbox", None).await.unwrap();
    assert!(matches!(
        store.create_mailbox(ALICE, "INBOX", None).await,
        Err(StoreError::MailboxExists(_))
    ));
    store.create_mailbox(ALICE, "Lists", None).await.unwrap();
    assert!(matches!(
        store.create_mailbox(ALICE, "Fourth", None).await,
        Err(StoreError::TooManyMailboxes(3))
    ));
    let list = store.list_mailboxes(ALICE).await.unwrap();
    assert_eq!(names(&list), ["INBOX", "Lists", "Lists/rust"]);
    assert!(list[1].has_children && !list[2].has_children);
}

#[tokio::test]
async fn delete_tells_sessions_and_recreation_gets_a_new_uidvalidity() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create_mailbox(ALICE, "Old", None).await.unwrap();
    store
        .create_mailbox(ALICE, "Old/Child", None)
        .await
        .unwrap();
    store
        .deliver(ALICE, "Old", message(1), Flags::new(), None, 0)
        .await
        .unwrap();
    let h = store.open_mailbox(ALICE, "Old").await.unwrap();
    let (snap, mut rx) = h.subscribe().unwrap();
    assert!(matches!(
        store.delete_mailbox(ALICE, "INBOX").await,
        Err(StoreError::NotPermitted(_))
    ));
    store.delete_mailbox(ALICE, "Old").await.unwrap();
    assert!(matches!(*rx.recv().await.unwrap(), MailboxEvent::Deleted));
    assert!(matches!(
        h.fetch(1).await,
        Err(StoreError::MailboxNotFound(_) | StoreError::NoSuchMessage(_))
    ));
    assert!(matches!(
        h.store_flags(
            &[1],
            FlagOp::Add,
            &Flags::new().with(SystemFlag::Seen),
            None
        )
        .await,
        Err(StoreError::MailboxNotFound(_))
    ));
    assert!(matches!(
        h.append(message(2), Flags::new(), None, 0).await,
        Err(StoreError::MailboxNotFound(_))
    ));
    assert!(matches!(
        store.delete_mailbox(ALICE, "Old").await,
        Err(StoreError::MailboxNotFound(_))
    ));
    assert_eq!(
        names(&store.list_mailboxes(ALICE).await.unwrap()),
        ["Old/Child"]
    );
    assert_eq!(store.usage(ALICE).await.unwrap(), Usage::default());
    store.create_mailbox(ALICE, "Old", None).await.unwrap();
    let again = store
        .open_mailbox(ALICE, "Old")
        .await
        .unwrap()
        .snapshot()
        .unwrap();
    assert!(again.uidvalidity > snap.uidvalidity);
    assert!(again.messages.is_empty());
    // Nothing of the deleted mailbox remains on disk.
    let trash: Vec<_> = files_below(dir.path())
        .into_iter()
        .filter(|f| f.contains("/trash/"))
        .collect();
    assert!(trash.is_empty(), "{trash:?}");
}

#[tokio::test]
async fn rename_moves_a_hierarchy_and_its_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for n in ["Work", "Work/2023", "Work/2023/Q1", "Workshop", "Other"] {
        store.create_mailbox(ALICE, n, None).await.unwrap();
    }
    store.subscribe(ALICE, "Work/2023").await.unwrap();
    store.subscribe(ALICE, "Workshop").await.unwrap();
    store
        .deliver(ALICE, "Work/2023/Q1", message(7), Flags::new(), None, 0)
        .await
        .unwrap();
    let h = store.open_mailbox(ALICE, "Work/2023/Q1").await.unwrap();
    let (snap, mut rx) = h.subscribe().unwrap();
    assert!(matches!(
        store.rename_mailbox(ALICE, "Work", "Other").await,
        Err(StoreError::MailboxExists(_))
    ));
    assert!(matches!(
        store.rename_mailbox(ALICE, "Work", "Work/Sub").await,
        Err(StoreError::NotPermitted(_))
    ));
    assert!(matches!(
        store.rename_mailbox(ALICE, "Nope", "X").await,
        Err(StoreError::MailboxNotFound(_))
    ));
    store
        .rename_mailbox(ALICE, "Work", "Archive/Work")
        .await
        .unwrap();
    assert_eq!(
        names(&store.list_mailboxes(ALICE).await.unwrap()),
        [
            "Archive/Work",
            "Archive/Work/2023",
            "Archive/Work/2023/Q1",
            "Other",
            "Workshop"
        ]
    );
    assert_eq!(
        store.subscriptions(ALICE).await.unwrap(),
        ["Archive/Work/2023", "Workshop"]
    );
    assert!(
        matches!(&*rx.recv().await.unwrap(), MailboxEvent::Renamed { name } if name == "Archive/Work/2023/Q1")
    );
    assert_eq!(h.name().as_deref(), Some("Archive/Work/2023/Q1"));
    // Same mailbox, same UIDVALIDITY, same messages.
    let moved = store
        .open_mailbox(ALICE, "Archive/Work/2023/Q1")
        .await
        .unwrap();
    assert_eq!(moved.snapshot().unwrap().uidvalidity, snap.uidvalidity);
    assert_eq!(moved.fetch(1).await.unwrap(), message(7));
    // And after reopening.
    drop((h, moved, store));
    let store = open(dir.path());
    assert_eq!(store.list_mailboxes(ALICE).await.unwrap().len(), 5);
    assert!(store.check(false).await.unwrap().is_clean());
}

#[tokio::test]
async fn renaming_inbox_moves_its_messages_and_leaves_an_empty_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .deliver(ALICE, "INBOX", message(1), Flags::new(), None, 0)
        .await
        .unwrap();
    store
        .create_mailbox(ALICE, "INBOX/Sub", None)
        .await
        .unwrap();
    let before = store.status(ALICE, "INBOX").await.unwrap();
    store
        .rename_mailbox(ALICE, "INBOX", "Old Inbox")
        .await
        .unwrap();
    let list = store.list_mailboxes(ALICE).await.unwrap();
    assert_eq!(names(&list), ["INBOX", "INBOX/Sub", "Old Inbox"]);
    let old = store.status(ALICE, "Old Inbox").await.unwrap();
    assert_eq!((old.messages, old.uidvalidity), (1, before.uidvalidity));
    let inbox = store.status(ALICE, "INBOX").await.unwrap();
    assert_eq!(inbox.messages, 0);
    assert!(inbox.uidvalidity > before.uidvalidity);
    let d = store
        .deliver(ALICE, "INBOX", message(2), Flags::new(), None, 0)
        .await
        .unwrap();
    assert_eq!(d.uid, 1);
}

#[tokio::test]
async fn subscriptions_need_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.subscribe(ALICE, "Shared/Elsewhere").await.unwrap();
    store.subscribe(ALICE, "inbox").await.unwrap();
    assert_eq!(
        store.subscriptions(ALICE).await.unwrap(),
        ["INBOX", "Shared/Elsewhere"]
    );
    store.unsubscribe(ALICE, "Shared/Elsewhere").await.unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.subscriptions(ALICE).await.unwrap(), ["INBOX"]);
    assert!(store.list_mailboxes(ALICE).await.unwrap().is_empty());
}
