//! Pods, remotes and the launchpad in LocalStack's shapes, over cryopod's pod store
//! ([`crate::pods::Pods`]) and launchpad ([`crate::pods::launch`]).
//!
//! LocalStack keeps pods on its platform unless a remote is named; cryopod has no platform,
//! so "no remote" means the local pod store (`DATA_DIR/pods`), and every answer's `log`
//! line says so. Save and load answer NDJSON events (`log`, `service`, `completion`), as
//! LocalStack's CLI, SDK and lstk read them; an unknown pod is a 404, a pod this build
//! cannot read a 422, and other failures a `completion` event with `status: error`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    AppState, Refusal, error, from_api, json_body, known_keys, merge_of, ndjson, no_input, refusal,
    refuse,
};
use crate::pods::{LoadOptions, PodError, PodRef, ProgressFn, SaveOptions};
use crate::server::{ApiError, App};

/// LocalStack's header for a pod's encryption passphrase.
const SECRET_HEADER: &str = "x-localstack-state-secret";

pub(super) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/pods/environment", get(environment))
        .route("/pods/remotes", get(remotes))
        .route(
            "/pods/remotes/{name}",
            get(remote).post(add_remote).delete(remove_remote),
        )
        .route("/pods/launchpad/fetch", post(launchpad_fetch))
        .route("/pods/launchpad/metadata", get(launchpad_metadata))
        .route("/pods/launchpad/inject", post(launchpad_inject))
        .route("/pods/{name}", post(save).put(load).delete(delete))
        .route("/pods/{name}/versions", get(versions))
        .route("/pods/{name}/diff", get(diff))
}

#[derive(Deserialize, Default)]
pub(super) struct PodQuery {
    version: Option<String>,
    merge: Option<String>,
    url: Option<String>,
}

fn secret(headers: &HeaderMap) -> Option<String> {
    crate::server::pods_api::secret_in(headers, SECRET_HEADER)
}

/// The remote a LocalStack request body names, as a cryopod remote name (`None`: the local
/// store), plus `log` lines about what cryopod does differently.
///
/// Bodies: `{}` (the platform), `{"remote": "name"}` (the spec), `{"remote": {"remote_name",
/// "remote_params"}}` (the clients). `remote_params` carry credentials for the URL
/// template; cryopod opens remotes with the emulator's own credentials, so they are not
/// used, and a `log` line says so.
fn remote_of(body: &Map<String, Value>) -> Result<(Option<String>, Vec<String>), Refusal> {
    known_keys(body, &["remote", "attributes"])?;
    let mut notes = Vec::new();
    let name = match body.get("remote") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(r)) => {
            if r.get("remote_params")
                .and_then(Value::as_object)
                .is_some_and(|p| !p.is_empty())
            {
                notes.push(
                    "remote_params are not used: cryopod signs requests to S3 remotes with the emulator's AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and to OCI registries with CRYOPOD_REGISTRY_USERNAME/PASSWORD".to_string(),
                );
            }
            match r.get("remote_name") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        "`remote.remote_name` must be a string",
                    ));
                }
            }
        }
        Some(_) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "`remote` must be a remote name or {\"remote_name\", \"remote_params\"}",
            ));
        }
    };
    let name = name.filter(|n| !n.trim().is_empty() && n != "platform" && n != "default");
    if name.is_none() {
        notes.push(
            "no remote named: cryopod has no LocalStack platform, the pod is kept in the emulator's local pod store (DATA_DIR/pods)".to_string(),
        );
    }
    Ok((name, notes))
}

/// The remote named by a request whose body is only a `RemoteConfig` (list, versions,
/// delete).
async fn remote_body(req: Request) -> Result<Option<String>, Refusal> {
    let body = json_body(req.into_body()).await?;
    Ok(remote_of(&body)?.0)
}

fn log_line(message: &str) -> Value {
    json!({ "event": "log", "message": message })
}

