//! Admin API routes for the mail queue (`/api/queue`) and the message store (`/api/store`):
//! the operator verbs behind `mailctl queue …` and `mailctl store …`.
//!
//! Handlers parse and validate what the operator sent (queue ids are parsed as [`QueueId`]
//! before they reach the queue, so nothing else ever becomes a path), call the queue's or the
//! store's operator API, and map their errors to statuses in one place each
//! ([`queue_error`], [`store_error`]). They never deliver, never change a recipient's state and
//! never write a mailbox: only `store check --repair` changes store files, through
//! [`Store::check`]. Quotas come from the directory, not the store.
//!
//! Security note: every route sits behind the admin token (checked in `super`); user names are
//! looked up in the directory first and validated again by the store; answers never include
//! message bodies (a queued message's header section, size-capped by the queue, is the most).

use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::routes::Call;
use super::{json, AdminApi, ApiError, ApiResult};
use crate::queue::{Queue, QueueError, QueueId};
use crate::store::{CheckReport, Finding, SpecialUse, Store, StoreError};

/// The hint on every "no such message" answer.
const LIST_HINT: &str = "it may have been delivered or deleted meanwhile; `mailctl queue list` \
                         shows what is queued on this node";

/// A user's footprint in the store: `GET /api/store/users/{addr}`, `mailctl store usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUsage {
    /// The user's address as the directory spells it (the store's owner name).
    pub user: String,
    /// Messages in all mailboxes.
    pub messages: u64,
    /// Bytes in all mailboxes (including deliveries in progress).
    pub bytes: u64,
    /// The directory's quota in bytes; 0 is unlimited.
    pub quota_bytes: u64,
    /// Each mailbox, sorted by name.
    pub mailboxes: Vec<MailboxUsage>,
}

/// One mailbox in a [`UserUsage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxUsage {
    pub name: String,
    /// RFC 6154 role (`\Sent`, `\Trash`, …), if the mailbox has one.
    pub special_use: Option<String>,
    pub messages: u32,
    /// Messages without `\Seen`.
    pub unseen: u32,
    pub bytes: u64,
}

/// `POST /api/store/check`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckRequest {
    #[serde(default)]
    repair: bool,
    /// One user instead of the whole volume.
    user: Option<String>,
}

/// A [`CheckReport`] with the verdicts `mailctl` needs, so it does not have to know which
/// finding kinds are damage.
#[derive(Serialize)]
struct CheckAnswer {
    #[serde(flatten)]
    report: CheckReportView,
    /// Nothing found at all.
    clean: bool,
    /// Findings that are damage rather than crash leftovers.
    damage: usize,
    /// Damage still present after this run (always the damage when `repair` was false).
    unrepaired_damage: usize,
}

#[derive(Serialize)]
struct CheckReportView {
    repair: bool,
    users: u64,
    mailboxes: u64,
    messages: u64,
    bytes: u64,
    findings: Vec<FindingView>,
}

#[derive(Serialize)]
struct FindingView {
    #[serde(flatten)]
    finding: Finding,
    damage: bool,
}

impl From<CheckReport> for CheckAnswer {
    fn from(r: CheckReport) -> Self {
        let damage = r.damage().count();
        let unrepaired_damage = r.damage().filter(|f| !f.fixed).count();
        CheckAnswer {
            clean: r.is_clean(),
            damage,
            unrepaired_damage,
            report: CheckReportView {
                repair: r.repair,
                users: r.users,
                mailboxes: r.mailboxes,
                messages: r.messages,
                bytes: r.bytes,
                findings: r
                    .findings
                    .into_iter()
                    .map(|f| FindingView {
                        damage: f.kind.is_damage(),
                        finding: f,
                    })
                    .collect(),
            },
        }
    }
}

