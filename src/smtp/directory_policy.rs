//! The production [`MailPolicy`]: recipients and senders judged against the replicated
//! directory, logins through [`crate::auth::authenticate`].
//!
//! - MX: only the directory's domains are accepted — never an open relay — and each
//!   recipient must resolve (`550 5.1.1` otherwise). Any sender is accepted here; anti-UBE
//!   checks come later.
//! - Submission: authenticated users relay anywhere; local recipients must still exist. The
//!   envelope sender and every `From:` address must be the user's own address, a subaddress
//!   of it (`user+tag@`), or an alias that delivers to the user (`553 5.7.1` otherwise); the
//!   null sender is refused.
//! - LMTP: the recipient must be an enabled user (the queue has expanded aliases already).
//! - SRS: with the site's SRS keys ([`DirectoryPolicy::with_srs`]), an `SRS0=` address of a
//!   local domain (a bounce of mail a Sieve script redirected) is accepted while its hash is
//!   right and it has not expired, and refused with `550 5.1.1` otherwise.
//!
//! The verdicts are pure functions over a [`Directory`] so they are table-tested without a
//! cluster. Reads are local and never block on the network.
//!
//! Security note: "an alias that delivers to the user" includes shared aliases (`team@` →
//! alice, bob): any member may send as the role address, as in the reference deployment.
//! Lists are not aliases: being a list member does not let a user send as the list.

use std::sync::Arc;

use crate::auth::AuthError;
use crate::cluster::Cluster;
use crate::directory::{Address, Directory, ResolveError};
use crate::mail::srs::Srs;

use super::policy::{AuthFailure, MailPolicy, Verdict};
use super::Mode;

/// [`MailPolicy`] over the cluster's directory.
#[derive(Clone)]
pub struct DirectoryPolicy {
    cluster: Cluster,
    /// Verifies `SRS0=` recipients; `None`: they are unknown users like any other.
    srs: Option<Arc<Srs>>,
}

impl DirectoryPolicy {
    /// A policy reading `cluster`'s directory.
    pub fn new(cluster: Cluster) -> Self {
        DirectoryPolicy { cluster, srs: None }
    }

    /// Also accepts valid, unexpired `SRS0=` addresses of local domains (MX, submission).
    pub fn with_srs(mut self, srs: Option<Arc<Srs>>) -> Self {
        self.srs = srs;
        self
    }

    fn with_directory<T>(&self, f: impl FnOnce(&Directory) -> T) -> T {
        let dir = self.cluster.read_directory();
        f(&dir)
    }
}

impl MailPolicy for DirectoryPolicy {
    fn check_sender(
        &self,
        mode: Mode,
        auth_user: Option<&str>,
        sender: Option<&Address>,
    ) -> Verdict {
        self.with_directory(|dir| sender_verdict(dir, mode, auth_user, sender))
    }

    fn check_rcpt(&self, mode: Mode, auth_user: Option<&str>, rcpt: &Address) -> Verdict {
        self.with_directory(|dir| match &self.srs {
            Some(srs) if mode != Mode::Lmtp => srs_verdict(dir, srs, rcpt, now_unix())
                .unwrap_or_else(|| rcpt_verdict(dir, mode, auth_user, rcpt)),
            _ => rcpt_verdict(dir, mode, auth_user, rcpt),
        })
    }

