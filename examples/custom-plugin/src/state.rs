//! The notes state, version 2, and the version 1 it upgrades from.
//!
//! Rules a plugin's state follows:
//! - plain serde data, with persistent maps (`imbl`) so that a capture clones in O(1);
//! - partitioned by scope through [`cryopod::Scoped`];
//! - big byte strings are blob digests, never inline bytes;
//! - every schema change gets a new version and tag; the old type stays, with an upgrade.

use std::collections::BTreeSet;

use cryopod::{Digest, ResourceCounts, Resources, Scoped, ScopedState, StateError};
use imbl::OrdMap;
use serde::{Deserialize, Serialize};

/// A note: text plus an optional binary attachment in the blob store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// The note's text.
    pub text: String,
    /// Digest of the attachment in the blob store.
    pub attachment: Option<Digest>,
    /// Incremented by every write; added in version 2.
    pub revision: u64,
}

/// A named collection of notes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notebook {
    /// Notes by key.
    pub notes: OrdMap<String, Note>,
    /// Free-form tags; added in version 2.
    #[serde(default)]
    pub tags: OrdMap<String, String>,
}

/// One scope's notebooks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotesScope {
    /// Notebooks by name.
    pub notebooks: OrdMap<String, Notebook>,
}

impl Resources for NotesScope {
    /// Service-merge works at the level of single notes: a notebook present on both sides
    /// takes its configuration (tags) from the bundle and keeps the union of both sides'
    /// notes, the bundle's on a key clash.
    fn merge(&mut self, incoming: Self) {
        for (name, mut nb) in incoming.notebooks {
            if let Some(existing) = self.notebooks.remove(&name) {
                // `union` keeps the receiver's value on a clash: the bundle's.
                nb.notes = nb.notes.union(existing.notes);
            }
            self.notebooks.insert(name, nb);
        }
    }

    /// Notebooks (their tags) and notes (`notebook/key`): the units a user creates, which
    /// dry runs report and the merge harness checks.
    fn units(&self, out: &mut cryopod::units::Units) {
        for (name, nb) in &self.notebooks {
            out.add("notebook", name.clone(), &nb.tags);
            for (key, note) in &nb.notes {
                out.add("note", format!("{name}/{key}"), note);
            }
        }
    }

    fn summary(&self) -> ResourceCounts {
        let mut c = ResourceCounts::new();
        c.insert("notebook".into(), self.notebooks.len() as u64);
        c.insert(
            "note".into(),
            self.notebooks.values().map(|n| n.notes.len() as u64).sum(),
        );
        c
    }

    fn blobs(&self, out: &mut BTreeSet<Digest>) {
        for nb in self.notebooks.values() {
            out.extend(nb.notes.values().filter_map(|n| n.attachment));
        }
    }
}

/// The notes state, version 2.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NotesState {
    /// Notebooks by scope.
    pub scopes: Scoped<NotesScope>,
}

impl ScopedState for NotesState {
    type Resources = NotesScope;
    fn scoped(&self) -> &Scoped<NotesScope> {
        &self.scopes
    }
    fn scoped_mut(&mut self) -> &mut Scoped<NotesScope> {
        &mut self.scopes
    }
}

// `ServiceState` (tag `notes/2`) is implemented by `cryopod::plugin!` in `lib.rs`.

/// Version 1: notes had only text, notebooks had no tags.
pub mod v1 {
    use super::*;

    /// A version-1 note.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct NoteV1 {
        /// The text.
        pub text: String,
    }

    /// The version-1 state: scope → notebook → key → note.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct NotesStateV1 {
        /// Scope entries as version 1 stored them.
        pub scopes: Vec<ScopeV1>,
    }

    /// One scope in version 1.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ScopeV1 {
        /// The scope.
        pub scope: cryopod::Scope,
        /// Notebook name → note key → note.
        pub notebooks:
            std::collections::BTreeMap<String, std::collections::BTreeMap<String, NoteV1>>,
    }

    /// The upgrade path: every note starts at revision 1 without attachment.
    pub fn upgrade(old: NotesStateV1) -> Result<NotesState, StateError> {
        let mut state = NotesState::default();
        for s in old.scopes {
            let scope = state.scopes.get_mut(&s.scope);
            for (name, notes) in s.notebooks {
                let nb = Notebook {
                    notes: notes
                        .into_iter()
                        .map(|(k, n)| {
                            (
                                k,
                                Note {
                                    text: n.text,
                                    attachment: None,
                                    revision: 1,
                                },
                            )
                        })
                        .collect(),
                    tags: OrdMap::new(),
                };
                scope.notebooks.insert(name, nb);
            }
        }
        Ok(state)
    }

    cryopod::legacy_service_state!(
        NotesStateV1,
        service = "notes",
        version = 1,
        upgrade = upgrade
    );
}
