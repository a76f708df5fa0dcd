//! sha256 on a second thread.
//!
//! Hashing (about 1.5–2 GB/s even with SHA-NI) costs as much as zstd decompression,
//! so doing both on one thread would make reading a bundle twice as slow as raw
//! decompression. Streams of more than one small chunk hand their chunks to a helper
//! thread instead; small streams stay inline to avoid a thread round trip per blob.
//! Chunk buffers are shared with the helper through `Arc`s and recycled through a
//! small pool, whose size is bounded by the channel's capacity.
//!
//! A reader can also hand a whole stream to a [`StreamSink`] that runs on the helper
//! thread ([`crate::StreamReader::pipe_to`]). The reading thread then never waits for a
//! stream's hash: it goes on decompressing the next stream while the helper hashes,
//! passes the chunks to the sink and, once the digest matched, commits it. A mismatch
//! (or a sink error) is kept and reported by the reader's next call, so nothing that
//! failed verification is ever committed, and a reader that reports the end of the
//! bundle has verified and committed everything. Hashing and writing a blob costs more
//! than decompressing it, so a piped stream that starts while the helper is behind is
//! hashed and written by the reading thread instead ([`HashPipe::begin_sink`]).
//!
//! A small piped blob (the reader decides which) that lives on the helper gets its chunks
//! still compressed ([`HashPipe::send_packed`]): the helper decompresses, hashes and hands
//! them to the sink, so each chunk is produced, hashed and written by one core while it is
//! in that core's cache, and the reading thread only reads records and checks their crc.
//! Until session 7
//! the reading thread decompressed every chunk and the helper read the bytes from the
//! other core's cache; see `docs/DESIGN-NOTES.md` for the measurements.

use std::io;
use std::ops::{Deref, Range};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::{BundleError, Digest, Hasher};

/// A piece of a stream's uncompressed bytes, shared with the buffer it was decompressed or
/// read into rather than copied; cloning it is cheap. The buffer returns to the pool of the
/// thread that filled it (the reading thread or the hashing thread) once every clone
/// is dropped, so a sink that keeps chunks (to write them on another thread, say) only
/// makes the reader allocate a few more buffers.
#[derive(Clone)]
pub struct Chunk {
    buf: Arc<Vec<u8>>,
    range: Range<usize>,
}

impl Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.buf.get(self.range.clone()).unwrap_or(&[])
    }
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk").field("len", &self.len()).finish()
    }
}

/// Where a piped stream's bytes go (see [`crate::StreamReader::pipe_to`]).
///
/// The calls for one stream come in order, from one thread at a time (the reader's
/// hashing thread, or the reading thread while the hashing thread is behind): `write` for
/// every chunk, then `commit` once the stream's size and sha256 matched. A stream that fails verification,
/// or whose bundle read stops early, is never committed: the sink is dropped instead, so
/// dropping must discard what was written.
pub trait StreamSink: Send {
    /// The next chunk of the stream.
    fn write(&mut self, chunk: Chunk) -> io::Result<()>;
    /// The stream was complete and its digest matched: make it visible.
    fn commit(self: Box<Self>) -> io::Result<()>;
}

/// A piped stream's sink with the stream's name for error messages.
type NamedSink = (Box<dyn StreamSink>, String);

/// The first failure of a piped stream, reported by the reader's next call.
type Deferred = Arc<Mutex<Option<BundleError>>>;

fn defer(slot: &Deferred, e: BundleError) {
    let mut g = slot.lock().unwrap_or_else(|p| p.into_inner());
    if g.is_none() {
        *g = Some(e);
    }
}

