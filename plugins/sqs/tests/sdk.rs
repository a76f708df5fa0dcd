//! The promises of the SQS plugin, checked with the official AWS SDK for Rust (JSON protocol)
//! and plain form posts (query protocol) against an in-process emulator over real HTTP.
//!
//! Time: each server's SQS clock is frozen and moved forward by the tests, so visibility
//! timeouts, delays and deduplication windows pass without sleeping.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{Credentials, Region};
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use cryopod::bundle::WriteOptions;
use cryopod::server::TestServer;
use cryopod::{MergeStrategy, ScopeFilter};
use cryopod_sqs::{SERVICE, SqsService};

const ACCOUNT: &str = "111111111111";
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const T0: i64 = 1_700_000_000_000;

fn sqs(server: &TestServer) -> &SqsService {
    server
        .runtime
        .service(SERVICE)
        .and_then(|s| s.as_any().downcast_ref::<SqsService>())
        .expect("sqs service")
}

async fn server_at(ms: i64) -> TestServer {
    let s = TestServer::start(&[SERVICE]).await;
    sqs(&s).clock().freeze(ms);
    s
}

fn client(server: &TestServer, region: &str, account: &str) -> Client {
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version_latest()
        .region(Region::new(region.to_string()))
        .endpoint_url(&server.endpoint)
        .credentials_provider(Credentials::new(account, "secret", None, None, "t"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(conf)
}

async fn url(c: &Client, name: &str) -> String {
    c.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .expect("queue url")
        .queue_url
        .expect("url")
}

fn attr(data_type: &str, s: Option<&str>, b: Option<&[u8]>) -> MessageAttributeValue {
    let mut v = MessageAttributeValue::builder().data_type(data_type);
    if let Some(s) = s {
        v = v.string_value(s);
    }
    if let Some(b) = b {
        v = v.binary_value(Blob::new(b.to_vec()));
    }
    v.build().expect("attribute")
}

/// What a received message looks like, minus what is legitimately different between two
/// emulators (the wall-clock time of a first receive).
fn describe(m: &Message, endpoint: &str) -> String {
    let mut attrs: BTreeMap<String, String> = m
        .attributes()
        .map(|a| {
            a.iter()
                .filter(|(k, _)| {
                    **k != MessageSystemAttributeName::ApproximateFirstReceiveTimestamp
                })
                .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    attrs.remove("ApproximateFirstReceiveTimestamp");
    let mattrs: BTreeMap<String, String> = m
        .message_attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.clone(), format!("{v:?}")))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{attrs:?}|{mattrs:?}",
        m.message_id(),
        m.body(),
        m.md5_of_body(),
        m.md5_of_message_attributes(),
        m.receipt_handle().map(|h| h.replace(endpoint, "")),
    )
}

async fn receive(c: &Client, url: &str, max: i32, vt: i32) -> Vec<Message> {
    c.receive_message()
        .queue_url(url)
        .max_number_of_messages(max)
        .visibility_timeout(vt)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default()
}

/// Receives every visible message of a standard queue (making them invisible for 10 min).
async fn drain_standard(c: &Client, url: &str) -> Vec<Message> {
    let mut out = Vec::new();
    loop {
        let got = receive(c, url, 10, 600).await;
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

/// Receives and deletes every deliverable message of a FIFO queue.
async fn drain_fifo(c: &Client, url: &str) -> Vec<Message> {
    let mut out = Vec::new();
    loop {
        let got = receive(c, url, 10, 600).await;
        if got.is_empty() {
            return out;
        }
        let entries: Vec<_> = got
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("e{i}"))
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .expect("entry")
            })
            .collect();
        let r = c
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("delete batch");
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        out.extend(got);
    }
}

