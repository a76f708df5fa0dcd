//! The SQS state, version 1: queues with their attributes, tags, messages and FIFO
//! deduplication records, partitioned by scope.
//!
//! # Time
//! Every deadline a queue keeps (delay and visibility deadlines, retention expiry,
//! deduplication windows, the purge cool-down) is in the queue's own clock, in epoch
//! milliseconds: `queue time = wall time - clock_offset_ms`. A live queue's offset stays put.
//! A capture stamps each scope with `captured_at` (wall time); a restore adds
//! `now - captured_at` to every restored queue's offset, which is O(queues), not O(messages).
//! The effect: time stands still while a snapshot sits on disk. A message in flight for 10 more
//! seconds when the snapshot was taken becomes visible 10 seconds after the restore; a delayed
//! message keeps its remaining delay; a deduplication id keeps its remaining window.
//! Timestamps that are facts about the past (`SentTimestamp`,
//! `ApproximateFirstReceiveTimestamp`, `CreatedTimestamp`) stay in wall time and are never
//! shifted.
//!
//! # Indexes
//! A queue's messages are kept by sequence number (`messages`), and a standard queue finds
//! what to deliver through its receive index ([`Queue::ready`]), an ordered set of
//! `(visible_at, seq)`, so a receive costs O(log n) per message, never a scan of the whole
//! queue. Indexes are derived and never serialized. The receive index is built on first use
//! rather than when a queue is decoded: a restore of a million messages then costs what
//! decoding them costs, and each queue pays for its index once, at its first receive (the
//! provider builds it on the live state so later requests share it). The deduplication
//! expiry index (FIFO queues only, bounded by the 5-minute window) is rebuilt on decode.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use cryopod::{Digest, ResourceCounts, Resources, Scoped, ScopedState};
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};

use crate::messages::MessageLog;

/// How long a FIFO deduplication id is remembered, as AWS documents it (5 minutes).
pub const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;

/// A message's attributes (or system attributes) by name, in name order.
///
/// Why not `imbl::OrdMap` like the queue-level maps: its smallest node holds 64 entries, so
/// a message with one attribute carried about 7 KB of map, against 1.3 KB for a `BTreeMap`
/// (SQS allows 10 attributes per message). Messages sit behind an `Arc` in the
/// [`MessageLog`], so a capture never copies these maps. Same serialized form (a map in
/// name order).
pub type Attributes = std::collections::BTreeMap<String, AttributeValue>;

/// A message attribute (or message system attribute) value, as sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeValue {
    /// `String`, `Number` or `Binary`, optionally with a custom suffix (`Number.int`).
    pub data_type: String,
    /// The value of `String` and `Number` attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    /// The value of `Binary` attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_value: Option<Bytes>,
}

/// One message, with everything needed to resume its life cycle after a restore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The message id (a UUID).
    pub id: String,
    /// The body. Bodies are at most 1 MiB, so they stay inline rather than in the blob store.
    pub body: String,
    /// Message attributes by name.
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
    /// Message system attributes (`AWSTraceHeader`).
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub system_attributes: Attributes,
    /// The sender's account (the `SenderId` attribute).
    pub sender_id: String,
    /// Wall-clock epoch millis of the send (`SentTimestamp`).
    pub sent_at: i64,
    /// How many times the message was received (`ApproximateReceiveCount`).
    pub receive_count: u32,
    /// Wall-clock epoch millis of the first receive (`ApproximateFirstReceiveTimestamp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_received_at: Option<i64>,
    /// Queue-clock millis from which the message may be received: the end of its delay or of
    /// its visibility timeout.
    pub visible_at: i64,
    /// Whether `visible_at` is the end of a delay (never received since it was sent or moved)
    /// rather than of a visibility timeout: tells "delayed" from "in flight".
    pub delayed: bool,
    /// Queue-clock millis at which the retention period ends.
    pub expires_at: i64,
    /// FIFO (and fair standard queue) message group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// FIFO deduplication id (explicit or content-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_id: Option<String>,
    /// ARN of the queue this message was moved from by a redrive policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_source: Option<String>,
}

impl Message {
    /// Received and its visibility timeout not yet over.
    pub fn in_flight(&self, now: i64) -> bool {
        !self.delayed && self.visible_at > now
    }

