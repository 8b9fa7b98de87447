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

pub mod checks;
pub mod spf;
