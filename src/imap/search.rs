//! SEARCH criteria (RFC 3501 §6.4.4, RFC 7162 MODSEQ): the parser and the matcher, plus the
//! per-message values SORT (RFC 5256) orders by.
//!
//! Matching is pure: the session hands each message's metadata and, only when a criterion
//! needs it, the message parsed by `mail-parser`. Text criteria match case-insensitively
//! against both the raw header text and its decoded form (RFC 2047 words, address names).
//! Security note: nesting of `NOT`/`OR`/parentheses is bounded by the lexer, sequence sets
//! stay ranges, and a search that must read messages is bounded by the session.

use mail_parser::{Address, Message};

use crate::store::{Flags, SystemFlag};

use super::command::{seq_set, ParseLimits, SortKey};
use super::date;
use super::parser::{err, Lexer, PResult};
use super::sequence::SeqSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    Flag(SystemFlag, bool),
    Keyword(String, bool),
    New,
    Old,
    Recent,
    Header(String, String),
    Body(String),
    Text(String),
    /// Internal date before / on / since a day number.
    Before(i64),
    On(i64),
    Since(i64),
    SentBefore(i64),
    SentOn(i64),
    SentSince(i64),
    Larger(u64),
    Smaller(u64),
    Uid(SeqSet),
    Seq(SeqSet),
    Modseq(u64),
    Not(Box<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    And(Vec<SearchKey>),
}

fn text_arg(l: &mut Lexer) -> PResult<String> {
    l.sp()?;
    let s = l.astring()?;
    String::from_utf8(s.into_owned()).or_else(|_| err("search string is not UTF-8"))
}

fn date_arg(l: &mut Lexer) -> PResult<i64> {
    l.sp()?;
    let s = l.astring()?;
    std::str::from_utf8(&s)
        .ok()
        .and_then(date::parse_date)
        .map_or_else(|| err("invalid date"), Ok)
}

/// Parses one search key (a parenthesised group counts as one).
pub fn parse_search_key(l: &mut Lexer, limits: ParseLimits) -> PResult<SearchKey> {
    search_key(l, limits, 0)
}

/// One search key at nesting `depth`: `NOT`, `OR` and parentheses go one level deeper, up to
/// `max_search_depth`, so neither this parser nor the matcher recurses without bound.
fn search_key(l: &mut Lexer, limits: ParseLimits, depth: usize) -> PResult<SearchKey> {
    use SearchKey as K;
    use SystemFlag as F;
    let nested = |l: &mut Lexer| {
        if depth >= limits.max_search_depth {
            return err(format!(
                "search criteria nested too deeply (limit {})",
                limits.max_search_depth
            ));
        }
        search_key(l, limits, depth + 1)
    };
    if l.peek() == Some(b'(') {
        let keys = l.list(false, nested)?;
        return Ok(if keys.len() == 1 {
            keys.into_iter().next().unwrap_or(K::All)
        } else {
            K::And(keys)
        });
    }
    if l.peek()
        .is_some_and(|b| b.is_ascii_digit() || b == b'*' || b == b'$')
    {
        return Ok(K::Seq(seq_set(l, limits)?));
    }
    let word = l.atom_upper()?;
    Ok(match word.as_str() {
        "ALL" => K::All,
        "ANSWERED" => K::Flag(F::Answered, true),
        "DELETED" => K::Flag(F::Deleted, true),
        "DRAFT" => K::Flag(F::Draft, true),
        "FLAGGED" => K::Flag(F::Flagged, true),
        "SEEN" => K::Flag(F::Seen, true),
        "UNANSWERED" => K::Flag(F::Answered, false),
        "UNDELETED" => K::Flag(F::Deleted, false),
        "UNDRAFT" => K::Flag(F::Draft, false),
        "UNFLAGGED" => K::Flag(F::Flagged, false),
        "UNSEEN" => K::Flag(F::Seen, false),
        "NEW" => K::New,
        "OLD" => K::Old,
        "RECENT" => K::Recent,
        "KEYWORD" | "UNKEYWORD" => {
            l.sp()?;
            let k = String::from_utf8_lossy(l.atom()?).into_owned();
            K::Keyword(k, word == "KEYWORD")
        }
        "BCC" | "CC" | "FROM" | "SUBJECT" | "TO" => K::Header(word.clone(), text_arg(l)?),
        "HEADER" => {
            let name = text_arg(l)?.to_ascii_uppercase();
            K::Header(name, text_arg(l)?)
        }
        "BODY" => K::Body(text_arg(l)?),
        "TEXT" => K::Text(text_arg(l)?),
        "BEFORE" => K::Before(date_arg(l)?),
        "ON" => K::On(date_arg(l)?),
        "SINCE" => K::Since(date_arg(l)?),
        "SENTBEFORE" => K::SentBefore(date_arg(l)?),
        "SENTON" => K::SentOn(date_arg(l)?),
        "SENTSINCE" => K::SentSince(date_arg(l)?),
        "LARGER" | "SMALLER" => {
            l.sp()?;
            let n = l.number64()?;
            if word == "LARGER" {
                K::Larger(n)
            } else {
                K::Smaller(n)
            }
        }
        "UID" => {
            l.sp()?;
            K::Uid(seq_set(l, limits)?)
        }
        "MODSEQ" => {
            l.sp()?;
            // Optional entry name and type (RFC 7162 §3.1.5): accepted, not used.
            if l.peek() == Some(b'"') {
                l.string()?;
                l.sp()?;
                l.atom()?;
                l.sp()?;
            }
            K::Modseq(l.number64()?)
        }
        "NOT" => {
            l.sp()?;
            K::Not(Box::new(nested(l)?))
        }
        "OR" => {
            l.sp()?;
            let a = nested(l)?;
            l.sp()?;
            let b = nested(l)?;
            K::Or(Box::new(a), Box::new(b))
        }
        _ => return err("unknown search key"),
    })
}

