//! FETCH: which messages, setting `\Seen` for non-PEEK body items, and rendering each
//! message's items (module `mime` does the MIME parts, module `binary` BINARY's decoding; a
//! part it cannot decode fails the FETCH with `NO [UNKNOWN-CTE]`, RFC 3516).
//!
//! Each message is read, rendered and its response queued before the next one is read, and
//! the response buffer is flushed whenever it passes its bound, so `FETCH 1:* BODY[]` holds
//! one message at a time, never the mailbox. A message expunged meanwhile by another session
//! is skipped. A FETCH of header items only (ENVELOPE, `BODY[HEADER]`, `BODY[HEADER.FIELDS …]`:
//! a client listing a mailbox) reads only each message's header, or finds it in the shared
//! cache of module `headers`; those items are computed from the header block whenever it is
//! well-formed, so they do not depend on how much of the message was read.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::store::{FlagOp, Flags, MailboxHandle, MessageMeta, StoreError, SystemFlag};

use super::binary::{self, BinaryError};
use super::date::format_internal;
use super::fetch_items::{BodyLabel, FetchAtt, SectionText};
use super::headers::{self, HeaderCache, HeaderKey};
use super::io::Io;
use super::mime;
use super::response::{flags as write_flags, literal, literal8, status_line, store_error};
use super::sequence::SeqSet;
use super::session::Session;

