//! The IMAP server end to end on a real node (network 127.0.52.0/24): raw protocol bytes for
//! the command set and for bad input (oversized and unterminated literals, deep nesting, bad
//! sequence sets, huge ranges, wrong states, invalid mailbox names, quota and size limits, a
//! client that stops reading), several sessions on one mailbox (IDLE sees EXISTS, FETCH FLAGS
//! and EXPUNGE from the others and from SMTP delivery), LOGINDISABLED and STARTTLS, the
//! `* BYE` at shutdown, IMAP4rev2 and UTF8=ACCEPT on request (`imap/rev2.rs`), `\Recent` and
//! LSUB parents (`imap/recent.rs`), and real clients (`imap/clients.rs`): Python's imaplib,
//! mbsync (isync) syncing both ways with flags and deletions, and mutt in batch mode.

#[path = "imap/clients.rs"]
mod clients;
mod common;
#[path = "imap/harness.rs"]
mod harness;
#[path = "imap/recent.rs"]
mod recent;
#[path = "imap/rev2.rs"]
mod rev2;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{TestCluster, Tuning};
use harness::{joined, message, python, rss_kb, Raw, Setup, NET, PASSWORD};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_end_to_end() {
    let c = TestCluster::new(NET, 1, Tuning::default());
    let ip = c.nodes[0].ip.clone();
    let store = c.tmp.path().join("mailstore");
    let mut s = Setup { c, ip, store };

    // First start: no plaintext login, so LOGINDISABLED until STARTTLS.
    s.configure(false);
    s.start().await;
    let api = s.c.api(1);
    assert_eq!(
        api.call("POST", "/api/domains", Some(json!({"name": "example.org"})))
            .await
            .0,
        200
    );
    for (user, quota) in [
        ("alice", 0u64),
        ("bob", 0),
        ("carol", 40_000),
        ("dave", 0),
        ("erin", 0),
        ("frank", 0),
    ] {
        let u = json!({"address": format!("{user}@example.org"), "password": PASSWORD, "quota_bytes": quota});
        let (status, v) = api.call("POST", "/api/users", Some(u)).await;
        assert_eq!(status, 201, "{v}");
    }
    tls_and_logindisabled(&s);
    shutdown_says_bye(&mut s);

    // Second start: plaintext login allowed (as in dev), for the raw-bytes tests.
    s.configure(true);
    s.start().await;
    mailbox_commands(&s);
    login_limits(&s);
    message_commands(&s);
    bad_input(&s);
    multi_session(&s);
    clients::imaplib_client(&s);
    clients::mbsync_both_ways(&s);
    clients::mutt_batch(&s);
    rev2::rev2_session(&s);
    rev2::utf8_accept(&s);
    recent::recent_flags(&s);
    recent::lsub_parents(&s);
    s.c.node(1).terminate(Duration::from_secs(15));
}

