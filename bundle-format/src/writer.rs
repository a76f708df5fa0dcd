//! Writing bundles: append-only, so the output may be a pipe or a socket.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::Arc;

use crate::format::*;
use crate::hashpipe::HashPipe;
use crate::{BundleError, Digest, Manifest};

/// How a bundle is written. Readers need none of this: every choice is recorded in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// zstd level. The default is 1: exports and pods are interactive (someone waits for
    /// them), and on state data level 1 compresses about 1.4× faster than zstd's own
    /// default of 3 for a size within a few percent (28 MB of DynamoDB-style JSON records:
    /// 3.69 MB at level 1, 4.13 MB at level 3). Callers that ship bundles over slow links
    /// may pay for more.
    pub level: i32,
    /// Uncompressed bytes per chunk. Bounds the memory of writer and reader; larger
    /// chunks compress slightly better. Must be in `1..=8 MiB` so that default
    /// [`crate::Limits`] accept the result.
    pub chunk_size: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            level: 1,
            chunk_size: 1 << 20,
        }
    }
}

/// Largest chunk size a writer accepts: the default reader limit, so every bundle
/// this crate writes is readable with default limits.
const MAX_WRITE_CHUNK: usize = 8 << 20;

/// Where a [`BundleWriter`]'s bytes go. Every [`io::Write`] is one.
///
/// Why a trait of its own: most of a bundle's bytes are chunk payloads that the writer
/// already holds in reference-counted buffers. An output that sends them on by value (an
/// HTTP response body, whose frames are owned `Bytes`) implements
/// [`BundleOutput::write_shared`] and keeps the buffer instead of copying it; through
/// `io::Write` each byte would be copied once more, on the thread that compresses, which
/// is an export's critical path.
pub trait BundleOutput {
    /// Writes all of `buf`.
    fn write_bytes(&mut self, buf: &[u8]) -> io::Result<()>;

    /// Writes `buf[range]`; the output may keep a clone of `buf` instead of copying (the
    /// writer never changes a buffer it handed out; it takes a fresh one). The default
    /// copies through [`BundleOutput::write_bytes`].
    fn write_shared(&mut self, buf: &Arc<Vec<u8>>, range: Range<usize>) -> io::Result<()> {
        self.write_bytes(buf.get(range).unwrap_or(&[]))
    }

    /// Flushes buffered bytes, once the bundle is complete.
    fn flush_output(&mut self) -> io::Result<()>;
}

impl<W: Write> BundleOutput for W {
    fn write_bytes(&mut self, buf: &[u8]) -> io::Result<()> {
        Write::write_all(self, buf)
    }

    fn flush_output(&mut self) -> io::Result<()> {
        Write::flush(self)
    }
}

struct Out<W: BundleOutput> {
    inner: W,
    pos: u64,
}

impl<W: BundleOutput> Out<W> {
    fn write_all(&mut self, b: &[u8]) -> Result<(), BundleError> {
        self.inner.write_bytes(b)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Writes one record whose payload is `prefix` then `buf[range]`, handing the buffer
    /// to the output (see [`BundleOutput::write_shared`]).
    fn record_shared(
        &mut self,
        kind: u8,
        flags: u8,
        prefix: &[u8],
        buf: &Arc<Vec<u8>>,
        range: Range<usize>,
    ) -> Result<(), BundleError> {
        let data = buf.get(range.clone()).unwrap_or(&[]);
        let len = (prefix.len() + data.len()) as u64;
        let crc = crc(&[prefix, data]);
        self.write_all(&encode_record_header(kind, flags, len))?;
        self.write_all(prefix)?;
        self.inner.write_shared(buf, range)?;
        self.pos += data.len() as u64;
        self.write_all(&crc.to_le_bytes())
    }

    /// Writes one record (header, payload parts, crc) without concatenating the parts.
    fn record(&mut self, kind: u8, flags: u8, parts: &[&[u8]]) -> Result<(), BundleError> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        self.write_all(&encode_record_header(kind, flags, len))?;
        for p in parts {
            self.write_all(p)?;
        }
        self.write_all(&crc(parts).to_le_bytes())
    }
}

