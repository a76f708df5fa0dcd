//! Conformance of the SQS provider: a richly populated state survives capture → bundle →
//! fresh runtime → apply for every merge strategy, and each merge strategy combines two
//! overlapping states as DESIGN.md says.

use std::io::Cursor;

use cryopod::bundle::WriteOptions;
use cryopod::{AwsRequest, Body, MergeStrategy, Runtime, Scope, ScopeFilter, Service};
use cryopod_sqs::{SERVICE, SqsService};
use http_body_util::BodyExt;
use serde_json::{Value, json};

/// All runtimes in these tests run at this frozen instant, so captures compare byte for byte.
const T0: i64 = 1_700_000_000_000;
const ENDPOINT: &str = "http://localhost:4566";

fn runtime() -> Runtime {
    let rt = Runtime::builder()
        .enable(Some(vec![SERVICE.into()]))
        .build()
        .expect("runtime");
    sqs(&rt).clock().freeze(T0);
    rt
}

fn sqs(rt: &Runtime) -> &SqsService {
    rt.service(SERVICE)
        .and_then(|s| s.as_any().downcast_ref::<SqsService>())
        .expect("sqs service")
}

/// One JSON-protocol request through the service's own handler.
async fn call(rt: &Runtime, scope: &Scope, op: &str, input: Value) -> Value {
    let req = http::Request::builder()
        .method("POST")
        .uri("/")
        .header("x-amz-target", format!("AmazonSQS.{op}"))
        .header("content-type", "application/x-amz-json-1.0")
        .body(Body::from(input.to_string()))
        .expect("request");
    let resp = sqs(rt)
        .handle(AwsRequest {
            scope: scope.clone(),
            access_key_id: Some(scope.account.clone()),
            endpoint: ENDPOINT.into(),
            request: req,
        })
        .await;
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert!(status.is_success(), "{op} failed: {v}");
    v
}

