//! Real IMAP clients against the node: Python's imaplib, mbsync (isync) syncing both ways
//! with flags and deletions, and mutt in batch mode.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{joined, message, python, Raw, Setup, PASSWORD};

pub fn imaplib_client(s: &Setup) {
    let script = r#"
import imaplib, sys, time
m = imaplib.IMAP4(sys.argv[1], 2143, timeout=20)
m.login('alice@example.org', sys.argv[2])
m.create('PyTest')
typ, data = m.append('PyTest', '(\\Seen)', imaplib.Time2Internaldate(time.time()),
                     b'From: py@example.org\r\nSubject: from python\r\n\r\nhello from imaplib\r\n')
assert typ == 'OK', data
typ, data = m.select('PyTest')
assert data == [b'1'], data
typ, data = m.fetch('1', '(RFC822)')
assert b'hello from imaplib' in data[0][1], data
typ, data = m.search(None, 'FROM', 'py@example.org')
assert data == [b'1'], data
typ, data = m.uid('SEARCH', None, 'ALL')
assert data == [b'1'], data
m.store('1', '+FLAGS', '\\Deleted')
m.expunge()
typ, data = m.status('PyTest', '(MESSAGES)')
assert b'MESSAGES 0' in data[0], data
m.close()
m.delete('PyTest')
print('imaplib ok')
m.logout()
"#;
    assert!(python(script, &[&s.ip, PASSWORD]).contains("imaplib ok"));
}

fn maildir_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        for e in std::fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(e.path());
        }
    }
    out
}

fn mbsync(cfg: &Path) -> String {
    let out = Command::new("timeout")
        .args(["60", "mbsync", "-c"])
        .arg(cfg)
        .arg("-a")
        .output()
        .expect("mbsync (apt-get install isync) must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mbsync failed: {text}");
    text
}

pub fn mbsync_both_ways(s: &Setup) {
    let dir = s.c.tmp.path().join("mbsync");
    let local = dir.join("mail");
    std::fs::create_dir_all(&local).unwrap();
    let mut c = Raw::login(&s.imap(), "alice@example.org");
    c.ok("a", "CREATE Sync");
    for i in 0..3 {
        c.append("b", "Sync", "", &message(&format!("sync{i}"), "body"));
    }
    let cfg = dir.join("mbsyncrc");
    std::fs::write(
        &cfg,
        format!(
            "IMAPAccount t\nHost {ip}\nPort 2143\nUser alice@example.org\nPass \"{PASSWORD}\"\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore remote\nAccount t\n\n\
             MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n\
             Channel sync\nFar :remote:Sync\nNear :local:Sync\nCreate Both\nExpunge Both\nSyncState *\nSync All\n",
            ip = s.ip,
            local = local.display()
        ),
    )
    .unwrap();
    // Far to near.
    mbsync(&cfg);
    let near = local.join("Sync");
    let files = maildir_files(&near);
    assert_eq!(files.len(), 3, "{files:?}");
    // Near to far: flag one locally (maildir 'F'), delete one, add one.
    let flagged = &files[0];
    let name = flagged.file_name().unwrap().to_str().unwrap().to_string();
    let new_name = if name.contains(":2,") {
        format!("{name}F")
    } else {
        format!("{name}:2,F")
    };
    std::fs::rename(flagged, near.join("cur").join(new_name)).unwrap();
    let trashed = &files[1];
    let tname = trashed.file_name().unwrap().to_str().unwrap().to_string();
    let tnew = if tname.contains(":2,") {
        format!("{tname}T")
    } else {
        format!("{tname}:2,T")
    };
    std::fs::rename(trashed, near.join("cur").join(tnew)).unwrap();
    std::fs::write(
        near.join("new").join("1700000000.local.host"),
        message("from-maildir", "local body"),
    )
    .unwrap();
    mbsync(&cfg);
    c.ok("c", "SELECT Sync");
    let f = joined(&c.ok("d", "FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"));
    assert!(f.contains("Subject: from-maildir"), "{f}");
    assert!(f.contains("\\Flagged"), "{f}");
    assert_eq!(
        f.matches("* ").count(),
        3,
        "one deleted on the far side too: {f}"
    );
    // Far-side change back to near: delete one on the server, flag another.
    c.ok("e", "STORE 1 +FLAGS.SILENT (\\Deleted)");
    c.ok("f", "EXPUNGE");
    c.ok("g", "STORE 1 +FLAGS (\\Seen)");
    mbsync(&cfg);
    let files = maildir_files(&near);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files.iter().any(|p| p.to_str().unwrap().contains(":2,")
            && p.to_str()
                .unwrap()
                .rsplit(":2,")
                .next()
                .unwrap()
                .contains('S')),
        "{files:?}"
    );
    c.ok("z", "LOGOUT");
}

pub fn mutt_batch(s: &Setup) {
    let dir = s.c.tmp.path().join("mutt");
    std::fs::create_dir_all(&dir).unwrap();
    let rc = dir.join("muttrc");
    std::fs::write(
        &rc,
        format!(
            "set folder=\"imap://alice%40example.org@{ip}:2143/\"\nset imap_pass=\"{PASSWORD}\"\n\
             set spoolfile=\"+INBOX\"\nset ssl_starttls=no\nset ssl_force_tls=no\nset imap_passive=no\n\
             set header_cache=\"\"\nset timeout=5\nset record=\"\"\nset confirmcreate=no\nset confirmappend=no\nset move=no\nset delete=no\nset quit=yes\n",
            ip = s.ip
        ),
    )
    .unwrap();
    let mut c = Raw::login(&s.imap(), "alice@example.org");
    c.ok("a", "CREATE MuttBox");
    c.append("b", "MuttBox", "", &message("for-mutt", "mutt body"));
    // Driven through a pseudo-terminal (util-linux `script`): mutt opens the IMAP folder,
    // tags every message, copies them to a local mbox and quits.
    let mbox = dir.join("out.mbox");
    let mutt = format!(
        "mutt -n -F {rc} -f imap://alice%40example.org@{ip}:2143/MuttBox -e \"push '<tag-pattern>~A<enter><tag-prefix><copy-message>{mbox}<enter><quit>'\"",
        rc = rc.display(),
        ip = s.ip,
        mbox = mbox.display()
    );
    let out = Command::new("timeout")
        .args(["60", "script", "-qec", &mutt, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("mutt and script (util-linux) must be installed");
    let copied = std::fs::read_to_string(&mbox).unwrap_or_default();
    assert!(
        copied.contains("Subject: for-mutt") && copied.contains("mutt body"),
        "mutt did not copy the message: {copied}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    c.ok("z", "LOGOUT");
}
