//! Files written whole or not at all: a temporary name in the same directory, then a rename.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};

/// The temporary sibling of `path` that [`write_atomic`] writes before renaming.
pub(crate) fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically: a reader sees the old file or the new one, never a
/// part. The temporary file is removed when writing fails.
///
/// # Errors
/// [`TrainError::Io`] naming `path`.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("ltd-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// ltd_train::write_atomic(&dir.join("a.txt"), b"hello")?;
/// assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"hello");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), ltd_train::TrainError>(())
/// ```
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(TrainError::io(path, e));
    }
    Ok(())
}

/// FNV-1a, 64 bits: enough to tell files and corpora apart (not a security hash).
pub(crate) fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
