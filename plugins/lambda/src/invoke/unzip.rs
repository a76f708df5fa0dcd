//! Unpacks a deployment package or a layer into an execution environment's directory.
//!
//! Why not shell out to `unzip`: a fresh machine may lack it, and a package is user input:
//! every entry name is checked (no absolute paths, no `..`, no symlinks out of the
//! directory), and the bytes written are counted against Lambda's 250 MB unzipped limit as
//! they are written, whatever the central directory claims.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use crate::zip::MAX_UNZIPPED_BYTES;

const EOCD_SIG: u32 = 0x0605_4b50;
const CDH_SIG: u32 = 0x0201_4b50;
const LFH_SIG: u32 = 0x0403_4b50;
const EOCD_LEN: u64 = 22;
const MAX_CENTRAL_DIRECTORY: u64 = 64 * 1024 * 1024;

/// Why a package could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnzipError {
    /// The archive is malformed, or uses a feature this reader does not handle.
    #[error("cannot unzip the package: {0}")]
    Format(String),
    /// An entry would land outside the target directory.
    #[error("the package holds an unsafe path: {0}")]
    UnsafePath(String),
    /// More than Lambda's unzipped limit.
    #[error("the package unzips to more than {MAX_UNZIPPED_BYTES} bytes")]
    TooLarge,
    /// Reading the package or writing the files failed.
    #[error("unpacking the package failed: {0}")]
    Io(#[from] io::Error),
}

struct Entry {
    name: String,
    method: u16,
    compressed: u64,
    size: u64,
    offset: u64,
    mode: Option<u32>,
}

fn u16_at(b: &[u8], i: usize) -> Result<u16, UnzipError> {
    b.get(i..i + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or_else(|| UnzipError::Format("truncated record".into()))
}

fn u32_at(b: &[u8], i: usize) -> Result<u32, UnzipError> {
    b.get(i..i + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| UnzipError::Format("truncated record".into()))
}

fn central_directory<R: Read + Seek>(r: &mut R) -> Result<Vec<Entry>, UnzipError> {
    let len = r.seek(SeekFrom::End(0))?;
    if len < EOCD_LEN {
        return Err(UnzipError::Format("too short to be a zip".into()));
    }
    let tail_len = len.min(EOCD_LEN + 0xFFFF);
    r.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    r.read_exact(&mut tail)?;
    let pos = (0..=tail.len() - EOCD_LEN as usize)
        .rev()
        .find(|&i| u32_at(&tail, i).ok() == Some(EOCD_SIG))
        .ok_or_else(|| UnzipError::Format("no end of central directory record".into()))?;
    let eocd = &tail[pos..];
    let count = u16_at(eocd, 10)?;
    let cd_size = u64::from(u32_at(eocd, 12)?);
    let cd_offset = u64::from(u32_at(eocd, 16)?);
    if count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
        return Err(UnzipError::Format(
            "zip64 archives are not supported".into(),
        ));
    }
    if cd_size > MAX_CENTRAL_DIRECTORY || cd_offset + cd_size > len {
        return Err(UnzipError::Format("bad central directory".into()));
    }
    r.seek(SeekFrom::Start(cd_offset))?;
    let mut cd = vec![0u8; cd_size as usize];
    r.read_exact(&mut cd)?;
    let mut at = 0usize;
    let mut out = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        if u32_at(&cd, at)? != CDH_SIG {
            return Err(UnzipError::Format("bad central directory entry".into()));
        }
        let made_by = u16_at(&cd, at + 4)?;
        let flags = u16_at(&cd, at + 8)?;
        if flags & 1 != 0 {
            return Err(UnzipError::Format(
                "encrypted entries are not supported".into(),
            ));
        }
        let name_len = usize::from(u16_at(&cd, at + 28)?);
        let extra = usize::from(u16_at(&cd, at + 30)?);
        let comment = usize::from(u16_at(&cd, at + 32)?);
        let external = u32_at(&cd, at + 38)?;
        let name = cd
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(|| UnzipError::Format("truncated entry name".into()))?;
        // Made on Unix (3): the high half of the external attributes is the file mode.
        let mode = (made_by >> 8 == 3 && external >> 16 != 0).then_some(external >> 16);
        out.push(Entry {
            name: String::from_utf8_lossy(name).into_owned(),
            method: u16_at(&cd, at + 10)?,
            compressed: u64::from(u32_at(&cd, at + 20)?),
            size: u64::from(u32_at(&cd, at + 24)?),
            offset: u64::from(u32_at(&cd, at + 42)?),
            mode,
        });
        at += 46 + name_len + extra + comment;
    }
    Ok(out)
}

