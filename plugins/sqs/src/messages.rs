//! A queue's messages by sequence number: a persistent map shaped for how a queue is used
//! and restored.
//!
//! # Why not `imbl::OrdMap<u64, Arc<Message>>`
//! That map (what a queue used before) is built one key at a time: a restore of a million
//! messages descended and split B-tree nodes a million times, and its `Deserialize` boxed
//! every message before moving it into its `Arc` (two allocations per message). Restoring a
//! snapshot was 1.9–2.2× decoding the same messages into a plain `Vec` (issue #5 asks for
//! ≤ 1.5×). A [`MessageLog`] is built from the sorted sequence a snapshot stores in one pass:
//! messages are cut into chunks of [`CHUNK`] as they are read, and only the chunks, one per
//! 64 messages, are inserted into a persistent map.
//!
//! # Shape
//! Chunks are sorted `Vec`s of `(seq, Arc<Message>)` behind an `Arc`, kept in an
//! `imbl::OrdMap` by the lowest sequence number the chunk covers: chunk `k` holds the
//! messages with `k <= seq < next key`. Cloning the log is O(1) (an `Arc`), so the capture
//! barrier's clone stays O(1); a write after a capture copies one chunk (64 pointers) and the
//! `O(log n)` path to it, never the log. Sequence numbers only grow, so a send appends to the
//! last chunk; removals shrink chunks, and a chunk that falls under a quarter full is merged
//! into a neighbour so iteration stays proportional to the messages.
//!
//! # Dropping
//! Freeing a million messages takes ≈0.25× the time of decoding them. When the last copy of
//! a large log goes away (the state a restore replaced, a deleted or purged queue), its chunks
//! are handed to a background thread to free (like Redis' `lazyfree`), so the request or
//! restore that replaced them does not wait; see [`wait_for_background_drops`].

use std::fmt;
use std::sync::mpsc::{Sender, SyncSender};
use std::sync::{Arc, OnceLock};

use imbl::OrdMap;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::state::Message;

/// Messages per chunk: a chunk of pointers is 1 KiB, what a write after a capture copies.
pub const CHUNK: usize = 64;

/// Logs smaller than this are freed where they are dropped: handing them over would cost
/// more than freeing them.
pub const BACKGROUND_DROP_MIN: usize = 4096;

type Chunk = Vec<(u64, Arc<Message>)>;

/// A queue's messages by sequence number; see the module documentation.
#[derive(Clone, Default)]
pub struct MessageLog {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Chunks by the lowest sequence number they cover; never empty chunks.
    chunks: OrdMap<u64, Arc<Chunk>>,
    len: usize,
    /// Shared by every version of one log (a copy-on-write of `Inner` clones it): while
    /// another version is alive it shares most chunks, so dropping this one frees little.
    family: Arc<()>,
}

impl Clone for Inner {
    fn clone(&self) -> Self {
        Inner {
            chunks: self.chunks.clone(),
            len: self.len,
            family: Arc::clone(&self.family),
        }
    }
}

