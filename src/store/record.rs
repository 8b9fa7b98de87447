//! The mailbox index log's on-disk records: encoding, decoding and splitting a log into records.
//!
//! An index file is a sequence of frames `len: u32 LE | crc: u32 LE | body[len]`, where the CRC-32
//! covers the length bytes and the body, and a body is a kind byte and its fields (little-endian
//! integers, `u16`-length-prefixed UTF-8 strings). The first record is always a header. Records
//! are only ever appended; compaction writes a whole new file. This module is sans-I/O: bytes in,
//! records or a typed result out, so it is table-tested and fuzzable.
//!
//! Torn tails: a crash during an append can leave a partial or garbage frame at the end of the
//! file. [`parse_log`] stops at the first frame that fails and classifies the rest: if no valid
//! frame follows anywhere, it is a torn tail (the unacknowledged write in flight at the crash,
//! safe to cut off); if a valid frame follows, the file is corrupt in the middle and the caller
//! must not silently truncate it.
//!
//! Security note: record lengths and counts come from disk and are bounded before anything is
//! allocated, so a damaged file cannot make the store allocate without limit or panic.

use std::collections::BTreeSet;

use super::flags::{Flags, SYSTEM_MASK};

/// The index format this build writes (in the header record).
pub(crate) const INDEX_VERSION: u16 = 1;
/// Largest body accepted when reading; larger lengths are corruption.
pub(crate) const MAX_RECORD: usize = 256 << 20;
const FRAME_HEADER: usize = 8;

const KIND_HEADER: u8 = 1;
const KIND_APPEND: u8 = 2;
const KIND_FLAGS: u8 = 3;
const KIND_EXPUNGE: u8 = 4;

/// One message added to the mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppendRecord {
    pub uid: u32,
    pub modseq: u64,
    /// Seconds since the Unix epoch (IMAP INTERNALDATE).
    pub internal_date: i64,
    pub size: u64,
    /// CRC-32 of the message bytes, so `check` can prove a file intact.
    pub crc: u32,
    pub flags: Flags,
    /// The file name under the mailbox's `msg/` directory.
    pub file: String,
}

/// An index log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// First record of every index file. After a compaction `uidnext` and `highestmodseq`
    /// carry what the dropped records established.
    Header {
        version: u16,
        uidvalidity: u32,
        uidnext: u32,
        highestmodseq: u64,
    },
    Append(AppendRecord),
    /// The new flags of each listed message, all at `modseq`. Final values, not deltas, so
    /// replay is idempotent.
    Flags {
        modseq: u64,
        changes: Vec<(u32, Flags)>,
    },
    /// Messages removed at `modseq`.
    Expunge {
        modseq: u64,
        uids: Vec<u32>,
    },
}

/// Appends the framed encoding of `rec` to `out`.
pub(crate) fn encode(rec: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    match rec {
        Record::Header {
            version,
            uidvalidity,
            uidnext,
            highestmodseq,
        } => {
            out.push(KIND_HEADER);
            out.extend_from_slice(&version.to_le_bytes());
            out.extend_from_slice(&uidvalidity.to_le_bytes());
            out.extend_from_slice(&uidnext.to_le_bytes());
            out.extend_from_slice(&highestmodseq.to_le_bytes());
        }
        Record::Append(a) => {
            out.push(KIND_APPEND);
            out.extend_from_slice(&a.uid.to_le_bytes());
            out.extend_from_slice(&a.modseq.to_le_bytes());
            out.extend_from_slice(&a.internal_date.to_le_bytes());
            out.extend_from_slice(&a.size.to_le_bytes());
            out.extend_from_slice(&a.crc.to_le_bytes());
            put_flags(out, &a.flags);
            put_str(out, &a.file);
        }
        Record::Flags { modseq, changes } => {
            out.push(KIND_FLAGS);
            out.extend_from_slice(&modseq.to_le_bytes());
            out.extend_from_slice(&(changes.len() as u32).to_le_bytes());
            for (uid, flags) in changes {
                out.extend_from_slice(&uid.to_le_bytes());
                put_flags(out, flags);
            }
        }
        Record::Expunge { modseq, uids } => {
            out.push(KIND_EXPUNGE);
            out.extend_from_slice(&modseq.to_le_bytes());
            out.extend_from_slice(&(uids.len() as u32).to_le_bytes());
            for uid in uids {
                out.extend_from_slice(&uid.to_le_bytes());
            }
        }
    }
    let len = (out.len() - start - FRAME_HEADER) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let crc = frame_crc(&out[start..start + 4], &out[start + FRAME_HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn frame_crc(len: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(body);
    h.finalize()
}

// Keyword and file-name lengths are bounded far below u16::MAX by validation
// (`StoreConfig::max_keyword_len`, generated file names); truncating here would only ever hit
// a bug, and the decoder would then report corruption rather than mis-read.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = s.len().min(u16::MAX as usize);
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..len]);
}

