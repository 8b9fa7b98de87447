//! `\Recent` for IMAP4rev1 sessions (RFC 3501 §2.3.2): a message is recent in exactly one
//! session, the first to be told of it — the first SELECT after it arrived, or a session that
//! had the mailbox selected when it arrived. IMAP4rev2 dropped the flag; sessions that enabled
//! it neither see nor take it.
//!
//! The store keeps no per-session state, so the marker lives here, in memory: per mailbox
//! (user and UIDVALIDITY, which the store allocates uniquely per user and keeps across
//! RENAME) the highest UID some session has been told of. [`RecentTracker::claim`] moves it
//! and returns what lay above it. It resets whenever the mailstore service starts (restart,
//! failover): the first time a mailbox is seen afterwards, the trailing run of its messages
//! that arrived after the start (INTERNALDATE at or after it, which is the arrival time of
//! delivered mail) is recent and everything older is not — the kind of reset Dovecot shows
//! with in-memory indexes. EXAMINE and STATUS look without claiming. No I/O.
//!
//! Security note: the table is bounded ([`MAX_MAILBOXES`]); when full it is emptied, which
//! at worst shows some messages as recent a second time.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::MessageMeta;

/// Mailboxes tracked at once.
pub const MAX_MAILBOXES: usize = 200_000;

/// One node's recent markers, shared by the IMAP listeners.
#[derive(Debug)]
pub struct RecentTracker {
    /// When the service started (seconds since the epoch): where a fresh marker starts.
    started: i64,
    /// (user, UIDVALIDITY) → highest UID a session has been told of.
    marks: Mutex<HashMap<(String, u32), u32>>,
}

/// Which mailbox a marker belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxKey {
    pub user: String,
    pub uidvalidity: u32,
}

impl RecentTracker {
    pub fn new(started: i64) -> Self {
        RecentTracker {
            started,
            marks: Mutex::new(HashMap::new()),
        }
    }

    /// The marker for a mailbox seen for the first time: below the trailing run of messages
    /// that arrived since the start.
    pub fn initial_marker(&self, msgs: &[MessageMeta]) -> u32 {
        let run = msgs
            .iter()
            .rev()
            .take_while(|m| m.internal_date >= self.started)
            .count();
        match msgs.len().checked_sub(run + 1) {
            Some(i) => msgs[i].uid,
            None => 0,
        }
    }

    /// Takes every message up to `last` for the caller; returns the marker before, so the
    /// caller's recent messages are those above it (up to `last`). `msgs` seeds a marker the
    /// table does not hold.
    pub fn claim(&self, key: &MailboxKey, last: u32, msgs: &[MessageMeta]) -> u32 {
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        let k = (key.user.clone(), key.uidvalidity);
        if !marks.contains_key(&k) && marks.len() >= MAX_MAILBOXES {
            marks.clear();
        }
        let mark = marks.entry(k).or_insert_with(|| self.initial_marker(msgs));
        let before = *mark;
        *mark = before.max(last);
        before
    }

    /// Starts a mailbox's marker from `msgs` unless it has one: called before an APPEND or
    /// COPY adds messages, so that they are recent for the next session whatever their
    /// INTERNALDATE (the first-sight rule would judge them by it).
    pub fn seed(&self, key: &MailboxKey, msgs: &[MessageMeta]) {
        self.claim(key, 0, msgs);
    }

    /// The marker without moving it (EXAMINE, STATUS).
    pub fn marker(&self, key: &MailboxKey, msgs: &[MessageMeta]) -> u32 {
        let marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        marks
            .get(&(key.user.clone(), key.uidvalidity))
            .copied()
            .unwrap_or_else(|| self.initial_marker(msgs))
    }
}

/// The UIDs recent in one session: a few ranges, since they are taken in ascending runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecentSet {
    ranges: Vec<(u32, u32)>,
}

impl RecentSet {
    /// Adds `first..=last` (nothing when empty).
    pub fn add(&mut self, first: u32, last: u32) {
        if first > last {
            return;
        }
        match self.ranges.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(first) => *end = last,
            _ => self.ranges.push((first, last)),
        }
    }

    pub fn contains(&self, uid: u32) -> bool {
        let i = self.ranges.partition_point(|&(_, hi)| hi < uid);
        self.ranges.get(i).is_some_and(|&(lo, _)| lo <= uid)
    }

    /// How many of `msgs` (sorted by UID) are recent.
    pub fn count(&self, msgs: &[MessageMeta]) -> usize {
        self.ranges
            .iter()
            .map(|&(lo, hi)| {
                msgs.partition_point(|m| m.uid <= hi) - msgs.partition_point(|m| m.uid < lo)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Flags;

    fn msgs(list: &[(u32, i64)]) -> Vec<MessageMeta> {
        list.iter()
            .map(|&(uid, date)| MessageMeta {
                uid,
                modseq: 1,
                flags: Flags::new(),
                internal_date: date,
                size: 1,
                file: "f".into(),
                crc: 0,
            })
            .collect()
    }

    #[test]
    fn first_session_takes_new_messages() {
        let t = RecentTracker::new(1000);
        let key = MailboxKey {
            user: "a@x".into(),
            uidvalidity: 7,
        };
        // Messages 1 and 2 predate the start, 3 and 4 arrived since; a message with an old
        // INTERNALDATE (an APPEND) ends the run of recent ones.
        let m = msgs(&[(1, 10), (2, 999), (3, 1000), (4, 2000)]);
        assert_eq!(t.initial_marker(&m), 2);
        assert_eq!(t.initial_marker(&msgs(&[(1, 1000)])), 0);
        assert_eq!(t.initial_marker(&[]), 0);
        assert_eq!(t.initial_marker(&msgs(&[(1, 2000), (2, 5), (3, 3000)])), 2);
        assert_eq!(t.marker(&key, &m), 2);
        assert_eq!(t.claim(&key, 4, &m), 2);
        // The second session finds nothing recent; a new arrival goes to whoever claims first.
        assert_eq!(t.claim(&key, 4, &m), 4);
        assert_eq!(t.claim(&key, 6, &m), 4);
        assert_eq!(t.claim(&key, 6, &m), 6);
        assert_eq!(t.marker(&key, &m), 6);
        // Another mailbox (a new UIDVALIDITY) has its own marker.
        let other = MailboxKey {
            user: "a@x".into(),
            uidvalidity: 8,
        };
        assert_eq!(t.claim(&other, 1, &msgs(&[(1, 5000)])), 0);
        // Seeding before an APPEND of an old-dated message keeps it recent.
        let third = MailboxKey {
            user: "a@x".into(),
            uidvalidity: 9,
        };
        t.seed(&third, &msgs(&[(1, 10)]));
        t.seed(&third, &msgs(&[(1, 10), (2, 20)]));
        assert_eq!(t.marker(&third, &msgs(&[(1, 10), (2, 20)])), 1);
    }

    #[test]
    fn recent_sets() {
        let mut s = RecentSet::default();
        s.add(3, 4);
        s.add(5, 5);
        s.add(9, 8);
        s.add(10, 12);
        assert_eq!(s.ranges, vec![(3, 5), (10, 12)]);
        assert!(s.contains(3) && s.contains(5) && s.contains(11));
        assert!(!s.contains(2) && !s.contains(6) && !s.contains(13));
        let m = msgs(&[(1, 0), (4, 0), (5, 0), (7, 0), (11, 0), (20, 0)]);
        assert_eq!(s.count(&m), 3);
        assert_eq!(RecentSet::default().count(&m), 0);
    }
}