/// Chunks at least this large switch the current stream to the helper thread.
const THREAD_MIN_CHUNK: usize = 64 << 10;
/// Messages queued to the helper; bounds buffers in flight (and thus memory: at most this
/// many chunks, 16 MiB at the default chunk size). A piped blob costs three messages
/// (start, data, verify), so with the 4 used until session 5 the queue held barely one
/// small blob and the reading thread kept waiting on a full queue while the helper still
/// had work; 16 took the piped import of 100 KiB blobs from 1.65× to about 1.5× `zstd -d`.
const QUEUE: usize = 16;
/// A piped stream that starts while the helper has this many bytes still to hash is
/// hashed on the reading thread instead (see [`HashPipe::begin_sink`]).
const INLINE_BACKLOG: usize = 256 << 10;
/// Chunk buffers kept for reuse. A piped stream's sink may hold chunks a while (to write
/// them on a thread of its own, say), so more buffers are in flight than the
/// helper's queue alone explains; a pool smaller than that lets buffers fall out and
/// every new chunk pays for a fresh allocation and its page faults.
const POOL: usize = 32;

enum Msg {
    Start(Hasher, Option<NamedSink>),
    Data(Arc<Vec<u8>>, Range<usize>),
    /// A zstd frame (`buf[range]`) that must decompress to exactly `raw` bytes; the
    /// chunk record starts at file offset `at` (for error messages).
    Packed {
        buf: Arc<Vec<u8>>,
        range: Range<usize>,
        raw: usize,
        at: u64,
    },
    Finish(SyncSender<Digest>),
    /// End of a stream checked off the calling thread: compare with the declared digest,
    /// then commit or drop the sink if there is one. The name is for the error message
    /// of a stream without a sink.
    Verify(Digest, Option<String>),
    /// Answered once every earlier message was handled.
    Barrier(SyncSender<()>),
}

struct Helper {
    tx: SyncSender<Msg>,
    handle: Option<JoinHandle<()>>,
    /// Bytes sent to the helper and not yet hashed (and handed to their sink).
    backlog: Arc<AtomicUsize>,
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Closing the channel ends the thread; replace tx with a dead sender first.
        let (dead, _) = sync_channel(0);
        drop(std::mem::replace(&mut self.tx, dead));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Hashes `buf[r]` into `state` and hands it to the sink; a sink error is deferred and
/// drops the sink, so the stream is never committed.
fn hash_and_write(
    state: &mut Hasher,
    sink: &mut Option<NamedSink>,
    deferred: &Deferred,
    buf: Arc<Vec<u8>>,
    r: Range<usize>,
) {
    if let Some(s) = buf.get(r.clone()) {
        state.update(s);
    }
    if let Some((s, what)) = sink.as_mut()
        && let Err(e) = s.write(Chunk { buf, range: r })
    {
        defer(deferred, sink_error(what, e));
        *sink = None;
    }
}

fn helper_main(
    rx: Receiver<Msg>,
    deferred: Deferred,
    backlog: Arc<AtomicUsize>,
    window_log_max: u32,
) {
    // Made at the first compressed chunk: writers and plain reads never need one.
    let mut dctx = None;
    let mut state = Hasher::new();
    let mut sink: Option<NamedSink> = None;
    // Output buffers of decompressed chunks, reused once the sink let go of them.
    let mut pool: Vec<Arc<Vec<u8>>> = Vec::new();
    while let Ok(m) = rx.recv() {
        match m {
            Msg::Start(h, s) => {
                state = h;
                sink = s;
            }
            Msg::Data(buf, r) => {
                let len = r.len();
                hash_and_write(&mut state, &mut sink, &deferred, buf, r);
                backlog.fetch_sub(len, Ordering::Release);
            }
            Msg::Packed {
                buf,
                range,
                raw,
                at,
            } => {
                let mut out = reuse(&mut pool).unwrap_or_default();
                out.clear();
                out.reserve_exact(raw);
                let frame = buf.get(range).unwrap_or(&[]);
                let unpacked = match &mut dctx {
                    Some(d) => unpack(d, frame, &mut out, raw, at),
                    None => decompressor(window_log_max)
                        .and_then(|d| unpack(dctx.insert(d), frame, &mut out, raw, at)),
                };
                match unpacked {
                    Ok(()) => {
                        drop(buf);
                        let out = Arc::new(out);
                        hash_and_write(&mut state, &mut sink, &deferred, Arc::clone(&out), 0..raw);
                        if pool.len() < POOL {
                            pool.push(out);
                        }
                    }
                    Err(e) => {
                        // The stream is lost: report it and never commit it.
                        defer(&deferred, e);
                        sink = None;
                    }
                }
                backlog.fetch_sub(raw, Ordering::Release);
            }
            Msg::Finish(reply) => {
                let _ = reply.send(std::mem::take(&mut state).finish());
            }
            Msg::Verify(expected, name) => {
                let actual = std::mem::take(&mut state).finish();
                let r = match (sink.take(), name) {
                    (Some((s, what)), _) => verdict(s, what, expected, actual),
                    (None, Some(what)) if expected != actual => Err(BundleError::DigestMismatch {
                        what,
                        expected,
                        actual,
                    }),
                    (None, _) => Ok(()),
                };
                if let Err(e) = r {
                    defer(&deferred, e);
                }
            }
            Msg::Barrier(reply) => {
                let _ = reply.send(());
            }
        }
    }
}

/// Decompresses one chunk's zstd frame into `out` (empty, with capacity for `raw`
/// bytes), which must then hold exactly `raw` bytes.
pub(crate) fn unpack(
    dctx: &mut zstd::bulk::Decompressor<'static>,
    frame: &[u8],
    out: &mut Vec<u8>,
    raw: usize,
    at: u64,
) -> Result<(), BundleError> {
    let n = dctx
        .decompress_to_buffer(frame, out)
        .map_err(|e| BundleError::Decompress {
            offset: at,
            source: e,
        })?;
    if n != raw {
        return Err(BundleError::SizeMismatch {
            what: format!("chunk at offset {at}"),
            expected: raw as u64,
            actual: n as u64,
        });
    }
    Ok(())
}

/// A decompression context that refuses frames whose window exceeds the reader's limit.
/// (For the one-shot decompression used on chunks, the output buffer of `raw_len` bytes,
/// itself bounded by the limits, is what bounds memory; the window limit matters to any
/// streaming use of the context.)
pub(crate) fn decompressor(
    window_log_max: u32,
) -> Result<zstd::bulk::Decompressor<'static>, BundleError> {
    let decompress = |e| BundleError::Decompress {
        offset: 0,
        source: e,
    };
    let mut dctx = zstd::bulk::Decompressor::new().map_err(decompress)?;
    dctx.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(window_log_max))
        .map_err(decompress)?;
    Ok(dctx)
}

