//! The internal API under `/_cryopod/`: JSON in and out (bundles as `application/octet-stream`),
//! errors as `{"error": {"code", "message"}}`. The CLI is a thin client of it.

use std::io;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::bundle::BundleOutput;
use crate::checkpoint::CheckpointError;
use crate::error::Error;
use crate::scope::ScopeFilter;
use crate::state::MergeStrategy;

use super::App;

type AppState = State<Arc<App>>;

pub(super) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/health", get(health))
        .route("/state", get(export).post(import))
        .route("/state/summary", get(summary))
        .route("/state/reset", post(reset_all))
        .route("/state/save", post(save_all))
        .route("/state/load", post(load_all))
        .route("/state/{service}/reset", post(reset_one))
        .route("/state/{service}/save", post(save_one))
        .route("/state/{service}/load", post(load_one))
        .route("/checkpoints", get(checkpoint_list))
        .route(
            "/checkpoints/{name}",
            post(checkpoint_save).delete(checkpoint_delete),
        )
        .route("/checkpoints/{name}/restore", post(checkpoint_restore))
        .fallback(not_found)
}

/// An internal-API error: HTTP status plus a machine-readable code and a message that names
/// the problem.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable error code (`UnknownService`, `CorruptBundle`, ...).
    pub code: &'static str,
    /// Message for humans.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code) = match &e {
            Error::UnknownService { .. } => (StatusCode::BAD_REQUEST, "UnknownService"),
            Error::Bundle(_) => (StatusCode::BAD_REQUEST, "CorruptBundle"),
            Error::Decode { .. } => (StatusCode::BAD_REQUEST, "CorruptBundle"),
            Error::FutureStateVersion { .. } => {
                (StatusCode::BAD_REQUEST, "UnsupportedStateVersion")
            }
            Error::MissingBlob { .. } => (StatusCode::BAD_REQUEST, "MissingBlob"),
            Error::State(_) => (StatusCode::BAD_REQUEST, "InvalidState"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, axum::Json(body)).into_response()
    }
}

#[derive(Deserialize, Default)]
struct StateQuery {
    services: Option<String>,
    merge: Option<String>,
    accounts: Option<String>,
    regions: Option<String>,
}

fn split(list: &Option<String>) -> Option<Vec<String>> {
    list.as_ref().map(|s| {
        s.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    })
}

impl StateQuery {
    fn services(&self) -> Option<Vec<String>> {
        split(&self.services)
    }

    fn filter(&self) -> ScopeFilter {
        ScopeFilter {
            accounts: split(&self.accounts)
                .unwrap_or_default()
                .into_iter()
                .collect(),
            regions: split(&self.regions)
                .unwrap_or_default()
                .into_iter()
                .collect(),
        }
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
}

/// The `/_cryopod/health` document.
pub fn health_document(app: &App) -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "services": app.runtime.service_names().iter().map(|s| (s.to_string(), json!("running"))).collect::<serde_json::Map<_, _>>(),
        "linked": app.runtime.linked_services(),
        "persistence": app.hooks.as_ref().map_or_else(|| json!({"enabled": false}), |h| h.health()),
    })
}

async fn health(State(app): AppState) -> axum::Json<Value> {
    axum::Json(health_document(&app))
}

pub(super) async fn loaded(app: &App) -> Result<(), ApiError> {
    match &app.hooks {
        Some(h) => h.ensure_loaded().await,
        None => Ok(()),
    }
}

async fn summary(
    State(app): AppState,
    Query(q): Query<StateQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    loaded(&app).await?;
    let services = q.services();
    let s = app.runtime.summary(services.as_deref()).await?;
    Ok(axum::Json(json!({ "services": s })))
}

async fn reset_all(
    State(app): AppState,
    Query(q): Query<StateQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    loaded(&app).await?;
    let services = q.services();
    let names = app.runtime.reset(services.as_deref()).await?;
    Ok(axum::Json(json!({ "reset": names })))
}

