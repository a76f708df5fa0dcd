//! `notes`: a small but real service, written as the guide for plugin authors.
//!
//! It has two resource types (notebooks, and notes inside them) and one binary attachment per
//! note, kept in the framework's blob store. The pieces a plugin needs, each in its module:
//! - [`state`]: the serde state types, current version 2 and the legacy version 1 with its
//!   upgrade;
//! - [`api`]: the AWS-style JSON API (`X-Amz-Target: Notes.<Operation>`);
//! - [`provider`]: the [`cryopod::Service`] (requests) and its state cell, which gives the
//!   [`cryopod::StateProvider`] through [`cryopod::plugin::CellProvider`];
//! - the registration, below: the last thing in the crate.

pub mod api;
pub mod provider;
pub mod state;

pub use provider::NotesService;

// The one registration: service name, state and version stated once; the tag `notes/2`,
// `SERVICE`, `STATE_VERSION` and the registry entry are derived from them.
cryopod::plugin! {
    service: "notes",
    state: state::NotesState,
    version: 2,
    routes: &[
        cryopod::Route::JsonTarget("Notes."),
        cryopod::Route::SigningName("notes"),
    ],
    operations: api::OPERATIONS,
    build: |ctx| std::sync::Arc::new(NotesService::new(ctx)),
}
