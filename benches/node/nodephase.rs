//! Phases 2-4 on one node: the agent's footprint idle and with N probed pods, PLEG relist
//! latency with N pods, and an agent SIGKILL and restart with N pods (adoption time and
//! what was restarted or recreated).

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::fixture::{self, NODE, Node};
use crate::latency::spawn_poller;
use crate::procfs::{self, Window};

#[derive(Debug, Clone)]
pub struct Options {
    pub pods: usize,
    pub idle: Duration,
    pub steady: Duration,
    /// How long the agent must have run with the pods before its relist figures are read.
    pub pleg_after: Duration,
    pub footprint: bool,
    pub pleg: bool,
    pub restart: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Results {
    pub pods: usize,
    /// Time for the N probed pods to run (written at once), observed through the CRI.
    pub startup_batch_s: Option<f64>,
    pub idle: Option<Window>,
    pub steady: Option<Window>,
    /// The restarted agent (which adopted the pods) over the same length of window.
    pub steady_after_restart: Option<Window>,
    pub probes: Option<Probes>,
    pub pleg: Option<Pleg>,
    pub restart: Option<Restart>,
}

/// Readiness probe activity during the steady window.
#[derive(Debug, Clone, Serialize)]
pub struct Probes {
    pub configured: &'static str,
    /// Connections the pods accepted (each logs `probed`) during the window.
    pub connections_seen_by_pods: u64,
    /// Per pod per minute; 6 means every probe ran.
    pub per_pod_per_minute: f64,
    /// The bench's own connection to one pod was logged: a 0 above means no probes ran,
    /// not a broken counter.
    pub counter_verified: bool,
    /// Anything probe-related the agent publishes in agent.json (None: nothing).
    pub agent_reported: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pleg {
    pub pods: usize,
    /// Which agent's histogram: `restarted` covers only relists with the N pods present;
    /// `original` also includes its relists while idle and while the pods were starting.
    pub agent: &'static str,
    pub agent_uptime_s: f64,
    pub relists: u64,
    pub relist_p50_ms: f64,
    pub relist_p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    pub pods: usize,
    /// From spawning the new agent to its view (`ironlet pods -o json`) showing every pod
    /// Running with all containers running.
    pub adopted_s: Option<f64>,
    /// ... and every pod Ready.
    pub ready_s: Option<f64>,
    /// Compared through the CRI before the kill and after the restarted agent's window.
    pub containers_restarted: usize,
    pub sandboxes_created: usize,
    pub compared_after_s: f64,
}

pub async fn run(bin: &Path, o: &Options, out: &Path) -> Result<Results> {
    let mut node = Node::new(bin)?;
    let res = phases(&mut node, o).await;
    node.kill_agent();
    node.save_agent_logs(out, "node");
    node.shutdown().await?;
    res
}

async fn phases(node: &mut Node, o: &Options) -> Result<Results> {
    let mut r = Results {
        pods: o.pods,
        ..Results::default()
    };
    let pid = node.start_agent()?;
    node.wait_agent_ready(pid, Duration::from_secs(30)).await?;
    let started = Instant::now();
    if o.footprint {
        println!("  idle, 0 pods, {} s", o.idle.as_secs());
        r.idle = procfs::measure(pid, node.containerd_pid(), 0, o.idle).await;
    }

    println!("  starting {} probed pods", o.pods);
    let pods = fixture::pod_names(o.pods);
    let names: HashSet<String> = pods.iter().map(|p| format!("{p}-{NODE}")).collect();
    let deadline = Instant::now() + Duration::from_secs(120 + o.pods as u64);
    let poller = spawn_poller(node.new_cri(), names, deadline);
    let t = Instant::now();
    for p in &pods {
        node.write_manifest(&format!("{p}.yaml"), &fixture::probed_manifest(p))?;
    }
    let seen = poller.await.context("poller")?;
    if seen.len() < o.pods {
        anyhow::bail!(
            "only {} of {} probed pods ran; agent log:\n{}",
            seen.len(),
            o.pods,
            node.agent_log_tail()
        );
    }
    r.startup_batch_s = seen.values().max().map(|l| (*l - t).as_secs_f64());
    let pods_since = Instant::now();

    if o.footprint {
        let counter_verified = verify_probe_counter(node).await;
        println!("  steady, {} pods, {} s", o.pods, o.steady.as_secs());
        let before = probe_lines(&node.logs());
        r.steady = procfs::measure(pid, node.containerd_pid(), o.pods, o.steady).await;
        let after = probe_lines(&node.logs());
        let n = after.saturating_sub(before);
        r.probes = Some(Probes {
            configured: "readinessProbe tcpSocket :8080, periodSeconds 10",
            connections_seen_by_pods: n,
            per_pod_per_minute: n as f64 / o.pods as f64 / o.steady.as_secs_f64() * 60.0,
            counter_verified,
            agent_reported: node.agent_json().and_then(|a| probe_fields(&a)),
        });
    }

    if !o.restart {
        if o.pleg {
            sleep_until(pods_since + o.pleg_after).await;
            r.pleg = read_pleg(node, o.pods, "original", started).await;
        }
        return Ok(r);
    }

    println!("  SIGKILL and restart with {} pods", o.pods);
    let before = node.runtime_state().await?;
    node.kill_agent();
    node.clear_view();
    let t = Instant::now();
    let pid = node.start_agent()?;
    let (adopted, ready) = wait_adopted(node, o.pods, t).await;
    let window = o.steady.max(o.pleg_after);
    if o.footprint {
        println!("  steady after restart, {} s", o.steady.as_secs());
        r.steady_after_restart =
            procfs::measure(pid, node.containerd_pid(), o.pods, o.steady).await;
    }
    sleep_until(t + window).await;
    let after = node.runtime_state().await?;
    r.restart = Some(Restart {
        pods: o.pods,
        adopted_s: adopted,
        ready_s: ready,
        containers_restarted: after.restarted_containers(&before),
        sandboxes_created: after.new_sandboxes(&before),
        compared_after_s: t.elapsed().as_secs_f64(),
    });
    if o.pleg {
        r.pleg = read_pleg(node, o.pods, "restarted", t).await;
    }
    Ok(r)
}

async fn sleep_until(t: Instant) {
    tokio::time::sleep(t.saturating_duration_since(Instant::now())).await;
}

/// Polls the restarted agent's view until every pod is Running with its containers
/// running, then until every pod is Ready; both measured from `t`.
async fn wait_adopted(node: &Node, pods: usize, t: Instant) -> (Option<f64>, Option<f64>) {
    let mut adopted = None;
    let deadline = t + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(list) = ironlet::view::read_pods(&node.root()) {
            let running = list.items.iter().filter(|p| all_running(p)).count();
            if adopted.is_none() && running >= pods {
                adopted = Some(t.elapsed().as_secs_f64());
            }
            let ready = list.items.iter().filter(|p| is_ready(p)).count();
            if adopted.is_some() && ready >= pods {
                return (adopted, Some(t.elapsed().as_secs_f64()));
            }
            if adopted.is_some_and(|a| t.elapsed().as_secs_f64() > a + 30.0) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (adopted, None)
}

fn all_running(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    let Some(st) = &p.status else { return false };
    st.phase.as_deref() == Some("Running")
        && st.container_statuses.as_ref().is_some_and(|cs| {
            !cs.is_empty()
                && cs
                    .iter()
                    .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
}

fn is_ready(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits for the next heartbeat (at most 5 s old) and reads the PLEG figures.
async fn read_pleg(node: &Node, pods: usize, agent: &'static str, since: Instant) -> Option<Pleg> {
    tokio::time::sleep(ironlet::view::HEARTBEAT + Duration::from_millis(200)).await;
    let a = node.agent_json()?;
    let p = &a["pleg"];
    Some(Pleg {
        pods,
        agent,
        agent_uptime_s: since.elapsed().as_secs_f64(),
        relists: p["relists"].as_u64()?,
        relist_p50_ms: p["relist_p50_seconds"].as_f64()? * 1e3,
        relist_p99_ms: p["relist_p99_seconds"].as_f64()? * 1e3,
    })
}

/// Connects to one pod's :8080 as a TCP probe would and checks that the pod logged it.
async fn verify_probe_counter(node: &Node) -> bool {
    let Ok(sbs) = node.cri.list_pod_sandbox().await else {
        return false;
    };
    let Some(sb) = sbs.first() else { return false };
    let Ok(st) = node.cri.pod_sandbox_status(&sb.id).await else {
        return false;
    };
    let Some(ip) = st.network.map(|n| n.ip) else {
        return false;
    };
    let before = probe_lines(&node.logs());
    let Ok(addr) = format!("{ip}:8080").parse::<std::net::SocketAddr>() else {
        return false;
    };
    let connect =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr));
    if !matches!(connect.await, Ok(Ok(_))) {
        return false;
    }
    for _ in 0..40 {
        if probe_lines(&node.logs()) > before {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Lines the pods logged for accepted probe connections, over all container logs.
fn probe_lines(logs: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![logs.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(s) = std::fs::read_to_string(&p) {
                n += s.lines().filter(|l| l.ends_with(" probed")).count() as u64;
            }
        }
    }
    n
}

/// Every field of agent.json whose name mentions probes, with its path.
fn probe_fields(v: &serde_json::Value) -> Option<serde_json::Value> {
    fn walk(
        v: &serde_json::Value,
        path: &str,
        out: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        if let serde_json::Value::Object(m) = v {
            for (k, v) in m {
                let p = format!("{path}{k}");
                if k.to_ascii_lowercase().contains("probe") {
                    out.insert(p, v.clone());
                } else {
                    walk(v, &format!("{p}."), out);
                }
            }
        }
    }
    let mut out = serde_json::Map::new();
    walk(v, "", &mut out);
    (!out.is_empty()).then_some(serde_json::Value::Object(out))
}
