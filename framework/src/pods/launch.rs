//! The launchpad: load a cryopod bundle file or a pod from an HTTP(S) URL.
//!
//! `cryopod pod load --url URL`, `POST /_cryopod/pods/launch?url=URL` and the page at
//! `/_cryopod/launchpad?url=URL` accept:
//! - a bundle file (`cryopod state export`), recognised by its magic bytes;
//! - a pod in an OCI image layout served over HTTP: the layout's `index.json` or its
//!   directory (URL ending in `/`); `#NAME` or `#NAME:VERSION` picks the pod, else the
//!   layout's only pod, latest version.
//!
//! Safety (the emulator fetches what a URL names, so a URL must not turn it against the
//! machine it runs on):
//! - only `http` and `https`; credentials in a URL (`user:pass@`) are removed before
//!   anything is fetched and never shown back;
//! - the page at `/_cryopod/launchpad?url=` fetches nothing: it shows the URL and a button,
//!   and only the click (a same-origin POST) fetches;
//! - every address a host resolves to is checked in its canonical form (IPv4-mapped,
//!   IPv4-compatible and NAT64 IPv6 addresses are the IPv4 address they carry; the URL
//!   parser already turns `2130706433`, `0177.0.0.1` and `0x7f.1` into `127.0.0.1`):
//!   unspecified, link-local, multicast, broadcast and cloud metadata addresses are always
//!   refused, and so is this machine's own address (loopback included) on the emulator's
//!   port; loopback on another port stays allowed (that is how pods are served locally);
//! - the connection goes to exactly the addresses that were checked (no second DNS lookup,
//!   so rebinding between check and connect is impossible), redirects are followed by hand
//!   (at most 5) through the same check, and no request goes to a `/_cryopod/` path;
//! - at most `CRYOPOD_LAUNCH_MAX_BYTES` bytes (default 1 GiB) are fetched;
//! - a failed connection is reported as "could not fetch" whatever the cause, so the
//!   launchpad cannot be used to scan ports (details go to the debug log).

use std::io::{Read, Seek};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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
/// AWS's IPv6 instance-metadata address (the IPv4 one, 169.254.169.254, is link-local).
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

fn max_bytes() -> u64 {
    std::env::var("CRYOPOD_LAUNCH_MAX_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_BYTES)
}

/// The address `ip` really reaches: an IPv6 address that carries an IPv4 one
/// (`::ffff:a.b.c.d` mapped, `::a.b.c.d` compatible, `64:ff9b::a.b.c.d` NAT64) is that IPv4
/// address. Why: `Ipv6Addr::is_loopback` is false for `::ffff:127.0.0.1`, yet a connection
/// to it reaches 127.0.0.1.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return v4.into();
    }
    let seg = v6.segments();
    let low = Ipv4Addr::from(((seg[6] as u32) << 16) | seg[7] as u32);
    let compat = seg[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified();
    let nat64 = seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if compat || nat64 { low.into() } else { ip }
}

/// Why an address is never fetched from, whatever the port.
fn never_fetched(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            if v4.octets()[0] == 0 {
                Some("an unspecified address")
            } else if v4 == Ipv4Addr::new(169, 254, 169, 254) {
                Some("a cloud metadata address")
            } else if v4.is_link_local() {
                Some("a link-local address")
            } else if v4.is_multicast() || v4.is_broadcast() {
                Some("a multicast or broadcast address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() {
                Some("an unspecified address")
            } else if v6 == METADATA_V6 {
                Some("a cloud metadata address")
            } else if v6.is_unicast_link_local() {
                Some("a link-local address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else {
                None
            }
        }
    }
}

