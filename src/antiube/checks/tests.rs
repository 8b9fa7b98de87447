use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn table(text: &str) -> Table {
    Table::parse("test", text, Dialect::Regexp, &Limits::default()).expect("table loads")
}

fn pcre(text: &str) -> Table {
    Table::parse("test", text, Dialect::Pcre, &Limits::default()).expect("table loads")
}

fn err(text: &str, dialect: Dialect) -> LoadError {
    Table::parse("maps/header_checks", text, dialect, &Limits::default())
        .expect_err("table must be refused")
}

fn hit(t: &Table, input: &str) -> (Action, String, usize) {
    let m = t.first_match(input).expect("a rule fires");
    (m.action, m.text, m.line)
}

#[test]
fn each_action() {
    let t = table(
        "/^a/ REJECT no a\n\
         /^b/ discard\n\
         /^c/ WARN watch c\n\
         /^d/ HOLD\n\
         /^e/ IGNORE\n\
         /^f/ DUNNO\n\
         /^g/ OK\n\
         /^h/ 450 4.7.1 try later\n\
         /^j/ 554 5.7.1 go away\n\
         /^k/ PREPEND X-Seen: yes\n\
         /^l/ filter smtp:[127.0.0.1]:10025\n\
         /^n/ REDIRECT x@example.org\n\
         /^o/ REPLACE X-New: 1\n\
         /^p/ INFO note\n\
         /^q/ BCC y@example.org\n\
         /^r/ STRIP\n",
    );
    let cases: &[(&str, Action, &str)] = &[
        ("a", Action::Reject, "no a"),
        ("b", Action::Discard, ""),
        ("c", Action::Warn, "watch c"),
        ("d", Action::Hold, ""),
        ("e", Action::Ignore, ""),
        ("f", Action::Dunno, ""),
        ("g", Action::Dunno, ""),
        ("h", Action::Reply(450), "4.7.1 try later"),
        ("j", Action::Reply(554), "5.7.1 go away"),
        ("k", Action::Unsupported("PREPEND".into()), "X-Seen: yes"),
        (
            "l",
            Action::Unsupported("FILTER".into()),
            "smtp:[127.0.0.1]:10025",
        ),
        ("n", Action::Unsupported("REDIRECT".into()), "x@example.org"),
        ("o", Action::Unsupported("REPLACE".into()), "X-New: 1"),
        ("p", Action::Unsupported("INFO".into()), "note"),
        ("q", Action::Unsupported("BCC".into()), "y@example.org"),
        ("r", Action::Unsupported("STRIP".into()), ""),
    ];
    for (i, (input, action, text)) in cases.iter().enumerate() {
        let (a, t_, line) = hit(&t, input);
        assert_eq!((&a, t_.as_str()), (action, *text), "input {input}");
        assert_eq!(line, i + 1, "line of {input}");
    }
    assert_eq!(t.first_match("z"), None);
    assert_eq!(t.len(), 16);
}

#[test]
fn first_match_wins_in_order() {
    let t = table("/spam/ WARN first\n/spam/ REJECT second\n");
    assert_eq!(hit(&t, "Subject: spam"), (Action::Warn, "first".into(), 1));
}

#[test]
fn case_insensitive_by_default_and_i_toggles() {
    let t = table("/^subject: viagra/ REJECT a\n/^X-Case: Exact/i REJECT b\n");
    assert_eq!(hit(&t, "Subject: VIAGRA now").2, 1);
    assert_eq!(hit(&t, "X-Case: Exact").2, 2);
    assert_eq!(t.first_match("x-case: exact"), None);
    let p = pcre("/^subject: viagra/ REJECT a\n/^X-Case: Exact/i REJECT b\n");
    assert!(p.first_match("SUBJECT: viagra").is_some());
    assert_eq!(p.first_match("X-CASE: EXACT"), None);
}

