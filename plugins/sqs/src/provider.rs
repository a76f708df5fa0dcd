//! The running service: protocol detection, dispatch, long polling, and the
//! [`StateProvider`] that snapshots and restores it.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cryopod::plugin::CellProvider;
use cryopod::{AwsRequest, Body, ProviderError, Scope, Service, ServiceContext, StateCell};
use http::{HeaderValue, Response, StatusCode};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::Notify;

use crate::api::{self, Call, ReceiveOutcome};
use crate::clock::Clock;
use crate::error::{ErrorKind, SqsError, SqsResult};
use crate::protocol;
use crate::state::SqsState;

/// Every operation this service answers, in AWS's names: the actions `SqsService::call` answers
/// (the rest of [`ACTIONS`] are routed here and refused as unsupported). The registration
/// carries it, the README's service table is checked against it, and `tests/registration.rs`
/// checks each is dispatched.
pub const OPERATIONS: &[&str] = &[
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
    "CreateQueue",
    "DeleteMessage",
    "DeleteMessageBatch",
    "DeleteQueue",
    "GetQueueAttributes",
    "GetQueueUrl",
    "ListDeadLetterSourceQueues",
    "ListQueueTags",
    "ListQueues",
    "PurgeQueue",
    "ReceiveMessage",
    "SendMessage",
    "SendMessageBatch",
    "SetQueueAttributes",
    "TagQueue",
    "UntagQueue",
];

/// Largest request body accepted: a 1 MiB batch, base64 and form encoding included.
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Every action of the SQS API, for query-protocol routing.
pub const ACTIONS: &[&str] = &[
    "AddPermission",
    "CancelMessageMoveTask",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
    "CreateQueue",
    "DeleteMessage",
    "DeleteMessageBatch",
    "DeleteQueue",
    "GetQueueAttributes",
    "GetQueueUrl",
    "ListDeadLetterSourceQueues",
    "ListMessageMoveTasks",
    "ListQueueTags",
    "ListQueues",
    "PurgeQueue",
    "ReceiveMessage",
    "RemovePermission",
    "SendMessage",
    "SendMessageBatch",
    "SetQueueAttributes",
    "StartMessageMoveTask",
    "TagQueue",
    "UntagQueue",
];

/// Which protocol a request came in, so the answer goes out in the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// awsJson1.0 (`X-Amz-Target: AmazonSQS.Op`).
    Json,
    /// awsQuery (`Action=Op` form).
    Query,
}

type QueueKey = (Scope, String);

/// The SQS service. All state is in one [`StateCell`]; long polls wait on one [`Notify`] per
/// queue, outside any lock.
pub struct SqsService {
    state: StateCell<SqsState>,
    clock: Clock,
    waiters: Mutex<HashMap<QueueKey, Arc<Notify>>>,
}

impl SqsService {
    /// Built by the runtime from the registration in `lib.rs`.
    pub fn new(ctx: ServiceContext) -> Self {
        Self {
            state: StateCell::new(ctx),
            clock: Clock::default(),
            waiters: Mutex::new(HashMap::new()),
        }
    }

    /// The service's clock: tests freeze or advance it to make timeouts pass without sleeping.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Reads the live state (tests, diagnostics).
    pub fn read<T>(&self, f: impl FnOnce(&SqsState) -> T) -> T {
        self.state.read(f)
    }

    fn notify_for(&self, scope: &Scope, name: &str) -> Arc<Notify> {
        self.waiters
            .lock()
            .entry((scope.clone(), name.to_string()))
            .or_default()
            .clone()
    }

    fn wake(&self, scope: &Scope, name: &str) {
        if let Some(n) = self.waiters.lock().get(&(scope.clone(), name.to_string())) {
            n.notify_waiters();
        }
    }

    fn wake_all(&self) {
        for n in self.waiters.lock().values() {
            n.notify_waiters();
        }
    }

