//! `cryopod pod …`: a thin client of the pods API (`/_cryopod/pods`, see
//! `server/pods_api.rs`). Every command takes the global `--json`.

use std::io::IsTerminal;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::cli_out::{self, bytes, from_api, table};
use crate::pods::remote::{RemoteTarget, RemoteUrl};
use crate::server::pods_api::SECRET_HEADER;

/// `--help` of pod commands: the CLI's variables, and a reminder that remotes are the
/// emulator's business.
const POD_ENV: &str = crate::cli::client_env!(
    "  (a remote's endpoint and credentials come from the emulator's environment, not this one: see `cryopod serve --help`)"
);

/// `--help` of pod commands that take a secret.
const POD_SECRET_ENV: &str = crate::cli::client_env!(
    "  POD_SECRET                                        passphrase of encrypted pods (--secret)",
    "  (a remote's endpoint and credentials come from the emulator's environment, not this one: see `cryopod serve --help`)"
);

/// `cryopod pod` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum PodCommand {
    /// Save the running state as the next version of pod NAME (locally or to REMOTE).
    #[command(after_help = POD_SECRET_ENV)]
    Save {
        /// Pod name (`^[A-Za-z0-9_-]+$`).
        name: String,
        /// A configured remote's name, or a URL (file://, s3://, oci://).
        remote: Option<String>,
        /// Only these services, comma-separated.
        #[arg(long, value_delimiter = ',')]
        services: Option<Vec<String>>,
        /// A message describing this version.
        #[arg(long, short)]
        message: Option<String>,
        /// Encrypt the layers with this passphrase.
        #[arg(long, env = "POD_SECRET", hide_env_values = true)]
        secret: Option<String>,
    },
    /// Load pod NAME[:VERSION] (default: latest) into the running emulator.
    #[command(after_help = POD_SECRET_ENV)]
    Load {
        /// NAME or NAME:VERSION (not with --url).
        #[arg(required_unless_present = "url")]
        pod: Option<String>,
        /// A configured remote's name, or a URL.
        remote: Option<String>,
        /// overwrite, account-region-merge (default) or service-merge.
        #[arg(long, default_value = "account-region-merge")]
        merge: String,
        /// The passphrase of an encrypted pod.
        #[arg(long, env = "POD_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Print what the load would add, modify and delete, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only these services of the pod, comma-separated.
        #[arg(long, value_delimiter = ',')]
        services: Option<Vec<String>>,
        /// Fetch a bundle file or a pod over HTTP(S) and load it (the launchpad).
        #[arg(long, conflicts_with_all = ["pod", "remote", "dry_run", "services"])]
        url: Option<String>,
    },
    /// List the pods of the local store or REMOTE.
    #[command(after_help = POD_ENV)]
    List {
        /// A configured remote's name, or a URL.
        remote: Option<String>,
    },
    /// List the versions of pod NAME with their messages.
    #[command(after_help = POD_ENV)]
    Versions {
        /// Pod name.
        name: String,
        /// A configured remote's name, or a URL.
        remote: Option<String>,
    },
    /// Services, scopes, resources and sizes of NAME[:VERSION].
    #[command(after_help = POD_ENV)]
    Inspect {
        /// NAME or NAME:VERSION.
        pod: String,
        /// A configured remote's name, or a URL.
        remote: Option<String>,
    },
    /// Delete NAME:VERSION, or every version of NAME.
    #[command(after_help = POD_ENV)]
    Delete {
        /// NAME or NAME:VERSION.
        pod: String,
        /// A configured remote's name, or a URL.
        remote: Option<String>,
    },
    /// Manage named remotes (kept in DATA_DIR/pods/remotes.json, without credentials).
    #[command(subcommand, after_help = POD_ENV)]
    Remote(RemoteCommand),
}

