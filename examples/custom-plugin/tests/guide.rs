//! The README is the plugin author's guide, and the example is its test: every code block
//! in it that names a source file (`// src/lib.rs` as its first line) must appear in that
//! file as written, so what the guide shows is what compiles here.

use std::path::Path;

/// `(file, code)` of each code block whose first line is `// src/…`.
fn quoted_blocks(readme: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with("```rust") {
            continue;
        }
        let block: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        if let Some(file) = block.first().and_then(|l| l.strip_prefix("// "))
            && file.starts_with("src/")
        {
            out.push((file.to_string(), block[1..].join("\n")));
        }
    }
    out
}

#[test]
fn every_code_block_the_guide_quotes_is_in_the_source() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README reads");
    let blocks = quoted_blocks(&readme);
    assert!(
        blocks.len() >= 3,
        "the guide quotes the registration, provider and handler"
    );
    for (file, code) in blocks {
        let source = std::fs::read_to_string(root.join(&file)).expect("quoted file reads");
        assert!(
            source.contains(&code),
            "README.md quotes {file}, but the file no longer contains:\n{code}"
        );
    }
}

#[test]
fn the_registration_the_guide_shows_is_the_one_that_runs() {
    assert_eq!(cryopod_notes::SERVICE, "notes");
    assert_eq!(cryopod_notes::STATE_VERSION, 2);
    let reg = cryopod::registrations()
        .into_iter()
        .find(|r| r.service == "notes")
        .expect("notes registered");
    assert_eq!(reg.state_version, Some(2));
    assert_eq!(reg.operations, cryopod_notes::api::OPERATIONS);
}
