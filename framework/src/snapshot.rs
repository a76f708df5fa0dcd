//! Snapshots and their bundle encoding.
//!
//! A [`Snapshot`] is one point in time across services. Export, persistence and pods all
//! turn it into the same bundle units: one MessagePack section per service (typetag-tagged,
//! field names kept) and the blobs it references, streamed straight from the blob store.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{self, Read};
use std::sync::Arc;

use cryopod_bundle::{
    BlobSummary, BundleOutput, BundleReader, BundleWriter, Entry, Limits, Manifest, ScopeEntry,
    ServiceEntry, WriteOptions,
};
use serde::{Deserialize, Serialize};

use crate::blob::{BlobReaders, BlobStore};
use crate::error::{Error, Result};
use crate::state::{Digest, ServiceState};

/// The producer string written into manifests.
pub fn producer() -> String {
    format!("cryopod {}", env!("CARGO_PKG_VERSION"))
}

/// Several services' states captured at one point in time.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// State per service name.
    pub services: BTreeMap<String, Box<dyn ServiceState>>,
    /// Set by [`crate::Runtime::capture`]: keeps blob collection off while this capture
    /// (and so an export of it) may still read blobs the running state has since dropped.
    pub(crate) _readers: Option<Arc<BlobReaders>>,
}

impl Snapshot {
    /// Every blob any service refers to.
    pub fn blobs(&self) -> BTreeSet<Digest> {
        self.services.values().flat_map(|s| s.blobs()).collect()
    }

    /// The manifest describing this snapshot; blob sizes come from `blobs`.
    pub fn manifest(&self, blobs: &BlobStore) -> Result<Manifest> {
        let mut count = 0;
        let mut bytes = 0;
        for d in self.blobs() {
            let size = blobs.size(&d).map_err(|_| Error::MissingBlob {
                service: self.owner_of(&d),
                digest: d,
            })?;
            count += 1;
            bytes += size;
        }
        Ok(Manifest {
            producer: producer(),
            created_at: now_rfc3339(),
            services: self
                .services
                .iter()
                .map(|(name, st)| ServiceEntry {
                    name: name.clone(),
                    state_version: st.version(),
                    scopes: st
                        .summary()
                        .into_iter()
                        .map(|(scope, resources)| ScopeEntry {
                            account: scope.account,
                            region: scope.region,
                            resources,
                        })
                        .collect(),
                })
                .collect(),
            blobs: BlobSummary { count, bytes },
        })
    }

    fn owner_of(&self, d: &Digest) -> String {
        self.services
            .iter()
            .find(|(_, s)| s.blobs().contains(d))
            .map(|(n, _)| n.clone())
            .unwrap_or_default()
    }

    /// Writes the snapshot as one bundle. Blocking: run it on a blocking thread.
    pub fn write_bundle<W: BundleOutput>(
        &self,
        blobs: &BlobStore,
        out: W,
        opts: WriteOptions,
    ) -> Result<(W, Manifest)> {
        let manifest = self.manifest(blobs)?;
        self.write_bundle_with(manifest, blobs, out, opts)
    }

    /// Writes the snapshot with a manifest the caller already built (and so validated), for
    /// callers that must fail cleanly before the first byte, such as a streamed HTTP export.
    pub fn write_bundle_with<W: BundleOutput>(
        &self,
        manifest: Manifest,
        blobs: &BlobStore,
        out: W,
        opts: WriteOptions,
    ) -> Result<(W, Manifest)> {
        let mut w = BundleWriter::new(out, &manifest, opts)?;
        for (name, state) in &self.services {
            let mut section = w.section(name, state.version())?;
            state.encode_to(&mut section).map_err(|e| Error::Encode {
                service: name.clone(),
                message: e.to_string(),
            })?;
            section.finish()?;
        }
        for d in self.blobs() {
            let mut f = blobs.open_blob(&d).map_err(|_| Error::MissingBlob {
                service: self.owner_of(&d),
                digest: d,
            })?;
            let size = f.metadata()?.len();
            // The store named the blob by the sha256 it computed or verified when it wrote
            // it; readers verify every blob again (see the writer's doc for the trade-off).
            w.blob_from_verified_store(&d, size, &mut f)?;
        }
        Ok((w.finish()?, manifest))
    }
}

/// Why a service section of a bundle was not loaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// This build has no plugin for the service.
    NotInBuild,
    /// The plugin is linked but the service is not enabled (`SERVICES`).
    NotEnabled,
    /// The caller asked for other services only (`--services`).
    NotSelected,
}

/// A bundle section that was reported rather than loaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedService {
    /// Service name as stored in the bundle.
    pub service: String,
    /// Why it was not loaded.
    pub reason: SkipReason,
}

