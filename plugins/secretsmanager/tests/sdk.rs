//! Secrets Manager checked with the official AWS SDK for Rust over real HTTP: versions and
//! staging labels, deletion windows, AWS's error codes, and a state that survives export →
//! fresh emulator → import with the same answer at every stage.

use std::io::Cursor;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{Credentials, Region};
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, Tag};
use cryopod::bundle::WriteOptions;
use cryopod::server::TestServer;
use cryopod::{MergeStrategy, ScopeFilter};
use cryopod_secretsmanager::{SERVICE, SecretsService};

const T0: i64 = 1_700_000_000_000;
const DAY: i64 = 86_400_000;

fn service(s: &TestServer) -> &SecretsService {
    s.runtime
        .service(SERVICE)
        .and_then(|s| s.as_any().downcast_ref::<SecretsService>())
        .expect("secretsmanager")
}

async fn server() -> TestServer {
    let s = TestServer::start(&[SERVICE]).await;
    service(&s).clock().stop_at(T0);
    s
}

fn client(server: &TestServer) -> Client {
    let conf = aws_sdk_secretsmanager::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(&server.endpoint)
        .credentials_provider(Credentials::new("123456789012", "s", None, None, "t"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(conf)
}

fn code<E: ProvideErrorMetadata, R>(e: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> String {
    e.as_service_error()
        .and_then(|e| e.code())
        .unwrap_or("<no code>")
        .to_string()
}

const V1: &str = "11111111-1111-1111-1111-111111111111";
const V2: &str = "22222222-2222-2222-2222-222222222222";
const V3: &str = "33333333-3333-3333-3333-333333333333";

async fn populate(c: &Client) {
    c.create_secret()
        .name("prod/db")
        .client_request_token(V1)
        .secret_string(r#"{"user":"admin","password":"one"}"#)
        .description("database")
        .tags(Tag::builder().key("team").value("core").build())
        .send()
        .await
        .expect("create");
    c.put_secret_value()
        .secret_id("prod/db")
        .client_request_token(V2)
        .secret_string("two")
        .send()
        .await
        .expect("v2");
    c.put_secret_value()
        .secret_id("prod/db")
        .client_request_token(V3)
        .secret_string("three")
        .version_stages("canary")
        .send()
        .await
        .expect("v3");
    c.create_secret()
        .name("bin")
        .secret_binary(Blob::new(vec![0u8, 1, 2, 255]))
        .kms_key_id("alias/custom")
        .send()
        .await
        .expect("binary");
    c.create_secret()
        .name("doomed")
        .secret_string("x")
        .send()
        .await
        .expect("doomed");
    c.delete_secret()
        .secret_id("doomed")
        .recovery_window_in_days(7)
        .send()
        .await
        .expect("delete");
    c.put_resource_policy()
        .secret_id("prod/db")
        .resource_policy(r#"{"Version":"2012-10-17","Statement":[]}"#)
        .send()
        .await
        .expect("policy");
    c.rotate_secret()
        .secret_id("bin")
        .rotation_lambda_arn("arn:aws:lambda:us-east-1:123456789012:function:rot")
        .rotation_rules(
            aws_sdk_secretsmanager::types::RotationRulesType::builder()
                .automatically_after_days(30)
                .build(),
        )
        .send()
        .await
        .expect("rotate");
}

/// Every read of the populated state.
async fn every_read(c: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for (id, stage) in [
        (None, None),
        (None, Some("AWSCURRENT")),
        (None, Some("AWSPREVIOUS")),
        (None, Some("canary")),
        (Some(V1), None),
        (Some(V2), None),
        (Some(V3), None),
    ] {
        let r = c
            .get_secret_value()
            .secret_id("prod/db")
            .set_version_id(id.map(str::to_string))
            .set_version_stage(stage.map(str::to_string))
            .send()
            .await
            .expect("value");
        out.push(format!(
            "{id:?}/{stage:?} → {:?} {:?} {:?}",
            r.secret_string,
            r.version_id,
            r.version_stages()
        ));
    }
    let b = c
        .get_secret_value()
        .secret_id("bin")
        .send()
        .await
        .expect("bin");
    out.push(format!("bin {:?}", b.secret_binary.map(|b| b.into_inner())));
    for name in ["prod/db", "bin", "doomed"] {
        let d = c
            .describe_secret()
            .secret_id(name)
            .send()
            .await
            .expect("describe");
        let mut stages: Vec<_> = d
            .version_ids_to_stages()
            .map(|m| m.iter().map(|(k, v)| format!("{k}={v:?}")).collect())
            .unwrap_or_default();
        stages.sort();
        out.push(format!(
            "{name}: {:?} {:?} {:?} {:?} {:?} {:?} {stages:?} {:?}",
            d.arn,
            d.description,
            d.kms_key_id,
            d.deleted_date,
            d.rotation_enabled,
            d.rotation_rules,
            d.tags()
        ));
    }
    let list = c
        .list_secrets()
        .include_planned_deletion(true)
        .send()
        .await
        .expect("list");
    out.push(format!(
        "list {:?}",
        list.secret_list()
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    ));
    let p = c
        .get_resource_policy()
        .secret_id("prod/db")
        .send()
        .await
        .expect("policy");
    out.push(format!("policy {:?}", p.resource_policy));
    out
}

#[tokio::test]
async fn secrets_answer_like_aws_and_survive_export_and_import() {
    let s = server().await;
    let c = client(&s);
    populate(&c).await;

    let cur = c
        .get_secret_value()
        .secret_id("prod/db")
        .send()
        .await
        .expect("current");
    assert_eq!(cur.secret_string.as_deref(), Some("two"));
    assert_eq!(cur.version_stages(), ["AWSCURRENT"]);
    let prev = c
        .get_secret_value()
        .secret_id("prod/db")
        .version_stage("AWSPREVIOUS")
        .send()
        .await
        .expect("previous");
    assert_eq!(prev.version_id.as_deref(), Some(V1));
    let by_arn = c
        .get_secret_value()
        .secret_id(cur.arn.clone().expect("arn"))
        .version_stage("canary")
        .send()
        .await
        .expect("by arn");
    assert_eq!(by_arn.secret_string.as_deref(), Some("three"));

    // Move AWSCURRENT to the canary: the old current becomes AWSPREVIOUS.
    c.update_secret_version_stage()
        .secret_id("prod/db")
        .version_stage("AWSCURRENT")
        .move_to_version_id(V3)
        .remove_from_version_id(V2)
        .send()
        .await
        .expect("move");
    let now = c
        .get_secret_value()
        .secret_id("prod/db")
        .send()
        .await
        .expect("now");
    assert_eq!(now.version_id.as_deref(), Some(V3));
    let mut stages = now.version_stages().to_vec();
    stages.sort();
    assert_eq!(stages, ["AWSCURRENT", "canary"]);
    let versions = c
        .list_secret_version_ids()
        .secret_id("prod/db")
        .include_deprecated(true)
        .send()
        .await
        .expect("versions");
    assert_eq!(versions.versions().len(), 3);

    // Batch, filters.
    let batch = c
        .batch_get_secret_value()
        .secret_id_list("prod/db")
        .secret_id_list("nope")
        .send()
        .await
        .expect("batch");
    assert_eq!(batch.secret_values().len(), 1);
    assert_eq!(
        batch.errors()[0].error_code.as_deref(),
        Some("ResourceNotFoundException")
    );
    let filtered = c
        .list_secrets()
        .filters(
            Filter::builder()
                .key(FilterNameStringType::Name)
                .values("prod/")
                .build(),
        )
        .send()
        .await
        .expect("filtered");
    assert_eq!(filtered.secret_list().len(), 1);
    let listed = c.list_secrets().send().await.expect("list");
    assert_eq!(
        listed.secret_list().len(),
        2,
        "a secret scheduled for deletion is not listed"
    );

    let pw = c
        .get_random_password()
        .password_length(40)
        .exclude_punctuation(true)
        .send()
        .await
        .expect("password");
    let pw = pw.random_password.expect("pw");
    assert_eq!(pw.len(), 40);
    assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()));

    // Export → fresh emulator → import.
    let before = every_read(&c).await;
    let (bundle, _) = s
        .runtime
        .export(
            None,
            &ScopeFilter::all(),
            Vec::new(),
            WriteOptions::default(),
        )
        .await
        .expect("export");
    let fresh = server().await;
    fresh
        .runtime
        .import(Cursor::new(bundle), None, MergeStrategy::Overwrite)
        .await
        .expect("import");
    assert_eq!(before, every_read(&client(&fresh)).await);
    assert!(
        before.iter().any(|l| l.contains("\"three\"")),
        "{before:#?}"
    );

    // No value in summaries or debug output.
    let summary = format!("{:?}", fresh.runtime.summary(None).await.expect("summary"));
    assert!(
        !summary.contains("three") && !summary.contains("admin"),
        "{summary}"
    );
    let debug = service(&fresh).read(|s| format!("{s:?}"));
    assert!(
        !debug.contains("three") && !debug.contains("admin"),
        "{debug}"
    );
}

#[tokio::test]
async fn deletion_windows_restore_and_purge() {
    let s = server().await;
    let c = client(&s);
    c.create_secret()
        .name("tmp")
        .secret_string("v")
        .send()
        .await
        .expect("create");
    let d = c
        .delete_secret()
        .secret_id("tmp")
        .recovery_window_in_days(7)
        .send()
        .await
        .expect("delete");
    assert_eq!(
        d.deletion_date.map(|t| t.secs()),
        Some((T0 + 7 * DAY) / 1000)
    );
    let e = c
        .get_secret_value()
        .secret_id("tmp")
        .send()
        .await
        .expect_err("deleted");
    assert_eq!(code(&e), "InvalidRequestException");
    let e = c
        .create_secret()
        .name("tmp")
        .secret_string("w")
        .send()
        .await
        .expect_err("scheduled");
    assert_eq!(code(&e), "InvalidRequestException");
    c.restore_secret()
        .secret_id("tmp")
        .send()
        .await
        .expect("restore");
    assert_eq!(
        c.get_secret_value()
            .secret_id("tmp")
            .send()
            .await
            .expect("back")
            .secret_string
            .as_deref(),
        Some("v")
    );
    c.delete_secret()
        .secret_id("tmp")
        .recovery_window_in_days(7)
        .send()
        .await
        .expect("again");
    service(&s).clock().forward(7 * DAY);
    let e = c
        .describe_secret()
        .secret_id("tmp")
        .send()
        .await
        .expect_err("purged");
    assert_eq!(code(&e), "ResourceNotFoundException");
    c.create_secret()
        .name("tmp")
        .secret_string("new")
        .send()
        .await
        .expect("name is free");
    c.delete_secret()
        .secret_id("tmp")
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("force");
    let e = c
        .describe_secret()
        .secret_id("tmp")
        .send()
        .await
        .expect_err("gone");
    assert_eq!(code(&e), "ResourceNotFoundException");
}

#[tokio::test]
async fn misuses_get_aws_error_codes() {
    let s = server().await;
    let c = client(&s);
    c.create_secret()
        .name("a")
        .secret_string("v")
        .client_request_token(V1)
        .send()
        .await
        .expect("create");
    let e = c
        .create_secret()
        .name("a")
        .secret_string("v")
        .send()
        .await
        .expect_err("exists");
    assert_eq!(code(&e), "ResourceExistsException");
    let e = c
        .get_secret_value()
        .secret_id("missing")
        .send()
        .await
        .expect_err("missing");
    assert_eq!(code(&e), "ResourceNotFoundException");
    let e = c
        .get_secret_value()
        .secret_id("a")
        .version_stage("nope")
        .send()
        .await
        .expect_err("stage");
    assert_eq!(code(&e), "ResourceNotFoundException");
    let e = c
        .put_secret_value()
        .secret_id("a")
        .client_request_token(V1)
        .secret_string("other")
        .send()
        .await
        .expect_err("same version, other value");
    assert_eq!(code(&e), "ResourceExistsException");
    let e = c
        .create_secret()
        .name("both")
        .secret_string("s")
        .secret_binary(Blob::new(b"b".to_vec()))
        .send()
        .await
        .expect_err("both");
    assert_eq!(code(&e), "InvalidParameterException");
    let e = c
        .delete_secret()
        .secret_id("a")
        .recovery_window_in_days(3)
        .send()
        .await
        .expect_err("window");
    assert_eq!(code(&e), "InvalidParameterException");
    let e = c
        .delete_secret()
        .secret_id("a")
        .recovery_window_in_days(7)
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect_err("both");
    assert_eq!(code(&e), "InvalidParameterException");
    let e = c
        .update_secret_version_stage()
        .secret_id("a")
        .version_stage("AWSCURRENT")
        .move_to_version_id(V2)
        .send()
        .await
        .expect_err("unknown version");
    assert_eq!(code(&e), "ResourceNotFoundException");
    c.put_secret_value()
        .secret_id("a")
        .client_request_token(V2)
        .secret_string("2")
        .version_stages("x")
        .send()
        .await
        .expect("v2");
    let e = c
        .update_secret_version_stage()
        .secret_id("a")
        .version_stage("AWSCURRENT")
        .move_to_version_id(V2)
        .send()
        .await
        .expect_err("needs RemoveFromVersionId");
    assert_eq!(code(&e), "InvalidParameterException");
    let e = c
        .put_resource_policy()
        .secret_id("a")
        .resource_policy("{not json")
        .send()
        .await
        .expect_err("policy");
    assert_eq!(code(&e), "MalformedPolicyDocumentException");
    let e = c
        .create_secret()
        .name("bad name")
        .send()
        .await
        .expect_err("name");
    assert_eq!(code(&e), "ValidationException");
    let e = c
        .rotate_secret()
        .secret_id("a")
        .send()
        .await
        .expect_err("no lambda");
    assert_eq!(code(&e), "InvalidRequestException");
    let e = c
        .get_random_password()
        .exclude_lowercase(true)
        .exclude_uppercase(true)
        .exclude_numbers(true)
        .exclude_punctuation(true)
        .send()
        .await
        .expect_err("nothing left");
    assert_eq!(code(&e), "InvalidParameterException");
    c.delete_secret()
        .secret_id("a")
        .send()
        .await
        .expect("delete");
    let e = c
        .put_secret_value()
        .secret_id("a")
        .secret_string("x")
        .send()
        .await
        .expect_err("deleted");
    assert_eq!(code(&e), "InvalidRequestException");
}
