//! result.json and the readable table: the figures, the machine they came from and the
//! issue's targets next to them.

use std::fmt::Write;
use std::process::Command;

use serde::Serialize;

use crate::latency::Run;
use crate::nodephase;
use crate::probeload;
use crate::stats::{Summary, ratio};

#[derive(Debug, Serialize)]
pub struct Report {
    pub started: String,
    pub duration_s: f64,
    pub machine: Machine,
    pub params: Params,
    pub latency: Vec<LatencyRow>,
    pub node: Option<nodephase::Results>,
    pub probes: Option<probeload::Results>,
    pub targets: Vec<Target>,
}

#[derive(Debug, Serialize)]
pub struct Params {
    pub command: Vec<String>,
    pub quick: bool,
    pub phases: Vec<String>,
    pub latency_pods: Vec<usize>,
    /// None: 5 runs for 1 pod (3 with --quick), 1 run otherwise.
    pub repeat: Option<usize>,
    pub node_pods: usize,
    pub idle_s: u64,
    pub steady_s: u64,
    pub pleg_s: u64,
    pub probe_s: u64,
    pub poll_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub mem_total_kib: Option<u64>,
    pub cpu_model: Option<String>,
    pub kernel: String,
    pub containerd_version: String,
    pub ironlet_commit: String,
    /// The working tree had uncommitted changes (the binary is built from them).
    pub ironlet_tree_dirty: bool,
    pub build_profile: String,
    pub debug_assertions: bool,
    pub ironlet_binary: String,
    pub loadavg_start: String,
    pub loadavg_end: String,
}

impl Machine {
    pub fn collect(src: &std::path::Path, bin: &std::path::Path) -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let meminfo = read("/proc/meminfo");
        let cpuinfo = read("/proc/cpuinfo");
        let git = |args: &[&str]| {
            Command::new("git")
                .arg("-C")
                .arg(src)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            mem_total_kib: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok()),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            containerd_version: Command::new("containerd")
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default(),
            ironlet_commit: git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into()),
            ironlet_tree_dirty: git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty()),
            build_profile: build_profile(),
            debug_assertions: cfg!(debug_assertions),
            ironlet_binary: bin.display().to_string(),
            loadavg_start: read("/proc/loadavg").trim().to_string(),
            loadavg_end: String::new(),
        }
    }
}

