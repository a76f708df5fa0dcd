//! The running service: the JSON 1.1 protocol in, one operation on the state cell, the
//! answer out. The state cell gives transactional writes, change tracking and O(1) captures;
//! [`CellProvider`] makes it the state provider.

use std::any::Any;

use async_trait::async_trait;
use cryopod::plugin::CellProvider;
use cryopod::protocol::json::{self, Input, JsonProtocol};
use cryopod::{AwsError, AwsRequest, Body, Scope, Service, ServiceContext, StateCell};
use serde_json::Value;

use crate::api::{self, Ctx};
use crate::clock::Clock;
use crate::state::SecretsState;

/// Secrets Manager's protocol: JSON 1.1, `secretsmanager.` targets. A request carries at
/// most a 64 KiB value (base64: ~88 KiB) or a 20 KiB policy; 1 MiB is ample.
pub const PROTOCOL: JsonProtocol = JsonProtocol::v1_1("secretsmanager.", 1024 * 1024);

/// The Secrets Manager service.
pub struct SecretsService {
    state: StateCell<SecretsState>,
    clock: Clock,
}

impl SecretsService {
    /// Built by the runtime from the registration in `lib.rs`.
    pub fn new(ctx: ServiceContext) -> Self {
        Self {
            state: StateCell::new(ctx),
            clock: Clock::default(),
        }
    }

    /// The service's clock: tests stop and move it to end recovery windows.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Runs one operation on its JSON input in `scope`, without HTTP (tests, seeding).
    pub async fn call(&self, scope: &Scope, op: &str, input: Input) -> Result<Value, AwsError> {
        if !api::OPERATIONS.contains(&op) {
            return Err(api::unknown(op).into());
        }
        let ctx = Ctx {
            scope: scope.clone(),
            now_ms: self.clock.now_ms(),
        };
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
    pub fn read<T>(&self, f: impl FnOnce(&SecretsState) -> T) -> T {
        self.state.read(f)
    }
}

/// Nothing is derived at run time: deletion windows are checked against the clock at each
/// access, so a restored state needs no timers.
impl CellProvider for SecretsService {
    type State = SecretsState;
    fn cell(&self) -> &StateCell<SecretsState> {
        &self.state
    }
}

#[async_trait]
impl Service for SecretsService {
    async fn handle(&self, mut req: AwsRequest) -> http::Response<Body> {
        let answer = match PROTOCOL.read(&mut req).await {
            Err(e) => Err(e),
            Ok(call) => {
                // The operation only: inputs carry secret values, which logs never show.
                tracing::debug!(op = %call.operation, scope = %req.scope, "secretsmanager request");
                self.call(&req.scope, &call.operation, call.input).await
            }
        };
        PROTOCOL.respond(answer)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
