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
    output::stdout(&render_status(&parse_json(&body)?))
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
        NodeCmd::Remove { id } => {
            let answer = ctx.client.delete(&format!("/api/nodes/{id}")).await?;
            if ctx.json {
                return output::stdout(&output::json(&answer));
            }
            output::stdout(&format!("node {id} removed\n"))
        }
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
