//! `lambda`: the AWS Lambda control plane for cryopod, with snapshot support.
//!
//! What it keeps: functions with their published versions, aliases, resource policies,
//! environment and tags; layers and their versions; event source mappings. Code packages (zips from `ZipFile` or from S3 through the S3 service's
//! [`cryopod::ObjectSource`]) live in the framework's content-addressed blob store, one copy
//! per distinct package, so big packages and layers cost nothing to capture and travel in
//! bundles as blobs. [`invoke`] runs the code: `Invoke` for Python, Node.js and `provided`
//! functions as local processes behind the Lambda Runtime API, `Event` invocations and SQS
//! event source mappings; none of that is state.
//!
//! - [`state`]: the serde state and what one resource is for service-merge;
//! - [`api`]: routing and the operations, with AWS's validation and error codes;
//! - [`provider`]: the [`cryopod::StateProvider`] and [`cryopod::Service`] implementation;
//! - [`render`], [`names`], [`validate`], [`zip`], [`error`]: helpers.

pub mod api;
pub mod error;
pub mod invoke;
pub mod names;
pub mod provider;
pub mod render;
pub mod state;
pub mod validate;
pub mod zip;

pub use provider::LambdaService;

/// Path under which `GetFunction`'s `Code.Location` URLs are served (unsigned GETs).
pub const CODE_DOWNLOAD_PREFIX: &str = "/2015-03-31/code-download";
/// Path under which `GetLayerVersion`'s `Content.Location` URLs are served.
pub const LAYER_DOWNLOAD_PREFIX: &str = "/2018-10-31/layer-download";

// Every dated path prefix of Lambda's REST API in botocore's model is claimed, so that
// operations this emulator does not implement still reach it and get a clear answer instead
// of falling through to another service.
// The registration: `SERVICE`, `STATE_VERSION` (from the state's `service_state!`) and
// the registry entry, stated once.
cryopod::plugin! {
    service: "lambda",
    state: state::LambdaState,
    routes: &[
        cryopod::Route::SigningName("lambda"),
        cryopod::Route::PathPrefix("/2014-11-13/"),
        cryopod::Route::PathPrefix("/2015-03-31/"),
        cryopod::Route::PathPrefix("/2016-08-19/"),
        cryopod::Route::PathPrefix("/2017-03-31/"),
        cryopod::Route::PathPrefix("/2017-10-31/"),
        cryopod::Route::PathPrefix("/2018-10-31/"),
        cryopod::Route::PathPrefix("/2019-09-25/"),
        cryopod::Route::PathPrefix("/2019-09-30/"),
        cryopod::Route::PathPrefix("/2020-04-22/"),
        cryopod::Route::PathPrefix("/2020-06-30/"),
        cryopod::Route::PathPrefix("/2021-07-20/"),
        cryopod::Route::PathPrefix("/2021-10-31/"),
        cryopod::Route::PathPrefix("/2021-11-15/"),
        cryopod::Route::PathPrefix("/2024-08-31/"),
        cryopod::Route::PathPrefix("/2025-11-30/"),
        cryopod::Route::PathPrefix("/2025-12-01/"),
        cryopod::Route::PathPrefix("/2026-07-09/"),
    ],
    operations: provider::OPERATIONS,
    build: |ctx| std::sync::Arc::new(LambdaService::new(ctx)),
}
