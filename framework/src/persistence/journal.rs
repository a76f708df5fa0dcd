//! The `ON_REQUEST` journal: group commits appended to one file with one `fdatasync` each.
//!
//! A full save writes new chunk files, makes each durable, renames them, syncs their
//! directories, then does the same for the manifest: four or more fsyncs, which capped
//! `ON_REQUEST` at a few hundred commits a second. A journal commit instead appends one record
//! holding what a save would have written (the new chunks of each changed service, and the
//! service's new chunk list) and syncs the file once. The manifest names the journal it
//! continues; a record whose frame or checksum is incomplete at the end of the file is a commit
//! that was never acknowledged and is dropped.
//!
//! The journal is folded into the ordinary layout (its chunks copied into `objects/`, its
//! chunk lists into the manifest, and a fresh journal started) by every full save, when it
//! grows past [`COMPACT_AT`], and at start, so loading never reads a journal.
//!
//! File format (little-endian):
//! ```text
//! magic   "CRYOPODJ" (8 bytes), version u32 (= 1)
//! record* len u32 | crc32 u32 (of payload) | payload
//! payload meta_len u32 | meta (MessagePack: map service → ObjectRef)
//!         n u32 | n × (digest [32] | len u32 | zstd-compressed chunk bytes)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{ObjectRef, failpoint};
use crate::state::Digest;

const MAGIC: &[u8; 8] = b"CRYOPODJ";
const VERSION: u32 = 1;
const HEADER: u64 = 12;
/// A journal longer than this is folded into the object store by the next commit.
pub const COMPACT_AT: u64 = 64 * 1024 * 1024;

/// A journal that does not read back.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct JournalError {
    /// Why.
    pub reason: String,
}

/// An open journal, ready for appends.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    len: u64,
    records: u64,
    /// The newest chunk list of every service the journal holds.
    refs: BTreeMap<String, ObjectRef>,
    /// Offset and length of each chunk's compressed bytes in the file.
    index: HashMap<Digest, (u64, u32)>,
}

impl Journal {
    /// Creates an empty journal named `journal-<unique>.log` in `dir`, durable with its
    /// directory entry before a manifest can name it.
    pub fn create(dir: &Path) -> io::Result<Journal> {
        let name = format!("journal-{}.log", uuid::Uuid::new_v4().simple());
        let path = dir.join(name);
        let mut opts = OpenOptions::new();
        opts.read(true).append(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(&path)?;
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&VERSION.to_le_bytes());
        file.write_all(&head)?;
        file.sync_all()?;
        File::open(dir)?.sync_all()?;
        Ok(Journal {
            path,
            file,
            len: HEADER,
            records: 0,
            refs: BTreeMap::new(),
            index: HashMap::new(),
        })
    }

