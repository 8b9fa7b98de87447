//! The mailnode side: one real `mailnode` process (the test harness's, from
//! `tests/common/mod.rs`: a one-node cluster that bootstraps itself, its own CA and node
//! certificate) on 127.0.201.1 with the SMTP MX on port 2525, its queue in the node's data
//! directory, and a message store with its LMTP server on 127.0.201.1:2424. Local mail takes
//! the production path: SMTP session → queue (fsynced) → LMTP client → LMTP server → store
//! (fsynced), all in the one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::common::{self, TestCluster, Tuning};
use crate::DOMAIN;

/// The side's 127.0.N.0/24.
const NET: u8 = 201;

pub struct MailnodeSide {
    /// The node process; dropping it kills the node.
    cluster: TestCluster,
    /// The message store's root.
    store: PathBuf,
}

impl MailnodeSide {
    /// Starts the node with `max_connections` as both `mail.max_connections` and
    /// `mail.max_per_ip` (every benchmark client comes from 127.0.0.1), creates the domain and
    /// `users`, and waits until the MX answers.
    pub async fn start(users: &[String], max_connections: usize) -> MailnodeSide {
        MailnodeSide::start_with(users, max_connections, "").await
    }

    /// [`MailnodeSide::start`] with `more` appended to the node's configuration (whole TOML
    /// sections, e.g. `[metrics]`).
    pub async fn start_with(users: &[String], max_connections: usize, more: &str) -> MailnodeSide {
        let mut cluster = TestCluster::new(NET, 1, Tuning::default());
        let node = &cluster.nodes[0];
        let store = node.dir.join("mailstore");
        let extra = format!(
            r#"
[mail]
mx_listen = "{ip}:2525"
lmtp_addr = "{ip}:2424"
max_connections = {max_connections}
max_per_ip = {max_connections}

[smtp]
spool_dir = "{spool}"

[mailstore]
root = "{root}"
lmtp_listen = "{ip}:2424"
create_if_missing = true
{more}
"#,
            ip = node.ip,
            spool = node.data_dir().join("spool").display(),
            root = store.display(),
        );
        common::set_extra_config(&cluster, 1, &extra);
        cluster.node(1).start();
        let api = cluster.api(1);
        api.wait_ready(Duration::from_secs(60)).await;
        let (s, v) = api
            .call("POST", "/api/domains", Some(json!({ "name": DOMAIN })))
            .await;
        assert_eq!(s, 200, "adding the domain: {v}");
        for u in users {
            // A hash, not a password: the benchmark does not time argon2.
            let user =
                json!({ "address": u, "password_hash": "{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=" });
            let (s, v) = api.call("POST", "/api/users", Some(user)).await;
            assert_eq!(s, 201, "adding {u}: {v}");
        }
        let side = MailnodeSide { cluster, store };
        crate::wait_for_smtp(side.mx(), Duration::from_secs(30)).await;
        side
    }

    /// The SMTP MX.
    pub fn mx(&self) -> SocketAddr {
        format!("{}:2525", self.cluster.nodes[0].ip)
            .parse()
            .expect("MX address")
    }

    /// The node process.
    pub fn roots(&self) -> Vec<u32> {
        vec![self.cluster.nodes[0]
            .child
            .as_ref()
            .expect("node running")
            .id()]
    }

    /// Counts the message files in every mailbox: `<store>/users/<shard>/<user>/mbox/<id>/msg/*`.
    /// A file is there once the store has fsynced and renamed it, just before the index record
    /// and the LMTP `250`.
    pub fn in_mailboxes(&self) -> Arc<dyn Fn() -> usize + Send + Sync> {
        let users = self.store.join("users");
        Arc::new(move || {
            let mut n = 0;
            for shard in entries(&users) {
                for user in entries(&shard) {
                    for mbox in entries(&user.join("mbox")) {
                        n += entries(&mbox.join("msg")).len();
                    }
                }
            }
            n
        })
    }

    /// Whether the queue holds no message (no message or envelope file left in `<data>/queue`).
    pub fn queue_empty(&self) -> bool {
        !entries(&self.cluster.nodes[0].data_dir().join("queue"))
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "msg" || e == "env"))
    }

    /// The node's `/metrics` text (for benches/metrics_cost.rs).
    #[allow(dead_code)]
    pub async fn metrics_text(&self) -> String {
        let (status, body) = self.cluster.api(1).call("GET", "/metrics", None).await;
        assert_eq!(status, 200, "/metrics: {body}");
        body.as_str().unwrap_or_default().to_string()
    }

    /// The node's log, for a failure report.
    pub fn log_tail(&self) -> String {
        let log = self.cluster.nodes[0].log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// The entries of a directory (none if it does not exist, or not yet).
pub fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}
