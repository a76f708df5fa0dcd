//! Byte-level layout shared by the writer and the readers. `SPEC.md` is the contract;
//! this module is its executable form.

use crate::{BundleError, Digest};

/// First 8 bytes of every bundle. The high-bit first byte catches 7-bit-clean transfers
/// and keeps text tools from mistaking the file for text.
pub const MAGIC: [u8; 8] = *b"\x89CRYOPOD";
/// Last 8 bytes of every complete bundle: a cheap "was this file finished?" check.
pub const END_MAGIC: [u8; 8] = *b"DOPOYRC\x89";
/// The format version this build writes and the highest one it reads.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the file header.
pub const HEADER_LEN: usize = 16;
/// Size of the fixed footer.
pub const FOOTER_LEN: usize = 32;
/// Size of a record header (kind, flags, reserved, length, header crc).
pub const RECORD_HEADER_LEN: usize = 16;
/// Size of the trailing payload crc of a record.
pub const RECORD_TRAILER_LEN: usize = 4;

pub const KIND_MANIFEST: u8 = 0x01;
pub const KIND_SECTION_START: u8 = 0x10;
pub const KIND_BLOB_START: u8 = 0x11;
pub const KIND_CHUNK: u8 = 0x20;
pub const KIND_STREAM_END: u8 = 0x2F;
pub const KIND_INDEX: u8 = 0x30;

/// Chunk flag: the payload data is one zstd frame (otherwise it is stored raw).
pub const CHUNK_FLAG_ZSTD: u8 = 0x01;

/// Fixed part of a section start payload: state_version u32 + name_len u16.
pub const SECTION_START_FIXED: usize = 6;
/// Blob start payload: digest + size.
pub const BLOB_START_LEN: usize = 40;
/// Stream end payload: size + digest.
pub const STREAM_END_LEN: usize = 40;
/// Smallest index entry: kind 1 + version 4 + name_len 2 + digest 32 + size 8 + offset 8 + stored 8.
pub const INDEX_ENTRY_MIN: usize = 63;

/// Bounds a reader enforces on lengths and counts read from the input *before*
/// allocating or trusting them, so a hostile or corrupt bundle cannot make a
/// reader allocate gigabytes or loop for ever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest manifest JSON accepted (default 16 MiB).
    pub max_manifest_bytes: u64,
    /// Largest uncompressed chunk accepted; also bounds the compressed payload
    /// (writers store a chunk raw when zstd would not shrink it). Default 8 MiB.
    pub max_chunk_bytes: u64,
    /// Longest section (service) name, in bytes (default 256).
    pub max_name_bytes: u64,
    /// Most index entries (streams) in one bundle (default 16 Mi).
    pub max_index_entries: u64,
    /// Largest total uncompressed size of one section (default 4 GiB).
    pub max_section_bytes: u64,
    /// Largest blob (default 1 TiB).
    pub max_blob_bytes: u64,
    /// Largest zstd window (log2) a decoder accepts (default 27 = 128 MiB).
    pub max_window_log: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_bytes: 16 << 20,
            max_chunk_bytes: 8 << 20,
            max_name_bytes: 256,
            max_index_entries: 16 << 20,
            max_section_bytes: 4 << 30,
            max_blob_bytes: 1 << 40,
            max_window_log: 27,
        }
    }
}

pub fn crc(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// Compares a computed crc with the stored one. Fuzz builds (`--cfg fuzzing`) accept
/// any crc so the fuzzer can reach the parsers behind the checksums; sha256 content
/// checks stay on.
pub fn crc_matches(computed: u32, stored: u32) -> bool {
    cfg!(fuzzing) || computed == stored
}

pub fn encode_header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // bytes 10..12: flags, reserved, zero
    let c = crc(&[&h[..12]]);
    h[12..16].copy_from_slice(&c.to_le_bytes());
    h
}

