//! Checkpoints: named in-memory captures that a test suite restores between tests.
//!
//! A checkpoint is the capture an export starts from ([`Runtime::capture`]: one barrier,
//! O(1) clones of persistent maps), kept in memory instead of being encoded. Restoring it is
//! one overwrite of the captured services under the same barrier, without the bundle work
//! (no decoding, no per-blob checks): the blobs it refers to are pinned for as long as it
//! exists, so they are known to be in the store.
//!
//! # Cost model
//! - Taking one: the capture holds writers off for the O(1) clones; listing its blobs and
//!   counting its resources is O(resources) afterwards, outside the barrier.
//! - Restoring one: per service an O(1) clone of the captured state, then the provider's
//!   `restore`, which re-creates run-time side effects only: SQS shifts queue clocks
//!   (O(queues)) and wakes waiters, S3 rebuilds its bucket-name index (O(buckets)),
//!   DynamoDB starts index builds only for tables whose captured indexes were not built
//!   (they are shared, so usually none). Nothing walks objects, items or messages.
//! - Memory: the captured maps share every unchanged node with the live state, so a
//!   checkpoint costs what changed since it was taken. That sharing makes an exact in-memory
//!   figure impractical; [`CheckpointInfo`] reports what can be measured honestly: the blobs
//!   the checkpoint refers to, and the bytes of those that only checkpoints keep on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use crate::blob::BlobReaders;
use crate::error::Error;
use crate::runtime::{Runtime, ScopeCounts};
use crate::scope::ScopeFilter;
use crate::snapshot::Snapshot;
use crate::state::Digest;

/// The setting that caps how many checkpoints may exist at once.
pub const LIMIT_SETTING: &str = "CRYOPOD_CHECKPOINT_LIMIT";

/// Checkpoints allowed when [`LIMIT_SETTING`] is not set.
pub const DEFAULT_LIMIT: usize = 16;

/// Why a checkpoint operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The name is not 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
    #[error(
        "invalid checkpoint name `{0}`: use 1 to 64 characters from A-Z, a-z, 0-9, `.`, `_` and `-`"
    )]
    InvalidName(String),
    /// No checkpoint has this name.
    #[error("no checkpoint named `{0}`")]
    NotFound(String),
    /// Taking one more would exceed the limit.
    #[error(
        "{limit} checkpoints exist already, the most {LIMIT_SETTING} allows: delete one first (or raise the limit)"
    )]
    Limit {
        /// The configured maximum.
        limit: usize,
    },
    /// The limit setting is not a number.
    #[error("{LIMIT_SETTING}=`{0}` is not a number of checkpoints")]
    BadSetting(String),
    /// A restore asked for a service the checkpoint did not capture.
    #[error("checkpoint `{name}` holds no state of `{service}` (it has: {has})")]
    ServiceNotCaptured {
        /// The checkpoint.
        name: String,
        /// The service asked for.
        service: String,
        /// The services it holds.
        has: String,
    },
    /// Capturing or installing state failed.
    #[error(transparent)]
    Runtime(#[from] Error),
}

/// One checkpoint: the capture and what is known about it.
struct Checkpoint {
    created_at: String,
    /// No [`BlobReaders`]: the registry pins the blobs instead, so a checkpoint does not stop
    /// blob collection altogether.
    snapshot: Snapshot,
    counts: BTreeMap<String, Vec<ScopeCounts>>,
    blobs: BTreeSet<Digest>,
}

/// A checkpoint as `list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointInfo {
    /// Its name.
    pub name: String,
    /// When it was taken (RFC 3339).
    pub created_at: String,
    /// The services it captured.
    pub services: Vec<String>,
    /// Resource counts per service and scope at the time it was taken.
    pub resources: BTreeMap<String, Vec<ScopeCounts>>,
    /// What it keeps alive.
    pub retained: Retained,
}

/// What a checkpoint keeps alive. Approximate by nature: the in-memory maps share their
/// unchanged nodes with the live state and with other checkpoints, so their cost (what
/// changed since the checkpoint was taken) is not measured; blobs are exact.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Retained {
    /// Blobs it refers to.
    pub blobs: u64,
    /// Their bytes on disk.
    pub blob_bytes: u64,
    /// Of those, blobs the running state no longer refers to: kept only by checkpoints.
    pub blobs_only_in_checkpoints: u64,
    /// Their bytes: what deleting every checkpoint holding them lets collection free.
    pub blob_bytes_only_in_checkpoints: u64,
}

/// The named checkpoints of one runtime.
#[derive(Default)]
pub struct Checkpoints {
    by_name: parking_lot::Mutex<BTreeMap<String, Arc<Checkpoint>>>,
    /// `None`: read [`LIMIT_SETTING`] when a checkpoint is taken.
    limit: Option<usize>,
}

