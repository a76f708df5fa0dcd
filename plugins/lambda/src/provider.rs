//! The running Lambda service: request handling plus the [`StateProvider`] that snapshots it.

use std::any::Any;
use std::io::SeekFrom;

use async_trait::async_trait;
use cryopod::plugin::CellProvider;
use cryopod::{AwsError, AwsRequest, Body, Scope, Service, ServiceContext, StateCell};
use http::{HeaderValue, Response, StatusCode};
use serde_json::Value;

use crate::api::{self, CodeOutcome, CodeSource, Ctx, Op};
use crate::error::{internal, invalid, not_found, serialization};
use crate::state::{CodeRef, LambdaState};
use crate::validate::Input;
use crate::zip::{self, MAX_UNZIPPED_BYTES, ZipError};

/// Every operation this service answers, in AWS's names: the operations
/// [`Op::route`](crate::api::Op::route) routes to a handler (`Invoke` and `InvokeAsync` run
/// code through [`crate::invoke`]; the other data-plane calls are refused). The registration
/// carries it, the README's service table is checked against it, and `tests/registration.rs`
/// checks each is dispatched.
pub const OPERATIONS: &[&str] = &[
    "AddPermission",
    "CreateAlias",
    "CreateEventSourceMapping",
    "CreateFunction",
    "DeleteAlias",
    "DeleteEventSourceMapping",
    "DeleteFunction",
    "DeleteLayerVersion",
    "GetAccountSettings",
    "GetAlias",
    "GetEventSourceMapping",
    "GetFunction",
    "GetFunctionConfiguration",
    "GetLayerVersion",
    "GetLayerVersionByArn",
    "GetPolicy",
    "Invoke",
    "InvokeAsync",
    "ListAliases",
    "ListEventSourceMappings",
    "ListFunctions",
    "ListLayerVersions",
    "ListLayers",
    "ListTags",
    "ListVersionsByFunction",
    "PublishLayerVersion",
    "PublishVersion",
    "RemovePermission",
    "TagResource",
    "UntagResource",
    "UpdateAlias",
    "UpdateEventSourceMapping",
    "UpdateFunctionCode",
    "UpdateFunctionConfiguration",
];

/// The Lambda service. All state lives in one [`StateCell`]: transactional writes, change
/// tracking for persistence and O(1) captures come from it.
pub struct LambdaService {
    state: std::sync::Arc<StateCell<LambdaState>>,
    /// Runs function code; shares the state to resolve functions at each invocation.
    invoker: std::sync::Arc<crate::invoke::Invoker>,
}

impl LambdaService {
    /// Built by the runtime from the registration in `lib.rs`.
    pub fn new(ctx: ServiceContext) -> Self {
        let state = std::sync::Arc::new(StateCell::new(ctx.clone()));
        let invoker = crate::invoke::Invoker::new(ctx, state.clone());
        // Event source mappings poll from the start (also right after a state is loaded),
        // not only once a Lambda request arrives.
        invoker.wake();
        Self { state, invoker }
    }

    fn ctx(&self) -> &ServiceContext {
        self.state.context()
    }

    /// Puts an inline zip in the blob store after checking it is a zip Lambda would accept.
    /// Runs on the blocking pool: hashing 50 MiB must not stall the runtime's workers.
    async fn store_zip(&self, bytes: Vec<u8>) -> Result<CodeRef, AwsError> {
        let blobs = self.ctx().blobs.clone();
        tokio::task::spawn_blocking(move || {
            let len = bytes.len() as u64;
            check_zip(zip::unzipped_size(&mut std::io::Cursor::new(&bytes), len))?;
            let digest = blobs
                .put(&bytes)
                .map_err(|e| internal(format!("storing the code package failed: {e}")))?;
            Ok(CodeRef { digest, size: len })
        })
        .await
        .map_err(|e| internal(format!("storing the code package failed: {e}")))?
    }

