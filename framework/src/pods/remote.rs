//! Where pods are kept: the [`Remote`] trait and its object-storage backend.
//!
//! Every store, local or remote, holds the same content-addressed objects. Two backends:
//! - [`StoreRemote`]: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) on
//!   any `object_store` store: the local store in `DATA_DIR/pods`, a plain directory
//!   (`file:///path`), S3-compatible object storage (`s3://bucket/prefix`), or a read-only
//!   HTTP(S) server (the launchpad);
//! - [`super::oci::OciRemote`]: an OCI registry (`oci://host[:port]/namespace`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::PodError;
use super::layout::{
    ANN_CREATED, ANN_POD_MESSAGE, ANN_POD_NAME, ANN_POD_VERSION, ANN_REF_NAME, ARTIFACT_TYPE,
    Descriptor, INDEX_MEDIA_TYPE, ImageIndex, ImageManifest, MANIFEST_MEDIA_TYPE,
};
use crate::state::Digest;

/// A stream of bytes downloaded from a store.
pub type ByteStream = BoxStream<'static, Result<Bytes, PodError>>;

/// One pod version as a store lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagEntry {
    /// Pod name.
    pub name: String,
    /// Version.
    pub version: u32,
    /// The save message.
    pub message: String,
    /// Creation time.
    pub created_at: String,
    /// Digest of the manifest.
    pub digest: Digest,
    /// Size of the manifest.
    pub size: u64,
}

/// A pod store. Blobs are content-addressed; a manifest is stored under a pod name and
/// version (a tag). Implementations verify nothing: the caller checks every digest.
#[async_trait]
pub trait Remote: Send + Sync {
    /// Where this store is, for messages (`s3://bucket/prefix`).
    fn location(&self) -> &str;
    /// Whether the store holds the blob.
    async fn has_blob(&self, digest: &Digest) -> Result<bool, PodError>;
    /// Uploads a blob from a file.
    async fn put_blob(
        &self,
        digest: &Digest,
        media_type: &str,
        file: &Path,
        size: u64,
    ) -> Result<(), PodError>;
    /// Uploads a small blob held in memory (a config).
    async fn put_bytes(
        &self,
        digest: &Digest,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(), PodError>;
    /// Downloads a blob; [`PodError::Corrupt`] names a blob the store lacks.
    async fn get_blob(&self, digest: &Digest, size: u64) -> Result<ByteStream, PodError>;
    /// Stores a manifest as `name:version` (its blobs must be stored first).
    async fn put_manifest(&self, entry: &TagEntry, manifest: Bytes) -> Result<(), PodError>;
    /// The manifest of `name:version`, if stored.
    async fn get_manifest(&self, name: &str, version: u32) -> Result<Option<Bytes>, PodError>;
    /// Every pod version in the store.
    async fn list(&self) -> Result<Vec<TagEntry>, PodError>;
    /// Removes `name:version` (its blobs stay until [`Remote::collect_garbage`]).
    async fn delete(&self, name: &str, version: u32) -> Result<(), PodError>;
    /// Removes blobs no manifest references; returns how many. Stores that collect
    /// garbage themselves (registries) do nothing.
    async fn collect_garbage(&self) -> Result<u64, PodError> {
        Ok(0)
    }
}

/// A parsed remote URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteUrl {
    /// `file:///absolute/path`: an OCI image layout in a directory.
    Dir(PathBuf),
    /// `s3://bucket/prefix[?endpoint=URL&region=R]`.
    S3 {
        /// Bucket.
        bucket: String,
        /// Key prefix (no leading or trailing slash), may be empty.
        prefix: String,
        /// Endpoint override; else `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, AWS.
        endpoint: Option<String>,
        /// Region; else `AWS_REGION`, `AWS_DEFAULT_REGION`, `us-east-1`.
        region: Option<String>,
    },
    /// `oci://host[:port]/namespace`: a repository in an OCI registry.
    Oci {
        /// `host[:port]`.
        registry: String,
        /// Repository path.
        repository: String,
    },
    /// `http(s)://…`: a read-only OCI image layout served over HTTP (launchpad).
    Http(String),
}