/// Progress of a pod operation as `log` lines, one per phase.
fn progress_log() -> (ProgressFn, Arc<parking_lot::Mutex<Vec<String>>>) {
    let phases = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let sink = phases.clone();
    let progress: ProgressFn = Arc::new(move |p| {
        let mut v = sink.lock();
        if v.last() != Some(&p.phase) {
            v.push(p.phase.clone());
        }
    });
    (progress, phases)
}

/// The answer to a failed save or load: 404 for a pod that is not there, 422 for one this
/// build cannot read, 400 for a bad request, otherwise a `completion` event with
/// `status: error` (HTTP 200, as LocalStack streams it).
fn failed(operation: &str, name: &str, e: PodError, mut lines: Vec<Value>) -> Response {
    let api = ApiError::from(e);
    match (api.status, api.code) {
        (StatusCode::NOT_FOUND, _)
        | (StatusCode::UNPROCESSABLE_ENTITY, _)
        | (_, "UnsupportedStateVersion") => from_api(api),
        (StatusCode::BAD_REQUEST, code) if code != "CorruptBundle" => from_api(api),
        _ => {
            tracing::warn!(pod = name, operation, error = %api.message, "LocalStack pod operation failed");
            lines.push(json!({
                "event": "completion",
                "status": "error",
                "operation": operation,
                "message": api.message,
                "info": { "name": name },
            }));
            ndjson(StatusCode::OK, &lines)
        }
    }
}

/// `POST /_localstack/pods/{name}`: saves the next version. Body `PodSaveRequest`
/// (`attributes.description` is the message, `attributes.services` narrows it).
async fn save(
    State(app): AppState,
    Path(name): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let body = match json_body(req.into_body()).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let (remote, notes) = match remote_of(&body) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let attributes = body.get("attributes").and_then(Value::as_object);
    let message = attributes
        .and_then(|a| a.get("description"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let services = match attributes.and_then(|a| a.get("services")) {
        None | Some(Value::Null) => None,
        Some(Value::Array(v)) => {
            let list: Option<Vec<String>> =
                v.iter().map(|s| s.as_str().map(str::to_string)).collect();
            match list {
                Some(l) if !l.is_empty() => Some(l),
                Some(_) => None,
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "`attributes.services` must be a list of service names",
                    );
                }
            }
        }
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "`attributes.services` must be a list of service names",
            );
        }
    };
    let mut lines: Vec<Value> = notes.iter().map(|n| log_line(n)).collect();
    if attributes
        .and_then(|a| a.get("is_public"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        lines.push(log_line(
            "is_public is not supported: a cryopod pod is as visible as the store it is in",
        ));
    }
    let prepared = async {
        api_loaded(&app).await?;
        app.runtime.select(services.as_deref())?;
        Ok::<_, ApiError>(())
    }
    .await;
    if let Err(e) = prepared {
        return from_api(e);
    }
    let (progress, phases) = progress_log();
    let opts = SaveOptions {
        services,
        message,
        secret: secret(&headers),
        remote: remote.clone(),
        progress: Some(progress),
    };
    let result = app.pods.save(&app.runtime, &name, opts).await;
    lines.extend(phases.lock().iter().map(|p| log_line(p)));
    match result {
        Ok(report) => {
            lines.extend(report.services.iter().map(|s| {
                json!({ "event": "service", "service": s, "status": "ok", "operation": "save" })
            }));
            lines.push(json!({
                "event": "completion",
                "status": "ok",
                "operation": "save",
                "info": {
                    "name": report.name,
                    "version": report.version,
                    "services": report.services,
                    "size": report.bytes_total,
                    "remote": remote,
                    "encrypted": report.encrypted,
                    "localstack_version": env!("CARGO_PKG_VERSION"),
                    "location": report.location,
                },
            }));
            ndjson(StatusCode::OK, &lines)
        }
        Err(e) => failed("save", &name, e, lines),
    }
}

async fn api_loaded(app: &App) -> Result<(), ApiError> {
    crate::server::api::loaded(app).await
}

