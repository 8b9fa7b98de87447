//! Users' Sieve scripts at LMTP delivery: compile (cached), run, and carry out the actions —
//! store copies, forward (SRS, through the node's queue), vacation replies, reject.
//!
//! A recipient without an active script costs one directory lookup and takes the plain path
//! of [`super::StoreDelivery`] (one write for every recipient). A script that does not compile
//! or fails at run time means implicit keep: the message goes to INBOX and a warning is
//! logged — a broken script never loses mail. A `fileinto` to a missing mailbox without
//! `:create` keeps in INBOX (RFC 5228 §2.10.6: an error falls back to keep).
//!
//! Exactly once when the queue repeats a keyed delivery (`XDELIVERY`): stored copies are
//! keyed per mailbox, so the store's key map (`store::once`) answers a repeat without a second
//! copy; redirects leave after the copies are durable and before the `250`, and the delivery
//! key is then recorded in the user's Sieve memory on the volume
//! ([`Store::remember_redirects`]): a repeat finds it and sends nothing again. A crash in the
//! milliseconds between the queue's `250` and that record repeats the redirect (at least once,
//! never lost, like the queue's own window). Vacation replies are recorded in the response
//! memory *before* they are queued: a crash loses a reply rather than sending two.
//!
//! Loops: a message that carries our `X-Sieve-Redirected-From:` for this user, or at least
//! the queue's hop limit of `Received:` fields, is kept instead of redirected; so is a
//! redirect to the user's own address, and any redirect when the node has no queue or no SRS
//! secret (`mail.srs_secret_file`).
//!
//! Security note: scripts are user input, bounded by [`sieve::Limits`]; everything a script
//! puts in a header of a reply is cleaned in `vacation`; forwarded mail never carries the
//! original envelope sender (SRS), so we never vouch for a domain that is not ours.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::queue::{self, Queue};
use crate::sieve::{self, Action, CompileError, MessageView, Outcome, Script, SieveTime};
use crate::smtp::{self, DeliveryError};
use crate::store::{DeliveryTarget, FlagOp, Flags, Store, StoreError, INBOX};

use super::srs::Srs;
use super::vacation;

/// The header a redirected copy carries (Pigeonhole's name), naming the user whose script
/// redirected it: the loop check.
pub const REDIRECTED_FROM: &str = "X-Sieve-Redirected-From";
/// Compiled scripts kept in memory (users with an active script delivered to recently).
pub const SCRIPT_CACHE_ENTRIES: usize = 1024;
/// Vacation `:days` when the script gives none, and its bounds.
const DEFAULT_DAYS: u64 = 7;
const MAX_DAYS: u64 = 60;

/// How mail leaves the mailstore on a user's behalf: the node's queue, and the site's SRS
/// keys for the envelope sender of forwarded mail.
#[derive(Clone)]
pub struct Outbound {
    /// The node's queue.
    pub queue: Queue,
    /// `None` when `mail.srs_secret_file` is not set: redirects are kept instead.
    pub srs: Option<Arc<Srs>>,
}

type CacheKey = (String, [u8; 32]);
type Compiled = Arc<Result<Script, CompileError>>;

#[derive(Default)]
struct CacheInner {
    map: HashMap<CacheKey, Compiled>,
    /// Insertion order, for eviction.
    order: VecDeque<CacheKey>,
}

/// Compiled scripts by (user, SHA-256 of the source), first in first out.
#[derive(Default)]
pub(crate) struct ScriptCache {
    inner: Mutex<CacheInner>,
}