    /// Still inside its delay.
    pub fn is_delayed(&self, now: i64) -> bool {
        self.delayed && self.visible_at > now
    }
}

/// What a user sees of a queue, for diffs ([`cryopod::units`]).
#[derive(Serialize)]
struct QueueView<'a> {
    name: &'a str,
    fifo: bool,
    attributes: &'a OrdMap<String, String>,
    tags: &'a OrdMap<String, String>,
    created_at: i64,
    last_modified_at: i64,
}

impl<'a> QueueView<'a> {
    fn of(q: &'a Queue) -> Self {
        Self {
            name: &q.name,
            fifo: q.fifo,
            attributes: &q.attributes,
            tags: &q.tags,
            created_at: q.created_at,
            last_modified_at: q.last_modified_at,
        }
    }
}

/// What a user sees of a message, for diffs: everything but its deadlines, which are kept
/// in the queue's clock and so move when a restore re-bases the clock.
#[derive(Serialize)]
struct MessageView<'a> {
    id: &'a str,
    body: &'a str,
    attributes: &'a Attributes,
    system_attributes: &'a Attributes,
    sender_id: &'a str,
    sent_at: i64,
    receive_count: u32,
    first_received_at: Option<i64>,
    delayed: bool,
    group_id: Option<&'a str>,
    dedup_id: Option<&'a str>,
    dead_letter_source: Option<&'a str>,
}

impl<'a> MessageView<'a> {
    fn of(m: &'a Message) -> Self {
        Self {
            id: &m.id,
            body: &m.body,
            attributes: &m.attributes,
            system_attributes: &m.system_attributes,
            sender_id: &m.sender_id,
            sent_at: m.sent_at,
            receive_count: m.receive_count,
            first_received_at: m.first_received_at,
            delayed: m.delayed,
            group_id: m.group_id.as_deref(),
            dedup_id: m.dedup_id.as_deref(),
            dead_letter_source: m.dead_letter_source.as_deref(),
        }
    }
}

/// A remembered FIFO deduplication id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupRecord {
    /// The id of the message first sent with this deduplication id.
    pub message_id: String,
    /// Its sequence number.
    pub seq: u64,
    /// Queue-clock millis at which the window closes.
    pub expires_at: i64,
}

/// A queue: attributes, tags, messages and their indexes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "QueueRepr")]
pub struct Queue {
    /// The queue name (`orders.fifo`).
    pub name: String,
    /// FIFO queue.
    pub fifo: bool,
    /// Every settable attribute with its current value (defaults filled in at creation).
    pub attributes: OrdMap<String, String>,
    /// Cost-allocation tags.
    pub tags: OrdMap<String, String>,
    /// Wall-clock epoch seconds of creation.
    pub created_at: i64,
    /// Wall-clock epoch seconds of the last attribute change.
    pub last_modified_at: i64,
    /// The next message sequence number (FIFO `SequenceNumber`, and delivery order).
    pub next_seq: u64,
    /// Messages by sequence number, in a persistent map built in one pass when a snapshot
    /// is decoded ([`MessageLog`]). Each message is behind an `Arc`: a write after a capture
    /// copies the chunk of 64 it changes as 64 pointers, not 64 messages with their strings.
    pub messages: MessageLog,
    /// FIFO deduplication records by key (deduplication id, prefixed with the group when the
    /// deduplication scope is `messageGroup`).
    pub dedup: OrdMap<String, DedupRecord>,
    /// Queue-clock millis of the last purge (`PurgeQueue` may run once per 60 seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_purge_at: Option<i64>,
    /// Wall time minus queue time, see the module documentation.
    pub clock_offset_ms: i64,
    /// `(visible_at, seq)` of every message: delivery order of a standard queue. Derived,
    /// built on first use; read it through [`Queue::ready`].
    #[serde(skip_serializing)]
    ready: ReadyIndex,
    /// `(expires_at, key)` of every deduplication record, for pruning. Derived.
    #[serde(skip_serializing)]
    pub dedup_expiry: OrdSet<(i64, String)>,
}