#[test]
fn multiline_flag() {
    // Folded header with its newline kept: ^ only at the start unless m.
    let input = "Subject: hello\n\tbuy now";
    let t = table("/^\tbuy/ REJECT plain\n");
    assert_eq!(t.first_match(input), None);
    let t = table("/^\tbuy/m REJECT multi\n");
    assert_eq!(hit(&t, input).0, Action::Reject);
    // regexp default: `.` crosses the newline (no REG_NEWLINE); with m it does not.
    assert!(table("/hello.\tbuy/ WARN\n").first_match(input).is_some());
    assert!(table("/hello.\tbuy/m WARN\n").first_match(input).is_none());
    // pcre: s (dotall) is on by default and toggles.
    assert!(pcre("/hello.\tbuy/ WARN\n").first_match(input).is_some());
    assert!(pcre("/hello.\tbuy/s WARN\n").first_match(input).is_none());
}

#[test]
fn pcre_x_a_u_flags() {
    let t = pcre("/^ sub ject : \\s+ free  # a comment/x REJECT\n");
    assert!(t.first_match("Subject: free").is_some());
    // Without x the spaces are literal.
    assert!(pcre("/sub ject/ REJECT\n").first_match("Subject").is_none());
    // A anchors at the start.
    let t = pcre("/free/A REJECT\n");
    assert!(t.first_match("free offer").is_some());
    assert!(t.first_match("a free offer").is_none());
    // A with x and a trailing comment still anchors and compiles.
    let t = pcre("/free # c/Ax REJECT\n");
    assert!(t.first_match("freebie").is_some());
    assert!(t.first_match("no freebie").is_none());
    // U swaps greed.
    let t = pcre("/<(.+)>/U WARN $1\n");
    assert_eq!(hit(&t, "<a> <b>").1, "a");
    let t = pcre("/<(.+)>/ WARN $1\n");
    assert_eq!(hit(&t, "<a> <b>").1, "a> <b");
    // E and X are accepted.
    assert!(pcre("/x$/EX WARN\n").first_match("x").is_some());
}

#[test]
fn regexp_rejects_basic_syntax_and_pcre_flags() {
    let e = err("/a/x REJECT\n", Dialect::Regexp);
    assert!(matches!(e.kind, ErrorKind::UnsupportedFlag(_)), "{e}");
    let e = err("/a/s REJECT\n", Dialect::Regexp);
    assert_eq!(e.kind, ErrorKind::UnknownFlag('s'));
    let e = err("/a/A REJECT\n", Dialect::Regexp);
    assert_eq!(e.kind, ErrorKind::UnknownFlag('A'));
}

#[test]
fn negation() {
    let t = table("!/^(From|To|Subject):/ WARN other header\n");
    assert_eq!(hit(&t, "X-Mailer: foo").0, Action::Warn);
    assert_eq!(t.first_match("Subject: hi"), None);
    // Whitespace after ! is allowed.
    let t = table("! /^Subject:/ WARN\n");
    assert!(t.first_match("From: x").is_some());
}

#[test]
fn if_endif_nested() {
    let t = table(
        "if /^Subject:/\n\
         /lottery/ REJECT lottery subject\n\
         if !/^Subject: Re:/\n\
         /winner/ WARN winner not a reply\n\
         endif\n\
         /free/ HOLD\n\
         ENDIF\n\
         /winner/ DISCARD anywhere\n\
         IF/^From:/\n\
         endif\n",
    );
    assert_eq!(hit(&t, "Subject: lottery").2, 2);
    assert_eq!(hit(&t, "Subject: big winner").2, 4);
    // Inside the outer if, the inner one is skipped for replies.
    assert_eq!(hit(&t, "Subject: Re: winner").2, 8);
    assert_eq!(hit(&t, "Subject: free stuff").2, 6);
    // Outside the outer if, only the last rule applies.
    assert_eq!(t.first_match("From: lottery free"), None);
    assert_eq!(hit(&t, "From: winner").2, 8);
}

