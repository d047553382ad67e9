//! One benchmark node: a fresh project-owned containerd (from xtask, with its own root,
//! state, socket and CNI bridge), a scratch directory holding the agent's config,
//! manifests, root and pod logs, and the real `ironlet` binary as a child process.
//!
//! Owns: that containerd instance and that directory. Must not touch other instances.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ironlet::cri::{Cri, api};
use xtask::containerd::{Containerd, test_instance};

/// The node name every pod is suffixed with (`<pod>-benchnode`).
pub const NODE: &str = "benchnode";
pub const BUSYBOX: &str = xtask::images::BUSYBOX_IMAGE;
/// The CRI deadline for the bench's own calls (ironlet keeps its default of 2 min).
pub const CRI_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Node {
    containerd: Option<Containerd>,
    /// This node's private cgroupRoot (pod cgroups go below it), removed at the end.
    pub cgroup_root: String,
    dir: tempfile::TempDir,
    pub cri: Cri,
    bin: PathBuf,
    agent: Option<Child>,
    starts: u32,
}

impl Node {
    /// A fresh containerd with both images imported, and an empty node directory.
    pub fn new(bin: &Path) -> Result<Node> {
        let containerd = test_instance().context("starting a containerd instance")?;
        let dir = tempfile::Builder::new()
            .prefix("ironlet-bench-")
            .tempdir_in("/var/tmp")
            .context("creating the node directory")?;
        for d in ["manifests", "root", "logs"] {
            fs::create_dir_all(dir.path().join(d))?;
        }
        let cgroup_root = format!(
            "/ironlet-bench-{}-{}",
            std::process::id(),
            containerd.net_index()
        );
        // Upstream defaults for everything that matters to timing (fileCheckFrequency 20s,
        // syncFrequency 1m, runtimeRequestTimeout 2m); healthz off and a private cgroupRoot
        // so that concurrent nodes on one machine cannot collide.
        fs::write(
            dir.path().join("config.yaml"),
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
                 staticPodPath: {}\npodLogsDir: {}\nhealthzPort: 0\ncgroupRoot: {cgroup_root}\n",
                dir.path().join("manifests").display(),
                dir.path().join("logs").display(),
            ),
        )?;
        let cri = Cri::new(&containerd.socket(), CRI_TIMEOUT);
        Ok(Node {
            containerd: Some(containerd),
            cgroup_root,
            dir,
            cri,
            bin: bin.to_path_buf(),
            agent: None,
            starts: 0,
        })
    }

    /// A second client with its own connection, so polling never queues behind other calls.
    pub fn new_cri(&self) -> Cri {
        Cri::new(&self.socket(), CRI_TIMEOUT)
    }

    pub fn socket(&self) -> PathBuf {
        self.containerd
            .as_ref()
            .map(|c| c.socket())
            .unwrap_or_default()
    }

    pub fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// Writes a manifest as an operator's tooling would: a temporary file outside the
    /// watched directory, then a rename, so the agent never reads half a file.
    pub fn write_manifest(&self, file: &str, content: &str) -> Result<()> {
        let tmp = self.dir.path().join(format!(".{file}.tmp"));
        fs::write(&tmp, content)?;
        fs::rename(&tmp, self.manifests().join(file))?;
        Ok(())
    }

    pub fn remove_manifest(&self, file: &str) -> Result<()> {
        fs::remove_file(self.manifests().join(file))?;
        Ok(())
    }

    /// Starts the agent with the default log level; its stderr goes to `agent-<n>.log`.
    pub fn start_agent(&mut self) -> Result<u32> {
        if self.agent.is_some() {
            bail!("agent already running");
        }
        self.starts += 1;
        let log = fs::File::create(self.dir.path().join(format!("agent-{}.log", self.starts)))?;
        let endpoint = self
            .containerd
            .as_ref()
            .map(|c| c.endpoint())
            .unwrap_or_default();
        let child = Command::new(&self.bin)
            .args(["run", "--config"])
            .arg(self.dir.path().join("config.yaml"))
            .arg("--container-runtime-endpoint")
            .arg(endpoint)
            .arg("--root-dir")
            .arg(self.root())
            .args(["--hostname-override", NODE])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let pid = child.id();
        self.agent = Some(child);
        Ok(pid)
    }

    /// SIGKILL: the agent gets no chance to clean anything.
    pub fn kill_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (pods stay running), then SIGKILL if it has not exited within 10 s.
    pub fn stop_agent(&mut self) {
        let Some(mut c) = self.agent.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(c.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    pub fn containerd_pid(&self) -> Option<u32> {
        let c = self.containerd.as_ref()?;
        fs::read_to_string(c.opts().pid_file())
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The agent's `status/agent.json` as it is, so that fields this bench does not know
    /// yet (probe counters) are still seen.
    pub fn agent_json(&self) -> Option<serde_json::Value> {
        let bytes = fs::read(ironlet::view::status_dir(&self.root()).join("agent.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Removes the agent's view files (left by an agent that was killed).
    pub fn clear_view(&self) {
        let dir = ironlet::view::status_dir(&self.root());
        let _ = fs::remove_file(dir.join("agent.json"));
        let _ = fs::remove_file(dir.join("pods.json"));
    }

    /// Waits until the agent with `pid` has published its state after at least one relist:
    /// from then on its manager acts on new manifests.
    pub async fn wait_agent_ready(&mut self, pid: u32, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(a) = self.agent_json()
                && a["pid"].as_u64() == Some(u64::from(pid))
                && a["pleg"]["relists"].as_u64().unwrap_or(0) >= 1
            {
                return Ok(());
            }
            if let Some(c) = self.agent.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                bail!("ironlet exited at start ({st}):\n{}", self.agent_log_tail());
            }
            if Instant::now() > deadline {
                bail!(
                    "ironlet did not publish its state within {timeout:?}:\n{}",
                    self.agent_log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The current (last started) agent's log.
    pub fn agent_log(&self) -> String {
        fs::read_to_string(self.dir.path().join(format!("agent-{}.log", self.starts)))
            .unwrap_or_default()
    }

    /// Copies every agent log of this node to `<out>/<prefix>-agent-<n>.log`, for analysis.
    pub fn save_agent_logs(&self, out: &Path, prefix: &str) {
        for n in 1..=self.starts {
            let _ = fs::copy(
                self.dir.path().join(format!("agent-{n}.log")),
                out.join(format!("{prefix}-agent-{n}.log")),
            );
        }
    }

    pub fn agent_log_tail(&self) -> String {
        let log = self.agent_log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Sandbox ids and container facts as the runtime lists them now.
    pub async fn runtime_state(&self) -> Result<RuntimeState> {
        let sandboxes = self.cri.list_pod_sandbox().await?;
        let containers = self.cri.list_containers().await?;
        Ok(RuntimeState {
            sandboxes: sandboxes.into_iter().map(|s| (s.id, s.state)).collect(),
            containers: containers
                .into_iter()
                .map(|c| {
                    let attempt = c.metadata.as_ref().map_or(0, |m| m.attempt);
                    (c.id, (attempt, c.state))
                })
                .collect(),
        })
    }

    /// Waits until the runtime has no sandbox left; returns false on timeout.
    pub async fn wait_no_sandboxes(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self
                .cri
                .list_pod_sandbox()
                .await
                .is_ok_and(|s| s.is_empty())
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Stops and removes every sandbox, concurrently.
    pub async fn remove_all_sandboxes(&self) {
        let Ok(sbs) = self.cri.list_pod_sandbox().await else {
            return;
        };
        futures::future::join_all(sbs.iter().map(|s| async {
            let _ = self.cri.stop_pod_sandbox(&s.id).await;
            let _ = self.cri.remove_pod_sandbox(&s.id).await;
        }))
        .await;
    }

    /// Kills the agent, removes what pods are left (so CNI releases their addresses and
    /// veths) and tears the containerd instance down.
    pub async fn shutdown(mut self) -> Result<()> {
        self.kill_agent();
        self.remove_all_sandboxes().await;
        if let Some(c) = self.containerd.take() {
            tokio::task::spawn_blocking(move || c.stop())
                .await
                .context("containerd teardown task")??;
        }
        xtask::teardown::remove_cgroup_tree(&self.cgroup_root);
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_agent();
        if let Some(c) = self.containerd.take() {
            // Its Drop kills what is left and removes its state.
            drop(c);
            xtask::teardown::remove_cgroup_tree(&self.cgroup_root);
        }
    }
}

/// What the runtime holds, for before/after comparisons.
#[derive(Debug, Default, Clone)]
pub struct RuntimeState {
    /// Sandbox id -> CRI state.
    pub sandboxes: HashMap<String, i32>,
    /// Container id -> (attempt, CRI state).
    pub containers: HashMap<String, (u32, i32)>,
}

impl RuntimeState {
    /// Sandboxes present now that were not before.
    pub fn new_sandboxes(&self, before: &RuntimeState) -> usize {
        self.sandboxes
            .keys()
            .filter(|id| !before.sandboxes.contains_key(*id))
            .count()
    }

    /// Containers that are new, or that were running before and are not now.
    pub fn restarted_containers(&self, before: &RuntimeState) -> usize {
        let running = api::ContainerState::ContainerRunning as i32;
        let new = self
            .containers
            .keys()
            .filter(|id| !before.containers.contains_key(*id))
            .count();
        let stopped = before
            .containers
            .iter()
            .filter(|(id, (_, st))| {
                *st == running && self.containers.get(*id).is_none_or(|(_, s)| *s != running)
            })
            .count();
        new + stopped
    }
}

/// A busybox bench pod running `script`, with extra container lines (ports, probes).
fn bench_manifest(name: &str, script: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: ironlet-bench}}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "{script}"]
{extra}"#
    )
}

/// A busybox pod whose one container sleeps until told to stop (SIGTERM ends it at once).
pub fn sleeper_manifest(name: &str) -> String {
    bench_manifest(
        name,
        "trap 'exit 0' TERM; while true; do sleep 3600 & wait $!; done",
        "",
    )
}

/// Like [`sleeper_manifest`], but the container listens on 8080 and has a TCP readiness
/// probe every 10 s. Each accepted connection writes `probed` to the container's log, so
/// probe activity is visible from the pod's side whatever the agent reports.
pub fn probed_manifest(name: &str) -> String {
    bench_manifest(
        name,
        "printf '#!/bin/sh\\\\necho probed >&2\\\\n' >/tmp/probed && chmod +x /tmp/probed && exec nc -ll -p 8080 -e /tmp/probed & trap 'exit 0' TERM; wait",
        "    ports: [{containerPort: 8080}]\n    readinessProbe:\n      tcpSocket: {port: 8080}\n      periodSeconds: 10\n",
    )
}

/// `bench-000` .. : the pod names of one run (the agent adds `-<node>`).
pub fn pod_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("bench-{i:03}")).collect()
}
