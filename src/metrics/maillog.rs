//! The mail log: one line per SMTP/LMTP transaction, per refused MAIL or RCPT, and per
//! recipient delivery attempt, with fixed field names (docs/LOGS.md), under the tracing target
//! `maillog` — what the reference deployment parsed out of Postfix's log (Spamity). Each line
//! also counts its event in the metrics, so the two never disagree.
//!
//! Field values are single tokens (ids, addresses, codes, numbers) except `reply` and `helo`,
//! which are quoted with escapes (client-supplied or free text); in the JSON format every field
//! is a JSON string or number. Adding a field is compatible; renaming or removing one is not.

use std::fmt;

use crate::queue::{DeliveryOutcome, Destination, Envelope, QueueId, RcptState};
use crate::smtp::Mode;

/// The tracing target of every mail log line.
pub const TARGET: &str = "maillog";

fn service(mode: Mode) -> &'static str {
    match mode {
        Mode::Mx => "mx",
        Mode::Submission => "submission",
        Mode::Lmtp => "lmtp",
    }
}

/// `-` for an absent value, so every line has every field.
struct Opt<'a>(Option<&'a str>);

impl fmt::Display for Opt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(s) if !s.is_empty() => Token(s).fmt(f),
            _ => f.write_str("-"),
        }
    }
}

/// The sender as logged: `<>` for the null sender.
struct Sender<'a>(&'a str);

impl fmt::Display for Sender<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("<>")
        } else {
            Token(self.0).fmt(f)
        }
    }
}

/// Client-supplied text as one token: anything but visible ASCII (and `"`, `\\`) is written
/// as `\xNN` / `\u{N}`, so a value never splits a line into more fields.
struct Token<'a>(&'a str);

impl fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '"' | '\\' => write!(f, "\\x{:02x}", c as u32)?,
                c if c.is_ascii_graphic() => write!(f, "{c}")?,
                c if c.is_ascii() => write!(f, "\\x{:02x}", c as u32)?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
        }
        Ok(())
    }
}

/// What an SMTP/LMTP session knows about its client, for the log.
pub struct Client<'a> {
    pub mode: Mode,
    /// The session id (also in the session's tracing span).
    pub session: u64,
    pub ip: std::net::IpAddr,
    pub helo: &'a str,
    /// TLS version and cipher, when encrypted.
    pub tls: Option<&'a str>,
    /// The authenticated user (submission).
    pub auth: Option<&'a str>,
}

/// One finished message (content transferred): accepted, deferred or rejected.
pub struct Transaction<'a> {
    /// The queue id (SMTP) or the sender's delivery key (LMTP `XDELIVERY`), when there is one.
    pub queue_id: Option<&'a str>,
    pub sender: &'a str,
    pub recipients: &'a [&'a str],
    pub size: u64,
    /// The reply code and text (LMTP: the first recipient's).
    pub code: u16,
    pub reply: &'a str,
    /// Why it was refused (a fixed reason, see docs/LOGS.md); `-` when accepted.
    pub policy: Option<&'static str>,
}

/// Logs and counts one finished message.
pub fn transaction(c: &Client<'_>, t: &Transaction<'_>) {
    super::smtp_transaction(c.mode, t.code, t.size);
    if t.code / 100 != 2 {
        let reason = t.policy.unwrap_or("other");
        super::smtp_reject(c.mode, super::Stage::Data, t.code, reason);
    }
    let result = match t.code / 100 {
        2 => "accepted",
        4 => "deferred",
        _ => "rejected",
    };
    tracing::info!(
        target: TARGET,
        event = %"smtp",
        service = %service(c.mode),
        session = c.session,
        queue_id = %Opt(t.queue_id),
        client = %c.ip,
        helo = c.helo,
        sender = %Sender(t.sender),
        recipients = %Token(&t.recipients.join(",")),
        nrcpt = t.recipients.len(),
        size = t.size,
        tls = %Opt(c.tls.map(|s| s.split(' ').next().unwrap_or(s))),
        auth = %Opt(c.auth),
        result = %result,
        code = t.code,
        reply = t.reply,
        policy = %Opt(t.policy),
        "smtp transaction"
    );
}

/// Logs and counts a refused MAIL (`recipient` `None`) or RCPT.
pub fn reject(
    c: &Client<'_>,
    sender: Option<&str>,
    recipient: Option<&str>,
    code: u16,
    reply: &str,
    policy: &'static str,
) {
    let stage = if recipient.is_some() {
        super::Stage::Rcpt
    } else {
        super::Stage::Mail
    };
    super::smtp_reject(c.mode, stage, code, policy);
    tracing::info!(
        target: TARGET,
        event = %"reject",
        service = %service(c.mode),
        session = c.session,
        stage = %if recipient.is_some() { "rcpt" } else { "mail" },
        client = %c.ip,
        helo = c.helo,
        sender = %Opt(sender.map(|s| if s.is_empty() { "<>" } else { s })),
        recipient = %Opt(recipient),
        tls = %Opt(c.tls.map(|s| s.split(' ').next().unwrap_or(s))),
        auth = %Opt(c.auth),
        code,
        reply,
        policy = %policy,
        "smtp reject"
    );
}

