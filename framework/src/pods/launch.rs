//! The launchpad: load a cryopod bundle file or a pod from an HTTP(S) URL.
//!
//! `cryopod pod load --url URL`, `POST /_cryopod/pods/launch?url=URL` and the page at
//! `/_cryopod/launchpad?url=URL` accept:
//! - a bundle file (`cryopod state export`), recognised by its magic bytes;
//! - a pod in an OCI image layout served over HTTP: the layout's `index.json` or its
//!   directory (URL ending in `/`); `#NAME` or `#NAME:VERSION` picks the pod, else the
//!   layout's only pod, latest version.
//!
//! Safety: only `http` and `https` URLs; at most `CRYOPOD_LAUNCH_MAX_BYTES` bytes (default
//! 1 GiB) fetched; redirects are followed by hand (at most 5) and each target checked; no
//! request goes to the emulator's own address or to any `/_cryopod/` path, so a launch URL
//! cannot make the emulator call its own internal API.

use std::io::{Read, Seek};
use std::net::SocketAddr;
use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};

use super::layout::{ImageIndex, PodService};
use super::{LoadOptions, PodError, PodRef};
use crate::runtime::Runtime;
use crate::state::MergeStrategy;

/// Default size limit of a launched bundle or pod.
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024 * 1024;
const MAX_REDIRECTS: usize = 5;
/// The first bytes of every bundle file (`bundle-format/SPEC.md`, file header).
const BUNDLE_MAGIC: [u8; 8] = *b"\x89CRYOPOD";