impl Session<'_> {
    pub async fn fetch<S>(
        &mut self,
        io: &mut Io<S>,
        tag: &str,
        uid: bool,
        set: &SeqSet,
        mut items: Vec<FetchAtt>,
        changed_since: Option<u64>,
    ) -> io::Result<bool>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        if changed_since.is_some() {
            self.condstore = true;
        }
        let utf8 = self.utf8_names();
        let Some(sel) = self.selected.as_mut() else {
            return Ok(true);
        };
        let idx = match sel.resolve(set, uid) {
            Ok(i) => i,
            Err(e) => {
                status_line(&mut io.out, tag, "BAD", &e);
                return Ok(true);
            }
        };
        if uid && !items.contains(&FetchAtt::Uid) {
            items.insert(0, FetchAtt::Uid);
        }
        if changed_since.is_some() && !items.contains(&FetchAtt::Modseq) {
            items.push(FetchAtt::Modseq);
        }
        let idx: Vec<usize> = idx
            .into_iter()
            .filter(|&i| changed_since.is_none_or(|c| sel.msgs[i].modseq > c))
            .collect();
        // Non-PEEK body items set \Seen first, so the FLAGS we send are the new ones.
        let mut seen_changed = std::collections::HashSet::new();
        if items.iter().any(FetchAtt::sets_seen) && !sel.read_only {
            let unseen: Vec<u32> = idx
                .iter()
                .map(|&i| &sel.msgs[i])
                .filter(|m| !m.flags.contains(SystemFlag::Seen) && !sel.is_expunged(m.uid))
                .map(|m| m.uid)
                .collect();
            if !unseen.is_empty() {
                let seen = Flags::new().with(SystemFlag::Seen);
                match sel
                    .handle
                    .store_flags(&unseen, FlagOp::Add, &seen, None)
                    .await
                {
                    Ok(outcome) => {
                        for u in outcome.updated {
                            seen_changed.insert(u.uid);
                            sel.set_flags(u.uid, u.flags, u.modseq);
                        }
                    }
                    Err(e) => {
                        let (kind, text) = store_error(&e);
                        status_line(&mut io.out, tag, kind, &text);
                        return Ok(false);
                    }
                }
            }
        }
        let needs_content = items.iter().any(FetchAtt::needs_content);
        // ENVELOPE and header sections only (what clients fetch to list a mailbox): the
        // header is read, or taken from the cache, instead of the whole message.
        let header_only = items
            .iter()
            .all(|a| !a.needs_content() || a.needs_only_header());
        // A whole message fetched last (BODY[], RFC822: what mbsync and imaplib ask for) is
        // streamed from its file when large, so it is never held in memory.
        let (streamable, head) = match items.split_last() {
            Some((
                FetchAtt::Section {
                    section,
                    partial: None,
                    label,
                    ..
                },
                head,
            )) if section.part.is_empty()
                && section.text.is_none()
                && !head.iter().any(FetchAtt::needs_content) =>
            {
                (Some(section_label(&section.spec(), *label)), head)
            }
            _ => (None, &items[..]),
        };
        let mut vanished = false;
        for i in idx {
            let meta = sel.msgs[i].clone();
            let recent = sel.is_recent(meta.uid);
            let shape = Shape {
                recent,
                with_flags: seen_changed.contains(&meta.uid) && !items.contains(&FetchAtt::Flags),
                utf8,
            };
            if let Some(label) = streamable
                .as_deref()
                .filter(|_| meta.size > self.sh.cfg.max_output_buffer as u64)
            {
                let file = match sel.handle.open_message(meta.uid).await {
                    Ok(f) => f,
                    Err(StoreError::NoSuchMessage(_)) => {
                        vanished = true;
                        continue;
                    }
                    Err(e) => {
                        let (kind, text) = store_error(&e);
                        status_line(&mut io.out, tag, kind, &text);
                        return Ok(false);
                    }
                };
                let len = file.metadata().await?.len();
                // The items before it need no content, so they cannot fail.
                let any = render_open(&mut io.out, i + 1, &meta, head, None, shape).unwrap_or(true);
                io.out.extend_from_slice(
                    format!("{}{label} {{{len}}}\r\n", if any { " " } else { "" }).as_bytes(),
                );
                io.flush().await?;
                let sent = tokio::io::copy(&mut file.take(len), &mut io.conn).await?;
                if sent != len {
                    // The literal's length is already on the wire: the session cannot go on.
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "message file shrank",
                    ));
                }
                io.out.extend_from_slice(b")\r\n");
                continue;
            }
            let content = if needs_content {
                let read = if header_only {
                    read_header(&self.sh.headers, &sel.handle, &meta).await
                } else {
                    sel.handle.fetch(meta.uid).await.map(Content::Owned)
                };
                match read {
                    Ok(c) => Some(c),
                    Err(StoreError::NoSuchMessage(_)) => {
                        vanished = true;
                        continue;
                    }
                    Err(e) => {
                        let (kind, text) = store_error(&e);
                        status_line(&mut io.out, tag, kind, &text);
                        return Ok(false);
                    }
                }
            } else {
                None
            };
            let bytes = content.as_ref().map(Content::bytes);
            let rendered = render(&mut io.out, i + 1, &meta, &items, bytes, shape);
            if let Err(e) = rendered {
                status_line(&mut io.out, tag, "NO", &e.to_string());
                return Ok(false);
            }
            io.flush_if_full().await?;
        }
        sel.absorb();
        sel.announce(&mut io.out, uid, self.condstore);
        if vanished && !uid {
            status_line(
                &mut io.out,
                tag,
                "NO",
                "[EXPUNGEISSUED] some messages were expunged",
            );
        } else {
            status_line(&mut io.out, tag, "OK", "FETCH completed");
        }
        Ok(false)
    }
}

/// How one message's FETCH response is written, besides its items.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The message is `\Recent` in this session.
    pub recent: bool,
    /// Add FLAGS (a non-PEEK body item set `\Seen` and FLAGS was not asked for).
    pub with_flags: bool,
    /// The session takes UTF-8 in ENVELOPE and BODYSTRUCTURE strings (UTF8=ACCEPT, IMAP4rev2).
    pub utf8: bool,
}

/// `* seq FETCH (…)` for one message; nothing when a BINARY item cannot be decoded.
pub fn render(
    out: &mut Vec<u8>,
    seq: usize,
    meta: &MessageMeta,
    items: &[FetchAtt],
    content: Option<&[u8]>,
    shape: Shape,
) -> Result<(), BinaryError> {
    let start = out.len();
    if let Err(e) = render_open(out, seq, meta, items, content, shape) {
        out.truncate(start);
        return Err(e);
    }
    out.extend_from_slice(b")\r\n");
    Ok(())
}

