//! Reading bundles: sequentially from any `Read`, or randomly through the index.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use crate::format::*;
use crate::hashpipe::{HashPipe, StreamSink, decompressor, unpack};
use crate::{BundleError, Digest, Manifest};

/// A section as listed by the index (or as seen by [`crate::verify`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionInfo {
    /// Service name.
    pub service: String,
    /// Schema version of the payload.
    pub state_version: u32,
    /// sha256 of the uncompressed section bytes.
    pub digest: Digest,
    /// Uncompressed size.
    pub size: u64,
    /// Bytes the stream occupies in the file (start record to end record inclusive).
    pub stored_bytes: u64,
    /// File offset of the stream's start record.
    pub offset: u64,
}

/// A blob as listed by the index (or as seen by [`crate::verify`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    /// sha256 of the blob, its identity.
    pub digest: Digest,
    /// Uncompressed size.
    pub size: u64,
    /// Bytes the stream occupies in the file.
    pub stored_bytes: u64,
    /// File offset of the stream's start record.
    pub offset: u64,
}

fn split_infos(entries: &[IndexEntry]) -> (Vec<SectionInfo>, Vec<BlobInfo>) {
    let mut sections = Vec::new();
    let mut blobs = Vec::new();
    for e in entries {
        match &e.id {
            StreamId::Section {
                name,
                state_version,
            } => sections.push(SectionInfo {
                service: name.clone(),
                state_version: *state_version,
                digest: e.digest,
                size: e.size,
                stored_bytes: e.stored_bytes,
                offset: e.offset,
            }),
            StreamId::Blob { digest, size } => blobs.push(BlobInfo {
                digest: *digest,
                size: *size,
                stored_bytes: e.stored_bytes,
                offset: e.offset,
            }),
        }
    }
    (sections, blobs)
}

/// Piped blobs up to this size reach the hashing thread still compressed, which then does
/// all of their work (see `hashpipe`); larger ones are decompressed here and hashed and
/// written there. Why both: a small blob is too little work to split, and keeping it on one
/// core saved 15–18 % of a piped read of 100 KiB blobs (each byte stays in one core's
/// cache, no decompressed chunk crosses between threads); the other core takes the next
/// blob. But one large blob on one core would leave the other idle: a bundle holding a
/// single 256 MiB blob read 1.8× slower that way than split. Split, a large blob still
/// keeps both cores busy, one decompressing, the other hashing and writing.
const PACKED_MAX: u64 = 4 << 20;

/// The stream currently being read.
struct Cur {
    id: StreamId,
    start: u64,
    /// Digest and size the stream must have, when known before its end (blob start
    /// record, or the index for random access).
    expect: Option<(Digest, u64)>,
    /// File offset at which the stream must end (random access only).
    expect_end: Option<u64>,
    limit: u64,
    total: u64,
    done: bool,
    failed: bool,
    /// Handed to a sink: its digest is checked on the hashing thread.
    piped: bool,
}

impl Cur {
    fn what(&self) -> String {
        match &self.id {
            StreamId::Section { name, .. } => format!("section {name:?}"),
            StreamId::Blob { digest, .. } => format!("blob {digest}"),
        }
    }
}

/// Shared reading machinery: a counting reader, reusable buffers, one zstd context.
struct Core<R> {
    r: R,
    pos: u64,
    limits: Limits,
    dctx: zstd::bulk::Decompressor<'static>,
    /// Raw record payload, reused.
    rec: Vec<u8>,
    /// Raw CHUNK payload (compressed chunk), reused (see [`Core::read_chunk_payload`]).
    chunk_rec: Vec<u8>,
    /// The chunk being handed out (shared with the hashing thread) and the
    /// unread part of it.
    serve: Option<Arc<Vec<u8>>>,
    serve_pos: usize,
    serve_end: usize,
    pipe: HashPipe,
    cur: Option<Cur>,
    /// Streams completed so far, in order, for the index cross-check.
    seen: Vec<IndexEntry>,
    /// Whether a piped stream's verification may finish after `pipe_to` returns (the
    /// sequential reader reports it by its next call); random access waits for it.
    defer_verification: bool,
}

