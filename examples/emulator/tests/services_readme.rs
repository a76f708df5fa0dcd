//! The README's `## Services` table lists, per service, exactly the operations the service's
//! registration lists (`cryopod::plugin!`'s `operations`), which each plugin's own tests check
//! are dispatched: so the table cannot drift from the code.

use std::path::Path;

/// Names every plugin crate so its registration is linked into this test.
const SERVICES: &[&str] = &[
    cryopod_dynamodb::SERVICE,
    cryopod_iam::SERVICE,
    cryopod_lambda::SERVICE,
    cryopod_notes::SERVICE,
    cryopod_s3::SERVICE,
    cryopod_secretsmanager::SERVICE,
    cryopod_sqs::SERVICE,
    cryopod_ssm::SERVICE,
    cryopod_sts::SERVICE,
];

/// The table as the registry says it must read: one row per service, in name order.
fn expected_rows() -> Vec<String> {
    cryopod::registrations()
        .into_iter()
        .filter(|r| SERVICES.contains(&r.service))
        .map(|r| format!("| `{}` | {} |", r.service, r.operations.join(", ")))
        .collect()
}

/// The rows of the first table under `## Services` in the README.
fn readme_rows(readme: &str) -> Vec<String> {
    let Some(start) = readme.find("\n## Services\n") else {
        return Vec::new();
    };
    readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| l.trim_end().to_string())
        .collect()
}

#[test]
fn readme_service_table_matches_the_registered_operations() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md reads");
    let expected = expected_rows();
    assert_eq!(
        expected.len(),
        SERVICES.len(),
        "every service is registered"
    );
    assert_eq!(
        readme_rows(&readme),
        expected,
        "README.md's `## Services` table differs from the registrations; it should read:\n\n| service | operations |\n| --- | --- |\n{}\n",
        expected.join("\n")
    );
}
