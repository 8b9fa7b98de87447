//! Anti-UBE: filtering unsolicited bulk mail and viruses inside the SMTP transaction (issue 6).
//!
//! The plan, stage by stage, each a module the SMTP session will call through a policy:
//!
//! - connection: DNSBL/RBL lookups of the client, per-IP connection limits, pregreet
//!   detection, optional forward-confirmed reverse DNS;
//! - envelope: SPF for MAIL FROM and HELO ([`spf`]), optional greylisting;
//! - content: Postfix-format header/MIME-header/body checks ([`checks`]: regexp and pcre
//!   tables), a scoring engine (rules, GTUBE, DKIM/DMARC results), clamd and spamd clients;
//! - decisions: reject in the transaction or tag and deliver, each decision a structured event
//!   and a metric; the policy replicated cluster-wide.
//!
//! Only [`spf`] and [`checks`] exist so far, and nothing calls them yet: the SMTP integration
//! (policy, reply codes, `Received-SPF`, header/body line feeding) comes with the stages.
//!
//! Never: write the queue or the store, or decide anything on its own — every stage returns a
//! verdict and the policy decides. Security: everything evaluated here (DNS answers, HELO
//! names, sender addresses) is attacker-controlled; work per message is bounded (SPF's DNS
//! limits, lookup timeouts) and no input may panic.

pub mod anvil;
pub mod checks;
pub mod clamd;
pub mod content;
pub mod dkim;
pub mod dnsbl;
pub mod filter;
pub mod greylist;
pub mod policy;
pub mod rdns;
mod scanner;
pub mod spamd;
pub mod spf;

use std::sync::{Arc, RwLock};

pub use policy::{Policy, PolicyDoc, PolicyError};

/// The policy in force on this node, swapped whole when the replicated document changes.
/// Sessions take a snapshot ([`PolicyHandle::get`]) at connect and keep it to the end, so a
/// change never applies half to a transaction.
#[derive(Debug)]
pub struct PolicyHandle {
    current: RwLock<(u64, Arc<Policy>)>,
}

impl Default for PolicyHandle {
    fn default() -> Self {
        PolicyHandle::new(Policy::default())
    }
}

impl PolicyHandle {
    /// A handle holding `policy` as version 0 (the built-in defaults before any document).
    pub fn new(policy: Policy) -> Self {
        PolicyHandle {
            current: RwLock::new((0, Arc::new(policy))),
        }
    }

    /// The policy in force.
    pub fn get(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// The version (Raft log index of the document's last change; 0: defaults).
    pub fn version(&self) -> u64 {
        self.current.read().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Installs `policy` as `version`.
    pub fn set(&self, version: u64, policy: Policy) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (version, Arc::new(policy));
    }
}
