//! `sts`: AWS Security Token Service for cryopod.
//!
//! `GetCallerIdentity` answers the account of the access key id exactly as the gateway maps
//! it (`cryopod::aws::account_from_access_key`). `AssumeRole`, `AssumeRoleWithWebIdentity`,
//! `AssumeRoleWithSAML`, `AssumeRoot`, `GetSessionToken` and `GetFederationToken` issue
//! temporary credentials whose `ASIA…` key id embeds the 12-digit account they act in, so
//! every later request signed with them lands in that account without a lookup; the session
//! behind each key is kept in the state (and so in exports, pods and persistence), and
//! `GetCallerIdentity` with such a key answers the session's ARN (`assumed-role/…`).
//!
//! Sessions are global, as in AWS: they live in the scope (their account, `us-east-1`)
//! whatever region a request names. Nothing is enforced: trust policies, session policies
//! and MFA codes are accepted without evaluation, as in other local emulators.
//!
//! Modules: [`state`] (sessions), [`api`] (the operations), [`provider`] (the
//! [`cryopod::Service`]).

pub mod api;
pub mod provider;
pub mod state;

pub use provider::StsService;
pub use state::StsState;

cryopod::plugin! {
    service: "sts",
    state: state::StsState,
    version: 1,
    routes: &[
        cryopod::Route::SigningName("sts"),
        cryopod::Route::QueryAction(api::ACTIONS),
    ],
    operations: api::OPERATIONS,
    build: |ctx| std::sync::Arc::new(StsService::new(ctx)),
}
