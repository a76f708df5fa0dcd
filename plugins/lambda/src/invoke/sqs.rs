//! SQS event source mappings that run: one poller per enabled mapping receives batches from
//! the SQS service, invokes the function synchronously and deletes what it processed.
//!
//! The SQS service is reached through the framework's service lookup with synthetic
//! awsJson1.0 requests (`AmazonSQS.ReceiveMessage`, ...), never through a crate dependency:
//! whatever the SQS plugin does for a client (visibility timeouts, receive counts, redrive to
//! its dead-letter queue) it does for the poller too.
//!
//! Pollers are not state: [`reconcile`] derives them from the mappings in the state, every
//! second and right after a change or a restore, so a restored mapping polls again from
//! wherever its queue is (the queue's messages are the SQS service's state).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use cryopod::{AwsRequest, Body, Scope, Service};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Invoker, resolve};
use crate::state::LambdaState;

/// Largest SQS answer the poller reads (10 messages of 1 MiB and their attributes).
const MAX_SQS_ANSWER: usize = 12 * 1024 * 1024;
/// How long one receive waits for messages (SQS long polling).
const LONG_POLL_SECONDS: u64 = 1;
/// Pause after an error (SQS not running, queue missing, function gone).
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// What a poller does; a change restarts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingConf {
    /// The queue's ARN.
    pub source_arn: String,
    /// The function's ARN, qualified or not.
    pub function_arn: String,
    /// Most records per invocation.
    pub batch_size: usize,
    /// `MaximumBatchingWindowInSeconds`.
    pub window: Duration,
    /// `FunctionResponseTypes` holds `ReportBatchItemFailures`.
    pub report_failures: bool,
}

/// The running pollers, by (scope, mapping UUID).
#[derive(Default)]
pub struct Pollers {
    running: Mutex<HashMap<(Scope, String), (MappingConf, CancellationToken)>>,
    wake: Arc<Notify>,
}

impl Pollers {
    /// Asks for a reconciliation now (after a mapping changed or a restore).
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// The notifier the background loop waits on.
    pub(crate) fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Number of pollers running (for tests and health).
    pub fn count(&self) -> usize {
        self.running.lock().len()
    }
}

impl Drop for Pollers {
    fn drop(&mut self) {
        for (_, (_, t)) in self.running.lock().drain() {
            t.cancel();
        }
    }
}

fn extra_json(m: &crate::state::EventSourceMapping, field: &str) -> Option<Value> {
    serde_json::from_str(m.extra.get(field)?).ok()
}

/// The enabled SQS mappings of `state`.
fn desired(state: &LambdaState) -> HashMap<(Scope, String), MappingConf> {
    let mut out = HashMap::new();
    for (scope, r) in state.scopes.iter() {
        for (uuid, m) in &r.event_source_mappings {
            let Some(src) = m.event_source_arn.as_ref() else {
                continue;
            };
            if !m.enabled || !src.starts_with("arn:aws:sqs:") {
                continue;
            }
            let window = extra_json(m, "MaximumBatchingWindowInSeconds")
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            let report_failures = extra_json(m, "FunctionResponseTypes")
                .and_then(|v| v.as_array().cloned())
                .is_some_and(|a| a.iter().any(|t| t == "ReportBatchItemFailures"));
            out.insert(
                (scope.clone(), uuid.clone()),
                MappingConf {
                    source_arn: src.clone(),
                    function_arn: m.function_arn.clone(),
                    batch_size: (m.batch_size as usize).max(1),
                    window: Duration::from_secs(window.min(300)),
                    report_failures,
                },
            );
        }
    }
    out
}

/// Starts pollers for new or changed mappings and stops those of deleted or disabled ones.
pub fn reconcile(inv: &Arc<Invoker>) {
    let want = inv.state().read(desired);
    let mut running = inv.pollers.running.lock();
    running.retain(|k, (conf, stop)| {
        let keep = want.get(k) == Some(conf);
        if !keep {
            stop.cancel();
        }
        keep
    });
    for (key, conf) in want {
        if running.contains_key(&key) {
            continue;
        }
        let stop = CancellationToken::new();
        tracing::info!(scope = %key.0, mapping = %key.1, queue = %conf.source_arn, "starting an SQS event source poller");
        tokio::spawn(poll(
            Arc::downgrade(inv),
            key.0.clone(),
            conf.clone(),
            stop.clone(),
        ));
        running.insert(key, (conf, stop));
    }
}

/// The scope and `QueueUrl` path of a queue ARN (`arn:aws:sqs:region:account:name`).
pub fn queue_of(arn: &str) -> Option<(Scope, String)> {
    let p: Vec<&str> = arn.split(':').collect();
    match p.as_slice() {
        ["arn", _, "sqs", region, account, name] => Some((
            Scope::new(account.to_string(), region.to_string()),
            format!("/{account}/{name}"),
        )),
        _ => None,
    }
}

