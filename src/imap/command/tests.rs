use super::*;

const LIMITS: ParseLimits = ParseLimits {
    max_nesting: 8,
    max_ranges: 100,
    max_search_depth: 8,
};

fn ok(s: &str) -> Command {
    parse(s.as_bytes(), LIMITS)
        .unwrap_or_else(|e| panic!("{s:?}: {e:?}"))
        .1
}

fn bad(s: &str) -> BadCommand {
    parse(s.as_bytes(), LIMITS).expect_err(s)
}

#[test]
fn simple_commands() {
    assert_eq!(ok("a1 noop"), Command::Noop);
    assert_eq!(ok("a1 CAPABILITY"), Command::Capability);
    assert_eq!(
        ok("a LOGIN \"al ice\" {4}\r\npa s"),
        Command::Login {
            user: "al ice".into(),
            password: "pa s".into()
        }
    );
    assert_eq!(
        ok("a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA=="),
        Command::Authenticate {
            mechanism: "PLAIN".into(),
            initial: Some(b"AGFsaWNlAHNlY3JldA==".to_vec())
        }
    );
    assert_eq!(
        ok("a select inbox (condstore)"),
        Command::Select {
            mailbox: "inbox".into(),
            read_only: false,
            condstore: true
        }
    );
    assert_eq!(
        ok("a CREATE Archive (USE (\\Archive))"),
        Command::Create {
            mailbox: "Archive".into(),
            special_use: Some(SpecialUse::Archive)
        }
    );
    assert_eq!(ok("a ID (\"name\" \"x\")"), Command::Id);
    assert_eq!(ok("a ID NIL"), Command::Id);
    assert!(matches!(
        ok("a UID EXPUNGE 1:3"),
        Command::Expunge { uids: Some(_) }
    ));
}

#[test]
fn list_forms() {
    let Command::List {
        reference,
        patterns,
        opts,
    } = ok("a LIST (SUBSCRIBED) \"\" (INBOX \"Sent*\") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))")
    else {
        panic!()
    };
    assert_eq!(reference, "");
    assert_eq!(patterns, ["INBOX", "Sent*"]);
    assert!(opts.subscribed && opts.return_children);
    assert_eq!(
        opts.return_status,
        Some(vec![StatusItem::Messages, StatusItem::Unseen])
    );
    assert!(matches!(ok("a LSUB \"\" %"), Command::List { opts, .. } if opts.lsub));
    assert!(matches!(ok("a list \"\" *"), Command::List { .. }));
}

#[test]
fn store_append_copy() {
    assert_eq!(
        ok("a UID STORE 1:* (UNCHANGEDSINCE 5) +FLAGS.SILENT (\\Seen $Junk)"),
        Command::Store {
            uid: true,
            set: SeqSet::parse(b"1:*", 10).unwrap(),
            op: StoreOp::Add,
            silent: true,
            flags: vec!["\\Seen".into(), "$Junk".into()],
            unchanged_since: Some(5)
        }
    );
    assert!(matches!(
        ok("a STORE 1 -FLAGS \\Deleted"),
        Command::Store {
            op: StoreOp::Remove,
            ..
        }
    ));
    let Command::Append {
        mailbox,
        flags,
        date,
        message,
        utf8: false,
    } = ok("a APPEND Sent (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {5+}\r\nhello")
    else {
        panic!()
    };
    assert_eq!(
        (mailbox.as_str(), flags, date, message),
        (
            "Sent",
            vec!["\\Seen".to_string()],
            Some(837_596_665),
            b"hello".to_vec()
        )
    );
    assert!(matches!(
        ok("a UID MOVE 4:5 Trash"),
        Command::Move { uid: true, .. }
    ));
}

#[test]
fn utf8_and_binary_appends() {
    // RFC 6855 `UTF8 (literal8)`, a bare literal8 (RFC 3516) and a UTF-8 mailbox name.
    let cases: [(&str, &str, &[u8], bool); 3] = [
        (
            "a APPEND \"Entwürfe\" UTF8 (~{4+}\r\nab\0c)",
            "Entwürfe",
            b"ab\0c",
            true,
        ),
        (
            "a APPEND INBOX (\\Seen) UTF8 ({2}\r\nhi)",
            "INBOX",
            b"hi",
            true,
        ),
        ("a APPEND INBOX ~{3}\r\n\0\0\0", "INBOX", b"\0\0\0", false),
    ];
    for (cmd, want_box, want_msg, want_utf8) in cases {
        let Command::Append {
            mailbox,
            message,
            utf8,
            ..
        } = ok(cmd)
        else {
            panic!("{cmd:?}")
        };
        assert_eq!(
            (mailbox.as_str(), message.as_slice(), utf8),
            (want_box, want_msg, want_utf8),
            "{cmd:?}"
        );
    }
    for bad in [
        "a APPEND INBOX UTF8 {2}\r\nhi",
        "a APPEND INBOX UTF8 (~{2}\r\nhi",
        "a APPEND INBOX UTF8 ()",
    ] {
        assert!(parse(bad.as_bytes(), LIMITS).is_err(), "{bad:?}");
    }
}

