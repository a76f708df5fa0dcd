//! Persistence costs, measured against persistence off in the same run (issue "Persistence"):
//! 1. request latency (p50, p99) of a PutObject / SendMessage / PutItem mix while `SCHEDULED`
//!    flushes run back to back over a large state, versus persistence off;
//! 2. `ON_REQUEST` throughput of small writes versus persistence off;
//! 3. start-up time with `ON_STARTUP` for the saved state versus `cat` of the same files;
//! 4. bytes written by a save after changing one DynamoDB item, versus the first save (and
//!    versus the whole state on disk, blobs included).
//!
//! Size: `CRYOPOD_BENCH_MB` MiB of object data (default 1024) plus `CRYOPOD_BENCH_ITEMS`
//! DynamoDB items (default 100,000). Run: `cargo bench -p cryopod-tests --bench persistence`
//! (uses the release or debug binary found by `cryopod_tests::binary()`; set `CRYOPOD_BIN`).

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, WriteRequest,
};
use cryopod_tests::{Emulator, dynamodb, s3, sqs};

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "000000000000";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn fill(e: &Emulator, mb: usize, items: usize) {
    let s3c = s3(&e.endpoint, REGION, ACCOUNT);
    s3c.create_bucket()
        .bucket("bench")
        .send()
        .await
        .expect("bucket");
    let chunk = 16 * 1024 * 1024;
    let mut seed = 0x9e3779b97f4a7c15u64;
    for i in 0..(mb * 1024 * 1024).div_ceil(chunk) {
        let mut body = vec![0u8; chunk];
        for w in body.chunks_mut(8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            w.copy_from_slice(&seed.to_le_bytes()[..w.len()]);
        }
        s3c.put_object()
            .bucket("bench")
            .key(format!("big/{i}"))
            .body(body.into())
            .send()
            .await
            .expect("put");
    }
    let sqsc = sqs(&e.endpoint, REGION, ACCOUNT);
    sqsc.create_queue()
        .queue_name("bench")
        .send()
        .await
        .expect("queue");
    let ddb = dynamodb(&e.endpoint, REGION, ACCOUNT);
    ddb.create_table()
        .table_name("bench")
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attr"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .expect("table");
    for batch in 0..items.div_ceil(25) {
        let reqs = (0..25)
            .map(|j| {
                let id = batch * 25 + j;
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .item("pk", AttributeValue::S(format!("item-{id}")))
                            .item("n", AttributeValue::N(id.to_string()))
                            .item("payload", AttributeValue::S("x".repeat(200)))
                            .build()
                            .expect("put"),
                    )
                    .build()
            })
            .collect();
        ddb.batch_write_item()
            .request_items("bench", reqs)
            .send()
            .await
            .expect("batch");
    }
}

/// Runs the write mix for `dur` and returns sorted latencies.
async fn mix(e: &Emulator, dur: Duration) -> Vec<Duration> {
    let s3c = s3(&e.endpoint, REGION, ACCOUNT);
    let sqsc = sqs(&e.endpoint, REGION, ACCOUNT);
    let ddb = dynamodb(&e.endpoint, REGION, ACCOUNT);
    let url = sqsc
        .get_queue_url()
        .queue_name("bench")
        .send()
        .await
        .expect("url")
        .queue_url
        .unwrap_or_default();
    let mut lat = Vec::new();
    let end = Instant::now() + dur;
    let mut i = 0u64;
    while Instant::now() < end {
        let t = Instant::now();
        match i % 3 {
            0 => {
                s3c.put_object()
                    .bucket("bench")
                    .key(format!("small/{i}"))
                    .body(format!("body {i}").into_bytes().into())
                    .send()
                    .await
                    .expect("put");
            }
            1 => {
                sqsc.send_message()
                    .queue_url(&url)
                    .message_body(format!("m{i}"))
                    .send()
                    .await
                    .expect("send");
            }
            _ => {
                ddb.put_item()
                    .table_name("bench")
                    .item("pk", AttributeValue::S(format!("mix-{i}")))
                    .item("n", AttributeValue::N(i.to_string()))
                    .send()
                    .await
                    .expect("item");
            }
        }
        lat.push(t.elapsed());
        i += 1;
    }
    lat.sort();
    lat
}

fn pct(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn dir_bytes_cat(dir: &std::path::Path) -> Duration {
    let t = Instant::now();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find '{}' -type f -exec cat {{}} + > /dev/null",
            dir.display()
        ))
        .status()
        .expect("cat");
    assert!(status.success());
    t.elapsed()
}

