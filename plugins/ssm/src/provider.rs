//! The running service: the JSON 1.1 protocol in, one operation on the state cell, the answer
//! out. All state is in one [`StateCell`], which gives transactional writes, persistence's
//! change tracking and O(1) captures; [`CellProvider`] makes it the state provider.

use std::any::Any;

use async_trait::async_trait;
use cryopod::plugin::CellProvider;
use cryopod::protocol::json::{self, Input, JsonProtocol};
use cryopod::{AwsError, AwsRequest, Body, Scope, Service, ServiceContext, StateCell};
use serde_json::Value;

use crate::api::{self, Ctx};
use crate::state::SsmState;

/// SSM's protocol: JSON 1.1, `AmazonSSM.` targets; a request holds at most a few values of
/// 8 KB and ten names, so 1 MiB is generous.
pub const PROTOCOL: JsonProtocol = JsonProtocol::v1_1("AmazonSSM.", 1024 * 1024);

/// The Parameter Store service.
pub struct SsmService {
    state: StateCell<SsmState>,
}

impl SsmService {
    /// Built by the runtime from the registration in `lib.rs`.
    pub fn new(ctx: ServiceContext) -> Self {
        Self {
            state: StateCell::new(ctx),
        }
    }

    /// Runs one operation on its JSON input in `scope`, without HTTP (tests, seeding).
    pub async fn call(&self, scope: &Scope, op: &str, input: Input) -> Result<Value, AwsError> {
        let ctx = Ctx {
            scope: scope.clone(),
            now_ms: now_ms(),
        };
        // Operation names are checked before any state is touched, so an unsupported one
        // never waits on the capture barrier.
        if !api::OPERATIONS.contains(&op) {
            return Err(api::unknown(op).into());
        }
        json::run_on(
            &self.state,
            scope,
            api::is_write(op),
            |s| api::write(s.scopes.get_mut(scope), &ctx, op, &input),
            |s| api::read(s.scopes.get(scope), &ctx, op, &input),
        )
        .await
    }

    /// Reads the live state (tests, diagnostics).
    pub fn read<T>(&self, f: impl FnOnce(&SsmState) -> T) -> T {
        self.state.read(f)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Capture, restore and reset come from the cell; nothing is derived at run time.
impl CellProvider for SsmService {
    type State = SsmState;
    fn cell(&self) -> &StateCell<SsmState> {
        &self.state
    }
}

#[async_trait]
impl Service for SsmService {
    async fn handle(&self, mut req: AwsRequest) -> http::Response<Body> {
        let result = match PROTOCOL.read(&mut req).await {
            Ok(call) => {
                // Names only: inputs hold values, which logs never show.
                tracing::debug!(op = %call.operation, scope = %req.scope, "ssm request");
                self.call(&req.scope, &call.operation, call.input).await
            }
            Err(e) => Err(e),
        };
        PROTOCOL.respond(result)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
