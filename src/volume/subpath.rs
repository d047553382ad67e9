//! subPath and subPathExpr mounts without escape (the CVE-2017-1002101 and CVE-2021-25741
//! class). A pod's containers control the content of their volumes, so a subPath is
//! never passed to the runtime as a path: at every container start
//!
//! 1. the agent makes the subPath exist (upstream creates missing directories), walking it
//!    one component at a time beneath the volume's descriptor with openat2
//!    (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) and
//!    creating with mkdirat on the parent's descriptor, so nothing is ever created or
//!    chmod'ed outside the volume;
//! 2. the agent asks the mount helper to detach what an earlier start left on the target
//!    `<pod>/volume-subpaths/<volume>/<container>/<index>` (upstream's layout) and prepares
//!    a fresh target of the same kind (directory or file);
//! 3. the helper resolves the subPath again, itself, from the volume's descriptor with the
//!    same restrictions, and bind-mounts the resolved descriptor through /proc/self/fd;
//! 4. the runtime gets only the target path, which lives outside every volume.
//!
//! A symlink anywhere in the subPath, or one swapped in at any moment, makes one of the
//! resolutions fail: the container's start is a CreateContainerConfigError naming the
//! volume and the subPath, and no mount outside the volume is ever made.
//!
//! The targets are unmounted (by the helper) before the pod directory is removed; the
//! directory is removed only when /proc/self/mountinfo shows no mount below it.
//! Everything here blocks: callers run it on the blocking pool.

use std::io::ErrorKind;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{EMPTY_DIR_PLUGIN, VolumeError, pod_dir};
use crate::confine::helper::HelperClient;
use crate::confine::helper::proto::{
    SUB_PATHS_DIR, SubPath, SubPathMount, VolumePath, is_dns_label,
};

/// openat2 restrictions for every step of a subPath (and for emptyDir directories).
pub(super) const RESOLVE: u64 = libc::RESOLVE_BENEATH
    | libc::RESOLVE_NO_SYMLINKS
    | libc::RESOLVE_NO_MAGICLINKS
    | libc::RESOLVE_NO_XDEV;

/// One subPath mount a container needs before it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubPathBind {
    pub mount: SubPathMount,
    pub sub_path: SubPath,
}

impl SubPathBind {
    fn name(&self) -> String {
        format!(
            "volume {:?} subPath {:?}",
            self.mount.volume.name,
            self.sub_path.as_str()
        )
    }
}

/// `<pods_dir>/<uid>/volume-subpaths/<volume>/<container>/<index>`: where the runtime finds
/// a subPath mount.
pub fn sub_path_target(
    pods_dir: &Path,
    uid: &str,
    volume: &str,
    container: &str,
    index: u32,
) -> PathBuf {
    pod_dir(pods_dir, uid)
        .join(SUB_PATHS_DIR)
        .join(volume)
        .join(container)
        .join(index.to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

/// What `fd` is: a directory, a regular file, or the reason it may not be a subPath. A
/// final symlink comes back as itself (O_PATH | O_NOFOLLOW), never followed.
fn kind_of(fd: &OwnedFd) -> std::io::Result<Result<Kind, &'static str>> {
    Ok(match crate::sys::file_mode(fd.as_fd())? & libc::S_IFMT {
        libc::S_IFDIR => Ok(Kind::Dir),
        libc::S_IFREG => Ok(Kind::File),
        libc::S_IFLNK => Err("it is a symlink (symlinks are never followed)"),
        _ => Err("a subPath must be a directory or a regular file"),
    })
}

fn resolve_problem(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ELOOP) => "a component is a symlink (symlinks are never followed)".into(),
        Some(libc::EXDEV) => "it crosses a mount point or leaves the volume".into(),
        Some(libc::ENOTDIR) => "a parent component is not a directory".into(),
        _ => e.to_string(),
    }
}

/// The volume's directory, opened beneath the pods directory: no symlink on the way, and
/// only the last step may enter a mount (a memory emptyDir is a tmpfs root).
fn open_volume(pods_dir: &Path, v: &VolumePath) -> std::io::Result<OwnedFd> {
    let pods = std::fs::File::open(pods_dir)?;
    let parent = crate::sys::open_dir_beneath(
        pods.as_fd(),
        &Path::new(&v.uid).join("volumes").join(&v.plugin),
        RESOLVE,
    )?;
    crate::sys::open_dir_beneath(
        parent.as_fd(),
        Path::new(&v.name),
        RESOLVE & !libc::RESOLVE_NO_XDEV,
    )
}

