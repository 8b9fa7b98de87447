//! The scheduler: the bounded active set over the in-memory index (`index`), per-destination
//! concurrency, and retry bookkeeping; `notify` then decides expiry and DSNs.
//!
//! The index holds only ids, due times and operator flags; envelopes stay on disk until a
//! message becomes active. At most `active_limit` messages are active; each splits its due
//! recipients by destination and runs one transaction per batch, gated by that destination's
//! semaphore. After each transaction the envelope is rewritten durably before anything else.
//! A destination found unreachable is paused briefly (for a mailstore: `lmtp_retry_ms`), so a
//! failover does not turn into one failed connection per queued message.
//!
//! Must never: deliver a recipient already marked delivered; send a DSN for the null sender;
//! bounce before a permanent reply or the lifetime. Security note: the active set and the
//! per-destination limits bound memory and sockets whatever the queue's size.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::Rng;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use super::config::QueueConfig;
use super::dsn;
use super::envelope::{Envelope, QueueId, RcptState, Recipient};
use super::index::State;
use super::schedule::retry_delay_ms;
use super::spool::Spool;
use super::transport::{
    Delivery, DeliveryOutcome, Destination, RcptResult, RcptStatus, Router, Transport,
};
use super::QueueError;

/// Creates a message file at the given path.
pub(crate) type WriteMessage = Box<dyn FnOnce(&std::path::Path) -> std::io::Result<()> + Send>;

/// Where a new message's content comes from.
pub(crate) enum MessageSource {
    /// In memory.
    Bytes(Bytes),
    /// Written (or renamed) into the spool's temp path by the closure; `len` bytes.
    Writer { len: u64, write: WriteMessage },
}

impl MessageSource {
    fn len(&self) -> u64 {
        match self {
            MessageSource::Bytes(b) => b.len() as u64,
            MessageSource::Writer { len, .. } => *len,
        }
    }
}

/// The queue's clock, in Unix milliseconds: the wall clock read once, when the process first
/// asks, advanced by the monotonic clock from then on. Every due time, retry, lifetime and
/// queue id is on this clock, so a wall-clock step while the node runs (NTP, an operator's
/// `date -s`, a VM resumed) neither stalls the queue for the size of a backward step — a
/// message queued just before it would otherwise wait that long — nor expires mail early on a
/// forward one (tests/failover.rs `wall_clock_jumps_do_not_move_the_lease`). The price: after
/// a step, the times the queue records and shows are off by the step until the next restart.
pub(crate) fn now_ms() -> u64 {
    now_us() / 1000
}

/// [`now_ms`] in microseconds (queue ids).
fn now_us() -> u64 {
    static ANCHOR: OnceLock<(u64, Instant)> = OnceLock::new();
    let (wall, mono) = ANCHOR.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        (wall, Instant::now())
    });
    wall.saturating_add(mono.elapsed().as_micros() as u64)
}

/// The queue's shared state.
pub(crate) struct Inner {
    pub cfg: QueueConfig,
    pub spool: Arc<Spool>,
    spool_dir: PathBuf,
    pub router: Arc<dyn Router>,
    transport: Arc<dyn Transport>,
    pub state: Mutex<State>,
    pub wake: Notify,
    active: Arc<Semaphore>,
    dest_limits: Mutex<HashMap<Destination, Arc<Semaphore>>>,
    closing: watch::Sender<bool>,
    tasks: Mutex<JoinSet<()>>,
}

/// When a recovered message is due. Never later than the longest backoff from now: a due time
/// further off was written before the wall clock was stepped back between two runs.
fn due_for(env: &Envelope, now: u64, backoff_max_ms: u64) -> u64 {
    env.next_due_ms()
        .unwrap_or(now)
        .min(now.saturating_add(backoff_max_ms))
}

