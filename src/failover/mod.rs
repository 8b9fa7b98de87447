//! The Raft-elected active mailstore: one node at a time holds the mailstore lease, mounts the
//! shared volume and serves LMTP, IMAP and POP3; the others stand by and take over when the
//! holder stops renewing, or on the operator's request.
//!
//! Two loops run on every node that has a mailstore configuration:
//! - **Leader duty** (acts only while this node is the Raft leader): grant the lease when it is
//!   free — at first, or after the holder released it — and take it from a holder that has not
//!   renewed for a whole `lease_ms`, measured on this node's monotonic clock from the last
//!   renewal it saw applied (a newly elected leader counts from its election). The new holder is
//!   a switchover's target, else this node, else the follower that is most caught up.
//! - **Holder duty**: when the lease names this node, renew once, then take the volume (module
//!   `volume`: mount, owner record with the epoch), start the services, report `Activated`, and
//!   renew every `renew_ms`. The age of the last *committed* renewal is measured from the
//!   moment it was sent; at `lease_ms − safety_margin_ms` without one, or as soon as the
//!   replicated lease names another holder or epoch, the node fences itself: stop the services
//!   (sessions get their goodbye within `fence_grace_ms`), release the volume. A switchover or
//!   a drain makes the holder fence itself and then `Release` the lease, so the target can take
//!   it at once.
//!
//! Why no two nodes serve at once: the leader grants a lease held by another node only after
//! `lease_ms` without a renewal on its clock; the holder's last renewal was sent before the
//! leader saw it applied, and the holder stops by `lease_ms − safety_margin_ms` after sending
//! it. The margin covers clock-rate differences and the time fencing takes. A process paused
//! longer (SIGSTOP) fences first thing when it resumes, before it renews again.
//!
//! Security note: lease commands are only accepted from cluster members (Raft RPC is mutual
//! TLS); every grant, renewal and release is compare-and-set on the epoch, so a late command
//! from an old holder or leader changes nothing (module `state`).

mod renewer;
pub mod state;
pub mod vip;
pub mod volume;
mod watchdog;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::sync::watch;

use crate::cluster::{Cluster, RaftView};
use crate::store::WriteFence;
use renewer::Renewer;
use state::{LeaseCommand, LeaseOutcome, MailstoreState};
use vip::{Vip, VipConfig};
use volume::{Volume, VolumeConfig};

/// The `[failover]` section: present on every node that may hold the mailstore.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverConfig {
    /// How long a holder keeps the lease without a renewal (the leader's view).
    pub lease_ms: u64,
    /// How often the holder renews.
    pub renew_ms: u64,
    /// The holder fences itself this long before the lease could expire on the leader.
    pub safety_margin_ms: u64,
    /// Sessions get this long to say goodbye when the holder fences itself.
    pub fence_grace_ms: u64,
    /// Run before mounting when the lease was taken from a holder that did not release it
    /// (it may still be alive): e.g. an IPMI/Redfish power-off or a SCSI-3 reservation.
    /// `{node}` and `{name}` are replaced by the old holder's id and name. A failure or a
    /// timeout means: do not mount (the next node is tried). Empty: no fence agent.
    pub fence_command: Vec<String>,
    /// How long the fence agent may take.
    pub fence_timeout_ms: u64,
    /// The shared volume.
    pub volume: VolumeConfig,
    /// The virtual IP clients and queues use; absent: none (clients reach the holder by its
    /// own addresses, the queues by the LMTP address it registered).
    pub vip: Option<VipConfig>,
    /// A watchdog device (e.g. `/dev/watchdog`) armed while this node holds the volume: it
    /// resets the machine `watchdog_timeout_s` after the last committed renewal unless the
    /// volume was released by then (an unmount that hangs, a paused or killed holder). Absent:
    /// no watchdog. Never in containers that share the host's device.
    pub watchdog_device: Option<std::path::PathBuf>,
    /// The watchdog's timeout, in seconds.
    pub watchdog_timeout_s: u64,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            lease_ms: 3000,
            renew_ms: 500,
            safety_margin_ms: 1000,
            fence_grace_ms: 500,
            fence_command: Vec::new(),
            fence_timeout_ms: 30_000,
            volume: VolumeConfig::default(),
            vip: None,
            watchdog_device: None,
            watchdog_timeout_s: 10,
        }
    }
}

