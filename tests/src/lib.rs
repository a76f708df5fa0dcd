//! Test support: start the real `cryopod` binary, point the official AWS SDK clients at it,
//! and run the real CLI against it.
//!
//! Every test starts its own emulator on a free loopback port (`--listen 127.0.0.1:0`), with
//! its own data directory, so tests run in parallel without sharing state.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_smithy_http_client::Builder as HttpClientBuilder;
use aws_types::region::Region;

/// Path of the `cryopod` binary built by `cargo test --workspace` (or `CRYOPOD_BIN`).
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("CRYOPOD_BIN") {
        return PathBuf::from(p);
    }
    // target/debug/deps/<test-exe> → target/debug/cryopod
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = dir.join("cryopod");
    assert!(
        bin.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` (which builds the emulator) or build it with `cargo build -p cryopod-emulator`",
        bin.display()
    );
    bin
}

/// A running emulator process. Killed when dropped.
pub struct Emulator {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The data directory (kept until the emulator value and the dir are dropped).
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// Lines the emulator printed on stdout before it reported ready.
    pub banner: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

/// Settings the emulator reads from the environment; removed from every process the tests
/// start so that the developer's shell cannot change what a test means.
const CONFIG_ENV: &[&str] = &[
    "SERVICES",
    "PERSISTENCE",
    "DATA_DIR",
    "SNAPSHOT_SAVE_STRATEGY",
    "SNAPSHOT_LOAD_STRATEGY",
    "SNAPSHOT_FLUSH_INTERVAL",
    "ON_CORRUPT",
    "CRYOPOD_LISTEN",
    "CRYOPOD_ENDPOINT",
    "CRYOPOD_FAILPOINT",
];

/// Copies `from` into `sink` line by line (and on to the test's stderr, so the emulator's
/// log still shows up with a failing test).
fn collect_lines(from: impl Read + Send + 'static, sink: Arc<Mutex<String>>, echo: bool) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if echo {
                eprint!("{line}");
            }
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&line);
            line.clear();
        }
    });
}

impl Emulator {
    /// An emulator with default settings, all services, a fresh temp data dir.
    pub fn start() -> Emulator {
        Self::start_with(&[], &[])
    }

    /// An emulator with extra `serve` arguments and environment variables.
    pub fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Emulator {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        Self::spawn(
            data_dir,
            Some(tmp),
            args.iter().map(|s| s.to_string()).collect(),
            envs.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            "127.0.0.1:0",
        )
    }

    /// An emulator on an existing data dir (persistence tests restart on the same dir).
    pub fn start_in(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Emulator {
        Self::spawn(
            data_dir.to_path_buf(),
            None,
            args.iter().map(|s| s.to_string()).collect(),
            envs.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            "127.0.0.1:0",
        )
    }

    fn spawn(
        data_dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
        args: Vec<String>,
        envs: Vec<(String, String)>,
        listen: &str,
    ) -> Emulator {
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for k in CONFIG_ENV {
            cmd.env_remove(k);
        }
        for (k, v) in &envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn cryopod serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        collect_lines(child.stderr.take().expect("stderr"), stderr.clone(), true);
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut banner = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let endpoint = loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).expect("read emulator stdout");
            if n == 0 {
                let status = child.wait().ok();
                // Let the stderr collector catch up with the last lines.
                std::thread::sleep(Duration::from_millis(50));
                let err = stderr.lock().map(|s| s.clone()).unwrap_or_default();
                panic!(
                    "emulator exited before it was ready ({status:?}); it printed: {banner:#?}\nstderr:\n{err}"
                );
            }
            let line = line.trim_end().to_string();
            if let Some(rest) = line.strip_prefix("cryopod ready on ") {
                break rest.trim().to_string();
            }
            banner.push(line);
            assert!(Instant::now() < deadline, "emulator did not become ready");
        };
        // Keep draining stdout so the emulator never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        Emulator {
            child: Some(child),
            endpoint,
            data_dir,
            _tmp: tmp,
            args,
            envs,
            banner,
            stderr,
        }
    }

    /// Everything the emulator wrote on stderr so far (log and warnings).
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Runs the CLI against this emulator: `cryopod --endpoint E <args>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.endpoint, args)
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status code.
    pub fn stop(mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        signal(&child, "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("emulator did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to save anything.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL (no chance to save anything), then a new emulator on the same data dir with the
    /// same arguments: a crash and a restart.
    pub fn kill_and_restart(mut self) -> Emulator {
        let tmp = self._tmp.take();
        let data_dir = self.data_dir.clone();
        let args = std::mem::take(&mut self.args);
        let envs = std::mem::take(&mut self.envs);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Self::spawn(data_dir, tmp, args, envs, "127.0.0.1:0")
    }

    /// Stops this emulator (SIGTERM) and starts a new one on the same data dir with the same
    /// arguments.
    pub fn restart(mut self) -> Emulator {
        let tmp = self._tmp.take();
        let data_dir = self.data_dir.clone();
        let args = std::mem::take(&mut self.args);
        let envs = std::mem::take(&mut self.envs);
        self.stop();
        Self::spawn(data_dir, tmp, args, envs, "127.0.0.1:0")
    }

    /// GET a JSON document from the internal API.
    pub fn api_get(&self, path: &str) -> serde_json::Value {
        let resp = reqwest::blocking::get(format!("{}{path}", self.endpoint)).expect("GET");
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().expect("json")
    }

    /// Resource counts by service from `/_cryopod/state/summary`.
    pub fn summary(&self) -> serde_json::Value {
        self.api_get("/_cryopod/state/summary")
    }

    /// The `/_cryopod/health` document.
    pub fn health(&self) -> serde_json::Value {
        self.api_get("/_cryopod/health")
    }

    /// POST to the internal API; returns the status and the JSON answer (errors included).
    pub fn api_post(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = http()
            .post(format!("{}{path}", self.endpoint))
            .send()
            .expect("POST");
        let status = resp.status().as_u16();
        let text = resp.text().expect("body");
        let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, v)
    }

    /// A `notes` client in `account` / `region`.
    pub fn notes(&self, account: &str, region: &str) -> Notes {
        Notes::new(&self.endpoint, account, region)
    }
}