impl MessageLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.inner.len
    }

    /// Whether there are no messages.
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// The chunk that would hold `seq`, with its key.
    fn chunk_for(&self, seq: u64) -> Option<(&u64, &Arc<Chunk>)> {
        self.inner.chunks.get_prev(&seq)
    }

    /// The message with sequence number `seq`.
    pub fn get(&self, seq: &u64) -> Option<&Arc<Message>> {
        let (_, chunk) = self.chunk_for(*seq)?;
        let i = chunk.binary_search_by_key(seq, |(s, _)| *s).ok()?;
        Some(&chunk[i].1)
    }

    /// Whether a message with sequence number `seq` exists.
    pub fn contains_key(&self, seq: &u64) -> bool {
        self.get(seq).is_some()
    }

    /// The message with sequence number `seq`, for changing it (`Arc::make_mut`). Copies the
    /// path to it if this version shares it with another (a capture).
    pub fn get_mut(&mut self, seq: &u64) -> Option<&mut Arc<Message>> {
        if !self.contains_key(seq) {
            return None;
        }
        let inner = Arc::make_mut(&mut self.inner);
        let (_, chunk) = inner.chunks.get_prev_mut(seq)?;
        let chunk = Arc::make_mut(chunk);
        let i = chunk.binary_search_by_key(seq, |(s, _)| *s).ok()?;
        Some(&mut chunk[i].1)
    }

    /// Inserts a message under `seq`, returning the message it replaces.
    pub fn insert(&mut self, seq: u64, msg: Arc<Message>) -> Option<Arc<Message>> {
        let inner = Arc::make_mut(&mut self.inner);
        let Some((&key, chunk)) = inner.chunks.get_prev_mut(&seq) else {
            // Below every chunk (or the log is empty): a chunk of its own.
            inner.chunks.insert(seq, Arc::new(vec![(seq, msg)]));
            inner.len += 1;
            return None;
        };
        let pos = match chunk.binary_search_by_key(&seq, |(s, _)| *s) {
            Ok(i) => {
                let chunk = Arc::make_mut(chunk);
                return Some(std::mem::replace(&mut chunk[i].1, msg));
            }
            Err(pos) => pos,
        };
        inner.len += 1;
        if chunk.len() < CHUNK {
            Arc::make_mut(chunk).insert(pos, (seq, msg));
            return None;
        }
        if pos == chunk.len() {
            // A full chunk and a sequence number after all of it (every send): a new chunk,
            // so chunks filled in order stay full.
            inner.chunks.insert(seq, Arc::new(vec![(seq, msg)]));
            return None;
        }
        // Inside a full chunk: split it in half.
        let chunk = Arc::make_mut(chunk);
        chunk.insert(pos, (seq, msg));
        let upper: Chunk = chunk.split_off(chunk.len() / 2);
        let upper_key = upper[0].0;
        debug_assert!(upper_key > key);
        inner.chunks.insert(upper_key, Arc::new(upper));
        None
    }

    /// Removes the message with sequence number `seq`.
    pub fn remove(&mut self, seq: &u64) -> Option<Arc<Message>> {
        if !self.contains_key(seq) {
            return None;
        }
        let inner = Arc::make_mut(&mut self.inner);
        let (key, chunk) = inner.chunks.get_prev_mut(seq)?;
        let key = *key;
        let chunk = Arc::make_mut(chunk);
        let i = chunk.binary_search_by_key(seq, |(s, _)| *s).ok()?;
        let (_, msg) = chunk.remove(i);
        let left = chunk.len();
        inner.len -= 1;
        if left == 0 {
            inner.chunks.remove(&key);
        } else if left < CHUNK / 4 {
            inner.merge_small(key);
        }
        Some(msg)
    }

    /// Every message in sequence order.
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &Arc<Message>)> + '_ {
        self.inner
            .chunks
            .values()
            .flat_map(|c| c.iter().map(|(s, m)| (s, m)))
    }

    /// Every message in sequence order, without sequence numbers.
    pub fn values(&self) -> impl Iterator<Item = &Arc<Message>> + '_ {
        self.iter().map(|(_, m)| m)
    }
}

impl Inner {
    /// Merges the small chunk at `key` with a neighbour when both fit in one chunk.
    fn merge_small(&mut self, key: u64) {
        let Some(small_len) = self.chunks.get(&key).map(|c| c.len()) else {
            return;
        };
        if let Some((&prev_key, prev)) = self.chunks.get_prev(&(key.saturating_sub(1)))
            && prev_key < key
            && prev.len() + small_len <= CHUNK
        {
            if let Some(small) = self.chunks.remove(&key)
                && let Some(prev) = self.chunks.get_mut(&prev_key)
            {
                Arc::make_mut(prev).extend(Arc::unwrap_or_clone(small));
            }
            return;
        }
        if let Some((&next_key, next)) = self.chunks.get_next(&key.saturating_add(1))
            && next_key > key
            && next.len() + small_len <= CHUNK
            && let Some(next) = self.chunks.remove(&next_key)
            && let Some(small) = self.chunks.get_mut(&key)
        {
            Arc::make_mut(small).extend(Arc::unwrap_or_clone(next));
        }
    }
}