fn put_flags(out: &mut Vec<u8>, flags: &Flags) {
    out.push(flags.system_bits());
    let kws: Vec<&str> = flags.keywords().collect();
    out.extend_from_slice(&(kws.len().min(u16::MAX as usize) as u16).to_le_bytes());
    for k in kws.iter().take(u16::MAX as usize) {
        put_str(out, k);
    }
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    Short,
    BadLength(u32),
    Checksum,
    Body(&'static str),
}

/// Decodes the frame at the start of `bytes`: the record and the frame's total length.
pub(crate) fn decode_frame(bytes: &[u8]) -> Result<(Record, usize), FrameError> {
    if bytes.len() < FRAME_HEADER {
        return Err(FrameError::Short);
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    if len == 0 || len as usize > MAX_RECORD {
        return Err(FrameError::BadLength(len));
    }
    let total = FRAME_HEADER + len as usize;
    if bytes.len() < total {
        return Err(FrameError::Short);
    }
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let body = &bytes[FRAME_HEADER..total];
    if frame_crc(&bytes[0..4], body) != crc {
        return Err(FrameError::Checksum);
    }
    let rec = decode_body(body).map_err(FrameError::Body)?;
    Ok((rec, total))
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.b.len() < n {
            return Err("record body truncated");
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn str(&mut self) -> Result<String, &'static str> {
        let len = self.u16()? as usize;
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| "string is not UTF-8")
    }
    fn flags(&mut self) -> Result<Flags, &'static str> {
        let system = self.u8()?;
        if system & !SYSTEM_MASK != 0 {
            return Err("unknown system flag bits");
        }
        let n = self.u16()?;
        let mut keywords = BTreeSet::new();
        for _ in 0..n {
            keywords.insert(self.str()?);
        }
        Ok(Flags::from_parts(system, keywords))
    }
    /// A count of items of at least `min_size` bytes each, bounded by what is left.
    fn count(&mut self, min_size: usize) -> Result<usize, &'static str> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size) > self.b.len() {
            return Err("item count exceeds the record");
        }
        Ok(n)
    }
}

fn decode_body(body: &[u8]) -> Result<Record, &'static str> {
    let mut r = Reader { b: body };
    let rec = match r.u8()? {
        KIND_HEADER => Record::Header {
            version: r.u16()?,
            uidvalidity: r.u32()?,
            uidnext: r.u32()?,
            highestmodseq: r.u64()?,
        },
        KIND_APPEND => Record::Append(AppendRecord {
            uid: r.u32()?,
            modseq: r.u64()?,
            internal_date: r.u64()? as i64,
            size: r.u64()?,
            crc: r.u32()?,
            flags: r.flags()?,
            file: r.str()?,
        }),
        KIND_FLAGS => {
            let modseq = r.u64()?;
            let n = r.count(7)?;
            let mut changes = Vec::with_capacity(n);
            for _ in 0..n {
                changes.push((r.u32()?, r.flags()?));
            }
            Record::Flags { modseq, changes }
        }
        KIND_EXPUNGE => {
            let modseq = r.u64()?;
            let n = r.count(4)?;
            let mut uids = Vec::with_capacity(n);
            for _ in 0..n {
                uids.push(r.u32()?);
            }
            Record::Expunge { modseq, uids }
        }
        _ => return Err("unknown record kind"),
    };
    if !r.b.is_empty() {
        return Err("trailing bytes in record");
    }
    Ok(rec)
}

/// How a log ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Every byte belongs to a valid record.
    Clean,
    /// Bytes from `offset` on are an incomplete or garbage write with no valid record after it.
    Torn { offset: u64 },
    /// The frame at `offset` is bad but valid records follow: damage, not a crash.
    Corrupt { offset: u64, reason: String },
}

/// A log split into records.
#[derive(Debug)]
pub(crate) struct ParsedLog {
    /// Records before the first bad frame.
    pub records: Vec<Record>,
    /// Length of the valid prefix in bytes.
    pub valid_len: u64,
    pub tail: Tail,
}

/// Splits a whole index file into records (see the module documentation for tails).
pub(crate) fn parse_log(bytes: &[u8]) -> ParsedLog {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match decode_frame(&bytes[pos..]) {
            Ok((rec, n)) => {
                records.push(rec);
                pos += n;
            }
            Err(e) => {
                let tail = if valid_frame_after(bytes, pos + 1) {
                    Tail::Corrupt {
                        offset: pos as u64,
                        reason: format!("{e:?}"),
                    }
                } else {
                    Tail::Torn { offset: pos as u64 }
                };
                return ParsedLog {
                    records,
                    valid_len: pos as u64,
                    tail,
                };
            }
        }
    }
    ParsedLog {
        records,
        valid_len: pos as u64,
        tail: Tail::Clean,
    }
}

