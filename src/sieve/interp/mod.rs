//! Running a compiled script against one message: tests, actions, implicit keep (RFC 5228 §2.10.2)
//! and the run-time limits.

mod eval;

use std::collections::HashSet;

use super::address;
use super::ast::*;
use super::date::{self, SieveTime};
use super::matching::{self, Budget, Exhausted};
use super::message::{Envelope, MessageView};
use super::variables::{self, Vars};
use super::Limits;

/// What delivery must do with the message. Mailbox names and addresses are final (variables
/// expanded); flags are single IMAP flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Deliver to the recipient's INBOX (explicit or implicit keep) with these flags.
    Keep { flags: Vec<String> },
    /// Deliver to `mailbox`; `create` asks for it to be created if missing (RFC 5490); `copy`
    /// records that it did not cancel the implicit keep (RFC 3894).
    FileInto {
        mailbox: String,
        flags: Vec<String>,
        create: bool,
        copy: bool,
    },
    /// Forward to `address` (through the queue, with SRS).
    Redirect { address: String, copy: bool },
    /// Refuse the message: `extended` is ereject (refuse at protocol level if possible).
    Reject { reason: String, extended: bool },
    /// The script discarded the message: nothing to deliver for it. Other actions (redirects,
    /// a later explicit keep) still apply; recorded so the mail log can say why.
    Discard,
    /// Send an RFC 5230 vacation reply if [`vacation_allowed`](super::vacation_allowed) and the
    /// response memory for (`handle`, sender) has expired after `days`.
    Vacation {
        /// The reply text (a MIME entity when `mime`).
        reason: String,
        /// Subject of the reply; delivery defaults to "Auto: " plus the original subject.
        subject: Option<String>,
        /// From address of the reply; delivery defaults to the recipient.
        from: Option<String>,
        /// The recipient's other addresses: no reply unless one of them (or the envelope
        /// recipient) is in To/Cc, and never a reply to them.
        addresses: Vec<String>,
        /// Days between two replies to the same sender; delivery applies its default and bounds.
        days: Option<u64>,
        /// `reason` is a MIME part with its own headers (RFC 5230 §4.4).
        mime: bool,
        /// Key of the response memory; delivery derives one from the arguments when absent.
        handle: Option<String>,
    },
}

/// The result of a successful run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Actions in execution order, duplicates collapsed; includes the implicit keep.
    pub actions: Vec<Action>,
    /// Whether the final Keep came from the implicit keep.
    pub implicit_keep: bool,
}

impl Outcome {
    /// What to do when a run fails: keep the message, unflagged.
    pub fn fallback() -> Outcome {
        Outcome {
            actions: vec![Action::Keep { flags: Vec::new() }],
            implicit_keep: true,
        }
    }
}

/// Why a run stopped; the caller delivers [`Outcome::fallback`] and logs this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// More actions than `Limits::max_actions`.
    #[error("script produced more than {0} actions")]
    TooManyActions(usize),
    /// More distinct redirect addresses than `Limits::max_redirects`.
    #[error("script redirects to more than {0} addresses")]
    TooManyRedirects(usize),
    /// The step counter passed `Limits::max_steps`.
    #[error("script exceeded its work limit of {0} steps")]
    TooMuchWork(u64),
    /// More variables than `Limits::max_variables`.
    #[error("script set more than {0} variables")]
    TooManyVariables(usize),
    /// A redirect address built from variables is not one plain address.
    #[error("invalid redirect address \"{0}\"")]
    InvalidRedirect(String),
    /// Actions that exclude each other (reject with keep, fileinto or vacation; two rejects or
    /// two vacations).
    #[error("conflicting actions: {0}")]
    Conflict(&'static str),
}

enum Flow {
    Next,
    Stop,
}

struct Run<'a> {
    script: &'a Script,
    msg: &'a MessageView,
    env: &'a Envelope,
    now: SieveTime,
    limits: &'a Limits,
    budget: Budget,
    vars: Vars,
    flags: Vec<String>,
    actions: Vec<Action>,
    cancel_keep: bool,
    redirected: HashSet<String>,
}

