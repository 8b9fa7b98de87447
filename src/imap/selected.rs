//! The selected mailbox: the session's view of it (messages in sequence order, as last told
//! to the client) kept in step with the store's change events (`MailboxHandle::subscribe`),
//! and SELECT/EXAMINE themselves.
//!
//! Changes are absorbed into the view as they arrive but announced only when the protocol
//! allows: new messages (`EXISTS`) and flag changes (`FETCH`) at the end of any command,
//! expunges (`EXPUNGE`) not during FETCH, STORE or SEARCH (RFC 3501 §7.4.1) — until then the
//! expunged message keeps its sequence number. A session that falls behind the event buffer
//! resynchronises from a fresh snapshot. IDLE waits on those events and the client at once.
//! An IMAP4rev1 session also keeps which messages are `\Recent` for it (module `recent`),
//! and every session its saved search result (`$`, RFC 5182).

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::store::{Flags, MailboxEvent, MailboxHandle, MessageMeta, Snapshot, SystemFlag};

use super::io::{Input, Io};
use super::recent::{MailboxKey, RecentSet, RecentTracker};
use super::response::{flags as write_flags, status_line, store_error};
use super::sequence::SeqSet;
use super::session::{Flow, Session};

/// How an IMAP4rev1 session keeps `\Recent`.
struct RecentState {
    tracker: Arc<RecentTracker>,
    key: MailboxKey,
    /// SELECT takes new messages from other sessions; EXAMINE only looks.
    claim: bool,
    set: RecentSet,
}

pub(crate) struct Selected {
    pub handle: MailboxHandle,
    rx: broadcast::Receiver<Arc<MailboxEvent>>,
    pub read_only: bool,
    pub uidvalidity: u32,
    /// Messages in sequence order, as the client knows them (expunged ones stay until the
    /// EXPUNGE is announced).
    pub msgs: Vec<MessageMeta>,
    pub uidnext: u32,
    pub highestmodseq: u64,
    /// UIDs expunged in the store, not yet announced.
    pending_expunge: BTreeSet<u32>,
    /// UIDs whose flags others changed, not yet announced.
    pending_flags: BTreeSet<u32>,
    /// Messages the client has not been told about (`EXISTS` due).
    pending_exists: bool,
    /// The mailbox was deleted under the session.
    pub gone: bool,
    /// `None` in IMAP4rev2 sessions, which have no `\Recent`.
    recent: Option<RecentState>,
    /// The last `SEARCH RETURN (SAVE)` result (`$`): UIDs, ascending.
    pub saved: Vec<u32>,
}

impl Selected {
    /// A view from `snap`; `recent` (IMAP4rev1) is the node's tracker and the user.
    fn new(
        handle: MailboxHandle,
        snap: Snapshot,
        rx: broadcast::Receiver<Arc<MailboxEvent>>,
        read_only: bool,
        recent: Option<(Arc<RecentTracker>, String)>,
    ) -> Self {
        let mut sel = Selected {
            handle,
            rx,
            read_only,
            uidvalidity: snap.uidvalidity,
            msgs: snap.messages.to_vec(),
            uidnext: snap.uidnext,
            highestmodseq: snap.highestmodseq,
            pending_expunge: BTreeSet::new(),
            pending_flags: BTreeSet::new(),
            pending_exists: false,
            gone: false,
            recent: recent.map(|(tracker, user)| RecentState {
                tracker,
                key: MailboxKey {
                    user,
                    uidvalidity: snap.uidvalidity,
                },
                claim: !read_only,
                set: RecentSet::default(),
            }),
            saved: Vec::new(),
        };
        sel.note_new(0);
        sel
    }

    /// Takes `\Recent` for the messages from index `from` on, which the session has just
    /// learnt of, where no other session was told of them first.
    fn note_new(&mut self, from: usize) {
        let (Some(r), Some(first), Some(last)) =
            (self.recent.as_mut(), self.msgs.get(from), self.msgs.last())
        else {
            return;
        };
        let (first, last) = (first.uid, last.uid);
        let before = if r.claim {
            r.tracker.claim(&r.key, last, &self.msgs)
        } else {
            r.tracker.marker(&r.key, &self.msgs)
        };
        r.set.add(first.max(before.saturating_add(1)), last);
    }

