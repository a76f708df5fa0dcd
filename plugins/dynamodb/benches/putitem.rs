//! PutItem latency over HTTP, with and without snapshots taken at the same time.
//!
//! An in-process server ([`cryopod::server::TestServer`]) holds one table of
//! `DDB_BENCH_ITEMS` items (default 1,000,000; `pk` S + `sk` N + four attributes, and a GSI
//! on `group`). One client sends PutItem requests back to back (each overwrites a random
//! existing item, so every request also moves a GSI entry) and records each latency. Phases
//! alternate between *quiet* (nothing else runs) and *snapshotting* (a second client loops
//! `GET /_cryopod/state`, streaming the whole bundle to a sink), `DDB_BENCH_SECONDS` each
//! (default 5), two of each, in the same process. The figure of merit is p99 snapshotting /
//! p99 quiet; the target is at most 2×.
//!
//! Run: `cargo bench -p cryopod-dynamodb --bench putitem`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::table;
use cryopod::server::TestServer;
use cryopod::{MergeStrategy, Scope, Snapshot};
use cryopod_dynamodb::SERVICE;
use cryopod_dynamodb::state::DynamoState;
use serde_json::json;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The PutItem body for item `i` (an existing key) in round `round`.
fn put_body(i: usize, round: u64) -> String {
    json!({
        "TableName": "bench",
        "Item": {
            "pk": {"S": format!("user#{:07}", i / 10)},
            "sk": {"N": (i % 10).to_string()},
            "name": {"S": format!("name {i} r{round}")},
            "score": {"N": format!("{}.{}", i % 1000, round % 7)},
            "active": {"BOOL": round.is_multiple_of(2)},
            "group": {"S": format!("g{}", (i as u64 + round) % 100)}
        }
    })
    .to_string()
}

/// Sends PutItems back to back for `secs`, returning each latency.
async fn put_loop(
    http: &reqwest::Client,
    endpoint: &str,
    n: usize,
    secs: u64,
    seed: &mut u64,
) -> Vec<Duration> {
    let mut lat = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        // xorshift: a reproducible spread of keys.
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let i = (*seed % n as u64) as usize;
        let body = put_body(i, *seed);
        let t = Instant::now();
        let resp = http
            .post(endpoint)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", "DynamoDB_20120810.PutItem")
            .body(body)
            .send()
            .await
            .expect("PutItem sent");
        let status = resp.status();
        let text = resp.text().await.expect("PutItem answer");
        lat.push(t.elapsed());
        assert!(status.is_success(), "PutItem: {status} {text}");
    }
    lat
}

/// Streams `GET /_cryopod/state` to a sink until `stop` is set (the export running then
/// finishes first). Returns the number of complete snapshots.
async fn snapshot_loop(
    http: reqwest::Client,
    endpoint: String,
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
) -> u64 {
    let mut done = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut resp = http
            .get(format!("{endpoint}/_cryopod/state"))
            .send()
            .await
            .expect("export started");
        assert!(resp.status().is_success(), "export: {}", resp.status());
        while let Some(chunk) = resp.chunk().await.expect("export chunk") {
            bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        done += 1;
    }
    done
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn main() {
    let n = env("DDB_BENCH_ITEMS", 1_000_000) as usize;
    let secs = env("DDB_BENCH_SECONDS", 5);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(async move {
        let server = TestServer::start(&[SERVICE]).await;
        let mut state = DynamoState::default();
        state
            .scopes
            .get_mut(&Scope::default())
            .tables
            .insert("bench".into(), table(n, true));
        let mut snap = Snapshot::default();
        snap.services.insert(SERVICE.into(), Box::new(state));
        server
            .runtime
            .apply(snap, MergeStrategy::Overwrite)
            .await
            .expect("seed");
        let http = reqwest::Client::new();
        let endpoint = server.endpoint.clone();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        // Warm-up: connections, allocator, the restored table's index build.
        put_loop(&http, &endpoint, n, 1, &mut seed).await;

        let (mut quiet, mut busy) = (Vec::new(), Vec::new());
        let (mut snapshots, bytes) = (0u64, Arc::new(AtomicU64::new(0)));
        let mut busy_time = Duration::ZERO;
        for _ in 0..2 {
            quiet.extend(put_loop(&http, &endpoint, n, secs, &mut seed).await);
            let stop = Arc::new(AtomicBool::new(false));
            let t = Instant::now();
            let task = tokio::spawn(snapshot_loop(
                http.clone(),
                endpoint.clone(),
                stop.clone(),
                bytes.clone(),
            ));
            busy.extend(put_loop(&http, &endpoint, n, secs, &mut seed).await);
            stop.store(true, Ordering::Relaxed);
            snapshots += task.await.expect("snapshot task");
            busy_time += t.elapsed();
        }
        quiet.sort();
        busy.sort();
        let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
        let ratio = |a: Duration, b: Duration| format!("{:.2}×", b.as_secs_f64() / a.as_secs_f64());
        println!("{n} items, {secs} s per phase, 2 phases each; one client, requests back to back");
        println!("| PutItem latency | quiet | during snapshots | ratio |");
        println!("| --- | ---: | ---: | ---: |");
        println!("| requests | {} | {} | |", quiet.len(), busy.len());
        for (name, p) in [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999)] {
            let (a, b) = (pct(&quiet, p), pct(&busy, p));
            println!("| {name} | {} | {} | {} |", us(a), us(b), ratio(a, b));
        }
        let (a, b) = (pct(&quiet, 1.0), pct(&busy, 1.0));
        println!("| max | {} | {} | {} |", us(a), us(b), ratio(a, b));
        println!(
            "snapshots completed: {snapshots} ({:.1} MB streamed, {:.1} s with the snapshot loop running)",
            bytes.load(Ordering::Relaxed) as f64 / 1e6,
            busy_time.as_secs_f64()
        );
    });
}
