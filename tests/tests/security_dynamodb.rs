//! Hardening (issue #18): no single DynamoDB request can take the emulator down.
//!
//! Each test sends one of the reported inputs that used to overflow the stack and abort the
//! whole process (deeply nested expressions, a huge flat `AND` chain, a 100,000-level document
//! path, deeply nested item values), checks that the real `cryopod` binary answers it as AWS
//! does (400 `ValidationException`), and then checks that the process is still alive and
//! answering. On code without the limits the request kills the emulator, so the call fails
//! with a connection error and the test fails.

use std::collections::HashMap;
use std::fmt::Debug;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use cryopod_tests::{Emulator, http};
use tokio::runtime::Runtime;

const ACCOUNT: &str = "000000000000";
const REGION: &str = "us-east-1";
const TABLE: &str = "hardening";

/// An emulator with one table (`pk` string hash key) holding one item, and an SDK client.
struct Fixture {
    emu: Emulator,
    rt: Runtime,
    ddb: Client,
}

impl Fixture {
    fn new() -> Self {
        let emu = Emulator::start_with(&["--services", "dynamodb"], &[]);
        let rt = Runtime::new().expect("tokio runtime");
        let ddb = cryopod_tests::dynamodb(&emu.endpoint, REGION, ACCOUNT);
        rt.block_on(async {
            ddb.create_table()
                .table_name(TABLE)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name("pk")
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .expect("attribute definition"),
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name("pk")
                        .key_type(KeyType::Hash)
                        .build()
                        .expect("key schema"),
                )
                .send()
                .await
                .expect("CreateTable");
            ddb.put_item()
                .table_name(TABLE)
                .item("pk", s("a"))
                .item("lst", AttributeValue::L(vec![s("x")]))
                .send()
                .await
                .expect("PutItem");
        });
        Fixture { emu, rt, ddb }
    }

    /// The emulator still runs and still answers DynamoDB: its health document, ListTables,
    /// and a read of the seeded item.
    fn assert_alive(&self) {
        assert_eq!(
            self.emu.health()["services"]["dynamodb"],
            "running",
            "health"
        );
        self.rt.block_on(async {
            let tables = self.ddb.list_tables().send().await.expect("ListTables");
            assert_eq!(tables.table_names(), [TABLE.to_string()]);
            let got = self
                .ddb
                .get_item()
                .table_name(TABLE)
                .key("pk", s("a"))
                .send()
                .await
                .expect("GetItem");
            assert!(got.item().is_some(), "the seeded item is still there");
        });
    }

    /// Sends a raw JSON body (for bodies no `serde_json::Value` should hold: nested too
    /// deeply to serialize safely); returns the HTTP status and the error type.
    fn raw(&self, op: &str, body: String) -> (u16, String) {
        let resp = http()
            .post(format!("{}/", self.emu.endpoint))
            .header("x-amz-target", format!("DynamoDB_20120810.{op}"))
            .header("content-type", "application/x-amz-json-1.0")
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={ACCOUNT}/20240101/{REGION}/dynamodb/aws4_request, SignedHeaders=host, Signature=x"
                ),
            )
            .body(body)
            .send()
            .unwrap_or_else(|e| panic!("{op}: the emulator did not answer: {e}"));
        let status = resp.status().as_u16();
        let v: serde_json::Value = resp.json().expect("a JSON error body");
        (status, v["__type"].as_str().unwrap_or_default().to_string())
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn values(pairs: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Asserts the call was refused with 400 `ValidationException`; returns the message.
fn refused<T: Debug, E: ProvideErrorMetadata + Debug>(
    what: &str,
    r: Result<T, SdkError<E, HttpResponse>>,
) -> String {
    let err = match r {
        Ok(v) => panic!("{what}: accepted: {v:?}"),
        Err(e) => e,
    };
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(400), "{what}: {err:?}");
    assert_eq!(err.code(), Some("ValidationException"), "{what}: {err:?}");
    err.message().unwrap_or_default().to_string()
}

