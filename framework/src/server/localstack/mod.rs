//! LocalStack's management API under `/_localstack/`: a second face of the same runtime, pod
//! store and persistence that `/_cryopod/` drives, so LocalStack's own tools (its Python SDK,
//! the `lstk` and `localstack` CLIs, health checks in CI scripts, Testcontainers) work
//! against cryopod unchanged.
//!
//! Every handler here translates LocalStack's request and answer shapes (documented in
//! `../shared/localstack-api.md`) and calls the functions behind `/_cryopod/`; none of the
//! state logic is repeated. What LocalStack offers and cryopod lacks (a platform, pickled
//! pods, init scripts) gets an answer that says so, never a silent success.
//!
//! | route | does |
//! | --- | --- |
//! | `GET\|HEAD /health`, `GET /info`, `GET /init[/{stage}]` | status documents |
//! | `GET /pods/state?services=&pod_name=`, `POST /pods?merge=` | export, import ([`state`]) |
//! | `POST\|PUT\|DELETE /pods/{name}`, `GET /pods`, `/pods/{name}/versions`, `/pods/{name}/diff` | pods ([`pods`]) |
//! | `/pods/remotes[/{name}]`, `/pods/environment`, `/pods/launchpad/…` | remotes, versions, launchpad |
//! | `POST /state/reset`, `/state/save`, `/state/load` (and per service) | reset, persistence |

mod pods;
pub mod settings;
mod state;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};

use super::{ApiError, App};

type AppState = State<Arc<App>>;

/// The edition `/_localstack/health` reports: cryopod is free software with every feature,
/// and `community` is the word LocalStack's clients know for that.
const EDITION: &str = "community";

/// Bytes a JSON request body may have (pod save attributes, a remote config): far above any
/// real one, small enough that a hostile body costs nothing.
const JSON_BODY_LIMIT: usize = 64 << 10;

/// When the management API first answered, for `uptime` in `/_localstack/info`.
fn started() -> Instant {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

/// One id per emulator process, as LocalStack's `session_id`.
fn session_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().to_string())
}

pub(super) fn router() -> Router<Arc<App>> {
    let _ = started();
    Router::new()
        .route(
            "/health",
            get(health).post(health_action).put(health_action),
        )
        .route("/info", get(info))
        .route("/init", get(init))
        .route("/init/{stage}", get(init_stage))
        .route("/state/{op}", post(state::state_all))
        .route("/state/{service}/{op}", post(state::state_one))
        .route("/pods", get(pods::list).post(state::import))
        .route("/pods/state", get(state::export))
        .route("/pods/state/metamodel", get(state::metamodel))
        .merge(pods::router())
        .fallback(not_found)
}

/// `GET|HEAD /_localstack/health`: what scripts and Testcontainers wait on. It answers as
/// soon as the emulator accepts connections, which is when it is ready.
async fn health(State(app): AppState) -> axum::Json<Value> {
    let services: serde_json::Map<String, Value> = app
        .runtime
        .service_names()
        .iter()
        .map(|s| (s.to_string(), json!("running")))
        .collect();
    let persistence = if app.hooks.is_some() {
        "enabled"
    } else {
        "disabled"
    };
    axum::Json(json!({
        "edition": EDITION,
        "version": env!("CARGO_PKG_VERSION"),
        "services": services,
        "features": { "persistence": persistence, "initScripts": "initialized" },
        "emulator": "cryopod",
    }))
}

/// `POST|PUT /_localstack/health`: LocalStack restarts, kills or records data here; cryopod
/// does none of that over HTTP, and says so.
async fn health_action() -> Response {
    error(
        StatusCode::NOT_IMPLEMENTED,
        "cryopod does not restart, stop or annotate itself over HTTP; stop it with Ctrl-C or SIGTERM",
    )
}

/// `GET /_localstack/info`: LocalStack's session info.
async fn info() -> axum::Json<Value> {
    let now = time::OffsetDateTime::now_utc();
    let utc = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "edition": EDITION,
        "is_license_activated": false,
        "session_id": session_id(),
        "machine_id": format!("cryopod-{}", std::process::id()),
        "system": std::env::consts::OS,
        "is_docker": false,
        "server_time_utc": utc,
        "uptime": started().elapsed().as_secs(),
    }))
}

/// LocalStack's init stages, all completed: cryopod runs no init scripts, so there is
/// never one pending.
const STAGES: [&str; 4] = ["BOOT", "START", "READY", "SHUTDOWN"];

async fn init() -> axum::Json<Value> {
    let completed: serde_json::Map<String, Value> = STAGES
        .iter()
        .map(|s| (s.to_string(), json!(*s != "SHUTDOWN")))
        .collect();
    axum::Json(json!({ "completed": completed, "scripts": [] }))
}

async fn init_stage(Path(stage): Path<String>) -> Response {
    let upper = stage.to_ascii_uppercase();
    if !STAGES.contains(&upper.as_str()) {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "unknown init stage `{stage}` (known: {})",
                STAGES.join(", ").to_ascii_lowercase()
            ),
        );
    }
    axum::Json(json!({ "completed": upper != "SHUTDOWN", "scripts": [] })).into_response()
}

