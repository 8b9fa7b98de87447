//! IMAP commands: the [`Command`] values the session executes, and their parser over one
//! assembled command (see module `parser` for framing and the lexer).
//!
//! Sans-I/O and table-tested. Mailbox names come out as the client wrote them (modified
//! UTF-7 or, after `ENABLE UTF8=ACCEPT`, UTF-8); the session decodes them. SEARCH criteria
//! and FETCH items have their own modules (`search`, `fetch_items`). Security note: the parser
//! never allocates in proportion to a number the client wrote (sequence sets stay ranges),
//! and nesting is bounded by the lexer.

use crate::store::SpecialUse;

use super::fetch_items::FetchAtt;
use super::parser::{err, Lexer, PResult, SyntaxError};
use super::search::SearchKey;
use super::sequence::SeqSet;

/// What a STATUS (or LIST RETURN STATUS) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    HighestModseq,
}

/// How STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Add,
    Remove,
    Replace,
}

/// ESEARCH `RETURN` options (RFC 4731), and `SAVE` (RFC 5182, SEARCHRES).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnOpt {
    Min,
    Max,
    All,
    Count,
    Save,
}

/// SORT keys (RFC 5256).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
}

/// LIST options (RFC 5258, 6154).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOpts {
    /// `LIST (SUBSCRIBED)` or LSUB.
    pub subscribed: bool,
    /// `LIST (SPECIAL-USE)`: only mailboxes with a special use.
    pub special_use_only: bool,
    /// `RECURSIVEMATCH` (accepted; it changes nothing for us without CHILDINFO).
    pub recursive: bool,
    pub return_subscribed: bool,
    pub return_children: bool,
    pub return_special_use: bool,
    pub return_status: Option<Vec<StatusItem>>,
    /// The command was LSUB.
    pub lsub: bool,
    /// LIST-EXTENDED syntax was used (selection or return options, several patterns): then
    /// a name that does not exist is `\NonExistent`, as in IMAP4rev2, not `\Noselect`.
    pub extended: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Capability,
    Noop,
    Logout,
    StartTls,
    Login {
        user: String,
        password: String,
    },
    Authenticate {
        mechanism: String,
        /// SASL-IR: the initial response, still base64 (`=` is an empty one).
        initial: Option<Vec<u8>>,
    },
    Id,
    Enable(Vec<String>),
    Namespace,
    Select {
        mailbox: String,
        read_only: bool,
        condstore: bool,
    },
    Create {
        mailbox: String,
        special_use: Option<SpecialUse>,
    },
    Delete(String),
    Rename {
        from: String,
        to: String,
    },
    Subscribe(String),
    Unsubscribe(String),
    List {
        reference: String,
        patterns: Vec<String>,
        opts: ListOpts,
    },
    Status {
        mailbox: String,
        items: Vec<StatusItem>,
    },
    Append {
        mailbox: String,
        flags: Vec<String>,
        date: Option<i64>,
        message: Vec<u8>,
        /// Sent as `UTF8 (~{n})` (RFC 6855): valid only after `ENABLE UTF8=ACCEPT`.
        utf8: bool,
    },
    Check,
    Close,
    Unselect,
    Expunge {
        uids: Option<SeqSet>,
    },
    Search {
        uid: bool,
        ret: Option<Vec<ReturnOpt>>,
        /// A `CHARSET` was given (refused after `ENABLE UTF8=ACCEPT`, RFC 6855 errata 4029).
        charset: bool,
        key: SearchKey,
    },
    Sort {
        uid: bool,
        ret: Option<Vec<ReturnOpt>>,
        keys: Vec<(SortKey, bool)>,
        key: SearchKey,
    },
    Fetch {
        uid: bool,
        set: SeqSet,
        items: Vec<FetchAtt>,
        changed_since: Option<u64>,
    },
    Store {
        uid: bool,
        set: SeqSet,
        op: StoreOp,
        silent: bool,
        flags: Vec<String>,
        unchanged_since: Option<u64>,
    },
    Copy {
        uid: bool,
        set: SeqSet,
        mailbox: String,
    },
    Move {
        uid: bool,
        set: SeqSet,
        mailbox: String,
    },
    Idle,
    GetQuota(String),
    GetQuotaRoot(String),
    SetQuota,
}

/// A command that does not parse: BAD with this text (tag present when it could be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCommand {
    pub tag: Option<String>,
    pub text: String,
}