    /// Whether the message is `\Recent` in this session.
    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.as_ref().is_some_and(|r| r.set.contains(uid))
    }

    /// The `RECENT` count (`None` in an IMAP4rev2 session).
    pub fn recent_count(&self) -> Option<usize> {
        self.recent.as_ref().map(|r| r.set.count(&self.msgs))
    }

    /// After `ENABLE IMAP4rev2`: no more `\Recent`.
    pub fn drop_recent(&mut self) {
        self.recent = None;
    }

    pub fn index_of(&self, uid: u32) -> Option<usize> {
        self.msgs.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    pub fn is_expunged(&self, uid: u32) -> bool {
        self.pending_expunge.contains(&uid)
    }

    /// Waits until an event is available (IDLE). Cancel-safe.
    pub async fn changed(&mut self) {
        if !self.rx.is_empty() || self.gone {
            if self.gone {
                std::future::pending::<()>().await;
            }
            return;
        }
        match self.rx.recv().await {
            Ok(ev) => self.apply(&ev),
            Err(broadcast::error::RecvError::Lagged(_)) => self.resync(),
            Err(broadcast::error::RecvError::Closed) => {
                self.gone = true;
            }
        }
    }

    /// Takes in every event that arrived.
    pub fn absorb(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(ev) => self.apply(&ev),
                Err(TryRecvError::Lagged(_)) => self.resync(),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Closed) => {
                    self.gone = true;
                    return;
                }
            }
        }
    }

    fn apply(&mut self, ev: &MailboxEvent) {
        let mine = self.handle.origin();
        match ev {
            MailboxEvent::Exists {
                messages, uidnext, ..
            } => {
                let last = self.msgs.last().map_or(0, |m| m.uid);
                let from = self.msgs.len();
                for m in messages.iter().filter(|m| m.uid > last) {
                    self.msgs.push(m.clone());
                    self.highestmodseq = self.highestmodseq.max(m.modseq);
                    self.pending_exists = true;
                }
                self.note_new(from);
                self.uidnext = self.uidnext.max(*uidnext);
            }
            MailboxEvent::Flags { updates, origin } => {
                for u in updates {
                    if let Some(i) = self.index_of(u.uid) {
                        let m = &mut self.msgs[i];
                        if m.modseq < u.modseq || m.flags != u.flags {
                            m.flags = u.flags.clone();
                            m.modseq = m.modseq.max(u.modseq);
                            if *origin != mine {
                                self.pending_flags.insert(u.uid);
                            }
                        }
                    }
                    self.highestmodseq = self.highestmodseq.max(u.modseq);
                }
            }
            MailboxEvent::Expunge { uids, modseq, .. } => {
                for &u in uids {
                    if self.index_of(u).is_some() {
                        self.pending_expunge.insert(u);
                    }
                }
                self.highestmodseq = self.highestmodseq.max(*modseq);
            }
            MailboxEvent::Renamed { .. } => {}
            MailboxEvent::Deleted => self.gone = true,
        }
    }

    /// After falling behind: compare the view with the mailbox now.
    fn resync(&mut self) {
        let Ok(snap) = self.handle.snapshot() else {
            self.gone = true;
            return;
        };
        for m in &self.msgs {
            match snap.get(m.uid) {
                None => {
                    self.pending_expunge.insert(m.uid);
                }
                Some(now) if now.flags != m.flags => {
                    self.pending_flags.insert(m.uid);
                }
                _ => {}
            }
        }
        for m in &mut self.msgs {
            if let Some(now) = snap.get(m.uid) {
                m.flags = now.flags.clone();
                m.modseq = now.modseq;
            }
        }
        let last = self.msgs.last().map_or(0, |m| m.uid);
        let from = self.msgs.len();
        for m in snap.messages.iter().filter(|m| m.uid > last) {
            self.msgs.push(m.clone());
            self.pending_exists = true;
        }
        self.note_new(from);
        self.uidnext = snap.uidnext;
        self.highestmodseq = snap.highestmodseq;
    }

    /// Writes the untagged responses that are due; expunges only if `allow_expunge`.
    pub fn announce(&mut self, out: &mut Vec<u8>, allow_expunge: bool, condstore: bool) {
        if allow_expunge && !self.pending_expunge.is_empty() {
            for uid in std::mem::take(&mut self.pending_expunge) {
                if let Some(i) = self.index_of(uid) {
                    self.msgs.remove(i);
                    out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
                }
                self.pending_flags.remove(&uid);
            }
            self.pending_exists = true;
        }
        if self.pending_exists {
            out.extend_from_slice(format!("* {} EXISTS\r\n", self.msgs.len()).as_bytes());
            if let Some(n) = self.recent_count() {
                out.extend_from_slice(format!("* {n} RECENT\r\n").as_bytes());
            }
            self.pending_exists = false;
        }
        for uid in std::mem::take(&mut self.pending_flags) {
            if let Some(i) = self.index_of(uid) {
                self.flags_response(out, i, condstore);
            }
        }
    }

    /// `* n FETCH (FLAGS (…) UID u [MODSEQ (m)])`.
    pub fn flags_response(&self, out: &mut Vec<u8>, i: usize, condstore: bool) {
        let m = &self.msgs[i];
        out.extend_from_slice(format!("* {} FETCH (FLAGS ", i + 1).as_bytes());
        write_flags(out, &m.flags, self.is_recent(m.uid));
        out.extend_from_slice(format!(" UID {}", m.uid).as_bytes());
        if condstore {
            out.extend_from_slice(format!(" MODSEQ ({})", m.modseq).as_bytes());
        }
        out.extend_from_slice(b")\r\n");
    }

    /// Indices of the messages a set names. A sequence number past the end is an error; `$`
    /// names the saved search result's messages that are still here.
    pub fn resolve(&self, set: &SeqSet, uid: bool) -> Result<Vec<usize>, String> {
        if set.saved {
            return Ok(self
                .saved
                .iter()
                .filter_map(|&u| self.index_of(u))
                .collect());
        }
        if uid {
            let largest = self.msgs.last().map_or(0, |m| m.uid);
            let r = set.resolve(largest);
            Ok((0..self.msgs.len())
                .filter(|&i| r.contains(self.msgs[i].uid))
                .collect())
        } else {
            let n = self.msgs.len() as u32;
            if set.max_number() > n {
                return Err("invalid message sequence number".into());
            }
            let r = set.resolve(n);
            Ok((0..self.msgs.len())
                .filter(|&i| r.contains(i as u32 + 1))
                .collect())
        }
    }

    /// Updates a message's flags after this session's own STORE.
    pub fn set_flags(&mut self, uid: u32, flags: Flags, modseq: u64) {
        if let Some(i) = self.index_of(uid) {
            self.msgs[i].flags = flags;
            self.msgs[i].modseq = modseq;
        }
        self.highestmodseq = self.highestmodseq.max(modseq);
    }
}

