//! From the generic tree to the checked [`Script`]: `require`, each command's and test's
//! arguments, and which extensions they need.

use std::collections::BTreeSet;

mod commands;
mod conditions;

use super::ast::*;
use super::parser::{Arg, RawCommand, RawTest};
use super::{variables, CompileError, Pos};

/// What a tagged argument takes after it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Param {
    None,
    Str,
    Num,
    List,
}

/// Tagged and positional arguments of one command or test, split and checked.
struct Args {
    name: String,
    at: Pos,
    tags: Vec<(String, Option<Arg>, Pos)>,
    positional: Vec<(Arg, Pos)>,
}

struct Compiler {
    required: BTreeSet<Extension>,
}

pub(crate) fn compile(raw: &[RawCommand]) -> Result<Script, CompileError> {
    let mut c = Compiler {
        required: BTreeSet::new(),
    };
    let mut start = 0;
    while let Some(cmd) = raw.get(start).filter(|c| c.name == "require") {
        c.require(cmd)?;
        start += 1;
    }
    let commands = c.block(&raw[start..])?;
    Ok(Script {
        required: c.required,
        commands,
    })
}

const MATCH_TAGS: &[&str] = &["is", "contains", "matches", "count", "value", "comparator"];
const ADDR_TAGS: &[&str] = &["all", "localpart", "domain", "user", "detail"];
const INDEX_TAGS: &[&str] = &["index", "last"];

fn common_param(tag: &str) -> Param {
    match tag {
        "count" | "value" | "comparator" => Param::Str,
        "index" => Param::Num,
        _ => Param::None,
    }
}

impl Compiler {
    fn need(&self, ext: Extension, at: Pos, what: &str) -> Result<(), CompileError> {
        if self.required.contains(&ext) {
            Ok(())
        } else {
            Err(CompileError::at(
                at,
                format!(
                    "{what} needs the \"{}\" extension: add require \"{}\";",
                    ext.name(),
                    ext.name()
                ),
            ))
        }
    }

    /// A string literal as the script means it: encoded-character decoded when required.
    fn lit(&self, s: String, at: Pos) -> Result<String, CompileError> {
        if self.required.contains(&Extension::EncodedCharacter) {
            variables::decode_encoded_characters(&s).map_err(|m| CompileError::at(at, m))
        } else {
            Ok(s)
        }
    }

    fn require(&mut self, cmd: &RawCommand) -> Result<(), CompileError> {
        if cmd.block.is_some() || !cmd.tests.is_empty() || cmd.args.len() != 1 {
            return Err(CompileError::at(
                cmd.pos,
                "usage: require <capabilities: string-list>;",
            ));
        }
        let (arg, at) = &cmd.args[0];
        let names = match arg {
            Arg::Str(s) => vec![s.clone()],
            Arg::List(l) => l.clone(),
            _ => {
                return Err(CompileError::at(
                    *at,
                    "require takes a string or a string list",
                ))
            }
        };
        for name in names {
            match Extension::from_name(&name) {
                Some(e) => {
                    self.required.insert(e);
                }
                // The two mandatory comparators need no require, but naming them is allowed.
                None if name == "comparator-i;octet" || name == "comparator-i;ascii-casemap" => {}
                None if name.starts_with("comparator-") => {
                    return Err(CompileError::at(
                        *at,
                        format!("unknown comparator \"{name}\""),
                    ))
                }
                None => {
                    return Err(CompileError::at(
                        *at,
                        format!("unsupported extension \"{name}\""),
                    ))
                }
            }
        }
        Ok(())
    }

