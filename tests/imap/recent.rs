//! `\Recent` for IMAP4rev1 sessions (RFC 3501 §2.3.2) and LSUB's `\Noselect` parents
//! (§6.3.9, with LIST-EXTENDED's RECURSIVEMATCH beside it).

use std::time::{Duration, Instant};

use crate::harness::{joined, message, python, Raw, Setup, PASSWORD};

/// `\Recent` (RFC 3501 §2.3.2) for IMAP4rev1 sessions: the first session told of a message
/// gets it; EXAMINE and STATUS look without taking; IMAP4rev2 sessions neither see nor take.
pub fn recent_flags(s: &Setup) {
    let deliver = |subject: &str| {
        let script = r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], 2525, local_hostname='py.test', timeout=10)
s.sendmail('x@sender.test', ['frank@example.org'], ('Subject: %s\r\n\r\nhi\r\n' % sys.argv[2]).encode())
s.quit()
"#;
        python(script, &[&s.ip, subject]);
    };
    let wait_messages = |c: &mut Raw, n: u32| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let st = joined(&c.ok("w", "STATUS INBOX (MESSAGES)"));
            if st.contains(&format!("(MESSAGES {n})")) {
                return;
            }
            assert!(Instant::now() < deadline, "delivery did not arrive: {st}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut a = Raw::login(&s.imap(), "frank@example.org");
    let mut b = Raw::login(&s.imap(), "frank@example.org");
    let mut c = Raw::login(&s.imap(), "frank@example.org");
    deliver("one");
    deliver("two");
    wait_messages(&mut c, 2);
    assert!(joined(&c.ok("a", "STATUS INBOX (RECENT)")).contains("(RECENT 2)"));
    // The first SELECT takes both.
    let sel = joined(&a.ok("b", "SELECT INBOX"));
    assert!(sel.contains("* 2 EXISTS\r\n* 2 RECENT\r\n"), "{sel}");
    let f = joined(&a.ok("b2", "FETCH 1:* (FLAGS)"));
    assert!(
        f.contains("* 1 FETCH (FLAGS (\\Recent))") && f.contains("* 2 FETCH (FLAGS (\\Recent))"),
        "{f}"
    );
    a.ok("b3", "STORE 1 +FLAGS.SILENT (\\Seen)");
    assert!(joined(&a.ok("b4", "SEARCH NEW")).contains("* SEARCH 2\r\n"));
    assert!(joined(&a.ok("b5", "SEARCH RECENT")).contains("* SEARCH 1 2\r\n"));
    assert!(joined(&a.ok("b6", "SEARCH OLD")).contains("* SEARCH\r\n"));
    // The next session finds none.
    assert!(joined(&c.ok("c", "STATUS INBOX (RECENT)")).contains("(RECENT 0)"));
    let sel = joined(&b.ok("c2", "SELECT INBOX"));
    assert!(sel.contains("* 0 RECENT"), "{sel}");
    assert!(!joined(&b.ok("c3", "FETCH 1:* FLAGS")).contains("\\Recent"));
    assert!(joined(&b.ok("c4", "SEARCH OLD")).contains("* SEARCH 1 2\r\n"));
    // A session with the mailbox selected is told first of a new arrival (a is not).
    a.ok("d", "UNSELECT");
    deliver("three");
    wait_messages(&mut c, 3);
    let n = joined(&b.ok("d2", "NOOP"));
    assert!(n.contains("* 3 EXISTS\r\n* 1 RECENT\r\n"), "{n}");
    assert!(joined(&b.ok("d3", "FETCH 3 FLAGS")).contains("(FLAGS (\\Recent))"));
    b.ok("d4", "UNSELECT");
    // EXAMINE and STATUS only look; the next SELECT still gets it.
    deliver("four");
    wait_messages(&mut c, 4);
    assert!(joined(&c.ok("e", "EXAMINE INBOX")).contains("* 1 RECENT"));
    assert!(joined(&c.ok("e2", "FETCH 4 FLAGS")).contains("(FLAGS (\\Recent))"));
    c.ok("e3", "UNSELECT");
    assert!(joined(&a.ok("e4", "SELECT INBOX")).contains("* 1 RECENT"));
    a.ok("e5", "UNSELECT");
    // An IMAP4rev2 session neither sees \Recent nor takes it from rev1 sessions.
    deliver("five");
    wait_messages(&mut c, 5);
    let mut r2 = Raw::login(&s.imap(), "frank@example.org");
    r2.ok("f", "ENABLE IMAP4rev2");
    let sel = joined(&r2.ok("f2", "SELECT INBOX"));
    assert!(!sel.contains("RECENT"), "{sel}");
    assert!(!joined(&r2.ok("f3", "FETCH 5 FLAGS")).contains("\\Recent"));
    r2.ok("f4", "LOGOUT");
    assert!(joined(&b.ok("f5", "SELECT INBOX")).contains("* 1 RECENT"));
    // IDLE: the selected session that hears of it first takes it.
    b.send(b"g IDLE\r\n");
    assert!(b.line().starts_with('+'));
    deliver("six");
    assert_eq!(b.line(), "* 6 EXISTS\r\n");
    assert_eq!(b.line(), "* 2 RECENT\r\n");
    b.send(b"DONE\r\n");
    b.until("g");
    // An APPEND or COPY with an old INTERNALDATE into a mailbox nobody opened yet is recent.
    c.ok("h", "CREATE Old");
    let l = c.append(
        "h2",
        "Old",
        "\"01-Jan-2000 00:00:00 +0000\" ",
        &message("old", "x"),
    );
    assert!(l.starts_with("h2 OK"), "{l}");
    c.ok("h3", "CREATE Older");
    b.ok("h4", "COPY 1 Older");
    assert!(joined(&c.ok("h5", "SELECT Old")).contains("* 1 RECENT"));
    assert!(joined(&c.ok("h6", "SELECT Older")).contains("* 1 RECENT"));
    // ENABLE IMAP4rev2 while selected: \Recent is gone from then on.
    assert!(joined(&c.ok("h7", "FETCH 1 FLAGS")).contains("(FLAGS (\\Recent \\Seen))"));
    c.ok("h8", "ENABLE IMAP4rev2");
    assert!(!joined(&c.ok("h9", "FETCH 1 FLAGS")).contains("\\Recent"));
    for (mut x, t) in [(a, "za"), (b, "zb"), (c, "zc")] {
        x.ok(t, "LOGOUT");
    }
}

