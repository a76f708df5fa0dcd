//! Checkpoints end to end: the real binary, the official AWS SDK for Rust over HTTP and the
//! real CLI. A checkpoint restored after changes to S3, SQS, DynamoDB and Lambda answers
//! every read as right after it was taken, and restores under concurrent traffic never mix
//! two points in time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;
use cryopod_tests::{Emulator, dynamodb, empty_zip, json_of, lambda, s3, sqs};
use serde_json::Value;

const ACCOUNT: &str = "111111111111";
const REGION: &str = "us-east-1";

/// `method path` on the internal API: status and JSON answer.
async fn api(emu: &Emulator, method: reqwest::Method, path: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .request(method, format!("{}{path}", emu.endpoint))
        .send()
        .await
        .expect("internal API");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON answer"))
}

async fn post_ok(emu: &Emulator, path: &str) -> Value {
    let (status, v) = api(emu, reqwest::Method::POST, path).await;
    assert_eq!(status, 200, "POST {path}: {v}");
    v
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn attr(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("attribute")
}

fn hash_key(name: &str) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(KeyType::Hash)
        .build()
        .expect("key")
}

async fn create_table(ddb: &aws_sdk_dynamodb::Client, name: &str, gsi: bool) {
    let mut req = ddb
        .create_table()
        .table_name(name)
        .attribute_definitions(attr("id"))
        .key_schema(hash_key("id"))
        .billing_mode(BillingMode::PayPerRequest);
    if gsi {
        req = req
            .attribute_definitions(attr("g"))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name("by-g")
                    .key_schema(hash_key("g"))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .expect("gsi"),
            );
    }
    req.send().await.expect("create table");
}

async fn put_item(ddb: &aws_sdk_dynamodb::Client, table: &str, id: &str, g: &str, v: &str) {
    ddb.put_item()
        .table_name(table)
        .item("id", s(id))
        .item("g", s(g))
        .item("v", s(v))
        .send()
        .await
        .expect("put item");
}

async fn create_function(l: &aws_sdk_lambda::Client, name: &str) {
    l.create_function()
        .function_name(name)
        .runtime(aws_sdk_lambda::types::Runtime::Python312)
        .role(format!("arn:aws:iam::{ACCOUNT}:role/r"))
        .handler("index.handler")
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(empty_zip()))
                .build(),
        )
        .send()
        .await
        .expect("function");
}

/// Everything a client can read of the seeded state, for comparing two moments.
#[derive(Debug, PartialEq)]
struct Reads {
    buckets: Vec<String>,
    objects: BTreeMap<String, Vec<u8>>,
    queues: Vec<String>,
    /// Visible, in flight, delayed.
    queue_counts: (String, String, String),
    tables: Vec<String>,
    items: BTreeMap<String, String>,
    by_g: Vec<String>,
    functions: Vec<String>,
}

