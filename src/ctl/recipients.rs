//! `mailctl alias …`, `mailctl list …` and `mailctl resolve`: addresses that are not mailboxes,
//! and where mail for an address ends up.

use serde_json::{json, Value};

use super::args::{AliasCmd, ListCmd};
use super::client::{parse_json, seg, with_domain};
use super::output::{self, text, Table};
use super::{CtlError, Ctx};

pub(crate) async fn alias(ctx: &Ctx, cmd: AliasCmd) -> Result<(), CtlError> {
    let c = &ctx.client;
    let (body, done) = match cmd {
        AliasCmd::List { domain } => {
            let body = c
                .get(&with_domain("/api/aliases", domain.as_deref()))
                .await?;
            if ctx.json {
                return output::stdout(&output::json(&body));
            }
            let aliases = parse_json(&body)?;
            return output::stdout(
                &address_table("ALIAS", "TARGETS", "targets", &aliases).render(),
            );
        }
        AliasCmd::Add { address, targets } => {
            let body = json!({"address": address, "targets": targets});
            (
                c.post("/api/aliases", &body).await?,
                format!("alias {address} → {}", targets.join(", ")),
            )
        }
        AliasCmd::Remove { address } => (
            c.delete(&format!("/api/aliases/{}", seg(&address))).await?,
            format!("alias {address} removed"),
        ),
    };
    finish(ctx, &body, &done)
}

pub(crate) async fn list(ctx: &Ctx, cmd: ListCmd) -> Result<(), CtlError> {
    let c = &ctx.client;
    let (body, done) = match cmd {
        ListCmd::List { domain } => {
            let body = c.get(&with_domain("/api/lists", domain.as_deref())).await?;
            if ctx.json {
                return output::stdout(&output::json(&body));
            }
            let lists = parse_json(&body)?;
            return output::stdout(&address_table("LIST", "MEMBERS", "members", &lists).render());
        }
        ListCmd::Add { address, members } => {
            let n = members.len();
            let body = json!({"address": address, "members": members});
            (
                c.post("/api/lists", &body).await?,
                format!("list {address} created with {n} member{}", plural(n)),
            )
        }
        ListCmd::Remove { address } => (
            c.delete(&list_path(&address)).await?,
            format!("list {address} removed"),
        ),
        ListCmd::Members {
            address,
            add,
            remove,
        } if add.is_empty() && remove.is_empty() => {
            let body = c.get(&list_path(&address)).await?;
            if ctx.json {
                return output::stdout(&output::json(&body));
            }
            return output::stdout(&members(&parse_json(&body)?));
        }
        ListCmd::Members {
            address,
            add,
            remove,
        } => {
            let path = format!("{}/members", list_path(&address));
            let mut body = bytes::Bytes::new();
            let mut done = Vec::new();
            if !add.is_empty() {
                body = c.post(&path, &json!({"members": add})).await?;
                done.push(format!(
                    "{} member{} added to {address}",
                    add.len(),
                    plural(add.len())
                ));
            }
            if !remove.is_empty() {
                body = c.delete_with(&path, &json!({"members": remove})).await?;
                done.push(format!(
                    "{} member{} removed from {address}",
                    remove.len(),
                    plural(remove.len())
                ));
            }
            (body, done.join("\n"))
        }
    };
    finish(ctx, &body, &done)
}

pub(crate) async fn resolve(ctx: &Ctx, address: &str) -> Result<(), CtlError> {
    let body = ctx
        .client
        .get(&format!("/api/resolve/{}", seg(address)))
        .await?;
    if ctx.json {
        return output::stdout(&output::json(&body));
    }
    output::stdout(&render_resolution(address, &parse_json(&body)?))
}

fn finish(ctx: &Ctx, body: &[u8], done: &str) -> Result<(), CtlError> {
    if ctx.json {
        return output::stdout(&output::json(body));
    }
    let lines: String = done
        .lines()
        .map(|l| format!("{}\n", output::clean(l)))
        .collect();
    output::stdout(&lines)
}

fn list_path(address: &str) -> String {
    format!("/api/lists/{}", seg(address))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The addresses of a JSON array field, joined for one table cell.
fn joined(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        Some(a) => a
            .iter()
            .map(|x| text(Some(x)))
            .collect::<Vec<_>>()
            .join(", "),
        None => text(v),
    }
}

/// ALIAS TARGETS / LIST MEMBERS: one row per record, the addresses comma-separated.
fn address_table(first: &str, second: &str, field: &str, records: &Value) -> Table {
    let key = if field == "targets" {
        "aliases"
    } else {
        "lists"
    };
    let mut t = Table::new(&[first, second]);
    for r in output::array(records, key) {
        t.row([text(r.get("address")), joined(r.get(field))]);
    }
    t
}

/// `mailctl list members ADDR`: one member per line, so the output pipes into other tools.
fn members(list: &Value) -> String {
    list.get("members")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .map(|x| format!("{}\n", output::clean(&text(Some(x)))))
                .collect()
        })
        .unwrap_or_default()
}

fn render_resolution(address: &str, r: &Value) -> String {
    let mut t = Table::new(&["DELIVERY", "ADDRESS"]);
    for (kind, field) in [("mailbox", "mailboxes"), ("forward", "forwards")] {
        for a in r.get(field).and_then(Value::as_array).into_iter().flatten() {
            t.row([kind.to_owned(), text(Some(a))]);
        }
    }
    if t.is_empty() {
        return format!(
            "{}: no delivery (mail to it is refused)\n",
            output::clean(address)
        );
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_and_list_tables() {
        let aliases = json!([{"address": "info@x.org", "targets": ["a@x.org", "b@y.net"]}]);
        assert_eq!(
            address_table("ALIAS", "TARGETS", "targets", &aliases).render(),
            "ALIAS       TARGETS\ninfo@x.org  a@x.org, b@y.net\n"
        );
        let lists = json!({"lists": [{"address": "all@x.org", "members": []}]});
        assert_eq!(
            address_table("LIST", "MEMBERS", "members", &lists).render(),
            "LIST       MEMBERS\nall@x.org\n"
        );
        assert_eq!(
            members(&json!({"members": ["a@x.org", "b@x.org"]})),
            "a@x.org\nb@x.org\n"
        );
    }

    #[test]
    fn resolution() {
        let r = json!({"mailboxes": ["a@x.org"], "forwards": ["z@y.net"]});
        assert_eq!(
            render_resolution("info@x.org", &r),
            "DELIVERY  ADDRESS\nmailbox   a@x.org\nforward   z@y.net\n"
        );
        let none = json!({"mailboxes": [], "forwards": []});
        assert!(render_resolution("n@x.org", &none).contains("no delivery"));
    }
}
