//! `mailctl policy …`: the cluster-wide anti-UBE policy — settings (TOML) and the maps they
//! name — as the admin API's `/api/policy` serves it.
//!
//! The server compiles every change before storing it; this side reads files, sends them, and
//! prints the answers. A refused document comes back as `NAME:LINE: message` (exit 1, the
//! contract's "the server said no"), and the policy in force is untouched. Text from the server
//! (settings, maps) goes verbatim into pipes, so it can be edited and sent back, and escaped on
//! terminals.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use serde_json::{json, Value};

use super::args::{PolicyCmd, PolicyMapCmd};
use super::client::{parse_json, seg};
use super::output::{self, text, Table};
use super::{input, CtlError, Ctx};
use crate::antiube::policy::MAX_MAP_BYTES;
use crate::directory::MAX_POLICY_SETTINGS_BYTES;

/// Largest settings file read: over the server's limit, so that the server says what it is.
const MAX_SETTINGS_FILE: u64 = MAX_POLICY_SETTINGS_BYTES as u64 + 1024;
/// Largest map file read, likewise.
const MAX_MAP_FILE: u64 = MAX_MAP_BYTES as u64 + 1024;

pub(crate) async fn run(ctx: &Ctx, cmd: PolicyCmd) -> Result<(), CtlError> {
    let c = &ctx.client;
    match cmd {
        PolicyCmd::Show => {
            let body = c.get("/api/policy").await?;
            if ctx.json {
                return output::stdout(&output::json(&body));
            }
            let v = parse_json(&body)?;
            output::stdout(&show(&v, std::io::stdout().is_terminal()))
        }
        PolicyCmd::Set {
            file,
            expect_version,
        } => {
            let settings = input::read_text(&file, "settings", MAX_SETTINGS_FILE)?;
            let mut body = json!({ "settings": settings });
            if let Some(v) = expect_version {
                body["expected_version"] = json!(v);
            }
            let answer = c.put("/api/policy", &body).await?;
            changed(ctx, &answer, "settings stored")
        }
        PolicyCmd::Check { file, maps } => {
            let settings = input::read_text(&file, "settings", MAX_SETTINGS_FILE)?;
            let mut texts = BTreeMap::new();
            for (name, path) in maps {
                let t = input::read_text(&path, &format!("map {name}"), MAX_MAP_FILE)?;
                if texts.insert(name.clone(), t).is_some() {
                    return Err(CtlError::usage(format!("--map {name}=… given twice")));
                }
            }
            let answer = c
                .post(
                    "/api/policy/check",
                    &json!({"settings": settings, "maps": texts, "with_stored_maps": true}),
                )
                .await?;
            if ctx.json {
                return output::stdout(&output::json(&answer));
            }
            let v = parse_json(&answer)?;
            output::stdout(&format!(
                "the policy compiles ({} maps); nothing was stored\n",
                text(v.get("maps"))
            ))
        }
        PolicyCmd::Map(PolicyMapCmd::List) => {
            let body = c.get("/api/policy").await?;
            if ctx.json {
                let v = parse_json(&body)?;
                return output::stdout(&output::pretty(&v["maps"]));
            }
            let t = map_table(&parse_json(&body)?);
            if t.is_empty() {
                output::note("no policy maps are stored");
                return Ok(());
            }
            output::stdout(&t.render())
        }
        PolicyCmd::Map(PolicyMapCmd::Show { name }) => {
            let body = c.get(&map_path(&name)).await?;
            if ctx.json {
                return output::stdout(&output::json(&body));
            }
            let v = parse_json(&body)?;
            let t = v.get("text").and_then(Value::as_str).unwrap_or_default();
            output::stdout(&output::text_for_stdout(t, std::io::stdout().is_terminal()))
        }
        PolicyCmd::Map(PolicyMapCmd::Put {
            name,
            file,
            expect_version,
        }) => {
            let t = input::read_text(&file, &format!("map {name}"), MAX_MAP_FILE)?;
            let mut body = json!({ "text": t });
            if let Some(v) = expect_version {
                body["expected_version"] = json!(v);
            }
            let answer = c.put(&map_path(&name), &body).await?;
            changed(ctx, &answer, &format!("map {name} stored"))
        }
        PolicyCmd::Map(PolicyMapCmd::Rm {
            name,
            expect_version,
        }) => {
            let mut path = map_path(&name);
            if let Some(v) = expect_version {
                path.push_str(&format!("?expected_version={v}"));
            }
            let answer = c.delete(&path).await?;
            changed(ctx, &answer, &format!("map {name} deleted"))
        }
    }
}

/// The line after a change: what was done and the version now in force.
fn changed(ctx: &Ctx, answer: &[u8], done: &str) -> Result<(), CtlError> {
    if ctx.json {
        return output::stdout(&output::json(answer));
    }
    let v = parse_json(answer)?;
    let version = text(v.get("version"));
    let line = if v.get("changed").and_then(Value::as_bool) == Some(false) {
        format!("nothing changed: policy version {version} is already that")
    } else {
        format!("{done}: policy version {version} is now in force on every node")
    };
    output::stdout(&format!("{}\n", output::clean(&line)))
}

fn map_path(name: &str) -> String {
    format!("/api/policy/maps/{}", seg(name))
}

/// `policy show`: version, the maps table, then the settings text.
fn show(v: &Value, terminal: bool) -> String {
    let version = v.get("version").and_then(Value::as_u64).unwrap_or(0);
    let settings = v
        .get("settings")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let maps = map_table(v);
    let mut out = output::fields(&[
        (
            "version",
            if version == 0 {
                "0 (no policy stored: built-in defaults)".to_owned()
            } else {
                version.to_string()
            },
        ),
        (
            "maps",
            v.get("maps")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
                .to_string(),
        ),
    ]);
    if !maps.is_empty() {
        out.push('\n');
        out.push_str(&maps.render());
    }
    out.push_str("\nsettings:\n");
    if settings.trim().is_empty() {
        out.push_str("(empty: every setting at its default)\n");
    } else {
        out.push_str(&output::text_for_stdout(settings, terminal));
    }
    out
}

fn map_table(v: &Value) -> Table {
    let mut t = Table::new(&["MAP", "LINES", "BYTES"]).right(1).right(2);
    if let Some(maps) = v.get("maps").and_then(Value::as_object) {
        for (name, m) in maps {
            t.row([name.clone(), text(m.get("lines")), text(m.get("bytes"))]);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_renders_version_maps_and_settings() {
        let v = json!({
            "version": 12,
            "settings": "[content]\nheader_checks = \"pcre:hc\"\n",
            "maps": {"hc": {"lines": 2, "bytes": 40}, "x\u{1b}": {"lines": 0, "bytes": 0}}
        });
        let s = show(&v, false);
        assert_eq!(
            s,
            "version  12\n\
             maps     2\n\
             \n\
             MAP      LINES  BYTES\n\
             hc           2     40\n\
             x\\u{1b}      0      0\n\
             \n\
             settings:\n\
             [content]\n\
             header_checks = \"pcre:hc\"\n"
        );
        let empty = show(&json!({"version": 0, "settings": "", "maps": {}}), true);
        assert!(empty.contains("built-in defaults"), "{empty}");
        assert!(
            empty.ends_with("(empty: every setting at its default)\n"),
            "{empty}"
        );
    }
}
