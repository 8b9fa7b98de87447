//! Message headers without the rest of the message: what FETCH needs for ENVELOPE and
//! `BODY[HEADER]` / `BODY[HEADER.FIELDS (…)]`, the items mail clients ask of every message
//! when they list a mailbox.
//!
//! [`header_block`] finds a well-formed header at the start of a message (no I/O), so a FETCH
//! of header items reads the first few kilobytes of a message file instead of all of it, and
//! skips the MIME parser for header fields. [`HeaderCache`] keeps recent header blocks in
//! memory, shared by every session of the server, so listing the same mailbox again reads no
//! file at all (Dovecot keeps such fields in its `dovecot.index.cache`). Messages never change
//! once stored, so an entry is never stale; it is keyed by the user and the stored file's name,
//! checksum and size, so one user's entries can never answer for another user's messages.
//!
//! Security note: the cache is bounded in bytes (`[imap] header_cache_bytes`, oldest entries
//! go first) and an idle session holds nothing in it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Header blocks larger than this are not cached (they are read from the file each time).
const MAX_ENTRY: usize = 64 * 1024;

/// The length of the message's header through the empty line that ends it, if the header is
/// well-formed: at least one field, every line a field (`name:` with a printable name) or a
/// continuation (starting with a space or a tab), lines ended by LF (or CRLF), and an empty
/// line at its end. `None` otherwise; the caller then parses the whole message.
pub fn header_block(raw: &[u8]) -> Option<usize> {
    let mut pos = 0;
    let mut first = true;
    loop {
        let rest = raw.get(pos..)?;
        let lf = rest.iter().position(|&b| b == b'\n')?;
        let line = &rest[..lf];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += lf + 1;
        if line.is_empty() {
            return (!first).then_some(pos);
        }
        let continuation = matches!(line[0], b' ' | b'\t');
        if continuation {
            if first {
                return None;
            }
        } else {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = &line[..colon];
            if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
                return None;
            }
        }
        first = false;
    }
}

/// Identifies a stored message's content for one user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderKey {
    pub user: String,
    /// The message file's name in the store.
    pub file: Arc<str>,
    pub crc: u32,
    pub size: u64,
}

#[derive(Default)]
struct Entries {
    map: HashMap<HeaderKey, Arc<[u8]>>,
    /// Insertion order, oldest first.
    order: VecDeque<HeaderKey>,
    bytes: usize,
}

/// Recently read header blocks, at most `capacity` bytes of them (keys included).
pub struct HeaderCache {
    capacity: usize,
    entries: Mutex<Entries>,
}

impl HeaderCache {
    /// A cache of at most `capacity` bytes; 0 turns it off.
    pub fn new(capacity: usize) -> HeaderCache {
        HeaderCache {
            capacity,
            entries: Mutex::new(Entries::default()),
        }
    }

    fn cost(key: &HeaderKey, block: &[u8]) -> usize {
        block.len() + key.user.len() + key.file.len() + 96
    }

    pub fn get(&self, key: &HeaderKey) -> Option<Arc<[u8]>> {
        if self.capacity == 0 {
            return None;
        }
        let e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        e.map.get(key).cloned()
    }

    pub fn insert(&self, key: HeaderKey, block: Arc<[u8]>) {
        let cost = Self::cost(&key, &block);
        if block.len() > MAX_ENTRY || cost > self.capacity {
            return;
        }
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if e.map.contains_key(&key) {
            return;
        }
        while e.bytes + cost > self.capacity {
            let Some(old) = e.order.pop_front() else {
                break;
            };
            if let Some(b) = e.map.remove(&old) {
                e.bytes -= Self::cost(&old, &b);
            }
        }
        e.bytes += cost;
        e.order.push_back(key.clone());
        e.map.insert(key, block);
    }