/// `/api/queue…`.
pub(super) async fn queue(api: &AdminApi, call: Call<'_>) -> ApiResult {
    let q = api.queue.as_ref().ok_or_else(|| {
        ApiError::new(StatusCode::CONFLICT, "this node runs no mail queue")
            .with_hint("run the command against a node that takes mail (see `mailctl status`)")
    })?;
    match (call.method, call.segs) {
        (&Method::GET, [_]) => {
            let (after, limit) = page_params(call.query)?;
            let page = q.list_page(after.as_ref(), limit).await;
            json(StatusCode::OK, &page.map_err(queue_error)?)
        }
        (&Method::POST, [_, "flush"]) => flushed(q, None).await,
        (&Method::GET, [_, id]) => {
            let id = parse_id(id)?;
            json(StatusCode::OK, &q.show(&id).await.map_err(queue_error)?)
        }
        (&Method::POST, [_, id, "flush"]) => flushed(q, Some(&parse_id(id)?)).await,
        (&Method::DELETE, [_, id]) => {
            q.delete(&parse_id(id)?).await.map_err(queue_error)?;
            ok()
        }
        (&Method::POST, [_, id, "hold"]) => {
            q.hold(&parse_id(id)?).await.map_err(queue_error)?;
            ok()
        }
        (&Method::POST, [_, id, "release"]) => {
            q.release(&parse_id(id)?).await.map_err(queue_error)?;
            ok()
        }
        _ => Err(super::routes::no_route(&call)),
    }
}

/// Messages per page of `GET /api/queue` unless `limit=` says otherwise, and the most.
pub const PAGE_DEFAULT: usize = 1000;
pub const PAGE_MAX: usize = 10_000;

/// `after=ID&limit=N` of a queue listing.
fn page_params(query: &str) -> Result<(Option<QueueId>, usize), ApiError> {
    let after = super::query_param(query, "after")
        .map(|a| parse_id(&a))
        .transpose()?;
    let limit = match super::query_param(query, "limit") {
        None => PAGE_DEFAULT,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if (1..=PAGE_MAX).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit must be a number from 1 to {PAGE_MAX}"
                )))
            }
        },
    };
    Ok((after, limit))
}

async fn flushed(q: &Queue, id: Option<&QueueId>) -> ApiResult {
    let n = q.flush(id).await.map_err(queue_error)?;
    json(
        StatusCode::OK,
        &serde_json::json!({"ok": true, "flushed": n}),
    )
}

fn ok() -> ApiResult {
    json(StatusCode::OK, &serde_json::json!({"ok": true}))
}

/// An operator-typed queue id, or a 400 that says what one looks like.
fn parse_id(text: &str) -> Result<QueueId, ApiError> {
    QueueId::parse(text).ok_or_else(|| {
        let shown: String = text.chars().take(64).collect();
        ApiError::bad_request(format!(
            "invalid queue id {shown:?}: a queue id is 20 lower-case hex digits"
        ))
        .with_hint("copy it from `mailctl queue list`")
    })
}

/// The one place queue errors become statuses.
fn queue_error(e: QueueError) -> ApiError {
    match e {
        QueueError::NotFound(id) => {
            ApiError::not_found(format!("no message {id} in the queue")).with_hint(LIST_HINT)
        }
        QueueError::ShuttingDown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            .with_hint("the node is stopping; retry on it once it is back, or on another node"),
        e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `/api/store…`.
pub(super) async fn store(api: &AdminApi, call: Call<'_>) -> ApiResult {
    let s = &api.current_store().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "this node does not serve the message store: run it on the active mailstore node \
             (see `mailctl status`)",
        )
    })?;
    match (call.method, call.segs) {
        (&Method::POST, [_, "check"]) => {
            let req: CheckRequest = if call.body.iter().all(u8::is_ascii_whitespace) {
                CheckRequest::default()
            } else {
                serde_json::from_slice(call.body)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
            };
            let report = match req.user {
                Some(u) => {
                    // A user the directory no longer knows may still have mail on the volume:
                    // check it under the name given.
                    let owner = directory_user(api, &u).map_or(u, |(a, _)| a);
                    s.check_user(&owner, req.repair).await
                }
                None => s.check(req.repair).await,
            }
            .map_err(store_error)?;
            json(StatusCode::OK, &CheckAnswer::from(report))
        }
        (&Method::GET, [_, "users", addr]) => {
            let (user, quota_bytes) = directory_user(api, addr).ok_or_else(|| {
                ApiError::not_found(format!("no user {addr} in the directory"))
                    .with_hint("see `mailctl user list`")
            })?;
            json(StatusCode::OK, &usage(s, user, quota_bytes).await?)
        }
        _ => Err(super::routes::no_route(&call)),
    }
}

/// The directory's spelling of a user's address and the user's quota.
fn directory_user(api: &AdminApi, addr: &str) -> Option<(String, u64)> {
    let dir = api.cluster.read_directory();
    dir.user(addr).map(|u| (u.address.clone(), u.quota_bytes))
}

