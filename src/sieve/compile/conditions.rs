//! Tests: RFC 5228's tests and those of the extensions, with the shared match-type,
//! comparator, address-part and index arguments.

use super::*;
use crate::sieve::date;

impl Compiler {
    pub(super) fn test(&self, t: &RawTest) -> Result<Test, CompileError> {
        let name = t.name.as_str();
        let at = t.pos;
        let raw = &t.args;
        if !matches!(name, "allof" | "anyof" | "not") {
            if let Some(sub) = t.tests.first() {
                return Err(CompileError::at(sub.pos, format!("{name} takes no tests")));
            }
        }
        Ok(match name {
            "true" | "false" => {
                self.args(name, at, raw, &[], common_param)?
                    .arity(0, name)?;
                if name == "true" {
                    Test::True
                } else {
                    Test::False
                }
            }
            "allof" | "anyof" => {
                self.args(name, at, raw, &[], common_param)?
                    .arity(0, &format!("{name} (<tests>)"))?;
                if t.tests.is_empty() {
                    return Err(CompileError::at(
                        at,
                        format!("{name} needs a list of tests in parentheses"),
                    ));
                }
                let tests = t
                    .tests
                    .iter()
                    .map(|s| self.test(s))
                    .collect::<Result<Vec<_>, _>>()?;
                if name == "allof" {
                    Test::AllOf(tests)
                } else {
                    Test::AnyOf(tests)
                }
            }
            "not" => {
                self.args(name, at, raw, &[], common_param)?
                    .arity(0, "not <test>")?;
                let [sub] = t.tests.as_slice() else {
                    return Err(CompileError::at(at, "not takes exactly one test"));
                };
                Test::Not(Box::new(self.test(sub)?))
            }
            "exists" => {
                let a = self.args(name, at, raw, &[], common_param)?;
                a.arity(1, "exists <header-names: string-list>")?;
                Test::Exists(self.list(&a, 0)?)
            }
            "size" => {
                let mut a = self.args(name, at, raw, &[&["over", "under"]], common_param)?;
                a.arity(1, "size <:over / :under> <limit: number>")?;
                let over = a.take("over").is_some();
                let under = a.take("under").is_some();
                if over == under {
                    return Err(a.usage("size <:over / :under> <limit: number>"));
                }
                let (Arg::Number(limit), _) = a.positional[0] else {
                    return Err(CompileError::at(a.positional[0].1, "size takes a number"));
                };
                Test::Size { over, limit }
            }
            "address" => {
                let mut a = self.args(
                    name,
                    at,
                    raw,
                    &[MATCH_TAGS, ADDR_TAGS, INDEX_TAGS],
                    common_param,
                )?;
                a.arity(
                    2,
                    "address [ADDRESS-PART] [COMPARATOR] [MATCH-TYPE] <header-list> <key-list>",
                )?;
                let m = self.match_opts(&mut a)?;
                let part = self.addr_part(&mut a)?;
                let index = self.index(&mut a)?;
                Test::Address {
                    m,
                    part,
                    index,
                    headers: self.list(&a, 0)?,
                    keys: self.list(&a, 1)?,
                }
            }
            "envelope" => {
                self.need(Extension::Envelope, at, "envelope")?;
                let mut a = self.args(name, at, raw, &[MATCH_TAGS, ADDR_TAGS], common_param)?;
                a.arity(
                    2,
                    "envelope [ADDRESS-PART] [COMPARATOR] [MATCH-TYPE] <envelope-part> <key-list>",
                )?;
                let m = self.match_opts(&mut a)?;
                let part = self.addr_part(&mut a)?;
                let fields = self.list(&a, 0)?;
                for f in &fields {
                    if !matches!(f.to_ascii_lowercase().as_str(), "from" | "to") {
                        return Err(CompileError::at(
                            a.positional[0].1,
                            format!("unknown envelope part \"{f}\" (use \"from\" or \"to\")"),
                        ));
                    }
                }
                Test::Envelope {
                    m,
                    part,
                    fields,
                    keys: self.list(&a, 1)?,
                }
            }
            "header" => {
                let mut a = self.args(name, at, raw, &[MATCH_TAGS, INDEX_TAGS], common_param)?;
                a.arity(
                    2,
                    "header [COMPARATOR] [MATCH-TYPE] <header-names> <key-list>",
                )?;
                let m = self.match_opts(&mut a)?;
                let index = self.index(&mut a)?;
                Test::Header {
                    m,
                    index,
                    headers: self.list(&a, 0)?,
                    keys: self.list(&a, 1)?,
                }
            }
            "string" => {
                self.need(Extension::Variables, at, "the string test")?;
                let mut a = self.args(name, at, raw, &[MATCH_TAGS], common_param)?;
                a.arity(2, "string [COMPARATOR] [MATCH-TYPE] <source> <key-list>")?;
                let m = self.match_opts(&mut a)?;
                Test::String {
                    m,
                    source: self.list(&a, 0)?,
                    keys: self.list(&a, 1)?,
                }
            }
            "hasflag" => {
                self.need(Extension::Imap4Flags, at, "hasflag")?;
                let mut a = self.args(name, at, raw, &[MATCH_TAGS], common_param)?;
                let m = self.match_opts(&mut a)?;
                match a.positional.len() {
                    1 => Test::HasFlag {
                        m,
                        vars: None,
                        flags: self.list(&a, 0)?,
                    },
                    2 => {
                        self.need(
                            Extension::Variables,
                            a.positional[0].1,
                            "hasflag with variables",
                        )?;
                        let vars = self.list(&a, 0)?;
                        for v in &vars {
                            if !variables::is_identifier(v) {
                                return Err(CompileError::at(
                                    a.positional[0].1,
                                    format!("invalid variable name \"{v}\""),
                                ));
                            }
                        }
                        Test::HasFlag {
                            m,
                            vars: Some(vars),
                            flags: self.list(&a, 1)?,
                        }
                    }
                    _ => {
                        return Err(a.usage(
                            "hasflag [MATCH-TYPE] [COMPARATOR] [<variable-list>] <list-of-flags>",
                        ))
                    }
                }
            }
            "body" => {
                self.need(Extension::Body, at, "body")?;
                let mut a = self.args(
                    name,
                    at,
                    raw,
                    &[MATCH_TAGS, &["raw", "text", "content"]],
                    |t| {
                        if t == "content" {
                            Param::List
                        } else {
                            common_param(t)
                        }
                    },
                )?;
                a.arity(
                    1,
                    "body [COMPARATOR] [MATCH-TYPE] [:raw / :text / :content <types>] <key-list>",
                )?;
                let m = self.match_opts(&mut a)?;
                let raw_t = a.take("raw");
                let text_t = a.take("text");
                let content = a.take("content");
                let transform = match (raw_t, text_t, content) {
                    (None, None, None) | (None, Some(_), None) => BodyTransform::Text,
                    (Some(_), None, None) => BodyTransform::Raw,
                    (None, None, Some((Some(v), p))) => BodyTransform::Content(self.to_list(v, p)?),
                    _ => {
                        return Err(CompileError::at(
                            at,
                            "body takes only one of :raw, :text and :content",
                        ))
                    }
                };
                if matches!(m.kind, MatchKind::Count(_)) {
                    return Err(CompileError::at(at, "body does not support :count"));
                }
                Test::Body {
                    m,
                    transform,
                    keys: self.list(&a, 0)?,
                }
            }
            "date" | "currentdate" => {
                self.need(Extension::Date, at, name)?;
                let mut extra: Vec<&str> = vec!["zone"];
                let mut groups: Vec<&[&str]> = vec![MATCH_TAGS];
                if name == "date" {
                    extra.push("originalzone");
                    groups.push(INDEX_TAGS);
                }
                groups.push(&extra);
                let mut a = self.args(name, at, raw, &groups, |t| {
                    if t == "zone" {
                        Param::Str
                    } else {
                        common_param(t)
                    }
                })?;
                let n = if name == "date" { 3 } else { 2 };
                a.arity(
                    n,
                    &format!(
                        "{name} [:zone z] [COMPARATOR] [MATCH-TYPE] {}<date-part> <key-list>",
                        if n == 3 { "<header-name> " } else { "" }
                    ),
                )?;
                let m = self.match_opts(&mut a)?;
                let index = if name == "date" {
                    self.index(&mut a)?
                } else {
                    None
                };
                let zone = match (a.take("zone"), a.take("originalzone")) {
                    (Some((Some(Arg::Str(z)), p)), None) => {
                        Zone::Fixed(date::parse_zone(&z).ok_or_else(|| {
                            CompileError::at(
                                p,
                                format!("invalid time zone \"{z}\" (use +hhmm or -hhmm)"),
                            )
                        })?)
                    }
                    (None, Some(_)) => Zone::Original,
                    (None, None) => Zone::Local,
                    _ => {
                        return Err(CompileError::at(
                            at,
                            ":zone and :originalzone exclude each other",
                        ))
                    }
                };
                let part_at = a.positional[n - 2].1;
                let part_s = self.string(&a, n - 2)?;
                let part = date::parse_part(&part_s).ok_or_else(|| {
                    CompileError::at(part_at, format!("unknown date part \"{part_s}\""))
                })?;
                let keys = self.list(&a, n - 1)?;
                if name == "date" {
                    Test::Date {
                        m,
                        zone,
                        index,
                        header: self.string(&a, 0)?,
                        part,
                        keys,
                    }
                } else {
                    Test::CurrentDate {
                        m,
                        zone,
                        part,
                        keys,
                    }
                }
            }
            "mailboxexists" => {
                self.need(Extension::Mailbox, at, "mailboxexists")?;
                let a = self.args(name, at, raw, &[], common_param)?;
                a.arity(1, "mailboxexists <mailbox-names: string-list>")?;
                Test::MailboxExists(self.list(&a, 0)?)
            }
            other => return Err(CompileError::at(at, format!("unknown test `{other}`"))),
        })
    }