    /// Entries and bytes held now.
    #[cfg(test)]
    pub fn usage(&self) -> (usize, usize) {
        let e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        (e.map.len(), e.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::fetch_items::{Section, SectionText};
    use crate::imap::fuzz::{run, run_params, Mutator, ITERATIONS};

    #[test]
    fn header_blocks() {
        let cases: [(&[u8], Option<usize>); 12] = [
            (b"A: b\r\n\r\nbody", Some(8)),
            (b"A: b\n\nbody", Some(6)),
            (b"A: b\r\n c\r\n\td\r\nE:f\r\n\r\n", Some(21)),
            (b"A: b\r\n\r\n", Some(8)),
            // No empty line, an empty first line, a continuation first, a line that is no
            // field, an empty or unprintable field name: not well-formed.
            (b"A: b\r\nC: d\r\n", None),
            (b"\r\nbody", None),
            (b" A: b\r\n\r\n", None),
            (b"A: b\r\nnot a field\r\n\r\n", None),
            (b":b\r\n\r\n", None),
            (b"A b: c\r\n\r\n", None),
            (b"A\xc3\xa4: c\r\n\r\n", None),
            (b"", None),
        ];
        for (raw, want) in cases {
            assert_eq!(
                header_block(raw),
                want,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn the_cache_is_bounded_and_keyed_by_user() {
        let key = |user: &str, file: &str| HeaderKey {
            user: user.into(),
            file: file.into(),
            crc: 1,
            size: 10,
        };
        let block: Arc<[u8]> = Arc::from(&b"A: b\r\n\r\n"[..]);
        let one = HeaderCache::cost(&key("u", "f0"), &block);
        let c = HeaderCache::new(one * 3);
        for i in 0..5 {
            c.insert(key("u", &format!("f{i}")), block.clone());
        }
        assert_eq!(c.usage(), (3, one * 3));
        assert!(c.get(&key("u", "f0")).is_none(), "the oldest went first");
        assert!(c.get(&key("u", "f4")).is_some());
        assert!(c.get(&key("v", "f4")).is_none(), "another user's entry");
        let off = HeaderCache::new(0);
        off.insert(key("u", "f"), block.clone());
        assert_eq!(off.usage(), (0, 0));
        let big: Arc<[u8]> = vec![b'x'; MAX_ENTRY + 1].into();
        c.insert(key("u", "big"), big);
        assert!(c.get(&key("u", "big")).is_none());
    }

    /// FETCH of header items renders the same from the header block alone as from the whole
    /// message (the header-only read and the cache rely on it), for mutated messages; and a
    /// header block is its own header block.
    #[test]
    fn header_items_render_the_same_from_the_block_alone() {
        use crate::imap::fetch::{render, Shape};
        use crate::imap::fetch_items::{BodyLabel, FetchAtt};
        use crate::store::{Flags, MessageMeta};
        let corpus: Vec<Vec<u8>> = [
            &b"From: Alice <alice@example.org>\r\nTo: bob@example.org, \"C\" <c@x.org>\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nDate: Tue, 1 Feb 1994 10:00:00 +0000\r\n\
Message-ID: <m1@example.org>\r\nReceived: from a\r\n\tby b; Tue, 1 Feb 1994\r\n\r\nbody\r\n"[..],
            b"Subject: x\nFrom: a@b\n\nbody\n",
            "From: Jörg <jörg@bücher.example>\r\nSubject: Grüße\r\n\r\nx".as_bytes(),
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=X\r\nFrom: a@b\r\n\r\n--X\r\nA: b\r\n\r\nc\r\n--X--\r\n",
        ]
        .iter()
        .map(|m| m.to_vec())
        .collect();
        let tokens: &[&[u8]] = &[
            b"\r\n",
            b"\n",
            b"\r",
            b" ",
            b"\t",
            b":",
            b"From:",
            b"Subject:",
            b"To:",
            b"\r\n\r\n",
            b"\r\n ",
            b"=?utf-8?q?",
            b"?=",
            b"<",
            b">",
            b"@",
            b",",
            b"\"",
            b"\0",
            b"\xc3\xbc",
        ];
        let section = |text: SectionText| FetchAtt::Section {
            section: Section {
                part: Vec::new(),
                text: Some(text),
            },
            partial: None,
            peek: true,
            label: BodyLabel::Body,
        };
        let items = [
            FetchAtt::Uid,
            FetchAtt::Envelope,
            section(SectionText::Header),
            section(SectionText::HeaderFields {
                not: false,
                fields: vec!["FROM".into(), "SUBJECT".into(), "DATE".into()],
            }),
            section(SectionText::HeaderFields {
                not: true,
                fields: vec!["received".into()],
            }),
        ];
        assert!(items
            .iter()
            .all(|a| a.needs_only_header() || !a.needs_content()));
        let meta = MessageMeta {
            uid: 7,
            modseq: 1,
            flags: Flags::new(),
            internal_date: 0,
            size: 0,
            file: Arc::from("f"),
            crc: 0,
        };
        let (seed, iterations) = run_params(ITERATIONS / 8);
        let mut m = Mutator::new(seed ^ 0x4ead, &corpus, tokens, 4096);
        let mut checked = 0u64;
        run("header blocks", seed, iterations, &mut m, |raw| {
            let Some(len) = header_block(raw) else {
                return;
            };
            checked += 1;
            let block = &raw[..len];
            assert_eq!(header_block(block), Some(len), "not its own header block");
            for utf8 in [false, true] {
                let shape = Shape {
                    recent: false,
                    with_flags: false,
                    utf8,
                };
                let (mut whole, mut alone) = (Vec::new(), Vec::new());
                render(&mut whole, 1, &meta, &items, Some(raw), shape).unwrap();
                render(&mut alone, 1, &meta, &items, Some(block), shape).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&whole),
                    String::from_utf8_lossy(&alone)
                );
            }
        });
        assert!(
            checked > iterations / 10,
            "only {checked} well-formed headers"
        );
    }
}
