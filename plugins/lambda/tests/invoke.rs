//! Lambda runs code: the official AWS SDK for Rust invokes Python, Node.js and `provided`
//! functions over HTTP, and an SQS event source mapping processes a queue exactly once,
//! also after its state moved into a fresh emulator.

mod common;

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Architecture, Environment, FunctionCode, FunctionResponseType, InvocationType,
    LayerVersionContentInput, LogType, Runtime,
};
use aws_types::region::Region;
use base64::Engine;
use common::stored_zip;
use cryopod::server::TestServer;
use cryopod::{MergeStrategy, ScopeFilter};
use serde_json::{Value, json};

// Linked so that the SQS service registers in this test binary.
use cryopod_sqs as _;

const ACCOUNT: &str = "222222222222";
const REGION: &str = "us-east-1";

fn creds() -> Credentials {
    Credentials::new(ACCOUNT, "secret", None, None, "t")
}

fn lambda(server: &TestServer) -> Client {
    Client::from_conf(
        aws_sdk_lambda::Config::builder()
            .behavior_version_latest()
            .region(Region::new(REGION))
            .endpoint_url(&server.endpoint)
            .credentials_provider(creds())
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build(),
    )
}

fn sqs(server: &TestServer) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version_latest()
            .region(Region::new(REGION))
            .endpoint_url(&server.endpoint)
            .credentials_provider(creds())
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build(),
    )
}

/// Creates a function from `files` and returns its name.
async fn create(
    c: &Client,
    name: &str,
    runtime: Runtime,
    handler: &str,
    files: &[(&str, &[u8])],
    tweak: impl FnOnce(
        aws_sdk_lambda::operation::create_function::builders::CreateFunctionFluentBuilder,
    ) -> aws_sdk_lambda::operation::create_function::builders::CreateFunctionFluentBuilder,
) {
    let b = c
        .create_function()
        .function_name(name)
        .runtime(runtime)
        .role(format!("arn:aws:iam::{ACCOUNT}:role/exec"))
        .handler(handler)
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(stored_zip(files)))
                .build(),
        );
    tweak(b).send().await.expect("create function");
}

/// Publishes a layer holding one file and returns its version ARN.
async fn publish_layer(c: &Client, name: &str, path: &str, body: &[u8]) -> String {
    c.publish_layer_version()
        .layer_name(name)
        .content(
            LayerVersionContentInput::builder()
                .zip_file(Blob::new(stored_zip(&[(path, body)])))
                .build(),
        )
        .send()
        .await
        .expect("publish layer")
        .layer_version_arn()
        .expect("layer version arn")
        .to_string()
}

/// Invokes `name` with `payload` and returns (function error, payload as JSON, log tail).
async fn invoke(c: &Client, name: &str, payload: Value) -> (Option<String>, Value, String) {
    let out = c
        .invoke()
        .function_name(name)
        .payload(Blob::new(payload.to_string()))
        .log_type(LogType::Tail)
        .send()
        .await
        .expect("invoke");
    assert_eq!(out.status_code(), 200);
    let body = out
        .payload()
        .map(|b| b.as_ref().to_vec())
        .unwrap_or_default();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let log = out
        .log_result()
        .map(|l| {
            String::from_utf8_lossy(
                &base64::engine::general_purpose::STANDARD
                    .decode(l)
                    .expect("base64 log"),
            )
            .into_owned()
        })
        .unwrap_or_default();
    (out.function_error().map(str::to_string), v, log)
}

const PY_HANDLER: &str = r#"
import os

def handler(event, context):
    import helper
    print("hello from python", event.get("n"))
    return {
        "doubled": event["n"] * 2,
        "greeting": helper.greet("py"),
        "pid": os.getpid(),
        "name": context.function_name,
        "version": context.function_version,
        "arn": context.invoked_function_arn,
        "env": {k: os.environ.get(k) for k in [
            "AWS_LAMBDA_FUNCTION_NAME", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL",
            "_HANDLER", "LAMBDA_TASK_ROOT", "COLOUR"]},
        "cwd_is_task_root": os.getcwd() == os.environ["LAMBDA_TASK_ROOT"],
    }

