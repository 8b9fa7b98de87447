//! `mailctl status`, `mailctl cluster bootstrap` and `mailctl node …`: the Raft control plane
//! as the operator sees it.
//!
//! Answers are read as loose JSON rather than fixed structs: a missing or null field prints as
//! `-`, and a log position may be a bare index or an openraft log id, so a node one version
//! ahead still gets a readable status.

use serde_json::{json, Value};

use super::args::NodeCmd;
use super::client::parse_json;
use super::output::{self, fields, index, text, Table};
use super::{CtlError, Ctx};

pub(crate) async fn status(ctx: &Ctx) -> Result<(), CtlError> {
    let body = ctx.client.get("/api/status").await?;
    if ctx.json {
        return output::stdout(&output::json(&body));
    }
    let status = parse_json(&body)?;
    let mut out = render_status(&status);
    // Each member's own part in the mailstore role (mount, services), asked of it directly.
    let nodes = output::array(&status, "nodes");
    if status["mailstore"]["candidates"]
        .as_object()
        .is_some_and(|c| !c.is_empty())
    {
        let mut roles = Vec::new();
        for n in nodes {
            let local = match n["api_addr"].as_str().map(|a| ctx.client.for_server(a)) {
                Some(Ok(client)) => {
                    let ask = client.get_json("/api/status");
                    match tokio::time::timeout(std::time::Duration::from_secs(3), ask).await {
                        Ok(Ok(v)) => Ok(v),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("no answer within 3 s".to_owned()),
                    }
                }
                Some(Err(e)) => Err(e.to_string()),
                None => Err("no API address".to_owned()),
            };
            roles.push((n.clone(), local));
        }
        out.push('\n');
        out.push_str(&roles_table(&roles).render());
    }
    output::stdout(&out)
}

/// NODE RAFT MAILSTORE VOLUME SERVICES LEASE ERROR: each member's own view.
fn roles_table(roles: &[(Value, Result<Value, String>)]) -> Table {
    let mut t = Table::new(&[
        "NODE",
        "RAFT",
        "MAILSTORE",
        "VOLUME",
        "VIP",
        "SERVICES",
        "LEASE",
        "ERROR",
    ]);
    for (n, answer) in roles {
        let name = format!("{} ({})", text(n.get("id")), text(n.get("name")));
        match answer {
            Ok(v) => {
                let l = &v["mailstore"]["local"];
                let yes_no = |b: &Value| if *b == json!(true) { "yes" } else { "no" }.to_owned();
                let age = l["lease_age_ms"]
                    .as_u64()
                    .map_or("-".to_owned(), |ms| format!("{ms} ms"));
                t.row([
                    name,
                    text(v.get("state")),
                    if l.is_null() {
                        "-".to_owned()
                    } else {
                        text(l.get("state"))
                    },
                    yes_no(&l["volume"]),
                    if l["vip"].is_null() {
                        "-".to_owned()
                    } else {
                        yes_no(&l["vip"])
                    },
                    yes_no(&l["services"]),
                    age,
                    l["last_error"]
                        .as_str()
                        .map_or("-".to_owned(), output::clean),
                ]);
            }
            Err(e) => t.row([
                name,
                "unreachable".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                output::clean(e),
            ]),
        }
    }
    t
}

pub(crate) async fn bootstrap(ctx: &Ctx) -> Result<(), CtlError> {
    let body = ctx
        .client
        .post("/api/cluster/bootstrap", &json!({}))
        .await?;
    if ctx.json {
        return output::stdout(&output::json(&body));
    }
    output::stdout(
        "cluster bootstrapped: this node is its first member\n\
         add the others with `mailctl node add ID --name NAME --raft HOST:PORT --api HOST:PORT`\n",
    )
}