impl ScriptCache {
    /// The compiled script (or its compile error) for `source`, compiling at most once while
    /// it stays cached.
    pub(crate) fn get(&self, user: &str, source: &str) -> Compiled {
        let key: CacheKey = (user.to_string(), Sha256::digest(source.as_bytes()).into());
        if let Some(hit) = self.lock().map.get(&key) {
            return Arc::clone(hit);
        }
        let compiled = Arc::new(sieve::compile(source, &sieve::Limits::default()));
        let mut g = self.lock();
        if !g.map.contains_key(&key) {
            while g.map.len() >= SCRIPT_CACHE_ENTRIES {
                match g.order.pop_front() {
                    Some(old) => g.map.remove(&old),
                    None => break,
                };
            }
            g.order.push_back(key.clone());
            g.map.insert(key, Arc::clone(&compiled));
        }
        compiled
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().map.len()
    }
}

/// One copy to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Copy {
    pub mailbox: String,
    pub flags: Vec<String>,
    /// Create the mailbox first (`fileinto :create`).
    pub create: bool,
}

/// What delivery does with one recipient's outcome.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub copies: Vec<Copy>,
    pub redirects: Vec<String>,
    pub vacation: Option<Action>,
    pub reject: Option<String>,
}

/// What the plan needs to know besides the outcome.
pub(crate) struct PlanContext<'a> {
    /// Addresses that are the user's own (a redirect there is a loop).
    pub own: &'a [String],
    /// The user's mailboxes.
    pub mailboxes: &'a BTreeSet<String>,
    /// Why no redirect may leave now, if so: redirects are kept instead.
    pub redirect_blocked: Option<&'static str>,
}

fn is_inbox(name: &str) -> bool {
    name.eq_ignore_ascii_case(INBOX)
}

impl Plan {
    fn add_copy(&mut self, mailbox: &str, flags: &[String], create: bool) {
        let mailbox = if is_inbox(mailbox) { INBOX } else { mailbox };
        match self.copies.iter_mut().find(|c| c.mailbox == mailbox) {
            Some(c) => {
                for f in flags {
                    if !c.flags.iter().any(|x| x.eq_ignore_ascii_case(f)) {
                        c.flags.push(f.clone());
                    }
                }
                c.create |= create;
            }
            None => self.copies.push(Copy {
                mailbox: mailbox.to_string(),
                flags: flags.to_vec(),
                create,
            }),
        }
    }

    /// Turns a script's outcome into the work to do.
    pub(crate) fn of(outcome: Outcome, ctx: &PlanContext<'_>) -> Plan {
        let mut plan = Plan::default();
        for action in outcome.actions {
            match action {
                Action::Keep { flags } => plan.add_copy(INBOX, &flags, false),
                Action::FileInto {
                    mailbox,
                    flags,
                    create,
                    ..
                } => {
                    let exists = is_inbox(&mailbox) || ctx.mailboxes.contains(&mailbox);
                    if exists || create {
                        plan.add_copy(&mailbox, &flags, create && !exists);
                    } else {
                        tracing::info!(%mailbox, "Sieve fileinto: no such mailbox (and no :create); kept in INBOX");
                        plan.add_copy(INBOX, &flags, false);
                    }
                }
                Action::Redirect { address, .. } => {
                    let own = ctx.own.iter().any(|o| o.eq_ignore_ascii_case(&address));
                    match (own, ctx.redirect_blocked) {
                        (true, _) => {
                            tracing::info!(%address, "Sieve redirect to the user's own address; kept instead");
                            plan.add_copy(INBOX, &[], false);
                        }
                        (false, Some(why)) => {
                            tracing::warn!(%address, reason = why, "Sieve redirect not sent; kept instead");
                            plan.add_copy(INBOX, &[], false);
                        }
                        (false, None) => plan.redirects.push(address),
                    }
                }
                Action::Reject { reason, .. } => plan.reject = Some(reason),
                Action::Discard => {}
                v @ Action::Vacation { .. } => plan.vacation = Some(v),
            }
        }
        plan
    }
}