const S3_PLACEHOLDERS: &str = "{access_key_id}:{secret_access_key}";
const OCI_PLACEHOLDERS: &str = "{username}:{password}";

fn bad(url: &str, reason: impl Into<String>) -> PodError {
    PodError::InvalidUrl {
        url: url.to_string(),
        reason: reason.into(),
    }
}

impl FromStr for RemoteUrl {
    type Err = PodError;

    fn from_str(url: &str) -> Result<Self, PodError> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            bad(
                url,
                "expected file:///path, s3://bucket/prefix or oci://host/namespace",
            )
        })?;
        let scheme = scheme.to_ascii_lowercase();
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (userinfo, rest) = match rest.split_once('@') {
            Some((u, r)) if !u.contains('/') => (Some(u), r),
            _ => (None, rest),
        };
        let params: Vec<(String, String)> = query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let allowed_userinfo = match scheme.as_str() {
            "s3" => S3_PLACEHOLDERS,
            "oci" => OCI_PLACEHOLDERS,
            _ => "",
        };
        if let Some(u) = userinfo
            && u != allowed_userinfo
        {
            return Err(bad(
                url,
                format!(
                    "credentials are never stored in a remote URL; use the placeholders `{}` (filled from the environment at request time) or leave them out",
                    if allowed_userinfo.is_empty() {
                        "(none for this scheme)"
                    } else {
                        allowed_userinfo
                    }
                ),
            ));
        }
        match scheme.as_str() {
            "file" => {
                if !params.is_empty() {
                    return Err(bad(url, "file:// URLs take no parameters"));
                }
                if !rest.starts_with('/') {
                    return Err(bad(
                        url,
                        "file:// URLs need an absolute path: file:///path/to/dir",
                    ));
                }
                let decoded = percent_encoding::percent_decode_str(rest)
                    .decode_utf8()
                    .map_err(|e| bad(url, e.to_string()))?;
                Ok(RemoteUrl::Dir(PathBuf::from(decoded.as_ref())))
            }
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad(url, "no bucket: s3://bucket/prefix"));
                }
                let mut endpoint = None;
                let mut region = None;
                for (k, v) in params {
                    match k.as_str() {
                        "endpoint" => endpoint = Some(v),
                        "region" => region = Some(v),
                        other => {
                            return Err(bad(
                                url,
                                format!("unknown parameter `{other}` (known: endpoint, region)"),
                            ));
                        }
                    }
                }
                Ok(RemoteUrl::S3 {
                    bucket: bucket.to_string(),
                    prefix: prefix.trim_matches('/').to_string(),
                    endpoint,
                    region,
                })
            }
            "oci" => {
                if !params.is_empty() {
                    return Err(bad(url, "oci:// URLs take no parameters"));
                }
                let (registry, repository) = rest
                    .split_once('/')
                    .ok_or_else(|| bad(url, "no namespace: oci://host[:port]/namespace"))?;
                let repository = repository.trim_matches('/');
                if registry.is_empty() || repository.is_empty() {
                    return Err(bad(url, "expected oci://host[:port]/namespace"));
                }
                if !valid_repository(repository) {
                    return Err(bad(
                        url,
                        "an OCI repository is lower-case letters and digits separated by `.`, `_`, `-` or `/`",
                    ));
                }
                Ok(RemoteUrl::Oci {
                    registry: registry.to_string(),
                    repository: repository.to_string(),
                })
            }
            "http" | "https" => Ok(RemoteUrl::Http(url.to_string())),
            other => Err(bad(
                url,
                format!("unsupported scheme `{other}`; expected file, s3 or oci"),
            )),
        }
    }
}

