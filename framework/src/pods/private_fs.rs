//! The local pod store's file system: `object_store`'s `LocalFileSystem`, kept private.
//!
//! The data directory is promised owner-only (directories 0700, files 0600: pods hold the
//! emulated state, secrets included), but `LocalFileSystem` creates directories and files with
//! the process umask's defaults (0755 / 0644 under the usual 022) and has no option for
//! modes. This wrapper creates each object's parent directories with
//! [`create_private_dir_all`] before `LocalFileSystem` would, and makes each object written
//! (by `put` or by a completed multipart upload) 0600 before the write is reported done.
//! While an object is being written it lies inside a directory only the owner can enter.
//! Setting the process umask instead would change every file the embedding program creates.

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};

use crate::blob::create_private_dir_all;

/// A `LocalFileSystem` rooted at a directory whose tree stays owner-only.
#[derive(Debug)]
pub struct PrivateFs {
    inner: LocalFileSystem,
}

impl PrivateFs {
    /// The store rooted at `root`, created owner-only if missing.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        create_private_dir_all(root)?;
        let inner = LocalFileSystem::new_with_prefix(root).map_err(std::io::Error::other)?;
        Ok(Self { inner })
    }

    /// The file behind `location`, its parent directories created owner-only.
    fn prepare(&self, location: &StorePath) -> Result<PathBuf> {
        let path = self.inner.path_to_filesystem(location)?;
        if let Some(parent) = path.parent() {
            create_private_dir_all(parent).map_err(|e| generic(&path, e))?;
        }
        Ok(path)
    }
}

fn generic(path: &Path, e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "PrivateFs",
        source: format!("{}: {e}", path.display()).into(),
    }
}

/// Makes a file readable and writable by its owner only.
fn make_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| generic(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl fmt::Display for PrivateFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateFs({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for PrivateFs {
    async fn put_opts(
        &self,
        location: &StorePath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let path = self.prepare(location)?;
        let done = self.inner.put_opts(location, payload, opts).await?;
        make_private(&path)?;
        Ok(done)
    }

    async fn put_multipart_opts(
        &self,
        location: &StorePath,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let path = self.prepare(location)?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(PrivateUpload { inner, path }))
    }

    async fn get_opts(&self, location: &StorePath, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<StorePath>>,
    ) -> BoxStream<'static, Result<StorePath>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&StorePath>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&StorePath>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &StorePath,
        to: &StorePath,
        options: CopyOptions,
    ) -> Result<()> {
        let path = self.prepare(to)?;
        self.inner.copy_opts(from, to, options).await?;
        make_private(&path)
    }

    async fn rename_opts(
        &self,
        from: &StorePath,
        to: &StorePath,
        options: RenameOptions,
    ) -> Result<()> {
        let path = self.prepare(to)?;
        self.inner.rename_opts(from, to, options).await?;
        make_private(&path)
    }
}

/// A multipart upload whose object is made owner-only once complete.
#[derive(Debug)]
struct PrivateUpload {
    inner: Box<dyn MultipartUpload>,
    path: PathBuf,
}

#[async_trait]
impl MultipartUpload for PrivateUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let done = self.inner.complete().await?;
        make_private(&self.path)?;
        Ok(done)
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use object_store::{ObjectStoreExt, WriteMultipart};

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn objects_and_their_directories_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pods");
        let fs = PrivateFs::new(&root).unwrap();
        fs.put(
            &StorePath::from("index.json"),
            PutPayload::from_static(b"{}"),
        )
        .await
        .unwrap();
        fs.put(
            &StorePath::from("blobs/sha256/abcd"),
            PutPayload::from_static(b"blob"),
        )
        .await
        .unwrap();
        let upload = fs
            .put_multipart(&StorePath::from("blobs/sha256/ef01"))
            .await
            .unwrap();
        let mut w = WriteMultipart::new_with_chunk_size(upload, 5);
        w.write(b"a multipart blob");
        w.finish().await.unwrap();
        for d in [&root, &root.join("blobs"), &root.join("blobs/sha256")] {
            assert_eq!(mode(d), 0o700, "{}", d.display());
        }
        for f in ["index.json", "blobs/sha256/abcd", "blobs/sha256/ef01"] {
            assert_eq!(mode(&root.join(f)), 0o600, "{f}");
        }
    }
}
