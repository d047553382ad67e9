//! The landlock ruleset, derived from the effective configuration.
//!
//! [`fs_rules`] lists every path the running agent may read or write, each with its
//! reason; adding a path the agent needs is one line there. Everything else on the file
//! system is out of reach: no reads (e.g. /etc/shadow), no writes, no execution.
//! TCP bind is limited to the agent's own ports; signals and abstract unix sockets are
//! scoped to the agent (landlock ABI 6).

use super::ConfineError;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, LandlockStatus, NetPort, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};
use serde::Serialize;

use crate::config::Config;

/// The newest ABI whose rights this ruleset was written and tested against. Rights of
/// newer ABIs are not handled (so they stay allowed); older kernels get what they support.
pub const TARGET_ABI: ABI = ABI::V6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Read files and list directories.
    Read,
    /// Read, write, create and remove files and directories (no devices, sockets, fifos,
    /// symlinks or execution).
    ReadWrite,
    /// ReadWrite plus creating symlinks: the cert dir's `-current.pem` links only.
    ReadWriteLinks,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathRule {
    pub path: PathBuf,
    pub mode: Mode,
    pub reason: &'static str,
}

#[derive(Debug, Default)]
struct Rules(Vec<PathRule>);

impl Rules {
    fn read(&mut self, path: impl AsRef<Path>, reason: &'static str) {
        self.push(path.as_ref(), Mode::Read, reason);
    }
    fn read_opt(&mut self, path: Option<&Path>, reason: &'static str) {
        if let Some(p) = path {
            self.read(p, reason);
        }
    }
    fn write(&mut self, path: impl AsRef<Path>, reason: &'static str) {
        self.push(path.as_ref(), Mode::ReadWrite, reason);
    }
    fn push(&mut self, path: &Path, mode: Mode, reason: &'static str) {
        if !self.0.iter().any(|r| r.path == path && r.mode == mode) {
            self.0.push(PathRule {
                path: path.to_path_buf(),
                mode,
                reason,
            });
        }
    }
}

/// Every path the agent needs, from the effective configuration. `cgroup_dirs` are the
/// directories of the agent's cgroup subtree, one per mounted hierarchy.
pub fn fs_rules(config: &Config, cgroup_dirs: &[PathBuf]) -> Vec<PathRule> {
    let mut r = Rules::default();
    r.write(
        &config.root_dir,
        "pod directories, volumes and the status files live here",
    );
    r.write(
        &config.pod_logs_dir,
        "container logs: read for `ironlet logs`, rotated and pruned",
    );
    r.read_opt(config.static_pod_path.as_deref(), "static pod manifests");
    r.read_opt(
        config.config_file.as_deref(),
        "the KubeletConfiguration file",
    );
    r.read_opt(
        config.resolv_conf.as_deref(),
        "resolvConf, the base of pod DNS",
    );
    r.read_opt(
        config.tls.cert_file.as_deref(),
        "tlsCertFile, the 10250 serving certificate",
    );
    r.read_opt(
        config.tls.private_key_file.as_deref(),
        "tlsPrivateKeyFile, its key",
    );
    r.read_opt(
        config.authentication.x509_client_ca_file.as_deref(),
        "clientCAFile, to verify client certificates on 10250",
    );
    r.read(
        config.root_dir.join("pki"),
        "the default cert dir (<root-dir>/pki)",
    );
    for f in [
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/nsswitch.conf",
        "/etc/host.conf",
    ] {
        r.read(f, "name resolution for the API server");
    }
    r.read(
        "/etc/localtime",
        "the local time zone (log rotation stamps)",
    );
    r.read("/usr/share/zoneinfo", "time zone data");
    r.read(
        "/proc",
        "meminfo, own status and mountinfo (capacity, cgroup detection)",
    );
    r.read(
        "/sys/fs/cgroup",
        "cgroup controllers and the cpuset of the node",
    );
    r.read("/sys/devices/system/cpu", "online CPUs (capacity)");
    for d in cgroup_dirs {
        r.write(
            d,
            "the kubepods cgroup subtree: pod cgroups and their limits",
        );
    }
    r.read_opt(
        config.authorization_policy_file.as_deref(),
        "the standalone authorization policy of 10250",
    );
    if let Some(dir) = config.audit_log_path.as_deref().and_then(Path::parent) {
        r.write(
            dir,
            "the kubelet API audit log and its rotated files (--audit-log-path; give it its own directory)",
        );
    }
    if config.enable_system_log_handler {
        r.read(
            "/var/log",
            "node logs served on /logs/ (enableSystemLogHandler)",
        );
    }
    if config.cluster.kubeconfig.is_some() {
        r.push(
            &config.certificates.cert_dir,
            Mode::ReadWriteLinks,
            "--cert-dir: issued certificate pairs, pending keys (0600) and the -current.pem symlinks swapped on rotation",
        );
    }
    if let Some(bootstrap) = config.certificates.bootstrap_kubeconfig.as_deref() {
        r.read(
            bootstrap,
            "--bootstrap-kubeconfig, the TLS bootstrap credentials",
        );
        for f in crate::apiclient::referenced_files(bootstrap) {
            r.read(f, "a file the bootstrap kubeconfig names (CA, token)");
        }
        if let Some(dir) = config.cluster.kubeconfig.as_deref().and_then(Path::parent) {
            r.write(
                dir,
                "the directory of --kubeconfig, which TLS bootstrap writes (a 0600 temporary file renamed over it)",
            );
        }
    }
    if let Some(kubeconfig) = config.cluster.kubeconfig.as_deref() {
        r.read(kubeconfig, "the kubeconfig of cluster mode");
        for f in crate::apiclient::referenced_files(kubeconfig) {
            r.read(
                f,
                "a file the kubeconfig names (CA, client certificate, key, token)",
            );
        }
        for f in [
            "/etc/os-release",
            "/usr/lib/os-release",
            "/etc/machine-id",
            "/var/lib/dbus/machine-id",
            "/sys/class/dmi/id/product_uuid",
        ] {
            r.read(f, "node info reported to the API server");
        }
    }
    r.0
}

