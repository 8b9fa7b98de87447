//! The examples of RFC 5228, 5229, 5230, 5231, 5232, 5233, 5173, 5260, 5429, 5490 and 3894,
//! run against small messages.

use super::*;

/// RFC 5228 §9.
pub(super) const RFC5228_EXAMPLE: &str = r#"#
# Example Sieve Filter
# Declare any optional features or extension used by the script
#
require ["fileinto"];

#
# Handle messages from known mailing lists
# Move messages from IETF filter discussion list to filter mailbox
#
if header :is "Sender" "owner-ietf-mta-filters@imc.org"
        {
        fileinto "filter";  # move to "filter" mailbox
        }
#
# Keep all messages to or from people in my company
#
elsif address :DOMAIN :is ["From", "To"] "example.com"
        {
        keep;               # keep in "In" mailbox
        }

#
# Try and catch unsolicited email.  If a message is not to me,
# or it contains a subject known to be spam, file it away.
#
elsif anyof (NOT address :all :contains
               ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject"
               ["*make*money*fast*", "*university*dipl*mas*"])
        {
        fileinto "spam";   # move to "spam" mailbox
        }
else
        {
        # Move all other (non-company) mail to "personal"
        # mailbox.
        fileinto "personal";
        }
"#;

#[test]
fn rfc5228_section9_example() {
    let env = envelope("x@y.example", "me@example.com");
    let cases: &[(&str, Action)] = &[
        ("Sender: owner-ietf-mta-filters@imc.org\nTo: me@example.com\nSubject: hi", fileinto("filter")),
        ("From: \"Boss\" <boss@Example.COM>\nTo: me@example.com\nSubject: hi", keep()),
        ("From: a@b.example\nTo: someone@else.example\nSubject: hi", fileinto("spam")),
        ("From: a@b.example\nTo: list@lists.example\nCc: me@example.com\nSubject: MAKE big MONEY really FAST", fileinto("spam")),
        ("From: a@b.example\nCc: Me <me@example.com>\nSubject: Your University Diplomas", fileinto("spam")),
        ("From: a@b.example\nTo: friend@else.example\nCc: me@example.com\nSubject: lunch?", fileinto("personal")),
    ];
    for (headers, want) in cases {
        let got = actions(RFC5228_EXAMPLE, &message(headers, "body\n"), &env);
        assert_eq!(got, vec![want.clone()], "{headers}");
    }
}

#[test]
fn rfc5228_core_tests() {
    let msg = message(
        "From: Tim <tim@example.com>\nTo: \"Ken\" <ken+sieve@example.org>, other@example.net\nSubject: Make money fast\nX-Caffeine: C8H10N4O2",
        "hello\n",
    );
    let env = envelope("tim@example.com", "ken+sieve@example.org");
    // (test, expected truth)
    let cases: &[(&str, bool)] = &[
        ("true", true),
        ("false", false),
        ("not false", true),
        ("allof (true, false)", false),
        ("anyof (false, true)", true),
        ("exists [\"From\", \"Date\"]", false),
        ("exists [\"From\", \"x-caffeine\"]", true),
        ("header :contains \"Subject\" \"MONEY\"", true),
        (
            "header :comparator \"i;octet\" :contains \"Subject\" \"MONEY\"",
            false,
        ),
        ("header :is \"X-Caffeine\" \"\"", false),
        ("header :contains \"X-Caffeine\" \"\"", true),
        ("header :contains \"X-Nonexistent\" \"\"", false),
        ("header :matches \"Subject\" \"make * fas?\"", true),
        ("header :matches \"Subject\" \"make \\\\* fast\"", false),
        ("header :is \"subject\" \"make money FAST\"", true),
        ("address :is :all \"from\" \"tim@example.com\"", true),
        ("address :localpart \"to\" \"ken+sieve\"", true),
        ("address :domain :is \"to\" \"EXAMPLE.NET\"", true),
        ("address :matches :all \"to\" \"*@example.org\"", true),
        ("size :over 10", true),
        ("size :under 10", false),
        ("size :under 1M", true),
    ];
    for (test, want) in cases {
        let src = format!("if {test} {{ discard; }}");
        let got = actions(&src, &msg, &env);
        assert_eq!(got == vec![Action::Discard], *want, "{test}: {got:?}");
    }
    let src =
        "require \"envelope\";\nif envelope :all :is \"from\" \"tim@example.com\" { discard; }";
    assert_eq!(actions(src, &msg, &env), vec![Action::Discard]);
    let src = "require \"envelope\";\nif envelope :domain :is \"to\" \"example.org\" { discard; }";
    assert_eq!(actions(src, &msg, &env), vec![Action::Discard]);
    // The null reverse-path matches "" (RFC 5228 §5.4).
    let src = "require \"envelope\";\nif envelope :is \"from\" \"\" { discard; }";
    assert_eq!(
        actions(src, &msg, &envelope("", "ken@example.org")),
        vec![Action::Discard]
    );
    assert_eq!(actions(src, &msg, &env), vec![keep()]);
}