/// `cryopod pod remote` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum RemoteCommand {
    /// Add (or replace) a remote.
    #[command(after_help = POD_ENV)]
    Add {
        /// Remote name.
        name: String,
        /// file:///path, s3://bucket/prefix[?endpoint=URL&region=R] or oci://host[:port]/namespace.
        url: String,
    },
    /// Remove a remote.
    #[command(after_help = POD_ENV)]
    Remove {
        /// Remote name.
        name: String,
    },
    /// List remotes.
    #[command(after_help = POD_ENV)]
    List,
}

struct PodClient {
    base: String,
    http: reqwest::Client,
    json: bool,
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            s.append_pair(k, v);
        }
    }
    let q = s.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

fn split_ref(pod: &str) -> (String, Option<String>) {
    match pod.split_once(':') {
        Some((n, v)) => (n.to_string(), Some(v.to_string())),
        None => (pod.to_string(), None),
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl PodClient {
    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        crate::cli::unreachable_error(&self.base, e)
    }

    async fn check(resp: reqwest::Response) -> anyhow::Result<Value> {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_str(&text)
                .context("the emulator answered something that is not JSON");
        }
        let (code, msg) = crate::cli::api_error(status, &text);
        Err(from_api(&code, msg))
    }

    /// Where `remote` (a configured name or a URL) sends requests, as far as its URL says;
    /// `None` for the local store, or when the name or URL is unknown (the emulator's
    /// answer to the command names that problem).
    async fn target(&self, remote: Option<&str>) -> Option<RemoteTarget> {
        let remote = remote.map(str::trim).filter(|r| !r.is_empty())?;
        let url = if remote.contains("://") {
            remote.to_string()
        } else {
            let all = self
                .send(reqwest::Method::GET, "/_cryopod/pods/remotes", None)
                .await
                .ok()?;
            all["remotes"][remote].as_str()?.to_string()
        };
        let parsed: RemoteUrl = url.parse().ok()?;
        Some(RemoteTarget::of(&url, &parsed))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        secret: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(s) = secret {
            req = req.header(SECRET_HEADER, s);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        Self::check(resp).await
    }

    /// A long operation: with a terminal and without --json, asks for an NDJSON progress
    /// stream and draws a progress bar; otherwise one JSON answer.
    async fn long(&self, path: &str, secret: Option<&str>, what: &str) -> anyhow::Result<Value> {
        if self.json || !std::io::stderr().is_terminal() {
            return self.send(reqwest::Method::POST, path, secret).await;
        }
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, "application/x-ndjson");
        if let Some(s) = secret {
            req = req.header(SECRET_HEADER, s);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        if !resp.status().is_success() {
            return Self::check(resp).await;
        }
        let pb = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        ) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(what.to_string());
        let mut stream = resp.bytes_stream();
        let mut buf = Vec::new();
        let mut last = None;
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk.context("the emulator's answer broke off")?);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                if let Some(p) = v.get("progress") {
                    pb.set_length(p["total"].as_u64().unwrap_or(0));
                    pb.set_position(p["done"].as_u64().unwrap_or(0));
                } else {
                    last = Some(v);
                }
            }
        }
        pb.finish_and_clear();
        let v = last.ok_or_else(|| anyhow!("the emulator's answer ended without a result"))?;
        if let Some(e) = v.get("error") {
            return Err(from_api(
                e["code"].as_str().unwrap_or("Failed"),
                e["message"].as_str().unwrap_or("failed"),
            ));
        }
        Ok(v["result"].clone())
    }

    /// Says where `target` sends requests, on stderr before the command runs: a failure is
    /// not the first the user hears of it, and a closed stdout does not stop a save before
    /// it starts. With `--json` [`Self::print`] adds it to the answer instead.
    fn announce(&self, target: Option<&RemoteTarget>) -> anyhow::Result<()> {
        if let Some(t) = target.filter(|_| !self.json) {
            cli_out::notice(format!("remote {}", t.description));
        }
        Ok(())
    }

    /// Prints `v` (JSON with `--json`, else `human`); with `--json`, where the remote it
    /// used sends requests, as a `remote_target` field (see [`Self::announce`]).
    fn print(
        &self,
        v: &Value,
        target: Option<&RemoteTarget>,
        human: impl FnOnce(&Value) -> String,
    ) -> anyhow::Result<()> {
        let mut v = v.clone();
        if let (Some(target), Some(obj)) = (target, v.as_object_mut()) {
            obj.insert("remote_target".into(), serde_json::to_value(target)?);
        }
        Ok(cli_out::emit(self.json, &v, human)?)
    }
}