    async fn authenticate(&self, user: &str, password: &str) -> Result<String, AuthFailure> {
        match crate::auth::authenticate(&self.cluster, user, password).await {
            Ok(login) => Ok(login.address),
            Err(AuthError::Failed | AuthError::Disabled) => Err(AuthFailure::Invalid),
            Err(AuthError::BadHash(why)) => {
                tracing::warn!(%user, %why, "unusable password hash: reset the password with `mailctl user passwd`");
                Err(AuthFailure::Invalid)
            }
        }
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The verdict on an `SRS0=` recipient of a local domain; `None` for any other address.
pub fn srs_verdict(dir: &Directory, srs: &Srs, rcpt: &Address, now_unix: i64) -> Option<Verdict> {
    if !Srs::is_srs(rcpt.as_str()) || dir.domain(rcpt.domain()).is_none() {
        return None;
    }
    Some(match srs.reverse(rcpt.as_str(), now_unix) {
        Ok(orig) if Address::parse(&orig).is_ok() => Verdict::Accept,
        Ok(_) | Err(_) => Verdict::UnknownUser,
    })
}

/// Judges an envelope or `From:` sender.
pub fn sender_verdict(
    dir: &Directory,
    mode: Mode,
    auth_user: Option<&str>,
    sender: Option<&Address>,
) -> Verdict {
    if mode != Mode::Submission {
        return Verdict::Accept;
    }
    let Some(user) = auth_user else {
        return Verdict::AuthRequired;
    };
    match sender {
        Some(sender) if owns(dir, user, sender) => Verdict::Accept,
        _ => Verdict::NotOwned,
    }
}

/// Whether `user` (a canonical address) may use `sender`.
fn owns(dir: &Directory, user: &str, sender: &Address) -> bool {
    let base = sender.split_subaddress().map(|(base, _)| base);
    let owned = [Some(sender), base.as_ref()]
        .into_iter()
        .flatten()
        .any(|candidate| {
            candidate.as_str().eq_ignore_ascii_case(user)
                || (dir.alias(candidate.as_str()).is_some()
                    && dir.resolve(candidate.as_str()).is_ok_and(|r| {
                        r.mailboxes
                            .iter()
                            .any(|m| m.as_str().eq_ignore_ascii_case(user))
                    }))
        });
    owned
}

/// Judges a recipient.
pub fn rcpt_verdict(
    dir: &Directory,
    mode: Mode,
    auth_user: Option<&str>,
    rcpt: &Address,
) -> Verdict {
    match mode {
        Mode::Mx => local_verdict(dir, rcpt),
        Mode::Submission if auth_user.is_none() => Verdict::AuthRequired,
        Mode::Submission => match local_verdict(dir, rcpt) {
            Verdict::RelayDenied => Verdict::Accept,
            other => other,
        },
        Mode::Lmtp => mailbox_verdict(dir, rcpt),
    }
}

/// A recipient in one of our domains must resolve; any other domain is a relay.
fn local_verdict(dir: &Directory, rcpt: &Address) -> Verdict {
    match dir.resolve(rcpt.as_str()) {
        Ok(_) => Verdict::Accept,
        Err(ResolveError::NotLocal { .. }) => Verdict::RelayDenied,
        Err(ResolveError::Disabled { .. }) => Verdict::Disabled,
        Err(ResolveError::TooDeep { .. }) => Verdict::Loop,
        Err(
            ResolveError::UnknownUser { .. }
            | ResolveError::NoRecipients { .. }
            | ResolveError::InvalidAddress { .. },
        ) => Verdict::UnknownUser,
    }
}

/// LMTP: an enabled user, addressed directly or by subaddress.
fn mailbox_verdict(dir: &Directory, rcpt: &Address) -> Verdict {
    let base = rcpt.split_subaddress().map(|(base, _)| base);
    let user = dir
        .user(rcpt.as_str())
        .or_else(|| base.as_ref().and_then(|b| dir.user(b.as_str())));
    match user {
        Some(u) if u.enabled => Verdict::Accept,
        Some(_) => Verdict::Disabled,
        None => Verdict::UnknownUser,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{Command, User};

    const HASH: &str = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";

    fn directory() -> Directory {
        let mut dir = Directory::new();
        let mut bob = User::new("bob@example.org", HASH);
        bob.enabled = false;
        let cmds = vec![
            Command::AddDomain {
                name: "example.org".into(),
            },
            Command::AddUser(User::new("alice@example.org", HASH)),
            Command::AddUser(bob),
            Command::AddUser(User::new("carol@example.org", HASH)),
            Command::AddAlias {
                address: "postmaster@example.org".into(),
                targets: vec!["alice@example.org".into()],
            },
            Command::AddAlias {
                address: "team@example.org".into(),
                targets: vec!["postmaster@example.org".into(), "carol@example.org".into()],
            },
            Command::AddAlias {
                address: "gone@example.org".into(),
                targets: vec!["bob@example.org".into()],
            },
            Command::AddList {
                address: "all@example.org".into(),
                members: vec!["alice@example.org".into()],
            },
            Command::AddList {
                address: "empty@example.org".into(),
                members: vec![],
            },
        ];
        for cmd in cmds {
            dir.apply(&cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        }
        dir
    }

    fn a(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    #[test]
    fn srs_recipients_of_local_domains_only() {
        let dir = directory();
        let srs = Srs::new(vec![b"a-test-secret-0123456789".to_vec()]).unwrap();
        let now = 1_780_000_000;
        let good = srs.forward("carol@remote.example", "example.org", now);
        assert_eq!(
            srs_verdict(&dir, &srs, &a(&good), now),
            Some(Verdict::Accept)
        );
        let forged = good.replace("=carol@", "=mallory@");
        assert_eq!(
            srs_verdict(&dir, &srs, &a(&forged), now),
            Some(Verdict::UnknownUser)
        );
        assert_eq!(
            srs_verdict(&dir, &srs, &a(&good), now + 40 * 86_400),
            Some(Verdict::UnknownUser),
            "expired"
        );
        let foreign = srs.forward("carol@remote.example", "other.example", now);
        assert_eq!(
            srs_verdict(&dir, &srs, &a(&foreign), now),
            None,
            "not ours: relay rules"
        );
        assert_eq!(srs_verdict(&dir, &srs, &a("alice@example.org"), now), None);
    }

    #[test]
    fn recipients() {
        use Verdict::*;
        let dir = directory();
        let alice = Some("alice@example.org");
        let cases: Vec<(Mode, Option<&str>, &str, Verdict)> = vec![
            (Mode::Mx, None, "alice@example.org", Accept),
            (Mode::Mx, None, "Alice+news@Example.org", Accept),
            (Mode::Mx, None, "team@example.org", Accept),
            (Mode::Mx, None, "all@example.org", Accept),
            (Mode::Mx, None, "nobody@example.org", UnknownUser),
            (Mode::Mx, None, "empty@example.org", UnknownUser),
            (Mode::Mx, None, "bob@example.org", Disabled),
            (Mode::Mx, None, "gone@example.org", Disabled),
            (Mode::Mx, None, "someone@elsewhere.net", RelayDenied),
            (Mode::Mx, alice, "someone@elsewhere.net", RelayDenied),
            (
                Mode::Submission,
                None,
                "someone@elsewhere.net",
                AuthRequired,
            ),
            (Mode::Submission, alice, "someone@elsewhere.net", Accept),
            (Mode::Submission, alice, "carol@example.org", Accept),
            (Mode::Submission, alice, "nobody@example.org", UnknownUser),
            (Mode::Lmtp, None, "alice@example.org", Accept),
            (Mode::Lmtp, None, "alice+x@example.org", Accept),
            (Mode::Lmtp, None, "bob@example.org", Disabled),
            (Mode::Lmtp, None, "team@example.org", UnknownUser),
            (Mode::Lmtp, None, "someone@elsewhere.net", UnknownUser),
        ];
        for (mode, auth, rcpt, want) in cases {
            assert_eq!(
                rcpt_verdict(&dir, mode, auth, &a(rcpt)),
                want,
                "{mode:?} {auth:?} {rcpt}"
            );
        }
    }

    #[test]
    fn senders() {
        use Verdict::*;
        let dir = directory();
        let alice = Some("alice@example.org");
        let cases: Vec<(Mode, Option<&str>, Option<&str>, Verdict)> = vec![
            (Mode::Mx, None, Some("anyone@elsewhere.net"), Accept),
            (Mode::Mx, None, None, Accept),
            (
                Mode::Submission,
                None,
                Some("alice@example.org"),
                AuthRequired,
            ),
            (Mode::Submission, alice, Some("alice@example.org"), Accept),
            (
                Mode::Submission,
                alice,
                Some("alice+lists@example.org"),
                Accept,
            ),
            (
                Mode::Submission,
                alice,
                Some("postmaster@example.org"),
                Accept,
            ),
            (Mode::Submission, alice, Some("team@example.org"), Accept),
            (
                Mode::Submission,
                Some("carol@example.org"),
                Some("team@example.org"),
                Accept,
            ),
            (
                Mode::Submission,
                Some("carol@example.org"),
                Some("postmaster@example.org"),
                NotOwned,
            ),
            (Mode::Submission, alice, Some("all@example.org"), NotOwned),
            (Mode::Submission, alice, Some("carol@example.org"), NotOwned),
            (
                Mode::Submission,
                alice,
                Some("alice@elsewhere.net"),
                NotOwned,
            ),
            (Mode::Submission, alice, None, NotOwned),
        ];
        for (mode, auth, sender, want) in cases {
            let sender = sender.map(a);
            assert_eq!(
                sender_verdict(&dir, mode, auth, sender.as_ref()),
                want,
                "{mode:?} {auth:?} {sender:?}"
            );
        }
    }
}