/// A decoded bundle, ready to apply.
#[derive(Debug)]
pub struct DecodedBundle {
    /// The bundle's manifest.
    pub manifest: Manifest,
    /// The states of the services that will be loaded, already upgraded.
    pub snapshot: Snapshot,
    /// Sections that were not loaded, and why.
    pub skipped: Vec<SkippedService>,
    /// Blobs written into the blob store (new or already present).
    pub blobs_imported: u64,
}

/// What the reader should do with each service name it meets.
pub trait SectionPolicy {
    /// `Ok(version)` to load (upgrading to `version`), `Err(reason)` to skip.
    fn decide(&self, service: &str) -> std::result::Result<u32, SkipReason>;
}

/// Reads a bundle from a pipe or file: decodes and upgrades the sections `policy` selects,
/// streams the blobs they reference into `blobs`, and verifies every checksum and digest.
/// Nothing running is touched, so any error here leaves the emulator as it was.
pub fn read_bundle<R: Read>(
    input: R,
    blobs: &BlobStore,
    policy: &dyn SectionPolicy,
    limits: Limits,
) -> Result<DecodedBundle> {
    let import = crate::blob::BlobImport::new(blobs);
    let mut reader = BundleReader::new(input, limits)?;
    let manifest = reader.manifest().clone();
    let mut snapshot = Snapshot::default();
    let mut skipped = Vec::new();
    let mut wanted = BTreeSet::new();
    let mut in_store = HashSet::new();
    // Blobs may precede the sections that refer to them (SPEC allows any order): until every
    // selected section has been read, keep every blob; content addressing makes extra blobs
    // harmless, and unreferenced ones are collected later.
    let mut sections_to_come = manifest
        .services
        .iter()
        .filter(|s| policy.decide(&s.name).is_ok())
        .count();
    while let Some(entry) = reader.next_entry()? {
        match entry {
            Entry::Section {
                service,
                state_version,
                mut reader,
            } => {
                let current = match policy.decide(&service) {
                    Ok(v) => v,
                    Err(reason) => {
                        io::copy(&mut reader, &mut io::sink()).map_err(unwrap_bundle_error)?;
                        skipped.push(SkippedService { service, reason });
                        continue;
                    }
                };
                if state_version > current {
                    return Err(Error::FutureStateVersion {
                        service,
                        found: state_version,
                        supported: current,
                    });
                }
                let (decoded, trailing) =
                    crate::state::decode_section(&service, state_version, &mut reader)
                        .map_err(|e| decode_error(&service, e))?;
                // The decoder drained the stream, which verified its digest.
                if trailing != 0 {
                    return Err(Error::Decode {
                        service,
                        message: format!("{trailing} bytes follow the state value"),
                    });
                }
                if decoded.service() != service || decoded.version() != state_version {
                    return Err(Error::Decode {
                        message: format!(
                            "section header says {service}/{state_version} but it holds {}/{}",
                            decoded.service(),
                            decoded.version()
                        ),
                        service,
                    });
                }
                let state = crate::state::upgrade_to(decoded, current)?;
                wanted.extend(state.blobs());
                sections_to_come = sections_to_come.saturating_sub(1);
                snapshot.services.insert(service, state);
            }
            Entry::Blob {
                digest, mut reader, ..
            } => {
                if sections_to_come == 0 && !wanted.contains(&digest) {
                    io::copy(&mut reader, &mut io::sink()).map_err(unwrap_bundle_error)?;
                    continue;
                }
                // Stored already, or piped below: either way in the store once the reader
                // reports the end, so the final check need not look for it on disk again.
                in_store.insert(digest);
                if blobs.contains(&digest) {
                    io::copy(&mut reader, &mut io::sink()).map_err(unwrap_bundle_error)?;
                    continue;
                }
                // The bundle reader verifies the blob's size and sha256 against `digest` on
                // its hashing thread and commits the sink (renames the file into the store)
                // only if they match, so the store need not hash it again. A mismatch fails
                // a later `next_entry`, before anything is applied.
                reader.pipe_to(import.sink(digest))?;
            }
        }
    }
    // `next_entry` returned the end: every piped blob was verified and committed.
    drop(reader);
    let blobs_imported = import.stored();
    for (name, state) in &snapshot.services {
        for d in state.blobs() {
            if !in_store.contains(&d) && !blobs.contains(&d) {
                return Err(Error::MissingBlob {
                    service: name.clone(),
                    digest: d,
                });
            }
        }
    }
    Ok(DecodedBundle {
        manifest,
        snapshot,
        skipped,
        blobs_imported,
    })
}

