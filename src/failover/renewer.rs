//! The holder's background renewals: renew every `renew_ms` while this node holds the lease,
//! push the store's write fence forward on each commit, report the activation once, and note
//! when the lease is gone. Split from `mod.rs`: the loops there decide, this one only renews.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::{LeaseCommand, LeaseOutcome};
use super::{Holder, Stop};

/// Renews the lease in the background while this node holds it; stopped when dropped.
pub(super) struct Renewer {
    /// Send time of the last committed renewal.
    last_ok: Arc<std::sync::Mutex<Instant>>,
    /// Why the lease is gone, once it is (a stale renewal).
    lost: Arc<std::sync::Mutex<Option<String>>>,
    /// The activation time to report with the next renewal.
    activated: Arc<std::sync::Mutex<Option<u64>>>,
    budget: Duration,
    task: tokio::task::JoinHandle<()>,
}

impl Renewer {
    pub(super) fn start(h: &Holder, epoch: u64, first_ok: Instant, budget: Duration) -> Renewer {
        let last_ok = Arc::new(std::sync::Mutex::new(first_ok));
        let lost = Arc::new(std::sync::Mutex::new(None));
        let activated = Arc::new(std::sync::Mutex::new(None::<u64>));
        let (cluster, fence) = (h.cluster.clone(), h.fence.clone());
        let period = Duration::from_millis(h.config.renew_ms);
        let (l, x, a) = (last_ok.clone(), lost.clone(), activated.clone());
        let me = cluster.id();
        let task = tokio::spawn(async move {
            loop {
                let t0 = Instant::now();
                let since = *l.lock().unwrap_or_else(|p| p.into_inner());
                let left = budget.saturating_sub(since.elapsed());
                if left.is_zero() {
                    return;
                }
                let report = a.lock().unwrap_or_else(|p| p.into_inner()).take();
                let cmd = match report {
                    Some(duration_ms) => LeaseCommand::Activated {
                        node: me,
                        epoch,
                        duration_ms,
                    },
                    None => LeaseCommand::Renew { node: me, epoch },
                };
                match tokio::time::timeout(left, cluster.lease(cmd)).await {
                    Ok(Ok(LeaseOutcome::Done)) => {
                        // Under the `lost` lock, which Drop takes to stop us: a renewal that
                        // lands after the holder gave up never reopens the fence.
                        let gone = x.lock().unwrap_or_else(|p| p.into_inner());
                        if gone.is_some() {
                            return;
                        }
                        *l.lock().unwrap_or_else(|p| p.into_inner()) = t0;
                        fence.open_until(t0 + budget);
                    }
                    Ok(Ok(LeaseOutcome::Stale(why))) => {
                        *x.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                        return;
                    }
                    other => {
                        if let Ok(Err(e)) = other {
                            tracing::warn!(error = %e, "mailstore: renewal failed");
                        }
                        // Report the activation with the next attempt.
                        if let Some(d) = report {
                            a.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(d);
                        }
                    }
                }
                tokio::time::sleep(period.saturating_sub(t0.elapsed())).await;
            }
        });
        Renewer {
            last_ok,
            lost,
            activated,
            budget,
            task,
        }
    }

    /// Time since the last committed renewal was sent.
    pub(super) fn age(&self) -> Duration {
        self.last_ok
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// `Some` when the lease is gone or may be about to be granted elsewhere.
    pub(super) fn check(&self) -> Option<Stop> {
        if let Some(why) = self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Some(Stop::Lost(why));
        }
        let age = self.age();
        (age >= self.budget)
            .then(|| Stop::Lost(format!("no renewal committed for {} ms", age.as_millis())))
    }

    pub(super) fn report_active(&self, duration_ms: u64) {
        *self.activated.lock().unwrap_or_else(|p| p.into_inner()) = Some(duration_ms);
    }
}

impl Drop for Renewer {
    fn drop(&mut self) {
        let mut gone = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        gone.get_or_insert_with(|| "stopped".into());
        self.task.abort();
    }
}
