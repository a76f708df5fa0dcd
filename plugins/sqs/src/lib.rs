//! `sqs`: Amazon SQS for cryopod, with snapshots that keep the subtle parts of a queue.
//!
//! Both wire protocols are served: the JSON protocol current SDKs use
//! (`X-Amz-Target: AmazonSQS.*`) and the older query protocol (`Action=` forms, XML answers).
//! What a snapshot keeps, and what a restore does with time, is described in [`state`] and in
//! the crate README: in short, time stands still while a snapshot is stored, so in-flight
//! messages reappear when their remaining visibility timeout runs out after the restore.
//!
//! Modules:
//! - [`state`]: the serde state (queues, messages, deduplication records) and its indexes;
//! - [`messages`]: a queue's messages, a persistent map built in bulk when a snapshot is
//!   restored and freed in the background when replaced;
//! - [`api`]: the operations, on the JSON protocol's shapes;
//! - [`protocol`]: query-protocol input and XML output, mapped to and from those shapes;
//! - [`digest`]: the MD5 digests SDKs verify;
//! - [`error`]: errors with both protocols' codes;
//! - [`clock`]: the service's clock, which tests can freeze;
//! - [`provider`]: the [`cryopod::Service`] and [`cryopod::StateProvider`].

pub mod api;
pub mod clock;
pub mod digest;
pub mod error;
pub mod messages;
pub mod protocol;
pub mod provider;
pub mod state;

pub use provider::SqsService;
pub use state::SqsState;

// The registration: `SERVICE`, `STATE_VERSION` (from the state's `service_state!`) and
// the registry entry, stated once.
cryopod::plugin! {
    service: "sqs",
    state: state::SqsState,
    routes: &[
        cryopod::Route::JsonTarget("AmazonSQS."),
        cryopod::Route::SigningName("sqs"),
        cryopod::Route::QueryAction(provider::ACTIONS),
    ],
    operations: provider::OPERATIONS,
    build: |ctx| std::sync::Arc::new(SqsService::new(ctx)),
}