impl SearchKey {
    /// Whether matching needs the message's contents.
    pub fn needs_content(&self) -> bool {
        match self {
            SearchKey::Header(..)
            | SearchKey::Body(_)
            | SearchKey::Text(_)
            | SearchKey::SentBefore(_)
            | SearchKey::SentOn(_)
            | SearchKey::SentSince(_) => true,
            SearchKey::Not(k) => k.needs_content(),
            SearchKey::Or(a, b) => a.needs_content() || b.needs_content(),
            SearchKey::And(ks) => ks.iter().any(SearchKey::needs_content),
            _ => false,
        }
    }

    /// Whether the key mentions `NEW`, `OLD` or `RECENT` (gone from IMAP4rev2).
    pub fn uses_recent(&self) -> bool {
        match self {
            SearchKey::New | SearchKey::Old | SearchKey::Recent => true,
            SearchKey::Not(k) => k.uses_recent(),
            SearchKey::Or(a, b) => a.uses_recent() || b.uses_recent(),
            SearchKey::And(ks) => ks.iter().any(SearchKey::uses_recent),
            _ => false,
        }
    }

    /// Whether the key mentions MODSEQ (the response then carries `(MODSEQ n)`).
    pub fn uses_modseq(&self) -> bool {
        match self {
            SearchKey::Modseq(_) => true,
            SearchKey::Not(k) => k.uses_modseq(),
            SearchKey::Or(a, b) => a.uses_modseq() || b.uses_modseq(),
            SearchKey::And(ks) => ks.iter().any(SearchKey::uses_modseq),
            _ => false,
        }
    }
}

/// One message as a search sees it.
pub struct Candidate<'a> {
    pub seq: u32,
    pub uid: u32,
    pub flags: &'a Flags,
    pub size: u64,
    pub internal_date: i64,
    pub modseq: u64,
    /// The message is `\Recent` in this session.
    pub recent: bool,
    /// The saved search result (`$`, RFC 5182): UIDs, ascending.
    pub saved: &'a [u32],
    /// The raw message and its parse, present when the key needs contents.
    pub content: Option<(&'a [u8], &'a Message<'a>)>,
    /// `*` for sequence numbers and UIDs.
    pub max_seq: u32,
    pub max_uid: u32,
}

/// Whether `c` matches `key`.
pub fn matches(key: &SearchKey, c: &Candidate) -> bool {
    use SearchKey as K;
    let day = |secs: i64| secs.div_euclid(86_400);
    let sent_day = || {
        c.content
            .and_then(|(_, m)| m.date())
            .map(|d| day(d.to_timestamp()))
    };
    match key {
        K::All => true,
        K::Flag(f, on) => c.flags.contains(*f) == *on,
        K::Keyword(k, on) => c.flags.keywords().any(|x| x.eq_ignore_ascii_case(k)) == *on,
        K::New => c.recent && !c.flags.contains(SystemFlag::Seen),
        K::Recent => c.recent,
        K::Old => !c.recent,
        K::Larger(n) => c.size > *n,
        K::Smaller(n) => c.size < *n,
        K::Before(d) => day(c.internal_date) < *d,
        K::On(d) => day(c.internal_date) == *d,
        K::Since(d) => day(c.internal_date) >= *d,
        K::SentBefore(d) => sent_day().is_some_and(|s| s < *d),
        K::SentOn(d) => sent_day().is_some_and(|s| s == *d),
        K::SentSince(d) => sent_day().is_some_and(|s| s >= *d),
        K::Uid(set) | K::Seq(set) if set.saved => c.saved.binary_search(&c.uid).is_ok(),
        K::Uid(set) => set.resolve(c.max_uid).contains(c.uid),
        K::Seq(set) => set.resolve(c.max_seq).contains(c.seq),
        K::Modseq(m) => c.modseq >= *m,
        K::Not(k) => !matches(k, c),
        K::Or(a, b) => matches(a, c) || matches(b, c),
        K::And(ks) => ks.iter().all(|k| matches(k, c)),
        K::Header(name, text) => c
            .content
            .is_some_and(|(raw, m)| header_matches(raw, m, name, text)),
        K::Body(text) => c.content.is_some_and(|(raw, m)| body_matches(raw, m, text)),
        K::Text(text) => c
            .content
            .is_some_and(|(raw, m)| contains_ci(raw, text) || body_matches(raw, m, text)),
    }
}