/// One awsJson1.0 call to the SQS service; `Err` carries SQS's error text.
pub async fn sqs_call(
    sqs: &Arc<dyn Service>,
    scope: &Scope,
    endpoint: &str,
    op: &str,
    input: Value,
) -> Result<Value, String> {
    let request = http::Request::builder()
        .method("POST")
        .uri("/")
        .header("x-amz-target", format!("AmazonSQS.{op}"))
        .header("content-type", "application/x-amz-json-1.0")
        .body(Body::from(input.to_string()))
        .map_err(|e| e.to_string())?;
    let resp = sqs
        .handle(AwsRequest {
            scope: scope.clone(),
            access_key_id: Some(scope.account.clone()),
            endpoint: endpoint.to_string(),
            request,
        })
        .await;
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), MAX_SQS_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("reading the SQS answer failed: {e}"))?
        .to_bytes();
    let v: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| format!("SQS answered invalid JSON: {e}"))?
    };
    if status.is_success() {
        Ok(v)
    } else {
        Err(format!("SQS {op} failed ({status}): {v}"))
    }
}

async fn poll(me: Weak<Invoker>, scope: Scope, conf: MappingConf, stop: CancellationToken) {
    let Some((qscope, qurl)) = queue_of(&conf.source_arn) else {
        tracing::warn!(arn = %conf.source_arn, "not an SQS queue ARN; the mapping does not poll");
        return;
    };
    while !stop.is_cancelled() {
        let Some(inv) = me.upgrade() else { break };
        let Some(sqs) = inv.ctx.service("sqs") else {
            drop(inv);
            pause(&stop).await;
            continue;
        };
        let endpoint = inv.endpoint.lock().clone();
        let batch = tokio::select! {
            b = receive(&sqs, &qscope, &endpoint, &qurl, &conf) => b,
            () = stop.cancelled() => break,
        };
        let step = match batch {
            Ok(msgs) if msgs.is_empty() => Ok(()),
            Ok(msgs) => process(&inv, &sqs, &scope, &qscope, &endpoint, &qurl, &conf, msgs).await,
            Err(e) => Err(e),
        };
        drop(inv);
        if let Err(e) = step {
            tracing::debug!(queue = %conf.source_arn, error = %e, "SQS poller");
            pause(&stop).await;
        }
    }
}

async fn pause(stop: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(ERROR_PAUSE) => {}
        () = stop.cancelled() => {}
    }
}

/// Receives up to `batch_size` messages, waiting up to the batching window for more.
async fn receive(
    sqs: &Arc<dyn Service>,
    scope: &Scope,
    endpoint: &str,
    url: &str,
    conf: &MappingConf,
) -> Result<Vec<Value>, String> {
    let mut out: Vec<Value> = Vec::new();
    let deadline = Instant::now() + conf.window;
    loop {
        let want = (conf.batch_size - out.len()).min(10);
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = if out.is_empty() {
            LONG_POLL_SECONDS.max(left.as_secs().min(20))
        } else {
            left.as_secs().min(20)
        };
        let v = sqs_call(
            sqs,
            scope,
            endpoint,
            "ReceiveMessage",
            json!({
                "QueueUrl": url,
                "MaxNumberOfMessages": want,
                "WaitTimeSeconds": wait,
                "AttributeNames": ["All"],
                "MessageSystemAttributeNames": ["All"],
                "MessageAttributeNames": ["All"],
            }),
        )
        .await?;
        let got = v
            .get("Messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let empty = got.is_empty();
        out.extend(got);
        if out.len() >= conf.batch_size || Instant::now() >= deadline || (empty && !out.is_empty())
        {
            return Ok(out);
        }
        if out.is_empty() && conf.window.is_zero() {
            return Ok(out);
        }
    }
}

/// A message attribute as Lambda's SQS event shows it (camelCase, list fields present).
fn lambda_attribute(a: &Value) -> Value {
    let s = |k: &str| a.get(k).cloned().unwrap_or(Value::Null);
    let mut m = Map::new();
    if let Some(v) = a.get("StringValue") {
        m.insert("stringValue".into(), v.clone());
    }
    if let Some(v) = a.get("BinaryValue") {
        m.insert("binaryValue".into(), v.clone());
    }
    m.insert("stringListValues".into(), json!([]));
    m.insert("binaryListValues".into(), json!([]));
    m.insert("dataType".into(), s("DataType"));
    Value::Object(m)
}

fn record(m: &Value, source_arn: &str, region: &str) -> Value {
    let s = |k: &str| m.get(k).cloned().unwrap_or(Value::Null);
    let attrs: Map<String, Value> = m
        .get("MessageAttributes")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), lambda_attribute(v)))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "messageId": s("MessageId"),
        "receiptHandle": s("ReceiptHandle"),
        "body": s("Body"),
        "attributes": m.get("Attributes").cloned().unwrap_or_else(|| json!({})),
        "messageAttributes": attrs,
        "md5OfBody": s("MD5OfBody"),
        "md5OfMessageAttributes": s("MD5OfMessageAttributes"),
        "eventSource": "aws:sqs",
        "eventSourceARN": source_arn,
        "awsRegion": region,
    })
}

