//! Moving object bodies between HTTP and the blob store without holding them in memory.
//!
//! Writes stream the request body through a small bounded channel into a
//! [`cryopod::blob::BlobWriter`] on the blocking pool (hashing sha256 for the store and MD5 for
//! the ETag on the way), so a 20 MiB body is never held whole. Reads stream blob files back the
//! same way, honouring byte ranges across the chunks of a multipart object.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use cryopod::blob::BlobWriter;
use cryopod::{BlobStore, Digest};
use futures::{Stream, StreamExt};
use md5::{Digest as _, Md5};
use s3s::dto::StreamingBlob;
use tokio::sync::mpsc;

use crate::checksum::{Algorithm, Declared, Expected, Hasher, Mismatch, ObjectChecksum, Trailers};
use crate::state::Chunk;

/// The boxed error type s3s streams carry.
pub type StdError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Bytes read per message when streaming a blob out.
const READ_BUF: usize = 256 * 1024;

/// What storing a body produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The blob, or `None` for an empty body (no blob is kept for zero bytes).
    pub chunk: Option<Chunk>,
    /// Bytes stored.
    pub size: u64,
    /// Hex MD5 of the bytes: the ETag of a single-part object.
    pub md5_hex: String,
    /// The additional checksum computed (and verified, when the client sent one).
    pub checksum: Option<ObjectChecksum>,
}

impl Stored {
    /// The chunk list of an object made of this body.
    pub fn chunks(&self) -> Vec<Chunk> {
        self.chunk.into_iter().collect()
    }
}

/// Why a body could not be stored.
#[derive(Debug)]
pub enum StoreError {
    /// Reading the request body failed (client went away, bad framing).
    Body(String),
    /// The blob store failed.
    Io(io::Error),
    /// The body is larger than allowed.
    TooLarge,
    /// The body is not what the request declared (digest, checksum, length).
    Mismatch(Mismatch),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Body(m) => write!(f, "could not read the request body: {m}"),
            StoreError::Io(e) => write!(f, "blob store: {e}"),
            StoreError::TooLarge => f.write_str("the body is larger than allowed"),
            StoreError::Mismatch(m) => write!(f, "the body does not match the request: {m:?}"),
        }
    }
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Io(e)
    }
}

/// The hashes computed over a body on its way into the store.
struct Hashes {
    md5: Md5,
    checksum: Option<(Algorithm, Hasher)>,
}

impl Hashes {
    fn new(algorithm: Option<Algorithm>) -> Self {
        Self {
            md5: Md5::new(),
            checksum: algorithm.map(|a| (a, Hasher::new(a))),
        }
    }

    fn update(&mut self, b: &[u8]) {
        self.md5.update(b);
        if let Some((_, h)) = &mut self.checksum {
            h.update(b);
        }
    }
}

/// Checks `Content-MD5`.
fn check_md5(expected: &Expected, md5: &[u8]) -> Result<(), StoreError> {
    match &expected.content_md5 {
        Some(want) if want[..] != *md5 => Err(StoreError::Mismatch(Mismatch::ContentMd5)),
        _ => Ok(()),
    }
}

/// Checks a hex `x-amz-content-sha256` against the body's SHA-256 (its blob digest).
fn check_sha256(expected: &Expected, sha256: &Digest) -> Result<(), StoreError> {
    match &expected.content_sha256 {
        Some(want) if want != sha256 => Err(StoreError::Mismatch(Mismatch::ContentSha256 {
            client: want.hex(),
            computed: sha256.hex(),
        })),
        _ => Ok(()),
    }
}

