//! Store tests through the public API: delivery, flags, expunge, quota, mailbox management,
//! concurrent sessions, and crash consistency at every step boundary (fault injection).

mod api;
mod concurrency;
mod crash;
mod damage;
mod fanout;
mod fence;
mod mailboxes;
mod once;

use std::path::Path;

use super::*;

pub(super) const ALICE: &str = "alice@example.org";

pub(super) fn config() -> StoreConfig {
    StoreConfig {
        create_if_missing: true,
        ..StoreConfig::default()
    }
}

pub(super) fn open(root: &Path) -> Store {
    Store::open(root, config()).unwrap()
}

/// A small, distinct message.
pub(super) fn message(i: usize) -> Vec<u8> {
    format!(
        "From: a@example.org\r\nSubject: message {i}\r\n\r\nbody {i}\r\n{}\r\n",
        "x".repeat(i % 97)
    )
    .into_bytes()
}

/// Every file below `dir`, relative, sorted.
pub(super) fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}
