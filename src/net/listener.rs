//! The accept loop: admission (limits), session tasks, and the drain at shutdown.
//!
//! Its job is to turn an already-bound `TcpListener` into sessions of one [`Protocol`] and to
//! account for every one of them until it ends. It never reads from or writes to a client
//! itself, never panics on an accept error, and never returns while a session it started is
//! still running.
//!
//! Security note: admission happens before any byte is read or any TLS work is done, so a
//! client over its limit costs one task for at most [`REJECT_TIMEOUT`], and at most
//! `REJECT_SLOTS` such tasks exist at once; beyond that, connections are simply closed.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tracing::Instrument;

use super::{Conn, ListenerConfig, Protocol, RejectReason, SessionCtx, Shutdown, TlsMode};

/// How long a rejection (TLS handshake included, on implicit-TLS listeners) may take.
pub const REJECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Rejections in flight at once per listener. Enough to tell a burst of honest clients why; a
/// flood beyond it gets its connections closed without a word.
const REJECT_SLOTS: usize = 64;

/// Backoff after an accept error that is not the client's fault (EMFILE, ENFILE, ENOBUFS…):
/// from the first to the last value, doubling.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// A listener's counters, shared with whoever wants to export them.
#[derive(Clone, Debug, Default)]
pub struct ListenerStats {
    inner: Arc<StatsInner>,
}

#[derive(Debug, Default)]
struct StatsInner {
    active: AtomicUsize,
    accepted: AtomicU64,
    rejected: AtomicU64,
}

impl ListenerStats {
    /// Sessions running now (TLS handshakes in progress included).
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::Relaxed)
    }

    /// Connections admitted since the listener started.
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }

    /// Connections refused by a limit since the listener started.
    pub fn rejected(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }
}

/// Accepts connections on `listener` and runs a `handler` session for each until `shutdown` is
/// triggered; then stops accepting (closing the socket), lets sessions say their goodbyes, aborts
/// those still running at the shutdown deadline, and returns once every session has ended.
pub async fn serve<P: Protocol>(
    listener: TcpListener,
    cfg: ListenerConfig,
    handler: Arc<P>,
    shutdown: Shutdown,
) {
    let name: Arc<str> = cfg.name.as_str().into();
    let listen_addr = listener.local_addr().ok();
    tracing::info!(listener = %name, addr = ?listen_addr, "listening");
    let limits = Limits::new(&cfg);
    let metrics = crate::metrics::listener(&name);
    let signal = shutdown.signal();
    let mut sessions = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF.0;

    loop {
        let accepted = tokio::select! {
            biased;
            () = signal.triggered() => break,
            Some(done) = sessions.join_next(), if !sessions.is_empty() => {
                log_join(&name, done);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => {
                backoff = ACCEPT_BACKOFF.0;
                conn
            }
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                tracing::warn!(listener = %name, error = %e, retry_in = ?backoff, "accept failed");
                tokio::select! {
                    () = signal.triggered() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        let local = match tcp.local_addr() {
            Ok(local) => local,
            // The socket died between accept and here; nothing to serve.
            Err(_) => continue,
        };
        // Mail protocols are request/response: Nagle would only delay replies.
        let _ = tcp.set_nodelay(true);

        match limits.admit(peer.ip()) {
            Ok(admission) => {
                let open = metrics.opened();
                let ctx = SessionCtx::new(peer, local, name.clone(), signal.clone());
                let span =
                    tracing::info_span!("session", id = ctx.id, listener = %name, peer = %peer);
                let task =
                    run_session(tcp, cfg.tls.clone(), cfg.idle_timeout, handler.clone(), ctx);
                sessions.spawn(
                    async move {
                        let (_admission, _open) = (admission, open);
                        task.await
                    }
                    .instrument(span),
                );
            }
            Err(reason) => {
                limits.stats.inner.rejected.fetch_add(1, Ordering::Relaxed);
                metrics.rejected();
                let Ok(slot) = limits.reject_slots.clone().try_acquire_owned() else {
                    tracing::debug!(listener = %name, %peer, %reason, "rejected silently");
                    continue;
                };
                let span = tracing::debug_span!("reject", listener = %name, peer = %peer, %reason);
                let task = run_reject(tcp, cfg.tls.clone(), handler.clone(), reason);
                sessions.spawn(
                    async move {
                        let _slot = slot;
                        task.await
                    }
                    .instrument(span),
                );
            }
        }
    }

    // Free the port at once: during a failover the next holder may be binding it.
    drop(listener);
    drain(&name, sessions, &shutdown).await;
    tracing::info!(listener = %name, "stopped");
}

async fn run_session<P: Protocol>(
    tcp: TcpStream,
    tls: TlsMode,
    idle_timeout: Duration,
    handler: Arc<P>,
    ctx: SessionCtx,
) {
    let conn = match tls {
        TlsMode::Plain => Conn::plain(tcp, idle_timeout),
        TlsMode::StartTls(config) => Conn::with_starttls(tcp, idle_timeout, config),
        TlsMode::Implicit(config) => {
            tokio::select! {
                conn = Conn::accept_tls(tcp, idle_timeout, config) => match conn {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                },
                () = ctx.shutdown.triggered() => return,
            }
        }
    };
    tracing::debug!(tls = conn.is_tls(), "session started");
    handler.serve(conn, ctx).await;
    tracing::debug!("session ended");
}

async fn run_reject<P: Protocol>(
    tcp: TcpStream,
    tls: TlsMode,
    handler: Arc<P>,
    reason: RejectReason,
) {
    let work = async {
        let conn = match tls {
            // The client expects TLS from the first byte; a plaintext line would be noise.
            TlsMode::Implicit(config) => Conn::accept_tls(tcp, REJECT_TIMEOUT, config).await?,
            TlsMode::Plain | TlsMode::StartTls(_) => Conn::plain(tcp, REJECT_TIMEOUT),
        };
        handler.reject(conn, reason).await;
        Ok::<_, io::Error>(())
    };
    match tokio::time::timeout(REJECT_TIMEOUT, work).await {
        Ok(Ok(())) => tracing::debug!("rejected"),
        Ok(Err(e)) => tracing::debug!(error = %e, "rejection failed"),
        Err(_) => tracing::debug!("rejection timed out"),
    }
}

/// Waits for sessions until the shutdown deadline (following it if it moves earlier), then
/// aborts the rest and waits for them to unwind.
async fn drain(name: &str, mut sessions: JoinSet<()>, shutdown: &Shutdown) {
    if !sessions.is_empty() {
        tracing::info!(listener = %name, sessions = sessions.len(), "draining");
    }
    let mut deadline_rx = shutdown.subscribe();
    loop {
        let deadline = deadline_rx
            .borrow_and_update()
            .unwrap_or_else(|| Instant::now() + super::DEFAULT_GRACE);
        tokio::select! {
            done = sessions.join_next() => match done {
                Some(done) => log_join(name, done),
                None => return,
            },
            () = tokio::time::sleep_until(deadline) => break,
            Ok(()) = deadline_rx.changed() => {}
        }
    }
    tracing::warn!(
        listener = %name,
        sessions = sessions.len(),
        "shutdown grace period over; aborting the remaining sessions"
    );
    sessions.abort_all();
    while let Some(done) = sessions.join_next().await {
        log_join(name, done);
    }
}

fn log_join(name: &str, done: Result<(), JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(listener = %name, "session panicked; the bug is in its protocol");
        }
    }
}

/// Accept errors that concern one connection only (the client gave up during the handshake):
/// nothing to back off from.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// The admission state of one listener.
struct Limits {
    /// `max_connections` permits; `None` when unlimited.
    connections: Option<Arc<Semaphore>>,
    /// `max_per_ip`; 0 when unlimited.
    max_per_ip: usize,
    /// Open sessions per client address key (see [`limit_key`]). Entries at zero are removed,
    /// so its size is bounded by the number of open sessions.
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// Bounds concurrent rejections.
    reject_slots: Arc<Semaphore>,
    stats: ListenerStats,
}

/// Proof of admission, held by the session task: dropping it (session end or abort) returns the
/// connection slot, the per-address count and the active counter.
struct Admission {
    _permit: Option<OwnedSemaphorePermit>,
    _ip: Option<IpGuard>,
    stats: ListenerStats,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.stats.inner.active.fetch_sub(1, Ordering::Relaxed);
    }
}

