//! Pods: named, versioned, shareable snapshots of the running state.
//!
//! A pod store is an OCI image layout made of the same content-addressed units as
//! persistence and bundles (see `README.md` beside this file): a pod version is an OCI image
//! manifest whose config is the pod's [`layout::PodMetadata`] and whose layers are one state
//! section per service and the blobs. The local store is `DATA_DIR/pods`; remotes hold the
//! same objects in a directory, in S3-compatible object storage or in an OCI registry.
//!
//! Saving captures the runtime ([`Runtime::capture`]) and uploads only the layers the store
//! lacks; loading verifies every digest, writes blobs into the runtime's blob store (which
//! changes no running state) and then applies all or nothing ([`Runtime::apply`]).

pub mod autoload;
pub mod crypto;
/// Dry-run diffs; they live in the core ([`crate::diff`]) so tests without the server use them.
pub use crate::diff;
pub mod launch;
pub mod layout;
pub mod oci;
mod private_fs;
pub mod remote;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use cryopod_bundle::{BlobSummary, Hasher, ScopeEntry};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::runtime::{ApplyReport, Runtime};
use crate::scope::ScopeFilter;
use crate::snapshot::{SkipReason, SkippedService, Snapshot, now_rfc3339, producer};
use crate::state::{Digest, MergeStrategy, ServiceState};

use self::crypto::{PodKey, UnwrapError};
use self::diff::Diff;
use self::layout::*;
use self::remote::{Remote, RemoteUrl, RemotesFile, TagEntry};

/// Largest manifest or config accepted from a store.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest state section layer accepted (stored bytes).
pub const MAX_SECTION_BYTES: u64 = 1024 * 1024 * 1024;
const ZSTD_LEVEL: i32 = 3;
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Errors of pod operations; each message names the pod, store or layer involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PodError {
    /// A pod name outside `^[A-Za-z0-9_-]+$` (or unusable on the target store).
    #[error("invalid pod name `{name}`: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A `NAME[:VERSION]` reference that does not parse.
    #[error("invalid pod reference `{0}`: expected NAME or NAME:VERSION (VERSION is 1, 2, 3, …)")]
    InvalidRef(String),
    /// No version of the pod exists in the store.
    #[error("pod `{name}` not found in {location}")]
    NotFound {
        /// Pod name.
        name: String,
        /// The store.
        location: String,
    },
    /// The pod exists but not in this version.
    #[error("pod `{name}` has no version {version} in {location} (versions: {available})")]
    VersionNotFound {
        /// Pod name.
        name: String,
        /// Version asked for.
        version: u32,
        /// The store.
        location: String,
        /// Versions that exist.
        available: String,
    },
    /// The pod is encrypted and no secret was given.
    #[error("pod {name}:{version} is encrypted: pass --secret or set POD_SECRET")]
    SecretRequired {
        /// Pod name.
        name: String,
        /// Version.
        version: u32,
    },
    /// The secret does not decrypt the pod.
    #[error(
        "wrong secret for pod {name}:{version}: it does not decrypt the pod's key; nothing was loaded"
    )]
    WrongSecret {
        /// Pod name.
        name: String,
        /// Version.
        version: u32,
    },
    /// The store could not be reached or refused a request.
    #[error("remote {location} failed: {message}")]
    Remote {
        /// The store.
        location: String,
        /// What happened.
        message: String,
    },
    /// Stored content is damaged or inconsistent.
    #[error("corrupt pod content: {what}: {message}")]
    Corrupt {
        /// Which object.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// A remote name that is not configured.
    #[error(
        "unknown remote `{name}`; configured remotes: {configured} (add one with `cryopod pod remote add NAME URL`, or pass a URL)"
    )]
    UnknownRemote {
        /// The name.
        name: String,
        /// Comma-separated configured names.
        configured: String,
    },
    /// A remote URL that cannot be used.
    #[error("invalid remote URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The launchpad refused or failed to fetch a URL.
    #[error("launch: {0}")]
    Launch(String),
    /// Capture, decode or apply failed.
    #[error(transparent)]
    Runtime(#[from] Error),
    /// Local I/O.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Checks a pod name against `^[A-Za-z0-9_-]+$`.
pub fn validate_name(name: &str) -> Result<(), PodError> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        Ok(())
    } else {
        Err(PodError::InvalidName {
            name: name.to_string(),
            reason: "pod names match ^[A-Za-z0-9_-]+$".into(),
        })
    }
}

/// `NAME` or `NAME:VERSION`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    /// Pod name.
    pub name: String,
    /// Version; `None` means the latest.
    pub version: Option<u32>,
}

impl FromStr for PodRef {
    type Err = PodError;

