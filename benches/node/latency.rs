//! Phase 1, pod start latency: N pods through ironlet (static manifests written at once)
//! and N pods through a minimal direct CRI client (the floor), each on a fresh containerd,
//! both observed by the same poller.
//!
//! The floor makes exactly RunPodSandbox, CreateContainer and StartContainer per pod, N
//! pods concurrently, with the configs ironlet itself builds from the same manifest
//! (`ironlet::pod::cri_config`: same labels, annotations, log paths, DNS, image). What
//! ironlet does beyond that (file watch, ImageStatus, PodSandboxStatus, log dirs, waiting
//! for a relist) is exactly the overhead being measured.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use ironlet::cri::{Cri, api};
use ironlet::pod::cri_config::{self, NodeContext};
use ironlet::pod::dns::{self, NodeDns};
use ironlet::pod::manifest;
use ironlet::resources;
use serde::Serialize;

use crate::fixture::{self, NODE, Node};

/// How often the poller lists the runtime.
pub const POLL: Duration = Duration::from_millis(10);

/// One run of N pods, by one path (ironlet or direct).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Run {
    /// Per pod, from its manifest write (ironlet) or the batch start (direct) to the first
    /// listing that showed its sandbox ready and its container running.
    pub observed_s: Vec<f64>,
    /// Per pod, to the container's own `startedAt` as the runtime records it.
    pub runtime_started_s: Vec<f64>,
    /// Direct only: per pod, to the return of StartContainer.
    pub start_returned_s: Vec<f64>,
    /// From the first write / batch start to the last pod seen running.
    pub batch_s: f64,
    /// Pods not seen running before the deadline.
    pub missing: usize,
    /// Removing all N pods (ironlet: manifests deleted until no sandbox is left).
    pub teardown_s: f64,
    /// Where each pod's time went, stage by stage, in order.
    pub stages: Vec<Stage>,
}

/// One stage of a pod's start, per pod, in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub name: &'static str,
    pub samples_s: Vec<f64>,
}

/// Per pod: points in time (wall clock) in order; stage k is point k to point k+1.
fn stages(names: &[&'static str], points: &[Vec<Option<SystemTime>>]) -> Vec<Stage> {
    names
        .iter()
        .enumerate()
        .map(|(k, name)| Stage {
            name,
            samples_s: points
                .iter()
                .filter_map(|p| {
                    let (a, b) = ((*p.get(k)?)?, (*p.get(k + 1)?)?);
                    Some(
                        b.duration_since(a)
                            .map_or_else(|e| -e.duration().as_secs_f64(), |d| d.as_secs_f64()),
                    )
                })
                .collect(),
        })
        .collect()
}

/// The agent's log lines that mark a pod's progress, by pod full name: manifest loaded,
/// worker added, sandbox created, container started (first occurrence each).
fn agent_milestones(log: &str) -> HashMap<String, [Option<SystemTime>; 4]> {
    const MARKS: [&str; 4] = [
        "static pod manifest loaded",
        "adding pod",
        "created pod sandbox",
        "started container",
    ];
    let mut out: HashMap<String, [Option<SystemTime>; 4]> = HashMap::new();
    for line in log.lines() {
        let Some(k) = MARKS.iter().position(|m| line.contains(m)) else {
            continue;
        };
        let Some(ts) = line
            .split_whitespace()
            .next()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        else {
            continue;
        };
        let Some(pod) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("pod="))
            .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        else {
            continue;
        };
        let slot = &mut out.entry(pod).or_default()[k];
        slot.get_or_insert(SystemTime::from(ts));
    }
    out
}

/// Lists the runtime every [`POLL`] and records when each pod in `names` (full names) is
/// first seen with a ready sandbox and a running container. Ends when all are seen or at
/// `deadline`.
pub fn spawn_poller(
    cri: Cri,
    names: HashSet<String>,
    deadline: Instant,
) -> tokio::task::JoinHandle<HashMap<String, Instant>> {
    tokio::spawn(async move {
        let ready = api::PodSandboxState::SandboxReady as i32;
        let running = api::ContainerState::ContainerRunning as i32;
        let mut seen: HashMap<String, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while seen.len() < names.len() && Instant::now() < deadline {
            tick.tick().await;
            let Ok((sbs, cs)) = tokio::try_join!(cri.list_pod_sandbox(), cri.list_containers())
            else {
                continue;
            };
            let now = Instant::now();
            let pods: HashMap<&str, &str> = sbs
                .iter()
                .filter(|s| s.state == ready)
                .filter_map(|s| Some((s.id.as_str(), s.metadata.as_ref()?.name.as_str())))
                .filter(|(_, n)| names.contains(*n) && !seen.contains_key(*n))
                .collect();
            for c in cs.iter().filter(|c| c.state == running) {
                if let Some(name) = pods.get(c.pod_sandbox_id.as_str()) {
                    seen.entry((*name).to_string()).or_insert(now);
                }
            }
        }
        seen
    })
}