fn tls_and_logindisabled(s: &Setup) {
    let mut c = Raw::connect(&s.imap());
    let caps = joined(&c.ok("a", "CAPABILITY"));
    assert!(
        caps.contains("LOGINDISABLED") && caps.contains("STARTTLS"),
        "{caps}"
    );
    assert!(!caps.contains("AUTH=PLAIN"), "{caps}");
    c.expect(
        "b",
        &format!("LOGIN alice@example.org \"{PASSWORD}\""),
        "NO [PRIVACYREQUIRED]",
    );
    c.expect(
        "c",
        "AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGltYXAgc2VjcmV0",
        "NO [PRIVACYREQUIRED]",
    );
    c.expect("d", "SELECT INBOX", "BAD");
    // STARTTLS and implicit TLS with Python's imaplib, trusting the cluster CA.
    let script = r#"
import imaplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[3])
ctx.check_hostname = False
m = imaplib.IMAP4(sys.argv[1], 2143, timeout=20)
m.starttls(ssl_context=ctx)
assert 'AUTH=PLAIN' in m.capabilities, m.capabilities
assert 'LOGINDISABLED' not in m.capabilities, m.capabilities
m.login('alice@example.org', sys.argv[2])
typ, data = m.list()
print(b'\n'.join(data).decode())
m.logout()
m = imaplib.IMAP4_SSL(sys.argv[1], 2993, ssl_context=ctx, timeout=20)
m.authenticate('PLAIN', lambda _: b'\0bob@example.org\0' + sys.argv[2].encode())
print('IMAPS', m.select('INBOX'))
m.logout()
"#;
    let out = python(script, &[&s.ip, PASSWORD, s.ca().to_str().unwrap()]);
    for want in [
        "(\\HasNoChildren \\Sent) \"/\" \"Sent\"",
        "(\\HasNoChildren \\Drafts) \"/\" \"Drafts\"",
        "(\\HasNoChildren \\Trash) \"/\" \"Trash\"",
        "(\\HasNoChildren \\Junk) \"/\" \"Junk\"",
        "(\\HasNoChildren) \"/\" \"INBOX\"",
        "IMAPS ('OK', [b'0'])",
    ] {
        assert!(out.contains(want), "{want} missing in {out}");
    }
}

fn shutdown_says_bye(s: &mut Setup) {
    let mut idle = Raw::connect(&s.imap());
    s.c.node(1).signal(nix::sys::signal::Signal::SIGTERM);
    let bye = idle.line();
    assert!(bye.starts_with("* BYE"), "{bye}");
    let mut n = s.c.node(1).child.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while n.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "node did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mailbox_commands(s: &Setup) {
    let mut c = Raw::connect(&s.imap());
    let caps = joined(&c.ok("a", "CAPABILITY"));
    for cap in [
        "IMAP4rev1",
        "AUTH=PLAIN",
        "SASL-IR",
        "LITERAL+",
        "IDLE",
        "UIDPLUS",
        "MOVE",
        "CONDSTORE",
        "ESEARCH",
        "SORT",
        "QUOTA",
    ] {
        assert!(caps.contains(cap), "{cap} missing: {caps}");
    }
    c.expect("b", "FROB", "BAD");
    c.expect("c", "LIST \"\" *", "BAD");
    c.expect(
        "d",
        "LOGIN alice@example.org wrong",
        "NO [AUTHENTICATIONFAILED]",
    );
    // A password in a synchronising literal.
    c.send(b"e LOGIN alice@example.org {11}\r\n");
    assert!(c.line().starts_with('+'));
    c.send(format!("{PASSWORD}\r\n").as_bytes());
    let l = c.until("e");
    assert!(l.last().unwrap().starts_with("e OK [CAPABILITY"), "{l:?}");
    c.expect("f", "LOGIN alice@example.org x", "BAD");
    assert!(joined(&c.ok("g", "ID (\"name\" \"test\")")).contains("* ID ("));
    assert!(joined(&c.ok("h", "ENABLE CONDSTORE")).contains("* ENABLED CONDSTORE"));
    assert!(joined(&c.ok("i", "NAMESPACE")).contains("* NAMESPACE ((\"\" \"/\")) NIL NIL"));
    // Hierarchy, modified UTF-7 and special use.
    c.ok("j1", "CREATE \"Entw&APw-rfe\"");
    c.ok("j2", "CREATE Projects/2024/Q1");
    c.ok("j3", "CREATE Archive (USE (\\Archive))");
    c.expect("j4", "CREATE Projects/2024/Q1", "NO [ALREADYEXISTS]");
    c.expect("j5", "CREATE \"&Jjo!\"", "NO");
    c.expect("j6", "CREATE \"bad&AGE-\"", "NO");
    let list = joined(&c.ok("k", "LIST \"\" *"));
    for want in [
        "\"Entw&APw-rfe\"",
        "(\\Noselect \\HasChildren) \"/\" \"Projects/2024\"",
        "(\\HasNoChildren) \"/\" \"Projects/2024/Q1\"",
        "(\\HasNoChildren \\Archive) \"/\" \"Archive\"",
    ] {
        assert!(list.contains(want), "{want}: {list}");
    }
    let top = joined(&c.ok("l", "LIST \"\" %"));
    assert!(
        top.contains("\"Projects\"") && !top.contains("Projects/2024"),
        "{top}"
    );
    let special = joined(&c.ok("m", "LIST (SPECIAL-USE) \"\" *"));
    assert!(
        special.contains("\\Archive") && !special.contains("INBOX"),
        "{special}"
    );
    let status = joined(&c.ok("n", "LIST \"\" INBOX RETURN (STATUS (MESSAGES UIDNEXT))"));
    assert!(
        status.contains("* STATUS \"INBOX\" (MESSAGES 0 UIDNEXT 1)"),
        "{status}"
    );
    c.ok("o", "RENAME Projects Work");
    let list = joined(&c.ok("p", "LIST \"\" Work/*"));
    assert!(list.contains("\"Work/2024/Q1\""), "{list}");
    c.ok("q", "SUBSCRIBE Work/2024/Q1");
    let lsub = joined(&c.ok("r", "LSUB \"\" *"));
    assert!(
        lsub.contains("\"Work/2024/Q1\"") && lsub.contains("\"Sent\""),
        "{lsub}"
    );
    c.ok("s", "UNSUBSCRIBE Work/2024/Q1");
    assert!(!joined(&c.ok("t", "LSUB \"\" Work/*")).contains("Q1"));
    c.ok("u", "DELETE Work/2024/Q1");
    c.expect("v", "DELETE INBOX", "NO");
    c.expect("w", "DELETE nothing", "NO [NONEXISTENT]");
    let st = joined(&c.ok(
        "x",
        "STATUS \"Entw&APw-rfe\" (MESSAGES UNSEEN UIDVALIDITY HIGHESTMODSEQ)",
    ));
    assert!(
        st.contains("* STATUS \"Entw&APw-rfe\" (MESSAGES 0 UNSEEN 0 UIDVALIDITY "),
        "{st}"
    );
    c.expect("y", "SELECT nothing", "NO [NONEXISTENT]");
    c.ok("z", "LOGOUT");
}

