//! Postfix `header_checks`, `mime_header_checks` and `body_checks` tables in the regexp and
//! pcre formats (regexp_table(5), pcre_table(5)), so an existing map loads unchanged.
//!
//! [`Table::parse`] compiles a map's text into a [`Table`]; [`Table::first_match`] evaluates
//! one input line (an unfolded `Name: value` header, or a body line) and returns the first rule
//! that fires, with `$n` substituted in its text. The action is typed ([`Action`]); actions
//! Postfix knows but Mailnode does not implement come back as [`Action::Unsupported`] so the
//! policy decides, and unknown action names refuse the map (a typo must not silently pass).
//!
//! Patterns run on Rust's `regex` engine: linear time in the input, no backreferences and no
//! look-around. A pattern using those is refused with its file and line, as is any other
//! error: a bad map is refused whole, never half-loaded.
//!
//! Never: do I/O or decide anything — the caller reads the file and the policy acts on the
//! match. Security: the map is operator input, the matched lines are attacker input. Matching
//! is linear in the input; every compiled pattern is bounded by [`Limits`] (NFA size, lazy DFA
//! cache, rule count) so a hostile or careless map cannot exhaust memory; no input panics.

mod parse;
#[cfg(test)]
mod tests;

use std::fmt;

use regex::{Regex, RegexSet, RegexSetBuilder};

/// The table dialect: the two differ in flag defaults and meanings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `regexp:` tables (POSIX extended regular expressions). Flags: `i` (case-insensitive,
    /// on by default), `m` (multi-line mode, off), `x` (extended syntax, on; basic syntax is
    /// refused).
    Regexp,
    /// `pcre:` tables. Flags: `i` (on), `m` (off), `s` (dot matches newline, on), `x`
    /// (ignore whitespace, off), `A` (anchored), `U` (ungreedy), `E` and `X` (accepted: Rust's
    /// `$` already matches only at the very end, and unknown escapes are already errors).
    Pcre,
}

/// Bounds on what one table may cost.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most rules (patterns, `if` included) in one table.
    pub max_rules: usize,
    /// Most bytes of one pattern's source text.
    pub max_pattern_len: usize,
    /// Compiled-program size limit per pattern (`regex::RegexBuilder::size_limit`).
    pub regex_size_limit: usize,
    /// Lazy DFA cache limit per pattern (`regex::RegexBuilder::dfa_size_limit`).
    pub dfa_size_limit: usize,
}

impl Default for Limits {
    /// Far above real maps (hundreds of rules of well under a kilobyte each): 10 000 rules,
    /// 4 KiB of pattern text, 256 KiB compiled and 256 KiB of DFA cache per pattern.
    fn default() -> Self {
        Limits {
            max_rules: 10_000,
            max_pattern_len: 4096,
            regex_size_limit: 256 * 1024,
            dfa_size_limit: 256 * 1024,
        }
    }
}

/// What a matching rule asks for. The optional text is in [`Match::text`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `REJECT optional text`: reject the whole message.
    Reject,
    /// `DISCARD optional text`: claim delivery, drop the message.
    Discard,
    /// `WARN optional text`: log and continue.
    Warn,
    /// `HOLD optional text`: put the message on hold.
    Hold,
    /// `IGNORE`: delete this header line (or body line).
    Ignore,
    /// `DUNNO` or `OK`: as if no rule matched; stops the search for this line.
    Dunno,
    /// `4xx text` or `5xx text`: reply with this code (the text may start with an enhanced
    /// status code).
    Reply(u16),
    /// An action Postfix knows but Mailnode does not implement (`FILTER`, `REDIRECT`,
    /// `PREPEND`, `REPLACE`, `INFO`, `BCC`, `STRIP`), upper-cased: the policy decides.
    Unsupported(String),
}

/// The first rule that fired for an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// The rule's action.
    pub action: Action,
    /// The text after the action word (after the code for [`Action::Reply`]), with `$n`
    /// replaced by the capture groups; empty when the rule has none.
    pub text: String,
    /// The 1-based line of the rule in the table (its first physical line).
    pub line: usize,
}

