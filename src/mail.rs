//! Glue between the mail components: the directory decides, the queue and the store act.
//!
//! - [`ExpandingAcceptor`]: what the SMTP servers hand accepted mail to. It expands aliases and
//!   lists with the directory into final mailboxes and external forwards, then queues. The
//!   SMTP session itself never touches the queue's or the store's files (invariant 5).
//! - [`DirectoryRouter`]: the queue's routing — a local domain goes over LMTP to the user's
//!   `mail_host` group, anything else over SMTP to the domain's MX.
//! - [`StoreDelivery`]: the LMTP server's delivery into the message store, with the quota from
//!   the directory.
//!
//! Security: recipients are re-resolved at accept time, so a directory change between RCPT and
//! the end of DATA is honoured; a recipient that no longer resolves is queued as given and
//! refused by LMTP (then bounced), never silently dropped.

use std::collections::HashSet;

use crate::cluster::Cluster;
use crate::directory::Address;
use crate::queue::{Destination, Queue, Router};
use crate::smtp::{self, AcceptError, DeliveryError, LmtpDelivery, Orcpt};
use crate::store::{DeliveryTarget, Flags, Store, StoreError, INBOX};

/// Expands recipients through the directory, then queues.
pub struct ExpandingAcceptor {
    pub cluster: Cluster,
    pub queue: Queue,
}

impl ExpandingAcceptor {
    /// The final recipients of an envelope: local mailboxes and external forwards, each once.
    /// The address the client gave is kept as ORCPT (RFC 3461) when it had none.
    fn expand(&self, recipients: Vec<smtp::Recipient>) -> Vec<smtp::Recipient> {
        let dir = self.cluster.read_directory();
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(recipients.len());
        for r in recipients {
            let targets: Vec<Address> = match dir.resolve(r.address.as_str()) {
                Ok(res) => res.mailboxes.into_iter().chain(res.forwards).collect(),
                // Not ours (submission relays it), or no longer resolvable: queue it as given,
                // so it is delivered or bounced with a reason.
                Err(_) => vec![r.address.clone()],
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

/// LMTP delivery into the message store.
pub struct StoreDelivery {
    pub cluster: Cluster,
    pub store: Store,
}

impl StoreDelivery {
    /// The mailbox owner and quota for an LMTP recipient (the user, or `user+tag`'s user).
    fn owner(&self, rcpt: &Address) -> Option<(String, u64)> {
        let dir = self.cluster.read_directory();
        let user = dir.user(rcpt.as_str()).or_else(|| {
            let (base, _) = rcpt.split_subaddress()?;
            dir.user(base.as_str())
        })?;
        user.enabled
            .then(|| (user.address.clone(), user.quota_bytes))
    }
}

impl LmtpDelivery for StoreDelivery {
    async fn deliver(
        &self,
        envelope: &smtp::Envelope,
        message: &smtp::Message,
    ) -> Vec<Result<(), DeliveryError>> {
        let bytes = match message.to_vec() {
            Ok(b) => bytes::Bytes::from(b),
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
        for (i, r) in envelope.recipients.iter().enumerate() {
            results.push(Ok(()));
            let Some((user, quota_bytes)) = self.owner(&r.address) else {
                results[i] = Err(DeliveryError::UnknownUser);
                continue;
            };
            slots.push(i);
            targets.push(DeliveryTarget {
                user,
                mailbox: INBOX.to_string(),
                flags: Flags::default(),
                quota_bytes,
                key: envelope
                    .delivery
                    .as_ref()
                    .map(|id| format!("{id}\n{}", r.address.as_str())),
            });
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
