//! A deterministic mutation fuzzer for the hand-written IMAP command parser (and, through
//! [`Mutator`], the POP3 one in `pop3::fuzz`): invariant 4 makes the parsers pure functions of
//! bytes, so they can be fed millions of malformed commands without a server.
//!
//! cargo-fuzz needs a nightly toolchain; this runs as an ordinary test instead. It starts from a
//! corpus of valid commands (every command the server parses, literals, sequence sets, nested
//! lists, search keys, fetch items), applies stacked random mutations (byte flips, tokens that
//! matter to the grammar, splices from other commands, truncations, duplicated ranges, huge
//! numbers, deep nesting) and feeds the framing (`literal_at_end`, `tag_and_name`), the
//! command parser, and what the session then does with a parsed command without I/O
//! (sequence-set resolution, modified UTF-7 names, dates). Every input must give a value or a
//! typed error, never a panic; a panic prints the seed, the iteration and the input.
//!
//! The run is fixed: seed [`SEED`] and [`ITERATIONS`] inputs (a few seconds in a debug build).
//! `MAILNODE_FUZZ_SEED` and `MAILNODE_FUZZ_ITERATIONS` change them for a longer hunt.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use super::command::{self, Command, ParseLimits};
use super::parser::{is_tag_char, literal_at_end, tag_and_name};
use super::{date, mutf7};

/// The default seed ("mailnode" in ASCII).
pub(crate) const SEED: u64 = 0x6d61_696c_6e6f_6465;
/// Inputs per run by default.
pub(crate) const ITERATIONS: u64 = 200_000;

/// The seed and iteration count of this run, from the environment or the defaults.
pub(crate) fn run_params(default_iterations: u64) -> (u64, u64) {
    let env = |name: &str| {
        std::env::var(name).ok().map(|v| {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
    };
    (
        env("MAILNODE_FUZZ_SEED").unwrap_or(SEED),
        env("MAILNODE_FUZZ_ITERATIONS").unwrap_or(default_iterations),
    )
}

/// xorshift64*: small, fast, and the same sequence on every machine.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub(crate) fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Numbers at and past the edges of u32 and u64, and zero.
const HUGE_NUMBERS: [&str; 7] = [
    "0",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
    "00000000001",
];

/// Applies random mutations to inputs taken from a corpus.
pub(crate) struct Mutator<'a> {
    pub(crate) rng: Rng,
    corpus: &'a [Vec<u8>],
    /// Byte strings that mean something to the grammar being fuzzed.
    tokens: &'a [&'a [u8]],
    /// Inputs never grow past this (a parser sees at most a bounded command).
    max_len: usize,
}

impl<'a> Mutator<'a> {
    pub(crate) fn new(
        seed: u64,
        corpus: &'a [Vec<u8>],
        tokens: &'a [&'a [u8]],
        max_len: usize,
    ) -> Self {
        Mutator {
            rng: Rng::new(seed),
            corpus,
            tokens,
            max_len,
        }
    }

    /// The next input: a corpus entry (sometimes left valid) with 1–6 stacked mutations.
    pub(crate) fn input(&mut self) -> Vec<u8> {
        let mut buf = self.rng.pick(self.corpus).clone();
        if self.rng.chance(20) {
            return buf;
        }
        let n = 1 + self.rng.below(6);
        for _ in 0..n {
            self.mutate(&mut buf);
        }
        buf.truncate(self.max_len);
        buf
    }

    fn mutate(&mut self, buf: &mut Vec<u8>) {
        let len = buf.len();
        let at = self.rng.below(len + 1);
        match self.rng.below(12) {
            // Flip a bit, or set a byte to anything.
            0 if len > 0 => {
                let i = self.rng.below(len);
                buf[i] ^= 1 << self.rng.below(8);
            }
            1 if len > 0 => {
                let i = self.rng.below(len);
                buf[i] = self.rng.next_u64() as u8;
            }
            // A token the grammar cares about, inserted or overwriting.
            2 | 3 => {
                let t = *self.rng.pick(self.tokens);
                if self.rng.chance(2) {
                    buf.splice(at..at, t.iter().copied());
                } else {
                    let end = (at + t.len()).min(len);
                    buf.splice(at..end, t.iter().copied());
                }
            }
            // Delete a range; truncate.
            4 if len > 0 => {
                let end = (at + 1 + self.rng.below(16)).min(len);
                buf.drain(at.min(end)..end);
            }
            5 => buf.truncate(at),
            // Splice in a piece of another input.
            6 => {
                let other = self.rng.pick(self.corpus);
                if !other.is_empty() {
                    let from = self.rng.below(other.len());
                    let to = (from + 1 + self.rng.below(other.len() - from)).min(other.len());
                    buf.splice(at..at, other[from..to].iter().copied());
                }
            }
            // Repeat a range many times (long lists, long numbers, deep nesting).
            7 if len > 0 => {
                let from = self.rng.below(len);
                let to = (from + 1 + self.rng.below(8)).min(len);
                let piece = buf[from..to].to_vec();
                let times = 1 + self.rng.below(200);
                let mut rep = Vec::with_capacity(piece.len() * times);
                for _ in 0..times {
                    rep.extend_from_slice(&piece);
                }
                buf.splice(to..to, rep);
            }
            // Make a number huge or zero.
            8 => {
                if let Some(start) = buf.iter().skip(at).position(u8::is_ascii_digit) {
                    let start = at + start;
                    let end = buf[start..]
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .map_or(buf.len(), |e| start + e);
                    let n = *self.rng.pick(&HUGE_NUMBERS);
                    buf.splice(start..end, n.bytes());
                }
            }
            // Open many lists.
            9 => {
                let depth = 1 + self.rng.below(300);
                buf.splice(at..at, std::iter::repeat_n(b'(', depth));
            }
            // Swap the case of a byte (keywords are case-insensitive).
            10 if len > 0 => {
                let i = self.rng.below(len);
                buf[i] ^= 0x20;
            }
            // Insert random bytes.
            _ => {
                let n = 1 + self.rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.next_u64() as u8).collect();
                buf.splice(at..at, bytes);
            }
        }
    }
}

