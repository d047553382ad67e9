//! Crash-safe replacement of small private files (the local view, the confinement record,
//! the certificate status, drill reports). A leaf: it imports nothing from the crate, so
//! any module may write through it without an arrow running back up.
//!
//! A reader sees the old content or the new one, never a mix: the bytes go to a temporary
//! file beside the target (same directory, so the rename cannot cross a file system),
//! which is flushed and then renamed over the target; the directory is flushed after.
//! The temporary file is created exclusively with mode 0600 by the `open(2)` that
//! creates it (`O_CREAT|O_EXCL|O_NOFOLLOW`; the umask can only remove bits), so the mode
//! never depends on what an earlier run left behind and nothing is ever chmod'ed.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Serialises writers in this process: two callers replacing the same file would
/// otherwise remove each other's temporary file between its creation and its rename.
static WRITERS: Mutex<()> = Mutex::new(());

/// `<dir>/.<name>.tmp`: the temporary file for `path`, in the same directory.
pub fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", path.display()),
        )
    })?;
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(".tmp");
    Ok(path.with_file_name(tmp))
}

/// Replaces `path` with `bytes`, mode 0600 (see the module docs). Blocking: it flushes
/// to disk. On error the target is untouched and no temporary file is left.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path)?;
    let _one_writer = WRITERS.lock().unwrap_or_else(|p| p.into_inner());
    // A leftover from a crash (or anything planted in its place: the name is removed, not
    // followed) would make the exclusive create fail.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename itself is durable once the directory is flushed. Best effort: the new
    // content is already complete on disk.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_temporary_file_is_hidden_beside_the_target() {
        let t = temp_path(Path::new("/r/status/pods.json")).unwrap();
        assert_eq!(t, Path::new("/r/status/.pods.json.tmp"));
        // Two targets differing only in their extension do not share one.
        assert_ne!(
            temp_path(Path::new("/d/report.json")).unwrap(),
            temp_path(Path::new("/d/report.txt")).unwrap()
        );
        assert!(temp_path(Path::new("/")).is_err());
    }

    #[test]
    fn replaces_the_content_private_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        write_atomic(&p, b"1").unwrap();
        write_atomic(&p, b"22").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"22");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(names(dir.path()), ["x.json"]);
    }

    #[test]
    fn a_replaced_file_gets_0600_whatever_mode_it_had() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(mode(&p), 0o600);
    }

    #[test]
    fn a_stale_temporary_file_neither_widens_the_mode_nor_leaks_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        let tmp = temp_path(&p).unwrap();
        std::fs::write(&tmp, b"stale content that is longer").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(mode(&p), 0o600);
        assert!(!tmp.exists());
    }

    #[test]
    fn a_symlink_planted_as_the_temporary_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = dir.path().join("x.json");
        std::os::unix::fs::symlink(&victim, temp_path(&p).unwrap()).unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(mode(&victim), 0o644);
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert!(!std::fs::symlink_metadata(&p).unwrap().is_symlink());
    }

    #[test]
    fn a_failed_rename_keeps_the_target_and_removes_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory cannot be replaced by a file.
        let p = dir.path().join("x.json");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("inside"), b"i").unwrap();
        assert!(write_atomic(&p, b"new").is_err());
        assert_eq!(std::fs::read(p.join("inside")).unwrap(), b"i");
        assert_eq!(names(dir.path()), ["x.json"]);
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_creation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing").join("x.json");
        assert_eq!(
            write_atomic(&p, b"x").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(!dir.path().join("missing").exists());
    }
}