/// Checks the additional checksum `got` (computed) against the client's value, taken from
/// the header or, for `aws-chunked` bodies, from the trailing headers that just arrived.
fn check_checksum(
    expected: &Expected,
    algorithm: Algorithm,
    got: &[u8],
) -> Result<ObjectChecksum, StoreError> {
    let want = match expected.checksum.as_ref().map(|(_, d)| d) {
        Some(Declared::Header(v)) => Some(v.clone()),
        Some(Declared::Trailer(t)) => {
            let header = algorithm.header();
            let value = t.get(header).ok_or_else(|| {
                StoreError::Mismatch(Mismatch::Trailer(format!(
                    "The trailing header {header} declared in x-amz-trailer was not sent."
                )))
            })?;
            Some(algorithm.decode(&value).ok_or_else(|| {
                StoreError::Mismatch(Mismatch::Trailer(format!(
                    "Value for {header} trailing header is invalid."
                )))
            })?)
        }
        Some(Declared::Compute) | None => None,
    };
    if want.is_some_and(|w| w != got) {
        return Err(StoreError::Mismatch(Mismatch::Checksum(algorithm)));
    }
    Ok(ObjectChecksum::new(algorithm, got))
}

/// Checks a body written to `w` against `want` and names it in the store.
///
/// Every check but SHA-256 comes before the blob is named; SHA-256 is the blob's name,
/// known at its commit, so only a wrong SHA-256 leaves a blob behind (unreferenced, for the
/// collector to remove). Blocking.
fn finish(w: BlobWriter, hashes: Hashes, want: &Expected) -> Result<Stored, StoreError> {
    let md5 = hashes.md5.finalize();
    check_md5(want, &md5)?;
    let mut checksum = None;
    let mut by_digest = None;
    if let Some((a, h)) = hashes.checksum {
        match h.finish() {
            Some(raw) => checksum = Some(check_checksum(want, a, &raw)?),
            None => by_digest = Some(a),
        }
    }
    let (chunk, sha256) = if w.size() == 0 {
        (None, Digest::of(b""))
    } else {
        let (digest, size) = w.commit()?;
        (Some(Chunk { digest, size }), digest)
    };
    check_sha256(want, &sha256)?;
    if let Some(a) = by_digest {
        checksum = Some(check_checksum(want, a, &sha256.0)?);
    }
    Ok(Stored {
        chunk,
        size: chunk.map_or(0, |c| c.size),
        md5_hex: hex::encode(md5),
        checksum,
    })
}

/// Streams `stream` into the blob store, checking it against `expected` on the way (one
/// pass: the bytes are hashed as they are written, never copied). At most a few network
/// buffers are in memory at once. A body that does not match is never named in the store.
pub async fn store_stream<S, E>(
    blobs: &BlobStore,
    mut stream: S,
    limit: u64,
    expected: &Expected,
) -> Result<Stored, StoreError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let (tx, mut rx) = mpsc::channel::<Bytes>(8);
    let abort = Arc::new(AtomicBool::new(false));
    let abort_w = abort.clone();
    let store = blobs.clone();
    let want = expected.clone();
    let task = tokio::task::spawn_blocking(move || -> Result<Option<Stored>, StoreError> {
        let mut w = store.writer()?;
        let mut hashes = Hashes::new(want.checksum.as_ref().map(|(a, _)| *a));
        while let Some(b) = rx.blocking_recv() {
            w.write_all(&b)?;
            hashes.update(&b);
        }
        if abort_w.load(Ordering::SeqCst) {
            return Ok(None);
        }
        finish(w, hashes, &want).map(Some)
    });
    let mut failure = None;
    let mut total = 0u64;
    while let Some(item) = stream.next().await {
        match item {
            Ok(b) => {
                total += b.len() as u64;
                if let Some(declared) = expected.length
                    && total > declared
                {
                    failure = Some(StoreError::Mismatch(Mismatch::Length {
                        declared,
                        got: total,
                    }));
                    break;
                }
                if total > limit {
                    failure = Some(StoreError::TooLarge);
                    break;
                }
                if tx.send(b).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                failure = Some(StoreError::Body(e.to_string()));
                break;
            }
        }
    }
    if failure.is_none()
        && let Some(declared) = expected.length
        && total != declared
    {
        failure = Some(StoreError::Mismatch(Mismatch::Length {
            declared,
            got: total,
        }));
    }
    if failure.is_some() {
        abort.store(true, Ordering::SeqCst);
    }
    drop(tx);
    let outcome = task
        .await
        .map_err(|e| StoreError::Io(io::Error::other(e.to_string())))?;
    if let Some(f) = failure {
        return Err(f);
    }
    match outcome {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(StoreError::Body("aborted".into())),
        Err(e) => Err(e),
    }
}

