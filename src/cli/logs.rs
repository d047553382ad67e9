//! `ironlet logs POD [CONTAINER]`: prints a container's log from podLogsDir (the CRI log
//! files the runtime writes), found through the running agent's local view.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;

use super::RootDirArg;
use crate::crilog;
use crate::pod::cri_config::{container_log_path, pod_log_dir};
use crate::view;

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    pub root: RootDirArg,
    /// Namespace of the pod
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Print the log of the previous instance of the container
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Prefix each line with its timestamp
    #[arg(long)]
    pub timestamps: bool,
    /// Pod name (as `ironlet pods` shows it, or the manifest's name)
    pub pod: String,
    /// Container name (optional when the pod has one container)
    pub container: Option<String>,
}

fn find_pod<'a>(pods: &'a [Pod], namespace: &str, name: &str, node: &str) -> Option<&'a Pod> {
    let with_node = format!("{name}-{node}");
    let in_ns = |p: &&Pod| p.metadata.namespace.as_deref() == Some(namespace);
    pods.iter()
        .filter(in_ns)
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .or_else(|| {
            pods.iter()
                .filter(in_ns)
                .find(|p| p.metadata.name.as_deref() == Some(with_node.as_str()))
        })
}

/// The log file of a container, per upstream's layout.
pub fn log_file(args: &LogsArgs) -> anyhow::Result<PathBuf> {
    let root = &args.root.root_dir;
    let agent = view::read_agent(root)?;
    let list = view::read_pods(root)?;
    let pod = find_pod(&list.items, &args.namespace, &args.pod, &agent.node_name)
        .with_context(|| format!("pod {}/{} not found", args.namespace, args.pod))?;
    let spec = pod.spec.as_ref().context("pod has no spec")?;
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    let container = match (&args.container, names.as_slice()) {
        (Some(c), _) if names.contains(&c.as_str()) => c.clone(),
        (Some(c), _) => bail!(
            "container {c:?} not found; the pod has {}",
            names.join(", ")
        ),
        (None, [only]) => only.to_string(),
        (None, _) => bail!(
            "the pod has several containers; name one of: {}",
            names.join(", ")
        ),
    };
    let status = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == container));
    let restarts = status.map_or(0, |c| c.restart_count.max(0) as u32);
    let attempt = if args.previous {
        restarts
            .checked_sub(1)
            .with_context(|| format!("container {container:?} has no previous instance"))?
    } else {
        restarts
    };
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    Ok(pod_log_dir(&agent.pod_logs_dir, &args.namespace, name, uid)
        .join(container_log_path(&container, attempt)))
}

pub fn run(args: LogsArgs) -> anyhow::Result<()> {
    let path = log_file(&args)?;
    let data = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
    let mut out = std::io::stdout().lock();
    for line in crilog::parse_all(&data) {
        if args.timestamps {
            write!(out, "{} ", line.timestamp)?;
        }
        out.write_all(&line.content)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