#[test]
fn continuation_comments_and_blank_lines() {
    let t = table(
        "# header checks\n\
         \n\
         /^Subject: .*(viagra|cialis)/\n  REJECT\n  spam\n\
         \t# an indented comment is a comment, not a continuation\n\
         \n   \n\
         /^X-Spam: yes/ WARN\n",
    );
    assert_eq!(
        hit(&t, "Subject: cheap cialis"),
        (Action::Reject, "spam".into(), 3)
    );
    assert_eq!(hit(&t, "X-Spam: yes").2, 9);
    // CRLF line ends load the same.
    let t = table("/a/ REJECT x\r\n/b/ WARN\r\n");
    assert_eq!(hit(&t, "a"), (Action::Reject, "x".into(), 1));
}

#[test]
fn continuation_inside_pattern_keeps_whitespace() {
    let t = table("/^Subject: a\n b/ REJECT\n");
    assert!(t.first_match("Subject: a b").is_some());
}

#[test]
fn dollar_substitution() {
    let t = table(
        "/^Subject: (.*) (offer|deal)/ REJECT $2 in \"$1\" ${2}$(1) costs $$5 or $ or $x\n\
         /^From: (a)|(b)/ WARN [$2]\n\
         /^To: .*/ WARN $0\n",
    );
    assert_eq!(
        hit(&t, "Subject: great deal").1,
        "deal in \"great\" dealgreat costs $5 or $ or $x"
    );
    // An unmatched group substitutes as empty.
    assert_eq!(hit(&t, "From: a").1, "[]");
    assert_eq!(hit(&t, "To: x").1, "To: x");
}

#[test]
fn other_delimiters() {
    let t = table("%^Subject: a/b% REJECT slash\n@^X-A: \\@x@ WARN at\n");
    assert_eq!(hit(&t, "Subject: a/b").1, "slash");
    assert_eq!(hit(&t, "X-A: @x").1, "at");
    let t = table("/^Path: \\/usr\\/bin/ WARN escaped\n");
    assert_eq!(hit(&t, "Path: /usr/bin").1, "escaped");
}