    fn from_str(s: &str) -> Result<Self, PodError> {
        let (name, version) = match s.split_once(':') {
            Some((n, v)) => {
                let v: u32 = v
                    .parse()
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| PodError::InvalidRef(s.to_string()))?;
                (n, Some(v))
            }
            None => (s, None),
        };
        validate_name(name)?;
        Ok(PodRef {
            name: name.to_string(),
            version,
        })
    }
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}:{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A progress report of a long transfer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Progress {
    /// `save` or `load`.
    pub phase: String,
    /// Plain bytes handled so far (uploaded, downloaded or found already present).
    pub done: u64,
    /// Plain bytes in total.
    pub total: u64,
}

/// Receives [`Progress`] reports.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// Options of [`Pods::save`].
#[derive(Clone, Default)]
pub struct SaveOptions {
    /// Only these services (default: all running).
    pub services: Option<Vec<String>>,
    /// The version's message.
    pub message: String,
    /// Encrypt layers with this passphrase.
    pub secret: Option<String>,
    /// Remote name or URL (default: the local store).
    pub remote: Option<String>,
    /// Progress reports.
    pub progress: Option<ProgressFn>,
}

/// Options of [`Pods::load`].
#[derive(Clone, Default)]
pub struct LoadOptions {
    /// Remote name or URL (default: the local store).
    pub remote: Option<String>,
    /// How the pod combines with the running state.
    pub merge: MergeStrategy,
    /// The passphrase of an encrypted pod.
    pub secret: Option<String>,
    /// Compute the diff and change nothing.
    pub dry_run: bool,
    /// Only these services of the pod.
    pub services: Option<Vec<String>>,
    /// Progress reports.
    pub progress: Option<ProgressFn>,
}

/// What a save did.
#[derive(Clone, Debug, Serialize)]
pub struct SaveReport {
    /// Pod name.
    pub name: String,
    /// The new version.
    pub version: u32,
    /// The store.
    pub location: String,
    /// Digest of the new manifest.
    pub manifest_digest: Digest,
    /// Layers in the version.
    pub layers: usize,
    /// Layers uploaded by this save.
    pub layers_uploaded: usize,
    /// Layers the store already held (reused).
    pub layers_reused: usize,
    /// Bytes sent to the store (layers, config and manifest).
    pub bytes_uploaded: u64,
    /// Stored bytes of every layer of the version.
    pub bytes_total: u64,
    /// Whether the layers are encrypted.
    pub encrypted: bool,
    /// The services saved.
    pub services: Vec<String>,
}

/// What a load did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// Pod name.
    pub name: String,
    /// Version loaded.
    pub version: u32,
    /// The store.
    pub location: String,
    /// Nothing was changed.
    pub dry_run: bool,
    /// The merge strategy.
    pub merge: MergeStrategy,
    /// What was applied (not on a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<ApplyReport>,
    /// What would change (dry run only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<Diff>,
    /// Sections not loaded, and why.
    pub skipped: Vec<SkippedService>,
    /// Layers downloaded.
    pub layers_downloaded: usize,
    /// Bytes downloaded.
    pub bytes_downloaded: u64,
    /// Blobs the blob store already had (not downloaded).
    pub blobs_present: usize,
}

/// One pod in a store listing.
#[derive(Clone, Debug, Serialize)]
pub struct PodSummary {
    /// Pod name.
    pub name: String,
    /// Number of versions.
    pub versions: usize,
    /// Newest version.
    pub latest: u32,
    /// Its message.
    pub message: String,
    /// Its creation time.
    pub created_at: String,
}

/// One layer as `inspect` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct LayerInfo {
    /// `section` or `blob`.
    pub kind: String,
    /// Service of a section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Media type.
    pub media_type: String,
    /// Stored digest.
    pub digest: Digest,
    /// Plain-content digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_digest: Option<Digest>,
    /// Stored bytes.
    pub size: u64,
    /// Plain bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_size: Option<u64>,
}

/// A pod version described without loading it.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// The store.
    pub location: String,
    /// Digest of the manifest.
    pub manifest_digest: Digest,
    /// The metadata (config).
    pub metadata: PodMetadata,
    /// Whether the layers are encrypted.
    pub encrypted: bool,
    /// The layers.
    pub layers: Vec<LayerInfo>,
    /// Stored bytes of every layer.
    pub stored_bytes: u64,
}

/// What a delete did.
#[derive(Clone, Debug, Serialize)]
pub struct DeleteReport {
    /// Pod name.
    pub name: String,
    /// Versions deleted.
    pub deleted: Vec<u32>,
    /// The store.
    pub location: String,
    /// Blobs no remaining version references, removed.
    pub blobs_removed: u64,
}

/// The pod stores of one emulator: the local store in `DATA_DIR/pods` and named remotes.
pub struct Pods {
    root: PathBuf,
    write_lock: tokio::sync::Mutex<()>,
    _temp: Option<tempfile::TempDir>,
}

impl fmt::Debug for Pods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pods").field("root", &self.root).finish()
    }
}