/// Every listing and get the API offers, normalized to text, for both regions.
async fn inventory(server: &TestServer) -> Vec<String> {
    let mut out = Vec::new();
    for region in REGIONS {
        let c = client(server, region, ACCOUNT);
        let urls = c
            .list_queues()
            .send()
            .await
            .expect("list")
            .queue_urls
            .unwrap_or_default();
        for u in urls {
            let attrs = c
                .get_queue_attributes()
                .queue_url(&u)
                .attribute_names(QueueAttributeName::All)
                .send()
                .await
                .expect("attributes")
                .attributes
                .unwrap_or_default();
            let attrs: BTreeMap<String, String> = attrs
                .into_iter()
                .map(|(k, v)| (k.as_str().to_string(), v))
                .collect();
            let tags: BTreeMap<String, String> = c
                .list_queue_tags()
                .queue_url(&u)
                .send()
                .await
                .expect("tags")
                .tags
                .unwrap_or_default()
                .into_iter()
                .collect();
            let sources = c
                .list_dead_letter_source_queues()
                .queue_url(&u)
                .send()
                .await
                .expect("sources")
                .queue_urls;
            out.push(
                format!("{region} {u} {attrs:?} {tags:?} {sources:?}")
                    .replace(&server.endpoint, "<endpoint>"),
            );
        }
    }
    out
}

// Scaled for debug builds: 10,000 messages in total as the issue asks, sent 10 per batch.
const STD_PER_REGION: usize = 2_495;
const DELAYED_PER_REGION: usize = 5;
const FIFO_PER_REGION: usize = 2_500;
const GROUPS: usize = 5;

async fn populate(server: &TestServer) {
    for region in REGIONS {
        let c = client(server, region, ACCOUNT);
        c.create_queue()
            .queue_name("std-dlq")
            .send()
            .await
            .expect("dlq");
        let policy = format!(
            "{{\"deadLetterTargetArn\":\"arn:aws:sqs:{region}:{ACCOUNT}:std-dlq\",\"maxReceiveCount\":2}}"
        );
        let std = c
            .create_queue()
            .queue_name("std")
            .attributes(QueueAttributeName::VisibilityTimeout, "30")
            .attributes(QueueAttributeName::RedrivePolicy, policy)
            .tags("team", "core")
            .send()
            .await
            .expect("std")
            .queue_url
            .expect("url");
        let fifo = c
            .create_queue()
            .queue_name("orders.fifo")
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "true")
            .send()
            .await
            .expect("fifo")
            .queue_url
            .expect("url");
        for chunk in (0..STD_PER_REGION).collect::<Vec<_>>().chunks(10) {
            let entries = chunk
                .iter()
                .map(|i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .message_body(format!("{region} standard {i}"))
                        .message_attributes("i", attr("Number", Some(&i.to_string()), None))
                        .message_attributes("kind", attr("String", Some("std"), None))
                        .message_attributes("raw", attr("Binary", None, Some(&[*i as u8, 1, 2])))
                        .build()
                        .expect("entry")
                })
                .collect();
            let r = c
                .send_message_batch()
                .queue_url(&std)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("batch");
            assert!(r.failed.is_empty(), "{:?}", r.failed);
        }
        for i in 0..DELAYED_PER_REGION {
            c.send_message()
                .queue_url(&std)
                .message_body(format!("{region} delayed {i}"))
                .delay_seconds(60)
                .send()
                .await
                .expect("delayed");
        }
        for chunk in (0..FIFO_PER_REGION).collect::<Vec<_>>().chunks(10) {
            let entries = chunk
                .iter()
                .map(|i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("f{i}"))
                        .message_body(format!("{region} fifo {i}"))
                        .message_group_id(format!("g{}", i % GROUPS))
                        .message_deduplication_id(format!("d{i}"))
                        .message_attributes("i", attr("Number", Some(&i.to_string()), None))
                        .build()
                        .expect("entry")
                })
                .collect();
            let r = c
                .send_message_batch()
                .queue_url(&fifo)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("batch");
            assert!(r.failed.is_empty(), "{:?}", r.failed);
        }
        // Ten standard messages received twice (the second time in flight for 20 s): one more
        // receive puts them over maxReceiveCount = 2.
        assert_eq!(receive(&c, &std, 10, 0).await.len(), 10);
        assert_eq!(receive(&c, &std, 10, 20).await.len(), 10);
        // The head of group g0 in flight for 20 s: it blocks the rest of g0.
        let head = receive(&c, &fifo, 1, 20).await;
        assert_eq!(head[0].body(), Some(format!("{region} fifo 0").as_str()));
    }
}

