//! The running service: request handling, and the state cell that makes it a
//! [`cryopod::StateProvider`].

use std::any::Any;

use async_trait::async_trait;
use base64::Engine;
use cryopod::plugin::CellProvider;
use cryopod::{AwsError, AwsRequest, Body, Service, ServiceContext, StateCell};
use serde_json::Value;

use crate::api::{self, Op};
use crate::state::NotesState;

/// The notes service. All state lives in one [`StateCell`], which gives transactional writes,
/// change tracking for persistence and O(1) captures without any code here.
pub struct NotesService {
    state: StateCell<NotesState>,
}

impl NotesService {
    /// Built by the runtime from the registration in `lib.rs`.
    pub fn new(ctx: ServiceContext) -> Self {
        Self {
            state: StateCell::new(ctx),
        }
    }

    async fn dispatch(&self, mut req: AwsRequest) -> Result<Value, AwsError> {
        let target = req.header("x-amz-target").unwrap_or_default().to_string();
        let op_name = target.strip_prefix("Notes.").unwrap_or(&target).to_string();
        let body = req
            .body_bytes(api::MAX_ATTACHMENT_BYTES * 2 + 64 * 1024)
            .await?;
        let json: Value = if body.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                AwsError::bad_request("SerializationException", format!("invalid JSON: {e}"))
            })?
        };
        let op = Op::parse(&op_name, &json)?;
        let scope = req.scope.clone();
        if op.is_write() {
            // Store the attachment before taking the state lock: blob I/O never blocks
            // other requests, and an unused blob is collected later.
            let attachment = match &op {
                Op::PutNote {
                    attachment: Some(bytes),
                    ..
                } => Some(
                    self.state
                        .context()
                        .blobs
                        .put_async(bytes.clone().into())
                        .await
                        .map_err(|e| {
                            AwsError::new(
                                http::StatusCode::INTERNAL_SERVER_ERROR,
                                "InternalFailure",
                                e.to_string(),
                            )
                        })?,
                ),
                _ => None,
            };
            self.state
                .write(&scope, |s| api::apply_write(s, &scope, op, attachment))
                .await
        } else {
            let (mut value, attachment) = self.state.read(|s| api::answer_read(s, &scope, &op))?;
            if let Some(d) = attachment {
                let bytes = self.state.context().blobs.read(&d).map_err(|e| {
                    AwsError::new(
                        http::StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalFailure",
                        e.to_string(),
                    )
                })?;
                value["Attachment"] =
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
            }
            Ok(value)
        }
    }
}

/// The whole [`cryopod::StateProvider`]: capture, restore and reset come from the cell.
/// Notes has nothing derived at run time (no timers, no indexes), so it needs no hooks.
impl CellProvider for NotesService {
    type State = NotesState;
    fn cell(&self) -> &StateCell<NotesState> {
        &self.state
    }
}

#[async_trait]
impl Service for NotesService {
    async fn handle(&self, req: AwsRequest) -> http::Response<Body> {
        match self.dispatch(req).await {
            Ok(v) => api::ok(v),
            Err(e) => e.to_json_response(),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
