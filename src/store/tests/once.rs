//! Keyed deliveries are stored once: a retry after an acknowledged delivery, after a restart,
//! and after a crash at any step of the first attempt leaves exactly one copy.

use super::crash::{crash_at, DELIVERY};
use super::*;

fn keyed(user: &str, key: &str) -> DeliveryTarget {
    DeliveryTarget {
        user: user.into(),
        mailbox: INBOX.into(),
        flags: Flags::new(),
        quota_bytes: 0,
        key: Some(key.into()),
    }
}

async fn count(store: &Store, user: &str) -> usize {
    let h = store.open_mailbox(user, INBOX).await.unwrap();
    h.snapshot().unwrap().messages.len()
}

#[tokio::test]
async fn a_retried_delivery_is_stored_once_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let store = open(dir.path());
        let targets = [keyed(ALICE, "n1.q1\na"), keyed("bob@x", "n1.q1\nb")];
        let a = store.deliver_many(message(1), None, &targets).await;
        let b = store.deliver_many(message(1), None, &targets).await;
        assert_eq!(a[0].as_ref().unwrap(), b[0].as_ref().unwrap());
        assert_eq!(a[1].as_ref().unwrap(), b[1].as_ref().unwrap());
        // Another key (the next queue entry) is another delivery.
        let c = store
            .deliver_many(message(2), None, &[keyed(ALICE, "n1.q2\na")])
            .await;
        assert_eq!(c[0].as_ref().unwrap().uid, 2);
        assert_eq!(count(&store, ALICE).await, 2);
        assert_eq!(count(&store, "bob@x").await, 1);
        *a[0].as_ref().unwrap()
    };
    let store = open(dir.path());
    let again = store
        .deliver_many(message(1), None, &[keyed(ALICE, "n1.q1\na")])
        .await;
    assert_eq!(again[0].as_ref().unwrap(), &first);
    assert_eq!(count(&store, ALICE).await, 2);
    // Unkeyed deliveries are never deduplicated.
    store
        .deliver(ALICE, INBOX, message(1), Flags::new(), None, 0)
        .await
        .unwrap();
    assert_eq!(count(&store, ALICE).await, 3);
    assert!(store.check(false).await.unwrap().is_clean());
}

#[tokio::test]
async fn a_crash_at_any_step_then_a_retry_leaves_exactly_one_copy() {
    for step in DELIVERY {
        for fanout in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let targets = if fanout {
                vec![keyed(ALICE, "k\na"), keyed("bob@x", "k\nb")]
            } else {
                vec![keyed(ALICE, "k\na")]
            };
            {
                let store = open(dir.path());
                store
                    .deliver(ALICE, INBOX, message(1), Flags::new(), None, 0)
                    .await
                    .unwrap();
                crash_at(&store, step);
                let res = store.deliver_many(message(9), None, &targets).await;
                assert!(res.iter().any(Result::is_err), "{step:?}");
            }
            let store = open(dir.path());
            let res = store.deliver_many(message(9), None, &targets).await;
            assert!(res.iter().all(Result::is_ok), "{step:?} {res:?}");
            assert_eq!(count(&store, ALICE).await, 2, "{step:?} fanout={fanout}");
            let h = store.open_mailbox(ALICE, INBOX).await.unwrap();
            let uid = res[0].as_ref().unwrap().uid;
            assert_eq!(h.fetch(uid).await.unwrap(), message(9), "{step:?}");
            if fanout {
                assert_eq!(count(&store, "bob@x").await, 1, "{step:?}");
            }
            assert!(store.check(false).await.unwrap().is_clean(), "{step:?}");
        }
    }
}
