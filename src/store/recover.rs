//! Reading a mailbox back from disk after any stop, clean or not: replay the index, compare it
//! with the message files, and repair what a crash can leave behind.
//!
//! [`scan`] only reads; it serves both loading and `check` (which reports without fixing).
//! [`load`] applies the fixes: cut a torn index tail; remove files of committed expunges and a
//! stale compaction temp; index message files that were renamed into place but whose index
//! record never became durable; drop records whose file is missing; and rebuild a damaged index
//! from the files under a new UIDVALIDITY (UIDs from after the damage cannot be trusted, so
//! clients must resynchronise). Each fix is reported as a [`Finding`].
//!
//! This module never deletes a message file that might hold mail nobody expunged: only files
//! named in an expunge record go, foreign files are reported and left alone.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::check::{Finding, FindingKind};
use super::error::{at, StoreError};
use super::flags::Flags;
use super::fsio::{fsync_dir, is_message_file_name, list_dir, now_secs, remove_if_exists, Step};
use super::index::{write_index, IndexLog, INDEX_FILE, INDEX_NEW};
use super::mailbox::{append_record, full_index, Mailbox, MailboxState};
use super::record::{parse_log, Record, Tail, INDEX_VERSION};
use super::user::UsageCounters;
use super::view::MessageMeta;
use super::Shared;

/// The state of the index file.
#[derive(Debug)]
pub(crate) enum IndexState {
    Clean {
        len: u64,
    },
    /// A crash cut an append short; the valid prefix ends at `valid_len`.
    Torn {
        valid_len: u64,
    },
    /// Missing, or wrong in a way a crash cannot cause; replay stopped at the damage.
    Damaged {
        reason: String,
    },
}

/// What is on disk for one mailbox.
pub(crate) struct Scan {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    pub live: BTreeMap<u32, MessageMeta>,
    pub records: u64,
    pub index: IndexState,
    /// Message files no record mentions, in name (= arrival) order.
    pub unindexed: Vec<String>,
    /// Files of expunged messages still present.
    pub expunged_leftovers: Vec<String>,
    /// Live UIDs whose file is missing.
    pub missing: Vec<u32>,
    /// Files in `msg/` the store did not create.
    pub foreign: Vec<String>,
    pub index_new_leftover: bool,
}

