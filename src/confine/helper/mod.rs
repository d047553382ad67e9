//! The privileged mount helper: a small process, started before the agent confines itself,
//! that keeps CAP_SYS_ADMIN (and nothing else) to mount and unmount tmpfs beneath the
//! pods' volume directories, and to bind a subPath it resolved itself beneath its volume
//! onto `<uid>/volume-subpaths/<volume>/<container>/<index>` (and unmount it). A landlocked process cannot mount; this one is not
//! landlocked, so it is kept tiny instead:
//!
//! - it is the agent's binary re-executed (`ironlet mount-helper`), so it starts with one
//!   thread and a clean environment, and dies with its parent (PDEATHSIG, and EOF);
//! - its only input is the socket on its stdin, speaking [`proto`] (fixed, versioned,
//!   length-prefixed frames, fuzzed);
//! - each path is resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//!   RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) from a descriptor of the pods directory, and
//!   the mount goes through `/proc/self/fd/N`, so no symlink or `..` can lead it elsewhere;
//! - it drops every capability but CAP_SYS_ADMIN, sets no_new_privs and installs its own,
//!   tighter seccomp filter (`mount_helper` in policy/seccomp.json) before reading a byte;
//! - every request and its outcome are logged.

pub mod proto;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use proto::{DecodeError, Request, Status, SubPath, SubPathMount, VolumePath};

/// The running agent's helper, set once at start.
static HELPER: OnceLock<HelperClient> = OnceLock::new();

/// The helper of this process, if one was started.
pub fn client() -> Option<&'static HelperClient> {
    HELPER.get()
}

#[derive(Debug)]
pub struct HelperClient {
    stream: Mutex<UnixStream>,
    /// Kept so the helper is not reaped by anyone else; `ironlet confinement` reports its
    /// state from /proc.
    _child: Child,
    pid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("mount helper: {0}")]
    Io(#[from] std::io::Error),
    #[error("mount helper sent a malformed reply: {0}")]
    Reply(DecodeError),
    #[error("mount helper refused: {0}")]
    Refused(String),
    #[error("mount helper failed: {0}")]
    Failed(String),
}

/// Starts the helper for `pods_dir` and registers it as this process's helper.
pub fn start(pods_dir: &Path) -> std::io::Result<&'static HelperClient> {
    let (ours, theirs) = UnixStream::pair()?;
    let theirs_out = theirs.try_clone()?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("mount-helper")
        .arg("--pods-dir")
        .arg(pods_dir)
        // The agent's stderr is shared: log in the agent's format.
        .arg(match crate::config::node::process_log_format() {
            crate::config::LogFormat::Json => "--log-format=json",
            crate::config::LogFormat::Text => "--log-format=text",
        })
        .env_clear()
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::from(OwnedFd::from(theirs_out)))
        .stderr(Stdio::inherit());
    if let Some(v) = std::env::var_os("RUST_LOG") {
        cmd.env("RUST_LOG", v);
    }
    let child = cmd.spawn()?;
    ours.set_read_timeout(Some(Duration::from_secs(30)))?;
    ours.set_write_timeout(Some(Duration::from_secs(30)))?;
    let client = HelperClient {
        pid: child.id(),
        stream: Mutex::new(ours),
        _child: child,
    };
    Ok(HELPER.get_or_init(|| client))
}

impl HelperClient {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn mount_tmpfs(&self, path: VolumePath, size: u64) -> Result<(), HelperError> {
        self.call(&Request::MountTmpfs { path, size })
    }

    pub fn unmount(&self, path: VolumePath) -> Result<(), HelperError> {
        self.call(&Request::Unmount { path })
    }

    /// Binds `sub_path` of the volume onto the mount's target; the helper resolves it
    /// itself, beneath the volume, following no symlink. Blocking.
    pub fn bind_sub_path(&self, mount: SubPathMount, sub_path: SubPath) -> Result<(), HelperError> {
        self.call(&Request::BindSubPath { mount, sub_path })
    }

    /// Detaches whatever is mounted on the mount's target (nothing is fine). Blocking.
    pub fn unmount_sub_path(&self, mount: SubPathMount) -> Result<(), HelperError> {
        self.call(&Request::UnmountSubPath { mount })
    }

