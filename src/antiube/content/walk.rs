//! One scan: the line-by-line walk over a message's MIME structure (an explicit stack of open
//! multiparts, never recursion), the map checks of each header and body line, and the text
//! parts handed to GTUBE and the scoring rules.
//!
//! Never: look past the scanned bytes it is given, or descend past `max_mime_depth`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;

use super::html;
use super::mime::{self, Cte};
use super::{
    CheckHit, ContentReport, ContentScanner, RuleHit, Target, GTUBE_RULE, MAX_BOUNDARY,
    MAX_WARNINGS,
};
use crate::antiube::checks::{Action, Match};

/// Which header block a field is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// The message's own header.
    Primary,
    /// A multipart body part's header.
    Part,
    /// The header of an attached `message/rfc822`.
    Nested,
}

/// An open multipart: its boundary and the depth of its parts.
struct Frame {
    boundary: Vec<u8>,
    depth: usize,
    /// `multipart/digest`: parts default to `message/rfc822`.
    digest: bool,
}

/// A header block being read.
struct Block {
    class: Class,
    depth: usize,
    /// A part of a `multipart/digest` (default type `message/rfc822`).
    digest_part: bool,
    /// The field being read: its start and the offset of its colon.
    cur: Option<(usize, usize)>,
    /// The first `Content-Type` value.
    content_type: Option<Range<usize>>,
    /// The first `Content-Transfer-Encoding` value.
    cte: Option<Range<usize>>,
}

impl Block {
    fn new(class: Class, depth: usize, digest_part: bool) -> Block {
        Block {
            class,
            depth,
            digest_part,
            cur: None,
            content_type: None,
            cte: None,
        }
    }
}

/// A text part whose body is being passed over.
struct TextLeaf<'a> {
    start: usize,
    html: bool,
    cte: Cte,
    charset: Option<Cow<'a, [u8]>>,
}

enum Mode<'a> {
    Header(Block),
    Body(Option<TextLeaf<'a>>),
}

/// One scan's state.
pub(super) struct Scan<'a> {
    sc: &'a ContentScanner,
    msg: &'a [u8],
    report: ContentReport,
    /// Which rules matched.
    rule_hit: Vec<bool>,
    /// A map decided (`REJECT`, `DISCARD`, reply): no more map checks, as in cleanup(8).
    maps_done: bool,
    /// A MIME violation: stop.
    stop: bool,
    stack: Vec<Frame>,
    /// URIs already given to the rules.
    uris_seen: HashSet<String>,
    /// Reused buffers: a decoded part, HTML's text, its attribute URIs.
    decoded: Vec<u8>,
    html: Vec<u8>,
    attr_uris: Vec<String>,
}

impl<'a> Scan<'a> {
    /// Scans `msg` (the message cut to the scan limit; `truncated` if it was cut).
    pub(super) fn run(sc: &'a ContentScanner, msg: &'a [u8], truncated: bool) -> ContentReport {
        let mut scan = Scan {
            sc,
            msg,
            report: ContentReport {
                truncated,
                parts: 1,
                ..ContentReport::default()
            },
            rule_hit: vec![false; sc.rules.len()],
            maps_done: false,
            stop: false,
            stack: Vec::new(),
            uris_seen: HashSet::new(),
            decoded: Vec::new(),
            html: Vec::new(),
            attr_uris: Vec::new(),
        };
        scan.walk();
        scan.finish()
    }