async fn read_all(emu: &Emulator, queue_url: &str) -> Reads {
    let c = s3(&emu.endpoint, REGION, ACCOUNT);
    let buckets = c.list_buckets().send().await.expect("list buckets");
    let mut objects = BTreeMap::new();
    let list = c
        .list_objects_v2()
        .bucket("bkt")
        .send()
        .await
        .expect("list objects");
    for o in list.contents() {
        let key = o.key().expect("key").to_string();
        let body = c
            .get_object()
            .bucket("bkt")
            .key(&key)
            .send()
            .await
            .expect("get object")
            .body
            .collect()
            .await
            .expect("body")
            .to_vec();
        objects.insert(key, body);
    }
    let q = sqs(&emu.endpoint, REGION, ACCOUNT);
    let queues = q.list_queues().send().await.expect("list queues");
    let attrs = q
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("queue attributes");
    let a = |n: QueueAttributeName| {
        attrs
            .attributes()
            .and_then(|m| m.get(&n).cloned())
            .unwrap_or_default()
    };
    let ddb = dynamodb(&emu.endpoint, REGION, ACCOUNT);
    let tables = ddb.list_tables().send().await.expect("list tables");
    let scan = ddb.scan().table_name("tbl").send().await.expect("scan");
    let items = scan
        .items()
        .iter()
        .map(|i| match (i.get("id"), i.get("v")) {
            (Some(AttributeValue::S(id)), Some(AttributeValue::S(v))) => (id.clone(), v.clone()),
            other => panic!("item without id/v: {other:?}"),
        })
        .collect();
    let query = ddb
        .query()
        .table_name("tbl")
        .index_name("by-g")
        .key_condition_expression("g = :g")
        .expression_attribute_values(":g", s("even"))
        .send()
        .await
        .expect("query GSI");
    let mut by_g: Vec<String> = query
        .items()
        .iter()
        .filter_map(|i| match i.get("id") {
            Some(AttributeValue::S(id)) => Some(id.clone()),
            _ => None,
        })
        .collect();
    by_g.sort();
    let l = lambda(&emu.endpoint, REGION, ACCOUNT);
    let fns = l.list_functions().send().await.expect("list functions");
    let mut functions: Vec<String> = fns
        .functions()
        .iter()
        .filter_map(|f| f.function_name().map(str::to_string))
        .collect();
    functions.sort();
    Reads {
        buckets: buckets
            .buckets()
            .iter()
            .filter_map(|b| b.name().map(str::to_string))
            .collect(),
        objects,
        queues: queues.queue_urls().to_vec(),
        queue_counts: (
            a(QueueAttributeName::ApproximateNumberOfMessages),
            a(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            a(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        ),
        tables: tables.table_names().to_vec(),
        items,
        by_g,
        functions,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_checkpoint_answers_every_read_as_right_after_it_was_taken() {
    let emu = Emulator::start();
    let c = s3(&emu.endpoint, REGION, ACCOUNT);
    let q = sqs(&emu.endpoint, REGION, ACCOUNT);
    let ddb = dynamodb(&emu.endpoint, REGION, ACCOUNT);
    let l = lambda(&emu.endpoint, REGION, ACCOUNT);

    // Seed.
    c.create_bucket()
        .bucket("bkt")
        .send()
        .await
        .expect("bucket");
    for (k, body) in [("k1", "one"), ("k2", "two")] {
        c.put_object()
            .bucket("bkt")
            .key(k)
            .body(ByteStream::from(body.as_bytes().to_vec()))
            .send()
            .await
            .expect("put object");
    }
    let url = q
        .create_queue()
        .queue_name("q")
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    for (body, delay) in [("in-flight", 0), ("visible", 0), ("delayed", 600)] {
        q.send_message()
            .queue_url(&url)
            .message_body(body)
            .delay_seconds(delay)
            .send()
            .await
            .expect("send");
        if body == "in-flight" {
            let got = q
                .receive_message()
                .queue_url(&url)
                .visibility_timeout(600)
                .send()
                .await
                .expect("receive");
            assert_eq!(got.messages().len(), 1);
        }
    }
    create_table(&ddb, "tbl", true).await;
    for i in 0..6 {
        let g = if i % 2 == 0 { "even" } else { "odd" };
        put_item(&ddb, "tbl", &format!("i{i}"), g, &format!("v{i}")).await;
    }
    create_function(&l, "f").await;
    let before = read_all(&emu, &url).await;
    assert_eq!(before.queue_counts, ("1".into(), "1".into(), "1".into()));
    assert_eq!(before.by_g, ["i0", "i2", "i4"]);

    let taken = post_ok(&emu, "/_cryopod/checkpoints/base").await;
    assert_eq!(taken["name"], "base");
    assert!(
        taken["retained"]["blobs"].as_u64().unwrap_or(0) >= 2,
        "{taken}"
    );

    // Change everything.
    c.delete_object()
        .bucket("bkt")
        .key("k1")
        .send()
        .await
        .expect("delete object");
    c.put_object()
        .bucket("bkt")
        .key("k2")
        .body(ByteStream::from(b"changed".to_vec()))
        .send()
        .await
        .expect("overwrite");
    c.create_bucket()
        .bucket("bkt2")
        .send()
        .await
        .expect("bucket 2");
    let got = q
        .receive_message()
        .queue_url(&url)
        .visibility_timeout(600)
        .send()
        .await
        .expect("receive");
    assert_eq!(got.messages().len(), 1, "the visible message");
    q.create_queue()
        .queue_name("q2")
        .send()
        .await
        .expect("queue 2");
    ddb.delete_item()
        .table_name("tbl")
        .key("id", s("i0"))
        .send()
        .await
        .expect("delete item");
    put_item(&ddb, "tbl", "i9", "even", "new").await;
    create_table(&ddb, "tbl2", false).await;
    l.delete_function()
        .function_name("f")
        .send()
        .await
        .expect("delete function");
    create_function(&l, "g").await;
    assert_ne!(read_all(&emu, &url).await, before);

    let restored = post_ok(&emu, "/_cryopod/checkpoints/base/restore").await;
    assert_eq!(restored["checkpoint"], "base");
    let after = read_all(&emu, &url).await;
    assert_eq!(after, before);

    // Run-time behaviour came back too: the visible message is receivable, the in-flight
    // and the delayed ones are not.
    let got = q
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("receive after restore");
    let bodies: Vec<&str> = got.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, ["visible"]);

    // Restoring again (the checkpoint is not used up) and listing it.
    post_ok(&emu, "/_cryopod/checkpoints/base/restore").await;
    assert_eq!(read_all(&emu, &url).await, before);
    let (status, list) = api(&emu, reqwest::Method::GET, "/_cryopod/checkpoints").await;
    assert_eq!(status, 200);
    let entry = &list["checkpoints"][0];
    assert_eq!(entry["name"], "base");
    assert_eq!(entry["resources"], taken["resources"]);
    let (status, _) = api(&emu, reqwest::Method::DELETE, "/_cryopod/checkpoints/base").await;
    assert_eq!(status, 200);
    let (status, err) = api(
        &emu,
        reqwest::Method::POST,
        "/_cryopod/checkpoints/base/restore",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], "NoSuchCheckpoint");
}

/// Writers each own one key and write it as a pair: S3 object first, then DynamoDB item,
/// with the same counter. Any instant of the state therefore has, per key, the S3 counter
/// equal to DynamoDB's or one ahead (the pair being written). Checkpoints taken and
/// restored while the writers run must all be such instants.
#[tokio::test(flavor = "multi_thread")]
async fn restores_under_concurrent_traffic_never_mix_two_instants() {
    const WRITERS: usize = 4;
    let emu = Emulator::start();
    let c = s3(&emu.endpoint, REGION, ACCOUNT);
    let ddb = dynamodb(&emu.endpoint, REGION, ACCOUNT);
    c.create_bucket()
        .bucket("pairs")
        .send()
        .await
        .expect("bucket");
    create_table(&ddb, "pairs", false).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (c, ddb, stop) = (c.clone(), ddb.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let key = format!("w{w}");
            let mut n: u64 = 0;
            loop {
                // Seen at the start of a pair: the last pair starts after the last restore.
                let last = stop.load(Ordering::SeqCst);
                n += 1;
                c.put_object()
                    .bucket("pairs")
                    .key(&key)
                    .body(ByteStream::from(n.to_string().into_bytes()))
                    .send()
                    .await
                    .expect("put pair object");
                ddb.put_item()
                    .table_name("pairs")
                    .item("id", s(&key))
                    .item("n", AttributeValue::N(n.to_string()))
                    .send()
                    .await
                    .expect("put pair item");
                if last {
                    break;
                }
            }
        }));
    }
    let rounds = 6;
    for r in 0..rounds {
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        post_ok(&emu, &format!("/_cryopod/checkpoints/r{r}")).await;
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        if r > 0 {
            post_ok(&emu, &format!("/_cryopod/checkpoints/r{}/restore", r - 1)).await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }
    let pairs = || async {
        let mut out = Vec::new();
        for w in 0..WRITERS {
            let key = format!("w{w}");
            let obj = c.get_object().bucket("pairs").key(&key).send().await;
            let item = ddb
                .get_item()
                .table_name("pairs")
                .key("id", s(&key))
                .send()
                .await
                .expect("get item");
            let s3n: Option<u64> = match obj {
                Ok(o) => {
                    let b = o.body.collect().await.expect("body").to_vec();
                    String::from_utf8_lossy(&b).parse().ok()
                }
                Err(_) => None,
            };
            let ddbn: Option<u64> = match item.item().and_then(|i| i.get("n")) {
                Some(AttributeValue::N(n)) => n.parse().ok(),
                _ => None,
            };
            out.push((key, s3n, ddbn));
        }
        out
    };
    // After the traffic: each writer's last pair was written whole after the last restore.
    for (key, s3n, ddbn) in pairs().await {
        assert_eq!(s3n, ddbn, "{key} after the traffic");
    }
    for r in 0..rounds {
        post_ok(&emu, &format!("/_cryopod/checkpoints/r{r}/restore")).await;
        for (key, s3n, ddbn) in pairs().await {
            let ok = match (s3n, ddbn) {
                (Some(a), Some(b)) => a == b || a == b + 1,
                (Some(1), None) | (None, None) => true,
                _ => false,
            };
            assert!(ok, "checkpoint r{r}, {key}: S3 {s3n:?}, DynamoDB {ddbn:?}");
        }
    }
}

