//! The cluster-wide anti-UBE policy over the admin API.
//!
//! Routes (`{name}` a map name):
//!
//! - `GET    /api/policy` — `{version, in_force_version, failed_version, settings, maps: {name:
//!   {lines, bytes}}}` (`in_force_version`: what this node enforces)
//! - `PUT    /api/policy` — `{settings, expected_version?}`: replaces the settings, keeps the maps
//! - `GET    /api/policy/maps/{name}` — `{name, version, lines, bytes, text}`
//! - `PUT    /api/policy/maps/{name}` — `{text, expected_version?}`: creates or replaces one map
//! - `DELETE /api/policy/maps/{name}[?expected_version=N]` — refused (409) while the settings
//!   name the map
//! - `POST   /api/policy/check` — `{settings, maps?, with_stored_maps?}`: compiles, stores nothing
//!
//! Every change is a read-modify-write of the whole document: a linearizable read, the edit,
//! [`PolicyDoc::compile`] here (a document that does not compile is refused with 422 and
//! `name:line: message`; nothing is proposed and the policy in force stays), then
//! `SetPolicy` with the version read as `expected_version`. When the caller gave no
//! `expected_version` and someone else's change got in between, the edit is redone once on the
//! new document; when the caller gave one, a different stored version is a 409.
//!
//! Never does this module store anything itself: writes go through
//! [`crate::cluster::Cluster::write`]. Security note: the document is operator input of up to
//! [`MAX_POLICY_BYTES`](crate::directory::MAX_POLICY_BYTES); it is size-checked before it is
//! compiled, and compiled on the blocking pool so a large map cannot stall the node's I/O.

use std::collections::BTreeMap;

use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::routes::{no_route, Call};
use super::{json, query_param, AdminApi, ApiError, ApiResult};
use crate::antiube::policy::{valid_map_name, PolicyDoc, Settings, MAX_MAP_NAME};
use crate::cluster::ClusterError;
use crate::directory::{check_policy_doc, Command};

/// One map in the document's summary.
#[derive(Serialize)]
struct MapSummary {
    lines: usize,
    bytes: usize,
}

impl MapSummary {
    fn of(text: &str) -> MapSummary {
        MapSummary {
            lines: text.lines().count(),
            bytes: text.len(),
        }
    }
}

/// What `GET /api/policy` answers.
#[derive(Serialize)]
struct PolicyView<'a> {
    /// 0: no document stored (built-in defaults).
    version: u64,
    /// The version this node enforces (it lags `version` for a moment after a change).
    in_force_version: Option<u64>,
    /// A stored version this node could not compile (it keeps the previous one).
    failed_version: Option<u64>,
    settings: &'a str,
    maps: BTreeMap<&'a str, MapSummary>,
}