pub fn check_header(h: &[u8; HEADER_LEN]) -> Result<(), BundleError> {
    if h[..8] != MAGIC {
        return Err(BundleError::BadMagic);
    }
    let stored = u32_at(h, 12);
    if !crc_matches(crc(&[&h[..12]]), stored) {
        return Err(BundleError::Checksum {
            offset: 0,
            what: "file header",
        });
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != FORMAT_VERSION {
        return Err(BundleError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if h[10] != 0 || h[11] != 0 {
        return Err(BundleError::malformed(
            10,
            "header flags must be zero in version 1",
        ));
    }
    Ok(())
}

pub fn encode_record_header(kind: u8, flags: u8, len: u64) -> [u8; RECORD_HEADER_LEN] {
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[0] = kind;
    h[1] = flags;
    h[4..12].copy_from_slice(&len.to_le_bytes());
    let c = crc(&[&h[..12]]);
    h[12..16].copy_from_slice(&c.to_le_bytes());
    h
}

/// A decoded record header.
#[derive(Clone, Copy, Debug)]
pub struct RecordHeader {
    pub kind: u8,
    pub flags: u8,
    pub len: u64,
    /// Offset of the header's first byte in the file.
    pub offset: u64,
}

impl RecordHeader {
    /// Offset of the first payload byte.
    pub fn payload_offset(&self) -> u64 {
        self.offset.saturating_add(RECORD_HEADER_LEN as u64)
    }
}

pub fn decode_record_header(
    h: &[u8; RECORD_HEADER_LEN],
    offset: u64,
) -> Result<RecordHeader, BundleError> {
    if !crc_matches(crc(&[&h[..12]]), u32_at(h, 12)) {
        return Err(BundleError::Checksum {
            offset,
            what: "record header",
        });
    }
    if h[2] != 0 || h[3] != 0 {
        return Err(BundleError::malformed(
            offset,
            "record reserved bytes are not zero",
        ));
    }
    Ok(RecordHeader {
        kind: h[0],
        flags: h[1],
        len: u64_at(h, 4),
        offset,
    })
}

pub fn encode_footer(index_offset: u64, index_len: u64) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    f[..8].copy_from_slice(&index_offset.to_le_bytes());
    f[8..16].copy_from_slice(&index_len.to_le_bytes());
    f[16..18].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let c = crc(&[&f[..20]]);
    f[20..24].copy_from_slice(&c.to_le_bytes());
    f[24..32].copy_from_slice(&END_MAGIC);
    f
}

/// Returns (index_offset, index_len) after checking magic, checksum and version.
pub fn decode_footer(f: &[u8; FOOTER_LEN], offset: u64) -> Result<(u64, u64), BundleError> {
    if f[24..32] != END_MAGIC {
        return Err(BundleError::BadFooterMagic { offset });
    }
    if !crc_matches(crc(&[&f[..20]]), u32_at(f, 20)) {
        return Err(BundleError::Checksum {
            offset,
            what: "footer",
        });
    }
    let version = u16::from_le_bytes([f[16], f[17]]);
    if version != FORMAT_VERSION {
        return Err(BundleError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if f[18] != 0 || f[19] != 0 {
        return Err(BundleError::malformed(
            offset + 18,
            "footer reserved bytes are not zero",
        ));
    }
    Ok((u64_at(f, 0), u64_at(f, 8)))
}

pub fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

pub fn digest_at(b: &[u8], at: usize) -> Digest {
    let mut a = [0u8; 32];
    a.copy_from_slice(&b[at..at + 32]);
    Digest(a)
}

/// Which kind of stream an index entry or start record describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamId {
    Section { name: String, state_version: u32 },
    Blob { digest: Digest, size: u64 },
}

/// One index entry, as written and as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub id: StreamId,
    pub digest: Digest,
    pub size: u64,
    pub offset: u64,
    pub stored_bytes: u64,
}

pub fn encode_index(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + entries.len() * (INDEX_ENTRY_MIN + 8));
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        match &e.id {
            StreamId::Section {
                name,
                state_version,
            } => {
                out.push(KIND_SECTION_START);
                out.extend_from_slice(&state_version.to_le_bytes());
                // Names are checked against u16 range by the writer.
                let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&name.as_bytes()[..usize::from(len)]);
            }
            StreamId::Blob { .. } => {
                out.push(KIND_BLOB_START);
                out.extend_from_slice(&0u32.to_le_bytes());
                out.extend_from_slice(&0u16.to_le_bytes());
            }
        }
        out.extend_from_slice(&e.digest.0);
        out.extend_from_slice(&e.size.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.stored_bytes.to_le_bytes());
    }
    out
}