#[test]
fn rfc5429_reject_and_ereject() {
    let src = "require [\"reject\"];\n\
               if header :contains \"from\" \"coyote@desert.example.org\" {\n\
               reject text:\nI am not taking mail from you, and I don't\nwant your birdseed, either!\n.\n;\n}";
    let msg = message("From: coyote@desert.example.org\nSubject: x", "x\n");
    let want = Action::Reject {
        reason: "I am not taking mail from you, and I don't\r\nwant your birdseed, either!\r\n"
            .into(),
        extended: false,
    };
    assert_eq!(
        actions(src, &msg, &envelope("a@b.example", "c@d.example")),
        vec![want]
    );
    let src = "require \"ereject\";\nereject \"no thanks\";";
    assert_eq!(
        actions(src, &msg, &envelope("a@b.example", "c@d.example")),
        vec![Action::Reject {
            reason: "no thanks".into(),
            extended: true
        }]
    );
}

#[test]
fn rfc5229_variables() {
    let env = envelope("a@b.example", "c@d.example");
    let msg = message(
        "List-ID: Acme users <acme-users@lists.example.org>\nSubject: [acme-users] [fwd] version 1.0 is out",
        "x\n",
    );
    let src = "require [\"fileinto\", \"variables\"];\n\
               if header :matches \"List-ID\" \"*<*@*\" {\n  fileinto \"INBOX.lists.${2}\"; stop;\n}";
    assert_eq!(
        actions(src, &msg, &env),
        vec![fileinto("INBOX.lists.acme-users")]
    );

    // Earlier wildcards match as little as possible (RFC 5229 §3.2 example).
    let src = "require [\"fileinto\", \"variables\"];\n\
               if header :matches \"Subject\" \"[*] *\" {\n  fileinto \"${1}|${2}|${0}\";\n}";
    assert_eq!(
        actions(src, &msg, &env),
        vec![fileinto(
            "acme-users|[fwd] version 1.0 is out|[acme-users] [fwd] version 1.0 is out"
        )]
    );

    // Modifiers (RFC 5229 §4.1): (set arguments, expected value)
    let cases: &[(&str, &str)] = &[
        ("\"b\" \"${a}\"", "juMBlEd lETteRS"),
        (":length \"b\" \"${a}\"", "15"),
        (":lower \"b\" \"${a}\"", "jumbled letters"),
        (":upperfirst \"b\" \"${a}\"", "JuMBlEd lETteRS"),
        (":upperfirst :lower \"b\" \"${a}\"", "Jumbled letters"),
        (":lowerfirst :upper \"b\" \"${a}\"", "jUMBLED LETTERS"),
        (":quotewildcard \"b\" \"Rock*\"", "Rock\\*"),
        (":length :quotewildcard \"b\" \"a*?\"", "5"),
    ];
    for (args, want) in cases {
        let src = format!(
            "require [\"variables\", \"fileinto\"];\nset \"a\" \"juMBlEd lETteRS\";\nset {args};\n\
             if string :comparator \"i;octet\" :is \"${{B}}\" \"{}\" {{ discard; }}",
            want.replace('\\', "\\\\")
        );
        assert_eq!(
            actions(&src, &msg, &env),
            vec![Action::Discard],
            "set {args}"
        );
    }

    // text: with variables, unknown variables are empty, `${` without a name stays.
    let src = "require [\"variables\", \"vacation\"];\n\
               set \"honorific\"  \"Mr\";\nset \"first_name\" \"Joe\";\nset \"last_name\"  \"Doe\";\n\
               set \"vacation\" text:\nDear ${HONORIFIC} ${last_name},\nI'm out${nothing}, ${ok ${.\n.\n;\n\
               vacation \"${vacation}\";";
    match &actions(src, &msg, &env)[0] {
        Action::Vacation { reason, .. } => {
            assert_eq!(reason, "Dear Mr Doe,\r\nI'm out, ${ok ${.\r\n")
        }
        other => panic!("{other:?}"),
    }

    // string test; :count ignores empty strings.
    let src = "require [\"variables\", \"relational\", \"comparator-i;ascii-numeric\"];\n\
               set \"x\" \"\";\n\
               if string :count \"eq\" :comparator \"i;ascii-numeric\" [\"${x}\", \"a\", \"b\"] \"2\" { discard; }";
    assert_eq!(actions(src, &msg, &env), vec![Action::Discard]);
}

