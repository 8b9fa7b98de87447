//! Text → entries: logical lines, pattern syntax, flags, actions and `$n` templates.
//!
//! Errors come back as `(line, kind)`; `Table::parse` adds the table's name.

use regex::RegexBuilder;

use super::{Action, Dialect, Entry, ErrorKind, Limits, Pattern, Piece};

type Result<T> = std::result::Result<T, (usize, ErrorKind)>;

/// Parses a whole table; any error refuses it.
pub(super) fn parse(text: &str, dialect: Dialect, limits: &Limits) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    // Open `if`s: (entry index, line).
    let mut open: Vec<(usize, usize)> = Vec::new();
    let mut rules = 0usize;
    for (line, logical) in logical_lines(text)? {
        let s = logical.trim_end();
        let first = s.chars().next().unwrap_or(' ');
        if !first.is_alphanumeric() {
            let (pattern, flags, rest) = split_pattern(s).map_err(|k| (line, k))?;
            let pattern = compile(&pattern, flags, dialect, limits).map_err(|k| (line, k))?;
            let groups = pattern.regex.captures_len().saturating_sub(1);
            let (action, text) =
                parse_action(rest, pattern.negated, groups).map_err(|k| (line, k))?;
            let captures = text.iter().any(|p| matches!(p, Piece::Group(_)));
            rules += 1;
            entries.push(Entry::Rule {
                pattern,
                action,
                text,
                line,
                captures,
            });
        } else if let Some(after) = keyword(s, "if") {
            let (pattern, flags, rest) =
                split_pattern(after.trim_start()).map_err(|k| (line, k))?;
            if !rest.is_empty() {
                return Err((line, ErrorKind::ExtraText("if /pattern/flags")));
            }
            let pattern = compile(&pattern, flags, dialect, limits).map_err(|k| (line, k))?;
            open.push((entries.len(), line));
            rules += 1;
            entries.push(Entry::If { pattern, end: 0 });
        } else if let Some(after) = keyword(s, "endif") {
            if !after.trim().is_empty() {
                return Err((line, ErrorKind::ExtraText("endif")));
            }
            let (at, _) = open.pop().ok_or((line, ErrorKind::UnbalancedEndif))?;
            let end = entries.len();
            if let Some(Entry::If { end: e, .. }) = entries.get_mut(at) {
                *e = end;
            }
            entries.push(Entry::Endif);
        } else {
            let word: String = s
                .chars()
                .take_while(|c| !c.is_whitespace())
                .take(40)
                .collect();
            return Err((line, ErrorKind::UnknownDirective(word)));
        }
        if rules > limits.max_rules {
            return Err((line, ErrorKind::TooManyRules(limits.max_rules)));
        }
    }
    if let Some(&(_, line)) = open.last() {
        return Err((line, ErrorKind::UnclosedIf));
    }
    Ok(entries)
}

/// Joins continuation lines (starting with whitespace) onto the line before them, dropping
/// blank lines and comments (first non-whitespace character `#`). Each logical line carries
/// its first physical line's number.
fn logical_lines(text: &str) -> Result<Vec<(usize, String)>> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if raw.starts_with(char::is_whitespace) {
            match out.last_mut() {
                Some((_, logical)) => logical.push_str(raw),
                None => return Err((line, ErrorKind::OrphanContinuation)),
            }
        } else {
            out.push((line, raw.to_owned()));
        }
    }
    Ok(out)
}

/// `s` starts with `word` (any case) not followed by an alphanumeric: the rest.
fn keyword<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let head = s.get(..word.len())?;
    let rest = &s[word.len()..];
    (head.eq_ignore_ascii_case(word) && !rest.starts_with(|c: char| c.is_alphanumeric()))
        .then_some(rest)
}

/// A pattern as written, before compiling.
struct RawPattern {
    source: String,
    negated: bool,
}

