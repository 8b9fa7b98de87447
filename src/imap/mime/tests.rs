use super::*;

const MULTI: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: bob@example.org, \"Carol C\" <carol@example.org>\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\
Date: Tue, 1 Feb 1994 10:00:00 +0000\r\n\
Message-ID: <m1@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\
\r\n\
preamble\r\n\
--XX\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
hello\r\n\
world\r\n\
--XX\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: inner@example.org\r\n\
Subject: inner\r\n\
\r\n\
inner body\r\n\
--XX--\r\n";

fn render(f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    f(&mut out);
    String::from_utf8(out).unwrap()
}

fn sec(part: &[u32], text: Option<SectionText>) -> String {
    let m = parse(MULTI);
    let s = Section {
        part: part.to_vec(),
        text,
    };
    let b = section(MULTI, m.as_ref(), &s)
        .map(|c| c.into_owned())
        .unwrap_or_default();
    String::from_utf8(b).unwrap()
}

#[test]
fn envelope_of_a_message() {
    let m = parse(MULTI);
    let env = render(|o| envelope(o, MULTI, m.as_ref(), false));
    assert_eq!(
        env,
        "(\"Tue, 1 Feb 1994 10:00:00 +0000\" \"=?utf-8?q?Gr=C3=BC=C3=9Fe?=\" \
         ((\"Alice\" NIL \"alice\" \"example.org\")) ((\"Alice\" NIL \"alice\" \"example.org\")) \
         ((\"Alice\" NIL \"alice\" \"example.org\")) \
         ((NIL NIL \"bob\" \"example.org\")(\"Carol C\" NIL \"carol\" \"example.org\")) NIL NIL NIL \
         \"<m1@example.org>\")"
    );
}

#[test]
fn body_structure_of_a_multipart_with_a_nested_message() {
    let m = parse(MULTI);
    let bs = render(|o| body_structure(o, MULTI, m.as_ref(), false, false));
    assert!(
        bs.starts_with("((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 12 1)"),
        "{bs}"
    );
    assert!(
        bs.contains("(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" "),
        "{bs}"
    );
    assert!(bs.ends_with(" \"mixed\")"), "{bs}");
    let ext = render(|o| body_structure(o, MULTI, m.as_ref(), true, false));
    assert!(
        ext.contains("\"mixed\" (\"boundary\" \"XX\") NIL NIL NIL)"),
        "{ext}"
    );
}

#[test]
fn sections() {
    assert_eq!(sec(&[1], None), "hello\r\nworld");
    assert_eq!(
        sec(&[1], Some(SectionText::Mime)),
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    );
    assert_eq!(
        sec(&[2], Some(SectionText::Header)),
        "From: inner@example.org\r\nSubject: inner\r\n\r\n"
    );
    assert_eq!(sec(&[2], Some(SectionText::Text)), "inner body");
    assert_eq!(sec(&[2, 1], None), "inner body");
    assert!(sec(&[], Some(SectionText::Header)).ends_with("boundary=\"XX\"\r\n\r\n"));
    assert!(sec(&[], Some(SectionText::Text)).starts_with("preamble\r\n--XX"));
    assert_eq!(
        sec(&[], Some(SectionText::HeaderFields { not: false, fields: vec!["SUBJECT".into(), "TO".into()] })),
        "To: bob@example.org, \"Carol C\" <carol@example.org>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n"
    );
    assert_eq!(sec(&[3], None), "");
    assert_eq!(sec(&[1, 1, 1, 1], None), "");
}

#[test]
fn single_part_and_headerless_messages() {
    let raw = b"Subject: hi\r\n\r\nbody\r\n";
    let m = parse(raw);
    let s = Section {
        part: vec![1],
        text: None,
    };
    assert_eq!(&*section(raw, m.as_ref(), &s).unwrap(), b"body\r\n");
    let bs = render(|o| body_structure(o, raw, m.as_ref(), false, false));
    assert_eq!(
        bs,
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1)"
    );
    let bs = render(|o| body_structure(o, b"", None, true, false));
    assert_eq!(
        bs,
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)"
    );
    assert_eq!(
        filter_headers(b"A: 1\r\n b\r\nB: 2\r\n\r\n", &["A".into()], false),
        b"A: 1\r\n b\r\n\r\n"
    );
    assert_eq!(
        filter_headers(b"A: 1\r\n b\r\nB: 2\r\n\r\n", &["A".into()], true),
        b"B: 2\r\n\r\n"
    );
}