impl Inner {
    pub async fn open(
        cfg: QueueConfig,
        dir: PathBuf,
        router: Arc<dyn Router>,
        transport: Arc<dyn Transport>,
    ) -> Result<Arc<Inner>, QueueError> {
        let d = dir.clone();
        let (spool, recovered) = tokio::task::spawn_blocking(move || {
            let s = Spool::open(&d)?;
            let r = s.recover()?;
            Ok::<_, QueueError>((s, r))
        })
        .await
        .map_err(|e| join_err(&dir, e))??;
        let now = now_ms();
        let mut state = State::default();
        let count = recovered.len();
        for (id, env, held) in recovered {
            state.insert(id, held, due_for(&env, now, cfg.backoff_max_ms));
        }
        tracing::info!(messages = count, dir = %dir.display(), "queue: spool recovered");
        Ok(Arc::new(Inner {
            active: Arc::new(Semaphore::new(cfg.active_limit)),
            cfg,
            spool: Arc::new(spool),
            spool_dir: dir,
            router,
            transport,
            state: Mutex::new(state),
            wake: Notify::new(),
            dest_limits: Mutex::new(HashMap::new()),
            closing: watch::channel(false).0,
            tasks: Mutex::new(JoinSet::new()),
        }))
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs spool I/O on the blocking pool.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Spool) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || f(&spool))
            .await
            .map_err(|e| join_err(&self.spool_dir, e))?
    }

    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Validates and spools a message from a client; see [`super::Queue::enqueue`].
    pub async fn enqueue(
        &self,
        env: Envelope,
        source: MessageSource,
    ) -> Result<QueueId, QueueError> {
        if self.is_closing() {
            return Err(QueueError::ShuttingDown);
        }
        env.validate()?;
        let size = source.len();
        if size > self.cfg.max_message_size {
            return Err(QueueError::TooBig {
                size,
                limit: self.cfg.max_message_size,
            });
        }
        self.store_new(env, source, Some(self.cfg.hop_limit)).await
    }

    /// Spools a message (from a client, or a DSN of ours with no hop check) and schedules it
    /// now. The hop count is the larger of the envelope's and the `Received:` headers'.
    pub(crate) async fn store_new(
        &self,
        mut env: Envelope,
        source: MessageSource,
        hop_limit: Option<u32>,
    ) -> Result<QueueId, QueueError> {
        let now = now_ms();
        env.received_ms = now;
        env.size = source.len();
        env.delay_warned = false;
        let sender_null = env.sender.is_empty();
        for r in &mut env.recipients {
            let fresh = Recipient {
                address: std::mem::take(&mut r.address),
                orcpt: r.orcpt.take(),
                notify: if sender_null { None } else { r.notify },
                ..Recipient::new("")
            };
            *r = fresh;
            r.next_attempt_ms = now;
        }
        let id = QueueId::generate(now_us());
        let i = id.clone();
        self.blocking(move |s| {
            let (staged, hops) = match source {
                MessageSource::Bytes(b) => (s.stage_bytes(&i, &b)?, dsn::count_received(&b)),
                MessageSource::Writer { write, .. } => {
                    let staged = s.stage(&i, write)?;
                    let hops = dsn::count_received(&s.staged_headers(&staged)?);
                    (staged, hops)
                }
            };
            env.hops = env.hops.max(hops);
            if let Some(limit) = hop_limit.filter(|&l| env.hops > l) {
                return Err(QueueError::TooManyHops {
                    hops: env.hops,
                    limit,
                });
            }
            s.commit(&i, &env, staged)
        })
        .await?;
        self.lock().insert(id.clone(), false, now);
        self.wake.notify_one();
        tracing::debug!(%id, "queue: message queued");
        Ok(id)
    }

    fn dest_semaphore(&self, dest: &Destination) -> Arc<Semaphore> {
        let mut limits = self.dest_limits.lock().unwrap_or_else(|p| p.into_inner());
        limits
            .entry(dest.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.cfg.destination_concurrency)))
            .clone()
    }

    fn dead_until(&self, dest: &Destination, now: u64) -> Option<(u64, String)> {
        let mut st = self.lock();
        match st.dead.get(dest) {
            Some((until, err)) if *until > now => Some((*until, err.clone())),
            Some(_) => {
                st.dead.remove(dest);
                None
            }
            None => None,
        }
    }

    pub async fn shutdown(&self, grace: Duration) {
        self.closing.send_replace(true);
        self.wake.notify_waiters();
        let deadline = tokio::time::Instant::now() + grace;
        while self.active.available_permits() < self.cfg.active_limit
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if !tasks.is_empty() {
            tracing::info!(
                tasks = tasks.len(),
                "queue: aborting deliveries still running at shutdown"
            );
        }
        tasks.abort_all();
    }
}

