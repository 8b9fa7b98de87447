//! Table tests: compile errors with line:column, the RFCs' examples, actions, implicit keep and
//! limits.

mod compile_errors;
mod rfc_examples;
mod semantics;

use super::*;

/// 2026-11-29T08:00:00Z seen in +0100.
pub(super) const NOW: SieveTime = SieveTime {
    unix: 1_795_939_200,
    offset_minutes: 60,
};

pub(super) fn script(src: &str) -> Script {
    match compile(src, &Limits::default()) {
        Ok(s) => s,
        Err(e) => panic!("script does not compile: {e}\n{src}"),
    }
}

/// A message from header lines (`\n`-separated) and a body, with CRLF line ends.
pub(super) fn message(headers: &str, body: &str) -> MessageView {
    let raw = format!(
        "{}\r\n\r\n{}",
        headers.trim().replace('\n', "\r\n"),
        body.replace('\n', "\r\n")
    );
    MessageView::from_raw(raw.as_bytes())
}

pub(super) fn envelope(from: &str, to: &str) -> Envelope {
    Envelope {
        from: from.into(),
        to: to.into(),
        ..Default::default()
    }
}

pub(super) fn run_full(src: &str, msg: &MessageView, env: &Envelope) -> Result<Outcome, RunError> {
    run(&script(src), msg, env, NOW, &Limits::default())
}

pub(super) fn actions(src: &str, msg: &MessageView, env: &Envelope) -> Vec<Action> {
    match run_full(src, msg, env) {
        Ok(o) => o.actions,
        Err(e) => panic!("run failed: {e}\n{src}"),
    }
}

pub(super) fn keep() -> Action {
    Action::Keep { flags: Vec::new() }
}

pub(super) fn fileinto(mailbox: &str) -> Action {
    Action::FileInto {
        mailbox: mailbox.into(),
        flags: Vec::new(),
        create: false,
        copy: false,
    }
}

pub(super) fn redirect(address: &str) -> Action {
    Action::Redirect {
        address: address.into(),
        copy: false,
    }
}

pub(super) fn strings(l: &[&str]) -> Vec<String> {
    l.iter().map(|s| s.to_string()).collect()
}