/// Runs `script` on one message. Pure: everything it needs comes in as arguments.
pub fn run(
    script: &Script,
    msg: &MessageView,
    env: &Envelope,
    now: SieveTime,
    limits: &Limits,
) -> Result<Outcome, RunError> {
    let mut r = Run {
        script,
        msg,
        env,
        now,
        limits,
        budget: Budget {
            left: limits.max_steps,
        },
        vars: Vars::default(),
        flags: Vec::new(),
        actions: Vec::new(),
        cancel_keep: false,
        redirected: HashSet::new(),
    };
    r.block(&script.commands)?;
    let implicit_keep =
        !r.cancel_keep && !r.actions.iter().any(|a| matches!(a, Action::Keep { .. }));
    if implicit_keep {
        let flags = r.flags.clone();
        r.push(Action::Keep { flags })?;
    }
    Ok(Outcome {
        actions: r.actions,
        implicit_keep,
    })
}

fn flag_list(items: impl IntoIterator<Item = impl AsRef<str>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        for f in item.as_ref().split_whitespace() {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(f)) {
                out.push(f.to_string());
            }
        }
    }
    out
}

fn merge_flags(into: &mut Vec<String>, more: &[String]) {
    for f in more {
        if !into.iter().any(|o| o.eq_ignore_ascii_case(f)) {
            into.push(f.clone());
        }
    }
}