async fn reset_one(
    State(app): AppState,
    Path(service): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    loaded(&app).await?;
    let names = app.runtime.reset(Some(&[service])).await?;
    Ok(axum::Json(json!({ "reset": names })))
}

fn persistence_off() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "PersistenceDisabled",
        "persistence is off; start the emulator with PERSISTENCE=1 (or --persistence)",
    )
}

async fn save_all(
    State(app): AppState,
    Query(q): Query<StateQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let hooks = app.hooks.clone().ok_or_else(persistence_off)?;
    app.runtime.select(q.services().as_deref())?;
    Ok(axum::Json(hooks.save(q.services()).await?))
}

async fn save_one(
    State(app): AppState,
    Path(service): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let hooks = app.hooks.clone().ok_or_else(persistence_off)?;
    app.runtime.select(Some(std::slice::from_ref(&service)))?;
    Ok(axum::Json(hooks.save(Some(vec![service])).await?))
}

async fn load_all(
    State(app): AppState,
    Query(q): Query<StateQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let hooks = app.hooks.clone().ok_or_else(persistence_off)?;
    app.runtime.select(q.services().as_deref())?;
    Ok(axum::Json(hooks.load(q.services()).await?))
}

async fn load_one(
    State(app): AppState,
    Path(service): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let hooks = app.hooks.clone().ok_or_else(persistence_off)?;
    app.runtime.select(Some(std::slice::from_ref(&service)))?;
    Ok(axum::Json(hooks.load(Some(vec![service])).await?))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "no internal API route {} {}",
            req.method(),
            req.uri().path()
        ),
    )
}

/// `GET /_cryopod/state`: the bundle, streamed ([`export_stream`]).
async fn export(State(app): AppState, Query(q): Query<StateQuery>) -> Result<Response, ApiError> {
    Ok(export_stream(&app, q.services().as_deref(), &q.filter())
        .await?
        .response)
}

/// An export on its way to the client: the response streaming the bundle, and what the
/// bundle holds (LocalStack's export answers name its services and size in headers).
pub(super) struct Export {
    /// `200` with the bundle as a streamed body.
    pub response: Response,
    /// The services in the bundle.
    pub services: Vec<String>,
    /// Plain bytes of the blobs in the bundle (the bundle's own length is known only once
    /// it is written).
    pub blob_bytes: u64,
}

/// Streams the bundle as it is written: the capture happens first (so an unknown service is
/// a clean 400), then a blocking writer feeds the response body through a bounded channel.
/// Shared by `/_cryopod/state` and `/_localstack/pods/state`.
///
/// Memory stays bounded (at most `DEPTH + 2` chunks of `CHUNK` bytes per export) and the
/// first bytes leave before the export finishes. Each byte is copied once in user space,
/// from the bundle writer's slices into a recycled chunk buffer that hyper then writes to
/// the socket as is (no further copy, no allocation per chunk).
pub(super) async fn export_stream(
    app: &App,
    services: Option<&[String]>,
    filter: &ScopeFilter,
) -> Result<Export, ApiError> {
    loaded(app).await?;
    let snapshot = app.runtime.capture(services, filter).await?;
    let blobs = app.runtime.blobs().clone();
    // Built (which checks every blob is present) before the first byte, so a failure is a
    // clean error response rather than a broken stream.
    let manifest = snapshot.manifest(&blobs)?;
    let names = manifest.services.iter().map(|s| s.name.clone()).collect();
    let blob_bytes = manifest.blobs.bytes;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(DEPTH);
    // At a lower CPU priority, so requests served during a long export keep their latency.
    crate::background::spawn("export", move || {
        let writer = ChannelWriter::new(tx.clone());
        let result = snapshot
            .write_bundle_with(manifest, &blobs, writer, Default::default())
            .and_then(|(mut w, _)| w.flush_output().map_err(Error::from));
        if let Err(e) = result {
            tracing::error!(error = %e, "export failed mid-stream");
            let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
    })
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        )
    })?;
    let stream = tokio_stream_from(rx);
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/vnd.cryopod.bundle")
        .body(Body::from_stream(stream))
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        })?;
    Ok(Export {
        response,
        services: names,
        blob_bytes,
    })
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, io::Error>> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Bytes per response body chunk. The bundle writer emits 1 MiB data chunks; chunks of the
/// same size keep per-chunk costs (channel hand-off, wake-up, HTTP chunk header, `writev`)
/// negligible while a chunk still fits comfortably in the socket's send buffer.
const CHUNK: usize = 1 << 20;