#[test]
fn search_forms() {
    let Command::Search {
        ret, charset, key, ..
    } = ok("a SEARCH RETURN (SAVE MIN) CHARSET UTF-8 $")
    else {
        panic!()
    };
    assert_eq!(ret, Some(vec![ReturnOpt::Save, ReturnOpt::Min]));
    assert!(charset);
    assert!(matches!(key, SearchKey::Seq(set) if set.saved));
    assert!(matches!(
        ok("a UID SEARCH UID $"),
        Command::Search {
            uid: true,
            charset: false,
            ..
        }
    ));
    assert!(matches!(
        ok("a UID FETCH $ (FLAGS)"),
        Command::Fetch { set, .. } if set.saved
    ));
    let Command::List { opts, .. } = ok("a LIST \"\" %") else {
        panic!()
    };
    assert!(!opts.extended);
    let Command::List { opts, .. } = ok("a LIST \"\" % RETURN (CHILDREN)") else {
        panic!()
    };
    assert!(opts.extended);
}

#[test]
fn bad_commands() {
    let cases = [
        ("", None),
        ("a", Some("a")),
        ("a FROB", Some("a")),
        ("a FETCH 0 FLAGS", Some("a")),
        ("a FETCH 1:x FLAGS", Some("a")),
        ("a LOGIN alice", Some("a")),
        ("a NOOP extra", Some("a")),
        ("a LOGIN {10}\r\nabc", Some("a")),
        ("a STATUS INBOX ()", Some("a")),
        ("a SEARCH CHARSET KOI8-R ALL", Some("a")),
        (
            "a APPEND x \"31-Foo-2000 00:00:00 +0000\" {1}\r\nx",
            Some("a"),
        ),
        ("a SELECT \"unterminated", Some("a")),
    ];
    for (s, tag) in cases {
        assert_eq!(bad(s).tag.as_deref(), tag, "{s:?}");
    }
    let deep = format!("a SEARCH {}ALL{}", "(".repeat(50), ")".repeat(50));
    assert!(bad(&deep).text.contains("nested"));
    let many = format!("a FETCH {} FLAGS", vec!["1"; 101].join(","));
    assert!(bad(&many).text.contains("too many ranges"));
}

/// Mutations of valid commands and random bytes: the parser answers every one without
/// panicking (a cheap stand-in for the fuzz target).
#[test]
fn mutated_and_random_input_never_panics() {
    use rand::{Rng, SeedableRng};
    let seeds: &[&[u8]] = &[
        b"a UID FETCH 1:*,3 (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (FROM TO)]<0.10>) (CHANGEDSINCE 5)",
        b"a SEARCH RETURN (MIN) CHARSET UTF-8 OR (FROM \"x\" NOT SEEN) UID 1:4 HEADER X {3}\r\nabc",
        b"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"%\" INBOX) RETURN (STATUS (MESSAGES))",
        b"a APPEND INBOX (\\Seen) \" 1-Feb-2000 00:00:00 +0100\" {5+}\r\nhello",
        b"a STORE 1:2 (UNCHANGEDSINCE 4) -FLAGS.SILENT (\\Deleted $x)",
        b"a SORT (REVERSE DATE SUBJECT) UTF-8 ALL",
        b"a AUTHENTICATE PLAIN =",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..20_000 {
        let mut cmd = seeds[rng.gen_range(0..seeds.len())].to_vec();
        for _ in 0..rng.gen_range(1..6) {
            let pos = rng.gen_range(0..=cmd.len());
            match rng.gen_range(0..4) {
                0 if pos < cmd.len() => {
                    cmd.remove(pos);
                }
                1 => cmd.insert(pos, rng.gen()),
                2 => {
                    let specials = b"(){}[]<>\"\\*%: 0";
                    cmd.insert(pos, specials[rng.gen_range(0..specials.len())]);
                }
                _ => cmd.truncate(pos),
            }
        }
        let _ = parse(&cmd, LIMITS);
        let random: Vec<u8> = (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect();
        let _ = parse(&random, LIMITS);
    }
}