/// How a body section is named in a response.
fn section_label(spec: &str, label: BodyLabel) -> String {
    match label {
        BodyLabel::Body => format!("BODY[{spec}]"),
        BodyLabel::Rfc822 => "RFC822".into(),
        BodyLabel::Rfc822Header => "RFC822.HEADER".into(),
        BodyLabel::Rfc822Text => "RFC822.TEXT".into(),
    }
}

/// `* seq FETCH (` and the items, without the closing parenthesis. Returns whether it wrote
/// any item; on an error `out` holds a partial response the caller drops.
fn render_open(
    out: &mut Vec<u8>,
    seq: usize,
    meta: &MessageMeta,
    items: &[FetchAtt],
    content: Option<&[u8]>,
    shape: Shape,
) -> Result<bool, BinaryError> {
    let Shape {
        recent,
        with_flags,
        utf8,
    } = shape;
    let raw = content.unwrap_or_default();
    // ENVELOPE and the root header sections come from the header alone when it is
    // well-formed, whether `raw` is the whole message or only its header (the header-only
    // read), so both give the same answer.
    let head = items
        .iter()
        .any(FetchAtt::needs_only_header)
        .then(|| headers::header_block(raw))
        .flatten()
        .map(|n| &raw[..n]);
    let needs_parse = items.iter().any(|a| match a {
        FetchAtt::BodyStructure | FetchAtt::BodyBasic => true,
        FetchAtt::Envelope => head.is_none(),
        FetchAtt::Section { section, .. } if section.part.is_empty() => match section.text {
            None => false,
            Some(SectionText::Header | SectionText::HeaderFields { .. }) => head.is_none(),
            Some(_) => true,
        },
        FetchAtt::Section { .. } => true,
        FetchAtt::Binary { part, .. } | FetchAtt::BinarySize { part } => !part.is_empty(),
        _ => false,
    });
    let parsed = if needs_parse { mime::parse(raw) } else { None };
    out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b' ');
        }
        first = false;
    };
    if with_flags {
        sep(out);
        out.extend_from_slice(b"FLAGS ");
        write_flags(out, &meta.flags, recent);
    }
    for item in items {
        sep(out);
        match item {
            FetchAtt::Flags => {
                out.extend_from_slice(b"FLAGS ");
                write_flags(out, &meta.flags, recent);
            }
            FetchAtt::Uid => out.extend_from_slice(format!("UID {}", meta.uid).as_bytes()),
            FetchAtt::InternalDate => out.extend_from_slice(
                format!("INTERNALDATE \"{}\"", format_internal(meta.internal_date)).as_bytes(),
            ),
            FetchAtt::Size => {
                out.extend_from_slice(format!("RFC822.SIZE {}", meta.size).as_bytes())
            }
            FetchAtt::Modseq => {
                out.extend_from_slice(format!("MODSEQ ({})", meta.modseq).as_bytes())
            }
            FetchAtt::Envelope => {
                out.extend_from_slice(b"ENVELOPE ");
                match head {
                    Some(h) => mime::envelope(out, h, mime::parse(h).as_ref(), utf8),
                    None => mime::envelope(out, raw, parsed.as_ref(), utf8),
                }
            }
            FetchAtt::BodyStructure => {
                out.extend_from_slice(b"BODYSTRUCTURE ");
                mime::body_structure(out, raw, parsed.as_ref(), true, utf8);
            }
            FetchAtt::BodyBasic => {
                out.extend_from_slice(b"BODY ");
                mime::body_structure(out, raw, parsed.as_ref(), false, utf8);
            }
            FetchAtt::Section {
                section,
                partial,
                label,
                ..
            } => {
                out.extend_from_slice(section_label(&section.spec(), *label).as_bytes());
                let root = section.part.is_empty();
                let data = if root && section.text.is_none() {
                    Some(std::borrow::Cow::Borrowed(raw))
                } else if let (true, Some(h), Some(SectionText::Header)) =
                    (root, head, &section.text)
                {
                    Some(std::borrow::Cow::Borrowed(h))
                } else if let (true, Some(h), Some(SectionText::HeaderFields { not, fields })) =
                    (root, head, &section.text)
                {
                    Some(std::borrow::Cow::Owned(mime::filter_headers(
                        h, fields, *not,
                    )))
                } else if parsed.is_none()
                    && matches!(section.text, Some(SectionText::HeaderFields { .. }))
                {
                    Some(std::borrow::Cow::Borrowed(&b"\r\n"[..]))
                } else {
                    mime::section(raw, parsed.as_ref(), section)
                };
                let data = data.unwrap_or_default();
                partial_literal(out, &data, *partial, literal);
            }
            FetchAtt::Binary { part, partial, .. } => {
                out.extend_from_slice(format!("BINARY[{}]", dotted(part)).as_bytes());
                let data = binary::section(raw, parsed.as_ref(), part)?.unwrap_or_default();
                partial_literal(out, &data, *partial, literal8);
            }
            FetchAtt::BinarySize { part } => {
                let data = binary::section(raw, parsed.as_ref(), part)?.unwrap_or_default();
                out.extend_from_slice(
                    format!("BINARY.SIZE[{}] {}", dotted(part), data.len()).as_bytes(),
                );
            }
        }
    }
    Ok(!first)
}