    fn match_opts(&self, a: &mut Args) -> Result<Match, CompileError> {
        let mut kind = None;
        let mut kind_at = a.at;
        for tag in ["is", "contains", "matches", "count", "value"] {
            if let Some((v, p)) = a.take(tag) {
                if kind.is_some() {
                    return Err(CompileError::at(p, "only one match type may be given"));
                }
                kind_at = p;
                kind = Some(match tag {
                    "is" => MatchKind::Is,
                    "contains" => MatchKind::Contains,
                    "matches" => MatchKind::Matches,
                    _ => {
                        self.need(Extension::Relational, p, &format!(":{tag}"))?;
                        let Some(Arg::Str(r)) = v else {
                            return Err(CompileError::at(
                                p,
                                format!(":{tag} needs a relation such as \"gt\""),
                            ));
                        };
                        let rel = match r.to_ascii_lowercase().as_str() {
                            "gt" => Relation::Gt,
                            "ge" => Relation::Ge,
                            "lt" => Relation::Lt,
                            "le" => Relation::Le,
                            "eq" => Relation::Eq,
                            "ne" => Relation::Ne,
                            _ => {
                                return Err(CompileError::at(
                                    p,
                                    format!("unknown relation \"{r}\" (gt, ge, lt, le, eq, ne)"),
                                ))
                            }
                        };
                        if tag == "count" {
                            MatchKind::Count(rel)
                        } else {
                            MatchKind::Value(rel)
                        }
                    }
                });
            }
        }
        let kind = kind.unwrap_or(MatchKind::Is);
        let comparator = match a.take("comparator") {
            // Comparator names compare case-insensitively (RFC 4790 §3.1).
            Some((Some(Arg::Str(c)), p)) => match c.to_ascii_lowercase().as_str() {
                "i;octet" => Comparator::Octet,
                "i;ascii-casemap" => Comparator::AsciiCasemap,
                "i;ascii-numeric" => {
                    self.need(
                        Extension::ComparatorNumeric,
                        p,
                        "comparator i;ascii-numeric",
                    )?;
                    Comparator::AsciiNumeric
                }
                _ => return Err(CompileError::at(p, format!("unknown comparator \"{c}\""))),
            },
            _ => Comparator::AsciiCasemap,
        };
        if comparator == Comparator::AsciiNumeric
            && matches!(kind, MatchKind::Contains | MatchKind::Matches)
        {
            return Err(CompileError::at(
                kind_at,
                "i;ascii-numeric supports only :is, :count and :value",
            ));
        }
        Ok(Match { kind, comparator })
    }

