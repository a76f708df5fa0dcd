//! Pods in an OCI registry (`oci://host[:port]/namespace`), through `oci-client`.
//!
//! All pods of a remote live in one repository (`namespace`); a pod version is the tag
//! `NAME.VERSION` (OCI tags allow upper case, repository names do not). The pushed manifest is
//! a valid OCI artifact: `mediaType` `application/vnd.oci.image.manifest.v1+json`, an
//! `artifactType`, a config and layers with complete descriptors.
//!
//! Loopback registries (`127.0.0.1`, `localhost`, `[::1]`) are spoken to over plain HTTP,
//! everything else over HTTPS. Credentials: anonymous unless `CRYOPOD_REGISTRY_USERNAME` and
//! `CRYOPOD_REGISTRY_PASSWORD` are set in the emulator's environment (read at request time,
//! never stored); registries with token auth are handled by `oci-client`.

use std::path::Path;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::PodError;
use super::layout::{ANN_CREATED, ANN_POD_MESSAGE, ImageManifest, MANIFEST_MEDIA_TYPE};
use super::remote::{ByteStream, Remote, TagEntry};
use crate::state::Digest;

/// A repository in an OCI registry.
pub struct OciRemote {
    client: Client,
    http: reqwest::Client,
    registry: String,
    repository: String,
    scheme: &'static str,
    location: String,
}

fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(h, p)| !h.ends_with(':') && p.chars().all(|c| c.is_ascii_digit()))
        .map(|(h, _)| h)
        .unwrap_or(registry);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NotFound
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RequestError(r) => r.status() == Some(reqwest::StatusCode::NOT_FOUND),
        _ => false,
    }
}

/// The OCI tag of a pod version.
pub fn tag_of(name: &str, version: u32) -> String {
    format!("{name}.{version}")
}

fn parse_tag(tag: &str) -> Option<(String, u32)> {
    let (name, v) = tag.rsplit_once('.')?;
    let v: u32 = v.parse().ok().filter(|v| *v > 0)?;
    super::validate_name(name).ok()?;
    Some((name.to_string(), v))
}

impl OciRemote {
    /// A client for `registry`/`repository`.
    pub fn new(registry: &str, repository: &str, location: &str) -> Result<Self, PodError> {
        let scheme = if is_loopback(registry) {
            "http"
        } else {
            "https"
        };
        let protocol = if scheme == "http" {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            ..Default::default()
        });
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| PodError::Remote {
                location: location.to_string(),
                message: e.to_string(),
            })?;
        Ok(Self {
            client,
            http,
            registry: registry.to_string(),
            repository: repository.to_string(),
            scheme,
            location: location.to_string(),
        })
    }

    fn auth() -> RegistryAuth {
        match (
            std::env::var("CRYOPOD_REGISTRY_USERNAME"),
            std::env::var("CRYOPOD_REGISTRY_PASSWORD"),
        ) {
            (Ok(u), Ok(p)) if !u.is_empty() => RegistryAuth::Basic(u, p),
            _ => RegistryAuth::Anonymous,
        }
    }

    fn reference(&self, tag: Option<String>) -> Reference {
        Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            tag.unwrap_or_else(|| "latest".into()),
        )
    }

    fn err(&self, e: OciDistributionError) -> PodError {
        PodError::Remote {
            location: self.location.clone(),
            message: e.to_string(),
        }
    }

    fn check_name(&self, name: &str) -> Result<(), PodError> {
        let tag = tag_of(name, u32::MAX);
        if name.starts_with('-') || tag.len() > 128 {
            return Err(PodError::InvalidName {
                name: name.to_string(),
                reason: format!(
                    "on an OCI registry a pod version is the tag NAME.VERSION, which must start with a letter, digit or `_` and be at most 128 characters ({})",
                    self.location
                ),
            });
        }
        Ok(())
    }

    /// A raw request to the registry with whatever authorization the client negotiated.
    async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        op: RegistryOperation,
    ) -> Result<reqwest::Response, PodError> {
        let url = format!(
            "{}://{}/v2/{}/{}",
            self.scheme, self.registry, self.repository, path
        );
        let auth = Self::auth();
        let token = self
            .client
            .auth(&self.reference(None), &auth, op)
            .await
            .map_err(|e| self.err(e))?;
        let mut req = self.http.request(method, &url);
        match (&token, &auth) {
            (Some(t), _) => req = req.bearer_auth(t),
            (None, RegistryAuth::Basic(u, p)) => req = req.basic_auth(u, Some(p)),
            _ => {}
        }
        req.send().await.map_err(|e| PodError::Remote {
            location: self.location.clone(),
            message: e.to_string(),
        })
    }
}

#[async_trait]
impl Remote for OciRemote {
    fn location(&self) -> &str {
        &self.location
    }