/// Splits `[!]<d>pattern<d>flags rest` into the pattern, its flags and the rest (trimmed).
/// A backslash escapes the next character (the delimiter included) and stays in the
/// pattern, as in Postfix.
fn split_pattern(s: &str) -> std::result::Result<(RawPattern, &str, &str), ErrorKind> {
    let (negated, s) = match s.strip_prefix('!') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, s),
    };
    let delim = s
        .chars()
        .next()
        .filter(|c| !c.is_alphanumeric() && !c.is_whitespace() && *c != '\\')
        .ok_or(ErrorKind::MissingDelimiter)?;
    let body = &s[delim.len_utf8()..];
    let mut chars = body.char_indices();
    let mut close = None;
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            chars.next();
        } else if c == delim {
            close = Some(i);
            break;
        }
    }
    let close = close.ok_or(ErrorKind::UnterminatedPattern(delim))?;
    let after = &body[close + delim.len_utf8()..];
    let flags_end = after.find(char::is_whitespace).unwrap_or(after.len());
    let (flags, rest) = after.split_at(flags_end);
    Ok((
        RawPattern {
            source: body[..close].to_owned(),
            negated,
        },
        flags,
        rest.trim_start(),
    ))
}

/// Compiles a pattern with the dialect's default flags toggled by `flags`.
fn compile(
    raw: &RawPattern,
    flags: &str,
    dialect: Dialect,
    limits: &Limits,
) -> std::result::Result<Pattern, ErrorKind> {
    let mut icase = true;
    let mut multi = false;
    let mut dotall = true;
    let mut extended = match dialect {
        Dialect::Regexp => true,
        Dialect::Pcre => false,
    };
    let mut anchored = false;
    let mut ungreedy = false;
    for c in flags.chars() {
        match (dialect, c) {
            (_, 'i') => icase = !icase,
            (_, 'm') => multi = !multi,
            (_, 'x') => extended = !extended,
            (Dialect::Pcre, 's') => dotall = !dotall,
            (Dialect::Pcre, 'A') => anchored = !anchored,
            (Dialect::Pcre, 'U') => ungreedy = !ungreedy,
            (Dialect::Pcre, 'E' | 'X') => {}
            _ => return Err(ErrorKind::UnknownFlag(c)),
        }
    }
    let ignore_ws = match dialect {
        Dialect::Regexp => {
            if !extended {
                return Err(ErrorKind::UnsupportedFlag(
                    "x turns off extended syntax; basic regular expressions are not supported: remove the x and write the pattern as an extended one",
                ));
            }
            // POSIX REG_NEWLINE: `.` stops matching newlines when ^/$ match at them.
            dotall = !multi;
            false
        }
        Dialect::Pcre => extended,
    };
    let src = &raw.source;
    if src.len() > limits.max_pattern_len {
        return Err(ErrorKind::PatternTooLong {
            len: src.len(),
            max: limits.max_pattern_len,
        });
    }
    let build = |pattern: &str| {
        RegexBuilder::new(pattern)
            .case_insensitive(icase)
            .multi_line(multi)
            .dot_matches_new_line(dotall)
            .ignore_whitespace(ignore_ws)
            .swap_greed(ungreedy)
            .size_limit(limits.regex_size_limit)
            .dfa_size_limit(limits.dfa_size_limit)
            .build()
            .map_err(|e| regex_error(e, src))
    };
    let mut regex = build(src)?;
    let mut built = src.clone();
    if anchored {
        // Validated alone first, so the wrapper cannot change how the pattern parses; the
        // newline ends a trailing `#` comment in ignore-whitespace mode.
        let end = if ignore_ws { "\n)" } else { ")" };
        built = format!(r"\A(?:{src}{end}");
        regex = build(&built)?;
    }
    // The same expression with the builder's options as leading inline flags, for the
    // table's combined set (every flag set or cleared explicitly).
    let mut on = String::new();
    let mut off = String::new();
    for (flag, set) in [
        ('i', icase),
        ('m', multi),
        ('s', dotall),
        ('x', ignore_ws),
        ('U', ungreedy),
    ] {
        if set {
            on.push(flag)
        } else {
            off.push(flag)
        }
    }
    let sep = if off.is_empty() { "" } else { "-" };
    Ok(Pattern {
        regex,
        negated: raw.negated,
        inline: format!("(?{on}{sep}{off}){built}"),
    })
}