impl FailoverConfig {
    /// Checks the timing relations; `Err((key, reason))`. Like Patroni's
    /// `loop_wait + 2 × retry_timeout ≤ ttl`: two renewals may fail and the holder still has
    /// its margin, and fencing fits inside the margin.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.renew_ms == 0 {
            return Err(("renew_ms", "must be positive".into()));
        }
        if self.fence_grace_ms >= self.safety_margin_ms {
            return Err((
                "fence_grace_ms",
                "must be less than safety_margin_ms, so fencing ends before the lease can be granted elsewhere".into(),
            ));
        }
        if 2 * self.renew_ms + self.safety_margin_ms > self.lease_ms {
            return Err((
                "lease_ms",
                format!(
                    "must be at least 2 × renew_ms + safety_margin_ms = {}",
                    2 * self.renew_ms + self.safety_margin_ms
                ),
            ));
        }
        if !self.fence_command.is_empty() && self.fence_timeout_ms == 0 {
            return Err(("fence_timeout_ms", "must be positive".into()));
        }
        if self.fence_command.first().is_some_and(|p| p.is_empty()) {
            return Err(("fence_command", "the program name is empty".into()));
        }
        if let Some(vip) = &self.vip {
            vip.validate()?;
        }
        if self.watchdog_device.is_some()
            && (self.watchdog_timeout_s < 5
                || self.watchdog_timeout_s * 1000 < 4 * self.fence_grace_ms)
        {
            return Err((
                "watchdog_timeout_s",
                format!(
                    "must be at least 5 s and 4 × fence_grace_ms ({} ms): fencing and the unmount must fit in it, or a healthy holder is reset",
                    4 * self.fence_grace_ms
                ),
            ));
        }
        if self.volume.device.is_some() && self.volume.fstype.is_empty() {
            return Err(("volume.fstype", "must name a file system type".into()));
        }
        Ok(())
    }

    fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }
}

/// A boxed future, for the object-safe [`Services`] trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The mailstore's services (store, LMTP, IMAP, POP3), started when this node holds the lease
/// and the volume is taken, stopped before it is released.
pub trait Services: Send + Sync + 'static {
    /// Opens the store (behind `fence`: no write once the lease has run out) and starts
    /// serving. An error leaves nothing running.
    fn start(&self, epoch: u64, fence: Arc<WriteFence>) -> BoxFuture<'_, Result<(), String>>;
    /// Stops serving: sessions get their goodbye within `grace`, then are aborted; the store is
    /// closed. Never fails.
    fn stop(&self, grace: Duration) -> BoxFuture<'_, ()>;
}

/// What this node is doing with the mailstore, for `mailctl status` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LocalRole {
    /// "standby", "activating", "active", "fencing".
    pub state: &'static str,
    /// The epoch served (when activating or active).
    pub epoch: Option<u64>,
    /// Whether the volume is taken (mounted and claimed) here.
    pub volume: bool,
    /// Whether the virtual IP is on this node's interface (`None`: no VIP configured).
    pub vip: Option<bool>,
    /// Whether the services run here.
    pub services: bool,
    /// Milliseconds since the last committed renewal (when holding).
    pub lease_age_ms: Option<u64>,
    /// The last error (a failed mount, a refused owner record, …), cleared on success.
    pub last_error: Option<String>,
}