fn valid_repository(repo: &str) -> bool {
    repo.split('/').all(|c| {
        !c.is_empty()
            && c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
            && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
    })
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Variables of the emulator's environment that name an S3 remote's endpoint when its URL
/// has no `?endpoint=`, in the order they are tried; without any, requests go to AWS itself.
pub const S3_ENDPOINT_ENV: [&str; 2] = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"];
/// Variables of the emulator's environment that name an S3 remote's region when its URL has
/// no `?region=`, in order; `us-east-1` without them.
pub const S3_REGION_ENV: [&str; 2] = ["AWS_REGION", "AWS_DEFAULT_REGION"];
/// Variables of the emulator's environment whose credentials sign S3 remote requests
/// (unsigned requests without the first two).
pub const S3_CREDENTIAL_ENV: [&str; 3] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];
/// Variables of the emulator's environment whose credentials an `oci://` remote sends
/// (anonymous without them).
pub const OCI_CREDENTIAL_ENV: [&str; 2] =
    ["CRYOPOD_REGISTRY_USERNAME", "CRYOPOD_REGISTRY_PASSWORD"];

/// Where a remote's requests go and whose credentials they carry, as far as its URL says.
///
/// The emulator process opens remotes, so an `s3://` URL without `?endpoint=` reaches
/// whatever the emulator's environment names, or AWS itself, signed with the emulator's
/// credentials. The CLI prints this for every remote it uses so that such a remote is never
/// silent; it is computed from the URL alone because the CLI cannot see the emulator's
/// environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemoteTarget {
    /// The remote URL as given.
    pub url: String,
    /// `file`, `s3`, `oci` or `http`.
    pub kind: &'static str,
    /// The endpoint when the URL fixes it (`?endpoint=`, a registry, a directory); `None`
    /// when the emulator's environment decides (an `s3://` URL without `?endpoint=`).
    pub endpoint: Option<String>,
    /// Whether requests may reach AWS itself: an `s3://` URL without `?endpoint=`, unless
    /// the emulator's environment sets one of [`S3_ENDPOINT_ENV`].
    pub aws: bool,
    /// Where the endpoint comes from, in words.
    pub endpoint_from: String,
    /// Where the credentials come from, in words.
    pub credentials_from: String,
    /// One line for people: `URL → endpoint (from …); credentials from …`.
    pub description: String,
}

impl RemoteTarget {
    /// Describes `url` (the text `parsed` was parsed from).
    pub fn of(url: &str, parsed: &RemoteUrl) -> Self {
        let (kind, endpoint, aws, endpoint_from, credentials_from) = match parsed {
            RemoteUrl::Dir(path) => (
                "file",
                Some(path.display().to_string()),
                false,
                "a directory on the emulator's machine".to_string(),
                "none (the emulator process's file permissions)".to_string(),
            ),
            RemoteUrl::S3 {
                endpoint, region, ..
            } => {
                let credentials = format!(
                    "the emulator's environment ({}; unsigned requests without them)",
                    S3_CREDENTIAL_ENV.join(", ")
                );
                match endpoint {
                    Some(ep) => (
                        "s3",
                        Some(ep.clone()),
                        false,
                        "?endpoint=".to_string(),
                        credentials,
                    ),
                    None => {
                        let region = region.clone().unwrap_or_else(|| {
                            format!("{} or us-east-1", S3_REGION_ENV.join(" / "))
                        });
                        (
                            "s3",
                            None,
                            true,
                            format!(
                                "the emulator's environment ({}), else AWS S3 itself in region {region}",
                                S3_ENDPOINT_ENV.join(" / ")
                            ),
                            credentials,
                        )
                    }
                }
            }
            RemoteUrl::Oci { registry, .. } => (
                "oci",
                Some(format!("registry {registry}")),
                false,
                "the URL; HTTPS, plain HTTP for a loopback registry".to_string(),
                format!(
                    "the emulator's environment ({}; anonymous without them)",
                    OCI_CREDENTIAL_ENV.join(", ")
                ),
            ),
            RemoteUrl::Http(u) => (
                "http",
                Some(u.clone()),
                false,
                "the URL".to_string(),
                "none (anonymous)".to_string(),
            ),
        };
        let description = match &endpoint {
            None => format!(
                "{url} → AWS S3 itself, unless the emulator's environment sets {}; credentials from {credentials_from}",
                S3_ENDPOINT_ENV.join(" or ")
            ),
            Some(ep) if kind == "file" => format!("{url} → {ep} ({endpoint_from})"),
            Some(ep) => {
                format!("{url} → {ep} (from {endpoint_from}); credentials from {credentials_from}")
            }
        };
        Self {
            url: url.to_string(),
            kind,
            endpoint,
            aws,
            endpoint_from,
            credentials_from,
            description,
        }
    }
}

