//! What a session offers and what the client turned on: the CAPABILITY list, ENABLE
//! (CONDSTORE, IMAP4rev2, UTF8=ACCEPT), and the commands a mode refuses.
//!
//! The server speaks IMAP4rev1 until the client sends `ENABLE IMAP4rev2` (RFC 9051 §6.3.1: a
//! server offering both versions keeps rev1 behaviour until then). After it: no `\Recent`,
//! no RECENT responses, SEARCH answers ESEARCH, SELECT sends the mailbox's LIST response and
//! no UNSEEN code, names are UTF-8 and a name that does not exist is `\NonExistent`. Its
//! removed syntax (`STATUS (RECENT)`, the `NEW`/`OLD`/`RECENT` search keys) is refused with
//! BAD. CHECK, LSUB and the RFC822.* FETCH items, deprecated by IMAP4rev2, keep working.
//! `ENABLE UTF8=ACCEPT` (RFC 6855) makes names UTF-8 and allows `APPEND … UTF8 (~{n})`;
//! SEARCH with a CHARSET is then refused (RFC 6855 errata 4029). Either mode also makes
//! ENVELOPE and BODYSTRUCTURE strings UTF-8 (quoted when they can be); other sessions get them
//! 7-bit, non-ASCII as RFC 2047 encoded words (module `mime`).
//!
//! Of RFC 9051's changes from RFC 3501 (Appendix E) this server does not do: Unicode NFC
//! normalisation of UTF-8 names and the LIST `OLDNAME` item (names are kept as sent; only
//! INBOX is case-folded), `\Remote` (no remote mailboxes), and IDLE reports about mailboxes
//! other than the selected one.
//!
//! No I/O: everything appends to the response buffer. Security note: enabling changes only
//! how this session's names and responses are spelt; nothing here widens access.

use super::command::{Command, StatusItem};
use super::session::Session;
use crate::net::Conn;

impl Session<'_> {
    /// The CAPABILITY list for the current state.
    pub fn capabilities<S>(&self, conn: &Conn<S>) -> String {
        let mut caps = vec!["IMAP4rev1".to_string(), "IMAP4rev2".to_string()];
        if self.user.is_none() {
            if conn.starttls_available() {
                caps.push("STARTTLS".into());
            }
            if self.login_allowed() {
                caps.push("AUTH=PLAIN".into());
                caps.push("SASL-IR".into());
            } else {
                caps.push("LOGINDISABLED".into());
            }
        }
        caps.extend(
            [
                "LITERAL+",
                "ID",
                "ENABLE",
                "IDLE",
                "NAMESPACE",
                "UNSELECT",
                "CHILDREN",
                "SPECIAL-USE",
                "CREATE-SPECIAL-USE",
                "LIST-EXTENDED",
                "LIST-STATUS",
                "UIDPLUS",
                "MOVE",
                "CONDSTORE",
                "QUOTA",
                "QUOTA=RES-STORAGE",
                "ESEARCH",
                "SEARCHRES",
                "SORT",
                "BINARY",
                "STATUS=SIZE",
                "UTF8=ACCEPT",
            ]
            .map(String::from),
        );
        caps.push(format!("APPENDLIMIT={}", self.sh.cfg.max_append_size));
        caps.join(" ")
    }

    /// ENABLE: turns on what it knows and says which it turned on now (RFC 5161 §3.1:
    /// unknown and already enabled capabilities are left out of `* ENABLED`).
    pub fn enable(&mut self, out: &mut Vec<u8>, caps: &[String]) {
        let mut enabled: Vec<&str> = Vec::new();
        for c in caps {
            match c.as_str() {
                "CONDSTORE" if !self.condstore => {
                    self.condstore = true;
                    enabled.push("CONDSTORE");
                }
                "IMAP4REV2" if !self.rev2 => {
                    self.rev2 = true;
                    if let Some(sel) = self.selected.as_mut() {
                        sel.drop_recent();
                    }
                    enabled.push("IMAP4rev2");
                }
                "UTF8=ACCEPT" if !self.utf8_accept => {
                    self.utf8_accept = true;
                    enabled.push("UTF8=ACCEPT");
                }
                _ => {}
            }
        }
        out.extend_from_slice(b"* ENABLED");
        for c in enabled {
            out.push(b' ');
            out.extend_from_slice(c.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Why this session refuses a well-formed command with BAD, if it does.
    pub fn refusal(&self, cmd: &Command) -> Option<&'static str> {
        let recent_status = |items: &[StatusItem]| items.contains(&StatusItem::Recent);
        match cmd {
            Command::Status { items, .. } if self.rev2 && recent_status(items) => {
                Some("STATUS RECENT is not part of IMAP4rev2")
            }
            Command::List { opts, .. }
                if self.rev2 && opts.return_status.as_deref().is_some_and(recent_status) =>
            {
                Some("STATUS RECENT is not part of IMAP4rev2")
            }
            Command::Search { key, .. } | Command::Sort { key, .. }
                if self.rev2 && key.uses_recent() =>
            {
                Some("NEW, OLD and RECENT are not part of IMAP4rev2")
            }
            Command::Search { charset: true, .. } if self.utf8_accept => {
                Some("no CHARSET after ENABLE UTF8=ACCEPT: search strings are UTF-8")
            }
            Command::Append { utf8: true, .. } if !self.utf8_accept => {
                Some("APPEND UTF8 needs ENABLE UTF8=ACCEPT first")
            }
            _ => None,
        }
    }
}
