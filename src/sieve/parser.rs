//! The generic syntax tree of RFC 5228 §8.2: commands with arguments, tests and blocks. What the
//! arguments mean is checked afterwards by `compile`.

use super::lexer::Tok;
use super::{CompileError, Limits, Pos};

/// An argument as written: a tag, a number, a string or a string list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Tag(String),
    Number(u64),
    Str(String),
    List(Vec<String>),
}

/// A test as written: `name args [test | (test, ...)]`.
#[derive(Debug, Clone)]
pub(crate) struct RawTest {
    pub name: String,
    pub args: Vec<(Arg, Pos)>,
    pub tests: Vec<RawTest>,
    pub pos: Pos,
}

/// A command as written: `name args [tests] (; | { block })`.
#[derive(Debug, Clone)]
pub(crate) struct RawCommand {
    pub name: String,
    pub args: Vec<(Arg, Pos)>,
    pub tests: Vec<RawTest>,
    pub block: Option<Vec<RawCommand>>,
    pub pos: Pos,
}

/// A command's or test's arguments, then its tests.
type Arguments = (Vec<(Arg, Pos)>, Vec<RawTest>);

struct Parser<'a> {
    toks: &'a [(Tok, Pos)],
    i: usize,
    end: Pos,
    limits: &'a Limits,
    commands: usize,
}

pub(crate) fn parse(
    toks: &[(Tok, Pos)],
    end: Pos,
    limits: &Limits,
) -> Result<Vec<RawCommand>, CompileError> {
    let mut p = Parser {
        toks,
        i: 0,
        end,
        limits,
        commands: 0,
    };
    let cmds = p.commands(0)?;
    if let Some((t, at)) = p.toks.get(p.i) {
        return Err(CompileError::at(
            *at,
            format!("unexpected {}", t.describe()),
        ));
    }
    Ok(cmds)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|(t, _)| t)
    }
    fn pos(&self) -> Pos {
        self.toks.get(self.i).map_or(self.end, |(_, p)| *p)
    }
    fn next(&mut self) -> Option<(Tok, Pos)> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }
    fn unexpected(&self, wanted: &str) -> CompileError {
        match self.toks.get(self.i) {
            Some((t, at)) => {
                CompileError::at(*at, format!("expected {wanted}, found {}", t.describe()))
            }
            None => CompileError::at(
                self.end,
                format!("expected {wanted}, found the end of the script"),
            ),
        }
    }

    fn commands(&mut self, depth: usize) -> Result<Vec<RawCommand>, CompileError> {
        let mut out = Vec::new();
        while let Some(Tok::Ident(_)) = self.peek() {
            out.push(self.command(depth)?);
        }
        Ok(out)
    }

    fn command(&mut self, depth: usize) -> Result<RawCommand, CompileError> {
        let Some((Tok::Ident(name), pos)) = self.next() else {
            self.i -= 1;
            return Err(self.unexpected("a command"));
        };
        self.commands += 1;
        if self.commands > self.limits.max_commands {
            return Err(CompileError::at(
                pos,
                format!("too many commands (limit {})", self.limits.max_commands),
            ));
        }
        // Tests nest on their own count, independent of how deep the block is.
        let (args, tests) = self.arguments(0)?;
        let block = match self.peek() {
            Some(Tok::Semi) => {
                self.i += 1;
                None
            }
            Some(Tok::LBrace) => {
                let open = self.pos();
                if depth + 1 > self.limits.max_nesting {
                    return Err(CompileError::at(
                        open,
                        format!(
                            "blocks nested too deeply (limit {})",
                            self.limits.max_nesting
                        ),
                    ));
                }
                self.i += 1;
                let body = self.commands(depth + 1)?;
                match self.next() {
                    Some((Tok::RBrace, _)) => Some(body),
                    _ => {
                        self.i -= 1;
                        return Err(self.unexpected("a command or `}`"));
                    }
                }
            }
            _ => return Err(self.unexpected("`;` or `{`")),
        };
        Ok(RawCommand {
            name,
            args,
            tests,
            block,
            pos,
        })
    }

    fn arguments(&mut self, depth: usize) -> Result<Arguments, CompileError> {
        let mut args = Vec::new();
        loop {
            let at = self.pos();
            let arg = match self.peek() {
                Some(Tok::Tag(t)) => Arg::Tag(t.clone()),
                Some(Tok::Number(n)) => Arg::Number(*n),
                Some(Tok::Str(s)) => Arg::Str(s.clone()),
                Some(Tok::LBracket) => {
                    self.i += 1;
                    Arg::List(self.string_list()?)
                }
                _ => break,
            };
            if !matches!(arg, Arg::List(_)) {
                self.i += 1;
            }
            args.push((arg, at));
        }
        let tests = match self.peek() {
            Some(Tok::LParen) => {
                self.i += 1;
                let mut tests = vec![self.test(depth + 1)?];
                loop {
                    match self.next() {
                        Some((Tok::Comma, _)) => tests.push(self.test(depth + 1)?),
                        Some((Tok::RParen, _)) => break,
                        _ => {
                            self.i -= 1;
                            return Err(self.unexpected("`,` or `)`"));
                        }
                    }
                }
                tests
            }
            Some(Tok::Ident(_)) => vec![self.test(depth + 1)?],
            _ => Vec::new(),
        };
        Ok((args, tests))
    }

    fn string_list(&mut self) -> Result<Vec<String>, CompileError> {
        let mut out = Vec::new();
        loop {
            match self.next() {
                Some((Tok::Str(s), _)) => out.push(s),
                _ => {
                    self.i -= 1;
                    return Err(self.unexpected("a string"));
                }
            }
            match self.next() {
                Some((Tok::Comma, _)) => {}
                Some((Tok::RBracket, _)) => return Ok(out),
                _ => {
                    self.i -= 1;
                    return Err(self.unexpected("`,` or `]`"));
                }
            }
        }
    }

    fn test(&mut self, depth: usize) -> Result<RawTest, CompileError> {
        let pos = self.pos();
        if depth > self.limits.max_nesting {
            return Err(CompileError::at(
                pos,
                format!(
                    "tests nested too deeply (limit {})",
                    self.limits.max_nesting
                ),
            ));
        }
        let Some((Tok::Ident(name), pos)) = self.next() else {
            self.i -= 1;
            return Err(self.unexpected("a test"));
        };
        let (args, tests) = self.arguments(depth)?;
        Ok(RawTest {
            name,
            args,
            tests,
            pos,
        })
    }
}