/// RFC 2231 continuations and charset-tagged values are decoded (IMAP4rev2 asks for it).
#[test]
fn parameter_continuations() {
    let raw = b"Content-Type: application/octet-stream; name*0=\"re\"; name*1=\"port.bin\"\r\n\
Content-Disposition: attachment; filename*=utf-8''caf%C3%A9.txt\r\n\r\nx";
    let m = parse(raw);
    let bs = render(|o| body_structure(o, raw, m.as_ref(), true, false));
    assert!(bs.contains("(\"name\" \"report.bin\")"), "{bs}");
    assert!(
        bs.contains("(\"attachment\" (\"filename\" \"=?utf-8?b?Y2Fmw6kudHh0?=\"))"),
        "{bs}"
    );
}

/// A message as an SMTPUTF8 client sends it: raw UTF-8 in the header fields.
const SMTPUTF8: &[u8] = "From: Jörg Müller <jörg@bücher.example>\r\n\
To: ascii@example.org, =?utf-8?q?Zo=C3=AB?= <zoe@example.org>\r\n\
Subject: Grüße aus Köln\r\n\
Date: Tue, 1 Feb 2022 10:00:00 +0000\r\n\
Message-ID: <grüße@bücher.example>\r\n\
\r\n\
body\r\n"
    .as_bytes();

fn env(raw: &[u8], utf8: bool) -> String {
    let m = parse(raw);
    render(|o| envelope(o, raw, m.as_ref(), utf8))
}

/// ENVELOPE fields per session mode: UTF-8 for a session that enabled it, 7-bit (RFC 2047
/// encoded words; RFC 6858 groups for addresses) for every other one.
#[test]
fn envelope_strings_follow_the_session_mode() {
    let cases: [(&[u8], bool, &str); 6] = [
        (
            SMTPUTF8,
            true,
            "(\"Tue, 1 Feb 2022 10:00:00 +0000\" \"Grüße aus Köln\" \
             ((\"Jörg Müller\" NIL \"jörg\" \"bücher.example\")) \
             ((\"Jörg Müller\" NIL \"jörg\" \"bücher.example\")) \
             ((\"Jörg Müller\" NIL \"jörg\" \"bücher.example\")) \
             ((NIL NIL \"ascii\" \"example.org\")(\"Zoë\" NIL \"zoe\" \"example.org\")) \
             NIL NIL NIL \"<grüße@bücher.example>\")",
        ),
        (
            SMTPUTF8,
            false,
            "(\"Tue, 1 Feb 2022 10:00:00 +0000\" \"=?utf-8?b?R3LDvMOfZSBhdXMgS8O2bG4=?=\" \
             ((NIL NIL \"=?utf-8?b?SsO2cmcgTcO8bGxlciA8asO2cmdAYsO8Y2hlci5leGFtcGxlPg==?=\" NIL)(NIL NIL NIL NIL)) \
             ((NIL NIL \"=?utf-8?b?SsO2cmcgTcO8bGxlciA8asO2cmdAYsO8Y2hlci5leGFtcGxlPg==?=\" NIL)(NIL NIL NIL NIL)) \
             ((NIL NIL \"=?utf-8?b?SsO2cmcgTcO8bGxlciA8asO2cmdAYsO8Y2hlci5leGFtcGxlPg==?=\" NIL)(NIL NIL NIL NIL)) \
             ((NIL NIL \"ascii\" \"example.org\")(\"=?utf-8?b?Wm/Dqw==?=\" NIL \"zoe\" \"example.org\")) \
             NIL NIL NIL \"=?utf-8?b?PGdyw7zDn2VAYsO8Y2hlci5leGFtcGxlPg==?=\")",
        ),
        // Stray 8-bit bytes that are not UTF-8 become U+FFFD, then follow the mode.
        (
            b"Subject: Caf\xe9\r\n\r\nx",
            true,
            "(NIL \"Caf\u{fffd}\" NIL NIL NIL NIL NIL NIL NIL NIL)",
        ),
        (
            b"Subject: Caf\xe9\r\n\r\nx",
            false,
            "(NIL \"=?utf-8?b?Q2Fm77+9?=\" NIL NIL NIL NIL NIL NIL NIL NIL)",
        ),
        // Quotes and backslashes are escaped in UTF-8 quoted strings; a control character
        // (a tab) makes a literal.
        (
            "Subject: \"Grüße\" \\ ok\r\n\r\nx".as_bytes(),
            true,
            "(NIL \"\\\"Grüße\\\" \\\\ ok\" NIL NIL NIL NIL NIL NIL NIL NIL)",
        ),
        (
            "Subject: Grüße\tok\r\n\r\nx".as_bytes(),
            true,
            "(NIL {10}\r\nGrüße\tok NIL NIL NIL NIL NIL NIL NIL NIL)",
        ),
    ];
    for (raw, utf8, want) in cases {
        assert_eq!(
            env(raw, utf8),
            want,
            "{} (utf8 {utf8})",
            String::from_utf8_lossy(raw)
        );
    }
    // ASCII messages look the same in both modes.
    assert_eq!(env(MULTI, true), env(MULTI, false));
}