pub(crate) async fn node(ctx: &Ctx, cmd: NodeCmd) -> Result<(), CtlError> {
    match cmd {
        NodeCmd::List => {
            if ctx.json {
                return output::stdout(&output::json(&ctx.client.get("/api/nodes").await?));
            }
            // The status carries the same members plus the leader to mark among them.
            let status = ctx.client.get_json("/api/status").await?;
            let nodes = output::array(&status, "nodes");
            output::stdout(&node_table(nodes, status.get("leader")).render())
        }
        NodeCmd::Add {
            id,
            name,
            raft,
            api,
        } => {
            output::note(&format!(
                "adding node {id} ({name}) as learner, waiting for it to catch up…"
            ));
            let body = json!({"id": id, "name": name, "raft_addr": raft, "api_addr": api});
            let answer = ctx.client.post("/api/nodes", &body).await?;
            if ctx.json {
                return output::stdout(&output::json(&answer));
            }
            output::stdout(&format!("node {id} ({name}) added\n"))
        }
        NodeCmd::Drain { node } => drain(ctx, &node, true).await,
        NodeCmd::Undrain { node } => drain(ctx, &node, false).await,
        NodeCmd::Remove { id } => {
            let answer = ctx.client.delete(&format!("/api/nodes/{id}")).await?;
            if ctx.json {
                return output::stdout(&output::json(&answer));
            }
            output::stdout(&format!("node {id} removed\n"))
        }
    }
}

async fn drain(ctx: &Ctx, node: &str, drained: bool) -> Result<(), CtlError> {
    let status = ctx.client.get_json("/api/status").await?;
    let (id, label) = find_node(&status, node)?;
    let verb = if drained { "drain" } else { "undrain" };
    let answer = ctx
        .client
        .post(&format!("/api/mailstore/{verb}/{id}"), &json!({}))
        .await?;
    if ctx.json {
        return output::stdout(&output::json(&answer));
    }
    let holder = status["mailstore"]["holder"].as_u64() == Some(id);
    output::stdout(&match (drained, holder) {
        (true, true) => format!(
            "{label} drained: it hands the mailstore over now; `mailctl status` shows the new holder\n"
        ),
        (true, false) => format!("{label} drained: it will not take the mailstore\n"),
        (false, _) => format!("{label} may hold the mailstore again\n"),
    })
}