/// The pod a request names: `{name}` and `?version=` (a positive number, as LocalStack's).
fn pod_ref(name: &str, version: Option<&str>) -> Result<PodRef, Refusal> {
    crate::pods::validate_name(name).map_err(|e| refusal(e.into()))?;
    let version = match version.map(str::trim).filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    format!("`{v}` is not a pod version (versions are 1, 2, 3, …)"),
                ));
            }
        },
    };
    Ok(PodRef {
        name: name.to_string(),
        version,
    })
}

/// Reads what a load (or its dry run) needs from the request: the pod, the merge strategy,
/// the remote; and loads whatever persistence still has pending.
async fn load_request(
    app: &App,
    name: &str,
    q: &PodQuery,
    req: Request,
) -> Result<
    (
        PodRef,
        crate::state::MergeStrategy,
        Option<String>,
        Vec<String>,
    ),
    Refusal,
> {
    let body = json_body(req.into_body()).await?;
    let (remote, notes) = remote_of(&body)?;
    let pod = pod_ref(name, q.version.as_deref())?;
    let merge = merge_of(q.merge.as_deref()).map_err(refusal)?;
    // Services still waiting for a lazy load would be compared or merged empty.
    api_loaded(app).await.map_err(refusal)?;
    Ok((pod, merge, remote, notes))
}