/// Step 1: makes the subPath exist and says what it is. Missing components are created as
/// directories with the volume's mode (as upstream), each beneath its parent's descriptor.
fn ensure_source(pods_dir: &Path, b: &SubPathBind) -> Result<Kind, VolumeError> {
    let fail = |why: String| VolumeError(format!("{}: {why}", b.name()));
    let volume =
        open_volume(pods_dir, &b.mount.volume).map_err(|e| fail(format!("volume: {e}")))?;
    let mode = crate::sys::file_mode(volume.as_fd()).map_err(|e| fail(e.to_string()))? & 0o7777;
    let parts: Vec<&str> = b.sub_path.components().collect();
    let mut cur = volume;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let name = Path::new(part);
        let next = match crate::sys::open_path_beneath(cur.as_fd(), name, RESOLVE) {
            Ok(fd) => fd,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                match crate::sys::mkdir_at(cur.as_fd(), name, 0o700) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(fail(format!("cannot create {part:?}: {e}"))),
                }
                // Reopened without following anything, then chmod'ed through that very
                // descriptor: a swap after mkdirat cannot redirect the chmod.
                let dir = crate::sys::open_dir_readable_beneath(cur.as_fd(), name, RESOLVE)
                    .map_err(|e| {
                        fail(format!(
                            "cannot resolve beneath the volume: {}",
                            resolve_problem(&e)
                        ))
                    })?;
                let file = std::fs::File::from(dir);
                file.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(|e| fail(format!("chmod {part:?}: {e}")))?;
                OwnedFd::from(file)
            }
            Err(e) => {
                return Err(fail(format!(
                    "cannot resolve beneath the volume: {}",
                    resolve_problem(&e)
                )));
            }
        };
        let kind = kind_of(&next).map_err(|e| fail(e.to_string()))?;
        match (kind, last) {
            (Ok(k), true) => return Ok(k),
            (Ok(Kind::Dir), false) => cur = next,
            (Ok(Kind::File), false) => {
                return Err(fail(format!("{part:?} is not a directory")));
            }
            (Err(why), _) => return Err(fail(format!("{part:?}: {why}"))),
        }
    }
    Err(fail("names no path inside the volume".into()))
}

/// Step 2: a fresh, unmounted target of the source's kind.
fn prepare_target(
    pods_dir: &Path,
    b: &SubPathBind,
    helper: &HelperClient,
    kind: Kind,
) -> Result<(), VolumeError> {
    let fail = |why: String| VolumeError(format!("{}: {why}", b.name()));
    helper
        .unmount_sub_path(b.mount.clone())
        .map_err(|e| fail(e.to_string()))?;
    let target = pods_dir.join(b.mount.target());
    let parent = pods_dir.join(b.mount.target_parent());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(&parent)
        .map_err(|e| fail(format!("{}: {e}", parent.display())))?;
    match std::fs::symlink_metadata(&target) {
        Ok(m) if m.is_dir() && kind == Kind::Dir => return Ok(()),
        Ok(m) if m.is_file() && kind == Kind::File => return Ok(()),
        Ok(m) if m.is_dir() => std::fs::remove_dir(&target),
        Ok(_) => std::fs::remove_file(&target),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
    .map_err(|e| fail(format!("{}: {e}", target.display())))?;
    match kind {
        Kind::Dir => std::fs::DirBuilder::new().mode(0o750).create(&target),
        Kind::File => std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&target)
            .map(drop),
    }
    .map_err(|e| fail(format!("{}: {e}", target.display())))
}

/// Binds every subPath of one container, resolving each anew (steps 1 to 3). The first
/// failure is the container's CreateContainerConfigError. Blocking.
pub fn bind_all(
    pods_dir: &Path,
    binds: &[SubPathBind],
    helper: Option<&HelperClient>,
) -> Result<(), VolumeError> {
    if binds.is_empty() {
        return Ok(());
    }
    let helper = helper.ok_or_else(|| {
        VolumeError("subPath mounts need the mount helper, which is not running".into())
    })?;
    for b in binds {
        let kind = ensure_source(pods_dir, b)?;
        prepare_target(pods_dir, b, helper, kind)?;
        helper
            .bind_sub_path(b.mount.clone(), b.sub_path.clone())
            .map_err(|e| VolumeError(format!("{}: {e}", b.name())))?;
    }
    Ok(())
}

/// Every subPath target of a pod on disk (`volume-subpaths/<volume>/<container>/<index>`),
/// from the directory itself, so targets of a pod whose spec is unknown (an orphan after a
/// restart) are found too. Entries that could not have been made by ironlet are skipped.
fn targets_on_disk(pods_dir: &Path, uid: &str) -> std::io::Result<Vec<SubPathMount>> {
    let base = pod_dir(pods_dir, uid).join(SUB_PATHS_DIR);
    let list = |dir: &Path| -> std::io::Result<Vec<String>> {
        match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect(),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    };
    let mut out = Vec::new();
    for volume in list(&base)? {
        let Ok(vp) = VolumePath::new(uid, EMPTY_DIR_PLUGIN, &volume) else {
            continue;
        };
        for container in list(&base.join(&volume))?
            .into_iter()
            .filter(|c| is_dns_label(c))
        {
            for index in list(&base.join(&volume).join(&container))? {
                if let Ok(index) = index.parse::<u32>()
                    && let Ok(m) = SubPathMount::new(vp.clone(), &container, index)
                {
                    out.push(m);
                }
            }
        }
    }
    Ok(out)
}