/// Frames queued between the writer thread and the connection. Enough to keep the socket
/// busy while the writer reads or compresses the next chunk (each bundle chunk is two
/// frames: its record header and its payload); the bound is the backpressure that stops a
/// slow client from making the server buffer the whole bundle.
const DEPTH: usize = 8;

/// Payloads at least this large go to the client in the writer's own buffer
/// ([`BundleOutput::write_shared`]); smaller ones are copied into the current frame.
const SHARE_MIN: usize = 64 << 10;

/// Chunk buffers that went out to the client and came back, for the next chunks: reusing
/// them saves an allocation (and the page faults of fresh memory) per chunk.
#[derive(Default)]
struct BufferPool {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// An empty buffer with room for a whole chunk.
    fn take(&self) -> Vec<u8> {
        let recycled = self.free.lock().ok().and_then(|mut free| free.pop());
        recycled.unwrap_or_else(|| Vec::with_capacity(CHUNK))
    }

    /// Keeps `buf` for reuse, unless enough buffers are already waiting.
    fn put(&self, mut buf: Vec<u8>) {
        buf.clear();
        if let Ok(mut free) = self.free.lock()
            && free.len() < DEPTH + 2
        {
            free.push(buf);
        }
    }
}

/// A chunk on its way to the client. Handed to hyper as `Bytes` without copying; its
/// buffer returns to the pool once hyper has written (and dropped) it.
struct PooledChunk {
    buf: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for PooledChunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledChunk {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.buf));
    }
}

/// The export's [`BundleOutput`]: forwards a bundle to an async channel as response body
/// frames, so a blocking bundle writer can feed an HTTP response with bounded memory.
/// Chunk payloads go out in the writer's own buffers, without a copy; the small records
/// between them are gathered into frames of up to `CHUNK` bytes. `blocking_send` waits
/// while the channel is full: that is the backpressure.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl ChannelWriter {
    fn new(tx: tokio::sync::mpsc::Sender<Result<Bytes, io::Error>>) -> Self {
        let pool = Arc::new(BufferPool::default());
        ChannelWriter {
            tx,
            buf: pool.take(),
            pool,
        }
    }

    /// Sends the gathered bytes as one frame: a few bytes are copied into a frame of their
    /// own, a full buffer goes as it is and a recycled one takes its place.
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let frame = if self.buf.len() < SMALL_FRAME {
            let b = Bytes::copy_from_slice(&self.buf);
            self.buf.clear();
            b
        } else {
            Bytes::from_owner(PooledChunk {
                buf: std::mem::replace(&mut self.buf, self.pool.take()),
                pool: Arc::clone(&self.pool),
            })
        };
        self.send_frame(frame)
    }

    fn send_frame(&self, frame: Bytes) -> io::Result<()> {
        self.tx
            .blocking_send(Ok(frame))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

/// Gathered bytes below this are copied into a frame of their own rather than sent in a
/// `CHUNK`-sized buffer.
const SMALL_FRAME: usize = 4096;

impl BundleOutput for ChannelWriter {
    /// Gathers `data` into `CHUNK`-byte frames (the buffer never grows past `CHUNK`, so it
    /// is never reallocated).
    fn write_bytes(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = data.len().min(CHUNK - self.buf.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == CHUNK {
                self.send()?;
            }
        }
        Ok(())
    }

    fn write_shared(&mut self, buf: &Arc<Vec<u8>>, range: Range<usize>) -> io::Result<()> {
        if range.len() < SHARE_MIN || buf.get(range.clone()).is_none() {
            return self.write_bytes(buf.get(range).unwrap_or(&[]));
        }
        self.send()?;
        self.send_frame(Bytes::from_owner(SharedPayload {
            buf: Arc::clone(buf),
            range,
        }))
    }

    fn flush_output(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A chunk payload lent by the bundle writer; the writer reuses the buffer once hyper has
/// written and dropped this.
struct SharedPayload {
    buf: Arc<Vec<u8>>,
    range: Range<usize>,
}

impl AsRef<[u8]> for SharedPayload {
    fn as_ref(&self) -> &[u8] {
        self.buf.get(self.range.clone()).unwrap_or(&[])
    }
}

/// Imports a bundle streamed in the request body: decoded and verified completely before
/// anything running changes.
async fn import(
    State(app): AppState,
    Query(q): Query<StateQuery>,
    req: Request,
) -> Result<axum::Json<Value>, ApiError> {
    let report = import_body(&app, req.into_body(), q.services(), q.merge(), |r| r).await?;
    Ok(axum::Json(serde_json::to_value(report).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        )
    })?))
}