    fn walk(&mut self) {
        let msg = self.msg;
        let mut mode = Mode::Header(Block::new(Class::Primary, 0, false));
        let mut pos = 0;
        while pos < msg.len() && !self.stop {
            let nl = memchr::memchr(b'\n', &msg[pos..]).map(|i| pos + i);
            let next = nl.map_or(msg.len(), |i| i + 1);
            let mut end = nl.unwrap_or(msg.len());
            if end > pos && msg[end - 1] == b'\r' {
                end -= 1;
            }
            let line = &msg[pos..end];
            mode = match mode {
                Mode::Header(mut block) => {
                    if line.is_empty() {
                        self.flush(&mut block, pos);
                        pos = next;
                        self.end_headers(&block, next)
                    } else if matches!(line[0], b' ' | b'\t') && block.cur.is_some() {
                        pos = next;
                        Mode::Header(block)
                    } else if let Some(colon) = mime::header_colon(line) {
                        self.flush(&mut block, pos);
                        block.cur = Some((pos, pos + colon));
                        pos = next;
                        Mode::Header(block)
                    } else {
                        // Not a header line: the body starts here, without a blank line.
                        self.flush(&mut block, pos);
                        self.end_headers(&block, pos)
                    }
                }
                Mode::Body(leaf) => {
                    let mode = self.body_line(leaf, pos, end, next);
                    pos = next;
                    mode
                }
            };
        }
        if self.stop {
            return;
        }
        let end = msg.len();
        let mode = match mode {
            Mode::Header(mut block) => {
                self.flush(&mut block, end);
                self.end_headers(&block, end)
            }
            body => body,
        };
        if let Mode::Body(Some(leaf)) = mode {
            if !self.stop {
                self.text_part(&leaf, leaf.start..end);
            }
        }
    }

    fn violation(&mut self, why: String) {
        self.report.mime_violation = Some(why);
        self.stop = true;
    }