/// Whether `name` is 1 to 64 of `[A-Za-z0-9._-]`: safe in URLs, file names and logs.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_name(name: &str) -> Result<(), CheckpointError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(CheckpointError::InvalidName(name.to_string()))
    }
}

impl Checkpoints {
    /// A registry allowing at most `limit` checkpoints, whatever the environment says.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            by_name: Default::default(),
            limit: Some(limit),
        }
    }

    fn limit(&self) -> Result<usize, CheckpointError> {
        if let Some(l) = self.limit {
            return Ok(l);
        }
        match std::env::var(LIMIT_SETTING) {
            Err(_) => Ok(DEFAULT_LIMIT),
            Ok(v) => v
                .trim()
                .parse()
                .map_err(|_| CheckpointError::BadSetting(v.clone())),
        }
    }

    /// Number of checkpoints.
    pub fn len(&self) -> usize {
        self.by_name.lock().len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_name.lock().is_empty()
    }

    /// Runs `f` with every blob any checkpoint refers to, holding the registry so that no
    /// checkpoint is added meanwhile. Blob collection calls it: a checkpoint being added
    /// still holds its capture's [`BlobReaders`] until it is in the registry, so a
    /// collection either sees it here or is skipped because of those readers.
    pub fn with_pinned<T>(&self, f: impl FnOnce(&BTreeSet<Digest>) -> T) -> T {
        let by_name = self.by_name.lock();
        let pinned: BTreeSet<Digest> = by_name
            .values()
            .flat_map(|c| c.blobs.iter().cloned())
            .collect();
        f(&pinned)
    }

    fn insert(&self, name: &str, checkpoint: Checkpoint) -> Result<(), CheckpointError> {
        let limit = self.limit()?;
        let mut by_name = self.by_name.lock();
        if !by_name.contains_key(name) && by_name.len() >= limit {
            return Err(CheckpointError::Limit { limit });
        }
        by_name.insert(name.to_string(), Arc::new(checkpoint));
        Ok(())
    }

    fn get(&self, name: &str) -> Result<Arc<Checkpoint>, CheckpointError> {
        check_name(name)?;
        self.by_name
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| CheckpointError::NotFound(name.to_string()))
    }

    /// Drops the checkpoint `name`; its blobs become collectable unless something else
    /// refers to them.
    pub fn delete(&self, name: &str) -> Result<(), CheckpointError> {
        check_name(name)?;
        match self.by_name.lock().remove(name) {
            Some(_) => Ok(()),
            None => Err(CheckpointError::NotFound(name.to_string())),
        }
    }
}