/// Why a table was refused; displays as `name:line: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}:{line}: {kind}")]
pub struct LoadError {
    /// The name the caller gave the table (usually its path).
    pub name: String,
    /// The 1-based physical line of the offending logical line.
    pub line: usize,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// The kinds of [`LoadError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// A line starting with whitespace before any rule.
    #[error("a continuation line (starting with whitespace) has no line to continue: remove the leading whitespace")]
    OrphanContinuation,
    /// The line starts neither with a pattern nor with `if`/`endif`.
    #[error("expected /pattern/, !/pattern/, if or endif, found {0:?}")]
    UnknownDirective(String),
    /// No valid delimiter where a pattern should start.
    #[error("missing pattern delimiter: write the pattern as /pattern/ (any punctuation except \\ may delimit)")]
    MissingDelimiter,
    /// The closing delimiter is missing.
    #[error("pattern has no closing {0:?}: escape a delimiter inside the pattern as \\{0}")]
    UnterminatedPattern(char),
    /// A flag letter the dialect does not know.
    #[error(
        "unknown flag {0:?} after the pattern (put whitespace between the flags and the action)"
    )]
    UnknownFlag(char),
    /// A flag combination this engine cannot honour.
    #[error("unsupported flag: {0}")]
    UnsupportedFlag(&'static str),
    /// The pattern is longer than [`Limits::max_pattern_len`].
    #[error("pattern is {len} bytes, over the limit of {max}: split it into several rules")]
    PatternTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The pattern uses a PCRE/POSIX feature Rust's regex engine lacks.
    #[error(
        "pattern uses {0}, which this regex engine does not support: rewrite the rule without it"
    )]
    UnsupportedFeature(&'static str),
    /// The compiled pattern would exceed [`Limits::regex_size_limit`].
    #[error("pattern compiles too large (over {0} bytes): reduce repetition counts or split it")]
    PatternTooLarge(usize),
    /// Any other regex syntax error.
    #[error("bad regular expression: {0}")]
    BadRegex(String),
    /// A rule without an action.
    #[error("rule has no action: add one, e.g. REJECT or WARN")]
    MissingAction,
    /// An action word neither supported nor known to Postfix.
    #[error("unknown action {0:?}: expected REJECT, DISCARD, WARN, HOLD, IGNORE, DUNNO, OK, 4xx/5xx text or a Postfix action")]
    UnknownAction(String),
    /// The action word must be literal.
    #[error("the action word {0:?} contains $: only the text after it may use $n")]
    DynamicAction(String),
    /// A `4xx`/`5xx` action with a code out of range.
    #[error("reply code {0} is not 4xx or 5xx")]
    BadReplyCode(String),
    /// `$n` refers to a group the pattern does not have.
    #[error("${group} refers to a capture group the pattern lacks (it has {groups})")]
    GroupOutOfRange {
        /// The number used.
        group: usize,
        /// How many groups the pattern has.
        groups: usize,
    },
    /// `$n` in a rule whose pattern is negated, where there is nothing to substitute.
    #[error("$n cannot be used after a negated pattern (!/.../): nothing was captured")]
    GroupInNegation,
    /// A `${...}`/`$(...)` that is not a group number.
    #[error("bad substitution {0:?}: write $1, ${{1}} or $(1), or $$ for a literal $")]
    BadSubstitution(String),
    /// Text after `if /pattern/` or `endif`.
    #[error("unexpected text after {0}: remove it")]
    ExtraText(&'static str),
    /// `endif` without an open `if`.
    #[error("endif without a matching if")]
    UnbalancedEndif,
    /// An `if` still open at the end of the table.
    #[error("if has no matching endif")]
    UnclosedIf,
    /// More than [`Limits::max_rules`] rules.
    #[error("table has more than {0} rules: split it or raise the limit")]
    TooManyRules(usize),
}

/// A compiled pattern with its polarity.
#[derive(Debug)]
struct Pattern {
    /// The compiled expression.
    regex: Regex,
    /// `!/.../`: fires when the expression does not match.
    negated: bool,
    /// The expression with its options as inline flags (for [`Table`]'s combined set).
    inline: String,
}

impl Pattern {
    fn fires(&self, input: &str) -> bool {
        self.regex.is_match(input) != self.negated
    }
}

/// A piece of a rule's text: literal, or a capture group to substitute.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Group(usize),
}

/// One compiled entry of a table, in source order.
#[derive(Debug)]
enum Entry {
    /// `/pattern/flags ACTION text`.
    Rule {
        pattern: Pattern,
        action: Action,
        text: Vec<Piece>,
        line: usize,
        /// Whether `text` uses a group (so matching must capture).
        captures: bool,
    },
    /// `if /pattern/flags`; `end` is the index of the matching `endif` entry.
    If { pattern: Pattern, end: usize },
    /// `endif`.
    Endif,
}

