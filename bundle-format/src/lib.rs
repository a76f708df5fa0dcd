//! `cryopod-bundle`: the single-file format that cryopod exports, persistence and
//! pods are made of.
//!
//! A bundle is a header, a JSON [`Manifest`], a sequence of *streams* (one state
//! section per service, then content-addressed blobs), an index and a footer. Every
//! structure is checksummed, every stream is verified against its sha256, and every
//! length read from the input is bounded by [`Limits`] before memory is allocated.
//! See `SPEC.md` for the byte layout.
//!
//! - [`BundleWriter`] writes front to back (works on a pipe).
//! - [`BundleReader`] reads front to back from any `Read`.
//! - [`SeekableBundle`] reads one stream of a file through the index.
//! - [`verify`] checks a whole bundle.
//!
//! ```
//! use cryopod_bundle::*;
//! use std::io::Read;
//!
//! let manifest = Manifest { producer: "doc".into(), ..Manifest::default() };
//! let mut w = BundleWriter::new(Vec::new(), &manifest, WriteOptions::default())?;
//! w.write_section("s3", 1, b"state")?;
//! let blob = b"object body";
//! w.blob(&Digest::of(blob), blob.len() as u64, &mut &blob[..])?;
//! let file = w.finish()?;
//!
//! // Sequentially, from any Read:
//! let mut r = BundleReader::new(&file[..], Limits::default())?;
//! while let Some(entry) = r.next_entry()? {
//!     if let Entry::Section { service, reader, .. } = entry {
//!         assert_eq!((service.as_str(), reader.read_all()?), ("s3", b"state".to_vec()));
//!     }
//! }
//! // Randomly, one section only:
//! let mut b = SeekableBundle::open(std::io::Cursor::new(&file), Limits::default())?;
//! let mut s = String::new();
//! b.open_section("s3")?.expect("present").read_to_string(&mut s)?;
//! assert_eq!(s, "state");
//! assert_eq!(verify(&file[..], Limits::default())?.blobs.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod digest;
mod error;
mod format;
mod hashpipe;
mod manifest;
mod reader;
mod writer;

pub use digest::{Digest, Hasher, ParseDigestError};
pub use error::BundleError;
pub use format::{FORMAT_VERSION, Limits};
pub use hashpipe::{Chunk, StreamSink};
pub use manifest::{BlobSummary, Manifest, ScopeEntry, ServiceEntry};
pub use reader::{
    BlobInfo, BundleReader, Entry, SectionInfo, SeekableBundle, StreamReader, VerifyReport, verify,
};
pub use writer::{BundleOutput, BundleWriter, SectionWriter, WriteOptions};