/// A queue's receive index, `(visible_at, seq)` of every message, built on first use.
///
/// Why lazy: rebuilding every queue's index while decoding a snapshot cost as much as
/// decoding the messages themselves, although most queues of a restored state are not read
/// right away. The index is derived from `messages` alone, so an index not built yet needs no
/// maintenance: the mutators of [`Queue`] update it only once it exists. Cloning it is O(1)
/// (a persistent set), so the capture barrier's clone stays O(1).
#[derive(Clone, Default)]
pub struct ReadyIndex(OnceLock<OrdSet<(i64, u64)>>);

/// Two indexes are always equal: the index is derived from the messages, which the queue's
/// equality compares, and whether it was built yet is not part of a queue's value.
impl PartialEq for ReadyIndex {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for ReadyIndex {}

impl fmt::Debug for ReadyIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.get() {
            Some(set) => write!(f, "ReadyIndex({} entries)", set.len()),
            None => f.write_str("ReadyIndex(not built)"),
        }
    }
}

/// The serialized form of a [`Queue`]: the same fields without the derived indexes.
#[derive(Deserialize)]
struct QueueRepr {
    name: String,
    fifo: bool,
    attributes: OrdMap<String, String>,
    tags: OrdMap<String, String>,
    created_at: i64,
    last_modified_at: i64,
    next_seq: u64,
    messages: MessageLog,
    dedup: OrdMap<String, DedupRecord>,
    #[serde(default)]
    last_purge_at: Option<i64>,
    clock_offset_ms: i64,
}

impl From<QueueRepr> for Queue {
    fn from(r: QueueRepr) -> Self {
        let mut q = Queue {
            name: r.name,
            fifo: r.fifo,
            attributes: r.attributes,
            tags: r.tags,
            created_at: r.created_at,
            last_modified_at: r.last_modified_at,
            next_seq: r.next_seq,
            messages: r.messages,
            dedup: r.dedup,
            last_purge_at: r.last_purge_at,
            clock_offset_ms: r.clock_offset_ms,
            ready: ReadyIndex::default(),
            dedup_expiry: OrdSet::new(),
        };
        q.rebuild_dedup_index();
        q
    }
}

impl Queue {
    /// An empty queue created at wall time `now_ms`.
    pub fn new(name: String, fifo: bool, attributes: OrdMap<String, String>, now_ms: i64) -> Self {
        Queue {
            name,
            fifo,
            attributes,
            tags: OrdMap::new(),
            created_at: now_ms / 1000,
            last_modified_at: now_ms / 1000,
            next_seq: 1,
            messages: MessageLog::new(),
            dedup: OrdMap::new(),
            last_purge_at: None,
            clock_offset_ms: 0,
            ready: ReadyIndex::default(),
            dedup_expiry: OrdSet::new(),
        }
    }

    /// The queue's clock at wall time `wall_ms`.
    pub fn now(&self, wall_ms: i64) -> i64 {
        wall_ms - self.clock_offset_ms
    }

    /// Recomputes the derived indexes from the messages and deduplication records: the
    /// receive index is dropped (to be built on next use), the deduplication index rebuilt.
    pub fn rebuild_indexes(&mut self) {
        self.ready = ReadyIndex::default();
        self.rebuild_dedup_index();
    }

    fn rebuild_dedup_index(&mut self) {
        self.dedup_expiry = self
            .dedup
            .iter()
            .map(|(k, r)| (r.expires_at, k.clone()))
            .collect();
    }

    /// The receive index: `(visible_at, seq)` of every message, in delivery order of a
    /// standard queue. Built from the messages on the first call (O(n log n) once), then
    /// kept up to date by [`Queue::push`], [`Queue::remove`] and [`Queue::set_visible_at`].
    pub fn ready(&self) -> &OrdSet<(i64, u64)> {
        self.ready.0.get_or_init(|| {
            self.messages
                .iter()
                .map(|(seq, m)| (m.visible_at, *seq))
                .collect()
        })
    }

    /// Whether the receive index exists yet (diagnostics and tests).
    pub fn ready_is_built(&self) -> bool {
        self.ready.0.get().is_some()
    }

