//! Mailbox-level commands: LIST and LSUB (module `list` decides what they answer), CREATE,
//! DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS (with RECENT for IMAP4rev1 sessions, SIZE
//! and DELETED), APPEND (with `UTF8 (~{n})` after UTF8=ACCEPT), and QUOTA's
//! GETQUOTA/GETQUOTAROOT/SETQUOTA.
//!
//! Names cross the wire in modified UTF-7 (UTF-8 after IMAP4rev2 or UTF8=ACCEPT) and reach the
//! store as normalised UTF-8. Security note: every store call names the logged-in user only.

use std::collections::BTreeSet;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::store::{Flags, MailboxStatus, MessageSource, SEPARATOR};

use super::command::{Command, ListOpts, StatusItem};
use super::io::Io;
use super::list::{attributes_of, normalize_pattern, plan};
use super::mutf7;
use super::recent::MailboxKey;
use super::response::{mailbox as write_mailbox, mailbox_name, status_line, store_error};
use super::session::Session;

impl Session<'_> {
    fn user_name(&self) -> String {
        self.user.clone().unwrap_or_default()
    }

    /// Runs a mailbox-level command. Returns true when it was a client error to count.
    pub async fn mailbox_command<S>(&mut self, io: &mut Io<S>, tag: &str, cmd: Command) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let user = self.user_name();
        let store = self.sh.store.clone();
        let name_of = |s: &Self, wire: &str| s.decode_name(wire);
        let result: Result<String, (&'static str, String)> = match cmd {
            Command::Create {
                mailbox,
                special_use,
            } => match name_of(self, mailbox.trim_end_matches(SEPARATOR)) {
                Ok(name) => store
                    .create_mailbox(&user, &name, special_use)
                    .await
                    .map(|_| "CREATE completed".into())
                    .map_err(|e| store_error(&e)),
                Err(e) => Err(("NO", format!("[CANNOT] {e}"))),
            },
            Command::Delete(mailbox) => match name_of(self, &mailbox) {
                Ok(name) => {
                    let selected_here = self
                        .selected
                        .as_ref()
                        .and_then(|s| s.handle.name())
                        .is_some_and(|n| n == name);
                    let r = store.delete_mailbox(&user, &name).await;
                    if r.is_ok() && selected_here {
                        self.selected = None;
                    }
                    r.map(|_| "DELETE completed".into())
                        .map_err(|e| store_error(&e))
                }
                Err(e) => Err(("NO", format!("[CANNOT] {e}"))),
            },
            Command::Rename { from, to } => match (name_of(self, &from), name_of(self, &to)) {
                (Ok(a), Ok(b)) => store
                    .rename_mailbox(&user, &a, &b)
                    .await
                    .map(|_| "RENAME completed".into())
                    .map_err(|e| store_error(&e)),
                (Err(e), _) | (_, Err(e)) => Err(("NO", format!("[CANNOT] {e}"))),
            },
            Command::Subscribe(mailbox) => match name_of(self, &mailbox) {
                Ok(name) => store
                    .subscribe(&user, &name)
                    .await
                    .map(|_| "SUBSCRIBE completed".into())
                    .map_err(|e| store_error(&e)),
                Err(e) => Err(("NO", format!("[CANNOT] {e}"))),
            },
            Command::Unsubscribe(mailbox) => match name_of(self, &mailbox) {
                Ok(name) => store
                    .unsubscribe(&user, &name)
                    .await
                    .map(|_| "UNSUBSCRIBE completed".into())
                    .map_err(|e| store_error(&e)),
                Err(e) => Err(("NO", format!("[CANNOT] {e}"))),
            },
            Command::List {
                reference,
                patterns,
                opts,
            } => self.list(io, &reference, &patterns, &opts).await,
            Command::Status { mailbox, items } => match name_of(self, &mailbox) {
                Ok(name) => match self.status_of(&name, &items).await {
                    Ok((st, recent)) => {
                        let utf8 = self.utf8_names();
                        status_response(&mut io.out, &name, utf8, &st, recent, &items);
                        Ok("STATUS completed".into())
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(("NO", format!("[CANNOT] {e}"))),
            },
            Command::Append {
                mailbox,
                flags,
                date,
                message,
                ..
            } => self.append(&mailbox, &flags, date, message).await,
            Command::GetQuota(root) => {
                if root.is_empty() {
                    self.quota_response(&mut io.out)
                        .await
                        .map(|_| "GETQUOTA completed".into())
                } else {
                    Err(("NO", "[NONEXISTENT] no such quota root".into()))
                }
            }
            Command::GetQuotaRoot(mailbox) => match name_of(self, &mailbox) {
                Ok(_) => {
                    let has = self.quota() > 0;
                    io.out.extend_from_slice(b"* QUOTAROOT ");
                    write_mailbox(&mut io.out, &mailbox);
                    io.out
                        .extend_from_slice(if has { b" \"\"\r\n" } else { b"\r\n" });
                    if has {
                        let _ = self.quota_response(&mut io.out).await;
                    }
                    Ok("GETQUOTAROOT completed".into())
                }
                Err(e) => Err(("NO", format!("[CANNOT] {e}"))),
            },
            Command::SetQuota => Err(("NO", "[NOPERM] quotas are set by the administrator".into())),
            _ => Err(("BAD", "not a mailbox command".into())),
        };
        // A change to the selected mailbox (APPEND, a deleted mailbox) shows up now.
        if let Some(sel) = self.selected.as_mut() {
            sel.absorb();
            sel.announce(&mut io.out, true, self.condstore);
        }
        match result {
            Ok(text) => {
                status_line(&mut io.out, tag, "OK", &text);
                false
            }
            Err((kind, text)) => {
                status_line(&mut io.out, tag, kind, &text);
                kind == "BAD"
            }
        }
    }

    async fn quota_response(&self, out: &mut Vec<u8>) -> Result<(), (&'static str, String)> {
        let quota = self.quota();
        if quota == 0 {
            return Err(("NO", "[NONEXISTENT] no quota for this user".into()));
        }
        let used = self
            .sh
            .store
            .usage(&self.user_name())
            .await
            .map_err(|e| store_error(&e))?
            .bytes;
        out.extend_from_slice(
            format!(
                "* QUOTA \"\" (STORAGE {} {})\r\n",
                used.div_ceil(1024),
                quota / 1024
            )
            .as_bytes(),
        );
        Ok(())
    }

    async fn append(
        &mut self,
        wire: &str,
        flags: &[String],
        date: Option<i64>,
        message: Vec<u8>,
    ) -> Result<String, (&'static str, String)> {
        let name = self
            .decode_name(wire)
            .map_err(|e| ("NO", format!("[CANNOT] {e}")))?;
        let spooled = self.spooled.take();
        if message.is_empty() && spooled.is_none() {
            return Err(("NO", "[CANNOT] empty message".into()));
        }
        if message.len() as u64 > u64::from(self.sh.cfg.max_append_size) {
            return Err(("NO", "[TOOBIG] message too large".into()));
        }
        let flags = Flags::from_imap(flags.iter().map(String::as_str))
            .map_err(|e| ("NO", format!("[CANNOT] {e}")))?;
        let user = self.user_name();
        let handle = self
            .sh
            .store
            .open_mailbox(&user, &name)
            .await
            .map_err(|e| {
                let (kind, text) = store_error(&e);
                if text.starts_with("[NONEXISTENT]") {
                    (kind, text.replacen("[NONEXISTENT]", "[TRYCREATE]", 1))
                } else {
                    (kind, text)
                }
            })?;
        // Whoever appends, the next IMAP4rev1 session sees the message as \Recent.
        if let Ok(snap) = handle.snapshot() {
            let key = MailboxKey {
                user: user.clone(),
                uidvalidity: snap.uidvalidity,
            };
            self.sh.recent.seed(&key, &snap.messages);
        }
        let quota = self.quota();
        let source = match &spooled {
            Some(file) => MessageSource::File(file.path().to_path_buf()),
            None => MessageSource::from(message),
        };
        let d = handle
            .append(source, flags, date, quota)
            .await
            .map_err(|e| store_error(&e))?;
        drop(spooled);
        Ok(format!(
            "[APPENDUID {} {}] APPEND completed",
            d.uidvalidity, d.uid
        ))
    }

    /// STATUS figures of a mailbox, and its RECENT count when asked for.
    async fn status_of(
        &self,
        name: &str,
        items: &[StatusItem],
    ) -> Result<(MailboxStatus, u32), (&'static str, String)> {
        let user = self.user_name();
        if !items.contains(&StatusItem::Recent) {
            let st = self.sh.store.status(&user, name).await;
            return st.map(|st| (st, 0)).map_err(|e| store_error(&e));
        }
        let handle = self
            .sh
            .store
            .open_mailbox(&user, name)
            .await
            .map_err(|e| store_error(&e))?;
        let snap = handle.snapshot().map_err(|e| store_error(&e))?;
        let key = MailboxKey {
            user,
            uidvalidity: snap.uidvalidity,
        };
        let marker = self.sh.recent.marker(&key, &snap.messages);
        let recent = snap.messages.iter().filter(|m| m.uid > marker).count() as u32;
        Ok((MailboxStatus::of(&snap), recent))
    }

    async fn list<S>(
        &mut self,
        io: &mut Io<S>,
        reference: &str,
        patterns: &[String],
        opts: &ListOpts,
    ) -> Result<String, (&'static str, String)>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let done = if opts.lsub {
            "LSUB completed"
        } else {
            "LIST completed"
        };
        let keyword = if opts.lsub { "LSUB" } else { "LIST" };
        if patterns.len() == 1 && patterns[0].is_empty() {
            io.out
                .extend_from_slice(format!("* {keyword} (\\Noselect) \"/\" \"\"\r\n").as_bytes());
            return Ok(done.into());
        }
        let user = self.user_name();
        let store = &self.sh.store;
        let all = store
            .list_mailboxes(&user)
            .await
            .map_err(|e| store_error(&e))?;
        let subs: BTreeSet<String> = store
            .subscriptions(&user)
            .await
            .map_err(|e| store_error(&e))?
            .into_iter()
            .collect();
        let utf8 = self.utf8_names();
        let mut decoded = Vec::new();
        for p in patterns {
            let full = format!("{reference}{p}");
            let d = if utf8 {
                full
            } else {
                mutf7::decode(&full).map_err(|e| ("BAD", e.to_string()))?
            };
            decoded.push(normalize_pattern(&d));
        }
        let lines = plan(&all, &subs, &decoded, opts, self.rev2);
        let mut statuses = Vec::new();
        for line in lines {
            io.out.extend_from_slice(
                format!("* {keyword} ({}) \"/\" ", line.attrs.join(" ")).as_bytes(),
            );
            mailbox_name(&mut io.out, &line.name, utf8);
            if !line.childinfo.is_empty() {
                let items: Vec<String> =
                    line.childinfo.iter().map(|c| format!("\"{c}\"")).collect();
                io.out.extend_from_slice(
                    format!(" (\"CHILDINFO\" ({}))", items.join(" ")).as_bytes(),
                );
            }
            io.out.extend_from_slice(b"\r\n");
            if line.exists && opts.return_status.is_some() {
                statuses.push(line.name);
            }
        }
        if let Some(items) = &opts.return_status {
            for name in statuses {
                if let Ok((st, recent)) = self.status_of(&name, items).await {
                    status_response(&mut io.out, &name, utf8, &st, recent, items);
                }
            }
        }
        io.flush_if_full()
            .await
            .map_err(|_| ("NO", "connection failed".to_string()))?;
        Ok(done.into())
    }

    /// Starts the `\Recent` marker of a mailbox messages are about to be copied into.
    pub(crate) async fn seed_recent(&self, name: &str) {
        let user = self.user_name();
        let Ok(handle) = self.sh.store.open_mailbox(&user, name).await else {
            return;
        };
        if let Ok(snap) = handle.snapshot() {
            let key = MailboxKey {
                user,
                uidvalidity: snap.uidvalidity,
            };
            self.sh.recent.seed(&key, &snap.messages);
        }
    }

    /// `* LIST (attributes) "/" name` for one mailbox (IMAP4rev2 SELECT).
    pub(crate) async fn list_one(&self, out: &mut Vec<u8>, user: &str, name: &str) {
        let Ok(all) = self.sh.store.list_mailboxes(user).await else {
            return;
        };
        let attrs = attributes_of(&all, name);
        out.extend_from_slice(format!("* LIST ({}) \"/\" ", attrs.join(" ")).as_bytes());
        mailbox_name(out, name, self.utf8_names());
        out.extend_from_slice(b"\r\n");
    }
}

/// `* STATUS name (MESSAGES n …)`.
pub fn status_response(
    out: &mut Vec<u8>,
    name: &str,
    utf8: bool,
    st: &MailboxStatus,
    recent: u32,
    items: &[StatusItem],
) {
    out.extend_from_slice(b"* STATUS ");
    mailbox_name(out, name, utf8);
    let parts: Vec<String> = items
        .iter()
        .map(|i| match i {
            StatusItem::Messages => format!("MESSAGES {}", st.messages),
            StatusItem::Recent => format!("RECENT {recent}"),
            StatusItem::UidNext => format!("UIDNEXT {}", st.uidnext),
            StatusItem::UidValidity => format!("UIDVALIDITY {}", st.uidvalidity),
            StatusItem::Unseen => format!("UNSEEN {}", st.unseen),
            StatusItem::Deleted => format!("DELETED {}", st.deleted),
            StatusItem::Size => format!("SIZE {}", st.size),
            StatusItem::HighestModseq => format!("HIGHESTMODSEQ {}", st.highestmodseq),
        })
        .collect();
    out.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
}
