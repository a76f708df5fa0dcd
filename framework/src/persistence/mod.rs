//! Persistence: the running state kept in `DATA_DIR/state` and loaded at start.
//!
//! Layout (all files 0600, directories 0700):
//! ```text
//! DATA_DIR/state/
//!   manifest.json                 the current snapshot: per service, the chunks of its section
//!   objects/sha256/ab/abcd…       one zstd-compressed chunk of a MessagePack state section,
//!                                 named by the sha256 of its uncompressed bytes (layout 1,
//!                                 still read: one object per whole section)
//!   blobs/sha256/ab/abcd…         the runtime's blob store (object bodies, code packages)
//!   journal-<id>.log              `ON_REQUEST` commits newer than the manifest ([`journal`])
//! DATA_DIR/quarantine/<time>/     a saved state that failed to load, moved aside on request
//! ```
//! A save writes new objects first and the manifest last, each as temp file → fsync →
//! rename → fsync of the directory, so a crash at any instant leaves the previous or the new
//! manifest, and every object either manifest names. Unchanged services are not re-encoded
//! (the framework's change tracking says which changed); inside a changed service, sections
//! are cut into content-defined chunks ([`chunks`]), so only the chunks around a change get
//! new names and are written; blobs are never rewritten (they are named by content). After a
//! successful save, objects no manifest names are removed, and blobs neither the saved nor the
//! running state refers to are collected (at most once a minute, never one stored within the
//! grace period: see [`BlobStore::collect_garbage`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cryopod_bundle::Hasher;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::aws::AwsError;
use crate::blob::{BlobStore, Collected, create_private_dir_all};
use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::scope::ScopeFilter;
use crate::server::{ApiError, RequestHooks};
use crate::snapshot::{Snapshot, now_rfc3339};
use crate::state::{Digest, MergeStrategy, ServiceState};

mod chunks;
mod journal;
pub use chunks::ChunkRef;
use chunks::ChunkStore;
use journal::Journal;

/// When state is written to the data dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveStrategy {
    /// Every flush interval, only the services that changed (default).
    Scheduled,
    /// Before each mutating request is answered (group commit).
    OnRequest,
    /// When the emulator stops (SIGTERM, SIGINT).
    OnShutdown,
    /// Only through the API (`POST /_cryopod/state/save`).
    Manual,
}

/// When state is read from the data dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadStrategy {
    /// Everything, before the first request is served (default).
    OnStartup,
    /// Each service on its first request.
    OnRequest,
    /// Only through the API (`POST /_cryopod/state/load`).
    Manual,
}

/// What to do when the saved state does not load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnCorrupt {
    /// Refuse to start, naming the bad object (default: never silently start empty).
    Fail,
    /// Move the bad state aside into `DATA_DIR/quarantine/`, say where, and start empty.
    Quarantine,
}

/// A configuration value that is not one of the documented ones.
#[derive(Debug, thiserror::Error)]
#[error("unknown {setting} `{value}`; expected one of: {expected}")]
pub struct BadSetting {
    setting: &'static str,
    value: String,
    expected: &'static str,
}

fn norm(s: &str) -> String {
    s.trim().to_ascii_uppercase().replace('-', "_")
}

impl FromStr for SaveStrategy {
    type Err = BadSetting;
    fn from_str(s: &str) -> std::result::Result<Self, BadSetting> {
        match norm(s).as_str() {
            "SCHEDULED" => Ok(Self::Scheduled),
            "ON_REQUEST" => Ok(Self::OnRequest),
            "ON_SHUTDOWN" => Ok(Self::OnShutdown),
            "MANUAL" => Ok(Self::Manual),
            _ => Err(BadSetting {
                setting: "SNAPSHOT_SAVE_STRATEGY",
                value: s.into(),
                expected: "SCHEDULED, ON_REQUEST, ON_SHUTDOWN, MANUAL",
            }),
        }
    }
}

impl FromStr for LoadStrategy {
    type Err = BadSetting;
    fn from_str(s: &str) -> std::result::Result<Self, BadSetting> {
        match norm(s).as_str() {
            "ON_STARTUP" => Ok(Self::OnStartup),
            "ON_REQUEST" => Ok(Self::OnRequest),
            "MANUAL" => Ok(Self::Manual),
            _ => Err(BadSetting {
                setting: "SNAPSHOT_LOAD_STRATEGY",
                value: s.into(),
                expected: "ON_STARTUP, ON_REQUEST, MANUAL",
            }),
        }
    }
}

impl FromStr for OnCorrupt {
    type Err = BadSetting;
    fn from_str(s: &str) -> std::result::Result<Self, BadSetting> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fail" => Ok(Self::Fail),
            "quarantine" => Ok(Self::Quarantine),
            _ => Err(BadSetting {
                setting: "--on-corrupt",
                value: s.into(),
                expected: "fail, quarantine",
            }),
        }
    }
}

impl fmt::Display for SaveStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Scheduled => "SCHEDULED",
            Self::OnRequest => "ON_REQUEST",
            Self::OnShutdown => "ON_SHUTDOWN",
            Self::Manual => "MANUAL",
        })
    }
}

impl fmt::Display for LoadStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OnStartup => "ON_STARTUP",
            Self::OnRequest => "ON_REQUEST",
            Self::Manual => "MANUAL",
        })
    }
}

/// Persistence settings.
#[derive(Clone, Debug)]
pub struct PersistenceConfig {
    /// `DATA_DIR`.
    pub data_dir: PathBuf,
    /// When to save.
    pub save: SaveStrategy,
    /// When to load.
    pub load: LoadStrategy,
    /// Period of `SCHEDULED` saves.
    pub flush_interval: Duration,
    /// What to do with a state that fails to load.
    pub on_corrupt: OnCorrupt,
}

/// Errors of persistence; each names the file involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistenceError {
    /// The saved state cannot be loaded.
    #[error(
        "the saved state in {dir} does not load: {object}: {reason}. Nothing was loaded. Fix or remove the file, or start with --on-corrupt=quarantine to move the saved state aside and start empty"
    )]
    Corrupt {
        /// The state directory.
        dir: PathBuf,
        /// The bad file.
        object: PathBuf,
        /// Why.
        reason: String,
    },
    /// I/O on the data dir failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// The manifest of a saved state: which object holds each service's section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StateManifest {
    /// Layout version of the data dir.
    pub layout: u32,
    /// When it was saved.
    pub saved_at: String,
    /// Per service.
    pub services: BTreeMap<String, ObjectRef>,
    /// The `ON_REQUEST` journal continuing this snapshot (a file in the state directory), if
    /// any: its commits are newer than the sections above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
}

/// One service's saved section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// State version of the section.
    pub state_version: u32,
    /// The section's name: since layout 2 the sha256 of its chunk digests
    /// ([`chunks::section_digest`]); in layout 1 the sha256 of the uncompressed section, which
    /// was then one object of that name.
    pub digest: Digest,
    /// Uncompressed size.
    pub size: u64,
    /// The chunks holding the section, in order (layout 2; empty in layout 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkRef>,
}

/// Layout written: 2 stores each section as content-defined chunks. Layout 1 (one object per
/// section) is still read, so a data dir from an older build loads and is rewritten in
/// layout 2 by its next save.
const LAYOUT: u32 = 2;
const READABLE_LAYOUTS: [u32; 2] = [1, 2];

