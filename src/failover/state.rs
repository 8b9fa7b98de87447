//! The replicated mailstore lease: who holds the mailstore, at which epoch, who may hold it, and
//! the record of the last failover. Every node applies the same [`LeaseCommand`]s from the Raft
//! log in the same order, so this is deterministic and does no I/O and reads no clock: times in
//! commands are the proposer's, carried as data, for display only.
//!
//! Safety does not rest on this state alone: the leader grants a lease held by another node only
//! after it has seen no renewal for a whole lease duration on its own monotonic clock, and the
//! holder fences itself earlier than that (module `failover`). What the state machine enforces
//! is that a grant, renewal or release names the current epoch (compare-and-set), so a late
//! or duplicated command from an old holder or an old leader changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// A node that can serve the mailstore, as it registered itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The node's name (for status and logs).
    pub name: String,
    /// Where its LMTP server listens when it holds the mailstore (without a virtual IP, the
    /// queues deliver there).
    pub lmtp_addr: Option<std::net::SocketAddr>,
}

/// How the last change of holder happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRecord {
    /// The epoch it started.
    pub epoch: u64,
    /// The previous holder, if any.
    pub from: Option<u64>,
    /// The new holder.
    pub to: u64,
    /// Why (e.g. "n2 stopped renewing", "switchover requested by the operator").
    pub reason: String,
    /// When the grant was proposed (Unix ms, the leader's clock).
    pub granted_at_ms: u64,
    /// From the grant to the new holder's services answering (reported by the holder).
    pub duration_ms: Option<u64>,
}

/// The replicated state of the mailstore role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailstoreState {
    /// The node allowed to mount the volume and serve, if any.
    pub holder: Option<u64>,
    /// Increases with every grant; the volume's owner record carries it.
    pub epoch: u64,
    /// Counts the holder's renewals, so the leader sees each one as a change.
    pub renewals: u64,
    /// Nodes with a mailstore configuration (they registered at start).
    pub candidates: BTreeMap<u64, Candidate>,
    /// Nodes kept out of the holder role by the operator.
    pub drained: BTreeSet<u64>,
    /// A planned switchover in progress: the holder releases, then this node gets the lease.
    /// `Some(None)`: any other eligible node.
    pub handover: Option<Option<u64>>,
    /// The active holder has its services up (it reported so at this epoch).
    pub active_epoch: Option<u64>,
    /// The last change of holder.
    pub last_failover: Option<FailoverRecord>,
    /// Nodes whose last activation failed (volume or services), with the reason: offered the
    /// lease only when no other node can take it, until they start again.
    #[serde(default)]
    pub failed: BTreeMap<u64, String>,
}

/// A change to the lease, proposed through the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseCommand {
    /// A node with a mailstore configuration announces itself (at every start; idempotent).
    Register {
        node: u64,
        name: String,
        lmtp_addr: Option<std::net::SocketAddr>,
    },
    /// A node without one (any more) withdraws.
    Unregister { node: u64 },
    /// The leader gives the lease to `node` if the epoch is still `epoch` (compare-and-set).
    Grant {
        node: u64,
        epoch: u64,
        reason: String,
        at_ms: u64,
        /// The renewal count the leader's decision was based on: a renewal applied since means
        /// the holder is alive, so the grant is stale. The epoch alone does not catch this
        /// (renewals keep it), e.g. a grant decided by a leader that was cut off (it saw no
        /// renewals), then forwarded to the new leader once the partition healed. `None`
        /// (entries written before this field): not checked.
        #[serde(default)]
        renewals: Option<u64>,
    },
    /// The holder renews at its epoch.
    Renew { node: u64, epoch: u64 },
    /// The holder reports its services up (for status and the failover duration).
    Activated {
        node: u64,
        epoch: u64,
        duration_ms: u64,
    },
    /// The holder gives up the lease after it has fenced itself (switchover, shutdown, drain,
    /// or a failed activation, with its reason).
    Release {
        node: u64,
        epoch: u64,
        failed: Option<String>,
    },
    /// The operator asks for a planned switchover (to `to`, or to any other eligible node).
    Switchover { to: Option<u64> },
    /// The operator keeps `node` out of (or lets it back into) the holder role.
    Drain { node: u64, drained: bool },
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseOutcome {
    Done,
    /// Compare-and-set or precondition failed: nothing changed.
    Stale(String),
}