/// Limits the parser enforces.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    pub max_nesting: usize,
    pub max_ranges: usize,
    /// Deepest SEARCH criteria (`NOT`, `OR`, parentheses).
    pub max_search_depth: usize,
}

/// Parses one complete command (final CRLF removed).
pub fn parse(buf: &[u8], limits: ParseLimits) -> Result<(String, Command), BadCommand> {
    let mut l = Lexer::new(buf, limits.max_nesting);
    let tag = match l.tag() {
        Ok(t) => String::from_utf8_lossy(t).into_owned(),
        Err(e) => {
            return Err(BadCommand {
                tag: None,
                text: e.0.into_owned(),
            })
        }
    };
    let cmd = (|| {
        l.sp()?;
        let name = l.atom_upper()?;
        let cmd = command(&mut l, &name, limits)?;
        l.end()?;
        Ok::<_, SyntaxError>(cmd)
    })();
    cmd.map(|c| (tag.clone(), c)).map_err(|e| BadCommand {
        tag: Some(tag),
        text: e.0.into_owned(),
    })
}

pub(super) fn mailbox(l: &mut Lexer) -> PResult<String> {
    l.astring_utf8()
}

pub(crate) fn seq_set(l: &mut Lexer, limits: ParseLimits) -> PResult<SeqSet> {
    let chars = l.seq_chars()?;
    SeqSet::parse(chars, limits.max_ranges).map_err(|e| SyntaxError(e.to_string().into()))
}

fn command(l: &mut Lexer, name: &str, limits: ParseLimits) -> PResult<Command> {
    Ok(match name {
        "CAPABILITY" => Command::Capability,
        "NOOP" => Command::Noop,
        "LOGOUT" => Command::Logout,
        "STARTTLS" => Command::StartTls,
        "CHECK" => Command::Check,
        "CLOSE" => Command::Close,
        "UNSELECT" => Command::Unselect,
        "IDLE" => Command::Idle,
        "NAMESPACE" => Command::Namespace,
        "EXPUNGE" => Command::Expunge { uids: None },
        "LOGIN" => {
            l.sp()?;
            let user = l.astring_utf8()?;
            l.sp()?;
            let password = l.astring_utf8()?;
            Command::Login { user, password }
        }
        "AUTHENTICATE" => {
            l.sp()?;
            let mechanism = l.atom_upper()?;
            let initial = if l.eat(b' ') {
                let ir = l.take_rest().to_vec();
                if ir.is_empty() {
                    return err("empty initial response");
                }
                Some(ir)
            } else {
                None
            };
            Command::Authenticate { mechanism, initial }
        }
        "ID" => {
            l.sp()?;
            if !l.keyword("NIL") {
                let fields = l.list(true, |l| l.nstring().map(|_| ()))?;
                if fields.len() % 2 != 0 || fields.len() > 60 {
                    return err("ID takes up to 30 field-value pairs");
                }
            }
            Command::Id
        }
        "ENABLE" => {
            let mut caps = Vec::new();
            while l.eat(b' ') {
                caps.push(l.atom_upper()?);
            }
            if caps.is_empty() {
                return err("ENABLE needs a capability");
            }
            Command::Enable(caps)
        }
        "SELECT" | "EXAMINE" => {
            l.sp()?;
            let mailbox = mailbox(l)?;
            let mut condstore = false;
            if l.eat(b' ') {
                for p in l.list(false, |l| l.atom_upper())? {
                    match p.as_str() {
                        "CONDSTORE" => condstore = true,
                        _ => return err("unknown SELECT parameter"),
                    }
                }
            }
            Command::Select {
                mailbox,
                read_only: name == "EXAMINE",
                condstore,
            }
        }
        "CREATE" => {
            l.sp()?;
            let mailbox = mailbox(l)?;
            let mut special_use = None;
            if l.eat(b' ') {
                l.open()?;
                if !l.keyword("USE") {
                    return err("unknown CREATE parameter");
                }
                l.sp()?;
                let uses = l.list(false, |l| l.flag())?;
                if uses.len() > 1 {
                    return err("one special use per mailbox");
                }
                special_use = uses.first().map(|u| {
                    SpecialUse::from_imap(u)
                        .ok_or_else(|| SyntaxError("[USEATTR] unknown special use".into()))
                });
                if !l.close() {
                    return err("expected ')'");
                }
            }
            Command::Create {
                mailbox,
                special_use: special_use.transpose()?,
            }
        }
        "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" | "GETQUOTAROOT" => {
            l.sp()?;
            let m = mailbox(l)?;
            match name {
                "DELETE" => Command::Delete(m),
                "SUBSCRIBE" => Command::Subscribe(m),
                "UNSUBSCRIBE" => Command::Unsubscribe(m),
                _ => Command::GetQuotaRoot(m),
            }
        }
        "GETQUOTA" => {
            l.sp()?;
            Command::GetQuota(l.astring_utf8()?)
        }
        "SETQUOTA" => {
            l.sp()?;
            l.astring()?;
            l.sp()?;
            l.list(true, |l| {
                l.atom()?;
                l.sp()?;
                l.number64()
            })?;
            Command::SetQuota
        }
        "RENAME" => {
            l.sp()?;
            let from = mailbox(l)?;
            l.sp()?;
            let to = mailbox(l)?;
            Command::Rename { from, to }
        }
        "LIST" | "LSUB" => args::list(l, name == "LSUB")?,
        "STATUS" => {
            l.sp()?;
            let mailbox = mailbox(l)?;
            l.sp()?;
            let items = l.list(false, status_item)?;
            Command::Status { mailbox, items }
        }
        "APPEND" => args::append(l)?,
        "SEARCH" => args::search(l, false, limits)?,
        "SORT" => args::sort(l, false, limits)?,
        "FETCH" => args::fetch(l, false, limits)?,
        "STORE" => args::store(l, false, limits)?,
        "COPY" | "MOVE" => args::copy(l, false, name == "MOVE", limits)?,
        "UID" => {
            l.sp()?;
            let sub = l.atom_upper()?;
            match sub.as_str() {
                "FETCH" => args::fetch(l, true, limits)?,
                "STORE" => args::store(l, true, limits)?,
                "COPY" | "MOVE" => args::copy(l, true, sub == "MOVE", limits)?,
                "SEARCH" => args::search(l, true, limits)?,
                "SORT" => args::sort(l, true, limits)?,
                "EXPUNGE" => {
                    l.sp()?;
                    Command::Expunge {
                        uids: Some(seq_set(l, limits)?),
                    }
                }
                _ => return err("unknown UID command"),
            }
        }
        _ => return err("unknown command"),
    })
}

