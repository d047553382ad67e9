//! cgroup v1: one hierarchy per controller mount (`/sys/fs/cgroup/cpu`, `.../memory`, ...).
//!
//! A cgroup is created in every mounted hierarchy, as libcontainer's cgroupfs manager does
//! for the kubelet (so the runtime finds the parent everywhere), including a named one such
//! as `name=systemd` and, on hybrid hosts, the controller-less `unified` tree. A new
//! `cpuset` cgroup starts with empty `cpuset.cpus`/`cpuset.mems` and could hold no task, so
//! both are copied from its parent. Limits: `cpu.shares`, `cpu.cfs_period_us`,
//! `cpu.cfs_quota_us`, `memory.limit_in_bytes`, `pids.max`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    CgroupError, CgroupFs, CgroupIo, CgroupPath, CgroupVersion, HostIo, PodLimits,
    REQUIRED_CONTROLLERS, create_dir, read, remove_tree, write,
};

/// One mounted v1 hierarchy and the mount options naming its controllers (`cpu`,
/// `cpuacct`, `name=systemd`, ...). A hybrid host's `unified` mount has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Mount {
    pub dir: PathBuf,
    pub controllers: Vec<String>,
}

#[derive(Debug)]
pub struct V1Hierarchy {
    io: Arc<dyn CgroupIo>,
    mounts: Vec<V1Mount>,
}

impl V1Hierarchy {
    /// A v1 hierarchy with these mounts (tests pass a fixture; [`V1Hierarchy::detect`] the
    /// host's).
    pub fn new(io: Arc<dyn CgroupIo>, mounts: Vec<V1Mount>) -> Self {
        V1Hierarchy { io, mounts }
    }

    /// The `cgroup` mounts of this process, found by cgroups-rs, plus a hybrid host's
    /// `cgroup2` mount.
    pub fn detect() -> Self {
        let mut mounts: Vec<V1Mount> = Vec::new();
        for m in cgroups_rs::fs::hierarchies::mountinfo_self() {
            if m.fs_type.0 != "cgroup" || mounts.iter().any(|x| x.dir == m.mount_point) {
                continue;
            }
            if m.mount_root != Path::new("/") {
                // A bind mount of a sub-tree (a container without cgroupns): the runtime
                // resolves cgroup paths against the same mounts, so paths still agree, but
                // they are not the host's.
                tracing::warn!(
                    mount = %m.mount_point.display(),
                    root = %m.mount_root.display(),
                    "cgroup v1 hierarchy is mounted from a sub-tree"
                );
            }
            mounts.push(V1Mount {
                dir: m.mount_point,
                controllers: m.super_opts,
            });
        }
        if let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") {
            for dir in cgroup2_mounts(&text) {
                if !mounts.iter().any(|x| x.dir == dir) {
                    mounts.push(V1Mount {
                        dir,
                        controllers: Vec::new(),
                    });
                }
            }
        }
        Self::new(Arc::new(HostIo), mounts)
    }

    pub fn mounts(&self) -> &[V1Mount] {
        &self.mounts
    }

    /// Where `controller`'s hierarchy is mounted.
    pub fn mount_of(&self, controller: &'static str) -> Result<&Path, CgroupError> {
        self.mounts
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == controller))
            .map(|m| m.dir.as_path())
            .ok_or(CgroupError::MissingController {
                controller,
                at: PathBuf::from("/proc/self/mountinfo"),
            })
    }

    fn init_cpuset(&self, parent: &Path, dir: &Path) -> Result<(), CgroupError> {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if !read(&*self.io, &dir.join(file))?.trim().is_empty() {
                continue;
            }
            let inherited = read(&*self.io, &parent.join(file))?;
            if !inherited.trim().is_empty() {
                write(&*self.io, &dir.join(file), inherited.trim())?;
            }
        }
        Ok(())
    }
}