impl fmt::Display for LeaseCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseCommand::Register { node, .. } => write!(f, "register {node}"),
            LeaseCommand::Unregister { node } => write!(f, "unregister {node}"),
            LeaseCommand::Grant { node, epoch, .. } => {
                write!(f, "grant {node} after epoch {epoch}")
            }
            LeaseCommand::Renew { node, epoch } => write!(f, "renew {node} at {epoch}"),
            LeaseCommand::Activated { node, epoch, .. } => write!(f, "activated {node} at {epoch}"),
            LeaseCommand::Release { node, epoch, .. } => write!(f, "release {node} at {epoch}"),
            LeaseCommand::Switchover { to } => write!(f, "switchover to {to:?}"),
            LeaseCommand::Drain { node, drained } => write!(f, "drain {node} {drained}"),
        }
    }
}

impl MailstoreState {
    /// Whether `node` may be given the lease.
    pub fn eligible(&self, node: u64) -> bool {
        self.candidates.contains_key(&node) && !self.drained.contains(&node)
    }

    /// Applies one command. Deterministic: same state and command, same result, everywhere.
    pub fn apply(&mut self, cmd: &LeaseCommand) -> LeaseOutcome {
        use LeaseOutcome::{Done, Stale};
        match cmd {
            LeaseCommand::Register {
                node,
                name,
                lmtp_addr,
            } => {
                let c = Candidate {
                    name: name.clone(),
                    lmtp_addr: *lmtp_addr,
                };
                self.candidates.insert(*node, c);
                self.failed.remove(node);
                Done
            }
            LeaseCommand::Unregister { node } => {
                self.candidates.remove(node);
                Done
            }
            LeaseCommand::Grant {
                node,
                epoch,
                reason,
                at_ms,
                renewals,
            } => {
                if *epoch != self.epoch {
                    return Stale(format!("epoch is {}, not {epoch}", self.epoch));
                }
                if renewals.is_some_and(|r| r != self.renewals) {
                    return Stale(format!(
                        "the holder renewed since the grant was decided ({} renewals, not {})",
                        self.renewals,
                        renewals.unwrap_or_default()
                    ));
                }
                if !self.eligible(*node) {
                    return Stale(format!("node {node} is not eligible"));
                }
                if let Some(Some(target)) = self.handover {
                    if target != *node && self.holder.is_none() {
                        return Stale(format!("a switchover to node {target} is pending"));
                    }
                }
                self.last_failover = Some(FailoverRecord {
                    epoch: self.epoch + 1,
                    from: self.holder,
                    to: *node,
                    reason: reason.clone(),
                    granted_at_ms: *at_ms,
                    duration_ms: None,
                });
                self.holder = Some(*node);
                self.epoch += 1;
                self.handover = None;
                self.active_epoch = None;
                Done
            }
            LeaseCommand::Renew { node, epoch } => {
                if self.holder != Some(*node) || self.epoch != *epoch {
                    return Stale(self.not_holder(*node, *epoch));
                }
                self.renewals = self.renewals.wrapping_add(1);
                Done
            }
            LeaseCommand::Activated {
                node,
                epoch,
                duration_ms,
            } => {
                if self.holder != Some(*node) || self.epoch != *epoch {
                    return Stale(self.not_holder(*node, *epoch));
                }
                self.active_epoch = Some(*epoch);
                if let Some(r) = &mut self.last_failover {
                    if r.epoch == *epoch {
                        r.duration_ms = Some(*duration_ms);
                    }
                }
                Done
            }
            LeaseCommand::Release {
                node,
                epoch,
                failed,
            } => {
                if self.holder != Some(*node) || self.epoch != *epoch {
                    return Stale(self.not_holder(*node, *epoch));
                }
                self.holder = None;
                self.active_epoch = None;
                if let Some(why) = failed {
                    self.failed.insert(*node, why.clone());
                }
                Done
            }
            LeaseCommand::Switchover { to } => {
                let Some(holder) = self.holder else {
                    return Stale("no node holds the mailstore".into());
                };
                if let Some(t) = to {
                    if *t == holder {
                        return Stale(format!("node {t} already holds the mailstore"));
                    }
                    if !self.eligible(*t) {
                        return Stale(format!(
                            "node {t} cannot take the mailstore (not a mailstore node, or drained)"
                        ));
                    }
                } else if !self
                    .candidates
                    .keys()
                    .any(|n| *n != holder && self.eligible(*n))
                {
                    return Stale("no other node can take the mailstore".into());
                }
                self.handover = Some(*to);
                Done
            }
            LeaseCommand::Drain { node, drained } => {
                if *drained {
                    self.drained.insert(*node);
                } else {
                    self.drained.remove(node);
                }
                Done
            }
        }
    }

