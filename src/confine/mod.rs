//! Self-confinement: the one place where the agent gives up what it does not need.
//!
//! [`apply`] runs once, in `ironlet run`, after the configuration is loaded and before the
//! async runtime starts (so the process has one thread and every later thread inherits the
//! result) and before any listener binds. In order, it:
//! 1. starts the mount helper ([`helper`]), which must keep CAP_SYS_ADMIN;
//! 2. creates the directories the agent will write in (so landlock can name them);
//! 3. reduces the capabilities to `agent` in policy/capabilities.json;
//! 4. sets no_new_privs;
//! 5. restricts the file system and TCP binds with landlock ([`landlock::fs_rules`]);
//! 6. installs the seccomp filters of policy/seccomp.json on all threads.
//!
//! The outcome is written to `<root-dir>/status/confinement.json` (0600), which
//! `ironlet confinement` reads together with /proc. `--insecure-disable-confinement` skips
//! steps 3–6 with a warning and is recorded there as `insecure: true`.

pub mod caps;
pub mod helper;
pub mod inspect;
pub mod landlock;
pub mod policy;
pub mod probe;
pub mod seccomp;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::resources::cgroup::{CgroupFs, CgroupLayout, Hierarchy};

pub const RECORD_FILE: &str = "confinement.json";

/// What `apply` did, as recorded for `ironlet confinement` and the self-audit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub pid: u32,
    /// Confinement was disabled with --insecure-disable-confinement.
    pub insecure: bool,
    pub applied_unix: f64,
    pub capabilities_kept: Vec<String>,
    pub no_new_privs: bool,
    pub landlock: Option<serde_json::Value>,
    pub seccomp: Option<SeccompSummary>,
    pub helper_pid: Option<u32>,
    /// Anything that went differently than planned (e.g. a path missing at start).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeccompSummary {
    pub default_action: String,
    pub allowed: usize,
    pub denied: usize,
    pub filters: usize,
}

pub fn record_path(root_dir: &Path) -> PathBuf {
    crate::view::status_dir(root_dir).join(RECORD_FILE)
}

/// Why confinement could not be applied, recorded or inspected: each names the step.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    /// A directory of the agent (`what` is the setting that names it).
    #[error("{what} {}: {source}", path.display())]
    Mkdir {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroupRoot {root:?}: {source}")]
    CgroupRoot {
        root: String,
        source: crate::resources::cgroup::CgroupError,
    },
    #[error("cgroup kubepods: {0}")]
    Kubepods(crate::resources::cgroup::CgroupError),
    #[error("capabilities: {step}: {source}")]
    Capabilities {
        step: String,
        source: ::caps::errors::CapsError,
    },
    #[error("no_new_privs: {0}")]
    NoNewPrivs(std::io::Error),
    #[error("landlock: {0}")]
    Landlock(#[from] ::landlock::RulesetError),
    #[error("seccomp filter: {0}")]
    SeccompCompile(seccompiler::Error),
    #[error("seccomp filter: compiler returned no program")]
    SeccompNoProgram,
    #[error("unknown errno {0}")]
    UnknownErrno(String),
    #[error("seccomp: {0}")]
    SeccompInstall(seccompiler::Error),
    #[error("cannot start the mount helper: {0}")]
    Helper(std::io::Error),
    /// Reading or writing the confinement record (confinement.json).
    #[error("{}: {source}", path.display())]
    RecordIo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    RecordJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A line of the probe's report could not be written.
    #[error("probe: report line: {0}")]
    ProbeReport(serde_json::Error),
}

pub fn read_record(root_dir: &Path) -> Result<Record, ConfineError> {
    let path = record_path(root_dir);
    let bytes = std::fs::read(&path).map_err(|source| ConfineError::RecordIo {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ConfineError::RecordJson { path, source })
}

fn mkdir(dir: &Path, mode: u32, what: &'static str) -> Result<(), ConfineError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|source| ConfineError::Mkdir {
            what,
            path: dir.to_owned(),
            source,
        })
}

/// Creates the agent's cgroup subtree (cgroupRoot, and kubepods with cgroupsPerQOS) and
/// returns its directory in every mounted hierarchy: the only cgroupfs the agent writes.
pub fn prepare_cgroups(config: &Config) -> Result<Vec<PathBuf>, ConfineError> {
    let root = |source| ConfineError::CgroupRoot {
        root: config.cgroup_root.clone(),
        source,
    };
    let layout = CgroupLayout::new(&config.cgroup_root, config.cgroups_per_qos).map_err(root)?;
    let fs = Hierarchy::detect();
    fs.create(layout.root()).map_err(root)?;
    let subtree = match layout.kubepods() {
        Some(k) => {
            fs.create(&k).map_err(ConfineError::Kubepods)?;
            k
        }
        None => layout.root().clone(),
    };
    Ok(match &fs {
        Hierarchy::V1(h) => h.mounts().iter().map(|m| subtree.under(&m.dir)).collect(),
        Hierarchy::V2(h) => vec![subtree.under(h.root())],
    })
}

