//! The pods part of the internal API, under `/_cryopod/pods`:
//!
//! | method and path | does |
//! | --- | --- |
//! | `GET /_cryopod/pods?remote=R` | list pods |
//! | `GET /_cryopod/pods/pod/{name}?version=V&remote=R` | inspect a version (default: latest) |
//! | `GET /_cryopod/pods/pod/{name}/versions?remote=R` | versions with messages |
//! | `POST /_cryopod/pods/pod/{name}/save?remote=&services=&message=` | save the next version |
//! | `POST /_cryopod/pods/pod/{name}/load?version=&remote=&merge=&services=&dry_run=true` | load, or diff |
//! | `DELETE /_cryopod/pods/pod/{name}?version=V&remote=R` | delete one version or all |
//! | `GET /_cryopod/pods/remotes` | configured remotes |
//! | `PUT /_cryopod/pods/remotes/{name}?url=U`, `DELETE …` | add or remove a remote |
//! | `POST /_cryopod/pods/launch?url=U&merge=M` | fetch a bundle or pod over HTTP(S) and load it |
//! | `GET /_cryopod/launchpad?url=U` | an HTML page showing the URL and a button; fetches nothing |
//! | `POST /_cryopod/launchpad` (form `url=U`) | fetches and describes it, with a Load button |
//!
//! The secret of an encrypted pod travels in the `X-Cryopod-Pod-Secret` header, never in the
//! URL. Save and load answer one JSON document, or, when the request accepts
//! `application/x-ndjson`, a stream of `{"progress": …}` lines ending with `{"result": …}`
//! or `{"error": …}` (the CLI draws progress bars from it).

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ApiError, App};
use crate::pods::{LoadOptions, PodError, PodRef, ProgressFn, SaveOptions};
use crate::state::MergeStrategy;

type AppState = State<Arc<App>>;

/// The header carrying a pod secret.
pub const SECRET_HEADER: &str = "x-cryopod-pod-secret";

pub(super) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(list))
        .route("/pod/{name}", get(inspect).delete(delete))
        .route("/pod/{name}/versions", get(versions))
        .route("/pod/{name}/save", post(save))
        .route("/pod/{name}/load", post(load))
        .route("/remotes", get(remotes))
        .route("/remotes/{name}", put(add_remote).delete(remove_remote))
        .route("/launch", post(launch))
}

impl From<PodError> for ApiError {
    fn from(e: PodError) -> Self {
        let (status, code) = match &e {
            PodError::InvalidName { .. } => (StatusCode::BAD_REQUEST, "InvalidPodName"),
            PodError::InvalidRef(_) => (StatusCode::BAD_REQUEST, "InvalidPodReference"),
            PodError::NotFound { .. } => (StatusCode::NOT_FOUND, "PodNotFound"),
            PodError::VersionNotFound { .. } => (StatusCode::NOT_FOUND, "PodVersionNotFound"),
            PodError::SecretRequired { .. } => (StatusCode::UNAUTHORIZED, "SecretRequired"),
            PodError::WrongSecret { .. } => (StatusCode::FORBIDDEN, "WrongSecret"),
            PodError::Remote { .. } => (StatusCode::BAD_GATEWAY, "RemoteFailed"),
            PodError::Corrupt { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "CorruptPod"),
            PodError::UnknownRemote { .. } => (StatusCode::BAD_REQUEST, "UnknownRemote"),
            PodError::InvalidUrl { .. } => (StatusCode::BAD_REQUEST, "InvalidRemoteUrl"),
            PodError::Launch(_) => (StatusCode::BAD_REQUEST, "LaunchRefused"),
            PodError::Runtime(_) => {
                let PodError::Runtime(inner) = e else {
                    unreachable!()
                };
                return ApiError::from(inner);
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

#[derive(Deserialize, Default)]
struct PodQuery {
    remote: Option<String>,
    version: Option<String>,
    services: Option<String>,
    message: Option<String>,
    merge: Option<String>,
    dry_run: Option<String>,
    url: Option<String>,
}

impl PodQuery {
    fn services(&self) -> Option<Vec<String>> {
        self.services.as_ref().map(|s| {
            s.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        })
    }

    fn merge(&self) -> Result<MergeStrategy, ApiError> {
        match &self.merge {
            None => Ok(MergeStrategy::default()),
            Some(m) => MergeStrategy::from_str(m).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "UnknownMergeStrategy",
                    e.to_string(),
                )
            }),
        }
    }

    fn pod(&self, name: &str) -> Result<PodRef, ApiError> {
        let text = match &self.version {
            Some(v) if !v.is_empty() => format!("{name}:{v}"),
            _ => name.to_string(),
        };
        Ok(text.parse::<PodRef>()?)
    }

    fn dry_run(&self) -> bool {
        matches!(self.dry_run.as_deref(), Some("1" | "true" | "yes" | ""))
    }
}

fn secret(headers: &HeaderMap) -> Option<String> {
    secret_in(headers, SECRET_HEADER)
}

/// A pod secret from the header `name` (cryopod's or LocalStack's), when it is set.
pub(super) fn secret_in(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

fn json_of<T: Serialize>(v: &T) -> Result<axum::Json<Value>, ApiError> {
    serde_json::to_value(v).map(axum::Json).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        )
    })
}

