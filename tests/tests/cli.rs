//! The `cryopod` binary's state commands, end to end (issue "Emulator runtime"): real emulator
//! processes, the real CLI, raw HTTP to the example `notes` service (always linked; the
//! AWS-service plugins have their own SDK tests).
//!
//! Build the binary first: `cargo build -p cryopod-emulator`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Output;
use std::sync::mpsc;
use std::time::Duration;

use cryopod_tests::{
    Emulator, Notes, assert_success, aws_json, base64, cli, cli_offline, flip_bit, http,
    linked_services, random_bytes, serve_refused,
};
use serde_json::{Value, json};

const ACCOUNT: &str = "111122223333";
/// Scopes the fixtures use: `test` is not a 12-digit key id, so it maps to the default account.
const SCOPES: [(&str, &str); 3] = [
    ("test", "us-east-1"),
    (ACCOUNT, "eu-west-1"),
    (ACCOUNT, "us-east-1"),
];

/// An emulator running only `notes`, so these tests do not depend on the AWS-service plugins
/// being written concurrently (the `--services` test adds a second service when linked).
fn start() -> Emulator {
    Emulator::start_with(&["--services", "notes"], &[])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failure with a non-zero exit code whose message contains every one of `words`.
#[track_caller]
fn assert_refused(o: &Output, what: &str, words: &[&str]) {
    assert!(
        !o.status.success() && o.status.code().is_some_and(|c| c != 0),
        "{what} should fail with a non-zero exit, got {}:\nstdout: {}",
        o.status,
        stdout(o)
    );
    let msg = format!("{}{}", stdout(o), stderr(o));
    for w in words {
        assert!(
            msg.contains(w),
            "{what}: the message does not mention `{w}`:\n{msg}"
        );
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn parse_json(o: &Output, what: &str) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{what} --json printed no JSON ({e}):\n{}", stdout(o)))
}

/// Fills every scope of [`SCOPES`] with notebooks (with tags) and notes (with and without
/// attachments, one empty, one 1 MiB of random bytes). `variant` makes the content of two
/// fixtures differ, so that a partly applied import would show.
fn populate(emu: &Emulator, variant: &str) {
    for (i, (account, region)) in SCOPES.iter().enumerate() {
        let n = emu.notes(account, region);
        n.create_notebook(
            &format!("{variant}-journal"),
            &[("team", variant), ("scope", region)],
        );
        n.create_notebook(&format!("{variant}-ideas"), &[]);
        for k in 0..3 {
            n.put_note(
                &format!("{variant}-journal"),
                &format!("day-{k}"),
                &format!("{variant} entry {k} in {account}/{region}"),
                Some(format!("attachment {variant} {i} {k}").as_bytes()),
            );
        }
        n.put_note(
            &format!("{variant}-ideas"),
            "empty-attachment",
            "",
            Some(b""),
        );
        n.put_note(&format!("{variant}-ideas"), "plain", "no attachment", None);
        // A second revision, so revisions are part of what must survive.
        n.put_note(
            &format!("{variant}-ideas"),
            "plain",
            "no attachment, revised",
            None,
        );
    }
    emu.notes(ACCOUNT, "eu-west-1").put_note(
        &format!("{variant}-journal"),
        "big",
        "a 1 MiB attachment",
        Some(&random_bytes(7, 1 << 20)),
    );
}

/// Everything observable: the summary and every note of every fixture scope, attachments
/// included (as base64).
fn observe(emu: &Emulator) -> Value {
    let scopes: Vec<Value> = SCOPES
        .iter()
        .map(|(a, r)| json!({ "scope": format!("{a}/{r}"), "notebooks": emu.notes(a, r).dump() }))
        .collect();
    json!({ "summary": emu.summary(), "scopes": scopes })
}

fn export_to(emu: &Emulator, file: &Path, extra: &[&str]) {
    let mut args = vec!["state", "export", path_str(file)];
    args.extend_from_slice(extra);
    assert_success(&emu.cli(&args), "state export");
}

#[test]
fn export_then_import_into_a_fresh_emulator_reproduces_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.cryopod");
    let source = start();
    populate(&source, "src");
    let before = observe(&source);
    export_to(&source, &file, &[]);
    drop(source);

    let target = start();
    assert_eq!(
        target.summary(),
        json!({ "services": { "notes": [] } }),
        "a fresh emulator is empty"
    );
    let out = target.cli(&["state", "import", path_str(&file)]);
    assert_success(&out, "state import");
    assert!(
        stdout(&out).contains("imported with account-region-merge"),
        "{}",
        stdout(&out)
    );

    assert_eq!(
        observe(&target),
        before,
        "the imported state differs from the exported one"
    );
    // Attachments travel as blobs: check one byte for byte, so an empty dump cannot pass.
    let big = target
        .notes(ACCOUNT, "eu-west-1")
        .get_note("src-journal", "big");
    assert_eq!(big["Attachment"], base64(&random_bytes(7, 1 << 20)));
    let empty = target
        .notes(ACCOUNT, "eu-west-1")
        .get_note("src-ideas", "empty-attachment");
    assert_eq!(empty["Attachment"], "");
    assert_eq!(
        target
            .notes("test", "us-east-1")
            .get_note("src-ideas", "plain")["Revision"],
        2
    );
    // What the API does not show (tags) must survive too: the state re-exported from the
    // target encodes to the very same section bytes and blobs.
    let again = dir.path().join("again.cryopod");
    export_to(&target, &again, &[]);
    assert_eq!(contents(&again), contents(&file));
}

/// Digests of a bundle's sections and blobs, checked by a full verification.
fn contents(file: &Path) -> (Vec<(String, String)>, Vec<String>) {
    let f = std::io::BufReader::new(std::fs::File::open(file).unwrap());
    let report = cryopod_bundle::verify(f, Default::default()).expect("an intact bundle");
    let sections = report
        .sections
        .iter()
        .map(|s| (s.service.clone(), s.digest.to_string()))
        .collect();
    let blobs = report.blobs.iter().map(|b| b.digest.to_string()).collect();
    (sections, blobs)
}

/// The service names a bundle holds, from `bundle inspect --json`.
fn bundle_services(file: &Path) -> Vec<String> {
    let out = cli_offline(&["--json", "bundle", "inspect", path_str(file)]);
    assert_success(&out, "bundle inspect");
    parse_json(&out, "bundle inspect")["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

/// A queue with one message in the `sqs` service, through its JSON protocol.
fn sqs_queue_with_a_message(emu: &Emulator, name: &str) {
    let scope = (ACCOUNT, "eu-west-1");
    let (status, v) = aws_json(
        &emu.endpoint,
        scope,
        "sqs",
        "AmazonSQS.CreateQueue",
        &json!({ "QueueName": name }),
    );
    assert_eq!(status, 200, "CreateQueue: {v}");
    let body = json!({ "QueueUrl": v["QueueUrl"], "MessageBody": "hello" });
    let (status, v) = aws_json(&emu.endpoint, scope, "sqs", "AmazonSQS.SendMessage", &body);
    assert_eq!(status, 200, "SendMessage: {v}");
}

#[test]
fn services_flag_on_export_and_import_selects_exactly_those_services() {
    let dir = tempfile::tempdir().unwrap();
    let two = linked_services().iter().any(|s| s == "sqs");
    let running: &[&str] = if two { &["notes", "sqs"] } else { &["notes"] };
    if !two {
        eprintln!(
            "note: this build links no `sqs`, so selection is shown with `notes` alone: the \
             bundle must hold exactly `notes`, and nothing else may be skipped or loaded"
        );
    }
    let args = ["--services", &running.join(",")];
    let source = Emulator::start_with(&args, &[]);
    populate(&source, "src");
    if two {
        sqs_queue_with_a_message(&source, "orders");
    }
    let source_summary = source.summary();

    let everything = dir.path().join("all.cryopod");
    export_to(&source, &everything, &[]);
    assert_eq!(bundle_services(&everything), running);
    for &only in running {
        let file = dir.path().join(format!("{only}.cryopod"));
        export_to(&source, &file, &["--services", only]);
        assert_eq!(bundle_services(&file), [only], "export --services {only}");
    }

    // Import side: the bundle of everything, imported with --services <one>.
    for &only in running {
        let target = Emulator::start_with(&args, &[]);
        let out = target.cli(&[
            "--json",
            "state",
            "import",
            path_str(&everything),
            "--services",
            only,
        ]);
        assert_success(&out, &format!("state import --services {only}"));
        let report = parse_json(&out, "state import");
        let loaded: Vec<&String> = report["loaded"].as_object().unwrap().keys().collect();
        assert_eq!(
            loaded,
            [only],
            "import --services {only} loads exactly {only}: {report}"
        );
        let skipped: Vec<(&str, &str)> = report["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["service"].as_str().unwrap(),
                    s["reason"].as_str().unwrap(),
                )
            })
            .collect();
        let others: Vec<(&str, &str)> = running
            .iter()
            .filter(|s| **s != only)
            .map(|s| (*s, "not-selected"))
            .collect();
        assert_eq!(
            skipped, others,
            "every other service of the bundle is reported: {report}"
        );
        let summary = target.summary();
        for &s in running {
            let expected = if s == only {
                source_summary["services"][s].clone()
            } else {
                json!([])
            };
            assert_eq!(
                summary["services"][s], expected,
                "{s} after import --services {only}"
            );
        }
        if only == "notes" {
            assert_eq!(
                target.notes(ACCOUNT, "eu-west-1").dump(),
                source.notes(ACCOUNT, "eu-west-1").dump()
            );
        }
    }
}

#[test]
fn an_unknown_service_name_in_services_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start();
    populate(&emu, "run");
    let before = observe(&emu);

    let file = dir.path().join("never.cryopod");
    for list in ["nosuch", "notes,nosuch"] {
        let out = emu.cli(&["state", "export", path_str(&file), "--services", list]);
        assert_refused(
            &out,
            &format!("export --services {list}"),
            &["nosuch", "notes"],
        );
        assert!(
            !file.exists(),
            "a refused export must not leave a file behind"
        );
    }

    // A bundle unlike the running state (one more note), big enough that the refusal comes
    // while most of the upload is unread.
    let notes = emu.notes(ACCOUNT, "eu-west-1");
    notes.put_note(
        "run-ideas",
        "huge",
        "8 MiB",
        Some(&random_bytes(8, 8 << 20)),
    );
    let good = dir.path().join("good.cryopod");
    export_to(&emu, &good, &[]);
    notes.ok(
        "DeleteNote",
        json!({"NotebookName": "run-ideas", "Key": "huge"}),
    );
    assert_eq!(observe(&emu), before);
    let out = emu.cli(&[
        "state",
        "import",
        path_str(&good),
        "--services",
        "nosuch",
        "--merge",
        "overwrite",
    ]);
    assert_refused(&out, "import --services nosuch", &["nosuch"]);
    assert_eq!(
        observe(&emu),
        before,
        "a refused import changed the running state"
    );
}

