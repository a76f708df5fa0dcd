//! HTTP overhead of export and import: the internal API over loopback versus in-process
//! `Runtime::export`/`Runtime::import` of the same state, in the same run (issue #3).
//!
//! The state is `CRYOPOD_BENCH_MB` MiB (default 1024) of incompressible note attachments
//! (16 MiB each) plus 20,000 small notes. Run: `cargo bench -p cryopod-emulator --bench http`.
//!
//! The export comparison is like for like: both sides write the same bundle into a sink
//! that only counts bytes. In-process, `Runtime::export` writes into the sink; over HTTP,
//! the server streams the bundle and the client counts the body chunks it receives. Neither
//! side fills a 1 GiB buffer (whose page faults would otherwise be charged to one side
//! only). Exports run `CRYOPOD_BENCH_ROUNDS` times (default 3), alternating which variant
//! goes first; the medians are compared. CPU seconds are for the whole process (server,
//! client and helper threads), read from `/proc/self/stat`. Imports likewise: the same
//! bundle bytes, already in memory on both sides, into a fresh emulator per run,
//! `CRYOPOD_BENCH_ROUNDS` pairs alternating the order, medians compared.

use std::io::Cursor;
use std::time::{Duration, Instant};

use cryopod::server::TestServer;
use cryopod::testing::CountingSink;
use cryopod::{MergeStrategy, Runtime, ScopeFilter};
use futures::StreamExt;
use rand::RngCore;

const ATTACHMENT: usize = 16 * 1024 * 1024;

/// The manifest's `created_at` is RFC 3339 with trailing zeros of the fraction trimmed, so
/// two exports of the same state may differ in length by this much.
const TIMESTAMP_SLACK: u64 = 10;

async fn call(client: &reqwest::Client, endpoint: &str, op: &str, body: serde_json::Value) {
    let resp = client
        .post(endpoint)
        .header("x-amz-target", format!("Notes.{op}"))
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    assert!(resp.status().is_success(), "{op}: {}", resp.status());
}

/// A runtime whose blob store lives in a directory that `stores` owns. Why not the
/// runtime's own temporary store: a `TestServer`'s internal-API thread still holds its
/// runtime when `main` returns, so those stores were never removed (1 GiB per round, 33 GB
/// in `/tmp` after session 4). The directories go when `main` drops `stores`.
fn runtime(stores: &mut Vec<tempfile::TempDir>) -> Runtime {
    let dir = tempfile::Builder::new()
        .prefix("cryopod-bench-http-")
        .tempdir()
        .expect("dir");
    let blobs = cryopod::BlobStore::open(dir.path()).expect("blob store");
    stores.push(dir);
    Runtime::builder()
        .enable(Some(vec![cryopod_notes::SERVICE.to_string()]))
        .blob_store(blobs)
        .build()
        .expect("runtime")
}

#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: f64,
    bytes: u64,
}

async fn export_in_process(rt: &Runtime) -> Sample {
    let (c, t) = (
        cryopod::testing::process_cpu_time().as_secs_f64(),
        Instant::now(),
    );
    let (sink, _) = rt
        .export(
            None,
            &ScopeFilter::all(),
            CountingSink::default(),
            Default::default(),
        )
        .await
        .expect("export");
    Sample {
        wall: t.elapsed(),
        cpu: cryopod::testing::process_cpu_time().as_secs_f64() - c,
        bytes: sink.0,
    }
}

async fn export_http(client: &reqwest::Client, ep: &str) -> Sample {
    let (c, t) = (
        cryopod::testing::process_cpu_time().as_secs_f64(),
        Instant::now(),
    );
    let resp = client
        .get(format!("{ep}/_cryopod/state"))
        .send()
        .await
        .expect("export request");
    assert!(resp.status().is_success(), "export: {}", resp.status());
    let mut bytes = 0u64;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        bytes += chunk.expect("chunk").len() as u64;
    }
    Sample {
        wall: t.elapsed(),
        cpu: cryopod::testing::process_cpu_time().as_secs_f64() - c,
        bytes,
    }
}

