//! Conformance of the Parameter Store provider: the registration is consistent, every listed
//! operation is dispatched, a rich state survives capture → bundle → fresh runtime → apply
//! for every merge strategy, and the merges combine two overlapping states unit by unit.

use cryopod::testing::{
    call_json, check_json_operations, check_merges, check_provider, check_registration,
    runtime_with,
};
use cryopod::{Runtime, Scope};
use cryopod_ssm::{SERVICE, SsmService, SsmState};
use serde_json::{Value, json};

fn runtime() -> Runtime {
    runtime_with(&[SERVICE])
}

async fn ok(rt: &Runtime, scope: &Scope, op: &str, body: Value) -> Value {
    call_json(rt, scope, &format!("AmazonSSM.{op}"), body)
        .await
        .ok_json()
}

async fn put(rt: &Runtime, scope: &Scope, name: &str, value: &str, kind: &str) {
    ok(
        rt,
        scope,
        "PutParameter",
        json!({"Name": name, "Value": value, "Type": kind, "Overwrite": true}),
    )
    .await;
}

fn state(rt: &Runtime) -> SsmState {
    rt.service(SERVICE)
        .and_then(|s| {
            s.as_any()
                .downcast_ref::<SsmService>()
                .map(|s| s.read(Clone::clone))
        })
        .expect("ssm service")
}

/// Two accounts × two regions: every type, several versions, labels, tags, custom and
/// default keys, advanced tier with policies, descriptions and patterns, a deleted one.
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
        for v in 0..3 {
            put(
                rt,
                &s,
                "/svc/db/password",
                &format!("pw-{i}-{v}"),
                "SecureString",
            )
            .await;
        }
        ok(
            rt,
            &s,
            "PutParameter",
            json!({"Name": "/svc/api/key", "Value": format!("key-{i} ✓"), "Type": "SecureString",
                   "KeyId": "alias/custom", "Description": "api", "Tags": [{"Key": "team", "Value": "core"}]}),
        )
        .await;
        put(rt, &s, "/svc/list", "a,b,c", "StringList").await;
        put(rt, &s, "top", &format!("plain {i}"), "String").await;
        ok(
            rt,
            &s,
            "PutParameter",
            json!({"Name": "/svc/num", "Value": "42", "Type": "String", "AllowedPattern": "[0-9]+",
                   "Tier": "Advanced", "Policies": "[{\"Type\":\"Expiration\",\"Version\":\"1.0\",\"Attributes\":{\"Timestamp\":\"2030-01-01T00:00:00.000Z\"}}]"}),
        )
        .await;
        ok(
            rt,
            &s,
            "LabelParameterVersion",
            json!({"Name": "/svc/db/password", "ParameterVersion": 1, "Labels": ["prod", "blue"]}),
        )
        .await;
        ok(
            rt,
            &s,
            "AddTagsToResource",
            json!({"ResourceType": "Parameter", "ResourceId": "top", "Tags": [{"Key": "k", "Value": format!("{i}")}]}),
        )
        .await;
        put(rt, &s, "/svc/gone", "x", "String").await;
        ok(rt, &s, "DeleteParameter", json!({"Name": "/svc/gone"})).await;
    }
}

#[tokio::test]
async fn registration_and_dispatch_are_consistent() {
    check_registration(SERVICE);
    let rt = runtime();
    check_json_operations(&rt, SERVICE).await;
    // Every other SSM operation is answered with a refusal, not as unknown.
    for op in cryopod_ssm::api::OTHER_OPERATIONS {
        let a = call_json(
            &rt,
            &Scope::default(),
            &format!("AmazonSSM.{op}"),
            json!({}),
        )
        .await;
        assert_eq!(a.status, 400, "{op}");
        assert_eq!(
            a.error_code().as_deref(),
            Some("ValidationException"),
            "{op}"
        );
    }
}

