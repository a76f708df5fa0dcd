//! Conformance of the Secrets Manager provider: a consistent registration, every operation
//! dispatched, a rich state that survives capture → bundle → fresh runtime → apply for every
//! merge strategy, and merges that combine two overlapping states unit by unit.

use cryopod::testing::{
    call_json, check_json_operations, check_merges, check_provider, check_registration,
    runtime_with,
};
use cryopod::{Runtime, Scope};
use cryopod_secretsmanager::{SERVICE, SecretsService, SecretsState};
use serde_json::{Value, json};

const T0: i64 = 1_700_000_000_000;

fn runtime() -> Runtime {
    let rt = runtime_with(&[SERVICE]);
    service(&rt).clock().stop_at(T0);
    rt
}

fn service(rt: &Runtime) -> &SecretsService {
    rt.service(SERVICE)
        .and_then(|s| s.as_any().downcast_ref::<SecretsService>())
        .expect("secretsmanager")
}

async fn ok(rt: &Runtime, scope: &Scope, op: &str, body: Value) -> Value {
    call_json(rt, scope, &format!("secretsmanager.{op}"), body)
        .await
        .ok_json()
}

fn token(n: usize) -> String {
    format!("{n:08}-0000-0000-0000-000000000000")
}

async fn populate(rt: &Runtime) {
    for (i, (account, region)) in [
        ("111111111111", "us-east-1"),
        ("111111111111", "eu-west-1"),
        ("222222222222", "us-east-1"),
        ("222222222222", "ap-south-1"),
    ]
    .into_iter()
    .enumerate()
    {
        let s = Scope::new(account, region);
        ok(
            rt,
            &s,
            "CreateSecret",
            json!({"Name": "app/db", "SecretString": format!("v1-{i}"),
            "ClientRequestToken": token(1), "Description": "db", "KmsKeyId": "alias/k",
            "Tags": [{"Key": "team", "Value": format!("t{i}")}]}),
        )
        .await;
        ok(
            rt,
            &s,
            "PutSecretValue",
            json!({"SecretId": "app/db", "SecretString": "v2 ✓",
            "ClientRequestToken": token(2)}),
        )
        .await;
        ok(
            rt,
            &s,
            "PutSecretValue",
            json!({"SecretId": "app/db", "SecretString": "v3",
            "ClientRequestToken": token(3), "VersionStages": ["blue", "green"]}),
        )
        .await;
        ok(
            rt,
            &s,
            "CreateSecret",
            json!({"Name": "bin", "SecretBinary": "AAEC/w=="}),
        )
        .await;
        ok(rt, &s, "CreateSecret", json!({"Name": "empty"})).await;
        ok(
            rt,
            &s,
            "PutResourcePolicy",
            json!({"SecretId": "app/db", "ResourcePolicy": "{\"Statement\":[]}"}),
        )
        .await;
        ok(
            rt,
            &s,
            "RotateSecret",
            json!({"SecretId": "bin",
            "RotationLambdaARN": "arn:aws:lambda:us-east-1:1:function:f",
            "RotationRules": {"AutomaticallyAfterDays": 10}}),
        )
        .await;
        ok(
            rt,
            &s,
            "ReplicateSecretToRegions",
            json!({"SecretId": "bin",
            "AddReplicaRegions": [{"Region": "sa-east-1"}]}),
        )
        .await;
        ok(
            rt,
            &s,
            "CreateSecret",
            json!({"Name": "deleted", "SecretString": "x"}),
        )
        .await;
        ok(
            rt,
            &s,
            "DeleteSecret",
            json!({"SecretId": "deleted", "RecoveryWindowInDays": 7}),
        )
        .await;
    }
}

fn state(rt: &Runtime) -> SecretsState {
    service(rt).read(Clone::clone)
}

#[tokio::test]
async fn registration_and_dispatch_are_consistent() {
    check_registration(SERVICE);
    check_json_operations(&runtime(), SERVICE).await;
}

#[tokio::test]
async fn secrets_provider_passes_the_conformance_harness_on_a_rich_state() {
    let rt = runtime();
    populate(&rt).await;
    check_provider(SERVICE, &rt, runtime)
        .await
        .expect("conformance");
}

#[tokio::test]
async fn every_merge_strategy_holds_unit_by_unit() {
    let a = runtime();
    let b = runtime();
    let s1 = Scope::new("111111111111", "us-east-1");
    let s2 = Scope::new("222222222222", "us-east-1");
    ok(
        &a,
        &s1,
        "CreateSecret",
        json!({"Name": "only-running", "SecretString": "r"}),
    )
    .await;
    ok(
        &a,
        &s1,
        "CreateSecret",
        json!({"Name": "shared", "SecretString": "a1", "ClientRequestToken": token(1)}),
    )
    .await;
    ok(&a, &s1, "PutSecretValue", json!({"SecretId": "shared", "SecretString": "a2", "ClientRequestToken": token(2), "VersionStages": ["mine"]})).await;
    ok(
        &a,
        &s2,
        "CreateSecret",
        json!({"Name": "elsewhere", "SecretString": "e"}),
    )
    .await;
    ok(&b, &s1, "CreateSecret", json!({"Name": "shared", "SecretString": "b1", "ClientRequestToken": token(1), "Description": "from the bundle"})).await;
    ok(
        &b,
        &s1,
        "PutSecretValue",
        json!({"SecretId": "shared", "SecretString": "b3", "ClientRequestToken": token(3)}),
    )
    .await;
    ok(
        &b,
        &s1,
        "CreateSecret",
        json!({"Name": "only-bundle", "SecretString": "b"}),
    )
    .await;
    check_merges(&state(&a), &state(&b));
}
