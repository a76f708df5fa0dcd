//! sha256 on a second thread.
//!
//! Hashing (about 1.5–2 GB/s even with SHA-NI) costs as much as zstd decompression,
//! so doing both on one thread would make reading a bundle twice as slow as raw
//! decompression. Streams of more than one small chunk hand their chunks to a helper
//! thread instead; small streams stay inline to avoid a thread round trip per blob.
//! Chunk buffers are shared with the helper through `Arc`s and recycled through a
//! small pool, whose size is bounded by the channel's capacity.

use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::{BundleError, Digest, Hasher};

/// Chunks at least this large switch the current stream to the helper thread.
const THREAD_MIN_CHUNK: usize = 64 << 10;
/// Messages queued to the helper; bounds buffers in flight (and thus memory).
const QUEUE: usize = 2;

enum Msg {
    Start(Hasher),
    Data(Arc<Vec<u8>>, Range<usize>),
    Finish(SyncSender<Digest>),
}

struct Helper {
    tx: SyncSender<Msg>,
    handle: Option<JoinHandle<()>>,
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

fn helper_main(rx: Receiver<Msg>) {
    let mut state = Hasher::new();
    while let Ok(m) = rx.recv() {
        match m {
            Msg::Start(h) => state = h,
            Msg::Data(buf, r) => {
                if let Some(s) = buf.get(r) {
                    state.update(s);
                }
            }
            Msg::Finish(reply) => {
                let _ = reply.send(std::mem::take(&mut state).finish());
            }
        }
    }
}

pub(crate) struct HashPipe {
    inline: Option<Hasher>,
    helper: Option<Helper>,
    parallel: bool,
    pool: Vec<Arc<Vec<u8>>>,
}

impl HashPipe {
    pub(crate) fn new() -> Self {
        HashPipe {
            inline: Some(Hasher::new()),
            helper: None,
            parallel: std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
            pool: Vec::new(),
        }
    }

    /// Starts hashing a new stream.
    pub(crate) fn begin(&mut self) {
        self.inline = Some(Hasher::new());
    }

    /// A buffer nobody else uses (recycled when possible), emptied.
    pub(crate) fn take_vec(&mut self) -> Vec<u8> {
        if let Some(i) = self.pool.iter().position(|b| Arc::strong_count(b) == 1)
            && let Ok(mut v) = Arc::try_unwrap(self.pool.swap_remove(i))
        {
            v.clear();
            return v;
        }
        Vec::new()
    }

    /// Returns a shared buffer to the pool once its user is done with it.
    pub(crate) fn give_back(&mut self, b: Arc<Vec<u8>>) {
        if self.pool.len() < 8 {
            self.pool.push(b);
        }
    }

    fn helper(&mut self) -> Result<&SyncSender<Msg>, BundleError> {
        if self.helper.is_none() {
            let (tx, rx) = sync_channel(QUEUE);
            let handle = std::thread::Builder::new()
                .name("cryopod-bundle-sha256".into())
                .spawn(move || helper_main(rx))?;
            self.helper = Some(Helper {
                tx,
                handle: Some(handle),
            });
        }
        match &self.helper {
            Some(h) => Ok(&h.tx),
            None => Err(dead()),
        }
    }

    /// Hashes `buf[range]`, on the helper thread when the data is large enough.
    pub(crate) fn update_shared(
        &mut self,
        buf: &Arc<Vec<u8>>,
        range: Range<usize>,
    ) -> Result<(), BundleError> {
        if let Some(h) = self.inline.as_mut() {
            if !self.parallel || range.len() < THREAD_MIN_CHUNK {
                if let Some(s) = buf.get(range) {
                    h.update(s);
                }
                return Ok(());
            }
            let state = self.inline.take().unwrap_or_default();
            self.helper()?.send(Msg::Start(state)).map_err(|_| dead())?;
        }
        self.helper()?
            .send(Msg::Data(Arc::clone(buf), range))
            .map_err(|_| dead())
    }

    /// Hashes a borrowed slice (copied if the stream is on the helper thread).
    pub(crate) fn update_slice(&mut self, data: &[u8]) -> Result<(), BundleError> {
        if let Some(h) = self.inline.as_mut()
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

    #[test]
    fn threaded_and_inline_hashing_agree_for_any_mix_of_sizes() {
        let big = vec![7u8; 200_000];
        let small = b"small".to_vec();
        let mut p = HashPipe::new();
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
