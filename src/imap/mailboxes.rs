//! Mailbox-level commands: LIST (with LIST-EXTENDED selection and return options, CHILDREN,
//! SPECIAL-USE, LIST-STATUS), LSUB, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS,
//! APPEND, and QUOTA's GETQUOTA/GETQUOTAROOT/SETQUOTA.
//!
//! Names cross the wire in modified UTF-7 and reach the store as normalised UTF-8. Wildcard
//! matching is a dynamic programme over (pattern, name), so a pattern of many `*` cannot make
//! it exponential. Security note: every store call names the logged-in user only.

use std::collections::{BTreeMap, BTreeSet};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::store::{Flags, MailboxStatus, MessageSource, SEPARATOR};

use super::command::{Command, ListOpts, StatusItem};
use super::io::Io;
use super::mutf7;
use super::response::{mailbox as write_mailbox, status_line, store_error};
use super::session::Session;

/// Whether `name` matches the LIST pattern (`*` anything, `%` anything but the separator).
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // row[j]: pattern[..i] matches name[..j]
    let mut row = vec![false; n.len() + 1];
    row[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                let mut reach = false;
                for j in 0..=n.len() {
                    if row[j] {
                        reach = true;
                    }
                    next[j] = reach;
                    if pc == '%' && j < n.len() && n[j] == SEPARATOR {
                        reach = false;
                    }
                }
            }
            c => {
                for j in 0..n.len() {
                    next[j + 1] = row[j] && n[j] == c;
                }
            }
        }
        row = next;
    }
    row[n.len()]
}

/// Normalises a pattern's leading INBOX (case-insensitive, like the name).
fn normalize_pattern(p: &str) -> String {
    match p.get(..5) {
        Some(head)
            if head.eq_ignore_ascii_case("INBOX")
                && (p.len() == 5 || p[5..].starts_with(SEPARATOR)) =>
        {
            format!("INBOX{}", &p[5..])
        }
        _ => p.to_string(),
    }
}

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
                Ok(name) => match store.status(&user, &name).await {
                    Ok(st) => {
                        status_response(&mut io.out, &mailbox, &st, &items);
                        Ok("STATUS completed".into())
                    }
                    Err(e) => Err(store_error(&e)),
                },
                Err(e) => Err(("NO", format!("[CANNOT] {e}"))),
            },
            Command::Append {
                mailbox,
                flags,
                date,
                message,
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
        let mut decoded = Vec::new();
        for p in patterns {
            let full = format!("{reference}{p}");
            let d = mutf7::decode(&full).map_err(|e| ("BAD", e.to_string()))?;
            decoded.push(normalize_pattern(&d));
        }
        // Every name to consider, with (exists, special use, has children).
        let mut names: BTreeMap<String, (bool, Option<&'static str>, bool)> = BTreeMap::new();
        for m in &all {
            names.insert(
                m.name.clone(),
                (true, m.special_use.map(|u| u.imap_name()), m.has_children),
            );
        }
        for m in &all {
            let mut n = m.name.as_str();
            while let Some(i) = n.rfind(SEPARATOR) {
                n = &n[..i];
                names.entry(n.to_string()).or_insert((false, None, true)).2 = true;
            }
        }
        if opts.subscribed {
            for s in &subs {
                names.entry(s.clone()).or_insert((false, None, false));
            }
        }
        let mut statuses = Vec::new();
        for (name, &(exists, special, children)) in &names {
            if !decoded.iter().any(|p| wildcard_match(p, name)) {
                continue;
            }
            let subscribed = subs.contains(name);
            if opts.subscribed && !subscribed {
                continue;
            }
            if opts.special_use_only && special.is_none() {
                continue;
            }
            if opts.lsub && !subscribed {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if !exists {
                attrs.push(if opts.subscribed && !opts.lsub {
                    "\\NonExistent"
                } else {
                    "\\Noselect"
                });
            }
            if !opts.lsub {
                attrs.push(if children {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
                if subscribed && (opts.subscribed || opts.return_subscribed) {
                    attrs.push("\\Subscribed");
                }
                if let Some(s) = special {
                    attrs.push(s);
                }
            }
            let wire = mutf7::encode(name);
            io.out
                .extend_from_slice(format!("* {keyword} ({}) \"/\" ", attrs.join(" ")).as_bytes());
            write_mailbox(&mut io.out, &wire);
            io.out.extend_from_slice(b"\r\n");
            if exists && opts.return_status.is_some() {
                statuses.push((name.clone(), wire));
            }
        }
        if let Some(items) = &opts.return_status {
            for (name, wire) in statuses {
                if let Ok(st) = store.status(&user, &name).await {
                    status_response(&mut io.out, &wire, &st, items);
                }
            }
        }
        io.flush_if_full()
            .await
            .map_err(|_| ("NO", "connection failed".to_string()))?;
        Ok(done.into())
    }
}

/// `* STATUS name (MESSAGES n …)`.
pub fn status_response(out: &mut Vec<u8>, wire: &str, st: &MailboxStatus, items: &[StatusItem]) {
    out.extend_from_slice(b"* STATUS ");
    write_mailbox(out, wire);
    let parts: Vec<String> = items
        .iter()
        .map(|i| match i {
            StatusItem::Messages => format!("MESSAGES {}", st.messages),
            StatusItem::Recent => "RECENT 0".to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let cases = [
            ("*", "a/b/c", true),
            ("%", "a/b", false),
            ("%", "INBOX", true),
            ("a/%", "a/b", true),
            ("a/%", "a/b/c", false),
            ("a/*", "a/b/c", true),
            ("*c", "a/b/c", true),
            ("a%c", "abc", true),
            ("a%c", "a/c", false),
            ("", "x", false),
            ("x", "x", true),
        ];
        for (p, n, want) in cases {
            assert_eq!(wildcard_match(p, n), want, "{p} {n}");
        }
        // Many wildcards stay polynomial.
        let p = "*".repeat(200) + "x";
        assert!(!wildcard_match(&p, &"a".repeat(1000)));
        assert_eq!(normalize_pattern("inbox/%"), "INBOX/%");
        assert_eq!(normalize_pattern("inboxes"), "inboxes");
    }
}
