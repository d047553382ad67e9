//! What the checks judge, gathered once: the agent's command line (from /proc of the running
//! agent, or a systemd unit's ExecStart), the effective configuration loaded from it with
//! the same flag parser and loader as `ironlet run`, the raw file values of fields ironlet
//! accepts but does not honour, the files CIS 4.1 names, and whether an agent runs.

use std::path::{Path, PathBuf};

use clap::Parser;

use super::unit::{self, ServiceCommand};
use crate::config::{Config, ConfigError, Loaded, RunFlags};

/// Upstream's paths, used when nothing names the file (as kube-bench's defaults).
pub const DEFAULT_CONFIG: &str = "/var/lib/kubelet/config.yaml";
pub const DEFAULT_KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";
pub const DEFAULT_SERVICE_FILES: &[&str] = &[
    "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
    "/etc/systemd/system/kubelet.service",
    "/usr/lib/systemd/system/kubelet.service",
    "/lib/systemd/system/kubelet.service",
];
pub const DEFAULT_PROXY_KUBECONFIGS: &[&str] = &[
    "/etc/kubernetes/proxy.conf",
    "/etc/kubernetes/kubelet-kubeconfig",
    "/var/lib/kube-proxy/kubeconfig.conf",
    "/etc/kubernetes/ssl/kubecfg-kube-proxy.yaml",
];
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// What the operator asked to judge.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub root_dir: PathBuf,
    pub config: Option<PathBuf>,
    pub kubeconfig: Option<PathBuf>,
    pub service_file: Option<PathBuf>,
}

/// Where the command line came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgvSource {
    /// /proc/<pid>/cmdline of the running agent.
    Running { pid: u32 },
    /// ExecStart of a systemd unit and its drop-ins.
    Service { files: Vec<PathBuf> },
    /// Neither: only the files named on `ironlet check`'s command line or upstream's defaults.
    None,
}

/// The running agent, found from `<root-dir>/status/agent.json` and /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub pid: u32,
    pub root_dir: PathBuf,
}

/// The effective configuration, or why it does not load.
#[derive(Debug)]
pub enum Effective {
    Loaded(Box<Loaded>),
    /// The flags on the command line do not parse (clap's message).
    BadFlags(String),
    Refused(ConfigError),
    /// No running agent, no unit file and no configuration file: nothing to judge.
    Nothing,
}

#[derive(Debug)]
pub struct Evidence {
    pub argv_source: ArgvSource,
    /// The arguments after `run` (or after a `kubelet` argv[0]).
    pub args: Vec<String>,
    pub flags: Option<RunFlags>,
    pub effective: Effective,
    /// The config file as a document, for fields ironlet accepts but ignores.
    pub raw: Option<serde_json::Value>,
    pub agent: Option<Agent>,
    /// Why no running agent was found (for WARN reasons).
    pub no_agent: Option<String>,
    pub service: Result<ServiceCommand, String>,
    pub proxy_kubeconfig: Option<PathBuf>,
}

impl Evidence {
    pub fn config(&self) -> Option<&Config> {
        match &self.effective {
            Effective::Loaded(l) => Some(&l.config),
            _ => None,
        }
    }

    /// A value of the raw config file at a dotted path.
    pub fn raw_field(&self, path: &str) -> Option<&serde_json::Value> {
        path.split('.')
            .try_fold(self.raw.as_ref()?, |v, k| v.get(k))
    }

    /// Why configuration-based checks cannot be judged, if they cannot.
    pub fn config_problem(&self) -> Option<String> {
        match &self.effective {
            Effective::Loaded(_) => None,
            Effective::BadFlags(e) => Some(format!("the command line does not parse: {e}")),
            Effective::Refused(e) => Some(format!("the configuration does not load: {e}")),
            Effective::Nothing => Some(
                "nothing to judge: no running agent, no service file and no configuration file (give --root-dir, --service-file or --config)".into(),
            ),
        }
    }

