//! The `cryopod` command line: `serve` runs the emulator; every other command is a thin
//! client of the internal API (`--endpoint`), except the offline `bundle` tools.

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::cli_out::{self, Out, coded, from_api};
use crate::persistence::{LoadStrategy, OnCorrupt, Persistence, PersistenceConfig, SaveStrategy};
use crate::runtime::Runtime;
use crate::server::App;

/// The `Environment:` section of a client command's `--help`, with `extra` lines.
macro_rules! client_env {
    ($($extra:literal),*) => {
        concat!(
            "Environment:\n",
            "  CRYOPOD_ENDPOINT                                  the emulator's address (--endpoint)\n",
            $($extra, "\n",)*
            "  HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY      proxies on the way to the emulator (lower-case too)",
        )
    };
}
pub(crate) use client_env;

/// `--help` of client commands: the variables the CLI reads.
pub(crate) const CLIENT_ENV: &str = client_env!();

/// `--help` of the offline bundle commands.
const OFFLINE_ENV: &str = "Environment: none; works on the file alone, without the emulator.";

/// `--help` of `serve`: every variable the emulator reads besides those of its options
/// (each option shows its own `[env: …]`). README.md's configuration table lists the same
/// names; `tests/tests/cli_unix.rs` checks that the two agree.
const SERVE_ENV: &str = "\
Environment (besides the variable each option above names in its env field):
  RUST_LOG                                            log filter (default info); logs go to stderr
  AUTO_LOAD_POD                                       pods to load at start (`a,b:2`), before DATA_DIR/init-pods.d, unless persistence restored a state
  MERGE_STRATEGY                                      merge strategy of those loads (default account-region-merge)
  POD_SECRET                                          passphrase of encrypted pods loaded at start
  CRYOPOD_LAUNCH_MAX_BYTES                            size limit of a bundle or pod fetched with `pod load --url` or the launchpad (default 1073741824)
  CRYOPOD_AGE_WORK_FACTOR                             scrypt work factor (log2 N, 1-20) of pod encryption (default: age's, about one second)
  CRYOPOD_BACKGROUND_NICE                             nice value (0-19) of exports and scheduled saves (default 10)
  CRYOPOD_BLOB_GC_GRACE_SECONDS                       a blob stored less than this long ago is never collected (default 3600)
  CRYOPOD_CHECKPOINT_LIMIT                            most checkpoints that may exist at once (default 16)
  AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL               endpoint of s3:// remotes without ?endpoint= (without them: AWS S3 itself)
  AWS_REGION, AWS_DEFAULT_REGION                      region of s3:// remotes without ?region= (default us-east-1)
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
                                                      credentials of s3:// remotes (unsigned requests without them)
  CRYOPOD_REGISTRY_USERNAME, CRYOPOD_REGISTRY_PASSWORD
                                                      credentials of oci:// remotes (anonymous without them)
  HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY        proxies for remotes and launchpad fetches (lower-case too)
  CRYOPOD_FAILPOINT                                   tests only: `<step>[:<n>[+]][:enospc]` makes a persistence step fail";

/// Command-line interface of the reference emulator.
#[derive(Parser, Debug)]
#[command(
    name = "cryopod",
    version,
    about = "A local AWS emulator whose state survives: persistence, export/import and pods."
)]
struct Cli {
    /// The emulator's address, for client commands.
    #[arg(
        long,
        global = true,
        env = "CRYOPOD_ENDPOINT",
        default_value = "http://127.0.0.1:4566"
    )]
    endpoint: String,
    /// Machine-readable JSON output instead of tables and progress bars.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the emulator.
    #[command(after_help = SERVE_ENV)]
    Serve(ServeArgs),
    /// Export, import, reset, inspect, save and load the running state.
    #[command(subcommand, after_help = CLIENT_ENV)]
    State(StateCommand),
    /// Inspect and verify bundle files offline.
    #[command(subcommand, after_help = OFFLINE_ENV)]
    Bundle(BundleCommand),
    /// Show the running emulator's health: services and persistence status.
    #[command(after_help = CLIENT_ENV)]
    Health,
    /// Save, load, list, inspect and share pods: versioned snapshots, locally or on remotes.
    #[command(subcommand, after_help = CLIENT_ENV)]
    Pod(crate::cli_pod::PodCommand),
    /// Take, restore, list and delete in-memory checkpoints: restore a whole emulator in
    /// milliseconds, for tests that each start clean.
    #[command(subcommand, after_help = CLIENT_ENV)]
    Checkpoint(CheckpointCommand),
}

