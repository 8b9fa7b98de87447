//! Delivery status notifications (RFC 3464): the `multipart/report` messages the queue sends
//! back to a sender when recipients fail, are delayed, or (on request) succeed; plus the header
//! helpers the queue needs (hop counting, end of headers, RFC 5322 dates).
//!
//! Pure functions: the scheduler decides *when* a DSN is owed and enqueues what [`build`]
//! returns. This module must never do I/O or read the clock (the caller passes `now`).
//!
//! Security note: everything echoed into a DSN — addresses, remote replies, ENVID — was
//! validated or sanitised before (no CR/LF can reach a header). The original message is
//! returned verbatim inside its own MIME part, never spliced into our headers.

use std::fmt::Write as _;

use super::envelope::{Envelope, QueueId, Recipient};
use super::wire::status_of;

/// Which report this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DsnKind {
    /// Recipients failed permanently or expired.
    Failure,
    /// Still trying (the delay warning).
    Delay,
    /// Delivered or relayed, on `NOTIFY=SUCCESS`.
    Success,
}

/// The per-recipient `Action:` (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Failed,
    Delayed,
    Delivered,
    Relayed,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }
}

/// One recipient in a report.
pub(crate) struct Entry<'a> {
    pub rcpt: &'a Recipient,
    pub action: Action,
    /// Overrides the status derived from the last reply (expiry uses 4.4.7).
    pub status: Option<&'a str>,
}

/// Everything [`build`] needs besides the entries.
pub(crate) struct Report<'a> {
    pub kind: DsnKind,
    pub id: &'a QueueId,
    pub reporting_mta: &'a str,
    pub envelope: &'a Envelope,
    pub now_secs: u64,
    /// For delay reports: when the queue gives up.
    pub retry_until_secs: Option<u64>,
    /// The original message, or its headers.
    pub original: &'a [u8],
    /// `original` is the whole message (message/rfc822) rather than its headers.
    pub original_is_whole: bool,
    /// A unique token for the boundary and Message-ID.
    pub token: &'a str,
}

/// Builds the DSN message (CRLF line ends, ready to enqueue with the null sender).
pub(crate) fn build(r: &Report<'_>, entries: &[Entry<'_>]) -> Vec<u8> {
    let boundary = format!("=_mailnode_{}_{}", r.id, r.token);
    let (subject, intro) = match r.kind {
        DsnKind::Failure => (
            "Undelivered Mail Returned to Sender",
            "Your message could not be delivered to one or more recipients.\r\n\
             The details are below; this report was generated automatically.",
        ),
        DsnKind::Delay => (
            "Delayed Mail (still being retried)",
            "Your message has not been delivered yet to one or more recipients.\r\n\
             Delivery is still being retried; you need not send it again.",
        ),
        DsnKind::Success => (
            "Successful Mail Delivery Report",
            "Your message was delivered to the recipients listed below.",
        ),
    };
    let mut m = String::new();
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{mta}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}.{token}@{mta}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated delivery status notification.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         This is the mail system at {mta}.\r\n\
         \r\n\
         {intro}\r\n\
         \r\n",
        mta = r.reporting_mta,
        to = r.envelope.sender,
        date = rfc5322_date(r.now_secs),
        id = r.id,
        token = r.token,
    );
    for e in entries {
        let _ = write!(m, "<{}>: {}", e.rcpt.address, e.action.as_str());
        if let Some(err) = &e.rcpt.last_error {
            let _ = write!(m, ": {err}");
        }
        m.push_str("\r\n");
    }
    if let Some(until) = r.retry_until_secs {
        let _ = write!(
            m,
            "\r\nDelivery will be retried until {}.\r\n",
            rfc5322_date(until)
        );
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {mta}\r\n\
         X-Mailnode-Queue-ID: {id}\r\n",
        mta = r.reporting_mta,
        id = r.id
    );
    if let Some(envid) = &r.envelope.envid {
        let _ = write!(m, "Original-Envelope-Id: {envid}\r\n");
    }
    let _ = write!(
        m,
        "Arrival-Date: {}\r\n",
        rfc5322_date(r.envelope.received_ms / 1000)
    );
    for e in entries {
        let rc = e.rcpt;
        let _ = write!(m, "\r\nFinal-Recipient: rfc822; {}\r\n", rc.address);
        if let Some(orcpt) = &rc.orcpt {
            let orcpt = match orcpt.split_once(';') {
                Some((t, a)) => format!("{}; {}", t.trim(), a.trim()),
                None => format!("rfc822; {orcpt}"),
            };
            let _ = write!(m, "Original-Recipient: {orcpt}\r\n");
        }
        let status = match (e.status, &rc.last_error) {
            (Some(s), _) => s.to_string(),
            (None, Some(err)) => status_of(err),
            (None, None) => match e.action {
                Action::Failed => "5.0.0".to_string(),
                Action::Delayed => "4.0.0".to_string(),
                _ => "2.0.0".to_string(),
            },
        };
        let _ = write!(m, "Action: {}\r\nStatus: {status}\r\n", e.action.as_str());
        if let Some(remote) = &rc.remote {
            let _ = write!(m, "Remote-MTA: dns; {remote}\r\n");
        }
        if let Some(err) = &rc.last_error {
            if err.len() > 3 && err.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
                let _ = write!(m, "Diagnostic-Code: smtp; {err}\r\n");
            }
        }
        if let Some(at) = rc.last_attempt_ms {
            let _ = write!(m, "Last-Attempt-Date: {}\r\n", rfc5322_date(at / 1000));
        }
        if let (Action::Delayed, Some(until)) = (e.action, r.retry_until_secs) {
            let _ = write!(m, "Will-Retry-Until: {}\r\n", rfc5322_date(until));
        }
    }
    let part_type = if r.original_is_whole {
        "message/rfc822"
    } else {
        "text/rfc822-headers"
    };
    let cte = if r.original.is_ascii() {
        "7bit"
    } else {
        "8bit"
    };
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Type: {part_type}\r\n\
         Content-Transfer-Encoding: {cte}\r\n\
         \r\n"
    );
    let mut out = m.into_bytes();
    out.extend_from_slice(r.original);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// Offset just past the blank line that ends the header section, if present.
