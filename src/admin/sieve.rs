//! Users' Sieve scripts over the admin API, and the forward/vacation settings that generate one.
//!
//! Routes (`{u}` is the user's address, `{name}` a script name, percent-encoded):
//!
//! - `GET    /api/users/{u}/sieve` — the scripts: `[{name, active, size}]`
//! - `GET    /api/users/{u}/sieve/{name}` — one script, with its `source`
//! - `PUT    /api/users/{u}/sieve/{name}` — `{source, activate?}`: compiled here first; a script
//!   that does not compile is refused with 422 and its line and column
//! - `POST   /api/users/{u}/sieve/{name}/rename` — `{to}`
//! - `DELETE /api/users/{u}/sieve/{name}` — refused (409) for the active script
//! - `GET|PUT /api/users/{u}/sieve-active` — `{name}` (`null`: no script runs)
//! - `GET    /api/users/{u}/sieve-settings` — forward and vacation, read from the generated
//!   script ([`crate::sieve::generate`])
//! - `PUT|DELETE /api/users/{u}/sieve-settings/{forward|vacation}` — set or turn off one
//!   setting; the script is regenerated and activated. `?replace_active=1` lets it replace
//!   another active script, which is refused otherwise.
//!
//! Scripts are compiled on the node that receives them, never in `Directory::apply` (see
//! `directory::sieve`). Writes go through [`crate::cluster::Cluster::write`].

use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::routes::{no_route, Call};
use super::{json, query_param, AdminApi, ApiError, ApiResult};
use crate::directory::Command;
use crate::sieve::generate::{self, Forward, Settings, Vacation, SETTINGS_SCRIPT};
use crate::sieve::{compile, Limits};

/// One script in a listing.
#[derive(Serialize)]
struct ScriptInfo<'a> {
    name: &'a str,
    active: bool,
    /// Bytes of source text.
    size: usize,
}

/// One script with its text.
#[derive(Serialize)]
struct ScriptView<'a> {
    name: &'a str,
    active: bool,
    size: usize,
    source: &'a str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutScript {
    source: String,
    #[serde(default)]
    activate: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    to: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Active {
    name: Option<String>,
}

/// What `GET /api/users/{u}/sieve-settings` answers.
#[derive(Serialize)]
struct SettingsView {
    /// The generated script's name.
    script: &'static str,
    /// Whether the user has that script.
    present: bool,
    /// Whether it is the active one (the settings take effect only then).
    active: bool,
    /// The name of the user's active script, whichever it is.
    active_script: Option<String>,
    /// The script's text differs from what its settings generate (edited by hand).
    edited: bool,
    #[serde(flatten)]
    settings: Settings,
}

