//! Just enough of the zip format to check a deployment package as Lambda does: that it is a
//! zip at all ("Could not unzip uploaded file") and that it unzips to at most 250 MB. Only the
//! end-of-central-directory record and the central directory are read, never the contents,
//! so checking a package costs a few kilobytes of I/O whatever its size.

use std::io::{Read, Seek, SeekFrom};

/// Largest unzipped size of a function's package, in bytes (AWS: 262144000).
pub const MAX_UNZIPPED_BYTES: u64 = 262_144_000;

const EOCD_SIG: u32 = 0x0605_4b50;
const CDH_SIG: u32 = 0x0201_4b50;
const EOCD_LEN: u64 = 22;
/// The record plus the longest comment.
const EOCD_SEARCH: u64 = EOCD_LEN + 0xFFFF;
/// Central directories larger than this are refused rather than read into memory.
const MAX_CENTRAL_DIRECTORY: u64 = 64 * 1024 * 1024;

/// Why a package is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    /// Not a readable zip archive.
    #[error("not a zip archive: {0}")]
    NotZip(&'static str),
    /// Reading the package failed.
    #[error("reading the package failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The total unzipped size of the archive in `r` (of length `len`), from its central
/// directory; `None` for zip64 archives, whose sizes this reader does not parse.
pub fn unzipped_size<R: Read + Seek>(r: &mut R, len: u64) -> Result<Option<u64>, ZipError> {
    if len < EOCD_LEN {
        return Err(ZipError::NotZip("too short"));
    }
    let tail_len = len.min(EOCD_SEARCH);
    r.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    r.read_exact(&mut tail)?;
    let pos = (0..=tail.len() - EOCD_LEN as usize)
        .rev()
        .find(|&i| u32_at(&tail, i) == Some(EOCD_SIG))
        .ok_or(ZipError::NotZip("no end of central directory record"))?;
    let eocd = &tail[pos..];
    let entries = u16_at(eocd, 10).ok_or(ZipError::NotZip("truncated record"))?;
    let cd_size = u32_at(eocd, 12).ok_or(ZipError::NotZip("truncated record"))?;
    let cd_offset = u32_at(eocd, 16).ok_or(ZipError::NotZip("truncated record"))?;
    if entries == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
        return Ok(None);
    }
    let eocd_start = len - tail_len + pos as u64;
    let (cd_size, cd_offset) = (u64::from(cd_size), u64::from(cd_offset));
    if cd_offset + cd_size > eocd_start {
        return Err(ZipError::NotZip("central directory outside the file"));
    }
    if cd_size > MAX_CENTRAL_DIRECTORY {
        return Err(ZipError::NotZip("central directory too large"));
    }
    r.seek(SeekFrom::Start(cd_offset))?;
    let mut cd = vec![0u8; cd_size as usize];
    r.read_exact(&mut cd)?;
    let mut at = 0usize;
    let mut total: u64 = 0;
    for _ in 0..entries {
        if u32_at(&cd, at) != Some(CDH_SIG) {
            return Err(ZipError::NotZip("bad central directory entry"));
        }
        let size = u32_at(&cd, at + 24).ok_or(ZipError::NotZip("truncated entry"))?;
        if size == 0xFFFF_FFFF {
            return Ok(None);
        }
        let name = u16_at(&cd, at + 28).ok_or(ZipError::NotZip("truncated entry"))?;
        let extra = u16_at(&cd, at + 30).ok_or(ZipError::NotZip("truncated entry"))?;
        let comment = u16_at(&cd, at + 32).ok_or(ZipError::NotZip("truncated entry"))?;
        total = total.saturating_add(u64::from(size));
        at += 46 + usize::from(name) + usize::from(extra) + usize::from(comment);
        if at > cd.len() {
            return Err(ZipError::NotZip("truncated central directory"));
        }
    }
    Ok(Some(total))
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    /// A zip of stored (uncompressed) entries, as `zip -0` writes it.
    pub(crate) fn stored_zip(files: &[(&str, &[u8])]) -> Vec<u8> {
        fn common(buf: &mut Vec<u8>, crc: u32, len: u32, name: &str) {
            buf.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            buf.extend_from_slice(&crc.to_le_bytes());
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
            buf.extend_from_slice(&0u16.to_le_bytes());
        }
        let mut out = Vec::new();
        let mut cd = Vec::new();
        for (name, data) in files {
            let crc = crc32fast::hash(data);
            let offset = out.len() as u32;
            out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            common(&mut out, crc, data.len() as u32, name);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            cd.extend_from_slice(&CDH_SIG.to_le_bytes());
            cd.extend_from_slice(&20u16.to_le_bytes());
            common(&mut cd, crc, data.len() as u32, name);
            cd.extend_from_slice(&[0; 10]);
            cd.extend_from_slice(&offset.to_le_bytes());
            cd.extend_from_slice(name.as_bytes());
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&cd);
        out.extend_from_slice(&EOCD_SIG.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    fn size_of(b: &[u8]) -> Result<Option<u64>, ZipError> {
        unzipped_size(&mut Cursor::new(b), b.len() as u64)
    }

    #[test]
    fn unzipped_size_sums_the_central_directory() {
        let z = stored_zip(&[("a.py", b"print(1)"), ("b/c.txt", &[7u8; 1000])]);
        assert_eq!(size_of(&z).unwrap(), Some(1008));
    }

    #[test]
    fn bytes_that_are_not_a_zip_are_refused() {
        assert!(matches!(
            size_of(b"hello world, not a zip at all"),
            Err(ZipError::NotZip(_))
        ));
        assert!(matches!(size_of(b"PK"), Err(ZipError::NotZip(_))));
        let mut z = stored_zip(&[("a", b"x")]);
        let n = z.len();
        z[n - 6] = 0xFF; // central directory offset now points past the end
        assert!(matches!(size_of(&z), Err(ZipError::NotZip(_))));
    }

    #[test]
    fn an_empty_archive_is_a_zip() {
        assert_eq!(size_of(&stored_zip(&[])).unwrap(), Some(0));
    }
}
