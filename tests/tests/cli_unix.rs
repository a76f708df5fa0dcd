//! The `cryopod` CLI behaves like a Unix tool (issue #19), through the real binary: a closed
//! pipe ends a command quietly, `--json` errors have the internal API's shape, human output
//! is sentences and tables, every `--help` names the environment it reads (and `serve
//! --help` and README.md's configuration table name the same settings), and a remote says
//! where its requests go.
//!
//! Build the binary first: `cargo build -p cryopod-emulator`.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cryopod_tests::{
    Emulator, assert_success, binary, cli, cli_offline, flip_bit, random_bytes, serve_refused,
};
use serde_json::Value;

/// Variables that would change what the CLI does; removed from every process started here.
const CLI_ENV: &[&str] = &[
    "CRYOPOD_ENDPOINT",
    "POD_SECRET",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A command whose stdout is a pipe; `read` bytes are read before the reading end closes
/// (0: closed before the command can write anything).
fn with_closed_stdout(args: &[&str], read: usize) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in CLI_ENV {
        cmd.env_remove(k);
    }
    let mut child = cmd.spawn().expect("spawn cryopod");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut got = vec![0u8; read];
    stdout.read_exact(&mut got).expect("read the first bytes");
    drop(stdout);
    child.wait_with_output().expect("wait for cryopod")
}

#[track_caller]
fn assert_quiet_exit(o: &Output, what: &str) {
    let err = text(&o.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe") && !err.contains("os error 32"),
        "{what} complained about the closed pipe:\n{err}"
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{what} did not exit quietly ({}):\n{err}",
        o.status
    );
}

/// A loopback port nothing listens on (just released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// An emulator with persistence, running only `notes`, with one notebook and pod `seed:1`.
fn seeded() -> Emulator {
    let emu = Emulator::start_with(&["--services", "notes", "--persistence"], &[]);
    emu.notes("test", "us-east-1").create_notebook("books", &[]);
    assert_success(
        &emu.cli(&["pod", "save", "seed", "-m", "first"]),
        "pod save",
    );
    emu
}

#[test]
fn a_closed_pipe_ends_every_printing_command_quietly() {
    let emu = seeded();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.cryopod");
    let file_s = file.to_str().unwrap();
    assert_success(&emu.cli(&["state", "export", file_s]), "state export");
    let shelf = format!("file://{}", dir.path().join("shelf").display());
    let e = emu.endpoint.as_str();
    let commands: Vec<Vec<&str>> = vec![
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["--version"],
        vec!["health"],
        vec!["state", "inspect"],
        vec!["state", "inspect", file_s],
        vec!["state", "save"],
        vec!["state", "load"],
        vec!["state", "export", "-"],
        vec!["state", "export", file_s],
        vec!["state", "import", file_s],
        vec!["bundle", "inspect", file_s],
        vec!["bundle", "verify", file_s],
        vec!["pod", "save", "seed"],
        vec!["pod", "list"],
        vec!["pod", "versions", "seed"],
        vec!["pod", "inspect", "seed"],
        vec!["pod", "load", "seed:1", "--dry-run"],
        vec!["pod", "load", "seed:1"],
        vec!["pod", "remote", "add", "shelf", &shelf],
        vec!["pod", "remote", "list"],
        vec!["pod", "save", "seed", "shelf"],
        vec!["pod", "list", "shelf"],
        vec!["state", "reset"],
    ];
    // Each once, for people and with --json (run in this order, after the above).
    let once: Vec<Vec<&str>> = vec![
        vec!["pod", "delete", "seed:1", "shelf"],
        vec!["--json", "pod", "delete", "seed:2", "shelf"],
        vec!["pod", "remote", "remove", "shelf"],
        vec!["pod", "remote", "add", "shelf", &shelf],
        vec!["--json", "pod", "remote", "remove", "shelf"],
        vec!["pod", "delete", "seed:2"],
        vec!["--json", "pod", "delete", "seed:3"],
    ];
    let runs = commands
        .iter()
        .flat_map(|args| {
            let mut json = vec!["--json"];
            json.extend(args);
            [args.clone(), json]
        })
        .chain(once);
    for args in runs {
        {
            let mut full = vec!["--endpoint", e];
            full.extend(&args);
            let out = with_closed_stdout(&full, 0);
            assert_quiet_exit(&out, &format!("{full:?} with stdout closed"));
        }
    }
    // A long output whose reader stops after one byte (`| head -c1`).
    let notes = emu.notes("test", "us-east-1");
    notes.create_notebook("books", &[]);
    for i in 0..8 {
        let attachment = random_bytes(i, 128 * 1024);
        notes.put_note("books", &format!("n{i}"), "big", Some(&attachment));
    }
    let out = with_closed_stdout(&["--endpoint", e, "state", "export", "-"], 1);
    assert_quiet_exit(&out, "state export - | head -c1");
}

