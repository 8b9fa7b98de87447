//! The operator's view of the queue: `list`, `show`, `flush`, `delete`, `hold`, `release` and
//! counters, returning serde structs that the admin API serves and `mailctl queue` prints.
//!
//! An operation on a message that is being delivered never touches its envelope (the delivery
//! task owns it): delete and flush are recorded as flags the task honours when it finishes;
//! hold is a marker file of its own. This module must never deliver or change recipient state.
//!
//! Security note: ids from the operator are parsed as [`QueueId`]s (fixed-length hex) before
//! they reach a path; message headers are shown lossily decoded and size-capped.

use serde::{Deserialize, Serialize};

use std::collections::HashMap;

use super::envelope::{Envelope, QueueId, RcptState};
use super::index::Entry;
use super::scheduler::now_ms;
use super::{Queue, QueueError};

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageState {
    /// Being delivered right now.
    Active,
    /// Waiting for its first attempt.
    Queued,
    /// Waiting for a retry after a temporary failure.
    Deferred,
    /// Held by the operator.
    Held,
}

/// One line of `mailctl queue list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// Queue id.
    pub id: QueueId,
    /// Envelope sender; empty for `<>`.
    pub sender: String,
    /// Recipients not yet delivered or bounced.
    pub recipients: Vec<String>,
    /// Size in bytes.
    pub size: u64,
    /// Unix seconds when queued.
    pub received: u64,
    /// Seconds in the queue.
    pub age_secs: u64,
    /// State.
    pub state: MessageState,
    /// Unix seconds of the next attempt, if one is scheduled.
    pub next_attempt: Option<u64>,
    /// The most recent error among pending recipients.
    pub last_error: Option<String>,
}

/// `mailctl queue show ID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDetail {
    /// The summary.
    pub entry: QueueEntry,
    /// The full envelope with per-recipient state.
    pub envelope: Envelope,
    /// The message's header section (lossy UTF-8, capped).
    pub headers: String,
}

/// Counters for `/metrics` and `mailctl status`, from memory (no envelope is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueStats {
    /// Messages in the queue.
    pub messages: usize,
    /// Being delivered.
    pub active: usize,
    /// Held.
    pub held: usize,
    /// Waiting for their first attempt or a retry (neither active nor held).
    pub waiting: usize,
    /// Age of the oldest message in seconds; `None` when the queue is empty.
    pub oldest_age_secs: Option<u64>,
}

/// One page of `mailctl queue list`: messages oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePage {
    pub entries: Vec<QueueEntry>,
    /// Where the next page starts (`after=`); `None` on the last page.
    pub next_after: Option<QueueId>,
    /// The whole queue's counters.
    pub stats: QueueStats,
}

fn summarize(id: QueueId, env: &Envelope, active: bool, held: bool, now: u64) -> QueueEntry {
    let pending: Vec<_> = env
        .recipients
        .iter()
        .filter(|r| r.state == RcptState::Pending)
        .collect();
    let state = if active {
        MessageState::Active
    } else if held {
        MessageState::Held
    } else if pending
        .iter()
        .any(|r| r.attempts > 0 || r.last_error.is_some())
    {
        MessageState::Deferred
    } else {
        MessageState::Queued
    };
    let last_error = pending
        .iter()
        .filter(|r| r.last_error.is_some())
        .max_by_key(|r| r.last_attempt_ms)
        .and_then(|r| r.last_error.clone());
    QueueEntry {
        id,
        sender: env.sender.clone(),
        recipients: pending.iter().map(|r| r.address.clone()).collect(),
        size: env.size,
        received: env.received_ms / 1000,
        age_secs: now.saturating_sub(env.received_ms) / 1000,
        state,
        next_attempt: (!held)
            .then(|| env.next_due_ms().map(|ms| ms / 1000))
            .flatten(),
        last_error,
    }
}

impl Queue {
    /// Every queued message, oldest first. Reads each envelope from disk.
    pub async fn list(&self) -> Result<Vec<QueueEntry>, QueueError> {
        Ok(self.list_page(None, usize::MAX).await?.entries)
    }

    /// Up to `limit` messages queued after `after` (ids sort by arrival), oldest first.
    /// Reads only those envelopes, so a queue of a million messages lists page by page.
    pub async fn list_page(
        &self,
        after: Option<&QueueId>,
        limit: usize,
    ) -> Result<QueuePage, QueueError> {
        let (mut ids, stats) = {
            let st = self.inner.lock();
            let ids: Vec<(QueueId, bool, bool)> = st
                .entries
                .iter()
                .filter(|(id, _)| after.is_none_or(|a| *id > a))
                .map(|(id, e)| (id.clone(), e.active, e.held))
                .collect();
            (ids, stats_of(&st.entries))
        };
        ids.sort();
        let next_after = (ids.len() > limit).then(|| ids[limit - 1].0.clone());
        ids.truncate(limit);
        let entries = self.read_entries(ids).await?;
        Ok(QueuePage {
            entries,
            next_after,
            stats,
        })
    }