    /// A description of the configuration evidence for `audit` fields.
    pub fn config_source(&self) -> String {
        let argv = match &self.argv_source {
            ArgvSource::Running { pid } => format!("argv of pid {pid} (/proc/{pid}/cmdline)"),
            ArgvSource::Service { files } => format!(
                "ExecStart of {}",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" + ")
            ),
            ArgvSource::None => "ironlet check's own flags".into(),
        };
        let file = self
            .flags
            .as_ref()
            .and_then(|f| f.config.as_ref())
            .map_or("no --config (built-in defaults)".into(), |p| {
                format!("--config {}", p.display())
            });
        format!("Config::load({argv}; {file})")
    }
}

/// The program arguments after the subcommand: `ironlet run ARGS` or `kubelet ARGS`.
pub fn run_args(argv: &[String]) -> Vec<String> {
    match argv.get(1).map(String::as_str) {
        Some("run") => argv[2..].to_vec(),
        _ => argv.get(1..).unwrap_or_default().to_vec(),
    }
}

/// Parses run arguments with the production parser: `ironlet run` as `cli::main` sees it.
pub fn parse_run_flags(args: &[String]) -> Result<RunFlags, String> {
    let argv = ["ironlet".to_owned(), "run".to_owned()]
        .into_iter()
        .chain(args.iter().cloned());
    match crate::cli::Cli::try_parse_from(argv) {
        Ok(crate::cli::Cli {
            command: crate::cli::Command::Run(f),
        }) => Ok(f.into_flags()),
        Ok(_) => Err("not a run command".into()),
        Err(e) => Err(e.to_string().lines().next().unwrap_or("").trim().to_owned()),
    }
}

