//! The content stage: Postfix header/MIME-header/body checks, scoring rules and GTUBE over a
//! received message, sans I/O.
//!
//! [`ContentScanner::new`] compiles the policy's scoring rules once; [`ContentScanner::scan`]
//! walks the first `scan_limit_bytes` of a message in one pass, line by line, the way
//! Postfix's cleanup(8) and its MIME state machine do:
//!
//! - each logical header (continuations included, matched with its folding line breaks as
//!   `\n`) goes to one table: the top-level header's fields to `header_checks`, except MIME
//!   fields (`Content-Type`, `-Transfer-Encoding`, `-Disposition`, `-Description`, `-ID`,
//!   `MIME-Version`) which go to `mime_header_checks` wherever they are; every field of a
//!   multipart body part to `mime_header_checks`; the non-MIME fields of an attached
//!   `message/rfc822` to `header_checks` (Postfix's `nested_header_checks` default). An unset
//!   `mime_header_checks` falls back to `header_checks`, as Postfix's default does;
//! - every other line (raw, not decoded; boundary lines included) goes to `body_checks`;
//! - the text parts (`text/plain`, `text/html`) are decoded (transfer encoding, charset, HTML
//!   tags) for the `body` and `uri` rules and GTUBE; `header` rules see the top-level fields.
//!
//! Map actions follow cleanup(8): `REJECT`, `DISCARD` and `4xx`/`5xx` decide and end all map
//! checks; `HOLD` holds unless a later `REJECT`/`DISCARD` decides; `WARN` and actions Mailnode
//! does not implement are reported as warnings; `IGNORE` reports the byte range to delete.
//!
//! The MIME structure is tracked with an explicit stack of boundaries, never recursion, and
//! refused (see [`ContentReport::mime_violation`]) when nesting passes `max_mime_depth`, parts
//! pass `max_mime_parts`, a boundary is absurdly long or a nested multipart reuses an enclosing
//! boundary (parsers would disagree about its structure). Everyday sloppiness passes: missing
//! closing boundaries, bare LF line ends, junk in headers, bad base64 or quoted-printable.
//!
//! Never: do I/O, decide what happens to the message (the policy compares the score and acts on
//! the map action), or modify the message. Security: the message is attacker input. Work is
//! linear in the scanned bytes (times the number of rules, each a linear-time regex), memory is
//! bounded by the scan limit, and no input panics (a seeded fuzz test holds it to that).

#[cfg(test)]
mod fuzz;
mod html;
mod mime;
#[cfg(test)]
mod tests;
mod walk;

use std::ops::Range;
use std::sync::Arc;

use memchr::memmem;
use regex::{Regex, RegexBuilder};

use super::checks::{Action, Table};
use super::policy::{valid_rule_name, Policy, RuleTarget};

/// The GTUBE test string (SpamAssassin's Generic Test for Unsolicited Bulk Email).
pub const GTUBE: &[u8] = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// The hit name GTUBE is reported under.
pub const GTUBE_RULE: &str = "GTUBE";

/// The most warnings one report keeps (a hostile message could match a `WARN` rule on every
/// line; the log needs a few, not a million).
pub const MAX_WARNINGS: usize = 100;

/// The longest multipart boundary accepted (RFC 2046 allows 70; some generators exceed it).
pub const MAX_BOUNDARY: usize = 256;

/// A scoring rule that matched.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHit {
    /// The rule's name (`GTUBE` for the test string).
    pub name: String,
    /// What it added to the score.
    pub score: f64,
}

/// A Postfix map rule that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckHit {
    /// The setting whose table held the rule: `header_checks`, `mime_header_checks` or
    /// `body_checks` (a fallback to `header_checks` names `header_checks`, so `line` is found).
    pub map: &'static str,
    /// The rule's action.
    pub action: Action,
    /// The rule's text, `$n` substituted.
    pub text: String,
    /// The rule's line in its table.
    pub line: usize,
    /// The bytes of the message the rule matched: a whole header (continuations and line end
    /// included) or a body line with its line end. For logging what matched.
    pub range: Range<usize>,
}

/// What [`ContentScanner::scan`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContentReport {
    /// The sum of `hits`.
    pub score: f64,
    /// The rules that matched, each once per message: GTUBE first, then in policy order.
    pub hits: Vec<RuleHit>,
    /// The GTUBE string is in a text part.
    pub gtube: bool,
    /// The deciding map action: `REJECT`, `DISCARD`, a `4xx`/`5xx` reply (the first of these
    /// ends the map checks), else the first `HOLD`.
    pub action: Option<CheckHit>,
    /// `WARN` hits and hits of actions Mailnode does not implement, in message order (at most
    /// [`MAX_WARNINGS`]).
    pub warnings: Vec<CheckHit>,
    /// Byte ranges an `IGNORE` deletes: whole headers with continuations and line end, or
    /// body lines with their line end; ascending, never overlapping.
    pub ignored: Vec<Range<usize>>,
    /// Why the MIME structure is refused (the caller answers `554 5.6.0` with it). Scanning
    /// stops there: the other fields cover what came before.
    pub mime_violation: Option<String>,
    /// The message was longer than `scan_limit_bytes`: the rest was not scanned.
    pub truncated: bool,
    /// MIME entities seen: the message itself plus every body part.
    pub parts: usize,
    /// The deepest MIME nesting seen (0: a single-part message; each multipart or attached
    /// message adds one).
    pub depth: usize,
}

