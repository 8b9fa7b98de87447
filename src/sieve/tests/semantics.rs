//! Implicit keep, collapsing duplicates, conflicts and the run-time limits.

use super::*;

fn env() -> Envelope {
    envelope("a@b.example", "c@d.example")
}

fn msg() -> MessageView {
    message("From: a@b.example\nSubject: test", "body\n")
}

#[test]
fn implicit_keep_rules() {
    // (script, actions): RFC 5228 §2.10.2 — any of fileinto, redirect, discard, reject and
    // explicit keep cancel the implicit keep; :copy variants and vacation do not.
    // (script, actions, whether the Keep is the implicit one)
    let cases: Vec<(&str, Vec<Action>, bool)> = vec![
        ("", vec![keep()], true),
        ("# nothing but a comment\n", vec![keep()], true),
        ("stop;\ndiscard;", vec![keep()], true),
        ("discard;", vec![Action::Discard], false),
        ("discard; discard;", vec![Action::Discard], false),
        ("keep;", vec![keep()], false),
        ("keep; keep;", vec![keep()], false),
        ("discard; keep;", vec![Action::Discard, keep()], false),
        (
            "redirect \"x@y.example\";",
            vec![redirect("x@y.example")],
            false,
        ),
        (
            "require \"fileinto\";\nfileinto \"A\";",
            vec![fileinto("A")],
            false,
        ),
        (
            "require [\"fileinto\", \"copy\"];\nfileinto :copy \"A\";",
            vec![
                Action::FileInto {
                    mailbox: "A".into(),
                    flags: vec![],
                    create: false,
                    copy: true,
                },
                keep(),
            ],
            true,
        ),
        ("if false { discard; }", vec![keep()], true),
        ("if true { stop; }\ndiscard;", vec![keep()], true),
        (
            "if false { } elsif true { discard; } else { keep; }",
            vec![Action::Discard],
            false,
        ),
        (
            "if false { } elsif false { discard; } else { keep; }",
            vec![keep()],
            false,
        ),
    ];
    for (src, want, implicit) in cases {
        let out = run_full(src, &msg(), &env()).unwrap();
        assert_eq!(out.actions, want, "{src}");
        assert_eq!(out.implicit_keep, implicit, "{src}");
    }
}

#[test]
fn duplicates_collapse() {
    let src = "require [\"fileinto\", \"imap4flags\", \"copy\", \"mailbox\"];\n\
               fileinto :copy :flags \"a\" \"X\";\nfileinto :create :flags \"b\" \"X\";\nfileinto \"Y\";\nfileinto \"X\";\n\
               redirect \"r@example.org\";\nredirect :copy \"R@example.org\";";
    assert_eq!(
        actions(src, &msg(), &env()),
        vec![
            Action::FileInto {
                mailbox: "X".into(),
                flags: strings(&["a", "b"]),
                create: true,
                copy: false
            },
            fileinto("Y"),
            redirect("r@example.org"),
        ]
    );
}

#[test]
fn conflicting_actions_fail_and_fall_back_to_keep() {
    let cases: &[&str] = &[
        "require [\"reject\", \"fileinto\"];\nfileinto \"A\";\nreject \"no\";",
        "require [\"reject\", \"fileinto\"];\nreject \"no\";\nfileinto \"A\";",
        "require \"reject\";\nreject \"no\";\nkeep;",
        "require [\"reject\", \"ereject\"];\nreject \"no\";\nereject \"no\";",
        "require [\"reject\", \"vacation\"];\nvacation \"away\";\nreject \"no\";",
        "require \"vacation\";\nvacation \"away\";\nvacation \"again\";",
    ];
    for src in cases {
        let e = run_full(src, &msg(), &env()).unwrap_err();
        assert!(matches!(e, RunError::Conflict(_)), "{src}: {e}");
    }
    assert_eq!(Outcome::fallback().actions, vec![keep()]);
    // reject with redirect is allowed (RFC 5429 leaves it to the implementation).
    let src = "require \"reject\";\nredirect \"x@y.example\";\nreject \"no\";";
    assert_eq!(actions(src, &msg(), &env()).len(), 2);
}

