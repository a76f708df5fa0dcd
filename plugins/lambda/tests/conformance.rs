//! Conformance of the Lambda provider: a rich state (every resource type, every settable
//! field, two accounts × two regions) survives capture → bundle → fresh runtime → apply for
//! every merge strategy, and each merge strategy gives the result DESIGN.md promises.

mod common;

use std::io::Cursor;

use common::{b64, call, fresh_runtime, ok, role, small_zip, stored_zip};
use cryopod::{MergeStrategy, Runtime, Scope, ScopeFilter};
use serde_json::{Value, json};

const ACCOUNTS: [&str; 2] = ["111111111111", "222222222222"];
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

/// Fills one scope with every kind of resource and every field the API lets a user set.
async fn populate(rt: &Runtime, scope: &Scope) {
    let acct = &scope.account;
    let region = &scope.region;
    // Layers: three versions, the last deleted, so the version counter is state too.
    for i in 1..=3 {
        ok(
            rt,
            scope,
            "POST",
            "/2018-10-31/layers/deps/versions",
            Some(json!({
                "Description": format!("deps v{i}"),
                "Content": { "ZipFile": b64(&stored_zip(&[("python/lib.py", format!("v{i}").as_bytes())])) },
                "CompatibleRuntimes": ["python3.12", "python3.11"],
                "CompatibleArchitectures": ["x86_64"],
                "LicenseInfo": "MIT",
            })),
        )
        .await;
    }
    ok(
        rt,
        scope,
        "DELETE",
        "/2018-10-31/layers/deps/versions/3",
        None,
    )
    .await;
    let layer_arn = format!("arn:aws:lambda:{region}:{acct}:layer:deps:2");

    let created = ok(
        rt,
        scope,
        "POST",
        "/2015-03-31/functions",
        Some(json!({
            "FunctionName": "orders",
            "Runtime": "python3.12",
            "Role": role(acct),
            "Handler": "index.handler",
            "Code": { "ZipFile": b64(&small_zip(&format!("# orders in {scope}"))) },
            "Description": "takes orders",
            "Timeout": 30,
            "MemorySize": 512,
            "Publish": false,
            "Environment": { "Variables": { "STAGE": "prod", "TABLE": "orders" } },
            "Tags": { "team": "shop", "cost-center": "42" },
            "Layers": [layer_arn],
            "Architectures": ["arm64"],
            "EphemeralStorage": { "Size": 1024 },
            "TracingConfig": { "Mode": "Active" },
            "SnapStart": { "ApplyOn": "None" },
            "LoggingConfig": { "LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "WARN", "LogGroup": "/custom/orders" },
            "VpcConfig": { "SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"] },
            "DeadLetterConfig": { "TargetArn": format!("arn:aws:sqs:{region}:{acct}:dlq") },
            "KMSKeyArn": format!("arn:aws:kms:{region}:{acct}:key/abc"),
            "FileSystemConfigs": [{ "Arn": format!("arn:aws:elasticfilesystem:{region}:{acct}:access-point/fsap-1"), "LocalMountPath": "/mnt/efs" }],
        })),
    )
    .await;
    assert_eq!(created["Version"], "$LATEST");
    // Three published versions with different configurations.
    for i in 1..=3 {
        ok(
            rt,
            scope,
            "PUT",
            "/2015-03-31/functions/orders/configuration",
            Some(json!({ "Description": format!("release {i}"), "MemorySize": 512 + 128 * i })),
        )
        .await;
        let v = ok(
            rt,
            scope,
            "POST",
            "/2015-03-31/functions/orders/versions",
            Some(json!({ "Description": format!("version {i}") })),
        )
        .await;
        assert_eq!(v["Version"], i.to_string());
    }
    ok(
        rt,
        scope,
        "POST",
        "/2015-03-31/functions/orders/aliases",
        Some(json!({
            "Name": "live",
            "FunctionVersion": "2",
            "Description": "production",
            "RoutingConfig": { "AdditionalVersionWeights": { "3": 0.25 } },
        })),
    )
    .await;
    ok(
        rt,
        scope,
        "POST",
        "/2015-03-31/functions/orders/aliases",
        Some(json!({ "Name": "dev", "FunctionVersion": "$LATEST" })),
    )
    .await;
    ok(
        rt,
        scope,
        "POST",
        "/2015-03-31/functions/orders/policy",
        Some(json!({
            "StatementId": "s3-invoke",
            "Action": "lambda:InvokeFunction",
            "Principal": "s3.amazonaws.com",
            "SourceArn": "arn:aws:s3:::uploads",
            "SourceAccount": acct,
        })),
    )
    .await;
    ok(
        rt,
        scope,
        "POST",
        "/2015-03-31/functions/orders/policy",
        Some(json!({
            "StatementId": "org",
            "Action": "lambda:GetFunction",
            "Principal": "*",
            "PrincipalOrgID": "o-abcdefghij",
            "EventSourceToken": "token-1",
            "FunctionUrlAuthType": "AWS_IAM",
        })),
    )
    .await;
    ok(
        rt,
        scope,
        "POST",
        "/2015-03-31/functions/orders/policy?Qualifier=live",
        Some(json!({ "StatementId": "alias", "Action": "lambda:InvokeFunction", "Principal": "123456789012" })),
    )
    .await;
    ok(
        rt,
        scope,
        "POST",
        "/2015-03-31/event-source-mappings",
        Some(json!({
            "FunctionName": "orders:live",
            "EventSourceArn": format!("arn:aws:sqs:{region}:{acct}:orders"),
            "BatchSize": 5,
            "Enabled": false,
            "MaximumBatchingWindowInSeconds": 10,
            "FilterCriteria": { "Filters": [{ "Pattern": "{\"body\":{\"kind\":[\"order\"]}}" }] },
            "ScalingConfig": { "MaximumConcurrency": 5 },
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "Tags": { "source": "sqs" },
        })),
    )
    .await;
    ok(
        rt,
        scope,
        "POST",
        "/2015-03-31/event-source-mappings",
        Some(json!({
            "FunctionName": "orders",
            "EventSourceArn": format!("arn:aws:kinesis:{region}:{acct}:stream/clicks"),
            "StartingPosition": "TRIM_HORIZON",
            "ParallelizationFactor": 2,
            "BisectBatchOnFunctionError": true,
            "MaximumRetryAttempts": 3,
            "DestinationConfig": { "OnFailure": { "Destination": format!("arn:aws:sqs:{region}:{acct}:failed") } },
        })),
    )
    .await;
    // A container-image function: no zip, no runtime.
    ok(
        rt,
        scope,
        "POST",
        "/2015-03-31/functions",
        Some(json!({
            "FunctionName": "image-fn",
            "PackageType": "Image",
            "Role": role(acct),
            "Code": { "ImageUri": format!("{acct}.dkr.ecr.{region}.amazonaws.com/app:1") },
            "ImageConfig": { "Command": ["app.handler"], "WorkingDirectory": "/app" },
        })),
    )
    .await;
    // Two functions sharing one package: one blob.
    for name in ["twin-a", "twin-b"] {
        ok(
            rt,
            scope,
            "POST",
            "/2015-03-31/functions",
            Some(json!({
                "FunctionName": name,
                "Runtime": "nodejs20.x",
                "Role": role(acct),
                "Handler": "index.handler",
                "Code": { "ZipFile": b64(&small_zip("shared")) },
                "Publish": true,
            })),
        )
        .await;
    }
}

