//! The `Invoke` operation (`POST /2015-03-31/functions/{f}/invocations`) and the legacy
//! `InvokeAsync`: headers in, headers out, limits and errors as AWS answers them.

use std::sync::Arc;

use bytes::Bytes;
use cryopod::{AwsError, AwsRequest, Body};
use http::{HeaderValue, Response, StatusCode};

use super::{Invoker, resolve};
use crate::error::invalid;

/// Largest synchronous request payload (AWS: 6 MB).
pub const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;
/// Largest asynchronous (`Event`) request payload (AWS: 1 MB since 2025, 256 KB before).
pub const MAX_ASYNC_PAYLOAD: usize = 1024 * 1024;

/// How the caller wants the function invoked (`X-Amz-Invocation-Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvocationType {
    /// Wait for the result.
    RequestResponse,
    /// Queue it and answer 202.
    Event,
    /// Check the request and answer 204.
    DryRun,
}

fn request_too_large(limit: usize) -> AwsError {
    AwsError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestTooLargeException",
        format!("Request must be smaller than {limit} bytes for the InvokeFunction operation"),
    )
}

fn set(resp: &mut Response<Body>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

fn answer(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    set(&mut resp, "content-type", "application/json");
    set(
        &mut resp,
        "x-amzn-requestid",
        &uuid::Uuid::new_v4().to_string(),
    );
    resp
}

/// Answers `Invoke` (or `InvokeAsync` when `legacy_async`) for function `raw`.
pub async fn invoke(
    inv: &Arc<Invoker>,
    mut req: AwsRequest,
    raw: &str,
    query: &[(String, String)],
    legacy_async: bool,
) -> Result<Response<Body>, AwsError> {
    let kind = if legacy_async {
        InvocationType::Event
    } else {
        match req.header("x-amz-invocation-type") {
            None | Some("RequestResponse") => InvocationType::RequestResponse,
            Some("Event") => InvocationType::Event,
            Some("DryRun") => InvocationType::DryRun,
            Some(other) => {
                return Err(crate::error::constraint(
                    "invocationType",
                    other,
                    "Member must satisfy enum value set: [Event, RequestResponse, DryRun]",
                ));
            }
        }
    };
    let tail = match req.header("x-amz-log-type") {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => {
            return Err(crate::error::constraint(
                "logType",
                other,
                "Member must satisfy enum value set: [None, Tail]",
            ));
        }
    };
    let limit = if kind == InvocationType::Event {
        MAX_ASYNC_PAYLOAD
    } else {
        MAX_SYNC_PAYLOAD
    };
    let payload = req.body_bytes(limit).await.map_err(|e| {
        if e.status == StatusCode::PAYLOAD_TOO_LARGE {
            request_too_large(limit)
        } else {
            e
        }
    })?;
    if !payload.is_empty()
        && let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&payload)
    {
        return Err(AwsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            format!("Could not parse request body into json: {e}"),
        ));
    }
    let qualifier = query
        .iter()
        .find(|(k, _)| k == "Qualifier")
        .map(|(_, v)| v.clone());
    let scope = req.scope.clone();
    inv.set_endpoint(&req.endpoint);
    let target = inv.state().read(|s| resolve(s, &scope, raw, qualifier))?;
    if target.config.package_type != "Zip" {
        return Err(invalid(
            "Functions packaged as container images cannot run in this emulator; package the function as a zip.",
        ));
    }
    match kind {
        InvocationType::DryRun => {
            inv.check(&target)?;
            let mut resp = answer(StatusCode::NO_CONTENT, Bytes::new());
            set(&mut resp, "x-amz-executed-version", &target.version);
            Ok(resp)
        }
        InvocationType::Event => {
            inv.check(&target)?;
            inv.enqueue(target, payload)?;
            let body = if legacy_async {
                Bytes::from_static(b"{\"Status\":202}")
            } else {
                Bytes::new()
            };
            Ok(answer(StatusCode::ACCEPTED, body))
        }
        InvocationType::RequestResponse => {
            let out = inv.invoke(&target, payload, tail).await?;
            let mut resp = answer(StatusCode::OK, out.payload);
            set(&mut resp, "x-amz-executed-version", &out.version);
            if let Some(fe) = out.function_error {
                set(&mut resp, "x-amz-function-error", fe);
            }
            if let Some(t) = &out.log_tail {
                set(&mut resp, "x-amz-log-result", t);
            }
            Ok(resp)
        }
    }
}