#[derive(Subcommand, Debug)]
enum CheckpointCommand {
    /// Take checkpoint NAME of the running state (replaces one of the same name).
    Save {
        /// 1 to 64 characters from A-Z, a-z, 0-9, `.`, `_`, `-`.
        name: String,
        /// Only these services, comma-separated.
        #[arg(long, value_delimiter = ',')]
        services: Option<Vec<String>>,
    },
    /// Make the running state exactly checkpoint NAME again.
    Restore {
        /// The checkpoint.
        name: String,
        /// Only these of its services, comma-separated.
        #[arg(long, value_delimiter = ',')]
        services: Option<Vec<String>>,
    },
    /// The checkpoints: when taken, services, resources, blobs they keep.
    List,
    /// Drop checkpoint NAME (its blobs become collectable).
    Delete {
        /// The checkpoint.
        name: String,
    },
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:4566, or the first address of LocalStack's
    /// GATEWAY_LISTEN). Anything but loopback needs --allow-remote.
    #[arg(long, env = "CRYOPOD_LISTEN")]
    listen: Option<SocketAddr>,
    /// LocalStack's listen setting (`HOST:PORT[,…]`): its first address, when --listen and
    /// CRYOPOD_LISTEN are not set; the same loopback rule applies.
    #[arg(long, env = "GATEWAY_LISTEN", value_name = "ADDRESSES")]
    gateway_listen: Option<String>,
    /// LocalStack's `name[:port]` that clients use; the emulator answers to that name as to
    /// its own (like --allowed-hosts).
    #[arg(long, env = "LOCALSTACK_HOST", value_name = "HOST")]
    localstack_host: Option<String>,
    /// LocalStack's persistence switch (what `lstk start --persist` sets), when PERSISTENCE
    /// and --persistence are not set.
    #[arg(long, env = "LOCALSTACK_PERSISTENCE", value_name = "BOOL")]
    localstack_persistence: Option<String>,
    /// Allow listening on a non-loopback address (the internal API can dump and replace all state).
    #[arg(long)]
    allow_remote: bool,
    /// More names (or addresses) the emulator answers to besides loopback and the listen
    /// address, comma-separated; `*.name` for every subdomain. For a proxy or a container
    /// name: requests whose `Host` is not one of these are refused (DNS rebinding).
    #[arg(long, env = "CRYOPOD_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Services to run, comma-separated (default: every service in this build).
    #[arg(long, env = "SERVICES", value_delimiter = ',')]
    services: Option<Vec<String>>,
    /// Where state, blobs and pods are kept.
    #[arg(long, env = "DATA_DIR", default_value = ".cryopod")]
    data_dir: PathBuf,
    /// Keep state in the data dir and load it at start (`PERSISTENCE=1`).
    #[arg(long, env = "PERSISTENCE", num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool, default_value = "false")]
    persistence: bool,
    /// When to save: SCHEDULED, ON_REQUEST, ON_SHUTDOWN, MANUAL.
    #[arg(long, env = "SNAPSHOT_SAVE_STRATEGY", default_value = "SCHEDULED")]
    save_strategy: String,
    /// When to load: ON_STARTUP, ON_REQUEST, MANUAL.
    #[arg(long, env = "SNAPSHOT_LOAD_STRATEGY", default_value = "ON_STARTUP")]
    load_strategy: String,
    /// Seconds between SCHEDULED saves.
    #[arg(long, env = "SNAPSHOT_FLUSH_INTERVAL", default_value = "15")]
    flush_interval: f64,
    /// What to do with a saved state that fails to load: `fail` (refuse to start) or `quarantine` (move it aside, start empty).
    #[arg(long, env = "ON_CORRUPT", default_value = "fail")]
    on_corrupt: String,
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(format!("`{other}` is not a boolean (use 1/0, true/false)")),
    }
}

