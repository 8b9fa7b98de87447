//! The in-memory index of queued messages: for each id, when it is due and the operator's
//! flags; and the set of destinations currently paused as unreachable.
//!
//! Only ids and small flags live here (envelopes stay on disk), so a large queue costs little
//! memory. Plain data behind the scheduler's mutex: no I/O, no awaiting.
//!
//! Security note: nothing here comes from the network except queue ids, which are validated.

use std::collections::{BTreeSet, HashMap};

use super::envelope::QueueId;
use super::transport::Destination;

/// One queued message in the index.
#[derive(Debug)]
pub(crate) struct Entry {
    pub due_ms: u64,
    pub held: bool,
    pub active: bool,
    /// Operator asked to delete it while it was active.
    pub delete: bool,
    /// Operator asked to retry everything now.
    pub flush: bool,
}

/// The index. Invariant: an entry is in `due` exactly when it is neither held nor active.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub entries: HashMap<QueueId, Entry>,
    pub due: BTreeSet<(u64, QueueId)>,
    /// Destinations found unreachable: until when, and the error to record meanwhile.
    pub dead: HashMap<Destination, (u64, String)>,
}

impl State {
    pub fn insert(&mut self, id: QueueId, held: bool, due_ms: u64) {
        if !held {
            self.due.insert((due_ms, id.clone()));
        }
        self.entries.insert(
            id,
            Entry {
                due_ms,
                held,
                active: false,
                delete: false,
                flush: false,
            },
        );
    }

    pub fn remove(&mut self, id: &QueueId) {
        if let Some(e) = self.entries.remove(id) {
            self.due.remove(&(e.due_ms, id.clone()));
        }
    }

    /// Takes the entry out of the due set (it is being worked on or held).
    pub fn claim(&mut self, id: &QueueId) -> bool {
        match self.entries.get_mut(id) {
            Some(e) if !e.active => {
                self.due.remove(&(e.due_ms, id.clone()));
                e.active = true;
                true
            }
            _ => false,
        }
    }

    /// Ends a claim and schedules the entry at `due_ms` (unless held).
    pub fn unclaim(&mut self, id: &QueueId, due_ms: u64) {
        if let Some(e) = self.entries.get_mut(id) {
            e.active = false;
            e.due_ms = due_ms;
            if !e.held {
                self.due.insert((due_ms, id.clone()));
            }
        }
    }

    /// Moves an inactive entry's due time.
    pub fn reschedule(&mut self, id: &QueueId, due_ms: u64) {
        if let Some(e) = self.entries.get_mut(id) {
            if !e.active {
                self.due.remove(&(e.due_ms, id.clone()));
                if !e.held {
                    self.due.insert((due_ms, id.clone()));
                }
            }
            e.due_ms = due_ms;
        }
    }

    pub fn set_held(&mut self, id: &QueueId, held: bool) {
        if let Some(e) = self.entries.get_mut(id) {
            e.held = held;
            if !e.active {
                if held {
                    self.due.remove(&(e.due_ms, id.clone()));
                } else {
                    self.due.insert((e.due_ms, id.clone()));
                }
            }
        }
    }
}
