//! Mailbox management for one user: create, delete, rename, list, subscriptions.
//!
//! Each change is committed by replacing `mailboxes.json` atomically; directories are prepared
//! before the commit (a new mailbox is built in `tmp/` and renamed into `mbox/`; a deleted one is
//! moved to `trash/`), so a crash leaves either the old list with an unused directory (removed
//! at load) or the new list. All functions block and run under the user's lock; the lock order
//! is user, then mailbox. This module never touches message files.
//!
//! Security note: names arrive normalised by the caller ([`normalize_mailbox`]); the list is
//! bounded by `StoreConfig::max_mailboxes`.

use std::collections::HashSet;
use std::fs;
use std::sync::Arc;

use serde::Serialize;

use super::error::{at, StoreError};
use super::fsio::{fsync_dir, unique_name, write_atomic, Step};
use super::index::write_index;
use super::mailbox::full_index;
use super::names::{is_same_or_below, normalize_mailbox, INBOX, SEPARATOR};
use super::recover;
use super::user::{MetaEntry, MetaFile, SpecialUse, UserInner, UserState, META_FILE, NAME_HINT};
use super::view::MailboxEvent;

/// One mailbox in a LIST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailboxInfo {
    pub name: String,
    pub special_use: Option<SpecialUse>,
    pub subscribed: bool,
    /// Another mailbox is below this one (`\HasChildren`).
    pub has_children: bool,
}

impl UserState {
    fn save(&self, meta: &MetaFile) -> Result<(), StoreError> {
        let json =
            serde_json::to_vec_pretty(meta).map_err(|e| StoreError::Internal(e.to_string()))?;
        write_atomic(&self.dir.join(META_FILE), &json, &self.sh.faults)
    }

    /// Creates the user's directories the first time they are needed.
    fn ensure_on_disk(&self, inner: &mut UserInner) -> Result<(), StoreError> {
        if inner.on_disk {
            return Ok(());
        }
        for sub in ["mbox", "tmp", "trash"] {
            let p = self.dir.join(sub);
            fs::create_dir_all(&p).map_err(at(&p))?;
        }
        // Make the new names durable up to the store root.
        fsync_dir(&self.dir)?;
        if let Some(shard) = self.dir.parent() {
            fsync_dir(shard)?;
            if let Some(users) = shard.parent() {
                fsync_dir(users)?;
            }
        }
        inner.on_disk = true;
        Ok(())
    }

    /// Builds an empty mailbox directory and moves it to `mbox/<id>`; not yet listed.
    fn build_mailbox_dir(&self, id: u64, uidvalidity: u32, name: &str) -> Result<(), StoreError> {
        let tmp = self.dir.join("tmp").join(format!("mbox-{}", unique_name()));
        let res = (|| {
            fs::create_dir(&tmp).map_err(at(&tmp))?;
            fs::create_dir(tmp.join("msg")).map_err(at(&tmp))?;
            fs::write(tmp.join(NAME_HINT), name).map_err(at(&tmp))?;
            write_index(&tmp, &full_index(uidvalidity, 1, 1, &[]), &self.sh.faults)?;
            fsync_dir(&tmp.join("msg"))?;
            self.sh.faults.at(Step::MailboxBuilt, &tmp)?;
            let dest = self.mbox_dir(id);
            fs::rename(&tmp, &dest).map_err(at(&dest))?;
            self.sh.faults.at(Step::MailboxMoved, &dest)?;
            fsync_dir(&self.dir.join("mbox"))
        })();
        if res.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        res
    }

    /// Loads a freshly built mailbox directory and registers it as open.
    fn open_new(&self, inner: &mut UserInner, id: u64) -> Result<(), StoreError> {
        let (mb, _) = recover::load(
            &self.sh,
            id,
            &self.mbox_dir(id),
            Arc::clone(&self.usage),
            &mut || {
                // A freshly written index is never damaged; if it were, a counter value is
                // still a valid UIDVALIDITY.
                inner.meta.next_uidvalidity
            },
        )?;
        inner.open.insert(id, Arc::new(mb));
        Ok(())
    }

    /// CREATE. `name` is normalised.
    pub(crate) fn create_mailbox(
        &self,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        self.create_locked(&mut inner, name, special_use)
    }

