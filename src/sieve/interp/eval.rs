//! Evaluating tests: which values each test looks at, and matching them against the keys.

use super::*;

impl Run<'_> {
    fn select(values: Vec<&str>, index: Option<Index>) -> Vec<&str> {
        match index {
            None => values,
            Some(Index { n, last }) => {
                let pos = if last {
                    values.len().checked_sub(n)
                } else {
                    Some(n - 1)
                };
                pos.and_then(|i| values.get(i).copied())
                    .into_iter()
                    .collect()
            }
        }
    }

    pub(super) fn test(&mut self, t: &Test) -> Result<bool, RunError> {
        self.step()?;
        match t {
            Test::True => Ok(true),
            Test::False => Ok(false),
            Test::Not(t) => Ok(!self.test(t)?),
            Test::AllOf(ts) => {
                for t in ts {
                    if !self.test(t)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Test::AnyOf(ts) => {
                for t in ts {
                    if self.test(t)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Test::Exists(names) => {
                let names = self.xs(names);
                Ok(names
                    .iter()
                    .all(|n| self.msg.header_values(n).next().is_some()))
            }
            Test::Size { over, limit } => Ok(if *over {
                self.msg.size > *limit
            } else {
                self.msg.size < *limit
            }),
            Test::Header {
                m,
                index,
                headers,
                keys,
            } => {
                let mut values = Vec::new();
                for h in self.xs(headers) {
                    let vs = Self::select(self.msg.header_values(&h).collect(), *index);
                    values.extend(vs.into_iter().map(str::to_string));
                }
                self.matches(*m, &values, keys)
            }
            Test::Address {
                m,
                part,
                index,
                headers,
                keys,
            } => {
                let mut values = Vec::new();
                for h in self.xs(headers) {
                    for v in Self::select(self.msg.header_values(&h).collect(), *index) {
                        values.extend(
                            address::parse_list(v)
                                .iter()
                                .filter_map(|a| address::part(a, *part)),
                        );
                    }
                }
                self.matches(*m, &values, keys)
            }
            Test::Envelope {
                m,
                part,
                fields,
                keys,
            } => {
                let mut values = Vec::new();
                for f in fields {
                    let a = if f.eq_ignore_ascii_case("from") {
                        &self.env.from
                    } else {
                        &self.env.to
                    };
                    let a = a.trim().trim_start_matches('<').trim_end_matches('>');
                    if a.is_empty() {
                        // The null reverse-path: every part is "" (RFC 5228 §5.4).
                        if *part != AddrPart::Detail {
                            values.push(String::new());
                        }
                    } else {
                        values.extend(address::part(a, *part));
                    }
                }
                self.matches(*m, &values, keys)
            }
            Test::Body { m, transform, keys } => {
                let values: Vec<String> = match transform {
                    BodyTransform::Raw => {
                        vec![String::from_utf8_lossy(&self.msg.body).into_owned()]
                    }
                    BodyTransform::Text if self.msg.parts.is_empty() => {
                        vec![String::from_utf8_lossy(&self.msg.body).into_owned()]
                    }
                    BodyTransform::Text => self
                        .msg
                        .parts
                        .iter()
                        .filter(|p| p.content_type.starts_with("text/"))
                        .map(|p| p.text.clone())
                        .collect(),
                    BodyTransform::Content(types) => {
                        let types = self.xs(types);
                        self.msg
                            .parts
                            .iter()
                            .filter(|p| {
                                types.iter().any(|t| {
                                    let t = t.to_ascii_lowercase();
                                    t.is_empty()
                                        || p.content_type == t
                                        || (!t.contains('/')
                                            && p.content_type.split('/').next() == Some(t.as_str()))
                                })
                            })
                            .map(|p| p.text.clone())
                            .collect()
                    }
                };
                self.matches(*m, &values, keys)
            }
            Test::Date {
                m,
                zone,
                index,
                header,
                part,
                keys,
            } => {
                let header = self.x(header);
                let raw = Self::select(self.msg.header_values(&header).collect(), *index);
                let values: Vec<String> = raw
                    .into_iter()
                    .filter_map(date::parse_rfc5322)
                    .map(|t| {
                        let t = match zone {
                            Zone::Original => t,
                            Zone::Local => t.in_zone(self.now.offset_minutes),
                            Zone::Fixed(z) => t.in_zone(*z),
                        };
                        date::extract(t, *part)
                    })
                    .collect();
                self.matches(*m, &values, keys)
            }
            Test::CurrentDate {
                m,
                zone,
                part,
                keys,
            } => {
                let t = match zone {
                    Zone::Fixed(z) => self.now.in_zone(*z),
                    _ => self.now,
                };
                self.matches(*m, &[date::extract(t, *part)], keys)
            }
            Test::HasFlag { m, vars, flags } => {
                let values = match vars {
                    None => self.flags.clone(),
                    Some(vs) => flag_list(vs.iter().map(|v| {
                        self.vars
                            .named
                            .get(&v.to_ascii_lowercase())
                            .cloned()
                            .unwrap_or_default()
                    })),
                };
                let keys = flag_list(self.xs(flags));
                self.matches_expanded(*m, &values, &keys)
            }
            Test::String { m, source, keys } => {
                let mut values = self.xs(source);
                if matches!(m.kind, MatchKind::Count(_)) {
                    // RFC 5229 §5: empty strings are not counted.
                    values.retain(|v| !v.is_empty());
                }
                self.matches(*m, &values, keys)
            }
            Test::MailboxExists(names) => {
                let names = self.xs(names);
                Ok(names.iter().all(|n| {
                    self.env.mailboxes.contains(n)
                        || (n.eq_ignore_ascii_case("INBOX")
                            && self
                                .env
                                .mailboxes
                                .iter()
                                .any(|m| m.eq_ignore_ascii_case("INBOX")))
                }))
            }
        }
    }

    fn matches(&mut self, m: Match, values: &[String], keys: &[String]) -> Result<bool, RunError> {
        let keys = self.xs(keys);
        self.matches_expanded(m, values, &keys)
    }

    fn matches_expanded(
        &mut self,
        m: Match,
        values: &[String],
        keys: &[String],
    ) -> Result<bool, RunError> {
        let limit = self.limits.max_steps;
        let exhausted = |_: Exhausted| RunError::TooMuchWork(limit);
        let cmp = m.comparator;
        if let MatchKind::Count(rel) = m.kind {
            let count = values.len().to_string();
            for k in keys {
                self.step()?;
                if matching::relation_holds(rel, matching::order(&count, k, cmp)) {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        for v in values {
            for k in keys {
                self.step()?;
                let hit = match m.kind {
                    MatchKind::Is => matching::is(v, k, cmp),
                    MatchKind::Contains => {
                        matching::contains(v, k, cmp, &mut self.budget).map_err(exhausted)?
                    }
                    MatchKind::Value(rel) => {
                        matching::relation_holds(rel, matching::order(v, k, cmp))
                    }
                    MatchKind::Matches | MatchKind::Count(_) => {
                        match matching::matches(v, k, cmp, &mut self.budget).map_err(exhausted)? {
                            Some(caps) => {
                                if self.script.has(Extension::Variables) {
                                    self.vars.matched = caps
                                        .into_iter()
                                        .map(|c| {
                                            variables::truncate(c, self.limits.max_variable_size)
                                        })
                                        .collect();
                                }
                                true
                            }
                            None => false,
                        }
                    }
                };
                if hit {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}