/// Routes `/api/users/{u}/sieve…`; `call.segs[2]` starts with `sieve`.
pub(super) async fn route(api: &AdminApi, call: Call<'_>) -> ApiResult {
    match (call.method, call.segs) {
        (&Method::GET, [_, user, "sieve"]) => {
            read_consistent(api, &call).await?;
            let dir = api.cluster.read_directory();
            let user = existing_user(&dir, user)?;
            let list: Vec<ScriptInfo> = dir
                .sieve(&user)
                .map(|r| {
                    r.scripts
                        .iter()
                        .map(|(name, source)| ScriptInfo {
                            name,
                            active: r.active.as_deref() == Some(name.as_str()),
                            size: source.len(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            json(StatusCode::OK, &list)
        }
        (&Method::GET, [_, user, "sieve", name]) => {
            read_consistent(api, &call).await?;
            let dir = api.cluster.read_directory();
            let user = existing_user(&dir, user)?;
            let record = dir.sieve(&user);
            match record.and_then(|r| r.scripts.get(*name).map(|s| (r, s))) {
                Some((r, source)) => json(
                    StatusCode::OK,
                    &ScriptView {
                        name,
                        active: r.active.as_deref() == Some(*name),
                        size: source.len(),
                        source,
                    },
                ),
                None => Err(no_script(&user, name)),
            }
        }
        (&Method::PUT, [_, user, "sieve", name]) => {
            let p: PutScript = call.body()?;
            let user = {
                let dir = api.cluster.read_directory();
                existing_user(&dir, user)?
            };
            check_compiles(name, &p.source)?;
            write(
                api,
                Command::PutSieveScript {
                    user,
                    name: name.to_string(),
                    source: p.source,
                    activate: p.activate,
                },
            )
            .await
        }
        (&Method::POST, [_, user, "sieve", name, "rename"]) => {
            let r: Rename = call.body()?;
            let user = script_owner(api, user, name)?;
            write(
                api,
                Command::RenameSieveScript {
                    user,
                    from: name.to_string(),
                    to: r.to,
                },
            )
            .await
        }
        (&Method::DELETE, [_, user, "sieve", name]) => {
            let user = script_owner(api, user, name)?;
            let active = api
                .cluster
                .read_directory()
                .active_sieve(&user)
                .map(|(n, _)| n == *name);
            if active == Some(true) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("Sieve script {name:?} is {user}'s active script"),
                )
                .with_hint(format!(
                    "run `mailctl sieve deactivate {user}` (or activate another script) first"
                )));
            }
            write(
                api,
                Command::DeleteSieveScript {
                    user,
                    name: name.to_string(),
                },
            )
            .await
        }
        (&Method::GET, [_, user, "sieve-active"]) => {
            read_consistent(api, &call).await?;
            let dir = api.cluster.read_directory();
            let user = existing_user(&dir, user)?;
            let name = dir.active_sieve(&user).map(|(n, _)| n.to_string());
            json(StatusCode::OK, &Active { name })
        }
        (&Method::PUT, [_, user, "sieve-active"]) => {
            let a: Active = call.body()?;
            let user = match &a.name {
                Some(name) => script_owner(api, user, name)?,
                None => existing_user(&api.cluster.read_directory(), user)?,
            };
            write(api, Command::ActivateSieveScript { user, name: a.name }).await
        }
        (&Method::GET, [_, user, "sieve-settings"]) => {
            read_consistent(api, &call).await?;
            let view = settings_view(&api.cluster.read_directory(), user)?;
            json(StatusCode::OK, &view)
        }
        (method, [_, user, "sieve-settings", which @ ("forward" | "vacation")])
            if method == Method::PUT || method == Method::DELETE =>
        {
            // Read-modify-write of the settings: read what the leader has committed.
            api.cluster.linearizable().await?;
            let current = settings_view(&api.cluster.read_directory(), user)?;
            let mut settings = current.settings.clone();
            let on = method == Method::PUT;
            match (*which, on) {
                ("forward", true) => settings.forward = Some(call.body::<Forward>()?),
                ("vacation", true) => settings.vacation = Some(call.body::<Vacation>()?),
                ("forward", false) => settings.forward = None,
                _ => settings.vacation = None,
            }
            let replace = matches!(
                query_param(call.query, "replace_active").as_deref(),
                Some("1" | "true")
            );
            apply_settings(api, user, &current, settings, replace).await?;
            // On a follower the write may not be applied locally yet: answer what was committed.
            api.cluster.linearizable().await?;
            let view = settings_view(&api.cluster.read_directory(), user)?;
            json(StatusCode::OK, &view)
        }
        _ => Err(no_route(&call)),
    }
}

/// Stores the script generated from `settings` and makes it active, or removes it when
/// nothing is on.
async fn apply_settings(
    api: &AdminApi,
    user: &str,
    current: &SettingsView,
    settings: Settings,
    replace_active: bool,
) -> Result<(), ApiError> {
    let user = existing_user(&api.cluster.read_directory(), user)?;
    if settings.is_empty() {
        if current.active {
            write_cmd(
                api,
                Command::ActivateSieveScript {
                    user: user.clone(),
                    name: None,
                },
            )
            .await?;
        }
        if current.present {
            write_cmd(
                api,
                Command::DeleteSieveScript {
                    user,
                    name: SETTINGS_SCRIPT.to_string(),
                },
            )
            .await?;
        }
        return Ok(());
    }
    let source = generate::generate(&settings).map_err(|e| {
        ApiError::bad_request(e.to_string())
            .with_hint("see `mailctl user set --help` for the accepted values")
    })?;
    // The generator's output always compiles; a failure here is a bug to report, not to store.
    compile(&source, &Limits::default()).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the generated script does not compile ({e}); please report this bug"),
        )
    })?;
    if let Some(other) = current
        .active_script
        .as_deref()
        .filter(|n| *n != SETTINGS_SCRIPT)
    {
        if !replace_active {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "{user} runs their own Sieve script {other:?}: only one script can be active"
                ),
            )
            .with_hint(format!(
                "add the forward/vacation rules to {other:?} (`mailctl sieve get {user} {other}`), \
                 or pass --replace-active to make {SETTINGS_SCRIPT:?} active instead ({other:?} is kept, inactive)"
            )));
        }
    }
    write_cmd(
        api,
        Command::PutSieveScript {
            user,
            name: SETTINGS_SCRIPT.to_string(),
            source,
            activate: true,
        },
    )
    .await
}