/// One query-protocol request, to populate some state through the other protocol too.
async fn query(rt: &Runtime, scope: &Scope, form: &[(&str, &str)]) -> String {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let req = http::Request::builder()
        .method("POST")
        .uri("/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("request");
    let resp = sqs(rt)
        .handle(AwsRequest {
            scope: scope.clone(),
            access_key_id: None,
            endpoint: ENDPOINT.into(),
            request: req,
        })
        .await;
    let status = resp.status();
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
    .expect("utf8");
    assert!(status.is_success(), "{text}");
    text
}

fn url(scope: &Scope, name: &str) -> String {
    format!("{ENDPOINT}/{}/{name}", scope.account)
}

/// Every resource type and every settable field, in two accounts × two regions.
async fn populate(rt: &Runtime) {
    for account in ["111111111111", "222222222222"] {
        for region in ["us-east-1", "eu-west-1"] {
            let s = Scope::new(account, region);
            let dlq_arn = format!("arn:aws:sqs:{region}:{account}:dead");
            call(
                rt,
                &s,
                "CreateQueue",
                json!({"QueueName": "dead", "tags": {"role": "dlq"}}),
            )
            .await;
            call(
                rt,
                &s,
                "CreateQueue",
                json!({
                    "QueueName": "work",
                    "Attributes": {
                        "DelaySeconds": "2",
                        "MaximumMessageSize": "2048",
                        "MessageRetentionPeriod": "600",
                        "ReceiveMessageWaitTimeSeconds": "1",
                        "VisibilityTimeout": "40",
                        "Policy": "{\"Version\":\"2012-10-17\",\"Statement\":[]}",
                        "RedrivePolicy": json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1}).to_string(),
                        "RedriveAllowPolicy": "{\"redrivePermission\":\"allowAll\"}",
                        "KmsMasterKeyId": "alias/aws/sqs",
                        "KmsDataKeyReusePeriodSeconds": "120",
                        "SqsManagedSseEnabled": "false",
                    },
                    "tags": {"team": "core", "env": region},
                }),
            )
            .await;
            call(
                rt,
                &s,
                "CreateQueue",
                json!({
                    "QueueName": "orders.fifo",
                    "Attributes": {
                        "FifoQueue": "true",
                        "ContentBasedDeduplication": "true",
                        "DeduplicationScope": "messageGroup",
                        "FifoThroughputLimit": "perMessageGroupId",
                    },
                }),
            )
            .await;
            let work = url(&s, "work");
            // Messages with every attribute type and a system attribute.
            call(
                rt,
                &s,
                "SendMessageBatch",
                json!({
                    "QueueUrl": work,
                    "Entries": [
                        {"Id": "a", "MessageBody": "first", "DelaySeconds": 0,
                         "MessageAttributes": {
                            "s": {"DataType": "String", "StringValue": "text"},
                            "n": {"DataType": "Number.int", "StringValue": "42"},
                            "b": {"DataType": "Binary", "BinaryValue": "AAEC"}},
                         "MessageSystemAttributes": {
                            "AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-5759e988-bd862e3fe1be46a994272793"}}},
                        {"Id": "b", "MessageBody": "second", "DelaySeconds": 0},
                        {"Id": "c", "MessageBody": "delayed", "DelaySeconds": 300},
                    ],
                }),
            )
            .await;
            // One in flight (received once: a second receive will move it to the DLQ).
            let got = call(
                rt,
                &s,
                "ReceiveMessage",
                json!({"QueueUrl": work, "MaxNumberOfMessages": 1, "VisibilityTimeout": 0}),
            )
            .await;
            assert_eq!(got["Messages"].as_array().map(Vec::len), Some(1));
            // Over maxReceiveCount: moves to the dead-letter queue on this receive.
            call(
                rt,
                &s,
                "ReceiveMessage",
                json!({"QueueUrl": work, "MaxNumberOfMessages": 10}),
            )
            .await;
            // Through the query protocol: a message with attributes on the DLQ, and tags.
            query(
                rt,
                &s,
                &[
                    ("Action", "SendMessage"),
                    ("QueueUrl", &url(&s, "dead")),
                    ("MessageBody", "via query"),
                    ("MessageAttribute.1.Name", "q"),
                    ("MessageAttribute.1.Value.DataType", "String"),
                    ("MessageAttribute.1.Value.StringValue", "v"),
                ],
            )
            .await;
            query(
                rt,
                &s,
                &[
                    ("Action", "TagQueue"),
                    ("QueueUrl", &url(&s, "dead")),
                    ("Tag.1.Key", "owner"),
                    ("Tag.1.Value", "ops"),
                ],
            )
            .await;
            // FIFO: two groups, a duplicate (content-based), one in flight.
            let orders = url(&s, "orders.fifo");
            for (body, group) in [("o1", "g1"), ("o2", "g1"), ("o3", "g2"), ("o1", "g1")] {
                call(
                    rt,
                    &s,
                    "SendMessage",
                    json!({"QueueUrl": orders, "MessageBody": body, "MessageGroupId": group}),
                )
                .await;
            }
            call(
                rt,
                &s,
                "SendMessage",
                json!({"QueueUrl": orders, "MessageBody": "explicit", "MessageGroupId": "g3", "MessageDeduplicationId": "dedup-1"}),
            )
            .await;
            call(
                rt,
                &s,
                "ReceiveMessage",
                json!({"QueueUrl": orders, "MaxNumberOfMessages": 1}),
            )
            .await;
            // A purged queue remembers its purge time.
            call(rt, &s, "CreateQueue", json!({"QueueName": "scratch"})).await;
            call(
                rt,
                &s,
                "SendMessage",
                json!({"QueueUrl": url(&s, "scratch"), "MessageBody": "gone"}),
            )
            .await;
            call(
                rt,
                &s,
                "PurgeQueue",
                json!({"QueueUrl": url(&s, "scratch")}),
            )
            .await;
        }
    }
}

#[tokio::test]
async fn richly_populated_state_survives_every_strategy() {
    let rt = runtime();
    populate(&rt).await;
    let summary = rt.summary(None).await.expect("summary");
    assert_eq!(summary[SERVICE].len(), 4, "two accounts x two regions");
    cryopod::testing::check_provider(SERVICE, &rt, runtime)
        .await
        .expect("conformance");
}

/// A queue's name, visibility timeout and message bodies (in sequence order).
type QueueView = (String, String, Vec<String>);

