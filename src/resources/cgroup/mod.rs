//! Pod cgroups: the QoS hierarchy (`kubepods`, `burstable`, `besteffort`), one cgroup per
//! pod with its pod-level limits, their removal, and listing them for orphan cleanup.
//!
//! Owns: cgroup directories under the configured `cgroupRoot` and the interface files in
//! them. Must not touch cgroups outside `cgroupRoot` (except enabling controllers in the
//! ancestors' `cgroup.subtree_control` on v2), container cgroups (the runtime creates those
//! under the parent from [`PodCgroups::pod_cgroup_parent`]), or processes.
//!
//! Structure: one trait over v1 and v2, [`CgroupFs`] (create, apply limits, list, remove),
//! implemented by [`V1Hierarchy`] and [`V2Hierarchy`] and dispatched by the [`Hierarchy`]
//! enum; [`PodCgroups`] puts pods into it following a [`CgroupLayout`]. Every file operation
//! goes through the [`CgroupIo`] seam.
//!
//! Why not cgroups-rs for the writes: cgroups-rs 0.5 fixes the v2 root at `/sys/fs/cgroup`
//! and takes v1 mount points from `/proc/self/mountinfo`, so it cannot be pointed at a
//! fixture tree; its `Cgroup::load` and `V1::root` unwrap on non-UTF-8 paths and missing
//! mounts, which would panic on host state; and its v2 create enables every controller it
//! knows while ignoring write errors. So cgroups-rs does what it is good at, detecting the
//! host's hierarchy (`is_cgroup2_unified_mode`, `mountinfo_self`), and the writes are a few
//! dozen lines of `std::fs` behind [`CgroupIo`]. The same code then runs on the real v1
//! cgroupfs in tests and on the real host, and against a v2 fixture that enforces the
//! kernel's rules.
//!
//! All calls block on the filesystem (a handful of small writes); call them from
//! `spawn_blocking` or accept the short stall.

mod io;
mod layout;
mod v1;
mod v2;

#[cfg(test)]
mod fixture;

use std::path::{Path, PathBuf};

pub use io::{CgroupIo, HostIo};
pub use layout::{CgroupLayout, CgroupPath, pod_cgroup_name};
pub use v1::{V1Hierarchy, V1Mount};
pub use v2::V2Hierarchy;

use crate::pod::PodUid;
use crate::resources::cpu::MIN_SHARES;
use crate::resources::qos::QosClass;