/// The plan for one process: what `apply` (and the probe) enforce.
pub struct Plan {
    pub policies: policy::Policies,
    pub rules: Vec<landlock::PathRule>,
    pub ports: Vec<u16>,
    pub programs: Vec<seccompiler::BpfProgram>,
}

impl Plan {
    pub fn for_config(config: &Config) -> Result<Plan, ConfineError> {
        let policies = policy::Policies::load()?;
        let cgroup_dirs = prepare_cgroups(config)?;
        let programs = seccomp::compile(&policies.seccomp.agent)?;
        Ok(Plan {
            rules: landlock::fs_rules(config, &cgroup_dirs),
            ports: landlock::bind_ports(config),
            programs,
            policies,
        })
    }

    /// Steps 3–6 on the calling process. Must run while it has a single thread.
    pub fn enforce(&self) -> Result<Record, ConfineError> {
        let keep = self.policies.agent_caps();
        caps::reduce_to(&keep)?;
        crate::sys::set_no_new_privs().map_err(ConfineError::NoNewPrivs)?;
        let ll = landlock::restrict(&self.rules, &self.ports)?;
        let mut notes = Vec::new();
        for r in ll.rules.iter().filter(|r| !r.applied) {
            notes.push(format!(
                "landlock: {} did not exist at start and stays unreachable",
                r.rule.path.display()
            ));
        }
        if ll.ruleset != "full" {
            notes.push(format!(
                "landlock: the kernel (ABI {}) enforces the ruleset only {}",
                ll.kernel_abi, ll.ruleset
            ));
        }
        seccomp::install(&self.programs)?;
        let f = &self.policies.seccomp.agent;
        Ok(Record {
            pid: std::process::id(),
            insecure: false,
            applied_unix: now_unix(),
            capabilities_kept: keep.iter().map(|c| c.to_string()).collect(),
            no_new_privs: true,
            landlock: serde_json::to_value(&ll).ok(),
            seccomp: Some(SeccompSummary {
                default_action: match f.default.action {
                    policy::DefaultAction::KillProcess => "kill_process".into(),
                    policy::DefaultAction::Errno => {
                        format!("errno {}", f.default.errno.as_deref().unwrap_or("?"))
                    }
                },
                allowed: f.allow.len(),
                denied: f.deny.len(),
                filters: self.programs.len(),
            }),
            // Set by `apply`, which owns the helper; the probe runs without one.
            helper_pid: None,
            notes,
        })
    }
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The single confinement point of the agent (see the module docs). `insecure` is
/// `--insecure-disable-confinement`.
pub fn apply(
    config: &Config,
    insecure: bool,
) -> Result<(Record, std::sync::Arc<helper::HelperClient>), ConfineError> {
    mkdir(&config.root_dir, 0o750, "--root-dir")?;
    mkdir(&config.root_dir.join("pods"), 0o750, "pods directory")?;
    mkdir(
        &crate::view::status_dir(&config.root_dir),
        0o700,
        "status directory",
    )?;
    mkdir(&config.pod_logs_dir, 0o755, "podLogsDir")?;
    let helper = helper::start(&config.root_dir.join("pods")).map_err(ConfineError::Helper)?;
    tracing::info!(pid = helper.pid(), "mount helper started");

    let record = if insecure {
        tracing::warn!(
            "INSECURE: --insecure-disable-confinement is set: no capability reduction, no \
             landlock, no seccomp. A bug in any parser or server of this agent now reaches the \
             whole node. Use it only to debug, never in production."
        );
        Record {
            pid: std::process::id(),
            insecure: true,
            applied_unix: now_unix(),
            capabilities_kept: Vec::new(),
            no_new_privs: false,
            landlock: None,
            seccomp: None,
            helper_pid: Some(helper.pid()),
            notes: vec!["confinement disabled by --insecure-disable-confinement".into()],
        }
    } else {
        let plan = Plan::for_config(config)?;
        let mut record = plan.enforce()?;
        record.helper_pid = Some(helper.pid());
        tracing::info!(
            capabilities = ?record.capabilities_kept,
            landlock = %record.landlock.as_ref().map_or(String::new(), |l| format!("ABI {} {}", l["kernel_abi"], l["ruleset"])),
            seccomp_filters = record.seccomp.as_ref().map_or(0, |s| s.filters),
            "confined"
        );
        for n in &record.notes {
            tracing::warn!("{n}");
        }
        record
    };
    let path = record_path(&config.root_dir);
    let json = serde_json::to_vec_pretty(&record).map_err(|source| ConfineError::RecordJson {
        path: path.clone(),
        source,
    })?;
    crate::atomic_write::write_atomic(&path, &json)
        .map_err(|source| ConfineError::RecordIo { path, source })?;
    Ok((record, helper))
}
