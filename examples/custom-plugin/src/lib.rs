//! `notes`: a small but real service, written as the guide for plugin authors.
//!
//! It has two resource types (notebooks, and notes inside them) and one binary attachment per
//! note, kept in the framework's blob store. The pieces a plugin needs, each in its module:
//! - [`state`]: the serde state types, current version 2 and the legacy version 1 with its
//!   upgrade;
//! - [`api`]: the AWS-style JSON API (`X-Amz-Target: Notes.<Operation>`);
//! - [`provider`]: the [`cryopod::StateProvider`] and [`cryopod::Service`] implementation;
//! - the registration, below: the last thing in the crate.

pub mod api;
pub mod provider;
pub mod state;

pub use provider::NotesService;

/// The service name, also its signing name.
pub const SERVICE: &str = "notes";

cryopod::register_service! {
    service: "notes",
    routes: &[
        cryopod::Route::JsonTarget("Notes."),
        cryopod::Route::SigningName("notes"),
    ],
    build: |ctx| std::sync::Arc::new(NotesService::new(ctx)),
}