/// Calls `each` with successive pieces of `range` of the body made of `chunks`.
fn for_each_piece(
    blobs: &BlobStore,
    chunks: &[Chunk],
    range: std::ops::Range<u64>,
    mut each: impl FnMut(Bytes) -> io::Result<bool>,
) -> io::Result<()> {
    let mut pos = 0u64;
    for c in chunks {
        let start = pos;
        let end = pos + c.size;
        pos = end;
        if end <= range.start || start >= range.end {
            continue;
        }
        let from = range.start.max(start) - start;
        let to = range.end.min(end) - start;
        let mut f = blobs.open_blob(&c.digest)?;
        f.seek(SeekFrom::Start(from))?;
        let mut remaining = to - from;
        while remaining > 0 {
            let n = remaining.min(READ_BUF as u64) as usize;
            let mut buf = vec![0u8; n];
            f.read_exact(&mut buf)?;
            remaining -= n as u64;
            if !each(Bytes::from(buf))? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A receiver as a `Stream` (`Send + Sync`, as s3s requires of bodies).
struct RxStream(mpsc::Receiver<Result<Bytes, io::Error>>);

impl Stream for RxStream {
    type Item = Result<Bytes, io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Streams `range` of the body made of `chunks` out of the blob store.
pub fn read_stream(
    blobs: BlobStore,
    chunks: Vec<Chunk>,
    range: std::ops::Range<u64>,
) -> StreamingBlob {
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let res = for_each_piece(&blobs, &chunks, range, |b| {
            Ok(tx.blocking_send(Ok(b)).is_ok())
        });
        if let Err(e) = res {
            tracing::error!(error = %e, "reading an object body from the blob store failed");
            let _ = tx.blocking_send(Err(e));
        }
    });
    StreamingBlob::wrap(RxStream(rx))
}

/// Bodies up to this size are read whole before the response starts, so the response head
/// and body leave in one write (a streamed first chunk arriving after the head costs a
/// delayed-ACK round trip on connections without `TCP_NODELAY`).
pub const SMALL_BODY: u64 = 1024 * 1024;

/// Reads `range` of a small body (at most [`SMALL_BODY`]) as one ready stream.
pub async fn read_small(
    blobs: BlobStore,
    chunks: Vec<Chunk>,
    range: std::ops::Range<u64>,
) -> io::Result<StreamingBlob> {
    let bytes = tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        for_each_piece(&blobs, &chunks, range, |b| {
            out.extend_from_slice(&b);
            Ok(true)
        })?;
        Ok::<_, io::Error>(Bytes::from(out))
    })
    .await
    .map_err(|e| io::Error::other(e.to_string()))??;
    Ok(StreamingBlob::wrap(futures::stream::iter(vec![Ok::<
        _,
        io::Error,
    >(
        bytes
    )])))
}

/// Copies `range` of a body into a new blob (UploadPartCopy, and a one-blob view of a
/// multipart object for other services), computing `algorithm`'s checksum of the copy.
/// Blocking: call on the blocking pool.
pub fn copy_range_to_blob(
    blobs: &BlobStore,
    chunks: &[Chunk],
    range: std::ops::Range<u64>,
    algorithm: Option<Algorithm>,
) -> Result<Stored, StoreError> {
    let mut w = blobs.writer()?;
    let mut hashes = Hashes::new(algorithm);
    for_each_piece(blobs, chunks, range, |b| {
        w.write_all(&b)?;
        hashes.update(&b);
        Ok(true)
    })?;
    finish(w, hashes, &Expected::default())
}

