//! The content-addressed blob store shared by every service.
//!
//! Object bodies, function code and other large byte strings never go through serde: they are
//! stored here once per distinct content (sha256), and state refers to them by [`Digest`].
//! Because a blob's name is its content, adding blobs never changes running state, which is
//! what lets an import stream blobs in before it decides to commit, and lets persistence and
//! pods skip blobs they already hold.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
}

impl BlobStore {
    /// Opens (creating if needed) a store rooted at `dir`; used by persistence so blobs live
    /// in the data directory and survive restarts.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let root = dir.into();
        create_private_dir_all(&root.join("sha256"))?;
        Ok(Self {
            root: Arc::new(root),
            _temp: None,
            unsynced: Some(Arc::default()),
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
        let hex = digest.hex();
        self.root.join("sha256").join(&hex[..2]).join(hex)
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
    pub fn put(&self, bytes: &[u8]) -> io::Result<Digest> {
        let mut w = self.writer()?;
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
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(self.root.as_path())?;
        Ok(BlobWriter {
            store: self.clone(),
            file: tmp,
            hasher: Hasher::new(),
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
        let mut out = BTreeSet::new();
        let base = self.root.join("sha256");
        for dir in fs::read_dir(&base)? {
            let dir = dir?;
            if !dir.file_type()?.is_dir() {
                continue;
            }
            for f in fs::read_dir(dir.path())? {
                let f = f?;
                if let Some(name) = f.file_name().to_str()
                    && let Ok(d) = format!("sha256:{name}").parse::<Digest>()
                {
                    out.insert(d);
                }
            }
        }
        Ok(out)
    }

    /// Removes every blob not in `keep` and returns how many bytes were freed.
    pub fn collect_garbage(&self, keep: &BTreeSet<Digest>) -> io::Result<u64> {
        let mut freed = 0;
        for d in self.list()? {
            if !keep.contains(&d) {
                let p = self.path(&d);
                freed += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(freed)
    }
}

/// A blob being written; see [`BlobStore::writer`].
pub struct BlobWriter {
    store: BlobStore,
    file: NamedTempFile,
    hasher: Hasher,
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
        let digest = self.hasher.finish();
        let dest = self.store.path(&digest);
        if dest.is_file() {
            return Ok((digest, self.size));
        }
        if let Some(parent) = dest.parent() {
            create_private_dir_all(parent)?;
        }
        self.file.persist(&dest).map_err(|e| e.error)?;
        if let Some(unsynced) = &self.store.unsynced {
            unsynced.lock().push(dest);
        }
        Ok((digest, self.size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
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
    }

    #[test]
    fn garbage_collection_keeps_only_reachable_blobs() {
        let store = BlobStore::temporary().unwrap();
        let a = store.put(b"a").unwrap();
        let b = store.put(b"bb").unwrap();
        let freed = store.collect_garbage(&[a].into()).unwrap();
        assert_eq!(freed, 2);
        assert!(store.contains(&a));
        assert!(!store.contains(&b));
    }

    #[test]
    fn missing_blob_error_names_the_digest() {
        let store = BlobStore::temporary().unwrap();
        let d = Digest::of(b"nope");
        let err = store.open_blob(&d).unwrap_err();
        assert!(err.to_string().contains(&d.hex()));
    }
}
