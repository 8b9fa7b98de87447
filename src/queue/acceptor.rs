//! The SMTP server's way into the queue: [`Acceptor`] implemented for [`Queue`].
//!
//! Converts the session's envelope into the queue's and moves the session's spooled content
//! into the queue's spool with [`Message::persist`] (a rename when both live on the same file
//! system), then the queue fsyncs and commits it — only then does `accept` return `Ok`, so the
//! session's `250` follows durability (invariant 1). This file must never touch message
//! content beyond that move.
//!
//! Security note: the session validated addresses already; the queue validates them again
//! ([`Envelope::validate`]) because they end up in SMTP commands on the way out.

use crate::smtp::{self, AcceptError, Acceptor};

use super::envelope::{BodyType, ClientInfo, Envelope, Notify, Recipient, Ret};
use super::{Queue, QueueError};

/// The queue's envelope for a message accepted by an SMTP session.
pub fn envelope_from_smtp(e: &smtp::Envelope) -> Envelope {
    let mut env = Envelope::new(
        e.sender
            .as_ref()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default(),
    );
    env.recipients = e
        .recipients
        .iter()
        .map(|r| {
            let mut q = Recipient::new(r.address.as_str());
            q.notify = r.notify.map(|n| Notify {
                success: n.success,
                failure: n.failure,
                delay: n.delay,
            });
            q.orcpt = r
                .orcpt
                .as_ref()
                .map(|o| format!("{};{}", o.addr_type, o.address));
            q
        })
        .collect();
    env.envid = e.envid.clone();
    env.ret = e.ret.map(|r| match r {
        smtp::Ret::Full => Ret::Full,
        smtp::Ret::Headers => Ret::Hdrs,
    });
    env.body = match e.body {
        smtp::BodyType::SevenBit => BodyType::SevenBit,
        smtp::BodyType::EightBitMime => BodyType::EightBitMime,
    };
    env.smtputf8 = e.smtputf8;
    env.auth_user = e.auth_user.clone();
    let protocol = match (e.tls.is_some(), e.auth_user.is_some()) {
        (false, false) => "ESMTP",
        (true, false) => "ESMTPS",
        (false, true) => "ESMTPA",
        (true, true) => "ESMTPSA",
    };
    env.client = Some(ClientInfo {
        addr: Some(e.peer.ip()),
        helo: e.helo.clone(),
        protocol: protocol.to_string(),
    });
    env
}

/// The session's error for a queue refusal (the session maps it to a reply code).
pub fn accept_error(e: &QueueError) -> AcceptError {
    match e {
        QueueError::NoSpace { .. } => AcceptError::NoSpace,
        QueueError::TooBig { .. } | QueueError::TooManyHops { .. } | QueueError::Envelope(_) => {
            AcceptError::Permanent(e.to_string())
        }
        _ => AcceptError::Temporary(e.to_string()),
    }
}

impl Acceptor for Queue {
    async fn accept(
        &self,
        envelope: smtp::Envelope,
        message: smtp::Message,
    ) -> Result<smtp::QueueId, AcceptError> {
        let env = envelope_from_smtp(&envelope);
        let len = message.len();
        let result = self
            .enqueue_with(env, len, move |path| message.persist(path).map(drop))
            .await;
        match result {
            Ok(id) => Ok(smtp::QueueId(id.to_string())),
            Err(e) => {
                tracing::warn!(error = %e, session = envelope.session_id, "queue: message refused");
                Err(accept_error(&e))
            }
        }
    }
}
