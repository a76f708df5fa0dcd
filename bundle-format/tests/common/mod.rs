//! Helpers shared by the integration tests: building bundles and hand-crafting bytes.
#![allow(dead_code)]

use std::io::Read;

use cryopod_bundle::*;

/// What a test bundle holds.
#[derive(Clone, Debug)]
pub struct Spec {
    pub sections: Vec<(String, u32, Vec<u8>)>,
    pub blobs: Vec<Vec<u8>>,
    pub chunk_size: usize,
}

pub fn manifest() -> Manifest {
    Manifest {
        producer: "cryopod-test 0.0.0".into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        services: vec![ServiceEntry {
            name: "s3".into(),
            state_version: 1,
            scopes: vec![ScopeEntry {
                account: "000000000000".into(),
                region: "us-east-1".into(),
                resources: [("bucket".to_string(), 2u64)].into_iter().collect(),
            }],
        }],
        blobs: BlobSummary {
            count: 1,
            bytes: 10,
        },
    }
}

pub fn build(spec: &Spec) -> Vec<u8> {
    let opts = WriteOptions {
        level: 3,
        chunk_size: spec.chunk_size,
    };
    let mut w = BundleWriter::new(Vec::new(), &manifest(), opts).unwrap();
    for (name, v, data) in &spec.sections {
        let d = w.write_section(name, *v, data).unwrap();
        assert_eq!(d, Digest::of(data));
    }
    for b in &spec.blobs {
        w.blob(&Digest::of(b), b.len() as u64, &mut &b[..]).unwrap();
    }
    w.finish().unwrap()
}

/// An output that keeps every buffer lent to it (as an HTTP body does) and records how
/// the bytes arrived: `(copied, lent)` byte counts.
#[derive(Default)]
pub struct Lending {
    pub frames: Vec<(std::sync::Arc<Vec<u8>>, std::ops::Range<usize>)>,
    pub copied: usize,
    pub lent: usize,
}

impl BundleOutput for Lending {
    fn write_bytes(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.copied += buf.len();
        self.frames
            .push((std::sync::Arc::new(buf.to_vec()), 0..buf.len()));
        Ok(())
    }

    fn write_shared(
        &mut self,
        buf: &std::sync::Arc<Vec<u8>>,
        range: std::ops::Range<usize>,
    ) -> std::io::Result<()> {
        self.lent += range.len();
        self.frames.push((buf.clone(), range));
        Ok(())
    }

    fn flush_output(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `spec` written through a [`Lending`] output: the bytes in order, and the output.
pub fn build_lending(spec: &Spec) -> (Vec<u8>, Lending) {
    let opts = WriteOptions {
        level: 3,
        chunk_size: spec.chunk_size,
    };
    let mut w = BundleWriter::new(Lending::default(), &manifest(), opts).unwrap();
    for (name, v, data) in &spec.sections {
        w.write_section(name, *v, data).unwrap();
    }
    for b in &spec.blobs {
        w.blob(&Digest::of(b), b.len() as u64, &mut &b[..]).unwrap();
    }
    let out = w.finish().unwrap();
    // Read only now: a buffer the writer changed after lending it would show here.
    let bytes = out
        .frames
        .iter()
        .flat_map(|(b, r)| b[r.clone()].to_vec())
        .collect();
    (bytes, out)
}

/// A generator of incompressible bytes (xorshift), the same for the same seed.
pub struct Random(pub u64);

impl Random {
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}

/// A small bundle with several multi-chunk, compressible and incompressible streams.
pub fn sample() -> (Spec, Vec<u8>) {
    let mut rng = Random(0x1234_5678);
    let mut random = |n: usize| rng.bytes(n);
    let spec = Spec {
        sections: vec![
            (
                "s3".into(),
                1,
                b"hello hello hello hello hello hello".repeat(20),
            ),
            ("sqs".into(), 2, Vec::new()),
            ("dynamodb".into(), 7, random(150)),
        ],
        blobs: vec![random(300), b"tiny".to_vec(), Vec::new(), vec![0u8; 500]],
        chunk_size: 128,
    };
    let bytes = build(&spec);
    (spec, bytes)
}

/// A `Read` that is not `Seek` and returns short reads, like a pipe.
pub struct Pipe<'a> {
    pub data: &'a [u8],
    pub pos: usize,
    pub step: usize,
}

impl Read for Pipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        self.step = self.step % 13 + 1;
        Ok(n)
    }
}

/// Everything a sequential read yields: sections then blobs, in file order.
pub type Contents = (Vec<(String, u32, Vec<u8>)>, Blobs);

pub fn read_sequential(r: impl Read, limits: Limits) -> Result<Contents, BundleError> {
    let mut br = BundleReader::new(r, limits)?;
    let mut sections = Vec::new();
    let mut blobs = Vec::new();
    while let Some(e) = br.next_entry()? {
        match e {
            Entry::Section {
                service,
                state_version,
                reader,
            } => sections.push((service, state_version, reader.read_all()?)),
            Entry::Blob {
                digest,
                size,
                reader,
            } => {
                let data = reader.read_all()?;
                assert_eq!(data.len() as u64, size);
                blobs.push((digest, data));
            }
        }
    }
    Ok((sections, blobs))
}

