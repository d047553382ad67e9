//! The command line: one file per subcommand. Library code below returns typed errors;
//! these functions are the edge where they become messages and exit codes.

pub mod certs;
pub mod confinement;
pub mod drill;
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
    /// The node's certificates: status, and a development PKI.
    Certs(certs::CertsArgs),
    /// Drills against a running node (cert-rotation).
    Drill(drill::DrillArgs),
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
        Command::Certs(args) => certs::run(args),
        Command::Drill(args) => drill::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ironlet: {e:#}");
            1
        }
    }
}