/// A PNG file's first bytes: signature and the start of an IHDR chunk.
const PNG_HEADER: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x10, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0xF3, 0xFF,
    0x61,
];

#[test]
fn importing_a_damaged_or_foreign_file_fails_naming_the_problem_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good_file = dir.path().join("good.cryopod");
    {
        let source = start();
        populate(&source, "bundle");
        // Big enough that an early refusal leaves most of the upload unread.
        let huge = random_bytes(8, 8 << 20);
        source
            .notes(ACCOUNT, "eu-west-1")
            .put_note("bundle-ideas", "huge", "8 MiB", Some(&huge));
        export_to(&source, &good_file, &[]);
    }
    let good = std::fs::read(&good_file).unwrap();
    let flipped = |at: usize| {
        let mut b = good.clone();
        b[at] ^= 0x10;
        b
    };
    let len = good.len();
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("an empty file", Vec::new(), &["truncated"]),
        (
            "a PNG image",
            PNG_HEADER.to_vec(),
            &["not a cryopod bundle"],
        ),
        (
            "random bytes",
            random_bytes(99, 64 * 1024),
            &["not a cryopod bundle"],
        ),
        (
            "a bundle cut in half",
            good[..len / 2].to_vec(),
            &["truncated"],
        ),
        (
            "a bundle missing its last byte",
            good[..len - 1].to_vec(),
            &["truncated"],
        ),
        (
            "a bit flip in the manifest",
            flipped(40),
            &["checksum", "manifest"],
        ),
        ("a bit flip in the middle", flipped(len / 2), &["corrupt"]),
        ("a bit flip in the footer", flipped(len - 3), &["footer"]),
        (
            "a bundle with bytes appended",
            [good.as_slice(), b"junk"].concat(),
            &["trailing"],
        ),
    ];

    let target = start();
    populate(&target, "running");
    let before = observe(&target);
    for (what, bytes, words) in cases {
        let file = dir.path().join("bad.cryopod");
        std::fs::write(&file, &bytes).unwrap();
        // Overwrite is the merge that would do the most damage if anything were applied.
        let out = target.cli(&["state", "import", path_str(&file), "--merge", "overwrite"]);
        assert_refused(&out, &format!("importing {what}"), words);
        assert_eq!(
            observe(&target),
            before,
            "importing {what} changed the running state"
        );
    }
    // The same emulator still imports an intact bundle afterwards.
    assert_success(
        &target.cli(&[
            "state",
            "import",
            path_str(&good_file),
            "--merge",
            "overwrite",
        ]),
        "importing the intact bundle",
    );
    assert_eq!(
        target.notes(ACCOUNT, "eu-west-1").list_notebooks(),
        ["bundle-ideas", "bundle-journal"]
    );
}

