//! A received message's content, and the spool that collects it during DATA/BDAT.
//!
//! The [`Spool`] keeps a message in memory up to `spool_memory_limit`, then moves it to a
//! temporary file in `spool_dir`, so a session's memory stays bounded whatever the message
//! size. The finished [`Message`] is handed to the queue or the store, which make it durable
//! (typically by [`Message::persist`], a rename when the spool directory is on the queue's
//! file system). This file never fsyncs: durability is the receiver's job and its promise.
//!
//! Security note: temporary files are created with `O_EXCL`, mode 0600, under random names,
//! and are deleted when the [`Message`] is dropped without being persisted, so an aborted
//! transfer leaves nothing behind.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;

/// A complete message: added headers (`Received:` and, on submission, `Message-ID:`/`Date:`)
/// followed by the content exactly as the client sent it, unstuffed, with CRLF line ends.
#[derive(Debug)]
pub struct Message {
    body: Body,
    len: u64,
}

#[derive(Debug)]
enum Body {
    Memory(bytes::Bytes),
    File(NamedTempFile),
}

/// Reads a [`Message`] from its start.
pub enum MessageReader<'a> {
    /// An in-memory message.
    Memory(Cursor<&'a [u8]>),
    /// A spooled message.
    File(File),
}

impl Read for MessageReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MessageReader::Memory(c) => c.read(buf),
            MessageReader::File(f) => f.read(buf),
        }
    }
}

impl Message {
    /// A message held in memory (tests, and producers other than the SMTP session).
    pub fn from_bytes(bytes: Vec<u8>) -> Message {
        Message {
            len: bytes.len() as u64,
            body: Body::Memory(bytes.into()),
        }
    }

    /// Size in octets.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The content, when it is held in memory.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Memory(b) => Some(b),
            Body::File(_) => None,
        }
    }

    /// The temporary file holding the content, when it was spooled to disk.
    pub fn path(&self) -> Option<&Path> {
        match &self.body {
            Body::Memory(_) => None,
            Body::File(f) => Some(f.path()),
        }
    }

    /// A reader from the first octet. Blocking I/O for spooled messages: call it from
    /// `spawn_blocking` or accept a short block on a local disk.
    pub fn reader(&self) -> io::Result<MessageReader<'_>> {
        Ok(match &self.body {
            Body::Memory(b) => MessageReader::Memory(Cursor::new(b)),
            Body::File(f) => {
                let mut file = f.reopen()?;
                file.seek(SeekFrom::Start(0))?;
                MessageReader::File(file)
            }
        })
    }

    /// The whole content in memory: shared, not copied, when it is held in memory; read from a
    /// spooled file otherwise (blocking I/O).
    pub fn to_bytes(&self) -> io::Result<bytes::Bytes> {
        match &self.body {
            Body::Memory(b) => Ok(b.clone()),
            Body::File(_) => self.to_vec().map(Into::into),
        }
    }

    /// The whole content in memory (reads a spooled file): for small messages and tests.
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        self.reader()?.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Moves the content to `path` (which must not exist) and returns the file, open for
    /// reading and writing. A spooled message is renamed when `path` is on the same file
    /// system, otherwise copied. Nothing is fsynced: the caller syncs the file and its
    /// directory before acknowledging. Blocking I/O.
    pub fn persist(self, path: &Path) -> io::Result<File> {
        match self.body {
            Body::Memory(bytes) => {
                let mut f = create_new(path)?;
                f.write_all(&bytes)?;
                Ok(f)
            }
            Body::File(temp) => match temp.persist_noclobber(path) {
                Ok(f) => Ok(f),
                // Another file system (EXDEV): copy, then the temp file is removed on drop.
                Err(e) if e.error.kind() == io::ErrorKind::CrossesDevices => {
                    let mut src = e.file.reopen()?;
                    let mut dst = create_new(path)?;
                    io::copy(&mut src, &mut dst)?;
                    Ok(dst)
                }
                Err(e) => Err(e.error),
            },
        }
    }
}

impl Message {
    /// The first `max` octets of a spooled message file. Blocking I/O.
    pub(crate) fn read_head(path: &Path, max: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        File::open(path)?.take(max as u64).read_to_end(&mut out)?;
        Ok(out)
    }

    /// The message with `prepend` put before its first octet and the byte ranges of `remove`
    /// (offsets in this message; sorted or not, overlapping or not) left out. In memory when it
    /// was, else a new temporary file next to the old one. Blocking I/O for a spooled message.
    pub fn edit(self, prepend: &[u8], remove: &[std::ops::Range<usize>]) -> io::Result<Message> {
        if prepend.is_empty() && remove.is_empty() {
            return Ok(self);
        }
        let mut cuts: Vec<(u64, u64)> = remove
            .iter()
            .map(|r| (r.start as u64, (r.end as u64).min(self.len)))
            .filter(|(start, end)| start < end)
            .collect();
        cuts.sort_unstable();
        match self.body {
            Body::Memory(bytes) => {
                let mut out = Vec::with_capacity(prepend.len() + bytes.len());
                out.extend_from_slice(prepend);
                copy_without(&mut Cursor::new(&bytes[..]), &mut out, &cuts)?;
                Ok(Message::from_bytes(out))
            }
            Body::File(temp) => {
                let dir = temp
                    .path()
                    .parent()
                    .map_or_else(std::env::temp_dir, Path::to_path_buf);
                let mut new = tempfile::Builder::new()
                    .prefix("smtp-")
                    .suffix(".tmp")
                    .tempfile_in(dir)?;
                let mut src = temp.reopen()?;
                let mut w = io::BufWriter::new(new.as_file_mut());
                w.write_all(prepend)?;
                let copied = copy_without(&mut src, &mut w, &cuts)?;
                w.flush()?;
                drop(w);
                Ok(Message {
                    len: prepend.len() as u64 + copied,
                    body: Body::File(new),
                })
            }
        }
    }
}