pub(super) fn status_item(l: &mut Lexer) -> PResult<StatusItem> {
    Ok(match l.atom_upper()?.as_str() {
        "MESSAGES" => StatusItem::Messages,
        "RECENT" => StatusItem::Recent,
        "UIDNEXT" => StatusItem::UidNext,
        "UIDVALIDITY" => StatusItem::UidValidity,
        "UNSEEN" => StatusItem::Unseen,
        "DELETED" => StatusItem::Deleted,
        "SIZE" => StatusItem::Size,
        "HIGHESTMODSEQ" => StatusItem::HighestModseq,
        _ => return err("unknown STATUS item"),
    })
}

impl Command {
    /// The command's name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Capability => "CAPABILITY",
            Command::Noop => "NOOP",
            Command::Logout => "LOGOUT",
            Command::StartTls => "STARTTLS",
            Command::Login { .. } => "LOGIN",
            Command::Authenticate { .. } => "AUTHENTICATE",
            Command::Id => "ID",
            Command::Enable(_) => "ENABLE",
            Command::Namespace => "NAMESPACE",
            Command::Select {
                read_only: false, ..
            } => "SELECT",
            Command::Select { .. } => "EXAMINE",
            Command::Create { .. } => "CREATE",
            Command::Delete(_) => "DELETE",
            Command::Rename { .. } => "RENAME",
            Command::Subscribe(_) => "SUBSCRIBE",
            Command::Unsubscribe(_) => "UNSUBSCRIBE",
            Command::List { opts, .. } if opts.lsub => "LSUB",
            Command::List { .. } => "LIST",
            Command::Status { .. } => "STATUS",
            Command::Append { .. } => "APPEND",
            Command::Check => "CHECK",
            Command::Close => "CLOSE",
            Command::Unselect => "UNSELECT",
            Command::Expunge { .. } => "EXPUNGE",
            Command::Search { .. } => "SEARCH",
            Command::Sort { .. } => "SORT",
            Command::Fetch { .. } => "FETCH",
            Command::Store { .. } => "STORE",
            Command::Copy { .. } => "COPY",
            Command::Move { .. } => "MOVE",
            Command::Idle => "IDLE",
            Command::GetQuota(_) => "GETQUOTA",
            Command::GetQuotaRoot(_) => "GETQUOTAROOT",
            Command::SetQuota => "SETQUOTA",
        }
    }
}

mod args;
#[cfg(test)]
mod tests;