struct IpGuard {
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
    key: IpAddr,
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl Limits {
    fn new(cfg: &ListenerConfig) -> Self {
        Limits {
            connections: (cfg.max_connections > 0).then(|| {
                Arc::new(Semaphore::new(
                    cfg.max_connections.min(Semaphore::MAX_PERMITS),
                ))
            }),
            max_per_ip: cfg.max_per_ip,
            per_ip: Arc::default(),
            reject_slots: Arc::new(Semaphore::new(REJECT_SLOTS)),
            stats: cfg.stats.clone(),
        }
    }

    fn admit(&self, ip: IpAddr) -> Result<Admission, RejectReason> {
        let ip_guard = if self.max_per_ip > 0 {
            let key = limit_key(ip);
            let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let count = map.entry(key).or_insert(0);
            if *count >= self.max_per_ip {
                return Err(RejectReason::TooManyFromAddress);
            }
            *count += 1;
            Some(IpGuard {
                map: self.per_ip.clone(),
                key,
            })
        } else {
            None
        };
        let permit = match &self.connections {
            Some(sem) => Some(
                sem.clone()
                    .try_acquire_owned()
                    .map_err(|_| RejectReason::TooManyConnections)?,
            ),
            None => None,
        };
        self.stats.inner.active.fetch_add(1, Ordering::Relaxed);
        self.stats.inner.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(Admission {
            _permit: permit,
            _ip: ip_guard,
            stats: self.stats.clone(),
        })
    }
}

/// The key a client address is counted under: IPv4 as is (also when mapped into IPv6 by a
/// dual-stack socket), IPv6 by /64 network.
fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, max_per_ip: usize) -> Limits {
        let mut cfg = ListenerConfig::new("t");
        cfg.max_connections = max_connections;
        cfg.max_per_ip = max_per_ip;
        Limits::new(&cfg)
    }

    #[test]
    fn per_address_and_global_limits_release_on_drop() {
        let l = limits(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).err(), Some(RejectReason::TooManyFromAddress));
        let _b1 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).err(), Some(RejectReason::TooManyConnections));
        assert_eq!(l.stats.active(), 3);
        drop(a1);
        assert_eq!(l.stats.active(), 2);
        let _a3 = l.admit(a).unwrap();
        // A refused global admission does not leak a per-address count.
        assert_eq!(l.per_ip.lock().unwrap().get(&b), Some(&1));
    }

    #[test]
    fn zero_disables_a_limit_and_map_entries_are_removed() {
        let l = limits(0, 0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..100).map(|_| l.admit(ip).unwrap()).collect();
        drop(held);
        let l = limits(0, 5);
        drop(l.admit(ip).unwrap());
        assert!(l.per_ip.lock().unwrap().is_empty());
    }

    #[test]
    fn ipv6_is_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let k = |s: &str| limit_key(s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:192.0.2.7"), k("192.0.2.7"));
    }
}