#[derive(Subcommand, Debug)]
enum StateCommand {
    /// Write the running state as one bundle file (`-` for stdout).
    #[command(after_help = CLIENT_ENV)]
    Export {
        /// Output file or `-`.
        file: String,
        /// Only these services, comma-separated.
        #[arg(long, value_delimiter = ',')]
        services: Option<Vec<String>>,
    },
    /// Load a bundle file (`-` for stdin) into the running emulator.
    #[command(after_help = CLIENT_ENV)]
    Import {
        /// Input file or `-`.
        file: String,
        /// overwrite, account-region-merge (default) or service-merge.
        #[arg(long, default_value = "account-region-merge")]
        merge: String,
        /// Only these services, comma-separated.
        #[arg(long, value_delimiter = ',')]
        services: Option<Vec<String>>,
    },
    /// Empty the running state.
    #[command(after_help = CLIENT_ENV)]
    Reset {
        /// Only these services, comma-separated.
        #[arg(long, value_delimiter = ',')]
        services: Option<Vec<String>>,
    },
    /// Resources by service and scope, of the running emulator or of a bundle file.
    #[command(after_help = client_env!(
        "  (with FILE, none of these: the bundle file is read offline)"
    ))]
    Inspect {
        /// A bundle file to read offline instead of asking the emulator.
        file: Option<PathBuf>,
    },
    /// Save the state to the data dir now (persistence).
    #[command(after_help = CLIENT_ENV)]
    Save {
        /// Only these services, comma-separated.
        #[arg(long, value_delimiter = ',')]
        services: Option<Vec<String>>,
    },
    /// Load the saved state from the data dir now (persistence).
    #[command(after_help = CLIENT_ENV)]
    Load {
        /// Only these services, comma-separated.
        #[arg(long, value_delimiter = ',')]
        services: Option<Vec<String>>,
    },
}

#[derive(Subcommand, Debug)]
enum BundleCommand {
    /// Services, scopes, resource counts, sizes and producer of a bundle, without loading it.
    #[command(after_help = OFFLINE_ENV)]
    Inspect {
        /// The bundle file.
        file: PathBuf,
    },
    /// Check every checksum and digest; exit status 0 only for an intact bundle.
    #[command(after_help = OFFLINE_ENV)]
    Verify {
        /// The bundle file.
        file: PathBuf,
    },
}

/// Runs the CLI. `default_services` are the services the build's cargo features promise; the
/// runtime refuses to start if the registry lacks one of them.
pub fn main(default_services: &[&'static str]) -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli, default_services)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli_out::report_error(json, &e),
    }
}

