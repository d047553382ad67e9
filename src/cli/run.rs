//! `ironlet run`: load and validate the configuration, then run the agent until SIGTERM or
//! SIGINT. Stopping the agent leaves pods running.

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::config::Config;
use crate::config::RunFlags;

/// klog-style verbosity to a tracing level; `RUST_LOG` overrides it.
fn init_logging(v: u8) {
    let level = match v {
        0..=2 => "info",
        3..=5 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},h2=info,tower=info,hyper_util=info")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub fn run(flags: RunFlags) -> anyhow::Result<()> {
    init_logging(flags.v);
    let loaded = Config::load(&flags)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let config = loaded.config;
    // The one confinement point: the process still has a single thread, and nothing has
    // bound a port or read untrusted input yet.
    // Read before confinement: landlock grants no /sys/module afterwards.
    let host_apparmor = crate::pod::security::host_apparmor_enabled();
    crate::confine::apply(&config, flags.insecure_disable_confinement)?;
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
        crate::agent::run(config, host_apparmor, shutdown).await
    })
}