#[test]
fn rfc5230_vacation() {
    let env = envelope("boss@example.edu", "me@example.edu");
    let src = "require \"vacation\";\n\
               if header :contains \"subject\" \"cyrus\" {\n\
                   vacation \"I'm out -- send mail to cyrus-bugs\";\n\
               } else {\n\
                   vacation \"I'm out -- call me at 312 555 1212\";\n\
               }";
    let got = actions(src, &message("Subject: cyrus 2.4", "x"), &env);
    let Action::Vacation { reason, .. } = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(reason, "I'm out -- send mail to cyrus-bugs");
    assert_eq!(got[1], keep(), "vacation keeps the implicit keep");

    let src = "require \"vacation\";\n\
               vacation :days 23 :addresses [\"tjs@example.edu\",\n\"ts4z@landru.example.edu\"]\n\
               :subject \"Away\" :from \"tjs@example.edu\" :handle \"h1\" :mime\n\
               \"I'm away until October 19.\nIf it's an emergency, call 911, I guess.\" ;";
    let got = actions(src, &message("Subject: hi", "x"), &env);
    assert_eq!(
        got[0],
        Action::Vacation {
            reason: "I'm away until October 19.\r\nIf it's an emergency, call 911, I guess.".into(),
            subject: Some("Away".into()),
            from: Some("tjs@example.edu".into()),
            addresses: strings(&["tjs@example.edu", "ts4z@landru.example.edu"]),
            days: Some(23),
            mime: true,
            handle: Some("h1".into()),
        }
    );

    let src = "require \"vacation\";\n\
               if header :contains \"from\" \"boss@example.edu\" {\n\
                   redirect \"pleeb@isp.example.org\";\n\
               } else {\n\
                   vacation \"Sorry, I'm away.\";\n\
               }";
    let got = actions(src, &message("From: boss@example.edu", "x"), &env);
    assert_eq!(got, vec![redirect("pleeb@isp.example.org")]);

    let src = "require [\"vacation\", \"variables\"];\n\
               if header :matches \"subject\" \"*\" {\n\
                   vacation :subject \"Automatic response to: ${1}\" \"I'm away\";\n\
               }";
    let got = actions(src, &message("Subject: Lunch", "x"), &env);
    let Action::Vacation { subject, .. } = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(subject.as_deref(), Some("Automatic response to: Lunch"));
}

