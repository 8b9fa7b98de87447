use base64::Engine as _;

use super::*;
use crate::antiube::policy::{PolicyDoc, ScoreRule};

fn policy(settings: &str, maps: &[(&str, &str)]) -> Policy {
    PolicyDoc {
        settings: settings.into(),
        maps: maps
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
    .compile()
    .expect("policy compiles")
}

fn scanner(settings: &str, maps: &[(&str, &str)]) -> ContentScanner {
    ContentScanner::new(&policy(settings, maps)).expect("scanner compiles")
}

/// `s` with LF line ends made CRLF.
fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

fn gtube() -> &'static str {
    std::str::from_utf8(GTUBE).unwrap()
}

fn b64(data: &[u8]) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(data);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    lines.join("\n")
}

fn names(r: &ContentReport) -> Vec<&str> {
    r.hits.iter().map(|h| h.name.as_str()).collect()
}

fn range_of(msg: &[u8], needle: &str) -> Range<usize> {
    let at = memmem::find(msg, needle.as_bytes()).expect("needle in message");
    at..at + needle.len()
}

#[test]
fn gtube_in_the_body_and_in_a_base64_text_part() {
    let sc = scanner("", &[]);
    let r = sc.scan(&crlf(&format!("Subject: test\n\nhello\n{}\n", gtube())));
    assert!(r.gtube);
    assert_eq!(names(&r), ["GTUBE"]);
    assert_eq!(r.score, 1000.0);
    assert!(!r.truncated && r.mime_violation.is_none());

    let msg = crlf(&format!(
        "Subject: test\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n\
         preamble\n--b1\nContent-Type: text/plain\n\nplain part\n--b1\n\
         Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n{}\n--b1--\n",
        b64(format!("Grüße\r\n{}\r\n", gtube()).as_bytes())
    ));
    assert!(!String::from_utf8_lossy(&msg).contains(gtube()));
    let r = sc.scan(&msg);
    assert!(r.gtube, "{r:?}");
    assert_eq!((r.parts, r.depth), (3, 1));

    // Not in a header, not in a non-text attachment.
    let r = sc.scan(&crlf(&format!("Subject: {}\n\nclean\n", gtube())));
    assert!(!r.gtube && r.hits.is_empty());
    assert_eq!(r.score.to_string(), "0");
    let r = sc.scan(&crlf(&format!(
        "Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: application/octet-stream\n\
         Content-Transfer-Encoding: base64\n\n{}\n--x--\n",
        b64(GTUBE)
    )));
    assert!(!r.gtube);
}

const HEADER_RULES: &str = r#"
[[content.rules]]
name = "SUBJ_VIAGRA"
target = "header"
header = "subject"
pattern = "cheap viagra"
score = 2.5
[[content.rules]]
name = "MAILER"
target = "header"
pattern = "^x-mailer: spamtool"
score = 1.0
[[content.rules]]
name = "FROM_NOMATCH"
target = "header"
header = "From"
pattern = "nomatch"
score = 9.0
[[content.rules]]
name = "CASE_SENSITIVE"
target = "header"
header = "Subject"
pattern = "(?-i)CHEAP"
score = 9.0
"#;

#[test]
fn header_rules_see_decoded_top_level_fields_once() {
    let sc = scanner(HEADER_RULES, &[]);
    let r = sc.scan(&crlf(
        "From: a@example.org\nSubject: =?utf-8?B?Q2hlYXAgVmlhZ3Jh?= now\n\
         Subject: cheap\n viagra again\nX-Mailer:  SpamTool\n 1.0\n\nbody\n",
    ));
    assert_eq!(names(&r), ["SUBJ_VIAGRA", "MAILER"]);
    assert_eq!(r.score, 3.5);

    // Folded across lines, decoded: still one field value.
    let r = sc.scan(&crlf(
        "Subject: =?iso-8859-1?Q?cheap?=\n =?iso-8859-1?Q?_viagra?=\n\nx\n",
    ));
    assert_eq!(names(&r), ["SUBJ_VIAGRA"]);

    // A part's header is not the message's header.
    let r = sc.scan(&crlf(
        "Subject: hello\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\
         X-Mailer: spamtool\nSubject: cheap viagra\n\ntext\n--b--\n",
    ));
    assert!(r.hits.is_empty(), "{r:?}");
}