fn join_err(dir: &std::path::Path, e: tokio::task::JoinError) -> QueueError {
    QueueError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::other(e),
    }
}

/// Starts the scheduler loop.
pub(crate) fn spawn(inner: Arc<Inner>) {
    tokio::spawn(run(inner));
}

async fn run(inner: Arc<Inner>) {
    let mut closing = inner.closing.subscribe();
    loop {
        if inner.is_closing() {
            return;
        }
        let permit = tokio::select! {
            p = inner.active.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = closing.wait_for(|c| *c) => return,
        };
        let now = now_ms();
        let next = {
            let mut st = inner.lock();
            match st.due.first().cloned() {
                Some((due, id)) if due <= now => {
                    st.claim(&id);
                    let flush = st
                        .entries
                        .get_mut(&id)
                        .map(|e| std::mem::take(&mut e.flush));
                    Some(Ok((id, flush.unwrap_or(false))))
                }
                Some((due, _)) => Some(Err(due - now)),
                None => None,
            }
        };
        match next {
            Some(Ok((id, flush))) => {
                let task_inner = inner.clone();
                let mut tasks = inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
                while tasks.try_join_next().is_some() {}
                tasks.spawn(async move {
                    process(task_inner, id, flush).await;
                    drop(permit);
                });
            }
            Some(Err(wait_ms)) => {
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                    _ = inner.wake.notified() => {}
                    _ = closing.wait_for(|c| *c) => return,
                }
            }
            None => {
                drop(permit);
                tokio::select! {
                    _ = inner.wake.notified() => {}
                    _ = closing.wait_for(|c| *c) => return,
                }
            }
        }
    }
}

/// Works on one active message and puts it back in the index (or removes it).
async fn process(inner: Arc<Inner>, id: QueueId, flush: bool) {
    let result = work(&inner, &id, flush).await;
    let delete = inner.lock().entries.get(&id).is_some_and(|e| e.delete);
    if delete {
        let i = id.clone();
        match inner.blocking(move |s| s.remove(&i)).await {
            Ok(()) => tracing::info!(%id, "queue: message deleted by the operator"),
            Err(e) => tracing::error!(%id, error = %e, "queue: cannot delete message"),
        }
        inner.lock().remove(&id);
    } else {
        match result {
            Ok(None) => inner.lock().remove(&id),
            Ok(Some(due)) => inner.lock().unclaim(&id, due),
            Err(QueueError::NotFound(_)) => inner.lock().remove(&id),
            Err(e) => {
                tracing::error!(%id, error = %e, "queue: cannot process message; will retry");
                inner
                    .lock()
                    .unclaim(&id, now_ms() + inner.cfg.backoff_min_ms);
            }
        }
    }
    inner.wake.notify_one();
}