#[test]
fn rfc3834_vacation_allowed() {
    let h = |l: &[(&str, &str)]| {
        l.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, bool);
    let cases: &[Case] = &[
        (&[("Subject", "hi")], "friend@example.org", true),
        (&[("Auto-Submitted", "no")], "friend@example.org", true),
        (
            &[("Auto-Submitted", "auto-replied")],
            "friend@example.org",
            false,
        ),
        (
            &[("auto-submitted", "auto-generated; foo")],
            "friend@example.org",
            false,
        ),
        (
            &[("List-Id", "<list.example.org>")],
            "friend@example.org",
            false,
        ),
        (
            &[("List-Unsubscribe", "<mailto:x@example.org>")],
            "friend@example.org",
            false,
        ),
        (&[("Precedence", "bulk")], "friend@example.org", false),
        (&[("Precedence", "Junk")], "friend@example.org", false),
        (&[("Precedence", "list")], "friend@example.org", false),
        (&[("Precedence", "first-class")], "friend@example.org", true),
        (&[], "", false),
        (&[], "<>", false),
        (&[], "MAILER-DAEMON@example.org", false),
        (&[], "owner-list@example.org", false),
        (&[], "list-request@example.org", false),
    ];
    for (headers, from, want) in cases {
        assert_eq!(
            vacation_allowed(&h(headers), from),
            *want,
            "{headers:?} {from}"
        );
    }
}

#[test]
fn rfc5231_relational() {
    let msg = message(
        "Received: from a\nReceived: from b\nTo: foo@example.com.invalid, baz@example.com.invalid\n\
         Cc: qux@example.com.invalid\nFrom: bar@example.com.invalid\nX-Priority: 1",
        "x\n",
    );
    let env = envelope("bar@example.com.invalid", "foo@example.com.invalid");
    let cases: &[(&str, bool)] = &[
        ("address :count \"ge\" :comparator \"i;ascii-numeric\" [\"to\", \"cc\"] [\"3\"]", true),
        (
            "anyof (address :count \"ge\" :comparator \"i;ascii-numeric\" [\"to\"] [\"3\"],\n\
             address :count \"ge\" :comparator \"i;ascii-numeric\" [\"cc\"] [\"3\"])",
            false,
        ),
        ("header :count \"ge\" :comparator \"i;ascii-numeric\" [\"received\"] [\"3\"]", false),
        ("header :count \"ge\" :comparator \"i;ascii-numeric\" [\"received\", \"subject\"] [\"3\"]", false),
        ("header :count \"ge\" :comparator \"i;ascii-numeric\" [\"to\", \"cc\"] [\"3\"]", false),
        ("header :count \"eq\" :comparator \"i;ascii-numeric\" [\"received\"] [\"2\"]", true),
        ("header :value \"lt\" :comparator \"i;ascii-numeric\" [\"x-priority\"] [\"3\"]", true),
        ("header :value \"gt\" :comparator \"i;ascii-numeric\" [\"x-priority\"] [\"abc\"]", false),
        ("header :value \"ne\" :comparator \"i;ascii-numeric\" [\"x-priority\"] [\"01\"]", false),
        ("header :value \"gt\" [\"from\"] [\"AAA\"]", true),
        ("header :value \"le\" :comparator \"i;octet\" [\"from\"] [\"BAR\"]", false),
        ("header :count \"eq\" :comparator \"i;ascii-numeric\" [\"x-missing\"] [\"0\"]", true),
    ];
    for (test, want) in cases {
        let src = format!(
            "require [\"relational\", \"comparator-i;ascii-numeric\"];\nif {test} {{ discard; }}"
        );
        assert_eq!(
            actions(&src, &msg, &env) == vec![Action::Discard],
            *want,
            "{test}"
        );
    }
}

