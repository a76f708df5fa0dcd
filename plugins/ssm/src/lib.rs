//! `ssm`: AWS Systems Manager Parameter Store for cryopod.
//!
//! String, StringList and SecureString parameters with versions (at most 100 kept), labels,
//! tags, tiers and policies (stored and returned), hierarchical paths and AWS's name rules,
//! over the JSON 1.1 protocol (`X-Amz-Target: AmazonSSM.*`). SecureString values are sealed
//! with AES-256-GCM under a data key kept in the state, so they decrypt after a restore; see
//! [`crypto`] for the seam the KMS plugin will take over. The rest of SSM (Run Command,
//! documents, automation, …) is answered with a `ValidationException` naming this scope.
//!
//! Modules:
//! - [`state`]: parameters, versions, labels, data keys, and their merge units;
//! - [`api`]: the operations;
//! - [`crypto`]: SecureString sealing;
//! - [`error`]: the errors with AWS's codes;
//! - [`provider`]: the [`cryopod::Service`] and its state cell.

pub mod api;
pub mod crypto;
pub mod error;
pub mod provider;
pub mod state;

pub use provider::SsmService;
pub use state::SsmState;

cryopod::plugin! {
    service: "ssm",
    state: state::SsmState,
    version: 1,
    routes: &[
        cryopod::Route::JsonTarget("AmazonSSM."),
        cryopod::Route::SigningName("ssm"),
    ],
    operations: api::OPERATIONS,
    build: |ctx| std::sync::Arc::new(SsmService::new(ctx)),
}
