//! What the sender is told: expiry of undeliverable recipients, the one delay warning, and
//! failure and success DSNs — then the message is removed or rescheduled.
//!
//! A DSN is queued (durably, as a new message from `<>`) before the recipients it reports are
//! marked notified, so a crash in between repeats a DSN rather than losing it. Must never send
//! anything for the null sender: a bounce is never bounced.
//!
//! Security note: DSN text is built by `dsn` from validated envelope fields and sanitised
//! replies; the original message is attached verbatim in its own MIME part.

use std::sync::Arc;

use bytes::Bytes;
use rand::Rng;

use super::dsn::{self, Action, DsnKind};
use super::envelope::{BodyType, Envelope, QueueId, RcptState, Recipient, Ret};
use super::schedule::backoff_ms;
use super::scheduler::{now_ms, Inner, MessageSource};
use super::transport::Destination;
use super::QueueError;

/// Expiry, delay warning and DSNs; then removal or the next due time.
pub(crate) async fn finish(
    inner: &Arc<Inner>,
    id: &QueueId,
    env: &mut Envelope,
) -> Result<Option<u64>, QueueError> {
    let cfg = &inner.cfg;
    let now = now_ms();
    let null_sender = env.sender.is_empty();
    let expires = env
        .received_ms
        .saturating_add(cfg.lifetime_secs.saturating_mul(1000));
    if now >= expires {
        for r in env
            .recipients
            .iter_mut()
            .filter(|r| r.state == RcptState::Pending)
        {
            let last = r.last_error.take().unwrap_or_else(|| "none".into());
            r.last_error = Some(format!(
                "4.4.7 message expired after {} s in the queue; last error: {last}",
                cfg.lifetime_secs
            ));
            r.state = RcptState::Failed;
            r.notified = null_sender || !r.wants_failure();
            tracing::info!(%id, rcpt = %r.address, "queue: expired");
        }
    }
    let mut reports: Vec<(DsnKind, Vec<usize>)> = Vec::new();
    let delay_at = env
        .received_ms
        .saturating_add(cfg.delay_warning_secs.saturating_mul(1000));
    let warn_delay =
        !null_sender && cfg.delay_warning_secs > 0 && !env.delay_warned && now >= delay_at;
    if warn_delay && env.has_pending() {
        let idx: Vec<usize> = pick(env, |r| r.state == RcptState::Pending && r.wants_delay());
        if idx.is_empty() {
            env.delay_warned = true;
        } else {
            reports.push((DsnKind::Delay, idx));
        }
    }
    let failed = pick(env, |r| r.state == RcptState::Failed && !r.notified);
    if !failed.is_empty() {
        reports.push((DsnKind::Failure, failed));
    }
    let succeeded = pick(env, |r| r.state == RcptState::Delivered && !r.notified);
    if !succeeded.is_empty() {
        reports.push((DsnKind::Success, succeeded));
    }
    let mut dsn_error = false;
    for (kind, idx) in reports {
        if null_sender {
            // Never a bounce to a bounce: mark and move on.
            idx.iter().for_each(|&i| env.recipients[i].notified = true);
            continue;
        }
        match send_dsn(inner, id, env, kind, &idx, now).await {
            Ok(dsn_id) => {
                tracing::info!(%id, %dsn_id, kind = ?kind, to = %env.sender, "queue: DSN queued");
                match kind {
                    DsnKind::Delay => env.delay_warned = true,
                    _ => idx.iter().for_each(|&i| env.recipients[i].notified = true),
                }
            }
            Err(e) => {
                tracing::error!(%id, error = %e, "queue: cannot queue DSN; will retry");
                dsn_error = true;
            }
        }
    }
    if !env.has_pending() && env.recipients.iter().all(|r| r.notified) {
        let i = id.clone();
        inner.blocking(move |s| s.remove(&i)).await?;
        tracing::info!(%id, "queue: message done, removed");
        return Ok(None);
    }
    let snapshot = env.clone();
    let i = id.clone();
    inner
        .blocking(move |s| s.write_envelope(&i, &snapshot))
        .await?;
    let retry_dsn = now + backoff_ms(cfg, 1, rand::thread_rng().gen());
    Ok(Some(match env.next_due_ms() {
        Some(due) if !dsn_error => due,
        Some(due) => due.min(retry_dsn),
        None => retry_dsn,
    }))
}

fn pick(env: &Envelope, f: impl Fn(&Recipient) -> bool) -> Vec<usize> {
    env.recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| f(r))
        .map(|(i, _)| i)
        .collect()
}

async fn send_dsn(
    inner: &Arc<Inner>,
    id: &QueueId,
    env: &Envelope,
    kind: DsnKind,
    idx: &[usize],
    now: u64,
) -> Result<QueueId, QueueError> {
    let whole = (kind == DsnKind::Failure && env.ret != Some(Ret::Hdrs))
        .then_some(inner.cfg.dsn_return_limit);
    let (i, len) = (id.clone(), env.size);
    let (original, is_whole) = inner
        .blocking(move |s| s.read_original(&i, len, whole))
        .await?;
    let entries: Vec<dsn::Entry<'_>> = idx
        .iter()
        .map(|&i| {
            let rcpt = &env.recipients[i];
            let action = match kind {
                DsnKind::Failure => Action::Failed,
                DsnKind::Delay => Action::Delayed,
                DsnKind::Success => match inner.router.route(&rcpt.address) {
                    Destination::Lmtp(_) => Action::Delivered,
                    Destination::Smtp(_) => Action::Relayed,
                },
            };
            dsn::Entry {
                rcpt,
                action,
                status: None,
            }
        })
        .collect();
    let token = format!("{:?}{now}", kind).to_ascii_lowercase();
    let retry_until = (kind == DsnKind::Delay)
        .then(|| (env.received_ms / 1000).saturating_add(inner.cfg.lifetime_secs));
    let report = dsn::Report {
        kind,
        id,
        reporting_mta: &inner.cfg.hostname,
        envelope: env,
        now_secs: now / 1000,
        retry_until_secs: retry_until,
        original: &original,
        original_is_whole: is_whole,
        token: &token,
    };
    let bytes = dsn::build(&report, &entries);
    let mut denv = Envelope::new("");
    denv.recipients.push(Recipient::new(env.sender.clone()));
    denv.body = if bytes.is_ascii() {
        BodyType::SevenBit
    } else {
        BodyType::EightBitMime
    };
    denv.smtputf8 = !env.sender.is_ascii();
    inner
        .store_new(denv, MessageSource::Bytes(Bytes::from(bytes)), None)
        .await
}
