//! SendMessage / ReceiveMessage latency over HTTP against an in-process server holding a
//! large state, with and without snapshots being exported at the same time, same run.
//!
//! `cargo bench -p cryopod-sqs --bench latency` (plain `main`, no harness). The state is
//! `SQS_BENCH_MESSAGES` messages (default 1,000,000) in 100 standard queues; each phase runs
//! `SQS_BENCH_SECONDS` seconds (default 10). Phases alternate (quiet, exporting, burning;
//! twice), so slow drift of the machine hits both sides. One client sends and receives in
//! turn on random queues (JSON protocol, one request at a time); during the exporting phases a
//! second task loops on `GET /_cryopod/state?services=sqs`, streaming each bundle to a sink.
//! A third phase runs the client beside a thread that only burns CPU, to tell CPU sharing
//! apart from effects of the snapshot itself. Target (issue #5): p99 while exporting ≤ 2×
//! p99 without.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cryopod::{MergeStrategy, Runtime, Scope, Snapshot};
use cryopod_sqs::state::{Message, Queue, SqsState};
use cryopod_sqs::{SERVICE, SqsService};
use imbl::OrdMap;
use serde_json::{Value, json};
use tokio::sync::watch;

const QUEUES: usize = 100;
const T0: i64 = 1_700_000_000_000;