fn max_bytes() -> u64 {
    std::env::var("CRYOPOD_LAUNCH_MAX_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_BYTES)
}

/// Refuses URLs that point back at the emulator or are not HTTP(S).
#[derive(Clone, Debug)]
pub struct Guard {
    own: Option<SocketAddr>,
}

impl Guard {
    /// A guard for an emulator listening on `listen` (`127.0.0.1:4566`).
    pub fn new(listen: &str) -> Self {
        Self {
            own: listen.parse().ok(),
        }
    }

    /// Checks `url` before a request is sent to it.
    pub async fn check(&self, url: &reqwest::Url) -> Result<(), PodError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(PodError::Launch(format!(
                "only http and https URLs can be launched, not {}",
                url.scheme()
            )));
        }
        if url.path().starts_with("/_cryopod") {
            return Err(PodError::Launch(
                "refusing a URL under /_cryopod/: the launchpad never calls an emulator's internal API".into(),
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| PodError::Launch(format!("{url} has no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        if let Some(own) = self.own {
            let addrs = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| PodError::Launch(format!("cannot resolve {host}: {e}")))?;
            for a in addrs {
                let same_ip = a.ip() == own.ip()
                    || ((own.ip().is_unspecified() || own.ip().is_loopback())
                        && (a.ip().is_loopback() || a.ip().is_unspecified()));
                if same_ip && a.port() == own.port() {
                    return Err(PodError::Launch(format!(
                        "refusing {url}: it is this emulator's own address"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Fetches `url` (following checked redirects) into a temp file, up to the size limit.
async fn fetch(
    url: &str,
    guard: &Guard,
) -> Result<(tempfile::NamedTempFile, reqwest::Url), PodError> {
    let mut url: reqwest::Url = url
        .parse()
        .map_err(|e| PodError::Launch(format!("`{url}` is not a URL: {e}")))?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| PodError::Launch(e.to_string()))?;
    let limit = max_bytes();
    for _ in 0..=MAX_REDIRECTS {
        guard.check(&url).await?;
        let mut frag_less = url.clone();
        frag_less.set_fragment(None);
        let resp = client
            .get(frag_less)
            .send()
            .await
            .map_err(|e| PodError::Launch(format!("cannot fetch {url}: {e}")))?;
        if resp.status().is_redirection() {
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| PodError::Launch(format!("{url} redirects without a Location")))?;
            url = url
                .join(next)
                .map_err(|e| PodError::Launch(format!("bad redirect from {url}: {e}")))?;
            continue;
        }
        if !resp.status().is_success() {
            return Err(PodError::Launch(format!(
                "{url} answered {}",
                resp.status()
            )));
        }
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(PodError::Launch(format!(
                "{url} is larger than the {limit}-byte launch limit (CRYOPOD_LAUNCH_MAX_BYTES)"
            )));
        }
        let tmp = tempfile::NamedTempFile::new()?;
        let mut file = tokio::fs::File::from_std(tmp.reopen()?);
        let mut total = 0u64;
        let mut resp = resp;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| PodError::Launch(format!("download of {url} broke off: {e}")))?
        {
            total += chunk.len() as u64;
            if total > limit {
                return Err(PodError::Launch(format!(
                    "{url} is larger than the {limit}-byte launch limit (CRYOPOD_LAUNCH_MAX_BYTES)"
                )));
            }
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file).await?;
        return Ok((tmp, url));
    }
    Err(PodError::Launch(format!("{url}: too many redirects")))
}

fn is_bundle(path: &Path) -> std::io::Result<bool> {
    let mut magic = [0u8; 8];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut magic)?;
    Ok(n == 8 && magic == BUNDLE_MAGIC)
}

/// What a launch URL holds.
#[derive(Clone, Debug, Serialize)]
pub struct LaunchInfo {
    /// `bundle` or `pod`.
    pub kind: String,
    /// The URL.
    pub url: String,
    /// Pod name (pods only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Pod version (pods only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Save message (pods only).
    pub message: String,
    /// Creation time.
    pub created_at: String,
    /// Producer.
    pub producer: String,
    /// Services with scopes and resource counts.
    pub services: Vec<PodService>,
    /// Blob count.
    pub blob_count: u64,
    /// Blob bytes.
    pub blob_bytes: u64,
    /// Whether a secret is needed.
    pub encrypted: bool,
}

enum Fetched {
    Bundle(tempfile::NamedTempFile),
    Pod {
        store: std::sync::Arc<dyn super::remote::Remote>,
        pod: PodRef,
    },
}

async fn open(url: &str, guard: &Guard) -> Result<(Fetched, reqwest::Url), PodError> {
    let mut target: reqwest::Url = url
        .parse()
        .map_err(|e| PodError::Launch(format!("`{url}` is not a URL: {e}")))?;
    let fragment = target.fragment().map(str::to_string);
    if target.path().ends_with('/') {
        target = target
            .join("index.json")
            .map_err(|e| PodError::Launch(e.to_string()))?;
    }
    let (tmp, final_url) = fetch(target.as_str(), guard).await?;
    if is_bundle(tmp.path())? {
        return Ok((Fetched::Bundle(tmp), final_url));
    }
    let index: ImageIndex = serde_json::from_slice(&std::fs::read(tmp.path())?).map_err(|_| {
        PodError::Launch(format!(
            "{url} is neither a cryopod bundle nor the index.json of a pod layout"
        ))
    })?;
    let base = final_url
        .join("./")
        .map_err(|e| PodError::Launch(e.to_string()))?;
    guard.check(&base).await?;
    let store = super::remote::open(
        &super::remote::RemoteUrl::Http(base.to_string()),
        base.as_str(),
    )?;
    let pod = match fragment.filter(|f| !f.is_empty()) {
        Some(f) => f.parse::<PodRef>()?,
        None => {
            let names: std::collections::BTreeSet<String> = index
                .manifests
                .iter()
                .filter_map(|d| {
                    d.annotation(super::layout::ANN_POD_NAME)
                        .map(str::to_string)
                })
                .collect();
            match names.len() {
                1 => PodRef {
                    name: names.into_iter().next().unwrap_or_default(),
                    version: None,
                },
                0 => {
                    return Err(PodError::Launch(format!(
                        "the layout at {base} holds no pod"
                    )));
                }
                _ => {
                    return Err(PodError::Launch(format!(
                        "the layout at {base} holds several pods ({}); add #NAME or #NAME:VERSION to the URL",
                        names.into_iter().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
        }
    };
    Ok((Fetched::Pod { store, pod }, final_url))
}

/// Describes what `url` holds without loading it.
pub async fn describe(url: &str, guard: &Guard) -> Result<LaunchInfo, PodError> {
    let (fetched, _) = open(url, guard).await?;
    match fetched {
        Fetched::Bundle(tmp) => {
            let f = std::fs::File::open(tmp.path())?;
            let reader =
                cryopod_bundle::BundleReader::new(std::io::BufReader::new(f), Default::default())
                    .map_err(|e| PodError::Launch(format!("{url} is not a readable bundle: {e}")))?;
            let m = reader.manifest().clone();
            Ok(LaunchInfo {
                kind: "bundle".into(),
                url: url.to_string(),
                name: None,
                version: None,
                message: String::new(),
                created_at: m.created_at,
                producer: m.producer,
                services: m
                    .services
                    .into_iter()
                    .map(|s| PodService {
                        name: s.name,
                        state_version: s.state_version,
                        scopes: s.scopes,
                    })
                    .collect(),
                blob_count: m.blobs.count,
                blob_bytes: m.blobs.bytes,
                encrypted: false,
            })
        }
        Fetched::Pod { store, pod } => {
            let r = super::resolve_in(store.as_ref(), &pod).await?;
            Ok(LaunchInfo {
                kind: "pod".into(),
                url: url.to_string(),
                name: Some(r.metadata.name.clone()),
                version: Some(r.version),
                message: r.metadata.message,
                created_at: r.metadata.created_at,
                producer: r.metadata.producer,
                services: r.metadata.services,
                blob_count: r.metadata.blobs.count,
                blob_bytes: r.metadata.blobs.bytes,
                encrypted: r.metadata.encryption.is_some(),
            })
        }
    }
}

/// Fetches `url` and loads it with `merge`.
pub async fn launch(
    runtime: &Runtime,
    url: &str,
    merge: MergeStrategy,
    secret: Option<String>,
    guard: &Guard,
) -> Result<Value, PodError> {
    let (fetched, _) = open(url, guard).await?;
    match fetched {
        Fetched::Bundle(tmp) => {
            let mut f = tmp.reopen()?;
            f.rewind()?;
            let report = runtime
                .import(std::io::BufReader::new(f), None, merge)
                .await?;
            Ok(json!({ "kind": "bundle", "url": url, "applied": report }))
        }
        Fetched::Pod { store, pod } => {
            let r = super::resolve_in(store.as_ref(), &pod).await?;
            let total: u64 = r.manifest.layers.iter().map(|l| l.size).sum();
            let limit = max_bytes();
            if total > limit {
                return Err(PodError::Launch(format!(
                    "the pod's layers total {total} bytes, more than the {limit}-byte launch limit (CRYOPOD_LAUNCH_MAX_BYTES)"
                )));
            }
            let pod = PodRef {
                name: pod.name,
                version: Some(r.version),
            };
            let opts = LoadOptions {
                merge,
                secret,
                ..Default::default()
            };
            let report = super::load_from(store.as_ref(), runtime, &pod, &opts).await?;
            Ok(json!({ "kind": "pod", "url": url, "report": report }))
        }
    }
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn url_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}\
h1{font-size:1.4rem}table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccd;padding:.3rem .6rem;text-align:left}\
.error{color:#a40000}button{font-size:1rem;padding:.4rem 1.2rem}code{background:#f2f4f7;padding:0 .2rem}";

/// The launchpad page: a form for a URL, or the metadata of `url` and a Load button.
pub fn page(url: Option<&str>, info: Option<&Result<LaunchInfo, PodError>>) -> String {
    let mut body = String::new();
    match (url, info) {
        (Some(url), Some(Ok(i))) => {
            let title = match (&i.name, i.version) {
                (Some(n), Some(v)) => format!("pod {}:{v}", escape(n)),
                _ => "bundle".to_string(),
            };
            body.push_str(&format!(
                "<h1 id=\"title\">Load {title}</h1>\n<p>from <code id=\"source\">{}</code></p>\n",
                escape(url)
            ));
            body.push_str("<table id=\"metadata\">\n");
            let mut row = |k: &str, v: &str| {
                body.push_str(&format!(
                    "<tr><th>{}</th><td data-field=\"{}\">{}</td></tr>\n",
                    escape(k),
                    escape(k),
                    escape(v)
                ));
            };
            row("kind", &i.kind);
            if let Some(n) = &i.name {
                row("name", n);
            }
            if let Some(v) = i.version {
                row("version", &v.to_string());
            }
            if !i.message.is_empty() {
                row("message", &i.message);
            }
            row("created", &i.created_at);
            row("producer", &i.producer);
            row(
                "blobs",
                &format!("{} ({} bytes)", i.blob_count, i.blob_bytes),
            );
            row("encrypted", if i.encrypted { "yes" } else { "no" });
            body.push_str("</table>\n<table id=\"services\"><tr><th>service</th><th>account</th><th>region</th><th>resources</th></tr>\n");
            for s in &i.services {
                if s.scopes.is_empty() {
                    body.push_str(&format!(
                        "<tr><td>{}</td><td>-</td><td>-</td><td>(empty)</td></tr>\n",
                        escape(&s.name)
                    ));
                }
                for sc in &s.scopes {
                    let res = sc
                        .resources
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    body.push_str(&format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                        escape(&s.name),
                        escape(&sc.account),
                        escape(&sc.region),
                        escape(&res)
                    ));
                }
            }
            body.push_str("</table>\n");
            body.push_str(&format!(
                "<form id=\"load\" method=\"post\" action=\"/_cryopod/pods/launch?url={}\">\n<label>merge <select name=\"merge\">\
<option value=\"account-region-merge\" selected>account-region-merge</option>\
<option value=\"overwrite\">overwrite</option><option value=\"service-merge\">service-merge</option></select></label>\n",
                escape(&url_encode(url))
            ));
            if i.encrypted {
                body.push_str(
                    "<label>secret <input type=\"password\" name=\"secret\" required></label>\n",
                );
            }
            body.push_str("<button id=\"load-button\" type=\"submit\">Load</button>\n</form>\n");
        }
        (Some(url), Some(Err(e))) => {
            body.push_str(&format!(
                "<h1>Cannot launch</h1>\n<p>from <code>{}</code></p>\n<p class=\"error\" id=\"error\">{}</p>\n",
                escape(url),
                escape(&e.to_string())
            ));
        }
        _ => {
            body.push_str(
                "<h1>cryopod launchpad</h1>\n<form method=\"get\" action=\"/_cryopod/launchpad\">\
<label>URL of a bundle or pod <input name=\"url\" size=\"60\" required></label> <button type=\"submit\">Show</button></form>\n",
            );
        }
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>cryopod launchpad</title><style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )
}

/// The page shown after the Load button.
pub fn result_page(url: &str, result: &Result<Value, PodError>) -> String {
    let body = match result {
        Ok(v) => format!(
            "<h1 id=\"result\">Loaded</h1>\n<p>from <code>{}</code></p>\n<pre>{}</pre>\n",
            escape(url),
            escape(&serde_json::to_string_pretty(v).unwrap_or_default())
        ),
        Err(e) => format!(
            "<h1 id=\"result\">Not loaded</h1>\n<p class=\"error\" id=\"error\">{}</p>\n",
            escape(&e.to_string())
        ),
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>cryopod launchpad</title><style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )
}