/// LSUB lists a `\Noselect` parent of subscribed children for `%` (RFC 3501 §6.3.9);
/// LIST (SUBSCRIBED RECURSIVEMATCH) returns it with CHILDINFO (RFC 5258).
pub fn lsub_parents(s: &Setup) {
    let mut c = Raw::login(&s.imap(), "erin@example.org");
    c.ok("a", "CREATE Lists/2024/Jan");
    c.ok("a2", "SUBSCRIBE Lists/2024/Jan");
    let l = joined(&c.ok("b", "LSUB \"\" %"));
    assert!(l.contains("* LSUB (\\Noselect) \"/\" \"Lists\"\r\n"), "{l}");
    assert!(!l.contains("Lists/"), "{l}");
    let l = joined(&c.ok("b2", "LSUB \"\" Lists/%"));
    assert!(
        l.contains("* LSUB (\\Noselect) \"/\" \"Lists/2024\"\r\n"),
        "{l}"
    );
    let l = joined(&c.ok("b3", "LSUB \"\" *"));
    assert!(
        l.contains("* LSUB () \"/\" \"Lists/2024/Jan\"\r\n") && !l.contains("\"Lists\"\r\n"),
        "{l}"
    );
    let l = joined(&c.ok("c", "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" %"));
    assert!(
        l.contains(
            "* LIST (\\NonExistent \\HasChildren) \"/\" \"Lists\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
        ),
        "{l}"
    );
    let l = joined(&c.ok("c2", "LIST (SUBSCRIBED) \"\" %"));
    assert!(!l.contains("\"Lists\""), "{l}");
    c.ok("z", "LOGOUT");
    let script = r#"
import imaplib, sys
m = imaplib.IMAP4(sys.argv[1], 2143, timeout=20)
m.login('erin@example.org', sys.argv[2])
typ, data = m.lsub('""', '%')
assert b'(\\Noselect) "/" "Lists"' in data, data
print('lsub ok')
m.logout()
"#;
    assert!(python(script, &[&s.ip, PASSWORD]).contains("lsub ok"));
}
