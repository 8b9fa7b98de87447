//! Scripts that must not compile, with the position and the words of the error.

use super::*;

#[test]
fn compile_errors_carry_line_and_column() {
    // (script, line, column, part of the message)
    let cases: &[(&str, u32, u32, &str)] = &[
        ("keep", 1, 5, "expected `;` or `{`"),
        ("if true { keep;", 1, 16, "expected a command or `}`"),
        ("if true {\n  fileinto \"x\";\n}", 2, 3, "needs the \"fileinto\" extension"),
        ("require \"foo\";", 1, 9, "unsupported extension \"foo\""),
        ("require \"comparator-i;foo\";", 1, 9, "unknown comparator"),
        ("require [\"fileinto\", 42];", 1, 22, "expected a string"),
        ("keep;\nrequire \"fileinto\";", 2, 1, "require must come before"),
        ("\"unterminated", 1, 1, "unterminated quoted string"),
        ("keep; /* comment", 1, 7, "unterminated bracketed comment"),
        ("require \"vacation\";\nvacation text: x\nbody\n.\n;", 2, 10, "`text:` must be followed by the end of the line"),
        ("require \"vacation\";\nvacation text:\nno end", 2, 10, "unterminated `text:` string"),
        ("elsif true { keep; }", 1, 1, "elsif without a preceding if"),
        ("else { keep; }", 1, 1, "else without a preceding if"),
        ("if header :is :contains \"a\" \"b\" { keep; }", 1, 15, "only one match type"),
        ("if header :comparator \"i;foo\" \"a\" \"b\" { keep; }", 1, 11, "unknown comparator \"i;foo\""),
        ("if header :comparator \"i;ascii-numeric\" \"a\" \"1\" {}", 1, 11, "comparator-i;ascii-numeric"),
        (
            "require \"comparator-i;ascii-numeric\";\nif header :contains :comparator \"i;ascii-numeric\" \"a\" \"1\" {}",
            2,
            11,
            "supports only :is",
        ),
        ("if header :count \"gt\" \"a\" \"1\" {}", 1, 11, "\"relational\""),
        ("require \"relational\";\nif header :value \"gtx\" \"a\" \"1\" {}", 2, 11, "unknown relation"),
        ("if address :user \"to\" \"x\" {}", 1, 12, "\"subaddress\""),
        ("if envelope \"to\" \"x\" {}", 1, 4, "\"envelope\""),
        ("require \"envelope\";\nif envelope \"cc\" \"x\" {}", 2, 13, "unknown envelope part"),
        ("redirect \"not an address\";", 1, 10, "redirect needs one address"),
        ("redirect :copy \"a@b.example\";", 1, 10, "\"copy\""),
        ("if size 10K { keep; }", 1, 4, "usage: size"),
        ("if size :over 5X { keep; }", 1, 15, "only be followed by K, M or G"),
        ("if size :over 99999999999999999999 {}", 1, 15, "number too large"),
        ("set \"a\" \"b\";", 1, 1, "\"variables\""),
        ("require \"variables\";\nset \"1a\" \"b\";", 2, 5, "invalid variable name"),
        ("require \"variables\";\nset :lower :upper \"a\" \"b\";", 2, 1, "same precedence"),
        ("foo;", 1, 1, "unknown command `foo`"),
        ("if true {\n  if bogus { keep; }\n}", 2, 6, "unknown test `bogus`"),
        ("keep :flags \"x\";", 1, 6, "\"imap4flags\""),
        ("require \"fileinto\";\nfileinto :create \"x\";", 2, 10, "\"mailbox\""),
        ("require \"fileinto\";\nfileinto :bogus \"x\";", 2, 10, "unknown tagged argument :bogus"),
        ("require \"fileinto\";\nfileinto \"x\" :copy;", 2, 14, "must come before"),
        ("require \"fileinto\";\nfileinto [\"a\", \"b\"];", 2, 10, "must be a string"),
        ("require \"date\";\nif date :zone \"bogus\" \"date\" \"year\" \"2020\" {}", 2, 9, "invalid time zone"),
        ("require \"date\";\nif currentdate \"century\" \"21\" {}", 2, 16, "unknown date part"),
        ("require \"index\";\nif header :last \"a\" \"b\" {}", 2, 11, ":last needs :index"),
        ("require \"index\";\nif header :index 0 \"a\" \"b\" {}", 2, 11, "counts from 1"),
        ("if header :index 1 \"a\" \"b\" {}", 1, 11, "\"index\""),
        ("if not (true, false) {}", 1, 4, "exactly one test"),
        ("if allof { keep; }", 1, 4, "list of tests"),
        ("if true, false {}", 1, 8, "expected `;` or `{`"),
        ("stop {}", 1, 1, "takes no block"),
        ("if true keep;", 1, 1, "if needs a block"),
        ("keep; ]", 1, 7, "unexpected `]`"),
        ("keep; @", 1, 7, "unexpected character `@`"),
        ("if header :is \"a\" { keep; }", 1, 4, "usage: header"),
        ("require \"encoded-character\";\nkeep;\nif header :is \"a\" \"${unicode:DF01}\" {}", 3, 19, "not a Unicode scalar value"),
        ("reject \"no\";", 1, 1, "\"reject\""),
        ("require \"reject\";\nereject \"no\";", 2, 1, "\"ereject\""),
        ("if hasflag \"x\" {}", 1, 4, "\"imap4flags\""),
        ("require \"imap4flags\";\nsetflag \"v\" \"x\";", 2, 9, "\"variables\""),
        ("vacation \"x\";", 1, 1, "\"vacation\""),
        ("require \"vacation\";\nvacation :days \"x\" \"y\";", 2, 16, ":days takes a number"),
        ("if body :contains \"x\" {}", 1, 4, "\"body\""),
        ("require \"body\";\nif body :raw :text \"x\" {}", 2, 4, "only one of :raw"),
        ("if mailboxexists \"x\" {}", 1, 4, "\"mailbox\""),
        ("if string \"a\" \"b\" {}", 1, 4, "\"variables\""),
        ("/* ok */ if exists \"x\" { keep; } # fine\nelse if true {}", 2, 1, "else takes no arguments"),
    ];
    for (src, line, col, needle) in cases {
        match compile(src, &Limits::default()) {
            Ok(_) => panic!("compiled but should not: {src:?}"),
            Err(e) => {
                assert!(
                    e.message.contains(needle) && (e.line, e.col) == (*line, *col),
                    "{src:?}: got {}:{} {:?}, want {line}:{col} containing {needle:?}",
                    e.line,
                    e.col,
                    e.message
                );
                assert!(e
                    .to_string()
                    .starts_with(&format!("line {line}, column {col}: ")));
            }
        }
    }
}