async fn run(cli: Cli, default_services: &[&'static str]) -> anyhow::Result<()> {
    let client = Client::new(&cli.endpoint, cli.json);
    match cli.command {
        Command::Serve(args) => serve(args, default_services).await,
        Command::Health => {
            let v = client.get_json("/_cryopod/health").await?;
            client.print(&v, |v| render_health(v, &client.base))
        }
        Command::Pod(cmd) => crate::cli_pod::run(cmd, &cli.endpoint, cli.json).await,
        Command::Checkpoint(cmd) => checkpoint_command(&client, cmd).await,
        Command::State(cmd) => match cmd {
            StateCommand::Export { file, services } => client.export(&file, services).await,
            StateCommand::Import {
                file,
                merge,
                services,
            } => client.import(&file, &merge, services).await,
            StateCommand::Reset { services } => {
                let v = client
                    .post_json(&format!(
                        "/_cryopod/state/reset{}",
                        services_query(&services)
                    ))
                    .await?;
                client.print(&v, |v| match join_values(&v["reset"]).as_str() {
                    "" => "nothing to reset".to_string(),
                    names => format!("reset {names}: their state is empty"),
                })
            }
            StateCommand::Inspect { file: Some(file) } => inspect_file(&file, cli.json),
            StateCommand::Inspect { file: None } => {
                let v = client.get_json("/_cryopod/state/summary").await?;
                client.print(&v, |v| render_summary(&v["services"]))
            }
            StateCommand::Save { services } => {
                let v = client
                    .post_json(&format!(
                        "/_cryopod/state/save{}",
                        services_query(&services)
                    ))
                    .await?;
                client.print(&v, render_state_save)
            }
            StateCommand::Load { services } => {
                let v = client
                    .post_json(&format!(
                        "/_cryopod/state/load{}",
                        services_query(&services)
                    ))
                    .await?;
                client.print(&v, |v| match join_values(&v["loaded"]).as_str() {
                    "" => "nothing loaded: the data dir holds no saved state for these services"
                        .to_string(),
                    names => format!("loaded the saved state of {names} from the data dir"),
                })
            }
        },
        Command::Bundle(BundleCommand::Inspect { file }) => inspect_file(&file, cli.json),
        Command::Bundle(BundleCommand::Verify { file }) => verify_file(&file, cli.json),
    }
}

/// `cryopod checkpoint …`: thin calls of `/_cryopod/checkpoints`.
async fn checkpoint_command(client: &Client, cmd: CheckpointCommand) -> anyhow::Result<()> {
    match cmd {
        CheckpointCommand::Save { name, services } => {
            let path = format!("/_cryopod/checkpoints/{name}{}", services_query(&services));
            let v = client.post_json(&path).await?;
            client.print(&v, |v| {
                format!(
                    "checkpoint {name} taken of {} ({} blobs)",
                    join_values(&v["services"]),
                    v["retained"]["blobs"]
                )
            })
        }
        CheckpointCommand::Restore { name, services } => {
            let path = format!(
                "/_cryopod/checkpoints/{name}/restore{}",
                services_query(&services)
            );
            let v = client.post_json(&path).await?;
            client.print(&v, |v| {
                format!(
                    "restored {} to checkpoint {name}",
                    join_values(&v["restored"])
                )
            })
        }
        CheckpointCommand::List => {
            let v = client.get_json("/_cryopod/checkpoints").await?;
            client.print(&v, render_checkpoints)
        }
        CheckpointCommand::Delete { name } => {
            let v = client
                .request_json(
                    reqwest::Method::DELETE,
                    &format!("/_cryopod/checkpoints/{name}"),
                )
                .await?;
            client.print(&v, |_| format!("checkpoint {name} deleted"))
        }
    }
}

/// `cryopod checkpoint list` for people: one row per checkpoint.
fn render_checkpoints(v: &Value) -> String {
    let list = v["checkpoints"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no checkpoints".to_string();
    }
    let mut t = cli_out::table(&[
        "name",
        "taken",
        "services",
        "resources",
        "blobs",
        "only in checkpoints",
    ]);
    for c in &list {
        let resources: u64 = c["resources"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .flat_map(|scopes| scopes.as_array().cloned().unwrap_or_default())
            .flat_map(|s| {
                s["resources"]
                    .as_object()
                    .map(|r| r.values().filter_map(Value::as_u64).sum::<u64>())
            })
            .sum();
        let r = &c["retained"];
        t.add_row([
            c["name"].as_str().unwrap_or("?").to_string(),
            c["created_at"].as_str().unwrap_or("?").to_string(),
            join_values(&c["services"]),
            resources.to_string(),
            format!(
                "{} ({})",
                r["blobs"],
                cli_out::bytes(r["blob_bytes"].as_u64().unwrap_or(0))
            ),
            cli_out::bytes(r["blob_bytes_only_in_checkpoints"].as_u64().unwrap_or(0)),
        ]);
    }
    t.to_string()
}

fn services_query(services: &Option<Vec<String>>) -> String {
    match services {
        Some(s) if !s.is_empty() => format!("?services={}", s.join(",")),
        _ => String::new(),
    }
}

fn join_values(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

async fn serve(mut args: ServeArgs, default_services: &[&'static str]) -> anyhow::Result<()> {
    init_tracing();
    {
        use crate::server::localstack::settings;
        let invalid = |e: settings::SettingsError| coded("InvalidArgument", e.to_string());
        args.persistence = settings::persistence(
            args.persistence,
            std::env::var_os("PERSISTENCE").is_some(),
            args.localstack_persistence.as_deref(),
        )
        .map_err(invalid)?;
        args.allowed_hosts
            .extend(settings::localstack_host(args.localstack_host.as_deref()));
        if let Some(line) = settings::ignored_warning(|k| std::env::var(k).ok()) {
            tracing::warn!("{line}");
            eprintln!("{line}");
        }
    }
    let listen =
        crate::server::localstack::settings::listen(args.listen, args.gateway_listen.as_deref())
            .map_err(|e| coded("InvalidArgument", e.to_string()))?;
    if !listen.ip().is_loopback() {
        if !args.allow_remote {
            return Err(coded(
                "InvalidArgument",
                format!(
                    "refusing to listen on {}: the internal API can dump and replace all state; pass --allow-remote to listen beyond loopback",
                    listen
                ),
            ));
        }
        tracing::warn!(listen = %listen, "listening beyond loopback: anyone who can reach this address can read and replace all state");
        eprintln!(
            "warning: listening on {} (not loopback): anyone who can reach it can read and replace all state",
            listen
        );
    }
    let access = crate::server::guard::Access::new(listen, &args.allowed_hosts)?;
    let invalid = |e: &dyn std::fmt::Display| coded("InvalidArgument", e.to_string());
    let save: SaveStrategy = args.save_strategy.parse().map_err(|e| invalid(&e))?;
    let load: LoadStrategy = args.load_strategy.parse().map_err(|e| invalid(&e))?;
    let on_corrupt: OnCorrupt = args.on_corrupt.parse().map_err(|e| invalid(&e))?;
    if !(args.flush_interval.is_finite() && args.flush_interval > 0.0) {
        return Err(invalid(&format_args!(
            "SNAPSHOT_FLUSH_INTERVAL must be a positive number of seconds, got {}",
            args.flush_interval
        )));
    }
    let mut builder = Runtime::builder()
        .expect(default_services)
        .enable(args.services.clone().filter(|s| !s.is_empty()));
    let config = PersistenceConfig {
        data_dir: args.data_dir.clone(),
        save,
        load,
        flush_interval: Duration::from_secs_f64(args.flush_interval),
        on_corrupt,
    };
    if args.persistence {
        builder = builder.blob_store(Persistence::open_blob_store(&config)?);
    }
    let runtime = builder.build()?;
    // Auto-load is skipped when persistence restores a saved state.
    let restored = args.persistence && args.data_dir.join("state").join("manifest.json").is_file();
    let persistence = if args.persistence {
        Some(Persistence::start(runtime.clone(), config.clone()).await?)
    } else {
        None
    };
    let pods = Arc::new(crate::pods::Pods::open(args.data_dir.join("pods")));
    let auto_loaded =
        crate::pods::autoload::at_start(&pods, &runtime, &args.data_dir, restored).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {}", listen))?;
    let addr = listener.local_addr()?;
    let app = Arc::new(App {
        runtime: runtime.clone(),
        hooks: persistence
            .clone()
            .map(|p| p as Arc<dyn crate::server::RequestHooks>),
        listen: addr.to_string(),
        pods,
        access: access.listening_on(addr),
    });
    let mut banner = vec![format!(
        "cryopod {} — services: {}",
        env!("CARGO_PKG_VERSION"),
        runtime.service_names().join(", ")
    )];
    banner.push(match &persistence {
        Some(p) => format!(
            "state: persisted in {} (save {}, load {})",
            p.state_dir().display(),
            config.save,
            config.load
        ),
        None => format!(
            "state: in memory only (blobs in {}); set PERSISTENCE=1 to keep it",
            runtime.blobs().root().display()
        ),
    });
    banner.extend(auto_loaded);
    banner.push(format!("cryopod ready on http://{addr}"));
    // The banner is for whoever started the emulator; if they stopped reading stdout
    // (`cryopod serve | head -1`) the emulator keeps serving.
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", banner.join("\n")).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    drop(out);
    tracing::info!(%addr, services = ?runtime.service_names(), "cryopod ready");
    crate::server::serve(listener, app, shutdown_signal()).await?;
    tracing::info!("shutting down");
    if let Some(p) = persistence {
        p.shutdown().await?;
    }
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A client of the internal API.
struct Client {
    base: String,
    http: reqwest::Client,
    json: bool,
}

impl Client {
    fn new(endpoint: &str, json: bool) -> Self {
        Self {
            base: endpoint.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            json,
        }
    }

    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        unreachable_error(&self.base, e)
    }

    async fn check(&self, resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let (code, msg) = api_error(status, &text);
        Err(from_api(
            &code,
            format!("the emulator answered {status}: {msg}"),
        ))
    }

    async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        Ok(self.check(resp).await?.json().await?)
    }

    async fn post_json(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        Ok(self.check(resp).await?.json().await?)
    }

    /// Sends `method path` and reads the JSON answer (for methods without a helper).
    async fn request_json(&self, method: reqwest::Method, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        Ok(self.check(resp).await?.json().await?)
    }

    fn print(&self, v: &Value, human: impl FnOnce(&Value) -> String) -> anyhow::Result<()> {
        Ok(cli_out::emit(self.json, v, human)?)
    }

    fn progress(&self, len: Option<u64>, what: &str) -> ProgressBar {
        if self.json || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let pb = match len {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        let template = if len.is_some() {
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}"
        } else {
            "{msg} {spinner} {bytes} {bytes_per_sec}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(what.to_string());
        pb
    }

    async fn export(&self, file: &str, services: Option<Vec<String>>) -> anyhow::Result<()> {
        let resp = self
            .http
            .get(format!(
                "{}/_cryopod/state{}",
                self.base,
                services_query(&services)
            ))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let resp = self.check(resp).await?;
        let pb = self.progress(None, "exporting");
        let mut stream = resp.bytes_stream();
        let mut total = 0u64;
        if file == "-" {
            let cleared = pb.clone();
            let mut out = Out::lock().before_exit(move || cleared.finish_and_clear());
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.context(
                    "the export stream broke off (the emulator reported an error; see its log)",
                )?;
                out.write_all(&chunk)?;
                total += chunk.len() as u64;
                pb.set_position(total);
            }
            out.flush()?;
            pb.finish_and_clear();
            return Ok(());
        }
        let path = Path::new(file);
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".cryopod-export-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot write into {}", dir.display()))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.context(
                "the export stream broke off (the emulator reported an error; see its log)",
            )?;
            tmp.write_all(&chunk)?;
            total += chunk.len() as u64;
            pb.set_position(total);
        }
        tmp.as_file().sync_all()?;
        tmp.persist(path)
            .map_err(|e| anyhow!("cannot write {}: {}", path.display(), e.error))?;
        pb.finish_and_clear();
        let v = serde_json::json!({ "file": file, "bytes": total });
        self.print(&v, |_| {
            format!(
                "exported {} ({total} bytes) to {file}",
                cli_out::bytes(total)
            )
        })
    }

    async fn import(
        &self,
        file: &str,
        merge: &str,
        services: Option<Vec<String>>,
    ) -> anyhow::Result<()> {
        let merge: crate::MergeStrategy = merge
            .parse()
            .map_err(|e| coded("UnknownMergeStrategy", format!("{e}")))?;
        let (body, len) = if file == "-" {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
            std::thread::spawn(move || {
                let mut stdin = std::io::stdin().lock();
                loop {
                    let mut buf = vec![0u8; 256 * 1024];
                    match stdin.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            buf.truncate(n);
                            if tx.blocking_send(Ok(buf)).is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            break;
                        }
                    }
                }
            });
            let mut rx = rx;
            let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
            (reqwest::Body::wrap_stream(stream), None)
        } else {
            let f = tokio::fs::File::open(file)
                .await
                .with_context(|| format!("cannot open {file}"))?;
            let len = f.metadata().await?.len();
            let pb = self.progress(Some(len), "importing");
            let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024).map(move |c| {
                if let Ok(b) = &c {
                    pb.inc(b.len() as u64);
                }
                c
            });
            (reqwest::Body::wrap_stream(stream), Some(len))
        };
        let mut url = format!("{}/_cryopod/state?merge={merge}", self.base);
        if let Some(s) = services.filter(|s| !s.is_empty()) {
            url.push_str(&format!("&services={}", s.join(",")));
        }
        let mut req = self.http.post(url).body(body);
        if let Some(len) = len {
            req = req.header(reqwest::header::CONTENT_LENGTH, len);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let v: Value = self.check(resp).await?.json().await?;
        self.print(&v, render_import)
    }
}

