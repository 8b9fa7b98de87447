//! SEARCH and SORT on the selected mailbox: the criteria (module `search`) run over the
//! session's view, answered as `* SEARCH`, `* SORT` or `* ESEARCH` (RFC 4731; always for an
//! IMAP4rev2 SEARCH), and `RETURN (SAVE)` keeps the result as `$` (RFC 5182 SEARCHRES).
//!
//! A saved result is UIDs, so later expunges simply drop out of it; it starts empty with
//! each SELECT, and a SEARCH that fails with SAVE empties it. Security note: a SEARCH or SORT
//! that must read messages refuses mailboxes larger than `max_search_messages`, and reads
//! one message at a time.

use tokio::io::{AsyncRead, AsyncWrite};

use super::command::{ReturnOpt, SortKey};
use super::io::Io;
use super::mime;
use super::response::status_line;
use super::search::{matches, sort_value, Candidate, SearchKey, SortValue};
use super::sequence::SeqSet;
use super::session::Session;

/// One message a search matched.
struct Hit {
    seq: u32,
    uid: u32,
    modseq: u64,
    sort: Vec<SortValue>,
}

impl Session<'_> {
    /// SEARCH, and SORT when `sort` is given. Returns true for a client error to count.
    pub(crate) async fn search<S>(
        &mut self,
        io: &mut Io<S>,
        tag: &str,
        uid: bool,
        ret: Option<Vec<ReturnOpt>>,
        key: &SearchKey,
        sort: Option<&[(SortKey, bool)]>,
    ) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        if key.uses_modseq() {
            self.condstore = true;
        }
        // IMAP4rev2 answers every SEARCH with ESEARCH, ALL when nothing else is asked for.
        let ret = match ret {
            None if self.rev2 && sort.is_none() => Some(vec![ReturnOpt::All]),
            other => other,
        };
        let save = ret
            .as_ref()
            .is_some_and(|opts| opts.contains(&ReturnOpt::Save));
        let max = self.sh.cfg.max_search_messages;
        let condstore = self.condstore;
        let Some(sel) = self.selected.as_mut() else {
            return true;
        };
        let content = key.needs_content()
            || sort.is_some_and(|k| {
                k.iter()
                    .any(|(k, _)| !matches!(k, SortKey::Arrival | SortKey::Size))
            });
        if content && sel.msgs.len() > max {
            if save {
                sel.saved.clear();
            }
            status_line(
                &mut io.out,
                tag,
                "NO",
                "[LIMIT] mailbox too large to search message contents",
            );
            return false;
        }
        let max_seq = sel.msgs.len() as u32;
        let max_uid = sel.msgs.last().map_or(0, |m| m.uid);
        let mut hits: Vec<Hit> = Vec::new();
        for (i, m) in sel.msgs.iter().enumerate() {
            let bytes = if content {
                match sel.handle.fetch(m.uid).await {
                    Ok(b) => Some(b),
                    Err(_) => continue,
                }
            } else {
                None
            };
            let parsed = bytes.as_deref().and_then(mime::parse);
            let raw = bytes.as_deref().unwrap_or_default();
            let empty = mail_parser::Message::default();
            let c = Candidate {
                seq: i as u32 + 1,
                uid: m.uid,
                flags: &m.flags,
                size: m.size,
                internal_date: m.internal_date,
                modseq: m.modseq,
                recent: sel.is_recent(m.uid),
                saved: &sel.saved,
                content: bytes
                    .as_ref()
                    .map(|_| (raw, parsed.as_ref().unwrap_or(&empty))),
                max_seq,
                max_uid,
            };
            if matches(key, &c) {
                let values = sort
                    .map(|keys| {
                        keys.iter()
                            .map(|(k, _)| {
                                sort_value(*k, m.uid, m.size, m.internal_date, parsed.as_ref())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                hits.push(Hit {
                    seq: i as u32 + 1,
                    uid: m.uid,
                    modseq: m.modseq,
                    sort: values,
                });
            }
        }
        if let Some(keys) = sort {
            hits.sort_by(|a, b| {
                for (n, (_, reverse)) in keys.iter().enumerate() {
                    let o = a.sort[n].cmp(&b.sort[n]);
                    let o = if *reverse { o.reverse() } else { o };
                    if o.is_ne() {
                        return o;
                    }
                }
                a.seq.cmp(&b.seq)
            });
        }
        let nums: Vec<u32> = hits
            .iter()
            .map(|h| if uid { h.uid } else { h.seq })
            .collect();
        let modseq = key
            .uses_modseq()
            .then(|| hits.iter().map(|h| h.modseq).max())
            .flatten();
        if save {
            sel.saved = saved_result(&hits, ret.as_deref().unwrap_or_default());
        }
        let word = if sort.is_some() { "SORT" } else { "SEARCH" };
        let line = match &ret {
            None => {
                let mut line = format!("* {word}");
                for n in &nums {
                    line.push_str(&format!(" {n}"));
                }
                if let Some(m) = modseq {
                    line.push_str(&format!(" (MODSEQ {m})"));
                }
                Some(line)
            }
            Some(opts) => esearch(tag, uid, opts, &nums, modseq),
        };
        if let Some(line) = line {
            io.out.extend_from_slice(line.as_bytes());
            io.out.extend_from_slice(b"\r\n");
        }
        sel.absorb();
        sel.announce(&mut io.out, uid, condstore);
        status_line(&mut io.out, tag, "OK", &format!("{word} completed"));
        false
    }
}

/// What `RETURN (SAVE …)` keeps (RFC 5182 §2.4): only the lowest and highest match when MIN
/// or MAX come without ALL or COUNT, else every match. UIDs, ascending.
fn saved_result(hits: &[Hit], opts: &[ReturnOpt]) -> Vec<u32> {
    let mut uids: Vec<u32> = hits.iter().map(|h| h.uid).collect();
    uids.sort_unstable();
    let has = |o| opts.contains(&o);
    if has(ReturnOpt::All) || has(ReturnOpt::Count) || !(has(ReturnOpt::Min) || has(ReturnOpt::Max))
    {
        return uids;
    }
    let mut kept = Vec::new();
    if let (true, Some(&first)) = (has(ReturnOpt::Min), uids.first()) {
        kept.push(first);
    }
    if let (true, Some(&last)) = (has(ReturnOpt::Max), uids.last()) {
        if kept.last() != Some(&last) {
            kept.push(last);
        }
    }
    kept
}

/// The `* ESEARCH` line; `None` when SAVE is the only option (RFC 5182 §2.1).
fn esearch(
    tag: &str,
    uid: bool,
    opts: &[ReturnOpt],
    nums: &[u32],
    modseq: Option<u64>,
) -> Option<String> {
    if !opts.is_empty() && opts.iter().all(|o| *o == ReturnOpt::Save) {
        return None;
    }
    let mut line = format!("* ESEARCH (TAG \"{tag}\"){}", if uid { " UID" } else { "" });
    let (min, max) = (nums.iter().min(), nums.iter().max());
    for o in opts {
        match o {
            ReturnOpt::Min => {
                if let Some(v) = min {
                    line.push_str(&format!(" MIN {v}"))
                }
            }
            ReturnOpt::Max => {
                if let Some(v) = max {
                    line.push_str(&format!(" MAX {v}"))
                }
            }
            ReturnOpt::Count => line.push_str(&format!(" COUNT {}", nums.len())),
            ReturnOpt::All => {
                if !nums.is_empty() {
                    let mut sorted = nums.to_vec();
                    sorted.sort_unstable();
                    line.push_str(&format!(" ALL {}", SeqSet::from_sorted(&sorted)));
                }
            }
            ReturnOpt::Save => {}
        }
    }
    if let Some(m) = modseq {
        line.push_str(&format!(" MODSEQ {m}"));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(uids: &[u32]) -> Vec<Hit> {
        uids.iter()
            .enumerate()
            .map(|(i, &uid)| Hit {
                seq: i as u32 + 1,
                uid,
                modseq: 1,
                sort: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn saved_results() {
        use ReturnOpt::*;
        let h = hits(&[9, 3, 5]);
        assert_eq!(saved_result(&h, &[Save]), [3, 5, 9]);
        assert_eq!(saved_result(&h, &[Save, Min]), [3]);
        assert_eq!(saved_result(&h, &[Max, Save]), [9]);
        assert_eq!(saved_result(&h, &[Save, Min, Max]), [3, 9]);
        assert_eq!(saved_result(&h, &[Save, Min, Count]), [3, 5, 9]);
        assert_eq!(saved_result(&hits(&[4]), &[Save, Min, Max]), [4]);
        assert!(saved_result(&[], &[Save, Min]).is_empty());
    }

    #[test]
    fn esearch_lines() {
        use ReturnOpt::*;
        assert_eq!(esearch("a", true, &[Save], &[1, 2], None), None);
        assert_eq!(
            esearch("a", false, &[All], &[3, 1, 2, 7], Some(4)).unwrap(),
            "* ESEARCH (TAG \"a\") ALL 1:3,7 MODSEQ 4"
        );
        assert_eq!(
            esearch("b", true, &[Min, Max, Count, Save], &[], None).unwrap(),
            "* ESEARCH (TAG \"b\") UID COUNT 0"
        );
        assert_eq!(
            esearch("c", false, &[All], &[], None).unwrap(),
            "* ESEARCH (TAG \"c\")"
        );
    }
}