/// A buffer of `pool` that nobody else holds any more, taken out of it, old bytes and all.
fn reuse(pool: &mut Vec<Arc<Vec<u8>>>) -> Option<Vec<u8>> {
    let i = pool.iter().position(|b| Arc::strong_count(b) == 1)?;
    Arc::try_unwrap(pool.swap_remove(i)).ok()
}

fn sink_error(what: &str, e: io::Error) -> BundleError {
    BundleError::Sink {
        what: what.to_string(),
        source: e,
    }
}

/// Commits a piped stream whose digest matched; drops it otherwise.
fn verdict(
    sink: Box<dyn StreamSink>,
    what: String,
    expected: Digest,
    actual: Digest,
) -> Result<(), BundleError> {
    if expected != actual {
        return Err(BundleError::DigestMismatch {
            what,
            expected,
            actual,
        });
    }
    sink.commit().map_err(|e| sink_error(&what, e))
}

pub(crate) struct HashPipe {
    inline: Option<Hasher>,
    /// The current stream's sink while it is piped on this thread (one core only).
    inline_sink: Option<NamedSink>,
    helper: Option<Helper>,
    parallel: bool,
    pool: Vec<Arc<Vec<u8>>>,
    deferred: Deferred,
    /// The current stream was handed to a sink ([`HashPipe::begin_sink`]).
    piped: bool,
    /// The window limit of the helper's decompression context (see [`HashPipe::send_packed`]).
    window_log_max: u32,
}

impl HashPipe {
    /// A pipe whose helper decompresses frames with at most a `2^window_log_max` window.
    pub(crate) fn new(window_log_max: u32) -> Self {
        HashPipe {
            inline: Some(Hasher::new()),
            inline_sink: None,
            helper: None,
            parallel: std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
            pool: Vec::new(),
            deferred: Arc::default(),
            piped: false,
            window_log_max,
        }
    }