    fn not_holder(&self, node: u64, epoch: u64) -> String {
        format!(
            "node {node} at epoch {epoch} does not hold the mailstore (holder {:?}, epoch {})",
            self.holder, self.epoch
        )
    }

    /// Whether the holder should hand over now (a switchover or a drain names it).
    pub fn holder_should_release(&self) -> bool {
        match self.holder {
            Some(h) => self.handover.is_some() || self.drained.contains(&h),
            None => false,
        }
    }

    /// The LMTP address of the holder, when it registered one.
    pub fn holder_lmtp(&self) -> Option<std::net::SocketAddr> {
        self.candidates.get(&self.holder?)?.lmtp_addr
    }

    /// The node the leader should grant to when the lease is free (or taken from a silent
    /// holder): the switchover target, else `preferred` nodes in order, skipping `exclude`.
    pub fn pick(&self, preferred: &[u64], exclude: Option<u64>) -> Option<u64> {
        if let Some(Some(t)) = self.handover {
            return self.eligible(t).then_some(t);
        }
        let ok = |n: &u64| Some(*n) != exclude && self.eligible(*n);
        preferred
            .iter()
            .copied()
            .find(|n| ok(n) && !self.failed.contains_key(n))
            .or_else(|| preferred.iter().copied().find(ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(s: &mut MailstoreState, n: u64) {
        let name = format!("n{n}");
        let cmd = LeaseCommand::Register {
            node: n,
            name,
            lmtp_addr: None,
        };
        assert_eq!(s.apply(&cmd), LeaseOutcome::Done);
    }

    fn grant(node: u64, epoch: u64) -> LeaseCommand {
        LeaseCommand::Grant {
            node,
            epoch,
            reason: "test".into(),
            at_ms: 1,
            renewals: None,
        }
    }

    #[test]
    fn a_grant_decided_before_a_renewal_is_stale() {
        let mut s = MailstoreState::default();
        reg(&mut s, 1);
        reg(&mut s, 2);
        s.apply(&grant(1, 0));
        let renew = LeaseCommand::Renew { node: 1, epoch: 1 };
        s.apply(&renew);
        let take = |renewals| LeaseCommand::Grant {
            node: 2,
            epoch: 1,
            reason: "node 1 stopped renewing".into(),
            at_ms: 1,
            renewals: Some(renewals),
        };
        // A leader cut off from the holder saw 1 renewal, then none for a whole lease; the
        // holder went on renewing through the majority's new leader.
        s.apply(&renew);
        assert!(matches!(s.apply(&take(1)), LeaseOutcome::Stale(_)));
        assert_eq!((s.holder, s.epoch), (Some(1), 1));
        // Decided on the current count: applied.
        assert_eq!(s.apply(&take(2)), LeaseOutcome::Done);
        assert_eq!((s.holder, s.epoch), (Some(2), 2));
        // Entries from before the field existed still apply (serde default).
        let old: LeaseCommand =
            serde_json::from_str(r#"{"Grant":{"node":1,"epoch":2,"reason":"r","at_ms":1}}"#)
                .unwrap();
        assert_eq!(s.apply(&old), LeaseOutcome::Done);
    }

    #[test]
    fn grants_are_compare_and_set_on_the_epoch() {
        let mut s = MailstoreState::default();
        assert!(
            matches!(s.apply(&grant(1, 0)), LeaseOutcome::Stale(_)),
            "unregistered"
        );
        reg(&mut s, 1);
        reg(&mut s, 2);
        assert_eq!(s.apply(&grant(1, 0)), LeaseOutcome::Done);
        assert_eq!((s.holder, s.epoch), (Some(1), 1));
        // A second grant based on the old epoch (an old leader's) changes nothing.
        assert!(matches!(s.apply(&grant(2, 0)), LeaseOutcome::Stale(_)));
        assert_eq!(s.holder, Some(1));
        // Renewals only from the holder at its epoch.
        let renew = |node, epoch| LeaseCommand::Renew { node, epoch };
        assert_eq!(s.apply(&renew(1, 1)), LeaseOutcome::Done);
        assert!(matches!(s.apply(&renew(2, 1)), LeaseOutcome::Stale(_)));
        assert!(matches!(s.apply(&renew(1, 0)), LeaseOutcome::Stale(_)));
        assert_eq!(s.renewals, 1);
        // Taken over: the old holder's renewal and release are stale.
        assert_eq!(s.apply(&grant(2, 1)), LeaseOutcome::Done);
        assert_eq!(s.last_failover.as_ref().unwrap().from, Some(1));
        assert!(matches!(s.apply(&renew(1, 1)), LeaseOutcome::Stale(_)));
        let release = LeaseCommand::Release {
            node: 1,
            epoch: 1,
            failed: None,
        };
        assert!(matches!(s.apply(&release), LeaseOutcome::Stale(_)));
        assert_eq!((s.holder, s.epoch), (Some(2), 2));
    }

    #[test]
    fn switchover_and_drain() {
        let mut s = MailstoreState::default();
        for n in 1..=3 {
            reg(&mut s, n);
        }
        let sw = |to| LeaseCommand::Switchover { to };
        assert!(
            matches!(s.apply(&sw(None)), LeaseOutcome::Stale(_)),
            "no holder"
        );
        s.apply(&grant(1, 0));
        assert!(matches!(s.apply(&sw(Some(1))), LeaseOutcome::Stale(_)));
        assert!(matches!(s.apply(&sw(Some(9))), LeaseOutcome::Stale(_)));
        assert_eq!(s.apply(&sw(Some(3))), LeaseOutcome::Done);
        assert!(s.holder_should_release());
        assert_eq!(s.pick(&[1, 2, 3], Some(1)), Some(3));
        s.apply(&LeaseCommand::Release {
            node: 1,
            epoch: 1,
            failed: None,
        });
        // While the switchover is pending, only its target may be granted.
        assert!(matches!(s.apply(&grant(2, 1)), LeaseOutcome::Stale(_)));
        assert_eq!(s.apply(&grant(3, 1)), LeaseOutcome::Done);
        assert_eq!(s.handover, None);
        // A drained holder is asked to release, and is never picked.
        s.apply(&LeaseCommand::Drain {
            node: 3,
            drained: true,
        });
        assert!(s.holder_should_release());
        assert_eq!(s.pick(&[3, 1], None), Some(1));
        s.apply(&LeaseCommand::Drain {
            node: 1,
            drained: true,
        });
        s.apply(&LeaseCommand::Drain {
            node: 2,
            drained: true,
        });
        assert_eq!(s.pick(&[1, 2, 3], None), None);
    }

    #[test]
    fn a_failed_node_is_offered_the_lease_last() {
        let mut s = MailstoreState::default();
        reg(&mut s, 1);
        reg(&mut s, 2);
        s.apply(&grant(1, 0));
        s.apply(&LeaseCommand::Release {
            node: 1,
            epoch: 1,
            failed: Some("mount failed".into()),
        });
        assert_eq!(s.pick(&[1, 2], None), Some(2));
        s.apply(&LeaseCommand::Drain {
            node: 2,
            drained: true,
        });
        assert_eq!(s.pick(&[1, 2], None), Some(1), "the only one left");
        reg(&mut s, 1);
        assert!(s.failed.is_empty(), "a restart clears it");
    }

    #[test]
    fn activation_records_the_failover_duration() {
        let mut s = MailstoreState::default();
        reg(&mut s, 1);
        s.apply(&grant(1, 0));
        let act = |epoch| LeaseCommand::Activated {
            node: 1,
            epoch,
            duration_ms: 1234,
        };
        assert!(matches!(s.apply(&act(0)), LeaseOutcome::Stale(_)));
        assert_eq!(s.apply(&act(1)), LeaseOutcome::Done);
        assert_eq!(s.active_epoch, Some(1));
        assert_eq!(s.last_failover.unwrap().duration_ms, Some(1234));
    }
}