/// Runs `check` on `iterations` inputs; on a panic, reports seed, iteration and input.
pub(crate) fn run(
    what: &str,
    seed: u64,
    iterations: u64,
    mutator: &mut Mutator,
    mut check: impl FnMut(&[u8]),
) {
    println!(
        "{what}: seed {seed:#x}, {iterations} inputs (MAILNODE_FUZZ_SEED / MAILNODE_FUZZ_ITERATIONS; \
         a crash that aborts, such as a stack overflow, is found again with MAILNODE_FUZZ_TRACE=1, \
         which prints every input before it is tried)"
    );
    let trace = std::env::var_os("MAILNODE_FUZZ_TRACE").is_some();
    let started = Instant::now();
    let mut slowest = (Duration::ZERO, Vec::new());
    for i in 0..iterations {
        let input = mutator.input();
        if trace {
            eprintln!("{what} #{i}: {:?}", String::from_utf8_lossy(&input));
        }
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        let took = t.elapsed();
        if took > slowest.0 {
            slowest = (took, input.clone());
        }
        if let Err(panic) = outcome {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(non-string panic)");
            panic!(
                "{what}: panic at iteration {i} with seed {seed:#x}: {msg}\ninput ({} bytes): {:?}",
                input.len(),
                String::from_utf8_lossy(&input)
            );
        }
    }
    println!(
        "{what}: {iterations} inputs in {:.2?}; slowest {:.2?}: {:?}",
        started.elapsed(),
        slowest.0,
        String::from_utf8_lossy(&slowest.1[..slowest.1.len().min(120)])
    );
}