/// ` {n}…` or, for a partial fetch, `<origin> {n}…` of the range (empty past the end).
fn partial_literal(
    out: &mut Vec<u8>,
    data: &[u8],
    partial: Option<(u64, u64)>,
    write: fn(&mut Vec<u8>, &[u8]),
) {
    match partial {
        Some((origin, count)) => {
            out.extend_from_slice(format!("<{origin}> ").as_bytes());
            let clamp = |n: u64| usize::try_from(n).unwrap_or(usize::MAX).min(data.len());
            let start = clamp(origin);
            let end = clamp(origin.saturating_add(count));
            write(out, data.get(start..end).unwrap_or_default());
        }
        None => {
            out.push(b' ');
            write(out, data);
        }
    }
}

/// `1.2.3`.
fn dotted(part: &[u32]) -> String {
    part.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// Octets read from the start of a message file to find its header; a longer header (rare)
/// means reading the whole message.
const HEADER_PREFIX: usize = 16 * 1024;

/// A message's bytes as FETCH renders them: all of it, or only its header block.
enum Content {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl Content {
    fn bytes(&self) -> &[u8] {
        match self {
            Content::Owned(v) => v,
            Content::Shared(a) => a,
        }
    }
}

/// The header block of a message for header-only items: from the cache, else from the start
/// of its file (then cached). The whole message when its header is not well-formed or does
/// not end within [`HEADER_PREFIX`] octets.
async fn read_header(
    cache: &HeaderCache,
    handle: &MailboxHandle,
    meta: &MessageMeta,
) -> Result<Content, StoreError> {
    let key = HeaderKey {
        user: handle.user().to_string(),
        file: Arc::clone(&meta.file),
        crc: meta.crc,
        size: meta.size,
    };
    if let Some(block) = cache.get(&key) {
        return Ok(Content::Shared(block));
    }
    let path = handle.message_path(meta.uid)?;
    let uid = meta.uid;
    let read = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let read = || -> std::io::Result<(Vec<u8>, bool)> {
            let mut f = std::fs::File::open(&path)?;
            let mut buf = Vec::with_capacity(HEADER_PREFIX);
            (&mut f).take(HEADER_PREFIX as u64).read_to_end(&mut buf)?;
            if let Some(n) = headers::header_block(&buf) {
                buf.truncate(n);
                return Ok((buf, true));
            }
            f.read_to_end(&mut buf)?;
            Ok((buf, false))
        };
        read().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::NoSuchMessage(uid)
            } else {
                StoreError::Io { path, source: e }
            }
        })
    })
    .await
    .map_err(|e| StoreError::Internal(e.to_string()))??;
    Ok(match read {
        (block, true) => {
            let block: Arc<[u8]> = block.into();
            cache.insert(key, Arc::clone(&block));
            Content::Shared(block)
        }
        (whole, false) => Content::Owned(whole),
    })
}
