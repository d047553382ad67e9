//! The command line: one file per subcommand. Library code below returns typed errors;
//! these functions are the edge where they become messages and exit codes.

pub mod check;
pub mod confinement;
pub mod logs;
pub mod pods;
pub mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{DEFAULT_ROOT_DIR, RunFlags};

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
    /// Run the node agent.
    Run(RunFlags),
    /// List the running agent's pods, like `kubectl get pods`.
    Pods(pods::PodsArgs),
    /// Print a container's log.
    Logs(logs::LogsArgs),
    /// Show how the running agent is confined (capabilities, NoNewPrivs, seccomp,
    /// landlock, mount helper).
    Confinement(confinement::ConfinementArgs),
    /// Audit this node against the CIS benchmark (kube-bench compatible output).
    Check(check::CheckArgs),
    /// The privileged mount helper; started by the agent itself.
    #[command(hide = true)]
    MountHelper(confinement::MountHelperArgs),
}

/// The `--root-dir` the read-only commands look at.
#[derive(clap::Args, Debug, Clone)]
pub struct RootDirArg {
    /// The agent's --root-dir
    #[arg(long, value_name = "DIR", default_value = DEFAULT_ROOT_DIR)]
    pub root_dir: PathBuf,
}

/// Parses the command line and runs the subcommand; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(flags) => run::run(flags),
        Command::Pods(args) => pods::run(args),
        Command::Logs(args) => logs::run(args),
        Command::Confinement(args) => confinement::run(args),
        Command::MountHelper(args) => confinement::mount_helper(args),
        Command::Check(args) => return exit_of(check::run(args)),
    };
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