/// Valid IMAP commands, as the session hands them to the parser: lines and literal bytes in
/// order, the final CRLF removed. Every command the server parses is here at least once.
fn imap_corpus() -> Vec<Vec<u8>> {
    let commands: &[&str] = &[
        "a1 CAPABILITY",
        "a2 NOOP",
        "a3 LOGOUT",
        "a4 STARTTLS",
        "a5 LOGIN alice@example.org \"pass word\"",
        "a6 LOGIN {17}\r\nalice@example.org {8}\r\nsecret!!",
        "a7 LOGIN {5+}\r\nalice \"\\\"quoted\\\\\"",
        "a8 AUTHENTICATE PLAIN",
        "a9 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==",
        "a10 AUTHENTICATE PLAIN =",
        "b1 ID (\"name\" \"mutt\" \"version\" NIL)",
        "b2 ID NIL",
        "b3 ENABLE CONDSTORE IMAP4rev2 UTF8=ACCEPT",
        "b4 NAMESPACE",
        "c1 SELECT INBOX",
        "c2 SELECT \"Sent Items\" (CONDSTORE)",
        "c3 EXAMINE {9}\r\nEntw&APw-",
        "c4 SELECT Entwürfe",
        "c5 CREATE Archive/2024",
        "c6 CREATE Junk (USE (\\Junk))",
        "c7 DELETE \"Old\"",
        "c8 RENAME Archive \"Archive &AOQ-\"",
        "c9 SUBSCRIBE Sent",
        "c10 UNSUBSCRIBE {4}\r\nSent",
        "d1 LIST \"\" *",
        "d2 LIST \"\" %",
        "d3 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (INBOX Sent*) RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN SIZE))",
        "d4 LIST (SPECIAL-USE REMOTE) \"\" * RETURN (SUBSCRIBED)",
        "d5 LSUB \"\" \"*\"",
        "d6 LIST {0}\r\n {1}\r\n*",
        "e1 STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ)",
        "e2 APPEND INBOX {12}\r\nSubject: x\r\n",
        "e3 APPEND Drafts (\\Seen \\Draft $Work) \"05-Jan-2024 10:00:00 +0100\" {5+}\r\nhello",
        "e4 APPEND INBOX UTF8 (~{4}\r\nab\0c)",
        "e5 APPEND INBOX () {0}\r\n",
        "f1 CHECK",
        "f2 CLOSE",
        "f3 UNSELECT",
        "f4 EXPUNGE",
        "f5 UID EXPUNGE 1:5,7,9:*",
        "g1 SEARCH ALL",
        "g2 SEARCH CHARSET UTF-8 SUBJECT {6}\r\nGrüß",
        "g3 UID SEARCH RETURN (MIN MAX COUNT ALL SAVE) OR (FROM \"bob\" SEEN) NOT (UNDELETED LARGER 100)",
        "g4 SEARCH 1:* SMALLER 4294967295 UID 1,3:5 MODSEQ 7 KEYWORD $Work UNKEYWORD $Junk",
        "g5 SEARCH BEFORE 1-Feb-2024 ON 01-Feb-1994 SINCE 31-Dec-1999 SENTBEFORE 2-Mar-2020 SENTON 3-Apr-2021 SENTSINCE 4-May-2022",
        "g6 SEARCH HEADER Message-ID \"<x@y>\" BODY hello TEXT \"a b\" TO c CC d BCC e",
        "g7 SEARCH ANSWERED DELETED DRAFT FLAGGED SEEN UNANSWERED UNDRAFT UNFLAGGED UNSEEN NEW OLD RECENT",
        "g8 SEARCH $",
        "g9 SEARCH (((OR SEEN (NOT DRAFT))))",
        "h1 SORT (REVERSE DATE SUBJECT ARRIVAL CC FROM SIZE TO) UTF-8 ALL",
        "h2 UID SORT RETURN (COUNT) (SUBJECT) US-ASCII SEEN",
        "i1 FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])",
        "i2 FETCH 1 ALL",
        "i3 FETCH 2:4 FAST",
        "i4 FETCH * FULL",
        "i5 UID FETCH 7 BODY.PEEK[]",
        "i6 FETCH 1 (ENVELOPE BODYSTRUCTURE BODY INTERNALDATE RFC822.SIZE MODSEQ)",
        "i7 FETCH 1 (BODY[1.2.MIME] BODY[2.HEADER] BODY[TEXT]<0.100> BODY.PEEK[HEADER.FIELDS.NOT (Received)])",
        "i8 FETCH 1 (RFC822 RFC822.HEADER RFC822.TEXT)",
        "i9 FETCH 1 (BINARY[1] BINARY.PEEK[1.2]<5.10> BINARY.SIZE[2])",
        "i10 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)",
        "i11 FETCH $ FLAGS",
        "i12 FETCH 1,3,5:7,9:* BODY[]",
        "j1 STORE 1:3 +FLAGS (\\Seen)",
        "j2 UID STORE 5 -FLAGS.SILENT (\\Deleted $Junk)",
        "j3 STORE * FLAGS ()",
        "j4 UID STORE 1:* (UNCHANGEDSINCE 99) +FLAGS.SILENT \\Flagged",
        "k1 COPY 1:2 Archive",
        "k2 UID COPY 4,6 \"Sent Items\"",
        "k3 MOVE 3 Trash",
        "k4 UID MOVE 1:* {5}\r\nTrash",
        "l1 IDLE",
        "m1 GETQUOTA \"\"",
        "m2 GETQUOTAROOT INBOX",
        "m3 SETQUOTA \"\" (STORAGE 512)",
    ];
    commands.iter().map(|c| c.as_bytes().to_vec()).collect()
}

