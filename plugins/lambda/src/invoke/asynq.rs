//! `Event` invocations: accepted with 202, run in the background, retried, and sent to the
//! function's dead-letter queue (`DeadLetterConfig.TargetArn`, SQS) when every attempt
//! failed.
//!
//! The queue is in memory only, deliberately: an event is the caller's request in flight,
//! not a resource, and a snapshot that replayed it after a restore would run it a second
//! time in the emulator that captured it as well as the one that loaded it. So events still
//! queued when a snapshot is taken are not in it; what they would have done (the DLQ
//! message, the side effects) is.
//!
//! Retries follow AWS's count (two more attempts, as `MaximumRetryAttempts` defaults to) but
//! not its minutes-long pauses: a local emulator retries after 1 and 2 seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cryopod::AwsError;
use serde_json::{Value, json};

use super::{Invoker, Target, sqs, too_many};

/// Most events waiting or running at once, per emulator.
pub const MAX_QUEUED: usize = 10_000;
/// Attempts after the first (AWS's default `MaximumRetryAttempts`).
pub const RETRIES: u32 = 2;

/// The in-memory queue's bookkeeping.
#[derive(Default)]
pub struct Queue {
    pending: AtomicUsize,
}

impl Queue {
    /// Events accepted and not finished.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }
}

impl Invoker {
    /// Accepts an `Event` invocation of `t`; refuses it when the queue is full.
    pub fn enqueue(&self, t: Target, payload: Bytes) -> Result<(), AwsError> {
        let q = &self.queue.pending;
        if q.fetch_add(1, Ordering::SeqCst) >= MAX_QUEUED {
            q.fetch_sub(1, Ordering::SeqCst);
            return Err(too_many(format!(
                "Rate Exceeded. {MAX_QUEUED} asynchronous invocations are already queued."
            )));
        }
        let me = self.me.clone();
        tokio::spawn(async move {
            if let Some(inv) = me.upgrade() {
                inv.run_event(&t, payload).await;
                inv.queue.pending.fetch_sub(1, Ordering::SeqCst);
            }
        });
        Ok(())
    }

    async fn run_event(self: &Arc<Self>, t: &Target, payload: Bytes) {
        let mut last = String::new();
        for attempt in 0..=RETRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
            match self.invoke(t, payload.clone(), false).await {
                Ok(out) if out.function_error.is_none() => return,
                Ok(out) => last = String::from_utf8_lossy(&out.payload).into_owned(),
                Err(e) => last = e.to_string(),
            }
            tracing::debug!(function = %t.name, attempt, error = %last, "asynchronous invocation failed");
        }
        self.dead_letter(t, payload, &last).await;
    }

    /// Sends a failed event to the function's SQS dead-letter queue, as AWS does (the
    /// event as body, the error in message attributes).
    async fn dead_letter(&self, t: &Target, payload: Bytes, error: &str) {
        let target = t
            .config
            .extra
            .get("DeadLetterConfig")
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
            .and_then(|c| c.get("TargetArn")?.as_str().map(str::to_string));
        let Some(arn) = target else {
            tracing::info!(function = %t.name, error, "asynchronous invocation failed after retries; no dead-letter queue");
            return;
        };
        let (Some((scope, url)), Some(svc)) = (sqs::queue_of(&arn), self.ctx.service("sqs")) else {
            tracing::warn!(function = %t.name, target = %arn, "dead-letter target is not a reachable SQS queue");
            return;
        };
        let endpoint = self.endpoint.lock().clone();
        let code = serde_json::from_str::<Value>(error)
            .ok()
            .and_then(|v| v.get("errorType")?.as_str().map(str::to_string))
            .unwrap_or_else(|| "Unhandled".into());
        let body = json!({
            "QueueUrl": url,
            "MessageBody": String::from_utf8_lossy(&payload),
            "MessageAttributes": {
                "RequestID": { "DataType": "String", "StringValue": uuid::Uuid::new_v4().to_string() },
                "ErrorCode": { "DataType": "Number", "StringValue": "200" },
                "ErrorMessage": { "DataType": "String", "StringValue": format!("{code}: {}", error.chars().take(1000).collect::<String>()) },
            },
        });
        if let Err(e) = sqs::sqs_call(&svc, &scope, &endpoint, "SendMessage", body).await {
            tracing::warn!(function = %t.name, error = %e, "sending to the dead-letter queue failed");
        }
    }
}