/// Long text becomes several encoded words, each at most 75 characters, cut between
/// characters, which decode back to the text.
#[test]
fn encoded_words_are_short_and_decode_back() {
    use base64::Engine;
    let b64 = &base64::engine::general_purpose::STANDARD;
    for text in [
        "ü".repeat(100),
        format!("a{}", "€".repeat(40)),
        "日本語のメールの件名はとても長くなることがあります。".repeat(3),
        "x".to_string(),
    ] {
        let words = encode_words(&text);
        let mut decoded = Vec::new();
        for w in words.split(' ') {
            assert!(w.len() <= 75, "{w}");
            let inner = w
                .strip_prefix("=?utf-8?b?")
                .and_then(|w| w.strip_suffix("?="))
                .unwrap();
            let bytes = b64.decode(inner).unwrap();
            assert!(
                std::str::from_utf8(&bytes).is_ok(),
                "a word cut a character"
            );
            decoded.extend(bytes);
        }
        assert_eq!(String::from_utf8(decoded).unwrap(), text);
    }
}

/// A 7-bit session never gets a byte over 0x7f, from ENVELOPE or BODYSTRUCTURE, also for a
/// nested message and decoded RFC 2231 parameters; a UTF-8 session gets the text as UTF-8.
#[test]
fn seven_bit_sessions_get_no_eight_bit_bytes() {
    let nested = [
        &b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\
Subject: outer\r\n\r\n--B\r\n\
Content-Type: text/plain; charset=utf-8; name=\"na\xc3\xafve.txt\"\r\n\
Content-Description: R\xc3\xa9sum\xc3\xa9\r\n\r\nhi\r\n--B\r\n\
Content-Type: message/rfc822\r\n\r\n"[..],
        SMTPUTF8,
        b"\r\n--B\r\n\
Content-Type: application/pdf\r\n\
Content-Disposition: attachment; filename*=utf-8''caf%C3%A9.pdf\r\n\r\nx\r\n--B--\r\n",
    ]
    .concat();
    for raw in [SMTPUTF8, &nested[..], b"Subject: Caf\xe9\r\n\r\nx"] {
        let m = parse(raw);
        for extended in [false, true] {
            let mut out = Vec::new();
            envelope(&mut out, raw, m.as_ref(), false);
            body_structure(&mut out, raw, m.as_ref(), extended, false);
            assert!(out.is_ascii(), "{}", String::from_utf8_lossy(&out));
        }
    }
    let m = parse(&nested);
    let bs = render(|o| body_structure(o, &nested, m.as_ref(), true, true));
    for want in [
        "\"name\" \"naïve.txt\"",
        "\"Résumé\"",
        "\"Grüße aus Köln\"",
        "(\"filename\" \"café.pdf\")",
    ] {
        assert!(bs.contains(want), "{want} in {bs}");
    }
    let bs = render(|o| body_structure(o, &nested, m.as_ref(), true, false));
    assert!(bs.contains("\"=?utf-8?b?UsOpc3Vtw6k=?=\""), "{bs}");
}