impl<R: Read> Core<R> {
    fn new(r: R, limits: Limits) -> Result<Self, BundleError> {
        let dctx_window = limits.max_window_log;
        let dctx = decompressor(dctx_window)?;
        Ok(Core {
            r,
            pos: 0,
            limits,
            dctx,
            rec: Vec::new(),
            chunk_rec: Vec::new(),
            serve: None,
            pipe: HashPipe::new(dctx_window),
            serve_pos: 0,
            serve_end: 0,
            cur: None,
            seen: Vec::new(),
            defer_verification: false,
        })
    }

    /// Fills `buf` completely or fails with `Truncated` at the offset where input ended.
    fn read_full(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), BundleError> {
        let mut done = 0;
        while done < buf.len() {
            match self.r.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(BundleError::Truncated {
                        offset: self.pos,
                        what,
                    });
                }
                Ok(n) => {
                    done += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(BundleError::Io(e)),
            }
        }
        Ok(())
    }

    /// Reads `len` payload bytes plus the crc into `self.rec` and checks the crc.
    /// `len` must already be bounded by the caller. Grows the buffer only as data
    /// actually arrives, so a lying length on a short input costs no memory.
    fn read_payload(&mut self, h: &RecordHeader, what: &'static str) -> Result<(), BundleError> {
        let mut rec = std::mem::take(&mut self.rec);
        let r = self.read_payload_into(&mut rec, h, what);
        self.rec = rec;
        r
    }

    /// [`Core::read_payload`] for CHUNK records, into a buffer of their own. Why: chunk
    /// payloads have similar sizes, so the bytes the last one initialized are read over
    /// instead of being zeroed again (the small start and end records in between would
    /// otherwise shrink the buffer each time; zeroing was ~0.5 % of an import's CPU).
    fn read_chunk_payload(&mut self, h: &RecordHeader) -> Result<(), BundleError> {
        let mut rec = std::mem::take(&mut self.chunk_rec);
        let r = self.read_payload_into(&mut rec, h, "chunk");
        self.chunk_rec = rec;
        r
    }

    fn read_payload_into(
        &mut self,
        rec: &mut Vec<u8>,
        h: &RecordHeader,
        what: &'static str,
    ) -> Result<(), BundleError> {
        let len = usize::try_from(h.len).map_err(|_| BundleError::LimitExceeded {
            what,
            value: h.len,
            limit: usize::MAX as u64,
        })?;
        if rec.capacity() == 0 {
            *rec = self.pipe.take_vec_dirty();
        }
        // Bytes an earlier payload initialized are read over; only growth past them is
        // zero-filled, in steps, as data arrives.
        rec.truncate(len);
        let reuse = rec.len();
        self.read_full(&mut rec[..reuse], what)?;
        const STEP: usize = 4 << 20;
        while rec.len() < len {
            let old = rec.len();
            let n = (len - old).min(STEP.max(old));
            rec.resize(old + n, 0);
            self.read_full(&mut rec[old..], what)?;
        }
        let mut c = [0u8; 4];
        self.read_full(&mut c, what)?;
        if !crc_matches(crc(&[rec]), u32::from_le_bytes(c)) {
            return Err(BundleError::Checksum {
                offset: h.offset,
                what,
            });
        }
        Ok(())
    }

    /// Skips a record of unknown kind, still checking its crc, without allocating.
    fn skip_payload(&mut self, h: &RecordHeader) -> Result<(), BundleError> {
        let mut left = h.len;
        let mut hasher = crc32fast::Hasher::new();
        let mut buf = [0u8; 8192];
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            self.read_full(&mut buf[..n], "unknown record")?;
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        let mut c = [0u8; 4];
        self.read_full(&mut c, "unknown record")?;
        if !crc_matches(hasher.finalize(), u32::from_le_bytes(c)) {
            return Err(BundleError::Checksum {
                offset: h.offset,
                what: "unknown record",
            });
        }
        Ok(())
    }

    fn read_record_header(&mut self, what: &'static str) -> Result<RecordHeader, BundleError> {
        let offset = self.pos;
        let mut h = [0u8; RECORD_HEADER_LEN];
        self.read_full(&mut h, what)?;
        decode_record_header(&h, offset)
    }

    /// Next record header whose kind this version knows; unknown kinds are skipped.
    fn next_known(&mut self, what: &'static str) -> Result<RecordHeader, BundleError> {
        loop {
            let h = self.read_record_header(what)?;
            match h.kind {
                KIND_MANIFEST | KIND_SECTION_START | KIND_BLOB_START | KIND_CHUNK
                | KIND_STREAM_END | KIND_INDEX => return Ok(h),
                _ => self.skip_payload(&h)?,
            }
        }
    }

    fn bounded(&self, h: &RecordHeader, what: &'static str, limit: u64) -> Result<(), BundleError> {
        if h.len > limit {
            return Err(BundleError::LimitExceeded {
                what,
                value: h.len,
                limit,
            });
        }
        Ok(())
    }

    fn read_header_and_manifest(&mut self) -> Result<Manifest, BundleError> {
        let mut h = [0u8; HEADER_LEN];
        self.read_full(&mut h, "file header")?;
        check_header(&h)?;
        let rh = self.read_record_header("manifest record header")?;
        if rh.kind != KIND_MANIFEST {
            return Err(BundleError::malformed(
                rh.offset,
                format!(
                    "expected the manifest record, found record kind 0x{:02x}",
                    rh.kind
                ),
            ));
        }
        self.bounded(&rh, "manifest size", self.limits.max_manifest_bytes)?;
        self.read_payload(&rh, "manifest")?;
        serde_json::from_slice(&self.rec).map_err(BundleError::Manifest)
    }

    /// Reads a stream start record whose header was already read.
    fn start_stream(&mut self, h: &RecordHeader) -> Result<StreamId, BundleError> {
        let max = match h.kind {
            KIND_SECTION_START => SECTION_START_FIXED as u64 + self.limits.max_name_bytes,
            _ => BLOB_START_LEN as u64,
        };
        self.bounded(h, "stream start record length", max)?;
        self.read_payload(h, "stream start record")?;
        decode_start(h, &self.rec, &self.limits)
    }

    fn begin(
        &mut self,
        id: StreamId,
        start: u64,
        expect: Option<(Digest, u64)>,
        expect_end: Option<u64>,
    ) {
        let (limit, expect) = match &id {
            StreamId::Section { .. } => (self.limits.max_section_bytes, expect),
            StreamId::Blob { digest, size } => (*size, expect.or(Some((*digest, *size)))),
        };
        self.release_serve();
        self.pipe.begin();
        self.cur = Some(Cur {
            id,
            start,
            expect,
            expect_end,
            limit,
            total: 0,
            done: false,
            failed: false,
            piped: false,
        });
    }

    /// Decodes the next chunk of the current stream into the serve buffer, or
    /// verifies and finishes the stream at its end record.
    fn advance(&mut self) -> Result<(), BundleError> {
        let r = self.advance_inner();
        if r.is_err()
            && let Some(c) = self.cur.as_mut()
        {
            c.failed = true;
        }
        r
    }

    fn advance_inner(&mut self) -> Result<(), BundleError> {
        let Some(cur) = self.cur.as_ref() else {
            return Ok(());
        };
        if cur.failed {
            return Err(BundleError::malformed(
                self.pos,
                format!("{} already failed verification", cur.what()),
            ));
        }
        if cur.done {
            return Ok(());
        }
        let h = self.next_known("stream record header")?;
        match h.kind {
            KIND_CHUNK => self.read_chunk(&h),
            KIND_STREAM_END => self.end_stream(&h),
            other => Err(BundleError::malformed(
                h.offset,
                format!("expected a chunk or stream end record, found kind 0x{other:02x}"),
            )),
        }
    }

    fn read_chunk(&mut self, h: &RecordHeader) -> Result<(), BundleError> {
        let max_chunk = self.limits.max_chunk_bytes;
        self.bounded(h, "chunk record length", max_chunk.saturating_add(4))?;
        if h.flags & !CHUNK_FLAG_ZSTD != 0 {
            return Err(BundleError::malformed(
                h.offset,
                format!("unknown chunk flags 0x{:02x}", h.flags),
            ));
        }
        if h.len < 5 {
            return Err(BundleError::malformed(h.offset, "chunk record too short"));
        }
        self.read_chunk_payload(h)?;
        let raw_len = u64::from(u32_at(&self.chunk_rec, 0));
        let off = h.payload_offset();
        if raw_len == 0 {
            return Err(BundleError::malformed(off, "empty chunk"));
        }
        if raw_len > max_chunk {
            return Err(BundleError::LimitExceeded {
                what: "chunk size",
                value: raw_len,
                limit: max_chunk,
            });
        }
        let Some(cur) = self.cur.as_ref() else {
            return Err(BundleError::malformed(off, "chunk outside a stream"));
        };
        let new_total = cur.total.saturating_add(raw_len);
        // Small piped blobs go to the hashing thread whole, large ones split (see
        // `PACKED_MAX`).
        let packable =
            cur.piped && matches!(cur.id, StreamId::Blob { size, .. } if size <= PACKED_MAX);
        if new_total > cur.limit {
            return Err(match &cur.id {
                StreamId::Section { .. } => BundleError::LimitExceeded {
                    what: "section size",
                    value: new_total,
                    limit: cur.limit,
                },
                StreamId::Blob { size, .. } => BundleError::SizeMismatch {
                    what: cur.what(),
                    expected: *size,
                    actual: new_total,
                },
            });
        }
        // raw_len <= max_chunk_bytes, which was checked to fit usize via the record length.
        let raw =
            usize::try_from(raw_len).map_err(|_| BundleError::malformed(off, "chunk too large"))?;
        self.release_serve();
        let zstd = h.flags & CHUNK_FLAG_ZSTD != 0;
        if zstd && packable && self.pipe.route_packed()? {
            // The helper decompresses, hashes and writes it (see `hashpipe`); checking
            // its size against `raw_len` is then the helper's, reported like a digest.
            let payload = Arc::new(std::mem::take(&mut self.chunk_rec));
            let sent = self
                .pipe
                .send_packed(&payload, 4..payload.len(), raw, h.offset);
            self.pipe.give_back(payload);
            sent?;
            if let Some(cur) = self.cur.as_mut() {
                cur.total = new_total;
            }
            return Ok(());
        }
        let (buf, range) = if zstd {
            let mut out = self.pipe.take_vec();
            out.reserve_exact(raw);
            unpack(
                &mut self.dctx,
                &self.chunk_rec[4..],
                &mut out,
                raw,
                h.offset,
            )?;
            (out, 0..raw)
        } else {
            if self.chunk_rec.len() - 4 != raw {
                return Err(BundleError::malformed(
                    off,
                    "stored chunk length differs from its declared size",
                ));
            }
            // Serve the payload buffer itself: no copy for stored chunks.
            (std::mem::take(&mut self.chunk_rec), 4..4 + raw)
        };
        let buf = Arc::new(buf);
        self.pipe.update_shared(&buf, range.clone())?;
        self.serve_pos = range.start;
        self.serve_end = range.end;
        self.serve = Some(buf);
        if let Some(cur) = self.cur.as_mut() {
            cur.total = new_total;
        }
        Ok(())
    }

    fn end_stream(&mut self, h: &RecordHeader) -> Result<(), BundleError> {
        if h.len != STREAM_END_LEN as u64 {
            return Err(BundleError::malformed(
                h.offset,
                "stream end record has the wrong length",
            ));
        }
        self.read_payload(h, "stream end record")?;
        let size = u64_at(&self.rec, 0);
        let digest = digest_at(&self.rec, 8);
        let end = self.pos;
        let piped = self.cur.as_ref().is_some_and(|c| c.piped);
        // A piped stream's digest is compared on the hashing thread, after the checks
        // below (which are what the reading thread knows by now) passed.
        let actual = if piped {
            None
        } else {
            Some(self.pipe.finish()?)
        };
        let Some(cur) = self.cur.as_mut() else {
            return Err(BundleError::malformed(
                h.offset,
                "stream end outside a stream",
            ));
        };
        let what = cur.what();
        if size != cur.total {
            return Err(BundleError::SizeMismatch {
                what,
                expected: size,
                actual: cur.total,
            });
        }
        if let Some(actual) = actual
            && digest != actual
        {
            return Err(BundleError::DigestMismatch {
                what,
                expected: digest,
                actual,
            });
        }
        if let Some((d, s)) = cur.expect {
            if s != size {
                return Err(BundleError::SizeMismatch {
                    what,
                    expected: s,
                    actual: size,
                });
            }
            if d != digest {
                return Err(BundleError::DigestMismatch {
                    what,
                    expected: d,
                    actual: digest,
                });
            }
        }
        if let Some(e) = cur.expect_end
            && e != end
        {
            return Err(BundleError::malformed(
                end,
                format!("{what} ends at offset {end}, the index says {e}"),
            ));
        }
        cur.done = true;
        self.seen.push(IndexEntry {
            id: cur.id.clone(),
            digest,
            size,
            offset: cur.start,
            stored_bytes: end - cur.start,
        });
        if piped {
            self.pipe.finish_piped(digest)?;
        }
        Ok(())
    }

    /// Reads the rest of the current stream (verifying it) without handing it out.
    fn drain(&mut self) -> Result<(), BundleError> {
        while self.cur.as_ref().is_some_and(|c| !c.done) {
            self.advance()?;
        }
        self.release_serve();
        Ok(())
    }

    /// Returns the served chunk's buffer to the pool.
    fn release_serve(&mut self) {
        self.serve_pos = 0;
        self.serve_end = 0;
        if let Some(b) = self.serve.take() {
            self.pipe.give_back(b);
        }
    }

    fn read_index_payload(&mut self, h: &RecordHeader) -> Result<Vec<IndexEntry>, BundleError> {
        let max = (self.limits.max_index_entries)
            .saturating_mul(INDEX_ENTRY_MIN as u64 + self.limits.max_name_bytes)
            .saturating_add(8);
        self.bounded(h, "index length", max)?;
        self.read_payload(h, "index")?;
        let entries = decode_index(&self.rec, h.payload_offset(), &self.limits)?;
        // Index payloads can be large; do not keep the buffer around.
        self.rec = Vec::new();
        Ok(entries)
    }
}