/// Where a compiled rule looks.
#[derive(Debug)]
enum Target {
    /// The decoded value of this field (lower case), or `Name: value` of every field.
    Header(Option<String>),
    Body,
    Uri,
}

#[derive(Debug)]
struct Rule {
    name: String,
    score: f64,
    regex: Regex,
    target: Target,
}

/// The content stage of one policy: compiled once, shared by every session.
#[derive(Debug)]
pub struct ContentScanner {
    gtube_score: f64,
    scan_limit: usize,
    max_depth: usize,
    max_parts: usize,
    header_checks: Option<Arc<Table>>,
    mime_header_checks: Option<Arc<Table>>,
    body_checks: Option<Arc<Table>>,
    rules: Vec<Rule>,
    /// Indexes into `rules`, by target.
    header_rules: Vec<usize>,
    body_rules: Vec<usize>,
    uri_rules: Vec<usize>,
    /// Finds URIs in text.
    uri_finder: regex::bytes::Regex,
    gtube: memmem::Finder<'static>,
}

/// Per-pattern bounds, as `Settings::validate` checks them.
const RULE_SIZE_LIMIT: usize = 256 * 1024;

impl ContentScanner {
    /// Compiles `policy`'s scoring rules (case-insensitive unless a pattern says `(?-i)`).
    /// Fails, naming the rule, when one is invalid; a policy that passed
    /// `PolicyDoc::compile` always compiles.
    pub fn new(policy: &Policy) -> Result<ContentScanner, String> {
        let c = &policy.settings.content;
        if c.rules.len() > 10_000 {
            return Err("at most 10000 content.rules".into());
        }
        let mut rules = Vec::with_capacity(c.rules.len());
        for r in &c.rules {
            if !valid_rule_name(&r.name) {
                return Err(format!(
                    "rule name {:?}: use 1-64 of A-Z, 0-9 and _",
                    r.name
                ));
            }
            if !r.score.is_finite() {
                return Err(format!("rule {} score must be a finite number", r.name));
            }
            let regex = RegexBuilder::new(&r.pattern)
                .case_insensitive(true)
                .size_limit(RULE_SIZE_LIMIT)
                .dfa_size_limit(RULE_SIZE_LIMIT)
                .build()
                .map_err(|e| format!("rule {}: bad pattern: {e}", r.name))?;
            let target = match r.target {
                RuleTarget::Header => {
                    Target::Header(r.header.as_ref().map(|h| h.to_ascii_lowercase()))
                }
                _ if r.header.is_some() => {
                    return Err(format!(
                        "rule {}: `header` is only for target = \"header\"",
                        r.name
                    ))
                }
                RuleTarget::Body => Target::Body,
                RuleTarget::Uri => Target::Uri,
            };
            rules.push(Rule {
                name: r.name.clone(),
                score: r.score,
                regex,
                target,
            });
        }
        let by = |f: fn(&Target) -> bool| -> Vec<usize> {
            rules
                .iter()
                .enumerate()
                .filter(|(_, r)| f(&r.target))
                .map(|(i, _)| i)
                .collect()
        };
        let header_rules = by(|t| matches!(t, Target::Header(_)));
        let body_rules = by(|t| matches!(t, Target::Body));
        let uri_rules = by(|t| matches!(t, Target::Uri));
        let uri_finder = regex::bytes::Regex::new(
            r#"(?i-u)\b(?:(?:https?|ftp)://|www\.)[^\x00-\x20\x7f<>"'`]+"#,
        )
        .map_err(|e| format!("internal URI pattern: {e}"))?;
        Ok(ContentScanner {
            gtube_score: c.gtube_score,
            scan_limit: c.scan_limit_bytes,
            max_depth: c.max_mime_depth,
            max_parts: c.max_mime_parts,
            header_checks: policy.header_checks.clone(),
            mime_header_checks: policy.mime_header_checks.clone(),
            body_checks: policy.body_checks.clone(),
            rules,
            header_rules,
            body_rules,
            uri_rules,
            uri_finder,
            gtube: memmem::Finder::new(GTUBE).into_owned(),
        })
    }

    /// Scans the first `scan_limit_bytes` of `message` (a whole RFC 5322 message, CRLF or LF
    /// line ends). Never fails: what cannot be parsed is scanned as text or reported in
    /// [`ContentReport::mime_violation`].
    pub fn scan(&self, message: &[u8]) -> ContentReport {
        let msg = &message[..message.len().min(self.scan_limit)];
        walk::Scan::run(self, msg, message.len() > self.scan_limit)
    }
}