/// Flags from Sieve's names, dropping those the store would refuse (`\Recent`, bad keywords).
fn store_flags(names: &[String], store: &Store) -> Flags {
    let cfg = store.config();
    let mut flags = Flags::new();
    for name in names {
        match Flags::from_imap([name.as_str()]) {
            Ok(f) if f.validate(cfg.max_keywords, cfg.max_keyword_len).is_ok() => {
                let merged = flags.apply(FlagOp::Add, &f);
                if merged
                    .validate(cfg.max_keywords, cfg.max_keyword_len)
                    .is_ok()
                {
                    flags = merged;
                }
            }
            _ => tracing::info!(flag = %name, "Sieve flag the store cannot set; ignored"),
        }
    }
    flags
}

/// Address-like tokens of a header value (lowercase).
fn address_tokens(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '<' | '>' | ';' | '"' | '(' | ')'))
        .filter(|t| t.contains('@'))
        .map(str::to_ascii_lowercase)
}

/// Whether one of `own` is among the message's recipients' header fields (RFC 5230 §4.5).
pub(crate) fn addressed_to(view: &MessageView, own: &[String]) -> bool {
    const FIELDS: [&str; 6] = ["to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"];
    view.headers
        .iter()
        .filter(|(n, _)| FIELDS.iter().any(|f| n.eq_ignore_ascii_case(f)))
        .flat_map(|(_, v)| address_tokens(v))
        .any(|t| own.iter().any(|o| o.eq_ignore_ascii_case(&t)))
}

fn header<'a>(view: &'a MessageView, name: &str) -> Option<&'a str> {
    view.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

fn store_error(user: &str, e: StoreError) -> DeliveryError {
    match e {
        StoreError::QuotaExceeded { .. } => DeliveryError::QuotaExceeded,
        StoreError::NoSpace { .. } => DeliveryError::NoSpace,
        e if e.is_temporary() => {
            tracing::warn!(%user, error = %e, "LMTP delivery failed; the queue retries");
            DeliveryError::Temporary(e.to_string())
        }
        e => DeliveryError::Permanent(e.to_string()),
    }
}

/// One recipient whose user has an active script.
pub(crate) struct ScriptedRecipient<'a> {
    pub rcpt: &'a smtp::Recipient,
    pub user: String,
    pub quota_bytes: u64,
    pub source: String,
}

