//! Running function code: execution environments, the Runtime API, `Invoke`, the
//! asynchronous queue and the SQS event source pollers.
//!
//! What is state and what is not: functions, versions, aliases, layers and event source
//! mappings are state (snapshotted by the provider). Everything here is derived from that
//! state at run time and is never captured: warm environments (processes), the asynchronous
//! queue and the pollers. After a restore the pollers are re-created from the mappings in the
//! restored state, and warm environments are discarded so the next invocation runs the
//! restored code.
//!
//! - [`env`]: one execution environment (directory, process, logs);
//! - [`runtime_api`]: the Runtime API each environment's runtime client talks to;
//! - [`operation`]: the `Invoke` operation's headers and answers;
//! - [`asynq`]: `Event` invocations: queue, retries, dead-letter queue;
//! - [`sqs`]: SQS event source mappings;
//! - [`unzip`]: unpacking packages and layers.

pub mod asynq;
pub mod env;
pub mod operation;
pub mod runtime_api;
pub mod sqs;
pub mod unzip;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use cryopod::{AwsError, Scope, ServiceContext, StateCell};
use http::StatusCode;
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::oneshot;

use crate::error::not_found;
use crate::names;
use crate::state::{CodeRef, FunctionConfig, LambdaState};
use env::{Env, EnvError, Spec};
use runtime_api::{Job, Reply};

/// How long an environment may take from start to its first `/invocation/next` (AWS's
/// init phase limit).
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of log `LogType=Tail` returns, as AWS.
const TAIL_BYTES: usize = 4096;
/// Default idle time after which a warm environment is stopped (`LAMBDA_KEEPALIVE_MS`).
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(600);
/// Default most environments running at once (`CRYOPOD_LAMBDA_MAX_ENVIRONMENTS`).
const DEFAULT_MAX_ENVIRONMENTS: usize = 32;

/// 429 `TooManyRequestsException`, as AWS answers a concurrency limit.
pub fn too_many(msg: impl Into<String>) -> AwsError {
    AwsError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequestsException",
        msg,
    )
}

fn env_error(e: EnvError) -> AwsError {
    let code = match &e {
        EnvError::Unzip(_) => "InvalidZipFileException",
        EnvError::Io(_) => "ServiceException",
        _ => "InvalidRuntimeException",
    };
    let status = match &e {
        EnvError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_GATEWAY,
    };
    AwsError::new(status, code, e.to_string())
}

/// A resolved invocation target: one version of one function.
#[derive(Clone, Debug)]
pub struct Target {
    /// The function's scope.
    pub scope: Scope,
    /// Function name.
    pub name: String,
    /// `$LATEST` or a version number (aliases resolved).
    pub version: String,
    /// The ARN as invoked: qualified when the caller named a version or alias.
    pub arn: String,
    /// The version's configuration.
    pub config: FunctionConfig,
    /// The version's revision: a new one means new code or configuration.
    pub revision: String,
    /// The layers' packages in order.
    pub layers: Vec<CodeRef>,
}

/// A number in `[0, 1)` for weighted alias routing.
fn random_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

/// Finds what `raw` (name, partial or full ARN, possibly qualified) with `qualifier` names.
pub fn resolve(
    state: &LambdaState,
    scope: &Scope,
    raw: &str,
    qualifier: Option<String>,
) -> Result<Target, AwsError> {
    let r = names::parse_function_ref(scope, raw)?;
    let q = names::merge_qualifier(r.qualifier, qualifier)?;
    let name = r.name;
    let arn = names::qualified_arn(scope, &name, q.as_deref());
    let missing = || not_found(format!("Function not found: {arn}"));
    let f = state
        .scopes
        .get(scope)
        .and_then(|s| s.functions.get(&name))
        .ok_or_else(missing)?;
    let mut label = q.clone().unwrap_or_else(|| "$LATEST".into());
    if let Some(a) = f.aliases.get(&label) {
        label = a.function_version.clone();
        let mut roll = random_unit();
        for (v, w) in &a.routing {
            if roll < *w {
                label = v.clone();
                break;
            }
            roll -= w;
        }
    }
    let v = if label == "$LATEST" {
        &f.latest
    } else {
        let n: u64 = label.parse().map_err(|_| missing())?;
        f.versions.get(&n).ok_or_else(missing)?
    };
    let mut layers = Vec::new();
    for l in &v.config.layers {
        let found = names::parse_layer_version_arn(l).and_then(|(s, ln, n)| {
            state
                .scopes
                .get(&s)?
                .layers
                .get(&ln)?
                .versions
                .get(&n)
                .map(|lv| lv.code)
        });
        layers.push(found.ok_or_else(|| {
            AwsError::new(
                StatusCode::BAD_GATEWAY,
                "InvalidRuntimeException",
                format!("The layer version {l} is not available in this emulator."),
            )
        })?);
    }
    Ok(Target {
        scope: scope.clone(),
        name,
        version: label,
        arn,
        config: v.config.clone(),
        revision: v.revision_id.clone(),
        layers,
    })
}

