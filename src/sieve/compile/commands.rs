//! Commands: the control and action commands of RFC 5228 and its extensions, argument by
//! argument.

use super::*;

impl Compiler {
    pub(super) fn action(&self, cmd: &RawCommand) -> Result<Command, CompileError> {
        if cmd.block.is_some() {
            return Err(CompileError::at(
                cmd.pos,
                format!("{} takes no block", cmd.name),
            ));
        }
        if let Some(t) = cmd.tests.first() {
            return Err(CompileError::at(
                t.pos,
                format!("{} takes no test", cmd.name),
            ));
        }
        let name = cmd.name.as_str();
        let at = cmd.pos;
        let raw = &cmd.args;
        Ok(match name {
            "stop" => {
                self.args(name, at, raw, &[], common_param)?
                    .arity(0, "stop;")?;
                Command::Stop
            }
            "discard" => {
                self.args(name, at, raw, &[], common_param)?
                    .arity(0, "discard;")?;
                Command::Discard
            }
            "keep" => {
                let mut a = self.args(name, at, raw, &[&["flags"]], |_| Param::List)?;
                a.arity(0, "keep [:flags <list-of-flags>];")?;
                let flags = self.flags_tag(&mut a)?;
                Command::Keep { flags }
            }
            "redirect" => {
                let mut a = self.args(name, at, raw, &[&["copy"]], common_param)?;
                a.arity(1, "redirect [:copy] <address: string>;")?;
                let copy = self.flag_tag(&mut a, "copy", Extension::Copy)?;
                let address = self.string(&a, 0)?;
                if !self.has_vars() {
                    crate::sieve::address::check_redirect(&address)
                        .map_err(|m| CompileError::at(a.positional[0].1, m))?;
                }
                Command::Redirect { address, copy }
            }
            "fileinto" => {
                self.need(Extension::FileInto, at, "fileinto")?;
                let mut a = self.args(name, at, raw, &[&["copy", "create", "flags"]], |t| {
                    if t == "flags" {
                        Param::List
                    } else {
                        Param::None
                    }
                })?;
                a.arity(
                    1,
                    "fileinto [:copy] [:create] [:flags <list>] <mailbox: string>;",
                )?;
                let copy = self.flag_tag(&mut a, "copy", Extension::Copy)?;
                let create = self.flag_tag(&mut a, "create", Extension::Mailbox)?;
                let flags = self.flags_tag(&mut a)?;
                let mailbox = self.string(&a, 0)?;
                Command::FileInto {
                    mailbox,
                    flags,
                    copy,
                    create,
                }
            }
            "reject" | "ereject" => {
                let ext = if name == "reject" {
                    Extension::Reject
                } else {
                    Extension::Ereject
                };
                self.need(ext, at, name)?;
                let a = self.args(name, at, raw, &[], common_param)?;
                a.arity(1, &format!("{name} <reason: string>;"))?;
                Command::Reject {
                    reason: self.string(&a, 0)?,
                    extended: name == "ereject",
                }
            }
            "setflag" | "addflag" | "removeflag" => {
                self.need(Extension::Imap4Flags, at, name)?;
                let a = self.args(name, at, raw, &[], common_param)?;
                let op = match name {
                    "setflag" => FlagOp::Set,
                    "addflag" => FlagOp::Add,
                    _ => FlagOp::Remove,
                };
                let (var, flags) = match a.positional.len() {
                    1 => (None, self.list(&a, 0)?),
                    2 => {
                        self.need(Extension::Variables, a.positional[0].1, "a flag variable")?;
                        (Some(self.var_name(&a, 0)?), self.list(&a, 1)?)
                    }
                    _ => {
                        return Err(a.usage(&format!(
                            "{name} [<variablename: string>] <list-of-flags: string-list>;"
                        )))
                    }
                };
                Command::Flags { op, var, flags }
            }
            "set" => {
                self.need(Extension::Variables, at, "set")?;
                const MODS: &[&str] = &[
                    "lower",
                    "upper",
                    "lowerfirst",
                    "upperfirst",
                    "quotewildcard",
                    "length",
                ];
                let a = self.args(name, at, raw, &[MODS], |_| Param::None)?;
                a.arity(2, "set [modifiers] <name: string> <value: string>;")?;
                let mut modifiers: Vec<Modifier> = a
                    .tags
                    .iter()
                    .map(|(t, _, _)| match t.as_str() {
                        "lower" => Modifier::Lower,
                        "upper" => Modifier::Upper,
                        "lowerfirst" => Modifier::LowerFirst,
                        "upperfirst" => Modifier::UpperFirst,
                        "quotewildcard" => Modifier::QuoteWildcard,
                        _ => Modifier::Length,
                    })
                    .collect();
                modifiers.sort_by_key(|m| std::cmp::Reverse(m.precedence()));
                if modifiers
                    .windows(2)
                    .any(|w| w[0].precedence() == w[1].precedence())
                {
                    return Err(CompileError::at(
                        at,
                        "set: two modifiers of the same precedence (e.g. :lower and :upper)",
                    ));
                }
                Command::Set {
                    name: self.var_name(&a, 0)?,
                    value: self.string(&a, 1)?,
                    modifiers,
                }
            }
            "vacation" => {
                self.need(Extension::Vacation, at, "vacation")?;
                let mut a = self.args(
                    name,
                    at,
                    raw,
                    &[&["days", "subject", "from", "addresses", "mime", "handle"]],
                    |t| match t {
                        "days" => Param::Num,
                        "addresses" => Param::List,
                        "mime" => Param::None,
                        _ => Param::Str,
                    },
                )?;
                a.arity(1, "vacation [:days n] [:subject s] [:from s] [:addresses list] [:mime] [:handle s] <reason: string>;")?;
                let days = match a.take("days") {
                    Some((Some(Arg::Number(n)), _)) => Some(n),
                    _ => None,
                };
                let subject = self.str_tag(&mut a, "subject")?;
                let from = self.str_tag(&mut a, "from")?;
                let handle = self.str_tag(&mut a, "handle")?;
                let addresses = match a.take("addresses") {
                    Some((Some(v), p)) => self.to_list(v, p)?,
                    _ => Vec::new(),
                };
                let mime = a.take("mime").is_some();
                Command::Vacation(VacationArgs {
                    days,
                    subject,
                    from,
                    addresses,
                    mime,
                    handle,
                    reason: self.string(&a, 0)?,
                })
            }
            other => return Err(CompileError::at(at, format!("unknown command `{other}`"))),
        })
    }
}
