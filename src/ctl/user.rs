//! `mailctl user …` (except `import`, in [`super::import`]): users, their attributes, passwords
//! and webmail preferences.

use serde_json::{json, Map, Value};

use super::args::UserCmd;
use super::client::{parse_json, seg, with_domain};
use super::output::{self, fields, text, Table};
use super::password::{self, Confirm, Source};
use super::{CtlError, Ctx};

pub(crate) async fn run(ctx: &Ctx, cmd: UserCmd) -> Result<(), CtlError> {
    let c = &ctx.client;
    let (body, done) = match cmd {
        UserCmd::List { domain } => {
            let body = c.get(&with_domain("/api/users", domain.as_deref())).await?;
            if ctx.json {
                return output::stdout(&output::json(&body));
            }
            return output::stdout(&user_table(&parse_json(&body)?).render());
        }
        UserCmd::Show { address } => {
            let body = c.get(&user_path(&address)).await?;
            if ctx.json {
                return output::stdout(&output::json(&body));
            }
            let mut shown = render_user(&parse_json(&body)?);
            // Forwarding and vacation live in the user's generated Sieve script.
            let settings = format!("{}/sieve-settings", user_path(&address));
            if let Ok(v) = c.get_json(&settings).await {
                shown.push('\n');
                shown.push_str(&super::sieve::settings_lines(&v));
            }
            return output::stdout(&shown);
        }
        UserCmd::Add {
            address,
            name,
            quota,
            mail_host,
            disabled,
            password,
        } => {
            let mut user = Map::new();
            user.insert("address".into(), json!(address));
            let prompt = format!("Password for {address}: ");
            let pw = password::read(&Source::from(&password), &prompt, Confirm::Twice)?;
            user.insert("password".into(), json!(pw));
            if let Some(name) = name {
                user.insert("display_name".into(), json!(name));
            }
            if let Some(quota) = quota {
                user.insert("quota_bytes".into(), json!(quota));
            }
            if let Some(host) = mail_host {
                user.insert("mail_host".into(), json!(host));
            }
            if disabled {
                user.insert("enabled".into(), json!(false));
            }
            let body = c.post("/api/users", &Value::Object(user)).await?;
            (body, format!("user {address} added"))
        }
        UserCmd::Remove { address } => {
            let body = c.delete(&user_path(&address)).await?;
            (body, format!("user {address} removed"))
        }
        UserCmd::Passwd { address, password } => {
            let prompt = format!("New password for {address}: ");
            let pw = password::read(&Source::from(&password), &prompt, Confirm::Twice)?;
            let path = format!("{}/password", user_path(&address));
            let body = c.put(&path, &json!({"password": pw})).await?;
            (body, format!("password of {address} changed"))
        }
        UserCmd::Set {
            address,
            setting: Some(setting),
            name,
            quota,
            mail_host,
            enable,
            disable,
            prefs,
            unset_prefs,
        } => {
            let attributes = name.is_some()
                || quota.is_some()
                || mail_host.is_some()
                || enable
                || disable
                || !prefs.is_empty()
                || !unset_prefs.is_empty();
            if attributes {
                return Err(CtlError::Usage {
                    message: "attributes and forward/vacation settings are changed separately"
                        .into(),
                    hint: Some(format!(
                        "run `mailctl user set {address} --...` and `mailctl user set {address} \
                         forward|vacation ...` one after the other"
                    )),
                });
            }
            return super::sieve::setting(ctx, &address, *setting).await;
        }
        UserCmd::Set {
            address,
            setting: None,
            name,
            quota,
            mail_host,
            enable,
            disable,
            prefs,
            unset_prefs,
        } => {
            let enabled = match (enable, disable) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let patch = user_patch(name, quota, mail_host, enabled, prefs, unset_prefs)?;
            let body = c.patch(&user_path(&address), &patch).await?;
            (body, format!("user {address} updated"))
        }
        UserCmd::CheckPassword { address, password } => {
            let prompt = format!("Password for {address}: ");
            let pw = password::read(&Source::from(&password), &prompt, Confirm::Once)?;
            let path = format!("{}/check-password", user_path(&address));
            let body = c.post(&path, &json!({"password": pw})).await?;
            let ok = parse_json(&body)?.get("ok").and_then(Value::as_bool);
            if ctx.json {
                output::stdout(&output::json(&body))?;
            }
            return match ok {
                Some(true) => {
                    if !ctx.json {
                        output::stdout(&format!("{}: password is correct\n", output::clean(&address)))?;
                    }
                    Ok(())
                }
                Some(false) => Err(CtlError::Failed(format!("wrong password for {address}"))),
                None => Err(CtlError::Failed(
                    "the server's answer has no \"ok\" field; are mailctl and mailnode the same version?"
                        .into(),
                )),
            };
        }
        UserCmd::Import {
            file,
            format,
            create_domains,
            batch,
        } => return super::import::run(ctx, &file, format, create_domains, batch).await,
    };
    if ctx.json {
        output::stdout(&output::json(&body))
    } else {
        output::stdout(&format!("{}\n", output::clean(&done)))
    }
}