impl Session<'_> {
    /// SELECT / EXAMINE. An IMAP4rev2 session gets the mailbox's LIST response and neither
    /// RECENT nor the UNSEEN code (RFC 9051 §6.3.2).
    pub async fn select<S>(
        &mut self,
        io: &mut Io<S>,
        tag: &str,
        wire: &str,
        read_only: bool,
        condstore: bool,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        if self.selected.take().is_some() {
            io.out
                .extend_from_slice(b"* OK [CLOSED] previous mailbox closed\r\n");
        }
        if condstore {
            self.condstore = true;
        }
        let name = match self.decode_name(wire) {
            Ok(n) => n,
            Err(e) => return status_line(&mut io.out, tag, "NO", &format!("[CANNOT] {e}")),
        };
        let user = self.user.clone().unwrap_or_default();
        let opened = match self.sh.store.open_mailbox(&user, &name).await {
            Ok(h) => h.subscribe().map(|(snap, rx)| (h, snap, rx)),
            Err(e) => Err(e),
        };
        let (handle, snap, rx) = match opened {
            Ok(x) => x,
            Err(e) => {
                let (kind, text) = store_error(&e);
                return status_line(&mut io.out, tag, kind, &text);
            }
        };
        let recent = (!self.rev2).then(|| (Arc::clone(&self.sh.recent), user.clone()));
        let sel = Selected::new(handle, snap, rx, read_only, recent);
        if self.rev2 {
            self.list_one(&mut io.out, &user, &name).await;
        }
        let mut keywords: BTreeSet<&str> = BTreeSet::new();
        for m in &sel.msgs {
            keywords.extend(m.flags.keywords());
        }
        let kw: String = keywords.iter().map(|k| format!(" {k}")).collect();
        let out = &mut io.out;
        out.extend_from_slice(
            format!("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw})\r\n").as_bytes(),
        );
        let perm = if read_only {
            "()".to_string()
        } else {
            format!("(\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw} \\*)")
        };
        out.extend_from_slice(
            format!("* OK [PERMANENTFLAGS {perm}] flags permitted\r\n").as_bytes(),
        );
        out.extend_from_slice(format!("* {} EXISTS\r\n", sel.msgs.len()).as_bytes());
        if let Some(n) = sel.recent_count() {
            out.extend_from_slice(format!("* {n} RECENT\r\n").as_bytes());
        }
        let first_unseen = sel
            .msgs
            .iter()
            .position(|m| !m.flags.contains(SystemFlag::Seen));
        if let (Some(i), false) = (first_unseen, self.rev2) {
            out.extend_from_slice(format!("* OK [UNSEEN {}] first unseen\r\n", i + 1).as_bytes());
        }
        out.extend_from_slice(
            format!("* OK [UIDVALIDITY {}] UIDs valid\r\n", sel.uidvalidity).as_bytes(),
        );
        out.extend_from_slice(
            format!("* OK [UIDNEXT {}] predicted next UID\r\n", sel.uidnext).as_bytes(),
        );
        out.extend_from_slice(
            format!("* OK [HIGHESTMODSEQ {}] highest\r\n", sel.highestmodseq).as_bytes(),
        );
        let mode = if read_only {
            "[READ-ONLY] EXAMINE"
        } else {
            "[READ-WRITE] SELECT"
        };
        status_line(out, tag, "OK", &format!("{mode} completed"));
        self.selected = Some(sel);
    }

    /// IDLE (RFC 2177): report changes as they happen until DONE.
    pub(crate) async fn idle<S>(&mut self, io: &mut Io<S>, tag: &str) -> io::Result<Flow>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        io.out.extend_from_slice(b"+ idling\r\n");
        if let Some(sel) = self.selected.as_mut() {
            sel.absorb();
            sel.announce(&mut io.out, true, self.condstore);
        }
        loop {
            io.flush().await?;
            let max = self.sh.cfg.max_line_length;
            let input = match self.selected.as_mut() {
                Some(sel) => {
                    tokio::select! {
                        input = io.read_line(max, Some(&self.ctx.shutdown)) => Some(input?),
                        () = sel.changed() => None,
                    }
                }
                None => Some(io.read_line(max, Some(&self.ctx.shutdown)).await?),
            };
            match input {
                None => {
                    if let Some(sel) = self.selected.as_mut() {
                        sel.absorb();
                        sel.announce(&mut io.out, true, self.condstore);
                    }
                }
                Some(Input::Line(l)) => {
                    let l = l
                        .strip_suffix(b"\r\n")
                        .or_else(|| l.strip_suffix(b"\n"))
                        .unwrap_or(&l);
                    if l.eq_ignore_ascii_case(b"DONE") {
                        status_line(&mut io.out, tag, "OK", "IDLE terminated");
                        return Ok(Flow::Continue);
                    }
                    status_line(&mut io.out, tag, "BAD", "expected DONE");
                    return Ok(self.after_error(io));
                }
                Some(Input::TooLong) => {
                    status_line(&mut io.out, tag, "BAD", "expected DONE");
                    return Ok(self.after_error(io));
                }
                Some(Input::Eof) => return Ok(Flow::Close),
                Some(Input::Timeout) => {
                    io.out
                        .extend_from_slice(b"* BYE idle timeout, closing connection\r\n");
                    return Ok(Flow::Close);
                }
                Some(Input::Shutdown) => {
                    io.out
                        .extend_from_slice(b"* BYE [UNAVAILABLE] server shutting down\r\n");
                    return Ok(Flow::Close);
                }
            }
        }
    }
}