async fn populated_runtime() -> Runtime {
    let rt = fresh_runtime();
    for a in ACCOUNTS {
        for r in REGIONS {
            populate(&rt, &Scope::new(a, r)).await;
        }
    }
    rt
}

#[tokio::test]
async fn rich_state_survives_every_merge_strategy_and_reset() {
    let rt = populated_runtime().await;
    let summary = rt
        .summary(Some(&[cryopod_lambda::SERVICE.into()]))
        .await
        .unwrap();
    let scopes = &summary[cryopod_lambda::SERVICE];
    assert_eq!(scopes.len(), 4);
    let counts = &scopes[0].resources;
    assert_eq!(counts["function"], 4);
    assert_eq!(counts["function_version"], 5);
    assert_eq!(counts["alias"], 2);
    assert_eq!(counts["permission"], 3);
    assert_eq!(counts["layer_version"], 2);
    assert_eq!(counts["event_source_mapping"], 2);
    cryopod::testing::check_provider(cryopod_lambda::SERVICE, &rt, fresh_runtime)
        .await
        .unwrap();
}

#[tokio::test]
async fn identical_packages_are_stored_once() {
    let rt = fresh_runtime();
    populate(&rt, &Scope::new(ACCOUNTS[0], REGIONS[0])).await;
    let snap = rt.capture(None, &ScopeFilter::all()).await.unwrap();
    let blobs = snap.services[cryopod_lambda::SERVICE].blobs();
    // orders' one package, twin-a/twin-b's shared one, two live layer versions.
    assert_eq!(blobs.len(), 4);
}

// ---- merge strategies -------------------------------------------------------------------

fn s1() -> Scope {
    Scope::new("111111111111", "us-east-1")
}

fn s2() -> Scope {
    Scope::new("111111111111", "eu-west-1")
}