/// Injected I/O failures for crash and fault tests (test-only; never set it in production):
/// `CRYOPOD_FAILPOINT=<step>[:<n>[+]][:enospc]` makes the n-th (default first) occurrence of a
/// save step fail, with `+` that one and every later one, with `enospc` as a full disk fails
/// (`No space left on device`, os error 28) instead of with a message naming the failpoint.
/// Steps: `object-write`, `object-fsync`, `object-rename`, `dir-fsync`, `manifest-write`,
/// `manifest-fsync`, `manifest-rename`, `journal-write`, `journal-fsync`.
mod failpoint {
    use std::io;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A parsed `CRYOPOD_FAILPOINT`.
    #[derive(Debug, PartialEq, Eq)]
    pub(super) struct Spec {
        step: String,
        nth: u64,
        and_later: bool,
        enospc: bool,
    }

    /// Parses `<step>[:<n>[+]][:enospc]`; a count that is not a number means the first.
    pub(super) fn parse(v: &str) -> Option<Spec> {
        let mut parts = v.trim().split(':');
        let step = parts.next().filter(|s| !s.is_empty())?.to_string();
        let mut spec = Spec {
            step,
            nth: 1,
            and_later: false,
            enospc: false,
        };
        for part in parts {
            if part.eq_ignore_ascii_case("enospc") {
                spec.enospc = true;
            } else if let Some(n) = part.strip_suffix('+') {
                spec.nth = n.parse().unwrap_or(1);
                spec.and_later = true;
            } else {
                spec.nth = part.parse().unwrap_or(1);
            }
        }
        Some(spec)
    }

    static SPEC: OnceLock<Option<Spec>> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);

    pub(super) fn hit(step: &str) -> io::Result<()> {
        let spec = SPEC.get_or_init(|| parse(&std::env::var("CRYOPOD_FAILPOINT").ok()?));
        let Some(spec) = spec.as_ref().filter(|s| s.step == step) else {
            return Ok(());
        };
        let c = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
        if c == spec.nth || (spec.and_later && c > spec.nth) {
            tracing::warn!(
                step,
                occurrence = c,
                enospc = spec.enospc,
                "injected failure (CRYOPOD_FAILPOINT)"
            );
            return Err(if spec.enospc {
                io::Error::from_raw_os_error(28)
            } else {
                io::Error::other(format!("injected failure at {step} (CRYOPOD_FAILPOINT)"))
            });
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn specs_parse_with_count_repetition_and_errno() {
            let spec = |step: &str, nth, and_later, enospc| Spec {
                step: step.into(),
                nth,
                and_later,
                enospc,
            };
            assert_eq!(
                parse("journal-write"),
                Some(spec("journal-write", 1, false, false))
            );
            assert_eq!(
                parse("object-write:3"),
                Some(spec("object-write", 3, false, false))
            );
            assert_eq!(
                parse("object-write:2+:enospc"),
                Some(spec("object-write", 2, true, true))
            );
            assert_eq!(
                parse("journal-write:enospc"),
                Some(spec("journal-write", 1, false, true))
            );
            assert_eq!(parse(""), None);
        }
    }
}

/// Encodes a state section into `w`, keeping the writer's own I/O error when writing is what
/// failed. rmp-serde wraps it (`invalid value write: error while writing multi-byte
/// MessagePack value`), which hid a full disk behind an encoding message in health, in the
/// log and in every answer.
fn encode_section(state: &dyn ServiceState, w: &mut dyn Write) -> io::Result<()> {
    state.encode_to(w).map_err(|e| root_io_error(&e))
}

/// The innermost I/O error of `e`'s source chain (its OS error code kept, so it still reads
/// `No space left on device (os error 28)`), or `e` as a message when no I/O failed.
fn root_io_error(e: &(dyn std::error::Error + 'static)) -> io::Error {
    let mut source = Some(e);
    let mut found = None;
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            found = Some(io);
        }
        source = s.source();
    }
    match found {
        Some(io) => match io.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(io.kind(), io.to_string()),
        },
        None => io::Error::other(e.to_string()),
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PersistenceError + use<> {
    let path = path.to_path_buf();
    move |source| PersistenceError::Io { op, path, source }
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    failpoint::hit("dir-fsync")?;
    File::open(dir)?.sync_all()
}

