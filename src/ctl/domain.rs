//! `mailctl domain …`: the domains the cluster receives mail for, and their catch-alls.

use serde_json::{json, Value};

use super::args::DomainCmd;
use super::client::{parse_json, seg};
use super::output::{self, text, Table};
use super::{CtlError, Ctx};

pub(crate) async fn run(ctx: &Ctx, cmd: DomainCmd) -> Result<(), CtlError> {
    let c = &ctx.client;
    let (body, done) = match cmd {
        DomainCmd::List => {
            let body = c.get("/api/domains").await?;
            if ctx.json {
                return output::stdout(&output::json(&body));
            }
            return output::stdout(&domain_table(&parse_json(&body)?).render());
        }
        DomainCmd::Add { name } => (
            c.post("/api/domains", &json!({"name": name})).await?,
            format!("domain {name} added"),
        ),
        DomainCmd::Remove { name } => (
            c.delete(&format!("/api/domains/{}", seg(&name))).await?,
            format!("domain {name} removed"),
        ),
        DomainCmd::CatchAll {
            domain,
            target: None,
            clear: false,
        } => return show_catch_all(ctx, &domain).await,
        DomainCmd::CatchAll {
            domain,
            target,
            clear: _,
        } => {
            let path = format!("/api/domains/{}/catch-all", seg(&domain));
            let body = c.put(&path, &json!({"target": target})).await?;
            let done = match target {
                Some(t) => format!("mail to unknown addresses of {domain} now goes to {t}"),
                None => {
                    format!("catch-all of {domain} cleared: mail to unknown addresses is refused")
                }
            };
            (body, done)
        }
    };
    if ctx.json {
        output::stdout(&output::json(&body))
    } else {
        output::stdout(&format!("{}\n", output::clean(&done)))
    }
}

/// Shows one domain's catch-all, from the domain list (there is no single-domain route).
async fn show_catch_all(ctx: &Ctx, domain: &str) -> Result<(), CtlError> {
    let domains = ctx.client.get_json("/api/domains").await?;
    let entry = output::array(&domains, "domains")
        .iter()
        .find(|d| {
            d.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(domain))
        })
        .ok_or_else(|| CtlError::Server {
            status: 404,
            message: format!("no domain {domain}"),
            hint: Some("see `mailctl domain list`".into()),
        })?;
    if ctx.json {
        return output::stdout(&output::pretty(entry));
    }
    let line = match entry.get("catch_all").and_then(Value::as_str) {
        Some(t) => format!("mail to unknown addresses of {domain} goes to {t}"),
        None => format!("{domain} has no catch-all: mail to unknown addresses is refused"),
    };
    output::stdout(&format!("{}\n", output::clean(&line)))
}

fn domain_table(domains: &Value) -> Table {
    let mut t = Table::new(&["DOMAIN", "CATCH-ALL"]);
    for d in output::array(domains, "domains") {
        t.row([text(d.get("name")), text(d.get("catch_all"))]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_table() {
        let domains = json!([{"name": "example.org", "catch_all": null},
                             {"name": "x.net", "catch_all": "postmaster@x.net"}]);
        assert_eq!(
            domain_table(&domains).render(),
            "DOMAIN       CATCH-ALL\nexample.org  -\nx.net        postmaster@x.net\n"
        );
    }
}
