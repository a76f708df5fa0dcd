//! Content-defined chunks: how a service section is stored in the data dir.
//!
//! A service's section is cut into chunks at boundaries chosen by the content (FastCDC, from
//! the `fastcdc` crate), and each chunk is one object named by the sha256 of its bytes. A
//! change to one resource changes the bytes around it, so only the one or two chunks holding
//! it get new names; every other chunk keeps its name and is not written again. That is what
//! makes a save after a small change in a big service cost a few hundred KiB instead of the
//! whole section (one object per service, layout 1, rewrote it all).
//!
//! Boundaries depend only on the bytes since the previous boundary, never on where the
//! encoder's buffer happens to end, so the same section always cuts the same way.
//!
//! Durability order is the usual one, batched: every new chunk is written to a temp file,
//! then all are made durable (one `syncfs` on Linux when there are many, else one fsync per
//! file), then renamed to their names, then the directories are made durable. A chunk file
//! therefore never exists under its name before its bytes are on disk, and a chunk that
//! exists under its name can be trusted by the next save without being rewritten.

#[cfg(test)]
use std::fs;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use cryopod_bundle::Hasher;
use fastcdc::v2020::FastCDC;
use serde::{Deserialize, Serialize};

use super::failpoint;
use crate::blob::create_private_dir_all;
use crate::state::Digest;

/// Smallest chunk, except the last of a section.
pub const MIN_CHUNK: usize = 32 * 1024;
/// Average chunk: 1 GiB of state is ~8,000 chunk files; a one-resource change rewrites ~1-2.
pub const AVG_CHUNK: usize = 128 * 1024;
/// Largest chunk: a cut is forced here in content without a natural boundary.
pub const MAX_CHUNK: usize = 512 * 1024;
/// The encoder's buffer is cut once it holds this much (several chunks per pass).
const CUT_AT: usize = 4 * MAX_CHUNK;
/// With more new chunks than this, one `syncfs` is cheaper than one fsync per file.
#[cfg(target_os = "linux")]
const SYNCFS_ABOVE: usize = 16;
const ZSTD_LEVEL: i32 = 1;

/// One stored chunk of a section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// sha256 of the chunk's uncompressed bytes: the object's name.
    pub digest: Digest,
    /// Uncompressed size.
    pub size: u32,
}

/// Where chunk objects live: `ROOT/sha256/ab/abcd…`, zstd-compressed.
#[derive(Clone, Debug)]
pub struct ChunkStore {
    root: PathBuf,
}

impl ChunkStore {
    /// The object directory (`DATA_DIR/state/objects`).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Where the object named `d` lives.
    pub fn path(&self, d: &Digest) -> PathBuf {
        crate::blob::digest_path(&self.root, d)
    }

    /// Encodes through `encode` into chunks and stores the chunks not stored yet. Returns the
    /// chunk list, the uncompressed size and the bytes written to disk.
    pub fn write_section(
        &self,
        encode: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<(Vec<ChunkRef>, u64, u64)> {
        let mut batch = Batch::new(self, None);
        batch.chunk(encode)?;
        let written = batch.commit()?;
        Ok((batch.chunks, batch.size, written))
    }

    /// Like [`ChunkStore::write_section`], but new chunks are returned (digest and compressed
    /// bytes) instead of written: for a journal commit. `known` says which chunks are stored
    /// elsewhere already (in the journal).
    #[allow(clippy::type_complexity)]
    pub fn encode_inline(
        &self,
        encode: impl FnOnce(&mut dyn Write) -> io::Result<()>,
        known: &dyn Fn(&Digest) -> bool,
    ) -> io::Result<(Vec<ChunkRef>, u64, Vec<(Digest, Vec<u8>)>)> {
        let mut batch = Batch::new(self, Some(known));
        batch.chunk(encode)?;
        Ok((batch.chunks, batch.size, batch.inline))
    }

    /// Stores chunks that arrive already compressed (folding a journal), with the same
    /// durability order as a save; returns the bytes written.
    pub fn store_compressed(
        &self,
        chunks: impl IntoIterator<Item = io::Result<(Digest, Vec<u8>)>>,
    ) -> io::Result<u64> {
        let mut batch = Batch::new(self, None);
        for c in chunks {
            let (digest, compressed) = c?;
            let dest = self.path(&digest);
            if dest.is_file() || batch.new.iter().any(|(_, d)| *d == dest) {
                continue;
            }
            batch.put_compressed(dest, &compressed)?;
        }
        batch.commit()
    }

    /// Whether chunk `d` is stored as a file.
    pub fn contains(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// A reader of a chunked section that decompresses each chunk and checks its digest and
    /// size; `corrupt` names the file in errors.
    pub fn reader(&self, chunks: &[ChunkRef]) -> ChunkReader<'_> {
        ChunkReader {
            store: self,
            chunks: chunks.to_vec(),
            next: 0,
            current: None,
            failed: None,
        }
    }
}

/// The name of a whole chunked section: the sha256 of its chunks' digests in order. Two saves
/// of the same bytes have the same name, so the manifest can tell that nothing changed.
pub fn section_digest(chunks: &[ChunkRef]) -> Digest {
    let mut h = Hasher::new();
    for c in chunks {
        h.update(&c.digest.0);
    }
    h.finish()
}

struct Batch<'a> {
    store: &'a ChunkStore,
    chunks: Vec<ChunkRef>,
    /// New chunks written to temp files, with their final names.
    new: Vec<(tempfile::NamedTempFile, PathBuf)>,
    size: u64,
    /// Journal mode: new chunks are kept here instead of written; chunks `known` skips.
    known: Option<&'a dyn Fn(&Digest) -> bool>,
    inline: Vec<(Digest, Vec<u8>)>,
    inline_seen: std::collections::HashSet<Digest>,
}