    /// Runs one operation on its JSON-shaped input.
    pub async fn call(&self, op: &str, call: &Call, input: &Value) -> SqsResult<Value> {
        let touched = input
            .get("QueueUrl")
            .and_then(Value::as_str)
            .and_then(|u| api::locate(call, u).ok());
        let write = |f: fn(&mut SqsState, &Call, &Value) -> SqsResult<Value>| async move {
            self.state.write(&call.scope, |s| f(s, call, input)).await
        };
        let out = match op {
            "CreateQueue" => write(api::create_queue).await,
            "DeleteQueue" => write(api::delete_queue).await,
            "GetQueueUrl" => self.state.read(|s| api::get_queue_url(s, call, input)),
            "ListQueues" => self.state.read(|s| api::list_queues(s, call, input)),
            "ListDeadLetterSourceQueues" => self
                .state
                .read(|s| api::list_dead_letter_sources(s, call, input)),
            "GetQueueAttributes" => self
                .state
                .read(|s| api::get_queue_attributes(s, call, input)),
            "SetQueueAttributes" => write(api::set_queue_attributes).await,
            "TagQueue" => write(api::tag_queue).await,
            "UntagQueue" => write(api::untag_queue).await,
            "ListQueueTags" => self.state.read(|s| api::list_queue_tags(s, call, input)),
            "PurgeQueue" => write(api::purge_queue).await,
            "SendMessage" => write(api::send_message).await,
            "SendMessageBatch" => write(api::send_message_batch).await,
            "DeleteMessage" => write(api::delete_message).await,
            "DeleteMessageBatch" => write(api::delete_message_batch).await,
            "ChangeMessageVisibility" => write(api::change_message_visibility).await,
            "ChangeMessageVisibilityBatch" => write(api::change_message_visibility_batch).await,
            "ReceiveMessage" => self.receive(call, input).await,
            "AddPermission"
            | "RemovePermission"
            | "StartMessageMoveTask"
            | "CancelMessageMoveTask"
            | "ListMessageMoveTasks" => Err(SqsError::new(
                ErrorKind::UnsupportedOperation,
                format!("{op} is not supported by this emulator."),
            )),
            other => Err(SqsError::new(
                ErrorKind::InvalidAction,
                format!("The action {other} is not valid for this endpoint."),
            )),
        };
        if out.is_ok()
            && let Some((scope, name)) = touched
            && op != "ReceiveMessage"
        {
            // Sends, visibility changes and deletes (of the queue) change what a waiting
            // long poll would find.
            self.wake(&scope, &name);
        }
        out
    }

