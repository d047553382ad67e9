//! A cgroup v2 file system emulated in a temp dir, for tests: the [`CgroupIo`] seam with the
//! kernel's rules instead of plain files.
//!
//! What it enforces, as the kernel does (`kernel/cgroup/cgroup.c`):
//! - `mkdir` populates the interface files: the core `cgroup.*` files, `cpu.stat`, and the
//!   files of each controller the parent enabled in `cgroup.subtree_control` (and only those);
//!   the child's `cgroup.controllers` is the parent's `cgroup.subtree_control`.
//! - Writing a file that does not exist fails (`ENOENT`); read-only files refuse writes.
//! - `cgroup.subtree_control` takes `+name`/`-name` tokens, only for controllers listed in
//!   the cgroup's own `cgroup.controllers` (`ENOENT` otherwise), refuses enabling in a
//!   non-root cgroup that has processes (`EBUSY`), reads back as names in kernel order, and
//!   adds or removes the children's interface files.
//! - `cpu.weight` is 1..=10000; `cpu.max` is `max|quota [period]` with quota >= 1000 and
//!   period in 1000..=1000000 (a lone value keeps the period); `memory.max` is `max` or bytes,
//!   rounded down to the 4 KiB page; `pids.max` is `max` or >= 0.
//! - `rmdir` fails with `EBUSY` while child cgroups or processes (`cgroup.procs`) remain, and
//!   on the root.
//!
//! The core-file list is checked against the running kernel in `tests.rs`.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::CgroupIo;

/// Controllers in the kernel's order (`cgroup_subsys` ids), as `cgroup.controllers` lists them.
const KERNEL_ORDER: [&str; 8] = [
    "cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc",
];

/// Files every non-root cgroup has, whatever its controllers.
pub(super) const CORE_FILES: [(&str, &str); 11] = [
    ("cgroup.controllers", ""),
    ("cgroup.events", "populated 0\nfrozen 0\n"),
    ("cgroup.freeze", "0\n"),
    ("cgroup.max.depth", "max\n"),
    ("cgroup.max.descendants", "max\n"),
    ("cgroup.procs", ""),
    ("cgroup.stat", "nr_descendants 0\nnr_dying_descendants 0\n"),
    ("cgroup.subtree_control", ""),
    ("cgroup.threads", ""),
    ("cgroup.type", "domain\n"),
    ("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"),
];

const READ_ONLY: [&str; 9] = [
    "cgroup.controllers",
    "cgroup.events",
    "cgroup.stat",
    "cpu.stat",
    "memory.current",
    "memory.stat",
    "pids.current",
    "cpuset.cpus.effective",
    "cpuset.mems.effective",
];

/// The interface files a controller adds to a cgroup, with their initial contents.
fn controller_files(controller: &str) -> &'static [(&'static str, &'static str)] {
    match controller {
        "cpu" => &[
            ("cpu.weight", "100\n"),
            ("cpu.weight.nice", "0\n"),
            ("cpu.max", "max 100000\n"),
            ("cpu.max.burst", "0\n"),
            ("cpu.idle", "0\n"),
        ],
        "memory" => &[
            ("memory.max", "max\n"),
            ("memory.high", "max\n"),
            ("memory.low", "0\n"),
            ("memory.min", "0\n"),
            ("memory.current", "0\n"),
            ("memory.stat", ""),
            ("memory.swap.max", "max\n"),
        ],
        "pids" => &[("pids.max", "max\n"), ("pids.current", "0\n")],
        "io" => &[("io.weight", "default 100\n"), ("io.max", "")],
        "cpuset" => &[
            ("cpuset.cpus", "\n"),
            ("cpuset.mems", "\n"),
            ("cpuset.cpus.effective", "0-1\n"),
            ("cpuset.mems.effective", "0\n"),
        ],
        _ => &[],
    }
}

fn err(kind: io::ErrorKind, errno: i32) -> io::Error {
    // Raw errno like the kernel's, so `kind()` matches what HostIo would report.
    let e = io::Error::from_raw_os_error(errno);
    debug_assert_eq!(e.kind(), kind);
    e
}

fn einval() -> io::Error {
    err(io::ErrorKind::InvalidInput, libc::EINVAL)
}

#[derive(Debug)]
pub(super) struct V2Fixture {
    root: PathBuf,
}

impl V2Fixture {
    /// Makes `root` (an empty directory) the root of a cgroup2 mount offering `controllers`.
    pub(super) fn new(root: &Path, controllers: &[&str]) -> io::Result<Self> {
        let available: Vec<&str> = KERNEL_ORDER
            .iter()
            .copied()
            .filter(|c| controllers.contains(c))
            .collect();
        let files = [
            ("cgroup.controllers", format!("{}\n", available.join(" "))),
            ("cgroup.max.depth", "max\n".into()),
            ("cgroup.max.descendants", "max\n".into()),
            ("cgroup.procs", "1\n".into()),
            (
                "cgroup.stat",
                "nr_descendants 0\nnr_dying_descendants 0\n".into(),
            ),
            ("cgroup.subtree_control", String::new()),
            ("cgroup.threads", "1\n".into()),
            ("cpu.stat", "usage_usec 0\n".into()),
        ];
        for (name, content) in files {
            fs::write(root.join(name), content)?;
        }
        Ok(V2Fixture {
            root: root.to_path_buf(),
        })
    }