/// The message ids a `ReportBatchItemFailures` answer names, or `None` when the answer is
/// malformed, which (as on AWS) fails the whole batch.
fn reported_failures(payload: &[u8], ids: &HashSet<&str>) -> Option<HashSet<String>> {
    let trimmed = payload.iter().all(u8::is_ascii_whitespace);
    if trimmed {
        return Some(HashSet::new());
    }
    let v: Value = serde_json::from_slice(payload).ok()?;
    let items = match v.get("batchItemFailures") {
        None | Some(Value::Null) => return Some(HashSet::new()),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return None,
    };
    let mut out = HashSet::new();
    for i in items {
        let id = i.get("itemIdentifier")?.as_str()?;
        if !ids.contains(id) {
            return None;
        }
        out.insert(id.to_string());
    }
    Some(out)
}

#[allow(clippy::too_many_arguments)]
async fn process(
    inv: &Arc<Invoker>,
    sqs: &Arc<dyn Service>,
    scope: &Scope,
    qscope: &Scope,
    endpoint: &str,
    url: &str,
    conf: &MappingConf,
    msgs: Vec<Value>,
) -> Result<(), String> {
    let event = json!({
        "Records": msgs.iter().map(|m| record(m, &conf.source_arn, &qscope.region)).collect::<Vec<_>>(),
    });
    let target = inv
        .state()
        .read(|s| resolve(s, scope, &conf.function_arn, None))
        .map_err(|e| e.message)?;
    let ids: HashSet<&str> = msgs
        .iter()
        .filter_map(|m| m.get("MessageId").and_then(Value::as_str))
        .collect();
    let failed: HashSet<String> = match inv
        .invoke(&target, bytes::Bytes::from(event.to_string()), false)
        .await
    {
        Ok(out) if out.function_error.is_none() => {
            if conf.report_failures {
                reported_failures(&out.payload, &ids)
                    .unwrap_or_else(|| ids.iter().map(|s| s.to_string()).collect())
            } else {
                HashSet::new()
            }
        }
        Ok(out) => {
            tracing::debug!(function = %target.name, error = %String::from_utf8_lossy(&out.payload), "batch failed; its messages return to the queue");
            ids.iter().map(|s| s.to_string()).collect()
        }
        Err(e) => {
            tracing::debug!(function = %target.name, error = %e, "batch not invoked; its messages return to the queue");
            ids.iter().map(|s| s.to_string()).collect()
        }
    };
    let done: Vec<Value> = msgs
        .iter()
        .filter(|m| {
            m.get("MessageId")
                .and_then(Value::as_str)
                .is_some_and(|id| !failed.contains(id))
        })
        .filter_map(|m| m.get("ReceiptHandle").cloned())
        .collect();
    for chunk in done.chunks(10) {
        let entries: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, h)| json!({ "Id": i.to_string(), "ReceiptHandle": h }))
            .collect();
        sqs_call(
            sqs,
            qscope,
            endpoint,
            "DeleteMessageBatch",
            json!({ "QueueUrl": url, "Entries": entries }),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_failures_follow_aws_rules() {
        let ids: HashSet<&str> = ["a", "b"].into_iter().collect();
        assert_eq!(reported_failures(b"", &ids), Some(HashSet::new()));
        assert_eq!(reported_failures(b"null", &ids), Some(HashSet::new()));
        assert_eq!(
            reported_failures(br#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#, &ids),
            Some(["b".to_string()].into_iter().collect())
        );
        // An id not in the batch, or a malformed list, fails the whole batch.
        assert_eq!(
            reported_failures(br#"{"batchItemFailures":[{"itemIdentifier":"z"}]}"#, &ids),
            None
        );
        assert_eq!(
            reported_failures(br#"{"batchItemFailures":"x"}"#, &ids),
            None
        );
    }

    #[test]
    fn queue_arns_give_scope_and_url() {
        let (s, u) = queue_of("arn:aws:sqs:eu-west-1:111111111111:jobs").unwrap();
        assert_eq!(s, Scope::new("111111111111", "eu-west-1"));
        assert_eq!(u, "/111111111111/jobs");
        assert!(queue_of("arn:aws:kinesis:eu-west-1:1:s").is_none());
    }
}