impl Run<'_> {
    fn step(&mut self) -> Result<(), RunError> {
        self.budget
            .spend(1)
            .map_err(|Exhausted| RunError::TooMuchWork(self.limits.max_steps))
    }

    fn x(&self, s: &str) -> String {
        if self.script.has(Extension::Variables) {
            self.vars.expand(s, self.limits.max_variable_size)
        } else {
            s.to_string()
        }
    }

    fn xs(&self, l: &[String]) -> Vec<String> {
        l.iter().map(|s| self.x(s)).collect()
    }

    fn has_action(&self, f: impl Fn(&Action) -> bool) -> bool {
        self.actions.iter().any(f)
    }

    fn push(&mut self, a: Action) -> Result<(), RunError> {
        if self.actions.len() >= self.limits.max_actions {
            return Err(RunError::TooManyActions(self.limits.max_actions));
        }
        self.actions.push(a);
        Ok(())
    }

    fn no_reject(&self) -> Result<(), RunError> {
        if self.has_action(|a| matches!(a, Action::Reject { .. })) {
            return Err(RunError::Conflict(
                "reject cannot be combined with keep, fileinto or vacation",
            ));
        }
        Ok(())
    }

    fn block(&mut self, cmds: &[Command]) -> Result<Flow, RunError> {
        for c in cmds {
            if let Flow::Stop = self.command(c)? {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Next)
    }

    fn command(&mut self, c: &Command) -> Result<Flow, RunError> {
        self.step()?;
        match c {
            Command::If {
                branches,
                otherwise,
            } => {
                for (test, body) in branches {
                    if self.test(test)? {
                        return self.block(body);
                    }
                }
                if let Some(body) = otherwise {
                    return self.block(body);
                }
            }
            Command::Stop => return Ok(Flow::Stop),
            Command::Keep { flags } => {
                self.no_reject()?;
                let flags = self.resolve_flags(flags.as_deref());
                self.cancel_keep = true;
                let existing = self.actions.iter_mut().find_map(|a| match a {
                    Action::Keep { flags } => Some(flags),
                    _ => None,
                });
                match existing {
                    Some(f) => merge_flags(f, &flags),
                    None => self.push(Action::Keep { flags })?,
                }
            }
            Command::Discard => {
                self.cancel_keep = true;
                if !self.has_action(|a| matches!(a, Action::Discard)) {
                    self.push(Action::Discard)?;
                }
            }
            Command::Redirect { address, copy } => {
                let address = self.x(address);
                if address::check_redirect(&address).is_err() {
                    return Err(RunError::InvalidRedirect(address));
                }
                if !copy {
                    self.cancel_keep = true;
                }
                if self.redirected.insert(address.to_ascii_lowercase()) {
                    if self.redirected.len() > self.limits.max_redirects {
                        return Err(RunError::TooManyRedirects(self.limits.max_redirects));
                    }
                    self.push(Action::Redirect {
                        address,
                        copy: *copy,
                    })?;
                } else if !copy {
                    for a in &mut self.actions {
                        if let Action::Redirect { address: x, copy } = a {
                            if x.eq_ignore_ascii_case(&address) {
                                *copy = false;
                            }
                        }
                    }
                }
            }
            Command::FileInto {
                mailbox,
                flags,
                copy,
                create,
            } => {
                self.no_reject()?;
                let mailbox = self.x(mailbox);
                let flags = self.resolve_flags(flags.as_deref());
                if !copy {
                    self.cancel_keep = true;
                }
                let existing = self
                    .actions
                    .iter_mut()
                    .find(|a| matches!(a, Action::FileInto { mailbox: m, .. } if *m == mailbox));
                match existing {
                    Some(Action::FileInto {
                        flags: f,
                        create: cr,
                        copy: cp,
                        ..
                    }) => {
                        merge_flags(f, &flags);
                        *cr |= *create;
                        *cp &= *copy;
                    }
                    _ => self.push(Action::FileInto {
                        mailbox,
                        flags,
                        create: *create,
                        copy: *copy,
                    })?,
                }
            }
            Command::Reject { reason, extended } => {
                if self.has_action(|a| {
                    matches!(
                        a,
                        Action::Reject { .. }
                            | Action::Vacation { .. }
                            | Action::Keep { .. }
                            | Action::FileInto { .. }
                    )
                }) {
                    return Err(RunError::Conflict(
                        "reject cannot be combined with keep, fileinto, vacation or another reject",
                    ));
                }
                self.cancel_keep = true;
                let reason = self.x(reason);
                self.push(Action::Reject {
                    reason,
                    extended: *extended,
                })?;
            }
            Command::Flags { op, var, flags } => {
                let given = flag_list(self.xs(flags));
                let current = match var {
                    None => self.flags.clone(),
                    Some(v) => flag_list([self.vars.named.get(v).cloned().unwrap_or_default()]),
                };
                let new = match op {
                    FlagOp::Set => given,
                    FlagOp::Add => {
                        let mut c = current;
                        merge_flags(&mut c, &given);
                        c
                    }
                    FlagOp::Remove => current
                        .into_iter()
                        .filter(|f| !given.iter().any(|g| g.eq_ignore_ascii_case(f)))
                        .collect(),
                };
                match var {
                    None => self.flags = new,
                    Some(v) => self.set_var(v, new.join(" "))?,
                }
            }
            Command::Set {
                name,
                value,
                modifiers,
            } => {
                let v = variables::apply_modifiers(self.x(value), modifiers);
                self.set_var(name, v)?;
            }
            Command::Vacation(v) => {
                self.no_reject()?;
                if self.has_action(|a| matches!(a, Action::Vacation { .. })) {
                    return Err(RunError::Conflict("only one vacation per script run"));
                }
                let a = Action::Vacation {
                    reason: self.x(&v.reason),
                    subject: v.subject.as_deref().map(|s| self.x(s)),
                    from: v.from.as_deref().map(|s| self.x(s)),
                    addresses: self.xs(&v.addresses),
                    days: v.days,
                    mime: v.mime,
                    handle: v.handle.as_deref().map(|s| self.x(s)),
                };
                self.push(a)?;
            }
        }
        Ok(Flow::Next)
    }

    fn set_var(&mut self, name: &str, value: String) -> Result<(), RunError> {
        if !self.vars.named.contains_key(name) && self.vars.named.len() >= self.limits.max_variables
        {
            return Err(RunError::TooManyVariables(self.limits.max_variables));
        }
        let value = variables::truncate(value, self.limits.max_variable_size);
        self.vars.named.insert(name.to_string(), value);
        Ok(())
    }

    /// `:flags` if given, else the internal flags variable (RFC 5232 §5).
    fn resolve_flags(&self, given: Option<&[String]>) -> Vec<String> {
        match given {
            Some(l) => flag_list(self.xs(l)),
            None => self.flags.clone(),
        }
    }
}