#[test]
fn compile_limits_size_nesting_commands() {
    let limits = Limits {
        max_script_size: 20,
        ..Limits::default()
    };
    let e = compile("# a comment that is long\nkeep;", &limits).unwrap_err();
    assert!(e.message.contains("over the limit of 20 bytes"), "{e}");

    let limits = Limits {
        max_nesting: 3,
        ..Limits::default()
    };
    assert!(compile("if true { if true { if true { keep; } } }", &limits).is_ok());
    let e = compile(
        "if true { if true { if true { if true { keep; } } } }",
        &limits,
    )
    .unwrap_err();
    assert_eq!((e.line, e.col), (1, 39), "{e}");
    assert!(e.message.contains("nested too deeply"), "{e}");
    let e = compile("if not not not not true { keep; }", &limits).unwrap_err();
    assert!(e.message.contains("nested too deeply"), "{e}");

    let limits = Limits {
        max_commands: 3,
        ..Limits::default()
    };
    assert!(compile("keep; keep; keep;", &limits).is_ok());
    let e = compile("keep;\nkeep;\nkeep;\nkeep;", &limits).unwrap_err();
    assert_eq!(
        (e.line, e.col, e.message.as_str()),
        (4, 1, "too many commands (limit 3)")
    );
}

/// Every prefix and a byte-flipped copy of a realistic script compiles or fails cleanly.
#[test]
fn truncated_and_mangled_scripts_never_panic() {
    let src = super::rfc_examples::RFC5228_EXAMPLE;
    for end in (0..=src.len()).filter(|&i| src.is_char_boundary(i)) {
        let _ = compile(&src[..end], &Limits::default());
    }
    let bytes = src.as_bytes();
    for i in 0..bytes.len() {
        for b in [b'"', b'{', b'}', b'[', b'(', b':', b'\\', b'#', b'*'] {
            let mut m = bytes.to_vec();
            m[i] = b;
            if let Ok(s) = std::str::from_utf8(&m) {
                let _ = compile(s, &Limits::default());
            }
        }
    }
}

#[test]
fn lexer_numbers_strings_and_comments() {
    let msg = message("Subject: x", &"a".repeat(2000));
    // 1K = 1024 octets: the ~2 KB message is over 1K and under 1M and 1G.
    let src = "if allof(size :over 1K, size :under 1M, size :under 1g) { discard; }";
    assert_eq!(
        actions(src, &msg, &envelope("a@b.example", "c@d.example")),
        vec![Action::Discard]
    );

    // Quoted-string escapes, bracketed comments in the middle of a command, text: with
    // dot-stuffing and a hash comment after `text:`.
    let src = "require [\"fileinto\", /* inline */ \"vacation\"];\n\
               fileinto /* here too */ \"a\\\\b\\\"c\\d\";\n\
               vacation text: # comment\n..dot\nline 2\n.\n;";
    let got = actions(src, &msg, &envelope("a@b.example", "c@d.example"));
    assert_eq!(got[0], fileinto("a\\b\"cd"));
    match &got[1] {
        Action::Vacation { reason, .. } => assert_eq!(reason, ".dot\r\nline 2\r\n"),
        other => panic!("{other:?}"),
    }
}