    fn names(path: &Path) -> io::Result<BTreeSet<String>> {
        Ok(fs::read_to_string(path)?
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    }

    fn populate(dir: &Path, controllers: &BTreeSet<String>) -> io::Result<()> {
        for c in controllers {
            for (name, content) in controller_files(c) {
                if !dir.join(name).exists() {
                    fs::write(dir.join(name), content)?;
                }
            }
        }
        Ok(())
    }

    fn write_subtree_control(&self, file: &Path, value: &str) -> io::Result<()> {
        let dir = file.parent().ok_or_else(einval)?;
        let available = Self::names(&dir.join("cgroup.controllers"))?;
        let mut enabled = Self::names(file)?;
        for token in value.split_whitespace() {
            let (enable, name) = match token.split_at_checked(1) {
                Some(("+", name)) => (true, name),
                Some(("-", name)) => (false, name),
                _ => return Err(einval()),
            };
            if !available.contains(name) {
                return Err(err(io::ErrorKind::NotFound, libc::ENOENT));
            }
            let has_procs = !fs::read_to_string(dir.join("cgroup.procs"))?
                .trim()
                .is_empty();
            if enable && dir != self.root && has_procs {
                return Err(err(io::ErrorKind::ResourceBusy, libc::EBUSY));
            }
            if enable {
                enabled.insert(name.to_owned());
            } else {
                enabled.remove(name);
            }
        }
        let ordered: Vec<&str> = KERNEL_ORDER
            .iter()
            .copied()
            .filter(|c| enabled.contains(*c))
            .collect();
        let line = if ordered.is_empty() {
            String::new()
        } else {
            format!("{}\n", ordered.join(" "))
        };
        fs::write(file, &line)?;
        // Children see the new set at once: their controllers and interface files follow.
        for child in self.subdirs(dir)? {
            let child = dir.join(child);
            fs::write(child.join("cgroup.controllers"), &line)?;
            Self::populate(&child, &enabled)?;
            for c in KERNEL_ORDER.iter().filter(|c| !enabled.contains(**c)) {
                for (name, _) in controller_files(c) {
                    let _ = fs::remove_file(child.join(name));
                }
            }
        }
        Ok(())
    }

    fn check_value(name: &str, value: &str, current: &str) -> io::Result<String> {
        let v = value.trim();
        let int = |s: &str| s.parse::<i64>().map_err(|_| einval());
        Ok(match name {
            "cpu.weight" => {
                let w = int(v)?;
                if !(1..=10_000).contains(&w) {
                    return Err(err(io::ErrorKind::InvalidInput, libc::EINVAL));
                }
                format!("{w}\n")
            }
            "cpu.max" => {
                let mut parts = v.split_whitespace();
                let quota = parts.next().ok_or_else(einval)?;
                let period = match parts.next() {
                    Some(p) => int(p)?,
                    None => current.split_whitespace().nth(1).map_or(Ok(100_000), int)?,
                };
                if parts.next().is_some() || !(1000..=1_000_000).contains(&period) {
                    return Err(einval());
                }
                if quota != "max" && int(quota)? < 1000 {
                    return Err(einval());
                }
                format!("{quota} {period}\n")
            }
            "memory.max" | "memory.high" | "memory.swap.max" => {
                if v == "max" {
                    "max\n".into()
                } else {
                    let bytes = int(v)?;
                    if bytes < 0 {
                        return Err(einval());
                    }
                    format!("{}\n", bytes / 4096 * 4096)
                }
            }
            "pids.max" => {
                if v != "max" && int(v)? < 0 {
                    return Err(einval());
                }
                format!("{v}\n")
            }
            // Writing a pid moves a process in: tests use it to keep a cgroup busy.
            "cgroup.procs" => format!("{current}{v}\n"),
            _ => format!("{v}\n"),
        })
    }
}

impl CgroupIo for V2Fixture {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let parent = path.parent().ok_or_else(einval)?;
        if !parent.join("cgroup.controllers").is_file() {
            return Err(err(io::ErrorKind::NotFound, libc::ENOENT));
        }
        fs::create_dir(path)?;
        for (name, content) in CORE_FILES {
            fs::write(path.join(name), content)?;
        }
        let controllers = fs::read_to_string(parent.join("cgroup.subtree_control"))?;
        fs::write(path.join("cgroup.controllers"), &controllers)?;
        Self::populate(
            path,
            &controllers.split_whitespace().map(str::to_owned).collect(),
        )
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        if path == self.root
            || !self.subdirs(path)?.is_empty()
            || !fs::read_to_string(path.join("cgroup.procs"))?
                .trim()
                .is_empty()
        {
            return Err(err(io::ErrorKind::ResourceBusy, libc::EBUSY));
        }
        // rmdir takes the interface files with it.
        fs::remove_dir_all(path)
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        fs::read_to_string(path)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        if !path.is_file() {
            return Err(err(io::ErrorKind::NotFound, libc::ENOENT));
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if READ_ONLY.contains(&name) {
            return Err(err(io::ErrorKind::PermissionDenied, libc::EACCES));
        }
        if name == "cgroup.subtree_control" {
            return self.write_subtree_control(path, value);
        }
        let current = fs::read_to_string(path)?;
        let stored = Self::check_value(name, value, &current)?;
        fs::write(path, stored)
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
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