    /// Opens a journal, reads every complete record and cuts off an incomplete last one (a
    /// commit interrupted before it was acknowledged). A damaged record that is followed by
    /// more data is corruption, not an interrupted commit, and is an error.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let bad = |reason: String| JournalError {
            reason: format!("{}: {reason}", path.display()),
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| bad(format!("cannot be opened: {e}")))?;
        let file_len = file.metadata().map_err(|e| bad(e.to_string()))?.len();
        let mut head = [0u8; HEADER as usize];
        file.read_exact(&mut head)
            .map_err(|_| bad("too short for a journal header".into()))?;
        if &head[..8] != MAGIC {
            return Err(bad("not a cryopod journal (bad magic)".into()));
        }
        let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        if version != VERSION {
            return Err(bad(format!("journal version {version} is not supported")));
        }
        let mut j = Journal {
            path: path.to_path_buf(),
            file,
            len: HEADER,
            records: 0,
            refs: BTreeMap::new(),
            index: HashMap::new(),
        };
        let mut pos = HEADER;
        loop {
            let rest = file_len - pos;
            if rest == 0 {
                break;
            }
            let mut frame = [0u8; 8];
            if rest < 8 || j.file.read_exact(&mut frame).is_err() {
                tracing::warn!(journal = %path.display(), bytes = rest, "dropping an interrupted commit at the end of the journal");
                break;
            }
            let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
            let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
            // A length running past the end (or a zero-filled tail) is a frame whose
            // payload never reached the disk.
            if len == 0 || u64::from(len) > rest - 8 {
                tracing::warn!(journal = %path.display(), bytes = rest, "dropping an interrupted commit at the end of the journal");
                break;
            }
            let mut payload = vec![0u8; len as usize];
            j.file
                .read_exact(&mut payload)
                .map_err(|e| bad(format!("record at byte {pos}: {e}")))?;
            let end = pos + 8 + u64::from(len);
            if crc32fast::hash(&payload) != crc {
                if end == file_len {
                    tracing::warn!(journal = %path.display(), bytes = rest, "dropping an interrupted commit at the end of the journal");
                    break;
                }
                return Err(bad(format!(
                    "record at byte {pos} is damaged (checksum mismatch) and is followed by more records"
                )));
            }
            j.apply_record(pos + 8, &payload)
                .map_err(|e| bad(format!("record at byte {pos}: {e}")))?;
            j.records += 1;
            pos = end;
        }
        if pos < file_len {
            j.file
                .set_len(pos)
                .and_then(|()| j.file.sync_all())
                .map_err(|e| bad(format!("cannot cut the interrupted commit off: {e}")))?;
        }
        j.len = pos;
        Ok(j)
    }

    /// Indexes one record whose payload starts at `base` in the file.
    fn apply_record(&mut self, base: u64, payload: &[u8]) -> Result<(), String> {
        let mut r = Cursor {
            buf: payload,
            pos: 0,
        };
        let meta_len = r.u32()? as usize;
        let meta = r.bytes(meta_len)?;
        let refs: BTreeMap<String, ObjectRef> =
            rmp_serde::from_slice(meta).map_err(|e| format!("bad chunk lists: {e}"))?;
        let n = r.u32()?;
        for _ in 0..n {
            let d = r.bytes(32)?;
            let mut digest = [0u8; 32];
            digest.copy_from_slice(d);
            let len = r.u32()?;
            let at = base + r.pos as u64;
            r.bytes(len as usize)?;
            self.index.insert(Digest(digest), (at, len));
        }
        if r.pos != payload.len() {
            return Err(format!("{} unexpected bytes", payload.len() - r.pos));
        }
        self.refs.extend(refs);
        Ok(())
    }

    /// Appends one commit and makes it durable; returns the bytes written.
    pub fn append(
        &mut self,
        refs: BTreeMap<String, ObjectRef>,
        chunks: Vec<(Digest, Vec<u8>)>,
    ) -> io::Result<u64> {
        let meta = rmp_serde::to_vec(&refs).map_err(io::Error::other)?;
        let mut payload = Vec::with_capacity(
            8 + meta.len() + chunks.iter().map(|(_, b)| b.len() + 36).sum::<usize>(),
        );
        payload.extend_from_slice(&len32(meta.len())?.to_le_bytes());
        payload.extend_from_slice(&meta);
        payload.extend_from_slice(&len32(chunks.len())?.to_le_bytes());
        let mut offsets = Vec::with_capacity(chunks.len());
        for (d, bytes) in &chunks {
            payload.extend_from_slice(&d.0);
            payload.extend_from_slice(&len32(bytes.len())?.to_le_bytes());
            offsets.push((*d, payload.len(), bytes.len()));
            payload.extend_from_slice(bytes);
        }
        let mut record = Vec::with_capacity(payload.len() + 8);
        record.extend_from_slice(&len32(payload.len())?.to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        let written = (|| {
            failpoint::hit("journal-write")?;
            self.file.write_all(&record)?;
            failpoint::hit("journal-fsync")?;
            self.file.sync_data()
        })();
        if let Err(e) = written {
            // Whatever part of the record reached the file must not be followed by the next
            // one: cut it off (an interrupted record is dropped at read time anyway).
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        let base = self.len + 8;
        for (d, at, len) in offsets {
            self.index.insert(d, (base + at as u64, len as u32));
        }
        self.len += record.len() as u64;
        self.records += 1;
        self.refs.extend(refs);
        Ok(record.len() as u64)
    }

    /// Whether the journal holds the compressed bytes of chunk `d`.
    pub fn has_chunk(&self, d: &Digest) -> bool {
        self.index.contains_key(d)
    }

    /// The compressed bytes of chunk `d`, as a chunk object file holds them.
    pub fn read_chunk(&self, d: &Digest) -> io::Result<Vec<u8>> {
        let &(at, len) = self.index.get(d).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("chunk {d} is not in {}", self.path.display()),
            )
        })?;
        let mut f = File::open(&self.path)?;
        f.seek(SeekFrom::Start(at))?;
        let mut out = vec![0u8; len as usize];
        f.read_exact(&mut out)?;
        Ok(out)
    }

    /// The newest chunk list of each service the journal holds.
    pub fn refs(&self) -> &BTreeMap<String, ObjectRef> {
        &self.refs
    }

    /// The file's name, as the manifest records it.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no commit was appended.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