/// What `GET /api/policy/maps/{name}` answers.
#[derive(Serialize)]
struct MapView<'a> {
    name: &'a str,
    version: u64,
    lines: usize,
    bytes: usize,
    text: &'a str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutSettings {
    settings: String,
    #[serde(default)]
    expected_version: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutMap {
    text: String,
    #[serde(default)]
    expected_version: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckDoc {
    #[serde(default)]
    settings: String,
    #[serde(default)]
    maps: BTreeMap<String, String>,
    /// Fill in the stored maps the request does not carry, to check new settings against them.
    #[serde(default)]
    with_stored_maps: bool,
}

/// Routes `/api/policy…`.
pub(super) async fn route(api: &AdminApi, call: Call<'_>) -> ApiResult {
    match (call.method, call.segs) {
        (&Method::GET, ["policy"]) => {
            consistent(api, &call).await?;
            let dir = api.cluster.read_directory();
            let (version, doc) = match dir.policy() {
                Some(p) => (p.version, Some(&p.doc)),
                None => (0, None),
            };
            let view = PolicyView {
                version,
                in_force_version: api.antiube.as_ref().map(|(h, _)| h.version()),
                failed_version: api
                    .antiube
                    .as_ref()
                    .map(|(_, s)| s.failed_version())
                    .filter(|v| *v != 0),
                settings: doc.map_or("", |d| d.settings.as_str()),
                maps: doc
                    .map(|d| {
                        d.maps
                            .iter()
                            .map(|(n, t)| (n.as_str(), MapSummary::of(t)))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            json(StatusCode::OK, &view)
        }
        (&Method::PUT, ["policy"]) => {
            let p: PutSettings = call.body()?;
            let settings = p.settings;
            change(api, p.expected_version, move |doc| {
                doc.settings = settings.clone();
                Ok(())
            })
            .await
        }
        (&Method::POST, ["policy", "check"]) => {
            let c: CheckDoc = call.body()?;
            let mut doc = PolicyDoc {
                settings: c.settings,
                maps: c.maps,
            };
            let mut version = 0;
            if c.with_stored_maps {
                let dir = api.cluster.read_directory();
                if let Some(p) = dir.policy() {
                    version = p.version;
                    for (name, text) in &p.doc.maps {
                        doc.maps.entry(name.clone()).or_insert_with(|| text.clone());
                    }
                }
            }
            let maps = doc.maps.len();
            check_limits(&doc)?;
            compile(doc, version).await?;
            json(
                StatusCode::OK,
                &serde_json::json!({"ok": true, "maps": maps}),
            )
        }
        (&Method::GET, ["policy", "maps", name]) => {
            consistent(api, &call).await?;
            let dir = api.cluster.read_directory();
            let stored = dir.policy();
            match stored.and_then(|p| p.doc.maps.get(*name).map(|t| (p.version, t))) {
                Some((version, text)) => {
                    let s = MapSummary::of(text);
                    json(
                        StatusCode::OK,
                        &MapView {
                            name,
                            version,
                            lines: s.lines,
                            bytes: s.bytes,
                            text,
                        },
                    )
                }
                None => Err(no_map(name)),
            }
        }
        (&Method::PUT, ["policy", "maps", name]) => {
            let p: PutMap = call.body()?;
            if !valid_map_name(name) {
                return Err(bad_map_name(name));
            }
            let (name, text) = (name.to_string(), p.text);
            change(api, p.expected_version, move |doc| {
                doc.maps.insert(name.clone(), text.clone());
                Ok(())
            })
            .await
        }
        (&Method::DELETE, ["policy", "maps", name]) => {
            let expected = match query_param(call.query, "expected_version") {
                None => None,
                Some(v) => Some(v.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("expected_version {v:?} is not a version"))
                        .with_hint("give the version `mailctl policy show` prints")
                })?),
            };
            let name = name.to_string();
            change(api, expected, move |doc| {
                if !doc.maps.contains_key(&name) {
                    return Err(no_map(&name));
                }
                if let Some(key) = referenced_by(&doc.settings, &name) {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!("the policy map {name} is in use: the settings name it in content.{key}"),
                    )
                    .with_hint(format!(
                        "remove content.{key} from the settings (`mailctl policy set FILE`) first, then delete the map"
                    )));
                }
                doc.maps.remove(&name);
                Ok(())
            })
            .await
        }
        _ => Err(no_route(&call)),
    }
}

/// Reads the document at the leader's commit point, applies `edit`, checks and compiles the
/// result and proposes it as a compare-and-set on the version read. Answers
/// `{ok, version, changed}`.
async fn change<F>(api: &AdminApi, expected: Option<u64>, edit: F) -> ApiResult
where
    F: Fn(&mut PolicyDoc) -> Result<(), ApiError>,
{
    // Without an expected version, one retry on a conflict: the edit is redone on the newer
    // document, so a concurrent change to another map is kept, not overwritten.
    let attempts = if expected.is_some() { 1 } else { 2 };
    let mut last_conflict = None;
    for _ in 0..attempts {
        api.cluster.linearizable().await?;
        let (version, mut doc) = {
            let dir = api.cluster.read_directory();
            match dir.policy() {
                Some(p) => (p.version, p.doc.clone()),
                None => (0, PolicyDoc::default()),
            }
        };
        if let Some(e) = expected.filter(|e| *e != version) {
            return Err(conflict(e, version));
        }
        edit(&mut doc)?;
        check_limits(&doc)?;
        let doc = compile(doc, version).await?;
        let cmd = Command::SetPolicy {
            doc,
            expected_version: Some(version),
        };
        match api.cluster.write(cmd).await {
            Ok(response) => {
                // On a follower the entry may not be applied here yet: read what was committed.
                api.cluster.linearizable().await?;
                let now = api.cluster.read_directory().policy_version();
                let changed = !matches!(
                    response,
                    crate::cluster::Response::Applied(crate::directory::Outcome::Unchanged)
                );
                return json(
                    StatusCode::OK,
                    &serde_json::json!({"ok": true, "version": now, "changed": changed}),
                );
            }
            Err(ClusterError::Refused(reason)) => {
                // The refusal is text; whether it was the compare-and-set shows in the state.
                api.cluster.linearizable().await?;
                let now = api.cluster.read_directory().policy_version();
                if now == version {
                    return Err(ApiError::new(StatusCode::CONFLICT, reason));
                }
                last_conflict = Some(conflict(expected.unwrap_or(version), now));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last_conflict.unwrap_or_else(|| conflict(expected.unwrap_or(0), 0)))
}

/// The limits `Directory::apply` enforces, checked before compiling: 422 with the limit.
fn check_limits(doc: &PolicyDoc) -> Result<(), ApiError> {
    check_policy_doc(doc).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            .with_hint("nothing was stored; the policy in force is unchanged")
    })
}