/// Opens the store a URL names. Credentials come from the environment at this moment.
pub fn open(url: &RemoteUrl, location: &str) -> Result<Arc<dyn Remote>, PodError> {
    let retry = object_store::RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let options = object_store::ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(10))
        .with_allow_http(true);
    let remote_err = |e: object_store::Error| PodError::Remote {
        location: location.to_string(),
        message: e.to_string(),
    };
    match url {
        RemoteUrl::Dir(path) => {
            StoreRemote::local(path, location).map(|r| Arc::new(r) as Arc<dyn Remote>)
        }
        RemoteUrl::S3 {
            bucket,
            prefix,
            endpoint,
            region,
        } => {
            let mut b = object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_retry(retry)
                .with_client_options(options);
            let endpoint = endpoint
                .clone()
                .or_else(|| S3_ENDPOINT_ENV.iter().find_map(|v| env_nonempty(v)));
            tracing::debug!(
                remote = location,
                endpoint = endpoint.as_deref().unwrap_or("AWS S3"),
                "opening an S3 remote"
            );
            if let Some(ep) = endpoint {
                b = b
                    .with_allow_http(ep.starts_with("http://"))
                    .with_endpoint(ep);
            }
            let region = region
                .clone()
                .or_else(|| S3_REGION_ENV.iter().find_map(|v| env_nonempty(v)))
                .unwrap_or_else(|| "us-east-1".to_string());
            b = b.with_region(region);
            let [key_env, secret_env, token_env] = S3_CREDENTIAL_ENV;
            match (env_nonempty(key_env), env_nonempty(secret_env)) {
                (Some(k), Some(s)) => {
                    b = b.with_access_key_id(k).with_secret_access_key(s);
                    if let Some(t) = env_nonempty(token_env) {
                        b = b.with_token(t);
                    }
                }
                // No credentials: anonymous requests (public buckets), rather than a slow
                // probe of an instance-metadata endpoint.
                _ => b = b.with_skip_signature(true),
            }
            let s3 = b.build().map_err(remote_err)?;
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(s3, prefix.as_str()))
            };
            Ok(Arc::new(StoreRemote::new(store, location, false)))
        }
        RemoteUrl::Http(u) => {
            let base = if u.ends_with('/') {
                u.clone()
            } else {
                format!("{u}/")
            };
            let http = object_store::http::HttpBuilder::new()
                .with_url(base)
                .with_retry(retry)
                .with_client_options(options)
                .build()
                .map_err(remote_err)?;
            Ok(Arc::new(StoreRemote::new(Arc::new(http), location, false)))
        }
        RemoteUrl::Oci {
            registry,
            repository,
        } => Ok(Arc::new(super::oci::OciRemote::new(
            registry, repository, location,
        )?)),
    }
}

/// An OCI image layout on an `object_store` store.
pub struct StoreRemote {
    store: Arc<dyn ObjectStore>,
    location: String,
    /// Serializes read-modify-write of `index.json` within this process.
    index_lock: tokio::sync::Mutex<()>,
    /// Blobs younger than this are never collected (a concurrent save from another machine
    /// may be uploading blobs before its manifest). Zero for the local store.
    gc_grace: Duration,
}

const PUT_IN_ONE_REQUEST: u64 = 32 * 1024 * 1024;
const PART_SIZE: usize = 8 * 1024 * 1024;

