//! A bundle whose DynamoDB section nests an attribute value far deeper than AWS allows is a
//! decode error, not a stack overflow: the section decoder bounds nesting
//! (`cryopod::state::MAX_SECTION_DEPTH`), and the deepest item AWS accepts (32 levels) still
//! decodes on a thread with half the stack a decoding thread has.

use std::collections::BTreeMap;

use cryopod::{Runtime, Scope, ScopeFilter};
use cryopod_dynamodb::state::DynamoState;
use cryopod_dynamodb::value::{AttrValue, Item};
use cryopod_dynamodb::{DynamoService, SERVICE};
use serde_json::json;

fn nested(levels: usize) -> AttrValue {
    let mut v = AttrValue::S("bottom".into());
    for _ in 1..levels {
        v = AttrValue::M(BTreeMap::from([("n".to_string(), v)]));
    }
    v
}

/// The encoded DynamoDB section of a state holding one item with an attribute nested
/// `levels` deep (built on the state directly: the API refuses anything past 32).
async fn section_with_item_nested(levels: usize) -> Vec<u8> {
    let rt = Runtime::builder()
        .enable(Some(vec![SERVICE.into()]))
        .build()
        .expect("runtime");
    let scope = Scope::default();
    let ddb = rt
        .service(SERVICE)
        .and_then(|s| s.as_any().downcast_ref::<DynamoService>())
        .expect("dynamodb");
    ddb.call(
        &scope,
        "CreateTable",
        json!({
            "TableName": "tbl",
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST"
        }),
    )
    .await
    .expect("create table");
    let snap = rt
        .capture(None, &ScopeFilter::all())
        .await
        .expect("capture");
    let mut state: DynamoState = snap.services[SERVICE]
        .clone()
        .downcast(SERVICE)
        .expect("dynamodb state");
    let table = state
        .scopes
        .get_mut(&scope)
        .tables
        .get_mut("tbl")
        .expect("table");
    let attrs = BTreeMap::from([
        ("id".to_string(), AttrValue::S("x".into())),
        ("deep".to_string(), nested(levels)),
    ]);
    let item = Item::new(attrs);
    let key = table.item_key(item.attrs()).expect("key");
    table.items.insert(key, item);
    let mut out = Vec::new();
    let state: &dyn cryopod::ServiceState = &state;
    state.encode_to(&mut out).expect("encode");
    out
}

/// Decodes on a thread with a 1 MiB stack (the decoding thread has 2 MiB).
fn decode_on_small_stack(bytes: Vec<u8>) -> Result<(), String> {
    std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || {
            cryopod::state::decode_section(SERVICE, 1, &mut bytes.as_slice())
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .expect("thread")
        .join()
        .expect("the decoder did not crash")
}

#[tokio::test]
async fn a_section_nested_beyond_the_limit_is_a_decode_error_not_a_crash() {
    let bytes = section_with_item_nested(400).await;
    let err = decode_on_small_stack(bytes).expect_err("refused");
    assert!(err.contains("depth limit exceeded"), "{err}");
}

#[tokio::test]
async fn the_deepest_item_aws_accepts_still_decodes() {
    let bytes = section_with_item_nested(32).await;
    decode_on_small_stack(bytes).expect("a 32-level item decodes");
}