/// A compiled regexp or pcre table.
pub struct Table {
    entries: Vec<Entry>,
    /// Every rule's pattern in one set, when the table is only plain rules (no `if`, no
    /// negation) and the set compiles within the limits: most lines match no rule, and one
    /// pass of the set says so instead of one pass per rule.
    set: Option<RegexSet>,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl Table {
    /// Compiles a table's text. `name` (usually the file's path) prefixes error messages.
    pub fn parse(
        name: &str,
        text: &str,
        dialect: Dialect,
        limits: &Limits,
    ) -> Result<Table, LoadError> {
        parse::parse(text, dialect, limits)
            .map(|entries| Table {
                set: combined(&entries, limits),
                entries,
            })
            .map_err(|(line, kind)| LoadError {
                name: name.to_owned(),
                line,
                kind,
            })
    }

    /// Number of rules (`if` lines included, `endif` not).
    pub fn len(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| !matches!(e, Entry::Endif))
            .count()
    }

    /// Whether the table has no rules.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first rule that fires for `input` (a header line, unfolded or with its folding
    /// newlines, or a body line), honouring `if`/`endif`. `None` when nothing fires.
    pub fn first_match(&self, input: &str) -> Option<Match> {
        if let Some(set) = &self.set {
            if !set.is_match(input) {
                return None;
            }
            // The lowest index is the first rule in table order that fires.
            let first = set.matches(input).iter().next()?;
            return self.rule_match(first, input);
        }
        let mut i = 0;
        while let Some(entry) = self.entries.get(i) {
            match entry {
                Entry::Rule {
                    pattern,
                    action,
                    text,
                    line,
                    captures,
                } => {
                    if *captures {
                        // Group references are refused at load time on negated patterns.
                        if let Some(caps) = pattern.regex.captures(input) {
                            return Some(Match {
                                action: action.clone(),
                                text: substitute(text, &caps),
                                line: *line,
                            });
                        }
                    } else if pattern.fires(input) {
                        return Some(Match {
                            action: action.clone(),
                            text: substitute_literal(text),
                            line: *line,
                        });
                    }
                }
                Entry::If { pattern, end } => {
                    if !pattern.fires(input) {
                        i = *end;
                    }
                }
                Entry::Endif => {}
            }
            i += 1;
        }
        None
    }
}

impl Table {
    /// The match of plain rule `i`, if it fires for `input`.
    fn rule_match(&self, i: usize, input: &str) -> Option<Match> {
        let Some(Entry::Rule {
            pattern,
            action,
            text,
            line,
            captures,
        }) = self.entries.get(i)
        else {
            return None;
        };
        let text = if *captures {
            substitute(text, &pattern.regex.captures(input)?)
        } else if pattern.fires(input) {
            substitute_literal(text)
        } else {
            return None;
        };
        Some(Match {
            action: action.clone(),
            text,
            line: *line,
        })
    }
}

/// The set of a table made only of plain rules, in order; `None` otherwise, or when the set
/// would exceed the limits (then rules are tried one by one, as for any other table).
fn combined(entries: &[Entry], limits: &Limits) -> Option<RegexSet> {
    let mut sources = Vec::with_capacity(entries.len());
    for e in entries {
        match e {
            Entry::Rule { pattern, .. } if !pattern.negated => sources.push(&pattern.inline),
            _ => return None,
        }
    }
    if sources.len() < 2 {
        return None;
    }
    RegexSetBuilder::new(sources)
        .size_limit(limits.regex_size_limit.saturating_mul(entries.len()))
        .dfa_size_limit(limits.dfa_size_limit.saturating_mul(4))
        .build()
        .ok()
}

fn substitute(pieces: &[Piece], caps: &regex::Captures<'_>) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Literal(s) => out.push_str(s),
            Piece::Group(n) => {
                if let Some(m) = caps.get(*n) {
                    out.push_str(m.as_str());
                }
            }
        }
    }
    out
}

fn substitute_literal(pieces: &[Piece]) -> String {
    let mut out = String::new();
    for piece in pieces {
        if let Piece::Literal(s) = piece {
            out.push_str(s);
        }
    }
    out
}