fn read_cmdline(pid: u32) -> Result<Vec<String>, String> {
    let p = format!("/proc/{pid}/cmdline");
    let bytes = std::fs::read(&p).map_err(|e| format!("{p}: {e}"))?;
    Ok(bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

/// The agent that writes `root_dir`'s status files, if it is alive and is an ironlet `run`
/// (a recorded pid may have been reused).
fn find_agent(root_dir: &Path) -> Result<(Agent, Vec<String>), String> {
    let state = crate::view::read_agent(root_dir).map_err(|e| e.to_string())?;
    let argv = read_cmdline(state.pid)
        .map_err(|e| format!("agent pid {} is not running: {e}", state.pid))?;
    let exe = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
        .unwrap_or_default();
    let is_agent = (argv.get(1).map(String::as_str) == Some("run")) || exe == "kubelet";
    if !is_agent {
        return Err(format!(
            "pid {} from agent.json is not an ironlet agent ({exe})",
            state.pid
        ));
    }
    Ok((
        Agent {
            pid: state.pid,
            root_dir: root_dir.to_path_buf(),
        },
        argv,
    ))
}

fn read_raw(path: &Path) -> Option<serde_json::Value> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_CONFIG_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    serde_saphyr::from_str(&text).ok()
}

/// Gathers the evidence for `target`.
pub fn gather(target: &Target) -> Evidence {
    let service_path = target.service_file.clone().or_else(|| {
        DEFAULT_SERVICE_FILES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    });
    let service = match &service_path {
        Some(p) => unit::read_service(p).map_err(|e| e.to_string()),
        None => Err("no kubelet service file found (give --service-file)".into()),
    };
    let (agent, no_agent, argv_source, args) = match find_agent(&target.root_dir) {
        Ok((agent, argv)) => {
            let src = ArgvSource::Running { pid: agent.pid };
            (Some(agent), None, src, run_args(&argv))
        }
        Err(why) => match &service {
            Ok(cmd) => (
                None,
                Some(why),
                ArgvSource::Service {
                    files: cmd.files.clone(),
                },
                run_args(&cmd.argv),
            ),
            Err(_) => (None, Some(why), ArgvSource::None, Vec::new()),
        },
    };
    let parsed = parse_run_flags(&args);
    let (flags, effective) = match parsed {
        Ok(mut f) => {
            if let Some(c) = &target.config {
                f.config = Some(c.clone());
            }
            if let Some(k) = &target.kubeconfig {
                f.kubeconfig = Some(k.clone());
            }
            if argv_source == ArgvSource::None {
                if f.config.is_none() && Path::new(DEFAULT_CONFIG).exists() {
                    f.config = Some(DEFAULT_CONFIG.into());
                }
                if f.kubeconfig.is_none() && Path::new(DEFAULT_KUBECONFIG).exists() {
                    f.kubeconfig = Some(DEFAULT_KUBECONFIG.into());
                }
                if f.root_dir.is_none() {
                    f.root_dir = Some(target.root_dir.clone());
                }
            }
            let eff = match Config::load(&f) {
                Ok(l) => Effective::Loaded(Box::new(l)),
                Err(e) => Effective::Refused(e),
            };
            (Some(f), eff)
        }
        Err(e) => (None, Effective::BadFlags(e)),
    };
    // Without an agent, a unit or a file there is no configuration, only ironlet's defaults:
    // judging those would pass checks on a node that may not run ironlet at all.
    let nothing = argv_source == ArgvSource::None
        && flags
            .as_ref()
            .is_some_and(|f| f.config.is_none() && f.kubeconfig.is_none());
    let (flags, effective) = if nothing {
        (None, Effective::Nothing)
    } else {
        (flags, effective)
    };
    let raw = match (&effective, flags.as_ref().and_then(|f| f.config.as_deref())) {
        (Effective::Loaded(_), Some(p)) => read_raw(p),
        _ => None,
    };
    Evidence {
        argv_source,
        args,
        flags,
        effective,
        raw,
        agent,
        no_agent,
        service,
        proxy_kubeconfig: DEFAULT_PROXY_KUBECONFIGS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_agent_no_unit_no_file_judges_nothing() {
        let root = tempfile::tempdir().unwrap();
        let defaults_exist = Path::new(DEFAULT_CONFIG).exists()
            || Path::new(DEFAULT_KUBECONFIG).exists()
            || DEFAULT_SERVICE_FILES.iter().any(|p| Path::new(p).exists());
        if defaults_exist {
            return; // this machine has a kubelet's files; the case cannot be set up here
        }
        let ev = gather(&Target {
            root_dir: root.path().into(),
            ..Default::default()
        });
        assert!(
            matches!(ev.effective, Effective::Nothing),
            "{:?}",
            ev.effective
        );
        assert!(ev.flags.is_none() && ev.config().is_none());
        assert!(ev.config_problem().unwrap().contains("nothing to judge"));
    }

    #[test]
    fn run_args_of_both_spellings() {
        assert_eq!(
            run_args(&s(&["/usr/bin/ironlet", "run", "--config=/c"])),
            s(&["--config=/c"])
        );
        assert_eq!(
            run_args(&s(&["/usr/bin/kubelet", "--config=/c"])),
            s(&["--config=/c"])
        );
    }

    #[test]
    fn flags_parse_with_the_production_parser() {
        let f = parse_run_flags(&s(&[
            "--config",
            "/etc/c.yaml",
            "--hostname-override=n",
            "--insecure-disable-confinement",
        ]))
        .unwrap();
        assert_eq!(f.config, Some(PathBuf::from("/etc/c.yaml")));
        assert!(f.insecure_disable_confinement);
        // Upstream flags parse; their values are judged by Config::load.
        let f = parse_run_flags(&s(&["--read-only-port=10255"])).unwrap();
        assert!(
            f.upstream
                .given
                .iter()
                .any(|(spec, v)| spec.name == "read-only-port" && v == &["10255"])
        );
        let e = parse_run_flags(&s(&["--no-such-flag=1"])).unwrap_err();
        assert!(e.contains("--no-such-flag"), "{e}");
    }
}
