//! `mailctl sieve …` (a user's Sieve scripts) and `mailctl user set USER forward|vacation …`
//! (settings the server turns into the generated script `mailnode-settings`).
//!
//! The server compiles every script and generates the settings script; this side reads files,
//! sends them, and prints the answers.

use std::io::IsTerminal;

use serde_json::{json, Map, Value};

use super::args::{SieveCmd, UserSetting};
use super::client::{parse_json, seg};
use super::output::{self, text, Table};
use super::{input, CtlError, Ctx};

/// Largest script or message file read (the server's limit is 64 KiB; a little more so that
/// the server, not this side, says what the limit is).
const MAX_FILE: u64 = 1024 * 1024;

pub(crate) async fn run(ctx: &Ctx, cmd: SieveCmd) -> Result<(), CtlError> {
    let c = &ctx.client;
    let (body, done) = match cmd {
        SieveCmd::List { user } => {
            let body = c.get(&scripts_path(&user)).await?;
            if ctx.json {
                return output::stdout(&output::json(&body));
            }
            let t = script_table(&parse_json(&body)?);
            if t.is_empty() {
                output::note(&format!("{} has no Sieve scripts", output::clean(&user)));
                return Ok(());
            }
            return output::stdout(&t.render());
        }
        SieveCmd::Get { user, name } => {
            let body = c.get(&script_path(&user, &name)).await?;
            if ctx.json {
                return output::stdout(&output::json(&body));
            }
            let v = parse_json(&body)?;
            let source = v.get("source").and_then(Value::as_str).unwrap_or_default();
            return output::stdout(&output::text_for_stdout(
                source,
                std::io::stdout().is_terminal(),
            ));
        }
        SieveCmd::Put {
            user,
            name,
            file,
            activate,
        } => {
            let source = input::read_text(&file, "script", MAX_FILE)?;
            let body = c
                .put(
                    &script_path(&user, &name),
                    &json!({"source": source, "activate": activate}),
                )
                .await?;
            let how = if activate { " and activated" } else { "" };
            (body, format!("script {name:?} of {user} stored{how}"))
        }
        SieveCmd::Activate { user, name } => {
            let body = c.put(&active_path(&user), &json!({"name": name})).await?;
            (
                body,
                format!("script {name:?} is now {user}'s active script"),
            )
        }
        SieveCmd::Deactivate { user } => {
            let body = c.put(&active_path(&user), &json!({"name": null})).await?;
            (body, format!("no Sieve script runs for {user} now"))
        }
        SieveCmd::Rename { user, from, to } => {
            let path = format!("{}/rename", script_path(&user, &from));
            let body = c.post(&path, &json!({"to": to})).await?;
            (body, format!("script {from:?} of {user} renamed to {to:?}"))
        }
        SieveCmd::Delete { user, name } => {
            let body = c.delete(&script_path(&user, &name)).await?;
            (body, format!("script {name:?} of {user} deleted"))
        }
    };
    finish(ctx, &body, &done)
}

/// `mailctl user set USER forward|vacation …`.
pub(crate) async fn setting(ctx: &Ctx, user: &str, setting: UserSetting) -> Result<(), CtlError> {
    let c = &ctx.client;
    let (which, body, replace, done) = match setting {
        UserSetting::Forward {
            addresses,
            no_keep,
            off,
            replace_active,
            ..
        } => {
            let body = (!off).then(|| {
                let addresses: Vec<String> = addresses
                    .iter()
                    .map(|a| a.trim().to_owned())
                    .filter(|a| !a.is_empty())
                    .collect();
                json!({"addresses": addresses, "keep": !no_keep})
            });
            let done = if off {
                format!("forwarding of {user} off")
            } else {
                format!("forwarding of {user} on")
            };
            ("forward", body, replace_active, done)
        }
        UserSetting::Vacation {
            subject,
            message,
            message_file,
            days,
            from,
            addresses,
            until,
            off,
            replace_active,
        } => {
            let body = if off {
                None
            } else {
                let message = match (message, message_file) {
                    (Some(m), None) => m,
                    (None, Some(f)) => input::read_text(&f, "message", MAX_FILE)?,
                    _ => {
                        return Err(CtlError::usage(
                            "give the reply's text with --message TEXT or --message-file FILE",
                        ))
                    }
                };
                let mut v = Map::new();
                v.insert("subject".into(), json!(subject.unwrap_or_default()));
                v.insert("message".into(), json!(message));
                if let Some(d) = days {
                    v.insert("days".into(), json!(d));
                }
                if let Some(f) = from {
                    v.insert("from".into(), json!(f));
                }
                let addresses: Vec<&str> = addresses
                    .iter()
                    .map(|a| a.trim())
                    .filter(|a| !a.is_empty())
                    .collect();
                if !addresses.is_empty() {
                    v.insert("addresses".into(), json!(addresses));
                }
                if let Some(u) = until {
                    v.insert("until".into(), json!(u));
                }
                Some(Value::Object(v))
            };
            let done = if off {
                format!("vacation replies of {user} off")
            } else {
                format!("vacation replies of {user} on")
            };
            ("vacation", body, replace_active, done)
        }
    };
    let mut path = format!("/api/users/{}/sieve-settings/{which}", seg(user));
    if replace {
        path.push_str("?replace_active=1");
    }
    let answer = match body {
        Some(b) => c.put(&path, &b).await?,
        None => c.delete(&path).await?,
    };
    if ctx.json {
        return output::stdout(&output::json(&answer));
    }
    let v = parse_json(&answer)?;
    let mut out = format!("{}\n", output::clean(&done));
    out.push_str(&settings_lines(&v));
    output::stdout(&out)
}