fn median(mut v: Vec<Sample>) -> Sample {
    v.sort_by_key(|s| s.wall);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let mb: usize = std::env::var("CRYOPOD_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let rounds: usize = std::env::var("CRYOPOD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let mut stores = Vec::new();
    let server = TestServer::start_with_runtime(runtime(&mut stores)).await;
    let client = reqwest::Client::new();
    let ep = server.endpoint.clone();
    call(
        &client,
        &ep,
        "CreateNotebook",
        serde_json::json!({"NotebookName": "big"}),
    )
    .await;
    let mut rng = rand::rng();
    let n = (mb * 1024 * 1024).div_ceil(ATTACHMENT);
    use base64::Engine as _;
    for i in 0..n {
        let mut bytes = vec![0u8; ATTACHMENT];
        rng.fill_bytes(&mut bytes);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        call(&client, &ep, "PutNote", serde_json::json!({"NotebookName": "big", "Key": format!("blob-{i}"), "Text": "x", "Attachment": b64})).await;
    }
    for i in 0..20_000 {
        call(&client, &ep, "PutNote", serde_json::json!({"NotebookName": "big", "Key": format!("small-{i}"), "Text": format!("note number {i}")})).await;
    }
    println!("state: {n} attachments of 16 MiB + 20,000 small notes");
    // The state API through a client of its own, as the CLI (a process of its own) does:
    // the server sorts connections by their first request, and a connection that began
    // with the notes API above would keep serving exports on the AWS runtime.
    let client = reqwest::Client::new();

    // Export: in-process into a counting sink versus GET /_cryopod/state into a counting
    // sink, alternating the order round by round.
    let (mut local, mut http) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (a, b) = if round % 2 == 0 {
            let a = export_in_process(&server.runtime).await;
            (a, export_http(&client, &ep).await)
        } else {
            let b = export_http(&client, &ep).await;
            (export_in_process(&server.runtime).await, b)
        };
        assert!(
            a.bytes.abs_diff(b.bytes) <= TIMESTAMP_SLACK,
            "HTTP export ({} bytes) differs in size from in-process export ({} bytes)",
            b.bytes,
            a.bytes
        );
        println!(
            "export round {}: in-process {:.2} s ({:.2} CPU s), HTTP {:.2} s ({:.2} CPU s), ratio {:.2}x",
            round + 1,
            a.wall.as_secs_f64(),
            a.cpu,
            b.wall.as_secs_f64(),
            b.cpu,
            b.wall.as_secs_f64() / a.wall.as_secs_f64()
        );
        local.push(a);
        http.push(b);
    }
    let (a, b) = (median(local), median(http));

    // Import: the same bundle bytes (exported untimed) from memory in-process, and as the
    // body of POST /_cryopod/state, each into a fresh emulator, alternating which goes
    // first. Dirty pages are written back (`sync`) before each, so neither meets the disk
    // writeback of the other's 1 GiB of blob files (single rounds ranged 0.6-1.6x without).
    let (bundle, _) = server
        .runtime
        .export(
            None,
            &ScopeFilter::all(),
            Vec::with_capacity(mb << 20),
            Default::default(),
        )
        .await
        .expect("export");
    let bundle = bytes::Bytes::from(bundle);
    let (mut local_imports, mut http_imports) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut pair = [Duration::ZERO; 2];
        for which in [round % 2, 1 - round % 2] {
            if which == 0 {
                let target = runtime(&mut stores);
                let input = Cursor::new(bundle.clone());
                flush_page_cache();
                let t = Instant::now();
                target
                    .import(input, None, MergeStrategy::Overwrite)
                    .await
                    .expect("import");
                pair[0] = t.elapsed();
            } else {
                let fresh = TestServer::start_with_runtime(runtime(&mut stores)).await;
                let body = bundle.clone();
                flush_page_cache();
                let t = Instant::now();
                let resp = client
                    .post(format!("{}/_cryopod/state?merge=overwrite", fresh.endpoint))
                    .body(body)
                    .send()
                    .await
                    .expect("import request");
                assert!(resp.status().is_success(), "import: {}", resp.status());
                pair[1] = t.elapsed();
            }
        }
        println!(
            "import round {}: in-process {:.2} s, HTTP {:.2} s, ratio {:.2}x",
            round + 1,
            pair[0].as_secs_f64(),
            pair[1].as_secs_f64(),
            pair[1].as_secs_f64() / pair[0].as_secs_f64()
        );
        local_imports.push(pair[0]);
        http_imports.push(pair[1]);
    }
    local_imports.sort();
    http_imports.sort();
    let (in_import, http_import) = (local_imports[rounds / 2], http_imports[rounds / 2]);

    let mib = bundle.len() as f64 / (1024.0 * 1024.0);
    println!("bundle: {mib:.0} MiB");
    println!(
        "export (median of {rounds}): in-process {:.2} s ({:.2} CPU s), HTTP {:.2} s ({:.2} CPU s), ratio {:.2}x (CPU {:.2}x)",
        a.wall.as_secs_f64(),
        a.cpu,
        b.wall.as_secs_f64(),
        b.cpu,
        b.wall.as_secs_f64() / a.wall.as_secs_f64(),
        b.cpu / a.cpu
    );
    println!(
        "import (median of {rounds}): in-process {:.2} s, HTTP {:.2} s, ratio {:.2}x",
        in_import.as_secs_f64(),
        http_import.as_secs_f64(),
        http_import.as_secs_f64() / in_import.as_secs_f64()
    );
}

/// Writes back every dirty page (`sync`), so a timed import does not pay for the previous
/// one's disk writes.
fn flush_page_cache() {
    let _ = std::process::Command::new("sync").status();
}
