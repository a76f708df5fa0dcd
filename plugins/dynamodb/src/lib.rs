//! DynamoDB for cryopod: the DynamoDB API (awsJson1.0) and its snapshot support.
//!
//! - [`state`]: tables and items in persistent maps, partitioned by scope; secondary
//!   indexes are derived and rebuilt on restore;
//! - [`value`], [`number`]: attribute values, exact decimal numbers, the key order;
//! - [`pmap`]: the persistent B+tree holding items and index entries (bulk-built on restore);
//! - [`expr`]: condition, filter, key-condition, update and projection expressions;
//! - [`api`]: the operations; [`provider`]: the [`cryopod::StateProvider`] and
//!   [`cryopod::Service`].
//!
//! Service-merge merges table by table: a table present in both the running state and the
//! bundle is replaced whole by the bundle's (see [`state::DynamoScope`]).

pub mod api;
pub mod error;
pub mod expr;
pub mod number;
pub mod pmap;
pub mod provider;
pub mod state;
pub mod value;

pub use provider::DynamoService;

// The registration: `SERVICE`, `STATE_VERSION` (from the state's `service_state!`) and
// the registry entry, stated once.
cryopod::plugin! {
    service: "dynamodb",
    state: state::DynamoState,
    routes: &[
        cryopod::Route::JsonTarget("DynamoDB_20120810."),
        cryopod::Route::SigningName("dynamodb"),
    ],
    operations: provider::OPERATIONS,
    build: |ctx| std::sync::Arc::new(DynamoService::new(ctx)),
}
