//! The LMTP delivery agent (RFC 2033): local recipients go to the active mailstore of their
//! `mail_host` group, one transaction per batch, one reply per recipient.
//!
//! Which address serves a group is asked at every attempt through a resolver closure (in dev
//! mode, this node's own LMTP port), so deliveries follow the mailstore across a failover.
//! Anything that stops the session — no active mailstore, connection refused, a refused
//! greeting or LHLO, a dropped connection — is a temporary failure marked `unreachable`, which
//! the scheduler retries on the short LMTP interval and never bounces before the lifetime.
//!
//! Sessions are reused: after a transaction that ran to its end without a temporary failure
//! the session waits, idle, for
//! the next delivery to the same address (at most [`MAX_IDLE_PER_ADDR`] per address and
//! [`MAX_IDLE`] in all, each for at most [`IDLE_FOR`]; all of an address's are closed when it
//! refuses a new connection), saving the connection, greeting and LHLO of most deliveries. A reused
//! session that turns out dead (the mailstore closed it, failed over, or restarted) before it
//! handed anything over is dropped and the delivery made again on a new connection; nothing
//! can be delivered twice by that (and keyed deliveries are idempotent anyway).
//!
//! Security note: the mailstore is trusted infrastructure, but its replies are still parsed
//! with the bounded parser; this agent never decides delivery without its per-recipient reply.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::{transaction, Session};
use super::config::QueueConfig;
use super::transport::{BoxFuture, Delivery, DeliveryOutcome, Destination, RcptStatus, Transport};
use super::wire::Capabilities;

/// Gives the LMTP address of a mailstore group's active node, or `None` when none is active.
pub type LmtpResolver = Arc<dyn Fn(&str) -> Option<SocketAddr> + Send + Sync>;

/// Most idle sessions kept (in all, every address together).
pub const MAX_IDLE: usize = 32;
/// Most idle sessions kept per address: idle sessions count against the mailstore's per-IP
/// connection limit (`mail.max_per_ip`, 20 by default).
pub const MAX_IDLE_PER_ADDR: usize = 4;
/// How long an idle session is kept: well below the LMTP server's idle timeout.
pub const IDLE_FOR: Duration = Duration::from_secs(10);

/// An idle session: its address, the session, its LHLO capabilities, since when idle.
type Idle = (SocketAddr, Session, Capabilities, Instant);

/// Delivers [`Destination::Lmtp`] batches.
pub struct LmtpTransport {
    idle: Mutex<Vec<Idle>>,
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
            idle: Mutex::new(Vec::new()),
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
        let delivery_id = format!("{}.{}", self.origin, d.id);
        let mut reused = self.take_idle(addr);
        let (s, caps, out) = loop {
            let was_idle = reused.is_some();
            let (mut s, caps) = match reused.take() {
                Some(x) => x,
                None => match self.open(addr, &peer, group).await {
                    Ok(x) => x,
                    Err(detail) => return temp(&detail, Some(&peer)),
                },
            };
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
            let nothing_handed_over = out.may_try_elsewhere
                && out
                    .results
                    .iter()
                    .all(|r| r.status == RcptStatus::Temporary);
            if was_idle && nothing_handed_over {
                // A dead idle session: once more on a new connection.
                continue;
            }
            break (s, caps, out);
        };
        let keyed = caps.xdelivery;
        // A temporary failure may be the session's own (a mailstore that fenced itself answers
        // 451 on the sessions it still has): such a session is never reused.
        let healthy = out.clean
            && out
                .results
                .iter()
                .all(|r| r.status != RcptStatus::Temporary);
        if healthy {
            self.put_idle(addr, s, caps);
        } else {
            s.quit().await;
        }
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
            keyed,
        }
    }
}

impl LmtpTransport {
    /// A new session to `addr`: connect, greeting, LHLO. `Err` is why not, for the
    /// recipients' temporary failure.
    async fn open(
        &self,
        addr: SocketAddr,
        peer: &str,
        group: &str,
    ) -> Result<(Session, Capabilities), String> {
        let (mut s, greeting) =
            Session::connect(addr, peer.to_string(), self.connect_timeout, self.timeout)
                .await
                .map_err(|e| format!("4.4.1 mailstore {group}: {e}"))?;
        if !greeting.is_ok() {
            // Typically `421 too many connections from your address`: our own idle sessions
            // may be what fills the server's per-IP limit, so let them go.
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(a, ..)| *a != addr);
            s.quit().await;
            return Err(greeting.one_line());
        }
        match s.command(&format!("LHLO {}", self.hostname)).await {
            Ok(r) if r.is_ok() => Ok((s, Capabilities::parse(&r))),
            Ok(r) => {
                s.quit().await;
                Err(r.one_line())
            }
            Err(e) => Err(format!("4.4.2 mailstore {group}: {e}")),
        }
    }

    /// An idle session to `addr` that has not waited too long (older ones are closed).
    fn take_idle(&self, addr: SocketAddr) -> Option<(Session, Capabilities)> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|(_, _, _, since)| since.elapsed() < IDLE_FOR);
        let i = idle.iter().rposition(|(a, ..)| *a == addr)?;
        let (_, s, caps, _) = idle.swap_remove(i);
        Some((s, caps))
    }

    /// Keeps a session that finished its transaction for the next delivery to `addr`.
    fn put_idle(&self, addr: SocketAddr, s: Session, caps: Capabilities) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let here = idle.iter().filter(|(a, ..)| *a == addr).count();
        if idle.len() < MAX_IDLE && here < MAX_IDLE_PER_ADDR {
            idle.push((addr, s, caps, Instant::now()));
        }
    }
}

impl Transport for LmtpTransport {
    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, DeliveryOutcome> {
        Box::pin(self.run(delivery))
    }
}