impl CgroupFs for V1Hierarchy {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn check_controllers(&self) -> Result<(), CgroupError> {
        for c in REQUIRED_CONTROLLERS {
            self.mount_of(c)?;
        }
        Ok(())
    }

    fn create(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        for m in &self.mounts {
            let cpuset = m.controllers.iter().any(|c| c == "cpuset");
            let mut parent = m.dir.clone();
            for level in path.ancestors_and_self().skip(1) {
                let dir = level.under(&m.dir);
                if !self.io.is_dir(&dir) && create_dir(&*self.io, &dir)? && cpuset {
                    self.init_cpuset(&parent, &dir)?;
                }
                parent = dir;
            }
        }
        Ok(())
    }

    fn apply(&self, path: &CgroupPath, limits: &PodLimits) -> Result<(), CgroupError> {
        let io = &*self.io;
        if limits.cpu_shares.is_some() || limits.cpu_quota.is_some() || limits.cpu_period.is_some()
        {
            let dir = path.under(self.mount_of("cpu")?);
            if let Some(shares) = limits.cpu_shares {
                write(io, &dir.join("cpu.shares"), &shares.to_string())?;
            }
            // Period before quota, as runc does.
            if let Some(period) = limits.cpu_period {
                write(io, &dir.join("cpu.cfs_period_us"), &period.to_string())?;
            }
            if let Some(quota) = limits.cpu_quota {
                write(io, &dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
        }
        if let Some(bytes) = limits.memory_limit {
            let dir = path.under(self.mount_of("memory")?);
            write(io, &dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
        }
        if let Some(pids) = limits.pids_limit {
            let dir = path.under(self.mount_of("pids")?);
            write(io, &dir.join("pids.max"), &pids.to_string())?;
        }
        Ok(())
    }

    fn exists(&self, path: &CgroupPath) -> bool {
        self.mounts
            .iter()
            .any(|m| self.io.is_dir(&path.under(&m.dir)))
    }

    fn children(&self, path: &CgroupPath) -> Result<Vec<String>, CgroupError> {
        let mut names = BTreeSet::new();
        for m in &self.mounts {
            let dir = path.under(&m.dir);
            match self.io.subdirs(&dir) {
                Ok(found) => names.extend(found),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CgroupError::io("list", &dir, e)),
            }
        }
        Ok(names.into_iter().collect())
    }

    fn remove(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        // Try every hierarchy even if one is busy, so a retry has less left to do.
        let mut first_error = None;
        for m in &self.mounts {
            if let Err(e) = remove_tree(&*self.io, &path.under(&m.dir)) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Mount points of `cgroup2` file systems in a `/proc/self/mountinfo` text.
fn cgroup2_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (fields, fs) = line.split_once(" - ")?;
            if fs.split(' ').next()? != "cgroup2" {
                return None;
            }
            fields
                .split(' ')
                .nth(4)
                .map(|p| PathBuf::from(unescape_octal(p)))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hybrid_unified_mounts() {
        let text = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                    32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                    42 31 0:39 / /mnt/with\\040space rw - cgroup2 cgroup2 rw\n\
                    garbage line\n";
        assert_eq!(
            cgroup2_mounts(text),
            [
                PathBuf::from("/sys/fs/cgroup/unified"),
                PathBuf::from("/mnt/with space")
            ]
        );
        assert_eq!(unescape_octal("a\\134b\\0"), "a\\b\\0");
    }

    #[test]
    fn missing_controller_is_named() {
        let h = V1Hierarchy::new(
            Arc::new(HostIo),
            vec![V1Mount {
                dir: PathBuf::from("/nonexistent/cpu"),
                controllers: vec!["rw".into(), "cpu".into(), "cpuacct".into()],
            }],
        );
        assert_eq!(h.mount_of("cpu").ok(), Some(Path::new("/nonexistent/cpu")));
        let err = h.check_controllers().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("cgroup controller \"memory\" is not available at /proc/self/mountinfo")
        );
    }
}