/// `PUT /_localstack/pods/{name}?version=&merge=`: loads a version (default: the newest),
/// all or nothing.
async fn load(
    State(app): AppState,
    Path(name): Path<String>,
    Query(q): Query<PodQuery>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let (pod, merge, remote, notes) = match load_request(&app, &name, &q, req).await {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let mut lines: Vec<Value> = notes.iter().map(|n| log_line(n)).collect();
    let (progress, phases) = progress_log();
    let opts = LoadOptions {
        remote: remote.clone(),
        merge,
        secret: secret(&headers),
        dry_run: false,
        services: None,
        progress: Some(progress),
    };
    let result = app.pods.load(&app.runtime, &pod, opts).await;
    lines.extend(phases.lock().iter().map(|p| log_line(p)));
    match result {
        Ok(report) => {
            let loaded: Vec<String> = report
                .applied
                .as_ref()
                .map(|a| a.loaded.keys().cloned().collect())
                .unwrap_or_default();
            lines.extend(loaded.iter().map(|s| {
                json!({ "event": "service", "service": s, "status": "ok", "operation": "load" })
            }));
            lines.extend(report.skipped.iter().map(|s| {
                json!({
                    "event": "service",
                    "service": s.service,
                    "status": "error",
                    "operation": "load",
                    "message": format!("not loaded: {:?}", s.reason),
                })
            }));
            lines.push(json!({
                "event": "completion",
                "status": "ok",
                "operation": "load",
                "info": {
                    "name": report.name,
                    "version": report.version,
                    "services": loaded,
                    "remote": remote,
                    "merge": report.merge,
                    "location": report.location,
                },
            }));
            ndjson(StatusCode::OK, &lines)
        }
        Err(e) => failed("load", &name, e, lines),
    }
}

/// `GET /_localstack/pods/{name}/diff?version=`: what a load would add or modify, as
/// `{service: [{"operation_type": "ADDITION"|"MODIFICATION", …}]}`. LocalStack never
/// reports deletions there; cryopod's own dry run (`cryopod pod load --dry-run`) does.
async fn diff(
    State(app): AppState,
    Path(name): Path<String>,
    Query(q): Query<PodQuery>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let (pod, merge, remote, _) = match load_request(&app, &name, &q, req).await {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let opts = LoadOptions {
        remote,
        merge,
        secret: secret(&headers),
        dry_run: true,
        services: None,
        progress: None,
    };
    let report = match app.pods.load(&app.runtime, &pod, opts).await {
        Ok(r) => r,
        Err(e) => return from_api(e.into()),
    };
    let mut out = Map::new();
    for (service, d) in report.diff.map(|d| d.services).unwrap_or_default() {
        let mut ops = Vec::new();
        for scope in &d.scopes {
            for (kind, c) in &scope.collections {
                for (op, ids) in [("ADDITION", &c.added), ("MODIFICATION", &c.modified)] {
                    ops.extend(ids.iter().map(|id| {
                        json!({
                            "operation_type": op,
                            "resource_type": kind,
                            "resource_id": id,
                            "account_id": scope.account,
                            "region": scope.region,
                        })
                    }));
                }
            }
        }
        if !ops.is_empty() {
            out.insert(service, Value::Array(ops));
        }
    }
    axum::Json(Value::Object(out)).into_response()
}

/// `DELETE /_localstack/pods/{name}`: every version, as LocalStack's.
async fn delete(State(app): AppState, Path(name): Path<String>, req: Request) -> Response {
    let remote = match remote_body(req).await {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let pod = match pod_ref(&name, None) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    match app.pods.delete(&pod, remote.as_deref()).await {
        Ok(r) => {
            axum::Json(json!({ "name": r.name, "deleted_versions": r.deleted })).into_response()
        }
        Err(e) => from_api(e.into()),
    }
}

/// Seconds since the epoch of an RFC 3339 time (`null` if it does not parse).
fn epoch(rfc3339: &str) -> Value {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map(|t| json!(t.unix_timestamp()))
        .unwrap_or(Value::Null)
}

/// `GET /_localstack/pods`: `PodList` (`{cloudpods: [{pod_name, max_version, last_change}]}`).
pub(super) async fn list(State(app): AppState, req: Request) -> Response {
    let remote = match remote_body(req).await {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    match app.pods.list(remote.as_deref()).await {
        Ok(pods) => {
            let cloudpods: Vec<Value> = pods
                .iter()
                .map(|p| {
                    json!({
                        "pod_name": p.name,
                        "max_version": p.latest,
                        "last_change": epoch(&p.created_at),
                    })
                })
                .collect();
            axum::Json(json!({ "cloudpods": cloudpods })).into_response()
        }
        Err(e) => from_api(e.into()),
    }
}

/// `GET /_localstack/pods/{name}/versions`: `PodVersions`, 404 for an unknown pod.
async fn versions(State(app): AppState, Path(name): Path<String>, req: Request) -> Response {
    let remote = match remote_body(req).await {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let result = async {
        let entries = app.pods.versions(&name, remote.as_deref()).await?;
        let mut out = Vec::new();
        for e in entries {
            let pod = PodRef {
                name: name.clone(),
                version: Some(e.version),
            };
            let inspection = app.pods.inspect(&pod, remote.as_deref()).await?;
            out.push(json!({
                "version": e.version,
                "created_at": epoch(&e.created_at),
                "deleted": null,
                "description": e.message,
                "localstack_version": inspection.metadata.producer,
                "services": inspection.metadata.services.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
                "storage_size": inspection.stored_bytes,
                "user": null,
                "user_id": null,
            }));
        }
        let location = app
            .pods
            .resolve(remote.as_deref())?
            .location()
            .to_string();
        Ok::<_, PodError>(json!({ "remote_url": location, "versions": out }))
    }
    .await;
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => from_api(e.into()),
    }
}

/// `GET /_localstack/pods/environment`: the versions a pod's metadata records. Every
/// LocalStack version field carries cryopod's version, and `pro` is false.
async fn environment() -> axum::Json<Value> {
    let v = env!("CARGO_PKG_VERSION");
    axum::Json(json!({
        "localstack_version": v,
        "localstack_ext_version": v,
        "moto_ext_version": v,
        "pro": false,
        "emulator": "cryopod",
    }))
}

/// A LocalStack remote as `PodRemote`.
fn remote_json(name: &str, url: &str) -> Value {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    json!({ "name": name, "protocols": [scheme], "url": url, "token": {} })
}

async fn remotes(State(app): AppState) -> Response {
    match app.pods.remotes() {
        Ok(all) => {
            let list: Vec<Value> = all.iter().map(|(n, u)| remote_json(n, u)).collect();
            axum::Json(json!({ "remotes": list })).into_response()
        }
        Err(e) => from_api(e.into()),
    }
}

async fn remote(State(app): AppState, Path(name): Path<String>) -> Response {
    match app.pods.remotes() {
        Ok(all) => match all.get(&name) {
            Some(url) => axum::Json(remote_json(&name, url)).into_response(),
            None => error(StatusCode::NOT_FOUND, format!("no remote named `{name}`")),
        },
        Err(e) => from_api(e.into()),
    }
}

/// `POST /_localstack/pods/remotes/{name}` with `{"remote_url", "protocols"}`: the URL is
/// translated to cryopod's form ([`translate_remote_url`]) and stored without credentials.
async fn add_remote(State(app): AppState, Path(name): Path<String>, req: Request) -> Response {
    let body = match json_body(req.into_body()).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let Some(url) = body.get("remote_url").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected {\"remote_url\": \"s3://bucket/prefix\" | \"oras://host/namespace\" | \"oci://…\" | \"file:///…\"}",
        );
    };
    let translated = match translate_remote_url(url) {
        Ok(u) => u,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    match app.pods.add_remote(&name, &translated).await {
        Ok(()) => axum::Json(remote_json(&name, &translated)).into_response(),
        Err(e) => from_api(e.into()),
    }
}

async fn remove_remote(State(app): AppState, Path(name): Path<String>) -> Response {
    match app.pods.remove_remote(&name).await {
        Ok(()) => axum::Json(json!({ "removed": name })).into_response(),
        Err(PodError::UnknownRemote { .. }) => {
            error(StatusCode::NOT_FOUND, format!("no remote named `{name}`"))
        }
        Err(e) => from_api(e.into()),
    }
}

/// LocalStack's remote URL templates in cryopod's form:
/// - `oras://[{oras_username}:{oras_password}@]host/namespace` → `oci://host/namespace`;
/// - `s3://bucket/prefix?access_key_id={access_key_id}&secret_access_key=…` →
///   `s3://bucket/prefix` (placeholder parameters dropped; credentials come from the
///   emulator's environment);
/// - `platform://…` is refused: cryopod has no platform (no remote means the local store).
///
/// A literal credential (anything but a `{placeholder}`) is refused, never stored.
fn translate_remote_url(url: &str) -> Result<String, String> {
    let is_placeholder = |v: &str| v.starts_with('{') && v.ends_with('}');
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not a URL"))?;
    let refuse_credentials = || {
        format!(
            "`{url}` holds credentials; cryopod never stores them: use {{placeholders}} or leave them out"
        )
    };
    match scheme.to_ascii_lowercase().as_str() {
        "platform" => Err(
            "cryopod has no LocalStack platform: pods saved without a remote go to the local pod store"
                .into(),
        ),
        "oras" => {
            let rest = match rest.split_once('@') {
                Some((userinfo, host)) if !userinfo.contains('/') => {
                    if !userinfo.split(':').all(is_placeholder) {
                        return Err(refuse_credentials());
                    }
                    host
                }
                _ => rest,
            };
            Ok(format!("oci://{rest}"))
        }
        "s3" => {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            let mut kept = form_urlencoded::Serializer::new(String::new());
            let mut any = false;
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                match k.as_ref() {
                    "access_key_id" | "secret_access_key" | "session_token" => {
                        if !is_placeholder(&v) {
                            return Err(refuse_credentials());
                        }
                    }
                    _ => {
                        kept.append_pair(&k, &v);
                        any = true;
                    }
                }
            }
            Ok(if any {
                format!("s3://{path}?{}", kept.finish())
            } else {
                format!("s3://{path}")
            })
        }
        _ => Ok(url.to_string()),
    }
}

/// Launchpad requests that fetch a URL must come from the user, not from a page in their
/// browser: a GET is not covered by the management guard's cross-site check, so this one
/// refuses any request a browser marks as coming from another site.
fn refuse_cross_site(headers: &HeaderMap) -> Option<Response> {
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())?;
    (site != "same-origin" && site != "none").then(|| {
        error(
            StatusCode::FORBIDDEN,
            format!("a launchpad fetch must not come from another site (Sec-Fetch-Site: {site})"),
        )
    })
}

fn launch_url(q: &PodQuery) -> Result<String, Refusal> {
    q.url.clone().filter(|u| !u.is_empty()).ok_or_else(|| {
        refuse(
            StatusCode::BAD_REQUEST,
            "Missing url as a query string parameter",
        )
    })
}

/// `POST /_localstack/pods/launchpad/fetch?url=`: checks that the URL is reachable and holds
/// a bundle or pod (with the launchpad's URL restrictions). cryopod keeps no download cache,
/// so the answer is the single progress line `1.0`.
async fn launchpad_fetch(
    State(app): AppState,
    Query(q): Query<PodQuery>,
    req: Request,
) -> Response {
    if let Err(r) = no_input(req.into_body(), &[]).await {
        return r.into_response();
    }
    let url = match launch_url(&q) {
        Ok(u) => u,
        Err(r) => return r.into_response(),
    };
    let guard = crate::pods::launch::Guard::new(&app.listen);
    match crate::pods::launch::describe(&url, &guard).await {
        Ok(_) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            "1.0\n",
        )
            .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Can't reach the specified URL: {e}"),
        ),
    }
}