#[test]
fn rfc5232_imap4flags() {
    let env = envelope("boss@frobnitzm.example.edu", "me@example.edu");
    let msg = message("From: boss@frobnitzm.example.edu\nSubject: x", "x\n");
    let src = "require [\"imap4flags\", \"fileinto\"];\n\
               if header :contains \"from\" \"boss@frobnitzm.example.edu\" {\n\
                   setflag \"\\\\Flagged\";\n    fileinto \"INBOX.From Boss\";\n}";
    assert_eq!(
        actions(src, &msg, &env),
        vec![Action::FileInto {
            mailbox: "INBOX.From Boss".into(),
            flags: strings(&["\\Flagged"]),
            create: false,
            copy: false
        }]
    );

    // Implicit keep takes the internal variable; :flags overrides it; removeflag; hasflag.
    let src = "require [\"imap4flags\", \"fileinto\", \"copy\"];\n\
               addflag [\"\\\\Seen\", \"$Work \\\\Seen\"];\naddflag \"\\\\Answered\";\nremoveflag \"\\\\answered\";\n\
               if hasflag :is \"$work\" { fileinto :flags \"\\\\Deleted\" \"Trash\"; fileinto :copy \"Work\"; }\n\
               if hasflag :is \"\\\\Answered\" { discard; }";
    let want_flags = strings(&["\\Seen", "$Work"]);
    assert_eq!(
        actions(src, &msg, &env),
        vec![
            Action::FileInto {
                mailbox: "Trash".into(),
                flags: strings(&["\\Deleted"]),
                create: false,
                copy: false
            },
            Action::FileInto {
                mailbox: "Work".into(),
                flags: want_flags.clone(),
                create: false,
                copy: true
            },
        ]
    );
    let src = "require \"imap4flags\";\naddflag \"\\\\Seen $Work\";";
    assert_eq!(
        actions(src, &msg, &env),
        vec![Action::Keep { flags: want_flags }]
    );

    // Flag variables (with variables), hasflag :count.
    let src = "require [\"imap4flags\", \"variables\", \"relational\", \"comparator-i;ascii-numeric\"];\n\
               setflag \"MyVar\" \"Junk\";\naddflag \"myvar\" [\"\\\\Seen\", \"Junk\"];\n\
               if allof (hasflag :contains \"MyVar\" \"Junk\",\n\
                         hasflag :count \"eq\" :comparator \"i;ascii-numeric\" \"myvar\" \"2\",\n\
                         not hasflag \"Junk\") {\n keep :flags \"${myvar}\";\n}";
    assert_eq!(
        actions(src, &msg, &env),
        vec![Action::Keep {
            flags: strings(&["Junk", "\\Seen"])
        }]
    );
}

#[test]
fn rfc5233_subaddress() {
    let src = "require [\"envelope\", \"subaddress\", \"fileinto\"];\n\
               if envelope :user \"to\" \"postmaster\" {\n  fileinto \"inbox.postmaster\";\n  stop;\n}\n\
               if envelope :detail :is \"to\" \"mta-filters\" {\n  fileinto \"inbox.ietf-mta-filters\";\n}\n\
               if address :detail \"to\" \"\" { fileinto \"empty-detail\"; }";
    let msg = message("To: ken@example.org", "x");
    let cases: &[(&str, &str, Vec<Action>)] = &[
        (
            "postmaster+foo@example.org",
            "To: ken@example.org",
            vec![fileinto("inbox.postmaster")],
        ),
        (
            "ken+mta-filters@example.org",
            "To: ken@example.org",
            vec![fileinto("inbox.ietf-mta-filters")],
        ),
        ("ken@example.org", "To: ken@example.org", vec![keep()]),
        (
            "ken@example.org",
            "To: ken+@example.org",
            vec![fileinto("empty-detail")],
        ),
    ];
    for (rcpt, headers, want) in cases {
        let got = actions(src, &message(headers, "x"), &envelope("a@b.example", rcpt));
        assert_eq!(&got, want, "{rcpt} {headers}");
    }
    let _ = msg;
}