    /// Starts hashing a new stream.
    pub(crate) fn begin(&mut self) {
        self.piped = false;
        self.inline = Some(Hasher::new());
        self.inline_sink = None;
    }

    /// Pipes the current stream (nothing of it hashed yet) into `sink`: on the helper
    /// thread when there is a second core and the helper is not behind, else here.
    ///
    /// Why not always on the helper: hashing and writing a blob costs more than
    /// decompressing it, so with every stream on the helper the reading thread would
    /// wait for it (an import ran at ~2× `zstd -d`). A stream that starts while the
    /// helper is behind (its queue is full, or it has more than [`INLINE_BACKLOG`] bytes
    /// to hash) is hashed and written here instead, and moves to the helper as
    /// soon as the helper has caught up, so both threads stay busy and the work splits
    /// by itself in whatever proportion the two costs have on this machine.
    pub(crate) fn begin_sink(
        &mut self,
        sink: Box<dyn StreamSink>,
        what: String,
    ) -> Result<(), BundleError> {
        self.piped = true;
        if self.parallel && self.backlog() < INLINE_BACKLOG {
            let start = Msg::Start(Hasher::new(), Some((sink, what)));
            match self.helper()?.try_send(start) {
                Ok(()) => {
                    self.inline = None;
                    self.inline_sink = None;
                    return Ok(());
                }
                // The helper's queue is full: sending would wait for it.
                Err(TrySendError::Full(Msg::Start(_, Some((sink, what))))) => {
                    self.inline = Some(Hasher::new());
                    self.inline_sink = Some((sink, what));
                    return Ok(());
                }
                Err(_) => return Err(dead()),
            }
        }
        self.inline = Some(Hasher::new());
        self.inline_sink = Some((sink, what));
        Ok(())
    }

    /// Ends a piped stream whose bytes must hash to `expected`: verified and committed
    /// later on the helper thread (failures surface through [`HashPipe::check`]), or right
    /// here without one.
    pub(crate) fn finish_piped(&mut self, expected: Digest) -> Result<(), BundleError> {
        if let Some(h) = self.inline.take() {
            self.inline = Some(Hasher::new());
            let actual = h.finish();
            return match self.inline_sink.take() {
                Some((sink, what)) => verdict(sink, what, expected, actual),
                None => Ok(()),
            };
        }
        self.inline = Some(Hasher::new());
        self.helper()?
            .send(Msg::Verify(expected, None))
            .map_err(|_| dead())
    }

    /// Ends a stream that must hash to `expected`, without waiting for the helper thread
    /// if it has the stream: a mismatch then surfaces through [`HashPipe::check`]. Why:
    /// waiting costs a thread round trip per stream, which for many small blobs is a good
    /// part of the time their compression takes.
    pub(crate) fn finish_checked(
        &mut self,
        expected: Digest,
        what: &str,
    ) -> Result<(), BundleError> {
        if let Some(h) = self.inline.take() {
            self.inline = Some(Hasher::new());
            let actual = h.finish();
            if actual != expected {
                return Err(BundleError::DigestMismatch {
                    what: what.to_string(),
                    expected,
                    actual,
                });
            }
            return Ok(());
        }
        self.inline = Some(Hasher::new());
        self.helper()?
            .send(Msg::Verify(expected, Some(what.to_string())))
            .map_err(|_| dead())
    }