    /// Processes the field being read, which ends at `end`.
    fn flush(&mut self, block: &mut Block, end: usize) {
        let Some((start, colon)) = block.cur.take() else {
            return;
        };
        let msg = self.msg;
        let name = &msg[start..colon];
        let name = name
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(name, |e| &name[..=e]);
        let value = colon + 1..end;
        if name.eq_ignore_ascii_case(b"content-type") {
            block.content_type.get_or_insert(value.clone());
        } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
            block.cte.get_or_insert(value.clone());
        }
        if !self.maps_done {
            let sc = self.sc;
            let header = sc.header_checks.as_ref().map(|t| ("header_checks", t));
            let table = match (block.class, mime::is_mime_header(name)) {
                (Class::Primary | Class::Nested, false) => header,
                _ => sc
                    .mime_header_checks
                    .as_ref()
                    .map(|t| ("mime_header_checks", t))
                    .or(header),
            };
            if let Some((map, table)) = table {
                if let Some(m) = table.first_match(&mime::header_text(&msg[start..end])) {
                    self.act(map, m, start..end);
                }
            }
        }
        if block.class == Class::Primary && !self.sc.header_rules.is_empty() {
            self.header_rules(name, &msg[value]);
        }
    }

    /// Runs the header rules not yet matched on one top-level field.
    fn header_rules(&mut self, name: &[u8], raw_value: &[u8]) {
        let sc = self.sc;
        let mut value: Option<String> = None;
        let mut line: Option<String> = None;
        for &i in &sc.header_rules {
            if self.rule_hit[i] {
                continue;
            }
            let rule = &sc.rules[i];
            let Target::Header(field) = &rule.target else {
                continue;
            };
            let subject: &str = match field {
                Some(f) if !name.eq_ignore_ascii_case(f.as_bytes()) => continue,
                Some(_) => value.get_or_insert_with(|| mime::decode_header_value(raw_value)),
                None => {
                    let v = value.get_or_insert_with(|| mime::decode_header_value(raw_value));
                    line.get_or_insert_with(|| format!("{}: {v}", String::from_utf8_lossy(name)))
                }
            };
            if rule.regex.is_match(subject) {
                self.rule_hit[i] = true;
            }
        }
    }

    /// Applies a map match to the report, as cleanup(8) does.
    fn act(&mut self, map: &'static str, m: Match, range: Range<usize>) {
        let hit = CheckHit {
            map,
            action: m.action,
            text: m.text,
            line: m.line,
            range,
        };
        match hit.action {
            Action::Reject | Action::Discard | Action::Reply(_) => {
                self.report.action = Some(hit);
                self.maps_done = true;
            }
            Action::Hold => {
                if self.report.action.is_none() {
                    self.report.action = Some(hit);
                }
            }
            Action::Ignore => self.report.ignored.push(hit.range),
            Action::Dunno => {}
            Action::Warn | Action::Unsupported(_) => {
                if self.report.warnings.len() < MAX_WARNINGS {
                    self.report.warnings.push(hit);
                }
            }
        }
    }

    /// A header block ended; the body (or a nested header) starts at `body`.
    fn end_headers(&mut self, block: &Block, body: usize) -> Mode<'a> {
        let msg = self.msg;
        let mut ct = block
            .content_type
            .clone()
            .map(|r| mime::parse_content_type(&msg[r]))
            .unwrap_or_default();
        if ct.ty.is_empty() {
            // RFC 2045 5.2: absent or unparsable, the default applies.
            (ct.ty, ct.sub) = if block.digest_part {
                (&b"message"[..], &b"rfc822"[..])
            } else {
                (&b"text"[..], &b"plain"[..])
            };
        }
        let cte = block
            .cte
            .clone()
            .map_or(Cte::Identity, |r| mime::parse_cte(&msg[r]));
        let depth = block.depth + 1;
        if ct.ty.eq_ignore_ascii_case(b"multipart") {
            let Some(boundary) = ct.boundary.filter(|b| !b.is_empty()) else {
                // No boundary: nothing delimits parts, and readers show the body as text.
                return Mode::Body(Some(TextLeaf {
                    start: body,
                    html: false,
                    cte,
                    charset: None,
                }));
            };
            if boundary.len() > MAX_BOUNDARY {
                self.violation(format!(
                    "MIME boundary of {} bytes, over the limit of {MAX_BOUNDARY}",
                    boundary.len()
                ));
            } else if depth > self.sc.max_depth {
                self.violation(format!(
                    "MIME nesting exceeds the limit of {} levels",
                    self.sc.max_depth
                ));
            } else if self.stack.iter().any(|f| f.boundary == *boundary) {
                self.violation("nested MIME multipart reuses an enclosing boundary".into());
            } else {
                self.report.depth = self.report.depth.max(depth);
                self.stack.push(Frame {
                    boundary: boundary.into_owned(),
                    depth,
                    digest: ct.sub.eq_ignore_ascii_case(b"digest"),
                });
            }
            return Mode::Body(None);
        }
        if ct.ty.eq_ignore_ascii_case(b"message")
            && (ct.sub.eq_ignore_ascii_case(b"rfc822") || ct.sub.eq_ignore_ascii_case(b"global"))
            && cte == Cte::Identity
        {
            if depth > self.sc.max_depth {
                self.violation(format!(
                    "MIME nesting exceeds the limit of {} levels",
                    self.sc.max_depth
                ));
                return Mode::Body(None);
            }
            self.report.depth = self.report.depth.max(depth);
            return Mode::Header(Block::new(Class::Nested, depth, false));
        }
        if ct.ty.eq_ignore_ascii_case(b"text") {
            let html = ct.sub.eq_ignore_ascii_case(b"html");
            if html || ct.sub.eq_ignore_ascii_case(b"plain") || ct.sub.is_empty() {
                return Mode::Body(Some(TextLeaf {
                    start: body,
                    html,
                    cte,
                    charset: ct.charset,
                }));
            }
        }
        Mode::Body(None)
    }

    /// One body line (`pos..end`, line end up to `next`): body checks, then boundaries.
    fn body_line(
        &mut self,
        leaf: Option<TextLeaf<'a>>,
        pos: usize,
        end: usize,
        next: usize,
    ) -> Mode<'a> {
        let msg = self.msg;
        let line = &msg[pos..end];
        if !self.maps_done {
            let sc = self.sc;
            if let Some(table) = &sc.body_checks {
                if let Some(m) = table.first_match(&String::from_utf8_lossy(line)) {
                    self.act("body_checks", m, pos..next);
                }
            }
        }
        let Some(rest) = line.strip_prefix(b"--") else {
            return Mode::Body(leaf);
        };
        // Innermost first, as Postfix does; prefix match (trailing junk is tolerated).
        let Some(k) = self
            .stack
            .iter()
            .rposition(|f| rest.starts_with(&f.boundary))
        else {
            return Mode::Body(leaf);
        };
        if let Some(leaf) = leaf {
            // The line break before a boundary belongs to the boundary (RFC 2046 5.1.1).
            let before = &msg[leaf.start..pos];
            let before = before.strip_suffix(b"\n").unwrap_or(before);
            let before = before.strip_suffix(b"\r").unwrap_or(before);
            self.text_part(&leaf, leaf.start..leaf.start + before.len());
        }
        let frame = &self.stack[k];
        if rest[frame.boundary.len()..].starts_with(b"--") {
            self.stack.truncate(k);
            return Mode::Body(None);
        }
        let (depth, digest) = (frame.depth, frame.digest);
        self.stack.truncate(k + 1);
        self.report.parts += 1;
        if self.report.parts > self.sc.max_parts {
            self.violation(format!("more than {} MIME parts", self.sc.max_parts));
            return Mode::Body(None);
        }
        Mode::Header(Block::new(Class::Part, depth, digest))
    }

    /// Decodes a text part's body and runs GTUBE, body and URI rules on it.
    fn text_part(&mut self, leaf: &TextLeaf<'_>, range: Range<usize>) {
        let sc = self.sc;
        let raw = &self.msg[range];
        let mut decoded = std::mem::take(&mut self.decoded);
        decoded.clear();
        let bytes: &[u8] = match leaf.cte {
            Cte::Base64 => {
                mime::decode_base64(raw, &mut decoded);
                &decoded
            }
            Cte::QuotedPrintable => {
                mime::decode_qp(raw, &mut decoded);
                &decoded
            }
            Cte::Identity | Cte::Other => raw,
        };
        let text = mime::to_utf8(bytes, leaf.charset.as_deref());
        let mut html = std::mem::take(&mut self.html);
        let mut attr_uris = std::mem::take(&mut self.attr_uris);
        attr_uris.clear();
        let body: Cow<'_, str> = if leaf.html {
            html::to_text(text.as_bytes(), &mut html, &mut attr_uris);
            String::from_utf8_lossy(&html)
        } else {
            Cow::Borrowed(&*text)
        };
        if !self.report.gtube && sc.gtube.find(body.as_bytes()).is_some() {
            self.report.gtube = true;
        }
        for &i in &sc.body_rules {
            if !self.rule_hit[i] && sc.rules[i].regex.is_match(&body) {
                self.rule_hit[i] = true;
            }
        }
        if sc.uri_rules.iter().any(|&i| !self.rule_hit[i]) {
            for m in sc.uri_finder.find_iter(body.as_bytes()) {
                let uri = html::trim_uri(m.as_bytes());
                if html::is_uri_start(uri) {
                    self.uri(&String::from_utf8_lossy(uri));
                }
            }
            for uri in &attr_uris {
                self.uri(uri);
            }
        }
        drop(body);
        drop(text);
        self.decoded = decoded;
        self.html = html;
        self.attr_uris = attr_uris;
    }

    /// Runs the URI rules not yet matched on `uri`, once per distinct URI.
    fn uri(&mut self, uri: &str) {
        if self.uris_seen.contains(uri) {
            return;
        }
        self.uris_seen.insert(uri.to_string());
        let sc = self.sc;
        for &i in &sc.uri_rules {
            if !self.rule_hit[i] && sc.rules[i].regex.is_match(uri) {
                self.rule_hit[i] = true;
            }
        }
    }

    fn finish(mut self) -> ContentReport {
        let r = &mut self.report;
        if r.gtube {
            r.hits.push(RuleHit {
                name: GTUBE_RULE.into(),
                score: self.sc.gtube_score,
            });
        }
        for (rule, _) in self
            .sc
            .rules
            .iter()
            .zip(&self.rule_hit)
            .filter(|(_, h)| **h)
        {
            r.hits.push(RuleHit {
                name: rule.name.clone(),
                score: rule.score,
            });
        }
        // Folded from +0.0: `sum` of nothing is -0.0, which would print as "-0".
        r.score = r.hits.iter().fold(0.0, |sum, h| sum + h.score);
        self.report
    }
}