#[test]
fn rfc5173_body() {
    let raw = "From: a@b.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
               Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
               --XX\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
               The missile =\r\ncoordinates are secret.\r\n\
               --XX\r\nContent-Type: audio/mp3\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n\
               --XX--\r\n";
    let msg = MessageView::from_raw(raw.as_bytes());
    let env = envelope("a@b.example", "c@d.example");
    let cases: &[(&str, bool)] = &[
        ("body :raw :contains \"missile =\"", true),
        ("body :raw :contains \"missile coordinates\"", false),
        ("body :text :contains \"missile coordinates\"", true),
        ("body :contains \"MISSILE\"", true),
        (
            "body :content \"text\" :contains [\"missile\", \"coordinates\"]",
            true,
        ),
        ("body :content \"text/html\" :contains \"missile\"", false),
        ("body :content \"audio/mp3\" :contains \"\"", true),
        ("body :content \"image\" :contains \"\"", false),
        ("body :text :matches \"*coordinates*\"", true),
    ];
    for (test, want) in cases {
        let src = format!("require \"body\";\nif {test} {{ discard; }}");
        assert_eq!(
            actions(&src, &msg, &env) == vec![Action::Discard],
            *want,
            "{test}"
        );
    }
}

#[test]
fn rfc5260_date_and_index() {
    let env = envelope("boss@example.com", "me@example.com");
    let msg = message(
        "Received: from a; Tue, 1 Jul 2003 11:00:00 +0200\nReceived: from b; Tue, 1 Jul 2003 10:55:00 +0200\n\
         From: boss@example.com\nDate: Tue, 1 Jul 2003 10:52:37 +0200",
        "x",
    );
    let src = "require [\"date\", \"relational\", \"fileinto\"];\n\
               if allof(header :is \"from\" \"boss@example.com\",\n\
                        date :value \"ge\" :originalzone \"date\" \"hour\" \"09\",\n\
                        date :value \"lt\" :originalzone \"date\" \"hour\" \"17\")\n\
               { fileinto \"urgent\"; }";
    assert_eq!(actions(src, &msg, &env), vec![fileinto("urgent")]);

    // Each date part of the Date field, in its original zone and in others.
    let cases: &[(&str, &str, &str)] = &[
        (":originalzone", "year", "2003"),
        (":originalzone", "month", "07"),
        (":originalzone", "day", "01"),
        (":originalzone", "date", "2003-07-01"),
        (":originalzone", "julian", "52821"),
        (":originalzone", "hour", "10"),
        (":originalzone", "minute", "52"),
        (":originalzone", "second", "37"),
        (":originalzone", "time", "10:52:37"),
        (":originalzone", "iso8601", "2003-07-01T10:52:37+02:00"),
        (":originalzone", "std11", "Tue, 1 Jul 2003 10:52:37 +0200"),
        (":originalzone", "zone", "+0200"),
        (":originalzone", "weekday", "2"),
        (":zone \"+0000\"", "time", "08:52:37"),
        (":zone \"-0930\"", "iso8601", "2003-06-30T23:22:37-09:30"),
        ("", "zone", "+0100"),
        ("", "hour", "09"),
    ];
    for (zone, part, want) in cases {
        let src = format!(
            "require \"date\";\nif date {zone} :is \"date\" \"{part}\" \"{want}\" {{ discard; }}"
        );
        assert_eq!(
            actions(&src, &msg, &env),
            vec![Action::Discard],
            "{zone} {part} {want}"
        );
    }

    // currentdate with `now` = 2026-11-29T08:00:00Z in +0100.
    let src = "require [\"date\", \"relational\", \"vacation\"];\n\
               if allof(currentdate :value \"ge\" \"date\" \"2026-11-28\",\n\
                        currentdate :value \"le\" \"date\" \"2026-12-05\")\n\
               { vacation :days 7 \"I'm away during the first week in December.\"; }";
    assert!(matches!(
        actions(src, &msg, &env)[0],
        Action::Vacation { days: Some(7), .. }
    ));
    let src = "require [\"date\", \"variables\", \"fileinto\"];\n\
               if currentdate :matches \"month\" \"*\" { set \"month\" \"${1}\"; }\n\
               if currentdate :matches \"year\"  \"*\" { set \"year\" \"${1}\"; }\n\
               if currentdate :zone \"-1000\" :is \"weekday\" \"6\" { set \"sat\" \"-sat\"; }\n\
               fileinto \"${month}-${year}${sat}\";";
    assert_eq!(actions(src, &msg, &env), vec![fileinto("11-2026-sat")]);

    // :index counts header fields from the top, or from the bottom with :last.
    let src = "require [\"date\", \"index\", \"fileinto\"];\n\
               if date :index 1 :last :zone \"+0000\" \"received\" \"time\" \"08:55:00\" { fileinto \"last\"; }\n\
               if header :index 1 :contains \"received\" \"from a\" { fileinto \"first\"; }\n\
               if header :index 3 :contains \"received\" \"\" { fileinto \"third\"; }\n\
               if address :index 1 :is \"from\" \"boss@example.com\" { fileinto \"from\"; }";
    assert_eq!(
        actions(src, &msg, &env),
        vec![fileinto("last"), fileinto("first"), fileinto("from")]
    );
}

