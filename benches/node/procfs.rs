//! A process's memory and CPU from /proc, sampled over a window.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Resident set size in KiB (`VmRSS`) and its peak (`VmHWM`).
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// utime + stime in clock ticks (fields 14 and 15 of /proc/PID/stat).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    stat_cpu_ticks(&format!("/proc/{pid}/stat"))
}

/// The same for one thread of this process (/proc/self/task/TID/stat).
pub fn task_cpu_ticks(tid: u32) -> Option<u64> {
    stat_cpu_ticks(&format!("/proc/self/task/{tid}/stat"))
}

fn stat_cpu_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// USER_HZ, from getconf (no `unsafe` sysconf here); 100 on every Linux we run on.
pub fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The agent's footprint over one window.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub pods: usize,
    pub seconds: f64,
    pub rss_mib_mean: f64,
    pub rss_mib_max: f64,
    /// Peak RSS over the agent's whole life so far (VmHWM), at the end of the window.
    pub rss_mib_peak_lifetime: f64,
    /// CPU time (user + system) over the window, as % of one core.
    pub cpu_percent_of_one_core: f64,
    /// The same for the containerd instance, for context (probes and relists cost it too).
    pub containerd_cpu_percent_of_one_core: Option<f64>,
}

/// Samples RSS every second for `length` and measures CPU over the whole window.
pub async fn measure(
    agent: u32,
    containerd: Option<u32>,
    pods: usize,
    length: Duration,
) -> Option<Window> {
    let hz = clock_ticks_per_second();
    let start = Instant::now();
    let a0 = cpu_ticks(agent)?;
    let c0 = containerd.and_then(cpu_ticks);
    let mut rss = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while start.elapsed() < length {
        tick.tick().await;
        rss.extend(rss_kib(agent).map(|(r, _)| r));
    }
    let secs = start.elapsed().as_secs_f64();
    let a1 = cpu_ticks(agent)?;
    let (_, hwm) = rss_kib(agent)?;
    let pct = |t0: u64, t1: u64| (t1.saturating_sub(t0)) as f64 / hz / secs * 100.0;
    let mib = |kib: u64| kib as f64 / 1024.0;
    Some(Window {
        pods,
        seconds: secs,
        rss_mib_mean: mib(rss.iter().sum::<u64>()) / rss.len().max(1) as f64,
        rss_mib_max: mib(rss.iter().copied().max().unwrap_or(0)),
        rss_mib_peak_lifetime: mib(hwm),
        cpu_percent_of_one_core: pct(a0, a1),
        containerd_cpu_percent_of_one_core: c0
            .zip(containerd.and_then(cpu_ticks))
            .map(|(c0, c1)| pct(c0, c1)),
    })
}