async fn not_found(req: Request) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "cryopod has no LocalStack endpoint {} {} (supported: health, info, init, pods, state; see README \"Coming from LocalStack\")",
            req.method(),
            req.uri().path()
        ),
    )
}

/// A LocalStack-style error: JSON `{"error", "message"}` with `status`, except 422, which
/// LocalStack's spec answers as plain text.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        return (status, [(header::CONTENT_TYPE, "text/plain")], message).into_response();
    }
    let code = status.canonical_reason().unwrap_or("Error");
    (
        status,
        axum::Json(json!({ "error": code, "message": message })),
    )
        .into_response()
}

/// A request the LocalStack face refuses before doing anything: the status and message
/// of its answer ([`error`]).
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.status, self.message)
    }
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// The status LocalStack's clients expect for one of cryopod's API errors: 404 for an
/// unknown service or pod, 422 for a bundle this build cannot read, 400 with "invalid pod
/// file" (lstk's words for a bad file) for a corrupt one.
fn refusal(e: ApiError) -> Refusal {
    match e.code {
        "UnknownService" | "PodNotFound" | "PodVersionNotFound" => {
            refuse(StatusCode::NOT_FOUND, e.message)
        }
        "UnsupportedStateVersion" | "CorruptPod" => refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "The pod state is incompatible with this version of cryopod: {}",
                e.message
            ),
        ),
        "CorruptBundle" | "MissingBlob" => refuse(
            StatusCode::BAD_REQUEST,
            format!("invalid pod file: {}", e.message),
        ),
        _ => refuse(e.status, e.message),
    }
}

/// [`refusal`] as a response.
fn from_api(e: ApiError) -> Response {
    refusal(e).into_response()
}

/// An NDJSON answer, one JSON document per line.
fn ndjson(status: StatusCode, lines: &[Value]) -> Response {
    let mut body = Vec::new();
    for line in lines {
        if serde_json::to_writer(&mut body, line).is_ok() {
            body.push(b'\n');
        }
    }
    let mut resp = Response::new(Body::from(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

/// Reads a JSON request body of at most [`JSON_BODY_LIMIT`] bytes; an empty body is `{}`.
/// Anything else (too long, not JSON, not an object) is a 400 before anything changes.
async fn json_body(body: Body) -> Result<serde_json::Map<String, Value>, Refusal> {
    let bytes = axum::body::to_bytes(body, JSON_BODY_LIMIT)
        .await
        .map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "the request body is unreadable or longer than {JSON_BODY_LIMIT} bytes: {e}"
                ),
            )
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(refuse(
            StatusCode::BAD_REQUEST,
            "the request body must be a JSON object",
        )),
        Err(e) => Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("the request body is not JSON: {e}"),
        )),
    }
}

/// Reads the body of a route that takes (almost) no input: nothing, or a JSON object with
/// only `allowed` keys ([`known_keys`]).
async fn no_input(body: Body, allowed: &[&str]) -> Result<(), Refusal> {
    known_keys(&json_body(body).await?, allowed)
}

/// Refuses (400) a body with keys other than `allowed`: a client that meant another route
/// or another emulator, stopped before anything changes.
fn known_keys(map: &serde_json::Map<String, Value>, allowed: &[&str]) -> Result<(), Refusal> {
    let unknown: Vec<String> = map
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| format!("`{k}`"))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(refuse(
        StatusCode::BAD_REQUEST,
        format!(
            "unexpected {} in the request body (this endpoint takes {})",
            unknown.join(", "),
            if allowed.is_empty() {
                "no body".to_string()
            } else {
                allowed.join(", ")
            }
        ),
    ))
}

/// Splits a comma-separated list (`?services=s3,sqs`); `None` when absent or empty.
fn split_list(list: Option<&str>) -> Option<Vec<String>> {
    let v: Vec<String> = list?
        .split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect();
    (!v.is_empty()).then_some(v)
}

/// The merge strategy of a request: `?merge=` when given (LocalStack's names are cryopod's),
/// else `MERGE_STRATEGY`, else `account-region-merge`, as LocalStack's server does.
fn merge_of(given: Option<&str>) -> Result<crate::state::MergeStrategy, ApiError> {
    let name = given
        .map(str::to_string)
        .filter(|m| !m.trim().is_empty())
        .or_else(|| std::env::var("MERGE_STRATEGY").ok())
        .filter(|m| !m.trim().is_empty());
    match name {
        None => Ok(crate::state::MergeStrategy::default()),
        Some(m) => m.parse().map_err(|e: crate::state::UnknownMergeStrategy| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "UnknownMergeStrategy",
                e.to_string(),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_merge_names_follow_localstack() {
        assert_eq!(
            split_list(Some(" s3, sqs,,")),
            Some(vec!["s3".into(), "sqs".into()])
        );
        assert_eq!(split_list(Some("")), None);
        assert_eq!(split_list(None), None);
        for (name, want) in [
            ("overwrite", crate::state::MergeStrategy::Overwrite),
            (
                "account-region-merge",
                crate::state::MergeStrategy::AccountRegionMerge,
            ),
            ("service-merge", crate::state::MergeStrategy::ServiceMerge),
        ] {
            assert_eq!(merge_of(Some(name)).ok(), Some(want));
        }
        assert!(merge_of(Some("resource-merge")).is_err());
    }
}
