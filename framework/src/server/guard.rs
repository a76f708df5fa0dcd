//! Who may act on the emulator: one guard for the management surface, one for AWS requests.
//!
//! The threat is a web page in the user's browser. It can send requests to
//! `http://127.0.0.1:4566` (simple requests need no CORS preflight: a form POST with
//! `Content-Type: text/plain`, an `<img>` GET), and, by DNS rebinding, make its own name
//! resolve to `127.0.0.1` and read the answers as "same-origin". SDKs, the AWS CLI, curl and
//! the `cryopod` CLI send neither `Origin` nor `Sec-Fetch-*`, so they are never affected.
//!
//! - **Management surface** (`/_cryopod/`, `/_localstack/`, [`management`]): the `Host` must
//!   be a loopback name or address, the listen address, or a name in `CRYOPOD_ALLOWED_HOSTS`
//!   (defeats rebinding); a request carrying an `Origin` that is not the emulator's own is
//!   refused, and so is a mutating one with `Sec-Fetch-Site: cross-site` or `same-site`
//!   (another port on `localhost` is same-site but another origin); every answer forbids
//!   framing (`frame-ancestors 'none'`, `X-Frame-Options: DENY`). A request without `Host`
//!   (HTTP/1.0) is allowed: every browser sends `Host`, and rebinding needs a browser.
//! - **AWS requests** ([`aws_gate`], called by the gateway once it knows the service): a
//!   browser request (one with `Origin` or `Sec-Fetch-Site`) must name an allowed `Host`
//!   too; a cross-site one is decided by the service ([`Service::cross_origin`]): S3 by the
//!   bucket's CORS rules, every other service refuses it unless signed in an
//!   `Authorization` header.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use parking_lot::Mutex;

use super::{ApiError, App};
use crate::aws::{AwsError, Body};
use crate::service::{CrossOrigin, Service};

/// Names that always reach this machine's loopback: `localhost` and its subdomains
/// (RFC 6761), and LocalStack's `localhost.localstack.cloud` (a public name for 127.0.0.1
/// that LocalStack users put in their configuration).
const LOOPBACK_NAMES: &[&str] = &["localhost", "localhost.localstack.cloud"];

const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// A malformed `CRYOPOD_ALLOWED_HOSTS` entry.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{entry}` in CRYOPOD_ALLOWED_HOSTS is not a host name or address (give names like `cryopod.internal` or `*.dev.example`, without scheme or port)"
)]
pub struct BadAllowedHost {
    entry: String,
}

/// One entry of `CRYOPOD_ALLOWED_HOSTS`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// `cryopod.internal`, `10.0.0.5`: exactly this host.
    Exact(String),
    /// `*.dev.example`: any subdomain (virtual-hosted S3 buckets behind a name).
    Subdomains(String),
}

/// Which hosts and origins are the emulator's own.
#[derive(Clone, Debug)]
pub struct Access {
    listen: SocketAddr,
    extra: Vec<HostPattern>,
}

impl Access {
    /// The emulator listening on `listen`, also reachable under `allowed_hosts` (names or
    /// addresses; `*.name` for every subdomain), for people who put it behind a proxy or
    /// reach it under a container name.
    pub fn new(listen: SocketAddr, allowed_hosts: &[String]) -> Result<Self, BadAllowedHost> {
        let mut extra = Vec::new();
        for entry in allowed_hosts
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
        {
            let lower = entry.to_ascii_lowercase();
            let bad = || BadAllowedHost {
                entry: entry.to_string(),
            };
            let (wild, name) = match lower.strip_prefix("*.") {
                Some(rest) => (true, rest.to_string()),
                None => (false, lower.clone()),
            };
            let name = name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let valid = !name.is_empty()
                && (name.parse::<IpAddr>().is_ok()
                    || name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'));
            if !valid {
                return Err(bad());
            }
            extra.push(if wild {
                HostPattern::Subdomains(name)
            } else {
                HostPattern::Exact(name)
            });
        }
        Ok(Self { listen, extra })
    }

    /// The same names for an emulator that ended up on `listen` (port 0 resolved).
    pub fn listening_on(self, listen: SocketAddr) -> Self {
        Self { listen, ..self }
    }

    /// Only the loopback names and the listen address.
    pub fn loopback(listen: SocketAddr) -> Self {
        Self {
            listen,
            extra: Vec::new(),
        }
    }

    /// Whether `host` (no port, brackets allowed) names this emulator.
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            let ip = crate::pods::launch::canonical_ip(ip);
            return ip.is_loopback()
                || ip == crate::pods::launch::canonical_ip(self.listen.ip())
                || self.extra.contains(&HostPattern::Exact(ip.to_string()))
                || self.extra.contains(&HostPattern::Exact(bare.to_string()));
        }
        let subdomain_of = |name: &str| host.ends_with(&format!(".{name}"));
        LOOPBACK_NAMES.iter().any(|n| host == *n || subdomain_of(n))
            || self.extra.iter().any(|p| match p {
                HostPattern::Exact(n) => host == *n,
                HostPattern::Subdomains(n) => subdomain_of(n),
            })
    }

    /// Whether `origin` (`http://localhost:4566`) is a page of this emulator: an allowed
    /// host on the emulator's port, or on the port of the request's own `Host` (behind a
    /// proxy the browser sees the proxy's port).
    fn own_origin(&self, origin: &str, host: Option<&Authority>) -> bool {
        let Some(o) = Authority::of_origin(origin) else {
            return false; // `null` (sandboxed frames, file://) and anything unparsable
        };
        let port_ok = o.port == self.listen.port() || host.is_some_and(|h| h.port == Some(o.port));
        port_ok && self.host_allowed(&o.host)
    }
}

