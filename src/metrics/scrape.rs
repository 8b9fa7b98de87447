//! The state figures, read at scrape time from the components that own them: Raft (through
//! `Cluster::figures`, plain numbers: only `cluster` imports openraft), the mailstore lease
//! (the replicated state every node holds, and this node's own role), the queue's counters
//! (kept in memory by the queue) and the store's usage (in memory, no I/O). Optional figures
//! (a store this node does not serve, a lease age while not holding) are absent rather than 0,
//! so sums across nodes stay right.

use std::sync::Mutex;

use prometheus::{GaugeVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::{gauge, gauge_vec, Metrics};
use crate::cluster::Cluster;
use crate::failover::Failover;
use crate::queue::Queue;
use crate::store::Store;

/// What a scrape reads.
pub struct Sources<'a> {
    pub cluster: &'a Cluster,
    /// This node's mailstore lease duty, if it has one.
    pub failover: Option<&'a Failover>,
    pub queue: Option<&'a Queue>,
    /// The store this node serves now.
    pub store: Option<Store>,
}

/// One scrape at a time: a scrape resets label sets before filling them and gathering.
pub(crate) static SCRAPE: Mutex<()> = Mutex::new(());

/// A gauge that is either present (one series, no labels) or absent.
pub(crate) struct Optional(GaugeVec);

impl Optional {
    fn new(r: &Registry, name: &str, help: &str) -> Optional {
        let g = GaugeVec::new(Opts::new(name, help), &[]).expect("valid metric definition");
        r.register(Box::new(g.clone()))
            .expect("metric names are unique");
        Optional(g)
    }

    fn set(&self, v: Option<f64>) {
        match v {
            Some(v) => self.0.with_label_values::<&str>(&[]).set(v),
            None => self.0.reset(),
        }
    }
}

pub(crate) struct RaftGauges {
    state: IntGaugeVec,
    term: IntGauge,
    leader: IntGauge,
    is_leader: IntGauge,
    member: IntGauge,
    voters: IntGauge,
    last_log: IntGauge,
    committed: IntGauge,
    applied: IntGauge,
    snapshot: IntGauge,
    matched: IntGaugeVec,
    lag: IntGaugeVec,
}

const RAFT_STATES: [&str; 5] = ["leader", "follower", "candidate", "learner", "shutdown"];

impl RaftGauges {
    pub(crate) fn new(r: &Registry) -> Self {
        RaftGauges {
            state: gauge_vec(
                r,
                "mailnode_raft_state",
                "1 for this node's Raft role (leader, follower, candidate, learner, shutdown), 0 for the others.",
                &["state"],
            ),
            term: gauge(r, "mailnode_raft_term", "Current Raft term."),
            leader: gauge(
                r,
                "mailnode_raft_leader_id",
                "Node id of the Raft leader this node knows of; 0 when none.",
            ),
            is_leader: gauge(r, "mailnode_raft_is_leader", "1 on the Raft leader."),
            member: gauge(
                r,
                "mailnode_raft_member",
                "1 when this node is in the membership of an initialized cluster.",
            ),
            voters: gauge(r, "mailnode_raft_voters", "Voting members in this node's view of the membership."),
            last_log: gauge(r, "mailnode_raft_last_log_index", "Index of the last entry in this node's Raft log."),
            committed: gauge(r, "mailnode_raft_committed_index", "Highest log index this node knows committed."),
            applied: gauge(r, "mailnode_raft_applied_index", "Highest log index applied to this node's state machine."),
            snapshot: gauge(r, "mailnode_raft_snapshot_index", "Last log index included in this node's latest snapshot."),
            matched: gauge_vec(
                r,
                "mailnode_raft_replication_matched_index",
                "On the leader: the highest log index each other member is known to hold (peer = node id).",
                &["peer"],
            ),
            lag: gauge_vec(
                r,
                "mailnode_raft_replication_lag_entries",
                "On the leader: entries each other member is behind the leader's last log index (peer = node id).",
                &["peer"],
            ),
        }
    }

