//! Group commit for directory fsyncs: callers that changed a directory (a rename, an unlink)
//! at about the same time share one fsync of it.
//!
//! An fsync that began after a caller's change makes that change durable. So a caller takes a
//! ticket after its change; if an fsync is running, it waits for the next one, which serves
//! everyone who took a ticket meanwhile. Under load (200 SMTP clients committing to the spool)
//! that is one directory fsync for many messages instead of one each. Must never report a
//! ticket durable that no successful fsync started after: a failed fsync fails its leader, and
//! each waiter then leads an fsync of its own.

use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Debug, Default)]
pub(crate) struct GroupSync {
    state: Mutex<SyncState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct SyncState {
    /// Tickets handed out: a caller takes one after its change to the directory.
    requested: u64,
    /// Every ticket up to this one is durable.
    synced: u64,
    running: bool,
}

impl GroupSync {
    fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns once an `fsync` (the directory's) that began after this call succeeded, run by
    /// this caller or by another one; an error is this caller's own `fsync`'s.
    pub(crate) fn sync<E>(&self, fsync: impl Fn() -> Result<(), E>) -> Result<(), E> {
        let mut st = self.lock();
        st.requested += 1;
        let ticket = st.requested;
        loop {
            if st.synced >= ticket {
                return Ok(());
            }
            if !st.running {
                // Lead: this fsync starts after every ticket handed out so far.
                st.running = true;
                let covers = st.requested;
                drop(st);
                let result = fsync();
                st = self.lock();
                st.running = false;
                if result.is_ok() {
                    st.synced = st.synced.max(covers);
                }
                self.done.notify_all();
                result?;
                continue;
            }
            st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn concurrent_callers_share_fsyncs_and_all_return() {
        let g = Arc::new(GroupSync::default());
        let fsyncs = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (g, n) = (g.clone(), fsyncs.clone());
                std::thread::spawn(move || {
                    (0..20).try_for_each(|_| {
                        g.sync(|| {
                            n.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(std::time::Duration::from_millis(1));
                            Ok::<(), ()>(())
                        })
                    })
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let st = g.lock();
        assert_eq!((st.requested, st.synced, st.running), (320, 320, false));
        let n = fsyncs.load(Ordering::Relaxed);
        assert!(n < 320, "{n} fsyncs for 320 callers: none shared");
    }

    #[test]
    fn a_failed_fsync_fails_its_caller_and_syncs_nothing() {
        let g = GroupSync::default();
        assert_eq!(g.sync(|| Err("EIO")), Err("EIO"));
        assert_eq!(g.lock().synced, 0);
        assert_eq!(g.sync(|| Ok::<(), &str>(())), Ok(()));
        assert_eq!(g.lock().synced, 2);
    }
}