    fn create_locked(
        &self,
        inner: &mut UserInner,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<(), StoreError> {
        if inner.meta.find(name).is_some() {
            return Err(StoreError::MailboxExists(name.to_string()));
        }
        let max = self.sh.config.max_mailboxes;
        if max > 0 && inner.meta.mailboxes.len() >= max {
            return Err(StoreError::TooManyMailboxes(max));
        }
        self.ensure_on_disk(inner)?;
        let mut meta = inner.meta.clone();
        let id = meta.next_id;
        meta.next_id += 1;
        let uidvalidity = meta.alloc_uidvalidity();
        self.build_mailbox_dir(id, uidvalidity, name)?;
        meta.mailboxes.push(MetaEntry {
            name: name.to_string(),
            id,
            special_use,
        });
        if let Err(e) = self.save(&meta) {
            // Unlisted, so nothing refers to it; if removal fails the next load removes it.
            let _ = fs::remove_dir_all(self.mbox_dir(id));
            return Err(e);
        }
        inner.meta = meta;
        self.open_new(inner, id)
    }

    /// Creates INBOX if it does not exist yet.
    pub(crate) fn ensure_inbox(&self) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        if inner.meta.find(INBOX).is_none() {
            self.create_locked(&mut inner, INBOX, None)?;
        }
        Ok(())
    }

    /// Creates the given default mailboxes that are missing and subscribes them. A default
    /// is skipped when another mailbox already has its special use (a migrated "Sent Items").
    pub(crate) fn ensure_defaults(
        &self,
        defaults: &[(String, Option<SpecialUse>)],
    ) -> Result<Vec<String>, StoreError> {
        let mut inner = self.lock()?;
        let mut created = Vec::new();
        for (name, use_) in defaults {
            let cfg = &self.sh.config;
            let name = normalize_mailbox(name, cfg.max_mailbox_name, cfg.max_depth)?;
            let taken = inner.meta.find(&name).is_some()
                || use_.is_some_and(|u| {
                    inner
                        .meta
                        .mailboxes
                        .iter()
                        .any(|e| e.special_use == Some(u))
                });
            if taken {
                continue;
            }
            self.create_locked(&mut inner, &name, *use_)?;
            created.push(name);
        }
        if !created.is_empty() {
            let mut meta = inner.meta.clone();
            meta.subscriptions.extend(created.iter().cloned());
            self.save(&meta)?;
            inner.meta = meta;
        }
        Ok(created)
    }

    /// DELETE. The mailbox's sessions get [`MailboxEvent::Deleted`]; inferiors stay.
    pub(crate) fn delete_mailbox(&self, name: &str) -> Result<(), StoreError> {
        if name == INBOX {
            return Err(StoreError::NotPermitted("INBOX cannot be deleted"));
        }
        let mut inner = self.lock()?;
        let entry = inner
            .meta
            .find(name)
            .cloned()
            .ok_or_else(|| StoreError::MailboxNotFound(name.to_string()))?;
        let mb = inner
            .open
            .get(&entry.id)
            .cloned()
            .ok_or_else(|| StoreError::MailboxNotFound(name.to_string()))?;
        let trash = self
            .dir
            .join("trash")
            .join(format!("{}.{}", entry.id, unique_name()));
        let src = self.mbox_dir(entry.id);
        let (uidvalidity, bytes, messages) = {
            // Under the mailbox's locks, so no commit can slip in between the move and the mark.
            let _log = mb.lock_log()?;
            let mut st = mb.lock()?;
            fs::rename(&src, &trash).map_err(at(&src))?;
            st.deleted = true;
            (st.uidvalidity, st.bytes, st.messages.len() as u64)
        };
        let moved = self
            .sh
            .faults
            .at(Step::MailboxMoved, &trash)
            .and_then(|_| fsync_dir(&self.dir.join("mbox")));
        let mut meta = inner.meta.clone();
        meta.mailboxes.retain(|e| e.id != entry.id);
        meta.next_uidvalidity = meta.next_uidvalidity.max(uidvalidity.saturating_add(1));
        if let Err(e) = moved.and_then(|_| self.save(&meta)) {
            // Put it back: the list still names it.
            if fs::rename(&trash, &src).is_ok() {
                if let Ok(mut st) = mb.lock() {
                    st.deleted = false;
                }
            }
            return Err(e);
        }
        inner.meta = meta;
        inner.open.remove(&entry.id);
        drop(inner);
        mb.notify(MailboxEvent::Deleted);
        self.usage.release(bytes, messages);
        if let Err(e) = fs::remove_dir_all(&trash) {
            tracing::warn!(error = %e, "cannot remove a deleted mailbox; the next load retries");
        }
        Ok(())
    }