fn error_code(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "the CLI should have failed");
    let v: Value = serde_json::from_slice(&out.stderr)
        .or_else(|_| serde_json::from_slice(&out.stdout))
        .unwrap_or_else(|e| {
            panic!(
                "no JSON error ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    v["error"]["code"].as_str().unwrap_or_default().to_string()
}

#[test]
fn the_cli_saves_lists_restores_and_deletes_checkpoints_within_the_limit() {
    let emu = Emulator::start_with(&[], &[("CRYOPOD_CHECKPOINT_LIMIT", "1")]);
    let notes = emu.notes(ACCOUNT, REGION);
    notes.create_notebook("kept", &[]);
    let saved = json_of(&emu.cli(&[
        "--json",
        "checkpoint",
        "save",
        "clean",
        "--services",
        "notes",
    ]));
    assert_eq!(saved["services"], serde_json::json!(["notes"]));
    notes.create_notebook("later", &[]);
    assert_eq!(
        error_code(&emu.cli(&["--json", "checkpoint", "save", "second"])),
        "CheckpointLimit"
    );
    assert_eq!(
        error_code(&emu.cli(&["--json", "checkpoint", "save", "no!pe"])),
        "InvalidCheckpointName"
    );
    assert_eq!(
        error_code(&emu.cli(&[
            "--json",
            "checkpoint",
            "restore",
            "clean",
            "--services",
            "s3"
        ])),
        "ServiceNotInCheckpoint"
    );
    let list = json_of(&emu.cli(&["--json", "checkpoint", "list"]));
    assert_eq!(list["checkpoints"][0]["name"], "clean");
    let human = emu.cli(&["checkpoint", "list"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("clean"));
    let restored = json_of(&emu.cli(&["--json", "checkpoint", "restore", "clean"]));
    assert_eq!(restored["restored"], serde_json::json!(["notes"]));
    assert_eq!(notes.list_notebooks(), ["kept"]);
    json_of(&emu.cli(&["--json", "checkpoint", "delete", "clean"]));
    assert_eq!(
        error_code(&emu.cli(&["--json", "checkpoint", "delete", "clean"])),
        "NoSuchCheckpoint"
    );
    // Room again after the delete.
    json_of(&emu.cli(&["--json", "checkpoint", "save", "second"]));
}
