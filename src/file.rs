//! The files the sidecar reads and writes while it runs: token files, assertion and
//! actor-token files, the refresh-token store, the interception CA. One atomic write
//! ([`write_atomic`]), one way to say why an IO operation failed ([`io_reason`]), and
//! reads that keep file IO off the tokio runtime (with `workers: 1` a blocking read or an
//! fsync on a runtime thread would stall every request).
//!
//! This module knows nothing about what the files hold: it never logs, never names a
//! file in a message (callers do, with [`io_reason`]), and never sees a token as such.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::SystemTime;

/// What [`write_atomic`] does when the target already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Replace it (atomically: readers see the old content or the new, never a mix).
    Replace,
    /// Fail with `AlreadyExists` and leave it untouched (`create_new` semantics).
    Keep,
}

/// Writes `contents` to `path` so that a crash never leaves half a file: a temp file in
/// the same directory (created new, with `mode` whatever the umask), fsync, then a
/// rename (or, with [`Existing::Keep`], a hard link, which never replaces anything) and
/// an fsync of the directory so the new name survives a crash too. Neither the temp
/// file nor the target is ever opened through an existing file or symlink.
///
/// Blocking (it fsyncs): call it from `tokio::task::spawn_blocking` or outside the
/// runtime.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32, existing: Existing) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{:016x}",
        name.to_string_lossy(),
        std::process::id(),
        fastrand::u64(..)
    ));
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // `mode` at creation is filtered by the umask; the file must have exactly it.
        f.set_permissions(Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        f.sync_all()?;
        match existing {
            Existing::Replace => std::fs::rename(&tmp, path)?,
            Existing::Keep => {
                std::fs::hard_link(&tmp, path)?;
                std::fs::remove_file(&tmp)?;
            }
        }
        File::open(dir)?.sync_all()
    };
    let result = write();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The content of a small text file without surrounding whitespace (token files end in a
/// newline), read off the runtime.
pub async fn read_trimmed(path: &Path) -> io::Result<String> {
    let text = tokio::fs::read_to_string(path).await?;
    Ok(text.trim().to_string())
}

/// A file's (modification time, size): changes when the file is rewritten or replaced.
pub type Signature = (Option<SystemTime>, u64);

/// The file's [`Signature`], `None` if it cannot be read; off the runtime.
pub async fn signature(path: &Path) -> Option<Signature> {
    let m = tokio::fs::metadata(path).await.ok()?;
    Some((m.modified().ok(), m.len()))
}

/// Why an IO operation failed, in a few words and without the OS error number noise.
/// The caller names the file.
pub fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::AlreadyExists => "it already exists".to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_atomically_with_the_mode_and_no_temp_file_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rt");
        write_atomic(&path, b"one", 0o600, Existing::Replace).unwrap();
        write_atomic(&path, b"two", 0o644, Existing::Replace).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(mode(&path), 0o644, "exactly the mode, whatever the umask");
        assert_eq!(names(dir.path()), ["rt"]);
    }

    #[test]
    fn keep_never_replaces_an_existing_file_or_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.key");
        write_atomic(&path, b"first", 0o600, Existing::Keep).unwrap();
        assert_eq!(mode(&path), 0o600);
        let err = write_atomic(&path, b"second", 0o600, Existing::Keep).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(io_reason(&err), "it already exists");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
        let target = dir.path().join("elsewhere");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(write_atomic(&link, b"x", 0o600, Existing::Keep).is_err());
        assert!(!target.exists(), "never written through a symlink");
        assert_eq!(names(dir.path()), ["ca.key", "link"]);
    }

    #[test]
    fn failures_leave_nothing_behind_and_read_as_short_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("rt");
        let err = write_atomic(&path, b"x", 0o600, Existing::Replace).unwrap_err();
        assert_eq!(io_reason(&err), "no such file");
        assert!(names(dir.path()).is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn async_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        assert_eq!(signature(&path).await, None);
        let err = read_trimmed(&path).await.unwrap_err();
        assert_eq!(io_reason(&err), "no such file");
        write_atomic(&path, b"  t0k3n\n", 0o600, Existing::Replace).unwrap();
        assert_eq!(read_trimmed(&path).await.unwrap(), "t0k3n");
        let before = signature(&path).await.unwrap();
        assert_eq!(before.1, 8);
        write_atomic(&path, b"longer token", 0o600, Existing::Replace).unwrap();
        assert_ne!(signature(&path).await, Some(before));
    }
}