/// `mailctl failover [--to NODE]`.
pub(crate) async fn failover(ctx: &Ctx, to: Option<String>) -> Result<(), CtlError> {
    let status = ctx.client.get_json("/api/status").await?;
    let target = to.as_deref().map(|t| find_node(&status, t)).transpose()?;
    let body = json!({"to": target.as_ref().map(|(id, _)| id)});
    let answer = ctx.client.post("/api/mailstore/switchover", &body).await?;
    if ctx.json {
        return output::stdout(&output::json(&answer));
    }
    output::note("switchover requested; waiting for the new holder…");
    let before = status["mailstore"]["epoch"].as_u64().unwrap_or(0);
    let started = std::time::Instant::now();
    loop {
        let s = ctx.client.get_json("/api/status").await?;
        let m = &s["mailstore"];
        let epoch = m["epoch"].as_u64().unwrap_or(0);
        if epoch > before && m["active_epoch"].as_u64() == Some(epoch) {
            let nodes = output::array(&s, "nodes");
            let holder = node_label(m.get("holder"), nodes);
            return output::stdout(&format!(
                "{holder} is the active mailstore (epoch {epoch}) after {:.1} s\n",
                started.elapsed().as_secs_f64()
            ));
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            return Err(CtlError::Failed(
                "no node became the active mailstore within 60 s: see `mailctl status` (the \
                 holder's last error says why)"
                    .into(),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A node by id or name among the status's members: its id and `id (name)`.
fn find_node(status: &Value, node: &str) -> Result<(u64, String), CtlError> {
    let nodes = output::array(status, "nodes");
    let found = nodes.iter().find(|n| {
        n["name"].as_str() == Some(node)
            || n["id"].as_u64().map(|i| i.to_string()).as_deref() == Some(node)
    });
    match found.and_then(|n| n["id"].as_u64()) {
        Some(id) => Ok((id, node_label(Some(&json!(id)), nodes))),
        None => Err(CtlError::Usage {
            message: format!(
                "{}: no such node (give its id or name)",
                output::clean(node)
            ),
            hint: Some("`mailctl node list` shows the members".into()),
        }),
    }
}

/// `id (name)` for a node id, looking the name up in `nodes`.
fn node_label(id: Option<&Value>, nodes: &[Value]) -> String {
    let Some(id) = id.filter(|v| !v.is_null()) else {
        return "none".to_owned();
    };
    let name = nodes
        .iter()
        .find(|n| n.get("id") == Some(id))
        .and_then(|n| n.get("name"))
        .and_then(Value::as_str);
    match name {
        Some(name) => format!("{} ({name})", text(Some(id))),
        None => text(Some(id)),
    }
}

/// The human form of `GET /api/status`.
pub(crate) fn render_status(status: &Value) -> String {
    let nodes = output::array(status, "nodes");
    let this = match (status.get("id"), status.get("name").and_then(Value::as_str)) {
        (id, Some(name)) => format!("{} ({name})", text(id)),
        (id, None) => node_label(id, nodes),
    };
    let get = |k: &str| status.get(k);
    let mut out = fields(&[
        ("node", this),
        ("state", text(get("state"))),
        ("term", text(get("term"))),
        ("leader", node_label(get("leader"), nodes)),
        ("last log", index(get("last_log_index"))),
        ("committed", index(get("committed"))),
        ("applied", index(get("applied"))),
        ("snapshot", index(get("snapshot"))),
        ("purged", index(get("purged"))),
    ]);
    if get("initialized") == Some(&Value::Bool(false)) {
        out.push_str(
            "\nthis node is not part of a cluster yet: run `mailctl cluster bootstrap` on the \
             first node, then `mailctl node add` the others from there\n",
        );
    }
    if let Some(m) = get("mailstore").filter(|m| m.is_object()) {
        out.push_str(&render_mailstore(m, nodes));
    }
    if let Some(q) = get("queue").filter(|q| q.is_object()) {
        let n = |k: &str| text(q.get(k));
        let oldest = q
            .get("oldest_age_secs")
            .and_then(Value::as_u64)
            .map_or("-".to_owned(), super::queue::duration);
        out.push_str(&format!(
            "\nmail queue (this node): {} messages — {} active, {} waiting, {} held; oldest {oldest}\n",
            n("messages"),
            n("active"),
            n("waiting"),
            n("held"),
        ));
    }
    if !nodes.is_empty() {
        out.push('\n');
        out.push_str(&node_table(nodes, get("leader")).render());
    }
    out
}

/// The mailstore lease: holder, epoch, this node's part, the last failover, drained nodes.
fn render_mailstore(m: &Value, nodes: &[Value]) -> String {
    let candidates = m["candidates"].as_object().map_or(0, |c| c.len());
    if candidates == 0 && m["holder"].is_null() {
        return String::new();
    }
    let label = |id: &str| node_label(Some(&json!(id.parse::<u64>().unwrap_or(0))), nodes);
    let epoch = m["epoch"].as_u64().unwrap_or(0);
    let holder = match m.get("holder").filter(|h| !h.is_null()) {
        None => "none".to_owned(),
        Some(h) => {
            let state = if m["active_epoch"].as_u64() == Some(epoch) {
                "active"
            } else {
                "activating"
            };
            format!("{} — {state}", node_label(Some(h), nodes))
        }
    };
    let mut rows = vec![("holder", holder), ("epoch", epoch.to_string())];
    if let Some(l) = m.get("local").filter(|l| l.is_object()) {
        let mut s = text(l.get("state"));
        if let Some(age) = l["lease_age_ms"].as_u64() {
            s.push_str(&format!(", lease renewed {age} ms ago"));
        }
        s.push_str(if l["volume"] == json!(true) {
            ", volume taken"
        } else {
            ", volume not taken"
        });
        s.push_str(if l["services"] == json!(true) {
            ", services up"
        } else {
            ", services down"
        });
        if let Some(e) = l["last_error"].as_str() {
            s.push_str(&format!("; last error: {}", output::clean(e)));
        }
        rows.push(("this node", s));
    }
    if let Some(f) = m.get("last_failover").filter(|f| f.is_object()) {
        let from = match f.get("from").filter(|v| !v.is_null()) {
            Some(v) => node_label(Some(v), nodes),
            None => "none".into(),
        };
        let took = f["duration_ms"]
            .as_u64()
            .map_or("not active yet".to_owned(), |ms| {
                format!("active after {:.1} s", ms as f64 / 1000.0)
            });
        let at = f["granted_at_ms"].as_u64().map_or("-".to_owned(), |ms| {
            crate::smtp::rfc5322_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        });
        rows.push((
            "last failover",
            format!(
                "{from} → {} at {at}: {} ({took})",
                node_label(f.get("to"), nodes),
                output::clean(f["reason"].as_str().unwrap_or("-")),
            ),
        ));
    }
    let drained: Vec<String> = m["drained"]
        .as_array()
        .map(|d| d.iter().map(|n| node_label(Some(n), nodes)).collect())
        .unwrap_or_default();
    if !drained.is_empty() {
        rows.push(("drained", drained.join(", ")));
    }
    if let Some(failed) = m["failed"].as_object().filter(|f| !f.is_empty()) {
        let list: Vec<String> = failed
            .iter()
            .map(|(id, why)| {
                format!(
                    "{}: {}",
                    label(id),
                    output::clean(why.as_str().unwrap_or("-"))
                )
            })
            .collect();
        rows.push(("failed", list.join("; ")));
    }
    let mut out = String::from("\nmailstore\n");
    out.push_str(&fields(
        &rows
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect::<Vec<_>>(),
    ));
    out
}

/// ID NAME ROLE RAFT API MATCHED LAG. The leader is marked in ROLE, from `leader` when given or
/// from a node's own `leader: true`.
fn node_table(nodes: &[Value], leader: Option<&Value>) -> Table {
    let mut t = Table::new(&["ID", "NAME", "ROLE", "RAFT", "API", "MATCHED", "LAG"])
        .right(0)
        .right(5)
        .right(6);
    for n in nodes {
        let mut role = match n.get("voter").and_then(Value::as_bool) {
            Some(true) => "voter".to_owned(),
            Some(false) => "learner".to_owned(),
            None => "-".to_owned(),
        };
        let is_leader = n.get("leader") == Some(&Value::Bool(true))
            || leader.is_some_and(|l| !l.is_null() && n.get("id") == Some(l));
        if is_leader {
            role.push_str(" (leader)");
        }
        t.row([
            text(n.get("id")),
            text(n.get("name")),
            role,
            text(n.get("raft_addr")),
            text(n.get("api_addr")),
            index(n.get("matched")),
            text(n.get("lag")),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_shows_header_and_members() {
        let status = json!({
            "id": 1, "name": "a", "state": "Leader", "term": 3, "leader": 1,
            "last_log_index": 120, "committed": 120, "applied": 119,
            "snapshot": null, "purged": {"leader_id": {"term": 1, "node_id": 1}, "index": 50},
            "initialized": true,
            "nodes": [
                {"id": 1, "name": "a", "raft_addr": "10.0.0.1:7400", "api_addr": "10.0.0.1:443",
                 "voter": true, "matched": 120, "lag": 0},
                {"id": 12, "name": "b", "raft_addr": "10.0.0.2:7400", "api_addr": "10.0.0.2:443",
                 "voter": false, "matched": null, "lag": null}
            ]
        });
        let expected = "\
node       1 (a)
state      Leader
term       3
leader     1 (a)
last log   120
committed  120
applied    119
snapshot   -
purged     50

ID  NAME  ROLE            RAFT           API           MATCHED  LAG
 1  a     voter (leader)  10.0.0.1:7400  10.0.0.1:443      120    0
12  b     learner         10.0.0.2:7400  10.0.0.2:443        -    -
";
        assert_eq!(render_status(&status), expected);
    }

    #[test]
    fn an_uninitialized_node_says_what_to_do() {
        let status = json!({"id": 1, "name": "a", "state": "Learner", "leader": null,
                            "initialized": false, "nodes": []});
        let s = render_status(&status);
        assert!(s.contains("leader     none"), "{s}");
        assert!(s.contains("mailctl cluster bootstrap"), "{s}");
    }
}