impl Runtime {
    /// Takes checkpoint `name` of `services` (default: all running), replacing one of the
    /// same name. Writers wait only for the capture's O(1) clones.
    pub async fn checkpoint_save(
        &self,
        name: &str,
        services: Option<&[String]>,
    ) -> Result<CheckpointInfo, CheckpointError> {
        check_name(name)?;
        let checkpoints = self.checkpoints();
        // Refuse before capturing when the limit is reached (checked again on insertion).
        let limit = checkpoints.limit()?;
        {
            let by_name = checkpoints.by_name.lock();
            if !by_name.contains_key(name) && by_name.len() >= limit {
                return Err(CheckpointError::Limit { limit });
            }
        }
        let mut snapshot = self.capture(services, &ScopeFilter::all()).await?;
        let created_at = crate::snapshot::now_rfc3339();
        let readers: Option<Arc<BlobReaders>> = snapshot._readers.take();
        let (snapshot, counts, blobs) = tokio::task::spawn_blocking(move || {
            let counts = snapshot
                .services
                .iter()
                .map(|(n, s)| (n.clone(), ScopeCounts::from_summary(s.summary())))
                .collect();
            let blobs = snapshot.blobs();
            (snapshot, counts, blobs)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
        let checkpoint = Checkpoint {
            created_at,
            snapshot,
            counts,
            blobs,
        };
        let info = self.info(name, &checkpoint, None);
        checkpoints.insert(name, checkpoint)?;
        // Only now: until the checkpoint is in the registry, these readers keep blob
        // collection off ([`Checkpoints::with_pinned`]).
        drop(readers);
        tracing::info!(checkpoint = name, services = ?info.services, "checkpoint taken");
        Ok(info)
    }

    /// Makes the running state of the checkpoint's services (or of `services`, which it
    /// must hold) exactly checkpoint `name` again, all at one instant: a request sees the
    /// state before or after, never a mix. Returns the restored services.
    pub async fn checkpoint_restore(
        &self,
        name: &str,
        services: Option<&[String]>,
    ) -> Result<Vec<&'static str>, CheckpointError> {
        let checkpoint = self.checkpoints().get(name)?;
        let wanted = self.select(services)?;
        let mut snapshot = checkpoint.snapshot.clone();
        if services.is_some() {
            for s in &wanted {
                if !snapshot.services.contains_key(*s) {
                    return Err(CheckpointError::ServiceNotCaptured {
                        name: name.to_string(),
                        service: s.to_string(),
                        has: snapshot
                            .services
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
            snapshot
                .services
                .retain(|s, _| wanted.iter().any(|w| w == s));
        }
        // Collection stays off while the restore runs, so a checkpoint deleted meanwhile
        // cannot lose the blobs the restored state refers to.
        let _readers = self.blobs().readers();
        let start = std::time::Instant::now();
        let restored = self.apply_pinned(snapshot).await?;
        tracing::info!(checkpoint = name, services = ?restored, elapsed = ?start.elapsed(), "checkpoint restored");
        Ok(restored)
    }

    /// Every checkpoint, by name. Stats each checkpoint's blobs and lists the running
    /// state's: O(blobs), for a management call.
    pub async fn checkpoint_list(&self) -> Result<Vec<CheckpointInfo>, CheckpointError> {
        let all: Vec<(String, Arc<Checkpoint>)> = self
            .checkpoints()
            .by_name
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if all.is_empty() {
            return Ok(Vec::new());
        }
        let live = self.capture(None, &ScopeFilter::all()).await?;
        let runtime = self.clone();
        tokio::task::spawn_blocking(move || {
            let live_blobs = live.blobs();
            drop(live);
            all.iter()
                .map(|(name, c)| runtime.info(name, c, Some(&live_blobs)))
                .collect()
        })
        .await
        .map_err(|e| Error::Task(e.to_string()).into())
    }

    /// Drops checkpoint `name`.
    pub fn checkpoint_delete(&self, name: &str) -> Result<(), CheckpointError> {
        self.checkpoints().delete(name)?;
        tracing::info!(checkpoint = name, "checkpoint deleted");
        Ok(())
    }

    fn info(&self, name: &str, c: &Checkpoint, live: Option<&BTreeSet<Digest>>) -> CheckpointInfo {
        let mut retained = Retained::default();
        for d in &c.blobs {
            let size = self.blobs().size(d).unwrap_or(0);
            retained.blobs += 1;
            retained.blob_bytes += size;
            if live.is_some_and(|l| !l.contains(d)) {
                retained.blobs_only_in_checkpoints += 1;
                retained.blob_bytes_only_in_checkpoints += size;
            }
        }
        CheckpointInfo {
            name: name.to_string(),
            created_at: c.created_at.clone(),
            services: c.snapshot.services.keys().cloned().collect(),
            resources: c.counts.clone(),
            retained,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_url_safe() {
        for ok in ["a", "baseline", "test_1.v-2", &"x".repeat(64)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a/b", "a b", "é", "..%2f", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    fn empty_checkpoint() -> Checkpoint {
        Checkpoint {
            created_at: String::new(),
            snapshot: Snapshot::default(),
            counts: BTreeMap::new(),
            blobs: BTreeSet::new(),
        }
    }

    #[test]
    fn the_limit_refuses_new_names_but_not_replacements() {
        let c = Checkpoints::with_limit(2);
        c.insert("a", empty_checkpoint()).expect("first");
        c.insert("b", empty_checkpoint()).expect("second");
        assert!(matches!(
            c.insert("c", empty_checkpoint()),
            Err(CheckpointError::Limit { limit: 2 })
        ));
        c.insert("a", empty_checkpoint())
            .expect("replacing is no new checkpoint");
        c.delete("b").expect("delete");
        assert!(matches!(c.delete("b"), Err(CheckpointError::NotFound(_))));
        c.insert("c", empty_checkpoint()).expect("room again");
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn pinned_blobs_are_the_union_of_every_checkpoint() {
        let c = Checkpoints::with_limit(4);
        let d1 = Digest::of(b"one");
        let d2 = Digest::of(b"two");
        let mut a = empty_checkpoint();
        a.blobs.insert(d1);
        let mut b = empty_checkpoint();
        b.blobs.extend([d1, d2]);
        c.insert("a", a).expect("a");
        c.insert("b", b).expect("b");
        assert_eq!(c.with_pinned(|p| p.clone()), [d1, d2].into());
        c.delete("b").expect("delete");
        assert_eq!(c.with_pinned(|p| p.clone()), [d1].into());
    }
}
