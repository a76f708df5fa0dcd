//! State export, import, reset and persistence in LocalStack's shapes: the bundle itself is
//! cryopod's (`bundle-format/SPEC.md`), what changes is how it is asked for and answered.

use std::io;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, error, from_api, merge_of, ndjson, no_input, split_list};
use crate::scope::ScopeFilter;
use crate::server::ApiError;
use crate::server::api;

#[derive(Deserialize, Default)]
pub(super) struct StateQuery {
    services: Option<String>,
    pod_name: Option<String>,
    merge: Option<String>,
}

/// `GET /_localstack/pods/state?services=&pod_name=`: the running state as one bundle,
/// streamed, with the headers LocalStack's `state export` and lstk read.
pub(super) async fn export(State(app): AppState, Query(q): Query<StateQuery>) -> Response {
    let services = split_list(q.services.as_deref());
    let export = match api::export_stream(&app, services.as_deref(), &ScopeFilter::all()).await {
        Ok(e) => e,
        Err(e) => return from_api(e),
    };
    let name = q
        .pod_name
        .as_deref()
        .filter(|n| crate::pods::validate_name(n).is_ok())
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "cloudpod-{}",
                time::OffsetDateTime::now_utc().unix_timestamp()
            )
        });
    let mut resp = export.response;
    let headers = resp.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set(
        "content-disposition",
        format!("attachment; filename={name}.cryopod"),
    );
    set("x-localstack-pod-services", export.services.join(","));
    set("x-localstack-pod-size", export.blob_bytes.to_string());
    resp
}

/// The longest multipart preamble and part header block accepted before the file's bytes.
const MULTIPART_HEAD_LIMIT: usize = 16 << 10;

/// `POST /_localstack/pods?merge=`: imports a bundle sent as the raw body or as the
/// multipart field `pod`, answering `201` with one NDJSON line per service. A LocalStack
/// zip export (pickles) is refused with 422 and a message naming the format. All or
/// nothing: a body that fails leaves the running state as it was.
pub(super) async fn import(
    State(app): AppState,
    Query(q): Query<StateQuery>,
    req: Request,
) -> Response {
    let merge = merge_of(q.merge.as_deref());
    let services = split_list(q.services.as_deref());
    let boundary = multipart_boundary(req.headers());
    let mut stream = req.into_body().into_data_stream();
    let mut head = BytesMut::new();
    let mut delimiter = None;
    if let Some(boundary) = boundary {
        // The preamble and the part's headers, then the first bytes of the file.
        let start = loop {
            if let Some(start) = find(&head, b"\r\n\r\n") {
                break start + 4;
            }
            if head.len() > MULTIPART_HEAD_LIMIT {
                return error(
                    StatusCode::BAD_REQUEST,
                    "expected a single file with name 'pod' (no part header found)",
                );
            }
            match stream.next().await {
                Some(Ok(frame)) => head.extend_from_slice(&frame),
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "expected a single file with name 'pod'",
                    );
                }
            }
        };
        let part_head = String::from_utf8_lossy(&head[..start]).to_ascii_lowercase();
        if !part_head.contains("name=\"pod\"") {
            return error(
                StatusCode::BAD_REQUEST,
                "expected a single file with name 'pod'",
            );
        }
        let _ = head.split_to(start);
        delimiter = Some(format!("\r\n--{boundary}").into_bytes());
    }
    // Enough of the file to tell a LocalStack zip from a cryopod bundle.
    while head.len() < ZIP_MAGIC.len() {
        match stream.next().await {
            Some(Ok(frame)) => head.extend_from_slice(&frame),
            _ => break,
        }
    }
    if head.starts_with(ZIP_MAGIC) {
        // Read the rest so the client sees the answer rather than a reset connection.
        while stream.next().await.is_some() {}
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this is a LocalStack pod or state export (a zip of Python pickles); cryopod cannot read it. \
             Export the state again from cryopod (GET /_localstack/pods/state or `cryopod state export`): \
             cryopod's bundle format is its own",
        );
    }
    let first = head.freeze();
    let body = Body::from_stream(futures::stream::once(async move { Ok(first) }).chain(stream));
    let report = match delimiter {
        Some(d) => {
            api::import_body(&app, body, services, merge, move |r| {
                MultipartPart::new(r, d)
            })
            .await
        }
        None => api::import_body(&app, body, services, merge, |r| r).await,
    };
    match report {
        Ok(report) => {
            let mut lines: Vec<Value> = report
                .loaded
                .keys()
                .map(|s| json!({ "service": s, "status": "ok" }))
                .collect();
            lines.extend(report.skipped.iter().map(|s| {
                json!({
                    "service": s.service,
                    "status": "error",
                    "message": format!("not loaded: {:?}", s.reason),
                })
            }));
            ndjson(StatusCode::CREATED, &lines)
        }
        Err(e) => from_api(e),
    }
}