#[test]
fn rfc5490_mailbox_and_rfc3894_copy() {
    let src = "require [\"fileinto\", \"reject\", \"mailbox\"];\n\
               if mailboxexists \"Partners\" {\n  fileinto \"Partners\";\n} else {\n\
                 reject \"This message was not accepted by the Mailstore\";\n}";
    let msg = message("Subject: x", "x");
    let mut env = envelope("a@b.example", "c@d.example");
    assert!(matches!(actions(src, &msg, &env)[0], Action::Reject { .. }));
    env.mailboxes.insert("Partners".into());
    assert_eq!(actions(src, &msg, &env), vec![fileinto("Partners")]);

    let src = "require [\"fileinto\", \"mailbox\"];\nfileinto :create \"INBOX.Lists\";";
    assert_eq!(
        actions(src, &msg, &env),
        vec![Action::FileInto {
            mailbox: "INBOX.Lists".into(),
            flags: vec![],
            create: true,
            copy: false
        }]
    );

    // RFC 3894 §4: copies do not cancel the implicit keep.
    let src = "require [\"copy\", \"fileinto\"];\nfileinto :copy \"incoming\";\nredirect :copy \"b@example.org\";";
    assert_eq!(
        actions(src, &msg, &env),
        vec![
            Action::FileInto {
                mailbox: "incoming".into(),
                flags: vec![],
                create: false,
                copy: true
            },
            Action::Redirect {
                address: "b@example.org".into(),
                copy: true
            },
            keep(),
        ]
    );
}

#[test]
fn rfc5228_encoded_character() {
    use super::super::variables::decode_encoded_characters as d;
    let cases: &[(&str, &str)] = &[
        ("$${hex:24 24}", "$$$"),
        ("${hex: 40}", "@"),
        ("${hex:40", "${hex:40"),
        ("${HEX: 40}", "@"),
        ("${hex:400}", "${hex:400}"),
        ("${hex:4${hex:30}}", "${hex:40}"),
        ("${unicode:40}", "@"),
        ("${ unicode:40}", "${ unicode:40}"),
        ("${UNICODE:40}", "@"),
        ("${UnICoDE:0000040}", "@"),
        ("${Unicode:40}", "@"),
        ("${Unicode:Cool}", "${Unicode:Cool}"),
        ("${hex:}", "${hex:}"),
        ("${unicode:263a 20 263A}", "\u{263a} \u{263a}"),
    ];
    for (input, want) in cases {
        assert_eq!(d(input).as_deref(), Ok(*want), "{input}");
    }
    assert!(d("${unicode:200000}").is_err());
    assert!(d("${Unicode:DF01}").is_err());
    assert!(d("${hex:ff}").is_err(), "not UTF-8");

    let src =
        "require [\"encoded-character\", \"fileinto\"];\nfileinto \"box${hex:40}${unicode:e9}\";";
    assert_eq!(
        actions(
            src,
            &message("Subject: x", "x"),
            &envelope("a@b.example", "c@d.example")
        ),
        vec![fileinto("box@é")]
    );
    // Without the require, the text is literal.
    let src = "require \"fileinto\";\nfileinto \"box${hex:40}\";";
    assert_eq!(
        actions(
            src,
            &message("Subject: x", "x"),
            &envelope("a@b.example", "c@d.example")
        ),
        vec![fileinto("box${hex:40}")]
    );
}
