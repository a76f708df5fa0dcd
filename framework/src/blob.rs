//! The content-addressed blob store shared by every service.
//!
//! Object bodies, function code and other large byte strings never go through serde: they are
//! stored here once per distinct content (sha256), and state refers to them by [`Digest`].
//! Because a blob's name is its content, adding blobs never changes running state, which is
//! what lets an import stream blobs in before it decides to commit, and lets persistence and
//! pods skip blobs they already hold.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cryopod_bundle::Hasher;
use tempfile::{NamedTempFile, TempDir};

use crate::state::Digest;

/// A directory of blobs named by their sha256 digest: `ROOT/sha256/ab/abcdef…`.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: Arc<PathBuf>,
    _temp: Option<Arc<TempDir>>,
    /// Blobs renamed into place but not yet fsynced; `None` for a temporary store, whose
    /// blobs need no durability.
    unsynced: Option<Arc<parking_lot::Mutex<Vec<PathBuf>>>>,
    /// What garbage collection must not remove although no state refers to it yet.
    guard: Arc<parking_lot::Mutex<GcGuard>>,
    /// Whether this file system takes unnamed temporary files (`O_TMPFILE`) that can be
    /// linked into place; probed once at open (see [`Staged`]).
    unnamed: bool,
}

/// Blobs that are in use without being in the running state: just stored by a request that has
/// not committed its state change yet, or about to be read by an export of an earlier capture.
///
/// Collection and [`BlobWriter::commit`] take this lock around their check-and-act, so a blob
/// is never removed between a writer finding it stored (and skipping its own copy) and the
/// writer's state change that refers to it.
#[derive(Debug, Default)]
struct GcGuard {
    /// Blobs stored (or found already stored) recently, with when.
    recent: HashMap<crate::state::Digest, Instant>,
    /// Live captures ([`BlobReaders`]); collection waits until there are none.
    readers: usize,
}

/// Held by every captured [`crate::Snapshot`]: while a capture lives, the blobs it refers to
/// may be read (an export streams them long after the capture), and collection is skipped.
/// Counting is O(1), so the capture barrier stays O(1) too.
#[derive(Debug)]
pub struct BlobReaders {
    guard: Arc<parking_lot::Mutex<GcGuard>>,
}

impl Drop for BlobReaders {
    fn drop(&mut self) {
        self.guard.lock().readers -= 1;
    }
}

/// What one collection did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Collected {
    /// Blobs removed.
    pub removed: u64,
    /// Bytes freed.
    pub bytes: u64,
    /// Unreferenced blobs kept because they were stored within the grace period.
    pub kept_recent: u64,
    /// Nothing was collected because a capture was still being read.
    pub skipped: bool,
    /// Temporary files removed that a crash left beside the blobs.
    pub temp_files_removed: u64,
}

/// Names of files being written into a store (and of those a crash left behind).
const TEMP_PREFIX: &str = ".tmp-";

/// The file a blob is written to until its commit names it.
enum Staged {
    /// A named temporary file, renamed into place; removed if dropped uncommitted, left
    /// behind by a crash (collection removes it later).
    Named(NamedTempFile),
    /// An unnamed file (`O_TMPFILE`) in the destination's directory, linked into place;
    /// it vanishes with its descriptor, even in a crash.
    #[cfg(target_os = "linux")]
    Unnamed(File),
}