/// A host and port, from a `Host` header or an `Origin`.
#[derive(Debug)]
struct Authority {
    host: String,
    port: Option<u16>,
}

impl Authority {
    fn of_host_header(value: &str) -> Option<Self> {
        let a: http::uri::Authority = value.parse().ok()?;
        Some(Self {
            host: a.host().to_string(),
            port: a.port_u16(),
        })
    }

    /// An origin's host and port (the scheme's default when it names none).
    fn of_origin(origin: &str) -> Option<OriginAuthority> {
        let uri: http::Uri = origin.parse().ok()?;
        let default = match uri.scheme_str()? {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let a = uri.authority()?;
        Some(OriginAuthority {
            host: a.host().to_string(),
            port: a.port_u16().unwrap_or(default),
        })
    }
}

struct OriginAuthority {
    host: String,
    port: u16,
}

/// What a request says about where it comes from.
struct Provenance<'a> {
    host: Option<&'a str>,
    origin: Option<&'a str>,
    sec_fetch_site: Option<&'a str>,
}

impl<'a> Provenance<'a> {
    fn of(headers: &'a HeaderMap, uri: &'a http::Uri) -> Self {
        let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        Self {
            // HTTP/2 carries the host in the URI's authority instead of a header.
            host: text(&header::HOST).or_else(|| uri.authority().map(|a| a.as_str())),
            origin: text(&header::ORIGIN),
            sec_fetch_site: headers.get(SEC_FETCH_SITE).and_then(|v| v.to_str().ok()),
        }
    }

    /// Only browsers send these; SDKs, the CLI and curl send neither.
    fn sent_by_browser(&self) -> bool {
        self.origin.is_some() || self.sec_fetch_site.is_some()
    }