/// Writes one bundle front to back, never seeking.
///
/// Streams (sections and blobs) are written in the order the caller gives them;
/// that order, the options and the inputs fully determine the bytes, so the same
/// state gives the same file (apart from the manifest's `created_at`).
///
/// If an error occurs in the middle of a stream, the writer is *poisoned*: every
/// later call fails, because the partial stream cannot be taken back from a pipe.
/// A bundle left unfinished is rejected by every reader as truncated.
pub struct BundleWriter<W: BundleOutput> {
    out: Out<W>,
    opts: WriteOptions,
    cctx: zstd::bulk::Compressor<'static>,
    /// Pending uncompressed bytes of the current chunk.
    chunk: Vec<u8>,
    /// Compressed output buffer, reused while the output does not keep it.
    cbuf: Arc<Vec<u8>>,
    /// Compressed buffers the output kept (lent chunks), reused once it let go of them.
    cpool: Vec<Arc<Vec<u8>>>,
    index: Vec<IndexEntry>,
    blobs: HashSet<Digest>,
    sections: HashSet<String>,
    stream_open: bool,
    poisoned: bool,
    pipe: HashPipe,
}

impl<W: BundleOutput> BundleWriter<W> {
    /// Starts a bundle: writes the header and the manifest, so a reader of a pipe
    /// can report contents before any state arrives.
    pub fn new(out: W, manifest: &Manifest, opts: WriteOptions) -> Result<Self, BundleError> {
        if opts.chunk_size == 0 || opts.chunk_size > MAX_WRITE_CHUNK {
            return Err(BundleError::Usage(format!(
                "chunk_size {} must be between 1 and {MAX_WRITE_CHUNK}",
                opts.chunk_size
            )));
        }
        let cctx = zstd::bulk::Compressor::new(opts.level).map_err(BundleError::Compress)?;
        let json = serde_json::to_vec(manifest).map_err(BundleError::Manifest)?;
        if json.len() as u64 > Limits::default().max_manifest_bytes {
            return Err(BundleError::LimitExceeded {
                what: "manifest size",
                value: json.len() as u64,
                limit: Limits::default().max_manifest_bytes,
            });
        }
        let mut out = Out { inner: out, pos: 0 };
        out.write_all(&encode_header())?;
        out.record(KIND_MANIFEST, 0, &[&json])?;
        Ok(BundleWriter {
            out,
            cbuf: Arc::new(Vec::with_capacity(zstd::zstd_safe::compress_bound(
                opts.chunk_size,
            ))),
            cpool: Vec::new(),
            chunk: Vec::with_capacity(opts.chunk_size),
            opts,
            cctx,
            index: Vec::new(),
            blobs: HashSet::new(),
            sections: HashSet::new(),
            stream_open: false,
            poisoned: false,
            pipe: HashPipe::new(Limits::default().max_window_log),
        })
    }

