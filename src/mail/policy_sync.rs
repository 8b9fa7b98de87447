//! Keeps this node's anti-UBE policy ([`PolicyHandle`]) equal to the document the cluster
//! replicates: [`spawn`] installs it at start and again whenever the applied version changes,
//! so every node enforces the same policy and a change needs no restart.
//!
//! The change notification is [`Cluster::policy_version`], a watch channel the state machine
//! updates after each applied entry and installed snapshot (no polling). The document is read
//! from the local directory and compiled on the blocking pool; sessions already running keep
//! the policy they started with ([`PolicyHandle::get`] is a snapshot).
//!
//! A stored document always compiled on the node that proposed it. If it does not compile
//! here — a node of another version during a rolling upgrade — this node keeps the policy it
//! had, logs an error and counts the failure in [`SyncStatus`]; it never falls back to the
//! defaults, which could be far more permissive. This module never writes the directory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::antiube::policy::Policy;
use crate::antiube::PolicyHandle;
use crate::cluster::Cluster;
use crate::directory::StoredPolicy;
use crate::net::ShutdownSignal;

/// What the sync task has done, for metrics and status displays.
#[derive(Debug, Default)]
pub struct SyncStatus {
    /// Stored versions that did not compile on this node, counted once each.
    failures: AtomicU64,
    /// The last stored version that did not compile (0: none), so it is not retried.
    failed_version: AtomicU64,
}

impl SyncStatus {
    /// How many stored versions did not compile on this node since it started.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The last stored version that did not compile here; 0 when none did.
    pub fn failed_version(&self) -> u64 {
        self.failed_version.load(Ordering::Relaxed)
    }
}

/// Starts the task that installs the replicated policy into `handle`, now and after every
/// change, until `shutdown` triggers. Returns its status counters.
pub fn spawn(
    cluster: Cluster,
    handle: Arc<PolicyHandle>,
    shutdown: ShutdownSignal,
) -> Arc<SyncStatus> {
    let status = Arc::new(SyncStatus::default());
    let task_status = status.clone();
    tokio::spawn(async move {
        let mut versions = cluster.policy_version();
        loop {
            versions.borrow_and_update();
            let stored = cluster.read_directory().policy().cloned();
            let (h, s) = (handle.clone(), task_status.clone());
            // Compiling a document of several MiB of regular expressions takes a while.
            let joined = tokio::task::spawn_blocking(move || install(&h, &s, stored)).await;
            if let Err(e) = joined {
                tracing::error!(error = %e, "the anti-UBE policy compiler failed; keeping the policy in force");
            }
            tokio::select! {
                () = shutdown.triggered() => return,
                changed = versions.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    });
    status
}

/// Installs `stored` (the directory's document, `None` when none was ever set) into `handle`
/// unless it is already in force or already failed.
fn install(handle: &PolicyHandle, status: &SyncStatus, stored: Option<StoredPolicy>) {
    let current = handle.version();
    let Some(stored) = stored else {
        if current != 0 {
            // Only a snapshot of an earlier state can do this; follow the replicated state.
            handle.set(0, Policy::default());
            crate::metrics::antiube_policy_version(0);
            tracing::info!(
                previous = current,
                "no anti-UBE policy stored: built-in defaults in force"
            );
        }
        return;
    };
    let version = stored.version;
    if version == current || version == status.failed_version() {
        return;
    }
    match stored.doc.compile() {
        Ok(policy) => {
            handle.set(version, policy);
            crate::metrics::antiube_policy_version(version);
            tracing::info!(
                version,
                previous = current,
                maps = stored.doc.maps.len(),
                "anti-UBE policy installed"
            );
        }
        Err(e) => {
            status.failures.fetch_add(1, Ordering::Relaxed);
            crate::metrics::antiube_policy_error();
            status.failed_version.store(version, Ordering::Relaxed);
            tracing::error!(
                version,
                in_force = current,
                error = %e,
                "the stored anti-UBE policy does not compile on this node (is it running another \
                 version than the node that stored it?); keeping the policy in force: upgrade \
                 this node or store a policy it accepts"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::antiube::policy::PolicyDoc;

    fn stored(version: u64, settings: &str, maps: &[(&str, &str)]) -> Option<StoredPolicy> {
        Some(StoredPolicy {
            version,
            doc: PolicyDoc {
                settings: settings.to_string(),
                maps: maps
                    .iter()
                    .map(|(n, t)| (n.to_string(), t.to_string()))
                    .collect(),
            },
        })
    }

    #[test]
    fn installs_good_documents_and_keeps_the_policy_on_a_bad_one() {
        let handle = PolicyHandle::default();
        let status = SyncStatus::default();
        install(&handle, &status, None);
        assert_eq!(handle.version(), 0);

        let good = "[content]\ntag_score = 3.0\nheader_checks = \"regexp:hc\"\n";
        install(
            &handle,
            &status,
            stored(5, good, &[("hc", "/^Subject: x/ REJECT\n")]),
        );
        assert_eq!(handle.version(), 5);
        assert_eq!(handle.get().settings.content.tag_score, 3.0);
        assert!(handle.get().header_checks.is_some());

        // A map that does not compile here: version 5 stays, the failure is counted once.
        let bad = stored(8, "", &[("hc", "/x/ FROB\n")]);
        install(&handle, &status, bad.clone());
        install(&handle, &status, bad);
        assert_eq!(handle.version(), 5);
        assert_eq!(handle.get().settings.content.tag_score, 3.0);
        assert_eq!((status.failures(), status.failed_version()), (1, 8));

        // The next good version is installed.
        install(&handle, &status, stored(9, "", &[]));
        assert_eq!(handle.version(), 9);
        assert_eq!(handle.get().settings.content.tag_score, 5.0);
        assert!(handle.get().header_checks.is_none());

        // Back to no document: the defaults.
        install(&handle, &status, None);
        assert_eq!(handle.version(), 0);
    }
}