/// Whether `ip` is an address of this machine: loopback, or one of its interfaces (a
/// socket can be bound to it).
fn is_this_machine(ip: IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// A URL's text with any `user:pass@` removed, for pages and messages.
pub fn shown(url: &str) -> String {
    match url.parse::<reqwest::Url>() {
        Ok(mut u) => {
            strip_credentials(&mut u);
            u.to_string()
        }
        Err(_) => "(not a URL)".to_string(),
    }
}

/// Removes `user:pass@`; true when there was something to remove.
fn strip_credentials(url: &mut reqwest::Url) -> bool {
    let had = !url.username().is_empty() || url.password().is_some();
    // Only URLs that cannot have credentials refuse these, and those were refused earlier.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    had
}

fn parse(url: &str) -> Result<reqwest::Url, PodError> {
    let mut u: reqwest::Url = url
        .parse()
        .map_err(|e| PodError::Launch(format!("the launch URL is not a URL: {e}")))?;
    if strip_credentials(&mut u) {
        tracing::info!(url = %u, "credentials removed from a launch URL");
    }
    Ok(u)
}

/// A URL's host: an address (the URL parser has already turned decimal, octal and hex
/// IPv4 forms into dotted quads) or a name to resolve.
enum Host<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

fn host_of(url: &reqwest::Url) -> Result<Host<'_>, PodError> {
    let host = url
        .host_str()
        .ok_or_else(|| PodError::Launch(format!("{url} has no host")))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    Ok(match bare.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(host),
    })
}

/// Refuses URLs that point back at the emulator, at this machine's metadata or link-local
/// services, or are not HTTP(S).
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
        self.addresses(url).await.map(|_| ())
    }

    /// Checks `url` and answers the addresses to connect to: every address its host
    /// resolves to, each one checked.
    async fn addresses(&self, url: &reqwest::Url) -> Result<Vec<SocketAddr>, PodError> {
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
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = match host_of(url)? {
            Host::Ip(ip) => vec![SocketAddr::new(ip, port)],
            Host::Name(name) => tokio::net::lookup_host((name, port))
                .await
                .map_err(|e| {
                    tracing::debug!(host = name, error = %e, "launch host does not resolve");
                    PodError::Launch(format!("could not fetch {url}: its host does not resolve"))
                })?
                .collect(),
        };
        for a in &addrs {
            let ip = canonical_ip(a.ip());
            if let Some(why) = never_fetched(ip) {
                return Err(PodError::Launch(format!(
                    "refusing {url}: it leads to {why}, which the launchpad never fetches from"
                )));
            }
            let own_port = self.own.is_some_and(|own| own.port() == a.port());
            let own_ip = self.own.is_some_and(|own| canonical_ip(own.ip()) == ip);
            if own_port && (own_ip || is_this_machine(ip)) {
                return Err(PodError::Launch(format!(
                    "refusing {url}: it is this emulator's own address"
                )));
            }
        }
        if addrs.is_empty() {
            return Err(PodError::Launch(format!(
                "could not fetch {url}: its host does not resolve"
            )));
        }
        Ok(addrs)
    }

    /// A client that connects `url`'s host to exactly `addrs` and follows no redirects.
    fn client_for(url: &reqwest::Url, addrs: &[SocketAddr]) -> Result<reqwest::Client, PodError> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(10));
        if let Host::Name(name) = host_of(url)? {
            b = b.resolve_to_addrs(name, addrs);
        }
        b.build().map_err(|e| PodError::Launch(e.to_string()))
    }
}