    fn check_usable(&mut self) -> Result<(), BundleError> {
        // A blob whose digest was still being checked on the hashing thread when `blob`
        // returned reports its mismatch here, and the bundle can no longer be completed.
        if let Err(e) = self.pipe.check() {
            self.poisoned = true;
            return Err(e);
        }
        if self.poisoned {
            return Err(BundleError::Usage(
                "an earlier error left a stream half written; this bundle cannot be completed"
                    .into(),
            ));
        }
        if self.stream_open {
            return Err(BundleError::Usage(
                "a section writer was dropped without finish(); this bundle cannot be completed"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Opens a section stream for one service's state. Streaming (rather than taking a
    /// slice) lets the framework serialize large states without holding them twice.
    pub fn section(
        &mut self,
        service: &str,
        state_version: u32,
    ) -> Result<SectionWriter<'_, W>, BundleError> {
        self.check_usable()?;
        if service.is_empty() || service.len() > Limits::default().max_name_bytes as usize {
            return Err(BundleError::Usage(format!(
                "section name must be 1..={} bytes, got {}",
                Limits::default().max_name_bytes,
                service.len()
            )));
        }
        if !self.sections.insert(service.to_string()) {
            return Err(BundleError::Usage(format!(
                "section {service:?} was already written to this bundle"
            )));
        }
        let start = self.out.pos;
        self.stream_open = true;
        let payload = encode_section_start(service, state_version);
        if let Err(e) = self.out.record(KIND_SECTION_START, 0, &[&payload]) {
            self.poisoned = true;
            return Err(e);
        }
        self.chunk.clear();
        self.pipe.begin();
        Ok(SectionWriter {
            w: self,
            name: service.to_string(),
            state_version,
            start,
            total: 0,
        })
    }

    /// Writes a whole section from memory.
    pub fn write_section(
        &mut self,
        service: &str,
        state_version: u32,
        payload: &[u8],
    ) -> Result<Digest, BundleError> {
        let mut s = self.section(service, state_version)?;
        s.write_all_bytes(payload)?;
        Ok(s.finish()?.0)
    }

    /// Streams one blob, checking that `data` holds exactly `size` bytes hashing to
    /// `digest`: a bundle must never carry a blob under the wrong name. A wrong size fails
    /// this call; a wrong digest fails this call or, when the hash of a large blob was
    /// still running on the hashing thread, the next call or [`BundleWriter::finish`], so a
    /// bundle holding a misnamed blob is never completed. Returns
    /// `Ok(false)` and reads nothing if the digest is already in this bundle.
    pub fn blob(
        &mut self,
        digest: &Digest,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<bool, BundleError> {
        self.blob_checked(digest, size, data, true)
    }

    /// Like [`BundleWriter::blob`], but trusts that `data` hashes to `digest` and only
    /// checks its size: for a caller that streams from a content-addressed store which
    /// verified every blob when it stored it (the framework's blob store names a blob by
    /// the sha256 it computed or verified while writing it).
    ///
    /// Why: re-hashing every byte is the most expensive step of exporting incompressible
    /// blobs (more than reading and compressing them), and it would only catch a store
    /// file damaged after it was written. Every reader still verifies every blob, so such
    /// damage is reported by name when the bundle is read, never loaded.
    pub fn blob_from_verified_store(
        &mut self,
        digest: &Digest,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<bool, BundleError> {
        self.blob_checked(digest, size, data, false)
    }

    fn blob_checked(
        &mut self,
        digest: &Digest,
        size: u64,
        data: &mut dyn Read,
        verify: bool,
    ) -> Result<bool, BundleError> {
        self.check_usable()?;
        if self.blobs.contains(digest) {
            return Ok(false);
        }
        let max = Limits::default().max_blob_bytes;
        if size > max {
            return Err(BundleError::LimitExceeded {
                what: "blob size",
                value: size,
                limit: max,
            });
        }
        let r = self.blob_inner(digest, size, data, verify);
        if r.is_err() {
            self.poisoned = true;
        }
        r?;
        self.blobs.insert(*digest);
        Ok(true)
    }

    fn blob_inner(
        &mut self,
        digest: &Digest,
        size: u64,
        data: &mut dyn Read,
        verify: bool,
    ) -> Result<(), BundleError> {
        let start = self.out.pos;
        let mut p = [0u8; BLOB_START_LEN];
        p[..32].copy_from_slice(&digest.0);
        p[32..].copy_from_slice(&size.to_le_bytes());
        self.out.record(KIND_BLOB_START, 0, &[&p])?;
        self.pipe.begin();
        let mut total = 0u64;
        let result = (|| {
            while total < size {
                let mut buf = self.pipe.take_vec();
                let want = usize::try_from((size - total).min(self.opts.chunk_size as u64))
                    .unwrap_or(self.opts.chunk_size);
                buf.reserve(want);
                // take().read_to_end() loops over short reads, so chunk boundaries (and
                // thus the bytes) never depend on how the source splits its reads.
                let got = data.take(want as u64).read_to_end(&mut buf)?;
                total += got as u64;
                if got < want {
                    return Err(BundleError::SizeMismatch {
                        what: format!("blob {digest}"),
                        expected: size,
                        actual: total,
                    });
                }
                let buf = Arc::new(buf);
                let r = if verify {
                    self.pipe.update_shared(&buf, 0..got)
                } else {
                    Ok(())
                }
                .and_then(|()| self.put_chunk_shared(&buf, 0..got));
                self.pipe.give_back(buf);
                r?;
            }
            let mut probe = [0u8; 1];
            if read_some(data, &mut probe)? > 0 {
                return Err(BundleError::SizeMismatch {
                    what: format!("blob {digest} (more data than declared)"),
                    expected: size,
                    actual: total + 1,
                });
            }
            Ok(())
        })();
        result?;
        if verify {
            self.pipe
                .finish_checked(*digest, "blob data given to the writer")?;
        }
        self.end_stream(size, digest)?;
        self.index.push(IndexEntry {
            id: crate::format::StreamId::Blob {
                digest: *digest,
                size,
            },
            digest: *digest,
            size,
            offset: start,
            stored_bytes: self.out.pos - start,
        });
        Ok(())
    }

    fn end_stream(&mut self, size: u64, digest: &Digest) -> Result<(), BundleError> {
        let mut p = [0u8; STREAM_END_LEN];
        p[..8].copy_from_slice(&size.to_le_bytes());
        p[8..].copy_from_slice(&digest.0);
        self.out.record(KIND_STREAM_END, 0, &[&p])
    }

    /// Compresses `data` into `cbuf`; false if zstd does not shrink it (stored raw).
    fn compress(&mut self, data: &[u8]) -> Result<bool, BundleError> {
        debug_assert!(!data.is_empty() && data.len() <= self.opts.chunk_size);
        u32::try_from(data.len())
            .map_err(|_| BundleError::Usage("chunk larger than 4 GiB".into()))?;
        let cbuf = writable_cbuf(&mut self.cbuf, &mut self.cpool, self.opts.chunk_size);
        cbuf.clear();
        Ok(match self.cctx.compress_to_buffer(data, cbuf) {
            Ok(n) => n < data.len(),
            // Output did not fit (incompressible): store raw.
            Err(_) => false,
        })
    }

    /// Compresses one chunk (or stores it raw if zstd does not shrink it) and writes it.
    fn put_chunk_bytes(&mut self, data: &[u8]) -> Result<(), BundleError> {
        let compressed = self.compress(data)?;
        let len_bytes = (data.len() as u32).to_le_bytes();
        if compressed {
            self.out
                .record(KIND_CHUNK, CHUNK_FLAG_ZSTD, &[&len_bytes, &self.cbuf[..]])
        } else {
            self.out.record(KIND_CHUNK, 0, &[&len_bytes, data])
        }
    }

    /// Like [`BundleWriter::put_chunk_bytes`] for a chunk in a shared buffer: the payload
    /// (the compressed bytes, or `buf` itself when stored raw) goes to the output by
    /// reference ([`BundleOutput::write_shared`]).
    fn put_chunk_shared(
        &mut self,
        buf: &Arc<Vec<u8>>,
        range: Range<usize>,
    ) -> Result<(), BundleError> {
        let data = buf.get(range.clone()).unwrap_or(&[]);
        let compressed = self.compress(data)?;
        let len_bytes = (data.len() as u32).to_le_bytes();
        if !compressed {
            return self
                .out
                .record_shared(KIND_CHUNK, 0, &len_bytes, buf, range);
        }
        // Lent by reference count: an output that keeps it makes the next compression
        // take another buffer (`writable_cbuf`).
        let len = self.cbuf.len();
        self.out
            .record_shared(KIND_CHUNK, CHUNK_FLAG_ZSTD, &len_bytes, &self.cbuf, 0..len)
    }

    /// Writes the index and footer and hands back the output. Without this the
    /// bundle has no footer and readers reject it as truncated.
    pub fn finish(mut self) -> Result<W, BundleError> {
        self.check_usable()?;
        // Every blob's digest must have matched before the index makes the bundle whole.
        if let Err(e) = self.pipe.settle() {
            self.poisoned = true;
            return Err(e);
        }
        let index_offset = self.out.pos;
        let payload = encode_index(&self.index);
        self.out.record(KIND_INDEX, 0, &[&payload])?;
        let index_len = self.out.pos - index_offset;
        self.out
            .write_all(&encode_footer(index_offset, index_len))?;
        self.out.inner.flush_output()?;
        Ok(self.out.inner)
    }

    /// Bytes written so far (for progress reporting).
    pub fn bytes_written(&self) -> u64 {
        self.out.pos
    }
}

/// Compressed buffers kept for reuse while an output holds lent ones.
const CPOOL: usize = 16;

/// `cbuf` made writable: as it is when nobody else holds it (an output that copies), else
/// swapped for a free buffer from `pool` or a new one, each with room for zstd's worst case
/// on a chunk (less would make zstd give up, changing the bytes).
fn writable_cbuf<'a>(
    cbuf: &'a mut Arc<Vec<u8>>,
    pool: &mut Vec<Arc<Vec<u8>>>,
    chunk_size: usize,
) -> &'a mut Vec<u8> {
    if Arc::get_mut(cbuf).is_none() {
        let next = match pool.iter().position(|b| Arc::strong_count(b) == 1) {
            Some(i) => pool.swap_remove(i),
            None => Arc::new(Vec::with_capacity(zstd::zstd_safe::compress_bound(
                chunk_size,
            ))),
        };
        let lent = std::mem::replace(cbuf, next);
        if pool.len() < CPOOL {
            pool.push(lent);
        }
    }
    // Unique now, so this never clones.
    Arc::make_mut(cbuf)
}

fn read_some(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// An open section stream; bytes written to it are chunked and compressed as they
/// arrive, so memory stays at one chunk whatever the section size.
///
/// Call [`SectionWriter::finish`]; dropping it instead leaves the bundle unusable.
pub struct SectionWriter<'a, W: BundleOutput> {
    w: &'a mut BundleWriter<W>,
    name: String,
    state_version: u32,
    start: u64,
    total: u64,
}

impl<W: BundleOutput> SectionWriter<'_, W> {
    fn write_all_bytes(&mut self, mut buf: &[u8]) -> Result<(), BundleError> {
        let cs = self.w.opts.chunk_size;
        let len = buf.len() as u64;
        let max = Limits::default().max_section_bytes;
        if self.total.saturating_add(len) > max {
            self.w.poisoned = true;
            return Err(BundleError::LimitExceeded {
                what: "section size",
                value: self.total.saturating_add(len),
                limit: max,
            });
        }
        let r = (|| {
            while !buf.is_empty() {
                if self.w.chunk.is_empty() && buf.len() >= cs {
                    // Fast path: a full chunk straight from the caller's slice, no copy.
                    let (c, rest) = buf.split_at(cs);
                    self.w.pipe.update_slice(c)?;
                    self.w.put_chunk_bytes(c)?;
                    buf = rest;
                    continue;
                }
                let take = (cs - self.w.chunk.len()).min(buf.len());
                self.w.chunk.extend_from_slice(&buf[..take]);
                buf = &buf[take..];
                if self.w.chunk.len() == cs {
                    self.flush_chunk()?;
                }
            }
            Ok(())
        })();
        match r {
            Ok(()) => {
                self.total += len;
                Ok(())
            }
            Err(e) => {
                self.w.poisoned = true;
                Err(e)
            }
        }
    }

    fn flush_chunk(&mut self) -> Result<(), BundleError> {
        if self.w.chunk.is_empty() {
            return Ok(());
        }
        let chunk = Arc::new(std::mem::take(&mut self.w.chunk));
        let r = self
            .w
            .pipe
            .update_shared(&chunk, 0..chunk.len())
            .and_then(|()| self.w.put_chunk_shared(&chunk, 0..chunk.len()));
        self.w.pipe.give_back(chunk);
        self.w.chunk = self.w.pipe.take_vec();
        self.w.chunk.reserve(self.w.opts.chunk_size);
        r
    }

    /// Ends the section; returns the sha256 and size of its uncompressed bytes, which
    /// the framework stores to address the section in content-addressed stores.
    pub fn finish(mut self) -> Result<(Digest, u64), BundleError> {
        let r = (|| {
            self.flush_chunk()?;
            let digest = self.w.pipe.finish()?;
            self.w.end_stream(self.total, &digest)?;
            self.w.index.push(IndexEntry {
                id: crate::format::StreamId::Section {
                    name: std::mem::take(&mut self.name),
                    state_version: self.state_version,
                },
                digest,
                size: self.total,
                offset: self.start,
                stored_bytes: self.w.out.pos - self.start,
            });
            Ok((digest, self.total))
        })();
        match r {
            Ok(v) => {
                self.w.stream_open = false;
                Ok(v)
            }
            Err(e) => {
                self.w.poisoned = true;
                Err(e)
            }
        }
    }
}

impl<W: BundleOutput> Write for SectionWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all_bytes(buf).map_err(BundleError::into_io)?;
        Ok(buf.len())
    }

    /// Does nothing: chunk boundaries must not depend on when the caller flushes,
    /// or the same state would give different bytes.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