#[tokio::test]
async fn ssm_provider_passes_the_conformance_harness_on_a_rich_state() {
    let rt = runtime();
    populate(&rt).await;
    let st = state(&rt);
    assert_eq!(st.scopes.iter().count(), 4);
    check_provider(SERVICE, &rt, runtime)
        .await
        .expect("conformance");
    // After a round trip, SecureStrings still decrypt (the data keys travel with the state).
    let (bundle, _) = rt
        .export(
            None,
            &cryopod::ScopeFilter::all(),
            Vec::new(),
            cryopod::bundle::WriteOptions::default(),
        )
        .await
        .expect("export");
    let fresh = runtime();
    fresh
        .import(
            std::io::Cursor::new(bundle),
            None,
            cryopod::MergeStrategy::Overwrite,
        )
        .await
        .expect("import");
    let s = Scope::new("222222222222", "ap-south-1");
    let got = ok(
        &fresh,
        &s,
        "GetParameter",
        json!({"Name": "/svc/db/password:prod", "WithDecryption": true}),
    )
    .await;
    assert_eq!(got["Parameter"]["Value"], "pw-3-0");
    let got = ok(
        &fresh,
        &s,
        "GetParameter",
        json!({"Name": "/svc/api/key", "WithDecryption": true}),
    )
    .await;
    assert_eq!(got["Parameter"]["Value"], "key-3 ✓");
}

#[tokio::test]
async fn every_merge_strategy_holds_unit_by_unit() {
    let a = runtime();
    let b = runtime();
    let s1 = Scope::new("111111111111", "us-east-1");
    let s2 = Scope::new("222222222222", "us-east-1");
    // Running side: its own parameter, a shared one with two versions and labels.
    put(&a, &s1, "/only/running", "r", "SecureString").await;
    put(&a, &s1, "/shared", "a1", "SecureString").await;
    put(&a, &s1, "/shared", "a2", "SecureString").await;
    ok(
        &a,
        &s1,
        "LabelParameterVersion",
        json!({"Name": "/shared", "ParameterVersion": 1, "Labels": ["mine", "both"]}),
    )
    .await;
    put(&a, &s2, "/elsewhere", "e", "String").await;
    // Bundle: the shared one with three versions (1 and 2 clash, with other values), a clashing
    // label, other tags; and its own parameter.
    for v in ["b1", "b2", "b3"] {
        put(&b, &s1, "/shared", v, "SecureString").await;
    }
    ok(
        &b,
        &s1,
        "LabelParameterVersion",
        json!({"Name": "/shared", "ParameterVersion": 3, "Labels": ["both", "theirs"]}),
    )
    .await;
    ok(&b, &s1, "AddTagsToResource", json!({"ResourceType": "Parameter", "ResourceId": "/shared", "Tags": [{"Key": "from", "Value": "bundle"}]})).await;
    put(&b, &s1, "/only/bundle", "b", "String").await;
    check_merges(&state(&a), &state(&b));

    // And the merged state still decrypts both sides' values.
    let (bundle, _) = b
        .export(
            None,
            &cryopod::ScopeFilter::all(),
            Vec::new(),
            cryopod::bundle::WriteOptions::default(),
        )
        .await
        .expect("export");
    a.import(
        std::io::Cursor::new(bundle),
        None,
        cryopod::MergeStrategy::ServiceMerge,
    )
    .await
    .expect("merge");
    let mine = ok(
        &a,
        &s1,
        "GetParameter",
        json!({"Name": "/only/running", "WithDecryption": true}),
    )
    .await;
    assert_eq!(mine["Parameter"]["Value"], "r");
    let theirs = ok(
        &a,
        &s1,
        "GetParameter",
        json!({"Name": "/shared:both", "WithDecryption": true}),
    )
    .await;
    assert_eq!(theirs["Parameter"]["Value"], "b3");
    let kept = ok(
        &a,
        &s1,
        "GetParameter",
        json!({"Name": "/shared:mine", "WithDecryption": true}),
    )
    .await;
    assert_eq!(
        kept["Parameter"]["Value"], "b1",
        "the bundle's version 1 won the clash"
    );
}