fn settings_view(dir: &crate::directory::Directory, user: &str) -> Result<SettingsView, ApiError> {
    let user = existing_user(dir, user)?;
    let record = dir.sieve(&user);
    let source = record.and_then(|r| r.scripts.get(SETTINGS_SCRIPT));
    let stored = source.and_then(|s| generate::read_settings(s));
    let active_script = record.and_then(|r| r.active.clone());
    Ok(SettingsView {
        script: SETTINGS_SCRIPT,
        present: source.is_some(),
        active: active_script.as_deref() == Some(SETTINGS_SCRIPT),
        active_script,
        // A script of that name without a settings header was written by someone else.
        edited: source.is_some() && stored.as_ref().is_none_or(|s| s.edited),
        settings: stored.map(|s| s.settings).unwrap_or_default(),
    })
}

/// Refuses a script that does not compile, naming the line and column.
fn check_compiles(name: &str, source: &str) -> Result<(), ApiError> {
    compile(source, &Limits::default()).map(drop).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "Sieve script {name:?} does not compile: line {}, column {}: {}",
                e.line, e.col, e.message
            ),
        )
        .with_hint(format!(
            "fix the script at line {}, column {} and upload it again; nothing was stored",
            e.line, e.col
        ))
    })
}

/// `?consistent=1`: a linearizable read.
async fn read_consistent(api: &AdminApi, call: &Call<'_>) -> Result<(), ApiError> {
    if matches!(
        query_param(call.query, "consistent").as_deref(),
        Some("1" | "true")
    ) {
        api.cluster.linearizable().await?;
    }
    Ok(())
}

/// The user's normalised address, or 404.
fn existing_user(dir: &crate::directory::Directory, user: &str) -> Result<String, ApiError> {
    match dir.user(user) {
        Some(u) => Ok(u.address.clone()),
        None => Err(ApiError::not_found(format!("no user {user}"))
            .with_hint("`mailctl user list` shows the users")),
    }
}

/// The owner's normalised address when they have script `name`, else 404. The write that
/// follows is still checked by the directory (this local read may lag by a heartbeat).
fn script_owner(api: &AdminApi, user: &str, name: &str) -> Result<String, ApiError> {
    let dir = api.cluster.read_directory();
    let user = existing_user(&dir, user)?;
    if dir
        .sieve(&user)
        .is_some_and(|r| r.scripts.contains_key(name))
    {
        Ok(user)
    } else {
        Err(no_script(&user, name))
    }
}

fn no_script(user: &str, name: &str) -> ApiError {
    ApiError::not_found(format!("{user} has no Sieve script named {name:?}"))
        .with_hint(format!("`mailctl sieve list {user}` shows the scripts"))
}

async fn write_cmd(api: &AdminApi, cmd: Command) -> Result<(), ApiError> {
    api.cluster.write(cmd).await?;
    Ok(())
}

async fn write(api: &AdminApi, cmd: Command) -> ApiResult {
    write_cmd(api, cmd).await?;
    json(StatusCode::OK, &serde_json::json!({"ok": true}))
}