fn user_path(address: &str) -> String {
    format!("/api/users/{}", seg(address))
}

/// The `PATCH /api/users/{addr}` body: only what was asked for; refusing an empty change.
fn user_patch(
    name: Option<String>,
    quota: Option<u64>,
    mail_host: Option<String>,
    enabled: Option<bool>,
    prefs: Vec<(String, String)>,
    unset_prefs: Vec<String>,
) -> Result<Value, CtlError> {
    let mut patch = Map::new();
    if let Some(name) = name {
        patch.insert("display_name".into(), json!(name));
    }
    if let Some(quota) = quota {
        patch.insert("quota_bytes".into(), json!(quota));
    }
    if let Some(host) = mail_host {
        patch.insert("mail_host".into(), json!(host));
    }
    if let Some(enabled) = enabled {
        patch.insert("enabled".into(), json!(enabled));
    }
    if !prefs.is_empty() {
        let set: Map<String, Value> = prefs.into_iter().map(|(k, v)| (k, json!(v))).collect();
        patch.insert("set_prefs".into(), Value::Object(set));
    }
    if !unset_prefs.is_empty() {
        patch.insert("remove_prefs".into(), json!(unset_prefs));
    }
    if patch.is_empty() {
        return Err(CtlError::Usage {
            message: "nothing to change".into(),
            hint: Some(
                "give at least one of --name, --quota, --mail-host, --enable, --disable, --pref, \
                 --unset-pref"
                    .into(),
            ),
        });
    }
    Ok(Value::Object(patch))
}

/// A quota argument: bytes, or a number with a K/M/G/T suffix in powers of 1024 (`2G`, `500M`,
/// `1.5G`; `KB`, `KiB` and lower case are accepted too). `0` and `unlimited` mean no quota.
pub fn parse_quota(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("none") {
        return Ok(0);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "unknown unit {unit:?}: use K, M, G or T (e.g. 2G, 500M)"
            ))
        }
    };
    let bad = || format!("{s:?} is not a size: use bytes or a K/M/G/T suffix (e.g. 2G, 500M)");
    if number.is_empty() {
        return Err(bad());
    }
    if number.contains('.') {
        let n: f64 = number.parse().map_err(|_| bad())?;
        let bytes = (n * (1u64 << shift) as f64).round();
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(format!("{s:?} is too large"));
        }
        return Ok(bytes as u64);
    }
    let n: u64 = number.parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A `--pref KEY=VALUE` argument; the value may be empty and may hold `=`.