/// Reads a bundle front to back from any `Read` (a pipe, an HTTP body): nothing is
/// buffered beyond one chunk, and everything is verified on the way.
pub struct BundleReader<R: Read> {
    core: Core<R>,
    manifest: Manifest,
    finished: bool,
}

impl<R: Read> BundleReader<R> {
    /// Reads and checks the header and the manifest.
    pub fn new(r: R, limits: Limits) -> Result<Self, BundleError> {
        let mut core = Core::new(r, limits)?;
        core.defer_verification = true;
        let manifest = core.read_header_and_manifest()?;
        Ok(BundleReader {
            core,
            manifest,
            finished: false,
        })
    }

    /// What the bundle says it holds.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The next section or blob. An entry whose stream was not read to the end is
    /// skipped but still verified, so "no error" always means "every byte checked".
    /// Returns `Ok(None)` once the index and footer were read and matched against
    /// the streams seen.
    pub fn next_entry(&mut self) -> Result<Option<Entry<'_, R>>, BundleError> {
        if self.finished {
            return Ok(None);
        }
        self.core.pipe.check()?;
        self.core.drain()?;
        self.core.cur = None;
        let h = self.core.next_known("record header")?;
        match h.kind {
            KIND_SECTION_START | KIND_BLOB_START => {
                let id = self.core.start_stream(&h)?;
                self.core.begin(id.clone(), h.offset, None, None);
                let reader = StreamReader {
                    core: &mut self.core,
                };
                Ok(Some(match id {
                    StreamId::Section {
                        name,
                        state_version,
                    } => Entry::Section {
                        service: name,
                        state_version,
                        reader,
                    },
                    StreamId::Blob { digest, size } => Entry::Blob {
                        digest,
                        size,
                        reader,
                    },
                }))
            }
            KIND_INDEX => {
                self.finish_index(&h)?;
                // "The end" must mean every piped stream was verified and committed too.
                self.core.pipe.settle()?;
                self.finished = true;
                Ok(None)
            }
            other => Err(BundleError::malformed(
                h.offset,
                format!("expected a stream start or the index, found record kind 0x{other:02x}"),
            )),
        }
    }

    fn finish_index(&mut self, h: &RecordHeader) -> Result<(), BundleError> {
        let entries = self.core.read_index_payload(h)?;
        if entries.len() != self.core.seen.len() {
            return Err(BundleError::malformed(
                h.offset,
                format!(
                    "index lists {} streams but {} were read",
                    entries.len(),
                    self.core.seen.len()
                ),
            ));
        }
        for (e, s) in entries.iter().zip(&self.core.seen) {
            if e != s {
                return Err(BundleError::malformed(
                    h.offset,
                    format!(
                        "index entry for the stream at offset {} does not match the stream",
                        s.offset
                    ),
                ));
            }
        }
        let index_len = self.core.pos - h.offset;
        let footer_at = self.core.pos;
        let mut f = [0u8; FOOTER_LEN];
        self.core.read_full(&mut f, "footer")?;
        let (off, len) = decode_footer(&f, footer_at)?;
        if off != h.offset || len != index_len {
            return Err(BundleError::malformed(
                footer_at,
                format!(
                    "footer points to an index at {off} (+{len}), but it is at {} (+{index_len})",
                    h.offset
                ),
            ));
        }
        let mut probe = [0u8; 1];
        loop {
            match self.core.r.read(&mut probe) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(BundleError::malformed(
                        self.core.pos + FOOTER_LEN as u64,
                        "trailing data after the footer",
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(BundleError::Io(e)),
            }
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.core.pos
    }
}

/// One stream of a bundle, as handed out by [`BundleReader::next_entry`].
pub enum Entry<'a, R: Read> {
    /// A service's state section.
    Section {
        /// Service name.
        service: String,
        /// Payload schema version.
        state_version: u32,
        /// The uncompressed, verified payload.
        reader: StreamReader<'a, R>,
    },
    /// A content-addressed blob.
    Blob {
        /// Its sha256 (verified by the reader at the end).
        digest: Digest,
        /// Its size (verified by the reader at the end).
        size: u64,
        /// The blob bytes.
        reader: StreamReader<'a, R>,
    },
}

