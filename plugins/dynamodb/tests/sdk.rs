//! The official AWS SDK for Rust against the in-process emulator: what users who seed
//! DynamoDB with fixtures rely on, including getting every item back exactly after an
//! export/import round trip.

use std::collections::HashMap;
use std::io::Cursor;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, LocalSecondaryIndex, Projection, ProjectionType, PutRequest, ScalarAttributeType,
    WriteRequest,
};
use cryopod::server::TestServer;
use cryopod::{MergeStrategy, ScopeFilter};
use cryopod_dynamodb::SERVICE;

type Item = HashMap<String, AttributeValue>;

const ACCOUNT: &str = "123456789012";
const REGIONS: [&str; 2] = ["us-east-1", "eu-central-1"];

fn client(endpoint: &str, region: &str) -> Client {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version_latest()
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(ACCOUNT, "secret", None, None, "t"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(conf)
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}
fn n(v: &str) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(name: &str, t: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(t)
        .build()
        .expect("key schema")
}

fn def(name: &str, t: ScalarAttributeType) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(t)
        .build()
        .expect("attribute definition")
}

/// `Events`: pk S, sk N, a GSI on (kind S, ts N) and an LSI on (pk, ts).
async fn create_events(c: &Client) {
    c.create_table()
        .table_name("Events")
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(def("pk", ScalarAttributeType::S))
        .attribute_definitions(def("sk", ScalarAttributeType::N))
        .attribute_definitions(def("kind", ScalarAttributeType::S))
        .attribute_definitions(def("ts", ScalarAttributeType::N))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("by-kind")
                .key_schema(key("kind", KeyType::Hash))
                .key_schema(key("ts", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .expect("gsi"),
        )
        .local_secondary_indexes(
            LocalSecondaryIndex::builder()
                .index_name("by-ts")
                .key_schema(key("pk", KeyType::Hash))
                .key_schema(key("ts", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .non_key_attributes("payload")
                        .build(),
                )
                .build()
                .expect("lsi"),
        )
        .send()
        .await
        .expect("create Events");
}

/// `Blobs`: a binary hash key only.
async fn create_blobs(c: &Client) {
    c.create_table()
        .table_name("Blobs")
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(def("id", ScalarAttributeType::B))
        .key_schema(key("id", KeyType::Hash))
        .send()
        .await
        .expect("create Blobs");
}

/// An item holding every attribute type, with numbers at DynamoDB's precision limits.
fn event(region: &str, i: usize) -> Item {
    let mut m = HashMap::new();
    m.insert("pk".into(), s(&format!("{region}#p{}", i % 40)));
    m.insert("sk".into(), n(&format!("{}", i as i64 - 500)));
    m.insert(
        "ts".into(),
        n(&format!("{}.{}", 1_700_000_000 + i * 7 % 1000, i % 10)),
    );
    if !i.is_multiple_of(5) {
        // Sparse GSI: every fifth item has no `kind`.
        m.insert("kind".into(), s(&format!("k{}", i % 7)));
    }
    m.insert("payload".into(), s(&format!("payload {i} ✓")));
    m.insert("tenth".into(), n("0.1"));
    m.insert("huge".into(), n("1E+38"));
    m.insert(
        "digits".into(),
        n(&format!("{:038}", i as u128 * 7919 + 10u128.pow(37))),
    );
    m.insert(
        "tiny".into(),
        n("-1.0000000000000000000000000000000000001E-120"),
    );
    m.insert(
        "bin".into(),
        AttributeValue::B(Blob::new(vec![0, 1, 2, (i % 256) as u8])),
    );
    m.insert("flag".into(), AttributeValue::Bool(i.is_multiple_of(2)));
    m.insert("nothing".into(), AttributeValue::Null(true));
    m.insert(
        "list".into(),
        AttributeValue::L(vec![
            s("x"),
            n("2.50"),
            AttributeValue::M(HashMap::from([("k".into(), n("1"))])),
        ]),
    );
    m.insert(
        "map".into(),
        AttributeValue::M(HashMap::from([
            (
                "nested".into(),
                AttributeValue::L(vec![AttributeValue::Ss(vec!["a".into()])]),
            ),
            ("when".into(), n(&i.to_string())),
        ])),
    );
    m.insert(
        "ss".into(),
        AttributeValue::Ss(vec!["b".into(), "a".into(), format!("s{i}")]),
    );
    m.insert(
        "ns".into(),
        AttributeValue::Ns(vec!["1".into(), "0.5".into(), format!("{}", i + 1000)]),
    );
    m.insert(
        "bs".into(),
        AttributeValue::Bs(vec![Blob::new(vec![9]), Blob::new(vec![i as u8, 1])]),
    );
    m
}

/// A deterministic rendering of attribute values (the SDK's maps are `HashMap`s, whose
/// `Debug` order varies between runs), so two reads can be compared as text.
fn canon_value(v: &AttributeValue) -> String {
    match v {
        AttributeValue::M(m) => format!("M{}", canon(m)),
        AttributeValue::L(l) => format!(
            "L[{}]",
            l.iter().map(canon_value).collect::<Vec<_>>().join(",")
        ),
        other => format!("{other:?}"),
    }
}

fn canon(item: &Item) -> String {
    let sorted: std::collections::BTreeMap<&String, String> =
        item.iter().map(|(k, v)| (k, canon_value(v))).collect();
    format!("{sorted:?}")
}

fn canon_all(items: &[Item]) -> String {
    items.iter().map(canon).collect::<Vec<_>>().join("\n")
}

async fn batch_put(c: &Client, table: &str, items: Vec<Item>) {
    for chunk in items.chunks(25) {
        let reqs: Vec<WriteRequest> = chunk
            .iter()
            .map(|it| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(it.clone()))
                            .build()
                            .expect("put"),
                    )
                    .build()
            })
            .collect();
        let out = c
            .batch_write_item()
            .request_items(table, reqs)
            .send()
            .await
            .expect("batch write");
        assert!(out.unprocessed_items().is_none_or(|u| u.is_empty()));
    }
}