/// `forward` / `vacation` / `sieve` lines for `mailctl user show`, from the answer of
/// `GET /api/users/{u}/sieve-settings`.
pub(crate) fn settings_lines(v: &Value) -> String {
    let forward = match v.get("forward") {
        Some(f) if f.is_object() => {
            let to: Vec<String> = output::array(&f["addresses"], "addresses")
                .iter()
                .map(|a| text(Some(a)))
                .collect();
            let keep = if f.get("keep").and_then(Value::as_bool) == Some(false) {
                "no copy kept"
            } else {
                "a copy kept"
            };
            format!("to {} ({keep})", to.join(", "))
        }
        _ => "off".to_owned(),
    };
    let vacation = match v.get("vacation") {
        Some(va) if va.is_object() => {
            let mut s = format!("on, subject {:?}", text(va.get("subject")));
            if let Some(u) = va.get("until").and_then(Value::as_str) {
                s.push_str(&format!(", until {u}"));
            }
            if let Some(d) = va.get("days").and_then(Value::as_u64) {
                s.push_str(&format!(", every {d} days per sender"));
            }
            s
        }
        _ => "off".to_owned(),
    };
    let present = v.get("present").and_then(Value::as_bool) == Some(true);
    let active = v.get("active").and_then(Value::as_bool) == Some(true);
    let script = text(v.get("script"));
    let mut sieve = match v.get("active_script").and_then(Value::as_str) {
        Some(name) => format!("active script {name:?}"),
        None => "no active script".to_owned(),
    };
    if present && !active {
        sieve.push_str(&format!(
            " (forward/vacation settings in {script:?} do not apply while it is inactive)"
        ));
    }
    if v.get("edited").and_then(Value::as_bool) == Some(true) {
        sieve.push_str(&format!(" ({script:?} was edited by hand)"));
    }
    output::fields(&[
        ("forward", forward),
        ("vacation", vacation),
        ("sieve", sieve),
    ])
}

fn finish(ctx: &Ctx, body: &[u8], done: &str) -> Result<(), CtlError> {
    if ctx.json {
        output::stdout(&output::json(body))
    } else {
        output::stdout(&format!("{}\n", output::clean(done)))
    }
}

fn scripts_path(user: &str) -> String {
    format!("/api/users/{}/sieve", seg(user))
}

fn script_path(user: &str, name: &str) -> String {
    format!("{}/{}", scripts_path(user), seg(name))
}

fn active_path(user: &str) -> String {
    format!("/api/users/{}/sieve-active", seg(user))
}

fn script_table(scripts: &Value) -> Table {
    let mut t = Table::new(&["NAME", "ACTIVE", "SIZE"]).right(2);
    for s in output::array(scripts, "scripts") {
        t.row([
            text(s.get("name")),
            if s.get("active").and_then(Value::as_bool) == Some(true) {
                "yes".to_owned()
            } else {
                String::new()
            },
            text(s.get("size")),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_table() {
        let v = json!([
            {"name": "mailnode-settings", "active": true, "size": 312},
            {"name": "old\u{1b}[2J", "active": false, "size": 7}
        ]);
        assert_eq!(
            script_table(&v).render(),
            "NAME               ACTIVE  SIZE\n\
             mailnode-settings  yes      312\n\
             old\\u{1b}[2J                  7\n"
        );
    }

    #[test]
    fn settings_as_lines() {
        let v = json!({
            "script": "mailnode-settings", "present": true, "active": true,
            "active_script": "mailnode-settings", "edited": false,
            "forward": {"addresses": ["a@x.org", "b@y.org"], "keep": false},
            "vacation": {"subject": "Away", "message": "m", "until": "2026-12-31", "days": 3}
        });
        let lines = settings_lines(&v);
        assert!(
            lines.contains("forward   to a@x.org, b@y.org (no copy kept)"),
            "{lines}"
        );
        assert!(
            lines.contains("vacation  on, subject \"Away\", until 2026-12-31, every 3 days"),
            "{lines}"
        );
        assert!(
            lines.contains("sieve     active script \"mailnode-settings\""),
            "{lines}"
        );
        let off = settings_lines(&json!({"script": "mailnode-settings", "present": false,
                                          "active": false, "active_script": null}));
        assert!(
            off.contains("forward   off") && off.contains("no active script"),
            "{off}"
        );
    }
}