impl Pods {
    /// Pods kept in `root` (`DATA_DIR/pods`); nothing is created until the first save.
    pub fn open(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            write_lock: tokio::sync::Mutex::new(()),
            _temp: None,
        }
    }

    /// Pods in a temporary directory removed on drop (tests, embedded servers).
    pub fn temporary() -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("cryopod-pods-").tempdir()?;
        let mut p = Self::open(dir.path());
        p._temp = Some(dir);
        Ok(p)
    }

    /// The local store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn remotes_path(&self) -> PathBuf {
        self.root.join("remotes.json")
    }

    /// Named remotes (name → URL).
    pub fn remotes(&self) -> Result<BTreeMap<String, String>, PodError> {
        Ok(RemotesFile::read(&self.remotes_path())?.remotes)
    }

    /// Adds or replaces a named remote; the URL must parse and hold no credentials.
    pub async fn add_remote(&self, name: &str, url: &str) -> Result<(), PodError> {
        validate_name(name)?;
        url.parse::<RemoteUrl>()?;
        let _w = self.write_lock.lock().await;
        let mut f = RemotesFile::read(&self.remotes_path())?;
        f.remotes.insert(name.to_string(), url.to_string());
        f.write(&self.remotes_path())
    }

    /// Removes a named remote.
    pub async fn remove_remote(&self, name: &str) -> Result<(), PodError> {
        let _w = self.write_lock.lock().await;
        let mut f = RemotesFile::read(&self.remotes_path())?;
        if f.remotes.remove(name).is_none() {
            return Err(PodError::UnknownRemote {
                name: name.to_string(),
                configured: join_or_none(f.remotes.keys()),
            });
        }
        f.write(&self.remotes_path())
    }

    /// The store `remote` names: `None` for the local store, a configured name, or a URL.
    pub fn resolve(&self, remote: Option<&str>) -> Result<Arc<dyn Remote>, PodError> {
        let Some(remote) = remote.map(str::trim).filter(|r| !r.is_empty()) else {
            let location = format!("the local store ({})", self.root.display());
            // Inside the data dir, which is owner-only (directories 0700, files 0600).
            let fs = private_fs::PrivateFs::new(&self.root).map_err(|e| PodError::Remote {
                location: location.clone(),
                message: format!("cannot create {}: {e}", self.root.display()),
            })?;
            return Ok(Arc::new(remote::StoreRemote::new(
                Arc::new(fs),
                &location,
                true,
            )));
        };
        let url = if remote.contains("://") {
            remote.to_string()
        } else {
            let all = self.remotes()?;
            all.get(remote)
                .cloned()
                .ok_or_else(|| PodError::UnknownRemote {
                    name: remote.to_string(),
                    configured: join_or_none(all.keys()),
                })?
        };
        let parsed: RemoteUrl = url.parse()?;
        if matches!(parsed, RemoteUrl::Http(_)) {
            return Err(PodError::InvalidUrl {
                url,
                reason: "http(s) URLs are read-only; use them with `pod load --url`".into(),
            });
        }
        remote::open(&parsed, &url)
    }

    /// Every pod in a store, by name.
    pub async fn list(&self, remote: Option<&str>) -> Result<Vec<PodSummary>, PodError> {
        let store = self.resolve(remote)?;
        Ok(summarize(store.list().await?))
    }

    /// The versions of one pod, oldest first.
    pub async fn versions(
        &self,
        name: &str,
        remote: Option<&str>,
    ) -> Result<Vec<TagEntry>, PodError> {
        validate_name(name)?;
        let store = self.resolve(remote)?;
        versions_in(store.as_ref(), name).await
    }

    /// Metadata, layers and sizes of a pod version.
    pub async fn inspect(
        &self,
        pod: &PodRef,
        remote: Option<&str>,
    ) -> Result<Inspection, PodError> {
        let store = self.resolve(remote)?;
        inspect_in(store.as_ref(), pod).await
    }

    /// Deletes one version, or every version when `pod.version` is `None`, then removes
    /// the objects no remaining version references.
    pub async fn delete(
        &self,
        pod: &PodRef,
        remote: Option<&str>,
    ) -> Result<DeleteReport, PodError> {
        let store = self.resolve(remote)?;
        let _w = self.write_lock.lock().await;
        let versions = versions_in(store.as_ref(), &pod.name).await?;
        let doomed: Vec<u32> = match pod.version {
            None => versions.iter().map(|e| e.version).collect(),
            Some(v) if versions.iter().any(|e| e.version == v) => vec![v],
            Some(v) => {
                return Err(PodError::VersionNotFound {
                    name: pod.name.clone(),
                    version: v,
                    location: store.location().to_string(),
                    available: join_versions(&versions),
                });
            }
        };
        for v in &doomed {
            store.delete(&pod.name, *v).await?;
        }
        let blobs_removed = store.collect_garbage().await?;
        Ok(DeleteReport {
            name: pod.name.clone(),
            deleted: doomed,
            location: store.location().to_string(),
            blobs_removed,
        })
    }

    /// Saves the running state as the next version of `name`.
    pub async fn save(
        &self,
        runtime: &Runtime,
        name: &str,
        opts: SaveOptions,
    ) -> Result<SaveReport, PodError> {
        validate_name(name)?;
        let store = self.resolve(opts.remote.as_deref())?;
        let _w = self.write_lock.lock().await;
        save_to(store.as_ref(), runtime, name, &opts).await
    }

    /// Loads a pod version into the running state (or, with `dry_run`, reports the diff).
    pub async fn load(
        &self,
        runtime: &Runtime,
        pod: &PodRef,
        opts: LoadOptions,
    ) -> Result<LoadReport, PodError> {
        let store = self.resolve(opts.remote.as_deref())?;
        load_from(store.as_ref(), runtime, pod, &opts).await
    }
}

fn join_or_none<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

fn join_versions(v: &[TagEntry]) -> String {
    join_or_none(
        v.iter()
            .map(|e| e.version.to_string())
            .collect::<Vec<_>>()
            .iter(),
    )
}

fn summarize(entries: Vec<TagEntry>) -> Vec<PodSummary> {
    let mut by: BTreeMap<String, Vec<TagEntry>> = BTreeMap::new();
    for e in entries {
        by.entry(e.name.clone()).or_default().push(e);
    }
    by.into_iter()
        .filter_map(|(name, mut v)| {
            v.sort_by_key(|e| e.version);
            let latest = v.last()?.clone();
            Some(PodSummary {
                name,
                versions: v.len(),
                latest: latest.version,
                message: latest.message,
                created_at: latest.created_at,
            })
        })
        .collect()
}

/// The versions of `name` in `store`, oldest first; [`PodError::NotFound`] if none.
pub async fn versions_in(store: &dyn Remote, name: &str) -> Result<Vec<TagEntry>, PodError> {
    let mut v: Vec<TagEntry> = store
        .list()
        .await?
        .into_iter()
        .filter(|e| e.name == name)
        .collect();
    if v.is_empty() {
        return Err(PodError::NotFound {
            name: name.to_string(),
            location: store.location().to_string(),
        });
    }
    v.sort_by_key(|e| e.version);
    Ok(v)
}

/// A resolved pod version: its manifest and metadata.
pub struct Resolved {
    /// Version.
    pub version: u32,
    /// Manifest.
    pub manifest: ImageManifest,
    /// Manifest digest.
    pub digest: Digest,
    /// Config.
    pub metadata: PodMetadata,
}