    fn call(&self, req: &Request) -> Result<(), HelperError> {
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        s.write_all(&proto::encode_request(req))?;
        let mut prefix = [0u8; 4];
        s.read_exact(&mut prefix)?;
        let n = u32::from_be_bytes(prefix) as usize;
        if n > 8 + proto::MAX_MESSAGE {
            return Err(HelperError::Reply(DecodeError::TooLong(n)));
        }
        let mut body = vec![0u8; n];
        s.read_exact(&mut body)?;
        match proto::decode_response(&body).map_err(HelperError::Reply)? {
            (Status::Ok, _) => Ok(()),
            (Status::Refused, m) => Err(HelperError::Refused(m)),
            (Status::Failed, m) => Err(HelperError::Failed(m)),
        }
    }
}

/// openat2 restrictions for every path the helper resolves.
const RESOLVE: u64 = libc::RESOLVE_BENEATH
    | libc::RESOLVE_NO_SYMLINKS
    | libc::RESOLVE_NO_MAGICLINKS
    | libc::RESOLVE_NO_XDEV;

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// How many mounts stacked on one subPath target an unmount peels off at most.
const MAX_STACKED: usize = 16;

/// Why resolving a subPath failed, in the words a pod author understands.
fn resolve_problem(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ELOOP) => "a component is a symlink (symlinks are never followed)".into(),
        Some(libc::EXDEV) => "it crosses a mount point or leaves the volume".into(),
        Some(libc::ENOENT) => "it does not exist".into(),
        Some(libc::ENOTDIR) => "a parent component is not a directory".into(),
        _ => e.to_string(),
    }
}

/// What a subPath may be: a directory or a regular file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