    /// `ReceiveMessage` with long polling: tries, and if nothing is visible waits on the
    /// queue's notifier (or until the next delayed/in-flight message becomes visible, or the
    /// wait ends), never holding the state lock or the capture barrier while waiting.
    async fn receive(&self, call: &Call, input: &Value) -> SqsResult<Value> {
        let url = input
            .get("QueueUrl")
            .and_then(Value::as_str)
            .ok_or_else(|| SqsError::missing("QueueUrl"))?;
        let (scope, name) = api::locate(call, url)?;
        let params = api::parse_receive(input)?;
        // Builds the queue's receive index on the live state if this is its first receive
        // since a restore: built inside a write it would live only in that write's copy,
        // and an idle receive (which discards its copy) would build it again every time.
        let default_wait = self.state.read(|s| {
            s.scopes
                .get(&scope)
                .and_then(|r| r.queues.get(&name))
                .map(|q| {
                    q.ready();
                    q.attr_i64("ReceiveMessageWaitTimeSeconds", 0)
                })
                .ok_or_else(SqsError::no_queue)
        })?;
        let wait = Duration::from_secs(params.wait.unwrap_or(default_wait).max(0) as u64);
        let deadline = tokio::time::Instant::now() + wait;
        let notify = self.notify_for(&scope, &name);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let clock_changed = self.clock.changed();
            tokio::pin!(clock_changed);
            let mut attempt = call.clone();
            attempt.now = self.clock.now_ms();
            let result = self
                .state
                .write(&scope, |s| {
                    api::receive_once(s, &attempt, &scope, &name, &params)
                })
                .await;
            let next_visible = match result {
                Ok((messages, moved)) => {
                    for (s, q) in &moved {
                        self.wake(s, q);
                    }
                    if !messages.is_empty() || tokio::time::Instant::now() >= deadline {
                        return Ok(serde_json::json!({ "Messages": messages }));
                    }
                    None
                }
                Err(ReceiveOutcome::Failed(e)) => return Err(e),
                Err(ReceiveOutcome::Idle(next)) => next,
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(serde_json::json!({}));
            }
            let mut until = deadline;
            if let Some(at) = next_visible {
                let ms = (at - attempt.now).max(1) as u64;
                until = until.min(now + Duration::from_millis(ms));
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = &mut clock_changed => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn dispatch(&self, mut req: AwsRequest) -> (Protocol, String, SqsResult<Value>) {
        let target = req.header("x-amz-target").map(str::to_string);
        let body = match req.body_bytes(MAX_REQUEST_BYTES).await {
            Ok(b) => b,
            Err(e) => {
                let proto = if target.is_some() {
                    Protocol::Json
                } else {
                    Protocol::Query
                };
                return (proto, String::new(), Err(e.into()));
            }
        };
        let call = Call {
            scope: req.scope.clone(),
            endpoint: req.endpoint.clone(),
            now: self.clock.now_ms(),
        };
        let (proto, op, input) = if let Some(t) = target {
            let op = t.strip_prefix("AmazonSQS.").unwrap_or(&t).to_string();
            let input = if body.is_empty() {
                Ok(Value::Object(Default::default()))
            } else {
                serde_json::from_slice::<Value>(&body).map_err(|e| {
                    SqsError::new(ErrorKind::MalformedRequest, format!("invalid JSON: {e}"))
                })
            };
            (Protocol::Json, op, input)
        } else {
            let mut params: Vec<(String, String)> = req
                .request
                .uri()
                .query()
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default();
            params.extend(form_urlencoded::parse(&body).into_owned());
            match protocol::query_to_json(params) {
                Ok((op, mut input)) => {
                    // The query protocol may address the queue by posting to its URL.
                    let path = req.request.uri().path().to_string();
                    if input.get("QueueUrl").is_none()
                        && path.trim_matches('/').contains('/')
                        && let Value::Object(m) = &mut input
                    {
                        m.insert(
                            "QueueUrl".into(),
                            Value::String(format!("{}{}", call.endpoint, path)),
                        );
                    }
                    (Protocol::Query, op, Ok(input))
                }
                Err(e) => (Protocol::Query, String::new(), Err(e)),
            }
        };
        let out = match input {
            Ok(input) => self.call(&op, &call, &input).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &out {
            tracing::debug!(op = %op, scope = %call.scope, error = %e, "sqs request refused");
        }
        (proto, op, out)
    }
}

fn query_ok(op: &str, out: &Value) -> Response<Body> {
    let id = uuid::Uuid::new_v4().to_string();
    let mut resp = Response::new(Body::from(protocol::json_to_xml(op, out, &id)));
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

/// The [`cryopod::StateProvider`] comes from the cell, with SQS's clock kept right: each
/// captured scope is stamped with the capture time, and a restore shifts each queue's clock
/// by the time elapsed since, so delays, visibility timeouts and deduplication windows resume
/// where they were; then every long poll is woken to look at the new state. The restore is
/// one atomic swap, so dead-letter queues and their sources appear together; nothing else is
/// derived at run time (a queue's receive index is built at its first receive).
impl CellProvider for SqsService {
    type State = SqsState;
    fn cell(&self) -> &StateCell<SqsState> {
        &self.state
    }
    fn on_capture(&self, state: &mut SqsState) {
        state.stamp_capture(self.clock.now_ms());
    }
    fn before_install(&self, state: &mut SqsState) -> Result<(), ProviderError> {
        state.resume_at(self.clock.now_ms());
        Ok(())
    }
    fn after_restore(&self, _installed: &SqsState) {
        self.wake_all();
    }
}

#[async_trait]
impl Service for SqsService {
    async fn handle(&self, req: AwsRequest) -> Response<Body> {
        let (proto, op, out) = self.dispatch(req).await;
        match (proto, out) {
            (Protocol::Json, Ok(v)) => cryopod::aws::json_response(StatusCode::OK, &v),
            (Protocol::Json, Err(e)) => e.to_json_response(),
            (Protocol::Query, Ok(v)) => query_ok(&op, &v),
            (Protocol::Query, Err(e)) => e.to_query_response(),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