async fn loaded(app: &App) -> Result<(), ApiError> {
    match &app.hooks {
        Some(h) => h.ensure_loaded().await,
        None => Ok(()),
    }
}

/// Runs `op`, answering JSON, or an NDJSON progress stream when the client asks for one.
async fn respond<T, Fut>(
    headers: &HeaderMap,
    op: impl FnOnce(Option<ProgressFn>) -> Fut,
) -> Response
where
    T: Serialize + Send + 'static,
    Fut: Future<Output = Result<T, PodError>> + Send + 'static,
{
    let streaming = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/x-ndjson"));
    if !streaming {
        return match op(None).await {
            Ok(v) => match json_of(&v) {
                Ok(j) => j.into_response(),
                Err(e) => e.into_response(),
            },
            Err(e) => ApiError::from(e).into_response(),
        };
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let line = |v: Value| {
        let mut b = serde_json::to_vec(&v).unwrap_or_default();
        b.push(b'\n');
        Bytes::from(b)
    };
    let progress_tx = tx.clone();
    let progress: ProgressFn = Arc::new(move |p| {
        let _ = progress_tx.send(line(json!({ "progress": p })));
    });
    let fut = op(Some(progress));
    tokio::spawn(async move {
        let last = match fut.await {
            Ok(v) => json!({ "result": v }),
            Err(e) => {
                let a = ApiError::from(e);
                json!({ "error": { "code": a.code, "message": a.message, "status": a.status.as_u16() } })
            }
        };
        let _ = tx.send(line(last));
    });
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| o.map(Ok::<_, std::io::Error>))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
            .into_response()
        })
}

async fn list(
    State(app): AppState,
    Query(q): Query<PodQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let pods = app.pods.list(q.remote.as_deref()).await?;
    Ok(axum::Json(json!({ "pods": pods })))
}

async fn versions(
    State(app): AppState,
    Path(name): Path<String>,
    Query(q): Query<PodQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let v = app.pods.versions(&name, q.remote.as_deref()).await?;
    Ok(axum::Json(json!({ "name": name, "versions": v })))
}

async fn inspect(
    State(app): AppState,
    Path(name): Path<String>,
    Query(q): Query<PodQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let pod = q.pod(&name)?;
    json_of(&app.pods.inspect(&pod, q.remote.as_deref()).await?)
}

async fn delete(
    State(app): AppState,
    Path(name): Path<String>,
    Query(q): Query<PodQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let pod = q.pod(&name)?;
    json_of(&app.pods.delete(&pod, q.remote.as_deref()).await?)
}

async fn save(
    State(app): AppState,
    Path(name): Path<String>,
    Query(q): Query<PodQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = loaded(&app).await {
        return e.into_response();
    }
    if let Err(e) = app.runtime.select(q.services().as_deref()) {
        return ApiError::from(e).into_response();
    }
    let opts = SaveOptions {
        services: q.services(),
        message: q.message.clone().unwrap_or_default(),
        secret: secret(&headers),
        remote: q.remote.clone(),
        progress: None,
    };
    respond(&headers, move |progress| async move {
        app.pods
            .save(&app.runtime, &name, SaveOptions { progress, ..opts })
            .await
    })
    .await
}

