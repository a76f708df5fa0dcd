//! The reference emulator build: the framework's CLI plus the plugins chosen by cargo
//! features. Everything interesting lives in the `cryopod` crate and the plugin crates.
// Warns when a plugin crate is a dependency but not named (so not linked); off for the test
// build, which also sees the benchmarks' dev-dependencies.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

use std::process::ExitCode;

/// The services this build promises, one feature-gated line per plugin.
///
/// Naming each plugin crate here is also what links it: a crate that no code names is not
/// linked, and its `inventory` registration would vanish without a word. The runtime checks
/// at start that the registry holds every service listed here.
const DEFAULT_SERVICES: &[&str] = &[
    #[cfg(feature = "notes")]
    cryopod_notes::SERVICE,
    #[cfg(feature = "s3")]
    cryopod_s3::SERVICE,
    #[cfg(feature = "sqs")]
    cryopod_sqs::SERVICE,
    #[cfg(feature = "lambda")]
    cryopod_lambda::SERVICE,
    #[cfg(feature = "dynamodb")]
    cryopod_dynamodb::SERVICE,
    #[cfg(feature = "ssm")]
    cryopod_ssm::SERVICE,
    #[cfg(feature = "secretsmanager")]
    cryopod_secretsmanager::SERVICE,
    #[cfg(feature = "sts")]
    cryopod_sts::SERVICE,
    #[cfg(feature = "iam")]
    cryopod_iam::SERVICE,
];

fn main() -> ExitCode {
    cryopod::cli::main(DEFAULT_SERVICES)
}