/// What one synchronous invocation produced.
#[derive(Debug)]
pub struct Outcome {
    /// The response, or the error payload when `function_error` is set.
    pub payload: Bytes,
    /// `Unhandled` when the function failed (AWS's `X-Amz-Function-Error`).
    pub function_error: Option<&'static str>,
    /// Base64 of the last 4 KB of the invocation's log, when asked for.
    pub log_tail: Option<String>,
    /// The version that ran.
    pub version: String,
}

type PoolKey = (Scope, String, String);

#[derive(Default)]
struct Slot {
    revision: String,
    idle: Vec<(Env, Instant)>,
    busy: usize,
}

#[derive(Default)]
struct Pool {
    slots: HashMap<PoolKey, Slot>,
    running: usize,
}

/// Where an acquired environment comes from.
enum Acquired {
    Warm(Env),
    Cold,
}

/// Runs functions. Holds the warm environments, the asynchronous queue and the pollers;
/// none of it is state (see the module docs).
pub struct Invoker {
    state: Arc<StateCell<LambdaState>>,
    ctx: ServiceContext,
    pool: Mutex<Pool>,
    endpoint: Mutex<String>,
    max_envs: usize,
    keepalive: Duration,
    started: AtomicBool,
    pub(crate) pollers: sqs::Pollers,
    pub(crate) queue: asynq::Queue,
    me: Weak<Invoker>,
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok()?.trim().parse().ok()
}