fn regex_error(e: regex::Error, src: &str) -> ErrorKind {
    match e {
        regex::Error::CompiledTooBig(n) => ErrorKind::PatternTooLarge(n),
        regex::Error::Syntax(msg) => {
            if msg.contains("backreference") {
                ErrorKind::UnsupportedFeature("a backreference (\\1)")
            } else if msg.contains("look-around") {
                ErrorKind::UnsupportedFeature("look-around ((?=, (?!, (?<=, (?<!)")
            } else if src.contains("(?>") {
                ErrorKind::UnsupportedFeature("an atomic group ((?>...))")
            } else if src.contains("(?R") || src.contains("(?&") {
                ErrorKind::UnsupportedFeature("recursion ((?R), (?&name))")
            } else if src.contains("*+") || src.contains("++") || src.contains("?+") {
                ErrorKind::UnsupportedFeature("a possessive quantifier (*+, ++, ?+)")
            } else {
                // regex's message spans lines (pattern, caret, reason): keep the reason.
                let reason = msg
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("invalid pattern")
                    .trim()
                    .trim_start_matches("error: ");
                ErrorKind::BadRegex(reason.to_owned())
            }
        }
        other => ErrorKind::BadRegex(other.to_string()),
    }
}

/// Parses `ACTION text` into the action and the text's template.
fn parse_action(
    rest: &str,
    negated: bool,
    groups: usize,
) -> std::result::Result<(Action, Vec<Piece>), ErrorKind> {
    let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let (word, text) = rest.split_at(word_end);
    if word.is_empty() {
        return Err(ErrorKind::MissingAction);
    }
    if word.contains('$') {
        return Err(ErrorKind::DynamicAction(word.to_owned()));
    }
    let action = if word.bytes().all(|b| b.is_ascii_digit()) {
        match (word.len(), word.as_bytes()[0]) {
            (3, b'4' | b'5') => Action::Reply(word.parse().unwrap_or(0)),
            _ => return Err(ErrorKind::BadReplyCode(word.to_owned())),
        }
    } else {
        let upper = word.to_ascii_uppercase();
        match upper.as_str() {
            "REJECT" => Action::Reject,
            "DISCARD" => Action::Discard,
            "WARN" => Action::Warn,
            "HOLD" => Action::Hold,
            "IGNORE" => Action::Ignore,
            "DUNNO" | "OK" => Action::Dunno,
            "FILTER" | "REDIRECT" | "PREPEND" | "REPLACE" | "INFO" | "BCC" | "STRIP" => {
                Action::Unsupported(upper)
            }
            _ => return Err(ErrorKind::UnknownAction(word.to_owned())),
        }
    };
    let pieces = template(text.trim_start())?;
    for piece in &pieces {
        if let Piece::Group(n) = piece {
            if negated {
                return Err(ErrorKind::GroupInNegation);
            }
            if *n > groups {
                return Err(ErrorKind::GroupOutOfRange { group: *n, groups });
            }
        }
    }
    Ok((action, pieces))
}

/// Splits a rule's text into literals and `$n`, `${n}`, `$(n)` references; `$$` is a literal
/// `$`, and a `$` followed by anything else stays literal.
fn template(text: &str) -> std::result::Result<Vec<Piece>, ErrorKind> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        lit.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let (group, consumed) = if let Some(next) = after.strip_prefix('$') {
            lit.push('$');
            rest = next;
            continue;
        } else if digits > 0 {
            (&after[..digits], digits)
        } else if let Some(close) = match after.chars().next() {
            Some('{') => Some('}'),
            Some('(') => Some(')'),
            _ => None,
        } {
            let end = after
                .find(close)
                .ok_or_else(|| ErrorKind::BadSubstitution(format!("${}", clip(after))))?;
            let inner = &after[1..end];
            if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ErrorKind::BadSubstitution(format!("${}", &after[..=end])));
            }
            (inner, end + 1)
        } else {
            lit.push('$');
            rest = after;
            continue;
        };
        let n = group.parse::<usize>().unwrap_or(usize::MAX);
        if !lit.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(&mut lit)));
        }
        pieces.push(Piece::Group(n));
        rest = &after[consumed..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        pieces.push(Piece::Literal(lit));
    }
    Ok(pieces)
}

/// At most 20 characters of `s`, for error messages.
fn clip(s: &str) -> String {
    s.chars().take(20).collect()
}