pub(crate) fn header_end(msg: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut line_start = 0;
    while i < msg.len() {
        if msg[i] == b'\n' {
            let line = &msg[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
        i += 1;
    }
    None
}

/// Number of `Received:` header fields in the header section (the hop count, RFC 5321 §6.3).
pub(crate) fn count_received(msg: &[u8]) -> u32 {
    let headers = &msg[..header_end(msg).unwrap_or(msg.len())];
    headers
        .split(|&b| b == b'\n')
        .filter(|l| l.len() >= 9 && l[..9].eq_ignore_ascii_case(b"received:"))
        .count() as u32
}

/// An RFC 5322 date in UTC (`Tue, 14 Nov 2023 22:13:20 +0000`), formatted like the SMTP
/// server's `Date:` and `Received:` fields.
pub(crate) fn rfc5322_date(unix_secs: u64) -> String {
    crate::smtp::rfc5322_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs))
}

#[cfg(test)]
mod tests {
    use super::super::envelope::{Notify, RcptState};
    use super::*;

    #[test]
    fn headers_and_hops() {
        let m = b"Received: a\r\nreceived: b\r\n c\r\nX-Received: no\r\n\r\nReceived: body\r\n";
        assert_eq!(count_received(m), 2);
        assert_eq!(header_end(m), Some(48));
        assert_eq!(header_end(b"A: b\n\nbody"), Some(6));
        assert_eq!(header_end(b"A: b\r\n"), None);
        assert_eq!(count_received(b"Received: x"), 1);
    }

    #[test]
    fn failure_report_structure() {
        let mut env = Envelope::new("alice@example.org");
        env.envid = Some("env-1".into());
        env.received_ms = 1_700_000_000_000;
        let mut r = Recipient::new("bob@remote.test");
        r.state = RcptState::Failed;
        r.last_error = Some("550 5.1.1 <bob@remote.test>: no such user".into());
        r.remote = Some("mx.remote.test".into());
        r.orcpt = Some("rfc822;bob@remote.test".into());
        r.notify = Some(Notify {
            success: false,
            failure: true,
            delay: false,
        });
        r.last_attempt_ms = Some(1_700_000_100_000);
        let id = QueueId::generate(5);
        let report = Report {
            kind: DsnKind::Failure,
            id: &id,
            reporting_mta: "mx1.example.org",
            envelope: &env,
            now_secs: 1_700_000_200,
            retry_until_secs: None,
            original: b"Subject: hi\r\n\r\nhello\r\n",
            original_is_whole: true,
            token: "f1",
        };
        let out = String::from_utf8(build(
            &report,
            &[Entry {
                rcpt: &r,
                action: Action::Failed,
                status: None,
            }],
        ))
        .unwrap();
        for want in [
            "To: <alice@example.org>\r\n",
            "Content-Type: multipart/report; report-type=delivery-status;",
            "Reporting-MTA: dns; mx1.example.org\r\n",
            "Original-Envelope-Id: env-1\r\n",
            "Final-Recipient: rfc822; bob@remote.test\r\n",
            "Original-Recipient: rfc822; bob@remote.test\r\n",
            "Action: failed\r\nStatus: 5.1.1\r\n",
            "Remote-MTA: dns; mx.remote.test\r\n",
            "Diagnostic-Code: smtp; 550 5.1.1",
            "Content-Type: message/rfc822\r\n",
            "Subject: hi\r\n\r\nhello\r\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
        assert!(out.ends_with("--\r\n"));
        assert!(!out.contains("\n\n") && !out.replace("\r\n", "").contains('\n'));
    }
}