    fn update(&self, c: &Cluster) {
        let f = c.figures();
        for s in RAFT_STATES {
            self.state
                .with_label_values(&[s])
                .set(i64::from(s == f.state));
        }
        self.term.set(int(f.term));
        self.leader.set(f.leader.map_or(0, int));
        self.is_leader.set(i64::from(f.state == "leader"));
        self.member.set(i64::from(f.member));
        self.voters.set(f.voters as i64);
        self.last_log.set(f.last_log_index.map_or(0, int));
        self.committed.set(f.committed.map_or(0, int));
        self.applied.set(f.applied.map_or(0, int));
        self.snapshot.set(f.snapshot.map_or(0, int));
        self.matched.reset();
        self.lag.reset();
        for (peer, matched, lag) in f.replication {
            let peer = peer.to_string();
            self.matched
                .with_label_values(&[&peer])
                .set(matched.map_or(0, int));
            if let Some(lag) = lag {
                self.lag.with_label_values(&[&peer]).set(int(lag));
            }
        }
    }
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) struct MailstoreGauges {
    holder: IntGauge,
    epoch: IntGauge,
    active: IntGauge,
    candidates: IntGauge,
    last_failover: Optional,
    last_failover_duration: Optional,
    role: IntGaugeVec,
    serving: IntGauge,
    volume: Optional,
    vip: Optional,
    lease_age: Optional,
    error: Optional,
}

const ROLES: [&str; 4] = ["standby", "activating", "active", "fencing"];

impl MailstoreGauges {
    pub(crate) fn new(r: &Registry) -> Self {
        MailstoreGauges {
            holder: gauge(
                r,
                "mailnode_mailstore_holder_id",
                "Node id holding the mailstore lease (replicated view); 0 when none.",
            ),
            epoch: gauge(
                r,
                "mailnode_mailstore_epoch",
                "Mailstore lease epoch (replicated view); +1 at every grant.",
            ),
            active: gauge(
                r,
                "mailnode_mailstore_active",
                "1 when the replicated state says the holder reported its services up at the current epoch.",
            ),
            candidates: gauge(
                r,
                "mailnode_mailstore_candidates",
                "Nodes registered to hold the mailstore, not drained.",
            ),
            last_failover: Optional::new(
                r,
                "mailnode_mailstore_last_failover_timestamp_seconds",
                "When the last lease grant was proposed (Unix time, the leader's clock).",
            ),
            last_failover_duration: Optional::new(
                r,
                "mailnode_mailstore_last_failover_duration_seconds",
                "Grant to services answering of the last failover, as the new holder reported it (replicated view).",
            ),
            role: gauge_vec(
                r,
                "mailnode_mailstore_role",
                "1 for this node's mailstore role (standby, activating, active, fencing); absent without [failover].",
                &["state"],
            ),
            serving: gauge(
                r,
                "mailnode_mailstore_serving",
                "1 when this node serves the mailstore now (store open, LMTP/IMAP/POP3 listening).",
            ),
            volume: Optional::new(
                r,
                "mailnode_mailstore_volume_mounted",
                "1 while this node has the mailstore volume taken (mounted, owner record written); absent without [failover].",
            ),
            vip: Optional::new(
                r,
                "mailnode_mailstore_vip_held",
                "1 while the virtual IP is on this node's interface; absent without a configured VIP.",
            ),
            lease_age: Optional::new(
                r,
                "mailnode_mailstore_lease_age_seconds",
                "On the holder: age of its last committed renewal (fences itself at lease_ms - safety_margin_ms).",
            ),
            error: Optional::new(
                r,
                "mailnode_mailstore_error",
                "1 when this node's last mailstore step failed (mount, VIP, services, fence agent); cleared by a successful activation.",
            ),
        }
    }

    fn update(&self, s: &Sources<'_>) {
        let st = s.cluster.mailstore().borrow().clone();
        self.holder.set(st.holder.map_or(0, int));
        self.epoch.set(int(st.epoch));
        self.active.set(i64::from(
            st.holder.is_some() && st.active_epoch == Some(st.epoch),
        ));
        self.candidates.set(
            st.candidates
                .keys()
                .filter(|id| !st.drained.contains(id))
                .count() as i64,
        );
        let last = st.last_failover.as_ref();
        self.last_failover
            .set(last.map(|r| r.granted_at_ms as f64 / 1000.0));
        self.last_failover_duration.set(
            last.and_then(|r| r.duration_ms)
                .map(|ms| ms as f64 / 1000.0),
        );
        match s.failover {
            Some(f) => {
                let role = f.role();
                for r in ROLES {
                    self.role
                        .with_label_values(&[r])
                        .set(i64::from(r == role.state));
                }
                self.serving.set(i64::from(role.state == "active"));
                self.volume.set(Some(f64::from(u8::from(role.volume))));
                self.vip.set(role.vip.map(|v| f64::from(u8::from(v))));
                self.lease_age
                    .set(role.lease_age_ms.map(|ms| ms as f64 / 1000.0));
                self.error
                    .set(Some(f64::from(u8::from(role.last_error.is_some()))));
            }
            None => {
                self.role.reset();
                self.serving.set(i64::from(s.store.is_some()));
                self.volume.set(None);
                self.vip.set(None);
                self.lease_age.set(None);
                self.error.set(None);
            }
        }
    }
}