async fn usage(s: &Store, user: String, quota_bytes: u64) -> Result<UserUsage, ApiError> {
    let totals = s.usage(&user).await.map_err(store_error)?;
    let mut mailboxes = Vec::new();
    for mb in s.list_mailboxes(&user).await.map_err(store_error)? {
        let st = match s.status(&user, &mb.name).await {
            Ok(st) => st,
            // Deleted by a session between the list and now.
            Err(StoreError::MailboxNotFound(_)) => continue,
            Err(e) => return Err(store_error(e)),
        };
        mailboxes.push(MailboxUsage {
            special_use: mb
                .special_use
                .map(|u: SpecialUse| u.imap_name().to_string()),
            name: mb.name,
            messages: st.messages,
            unseen: st.unseen,
            bytes: st.size,
        });
    }
    Ok(UserUsage {
        user,
        messages: totals.messages,
        bytes: totals.bytes,
        quota_bytes,
        mailboxes,
    })
}

/// The one place store errors become statuses.
fn store_error(e: StoreError) -> ApiError {
    let status = match &e {
        StoreError::InvalidUser(_) | StoreError::InvalidName { .. } => StatusCode::BAD_REQUEST,
        StoreError::MailboxNotFound(_) => StatusCode::NOT_FOUND,
        // The volume is not mounted here (or is another build's): the operator is on the wrong
        // node or the failover has not finished — a conflict with the node's state.
        StoreError::NotInitialised { .. } | StoreError::UnsupportedFormat { .. } => {
            StatusCode::CONFLICT
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_parameters_are_validated() {
        assert_eq!(page_params("").unwrap(), (None, PAGE_DEFAULT));
        let id = "0005f0e1d2c3b4a50001";
        let (after, limit) = page_params(&format!("after={id}&limit=5")).unwrap();
        assert_eq!((after.unwrap().as_str(), limit), (id, 5));
        for bad in [
            "limit=0",
            "limit=10001",
            "limit=x",
            "after=../etc",
            "after=",
        ] {
            assert!(page_params(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queue_ids_are_validated_before_use() {
        assert!(parse_id("0123456789abcdef012345").is_err());
        assert!(parse_id("../../etc/passwd").is_err());
        assert!(parse_id("0123456789ABCDEF0123").is_err());
        let e = parse_id("nope").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.hint.unwrap().contains("mailctl queue list"));
        assert_eq!(
            parse_id("0123456789abcdef0123").unwrap().as_str(),
            "0123456789abcdef0123"
        );
    }

    #[test]
    fn queue_errors_map_to_statuses() {
        let id = QueueId::parse("0123456789abcdef0123").unwrap();
        let e = queue_error(QueueError::NotFound(id));
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert!(e.hint.unwrap().contains("mailctl queue list"));
        assert_eq!(
            queue_error(QueueError::ShuttingDown).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            queue_error(QueueError::Transport("x".into())).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn store_errors_map_to_statuses() {
        let cases = [
            (StoreError::InvalidUser("".into()), StatusCode::BAD_REQUEST),
            (
                StoreError::MailboxNotFound("x".into()),
                StatusCode::NOT_FOUND,
            ),
            (
                StoreError::NotInitialised {
                    root: "/srv/mail".into(),
                },
                StatusCode::CONFLICT,
            ),
            (
                StoreError::Internal("x".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(store_error(e).status, status);
        }
    }

    #[test]
    fn check_answers_carry_the_verdicts() {
        use crate::store::FindingKind;
        let finding = |kind, fixed| Finding {
            user: "a@x.org".into(),
            mailbox: Some("INBOX".into()),
            kind,
            detail: "d".into(),
            fixed,
        };
        let report = CheckReport {
            repair: false,
            users: 1,
            mailboxes: 1,
            messages: 2,
            bytes: 10,
            findings: vec![
                finding(FindingKind::TempFile, false),
                finding(FindingKind::ChecksumMismatch, false),
                finding(FindingKind::MissingMessage, true),
            ],
        };
        let v = serde_json::to_value(CheckAnswer::from(report)).unwrap();
        assert_eq!(v["clean"], false);
        assert_eq!(v["damage"], 2);
        assert_eq!(v["unrepaired_damage"], 1);
        assert_eq!(v["messages"], 2);
        assert_eq!(v["findings"][0]["kind"], "temp_file");
        assert_eq!(v["findings"][0]["damage"], false);
        assert_eq!(v["findings"][1]["damage"], true);
        let clean = serde_json::to_value(CheckAnswer::from(CheckReport::default())).unwrap();
        assert_eq!(clean["clean"], true);
        assert_eq!(clean["unrepaired_damage"], 0);
    }
}
