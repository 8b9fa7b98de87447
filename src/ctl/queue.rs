//! `mailctl queue …`: list, show, flush, delete, hold and release messages in the mail queue of
//! the node `--server` points at (each node has its own queue on its local disk).
//!
//! Queue ids are checked here before anything is sent, so a mistyped id is a usage error
//! (exit 2) rather than a round trip. Answers are parsed into the queue's own serde types, so
//! a server of another version fails loudly instead of printing half a table. This module only
//! asks; the queue decides.
//!
//! Security note: senders, recipients, errors and headers come from the network (via the
//! server) and pass through [`output::clean`] before they reach the terminal.

use serde::de::DeserializeOwned;

use super::args::QueueCmd;
use super::client::parse_json;
use super::output::{self, fields, Table};
use super::{CtlError, Ctx};
use crate::queue::{MessageState, QueueDetail, QueueEntry, QueueId, QueuePage, RcptState};

/// Longest error text shown in a table cell; `queue show` and `--json` give it whole.
const ERROR_CELL: usize = 60;

pub(crate) async fn run(ctx: &Ctx, cmd: QueueCmd) -> Result<(), CtlError> {
    let c = &ctx.client;
    let (body, done) = match cmd {
        QueueCmd::List { limit, after } => {
            let mut path = format!("/api/queue?limit={limit}");
            if let Some(after) = &after {
                let id = QueueId::parse(after).ok_or_else(|| bad_id(after))?;
                path.push_str(&format!("&after={id}"));
            }
            let body = c.get(&path).await?;
            if ctx.json {
                return output::stdout(&output::json(&body));
            }
            let page: QueuePage = typed(&body)?;
            return output::stdout(&render_page(&page, after.is_some()));
        }
        QueueCmd::Show { id } => {
            let body = c.get(&message_path(&id)?).await?;
            if ctx.json {
                return output::stdout(&output::json(&body));
            }
            return output::stdout(&render_detail(&typed(&body)?));
        }
        QueueCmd::Flush { id } => {
            let path = match &id {
                Some(id) => format!("{}/flush", message_path(id)?),
                None => "/api/queue/flush".to_owned(),
            };
            let body = c.post(&path, &serde_json::json!({})).await?;
            let n = parse_json(&body)?
                .get("flushed")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            let done = match (&id, n) {
                (Some(id), 0) => format!("message {id} is held: release it to deliver it"),
                (Some(id), _) => format!("message {id} will be retried now"),
                (None, n) => format!(
                    "{n} message{} will be retried now (held messages stay held)",
                    if n == 1 { "" } else { "s" }
                ),
            };
            (body, done)
        }
        QueueCmd::Delete { id } => (
            c.delete(&message_path(&id)?).await?,
            format!("message {id} deleted (its sender is not notified)"),
        ),
        QueueCmd::Hold { id } => (
            c.post(
                &format!("{}/hold", message_path(&id)?),
                &serde_json::json!({}),
            )
            .await?,
            format!("message {id} held: no delivery until `mailctl queue release {id}`"),
        ),
        QueueCmd::Release { id } => (
            c.post(
                &format!("{}/release", message_path(&id)?),
                &serde_json::json!({}),
            )
            .await?,
            format!("message {id} released and will be retried now"),
        ),
    };
    if ctx.json {
        output::stdout(&output::json(&body))
    } else {
        output::stdout(&format!("{}\n", output::clean(&done)))
    }
}

/// A page of the queue: the table, then where the queue stands and how to go on.
fn render_page(page: &QueuePage, continued: bool) -> String {
    let s = &page.stats;
    if s.messages == 0 {
        return "the queue is empty\n".into();
    }
    let mut out = String::new();
    if page.entries.is_empty() {
        out.push_str("no message after that id\n");
    } else {
        out.push_str(&queue_table(&page.entries).render());
    }
    out.push_str(&format!(
        "\n{} — {} active, {} waiting, {} held; oldest {}\n",
        plural(s.messages, "message"),
        s.active,
        s.waiting,
        s.held,
        s.oldest_age_secs.map_or("-".into(), duration),
    ));
    if let Some(next) = &page.next_after {
        out.push_str(&format!(
            "more after this page: mailctl queue list --after {next}\n"
        ));
    } else if continued {
        out.push_str("(last page)\n");
    }
    out
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn bad_id(id: &str) -> CtlError {
    CtlError::Usage {
        message: format!(
            "{}: not a queue id (20 lower-case hex digits)",
            output::clean(id)
        ),
        hint: Some("copy the id from `mailctl queue list`".into()),
    }
}

/// `/api/queue/{id}` for a well-formed id; a usage error otherwise.
fn message_path(id: &str) -> Result<String, CtlError> {
    let id = QueueId::parse(id).ok_or_else(|| bad_id(id))?;
    Ok(format!("/api/queue/{id}"))
}

/// A 2xx answer parsed into one of the server's own types.
pub(super) fn typed<T: DeserializeOwned>(body: &[u8]) -> Result<T, CtlError> {
    serde_json::from_value(parse_json(body)?).map_err(|e| {
        CtlError::Failed(format!(
            "the server's answer is not the JSON expected ({e}); are mailctl and mailnode the \
             same version?"
        ))
    })
}

fn state(s: MessageState) -> &'static str {
    match s {
        MessageState::Active => "active",
        MessageState::Queued => "queued",
        MessageState::Deferred => "deferred",
        MessageState::Held => "held",
    }
}