    /// An integer attribute, or its default when unset or unparsable.
    pub fn attr_i64(&self, name: &str, default: i64) -> i64 {
        self.attributes
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// A boolean attribute (`"true"`).
    pub fn attr_bool(&self, name: &str) -> bool {
        self.attributes.get(name).is_some_and(|v| v == "true")
    }

    /// Adds a message under a fresh sequence number, which it returns.
    pub fn push(&mut self, msg: Message) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(ready) = self.ready.0.get_mut() {
            ready.insert((msg.visible_at, seq));
        }
        self.messages.insert(seq, Arc::new(msg));
        seq
    }

    /// Removes a message and its index entry.
    pub fn remove(&mut self, seq: u64) -> Option<Message> {
        let msg = self.messages.remove(&seq)?;
        if let Some(ready) = self.ready.0.get_mut() {
            ready.remove(&(msg.visible_at, seq));
        }
        Some(Arc::unwrap_or_clone(msg))
    }

    /// Changes when a message becomes visible, keeping the index in step.
    pub fn set_visible_at(&mut self, seq: u64, visible_at: i64, delayed: bool) {
        if let Some(m) = self.messages.get_mut(&seq) {
            let m = Arc::make_mut(m);
            if let Some(ready) = self.ready.0.get_mut() {
                ready.remove(&(m.visible_at, seq));
                ready.insert((visible_at, seq));
            }
            m.visible_at = visible_at;
            m.delayed = delayed;
        }
    }

    /// Adds the messages and deduplication records of `other` (the same queue in another
    /// state) that this queue lacks, by message id and deduplication key; see
    /// [`SqsScope`]'s merge. Deadlines move from `other`'s clock onto this queue's.
    pub fn absorb(&mut self, other: &Queue) {
        let shift = other.clock_offset_ms - self.clock_offset_ms;
        let have: std::collections::HashSet<String> =
            self.messages.values().map(|m| m.id.clone()).collect();
        let mut renumbered = std::collections::HashMap::new();
        for (seq, m) in other.messages.iter() {
            if have.contains(&m.id) {
                continue;
            }
            let mut m = Message::clone(m);
            m.visible_at = m.visible_at.saturating_add(shift);
            m.expires_at = m.expires_at.saturating_add(shift);
            renumbered.insert(*seq, self.push(m));
        }
        for (key, r) in other.dedup.iter() {
            if self.dedup.contains_key(key) {
                continue;
            }
            let mut r = r.clone();
            r.expires_at = r.expires_at.saturating_add(shift);
            if let Some(seq) = renumbered.get(&r.seq) {
                r.seq = *seq;
            }
            self.remember_dedup(key.clone(), r);
        }
    }

    /// Removes every message.
    pub fn clear(&mut self) {
        self.messages = MessageLog::new();
        self.ready = ReadyIndex::default();
    }

    /// Remembers a deduplication key until `expires_at` (queue clock).
    pub fn remember_dedup(&mut self, key: String, record: DedupRecord) {
        if let Some(old) = self.dedup.get(&key) {
            self.dedup_expiry.remove(&(old.expires_at, key.clone()));
        }
        self.dedup_expiry.insert((record.expires_at, key.clone()));
        self.dedup.insert(key, record);
    }

    /// Forgets deduplication records whose window closed before `now` (queue clock).
    pub fn prune_dedup(&mut self, now: i64) {
        while let Some((at, key)) = self.dedup_expiry.get_min().cloned() {
            if at > now {
                break;
            }
            self.dedup_expiry.remove(&(at, key.clone()));
            self.dedup.remove(&key);
        }
    }

    /// The earliest `visible_at` after `now` (queue clock), for long polls to sleep until.
    pub fn next_visible_after(&self, now: i64) -> Option<i64> {
        self.ready().range((now + 1, 0)..).next().map(|(at, _)| *at)
    }

    /// `(visible, in flight, delayed)` counts at queue time `now`.
    pub fn counts(&self, now: i64) -> (u64, u64, u64) {
        let mut visible = 0;
        let mut in_flight = 0;
        let mut delayed = 0;
        for m in self.messages.values() {
            if m.in_flight(now) {
                in_flight += 1;
            } else if m.is_delayed(now) {
                delayed += 1;
            } else {
                visible += 1;
            }
        }
        (visible, in_flight, delayed)
    }
}

/// One scope's queues.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqsScope {
    /// Queues by name.
    pub queues: OrdMap<String, Queue>,
    /// Wall-clock epoch millis at which this copy was captured; `None` in the live state.
    /// A restore shifts every queue's clock by the time elapsed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured_at: Option<i64>,
}