/// Byte strings that matter to IMAP's grammar.
const IMAP_TOKENS: &[&[u8]] = &[
    b" ",
    b"(",
    b")",
    b"((((((((",
    b"))))",
    b"{",
    b"}",
    b"\"",
    b"\\",
    b"[",
    b"]",
    b"<",
    b">",
    b".",
    b"*",
    b":",
    b",",
    b"$",
    b"~",
    b"+",
    b"%",
    b"&",
    b"-",
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b"\xff",
    b"\xc3",
    b"\xc3\xbc",
    b"NIL",
    b"{0}\r\n",
    b"{1}\r\n",
    b"{5}\r\nabc",
    b"{4294967296}\r\n",
    b"{18446744073709551616}\r\n",
    b"{3+}\r\n",
    b"~{2}\r\n\0\0",
    b"1:*",
    b"*:1",
    b"0",
    b"4294967295",
    b"4294967296:*",
    b"1,2,3,4,5,6,7,8,9",
    b"1:",
    b":1",
    b"BODY[",
    b"BODY.PEEK[",
    b"HEADER.FIELDS (",
    b"HEADER.FIELDS.NOT ()",
    b"MIME",
    b"TEXT",
    b"<0.4294967295>",
    b"<4294967295.1>",
    b"1.2.3.4.5.6.7.8",
    b"BINARY[",
    b"UID ",
    b"CHARSET ",
    b"RETURN (",
    b"OR ",
    b"NOT ",
    b"(SUBSCRIBED)",
    b"(CONDSTORE)",
    b"UNCHANGEDSINCE ",
    b"CHANGEDSINCE ",
    b"MODSEQ ",
    b"\\Seen",
    b"\\",
    b"&Jjo-",
    b"&-",
    b"&AOQ",
    b"&",
    b"UTF8 (",
    b"USE (",
    b"31-Feb-2024",
    b"1-Jan-0000",
    b"99-Xyz-99999",
    b"\"05-Jan-2024 10:00:00 +2500\"",
    b"ALL",
    b"FAST",
    b"FULL",
    b"INBOX",
    b"LARGER ",
];

fn limits() -> ParseLimits {
    let cfg = super::ImapConfig::default();
    ParseLimits {
        max_nesting: cfg.max_nesting,
        max_ranges: cfg.max_sequence_ranges,
        max_search_depth: cfg.max_search_depth,
    }
}

/// Cuts a client's byte stream into commands the way the session does: each line that ends
/// with a literal announcement is followed by the literal's bytes (up to `max_literal`) and
/// the next line. Exercises `literal_at_end` and `tag_and_name` on every line.
fn frame(stream: &[u8], max_literal: u64) -> Vec<Vec<u8>> {
    let mut commands = Vec::new();
    let mut buf = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let (line, after) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..=i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        rest = after;
        let content = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(line);
        buf.extend_from_slice(content);
        if let (Some(t), _) = tag_and_name(&buf) {
            assert!(!t.is_empty() && t.bytes().all(is_tag_char), "bad tag {t:?}");
        }
        match literal_at_end(content) {
            Some(lit) if lit.len <= max_literal => {
                buf.extend_from_slice(b"\r\n");
                let n = (lit.len as usize).min(rest.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
            }
            Some(_) => {
                // Refused before it is read: the session answers and forgets the command.
                buf.clear();
            }
            None => commands.push(std::mem::take(&mut buf)),
        }
    }
    if !buf.is_empty() {
        commands.push(buf);
    }
    commands
}

/// What must hold for one parsed (or refused) command; also does what the session does next
/// with it without I/O.
fn check_command(buf: &[u8]) {
    match command::parse(buf, limits()) {
        Ok((tag, cmd)) => {
            assert!(
                !tag.is_empty() && tag.bytes().all(is_tag_char),
                "accepted a bad tag {tag:?}"
            );
            assert!(!cmd.name().is_empty());
            after_parse(&cmd);
        }
        Err(bad) => {
            assert!(!bad.text.is_empty(), "an error without text");
            assert!(
                !bad.text.contains('\r') && !bad.text.contains('\n'),
                "error text would break the response line: {:?}",
                bad.text
            );
            if let Some(t) = &bad.tag {
                assert!(!t.is_empty() && t.bytes().all(is_tag_char), "bad tag {t:?}");
            }
        }
    }
}

