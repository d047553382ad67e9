//! `cargo bench --bench node [-- OPTIONS]`: ironlet against the real containerd, with a
//! minimal direct CRI client as the floor (issue 7).
//!
//! Phases, each on fresh project-owned containerd instances (`xtask::containerd`):
//! 1. latency: N pods (1, 10, 110) as static manifests written at once, and the same N
//!    pods through RunPodSandbox → CreateContainer → StartContainer directly.
//! 2. footprint: the agent's RSS and CPU idle and with N probed pods.
//! 3. pleg: relist p50/p99 with N pods, from the agent's `status/agent.json`.
//! 4. restart: SIGKILL and restart with N pods; adoption time, restarts, new sandboxes.
//! 5. probes: the probe scheduler's CPU per run with 100 and 1000 probes, and their ratio
//!    (in-process, no containerd).
//!
//! Writes `.state/bench/<timestamp>/{result.json,table.txt,latency.svg}` and prints the
//! table. Needs root (containerd, CNI) and what `cargo xtask up` installs.
//!
//! The root file is not `benches/node/main.rs` on purpose: Cargo would discover that as a
//! libtest bench before `harness = false` is declared for it.

mod fixture;
mod latency;
mod nodephase;
mod plot;
mod probeload;
mod procfs;
mod report;
mod stats;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Phase {
    Latency,
    Footprint,
    Pleg,
    Restart,
    Probes,
}