/// Blobs as (digest, bytes).
pub type Blobs = Vec<(Digest, Vec<u8>)>;

/// Collects piped blobs: bytes as they arrive, and a blob only once committed.
struct VecSink {
    digest: Digest,
    data: Vec<u8>,
    out: std::sync::Arc<std::sync::Mutex<Blobs>>,
}

impl StreamSink for VecSink {
    fn write(&mut self, chunk: Chunk) -> std::io::Result<()> {
        self.data.extend_from_slice(&chunk);
        Ok(())
    }
    fn commit(self: Box<Self>) -> std::io::Result<()> {
        let s = *self;
        s.out.lock().unwrap().push((s.digest, s.data));
        Ok(())
    }
}

/// Like [`read_sequential`], but every blob is piped into a sink (`StreamReader::pipe_to`).
/// Returns the contents on success; on failure, the error and the blobs committed before
/// it, each of which the caller should check against its digest. Blobs are listed in file
/// order: they may be committed in another (a blob that starts while the reader's hashing
/// thread is behind is verified by the reading thread, possibly before earlier ones).
pub fn read_piped(r: impl Read, limits: Limits) -> Result<Contents, (BundleError, Blobs)> {
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut order = Vec::new();
    let result = (|| {
        let mut br = BundleReader::new(r, limits)?;
        let mut sections = Vec::new();
        while let Some(e) = br.next_entry()? {
            match e {
                Entry::Section {
                    service,
                    state_version,
                    reader,
                } => sections.push((service, state_version, reader.read_all()?)),
                Entry::Blob { digest, reader, .. } => {
                    order.push(digest);
                    reader.pipe_to(Box::new(VecSink {
                        digest,
                        data: Vec::new(),
                        out: out.clone(),
                    }))?
                }
            }
        }
        Ok(sections)
    })();
    // Dropping the reader (done above) joins its hashing thread, so `out` is final.
    let mut blobs = std::mem::take(&mut *out.lock().unwrap());
    blobs.sort_by_key(|(d, _)| order.iter().position(|o| o == d));
    match result {
        Ok(sections) => Ok((sections, blobs)),
        Err(e) => Err((e, blobs)),
    }
}

/// Reads every stream through the index.
pub fn read_seekable(bytes: &[u8], limits: Limits) -> Result<Contents, BundleError> {
    let mut sb = SeekableBundle::open(std::io::Cursor::new(bytes), limits)?;
    let mut sections = Vec::new();
    for s in sb.sections() {
        let data = sb.open_section(&s.service)?.expect("listed").read_all()?;
        sections.push((s.service, s.state_version, data));
    }
    let mut blobs = Vec::new();
    for b in sb.blobs() {
        let data = sb.open_blob(&b.digest)?.expect("listed").read_all()?;
        blobs.push((b.digest, data));
    }
    Ok((sections, blobs))
}

// ---- hand-crafting bytes (mirrors SPEC.md, independently of the crate's code) ----

pub fn crc(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

pub fn header(version: u16) -> Vec<u8> {
    let mut h = b"\x89CRYOPOD".to_vec();
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&[0, 0]);
    let c = crc(&h);
    h.extend_from_slice(&c.to_le_bytes());
    h
}

/// A record whose header says `len` (which may lie) followed by `payload`.
pub fn record_with_len(kind: u8, flags: u8, len: u64, payload: &[u8]) -> Vec<u8> {
    let mut r = vec![kind, flags, 0, 0];
    r.extend_from_slice(&len.to_le_bytes());
    let c = crc(&r);
    r.extend_from_slice(&c.to_le_bytes());
    r.extend_from_slice(payload);
    r.extend_from_slice(&crc(payload).to_le_bytes());
    r
}

pub fn record(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    record_with_len(kind, flags, payload.len() as u64, payload)
}

pub fn footer(index_offset: u64, index_len: u64, version: u16) -> Vec<u8> {
    let mut f = index_offset.to_le_bytes().to_vec();
    f.extend_from_slice(&index_len.to_le_bytes());
    f.extend_from_slice(&version.to_le_bytes());
    f.extend_from_slice(&[0, 0]);
    let c = crc(&f);
    f.extend_from_slice(&c.to_le_bytes());
    f.extend_from_slice(b"DOPOYRC\x89");
    f
}

pub fn manifest_record() -> Vec<u8> {
    record(0x01, 0, &serde_json::to_vec(&manifest()).unwrap())
}

/// (index_offset, index_len) from a valid bundle's footer.
pub fn footer_of(bytes: &[u8]) -> (u64, u64) {
    let f = &bytes[bytes.len() - 32..];
    (
        u64::from_le_bytes(f[..8].try_into().unwrap()),
        u64::from_le_bytes(f[8..16].try_into().unwrap()),
    )
}
