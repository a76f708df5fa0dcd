//! Conformance: a richly populated DynamoDB state survives capture → bundle → fresh runtime
//! → apply for every merge strategy, and each merge strategy does what DESIGN.md says.

use cryopod::{MergeStrategy, Runtime, Scope, ScopeFilter};
use cryopod_dynamodb::{DynamoService, SERVICE};
use serde_json::{Value, json};

fn fresh_runtime() -> Runtime {
    match Runtime::builder()
        .enable(Some(vec![SERVICE.into()]))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    }
}

async fn call(rt: &Runtime, scope: &Scope, op: &str, body: Value) -> Value {
    let svc = rt.service(SERVICE).expect("dynamodb runs");
    let ddb = svc
        .as_any()
        .downcast_ref::<DynamoService>()
        .expect("the dynamodb service");
    match ddb.call(scope, op, body).await {
        Ok(v) => v,
        Err(e) => panic!("{op} failed: {e}"),
    }
}

fn every_type_item(pk: &str, sk: i64) -> Value {
    json!({
        "pk": {"S": pk}, "sk": {"N": sk.to_string()},
        "s": {"S": "text ü"}, "n": {"N": "0.1"}, "big": {"N": "12345678901234567890123456789012345678"},
        "exp": {"N": "1E+38"}, "neg": {"N": "-1.5E-10"}, "b": {"B": "AAECAwQ="},
        "t": {"BOOL": true}, "nul": {"NULL": true},
        "l": {"L": [{"S": "a"}, {"N": "2"}, {"M": {"x": {"BOOL": false}}}]},
        "m": {"M": {"inner": {"L": [{"SS": ["p", "q"]}]}, "num": {"N": "3.25"}}},
        "ss": {"SS": ["z", "a"]}, "ns": {"NS": ["3", "1.5"]}, "bs": {"BS": ["AQ==", "Ag=="]},
        "gpk": {"S": format!("g{}", sk % 3)}, "lsk": {"N": (100 - sk).to_string()},
        "expires": {"N": "1700000000"}
    })
}

/// Every resource type and every settable field, in two accounts × two regions.
async fn populate(rt: &Runtime) {
    for account in ["111111111111", "222222222222"] {
        for region in ["us-east-1", "eu-west-1"] {
            let scope = Scope::new(account, region);
            call(rt, &scope, "CreateTable", json!({
                "TableName": "Orders",
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "N"},
                    {"AttributeName": "gpk", "AttributeType": "S"},
                    {"AttributeName": "lsk", "AttributeType": "N"}
                ],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                "LocalSecondaryIndexes": [{
                    "IndexName": "by-lsk",
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "lsk", "KeyType": "RANGE"}],
                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["s"]}
                }],
                "GlobalSecondaryIndexes": [{
                    "IndexName": "by-gpk",
                    "KeySchema": [{"AttributeName": "gpk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                    "Projection": {"ProjectionType": "ALL"},
                    "ProvisionedThroughput": {"ReadCapacityUnits": 3, "WriteCapacityUnits": 4}
                }],
                "BillingMode": "PROVISIONED",
                "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 6},
                "Tags": [{"Key": "team", "Value": account}],
                "DeletionProtectionEnabled": true
            })).await;
            call(
                rt,
                &scope,
                "CreateTable",
                json!({
                    "TableName": "Simple",
                    "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "B"}],
                    "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                    "BillingMode": "PAY_PER_REQUEST"
                }),
            )
            .await;
            call(
                rt,
                &scope,
                "UpdateTimeToLive",
                json!({
                    "TableName": "Orders",
                    "TimeToLiveSpecification": {"Enabled": true, "AttributeName": "expires"}
                }),
            )
            .await;
            call(
                rt,
                &scope,
                "TagResource",
                json!({
                    "ResourceArn": format!("arn:aws:dynamodb:{region}:{account}:table/Simple"),
                    "Tags": [{"Key": "env", "Value": region}]
                }),
            )
            .await;
            for i in 0..20 {
                call(
                    rt,
                    &scope,
                    "PutItem",
                    json!({
                        "TableName": "Orders",
                        "Item": every_type_item(&format!("p{}", i % 4), i)
                    }),
                )
                .await;
            }
            call(
                rt,
                &scope,
                "PutItem",
                json!({
                    "TableName": "Simple",
                    "Item": {"id": {"B": "3q2+7w=="}, "v": {"S": region}}
                }),
            )
            .await;
            call(rt, &scope, "UpdateItem", json!({
                "TableName": "Orders",
                "Key": {"pk": {"S": "p0"}, "sk": {"N": "0"}},
                "UpdateExpression": "SET #c = if_not_exists(#c, :z) + :one ADD ss :more REMOVE nul",
                "ExpressionAttributeNames": {"#c": "count"},
                "ExpressionAttributeValues": {":z": {"N": "0"}, ":one": {"N": "1"}, ":more": {"SS": ["new"]}}
            })).await;
        }
    }
}