/// Fetches `url` (following checked redirects) into a temp file, up to the size limit.
async fn fetch(
    url: &reqwest::Url,
    guard: &Guard,
) -> Result<(tempfile::NamedTempFile, reqwest::Url), PodError> {
    let mut url = url.clone();
    let limit = max_bytes();
    for _ in 0..=MAX_REDIRECTS {
        let addrs = guard.addresses(&url).await?;
        let client = Guard::client_for(&url, &addrs)?;
        let mut frag_less = url.clone();
        frag_less.set_fragment(None);
        let resp = client.get(frag_less).send().await.map_err(|e| {
            tracing::debug!(url = %url, error = %e, "launch fetch failed");
            PodError::Launch(format!("could not fetch {url}"))
        })?;
        if resp.status().is_redirection() {
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| PodError::Launch(format!("{url} redirects without a Location")))?;
            url = url
                .join(next)
                .map_err(|e| PodError::Launch(format!("bad redirect from {url}: {e}")))?;
            strip_credentials(&mut url);
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
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            tracing::debug!(url = %url, error = %e, "launch download broke off");
            PodError::Launch(format!("could not fetch {url}: the download broke off"))
        })? {
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

/// Fetches what `url` (already without credentials) names: a bundle, or a pod layout's
/// index and the pod it picks.
async fn open(url: &reqwest::Url, guard: &Guard) -> Result<(Fetched, reqwest::Url), PodError> {
    let mut target = url.clone();
    let fragment = target.fragment().map(str::to_string);
    if target.path().ends_with('/') {
        target = target
            .join("index.json")
            .map_err(|e| PodError::Launch(e.to_string()))?;
    }
    let (tmp, final_url) = fetch(&target, guard).await?;
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
    let url = parse(url)?;
    let (fetched, _) = open(&url, guard).await?;
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
    let url = parse(url)?;
    let (fetched, _) = open(&url, guard).await?;
    match fetched {
        Fetched::Bundle(tmp) => {
            let mut f = tmp.reopen()?;
            f.rewind()?;
            let report = runtime
                .import(std::io::BufReader::new(f), None, merge)
                .await?;
            Ok(json!({ "kind": "bundle", "url": url.as_str(), "applied": report }))
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
            Ok(json!({ "kind": "pod", "url": url.as_str(), "report": report }))
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
    html_page(&body)
}

/// The launchpad's first page for `url` (already without credentials): what will be
/// fetched and a button to fetch it. Nothing is fetched before the click.
pub fn confirm_page(url: &str) -> String {
    let body = format!(
        "<h1 id=\"title\">Load from a URL?</h1>\n<p>This emulator will fetch <code id=\"source\">{}</code> \
and show what it holds before anything is loaded. Continue only if you trust where this link came from.</p>\n\
<form id=\"inspect\" method=\"post\" action=\"/_cryopod/launchpad\">\
<input type=\"hidden\" name=\"url\" value=\"{}\">\
<button id=\"inspect-button\" type=\"submit\">Show what it holds</button></form>\n",
        escape(url),
        escape(url)
    );
    html_page(&body)
}

fn html_page(body: &str) -> String {
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
    html_page(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_forms_of_ipv4_addresses_are_the_ipv4_address() {
        for (v6, v4) in [
            ("::ffff:127.0.0.1", "127.0.0.1"),
            ("::127.0.0.1", "127.0.0.1"),
            ("64:ff9b::169.254.169.254", "169.254.169.254"),
            ("::ffff:10.0.0.1", "10.0.0.1"),
        ] {
            assert_eq!(canonical_ip(ip(v6)), ip(v4), "{v6}");
        }
        for same in ["::1", "::", "2001:db8::1", "127.0.0.1"] {
            assert_eq!(canonical_ip(ip(same)), ip(same), "{same}");
        }
    }

    #[test]
    fn the_url_parser_turns_every_ipv4_spelling_into_a_dotted_quad() {
        for url in [
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.0.0.1/",
            "http://0x7f000001/",
            "http://127.1/",
        ] {
            let u: reqwest::Url = url.parse().unwrap();
            assert_eq!(u.host_str(), Some("127.0.0.1"), "{url}");
        }
    }

    #[test]
    fn metadata_link_local_and_unspecified_addresses_are_never_fetched() {
        for bad in [
            "169.254.169.254",
            "169.254.1.1",
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(never_fetched(canonical_ip(ip(bad))).is_some(), "{bad}");
        }
        for ok in ["127.0.0.1", "::1", "10.0.0.1", "93.184.216.34"] {
            assert!(never_fetched(ip(ok)).is_none(), "{ok}");
        }
    }

    #[tokio::test]
    async fn this_machine_is_refused_on_the_emulators_port_only() {
        let g = Guard::new("127.0.0.1:4566");
        for url in [
            "http://[::ffff:127.0.0.1]:4566/",
            "http://[::1]:4566/",
            "http://127.0.0.2:4566/",
            "http://localhost:4566/",
        ] {
            let e = g.check(&url.parse().unwrap()).await.unwrap_err();
            assert!(e.to_string().contains("own address"), "{url}: {e}");
        }
        assert!(
            g.check(&"http://127.0.0.1:8000/".parse().unwrap())
                .await
                .is_ok()
        );
    }

    #[test]
    fn credentials_are_removed_from_shown_urls() {
        assert_eq!(shown("http://u:p@h.example:81/x"), "http://h.example:81/x");
        assert_eq!(shown("not a url, user:pass"), "(not a URL)");
    }
}