impl Resources for SqsScope {
    /// `service-merge` works down to messages: a queue only in the bundle is added; a queue
    /// on both sides takes its attributes and tags from the bundle and keeps the union of both
    /// sides' messages by message id, the bundle's on a clash. The running queue's own
    /// messages are appended after the bundle's (new sequence numbers, so FIFO order within a
    /// group is the bundle's messages first) with their deadlines moved onto the bundle
    /// queue's clock, so a message keeps its remaining delay or visibility timeout; receipt
    /// handles issued for them before the merge no longer match, as after any re-send.
    /// Deduplication records are united the same way. Incoming queues are first re-based onto
    /// this scope's capture time so the restore shifts them correctly.
    fn merge(&mut self, incoming: Self) {
        let base = match (self.captured_at, incoming.captured_at) {
            (Some(a), _) => Some(a),
            (None, b) => b,
        };
        let rebase = match (base, incoming.captured_at) {
            (Some(a), Some(b)) => a - b,
            _ => 0,
        };
        for (name, mut q) in incoming.queues {
            q.clock_offset_ms += rebase;
            if let Some(existing) = self.queues.remove(&name) {
                q.absorb(&existing);
            }
            self.queues.insert(name, q);
        }
        self.captured_at = base;
    }

    /// Queues (attributes and tags) and messages (`queue/message-id`). Deadlines in the
    /// queue's clock, the clock itself, sequence numbers and deduplication records are not
    /// content: they move without the user (a restore re-bases the clock).
    fn units(&self, out: &mut cryopod::units::Units) {
        for (name, q) in &self.queues {
            out.add("queue", name.clone(), &QueueView::of(q));
            for m in q.messages.values() {
                out.add("message", format!("{name}/{}", m.id), &MessageView::of(m));
            }
        }
    }

    fn summary(&self) -> ResourceCounts {
        let mut c = ResourceCounts::new();
        c.insert("queue".into(), self.queues.len() as u64);
        c.insert(
            "message".into(),
            self.queues.values().map(|q| q.messages.len() as u64).sum(),
        );
        c
    }

    fn blobs(&self, _out: &mut BTreeSet<Digest>) {}
}

/// The SQS state, version 1.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SqsState {
    /// Queues by scope.
    pub scopes: Scoped<SqsScope>,
}

impl ScopedState for SqsState {
    type Resources = SqsScope;
    fn scoped(&self) -> &Scoped<SqsScope> {
        &self.scopes
    }
    fn scoped_mut(&mut self) -> &mut Scoped<SqsScope> {
        &mut self.scopes
    }
}

cryopod::service_state!(SqsState, service = "sqs", version = 1, tag = "sqs/1");

impl SqsState {
    /// Stamps every scope of a captured copy with the capture time.
    pub fn stamp_capture(&mut self, wall_ms: i64) {
        let scopes: Vec<_> = self.scopes.iter().map(|(s, _)| s.clone()).collect();
        for s in scopes {
            self.scopes.get_mut(&s).captured_at = Some(wall_ms);
        }
    }