#[test]
fn serve_keeps_serving_when_its_stdout_is_closed() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(binary());
    cmd.args(["serve", "--listen", &listen, "--services", "notes"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn cryopod serve");
    drop(child.stdout.take());
    let endpoint = format!("http://{listen}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let healthy = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("serve exited when its stdout closed: {status}");
        }
        if cli(&endpoint, &["--json", "health"]).status.success() {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(healthy, "serve never answered with its stdout closed");
}

/// Parses `out`'s stdout as the error document and returns its code and message, asserting
/// the exact shape `{"error": {"code": "...", "message": "..."}}`.
#[track_caller]
fn error_of(out: &Output, what: &str) -> (String, String) {
    assert!(!out.status.success(), "{what} should fail");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", text(&out.stdout)));
    error_shape(&v, what)
}

#[track_caller]
fn error_shape(v: &Value, what: &str) -> (String, String) {
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(keys(v), ["error"], "{what}: {v}");
    assert_eq!(keys(&v["error"]), ["code", "message"], "{what}: {v}");
    let code = v["error"]["code"].as_str().expect("code is a string");
    let message = v["error"]["message"].as_str().expect("message is a string");
    (code.to_string(), message.to_string())
}

#[test]
fn json_errors_have_the_api_shape_with_its_code_or_the_clis() {
    let emu = seeded();
    // The emulator refused: its code passes through.
    let (code, msg) = error_of(
        &emu.cli(&["--json", "pod", "load", "ghost"]),
        "pod load ghost",
    );
    assert_eq!(code, "PodNotFound");
    assert!(msg.contains("ghost"), "{msg}");
    let (code, _) = error_of(
        &emu.cli(&["--json", "state", "reset", "--services", "nope"]),
        "reset of an unknown service",
    );
    assert_eq!(code, "UnknownService");
    let (code, _) = error_of(
        &emu.cli(&["--json", "pod", "load", "seed", "--merge", "sideways"]),
        "pod load --merge sideways",
    );
    assert_eq!(code, "UnknownMergeStrategy");
    // The API itself answers the same shape.
    let resp = cryopod_tests::http()
        .get(format!("{}/_cryopod/pods/pod/ghost", emu.endpoint))
        .send()
        .expect("GET pod");
    assert_eq!(resp.status().as_u16(), 404);
    let (code, _) = error_shape(&resp.json().expect("JSON"), "GET /_cryopod/pods/pod/ghost");
    assert_eq!(code, "PodNotFound");
    // People read the message and the code on stderr.
    let out = emu.cli(&["pod", "load", "ghost"]);
    assert!(
        text(&out.stderr).starts_with("error: ") && text(&out.stderr).contains("(PodNotFound)"),
        "{}",
        text(&out.stderr)
    );

    // The CLI's own failures.
    let port = free_port();
    let nowhere = format!("http://127.0.0.1:{port}");
    for args in [vec!["--json", "health"], vec!["--json", "pod", "list"]] {
        let (code, msg) = error_of(&cli(&nowhere, &args), "a command without an emulator");
        assert_eq!(code, "EmulatorUnreachable");
        assert!(msg.contains(&nowhere), "{msg}");
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.cryopod");
    let missing_s = missing.to_str().unwrap();
    let (code, msg) = error_of(
        &emu.cli(&["--json", "state", "import", missing_s]),
        "import of a missing file",
    );
    assert_eq!(code, "FileNotFound");
    assert!(msg.contains(missing_s), "{msg}");
    let (code, _) = error_of(
        &cli_offline(&["--json", "bundle", "verify", missing_s]),
        "verify of a missing file",
    );
    assert_eq!(code, "FileNotFound");
    let file = dir.path().join("state.cryopod");
    assert_success(
        &emu.cli(&["state", "export", file.to_str().unwrap()]),
        "export",
    );
    let len = std::fs::metadata(&file).unwrap().len();
    flip_bit(&file, len / 2, 3);
    let (code, _) = error_of(
        &cli_offline(&["--json", "bundle", "verify", file.to_str().unwrap()]),
        "verify of a damaged bundle",
    );
    assert_eq!(code, "CorruptBundle");
    let (code, _) = error_of(
        &emu.cli(&[
            "--json", "state", "import", missing_s, "--merge", "sideways",
        ]),
        "import --merge sideways",
    );
    assert_eq!(code, "UnknownMergeStrategy");
    let (code, msg) = error_of(
        &serve_refused(&["--json", "--listen", "0.0.0.0:0"], &[]),
        "serve beyond loopback",
    );
    assert_eq!(code, "InvalidArgument");
    assert!(msg.contains("--allow-remote"), "{msg}");
}

/// Asserts `out` succeeded with output for people: not JSON, no JSON object in it, and
/// every one of `words`.
#[track_caller]
fn assert_human(out: &Output, what: &str, words: &[&str]) -> String {
    assert_success(out, what);
    let s = text(&out.stdout);
    assert!(
        serde_json::from_str::<Value>(&s).is_err() && !s.contains("{\""),
        "{what} printed JSON without --json:\n{s}"
    );
    for w in words {
        assert!(s.contains(w), "{what} does not mention `{w}`:\n{s}");
    }
    s
}

#[test]
fn human_output_is_sentences_and_tables() {
    let emu = seeded();
    assert_human(
        &emu.cli(&["health"]),
        "health",
        &[
            "cryopod ",
            "services",
            "notes",
            "running",
            "persistence: on",
            "SCHEDULED",
            "last save",
            "journal",
            "last error: none",
        ],
    );
    assert_human(
        &emu.cli(&["state", "inspect"]),
        "state inspect",
        &["service", "account", "region", "resources", "notes"],
    );
    assert_human(
        &emu.cli(&["state", "save"]),
        "state save",
        &["saved notes", "written"],
    );
    assert_human(
        &emu.cli(&["health"]),
        "health after a save",
        &["last save: ", "notes ("],
    );
    assert_human(&emu.cli(&["state", "load"]), "state load", &["loaded"]);
    assert_human(
        &emu.cli(&["pod", "list"]),
        "pod list",
        &["pod", "versions", "latest", "seed", "first"],
    );
    assert_human(
        &emu.cli(&["pod", "versions", "seed"]),
        "pod versions",
        &["version", "seed:1", "first"],
    );
    assert_human(
        &emu.cli(&["pod", "inspect", "seed"]),
        "pod inspect",
        &["pod seed:1", "notes", "layers"],
    );
    assert_human(
        &emu.cli(&["pod", "save", "seed", "-m", "second"]),
        "pod save",
        &["saved seed:2", "layers"],
    );
    emu.notes("test", "us-east-1").create_notebook("extra", &[]);
    assert_human(
        &emu.cli(&["pod", "load", "seed:2", "--dry-run"]),
        "pod load --dry-run",
        &["dry run of loading seed:2", "notes", "to delete"],
    );
    assert_human(
        &emu.cli(&["pod", "load", "seed:2"]),
        "pod load",
        &["loaded seed:2", "notes"],
    );
    assert_human(
        &emu.cli(&["state", "reset"]),
        "state reset",
        &["reset notes"],
    );
    // --json keeps its documents.
    let v: Value = serde_json::from_slice(&emu.cli(&["--json", "health"]).stdout).unwrap();
    assert_eq!(v["services"]["notes"], "running");
    assert_eq!(v["persistence"]["enabled"], true);
}

#[test]
fn a_dry_run_caps_long_lists() {
    let emu = Emulator::start_with(&["--services", "notes"], &[]);
    assert_success(&emu.cli(&["pod", "save", "empty"]), "pod save");
    for i in 0..30 {
        emu.notes("test", "us-east-1")
            .create_notebook(&format!("nb{i:02}"), &[]);
    }
    let out = emu.cli(&["pod", "load", "empty", "--merge", "overwrite", "--dry-run"]);
    let s = assert_human(&out, "dry run", &["… and 10 more"]);
    let listed = s
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .count();
    assert_eq!(listed, 20, "{s}");
}

/// The environment variables a `--help` names: `[env: NAME=…]` of options and the first
/// column of its `Environment` section.
fn help_env(help: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for part in help.split("[env: ").skip(1) {
        if let Some((name, _)) = part.split_once('=') {
            names.insert(name.to_string());
        }
    }
    let Some((_, section)) = help.split_once("\nEnvironment") else {
        return names;
    };
    for line in section.lines().skip(1) {
        let first = line.trim_start().split("  ").next().unwrap_or("");
        for name in first.split(", ") {
            if is_env_name(name) {
                names.insert(name.to_string());
            }
        }
    }
    names
}

fn is_env_name(s: &str) -> bool {
    s.len() > 2
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The variables of README.md's configuration table (backticked names in its first column).
fn readme_env() -> BTreeSet<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (_, section) = readme
        .split_once("\n## Configuration")
        .expect("README.md has a Configuration section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut names = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let first = row.trim_start_matches('|').split('|').next().unwrap_or("");
        for name in first.split('`').skip(1).step_by(2) {
            if is_env_name(name) {
                names.insert(name.to_string());
            }
        }
    }
    names
}

#[test]
fn serve_help_and_the_readme_configuration_table_name_the_same_settings() {
    let out = cli_offline(&["serve", "--help"]);
    assert_success(&out, "serve --help");
    let help = help_env(&text(&out.stdout));
    for name in [
        "AUTO_LOAD_POD",
        "MERGE_STRATEGY",
        "POD_SECRET",
        "CRYOPOD_ENDPOINT",
        "CRYOPOD_LAUNCH_MAX_BYTES",
        "CRYOPOD_AGE_WORK_FACTOR",
        "CRYOPOD_BACKGROUND_NICE",
        "CRYOPOD_BLOB_GC_GRACE_SECONDS",
        "DATA_DIR",
        "PERSISTENCE",
        "SNAPSHOT_SAVE_STRATEGY",
        "SERVICES",
        "ON_CORRUPT",
        "RUST_LOG",
        "AWS_ENDPOINT_URL_S3",
    ] {
        assert!(help.contains(name), "serve --help does not name {name}");
    }
    let readme = readme_env();
    let only_help: Vec<_> = help.difference(&readme).collect();
    let only_readme: Vec<_> = readme.difference(&help).collect();
    assert!(
        only_help.is_empty() && only_readme.is_empty(),
        "serve --help and README.md's configuration table disagree:\n  only in serve --help: {only_help:?}\n  only in README.md: {only_readme:?}"
    );
}

#[test]
fn every_command_help_names_the_environment_it_reads() {
    let client: &[&[&str]] = &[
        &["health"],
        &["state"],
        &["state", "export"],
        &["state", "import"],
        &["state", "reset"],
        &["state", "inspect"],
        &["state", "save"],
        &["state", "load"],
        &["pod"],
        &["pod", "list"],
        &["pod", "versions"],
        &["pod", "inspect"],
        &["pod", "delete"],
        &["pod", "remote"],
        &["pod", "remote", "add"],
        &["pod", "remote", "remove"],
        &["pod", "remote", "list"],
    ];
    for args in client {
        let mut full = args.to_vec();
        full.push("--help");
        let out = cli_offline(&full);
        assert_success(&out, &format!("{full:?}"));
        let help = text(&out.stdout);
        let env = help_env(&help);
        assert!(
            help.contains("\nEnvironment") && env.contains("CRYOPOD_ENDPOINT"),
            "{full:?} does not list its environment:\n{help}"
        );
    }
    for args in [["pod", "save", "--help"], ["pod", "load", "--help"]] {
        let help = text(&cli_offline(&args).stdout);
        let env = help_env(&help);
        assert!(
            env.contains("POD_SECRET") && env.contains("CRYOPOD_ENDPOINT"),
            "{args:?}:\n{help}"
        );
        assert!(help.contains("the emulator's environment"), "{help}");
    }
    for args in [
        ["bundle", "inspect", "--help"],
        ["bundle", "verify", "--help"],
    ] {
        let help = text(&cli_offline(&args).stdout);
        assert!(help.contains("Environment: none"), "{args:?}:\n{help}");
    }
}

/// Asserts that `out`'s stderr (where notices go, beside the output) has every one of `words`.
#[track_caller]
fn assert_notice(out: &Output, words: &[&str]) {
    let err = text(&out.stderr);
    for w in words {
        assert!(err.contains(w), "no notice with `{w}` on stderr:\n{err}");
    }
}

#[test]
fn remotes_say_where_their_requests_go() {
    let emu = Emulator::start_with(&["--services", "notes"], &[]);
    // AWS itself: allowed, never silent. (Nothing here contacts it.)
    let out = emu.cli(&["pod", "remote", "add", "team", "s3://pods-bucket/cryopod"]);
    assert_human(&out, "remote add s3://", &["added remote team"]);
    assert_notice(
        &out,
        &[
            "s3://pods-bucket/cryopod → AWS S3 itself",
            "AWS_ENDPOINT_URL_S3",
            "credentials from the emulator's environment",
        ],
    );
    let out = emu.cli(&[
        "--json",
        "pod",
        "remote",
        "add",
        "team",
        "s3://pods-bucket/cryopod",
    ]);
    assert_success(&out, "remote add --json");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["added"], "team");
    assert_eq!(v["remote_target"]["aws"], true, "{v}");
    assert_eq!(v["remote_target"]["endpoint"], Value::Null, "{v}");

    // An explicit endpoint, on a port where nothing listens: the target is printed before
    // the failure.
    let port = free_port();
    let url = format!("s3://b/p?endpoint=http://127.0.0.1:{port}");
    let out = emu.cli(&["pod", "remote", "add", "mini", &url]);
    assert_human(&out, "remote add ?endpoint=", &["added remote mini"]);
    assert_notice(
        &out,
        &[&format!("→ http://127.0.0.1:{port} (from ?endpoint=)")],
    );
    let out = emu.cli(&["pod", "list", "mini"]);
    assert!(!out.status.success());
    assert_notice(
        &out,
        &[&format!(
            "remote {url} → http://127.0.0.1:{port} (from ?endpoint=)"
        )],
    );
    assert_human(
        &emu.cli(&["pod", "remote", "list"]),
        "remote list",
        &[
            "team",
            "mini",
            "AWS S3",
            &format!("http://127.0.0.1:{port}"),
            "emulator's environment",
        ],
    );

    // A directory remote: named in a notice and in the JSON.
    let dir = tempfile::tempdir().unwrap();
    let shelf = format!("file://{}", dir.path().display());
    let out = emu.cli(&["--json", "pod", "save", "seed", &shelf]);
    assert_success(&out, "pod save to a directory");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["remote_target"]["kind"], "file", "{v}");
    assert_eq!(v["version"], 1, "{v}");
    let out = emu.cli(&["pod", "versions", "seed", &shelf]);
    assert_human(&out, "pod versions on a directory", &["seed:1"]);
    assert_notice(&out, &[&format!("{shelf} → {}", dir.path().display())]);
}
