//! The one file writer of the project: write to a temporary file beside the target, flush it to
//! disk, then rename it over the target, so a file is complete or absent (a full disk or a crash
//! never leaves a truncated file, and an existing file is untouched until the new one is whole).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, `fsync`, then a
/// rename over `path`. On any error the temporary file is removed and `path` is left as it was.
///
/// # Errors
/// The I/O error of the step that failed (create, write, sync or rename).
///
/// ```
/// let path = std::env::temp_dir().join("ltd-core-doc-write-file-atomic.txt");
/// ltd_core::write_file_atomic(&path, b"complete")?;
/// assert_eq!(std::fs::read(&path)?, b"complete");
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = temp_path(path);
    let result = write_and_sync(&temp, bytes).and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        // Best effort: the error that matters is the one being returned.
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn write_and_sync(temp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// `dir/.name.tmp-PID-N` beside `path`: same directory, so the rename stays on one file system;
/// the process id and a counter keep concurrent writers apart.
fn temp_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".to_owned());
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp_name = format!(".{name}.tmp-{}-{unique}", std::process::id());
    path.with_file_name(temp_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ltd-core-files-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replaces_an_existing_file_whole_and_leaves_no_temp() {
        let dir = scratch_dir("replace");
        let path = dir.join("out.png");
        std::fs::write(&path, b"old contents").unwrap();
        write_file_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("out.png")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temp() {
        let dir = scratch_dir("fail");
        // The target is a directory that is not empty: the rename fails after the temp is written.
        let path = dir.join("target");
        std::fs::create_dir_all(path.join("inside")).unwrap();
        assert!(write_file_atomic(&path, b"data").is_err());
        assert!(path.join("inside").is_dir());
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("target")]);
        // A missing directory fails at create, before anything exists.
        assert!(write_file_atomic(&dir.join("no/such/dir/x"), b"data").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