#[tokio::test]
async fn dynamodb_state_survives_every_merge_strategy() {
    let rt = fresh_runtime();
    populate(&rt).await;
    let r = cryopod::testing::check_provider(SERVICE, &rt, fresh_runtime).await;
    if let Err(e) = r {
        panic!("conformance: {e}");
    }
}

#[tokio::test]
async fn indexes_are_rebuilt_after_import() {
    let rt = fresh_runtime();
    populate(&rt).await;
    let scope = Scope::new("111111111111", "eu-west-1");
    let q = json!({
        "TableName": "Orders", "IndexName": "by-gpk",
        "KeyConditionExpression": "gpk = :g AND sk BETWEEN :a AND :b",
        "ExpressionAttributeValues": {":g": {"S": "g1"}, ":a": {"N": "0"}, ":b": {"N": "12"}},
        "ScanIndexForward": false
    });
    let before = call(&rt, &scope, "Query", q.clone()).await;
    assert_eq!(before["Count"], 4, "{before}");
    let lq = json!({
        "TableName": "Orders", "IndexName": "by-lsk",
        "KeyConditionExpression": "pk = :p AND lsk < :x",
        "ExpressionAttributeValues": {":p": {"S": "p1"}, ":x": {"N": "95"}}
    });
    let lbefore = call(&rt, &scope, "Query", lq.clone()).await;
    let (bundle, _) = rt
        .export(None, &ScopeFilter::all(), Vec::new(), Default::default())
        .await
        .expect("export");
    let rt2 = fresh_runtime();
    rt2.import(std::io::Cursor::new(bundle), None, MergeStrategy::Overwrite)
        .await
        .expect("import");
    assert_eq!(call(&rt2, &scope, "Query", q).await, before);
    assert_eq!(call(&rt2, &scope, "Query", lq).await, lbefore);
    let d = call(
        &rt2,
        &scope,
        "DescribeTable",
        json!({"TableName": "Orders"}),
    )
    .await;
    assert_eq!(d["Table"]["GlobalSecondaryIndexes"][0]["ItemCount"], 20);
    assert_eq!(d["Table"]["LocalSecondaryIndexes"][0]["ItemCount"], 20);
}

// --- merge strategies on two overlapping states ---------------------------------------

fn x() -> Scope {
    Scope::new("111111111111", "us-east-1")
}
fn y() -> Scope {
    Scope::new("111111111111", "eu-west-1")
}
fn z() -> Scope {
    Scope::new("222222222222", "us-east-1")
}

async fn table_with(rt: &Runtime, scope: &Scope, name: &str, ids: &[&str]) {
    call(
        rt,
        scope,
        "CreateTable",
        json!({
            "TableName": name,
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST"
        }),
    )
    .await;
    for id in ids {
        call(
            rt,
            scope,
            "PutItem",
            json!({"TableName": name, "Item": {"id": {"S": id}}}),
        )
        .await;
    }
}

async fn put_owned(rt: &Runtime, table: &str, id: &str, owner: &str) {
    call(
        rt,
        &x(),
        "PutItem",
        json!({"TableName": table, "Item": {"id": {"S": id}, "owner": {"S": owner}}}),
    )
    .await;
}

/// Running: X{shared: a1,a2,1(A); only_running}, Z{zt}. Bundle: X{shared: b1,1(B);
/// only_bundle}, Y{yt}. Returns (running, bundle).
async fn two_sides() -> (Runtime, Runtime) {
    let running = fresh_runtime();
    table_with(&running, &x(), "shared", &["a1", "a2"]).await;
    put_owned(&running, "shared", "1", "A").await;
    table_with(&running, &x(), "only_running", &["r"]).await;
    table_with(&running, &z(), "zzt", &["z"]).await;
    let other = fresh_runtime();
    table_with(&other, &x(), "shared", &["b1"]).await;
    put_owned(&other, "shared", "1", "B").await;
    table_with(&other, &x(), "only_bundle", &["o"]).await;
    table_with(&other, &y(), "yyt", &["y"]).await;
    (running, other)
}

async fn overlapping() -> (Runtime, cryopod::Snapshot) {
    let (running, other) = two_sides().await;
    let snap = other
        .capture(None, &ScopeFilter::all())
        .await
        .expect("capture");
    (running, snap)
}

/// Scope → table → sorted item ids, read through the API.
async fn contents(rt: &Runtime) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    for s in [x(), y(), z()] {
        let tables = call(rt, &s, "ListTables", json!({})).await;
        for t in tables["TableNames"].as_array().cloned().unwrap_or_default() {
            let name = t.as_str().unwrap_or_default().to_string();
            let scan = call(rt, &s, "Scan", json!({"TableName": name})).await;
            let mut ids: Vec<String> = scan["Items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|i| i["id"]["S"].as_str().unwrap_or_default().to_string())
                .collect();
            ids.sort();
            out.push((s.to_string(), name, ids));
        }
    }
    out
}

fn row(s: Scope, t: &str, ids: &[&str]) -> (String, String, Vec<String>) {
    (
        s.to_string(),
        t.to_string(),
        ids.iter().map(|i| i.to_string()).collect(),
    )
}

