//! `ironlet run`: load and validate the configuration, then run the agent until SIGTERM or
//! SIGINT. Stopping the agent leaves pods running.

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::config::RunFlags;
use crate::config::{Config, LogFormat};

/// klog-style verbosity to a tracing level; `RUST_LOG` overrides it. `json` writes one JSON
/// object per line (upstream's `--logging-format=json`): ts, level, target, fields.
fn init_logging(v: u8, format: LogFormat) {
    let level = match v {
        0..=2 => "info",
        3..=5 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},h2=info,tower=info,hyper_util=info")));
    crate::config::node::set_process_log_format(format);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The host checks upstream's container manager makes at startup, before confinement.
fn check_host(config: &Config, flags: &RunFlags) -> anyhow::Result<()> {
    let proc_root = match &flags.insecure_proc_root {
        Some(dir) => {
            tracing::warn!(dir = %dir.display(), "INSECURE: --insecure-proc-root: host checks read a test fixture, not /proc");
            dir.clone()
        }
        None => "/proc".into(),
    };
    if config.node.protect_kernel_defaults {
        crate::node::host::check_kernel_defaults(&proc_root)?;
    }
    if config.node.fail_swap_on {
        crate::node::host::check_swap(&proc_root)?;
    }
    Ok(())
}

/// enforceNodeAllocatable kube-reserved / system-reserved: the reserved cgroups lie outside
/// the kubepods subtree that confinement leaves writable, so they are limited here, once,
/// before confinement (upstream also enforces them at startup).
fn enforce_reserved_cgroups(config: &Config) -> anyhow::Result<()> {
    let na = &config.node.node_allocatable;
    if na.kube_reserved_cgroup.is_none() && na.system_reserved_cgroup.is_none() {
        return Ok(());
    }
    let cgroups = crate::resources::PodCgroups::new(
        crate::resources::Hierarchy::detect(),
        crate::resources::CgroupLayout::new(&config.cgroup_root, config.cgroups_per_qos)?,
    );
    for (field, cgroup, reserved) in [
        (
            "kubeReservedCgroup",
            &na.kube_reserved_cgroup,
            &config.cluster.kube_reserved,
        ),
        (
            "systemReservedCgroup",
            &na.system_reserved_cgroup,
            &config.cluster.system_reserved,
        ),
    ] {
        if let Some(c) = cgroup {
            let limits = crate::resources::allocatable::reserved_cgroup_limits(reserved);
            cgroups
                .enforce_reserved(c, &limits)
                .with_context(|| format!("enforceNodeAllocatable: {field} {c:?}"))?;
            tracing::info!(cgroup = %c, ?limits, "reservation enforced");
        }
    }
    Ok(())
}

pub fn run(flags: RunFlags) -> anyhow::Result<()> {
    let loaded = match Config::load(&flags) {
        Ok(l) => l,
        Err(e) => {
            init_logging(flags.v, LogFormat::Text);
            return Err(e.into());
        }
    };
    init_logging(loaded.config.verbosity, loaded.config.node.log_format);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let config = loaded.config;
    check_host(&config, &flags)?;
    enforce_reserved_cgroups(&config)?;
    // Before confinement (seccomp lists no prlimit64): soft fd limit up to the hard one.
    match crate::sys::raise_nofile_limit() {
        Ok((old, new)) if old != new => tracing::info!(old, new, "raised the soft RLIMIT_NOFILE"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the soft RLIMIT_NOFILE"),
    }
    // The cert dir must exist before confinement: landlock grants it by path.
    if config.cluster.kubeconfig.is_some() {
        crate::tls::store::prepare_dir(&config.certificates.cert_dir)?;
    }
    // The one confinement point: the process still has a single thread, and nothing has
    // bound a port or read untrusted input yet.
    // Read before confinement: landlock grants no /sys/module afterwards.
    let host_apparmor = crate::pod::security::host_apparmor_enabled();
    let (_, helper) = crate::confine::apply(&config, flags.insecure_disable_confinement)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let shutdown = async {
            use tokio::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => std::future::pending::<()>().await,
            }
        };
        crate::agent::run(config, host_apparmor, helper, shutdown).await
    })
}
