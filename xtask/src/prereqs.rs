//! Installs what a node needs (containerd, runc, CNI plugins, catatonit, static busybox,
//! iptables, iproute2) from Debian's packages, so a fresh machine gets there by itself.

use crate::run::{self, step};
use anyhow::{Context, Result, bail};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What must be present, and the Debian package that provides it.
struct Need {
    /// A command name looked up on PATH (plus the sbin dirs), or an absolute path.
    what: &'static str,
    package: &'static str,
    /// The file must be a statically linked ELF (it is copied into an image).
    must_be_static: bool,
}

const NEEDS: &[Need] = &[
    need("containerd", "containerd"),
    need("ctr", "containerd"),
    need("containerd-shim-runc-v2", "containerd"),
    need("runc", "runc"),
    need("/usr/lib/cni/bridge", "containernetworking-plugins"),
    need("/usr/lib/cni/host-local", "containernetworking-plugins"),
    need("/usr/lib/cni/loopback", "containernetworking-plugins"),
    need("/usr/lib/cni/portmap", "containernetworking-plugins"),
    Need {
        what: "catatonit",
        package: "catatonit",
        must_be_static: true,
    },
    Need {
        what: "busybox",
        package: "busybox-static",
        must_be_static: true,
    },
    need("iptables", "iptables"),
    need("ip", "iproute2"),
    // `cargo xtask seccomp-learn` traces the agent's system calls with it.
    need("strace", "strace"),
    // A real TLS client configured with old versions and weak suites (tests/api_tls.rs).
    need("openssl", "openssl"),
];

const fn need(what: &'static str, package: &'static str) -> Need {
    Need {
        what,
        package,
        must_be_static: false,
    }
}

/// Checks every prerequisite; installs the packages of the missing ones with one
/// `apt-get update` and one `apt-get install`, then checks again.
pub fn ensure() -> Result<()> {
    step("checking node prerequisites");
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
    step(format!("installing {}", missing.join(" ")));
    if !Path::new("/usr/bin/apt-get").exists() {
        bail!(
            "missing {} and no apt-get to install them",
            missing.join(" ")
        );
    }
    run::status(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    run::status(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let still = missing_packages();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(" "));
    }
    step("prerequisites installed");
    Ok(())
}

/// Packages to install, deduplicated, in a stable order.
fn missing_packages() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for n in NEEDS {
        let ok = match which(n.what) {
            Some(p) => !n.must_be_static || is_static_elf(&p).unwrap_or(false),
            None => false,
        };
        if !ok && !out.contains(&n.package) {
            println!("    missing: {} (package {})", n.what, n.package);
            out.push(n.package);
        }
    }
    out
}

/// Resolves a command on PATH, also searching the sbin directories that a non-login root
/// shell may lack. Absolute paths are checked as they are.
pub fn which(what: &str) -> Option<PathBuf> {
    if what.starts_with('/') {
        let p = PathBuf::from(what);
        return is_executable(&p).then_some(p);
    }
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(PathBuf::from),
        )
        .map(|d| d.join(what))
        .find(|p| is_executable(p))
}

/// Like [`which`] but an error naming the package to install.
pub fn require(what: &str) -> Result<PathBuf> {
    which(what).with_context(|| format!("`{what}` not found; run `cargo xtask up` or install it"))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// True if `p` is an ELF file without a `PT_INTERP` program header, i.e. it needs no dynamic
/// loader and can be copied into an image on its own.
pub fn is_static_elf(p: &Path) -> Result<bool> {
    let bytes = fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    Ok(elf_is_static(&bytes))
}

fn elf_is_static(b: &[u8]) -> bool {
    const PT_INTERP: u64 = 3;
    if b.len() < 64 || &b[..4] != b"\x7fELF" {
        return false;
    }
    let le = match b[5] {
        1 => true,
        2 => false,
        _ => return false,
    };
    let u16_at = |o: usize| -> Option<u64> {
        let s: [u8; 2] = b.get(o..o + 2)?.try_into().ok()?;
        Some(u64::from(if le {
            u16::from_le_bytes(s)
        } else {
            u16::from_be_bytes(s)
        }))
    };
    let u32_at = |o: usize| -> Option<u64> {
        let s: [u8; 4] = b.get(o..o + 4)?.try_into().ok()?;
        Some(u64::from(if le {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        }))
    };
    let u64_at = |o: usize| -> Option<u64> {
        let s: [u8; 8] = b.get(o..o + 8)?.try_into().ok()?;
        Some(if le {
            u64::from_le_bytes(s)
        } else {
            u64::from_be_bytes(s)
        })
    };
    let headers = match b[4] {
        // ELFCLASS32: e_phoff at 0x1c, e_phentsize 0x2a, e_phnum 0x2c
        1 => (u32_at(0x1c), u16_at(0x2a), u16_at(0x2c)),
        // ELFCLASS64: e_phoff at 0x20, e_phentsize 0x36, e_phnum 0x38
        2 => (u64_at(0x20), u16_at(0x36), u16_at(0x38)),
        _ => return false,
    };
    let (Some(phoff), Some(entsize), Some(num)) = headers else {
        return false;
    };
    (0..num).all(|i| {
        let off = phoff.saturating_add(i.saturating_mul(entsize));
        usize::try_from(off)
            .ok()
            .and_then(u32_at)
            .is_some_and(|t| t != PT_INTERP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_binaries_are_not_static() {
        // Our own test binary is dynamically linked against libc.
        let me = std::env::current_exe().expect("current exe");
        assert!(!is_static_elf(&me).expect("readable"));
    }

    #[test]
    fn not_elf_is_not_static() {
        assert!(!elf_is_static(b"#!/bin/sh\necho hi\n"));
        assert!(!elf_is_static(&[0x7f, b'E', b'L', b'F']));
    }

    #[test]
    fn which_finds_sh_and_absolute_paths() {
        assert!(which("sh").is_some());
        assert!(which("/bin/sh").is_some());
        assert!(which("definitely-not-a-command-xyz").is_none());
    }
}