/// Finds `pod` (its latest version when none is given) and reads its manifest and config.
pub async fn resolve_in(store: &dyn Remote, pod: &PodRef) -> Result<Resolved, PodError> {
    let version = match pod.version {
        Some(v) => v,
        None => versions_in(store, &pod.name)
            .await?
            .last()
            .map(|e| e.version)
            .unwrap_or(1),
    };
    let Some(bytes) = store.get_manifest(&pod.name, version).await? else {
        let versions = store.list().await?;
        let mine: Vec<TagEntry> = versions
            .into_iter()
            .filter(|e| e.name == pod.name)
            .collect();
        if mine.is_empty() {
            return Err(PodError::NotFound {
                name: pod.name.clone(),
                location: store.location().to_string(),
            });
        }
        return Err(PodError::VersionNotFound {
            name: pod.name.clone(),
            version,
            location: store.location().to_string(),
            available: join_versions(&mine),
        });
    };
    let what = format!("{}:{} manifest in {}", pod.name, version, store.location());
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(PodError::Corrupt {
            what,
            message: format!(
                "{} bytes is more than the {MAX_MANIFEST_BYTES}-byte limit",
                bytes.len()
            ),
        });
    }
    let manifest: ImageManifest =
        serde_json::from_slice(&bytes).map_err(|e| PodError::Corrupt {
            what: what.clone(),
            message: format!("not an OCI image manifest: {e}"),
        })?;
    if manifest.media_type != MANIFEST_MEDIA_TYPE
        || manifest.artifact_type.as_deref() != Some(ARTIFACT_TYPE)
        || manifest.config.media_type != CONFIG_MEDIA_TYPE
    {
        return Err(PodError::Corrupt {
            what,
            message: format!(
                "not a cryopod pod (artifactType {:?}, config {})",
                manifest.artifact_type, manifest.config.media_type
            ),
        });
    }
    let config = fetch_small(
        store,
        &manifest.config,
        &format!("{}:{} config", pod.name, version),
    )
    .await?;
    let metadata: PodMetadata = serde_json::from_slice(&config).map_err(|e| PodError::Corrupt {
        what: format!("{}:{} config", pod.name, version),
        message: e.to_string(),
    })?;
    Ok(Resolved {
        version,
        digest: Digest::of(&bytes),
        manifest,
        metadata,
    })
}

async fn inspect_in(store: &dyn Remote, pod: &PodRef) -> Result<Inspection, PodError> {
    let r = resolve_in(store, pod).await?;
    let layers: Vec<LayerInfo> = r
        .manifest
        .layers
        .iter()
        .map(|l| LayerInfo {
            kind: l.annotation(ANN_LAYER).unwrap_or("unknown").to_string(),
            service: l.annotation(ANN_SERVICE).map(str::to_string),
            media_type: l.media_type.clone(),
            digest: l.digest,
            content_digest: l.content_digest(),
            size: l.size,
            content_size: l.annotation(ANN_CONTENT_SIZE).and_then(|s| s.parse().ok()),
        })
        .collect();
    Ok(Inspection {
        location: store.location().to_string(),
        manifest_digest: r.digest,
        encrypted: r.metadata.encryption.is_some(),
        stored_bytes: layers.iter().map(|l| l.size).sum(),
        layers,
        metadata: r.metadata,
    })
}

/// Downloads a small object into memory and checks its digest and size.
async fn fetch_small(store: &dyn Remote, d: &Descriptor, what: &str) -> Result<Vec<u8>, PodError> {
    let limit = (MAX_MANIFEST_BYTES as u64).max(if d.annotation(ANN_LAYER) == Some("section") {
        MAX_SECTION_BYTES
    } else {
        0
    });
    if d.size > limit {
        return Err(PodError::Corrupt {
            what: what.to_string(),
            message: format!(
                "declared size {} exceeds the limit of {limit} bytes",
                d.size
            ),
        });
    }
    let mut stream = store.get_blob(&d.digest, d.size).await?;
    let mut out = Vec::with_capacity(d.size as usize);
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
        if out.len() as u64 > d.size {
            break;
        }
    }
    check_digest(what, d, out.len() as u64, Digest::of(&out))?;
    Ok(out)
}

fn check_digest(what: &str, d: &Descriptor, size: u64, got: Digest) -> Result<(), PodError> {
    if size != d.size || got != d.digest {
        return Err(PodError::Corrupt {
            what: what.to_string(),
            message: format!(
                "content does not match its descriptor: expected {} ({} bytes), got {got} ({size} bytes)",
                d.digest, d.size
            ),
        });
    }
    Ok(())
}

/// Downloads a layer into a temp file in `dir`, checking digest and size.
async fn fetch_to_file(
    store: &dyn Remote,
    d: &Descriptor,
    dir: &Path,
    what: &str,
    mut on_bytes: impl FnMut(u64),
) -> Result<tempfile::NamedTempFile, PodError> {
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-pod-")
        .tempfile_in(dir)?;
    let mut file = tokio::fs::File::from_std(tmp.reopen()?);
    let mut stream = store.get_blob(&d.digest, d.size).await?;
    let mut hasher = Hasher::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        if size > d.size {
            break;
        }
        hasher.update(&chunk);
        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await?;
        on_bytes(chunk.len() as u64);
    }
    tokio::io::AsyncWriteExt::flush(&mut file).await?;
    check_digest(what, d, size, hasher.finish())?;
    Ok(tmp)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PodError> + Send + 'static,
) -> Result<T, PodError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PodError::Runtime(Error::Task(e.to_string())))?
}