/// The files of a saved state.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("state"),
        }
    }

    fn manifest_path(&self) -> PathBuf {
        self.root.join("manifest.json")
    }

    fn object_path(&self, d: &Digest) -> PathBuf {
        self.chunk_store().path(d)
    }

    fn read_manifest(&self) -> std::result::Result<Option<StateManifest>, PersistenceError> {
        let path = self.manifest_path();
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("cannot read", &path)(e)),
        };
        let m: StateManifest =
            serde_json::from_slice(&text).map_err(|e| PersistenceError::Corrupt {
                dir: self.root.clone(),
                object: path.clone(),
                reason: format!("not a valid manifest: {e}"),
            })?;
        if !READABLE_LAYOUTS.contains(&m.layout) {
            return Err(PersistenceError::Corrupt {
                dir: self.root.clone(),
                object: path,
                reason: format!(
                    "layout version {} is not supported (this build reads {READABLE_LAYOUTS:?})",
                    m.layout
                ),
            });
        }
        Ok(Some(m))
    }

    fn chunk_store(&self) -> ChunkStore {
        ChunkStore::new(self.root.join("objects"))
    }

    /// Writes one service section as content-defined chunks, only those not stored yet;
    /// returns the section's reference and the bytes written.
    fn write_object(
        &self,
        state: &dyn ServiceState,
    ) -> std::result::Result<(ObjectRef, u64), PersistenceError> {
        let objects = self.root.join("objects");
        let (chunks, size, written) = self
            .chunk_store()
            .write_section(|w| encode_section(state, w))
            .map_err(io_err("cannot write the state into", &objects))?;
        let r = ObjectRef {
            state_version: state.version(),
            digest: chunks::section_digest(&chunks),
            size,
            chunks,
        };
        Ok((r, written))
    }

    fn write_manifest(&self, m: &StateManifest) -> std::result::Result<u64, PersistenceError> {
        let path = self.manifest_path();
        // Compact: with every section's chunk list it is the one file every save rewrites.
        let bytes = serde_json::to_vec(m)
            .map_err(|e| io_err("cannot encode", &path)(io::Error::other(e)))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-manifest-")
            .tempfile_in(&self.root)
            .map_err(io_err("cannot create a temp file in", &self.root))?;
        failpoint::hit("manifest-write").map_err(io_err("cannot write", &path))?;
        tmp.write_all(&bytes)
            .map_err(io_err("cannot write", &path))?;
        failpoint::hit("manifest-fsync").map_err(io_err("cannot fsync", &path))?;
        tmp.as_file()
            .sync_all()
            .map_err(io_err("cannot fsync", &path))?;
        failpoint::hit("manifest-rename").map_err(io_err("cannot rename into", &path))?;
        tmp.persist(&path)
            .map_err(|e| io_err("cannot rename into", &path)(e.error))?;
        fsync_dir(&self.root).map_err(io_err("cannot fsync", &self.root))?;
        Ok(bytes.len() as u64)
    }

    /// Layout 1: the whole section as one zstd object named by its content digest.
    fn read_legacy_object(
        &self,
        service: &str,
        r: &ObjectRef,
        path: &Path,
    ) -> std::result::Result<Box<dyn ServiceState>, PersistenceError> {
        let corrupt = |reason: String| PersistenceError::Corrupt {
            dir: self.root.clone(),
            object: path.to_path_buf(),
            reason,
        };
        let f = File::open(path)
            .map_err(|e| corrupt(format!("{service} state object cannot be opened: {e}")))?;
        let mut dec = zstd::Decoder::new(BufReader::new(f)).map_err(|e| corrupt(e.to_string()))?;
        dec.window_log_max(27).map_err(|e| corrupt(e.to_string()))?;
        let mut hr = HashingReader {
            inner: dec,
            hasher: Hasher::new(),
            size: 0,
        };
        let (state, trailing) = crate::state::decode_section(service, r.state_version, &mut hr)
            .map_err(|e| corrupt(format!("{service} state does not decode: {e}")))?;
        if trailing != 0 {
            return Err(corrupt(format!(
                "{trailing} bytes follow the {service} state"
            )));
        }
        let got = hr.hasher.finish();
        if got != r.digest || hr.size != r.size {
            return Err(corrupt(format!(
                "{service} state object is damaged: content digest {got} ({} bytes) does not match its name ({} bytes expected)",
                hr.size, r.size
            )));
        }
        Ok(state)
    }

    /// Decodes one object, checking its digest, and upgrades it to `version`.
    fn read_object(
        &self,
        service: &str,
        r: &ObjectRef,
        version: u32,
    ) -> std::result::Result<Box<dyn ServiceState>, PersistenceError> {
        // A chunked section has no file of its own: its errors name the bad chunk, or the
        // manifest that lists the chunks.
        let path = if r.chunks.is_empty() {
            self.object_path(&r.digest)
        } else {
            self.manifest_path()
        };
        let corrupt = |reason: String| PersistenceError::Corrupt {
            dir: self.root.clone(),
            object: path.clone(),
            reason,
        };
        let state = if r.chunks.is_empty() {
            self.read_legacy_object(service, r, &path)?
        } else {
            let store = self.chunk_store();
            let mut reader = store.reader(&r.chunks);
            let decoded = crate::state::decode_section(service, r.state_version, &mut reader);
            let failed = reader.failed.take();
            let bad = |reason: String| PersistenceError::Corrupt {
                dir: self.root.clone(),
                object: failed.clone().unwrap_or_else(|| path.clone()),
                reason,
            };
            let (state, trailing) =
                decoded.map_err(|e| bad(format!("{service} state does not decode: {e}")))?;
            if trailing != 0 {
                return Err(bad(format!("{trailing} bytes follow the {service} state")));
            }
            state
        };
        if state.service() != service {
            return Err(corrupt(format!(
                "object holds {} state, manifest says {service}",
                state.service()
            )));
        }
        crate::state::upgrade_to(state, version).map_err(|e| corrupt(e.to_string()))
    }

    /// Removes temp files a crash left behind.
    fn remove_stale_temp_files(&self) {
        for dir in [
            self.root.clone(),
            self.root.join("objects"),
            self.root.join("blobs"),
        ] {
            if let Ok(rd) = fs::read_dir(&dir) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with(".tmp-") {
                        tracing::info!(path = %e.path().display(), "removing a temp file left by an interrupted save");
                        let _ = fs::remove_file(e.path());
                    }
                }
            }
        }
    }

    /// Journal files in the state directory.
    fn journal_files(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        rd.flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("journal-") && n.ends_with(".log"))
            .collect()
    }

    /// Removes journals the manifest does not name (folded, or created by a save that did not
    /// complete).
    fn remove_stale_journals(&self, keep: Option<String>) {
        for name in self.journal_files() {
            if Some(&name) != keep.as_ref() {
                tracing::info!(journal = %name, "removing a journal no manifest names");
                let _ = fs::remove_file(self.root.join(name));
            }
        }
    }

    /// Removes objects the manifest does not name.
    fn collect_objects(&self, m: &StateManifest) -> u64 {
        let keep: BTreeSet<Digest> = m
            .services
            .values()
            .flat_map(|r| std::iter::once(r.digest).chain(r.chunks.iter().map(|c| c.digest)))
            .collect();
        let mut removed = 0;
        let base = self.root.join("objects").join("sha256");
        let Ok(dirs) = fs::read_dir(&base) else {
            return 0;
        };
        for d in dirs.flatten() {
            let Ok(files) = fs::read_dir(d.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                if let Ok(dg) = format!("sha256:{name}").parse::<Digest>()
                    && !keep.contains(&dg)
                    && fs::remove_file(f.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }
}

struct HashingReader<R: Read> {
    inner: R,
    hasher: Hasher,
    size: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// Outcome of the last save, for `/_cryopod/health`.
#[derive(Clone, Debug, Serialize)]
pub struct SaveReport {
    /// When it finished.
    pub time: String,
    /// Services whose sections were written.
    pub services: Vec<String>,
    /// Bytes written (objects + manifest).
    pub bytes_written: u64,
    /// How long it took.
    pub duration_ms: u128,
}

/// Outcome of the last blob collection, for `/_cryopod/health`.
#[derive(Clone, Debug, Serialize)]
pub struct BlobCollectionReport {
    /// When it finished.
    pub time: String,
    /// What it removed and kept.
    #[serde(flatten)]
    pub collected: Collected,
}

/// Blobs are collected after a save at most this often (a listing of the blob directory is
/// not free); an explicit save through the API always collects.
const BLOB_GC_INTERVAL: Duration = Duration::from_secs(60);

/// A blob stored less than this long ago is never collected (see
/// [`BlobStore::collect_garbage`]): one hour by default, `CRYOPOD_BLOB_GC_GRACE_SECONDS` to
/// change it (tests set 0 to see collection happen at once).
fn blob_gc_grace() -> Duration {
    std::env::var("CRYOPOD_BLOB_GC_GRACE_SECONDS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(3600), Duration::from_secs)
}

/// The last rollback of a failed `ON_REQUEST` commit, for `/_cryopod/health`.
#[derive(Clone, Debug, Serialize)]
pub struct RollbackReport {
    /// When it happened.
    pub time: String,
    /// Services put back to their last saved state.
    pub services: Vec<String>,
    /// How many changes (generations) were undone.
    pub changes: u64,
    /// Why the commit failed.
    pub error: String,
}

/// Changed scopes by service, as the change tracker hands them out.
type Dirty = BTreeMap<&'static str, BTreeSet<crate::scope::Scope>>;

/// What one save or commit captured ([`Persistence::capture_changes`]).
struct Captured {
    snapshot: Snapshot,
    /// Every change up to this generation, of the captured services, is in `snapshot`.
    generation: u64,
    /// The changes the capture covers: pending again if writing it fails.
    dirty: Dirty,
    names: Vec<String>,
    /// No changed service was left out, so writing `snapshot` makes every change up to
    /// `generation` durable.
    complete: bool,
}

/// The change generations whose changes failed `ON_REQUEST` commits undid, as ranges
/// `(after, upto]` with the cause. A waiting request looks its own generation up here before
/// it looks at the durable generation: a later successful commit moves that past an undone
/// change, which must still be answered as failed.
#[derive(Debug, Default)]
struct RolledBack {
    ranges: std::collections::VecDeque<(u64, u64, Arc<str>)>,
}

impl RolledBack {
    /// Ranges kept. Consecutive rollbacks while the disk stays full share one durable
    /// generation and merge into one range, so this bounds the number of outages remembered;
    /// a request is answered at the first wake-up after its rollback, long before 1,024 more
    /// outages.
    const KEEP: usize = 1024;

    fn record(&mut self, after: u64, upto: u64, cause: &str) {
        if upto <= after {
            return;
        }
        if let Some(last) = self.ranges.back_mut()
            && after <= last.1
        {
            last.0 = last.0.min(after);
            last.1 = last.1.max(upto);
            last.2 = cause.into();
            return;
        }
        self.ranges.push_back((after, upto, cause.into()));
        if self.ranges.len() > Self::KEEP {
            self.ranges.pop_front();
        }
    }

    /// Why the change of `generation` was undone, if it was.
    fn cause_of(&self, generation: u64) -> Option<Arc<str>> {
        self.ranges
            .iter()
            .rev()
            .find(|(after, upto, _)| *after < generation && generation <= *upto)
            .map(|(_, _, cause)| cause.clone())
    }
}

#[derive(Default)]
struct Status {
    last_save: Option<SaveReport>,
    last_blob_collection: Option<BlobCollectionReport>,
    last_error: Option<String>,
    last_rollback: Option<RollbackReport>,
    pending: BTreeSet<String>,
    loaded: bool,
}

/// The persistence engine: saves and loads the runtime's state in the data dir.
pub struct Persistence {
    runtime: Runtime,
    config: PersistenceConfig,
    dir: StateDir,
    /// Serializes saves and loads.
    io_lock: tokio::sync::Mutex<Option<StateManifest>>,
    status: Mutex<Status>,
    durable_generation: AtomicU64,
    durable: tokio::sync::Notify,
    save_requested: tokio::sync::Notify,
    total_bytes_written: AtomicU64,
    /// The blobs each saved (or loaded) section refers to: with the running state's, what
    /// blob collection keeps.
    saved_blobs: Mutex<BTreeMap<String, BTreeSet<Digest>>>,
    last_blob_collection: Mutex<Option<Instant>>,
    /// The open `ON_REQUEST` journal the manifest names; only touched under `io_lock`.
    journal: Arc<Mutex<Option<Journal>>>,
    /// `ON_REQUEST` only: per service, the state the data dir holds (what the last
    /// successful commit or save wrote, or what was loaded or running at start), as O(1)
    /// clones of persistent maps: what a failed commit rolls the service back to.
    durable_states: Mutex<BTreeMap<String, Box<dyn ServiceState>>>,
    /// Changes failed `ON_REQUEST` commits undid.
    rolled_back: Mutex<RolledBack>,
}

impl Persistence {
    /// The blob store in the data dir; the runtime must be built with it so blobs are
    /// written once, by the request that creates them, and never copied by a save.
    pub fn open_blob_store(config: &PersistenceConfig) -> Result<BlobStore> {
        let dir = StateDir::new(&config.data_dir);
        create_private_dir_all(&dir.root.join("objects"))?;
        Ok(BlobStore::open(dir.root.join("blobs"))?)
    }

    /// Opens the data dir, loads per the load strategy, and starts the save scheduler.
    pub async fn start(runtime: Runtime, config: PersistenceConfig) -> Result<Arc<Persistence>> {
        let dir = StateDir::new(&config.data_dir);
        create_private_dir_all(&dir.root.join("objects"))?;
        dir.remove_stale_temp_files();
        let p = Arc::new(Persistence {
            runtime,
            dir,
            io_lock: tokio::sync::Mutex::new(None),
            status: Mutex::new(Status::default()),
            durable_generation: AtomicU64::new(0),
            durable: tokio::sync::Notify::new(),
            save_requested: tokio::sync::Notify::new(),
            total_bytes_written: AtomicU64::new(0),
            saved_blobs: Mutex::default(),
            last_blob_collection: Mutex::default(),
            journal: Arc::default(),
            durable_states: Mutex::default(),
            rolled_back: Mutex::default(),
            config,
        });
        let manifest = match p.dir.read_manifest() {
            Ok(m) => m,
            Err(e) => {
                p.corrupt(e)?;
                None
            }
        };
        {
            let mut st = p.status.lock();
            st.pending = manifest
                .as_ref()
                .map(|m| {
                    m.services
                        .keys()
                        .filter(|s| p.runtime.service(s).is_some())
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            st.loaded = manifest.is_none();
        }
        let named_journal = manifest.as_ref().and_then(|m| m.journal.clone());
        *p.io_lock.lock().await = manifest;
        if let Some(name) = &named_journal {
            let path = p.dir.root.join(name);
            match tokio::task::spawn_blocking(move || Journal::open(&path)).await {
                Ok(Ok(j)) => *p.journal.lock() = Some(j),
                Ok(Err(e)) => {
                    p.corrupt(PersistenceError::Corrupt {
                        dir: p.dir.root.clone(),
                        object: p.dir.root.join(name),
                        reason: e.to_string(),
                    })?;
                    *p.io_lock.lock().await = None;
                }
                Err(e) => return Err(Error::Io(io::Error::other(e.to_string()))),
            }
        }
        // Loading never reads a journal: commits left by an `ON_REQUEST` run are folded into
        // the object store first, and `ON_REQUEST` gets a journal to append to.
        let has_commits = p.journal.lock().as_ref().is_some_and(|j| !j.is_empty());
        let on_request = p.config.save == SaveStrategy::OnRequest;
        if has_commits || on_request != p.journal.lock().is_some() {
            p.save(Some(Vec::new()))
                .await
                .map_err(|e| Error::Io(io::Error::other(e.to_string())))?;
        }
        p.dir
            .remove_stale_journals(p.journal.lock().as_ref().map(|j| j.file_name()));
        if p.config.load == LoadStrategy::OnStartup
            && let Err(e) = p.load_services(None).await
        {
            p.corrupt(e)?;
            // Quarantined: the manifest and objects were moved away, so nothing is saved now.
            // Keeping the old manifest would skip writing a new one when the next save's
            // objects happen to equal the quarantined ones, and would keep naming them.
            *p.io_lock.lock().await = None;
        }
        // Blobs left by a crash between storing them and saving a state that refers to them.
        if p.config.load == LoadStrategy::OnStartup {
            let weak = Arc::downgrade(&p);
            tokio::spawn(async move {
                if let Some(p) = weak.upgrade() {
                    p.collect_blobs(true).await;
                }
            });
        }
        // Whatever was loaded is what is on disk: nothing to save yet, and under `ON_REQUEST`
        // the running state of every loaded service is what a failed commit rolls back to.
        {
            let exclusive = p.runtime.exclusive().await;
            p.runtime.changes().take();
            p.durable_generation
                .store(p.runtime.changes().generation(), Ordering::SeqCst);
            if on_request {
                let pending = p.status.lock().pending.clone();
                let names: Vec<&'static str> = p
                    .runtime
                    .service_names()
                    .into_iter()
                    .filter(|s| !pending.contains(*s))
                    .collect();
                let snapshot = p
                    .runtime
                    .capture_exclusive(&exclusive, &names, &ScopeFilter::all())
                    .await?;
                p.remember_durable(snapshot.services.iter());
            }
        }
        match p.config.save {
            SaveStrategy::Scheduled => {
                let weak = Arc::downgrade(&p);
                let interval = p.config.flush_interval;
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        let Some(p) = weak.upgrade() else { break };
                        if p.runtime.changes().is_dirty() {
                            let _ = p.save_dirty().await;
                        }
                    }
                });
            }
            SaveStrategy::OnRequest => {
                let weak = Arc::downgrade(&p);
                tokio::spawn(async move {
                    // Back off after failures so a lasting I/O error (a full disk) does not
                    // spin a core and flood the log; waiting requests get the error meanwhile.
                    let mut backoff = Duration::from_millis(50);
                    loop {
                        let Some(p) = weak.upgrade() else { break };
                        {
                            let notified = p.save_requested.notified();
                            if !p.runtime.changes().is_dirty() {
                                notified.await;
                            }
                        }
                        let failed = p.commit().await.is_err();
                        drop(p);
                        if failed {
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        } else {
                            backoff = Duration::from_millis(50);
                        }
                    }
                });
            }
            SaveStrategy::OnShutdown | SaveStrategy::Manual => {}
        }
        Ok(p)
    }

    /// `DATA_DIR/state`.
    pub fn state_dir(&self) -> &Path {
        &self.dir.root
    }

    fn corrupt(&self, e: PersistenceError) -> Result<()> {
        match (&e, self.config.on_corrupt) {
            (PersistenceError::Corrupt { .. }, OnCorrupt::Quarantine) => {
                let stamp = now_rfc3339().replace(':', "-");
                let q = self.config.data_dir.join("quarantine").join(&stamp);
                create_private_dir_all(&q)?;
                let mut names = vec!["manifest.json".to_string(), "objects".to_string()];
                names.extend(self.dir.journal_files());
                for name in names {
                    let from = self.dir.root.join(&name);
                    if from.exists() {
                        fs::rename(&from, q.join(&name))?;
                    }
                }
                *self.journal.lock() = None;
                create_private_dir_all(&self.dir.root.join("objects"))?;
                // The blobs stay in use by the running state's store, so they are linked,
                // not moved: the quarantined state stays complete after blob collection.
                self.runtime.blobs().preserve_into(&q.join("blobs"))?;
                let msg = format!(
                    "{e}; the saved state was moved to {} and the emulator starts empty",
                    q.display()
                );
                tracing::error!("{msg}");
                eprintln!("warning: {msg}");
                let mut st = self.status.lock();
                st.last_error = Some(msg);
                st.pending.clear();
                st.loaded = true;
                Ok(())
            }
            _ => Err(Error::Io(io::Error::other(e.to_string()))),
        }
    }

    /// Loads `services` (default: all pending) from the saved manifest.
    async fn load_services(
        &self,
        services: Option<Vec<String>>,
    ) -> std::result::Result<Vec<String>, PersistenceError> {
        let guard = self.io_lock.lock().await;
        let Some(manifest) = guard.clone() else {
            return Ok(Vec::new());
        };
        let wanted: Vec<String> = match services {
            Some(list) => list,
            None => manifest.services.keys().cloned().collect(),
        };
        let mut snapshot = Snapshot::default();
        for name in &wanted {
            let (Some(r), Some(provider)) =
                (manifest.services.get(name), self.runtime.service(name))
            else {
                continue;
            };
            let dir = self.dir.clone();
            let (n, r2, v) = (name.clone(), r.clone(), provider.state_version());
            let state = tokio::task::spawn_blocking(move || dir.read_object(&n, &r2, v))
                .await
                .map_err(|e| {
                    io_err("cannot load", &self.dir.root)(io::Error::other(e.to_string()))
                })??;
            let referenced = state.blobs();
            for d in &referenced {
                if !self.runtime.blobs().contains(d) {
                    return Err(PersistenceError::Corrupt {
                        dir: self.dir.root.clone(),
                        object: self.runtime.blobs().path(d),
                        reason: format!("{name} state refers to blob {d}, which is missing"),
                    });
                }
            }
            snapshot.services.insert(name.clone(), state);
            self.saved_blobs.lock().insert(name.clone(), referenced);
        }
        let loaded: Vec<String> = snapshot.services.keys().cloned().collect();
        // What was read is what the data dir holds: a failed commit rolls back to it.
        let durable: Vec<(String, Box<dyn ServiceState>)> = snapshot
            .services
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let before = self.runtime.changes().generation();
        self.runtime
            .apply(snapshot, MergeStrategy::AccountRegionMerge)
            .await
            .map_err(|e| {
                io_err("cannot apply the saved state from", &self.dir.root)(io::Error::other(
                    e.to_string(),
                ))
            })?;
        self.remember_durable(durable.iter().map(|(k, v)| (k, v)));
        // Loading is not a change to save.
        if self.runtime.changes().generation() != before {
            let mut dirty = self.runtime.changes().take();
            for s in &loaded {
                dirty.remove(s.as_str());
            }
            self.runtime.changes().restore(dirty);
        }
        let mut st = self.status.lock();
        for s in &loaded {
            st.pending.remove(s);
        }
        if st.pending.is_empty() {
            st.loaded = true;
        }
        tracing::info!(services = ?loaded, "loaded saved state");
        Ok(loaded)
    }

    /// Loads every service still pending (lazy loading) before a whole-state operation.
    pub async fn ensure_loaded(&self) -> std::result::Result<(), PersistenceError> {
        let pending: Vec<String> = self.status.lock().pending.iter().cloned().collect();
        if pending.is_empty() || self.config.load == LoadStrategy::Manual {
            return Ok(());
        }
        self.load_services(Some(pending)).await.map(|_| ())
    }

    /// Saves every changed service; the unit of work of all save strategies.
    pub async fn save_dirty(&self) -> std::result::Result<SaveReport, PersistenceError> {
        self.save(None).await
    }

    async fn save(
        &self,
        only: Option<Vec<String>>,
    ) -> std::result::Result<SaveReport, PersistenceError> {
        let mut guard = self.io_lock.lock().await;
        let result = self.save_locked(&mut guard, only).await;
        drop(guard);
        if result.is_ok() {
            self.collect_blobs(false).await;
        }
        result
    }

    /// Captures the services `pick` chooses from the changed ones, together with the
    /// generation the capture holds and the changes it covers, all under the capture barrier
    /// (no write in progress), so "everything up to `generation` is in this capture" is exact.
    /// Reading the generation outside the barrier let a change made between the read and the
    /// capture be saved but counted as newer, or counted as saved and not be: under
    /// `ON_REQUEST` that is the difference between answering a request 200 or 503.
    /// Services not loaded yet keep their saved section and their change marks.
    async fn capture_changes(
        &self,
        pick: impl FnOnce(&Dirty) -> Vec<String>,
    ) -> std::result::Result<Captured, PersistenceError> {
        let pending: BTreeSet<String> = self.status.lock().pending.clone();
        let exclusive = self.runtime.exclusive().await;
        let generation = self.runtime.changes().generation();
        let mut dirty = self.runtime.changes().take();
        let mut names = pick(&dirty);
        names.retain(|n| !pending.contains(n));
        // Changes of services this capture does not cover stay pending.
        let others: Dirty = dirty
            .iter()
            .filter(|(k, _)| !names.iter().any(|n| n == *k))
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        dirty.retain(|k, _| names.iter().any(|n| n == k));
        let complete = others.is_empty();
        self.runtime.changes().restore(others);
        let captured = match self.runtime.select(Some(&names)) {
            Ok(selected) => {
                self.runtime
                    .capture_exclusive(&exclusive, &selected, &ScopeFilter::all())
                    .await
            }
            Err(e) => Err(e),
        };
        drop(exclusive);
        match captured {
            Ok(snapshot) => Ok(Captured {
                snapshot,
                generation,
                dirty,
                names,
                complete,
            }),
            Err(e) => {
                self.runtime.changes().restore(dirty);
                Err(io_err("cannot capture state for", &self.dir.root)(
                    io::Error::other(e.to_string()),
                ))
            }
        }
    }

    /// `ON_REQUEST` only: remembers `states` as what the data dir now holds for their
    /// services, the state a failed commit rolls them back to. O(1) clones of persistent
    /// maps; other strategies never roll back and keep nothing.
    fn remember_durable<'a>(
        &self,
        states: impl IntoIterator<Item = (&'a String, &'a Box<dyn ServiceState>)>,
    ) {
        if self.config.save != SaveStrategy::OnRequest {
            return;
        }
        let mut durable = self.durable_states.lock();
        for (name, state) in states {
            durable.insert(name.clone(), state.clone());
        }
    }

    async fn save_locked(
        &self,
        guard: &mut tokio::sync::MutexGuard<'_, Option<StateManifest>>,
        only: Option<Vec<String>>,
    ) -> std::result::Result<SaveReport, PersistenceError> {
        let started = Instant::now();
        let mut manifest = guard.clone().unwrap_or_default();
        let on_request = self.config.save == SaveStrategy::OnRequest;
        let running = self.runtime.service_names();
        let known = manifest.services.clone();
        let Captured {
            snapshot,
            generation,
            dirty,
            names,
            complete,
        } = self
            .capture_changes(|dirty| {
                let mut names: Vec<String> = match &only {
                    Some(list) => list.clone(),
                    None => running
                        .into_iter()
                        .filter(|s| dirty.contains_key(s) || !known.contains_key(*s))
                        .map(str::to_string)
                        .collect(),
                };
                // `ON_REQUEST` requests wait for "everything up to generation N is durable":
                // a save that left a changed service out would advance N past its change.
                if on_request {
                    for s in dirty.keys() {
                        if !names.iter().any(|n| n == s) {
                            names.push((*s).to_string());
                        }
                    }
                }
                names
            })
            .await?;
        let result = async {
            let durable: Vec<(String, Box<dyn ServiceState>)> = if on_request {
                snapshot
                    .services
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            } else {
                Vec::new()
            };
            let dir = self.dir.clone();
            // Encoding and writing at a lower CPU priority: a scheduled save must not take
            // the CPU from the requests it runs beside.
            let (refs, bytes, blob_refs) = crate::background::run("save", move || {
                let mut refs = BTreeMap::new();
                let mut blob_refs = BTreeMap::new();
                let mut bytes = 0;
                for (name, state) in &snapshot.services {
                    let (r, written) = dir.write_object(state.as_ref())?;
                    bytes += written;
                    refs.insert(name.clone(), r);
                    blob_refs.insert(name.clone(), state.blobs());
                }
                Ok::<_, PersistenceError>((refs, bytes, blob_refs))
            })
            .await
            .map_err(|e| {
                io_err("cannot save to", &self.dir.root)(io::Error::other(e.to_string()))
            })??;
            // Blobs the new state refers to are durable before a manifest refers to them.
            let blobs = self.runtime.blobs().clone();
            tokio::task::spawn_blocking(move || blobs.sync_pending())
                .await
                .map_err(|e| {
                    io_err("cannot sync blobs in", &self.dir.root)(io::Error::other(e.to_string()))
                })?
                .map_err(io_err("cannot sync blobs in", &self.dir.root))?;
            // Fold the journal: its newest chunk lists (for services this save did not
            // rewrite) join the manifest, their chunks become objects, and `ON_REQUEST` gets a
            // fresh journal, all named by the one manifest written below.
            let journal = self.journal.clone();
            let store = self.dir.chunk_store();
            let root = self.dir.root.clone();
            let rewritten: BTreeSet<String> = refs.keys().cloned().collect();
            let (folded, fold_bytes, fresh) = tokio::task::spawn_blocking(move || {
                let j = journal.lock();
                let mut folded = BTreeMap::new();
                let mut bytes = 0;
                if let Some(j) = j.as_ref().filter(|j| !j.is_empty()) {
                    folded = j
                        .refs()
                        .iter()
                        .filter(|(k, _)| !rewritten.contains(*k))
                        .map(|(k, r)| (k.clone(), r.clone()))
                        .collect::<BTreeMap<_, _>>();
                    let needed: Vec<Digest> = folded
                        .values()
                        .flat_map(|r| r.chunks.iter().map(|c| c.digest))
                        .filter(|d| !store.contains(d))
                        .collect();
                    bytes = store.store_compressed(
                        needed.into_iter().map(|d| j.read_chunk(&d).map(|b| (d, b))),
                    )?;
                }
                let fresh = match j.as_ref() {
                    Some(j) if on_request && j.is_empty() => None,
                    _ if on_request => Some(Journal::create(&root)?),
                    _ => None,
                };
                Ok::<_, io::Error>((folded, bytes, fresh))
            })
            .await
            .map_err(|e| io_err("cannot save to", &self.dir.root)(io::Error::other(e.to_string())))?
            .map_err(io_err("cannot fold the journal into", &self.dir.root))?;
            let journal_name = match &fresh {
                Some(j) => Some(j.file_name()),
                None if on_request => self.journal.lock().as_ref().map(Journal::file_name),
                None => None,
            };
            let changed = refs
                .iter()
                .chain(folded.iter())
                .any(|(k, r)| manifest.services.get(k) != Some(r))
                || manifest.journal != journal_name
                || guard.is_none();
            manifest.services.extend(folded);
            manifest.services.extend(refs);
            manifest.layout = LAYOUT;
            manifest.journal = journal_name;
            let mut bytes = bytes + fold_bytes;
            if changed {
                manifest.saved_at = now_rfc3339();
                let dir = self.dir.clone();
                let m = manifest.clone();
                let written = tokio::task::spawn_blocking(move || dir.write_manifest(&m))
                    .await
                    .map_err(|e| {
                        io_err("cannot save to", &self.dir.root)(io::Error::other(e.to_string()))
                    })
                    .and_then(|r| r);
                match written {
                    Ok(n) => bytes += n,
                    Err(e) => {
                        if let Some(j) = fresh {
                            let _ = fs::remove_file(j.path());
                        }
                        return Err(e);
                    }
                }
            }
            // The manifest now names the fresh journal (or none): the old one is folded.
            let old = {
                let mut j = self.journal.lock();
                match fresh {
                    Some(f) => j.replace(f),
                    None if on_request => None,
                    None => j.take(),
                }
            };
            if let Some(old) = old {
                let _ = fs::remove_file(old.path());
            }
            self.saved_blobs.lock().extend(blob_refs);
            self.remember_durable(durable.iter().map(|(k, v)| (k, v)));
            Ok::<u64, PersistenceError>(bytes)
        }
        .await;
        match result {
            Ok(bytes) => {
                **guard = Some(manifest.clone());
                // Under the lock: a journal commit must not name an object being collected.
                let dir = self.dir.clone();
                let removed = tokio::task::spawn_blocking(move || dir.collect_objects(&manifest))
                    .await
                    .unwrap_or(0);
                tracing::debug!(removed, "unreferenced objects removed");
                Ok(self.succeeded(names, bytes, started, generation, complete))
            }
            Err(e) => Err(self.failed(dirty, e, "save")),
        }
    }

    /// Records a save or commit that wrote everything up to `generation` (if `complete`: no
    /// changed service was left out), and wakes the requests waiting for it.
    fn succeeded(
        &self,
        services: Vec<String>,
        bytes: u64,
        started: Instant,
        generation: u64,
        complete: bool,
    ) -> SaveReport {
        let report = SaveReport {
            time: now_rfc3339(),
            services,
            bytes_written: bytes,
            duration_ms: started.elapsed().as_millis(),
        };
        self.total_bytes_written.fetch_add(bytes, Ordering::SeqCst);
        tracing::debug!(?report, "state saved");
        {
            let mut st = self.status.lock();
            st.last_save = Some(report.clone());
            st.last_error = None;
        }
        if complete {
            self.advance(generation);
        }
        report
    }

    /// Everything up to `generation` is durable (or was rolled back): wakes the requests
    /// waiting for it.
    fn advance(&self, generation: u64) {
        self.durable_generation
            .fetch_max(generation, Ordering::SeqCst);
        self.durable.notify_waiters();
    }

    /// Records a failed save or commit. Its changes (`dirty`) stay pending for the next one;
    /// the error is what health, the log and (after an `ON_REQUEST` rollback) the requests
    /// whose changes were undone report. Waiting requests are not woken: a failed
    /// `ON_REQUEST` commit wakes them when it has rolled back, and after any other failed
    /// save they keep waiting for the next commit.
    fn failed(&self, dirty: Dirty, e: PersistenceError, what: &str) -> PersistenceError {
        self.runtime.changes().restore(dirty);
        tracing::error!(error = %e, "{what} failed; the previous saved state is intact");
        self.status.lock().last_error = Some(e.to_string());
        e
    }

    /// An `ON_REQUEST` group commit: the changed services' new chunks and chunk lists appended
    /// to the journal with one `fdatasync`, instead of a full save's files, renames and
    /// directory syncs. Folds the journal into the object store once it is large.
    ///
    /// If the commit fails, the changes it could not make durable are rolled back before the
    /// data-dir lock is released ([`Persistence::roll_back`]): a request answered "could not
    /// be made durable" must not find its change applied, nor saved by a later save.
    pub async fn commit(&self) -> std::result::Result<SaveReport, PersistenceError> {
        let mut guard = self.io_lock.lock().await;
        let result = if self.journal.lock().is_none() {
            self.save_locked(&mut guard, None).await
        } else {
            self.append_commit().await
        };
        if let Err(e) = &result
            && self.config.save == SaveStrategy::OnRequest
        {
            self.roll_back(e).await;
        }
        drop(guard);
        let report = result?;
        let journal_len = self.journal.lock().as_ref().map_or(0, Journal::len);
        if journal_len > journal::COMPACT_AT
            && let Err(e) = self.save(Some(Vec::new())).await
        {
            tracing::warn!(error = %e, "folding the journal failed; it keeps growing until a fold succeeds");
        }
        self.collect_blobs(false).await;
        Ok(report)
    }

    /// The journal append of [`Persistence::commit`]; the caller holds `io_lock`.
    async fn append_commit(&self) -> std::result::Result<SaveReport, PersistenceError> {
        let started = Instant::now();
        let Captured {
            snapshot,
            generation,
            dirty,
            names,
            complete,
        } = self
            .capture_changes(|dirty| dirty.keys().map(|s| s.to_string()).collect())
            .await?;
        if names.is_empty() {
            // Nothing changed since the last commit: not a save to report, but every change
            // up to `generation` is durable (or was rolled back).
            if complete {
                self.advance(generation);
            }
            return Ok(SaveReport {
                time: now_rfc3339(),
                services: Vec::new(),
                bytes_written: 0,
                duration_ms: 0,
            });
        }
        let durable: Vec<(String, Box<dyn ServiceState>)> = snapshot
            .services
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let journal = self.journal.clone();
        let store = self.dir.chunk_store();
        let blobs = self.runtime.blobs().clone();
        let root = self.dir.root.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut j = journal.lock();
            let Some(j) = j.as_mut() else {
                return Err(io::Error::other("the journal is closed"));
            };
            let t0 = Instant::now();
            let mut refs = BTreeMap::new();
            let mut chunks = Vec::new();
            let mut blob_refs = BTreeMap::new();
            for (name, state) in &snapshot.services {
                let known = |d: &Digest| j.has_chunk(d);
                let (list, size, new) =
                    store.encode_inline(|w| encode_section(state.as_ref(), w), &known)?;
                refs.insert(
                    name.clone(),
                    ObjectRef {
                        state_version: state.version(),
                        digest: chunks::section_digest(&list),
                        size,
                        chunks: list,
                    },
                );
                chunks.extend(new);
                blob_refs.insert(name.clone(), state.blobs());
            }
            drop(snapshot);
            let t1 = Instant::now();
            // Blobs the commit refers to are durable before the commit is.
            blobs.sync_pending()?;
            let t2 = Instant::now();
            let bytes = j.append(refs, chunks)?;
            tracing::debug!(
                encode_us = (t1 - t0).as_micros() as u64,
                blob_sync_us = (t2 - t1).as_micros() as u64,
                append_us = t2.elapsed().as_micros() as u64,
                bytes,
                "journal commit"
            );
            Ok((bytes, blob_refs))
        })
        .await
        .map_err(|e| io_err("cannot commit to", &root)(io::Error::other(e.to_string())))
        .and_then(|r| r.map_err(io_err("cannot commit to the journal in", &self.dir.root)));
        match result {
            Ok((bytes, blob_refs)) => {
                self.saved_blobs.lock().extend(blob_refs);
                self.remember_durable(durable.iter().map(|(k, v)| (k, v)));
                Ok(self.succeeded(names, bytes, started, generation, complete))
            }
            Err(e) => Err(self.failed(dirty, e, "journal commit")),
        }
    }

    /// Undoes every change that is not durable after a failed `ON_REQUEST` commit, then wakes
    /// the waiting requests, which answer 503 naming `cause` when their change is among those
    /// undone (their generation lies in the range recorded here).
    ///
    /// Under the capture barrier held exclusively (no write half done), each service with
    /// pending changes gets back the state its last successful commit or save wrote (or that
    /// was loaded) through its provider's `restore`, which also rebuilds what is derived at
    /// run time (SQS timers and long polls, as after a restart: an SQS queue's clock resumes
    /// from that state's capture). Nothing is left marked changed: the state equals the saved
    /// one. Every change in `(durable generation, current generation]` is undone, the failed
    /// commit's and any made since its capture alike, so "in the range" means exactly "undone";
    /// a change made after the rollback waits for the next commit as usual. Changes no request
    /// waited for (timer-driven ones, an internal-API import since the last commit) are undone
    /// too: they were not durable either. Blobs stored by undone requests are no longer
    /// referenced and blob collection removes them after the grace period.
    ///
    /// Runs with `io_lock` held, so no other save can write the changes between the failure
    /// and their undoing.
    async fn roll_back(&self, cause: &PersistenceError) {
        let pending: BTreeSet<String> = self.status.lock().pending.clone();
        let exclusive = self.runtime.exclusive().await;
        let upto = self.runtime.changes().generation();
        let after = self.durable_generation.load(Ordering::SeqCst);
        let dirty = self.runtime.changes().take();
        // (service, its pending scopes, the state to put back)
        type Target = (
            &'static str,
            BTreeSet<crate::scope::Scope>,
            Option<Box<dyn ServiceState>>,
        );
        let targets: Vec<Target> = {
            let durable = self.durable_states.lock();
            dirty
                .into_iter()
                .map(|(service, scopes)| {
                    let target = (!pending.contains(service))
                        .then(|| durable.get(service).cloned())
                        .flatten();
                    (service, scopes, target)
                })
                .collect()
        };
        let mut kept = Dirty::new();
        let mut undone = Vec::new();
        for (service, scopes, target) in targets {
            let Some(state) = target else {
                tracing::error!(
                    service,
                    "no saved state to roll back to; the uncommitted changes stay and are saved by the next commit"
                );
                kept.insert(service, scopes);
                continue;
            };
            match self.runtime.reinstall(&exclusive, service, state).await {
                Ok(()) => undone.push(service.to_string()),
                Err(e) => {
                    tracing::error!(service, error = %e, "cannot roll the uncommitted changes back; they stay and are saved by the next commit");
                    kept.insert(service, scopes);
                }
            }
        }
        self.runtime.changes().restore(kept);
        let cause = cause.to_string();
        self.rolled_back.lock().record(after, upto, &cause);
        drop(exclusive);
        tracing::warn!(
            services = ?undone,
            changes = upto.saturating_sub(after),
            "rolled back the changes the failed commit could not make durable; their requests are answered 503"
        );
        self.status.lock().last_rollback = Some(RollbackReport {
            time: now_rfc3339(),
            services: undone,
            changes: upto.saturating_sub(after),
            error: cause,
        });
        self.durable.notify_waiters();
    }

    /// Removes blobs that neither the saved state nor the running state refers to (deleted
    /// objects, replaced code packages, blobs a crash left unreferenced). Runs after a save at
    /// most every [`BLOB_GC_INTERVAL`] (`force` ignores the interval), and only when every
    /// saved section's references are known: a service that is saved but not loaded (lazy
    /// loading, or not enabled in this run) still owns its blobs.
    async fn collect_blobs(&self, force: bool) {
        let blobs = self.runtime.blobs().clone();
        if blobs.root() != self.dir.root.join("blobs") {
            return;
        }
        {
            let mut last = self.last_blob_collection.lock();
            if !force && last.is_some_and(|t| t.elapsed() < BLOB_GC_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let saved_services: Vec<String> = match self.io_lock.lock().await.as_ref() {
            Some(m) => m.services.keys().cloned().collect(),
            None => Vec::new(),
        };
        let saved = self.saved_blobs.lock().clone();
        if let Some(unknown) = saved_services.iter().find(|s| !saved.contains_key(*s)) {
            tracing::debug!(service = %unknown, "blob collection skipped: a saved service is not loaded");
            return;
        }
        let live = match self.runtime.capture(None, &ScopeFilter::all()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "blob collection skipped: cannot capture the state");
                return;
            }
        };
        let grace = blob_gc_grace();
        let checkpoints = self.runtime.checkpoints().clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut keep: BTreeSet<Digest> = saved.into_values().flatten().collect();
            for state in live.services.values() {
                keep.extend(state.blobs());
            }
            // This capture's own registration would make the collection skip itself.
            drop(live);
            // Checkpoints' blobs are referenced too; the registry stays locked through the
            // collection, so a checkpoint being taken is either seen here or still holds its
            // capture's readers (and the collection is skipped).
            checkpoints.with_pinned(|pinned| {
                keep.extend(pinned.iter().cloned());
                blobs.collect_garbage(&keep, grace)
            })
        })
        .await;
        match done {
            Ok(Ok(collected)) => {
                if collected.skipped {
                    // An export is reading an earlier capture: try again after the next save.
                    *self.last_blob_collection.lock() = None;
                    return;
                }
                if collected.removed > 0 {
                    tracing::info!(?collected, "collected unreferenced blobs");
                }
                self.status.lock().last_blob_collection = Some(BlobCollectionReport {
                    time: now_rfc3339(),
                    collected,
                });
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "blob collection failed"),
            Err(e) => tracing::warn!(error = %e, "blob collection failed"),
        }
    }

    /// The final save at shutdown, for the strategies that promise one.
    pub async fn shutdown(&self) -> Result<()> {
        match self.config.save {
            SaveStrategy::Manual => Ok(()),
            _ => {
                if self.runtime.changes().is_dirty() {
                    self.save_dirty()
                        .await
                        .map_err(|e| Error::Io(io::Error::other(e.to_string())))?;
                }
                Ok(())
            }
        }
    }

    /// Total bytes written by saves since start (for tests and benchmarks).
    pub fn bytes_written(&self) -> u64 {
        self.total_bytes_written.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl RequestHooks for Persistence {
    async fn before_request(&self, service: &'static str) -> std::result::Result<(), AwsError> {
        if self.config.load != LoadStrategy::OnRequest {
            return Ok(());
        }
        if !self.status.lock().pending.contains(service) {
            return Ok(());
        }
        self.load_services(Some(vec![service.to_string()]))
            .await
            .map(|_| ())
            .map_err(|e| {
                AwsError::new(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    e.to_string(),
                )
            })
    }

    async fn after_change(
        &self,
        _service: &'static str,
        generation: u64,
    ) -> std::result::Result<(), AwsError> {
        if self.config.save != SaveStrategy::OnRequest {
            return Ok(());
        }
        loop {
            // Created before the checks: a commit or rollback finishing between the checks
            // and the wait still wakes it.
            let notified = self.durable.notified();
            // First: a later successful commit moves the durable generation past an undone
            // change.
            if let Some(cause) = self.rolled_back.lock().cause_of(generation) {
                return Err(AwsError::new(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    format!(
                        "the change could not be made durable and was undone (nothing changed; retry when the data directory is writable again): {cause}"
                    ),
                ));
            }
            if self.durable_generation.load(Ordering::SeqCst) >= generation {
                return Ok(());
            }
            self.save_requested.notify_one();
            notified.await;
        }
    }

    fn health(&self) -> Value {
        let st = self.status.lock();
        json!({
            "enabled": true,
            "data_dir": self.config.data_dir,
            "save_strategy": self.config.save.to_string(),
            "load_strategy": self.config.load.to_string(),
            "flush_interval_seconds": self.config.flush_interval.as_secs_f64(),
            "last_save": st.last_save,
            "last_blob_collection": st.last_blob_collection,
            "journal": self.journal.lock().as_ref().map(|j| json!({
                "file": j.file_name(),
                "bytes": j.len(),
            })),
            "last_error": st.last_error,
            "last_rollback": st.last_rollback,
            "pending_services": st.pending,
            "loaded": st.loaded,
            "bytes_written": self.bytes_written(),
        })
    }

    async fn save(&self, services: Option<Vec<String>>) -> std::result::Result<Value, ApiError> {
        // Without a list, save what changed (and what was never saved), like every other save:
        // re-encoding an unchanged service rewrites it whenever its encoding is not
        // deterministic (SQS stamps each capture with the time).
        let report = Persistence::save(self, services).await.map_err(|e| {
            ApiError::new(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "SaveFailed",
                e.to_string(),
            )
        })?;
        self.collect_blobs(true).await;
        Ok(serde_json::to_value(report).unwrap_or(Value::Null))
    }

    async fn load(&self, services: Option<Vec<String>>) -> std::result::Result<Value, ApiError> {
        let loaded = self.load_services(services).await.map_err(|e| {
            ApiError::new(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "LoadFailed",
                e.to_string(),
            )
        })?;
        Ok(json!({ "loaded": loaded }))
    }

    async fn ensure_loaded(&self) -> std::result::Result<(), ApiError> {
        Persistence::ensure_loaded(self).await.map_err(|e| {
            ApiError::new(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "LoadFailed",
                e.to_string(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer on a full disk.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(28))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_encoder_failing_to_write_reports_the_disk_error_not_its_own() {
        let err = rmp_serde::encode::write(&mut Full, &vec![7u64; 100]).unwrap_err();
        assert!(err.to_string().contains("invalid value write"), "{err}");
        let root = root_io_error(&err);
        assert_eq!(root.raw_os_error(), Some(28));
        let shown = io_err(
            "cannot write the state into",
            Path::new("/data/state/objects"),
        )(root)
        .to_string();
        assert!(
            shown.contains("No space left on device (os error 28)"),
            "{shown}"
        );
        // An error that is not I/O keeps its own message.
        let plain = rmp_serde::encode::Error::Syntax("bad".into());
        assert_eq!(root_io_error(&plain).to_string(), "bad");
    }

    #[test]
    fn rolled_back_ranges_answer_exactly_their_generations_and_merge_while_the_disk_stays_full() {
        let mut r = RolledBack::default();
        r.record(10, 14, "first");
        assert_eq!(r.cause_of(10), None, "durable before the failure");
        assert_eq!(r.cause_of(11).as_deref(), Some("first"));
        assert_eq!(r.cause_of(14).as_deref(), Some("first"));
        assert_eq!(r.cause_of(15), None, "made after the rollback");
        // No commit succeeded in between: the next range starts at the same durable point.
        r.record(10, 20, "second");
        assert_eq!(r.ranges.len(), 1);
        assert_eq!(r.cause_of(12).as_deref(), Some("second"));
        assert_eq!(r.cause_of(20).as_deref(), Some("second"));
        // A commit succeeded up to 30, then one failed.
        r.record(30, 31, "third");
        assert_eq!(r.cause_of(25), None);
        assert_eq!(r.cause_of(31).as_deref(), Some("third"));
        r.record(31, 31, "empty");
        assert_eq!(r.ranges.len(), 2);
        for k in 0..(RolledBack::KEEP as u64 + 5) {
            r.record(100 + 2 * k, 101 + 2 * k, "many");
        }
        assert_eq!(r.ranges.len(), RolledBack::KEEP);
    }
}