/// The emulator could not be reached at `base`: named with what to check.
pub(crate) fn unreachable_error(base: &str, e: reqwest::Error) -> anyhow::Error {
    coded(
        "EmulatorUnreachable",
        format!(
            "cannot reach the emulator at {base}: {e}; is `cryopod serve` running (or set --endpoint / CRYOPOD_ENDPOINT)?"
        ),
    )
}

/// The code and message of an error answer of the internal API (`{"error": {"code",
/// "message"}}`); an answer of another shape (a proxy's page) keeps its text, with a code
/// named after the HTTP status.
pub(crate) fn api_error(status: reqwest::StatusCode, text: &str) -> (String, String) {
    let parsed = serde_json::from_str::<Value>(text).ok().and_then(|v| {
        let e = &v["error"];
        Some((
            e["code"].as_str().unwrap_or("Failed").to_string(),
            e["message"].as_str()?.to_string(),
        ))
    });
    parsed.unwrap_or_else(|| {
        let code = match status.as_u16() {
            400 => "BadRequest",
            401 | 403 => "AccessDenied",
            404 => "NotFound",
            _ => "UnexpectedResponse",
        };
        (code.to_string(), text.trim().to_string())
    })
}

/// `cryopod health` for people: version, services, persistence, last save, journal, errors.
fn render_health(v: &Value, base: &str) -> String {
    let mut out = vec![format!(
        "cryopod {} at {base}",
        v["version"].as_str().unwrap_or("?")
    )];
    let mut t = cli_out::table(&["service", "state"]);
    for (name, state) in v["services"].as_object().into_iter().flatten() {
        t.add_row([name.as_str(), state.as_str().unwrap_or("?")]);
    }
    out.push(format!("services:\n{t}"));
    let running = v["services"].as_object();
    let idle: Vec<&str> = v["linked"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|s| running.is_none_or(|r| !r.contains_key(*s)))
        .collect();
    if !idle.is_empty() {
        out.push(format!("in this build, not running: {}", idle.join(", ")));
    }
    let p = &v["persistence"];
    if p["enabled"].as_bool() != Some(true) {
        out.push(
            "persistence: off (state in memory only; start with PERSISTENCE=1 to keep it)".into(),
        );
        return out.join("\n");
    }
    out.push(format!(
        "persistence: on, in {} (save {} every {} s, load {}; saved state {})",
        p["data_dir"].as_str().unwrap_or("?"),
        p["save_strategy"].as_str().unwrap_or("?"),
        p["flush_interval_seconds"],
        p["load_strategy"].as_str().unwrap_or("?"),
        if p["loaded"].as_bool() == Some(true) {
            "loaded"
        } else {
            "not loaded yet"
        }
    ));
    let save = &p["last_save"];
    out.push(match save["time"].as_str() {
        Some(time) => format!(
            "last save: {time}, {} ({} written in {} ms)",
            match join_values(&save["services"]).as_str() {
                "" => "nothing had changed".to_string(),
                names => names.to_string(),
            },
            cli_out::bytes(save["bytes_written"].as_u64().unwrap_or(0)),
            save["duration_ms"]
        ),
        None => "last save: none yet".into(),
    });
    let pending = join_values(&p["pending_services"]);
    if !pending.is_empty() {
        out.push(format!("changed since: {pending}"));
    }
    out.push(match p["journal"]["file"].as_str() {
        Some(f) => format!(
            "journal: {f}, {}",
            cli_out::bytes(p["journal"]["bytes"].as_u64().unwrap_or(0))
        ),
        None => "journal: none (only ON_REQUEST keeps one)".into(),
    });
    let gc = &p["last_blob_collection"];
    if let Some(time) = gc["time"].as_str() {
        out.push(format!(
            "last blob collection: {time}, {} removed ({} freed), {} recent kept",
            gc["removed"],
            cli_out::bytes(gc["bytes"].as_u64().unwrap_or(0)),
            gc["kept_recent"]
        ));
    }
    out.push(format!(
        "written since start: {}",
        cli_out::bytes(p["bytes_written"].as_u64().unwrap_or(0))
    ));
    out.push(format!(
        "last error: {}",
        p["last_error"].as_str().unwrap_or("none")
    ));
    out.join("\n")
}