#[test]
fn errors_carry_file_and_line() {
    let cases: &[(&str, usize, ErrorKind)] = &[
        ("/a/ REJECT\n\nendif\n", 3, ErrorKind::UnbalancedEndif),
        ("/a/ REJECT\nif /b/\n/c/ WARN\n", 2, ErrorKind::UnclosedIf),
        (
            "/a/ WARN\n/a(b/ REJECT\n",
            2,
            ErrorKind::BadRegex(String::new()),
        ),
        ("/a/q REJECT\n", 1, ErrorKind::UnknownFlag('q')),
        ("/a/REJECT\n", 1, ErrorKind::UnknownFlag('R')),
        ("# c\n/abc REJECT\n", 2, ErrorKind::UnterminatedPattern('/')),
        ("\\abc\\ REJECT\n", 1, ErrorKind::MissingDelimiter),
        ("! abc REJECT\n", 1, ErrorKind::MissingDelimiter),
        ("/a/\n", 1, ErrorKind::MissingAction),
        ("/a/ FROB x\n", 1, ErrorKind::UnknownAction("FROB".into())),
        ("/(a)/ $1 x\n", 1, ErrorKind::DynamicAction("$1".into())),
        ("/a/ 250 ok\n", 1, ErrorKind::BadReplyCode("250".into())),
        ("/a/ 5500 x\n", 1, ErrorKind::BadReplyCode("5500".into())),
        (
            "/(a)/ REJECT $2\n",
            1,
            ErrorKind::GroupOutOfRange {
                group: 2,
                groups: 1,
            },
        ),
        ("!/(a)/ REJECT $1\n", 1, ErrorKind::GroupInNegation),
        (
            "/a/ REJECT ${x}\n",
            1,
            ErrorKind::BadSubstitution("${x}".into()),
        ),
        (
            "/a/ REJECT ${1\n",
            1,
            ErrorKind::BadSubstitution("${1".into()),
        ),
        (
            "if /a/ REJECT\nendif\n",
            1,
            ErrorKind::ExtraText("if /pattern/flags"),
        ),
        ("if /a/\nendif now\n", 2, ErrorKind::ExtraText("endif")),
        ("  /a/ REJECT\n", 1, ErrorKind::OrphanContinuation),
        (
            "reject /a/\n",
            1,
            ErrorKind::UnknownDirective("reject".into()),
        ),
        (
            "/(a)\\1/ REJECT\n",
            1,
            ErrorKind::UnsupportedFeature("a backreference (\\1)"),
        ),
        (
            "/a(?=b)/ REJECT\n",
            1,
            ErrorKind::UnsupportedFeature("look-around ((?=, (?!, (?<=, (?<!)"),
        ),
        (
            "/(?<!x)a/ REJECT\n",
            1,
            ErrorKind::UnsupportedFeature("look-around ((?=, (?!, (?<=, (?<!)"),
        ),
        (
            "/(?>a+)b/ REJECT\n",
            1,
            ErrorKind::UnsupportedFeature("an atomic group ((?>...))"),
        ),
    ];
    for (text, line, kind) in cases {
        let e = err(text, Dialect::Pcre);
        assert_eq!(e.line, *line, "{text:?}: {e}");
        assert_eq!(e.name, "maps/header_checks");
        match (&e.kind, kind) {
            (ErrorKind::BadRegex(msg), ErrorKind::BadRegex(_)) => {
                assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}")
            }
            _ => assert_eq!(&e.kind, kind, "{text:?}: {e}"),
        }
        assert!(e
            .to_string()
            .starts_with(&format!("maps/header_checks:{line}: ")));
    }
}

#[test]
fn limits_bound_the_table() {
    let tight = Limits {
        max_rules: 2,
        ..Limits::default()
    };
    let e = Table::parse("t", "/a/ WARN\n/b/ WARN\n/c/ WARN\n", Dialect::Pcre, &tight)
        .expect_err("too many rules");
    assert_eq!((e.line, e.kind), (3, ErrorKind::TooManyRules(2)));
    let e = err("/a{1000}{1000}/ REJECT\n", Dialect::Pcre);
    assert!(
        matches!(
            e.kind,
            ErrorKind::PatternTooLarge(_) | ErrorKind::BadRegex(_)
        ),
        "{e}"
    );
    let long = format!("/{}/ REJECT\n", "a".repeat(5000));
    let e = err(&long, Dialect::Regexp);
    assert!(
        matches!(e.kind, ErrorKind::PatternTooLong { len: 5000, .. }),
        "{e}"
    );
}

/// A header_checks map in the style of SecuritySage's published header maps (written for
/// this test, not a copy of them): mailer fingerprints, forged headers, subject tricks.
const SECURITYSAGE_STYLE: &str = r#"#
# header_checks - in the style of SecuritySage's anti-spam header maps
#
# Bogus or missing essential headers
/^Date: .* 19[0-9][0-9]/                    REJECT Your email has a date from the past. Fix your system clock and try again.
/^Date: .* 20[4-9][0-9]/                    REJECT Your email has a date from the future. Fix your system clock and try again.
/^From: <>/                                 REJECT Your email has an empty From header.
/^To: .*undisclosed-recipients:;?$/         WARN undisclosed recipients
/^Message-ID: <[^@]*>$/                     REJECT Message-ID without a domain
/^(To|From|Cc|Reply-To):.*@(localhost|127\.0\.0\.1)>?$/
        REJECT Forged $1 header
# Mass mailers
/^X-Mailer: .*(Advanced Mass Sender|Extractor|Group Mail|Mass Mail(er)?|Send-Safe)/
        REJECT Your mail program ($1) is a known spamware; use a normal mail client.