pub fn parse_pref(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

fn user_table(users: &Value) -> Table {
    let mut t = Table::new(&["ADDRESS", "NAME", "QUOTA", "MAIL HOST", "STATUS"]).right(2);
    for u in output::array(users, "users") {
        t.row([
            text(u.get("address")),
            text(u.get("display_name")),
            quota(u.get("quota_bytes")),
            text(u.get("mail_host")),
            status(u.get("enabled")),
        ]);
    }
    t
}

fn quota(v: Option<&Value>) -> String {
    match v.and_then(Value::as_u64) {
        Some(n) => output::bytes(n),
        None => text(v),
    }
}

fn status(v: Option<&Value>) -> String {
    match v.and_then(Value::as_bool) {
        Some(true) => "enabled".to_owned(),
        Some(false) => "disabled".to_owned(),
        None => "-".to_owned(),
    }
}

/// `mailctl user show`: one field per line, then the preferences.
fn render_user(u: &Value) -> String {
    let password = match u.get("password_scheme") {
        None | Some(Value::Null) => "none (cannot log in)".to_owned(),
        Some(Value::String(s))
            if s.eq_ignore_ascii_case("none") || s.eq_ignore_ascii_case("NoPassword") =>
        {
            "none (cannot log in)".to_owned()
        }
        Some(v) => text(Some(v)),
    };
    let mut out = fields(&[
        ("address", text(u.get("address"))),
        ("name", text(u.get("display_name"))),
        ("quota", quota(u.get("quota_bytes"))),
        ("mail host", text(u.get("mail_host"))),
        ("status", status(u.get("enabled"))),
        ("password", password),
    ]);
    if let Some(prefs) = u
        .get("prefs")
        .and_then(Value::as_object)
        .filter(|p| !p.is_empty())
    {
        let mut t = Table::new(&["PREFERENCE", "VALUE"]);
        for (k, v) in prefs {
            t.row([k.clone(), text(Some(v))]);
        }
        out.push('\n');
        out.push_str(&t.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas() {
        assert_eq!(parse_quota("1024"), Ok(1024));
        assert_eq!(parse_quota("2G"), Ok(2 << 30));
        assert_eq!(parse_quota("500M"), Ok(500 << 20));
        assert_eq!(parse_quota("500m"), Ok(500 << 20));
        assert_eq!(parse_quota("10KiB"), Ok(10 << 10));
        assert_eq!(parse_quota("1GB"), Ok(1 << 30));
        assert_eq!(parse_quota("1T"), Ok(1 << 40));
        assert_eq!(parse_quota("1.5G"), Ok(3 << 29));
        assert_eq!(parse_quota("0"), Ok(0));
        assert_eq!(parse_quota("unlimited"), Ok(0));
        for bad in [
            "",
            "G",
            "2X",
            "-1",
            "1.2.3G",
            "99999999999999999999",
            "20000000000T",
            "1e9",
        ] {
            assert!(parse_quota(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prefs() {
        assert_eq!(parse_pref("sig=a=b"), Ok(("sig".into(), "a=b".into())));
        assert_eq!(parse_pref("sig="), Ok(("sig".into(), String::new())));
        assert!(parse_pref("=x").is_err());
        assert!(parse_pref("novalue").is_err());
    }

    #[test]
    fn patches_carry_only_what_was_given() {
        let p = user_patch(
            None,
            Some(1024),
            None,
            Some(false),
            vec![("sig".into(), "--\nA".into())],
            vec!["old".into()],
        )
        .unwrap();
        assert_eq!(
            p,
            json!({"quota_bytes": 1024, "enabled": false, "set_prefs": {"sig": "--\nA"},
                   "remove_prefs": ["old"]})
        );
        let err = user_patch(None, None, None, None, vec![], vec![]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn user_table_and_details() {
        let users = json!([
            {"address": "alice@x.org", "display_name": "Alice", "quota_bytes": 2147483648u64,
             "mail_host": "default", "enabled": true, "prefs": {}, "password_scheme": "argon2id"},
            {"address": "bob@x.org", "display_name": "", "quota_bytes": 0,
             "mail_host": "g2", "enabled": false, "prefs": {}, "password_scheme": "NoPassword"}
        ]);
        assert_eq!(
            user_table(&users).render(),
            "ADDRESS      NAME       QUOTA  MAIL HOST  STATUS\n\
             alice@x.org  Alice         2G  default    enabled\n\
             bob@x.org           unlimited  g2         disabled\n"
        );
        let mut bob = users[1].clone();
        bob["prefs"] = json!({"signature": "--\nBob", "lang": "fr"});
        let shown = render_user(&bob);
        assert!(shown.contains("password   none (cannot log in)"), "{shown}");
        assert!(shown.contains("signature   --\\nBob"), "{shown}");
        assert!(shown.contains("lang        fr"), "{shown}");
        assert!(shown.contains("\nname\n"), "{shown}");
    }
}
