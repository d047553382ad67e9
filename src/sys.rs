//! The only module allowed `unsafe`: thin wrappers over the few system calls that neither
//! std nor the caps/landlock/seccompiler crates expose. Each block says why it is sound.
//! Everything above this module is safe Rust.
//!
//! Why this one module is exempt from the workspace's `unsafe_code = "deny"` (Cargo.toml):
//! the confinement, the mount helper and the confinement probe make raw system calls
//! (prctl, openat2, mkdirat, fstat, fstatfs, mount, umount2, and the calls the probe must
//! see refused) that std does not wrap. Keeping every one of them here, as a thin wrapper
//! whose block carries a SAFETY comment (clippy::undocumented_unsafe_blocks is denied),
//! leaves one file to audit; anywhere else `unsafe` fails the build.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: execve can never grant privileges again.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only; no memory is passed.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    check(rc.into()).map(|_| ())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns (old soft, new soft).
/// systemd's default soft limit (1024) would let a thousand idle connections make every
/// open, accept and CRI dial fail.
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `struct rlimit` into the valid, exclusively borrowed
    // `lim`.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    check(rc.into())?;
    let old = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit reads one valid `struct rlimit`.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    check(rc.into())?;
    Ok((old, lim.rlim_cur))
}

/// `prctl(PR_SET_PDEATHSIG, SIGKILL)`: the caller dies with its parent.
pub fn die_with_parent() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    check(rc.into()).map(|_| ())
}

/// `struct open_how` of openat2(2) (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(dir, path, flags, resolve)` (with O_CLOEXEC and O_NOFOLLOW added).
fn openat2(dir: BorrowedFd<'_>, path: &Path, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    let c = cstring(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64,
        mode: 0,
        resolve,
    };
    // SAFETY: `c` is a valid NUL-terminated string and `how` a valid open_how that both
    // outlive the call; the size passed is the struct's size. The kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    let fd = check(rc)?;
    // SAFETY: on success openat2 returns a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `openat2(dir, path, O_PATH|O_DIRECTORY|O_CLOEXEC|O_NOFOLLOW, resolve)`: a directory
/// reached from `dir` under the given RESOLVE_* restrictions.
pub fn open_dir_beneath(dir: BorrowedFd<'_>, path: &Path, resolve: u64) -> io::Result<OwnedFd> {
    openat2(dir, path, libc::O_PATH | libc::O_DIRECTORY, resolve)
}

/// `openat2(dir, path, O_PATH|O_CLOEXEC|O_NOFOLLOW, resolve)`: a file of any type reached
/// from `dir` under the given RESOLVE_* restrictions (a final symlink is refused).
pub fn open_path_beneath(dir: BorrowedFd<'_>, path: &Path, resolve: u64) -> io::Result<OwnedFd> {
    openat2(dir, path, libc::O_PATH, resolve)
}

/// Like [`open_dir_beneath`], but a readable descriptor (O_RDONLY), e.g. for fchmod.
pub fn open_dir_readable_beneath(
    dir: BorrowedFd<'_>,
    path: &Path,
    resolve: u64,
) -> io::Result<OwnedFd> {
    openat2(dir, path, libc::O_RDONLY | libc::O_DIRECTORY, resolve)
}

/// `mkdirat(dir, name, mode)`: creates one directory in `dir` (the umask applies).
pub fn mkdir_at(dir: BorrowedFd<'_>, name: &Path, mode: u32) -> io::Result<()> {
    let c = cstring(name)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) };
    check(rc.into()).map(|_| ())
}

/// The `st_mode` of what `fd` refers to (`fstat`; works on O_PATH descriptors).
pub fn file_mode(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a writable stat-sized buffer; fstat fills it on success.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
    check(rc.into())?;
    // SAFETY: fstat returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    Ok(st.st_mode)
}

/// The file system magic (`f_type`) of the file system `fd` is on.
pub fn fs_type(fd: BorrowedFd<'_>) -> io::Result<i64> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `st` is a writable statfs-sized buffer; fstatfs fills it on success.
    let rc = unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) };
    check(rc.into())?;
    // SAFETY: fstatfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    // f_type's C type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64)
}

/// `/proc/self/fd/N` for `fd`: mounting through it targets exactly the opened directory,
/// so a symlink swapped in after the check cannot redirect the mount.
fn fd_path(fd: BorrowedFd<'_>) -> io::Result<CString> {
    cstring(Path::new(&format!("/proc/self/fd/{}", fd.as_raw_fd())))
}

/// Mounts a tmpfs (nosuid, nodev, mode 0777, `size` bytes; 0 = the kernel default) on the
/// directory `target` refers to.
pub fn mount_tmpfs(target: BorrowedFd<'_>, size: u64) -> io::Result<()> {
    let path = fd_path(target)?;
    let data = cstring(Path::new(&if size == 0 {
        "mode=0777".to_owned()
    } else {
        format!("mode=0777,size={size}")
    }))?;
    // SAFETY: all four strings are valid NUL-terminated C strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            path.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    check(rc.into()).map(|_| ())
}

/// Bind-mounts exactly what `source` refers to onto exactly what `target` refers to (both
/// through `/proc/self/fd`, so no path is resolved again). Not recursive: mounts below the
/// source are not carried along.
pub fn bind_mount(source: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    let (src, dst) = (fd_path(source)?, fd_path(target)?);
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call; a bind
    // mount takes no file system type and no data.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    check(rc.into()).map(|_| ())
}

/// Detaches the mount whose root `target` refers to (`umount2(MNT_DETACH)`).
pub fn unmount_detach(target: BorrowedFd<'_>) -> io::Result<()> {
    let path = fd_path(target)?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    check(rc.into()).map(|_| ())
}