fn view(rt: &Runtime) -> Vec<(String, String, Vec<QueueView>)> {
    sqs(rt).read(|s| {
        use cryopod::ScopedState;
        s.scoped()
            .iter()
            .filter(|(_, r)| !r.queues.is_empty())
            .map(|(scope, r)| {
                let queues = r
                    .queues
                    .iter()
                    .map(|(n, q)| {
                        (
                            n.clone(),
                            q.attributes
                                .get("VisibilityTimeout")
                                .cloned()
                                .unwrap_or_default(),
                            q.messages.values().map(|m| m.body.clone()).collect(),
                        )
                    })
                    .collect();
                (scope.account.clone(), scope.region.clone(), queues)
            })
            .collect()
    })
}

async fn make_queue(rt: &Runtime, s: &Scope, name: &str, vt: &str, bodies: &[&str]) {
    call(
        rt,
        s,
        "CreateQueue",
        json!({"QueueName": name, "Attributes": {"VisibilityTimeout": vt}}),
    )
    .await;
    for b in bodies {
        call(
            rt,
            s,
            "SendMessage",
            json!({"QueueUrl": url(s, name), "MessageBody": b}),
        )
        .await;
    }
}

/// Running: scope 1 {a, shared(vt 10, "old")}, scope 2 {x}.
/// Bundle:  scope 1 {shared(vt 20, "new1", "new2"), b}, scope 3 {y}. Returns (running, bundle).
async fn two_sides() -> (Runtime, Runtime) {
    let s1 = Scope::new("111111111111", "us-east-1");
    let s2 = Scope::new("111111111111", "eu-west-1");
    let s3 = Scope::new("222222222222", "us-east-1");
    let running = runtime();
    make_queue(&running, &s1, "a", "30", &["a1"]).await;
    make_queue(&running, &s1, "shared", "10", &["old"]).await;
    make_queue(&running, &s2, "x", "30", &["x1"]).await;
    let source = runtime();
    make_queue(&source, &s1, "shared", "20", &["new1", "new2"]).await;
    make_queue(&source, &s1, "b", "30", &[]).await;
    make_queue(&source, &s3, "y", "30", &["y1"]).await;
    (running, source)
}

async fn merged_view(strategy: MergeStrategy) -> Vec<(String, String, Vec<QueueView>)> {
    let (running, source) = two_sides().await;
    let (bundle, _) = source
        .export(
            None,
            &ScopeFilter::all(),
            Vec::new(),
            WriteOptions::default(),
        )
        .await
        .expect("export");
    running
        .import(Cursor::new(bundle), None, strategy)
        .await
        .expect("import");
    view(&running)
}

fn q(name: &str, vt: &str, bodies: &[&str]) -> QueueView {
    (
        name.into(),
        vt.into(),
        bodies.iter().map(|b| b.to_string()).collect(),
    )
}

#[tokio::test]
async fn overwrite_replaces_everything_with_the_bundle() {
    assert_eq!(
        merged_view(MergeStrategy::Overwrite).await,
        vec![
            (
                "111111111111".into(),
                "us-east-1".into(),
                vec![q("b", "30", &[]), q("shared", "20", &["new1", "new2"])]
            ),
            (
                "222222222222".into(),
                "us-east-1".into(),
                vec![q("y", "30", &["y1"])]
            ),
        ]
    );
}

#[tokio::test]
async fn account_region_merge_replaces_only_the_bundles_scopes() {
    assert_eq!(
        merged_view(MergeStrategy::AccountRegionMerge).await,
        vec![
            (
                "111111111111".into(),
                "eu-west-1".into(),
                vec![q("x", "30", &["x1"])]
            ),
            (
                "111111111111".into(),
                "us-east-1".into(),
                vec![q("b", "30", &[]), q("shared", "20", &["new1", "new2"])]
            ),
            (
                "222222222222".into(),
                "us-east-1".into(),
                vec![q("y", "30", &["y1"])]
            ),
        ]
    );
}

#[tokio::test]
async fn every_merge_strategy_holds_unit_by_unit() {
    use cryopod::ScopedState;
    let (running, source) = two_sides().await;
    let a = sqs(&running).read(|s| s.clone());
    let mut b = sqs(&source).read(|s| s.clone());
    // A clash: the bundle holds one of the running state's messages (same id), changed.
    let s1 = Scope::new("111111111111", "us-east-1");
    let mut m = a.scoped().get(&s1).expect("scope").queues["shared"]
        .messages
        .values()
        .next()
        .map(|m| cryopod_sqs::state::Message::clone(m))
        .expect("a message");
    m.body = "changed in the bundle".into();
    if let Some(q) = b.scoped_mut().get_mut(&s1).queues.get_mut("shared") {
        q.push(m);
    }
    cryopod::testing::check_merges(&a, &b);
}