fn login_limits(s: &Setup) {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    // AUTHENTICATE PLAIN with an initial response (SASL-IR), and with a continuation.
    let mut c = Raw::connect(&s.imap());
    c.ok(
        "a",
        &format!(
            "AUTHENTICATE PLAIN {}",
            b64(&format!("\0dave@example.org\0{PASSWORD}"))
        ),
    );
    c.ok("b", "LOGOUT");
    let mut c = Raw::connect(&s.imap());
    c.send(b"a AUTHENTICATE PLAIN\r\n");
    assert!(c.line().starts_with('+'));
    c.send(b"*\r\n");
    assert!(c.until("a").last().unwrap().starts_with("a BAD"));
    c.expect("b", "AUTHENTICATE CRAM-MD5", "NO");
    // Three failures in one session end it.
    for tag in ["c", "d"] {
        c.expect(
            tag,
            "LOGIN mallory@example.org nope",
            "NO [AUTHENTICATIONFAILED]",
        );
    }
    c.send(b"e LOGIN mallory@example.org nope\r\n");
    let end = c.until("e");
    assert!(end.last().unwrap().starts_with("e NO"));
    assert!(c.line().starts_with("* BYE"));
    // Three failures for one user, from separate sessions, lock that user out (right password
    // or not) for the window; other users are unaffected.
    for _ in 0..3 {
        let mut c = Raw::connect(&s.imap());
        c.expect(
            "a",
            "LOGIN dave@example.org wrong",
            "NO [AUTHENTICATIONFAILED]",
        );
    }
    let mut c = Raw::connect(&s.imap());
    c.send(format!("a LOGIN dave@example.org \"{PASSWORD}\"\r\n").as_bytes());
    assert!(c.line().starts_with("a NO [UNAVAILABLE]"));
    Raw::login(&s.imap(), "alice@example.org").ok("z", "LOGOUT");
}

