//! IMAP4rev2 on request (RFC 9051) and UTF8=ACCEPT (RFC 6855), with raw bytes and imaplib.

use crate::harness::{joined, message, python, Raw, Setup, PASSWORD};

fn utf8_multipart() -> Vec<u8> {
    "From: Jürgen <jurgen@example.org>\r\nTo: erin@example.org\r\nSubject: Grüße aus Köln\r\n\
     MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n\
     --B\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
     na=C3=AFve caf=C3=A9\r\n\
     --B\r\nContent-Type: application/octet-stream; name*0=\"re\"; name*1=\"port.bin\"\r\n\
     Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n\
     --B\r\nContent-Type: application/x-stuff\r\nContent-Transfer-Encoding: x-gzip64\r\n\r\nzzzz\r\n\
     --B--\r\n"
        .as_bytes()
        .to_vec()
}

/// IMAP4rev2 on request (RFC 9051): ENABLE, then its behaviour — UTF-8 names, \NonExistent,
/// LIST with SELECT, no RECENT/UNSEEN, ESEARCH for SEARCH, SEARCHRES, STATUS SIZE/DELETED,
/// BINARY — while an IMAP4rev1 session of the same user keeps rev1 behaviour.
/// A message with 8-bit headers and three parts: quoted-printable text, a base64 attachment
/// whose name is split by RFC 2231 continuations, and an encoding nobody knows.
pub fn rev2_session(s: &Setup) {
    let mut c = Raw::login(&s.imap(), "erin@example.org");
    let caps = joined(&c.ok("a", "CAPABILITY"));
    for cap in [
        "IMAP4rev1 IMAP4rev2",
        "BINARY",
        "UTF8=ACCEPT",
        "STATUS=SIZE",
        "SEARCHRES",
    ] {
        assert!(caps.contains(cap), "{cap} missing: {caps}");
    }
    // APPEND of a message with UTF-8 headers, and a plain one.
    let l = c.append("b", "INBOX", "", &utf8_multipart());
    assert!(l.starts_with("b OK [APPENDUID"), "{l}");
    c.append(
        "b2",
        "INBOX",
        "(\\Seen) ",
        &message("plain", "nothing to see"),
    );
    let en = joined(&c.ok("c", "ENABLE IMAP4rev2 CONDSTORE"));
    assert!(en.contains("* ENABLED IMAP4rev2 CONDSTORE\r\n"), "{en}");
    assert!(joined(&c.ok("c2", "ENABLE IMAP4rev2")).contains("* ENABLED\r\n"));
    // Mailbox names are UTF-8; a level that is no mailbox is \NonExistent.
    c.ok("d", "CREATE \"Entwürfe\"");
    c.ok("d2", "CREATE Projekte/Q1");
    let list = joined(&c.ok("d3", "LIST \"\" %"));
    for want in [
        "* LIST (\\HasNoChildren) \"/\" \"Entwürfe\"\r\n",
        "* LIST (\\NonExistent \\HasChildren) \"/\" \"Projekte\"\r\n",
    ] {
        assert!(list.contains(want), "{want}: {list}");
    }
    assert!(!list.contains("&APw-"), "{list}");
    let st = joined(&c.ok("d4", "STATUS \"Entwürfe\" (MESSAGES SIZE DELETED)"));
    assert!(
        st.contains("* STATUS \"Entwürfe\" (MESSAGES 0 SIZE 0 DELETED 0)"),
        "{st}"
    );
    let l = c.append("d5", "\"Entwürfe\"", "", &utf8_multipart());
    assert!(l.starts_with("d5 OK"), "{l}");
    // Syntax IMAP4rev2 removed is refused.
    c.expect("e", "STATUS INBOX (RECENT)", "BAD");
    c.expect("e2", "LIST \"\" INBOX RETURN (STATUS (RECENT))", "BAD");
    // SELECT: the mailbox's LIST response, no RECENT, no UNSEEN code.
    let sel = joined(&c.ok("f", "SELECT INBOX"));
    assert!(
        sel.contains("* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n") && sel.contains("* 2 EXISTS"),
        "{sel}"
    );
    assert!(!sel.contains("RECENT") && !sel.contains("[UNSEEN"), "{sel}");
    c.expect("f2", "SEARCH NEW", "BAD");
    c.expect("f3", "SEARCH OR RECENT SEEN", "BAD");
    let fl = joined(&c.ok("f4", "FETCH 1:* (FLAGS)"));
    assert!(!fl.contains("\\Recent"), "{fl}");
    // SEARCH answers ESEARCH, ALL when nothing else is asked for.
    let es = joined(&c.ok("g", "SEARCH ALL"));
    assert!(es.contains("* ESEARCH (TAG \"g\") ALL 1:2\r\n"), "{es}");
    assert!(!es.contains("* SEARCH"), "{es}");
    let es = joined(&c.ok("g2", "UID SEARCH UNSEEN"));
    assert!(es.contains("* ESEARCH (TAG \"g2\") UID ALL 1\r\n"), "{es}");
    let es = joined(&c.ok("g3", "SEARCH SUBJECT nothing-like-it"));
    assert!(es.contains("* ESEARCH (TAG \"g3\")\r\n"), "{es}");
    // SEARCHRES: SAVE alone answers nothing; `$` then names the result.
    let sv = joined(&c.ok("h", "SEARCH RETURN (SAVE) SUBJECT plain"));
    assert!(!sv.contains("ESEARCH"), "{sv}");
    let f = joined(&c.ok("h2", "FETCH $ (UID)"));
    assert!(
        f.contains("* 2 FETCH (UID 2)") && !f.contains("* 1 FETCH"),
        "{f}"
    );
    let es = joined(&c.ok("h3", "UID SEARCH UID $"));
    assert!(es.contains("* ESEARCH (TAG \"h3\") UID ALL 2\r\n"), "{es}");
    let sv = joined(&c.ok("h4", "SEARCH RETURN (SAVE COUNT) NOT $"));
    assert!(sv.contains("* ESEARCH (TAG \"h4\") COUNT 1\r\n"), "{sv}");
    assert!(joined(&c.ok("h5", "UID FETCH $ (FLAGS)")).contains("* 1 FETCH (UID 1 FLAGS ()"));
    // RFC 2231 parameter continuations are decoded in BODYSTRUCTURE.
    let bs = joined(&c.ok("i", "FETCH 1 (BODYSTRUCTURE ENVELOPE)"));
    assert!(bs.contains("(\"name\" \"report.bin\")"), "{bs}");
    assert!(bs.contains("Grüße aus Köln"), "{bs}");
    // BINARY: the transfer encodings undone, literal8 for NUL, UNKNOWN-CTE for the rest.
    let b = joined(&c.ok("j", "FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])"));
    assert!(
        b.contains("BINARY[1] {12}\r\nnaïve café BINARY.SIZE[1] 12)"),
        "{b}"
    );
    let b = joined(&c.ok("j2", "FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])"));
    assert!(
        b.contains("BINARY[2] ~{3}\r\n\u{0}\u{1}\u{2} BINARY.SIZE[2] 3)"),
        "{b:?}"
    );
    let b = joined(&c.ok("j3", "UID FETCH 1 BINARY.PEEK[2]<1.5>"));
    assert!(b.contains("BINARY[2]<1> {2}\r\n\u{1}\u{2})"), "{b:?}");
    let b = joined(&c.ok("j4", "FETCH 2 BINARY.PEEK[]"));
    assert!(
        b.contains("BINARY[] {") && b.contains("nothing to see"),
        "{b}"
    );
    assert!(!joined(&c.ok("j5", "FETCH 1 FLAGS")).contains("\\Seen"));
    c.expect("j6", "FETCH 1 (FLAGS BINARY.PEEK[3])", "NO [UNKNOWN-CTE]");
    // A non-PEEK BINARY sets \Seen.
    let b = joined(&c.ok("j7", "FETCH 1 BINARY[2]"));
    assert!(b.contains("FLAGS (\\Seen)"), "{b}");
    c.ok("k", "UNSELECT");
    // An IMAP4rev1 session of the same user still sees modified UTF-7 and \Noselect.
    let mut old = Raw::login(&s.imap(), "erin@example.org");
    let list = joined(&old.ok("l", "LIST \"\" %"));
    assert!(
        list.contains("\"Entw&APw-rfe\"")
            && list.contains("* LIST (\\Noselect \\HasChildren) \"/\" \"Projekte\""),
        "{list}"
    );
    let sr = joined(&old.ok("l2", "EXAMINE INBOX"));
    assert!(sr.contains(" RECENT\r\n") && !sr.contains("* LIST"), "{sr}");
    assert!(joined(&old.ok("l3", "SEARCH ALL")).contains("* SEARCH 1 2\r\n"));
    old.ok("l4", "LOGOUT");
    c.ok("z", "LOGOUT");
}