#[tokio::main]
async fn main() {
    let mb = env_usize("CRYOPOD_BENCH_MB", 1024);
    let items = env_usize("CRYOPOD_BENCH_ITEMS", 100_000);
    let secs = env_usize("CRYOPOD_BENCH_SECONDS", 10) as u64;
    println!("state: {mb} MiB of objects + {items} items; mix for {secs} s each");

    let off = Emulator::start();
    fill(&off, mb, items).await;
    let base = mix(&off, Duration::from_secs(secs)).await;

    let on = Emulator::start_with(
        &[
            "--persistence",
            "--save-strategy",
            "SCHEDULED",
            "--flush-interval",
            "0.2",
        ],
        &[],
    );
    fill(&on, mb, items).await;
    let sched = mix(&on, Duration::from_secs(secs)).await;
    let health = on.api_get("/_cryopod/health");
    println!(
        "1. write mix latency  off: p50 {:?} p99 {:?} ({} requests) | SCHEDULED(0.2 s) flushing: p50 {:?} p99 {:?} ({} requests) | p99 ratio {:.2}x",
        pct(&base, 0.5),
        pct(&base, 0.99),
        base.len(),
        pct(&sched, 0.5),
        pct(&sched, 0.99),
        sched.len(),
        pct(&sched, 0.99).as_secs_f64() / pct(&base, 0.99).as_secs_f64().max(1e-9)
    );
    println!(
        "   last save during the mix: {}",
        health["persistence"]["last_save"]
    );

    // 2. ON_REQUEST throughput of small writes.
    let small_off = Emulator::start();
    let small_on = Emulator::start_with(&["--persistence", "--save-strategy", "ON_REQUEST"], &[]);
    let mut tput = Vec::new();
    for e in [&small_off, &small_on] {
        let c = sqs(&e.endpoint, REGION, ACCOUNT);
        let url = c
            .create_queue()
            .queue_name("tput")
            .send()
            .await
            .expect("queue")
            .queue_url
            .unwrap_or_default();
        let t = Instant::now();
        let mut n = 0u64;
        let mut tasks = Vec::new();
        for w in 0..8 {
            let c = c.clone();
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let mut k = 0u64;
                let end = Instant::now() + Duration::from_secs(secs.min(5));
                while Instant::now() < end {
                    c.send_message()
                        .queue_url(&url)
                        .message_body(format!("{w}-{k}"))
                        .send()
                        .await
                        .expect("send");
                    k += 1;
                }
                k
            }));
        }
        for task in tasks {
            n += task.await.expect("task");
        }
        tput.push(n as f64 / t.elapsed().as_secs_f64());
    }
    println!(
        "2. SendMessage throughput (8 clients): off {:.0}/s, ON_REQUEST {:.0}/s, ratio {:.2}",
        tput[0],
        tput[1],
        tput[1] / tput[0]
    );

    // 3. Start-up time with ON_STARTUP versus cat of the saved files.
    let out = on.cli(&["state", "save"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keep = tempfile::tempdir().expect("tmp");
    let moved = keep.path().join("data");
    // `on` owns its temp data dir, removed when it stops: copy the saved state first.
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&on.data_dir)
        .arg(&moved)
        .status()
        .expect("cp");
    assert!(status.success());
    on.stop();
    let cat = dir_bytes_cat(&moved.join("state"));
    let t = Instant::now();
    let again = Emulator::start_in(&moved, &["--persistence"], &[]);
    let start = t.elapsed();
    println!(
        "3. start-up ON_STARTUP {:?} vs cat of the state files {:?}: ratio {:.2}x",
        start,
        cat,
        start.as_secs_f64() / cat.as_secs_f64().max(1e-9)
    );
    drop(again);

    // 4. Bytes written by a save after a one-item change, versus the first save.
    let manual = Emulator::start_with(&["--persistence", "--save-strategy", "MANUAL"], &[]);
    fill(&manual, mb, items).await;
    let (status, first) = manual.api_post("/_cryopod/state/save");
    assert_eq!(status, 200, "{first}");
    dynamodb(&manual.endpoint, REGION, ACCOUNT)
        .put_item()
        .table_name("bench")
        .item("pk", AttributeValue::S(format!("item-{}", items / 2)))
        .item("n", AttributeValue::N("0".into()))
        .item("payload", AttributeValue::S("y".repeat(200)))
        .send()
        .await
        .expect("item");
    let (status, second) = manual.api_post("/_cryopod/state/save");
    assert_eq!(status, 200, "{second}");
    let first = first["bytes_written"].as_u64().unwrap_or(0);
    let second = second["bytes_written"].as_u64().unwrap_or(0);
    let on_disk = dir_size(&manual.data_dir.join("state"));
    println!(
        "4. save after changing 1 of {items} items: {second} bytes; first save {first} bytes ({:.3} %); state on disk incl. blobs {on_disk} bytes ({:.4} %)",
        second as f64 * 100.0 / first.max(1) as f64,
        second as f64 * 100.0 / on_disk.max(1) as f64
    );
}

fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
