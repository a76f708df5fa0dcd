//! Merges and diffs at the level of the user's data, through the real binary and the
//! official AWS SDK for Rust: `service-merge` keeps both sides' objects, items, messages and
//! function versions (the bundle's on a clash), and a dry run names the units that change,
//! never the ones that merely moved on their own.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use aws_sdk_s3::primitives::ByteStream;
use cryopod_tests::{Emulator, dynamodb, empty_zip, json_of, lambda, s3, sqs, transfer};

const ACCOUNT: &str = "111111111111";
const REGION: &str = "us-east-1";

/// One side of the merge: table `tbl` with items `1` and `{side}` (both owned by `side`),
/// bucket `shared` with `k` (body `side`) and `{side}-only`, queue `q` with one message
/// `from {side}`, function `f` with one published version described `side`.
async fn fill(emu: &Emulator, side: &str) {
    let ddb = dynamodb(&emu.endpoint, REGION, ACCOUNT);
    ddb.create_table()
        .table_name("tbl")
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
    for id in ["1", &side.to_lowercase()] {
        ddb.put_item()
            .table_name("tbl")
            .item("id", AttributeValue::S(id.into()))
            .item("owner", AttributeValue::S(side.into()))
            .send()
            .await
            .expect("put item");
    }

    let s3c = s3(&emu.endpoint, REGION, ACCOUNT);
    s3c.create_bucket()
        .bucket("shared")
        .send()
        .await
        .expect("bucket");
    for (key, body) in [
        ("k".to_string(), side.to_string()),
        (format!("{}-only", side.to_lowercase()), side.to_string()),
    ] {
        s3c.put_object()
            .bucket("shared")
            .key(key)
            .body(ByteStream::from(body.into_bytes()))
            .send()
            .await
            .expect("put object");
    }

    let q = sqs(&emu.endpoint, REGION, ACCOUNT);
    let url = q
        .create_queue()
        .queue_name("q")
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    q.send_message()
        .queue_url(url)
        .message_body(format!("from {side}"))
        .send()
        .await
        .expect("send");

    let l = lambda(&emu.endpoint, REGION, ACCOUNT);
    l.create_function()
        .function_name("f")
        .runtime(aws_sdk_lambda::types::Runtime::Python312)
        .role(format!("arn:aws:iam::{ACCOUNT}:role/r"))
        .handler("index.handler")
        .description(side)
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(empty_zip()))
                .build(),
        )
        .send()
        .await
        .expect("function");
    l.publish_version()
        .function_name("f")
        .description(side)
        .send()
        .await
        .expect("publish");
    l.create_alias()
        .function_name("f")
        .name(format!("{}-alias", side.to_lowercase()))
        .function_version("1")
        .send()
        .await
        .expect("alias");
}

async fn items(emu: &Emulator) -> BTreeMap<String, String> {
    let out = dynamodb(&emu.endpoint, REGION, ACCOUNT)
        .scan()
        .table_name("tbl")
        .send()
        .await
        .expect("scan");
    out.items()
        .iter()
        .map(|i| {
            let s = |k: &str| match i.get(k) {
                Some(AttributeValue::S(s)) => s.clone(),
                other => panic!("{k}: {other:?}"),
            };
            (s("id"), s("owner"))
        })
        .collect()
}

