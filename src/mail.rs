//! Glue between the mail components: the directory decides, the queue and the store act.
//!
//! - [`ExpandingAcceptor`]: what the SMTP servers hand accepted mail to. It expands aliases and
//!   lists with the directory into final mailboxes and external forwards, then queues. The
//!   SMTP session itself never touches the queue's or the store's files (invariant 5).
//! - [`DirectoryRouter`]: the queue's routing — a local domain goes over LMTP to the user's
//!   `mail_host` group, anything else over SMTP to the domain's MX.
//! - [`StoreDelivery`]: the LMTP server's delivery into the message store, with the quota from
//!   the directory, running users' Sieve scripts (module `sieve`; vacation replies are built
//!   in `vacation`).
//! - [`policy_sync`]: installs the replicated anti-UBE policy into the node's `PolicyHandle`.
//! - [`srs`]: the Sender Rewriting Scheme for redirected mail, and its reverse on the MX: a
//!   valid `SRS0=` address of a local domain is forwarded to the original sender.
//!
//! Security: recipients are re-resolved at accept time, so a directory change between RCPT and
//! the end of DATA is honoured; a recipient that no longer resolves is queued as given and
//! refused by LMTP (then bounced), never silently dropped.

pub mod policy_sync;
pub mod sieve;
pub mod srs;
mod vacation;

use std::collections::HashSet;
use std::sync::Arc;

use crate::cluster::Cluster;
use crate::directory::Address;
use crate::queue::{Destination, Queue, Router};
use crate::smtp::{self, AcceptError, DeliveryError, LmtpDelivery, Orcpt};
use crate::store::{DeliveryTarget, Flags, Store, StoreError, INBOX};

/// Expands recipients through the directory, then queues.
pub struct ExpandingAcceptor {
    pub cluster: Cluster,
    pub queue: Queue,
    /// Reverses `SRS0=` recipients of local domains (bounces of redirected mail).
    pub srs: Option<Arc<srs::Srs>>,
}

impl ExpandingAcceptor {
    /// The final recipients of an envelope: local mailboxes and external forwards, each once.
    /// The address the client gave is kept as ORCPT (RFC 3461) when it had none.
    fn expand(&self, recipients: Vec<smtp::Recipient>) -> Vec<smtp::Recipient> {
        let dir = self.cluster.read_directory();
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(recipients.len());
        for r in recipients {
            let resolved = self.unsrs(&dir, &r.address);
            let targets: Vec<Address> = match dir.resolve(resolved.as_str()) {
                Ok(res) => res.mailboxes.into_iter().chain(res.forwards).collect(),
                // Not ours (submission relays it), or no longer resolvable: queue it as given,
                // so it is delivered or bounced with a reason.
                Err(_) => vec![resolved.clone()],
            };
            let orcpt = r.orcpt.clone().or_else(|| {
                (targets.len() != 1 || targets[0] != r.address).then(|| Orcpt {
                    addr_type: "rfc822".into(),
                    address: r.address.as_str().to_string(),
                })
            });
            for t in targets {
                if seen.insert(t.as_str().to_string()) {
                    out.push(smtp::Recipient {
                        address: t,
                        notify: r.notify,
                        orcpt: orcpt.clone(),
                    });
                }
            }
        }
        out
    }

    /// The original address behind a valid SRS0 address of a local domain; else `rcpt`.
    fn unsrs(&self, dir: &crate::directory::Directory, rcpt: &Address) -> Address {
        let Some(srs) = &self.srs else {
            return rcpt.clone();
        };
        if !srs::Srs::is_srs(rcpt.as_str()) || dir.domain(rcpt.domain()).is_none() {
            return rcpt.clone();
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        match srs.reverse(rcpt.as_str(), now).map(|a| Address::parse(&a)) {
            Ok(Ok(orig)) => orig,
            // The MX checked it at RCPT; it expired since, or is not an address we can send to.
            _ => rcpt.clone(),
        }
    }
}

impl smtp::Acceptor for ExpandingAcceptor {
    async fn accept(
        &self,
        mut envelope: smtp::Envelope,
        message: smtp::Message,
    ) -> Result<smtp::QueueId, AcceptError> {
        envelope.recipients = self.expand(std::mem::take(&mut envelope.recipients));
        if envelope.recipients.is_empty() {
            return Err(AcceptError::Permanent("no deliverable recipient".into()));
        }
        smtp::Acceptor::accept(&self.queue, envelope, message).await
    }
}

/// Routes by the directory: local domains over LMTP to the user's mailstore group.
pub struct DirectoryRouter {
    pub cluster: Cluster,
}

impl Router for DirectoryRouter {
    fn route(&self, recipient: &str) -> Destination {
        let dir = self.cluster.read_directory();
        let domain = recipient
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        if dir.domain(&domain).is_none() {
            return Destination::Smtp(domain);
        }
        let group = dir
            .user(recipient)
            .or_else(|| {
                let (local, _) = recipient.split_once('@')?;
                let base = local.split_once('+').map(|(b, _)| b)?;
                dir.user(&format!("{base}@{domain}"))
            })
            .map(|u| u.mail_host.clone())
            .unwrap_or_else(|| crate::directory::DEFAULT_MAIL_HOST.to_string());
        Destination::Lmtp(group)
    }
}

/// Whether the message's header has `X-Spam-Flag: YES` (the MX's tag; SpamAssassin's too).
fn is_tagged(message: &[u8]) -> bool {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(message.len().min(64 * 1024));
    message[..end].split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line.len() > 12
            && line[..12].eq_ignore_ascii_case(b"x-spam-flag:")
            && line[12..].trim_ascii().eq_ignore_ascii_case(b"yes")
    })
}