fn len32(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| io::Error::other("journal record too large"))
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| "truncated record".to_string())?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistence::ChunkRef;

    fn object(tag: u8) -> (ObjectRef, Vec<(Digest, Vec<u8>)>) {
        let bytes = vec![tag; 1000];
        let digest = Digest::of(&bytes);
        let r = ObjectRef {
            state_version: 1,
            digest,
            size: 1000,
            chunks: vec![ChunkRef { digest, size: 1000 }],
        };
        (r, vec![(digest, zstd::bulk::compress(&bytes, 1).unwrap())])
    }

    #[test]
    fn commits_read_back_and_the_newest_chunk_list_wins() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path()).unwrap();
        let (a, ca) = object(1);
        let (b, cb) = object(2);
        j.append([("notes".to_string(), a)].into(), ca).unwrap();
        j.append([("notes".to_string(), b.clone())].into(), cb.clone())
            .unwrap();
        let back = Journal::open(j.path()).unwrap();
        assert_eq!(back.refs()["notes"], b);
        assert_eq!(back.read_chunk(&cb[0].0).unwrap(), cb[0].1);
        assert_eq!(back.len(), j.len());
        assert!(!back.is_empty());
    }

    #[test]
    fn an_interrupted_last_commit_is_dropped_at_every_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path()).unwrap();
        let (a, ca) = object(1);
        let (b, cb) = object(2);
        j.append([("notes".to_string(), a.clone())].into(), ca)
            .unwrap();
        let first = j.len();
        j.append([("notes".to_string(), b)].into(), cb).unwrap();
        let full = std::fs::read(j.path()).unwrap();
        for cut in first..full.len() as u64 {
            let p = dir.path().join(format!("cut-{cut}.log"));
            std::fs::write(&p, &full[..cut as usize]).unwrap();
            let back = Journal::open(&p).unwrap();
            assert_eq!(back.refs()["notes"], a, "cut at {cut}");
            assert_eq!(back.len(), first, "cut at {cut}");
            assert_eq!(std::fs::metadata(&p).unwrap().len(), first, "cut off");
        }
    }

    #[test]
    fn a_damaged_record_followed_by_more_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path()).unwrap();
        let (a, ca) = object(1);
        let (b, cb) = object(2);
        j.append([("notes".to_string(), a)].into(), ca).unwrap();
        j.append([("notes".to_string(), b)].into(), cb).unwrap();
        let mut bytes = std::fs::read(j.path()).unwrap();
        bytes[HEADER as usize + 20] ^= 0x40;
        std::fs::write(j.path(), &bytes).unwrap();
        let err = Journal::open(j.path()).unwrap_err().to_string();
        assert!(err.contains("damaged") && err.contains("journal-"), "{err}");
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal-x.log");
        std::fs::write(&p, b"something else entirely").unwrap();
        let err = Journal::open(&p).unwrap_err().to_string();
        assert!(err.contains("bad magic"), "{err}");
    }
}
