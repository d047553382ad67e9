//! Integration-test fixtures: a node made of a project-owned containerd (from xtask, with its
//! own root, state, socket and CNI network) and the real `ironlet` binary as a child process.
//! Tests judge through the CRI, not only through ironlet's own view.
#![allow(dead_code)]

pub mod fakeapi;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ironlet::cri::{Cri, api};
use xtask::containerd::{Containerd, test_instance};

pub const BUSYBOX: &str = xtask::images::BUSYBOX_IMAGE;
pub const NODE: &str = "testnode";

/// Polls `f` every 200 ms until it returns Some or `timeout` passes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub struct Node {
    pub containerd: Option<Containerd>,
    pub dir: tempfile::TempDir,
    pub cri: Cri,
    agent: Option<Child>,
    starts: u32,
    /// Points the agent at another socket path (e.g. one that does not exist yet).
    pub endpoint_override: Option<String>,
    /// This node's private cgroupRoot, removed at cleanup.
    pub cgroup_root: String,
    /// More `ironlet run` arguments (e.g. `--kubeconfig PATH`).
    pub extra_args: Vec<String>,
    /// A program the agent runs under, e.g. `strace -f -e trace=... -o FILE --`; the
    /// agent's pid is then that program's child.
    pub wrapper: Vec<String>,
}

impl Node {
    /// A fresh containerd and an empty node directory (no agent yet).
    pub fn new() -> Node {
        Node::with_config("")
    }

