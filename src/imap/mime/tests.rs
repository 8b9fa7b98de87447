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
    let env = render(|o| envelope(o, MULTI, m.as_ref()));
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
    let bs = render(|o| body_structure(o, MULTI, m.as_ref(), false));
    assert!(
        bs.starts_with("((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 12 1)"),
        "{bs}"
    );
    assert!(
        bs.contains("(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" "),
        "{bs}"
    );
    assert!(bs.ends_with(" \"mixed\")"), "{bs}");
    let ext = render(|o| body_structure(o, MULTI, m.as_ref(), true));
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
    let bs = render(|o| body_structure(o, raw, m.as_ref(), false));
    assert_eq!(
        bs,
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1)"
    );
    let bs = render(|o| body_structure(o, b"", None, true));
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
    let bs = render(|o| body_structure(o, raw, m.as_ref(), true));
    assert!(bs.contains("(\"name\" \"report.bin\")"), "{bs}");
    assert!(
        bs.contains("(\"attachment\" (\"filename\" \"=?utf-8?b?Y2Fmw6kudHh0?=\"))"),
        "{bs}"
    );
}
