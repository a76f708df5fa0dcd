//! A failed write is not a write (issue #18, hardening), through the real binary and the
//! official SDKs:
//! - with `ON_REQUEST` and a full disk at the journal append, PutItem, SendMessage and
//!   DeleteObject answer 503 naming the cause, and their change is neither visible right
//!   after nor back after a restart; an SDK retry of a failed SendMessage leaves one message;
//! - a `SCHEDULED` save on a full disk reports "No space left on device", not the encoder's
//!   wrapping of it, in health, in the answer of an explicit save and in the log;
//! - the local pod store is owner-only like the rest of the data directory.
//!
//! The full disk is injected with `CRYOPOD_FAILPOINT=<step>:<n>[+]:enospc` (test-only), which
//! fails the n-th occurrence of a save step with ENOSPC (os error 28). Occurrences are counted
//! from the start of the process, so every test creates its resources in a first run and
//! meets the fault in a second run on the same data directory, whose first commit is the
//! request under test. Build the binary first: `cargo build -p cryopod-emulator`.

use std::path::Path;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, KeySchemaElement, KeyType, ProvisionedThroughput,
    ScalarAttributeType,
};
use cryopod_tests::{Emulator, eventually, linked_services};

const ACCOUNT: &str = "111122223333";
const REGION: &str = "eu-west-1";
const FULL_DISK_AT_FIRST_COMMIT: (&str, &str) = ("CRYOPOD_FAILPOINT", "journal-write:1:enospc");
const ENOSPC: &str = "No space left on device";

/// Runs a helper that uses blocking HTTP (health, the linked-services probe) from an async
/// test: reqwest's blocking client must not run on an async worker as is.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// An `ON_REQUEST` emulator on `dir` running `service`, with `envs`.
fn on_request(dir: &Path, service: &str, envs: &[(&str, &str)]) -> Emulator {
    Emulator::start_in(
        dir,
        &[
            "--persistence",
            "--save-strategy",
            "ON_REQUEST",
            "--services",
            service,
        ],
        envs,
    )
}

/// Whether the build links `service`; a test of a service the build leaves out is skipped.
fn linked(service: &str) -> bool {
    let yes = blocking(linked_services).iter().any(|s| s == service);
    if !yes {
        eprintln!("skipped: the cryopod build does not link {service}");
    }
    yes
}

/// The text of an SDK error with its whole source chain.
fn text_of<E: std::error::Error>(e: &E) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    format!("{out} ({e:?})")
}

/// Checks a refused write: 503 with the cause named.
fn assert_refused_naming_enospc<E: std::error::Error + 'static, R: std::fmt::Debug>(
    what: &str,
    answer: Result<R, aws_sdk_dynamodb::error::SdkError<E>>,
) {
    let err = match answer {
        Ok(r) => panic!("{what} hit a full disk at its commit but answered success: {r:?}"),
        Err(e) => e,
    };
    let status = err.raw_response().map(|r| r.status().as_u16());
    let text = text_of(&err);
    assert_eq!(status, Some(503), "{what}: {text}");
    assert!(
        text.contains(ENOSPC),
        "{what} does not name the cause: {text}"
    );
}

/// `$sdk`'s client for `emu` with the SDK's retries off, so a 503 reaches the test (the
/// SDK retries it by default).
macro_rules! no_retry {
    ($sdk:ident, $make:ident, $emu:expr) => {{
        let c = cryopod_tests::$make(&$emu.endpoint, REGION, ACCOUNT);
        let conf = c
            .config()
            .to_builder()
            .retry_config($sdk::config::retry::RetryConfig::disabled())
            .build();
        $sdk::Client::from_conf(conf)
    }};
}

async fn get_item(ddb: &aws_sdk_dynamodb::Client, id: &str) -> Option<String> {
    let out = ddb
        .get_item()
        .table_name("users")
        .key("id", AttributeValue::S(id.into()))
        .send()
        .await
        .expect("GetItem");
    out.item()
        .and_then(|i| i.get("name"))
        .and_then(|v| v.as_s().ok())
        .cloned()
}

async fn put_item(
    ddb: &aws_sdk_dynamodb::Client,
    id: &str,
    name: &str,
) -> Result<
    aws_sdk_dynamodb::operation::put_item::PutItemOutput,
    aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::put_item::PutItemError>,