    /// Like `new`, with extra KubeletConfiguration lines (which win over the defaults here).
    pub fn with_config(extra: &str) -> Node {
        let containerd = test_instance().expect("start a test containerd");
        let dir = tempfile::Builder::new()
            .prefix("ironlet-it-")
            .tempdir_in("/var/tmp")
            .expect("temp dir");
        for d in ["manifests", "root", "logs"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(
            dir.path().join("config.yaml"),
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
                 staticPodPath: {}\npodLogsDir: {}\nfileCheckFrequency: 2s\n\
                 syncFrequency: 10s\n{}",
                dir.path().join("manifests").display(),
                dir.path().join("logs").display(),
                if extra.is_empty() {
                    "healthzPort: 0\nruntimeRequestTimeout: 30s\n"
                } else {
                    extra
                }
            ),
        )
        .unwrap();
        let cri = Cri::new(&containerd.socket(), Duration::from_secs(30));
        let cgroup_root = format!(
            "/ironlet-it-{}-{}",
            std::process::id(),
            containerd.net_index()
        );
        if !extra.contains("cgroupRoot:") {
            let cfg = dir.path().join("config.yaml");
            let mut text = std::fs::read_to_string(&cfg).unwrap();
            text.push_str(&format!("cgroupRoot: {cgroup_root}\n"));
            std::fs::write(&cfg, text).unwrap();
        }
        Node {
            cgroup_root,
            containerd: Some(containerd),
            dir,
            cri,
            agent: None,
            starts: 0,
            endpoint_override: None,
            extra_args: Vec::new(),
            wrapper: Vec::new(),
        }
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

    /// The agent's stderr of its n-th start (1-based).
    pub fn agent_log(&self, n: u32) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("agent-{n}.log"))).unwrap_or_default()
    }

    pub fn write_manifest(&self, file: &str, content: &str) {
        // Write then rename, as an operator's tooling would, so no half file is read.
        let tmp = self.dir.path().join(format!(".{file}.tmp"));
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, self.manifests().join(file)).unwrap();
    }

    pub fn remove_manifest(&self, file: &str) {
        std::fs::remove_file(self.manifests().join(file)).unwrap();
    }

    pub fn start_agent(&mut self) {
        assert!(self.agent.is_none(), "agent already running");
        self.starts += 1;
        let log = std::fs::File::create(self.dir.path().join(format!("agent-{}.log", self.starts)))
            .unwrap();
        let socket = self
            .endpoint_override
            .clone()
            .unwrap_or_else(|| self.containerd.as_ref().unwrap().endpoint());
        // `cargo xtask seccomp-learn` sets IRONLET_STRACE_DIR: the agent then runs under
        // `strace -f` and its system calls are collected to earn the seccomp allow-list.
        let strace_dir = std::env::var_os("IRONLET_STRACE_DIR");
        let mut cmd = match &strace_dir {
            Some(dir) => {
                let mut c = Command::new("strace");
                c.args(["-f", "-qq", "-o"])
                    .arg(Path::new(dir).join(format!(
                        "agent-{}-{}.trace",
                        std::process::id(),
                        self.dir.path().file_name().unwrap().to_string_lossy()
                    )))
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_ironlet"));
                c
            }
            None if !self.wrapper.is_empty() => {
                let mut c = Command::new(&self.wrapper[0]);
                c.args(&self.wrapper[1..])
                    .arg(env!("CARGO_BIN_EXE_ironlet"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_ironlet")),
        };
        let child = cmd
            .args(["run", "--config"])
            .arg(self.dir.path().join("config.yaml"))
            .arg("--container-runtime-endpoint")
            .arg(socket)
            .arg("--root-dir")
            .arg(self.root())
            .args(["--hostname-override", NODE])
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ironlet");
        self.agent = Some(child);
    }

    /// SIGKILL: the agent gets no chance to clean anything.
    pub fn kill_agent(&mut self) {
        let wrapped = !self.wrapper.is_empty();
        if let Some(mut c) = self.agent.take() {
            if let Some(pid) =
                traced_child(c.id()).or_else(|| wrapped.then(|| child_of(c.id())).flatten())
            {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for exit.
    pub fn stop_agent(&mut self) -> std::process::ExitStatus {
        let wrapped = !self.wrapper.is_empty();
        let mut c = self.agent.take().expect("agent running");
        let pid = traced_child(c.id())
            .or_else(|| wrapped.then(|| child_of(c.id())).flatten())
            .unwrap_or(c.id());
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        c.wait().unwrap()
    }

    /// The agent's pid (under `strace`, the traced child's).
    pub fn agent_pid(&self) -> u32 {
        let pid = self.agent.as_ref().expect("agent running").id();
        traced_child(pid)
            .or_else(|| (!self.wrapper.is_empty()).then(|| child_of(pid)).flatten())
            .unwrap_or(pid)
    }

    /// The test containerd's pid.
    pub fn containerd_pid(&self) -> u32 {
        let c = self.containerd.as_ref().unwrap();
        read_file(&c.opts().pid_file())
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("containerd pid file")
    }

    pub fn agent_running(&mut self) -> bool {
        self.agent
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sandboxes of pods whose name starts with `prefix`, newest first.
    pub async fn sandboxes(&self, prefix: &str) -> Vec<api::PodSandbox> {
        let mut v: Vec<_> = self
            .cri
            .list_pod_sandbox()
            .await
            .unwrap()
            .into_iter()
            .filter(|s| {
                s.metadata
                    .as_ref()
                    .is_some_and(|m| m.name.starts_with(prefix))
            })
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        v
    }

    pub async fn containers_in(&self, sandbox_id: &str) -> Vec<api::Container> {
        self.cri
            .list_containers()
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.pod_sandbox_id == sandbox_id)
            .collect()
    }

    /// Waits until the pod has one ready sandbox whose containers named `names` all run;
    /// returns the sandbox.
    pub async fn wait_running(
        &self,
        pod: &str,
        names: &[&str],
        timeout: Duration,
    ) -> api::PodSandbox {
        self.wait_running_full(&format!("{pod}-{NODE}"), names, timeout)
            .await
    }

    /// `wait_running` for a pod by its full name (API pods have no node suffix).
    pub async fn wait_running_full(
        &self,
        full: &str,
        names: &[&str],
        timeout: Duration,
    ) -> api::PodSandbox {
        wait_for(&format!("pod {full} running"), timeout, || async {
            let sb = self
                .sandboxes(full)
                .await
                .into_iter()
                .find(|s| s.state == api::PodSandboxState::SandboxReady as i32)?;
            let cs = self.containers_in(&sb.id).await;
            let all = names.iter().all(|n| {
                cs.iter().any(|c| {
                    c.metadata.as_ref().is_some_and(|m| m.name == *n)
                        && c.state == api::ContainerState::ContainerRunning as i32
                })
            });
            all.then_some(sb)
        })
        .await
    }

    pub async fn pod_ip(&self, sandbox_id: &str) -> String {
        let st = self.cri.pod_sandbox_status(sandbox_id).await.unwrap();
        st.network.map(|n| n.ip).unwrap_or_default()
    }

    /// Runs `ironlet <args> --root-dir ROOT` and returns stdout (asserting success).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_ironlet"))
            .args(args)
            .arg("--root-dir")
            .arg(self.root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ironlet {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Like `cli`, but None when the command fails (e.g. the view is not written yet).
    pub fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(env!("CARGO_BIN_EXE_ironlet"))
            .args(args)
            .arg("--root-dir")
            .arg(self.root())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The agent's pods as JSON values (None until the view exists).
    pub fn view_pods(&self) -> Option<Vec<serde_json::Value>> {
        let json = self.try_cli(&["pods", "-o", "json"])?;
        let list: serde_json::Value = serde_json::from_str(&json).ok()?;
        list["items"].as_array().cloned()
    }

    /// Stops and removes every sandbox (tearing down pod networking through CNI) before the
    /// containerd instance itself is torn down.
    pub async fn cleanup(mut self) {
        self.kill_agent();
        if let Ok(sbs) = self.cri.list_pod_sandbox().await {
            for s in sbs {
                let _ = self.cri.stop_pod_sandbox(&s.id).await;
                let _ = self.cri.remove_pod_sandbox(&s.id).await;
            }
        }
        if let Some(c) = self.containerd.take() {
            c.stop().expect("containerd teardown");
        }
        xtask::teardown::remove_cgroup_tree(&self.cgroup_root);
    }

    /// The directory of this node's cgroup `rel` (below cgroupRoot) in one v1 hierarchy.
    pub fn cgroup_dir(&self, hierarchy: &str, rel: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(hierarchy)
            .join(self.cgroup_root.trim_start_matches('/'))
            .join(rel)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_agent();
        if let Some(c) = self.containerd.take() {
            drop(c);
            xtask::teardown::remove_cgroup_tree(&self.cgroup_root);
        }
        // containerd's own Drop kills what is left and removes its state.
    }
}

/// A plain HTTP GET from the host; returns the whole response.
pub fn http_get(ip: &str, port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = format!("{ip}:{port}")
        .parse()
        .map_err(|e| std::io::Error::other(format!("{e}")))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A busybox pod manifest with one container running `script` under `sh -c`.
pub fn pod_manifest(name: &str, script: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{extra_spec}  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sh, -c, {script:?}]\n"
    )
}

pub fn read_file(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Sends a signal to a process with kill(1), keeping tests free of `unsafe`.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// When the agent runs under `strace` (IRONLET_STRACE_DIR), the pid of strace's child.
fn traced_child(pid: u32) -> Option<u32> {
    std::env::var_os("IRONLET_STRACE_DIR")?;
    child_of(pid)
}

/// The first child of `pid` (waiting up to 5 s for it to appear).
fn child_of(pid: u32) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let children = read_file(Path::new(&format!("/proc/{pid}/task/{pid}/children")));
        if let Some(c) = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
        {
            return Some(c);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