/// The uncompressed bytes of one stream.
///
/// Reading it to EOF means the data was verified: on any mismatch (chunk crc, total
/// size, sha256) `read` returns an `io::Error` wrapping a [`BundleError`] (recover it
/// with [`BundleError::from_io`]) instead of reporting EOF.
pub struct StreamReader<'a, R> {
    core: &'a mut Core<R>,
}

impl<R: Read> StreamReader<'_, R> {
    /// Hands the whole stream to `sink`, which receives its chunks and, once the size and
    /// sha256 matched, a commit (see [`StreamSink`]). The calls come from the reader's
    /// hashing thread, or, for a stream that starts while that thread is behind, from the
    /// calling thread; streams may therefore be committed out of file order.
    ///
    /// Why: reading through `Read` makes the reading thread wait at every stream's end
    /// for its hash, and do the consumer's work (writing a file, say) itself. Piped, a
    /// stream goes to the hashing thread still compressed (it decompresses, hashes and
    /// feeds the sink), and the reading thread takes whole streams on itself only while
    /// that thread is behind, so importing many blobs keeps both cores busy and each byte
    /// in one core's cache.
    ///
    /// From a [`BundleReader`], this returns once the stream was read and its structure
    /// checked; a digest mismatch or a sink failure is returned by the next
    /// [`BundleReader::next_entry`], and `next_entry` returns `Ok(None)` only after every
    /// piped stream was verified and committed. From a [`SeekableBundle`], it returns
    /// after the commit. The stream must not have been read from before.
    pub fn pipe_to(self, sink: Box<dyn StreamSink>) -> Result<(), BundleError> {
        let c = self.core;
        let Some(cur) = c.cur.as_mut() else {
            return Err(BundleError::malformed(c.pos, "no stream to pipe"));
        };
        if cur.total != 0 || cur.done || cur.failed || cur.piped {
            return Err(BundleError::malformed(
                c.pos,
                format!("{} was already read from", cur.what()),
            ));
        }
        cur.piped = true;
        let what = cur.what();
        c.pipe.begin_sink(sink, what)?;
        while c.cur.as_ref().is_some_and(|c| !c.done) {
            c.advance()?;
            c.release_serve();
        }
        if !c.defer_verification {
            c.pipe.settle()?;
        }
        Ok(())
    }

    /// Reads the whole stream into memory and returns the typed error on failure;
    /// convenient for small sections.
    pub fn read_all(mut self) -> Result<Vec<u8>, BundleError> {
        let mut v = Vec::new();
        self.read_to_end(&mut v).map_err(BundleError::from_io)?;
        Ok(v)
    }
}