/// UTF8=ACCEPT (RFC 6855): UTF-8 names and quoted strings, `APPEND … UTF8 (~{n})`, no
/// SEARCH CHARSET; with raw bytes and with Python's imaplib.
pub fn utf8_accept(s: &Setup) {
    let mut c = Raw::login(&s.imap(), "erin@example.org");
    // Before ENABLE: UTF-8 is no modified UTF-7, and the UTF8 APPEND form is refused.
    c.expect("a", "SELECT \"Entwürfe\"", "NO");
    let m = message("utf8-append", "Grüße");
    c.send(format!("a2 APPEND INBOX UTF8 (~{{{}+}}\r\n", m.len()).as_bytes());
    c.send(&m);
    c.send(b")\r\n");
    assert!(c.until("a2").last().unwrap().starts_with("a2 BAD"));
    assert!(joined(&c.ok("b", "ENABLE UTF8=ACCEPT")).contains("* ENABLED UTF8=ACCEPT\r\n"));
    let sel = joined(&c.ok("c", "SELECT \"Entwürfe\""));
    assert!(
        sel.contains("* 1 EXISTS") && sel.contains(" RECENT\r\n") && !sel.contains("* LIST"),
        "{sel}"
    );
    c.send(format!("d APPEND \"Entwürfe\" (\\Seen) UTF8 (~{{{}}}\r\n", m.len()).as_bytes());
    assert!(c.line().starts_with('+'));
    c.send(&m);
    c.send(b")\r\n");
    let l = c.until("d");
    assert!(l.last().unwrap().starts_with("d OK [APPENDUID"), "{l:?}");
    // A large one is spooled to a file (spool_memory_limit is 100 000 in this setup).
    let size = |c: &mut Raw, tag: &str| -> usize {
        let st = joined(&c.ok(tag, "STATUS INBOX (SIZE)"));
        let n = st.split("(SIZE ").nth(1).and_then(|r| r.split(')').next());
        n.and_then(|n| n.parse().ok()).unwrap()
    };
    let before = size(&mut c, "d2");
    let big = [message("big-utf8", "Grüße"), vec![b'x'; 150_000]].concat();
    c.send(format!("d3 APPEND INBOX UTF8 (~{{{}+}}\r\n", big.len()).as_bytes());
    c.send(&big);
    c.send(b")\r\n");
    assert!(c
        .until("d3")
        .last()
        .unwrap()
        .starts_with("d3 OK [APPENDUID"));
    assert_eq!(size(&mut c, "d4"), before + big.len());
    c.expect("e", "SEARCH CHARSET UTF-8 ALL", "BAD");
    assert!(joined(&c.ok("e2", "SEARCH BODY \"Grüße\"")).contains("* SEARCH 2\r\n"));
    assert!(joined(&c.ok("e3", "LIST \"\" Entw*")).contains("\"Entwürfe\""));
    // SMTPUTF8 mail (raw UTF-8 header fields): ENVELOPE in UTF-8 for this session…
    let intl = "From: Jörg Müller <jörg@bücher.example>\r\nTo: erin@example.org\r\n\
                Subject: Grüße aus Köln\r\nMessage-ID: <grüße@bücher.example>\r\n\r\nHallo\r\n";
    c.send(format!("f APPEND INBOX UTF8 (~{{{}}}\r\n", intl.len()).as_bytes());
    assert!(c.line().starts_with('+'));
    c.send(intl.as_bytes());
    c.send(b")\r\n");
    let appended = c.until("f").pop().unwrap();
    let uid = appended
        .split_whitespace()
        .nth(4)
        .and_then(|u| u.trim_end_matches(']').parse::<u32>().ok())
        .unwrap_or_else(|| panic!("{appended}"));
    c.ok("f1", "SELECT INBOX");
    let env = joined(&c.ok("f2", &format!("UID FETCH {uid} ENVELOPE")));
    for want in [
        "\"Grüße aus Köln\"",
        "(\"Jörg Müller\" NIL \"jörg\" \"bücher.example\")",
        "\"<grüße@bücher.example>\"",
    ] {
        assert!(env.contains(want), "{want} in {env}");
    }
    c.ok("z", "LOGOUT");
    // … and 7-bit (RFC 2047 encoded words, the address as an RFC 6858 group) for a session
    // that did not enable UTF-8.
    let mut c = Raw::login(&s.imap(), "erin@example.org");
    c.ok("a", "SELECT INBOX");
    let env = joined(&c.ok("b", &format!("UID FETCH {uid} (ENVELOPE BODYSTRUCTURE)")));
    assert!(env.is_ascii(), "8-bit bytes to a 7-bit session: {env}");
    for want in [
        "\"=?utf-8?b?R3LDvMOfZSBhdXMgS8O2bG4=?=\"",
        "((NIL NIL \"=?utf-8?b?SsO2cmcgTcO8bGxlciA8asO2cmdAYsO8Y2hlci5leGFtcGxlPg==?=\" NIL)(NIL NIL NIL NIL))",
    ] {
        assert!(env.contains(want), "{want} in {env}");
    }
    c.ok("z", "LOGOUT");
    // imaplib: ENABLE, then names in UTF-8 (unquoted, as imaplib sends them).
    let script = r#"
import imaplib, sys
m = imaplib.IMAP4(sys.argv[1], 2143, timeout=20)
m.login('erin@example.org', sys.argv[2])
assert 'UTF8=ACCEPT' in m.capabilities, m.capabilities
typ, data = m.enable('UTF8=ACCEPT')
assert typ == 'OK', data
typ, data = m.select('Entwürfe')
assert typ == 'OK' and data == [b'2'], data
typ, data = m.search(None, 'SUBJECT', '"utf8-append"')
assert data == [b'2'], data
typ, data = m.list('""', 'Entw*')
assert 'Entwürfe' in b''.join(data).decode(), data
typ, data = m.status('Entwürfe', '(MESSAGES UIDNEXT)')
assert 'MESSAGES 2' in data[0].decode(), data
print('utf8 ok')
m.logout()
"#;
    assert!(python(script, &[&s.ip, PASSWORD]).contains("utf8 ok"));
}