/^User-Agent: .*Mozilla\/4\.0 \(compatible; MSIE 5\.5; Windows NT 5\.0\)$/  WARN old UA
/^X-Library: Indy/                          REJECT Spamware signature
# Subject tricks
/^Subject: .*[[:space:]]{30,}/              REJECT Too many spaces in Subject
/^Subject: .*\b(v[i1]agr[a@]|c[i1]al[i1]s)\b/ REJECT Pharmacy spam ($1)
/^Subject: =\?(koi8-r|ks_c_5601-1987|gb2312|big5)\?/ REJECT We do not accept $1 encoded subjects
/^Content-Type: .*charset="?(koi8-r|windows-1251)/ HOLD suspicious charset $1
/^Content-Disposition: .*filename=".*\.(exe|scr|pif|bat|com|vbs|lnk)"/
        REJECT Attachment type .$1 is not accepted; zip it and resend.
# Keep our own filters' headers from arriving pre-set
/^X-Spam-(Flag|Status|Score):/              IGNORE
if /^Received:/
/from .*\[(10|192\.168)\.[0-9.]+\]/         WARN private relay $1
endif
"#;

#[test]
fn securitysage_style_header_checks() {
    let t = Table::parse(
        "header_checks",
        SECURITYSAGE_STYLE,
        Dialect::Regexp,
        &Limits::default(),
    )
    .expect("loads unchanged");
    let check = |input: &str| t.first_match(input).map(|m| (m.action, m.text, m.line));
    assert_eq!(check("Date: Tue, 1 Jan 1980 00:00:00 +0000").unwrap().2, 5);
    assert_eq!(
        check("From: root@localhost").unwrap(),
        (Action::Reject, "Forged From header".into(), 10)
    );
    assert_eq!(
        check("X-Mailer: Send-Safe v2").unwrap(),
        (
            Action::Reject,
            "Your mail program (Send-Safe) is a known spamware; use a normal mail client.".into(),
            13
        )
    );
    assert_eq!(
        check("subject: Cheap V1AGRA today").unwrap(),
        (Action::Reject, "Pharmacy spam (V1AGRA)".into(), 19)
    );
    assert_eq!(
        check("Subject: =?KOI8-R?B?abc?=").unwrap().1,
        "We do not accept KOI8-R encoded subjects"
    );
    assert_eq!(
        check("Content-Disposition: attachment; filename=\"invoice.pdf.exe\"")
            .unwrap()
            .1,
        "Attachment type .exe is not accepted; zip it and resend."
    );
    assert_eq!(check("X-Spam-Flag: YES").unwrap().0, Action::Ignore);
    assert_eq!(
        check("Received: from x ([192.168.1.2])").unwrap(),
        (Action::Warn, "private relay 192.168".into(), 27)
    );
    // The Received-only rule does not fire on other headers.
    assert_eq!(check("X-Note: from x [10.0.0.1]"), None);
    assert_eq!(check("Subject: meeting notes"), None);
    assert_eq!(check("From: alice@example.org"), None);
}

#[test]
fn body_checks_lines() {
    let t = table(
        "/^<iframe src=(3D)?cid:.* height=(3D)?0 width=(3D)?0>$/ REJECT IFRAME vulnerability exploit\n\
         /XJS\\*C4JDBQADN1\\.NSBN3\\*2IDNEN\\*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL\\*C\\.34X/ DISCARD gtube\n",
    );
    assert_eq!(
        hit(&t, "<iframe src=3Dcid:xyz height=3D0 width=3D0>").0,
        Action::Reject
    );
    assert_eq!(
        hit(
            &t,
            "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
        )
        .0,
        Action::Discard
    );
    assert_eq!(t.first_match("hello world"), None);
}

