//! LocalStack's own tools against the real `cryopod` binary: its management API
//! (`/_localstack/…`) as LocalStack's Python SDK, `lstk` and health-waiting scripts use it
//! (`../shared/localstack-api.md`).

use std::collections::BTreeSet;
use std::process::Command;

use cryopod_tests::{Emulator, aws_json, http};
use serde_json::{Value, json};

/// Resources of the lstk merge test, in one account and region. cryopod has no SNS, so
/// DynamoDB tables stand in for lstk's topics: the merge rules are the same per service.
struct Region<'a> {
    endpoint: &'a str,
    region: &'a str,
}

const ACCOUNT: &str = "000000000000";

impl Region<'_> {
    fn call(&self, service: &str, target: &str, body: Value) -> Value {
        let (status, v) = aws_json(
            self.endpoint,
            (ACCOUNT, self.region),
            service,
            target,
            &body,
        );
        assert_eq!(status, 200, "{target} in {}: {v}", self.region);
        v
    }

    fn create_table(&self, name: &str) {
        self.call(
            "dynamodb",
            "DynamoDB_20120810.CreateTable",
            json!({
                "TableName": name,
                "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                "BillingMode": "PAY_PER_REQUEST",
            }),
        );
    }

    fn tables(&self) -> BTreeSet<String> {
        let v = self.call("dynamodb", "DynamoDB_20120810.ListTables", json!({}));
        names(&v["TableNames"])
    }

    fn create_queue(&self, name: &str, visibility_timeout: u32) {
        self.call(
            "sqs",
            "AmazonSQS.CreateQueue",
            json!({
                "QueueName": name,
                "Attributes": {"VisibilityTimeout": visibility_timeout.to_string()},
            }),
        );
    }

    fn queues(&self) -> BTreeSet<String> {
        let v = self.call("sqs", "AmazonSQS.ListQueues", json!({}));
        v["QueueUrls"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str()?.rsplit('/').next().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn visibility_timeout(&self, queue: &str) -> String {
        let url =
            self.call("sqs", "AmazonSQS.GetQueueUrl", json!({"QueueName": queue}))["QueueUrl"]
                .as_str()
                .expect("QueueUrl")
                .to_string();
        let v = self.call(
            "sqs",
            "AmazonSQS.GetQueueAttributes",
            json!({"QueueUrl": url, "AttributeNames": ["VisibilityTimeout"]}),
        );
        v["Attributes"]["VisibilityTimeout"]
            .as_str()
            .expect("VisibilityTimeout")
            .to_string()
    }

    fn create_bucket(&self, name: &str) {
        let resp = http()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .expect("CreateBucket");
        assert!(
            resp.status().is_success(),
            "CreateBucket {name}: {}",
            resp.status()
        );
    }

    fn buckets(&self) -> BTreeSet<String> {
        let text = http()
            .get(format!("{}/", self.endpoint))
            .send()
            .and_then(|r| r.text())
            .expect("ListBuckets");
        text.split("<Name>")
            .skip(1)
            .filter_map(|s| s.split("</Name>").next().map(str::to_string))
            .collect()
    }
}

fn names(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Parses an NDJSON body, one JSON document per line.
fn ndjson(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not NDJSON: {l}: {e}")))
        .collect()
}

fn completion(lines: &[Value]) -> &Value {
    lines
        .iter()
        .find(|l| l["event"] == "completion")
        .unwrap_or_else(|| panic!("no completion event in {lines:?}"))
}

/// lstk's `snapshot save ./file`: `GET /_localstack/pods/state[?services=]`, body to a file.
fn lstk_save_local(endpoint: &str, services: Option<&str>) -> Vec<u8> {
    let url = match services {
        Some(s) => format!("{endpoint}/_localstack/pods/state?services={s}"),
        None => format!("{endpoint}/_localstack/pods/state"),
    };
    let resp = http().get(url).send().expect("export");
    assert_eq!(resp.status(), 200);
    let disposition = resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.starts_with("attachment; filename="),
        "{disposition}"
    );
    assert!(resp.headers().contains_key("x-localstack-pod-size"));
    if let Some(s) = services {
        let mut want: Vec<&str> = s.split(',').collect();
        want.sort();
        let got = resp.headers()["x-localstack-pod-services"]
            .to_str()
            .unwrap();
        let mut got: Vec<&str> = got.split(',').collect();
        got.sort();
        assert_eq!(got, want);
    }
    resp.bytes().expect("bundle").to_vec()
}

/// lstk's `lstk reset`: `POST /_localstack/state/reset`.
fn reset(endpoint: &str) {
    let resp = http()
        .post(format!("{endpoint}/_localstack/state/reset"))
        .send()
        .expect("reset");
    assert_eq!(resp.status(), 200, "reset");
}

/// lstk's `snapshot load ./file --merge M`: for `overwrite`, `POST /_localstack/state/reset`
/// then import with the server default; otherwise `POST /_localstack/pods?merge=M`.
fn lstk_load_local(endpoint: &str, bundle: &[u8], merge: &str) {
    let url = if merge == "overwrite" {
        reset(endpoint);
        format!("{endpoint}/_localstack/pods")
    } else {
        format!("{endpoint}/_localstack/pods?merge={merge}")
    };
    let resp = http()
        .post(url)
        .header("content-type", "application/octet-stream")
        .body(bundle.to_vec())
        .send()
        .expect("import");
    let status = resp.status().as_u16();
    let text = resp.text().expect("body");
    assert_eq!(status, 201, "import: {text}");
    let lines = ndjson(&text);
    assert!(!lines.is_empty(), "one line per service");
    for l in &lines {
        assert_eq!(l["status"], "ok", "{l}");
        assert!(l["service"].is_string(), "{l}");
    }
}

/// lstk's end-to-end merge test (`test/integration/snapshot_merge_e2e_test.go`), with
/// DynamoDB tables for its SNS topics, replayed with lstk's requests: the results are the
/// table in `localstack-api.md` §1.3.
#[test]
fn lstk_snapshot_sequences_give_lstk_merge_results() {
    let emu = Emulator::start_with(&["--services", "s3,sqs,dynamodb"], &[]);
    let ep = emu.endpoint.as_str();
    let east = Region {
        endpoint: ep,
        region: "us-east-1",
    };
    let south = Region {
        endpoint: ep,
        region: "ap-southeast-2",
    };

    // Snapshot 1.
    east.create_table("topic1");
    east.create_bucket("bucket1");
    east.create_queue("queue1", 30);
    east.create_queue("queue-to-replace", 30);
    south.create_table("topic2");
    south.create_queue("queue2", 30);
    let snapshot1 = lstk_save_local(ep, None);

    // Snapshot 2, on a clean emulator.
    reset(ep);
    east.create_table("topic3");
    east.create_queue("queue3", 90);
    east.create_queue("queue-to-replace", 90);
    let snapshot2 = lstk_save_local(ep, Some("sqs,dynamodb"));

    for merge in ["overwrite", "account-region-merge", "service-merge"] {
        reset(ep);
        lstk_load_local(ep, &snapshot1, "account-region-merge");
        assert_eq!(east.tables(), set(&["topic1"]), "snapshot 1 loaded");
        lstk_load_local(ep, &snapshot2, merge);
        let (tables, queues, buckets, south_all) = match merge {
            "overwrite" => (
                set(&["topic3"]),
                set(&["queue3", "queue-to-replace"]),
                set(&[]),
                set(&[]),
            ),
            "account-region-merge" => (
                set(&["topic3"]),
                set(&["queue3", "queue-to-replace"]),
                set(&["bucket1"]),
                set(&["topic2", "queue2"]),
            ),
            _ => (
                set(&["topic1", "topic3"]),
                set(&["queue1", "queue3", "queue-to-replace"]),
                set(&["bucket1"]),
                set(&["topic2", "queue2"]),
            ),
        };
        assert_eq!(east.tables(), tables, "{merge}: us-east-1 tables");
        assert_eq!(east.queues(), queues, "{merge}: us-east-1 queues");
        assert_eq!(east.buckets(), buckets, "{merge}: buckets");
        let south_now: BTreeSet<String> =
            south.tables().into_iter().chain(south.queues()).collect();
        assert_eq!(south_now, south_all, "{merge}: ap-southeast-2");
        assert_eq!(east.visibility_timeout("queue-to-replace"), "90", "{merge}");
    }
}

/// A request with a JSON body, answered as status and text.
fn send(method: reqwest::Method, url: String, body: Value) -> (u16, String) {
    let resp = http()
        .request(method, url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().expect("body"))
}

/// lstk's pod commands (`snapshot save pod:NAME`, `load pod:NAME --merge`, `remove`): the
/// requests it sends, parsed as it parses the NDJSON answers.
#[test]
fn lstk_pod_save_load_remove_stream_ndjson_events() {
    let emu = Emulator::start_with(&["--services", "s3,sqs"], &[]);
    let ep = emu.endpoint.as_str();
    let east = Region {
        endpoint: ep,
        region: "us-east-1",
    };
    east.create_queue("kept", 30);
    east.create_bucket("not-in-pod");

    // Save, narrowed to SQS.
    let (status, text) = send(
        reqwest::Method::POST,
        format!("{ep}/_localstack/pods/lstk-pod"),
        json!({"attributes": {"services": ["sqs"], "description": "from lstk"}}),
    );
    assert_eq!(status, 200, "{text}");
    let lines = ndjson(&text);
    let done = completion(&lines);
    assert_eq!(done["status"], "ok", "{lines:?}");
    assert_eq!(done["operation"], "save");
    assert_eq!(done["info"]["version"], 1);
    assert_eq!(done["info"]["services"], json!(["sqs"]));
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "service" && l["service"] == "sqs" && l["status"] == "ok"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "log"
                && l["message"].as_str().unwrap().contains("local pod store")),
        "the platform remote is named for what it is: {lines:?}"
    );

    // Versions and list, as the CLI reads them.
    let (_, second) = send(
        reqwest::Method::POST,
        format!("{ep}/_localstack/pods/lstk-pod"),
        json!({}),
    );
    assert_eq!(completion(&ndjson(&second))["info"]["version"], 2);
    let list: Value = http()
        .get(format!("{ep}/_localstack/pods"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list["cloudpods"][0]["pod_name"], "lstk-pod");
    assert_eq!(list["cloudpods"][0]["max_version"], 2);
    let versions: Value = http()
        .get(format!("{ep}/_localstack/pods/lstk-pod/versions"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(versions["versions"][0]["description"], "from lstk");
    assert_eq!(versions["versions"][0]["services"], json!(["sqs"]));
    assert!(versions["remote_url"].is_string());

    // Dry run, then load version 1 with service-merge.
    east.create_queue("after-save", 30);
    let diff: Value = http()
        .get(format!("{ep}/_localstack/pods/lstk-pod/diff?version=1"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(diff.is_object(), "{diff}");
    let (status, text) = send(
        reqwest::Method::PUT,
        format!("{ep}/_localstack/pods/lstk-pod?version=1&merge=account-region-merge"),
        json!({}),
    );
    assert_eq!(status, 200, "{text}");
    let lines = ndjson(&text);
    assert_eq!(completion(&lines)["status"], "ok", "{lines:?}");
    assert_eq!(completion(&lines)["operation"], "load");
    assert_eq!(
        east.queues(),
        set(&["kept"]),
        "the pod's SQS scope replaced the running one"
    );
    assert_eq!(east.buckets(), set(&["not-in-pod"]), "S3 is not in the pod");

    // A version past the newest and an unknown pod.
    let (status, text) = send(
        reqwest::Method::PUT,
        format!("{ep}/_localstack/pods/lstk-pod?version=9"),
        json!({}),
    );
    assert_eq!(status, 404, "{text}");
    // Remove: every version.
    let (status, text) = send(
        reqwest::Method::DELETE,
        format!("{ep}/_localstack/pods/lstk-pod"),
        json!({}),
    );
    assert_eq!(status, 200, "{text}");
    let (status, _) = send(
        reqwest::Method::PUT,
        format!("{ep}/_localstack/pods/lstk-pod"),
        json!({}),
    );
    assert_eq!(status, 404, "an unknown pod is a 404");
    let (status, _) = send(
        reqwest::Method::GET,
        format!("{ep}/_localstack/pods/lstk-pod/versions"),
        json!({}),
    );
    assert_eq!(status, 404);
}

/// Scripts that wait for LocalStack (`curl -fsS …/_localstack/health`, Testcontainers)
/// wait for cryopod: the health check succeeds as soon as the emulator says it is ready.
#[test]
fn localstack_health_answers_the_moment_the_emulator_is_ready() {
    let emu = Emulator::start_with(&["--services", "s3,sqs"], &[]);
    let url = format!("{}/_localstack/health", emu.endpoint);
    let out = Command::new("curl")
        .args(["-fsS", &url])
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "curl -fsS {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let health: Value = serde_json::from_slice(&out.stdout).expect("health is JSON");
    assert_eq!(health["services"]["s3"], "running");
    assert_eq!(health["services"]["sqs"], "running");
    assert!(health["version"].is_string());
    assert_eq!(health["edition"], "community");
    assert_eq!(health["features"]["persistence"], "disabled");
    let head = http().head(&url).send().unwrap();
    assert_eq!(head.status(), 200);

    let info: Value = http()
        .get(format!("{}/_localstack/info", emu.endpoint))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(info["session_id"].is_string() && info["uptime"].is_number());
    let init: Value = http()
        .get(format!("{}/_localstack/init", emu.endpoint))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(init["completed"]["READY"], true);
    assert_eq!(init["scripts"], json!([]));
    let ready = http()
        .get(format!("{}/_localstack/init/ready", emu.endpoint))
        .send()
        .unwrap();
    assert_eq!(ready.status(), 200);
    let unknown = http()
        .get(format!("{}/_localstack/init/lunch", emu.endpoint))
        .send()
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // With persistence (LocalStack's own switch), health says so.
    let persisted = Emulator::start_with(&["--services", "s3"], &[("LOCALSTACK_PERSISTENCE", "1")]);
    let health: Value = http()
        .get(format!("{}/_localstack/health", persisted.endpoint))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health["features"]["persistence"], "enabled");
    // No longer an S3 bucket name.
    let other = http()
        .get(format!("{}/_localstack/nothing-here", emu.endpoint))
        .send()
        .unwrap();
    assert_eq!(other.status(), 404);
    assert!(!other.text().unwrap().contains("InvalidBucketName"));
}

/// State saves and loads through persistence with LocalStack's `StateResult` lines.
#[test]
fn localstack_state_save_and_load_use_persistence() {
    let emu = Emulator::start_with(
        &["--services", "s3,sqs", "--save-strategy", "MANUAL"],
        &[("PERSISTENCE", "1")],
    );
    let ep = emu.endpoint.as_str();
    let (status, text) = send(
        reqwest::Method::POST,
        format!("{ep}/_localstack/state/save"),
        json!({}),
    );
    assert_eq!(status, 200, "{text}");
    let lines = ndjson(&text);
    let services: BTreeSet<String> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["status"], "ok", "{l}");
            l["service"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(services, set(&["s3", "sqs"]));
    let (status, text) = send(
        reqwest::Method::POST,
        format!("{ep}/_localstack/state/sqs/load"),
        json!({"start": true}),
    );
    assert_eq!(status, 200, "{text}");
    let one: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(one, json!({"service": "sqs", "status": "ok"}));
    let (status, _) = send(
        reqwest::Method::POST,
        format!("{ep}/_localstack/state/kinesis/save"),
        json!({}),
    );
    assert_eq!(status, 404, "an unknown service is a 404");
    let (status, _) = send(
        reqwest::Method::POST,
        format!("{ep}/_localstack/state/kinesis/reset"),
        json!({}),
    );
    assert_eq!(status, 404);
}

/// Resources of the running state, to compare before and after a request.
fn summary(emu: &Emulator) -> Value {
    emu.summary()
}

/// `POST /_localstack/pods` as LocalStack's web app uploads a file: multipart, one field.
fn upload_multipart(endpoint: &str, field: &str, content: &[u8]) -> reqwest::blocking::Response {
    let boundary = "cryopodtestboundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"state.cryopod\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    http()
        .post(format!("{endpoint}/_localstack/pods"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .expect("multipart upload")
}

/// Every POST and PUT of the LocalStack face, sent hostile or foreign bodies: the running
/// state (and the pod store) is what it was.
#[test]
fn hostile_bodies_on_localstack_endpoints_change_nothing() {
    let emu = Emulator::start_with(&["--services", "s3,sqs"], &[]);
    let ep = emu.endpoint.as_str();
    let east = Region {
        endpoint: ep,
        region: "us-east-1",
    };
    east.create_queue("precious", 30);
    east.create_bucket("precious");
    let (status, text) = send(
        reqwest::Method::POST,
        format!("{ep}/_localstack/pods/keep"),
        json!({}),
    );
    assert_eq!(status, 200, "{text}");
    let bundle = lstk_save_local(ep, None);
    let before = summary(&emu);
    let pods_before: Value = http()
        .get(format!("{ep}/_localstack/pods"))
        .send()
        .unwrap()
        .json()
        .unwrap();

    let mut zip = b"PK\x03\x04".to_vec();
    zip.extend_from_slice(&[0u8; 200]);
    let truncated = bundle[..bundle.len() / 2].to_vec();
    let mut flipped = bundle.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let garbage: Vec<u8> = (0..100_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let huge_json = format!(
        "{{\"attributes\": {{\"description\": \"{}\"}}}}",
        "x".repeat(200_000)
    );
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", garbage.clone()),
        ("zip", zip.clone()),
        ("truncated bundle", truncated.clone()),
        ("flipped bundle", flipped.clone()),
        ("json array", b"[1,2,3]".to_vec()),
        (
            "wrong types",
            br#"{"attributes": {"services": "s3"}, "remote": 7}"#.to_vec(),
        ),
        ("huge json", huge_json.into_bytes()),
        ("form", b"merge=overwrite&url=http://example.com".to_vec()),
    ];
    let routes: Vec<(reqwest::Method, String)> = vec![
        (reqwest::Method::POST, "/_localstack/pods".into()),
        (
            reqwest::Method::POST,
            "/_localstack/pods?merge=overwrite".into(),
        ),
        (reqwest::Method::POST, "/_localstack/pods/keep".into()),
        (
            reqwest::Method::PUT,
            "/_localstack/pods/keep?merge=overwrite".into(),
        ),
        (
            reqwest::Method::POST,
            "/_localstack/pods/remotes/evil".into(),
        ),
        (reqwest::Method::POST, "/_localstack/state/reset".into()),
        (reqwest::Method::POST, "/_localstack/state/s3/reset".into()),
        (reqwest::Method::POST, "/_localstack/state/save".into()),
        (reqwest::Method::POST, "/_localstack/state/load".into()),
        (
            reqwest::Method::POST,
            "/_localstack/pods/launchpad/fetch".into(),
        ),
        (
            reqwest::Method::POST,
            "/_localstack/pods/launchpad/inject".into(),
        ),
        (reqwest::Method::POST, "/_localstack/health".into()),
        (reqwest::Method::PUT, "/_localstack/health".into()),
    ];
    for (method, path) in &routes {
        for (what, body) in &bodies {
            let resp = http()
                .request(method.clone(), format!("{ep}{path}"))
                .header("content-type", "text/plain")
                .body(body.clone())
                .send()
                .unwrap_or_else(|e| panic!("{method} {path} ({what}): {e}"));
            let status = resp.status().as_u16();
            let text = resp.text().unwrap_or_default();
            // A 200 is an NDJSON stream: it must end in an error, never a success.
            if status == 200 {
                let lines = ndjson(&text);
                assert_eq!(
                    completion(&lines)["status"],
                    "error",
                    "{method} {path} ({what}) succeeded: {text}"
                );
            } else {
                assert!(status >= 400, "{method} {path} ({what}): {status} {text}");
            }
            assert_eq!(
                summary(&emu),
                before,
                "{method} {path} ({what}) changed the state: {text}"
            );
        }
    }
    // A multipart upload whose field is not `pod`, and a zip under the right name.
    for (field, content) in [("file", bundle.clone()), ("pod", zip)] {
        let resp = upload_multipart(ep, field, &content);
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        if field == "pod" {
            assert_eq!(status, 422, "{text}");
            assert!(
                text.contains("LocalStack") && text.contains("pickles"),
                "{text}"
            );
        } else {
            assert_eq!(status, 400, "{text}");
            assert!(text.contains("'pod'"), "{text}");
        }
        assert_eq!(summary(&emu), before);
    }
    let pods_after: Value = http()
        .get(format!("{ep}/_localstack/pods"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(pods_after, pods_before, "no pod version was added");
    assert_eq!(emu.summary(), before);

    // The multipart upload the web app sends does import.
    reset(ep);
    let resp = upload_multipart(ep, "pod", &bundle);
    assert_eq!(resp.status(), 201);
    assert_eq!(emu.summary(), before);
}

/// The unmodified `localstack-sdk-python` from PyPI (installed by `.ci/run`) drives cryopod:
/// `PodsClient`, `StateClient` and the `@cloudpods` decorator (`tests/python/`).
#[test]
fn localstack_python_sdk_drives_cryopod() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args([
            "-c",
            "import localstack.sdk.pods, localstack.sdk.testing, pytest",
        ])
        .output();
    match probe {
        Err(e) => panic!(
            "`{python}` cannot run ({e}): this test needs Python 3 with `localstack-sdk-python` and `pytest` (bash .ci/run installs them)"
        ),
        Ok(out) if !out.status.success() => panic!(
            "`{python}` lacks LocalStack's SDK or pytest: run `python3 -m pip install localstack-sdk-python pytest` (bash .ci/run does): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(_) => {}
    }
    let emu = Emulator::start_with(&["--services", "s3,sqs"], &[]);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/python");
    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", dir])
        .env("CRYOPOD_ENDPOINT", &emu.endpoint)
        .output()
        .expect("run pytest");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the SDK tests failed:\n{report}");
    assert!(report.contains("4 passed"), "{report}");
}

/// `cryopod serve` with `args` and `envs` and no `--listen`, expected to refuse to start:
/// what it printed on stderr.
fn serve_without_listen(envs: &[(&str, &str)]) -> String {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(cryopod_tests::binary());
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(tmp.path())
        .env_remove("CRYOPOD_LISTEN")
        .env("RUST_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run serve");
    assert!(!out.status.success(), "serve started with {envs:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// LocalStack's `GATEWAY_LISTEN` picks the address when `--listen` does not, under the same
/// loopback rule; LocalStack settings that mean nothing here are named at start.
#[test]
fn localstack_settings_are_honoured_or_named() {
    let err = serve_without_listen(&[("GATEWAY_LISTEN", "0.0.0.0:4566,0.0.0.0:443")]);
    assert!(
        err.contains("0.0.0.0:4566") && err.contains("--allow-remote"),
        "{err}"
    );
    let err = serve_without_listen(&[("GATEWAY_LISTEN", "nowhere:port")]);
    assert!(
        err.contains("GATEWAY_LISTEN") && err.contains("nowhere:port"),
        "{err}"
    );
    let err = serve_without_listen(&[
        ("GATEWAY_LISTEN", ":4566"),
        ("LOCALSTACK_PERSISTENCE", "maybe"),
    ]);
    assert!(err.contains("LOCALSTACK_PERSISTENCE"), "{err}");

    let emu = Emulator::start_with(
        &["--services", "s3"],
        &[
            ("DEBUG", "1"),
            ("LAMBDA_EXECUTOR", "docker"),
            ("LOCALSTACK_HOST", "emu.test:4566"),
        ],
    );
    let warning: Vec<String> = emu
        .stderr()
        .lines()
        .filter(|l| l.contains("LocalStack settings that cryopod ignores"))
        .map(str::to_string)
        .collect();
    assert!(
        warning
            .iter()
            .any(|l| l.contains("DEBUG (use RUST_LOG=debug)") && l.contains("LAMBDA_EXECUTOR")),
        "{}",
        emu.stderr()
    );
    // LOCALSTACK_HOST is a name the emulator answers to.
    let resp = http()
        .get(format!("{}/_localstack/health", emu.endpoint))
        .header("host", "emu.test:4566")
        .header("origin", "http://emu.test:4566")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().unwrap_or_default());
    let resp = http()
        .get(format!("{}/_localstack/health", emu.endpoint))
        .header("host", "other.test:4566")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 403, "other names stay refused");
}
