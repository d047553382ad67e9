//! cgroup v2: one unified tree. A child gets only the controllers its parent lists in
//! `cgroup.subtree_control`, so creating a path enables, in each parent on the way, every
//! controller that parent has (as libcontainer's `CreateCgroupPath` does for the kubelet);
//! cpu, memory and pids must succeed, others are best effort. Limits: `cpu.weight`,
//! `cpu.max`, `memory.max`, `pids.max`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::resources::cpu::shares_to_weight;

use super::{
    CgroupError, CgroupFs, CgroupIo, CgroupPath, CgroupVersion, PodLimits, REQUIRED_CONTROLLERS,
    create_dir, read, remove_tree, write,
};

#[derive(Debug)]
pub struct V2Hierarchy {
    io: Arc<dyn CgroupIo>,
    root: PathBuf,
}

impl V2Hierarchy {
    /// The tree mounted at `root` (`/sys/fs/cgroup` on a v2 host; a fixture in tests).
    pub fn new(io: Arc<dyn CgroupIo>, root: impl Into<PathBuf>) -> Self {
        V2Hierarchy {
            io,
            root: root.into(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn list(&self, file: &Path) -> Result<BTreeSet<String>, CgroupError> {
        Ok(read(&*self.io, file)?
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    }

    /// Enables in `dir`'s `cgroup.subtree_control` every controller `dir` has.
    fn enable_controllers(&self, dir: &Path) -> Result<(), CgroupError> {
        let available = self.list(&dir.join("cgroup.controllers"))?;
        for required in REQUIRED_CONTROLLERS {
            if !available.contains(required) {
                return Err(CgroupError::MissingController {
                    controller: required,
                    at: dir.to_path_buf(),
                });
            }
        }
        let control = dir.join("cgroup.subtree_control");
        let enabled = self.list(&control)?;
        for c in available.difference(&enabled) {
            if let Err(e) = self.io.write(&control, &format!("+{c}")) {
                if REQUIRED_CONTROLLERS.contains(&c.as_str()) {
                    return Err(CgroupError::io("enable", &control, e));
                }
                tracing::debug!(controller = %c, dir = %dir.display(), error = %e, "optional cgroup controller not enabled");
            }
        }
        Ok(())
    }
}

impl CgroupFs for V2Hierarchy {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn check_controllers(&self) -> Result<(), CgroupError> {
        let available = self.list(&self.root.join("cgroup.controllers"))?;
        for c in REQUIRED_CONTROLLERS {
            if !available.contains(c) {
                return Err(CgroupError::MissingController {
                    controller: c,
                    at: self.root.clone(),
                });
            }
        }
        Ok(())
    }

    fn create(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        let levels: Vec<CgroupPath> = path.ancestors_and_self().collect();
        for pair in levels.windows(2) {
            let [parent, child] = pair else { continue };
            self.enable_controllers(&parent.under(&self.root))?;
            let dir = child.under(&self.root);
            if !self.io.is_dir(&dir) {
                create_dir(&*self.io, &dir)?;
            }
        }
        Ok(())
    }

    fn apply(&self, path: &CgroupPath, limits: &PodLimits) -> Result<(), CgroupError> {
        let io = &*self.io;
        let dir = path.under(&self.root);
        if let Some(shares) = limits.cpu_shares {
            write(
                io,
                &dir.join("cpu.weight"),
                &shares_to_weight(shares).to_string(),
            )?;
        }
        // "$MAX $PERIOD"; a lone "$MAX" keeps the period.
        let quota = limits
            .cpu_quota
            .map_or_else(|| "max".to_owned(), |q| q.to_string());
        let cpu_max = match (limits.cpu_quota, limits.cpu_period) {
            (_, Some(period)) => Some(format!("{quota} {period}")),
            (Some(_), None) => Some(quota),
            (None, None) => None,
        };
        if let Some(cpu_max) = cpu_max {
            write(io, &dir.join("cpu.max"), &cpu_max)?;
        }
        if let Some(bytes) = limits.memory_limit {
            write(io, &dir.join("memory.max"), &bytes.to_string())?;
        }
        if let Some(pids) = limits.pids_limit {
            write(io, &dir.join("pids.max"), &pids.to_string())?;
        }
        Ok(())
    }

    fn exists(&self, path: &CgroupPath) -> bool {
        self.io.is_dir(&path.under(&self.root))
    }

    fn children(&self, path: &CgroupPath) -> Result<Vec<String>, CgroupError> {
        let dir = path.under(&self.root);
        match self.io.subdirs(&dir) {
            Ok(names) => Ok(names),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(CgroupError::io("list", &dir, e)),
        }
    }

    fn remove(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        remove_tree(&*self.io, &path.under(&self.root))
    }
}