#[test]
fn random_tables_never_panic() {
    const PIECES: &[&str] = &[
        "/", "!", "#", "@", "\\", "if", "endif", "IF", " ", "\t", "\n", "\n ", "\r\n", "a", "(",
        ")", "[", "]", "{", "}", "$", "$1", "${1}", "$(2)", "$$", ".*", "^", "$", "|", "?", "+",
        "*", "i", "m", "x", "s", "A", "U", "REJECT", "WARN", "450", "5", "ok", "é", "(?=", "\\1",
        "{99}", ":", "Subject",
    ];
    let mut rng = StdRng::seed_from_u64(0x6d61_696c);
    let limits = Limits {
        regex_size_limit: 64 * 1024,
        ..Limits::default()
    };
    let mut loaded = 0;
    for _ in 0..3000 {
        let n = rng.gen_range(0..30);
        let text: String = (0..n)
            .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
            .collect();
        let input: String = (0..rng.gen_range(0..8))
            .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
            .collect();
        for dialect in [Dialect::Regexp, Dialect::Pcre] {
            match Table::parse("fuzz", &text, dialect, &limits) {
                Ok(t) => {
                    loaded += 1;
                    let _ = t.first_match(&input);
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
    // The generator must reach the matcher, not only the error paths.
    assert!(loaded > 100, "only {loaded} random tables loaded");
}

/// The combined set (tables of plain rules) decides exactly as trying the rules in order.
#[test]
fn the_combined_set_agrees_with_rules_in_order() {
    let regexp = "/^subject:.*viagra/ REJECT spam\n\
                  /^(from|to): .*@(spam|junk)\\.example/ REJECT ${2} domain\n\
                  /free money/ WARN spaced\n\
                  /^x-mailer: (bulk.*)$/i HOLD ${1}\n\
                  /^a.b$/m DISCARD dot\n\
                  /[0-9]{5,}/ 450 4.7.1 numbers\n\
                  /VIAGRA/i IGNORE\n";
    let pcre_text = "/^subject: (a+?)(b*)/U REJECT $1-$2\n\
                     /^x y # a comment/x WARN extended\n\
                     /^m.n/s DISCARD dotall\n\
                     /^anchored/A HOLD\n\
                     /Case/ REJECT sensitive\n";
    let inputs = [
        "Subject: buy viagra now",
        "From: a@spam.example",
        "To: b@junk.example",
        "free money and more",
        "X-Mailer: BulkMailer 2.0",
        "a\nb",
        "a.b",
        "order 123456",
        "viagra",
        "Subject: aaabbb",
        "xy",
        "m\nn",
        "anchored here",
        "not anchored",
        "case",
        "Case",
        "",
        "nothing at all",
    ];
    for (text, dialect) in [(regexp, Dialect::Regexp), (pcre_text, Dialect::Pcre)] {
        let with = Table::parse("t", text, dialect, &Limits::default()).unwrap();
        let mut without = Table::parse("t", text, dialect, &Limits::default()).unwrap();
        assert!(with.set.is_some(), "plain rules get a set");
        without.set = None;
        let mut rng = StdRng::seed_from_u64(7);
        let mut all: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        for _ in 0..2000 {
            let a = inputs[rng.gen_range(0..inputs.len())];
            let b = inputs[rng.gen_range(0..inputs.len())];
            let cut = rng.gen_range(0..=a.len());
            all.push(format!("{}{b}", a.get(..cut).unwrap_or(a)));
        }
        for input in &all {
            let (x, y) = (with.first_match(input), without.first_match(input));
            assert_eq!(
                x.map(|m| (m.action, m.text, m.line)),
                y.map(|m| (m.action, m.text, m.line)),
                "{input:?}"
            );
        }
    }
    // Tables with `if` or negation keep the ordered walk.
    assert!(table("if /a/\n/b/ REJECT\nendif\n").set.is_none());
    assert!(table("!/a/ REJECT\n/b/ REJECT\n").set.is_none());
}