/// Decodes an index payload; `offset` is the payload's file offset (for errors).
pub fn decode_index(
    p: &[u8],
    offset: u64,
    limits: &Limits,
) -> Result<Vec<IndexEntry>, BundleError> {
    let bad = |at: usize, why: &str| BundleError::malformed(offset + at as u64, why.to_string());
    if p.len() < 8 {
        return Err(bad(0, "index payload shorter than its entry count"));
    }
    let count = u64_at(p, 0);
    if count > limits.max_index_entries {
        return Err(BundleError::LimitExceeded {
            what: "index entry count",
            value: count,
            limit: limits.max_index_entries,
        });
    }
    let room = (p.len() - 8) as u64 / INDEX_ENTRY_MIN as u64;
    if count > room {
        return Err(bad(0, "index entry count exceeds what its length can hold"));
    }
    let count = usize::try_from(count).map_err(|_| bad(0, "index entry count overflows"))?;
    let mut entries = Vec::with_capacity(count);
    let mut at = 8usize;
    for _ in 0..count {
        let need = |at: usize, n: usize| -> Result<(), BundleError> {
            if p.len().saturating_sub(at) < n {
                Err(bad(at, "index entry runs past the end of the index"))
            } else {
                Ok(())
            }
        };
        need(at, 7)?;
        let kind = p[at];
        let state_version = u32_at(p, at + 1);
        let name_len = usize::from(u16::from_le_bytes([p[at + 5], p[at + 6]]));
        let entry_at = at;
        at += 7;
        if name_len as u64 > limits.max_name_bytes {
            return Err(BundleError::LimitExceeded {
                what: "section name length",
                value: name_len as u64,
                limit: limits.max_name_bytes,
            });
        }
        need(at, name_len + 56)?;
        let name_bytes = &p[at..at + name_len];
        at += name_len;
        let digest = digest_at(p, at);
        let size = u64_at(p, at + 32);
        let off = u64_at(p, at + 40);
        let stored = u64_at(p, at + 48);
        at += 56;
        let id = match kind {
            KIND_SECTION_START => {
                let name = std::str::from_utf8(name_bytes)
                    .map_err(|_| bad(entry_at, "section name is not UTF-8"))?
                    .to_string();
                if name.is_empty() {
                    return Err(bad(entry_at, "empty section name in index"));
                }
                if size > limits.max_section_bytes {
                    return Err(BundleError::LimitExceeded {
                        what: "section size",
                        value: size,
                        limit: limits.max_section_bytes,
                    });
                }
                StreamId::Section {
                    name,
                    state_version,
                }
            }
            KIND_BLOB_START => {
                if name_len != 0 || state_version != 0 {
                    return Err(bad(entry_at, "blob index entry has a name or version"));
                }
                if size > limits.max_blob_bytes {
                    return Err(BundleError::LimitExceeded {
                        what: "blob size",
                        value: size,
                        limit: limits.max_blob_bytes,
                    });
                }
                StreamId::Blob { digest, size }
            }
            other => {
                return Err(bad(
                    entry_at,
                    &format!("unknown index entry kind 0x{other:02x}"),
                ));
            }
        };
        entries.push(IndexEntry {
            id,
            digest,
            size,
            offset: off,
            stored_bytes: stored,
        });
    }
    if at != p.len() {
        return Err(bad(at, "trailing bytes after the last index entry"));
    }
    Ok(entries)
}