#[tokio::test]
async fn overwrite_keeps_only_the_bundle() {
    let (rt, snap) = overlapping().await;
    rt.apply(snap, MergeStrategy::Overwrite)
        .await
        .expect("apply");
    assert_eq!(
        contents(&rt).await,
        vec![
            row(x(), "only_bundle", &["o"]),
            row(x(), "shared", &["1", "b1"]),
            row(y(), "yyt", &["y"]),
        ]
    );
}

#[tokio::test]
async fn account_region_merge_replaces_whole_scopes() {
    let (rt, snap) = overlapping().await;
    rt.apply(snap, MergeStrategy::AccountRegionMerge)
        .await
        .expect("apply");
    assert_eq!(
        contents(&rt).await,
        vec![
            row(x(), "only_bundle", &["o"]),
            row(x(), "shared", &["1", "b1"]),
            row(y(), "yyt", &["y"]),
            row(z(), "zzt", &["z"]),
        ]
    );
}

#[tokio::test]
async fn service_merge_merges_item_by_item_and_the_bundle_wins_a_key_clash() {
    let (rt, snap) = overlapping().await;
    rt.apply(snap, MergeStrategy::ServiceMerge)
        .await
        .expect("apply");
    assert_eq!(
        contents(&rt).await,
        vec![
            row(x(), "only_bundle", &["o"]),
            row(x(), "only_running", &["r"]),
            // A table on both sides keeps both sides' items.
            row(x(), "shared", &["1", "a1", "a2", "b1"]),
            row(y(), "yyt", &["y"]),
            row(z(), "zzt", &["z"]),
        ]
    );
    let got = call(
        &rt,
        &x(),
        "GetItem",
        json!({"TableName": "shared", "Key": {"id": {"S": "1"}}}),
    )
    .await;
    assert_eq!(
        got["Item"]["owner"]["S"], "B",
        "the bundle's item wins: {got}"
    );
}

#[tokio::test]
async fn every_merge_strategy_holds_unit_by_unit() {
    let (running, bundle) = two_sides().await;
    let capture = |rt: Runtime| async move {
        rt.capture(None, &ScopeFilter::all())
            .await
            .expect("capture")
            .services
            .remove(cryopod_dynamodb::SERVICE)
            .expect("dynamodb state")
    };
    let a = capture(running).await;
    let b = capture(bundle).await;
    cryopod::testing::check_merges(a.as_ref(), b.as_ref());
}

// ---------------------------------------------------------------------------------------
// The golden bundle of state version 1: written once by an earlier build and committed, so
// every later build proves it still loads DynamoDB bundles and data of that version. A new
// state version adds its own golden file beside it; this one is never regenerated.

fn golden_v1() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dynamodb-v1.cryopod")
}

#[tokio::test]
#[ignore = "writes tests/fixtures/dynamodb-v1.cryopod; run only to create a version's golden file"]
async fn regenerate_dynamodb_v1_golden_bundle() {
    let rt = fresh_runtime();
    populate(&rt).await;
    cryopod::testing::write_golden(&rt, SERVICE, &golden_v1())
        .await
        .expect("golden bundle written");
}

/// Every table's items in every populated scope, as `Scan` answers them, sorted.
async fn all_items(rt: &Runtime) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    for account in ["111111111111", "222222222222"] {
        for region in ["us-east-1", "eu-west-1"] {
            let s = Scope::new(account, region);
            let tables = call(rt, &s, "ListTables", json!({})).await;
            for t in tables["TableNames"].as_array().cloned().unwrap_or_default() {
                let name = t.as_str().unwrap_or_default().to_string();
                let scan = call(rt, &s, "Scan", json!({"TableName": name})).await;
                let mut items: Vec<String> = scan["Items"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(Value::to_string)
                    .collect();
                items.sort();
                out.push((s.to_string(), name, items));
            }
        }
    }
    out
}

#[tokio::test]
async fn golden_v1_bundle_loads_to_the_expected_state() {
    let rt = fresh_runtime();
    cryopod::testing::load_golden(&rt, SERVICE, 1, &golden_v1())
        .await
        .expect("the v1 golden bundle loads");
    let s = Scope::new("111111111111", "us-east-1");
    let orders = call(&rt, &s, "DescribeTable", json!({"TableName": "Orders"})).await;
    assert_eq!(orders["Table"]["KeySchema"][0]["AttributeName"], "pk");
    assert_eq!(
        orders["Table"]["GlobalSecondaryIndexes"][0]["IndexName"],
        "by-gpk"
    );
    assert_eq!(
        orders["Table"]["ProvisionedThroughput"]["ReadCapacityUnits"],
        5
    );
    // Every table and item, every attribute type included, is what that build's populate
    // made.
    let loaded = all_items(&rt).await;
    assert!(loaded.iter().any(|(_, _, items)| !items.is_empty()));
    let today = fresh_runtime();
    populate(&today).await;
    assert_eq!(loaded, all_items(&today).await);
}