impl Drop for Emulator {
    /// Stops the emulator as a user would (SIGTERM), so it removes its temporary blob
    /// store; killed outright, every test would leave one in the temp directory (a CI run
    /// left hundreds). SIGKILL after 10 s, for an emulator that hangs.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status();
}

/// Starts `cryopod serve <args>` expecting it to refuse to start, and returns what it
/// printed. `--listen 127.0.0.1:0` and a fresh `--data-dir` are added unless `args` (or, for
/// the address, `CRYOPOD_LISTEN` in `envs`) give them.
/// Panics if the emulator reports ready instead (it is killed first).
pub fn serve_refused(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(binary());
    cmd.arg("serve");
    if !args.contains(&"--listen") && !envs.iter().any(|(k, _)| *k == "CRYOPOD_LISTEN") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    if !args.contains(&"--data-dir") {
        cmd.arg("--data-dir").arg(tmp.path().join("data"));
    }
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in CONFIG_ENV {
        cmd.env_remove(k);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn cryopod serve");
    let out = Arc::new(Mutex::new(String::new()));
    let err = Arc::new(Mutex::new(String::new()));
    let out_done = {
        let (out, stdout) = (out.clone(), child.stdout.take().expect("stdout"));
        std::thread::spawn(move || collect_all(stdout, &out))
    };
    let err_done = {
        let (err, stderr) = (err.clone(), child.stderr.take().expect("stderr"));
        std::thread::spawn(move || collect_all(stderr, &err))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status: ExitStatus = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        let started = out
            .lock()
            .map(|s| s.contains("cryopod ready on"))
            .unwrap_or(false);
        if started || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let printed = out.lock().map(|s| s.clone()).unwrap_or_default();
            panic!(
                "`cryopod serve {args:?}` started (or hung) instead of refusing; it printed:\n{printed}"
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = out_done.join();
    let _ = err_done.join();
    let take =
        |m: &Arc<Mutex<String>>| m.lock().map(|s| s.clone().into_bytes()).unwrap_or_default();
    Output {
        status,
        stdout: take(&out),
        stderr: take(&err),
    }
}

fn collect_all(mut from: impl Read, into: &Mutex<String>) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        if let Ok(mut s) = into.lock() {
            s.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
}

/// Polls `probe` every 20 ms until it returns `Some`, or panics naming `what` after `limit`.
pub fn eventually<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A blocking HTTP client without a request timeout (exports of big states stream for long).
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .expect("http client")
}

/// Calls an operation of an AWS JSON-protocol service (`X-Amz-Target: {target}`) with a
/// SigV4-shaped credential for `service` in `account` / `region`; returns the HTTP status and
/// the JSON answer.
pub fn aws_json(
    endpoint: &str,
    (account, region): (&str, &str),
    service: &str,
    target: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let resp = http()
        .post(format!("{}/", endpoint.trim_end_matches('/')))
        .header("x-amz-target", target)
        .header("content-type", "application/x-amz-json-1.0")
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={account}/20240101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=x"
            ),
        )
        .body(body.to_string())
        .send()
        .unwrap_or_else(|e| panic!("{target}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().expect("body");
    let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, v)
}

/// The services linked into the `cryopod` binary, as its health document lists them. Tests
/// that need a second service use one when the build links it.
pub fn linked_services() -> Vec<String> {
    static LINKED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    LINKED
        .get_or_init(|| {
            let emu = Emulator::start_with(&["--services", "notes"], &[]);
            let health = emu.health();
            health["linked"]
                .as_array()
                .expect("health lists the linked services")
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .clone()
}

/// A raw-HTTP client of the example `notes` service (`X-Amz-Target: Notes.<Op>`), scoped by a
/// SigV4-shaped `Authorization` header. The AWS-service plugins are tested with the official
/// SDKs; `notes` is always linked, so persistence and CLI tests use it.
pub struct Notes {
    url: String,
    auth: String,
    http: reqwest::blocking::Client,
}

impl Notes {
    /// A client for `endpoint` acting as `account` (12 digits, or anything for the default
    /// account) in `region`.
    pub fn new(endpoint: &str, account: &str, region: &str) -> Notes {
        Notes {
            url: format!("{}/", endpoint.trim_end_matches('/')),
            auth: format!(
                "AWS4-HMAC-SHA256 Credential={account}/20240101/{region}/notes/aws4_request, SignedHeaders=host, Signature=x"
            ),
            http: http(),
        }
    }

    /// Calls `op` with a JSON body given as text; returns the HTTP status and the JSON answer.
    pub fn call_text(&self, op: &str, body: String) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(&self.url)
            .header("x-amz-target", format!("Notes.{op}"))
            .header("content-type", "application/x-amz-json-1.0")
            .header("authorization", &self.auth)
            .body(body)
            .send()
            .unwrap_or_else(|e| panic!("Notes.{op}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().expect("body");
        let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, v)
    }

    /// Calls `op`; returns the HTTP status and the JSON answer.
    pub fn call(&self, op: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call_text(op, body.to_string())
    }

    /// Calls `op` and panics unless it succeeds.
    pub fn ok(&self, op: &str, body: serde_json::Value) -> serde_json::Value {
        let (status, v) = self.call(op, body);
        assert!(
            (200..300).contains(&status),
            "Notes.{op} answered {status}: {v}"
        );
        v
    }

    /// Creates a notebook with tags.
    pub fn create_notebook(&self, name: &str, tags: &[(&str, &str)]) {
        let tags: serde_json::Map<String, serde_json::Value> = tags
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        self.ok(
            "CreateNotebook",
            serde_json::json!({ "NotebookName": name, "Tags": tags }),
        );
    }

    /// Creates or replaces a note; returns its new revision.
    pub fn put_note(
        &self,
        notebook: &str,
        key: &str,
        text: &str,
        attachment: Option<&[u8]>,
    ) -> u64 {
        let mut body = serde_json::json!({ "NotebookName": notebook, "Key": key, "Text": text });
        if let Some(a) = attachment {
            body["Attachment"] = base64(a).into();
        }
        self.ok("PutNote", body)["Revision"]
            .as_u64()
            .expect("PutNote answers a Revision")
    }

    /// Reads a note: `{"Text", "Revision", "Attachment" (base64, when there is one)}`.
    pub fn get_note(&self, notebook: &str, key: &str) -> serde_json::Value {
        self.ok(
            "GetNote",
            serde_json::json!({ "NotebookName": notebook, "Key": key }),
        )
    }

    /// Notebook names.
    pub fn list_notebooks(&self) -> Vec<String> {
        strings(&self.ok("ListNotebooks", serde_json::json!({}))["NotebookNames"])
    }

    /// Note keys of a notebook.
    pub fn list_notes(&self, notebook: &str) -> Vec<String> {
        strings(&self.ok("ListNotes", serde_json::json!({ "NotebookName": notebook }))["Keys"])
    }

    /// Everything this scope holds, as the API shows it: notebook → key → GetNote answer.
    pub fn dump(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for nb in self.list_notebooks() {
            let mut notes = serde_json::Map::new();
            for key in self.list_notes(&nb) {
                notes.insert(key.clone(), self.get_note(&nb, &key));
            }
            out.insert(nb, notes.into());
        }
        out.into()
    }
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Standard base64 with padding (the encoding of `Attachment`).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63]);
        out.push(ALPHABET[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63]
        } else {
            b'='
        });
    }
    String::from_utf8(out).expect("base64 is ASCII")
}