impl<R: Read> Read for StreamReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let c = &mut *self.core;
            if let Some(src) = c.serve.as_ref().filter(|_| c.serve_pos < c.serve_end) {
                let n = (c.serve_end - c.serve_pos).min(buf.len());
                if let (Some(dst), Some(from)) =
                    (buf.get_mut(..n), src.get(c.serve_pos..c.serve_pos + n))
                {
                    dst.copy_from_slice(from);
                }
                c.serve_pos += n;
                return Ok(n);
            }
            match c.cur.as_ref() {
                None => return Ok(0),
                Some(cur) if cur.done => return Ok(0),
                Some(_) => c.advance().map_err(BundleError::into_io)?,
            }
        }
    }
}

/// Random access to a bundle in a file: one section can be read without the others.
pub struct SeekableBundle<R: Read + Seek> {
    core: Core<R>,
    manifest: Manifest,
    entries: Vec<IndexEntry>,
}

impl<R: Read + Seek> SeekableBundle<R> {
    /// Reads the header, manifest, footer and index, checking each checksum and the
    /// index's consistency (offsets inside the data area, no duplicates).
    pub fn open(r: R, limits: Limits) -> Result<Self, BundleError> {
        let mut core = Core::new(r, limits)?;
        let manifest = core.read_header_and_manifest()?;
        let data_start = core.pos;
        let file_len = core.r.seek(SeekFrom::End(0))?;
        if file_len < data_start + FOOTER_LEN as u64 {
            return Err(BundleError::Truncated {
                offset: file_len,
                what: "footer",
            });
        }
        let footer_at = file_len - FOOTER_LEN as u64;
        core.r.seek(SeekFrom::Start(footer_at))?;
        core.pos = footer_at;
        let mut f = [0u8; FOOTER_LEN];
        core.read_full(&mut f, "footer")?;
        let (index_offset, index_len) = decode_footer(&f, footer_at)?;
        if index_offset < data_start || index_offset.checked_add(index_len) != Some(footer_at) {
            return Err(BundleError::malformed(
                footer_at,
                format!(
                    "footer points to an index at {index_offset} (+{index_len}) outside the data area"
                ),
            ));
        }
        core.r.seek(SeekFrom::Start(index_offset))?;
        core.pos = index_offset;
        let h = core.read_record_header("index record header")?;
        if h.kind != KIND_INDEX {
            return Err(BundleError::malformed(
                h.offset,
                format!(
                    "footer points to record kind 0x{:02x}, not the index",
                    h.kind
                ),
            ));
        }
        if h.len
            .checked_add((RECORD_HEADER_LEN + RECORD_TRAILER_LEN) as u64)
            != Some(index_len)
        {
            return Err(BundleError::malformed(
                h.offset,
                "index record length disagrees with the footer",
            ));
        }
        let entries = core.read_index_payload(&h)?;
        let mut names = std::collections::HashSet::new();
        let mut digests = std::collections::HashSet::new();
        let mut prev_end = data_start;
        for e in &entries {
            let end = e.offset.checked_add(e.stored_bytes);
            if e.offset < prev_end || end.is_none_or(|x| x > index_offset) {
                return Err(BundleError::malformed(
                    h.offset,
                    format!(
                        "index entry at offset {} lies outside the data area or overlaps",
                        e.offset
                    ),
                ));
            }
            prev_end = end.unwrap_or(index_offset);
            let fresh = match &e.id {
                StreamId::Section { name, .. } => names.insert(name.clone()),
                StreamId::Blob { digest, .. } => digests.insert(*digest),
            };
            if !fresh {
                return Err(BundleError::malformed(
                    h.offset,
                    "index lists the same stream twice",
                ));
            }
        }
        Ok(SeekableBundle {
            core,
            manifest,
            entries,
        })
    }

