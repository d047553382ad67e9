//! The command line: one file per subcommand. Library code below returns typed errors;
//! these functions are the edge where they become messages and exit codes.

pub mod audit;
pub mod certs;
pub mod check;
pub mod confinement;
pub mod drill;
pub mod logs;
pub mod pods;
pub mod run;
pub mod version;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{DEFAULT_ROOT_DIR, RunArgs};

#[derive(Parser, Debug)]
#[command(
    name = "ironlet",
    version,
    about = "A hardening-first Kubernetes node agent"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the node agent (upstream kubelet flags are accepted; see README).
    Run(RunArgs),
    /// List the running agent's pods, like `kubectl get pods`.
    Pods(pods::PodsArgs),
    /// Print a container's log.
    Logs(logs::LogsArgs),
    /// Show how the running agent is confined (capabilities, NoNewPrivs, seccomp,
    /// landlock, mount helper).
    Confinement(confinement::ConfinementArgs),
    /// Print ironlet's version, the Kubernetes version it implements, the git commit and
    /// the build profile.
    Version(version::VersionArgs),
    /// The node's certificates: status, and a development PKI.
    Certs(certs::CertsArgs),
    /// Drills against a running node (cert-rotation).
    Drill(drill::DrillArgs),
    /// Audit this node against the CIS benchmark (kube-bench compatible output).
    Check(check::CheckArgs),
    /// The privileged mount helper; started by the agent itself.
    #[command(hide = true)]
    MountHelper(confinement::MountHelperArgs),
    /// The kubelet API audit log: `ironlet audit verify FILE...` checks its hash chain.
    Audit(audit::AuditArgs),
}

/// The `--root-dir` the read-only commands look at.
#[derive(clap::Args, Debug, Clone)]
pub struct RootDirArg {
    /// The agent's --root-dir
    #[arg(long, value_name = "DIR", default_value = DEFAULT_ROOT_DIR)]
    pub root_dir: PathBuf,
}

/// The binary invoked as `kubelet` (a symlink or copy named so): upstream's command line,
/// `kubelet [flags]`, behaving as `ironlet run`.
#[derive(Parser, Debug)]
#[command(
    name = "kubelet",
    about = "ironlet as a drop-in kubelet: the upstream command line, behaving as `ironlet run`",
    disable_version_flag = true
)]
pub struct KubeletCli {
    #[command(flatten)]
    pub run: RunArgs,
}

/// Whether argv[0] names the kubelet (`kubelet`, `/usr/bin/kubelet`).
pub fn invoked_as_kubelet(argv0: &std::ffi::OsStr) -> bool {
    std::path::Path::new(argv0)
        .file_name()
        .is_some_and(|n| n == "kubelet")
}

fn run_upstream(args: RunArgs) -> anyhow::Result<()> {
    let flags = args.into_flags();
    if let Some(form) = flags.upstream.version()
        && version::print_kubelet_version(form)?
    {
        return Ok(());
    }
    run::run(flags)
}

/// Parses the command line and runs the subcommand; returns the process exit code.
pub fn main() -> i32 {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if invoked_as_kubelet(&argv0) {
        let cli = KubeletCli::parse();
        return exit_code(run_upstream(cli.run));
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run_upstream(args),
        Command::Version(args) => version::run(args),
        Command::Pods(args) => pods::run(args),
        Command::Logs(args) => logs::run(args),
        Command::Confinement(args) => confinement::run(args),
        Command::MountHelper(args) => confinement::mount_helper(args),
        Command::Audit(args) => audit::run(args),
        Command::Certs(args) => certs::run(args),
        Command::Drill(args) => drill::run(args),
        Command::Check(args) => return exit_of(check::run(args)),
    };
    exit_code(result)
}

fn exit_code(result: anyhow::Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ironlet: {e:#}");
            1
        }
    }
}

/// `ironlet check` chooses its own exit code.
fn exit_of(result: anyhow::Result<i32>) -> i32 {
    result.unwrap_or_else(|e| {
        eprintln!("ironlet: {e:#}");
        2
    })
}