    fn block(&self, raw: &[RawCommand]) -> Result<Vec<Command>, CompileError> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            let cmd = &raw[i];
            i += 1;
            match cmd.name.as_str() {
                "if" => {
                    let mut branches = vec![self.branch(cmd)?];
                    let mut otherwise = None;
                    while let Some(next) = raw.get(i) {
                        match next.name.as_str() {
                            "elsif" => branches.push(self.branch(next)?),
                            "else" => {
                                if !next.args.is_empty() || !next.tests.is_empty() {
                                    return Err(CompileError::at(
                                        next.pos,
                                        "else takes no arguments or tests",
                                    ));
                                }
                                let Some(b) = &next.block else {
                                    return Err(CompileError::at(
                                        next.pos,
                                        "else needs a block `{ ... }`",
                                    ));
                                };
                                otherwise = Some(self.block(b)?);
                                i += 1;
                                break;
                            }
                            _ => break,
                        }
                        i += 1;
                    }
                    out.push(Command::If {
                        branches,
                        otherwise,
                    });
                }
                "elsif" | "else" => {
                    return Err(CompileError::at(
                        cmd.pos,
                        format!("{} without a preceding if", cmd.name),
                    ))
                }
                "require" => {
                    return Err(CompileError::at(
                        cmd.pos,
                        "require must come before any other command",
                    ))
                }
                _ => out.push(self.action(cmd)?),
            }
        }
        Ok(out)
    }

    fn branch(&self, cmd: &RawCommand) -> Result<(Test, Vec<Command>), CompileError> {
        if !cmd.args.is_empty() {
            return Err(CompileError::at(
                cmd.args[0].1,
                format!("{} takes a test, not arguments", cmd.name),
            ));
        }
        let [test] = cmd.tests.as_slice() else {
            return Err(CompileError::at(
                cmd.pos,
                format!("{} takes exactly one test", cmd.name),
            ));
        };
        let Some(b) = &cmd.block else {
            return Err(CompileError::at(
                cmd.pos,
                format!("{} needs a block `{{ ... }}`", cmd.name),
            ));
        };
        Ok((self.test(test)?, self.block(b)?))
    }

    fn args(
        &self,
        name: &str,
        at: Pos,
        raw: &[(Arg, Pos)],
        allowed: &[&[&str]],
        param: impl Fn(&str) -> Param,
    ) -> Result<Args, CompileError> {
        let mut a = Args {
            name: name.to_string(),
            at,
            tags: Vec::new(),
            positional: Vec::new(),
        };
        let mut it = raw.iter().peekable();
        while let Some((arg, pos)) = it.next() {
            let Arg::Tag(tag) = arg else {
                a.positional.push((arg.clone(), *pos));
                continue;
            };
            if !a.positional.is_empty() {
                return Err(CompileError::at(
                    *pos,
                    format!("tag :{tag} must come before {name}'s other arguments"),
                ));
            }
            if !allowed.iter().any(|set| set.contains(&tag.as_str())) {
                return Err(CompileError::at(
                    *pos,
                    format!("unknown tagged argument :{tag} for {name}"),
                ));
            }
            if a.tags.iter().any(|(t, _, _)| t == tag) {
                return Err(CompileError::at(*pos, format!("tag :{tag} given twice")));
            }
            let value = match param(tag) {
                Param::None => None,
                p => {
                    let Some((v, vpos)) = it.next() else {
                        return Err(CompileError::at(*pos, format!(":{tag} needs a value")));
                    };
                    let ok = matches!(
                        (p, v),
                        (Param::Str, Arg::Str(_))
                            | (Param::Num, Arg::Number(_))
                            | (Param::List, Arg::Str(_) | Arg::List(_))
                    );
                    if !ok {
                        let want = match p {
                            Param::Str => "a string",
                            Param::Num => "a number",
                            _ => "a string list",
                        };
                        return Err(CompileError::at(*vpos, format!(":{tag} takes {want}")));
                    }
                    Some(v.clone())
                }
            };
            a.tags.push((tag.clone(), value, *pos));
        }
        Ok(a)
    }

    fn has_vars(&self) -> bool {
        self.required.contains(&Extension::Variables)
    }

    fn flag_tag(&self, a: &mut Args, tag: &str, ext: Extension) -> Result<bool, CompileError> {
        match a.take(tag) {
            Some((_, p)) => {
                self.need(ext, p, &format!(":{tag}"))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn flags_tag(&self, a: &mut Args) -> Result<Option<Vec<String>>, CompileError> {
        match a.take("flags") {
            Some((Some(v), p)) => {
                self.need(Extension::Imap4Flags, p, ":flags")?;
                Ok(Some(self.to_list(v, p)?))
            }
            _ => Ok(None),
        }
    }

    fn str_tag(&self, a: &mut Args, tag: &str) -> Result<Option<String>, CompileError> {
        match a.take(tag) {
            Some((Some(Arg::Str(s)), p)) => Ok(Some(self.lit(s, p)?)),
            _ => Ok(None),
        }
    }

    fn string(&self, a: &Args, k: usize) -> Result<String, CompileError> {
        match &a.positional[k] {
            (Arg::Str(s), p) => self.lit(s.clone(), *p),
            (_, p) => Err(CompileError::at(
                *p,
                format!("{}: argument {} must be a string", a.name, k + 1),
            )),
        }
    }

    fn to_list(&self, v: Arg, p: Pos) -> Result<Vec<String>, CompileError> {
        match v {
            Arg::Str(s) => Ok(vec![self.lit(s, p)?]),
            Arg::List(l) => l.into_iter().map(|s| self.lit(s, p)).collect(),
            _ => Err(CompileError::at(p, "expected a string list")),
        }
    }

    fn list(&self, a: &Args, k: usize) -> Result<Vec<String>, CompileError> {
        let (v, p) = &a.positional[k];
        match v {
            Arg::Str(_) | Arg::List(_) => self.to_list(v.clone(), *p),
            _ => Err(CompileError::at(
                *p,
                format!("{}: argument {} must be a string list", a.name, k + 1),
            )),
        }
    }

    fn var_name(&self, a: &Args, k: usize) -> Result<String, CompileError> {
        let name = self.string(a, k)?;
        if !variables::is_identifier(&name) {
            return Err(CompileError::at(
                a.positional[k].1,
                format!("invalid variable name \"{name}\""),
            ));
        }
        Ok(name.to_ascii_lowercase())
    }
}

impl Args {
    fn take(&mut self, tag: &str) -> Option<(Option<Arg>, Pos)> {
        let i = self.tags.iter().position(|(t, _, _)| t == tag)?;
        let (_, v, p) = self.tags.remove(i);
        Some((v, p))
    }

    fn usage(&self, usage: &str) -> CompileError {
        CompileError::at(
            self.at,
            format!("wrong arguments for {}; usage: {usage}", self.name),
        )
    }

    fn arity(&self, n: usize, usage: &str) -> Result<(), CompileError> {
        if self.positional.len() == n {
            Ok(())
        } else {
            Err(self.usage(usage))
        }
    }
}