impl StoreRemote {
    /// A layout over `store`.
    pub fn new(store: Arc<dyn ObjectStore>, location: &str, local: bool) -> Self {
        Self {
            store,
            location: location.to_string(),
            index_lock: tokio::sync::Mutex::new(()),
            gc_grace: if local {
                Duration::ZERO
            } else {
                Duration::from_secs(3600)
            },
        }
    }

    /// A layout in a local directory (created, owner-only, if missing).
    pub fn local(dir: &Path, location: &str) -> Result<Self, PodError> {
        crate::blob::create_private_dir_all(dir).map_err(|e| PodError::Remote {
            location: location.to_string(),
            message: format!("cannot create {}: {e}", dir.display()),
        })?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| {
            PodError::Remote {
                location: location.to_string(),
                message: e.to_string(),
            }
        })?;
        Ok(Self::new(Arc::new(fs), location, true))
    }

    fn err(&self, e: object_store::Error) -> PodError {
        PodError::Remote {
            location: self.location.clone(),
            message: e.to_string(),
        }
    }

    fn blob_path(d: &Digest) -> StorePath {
        StorePath::from(format!("blobs/sha256/{}", d.hex()))
    }

    async fn read_index(&self) -> Result<ImageIndex, PodError> {
        match self.store.get(&StorePath::from("index.json")).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(|e| self.err(e))?;
                serde_json::from_slice(&bytes).map_err(|e| PodError::Corrupt {
                    what: format!("{}/index.json", self.location),
                    message: format!("not an OCI image index: {e}"),
                })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(ImageIndex {
                schema_version: 2,
                media_type: INDEX_MEDIA_TYPE.to_string(),
                manifests: Vec::new(),
            }),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn write_index(&self, index: &ImageIndex) -> Result<(), PodError> {
        let layout = StorePath::from("oci-layout");
        match self.store.head(&layout).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                self.store
                    .put(
                        &layout,
                        PutPayload::from_static(br#"{"imageLayoutVersion":"1.0.0"}"#),
                    )
                    .await
                    .map_err(|e| self.err(e))?;
            }
            Err(e) => return Err(self.err(e)),
        }
        let bytes =
            serde_json::to_vec_pretty(index).map_err(|e| PodError::Io(std::io::Error::other(e)))?;
        self.store
            .put(&StorePath::from("index.json"), PutPayload::from(bytes))
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn entry_of(d: &Descriptor) -> Option<TagEntry> {
        Some(TagEntry {
            name: d.annotation(ANN_POD_NAME)?.to_string(),
            version: d.annotation(ANN_POD_VERSION)?.parse().ok()?,
            message: d
                .annotation(ANN_POD_MESSAGE)
                .unwrap_or_default()
                .to_string(),
            created_at: d.annotation(ANN_CREATED).unwrap_or_default().to_string(),
            digest: d.digest,
            size: d.size,
        })
    }
}

#[async_trait]
impl Remote for StoreRemote {
    fn location(&self) -> &str {
        &self.location
    }