    /// RENAME, with its inferiors. Renaming INBOX moves its messages to a new mailbox of the
    /// new name and leaves a new, empty INBOX (RFC 3501 §6.3.5); INBOX's inferiors stay.
    pub(crate) fn rename_mailbox(&self, old: &str, new: &str) -> Result<(), StoreError> {
        if new == INBOX || is_same_or_below(new, old) {
            return Err(if new == old || new == INBOX {
                StoreError::MailboxExists(new.to_string())
            } else {
                StoreError::NotPermitted("cannot rename a mailbox below itself")
            });
        }
        let mut inner = self.lock()?;
        if inner.meta.find(new).is_some() {
            return Err(StoreError::MailboxExists(new.to_string()));
        }
        let mut meta = inner.meta.clone();
        let mut renamed: Vec<(u64, String)> = Vec::new();
        if old == INBOX {
            let entry = meta
                .find(INBOX)
                .cloned()
                .ok_or_else(|| StoreError::MailboxNotFound(INBOX.into()))?;
            let id = meta.next_id;
            meta.next_id += 1;
            let uidvalidity = meta.alloc_uidvalidity();
            self.build_mailbox_dir(id, uidvalidity, INBOX)?;
            for e in meta.mailboxes.iter_mut().filter(|e| e.id == entry.id) {
                e.name = new.to_string();
            }
            meta.mailboxes.push(MetaEntry {
                name: INBOX.into(),
                id,
                special_use: None,
            });
            renamed.push((entry.id, new.to_string()));
            if let Err(e) = self.save(&meta) {
                let _ = fs::remove_dir_all(self.mbox_dir(id));
                return Err(e);
            }
            inner.meta = meta;
            self.open_new(&mut inner, id)?;
        } else {
            let cfg = &self.sh.config;
            let moving: HashSet<u64> = meta
                .mailboxes
                .iter()
                .filter(|e| is_same_or_below(&e.name, old))
                .map(|e| e.id)
                .collect();
            if moving.is_empty() {
                return Err(StoreError::MailboxNotFound(old.to_string()));
            }
            for e in meta.mailboxes.iter_mut().filter(|e| moving.contains(&e.id)) {
                let to = format!("{new}{}", &e.name[old.len()..]);
                e.name = normalize_mailbox(&to, cfg.max_mailbox_name, cfg.max_depth)?;
                renamed.push((e.id, e.name.clone()));
            }
            for (id, to) in &renamed {
                if meta.mailboxes.iter().any(|e| e.id != *id && &e.name == to) {
                    return Err(StoreError::MailboxExists(to.clone()));
                }
            }
            let subs: Vec<String> = meta
                .subscriptions
                .iter()
                .filter(|s| is_same_or_below(s, old))
                .cloned()
                .collect();
            for s in subs {
                meta.subscriptions.remove(&s);
                meta.subscriptions
                    .insert(format!("{new}{}", &s[old.len()..]));
            }
            self.save(&meta)?;
            inner.meta = meta;
        }
        for (id, to) in renamed {
            // The hint only matters if the list is ever lost; a stale one is harmless.
            let _ = fs::write(self.mbox_dir(id).join(NAME_HINT), &to);
            if let Some(mb) = inner.open.get(&id) {
                mb.notify(MailboxEvent::Renamed { name: to });
            }
        }
        Ok(())
    }

    /// LIST: every mailbox, sorted by name.
    pub(crate) fn list(&self) -> Result<Vec<MailboxInfo>, StoreError> {
        let inner = self.lock()?;
        let mut parents = HashSet::new();
        for e in &inner.meta.mailboxes {
            let mut name = e.name.as_str();
            while let Some(i) = name.rfind(SEPARATOR) {
                name = &name[..i];
                parents.insert(name.to_string());
            }
        }
        let mut out: Vec<MailboxInfo> = inner
            .meta
            .mailboxes
            .iter()
            .map(|e| MailboxInfo {
                name: e.name.clone(),
                special_use: e.special_use,
                subscribed: inner.meta.subscriptions.contains(&e.name),
                has_children: parents.contains(&e.name),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// SUBSCRIBE / UNSUBSCRIBE. Names need not exist (RFC 3501 §6.3.6).
    pub(crate) fn set_subscribed(&self, name: &str, on: bool) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        if inner.meta.subscriptions.contains(name) == on {
            return Ok(());
        }
        self.ensure_on_disk(&mut inner)?;
        let mut meta = inner.meta.clone();
        if on {
            meta.subscriptions.insert(name.to_string());
        } else {
            meta.subscriptions.remove(name);
        }
        self.save(&meta)?;
        inner.meta = meta;
        Ok(())
    }

    pub(crate) fn subscriptions(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.lock()?.meta.subscriptions.iter().cloned().collect())
    }
}