/// Asks the helper to detach every subPath target of the pod. Blocking.
pub fn unmount_all(
    pods_dir: &Path,
    uid: &str,
    helper: Option<&HelperClient>,
) -> std::io::Result<()> {
    let targets = targets_on_disk(pods_dir, uid)?;
    if targets.is_empty() {
        return Ok(());
    }
    let helper = helper.ok_or_else(|| {
        std::io::Error::other("subPath targets exist but the mount helper is not running")
    })?;
    for m in targets {
        helper
            .unmount_sub_path(m.clone())
            .map_err(|e| std::io::Error::other(format!("{}: {e}", m.target())))?;
    }
    Ok(())
}

/// Mount points at or below `dir`, from /proc/self/mountinfo (field 5, octal-escaped).
pub fn mounts_below(dir: &Path) -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let prefix = escape_mountinfo(&dir.to_string_lossy());
    Ok(text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| {
            *p == prefix
                || p.strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .map(str::to_string)
        .collect())
}

/// The kernel's escaping of mount points in mountinfo: space, tab, newline and backslash.
fn escape_mountinfo(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(sub: &str) -> SubPathBind {
        SubPathBind {
            mount: SubPathMount::new(
                VolumePath::new("u1", EMPTY_DIR_PLUGIN, "data").unwrap(),
                "web",
                2,
            )
            .unwrap(),
            sub_path: SubPath::parse(sub).unwrap(),
        }
    }

    fn volume(root: &Path) -> PathBuf {
        let v = super::super::empty_dir_path(root, "u1", "data");
        std::fs::create_dir_all(&v).unwrap();
        std::fs::set_permissions(&v, std::fs::Permissions::from_mode(0o777)).unwrap();
        v
    }

    #[test]
    fn the_target_layout_is_upstreams() {
        assert_eq!(
            sub_path_target(Path::new("/r/pods"), "u1", "data", "web", 2),
            Path::new("/r/pods/u1/volume-subpaths/data/web/2")
        );
        assert_eq!(
            Path::new("/r/pods").join(bind("x").mount.target()),
            sub_path_target(Path::new("/r/pods"), "u1", "data", "web", 2)
        );
    }

    #[test]
    fn missing_directories_are_created_inside_the_volume_with_its_mode() {
        let root = tempfile::tempdir().unwrap();
        let v = volume(root.path());
        assert_eq!(ensure_source(root.path(), &bind("a/b/c")), Ok(Kind::Dir));
        let m = std::fs::metadata(v.join("a/b/c")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o777);
        std::fs::write(v.join("a/f"), "x").unwrap();
        assert_eq!(ensure_source(root.path(), &bind("a/f")), Ok(Kind::File));
        let e = ensure_source(root.path(), &bind("a/f/g")).unwrap_err();
        assert!(e.0.contains("volume \"data\" subPath \"a/f/g\""), "{e}");
    }

    #[test]
    fn a_planted_symlink_is_refused_and_nothing_is_created_through_it() {
        let root = tempfile::tempdir().unwrap();
        let v = volume(root.path());
        let outside = root.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, v.join("sub")).unwrap();
        for sub in ["sub", "sub/new/dir"] {
            let e = ensure_source(root.path(), &bind(sub)).unwrap_err();
            assert!(e.0.contains("symlink"), "{e}");
            assert!(e.0.contains(&format!("subPath {sub:?}")), "{e}");
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // A relative link that stays inside the volume is refused all the same.
        std::fs::create_dir(v.join("real")).unwrap();
        std::os::unix::fs::symlink("real", v.join("alias")).unwrap();
        assert!(ensure_source(root.path(), &bind("alias/x")).is_err());
        // A symlinked volume directory is refused too.
        std::fs::remove_dir_all(&v).unwrap();
        std::os::unix::fs::symlink(&outside, &v).unwrap();
        assert!(ensure_source(root.path(), &bind("x")).is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn targets_are_found_on_disk_and_strays_skipped() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("u1").join(SUB_PATHS_DIR);
        std::fs::create_dir_all(base.join("data/web/0")).unwrap();
        std::fs::write(base.join("data/web/3"), "").unwrap();
        std::fs::create_dir_all(base.join("Bad/web/0")).unwrap();
        std::fs::create_dir_all(base.join("data/web/x")).unwrap();
        let mut found: Vec<String> = targets_on_disk(root.path(), "u1")
            .unwrap()
            .iter()
            .map(SubPathMount::target)
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                "u1/volume-subpaths/data/web/0",
                "u1/volume-subpaths/data/web/3"
            ]
        );
        assert!(targets_on_disk(root.path(), "nope").unwrap().is_empty());
    }

    #[test]
    fn mountinfo_escaping_matches_the_kernels() {
        assert_eq!(escape_mountinfo("/a b\\c"), "/a\\040b\\134c");
        // /proc is always mounted; nothing is mounted below a fresh temp dir.
        assert!(!mounts_below(Path::new("/")).unwrap().is_empty());
        let t = tempfile::tempdir().unwrap();
        assert!(mounts_below(t.path()).unwrap().is_empty());
    }
}
