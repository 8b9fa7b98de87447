//! Commands on the selected mailbox's messages: STORE (with UNCHANGEDSINCE), COPY and MOVE
//! (with UIDPLUS `COPYUID`), EXPUNGE and UID EXPUNGE, CLOSE and UNSELECT. FETCH lives in
//! module `fetch`, SEARCH and SORT in module `searching`.
//!
//! Every write goes through the session's `MailboxHandle`; the session's own changes come back
//! as store events and are announced like anyone else's (EXPUNGE after EXPUNGE and MOVE).
//! Security note: sequence sets stay ranges until they meet the session's view.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::store::{FlagOp, Flags};

use super::command::{Command, StoreOp};
use super::io::Io;
use super::response::{status_line, store_error};
use super::sequence::SeqSet;
use super::session::Session;

impl Session<'_> {
    /// Runs a command that needs a selected mailbox. Returns true for a client error to count.
    pub async fn message_command<S>(
        &mut self,
        io: &mut Io<S>,
        tag: &str,
        cmd: Command,
    ) -> io::Result<bool>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        if self.selected.as_ref().is_some_and(|s| s.gone)
            && !matches!(cmd, Command::Close | Command::Unselect)
        {
            status_line(
                &mut io.out,
                tag,
                "NO",
                "[NONEXISTENT] the selected mailbox was deleted",
            );
            return Ok(false);
        }
        match cmd {
            Command::Fetch {
                uid,
                set,
                items,
                changed_since,
            } => return self.fetch(io, tag, uid, &set, items, changed_since).await,
            Command::Store {
                uid,
                set,
                op,
                silent,
                flags,
                unchanged_since,
            } => {
                return Ok(self
                    .store(io, tag, uid, &set, op, silent, &flags, unchanged_since)
                    .await)
            }
            Command::Copy { uid, set, mailbox } => {
                return Ok(self.copy(io, tag, uid, &set, &mailbox, false).await)
            }
            Command::Move { uid, set, mailbox } => {
                return Ok(self.copy(io, tag, uid, &set, &mailbox, true).await)
            }
            Command::Expunge { uids } => return Ok(self.expunge(io, tag, uids.as_ref()).await),
            Command::Close | Command::Unselect => {
                if let Some(sel) = self.selected.take() {
                    if matches!(cmd, Command::Close) && !sel.read_only && !sel.gone {
                        if let Err(e) = sel.handle.expunge_deleted(None).await {
                            tracing::warn!(error = %e, "expunge at CLOSE failed");
                        }
                    }
                }
                status_line(&mut io.out, tag, "OK", &format!("{} completed", cmd.name()));
            }
            Command::Search { uid, ret, key, .. } => {
                return Ok(self.search(io, tag, uid, ret, &key, None).await)
            }
            Command::Sort {
                uid,
                ret,
                keys,
                key,
            } => return Ok(self.search(io, tag, uid, ret, &key, Some(&keys)).await),
            _ => {
                status_line(&mut io.out, tag, "BAD", "unexpected command");
                return Ok(true);
            }
        }
        Ok(false)
    }

    #[allow(clippy::too_many_arguments)]
    async fn store<S>(
        &mut self,
        io: &mut Io<S>,
        tag: &str,
        uid: bool,
        set: &SeqSet,
        op: StoreOp,
        silent: bool,
        flags: &[String],
        unchanged_since: Option<u64>,
    ) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        if unchanged_since.is_some() {
            self.condstore = true;
        }
        let condstore = self.condstore;
        let Some(sel) = self.selected.as_mut() else {
            return true;
        };
        if sel.read_only {
            status_line(&mut io.out, tag, "NO", "[READ-ONLY] mailbox is read-only");
            return false;
        }
        let idx = match sel.resolve(set, uid) {
            Ok(i) => i,
            Err(e) => {
                status_line(&mut io.out, tag, "BAD", &e);
                return true;
            }
        };
        let given = match Flags::from_imap(flags.iter().map(String::as_str)) {
            Ok(f) => f,
            Err(e) => {
                status_line(&mut io.out, tag, "BAD", &e.to_string());
                return true;
            }
        };
        let uids: Vec<u32> = idx
            .iter()
            .map(|&i| sel.msgs[i].uid)
            .filter(|&u| !sel.is_expunged(u))
            .collect();
        let op = match op {
            StoreOp::Add => FlagOp::Add,
            StoreOp::Remove => FlagOp::Remove,
            StoreOp::Replace => FlagOp::Replace,
        };
        let outcome = match sel
            .handle
            .store_flags(&uids, op, &given, unchanged_since)
            .await
        {
            Ok(o) => o,
            Err(e) => {
                let (kind, text) = store_error(&e);
                status_line(&mut io.out, tag, kind, &text);
                return false;
            }
        };
        let mut reported: Vec<u32> = Vec::new();
        for u in outcome.updated.iter().chain(outcome.unchanged.iter()) {
            sel.set_flags(u.uid, u.flags.clone(), u.modseq);
            reported.push(u.uid);
        }
        reported.sort_unstable();
        if !silent || unchanged_since.is_some() {
            for u in reported {
                if let Some(i) = sel.index_of(u) {
                    sel.flags_response(&mut io.out, i, condstore);
                }
            }
        }
        sel.absorb();
        sel.announce(&mut io.out, uid, condstore);
        if outcome.conflicts.is_empty() {
            status_line(&mut io.out, tag, "OK", "STORE completed");
        } else {
            let mut nums: Vec<u32> = if uid {
                outcome.conflicts.clone()
            } else {
                outcome
                    .conflicts
                    .iter()
                    .filter_map(|&u| sel.index_of(u).map(|i| i as u32 + 1))
                    .collect()
            };
            nums.sort_unstable();
            let text = format!(
                "[MODIFIED {}] conditional STORE failed",
                SeqSet::from_sorted(&nums)
            );
            status_line(&mut io.out, tag, "OK", &text);
        }
        false
    }

    async fn copy<S>(
        &mut self,
        io: &mut Io<S>,
        tag: &str,
        uid: bool,
        set: &SeqSet,
        wire: &str,
        is_move: bool,
    ) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let dest = match self.decode_name(wire) {
            Ok(d) => d,
            Err(e) => {
                status_line(&mut io.out, tag, "NO", &format!("[CANNOT] {e}"));
                return false;
            }
        };
        let quota = self.quota();
        let condstore = self.condstore;
        self.seed_recent(&dest).await;
        let Some(sel) = self.selected.as_mut() else {
            return true;
        };
        if is_move && sel.read_only {
            status_line(&mut io.out, tag, "NO", "[READ-ONLY] mailbox is read-only");
            return false;
        }
        let idx = match sel.resolve(set, uid) {
            Ok(i) => i,
            Err(e) => {
                status_line(&mut io.out, tag, "BAD", &e);
                return true;
            }
        };
        let uids: Vec<u32> = idx
            .iter()
            .map(|&i| sel.msgs[i].uid)
            .filter(|&u| !sel.is_expunged(u))
            .collect();
        if uids.is_empty() {
            status_line(
                &mut io.out,
                tag,
                "OK",
                &format!(
                    "{} completed, nothing to do",
                    if is_move { "MOVE" } else { "COPY" }
                ),
            );
            return false;
        }
        let result = if is_move {
            sel.handle.move_to(&uids, &dest).await
        } else {
            sel.handle.copy(&uids, &dest, quota).await
        };
        match result {
            Ok(res) => {
                let src: Vec<u32> = res.mapping.iter().map(|m| m.0).collect();
                let dst: Vec<u32> = res.mapping.iter().map(|m| m.1).collect();
                let code = if src.is_empty() {
                    String::new()
                } else {
                    format!(
                        "[COPYUID {} {} {}] ",
                        res.uidvalidity,
                        seq_list(&src),
                        seq_list(&dst)
                    )
                };
                if is_move {
                    io.out
                        .extend_from_slice(format!("* OK {code}moved\r\n").as_bytes());
                    sel.absorb();
                    sel.announce(&mut io.out, true, condstore);
                    status_line(&mut io.out, tag, "OK", "MOVE completed");
                } else {
                    sel.absorb();
                    sel.announce(&mut io.out, true, condstore);
                    status_line(&mut io.out, tag, "OK", &format!("{code}COPY completed"));
                }
            }
            Err(e) => {
                let (kind, text) = store_error(&e);
                let text = text.replacen("[NONEXISTENT]", "[TRYCREATE]", 1);
                status_line(&mut io.out, tag, kind, &text);
            }
        }
        false
    }

    async fn expunge<S>(&mut self, io: &mut Io<S>, tag: &str, uids: Option<&SeqSet>) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let condstore = self.condstore;
        let Some(sel) = self.selected.as_mut() else {
            return true;
        };
        if sel.read_only {
            status_line(&mut io.out, tag, "NO", "[READ-ONLY] mailbox is read-only");
            return false;
        }
        let within: Option<Vec<u32>> = match uids {
            Some(set) => match sel.resolve(set, true) {
                Ok(idx) => Some(idx.iter().map(|&i| sel.msgs[i].uid).collect()),
                Err(e) => {
                    status_line(&mut io.out, tag, "BAD", &e);
                    return true;
                }
            },
            None => None,
        };
        match sel.handle.expunge_deleted(within.as_deref()).await {
            Ok(_) => {
                sel.absorb();
                sel.announce(&mut io.out, true, condstore);
                let text = if condstore {
                    format!("[HIGHESTMODSEQ {}] EXPUNGE completed", sel.highestmodseq)
                } else {
                    "EXPUNGE completed".to_string()
                };
                status_line(&mut io.out, tag, "OK", &text);
            }
            Err(e) => {
                let (kind, text) = store_error(&e);
                status_line(&mut io.out, tag, kind, &text);
            }
        }
        false
    }
}

/// A UID list for COPYUID: ascending ranges, in the order given (the two sets correspond).
fn seq_list(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}