async fn create(rt: &Runtime, scope: &Scope, name: &str, description: &str) {
    ok(
        rt,
        scope,
        "POST",
        "/2015-03-31/functions",
        Some(json!({
            "FunctionName": name,
            "Runtime": "python3.12",
            "Role": role(&scope.account),
            "Handler": "index.handler",
            "Description": description,
            "Code": { "ZipFile": b64(&small_zip(description)) },
        })),
    )
    .await;
}

async fn publish_layer(rt: &Runtime, scope: &Scope, content: &str) {
    ok(
        rt,
        scope,
        "POST",
        "/2018-10-31/layers/L/versions",
        Some(json!({ "Description": content, "Content": { "ZipFile": b64(&small_zip(content)) } })),
    )
    .await;
}

/// The running side: S1 {shared (running) with versions 1, 2 and alias `canary` → 2,
/// only-running, layer L v1..v3}, S2 {r2}.
async fn running() -> Runtime {
    let rt = fresh_runtime();
    create(&rt, &s1(), "shared", "running").await;
    for round in 0..2 {
        if round == 1 {
            // A new version needs a change since the last one.
            ok(
                &rt,
                &s1(),
                "PUT",
                "/2015-03-31/functions/shared/code",
                Some(json!({ "ZipFile": b64(&small_zip("running, later")) })),
            )
            .await;
            ok(
                &rt,
                &s1(),
                "PUT",
                "/2015-03-31/functions/shared/configuration",
                Some(json!({ "Description": "running, later" })),
            )
            .await;
        }
        ok(
            &rt,
            &s1(),
            "POST",
            "/2015-03-31/functions/shared/versions",
            Some(json!({})),
        )
        .await;
    }
    ok(
        &rt,
        &s1(),
        "POST",
        "/2015-03-31/functions/shared/aliases",
        Some(json!({ "Name": "canary", "FunctionVersion": "2" })),
    )
    .await;
    create(&rt, &s1(), "only-running", "running").await;
    for c in ["run-1", "run-2", "run-3"] {
        publish_layer(&rt, &s1(), c).await;
    }
    create(&rt, &s2(), "r2", "running").await;
    rt
}

/// The bundle: S1 {shared (bundle) with version 1 and alias, only-bundle, layer L v1}.
async fn bundle() -> Vec<u8> {
    let rt = bundle_runtime().await;
    let (bytes, _) = rt
        .export(None, &ScopeFilter::all(), Vec::new(), Default::default())
        .await
        .unwrap();
    bytes
}

async fn bundle_runtime() -> Runtime {
    let rt = fresh_runtime();
    create(&rt, &s1(), "shared", "bundle").await;
    ok(
        &rt,
        &s1(),
        "POST",
        "/2015-03-31/functions/shared/versions",
        Some(json!({})),
    )
    .await;
    ok(
        &rt,
        &s1(),
        "POST",
        "/2015-03-31/functions/shared/aliases",
        Some(json!({ "Name": "live", "FunctionVersion": "1" })),
    )
    .await;
    create(&rt, &s1(), "only-bundle", "bundle").await;
    publish_layer(&rt, &s1(), "bundle-1").await;
    rt
}

/// `name=description` of every function in `scope`.
async fn functions(rt: &Runtime, scope: &Scope) -> Vec<String> {
    let v = ok(rt, scope, "GET", "/2015-03-31/functions", None).await;
    v["Functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}={}",
                f["FunctionName"].as_str().unwrap(),
                f["Description"].as_str().unwrap()
            )
        })
        .collect()
}