async fn load(
    State(app): AppState,
    Path(name): Path<String>,
    Query(q): Query<PodQuery>,
    headers: HeaderMap,
) -> Response {
    let prepared = async {
        loaded(&app).await?;
        let merge = q.merge()?;
        let pod = q.pod(&name)?;
        Ok::<_, ApiError>((merge, pod))
    }
    .await;
    let (merge, pod) = match prepared {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let opts = LoadOptions {
        remote: q.remote.clone(),
        merge,
        secret: secret(&headers),
        dry_run: q.dry_run(),
        services: q.services(),
        progress: None,
    };
    respond(&headers, move |progress| async move {
        app.pods
            .load(&app.runtime, &pod, LoadOptions { progress, ..opts })
            .await
    })
    .await
}

async fn remotes(State(app): AppState) -> Result<axum::Json<Value>, ApiError> {
    let r = app.pods.remotes()?;
    Ok(axum::Json(json!({ "remotes": r })))
}

async fn add_remote(
    State(app): AppState,
    Path(name): Path<String>,
    Query(q): Query<PodQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let url = q.url.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "MissingUrl",
            "pass the remote's URL as ?url=",
        )
    })?;
    app.pods.add_remote(&name, &url).await?;
    Ok(axum::Json(json!({ "added": name, "url": url })))
}

async fn remove_remote(
    State(app): AppState,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    app.pods.remove_remote(&name).await?;
    Ok(axum::Json(json!({ "removed": name })))
}

fn launch_guard(app: &App) -> crate::pods::launch::Guard {
    crate::pods::launch::Guard::new(&app.listen)
}

async fn launch(
    State(app): AppState,
    Query(mut q): Query<PodQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The launchpad's form posts `merge` and `secret` as a urlencoded body.
    let mut form_secret = None;
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "merge" if !v.is_empty() => q.merge = Some(v.into_owned()),
            "secret" if !v.is_empty() => form_secret = Some(v.into_owned()),
            "url" if q.url.is_none() && !v.is_empty() => q.url = Some(v.into_owned()),
            _ => {}
        }
    }
    // A page on another site cannot get here: the management guard refuses cross-site
    // POSTs (`super::guard`).
    let html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let prepared = async {
        loaded(&app).await?;
        let merge = q.merge()?;
        let url = q.url.clone().ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "MissingUrl",
                "pass the URL to launch as ?url=",
            )
        })?;
        Ok::<_, ApiError>((merge, url))
    }
    .await;
    let (merge, url) = match prepared {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let guard = launch_guard(&app);
    let secret = secret(&headers).or(form_secret);
    let result = crate::pods::launch::launch(&app.runtime, &url, merge, secret, &guard).await;
    if html {
        let shown = crate::pods::launch::shown(&url);
        return Html(crate::pods::launch::result_page(&shown, &result)).into_response();
    }
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The routes of `/_cryopod/launchpad`.
pub(super) fn launchpad_route() -> axum::routing::MethodRouter<Arc<App>> {
    get(launchpad).post(launchpad_describe)
}

/// `GET /_cryopod/launchpad?url=U`: the URL (without credentials) and a button. Fetches
/// nothing: a link or an `<img>` on any page can make a browser send this GET, and a fetch
/// here would let every page make the emulator call any host.
async fn launchpad(Query(q): Query<PodQuery>) -> Response {
    let page = match q.url.as_deref() {
        Some(url) => crate::pods::launch::confirm_page(&crate::pods::launch::shown(url)),
        None => crate::pods::launch::page(None, None),
    };
    Html(page).into_response()
}

/// `POST /_cryopod/launchpad` (the button of the GET page, form field `url`, or `?url=`):
/// fetches the pod's or bundle's metadata and shows it with a Load button. Only the
/// emulator's own pages can post here (the management guard).
async fn launchpad_describe(
    State(app): AppState,
    Query(mut q): Query<PodQuery>,
    body: Bytes,
) -> Response {
    if let Some((_, v)) = form_urlencoded::parse(&body).find(|(k, _)| k == "url") {
        q.url = Some(v.into_owned());
    }
    let Some(url) = q.url.clone() else {
        return Html(crate::pods::launch::page(None, None)).into_response();
    };
    let url = crate::pods::launch::shown(&url);
    let guard = launch_guard(&app);
    let info = crate::pods::launch::describe(&url, &guard).await;
    let status = if info.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    (
        status,
        Html(crate::pods::launch::page(Some(&url), Some(&info))),
    )
        .into_response()
}