// Volumes scaled down for debug builds: the issue speaks of 100,000 items; 2 regions ×
// (2,000 events + 500 blobs) = 5,000 items written through BatchWriteItem exercise the same
// paths in a few seconds.
const EVENTS: usize = 2_000;
const BLOBS: usize = 500;

async fn populate(endpoint: &str) {
    for region in REGIONS {
        let c = client(endpoint, region);
        create_events(&c).await;
        create_blobs(&c).await;
        batch_put(
            &c,
            "Events",
            (0..EVENTS).map(|i| event(region, i)).collect(),
        )
        .await;
        batch_put(
            &c,
            "Blobs",
            (0..BLOBS)
                .map(|i| {
                    HashMap::from([
                        (
                            "id".to_string(),
                            AttributeValue::B(Blob::new((i as u32).to_be_bytes().to_vec())),
                        ),
                        ("n".to_string(), n(&format!("{i}e-3"))),
                    ])
                })
                .collect(),
        )
        .await;
    }
}

async fn scan_all(
    c: &Client,
    table: &str,
    index: Option<&str>,
    segment: Option<(i32, i32)>,
) -> Vec<Item> {
    let mut out = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let mut req = c
            .scan()
            .table_name(table)
            .limit(333)
            .set_exclusive_start_key(start.take());
        if let Some(i) = index {
            req = req.index_name(i);
        }
        if let Some((s, t)) = segment {
            req = req.segment(s).total_segments(t);
        }
        let page = req.send().await.expect("scan");
        out.extend(page.items().iter().cloned());
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return out,
        }
    }
}

async fn query_all(
    c: &Client,
    table: &str,
    index: Option<&str>,
    cond: &str,
    values: &[(&str, AttributeValue)],
    forward: bool,
) -> Vec<Item> {
    let mut out = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let mut req = c
            .query()
            .table_name(table)
            .key_condition_expression(cond)
            .scan_index_forward(forward)
            .limit(17)
            .set_exclusive_start_key(start.take());
        for (k, v) in values {
            req = req.expression_attribute_values(*k, v.clone());
        }
        if let Some(i) = index {
            req = req.index_name(i);
        }
        let page = req.send().await.expect("query");
        out.extend(page.items().iter().cloned());
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return out,
        }
    }
}