/// Reads a mailbox directory without changing anything.
pub(crate) fn scan(dir: &Path) -> Result<Scan, StoreError> {
    let index_path = dir.join(INDEX_FILE);
    let mut s = Scan {
        uidvalidity: 0,
        uidnext: 1,
        highestmodseq: 1,
        live: BTreeMap::new(),
        records: 0,
        index: IndexState::Clean { len: 0 },
        unindexed: Vec::new(),
        expunged_leftovers: Vec::new(),
        missing: Vec::new(),
        foreign: Vec::new(),
        index_new_leftover: dir.join(INDEX_NEW).exists(),
    };
    let mut expunged: HashSet<Arc<str>> = HashSet::new();
    match fs::read(&index_path) {
        Ok(bytes) => {
            let parsed = parse_log(&bytes);
            s.index = match parsed.tail {
                Tail::Clean => IndexState::Clean {
                    len: parsed.valid_len,
                },
                Tail::Torn { .. } => IndexState::Torn {
                    valid_len: parsed.valid_len,
                },
                Tail::Corrupt { offset, reason } => IndexState::Damaged {
                    reason: format!("bad record at byte {offset}: {reason}"),
                },
            };
            if let Err(reason) = replay(&mut s, &parsed.records, &mut expunged) {
                if reason.starts_with("index format") {
                    return Err(StoreError::Corrupt {
                        path: index_path,
                        reason,
                    });
                }
                s.index = IndexState::Damaged { reason };
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            s.index = IndexState::Damaged {
                reason: "index file missing".into(),
            };
        }
        Err(e) => return Err(at(&index_path)(e)),
    }
    let live_files: HashSet<&str> = s.live.values().map(|m| &*m.file).collect();
    let mut present = HashSet::new();
    for name in list_dir(&dir.join("msg"))? {
        if live_files.contains(name.as_str()) {
            present.insert(name);
        } else if expunged.contains(name.as_str()) {
            s.expunged_leftovers.push(name);
        } else if is_message_file_name(&name) {
            s.unindexed.push(name);
        } else {
            s.foreign.push(name);
        }
    }
    s.missing = s
        .live
        .values()
        .filter(|m| !present.contains(&*m.file))
        .map(|m| m.uid)
        .collect();
    Ok(s)
}

/// Applies records in order. Stops at the first record that contradicts the ones before it.
fn replay(
    s: &mut Scan,
    records: &[Record],
    expunged: &mut HashSet<Arc<str>>,
) -> Result<(), String> {
    let mut it = records.iter();
    match it.next() {
        Some(Record::Header {
            version,
            uidvalidity,
            uidnext,
            highestmodseq,
        }) => {
            if *version != INDEX_VERSION {
                return Err(format!(
                    "index format {version}, this build reads {INDEX_VERSION}"
                ));
            }
            if *uidvalidity == 0 || *uidnext == 0 {
                return Err("header with zero UIDVALIDITY or UIDNEXT".into());
            }
            s.uidvalidity = *uidvalidity;
            s.uidnext = *uidnext;
            s.highestmodseq = *highestmodseq;
        }
        _ => return Err("index does not start with a header".into()),
    }
    s.records = 1;
    // A compacted index lists live messages below the header's UIDNEXT; later appends are
    // above it. Either way appends ascend.
    let mut last_uid = 0;
    for rec in it {
        match rec {
            Record::Header { .. } => return Err("second header".into()),
            Record::Append(a) => {
                if a.uid <= last_uid || a.uid == u32::MAX || !is_message_file_name(&a.file) {
                    return Err(format!(
                        "append record for UID {} out of order or bad file name",
                        a.uid
                    ));
                }
                last_uid = a.uid;
                s.uidnext = s.uidnext.max(a.uid + 1);
                s.highestmodseq = s.highestmodseq.max(a.modseq);
                s.live.insert(
                    a.uid,
                    MessageMeta {
                        uid: a.uid,
                        modseq: a.modseq,
                        flags: a.flags.clone(),
                        internal_date: a.internal_date,
                        size: a.size,
                        file: a.file.as_str().into(),
                        crc: a.crc,
                    },
                );
            }
            Record::Flags { modseq, changes } => {
                s.highestmodseq = s.highestmodseq.max(*modseq);
                for (uid, flags) in changes {
                    if let Some(m) = s.live.get_mut(uid) {
                        m.flags = flags.clone();
                        m.modseq = *modseq;
                    }
                }
            }
            Record::Expunge { modseq, uids } => {
                s.highestmodseq = s.highestmodseq.max(*modseq);
                for uid in uids {
                    if let Some(m) = s.live.remove(uid) {
                        expunged.insert(m.file);
                    }
                }
            }
        }
        s.records += 1;
    }
    Ok(())
}

/// What [`scan`] found, as findings (not yet fixed).
pub(crate) fn findings(s: &Scan) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |kind, detail: String| out.push(Finding::new(kind, detail));
    match &s.index {
        IndexState::Clean { .. } => {}
        IndexState::Torn { valid_len } => add(
            FindingKind::TornIndexTail,
            format!("index ends in an incomplete record after byte {valid_len}"),
        ),
        IndexState::Damaged { reason } => add(FindingKind::DamagedIndex, reason.clone()),
    }
    if s.index_new_leftover {
        add(FindingKind::CompactionLeftover, INDEX_NEW.into());
    }
    for f in &s.unindexed {
        add(FindingKind::UnindexedMessage, f.clone());
    }
    for f in &s.expunged_leftovers {
        add(FindingKind::ExpungedLeftover, f.clone());
    }
    for uid in &s.missing {
        add(FindingKind::MissingMessage, format!("UID {uid}"));
    }
    for f in &s.foreign {
        add(FindingKind::ForeignFile, f.clone());
    }
    out
}

/// Reads a message file back: its size, CRC-32 and modification time.
pub(crate) fn read_message_file(path: &Path) -> Result<(u64, u32, i64), StoreError> {
    let mut f = fs::File::open(path).map_err(at(path))?;
    let mtime = f
        .metadata()
        .and_then(|m| m.modified())
        .map(|t| match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        })
        .unwrap_or_else(|_| now_secs());
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(at(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, h.finalize(), mtime))
}