#[test]
fn requests_are_served_while_a_large_export_streams() {
    const ATTACHMENT: usize = 16 * 1024 * 1024; // the service's per-attachment limit
    const COUNT: usize = 13; // 208 MiB of attachments
    let emu = start();
    let notes = emu.notes(ACCOUNT, "eu-west-1");
    notes.create_notebook("big", &[]);
    // Random, so compression cannot shrink the export; distinct, because the first 6 bytes
    // (8 base64 characters) of each attachment hold its index.
    let b64 = base64(&random_bytes(42, ATTACHMENT));
    for i in 0..COUNT {
        let prefix = base64(&(i as u64).to_le_bytes()[..6]);
        let body = format!(
            r#"{{"NotebookName":"big","Key":"part-{i:02}","Text":"part {i}","Attachment":"{prefix}{}"}}"#,
            &b64[8..]
        );
        let (status, answer) = notes.call_text("PutNote", body);
        assert_eq!(status, 200, "PutNote part-{i:02}: {answer}");
    }
    let attachment_bytes = (COUNT * ATTACHMENT) as u64;

    // Start the export and read only its first MiB: the rest stays in flight.
    let mut export = http()
        .get(format!("{}/_cryopod/state", emu.endpoint))
        .send()
        .expect("GET /_cryopod/state");
    assert!(
        export.status().is_success(),
        "export answered {}",
        export.status()
    );
    let mut head = vec![0u8; 1 << 20];
    export
        .read_exact(&mut head)
        .expect("the first MiB of the export");

    let (tx, rx) = mpsc::channel();
    let endpoint = emu.endpoint.clone();
    std::thread::spawn(move || {
        let n = Notes::new(&endpoint, ACCOUNT, "eu-west-1");
        let revision = n.put_note("big", "during-export", "written mid-export", Some(b"mid"));
        let _ = tx.send((revision, n.get_note("big", "during-export")));
    });
    let (revision, note) = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(answer) => answer,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("PutNote + GetNote got no answer while an export was streaming")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the mid-export requests failed"),
    };
    let received_when_answered = head.len() as u64;
    assert_eq!(revision, 1);
    assert_eq!(note["Text"], "written mid-export");
    assert_eq!(note["Attachment"], base64(b"mid"));

    // Now read the rest: the export was far from finished when the requests were answered.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.cryopod");
    let mut out = std::fs::File::create(&file).unwrap();
    out.write_all(&head).unwrap();
    let rest = std::io::copy(&mut export, &mut out).expect("the rest of the export");
    out.sync_all().unwrap();
    let total = received_when_answered + rest;
    assert!(
        total > attachment_bytes && received_when_answered < total,
        "the export holds {total} bytes for {attachment_bytes} bytes of random attachments; \
         {received_when_answered} of them had been received when the requests were answered"
    );
    // The export is the state at its start: all parts, not the note written during it.
    let inspect = cli_offline(&["--json", "bundle", "inspect", path_str(&file)]);
    assert_success(&inspect, "bundle inspect of the big export");
    let v = parse_json(&inspect, "bundle inspect");
    assert_eq!(
        v["services"][0]["scopes"][0]["resources"]["note"], COUNT as u64,
        "{v}"
    );
    assert_eq!(v["blobs"]["count"], COUNT as u64, "{v}");
    assert_eq!(v["blobs"]["bytes"], attachment_bytes, "{v}");
    assert_eq!(
        notes.list_notes("big").len(),
        COUNT + 1,
        "the mid-export note stays in the running state"
    );
}