const BODY_RULES: &str = r#"
[[content.rules]]
name = "BODY_VIAGRA"
target = "body"
pattern = "buy viagra now"
score = 1.0
[[content.rules]]
name = "BODY_CAFE"
target = "body"
pattern = "café crème"
score = 1.0
[[content.rules]]
name = "BODY_AMP"
target = "body"
pattern = "free & clear"
score = 1.0
[[content.rules]]
name = "BODY_SHY"
target = "body"
pattern = "cialis"
score = 1.0
[[content.rules]]
name = "BODY_HIDDEN"
target = "body"
pattern = "hidden"
score = 1.0
[[content.rules]]
name = "BODY_SUBJECT"
target = "body"
pattern = "subjectword"
score = 1.0
[[content.rules]]
name = "BODY_RAW_QP"
target = "body"
pattern = "=E9"
score = 1.0
"#;

#[test]
fn body_rules_see_decoded_text_with_html_rendered() {
    let sc = scanner(BODY_RULES, &[]);
    let html = "<html><head><style>hidden{}</style></head><body><p>Buy vi<b></b>agra\r\n   \
                now</p><script>hidden()</script><!-- hidden --> free &amp; clear ci&shy;al&#105;s</body></html>";
    let msg = crlf(&format!(
        "Subject: subjectword\nContent-Type: multipart/alternative; boundary=\"alt\"\n\n\
         --alt\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n\
         caf=E9 cr=\n=E8me\n--alt\nContent-Type: text/html; charset=\"utf-8\"\nContent-Transfer-Encoding: base64\n\n{}\n--alt--\n",
        b64(html.as_bytes())
    ));
    let r = sc.scan(&msg);
    assert_eq!(
        names(&r),
        ["BODY_VIAGRA", "BODY_CAFE", "BODY_AMP", "BODY_SHY"],
        "{r:?}"
    );
    assert_eq!(r.score, 4.0);
}

const URI_RULES: &str = r#"
[[content.rules]]
name = "URI_BAD"
target = "uri"
pattern = '^https://bad\.example/path\?a=1&b=2$'
score = 1.0
[[content.rules]]
name = "URI_EVIL"
target = "uri"
pattern = '^http://evil\.example/x$'
score = 1.0
[[content.rules]]
name = "URI_WWW"
target = "uri"
pattern = '^www\.bare\.example/page$'
score = 1.0
[[content.rules]]
name = "URI_FTP"
target = "uri"
pattern = '^ftp://files\.example/a$'
score = 1.0
[[content.rules]]
name = "URI_MAILTO"
target = "uri"
pattern = 'nothere'
score = 1.0
[[content.rules]]
name = "URI_HEADER"
target = "uri"
pattern = 'header\.example'
score = 1.0
[[content.rules]]
name = "URI_IMG"
target = "uri"
pattern = '^HTTP://img\.example/p\.gif$'
score = 1.0
"#;

#[test]
fn uri_rules_see_uris_of_text_and_html_attributes() {
    let sc = scanner(URI_RULES, &[]);
    let msg = crlf(
        "Subject: see http://header.example/\nContent-Type: multipart/alternative; boundary=b\n\n\
         --b\nContent-Type: text/plain\n\nvisit http://evil.example/x. or www.bare.example/page, (ftp://files.example/a)\n\
         --b\nContent-Type: text/html\n\n<a href=\"https://bad.example/path?a=1&amp;b=2\">click</a>\n\
         <a href='mailto:nothere@example.org'>m</a><img SRC=HTTP://img.example/p.gif>\n--b--\n",
    );
    let r = sc.scan(&msg);
    assert_eq!(
        names(&r),
        ["URI_BAD", "URI_EVIL", "URI_WWW", "URI_FTP", "URI_IMG"],
        "{r:?}"
    );
}

const HC: &str = "\
/^Subject: .*reject me/ REJECT no thanks
/^Subject: .*hold me/ HOLD held
/^Subject: .*discard me/ DISCARD
/^X-Warn: (\\S+)/ WARN saw $1
/^X-Drop:/ IGNORE
/^X-Prepend:/ PREPEND X-Tag: yes
/^X-Fold: a\\n\\tb$/ WARN folded
/^X-Dunno:/ DUNNO
/^X-Reply:/ 550 5.7.1 go away
/^X-Part:/ WARN part header
/^X-Nested:/ WARN nested header
/^Content-Type: text\\/html/ WARN html part
";

