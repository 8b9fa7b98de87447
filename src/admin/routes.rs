//! Route table of the admin API: one function per resource, mapping HTTP onto cluster calls.

use std::collections::BTreeMap;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::{json, query_param, AdminApi, ApiError, ApiResult};
use crate::auth;
use crate::cluster::{NodeInfo, Response};
use crate::directory::import::{import_command, ImportRecord};
use crate::directory::password::{hash_password, scheme_of};
use crate::directory::{Command, ItemKind, Outcome, User};

/// Records per import request: keeps each Raft log entry a few megabytes at most.
pub const MAX_IMPORT_BATCH: usize = 10_000;

/// One parsed request.
pub struct Call<'a> {
    pub method: &'a Method,
    pub segs: &'a [&'a str],
    pub query: &'a str,
    pub body: &'a Bytes,
}

impl Call<'_> {
    pub(super) fn body<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(self.body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

pub async fn route(api: &AdminApi, call: Call<'_>) -> ApiResult {
    let m = call.method;
    match (call.segs.first().copied(), call.segs.len()) {
        (Some("status"), 1) if m == Method::GET => {
            let internal = |e: serde_json::Error| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            };
            let mut status = serde_json::to_value(api.cluster.status().await).map_err(internal)?;
            // This node's own mail queue (each node has its own, on its local disk).
            if let (Some(q), Some(obj)) = (&api.queue, status.as_object_mut()) {
                obj.insert(
                    "queue".into(),
                    serde_json::to_value(q.stats()).map_err(internal)?,
                );
            }
            if let Some(obj) = status.as_object_mut() {
                obj.insert("mailstore".into(), mailstore_status(api).map_err(internal)?);
            }
            json(StatusCode::OK, &status)
        }
        (Some("cluster"), 2) if call.segs[1] == "bootstrap" && m == Method::POST => {
            api.cluster.bootstrap().await?;
            done()
        }
        (Some("nodes"), _) => nodes(api, call).await,
        (Some("domains"), _) => domains(api, call).await,
        (Some("users"), n) if n >= 3 && call.segs[2].starts_with("sieve") => {
            super::sieve::route(api, call).await
        }
        (Some("users"), _) => users(api, call).await,
        (Some("aliases"), _) => aliases(api, call).await,
        (Some("lists"), _) => lists(api, call).await,
        (Some("queue"), _) => super::mail::queue(api, call).await,
        (Some("mailstore"), _) => mailstore(api, call).await,
        (Some("store"), _) => super::mail::store(api, call).await,
        (Some("policy"), _) => super::policy::route(api, call).await,
        (Some("resolve"), 2) if m == Method::GET => {
            consistent(api, &call).await?;
            let dir = api.cluster.read_directory();
            match dir.resolve(call.segs[1]) {
                Ok(r) => json(StatusCode::OK, &r),
                Err(e) => Err(ApiError::not_found(e.to_string())),
            }
        }
        _ => Err(no_route(&call)),
    }
}

pub(super) fn no_route(call: &Call<'_>) -> ApiError {
    ApiError::not_found(format!(
        "no route {} /api/{}",
        call.method,
        call.segs.join("/")
    ))
}

fn done() -> ApiResult {
    json(StatusCode::OK, &serde_json::json!({"ok": true}))
}

/// `?consistent=1` asks for a linearizable read; otherwise the local copy answers.
async fn consistent(api: &AdminApi, call: &Call<'_>) -> Result<(), ApiError> {
    if matches!(
        query_param(call.query, "consistent").as_deref(),
        Some("1" | "true")
    ) {
        api.cluster.linearizable().await?;
    }
    Ok(())
}

