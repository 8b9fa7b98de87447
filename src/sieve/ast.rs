//! The checked form of a script: what each command and test means, with arguments validated.

use std::collections::BTreeSet;

/// A Sieve extension this implementation knows (`require` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Extension {
    /// RFC 5228 §4.1.
    FileInto,
    /// RFC 5429.
    Reject,
    /// RFC 5429.
    Ereject,
    /// RFC 5228 §5.4.
    Envelope,
    /// RFC 5232.
    Imap4Flags,
    /// RFC 3894.
    Copy,
    /// RFC 5173.
    Body,
    /// RFC 5229.
    Variables,
    /// RFC 5230.
    Vacation,
    /// RFC 5231.
    Relational,
    /// RFC 5233.
    Subaddress,
    /// RFC 5260.
    Date,
    /// RFC 5260.
    Index,
    /// RFC 5490.
    Mailbox,
    /// RFC 5228 §2.4.2.4.
    EncodedCharacter,
    /// RFC 4790 `i;ascii-numeric`.
    ComparatorNumeric,
}

impl Extension {
    /// Every extension, for capability lists (ManageSieve's SIEVE capability).
    pub const ALL: [Extension; 16] = [
        Extension::FileInto,
        Extension::Reject,
        Extension::Ereject,
        Extension::Envelope,
        Extension::Imap4Flags,
        Extension::Copy,
        Extension::Body,
        Extension::Variables,
        Extension::Vacation,
        Extension::Relational,
        Extension::Subaddress,
        Extension::Date,
        Extension::Index,
        Extension::Mailbox,
        Extension::EncodedCharacter,
        Extension::ComparatorNumeric,
    ];

    /// The name used in `require`.
    pub fn name(self) -> &'static str {
        match self {
            Extension::FileInto => "fileinto",
            Extension::Reject => "reject",
            Extension::Ereject => "ereject",
            Extension::Envelope => "envelope",
            Extension::Imap4Flags => "imap4flags",
            Extension::Copy => "copy",
            Extension::Body => "body",
            Extension::Variables => "variables",
            Extension::Vacation => "vacation",
            Extension::Relational => "relational",
            Extension::Subaddress => "subaddress",
            Extension::Date => "date",
            Extension::Index => "index",
            Extension::Mailbox => "mailbox",
            Extension::EncodedCharacter => "encoded-character",
            Extension::ComparatorNumeric => "comparator-i;ascii-numeric",
        }
    }

    /// Looks a `require` name up (names are case-sensitive, RFC 5228 §3.2).
    pub fn from_name(name: &str) -> Option<Extension> {
        Extension::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// A compiled script, ready to [`run`](super::run) any number of times.
#[derive(Debug, Clone)]
pub struct Script {
    pub(crate) required: BTreeSet<Extension>,
    pub(crate) commands: Vec<Command>,
}

impl Script {
    /// The extensions the script requires.
    pub fn required(&self) -> impl Iterator<Item = Extension> + '_ {
        self.required.iter().copied()
    }
    pub(crate) fn has(&self, ext: Extension) -> bool {
        self.required.contains(&ext)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Command {
    If {
        branches: Vec<(Test, Vec<Command>)>,
        otherwise: Option<Vec<Command>>,
    },
    Stop,
    Keep {
        flags: Option<Vec<String>>,
    },
    Discard,
    Redirect {
        address: String,
        copy: bool,
    },
    FileInto {
        mailbox: String,
        flags: Option<Vec<String>>,
        copy: bool,
        create: bool,
    },
    Reject {
        reason: String,
        extended: bool,
    },
    Flags {
        op: FlagOp,
        var: Option<String>,
        flags: Vec<String>,
    },
    Set {
        name: String,
        value: String,
        modifiers: Vec<Modifier>,
    },
    Vacation(VacationArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagOp {
    Set,
    Add,
    Remove,
}

/// `set` modifiers (RFC 5229 §4.1), kept sorted by precedence, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Modifier {
    Lower,
    Upper,
    LowerFirst,
    UpperFirst,
    QuoteWildcard,
    Length,
}

impl Modifier {
    pub(crate) fn precedence(self) -> u8 {
        match self {
            Modifier::Lower | Modifier::Upper => 40,
            Modifier::LowerFirst | Modifier::UpperFirst => 30,
            Modifier::QuoteWildcard => 20,
            Modifier::Length => 10,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct VacationArgs {
    pub days: Option<u64>,
    pub subject: Option<String>,
    pub from: Option<String>,
    pub addresses: Vec<String>,
    pub mime: bool,
    pub handle: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comparator {
    Octet,
    AsciiCasemap,
    AsciiNumeric,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relation {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchKind {
    Is,
    Contains,
    Matches,
    Count(Relation),
    Value(Relation),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Match {
    pub kind: MatchKind,
    pub comparator: Comparator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddrPart {
    All,
    Local,
    Domain,
    User,
    Detail,
}

/// `:index n [:last]` (RFC 5260 §6): which occurrence of a header field, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Index {
    pub n: usize,
    pub last: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyTransform {
    Raw,
    Text,
    Content(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zone {
    /// The recipient's zone (the offset of the `now` passed to `run`).
    Local,
    /// A fixed offset in minutes east of UTC.
    Fixed(i32),
    /// The zone written in the header field.
    Original,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DatePart {
    Year,
    Month,
    Day,
    Date,
    Julian,
    Hour,
    Minute,
    Second,
    Time,
    Iso8601,
    Std11,
    Zone,
    Weekday,
}

#[derive(Debug, Clone)]
pub(crate) enum Test {
    Address {
        m: Match,
        part: AddrPart,
        index: Option<Index>,
        headers: Vec<String>,
        keys: Vec<String>,
    },
    Envelope {
        m: Match,
        part: AddrPart,
        fields: Vec<String>,
        keys: Vec<String>,
    },
    Header {
        m: Match,
        index: Option<Index>,
        headers: Vec<String>,
        keys: Vec<String>,
    },
    Exists(Vec<String>),
    Size {
        over: bool,
        limit: u64,
    },
    AllOf(Vec<Test>),
    AnyOf(Vec<Test>),
    Not(Box<Test>),
    True,
    False,
    Body {
        m: Match,
        transform: BodyTransform,
        keys: Vec<String>,
    },
    Date {
        m: Match,
        zone: Zone,
        index: Option<Index>,
        header: String,
        part: DatePart,
        keys: Vec<String>,
    },
    CurrentDate {
        m: Match,
        zone: Zone,
        part: DatePart,
        keys: Vec<String>,
    },
    HasFlag {
        m: Match,
        vars: Option<Vec<String>>,
        flags: Vec<String>,
    },
    String {
        m: Match,
        source: Vec<String>,
        keys: Vec<String>,
    },
    MailboxExists(Vec<String>),
}