impl Staged {
    /// A file in `dir` for a blob to be named in `dir`: unnamed if `unnamed` (and the
    /// file system agrees), else named.
    fn create_in(dir: &Path, unnamed: bool) -> io::Result<Self> {
        #[cfg(target_os = "linux")]
        if unnamed {
            use rustix::fs::{Mode, OFlags};
            let flags = OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC;
            match rustix::fs::openat(rustix::fs::CWD, dir, flags, Mode::RUSR | Mode::WUSR) {
                Ok(fd) => return Ok(Staged::Unnamed(File::from(fd))),
                Err(e) if e == rustix::io::Errno::NOENT => return Err(e.into()),
                // Refused on this directory after all: fall back to a named file.
                Err(_) => {}
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = unnamed;
        Ok(Staged::Named(temp_file_in(dir)?))
    }

    /// Names the file `dest` unless something has that name (`AlreadyExists`); for an
    /// unnamed file `dest` must be in the directory it was created in.
    fn persist_noclobber(self, dest: &Path) -> io::Result<()> {
        match self {
            Staged::Named(file) => {
                // A streaming write's fan-out directory exists for all but the first blobs
                // of a store: rename first and create it only when missing (saves a mkdir
                // and a stat per blob).
                match file.persist_noclobber(dest) {
                    Ok(_) => Ok(()),
                    Err(e) if e.error.kind() == io::ErrorKind::NotFound => {
                        if let Some(parent) = dest.parent() {
                            create_private_dir_all(parent)?;
                        }
                        e.file
                            .persist_noclobber(dest)
                            .map(drop)
                            .map_err(|e| e.error)
                    }
                    Err(e) => Err(e.error),
                }
            }
            #[cfg(target_os = "linux")]
            Staged::Unnamed(file) => link_unnamed(&file, dest),
        }
    }

    /// Whether `dir`'s file system takes unnamed files that can then be linked: some
    /// (older kernels, FUSE, network file systems) refuse `O_TMPFILE`, and linking one
    /// needs `/proc`. A probe file is linked and removed.
    fn unnamed_supported(dir: &Path) -> bool {
        #[cfg(target_os = "linux")]
        {
            let Ok(Staged::Unnamed(file)) = Staged::create_in(dir, true) else {
                return false;
            };
            let probe = dir.join(format!("{TEMP_PREFIX}probe-{}", std::process::id()));
            let _ = fs::remove_file(&probe);
            let linked = link_unnamed(&file, &probe).is_ok();
            let _ = fs::remove_file(&probe);
            linked
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = dir;
            false
        }
    }
}

/// Gives an unnamed file the name `dest` (`EEXIST`, `AlreadyExists`, if taken), through
/// `/proc/self/fd` as `open(2)` describes: `AT_EMPTY_PATH` would need a capability.
#[cfg(target_os = "linux")]
fn link_unnamed(file: &File, dest: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let source = format!("/proc/self/fd/{}", file.as_raw_fd());
    rustix::fs::linkat(
        rustix::fs::CWD,
        source.as_str(),
        rustix::fs::CWD,
        dest,
        rustix::fs::AtFlags::SYMLINK_FOLLOW,
    )
    .map_err(io::Error::from)
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Staged::Named(f) => f.write(buf),
            #[cfg(target_os = "linux")]
            Staged::Unnamed(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Staged::Named(f) => f.flush(),
            #[cfg(target_os = "linux")]
            Staged::Unnamed(f) => f.flush(),
        }
    }
}

/// How long a temporary file beside the blobs must have been untouched before collection
/// removes it as abandoned (at least the collection's grace period).
const STALE_TEMP_FILE: Duration = Duration::from_secs(3600);

/// A temporary file in `dir` that is removed unless it is persisted.
fn temp_file_in(dir: &Path) -> io::Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
}