#[test]
fn run_limits() {
    let limits = Limits {
        max_redirects: 4,
        ..Limits::default()
    };
    let five: String = (1..=5)
        .map(|i| format!("redirect \"u{i}@example.org\";\n"))
        .collect();
    let four: String = (1..=4)
        .map(|i| format!("redirect \"u{i}@example.org\";\n"))
        .collect();
    assert_eq!(
        run(&script(&four), &msg(), &env(), NOW, &limits)
            .unwrap()
            .actions
            .len(),
        4
    );
    // A repeated address does not count twice.
    let repeated = format!("{four}redirect \"U1@example.org\";");
    assert!(run(&script(&repeated), &msg(), &env(), NOW, &limits).is_ok());
    assert_eq!(
        run(&script(&five), &msg(), &env(), NOW, &limits),
        Err(RunError::TooManyRedirects(4))
    );

    let boxes: String = (1..=9)
        .map(|i| format!("fileinto :copy \"box{i}\";\n"))
        .collect();
    let src = format!("require [\"fileinto\", \"copy\"];\n{boxes}");
    let limits = Limits {
        max_actions: 10,
        ..Limits::default()
    };
    // 9 fileinto + implicit keep = 10.
    assert_eq!(
        run(&script(&src), &msg(), &env(), NOW, &limits)
            .unwrap()
            .actions
            .len(),
        10
    );
    let limits = Limits {
        max_actions: 9,
        ..Limits::default()
    };
    assert_eq!(
        run(&script(&src), &msg(), &env(), NOW, &limits),
        Err(RunError::TooManyActions(9))
    );

    // Work: a backtracking-heavy :matches (|pattern| x |text| steps) runs out of steps.
    let long = "a".repeat(3000);
    let m = message(&format!("Subject: {long}"), "x");
    let src = format!(
        "if header :matches \"Subject\" \"*{}b\" {{ discard; }}",
        "a".repeat(200)
    );
    let src = src.as_str();
    let limits = Limits {
        max_steps: 50_000,
        ..Limits::default()
    };
    assert_eq!(
        run(&script(src), &m, &env(), NOW, &limits),
        Err(RunError::TooMuchWork(50_000))
    );
    // The same script on a short subject is fine.
    let m = message(&format!("Subject: xx{}b", "a".repeat(200)), "x");
    assert_eq!(
        run(&script(src), &m, &env(), NOW, &limits).unwrap().actions,
        vec![Action::Discard]
    );

    // Commands count as work too: a long script under a tiny budget.
    let src: String = "if true { keep; }\n".repeat(100);
    let limits = Limits {
        max_steps: 150,
        ..Limits::default()
    };
    assert_eq!(
        run(&script(&src), &msg(), &env(), NOW, &limits),
        Err(RunError::TooMuchWork(150))
    );

    // Variables: count and size.
    let sets: String = (1..=5).map(|i| format!("set \"v{i}\" \"x\";\n")).collect();
    let src = format!("require \"variables\";\n{sets}");
    let limits = Limits {
        max_variables: 4,
        ..Limits::default()
    };
    assert_eq!(
        run(&script(&src), &msg(), &env(), NOW, &limits),
        Err(RunError::TooManyVariables(4))
    );
    let src = "require [\"variables\", \"fileinto\"];\nset \"a\" \"0123456789\";\nset \"a\" \"${a}${a}${a}${a}\";\nfileinto \"${a}\";";
    let limits = Limits {
        max_variable_size: 16,
        ..Limits::default()
    };
    assert_eq!(
        run(&script(src), &msg(), &env(), NOW, &limits)
            .unwrap()
            .actions,
        vec![fileinto("0123456789012345")]
    );
}

#[test]
fn redirect_address_checked_at_run_time_with_variables() {
    let src = "require \"variables\";\nset \"to\" \"not an address\";\nredirect \"${to}\";";
    assert_eq!(
        run_full(src, &msg(), &env()),
        Err(RunError::InvalidRedirect("not an address".into()))
    );
    let src = "require \"variables\";\nset \"to\" \"fwd@example.org\";\nredirect \"${to}\";";
    assert_eq!(
        actions(src, &msg(), &env()),
        vec![redirect("fwd@example.org")]
    );
}

#[test]
fn address_lists_in_headers() {
    let m = message(
        "To: \"Doe, John\" <john@example.org>, undisclosed-recipients:;\nCc: (comment) jane@example.net (Jane), Team: a@example.com, b@example.com;",
        "x",
    );
    let cases: &[(&str, bool)] = &[
        ("address :is \"to\" \"john@example.org\"", true),
        ("address :is :localpart \"to\" \"Doe\"", false),
        ("address :is \"cc\" \"jane@example.net\"", true),
        ("address :is \"cc\" \"b@example.com\"", true),
        ("address :matches :domain \"cc\" \"*.com\"", true),
        ("address :contains \"cc\" \"Team\"", false),
    ];
    for (test, want) in cases {
        let src = format!("if {test} {{ discard; }}");
        assert_eq!(
            actions(&src, &m, &env()) == vec![Action::Discard],
            *want,
            "{test}"
        );
    }
}

#[test]
fn header_decoding_through_from_raw() {
    let m = message("Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus\n  Berlin", "x");
    let src = "if header :is \"subject\" \"Grüße aus Berlin\" { discard; }";
    assert_eq!(actions(src, &m, &env()), vec![Action::Discard]);
}

#[test]
fn hostile_scripts_stay_bounded() {
    // A 60 000-character :matches key: no recursion, so no stack overflow.
    let key = "?".repeat(30_000) + &"a*".repeat(15_000);
    let src = format!("if header :matches \"Subject\" \"{key}\" {{ discard; }}");
    let limits = Limits {
        max_script_size: 1 << 20,
        ..Limits::default()
    };
    let s = compile(&src, &limits).unwrap();
    let m = message(&format!("Subject: {}", "a".repeat(40_000)), "x");
    assert_eq!(
        run(&s, &m, &env(), NOW, &limits).unwrap().actions,
        vec![keep()]
    );
    let m = message(&format!("Subject: {}", "a".repeat(50_000)), "x");
    assert_eq!(
        run(&s, &m, &env(), NOW, &limits).unwrap().actions,
        vec![Action::Discard]
    );

    // Thousands of references to a 4 KB variable expand to at most max_variable_size bytes.
    let refs = "${a}".repeat(10_000);
    let src = format!(
        "require [\"variables\", \"fileinto\"];\nset \"a\" \"{}\";\nset \"b\" \"{refs}\";\n\
         if string :count \"eq\" :comparator \"i;ascii-numeric\" \"${{b}}\" \"1\" {{ fileinto \"${{b}}\"; }}",
        "x".repeat(4096)
    );
    let src = src.replace(
        "require [",
        "require [\"relational\", \"comparator-i;ascii-numeric\", ",
    );
    let s = compile(&src, &limits).unwrap();
    let out = run(&s, &msg(), &env(), NOW, &limits).unwrap();
    match &out.actions[0] {
        Action::FileInto { mailbox, .. } => {
            assert_eq!(mailbox.len(), 4096, "capped at max_variable_size")
        }
        other => panic!("{other:?}"),
    }

    // The mandatory comparators may be required by name.
    let src = "require [\"comparator-i;octet\", \"comparator-i;ascii-casemap\"];\nkeep;";
    assert!(compile(src, &Limits::default()).is_ok());
}