impl super::StoreDelivery {
    /// Runs the user's script on the message and carries out its actions.
    pub(crate) async fn deliver_scripted(
        &self,
        env: &smtp::Envelope,
        r: &ScriptedRecipient<'_>,
        bytes: &Bytes,
        view: &MessageView,
    ) -> Result<(), DeliveryError> {
        let user = r.user.as_str();
        let rcpt = r.rcpt.address.as_str();
        let now = now_unix();
        let key = env.delivery.as_ref().map(|id| format!("{id}\n{rcpt}"));
        if let Some(k) = &key {
            match self.store.redirects_sent(user, k, now).await {
                Ok(true) => {
                    tracing::info!(%user, "repeated delivery whose Sieve actions are done; nothing sent again");
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => return Err(store_error(user, e)),
            }
        }
        let mailboxes: BTreeSet<String> = match self.store.list_mailboxes(user).await {
            Ok(l) => l.into_iter().map(|m| m.name).collect(),
            Err(e) if e.is_temporary() => return Err(store_error(user, e)),
            Err(_) => BTreeSet::new(),
        };
        let sender = env.sender.as_ref().map_or("", |a| a.as_str());
        let outcome = match &*self.scripts.get(user, &r.source) {
            Err(e) => {
                tracing::warn!(%user, error = %e, "active Sieve script does not compile; message kept");
                Outcome::fallback()
            }
            Ok(script) => {
                let senv = sieve::Envelope {
                    from: sender.to_string(),
                    to: rcpt.to_string(),
                    mailboxes: mailboxes.clone(),
                };
                let time = SieveTime {
                    unix: now,
                    offset_minutes: 0,
                };
                sieve::run(script, view, &senv, time, &sieve::Limits::default()).unwrap_or_else(
                    |e| {
                        tracing::warn!(%user, error = %e, "Sieve script failed; message kept");
                        Outcome::fallback()
                    },
                )
            }
        };
        let mut own = vec![user.to_string(), rcpt.to_string()];
        if let Some(o) = &r.rcpt.orcpt {
            own.push(o.address.to_ascii_lowercase());
        }
        let ctx = PlanContext {
            own: &own,
            mailboxes: &mailboxes,
            redirect_blocked: self.redirect_blocked(user, view),
        };
        let plan = Plan::of(outcome, &ctx);
        self.store_copies(user, r.quota_bytes, key.as_deref(), &plan.copies, bytes)
            .await?;
        if !plan.redirects.is_empty() {
            for address in &plan.redirects {
                self.redirect(env, user, address, bytes).await?;
            }
            if let Some(k) = &key {
                if let Err(e) = self.store.remember_redirects(user, k, now).await {
                    tracing::warn!(%user, error = %e, "cannot record sent redirects; a repeated delivery would send them again");
                }
            }
        }
        if let Some(v) = &plan.vacation {
            self.vacation(user, rcpt, &own, sender, view, v, now).await;
        }
        match plan.reject {
            Some(reason) => {
                tracing::info!(%user, "Sieve reject");
                Err(DeliveryError::Rejected(reason))
            }
            None => Ok(()),
        }
    }

    /// Why redirects cannot leave for this message, if so.
    fn redirect_blocked(&self, user: &str, view: &MessageView) -> Option<&'static str> {
        let Some(out) = &self.outbound else {
            return Some("this node has no queue");
        };
        if out.srs.is_none() {
            return Some("no SRS secret: set mail.srs_secret_file");
        }
        let hops = view
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("received"))
            .count();
        if hops >= out.queue.config().hop_limit as usize {
            return Some("too many Received headers (mail loop)");
        }
        let looped = view
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(REDIRECTED_FROM))
            .flat_map(|(_, v)| address_tokens(v))
            .any(|a| a == user);
        looped.then_some("this user redirected the message before (loop)")
    }

    /// Stores the plan's copies, each keyed; a mailbox that cannot take it falls back to INBOX.
    async fn store_copies(
        &self,
        user: &str,
        quota_bytes: u64,
        key: Option<&str>,
        copies: &[Copy],
        bytes: &Bytes,
    ) -> Result<(), DeliveryError> {
        if copies.is_empty() {
            return Ok(());
        }
        let target = |c: &Copy| DeliveryTarget {
            user: user.to_string(),
            mailbox: c.mailbox.clone(),
            flags: store_flags(&c.flags, &self.store),
            quota_bytes,
            key: key.map(|k| {
                if c.mailbox == INBOX {
                    k.to_string()
                } else {
                    format!("{k}\n{}", c.mailbox)
                }
            }),
        };
        let mut targets = Vec::with_capacity(copies.len());
        for c in copies {
            if c.create {
                match self.store.create_mailbox(user, &c.mailbox, None).await {
                    Ok(()) | Err(StoreError::MailboxExists(_)) => {}
                    Err(e) if e.is_temporary() => return Err(store_error(user, e)),
                    Err(e) => {
                        tracing::info!(%user, mailbox = %c.mailbox, error = %e, "Sieve fileinto :create failed; kept in INBOX");
                        targets.push(target(&Copy {
                            mailbox: INBOX.into(),
                            ..c.clone()
                        }));
                        continue;
                    }
                }
            }
            targets.push(target(c));
        }
        // Two fallbacks may both name INBOX: one copy.
        let mut seen = BTreeSet::new();
        targets.retain(|t| seen.insert(t.mailbox.clone()));
        let results = self.store.deliver_many(bytes.clone(), None, &targets).await;
        let mut retry_inbox = None;
        for (t, res) in targets.iter().zip(results) {
            match res {
                Ok(_) => {}
                Err(e @ (StoreError::MailboxNotFound(_) | StoreError::InvalidName { .. }))
                    if t.mailbox != INBOX =>
                {
                    tracing::info!(%user, mailbox = %t.mailbox, error = %e, "Sieve fileinto failed; kept in INBOX");
                    retry_inbox.get_or_insert_with(|| DeliveryTarget {
                        mailbox: INBOX.into(),
                        key: key.map(str::to_string),
                        ..t.clone()
                    });
                }
                Err(e) => return Err(store_error(user, e)),
            }
        }
        if let Some(t) = retry_inbox.filter(|_| !seen.contains(INBOX)) {
            if let Some(Err(e)) = self
                .store
                .deliver_many(bytes.clone(), None, &[t])
                .await
                .pop()
            {
                return Err(store_error(user, e));
            }
        }
        Ok(())
    }

    /// Queues a copy for `address` with the sender rewritten by SRS.
    async fn redirect(
        &self,
        env: &smtp::Envelope,
        user: &str,
        address: &str,
        bytes: &Bytes,
    ) -> Result<(), DeliveryError> {
        let (Some(out), Some(srs)) = (
            &self.outbound,
            self.outbound.as_ref().and_then(|o| o.srs.as_ref()),
        ) else {
            return Err(DeliveryError::Temporary("no queue for redirects".into()));
        };
        let sender = env.sender.as_ref().map_or("", |a| a.as_str());
        let mut qenv = queue::Envelope::new(srs.forward(sender, domain_of(user), now_unix()));
        qenv.recipients = vec![queue::Recipient::new(address)];
        qenv.body = match env.body {
            smtp::BodyType::SevenBit => queue::BodyType::SevenBit,
            smtp::BodyType::EightBitMime => queue::BodyType::EightBitMime,
        };
        qenv.smtputf8 = env.smtputf8;
        let mut msg = Vec::with_capacity(bytes.len() + 64);
        msg.extend_from_slice(format!("{REDIRECTED_FROM}: <{user}>\r\n").as_bytes());
        msg.extend_from_slice(bytes);
        match out.queue.enqueue(qenv, msg).await {
            Ok(id) => {
                tracing::info!(%user, to = %address, queue_id = %id.as_str(), "Sieve redirect queued");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(%user, to = %address, error = %e, "Sieve redirect could not be queued; the delivery is retried");
                Err(DeliveryError::Temporary(format!(
                    "redirect not queued: {e}"
                )))
            }
        }
    }

    /// Sends a vacation reply if RFC 3834/5230 and the response memory allow it. Failures
    /// are logged: an autoreply is never worth a retried delivery.
    #[allow(clippy::too_many_arguments)]
    async fn vacation(
        &self,
        user: &str,
        rcpt: &str,
        own: &[String],
        sender: &str,
        view: &MessageView,
        v: &Action,
        now: i64,
    ) {
        let Action::Vacation {
            reason,
            subject,
            from,
            addresses,
            days,
            mime,
            handle,
        } = v
        else {
            return;
        };
        if !sieve::vacation_allowed(&view.headers, sender) {
            tracing::debug!(%user, "no vacation reply: list, bulk, auto-submitted or null sender");
            return;
        }
        let mut mine: Vec<String> = own.to_vec();
        mine.extend(addresses.iter().map(|a| a.to_ascii_lowercase()));
        if mine.iter().any(|a| a.eq_ignore_ascii_case(sender)) {
            tracing::debug!(%user, "no vacation reply to the user's own address");
            return;
        }
        if !addressed_to(view, &mine) {
            tracing::debug!(%user, "no vacation reply: the user is not in To/Cc/Bcc");
            return;
        }
        let Some(out) = &self.outbound else {
            tracing::warn!(%user, "no vacation reply: this node has no queue");
            return;
        };
        let days = days.unwrap_or(DEFAULT_DAYS).clamp(1, MAX_DAYS) as u32;
        let handle = handle.clone().unwrap_or_else(|| {
            vacation::default_handle(reason, subject.as_deref(), from.as_deref(), *mime)
        });
        match self
            .store
            .vacation_reply_due(user, &handle, sender, days, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(%user, "no vacation reply: already answered within :days");
                return;
            }
            Err(e) => {
                tracing::warn!(%user, error = %e, "no vacation reply: response memory unavailable");
                return;
            }
        }
        let subject = vacation::reply_subject(subject.as_deref(), header(view, "subject"));
        let date = smtp::rfc5322_date(SystemTime::now());
        let message_id = format!(
            "<vacation.{:016x}{:08x}@{}>",
            rand::random::<u64>(),
            rand::random::<u32>(),
            domain_of(user)
        );
        let reply = vacation::build(&vacation::Reply {
            from: from.as_deref().unwrap_or(rcpt),
            to: sender,
            subject: &subject,
            in_reply_to: header(view, "message-id"),
            references: header(view, "references"),
            reason,
            mime: *mime,
            date: &date,
            message_id: &message_id,
        });
        let mut qenv = queue::Envelope::new("");
        qenv.recipients = vec![queue::Recipient::new(sender)];
        if !reply.is_ascii() {
            qenv.body = queue::BodyType::EightBitMime;
        }
        match out.queue.enqueue(qenv, reply).await {
            Ok(id) => {
                tracing::info!(%user, to = %sender, queue_id = %id.as_str(), "vacation reply queued")
            }
            Err(e) => {
                tracing::warn!(%user, to = %sender, error = %e, "vacation reply could not be queued")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(actions: Vec<Action>) -> Outcome {
        Outcome {
            actions,
            implicit_keep: false,
        }
    }

    fn plan(actions: Vec<Action>, blocked: Option<&'static str>) -> Plan {
        let own = vec!["alice@example.org".to_string()];
        let mailboxes: BTreeSet<String> = ["INBOX", "Lists"].map(String::from).into();
        let ctx = PlanContext {
            own: &own,
            mailboxes: &mailboxes,
            redirect_blocked: blocked,
        };
        Plan::of(outcome(actions), &ctx)
    }

    fn fileinto(mailbox: &str, flags: &[&str], create: bool) -> Action {
        Action::FileInto {
            mailbox: mailbox.into(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            create,
            copy: false,
        }
    }

    fn copy(mailbox: &str, flags: &[&str], create: bool) -> Copy {
        Copy {
            mailbox: mailbox.into(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            create,
        }
    }

    #[test]
    fn fileinto_existing_created_and_missing() {
        let p = plan(
            vec![
                fileinto("Lists", &["\\Seen"], false),
                fileinto("New", &[], true),
                fileinto("Missing", &["$Label1"], false),
                fileinto("inbox", &["\\Flagged"], false),
            ],
            None,
        );
        assert_eq!(
            p.copies,
            vec![
                copy("Lists", &["\\Seen"], false),
                copy("New", &[], true),
                copy("INBOX", &["$Label1", "\\Flagged"], false),
            ],
            "a missing mailbox without :create keeps in INBOX; INBOX once"
        );
        // :create on an existing mailbox creates nothing.
        let p = plan(vec![fileinto("Lists", &[], true)], None);
        assert_eq!(p.copies, vec![copy("Lists", &[], false)]);
    }

    #[test]
    fn redirects_loops_and_blocks_keep() {
        let redirect = |a: &str| Action::Redirect {
            address: a.into(),
            copy: false,
        };
        let p = plan(vec![redirect("bob@remote.example")], None);
        assert_eq!(p.redirects, vec!["bob@remote.example".to_string()]);
        assert!(p.copies.is_empty());
        let p = plan(vec![redirect("Alice@Example.org")], None);
        assert!(p.redirects.is_empty());
        assert_eq!(
            p.copies,
            vec![copy("INBOX", &[], false)],
            "own address: kept"
        );
        let p = plan(vec![redirect("bob@remote.example")], Some("loop"));
        assert!(p.redirects.is_empty());
        assert_eq!(p.copies, vec![copy("INBOX", &[], false)], "blocked: kept");
    }

    #[test]
    fn discard_reject_and_vacation() {
        let p = plan(vec![Action::Discard], None);
        assert_eq!(p, Plan::default());
        let p = plan(
            vec![Action::Reject {
                reason: "no thanks".into(),
                extended: false,
            }],
            None,
        );
        assert_eq!(p.reject.as_deref(), Some("no thanks"));
        let v = Action::Vacation {
            reason: "away".into(),
            subject: None,
            from: None,
            addresses: vec![],
            days: None,
            mime: false,
            handle: None,
        };
        let p = plan(vec![v.clone(), Action::Keep { flags: vec![] }], None);
        assert_eq!(p.vacation, Some(v));
        assert_eq!(p.copies, vec![copy("INBOX", &[], false)]);
    }

    #[test]
    fn recipients_fields_decide_vacation_eligibility() {
        let view = MessageView::from_raw(
            b"From: bob@remote.example\r\nTo: \"Alice\" <Alice@Example.org>, x@y.example\r\nCc: team@example.org\r\nSubject: hi\r\n\r\nbody\r\n",
        );
        assert!(addressed_to(&view, &["alice@example.org".into()]));
        assert!(addressed_to(&view, &["team@example.org".into()]));
        assert!(!addressed_to(&view, &["lice@example.org".into()]));
        assert!(!addressed_to(&view, &["bob@remote.example".into()]));
    }

    #[test]
    fn script_cache_compiles_once_and_is_bounded() {
        let cache = ScriptCache::default();
        let a = cache.get("alice@example.org", "keep;");
        let b = cache.get("alice@example.org", "keep;");
        assert!(Arc::ptr_eq(&a, &b), "second lookup is a hit");
        assert!(a.is_ok());
        let bad = cache.get("alice@example.org", "fileinto \"x\";");
        assert!(bad.is_err(), "missing require: a compile error, cached too");
        for i in 0..SCRIPT_CACHE_ENTRIES + 10 {
            cache.get(&format!("u{i}@example.org"), "keep;");
        }
        assert_eq!(cache.len(), SCRIPT_CACHE_ENTRIES);
    }

    /// The end-to-end test's "broken script": compiles (so the admin API takes it) and fails
    /// at run time, which delivery turns into implicit keep.
    #[test]
    fn a_script_can_compile_and_still_fail_at_run_time() {
        let src = "require \"variables\";\nset \"a\" \"not an address\";\nredirect \"${a}\";\n";
        let script = sieve::compile(src, &sieve::Limits::default()).unwrap();
        let view = MessageView::from_raw(b"Subject: x\r\n\r\nbody\r\n");
        let env = sieve::Envelope::default();
        let now = SieveTime {
            unix: 0,
            offset_minutes: 0,
        };
        let run = sieve::run(&script, &view, &env, now, &sieve::Limits::default());
        assert!(run.is_err(), "{run:?}");
    }

    #[test]
    fn store_flags_drop_what_the_store_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path(),
            crate::store::StoreConfig {
                create_if_missing: true,
                ..Default::default()
            },
        )
        .unwrap();
        let f = store_flags(
            &[
                "\\Seen".into(),
                "\\Recent".into(),
                "$Label1".into(),
                "bad]kw".into(),
            ],
            &store,
        );
        let mut names = f.imap_names();
        names.sort();
        assert!(names.contains(&"\\Seen".to_string()), "{names:?}");
        assert!(names.contains(&"$Label1".to_string()), "{names:?}");
        assert!(!names.iter().any(|n| n == "\\Recent"), "{names:?}");
    }
}