/// Runs a `cryopod pod` command.
pub(crate) async fn run(cmd: PodCommand, endpoint: &str, json: bool) -> anyhow::Result<()> {
    let c = PodClient {
        base: endpoint.trim_end_matches('/').to_string(),
        http: reqwest::Client::new(),
        json,
    };
    match cmd {
        PodCommand::Save {
            name,
            remote,
            services,
            message,
            secret,
        } => {
            let target = c.target(remote.as_deref()).await;
            c.announce(target.as_ref())?;
            let path = format!(
                "/_cryopod/pods/pod/{}/save{}",
                enc(&name),
                query(&[
                    ("remote", remote),
                    ("services", services.map(|s| s.join(","))),
                    ("message", message)
                ])
            );
            let v = c.long(&path, secret.as_deref(), "uploading").await?;
            c.print(&v, target.as_ref(), render_save)?;
        }
        PodCommand::Load {
            pod,
            remote,
            merge,
            secret,
            dry_run,
            services,
            url,
        } => {
            if let Some(url) = url {
                let path = format!(
                    "/_cryopod/pods/launch{}",
                    query(&[("url", Some(url)), ("merge", Some(merge))])
                );
                let v = c
                    .send(reqwest::Method::POST, &path, secret.as_deref())
                    .await?;
                return c.print(&v, None, render_launch);
            }
            let pod = pod.ok_or_else(|| anyhow!("name the pod to load, or pass --url"))?;
            let (name, version) = split_ref(&pod);
            let target = c.target(remote.as_deref()).await;
            c.announce(target.as_ref())?;
            let path = format!(
                "/_cryopod/pods/pod/{}/load{}",
                enc(&name),
                query(&[
                    ("version", version),
                    ("remote", remote),
                    ("merge", Some(merge)),
                    ("services", services.map(|s| s.join(","))),
                    ("dry_run", dry_run.then(|| "true".to_string())),
                ])
            );
            let v = c.long(&path, secret.as_deref(), "downloading").await?;
            c.print(&v, target.as_ref(), render_load)?;
        }
        PodCommand::List { remote } => {
            let target = c.target(remote.as_deref()).await;
            c.announce(target.as_ref())?;
            let v = c
                .send(
                    reqwest::Method::GET,
                    &format!("/_cryopod/pods{}", query(&[("remote", remote)])),
                    None,
                )
                .await?;
            c.print(&v, target.as_ref(), render_list)?;
        }
        PodCommand::Versions { name, remote } => {
            let target = c.target(remote.as_deref()).await;
            c.announce(target.as_ref())?;
            let v = c
                .send(
                    reqwest::Method::GET,
                    &format!(
                        "/_cryopod/pods/pod/{}/versions{}",
                        enc(&name),
                        query(&[("remote", remote)])
                    ),
                    None,
                )
                .await?;
            c.print(&v, target.as_ref(), render_versions)?;
        }
        PodCommand::Inspect { pod, remote } => {
            let (name, version) = split_ref(&pod);
            let target = c.target(remote.as_deref()).await;
            c.announce(target.as_ref())?;
            let v = c
                .send(
                    reqwest::Method::GET,
                    &format!(
                        "/_cryopod/pods/pod/{}{}",
                        enc(&name),
                        query(&[("version", version), ("remote", remote)])
                    ),
                    None,
                )
                .await?;
            c.print(&v, target.as_ref(), render_inspect)?;
        }
        PodCommand::Delete { pod, remote } => {
            let (name, version) = split_ref(&pod);
            let target = c.target(remote.as_deref()).await;
            c.announce(target.as_ref())?;
            let v = c
                .send(
                    reqwest::Method::DELETE,
                    &format!(
                        "/_cryopod/pods/pod/{}{}",
                        enc(&name),
                        query(&[("version", version), ("remote", remote)])
                    ),
                    None,
                )
                .await?;
            c.print(&v, target.as_ref(), |v| {
                format!(
                    "deleted {} version(s) {} from {} ({} unreferenced objects removed)",
                    v["name"].as_str().unwrap_or("?"),
                    v["deleted"]
                        .as_array()
                        .map(|a| a
                            .iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default(),
                    v["location"].as_str().unwrap_or("?"),
                    v["blobs_removed"]
                )
            })?;
        }
        PodCommand::Remote(RemoteCommand::Add { name, url }) => {
            let target = url
                .parse::<RemoteUrl>()
                .ok()
                .map(|parsed| RemoteTarget::of(&url, &parsed));
            c.announce(target.as_ref())?;
            let v = c
                .send(
                    reqwest::Method::PUT,
                    &format!(
                        "/_cryopod/pods/remotes/{}{}",
                        enc(&name),
                        query(&[("url", Some(url))])
                    ),
                    None,
                )
                .await?;
            c.print(&v, target.as_ref(), |v| {
                format!(
                    "added remote {} = {}",
                    v["added"].as_str().unwrap_or("?"),
                    v["url"].as_str().unwrap_or("?")
                )
            })?;
        }
        PodCommand::Remote(RemoteCommand::Remove { name }) => {
            let v = c
                .send(
                    reqwest::Method::DELETE,
                    &format!("/_cryopod/pods/remotes/{}", enc(&name)),
                    None,
                )
                .await?;
            c.print(&v, None, |v| {
                format!("removed remote {}", v["removed"].as_str().unwrap_or("?"))
            })?;
        }
        PodCommand::Remote(RemoteCommand::List) => {
            let v = c
                .send(reqwest::Method::GET, "/_cryopod/pods/remotes", None)
                .await?;
            c.print(&v, None, render_remotes)?;
        }
    }
    Ok(())
}

/// Configured remotes, with where each sends requests.
fn render_remotes(v: &Value) -> String {
    let remotes = v["remotes"].as_object().cloned().unwrap_or_default();
    if remotes.is_empty() {
        return "no remotes configured (add one with `cryopod pod remote add NAME URL`)".into();
    }
    let mut t = table(&["name", "url", "requests go to"]);
    for (k, u) in &remotes {
        let url = u.as_str().unwrap_or("?");
        let goes = url
            .parse::<RemoteUrl>()
            .map(|p| {
                let target = RemoteTarget::of(url, &p);
                target.endpoint.unwrap_or_else(|| {
                    "AWS S3, unless the emulator's environment names an endpoint".into()
                })
            })
            .unwrap_or_else(|e| e.to_string());
        t.add_row([k.as_str(), url, goes.as_str()]);
    }
    format!(
        "{t}\nendpoints and credentials come from the emulator's environment (see `cryopod serve --help`)"
    )
}

/// `pod load --url` for people: what was loaded from where.
fn render_launch(v: &Value) -> String {
    let head = format!(
        "loaded {} from {}",
        v["kind"].as_str().unwrap_or("?"),
        v["url"].as_str().unwrap_or("?")
    );
    match (v.get("applied"), v.get("report")) {
        (Some(a), _) => format!("{head}\n{}", crate::cli::render_summary(&a["loaded"])),
        (None, Some(r)) => format!("{head}\n{}", render_load(r)),
        (None, None) => head,
    }
}

fn render_save(v: &Value) -> String {
    format!(
        "saved {}:{} to {}{}\n{} layers: {} uploaded, {} reused; sent {} (version holds {})",
        v["name"].as_str().unwrap_or("?"),
        v["version"],
        v["location"].as_str().unwrap_or("?"),
        if v["encrypted"].as_bool() == Some(true) {
            " (encrypted)"
        } else {
            ""
        },
        v["layers"],
        v["layers_uploaded"],
        v["layers_reused"],
        bytes(v["bytes_uploaded"].as_u64().unwrap_or(0)),
        bytes(v["bytes_total"].as_u64().unwrap_or(0)),
    )
}

fn render_load(v: &Value) -> String {
    let head = format!(
        "{} {}:{} from {} with {}",
        if v["dry_run"].as_bool() == Some(true) {
            "dry run of loading"
        } else {
            "loaded"
        },
        v["name"].as_str().unwrap_or("?"),
        v["version"],
        v["location"].as_str().unwrap_or("?"),
        v["merge"].as_str().unwrap_or("?")
    );
    let mut out = vec![head];
    if let Some(d) = v.get("diff") {
        out.push(render_diff(d));
    }
    if let Some(a) = v.get("applied") {
        out.push(crate::cli::render_summary(&a["loaded"]));
        out.push(format!(
            "downloaded {} in {} layers; {} blobs were already present",
            bytes(v["bytes_downloaded"].as_u64().unwrap_or(0)),
            v["layers_downloaded"],
            v["blobs_present"]
        ));
    }
    for s in v["skipped"].as_array().cloned().unwrap_or_default() {
        out.push(format!(
            "not loaded: {} ({})",
            s["service"].as_str().unwrap_or("?"),
            s["reason"].as_str().unwrap_or("?")
        ));
    }
    out.join("\n")
}

/// Ids printed per list of a dry-run diff; the rest are counted (`… and N more`).
const DIFF_LIST_CAP: usize = 20;

/// `3 added, 1 modified, 0 deleted`, from a `{added, modified, deleted}` counts object.
fn counts(c: &Value) -> String {
    format!(
        "{} added, {} modified, {} deleted",
        c["added"], c["modified"], c["deleted"]
    )
}

/// `note: 3 added, …; notebook: …` from a map of unit type to counts.
fn counts_by_kind(by_kind: &Value) -> Option<String> {
    let m = by_kind.as_object().filter(|m| !m.is_empty())?;
    Some(
        m.iter()
            .map(|(kind, c)| format!("{kind}: {}", counts(c)))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// `+ added`, `~ modified`, `- deleted`, per service, scope and unit type, at most
/// [`DIFF_LIST_CAP`] ids per list. Reads whatever of those levels the diff has, so a diff
/// with more (or fewer) fields still renders.
fn render_diff(d: &Value) -> String {
    let mut out = Vec::new();
    let services = d["services"].as_object().cloned().unwrap_or_default();
    if services.is_empty() {
        out.push("no changes".to_string());
    }
    for (svc, sd) in services {
        out.push(match counts_by_kind(&sd["by_kind"]) {
            Some(c) => format!("{svc} ({c})"),
            None => svc.clone(),
        });
        if let Some(note) = sd["note"].as_str() {
            out.push(format!("  ~ {note}"));
        }
        for s in sd["scopes"].as_array().cloned().unwrap_or_default() {
            out.push(format!(
                "  {}/{}",
                s["account"].as_str().unwrap_or("?"),
                s["region"].as_str().unwrap_or("?")
            ));
            for (coll, c) in s["collections"].as_object().cloned().unwrap_or_default() {
                for (mark, key) in [("+", "added"), ("~", "modified"), ("-", "deleted")] {
                    match &c[key] {
                        Value::Array(ids) => {
                            for id in ids.iter().take(DIFF_LIST_CAP) {
                                let id = id.as_str().map_or_else(|| id.to_string(), str::to_string);
                                out.push(format!("    {mark} {coll}/{id}"));
                            }
                            if ids.len() > DIFF_LIST_CAP {
                                out.push(format!(
                                    "    … and {} more {key} {coll}",
                                    ids.len() - DIFF_LIST_CAP
                                ));
                            }
                        }
                        Value::Number(n) => out.push(format!("    {mark} {n} {coll} {key}")),
                        _ => {}
                    }
                }
                if c["replaced"].as_bool() == Some(true) {
                    out.push(format!("    ~ {coll}"));
                }
            }
        }
    }
    if let Some(c) = counts_by_kind(&d["by_kind"]) {
        out.push(format!("by type: {c}"));
    }
    let t = &d["totals"];
    out.push(format!(
        "{} to add, {} to modify, {} to delete",
        t["added"], t["modified"], t["deleted"]
    ));
    out.join("\n")
}

fn render_list(v: &Value) -> String {
    let mut t = table(&["pod", "versions", "latest", "created", "message"]);
    for p in v["pods"].as_array().cloned().unwrap_or_default() {
        t.add_row([
            p["name"].as_str().unwrap_or("?").to_string(),
            p["versions"].to_string(),
            p["latest"].to_string(),
            p["created_at"].as_str().unwrap_or("").to_string(),
            p["message"].as_str().unwrap_or("").to_string(),
        ]);
    }
    t.to_string()
}

fn render_versions(v: &Value) -> String {
    let mut t = table(&["version", "created", "message"]);
    for e in v["versions"].as_array().cloned().unwrap_or_default() {
        t.add_row([
            format!("{}:{}", v["name"].as_str().unwrap_or("?"), e["version"]),
            e["created_at"].as_str().unwrap_or("").to_string(),
            e["message"].as_str().unwrap_or("").to_string(),
        ]);
    }
    t.to_string()
}

fn render_inspect(v: &Value) -> String {
    let m = &v["metadata"];
    let mut out = vec![format!(
        "pod {}:{}  ({}, {}){}",
        m["name"].as_str().unwrap_or("?"),
        m["version"],
        m["created_at"].as_str().unwrap_or("?"),
        m["producer"].as_str().unwrap_or("?"),
        if v["encrypted"].as_bool() == Some(true) {
            "  encrypted"
        } else {
            ""
        }
    )];
    if let Some(msg) = m["message"].as_str().filter(|s| !s.is_empty()) {
        out.push(format!("│ {msg}"));
    }
    let layers = v["layers"].as_array().cloned().unwrap_or_default();
    let services = m["services"].as_array().cloned().unwrap_or_default();
    for s in &services {
        let name = s["name"].as_str().unwrap_or("?");
        let stored: u64 = layers
            .iter()
            .filter(|l| l["service"].as_str() == Some(name))
            .map(|l| l["size"].as_u64().unwrap_or(0))
            .sum();
        out.push(format!(
            "├── {name} (state v{}, {} stored)",
            s["state_version"],
            bytes(stored)
        ));
        let scopes = s["scopes"].as_array().cloned().unwrap_or_default();
        for (j, sc) in scopes.iter().enumerate() {
            let res = sc["resources"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let branch = if j + 1 == scopes.len() {
                "└──"
            } else {
                "├──"
            };
            out.push(format!(
                "│   {branch} {}/{}  {res}",
                sc["account"].as_str().unwrap_or("?"),
                sc["region"].as_str().unwrap_or("?")
            ));
        }
    }
    let blob_stored: u64 = layers
        .iter()
        .filter(|l| l["kind"].as_str() == Some("blob"))
        .map(|l| l["size"].as_u64().unwrap_or(0))
        .sum();
    out.push(format!(
        "└── blobs: {} ({}, {} stored)",
        m["blobs"]["count"],
        bytes(m["blobs"]["bytes"].as_u64().unwrap_or(0)),
        bytes(blob_stored)
    ));
    out.push(format!(
        "{} layers, {} stored in {}",
        layers.len(),
        bytes(v["stored_bytes"].as_u64().unwrap_or(0)),
        v["location"].as_str().unwrap_or("?")
    ));
    out.join("\n")
}
