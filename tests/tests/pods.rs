//! Pods end to end: the real `cryopod` binary, its `pod` CLI, real remotes (`moto_server` for
//! S3, Debian's `docker-registry` for OCI, a directory), the launchpad in a browser, and
//! auto-load at start. State is made and compared through the `notes` service's API.

#[path = "../../framework/tests/pods_support/servers.rs"]
mod servers;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cryopod_tests::{Emulator, http, json_of, random_bytes};
use serde_json::Value;
use servers::{Moto, Registry};

const ACCOUNT: &str = "111111111111";
const REGION: &str = "eu-west-1";

/// Credentials for moto in the emulator's environment (moto accepts any signed request).
const AWS_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "cryopod-test"),
    ("AWS_SECRET_ACCESS_KEY", "cryopod-test-secret"),
    ("AWS_REGION", "us-east-1"),
];

/// Runs a `pod` command expected to fail; returns its stderr.
fn failure(emu: &Emulator, args: &[&str]) -> String {
    let out = emu.cli(args);
    assert!(
        !out.status.success(),
        "`cryopod {}` should fail but printed {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn dump(emu: &Emulator) -> Value {
    emu.notes(ACCOUNT, REGION).dump()
}

/// A small state with an attachment.
fn seed(emu: &Emulator) {
    let n = emu.notes(ACCOUNT, REGION);
    n.create_notebook("trips", &[("team", "blue")]);
    n.put_note("trips", "lisbon", "tram 28", Some(b"ticket scan"));
    n.put_note("trips", "porto", "bridge", None);
}

#[test]
fn cli_saves_versions_and_loads_each_back_exactly() {
    let emu = Emulator::start();
    seed(&emu);
    let v1 = dump(&emu);
    let r = json_of(&emu.cli(&["--json", "pod", "save", "demo", "--message", "first"]));
    assert_eq!(r["version"], 1);

    let n = emu.notes(ACCOUNT, REGION);
    n.put_note("trips", "lisbon", "tram 15", Some(b"new scan"));
    n.create_notebook("food", &[]);
    let v2 = dump(&emu);
    assert_ne!(v1, v2);
    let r = json_of(&emu.cli(&["--json", "pod", "save", "demo", "-m", "second"]));
    assert_eq!(r["version"], 2);

    json_of(&emu.cli(&["--json", "pod", "load", "demo:1", "--merge", "overwrite"]));
    assert_eq!(dump(&emu), v1, "loading demo:1 restores v1");
    json_of(&emu.cli(&["--json", "pod", "load", "demo:2", "--merge", "overwrite"]));
    assert_eq!(dump(&emu), v2, "loading demo:2 restores v2");

    let versions = json_of(&emu.cli(&["--json", "pod", "versions", "demo"]));
    let listed: Vec<(u64, String)> = versions["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap_or(0),
                v["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![(1, "first".to_string()), (2, "second".to_string())]
    );
    let human = emu.cli(&["pod", "versions", "demo"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("demo:1") && text.contains("first") && text.contains("second"),
        "{text}"
    );

    let list = json_of(&emu.cli(&["--json", "pod", "list"]));
    assert_eq!(list["pods"][0]["name"], "demo");
    assert_eq!(list["pods"][0]["latest"], 2);

    let inspect = json_of(&emu.cli(&["--json", "pod", "inspect", "demo:1"]));
    // Every service of the build is in the pod; notes holds the state made above.
    let notes = inspect["metadata"]["services"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "notes"))
        .expect("notes is in the pod");
    assert_eq!(notes["scopes"][0]["account"], ACCOUNT);
    assert_eq!(notes["scopes"][0]["region"], REGION);
    assert_eq!(inspect["metadata"]["blobs"]["count"], 1);
    let tree = String::from_utf8_lossy(&emu.cli(&["pod", "inspect", "demo"]).stdout).to_string();
    assert!(
        tree.contains("├── notes") && tree.contains(&format!("{ACCOUNT}/{REGION}")),
        "{tree}"
    );

    json_of(&emu.cli(&["--json", "pod", "delete", "demo:1"]));
    let fresh = Emulator::start_in(&emu.data_dir, &[], &[]);
    json_of(&fresh.cli(&["--json", "pod", "load", "demo:2"]));
    assert_eq!(
        dump(&fresh),
        v2,
        "demo:2 still loads after demo:1 is deleted"
    );
    let err = failure(&fresh, &["pod", "load", "demo:1"]);
    assert!(
        err.contains("no version 1") && err.contains("versions: 2"),
        "{err}"
    );
}

#[test]
fn the_same_pod_saved_to_s3_and_to_an_oci_registry_loads_back_identically_in_a_fresh_emulator() {
    let moto = Moto::start();
    moto.create_bucket("team-pods");
    let registry = Registry::start();
    let emu = Emulator::start_with(&[], AWS_ENV);
    seed(&emu);
    emu.notes(ACCOUNT, REGION).put_note(
        "trips",
        "big",
        "a photo",
        Some(&random_bytes(3, 3 * 1024 * 1024)),
    );
    let original = dump(&emu);
    let s3 = moto.url("team-pods", "shared");
    let oci = registry.url("team/pods");
    json_of(&emu.cli(&["--json", "pod", "remote", "add", "s3team", &s3]));
    json_of(&emu.cli(&[
        "--json",
        "pod",
        "save",
        "shared",
        "s3team",
        "-m",
        "to s3",
        "--services",
        "notes",
    ]));
    json_of(&emu.cli(&[
        "--json",
        "pod",
        "save",
        "shared",
        &oci,
        "-m",
        "to oci",
        "--services",
        "notes",
    ]));

    for remote in [s3.as_str(), oci.as_str()] {
        let fresh = Emulator::start_with(&[], AWS_ENV);
        let r = json_of(&fresh.cli(&["--json", "pod", "load", "shared", remote]));
        assert_eq!(r["version"], 1, "{remote}");
        assert_eq!(dump(&fresh), original, "loaded from {remote}");
        let listed = json_of(&fresh.cli(&["--json", "pod", "list", remote]));
        assert_eq!(listed["pods"][0]["name"], "shared", "{remote}");
    }

    // What the registry holds is a valid OCI artifact.
    let resp = http()
        .get(format!(
            "http://{}/v2/team/pods/manifests/shared.1",
            registry.host
        ))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .expect("GET manifest");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, "application/vnd.oci.image.manifest.v1+json");
    let m: Value = resp.json().expect("manifest JSON");
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m["artifactType"], "application/vnd.cryopod.pod.v1");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.cryopod.pod.config.v1+json"
    );
    let layers = m["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 3, "one section and two attachments: {m}");
    for d in layers.iter().chain(std::iter::once(&m["config"])) {
        assert!(
            d["mediaType"]
                .as_str()
                .is_some_and(|t| t.starts_with("application/vnd.cryopod.")),
            "{d}"
        );
        assert!(
            d["digest"]
                .as_str()
                .is_some_and(|t| t.starts_with("sha256:") && t.len() == 71),
            "{d}"
        );
        assert!(d["size"].as_u64().is_some_and(|s| s > 0), "{d}");
        let blob = http()
            .get(format!(
                "http://{}/v2/team/pods/blobs/{}",
                registry.host,
                d["digest"].as_str().unwrap_or("")
            ))
            .send()
            .expect("GET blob");
        assert_eq!(blob.status().as_u16(), 200);
        assert_eq!(
            blob.bytes().expect("blob").len() as u64,
            d["size"].as_u64().unwrap_or(0)
        );
    }
    assert_eq!(layers[0]["annotations"]["io.cryopod.service"], "notes");
}

