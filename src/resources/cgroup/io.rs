//! The file operations cgroup code performs, behind a seam: [`HostIo`] does them on the real
//! cgroupfs; tests substitute a fixture that behaves as the kernel does (see `fixture.rs`).

use std::fmt::Debug;
use std::io::{self, Write};
use std::path::Path;

pub trait CgroupIo: Debug + Send + Sync {
    /// `mkdir` of one level; `AlreadyExists` if it is there.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// `rmdir`; the kernel refuses with `EBUSY` while processes or child cgroups remain.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Writes `value` to an existing interface file. Never creates a file: on cgroupfs an
    /// interface file that is missing means the controller is not enabled there.
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    fn is_dir(&self, path: &Path) -> bool;
    /// Names of the sub-directories (child cgroups) of `path`.
    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>>;
}

/// The real filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostIo;

impl CgroupIo for HostIo {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        // One write(2) of the whole value: cgroupfs parses each write on its own.
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        let n = f.write(value.as_bytes())?;
        if n != value.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to a cgroup file",
            ));
        }
        Ok(())
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_dir()
                && let Ok(name) = entry.file_name().into_string()
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}