/// `dir/name`, refusing names that would escape `dir`.
fn safe_join(dir: &Path, name: &str) -> Result<PathBuf, UnzipError> {
    let mut out = dir.to_path_buf();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return Err(UnzipError::UnsafePath(name.to_string())),
        }
    }
    Ok(out)
}

/// Unpacks the zip in `r` into `dir` (created if missing); later entries overwrite earlier
/// files, as layers unpacked in order do on AWS. Returns the bytes written.
pub fn extract<R: Read + Seek>(r: &mut R, dir: &Path) -> Result<u64, UnzipError> {
    let entries = central_directory(r)?;
    fs::create_dir_all(dir)?;
    let mut total: u64 = 0;
    for e in entries {
        let path = safe_join(dir, &e.name)?;
        let is_symlink = e.mode.is_some_and(|m| m & 0o170000 == 0o120000);
        if e.name.ends_with('/') || e.mode.is_some_and(|m| m & 0o170000 == 0o040000) {
            fs::create_dir_all(&path)?;
            continue;
        }
        if is_symlink {
            // A link could point anywhere; packages rarely need one, so it is skipped.
            tracing::debug!(entry = %e.name, "skipping a symbolic link in a package");
            continue;
        }
        r.seek(SeekFrom::Start(e.offset))?;
        let mut lfh = [0u8; 30];
        r.read_exact(&mut lfh)?;
        if u32_at(&lfh, 0)? != LFH_SIG {
            return Err(UnzipError::Format(format!(
                "bad local header for {}",
                e.name
            )));
        }
        let skip = u64::from(u16_at(&lfh, 26)?) + u64::from(u16_at(&lfh, 28)?);
        r.seek(SeekFrom::Current(skip as i64))?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let budget = MAX_UNZIPPED_BYTES - total;
        let raw = (&mut *r).take(e.compressed);
        let mut out = fs::File::create(&path)?;
        let written = match e.method {
            0 => copy_bounded(raw, &mut out, budget)?,
            8 => copy_bounded(flate2::read::DeflateDecoder::new(raw), &mut out, budget)?,
            m => {
                return Err(UnzipError::Format(format!(
                    "compression method {m} of {} is not supported (use deflate or store)",
                    e.name
                )));
            }
        };
        if written != e.size {
            return Err(UnzipError::Format(format!(
                "{} unpacked to {written} bytes, the directory says {}",
                e.name, e.size
            )));
        }
        total += written;
        set_mode(&path, &e)?;
    }
    Ok(total)
}

fn copy_bounded(mut from: impl Read, to: &mut impl Write, budget: u64) -> Result<u64, UnzipError> {
    let n = io::copy(&mut (&mut from).take(budget + 1), to)?;
    if n > budget {
        return Err(UnzipError::TooLarge);
    }
    Ok(n)
}

/// Keeps the Unix mode the package records; a `bootstrap` without one is made executable,
/// since zips made on Windows carry no modes and AWS runs the bootstrap all the same.
fn set_mode(path: &Path, e: &Entry) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let base = e.name.rsplit('/').next().unwrap_or(&e.name);
    let mode = match e.mode {
        Some(m) => (m & 0o777) | 0o400,
        None if base == "bootstrap" => 0o755,
        None => 0o644,
    };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn stored_entries_unpack_and_paths_are_checked() {
        let z = crate::zip::tests::stored_zip(&[("a.py", b"print(1)"), ("d/b.txt", b"hi")]);
        let dir = tempfile::tempdir().unwrap();
        let n = extract(&mut Cursor::new(&z), dir.path()).unwrap();
        assert_eq!(n, 10);
        assert_eq!(fs::read(dir.path().join("d/b.txt")).unwrap(), b"hi");
        let bad = crate::zip::tests::stored_zip(&[("../evil", b"x")]);
        assert!(matches!(
            extract(&mut Cursor::new(&bad), dir.path()),
            Err(UnzipError::UnsafePath(_))
        ));
        let abs = crate::zip::tests::stored_zip(&[("/etc/evil", b"x")]);
        assert!(matches!(
            extract(&mut Cursor::new(&abs), dir.path()),
            Err(UnzipError::UnsafePath(_))
        ));
    }

    #[test]
    fn not_a_zip_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            extract(
                &mut Cursor::new(b"hello, not a zip at all".to_vec()),
                dir.path()
            ),
            Err(UnzipError::Format(_))
        ));
    }
}