/// The running failover duty of this node.
#[derive(Clone)]
pub struct Failover {
    role: watch::Receiver<LocalRole>,
    holder: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Failover {
    /// Starts the leader and holder loops. `name` is this node's name; `lmtp_addr` where its
    /// LMTP server listens when it holds the mailstore.
    pub fn start(
        cluster: Cluster,
        config: FailoverConfig,
        root: std::path::PathBuf,
        name: String,
        lmtp_addr: Option<std::net::SocketAddr>,
        services: Arc<dyn Services>,
        shutdown: crate::net::ShutdownSignal,
    ) -> Failover {
        let (tx, rx) = watch::channel(LocalRole {
            state: "standby",
            ..LocalRole::default()
        });
        let volume = Volume {
            config: config.volume.clone(),
            point: root,
        };
        let vip = config.vip.clone().map(Vip::new);
        let watchdog = config
            .watchdog_device
            .clone()
            .map(|d| watchdog::Watchdog::new(d, Duration::from_secs(config.watchdog_timeout_s)));
        tokio::spawn(leader_loop(
            cluster.clone(),
            config.clone(),
            shutdown.clone(),
        ));
        let holder = Holder {
            cluster,
            config,
            volume,
            name,
            lmtp_addr,
            services,
            role: tx,
            fence: Arc::new(WriteFence::new()),
            vip,
            watchdog,
        };
        let task = tokio::spawn(holder.run(shutdown));
        Failover {
            role: rx,
            holder: Arc::new(std::sync::Mutex::new(Some(task))),
        }
    }

    /// This node's role now.
    pub fn role(&self) -> LocalRole {
        self.role.borrow().clone()
    }

    /// After the shutdown signal: waits (at most `within`) until the holder duty has fenced
    /// and released the lease.
    pub async fn stopped(&self, within: Duration) {
        let task = self.holder.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            if tokio::time::timeout(within, task).await.is_err() {
                tracing::warn!("mailstore: the holder did not finish handing over in time");
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The nodes to offer the lease to, best first: this node (the leader is alive and in the
/// majority), then followers by how far they have replicated, skipping any more than a few
/// entries behind (likely down or cut off).
fn preferred(view: &RaftView, me: u64) -> Vec<u64> {
    let last = view.last_log_index.unwrap_or(0);
    let mut followers: Vec<(u64, u64)> = view
        .matched
        .iter()
        .filter(|(id, _)| **id != me)
        .filter_map(|(id, m)| m.map(|m| (*id, m)))
        .filter(|(_, m)| last.saturating_sub(*m) <= 16)
        .collect();
    followers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    std::iter::once(me)
        .chain(followers.into_iter().map(|(id, _)| id))
        .collect()
}

/// What changes with every grant and renewal: (holder, epoch, renewals).
type LeaseKey = (Option<u64>, u64, u64);

/// The leader's duty: grant a free lease, revoke a silent holder's.
async fn leader_loop(cluster: Cluster, cfg: FailoverConfig, shutdown: crate::net::ShutdownSignal) {
    let me = cluster.id();
    let mut state = cluster.mailstore();
    let tick = Duration::from_millis((cfg.renew_ms / 2).clamp(20, 250));
    // The term we lead in, the last lease change seen and when we saw it.
    let mut seen: Option<(u64, LeaseKey, Instant)> = None;
    // When only nodes whose activation failed remain, retry them once per lease, not in a loop.
    let mut last_failed_grant: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.triggered() => return,
            _ = state.changed() => {}
            _ = tokio::time::sleep(tick) => {}
        }
        let view = cluster.raft_view();
        if !view.is_leader {
            seen = None;
            continue;
        }
        let st = state.borrow_and_update().clone();
        let key = (st.holder, st.epoch, st.renewals);
        let now = Instant::now();
        match &seen {
            Some((term, k, _)) if *term == view.term && *k == key => {}
            // A new term counts as a renewal just seen: a new leader waits a whole lease.
            _ => seen = Some((view.term, key, now)),
        }
        let Some((_, _, since)) = seen else { continue };
        let (cmd, kind) = match st.holder {
            None => {
                let exclude = st
                    .handover
                    .and_then(|_| st.last_failover.as_ref().map(|r| r.to));
                let Some(node) = st.pick(&preferred(&view, me), exclude) else {
                    continue;
                };
                let (reason, kind) = match (&st.handover, &st.last_failover) {
                    (Some(_), _) => (
                        "switchover requested by the operator".to_string(),
                        "switchover",
                    ),
                    (None, None) => ("first holder".to_string(), "initial"),
                    (None, Some(r)) => {
                        (format!("node {} released the mailstore", r.to), "released")
                    }
                };
                (grant(node, &st, reason), kind)
            }
            Some(h) if now.duration_since(since) >= cfg.lease() => {
                let Some(node) = st.pick(&preferred(&view, me), Some(h)) else {
                    continue;
                };
                let silent = now.duration_since(since).as_millis();
                let reason = format!("node {h} stopped renewing ({silent} ms without a renewal)");
                (grant(node, &st, reason), "expired")
            }
            Some(_) => continue,
        };
        if let LeaseCommand::Grant { node, .. } = &cmd {
            if st.failed.contains_key(node) {
                if last_failed_grant.is_some_and(|t| t.elapsed() < cfg.lease()) {
                    continue;
                }
                last_failed_grant = Some(Instant::now());
            }
        }
        tracing::info!(%cmd, "mailstore: granting the lease");
        match cluster.lease(cmd).await {
            Ok(LeaseOutcome::Done) => crate::metrics::failover_granted(kind),
            Ok(LeaseOutcome::Stale(why)) => tracing::info!(%why, "mailstore: grant not applied"),
            Err(e) => tracing::warn!(error = %e, "mailstore: cannot propose the grant"),
        }
    }
}

fn grant(node: u64, st: &MailstoreState, reason: String) -> LeaseCommand {
    LeaseCommand::Grant {
        node,
        epoch: st.epoch,
        reason,
        at_ms: now_ms(),
        // Stale if the holder renews before it applies: this decision may be late (a leader
        // cut off from the majority, whose proposal is forwarded once the partition heals).
        renewals: Some(st.renewals),
    }
}

/// The holder's duty.
struct Holder {
    cluster: Cluster,
    config: FailoverConfig,
    volume: Volume,
    name: String,
    lmtp_addr: Option<std::net::SocketAddr>,
    services: Arc<dyn Services>,
    role: watch::Sender<LocalRole>,
    /// Open until the last committed renewal's send time + (lease − margin); the store checks
    /// it at every durable step.
    fence: Arc<WriteFence>,
    /// The virtual IP, claimed after the volume and released before it.
    vip: Option<Vip>,
    /// Armed from the confirmed lease until the volume is released.
    watchdog: Option<watchdog::Watchdog>,
}

/// Why a holder stops serving.
enum Stop {
    /// The lease is gone (taken, or not renewable in time): fence, do not release.
    Lost(String),
    /// Switchover, drain or shutdown: fence, then release so another node can take over now.
    HandOver(String),
    /// Activation failed (volume, services): fence, release, and be offered the lease last.
    Failed(String),
}

impl Holder {
    fn set(&self, f: impl FnOnce(&mut LocalRole)) {
        self.role.send_modify(f);
    }

    async fn run(self, shutdown: crate::net::ShutdownSignal) {
        let me = self.cluster.id();
        // Whatever a previous run of this node left (a crash while holding): fence first.
        self.fence().await;
        let mut state = self.cluster.mailstore();
        let register = LeaseCommand::Register {
            node: me,
            name: self.name.clone(),
            lmtp_addr: self.lmtp_addr,
        };
        loop {
            let registered = state
                .borrow()
                .candidates
                .get(&me)
                .map(|c| (&c.name, c.lmtp_addr))
                == Some((&self.name, self.lmtp_addr));
            if registered {
                break;
            }
            match self.cluster.lease(register.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::info!(error = %e, "mailstore: cannot register yet; retrying");
                    tokio::select! {
                        _ = shutdown.triggered() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        loop {
            let st = state.borrow_and_update().clone();
            if st.holder == Some(me) && !st.holder_should_release() && !shutdown.is_triggered() {
                let stop = self.hold(st.epoch, &mut state, &shutdown).await;
                self.fence().await;
                match stop {
                    Stop::Lost(why) => {
                        crate::metrics::mailstore_lease_lost();
                        tracing::warn!(epoch = st.epoch, %why, "mailstore: lost the lease; fenced");
                        self.set(|r| r.last_error = Some(why));
                    }
                    stop @ (Stop::HandOver(_) | Stop::Failed(_)) => {
                        let (why, failed) = match stop {
                            Stop::Failed(why) => (why.clone(), Some(why)),
                            Stop::HandOver(why) | Stop::Lost(why) => (why, None),
                        };
                        if failed.is_some() {
                            crate::metrics::mailstore_activation_failed();
                            tracing::error!(epoch = st.epoch, %why, "mailstore: activation failed; handing over");
                            self.set(|r| r.last_error = Some(why.clone()));
                        } else {
                            tracing::info!(epoch = st.epoch, %why, "mailstore: handing over");
                        }
                        let release = LeaseCommand::Release {
                            node: me,
                            epoch: st.epoch,
                            failed,
                        };
                        if let Err(e) = self.cluster.lease(release).await {
                            tracing::warn!(error = %e, "mailstore: cannot release; the lease expires instead");
                        }
                    }
                }
                continue;
            }
            if st.holder == Some(me) && st.holder_should_release() {
                // Holding on paper but not serving (e.g. drained before activation): release.
                let release = LeaseCommand::Release {
                    node: me,
                    epoch: st.epoch,
                    failed: None,
                };
                let _ = self.cluster.lease(release).await;
            }
            tokio::select! {
                _ = shutdown.triggered() => return,
                r = state.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(Duration::from_millis(self.config.renew_ms)) => {}
            }
        }
    }

    /// Renews, activates, and serves until the lease is lost or handed over.
    async fn hold(
        &self,
        epoch: u64,
        state: &mut watch::Receiver<MailstoreState>,
        shutdown: &crate::net::ShutdownSignal,
    ) -> Stop {
        let me = self.cluster.id();
        let observed = Instant::now();
        let budget = Duration::from_millis(self.config.lease_ms - self.config.safety_margin_ms);
        // The first renewal dates the lease; nothing is touched before it commits.
        let last_ok = loop {
            let t0 = Instant::now();
            let renew = LeaseCommand::Renew { node: me, epoch };
            match tokio::time::timeout(budget, self.cluster.lease(renew)).await {
                Ok(Ok(LeaseOutcome::Done)) => {
                    self.fence.open_until(t0 + budget);
                    break t0;
                }
                Ok(Ok(LeaseOutcome::Stale(why))) => return Stop::Lost(why),
                _ if observed.elapsed() >= budget => {
                    return Stop::Lost("cannot confirm the lease".into())
                }
                _ => tokio::time::sleep(Duration::from_millis(self.config.renew_ms / 4)).await,
            }
        };
        self.set(|r| {
            r.state = "activating";
            r.epoch = Some(epoch);
        });
        // From here a background task renews, so long steps (a fence agent, an XFS log
        // replay) never cost the lease; every step checks it is still ours.
        let renewer = Renewer::start(self, epoch, last_ok, budget);
        if let Some(wd) = &self.watchdog {
            if let Err(e) = wd.arm(self.fence.clone()) {
                crate::metrics::volume_error("watchdog");
                return Stop::Failed(format!(
                    "cannot arm the watchdog {}: {e}; check failover.watchdog_device",
                    wd.path().display()
                ));
            }
        }
        let taken_from = state
            .borrow()
            .last_failover
            .as_ref()
            .filter(|r| r.epoch == epoch)
            .and_then(|r| r.from)
            .filter(|from| *from != me);
        if let (Some(old), false) = (taken_from, self.config.fence_command.is_empty()) {
            let name = state
                .borrow()
                .candidates
                .get(&old)
                .map(|c| c.name.clone())
                .unwrap_or_default();
            tracing::warn!(epoch, old, %name, "mailstore: fencing the previous holder");
            if let Err(e) = self.fence_agent(old, &name).await {
                return Stop::Failed(e);
            }
            if let Some(stop) = renewer.check() {
                return stop;
            }
        }
        tracing::info!(epoch, "mailstore: lease held; taking the volume");
        let (volume, node, name) = (self.volume.clone(), me, self.name.clone());
        let taken = tokio::task::spawn_blocking(move || volume.take(epoch, node, &name)).await;
        match taken {
            Ok(Ok(())) => self.set(|r| r.volume = true),
            Ok(Err(e)) => {
                crate::metrics::volume_error("take");
                return Stop::Failed(format!("cannot take the volume: {e}"));
            }
            Err(e) => {
                crate::metrics::volume_error("take");
                return Stop::Failed(format!("volume task failed: {e}"));
            }
        }
        if let Some(stop) = renewer.check() {
            return stop;
        }
        if let Some(vip) = &self.vip {
            if let Err(e) = vip.claim().await {
                crate::metrics::vip_error("claim");
                return Stop::Failed(format!("cannot claim the virtual IP: {e}"));
            }
            self.set(|r| r.vip = Some(true));
            if let Some(stop) = renewer.check() {
                return stop;
            }
        }
        if let Err(e) = self.services.start(epoch, self.fence.clone()).await {
            return Stop::Failed(format!("cannot start the mailstore services: {e}"));
        }
        self.set(|r| {
            r.services = true;
            r.state = "active";
            r.last_error = None;
        });
        crate::metrics::mailstore_activated(observed.elapsed());
        let duration_ms = observed.elapsed().as_millis() as u64;
        tracing::info!(epoch, duration_ms, "mailstore: active");
        renewer.report_active(duration_ms);
        let period = Duration::from_millis(self.config.renew_ms);
        loop {
            let st = state.borrow_and_update().clone();
            if st.holder != Some(me) || st.epoch != epoch {
                return Stop::Lost(format!(
                    "the lease now names node {:?} at epoch {}",
                    st.holder, st.epoch
                ));
            }
            if st.holder_should_release() {
                return Stop::HandOver("switchover or drain requested".into());
            }
            if shutdown.is_triggered() {
                return Stop::HandOver("this node is shutting down".into());
            }
            if let Some(stop) = renewer.check() {
                return stop;
            }
            self.set(|r| r.lease_age_ms = Some(renewer.age().as_millis() as u64));
            tokio::select! {
                _ = shutdown.triggered() => {}
                _ = state.changed() => {}
                _ = tokio::time::sleep(period / 2) => {}
            }
        }
    }

    /// Runs the fence agent against the previous holder, bounded by `fence_timeout_ms`.
    async fn fence_agent(&self, node: u64, name: &str) -> Result<(), String> {
        let args: Vec<String> = self
            .config
            .fence_command
            .iter()
            .map(|a| {
                a.replace("{node}", &node.to_string())
                    .replace("{name}", name)
            })
            .collect();
        let Some((program, rest)) = args.split_first() else {
            return Ok(());
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(rest)
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        let limit = Duration::from_millis(self.config.fence_timeout_ms);
        match tokio::time::timeout(limit, cmd.output()).await {
            Ok(Ok(out)) if out.status.success() => {
                tracing::info!(node, %name, "mailstore: fence agent succeeded");
                Ok(())
            }
            Ok(Ok(out)) => Err(format!(
                "fence agent {program} for node {node} ({name}) failed ({}): {}; not mounting",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Ok(Err(e)) => Err(format!(
                "cannot run fence agent {program}: {e}; check failover.fence_command"
            )),
            Err(_) => Err(format!(
                "fence agent {program} for node {node} ({name}) did not finish within {} ms; not mounting",
                limit.as_millis()
            )),
        }
    }

    /// Disarms the watchdog once the volume is released (a no-op without one, or unarmed).
    /// While the release fails the watchdog stays armed, unpetted: it resets this node.
    async fn disarm_watchdog(&self) {
        let Some(wd) = &self.watchdog else { return };
        // Quick: the petting thread wakes at once and a device write does not block.
        if let Err(e) = wd.disarm() {
            crate::metrics::volume_error("watchdog");
            tracing::error!(device = %wd.path().display(), error = %e, "mailstore: cannot disarm the watchdog; it will reset this node");
        }
    }

    /// Stops the services and releases the volume. Idempotent.
    async fn fence(&self) {
        self.fence.close();
        self.set(|r| r.state = "fencing");
        let grace = Duration::from_millis(self.config.fence_grace_ms);
        self.services.stop(grace).await;
        self.set(|r| r.services = false);
        if let Some(vip) = &self.vip {
            match vip.release().await {
                Ok(()) => self.set(|r| r.vip = Some(false)),
                Err(e) => {
                    crate::metrics::vip_error("release");
                    tracing::error!(error = %e, "mailstore: cannot release the virtual IP");
                    self.set(|r| r.last_error = Some(e.to_string()));
                }
            }
        }
        let volume = self.volume.clone();
        match tokio::task::spawn_blocking(move || volume.release()).await {
            Ok(Ok(())) => {
                self.set(|r| r.volume = false);
                self.disarm_watchdog().await;
            }
            Ok(Err(e)) => {
                crate::metrics::volume_error("release");
                tracing::error!(error = %e, "mailstore: cannot release the volume");
                self.set(|r| r.last_error = Some(e.to_string()));
            }
            Err(e) => {
                crate::metrics::volume_error("release");
                tracing::error!(error = %e, "mailstore: volume task failed");
            }
        }
        self.set(|r| {
            r.state = "standby";
            r.epoch = None;
            r.lease_age_ms = None;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_relations_are_validated() {
        assert!(FailoverConfig::default().validate().is_ok());
        let c = |lease_ms, renew_ms, safety_margin_ms, fence_grace_ms| FailoverConfig {
            lease_ms,
            renew_ms,
            safety_margin_ms,
            fence_grace_ms,
            ..FailoverConfig::default()
        };
        assert_eq!(
            c(1999, 500, 1000, 500).validate().unwrap_err().0,
            "lease_ms"
        );
        assert_eq!(c(3000, 0, 1000, 500).validate().unwrap_err().0, "renew_ms");
        assert_eq!(
            c(3000, 500, 1000, 1000).validate().unwrap_err().0,
            "fence_grace_ms"
        );
        let agent = |cmd: &[&str], fence_timeout_ms| FailoverConfig {
            fence_command: cmd.iter().map(|s| s.to_string()).collect(),
            fence_timeout_ms,
            ..FailoverConfig::default()
        };
        assert!(agent(&["ipmitool", "{name}"], 1000).validate().is_ok());
        assert_eq!(
            agent(&["x"], 0).validate().unwrap_err().0,
            "fence_timeout_ms"
        );
        assert_eq!(agent(&[""], 10).validate().unwrap_err().0, "fence_command");
        let watchdog = |timeout_s, fence_grace_ms| FailoverConfig {
            watchdog_device: Some("/dev/watchdog".into()),
            watchdog_timeout_s: timeout_s,
            fence_grace_ms,
            safety_margin_ms: 2000,
            lease_ms: 4000,
            ..FailoverConfig::default()
        };
        assert!(watchdog(10, 500).validate().is_ok());
        assert_eq!(
            watchdog(4, 500).validate().unwrap_err().0,
            "watchdog_timeout_s"
        );
        assert_eq!(
            watchdog(5, 1500).validate().unwrap_err().0,
            "watchdog_timeout_s"
        );
    }

    #[test]
    fn the_leader_prefers_itself_then_caught_up_followers() {
        let view = RaftView {
            is_leader: true,
            term: 3,
            last_log_index: Some(100),
            voters: vec![1, 2, 3, 4],
            matched: [(1, Some(100)), (2, Some(40)), (3, Some(99)), (4, None)]
                .into_iter()
                .collect(),
        };
        assert_eq!(preferred(&view, 1), vec![1, 3]);
        assert_eq!(preferred(&view, 2), vec![2, 1, 3]);
    }
}