fn kind_of(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<Result<Kind, String>> {
    let mode = crate::sys::file_mode(fd)?;
    Ok(match mode & libc::S_IFMT {
        libc::S_IFDIR => Ok(Kind::Dir),
        libc::S_IFREG => Ok(Kind::File),
        // O_PATH | O_NOFOLLOW hands back a final symlink itself; it is never followed.
        libc::S_IFLNK => Err("a symlink (symlinks are never followed)".into()),
        other => Err(format!("file type {other:#o}")),
    })
}

/// The helper's side: executes requests against the pods directory `pods`.
pub struct Server {
    pods: std::fs::File,
    pods_path: PathBuf,
}

impl Server {
    pub fn open(pods_dir: &Path) -> std::io::Result<Server> {
        Ok(Server {
            pods: std::fs::File::open(pods_dir)?,
            pods_path: pods_dir.to_path_buf(),
        })
    }

    /// The volume's parent directory (`<uid>/volumes/<plugin>`), beneath the pods dir,
    /// on the same mount, with no symlink anywhere.
    fn parent(&self, p: &VolumePath) -> std::io::Result<OwnedFd> {
        let rel = PathBuf::from(&p.uid).join("volumes").join(&p.plugin);
        crate::sys::open_dir_beneath(self.pods.as_fd(), &rel, RESOLVE)
    }

    /// Executes one decoded request; the message is logged and returned.
    pub fn handle(&self, req: &Request) -> (Status, String) {
        match req {
            Request::MountTmpfs { path, size } => {
                let dir = match self.parent(path).and_then(|parent| {
                    crate::sys::open_dir_beneath(parent.as_fd(), Path::new(&path.name), RESOLVE)
                }) {
                    Ok(d) => d,
                    Err(e) => {
                        return (
                            Status::Refused,
                            format!(
                                "{}: cannot resolve beneath the pods directory: {e}",
                                path.relative()
                            ),
                        );
                    }
                };
                match crate::sys::mount_tmpfs(dir.as_fd(), *size) {
                    Ok(()) => (
                        Status::Ok,
                        format!("mounted tmpfs (size {size}) on {}", path.relative()),
                    ),
                    Err(e) => (Status::Failed, format!("mount {}: {e}", path.relative())),
                }
            }
            Request::Unmount { path } => {
                // The parent must be on the pods' own mount (NO_XDEV); the volume itself is
                // the tmpfs, so it is opened without NO_XDEV and then checked.
                let dir = match self.parent(path).and_then(|parent| {
                    crate::sys::open_dir_beneath(
                        parent.as_fd(),
                        Path::new(&path.name),
                        RESOLVE & !libc::RESOLVE_NO_XDEV,
                    )
                }) {
                    Ok(d) => d,
                    Err(e) => {
                        return (
                            Status::Refused,
                            format!(
                                "{}: cannot resolve beneath the pods directory: {e}",
                                path.relative()
                            ),
                        );
                    }
                };
                match crate::sys::fs_type(dir.as_fd()) {
                    Ok(TMPFS_MAGIC) => {}
                    Ok(_) => {
                        return (
                            Status::Refused,
                            format!("{}: not a tmpfs mount", path.relative()),
                        );
                    }
                    Err(e) => return (Status::Failed, format!("{}: {e}", path.relative())),
                }
                match crate::sys::unmount_detach(dir.as_fd()) {
                    Ok(()) => (Status::Ok, format!("unmounted {}", path.relative())),
                    Err(e) => (Status::Failed, format!("unmount {}: {e}", path.relative())),
                }
            }
            Request::BindSubPath { mount, sub_path } => self.bind_sub_path(mount, sub_path),
            Request::UnmountSubPath { mount } => self.unmount_sub_path(mount),
        }
    }

    /// The volume directory itself (a tmpfs emptyDir is a mount root, so the last step may
    /// cross into it; everything above it may not).
    fn volume(&self, v: &VolumePath) -> std::io::Result<OwnedFd> {
        let parent = self.parent(v)?;
        crate::sys::open_dir_beneath(
            parent.as_fd(),
            Path::new(&v.name),
            RESOLVE & !libc::RESOLVE_NO_XDEV,
        )
    }

    /// The directory holding the mount's target (`<uid>/volume-subpaths/<volume>/<container>`),
    /// on the pods' own mount, with no symlink anywhere.
    fn target_parent(&self, m: &SubPathMount) -> std::io::Result<OwnedFd> {
        crate::sys::open_dir_beneath(self.pods.as_fd(), Path::new(&m.target_parent()), RESOLVE)
    }

    /// Resolves the subPath now, from the volume's descriptor (RESOLVE_BENEATH,
    /// NO_SYMLINKS, NO_MAGICLINKS, NO_XDEV: a symlink planted anywhere on the way, a `..`
    /// or a mount inside the volume all fail), and binds the resolved descriptor onto the
    /// target through /proc/self/fd. A swap after the resolution changes nothing: the
    /// mount source is the descriptor, not a path (CVE-2021-25741).
    fn bind_sub_path(&self, m: &SubPathMount, sub: &SubPath) -> (Status, String) {
        let what = format!(
            "volume {:?} subPath {:?} for {}",
            m.volume.name,
            sub.as_str(),
            m.target()
        );
        let volume = match self.volume(&m.volume) {
            Ok(v) => v,
            Err(e) => return (Status::Refused, format!("{what}: volume: {e}")),
        };
        let source =
            match crate::sys::open_path_beneath(volume.as_fd(), Path::new(sub.as_str()), RESOLVE) {
                Ok(s) => s,
                Err(e) => {
                    return (
                        Status::Refused,
                        format!(
                            "{what}: cannot resolve beneath the volume: {}",
                            resolve_problem(&e)
                        ),
                    );
                }
            };
        let source_kind = match kind_of(source.as_fd()) {
            Ok(Ok(k)) => k,
            Ok(Err(t)) => {
                return (
                    Status::Refused,
                    format!("{what}: a subPath must be a directory or a regular file, not {t}"),
                );
            }
            Err(e) => return (Status::Failed, format!("{what}: {e}")),
        };
        let parent = match self.target_parent(m) {
            Ok(p) => p,
            Err(e) => return (Status::Refused, format!("{what}: target directory: {e}")),
        };
        // NO_XDEV on the last step: a target that is still a mount point is refused (the
        // agent unmounts it first, so every start binds a fresh resolution).
        let target = match crate::sys::open_path_beneath(
            parent.as_fd(),
            Path::new(&m.index.to_string()),
            RESOLVE,
        ) {
            Ok(t) => t,
            Err(e) => {
                return (
                    Status::Refused,
                    format!("{what}: target: {}", resolve_problem(&e)),
                );
            }
        };
        match kind_of(target.as_fd()) {
            Ok(Ok(k)) if k == source_kind => {}
            Ok(_) => {
                return (
                    Status::Refused,
                    format!("{what}: the target is not a {source_kind:?} like the source"),
                );
            }
            Err(e) => return (Status::Failed, format!("{what}: {e}")),
        }
        match crate::sys::bind_mount(source.as_fd(), target.as_fd()) {
            Ok(()) => (Status::Ok, format!("bound {what}")),
            Err(e) => (Status::Failed, format!("{what}: bind mount: {e}")),
        }
    }

    /// Detaches every mount stacked on the target; a missing target or none is fine.
    fn unmount_sub_path(&self, m: &SubPathMount) -> (Status, String) {
        let target = m.target();
        let parent = match self.target_parent(m) {
            Ok(p) => p,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                return (Status::Ok, format!("nothing mounted on {target}"));
            }
            Err(e) => return (Status::Refused, format!("{target}: target directory: {e}")),
        };
        let name = m.index.to_string();
        let mut detached = 0;
        while detached < MAX_STACKED {
            match crate::sys::open_path_beneath(parent.as_fd(), Path::new(&name), RESOLVE) {
                // Reached without crossing a mount: nothing (more) is mounted on it.
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
                Err(e) => {
                    return (
                        Status::Refused,
                        format!("{target}: {}", resolve_problem(&e)),
                    );
                }
            }
            let top = match crate::sys::open_path_beneath(
                parent.as_fd(),
                Path::new(&name),
                RESOLVE & !libc::RESOLVE_NO_XDEV,
            ) {
                Ok(t) => t,
                Err(e) => return (Status::Failed, format!("{target}: {e}")),
            };
            if let Err(e) = crate::sys::unmount_detach(top.as_fd()) {
                return (Status::Failed, format!("unmount {target}: {e}"));
            }
            detached += 1;
        }
        match detached {
            0 => (Status::Ok, format!("nothing mounted on {target}")),
            MAX_STACKED => (
                Status::Failed,
                format!("{target}: more than {MAX_STACKED} stacked mounts"),
            ),
            n => (Status::Ok, format!("unmounted {target} ({n} mount(s))")),
        }
    }

    /// Serves requests on `conn` until it closes. Malformed frames are answered and logged;
    /// an oversized or undecodable length ends the session (the stream is out of sync).
    pub fn serve(&self, conn: &mut (impl Read + Write)) -> std::io::Result<()> {
        tracing::info!(pods = %self.pods_path.display(), "mount helper ready");
        loop {
            let mut prefix = [0u8; 4];
            match conn.read_exact(&mut prefix) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    tracing::info!("mount helper: the agent went away; exiting");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
            let n = match proto::body_length(prefix) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "mount helper: refused frame; closing");
                    conn.write_all(&proto::encode_response(Status::Refused, &e.to_string()))?;
                    return Ok(());
                }
            };
            let mut body = vec![0u8; n];
            conn.read_exact(&mut body)?;
            let (status, message) = match proto::decode_request(&body) {
                Ok(req) => self.handle(&req),
                Err(e) => (Status::Refused, format!("malformed request: {e}")),
            };
            match status {
                Status::Ok => tracing::info!("mount helper: {message}"),
                _ => tracing::warn!(?status, "mount helper: {message}"),
            }
            conn.write_all(&proto::encode_response(status, &message))?;
        }
    }
}

/// `ironlet mount-helper`: confine this process to the helper's policy, then serve stdin.
pub fn main(pods_dir: &Path) -> anyhow::Result<()> {
    crate::sys::die_with_parent()?;
    let server = Server::open(pods_dir)
        .map_err(|e| anyhow::anyhow!("pods directory {}: {e}", pods_dir.display()))?;
    let policies = super::policy::Policies::load().map_err(anyhow::Error::msg)?;
    super::caps::reduce_to(&policies.helper_caps()).map_err(anyhow::Error::msg)?;
    crate::sys::set_no_new_privs()?;
    let programs =
        super::seccomp::compile(&policies.seccomp.mount_helper).map_err(anyhow::Error::msg)?;
    super::seccomp::install(&programs).map_err(anyhow::Error::msg)?;
    let stdin: OwnedFd = std::io::stdin().as_fd().try_clone_to_owned()?;
    let mut conn = UnixStream::from(stdin);
    server.serve(&mut conn)?;
    Ok(())
}
