//! Test support: start the real `cryopod` binary, point the official AWS SDK clients at it,
//! and run the real CLI against it.
//!
//! Every test starts its own emulator on a free loopback port (`--listen 127.0.0.1:0`), with
//! its own data directory, so tests run in parallel without sharing state.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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
            .env_remove("SERVICES")
            .env_remove("PERSISTENCE")
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in &envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn cryopod serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut banner = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let endpoint = loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).expect("read emulator stdout");
            if n == 0 {
                let status = child.wait().ok();
                panic!("emulator exited before it was ready ({status:?}); it printed: {banner:#?}");
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
        }
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
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
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

/// Runs the CLI binary with `--endpoint`.
pub fn cli(endpoint: &str, args: &[&str]) -> Output {
    Command::new(binary())
        .arg("--endpoint")
        .arg(endpoint)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run cryopod CLI")
}

/// Runs the CLI binary without an endpoint (offline commands).
pub fn cli_offline(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run cryopod CLI")
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
    assert!(out.status.success(), "export failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut args = vec!["state", "import", file_s];
    args.extend_from_slice(extra_import_args);
    let out = to.cli(&args);
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
}