> {
    ddb.put_item()
        .table_name("users")
        .item("id", AttributeValue::S(id.into()))
        .item("name", AttributeValue::S(name.into()))
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_put_item_whose_commit_hits_a_full_disk_answers_503_and_is_not_applied() {
    if !linked("dynamodb") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let emu = on_request(dir.path(), "dynamodb", &[]);
    let ddb = cryopod_tests::dynamodb(&emu.endpoint, REGION, ACCOUNT);
    ddb.create_table()
        .table_name("users")
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .provisioned_throughput(
            ProvisionedThroughput::builder()
                .read_capacity_units(1)
                .write_capacity_units(1)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("CreateTable");
    put_item(&ddb, "u1", "before").await.expect("PutItem u1");
    assert_eq!(emu.stop(), Some(0));

    let emu = on_request(dir.path(), "dynamodb", &[FULL_DISK_AT_FIRST_COMMIT]);
    let ddb = no_retry!(aws_sdk_dynamodb, dynamodb, emu);
    // A new item and a replaced one, in one commit that fails.
    assert_refused_naming_enospc("PutItem u2", put_item(&ddb, "u2", "never").await);
    assert_eq!(
        get_item(&ddb, "u2").await,
        None,
        "the refused PutItem is visible"
    );
    assert_eq!(get_item(&ddb, "u1").await.as_deref(), Some("before"));
    let health = blocking(|| emu.health());
    let rollback = &health["persistence"]["last_rollback"];
    assert!(
        rollback["error"]
            .as_str()
            .is_some_and(|e| e.contains(ENOSPC)),
        "health does not report the rollback: {rollback}"
    );
    // The next write commits as usual (the fault was the first append only).
    put_item(&ddb, "u3", "after").await.expect("PutItem u3");

    let emu = emu.kill_and_restart();
    let ddb = no_retry!(aws_sdk_dynamodb, dynamodb, emu);
    assert_eq!(
        get_item(&ddb, "u2").await,
        None,
        "the refused PutItem came back after a restart"
    );
    assert_eq!(get_item(&ddb, "u1").await.as_deref(), Some("before"));
    assert_eq!(get_item(&ddb, "u3").await.as_deref(), Some("after"));
}

async fn create_queue(emu: &Emulator) -> String {
    let sqs = cryopod_tests::sqs(&emu.endpoint, REGION, ACCOUNT);
    sqs.create_queue()
        .queue_name("jobs")
        .send()
        .await
        .expect("CreateQueue")
        .queue_url()
        .expect("a queue URL")
        .to_string()
}

/// Bodies of every message in the queue, received without deleting (visibility 0, so a
/// second receive sees them again; several rounds, as SQS samples).
async fn bodies(emu: &Emulator, url: &str) -> Vec<String> {
    let sqs = cryopod_tests::sqs(&emu.endpoint, REGION, ACCOUNT);
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("GetQueueAttributes");
    let count: usize = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .expect("ApproximateNumberOfMessages");
    let got = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .expect("ReceiveMessage");
    let mut out: Vec<String> = got
        .messages()
        .iter()
        .filter_map(|m| m.body().map(str::to_string))
        .collect();
    assert_eq!(
        out.len(),
        count,
        "received {out:?}, the queue counts {count}"
    );
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_message_whose_commit_hits_a_full_disk_answers_503_and_is_not_queued() {
    if !linked("sqs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let emu = on_request(dir.path(), "sqs", &[]);
    let url = create_queue(&emu).await;
    assert_eq!(emu.stop(), Some(0));

    let emu = on_request(dir.path(), "sqs", &[FULL_DISK_AT_FIRST_COMMIT]);
    let sqs = no_retry!(aws_sdk_sqs, sqs, emu);
    let answer = sqs
        .send_message()
        .queue_url(&url)
        .message_body("refused")
        .send()
        .await;
    let err = match answer {
        Ok(r) => panic!("SendMessage hit a full disk but answered success: {r:?}"),
        Err(e) => e,
    };
    let text = text_of(&err);
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(503),
        "{text}"
    );
    assert!(text.contains(ENOSPC), "{text}");
    assert_eq!(bodies(&emu, &url).await, Vec::<String>::new());

    let emu = emu.kill_and_restart();
    assert_eq!(
        bodies(&emu, &url).await,
        Vec::<String>::new(),
        "the refused SendMessage came back after a restart"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sdk_retry_of_a_send_message_refused_on_a_full_disk_leaves_exactly_one_copy() {
    if !linked("sqs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let emu = on_request(dir.path(), "sqs", &[]);
    let url = create_queue(&emu).await;
    assert_eq!(emu.stop(), Some(0));

    let emu = on_request(dir.path(), "sqs", &[FULL_DISK_AT_FIRST_COMMIT]);
    // The SDK's default retry policy retries a 503; the second attempt commits.
    cryopod_tests::sqs(&emu.endpoint, REGION, ACCOUNT)
        .send_message()
        .queue_url(&url)
        .message_body("once")
        .send()
        .await
        .expect("SendMessage, retried by the SDK");
    assert_eq!(bodies(&emu, &url).await, vec!["once".to_string()]);
    let emu = emu.kill_and_restart();
    assert_eq!(bodies(&emu, &url).await, vec!["once".to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_object_whose_commit_hits_a_full_disk_answers_503_and_the_object_stays() {
    if !linked("s3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let emu = on_request(dir.path(), "s3", &[]);
    let s3 = cryopod_tests::s3(&emu.endpoint, REGION, ACCOUNT);
    s3.create_bucket()
        .bucket("keep")
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(REGION))
                .build(),
        )
        .send()
        .await
        .expect("CreateBucket");
    s3.put_object()
        .bucket("keep")
        .key("precious")
        .body(b"still here".to_vec().into())
        .send()
        .await
        .expect("PutObject");
    assert_eq!(emu.stop(), Some(0));

    let emu = on_request(dir.path(), "s3", &[FULL_DISK_AT_FIRST_COMMIT]);
    let s3 = no_retry!(aws_sdk_s3, s3, emu);
    let err = match s3
        .delete_object()
        .bucket("keep")
        .key("precious")
        .send()
        .await
    {
        Ok(r) => panic!("DeleteObject hit a full disk but answered success: {r:?}"),
        Err(e) => e,
    };
    let text = text_of(&err);
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(503),
        "{text}"
    );
    assert!(text.contains(ENOSPC), "{text}");
    let read = |emu: &Emulator| {
        let s3 = cryopod_tests::s3(&emu.endpoint, REGION, ACCOUNT);
        async move {
            let got = s3
                .get_object()
                .bucket("keep")
                .key("precious")
                .send()
                .await
                .expect("the object of the refused delete is gone");
            got.body
                .collect()
                .await
                .expect("body")
                .into_bytes()
                .to_vec()
        }
    };
    assert_eq!(read(&emu).await, b"still here");
    let emu = emu.kill_and_restart();
    assert_eq!(read(&emu).await, b"still here", "after a restart");
}

#[test]
fn a_scheduled_save_on_a_full_disk_names_the_cause_in_health_in_the_answer_and_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start_in(
        dir.path(),
        &[
            "--persistence",
            "--save-strategy",
            "SCHEDULED",
            "--flush-interval",
            "1",
            "--services",
            "notes",
        ],
        &[("CRYOPOD_FAILPOINT", "object-write:1+:enospc")],
    );
    // Over 2 MiB of state, so chunks are written while the encoder still runs: that write
    // failing is what the encoder used to report as its own error.
    let notes = emu.notes(ACCOUNT, REGION);
    notes.create_notebook("big", &[]);
    let text = "x".repeat(800 * 1024);
    for k in 0..4 {
        notes.put_note("big", &format!("n{k}"), &text, None);
    }
    let error = eventually("a failed scheduled save", Duration::from_secs(30), || {
        emu.health()["persistence"]["last_error"]
            .as_str()
            .map(str::to_string)
    });
    assert!(error.contains(ENOSPC), "health: {error}");
    assert!(!error.contains("invalid value write"), "health: {error}");
    let (status, answer) = emu.api_post("/_cryopod/state/save");
    assert!(status >= 500, "{status} {answer}");
    assert!(answer.to_string().contains(ENOSPC), "save answer: {answer}");
    let log = emu.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("save failed") && l.contains(ENOSPC)),
        "the log does not name the cause:\n{log}"
    );
}

#[test]
fn a_pod_save_leaves_only_owner_only_directories_and_files() {
    use std::os::unix::fs::PermissionsExt;
    let emu = Emulator::start_with(&["--services", "notes"], &[]);
    let notes = emu.notes(ACCOUNT, REGION);
    notes.create_notebook("seed", &[]);
    notes.put_note("seed", "n", "text", Some(b"an attachment"));
    let out = emu.cli(&["pod", "save", "seed", "--message", "modes"]);
    assert!(out.status.success(), "pod save: {out:?}");
    let pods = emu.data_dir.join("pods");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut dirs = vec![pods.clone()];
    let mut files = 0;
    while let Some(d) = dirs.pop() {
        assert_eq!(mode(&d), 0o700, "directory {} is not private", d.display());
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                assert_eq!(mode(&p), 0o600, "file {} is not private", p.display());
                files += 1;
            }
        }
    }
    assert!(
        files >= 4,
        "expected index, layout, manifest, config and layers under {}",
        pods.display()
    );
}
