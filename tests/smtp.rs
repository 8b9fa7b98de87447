//! Protocol tests of the SMTP, submission and LMTP servers (`mailnode::smtp`): raw bytes
//! against servers on 127.0.0.1 port 0 through `net::serve`, with in-test implementations
//! of the policy, queue and store traits; then real clients (Python's smtplib and swaks).
//!
//! They never reach beyond 127.0.0.1 and bound every wait, so a regression fails instead of
//! hanging. Certificates come from `mailnode::tls`.

#[path = "smtp/clients.rs"]
mod clients;
#[path = "smtp/harness.rs"]
mod harness;
#[path = "smtp/lmtp.rs"]
mod lmtp;
#[path = "smtp/mx.rs"]
mod mx;
#[path = "smtp/mx_limits.rs"]
mod mx_limits;
#[path = "smtp/submission.rs"]
mod submission;