/// The request body a bundle is read from, as the blocking reader the import reads.
pub(super) type ImportReader = SharedReader<BodyReader>;

/// Imports the bundle `body` carries (after `adapt`, which may unwrap it, as from a
/// multipart upload), shared by `/_cryopod/state` and `/_localstack/pods`. `merge` is the
/// caller's parsed strategy: an error there is answered like any other, after the body.
///
/// On failure the rest of the upload is read before answering: a server that closes the
/// connection with request bytes unread resets it, and the client never sees the error.
pub(super) async fn import_body<R, F>(
    app: &App,
    body: Body,
    services: Option<Vec<String>>,
    merge: Result<MergeStrategy, ApiError>,
    adapt: F,
) -> Result<crate::runtime::ApplyReport, ApiError>
where
    R: io::Read + Send + 'static,
    F: FnOnce(ImportReader) -> R,
{
    let reader = SharedReader(Arc::new(std::sync::Mutex::new(BodyReader::pump(body))));
    let result = async {
        let merge = merge?;
        app.runtime.select(services.as_deref())?;
        loaded(app).await?;
        Ok(app
            .runtime
            .import(adapt(reader.clone()), services.as_deref(), merge)
            .await?)
    }
    .await;
    if result.is_err() {
        let mut rest = reader;
        let _ = tokio::task::spawn_blocking(move || io::copy(&mut rest, &mut io::sink())).await;
    }
    result
}

/// Body frames queued ahead of the import (hyper's frames are at most a few hundred KiB, so
/// this bounds the queue to some tens of MiB).
const BODY_QUEUE: usize = 64;

/// The request body as a blocking `Read` for the bundle reader, fed by a task that reads
/// the body as fast as the queue allows.
///
/// Why not `SyncIoBridge` over the body stream: that polls the body from the importing
/// thread, so hyper reads the next frame from the socket only when the importer asks for
/// it, and every frame costs two thread hand-offs while neither side works. With a queue,
/// receiving and importing overlap, and the importer blocks only when it has caught up.
pub(super) struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl BodyReader {
    fn pump(body: Body) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(BODY_QUEUE);
        let mut frames = body
            .into_data_stream()
            .map_err(|e| io::Error::other(e.to_string()));
        tokio::spawn(async move {
            while let Some(frame) = frames.next().await {
                let failed = frame.is_err();
                if tx.send(frame).await.is_err() || failed {
                    break;
                }
            }
        });
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(frame)) => self.current = frame,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// A reader the import handler keeps a handle on, to drain the request body after a failed
/// import.
pub(super) struct SharedReader<R>(Arc<std::sync::Mutex<R>>);

impl<R> Clone for SharedReader<R> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<R: io::Read> io::Read for SharedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("import reader poisoned"))?
            .read(buf)
    }
}