#[test]
fn bundle_verify_accepts_an_intact_file_and_rejects_any_flipped_bit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.cryopod");
    let emu = start();
    populate(&emu, "v");
    export_to(&emu, &file, &[]);
    drop(emu);

    let out = cli_offline(&["bundle", "verify", path_str(&file)]);
    assert_success(&out, "bundle verify of an intact bundle");
    assert!(stdout(&out).contains("intact"), "{}", stdout(&out));

    let len = std::fs::metadata(&file).unwrap().len();
    let damaged = dir.path().join("damaged.cryopod");
    // Header, manifest, sections, blobs, index and footer: positions spread over the file.
    let positions: Vec<u64> = (0..16).map(|i| i * (len - 1) / 15).collect();
    for (i, at) in positions.into_iter().enumerate() {
        std::fs::copy(&file, &damaged).unwrap();
        flip_bit(&damaged, at, (i % 8) as u8);
        let out = cli_offline(&["bundle", "verify", path_str(&damaged)]);
        assert_refused(
            &out,
            &format!("bundle verify with bit {} of byte {at} flipped", i % 8),
            &["damaged"],
        );
    }
}

#[test]
fn inspect_commands_show_services_scopes_and_counts_and_json_output_parses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.cryopod");
    let emu = start();
    populate(&emu, "i");
    let summary = emu.summary();
    let scopes = summary["services"]["notes"].as_array().unwrap().clone();
    assert_eq!(scopes.len(), SCOPES.len(), "{summary}");

    let out = emu.cli(&["--json", "state", "export", path_str(&file)]);
    assert_success(&out, "state export --json");
    let exported = parse_json(&out, "state export");
    assert_eq!(exported["bytes"], std::fs::metadata(&file).unwrap().len());

    // Human output of both offline inspectors names the service, each scope and its counts.
    for cmd in [["bundle", "inspect"], ["state", "inspect"]] {
        let out = cli_offline(&[cmd[0], cmd[1], path_str(&file)]);
        assert_success(&out, &cmd.join(" "));
        let text = stdout(&out);
        assert!(text.contains("notes"), "{text}");
        for s in &scopes {
            let row = text
                .lines()
                .find(|l| {
                    l.contains(s["account"].as_str().unwrap())
                        && l.contains(s["region"].as_str().unwrap())
                })
                .unwrap_or_else(|| panic!("{} shows no row for scope {s}:\n{text}", cmd.join(" ")));
            for (kind, n) in s["resources"].as_object().unwrap() {
                assert!(
                    row.contains(&format!("{kind}: {n}")),
                    "row `{row}` lacks {kind}: {n}"
                );
            }
        }

        let out = cli_offline(&["--json", cmd[0], cmd[1], path_str(&file)]);
        assert_success(&out, &format!("{} --json", cmd.join(" ")));
        let v = parse_json(&out, &cmd.join(" "));
        assert_eq!(v["services"][0]["name"], "notes", "{v}");
        assert_eq!(
            v["services"][0]["scopes"],
            Value::Array(scopes.clone()),
            "{v}"
        );
        assert!(v["blobs"]["count"].as_u64().unwrap() > 0, "{v}");
    }

    let out = cli_offline(&["--json", "bundle", "verify", path_str(&file)]);
    assert_success(&out, "bundle verify --json");
    let v = parse_json(&out, "bundle verify");
    assert_eq!(v["ok"], true);
    assert_eq!(v["services"], json!(["notes"]));

    let out = emu.cli(&["--json", "state", "inspect"]);
    assert_success(&out, "state inspect --json");
    assert_eq!(parse_json(&out, "state inspect"), summary);

    let out = emu.cli(&["--json", "health"]);
    assert_success(&out, "health --json");
    assert_eq!(parse_json(&out, "health")["services"]["notes"], "running");

    let out = emu.cli(&["--json", "state", "reset"]);
    assert_success(&out, "state reset --json");
    assert_eq!(parse_json(&out, "state reset")["reset"], json!(["notes"]));

    let out = emu.cli(&["--json", "state", "import", path_str(&file)]);
    assert_success(&out, "state import --json");
    let v = parse_json(&out, "state import");
    assert_eq!(v["loaded"]["notes"], Value::Array(scopes), "{v}");
    assert_eq!(emu.summary(), summary);
}