/// `version=description` of layer L in `scope`, newest first.
async fn layer_versions(rt: &Runtime, scope: &Scope) -> Vec<String> {
    let v = ok(rt, scope, "GET", "/2018-10-31/layers/L/versions", None).await;
    v["LayerVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("{}={}", l["Version"], l["Description"].as_str().unwrap()))
        .collect()
}

async fn merged(strategy: MergeStrategy) -> Runtime {
    let rt = running().await;
    rt.import(Cursor::new(bundle().await), None, strategy)
        .await
        .unwrap();
    rt
}

#[tokio::test]
async fn overwrite_replaces_everything_with_the_bundle() {
    let rt = merged(MergeStrategy::Overwrite).await;
    assert_eq!(
        functions(&rt, &s1()).await,
        ["only-bundle=bundle", "shared=bundle"]
    );
    assert_eq!(layer_versions(&rt, &s1()).await, ["1=bundle-1"]);
    assert!(functions(&rt, &s2()).await.is_empty());
}

#[tokio::test]
async fn account_region_merge_replaces_only_the_bundles_scopes() {
    let rt = merged(MergeStrategy::AccountRegionMerge).await;
    assert_eq!(
        functions(&rt, &s1()).await,
        ["only-bundle=bundle", "shared=bundle"]
    );
    assert_eq!(layer_versions(&rt, &s1()).await, ["1=bundle-1"]);
    assert_eq!(functions(&rt, &s2()).await, ["r2=running"]);
}

#[tokio::test]
async fn service_merge_merges_version_by_version_and_alias_by_alias() {
    let rt = merged(MergeStrategy::ServiceMerge).await;
    assert_eq!(
        functions(&rt, &s1()).await,
        [
            "only-bundle=bundle",
            "only-running=running",
            "shared=bundle"
        ]
    );
    // A function on both sides keeps both sides' versions and aliases; the bundle's
    // version 1 wins the clash, the running side's version 2 and alias `canary` stay.
    let alias = |name: &'static str| {
        let rt = &rt;
        async move {
            ok(
                rt,
                &s1(),
                "GET",
                &format!("/2015-03-31/functions/shared/aliases/{name}"),
                None,
            )
            .await
        }
    };
    assert_eq!(alias("live").await["FunctionVersion"], "1");
    assert_eq!(alias("canary").await["FunctionVersion"], "2");
    let version = |n: &'static str| {
        let rt = &rt;
        async move {
            ok(
                rt,
                &s1(),
                "GET",
                &format!("/2015-03-31/functions/shared/configuration?Qualifier={n}"),
                None,
            )
            .await
        }
    };
    assert_eq!(version("1").await["Description"], "bundle");
    assert_eq!(version("2").await["Description"], "running, later");
    // Layer versions merge one by one, the bundle winning the clash on version 1, and the
    // counter stays at the higher value so no number is reused.
    assert_eq!(
        layer_versions(&rt, &s1()).await,
        ["3=run-3", "2=run-2", "1=bundle-1"]
    );
    publish_layer(&rt, &s1(), "after").await;
    assert_eq!(layer_versions(&rt, &s1()).await[0], "4=after");
    assert_eq!(functions(&rt, &s2()).await, ["r2=running"]);
}

#[tokio::test]
async fn every_merge_strategy_holds_unit_by_unit() {
    let capture = |rt: Runtime| async move {
        rt.capture(None, &ScopeFilter::all())
            .await
            .unwrap()
            .services
            .remove(cryopod_lambda::SERVICE)
            .unwrap()
    };
    let a = capture(running().await).await;
    let b = capture(bundle_runtime().await).await;
    cryopod::testing::check_merges(a.as_ref(), b.as_ref());
}

#[tokio::test]
async fn duplicate_function_is_a_conflict() {
    let rt = fresh_runtime();
    create(&rt, &s1(), "f", "x").await;
    let (status, v) = call(
        &rt,
        &s1(),
        "POST",
        "/2015-03-31/functions",
        Some(json!({
            "FunctionName": "f", "Runtime": "python3.12", "Role": role(&s1().account),
            "Handler": "h", "Code": { "ZipFile": b64(&small_zip("y")) },
        })),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(v["__code"], "ResourceConflictException");
    let _: Value = v;
}

// ---------------------------------------------------------------------------------------
// The golden bundle of state version 1: written once by an earlier build and committed, so
// every later build proves it still loads Lambda bundles and data of that version. A new
// state version adds its own golden file beside it; this one is never regenerated.

fn golden_v1() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lambda-v1.cryopod")
}

#[tokio::test]
#[ignore = "writes tests/fixtures/lambda-v1.cryopod; run only to create a version's golden file"]
async fn regenerate_lambda_v1_golden_bundle() {
    let rt = populated_runtime().await;
    cryopod::testing::write_golden(&rt, cryopod_lambda::SERVICE, &golden_v1())
        .await
        .expect("golden bundle written");
}

#[tokio::test]
async fn golden_v1_bundle_loads_to_the_expected_state() {
    let rt = fresh_runtime();
    cryopod::testing::load_golden(&rt, cryopod_lambda::SERVICE, 1, &golden_v1())
        .await
        .expect("the v1 golden bundle loads");
    let today = populated_runtime().await;
    for a in ACCOUNTS {
        for r in REGIONS {
            let s = Scope::new(a, r);
            let loaded = functions(&rt, &s).await;
            assert!(!loaded.is_empty(), "{s}: functions loaded");
            assert_eq!(loaded, functions(&today, &s).await, "{s}: functions");
            assert_eq!(
                layer_versions(&rt, &s).await,
                layer_versions(&today, &s).await,
                "{s}: layer versions"
            );
        }
    }
    // Code packages travel as blobs named by their sha256: equal sets, equal packages.
    let blobs = |rt: &Runtime| {
        let rt = rt.clone();
        async move {
            let snap = rt
                .capture(None, &ScopeFilter::all())
                .await
                .expect("capture");
            snap.services[cryopod_lambda::SERVICE].blobs()
        }
    };
    let loaded = blobs(&rt).await;
    assert!(!loaded.is_empty(), "the bundle carries code packages");
    assert_eq!(loaded, blobs(&today).await);
}