/// Everything a client can read back: table listing, scans (plain and parallel), queries on
/// the table and both indexes in both directions, and every item by BatchGetItem plus a
/// sample by GetItem.
async fn observe(endpoint: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for region in REGIONS {
        let c = client(endpoint, region);
        let tables = c.list_tables().send().await.expect("list");
        seen.push(format!("{region} tables {:?}", tables.table_names()));
        for t in ["Events", "Blobs"] {
            let d = c
                .describe_table()
                .table_name(t)
                .send()
                .await
                .expect("describe");
            let d = d.table().expect("table");
            seen.push(format!(
                "{region} {t} count={:?} keys={:?} gsi={:?} lsi={:?}",
                d.item_count(),
                d.key_schema(),
                d.global_secondary_indexes()
                    .iter()
                    .map(|g| (g.index_name(), g.item_count()))
                    .collect::<Vec<_>>(),
                d.local_secondary_indexes()
                    .iter()
                    .map(|g| (g.index_name(), g.item_count()))
                    .collect::<Vec<_>>(),
            ));
            let all = scan_all(&c, t, None, None).await;
            seen.push(format!("{region} scan {t} {}", canon_all(&all)));
            for seg in 0..3 {
                let part = scan_all(&c, t, None, Some((seg, 3))).await;
                seen.push(format!("{region} segment {seg} {t} {}", canon_all(&part)));
            }
        }
        seen.push(format!(
            "{region} gsi scan {}",
            canon_all(&scan_all(&c, "Events", Some("by-kind"), None).await)
        ));
        for p in 0..40 {
            let pk = s(&format!("{region}#p{p}"));
            let q = query_all(
                &c,
                "Events",
                None,
                "pk = :p AND sk >= :lo",
                &[(":p", pk.clone()), (":lo", n("-480"))],
                p % 2 == 0,
            )
            .await;
            seen.push(format!("{region} query {p} {}", canon_all(&q)));
            let q = query_all(&c, "Events", Some("by-ts"), "pk = :p", &[(":p", pk)], false).await;
            seen.push(format!("{region} lsi {p} {}", canon_all(&q)));
        }
        for k in 0..7 {
            let q = query_all(
                &c,
                "Events",
                Some("by-kind"),
                "kind = :k AND ts BETWEEN :a AND :b",
                &[
                    (":k", s(&format!("k{k}"))),
                    (":a", n("1700000100")),
                    (":b", n("1700000800.5")),
                ],
                true,
            )
            .await;
            seen.push(format!("{region} gsi {k} {}", canon_all(&q)));
        }
        // Every item by key, 100 at a time.
        let all = scan_all(&c, "Events", None, None).await;
        for chunk in all.chunks(100) {
            let keys: Vec<Item> = chunk
                .iter()
                .map(|it| {
                    HashMap::from([
                        ("pk".to_string(), it["pk"].clone()),
                        ("sk".to_string(), it["sk"].clone()),
                    ])
                })
                .collect();
            let ka = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .build()
                .expect("keys");
            let out = c
                .batch_get_item()
                .request_items("Events", ka)
                .send()
                .await
                .expect("batch get");
            let mut got: Vec<Item> = out
                .responses()
                .and_then(|r| r.get("Events"))
                .cloned()
                .unwrap_or_default();
            got.sort_by_key(canon);
            assert_eq!(
                got.len(),
                chunk.len(),
                "BatchGetItem found every scanned item"
            );
            seen.push(format!("{region} batch {}", canon_all(&got)));
        }
        for it in all.iter().step_by(50) {
            let got = c
                .get_item()
                .table_name("Events")
                .key("pk", it["pk"].clone())
                .key("sk", it["sk"].clone())
                .send()
                .await
                .expect("get");
            assert_eq!(got.item(), Some(it));
            seen.push(format!(
                "{region} get {}",
                got.item().map(canon).unwrap_or_default()
            ));
        }
    }
    seen
}

#[tokio::test]
async fn every_read_returns_exactly_the_same_after_export_into_a_fresh_emulator() {
    let a = TestServer::start(&[SERVICE]).await;
    populate(&a.endpoint).await;
    let before = observe(&a.endpoint).await;
    assert!(before.iter().any(|l| l.contains("count=Some(2000)")));

    let services = vec![SERVICE.to_string()];
    let (bundle, _) = a
        .runtime
        .export(
            Some(&services),
            &ScopeFilter::all(),
            Vec::new(),
            Default::default(),
        )
        .await
        .expect("export");
    let b = TestServer::start(&[SERVICE]).await;
    b.runtime
        .import(Cursor::new(bundle), None, MergeStrategy::AccountRegionMerge)
        .await
        .expect("import");
    let after = observe(&b.endpoint).await;
    assert_eq!(before.len(), after.len());
    for (x, y) in before.iter().zip(&after) {
        assert_eq!(x, y);
    }
}