/// 64 MiB of attachments (4 × 16 MiB, the notes service's cap; the 1 GiB scaled down
/// to keep the suite fast), then one note changed: the second version sends under 1% of the
/// first, to the local store, a directory, S3 and an OCI registry.
#[test]
fn a_second_version_sends_under_one_percent_of_the_first_to_every_store() {
    let moto = Moto::start();
    moto.create_bucket("big");
    let registry = Registry::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start_with(&[], AWS_ENV);
    let n = emu.notes(ACCOUNT, REGION);
    n.create_notebook("media", &[]);
    for i in 0..4u64 {
        n.put_note(
            "media",
            &format!("clip{i}"),
            "video",
            Some(&random_bytes(100 + i, 16 * 1024 * 1024)),
        );
    }
    let stores = [
        None,
        Some(format!("file://{}", dir.path().display())),
        Some(moto.url("big", "p")),
        Some(registry.url("big")),
    ];
    let save = |store: &Option<String>, msg: &str| -> Value {
        let mut args = vec![
            "--json",
            "pod",
            "save",
            "media",
            "-m",
            msg,
            "--services",
            "notes",
        ];
        if let Some(s) = store {
            args.insert(4, s.as_str());
        }
        json_of(&emu.cli(&args))
    };
    let firsts: Vec<u64> = stores
        .iter()
        .map(|s| {
            save(s, "v1")["bytes_uploaded"]
                .as_u64()
                .expect("bytes_uploaded")
        })
        .collect();
    n.put_note("media", "clip0", "edited caption", None);
    for (store, first) in stores.iter().zip(&firsts) {
        assert!(
            *first >= 64 * 1024 * 1024,
            "{store:?}: v1 sent only {first}"
        );
        let r = save(store, "v2");
        let second = r["bytes_uploaded"].as_u64().expect("bytes_uploaded");
        assert!(
            second * 100 < *first,
            "{store:?}: v2 sent {second} bytes, v1 {first}"
        );
        assert_eq!(
            r["layers_reused"], 3,
            "{store:?}: the three unchanged clips are reused: {r}"
        );
    }
    // The second version is complete wherever it went.
    let expected = dump(&emu);
    for store in &stores[2..] {
        let fresh = Emulator::start_with(&[], AWS_ENV);
        let s = store.as_deref().unwrap_or_default();
        json_of(&fresh.cli(&["--json", "pod", "load", "media:2", s]));
        assert_eq!(dump(&fresh), expected, "{s}");
    }
}