fn decode_error(service: &str, e: rmp_serde::decode::Error) -> Error {
    match e {
        // The stream reader reports a damaged or cut stream as a wrapped `BundleError`; a
        // bare end of input means the (intact) section ended inside the value: its content
        // is bad, not the bundle or the disk.
        rmp_serde::decode::Error::InvalidDataRead(io)
        | rmp_serde::decode::Error::InvalidMarkerRead(io)
            if io.kind() == io::ErrorKind::UnexpectedEof =>
        {
            Error::Decode {
                service: service.to_string(),
                message: "the section ends in the middle of the state value".into(),
            }
        }
        rmp_serde::decode::Error::InvalidDataRead(io)
        | rmp_serde::decode::Error::InvalidMarkerRead(io) => unwrap_bundle_error(io),
        other => Error::Decode {
            service: service.to_string(),
            message: other.to_string(),
        },
    }
}

/// Stream readers report integrity failures as `io::Error` wrapping a `BundleError`; unwrap
/// it so callers see the typed error.
fn unwrap_bundle_error(e: io::Error) -> Error {
    if !e
        .get_ref()
        .is_some_and(|inner| inner.is::<cryopod_bundle::BundleError>())
    {
        return Error::Io(e);
    }
    match e
        .into_inner()
        .map(|inner| inner.downcast::<cryopod_bundle::BundleError>())
    {
        Some(Ok(b)) => Error::Bundle(*b),
        _ => Error::Io(io::Error::other("corrupt bundle stream")),
    }
}

/// Current time as RFC 3339, for manifests and reports.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use crate::scope::Scope;
    use crate::state::{ResourceCounts, Resources, Scoped, ScopedState, ServiceState};

    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Things {
        names: imbl::OrdMap<String, u64>,
    }

    impl Resources for Things {
        fn merge(&mut self, incoming: Self) {
            self.names.extend(incoming.names);
        }
        fn summary(&self) -> ResourceCounts {
            [("thing".to_string(), self.names.len() as u64)].into()
        }
    }

    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
    struct ThingsState {
        scopes: Scoped<Things>,
    }

    impl ScopedState for ThingsState {
        type Resources = Things;
        fn scoped(&self) -> &Scoped<Things> {
            &self.scopes
        }
        fn scoped_mut(&mut self) -> &mut Scoped<Things> {
            &mut self.scopes
        }
    }

    crate::service_state!(
        ThingsState,
        service = "gadgets",
        version = 1,
        tag = "gadgets/1"
    );

    fn sample() -> ThingsState {
        let mut s = ThingsState::default();
        for (i, region) in ["us-east-1", "eu-west-1"].iter().enumerate() {
            let r = s.scopes.get_mut(&Scope::new("000000000000", *region));
            for j in 0..100u64 {
                r.names.insert(format!("thing-{i}-{j}"), j);
            }
        }
        s
    }

    #[test]
    fn typed_section_encoding_is_byte_identical_to_typetag() {
        let state: Box<dyn ServiceState> = Box::new(sample());
        let mut typed = Vec::new();
        state.encode_section(&mut typed).unwrap();
        let mut generic = Vec::new();
        let mut ser = rmp_serde::Serializer::new(&mut generic).with_struct_map();
        serde::Serialize::serialize(state.as_ref(), &mut ser).unwrap();
        assert_eq!(typed, generic);
    }

    #[test]
    fn typed_section_decoding_matches_typetag_and_reports_trailing_bytes() {
        let state: Box<dyn ServiceState> = Box::new(sample());
        let mut bytes = Vec::new();
        state.encode_section(&mut bytes).unwrap();
        let (typed, trailing) =
            crate::state::decode_section("gadgets", 1, &mut bytes.as_slice()).unwrap();
        assert_eq!(trailing, 0);
        let generic: Box<dyn ServiceState> = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(
            crate::testing::encoded(typed.as_ref()),
            crate::testing::encoded(generic.as_ref())
        );
        bytes.extend_from_slice(b"xyz");
        let (_, trailing) =
            crate::state::decode_section("gadgets", 1, &mut bytes.as_slice()).unwrap();
        assert_eq!(trailing, 3);
    }

    #[test]
    fn typed_decoder_rejects_a_section_holding_another_tag() {
        let state: Box<dyn ServiceState> = Box::new(sample());
        let mut bytes = Vec::new();
        state.encode_section(&mut bytes).unwrap();
        let codec = crate::state::section_codec("gadgets/1").unwrap();
        let mut other = bytes.clone();
        // Rename the tag in place: "gadgets/1" → "gadgetz/1".
        let pos = other.windows(9).position(|w| w == b"gadgets/1").unwrap();
        other[pos + 6] = b'z';
        let err = match (codec.decode)(&mut other.as_slice()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a foreign tag was accepted"),
        };
        assert!(err.contains("gadgetz/1"), "{err}");
    }
}