#[tokio::test]
async fn round_trip_into_a_fresh_emulator_keeps_order_flight_counts_and_redrive() {
    let started = Instant::now();
    let a = server_at(T0).await;
    populate(&a).await;
    // Captured 10 s after the receives: 10 s of visibility remain, 50 s of delay.
    sqs(&a).clock().advance(10_000);
    let (bundle, _) = a
        .runtime
        .export(
            None,
            &ScopeFilter::all(),
            Vec::new(),
            WriteOptions::default(),
        )
        .await
        .expect("export");
    // Imported an hour later into a fresh emulator.
    let b = server_at(T0 + 3_600_000).await;
    b.runtime
        .import(Cursor::new(bundle), None, MergeStrategy::AccountRegionMerge)
        .await
        .expect("import");

    // Every listing and get is the same.
    let inv_a = inventory(&a).await;
    assert_eq!(inv_a.len(), 6);
    assert_eq!(inv_a, inventory(&b).await);

    for region in REGIONS {
        let (ca, cb) = (client(&a, region, ACCOUNT), client(&b, region, ACCOUNT));
        let (std_a, std_b) = (url(&ca, "std").await, url(&cb, "std").await);
        let (fifo_a, fifo_b) = (url(&ca, "orders.fifo").await, url(&cb, "orders.fifo").await);

        // Same messages, same order, same attributes and digests.
        let got_a = drain_standard(&ca, &std_a).await;
        let got_b = drain_standard(&cb, &std_b).await;
        assert_eq!(got_b.len(), STD_PER_REGION - 10);
        let da: Vec<String> = got_a.iter().map(|m| describe(m, &a.endpoint)).collect();
        let db: Vec<String> = got_b.iter().map(|m| describe(m, &b.endpoint)).collect();
        assert_eq!(da, db);
        let fa = drain_fifo(&ca, &fifo_a).await;
        let fb = drain_fifo(&cb, &fifo_b).await;
        assert_eq!(
            fa.iter()
                .map(|m| describe(m, &a.endpoint))
                .collect::<Vec<_>>(),
            fb.iter()
                .map(|m| describe(m, &b.endpoint))
                .collect::<Vec<_>>()
        );
        // g0 is blocked behind its in-flight head; every other group came in send order.
        assert_eq!(fb.len(), FIFO_PER_REGION - FIFO_PER_REGION / GROUPS);
        let mut last: BTreeMap<usize, usize> = BTreeMap::new();
        for m in &fb {
            let i: usize = m
                .body()
                .and_then(|b| b.rsplit(' ').next())
                .and_then(|n| n.parse().ok())
                .expect("index");
            assert_ne!(i % GROUPS, 0, "group g0 must stay blocked");
            if let Some(prev) = last.insert(i % GROUPS, i) {
                assert!(prev < i, "group order broken: {prev} before {i}");
            }
        }

        // In flight when captured with 10 s left: still invisible 9.999 s after the restore...
        sqs(&b).clock().advance(9_999);
        assert!(receive(&cb, &fifo_b, 10, 30).await.is_empty());
        sqs(&b).clock().advance(1);
        // ...then back, with the receive count continuing from before the snapshot.
        let head = receive(&cb, &fifo_b, 1, 30).await;
        assert_eq!(head[0].body(), Some(format!("{region} fifo 0").as_str()));
        assert_eq!(
            head[0]
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .map(String::as_str),
            Some("2")
        );
        // The standard ones were received twice with maxReceiveCount 2: this receive moves
        // them to the dead-letter queue instead of delivering them.
        assert!(receive(&cb, &std_b, 10, 30).await.is_empty());
        let dlq = url(&cb, "std-dlq").await;
        let dead = drain_standard(&cb, &dlq).await;
        assert_eq!(dead.len(), 10);
        for m in &dead {
            assert_eq!(
                m.attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::DeadLetterQueueSourceArn))
                    .map(String::as_str),
                Some(format!("arn:aws:sqs:{region}:{ACCOUNT}:std").as_str())
            );
        }
        // Delayed 60 s at send, captured 10 s in: visible 50 s after the restore (we are
        // 10 s after it now).
        sqs(&b).clock().advance(39_999);
        assert!(receive(&cb, &std_b, 10, 30).await.is_empty());
        sqs(&b).clock().advance(1);
        assert_eq!(receive(&cb, &std_b, 10, 30).await.len(), DELAYED_PER_REGION);
        // Rewind the shared clock for the next region's checks.
        sqs(&b).clock().freeze(T0 + 3_600_000);
    }
    eprintln!("round trip took {:?}", started.elapsed());
}

