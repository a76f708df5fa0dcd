//! `iam`: AWS Identity and Access Management for cryopod.
//!
//! IAM is global: whatever region a request names, its resources live in the scope
//! (account, `us-east-1`), as the service's single global endpoint keeps them.
//!
//! Scope (what is implemented; the README lists it too): users, groups and membership, roles
//! with trust policies, tags and permissions boundaries, customer managed policies with
//! versions and attachments, inline policies of users, groups and roles, access keys (whose
//! `AKIA…` ids embed the account, so the gateway maps requests signed with them to the
//! user's account), instance profiles, login profiles, account aliases and the account
//! summary. Every other operation of the IAM API answers `UnsupportedOperation` naming it.
//!
//! Policy documents are stored exactly as sent (after the form's URL decoding), checked to
//! be JSON with a `Statement`, and returned URL-encoded as IAM does. Nothing is enforced:
//! policies are stored and returned, never evaluated, as in other local emulators.
//!
//! Modules: [`state`] (the serde state), [`api`] (operations and errors), [`xml`] (response
//! rendering), [`provider`] (the [`cryopod::Service`]).

pub mod api;
pub mod provider;
pub mod state;
pub mod xml;

pub use provider::IamService;
pub use state::IamState;

cryopod::plugin! {
    service: "iam",
    state: state::IamState,
    version: 1,
    routes: &[
        cryopod::Route::SigningName("iam"),
        cryopod::Route::QueryAction(api::ROUTED),
    ],
    operations: api::OPERATIONS,
    build: |ctx| std::sync::Arc::new(IamService::new(ctx)),
}