impl<'a> Batch<'a> {
    fn new(store: &'a ChunkStore, known: Option<&'a dyn Fn(&Digest) -> bool>) -> Self {
        Batch {
            store,
            chunks: Vec::new(),
            new: Vec::new(),
            size: 0,
            known,
            inline: Vec::new(),
            inline_seen: Default::default(),
        }
    }

    /// Runs the encoder through the chunker into this batch.
    fn chunk(&mut self, encode: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
        let mut w = ChunkingWriter {
            buf: Vec::with_capacity(CUT_AT + MAX_CHUNK),
            sink: self,
        };
        encode(&mut w)?;
        w.cut(true)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        let digest = Digest::of(bytes);
        let size = u32::try_from(bytes.len()).map_err(io::Error::other)?;
        self.chunks.push(ChunkRef { digest, size });
        self.size += bytes.len() as u64;
        let dest = self.store.path(&digest);
        if let Some(known) = self.known {
            if known(&digest) || self.inline_seen.contains(&digest) || dest.is_file() {
                return Ok(());
            }
            self.inline_seen.insert(digest);
            let compressed = zstd::bulk::compress(bytes, ZSTD_LEVEL)?;
            self.inline.push((digest, compressed));
            return Ok(());
        }
        // Named files are durable (see the module docs), and a chunk repeated inside this
        // section is written once.
        if dest.is_file() || self.new.iter().any(|(_, d)| *d == dest) {
            return Ok(());
        }
        let compressed = zstd::bulk::compress(bytes, ZSTD_LEVEL)?;
        self.put_compressed(dest, &compressed)
    }

    fn put_compressed(&mut self, dest: PathBuf, compressed: &[u8]) -> io::Result<()> {
        failpoint::hit("object-write")?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.store.root)?;
        tmp.write_all(compressed)?;
        self.new.push((tmp, dest));
        Ok(())
    }

    /// Makes the new chunks durable and names them; returns the bytes written.
    fn commit(&mut self) -> io::Result<u64> {
        if self.new.is_empty() {
            return Ok(0);
        }
        let mut written = 0;
        for (tmp, _) in &self.new {
            written += tmp.as_file().metadata()?.len();
        }
        self.sync_files()?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (tmp, dest) in self.new.drain(..) {
            let parent = dest.parent().unwrap_or(&self.store.root).to_path_buf();
            create_private_dir_all(&parent)?;
            failpoint::hit("object-rename")?;
            tmp.persist(&dest).map_err(|e| e.error)?;
            if !dirs.contains(&parent) {
                dirs.push(parent);
            }
        }
        sync_dirs(&self.store.root, &dirs)?;
        Ok(written)
    }

    fn sync_files(&self) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if self.new.len() > SYNCFS_ABOVE {
            failpoint::hit("object-fsync")?;
            return rustix::fs::syncfs(self.new[0].0.as_file()).map_err(io::Error::from);
        }
        for (tmp, _) in &self.new {
            failpoint::hit("object-fsync")?;
            tmp.as_file().sync_all()?;
        }
        Ok(())
    }
}

/// Makes renames in `dirs` durable: one `syncfs` when there are many, else one fsync each.
fn sync_dirs(root: &Path, dirs: &[PathBuf]) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if dirs.len() > SYNCFS_ABOVE {
        failpoint::hit("dir-fsync")?;
        return rustix::fs::syncfs(File::open(root)?).map_err(io::Error::from);
    }
    let _ = root;
    for d in dirs {
        failpoint::hit("dir-fsync")?;
        File::open(d)?.sync_all()?;
    }
    Ok(())
}

/// Buffers what the encoder writes and hands complete chunks to the batch.
struct ChunkingWriter<'a, 'b> {
    buf: Vec<u8>,
    sink: &'a mut Batch<'b>,
}

impl ChunkingWriter<'_, '_> {
    /// Cuts the chunks the buffer holds. A chunk that reaches the end of the buffer may not
    /// be complete (more bytes could move its boundary) and stays, unless this is the end.
    fn cut(&mut self, last: bool) -> io::Result<()> {
        let Self { buf, sink } = self;
        let mut consumed = 0;
        for c in FastCDC::new(buf, MIN_CHUNK as u32, AVG_CHUNK as u32, MAX_CHUNK as u32) {
            let end = c.offset + c.length;
            if !last && end == buf.len() {
                break;
            }
            sink.put(&buf[c.offset..end])?;
            consumed = end;
        }
        buf.drain(..consumed);
        Ok(())
    }
}

