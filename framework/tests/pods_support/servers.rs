//! Real third-party servers for the pod remote tests, started on free 127.0.0.1 ports:
//! - `moto_server` (PyPI `moto[server]`) as S3-compatible object storage;
//! - Debian's `docker-registry` (the CNCF distribution registry) as an OCI registry.
//!
//! Both are required: a missing binary fails the test with the command that installs it
//! (`.ci/run` installs both). Shared by the framework's pod tests and, through `#[path]`, by
//! the end-to-end `tests/tests/pods.rs`. Plain `std` plus `tempfile`, so it works in both.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One plain HTTP/1.1 request; returns the status code, or `None` when nothing answers.
pub fn http(method: &str, port: u16, path: &str) -> Option<u16> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 32];
    let n = s.read(&mut head).ok()?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

fn find(binary: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(binary);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    fallbacks.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn wait_ready(child: &mut Child, what: &str, port: u16, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(code) = http("GET", port, path)
            && code < 500
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before it was ready: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not answer on 127.0.0.1:{port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `moto_server`. Killed when dropped.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The port.
    pub port: u16,
}

impl Moto {
    /// Starts moto on a free port.
    pub fn start() -> Moto {
        let bin = find("moto_server", &[]).unwrap_or_else(|| {
            panic!("moto_server is not on PATH: install it with `pip install 'moto[server]'` (the S3 remote tests need a real S3-compatible server)")
        });
        let port = free_port();
        let mut child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        wait_ready(&mut child, "moto_server", port, "/");
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    /// Creates a bucket (moto accepts unsigned requests).
    pub fn create_bucket(&self, bucket: &str) {
        let code = http("PUT", self.port, &format!("/{bucket}"));
        assert_eq!(code, Some(200), "creating bucket {bucket} in moto");
    }

    /// An `s3://` URL for `bucket/prefix` on this server.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!("s3://{bucket}/{prefix}?endpoint={}", self.endpoint)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running Docker/CNCF distribution registry with filesystem storage in a temp dir.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The port.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts `docker-registry serve CONFIG` on a free port, deletes enabled.
    pub fn start() -> Registry {
        let bin = find("docker-registry", &["/usr/bin/docker-registry"]).unwrap_or_else(|| {
            panic!("docker-registry is not installed: `apt-get install -y docker-registry` (the OCI remote tests need a real registry)")
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("storage dir");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .expect("registry config");
        let mut child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        wait_ready(&mut child, "docker-registry", port, "/v2/");
        Registry {
            child,
            host: format!("127.0.0.1:{port}"),
            port,
            _dir: dir,
        }
    }

    /// An `oci://` URL for `namespace` on this registry.
    pub fn url(&self, namespace: &str) -> String {
        format!("oci://{}/{namespace}", self.host)
    }

    /// The registry's storage directory.
    pub fn storage(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic pseudo-random bytes (xorshift), incompressible like real media.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