pub(crate) struct QueueGauges {
    messages: IntGaugeVec,
    oldest: IntGauge,
}

impl QueueGauges {
    pub(crate) fn new(r: &Registry) -> Self {
        QueueGauges {
            messages: gauge_vec(
                r,
                "mailnode_queue_messages",
                "Messages in this node's queue by state: active (being delivered), waiting (for a first attempt or a retry), held.",
                &["state"],
            ),
            oldest: gauge(
                r,
                "mailnode_queue_oldest_message_age_seconds",
                "Age of the oldest message in this node's queue; 0 when empty.",
            ),
        }
    }

    fn update(&self, q: &Queue) {
        let st = q.stats();
        self.messages
            .with_label_values(&["active"])
            .set(st.active as i64);
        self.messages
            .with_label_values(&["waiting"])
            .set(st.waiting as i64);
        self.messages
            .with_label_values(&["held"])
            .set(st.held as i64);
        self.oldest.set(st.oldest_age_secs.map_or(0, int));
    }
}

pub(crate) struct StoreGauges {
    users: Optional,
    messages: Optional,
    bytes: Optional,
    over_quota: IntGaugeVec,
}

/// Quota fill levels reported by `mailnode_store_users_over_quota_ratio`.
const QUOTA_LEVELS: [(&str, f64); 3] = [("0.8", 0.8), ("0.9", 0.9), ("1", 1.0)];

impl StoreGauges {
    pub(crate) fn new(r: &Registry) -> Self {
        StoreGauges {
            users: Optional::new(
                r,
                "mailnode_store_users",
                "Users whose mailboxes the store has loaded since it was opened (on the node serving the store).",
            ),
            messages: Optional::new(
                r,
                "mailnode_store_messages",
                "Messages in the store, summed over those users.",
            ),
            bytes: Optional::new(
                r,
                "mailnode_store_bytes",
                "Bytes of messages in the store, summed over those users.",
            ),
            over_quota: gauge_vec(
                r,
                "mailnode_store_users_over_quota_ratio",
                "Users with a quota using at least this fraction of it (ratio = 0.8, 0.9, 1).",
                &["ratio"],
            ),
        }
    }

    fn update(&self, c: &Cluster, store: Option<&Store>) {
        let Some(store) = store else {
            self.users.set(None);
            self.messages.set(None);
            self.bytes.set(None);
            self.over_quota.reset();
            return;
        };
        let usage = store.usage_snapshot();
        let (mut messages, mut bytes) = (0u64, 0u64);
        let mut over = [0i64; QUOTA_LEVELS.len()];
        let dir = c.read_directory();
        for (user, u) in &usage {
            messages = messages.saturating_add(u.messages);
            bytes = bytes.saturating_add(u.bytes);
            let quota = dir.user(user).map_or(0, |u| u.quota_bytes);
            if quota > 0 {
                let ratio = u.bytes as f64 / quota as f64;
                for (i, (_, level)) in QUOTA_LEVELS.iter().enumerate() {
                    if ratio >= *level {
                        over[i] += 1;
                    }
                }
            }
        }
        drop(dir);
        self.users.set(Some(usage.len() as f64));
        self.messages.set(Some(messages as f64));
        self.bytes.set(Some(bytes as f64));
        for (i, (label, _)) in QUOTA_LEVELS.iter().enumerate() {
            self.over_quota.with_label_values(&[label]).set(over[i]);
        }
    }
}

/// Refreshes every state figure from `s`.
pub(crate) fn update(m: &Metrics, s: &Sources<'_>) {
    m.raft.update(s.cluster);
    m.mailstore.update(s);
    if let Some(q) = s.queue {
        m.queue.update(q);
    }
    m.store.update(s.cluster, s.store.as_ref());
}