/// One round for a message: deliver due recipients, expire, send DSNs. Returns the next due
/// time, or `None` when the message is finished and removed.
async fn work(inner: &Arc<Inner>, id: &QueueId, flush: bool) -> Result<Option<u64>, QueueError> {
    let i = id.clone();
    let env = inner.blocking(move |s| s.read_envelope(&i)).await?;
    let now = now_ms();
    let mut groups: BTreeMap<Destination, Vec<usize>> = BTreeMap::new();
    for (i, r) in env.recipients.iter().enumerate() {
        if r.state == RcptState::Pending && (flush || r.next_attempt_ms <= now) {
            groups
                .entry(inner.router.route(&r.address))
                .or_default()
                .push(i);
        }
    }
    let shared = Arc::new(tokio::sync::Mutex::new(Group {
        env,
        removed: false,
        keyed: true,
    }));
    let mut set = JoinSet::new();
    for (dest, idxs) in groups {
        set.spawn(deliver_group(
            inner.clone(),
            id.clone(),
            shared.clone(),
            dest,
            idxs,
        ));
    }
    while let Some(r) = set.join_next().await {
        if let Err(e) = r {
            tracing::error!(%id, error = %e, "queue: delivery task failed");
        }
    }
    let group = shared.lock().await;
    if group.removed {
        tracing::info!(%id, "queue: message done, removed");
        return Ok(None);
    }
    let mut env = group.env.clone();
    drop(group);
    super::notify::finish(inner, id, &mut env).await
}

/// A message's envelope while its destination groups deliver, and whether one of them has
/// already removed the finished message from the spool.
struct Group {
    env: Envelope,
    removed: bool,
    /// Every transaction of this round was keyed (see [`DeliveryOutcome::keyed`]): if a crash
    /// undid the message's removal, repeating them would store nothing twice, so the removal
    /// need not be synced. Recipients of earlier rounds are recorded in the durable envelope.
    keyed: bool,
}

/// Whether `env` is finished with nothing left to tell anyone: every recipient delivered or
/// failed and every DSN it owes already sent (or not wanted). `notify::finish` would only remove
/// such a message, so the transaction that finishes it removes it at once instead of first
/// rewriting its envelope: one directory fsync instead of three.
fn finished(env: &Envelope) -> bool {
    !env.has_pending() && env.recipients.iter().all(|r| r.notified)
}

async fn deliver_group(
    inner: Arc<Inner>,
    id: QueueId,
    env: Arc<tokio::sync::Mutex<Group>>,
    dest: Destination,
    idxs: Vec<usize>,
) {
    for chunk in idxs.chunks(inner.cfg.max_rcpt_per_transaction) {
        if inner.lock().entries.get(&id).is_some_and(|e| e.delete) {
            return;
        }
        if let Some((until, err)) = inner.dead_until(&dest, now_ms()) {
            let mut g = env.lock().await;
            for &i in chunk {
                let r = &mut g.env.recipients[i];
                r.last_error = Some(err.clone());
                r.next_attempt_ms = until
                    + rand::thread_rng().gen_range(0..=until.saturating_sub(now_ms()) / 4 + 1);
            }
            continue;
        }
        let sem = inner.dest_semaphore(&dest);
        let Ok(permit) = sem.acquire_owned().await else {
            return;
        };
        let delivery = {
            let g = env.lock().await;
            let e = &g.env;
            Delivery {
                id: id.clone(),
                destination: dest.clone(),
                sender: e.sender.clone(),
                recipients: chunk.iter().map(|&i| e.recipients[i].clone()).collect(),
                envid: e.envid.clone(),
                ret: e.ret,
                body: e.body,
                smtputf8: e.smtputf8,
                size: e.size,
                message: inner.spool.message_path(&id),
            }
        };
        let outcome = inner.transport.deliver(&delivery).await;
        let now = now_ms();
        if outcome.unreachable {
            let detail = outcome
                .results
                .first()
                .map(|r| r.detail.clone())
                .unwrap_or_default();
            let pause = retry_delay_ms(&inner.cfg, &dest, &detail, 1, rand::thread_rng().gen());
            inner
                .lock()
                .dead
                .insert(dest.clone(), (now + pause, detail));
        }
        // The window of at-least-once delivery runs from the server's reply to the end of this
        // write: keep it to the one envelope rewrite (or, when this transaction finished the
        // message, its removal), done before anything else.
        let mut g = env.lock().await;
        apply(&inner.cfg, &mut g.env, chunk, &outcome, &dest, &id, now);
        g.keyed &= outcome.keyed;
        crate::metrics::maillog::deliveries(&id, &g.env, chunk, &dest, &outcome, now);
        let i = id.clone();
        let result = if finished(&g.env) {
            let r = if g.keyed {
                inner.blocking(move |s| s.remove_delivered_keyed(&i)).await
            } else {
                inner.blocking(move |s| s.remove(&i)).await
            };
            g.removed = r.is_ok();
            r
        } else {
            let snapshot = g.env.clone();
            inner
                .blocking(move |s| s.write_envelope(&i, &snapshot))
                .await
        };
        if let Err(err) = result {
            tracing::error!(%id, error = %err, "queue: cannot record delivery results; recipients may be delivered again after a restart");
        }
        // The permit is held until the results are on disk, so at most
        // `destination_concurrency` transactions per destination are ever inside the window.
        drop(g);
        drop(permit);
    }
}