/// `len` pseudo-random bytes from `seed` (splitmix64): incompressible, reproducible test data.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Parses the RFC 3339 UTC timestamps the emulator reports (`2026-01-01T12:00:00.123Z`).
pub fn parse_utc(ts: &str) -> SystemTime {
    fn bad(ts: &str) -> ! {
        panic!("not an RFC 3339 UTC time: {ts}")
    }
    let num = |s: &str| s.parse::<i64>().unwrap_or_else(|_| bad(ts));
    let (date, rest) = ts.split_once('T').unwrap_or_else(|| bad(ts));
    let rest = rest.strip_suffix('Z').unwrap_or_else(|| bad(ts));
    let (hms, frac) = rest.split_once('.').unwrap_or((rest, "0"));
    let d: Vec<i64> = date.split('-').map(num).collect();
    let t: Vec<i64> = hms.split(':').map(num).collect();
    if d.len() != 3 || t.len() != 3 || frac.len() > 9 {
        bad(ts);
    }
    // Days since the epoch from the civil date (Howard Hinnant's algorithm).
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    let nanos: u32 = format!("{frac:0<9}").parse().unwrap_or_else(|_| bad(ts));
    let secs = u64::try_from(secs).unwrap_or_else(|_| bad(ts));
    SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
}

/// Flips one bit of a file in place.
pub fn flip_bit(path: &Path, offset: u64, bit: u8) {
    let mut bytes = std::fs::read(path).expect("read file to damage");
    let i = usize::try_from(offset).expect("offset");
    bytes[i] ^= 1 << bit;
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&bytes))
        .expect("write damaged file");
}