fn message_commands(s: &Setup) {
    let mut c = Raw::login(&s.imap(), "alice@example.org");
    let a1 = c.append(
        "a1",
        "INBOX",
        "(\\Flagged) \"01-Feb-2022 10:00:00 +0000\" ",
        &message("alpha", "first body"),
    );
    assert!(a1.starts_with("a1 OK [APPENDUID "), "{a1}");
    c.append("a2", "INBOX", "", &message("beta", "second body"));
    // LITERAL+: no continuation.
    let m3 = message("gamma", "third body");
    c.send(format!("a3 APPEND INBOX (\\Seen) {{{}+}}\r\n", m3.len()).as_bytes());
    c.send(&m3);
    c.send(b"\r\n");
    assert!(c
        .until("a3")
        .last()
        .unwrap()
        .starts_with("a3 OK [APPENDUID"));
    c.expect("a4", "APPEND nothing {3+}\r\nabc", "NO [TRYCREATE]");

    let sel = joined(&c.ok("b", "SELECT INBOX"));
    for want in [
        "* 3 EXISTS",
        "* 3 RECENT",
        "* OK [UNSEEN 1]",
        "* OK [UIDVALIDITY ",
        "* OK [UIDNEXT 4]",
        "[READ-WRITE]",
        "* OK [HIGHESTMODSEQ ",
    ] {
        assert!(sel.contains(want), "{want}: {sel}");
    }
    let f = joined(&c.ok("c", "FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE)"));
    // This session is the first to see the three APPENDed messages: \Recent, whatever their
    // INTERNALDATE.
    assert!(
        f.contains("* 1 FETCH (FLAGS (\\Recent \\Flagged) UID 1 RFC822.SIZE "),
        "{f}"
    );
    assert!(
        f.contains("INTERNALDATE \"01-Feb-2022 10:00:00 +0000\""),
        "{f}"
    );
    assert!(
        f.contains("* 3 FETCH (FLAGS (\\Recent \\Seen) UID 3"),
        "{f}"
    );
    let env = joined(&c.ok("d", "FETCH 2 (ENVELOPE BODYSTRUCTURE)"));
    assert!(env.contains("ENVELOPE (\"Tue, 1 Feb 2022 10:00:00 +0000\" \"beta\" ((\"Alice\" NIL \"alice\" \"example.org\"))"), "{env}");
    assert!(env.contains("BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 13 1 NIL NIL NIL NIL)"), "{env}");
    let peek = joined(&c.ok(
        "e",
        "FETCH 2 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT]<0.6>)",
    ));
    assert!(
        peek.contains("BODY[HEADER.FIELDS (SUBJECT)] {17}\r\nSubject: beta\r\n\r\n"),
        "{peek}"
    );
    assert!(peek.contains("BODY[TEXT]<0> {6}\r\nsecond"), "{peek}");
    assert!(!peek.contains("\\Seen"), "{peek}");
    // A non-PEEK body fetch sets \Seen and says so.
    let body = joined(&c.ok("f", "FETCH 2 BODY[1]"));
    assert!(
        body.contains("FLAGS (\\Recent \\Seen)")
            && body.contains("BODY[1] {13}\r\nsecond body\r\n"),
        "{body}"
    );
    let rfc = joined(&c.ok("g", "UID FETCH 1 (RFC822.HEADER RFC822.TEXT)"));
    assert!(
        rfc.contains("RFC822.HEADER {") && rfc.contains("RFC822.TEXT {12}\r\nfirst body\r\n"),
        "{rfc}"
    );
    // STORE and its untagged FETCH.
    let st = joined(&c.ok("h", "STORE 1 +FLAGS (\\Deleted $Work)"));
    assert!(
        st.contains("* 1 FETCH (FLAGS (\\Recent \\Seen \\Flagged \\Deleted $Work) UID 1)"),
        "{st}"
    );
    assert!(
        joined(&c.ok("h2", "STORE 1 -FLAGS.SILENT (\\Deleted)"))
            .lines()
            .count()
            == 1
    );
    // SEARCH, ESEARCH and SORT.
    assert!(joined(&c.ok("i", "SEARCH UNSEEN")).contains("* SEARCH\r\n"));
    assert!(joined(&c.ok("i2", "SEARCH SUBJECT beta")).contains("* SEARCH 2\r\n"));
    assert!(
        joined(&c.ok("i3", "UID SEARCH OR KEYWORD $Work BODY third")).contains("* SEARCH 1 3\r\n")
    );
    let es = joined(&c.ok("i4", "UID SEARCH RETURN (MIN MAX COUNT ALL) ALL"));
    assert!(
        es.contains("* ESEARCH (TAG \"i4\") UID MIN 1 MAX 3 COUNT 3 ALL 1:3"),
        "{es}"
    );
    assert!(joined(&c.ok("i5", "SORT (REVERSE SUBJECT) UTF-8 ALL")).contains("* SORT 3 2 1\r\n"));
    c.expect("i5b", "SEARCH CHARSET KOI8-R ALL", "NO [BADCHARSET");
    assert!(joined(&c.ok("i6", "SEARCH SINCE 1-Jan-2000 NOT DELETED")).contains("* SEARCH 1 2 3"));
    // CONDSTORE: CHANGEDSINCE and UNCHANGEDSINCE.
    let sel = joined(&c.ok("j", "STATUS INBOX (HIGHESTMODSEQ)"));
    let hms: u64 = sel
        .split("HIGHESTMODSEQ ")
        .nth(1)
        .unwrap()
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .split(')')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        joined(&c.ok("j2", &format!("FETCH 1:* (FLAGS) (CHANGEDSINCE {hms})")))
            .lines()
            .count()
            == 1
    );
    let conflict = joined(&c.ok("j3", "STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Answered)"));
    assert!(conflict.contains("[MODIFIED 1]"), "{conflict}");
    // COPY, MOVE (UIDPLUS), EXPUNGE.
    let cp = joined(&c.ok("k", "COPY 1:2 Trash"));
    assert!(cp.contains("[COPYUID ") && cp.contains(" 1:2 1:2]"), "{cp}");
    c.expect("k2", "COPY 1 nothing", "NO [TRYCREATE]");
    let mv = joined(&c.ok("l", "UID MOVE 3 Archive"));
    assert!(
        mv.contains("* OK [COPYUID ") && mv.contains("* 3 EXPUNGE"),
        "{mv}"
    );
    c.ok("m", "STORE 2 +FLAGS.SILENT (\\Deleted)");
    let ex = joined(&c.ok("m2", "UID EXPUNGE 1"));
    assert!(!ex.contains("EXPUNGE\r\n* "), "{ex}");
    let ex = joined(&c.ok("m3", "EXPUNGE"));
    assert!(ex.contains("* 2 EXPUNGE"), "{ex}");
    assert!(joined(&c.ok("n", "NOOP")).lines().count() == 1);
    let q = joined(&c.ok("o", "GETQUOTAROOT INBOX"));
    assert!(q.contains("* QUOTAROOT \"INBOX\""), "{q}");
    c.expect("p", "SETQUOTA \"\" (STORAGE 1)", "NO");
    // EXAMINE is read-only; CLOSE there expunges nothing.
    let ex = joined(&c.ok("q", "EXAMINE Trash"));
    assert!(
        ex.contains("* OK [CLOSED]")
            && ex.contains("[READ-ONLY]")
            && ex.contains("* 2 EXISTS")
            && ex.contains("* 2 RECENT"),
        "{ex}"
    );
    c.expect("q2", "STORE 1 +FLAGS (\\Deleted)", "NO [READ-ONLY]");
    c.ok("q3", "UNSELECT");
    c.expect("q4", "FETCH 1 FLAGS", "BAD");
    c.ok("r", "SELECT Trash");
    c.ok("r2", "STORE 1 +FLAGS (\\Deleted)");
    c.ok("r3", "CLOSE");
    assert!(joined(&c.ok("r4", "STATUS Trash (MESSAGES)")).contains("(MESSAGES 1)"));
    c.ok("z", "LOGOUT");
}