/// `cryopod state save` for people.
fn render_state_save(v: &Value) -> String {
    match join_values(&v["services"]).as_str() {
        "" => format!(
            "nothing to save: no service changed since the last save ({} written)",
            cli_out::bytes(v["bytes_written"].as_u64().unwrap_or(0))
        ),
        names => format!(
            "saved {names} to the data dir: {} written in {} ms, at {}",
            cli_out::bytes(v["bytes_written"].as_u64().unwrap_or(0)),
            v["duration_ms"],
            v["time"].as_str().unwrap_or("?")
        ),
    }
}

fn render_import(v: &Value) -> String {
    let mut out = format!("imported with {}\n", v["merge"].as_str().unwrap_or("?"));
    out.push_str(&render_summary(&v["loaded"]));
    if let Some(skipped) = v["skipped"].as_array().filter(|s| !s.is_empty()) {
        out.push_str("\nnot loaded:\n");
        for s in skipped {
            out.push_str(&format!(
                "  {} ({})\n",
                s["service"].as_str().unwrap_or("?"),
                s["reason"].as_str().unwrap_or("?")
            ));
        }
    }
    out
}

/// Resources by service and scope as a table; shared by `state` and `pod` commands.
pub(crate) fn render_summary(services: &Value) -> String {
    let mut table = cli_out::table(&["service", "account", "region", "resources"]);
    if let Some(map) = services.as_object() {
        for (name, scopes) in map {
            let scopes = scopes.as_array().cloned().unwrap_or_default();
            if scopes.is_empty() {
                table.add_row([name.as_str(), "-", "-", "(empty)"]);
            }
            for s in scopes {
                let res = s["resources"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}: {v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                table.add_row([
                    name.as_str(),
                    s["account"].as_str().unwrap_or("?"),
                    s["region"].as_str().unwrap_or("?"),
                    res.as_str(),
                ]);
            }
        }
    }
    table.to_string()
}

fn inspect_file(file: &Path, json: bool) -> anyhow::Result<()> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let bundle =
        cryopod_bundle::SeekableBundle::open(std::io::BufReader::new(f), Default::default())
            .with_context(|| format!("{} is not a readable cryopod bundle", file.display()))?;
    let m = bundle.manifest().clone();
    let sections = bundle.sections();
    let blobs = bundle.blobs();
    let v = serde_json::json!({
        "file": file,
        "producer": m.producer,
        "created_at": m.created_at,
        "services": m.services.iter().map(|s| {
            let sec = sections.iter().find(|x| x.service == s.name);
            serde_json::json!({
                "name": s.name,
                "state_version": s.state_version,
                "scopes": s.scopes,
                "section_bytes": sec.map(|x| x.size),
                "stored_bytes": sec.map(|x| x.stored_bytes),
            })
        }).collect::<Vec<_>>(),
        "blobs": { "count": blobs.len(), "bytes": blobs.iter().map(|b| b.size).sum::<u64>(), "stored_bytes": blobs.iter().map(|b| b.stored_bytes).sum::<u64>() },
    });
    if json {
        return Ok(cli_out::line(v)?);
    }
    let mut out = vec![
        format!("bundle {}", file.display()),
        format!("producer: {}   created: {}", m.producer, m.created_at),
    ];
    let mut summary = serde_json::Map::new();
    for s in &m.services {
        summary.insert(s.name.clone(), serde_json::to_value(&s.scopes)?);
    }
    out.push(render_summary(&Value::Object(summary)));
    for s in &m.services {
        if let Some(sec) = sections.iter().find(|x| x.service == s.name) {
            out.push(format!(
                "  {} v{}: {} bytes of state ({} stored)",
                s.name, s.state_version, sec.size, sec.stored_bytes
            ));
        }
    }
    out.push(format!(
        "blobs: {} ({} bytes, {} stored)",
        blobs.len(),
        blobs.iter().map(|b| b.size).sum::<u64>(),
        blobs.iter().map(|b| b.stored_bytes).sum::<u64>()
    ));
    Ok(cli_out::line(out.join("\n"))?)
}

fn verify_file(file: &Path, json: bool) -> anyhow::Result<()> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let report = cryopod_bundle::verify(std::io::BufReader::new(f), Default::default())
        .with_context(|| format!("{} is damaged", file.display()))?;
    let v = serde_json::json!({
        "file": file,
        "ok": true,
        "services": report.sections.iter().map(|s| s.service.clone()).collect::<Vec<_>>(),
        "blobs": report.blobs.len(),
        "bytes": report.total_bytes,
    });
    Ok(cli_out::emit(json, &v, |_| {
        format!(
            "{}: intact ({} sections, {} blobs, {} bytes)",
            file.display(),
            report.sections.len(),
            report.blobs.len(),
            report.total_bytes
        )
    })?)
}