const BC: &str = "\
/^drop this line$/ IGNORE
/^body reject$/ REJECT body says no
/^X-Part:/ WARN part header as body
/^X-Warn:/ WARN header as body
";

fn maps_policy(extra: &str) -> ContentScanner {
    scanner(
        &format!("[content]\nheader_checks = \"pcre:hc\"\nbody_checks = \"regexp:bc\"\n{extra}"),
        &[("hc", HC), ("bc", BC), ("mh", "/^X-Part:/ HOLD mime map\n")],
    )
}

#[test]
fn map_actions_warn_ignore_and_a_later_reject_over_hold() {
    let sc = maps_policy("");
    let msg = crlf(
        "X-Warn: value1 rest\nX-Drop: gone\n continued\nX-Prepend: p\nX-Fold: a\n\tb\n\
         X-Dunno: x\nSubject: please hold me\n\nfirst\ndrop this line\nbody reject\nafter\n",
    );
    let r = sc.scan(&msg);
    let warned: Vec<(&str, &Action, &str, usize)> = r
        .warnings
        .iter()
        .map(|w| (w.map, &w.action, w.text.as_str(), w.line))
        .collect();
    assert_eq!(
        warned,
        [
            ("header_checks", &Action::Warn, "saw value1", 4),
            (
                "header_checks",
                &Action::Unsupported("PREPEND".into()),
                "X-Tag: yes",
                6
            ),
            ("header_checks", &Action::Warn, "folded", 7),
        ]
    );
    assert_eq!(
        r.warnings[0].range,
        range_of(&msg, "X-Warn: value1 rest\r\n")
    );
    assert_eq!(
        r.ignored,
        [
            range_of(&msg, "X-Drop: gone\r\n continued\r\n"),
            range_of(&msg, "drop this line\r\n"),
        ]
    );
    let action = r.action.expect("an action");
    assert_eq!(
        (
            action.map,
            &action.action,
            action.text.as_str(),
            action.line
        ),
        ("body_checks", &Action::Reject, "body says no", 2)
    );
    assert_eq!(action.range, range_of(&msg, "body reject\r\n"));

    // HOLD alone stays.
    let r = sc.scan(&crlf("Subject: hold me\n\nbody\n"));
    let a = r.action.expect("hold");
    assert_eq!((a.action, a.text.as_str()), (Action::Hold, "held"));

    // A reply code decides like REJECT.
    let r = sc.scan(&crlf("X-Reply: 1\n\nbody reject\n"));
    let a = r.action.expect("reply");
    assert_eq!(
        (a.action, a.text.as_str()),
        (Action::Reply(550), "5.7.1 go away")
    );
}

#[test]
fn discard_and_reject_end_the_map_checks() {
    let sc = maps_policy("");
    let r = sc.scan(&crlf(
        "Subject: discard me\nX-Warn: late\nX-Drop: x\n\ndrop this line\nbody reject\n",
    ));
    assert_eq!(r.action.map(|a| a.action), Some(Action::Discard));
    assert!(r.warnings.is_empty() && r.ignored.is_empty());
    let r = sc.scan(&crlf("Subject: reject me\nSubject: discard me\n\nbody\n"));
    let a = r.action.expect("reject");
    assert_eq!((a.action, a.line), (Action::Reject, 1));
}