/// Section start payload.
pub fn encode_section_start(name: &str, state_version: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(SECTION_START_FIXED + name.len());
    p.extend_from_slice(&state_version.to_le_bytes());
    let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
    p.extend_from_slice(&len.to_le_bytes());
    p.extend_from_slice(&name.as_bytes()[..usize::from(len)]);
    p
}

pub fn decode_start(h: &RecordHeader, p: &[u8], limits: &Limits) -> Result<StreamId, BundleError> {
    let off = h.payload_offset();
    match h.kind {
        KIND_SECTION_START => {
            if p.len() < SECTION_START_FIXED {
                return Err(BundleError::malformed(
                    off,
                    "section start record too short",
                ));
            }
            let state_version = u32_at(p, 0);
            let name_len = usize::from(u16::from_le_bytes([p[4], p[5]]));
            if name_len as u64 > limits.max_name_bytes {
                return Err(BundleError::LimitExceeded {
                    what: "section name length",
                    value: name_len as u64,
                    limit: limits.max_name_bytes,
                });
            }
            if p.len() != SECTION_START_FIXED + name_len {
                return Err(BundleError::malformed(
                    off,
                    "section start record length does not match its name length",
                ));
            }
            let name = std::str::from_utf8(&p[SECTION_START_FIXED..])
                .map_err(|_| BundleError::malformed(off + 6, "section name is not UTF-8"))?;
            if name.is_empty() {
                return Err(BundleError::malformed(off + 6, "empty section name"));
            }
            Ok(StreamId::Section {
                name: name.to_string(),
                state_version,
            })
        }
        _ => {
            if p.len() != BLOB_START_LEN {
                return Err(BundleError::malformed(
                    off,
                    "blob start record has the wrong length",
                ));
            }
            let digest = digest_at(p, 0);
            let size = u64_at(p, 32);
            if size > limits.max_blob_bytes {
                return Err(BundleError::LimitExceeded {
                    what: "blob size",
                    value: size,
                    limit: limits.max_blob_bytes,
                });
            }
            Ok(StreamId::Blob { digest, size })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_the_zlib_crc32_named_in_the_spec() {
        assert_eq!(crc(&[b"1234", b"56789"]), 0xCBF4_3926);
    }

    #[test]
    fn header_footer_and_record_headers_round_trip() {
        check_header(&encode_header()).unwrap();
        let f = encode_footer(1234, 56);
        assert_eq!(decode_footer(&f, 0).unwrap(), (1234, 56));
        let h = decode_record_header(&encode_record_header(KIND_CHUNK, 1, 99), 7).unwrap();
        assert_eq!((h.kind, h.flags, h.len, h.offset), (KIND_CHUNK, 1, 99, 7));
    }

    #[test]
    fn index_round_trips_and_rejects_short_or_oversized_input() {
        let entries = vec![
            IndexEntry {
                id: StreamId::Section {
                    name: "s3".into(),
                    state_version: 4,
                },
                digest: Digest::of(b"a"),
                size: 1,
                offset: 100,
                stored_bytes: 80,
            },
            IndexEntry {
                id: StreamId::Blob {
                    digest: Digest::of(b"b"),
                    size: 1,
                },
                digest: Digest::of(b"b"),
                size: 1,
                offset: 180,
                stored_bytes: 120,
            },
        ];
        let p = encode_index(&entries);
        assert_eq!(p.len(), 8 + 2 * INDEX_ENTRY_MIN + 2);
        assert_eq!(decode_index(&p, 0, &Limits::default()).unwrap(), entries);
        for cut in 0..p.len() {
            assert!(decode_index(&p[..cut], 0, &Limits::default()).is_err());
        }
        let tight = Limits {
            max_index_entries: 1,
            ..Limits::default()
        };
        assert!(matches!(
            decode_index(&p, 0, &tight),
            Err(BundleError::LimitExceeded { .. })
        ));
    }
}