/// The replicated lease and this node's part in it, for `/api/status`.
fn mailstore_status(api: &AdminApi) -> Result<serde_json::Value, serde_json::Error> {
    let lease = api.cluster.mailstore().borrow().clone();
    let mut v = serde_json::to_value(&lease)?;
    if let Some(obj) = v.as_object_mut() {
        let local = api.failover.as_ref().map(|f| f.role());
        obj.insert("local".into(), serde_json::to_value(local)?);
    }
    Ok(v)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchoverRequest {
    /// The node to take over; absent: any other eligible node.
    to: Option<u64>,
}

/// `/api/mailstore/switchover`, `/api/mailstore/drain/{id}`, `/api/mailstore/undrain/{id}`.
async fn mailstore(api: &AdminApi, call: Call<'_>) -> ApiResult {
    use crate::failover::state::{LeaseCommand, LeaseOutcome};
    let cmd = match (call.method, call.segs) {
        (&Method::POST, [_, "switchover"]) => {
            let req: SwitchoverRequest = if call.body.iter().all(u8::is_ascii_whitespace) {
                SwitchoverRequest { to: None }
            } else {
                call.body()?
            };
            LeaseCommand::Switchover { to: req.to }
        }
        (&Method::POST, [_, verb @ ("drain" | "undrain"), id]) => {
            let node: u64 = id
                .parse()
                .map_err(|_| ApiError::bad_request(format!("{id}: not a node id")))?;
            let members = api.cluster.status().await.nodes;
            if !members.iter().any(|m| m.id == node) {
                return Err(
                    ApiError::not_found(format!("no node {node} in the cluster"))
                        .with_hint("`mailctl node list` shows the members"),
                );
            }
            LeaseCommand::Drain {
                node,
                drained: *verb == "drain",
            }
        }
        _ => return Err(no_route(&call)),
    };
    match api.cluster.lease(cmd).await? {
        LeaseOutcome::Done => done(),
        LeaseOutcome::Stale(why) => Err(ApiError::new(StatusCode::CONFLICT, why)
            .with_hint("`mailctl status` shows the holder and the nodes that can take over")),
    }
}

async fn write(api: &AdminApi, cmd: Command) -> Result<Response, ApiError> {
    Ok(api.cluster.write(cmd).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNode {
    id: u64,
    name: String,
    raft_addr: String,
    api_addr: String,
}

async fn nodes(api: &AdminApi, call: Call<'_>) -> ApiResult {
    match (call.method, call.segs.len()) {
        (&Method::GET, 1) => json(StatusCode::OK, &api.cluster.status().await.nodes),
        (&Method::POST, 1) => {
            let n: NewNode = call.body()?;
            if n.id == 0
                || n.name.is_empty()
                || !n.raft_addr.contains(':')
                || !n.api_addr.contains(':')
            {
                return Err(ApiError::bad_request(
                    "a node needs a positive id, a name, and host:port Raft and API addresses",
                ));
            }
            api.cluster
                .add_node(
                    n.id,
                    NodeInfo {
                        name: n.name,
                        raft_addr: n.raft_addr,
                        api_addr: n.api_addr,
                    },
                )
                .await?;
            done()
        }
        (&Method::DELETE, 2) => {
            let id: u64 = call.segs[1]
                .parse()
                .map_err(|_| ApiError::bad_request("node id must be a number"))?;
            api.cluster.remove_node(id).await?;
            done()
        }
        _ => Err(no_route(&call)),
    }
}

async fn domains(api: &AdminApi, call: Call<'_>) -> ApiResult {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewDomain {
        name: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CatchAll {
        target: Option<String>,
    }
    match (call.method, call.segs) {
        (&Method::GET, [_]) => {
            consistent(api, &call).await?;
            let dir = api.cluster.read_directory();
            let list: Vec<_> = dir.domains().cloned().collect();
            json(StatusCode::OK, &list)
        }
        (&Method::POST, [_]) => {
            let d: NewDomain = call.body()?;
            write(api, Command::AddDomain { name: d.name }).await?;
            done()
        }
        (&Method::DELETE, [_, name]) => {
            write(
                api,
                Command::RemoveDomain {
                    name: name.to_string(),
                },
            )
            .await?;
            done()
        }
        (&Method::PUT, [_, name, "catch-all"]) => {
            let c: CatchAll = call.body()?;
            write(
                api,
                Command::SetCatchAll {
                    domain: name.to_string(),
                    target: c.target,
                },
            )
            .await?;
            done()
        }
        _ => Err(no_route(&call)),
    }
}

/// A user as the API shows it: never the password hash, only its scheme.
#[derive(Serialize)]
struct UserView<'a> {
    address: &'a str,
    display_name: &'a str,
    quota_bytes: u64,
    mail_host: &'a str,
    enabled: bool,
    prefs: &'a BTreeMap<String, String>,
    password_scheme: String,
}

impl<'a> From<&'a User> for UserView<'a> {
    fn from(u: &'a User) -> Self {
        UserView {
            address: &u.address,
            display_name: &u.display_name,
            quota_bytes: u.quota_bytes,
            mail_host: &u.mail_host,
            enabled: u.enabled,
            prefs: &u.prefs,
            password_scheme: scheme_of(&u.password_hash)
                .map(|s| format!("{s:?}"))
                .unwrap_or_else(|_| "unknown".into()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    address: String,
    #[serde(default)]
    display_name: String,
    password: Option<String>,
    password_hash: Option<String>,
    #[serde(default)]
    quota_bytes: u64,
    mail_host: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    display_name: Option<String>,
    quota_bytes: Option<u64>,
    mail_host: Option<String>,
    enabled: Option<bool>,
    #[serde(default)]
    set_prefs: BTreeMap<String, String>,
    #[serde(default)]
    remove_prefs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Password {
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Import {
    records: Vec<ImportRecord>,
    #[serde(default)]
    create_domains: bool,
}

/// Hashes a new password off the async workers (argon2id takes tens of milliseconds).
async fn hash(password: String) -> Result<String, ApiError> {
    if password.is_empty() {
        return Err(ApiError::bad_request("the password is empty"));
    }
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn users(api: &AdminApi, call: Call<'_>) -> ApiResult {
    match (call.method, call.segs) {
        (&Method::GET, [_]) => {
            consistent(api, &call).await?;
            let domain = query_param(call.query, "domain");
            let dir = api.cluster.read_directory();
            let list: Vec<UserView> = dir.users(domain.as_deref()).map(UserView::from).collect();
            json(StatusCode::OK, &list)
        }
        (&Method::GET, [_, addr]) => {
            consistent(api, &call).await?;
            let dir = api.cluster.read_directory();
            match dir.user(addr) {
                Some(u) => json(StatusCode::OK, &UserView::from(u)),
                None => Err(ApiError::not_found(format!("no user {addr}"))),
            }
        }
        (&Method::POST, [_]) => {
            let n: NewUser = call.body()?;
            let password_hash = match (n.password, n.password_hash) {
                (Some(p), None) => hash(p).await?,
                (None, Some(h)) => {
                    scheme_of(&h).map_err(|e| ApiError::bad_request(e.to_string()))?;
                    h
                }
                _ => {
                    return Err(ApiError::bad_request(
                        "give exactly one of `password` and `password_hash`",
                    ))
                }
            };
            let mut user = User::new(n.address, password_hash);
            user.display_name = n.display_name;
            user.quota_bytes = n.quota_bytes;
            if let Some(h) = n.mail_host {
                user.mail_host = h;
            }
            user.enabled = n.enabled;
            write(api, Command::AddUser(user)).await?;
            json(StatusCode::CREATED, &serde_json::json!({"ok": true}))
        }
        (&Method::POST, [_, "import"]) => {
            let i: Import = call.body()?;
            if i.records.len() > MAX_IMPORT_BATCH {
                return Err(ApiError::bad_request(format!(
                    "{} records in one request; send at most {MAX_IMPORT_BATCH} per request (`mailctl user import` batches for you)",
                    i.records.len()
                )));
            }
            // Which record each alias comes from, to report alias errors against its record.
            let alias_owner: Vec<usize> = i
                .records
                .iter()
                .enumerate()
                .flat_map(|(n, r)| std::iter::repeat_n(n, r.aliases.len()))
                .collect();
            // Plaintext passwords become argon2id hashes here, before anything is logged.
            let create = i.create_domains;
            let cmd = tokio::task::spawn_blocking(move || {
                import_command(i.records, create, hash_password)
            })
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            match write(api, cmd).await? {
                Response::Applied(Outcome::Import {
                    applied,
                    domains_created,
                    errors,
                }) => {
                    let errors: Vec<_> = errors
                        .into_iter()
                        .map(|e| {
                            let record = match e.kind {
                                ItemKind::User => e.index,
                                ItemKind::Alias => alias_owner.get(e.index).copied().unwrap_or(e.index),
                            };
                            serde_json::json!({"record": record, "address": e.address, "reason": e.reason.to_string()})
                        })
                        .collect();
                    json(
                        StatusCode::OK,
                        &serde_json::json!({"applied": applied, "domains_created": domains_created, "errors": errors}),
                    )
                }
                other => Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("unexpected result {other:?}"),
                )),
            }
        }
        (&Method::DELETE, [_, addr]) => {
            write(
                api,
                Command::RemoveUser {
                    address: addr.to_string(),
                },
            )
            .await?;
            done()
        }
        (&Method::PUT, [_, addr, "password"]) => {
            let p: Password = call.body()?;
            let hash = hash(p.password).await?;
            write(
                api,
                Command::SetPasswordHash {
                    address: addr.to_string(),
                    hash,
                },
            )
            .await?;
            done()
        }
        (&Method::POST, [_, addr, "check-password"]) => {
            let p: Password = call.body()?;
            let ok = auth::authenticate(&api.cluster, addr, &p.password)
                .await
                .is_ok();
            json(StatusCode::OK, &serde_json::json!({"ok": ok}))
        }
        (&Method::PATCH, [_, addr]) => {
            let p: UserPatch = call.body()?;
            write(
                api,
                Command::UpdateUser {
                    address: addr.to_string(),
                    display_name: p.display_name,
                    quota_bytes: p.quota_bytes,
                    mail_host: p.mail_host,
                    enabled: p.enabled,
                    set_prefs: p.set_prefs,
                    remove_prefs: p.remove_prefs,
                },
            )
            .await?;
            done()
        }
        _ => Err(no_route(&call)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Targets {
    address: String,
    #[serde(default, alias = "members")]
    targets: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Members {
    members: Vec<String>,
}

async fn aliases(api: &AdminApi, call: Call<'_>) -> ApiResult {
    match (call.method, call.segs) {
        (&Method::GET, [_]) => {
            consistent(api, &call).await?;
            let domain = query_param(call.query, "domain");
            let dir = api.cluster.read_directory();
            let list: Vec<_> = dir.aliases(domain.as_deref()).cloned().collect();
            json(StatusCode::OK, &list)
        }
        (&Method::POST, [_]) => {
            let t: Targets = call.body()?;
            write(
                api,
                Command::AddAlias {
                    address: t.address,
                    targets: t.targets,
                },
            )
            .await?;
            json(StatusCode::CREATED, &serde_json::json!({"ok": true}))
        }
        (&Method::DELETE, [_, addr]) => {
            write(
                api,
                Command::RemoveAlias {
                    address: addr.to_string(),
                },
            )
            .await?;
            done()
        }
        _ => Err(no_route(&call)),
    }
}

async fn lists(api: &AdminApi, call: Call<'_>) -> ApiResult {
    match (call.method, call.segs) {
        (&Method::GET, [_]) => {
            consistent(api, &call).await?;
            let domain = query_param(call.query, "domain");
            let dir = api.cluster.read_directory();
            let list: Vec<_> = dir.lists(domain.as_deref()).cloned().collect();
            json(StatusCode::OK, &list)
        }
        (&Method::GET, [_, addr]) => {
            consistent(api, &call).await?;
            let dir = api.cluster.read_directory();
            match dir.list(addr) {
                Some(l) => json(StatusCode::OK, l),
                None => Err(ApiError::not_found(format!("no list {addr}"))),
            }
        }
        (&Method::POST, [_]) => {
            let t: Targets = call.body()?;
            write(
                api,
                Command::AddList {
                    address: t.address,
                    members: t.targets,
                },
            )
            .await?;
            json(StatusCode::CREATED, &serde_json::json!({"ok": true}))
        }
        (&Method::DELETE, [_, addr]) => {
            write(
                api,
                Command::RemoveList {
                    address: addr.to_string(),
                },
            )
            .await?;
            done()
        }
        (&Method::POST, [_, addr, "members"]) => {
            let m: Members = call.body()?;
            write(
                api,
                Command::ListAddMembers {
                    address: addr.to_string(),
                    members: m.members,
                },
            )
            .await?;
            done()
        }
        (&Method::DELETE, [_, addr, "members"]) => {
            let m: Members = call.body()?;
            write(
                api,
                Command::ListRemoveMembers {
                    address: addr.to_string(),
                    members: m.members,
                },
            )
            .await?;
            done()
        }
        _ => Err(no_route(&call)),
    }
}