impl PartialEq for MessageLog {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
            || (self.len() == other.len() && self.iter().eq(other.iter()))
    }
}

impl Eq for MessageLog {}

impl fmt::Debug for MessageLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl FromIterator<(u64, Message)> for MessageLog {
    fn from_iter<I: IntoIterator<Item = (u64, Message)>>(iter: I) -> Self {
        let mut b = Builder::default();
        for (seq, m) in iter {
            b.push(seq, Arc::new(m));
        }
        b.finish()
    }
}

/// Builds a log from entries in any order, in one pass while they arrive in increasing
/// sequence order (as every snapshot stores them), one insert at a time after that.
#[derive(Default)]
struct Builder {
    log: MessageLog,
    chunks: OrdMap<u64, Arc<Chunk>>,
    current: Chunk,
    len: usize,
    /// Entries arrived out of order: the rest go through [`MessageLog::insert`].
    unordered: bool,
}

impl Builder {
    fn push(&mut self, seq: u64, msg: Arc<Message>) {
        if self.unordered {
            self.log.insert(seq, msg);
            return;
        }
        let last = self.current.last().map(|(s, _)| *s);
        if last.is_some_and(|l| seq <= l) {
            // Not strictly increasing: settle what was built, insert the rest one by one
            // (a later duplicate replaces the earlier entry, as a map decode would).
            self.flush();
            self.log = self.take_built();
            self.unordered = true;
            self.log.insert(seq, msg);
            return;
        }
        if self.current.len() == CHUNK {
            self.flush();
        }
        if self.current.capacity() == 0 {
            self.current.reserve_exact(CHUNK);
        }
        self.current.push((seq, msg));
        self.len += 1;
    }

    fn flush(&mut self) {
        if let Some(&(key, _)) = self.current.first() {
            let chunk = std::mem::take(&mut self.current);
            self.chunks.insert(key, Arc::new(chunk));
        }
    }

    fn take_built(&mut self) -> MessageLog {
        MessageLog {
            inner: Arc::new(Inner {
                chunks: std::mem::take(&mut self.chunks),
                len: std::mem::take(&mut self.len),
                family: Arc::new(()),
            }),
        }
    }

    fn finish(mut self) -> MessageLog {
        if self.unordered {
            return std::mem::take(&mut self.log);
        }
        self.flush();
        self.take_built()
    }
}

/// Serialized as a map from sequence number to message: the same bytes as the
/// `OrdMap<u64, Arc<Message>>` it replaces, so the state version did not change.
impl Serialize for MessageLog {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (seq, m) in self.iter() {
            map.serialize_entry(seq, &**m)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for MessageLog {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LogVisitor;

        impl<'de> Visitor<'de> for LogVisitor {
            type Value = MessageLog;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from sequence number to message")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MessageLog, A::Error> {
                let mut b = Builder::default();
                while let Some(seq) = map.next_key::<u64>()? {
                    // Straight into its `Arc`: serde's `Arc<T>` decodes into a `Box` first
                    // and moves it, an extra allocation per message.
                    let msg: Message = map.next_value()?;
                    b.push(seq, Arc::new(msg));
                }
                Ok(b.finish())
            }
        }

        deserializer.deserialize_map(LogVisitor)
    }
}

impl Drop for MessageLog {
    /// The last version of a large log is freed on a background thread (module docs).
    fn drop(&mut self) {
        if self.inner.len < BACKGROUND_DROP_MIN {
            return;
        }
        let Some(inner) = Arc::get_mut(&mut self.inner) else {
            return; // another handle on this version
        };
        if Arc::strong_count(&inner.family) > 1 {
            return; // another version shares its chunks: dropping this one is cheap
        }
        let chunks = std::mem::take(&mut inner.chunks);
        inner.len = 0;
        background_drop(Box::new(chunks));
    }
}

type Garbage = Box<dyn Send>;

enum Job {
    Drop(Garbage),
    /// Answered once everything sent before it is freed.
    Barrier(SyncSender<()>),
}