    /// The first failure of a piped stream so far, if any.
    pub(crate) fn check(&self) -> Result<(), BundleError> {
        let mut g = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        match g.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits until every piped stream so far was verified and committed (or failed).
    pub(crate) fn settle(&mut self) -> Result<(), BundleError> {
        if self.helper.is_some() {
            let (tx, rx) = sync_channel(1);
            self.helper()?.send(Msg::Barrier(tx)).map_err(|_| dead())?;
            rx.recv().map_err(|_| dead())?;
        }
        self.check()
    }

    /// A buffer nobody else uses (recycled when possible), emptied.
    pub(crate) fn take_vec(&mut self) -> Vec<u8> {
        let mut v = self.take_vec_dirty();
        v.clear();
        v
    }

    /// A buffer nobody else uses (recycled when possible) with its old bytes still in
    /// it: for reading a record over, which then needs no zero-filling up to their length.
    pub(crate) fn take_vec_dirty(&mut self) -> Vec<u8> {
        reuse(&mut self.pool).unwrap_or_default()
    }

    /// Whether the current chunk should go to the helper still compressed
    /// ([`HashPipe::send_packed`]): true while a piped stream lives on the helper, and
    /// for a piped stream that started here once the helper caught up (it moves there
    /// now). Streams read through `Read` are always decompressed by the reading thread,
    /// which serves their bytes.
    pub(crate) fn route_packed(&mut self) -> Result<bool, BundleError> {
        if self.inline.is_none() {
            // Only piped streams move to the helper before their first chunk; other
            // streams move there with decompressed chunks and stay that way.
            return Ok(self.piped);
        }
        if self.inline_sink.is_none() || !self.parallel || self.backlog() > 0 {
            return Ok(false);
        }
        self.move_to_helper()?;
        Ok(true)
    }

    /// Hands the stream hashed here so far (its hash state and sink) to the helper.
    fn move_to_helper(&mut self) -> Result<(), BundleError> {
        let state = self.inline.take().unwrap_or_default();
        let sink = self.inline_sink.take();
        self.helper()?
            .send(Msg::Start(state, sink))
            .map_err(|_| dead())
    }

    /// Queues a chunk's zstd frame `buf[range]` (which must decompress to `raw` bytes)
    /// for the helper, which decompresses, hashes and writes it (see the module docs).
    /// Call only after [`HashPipe::route_packed`] said so.
    pub(crate) fn send_packed(
        &mut self,
        buf: &Arc<Vec<u8>>,
        range: Range<usize>,
        raw: usize,
        at: u64,
    ) -> Result<(), BundleError> {
        let msg = Msg::Packed {
            buf: Arc::clone(buf),
            range,
            raw,
            at,
        };
        self.queue(msg, raw)
    }

    /// Returns a shared buffer to the pool once its user is done with it.
    pub(crate) fn give_back(&mut self, b: Arc<Vec<u8>>) {
        if self.pool.len() < POOL {
            self.pool.push(b);
        }
    }

    fn helper(&mut self) -> Result<&SyncSender<Msg>, BundleError> {
        if self.helper.is_none() {
            let (tx, rx) = sync_channel(QUEUE);
            let deferred = Arc::clone(&self.deferred);
            let backlog = Arc::new(AtomicUsize::new(0));
            let theirs = Arc::clone(&backlog);
            let window_log_max = self.window_log_max;
            let handle = std::thread::Builder::new()
                .name("cryopod-bundle-sha256".into())
                .spawn(move || helper_main(rx, deferred, theirs, window_log_max))?;
            self.helper = Some(Helper {
                tx,
                handle: Some(handle),
                backlog,
            });
        }
        match &self.helper {
            Some(h) => Ok(&h.tx),
            None => Err(dead()),
        }
    }

    /// Bytes the helper has yet to hash (0 before it exists).
    fn backlog(&self) -> usize {
        self.helper
            .as_ref()
            .map_or(0, |h| h.backlog.load(Ordering::Acquire))
    }

    /// Queues `buf[range]` for the helper, counting it in its backlog.
    fn send_data(&mut self, buf: &Arc<Vec<u8>>, range: Range<usize>) -> Result<(), BundleError> {
        let len = range.len();
        self.queue(Msg::Data(Arc::clone(buf), range), len)
    }

    /// Sends `msg`, which carries `len` bytes for the helper to hash, counting them in its
    /// backlog until it has.
    fn queue(&mut self, msg: Msg, len: usize) -> Result<(), BundleError> {
        self.helper()?;
        let Some(h) = &self.helper else {
            return Err(dead());
        };
        h.backlog.fetch_add(len, Ordering::AcqRel);
        h.tx.send(msg).map_err(|_| {
            h.backlog.fetch_sub(len, Ordering::AcqRel);
            dead()
        })
    }

    /// Hashes `buf[range]`, on the helper thread when the data is large enough.
    pub(crate) fn update_shared(
        &mut self,
        buf: &Arc<Vec<u8>>,
        range: Range<usize>,
    ) -> Result<(), BundleError> {
        if self.inline.is_some() {
            let stay = if self.inline_sink.is_some() {
                // A piped stream started here because the helper was behind; it moves
                // once the helper has nothing left to do.
                !self.parallel || self.backlog() > 0
            } else {
                !self.parallel || range.len() < THREAD_MIN_CHUNK
            };
            if stay {
                if let (Some(h), Some(s)) = (self.inline.as_mut(), buf.get(range.clone())) {
                    h.update(s);
                }
                if let Some((sink, what)) = self.inline_sink.as_mut() {
                    let chunk = Chunk {
                        buf: Arc::clone(buf),
                        range,
                    };
                    if let Err(e) = sink.write(chunk) {
                        let e = sink_error(what, e);
                        self.inline_sink = None;
                        return Err(e);
                    }
                }
                return Ok(());
            }
            self.move_to_helper()?;
        }
        self.send_data(buf, range)
    }

    /// Hashes a borrowed slice (copied if the stream is on the helper thread).
    pub(crate) fn update_slice(&mut self, data: &[u8]) -> Result<(), BundleError> {
        if let Some(h) = self.inline.as_mut()
            && self.inline_sink.is_none()
            && (!self.parallel || data.len() < THREAD_MIN_CHUNK)
        {
            h.update(data);
            return Ok(());
        }
        let mut v = self.take_vec();
        v.extend_from_slice(data);
        let b = Arc::new(v);
        let r = self.update_shared(&b, 0..data.len());
        self.give_back(b);
        r
    }

    /// The digest of the current stream.
    pub(crate) fn finish(&mut self) -> Result<Digest, BundleError> {
        if let Some(h) = self.inline.take() {
            self.inline = Some(Hasher::new());
            return Ok(h.finish());
        }
        self.inline = Some(Hasher::new());
        let (tx, rx) = sync_channel(1);
        self.helper()?.send(Msg::Finish(tx)).map_err(|_| dead())?;
        rx.recv().map_err(|_| dead())
    }
}

fn dead() -> BundleError {
    BundleError::Io(std::io::Error::other("sha256 helper thread stopped"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what reaches it; fails writes when told to.
    struct Probe {
        data: Vec<u8>,
        fail_writes: bool,
        committed: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl StreamSink for Probe {
        fn write(&mut self, chunk: Chunk) -> io::Result<()> {
            if self.fail_writes {
                return Err(io::Error::other("disk full"));
            }
            self.data.extend_from_slice(&chunk);
            Ok(())
        }
        fn commit(self: Box<Self>) -> io::Result<()> {
            self.committed.lock().unwrap().push(self.data);
            Ok(())
        }
    }

    /// Starts a stream piped into a [`Probe`]; returns where its commit will land.
    fn begin_probe(p: &mut HashPipe, what: &str, fail_writes: bool) -> Arc<Mutex<Vec<Vec<u8>>>> {
        let committed = Arc::new(Mutex::new(Vec::new()));
        p.begin();
        let probe = Probe {
            data: Vec::new(),
            fail_writes,
            committed: committed.clone(),
        };
        p.begin_sink(Box::new(probe), what.into()).unwrap();
        committed
    }

    fn pipe_one(
        p: &mut HashPipe,
        data: &[u8],
        expected: Digest,
        fail: bool,
    ) -> Arc<Mutex<Vec<Vec<u8>>>> {
        let committed = begin_probe(p, "blob under test", fail);
        let b = Arc::new(data.to_vec());
        let half = data.len() / 2;
        let r = p
            .update_shared(&b, 0..half)
            .and_then(|()| p.update_shared(&b, half..data.len()))
            .and_then(|()| p.finish_piped(expected));
        match r.and_then(|()| p.settle()) {
            Ok(()) => {}
            Err(e) => committed
                .lock()
                .unwrap()
                .push(format!("error: {e}").into_bytes()),
        }
        committed
    }

    /// Which stream was written (`false`) or committed (`true`) on which thread.
    type WriteLog = Arc<Mutex<Vec<(&'static str, std::thread::ThreadId, bool)>>>;

    /// Holds the helper in its first `write` until told to go on; records which thread
    /// wrote each stream.
    struct Gate {
        name: &'static str,
        wait: Option<std::sync::mpsc::Receiver<()>>,
        log: WriteLog,
        data: Vec<u8>,
    }

    impl StreamSink for Gate {
        fn write(&mut self, chunk: Chunk) -> io::Result<()> {
            if let Some(rx) = self.wait.take() {
                let _ = rx.recv();
            }
            self.log
                .lock()
                .unwrap()
                .push((self.name, std::thread::current().id(), false));
            self.data.extend_from_slice(&chunk);
            Ok(())
        }
        fn commit(self: Box<Self>) -> io::Result<()> {
            self.log
                .lock()
                .unwrap()
                .push((self.name, std::thread::current().id(), true));
            Ok(())
        }
    }

    #[test]
    fn a_stream_starting_while_the_helper_is_behind_is_hashed_here_and_still_verified() {
        let mut p = HashPipe::new(27);
        p.parallel = true;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (go, wait) = std::sync::mpsc::channel();
        let big = Arc::new(vec![1u8; 2 * INLINE_BACKLOG]);
        let gate = |name, wait| Gate {
            name,
            wait,
            log: log.clone(),
            data: Vec::new(),
        };
        // The first stream goes to the helper, which blocks in its first write: the
        // helper is now behind by more than INLINE_BACKLOG.
        p.begin();
        p.begin_sink(Box::new(gate("first", Some(wait))), "first".into())
            .unwrap();
        p.update_shared(&big, 0..big.len()).unwrap();
        p.finish_piped(Digest::of(&big)).unwrap();
        // The second starts and is written here, then the third fails verification here.
        let here = std::thread::current().id();
        let small = Arc::new(b"second".to_vec());
        p.begin();
        p.begin_sink(Box::new(gate("second", None)), "second".into())
            .unwrap();
        p.update_shared(&small, 0..small.len()).unwrap();
        p.finish_piped(Digest::of(&small)).unwrap();
        p.begin();
        p.begin_sink(Box::new(gate("third", None)), "third".into())
            .unwrap();
        p.update_shared(&small, 0..small.len()).unwrap();
        let err = p.finish_piped(Digest::of(b"not it")).unwrap_err();
        assert!(
            err.to_string().contains("digest mismatch for third"),
            "{err}"
        );
        go.send(()).unwrap();
        p.settle().unwrap();
        let log = log.lock().unwrap();
        let of = |name| -> Vec<_> { log.iter().filter(|e| e.0 == name).cloned().collect() };
        assert_eq!(
            of("second"),
            vec![("second", here, false), ("second", here, true)]
        );
        assert_eq!(of("third"), vec![("third", here, false)], "never committed");
        let first = of("first");
        assert!(first.iter().all(|e| e.1 != here), "{first:?}");
        assert_eq!(first.last().map(|e| e.2), Some(true));
    }

    #[test]
    fn piped_streams_commit_only_what_matched_and_report_the_rest() {
        let data = vec![9u8; 300_000];
        for parallel in [true, false] {
            let mut p = HashPipe::new(27);
            p.parallel = parallel;
            let ok = pipe_one(&mut p, &data, Digest::of(&data), false);
            assert_eq!(
                *ok.lock().unwrap(),
                vec![data.clone()],
                "parallel={parallel}"
            );
            let bad = pipe_one(&mut p, &data, Digest::of(b"other"), false);
            let bad = bad.lock().unwrap();
            assert_eq!(bad.len(), 1, "parallel={parallel}");
            let msg = String::from_utf8_lossy(&bad[0]);
            assert!(msg.contains("digest mismatch for blob under test"), "{msg}");
            let failing = pipe_one(&mut p, &data, Digest::of(&data), true);
            let failing = failing.lock().unwrap();
            let msg = String::from_utf8_lossy(&failing[0]);
            assert!(
                msg.contains("cannot store blob under test: disk full"),
                "{msg}"
            );
            // The pipe is still usable after failures.
            let again = pipe_one(&mut p, b"small", Digest::of(b"small"), false);
            assert_eq!(*again.lock().unwrap(), vec![b"small".to_vec()]);
        }
    }

    /// Pipes one stream as two compressed chunks handed to the helper; `raw` is what each
    /// frame claims to decompress to. Returns what was committed, or the error.
    fn pipe_packed(
        p: &mut HashPipe,
        frames: [&[u8]; 2],
        raw: [usize; 2],
        expected: Digest,
    ) -> Result<Vec<Vec<u8>>, String> {
        let committed = begin_probe(p, "packed blob", false);
        for (i, (frame, raw)) in frames.iter().zip(raw).enumerate() {
            assert!(p.route_packed().unwrap(), "chunk {i} goes to the helper");
            let b = Arc::new(frame.to_vec());
            p.send_packed(&b, 0..b.len(), raw, 100 + i as u64).unwrap();
        }
        p.finish_piped(expected).map_err(|e| e.to_string())?;
        p.settle().map_err(|e| e.to_string())?;
        let got = committed.lock().unwrap().clone();
        Ok(got)
    }

    #[test]
    fn compressed_chunks_are_decompressed_and_checked_on_the_helper() {
        let one = vec![3u8; 150_000];
        let two: Vec<u8> = (0..90_000u32).map(|i| (i % 251) as u8).collect();
        let z1 = zstd::bulk::compress(&one, 1).unwrap();
        let z2 = zstd::bulk::compress(&two, 1).unwrap();
        let whole = [one.clone(), two.clone()].concat();
        let mut p = HashPipe::new(27);
        p.parallel = true;

        let ok = pipe_packed(
            &mut p,
            [&z1, &z2],
            [one.len(), two.len()],
            Digest::of(&whole),
        );
        assert_eq!(ok, Ok(vec![whole.clone()]));

        // A damaged frame: reported with the chunk's offset, nothing committed.
        let mut bad = z2.clone();
        let mid = bad.len() / 2;
        bad[mid..].fill(0xff);
        let err = pipe_packed(
            &mut p,
            [&z1, &bad],
            [one.len(), two.len()],
            Digest::of(&whole),
        )
        .unwrap_err();
        assert!(
            err.contains("cannot decompress chunk at offset 101"),
            "{err}"
        );

        // A frame that decompresses to other than its declared size.
        let err = pipe_packed(
            &mut p,
            [&z1, &z2],
            [one.len() + 1, two.len()],
            Digest::of(&whole),
        )
        .unwrap_err();
        assert!(err.contains("chunk at offset 100"), "{err}");

        // The pipe still works afterwards.
        let again = pipe_packed(
            &mut p,
            [&z2, &z1],
            [two.len(), one.len()],
            Digest::of(&[two, one].concat()),
        );
        assert_eq!(again.map(|v| v.len()), Ok(1));
    }

    #[test]
    fn threaded_and_inline_hashing_agree_for_any_mix_of_sizes() {
        let big = vec![7u8; 200_000];
        let small = b"small".to_vec();
        let mut p = HashPipe::new(27);
        p.parallel = true;
        for round in 0..3 {
            p.begin();
            p.update_slice(&small).unwrap();
            let b = Arc::new(big.clone());
            p.update_shared(&b, 10..big.len()).unwrap();
            p.update_slice(&small).unwrap();
            p.update_slice(&big).unwrap();
            let mut all = small.clone();
            all.extend_from_slice(&big[10..]);
            all.extend_from_slice(&small);
            all.extend_from_slice(&big);
            assert_eq!(p.finish().unwrap(), Digest::of(&all), "round {round}");
            p.begin();
            p.update_slice(&small).unwrap();
            assert_eq!(p.finish().unwrap(), Digest::of(&small));
        }
    }
}