/// Longest chunk header or trailing header line accepted: a peer that never sends a line
/// end cannot make the decoder buffer without bound.
const MAX_LINE: usize = 64 * 1024;

/// Most trailing headers accepted.
const MAX_TRAILERS: usize = 16;

/// Decodes `Content-Encoding: aws-chunked` framing (`<hex size>[;chunk-signature=…]\r\n
/// <data>\r\n … 0\r\n<trailers>\r\n\r\n`). Chunk signatures are not verified: the
/// emulator accepts any credentials, like every local emulator. The trailing headers
/// (`x-amz-checksum-crc32:…`) are handed to [`AwsChunkedDecoder::trailers`], where the body
/// writer reads them to check the body once it has ended.
pub struct AwsChunkedDecoder<S> {
    inner: S,
    buf: BytesMut,
    state: ChunkState,
    trailers: Trailers,
    received: Vec<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    Header,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl<S> AwsChunkedDecoder<S> {
    /// Wraps a stream of framed bytes.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            state: ChunkState::Header,
            trailers: Trailers::default(),
            received: Vec::new(),
        }
    }

    /// Where the trailing headers will be once the body has been read to its end.
    pub fn trailers(&self) -> Trailers {
        self.trailers.clone()
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

impl<S, E> Stream for AwsChunkedDecoder<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<StdError>,
{
    type Item = Result<Bytes, StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            // Make progress with what is buffered.
            match this.state {
                ChunkState::Done => return Poll::Ready(None),
                ChunkState::Header => {
                    if let Some(i) = find_crlf(&this.buf) {
                        let line = this.buf.split_to(i + 2);
                        let text = String::from_utf8_lossy(&line[..i]);
                        let size_txt = text.split(';').next().unwrap_or("").trim();
                        let size = match u64::from_str_radix(size_txt, 16) {
                            Ok(n) => n,
                            Err(_) => {
                                this.state = ChunkState::Done;
                                return Poll::Ready(Some(Err(format!(
                                    "invalid aws-chunked chunk header {text:?}"
                                )
                                .into())));
                            }
                        };
                        this.state = if size == 0 {
                            ChunkState::Trailers
                        } else {
                            ChunkState::Data(size)
                        };
                        continue;
                    }
                }
                ChunkState::Data(n) => {
                    if !this.buf.is_empty() {
                        let take = (this.buf.len() as u64).min(n) as usize;
                        let out = this.buf.split_to(take).freeze();
                        let left = n - take as u64;
                        this.state = if left == 0 {
                            ChunkState::DataEnd
                        } else {
                            ChunkState::Data(left)
                        };
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                ChunkState::DataEnd => {
                    if this.buf.len() >= 2 {
                        if &this.buf[..2] != b"\r\n" {
                            this.state = ChunkState::Done;
                            return Poll::Ready(Some(Err(
                                "aws-chunked data not followed by CRLF".into()
                            )));
                        }
                        this.buf.advance(2);
                        this.state = ChunkState::Header;
                        continue;
                    }
                }
                ChunkState::Trailers => {
                    if let Some(i) = find_crlf(&this.buf) {
                        let line = this.buf.split_to(i + 2);
                        if i == 0 {
                            this.state = ChunkState::Done;
                            this.trailers.set(std::mem::take(&mut this.received));
                            continue;
                        }
                        let text = String::from_utf8_lossy(&line[..i]);
                        // `x-amz-trailer-signature` and the like are kept too; only the
                        // declared checksum is read.
                        if let Some((k, v)) = text.split_once(':') {
                            this.received
                                .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                        }
                        if this.received.len() > MAX_TRAILERS {
                            this.state = ChunkState::Done;
                            return Poll::Ready(Some(Err("too many aws-chunked trailers".into())));
                        }
                        continue;
                    }
                }
            }
            if this.buf.len() > MAX_LINE
                && matches!(this.state, ChunkState::Header | ChunkState::Trailers)
            {
                this.state = ChunkState::Done;
                return Poll::Ready(Some(Err("aws-chunked header line too long".into())));
            }
            // Need more input.
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(b))) => this.buf.extend_from_slice(&b),
                Poll::Ready(Some(Err(e))) => {
                    this.state = ChunkState::Done;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(None) => {
                    let st = this.state;
                    this.state = ChunkState::Done;
                    if st == ChunkState::Trailers {
                        // Ended without the final empty line (some clients): the trailers
                        // read so far count.
                        this.trailers.set(std::mem::take(&mut this.received));
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err("aws-chunked body ended early".into())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn decode(parts: Vec<&'static [u8]>) -> Result<Vec<u8>, StdError> {
        let s = futures::stream::iter(
            parts
                .into_iter()
                .map(|p| Ok::<_, StdError>(Bytes::from_static(p))),
        );
        let mut d = AwsChunkedDecoder::new(s);
        let mut out = Vec::new();
        while let Some(b) = d.next().await {
            out.extend_from_slice(&b?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn aws_chunked_framing_is_removed_even_when_split_anywhere() {
        let got = decode(vec![
            b"5;chunk-signature=ab\r\nhel",
            b"lo\r\n",
            b"3\r",
            b"\nabc\r\n0;chunk-signature=cd\r\nx-amz-checksum-crc32:AAAA\r\n\r\n",
        ])
        .await
        .unwrap();
        assert_eq!(got, b"helloabc");
    }

    #[tokio::test]
    async fn truncated_aws_chunked_body_is_an_error() {
        assert!(decode(vec![b"5\r\nhel"]).await.is_err());
        assert!(decode(vec![b"zz\r\n"]).await.is_err());
    }

    #[tokio::test]
    async fn bodies_round_trip_through_the_blob_store_with_ranges() {
        let blobs = BlobStore::temporary().unwrap();
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        let pieces: Vec<Result<Bytes, std::io::Error>> = data
            .chunks(65_536)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let stored = store_stream(
            &blobs,
            futures::stream::iter(pieces),
            u64::MAX,
            &Expected::default(),
        )
        .await
        .unwrap();
        assert_eq!(stored.size, data.len() as u64);
        assert_eq!(stored.md5_hex, hex::encode(Md5::digest(&data)));
        // The same body twice makes one blob (content addressing).
        let again = store_stream(
            &blobs,
            futures::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from(data.clone()))]),
            u64::MAX,
            &Expected::default(),
        )
        .await
        .unwrap();
        assert_eq!(again.chunk, stored.chunk);
        // A body of two chunks read across the boundary.
        let chunks = vec![stored.chunk.unwrap(), again.chunk.unwrap()];
        let mut s = read_stream(blobs.clone(), chunks.clone(), 699_990..700_010);
        let mut got = Vec::new();
        while let Some(b) = s.next().await {
            got.extend_from_slice(&b.unwrap());
        }
        let mut want = data[699_990..].to_vec();
        want.extend_from_slice(&data[..10]);
        assert_eq!(got, want);
        let copy = copy_range_to_blob(&blobs, &chunks, 5..15, None).unwrap();
        assert_eq!(
            blobs.read(&copy.chunk.unwrap().digest).unwrap(),
            &data[5..15]
        );
    }

    #[tokio::test]
    async fn empty_bodies_keep_no_blob_and_too_large_bodies_are_refused() {
        let blobs = BlobStore::temporary().unwrap();
        let empty = store_stream(
            &blobs,
            futures::stream::iter(Vec::<Result<Bytes, std::io::Error>>::new()),
            10,
            &Expected::default(),
        )
        .await
        .unwrap();
        assert_eq!(empty.chunk, None);
        assert_eq!(empty.md5_hex, "d41d8cd98f00b204e9800998ecf8427e");
        let big = store_stream(
            &blobs,
            futures::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(
                b"0123456789ab",
            ))]),
            10,
            &Expected::default(),
        )
        .await;
        assert!(matches!(big, Err(StoreError::TooLarge)));
        assert!(blobs.list().unwrap().is_empty());
    }
}