/// `GET /_localstack/pods/launchpad/metadata?url=`: what the URL holds (services, version,
/// message, sizes), as the launchpad's describe gives it.
async fn launchpad_metadata(
    State(app): AppState,
    Query(q): Query<PodQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refuse_cross_site(&headers) {
        return r.into_response();
    }
    let url = match launch_url(&q) {
        Ok(u) => u,
        Err(r) => return r.into_response(),
    };
    let guard = crate::pods::launch::Guard::new(&app.listen);
    match crate::pods::launch::describe(&url, &guard).await {
        Ok(info) => axum::Json(json!(info)).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /_localstack/pods/launchpad/inject?url=&merge=`: fetches and loads it.
async fn launchpad_inject(
    State(app): AppState,
    Query(q): Query<PodQuery>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    if let Err(r) = no_input(req.into_body(), &[]).await {
        return r.into_response();
    }
    let url = match launch_url(&q) {
        Ok(u) => u,
        Err(r) => return r.into_response(),
    };
    let merge = match merge_of(q.merge.as_deref()) {
        Ok(m) => m,
        Err(e) => return from_api(e),
    };
    if let Err(e) = api_loaded(&app).await {
        return from_api(e);
    }
    let guard = crate::pods::launch::Guard::new(&app.listen);
    match crate::pods::launch::launch(&app.runtime, &url, merge, secret(&headers), &guard).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localstack_remote_urls_become_cryopod_urls_without_credentials() {
        assert_eq!(
            translate_remote_url(
                "s3://pods/team?access_key_id={access_key_id}&secret_access_key={secret_access_key}&session_token={session_token}"
            ),
            Ok("s3://pods/team".to_string())
        );
        assert_eq!(
            translate_remote_url("s3://pods?region=eu-west-1&access_key_id={access_key_id}"),
            Ok("s3://pods?region=eu-west-1".to_string())
        );
        assert_eq!(
            translate_remote_url("oras://{oras_username}:{oras_password}@registry.example/ns"),
            Ok("oci://registry.example/ns".to_string())
        );
        assert!(translate_remote_url("s3://pods?access_key_id=AKIAREAL").is_err());
        assert!(translate_remote_url("oras://me:hunter2@registry.example/ns").is_err());
        assert!(translate_remote_url("platform://default").is_err());
    }

    #[test]
    fn no_remote_means_the_local_store_and_says_so() {
        let (name, notes) = remote_of(&Map::new()).unwrap();
        assert_eq!(name, None);
        assert!(notes[0].contains("local pod store"));
        let body =
            json!({"remote": {"remote_name": "team", "remote_params": {"access_key_id": "x"}}});
        let (name, notes) = remote_of(body.as_object().unwrap()).unwrap();
        assert_eq!(name.as_deref(), Some("team"));
        assert!(notes[0].contains("not used"));
        assert!(remote_of(json!({"remote": 3}).as_object().unwrap()).is_err());
    }
}