    async fn has_blob(&self, digest: &Digest) -> Result<bool, PodError> {
        match self.store.head(&Self::blob_path(digest)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        _media_type: &str,
        file: &Path,
        size: u64,
    ) -> Result<(), PodError> {
        let path = Self::blob_path(digest);
        if size <= PUT_IN_ONE_REQUEST {
            let bytes = tokio::fs::read(file).await?;
            self.store
                .put(&path, PutPayload::from(bytes))
                .await
                .map_err(|e| self.err(e))?;
            return Ok(());
        }
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| self.err(e))?;
        let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut f = tokio::fs::File::open(file).await?;
        let mut buf = vec![0u8; PART_SIZE];
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                let n = f.read(&mut buf[filled..]).await?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            w.wait_for_capacity(4).await.map_err(|e| self.err(e))?;
            w.write(&buf[..filled]);
            if filled < buf.len() {
                break;
            }
        }
        w.finish().await.map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn put_bytes(
        &self,
        digest: &Digest,
        _media_type: &str,
        bytes: Bytes,
    ) -> Result<(), PodError> {
        self.store
            .put(&Self::blob_path(digest), PutPayload::from(bytes))
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn get_blob(&self, digest: &Digest, _size: u64) -> Result<ByteStream, PodError> {
        let location = self.location.clone();
        match self.store.get(&Self::blob_path(digest)).await {
            Ok(r) => Ok(r
                .into_stream()
                .map_err(move |e| PodError::Remote {
                    location: location.clone(),
                    message: e.to_string(),
                })
                .boxed()),
            Err(object_store::Error::NotFound { .. }) => Err(PodError::Corrupt {
                what: format!("{} blob {digest}", self.location),
                message: "the blob is missing from the store".into(),
            }),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn put_manifest(&self, entry: &TagEntry, manifest: Bytes) -> Result<(), PodError> {
        self.put_bytes(&entry.digest, MANIFEST_MEDIA_TYPE, manifest)
            .await?;
        let _guard = self.index_lock.lock().await;
        let mut index = self.read_index().await?;
        let ref_name = format!("{}:{}", entry.name, entry.version);
        index
            .manifests
            .retain(|d| d.annotation(ANN_REF_NAME) != Some(ref_name.as_str()));
        let mut annotations = std::collections::BTreeMap::new();
        annotations.insert(ANN_REF_NAME.to_string(), ref_name);
        annotations.insert(ANN_POD_NAME.to_string(), entry.name.clone());
        annotations.insert(ANN_POD_VERSION.to_string(), entry.version.to_string());
        annotations.insert(ANN_POD_MESSAGE.to_string(), entry.message.clone());
        annotations.insert(ANN_CREATED.to_string(), entry.created_at.clone());
        index.manifests.push(Descriptor {
            media_type: MANIFEST_MEDIA_TYPE.to_string(),
            digest: entry.digest,
            size: entry.size,
            artifact_type: Some(ARTIFACT_TYPE.to_string()),
            annotations,
        });
        index.schema_version = 2;
        index.media_type = INDEX_MEDIA_TYPE.to_string();
        self.write_index(&index).await
    }

    async fn get_manifest(&self, name: &str, version: u32) -> Result<Option<Bytes>, PodError> {
        let index = self.read_index().await?;
        let Some(d) = index
            .manifests
            .iter()
            .filter_map(Self::entry_of)
            .find(|e| e.name == name && e.version == version)
        else {
            return Ok(None);
        };
        let mut stream = self.get_blob(&d.digest, d.size).await?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
            if out.len() > super::MAX_MANIFEST_BYTES {
                break;
            }
        }
        Ok(Some(Bytes::from(out)))
    }

    async fn list(&self) -> Result<Vec<TagEntry>, PodError> {
        Ok(self
            .read_index()
            .await?
            .manifests
            .iter()
            .filter_map(Self::entry_of)
            .collect())
    }

    async fn delete(&self, name: &str, version: u32) -> Result<(), PodError> {
        let _guard = self.index_lock.lock().await;
        let mut index = self.read_index().await?;
        index.manifests.retain(|d| {
            Self::entry_of(d).is_none_or(|e| !(e.name == name && e.version == version))
        });
        self.write_index(&index).await
    }

    async fn collect_garbage(&self) -> Result<u64, PodError> {
        let _guard = self.index_lock.lock().await;
        let index = self.read_index().await?;
        let mut keep = BTreeSet::new();
        for d in &index.manifests {
            keep.insert(d.digest);
            let mut stream = self.get_blob(&d.digest, d.size).await?;
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.next().await {
                bytes.extend_from_slice(&chunk?);
            }
            // A manifest that does not parse stops the collection: better keep garbage than
            // lose a layer.
            let m: ImageManifest =
                serde_json::from_slice(&bytes).map_err(|e| PodError::Corrupt {
                    what: format!("{} manifest {}", self.location, d.digest),
                    message: e.to_string(),
                })?;
            keep.insert(m.config.digest);
            keep.extend(m.layers.iter().map(|l| l.digest));
        }
        let now = chrono_now();
        let mut removed = 0;
        let mut listing = self.store.list(Some(&StorePath::from("blobs/sha256")));
        let mut doomed = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.err(e))?;
            let Some(name) = meta.location.filename() else {
                continue;
            };
            let Ok(d) = format!("sha256:{name}").parse::<Digest>() else {
                continue;
            };
            let age = now.saturating_sub(meta.last_modified.timestamp().max(0) as u64);
            if !keep.contains(&d) && Duration::from_secs(age) >= self.gc_grace {
                doomed.push(meta.location);
            }
        }
        for p in doomed {
            match self.store.delete(&p).await {
                Ok(()) => removed += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        Ok(removed)
    }
}

fn chrono_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Named remotes, kept in `DATA_DIR/pods/remotes.json` (0600) without credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemotesFile {
    /// Name → URL.
    #[serde(default)]
    pub remotes: std::collections::BTreeMap<String, String>,
}

impl RemotesFile {
    /// Reads the file; missing means empty.
    pub fn read(path: &Path) -> Result<Self, PodError> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| PodError::Corrupt {
                what: path.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the file atomically, readable by the owner only.
    pub fn write(&self, path: &Path) -> Result<(), PodError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        crate::blob::create_private_dir_all(dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-remotes-")
            .tempfile_in(dir)?;
        serde_json::to_writer_pretty(tmp.as_file_mut(), self).map_err(std::io::Error::other)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_urls_parse_and_refuse_stored_credentials() {
        assert_eq!(
            "file:///tmp/x".parse::<RemoteUrl>().unwrap(),
            RemoteUrl::Dir("/tmp/x".into())
        );
        assert_eq!(
            "s3://b/p/q/?endpoint=http://127.0.0.1:9000"
                .parse::<RemoteUrl>()
                .unwrap(),
            RemoteUrl::S3 {
                bucket: "b".into(),
                prefix: "p/q".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: None
            }
        );
        assert!(
            "s3://{access_key_id}:{secret_access_key}@b/p"
                .parse::<RemoteUrl>()
                .is_ok()
        );
        let e = "s3://AKIA:secret@b/p".parse::<RemoteUrl>().unwrap_err();
        assert!(e.to_string().contains("never stored"), "{e}");
        assert_eq!(
            "oci://127.0.0.1:5000/team/pods"
                .parse::<RemoteUrl>()
                .unwrap(),
            RemoteUrl::Oci {
                registry: "127.0.0.1:5000".into(),
                repository: "team/pods".into()
            }
        );
        assert!("oci://host/Upper".parse::<RemoteUrl>().is_err());
        assert!("ftp://x/y".parse::<RemoteUrl>().is_err());
        assert!("file://relative".parse::<RemoteUrl>().is_err());
    }

    #[test]
    fn a_remote_target_says_whether_requests_may_reach_aws_itself() {
        let of = |u: &str| RemoteTarget::of(u, &u.parse().unwrap());
        let aws = of("s3://pods-bucket/cryopod");
        assert!(aws.aws);
        assert_eq!(aws.endpoint, None);
        for needle in [
            "s3://pods-bucket/cryopod → AWS S3 itself",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ACCESS_KEY_ID",
            "the emulator's environment",
        ] {
            assert!(aws.description.contains(needle), "{}", aws.description);
        }
        let local = of("s3://b/p?endpoint=http://127.0.0.1:9000");
        assert!(!local.aws);
        assert_eq!(local.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(
            local
                .description
                .contains("→ http://127.0.0.1:9000 (from ?endpoint=)"),
            "{}",
            local.description
        );
        assert!(
            of("oci://127.0.0.1:5000/team")
                .credentials_from
                .contains("CRYOPOD_REGISTRY_USERNAME")
        );
        assert_eq!(
            of("file:///mnt/share").endpoint.as_deref(),
            Some("/mnt/share")
        );
    }
}