    async fn has_blob(&self, digest: &Digest) -> Result<bool, PodError> {
        let resp = self
            .raw(
                reqwest::Method::HEAD,
                &format!("blobs/{digest}"),
                RegistryOperation::Pull,
            )
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            reqwest::StatusCode::NOT_FOUND => Ok(false),
            s => Err(PodError::Remote {
                location: self.location.clone(),
                message: format!("HEAD blob {digest} answered {s}"),
            }),
        }
    }

    async fn put_blob(
        &self,
        digest: &Digest,
        media_type: &str,
        file: &Path,
        _size: u64,
    ) -> Result<(), PodError> {
        // oci-client pushes from memory; layers are one section or one blob each.
        let data = tokio::fs::read(file).await?;
        self.put_bytes(digest, media_type, Bytes::from(data)).await
    }

    async fn put_bytes(
        &self,
        digest: &Digest,
        _media_type: &str,
        bytes: Bytes,
    ) -> Result<(), PodError> {
        let auth = Self::auth();
        let r = self.reference(None);
        self.client
            .auth(&r, &auth, RegistryOperation::Push)
            .await
            .map_err(|e| self.err(e))?;
        self.client
            .push_blob(&r, &bytes, &digest.to_string())
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn get_blob(&self, digest: &Digest, _size: u64) -> Result<ByteStream, PodError> {
        let auth = Self::auth();
        let r = self.reference(None);
        self.client
            .auth(&r, &auth, RegistryOperation::Pull)
            .await
            .map_err(|e| self.err(e))?;
        let d = digest.to_string();
        match self.client.pull_blob_stream(&r, d.as_str()).await {
            Ok(s) => {
                let location = self.location.clone();
                Ok(s.stream
                    .map_err(move |e| PodError::Remote {
                        location: location.clone(),
                        message: e.to_string(),
                    })
                    .boxed())
            }
            Err(e) if is_not_found(&e) => Err(PodError::Corrupt {
                what: format!("{} blob {digest}", self.location),
                message: "the blob is missing from the registry".into(),
            }),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn put_manifest(&self, entry: &TagEntry, manifest: Bytes) -> Result<(), PodError> {
        self.check_name(&entry.name)?;
        let r = self.reference(Some(tag_of(&entry.name, entry.version)));
        let auth = Self::auth();
        self.client
            .auth(&r, &auth, RegistryOperation::Push)
            .await
            .map_err(|e| self.err(e))?;
        self.client
            .push_manifest_raw(
                &r,
                manifest.to_vec(),
                reqwest::header::HeaderValue::from_static(MANIFEST_MEDIA_TYPE),
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn get_manifest(&self, name: &str, version: u32) -> Result<Option<Bytes>, PodError> {
        if self.check_name(name).is_err() {
            return Ok(None);
        }
        let r = self.reference(Some(tag_of(name, version)));
        match self
            .client
            .pull_manifest_raw(&r, &Self::auth(), &[MANIFEST_MEDIA_TYPE])
            .await
        {
            Ok((bytes, _digest)) => Ok(Some(Bytes::from(bytes))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn list(&self) -> Result<Vec<TagEntry>, PodError> {
        let r = self.reference(None);
        let tags = match self.client.list_tags(&r, &Self::auth(), None, None).await {
            Ok(t) => t.tags,
            Err(e) if is_not_found(&e) => Vec::new(),
            Err(e) => return Err(self.err(e)),
        };
        let mut out = Vec::new();
        for tag in tags {
            let Some((name, version)) = parse_tag(&tag) else {
                continue;
            };
            let Some(bytes) = self.get_manifest(&name, version).await? else {
                continue;
            };
            let Ok(m) = serde_json::from_slice::<ImageManifest>(&bytes) else {
                continue;
            };
            out.push(TagEntry {
                message: m
                    .annotations
                    .get(ANN_POD_MESSAGE)
                    .cloned()
                    .unwrap_or_default(),
                created_at: m.annotations.get(ANN_CREATED).cloned().unwrap_or_default(),
                name,
                version,
                digest: Digest::of(&bytes),
                size: bytes.len() as u64,
            });
        }
        Ok(out)
    }

    async fn delete(&self, name: &str, version: u32) -> Result<(), PodError> {
        let Some(bytes) = self.get_manifest(name, version).await? else {
            return Ok(());
        };
        let digest = Digest::of(&bytes);
        let resp = self
            .raw(
                reqwest::Method::DELETE,
                &format!("manifests/{digest}"),
                RegistryOperation::Push,
            )
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            reqwest::StatusCode::METHOD_NOT_ALLOWED => Err(PodError::Remote {
                location: self.location.clone(),
                message: "the registry does not allow deleting manifests (for the reference registry, set storage.delete.enabled: true)".into(),
            }),
            s => Err(PodError::Remote {
                location: self.location.clone(),
                message: format!("deleting {} answered {s}: {}", tag_of(name, version), resp.text().await.unwrap_or_default()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_loopback_is_plain_http() {
        assert_eq!(
            parse_tag(&tag_of("seed_data-1", 12)),
            Some(("seed_data-1".into(), 12))
        );
        assert_eq!(parse_tag("latest"), None);
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("ghcr.io"));
    }
}