/// The first bytes of every zip file (a local file header).
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

fn multipart_boundary(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    if !ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        return None;
    }
    ct.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case("boundary")
            .then(|| v.trim_matches('"').to_string())
            .filter(|b| !b.is_empty() && b.len() <= 200)
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The bytes of one multipart part, read from the stream that starts right after its
/// headers: everything up to the delimiter (`\r\n--boundary`), streamed with only the
/// delimiter's length held back, so a bundle of any size passes with bounded memory. Each
/// byte is searched once.
struct MultipartPart<R> {
    inner: R,
    delimiter: Vec<u8>,
    /// Bytes read and not yet returned start at `start`.
    pending: Vec<u8>,
    start: usize,
    /// Bytes before this offset are known to hold no delimiter start.
    clear: usize,
    /// Where the part ends in `pending`, once the delimiter is found.
    end: Option<usize>,
}

/// Bytes read from the upload at a time.
const PART_READ: usize = 64 << 10;

impl<R: io::Read> MultipartPart<R> {
    fn new(inner: R, delimiter: Vec<u8>) -> Self {
        Self {
            inner,
            delimiter,
            pending: Vec::new(),
            start: 0,
            clear: 0,
            end: None,
        }
    }

    /// Looks for the delimiter in the bytes not searched yet.
    fn scan(&mut self) {
        let from = self.clear.max(self.start);
        match find(&self.pending[from..], &self.delimiter) {
            Some(at) => self.end = Some(from + at),
            None => {
                self.clear = self
                    .pending
                    .len()
                    .saturating_sub(self.delimiter.len() - 1)
                    .max(from)
            }
        }
    }
}

impl<R: io::Read> io::Read for MultipartPart<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let limit = self.end.unwrap_or(self.clear);
            if limit > self.start || self.end.is_some() {
                let n = (limit - self.start).min(buf.len());
                buf[..n].copy_from_slice(&self.pending[self.start..self.start + n]);
                self.start += n;
                return Ok(n);
            }
            // Everything returned: drop it, then read more.
            self.pending.drain(..self.start);
            self.clear -= self.start.min(self.clear);
            self.start = 0;
            let have = self.pending.len();
            self.pending.resize(have + PART_READ, 0);
            let n = self.inner.read(&mut self.pending[have..])?;
            self.pending.truncate(have + n);
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the multipart upload ended before its closing boundary",
                ));
            }
            self.scan();
        }
    }
}

/// Services a state request names: one in the path, or all of the running ones.
fn selected(app: &crate::server::App, one: Option<String>) -> Result<Vec<String>, ApiError> {
    let list = one.map(|s| vec![s]);
    Ok(app
        .runtime
        .select(list.as_deref())?
        .into_iter()
        .map(str::to_string)
        .collect())
}

/// `POST /_localstack/state/{reset|save|load}`: the whole state ([`state_op`]).
pub(super) async fn state_all(
    State(app): AppState,
    Path(op): Path<String>,
    req: Request,
) -> Response {
    state_op(&app, &op, None, req).await
}

/// `POST /_localstack/state/{service}/{reset|save|load}`; 404 for a service this emulator
/// lacks.
pub(super) async fn state_one(
    State(app): AppState,
    Path((service, op)): Path<(String, String)>,
    req: Request,
) -> Response {
    state_op(&app, &op, Some(service), req).await
}