fn nested(open: &str, inner: &str, close: &str, n: usize) -> String {
    format!("{}{inner}{}", open.repeat(n), close.repeat(n))
}

#[test]
fn key_condition_with_3000_nested_parentheses_is_refused() {
    let f = Fixture::new();
    let kce = nested("(", "pk = :a", ")", 3000);
    let msg = refused(
        "Query",
        f.rt.block_on(
            f.ddb
                .query()
                .table_name(TABLE)
                .key_condition_expression(kce)
                .set_expression_attribute_values(Some(values(&[(":a", s("a"))])))
                .send(),
        ),
    );
    assert_eq!(
        msg,
        "Invalid KeyConditionExpression: Expression size has exceeded the maximum allowed size;"
    );
    // Under 4 KB the same shape is refused for its redundant parentheses.
    let kce = nested("(", "pk = :a", ")", 1000);
    let msg = refused(
        "Query",
        f.rt.block_on(
            f.ddb
                .query()
                .table_name(TABLE)
                .key_condition_expression(kce)
                .set_expression_attribute_values(Some(values(&[(":a", s("a"))])))
                .send(),
        ),
    );
    assert!(msg.ends_with("redundant parentheses;"), "{msg}");
    f.assert_alive();
}

#[test]
fn condition_with_3000_nested_parentheses_is_refused() {
    let f = Fixture::new();
    let cond = nested("(", "attribute_exists(pk)", ")", 3000);
    let msg = refused(
        "PutItem",
        f.rt.block_on(
            f.ddb
                .put_item()
                .table_name(TABLE)
                .item("pk", s("b"))
                .condition_expression(cond.clone())
                .send(),
        ),
    );
    assert_eq!(
        msg,
        format!(
            "Invalid ConditionExpression: Expression size has exceeded the maximum allowed size; expression size: {}",
            cond.len()
        )
    );
    // 4,000 unclosed parentheses (under 4 KB): a syntax error, found without recursion.
    let msg = refused(
        "DeleteItem",
        f.rt.block_on(
            f.ddb
                .delete_item()
                .table_name(TABLE)
                .key("pk", s("a"))
                .condition_expression("(".repeat(4000))
                .send(),
        ),
    );
    assert_eq!(
        msg,
        "Invalid ConditionExpression: Syntax error; token: <EOF>, near: \"\""
    );
    f.assert_alive();
}

#[test]
fn filter_with_10000_nots_is_refused() {
    let f = Fixture::new();
    for n in [10_000, 1000] {
        let filter = format!("{}lst = :x", "NOT ".repeat(n));
        let size = filter.len();
        let msg = refused(
            "Scan",
            f.rt.block_on(
                f.ddb
                    .scan()
                    .table_name(TABLE)
                    .filter_expression(filter)
                    .set_expression_attribute_values(Some(values(&[(":x", s("x"))])))
                    .send(),
            ),
        );
        let want = if n == 1000 {
            "Invalid FilterExpression: The expression contains too many operators; operator count: 301".to_string()
        } else {
            format!(
                "Invalid FilterExpression: Expression size has exceeded the maximum allowed size; expression size: {size}"
            )
        };
        assert_eq!(msg, want);
    }
    f.assert_alive();
}

#[test]
fn update_with_10000_nested_functions_is_refused() {
    let f = Fixture::new();
    for (n, open, close) in [
        (10_000, "if_not_exists(lst, ", ")"),
        (10_000, "list_append(", ", :l)"),
        // Under 4 KB: refused by the operator count.
        (301, "list_append(", ",:l)"),
    ] {
        let update = format!("SET lst = {}", nested(open, ":l", close, n));
        let msg = refused(
            "UpdateItem",
            f.rt.block_on(
                f.ddb
                    .update_item()
                    .table_name(TABLE)
                    .key("pk", s("a"))
                    .update_expression(update)
                    .set_expression_attribute_values(Some(values(&[(
                        ":l",
                        AttributeValue::L(vec![s("y")]),
                    )])))
                    .send(),
            ),
        );
        assert!(
            msg.starts_with("Invalid UpdateExpression: Expression size has exceeded")
                || msg.ends_with("operator count: 301"),
            "{msg}"
        );
    }
    f.assert_alive();
}