/// A writer that hashes and counts what passes through.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Hasher,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Whether zstd is worth it for a blob: compress its first MiB and see.
fn compressible(path: &Path) -> io::Result<bool> {
    let mut sample = Vec::new();
    std::fs::File::open(path)?
        .take(1024 * 1024)
        .read_to_end(&mut sample)?;
    if sample.len() < 512 {
        return Ok(false);
    }
    let c = zstd::bulk::compress(&sample, 1)?;
    Ok((c.len() as f64) < sample.len() as f64 * 0.9)
}

/// The stored form of a blob layer, ready to upload: the blob store's own file (raw,
/// unencrypted) or a temp file removed when dropped.
struct Prepared(PathBuf, #[allow(dead_code)] Option<tempfile::TempPath>);

fn section_descriptor(
    service: &str,
    state_version: u32,
    plain: Digest,
    plain_size: u64,
    encrypted: bool,
) -> Descriptor {
    let mut annotations = BTreeMap::new();
    annotations.insert(ANN_LAYER.into(), "section".into());
    annotations.insert(ANN_SERVICE.into(), service.into());
    annotations.insert(ANN_STATE_VERSION.into(), state_version.to_string());
    annotations.insert(ANN_CONTENT_DIGEST.into(), plain.to_string());
    annotations.insert(ANN_CONTENT_SIZE.into(), plain_size.to_string());
    Descriptor {
        media_type: format!(
            "{SECTION_MEDIA_TYPE}{}",
            if encrypted { AGE_SUFFIX } else { "" }
        ),
        digest: Digest::default(),
        size: 0,
        artifact_type: None,
        annotations,
    }
}

fn blob_descriptor(plain: Digest, plain_size: u64, zstd: bool, encrypted: bool) -> Descriptor {
    let mut annotations = BTreeMap::new();
    annotations.insert(ANN_LAYER.into(), "blob".into());
    annotations.insert(ANN_CONTENT_DIGEST.into(), plain.to_string());
    annotations.insert(ANN_CONTENT_SIZE.into(), plain_size.to_string());
    Descriptor {
        media_type: format!(
            "{}{}",
            if zstd {
                BLOB_ZSTD_MEDIA_TYPE
            } else {
                BLOB_MEDIA_TYPE
            },
            if encrypted { AGE_SUFFIX } else { "" }
        ),
        digest: plain,
        size: plain_size,
        artifact_type: None,
        annotations,
    }
}

/// Saves `runtime`'s state as the next version of `name` in `store`.
pub async fn save_to(
    store: &dyn Remote,
    runtime: &Runtime,
    name: &str,
    opts: &SaveOptions,
) -> Result<SaveReport, PodError> {
    let snapshot = runtime
        .capture(opts.services.as_deref(), &ScopeFilter::all())
        .await?;
    let blobs = runtime.blobs().clone();
    let existing: Vec<TagEntry> = store
        .list()
        .await?
        .into_iter()
        .filter(|e| e.name == name)
        .collect();
    let version = existing.iter().map(|e| e.version).max().unwrap_or(0) + 1;
    // The previous version, whose layers this one reuses when their content is unchanged.
    let previous = match existing.iter().map(|e| e.version).max() {
        Some(v) => match resolve_in(
            store,
            &PodRef {
                name: name.to_string(),
                version: Some(v),
            },
        )
        .await
        {
            Ok(r) => Some(r),
            Err(PodError::Corrupt { .. }) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let (key, encryption) = match &opts.secret {
        None => (None, None),
        Some(secret) => {
            let prev_enc = previous
                .as_ref()
                .and_then(|p| p.metadata.encryption.clone());
            let secret = secret.clone();
            let (k, e) = blocking(move || {
                if let Some(enc) = prev_enc
                    && let Ok(k) = PodKey::unwrap(&enc.wrapped_key, &secret)
                {
                    return Ok((k, enc));
                }
                let k = PodKey::generate();
                let enc = Encryption {
                    scheme: "age".into(),
                    recipient: k.recipient(),
                    wrapped_key: k.wrap(&secret)?,
                };
                Ok((k, enc))
            })
            .await?;
            (Some(k), Some(e))
        }
    };
    // Plain content digest → layer of the previous version, if stored the same way.
    let mut reuse: HashMap<(String, Digest), Descriptor> = HashMap::new();
    if let Some(p) = &previous {
        let same_encryption = match (&p.metadata.encryption, &encryption) {
            (None, None) => true,
            (Some(a), Some(b)) => a.recipient == b.recipient,
            _ => false,
        };
        if same_encryption {
            for l in &p.manifest.layers {
                if let (Some(kind), Some(cd)) = (l.annotation(ANN_LAYER), l.content_digest()) {
                    reuse.insert((kind.to_string(), cd), l.clone());
                }
            }
        }
    }

    let blob_list: Vec<Digest> = snapshot.blobs().into_iter().collect();
    let mut blob_sizes = Vec::with_capacity(blob_list.len());
    for d in &blob_list {
        blob_sizes.push(blobs.size(d).map_err(|_| Error::MissingBlob {
            service: String::new(),
            digest: *d,
        })?);
    }
    let mut progress = ProgressState::new("save", blob_sizes.iter().sum(), opts.progress.clone());
    let mut layers = Vec::new();
    let mut uploaded = 0usize;
    let mut reused = 0usize;
    let mut bytes_uploaded = 0u64;
    let encrypted = key.is_some();

    // Sections.
    for (service, state) in &snapshot.services {
        let state = state.clone();
        let svc = service.clone();
        let plain = blocking(move || {
            let mut buf = Vec::new();
            state.encode_to(&mut buf).map_err(|e| Error::Encode {
                service: svc,
                message: e.to_string(),
            })?;
            Ok((Bytes::from(buf), state.version()))
        })
        .await?;
        let (plain, state_version) = plain;
        let plain_digest = Digest::of(&plain);
        let plain_size = plain.len() as u64;
        if let Some(d) = reuse.get(&("section".to_string(), plain_digest))
            && d.annotation(ANN_SERVICE) == Some(service.as_str())
            && store.has_blob(&d.digest).await?
        {
            layers.push(d.clone());
            reused += 1;
            continue;
        }
        let key = key.clone();
        let stored = blocking(move || {
            let compressed = zstd::bulk::compress(&plain, ZSTD_LEVEL)?;
            Ok(match key {
                Some(k) => {
                    let mut out = Vec::with_capacity(compressed.len() + 512);
                    k.encrypt(&mut &compressed[..], &mut out)?;
                    Bytes::from(out)
                }
                None => Bytes::from(compressed),
            })
        })
        .await?;
        let mut desc =
            section_descriptor(service, state_version, plain_digest, plain_size, encrypted);
        desc.digest = Digest::of(&stored);
        desc.size = stored.len() as u64;
        if store.has_blob(&desc.digest).await? {
            reused += 1;
        } else {
            store
                .put_bytes(&desc.digest, &desc.media_type, stored)
                .await?;
            uploaded += 1;
            bytes_uploaded += desc.size;
        }
        layers.push(desc);
    }

    // Blobs.
    for (d, size) in blob_list.iter().zip(&blob_sizes) {
        if let Some(prev) = reuse.get(&("blob".to_string(), *d))
            && store.has_blob(&prev.digest).await?
        {
            layers.push(prev.clone());
            reused += 1;
            progress.advance(*size);
            continue;
        }
        let src = blobs.path(d);
        let key = key.clone();
        let tmp_dir = blobs.root().to_path_buf();
        let (d2, size2) = (*d, *size);
        let (desc, prepared) = blocking(move || {
            let zstd = compressible(&src)?;
            if !zstd && key.is_none() {
                return Ok((
                    blob_descriptor(d2, size2, false, false),
                    Prepared(src, None),
                ));
            }
            let tmp = tempfile::Builder::new()
                .prefix(".tmp-pod-")
                .tempfile_in(&tmp_dir)?;
            let mut w = HashingWriter {
                inner: io::BufWriter::new(tmp.reopen()?),
                hasher: Hasher::new(),
                size: 0,
            };
            let mut input = std::fs::File::open(&src)?;
            match (&key, zstd) {
                (None, true) => {
                    zstd::stream::copy_encode(&mut input, &mut w, ZSTD_LEVEL)?;
                }
                (Some(k), true) => {
                    // Compress into a second temp file, then encrypt it.
                    let mut z = tempfile::Builder::new()
                        .prefix(".tmp-pod-")
                        .tempfile_in(&tmp_dir)?;
                    zstd::stream::copy_encode(&mut input, z.as_file_mut(), ZSTD_LEVEL)?;
                    z.as_file_mut().rewind()?;
                    k.encrypt(&mut io::BufReader::new(z.as_file_mut()), &mut w)?;
                }
                (Some(k), false) => {
                    k.encrypt(&mut io::BufReader::new(input), &mut w)?;
                }
                (None, false) => unreachable!("handled above"),
            }
            w.flush()?;
            let mut desc = blob_descriptor(d2, size2, zstd, key.is_some());
            desc.digest = w.hasher.finish();
            desc.size = w.size;
            let path = tmp.path().to_path_buf();
            Ok((desc, Prepared(path, Some(tmp.into_temp_path()))))
        })
        .await?;
        if store.has_blob(&desc.digest).await? {
            reused += 1;
        } else {
            store
                .put_blob(&desc.digest, &desc.media_type, &prepared.0, desc.size)
                .await?;
            uploaded += 1;
            bytes_uploaded += desc.size;
        }
        drop(prepared);
        progress.advance(*size);
        layers.push(desc);
    }

    let created_at = now_rfc3339();
    let metadata = PodMetadata {
        name: name.to_string(),
        version,
        message: opts.message.clone(),
        created_at: created_at.clone(),
        producer: producer(),
        services: snapshot
            .services
            .iter()
            .map(|(n, s)| PodService {
                name: n.clone(),
                state_version: s.version(),
                scopes: s
                    .summary()
                    .into_iter()
                    .map(|(scope, resources)| ScopeEntry {
                        account: scope.account,
                        region: scope.region,
                        resources,
                    })
                    .collect(),
            })
            .collect(),
        blobs: BlobSummary {
            count: blob_list.len() as u64,
            bytes: blob_sizes.iter().sum(),
        },
        encryption,
    };
    let config = Bytes::from(serde_json::to_vec(&metadata).map_err(io::Error::other)?);
    let config_desc = Descriptor {
        media_type: CONFIG_MEDIA_TYPE.into(),
        digest: Digest::of(&config),
        size: config.len() as u64,
        artifact_type: None,
        annotations: BTreeMap::new(),
    };
    if !store.has_blob(&config_desc.digest).await? {
        bytes_uploaded += config_desc.size;
        store
            .put_bytes(&config_desc.digest, CONFIG_MEDIA_TYPE, config)
            .await?;
    }
    let mut annotations = BTreeMap::new();
    annotations.insert(ANN_POD_NAME.to_string(), name.to_string());
    annotations.insert(ANN_POD_VERSION.to_string(), version.to_string());
    annotations.insert(ANN_POD_MESSAGE.to_string(), opts.message.clone());
    annotations.insert(ANN_CREATED.to_string(), created_at.clone());
    let bytes_total = layers.iter().map(|l| l.size).sum();
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE.into(),
        artifact_type: Some(ARTIFACT_TYPE.into()),
        config: config_desc,
        layers,
        annotations,
    };
    let manifest_bytes = Bytes::from(serde_json::to_vec(&manifest).map_err(io::Error::other)?);
    let entry = TagEntry {
        name: name.to_string(),
        version,
        message: opts.message.clone(),
        created_at,
        digest: Digest::of(&manifest_bytes),
        size: manifest_bytes.len() as u64,
    };
    bytes_uploaded += entry.size;
    store.put_manifest(&entry, manifest_bytes).await?;
    progress.finish();
    Ok(SaveReport {
        name: name.to_string(),
        version,
        location: store.location().to_string(),
        manifest_digest: entry.digest,
        layers: manifest.layers.len(),
        layers_uploaded: uploaded,
        layers_reused: reused,
        bytes_uploaded,
        bytes_total,
        encrypted,
        services: snapshot.services.keys().cloned().collect(),
    })
}

struct ProgressState {
    phase: &'static str,
    done: u64,
    total: u64,
    reported: u64,
    sink: Option<ProgressFn>,
}

impl ProgressState {
    fn new(phase: &'static str, total: u64, sink: Option<ProgressFn>) -> Self {
        let mut s = Self {
            phase,
            done: 0,
            total,
            reported: 0,
            sink,
        };
        s.report();
        s
    }

    fn report(&mut self) {
        self.reported = self.done;
        if let Some(f) = &self.sink {
            f(Progress {
                phase: self.phase.to_string(),
                done: self.done,
                total: self.total,
            });
        }
    }

    /// Reports at most about 200 times per transfer.
    fn advance(&mut self, n: u64) {
        self.done = (self.done + n).min(self.total);
        if self.done - self.reported >= (self.total / 200).max(1) {
            self.report();
        }
    }

    fn finish(&mut self) {
        self.done = self.total;
        self.report();
    }
}

/// Decodes one section's plain bytes into an upgraded state.
fn decode_section(
    service: &str,
    state_version: u32,
    current: u32,
    plain: &[u8],
) -> Result<Box<dyn ServiceState>, PodError> {
    let mut de = rmp_serde::Deserializer::new(plain);
    de.set_max_depth(crate::state::MAX_SECTION_DEPTH);
    let state: Box<dyn ServiceState> =
        Deserialize::deserialize(&mut de).map_err(|e| Error::Decode {
            service: service.to_string(),
            message: e.to_string(),
        })?;
    if state.service() != service || state.version() != state_version {
        return Err(Error::Decode {
            service: service.to_string(),
            message: format!(
                "the layer says {service}/{state_version} but holds {}/{}",
                state.service(),
                state.version()
            ),
        }
        .into());
    }
    Ok(crate::state::upgrade_to(state, current).map_err(Error::from)?)
}

/// Loads `pod` from `store` into `runtime`.
pub async fn load_from(
    store: &dyn Remote,
    runtime: &Runtime,
    pod: &PodRef,
    opts: &LoadOptions,
) -> Result<LoadReport, PodError> {
    let r = resolve_in(store, pod).await?;
    let version = r.version;
    let key = match (&r.metadata.encryption, &opts.secret) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(PodError::SecretRequired {
                name: pod.name.clone(),
                version,
            });
        }
        (Some(enc), Some(secret)) => {
            let (wrapped, secret) = (enc.wrapped_key.clone(), secret.clone());
            let name = pod.name.clone();
            Some(
                blocking(move || {
                    PodKey::unwrap(&wrapped, &secret).map_err(|e| match e {
                        UnwrapError::WrongSecret => PodError::WrongSecret { name, version },
                        UnwrapError::Damaged(m) => PodError::Corrupt {
                            what: format!("{name}:{version} encryption key"),
                            message: m,
                        },
                        e @ UnwrapError::WorkFactorTooHigh { .. } => PodError::Corrupt {
                            what: format!("{name}:{version} encryption key"),
                            message: e.to_string(),
                        },
                    })
                })
                .await?,
            )
        }
    };
    let selected: Option<BTreeSet<&'static str>> = match &opts.services {
        Some(list) => Some(runtime.select(Some(list))?.into_iter().collect()),
        None => None,
    };
    let mut snapshot = Snapshot::default();
    let mut skipped = Vec::new();
    let mut layers_downloaded = 0;
    let mut bytes_downloaded = 0u64;
    for l in r
        .manifest
        .layers
        .iter()
        .filter(|l| l.annotation(ANN_LAYER) == Some("section"))
    {
        let what = format!("{}:{} layer {}", pod.name, version, l.digest);
        let service = l.annotation(ANN_SERVICE).unwrap_or_default().to_string();
        let state_version: u32 = l
            .annotation(ANN_STATE_VERSION)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| PodError::Corrupt {
                what: what.clone(),
                message: "a section layer without a state version".into(),
            })?;
        if let Some(sel) = &selected
            && !sel.contains(service.as_str())
        {
            skipped.push(SkippedService {
                service,
                reason: SkipReason::NotSelected,
            });
            continue;
        }
        let Some(provider) = runtime.service(&service) else {
            skipped.push(SkippedService {
                reason: if runtime.linked_services().contains(&service.as_str()) {
                    SkipReason::NotEnabled
                } else {
                    SkipReason::NotInBuild
                },
                service,
            });
            continue;
        };
        let current = provider.state_version();
        if state_version > current {
            return Err(Error::FutureStateVersion {
                service,
                found: state_version,
                supported: current,
            }
            .into());
        }
        let stored = fetch_small(store, l, &what).await?;
        layers_downloaded += 1;
        bytes_downloaded += stored.len() as u64;
        let (key, l2) = (key.clone(), l.clone());
        let state = blocking(move || {
            let compressed = match (&key, l2.is_encrypted()) {
                (_, false) => stored,
                (Some(k), true) => {
                    let mut out = Vec::new();
                    k.decrypt(&stored[..])
                        .and_then(|mut r| r.read_to_end(&mut out))
                        .map_err(|e| PodError::Corrupt {
                            what: what.clone(),
                            message: format!("does not decrypt: {e}"),
                        })?;
                    out
                }
                (None, true) => {
                    return Err(PodError::Corrupt {
                        what: what.clone(),
                        message: "an encrypted layer in a pod without encryption metadata".into(),
                    });
                }
            };
            let plain = if l2.is_zstd() {
                let mut d = zstd::stream::read::Decoder::new(&compressed[..])?;
                d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                let mut out = Vec::new();
                d.take(4 * 1024 * 1024 * 1024)
                    .read_to_end(&mut out)
                    .map_err(|e| PodError::Corrupt {
                        what: what.clone(),
                        message: format!("does not decompress: {e}"),
                    })?;
                out
            } else {
                compressed
            };
            if l2.content_digest().is_some_and(|d| d != Digest::of(&plain)) {
                return Err(PodError::Corrupt {
                    what,
                    message: "the decoded content does not match its content digest".into(),
                });
            }
            decode_section(&service, state_version, current, &plain).map(|s| (service, s))
        })
        .await?;
        snapshot.services.insert(state.0, state.1);
    }

    // Blobs: only those the loaded states reference and the blob store lacks.
    let blob_layers: HashMap<Digest, &Descriptor> = r
        .manifest
        .layers
        .iter()
        .filter(|l| l.annotation(ANN_LAYER) == Some("blob"))
        .filter_map(|l| Some((l.content_digest()?, l)))
        .collect();
    let needed: Vec<Digest> = snapshot.blobs().into_iter().collect();
    let blobs = runtime.blobs().clone();
    let mut missing = Vec::new();
    let mut blobs_present = 0;
    for d in &needed {
        if blobs.contains(d) {
            blobs_present += 1;
            continue;
        }
        let l = blob_layers.get(d).ok_or_else(|| PodError::Corrupt {
            what: format!("{}:{}", pod.name, version),
            message: format!("the state refers to blob {d}, which is not a layer of the pod"),
        })?;
        missing.push(*l);
    }
    if !opts.dry_run {
        let total = missing.iter().map(|l| l.size).sum();
        let mut progress = ProgressState::new("load", total, opts.progress.clone());
        for l in missing {
            let what = format!("{}:{} layer {}", pod.name, version, l.digest);
            let tmp = fetch_to_file(store, l, blobs.root(), &what, |n| progress.advance(n)).await?;
            layers_downloaded += 1;
            bytes_downloaded += l.size;
            let (key, l2, blobs2) = (key.clone(), l.clone(), blobs.clone());
            blocking(move || {
                let f = io::BufReader::new(tmp.reopen()?);
                let bad = |e: io::Error| PodError::Corrupt {
                    what: what.clone(),
                    message: e.to_string(),
                };
                let reader: Box<dyn Read> = match (&key, l2.is_encrypted()) {
                    (Some(k), true) => k.decrypt(f).map_err(bad)?,
                    (None, true) => {
                        return Err(PodError::Corrupt {
                            what: what.clone(),
                            message: "an encrypted layer in a pod without encryption metadata"
                                .into(),
                        });
                    }
                    (_, false) => Box::new(f),
                };
                let mut reader: Box<dyn Read> = if l2.is_zstd() {
                    let mut d = zstd::stream::read::Decoder::new(reader).map_err(bad)?;
                    d.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(bad)?;
                    Box::new(d)
                } else {
                    reader
                };
                let mut w = blobs2.writer()?;
                io::copy(&mut reader, &mut w).map_err(bad)?;
                let (got, _) = w.commit()?;
                if Some(got) != l2.content_digest() {
                    return Err(PodError::Corrupt {
                        what,
                        message: format!("the layer decodes to {got}, not its content digest"),
                    });
                }
                Ok(())
            })
            .await?;
        }
        progress.finish();
    }

    if opts.dry_run {
        let diff = diff::plan(runtime, &snapshot, opts.merge).await?;
        return Ok(LoadReport {
            name: pod.name.clone(),
            version,
            location: store.location().to_string(),
            dry_run: true,
            merge: opts.merge,
            applied: None,
            diff: Some(diff),
            skipped,
            layers_downloaded,
            bytes_downloaded,
            blobs_present,
        });
    }
    let mut applied = runtime.apply(snapshot, opts.merge).await?;
    applied.skipped.extend(skipped.iter().cloned());
    applied.blobs_imported = (needed.len() - blobs_present) as u64;
    Ok(LoadReport {
        name: pod.name.clone(),
        version,
        location: store.location().to_string(),
        dry_run: false,
        merge: opts.merge,
        applied: Some(applied),
        diff: None,
        skipped,
        layers_downloaded,
        bytes_downloaded,
        blobs_present,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_and_references_follow_the_documented_grammar() {
        assert!(validate_name("seed_data-2").is_ok());
        for bad in ["", "a.b", "a b", "a/b", "ä"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            "demo:3".parse::<PodRef>().unwrap(),
            PodRef {
                name: "demo".into(),
                version: Some(3)
            }
        );
        assert_eq!("demo".parse::<PodRef>().unwrap().version, None);
        assert!("demo:0".parse::<PodRef>().is_err());
        assert!("demo:x".parse::<PodRef>().is_err());
    }
}
