//! Sieve (RFC 5228) mail filtering: a sans-I/O compiler and interpreter.
//!
//! Job: turn a user's script into a checked [`Script`] at upload time ([`compile`]), and run it
//! against one message at delivery time ([`run`]) to get the list of [`Action`]s the delivery
//! side carries out. Extensions: fileinto, reject, ereject, envelope, imap4flags, copy, body,
//! variables, vacation, relational, subaddress, date, index, mailbox, encoded-character,
//! comparator-i;ascii-numeric.
//!
//! Never: read or write files, sockets, clocks or the store. The message, envelope, current time
//! and the recipient's mailboxes come in as values; actions go out as values. Vacation response
//! memory and RFC 3834 replies belong to delivery ([`vacation_allowed`] is the pure half).
//!
//! Security: scripts are user input. Size, nesting and command count are bounded at compile time;
//! actions, redirects and work (a step counter that also bounds `:matches` backtracking) at run
//! time. A script that fails at run time yields a [`RunError`], on which the caller must keep the
//! message (implicit keep): a broken script never loses mail.

mod address;
mod ast;
mod compile;
mod date;
pub mod generate;
mod interp;
mod lexer;
mod matching;
mod message;
mod parser;
mod vacation;
mod variables;

#[cfg(test)]
mod tests;

pub use ast::{Extension, Script};
pub use date::SieveTime;
pub use generate::{generate, read_settings, Settings, SETTINGS_SCRIPT};
pub use interp::{run, Action, Outcome, RunError};
pub use message::{BodyPart, Envelope, MessageView};
pub use vacation::vacation_allowed;

/// A position in the script source, 1-based; columns count characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub col: u32,
}

/// Why a script does not compile, with where: shown to users at upload (ManageSieve PUTSCRIPT).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {col}: {message}")]
pub struct CompileError {
    /// Line of the offending token, from 1.
    pub line: u32,
    /// Column of the offending token, from 1.
    pub col: u32,
    /// What is wrong, in words a script author understands.
    pub message: String,
}

impl CompileError {
    pub(crate) fn at(pos: Pos, message: impl Into<String>) -> Self {
        CompileError {
            line: pos.line,
            col: pos.col,
            message: message.into(),
        }
    }
}

/// Bounds on what one script may cost. The defaults suit per-user delivery scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest script source accepted, in bytes (ManageSieve's MAXSCRIPTSIZE).
    pub max_script_size: usize,
    /// Deepest nesting of blocks and tests.
    pub max_nesting: usize,
    /// Most commands in one script.
    pub max_commands: usize,
    /// Most actions one run may produce (after implicit keep).
    pub max_actions: usize,
    /// Most redirects one run may produce: forwarding fan-out is an abuse vector.
    pub max_redirects: usize,
    /// Work budget of one run: commands, comparisons and `:matches` backtracking steps.
    pub max_steps: u64,
    /// Longest value a variable may hold, in bytes (RFC 5229 §3 asks for at least 4000).
    pub max_variable_size: usize,
    /// Most distinct variables one run may set.
    pub max_variables: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_script_size: 64 * 1024,
            max_nesting: 32,
            max_commands: 2048,
            max_actions: 32,
            max_redirects: 4,
            max_steps: 100_000,
            max_variable_size: 4096,
            max_variables: 128,
        }
    }
}

/// Compiles a script: lexes, parses, checks `require`d extensions and every command's arguments.
pub fn compile(src: &str, limits: &Limits) -> Result<Script, CompileError> {
    if src.len() > limits.max_script_size {
        return Err(CompileError {
            line: 1,
            col: 1,
            message: format!(
                "script is {} bytes, over the limit of {} bytes",
                src.len(),
                limits.max_script_size
            ),
        });
    }
    let toks = lexer::lex(src)?;
    let end = end_pos(src);
    let raw = parser::parse(&toks, end, limits)?;
    compile::compile(&raw)
}

fn end_pos(src: &str) -> Pos {
    let line = 1 + src.matches('\n').count() as u32;
    let last = src.rsplit('\n').next().unwrap_or("");
    Pos {
        line,
        col: 1 + last.chars().count() as u32,
    }
}
