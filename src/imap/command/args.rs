//! Argument parsers of the larger commands: LIST, APPEND, SEARCH, SORT, FETCH, STORE, COPY and
//! MOVE. Sans-I/O, tested through the command table tests.

use super::super::date;
use super::super::fetch_items::parse_fetch_items;
use super::super::parser::{err, Lexer, PResult, SyntaxError};
use super::super::search::{parse_search_key, SearchKey};
use super::{
    mailbox, seq_set, status_item, Command, ListOpts, ParseLimits, ReturnOpt, SortKey, StoreOp,
};

pub(super) fn list(l: &mut Lexer, lsub: bool) -> PResult<Command> {
    let mut opts = ListOpts {
        lsub,
        subscribed: lsub,
        ..Default::default()
    };
    l.sp()?;
    if !lsub && l.peek() == Some(b'(') {
        opts.extended = true;
        for o in l.list(true, |l| l.atom_upper())? {
            match o.as_str() {
                "SUBSCRIBED" => opts.subscribed = true,
                "SPECIAL-USE" => opts.special_use_only = true,
                "RECURSIVEMATCH" => opts.recursive = true,
                "REMOTE" => {}
                _ => return err("unknown LIST selection option"),
            }
        }
        if opts.recursive && !opts.subscribed && !opts.special_use_only {
            return err("RECURSIVEMATCH needs another selection option");
        }
        l.sp()?;
    }
    let reference = l.astring_utf8()?;
    l.sp()?;
    let patterns = if !lsub && l.peek() == Some(b'(') {
        opts.extended = true;
        l.list(false, |l| l.list_mailbox())?
    } else {
        vec![l.list_mailbox()?]
    };
    if !lsub && l.eat(b' ') {
        if !l.keyword("RETURN") {
            return err("expected RETURN");
        }
        opts.extended = true;
        l.sp()?;
        l.open()?;
        let mut first = true;
        while !l.close() {
            if !first {
                l.sp()?;
            }
            first = false;
            match l.atom_upper()?.as_str() {
                "SUBSCRIBED" => opts.return_subscribed = true,
                "CHILDREN" => opts.return_children = true,
                "SPECIAL-USE" => opts.return_special_use = true,
                "STATUS" => {
                    l.sp()?;
                    opts.return_status = Some(l.list(false, status_item)?);
                }
                _ => return err("unknown LIST return option"),
            }
        }
    }
    Ok(Command::List {
        reference,
        patterns,
        opts,
    })
}

pub(super) fn append(l: &mut Lexer) -> PResult<Command> {
    l.sp()?;
    let mailbox = mailbox(l)?;
    l.sp()?;
    let mut flags = Vec::new();
    if l.peek() == Some(b'(') {
        flags = l.list(true, |l| l.flag())?;
        l.sp()?;
    }
    let mut date = None;
    if l.peek() == Some(b'"') {
        let s = l.string()?;
        let s = std::str::from_utf8(&s).or_else(|_| err("invalid date-time"))?;
        date =
            Some(date::parse_date_time(s).ok_or_else(|| SyntaxError("invalid date-time".into()))?);
        l.sp()?;
    }
    let utf8 = l.keyword("UTF8");
    let message = if utf8 {
        l.sp()?;
        l.open()?;
        let m = l.literal8()?.to_vec();
        if !l.close() {
            return err("expected ')' after the UTF8 literal");
        }
        m
    } else {
        l.literal8()?.to_vec()
    };
    Ok(Command::Append {
        mailbox,
        flags,
        date,
        message,
        utf8,
    })
}

/// `[RETURN (…)] [CHARSET x]` before the criteria.
pub(super) fn search_prefix(l: &mut Lexer) -> PResult<Option<Vec<ReturnOpt>>> {
    let mut ret = None;
    if l.keyword("RETURN") {
        l.sp()?;
        let opts = l.list(true, |l| {
            Ok(match l.atom_upper()?.as_str() {
                "MIN" => ReturnOpt::Min,
                "MAX" => ReturnOpt::Max,
                "ALL" => ReturnOpt::All,
                "COUNT" => ReturnOpt::Count,
                "SAVE" => ReturnOpt::Save,
                _ => return err("unknown RETURN option"),
            })
        })?;
        ret = Some(if opts.is_empty() {
            vec![ReturnOpt::All]
        } else {
            opts
        });
        l.sp()?;
    }
    Ok(ret)
}

pub(super) fn charset(l: &mut Lexer) -> PResult<()> {
    let cs = l.astring()?;
    if !(cs.eq_ignore_ascii_case(b"UTF-8") || cs.eq_ignore_ascii_case(b"US-ASCII")) {
        return err("[BADCHARSET (UTF-8 US-ASCII)] unsupported charset");
    }
    Ok(())
}