/// A duration the way an operator reads a queue: `45s`, `12m`, `3h05m`, `2d04h`.
pub(super) fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A message size: `0`, `980`, `4.2K`, `1.5M`.
fn size(n: u64) -> String {
    if n == 0 {
        "0".to_owned()
    } else {
        output::bytes(n)
    }
}

/// When the next attempt is, relative to the server's clock (its `received + age`), so a
/// skewed operator clock cannot make it read wrong.
fn next(e: &QueueEntry) -> String {
    if e.state == MessageState::Active {
        return "-".to_owned();
    }
    match e.next_attempt {
        None => "-".to_owned(),
        Some(at) => match at.checked_sub(e.received + e.age_secs) {
            None | Some(0) => "now".to_owned(),
            Some(wait) => format!("in {}", duration(wait)),
        },
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn sender(s: &str) -> String {
    if s.is_empty() {
        "<>".to_owned()
    } else {
        s.to_owned()
    }
}

fn queue_table(entries: &[QueueEntry]) -> Table {
    let mut t = Table::new(&[
        "ID",
        "SENDER",
        "RCPTS",
        "SIZE",
        "AGE",
        "STATE",
        "NEXT",
        "LAST ERROR",
    ])
    .right(3)
    .right(4);
    for e in entries {
        let rcpts = match e.recipients.as_slice() {
            [] => "-".to_owned(),
            [one] => one.clone(),
            [first, rest @ ..] => format!("{first} +{}", rest.len()),
        };
        t.row([
            e.id.to_string(),
            sender(&e.sender),
            rcpts,
            size(e.size),
            duration(e.age_secs),
            state(e.state).to_owned(),
            next(e),
            e.last_error
                .as_deref()
                .map_or("-".to_owned(), |s| shorten(s, ERROR_CELL)),
        ]);
    }
    t
}

fn render_detail(d: &QueueDetail) -> String {
    let e = &d.entry;
    let mut out = fields(&[
        ("id", e.id.to_string()),
        ("state", state(e.state).to_owned()),
        ("sender", sender(&e.sender)),
        ("size", format!("{} ({} bytes)", size(e.size), e.size)),
        ("age", duration(e.age_secs)),
        ("next attempt", next(e)),
        ("hops", d.envelope.hops.to_string()),
    ]);
    out.push('\n');
    let mut t = Table::new(&["RECIPIENT", "STATE", "ATTEMPTS", "REMOTE", "LAST REPLY"]).right(2);
    for r in &d.envelope.recipients {
        let st = match r.state {
            RcptState::Pending => "pending",
            RcptState::Delivered => "delivered",
            RcptState::Failed => "failed",
        };
        t.row([
            r.address.clone(),
            st.to_owned(),
            r.attempts.to_string(),
            r.remote.clone().unwrap_or_else(|| "-".into()),
            r.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    out.push_str(&t.render());
    out.push_str("\nheaders:\n");
    for line in d.headers.lines() {
        out.push_str("  ");
        out.push_str(&output::clean(line.trim_end_matches('\r')));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, state: MessageState, rcpts: &[&str], error: Option<&str>) -> QueueEntry {
        QueueEntry {
            id: QueueId::parse(id).unwrap(),
            sender: String::new(),
            recipients: rcpts.iter().map(|r| r.to_string()).collect(),
            size: 4300,
            received: 1_000,
            age_secs: 3_700,
            state,
            next_attempt: Some(4_760),
            last_error: error.map(str::to_owned),
        }
    }

    #[test]
    fn the_queue_table() {
        let long = "451 4.4.0 MX lookup for far.example failed: no connections available, retry";
        let mut entries = vec![
            entry(
                "0000000000000a000001",
                MessageState::Deferred,
                &["a@far.example", "b@far.example"],
                Some(long),
            ),
            entry(
                "0000000000000b000002",
                MessageState::Held,
                &["c@x.org"],
                None,
            ),
        ];
        entries[1].next_attempt = None;
        assert_eq!(
            queue_table(&entries).render(),
            "ID                    SENDER  RCPTS             SIZE    AGE  STATE     NEXT   LAST ERROR\n\
             0000000000000a000001  <>      a@far.example +1  4.2K  1h01m  deferred  in 1m  \
             451 4.4.0 MX lookup for far.example failed: no connections …\n\
             0000000000000b000002  <>      c@x.org           4.2K  1h01m  held      -      -\n"
        );
    }

    #[test]
    fn durations_and_next_attempts() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(60), "1m");
        assert_eq!(duration(3_660), "1h01m");
        assert_eq!(duration(2 * 86_400 + 4 * 3600 + 59), "2d04h");
        let mut e = entry("0000000000000a000001", MessageState::Deferred, &[], None);
        e.next_attempt = Some(e.received + e.age_secs - 5);
        assert_eq!(next(&e), "now");
        e.next_attempt = None;
        assert_eq!(next(&e), "-");
        e.next_attempt = Some(e.received + e.age_secs + 90);
        assert_eq!(next(&e), "in 1m");
        e.state = MessageState::Active;
        assert_eq!(next(&e), "-");
    }

    #[test]
    fn ids_are_checked_before_sending() {
        assert_eq!(
            message_path("0123456789abcdef0123").unwrap(),
            "/api/queue/0123456789abcdef0123"
        );
        for bad in ["", "xyz", "../etc", "0123456789ABCDEF0123"] {
            assert_eq!(message_path(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn sizes_and_errors() {
        assert_eq!(size(0), "0");
        assert_eq!(size(980), "980");
        assert_eq!(size(4300), "4.2K");
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("abcdefgh", 5), "abcd…");
    }
}