impl From<CheckpointError> for ApiError {
    fn from(e: CheckpointError) -> Self {
        let e = match e {
            CheckpointError::Runtime(inner) => return inner.into(),
            other => other,
        };
        let (status, code) = match &e {
            CheckpointError::Runtime(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            CheckpointError::InvalidName(_) => (StatusCode::BAD_REQUEST, "InvalidCheckpointName"),
            CheckpointError::NotFound(_) => (StatusCode::NOT_FOUND, "NoSuchCheckpoint"),
            CheckpointError::Limit { .. } => (StatusCode::CONFLICT, "CheckpointLimit"),
            CheckpointError::BadSetting(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InvalidSetting"),
            CheckpointError::ServiceNotCaptured { .. } => {
                (StatusCode::BAD_REQUEST, "ServiceNotInCheckpoint")
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

fn to_json(v: impl serde::Serialize) -> Result<axum::Json<Value>, ApiError> {
    serde_json::to_value(v).map(axum::Json).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        )
    })
}

/// `POST /_cryopod/checkpoints/{name}`: takes a checkpoint (`?services=` narrows it).
async fn checkpoint_save(
    State(app): AppState,
    Path(name): Path<String>,
    Query(q): Query<StateQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    // Services still waiting for a lazy load would be captured empty.
    loaded(&app).await?;
    let info = app
        .runtime
        .checkpoint_save(&name, q.services().as_deref())
        .await?;
    to_json(info)
}

/// `POST /_cryopod/checkpoints/{name}/restore`: the running state becomes the checkpoint
/// again. Under `ON_REQUEST` saving the answer waits until the restored state is durable,
/// as an AWS request's does.
async fn checkpoint_restore(
    State(app): AppState,
    Path(name): Path<String>,
    Query(q): Query<StateQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    // A lazy load after the restore would replace the restored state.
    loaded(&app).await?;
    let services = q.services();
    let (restored, changed) =
        crate::service::track_changes(app.runtime.checkpoint_restore(&name, services.as_deref()))
            .await;
    let restored = restored?;
    if let (Some(generation), Some(hooks), Some(first)) = (changed, &app.hooks, restored.first()) {
        hooks
            .after_change(first, generation)
            .await
            .map_err(|e| ApiError::new(e.status, "RestoreNotDurable", e.message))?;
    }
    Ok(axum::Json(
        json!({ "checkpoint": name, "restored": restored }),
    ))
}

/// `GET /_cryopod/checkpoints`: every checkpoint with its services, counts and what it
/// keeps alive.
async fn checkpoint_list(State(app): AppState) -> Result<axum::Json<Value>, ApiError> {
    let list = app.runtime.checkpoint_list().await?;
    Ok(axum::Json(json!({ "checkpoints": to_json(list)?.0 })))
}

/// `DELETE /_cryopod/checkpoints/{name}`.
async fn checkpoint_delete(
    State(app): AppState,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    app.runtime.checkpoint_delete(&name)?;
    Ok(axum::Json(json!({ "deleted": name })))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rx = tokio::sync::mpsc::Receiver<Result<Bytes, io::Error>>;

    fn collect(mut rx: Rx) -> Vec<Bytes> {
        let mut chunks = Vec::new();
        while let Some(c) = rx.blocking_recv() {
            chunks.push(c.unwrap());
        }
        chunks
    }

    #[test]
    fn channel_writer_sends_whole_chunks_in_order() {
        let (tx, rx) = tokio::sync::mpsc::channel(DEPTH);
        let data: Vec<u8> = (0..3 * CHUNK + 12_345).map(|i| (i % 251) as u8).collect();
        let input = data.clone();
        let writer = std::thread::spawn(move || {
            let mut w = ChannelWriter::new(tx);
            // Uneven writes, as the bundle writer makes: headers, 1 MiB chunks, checksums.
            for part in input.chunks(CHUNK / 3 + 7) {
                w.write_bytes(&part[..5]).unwrap();
                w.write_bytes(&part[5..]).unwrap();
            }
            w.flush_output().unwrap();
        });
        let chunks = collect(rx);
        writer.join().unwrap();
        let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
        assert_eq!(sizes, vec![CHUNK, CHUNK, CHUNK, 12_345]);
        assert_eq!(chunks.concat(), data);
    }

    #[test]
    fn chunk_buffers_are_recycled_once_written() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(DEPTH);
        let mut w = ChannelWriter::new(tx);
        w.write_bytes(&vec![1u8; CHUNK]).unwrap();
        let first = rx.try_recv().unwrap().unwrap();
        let ptr = first.as_ptr();
        // While hyper holds the chunk, its buffer is not reused.
        assert_ne!(w.buf.as_ptr(), ptr);
        drop(first);
        w.write_bytes(&vec![2u8; CHUNK]).unwrap();
        assert_eq!(
            w.buf.as_ptr(),
            ptr,
            "the written chunk's buffer is filled next"
        );
        assert!(w.buf.capacity() >= CHUNK);
        let second = rx.try_recv().unwrap().unwrap();
        assert!(second.iter().all(|&b| b == 2));
    }

    #[test]
    fn lent_payloads_go_out_as_frames_of_their_own_in_order_without_a_copy() {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let payload = Arc::new(vec![7u8; 3 * SHARE_MIN]);
        let small = Arc::new(vec![9u8; SHARE_MIN - 1]);
        let at = payload.as_ptr() as usize + 10;
        let (p, s) = (payload.clone(), small.clone());
        let writer = std::thread::spawn(move || {
            let mut w = ChannelWriter::new(tx);
            w.write_bytes(b"head").unwrap();
            w.write_shared(&p, 10..p.len()).unwrap();
            w.write_bytes(b"crc!").unwrap();
            // Too small to be worth a frame: copied into the gathered bytes.
            w.write_shared(&s, 0..s.len()).unwrap();
            w.flush_output().unwrap();
        });
        let frames = collect(rx);
        writer.join().unwrap();
        let sizes: Vec<usize> = frames.iter().map(Bytes::len).collect();
        assert_eq!(frames.len(), 3, "{sizes:?}");
        assert_eq!(&frames[0][..], b"head");
        assert_eq!(
            frames[1].as_ptr() as usize,
            at,
            "the payload was not copied"
        );
        assert_eq!(frames[1].len(), payload.len() - 10);
        assert_eq!(&frames[2][..4], b"crc!");
        assert_eq!(&frames[2][4..], &small[..]);
    }

    #[test]
    fn channel_writer_fails_when_the_client_goes_away() {
        let (tx, rx) = tokio::sync::mpsc::channel(DEPTH);
        drop(rx);
        let mut w = ChannelWriter::new(tx);
        let err = w.write_bytes(&vec![0u8; CHUNK]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    /// A request body made of `frames`, then an error if `fail` is set.
    fn body(frames: Vec<Vec<u8>>, fail: bool) -> Body {
        let mut items: Vec<Result<Bytes, io::Error>> =
            frames.into_iter().map(|f| Ok(Bytes::from(f))).collect();
        if fail {
            items.push(Err(io::Error::other("connection reset by the client")));
        }
        Body::from_stream(futures::stream::iter(items))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn body_reader_yields_every_frame_in_order_then_the_end() {
        // More frames than the queue holds, of uneven sizes.
        let frames: Vec<Vec<u8>> = (0..3 * BODY_QUEUE)
            .map(|i| vec![(i % 251) as u8; 1 + i * 37 % 5000])
            .collect();
        let want: Vec<u8> = frames.concat();
        let mut r = BodyReader::pump(body(frames, false));
        let got = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            // Small reads too, so frames are split across calls.
            let mut buf = [0u8; 777];
            loop {
                let n = io::Read::read(&mut r, &mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            out
        })
        .await
        .unwrap();
        assert_eq!(got, want);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn body_reader_reports_a_broken_upload_instead_of_an_end() {
        let mut r = BodyReader::pump(body(vec![b"partial bundle".to_vec()], true));
        let err = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            io::Read::read_to_end(&mut r, &mut out).unwrap_err()
        })
        .await
        .unwrap();
        assert!(err.to_string().contains("connection reset"), "{err}");
    }
}