#[tokio::test]
async fn duplicate_send_inside_the_dedup_window_after_restore_is_still_deduplicated() {
    let a = server_at(T0).await;
    let ca = client(&a, "us-east-1", ACCOUNT);
    let q = ca
        .create_queue()
        .queue_name("d.fifo")
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .expect("create")
        .queue_url
        .expect("url");
    let send = |c: Client, url: String| async move {
        c.send_message()
            .queue_url(url)
            .message_body("payload")
            .message_group_id("g")
            .message_deduplication_id("once")
            .send()
            .await
            .expect("send")
            .message_id
            .expect("id")
    };
    let first = send(ca.clone(), q.clone()).await;
    sqs(&a).clock().advance(60_000);
    let (bundle, _) = a
        .runtime
        .export(
            None,
            &ScopeFilter::all(),
            Vec::new(),
            WriteOptions::default(),
        )
        .await
        .expect("export");
    let b = server_at(T0 + 86_400_000).await;
    b.runtime
        .import(Cursor::new(bundle), None, MergeStrategy::Overwrite)
        .await
        .expect("import");
    let cb = client(&b, "us-east-1", ACCOUNT);
    let qb = url(&cb, "d.fifo").await;
    // A day later in wall time, but 1 minute into the 5-minute window in queue time.
    assert_eq!(send(cb.clone(), qb.clone()).await, first);
    sqs(&b).clock().advance(3 * 60_000 + 59_999);
    assert_eq!(send(cb.clone(), qb.clone()).await, first);
    let attrs = cb
        .get_queue_attributes()
        .queue_url(&qb)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("attrs")
        .attributes
        .unwrap_or_default();
    assert_eq!(
        attrs
            .get(&QueueAttributeName::ApproximateNumberOfMessages)
            .map(String::as_str),
        Some("1")
    );
    // The window closes 5 minutes after the first send: now it is a new message.
    sqs(&b).clock().advance(1);
    assert_ne!(send(cb, qb).await, first);
}

#[tokio::test]
async fn sdk_errors_map_to_the_modelled_exceptions() {
    let s = server_at(T0).await;
    let c = client(&s, "us-east-1", ACCOUNT);
    let e = c
        .get_queue_url()
        .queue_name("missing")
        .send()
        .await
        .expect_err("missing queue");
    assert!(
        e.as_service_error()
            .is_some_and(|e| e.is_queue_does_not_exist()),
        "{e:?}"
    );
    c.create_queue()
        .queue_name("q")
        .send()
        .await
        .expect("create");
    let e = c
        .create_queue()
        .queue_name("q")
        .attributes(QueueAttributeName::VisibilityTimeout, "5")
        .send()
        .await
        .expect_err("different attributes");
    assert!(
        e.as_service_error()
            .is_some_and(|e| e.is_queue_name_exists()),
        "{e:?}"
    );
    let q = url(&c, "q").await;
    let e = c
        .delete_message()
        .queue_url(&q)
        .receipt_handle("nonsense")
        .send()
        .await
        .expect_err("bad receipt");
    assert!(
        e.as_service_error()
            .is_some_and(|e| e.is_receipt_handle_is_invalid()),
        "{e:?}"
    );
    let e = c
        .send_message_batch()
        .queue_url(&q)
        .set_entries(Some(Vec::new()))
        .send()
        .await
        .expect_err("empty batch");
    assert!(
        e.as_service_error()
            .is_some_and(|e| e.is_empty_batch_request()),
        "{e:?}"
    );
    // Accounts are isolated: the same name in another account does not exist.
    let other = client(&s, "us-east-1", "222222222222");
    assert!(other.get_queue_url().queue_name("q").send().await.is_err());
}