/// The cargo profile directory this bench was built into (`target/<profile>/deps/node-*`).
fn build_profile() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| {
            let deps = p.parent()?;
            Some(deps.parent()?.file_name()?.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

#[derive(Debug, Serialize)]
pub struct LatencyRow {
    pub pods: usize,
    pub runs: usize,
    /// Observed through the CRI poller: what the issue compares.
    pub ironlet: Summary,
    pub direct: Summary,
    /// The direct client's own view: StartContainer returned.
    pub direct_start_returned: Summary,
    /// The runtime's `startedAt` of each container (no polling granularity).
    pub ironlet_runtime_started: Summary,
    pub direct_runtime_started: Summary,
    /// Median over runs of the time until the last of N pods ran.
    pub ironlet_batch_s: f64,
    pub direct_batch_s: f64,
    pub ratio_p50: Option<f64>,
    pub ratio_p99: Option<f64>,
    pub ratio_batch: Option<f64>,
    pub ratio_p50_runtime_started: Option<f64>,
    pub ironlet_missing: usize,
    pub direct_missing: usize,
    pub ironlet_teardown_s: f64,
    pub direct_teardown_s: f64,
    /// p50 of each stage of a pod's start (ironlet from its own log lines).
    pub ironlet_stages_p50_s: Vec<(String, f64)>,
    pub direct_stages_p50_s: Vec<(String, f64)>,
}

/// p50 per stage, samples pooled over runs.
fn stage_p50(runs: &[Run]) -> Vec<(String, f64)> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .stages
        .iter()
        .enumerate()
        .map(|(k, st)| {
            let all: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.stages.get(k))
                .flat_map(|s| s.samples_s.iter().copied())
                .collect();
            (st.name.to_string(), median(all))
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    crate::stats::quantile(&v, 0.5)
}

impl LatencyRow {
    pub fn of(pods: usize, ironlet: &[Run], direct: &[Run]) -> LatencyRow {
        let all = |runs: &[Run], f: fn(&Run) -> &Vec<f64>| {
            Summary::of(
                &runs
                    .iter()
                    .flat_map(|r| f(r).iter().copied())
                    .collect::<Vec<_>>(),
            )
        };
        let i = all(ironlet, |r| &r.observed_s);
        let d = all(direct, |r| &r.observed_s);
        let ir = all(ironlet, |r| &r.runtime_started_s);
        let dr = all(direct, |r| &r.runtime_started_s);
        let ib = median(ironlet.iter().map(|r| r.batch_s).collect());
        let db = median(direct.iter().map(|r| r.batch_s).collect());
        LatencyRow {
            pods,
            runs: ironlet.len(),
            ratio_p50: ratio(i.p50_s, d.p50_s),
            ratio_p99: ratio(i.p99_s, d.p99_s),
            ratio_batch: ratio(ib, db),
            ratio_p50_runtime_started: ratio(ir.p50_s, dr.p50_s),
            ironlet: i,
            direct: d,
            direct_start_returned: all(direct, |r| &r.start_returned_s),
            ironlet_runtime_started: ir,
            direct_runtime_started: dr,
            ironlet_batch_s: ib,
            direct_batch_s: db,
            ironlet_missing: ironlet.iter().map(|r| r.missing).sum(),
            direct_missing: direct.iter().map(|r| r.missing).sum(),
            ironlet_teardown_s: median(ironlet.iter().map(|r| r.teardown_s).collect()),
            direct_teardown_s: median(direct.iter().map(|r| r.teardown_s).collect()),
            ironlet_stages_p50_s: stage_p50(ironlet),
            direct_stages_p50_s: stage_p50(direct),
        }
    }
}

/// One of the aims next to the measured value.
#[derive(Debug, Serialize)]
pub struct Target {
    pub what: String,
    pub aim: String,
    pub value: Option<f64>,
    pub met: Option<bool>,
}

fn target(what: String, aim: &str, value: Option<f64>, ok: impl Fn(f64) -> bool) -> Target {
    Target {
        what,
        aim: aim.into(),
        value,
        met: value.map(ok),
    }
}

pub fn targets(
    latency: &[LatencyRow],
    node: Option<&nodephase::Results>,
    probes: Option<&probeload::Results>,
) -> Vec<Target> {
    let mut t = Vec::new();
    if let Some(p) = probes {
        let [few, many] = probeload::COUNTS;
        t.push(target(
            format!("probe scheduler CPU per run, {many} vs {few} exec probes"),
            "<= 1.50",
            p.ratio_exec,
            |v| v <= 1.50,
        ));
        t.push(target(
            format!("probe scheduler CPU per run, {many} vs {few} TCP probes"),
            "<= 1.50",
            p.ratio_tcp,
            |v| v <= 1.50,
        ));
    }
    for r in latency {
        t.push(target(
            format!("start latency ratio p50, {} pods", r.pods),
            "<= 1.10",
            r.ratio_p50,
            |v| v <= 1.10,
        ));
    }
    if let Some(r) = latency.iter().max_by_key(|r| r.pods) {
        t.push(target(
            format!("start latency ratio, batch of {}", r.pods),
            "<= 1.25",
            r.ratio_batch,
            |v| v <= 1.25,
        ));
    }
    if let Some(n) = node {
        let steady = n.steady.as_ref();
        t.push(target(
            format!("RSS (max) with {} pods, MiB", n.pods),
            "<= 40",
            steady.map(|w| w.rss_mib_max),
            |v| v <= 40.0,
        ));
        t.push(target(
            format!("CPU with {} pods, % of one core", n.pods),
            "<= 2",
            steady.map(|w| w.cpu_percent_of_one_core),
            |v| v <= 2.0,
        ));
        t.push(target(
            format!("PLEG relist p99 with {} pods, ms", n.pods),
            "<= 20",
            n.pleg.as_ref().map(|p| p.relist_p99_ms),
            |v| v <= 20.0,
        ));
        if let Some(r) = &n.restart {
            t.push(target(
                format!("containers restarted after agent restart, {} pods", n.pods),
                "== 0",
                Some(r.containers_restarted as f64),
                |v| v == 0.0,
            ));
            t.push(target(
                format!("sandboxes created after agent restart, {} pods", n.pods),
                "== 0",
                Some(r.sandboxes_created as f64),
                |v| v == 0.0,
            ));
        }
    }
    t
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.prec$}"))
}

pub fn table(r: &Report) -> String {
    let m = &r.machine;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "ironlet node bench {}  ({:.0} s)\nironlet {}{}  profile {}  binary {}\nmachine: {} cpus ({}), {:.1} GiB, kernel {}, {}\nload average at start: {}  at end: {}",
        r.started,
        r.duration_s,
        m.ironlet_commit,
        if m.ironlet_tree_dirty {
            " (+ uncommitted changes)"
        } else {
            ""
        },
        m.build_profile,
        m.ironlet_binary,
        m.nproc,
        m.cpu_model.as_deref().unwrap_or("?"),
        m.mem_total_kib.unwrap_or(0) as f64 / 1024.0 / 1024.0,
        m.kernel,
        m.containerd_version,
        m.loadavg_start,
        m.loadavg_end,
    );
    if !r.latency.is_empty() {
        let _ = writeln!(
            s,
            "\nPod start latency, seconds (per pod: manifest write [ironlet] or task start [direct CRI]\n\
             to sandbox ready + container running, as seen by a CRI poller every {} ms)",
            r.params.poll_ms
        );
        let _ = writeln!(
            s,
            "{:>5} | {:>16} {:>7} | {:>16} {:>7} | {:>10} | {:>13} | {:>9}",
            "pods",
            "ironlet p50/p99",
            "batch",
            "direct p50/p99",
            "batch",
            "StartCtr",
            "ratio p50/p99",
            "ratio bat"
        );
        for l in &r.latency {
            let _ = writeln!(
                s,
                "{:>5} | {:>7.3} {:>8.3} {:>7.3} | {:>7.3} {:>8.3} {:>7.3} | {:>10.3} | {:>6} {:>6} | {:>9}{}",
                l.pods,
                l.ironlet.p50_s,
                l.ironlet.p99_s,
                l.ironlet_batch_s,
                l.direct.p50_s,
                l.direct.p99_s,
                l.direct_batch_s,
                l.direct_start_returned.p50_s,
                opt(l.ratio_p50, 2),
                opt(l.ratio_p99, 2),
                opt(l.ratio_batch, 2),
                if l.ironlet_missing + l.direct_missing > 0 {
                    format!(
                        "  MISSING ironlet {} direct {}",
                        l.ironlet_missing, l.direct_missing
                    )
                } else {
                    String::new()
                },
            );
        }
        let _ = writeln!(
            s,
            "(StartCtr = direct p50 until StartContainer returned; runtime startedAt p50 ratio: {})",
            r.latency
                .iter()
                .map(|l| format!("{} pods {}", l.pods, opt(l.ratio_p50_runtime_started, 2)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let fmt_stages = |v: &[(String, f64)]| {
            v.iter()
                .map(|(n, t)| format!("{n} {t:.3}"))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let _ = writeln!(s, "where the time goes (p50 per stage, s):");
        for l in &r.latency {
            let _ = writeln!(
                s,
                "{:>5}  ironlet: {}\n       direct:  {}",
                l.pods,
                fmt_stages(&l.ironlet_stages_p50_s),
                fmt_stages(&l.direct_stages_p50_s)
            );
        }
        let _ = writeln!(
            s,
            "teardown of all pods, s: {}",
            r.latency
                .iter()
                .map(|l| format!(
                    "{} pods ironlet {:.1} direct {:.1}",
                    l.pods, l.ironlet_teardown_s, l.direct_teardown_s
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    if let Some(n) = &r.node {
        let _ = writeln!(
            s,
            "\nFootprint of the agent (RSS from VmRSS, CPU from utime+stime, % of one core)"
        );
        for (label, w) in [
            ("idle", &n.idle),
            ("steady", &n.steady),
            ("after restart", &n.steady_after_restart),
        ] {
            if let Some(w) = w {
                let _ = writeln!(
                    s,
                    "  {label:<14} {:>3} pods {:>4.0} s: RSS mean {:.1} MiB, max {:.1} MiB (lifetime peak {:.1}); CPU {:.2} %  [containerd {}%]",
                    w.pods,
                    w.seconds,
                    w.rss_mib_mean,
                    w.rss_mib_max,
                    w.rss_mib_peak_lifetime,
                    w.cpu_percent_of_one_core,
                    opt(w.containerd_cpu_percent_of_one_core, 1),
                );
            }
        }
        if let Some(b) = n.startup_batch_s {
            let _ = writeln!(
                s,
                "  {} probed pods ran {:.1} s after their manifests were written",
                n.pods, b
            );
        }
        if let Some(p) = &n.probes {
            let _ = writeln!(
                s,
                "  probes ({}): pods accepted {} probe connections = {:.2} per pod per minute (6 = every probe ran; pod-side counter {}); agent reports: {}",
                p.configured,
                p.connections_seen_by_pods,
                p.per_pod_per_minute,
                if p.counter_verified {
                    "verified"
                } else {
                    "NOT verified"
                },
                p.agent_reported
                    .as_ref()
                    .map_or("nothing probe-related in agent.json".into(), |v| v
                        .to_string()),
            );
        }
        if let Some(p) = &n.pleg {
            let _ = writeln!(
                s,
                "\nPLEG relist with {} pods ({} agent, {} relists over {:.0} s): p50 {:.2} ms, p99 {:.2} ms",
                p.pods, p.agent, p.relists, p.agent_uptime_s, p.relist_p50_ms, p.relist_p99_ms
            );
        }
        if let Some(x) = &n.restart {
            let _ = writeln!(
                s,
                "\nRestart (SIGKILL, start again) with {} pods: all Running in the agent's view after {} s, all Ready after {} s;\n  compared through the CRI {:.0} s later: {} containers restarted, {} sandboxes created",
                x.pods,
                opt(x.adopted_s, 2),
                opt(x.ready_s, 2),
                x.compared_after_s,
                x.containers_restarted,
                x.sandboxes_created
            );
        }
    }
    if let Some(p) = &r.probes {
        let _ = writeln!(
            s,
            "\nProbe scheduler (period 1 s; CPU of the scheduler's runtime threads)"
        );
        for x in &p.runs {
            let _ = writeln!(
                s,
                "  {:>4} {:<11} {:>5} runs in {:.1} s: CPU {:.0} ms = {:.0} us/run; tasks {:.2}/s per probe; max alive tasks {}",
                x.probes,
                format!("{:?}", x.kind),
                x.runs,
                x.window_s,
                x.runtime_cpu_ms,
                x.cpu_us_per_run,
                x.tasks_spawned_per_probe_per_s,
                x.max_alive_tasks
            );
        }
        let _ = writeln!(
            s,
            "  CPU per run, {} vs {} probes: exec {}, TCP {}",
            probeload::COUNTS[1],
            probeload::COUNTS[0],
            opt(p.ratio_exec, 2),
            opt(p.ratio_tcp, 2)
        );
    }
    if !r.targets.is_empty() {
        let _ = writeln!(s, "\nTargets (issue 7; aims, not asserts)");
        for t in &r.targets {
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not measured",
            };
            let _ = writeln!(
                s,
                "  {:<52} {:>8} {:>8}  {verdict}",
                t.what,
                t.aim,
                opt(t.value, 2)
            );
        }
    }
    s
}