fn poll_deadline(n: usize) -> Instant {
    Instant::now() + Duration::from_secs(120 + n as u64)
}

fn full_name(pod: &str) -> String {
    format!("{pod}-{NODE}")
}

/// `startedAt` of each pod's container, in seconds after that pod's wall-clock start.
async fn runtime_started(cri: &Cri, t0: &HashMap<String, SystemTime>) -> Vec<f64> {
    let Ok(cs) = cri.list_containers().await else {
        return Vec::new();
    };
    let Ok(sbs) = cri.list_pod_sandbox().await else {
        return Vec::new();
    };
    let names: HashMap<&str, &str> = sbs
        .iter()
        .filter_map(|s| Some((s.id.as_str(), s.metadata.as_ref()?.name.as_str())))
        .collect();
    let mut out = Vec::new();
    for c in &cs {
        let Some(start) = names
            .get(c.pod_sandbox_id.as_str())
            .and_then(|n| t0.get(*n))
        else {
            continue;
        };
        let Ok(st) = cri.container_status(&c.id).await else {
            continue;
        };
        let t0_ns = start
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        if st.started_at > 0 {
            out.push((st.started_at - t0_ns) as f64 / 1e9);
        }
    }
    out
}

/// N pods through ironlet: the agent runs (and has relisted) before the N manifests are
/// written at once.
pub async fn ironlet_run(bin: &Path, n: usize, out: &Path, prefix: &str) -> Result<Run> {
    let mut node = Node::new(bin)?;
    let pid = node.start_agent()?;
    node.wait_agent_ready(pid, Duration::from_secs(30)).await?;

    let pods = fixture::pod_names(n);
    let names: HashSet<String> = pods.iter().map(|p| full_name(p)).collect();
    let poller = spawn_poller(node.new_cri(), names, poll_deadline(n));
    let manifests: Vec<String> = pods.iter().map(|p| fixture::sleeper_manifest(p)).collect();

    let batch_start = Instant::now();
    let mut t0 = HashMap::new();
    let mut wall = HashMap::new();
    for (pod, m) in pods.iter().zip(&manifests) {
        node.write_manifest(&format!("{pod}.yaml"), m)?;
        t0.insert(full_name(pod), Instant::now());
        wall.insert(full_name(pod), SystemTime::now());
    }
    let seen = poller.await.context("poller")?;
    let mut run = summarise(&seen, &t0, batch_start, n);
    run.runtime_started_s = runtime_started(&node.cri, &wall).await;
    let marks = agent_milestones(&node.agent_log());
    let points: Vec<Vec<Option<SystemTime>>> = wall
        .iter()
        .map(|(name, w)| {
            let m = marks.get(name).copied().unwrap_or_default();
            let seen_at = seen
                .get(name)
                .zip(t0.get(name))
                .map(|(o, t)| *w + (*o - *t));
            let mut p = vec![Some(*w)];
            p.extend(m);
            p.push(seen_at);
            p
        })
        .collect();
    run.stages = stages(
        &[
            "watch+settle+scan",
            "manager",
            "worker+RunPodSandbox",
            "SandboxStatus+ImageStatus+Create+Start",
            "until seen",
        ],
        &points,
    );
    if run.missing > 0 {
        eprintln!(
            "warning: {} of {n} pods not running through ironlet; agent log:\n{}",
            run.missing,
            node.agent_log_tail()
        );
    }

    let t = Instant::now();
    for pod in &pods {
        node.remove_manifest(&format!("{pod}.yaml"))?;
    }
    if !node.wait_no_sandboxes(Duration::from_secs(180)).await {
        eprintln!("warning: ironlet had not removed all pods after 180 s");
    }
    run.teardown_s = t.elapsed().as_secs_f64();
    node.stop_agent();
    node.save_agent_logs(out, prefix);
    node.shutdown().await?;
    Ok(run)
}