/// Records one transaction's results in the envelope.
fn apply(
    cfg: &QueueConfig,
    env: &mut Envelope,
    chunk: &[usize],
    outcome: &DeliveryOutcome,
    dest: &Destination,
    id: &QueueId,
    now: u64,
) {
    let null_sender = env.sender.is_empty();
    for (k, &i) in chunk.iter().enumerate() {
        let res = outcome.results.get(k).cloned().unwrap_or(RcptResult {
            status: RcptStatus::Temporary,
            detail: "4.3.0 internal error: the delivery agent returned no result".into(),
            remote: None,
        });
        let r = &mut env.recipients[i];
        r.last_attempt_ms = Some(now);
        r.remote = res.remote.clone();
        match res.status {
            RcptStatus::Delivered | RcptStatus::Relayed { .. } => {
                r.state = RcptState::Delivered;
                r.dsn_relayed = matches!(res.status, RcptStatus::Relayed { dsn_passed: true });
                r.last_error = None;
                r.notified = null_sender || !r.wants_success() || r.dsn_relayed;
                tracing::debug!(%id, rcpt = %r.address, %dest, reply = %res.detail, "queue: delivered");
            }
            RcptStatus::Temporary => {
                r.attempts += 1;
                let delay =
                    retry_delay_ms(cfg, dest, &res.detail, r.attempts, rand::thread_rng().gen());
                r.next_attempt_ms = now + delay;
                tracing::debug!(%id, rcpt = %r.address, %dest, error = %res.detail, retry_in_ms = delay, "queue: deferred");
                r.last_error = Some(res.detail);
            }
            RcptStatus::Permanent => {
                r.attempts += 1;
                r.state = RcptState::Failed;
                r.notified = null_sender || !r.wants_failure();
                tracing::debug!(%id, rcpt = %r.address, %dest, error = %res.detail, "queue: bounced");
                r.last_error = Some(res.detail);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_clock_moves_with_the_monotonic_clock() {
        let (a, t) = (now_ms(), Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (b, elapsed) = (now_ms(), t.elapsed().as_millis() as u64);
        assert!(b >= a + 20 && b <= a + elapsed + 2, "{a} {b} {elapsed}");
        // Anchored to the wall clock when first read.
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(wall.abs_diff(now_ms()) < 60_000);
    }

    #[test]
    fn recovered_due_times_are_capped_at_the_longest_backoff() {
        let mut env = Envelope::new("a@b.example");
        env.recipients.push(Recipient::new("c@d.example"));
        env.recipients[0].next_attempt_ms = 10_000_000;
        // Written before the clock was stepped back an hour: due within the longest backoff.
        assert_eq!(due_for(&env, 1_000_000, 3_600_000), 4_600_000);
        assert_eq!(due_for(&env, 8_000_000, 3_600_000), 10_000_000);
        env.recipients[0].state = RcptState::Delivered;
        assert_eq!(due_for(&env, 5, 3_600_000), 5, "nothing pending: now");
    }
}
