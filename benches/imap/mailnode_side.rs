//! The mailnode side: one real `mailnode` process (the test harness's, from
//! `tests/common/mod.rs`: a one-node cluster that bootstraps itself, its own CA and node
//! certificate) on 127.0.202.1 serving a message store with LMTP on :2424, IMAP on :2143 and
//! POP3 on :2110, plaintext logins allowed (loopback, as Dovecot's side).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{self, TestCluster, Tuning};
use crate::{DOMAIN, IMAP_PORT, LMTP_PORT, POP3_PORT};

/// The side's 127.0.N.0/24; the node is .1.
const NET: u8 = 202;

pub struct MailnodeSide {
    /// The node process; dropping it kills the node.
    cluster: TestCluster,
    ip: String,
}

impl MailnodeSide {
    /// Starts the node with `max_connections` as both `mail.max_connections` and
    /// `mail.max_per_ip` (the limits of the LMTP, IMAP and POP3 listeners; every benchmark
    /// client comes from 127.0.0.1), creates the domain and the users with their argon2id
    /// hashes, and waits until IMAP answers.
    pub async fn start(users: &[(String, String)], max_connections: usize) -> MailnodeSide {
        let mut cluster = TestCluster::new(NET, 1, Tuning::default());
        let node = &cluster.nodes[0];
        let ip = node.ip.clone();
        let extra = format!(
            r#"
[mail]
max_connections = {max_connections}
max_per_ip = {max_connections}

[mailstore]
root = "{root}"
lmtp_listen = "{ip}:{LMTP_PORT}"
imap_listen = "{ip}:{IMAP_PORT}"
pop3_listen = "{ip}:{POP3_PORT}"
allow_plaintext_login = true
create_if_missing = true

[imap]
hostname = "imap.bench.example"
"#,
            root = node.dir.join("mailstore").display(),
        );
        common::set_extra_config(&cluster, 1, &extra);
        cluster.node(1).start();
        let side = MailnodeSide { cluster, ip };
        side.wait_up().await;
        let api = side.cluster.api(1);
        let (s, v) = api
            .call("POST", "/api/domains", Some(json!({ "name": DOMAIN })))
            .await;
        assert_eq!(s, 200, "adding the domain: {v}");
        for (address, hash) in users {
            let user = json!({ "address": address, "password_hash": hash });
            let (s, v) = api.call("POST", "/api/users", Some(user)).await;
            assert_eq!(s, 201, "adding {address}: {v}");
        }
        side
    }

    /// Waits until the admin API is ready and IMAP greets.
    async fn wait_up(&self) {
        self.cluster
            .api(1)
            .wait_ready(Duration::from_secs(60))
            .await;
        crate::wait_for_greeting(
            self.imap(),
            "mailnode IMAP",
            Duration::from_secs(30),
            || self.log_tail(),
        )
        .await;
    }

    /// SIGTERM, wait for the exit, start again from the same data: the process that serves
    /// the measurements has not handled the delivery.
    pub async fn restart(&mut self) {
        let t = Instant::now();
        let status = self.cluster.node(1).terminate(Duration::from_secs(60));
        assert!(status.success(), "mailnode exited with {status} on SIGTERM");
        self.cluster.node(1).start();
        self.wait_up().await;
        println!(
            "  restarted in {}",
            crate::measure::fmt_duration(t.elapsed())
        );
    }

    fn addr(&self, port: u16) -> SocketAddr {
        format!("{}:{port}", self.ip).parse().expect("address")
    }
    pub fn imap(&self) -> SocketAddr {
        self.addr(IMAP_PORT)
    }
    pub fn pop3(&self) -> SocketAddr {
        self.addr(POP3_PORT)
    }
    pub fn lmtp(&self) -> SocketAddr {
        self.addr(LMTP_PORT)
    }

    /// The node process.
    pub fn roots(&self) -> Vec<u32> {
        vec![self.cluster.nodes[0]
            .child
            .as_ref()
            .expect("node running")
            .id()]
    }

    /// The node's log, for a failure report.
    pub fn log_tail(&self) -> String {
        let log = self.cluster.nodes[0].log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}