#[tokio::test]
async fn service_merge_keeps_both_sides_messages_and_the_bundles_queue_attributes() {
    assert_eq!(
        merged_view(MergeStrategy::ServiceMerge).await,
        vec![
            (
                "111111111111".into(),
                "eu-west-1".into(),
                vec![q("x", "30", &["x1"])]
            ),
            (
                "111111111111".into(),
                "us-east-1".into(),
                vec![
                    q("a", "30", &["a1"]),
                    q("b", "30", &[]),
                    // The bundle's attributes; its messages first, then the running ones.
                    q("shared", "20", &["new1", "new2", "old"])
                ]
            ),
            (
                "222222222222".into(),
                "us-east-1".into(),
                vec![q("y", "30", &["y1"])]
            ),
        ]
    );
}

#[tokio::test]
async fn in_flight_message_reappears_after_its_remaining_timeout_after_restore() {
    let s = Scope::new("111111111111", "us-east-1");
    let a = runtime();
    make_queue(&a, &s, "q", "30", &["m"]).await;
    call(&a, &s, "ReceiveMessage", json!({"QueueUrl": url(&s, "q")})).await;
    // Captured 10 s into a 30 s visibility timeout: 20 s remain.
    sqs(&a).clock().advance(10_000);
    let (bundle, _) = a
        .export(
            None,
            &ScopeFilter::all(),
            Vec::new(),
            WriteOptions::default(),
        )
        .await
        .expect("export");
    // Restored an hour later.
    let b = runtime();
    sqs(&b).clock().advance(3_600_000);
    b.import(Cursor::new(bundle), None, MergeStrategy::Overwrite)
        .await
        .expect("import");
    sqs(&b).clock().advance(19_999);
    let none = call(&b, &s, "ReceiveMessage", json!({"QueueUrl": url(&s, "q")})).await;
    assert!(none.get("Messages").is_none(), "{none}");
    sqs(&b).clock().advance(1);
    let got = call(
        &b,
        &s,
        "ReceiveMessage",
        json!({"QueueUrl": url(&s, "q"), "AttributeNames": ["ApproximateReceiveCount"]}),
    )
    .await;
    assert_eq!(got["Messages"][0]["Body"], "m");
    assert_eq!(
        got["Messages"][0]["Attributes"]["ApproximateReceiveCount"],
        "2"
    );
}

// ---------------------------------------------------------------------------------------
// The golden bundle of state version 1: written once by an earlier build and committed, so
// every later build proves it still loads SQS bundles and data of that version. A new state
// version adds its own golden file beside it; this one is never regenerated.

fn golden_v1() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sqs-v1.cryopod")
}

#[tokio::test]
#[ignore = "writes tests/fixtures/sqs-v1.cryopod; run only to create a version's golden file"]
async fn regenerate_sqs_v1_golden_bundle() {
    let rt = runtime();
    populate(&rt).await;
    cryopod::testing::write_golden(&rt, SERVICE, &golden_v1())
        .await
        .expect("golden bundle written");
}

#[tokio::test]
async fn golden_v1_bundle_loads_to_the_expected_state() {
    let rt = runtime();
    cryopod::testing::load_golden(&rt, SERVICE, 1, &golden_v1())
        .await
        .expect("the v1 golden bundle loads");
    let loaded = view(&rt);
    assert_eq!(loaded.len(), 4, "two accounts x two regions");
    let (account, region, queues) = &loaded[0];
    assert_eq!(
        (account.as_str(), region.as_str()),
        ("111111111111", "eu-west-1")
    );
    let work = queues
        .iter()
        .find(|(name, _, _)| name == "work")
        .expect("queue work");
    assert_eq!(work.1, "40", "work's visibility timeout");
    // Every queue, attribute and message body is what the populate of that build made.
    let today = runtime();
    populate(&today).await;
    assert_eq!(loaded, view(&today));
    let tags = call(
        &rt,
        &Scope::new("111111111111", "us-east-1"),
        "ListQueueTags",
        json!({"QueueUrl": url(&Scope::new("111111111111", "us-east-1"), "work")}),
    )
    .await;
    assert_eq!(tags["Tags"]["team"], "core");
}