/// TCP ports the agent may bind.
pub fn bind_ports(config: &Config) -> Vec<u16> {
    let mut v = vec![config.port];
    if config.healthz_port != 0 {
        v.push(config.healthz_port);
    }
    v.sort_unstable();
    v.dedup();
    v
}

fn read_access() -> BitFlags<AccessFs> {
    AccessFs::ReadFile | AccessFs::ReadDir
}

fn write_access() -> BitFlags<AccessFs> {
    read_access()
        | AccessFs::WriteFile
        | AccessFs::RemoveDir
        | AccessFs::RemoveFile
        | AccessFs::MakeDir
        | AccessFs::MakeReg
        | AccessFs::Truncate
}

/// What the kernel enforced.
#[derive(Debug, Clone, Serialize)]
pub struct LandlockReport {
    /// The ABI the kernel offers (as far as the crate knows), 0 if none.
    pub kernel_abi: i32,
    /// full, partial or none.
    pub ruleset: String,
    pub rules: Vec<AppliedRule>,
    pub bind_ports: Vec<u16>,
    pub scoped: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppliedRule {
    #[serde(flatten)]
    pub rule: PathRule,
    /// False when the path did not exist at start (it stays unreachable).
    pub applied: bool,
}

/// Restricts the calling thread (and every thread and child it creates later).
pub fn restrict(rules: &[PathRule], ports: &[u16]) -> Result<LandlockReport, ConfineError> {
    let err = ConfineError::Landlock;
    let mut applied = Vec::new();
    let mut created = Ruleset::default()
        .handle_access(AccessFs::from_all(TARGET_ABI))
        .map_err(err)?
        .handle_access(AccessNet::BindTcp)
        .map_err(err)?
        .scope(Scope::from_all(TARGET_ABI))
        .map_err(err)?
        .create()
        .map_err(err)?;
    for rule in rules {
        let fd = match PathFd::new(&rule.path) {
            Ok(fd) => fd,
            Err(_) => {
                applied.push(AppliedRule {
                    rule: rule.clone(),
                    applied: false,
                });
                continue;
            }
        };
        let mut access = match rule.mode {
            Mode::Read => read_access(),
            Mode::ReadWrite => write_access(),
            Mode::ReadWriteLinks => write_access() | AccessFs::MakeSym,
        };
        if !rule.path.is_dir() {
            // Directory rights on a file are an error; keep the file ones.
            access &= AccessFs::from_file(TARGET_ABI);
        }
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(err)?;
        applied.push(AppliedRule {
            rule: rule.clone(),
            applied: true,
        });
    }
    for port in ports {
        created = created
            .add_rule(NetPort::new(*port, AccessNet::BindTcp))
            .map_err(err)?;
    }
    let status = created.restrict_self().map_err(err)?;
    let kernel_abi = match status.landlock {
        LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        } => kernel_abi.unwrap_or(effective_abi as i32),
        _ => 0,
    };
    Ok(LandlockReport {
        kernel_abi,
        ruleset: match status.ruleset {
            RulesetStatus::FullyEnforced => "full",
            RulesetStatus::PartiallyEnforced => "partial",
            RulesetStatus::NotEnforced => "none",
        }
        .into(),
        rules: applied,
        bind_ports: ports.to_vec(),
        scoped: vec!["abstract_unix_socket", "signal"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_follow_the_configuration() {
        let flags = crate::config::RunFlags {
            root_dir: Some("/srv/kubelet".into()),
            hostname_override: Some("n1".into()),
            ..Default::default()
        };
        let config = crate::config::Config::load(&flags).unwrap().config;
        let rules = fs_rules(&config, &[PathBuf::from("/sys/fs/cgroup/cpu/kubepods")]);
        let mode = |p: &str| {
            rules
                .iter()
                .find(|r| r.path == Path::new(p))
                .map(|r| r.mode)
        };
        assert_eq!(mode("/srv/kubelet"), Some(Mode::ReadWrite));
        assert_eq!(mode("/var/log/pods"), Some(Mode::ReadWrite));
        assert_eq!(mode("/sys/fs/cgroup/cpu/kubepods"), Some(Mode::ReadWrite));
        assert_eq!(mode("/proc"), Some(Mode::Read));
        assert_eq!(mode("/etc/resolv.conf"), Some(Mode::Read));
        assert_eq!(mode("/etc"), None);
        assert_eq!(mode("/"), None);
        assert!(rules.iter().all(|r| !r.reason.is_empty()));
        assert_eq!(bind_ports(&config), vec![10248, 10250]);
    }
}
