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
///
/// Sections are decoded on a thread of their own while the blobs that follow them are
/// read. Why: cryopod writes the sections first, and decoding one (MessagePack into
/// persistent maps, ~6 µs per S3 object) used to hold up the reading thread, and with it
/// the blob pipeline, for 15 ms per 2,600 objects before the first blob. The reading
/// thread only reads and verifies a section's bytes and hands them over; a decoding error
/// stops the read at the next entry.
pub fn read_bundle<R: Read>(
    input: R,
    blobs: &BlobStore,
    policy: &dyn SectionPolicy,
    limits: Limits,
) -> Result<DecodedBundle> {
    std::thread::scope(|scope| {
        let mut decoder = SectionDecoder::new(scope);
        // On an error, `decoder` is dropped here: its queue closes and the scope waits for
        // the section it may be decoding.
        let mut read = read_entries(input, blobs, policy, limits, &mut decoder)?;
        decoder.finish(&mut read.snapshot)?;
        for (name, state) in &read.snapshot.services {
            for d in state.blobs() {
                if !read.in_store.contains(&d) && !blobs.contains(&d) {
                    return Err(Error::MissingBlob {
                        service: name.clone(),
                        digest: d,
                    });
                }
            }
        }
        Ok(DecodedBundle {
            manifest: read.manifest,
            snapshot: read.snapshot,
            skipped: read.skipped,
            blobs_imported: read.blobs_imported,
        })
    })
}

/// What [`read_entries`] found; sections still decoding are not in `snapshot` yet.
struct EntriesRead {
    manifest: Manifest,
    snapshot: Snapshot,
    skipped: Vec<SkippedService>,
    /// Blobs that were in the store or were stored by this read.
    in_store: HashSet<Digest>,
    blobs_imported: u64,
}