    fn addr_part(&self, a: &mut Args) -> Result<AddrPart, CompileError> {
        let mut part = None;
        for tag in ADDR_TAGS {
            if let Some((_, p)) = a.take(tag) {
                if part.is_some() {
                    return Err(CompileError::at(p, "only one address part may be given"));
                }
                part = Some(match *tag {
                    "all" => AddrPart::All,
                    "localpart" => AddrPart::Local,
                    "domain" => AddrPart::Domain,
                    t => {
                        self.need(Extension::Subaddress, p, &format!(":{t}"))?;
                        if t == "user" {
                            AddrPart::User
                        } else {
                            AddrPart::Detail
                        }
                    }
                });
            }
        }
        Ok(part.unwrap_or(AddrPart::All))
    }

    fn index(&self, a: &mut Args) -> Result<Option<Index>, CompileError> {
        let last = a.take("last");
        match a.take("index") {
            Some((Some(Arg::Number(n)), p)) => {
                self.need(Extension::Index, p, ":index")?;
                if n == 0 {
                    return Err(CompileError::at(p, ":index counts from 1"));
                }
                Ok(Some(Index {
                    n: usize::try_from(n).unwrap_or(usize::MAX),
                    last: last.is_some(),
                }))
            }
            _ => match last {
                Some((_, p)) => Err(CompileError::at(p, ":last needs :index")),
                None => Ok(None),
            },
        }
    }
}