/// Controllers pod cgroups need: cpu (shares/quota), memory (limit), pids (`podPidsLimit`).
pub const REQUIRED_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup path {path:?}: {why}")]
    InvalidPath { path: String, why: &'static str },
    #[error("pod UID {0:?} cannot name a cgroup (want 1-128 ASCII letters, digits, '-' or '_')")]
    InvalidUid(String),
    #[error("cgroup controller {controller:?} is not available at {}", at.display())]
    MissingController {
        controller: &'static str,
        at: PathBuf,
    },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `rmdir` refused: processes or child cgroups are left. Retry once they are gone (the
    /// next housekeeping pass does).
    #[error("cgroup {} is still in use (processes or child cgroups remain); retry later", path.display())]
    Busy { path: PathBuf },
}

impl CgroupError {
    fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        CgroupError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// True for [`CgroupError::Busy`]: try again later rather than report a failure.
    pub fn is_busy(&self) -> bool {
        matches!(self, CgroupError::Busy { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// Settings for one cgroup. `None` leaves the file as it is (a new cgroup starts at
/// "unlimited" for all of them, and shares 1024 / weight 100).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodLimits {
    /// v1 `cpu.shares`; v2 `cpu.weight` via [`crate::resources::cpu::shares_to_weight`].
    pub cpu_shares: Option<u64>,
    /// µs per period; v1 `cpu.cfs_quota_us`, v2 first field of `cpu.max`.
    pub cpu_quota: Option<i64>,
    /// µs; v1 `cpu.cfs_period_us`, v2 second field of `cpu.max`.
    pub cpu_period: Option<u64>,
    /// Bytes; v1 `memory.limit_in_bytes`, v2 `memory.max`.
    pub memory_limit: Option<i64>,
    /// `pids.max`.
    pub pids_limit: Option<i64>,
}

/// One trait over cgroup v1 and v2. Paths are relative to the hierarchy's root.
pub trait CgroupFs {
    fn version(&self) -> CgroupVersion;
    /// Fails with [`CgroupError::MissingController`] unless cpu, memory and pids are usable.
    fn check_controllers(&self) -> Result<(), CgroupError>;
    /// Creates `path` and its missing ancestors (v1: in every mounted hierarchy, with cpuset
    /// copied from the parent; v2: enabling controllers in each parent on the way).
    fn create(&self, path: &CgroupPath) -> Result<(), CgroupError>;
    /// Writes the `Some` fields of `limits` to `path`'s interface files.
    fn apply(&self, path: &CgroupPath, limits: &PodLimits) -> Result<(), CgroupError>;
    /// Whether `path` exists (v1: in any hierarchy).
    fn exists(&self, path: &CgroupPath) -> bool;
    /// Names of `path`'s child cgroups (v1: in any hierarchy); empty if `path` is missing.
    fn children(&self, path: &CgroupPath) -> Result<Vec<String>, CgroupError>;
    /// Removes `path` and any child cgroups left in it, deepest first. Missing is fine;
    /// [`CgroupError::Busy`] if a cgroup still has processes.
    fn remove(&self, path: &CgroupPath) -> Result<(), CgroupError>;
}

/// The host's cgroup hierarchy.
#[derive(Debug)]
pub enum Hierarchy {
    V1(V1Hierarchy),
    V2(V2Hierarchy),
}

impl Hierarchy {
    /// Detects the host's hierarchy with cgroups-rs: v2 if `/sys/fs/cgroup` is cgroup2,
    /// otherwise the v1 controller mounts (plus the hybrid `unified` tree, if mounted).
    pub fn detect() -> Self {
        if cgroups_rs::fs::hierarchies::is_cgroup2_unified_mode() {
            Hierarchy::V2(V2Hierarchy::new(
                std::sync::Arc::new(HostIo),
                cgroups_rs::fs::hierarchies::UNIFIED_MOUNTPOINT,
            ))
        } else {
            Hierarchy::V1(V1Hierarchy::detect())
        }
    }

    fn inner(&self) -> &dyn CgroupFs {
        match self {
            Hierarchy::V1(h) => h,
            Hierarchy::V2(h) => h,
        }
    }
}

impl CgroupFs for Hierarchy {
    fn version(&self) -> CgroupVersion {
        self.inner().version()
    }
    fn check_controllers(&self) -> Result<(), CgroupError> {
        self.inner().check_controllers()
    }
    fn create(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        self.inner().create(path)
    }
    fn apply(&self, path: &CgroupPath, limits: &PodLimits) -> Result<(), CgroupError> {
        self.inner().apply(path, limits)
    }
    fn exists(&self, path: &CgroupPath) -> bool {
        self.inner().exists(path)
    }
    fn children(&self, path: &CgroupPath) -> Result<Vec<String>, CgroupError> {
        self.inner().children(path)
    }
    fn remove(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        self.inner().remove(path)
    }
}

/// A pod cgroup found on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroup {
    pub uid: PodUid,
    /// `None` when `cgroupsPerQOS` is off.
    pub qos: Option<QosClass>,
    pub path: CgroupPath,
}

/// Pod cgroups on one hierarchy, laid out by one [`CgroupLayout`].
#[derive(Debug)]
pub struct PodCgroups {
    fs: Hierarchy,
    layout: CgroupLayout,
}

impl PodCgroups {
    pub fn new(fs: Hierarchy, layout: CgroupLayout) -> Self {
        PodCgroups { fs, layout }
    }

    pub fn hierarchy(&self) -> &Hierarchy {
        &self.fs
    }

    pub fn layout(&self) -> &CgroupLayout {
        &self.layout
    }

    /// Creates `cgroupRoot`, and with `cgroupsPerQOS` also `kubepods` (given
    /// `node_allocatable`'s limits if enforced: see
    /// [`crate::resources::allocatable::node_allocatable_limits`]), `kubepods/burstable` and
    /// `kubepods/besteffort` (shares 2). Idempotent; call at start before any pod.
    pub fn ensure_qos_hierarchy(
        &self,
        node_allocatable: Option<&PodLimits>,
    ) -> Result<(), CgroupError> {
        self.fs.check_controllers()?;
        self.fs.create(self.layout.root())?;
        let Some(kubepods) = self.layout.kubepods() else {
            return Ok(());
        };
        self.fs.create(&kubepods)?;
        if let Some(limits) = node_allocatable {
            self.fs.apply(&kubepods, limits)?;
        }
        self.fs
            .create(&self.layout.qos_parent(QosClass::Burstable))?;
        let besteffort = self.layout.qos_parent(QosClass::BestEffort);
        self.fs.create(&besteffort)?;
        self.fs.apply(
            &besteffort,
            &PodLimits {
                cpu_shares: Some(MIN_SHARES),
                ..PodLimits::default()
            },
        )
    }

    /// enforceNodeAllocatable `kube-reserved` / `system-reserved`: limits an existing cgroup
    /// the operator named (kubeReservedCgroup, systemReservedCgroup) to its reservation.
    /// As upstream, a cgroup that does not exist is an error; it is never created here.
    pub fn enforce_reserved(&self, cgroup: &str, limits: &PodLimits) -> Result<(), CgroupError> {
        let path = CgroupPath::parse(cgroup)?;
        if path.is_root() {
            return Err(CgroupError::InvalidPath {
                path: cgroup.to_owned(),
                why: "the root cgroup cannot hold a reservation",
            });
        }
        if !self.fs.exists(&path) {
            return Err(CgroupError::InvalidPath {
                path: cgroup.to_owned(),
                why: "does not exist; create it (for example with the service manager) before enforcing a reservation on it",
            });
        }
        self.fs.apply(&path, limits)
    }

    /// Sets the burstable cgroup's shares from the sum of the cpu requests of the burstable
    /// pods on the node, as upstream's QoS manager does on every pod change. No-op without
    /// `cgroupsPerQOS`.
    pub fn update_burstable_shares(
        &self,
        burstable_cpu_request_milli: i64,
    ) -> Result<(), CgroupError> {
        if self.layout.kubepods().is_none() {
            return Ok(());
        }
        let shares = crate::resources::cpu::milli_cpu_to_shares(burstable_cpu_request_milli);
        self.fs.apply(
            &self.layout.qos_parent(QosClass::Burstable),
            &PodLimits {
                cpu_shares: Some(shares),
                ..PodLimits::default()
            },
        )
    }

    /// The sandbox's `cgroup_parent` (cgroupfs form): `/kubepods/burstable/pod<uid>`.
    pub fn pod_cgroup_parent(&self, uid: &PodUid, qos: QosClass) -> Result<String, CgroupError> {
        Ok(self.layout.pod(uid, qos)?.to_string())
    }

    /// Creates (or re-applies) the pod's cgroup with `limits`
    /// ([`crate::resources::cpu::pod_cgroup_limits`]). Call before `RunPodSandbox`.
    pub fn create_pod_cgroup(
        &self,
        uid: &PodUid,
        qos: QosClass,
        limits: &PodLimits,
    ) -> Result<(), CgroupError> {
        let path = self.layout.pod(uid, qos)?;
        self.fs.create(&path)?;
        self.fs.apply(&path, limits)
    }

    /// Removes the pod's cgroup, wherever its QoS put it. Call after its sandbox and
    /// containers are removed. [`CgroupError::Busy`] means processes are left in it (upstream
    /// kills them first; ironlet leaves that to the runtime): retry on a later pass.
    pub fn remove_pod_cgroup(&self, uid: &PodUid) -> Result<(), CgroupError> {
        let name = pod_cgroup_name(uid)?;
        for (parent, _) in self.layout.pod_parents() {
            let path = parent.child(&name);
            if self.fs.exists(&path) {
                self.fs.remove(&path)?;
            }
        }
        Ok(())
    }

    /// Every pod cgroup under the layout, for removing those of pods that no longer exist.
    pub fn list_pod_cgroups(&self) -> Result<Vec<PodCgroup>, CgroupError> {
        let mut found = Vec::new();
        for (parent, qos) in self.layout.pod_parents() {
            for name in self.fs.children(&parent)? {
                if let Some(uid) = CgroupLayout::uid_of(&name) {
                    let path = parent.child(&name);
                    found.push(PodCgroup { uid, qos, path });
                }
            }
        }
        Ok(found)
    }
}

/// Removes `dir` and its sub-directories, deepest first. Missing is fine.
pub(super) fn remove_tree(io: &dyn CgroupIo, dir: &Path) -> Result<(), CgroupError> {
    let children = match io.subdirs(dir) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CgroupError::io("list", dir, e)),
    };
    for child in children {
        remove_tree(io, &dir.join(child))?;
    }
    match io.remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy => Err(CgroupError::Busy {
            path: dir.to_path_buf(),
        }),
        Err(e) => Err(CgroupError::io("remove", dir, e)),
    }
}

/// Creates one directory level; an existing one is fine (another agent may race us).
pub(super) fn create_dir(io: &dyn CgroupIo, dir: &Path) -> Result<bool, CgroupError> {
    match io.create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(CgroupError::io("create", dir, e)),
    }
}

pub(super) fn write(io: &dyn CgroupIo, file: &Path, value: &str) -> Result<(), CgroupError> {
    io.write(file, value)
        .map_err(|e| CgroupError::io("write", file, e))
}

pub(super) fn read(io: &dyn CgroupIo, file: &Path) -> Result<String, CgroupError> {
    io.read(file).map_err(|e| CgroupError::io("read", file, e))
}

#[cfg(test)]
mod tests;