    /// Resolves `s3://bucket/key` through the S3 service's [`cryopod::ObjectSource`]: the
    /// object's blob is already in the shared store, so the function keeps that digest and
    /// its code survives the object's deletion without a copy.
    async fn s3_code(
        &self,
        scope: &Scope,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<CodeRef, AwsError> {
        let s3 = self.ctx().service("s3").ok_or_else(|| {
            invalid("Code from S3 needs the S3 service, which is not running in this emulator (enable it with SERVICES).")
        })?;
        let source = s3.object_source().ok_or_else(|| {
            invalid("The running S3 service does not expose its objects to other services.")
        })?;
        let (digest, size) = source
            .object_blob(scope, bucket, key, version)
            .await
            .map_err(|e| {
                invalid(format!(
                    "Error occurred while GetObject. S3 Error Code: {}. S3 Error Message: {}",
                    e.code, e.message
                ))
            })?;
        let blobs = self.ctx().blobs.clone();
        tokio::task::spawn_blocking(move || {
            let mut f = blobs
                .open_blob(&digest)
                .map_err(|e| internal(format!("reading the S3 object failed: {e}")))?;
            check_zip(zip::unzipped_size(&mut f, size))?;
            Ok(CodeRef { digest, size })
        })
        .await
        .map_err(|e| internal(format!("reading the S3 object failed: {e}")))?
    }

    async fn resolve_code(
        &self,
        scope: &Scope,
        source: Option<CodeSource>,
    ) -> Result<CodeOutcome, AwsError> {
        Ok(match source {
            None => CodeOutcome::None,
            Some(CodeSource::Zip(bytes)) => CodeOutcome::Zip(self.store_zip(bytes).await?),
            Some(CodeSource::S3 {
                bucket,
                key,
                version,
            }) => CodeOutcome::Zip(
                self.s3_code(scope, &bucket, &key, version.as_deref())
                    .await?,
            ),
            Some(CodeSource::Image(uri)) => CodeOutcome::Image(uri),
        })
    }

    async fn dispatch(&self, mut req: AwsRequest) -> Result<Response<Body>, AwsError> {
        let method = req.request.method().clone();
        let path = req.request.uri().path().to_string();
        let query: Vec<(String, String)> =
            form_urlencoded::parse(req.request.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let op = Op::route(&method, &path, &query);
        tracing::debug!(?op, scope = %req.scope, "lambda request");
        match &op {
            Op::DownloadFunctionCode(account, region, name, hex) => {
                let scope = Scope::new(account.clone(), region.clone());
                let code = self
                    .state
                    .read(|s| api::function_uses(s, &scope, name, hex))
                    .ok_or_else(|| not_found("No such code package."))?;
                return self.download(code).await;
            }
            Op::DownloadLayerCode(account, region, name, hex) => {
                let scope = Scope::new(account.clone(), region.clone());
                let code = self
                    .state
                    .read(|s| api::layer_uses(s, &scope, name, hex))
                    .ok_or_else(|| not_found("No such code package."))?;
                return self.download(code).await;
            }
            Op::Unsupported(what) => return Err(api::unsupported_op(what)),
            Op::Invoke(f) | Op::InvokeAsync(f) => {
                let legacy = matches!(op, Op::InvokeAsync(_));
                return crate::invoke::operation::invoke(&self.invoker, req, f, &query, legacy)
                    .await;
            }
            _ => {}
        }
        let body_bytes = if op.has_body() {
            req.body_bytes(api::MAX_BODY_BYTES).await.map_err(|e| {
                if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                    crate::error::too_large(format!(
                        "Request must be smaller than {} bytes for the operation.",
                        api::MAX_BODY_BYTES
                    ))
                } else {
                    e
                }
            })?
        } else {
            bytes::Bytes::new()
        };
        let json: Value = if body_bytes.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&body_bytes)
                .map_err(|e| serialization(format!("The request body is not valid JSON: {e}")))?
        };
        drop(body_bytes);
        let body = Input(&json);
        let scope = req.scope.clone();
        let ctx = Ctx {
            scope: &scope,
            endpoint: &req.endpoint,
            query: &query,
        };
        let status = api::success_status(&op);
        let st = &self.state;
        let value: Option<Value> = match &op {
            Op::CreateFunction => {
                // Validate what can be validated before storing a possibly large package.
                let code_in = body.object("Code")?.ok_or_else(|| {
                    crate::error::constraint("code", "null", "Member must not be null")
                })?;
                let source = api::code_source(&code_in, true)?;
                let code = self.resolve_code(&scope, source).await?;
                Some(
                    st.write(&scope, |s| api::create_function(s, &ctx, &body, code))
                        .await?,
                )
            }
            Op::UpdateFunctionCode(f) => {
                let source = api::code_source(&body, true)?;
                let code = self.resolve_code(&scope, source).await?;
                Some(
                    st.write(&scope, |s| {
                        api::update_function_code(s, &ctx, f, &body, code)
                    })
                    .await?,
                )
            }
            Op::PublishLayerVersion(l) => {
                let name = crate::names::parse_layer_name(&scope, l)?;
                let meta = api::layer_meta(&body)?;
                let content = body.object("Content")?.ok_or_else(|| {
                    crate::error::constraint("content", "null", "Member must not be null")
                })?;
                let code = match self
                    .resolve_code(&scope, api::code_source(&content, false)?)
                    .await?
                {
                    CodeOutcome::Zip(c) => c,
                    _ => {
                        return Err(invalid(
                            "Please provide a source for the layer content: ZipFile, or S3Bucket and S3Key.",
                        ));
                    }
                };
                Some(
                    st.write(&scope, |s| {
                        api::publish_layer_version(s, &ctx, &name, meta, code)
                    })
                    .await?,
                )
            }
            Op::ListFunctions => Some(st.read(|s| api::list_functions(s, &ctx))?),
            Op::GetFunction(f) => Some(st.read(|s| api::get_function_op(s, &ctx, f))?),
            Op::DeleteFunction(f) => {
                st.write(&scope, |s| api::delete_function(s, &ctx, f))
                    .await?;
                None
            }
            Op::GetFunctionConfiguration(f) => {
                Some(st.read(|s| api::get_function_configuration(s, &ctx, f))?)
            }
            Op::UpdateFunctionConfiguration(f) => Some(
                st.write(&scope, |s| {
                    api::update_function_configuration(s, &ctx, f, &body)
                })
                .await?,
            ),
            Op::PublishVersion(f) => Some(
                st.write(&scope, |s| api::publish_version(s, &ctx, f, &body))
                    .await?,
            ),
            Op::ListVersionsByFunction(f) => Some(st.read(|s| api::list_versions(s, &ctx, f))?),
            Op::CreateAlias(f) => Some(
                st.write(&scope, |s| api::create_alias(s, &ctx, f, &body))
                    .await?,
            ),
            Op::ListAliases(f) => Some(st.read(|s| api::list_aliases(s, &ctx, f))?),
            Op::GetAlias(f, a) => Some(st.read(|s| api::get_alias(s, &ctx, f, a))?),
            Op::UpdateAlias(f, a) => Some(
                st.write(&scope, |s| api::update_alias(s, &ctx, f, a, &body))
                    .await?,
            ),
            Op::DeleteAlias(f, a) => {
                st.write(&scope, |s| api::delete_alias(s, &ctx, f, a))
                    .await?;
                None
            }
            Op::AddPermission(f) => Some(
                st.write(&scope, |s| api::add_permission(s, &ctx, f, &body))
                    .await?,
            ),
            Op::GetPolicy(f) => Some(st.read(|s| api::get_policy(s, &ctx, f))?),
            Op::RemovePermission(f, sid) => {
                st.write(&scope, |s| api::remove_permission(s, &ctx, f, sid))
                    .await?;
                None
            }
            Op::CreateEventSourceMapping => Some(
                st.write(&scope, |s| api::create_event_source_mapping(s, &ctx, &body))
                    .await?,
            ),
            Op::ListEventSourceMappings => {
                Some(st.read(|s| api::list_event_source_mappings(s, &ctx))?)
            }
            Op::GetEventSourceMapping(u) => {
                Some(st.read(|s| api::get_event_source_mapping(s, &ctx, u))?)
            }
            Op::UpdateEventSourceMapping(u) => Some(
                st.write(&scope, |s| {
                    api::update_event_source_mapping(s, &ctx, u, &body)
                })
                .await?,
            ),
            Op::DeleteEventSourceMapping(u) => Some(
                st.write(&scope, |s| api::delete_event_source_mapping(s, &ctx, u))
                    .await?,
            ),
            Op::ListLayers => Some(st.read(|s| api::list_layers(s, &ctx))?),
            Op::GetLayerVersionByArn => Some(st.read(|s| api::get_layer_version_by_arn(s, &ctx))?),
            Op::ListLayerVersions(l) => Some(st.read(|s| api::list_layer_versions(s, &ctx, l))?),
            Op::GetLayerVersion(l, n) => Some(st.read(|s| api::get_layer_version(s, &ctx, l, n))?),
            Op::DeleteLayerVersion(l, n) => {
                st.write(&scope, |s| api::delete_layer_version(s, &ctx, l, n))
                    .await?;
                None
            }
            Op::TagResource(arn) => {
                st.write(&scope, |s| api::tag_resource(s, &ctx, arn, &body))
                    .await?;
                None
            }
            Op::UntagResource(arn) => {
                st.write(&scope, |s| api::untag_resource(s, &ctx, arn))
                    .await?;
                None
            }
            Op::ListTags(arn) => Some(st.read(|s| api::list_tags(s, &ctx, arn))?),
            Op::GetAccountSettings => Some(st.read(|s| api::account_settings(s, &ctx))),
            Op::DownloadFunctionCode(..)
            | Op::DownloadLayerCode(..)
            | Op::Unsupported(_)
            | Op::Invoke(_)
            | Op::InvokeAsync(_) => None,
        };
        Ok(json_response(status, value))
    }

    /// Streams a stored zip: bodies up to 250 MB never sit in memory whole.
    async fn download(&self, code: CodeRef) -> Result<Response<Body>, AwsError> {
        let blobs = self.ctx().blobs.clone();
        let file = tokio::task::spawn_blocking(move || blobs.open_blob(&code.digest))
            .await
            .map_err(|e| internal(e.to_string()))?
            .map_err(|e| {
                internal(format!(
                    "the code package is missing from the blob store: {e}"
                ))
            })?;
        let mut file = tokio::fs::File::from_std(file);
        use tokio::io::AsyncSeekExt;
        file.seek(SeekFrom::Start(0))
            .await
            .map_err(|e| internal(e.to_string()))?;
        let stream = tokio_util::io::ReaderStream::new(file);
        let mut resp = Response::new(Body::from_stream(stream));
        let headers = resp.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/zip"));
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(code.size));
        Ok(resp)
    }
}

