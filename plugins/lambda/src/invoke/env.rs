//! One execution environment: a working directory with the function's code and layers
//! unpacked from the blob store, a runtime process started in its own process group, the
//! Runtime API it talks to, and a bounded buffer of what it printed.
//!
//! Layout of the directory (AWS's paths in brackets; `/opt` and `/var/task` are not writable
//! on a developer's machine, so the environment variables point at these instead):
//! `task/` [`/var/task`, `LAMBDA_TASK_ROOT`], `opt/` [`/opt`: layers, in order],
//! `runtime/` [`/var/runtime`: cryopod's runtime clients], `tmp/` [`/tmp`, `TMPDIR`].

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cryopod::{BlobStore, Scope};
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::runtime_api::{self, Job, Mailbox};
use super::unzip::{self, UnzipError};
use crate::state::{CodeRef, FunctionConfig};

/// The Python runtime client, written into `runtime/` of each Python environment.
const PYTHON_RUNTIME: &str = include_str!("bootstrap/runtime.py");
/// The Node.js runtime client, written into `runtime/` of each Node.js environment.
const NODE_RUNTIME: &str = include_str!("bootstrap/runtime.js");

/// Bytes of output kept per environment: enough for `LogType=Tail` (4 KB) of a chatty
/// invocation, small enough that a function printing in a loop costs no memory.
const LOG_KEEP: usize = 64 * 1024;
/// Longest line traced on its own; longer output is traced in pieces.
const LINE_MAX: u64 = 16 * 1024;

/// Why an environment could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A runtime cryopod does not run as a local process (Java, .NET, Ruby, images).
    #[error(
        "The runtime {0} cannot run in this emulator: cryopod runs python3.x, nodejs* and provided.al2/provided.al2023 functions as local processes"
    )]
    UnsupportedRuntime(String),
    /// The runtime's interpreter is not installed.
    #[error(
        "The runtime {runtime} needs the executable {exe}, which is not on this machine's PATH; install it (Debian: apt-get install {package}) and invoke again"
    )]
    MissingExecutable {
        /// The function's runtime.
        runtime: String,
        /// The executable looked for.
        exe: String,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// The function runs on another CPU architecture than this machine.
    #[error(
        "The function's architecture is {function} but this machine is {host}: cryopod runs functions as local processes, so it can only run {host} functions here"
    )]
    Architecture {
        /// The function's architecture.
        function: String,
        /// This machine's architecture in Lambda's terms.
        host: &'static str,
    },
    /// The package or a layer could not be unpacked.
    #[error(transparent)]
    Unzip(#[from] UnzipError),
    /// The environment's files or process could not be set up.
    #[error("starting the execution environment failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Lambda's name for this machine's architecture.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    }
}

/// Everything needed to start an environment for one function version.
pub struct Spec {
    /// The function's scope (account and region for `AWS_REGION` and the credentials).
    pub scope: Scope,
    /// The function name.
    pub name: String,
    /// `$LATEST` or a version number.
    pub version: String,
    /// The version's configuration.
    pub config: FunctionConfig,
    /// The layers' packages, in the function's order.
    pub layers: Vec<CodeRef>,
    /// The emulator's endpoint, for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
}

/// The program that starts a runtime.
enum Launcher {
    /// An interpreter running one of cryopod's runtime clients.
    Client {
        exe: PathBuf,
        file: &'static str,
        text: &'static str,
    },
    /// A `provided` runtime: the package's (or a layer's) own `bootstrap`.
    Bootstrap,
}