/// ironlet node benchmark: pod start latency against direct CRI calls, footprint, PLEG,
/// restart adoption.
#[derive(Parser, Debug)]
#[command(name = "node")]
struct Args {
    /// Pod counts for the start-latency phase [default: 1,10,110; 1,10 with --quick]
    #[arg(long, value_delimiter = ',')]
    pods: Option<Vec<usize>>,
    /// Short run (about 3 min): latency for 1 and 10 pods, node phases with 10 pods and
    /// short windows
    #[arg(long)]
    quick: bool,
    /// Phases to run
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "latency,footprint,pleg,restart,probes"
    )]
    phases: Vec<Phase>,
    /// Runs per pod count and path, each on fresh instances (samples are pooled; batch is
    /// the median) [default: 5 for 1 pod (3 with --quick), else 1]
    #[arg(long)]
    repeat: Option<usize>,
    /// Pods for the footprint, PLEG and restart phases [default: 110; 10 with --quick]
    #[arg(long)]
    node_pods: Option<usize>,
    /// Idle footprint window, seconds [default: 30; 10 with --quick]
    #[arg(long)]
    idle_secs: Option<u64>,
    /// Steady footprint window with pods, seconds [default: 60; 20 with --quick]
    #[arg(long)]
    steady_secs: Option<u64>,
    /// How long the agent runs with the pods before its relist figures are read, seconds;
    /// 105 s gives > 100 relists, so p99 is not simply the slowest one [default: 105; 20
    /// with --quick]
    #[arg(long)]
    pleg_secs: Option<u64>,
    /// How long each probe-scheduler run lasts, seconds [default: 10; 3 with --quick]
    #[arg(long)]
    probe_secs: Option<u64>,
    /// Output directory [default: <workspace>/.state/bench/<timestamp>]
    #[arg(long)]
    out: Option<PathBuf>,
    /// The ironlet source tree (for the commit in the result)
    #[arg(long, hide = true, default_value = env!("CARGO_MANIFEST_DIR"))]
    src_dir: PathBuf,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ironlet"));
    let q = args.quick;
    let pods = args
        .pods
        .clone()
        .unwrap_or_else(|| if q { vec![1, 10] } else { vec![1, 10, 110] });
    let node_pods = args.node_pods.unwrap_or(if q { 10 } else { 110 });
    let idle = args.idle_secs.unwrap_or(if q { 10 } else { 30 });
    let steady = args.steady_secs.unwrap_or(if q { 20 } else { 60 });
    let pleg = args.pleg_secs.unwrap_or(if q { 20 } else { 105 });
    let probe_secs = args.probe_secs.unwrap_or(if q { 3 } else { 10 });
    let has = |p: Phase| args.phases.contains(&p);

    let started = jiff::Timestamp::now();
    let clock = Instant::now();
    let out = args.out.clone().unwrap_or_else(|| {
        args.src_dir
            .join(".state/bench")
            .join(started.strftime("%Y%m%dT%H%M%SZ").to_string())
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut machine = report::Machine::collect(&args.src_dir, &bin);
    println!(
        "ironlet bench: {} ({}), results in {}",
        machine.ironlet_commit,
        machine.build_profile,
        out.display()
    );

    let mut rows = Vec::new();
    if has(Phase::Latency) {
        for &n in &pods {
            let (mut i, mut d) = (Vec::new(), Vec::new());
            let repeat = args.repeat.unwrap_or(if n > 1 {
                1
            } else if q {
                3
            } else {
                5
            });
            for k in 0..repeat {
                println!("latency: {n} pod(s) through ironlet (run {})", k + 1);
                let prefix = format!("latency-{n}-run{}", k + 1);
                i.push(latency::ironlet_run(&bin, n, &out, &prefix).await?);
                println!(
                    "latency: {n} pod(s) through direct CRI calls (run {})",
                    k + 1
                );
                d.push(latency::direct_run(&bin, n).await?);
            }
            let row = report::LatencyRow::of(n, &i, &d);
            println!(
                "  p50 ironlet {:.3} s, direct {:.3} s; batch ironlet {:.3} s, direct {:.3} s",
                row.ironlet.p50_s, row.direct.p50_s, row.ironlet_batch_s, row.direct_batch_s
            );
            rows.push(row);
        }
    }

    let node = if has(Phase::Footprint) || has(Phase::Pleg) || has(Phase::Restart) {
        println!("node phases with {node_pods} pods");
        let o = nodephase::Options {
            pods: node_pods,
            idle: Duration::from_secs(idle),
            steady: Duration::from_secs(steady),
            pleg_after: Duration::from_secs(pleg),
            footprint: has(Phase::Footprint),
            pleg: has(Phase::Pleg),
            restart: has(Phase::Restart),
        };
        Some(nodephase::run(&bin, &o, &out).await?)
    } else {
        None
    };

    let probes = if has(Phase::Probes) {
        Some(probeload::run(Duration::from_secs(probe_secs))?)
    } else {
        None
    };

    machine.loadavg_end = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string();
    let targets = report::targets(&rows, node.as_ref(), probes.as_ref());
    let r = report::Report {
        started: started.to_string(),
        duration_s: clock.elapsed().as_secs_f64(),
        machine,
        params: report::Params {
            command: std::env::args().skip(1).collect(),
            quick: q,
            phases: args
                .phases
                .iter()
                .map(|p| format!("{p:?}").to_lowercase())
                .collect(),
            latency_pods: pods,
            repeat: args.repeat,
            node_pods,
            idle_s: idle,
            steady_s: steady,
            pleg_s: pleg,
            probe_s: probe_secs,
            poll_ms: latency::POLL.as_millis() as u64,
        },
        latency: rows,
        node,
        probes,
        targets,
    };
    write_outputs(&out, &r)
}

fn write_outputs(out: &Path, r: &report::Report) -> Result<()> {
    let table = report::table(r);
    print!("\n{table}");
    std::fs::write(out.join("table.txt"), &table)?;
    std::fs::write(out.join("result.json"), serde_json::to_vec_pretty(r)?)?;
    if !r.latency.is_empty() {
        std::fs::write(out.join("latency.svg"), plot::latency_svg(&r.latency))?;
    }
    println!(
        "\nwritten: {}/{{result.json,table.txt{}}}",
        out.display(),
        if r.latency.is_empty() {
            ""
        } else {
            ",latency.svg"
        }
    );
    Ok(())
}