/// The configs ironlet builds for the same manifest on the same node.
fn direct_configs(
    node: &Node,
    pods: &[String],
) -> Result<Vec<(String, api::PodSandboxConfig, api::ContainerConfig)>> {
    let host = std::fs::read_to_string("/etc/resolv.conf")
        .map(|s| dns::parse_resolv_conf(&s))
        .unwrap_or_default();
    // As the agent builds its node context (agent.rs) with the defaults the bench uses.
    let memory_capacity = resources::Capacity::measure(110, 0, None).map_or(0, |c| c.memory_bytes);
    let layout = resources::CgroupLayout::new(&node.cgroup_root, true)
        .map_err(|e| anyhow::anyhow!("cgroupRoot {}: {e}", node.cgroup_root))?;
    let ctx = NodeContext {
        node_name: NODE.into(),
        node_ip: None,
        pod_logs_dir: node.logs(),
        pods_dir: node.root().join("pods"),
        memory_capacity,
        cpu_cfs_quota: true,
        dns: NodeDns {
            host,
            cluster_dns: Vec::new(),
            cluster_domain: None,
        },
        // As the agent: seccompDefault on, the compiled-in Pod Security policy.
        security: Default::default(),
    };
    let seen = jiff::Timestamp::now().to_string();
    pods.iter()
        .map(|pod| {
            let path = node.manifests().join(format!("{pod}.yaml"));
            let bytes = fixture::sleeper_manifest(pod);
            let desired = manifest::parse(&path, bytes.as_bytes(), NODE, &seen)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            // The pod cgroup ironlet would create first; here runc creates the path itself.
            let cgroup_parent = layout
                .pod(&desired.uid, resources::QosClass::BestEffort)
                .map_err(|e| anyhow::anyhow!("{pod}: {e}"))?
                .to_string();
            let sandbox = cri_config::sandbox_config(&desired, 0, &ctx, &cgroup_parent)
                .map_err(|e| anyhow::anyhow!("{pod}: {e}"))?;
            let Some(c) = desired.spec().containers.first() else {
                bail!("{pod}: no container");
            };
            let container = cri_config::container_config(&desired, c, 0, &ctx, "")
                .map_err(|e| anyhow::anyhow!("{pod}: {e}"))?;
            Ok((full_name(pod), sandbox, container))
        })
        .collect()
}

/// N pods through the minimal direct client: N concurrent tasks, each RunPodSandbox →
/// CreateContainer → StartContainer (plus the log directories the runtime writes into).
pub async fn direct_run(bin: &Path, n: usize) -> Result<Run> {
    let node = Node::new(bin)?;
    let pods = fixture::pod_names(n);
    let configs = direct_configs(&node, &pods)?;
    let names: HashSet<String> = configs.iter().map(|(n, _, _)| n.clone()).collect();
    let poller = spawn_poller(node.new_cri(), names, poll_deadline(n));
    let cri = Arc::new(node.cri.clone());

    let batch_start = Instant::now();
    let wall_start = SystemTime::now();
    let tasks: Vec<_> = configs
        .into_iter()
        .map(|(name, sandbox, container)| {
            let cri = Arc::clone(&cri);
            tokio::spawn(async move {
                let log_dir = Path::new(&sandbox.log_directory).join("main");
                tokio::fs::create_dir_all(&log_dir).await?;
                let id = cri.run_pod_sandbox(sandbox.clone()).await?;
                let sandbox_at = SystemTime::now();
                let cid = cri.create_container(&id, container, sandbox).await?;
                cri.start_container(&cid).await?;
                anyhow::Ok((name, sandbox_at, Instant::now()))
            })
        })
        .collect();
    let mut returned = Vec::new();
    let mut marks = HashMap::new();
    for t in tasks {
        match t.await.context("direct task")? {
            Ok((name, sandbox_at, at)) => {
                returned.push((at - batch_start).as_secs_f64());
                marks.insert(name, (sandbox_at, wall_start + (at - batch_start)));
            }
            Err(e) => eprintln!("warning: direct CRI pod failed: {e:#}"),
        }
    }
    let seen = poller.await.context("poller")?;
    let t0: HashMap<String, Instant> = seen.keys().map(|k| (k.clone(), batch_start)).collect();
    let mut run = summarise(&seen, &t0, batch_start, n);
    run.start_returned_s = returned;
    let wall: HashMap<String, SystemTime> = seen.keys().map(|k| (k.clone(), wall_start)).collect();
    run.runtime_started_s = runtime_started(&node.cri, &wall).await;
    let points: Vec<Vec<Option<SystemTime>>> = marks
        .iter()
        .map(|(name, (sb, started))| {
            let seen_at = seen.get(name).map(|o| wall_start + (*o - batch_start));
            vec![Some(wall_start), Some(*sb), Some(*started), seen_at]
        })
        .collect();
    run.stages = stages(&["RunPodSandbox", "Create+Start", "until seen"], &points);

    let t = Instant::now();
    node.remove_all_sandboxes().await;
    run.teardown_s = t.elapsed().as_secs_f64();
    node.shutdown().await?;
    Ok(run)
}

fn summarise(
    seen: &HashMap<String, Instant>,
    t0: &HashMap<String, Instant>,
    batch_start: Instant,
    n: usize,
) -> Run {
    let observed_s = seen
        .iter()
        .filter_map(|(name, at)| Some((*at - *t0.get(name)?).as_secs_f64()))
        .collect();
    let batch_s = seen
        .values()
        .max()
        .map_or(0.0, |last| (*last - batch_start).as_secs_f64());
    Run {
        observed_s,
        batch_s,
        missing: n.saturating_sub(seen.len()),
        ..Run::default()
    }
}
