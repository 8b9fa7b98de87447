//! One message to many mailboxes (an LMTP transaction with several recipients, a list): the
//! content is written and fsynced once on the volume, in the store's `tmp/`, then hard-linked
//! into each recipient's mailbox and committed there, with one result per recipient.
//!
//! Each recipient's link and commit follow the same durable steps as a single delivery, and the
//! recipients proceed in parallel (different users never share a lock). The staged file is
//! removed when every recipient is done; a crash leaves it in `tmp/`, which [`Store::open`]
//! empties. Quota is charged to every recipient in full, as if each had its own copy.
//!
//! Security note: a recipient's failure (quota, missing mailbox) never affects another's
//! result, and no recipient learns anything about the others.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinSet;

use super::error::{at, StoreError};
use super::flags::Flags;
use super::fsio::{create_new, remove_if_exists, system_time, unique_name, Step};
use super::mailbox::{Mailbox, NewMessage};
use super::names::INBOX;
use super::once::once;
use super::user::UserState;
use super::write::{link_or_copy, rename_not_found, write_source, Delivered, MessageSource};
use super::{Shared, Store};

/// The store's own temp directory, for content shared by several mailboxes.
pub(crate) const STAGING: &str = "tmp";

/// One recipient of [`Store::deliver_many`].
#[derive(Debug, Clone)]
pub struct DeliveryTarget {
    pub user: String,
    /// INBOX is created when missing; any other mailbox must exist.
    pub mailbox: String,
    pub flags: Flags,
    /// The user's quota in bytes (0 = unlimited).
    pub quota_bytes: u64,
    /// Idempotency key (the LMTP client's queue id and recipient): a target whose key this
    /// user has already received is answered with the first result and not stored again.
    pub key: Option<String>,
}

/// Writes the content once, durably, under the store's `tmp/`.
fn stage_shared(
    sh: &Shared,
    src: &MessageSource,
    date: i64,
) -> Result<(PathBuf, u64, u32), StoreError> {
    let limit = sh.config.max_message_size;
    let estimate = src.len()?;
    if limit > 0 && estimate > limit {
        return Err(StoreError::TooLarge {
            size: estimate,
            limit,
        });
    }
    let path = sh.root.join(STAGING).join(unique_name());
    let res = (|| {
        let mut f = create_new(&path)?;
        let (size, crc) = write_source(&mut f, src, &path, limit)?;
        f.set_modified(system_time(date)).map_err(at(&path))?;
        sh.faults.at(Step::MessageWritten, &path)?;
        f.sync_all().map_err(at(&path))?;
        sh.faults.at(Step::MessageSynced, &path)?;
        Ok((size, crc))
    })();
    match res {
        Ok((size, crc)) => Ok((path, size, crc)),
        Err(e) => {
            let _ = remove_if_exists(&path);
            Err(e)
        }
    }
}

/// Links the staged file into `mb`'s `msg/` durably as `name` (default: a unique name); the
/// name stays in-flight until the caller commits or gives up.
fn link_in(
    user: &UserState,
    mb: &Mailbox,
    staged: &Path,
    name: Option<Arc<str>>,
) -> Result<Arc<str>, StoreError> {
    let sh = &user.sh;
    let name: Arc<str> = name.unwrap_or_else(|| unique_name().into());
    user.inflight_add(&name);
    let dest = mb.msg_dir.join(&*name);
    let res = (|| {
        link_or_copy(user, staged, &dest).map_err(|e| match mb.lock() {
            Ok(st) if st.deleted => StoreError::MailboxNotFound(String::new()),
            _ => e,
        })?;
        // `msg/` is synced with the index record, in `commit_appends`.
        sh.faults.at(Step::MessageLinked, &dest)
    })();
    if let Err(e) = res {
        let _ = remove_if_exists(&dest);
        user.inflight_remove(&name);
        return Err(e);
    }
    Ok(name)
}