fn bad_input(s: &Setup) {
    let mut c = Raw::login(&s.imap(), "carol@example.org");
    // A 4 GB literal is refused before it is read: no '+', and the session goes on.
    c.send(b"a APPEND INBOX {4294967296}\r\n");
    let l = c.line();
    assert!(l.starts_with("a NO [TOOBIG]"), "{l}");
    c.ok("a2", "NOOP");
    c.send(b"a3 LOGIN {99999999999999999999}\r\n");
    assert!(c.line().starts_with("a3 NO [TOOBIG]"));
    // Over the user's quota (40 000 bytes) and over the size limit (1 MiB).
    let l = c.append("b", "INBOX", "", &vec![b'x'; 30_000]);
    assert!(l.starts_with("b OK"), "{l}");
    c.send(b"b2 APPEND INBOX {20000}\r\n");
    assert!(c.line().starts_with("b2 NO [OVERQUOTA]"));
    c.send(b"b3 APPEND INBOX {2000000}\r\n");
    assert!(c.line().starts_with("b3 NO [TOOBIG]"));
    // Deep nesting, bad sequence sets, huge ranges, unknown commands, wrong state.
    c.ok("c", "SELECT INBOX");
    let deep = format!("SEARCH {}ALL{}", "(".repeat(200), ")".repeat(200));
    assert!(c
        .expect("c2", &deep, "BAD")
        .last()
        .unwrap()
        .contains("nested"));
    c.expect("d1", "FETCH 0 FLAGS", "BAD");
    c.expect("d2", "FETCH 1:x FLAGS", "BAD");
    c.expect("d3", "FETCH 5 FLAGS", "BAD");
    c.expect("d4", "FETCH 1,,2 FLAGS", "BAD");
    c.expect("d5", "FETCH 4294967296 FLAGS", "BAD");
    let t = Instant::now();
    let huge = joined(&c.ok("e", "UID FETCH 1:4294967295 (UID)"));
    assert!(
        huge.contains("* 1 FETCH (UID 1)") && t.elapsed() < Duration::from_secs(2),
        "{huge}"
    );
    c.ok("e2", "SEARCH 1:4294967295");
    c.expect("f", "XYZZY", "BAD");
    c.expect("f2", "LOGIN a b", "BAD");
    c.expect("f3", "STARTTLS", "BAD");
    c.expect("f4", "IDLE extra", "BAD");
    // A line over the limit is dropped and answered untagged.
    c.send(&vec![b'x'; 70_000]);
    c.send(b"\r\n");
    assert!(c.line().starts_with("* BAD [TOOBIG]"));
    c.ok("g", "NOOP");
    // A non-synchronising literal over the limit ends the session.
    c.send(b"h LOGIN {999999999+}\r\n");
    assert!(c.line().starts_with("* BYE"));

    // An unterminated literal: the client goes away mid-literal; others are unaffected.
    let mut other = Raw::login(&s.imap(), "carol@example.org");
    let mut u = Raw::login(&s.imap(), "carol@example.org");
    u.send(b"x APPEND INBOX {1000}\r\n");
    assert!(u.line().starts_with('+'));
    u.send(b"only a little");
    drop(u);
    other.ok("i", "NOOP");
    assert!(joined(&other.ok("i2", "STATUS INBOX (MESSAGES)")).contains("(MESSAGES 1)"));

    // A client that stops reading: the server's buffer stays bounded and the session ends.
    let big = vec![b'y'; 500_000];
    let mut bob = Raw::login(&s.imap(), "bob@example.org");
    assert!(bob.append("j", "INBOX", "", &big).starts_with("j OK"));
    bob.ok("j2", "SELECT INBOX");
    // Large bodies are streamed from the file: same bytes, same framing.
    let f = joined(&bob.ok("j3", "FETCH 1 (UID FLAGS BODY.PEEK[])"));
    assert!(
        f.starts_with("* 1 FETCH (UID 1 FLAGS (\\Recent) BODY[] {500000}\r\nyyyy"),
        "{}",
        &f[..200]
    );
    assert!(f.contains(&format!("{})\r\nj3 OK", "y".repeat(100))));
    let f = joined(&bob.ok("j4", "FETCH 1 RFC822"));
    assert!(
        f.contains("* 1 FETCH (FLAGS (\\Recent \\Seen) RFC822 {500000}\r\n"),
        "{}",
        &f[..200]
    );
    let pid = s.c.nodes[0].child.as_ref().unwrap().id();
    let before = rss_kb(pid);
    let writer = std::thread::spawn({
        let mut w = bob.w.try_clone().unwrap();
        move || {
            for i in 0..400 {
                if w.write_all(format!("k{i} FETCH 1 BODY.PEEK[]\r\n").as_bytes())
                    .is_err()
                {
                    break;
                }
            }
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    let grown = rss_kb(pid).saturating_sub(before);
    assert!(
        grown < 40_000,
        "RSS grew by {grown} kB for a client that does not read"
    );
    other.ok("l", "NOOP");
    drop(bob);
    let _ = writer.join();
    other.ok("m", "LOGOUT");
}

fn multi_session(s: &Setup) {
    let mut a = Raw::login(&s.imap(), "bob@example.org");
    let mut b = Raw::login(&s.imap(), "bob@example.org");
    a.ok("a", "SELECT INBOX");
    b.ok("b", "SELECT INBOX");
    a.send(b"i IDLE\r\n");
    assert!(a.line().starts_with('+'));
    // Another session appends: EXISTS in IDLE.
    b.append("c", "INBOX", "", &message("idle", "x"));
    assert_eq!(a.line(), "* 2 EXISTS\r\n");
    // \Recent goes to whichever of the two sessions takes the event first.
    let r = a.line();
    assert!(r == "* 1 RECENT\r\n" || r == "* 0 RECENT\r\n", "{r}");
    // Another session changes flags: FETCH FLAGS.
    b.ok("d", "STORE 2 +FLAGS (\\Flagged)");
    let f = a.line();
    assert!(
        f.starts_with("* 2 FETCH (FLAGS (") && f.contains("\\Flagged) UID "),
        "{f}"
    );
    // SMTP delivery into the mailbox: EXISTS.
    let script = r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], 2525, local_hostname='py.test', timeout=10)
s.sendmail('x@sender.test', ['bob@example.org'], b'Subject: via smtp\r\n\r\nhi\r\n')
s.quit()
"#;
    python(script, &[&s.ip]);
    assert_eq!(a.line(), "* 3 EXISTS\r\n");
    assert!(a.line().ends_with(" RECENT\r\n"));
    // Another session expunges.
    b.ok("e", "STORE 1 +FLAGS.SILENT (\\Deleted)");
    b.ok("f", "EXPUNGE");
    let mut got = a.line();
    if got.contains("FETCH") {
        got = a.line();
    }
    assert_eq!(got, "* 1 EXPUNGE\r\n");
    a.send(b"DONE\r\n");
    assert!(a.until("i").last().unwrap().starts_with("i OK"));
    // Outside IDLE, changes come with the next command, EXPUNGE not during FETCH.
    b.ok("g", "STORE 1 +FLAGS.SILENT (\\Deleted)");
    b.ok("h", "EXPUNGE");
    let f = joined(&a.ok("j", "FETCH 1:* (UID)"));
    assert!(!f.contains("EXPUNGE"), "{f}");
    let n = joined(&a.ok("k", "NOOP"));
    assert!(n.contains("* 1 EXPUNGE"), "{n}");
    a.ok("l", "LOGOUT");
    b.ok("m", "LOGOUT");
}