fn contains_ci(hay: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    if n.is_empty() {
        return true;
    }
    hay.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

fn contains_text(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(&needle.to_lowercase())
}

fn header_matches(raw: &[u8], m: &Message, name: &str, text: &str) -> bool {
    for h in m.root_part().headers.iter() {
        if !h.name().eq_ignore_ascii_case(name) {
            continue;
        }
        if text.is_empty() {
            return true;
        }
        let v = raw
            .get(h.offset_start as usize..h.offset_end as usize)
            .unwrap_or_default();
        if contains_ci(v, text) {
            return true;
        }
        let decoded = match h.value() {
            mail_parser::HeaderValue::Text(t) => t.to_string(),
            mail_parser::HeaderValue::TextList(l) => l.join(" "),
            mail_parser::HeaderValue::Address(a) => address_text(a),
            _ => String::new(),
        };
        if contains_text(&decoded, text) {
            return true;
        }
    }
    false
}

fn address_text(a: &Address) -> String {
    let mut out = String::new();
    for addr in a.iter() {
        if let Some(n) = &addr.name {
            out.push_str(n);
            out.push(' ');
        }
        if let Some(e) = &addr.address {
            out.push_str(e);
            out.push(' ');
        }
    }
    out
}

fn body_matches(raw: &[u8], m: &Message, text: &str) -> bool {
    let body = raw
        .get(m.root_part().offset_body as usize..)
        .unwrap_or_default();
    if contains_ci(body, text) {
        return true;
    }
    (0..m.text_body_count()).any(|i| m.body_text(i).is_some_and(|t| contains_text(&t, text)))
}

/// The value a message sorts by for one key (RFC 5256 §2.2: missing values sort first).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortValue {
    Num(i64),
    Text(String),
}

pub fn sort_value(
    key: SortKey,
    uid: u32,
    size: u64,
    internal_date: i64,
    m: Option<&Message>,
) -> SortValue {
    let first_mailbox = |a: Option<&Address>| {
        a.and_then(|a| a.first())
            .and_then(|a| a.address.as_deref())
            .and_then(|e| e.split('@').next())
            .unwrap_or("")
            .to_lowercase()
    };
    match key {
        SortKey::Arrival => {
            SortValue::Num(internal_date.saturating_mul(1 << 20) + i64::from(uid % (1 << 20)))
        }
        SortKey::Size => SortValue::Num(size as i64),
        SortKey::Date => SortValue::Num(
            m.and_then(|m| m.date())
                .map(|d| d.to_timestamp())
                .unwrap_or(internal_date),
        ),
        SortKey::From => SortValue::Text(first_mailbox(m.and_then(|m| m.from()))),
        SortKey::To => SortValue::Text(first_mailbox(m.and_then(|m| m.to()))),
        SortKey::Cc => SortValue::Text(first_mailbox(m.and_then(|m| m.cc()))),
        SortKey::Subject => {
            SortValue::Text(base_subject(m.and_then(|m| m.subject()).unwrap_or("")))
        }
    }
}