async fn objects(emu: &Emulator) -> BTreeMap<String, String> {
    let c = s3(&emu.endpoint, REGION, ACCOUNT);
    let list = c
        .list_objects_v2()
        .bucket("shared")
        .send()
        .await
        .expect("list");
    let mut out = BTreeMap::new();
    for o in list.contents() {
        let key = o.key().expect("key").to_string();
        let body = c
            .get_object()
            .bucket("shared")
            .key(&key)
            .send()
            .await
            .expect("get")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes();
        out.insert(key, String::from_utf8_lossy(&body).to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn service_merge_keeps_both_sides_objects_items_messages_and_versions() {
    let a = Emulator::start();
    let b = Emulator::start();
    fill(&a, "A").await;
    fill(&b, "B").await;

    transfer(&a, &b, &["--merge", "service-merge"]);

    // DynamoDB: A's items, B's own item, A's `1` on the clash.
    let want: BTreeMap<String, String> = [("1", "A"), ("a", "A"), ("b", "B")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(items(&b).await, want);

    // S3: both sides' objects, A's body for `k`.
    let want: BTreeMap<String, String> = [("a-only", "A"), ("b-only", "B"), ("k", "A")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(objects(&b).await, want);

    // SQS: both messages in the queue.
    let q = sqs(&b.endpoint, REGION, ACCOUNT);
    let url = q
        .get_queue_url()
        .queue_name("q")
        .send()
        .await
        .expect("url")
        .queue_url
        .expect("url");
    let mut bodies = Vec::new();
    for _ in 0..5 {
        let got = q
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        bodies.extend(
            got.messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_string)),
        );
        if bodies.len() >= 2 {
            break;
        }
    }
    bodies.sort();
    assert_eq!(bodies, ["from A", "from B"]);

    // Lambda: A's $LATEST and version 1 (the clash), both sides' aliases.
    let l = lambda(&b.endpoint, REGION, ACCOUNT);
    let f = l
        .get_function()
        .function_name("f")
        .send()
        .await
        .expect("function");
    assert_eq!(f.configuration().and_then(|c| c.description()), Some("A"));
    let aliases = l
        .list_aliases()
        .function_name("f")
        .send()
        .await
        .expect("aliases");
    let mut names: Vec<&str> = aliases.aliases().iter().filter_map(|a| a.name()).collect();
    names.sort();
    assert_eq!(names, ["a-alias", "b-alias"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_just_loaded_dry_runs_to_no_changes_for_every_service() {
    let emu = Emulator::start();
    fill(&emu, "A").await;
    // Messages in flight and received make clocks and counters move on their own.
    let q = sqs(&emu.endpoint, REGION, ACCOUNT);
    let url = q
        .get_queue_url()
        .queue_name("q")
        .send()
        .await
        .expect("url")
        .queue_url
        .expect("url");
    q.receive_message()
        .queue_url(&url)
        .visibility_timeout(300)
        .send()
        .await
        .expect("receive");
    // The notes client is a blocking one.
    tokio::task::block_in_place(|| emu.notes(ACCOUNT, REGION).create_notebook("nb", &[]));

    json_of(&emu.cli(&["--json", "pod", "save", "seed"]));
    json_of(&emu.cli(&["--json", "pod", "load", "seed", "--merge", "overwrite"]));
    for merge in ["overwrite", "account-region-merge", "service-merge"] {
        let v = json_of(&emu.cli(&[
            "--json",
            "pod",
            "load",
            "seed",
            "--dry-run",
            "--merge",
            merge,
        ]));
        assert_eq!(
            v["diff"]["services"],
            serde_json::json!({}),
            "{merge}: a dry run of the state just loaded reports changes: {v}"
        );
        let out = emu.cli(&["pod", "load", "seed", "--dry-run", "--merge", merge]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("no changes"), "{merge}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_names_the_one_object_that_changed_among_ten_thousand() {
    let emu = Emulator::start();
    let c = s3(&emu.endpoint, REGION, ACCOUNT);
    c.create_bucket()
        .bucket("big")
        .send()
        .await
        .expect("bucket");
    let keys: Vec<String> = (0..10_000).map(|i| format!("key-{i:05}")).collect();
    for batch in keys.chunks(200) {
        let puts = batch.iter().map(|k| {
            c.put_object()
                .bucket("big")
                .key(k)
                .body(ByteStream::from(k.clone().into_bytes()))
                .send()
        });
        for r in futures_join(puts).await {
            r.expect("put object");
        }
    }
    json_of(&emu.cli(&["--json", "pod", "save", "many"]));
    c.put_object()
        .bucket("big")
        .key("key-04242")
        .body(ByteStream::from_static(b"changed"))
        .send()
        .await
        .expect("change one object");

    let v = json_of(&emu.cli(&["--json", "pod", "load", "many", "--dry-run"]));
    let scopes = v["diff"]["services"]["s3"]["scopes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(scopes.len(), 1, "{v}");
    let objects = &scopes[0]["collections"]["object"];
    assert_eq!(
        objects["modified"],
        serde_json::json!(["big/key-04242"]),
        "{v}"
    );
    assert_eq!(v["diff"]["totals"]["modified"], 1, "{v}");
    assert!(
        scopes[0]["collections"].get("bucket").is_none(),
        "the bucket itself did not change: {v}"
    );
    let out = emu.cli(&["pod", "load", "many", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("big/key-04242"), "{text}");
}

/// Awaits every future, in order (a small stand-in for `futures::future::join_all`, which
/// this crate does not depend on).
async fn futures_join<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