impl Write for ChunkingWriter<'_, '_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CUT_AT {
            self.cut(false)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a chunked section back, verifying every chunk; see [`ChunkStore::reader`].
pub struct ChunkReader<'a> {
    store: &'a ChunkStore,
    chunks: Vec<ChunkRef>,
    next: usize,
    current: Option<(io::Cursor<Vec<u8>>, PathBuf)>,
    /// The file that failed verification, for the caller's error message.
    pub failed: Option<PathBuf>,
}

impl ChunkReader<'_> {
    fn load(&mut self, c: ChunkRef) -> io::Result<Vec<u8>> {
        let path = self.store.path(&c.digest);
        let bad = |path: &Path, why: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {why}", path.display()),
            )
        };
        let f = File::open(&path).map_err(|e| bad(&path, format!("cannot be opened: {e}")))?;
        let mut dec =
            zstd::Decoder::new(BufReader::new(f)).map_err(|e| bad(&path, e.to_string()))?;
        dec.window_log_max(27)
            .map_err(|e| bad(&path, e.to_string()))?;
        let mut out = Vec::with_capacity(c.size as usize);
        // One byte more than the chunk's size tells a too-long object from a good one.
        dec.take(u64::from(c.size) + 1)
            .read_to_end(&mut out)
            .map_err(|e| bad(&path, format!("does not decompress: {e}")))?;
        let got = Digest::of(&out);
        if got != c.digest || out.len() != c.size as usize {
            return Err(bad(
                &path,
                format!(
                    "content digest {got} ({} bytes) does not match its name ({} bytes expected)",
                    out.len(),
                    c.size
                ),
            ));
        }
        Ok(out)
    }
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some((cur, _)) = &mut self.current {
                let n = cur.read(out)?;
                if n > 0 || out.is_empty() {
                    return Ok(n);
                }
            }
            let Some(&c) = self.chunks.get(self.next) else {
                return Ok(0);
            };
            self.next += 1;
            let path = self.store.path(&c.digest);
            match self.load(c) {
                Ok(bytes) => self.current = Some((io::Cursor::new(bytes), path)),
                Err(e) => {
                    self.failed = Some(path);
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn store() -> (tempfile::TempDir, ChunkStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = ChunkStore::new(dir.path().to_path_buf());
        (dir, s)
    }

    fn write(s: &ChunkStore, data: &[u8], piece: usize) -> (Vec<ChunkRef>, u64, u64) {
        s.write_section(|w| {
            for p in data.chunks(piece) {
                w.write_all(p)?;
            }
            Ok(())
        })
        .unwrap()
    }

    #[test]
    fn boundaries_do_not_depend_on_how_the_encoder_writes() {
        let data = noise(1, 5 * 1024 * 1024 + 123);
        let (_d1, s1) = store();
        let (_d2, s2) = store();
        let (a, size, _) = write(&s1, &data, 7);
        let (b, _, _) = write(&s2, &data, 1 << 20);
        assert_eq!(a, b);
        assert_eq!(size, data.len() as u64);
        assert!(a.len() > 10, "{} chunks", a.len());
        assert!(
            a.iter().all(|c| (c.size as usize) <= MAX_CHUNK),
            "every chunk is at most MAX_CHUNK"
        );
        let mut back = Vec::new();
        s1.reader(&a).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn a_small_change_rewrites_only_the_chunks_around_it() {
        let mut data = noise(2, 8 * 1024 * 1024);
        let (_d, s) = store();
        let (first, _, written1) = write(&s, &data, 4096);
        data[4 * 1024 * 1024] ^= 0xff;
        data.splice(6_000_000..6_000_000, *b"an inserted resource");
        let (second, _, written2) = write(&s, &data, 4096);
        assert_ne!(section_digest(&first), section_digest(&second));
        let new = second.iter().filter(|c| !first.contains(c)).count();
        assert!(new <= 4, "{new} of {} chunks are new", second.len());
        assert!(
            written2 * 10 < written1,
            "second write {written2} bytes, first {written1}"
        );
        let (third, _, written3) = write(&s, &data, 4096);
        assert_eq!(third, second);
        assert_eq!(written3, 0, "an unchanged section writes nothing");
    }

    #[test]
    fn a_damaged_chunk_is_reported_with_its_file() {
        let data = noise(3, 1024 * 1024);
        let (_d, s) = store();
        let (chunks, _, _) = write(&s, &data, 65536);
        let victim = s.path(&chunks[1].digest);
        fs::write(&victim, zstd::bulk::compress(b"something else", 1).unwrap()).unwrap();
        let mut r = s.reader(&chunks);
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        assert_eq!(r.failed.as_deref(), Some(victim.as_path()));
    }

    #[test]
    fn an_empty_section_has_no_chunks_and_reads_back_empty() {
        let (_d, s) = store();
        let (chunks, size, written) = write(&s, &[], 1);
        assert!(chunks.is_empty());
        assert_eq!((size, written), (0, 0));
        let mut back = Vec::new();
        s.reader(&chunks).read_to_end(&mut back).unwrap();
        assert!(back.is_empty());
    }
}