/// Reset (LocalStack's `state-reset`, independent of persistence), or save and load
/// through persistence.
async fn state_op(
    app: &crate::server::App,
    op: &str,
    one: Option<String>,
    req: Request,
) -> Response {
    match op {
        "reset" => reset(app, one, req).await,
        "save" => persist(app, Persist::Save, one, req).await,
        "load" => persist(app, Persist::Load, one, req).await,
        other => error(
            StatusCode::NOT_FOUND,
            format!("no state operation `{other}` (known: reset, save, load)"),
        ),
    }
}

/// A foreign body (anything but nothing or a JSON object) is refused before anything
/// changes: these routes take no input, so a body is a client that meant something else.
async fn reset(app: &crate::server::App, one: Option<String>, req: Request) -> Response {
    if let Err(r) = no_input(req.into_body(), &[]).await {
        return r.into_response();
    }
    let result = async {
        let names = selected(app, one)?;
        api::loaded(app).await?;
        Ok::<_, ApiError>(app.runtime.reset(Some(&names)).await?)
    }
    .await;
    match result {
        Ok(names) => axum::Json(json!({ "reset": names })).into_response(),
        Err(e) => from_api(e),
    }
}

/// What persistence operation a state route runs.
#[derive(Clone, Copy)]
enum Persist {
    Save,
    Load,
}

/// Saves or loads through persistence (the same hooks as `/_cryopod/state/save|load`),
/// answering LocalStack's `StateResult`s: NDJSON lines for the whole state, one document
/// for one service (500 on failure). The body may be LocalStack's `LoadService`
/// (`{"start": true}`; services always run in cryopod) or nothing.
async fn persist(
    app: &crate::server::App,
    op: Persist,
    one: Option<String>,
    req: Request,
) -> Response {
    if let Err(r) = no_input(req.into_body(), &["start"]).await {
        return r.into_response();
    }
    let Some(hooks) = app.hooks.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "persistence is off, so there is nothing to save to or load from; start cryopod with PERSISTENCE=1 (or LOCALSTACK_PERSISTENCE=1, or --persistence)",
        );
    };
    let single = one.is_some();
    let names = match selected(app, one) {
        Ok(n) => n,
        Err(e) => return from_api(e),
    };
    let result = match op {
        Persist::Save => hooks.save(Some(names.clone())).await,
        Persist::Load => hooks.load(Some(names.clone())).await,
    };
    let line = |service: &str, failure: Option<&str>| match failure {
        None => json!({ "service": service, "status": "ok" }),
        Some(m) => json!({ "service": service, "status": "error", "message": m }),
    };
    match (single, &result) {
        (true, Ok(_)) => axum::Json(line(&names[0], None)).into_response(),
        (true, Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(line(&names[0], Some(&e.message))),
        )
            .into_response(),
        (false, _) => {
            let failure = result.as_ref().err().map(|e| e.message.as_str());
            let lines: Vec<Value> = names.iter().map(|s| line(s, failure)).collect();
            ndjson(StatusCode::OK, &lines)
        }
    }
}

/// `GET /_localstack/pods/state/metamodel`: resources by service and scope (the document
/// `cryopod state inspect` shows; LocalStack's metamodel holds describe-call answers).
pub(super) async fn metamodel(State(app): AppState) -> Response {
    let result = async {
        api::loaded(&app).await?;
        Ok::<_, ApiError>(app.runtime.summary(None).await?)
    }
    .await;
    match result {
        Ok(s) => axum::Json(json!(s)).into_response(),
        Err(e) => from_api(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(body: &[u8], delimiter: &[u8], read_size: usize) -> io::Result<Vec<u8>> {
        let mut p = MultipartPart::new(io::Cursor::new(body.to_vec()), delimiter.to_vec());
        let mut out = Vec::new();
        let mut buf = vec![0u8; read_size];
        loop {
            let n = io::Read::read(&mut p, &mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn a_multipart_part_ends_at_its_delimiter_whatever_the_read_sizes() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let mut body = data.clone();
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        for size in [1, 7, 4096, 1 << 20] {
            assert_eq!(part(&body, b"\r\n--XyZ", size).unwrap(), data);
        }
        let err = part(&data, b"\r\n--XyZ", 4096).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn the_boundary_comes_from_a_multipart_content_type_only() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data; boundary=\"abc123\""),
        );
        assert_eq!(multipart_boundary(&h).as_deref(), Some("abc123"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        assert_eq!(multipart_boundary(&h), None);
    }
}