fn find_exe(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in names {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The real interpreter for a Python runtime: `python3.N` if it runs, else `python3`,
/// resolved through `sys.executable`. Why resolve: version managers (pyenv, asdf) put shims
/// on PATH that are scripts needing the user's environment, which a function's cleared
/// environment lacks, and a shim for a version that is not installed fails only when run.
/// Cached per runtime: it costs one interpreter start.
fn python(exact: &str) -> Option<PathBuf> {
    static FOUND: std::sync::OnceLock<Mutex<std::collections::HashMap<String, Option<PathBuf>>>> =
        std::sync::OnceLock::new();
    let cache = FOUND.get_or_init(Default::default);
    if let Some(hit) = cache.lock().get(exact) {
        return hit.clone();
    }
    let found = [exact, "python3"].iter().find_map(|name| {
        let exe = find_exe(&[name])?;
        let out = std::process::Command::new(&exe)
            .args(["-c", "import sys; print(sys.executable)"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let real = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !real.is_empty()).then(|| PathBuf::from(real))
    });
    cache.lock().insert(exact.to_string(), found.clone());
    found
}

/// Checks, before anything is unpacked, that this machine can run `config` at all.
fn launcher(config: &FunctionConfig) -> Result<Launcher, EnvError> {
    let runtime = config.runtime.clone().unwrap_or_else(|| "an image".into());
    if let Some(arch) = config.architectures.front()
        && arch != host_architecture()
    {
        return Err(EnvError::Architecture {
            function: arch.clone(),
            host: host_architecture(),
        });
    }
    if let Some(minor) = runtime.strip_prefix("python3.") {
        let exe =
            python(&format!("python3.{minor}")).ok_or_else(|| EnvError::MissingExecutable {
                runtime: runtime.clone(),
                exe: "python3".into(),
                package: "python3",
            })?;
        return Ok(Launcher::Client {
            exe,
            file: "runtime.py",
            text: PYTHON_RUNTIME,
        });
    }
    if runtime.starts_with("nodejs") {
        let exe = find_exe(&["node", "nodejs"]).ok_or_else(|| EnvError::MissingExecutable {
            runtime: runtime.clone(),
            exe: "node".into(),
            package: "nodejs",
        })?;
        return Ok(Launcher::Client {
            exe,
            file: "runtime.js",
            text: NODE_RUNTIME,
        });
    }
    if runtime.starts_with("provided") {
        return Ok(Launcher::Bootstrap);
    }
    Err(EnvError::UnsupportedRuntime(runtime))
}

/// Checks that `config` can run here without starting anything (`DryRun`, async invokes).
pub fn check_runnable(config: &FunctionConfig) -> Result<(), EnvError> {
    launcher(config).map(|_| ())
}

/// The last [`LOG_KEEP`] bytes an environment printed, and how many it printed in all.
#[derive(Default)]
pub struct LogBuf {
    inner: Mutex<(VecDeque<u8>, u64)>,
}

impl LogBuf {
    /// Appends output.
    pub fn push(&self, bytes: &[u8]) {
        let mut g = self.inner.lock();
        let (buf, total) = &mut *g;
        buf.extend(bytes);
        let excess = buf.len().saturating_sub(LOG_KEEP);
        buf.drain(..excess);
        *total += bytes.len() as u64;
    }

    /// Bytes printed so far.
    pub fn total(&self) -> u64 {
        self.inner.lock().1
    }

    /// What was printed since `mark` (a [`LogBuf::total`]), as far as it is still kept.
    pub fn since(&self, mark: u64) -> Vec<u8> {
        let g = self.inner.lock();
        let (buf, total) = &*g;
        let n = (total.saturating_sub(mark) as usize).min(buf.len());
        buf.iter().skip(buf.len() - n).copied().collect()
    }
}

/// A running execution environment. Dropping it kills its process group and removes its
/// directory.
pub struct Env {
    /// A short id for logs (`AWS_LAMBDA_LOG_STREAM_NAME`'s tail).
    pub id: String,
    jobs: mpsc::Sender<Job>,
    mailbox: Arc<Mailbox>,
    /// What the process printed.
    pub logs: Arc<LogBuf>,
    exited: watch::Receiver<Option<String>>,
    stop: CancellationToken,
    initialised: AtomicBool,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Env {
    /// Hands `job` to the runtime; fails when the environment is gone.
    pub async fn send(&self, job: Job) -> bool {
        self.jobs.send(job).await.is_ok()
    }

    /// Whether the runtime process has exited.
    pub fn is_dead(&self) -> bool {
        self.exited.borrow().is_some() || self.stop.is_cancelled()
    }

    /// Waits for the process to exit and returns how it ended.
    pub async fn exited(&self) -> String {
        let mut rx = self.exited.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or_default(),
            Err(_) => "environment stopped".into(),
        }
    }

    /// What the runtime reported through `/init/error`, if anything.
    pub fn init_error(&self) -> Option<bytes::Bytes> {
        self.mailbox.init_error()
    }

    /// Marks the first invocation taken; returns whether this was the first.
    pub fn mark_initialised(&self) -> bool {
        !self.initialised.swap(true, Ordering::SeqCst)
    }

    /// Kills the process group now.
    pub fn kill(&self) {
        self.stop.cancel();
    }
}

fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

fn unpack(blobs: &BlobStore, code: &CodeRef, into: &Path) -> Result<(), EnvError> {
    let mut f = blobs.open_blob(&code.digest)?;
    unzip::extract(&mut f, into)?;
    Ok(())
}

/// The search paths AWS's runtimes put layers on, under this environment's `opt/`.
fn layer_paths(runtime: &str, opt: &Path, task: &Path) -> Vec<(&'static str, String)> {
    let join = |ps: Vec<PathBuf>| {
        std::env::join_paths(ps)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if let Some(minor) = runtime.strip_prefix("python3.") {
        let site = opt
            .join("python/lib")
            .join(format!("python3.{minor}"))
            .join("site-packages");
        return vec![(
            "PYTHONPATH",
            join(vec![task.to_path_buf(), opt.join("python"), site]),
        )];
    }
    if let Some(v) = runtime.strip_prefix("nodejs") {
        let major: String = v.chars().take_while(char::is_ascii_digit).collect();
        return vec![(
            "NODE_PATH",
            join(vec![
                opt.join(format!("nodejs/node{major}/node_modules")),
                opt.join("nodejs/node_modules"),
                task.to_path_buf(),
            ]),
        )];
    }
    Vec::new()
}

fn environment(spec: &Spec, dir: &Path, api: &str, env_id: &str) -> Vec<(String, String)> {
    let (task, opt, tmp) = (dir.join("task"), dir.join("opt"), dir.join("tmp"));
    let c = &spec.config;
    let runtime = c.runtime.clone().unwrap_or_default();
    let host_path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    let path = format!("{}:{}", opt.join("bin").display(), host_path);
    let stream = format!(
        "{}/[{}]{env_id}",
        time::OffsetDateTime::now_utc().date(),
        spec.version
    );
    let mut v: Vec<(String, String)> = vec![
        ("PATH", path),
        ("LANG", "en_US.UTF-8".into()),
        ("TZ", ":UTC".into()),
        ("HOME", tmp.display().to_string()),
        ("TMPDIR", tmp.display().to_string()),
        ("PYTHONUNBUFFERED", "1".into()),
        ("LD_LIBRARY_PATH", opt.join("lib").display().to_string()),
        ("_HANDLER", c.handler.clone().unwrap_or_default()),
        ("LAMBDA_TASK_ROOT", task.display().to_string()),
        (
            "LAMBDA_RUNTIME_DIR",
            dir.join("runtime").display().to_string(),
        ),
        ("AWS_LAMBDA_RUNTIME_API", api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", spec.name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", spec.version.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", c.memory_size.to_string()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", c.logging.log_group.clone()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_EXECUTION_ENV", format!("AWS_Lambda_{runtime}")),
        ("AWS_REGION", spec.scope.region.clone()),
        ("AWS_DEFAULT_REGION", spec.scope.region.clone()),
        // The emulator takes the account from the access key id, so the function's own
        // calls land in its own account.
        ("AWS_ACCESS_KEY_ID", spec.scope.account.clone()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_ENDPOINT_URL", spec.endpoint.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    v.extend(
        layer_paths(&runtime, &opt, &task)
            .into_iter()
            .map(|(k, p)| (k.to_string(), p)),
    );
    if let Some(vars) = &c.environment {
        v.extend(vars.iter().map(|(k, x)| (k.clone(), x.clone())));
    }
    v
}

/// Copies a pipe into `logs`, tracing each line.
fn capture(pipe: impl AsyncRead + Unpin + Send + 'static, logs: Arc<LogBuf>, name: String) {
    tokio::spawn(async move {
        let mut r = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut r).take(LINE_MAX).read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    logs.push(&line);
                    tracing::debug!(target: "cryopod_lambda::function", function = %name, "{}", String::from_utf8_lossy(&line).trim_end());
                }
            }
        }
    });
}

/// Kills every process of the group `pid` leads (the runtime and anything it started).
fn kill_group(pid: u32) {
    let Ok(pgid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory.
    let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
    if rc != 0 {
        tracing::debug!(pgid, "process group already gone");
    }
}

/// Starts an environment: unpacks code and layers, starts the Runtime API and the runtime.
pub async fn start(spec: Spec, blobs: BlobStore) -> Result<Env, EnvError> {
    let launch = launcher(&spec.config)?;
    let dir = tempfile::Builder::new()
        .prefix("cryopod-lambda-")
        .tempdir()?;
    let root = dir.path().to_path_buf();
    let code = spec.config.code;
    let layers = spec.layers.clone();
    let client = match &launch {
        Launcher::Client { file, text, .. } => Some((*file, *text)),
        Launcher::Bootstrap => None,
    };
    let bootstrap = tokio::task::spawn_blocking(move || -> Result<Option<PathBuf>, EnvError> {
        for d in ["task", "opt", "runtime", "tmp"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        for l in &layers {
            unpack(&blobs, l, &root.join("opt"))?;
        }
        if let Some(c) = code {
            unpack(&blobs, &c, &root.join("task"))?;
        }
        if let Some((file, text)) = client {
            write_file(&root.join("runtime").join(file), text)?;
        }
        // `provided`: the package's bootstrap, else a layer's (AWS looks in that order).
        Ok(["task/bootstrap", "opt/bootstrap"]
            .iter()
            .map(|p| root.join(p))
            .find(|p| p.is_file()))
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))??;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = listener.local_addr()?.to_string();
    let (jobs, rx) = mpsc::channel(1);
    let mailbox = Mailbox::new(rx);
    let stop = CancellationToken::new();
    runtime_api::serve(listener, mailbox.clone(), stop.clone());

    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut cmd = match &launch {
        Launcher::Client { exe, file, .. } => {
            let mut c = tokio::process::Command::new(exe);
            c.arg(dir.path().join("runtime").join(file));
            c
        }
        Launcher::Bootstrap => match &bootstrap {
            Some(b) => tokio::process::Command::new(b),
            None => {
                // As AWS: the invocation fails with Runtime.InvalidEntrypoint.
                let mut c = tokio::process::Command::new("/bin/sh");
                c.args([
                    "-c",
                    "echo 'Couldn'\\''t find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]' >&2; exit 127",
                ]);
                c
            }
        },
    };
    cmd.current_dir(dir.path().join("task"))
        .env_clear()
        .envs(environment(&spec, dir.path(), &api, &id))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    let logs = Arc::new(LogBuf::default());
    if let Some(out) = child.stdout.take() {
        capture(out, logs.clone(), spec.name.clone());
    }
    if let Some(err) = child.stderr.take() {
        capture(err, logs.clone(), spec.name.clone());
    }
    let (tx, exited) = watch::channel(None);
    let stopper = stop.clone();
    tracing::info!(function = %spec.name, version = %spec.version, env = %id, pid, "started an execution environment");
    tokio::spawn(async move {
        let how = tokio::select! {
            s = child.wait() => match s {
                Ok(s) => format!("Runtime exited with error: {s}"),
                Err(e) => format!("Runtime exited with error: {e}"),
            },
            () = stopper.cancelled() => {
                kill_group(pid);
                let _ = child.kill().await;
                "Runtime was stopped".to_string()
            }
        };
        // Whatever the runtime left behind in its group goes with it.
        kill_group(pid);
        stopper.cancel();
        let _ = tx.send(Some(how));
        drop(dir);
    });
    Ok(Env {
        id,
        jobs,
        mailbox,
        logs,
        exited,
        stop,
        initialised: AtomicBool::new(false),
    })
}
