//! The lease's write fence: nothing is written while it is closed or past its deadline, and a
//! refused write leaves nothing behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

#[tokio::test]
async fn writes_stop_when_the_lease_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let fence = Arc::new(WriteFence::new());
    // Closed until the first renewal: not even the volume's marker is written.
    assert!(matches!(
        Store::open_fenced(dir.path(), config(), Some(fence.clone())),
        Err(StoreError::Fenced)
    ));
    fence.open_until(Instant::now() + Duration::from_secs(60));
    let store = Store::open_fenced(dir.path(), config(), Some(fence.clone())).unwrap();
    let deliver = || store.deliver(ALICE, INBOX, message(1), Flags::new(), None, 0);
    assert_eq!(deliver().await.unwrap().uid, 1);
    // Past the deadline (a paused process resuming): refused, and temporary for LMTP.
    fence.open_until(Instant::now() + Duration::from_millis(20));
    std::thread::sleep(Duration::from_millis(40));
    let err = deliver().await.unwrap_err();
    assert!(
        matches!(err, StoreError::Fenced) && err.is_temporary(),
        "{err}"
    );
    let h = store.open_mailbox(ALICE, INBOX).await.unwrap();
    assert!(matches!(
        h.store_flags(
            &[1],
            FlagOp::Add,
            &Flags::new().with(SystemFlag::Seen),
            None
        )
        .await,
        Err(StoreError::Fenced)
    ));
    fence.close();
    assert!(matches!(h.expunge(&[1]).await, Err(StoreError::Fenced)));
    // Nothing half-written: an unfenced store sees the one message, and check is clean.
    drop((h, store));
    let store = open(dir.path());
    let h = store.open_mailbox(ALICE, INBOX).await.unwrap();
    assert_eq!(h.snapshot().unwrap().messages.len(), 1);
    assert!(store.check(false).await.unwrap().is_clean());
}