#[tokio::test]
async fn long_poll_wakes_on_send_and_does_not_block_captures() {
    let s = TestServer::start(&[SERVICE]).await;
    let c = client(&s, "us-east-1", ACCOUNT);
    let q = c
        .create_queue()
        .queue_name("lp")
        .send()
        .await
        .expect("create")
        .queue_url
        .expect("url");
    // An empty long poll waits its time out.
    let t = Instant::now();
    let none = c
        .receive_message()
        .queue_url(&q)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    assert!(none.messages.unwrap_or_default().is_empty());
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );

    let poll = {
        let (c, q) = (c.clone(), q.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let r = c
                .receive_message()
                .queue_url(q)
                .wait_time_seconds(10)
                .send()
                .await
                .expect("receive");
            (t.elapsed(), r.messages.unwrap_or_default())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A capture while the poll waits is not held up by it.
    let t = Instant::now();
    s.runtime
        .capture(None, &ScopeFilter::all())
        .await
        .expect("capture");
    assert!(t.elapsed() < Duration::from_secs(1));
    c.send_message()
        .queue_url(&q)
        .message_body("wake")
        .send()
        .await
        .expect("send");
    let (waited, got) = poll.await.expect("poll task");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body(), Some("wake"));
    assert!(
        waited < Duration::from_secs(5),
        "long poll did not wake: {waited:?}"
    );
}

/// The text of every `<name>` element in `xml`.
fn tags(xml: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(
            after[..j]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&amp;", "&"),
        );
        rest = &after[j + close.len()..];
    }
    out
}

async fn form(server: &TestServer, params: &[(&str, &str)]) -> (u16, String) {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let r = reqwest::Client::new()
        .post(&server.endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential={ACCOUNT}/20240101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0"),
        )
        .body(body)
        .send()
        .await
        .expect("post");
    (r.status().as_u16(), r.text().await.expect("text"))
}