def fail(event, context):
    raise ValueError("boom: " + str(event.get("n")))

def slow(event, context):
    import time
    time.sleep(30)
    return "never"
"#;

#[tokio::test]
async fn a_python_function_with_a_layer_runs_and_stays_warm() {
    let s = TestServer::start(&[cryopod_lambda::SERVICE]).await;
    let c = lambda(&s);
    let layer_arn = publish_layer(
        &c,
        "helpers",
        "python/helper.py",
        b"def greet(who):\n    return 'hello ' + who\n",
    )
    .await;
    create(
        &c,
        "py",
        Runtime::Python312,
        "index.handler",
        &[("index.py", PY_HANDLER.as_bytes())],
        |b| {
            b.layers(layer_arn)
                .environment(Environment::builder().variables("COLOUR", "teal").build())
        },
    )
    .await;

    let (err, v, log) = invoke(&c, "py", json!({ "n": 21 })).await;
    assert_eq!(err, None, "{v}");
    assert_eq!(v["doubled"], 42);
    assert_eq!(v["greeting"], "hello py");
    assert_eq!(v["name"], "py");
    assert_eq!(v["version"], "$LATEST");
    assert_eq!(v["env"]["AWS_LAMBDA_FUNCTION_NAME"], "py");
    assert_eq!(v["env"]["AWS_REGION"], REGION);
    assert_eq!(v["env"]["AWS_ACCESS_KEY_ID"], ACCOUNT);
    assert_eq!(v["env"]["AWS_ENDPOINT_URL"], s.endpoint.as_str());
    assert_eq!(v["env"]["_HANDLER"], "index.handler");
    assert_eq!(v["env"]["COLOUR"], "teal");
    assert_eq!(v["cwd_is_task_root"], true);
    assert!(log.contains("START RequestId: "), "{log}");
    assert!(log.contains("hello from python 21"), "{log}");
    assert!(log.contains("REPORT RequestId: "), "{log}");
    assert!(
        log.contains("Init Duration"),
        "a cold start reports its init: {log}"
    );

    // Warm: the same process answers the next invocation.
    let (_, again, log) = invoke(&c, "py", json!({ "n": 1 })).await;
    assert_eq!(again["pid"], v["pid"]);
    assert!(!log.contains("Init Duration"), "{log}");

    // Qualifier: a published version and an alias run the code they froze.
    let v1 = c
        .publish_version()
        .function_name("py")
        .send()
        .await
        .unwrap();
    assert_eq!(v1.version(), Some("1"));
    c.create_alias()
        .function_name("py")
        .name("live")
        .function_version("1")
        .send()
        .await
        .unwrap();
    c.update_function_code()
        .function_name("py")
        .zip_file(Blob::new(stored_zip(&[(
            "index.py",
            b"def handler(e, c):\n    return 'new code'\n",
        )])))
        .send()
        .await
        .unwrap();
    let (_, latest, _) = invoke(&c, "py", json!({ "n": 1 })).await;
    assert_eq!(latest, json!("new code"), "an update runs the new code");
    let out = c
        .invoke()
        .function_name("py")
        .qualifier("live")
        .payload(Blob::new(r#"{"n": 2}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(out.executed_version(), Some("1"));
    let v: Value = serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap();
    assert_eq!(v["doubled"], 4);
    assert_eq!(v["version"], "1");
    assert!(v["arn"].as_str().unwrap().ends_with(":function:py:live"));
}

#[tokio::test]
async fn a_nodejs_function_with_a_layer_runs_async_and_callback_handlers() {
    let s = TestServer::start(&[cryopod_lambda::SERVICE]).await;
    let c = lambda(&s);
    let layer_arn = publish_layer(
        &c,
        "node-helpers",
        "nodejs/node_modules/shout/index.js",
        b"module.exports = (s) => s.toUpperCase() + '!';\n",
    )
    .await;
    let code = br#"
const shout = require("shout");
exports.handler = async (event, context) => {
  console.log("hello from node", event.n);
  return { tripled: event.n * 3, shout: shout("hi"), fn: context.functionName,
           region: process.env.AWS_REGION };
};
exports.cb = (event, context, callback) => callback(null, { ok: event.n });
exports.fail = async () => { throw new TypeError("bad input"); };
"#;
    for (name, handler) in [
        ("node", "app.handler"),
        ("node-cb", "app.cb"),
        ("node-fail", "app.fail"),
    ] {
        create(
            &c,
            name,
            Runtime::Nodejs20x,
            handler,
            &[("app.js", code)],
            |b| b.layers(&layer_arn),
        )
        .await;
    }
    let (err, v, log) = invoke(&c, "node", json!({ "n": 5 })).await;
    assert_eq!(err, None, "{v}");
    assert_eq!(
        v,
        json!({ "tripled": 15, "shout": "HI!", "fn": "node", "region": REGION })
    );
    assert!(log.contains("hello from node 5"), "{log}");
    let (_, v, _) = invoke(&c, "node-cb", json!({ "n": 7 })).await;
    assert_eq!(v, json!({ "ok": 7 }));
    let (err, v, _) = invoke(&c, "node-fail", json!({})).await;
    assert_eq!(err.as_deref(), Some("Unhandled"));
    assert_eq!(v["errorType"], "TypeError");
    assert_eq!(v["errorMessage"], "bad input");
    assert!(v["trace"].as_array().is_some_and(|t| !t.is_empty()), "{v}");
}

#[tokio::test]
async fn a_raising_handler_answers_the_error_as_aws_does() {
    let s = TestServer::start(&[cryopod_lambda::SERVICE]).await;
    let c = lambda(&s);
    create(
        &c,
        "bad",
        Runtime::Python312,
        "index.fail",
        &[("index.py", PY_HANDLER.as_bytes())],
        |b| b,
    )
    .await;
    let (err, v, log) = invoke(&c, "bad", json!({ "n": 3 })).await;
    assert_eq!(err.as_deref(), Some("Unhandled"));
    assert_eq!(v["errorMessage"], "boom: 3");
    assert_eq!(v["errorType"], "ValueError");
    let trace = v["stackTrace"].as_array().expect("stackTrace");
    assert!(
        trace
            .iter()
            .any(|l| l.as_str().unwrap_or("").contains("index.py")),
        "{v}"
    );
    assert!(log.contains("ValueError"), "{log}");

    // A module that does not import fails the invocation with AWS's init error.
    create(
        &c,
        "missing",
        Runtime::Python312,
        "nothere.handler",
        &[("index.py", b"x = 1\n")],
        |b| b,
    )
    .await;
    let (err, v, _) = invoke(&c, "missing", json!({})).await;
    assert_eq!(err.as_deref(), Some("Unhandled"));
    assert_eq!(v["errorType"], "Runtime.ImportModuleError", "{v}");
}

#[tokio::test]
async fn a_sleeping_handler_times_out_at_its_timeout() {
    let s = TestServer::start(&[cryopod_lambda::SERVICE]).await;
    let c = lambda(&s);
    create(
        &c,
        "slow",
        Runtime::Python312,
        "index.slow",
        &[("index.py", PY_HANDLER.as_bytes())],
        |b| b.timeout(1),
    )
    .await;
    let started = std::time::Instant::now();
    let (err, v, log) = invoke(&c, "slow", json!({})).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the timeout is enforced"
    );
    assert_eq!(err.as_deref(), Some("Unhandled"));
    let msg = v["errorMessage"].as_str().unwrap_or("");
    assert!(msg.contains("Task timed out after 1.00 seconds"), "{v}");
    assert!(log.contains("Task timed out after 1.00 seconds"), "{log}");
}

/// A `provided.al2023` bootstrap that talks to the Runtime API directly, as AWS documents
/// for custom runtimes (here in Python, with nothing but the standard library).
const BOOTSTRAP: &str = r#"#!/usr/bin/env python3
import json, os, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
while True:
    with urllib.request.urlopen(api + "/invocation/next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read() or b"{}")
    body = json.dumps({"echo": event, "handler": os.environ["_HANDLER"]}).encode()
    req = urllib.request.Request(api + "/invocation/" + rid + "/response", data=body, method="POST")
    urllib.request.urlopen(req).read()
"#;

#[tokio::test]
async fn a_provided_bootstrap_runs_against_the_runtime_api() {
    let s = TestServer::start(&[cryopod_lambda::SERVICE]).await;
    let c = lambda(&s);
    create(
        &c,
        "custom",
        Runtime::Providedal2023,
        "my.handler",
        &[("bootstrap", BOOTSTRAP.as_bytes())],
        |b| b,
    )
    .await;
    let (err, v, _) = invoke(&c, "custom", json!({ "k": [1, 2] })).await;
    assert_eq!(err, None, "{v}");
    assert_eq!(
        v,
        json!({ "echo": { "k": [1, 2] }, "handler": "my.handler" })
    );
}

#[tokio::test]
async fn dry_run_event_limits_and_unrunnable_functions_answer_as_aws() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(&[cryopod_lambda::SERVICE]).await;
    let c = lambda(&s);
    let writer = format!(
        "import os, json\ndef handler(e, c):\n    open(os.path.join({:?}, e['file']), 'w').write(json.dumps(e))\n",
        dir.path().display().to_string()
    );
    create(
        &c,
        "w",
        Runtime::Python312,
        "index.handler",
        &[("index.py", writer.as_bytes())],
        |b| b,
    )
    .await;

    let dry = c
        .invoke()
        .function_name("w")
        .invocation_type(InvocationType::DryRun)
        .send()
        .await
        .unwrap();
    assert_eq!(dry.status_code(), 204);

    let ev = c
        .invoke()
        .function_name("w")
        .invocation_type(InvocationType::Event)
        .payload(Blob::new(r#"{"file": "event.json"}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(ev.status_code(), 202);
    wait_for(
        || dir.path().join("event.json").exists(),
        "the Event invocation ran",
    )
    .await;

    let big = format!("\"{}\"", "x".repeat(6 * 1024 * 1024 + 10));
    let err = c
        .invoke()
        .function_name("w")
        .payload(Blob::new(big))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.into_service_error().meta().code(),
        Some("RequestTooLargeException")
    );

    let err = c.invoke().function_name("nope").send().await.unwrap_err();
    assert_eq!(
        err.into_service_error().meta().code(),
        Some("ResourceNotFoundException")
    );

    // A runtime or architecture this machine cannot run is a clear error, not a hang.
    create(
        &c,
        "java",
        Runtime::Java21,
        "a.B::handle",
        &[("a.txt", b"x")],
        |b| b,
    )
    .await;
    let err = c.invoke().function_name("java").send().await.unwrap_err();
    let e = err.into_service_error();
    assert_eq!(e.meta().code(), Some("InvalidRuntimeException"));
    assert!(e.meta().message().unwrap_or("").contains("java21"), "{e:?}");
    let other = if std::env::consts::ARCH == "aarch64" {
        Architecture::X8664
    } else {
        Architecture::Arm64
    };
    create(
        &c,
        "arch",
        Runtime::Python312,
        "index.handler",
        &[("index.py", b"def handler(e, c): return 1\n")],
        |b| b.architectures(other),
    )
    .await;
    let err = c.invoke().function_name("arch").send().await.unwrap_err();
    let e = err.into_service_error();
    assert_eq!(e.meta().code(), Some("InvalidRuntimeException"));
    assert!(
        e.meta().message().unwrap_or("").contains("architecture"),
        "{e:?}"
    );
}

async fn wait_for(mut ok: impl FnMut() -> bool, what: &str) {
    for _ in 0..600 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting: {what}");
}

/// Records every message it sees in `OUT_DIR/<pid>.log` as `<body> <receive count>`, and
/// reports bodies starting with `fail` as failed on their first receive.
const SQS_HANDLER: &str = r#"
import os

def handler(event, context):
    failures = []
    with open(os.path.join(os.environ["OUT_DIR"], "%d.log" % os.getpid()), "a") as f:
        for r in event["Records"]:
            count = int(r["attributes"]["ApproximateReceiveCount"])
            f.write("%s %d\n" % (r["body"], count))
            if r["body"].startswith("fail") and count == 1:
                failures.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": failures}
"#;

/// Every line the handler wrote: body → receive counts seen.
fn seen(dir: &Path) -> HashMap<String, Vec<u32>> {
    let mut out: HashMap<String, Vec<u32>> = HashMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        for line in std::fs::read_to_string(e.path())
            .unwrap_or_default()
            .lines()
        {
            if let Some((body, n)) = line.rsplit_once(' ') {
                out.entry(body.to_string())
                    .or_default()
                    .push(n.parse().unwrap_or(0));
            }
        }
    }
    out
}

async fn send_all(q: &aws_sdk_sqs::Client, url: &str, bodies: &[String]) {
    for chunk in bodies.chunks(10) {
        let mut b = q.send_message_batch().queue_url(url);
        for (i, body) in chunk.iter().enumerate() {
            b = b.entries(
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .unwrap(),
            );
        }
        b.send().await.unwrap();
    }
}

/// Bodies processed successfully: a `fail…` body is done on its second receive.
fn done(dir: &Path) -> usize {
    seen(dir)
        .iter()
        .filter(|(b, n)| !b.starts_with("fail") || n.len() >= 2)
        .count()
}

#[tokio::test]
async fn an_sqs_mapping_processes_1000_messages_once_and_polls_again_after_import() {
    let dir = tempfile::tempdir().unwrap();
    let services = [cryopod_lambda::SERVICE, "sqs"];
    let a = TestServer::start(&services).await;
    let (c, q) = (lambda(&a), sqs(&a));
    let url = q
        .create_queue()
        .queue_name("jobs")
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "2",
        )
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:jobs");
    create(
        &c,
        "consumer",
        Runtime::Python312,
        "index.handler",
        &[("index.py", SQS_HANDLER.as_bytes())],
        |b| {
            b.timeout(30).environment(
                Environment::builder()
                    .variables("OUT_DIR", dir.path().display().to_string())
                    .build(),
            )
        },
    )
    .await;
    let bodies: Vec<String> = (0..1000)
        .map(|i| {
            if i % 50 == 0 {
                format!("fail-{i}")
            } else {
                format!("m-{i}")
            }
        })
        .collect();
    send_all(&q, &url, &bodies).await;
    c.create_event_source_mapping()
        .function_name("consumer")
        .event_source_arn(&arn)
        .batch_size(10)
        .function_response_types(FunctionResponseType::ReportBatchItemFailures)
        .send()
        .await
        .unwrap();
    wait_for(|| done(dir.path()) == 1000, "1000 messages processed").await;
    // Let a redelivery that should not happen show itself: past one visibility timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = seen(dir.path());
    assert_eq!(s.len(), 1000);
    for (body, counts) in &s {
        if body.starts_with("fail") {
            assert_eq!(counts, &vec![1, 2], "{body} fails once, then succeeds once");
        } else {
            assert_eq!(counts, &vec![1], "{body} is processed exactly once");
        }
    }
    let attrs = q
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let n = |k: aws_sdk_sqs::types::QueueAttributeName| {
        attrs
            .attributes()
            .and_then(|a| a.get(&k))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages),
        "0"
    );
    assert_eq!(
        n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        "0"
    );

    // Export → fresh emulator → import: the mapping polls there, on new messages.
    let (bundle, _) = a
        .runtime
        .export(None, &ScopeFilter::all(), Vec::new(), Default::default())
        .await
        .unwrap();
    drop((c, q));
    drop(a);
    std::fs::remove_dir_all(dir.path()).unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    let b = TestServer::start(&services).await;
    b.runtime
        .import(Cursor::new(bundle), None, MergeStrategy::AccountRegionMerge)
        .await
        .unwrap();
    let q = sqs(&b);
    let url = q
        .get_queue_url()
        .queue_name("jobs")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let more: Vec<String> = (0..20).map(|i| format!("after-{i}")).collect();
    send_all(&q, &url, &more).await;
    wait_for(
        || done(dir.path()) == 20,
        "the imported mapping processes new messages",
    )
    .await;
    assert!(seen(dir.path()).keys().all(|k| k.starts_with("after-")));
}