#[test]
fn each_header_block_goes_to_its_table() {
    let msg = crlf(&format!(
        "Subject: x\nContent-Type: multipart/mixed; boundary=\"outer\"\n\n\
         --outer\nContent-Type: text/html\nX-Part: 1\n\n<p>hi</p>\n\
         --outer\nContent-Type: message/rfc822\n\nX-Nested: 1\nX-Warn: nested-warn\nSubject: reject me\n\n{}\n\
         --outer\nContent-Type: multipart/digest; boundary=dig\n\n--dig\n\nX-Nested: digest\n\ndigest body\n--dig--\n\
         --outer--\n",
        gtube()
    ));
    // No mime_header_checks: header_checks serves every block, as Postfix's default.
    let r = maps_policy("").scan(&msg);
    let warned: Vec<(&str, &str)> = r
        .warnings
        .iter()
        .map(|w| (w.map, w.text.as_str()))
        .collect();
    assert_eq!(
        warned,
        [
            ("header_checks", "html part"),
            ("header_checks", "part header"),
            ("header_checks", "nested header"),
            ("header_checks", "saw nested-warn"),
        ],
        "{r:?}"
    );
    let a = r.action.expect("the nested Subject rejects");
    assert_eq!((a.map, a.action), ("header_checks", Action::Reject));
    assert!(r.gtube, "the attached message's text is scanned");
    assert_eq!((r.parts, r.depth), (5, 3));

    // With mime_header_checks set, part headers and Content-* fields go there instead.
    let r = maps_policy("mime_header_checks = \"pcre:mh\"\n").scan(&msg);
    let a = r.action.expect("an action");
    assert_eq!((a.map, a.action), ("header_checks", Action::Reject));
    let warned: Vec<(&str, &str)> = r
        .warnings
        .iter()
        .map(|w| (w.map, w.text.as_str()))
        .collect();
    assert_eq!(
        warned,
        [
            ("header_checks", "nested header"),
            ("header_checks", "saw nested-warn"),
        ]
    );
    let r = maps_policy("mime_header_checks = \"pcre:mh\"\n").scan(&crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\nX-Part: 1\n\n--b--\n",
    ));
    let a = r.action.expect("hold from the MIME map");
    assert_eq!(
        (a.map, a.action, a.line),
        ("mime_header_checks", Action::Hold, 1)
    );
    // Part headers never reach body_checks.
    assert!(!r.warnings.iter().any(|w| w.map == "body_checks"));
}

/// A message of `levels` nested multiparts, GTUBE in the innermost text part.
fn nested_multipart(levels: usize) -> Vec<u8> {
    let mut m = Vec::new();
    for i in 0..levels {
        m.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                .as_bytes(),
        );
    }
    m.extend_from_slice(format!("Content-Type: text/plain\r\n\r\n{}\r\n", gtube()).as_bytes());
    for i in (0..levels).rev() {
        m.extend_from_slice(format!("--b{i}--\r\n").as_bytes());
    }
    m
}

#[test]
fn mime_depth_is_limited() {
    let sc = scanner("[content]\nscan_limit_bytes = 67108864\n", &[]);
    let r = sc.scan(&nested_multipart(20));
    assert!(r.mime_violation.is_none() && r.gtube, "{r:?}");
    assert_eq!(r.depth, 20);
    let r = sc.scan(&nested_multipart(30));
    assert!(
        r.mime_violation
            .as_deref()
            .is_some_and(|v| v.contains("nesting exceeds the limit of 20")),
        "{r:?}"
    );
    assert!(!r.gtube);

    // 100 000 levels: refused at the limit, no recursion, no stack growth.
    let r = sc.scan(&nested_multipart(100_000));
    assert!(r.mime_violation.is_some());
    let deep_messages = "Content-Type: message/rfc822\r\n\r\n".repeat(100_000);
    let r = sc.scan(deep_messages.as_bytes());
    assert!(r.mime_violation.is_some(), "{r:?}");
    // Deep but headerless nesting is not nesting at all.
    let r = sc.scan("--b\r\n".repeat(100_000).as_bytes());
    assert!(r.mime_violation.is_none());
}

fn many_parts(n: usize) -> Vec<u8> {
    let mut m = b"Content-Type: multipart/mixed; boundary=p\r\n\r\n".to_vec();
    for i in 0..n {
        m.extend_from_slice(
            format!("--p\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n").as_bytes(),
        );
    }
    m.extend_from_slice(b"--p--\r\n");
    m
}

#[test]
fn mime_parts_are_limited() {
    let sc = scanner("", &[]);
    let r = sc.scan(&many_parts(999));
    assert!(r.mime_violation.is_none());
    assert_eq!(r.parts, 1000);
    let r = sc.scan(&many_parts(2000));
    assert_eq!(
        r.mime_violation.as_deref(),
        Some("more than 1000 MIME parts")
    );
}