#[test]
fn wrong_secret_missing_pod_or_version_unreachable_remote_and_corrupt_layer_fail_clearly_and_change_nothing()
 {
    let emu = Emulator::start_with(&[], &[("CRYOPOD_AGE_WORK_FACTOR", "4")]);
    seed(&emu);
    json_of(&emu.cli(&["--json", "pod", "save", "locked", "--secret", "open sesame"]));
    json_of(&emu.cli(&["--json", "pod", "save", "plain"]));
    emu.notes(ACCOUNT, REGION).create_notebook("since", &[]);
    let before = dump(&emu);

    let err = failure(
        &emu,
        &[
            "pod",
            "load",
            "locked",
            "--secret",
            "wrong",
            "--merge",
            "overwrite",
        ],
    );
    assert!(err.contains("wrong secret for pod locked:1"), "{err}");
    let err = failure(&emu, &["pod", "load", "locked", "--merge", "overwrite"]);
    assert!(
        err.contains("encrypted") && err.contains("--secret"),
        "{err}"
    );
    let err = failure(&emu, &["pod", "load", "ghost"]);
    assert!(err.contains("pod `ghost` not found"), "{err}");
    let err = failure(&emu, &["pod", "load", "plain:9"]);
    assert!(
        err.contains("no version 9") && err.contains("versions: 1"),
        "{err}"
    );
    let port = servers::free_port();
    let err = failure(
        &emu,
        &["pod", "load", "plain", &format!("oci://127.0.0.1:{port}/x")],
    );
    assert!(
        err.contains(&format!("remote oci://127.0.0.1:{port}/x failed")),
        "{err}"
    );
    let err = failure(&emu, &["pod", "load", "plain", "nowhere"]);
    assert!(err.contains("unknown remote `nowhere`"), "{err}");
    let out = emu.cli(&["--json", "pod", "load", "ghost"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("--json errors are JSON");
    assert_eq!(v["error"]["code"], "PodNotFound", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|e| e.contains("not found")),
        "{v}"
    );

    // A flipped byte in a stored layer is caught by its digest.
    let inspect = json_of(&emu.cli(&["--json", "pod", "inspect", "plain"]));
    let layer = inspect["layers"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["kind"] == "blob"))
        .expect("a blob layer");
    let hex = layer["digest"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches("sha256:");
    let path = emu.data_dir.join("pods/blobs/sha256").join(hex);
    let mut bytes = std::fs::read(&path).expect("layer file");
    bytes[0] ^= 0x01;
    std::fs::write(&path, bytes).expect("corrupt the layer");
    let fresh = Emulator::start_in(&emu.data_dir, &[], &[]);
    fresh.notes(ACCOUNT, REGION).create_notebook("mine", &[]);
    let fresh_before = dump(&fresh);
    let err = failure(&fresh, &["pod", "load", "plain", "--merge", "overwrite"]);
    assert!(
        err.contains("corrupt pod content") && err.contains(hex),
        "{err}"
    );
    assert_eq!(
        dump(&fresh),
        fresh_before,
        "a corrupt layer changes nothing"
    );

    // The right secret still works, and nothing above changed the first emulator.
    assert_eq!(dump(&emu), before, "failed loads change nothing");
    json_of(&emu.cli(&[
        "--json",
        "pod",
        "load",
        "locked",
        "--secret",
        "open sesame",
        "--merge",
        "overwrite",
    ]));
    assert!(
        !emu.notes(ACCOUNT, REGION)
            .list_notebooks()
            .contains(&"since".to_string())
    );
}

#[test]
fn dry_run_prints_additions_modifications_and_deletions_and_changes_nothing() {
    let emu = Emulator::start();
    let n = emu.notes(ACCOUNT, REGION);
    n.create_notebook("keep", &[]);
    n.create_notebook("changed", &[]);
    n.put_note("changed", "k", "after", None);
    n.create_notebook("new", &[]);
    json_of(&emu.cli(&["--json", "pod", "save", "pair"]));
    n.ok("DeleteNotebook", serde_json::json!({"NotebookName": "new"}));
    n.put_note("changed", "k", "before", None);
    n.create_notebook("gone", &[]);
    let before = dump(&emu);

    let out = emu.cli(&["pod", "load", "pair", "--dry-run", "--merge", "overwrite"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // Units, not containers: the changed note is named, its unchanged notebook is not.
    for line in [
        "+ notebook/new",
        "~ note/changed/k",
        "- notebook/gone",
        "1 to add, 1 to modify, 1 to delete",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(!text.contains("notebook/keep"), "{text}");
    assert!(!text.contains("notebook/changed\n"), "{text}");
    let v = json_of(&emu.cli(&["--json", "pod", "load", "pair", "--dry-run"]));
    let c = &v["diff"]["services"]["notes"]["scopes"][0]["collections"];
    assert_eq!(c["notebook"]["added"], serde_json::json!(["new"]));
    assert_eq!(c["note"]["modified"], serde_json::json!(["changed/k"]));
    assert_eq!(c["notebook"]["deleted"], serde_json::json!(["gone"]));
    assert_eq!(v["diff"]["by_kind"]["note"]["modified"], 1);
    assert_eq!(dump(&emu), before, "a dry run changes nothing");
}

/// A minimal static file server for `root` on a free port (the launchpad fetches from it).
fn serve_dir(root: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    return;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).map(|n| n == 0).unwrap_or(true) || h == "\r\n" {
                        break;
                    }
                }
                let path = first
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches('/')
                    .to_string();
                let mut out = stream;
                match std::fs::read(root.join(&path)) {
                    Ok(body) if !path.contains("..") => {
                        let _ = write!(
                            out,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = out.write_all(&body);
                    }
                    _ => {
                        let _ = write!(
                            out,
                            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser"].iter().find_map(|b| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(b))
                .find(|p| p.is_file())
        })
    })
}

/// Headless Chromium driven over the DevTools protocol, so that what the test does is the
/// browser's own doing: a click runs the page's event handling and the browser submits the
/// form with its own request (method, body, `Origin`). `None` when Chromium is not
/// installed (`.ci/run` installs it).
struct Browser {
    child: std::process::Child,
    ws: DevToolsSocket,
    next_id: u64,
    _profile: tempfile::TempDir,
}

/// How long the browser gets for any one step (start, page load, a request).
const BROWSER_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Browser {
    fn open(url: &str) -> Option<Browser> {
        let Some(bin) = chromium() else {
            eprintln!(
                "chromium is not installed (apt-get install -y chromium): skipping the browser check"
            );
            return None;
        };
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run chromium");
        // Chromium prints `DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID` on
        // stderr; the rest of stderr is drained so the browser never blocks on the pipe.
        let stderr = child.stderr.take().expect("chromium stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    let _ = tx.send(Ok(line[at..].trim().to_string()));
                }
                lines.push(line);
            }
            let _ = tx.send(Err(lines.join("\n")));
        });
        let browser_ws = match rx.recv_timeout(BROWSER_WAIT) {
            Ok(Ok(ws)) => ws,
            Ok(Err(stderr)) => panic!("chromium exited without a DevTools endpoint:\n{stderr}"),
            Err(e) => panic!("chromium printed no DevTools endpoint: {e}"),
        };
        let host_port = browser_ws
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("host:port")
            .to_string();
        // The blank tab is a `page` target with its own DevTools socket.
        let deadline = std::time::Instant::now() + BROWSER_WAIT;
        let page_ws = loop {
            let targets: Value = http()
                .get(format!("http://{host_port}/json/list"))
                .send()
                .and_then(|r| r.json())
                .unwrap_or(Value::Null);
            let page = targets.as_array().and_then(|ts| {
                ts.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            });
            if let Some(ws) = page {
                break ws.to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "chromium shows no page: {targets}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let ws = DevToolsSocket::connect(&page_ws).expect("connect to the page's DevTools socket");
        let mut browser = Browser {
            child,
            ws,
            next_id: 0,
            _profile: profile,
        };
        // Answered once the new document is committed, so later evaluations see it.
        let nav = browser.call("Page.navigate", serde_json::json!({ "url": url }));
        match nav {
            Ok(r) if r.get("errorText").is_none() => {}
            other => panic!("chromium cannot open {url}: {other:?}"),
        }
        Some(browser)
    }

    /// One DevTools command; `Err` carries the protocol's error object.
    fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let msg = serde_json::json!({"id": id, "method": method, "params": params});
        self.ws
            .send_text(&msg.to_string())
            .expect("send to chromium");
        loop {
            let text = self.ws.recv_text().expect("read from chromium");
            let v: Value = serde_json::from_str(&text).expect("DevTools JSON");
            // Events (no id) and answers to earlier commands are not ours.
            if v["id"] != id {
                continue;
            }
            return match v.get("error") {
                Some(e) => Err(e.clone()),
                None => Ok(v["result"].clone()),
            };
        }
    }

    /// The value of a JavaScript expression in the page; `Null` while the page has no
    /// document to evaluate in (during a navigation) or when the expression threw.
    fn eval(&mut self, expression: &str) -> Value {
        match self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expression, "returnByValue": true}),
        ) {
            Ok(r) if r.get("exceptionDetails").is_none() => r["result"]["value"].clone(),
            _ => Value::Null,
        }
    }

    /// Evaluates `expression` until `done` accepts its value; panics after [`BROWSER_WAIT`].
    fn poll(&mut self, expression: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + BROWSER_WAIT;
        loop {
            let v = self.eval(expression);
            if done(&v) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "chromium: `{expression}` is still {v}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Evaluates `expression` once the page has loaded completely.
    fn eval_when_loaded(&mut self, expression: &str) -> Value {
        self.poll("document.readyState", |v| v == "complete");
        self.eval(expression)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The page's DevTools socket (a WebSocket, through `tungstenite`): text messages out, text
/// messages in, pings answered by the library.
struct DevToolsSocket {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
}

impl DevToolsSocket {
    fn connect(url: &str) -> std::io::Result<DevToolsSocket> {
        let (ws, _) = tungstenite::connect(url).map_err(std::io::Error::other)?;
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(BROWSER_WAIT))?;
        }
        Ok(DevToolsSocket { ws })
    }

    fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        self.ws
            .send(tungstenite::Message::text(text))
            .map_err(std::io::Error::other)
    }

    fn recv_text(&mut self) -> std::io::Result<String> {
        loop {
            match self.ws.read().map_err(std::io::Error::other)? {
                tungstenite::Message::Text(t) => return Ok(t.to_string()),
                tungstenite::Message::Close(_) => {
                    return Err(std::io::Error::other("chromium closed the DevTools socket"));
                }
                _ => {}
            }
        }
    }
}