/// Reads every entry: sections go to `decoder`, blobs into `blobs`.
fn read_entries<R: Read>(
    input: R,
    blobs: &BlobStore,
    policy: &dyn SectionPolicy,
    limits: Limits,
    decoder: &mut SectionDecoder<'_, '_>,
) -> Result<EntriesRead> {
    let import = crate::blob::BlobImport::new(blobs);
    let present = blobs.presence_hint();
    let mut reader = BundleReader::new(input, limits)?;
    let manifest = reader.manifest().clone();
    let mut snapshot = Snapshot::default();
    let mut skipped = Vec::new();
    let mut wanted = BTreeSet::new();
    let mut in_store = HashSet::new();
    let selected = manifest
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
                // Reading to the end verified the section's size and digest.
                let mut bytes = Vec::new();
                reader
                    .read_to_end(&mut bytes)
                    .map_err(unwrap_bundle_error)?;
                decoder.submit(SectionJob {
                    service,
                    state_version,
                    current,
                    bytes,
                })?;
            }
            Entry::Blob {
                digest, mut reader, ..
            } => {
                decoder.collect(&mut snapshot, &mut wanted)?;
                // Blobs may precede the sections that refer to them (SPEC allows any
                // order), and sections decode meanwhile: until every selected section has
                // been decoded, keep every blob. Content addressing makes extra blobs
                // harmless, and unreferenced ones are collected later.
                let sections_to_come = selected.saturating_sub(snapshot.services.len());
                if sections_to_come == 0 && !wanted.contains(&digest) {
                    io::copy(&mut reader, &mut io::sink()).map_err(unwrap_bundle_error)?;
                    continue;
                }
                // Stored already, or piped below: either way in the store once the reader
                // reports the end, so the final check need not look for it on disk again.
                in_store.insert(digest);
                if present.may_contain(&digest) && blobs.contains(&digest) {
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
    Ok(EntriesRead {
        manifest,
        snapshot,
        skipped,
        in_store,
        blobs_imported: import.stored(),
    })
}

/// A section read and verified, waiting to be decoded.
struct SectionJob {
    service: String,
    state_version: u32,
    /// The version the running plugin wants (the state is upgraded to it).
    current: u32,
    bytes: Vec<u8>,
}

type Decoded = (String, Result<Box<dyn ServiceState>>);

/// Sections read and waiting for the decoding thread at most; the reading thread waits
/// beyond. Why a bound: each waiting section is held as bytes, so without one a bundle of
/// several large sections would hold them all at once (reading them one at a time, as
/// before, held one).
const SECTIONS_AHEAD: usize = 2;

/// Decodes sections, in the order they came, on one scoped thread started with the first.
struct SectionDecoder<'scope, 'env> {
    scope: &'scope std::thread::Scope<'scope, 'env>,
    jobs: Option<std::sync::mpsc::SyncSender<SectionJob>>,
    done: Option<std::sync::mpsc::Receiver<Decoded>>,
    submitted: usize,
    collected: usize,
}

impl<'scope, 'env> SectionDecoder<'scope, 'env> {
    fn new(scope: &'scope std::thread::Scope<'scope, 'env>) -> Self {
        SectionDecoder {
            scope,
            jobs: None,
            done: None,
            submitted: 0,
            collected: 0,
        }
    }

    fn submit(&mut self, job: SectionJob) -> Result<()> {
        if self.jobs.is_none() {
            let (jobs, rx) = std::sync::mpsc::sync_channel::<SectionJob>(SECTIONS_AHEAD);
            let (tx, done) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("cryopod-decode".into())
                .spawn_scoped(self.scope, move || {
                    for job in rx {
                        let service = job.service.clone();
                        if tx.send((service, decode_job(job))).is_err() {
                            break;
                        }
                    }
                })?;
            self.jobs = Some(jobs);
            self.done = Some(done);
        }
        self.submitted += 1;
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(decoder_gone)
    }

    /// Sections submitted and not yet collected.
    fn pending(&self) -> usize {
        self.submitted - self.collected
    }

    /// Adds the sections decoded so far, without waiting; the first decoding error.
    fn collect(&mut self, snapshot: &mut Snapshot, wanted: &mut BTreeSet<Digest>) -> Result<()> {
        while self.pending() > 0 {
            let Some(Ok(d)) = self.done.as_ref().map(|d| d.try_recv()) else {
                break;
            };
            self.add(d, snapshot, Some(&mut *wanted))?;
        }
        Ok(())
    }

    /// Waits for every submitted section and adds it. Every blob has been read by then, so
    /// nothing needs to know which ones the late sections want.
    fn finish(mut self, snapshot: &mut Snapshot) -> Result<()> {
        self.jobs = None;
        while self.pending() > 0 {
            let d = self
                .done
                .as_ref()
                .and_then(|d| d.recv().ok())
                .ok_or_else(decoder_gone)?;
            self.add(d, snapshot, None)?;
        }
        Ok(())
    }

    fn add(
        &mut self,
        (service, state): Decoded,
        snapshot: &mut Snapshot,
        wanted: Option<&mut BTreeSet<Digest>>,
    ) -> Result<()> {
        self.collected += 1;
        let state = state?;
        if let Some(wanted) = wanted {
            wanted.extend(state.blobs());
        }
        snapshot.services.insert(service, state);
        Ok(())
    }
}

fn decoder_gone() -> Error {
    Error::Io(io::Error::other("the section decoding thread stopped"))
}

/// Decodes, checks and upgrades one section (on the decoding thread).
fn decode_job(job: SectionJob) -> Result<Box<dyn ServiceState>> {
    let SectionJob {
        service,
        state_version,
        current,
        bytes,
    } = job;
    let (decoded, trailing) =
        crate::state::decode_section(&service, state_version, &mut bytes.as_slice())
            .map_err(|e| decode_error(&service, e))?;
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
    Ok(crate::state::upgrade_to(decoded, current)?)
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

    /// Loads `gadgets` at version 1, skips everything else.
    struct GadgetsOnly;

    impl super::SectionPolicy for GadgetsOnly {
        fn decide(&self, service: &str) -> Result<u32, super::SkipReason> {
            match service {
                "gadgets" => Ok(1),
                _ => Err(super::SkipReason::NotInBuild),
            }
        }
    }

    /// A bundle holding `blobs` and a `gadgets` section with `section` as its bytes, the
    /// section first or last.
    fn bundle(section: &[u8], blobs: &[&[u8]], section_first: bool) -> Vec<u8> {
        use cryopod_bundle::{BundleWriter, Manifest, ServiceEntry};
        let manifest = Manifest {
            producer: "test".into(),
            created_at: String::new(),
            services: vec![ServiceEntry {
                name: "gadgets".into(),
                state_version: 1,
                scopes: Vec::new(),
            }],
            blobs: Default::default(),
        };
        let mut w = BundleWriter::new(Vec::new(), &manifest, Default::default()).unwrap();
        if section_first {
            w.write_section("gadgets", 1, section).unwrap();
        }
        for b in blobs {
            let d = crate::state::Digest::of(b);
            w.blob(&d, b.len() as u64, &mut &b[..]).unwrap();
        }
        if !section_first {
            w.write_section("gadgets", 1, section).unwrap();
        }
        w.finish().unwrap()
    }

    fn encoded_sample() -> Vec<u8> {
        let state: Box<dyn ServiceState> = Box::new(sample());
        let mut bytes = Vec::new();
        state.encode_section(&mut bytes).unwrap();
        bytes
    }

    /// Reads `bundle` into a fresh store (kept alive by the returned directory).
    fn read(
        bundle: &[u8],
    ) -> (
        crate::Result<super::DecodedBundle>,
        crate::BlobStore,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::BlobStore::open(dir.path().join("blobs")).unwrap();
        let r = super::read_bundle(bundle, &store, &GadgetsOnly, Default::default());
        (r, store, dir)
    }

    #[test]
    fn sections_decode_off_the_reading_thread_whichever_comes_first() {
        let blobs: [&[u8]; 3] = [b"one", b"two", &[7u8; 300 << 10]];
        for section_first in [true, false] {
            let (r, store, _dir) = read(&bundle(&encoded_sample(), &blobs, section_first));
            let decoded = r.unwrap();
            // No section refers to these blobs. Before the section has decoded every blob
            // is kept; once it has, unreferenced ones are skipped. Blobs before the section
            // are all kept; after it, how many arrive before its decoding ends is a race.
            let stored = blobs
                .iter()
                .filter(|b| store.contains(&crate::state::Digest::of(b)))
                .count() as u64;
            assert_eq!(
                decoded.blobs_imported, stored,
                "section first: {section_first}"
            );
            if !section_first {
                assert_eq!(stored, 3);
            }
            let got = &decoded.snapshot.services["gadgets"];
            let want: Box<dyn ServiceState> = Box::new(sample());
            assert_eq!(
                crate::testing::encoded(got.as_ref()),
                crate::testing::encoded(want.as_ref())
            );
        }
    }

    #[test]
    fn a_section_that_fails_to_decode_fails_the_read_though_blobs_follow_it() {
        let blobs: [&[u8]; 2] = [b"one", &[9u8; 300 << 10]];
        let mut trailing = encoded_sample();
        trailing.extend_from_slice(b"xyz");
        let cut = encoded_sample()[..100].to_vec();
        for (section, expect) in [
            (trailing, "3 bytes follow the state value"),
            (cut, "ends in the middle of the state value"),
            (b"\xc1 not msgpack".to_vec(), ""),
        ] {
            for section_first in [true, false] {
                let (r, _, _dir) = read(&bundle(&section, &blobs, section_first));
                match r {
                    Err(crate::Error::Decode { service, message }) => {
                        assert_eq!(service, "gadgets");
                        assert!(message.contains(expect), "{message}");
                    }
                    other => panic!("expected a decoding error, got {other:?}"),
                }
            }
        }
    }

    /// More services of the same shape, for bundles of several sections.
    macro_rules! more_states {
        ($($ty:ident $svc:literal $tag:literal),*) => {$(
            #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
            struct $ty {
                scopes: Scoped<Things>,
            }
            impl ScopedState for $ty {
                type Resources = Things;
                fn scoped(&self) -> &Scoped<Things> {
                    &self.scopes
                }
                fn scoped_mut(&mut self) -> &mut Scoped<Things> {
                    &mut self.scopes
                }
            }
            crate::service_state!($ty, service = $svc, version = 1, tag = $tag);
        )*};
    }
    more_states!(
        Sprockets "sprockets" "sprockets/1",
        Widgets "widgets" "widgets/1",
        Gizmos "gizmos" "gizmos/1"
    );

    struct LoadAll;

    impl super::SectionPolicy for LoadAll {
        fn decide(&self, _: &str) -> Result<u32, super::SkipReason> {
            Ok(1)
        }
    }

    /// More sections than the decoding thread's queue holds: the reading thread waits for
    /// it, and every section still arrives whole, under its own name.
    #[test]
    fn many_large_sections_decode_in_order_through_the_bounded_queue() {
        use cryopod_bundle::{BundleWriter, Manifest, ServiceEntry};
        fn filled<T: ScopedState<Resources = Things> + Default>(n: u64) -> T {
            let mut s = T::default();
            let r = s
                .scoped_mut()
                .get_mut(&Scope::new("000000000000", "us-east-1"));
            for j in 0..20_000 {
                r.names.insert(format!("{n}-{j}"), j);
            }
            s
        }
        let states: Vec<Box<dyn ServiceState>> = vec![
            Box::new(filled::<ThingsState>(1)),
            Box::new(filled::<Sprockets>(2)),
            Box::new(filled::<Widgets>(3)),
            Box::new(filled::<Gizmos>(4)),
        ];
        let manifest = Manifest {
            producer: "test".into(),
            created_at: String::new(),
            services: states
                .iter()
                .map(|s| ServiceEntry {
                    name: s.service().into(),
                    state_version: 1,
                    scopes: Vec::new(),
                })
                .collect(),
            blobs: Default::default(),
        };
        let mut w = BundleWriter::new(Vec::new(), &manifest, Default::default()).unwrap();
        for s in &states {
            let mut bytes = Vec::new();
            s.encode_section(&mut bytes).unwrap();
            w.write_section(s.service(), 1, &bytes).unwrap();
        }
        let blob = [3u8; 200 << 10];
        w.blob(
            &crate::state::Digest::of(&blob),
            blob.len() as u64,
            &mut &blob[..],
        )
        .unwrap();
        let bundle = w.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = crate::BlobStore::open(dir.path()).unwrap();
        let decoded =
            super::read_bundle(&bundle[..], &store, &LoadAll, Default::default()).unwrap();
        // No section refers to the blob: it is kept only if it arrives before they have all
        // decoded (a race), and counted exactly when it was stored.
        let stored = store.contains(&crate::state::Digest::of(&blob));
        assert_eq!(decoded.blobs_imported, u64::from(stored));
        assert_eq!(decoded.snapshot.services.len(), states.len());
        for s in &states {
            let got = &decoded.snapshot.services[s.service()];
            assert_eq!(
                crate::testing::encoded(got.as_ref()),
                crate::testing::encoded(s.as_ref()),
                "{}",
                s.service()
            );
        }
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