/// System calls the confinement probe attempts; each must be refused under the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    /// `mount("tmpfs", path, "tmpfs")` on a path that does not exist (ENOENT if allowed).
    Mount,
    /// `ptrace(PTRACE_PEEKUSER, 1)`: reading init's registers (ESRCH if allowed, as init
    /// is not traced by us).
    Ptrace,
    /// `kexec_load` with invalid flags (EINVAL if allowed).
    KexecLoad,
    /// `init_module(NULL, 0, "")` (EFAULT if allowed).
    InitModule,
    /// `bpf(BPF_PROG_LOAD, NULL, 0)` (EINVAL or EFAULT if allowed).
    Bpf,
    /// `clone(CLONE_NEWUSER | CLONE_FS)`: a flag pair the kernel refuses (EINVAL if
    /// allowed), so no process is ever created.
    CloneNewUser,
    /// `clone(CLONE_NEWNET | CLONE_THREAD)` without CLONE_SIGHAND (EINVAL if allowed).
    CloneNewNet,
    /// `clone3(NULL, 0)` (EINVAL if allowed: the size is too small).
    Clone3,
    /// `socket(AF_ALG, SOCK_SEQPACKET, 0)`: the kernel crypto API, open to unprivileged
    /// users (a descriptor if allowed, closed at once).
    SocketAlg,
    /// `fchmodat(AT_FDCWD, <scratch>/CHMOD_TARGET, 0666, 0)`: a mode change by path. If
    /// allowed it changes the mode of that one file, which the probe made for this.
    Fchmodat,
    /// `fchmodat2(AT_FDCWD, <scratch>/CHMOD_TARGET, 0666, 0)` (Linux 6.6; ENOSYS if
    /// allowed on an older kernel).
    Fchmodat2,
}

/// The file in the probe's scratch directory that the mode changes by path aim at.
pub const CHMOD_TARGET: &str = ".probe-chmod";

/// Attempts `what` with arguments that cannot change the machine even when allowed, and
/// returns the error (or `Ok` if the call succeeded).
pub fn attempt(what: Forbidden, scratch: &Path) -> io::Result<()> {
    let rc = match what {
        Forbidden::Mount => {
            let target = cstring(&scratch.join("no-such-mount-point"))?;
            // SAFETY: valid NUL-terminated strings that outlive the call; no data.
            unsafe {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    target.as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                )
            }
            .into()
        }
        // SAFETY: integer arguments only; PEEKUSER on a process we do not trace reads
        // nothing.
        Forbidden::Ptrace => unsafe {
            libc::syscall(libc::SYS_ptrace, libc::PTRACE_PEEKUSER, 1, 0, 0)
        },
        // SAFETY: zero segments and a null segment pointer; flags are invalid, so an
        // allowed call fails before reading memory.
        Forbidden::KexecLoad => unsafe {
            libc::syscall(
                libc::SYS_kexec_load,
                0usize,
                0usize,
                std::ptr::null::<u8>(),
                0x7fff_0000usize,
            )
        },
        // SAFETY: a null image of length 0 and an empty parameter string.
        Forbidden::InitModule => unsafe {
            libc::syscall(
                libc::SYS_init_module,
                std::ptr::null::<u8>(),
                0usize,
                c"".as_ptr(),
            )
        },
        // SAFETY: integer flags only; the flag pair is invalid, so no process is created
        // even if the call is allowed.
        Forbidden::CloneNewUser => unsafe {
            libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_NEWUSER | libc::CLONE_FS) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        },
        // SAFETY: as above; CLONE_THREAD without CLONE_SIGHAND is refused before anything
        // is created.
        Forbidden::CloneNewNet => unsafe {
            libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_NEWNET | libc::CLONE_THREAD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        },
        // SAFETY: a null argument structure of size 0; the kernel reads nothing.
        Forbidden::Clone3 => unsafe {
            libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize)
        },
        Forbidden::SocketAlg => {
            // SAFETY: integer arguments; a returned descriptor is owned and closed here.
            let fd = unsafe { libc::socket(libc::AF_ALG, libc::SOCK_SEQPACKET, 0) };
            if fd >= 0 {
                // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
                drop(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            fd.into()
        }
        Forbidden::Fchmodat | Forbidden::Fchmodat2 => {
            let nr = match what {
                Forbidden::Fchmodat => libc::SYS_fchmodat,
                _ => libc::SYS_fchmodat2,
            };
            let target = cstring(&scratch.join(CHMOD_TARGET))?;
            // SAFETY: `target` is a valid NUL-terminated string that outlives the call; the
            // other arguments are integers.
            unsafe {
                libc::syscall(
                    nr,
                    libc::AT_FDCWD,
                    target.as_ptr(),
                    0o666 as libc::c_uint,
                    0 as libc::c_uint,
                )
            }
        }
        // SAFETY: a null attribute of size 0; the kernel reads nothing.
        Forbidden::Bpf => unsafe {
            libc::syscall(
                libc::SYS_bpf,
                5, /* BPF_PROG_LOAD */
                std::ptr::null::<u8>(),
                0,
            )
        },
    };
    check(rc).map(|_| ())
}

/// A system call that no policy lists: `swapoff(NULL)` (EFAULT if allowed, so it changes
/// nothing). Under the plan the default action applies to it.
pub fn attempt_unlisted() -> io::Result<()> {
    // SAFETY: a null path; an allowed call fails with EFAULT before doing anything.
    let rc = unsafe { libc::syscall(libc::SYS_swapoff, std::ptr::null::<u8>()) };
    check(rc).map(|_| ())
}
