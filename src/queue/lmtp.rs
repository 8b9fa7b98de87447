//! The LMTP delivery agent (RFC 2033): local recipients go to the active mailstore of their
//! `mail_host` group, one transaction per batch, one reply per recipient.
//!
//! Which address serves a group is asked at every attempt through a resolver closure (in dev
//! mode, this node's own LMTP port), so deliveries follow the mailstore across a failover.
//! Anything that stops the session — no active mailstore, connection refused, a refused
//! greeting or LHLO, a dropped connection — is a temporary failure marked `unreachable`, which
//! the scheduler retries on the short LMTP interval and never bounces before the lifetime.
//!
//! Security note: the mailstore is trusted infrastructure, but its replies are still parsed
//! with the bounded parser; this agent never decides delivery without its per-recipient reply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::client::{transaction, Session};
use super::config::QueueConfig;
use super::transport::{BoxFuture, Delivery, DeliveryOutcome, Destination, RcptStatus, Transport};
use super::wire::Capabilities;

/// Gives the LMTP address of a mailstore group's active node, or `None` when none is active.
pub type LmtpResolver = Arc<dyn Fn(&str) -> Option<SocketAddr> + Send + Sync>;

/// Delivers [`Destination::Lmtp`] batches.
pub struct LmtpTransport {
    resolve: LmtpResolver,
    hostname: String,
    /// Names this queue in delivery ids (`<origin>.<queue id>`): queue ids are unique per
    /// node, so the store can tell one node's retry from another node's message.
    origin: String,
    connect_timeout: Duration,
    timeout: Duration,
    data_timeout: Duration,
}

impl LmtpTransport {
    /// An agent using `config`'s hostname and timeouts, asking `resolve` for each group.
    /// `origin` names this node's queue in delivery ids (the node id; unique in the cluster).
    pub fn new(config: &QueueConfig, resolve: LmtpResolver, origin: &str) -> LmtpTransport {
        LmtpTransport {
            resolve,
            hostname: config.hostname.clone(),
            origin: origin.to_string(),
            connect_timeout: config.connect_timeout(),
            timeout: config.lmtp_command_timeout(),
            data_timeout: config.data_timeout(),
        }
    }

    async fn run(&self, d: &Delivery) -> DeliveryOutcome {
        let n = d.recipients.len();
        let temp = |detail: &str, remote: Option<&str>| {
            DeliveryOutcome::all(n, RcptStatus::Temporary, detail, remote, true)
        };
        let Destination::Lmtp(group) = &d.destination else {
            return temp(
                "4.3.5 internal error: LMTP agent given a non-LMTP destination",
                None,
            );
        };
        let Some(addr) = (self.resolve)(group) else {
            return temp(
                &format!("4.4.3 no active mailstore for group {group}"),
                None,
            );
        };
        let peer = addr.to_string();
        let (mut s, greeting) =
            match Session::connect(addr, peer.clone(), self.connect_timeout, self.timeout).await {
                Ok(x) => x,
                Err(e) => return temp(&format!("4.4.1 mailstore {group}: {e}"), Some(&peer)),
            };
        if !greeting.is_ok() {
            s.quit().await;
            return temp(&greeting.one_line(), Some(&peer));
        }
        let caps = match s.command(&format!("LHLO {}", self.hostname)).await {
            Ok(r) if r.is_ok() => Capabilities::parse(&r),
            Ok(r) => {
                s.quit().await;
                return temp(&r.one_line(), Some(&peer));
            }
            Err(e) => return temp(&format!("4.4.2 mailstore {group}: {e}"), Some(&peer)),
        };
        let delivery_id = format!("{}.{}", self.origin, d.id);
        let out = transaction(
            &mut s,
            d,
            &caps,
            true,
            RcptStatus::Delivered,
            self.data_timeout,
            Some(&delivery_id),
        )
        .await;
        s.quit().await;
        // A transaction that broke before anything was handed over looks like the mailstore
        // going away (failover): let the scheduler pause the whole group briefly.
        let unreachable = out.may_try_elsewhere
            && out
                .results
                .iter()
                .all(|r| r.status == RcptStatus::Temporary);
        DeliveryOutcome {
            results: out.results,
            unreachable,
            keyed: caps.xdelivery,
        }
    }
}

impl Transport for LmtpTransport {
    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, DeliveryOutcome> {
        Box::pin(self.run(delivery))
    }
}