    /// The `Host` if it is not one of the emulator's names (a rebinding attempt).
    fn foreign_host(&self, access: &Access) -> Option<&'a str> {
        let host = self.host?;
        match Authority::of_host_header(host) {
            Some(a) if access.host_allowed(&a.host) => None,
            _ => Some(host),
        }
    }

    /// The `Origin` if it is not one of the emulator's own pages.
    fn foreign_origin(&self, access: &Access) -> Option<&'a str> {
        let origin = self.origin?;
        let host = self.host.and_then(Authority::of_host_header);
        (!access.own_origin(origin, host.as_ref())).then_some(origin)
    }

    /// Why this request counts as sent by another site, if it does.
    fn cross_site(&self, access: &Access) -> Option<String> {
        if let Some(o) = self.foreign_origin(access) {
            return Some(format!("Origin: {o}"));
        }
        match self.sec_fetch_site {
            Some("cross-site") => Some("Sec-Fetch-Site: cross-site".into()),
            // Same site but no own Origin: another port or subdomain of localhost.
            Some("same-site") if self.origin.is_none() => Some("Sec-Fetch-Site: same-site".into()),
            _ => None,
        }
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether `path` belongs to the management surface.
fn is_management(path: &str) -> bool {
    path.starts_with("/_cryopod") || path.starts_with("/_localstack")
}

fn host_refused(host: &str) -> String {
    format!(
        "Host `{host}` is not a name of this emulator (a web page may be trying DNS rebinding); \
         use localhost or 127.0.0.1, or add the name to CRYOPOD_ALLOWED_HOSTS (--allowed-hosts)"
    )
}

/// The middleware in front of the whole router: checks requests for the management
/// surface (see the module docs) and lets every other path through to the gateway.
pub(super) async fn management(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if !is_management(req.uri().path()) {
        return next.run(req).await;
    }
    let seen = Provenance::of(req.headers(), req.uri());
    let refusal = if let Some(host) = seen.foreign_host(&app.access) {
        Some(host_refused(host))
    } else if let Some(o) = seen.foreign_origin(&app.access) {
        Some(format!(
            "a request from another web site (Origin: {o}) is refused; the internal API answers \
             only the emulator's own pages and clients that send no Origin (the cryopod CLI, curl)"
        ))
    } else if !is_safe(req.method())
        && let Some(why) = seen.cross_site(&app.access)
    {
        Some(format!(
            "a {} from another web site ({why}) is refused: it could change or wipe the emulator's state; \
             use the cryopod CLI or curl, which send no Origin",
            req.method()
        ))
    } else {
        None
    };
    let mut resp = match refusal {
        Some(message) => {
            tracing::warn!(path = %req.uri().path(), %message, "management request refused");
            ApiError::new(StatusCode::FORBIDDEN, "Forbidden", message).into_response()
        }
        None => next.run(req).await,
    };
    forbid_framing(resp.headers_mut());
    resp
}

/// Pages of the emulator must not be framed by another site (clickjacking the launchpad's
/// Load button).
fn forbid_framing(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// Where the gateway leaves the CORS headers a service granted, for [`GrantSlot::apply`]
/// to add to the response once the service answered.
#[derive(Clone, Default)]
pub(super) struct GrantSlot(Arc<Mutex<Option<HeaderMap>>>);

impl GrantSlot {
    /// Adds the granted headers (if any) to `resp`.
    pub(super) fn apply(&self, mut resp: Response<Body>) -> Response<Body> {
        if let Some(grant) = self.0.lock().take() {
            for (k, v) in &grant {
                resp.headers_mut().insert(k.clone(), v.clone());
            }
        }
        resp
    }
}

/// The gateway's answer to the guard for an AWS request.
pub(super) enum Gate {
    /// Serve it.
    Pass,
    /// Refuse it, in the protocol's error shape.
    Refuse(AwsError),
    /// Answer this without serving it (a preflight).
    Answer(Response<Body>),
}

/// Decides an AWS request routed to `service` (see the module docs).
pub(super) fn aws_gate(app: &App, req: &http::Request<Body>, service: &dyn Service) -> Gate {
    let seen = Provenance::of(req.headers(), req.uri());
    if !seen.sent_by_browser() {
        return Gate::Pass;
    }
    let refuse = |message: String| {
        tracing::warn!(service = service.service(), %message, "cross-site AWS request refused");
        Gate::Refuse(AwsError::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            message,
        ))
    };
    if let Some(host) = seen.foreign_host(&app.access) {
        return refuse(host_refused(host));
    }
    if seen.cross_site(&app.access).is_none() {
        return Gate::Pass;
    }
    match service.cross_origin(req, seen.foreign_origin(&app.access)) {
        CrossOrigin::Allow(grant) => {
            if let Some(slot) = req.extensions().get::<GrantSlot>() {
                *slot.0.lock() = Some(grant);
            }
            Gate::Pass
        }
        CrossOrigin::Answer(resp) => Gate::Answer(resp),
        CrossOrigin::Refuse(message) => refuse(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        Access::new(
            "127.0.0.1:4566".parse().unwrap(),
            &["cryopod.internal".into(), "*.dev.example".into()],
        )
        .unwrap()
    }

    #[test]
    fn loopback_names_the_listen_address_and_configured_names_are_the_emulators() {
        let a = access();
        for ok in [
            "localhost",
            "LOCALHOST",
            "bucket.localhost",
            "localhost.localstack.cloud",
            "s3.localhost.localstack.cloud",
            "127.0.0.1",
            "127.8.9.1",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "cryopod.internal",
            "bucket.dev.example",
        ] {
            assert!(a.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "localhost.evil.example",
            "evillocalhost",
            "dev.example",
            "10.0.0.1",
            "[::2]",
            "cryopod.internal.evil.example",
        ] {
            assert!(!a.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn an_origin_is_own_only_with_an_allowed_host_and_the_emulators_port() {
        let a = access();
        assert!(a.own_origin("http://127.0.0.1:4566", None));
        assert!(a.own_origin("http://localhost:4566", None));
        assert!(!a.own_origin("http://localhost:3000", None));
        assert!(!a.own_origin("http://evil.example:4566", None));
        assert!(!a.own_origin("null", None));
        assert!(!a.own_origin("file://", None));
        let proxy = Authority::of_host_header("cryopod.internal:443");
        assert!(a.own_origin("https://cryopod.internal", proxy.as_ref()));
    }

    #[test]
    fn bad_allowed_hosts_are_refused_with_their_text() {
        for bad in ["http://x", "x:80", "a b", "*."] {
            let e = Access::new("127.0.0.1:4566".parse().unwrap(), &[bad.into()]).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