    async fn read_entries(
        &self,
        ids: Vec<(QueueId, bool, bool)>,
    ) -> Result<Vec<QueueEntry>, QueueError> {
        let now = now_ms();
        self.inner
            .blocking(move |s| {
                let mut out = Vec::with_capacity(ids.len());
                for (id, active, held) in ids {
                    match s.read_envelope(&id) {
                        Ok(env) => out.push(summarize(id, &env, active, held, now)),
                        // Finished between the snapshot and the read.
                        Err(QueueError::NotFound(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(out)
            })
            .await
    }

    /// One message in full.
    pub async fn show(&self, id: &QueueId) -> Result<QueueDetail, QueueError> {
        let (active, held) = {
            let st = self.inner.lock();
            let e = st
                .entries
                .get(id)
                .ok_or_else(|| QueueError::NotFound(id.clone()))?;
            (e.active, e.held)
        };
        let i = id.clone();
        let (env, headers) = self
            .inner
            .blocking(move |s| {
                let env = s.read_envelope(&i)?;
                let (h, _) = s.read_original(&i, env.size, None)?;
                Ok((env, h))
            })
            .await?;
        Ok(QueueDetail {
            entry: summarize(id.clone(), &env, active, held, now_ms()),
            envelope: env,
            headers: String::from_utf8_lossy(&headers).into_owned(),
        })
    }

    /// Retries one message, or every message (`None`), now: pending recipients become due
    /// regardless of their backoff, and paused destinations are tried again. Held messages
    /// stay held. Returns how many messages were affected.
    pub async fn flush(&self, id: Option<&QueueId>) -> Result<usize, QueueError> {
        let now = now_ms();
        let mut st = self.inner.lock();
        st.dead.clear();
        let ids: Vec<QueueId> = match id {
            Some(id) => {
                if !st.entries.contains_key(id) {
                    return Err(QueueError::NotFound(id.clone()));
                }
                vec![id.clone()]
            }
            None => st.entries.keys().cloned().collect(),
        };
        let mut n = 0;
        for id in &ids {
            if let Some(e) = st.entries.get_mut(id) {
                if e.held {
                    continue;
                }
                e.flush = true;
                n += 1;
            }
            st.reschedule(id, now);
        }
        drop(st);
        self.inner.wake.notify_one();
        Ok(n)
    }

    /// Deletes a message without notifying anyone. A message being delivered is deleted as
    /// soon as its current transactions end (recipients already accepted stay delivered).
    pub async fn delete(&self, id: &QueueId) -> Result<(), QueueError> {
        {
            let mut st = self.inner.lock();
            let e = st
                .entries
                .get_mut(id)
                .ok_or_else(|| QueueError::NotFound(id.clone()))?;
            e.delete = true;
            if !st.claim(id) {
                tracing::info!(%id, "queue: delete requested; the message is being delivered and goes when that ends");
                return Ok(());
            }
        }
        let i = id.clone();
        let result = self.inner.blocking(move |s| s.remove(&i)).await;
        let mut st = self.inner.lock();
        match result {
            Ok(()) => {
                st.remove(id);
                tracing::info!(%id, "queue: message deleted by the operator");
                Ok(())
            }
            Err(e) => {
                if let Some(entry) = st.entries.get_mut(id) {
                    entry.delete = false;
                }
                st.unclaim(id, now_ms());
                Err(e)
            }
        }
    }

    /// Holds a message: no delivery until [`Queue::release`]. Survives restarts.
    pub async fn hold(&self, id: &QueueId) -> Result<(), QueueError> {
        self.set_hold(id, true).await
    }

    /// Releases a held message and tries its pending recipients now.
    pub async fn release(&self, id: &QueueId) -> Result<(), QueueError> {
        self.set_hold(id, false).await
    }

    async fn set_hold(&self, id: &QueueId, held: bool) -> Result<(), QueueError> {
        if !self.inner.lock().entries.contains_key(id) {
            return Err(QueueError::NotFound(id.clone()));
        }
        let i = id.clone();
        self.inner.blocking(move |s| s.set_hold(&i, held)).await?;
        let mut st = self.inner.lock();
        st.set_held(id, held);
        if !held {
            // A release means "deliver now", whatever the backoff said before the hold.
            if let Some(e) = st.entries.get_mut(id) {
                e.flush = true;
            }
            st.reschedule(id, now_ms());
        }
        drop(st);
        self.inner.wake.notify_one();
        tracing::info!(%id, held, "queue: hold changed by the operator");
        Ok(())
    }

    /// Counters.
    pub fn stats(&self) -> QueueStats {
        stats_of(&self.inner.lock().entries)
    }
}

fn stats_of(entries: &HashMap<QueueId, Entry>) -> QueueStats {
    let active = entries.values().filter(|e| e.active).count();
    let held = entries.values().filter(|e| e.held && !e.active).count();
    let oldest = entries.keys().map(QueueId::received_micros).min();
    QueueStats {
        messages: entries.len(),
        active,
        held,
        waiting: entries.len() - active - held,
        oldest_age_secs: oldest.map(|us| (now_ms() * 1000).saturating_sub(us) / 1_000_000),
    }
}