impl BlobStore {
    /// Opens (creating if needed) a store rooted at `dir`; used by persistence so blobs live
    /// in the data directory and survive restarts.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let root = dir.into();
        create_private_dir_all(&root.join("sha256"))?;
        let unnamed = Staged::unnamed_supported(&root);
        tracing::debug!(root = %root.display(), unnamed, "blob store opened");
        Ok(Self {
            root: Arc::new(root),
            _temp: None,
            unsynced: Some(Arc::default()),
            guard: Arc::default(),
            unnamed,
        })
    }

    /// A store in a temporary directory removed when the last clone is dropped; the default
    /// when persistence is off, so big bodies still stay out of memory.
    pub fn temporary() -> io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("cryopod-blobs-")
            .tempdir()?;
        let mut store = Self::open(dir.path())?;
        store._temp = Some(Arc::new(dir));
        store.unsynced = None;
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        digest_path(&self.root, digest)
    }

    /// Whether the blob is stored.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Size in bytes of a stored blob.
    pub fn size(&self, digest: &Digest) -> io::Result<u64> {
        Ok(fs::metadata(self.path(digest))?.len())
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> io::Result<File> {
        File::open(self.path(digest)).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("blob {digest} is not in the store"),
                )
            } else {
                e
            }
        })
    }

    /// Reads a whole blob into memory; for small blobs only.
    pub fn read(&self, digest: &Digest) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open_blob(digest)?.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Stores `bytes` and returns their digest. Blocking: async callers use
    /// [`BlobStore::put_async`].
    ///
    /// The bytes are hashed before they are written, so the file is written beside its
    /// destination (see [`BlobStore::writer_verified_by_caller`]).
    pub fn put(&self, bytes: &[u8]) -> io::Result<Digest> {
        let mut h = Hasher::new();
        h.update(bytes);
        let mut w = self.writer_verified_by_caller(h.finish())?;
        w.write_all(bytes)?;
        Ok(w.commit()?.0)
    }

    /// Stores `bytes` on the blocking pool.
    pub async fn put_async(&self, bytes: bytes::Bytes) -> io::Result<Digest> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.put(&bytes))
            .await
            .map_err(io::Error::other)?
    }

    /// A streaming writer: hashes while writing to a temp file in the store, and on
    /// [`BlobWriter::commit`] renames it to its digest. Dropping it uncommitted leaves nothing.
    pub fn writer(&self) -> io::Result<BlobWriter> {
        let tmp = Staged::Named(temp_file_in(self.root.as_path())?);
        Ok(BlobWriter {
            store: self.clone(),
            file: tmp,
            hasher: Some(Hasher::new()),
            expected: None,
            size: 0,
        })
    }

    /// A writer for content whose sha256 the caller verifies itself while streaming it (the
    /// bundle reader checks every blob against its digest and fails the read on a mismatch):
    /// the blob is named `digest` without hashing every byte a second time. The caller must
    /// commit only once its verified read has reached the end without error.
    ///
    /// Its file is created in its destination's directory (the digest's fan-out directory),
    /// unnamed where the file system allows it, and linked (or renamed) into place there.
    /// Why: an import's two threads (see [`BlobImport`]) write consecutive blobs of a
    /// bundle, which are sorted by digest and so mostly share a fan-out directory. A named
    /// temporary file is created under that directory's lock, and creating the inode is
    /// the slow part of a small file (on ext4 without a journal it scans for inodes not
    /// deleted recently), so each thread spun on the lock the other held: 5–8 % of an
    /// import's samples, and before that, with every temporary file in the store's root
    /// and renamed across directories, the file system's rename lock as well. An unnamed
    /// file takes no directory lock until its one link.
    pub fn writer_verified_by_caller(&self, digest: Digest) -> io::Result<BlobWriter> {
        let dest = self.path(&digest);
        let dir = dest.parent().unwrap_or(self.root.as_path());
        let tmp = match Staged::create_in(dir, self.unnamed) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_private_dir_all(dir)?;
                Staged::create_in(dir, self.unnamed)?
            }
            other => other?,
        };
        Ok(BlobWriter {
            store: self.clone(),
            file: tmp,
            hasher: None,
            expected: Some(digest),
            size: 0,
        })
    }

    /// Makes every blob committed so far durable (fsync of each new file and of its
    /// directory). Persistence calls it before writing a manifest that refers to them: one
    /// batch of fsyncs per save instead of one per request, which made small writes pay
    /// ~7 ms each on ordinary disks.
    pub fn sync_pending(&self) -> io::Result<()> {
        let Some(unsynced) = &self.unsynced else {
            return Ok(());
        };
        let pending = std::mem::take(&mut *unsynced.lock());
        let mut dirs = BTreeSet::new();
        for (i, path) in pending.iter().enumerate() {
            let synced = File::open(path).and_then(|f| f.sync_all());
            match synced {
                Ok(()) => {}
                // Collected before the save reached it: nothing refers to it any more.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    unsynced.lock().extend(pending[i..].iter().cloned());
                    return Err(e);
                }
            }
            if let Some(parent) = path.parent() {
                dirs.insert(parent.to_path_buf());
            }
        }
        for d in dirs {
            File::open(&d)?.sync_all()?;
        }
        Ok(())
    }

    /// Copies a stored blob into `out`, returning the bytes copied.
    pub fn copy_to(&self, digest: &Digest, out: &mut dyn Write) -> io::Result<u64> {
        let mut f = self.open_blob(digest)?;
        io::copy(&mut f, out)
    }

    /// Every digest in the store.
    pub fn list(&self) -> io::Result<BTreeSet<Digest>> {
        self.scan(|_| {})
    }

    /// Every digest in the store; `on_temp` sees each temporary file found beside the blobs
    /// (a blob being written, or one a crash left behind).
    fn scan(&self, mut on_temp: impl FnMut(PathBuf)) -> io::Result<BTreeSet<Digest>> {
        let mut out = BTreeSet::new();
        let base = self.root.join("sha256");
        for dir in fs::read_dir(&base)? {
            let dir = dir?;
            if !dir.file_type()?.is_dir() {
                continue;
            }
            for f in fs::read_dir(dir.path())? {
                let f = f?;
                let name = f.file_name();
                let Some(name) = name.to_str() else { continue };
                if let Ok(d) = format!("sha256:{name}").parse::<Digest>() {
                    out.insert(d);
                } else if name.starts_with(TEMP_PREFIX) {
                    on_temp(f.path());
                }
            }
        }
        Ok(out)
    }

    /// A cheap, conservative answer to "might this store hold that blob?" for a reader
    /// about to ask it of many blobs (an import): `false` only when the blob's fan-out
    /// directory did not exist when the hint was made, so one `readdir` replaces a stat per
    /// blob for an empty or young store. A blob stored after the hint may be answered
    /// `false`; the caller then stores it again, which [`BlobWriter::commit`] turns into a
    /// no-op, so the hint costs duplicate work at worst, never a missing blob.
    pub fn presence_hint(&self) -> PresenceHint {
        let mut dirs = [false; 256];
        if let Ok(entries) = fs::read_dir(self.root.join("sha256")) {
            for e in entries.flatten() {
                if let Some(i) = e
                    .file_name()
                    .to_str()
                    .filter(|n| n.len() == 2)
                    .and_then(|n| u8::from_str_radix(n, 16).ok())
                {
                    dirs[usize::from(i)] = true;
                }
            }
        } else {
            // Unreadable: claim nothing, so every blob gets its stat.
            dirs = [true; 256];
        }
        PresenceHint { dirs }
    }

    /// Registers a capture whose blobs may still be read; collection is skipped until the
    /// returned value is dropped.
    pub fn readers(&self) -> BlobReaders {
        self.guard.lock().readers += 1;
        BlobReaders {
            guard: self.guard.clone(),
        }
    }

    /// Removes every blob that is not in `keep` and was not stored within the last `grace`,
    /// unless a capture is still alive ([`BlobStore::readers`]). The grace period covers a
    /// request between storing its blob and committing the state change that refers to it,
    /// and an import between streaming its blobs in and applying its state; it must be far
    /// longer than either. `keep` must be computed from a capture taken after the last
    /// capture still alive was dropped, which is what callers get by dropping theirs first.
    pub fn collect_garbage(
        &self,
        keep: &BTreeSet<Digest>,
        grace: Duration,
    ) -> io::Result<Collected> {
        let mut out = Collected::default();
        let mut temps = Vec::new();
        for d in self.scan(|p| temps.push(p))? {
            if keep.contains(&d) {
                continue;
            }
            let mut g = self.guard.lock();
            let recent = g.recent.get(&d).is_some_and(|t| t.elapsed() < grace);
            if g.readers > 0 {
                out.skipped = true;
                return Ok(out);
            }
            if recent {
                out.kept_recent += 1;
                continue;
            }
            g.recent.remove(&d);
            let p = self.path(&d);
            let len = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(&p) {
                Ok(()) => {
                    out.removed += 1;
                    out.bytes += len;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.guard.lock().recent.retain(|_, t| t.elapsed() < grace);
        // Temporary files of writes a crash interrupted. A write in progress touches its
        // file with every chunk, so one untouched for this long is abandoned.
        let stale = grace.max(STALE_TEMP_FILE);
        for p in temps {
            let abandoned = fs::metadata(&p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > stale));
            if abandoned && fs::remove_file(&p).is_ok() {
                tracing::info!(path = %p.display(), "removed a temporary blob file left by an interrupted write");
                out.temp_files_removed += 1;
            }
        }
        Ok(out)
    }

    /// Links (or copies) every blob into `dest`, so a state moved aside keeps its blobs even
    /// after the store collects them.
    pub fn preserve_into(&self, dest: &Path) -> io::Result<u64> {
        let mut n = 0;
        for d in self.list()? {
            let to = digest_path(dest, &d);
            if let Some(parent) = to.parent() {
                create_private_dir_all(parent)?;
            }
            let from = self.path(&d);
            if fs::hard_link(&from, &to).is_err() {
                fs::copy(&from, &to)?;
            }
            n += 1;
        }
        Ok(n)
    }
}

/// A blob being written; see [`BlobStore::writer`].
pub struct BlobWriter {
    store: BlobStore,
    file: Staged,
    /// `None` when the caller verifies the content ([`BlobStore::writer_verified_by_caller`]).
    hasher: Option<Hasher>,
    expected: Option<Digest>,
    size: u64,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Makes the blob durable under its digest and returns the digest and size. If the blob
    /// was already stored, the new copy is discarded.
    pub fn commit(self) -> io::Result<(Digest, u64)> {
        let digest = match (self.hasher, self.expected) {
            (Some(h), _) => h.finish(),
            (None, Some(d)) => d,
            (None, None) => return Err(io::Error::other("blob writer without a digest")),
        };
        let dest = self.store.path(&digest);
        // Under the collection lock: once the blob is marked recent, no collection can remove
        // it before the caller's state refers to it.
        let mut guard = self.store.guard.lock();
        guard.recent.insert(digest, Instant::now());
        // The file gets its name only if nothing is stored under the digest yet
        // (`renameat2(RENAME_NOREPLACE)`, or `linkat`, which never replaces): a blob already
        // stored, perhaps already synced, is never replaced by an unsynced copy, and that
        // check costs no stat of its own.
        match self.file.persist_noclobber(&dest) {
            Ok(()) => {}
            // Stored already; the new copy goes with its temporary file.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Ok((digest, self.size));
            }
            Err(e) => return Err(e),
        }
        drop(guard);
        if let Some(unsynced) = &self.store.unsynced {
            unsynced.lock().push(dest);
        }
        Ok((digest, self.size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Stores the blobs of a bundle being imported, as the reader's hashing thread verifies them.
///
/// Why there: the bundle reader hands each piped blob to a second thread
/// ([`cryopod_bundle::StreamReader::pipe_to`]), which decompresses, verifies sha256 and
/// writes its file while the chunk is still in that core's cache; the importing thread
/// reads records and does the same for the blobs that start while the second thread is
/// behind. So an import uses two threads, one per core on a two-core machine, and each
/// byte is touched by one core only. (Until session 4 a third thread wrote the files, and
/// until session 7 the importing thread decompressed every chunk for the second one to
/// hash; see `docs/DESIGN-NOTES.md`.)
///
/// Each [`BlobImport::sink`] is committed (renamed into the store) only after its digest
/// matched; a sink that is dropped uncommitted leaves nothing. A write error fails the
/// reader's next call, so the importer learns about a full disk before it applies any state.
pub struct BlobImport {
    store: BlobStore,
    stored: Arc<AtomicU64>,
}

impl BlobImport {
    /// Prepares to import blobs into `store`.
    pub fn new(store: &BlobStore) -> Self {
        Self {
            store: store.clone(),
            stored: Arc::default(),
        }
    }

    /// A sink for the blob named `digest`, to hand to `pipe_to`.
    pub fn sink(&self, digest: Digest) -> Box<dyn cryopod_bundle::StreamSink> {
        Box::new(ImportSink {
            store: self.store.clone(),
            digest,
            writer: None,
            stored: self.stored.clone(),
        })
    }

    /// How many blobs were committed so far. Once the reader reported the end of the
    /// bundle, every piped blob has been verified and committed (or the reader failed).
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Acquire)
    }
}

/// One blob on its way into the store, fed by the reader's hashing thread. The temporary
/// file is created at the first chunk (an empty blob at commit), so blobs that are skipped
/// or fail early cost no file.
struct ImportSink {
    store: BlobStore,
    digest: Digest,
    writer: Option<BlobWriter>,
    stored: Arc<AtomicU64>,
}

impl cryopod_bundle::StreamSink for ImportSink {
    fn write(&mut self, chunk: cryopod_bundle::Chunk) -> io::Result<()> {
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self
                .writer
                .insert(self.store.writer_verified_by_caller(self.digest)?),
        };
        writer.write_all(&chunk)
    }

    fn commit(mut self: Box<Self>) -> io::Result<()> {
        let writer = match self.writer.take() {
            Some(w) => w,
            None => self.store.writer_verified_by_caller(self.digest)?,
        };
        writer.commit()?;
        self.stored.fetch_add(1, Ordering::Release);
        Ok(())
    }
}

/// Which fan-out directories of a store existed at one moment; see
/// [`BlobStore::presence_hint`].
#[derive(Clone, Debug)]
pub struct PresenceHint {
    dirs: [bool; 256],
}

impl PresenceHint {
    /// `false` when the store certainly did not hold `digest` when the hint was made.
    pub fn may_contain(&self, digest: &Digest) -> bool {
        self.dirs[usize::from(digest.0[0])]
    }
}

/// `ROOT/sha256/ab/abcdef…`: where content named `digest` lives in every content-addressed
/// directory (blob stores, persisted chunks, their quarantined copies).
pub(crate) fn digest_path(root: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.hex();
    root.join("sha256").join(&hex[..2]).join(hex)
}

/// Creates a directory tree readable only by its owner: state may hold secrets.
pub fn create_private_dir_all(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_content_is_stored_once_under_its_sha256() {
        let store = BlobStore::temporary().unwrap();
        let a = store.put(b"hello").unwrap();
        let b = store.put(b"hello").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, Digest::of(b"hello"));
        assert_eq!(store.list().unwrap().len(), 1);
        assert_eq!(store.read(&a).unwrap(), b"hello");
        // The second copy's temporary file is gone too, from the root (streaming writes)
        // and from the fan-out directory (writes whose digest is known first).
        let mut temps = Vec::new();
        store.scan(|p| temps.push(p)).unwrap();
        for dir in [store.root(), store.path(&a).parent().unwrap()] {
            temps.extend(
                fs::read_dir(dir)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| {
                        p.file_name()
                            .unwrap()
                            .to_string_lossy()
                            .starts_with(".tmp-")
                    }),
            );
        }
        assert!(temps.is_empty(), "{temps:?}");
        // A streaming write of the same bytes lands under the same name.
        let mut w = store.writer().unwrap();
        w.write_all(b"hello").unwrap();
        assert_eq!(w.commit().unwrap().0, a);
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn a_write_whose_digest_is_known_is_named_within_its_fan_out_directory() {
        let mut store = BlobStore::temporary().unwrap();
        // Both ways where the file system takes unnamed files (tmpfs and ext4 do); the
        // named way twice where it does not (the probe said so).
        for unnamed in [false, store.unnamed] {
            store.unnamed = unnamed;
            let body = format!("body, unnamed: {unnamed}");
            let digest = Digest::of(body.as_bytes());
            let mut w = store.writer_verified_by_caller(digest).unwrap();
            w.write_all(body.as_bytes()).unwrap();
            // Before the commit the blob has no name; a named temporary file sits beside
            // its destination, an unnamed one nowhere.
            let mut temps = Vec::new();
            assert!(!store.scan(|p| temps.push(p)).unwrap().contains(&digest));
            assert_eq!(temps.len(), usize::from(!unnamed), "{temps:?}");
            assert!(
                temps
                    .iter()
                    .all(|t| t.parent() == store.path(&digest).parent())
            );
            assert_eq!(w.commit().unwrap(), (digest, body.len() as u64));
            assert_eq!(store.read(&digest).unwrap(), body.as_bytes());
            assert!(temps.iter().all(|t| !t.exists()));
            // A second copy is discarded and leaves the first in place, and a writer
            // dropped uncommitted leaves nothing.
            let ino = inode(&store.path(&digest));
            let mut again = store.writer_verified_by_caller(digest).unwrap();
            again.write_all(body.as_bytes()).unwrap();
            assert_eq!(again.commit().unwrap(), (digest, body.len() as u64));
            assert_eq!(inode(&store.path(&digest)), ino);
            let mut dropped = store.writer_verified_by_caller(Digest::of(b"x")).unwrap();
            dropped.write_all(b"x").unwrap();
            drop(dropped);
            let mut temps = Vec::new();
            assert!(
                !store
                    .scan(|p| temps.push(p))
                    .unwrap()
                    .contains(&Digest::of(b"x"))
            );
            assert!(temps.is_empty(), "{temps:?}");
        }
    }

    fn inode(path: &Path) -> u64 {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            fs::metadata(path).unwrap().ino()
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            0
        }
    }

    #[test]
    fn collection_removes_temporary_files_a_crash_left_but_not_live_ones() {
        let store = BlobStore::temporary().unwrap();
        let kept = store.put(b"kept").unwrap();
        let dir = store.path(&kept).parent().unwrap().to_path_buf();
        let abandoned = dir.join(".tmp-crashed");
        fs::write(&abandoned, b"half a blob").unwrap();
        let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&abandoned)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        // A write in progress: its file was touched just now.
        let mut live = store
            .writer_verified_by_caller(Digest::of(b"live"))
            .unwrap();
        live.write_all(b"li").unwrap();
        let done = store
            .collect_garbage(&[kept].into(), Duration::ZERO)
            .unwrap();
        assert_eq!((done.removed, done.temp_files_removed), (0, 1), "{done:?}");
        assert!(!abandoned.exists());
        live.write_all(b"ve").unwrap();
        assert_eq!(live.commit().unwrap().1, 4);
        assert!(store.contains(&Digest::of(b"live")));
    }

    #[test]
    fn the_presence_hint_rules_out_only_blobs_of_missing_fan_out_directories() {
        let store = BlobStore::temporary().unwrap();
        let stored = store.put(b"first").unwrap();
        let hint = store.presence_hint();
        assert!(hint.may_contain(&stored));
        // Same fan-out directory as the stored blob: possible; any other: ruled out.
        let mut sibling = stored;
        sibling.0[31] ^= 1;
        assert!(hint.may_contain(&sibling));
        let mut elsewhere = stored;
        elsewhere.0[0] ^= 1;
        assert!(!hint.may_contain(&elsewhere));
        // A blob stored after the hint may be missed, never the other way round.
        let later = store.put(b"second").unwrap();
        assert!(store.contains(&later));
        assert!(store.presence_hint().may_contain(&later));
        let empty = BlobStore::temporary().unwrap().presence_hint();
        assert!(!empty.may_contain(&stored));
    }

    #[cfg(unix)]
    #[test]
    fn a_stored_blob_is_never_replaced_by_a_new_copy() {
        let store = BlobStore::temporary().unwrap();
        let d = store.put(b"kept").unwrap();
        let path = store.path(&d);
        let before = fs::metadata(&path).unwrap();
        let mut w = store.writer().unwrap();
        w.write_all(b"kept").unwrap();
        assert_eq!(w.commit().unwrap().0, d);
        let after = fs::metadata(&path).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(before.ino(), after.ino(), "the stored file was replaced");
    }

    #[test]
    fn garbage_collection_keeps_only_reachable_blobs() {
        let store = BlobStore::temporary().unwrap();
        let a = store.put(b"a").unwrap();
        let b = store.put(b"bb").unwrap();
        let c = store.put(b"ccc").unwrap();
        // Within the grace period nothing unreferenced goes: a request may be about to refer
        // to it.
        let kept = store
            .collect_garbage(&[a].into(), Duration::from_secs(3600))
            .unwrap();
        assert_eq!((kept.removed, kept.kept_recent), (0, 2));
        let reading = store.readers();
        let skipped = store.collect_garbage(&[a].into(), Duration::ZERO).unwrap();
        assert!(skipped.skipped && skipped.removed == 0, "{skipped:?}");
        drop(reading);
        let done = store.collect_garbage(&[a].into(), Duration::ZERO).unwrap();
        assert_eq!((done.removed, done.bytes), (2, 5));
        assert!(store.contains(&a));
        assert!(!store.contains(&b));
        assert!(!store.contains(&c));
    }

    #[test]
    fn storing_a_blob_again_protects_it_from_collection_again() {
        let store = BlobStore::temporary().unwrap();
        let a = store.put(b"a").unwrap();
        std::thread::sleep(Duration::from_millis(30));
        store.put(b"a").unwrap();
        let kept = store
            .collect_garbage(&BTreeSet::new(), Duration::from_millis(20))
            .unwrap();
        assert_eq!(
            kept.removed, 0,
            "the second put found it stored and renewed it"
        );
        assert!(store.contains(&a));
    }

    #[test]
    fn missing_blob_error_names_the_digest() {
        let store = BlobStore::temporary().unwrap();
        let d = Digest::of(b"nope");
        let err = store.open_blob(&d).unwrap_err();
        assert!(err.to_string().contains(&d.hex()));
    }

    #[tokio::test]
    async fn a_runtime_without_a_data_dir_removes_its_blobs_when_dropped() {
        let rt = crate::Runtime::builder().build().unwrap();
        let root = rt.blobs().root().to_path_buf();
        let d = rt.blobs().put(b"x").unwrap();
        assert!(rt.blobs().contains(&d));
        drop(rt);
        assert!(!root.exists(), "{} outlived its runtime", root.display());
    }
}