/// LMTP delivery into the message store.
pub struct StoreDelivery {
    pub cluster: Cluster,
    pub store: Store,
    /// The node's queue and SRS keys, for Sieve redirects and vacation replies (`None`: those
    /// are kept / not sent).
    pub outbound: Option<sieve::Outbound>,
    /// Compiled Sieve scripts.
    scripts: sieve::ScriptCache,
    /// The anti-UBE policy: messages the MX tagged (`X-Spam-Flag: YES`) go to its Junk folder
    /// for users without a Sieve script (`None`: to INBOX).
    pub junk: Option<Arc<crate::antiube::PolicyHandle>>,
}

/// An LMTP recipient's mailbox owner, quota and active Sieve script source.
type Owner = (String, u64, Option<String>);

impl StoreDelivery {
    /// Delivery into `store`, with the directory of `cluster`; `outbound` lets scripts send.
    pub fn new(cluster: Cluster, store: Store, outbound: Option<sieve::Outbound>) -> Self {
        StoreDelivery {
            cluster,
            store,
            outbound,
            scripts: sieve::ScriptCache::default(),
            junk: None,
        }
    }

    /// The folder a tagged message goes to, created when missing; INBOX when it cannot be.
    async fn junk_folder(&self, user: &str) -> String {
        let Some(policy) = &self.junk else {
            return INBOX.to_string();
        };
        let folder = policy.get().settings.content.junk_folder.clone();
        match self.store.create_mailbox(user, &folder, None).await {
            Ok(()) | Err(StoreError::MailboxExists(_)) => folder,
            Err(e) => {
                tracing::warn!(%user, %folder, error = %e, "cannot create the Junk folder; tagged message kept in INBOX");
                INBOX.to_string()
            }
        }
    }

    /// The mailbox owner, quota and active script for an LMTP recipient (the user, or
    /// `user+tag`'s user).
    fn owner(&self, rcpt: &Address) -> Option<Owner> {
        let dir = self.cluster.read_directory();
        let user = dir.user(rcpt.as_str()).or_else(|| {
            let (base, _) = rcpt.split_subaddress()?;
            dir.user(base.as_str())
        })?;
        let script = dir
            .active_sieve(&user.address)
            .map(|(_, src)| src.to_string());
        user.enabled
            .then(|| (user.address.clone(), user.quota_bytes, script))
    }
}

impl LmtpDelivery for StoreDelivery {
    async fn deliver(
        &self,
        envelope: &smtp::Envelope,
        message: &smtp::Message,
    ) -> Vec<Result<(), DeliveryError>> {
        let bytes = match message.to_bytes() {
            Ok(b) => b,
            Err(e) => {
                return envelope
                    .recipients
                    .iter()
                    .map(|_| Err(DeliveryError::Temporary(e.to_string())))
                    .collect();
            }
        };
        // One write of the content, linked into every recipient's INBOX. With the client's
        // XDELIVERY id, each recipient's delivery is keyed, so a retry is stored once.
        let mut results: Vec<Result<(), DeliveryError>> = Vec::new();
        let mut targets = Vec::new();
        let mut slots = Vec::new();
        let mut scripted = Vec::new();
        let tagged = self.junk.is_some() && is_tagged(&bytes);
        for (i, r) in envelope.recipients.iter().enumerate() {
            results.push(Ok(()));
            let Some((user, quota_bytes, script)) = self.owner(&r.address) else {
                results[i] = Err(DeliveryError::UnknownUser);
                continue;
            };
            if let Some(source) = script {
                scripted.push((
                    i,
                    sieve::ScriptedRecipient {
                        rcpt: r,
                        user,
                        quota_bytes,
                        source,
                    },
                ));
                continue;
            }
            slots.push(i);
            let mailbox = if tagged {
                self.junk_folder(&user).await
            } else {
                INBOX.to_string()
            };
            targets.push(DeliveryTarget {
                user,
                mailbox,
                flags: Flags::default(),
                quota_bytes,
                key: envelope
                    .delivery
                    .as_ref()
                    .map(|id| format!("{id}\n{}", r.address.as_str())),
            });
        }
        if !scripted.is_empty() {
            let view = crate::sieve::MessageView::from_raw(&bytes);
            for (i, r) in &scripted {
                results[*i] = self.deliver_scripted(envelope, r, &bytes, &view).await;
            }
        }
        if targets.is_empty() {
            return results;
        }
        let stored = self.store.deliver_many(bytes, None, &targets).await;
        for ((i, t), result) in slots.into_iter().zip(&targets).zip(stored) {
            results[i] = result.map(drop).map_err(|e| match e {
                StoreError::QuotaExceeded { .. } => DeliveryError::QuotaExceeded,
                StoreError::NoSpace { .. } => DeliveryError::NoSpace,
                e if e.is_temporary() => {
                    tracing::warn!(user = %t.user, error = %e, "LMTP delivery failed; the queue retries");
                    DeliveryError::Temporary(e.to_string())
                }
                e => DeliveryError::Permanent(e.to_string()),
            });
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::is_tagged;

    #[test]
    fn tagged_only_by_a_yes_flag_in_the_header() {
        assert!(is_tagged(
            b"Received: x\r\nX-Spam-Flag: YES\r\n\r\nbody\r\n"
        ));
        assert!(is_tagged(b"x-spam-flag:yes\r\n\r\n"));
        assert!(!is_tagged(b"X-Spam-Flag: NO\r\n\r\nX-Spam-Flag: YES\r\n"));
        assert!(!is_tagged(b"Subject: X-Spam-Flag: YES\r\n\r\n"));
        assert!(!is_tagged(b""));
    }
}
