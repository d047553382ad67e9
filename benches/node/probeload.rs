//! Phase `probes`: what the probe scheduler costs per probe run with 100 and with 1000
//! probes (period 1 s), TCP probes against a local listener and exec probes answered at
//! once by an in-process runtime (the scheduler's own cost, without sockets). The figure
//! that matters is the ratio of CPU per run at 1000 to CPU per run at 100: a flat cost as
//! probes grow is 1. Needs neither root nor containerd.
//!
//! CPU time is that of the measuring runtime's own threads, from /proc/self/task (the
//! bench's other threads are idle meanwhile), in USER_HZ ticks.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::future::BoxFuture;
use ironlet::probe::{Exec, ExecResult, ProbeKey, ProbeKind, ProbeManager, Target};
use k8s_openapi::api::core::v1::{ExecAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use crate::procfs;

/// The probe counts compared.
pub const COUNTS: [usize; 2] = [100, 1000];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    Tcp,
    InstantExec,
}

/// One run of `probes` probes for `window_s`.
#[derive(Debug, Serialize)]
pub struct Run {
    pub kind: Kind,
    pub probes: usize,
    pub window_s: f64,
    pub runs: u64,
    pub runtime_cpu_ms: f64,
    pub cpu_us_per_run: f64,
    pub tasks_spawned_per_probe_per_s: f64,
    pub max_alive_tasks: usize,
}

/// Both kinds at both counts, and the cost ratios.
#[derive(Debug, Serialize)]
pub struct Results {
    pub runs: Vec<Run>,
    /// CPU per run at 1000 probes over CPU per run at 100, per kind.
    pub ratio_tcp: Option<f64>,
    pub ratio_exec: Option<f64>,
}

/// Answers every exec probe at once with exit code 0.
struct InstantExec;

impl Exec for InstantExec {
    fn exec_sync(&self, _: &str, _: Vec<String>, _: Duration) -> BoxFuture<'_, ExecResult> {
        Box::pin(async { Ok((0, Vec::new(), Vec::new())) })
    }
}

pub fn run(window: Duration) -> Result<Results> {
    let mut runs = Vec::new();
    for kind in [Kind::Tcp, Kind::InstantExec] {
        for n in COUNTS {
            println!("probes: {n} {kind:?} probes for {window:?}");
            // Its own OS thread: the measured runtime cannot be started inside the bench's.
            let r = std::thread::spawn(move || measure(kind, n, window))
                .join()
                .map_err(|_| anyhow::anyhow!("the probe load thread panicked"))??;
            println!(
                "  {} runs, {:.0} us CPU per run, {:.2} tasks/s per probe, max alive tasks {}",
                r.runs, r.cpu_us_per_run, r.tasks_spawned_per_probe_per_s, r.max_alive_tasks
            );
            runs.push(r);
        }
    }
    let ratio = |kind: Kind| {
        let per_run = |n: usize| {
            runs.iter()
                .find(|r| r.kind == kind && r.probes == n)
                .map(|r| r.cpu_us_per_run)
                .filter(|v| *v > 0.0)
        };
        Some(per_run(COUNTS[1])? / per_run(COUNTS[0])?)
    };
    Ok(Results {
        ratio_tcp: ratio(Kind::Tcp),
        ratio_exec: ratio(Kind::InstantExec),
        runs,
    })
}

fn current_tid() -> Option<u32> {
    std::fs::read_link("/proc/thread-self")
        .ok()?
        .file_name()?
        .to_str()?
        .parse()
        .ok()
}

fn threads_ticks(tids: &[u32]) -> u64 {
    tids.iter().filter_map(|t| procfs::task_cpu_ticks(*t)).sum()
}

fn measure(kind: Kind, n: usize, window: Duration) -> Result<Run> {
    // The TCP target accepts and drops connections on its own OS thread.
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the probe target")?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                drop(conn);
            }
        })
    };
    let tids = Arc::new(Mutex::new(Vec::new()));
    let runtime = {
        let tids = tids.clone();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                if let (Some(t), Ok(mut v)) = (current_tid(), tids.lock()) {
                    v.push(t);
                }
            })
            .build()?
    };
    let result = runtime.block_on(async {
        let (manager, _updates) = ProbeManager::new(Arc::new(InstantExec));
        let probe = match kind {
            Kind::Tcp => Probe {
                tcp_socket: Some(TCPSocketAction {
                    host: None,
                    port: IntOrString::Int(i32::from(addr.port())),
                }),
                period_seconds: Some(1),
                ..Default::default()
            },
            Kind::InstantExec => Probe {
                exec: Some(ExecAction {
                    command: Some(vec!["true".into()]),
                }),
                period_seconds: Some(1),
                ..Default::default()
            },
        };
        let target = Target {
            pod_ip: "127.0.0.1".into(),
            container_id: "c".into(),
            container: Default::default(),
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let tids_now = || tids.lock().map(|v| v.clone()).unwrap_or_default();
        let cpu0 = threads_ticks(&tids_now());
        let started = Instant::now();
        for i in 0..n {
            let key = ProbeKey {
                pod_uid: format!("pod-{i}"),
                container: "app".into(),
                kind: ProbeKind::Readiness,
            };
            if let Err(e) = manager.add(key, probe.clone(), target.clone(), started) {
                bail!("adding probe {i}: {e}");
            }
        }
        let metrics = tokio::runtime::Handle::current().metrics();
        let mut max_alive = 0;
        while started.elapsed() < window {
            max_alive = max_alive.max(metrics.num_alive_tasks());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let runs: u64 = manager.counts().iter().map(|(_, c)| c.successful).sum();
        let cpu_ms = threads_ticks(&tids_now()).saturating_sub(cpu0) as f64 * 1000.0
            / procfs::clock_ticks_per_second();
        Ok(Run {
            kind,
            probes: n,
            window_s: elapsed,
            runs,
            runtime_cpu_ms: cpu_ms,
            cpu_us_per_run: cpu_ms * 1000.0 / runs.max(1) as f64,
            tasks_spawned_per_probe_per_s: manager.stats().executions_spawned as f64
                / elapsed
                / n as f64,
            max_alive_tasks: max_alive,
        })
    });
    drop(runtime);
    stop.store(true, Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(addr);
    let _ = server.join();
    result
}