    /// What the bundle says it holds.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Sections listed in the index, in file order.
    pub fn sections(&self) -> Vec<SectionInfo> {
        split_infos(&self.entries).0
    }

    /// Blobs listed in the index, in file order.
    pub fn blobs(&self) -> Vec<BlobInfo> {
        split_infos(&self.entries).1
    }

    /// The verified payload of one service's section, or `None` if the bundle has none.
    pub fn open_section(
        &mut self,
        service: &str,
    ) -> Result<Option<StreamReader<'_, R>>, BundleError> {
        let found = self
            .entries
            .iter()
            .position(|e| matches!(&e.id, StreamId::Section { name, .. } if name == service));
        self.open_at(found)
    }

    /// The verified bytes of one blob, or `None` if the bundle does not hold it.
    pub fn open_blob(
        &mut self,
        digest: &Digest,
    ) -> Result<Option<StreamReader<'_, R>>, BundleError> {
        let found = self
            .entries
            .iter()
            .position(|e| matches!(&e.id, StreamId::Blob { digest: d, .. } if d == digest));
        self.open_at(found)
    }

    fn open_at(&mut self, i: Option<usize>) -> Result<Option<StreamReader<'_, R>>, BundleError> {
        let Some(e) = i.and_then(|i| self.entries.get(i)).cloned() else {
            return Ok(None);
        };
        self.core.cur = None;
        self.core.seen.clear();
        self.core.r.seek(SeekFrom::Start(e.offset))?;
        self.core.pos = e.offset;
        let h = self.core.next_known("stream start record header")?;
        if h.offset != e.offset || !matches!(h.kind, KIND_SECTION_START | KIND_BLOB_START) {
            return Err(BundleError::malformed(
                h.offset,
                "index points to a record that is not a stream start",
            ));
        }
        let id = self.core.start_stream(&h)?;
        if id != e.id {
            return Err(BundleError::malformed(
                h.offset,
                "stream start record does not match its index entry",
            ));
        }
        self.core.begin(
            id,
            e.offset,
            Some((e.digest, e.size)),
            e.offset.checked_add(e.stored_bytes),
        );
        Ok(Some(StreamReader {
            core: &mut self.core,
        }))
    }
}

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The manifest.
    pub manifest: Manifest,
    /// Every section, in file order.
    pub sections: Vec<SectionInfo>,
    /// Every blob, in file order.
    pub blobs: Vec<BlobInfo>,
    /// Size of the bundle in bytes.
    pub total_bytes: u64,
}

/// Reads the whole bundle and checks everything: every record checksum, every chunk,
/// every stream's size and sha256, the index against the streams actually read, and
/// the footer. `Ok` means the file is intact; backs `cryopod bundle verify`.
pub fn verify<R: Read>(r: R, limits: Limits) -> Result<VerifyReport, BundleError> {
    let mut br = BundleReader::new(r, limits)?;
    while let Some(entry) = br.next_entry()? {
        let mut reader = match entry {
            Entry::Section { reader, .. } | Entry::Blob { reader, .. } => reader,
        };
        io::copy(&mut reader, &mut io::sink()).map_err(BundleError::from_io)?;
    }
    let (sections, blobs) = split_infos(&br.core.seen);
    Ok(VerifyReport {
        manifest: br.manifest,
        sections,
        blobs,
        total_bytes: br.core.pos,
    })
}