#[test]
fn cli_mistakes_exit_non_zero_with_a_message_that_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.cryopod");
    let emu = start();
    populate(&emu, "m");
    export_to(&emu, &file, &[]);
    let before = observe(&emu);

    let out = emu.cli(&["state", "import", path_str(&file), "--merge", "sideways"]);
    assert_refused(
        &out,
        "import --merge sideways",
        &[
            "sideways",
            "overwrite",
            "account-region-merge",
            "service-merge",
        ],
    );
    assert_eq!(
        observe(&emu),
        before,
        "a refused import changed the running state"
    );

    // A port that nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("http://127.0.0.1:{port}");
    let out_file = dir.path().join("never.cryopod");
    for args in [
        vec!["state", "export", path_str(&out_file)],
        vec!["state", "import", path_str(&file)],
        vec!["state", "inspect"],
        vec!["health"],
    ] {
        let out = cli(&nowhere, &args);
        assert_refused(
            &out,
            &format!("{args:?} against {nowhere}"),
            &["cannot reach the emulator", &nowhere],
        );
    }
    assert!(
        !out_file.exists(),
        "a failed export must not leave a file behind"
    );
    // With --json the error is JSON too, so scripts can rely on it.
    let out = cli(&nowhere, &["--json", "health"]);
    assert!(!out.status.success());
    let v = parse_json(&out, "a failing command");
    assert_eq!(v["error"]["code"], "EmulatorUnreachable", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach the emulator"),
        "{v}"
    );

    let missing = dir.path().join("no-such-file.cryopod");
    let missing_s = path_str(&missing);
    let out = emu.cli(&["state", "import", missing_s]);
    assert_refused(
        &out,
        "import of a missing file",
        &["cannot open", missing_s],
    );
    for args in [
        ["bundle", "verify", missing_s],
        ["bundle", "inspect", missing_s],
        ["state", "inspect", missing_s],
    ] {
        let out = cli_offline(&args);
        assert_refused(&out, &format!("{args:?}"), &["cannot open", missing_s]);
    }
    assert_eq!(observe(&emu), before);
}

#[test]
fn listening_beyond_loopback_is_refused_without_allow_remote() {
    for listen in ["0.0.0.0:0", "192.0.2.10:4566"] {
        let out = serve_refused(&["--listen", listen], &[]);
        assert_refused(
            &out,
            &format!("serve --listen {listen}"),
            &[listen, "--allow-remote"],
        );
    }
    let out = serve_refused(&[], &[("CRYOPOD_LISTEN", "0.0.0.0:0")]);
    assert_refused(
        &out,
        "CRYOPOD_LISTEN=0.0.0.0:0",
        &["0.0.0.0:0", "--allow-remote"],
    );
}