#[test]
fn structural_violations_and_tolerated_sloppiness() {
    let sc = scanner("", &[]);
    let r = sc.scan(&crlf(
        "Content-Type: multipart/mixed; boundary=same\n\n--same\n\
         Content-Type: multipart/alternative; boundary=same\n\n--same\n\ntext\n--same--\n",
    ));
    assert!(
        r.mime_violation
            .as_deref()
            .is_some_and(|v| v.contains("reuses")),
        "{r:?}"
    );
    let long = "x".repeat(300);
    let r = sc.scan(&crlf(&format!(
        "Content-Type: multipart/mixed; boundary={long}\n\n--{long}\n\nx\n"
    )));
    assert!(r.mime_violation.is_some());

    // Bare LF, no closing boundary, junk header lines, a boundary with trailing junk, a
    // multipart without boundary, bad base64 and quoted-printable: all scanned.
    let msg = format!(
        "Subject: sloppy\nContent-Type: multipart/mixed;\n boundary=\"b b\"; charset\n\n\
         --b b\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nbad =ZZ = qp\n\
         --b b   trailing junk\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n!!{}@@\n",
        b64(GTUBE)
    );
    let r = sc.scan(msg.as_bytes());
    assert!(r.mime_violation.is_none() && r.gtube, "{r:?}");
    assert_eq!(r.parts, 3);
    // A multipart without a boundary reads as text.
    let r = sc.scan(&crlf(&format!(
        "Content-Type: multipart/mixed\n\n{}\n",
        gtube()
    )));
    assert!(r.mime_violation.is_none() && r.gtube);
}

#[test]
fn only_the_scan_limit_is_scanned() {
    let sc = scanner(
        "[content]\nscan_limit_bytes = 1024\nbody_checks = \"regexp:bc\"\n",
        &[("bc", "/^body reject$/ REJECT late\n")],
    );
    let filler = "filler line\r\n".repeat(100);
    let early = format!("Subject: x\r\n\r\n{}\r\n{filler}body reject\r\n", gtube());
    let r = sc.scan(early.as_bytes());
    assert!(r.gtube && r.truncated && r.action.is_none(), "{r:?}");
    let late = format!("Subject: x\r\n\r\n{filler}{}\r\n", gtube());
    let r = sc.scan(late.as_bytes());
    assert!(!r.gtube && r.truncated);
    let r = sc.scan(b"Subject: x\r\n\r\nbody reject\r\n");
    assert!(!r.truncated && r.action.is_some());
}

#[test]
fn invalid_rules_are_refused_by_name() {
    let mut p = Policy::default();
    p.settings.content.rules.push(ScoreRule {
        name: "BROKEN".into(),
        target: RuleTarget::Body,
        header: None,
        pattern: "(".into(),
        score: 1.0,
    });
    let e = ContentScanner::new(&p).unwrap_err();
    assert!(e.contains("BROKEN"), "{e}");
    p.settings.content.rules[0].pattern = r"(?:\w{100}){100}".into();
    let e = ContentScanner::new(&p).unwrap_err();
    assert!(e.contains("BROKEN"), "{e}");
    p.settings.content.rules[0].pattern = "ok".into();
    p.settings.content.rules[0].header = Some("Subject".into());
    assert!(ContentScanner::new(&p).is_err());
}

#[test]
fn decoders_are_lenient() {
    let mut out = Vec::new();
    mime::decode_base64(b"aGVs\r\nbG8=aGk", &mut out);
    assert_eq!(out, b"hellohi");
    out.clear();
    mime::decode_qp(b"a=3Db=\r\nc= \r\nd=\n=zz=", &mut out);
    assert_eq!(out, b"a=bcd=zz");
    assert_eq!(mime::to_utf8(b"caf\xe9", Some(b"ISO-8859-1")), "café");
    assert_eq!(mime::to_utf8(b"caf\xc3\xa9", Some(b"us-ascii")), "café");
    let ct = mime::parse_content_type(
        b" multipart/mixed (c) ;\r\n\tBoundary=\"a\\\"b\"; charset=UTF-8\r\n",
    );
    assert_eq!((ct.ty, ct.sub), (&b"multipart"[..], &b"mixed"[..]));
    assert_eq!(ct.boundary.as_deref(), Some(&b"a\"b"[..]));
    assert_eq!(ct.charset.as_deref(), Some(&b"UTF-8"[..]));
    assert_eq!(mime::header_colon(b"Subject : x"), Some(8));
    assert_eq!(mime::header_colon(b" Subject: x"), None);
    assert_eq!(mime::header_colon(b"From alice Mon"), None);
}