/// Copies `src` to `dst` leaving out the sorted byte ranges `cuts`; returns the octets written.
fn copy_without(src: &mut impl Read, dst: &mut impl Write, cuts: &[(u64, u64)]) -> io::Result<u64> {
    let mut pos = 0u64;
    let mut written = 0u64;
    for &(start, end) in cuts {
        if end <= pos {
            continue;
        }
        let start = start.max(pos);
        written += io::copy(&mut src.by_ref().take(start - pos), dst)?;
        io::copy(&mut src.by_ref().take(end - start), &mut io::sink())?;
        pos = end;
    }
    written += io::copy(src, dst)?;
    Ok(written)
}

fn create_new(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
}

/// Collects a message in memory, then in a temporary file past a threshold.
pub(crate) struct Spool {
    mem: Vec<u8>,
    file: Option<(NamedTempFile, tokio::fs::File)>,
    len: u64,
    memory_limit: usize,
    dir: PathBuf,
}

impl Spool {
    pub(crate) fn new(memory_limit: usize, dir: PathBuf) -> Spool {
        Spool {
            mem: Vec::new(),
            file: None,
            len: 0,
            memory_limit,
            dir,
        }
    }

    /// Appends `bytes`, moving everything to a temporary file once the memory limit would be
    /// passed.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.file.is_none() && self.mem.len() + bytes.len() > self.memory_limit {
            let dir = self.dir.clone();
            let temp = tokio::task::spawn_blocking(move || {
                tempfile::Builder::new()
                    .prefix("smtp-")
                    .suffix(".tmp")
                    .tempfile_in(dir)
            })
            .await
            .map_err(io::Error::other)??;
            let mut writer = tokio::fs::File::from_std(temp.reopen()?);
            writer.write_all(&self.mem).await?;
            self.mem = Vec::new();
            self.file = Some((temp, writer));
        }
        match &mut self.file {
            Some((_, writer)) => writer.write_all(bytes).await?,
            None => self.mem.extend_from_slice(bytes),
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// The finished message.
    pub(crate) async fn finish(self) -> io::Result<Message> {
        let body = match self.file {
            None => Body::Memory(self.mem.into()),
            Some((temp, mut writer)) => {
                writer.flush().await?;
                Body::File(temp)
            }
        };
        Ok(Message {
            body,
            len: self.len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spool_stays_in_memory_below_the_limit_and_spills_above() {
        let dir = tempfile::tempdir().unwrap();
        let mut small = Spool::new(10, dir.path().into());
        small.write(b"hello").await.unwrap();
        let m = small.finish().await.unwrap();
        assert_eq!(m.as_bytes(), Some(&b"hello"[..]));
        assert!(m.path().is_none());

        let mut big = Spool::new(10, dir.path().into());
        big.write(b"0123456").await.unwrap();
        big.write(b"789abcdef").await.unwrap();
        big.write(b"!").await.unwrap();
        let m = big.finish().await.unwrap();
        assert_eq!(m.len(), 17);
        let temp = m.path().unwrap().to_path_buf();
        assert!(temp.starts_with(dir.path()));
        assert_eq!(m.to_vec().unwrap(), b"0123456789abcdef!");

        let target = dir.path().join("queued");
        let mut f = m.persist(&target).unwrap();
        assert!(!temp.exists(), "renamed, not copied");
        let mut s = String::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "0123456789abcdef!");
    }

    #[tokio::test]
    async fn dropping_an_unpersisted_message_removes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(0, dir.path().into());
        spool.write(b"x").await.unwrap();
        let m = spool.finish().await.unwrap();
        let path = m.path().unwrap().to_path_buf();
        assert!(path.exists());
        drop(m);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn edit_prepends_and_cuts_in_memory_and_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"A: 1\r\nB: 2\r\nC: 3\r\n\r\nbody\r\n";
        for limit in [1 << 20, 4] {
            let mut spool = Spool::new(limit, dir.path().into());
            spool.write(text).await.unwrap();
            let m = spool.finish().await.unwrap();
            let old = m.path().map(Path::to_path_buf);
            // Remove "B: 2\r\n" (6..12) and, overlapping/unsorted, nothing else twice.
            let m = m.edit(b"X: 0\r\n", &[6..12, 7..9]).unwrap();
            assert_eq!(m.to_vec().unwrap(), b"X: 0\r\nA: 1\r\nC: 3\r\n\r\nbody\r\n");
            assert_eq!(m.len(), m.to_vec().unwrap().len() as u64);
            assert_eq!(m.path().is_some(), limit == 4, "stays where it was");
            if let Some(old) = old {
                assert!(!old.exists(), "the old temporary file is gone");
            }
            // A range past the end is clipped; an empty edit is the same message.
            let m = m
                .edit(b"", &[40..400, 500..600])
                .unwrap()
                .edit(b"", &[])
                .unwrap();
            assert_eq!(m.len(), 26);
        }
    }

    #[test]
    fn persist_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x");
        std::fs::write(&target, b"old").unwrap();
        let err = Message::from_bytes(b"new".to_vec())
            .persist(&target)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
    }
}