pub(super) fn search_keys(l: &mut Lexer, limits: ParseLimits) -> PResult<SearchKey> {
    let mut keys = vec![parse_search_key(l, limits)?];
    while l.eat(b' ') {
        keys.push(parse_search_key(l, limits)?);
    }
    Ok(if keys.len() == 1 {
        keys.remove(0)
    } else {
        SearchKey::And(keys)
    })
}

pub(super) fn search(l: &mut Lexer, uid: bool, limits: ParseLimits) -> PResult<Command> {
    l.sp()?;
    let ret = search_prefix(l)?;
    let with_charset = l.keyword("CHARSET");
    if with_charset {
        l.sp()?;
        charset(l)?;
        l.sp()?;
    }
    let key = search_keys(l, limits)?;
    Ok(Command::Search {
        uid,
        ret,
        charset: with_charset,
        key,
    })
}

pub(super) fn sort(l: &mut Lexer, uid: bool, limits: ParseLimits) -> PResult<Command> {
    l.sp()?;
    let ret = search_prefix(l)?;
    let keys = l.list(false, |l| {
        let k = l.atom_upper()?;
        if k == "REVERSE" {
            l.sp()?;
            return sort_key(&l.atom_upper()?).map(|k| (k, true));
        }
        sort_key(&k).map(|k| (k, false))
    })?;
    l.sp()?;
    charset(l)?;
    l.sp()?;
    let key = search_keys(l, limits)?;
    Ok(Command::Sort {
        uid,
        ret,
        keys,
        key,
    })
}

pub(super) fn sort_key(k: &str) -> PResult<SortKey> {
    Ok(match k {
        "ARRIVAL" => SortKey::Arrival,
        "CC" => SortKey::Cc,
        "DATE" => SortKey::Date,
        "FROM" => SortKey::From,
        "SIZE" => SortKey::Size,
        "SUBJECT" => SortKey::Subject,
        "TO" => SortKey::To,
        _ => return err("unknown SORT key"),
    })
}

pub(super) fn fetch(l: &mut Lexer, uid: bool, limits: ParseLimits) -> PResult<Command> {
    l.sp()?;
    let set = seq_set(l, limits)?;
    l.sp()?;
    let items = parse_fetch_items(l)?;
    let mut changed_since = None;
    if l.eat(b' ') {
        l.open()?;
        loop {
            match l.atom_upper()?.as_str() {
                "CHANGEDSINCE" => {
                    l.sp()?;
                    changed_since = Some(l.number64()?);
                }
                _ => return err("unknown FETCH modifier"),
            }
            if l.close() {
                break;
            }
            l.sp()?;
        }
    }
    Ok(Command::Fetch {
        uid,
        set,
        items,
        changed_since,
    })
}

pub(super) fn store(l: &mut Lexer, uid: bool, limits: ParseLimits) -> PResult<Command> {
    l.sp()?;
    let set = seq_set(l, limits)?;
    l.sp()?;
    let mut unchanged_since = None;
    if l.peek() == Some(b'(') {
        l.open()?;
        if !l.keyword("UNCHANGEDSINCE") {
            return err("unknown STORE modifier");
        }
        l.sp()?;
        unchanged_since = Some(l.number64()?);
        if !l.close() {
            return err("expected ')'");
        }
        l.sp()?;
    }
    let item = l.atom_upper()?;
    let (op, rest) = match item.as_bytes().first() {
        Some(b'+') => (StoreOp::Add, &item[1..]),
        Some(b'-') => (StoreOp::Remove, &item[1..]),
        _ => (StoreOp::Replace, item.as_str()),
    };
    let silent = match rest {
        "FLAGS" => false,
        "FLAGS.SILENT" => true,
        _ => return err("expected FLAGS, +FLAGS or -FLAGS"),
    };
    l.sp()?;
    let flags = if l.peek() == Some(b'(') {
        l.list(true, |l| l.flag())?
    } else {
        let mut f = vec![l.flag()?];
        while l.eat(b' ') {
            f.push(l.flag()?);
        }
        f
    };
    Ok(Command::Store {
        uid,
        set,
        op,
        silent,
        flags,
        unchanged_since,
    })
}

pub(super) fn copy(
    l: &mut Lexer,
    uid: bool,
    is_move: bool,
    limits: ParseLimits,
) -> PResult<Command> {
    l.sp()?;
    let set = seq_set(l, limits)?;
    l.sp()?;
    let mailbox = mailbox(l)?;
    Ok(if is_move {
        Command::Move { uid, set, mailbox }
    } else {
        Command::Copy { uid, set, mailbox }
    })
}
