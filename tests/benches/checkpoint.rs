//! Checkpoint restore time against state size, and against `pod load` of the same state in
//! the same run (issue #26). For each size (`CRYOPOD_BENCH_SIZES`, MiB, default
//! `10,100,1024`): fill S3 with 64 KiB objects, DynamoDB with 20 items and SQS with 10
//! messages per MiB; take checkpoint `base` and `pod save`; then, after a small change
//! each time, restore the checkpoint `CRYOPOD_BENCH_RESTORES` times (default 20) and
//! `pod load --merge overwrite` the pod 3 times, timing each call from the client.
//!
//! Run: `cargo bench --profile dev -p cryopod-tests --bench checkpoint` (the binary found by
//! `cryopod_tests::binary()`; set `CRYOPOD_BIN` for another build).

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use cryopod_tests::{Emulator, dynamodb, s3, sqs};

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "000000000000";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Bytes per S3 object: `CRYOPOD_BENCH_OBJECT_KIB` (default 64). At 1 GiB, 64 KiB objects
/// make a pod whose manifest exceeds the pod reader's 4 MiB limit, so that run uses 1 MiB.
fn object_size() -> usize {
    env_or("CRYOPOD_BENCH_OBJECT_KIB", "64")
        .parse()
        .unwrap_or(64)
        * 1024
}

async fn fill(e: &Emulator, mb: usize) {
    let object = object_size();
    let s3c = s3(&e.endpoint, REGION, ACCOUNT);
    s3c.create_bucket()
        .bucket("bench")
        .send()
        .await
        .expect("bucket");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ mb as u64;
    let objects = mb * 1024 * 1024 / object;
    let mut puts = Vec::new();
    for i in 0..objects {
        let mut body = vec![0u8; object];
        for w in body.chunks_mut(8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            w.copy_from_slice(&seed.to_le_bytes()[..w.len()]);
        }
        let c = s3c.clone();
        puts.push(tokio::spawn(async move {
            c.put_object()
                .bucket("bench")
                .key(format!("obj/{i}"))
                .body(body.into())
                .send()
                .await
                .expect("put");
        }));
        if puts.len() == 8 {
            for p in puts.drain(..) {
                p.await.expect("put task");
            }
        }
    }
    for p in puts {
        p.await.expect("put task");
    }
    let ddb = dynamodb(&e.endpoint, REGION, ACCOUNT);
    ddb.create_table()
        .table_name("bench")
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .expect("attr"),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .expect("key"),
        )
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .expect("table");
    let items = mb * 20;
    for batch in (0..items).collect::<Vec<_>>().chunks(25) {
        let reqs = batch
            .iter()
            .map(|i| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .item("id", AttributeValue::S(format!("item-{i}")))
                            .item("v", AttributeValue::S("x".repeat(100)))
                            .build()
                            .expect("put request"),
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
    let q = sqs(&e.endpoint, REGION, ACCOUNT);
    let url = q
        .create_queue()
        .queue_name("bench")
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    for i in 0..mb * 10 {
        q.send_message()
            .queue_url(&url)
            .message_body(format!("message {i}"))
            .send()
            .await
            .expect("send");
    }
}

/// A small change, so each restore or load has something to undo.
async fn touch(e: &Emulator, n: usize) {
    s3(&e.endpoint, REGION, ACCOUNT)
        .put_object()
        .bucket("bench")
        .key(format!("touched/{n}"))
        .body(b"x".to_vec().into())
        .send()
        .await
        .expect("touch");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn post(e: &Emulator, path: &str) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", e.endpoint))
        .send()
        .await
        .expect("POST");
    assert!(resp.status().is_success(), "POST {path}: {}", resp.status());
}

fn cli_ok(e: &Emulator, args: &[&str]) {
    let out = e.cli(args);
    assert!(
        out.status.success(),
        "{args:?} failed ({:?}): {}{}\nemulator log tail: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        e.stderr()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let sizes: Vec<usize> = env_or("CRYOPOD_BENCH_SIZES", "10,100,1024")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let restores: usize = env_or("CRYOPOD_BENCH_RESTORES", "20").parse().unwrap_or(20);
    println!("size_mib,objects,restore_median_ms,restore_max_ms,pod_load_median_ms,ratio");
    let mut medians = Vec::new();
    for mb in sizes {
        let e = Emulator::start();
        fill(&e, mb).await;
        post(&e, "/_cryopod/checkpoints/base").await;
        let mut times = Vec::new();
        for n in 0..restores {
            touch(&e, n).await;
            let t = Instant::now();
            post(&e, "/_cryopod/checkpoints/base/restore").await;
            times.push(t.elapsed());
        }
        let max = times.iter().max().copied().unwrap_or_default();
        let restore = median(times);
        cli_ok(&e, &["--json", "pod", "save", "bench"]);
        let mut loads = Vec::new();
        for n in 0..3 {
            touch(&e, 1000 + n).await;
            let t = Instant::now();
            cli_ok(
                &e,
                &["--json", "pod", "load", "bench", "--merge", "overwrite"],
            );
            loads.push(t.elapsed());
        }
        let load = median(loads);
        println!(
            "{mb},{},{:.3},{:.3},{:.1},{:.0}",
            mb * 1024 * 1024 / object_size(),
            restore.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            load.as_secs_f64() * 1e3,
            load.as_secs_f64() / restore.as_secs_f64()
        );
        medians.push(restore);
    }
    if let (Some(lo), Some(hi)) = (medians.iter().min(), medians.iter().max()) {
        println!(
            "restore median spread across sizes: {:.2}x",
            hi.as_secs_f64() / lo.as_secs_f64()
        );
    }
}
