//! `ironlet confinement`: how the running agent is confined, read from /proc and the
//! agent's record. `ironlet confinement probe` (hidden) applies the agent's plan to itself
//! and tries what must fail. `ironlet mount-helper` (hidden) is the privileged helper the
//! agent starts for itself.

use std::path::PathBuf;

use super::RootDirArg;
use crate::config::{Config, RunFlags};
use crate::confine;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ConfinementArgs {
    #[command(subcommand)]
    pub probe: Option<ProbeCommand>,
    #[command(flatten)]
    pub root: RootDirArg,
    /// Output format: table (default) or json
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
}

#[derive(clap::Subcommand, Debug)]
pub enum ProbeCommand {
    /// Apply the agent's confinement plan to this process and try forbidden actions.
    #[command(hide = true)]
    Probe(ProbeArgs),
}

#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub run: RunFlags,
    /// Finally make a system call that no policy lists (the default action applies).
    #[arg(long)]
    pub unlisted: bool,
}

#[derive(clap::Args, Debug)]
pub struct MountHelperArgs {
    /// The agent's pods directory (<root-dir>/pods)
    #[arg(long, value_name = "DIR")]
    pub pods_dir: PathBuf,
    /// text or json: the agent's log format (they share stderr)
    #[arg(long, default_value = "text")]
    pub log_format: String,
}

pub fn run(args: ConfinementArgs) -> anyhow::Result<()> {
    if let Some(ProbeCommand::Probe(p)) = args.probe {
        return probe(p);
    }
    let report = confine::inspect::report(&args.root.root_dir)?;
    match args.output.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&report)?),
        "table" => print!("{}", confine::inspect::render(&report)),
        other => anyhow::bail!("--output {other:?}: expected table or json"),
    }
    if report.problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("the agent is not fully confined")
    }
}

fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.run)?.config;
    let outcomes = confine::probe::run(&config, args.unlisted)?;
    let mut failed = 0;
    for o in &outcomes {
        println!("{}", serde_json::to_string(o)?);
        if !o.ok {
            failed += 1;
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} confinement checks failed");
    }
    Ok(())
}

pub fn mount_helper(args: MountHelperArgs) -> anyhow::Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    let _ = match args.log_format.as_str() {
        "json" => builder.json().flatten_event(true).try_init(),
        _ => builder.with_ansi(false).try_init(),
    };
    confine::helper::main(&args.pods_dir)
}