fn message(i: usize) -> Message {
    Message {
        id: format!("{i:08x}-0000-4000-8000-000000000000"),
        body: format!("small message body number {i}"),
        attributes: Default::default(),
        system_attributes: Default::default(),
        sender_id: "000000000000".into(),
        sent_at: T0 + i as i64,
        receive_count: 0,
        first_received_at: None,
        visible_at: T0 - 1,
        delayed: false,
        expires_at: T0 + 345_600_000,
        group_id: None,
        dedup_id: None,
        dead_letter_source: None,
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A tiny xorshift so the queue choice needs no extra dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Client {
    http: reqwest::Client,
    endpoint: String,
}

impl Client {
    async fn call(&self, op: &str, input: &Value) -> Duration {
        let t = Instant::now();
        let resp = self
            .http
            .post(&self.endpoint)
            .header("x-amz-target", format!("AmazonSQS.{op}"))
            .header("content-type", "application/x-amz-json-1.0")
            .body(input.to_string())
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let body = resp.bytes().await.expect("body");
        let took = t.elapsed();
        assert!(
            status.is_success(),
            "{op} failed: {status} {}",
            String::from_utf8_lossy(&body)
        );
        took
    }
}

#[derive(Default)]
struct Samples {
    send: Vec<Duration>,
    receive: Vec<Duration>,
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// Runs the client for `secs`, appending to `out`.
async fn workload(c: &Client, urls: &[String], rng: &mut Rng, secs: u64, out: &mut Samples) {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < end {
        let url = &urls[(rng.next() % urls.len() as u64) as usize];
        n += 1;
        let send = json!({ "QueueUrl": url, "MessageBody": format!("latency probe {n}") });
        out.send.push(c.call("SendMessage", &send).await);
        let receive =
            json!({ "QueueUrl": url, "MaxNumberOfMessages": 1, "VisibilityTimeout": 600 });
        out.receive.push(c.call("ReceiveMessage", &receive).await);
    }
}

/// Exports the SQS state over HTTP in a loop until told to stop; returns (exports, bytes,
/// total time).
async fn exporter(
    http: reqwest::Client,
    endpoint: String,
    mut stop: watch::Receiver<bool>,
) -> (u32, u64, Duration) {
    let mut count = 0;
    let mut bytes = 0u64;
    let mut busy = Duration::ZERO;
    while !*stop.borrow() {
        let t = Instant::now();
        let mut resp = http
            .get(format!("{endpoint}/_cryopod/state?services=sqs"))
            .send()
            .await
            .expect("export request");
        assert!(resp.status().is_success(), "export: {}", resp.status());
        loop {
            tokio::select! {
                chunk = resp.chunk() => match chunk.expect("export body") {
                    Some(c) => bytes += c.len() as u64,
                    None => { count += 1; break; }
                },
                _ = stop.changed() => { busy += t.elapsed(); return (count, bytes, busy); }
            }
        }
        busy += t.elapsed();
    }
    (count, bytes, busy)
}

fn main() {
    let total = env_or("SQS_BENCH_MESSAGES", 1_000_000) as usize;
    let secs = env_or("SQS_BENCH_SECONDS", 10);
    let per_queue = total / QUEUES;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(async move {
        let mut state = SqsState::default();
        let scope = Scope::default();
        for qi in 0..QUEUES {
            let name = format!("queue-{qi:03}");
            let mut q = Queue::new(name.clone(), false, OrdMap::new(), T0);
            for mi in 0..per_queue {
                q.push(message(qi * per_queue + mi));
            }
            state.scopes.get_mut(&scope).queues.insert(name, q);
        }
        let rt = Runtime::builder()
            .enable(Some(vec![SERVICE.into()]))
            .build()
            .expect("runtime");
        let mut snap = Snapshot::default();
        snap.services.insert(SERVICE.into(), Box::new(state));
        rt.apply(snap, MergeStrategy::Overwrite)
            .await
            .expect("install");
        let server = cryopod::server::TestServer::start_with_runtime(rt).await;
        if let Some(s) = server
            .runtime
            .service(SERVICE)
            .and_then(|s| s.as_any().downcast_ref::<SqsService>())
        {
            s.clock().freeze(T0);
        }
        let http = reqwest::Client::new();
        let client = Client {
            http: http.clone(),
            endpoint: server.endpoint.clone(),
        };
        let urls: Vec<String> = (0..QUEUES)
            .map(|qi| format!("{}/000000000000/queue-{qi:03}", server.endpoint))
            .collect();

        // Warm-up: the first receive on each queue builds its receive index (once per queue
        // after a restore); measured here, not in the phases.
        let mut first = Vec::new();
        for url in &urls {
            let receive =
                json!({ "QueueUrl": url, "MaxNumberOfMessages": 1, "VisibilityTimeout": 600 });
            first.push(client.call("ReceiveMessage", &receive).await);
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut warm = Samples::default();
        workload(&client, &urls, &mut rng, 2, &mut warm).await;

        let mut quiet = Samples::default();
        let mut busy = Samples::default();
        let mut burn = Samples::default();
        let mut exports = (0u32, 0u64, Duration::ZERO);
        for _round in 0..2 {
            workload(&client, &urls, &mut rng, secs, &mut quiet).await;
            let (tx, rx) = watch::channel(false);
            let task = tokio::spawn(exporter(http.clone(), server.endpoint.clone(), rx));
            // Let the first export get going before measuring.
            tokio::time::sleep(Duration::from_millis(200)).await;
            workload(&client, &urls, &mut rng, secs, &mut busy).await;
            let _ = tx.send(true);
            let (n, b, t) = task.await.expect("exporter");
            exports.0 += n;
            exports.1 += b;
            exports.2 += t;
            // Diagnosis: the same client beside a thread that only burns CPU (no state, no
            // lock, no barrier). If p99 degrades as much as with exports, the cause is the
            // two cores being shared, not anything the snapshot does to the state.
            let stop = Arc::new(AtomicBool::new(false));
            let burner = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 1u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        }
                    }
                    x
                })
            };
            workload(&client, &urls, &mut rng, secs, &mut burn).await;
            stop.store(true, Ordering::Relaxed);
            let _ = burner.join();
        }

        println!("messages: {total} in {QUEUES} queues; {secs} s per phase, 2 phases each");
        println!(
            "first receive per queue (builds its index): p50 {:?}, max {:?}",
            pct(&mut first.clone(), 0.5),
            first.iter().max().copied().unwrap_or_default()
        );
        println!(
            "exporting phases: {:.1} MB of bundle streamed in {:?}",
            exports.1 as f64 / 1e6,
            exports.2
        );
        println!(
            "exports completed while measuring: {} ({:.1} MB each, {:?} each)",
            exports.0,
            if exports.0 > 0 {
                exports.1 as f64 / exports.0 as f64 / 1e6
            } else {
                0.0
            },
            if exports.0 > 0 {
                exports.2 / exports.0
            } else {
                Duration::ZERO
            }
        );
        println!("exporting (vs quiet):");
        report(&mut quiet, &mut busy);
        println!("one CPU-burning thread, no snapshot (vs quiet):");
        report(&mut quiet, &mut burn);
        drop(server);
    });
}

fn report(quiet: &mut Samples, busy: &mut Samples) {
    {
        for (op, q, b) in [
            ("SendMessage", &mut quiet.send, &mut busy.send),
            ("ReceiveMessage", &mut quiet.receive, &mut busy.receive),
        ] {
            let (q50, q99) = (pct(q, 0.5), pct(q, 0.99));
            let (b50, b99) = (pct(b, 0.5), pct(b, 0.99));
            println!(
                "{op:<15} n {}/{}  p50 {q50:?} -> {b50:?} ({:.2}x)  p99 {q99:?} -> {b99:?} ({:.2}x)",
                q.len(),
                b.len(),
                b50.as_secs_f64() / q50.as_secs_f64(),
                b99.as_secs_f64() / q99.as_secs_f64(),
            );
        }
    }
}