/// RFC 5256 base subject, simplified: leading `Re:`/`Fwd:`/`Fw:` and trailing `(fwd)` removed,
/// whitespace collapsed, lowercased.
pub fn base_subject(s: &str) -> String {
    let mut s = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    loop {
        let before = s.len();
        for p in ["re:", "fwd:", "fw:", "[fwd:"] {
            if let Some(r) = s.strip_prefix(p) {
                s = r.trim_start().to_string();
            }
        }
        if let Some(r) = s.strip_suffix("(fwd)") {
            s = r.trim_end().to_string();
        }
        if s.len() == before {
            return s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ParseLimits = ParseLimits {
        max_nesting: 8,
        max_ranges: 100,
        max_search_depth: 8,
    };

    fn key(s: &str) -> SearchKey {
        let mut l = Lexer::new(s.as_bytes(), 8);
        let k = parse_search_key(&mut l, LIMITS).unwrap();
        l.end().unwrap();
        k
    }

    const MSG: &[u8] = b"From: =?utf-8?q?J=C3=BCrgen?= <jurgen@example.org>\r\nTo: bob@example.org\r\nSubject: Re: Quarterly report\r\nDate: Tue, 1 Feb 1994 10:00:00 +0000\r\nX-Tag: blue\r\n\r\nThe numbers are in.\r\n";

    #[test]
    fn match_table() {
        let parsed = mail_parser::MessageParser::new().parse(MSG).unwrap();
        let flags = Flags::from_imap(["\\Seen", "$Work"]).unwrap();
        let c = Candidate {
            seq: 3,
            uid: 30,
            flags: &flags,
            size: MSG.len() as u64,
            internal_date: 8797 * 86_400 + 5,
            modseq: 7,
            recent: true,
            saved: &[10, 30],
            content: Some((MSG, &parsed)),
            max_seq: 5,
            max_uid: 50,
        };
        let cases = [
            ("ALL", true),
            ("SEEN", true),
            ("UNSEEN", false),
            ("KEYWORD $work", true),
            ("UNKEYWORD $Work", false),
            ("FROM \"JÜRGEN\"", true),
            ("FROM jurgen@EXAMPLE", true),
            ("TO alice", false),
            ("SUBJECT quarterly", true),
            ("HEADER X-Tag BLUE", true),
            ("HEADER X-Missing \"\"", false),
            ("HEADER X-Tag \"\"", true),
            ("BODY numbers", true),
            ("BODY quarterly", false),
            ("TEXT quarterly", true),
            ("ON 1-Feb-1994", true),
            ("SINCE 2-Feb-1994", false),
            ("BEFORE 2-Feb-1994", true),
            ("SENTON 1-Feb-1994", true),
            ("SENTSINCE 1-Jan-2000", false),
            ("LARGER 10", true),
            ("SMALLER 10", false),
            ("UID 25:35", true),
            ("UID *", false),
            ("3", true),
            ("4:*", false),
            ("MODSEQ 7", true),
            ("MODSEQ 8", false),
            ("NOT SEEN", false),
            ("OR UNSEEN FROM jurgen", true),
            ("(SEEN (FROM bob))", false),
            ("RECENT", true),
            ("OLD", false),
            ("NEW", false),
            ("NOT OLD", true),
            ("$", true),
            ("UID $", true),
        ];
        for (s, want) in cases {
            assert_eq!(matches(&key(s), &c), want, "{s}");
        }
    }

    #[test]
    fn bad_keys() {
        for bad in [
            "",
            "FOO",
            "ON 32-Jan-2000",
            "UID",
            "OR SEEN",
            "LARGER x",
            "NOT",
        ] {
            let mut l = Lexer::new(bad.as_bytes(), 8);
            assert!(parse_search_key(&mut l, LIMITS).is_err(), "{bad}");
        }
        // NOT, OR and parentheses nest up to max_search_depth (8 here), not beyond: a chain
        // of thousands once overflowed the stack (found by imap::fuzz).
        let deep = |n: usize, k: &str| {
            format!(
                "{}SEEN{}",
                k.repeat(n),
                ")".repeat(if k == "(" { n } else { 0 })
            )
        };
        for k in ["NOT ", "OR SEEN ", "("] {
            key(&deep(8, k));
            let too_deep = deep(9, k);
            let mut l = Lexer::new(too_deep.as_bytes(), 100);
            let e = parse_search_key(&mut l, LIMITS).unwrap_err();
            assert!(e.0.contains("nested too deeply"), "{k}: {e}");
            let huge = deep(100_000, k);
            let mut l = Lexer::new(huge.as_bytes(), 100);
            assert!(parse_search_key(&mut l, LIMITS).is_err());
        }
        assert!(key("OR (FROM a) BODY b").needs_content());
        assert!(!key("NOT (SEEN UID 1:*)").needs_content());
        assert!(key("OR SEEN (NOT NEW)").uses_recent());
        assert!(!key("(SEEN UNSEEN)").uses_recent());
    }

    #[test]
    fn base_subjects() {
        assert_eq!(
            base_subject("Re: RE: Fwd:  Hello   world (fwd)"),
            "hello world"
        );
        assert_eq!(base_subject(""), "");
    }
}