#[test]
fn key_condition_of_100000_flat_ands_is_refused() {
    let f = Fixture::new();
    for n in [100_000, 150] {
        let kce = format!("pk = :a{}", " AND pk = :a".repeat(n - 1));
        let msg = refused(
            "Query",
            f.rt.block_on(
                f.ddb
                    .query()
                    .table_name(TABLE)
                    .key_condition_expression(kce)
                    .set_expression_attribute_values(Some(values(&[(":a", s("a"))])))
                    .send(),
            ),
        );
        // 150 terms: 299 operators, so it parses, and is then refused as a key condition.
        let want = if n == 150 {
            "Conditions can be of length 1 or 2 only"
        } else {
            "Invalid KeyConditionExpression: Expression size has exceeded the maximum allowed size;"
        };
        assert_eq!(msg, want);
    }
    f.assert_alive();
}

#[test]
fn document_path_of_100000_levels_is_refused() {
    let f = Fixture::new();
    for levels in [100_000, 33] {
        let path = format!("lst{}", ".m".repeat(levels - 1));
        let msg = refused(
            "GetItem",
            f.rt.block_on(
                f.ddb
                    .get_item()
                    .table_name(TABLE)
                    .key("pk", s("a"))
                    .projection_expression(path)
                    .send(),
            ),
        );
        let want = if levels == 33 {
            "Invalid ProjectionExpression: The document path has too many nesting levels; nesting levels: 33"
        } else {
            "Invalid ProjectionExpression: Expression size has exceeded the maximum allowed size;"
        };
        assert_eq!(msg, want);
    }
    f.assert_alive();
}

#[test]
fn deeply_nested_item_values_are_refused() {
    const NESTING: &str = "Nesting Levels have exceeded supported limits: Attributes in the item have nested levels beyond supported limit";
    let f = Fixture::new();
    let wrap = |n: usize| {
        let mut v = s("leaf");
        for _ in 0..n {
            v = AttributeValue::M(HashMap::from([("n".to_string(), v)]));
        }
        v
    };
    // 31 maps around a scalar is 32 levels: the deepest AWS stores.
    f.rt.block_on(
        f.ddb
            .put_item()
            .table_name(TABLE)
            .item("pk", s("deep"))
            .item("doc", wrap(31))
            .send(),
    )
    .expect("a 32-level value is stored");
    let msg = refused(
        "PutItem",
        f.rt.block_on(
            f.ddb
                .put_item()
                .table_name(TABLE)
                .item("pk", s("deeper"))
                .item("doc", wrap(32))
                .send(),
        ),
    );
    assert_eq!(msg, NESTING);
    // An update may not nest a value deeper than 32 levels under a path either.
    let msg = refused(
        "UpdateItem",
        f.rt.block_on(
            f.ddb
                .update_item()
                .table_name(TABLE)
                .key("pk", s("deep"))
                .update_expression("SET doc.n.n.n = :v")
                .set_expression_attribute_values(Some(values(&[(":v", wrap(31))])))
                .send(),
        ),
    );
    assert_eq!(msg, NESTING);
    // 10,000 levels: past serde_json's own limit, answered the same way.
    let item = format!(
        r#"{{"TableName":"{TABLE}","Item":{{"pk":{{"S":"x"}},"doc":{}}}}}"#,
        nested(r#"{"L":["#, r#"{"S":"leaf"}"#, "]}", 10_000)
    );
    assert_eq!(
        f.raw("PutItem", item),
        (
            400,
            "com.amazonaws.dynamodb.v20120810#ValidationException".to_string()
        )
    );
    f.assert_alive();
}