impl Invoker {
    /// An invoker over the service's state.
    pub fn new(ctx: ServiceContext, state: Arc<StateCell<LambdaState>>) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            state,
            ctx,
            pool: Mutex::new(Pool::default()),
            endpoint: Mutex::new("http://127.0.0.1:4566".into()),
            max_envs: env_number("CRYOPOD_LAMBDA_MAX_ENVIRONMENTS")
                .unwrap_or(DEFAULT_MAX_ENVIRONMENTS)
                .max(1),
            keepalive: env_number::<u64>("LAMBDA_KEEPALIVE_MS")
                .map_or(DEFAULT_KEEPALIVE, Duration::from_millis),
            started: AtomicBool::new(false),
            pollers: sqs::Pollers::default(),
            queue: asynq::Queue::default(),
            me: me.clone(),
        })
    }

    /// The service state (functions are resolved from it at every invocation).
    pub fn state(&self) -> &StateCell<LambdaState> {
        &self.state
    }

    /// Remembers the endpoint clients reach the emulator at, for `AWS_ENDPOINT_URL`.
    pub fn set_endpoint(&self, endpoint: &str) {
        let mut e = self.endpoint.lock();
        if *e != endpoint {
            *e = endpoint.to_string();
        }
    }

    /// Starts the background work (reaper, poller reconciliation) on first use; needs a
    /// tokio runtime, which the service's constructor may not have.
    pub fn wake(&self) {
        if tokio::runtime::Handle::try_current().is_err()
            || self.started.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let me = self.me.clone();
        let waker = self.pollers.waker();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                match me.upgrade() {
                    Some(inv) => {
                        inv.reap();
                        sqs::reconcile(&inv);
                    }
                    None => break,
                }
                tokio::select! {
                    _ = tick.tick() => {}
                    () = waker.notified() => {}
                }
            }
        });
    }

    /// After a restore: warm environments may run code the new state no longer has, so they
    /// are stopped; pollers are re-created from the restored mappings.
    pub fn restored(&self) {
        let stale: Vec<Slot> = {
            let mut p = self.pool.lock();
            let slots = std::mem::take(&mut p.slots);
            slots
                .into_values()
                .map(|mut s| {
                    p.running -= s.idle.len();
                    // Busy environments finish their invocation and are then discarded.
                    s.revision = String::new();
                    s
                })
                .collect()
        };
        drop(stale);
        self.wake();
        self.pollers.poke();
    }

    fn reap(&self) {
        let now = Instant::now();
        let mut old = Vec::new();
        let mut p = self.pool.lock();
        let mut stopped = 0;
        for slot in p.slots.values_mut() {
            let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut slot.idle)
                .into_iter()
                .partition(|(e, t)| !e.is_dead() && now.duration_since(*t) < self.keepalive);
            slot.idle = keep;
            stopped += gone.len();
            old.extend(gone);
        }
        p.running -= stopped;
        p.slots.retain(|_, s| s.busy > 0 || !s.idle.is_empty());
        drop(p);
        if !old.is_empty() {
            tracing::info!(count = old.len(), "stopped idle execution environments");
        }
    }

    fn acquire(&self, t: &Target) -> Result<Acquired, AwsError> {
        let key = (t.scope.clone(), t.name.clone(), t.version.clone());
        let mut p = self.pool.lock();
        let running = p.running;
        let slot = p.slots.entry(key).or_default();
        let mut stale = Vec::new();
        if slot.revision != t.revision {
            slot.revision = t.revision.clone();
            stale = std::mem::take(&mut slot.idle);
        }
        while let Some((env, _)) = slot.idle.pop() {
            if !env.is_dead() {
                slot.busy += 1;
                p.running -= stale.len();
                return Ok(Acquired::Warm(env));
            }
            stale.push((env, Instant::now()));
        }
        if running - stale.len() >= self.max_envs {
            p.running -= stale.len();
            return Err(too_many(format!(
                "Rate Exceeded. {} execution environments are running, the most this emulator runs at once (CRYOPOD_LAMBDA_MAX_ENVIRONMENTS).",
                self.max_envs
            )));
        }
        slot.busy += 1;
        p.running = running - stale.len() + 1;
        Ok(Acquired::Cold)
    }

    fn release(&self, t: &Target, env: Option<Env>) {
        let key = (t.scope.clone(), t.name.clone(), t.version.clone());
        let mut p = self.pool.lock();
        let keep = match (p.slots.get_mut(&key), env) {
            (Some(slot), Some(env)) if slot.revision == t.revision && !env.is_dead() => {
                slot.busy = slot.busy.saturating_sub(1);
                slot.idle.push((env, Instant::now()));
                true
            }
            (Some(slot), _) => {
                slot.busy = slot.busy.saturating_sub(1);
                false
            }
            (None, _) => false,
        };
        if !keep {
            p.running = p.running.saturating_sub(1);
        }
    }

    /// Checks that `t` could run here without running it (`DryRun`, `Event`).
    pub fn check(&self, t: &Target) -> Result<(), AwsError> {
        env::check_runnable(&t.config).map_err(env_error)
    }

    /// Runs one invocation of `t` and waits for its result. The invocation runs on its own
    /// task, so a caller that goes away (a client disconnecting, a poller stopping) does not
    /// leave an environment half used.
    pub async fn invoke(
        &self,
        t: &Target,
        payload: Bytes,
        tail: bool,
    ) -> Result<Outcome, AwsError> {
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| crate::error::internal("the Lambda service is shutting down"))?;
        let t = t.clone();
        tokio::spawn(async move { me.invoke_here(&t, payload, tail).await })
            .await
            .map_err(|e| crate::error::internal(format!("the invocation failed: {e}")))?
    }

    async fn invoke_here(
        &self,
        t: &Target,
        payload: Bytes,
        tail: bool,
    ) -> Result<Outcome, AwsError> {
        self.check(t)?;
        let (env, cold) = match self.acquire(t)? {
            Acquired::Warm(e) => (e, false),
            Acquired::Cold => {
                let spec = Spec {
                    scope: t.scope.clone(),
                    name: t.name.clone(),
                    version: t.version.clone(),
                    config: t.config.clone(),
                    layers: t.layers.clone(),
                    endpoint: self.endpoint.lock().clone(),
                };
                match env::start(spec, self.ctx.blobs.clone()).await {
                    Ok(e) => (e, true),
                    Err(e) => {
                        self.release(t, None);
                        return Err(env_error(e));
                    }
                }
            }
        };
        let id = uuid::Uuid::new_v4().to_string();
        let mark = env.logs.total();
        let started = Instant::now();
        let (result, init_ms) = self.run(&env, t, &id, payload).await;
        let took = started.elapsed();
        let (payload, function_error, healthy) = match result {
            Ok(Reply::Ok(b)) => (b, None, true),
            Ok(Reply::Err(b)) => (b, Some("Unhandled"), true),
            Err(b) => (b, Some("Unhandled"), false),
        };
        let log_tail = if tail {
            Some(
                self.tail(&env, t, &id, mark, took, init_ms.filter(|_| cold))
                    .await,
            )
        } else {
            None
        };
        if !healthy {
            env.kill();
        }
        self.release(t, Some(env));
        Ok(Outcome {
            payload,
            function_error,
            log_tail,
            version: t.version.clone(),
        })
    }

    /// Hands the invocation to `env` and waits, within the init and function timeouts,
    /// for its answer. `Err` is an error payload after which the environment is unusable.
    async fn run(
        &self,
        env: &Env,
        t: &Target,
        id: &str,
        payload: Bytes,
    ) -> (Result<Reply, Bytes>, Option<f64>) {
        let timeout = Duration::from_secs(u64::from(t.config.timeout.max(1)));
        let (picked_tx, picked) = oneshot::channel();
        let (reply_tx, reply) = oneshot::channel();
        let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let job = Job {
            id: id.to_string(),
            payload,
            deadline_ms: u64::try_from(now_ms).unwrap_or(0) + timeout.as_millis() as u64,
            arn: t.arn.clone(),
            picked: picked_tx,
            reply: reply_tx,
        };
        let init_start = Instant::now();
        if !env.send(job).await {
            return (Err(exit_error(id, &env.exited().await)), None);
        }
        tokio::select! {
            r = picked => if r.is_err() {
                return (Err(self.died(env, id).await), None);
            },
            how = env.exited() => {
                return (Err(env.init_error().unwrap_or_else(|| exit_error(id, &how))), None);
            }
            () = tokio::time::sleep(INIT_TIMEOUT) => {
                return (Err(timeout_error(id, INIT_TIMEOUT)), None);
            }
        }
        let init_ms = env
            .mark_initialised()
            .then(|| init_start.elapsed().as_secs_f64() * 1000.0);
        let out = tokio::select! {
            r = reply => match r {
                Ok(reply) => Ok(reply),
                Err(_) => Err(self.died(env, id).await),
            },
            how = env.exited() => Err(exit_error(id, &how)),
            () = tokio::time::sleep(timeout) => {
                tracing::info!(function = %t.name, request = %id, "invocation timed out");
                env.logs.push(format!("{} {id} Task timed out after {}.00 seconds\n", now_string(), timeout.as_secs()).as_bytes());
                Err(timeout_error(id, timeout))
            }
        };
        (out, init_ms)
    }

    async fn died(&self, env: &Env, id: &str) -> Bytes {
        exit_error(id, &env.exited().await)
    }

    /// `LogType=Tail`: the invocation's output framed as AWS frames it, last 4 KB, base64.
    async fn tail(
        &self,
        env: &Env,
        t: &Target,
        id: &str,
        mark: u64,
        took: Duration,
        init_ms: Option<f64>,
    ) -> String {
        // The runtime flushes before it answers, but the pipe may still hold its last
        // lines: wait until the output stops growing (a few milliseconds at most).
        let mut seen = env.logs.total();
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let now = env.logs.total();
            if now == seen {
                break;
            }
            seen = now;
        }
        let body = env.logs.since(mark);
        let ms = took.as_secs_f64() * 1000.0;
        let init = init_ms.map_or(String::new(), |i| format!("\tInit Duration: {i:.2} ms"));
        let mut text = format!("START RequestId: {id} Version: {}\n", t.version).into_bytes();
        text.extend_from_slice(&body);
        text.extend_from_slice(
            format!(
                "END RequestId: {id}\nREPORT RequestId: {id}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB{init}\t\n",
                ms.ceil() as u64,
                t.config.memory_size,
                t.config.memory_size.min(64),
            )
            .as_bytes(),
        );
        let start = text.len().saturating_sub(TAIL_BYTES);
        base64::engine::general_purpose::STANDARD.encode(&text[start..])
    }
}

/// `2024-01-01T00:00:00.000Z`, as the runtime prefixes log lines.
fn now_string() -> String {
    crate::api::now_string().replace("+0000", "Z")
}

/// AWS's answer for a function that ran past its timeout.
fn timeout_error(id: &str, timeout: Duration) -> Bytes {
    Bytes::from(
        json!({
            "errorType": "Sandbox.Timedout",
            "errorMessage": format!("RequestId: {id} Error: Task timed out after {}.00 seconds", timeout.as_secs()),
        })
        .to_string(),
    )
}

/// AWS's answer for a runtime that exited during an invocation.
fn exit_error(id: &str, how: &str) -> Bytes {
    Bytes::from(
        json!({
            "errorType": "Runtime.ExitError",
            "errorMessage": format!("RequestId: {id} Error: {how}"),
        })
        .to_string(),
    )
}