#[tokio::test]
async fn numbers_keep_their_exact_precision_across_a_round_trip() {
    let a = TestServer::start(&[SERVICE]).await;
    let c = client(&a.endpoint, "us-east-1");
    c.create_table()
        .table_name("Nums")
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(def("id", ScalarAttributeType::S))
        .attribute_definitions(def("v", ScalarAttributeType::N))
        .key_schema(key("id", KeyType::Hash))
        .key_schema(key("v", KeyType::Range))
        .send()
        .await
        .expect("create");
    let cases = [
        ("0.1", "0.1"),
        ("1E+38", "100000000000000000000000000000000000000"),
        (
            "99999999999999999999999999999999999999",
            "99999999999999999999999999999999999999",
        ),
        (
            "-12345678901234567890123456789012345678",
            "-12345678901234567890123456789012345678",
        ),
        (
            "0.00000000000000000000000000000000000001",
            "0.00000000000000000000000000000000000001",
        ),
        ("1.50", "1.5"),
        ("-0", "0"),
        (
            "9.9999999999999999999999999999999999999E+125",
            "999999999999999999999999999999999999990000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        ),
    ];
    for (input, _) in cases {
        c.put_item()
            .table_name("Nums")
            .item("id", s("n"))
            .item("v", n(input))
            .item("dup", n(input))
            .send()
            .await
            .expect("put number");
    }
    let (bundle, _) = a
        .runtime
        .export(None, &ScopeFilter::all(), Vec::new(), Default::default())
        .await
        .expect("export");
    let b = TestServer::start(&[SERVICE]).await;
    b.runtime
        .import(Cursor::new(bundle), None, MergeStrategy::Overwrite)
        .await
        .expect("import");
    let cb = client(&b.endpoint, "us-east-1");
    for (input, canonical) in cases {
        let got = cb
            .get_item()
            .table_name("Nums")
            .key("id", s("n"))
            .key("v", n(input))
            .send()
            .await
            .expect("get");
        let item = got.item().expect("item present");
        assert_eq!(item["v"], n(canonical), "{input}");
        assert_eq!(item["dup"], n(canonical), "{input}");
    }
    // Sort keys order numerically, not as strings or floats.
    let q = query_all(&cb, "Nums", None, "id = :i", &[(":i", s("n"))], true).await;
    let order: Vec<String> = q
        .iter()
        .map(|i| i["v"].as_n().cloned().unwrap_or_default())
        .collect();
    assert_eq!(
        order,
        vec![
            "-12345678901234567890123456789012345678",
            "0",
            "0.00000000000000000000000000000000000001",
            "0.1",
            "1.5",
            "99999999999999999999999999999999999999",
            "100000000000000000000000000000000000000",
            "999999999999999999999999999999999999990000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        ]
    );
    // Exact arithmetic: 0.1 + 0.2 is 0.3, and a 38-digit counter increments exactly.
    let upd = cb
        .update_item()
        .table_name("Nums")
        .key("id", s("n"))
        .key("v", n("0.1"))
        .update_expression("SET dup = dup + :x ADD big :b")
        .expression_attribute_values(":x", n("0.2"))
        .expression_attribute_values(":b", n("99999999999999999999999999999999999998"))
        .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
        .send()
        .await
        .expect("update");
    let attrs = upd.attributes().expect("attributes");
    assert_eq!(attrs["dup"], n("0.3"));
    assert_eq!(attrs["big"], n("99999999999999999999999999999999999998"));
    // Too much precision is refused like AWS does.
    let err = cb
        .put_item()
        .table_name("Nums")
        .item("id", s("n"))
        .item("v", n("1.23456789012345678901234567890123456789"))
        .send()
        .await
        .expect_err("39 digits");
    let svc = err.into_service_error();
    assert!(
        format!("{svc:?}").contains("38 significant digits"),
        "{svc:?}"
    );
}

async fn simple_table(c: &Client, name: &str, ids: &[&str]) {
    c.create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(def("id", ScalarAttributeType::S))
        .key_schema(key("id", KeyType::Hash))
        .send()
        .await
        .expect("create");
    for id in ids {
        c.put_item()
            .table_name(name)
            .item("id", s(id))
            .send()
            .await
            .expect("put");
    }
}

async fn ids(c: &Client, table: &str) -> Vec<String> {
    let mut v: Vec<String> = scan_all(c, table, None, None)
        .await
        .iter()
        .map(|i| i["id"].as_s().cloned().unwrap_or_default())
        .collect();
    v.sort();
    v
}

/// Server A (the bundle): us-east-1 {Shared: b1, OnlyBundle: o}. Server B (running):
/// us-east-1 {Shared: a1 a2, OnlyRunning: r}, eu-central-1 {Far: f}.
async fn merge_setup() -> (TestServer, TestServer, Vec<u8>) {
    let a = TestServer::start(&[SERVICE]).await;
    let ca = client(&a.endpoint, "us-east-1");
    simple_table(&ca, "Shared", &["b1"]).await;
    simple_table(&ca, "OnlyBundle", &["o"]).await;
    let b = TestServer::start(&[SERVICE]).await;
    let cb = client(&b.endpoint, "us-east-1");
    simple_table(&cb, "Shared", &["a1", "a2"]).await;
    simple_table(&cb, "OnlyRunning", &["r"]).await;
    simple_table(&client(&b.endpoint, "eu-central-1"), "Far", &["f"]).await;
    let (bundle, _) = a
        .runtime
        .export(None, &ScopeFilter::all(), Vec::new(), Default::default())
        .await
        .expect("export");
    (a, b, bundle)
}

async fn tables(c: &Client) -> Vec<String> {
    c.list_tables()
        .send()
        .await
        .expect("list")
        .table_names()
        .to_vec()
}

#[tokio::test]
async fn account_region_merge_replaces_the_bundles_region_and_keeps_the_others() {
    let (_a, b, bundle) = merge_setup().await;
    b.runtime
        .import(Cursor::new(bundle), None, MergeStrategy::AccountRegionMerge)
        .await
        .expect("import");
    let us = client(&b.endpoint, "us-east-1");
    assert_eq!(tables(&us).await, ["OnlyBundle", "Shared"]);
    assert_eq!(ids(&us, "Shared").await, ["b1"]);
    let eu = client(&b.endpoint, "eu-central-1");
    assert_eq!(tables(&eu).await, ["Far"]);
}

#[tokio::test]
async fn service_merge_keeps_running_tables_and_both_sides_items_of_a_shared_table() {
    let (_a, b, bundle) = merge_setup().await;
    b.runtime
        .import(Cursor::new(bundle), None, MergeStrategy::ServiceMerge)
        .await
        .expect("import");
    let us = client(&b.endpoint, "us-east-1");
    assert_eq!(tables(&us).await, ["OnlyBundle", "OnlyRunning", "Shared"]);
    assert_eq!(ids(&us, "Shared").await, ["a1", "a2", "b1"]);
    assert_eq!(ids(&us, "OnlyRunning").await, ["r"]);
    assert_eq!(tables(&client(&b.endpoint, "eu-central-1")).await, ["Far"]);
}

#[tokio::test]
async fn overwrite_leaves_exactly_the_bundle() {
    let (_a, b, bundle) = merge_setup().await;
    b.runtime
        .import(Cursor::new(bundle), None, MergeStrategy::Overwrite)
        .await
        .expect("import");
    let us = client(&b.endpoint, "us-east-1");
    assert_eq!(tables(&us).await, ["OnlyBundle", "Shared"]);
    assert!(
        tables(&client(&b.endpoint, "eu-central-1"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn errors_reach_the_sdk_as_the_modelled_exceptions() {
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem};
    let a = TestServer::start(&[SERVICE]).await;
    let c = client(&a.endpoint, "us-east-1");
    simple_table(&c, "Tbl", &["x"]).await;
    let err = c
        .put_item()
        .table_name("Tbl")
        .item("id", s("x"))
        .condition_expression("attribute_not_exists(id)")
        .send()
        .await
        .expect_err("exists");
    assert!(matches!(
        err.into_service_error(),
        PutItemError::ConditionalCheckFailedException(_)
    ));
    let err = c
        .put_item()
        .table_name("Missing")
        .item("id", s("x"))
        .send()
        .await
        .expect_err("no table");
    assert!(matches!(
        err.into_service_error(),
        PutItemError::ResourceNotFoundException(_)
    ));
    let err = c
        .update_item()
        .table_name("Tbl")
        .key("id", s("x"))
        .update_expression("SET status = :v")
        .expression_attribute_values(":v", s("y"))
        .send()
        .await
        .expect_err("reserved word");
    let msg = format!("{:?}", err.into_service_error());
    assert!(msg.contains("reserved keyword: status"), "{msg}");
    let tx = c
        .transact_write_items()
        .transact_items(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name("Tbl")
                        .item("id", s("new"))
                        .build()
                        .expect("put"),
                )
                .build(),
        )
        .transact_items(
            TransactWriteItem::builder()
                .condition_check(
                    ConditionCheck::builder()
                        .table_name("Tbl")
                        .key("id", s("x"))
                        .condition_expression("attribute_not_exists(id)")
                        .build()
                        .expect("check"),
                )
                .build(),
        )
        .send()
        .await
        .expect_err("cancelled");
    match tx.into_service_error() {
        TransactWriteItemsError::TransactionCanceledException(e) => {
            let codes: Vec<Option<&str>> =
                e.cancellation_reasons().iter().map(|r| r.code()).collect();
            assert_eq!(codes, [Some("None"), Some("ConditionalCheckFailed")]);
        }
        other => panic!("unexpected {other:?}"),
    }
    // The cancelled transaction wrote nothing.
    assert_eq!(ids(&c, "Tbl").await, ["x"]);
}