/// One recipient, at most once per key. Blocking.
fn deliver_one(
    user: &UserState,
    t: &DeliveryTarget,
    name: &str,
    staged: &Path,
    size: u64,
    crc: u32,
    date: i64,
) -> Result<Delivered, StoreError> {
    once(&user.deliveries, t.key.as_deref(), |file| {
        link_and_commit(user, t, name, staged, (size, crc), date, file)
    })
}

/// One recipient: quota, link, commit. Blocking.
fn link_and_commit(
    user: &UserState,
    t: &DeliveryTarget,
    name: &str,
    staged: &Path,
    (size, crc): (u64, u32),
    date: i64,
    file: Option<Arc<str>>,
) -> Result<Delivered, StoreError> {
    let cfg = &user.sh.config;
    t.flags.validate(cfg.max_keywords, cfg.max_keyword_len)?;
    if name == INBOX {
        user.ensure_inbox()?;
    }
    let (mb, _) = user.mailbox(name)?;
    user.usage.reserve(size, t.quota_bytes)?;
    let file = match link_in(user, &mb, staged, file) {
        Ok(f) => f,
        Err(e) => {
            user.usage.release(size, 0);
            return Err(rename_not_found(e, name));
        }
    };
    let item = NewMessage {
        file: Arc::clone(&file),
        size,
        crc,
        flags: t.flags.clone(),
        internal_date: date,
    };
    let res = mb.commit_appends(&user.sh, name, vec![item], 0);
    user.inflight_remove(&file);
    match res {
        Ok((uidvalidity, metas)) => Ok(Delivered {
            uid: metas[0].uid,
            uidvalidity,
            size,
        }),
        Err(e) => {
            user.usage.release(size, 0);
            Err(e)
        }
    }
}

impl Store {
    /// Delivers one message to several mailboxes, writing its content once. Returns one
    /// result per target, in order; each `Ok` means durable in that mailbox.
    pub async fn deliver_many(
        &self,
        message: impl Into<MessageSource>,
        internal_date: Option<i64>,
        targets: &[DeliveryTarget],
    ) -> Vec<Result<Delivered, StoreError>> {
        let src = message.into();
        let date = internal_date.unwrap_or_else(super::fsio::now_secs);
        if let [t] = targets {
            return vec![self.deliver_target(t.clone(), src, date).await];
        }
        if targets.is_empty() {
            return Vec::new();
        }
        // In its own task, so a caller that gives up still gets the staged file removed.
        let store = self.clone();
        let targets = targets.to_vec();
        let n = targets.len();
        let task = tokio::spawn(async move { store.fan_out(src, date, targets).await });
        match task.await {
            Ok(results) => results,
            Err(e) => (0..n)
                .map(|_| Err(StoreError::Internal(format!("delivery task failed: {e}"))))
                .collect(),
        }
    }

    async fn fan_out(
        &self,
        src: MessageSource,
        date: i64,
        targets: Vec<DeliveryTarget>,
    ) -> Vec<Result<Delivered, StoreError>> {
        let (staged, size, crc) = match self.blocking(move |sh| stage_shared(sh, &src, date)).await
        {
            Ok(v) => v,
            Err(e) => return targets.iter().map(|_| Err(e.duplicate())).collect(),
        };
        let staged = Arc::new(staged);
        let mut set = JoinSet::new();
        for (i, t) in targets.iter().enumerate() {
            let (store, t, staged) = (self.clone(), t.clone(), Arc::clone(&staged));
            set.spawn(async move {
                let res = async {
                    let name = store.normalize(&t.mailbox)?;
                    let user = store.user(&t.user).await?;
                    store
                        .blocking(move |_| deliver_one(&user, &t, &name, &staged, size, crc, date))
                        .await
                }
                .await;
                (i, res)
            });
        }
        let mut results: Vec<Option<Result<Delivered, StoreError>>> =
            targets.iter().map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            if let Ok((i, res)) = joined {
                results[i] = Some(res);
            }
        }
        let path = PathBuf::clone(&staged);
        if let Err(e) = self.blocking(move |_| remove_if_exists(&path)).await {
            tracing::warn!(error = %e, "cannot remove a staged message; the next open removes it");
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Internal("delivery task failed".into()))))
            .collect()
    }
}
