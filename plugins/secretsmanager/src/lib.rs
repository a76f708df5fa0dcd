//! `secretsmanager`: AWS Secrets Manager for cryopod.
//!
//! Every operation of the API over the JSON 1.1 protocol (`X-Amz-Target: secretsmanager.*`):
//! secrets with versions and staging labels (`AWSCURRENT` moves, the version it leaves gets
//! `AWSPREVIOUS`, custom labels, at most 100 versions), values by version id or label, batch
//! reads, filtered listings, deletion with a recovery window (a secret past it is gone at the
//! next access) and restore, tags, resource policies, random passwords, and rotation and
//! replication configuration (stored and returned; the rotation function runs once Lambda
//! runs code). Values are kept as given and never appear in debug output, summaries or logs.
//!
//! Modules: [`state`] (secrets, versions, labels and their merge units), [`api`] (the
//! operations), [`password`] (`GetRandomPassword`), [`error`] (AWS's codes), [`clock`]
//! (freezable time), [`provider`] (the [`cryopod::Service`]).

pub mod api;
pub mod clock;
pub mod error;
pub mod password;
pub mod provider;
pub mod state;

pub use provider::SecretsService;
pub use state::SecretsState;

cryopod::plugin! {
    service: "secretsmanager",
    state: state::SecretsState,
    version: 1,
    routes: &[
        cryopod::Route::JsonTarget("secretsmanager."),
        cryopod::Route::SigningName("secretsmanager"),
    ],
    operations: api::OPERATIONS,
    build: |ctx| std::sync::Arc::new(SecretsService::new(ctx)),
}