/// Loads a mailbox, repairing it. `new_uidvalidity` is called only if the index must be
/// rebuilt. Returns the mailbox and what was fixed.
pub(crate) fn load(
    sh: &Shared,
    id: u64,
    dir: &Path,
    usage: Arc<UsageCounters>,
    new_uidvalidity: &mut dyn FnMut() -> u32,
) -> Result<(Mailbox, Vec<Finding>), StoreError> {
    let mut s = scan(dir)?;
    sh.faults.at(Step::LoadScanned, dir)?;
    let mut found = findings(&s);
    let msg_dir = dir.join("msg");
    if s.index_new_leftover {
        remove_if_exists(&dir.join(INDEX_NEW))?;
    }
    for f in &s.expunged_leftovers {
        remove_if_exists(&msg_dir.join(f))?;
    }
    for uid in &s.missing {
        s.live.remove(uid);
    }
    let first_uid = s.uidnext;
    if s.uidnext as u64 + s.unindexed.len() as u64 >= u32::MAX as u64 {
        return Err(StoreError::UidsExhausted(format!(
            "mailbox directory {}",
            dir.display()
        )));
    }
    let recovered_modseq = s.highestmodseq + 1;
    let mut recovered = Vec::with_capacity(s.unindexed.len());
    for (i, f) in s.unindexed.iter().enumerate() {
        let (size, crc, mtime) = read_message_file(&msg_dir.join(f))?;
        recovered.push(MessageMeta {
            uid: first_uid + i as u32,
            modseq: recovered_modseq,
            flags: Flags::new(),
            internal_date: mtime,
            size,
            file: f.as_str().into(),
            crc,
        });
    }
    let changed = !recovered.is_empty() || !s.missing.is_empty();
    if changed {
        s.uidnext = first_uid + recovered.len() as u32;
        s.highestmodseq = recovered_modseq;
    }
    let mut messages: Vec<MessageMeta> = s.live.into_values().collect();
    let extra: Vec<Record> = {
        let mut recs = Vec::new();
        if !s.missing.is_empty() {
            recs.push(Record::Expunge {
                modseq: recovered_modseq,
                uids: s.missing.clone(),
            });
        }
        recs.extend(recovered.iter().map(|m| Record::Append(append_record(m))));
        recs
    };
    messages.extend(recovered);
    let index_path = dir.join(INDEX_FILE);
    let valid_len = match s.index {
        IndexState::Clean { len } => Some(len),
        IndexState::Torn { valid_len } => Some(valid_len),
        IndexState::Damaged { .. } => None,
    };
    let log = match valid_len {
        Some(len) => {
            let mut log = IndexLog::open(&index_path, len, s.records)?;
            if !extra.is_empty() {
                log.append(&extra, &sh.faults, Some(&msg_dir))
                    .map_err(|f| f.error)?;
            }
            log
        }
        None => {
            if index_path.exists() {
                let aside = dir.join(format!("{INDEX_FILE}.damaged-{}", now_secs()));
                fs::rename(&index_path, &aside).map_err(at(&aside))?;
            }
            s.uidvalidity = new_uidvalidity();
            s.highestmodseq += 1;
            let recs = full_index(s.uidvalidity, s.uidnext, s.highestmodseq, &messages);
            write_index(dir, &recs, &sh.faults)?
        }
    };
    if !s.expunged_leftovers.is_empty() {
        fsync_dir(&msg_dir)?;
    }
    for f in &mut found {
        // Foreign files are reported, never touched.
        f.fixed = f.kind != FindingKind::ForeignFile;
    }
    let bytes = messages.iter().map(|m| m.size).sum();
    let state = MailboxState {
        uidvalidity: s.uidvalidity,
        uidnext: s.uidnext,
        highestmodseq: s.highestmodseq,
        messages: Arc::new(messages),
        bytes,
        deleted: false,
        broken: None,
        unlinking: HashSet::new(),
    };
    let mb = Mailbox::new(
        id,
        dir.to_path_buf(),
        log,
        state,
        usage,
        sh.config.event_capacity,
    );
    Ok((mb, found))
}