/// Runs the CLI binary with `--endpoint`.
pub fn cli(endpoint: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.arg("--endpoint")
        .arg(endpoint)
        .args(args)
        .stdin(Stdio::null());
    for k in CONFIG_ENV {
        cmd.env_remove(k);
    }
    cmd.output().expect("run cryopod CLI")
}

/// Runs the CLI binary without an endpoint (offline commands).
pub fn cli_offline(args: &[&str]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args).stdin(Stdio::null());
    for k in CONFIG_ENV {
        cmd.env_remove(k);
    }
    cmd.output().expect("run cryopod CLI")
}

/// The JSON a successful CLI command printed on stdout; panics with its output otherwise.
#[track_caller]
pub fn json_of(out: &Output) -> serde_json::Value {
    assert_success(out, "the CLI");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Panics, naming `what` and showing both streams, unless the command succeeded.
#[track_caller]
pub fn assert_success(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The smallest valid zip archive (an empty one: only the end-of-central-directory record),
/// for Lambda functions whose code no test runs.
pub fn empty_zip() -> Vec<u8> {
    let mut z = b"PK\x05\x06".to_vec();
    z.extend_from_slice(&[0; 18]);
    z
}

/// Credentials whose access key id is `account` when it is 12 digits (the emulator maps the
/// key id to the account), `test` otherwise.
pub fn credentials(account: &str) -> Credentials {
    Credentials::new(account, "secret", None, None, "cryopod-tests")
}

/// One shared plain-HTTP client for all SDKs (no TLS stack needed on loopback).
pub fn http_client() -> aws_smithy_runtime_api_client::SharedHttpClient {
    HttpClientBuilder::new().build_http()
}

#[doc(hidden)]
pub mod aws_smithy_runtime_api_client {
    pub use aws_sdk_s3::config::SharedHttpClient;
}

/// An S3 client for `endpoint`, path-style, in `region` as `account`.
pub fn s3(endpoint: &str, region: &str, account: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(credentials(account))
        .http_client(http_client())
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// An SQS client.
pub fn sqs(endpoint: &str, region: &str, account: &str) -> aws_sdk_sqs::Client {
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version_latest()
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(credentials(account))
        .http_client(http_client())
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

/// A DynamoDB client.
pub fn dynamodb(endpoint: &str, region: &str, account: &str) -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version_latest()
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(credentials(account))
        .http_client(http_client())
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

/// A Lambda client.
pub fn lambda(endpoint: &str, region: &str, account: &str) -> aws_sdk_lambda::Client {
    let conf = aws_sdk_lambda::Config::builder()
        .behavior_version_latest()
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(credentials(account))
        .http_client(http_client())
        .build();
    aws_sdk_lambda::Client::from_conf(conf)
}

/// Exports the whole state of `from` into a temp file through the CLI and imports it into
/// `to`; panics with the CLI's stderr if either step fails.
pub fn transfer(from: &Emulator, to: &Emulator, extra_import_args: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("state.cryopod");
    let file_s = file.to_str().expect("utf8 path");
    let out = from.cli(&["state", "export", file_s]);
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut args = vec!["state", "import", file_s];
    args.extend_from_slice(extra_import_args);
    let out = to.cli(&args);
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn utc_timestamps_parse_to_the_right_instant() {
        let at = |s: u64, n: u32| SystemTime::UNIX_EPOCH + Duration::new(s, n);
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), at(0, 0));
        assert_eq!(parse_utc("2024-03-01T00:00:00Z"), at(1_709_251_200, 0));
        assert_eq!(
            parse_utc("2026-11-28T19:22:47.924285437Z"),
            at(1_795_893_767, 924_285_437)
        );
        assert_eq!(
            parse_utc("2000-02-29T23:59:59.5Z"),
            at(951_868_799, 500_000_000)
        );
    }
}