/// Compiles `doc` on the blocking pool; 422 with `name:line: message` when it does not compile.
/// `version` is the one in force, named in the hint.
async fn compile(doc: PolicyDoc, version: u64) -> Result<PolicyDoc, ApiError> {
    let (doc, result) = tokio::task::spawn_blocking(move || {
        let r = doc.compile().map(drop);
        (doc, r)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the policy compiler failed: {e}; please report this bug"),
        )
    })?;
    match result {
        Ok(()) => Ok(doc),
        Err(e) => {
            let at = if e.line > 0 {
                format!("{} at line {}", e.name, e.line)
            } else {
                e.name.clone()
            };
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).with_hint(
                format!(
                    "fix {at} and send it again; nothing was stored, the policy in force (version {version}) is unchanged"
                ),
            ))
        }
    }
}

/// Which `content.*` key of `settings` names the map `name`, if any. Settings that do not
/// parse name nothing here; compiling the edited document refuses them anyway.
fn referenced_by(settings: &str, name: &str) -> Option<&'static str> {
    let s: Settings = toml::from_str(settings).ok()?;
    let c = &s.content;
    let found = [
        ("header_checks", &c.header_checks),
        ("mime_header_checks", &c.mime_header_checks),
        ("body_checks", &c.body_checks),
    ]
    .into_iter()
    .find(|(_, r)| r.as_ref().is_some_and(|m| m.name == name))
    .map(|(k, _)| k);
    found
}

fn conflict(read: u64, stored: u64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "the anti-UBE policy changed since it was read (version {read} was read, {stored} is stored)"
        ),
    )
    .with_hint("run `mailctl policy show`, then make the change again on the current policy")
}

fn bad_map_name(name: &str) -> ApiError {
    let rule =
        format!("use 1-{MAX_MAP_NAME} letters, digits, '.', '_' or '-', not starting with '.'");
    ApiError::bad_request(format!("invalid map name {name:?}")).with_hint(rule)
}

fn no_map(name: &str) -> ApiError {
    ApiError::not_found(format!("no policy map named {name:?}"))
        .with_hint("`mailctl policy map list` shows the maps")
}

/// `?consistent=1`: a linearizable read.
async fn consistent(api: &AdminApi, call: &Call<'_>) -> Result<(), ApiError> {
    if matches!(
        query_param(call.query, "consistent").as_deref(),
        Some("1" | "true")
    ) {
        api.cluster.linearizable().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_by_map_name() {
        let s = "[content]\nheader_checks = \"pcre:hc\"\nbody_checks = \"regexp:bc\"\n";
        assert_eq!(referenced_by(s, "hc"), Some("header_checks"));
        assert_eq!(referenced_by(s, "bc"), Some("body_checks"));
        assert_eq!(referenced_by(s, "other"), None);
        assert_eq!(referenced_by("not toml [[", "hc"), None);
        assert_eq!(referenced_by("", "hc"), None);
    }

    #[test]
    fn summaries_count_lines_and_bytes() {
        let s = MapSummary::of("/a/ REJECT\n/b/ WARN\n");
        assert_eq!((s.lines, s.bytes), (2, 20));
        let s = MapSummary::of("");
        assert_eq!((s.lines, s.bytes), (0, 0));
    }
}