    /// Turns a restored copy into live state: shifts each queue's clock by the time elapsed
    /// since its scope was captured and clears the stamps.
    pub fn resume_at(&mut self, wall_ms: i64) {
        let scopes: Vec<_> = self.scopes.iter().map(|(s, _)| s.clone()).collect();
        for s in scopes {
            let r = self.scopes.get_mut(&s);
            if let Some(at) = r.captured_at.take() {
                let elapsed = wall_ms - at;
                if elapsed != 0 {
                    let names: Vec<String> = r.queues.keys().cloned().collect();
                    for n in names {
                        if let Some(q) = r.queues.get_mut(&n) {
                            q.clock_offset_ms += elapsed;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_serialize_as_the_ordmap_they_replace() {
        let value = |s: &str| AttributeValue {
            data_type: "String".into(),
            string_value: Some(s.into()),
            binary_value: None,
        };
        let names = ["zeta", "alpha", "mid"];
        let ours: Attributes = names.iter().map(|n| (n.to_string(), value(n))).collect();
        let theirs: OrdMap<String, AttributeValue> =
            names.iter().map(|n| (n.to_string(), value(n))).collect();
        let a = rmp_serde::to_vec_named(&ours).unwrap();
        assert_eq!(a, rmp_serde::to_vec_named(&theirs).unwrap());
        assert_eq!(rmp_serde::from_slice::<Attributes>(&a).unwrap(), ours);
    }

    fn msg(visible_at: i64) -> Message {
        Message {
            id: "m".into(),
            body: "b".into(),
            attributes: Attributes::new(),
            system_attributes: Attributes::new(),
            sender_id: "000000000000".into(),
            sent_at: 0,
            receive_count: 0,
            first_received_at: None,
            visible_at,
            delayed: false,
            expires_at: i64::MAX,
            group_id: None,
            dedup_id: None,
            dead_letter_source: None,
        }
    }

    #[test]
    fn deserializing_a_queue_rebuilds_its_indexes() {
        let mut q = Queue::new("q".into(), false, OrdMap::new(), 0);
        q.push(msg(5));
        q.push(msg(1));
        q.remember_dedup(
            "d".into(),
            DedupRecord {
                message_id: "m".into(),
                seq: 1,
                expires_at: 9,
            },
        );
        let bytes = rmp_serde::to_vec_named(&q).expect("encode");
        let back: Queue = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(back, q);
        assert!(
            !back.ready_is_built(),
            "the receive index waits for its first use"
        );
        assert_eq!(back.ready().iter().next(), Some(&(1, 2)));
        assert_eq!(back.dedup_expiry.len(), 1);
    }

    #[test]
    fn an_index_built_late_matches_one_kept_up_to_date() {
        let mut eager = Queue::new("q".into(), false, OrdMap::new(), 0);
        let _ = eager.ready();
        let mut lazy = eager.clone();
        lazy.rebuild_indexes();
        for q in [&mut eager, &mut lazy] {
            let a = q.push(msg(5));
            let b = q.push(msg(1));
            q.push(msg(3));
            q.set_visible_at(a, 0, false);
            q.remove(b);
        }
        assert!(eager.ready_is_built());
        assert!(!lazy.ready_is_built());
        assert_eq!(eager.ready(), lazy.ready());
        assert_eq!(
            lazy.ready().iter().collect::<Vec<_>>(),
            vec![&(0, 1), &(3, 3)]
        );
    }

    #[test]
    fn restore_shifts_queue_clocks_by_the_time_since_capture() {
        let mut st = SqsState::default();
        let scope = cryopod::Scope::default();
        st.scopes
            .get_mut(&scope)
            .queues
            .insert("q".into(), Queue::new("q".into(), false, OrdMap::new(), 0));
        st.stamp_capture(1_000);
        st.resume_at(4_000);
        let r = st.scopes.get(&scope).expect("scope");
        assert_eq!(r.captured_at, None);
        assert_eq!(r.queues["q"].clock_offset_ms, 3_000);
        assert_eq!(r.queues["q"].now(4_000), 1_000);
    }

    #[test]
    fn service_merge_rebases_incoming_queues() {
        let mut running = SqsScope {
            captured_at: Some(10_000),
            ..Default::default()
        };
        running
            .queues
            .insert("a".into(), Queue::new("a".into(), false, OrdMap::new(), 0));
        let mut incoming = SqsScope {
            captured_at: Some(4_000),
            ..Default::default()
        };
        incoming
            .queues
            .insert("b".into(), Queue::new("b".into(), false, OrdMap::new(), 0));
        running.merge(incoming);
        assert_eq!(running.queues["b"].clock_offset_ms, 6_000);
        assert_eq!(running.queues["a"].clock_offset_ms, 0);
        assert_eq!(running.captured_at, Some(10_000));
    }

    #[test]
    fn pruning_forgets_only_expired_dedup_ids() {
        let mut q = Queue::new("q.fifo".into(), true, OrdMap::new(), 0);
        for (k, at) in [("a", 5), ("b", 10)] {
            q.remember_dedup(
                k.into(),
                DedupRecord {
                    message_id: k.into(),
                    seq: 1,
                    expires_at: at,
                },
            );
        }
        q.prune_dedup(5);
        assert!(!q.dedup.contains_key("a"));
        assert!(q.dedup.contains_key("b"));
    }
}