/// The session's next steps that need no I/O: names decoded, sets resolved, dates read.
fn after_parse(cmd: &Command) {
    let names: Vec<&str> = match cmd {
        Command::Select { mailbox, .. }
        | Command::Create { mailbox, .. }
        | Command::Status { mailbox, .. }
        | Command::Append { mailbox, .. }
        | Command::Copy { mailbox, .. }
        | Command::Move { mailbox, .. } => vec![mailbox],
        Command::Delete(m)
        | Command::Subscribe(m)
        | Command::Unsubscribe(m)
        | Command::GetQuota(m)
        | Command::GetQuotaRoot(m) => vec![m],
        Command::Rename { from, to } => vec![from, to],
        Command::List {
            reference,
            patterns,
            ..
        } => std::iter::once(reference.as_str())
            .chain(patterns.iter().map(String::as_str))
            .collect(),
        _ => Vec::new(),
    };
    for n in names {
        if let Ok(decoded) = mutf7::decode(n) {
            // What decodes must encode back to something that decodes to the same name.
            assert_eq!(
                mutf7::decode(&mutf7::encode(&decoded)).as_deref(),
                Ok(decoded.as_str()),
                "modified UTF-7 round trip of {n:?}"
            );
        }
    }
    let set = match cmd {
        Command::Fetch { set, .. }
        | Command::Store { set, .. }
        | Command::Copy { set, .. }
        | Command::Move { set, .. } => Some(set),
        Command::Expunge { uids } => uids.as_ref(),
        _ => None,
    };
    if let Some(set) = set {
        for largest in [0, 1, 50, u32::MAX] {
            let r = set.resolve(largest);
            assert!(r.ranges.len() <= set.ranges.len().max(1));
            for w in r.ranges.windows(2) {
                assert!(
                    w[0].1 < w[1].0,
                    "unmerged or unsorted ranges {:?}",
                    r.ranges
                );
            }
            let _ = r.contains(largest);
        }
        let _ = set.max_number();
    }
}

#[test]
fn imap_command_parser_survives_mutated_commands() {
    let corpus = imap_corpus();
    // The corpus itself parses.
    for c in &corpus {
        let parsed = command::parse(c, limits());
        assert!(
            parsed.is_ok(),
            "corpus entry {:?} does not parse: {parsed:?}",
            String::from_utf8_lossy(c)
        );
    }
    let (seed, iterations) = run_params(ITERATIONS);
    let mut m = Mutator::new(seed, &corpus, IMAP_TOKENS, 16 * 1024);
    run("IMAP commands", seed, iterations, &mut m, check_command);
}

/// Streams of several commands (with CRLFs and literal announcements mutated too) through
/// the framing, then the parser.
#[test]
fn imap_framing_survives_mutated_streams() {
    let corpus: Vec<Vec<u8>> = imap_corpus()
        .chunks(3)
        .map(|cmds| cmds.join(&b"\r\n"[..]))
        .collect();
    let (seed, iterations) = run_params(ITERATIONS / 4);
    let mut m = Mutator::new(seed ^ 0x5eed, &corpus, IMAP_TOKENS, 32 * 1024);
    run("IMAP streams", seed, iterations, &mut m, |stream| {
        for cmd in frame(stream, 64 * 1024) {
            check_command(&cmd);
        }
    });
}

/// Dates as APPEND and SEARCH take them, and the internal date printed back.
#[test]
fn imap_date_parsers_survive_mutated_dates() {
    let corpus: Vec<Vec<u8>> = [
        "1-Feb-2024",
        "01-Feb-1994",
        "31-Dec-1999",
        "05-Jan-2024 10:00:00 +0100",
        " 5-Jan-2024 23:59:59 -1200",
        "29-Feb-2000 00:00:00 +0000",
    ]
    .iter()
    .map(|d| d.as_bytes().to_vec())
    .collect();
    let (seed, iterations) = run_params(ITERATIONS / 4);
    let mut m = Mutator::new(seed ^ 0xda7e, &corpus, IMAP_TOKENS, 256);
    run("IMAP dates", seed, iterations, &mut m, |input| {
        let s = String::from_utf8_lossy(input);
        if let Some(t) = date::parse_date_time(&s) {
            let _ = date::format_internal(t);
        }
        if let Some(t) = date::parse_date(&s) {
            let _ = date::format_internal(t);
        }
    });
}

/// The harness itself: a check that panics is reported with its seed and input.
#[test]
#[should_panic(expected = "panic at iteration")]
fn a_panicking_check_is_reported_with_its_input() {
    let corpus = vec![b"a1 NOOP".to_vec()];
    let mut m = Mutator::new(SEED, &corpus, IMAP_TOKENS, 64);
    run("self-test", SEED, 1000, &mut m, |input| {
        assert!(!input.contains(&b'('), "found a '('");
    });
}