#[tokio::test]
async fn both_protocols_give_the_same_results_for_the_same_calls() {
    let s = server_at(T0).await;
    let c = client(&s, "us-east-1", ACCOUNT);
    // Create.
    let json_url = c
        .create_queue()
        .queue_name("same-json")
        .attributes(QueueAttributeName::VisibilityTimeout, "45")
        .tags("k", "v")
        .send()
        .await
        .expect("create")
        .queue_url
        .expect("url");
    let (st, xml) = form(
        &s,
        &[
            ("Action", "CreateQueue"),
            ("QueueName", "same-query"),
            ("Attribute.1.Name", "VisibilityTimeout"),
            ("Attribute.1.Value", "45"),
            ("Tag.1.Key", "k"),
            ("Tag.1.Value", "v"),
        ],
    )
    .await;
    assert_eq!(st, 200, "{xml}");
    let query_url = tags(&xml, "QueueUrl").remove(0);
    assert_eq!(query_url.replace("same-query", "same-json"), json_url);

    // Send with attributes: same digests.
    let sent = c
        .send_message()
        .queue_url(&json_url)
        .message_body("hello <world>")
        .message_attributes("s", attr("String", Some("x"), None))
        .message_attributes("b", attr("Binary", None, Some(b"\x00\xff")))
        .send()
        .await
        .expect("send");
    let (st, xml) = form(
        &s,
        &[
            ("Action", "SendMessage"),
            ("QueueUrl", &query_url),
            ("MessageBody", "hello <world>"),
            ("MessageAttribute.1.Name", "s"),
            ("MessageAttribute.1.Value.DataType", "String"),
            ("MessageAttribute.1.Value.StringValue", "x"),
            ("MessageAttribute.2.Name", "b"),
            ("MessageAttribute.2.Value.DataType", "Binary"),
            ("MessageAttribute.2.Value.BinaryValue", "AP8="),
        ],
    )
    .await;
    assert_eq!(st, 200, "{xml}");
    assert_eq!(
        tags(&xml, "MD5OfMessageBody"),
        vec![sent.md5_of_message_body.clone().expect("md5")]
    );
    assert_eq!(
        tags(&xml, "MD5OfMessageAttributes"),
        vec![sent.md5_of_message_attributes.clone().expect("md5")]
    );

    // Attributes: the same values (ARN and name aside).
    let attrs = c
        .get_queue_attributes()
        .queue_url(&json_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("attrs")
        .attributes
        .unwrap_or_default();
    let (_, xml) = form(
        &s,
        &[
            ("Action", "GetQueueAttributes"),
            ("QueueUrl", &query_url),
            ("AttributeName.1", "All"),
        ],
    )
    .await;
    let names = tags(&xml, "Name");
    let values = tags(&xml, "Value");
    let q: BTreeMap<String, String> = names.into_iter().zip(values).collect();
    let j: BTreeMap<String, String> = attrs
        .into_iter()
        .map(|(k, v)| (k.as_str().to_string(), v))
        .collect();
    assert_eq!(q.len(), j.len());
    for (k, v) in &j {
        if k != "QueueArn" {
            assert_eq!(q.get(k), Some(v), "{k}");
        }
    }

    // Receive: same body, digests, attributes.
    let m = receive(&c, &json_url, 1, 30).await.remove(0);
    let (_, xml) = form(
        &s,
        &[
            ("Action", "ReceiveMessage"),
            ("QueueUrl", &query_url),
            ("AttributeName.1", "All"),
            ("MessageAttributeName.1", "All"),
            ("VisibilityTimeout", "30"),
        ],
    )
    .await;
    assert_eq!(
        tags(&xml, "Body"),
        vec![m.body().unwrap_or_default().to_string()]
    );
    assert_eq!(
        tags(&xml, "MD5OfBody"),
        vec![m.md5_of_body().unwrap_or_default().to_string()]
    );
    assert_eq!(
        tags(&xml, "MD5OfMessageAttributes"),
        vec![
            m.md5_of_message_attributes()
                .unwrap_or_default()
                .to_string()
        ]
    );
    assert_eq!(tags(&xml, "BinaryValue"), vec!["AP8=".to_string()]);
    assert_eq!(
        tags(&xml, "ApproximateReceiveCount").len(),
        0,
        "attributes are Name/Value pairs"
    );
    let handle = tags(&xml, "ReceiptHandle").remove(0);

    // Delete through the query protocol, tags through both.
    let (st, xml) = form(
        &s,
        &[
            ("Action", "DeleteMessage"),
            ("QueueUrl", &query_url),
            ("ReceiptHandle", &handle),
        ],
    )
    .await;
    assert_eq!(st, 200, "{xml}");
    let (_, xml) = form(&s, &[("Action", "ListQueueTags"), ("QueueUrl", &query_url)]).await;
    let jt = c
        .list_queue_tags()
        .queue_url(&json_url)
        .send()
        .await
        .expect("tags")
        .tags
        .unwrap_or_default();
    assert_eq!(tags(&xml, "Key"), jt.keys().cloned().collect::<Vec<_>>());

    // Listing: both queues in both protocols.
    let (_, xml) = form(
        &s,
        &[("Action", "ListQueues"), ("QueueNamePrefix", "same-")],
    )
    .await;
    let listed = c
        .list_queues()
        .queue_name_prefix("same-")
        .send()
        .await
        .expect("list")
        .queue_urls
        .unwrap_or_default();
    assert_eq!(tags(&xml, "QueueUrl"), listed);

    // Errors: the same code, the query one in XML and the JSON one in x-amzn-query-error.
    let (st, xml) = form(&s, &[("Action", "GetQueueUrl"), ("QueueName", "nope")]).await;
    assert_eq!(st, 400);
    assert_eq!(
        tags(&xml, "Code"),
        vec!["AWS.SimpleQueueService.NonExistentQueue".to_string()]
    );
    let e = c
        .get_queue_url()
        .queue_name("nope")
        .send()
        .await
        .expect_err("missing");
    assert_eq!(
        e.as_service_error()
            .and_then(|e| aws_sdk_sqs::error::ProvideErrorMetadata::code(e)),
        Some("AWS.SimpleQueueService.NonExistentQueue")
    );
    let (st, xml) = form(
        &s,
        &[
            ("Action", "ReceiveMessage"),
            ("QueueUrl", &query_url),
            ("MaxNumberOfMessages", "11"),
        ],
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        tags(&xml, "Code"),
        vec!["InvalidParameterValue".to_string()]
    );
    let e = c
        .receive_message()
        .queue_url(&json_url)
        .max_number_of_messages(11)
        .send()
        .await
        .expect_err("11");
    assert_eq!(
        e.as_service_error()
            .and_then(|e| aws_sdk_sqs::error::ProvideErrorMetadata::code(e)),
        Some("InvalidParameterValue")
    );
}