/// The value of `attr="…"` in the first tag containing `marker`.
fn attr(html: &str, marker: &str, attr: &str) -> String {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {html}"));
    let tag_end = html[at..].find('>').map(|e| at + e).unwrap_or(html.len());
    let tag_start = html[..at].rfind('<').unwrap_or(0);
    let tag = &html[tag_start..tag_end];
    let key = format!("{attr}=\"");
    let s = tag
        .find(&key)
        .unwrap_or_else(|| panic!("no {attr} in {tag}"))
        + key.len();
    let e = tag[s..].find('"').expect("closing quote") + s;
    tag[s..e].replace("&amp;", "&")
}

#[test]
fn the_launchpad_page_shows_a_pod_and_loads_it_when_its_button_is_clicked() {
    // A pod in a directory served over HTTP, as a team would publish one.
    let source = Emulator::start();
    seed(&source);
    let expected = dump(&source);
    let publish = tempfile::tempdir().expect("tempdir");
    let url_dir = format!("file://{}", publish.path().display());
    json_of(&source.cli(&[
        "--json",
        "pod",
        "save",
        "demo",
        &url_dir,
        "-m",
        "for the demo",
    ]));
    let base = serve_dir(publish.path().to_path_buf());
    let pod_url = format!("{base}/");

    let emu = Emulator::start();
    let page_url = format!(
        "{}/_cryopod/launchpad?url={}",
        emu.endpoint,
        form_encode(&pod_url)
    );
    // The page a link opens fetches nothing: it shows the URL and a button.
    let page = http().get(&page_url).send().expect("GET launchpad");
    assert_eq!(page.status().as_u16(), 200);
    let first = page.text().expect("html");
    assert!(
        first.contains(&pod_url) && first.contains("inspect-button"),
        "{first}"
    );
    assert_eq!(attr(&first, "id=\"inspect\"", "method"), "post");
    // Its button posts the URL back (same origin) and the answer shows what it holds.
    let page = http()
        .post(format!(
            "{}{}",
            emu.endpoint,
            attr(&first, "id=\"inspect\"", "action")
        ))
        .header("origin", emu.endpoint.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("url={}", form_encode(&pod_url)))
        .send()
        .expect("POST launchpad");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().expect("html");
    for text in [
        "pod demo:1",
        "for the demo",
        "notes",
        ACCOUNT,
        REGION,
        "notebook: 1",
        "note: 2",
        "Load</button>",
    ] {
        assert!(html.contains(text), "the page lacks `{text}`:\n{html}");
    }
    let action = attr(&html, "id=\"load\"", "action");
    assert!(action.starts_with("/_cryopod/pods/launch?url="), "{action}");
    assert_eq!(attr(&html, "id=\"load\"", "method"), "post");

    // In a real browser the page renders the same metadata and the button, and clicking the
    // button makes the browser itself submit the form (its own POST, with its own Origin).
    assert!(emu.notes(ACCOUNT, REGION).list_notebooks().is_empty());
    if let Some(mut browser) = Browser::open(&page_url) {
        let clicked = browser.eval_when_loaded(
            "(() => { const b = document.querySelector('#inspect-button'); \
             if (!b) return false; b.click(); return true; })()",
        );
        assert_eq!(clicked, Value::Bool(true), "no button to show the pod");
        browser.poll("document.querySelector('#load-button') !== null", |v| {
            *v == Value::Bool(true)
        });
        let dom = browser.eval_when_loaded("document.documentElement.outerHTML");
        let dom = dom.as_str().unwrap_or_default().to_string();
        assert!(
            dom.contains("pod demo:1") && dom.contains("load-button"),
            "chromium rendered:\n{dom}"
        );
        let clicked = browser.eval_when_loaded(
            "(() => { const b = document.querySelector('#load-button'); \
             if (!b) return false; b.click(); return true; })()",
        );
        assert_eq!(clicked, Value::Bool(true), "no Load button to click");
        // The click's POST loads the pod: the state changes to the pod's (or the test fails
        // after the deadline), and the browser shows the result page it was answered.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while dump(&emu) != expected {
            assert!(
                std::time::Instant::now() < deadline,
                "clicking Load in chromium did not load the pod: {}",
                dump(&emu)
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let shown = browser.poll("location.pathname + ' ' + document.body.innerText", |v| {
            v.as_str().is_some_and(|t| t.contains("Loaded"))
        });
        assert!(
            shown
                .as_str()
                .is_some_and(|t| t.starts_with("/_cryopod/pods/launch ")),
            "after the click chromium shows {shown}"
        );
    } else {
        // Without a browser, submit the form as a browser does: a same-origin urlencoded POST.
        let resp = http()
            .post(format!("{}{action}", emu.endpoint))
            .header("origin", emu.endpoint.as_str())
            .header("accept", "text/html")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("merge=overwrite")
            .send()
            .expect("submit");
        assert_eq!(resp.status().as_u16(), 200);
        let result = resp.text().expect("result page");
        assert!(result.contains(">Loaded<"), "{result}");
    }
    assert_eq!(dump(&emu), expected);

    // Another site cannot make a browser load state here.
    let forged = http()
        .post(format!("{}{action}", emu.endpoint))
        .header("origin", "http://evil.example")
        .send()
        .expect("forged submit");
    assert_eq!(forged.status().as_u16(), 403);
}

fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[test]
fn load_url_fetches_a_bundle_over_http_and_refuses_unsafe_urls() {
    let source = Emulator::start();
    seed(&source);
    let expected = dump(&source);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("seed.cryopod");
    let out = source.cli(&["state", "export", file.to_str().expect("utf8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = serve_dir(dir.path().to_path_buf());

    let emu = Emulator::start_with(&[], &[("CRYOPOD_LAUNCH_MAX_BYTES", "100000")]);
    let r = json_of(&emu.cli(&[
        "--json",
        "pod",
        "load",
        "--url",
        &format!("{base}/seed.cryopod"),
    ]));
    assert_eq!(r["kind"], "bundle");
    assert_eq!(dump(&emu), expected);

    let own = format!("{}/_cryopod/state", emu.endpoint);
    let err = failure(&emu, &["pod", "load", "--url", &own]);
    assert!(err.contains("internal API"), "{err}");
    let own_root = format!("{}/seed.cryopod", emu.endpoint);
    let err = failure(&emu, &["pod", "load", "--url", &own_root]);
    assert!(err.contains("own address"), "{err}");
    let err = failure(&emu, &["pod", "load", "--url", "file:///etc/passwd"]);
    assert!(err.contains("only http and https"), "{err}");
    std::fs::write(dir.path().join("huge.bin"), vec![0u8; 200_000]).expect("write");
    let err = failure(&emu, &["pod", "load", "--url", &format!("{base}/huge.bin")]);
    assert!(err.contains("launch limit"), "{err}");
}

fn write_init(data_dir: &Path, name: &str, content: &[u8]) {
    let dir = data_dir.join("init-pods.d");
    std::fs::create_dir_all(&dir).expect("init dir");
    std::fs::write(dir.join(name), content).expect("init file");
}

#[test]
fn auto_load_seeds_a_fresh_emulator_in_order_and_is_skipped_when_persistence_restored_state() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let maker = Emulator::start_in(&data_dir, &[], &[]);
    let n = maker.notes(ACCOUNT, REGION);
    n.create_notebook("from-pod", &[]);
    json_of(&maker.cli(&["--json", "pod", "save", "base"]));
    n.put_note("from-pod", "v2", "second version", None);
    json_of(&maker.cli(&["--json", "pod", "save", "base"]));
    let bundle = tmp.path().join("extra.cryopod");
    let other = Emulator::start();
    other
        .notes(ACCOUNT, "us-west-2")
        .create_notebook("from-bundle", &[]);
    let out = other.cli(&["state", "export", bundle.to_str().expect("utf8")]);
    assert!(out.status.success());
    drop(other);
    maker.stop();
    write_init(
        &data_dir,
        "20-bundle.cryopod",
        &std::fs::read(&bundle).expect("bundle"),
    );
    write_init(&data_dir, "10-pods.txt", b"# seed data\nbase:1\n");

    let envs = [("AUTO_LOAD_POD", "base:2")];
    let emu = Emulator::start_in(&data_dir, &["--persistence"], &envs);
    assert!(
        emu.banner.iter().any(|l| l.contains("auto-loaded")),
        "{:?}",
        emu.banner
    );
    // AUTO_LOAD_POD first (base:2), then the init files by name: base:1, then the bundle.
    // account-region-merge: base:1 replaced base:2's scope, the bundle added its own region.
    assert_eq!(
        emu.notes(ACCOUNT, REGION).list_notes("from-pod"),
        Vec::<String>::new()
    );
    assert_eq!(
        emu.notes(ACCOUNT, "us-west-2").list_notebooks(),
        vec!["from-bundle"]
    );
    emu.notes(ACCOUNT, REGION).create_notebook("mine", &[]);
    let state = dump(&emu);
    let emu = emu.restart();
    assert!(
        emu.banner.iter().any(|l| l.contains("skipped")),
        "{:?}",
        emu.banner
    );
    assert_eq!(dump(&emu), state, "the restored state wins over auto-load");
}