/// Whether any offset at or after `from` starts a frame with a matching checksum. Runs only
/// after a failure; random bytes almost never pass the length bound, so this is cheap.
fn valid_frame_after(bytes: &[u8], from: usize) -> bool {
    (from..bytes.len().saturating_sub(FRAME_HEADER - 1)).any(|p| decode_frame(&bytes[p..]).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::flags::SystemFlag;

    fn samples() -> Vec<Record> {
        let mut kw = Flags::new().with(SystemFlag::Seen);
        kw.insert_keyword("$Label1");
        kw.insert_keyword("Ünsupported-but-stored");
        vec![
            Record::Header {
                version: INDEX_VERSION,
                uidvalidity: 1_700_000_000,
                uidnext: 1,
                highestmodseq: 1,
            },
            Record::Append(AppendRecord {
                uid: 1,
                modseq: 2,
                internal_date: -5,
                size: 1234,
                crc: 0xdead_beef,
                flags: kw.clone(),
                file: "18f2a.0badcafe".into(),
            }),
            Record::Flags {
                modseq: 3,
                changes: vec![(1, Flags::new()), (7, kw)],
            },
            Record::Expunge {
                modseq: 4,
                uids: vec![1, 2, u32::MAX],
            },
            Record::Expunge {
                modseq: 5,
                uids: vec![],
            },
        ]
    }

    fn log(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            encode(r, &mut out);
        }
        out
    }

    #[test]
    fn records_round_trip() {
        for rec in samples() {
            let mut buf = Vec::new();
            encode(&rec, &mut buf);
            let (back, n) = decode_frame(&buf).unwrap();
            assert_eq!(back, rec);
            assert_eq!(n, buf.len());
        }
        let parsed = parse_log(&log(&samples()));
        assert_eq!(parsed.records, samples());
        assert_eq!(parsed.tail, Tail::Clean);
    }

    #[test]
    fn every_torn_tail_is_cut_at_the_last_whole_record() {
        let recs = samples();
        let whole = log(&recs[..recs.len() - 1]);
        let full = log(&recs);
        for cut in whole.len() + 1..full.len() {
            let parsed = parse_log(&full[..cut]);
            assert_eq!(parsed.records.len(), recs.len() - 1, "cut {cut}");
            assert_eq!(parsed.valid_len, whole.len() as u64);
            assert_eq!(
                parsed.tail,
                Tail::Torn {
                    offset: whole.len() as u64
                }
            );
        }
    }

    #[test]
    fn zero_filled_or_garbage_tail_is_torn() {
        let mut bytes = log(&samples());
        let n = bytes.len() as u64;
        bytes.extend_from_slice(&[0; 4096]);
        let parsed = parse_log(&bytes);
        assert_eq!(parsed.tail, Tail::Torn { offset: n });
        assert_eq!(parsed.records.len(), samples().len());
        bytes.truncate(n as usize);
        bytes.extend_from_slice(&[0xff, 0x01, 0x00, 0x00, 1, 2, 3, 4, 5]);
        assert_eq!(parse_log(&bytes).tail, Tail::Torn { offset: n });
    }

    #[test]
    fn checksum_mismatch_in_the_middle_is_corruption() {
        let recs = samples();
        let first = log(&recs[..1]).len();
        let mut bytes = log(&recs);
        bytes[first + 12] ^= 0x40;
        let parsed = parse_log(&bytes);
        assert_eq!(parsed.records, recs[..1]);
        assert!(matches!(parsed.tail, Tail::Corrupt { offset, .. } if offset == first as u64));
    }

    #[test]
    fn checksum_mismatch_in_the_last_record_is_a_torn_tail() {
        let recs = samples();
        let before = log(&recs[..recs.len() - 1]).len();
        let mut bytes = log(&recs);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let parsed = parse_log(&bytes);
        assert_eq!(
            parsed.tail,
            Tail::Torn {
                offset: before as u64
            }
        );
    }

    #[test]
    fn bad_bodies_with_valid_checksums_are_rejected() {
        // Frames whose checksum matches but whose body is wrong: written by a bug or a newer
        // version, never by a crash.
        let bodies: [(&[u8], &str); 5] = [
            (&[9], "unknown record kind"),
            (&[KIND_HEADER, 1], "record body truncated"),
            (
                &[KIND_EXPUNGE, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x0f],
                "item count exceeds the record",
            ),
            (
                &[KIND_EXPUNGE, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7],
                "trailing bytes in record",
            ),
            (
                &[
                    KIND_FLAGS, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0x80, 0, 0,
                ],
                "unknown system flag bits",
            ),
        ];
        for (body, want) in bodies {
            let mut frame = (body.len() as u32).to_le_bytes().to_vec();
            let crc = frame_crc(&frame, body);
            frame.extend_from_slice(&crc.to_le_bytes());
            frame.extend_from_slice(body);
            assert_eq!(decode_frame(&frame).unwrap_err(), FrameError::Body(want));
        }
    }

    #[test]
    fn absurd_lengths_are_bounded() {
        let mut frame = u32::MAX.to_le_bytes().to_vec();
        frame.extend_from_slice(&[0; 8]);
        assert_eq!(
            decode_frame(&frame).unwrap_err(),
            FrameError::BadLength(u32::MAX)
        );
        assert_eq!(decode_frame(&[1, 0]).unwrap_err(), FrameError::Short);
    }
}