/// The background freeing thread's queue, started on first use; `None` if it could not start.
fn dropper() -> Option<&'static Sender<Job>> {
    static DROPPER: OnceLock<Option<Sender<Job>>> = OnceLock::new();
    DROPPER
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            let started = cryopod::background::spawn("sqs-free", move || {
                for job in rx {
                    match job {
                        Job::Drop(garbage) => drop(garbage),
                        Job::Barrier(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
            match started {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::warn!(error = %e, "no background thread to free replaced queues; freeing them in place");
                    None
                }
            }
        })
        .as_ref()
}

fn background_drop(garbage: Garbage) {
    let rejected = match dropper() {
        Some(tx) => tx.send(Job::Drop(garbage)).err().map(|e| e.0),
        None => Some(Job::Drop(garbage)),
    };
    drop(rejected); // the thread is gone: free here
}

/// Waits until every log handed to the background thread so far is freed. For benchmarks
/// and tests that measure memory or time after a restore; requests never need it.
pub fn wait_for_background_drops() {
    let Some(tx) = dropper() else {
        return;
    };
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
    if tx.send(Job::Barrier(done_tx)).is_ok() {
        let _ = done_rx.recv();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn msg(n: u64) -> Message {
        Message {
            id: format!("id-{n}"),
            body: format!("body {n}"),
            attributes: crate::state::Attributes::new(),
            system_attributes: crate::state::Attributes::new(),
            sender_id: "000000000000".into(),
            sent_at: n as i64,
            receive_count: 0,
            first_received_at: None,
            visible_at: 0,
            delayed: false,
            expires_at: i64::MAX,
            group_id: None,
            dedup_id: None,
            dead_letter_source: None,
        }
    }

    fn check(log: &MessageLog, model: &BTreeMap<u64, Message>) {
        assert_eq!(log.len(), model.len());
        let got: Vec<(u64, &Message)> = log.iter().map(|(s, m)| (*s, &**m)).collect();
        let want: Vec<(u64, &Message)> = model.iter().map(|(s, m)| (*s, m)).collect();
        assert_eq!(got, want);
        for (&key, chunk) in log.inner.chunks.iter() {
            assert!(!chunk.is_empty(), "no empty chunks");
            assert!(chunk.len() <= CHUNK);
            assert!(chunk[0].0 >= key, "a chunk holds nothing below its key");
            assert!(chunk.windows(2).all(|w| w[0].0 < w[1].0));
        }
        let keys: Vec<u64> = log.inner.chunks.keys().copied().collect();
        for (i, (_, chunk)) in log.inner.chunks.iter().enumerate() {
            if let Some(next) = keys.get(i + 1) {
                assert!(chunk.last().is_some_and(|(s, _)| s < next));
            }
        }
    }

    /// Random inserts, removes and updates against a `BTreeMap`, with clones kept along the
    /// way that must not change (persistence).
    #[test]
    fn behaves_like_an_ordered_map_and_old_versions_stay_put() {
        let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut log = MessageLog::new();
        let mut model = BTreeMap::new();
        let mut versions: Vec<(MessageLog, BTreeMap<u64, Message>)> = Vec::new();
        let mut top = 0u64;
        for step in 0..20_000u64 {
            match next() % 10 {
                // Mostly sends, as a queue gets them.
                0..=4 => {
                    top += 1 + next() % 3;
                    log.insert(top, Arc::new(msg(top)));
                    model.insert(top, msg(top));
                }
                5 | 6 => {
                    let seq = next() % (top + 2);
                    assert_eq!(log.remove(&seq).map(|m| (*m).clone()), model.remove(&seq));
                }
                7 => {
                    let seq = next() % (top + 2);
                    if let Some(m) = log.get_mut(&seq) {
                        Arc::make_mut(m).receive_count += 1;
                    }
                    if let Some(m) = model.get_mut(&seq) {
                        m.receive_count += 1;
                    }
                }
                8 => {
                    // Anywhere, existing or not.
                    let seq = next() % (top + 2);
                    let mut m = msg(seq);
                    m.body = format!("replaced at {step}");
                    assert_eq!(
                        log.insert(seq, Arc::new(m.clone())).map(|m| (*m).clone()),
                        model.insert(seq, m)
                    );
                }
                _ => {
                    let seq = next() % (top + 2);
                    assert_eq!(log.get(&seq).map(|m| &**m), model.get(&seq));
                    assert_eq!(log.contains_key(&seq), model.contains_key(&seq));
                }
            }
            if step % 1000 == 0 {
                versions.push((log.clone(), model.clone()));
            }
        }
        check(&log, &model);
        for (old, model) in &versions {
            check(old, model);
        }
    }

    #[test]
    fn removing_leaves_few_small_chunks() {
        let mut log: MessageLog = (1..=10_000u64).map(|s| (s, msg(s))).collect();
        assert_eq!(
            log.inner.chunks.len(),
            10_000 / CHUNK + 1,
            "decoded chunks are full"
        );
        for s in (1..=10_000u64).filter(|s| s % 8 != 0) {
            log.remove(&s);
        }
        assert_eq!(log.len(), 1250);
        assert!(
            log.inner.chunks.len() <= 1250 / (CHUNK / 4) + 1,
            "{} chunks for 1250 messages",
            log.inner.chunks.len()
        );
        let model: BTreeMap<u64, Message> = (1..=10_000u64)
            .filter(|s| s % 8 == 0)
            .map(|s| (s, msg(s)))
            .collect();
        check(&log, &model);
    }

    /// Same bytes as the `OrdMap<u64, Arc<Message>>` the queue kept before, both ways.
    #[test]
    fn wire_format_is_the_ordmap_it_replaced() {
        let map: OrdMap<u64, Arc<Message>> =
            (1..=300u64).map(|s| (s * 3, Arc::new(msg(s)))).collect();
        let log: MessageLog = (1..=300u64).map(|s| (s * 3, msg(s))).collect();
        let from_map = rmp_serde::to_vec_named(&map).expect("encode map");
        assert_eq!(rmp_serde::to_vec_named(&log).expect("encode log"), from_map);
        let back: MessageLog = rmp_serde::from_slice(&from_map).expect("decode");
        assert_eq!(back, log);
        assert_eq!(back.inner.chunks.len(), 300usize.div_ceil(CHUNK));
    }

    /// Input not in sequence order (not what a capture writes) still decodes to the right
    /// map, later duplicates winning as in any map decode.
    #[test]
    fn unordered_input_decodes_one_insert_at_a_time() {
        let entries: Vec<(u64, Message)> = [5u64, 9, 2, 7, 9, 1]
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let mut m = msg(s);
                m.receive_count = i as u32;
                (s, m)
            })
            .collect();
        let mut bytes = Vec::new();
        {
            let mut ser = rmp_serde::Serializer::new(&mut bytes).with_struct_map();
            let mut map = ser.serialize_map(Some(entries.len())).expect("map");
            for (s, m) in &entries {
                map.serialize_entry(s, m).expect("entry");
            }
            map.end().expect("end");
        }
        let log: MessageLog = rmp_serde::from_slice(&bytes).expect("decode");
        let model: BTreeMap<u64, Message> = entries.into_iter().collect();
        assert_eq!(model[&9].receive_count, 4);
        check(&log, &model);
    }

    #[test]
    fn the_last_version_of_a_large_log_is_freed_in_the_background() {
        let log: MessageLog = (1..=(BACKGROUND_DROP_MIN as u64 + 10))
            .map(|s| (s, msg(s)))
            .collect();
        let probe = Arc::clone(log.get(&1).expect("first"));
        let mut newer = log.clone();
        newer.remove(&2);
        drop(log);
        // `newer` shares the message: only one handle besides the probe.
        assert_eq!(Arc::strong_count(&probe), 2);
        drop(newer);
        wait_for_background_drops();
        assert_eq!(
            Arc::strong_count(&probe),
            1,
            "freed once the thread caught up"
        );
    }
}
