//! `mailctl store …`: check the message store (optionally repairing it) and show a user's
//! usage, on the node that serves the store (the active mailstore; others answer 409).
//!
//! `check` prints the server's report and turns its verdict into the exit code: 1 when damage
//! remains after the run (found without `--repair`, or beyond repair), 0 otherwise — crash
//! leftovers alone are not a failure, the store repairs them on its own. The server classifies
//! findings; this module never second-guesses it.
//!
//! Security note: user names, mailbox names and finding details come from the volume via the
//! server and pass through [`output::clean`] before they reach the terminal.

use serde_json::{json, Value};

use super::args::StoreCmd;
use super::client::{parse_json, seg};
use super::output::{self, fields, text, Table};
use super::queue::typed;
use super::{CtlError, Ctx};
use crate::admin::mail::UserUsage;

pub(crate) async fn run(ctx: &Ctx, cmd: StoreCmd) -> Result<(), CtlError> {
    let c = &ctx.client;
    match cmd {
        StoreCmd::Check { repair, user } => {
            let body = c
                .post("/api/store/check", &json!({"repair": repair, "user": user}))
                .await?;
            let report = parse_json(&body)?;
            if ctx.json {
                output::stdout(&output::json(&body))?;
            } else {
                output::stdout(&render_check(&report))?;
            }
            verdict(&report, repair)
        }
        StoreCmd::Usage { address } => {
            let path = format!("/api/store/users/{}", seg(&address));
            let body = c.get(&path).await?;
            if ctx.json {
                return output::stdout(&output::json(&body));
            }
            output::stdout(&render_usage(&typed(&body)?))
        }
    }
}

/// The exit status of a check: damage still present is a failed operation.
fn verdict(report: &Value, repair: bool) -> Result<(), CtlError> {
    let left = report
        .get("unrepaired_damage")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            CtlError::Failed(
                "the server's check report has no verdict; are mailctl and mailnode the same \
                 version?"
                    .into(),
            )
        })?;
    match (left, repair) {
        (0, _) => Ok(()),
        (n, false) => Err(CtlError::Failed(format!(
            "{n} damaged item{} found: run `mailctl store check --repair`",
            plural(n)
        ))),
        (n, true) => Err(CtlError::Failed(format!(
            "{n} damaged item{} could not be repaired: inspect the files named above by hand",
            plural(n)
        ))),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn render_check(r: &Value) -> String {
    let n = |k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut out = fields(&[
        ("users", n("users").to_string()),
        ("mailboxes", n("mailboxes").to_string()),
        ("messages", n("messages").to_string()),
        ("bytes", n("bytes").to_string()),
    ]);
    let findings = output::array(r, "findings");
    if findings.is_empty() {
        out.push_str("no problems found\n");
        return out;
    }
    out.push('\n');
    let mut t = Table::new(&["USER", "MAILBOX", "FINDING", "DAMAGE", "FIXED", "DETAIL"]);
    for f in findings {
        t.row([
            text(f.get("user")),
            text(f.get("mailbox")),
            text(f.get("kind")),
            text(f.get("damage")),
            text(f.get("fixed")),
            text(f.get("detail")),
        ]);
    }
    out.push_str(&t.render());
    out
}

fn render_usage(u: &UserUsage) -> String {
    // Bytes used against the quota, in whole percent, rounded down so 100% means full.
    let quota = match u.bytes.saturating_mul(100).checked_div(u.quota_bytes) {
        None => "unlimited".to_owned(),
        Some(pct) => format!("{} ({pct}% used)", output::bytes(u.quota_bytes)),
    };
    let mut out = fields(&[
        ("user", u.user.clone()),
        ("messages", u.messages.to_string()),
        ("bytes", u.bytes.to_string()),
        ("quota", quota),
    ]);
    out.push('\n');
    let mut t = Table::new(&["MAILBOX", "ROLE", "MESSAGES", "UNSEEN", "BYTES"])
        .right(2)
        .right(3)
        .right(4);
    for m in &u.mailboxes {
        t.row([
            m.name.clone(),
            m.special_use.clone().unwrap_or_else(|| "-".into()),
            m.messages.to_string(),
            m.unseen.to_string(),
            m.bytes.to_string(),
        ]);
    }
    out.push_str(&t.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::mail::MailboxUsage;

    #[test]
    fn check_verdicts_are_exit_codes() {
        assert!(verdict(&json!({"unrepaired_damage": 0}), false).is_ok());
        let e = verdict(&json!({"unrepaired_damage": 2}), false).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("--repair"));
        let e = verdict(&json!({"unrepaired_damage": 1}), true).unwrap_err();
        assert!(e.to_string().contains("could not be repaired"));
        assert_eq!(verdict(&json!({}), false).unwrap_err().exit_code(), 1);
    }

    #[test]
    fn check_reports() {
        let clean = json!({"users": 2, "mailboxes": 10, "messages": 3, "bytes": 900,
                           "findings": [], "clean": true, "damage": 0, "unrepaired_damage": 0});
        assert_eq!(
            render_check(&clean),
            "users      2\nmailboxes  10\nmessages   3\nbytes      900\nno problems found\n"
        );
        let found = json!({"users": 1, "findings": [{"user": "a@x.org", "mailbox": "INBOX",
            "kind": "checksum_mismatch", "detail": "uid 4", "fixed": false, "damage": true}]});
        let out = render_check(&found);
        assert!(
            out.ends_with(
                "USER     MAILBOX  FINDING            DAMAGE  FIXED  DETAIL\n\
             a@x.org  INBOX    checksum_mismatch  yes     no     uid 4\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn usage_table() {
        let u = UserUsage {
            user: "alice@x.org".into(),
            messages: 2,
            bytes: 1536,
            quota_bytes: 4096,
            mailboxes: vec![
                MailboxUsage {
                    name: "INBOX".into(),
                    special_use: None,
                    messages: 2,
                    unseen: 1,
                    bytes: 1536,
                },
                MailboxUsage {
                    name: "Sent".into(),
                    special_use: Some("\\Sent".into()),
                    messages: 0,
                    unseen: 0,
                    bytes: 0,
                },
            ],
        };
        assert_eq!(
            render_usage(&u),
            "user      alice@x.org\nmessages  2\nbytes     1536\nquota     4K (37% used)\n\n\
             MAILBOX  ROLE   MESSAGES  UNSEEN  BYTES\n\
             INBOX    -             2       1   1536\n\
             Sent     \\Sent         0       0      0\n"
        );
    }
}
