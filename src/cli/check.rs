//! `ironlet check`: the CIS self-audit of this node (see `crate::cis`). Prints kube-bench's
//! text, `--json` or `--junit`; exits 1 when a scored check fails (or `--exit-code N` when
//! any check fails, as kube-bench).

use std::path::PathBuf;

use super::RootDirArg;
use crate::cis;

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub root: RootDirArg,
    /// Judge this KubeletConfiguration file (overrides the agent's --config)
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Judge this kubeconfig (overrides the agent's --kubeconfig)
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubelet systemd unit or one of its drop-ins [default: the first of upstream's paths that exists]
    #[arg(long, value_name = "PATH")]
    pub service_file: Option<PathBuf>,
    /// Benchmark version, e.g. cis-1.12 [default: the newest]
    #[arg(long, value_name = "NAME")]
    pub benchmark: Option<String>,
    /// Run only these checks (comma-separated ids)
    #[arg(long, short = 'c', value_delimiter = ',', value_name = "IDS")]
    pub check: Vec<String>,
    /// Report these checks or groups as INFO without running them (comma-separated ids)
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub skip: Vec<String>,
    /// Exit with N when any check fails (kube-bench's flag); default: 1 when a scored check fails
    #[arg(long, value_name = "N")]
    pub exit_code: Option<i32>,
    /// kube-bench's JSON
    #[arg(long, conflicts_with = "junit")]
    pub json: bool,
    /// kube-bench's JUnit XML
    #[arg(long)]
    pub junit: bool,
}

/// Runs the audit; returns the exit code.
pub fn run(args: CheckArgs) -> anyhow::Result<i32> {
    let benchmark = cis::data::Benchmark::load(args.benchmark.as_deref())?;
    let target = cis::evidence::Target {
        root_dir: args.root.root_dir,
        config: args.config,
        kubeconfig: args.kubeconfig,
        service_file: args.service_file,
    };
    let ev = cis::evidence::gather(&target);
    let sel = cis::Selection {
        checks: args.check,
        skip: args.skip,
    };
    let report = cis::run(&benchmark, &ev, &sel)?;
    if args.json {
        println!("{}", report.json());
    } else if args.junit {
        print!("{}", report.junit());
    } else {
        print!("{}", report.text());
    }
    Ok(cis::exit_code(&report, args.exit_code))
}