/// Logs and counts the results of one delivery transaction of the queue: the recipients of
/// `env` at `chunk`, after their states were updated from `outcome`.
pub fn deliveries(
    id: &QueueId,
    env: &Envelope,
    chunk: &[usize],
    dest: &Destination,
    outcome: &DeliveryOutcome,
    now_ms: u64,
) {
    let transport = match dest {
        Destination::Lmtp(_) => "lmtp",
        Destination::Smtp(_) => "smtp",
    };
    let client = env
        .client
        .as_ref()
        .and_then(|c| c.addr)
        .map(|a| a.to_string());
    for (k, &i) in chunk.iter().enumerate() {
        let Some(r) = env.recipients.get(i) else {
            continue;
        };
        let result = match r.state {
            RcptState::Delivered => "delivered",
            RcptState::Failed => "bounced",
            _ => "deferred",
        };
        super::queue_delivery(transport, result);
        let res = outcome.results.get(k);
        let detail = res
            .map(|r| r.detail.as_str())
            .or(r.last_error.as_deref())
            .unwrap_or("");
        let retry_in =
            (result == "deferred").then(|| r.next_attempt_ms.saturating_sub(now_ms) / 1000);
        tracing::info!(
            target: TARGET,
            event = %"delivery",
            queue_id = %id,
            sender = %Sender(&env.sender),
            recipient = %Token(&r.address),
            orcpt = %Opt(r.orcpt.as_deref()),
            size = env.size,
            client = %Opt(client.as_deref()),
            relay = %dest,
            remote = %Opt(r.remote.as_deref()),
            // A success does not count as an attempt in the envelope (only failures back off).
            attempts = r.attempts + u32::from(result == "delivered"),
            delay = now_ms.saturating_sub(env.received_ms) / 1000,
            result = %result,
            reply = detail,
            retry_in = retry_in.unwrap_or(0),
            "delivery"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(json: bool, f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let w = buf.clone();
        let builder = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false);
        if json {
            tracing::subscriber::with_default(builder.json().finish(), f);
        } else {
            tracing::subscriber::with_default(builder.finish(), f);
        }
        let out = buf.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    fn client() -> Client<'static> {
        Client {
            mode: Mode::Mx,
            session: 7,
            ip: "192.0.2.7".parse().unwrap(),
            helo: "mx \"evil\" name",
            tls: Some("TLSv1.3 TLS13_AES_256_GCM_SHA384"),
            auth: None,
        }
    }

    #[test]
    fn a_transaction_is_one_line_with_every_field() {
        let t = Transaction {
            queue_id: Some("0661658439903a000000"),
            sender: "",
            recipients: &["alice@example.org", "\"a b\"@example.org"],
            size: 401,
            code: 250,
            reply: "250 2.0.0 OK queued as 0661658439903a000000",
            policy: None,
        };
        let text = logged(false, || transaction(&client(), &t));
        assert_eq!(text.lines().count(), 1, "{text}");
        for field in [
            "maillog: smtp transaction",
            "event=smtp",
            "service=mx",
            "session=7",
            "queue_id=0661658439903a000000",
            "client=192.0.2.7",
            r#"helo="mx \"evil\" name""#,
            "sender=<>",
            r"recipients=alice@example.org,\x22a\x20b\x22@example.org",
            "nrcpt=2",
            "size=401",
            "tls=TLSv1.3",
            "auth=-",
            "result=accepted",
            "code=250",
            r#"reply="250 2.0.0 OK queued as 0661658439903a000000""#,
            "policy=-",
        ] {
            assert!(text.contains(field), "{field} not in {text}");
        }
        let json = logged(true, || transaction(&client(), &t));
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(v["target"], "maillog");
        assert_eq!(v["fields"]["event"], "smtp");
        assert_eq!(v["fields"]["helo"], "mx \"evil\" name");
        assert_eq!(v["fields"]["size"], 401);
        assert_eq!(v["fields"]["policy"], "-");
    }

    #[test]
    fn a_reject_names_the_policy() {
        let text = logged(false, || {
            reject(
                &client(),
                Some("bob@remote.example"),
                Some("nobody@example.org"),
                550,
                "550 5.1.1 <nobody@example.org>: user unknown",
                "unknown_user",
            )
        });
        for field in [
            "event=reject",
            "stage=rcpt",
            "sender=bob@remote.example",
            "recipient=nobody@example.org",
            "code=550",
            "policy=unknown_user",
        ] {
            assert!(text.contains(field), "{field} not in {text}");
        }
    }
}