fn check_zip(r: Result<Option<u64>, ZipError>) -> Result<(), AwsError> {
    match r {
        Ok(Some(n)) if n > MAX_UNZIPPED_BYTES => Err(invalid(format!(
            "Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes"
        ))),
        Ok(_) => Ok(()),
        Err(ZipError::NotZip(why)) => {
            tracing::debug!(why, "refused a code package that is not a zip");
            Err(invalid(
                "Could not unzip uploaded file. Please check your file, then try to upload again.",
            ))
        }
        Err(ZipError::Io(e)) => Err(internal(format!("reading the code package failed: {e}"))),
    }
}

fn json_response(status: StatusCode, value: Option<Value>) -> Response<Body> {
    let body = match (&value, status) {
        (_, StatusCode::NO_CONTENT) | (None, _) => Body::empty(),
        (Some(v), _) => Body::from(v.to_string()),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if value.is_some() && status != StatusCode::NO_CONTENT {
        resp.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
    }
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

/// The whole [`cryopod::StateProvider`] comes from the cell: download URLs are computed from
/// the state on every request. What runs is derived from the state: after a restore the
/// invoker drops warm environments and re-creates the event source pollers.
impl CellProvider for LambdaService {
    type State = LambdaState;
    fn cell(&self) -> &StateCell<LambdaState> {
        &self.state
    }

    fn after_restore(&self, _state: &LambdaState) {
        self.invoker.restored();
    }
}

#[async_trait]
impl Service for LambdaService {
    async fn handle(&self, req: AwsRequest) -> Response<Body> {
        // A mapping may have been created, changed or deleted: re-derive the pollers now.
        let mappings = req.request.uri().path().contains("/event-source-mappings");
        let out = self.dispatch(req).await;
        if mappings {
            self.invoker.pollers.poke();
        }
        match out {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(code = %e.code, message = %e.message, "lambda error");
                e.to_rest_json_response()
            }
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
