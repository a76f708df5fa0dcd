//! The Lambda Runtime API (`/2018-06-01/runtime/...`), served to one execution environment
//! on its own loopback listener.
//!
//! Why one listener per environment: the API has no notion of which environment asks for
//! `/invocation/next`, so AWS gives each sandbox its own endpoint; doing the same keeps an
//! environment's invocations, responses and init errors apart without any bookkeeping, and
//! lets the standard runtime interface clients (`awslambdaric`, the Node RIC, a `provided`
//! bootstrap) run unmodified against `AWS_LAMBDA_RUNTIME_API`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Largest response or error body a function may return (AWS: 6 MB for synchronous invokes).
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// One invocation handed to the environment.
pub struct Job {
    /// `Lambda-Runtime-Aws-Request-Id`.
    pub id: String,
    /// The event, as the caller sent it.
    pub payload: Bytes,
    /// Milliseconds since the epoch at which the function times out.
    pub deadline_ms: u64,
    /// The ARN the caller invoked (qualified when it named a version or alias).
    pub arn: String,
    /// Told when the runtime has taken the invocation (init is over).
    pub picked: oneshot::Sender<()>,
    /// Receives the runtime's answer.
    pub reply: oneshot::Sender<Reply>,
}

/// What the runtime answered for an invocation.
#[derive(Debug)]
pub enum Reply {
    /// `/response`: the function's result.
    Ok(Bytes),
    /// `/error`, `/init/error` or a response over the limit: an error payload in AWS's shape.
    Err(Bytes),
}

/// The state the Runtime API handlers share with the invoker.
pub struct Mailbox {
    jobs: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    current: Mutex<Option<(String, oneshot::Sender<Reply>)>>,
    init_error: Mutex<Option<Bytes>>,
}

impl Mailbox {
    /// A mailbox reading invocations from `jobs`.
    pub fn new(jobs: mpsc::Receiver<Job>) -> Arc<Self> {
        Arc::new(Self {
            jobs: tokio::sync::Mutex::new(jobs),
            current: Mutex::new(None),
            init_error: Mutex::new(None),
        })
    }

    /// The error the runtime reported through `/init/error`, if any.
    pub fn init_error(&self) -> Option<Bytes> {
        self.init_error.lock().clone()
    }
}

/// Serves the Runtime API for `mailbox` on `listener` until `stop` is cancelled.
pub fn serve(listener: tokio::net::TcpListener, mailbox: Arc<Mailbox>, stop: CancellationToken) {
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(mailbox);
    tokio::spawn(async move {
        let shutdown = stop.clone();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await });
        // A long-polling `/next` never finishes by itself: stop waiting for it.
        tokio::select! {
            r = served => if let Err(e) = r {
                tracing::debug!(error = %e, "runtime API listener stopped");
            },
            () = async { stop.cancelled().await; tokio::time::sleep(std::time::Duration::from_millis(200)).await } => {}
        }
    });
}

fn status(code: StatusCode, body: &'static str) -> Response {
    (code, body).into_response()
}

async fn next(State(mb): State<Arc<Mailbox>>) -> Response {
    let job = mb.jobs.lock().await.recv().await;
    let Some(job) = job else {
        return status(
            StatusCode::GONE,
            "{\"errorMessage\":\"environment shutting down\"}",
        );
    };
    let mut headers = HeaderMap::new();
    let mut put = |k: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            headers.insert(k, v);
        }
    };
    put("lambda-runtime-aws-request-id", &job.id);
    put("lambda-runtime-deadline-ms", &job.deadline_ms.to_string());
    put("lambda-runtime-invoked-function-arn", &job.arn);
    put(
        "lambda-runtime-trace-id",
        &trace_id(&job.id, job.deadline_ms),
    );
    put("content-type", "application/json");
    *mb.current.lock() = Some((job.id, job.reply));
    let _ = job.picked.send(());
    (StatusCode::OK, headers, job.payload).into_response()
}

/// An X-Ray style trace id derived from the request id (32 hex digits in a UUID).
fn trace_id(request_id: &str, deadline_ms: u64) -> String {
    let hex: String = request_id.chars().filter(char::is_ascii_hexdigit).collect();
    let root = hex.get(..24).unwrap_or(&hex);
    let parent = hex.get(16..).unwrap_or(&hex);
    format!(
        "Root=1-{:08x}-{root};Parent={parent};Sampled=0",
        deadline_ms / 1000
    )
}

/// Hands `reply` to the invocation `id` if it is the one in progress.
fn deliver(mb: &Mailbox, id: &str, reply: Reply) -> Response {
    let mut cur = mb.current.lock();
    match cur.take() {
        Some((cid, tx)) if cid == id => {
            let _ = tx.send(reply);
            status(StatusCode::ACCEPTED, "{\"status\":\"OK\"}")
        }
        other => {
            *cur = other;
            status(
                StatusCode::BAD_REQUEST,
                "{\"errorMessage\":\"Invalid request ID\",\"errorType\":\"InvalidRequestID\"}",
            )
        }
    }
}

async fn read_limited(body: AxumBody) -> Result<Bytes, ()> {
    axum::body::to_bytes(body, MAX_RESPONSE_BYTES)
        .await
        .map_err(|_| ())
}

async fn response(
    State(mb): State<Arc<Mailbox>>,
    Path(id): Path<String>,
    body: AxumBody,
) -> Response {
    match read_limited(body).await {
        Ok(b) => deliver(&mb, &id, Reply::Ok(b)),
        Err(()) => {
            let msg = format!(
                "{{\"errorMessage\":\"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).\",\"errorType\":\"Function.ResponseSizeTooLarge\"}}"
            );
            deliver(&mb, &id, Reply::Err(Bytes::from(msg)));
            status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "{\"errorMessage\":\"Payload too large\",\"errorType\":\"RequestEntityTooLarge\"}",
            )
        }
    }
}

/// An error body, or a generic one when the runtime sent something unreadable.
async fn error_body(headers: &HeaderMap, body: AxumBody) -> Bytes {
    match read_limited(body).await {
        Ok(b) if serde_json::from_slice::<serde_json::Value>(&b).is_ok() => b,
        _ => {
            let t = headers
                .get("lambda-runtime-function-error-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("Unhandled");
            Bytes::from(serde_json::json!({ "errorMessage": "", "errorType": t }).to_string())
        }
    }
}

async fn error(
    State(mb): State<Arc<Mailbox>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: AxumBody,
) -> Response {
    let b = error_body(&headers, body).await;
    deliver(&mb, &id, Reply::Err(b))
}

async fn init_error(
    State(mb): State<Arc<Mailbox>>,
    headers: HeaderMap,
    body: AxumBody,
) -> Response {
    let b = error_body(&headers, body).await;
    *mb.init_error.lock() = Some(b);
    status(StatusCode::ACCEPTED, "{\"status\":\"OK\"}")
}
