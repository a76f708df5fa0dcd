//! The API's validation, called directly (no HTTP): limits and error codes AWS enforces.

use cryopod::{Runtime, Scope};
use cryopod_dynamodb::error::DdbError;
use cryopod_dynamodb::{DynamoService, SERVICE};
use serde_json::{Value, json};

fn runtime() -> Runtime {
    match Runtime::builder()
        .enable(Some(vec![SERVICE.into()]))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    }
}

async fn call(rt: &Runtime, op: &str, body: Value) -> Result<Value, DdbError> {
    let svc = rt.service(SERVICE).expect("dynamodb runs");
    let ddb = svc
        .as_any()
        .downcast_ref::<DynamoService>()
        .expect("service");
    ddb.call(&Scope::default(), op, body).await
}

async fn with_table() -> Runtime {
    let rt = runtime();
    call(&rt, "CreateTable", json!({
        "TableName": "Items",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "BillingMode": "PAY_PER_REQUEST"
    }))
    .await
    .expect("create");
    rt
}

fn err(r: Result<Value, DdbError>) -> DdbError {
    match r {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn key_attributes_are_validated_like_aws() {
    let rt = with_table().await;
    let e = err(call(
        &rt,
        "PutItem",
        json!({"TableName": "Items", "Item": {"pk": {"S": "a"}}}),
    )
    .await);
    assert_eq!(e.code, "ValidationException");
    assert!(
        e.message.contains("Missing the key sk in the item"),
        "{}",
        e.message
    );
    let e = err(call(
        &rt,
        "PutItem",
        json!({"TableName": "Items", "Item": {"pk": {"N": "1"}, "sk": {"N": "1"}}}),
    )
    .await);
    assert!(
        e.message
            .contains("Type mismatch for key pk expected: S actual: N"),
        "{}",
        e.message
    );
    let e = err(call(
        &rt,
        "PutItem",
        json!({"TableName": "Items", "Item": {"pk": {"S": ""}, "sk": {"N": "1"}}}),
    )
    .await);
    assert!(
        e.message.contains("cannot contain an empty string value"),
        "{}",
        e.message
    );
    let e = err(call(
        &rt,
        "GetItem",
        json!({"TableName": "Items", "Key": {"pk": {"S": "a"}}}),
    )
    .await);
    assert_eq!(
        e.message,
        "The provided key element does not match the schema"
    );
    let e = err(call(
        &rt,
        "GetItem",
        json!({"TableName": "Nope", "Key": {"pk": {"S": "a"}}}),
    )
    .await);
    assert_eq!(e.code, "ResourceNotFoundException");
}

#[tokio::test]
async fn items_over_400_kb_are_refused() {
    let rt = with_table().await;
    let big = "x".repeat(400 * 1024);
    let e = err(call(&rt, "PutItem", json!({"TableName": "Items", "Item": {"pk": {"S": "a"}, "sk": {"N": "1"}, "d": {"S": big}}})).await);
    assert_eq!(e.message, "Item size has exceeded the maximum allowed size");
    let ok = "x".repeat(400 * 1024 - 100);
    call(
        &rt,
        "PutItem",
        json!({"TableName": "Items", "Item": {"pk": {"S": "a"}, "sk": {"N": "1"}, "d": {"S": ok}}}),
    )
    .await
    .expect("just under the limit");
}

#[tokio::test]
async fn batch_and_transaction_sizes_are_limited() {
    let rt = with_table().await;
    let puts: Vec<Value> = (0..26)
        .map(|i| json!({"PutRequest": {"Item": {"pk": {"S": "a"}, "sk": {"N": i.to_string()}}}}))
        .collect();
    let e = err(call(
        &rt,
        "BatchWriteItem",
        json!({"RequestItems": {"Items": puts}}),
    )
    .await);
    assert!(
        e.message.contains("length less than or equal to 25"),
        "{}",
        e.message
    );
    let keys: Vec<Value> = (0..101)
        .map(|i| json!({"pk": {"S": "a"}, "sk": {"N": i.to_string()}}))
        .collect();
    let e = err(call(
        &rt,
        "BatchGetItem",
        json!({"RequestItems": {"Items": {"Keys": keys}}}),
    )
    .await);
    assert_eq!(
        e.message,
        "Too many items requested for the BatchGetItem call"
    );
    let tx: Vec<Value> = (0..101)
        .map(|i| json!({"Put": {"TableName": "Items", "Item": {"pk": {"S": "a"}, "sk": {"N": i.to_string()}}}}))
        .collect();
    let e = err(call(&rt, "TransactWriteItems", json!({"TransactItems": tx})).await);
    assert!(
        e.message.contains("less than or equal to 100"),
        "{}",
        e.message
    );
    let dup = json!({"Put": {"TableName": "Items", "Item": {"pk": {"S": "a"}, "sk": {"N": "1"}}}});
    let e = err(call(
        &rt,
        "TransactWriteItems",
        json!({"TransactItems": [dup.clone(), dup]}),
    )
    .await);
    assert!(e.message.contains("multiple operations on one item"));
    let two = json!({"PutRequest": {"Item": {"pk": {"S": "a"}, "sk": {"N": "1"}}}});
    let e = err(call(
        &rt,
        "BatchWriteItem",
        json!({"RequestItems": {"Items": [two.clone(), two]}}),
    )
    .await);
    assert_eq!(e.message, "Provided list of item keys contains duplicates");
    // Nothing was written by any refused request.
    let s = call(&rt, "Scan", json!({"TableName": "Items"}))
        .await
        .expect("scan");
    assert_eq!(s["Count"], 0);
}

#[tokio::test]
async fn expressions_refuse_unused_placeholders_and_reserved_words() {
    let rt = with_table().await;
    let e = err(call(
        &rt,
        "PutItem",
        json!({
            "TableName": "Items", "Item": {"pk": {"S": "a"}, "sk": {"N": "1"}},
            "ConditionExpression": "attribute_not_exists(pk)",
            "ExpressionAttributeValues": {":unused": {"S": "x"}}
        }),
    )
    .await);
    assert!(
        e.message.contains("unused in expressions: keys: {:unused}"),
        "{}",
        e.message
    );
    let e = err(call(
        &rt,
        "Query",
        json!({
            "TableName": "Items", "KeyConditionExpression": "pk = :p AND size > :n",
            "ExpressionAttributeValues": {":p": {"S": "a"}, ":n": {"N": "1"}}
        }),
    )
    .await);
    assert!(
        e.message.contains("reserved keyword: size"),
        "{}",
        e.message
    );
    let e = err(call(
        &rt,
        "Query",
        json!({
            "TableName": "Items", "KeyConditionExpression": "pk = :p",
            "FilterExpression": "sk > :n",
            "ExpressionAttributeValues": {":p": {"S": "a"}, ":n": {"N": "1"}}
        }),
    )
    .await);
    assert!(
        e.message
            .contains("Filter Expression can only contain non-primary key attributes"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn conditions_and_return_values_follow_aws() {
    let rt = with_table().await;
    let key = json!({"pk": {"S": "a"}, "sk": {"N": "1"}});
    call(&rt, "PutItem", json!({"TableName": "Items", "Item": {"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"N": "5"}, "tags": {"SS": ["x"]}}}))
        .await
        .expect("put");
    let e = err(call(&rt, "UpdateItem", json!({
        "TableName": "Items", "Key": key,
        "UpdateExpression": "SET v = v - :one",
        "ConditionExpression": "v > :ten OR NOT contains(tags, :x)",
        "ExpressionAttributeValues": {":one": {"N": "1"}, ":ten": {"N": "10"}, ":x": {"S": "x"}},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD"
    })).await);
    assert_eq!(e.code, "ConditionalCheckFailedException");
    assert_eq!(e.extra["Item"]["v"]["N"], "5");
    let out = call(&rt, "UpdateItem", json!({
        "TableName": "Items", "Key": key,
        "UpdateExpression": "SET v = v - :one, l = list_append(if_not_exists(l, :empty), :l) DELETE tags :x",
        "ConditionExpression": "v BETWEEN :one AND :ten AND size(tags) = :one",
        "ExpressionAttributeValues": {":one": {"N": "1"}, ":ten": {"N": "10"}, ":x": {"SS": ["x"]}, ":empty": {"L": []}, ":l": {"L": [{"S": "z"}]}},
        "ReturnValues": "ALL_NEW"
    })).await.expect("update");
    assert_eq!(out["Attributes"]["v"]["N"], "4");
    assert_eq!(out["Attributes"]["l"]["L"][0]["S"], "z");
    assert!(out["Attributes"].get("tags").is_none());
    let e = err(call(
        &rt,
        "UpdateItem",
        json!({
            "TableName": "Items", "Key": key,
            "UpdateExpression": "SET pk = :p",
            "ExpressionAttributeValues": {":p": {"S": "b"}}
        }),
    )
    .await);
    assert!(e.message.contains("This attribute is part of the key"));
    let out = call(
        &rt,
        "DeleteItem",
        json!({"TableName": "Items", "Key": key, "ReturnValues": "ALL_OLD"}),
    )
    .await
    .expect("delete");
    assert_eq!(out["Attributes"]["v"]["N"], "4");
}

#[tokio::test]
async fn tables_list_paginate_and_refuse_duplicates() {
    let rt = runtime();
    for name in ["aaa", "bbb", "ccc"] {
        call(
            &rt,
            "CreateTable",
            json!({
                "TableName": name,
                "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}
            }),
        )
        .await
        .expect("create");
    }
    let e = err(call(
        &rt,
        "CreateTable",
        json!({
            "TableName": "aaa",
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST"
        }),
    )
    .await);
    assert_eq!(e.code, "ResourceInUseException");
    let p1 = call(&rt, "ListTables", json!({"Limit": 2}))
        .await
        .expect("list");
    assert_eq!(
        p1,
        json!({"TableNames": ["aaa", "bbb"], "LastEvaluatedTableName": "bbb"})
    );
    let p2 = call(
        &rt,
        "ListTables",
        json!({"Limit": 2, "ExclusiveStartTableName": "bbb"}),
    )
    .await
    .expect("list");
    assert_eq!(p2, json!({"TableNames": ["ccc"]}));
    // GSI added later is backfilled; removed again it is gone.
    call(
        &rt,
        "PutItem",
        json!({"TableName": "aaa", "Item": {"id": {"S": "1"}, "g": {"S": "x"}}}),
    )
    .await
    .expect("put");
    call(&rt, "UpdateTable", json!({
        "TableName": "aaa",
        "AttributeDefinitions": [{"AttributeName": "g", "AttributeType": "S"}],
        "GlobalSecondaryIndexUpdates": [{"Create": {"IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}], "Projection": {"ProjectionType": "KEYS_ONLY"}, "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}}}]
    })).await.expect("add gsi");
    let q = call(&rt, "Query", json!({"TableName": "aaa", "IndexName": "by-g", "KeyConditionExpression": "g = :g", "ExpressionAttributeValues": {":g": {"S": "x"}}})).await.expect("query");
    assert_eq!(q["Items"], json!([{"id": {"S": "1"}, "g": {"S": "x"}}]));
    call(&rt, "UpdateTable", json!({"TableName": "aaa", "GlobalSecondaryIndexUpdates": [{"Delete": {"IndexName": "by-g"}}]})).await.expect("drop gsi");
    let e = err(call(&rt, "Query", json!({"TableName": "aaa", "IndexName": "by-g", "KeyConditionExpression": "g = :g", "ExpressionAttributeValues": {":g": {"S": "x"}}})).await);
    assert!(e.message.contains("does not have the specified index"));
}
