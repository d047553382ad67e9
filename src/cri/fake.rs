//! An in-memory container runtime for unit tests: sandboxes and containers with the CRI's
//! states, list and status answers consistent with them, images present or absent, and
//! failure injection. It models what the PLEG and the pod worker rely on, nothing more:
//! streaming calls (exec, attach, port-forward) are refused as unimplemented.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::ids::{ContainerId, SandboxId};
use super::{CriError, Runtime, api};

/// A call that changed something (or pulled an image), in the order the runtime saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    RunPodSandbox { uid: String, attempt: u32 },
    StopPodSandbox(SandboxId),
    RemovePodSandbox(SandboxId),
    CreateContainer { name: String, attempt: u32 },
    StartContainer(ContainerId),
    StopContainer(ContainerId, Duration),
    RemoveContainer(ContainerId),
    PullImage(String),
    ExecSync(ContainerId, Vec<String>),
}

#[derive(Debug)]
struct Sandbox {
    config: api::PodSandboxConfig,
    ready: bool,
    created_at: i64,
    ip: String,
}

#[derive(Debug)]
struct Container {
    sandbox: SandboxId,
    config: api::ContainerConfig,
    state: api::ContainerState,
    created_at: i64,
    started_at: i64,
    finished_at: i64,
    exit_code: i32,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    sandboxes: BTreeMap<SandboxId, Sandbox>,
    containers: BTreeMap<ContainerId, Container>,
    images: BTreeSet<String>,
    calls: Vec<Call>,
    /// Operation name → errors to return from its next calls, in order.
    failures: HashMap<&'static str, VecDeque<CriError>>,
    /// Container name → the exit code it exits with as soon as it is started.
    exit_on_start: HashMap<String, i32>,
}

impl State {
    fn injected(&mut self, op: &'static str) -> Result<(), CriError> {
        match self.failures.get_mut(op).and_then(VecDeque::pop_front) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn container(
        &mut self,
        op: &'static str,
        id: &ContainerId,
    ) -> Result<&mut Container, CriError> {
        self.containers
            .get_mut(id)
            .ok_or_else(|| not_found(op, id.as_str()))
    }
}

fn not_found(op: &'static str, id: &str) -> CriError {
    CriError::Status {
        op,
        code: tonic::Code::NotFound,
        message: format!("{id} not found"),
    }
}

fn refused(op: &'static str, message: String) -> CriError {
    CriError::Status {
        op,
        code: tonic::Code::FailedPrecondition,
        message,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Exit code of a container stopped by the runtime (SIGKILL after the grace).
pub const STOPPED_EXIT_CODE: i32 = 137;

/// A handle to one fake runtime; clones share it.
#[derive(Clone, Debug, Default)]
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `image` present, as if pulled earlier.
    pub fn add_image(&self, image: &str) {
        self.lock().images.insert(image.to_string());
    }

    pub fn has_image(&self, image: &str) -> bool {
        self.lock().images.contains(image)
    }

    /// The next `times` calls of `op` (the CRI method name, e.g. "RunPodSandbox") fail
    /// with `code`.
    pub fn fail(&self, op: &'static str, times: usize, code: tonic::Code) {
        let mut s = self.lock();
        let queue = s.failures.entry(op).or_default();
        for _ in 0..times {
            queue.push_back(CriError::Status {
                op,
                code,
                message: "injected failure".into(),
            });
        }
    }

    /// Containers named `name` exit with `code` as soon as they are started.
    pub fn exit_on_start(&self, name: &str, code: i32) {
        self.lock().exit_on_start.insert(name.to_string(), code);
    }

    /// The calls that changed something, in order; the list is kept.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Ids of the containers named `name`, oldest first.
    pub fn containers_named(&self, name: &str) -> Vec<ContainerId> {
        let s = self.lock();
        let mut found: Vec<_> = s
            .containers
            .iter()
            .filter(|(_, c)| c.config.metadata.as_ref().is_some_and(|m| m.name == name))
            .map(|(id, c)| (c.created_at, id.clone()))
            .collect();
        found.sort();
        found.into_iter().map(|(_, id)| id).collect()
    }

    pub fn sandbox_ids(&self) -> Vec<SandboxId> {
        self.lock().sandboxes.keys().cloned().collect()
    }

    /// The container's CRI state, exit code and finish time (None when it is gone).
    pub fn container_state(&self, id: &ContainerId) -> Option<(api::ContainerState, i32, i64)> {
        let s = self.lock();
        s.containers
            .get(id)
            .map(|c| (c.state, c.exit_code, c.finished_at))
    }

    /// A running container exits by itself with `code`, `ran` after it started.
    pub fn exit(&self, id: &ContainerId, code: i32, ran: Duration) {
        let mut s = self.lock();
        if let Some(c) = s.containers.get_mut(id)
            && c.state == api::ContainerState::ContainerRunning
        {
            c.state = api::ContainerState::ContainerExited;
            c.exit_code = code;
            c.finished_at = c.started_at.saturating_add(ran.as_nanos() as i64);
        }
    }
}

fn container_status(id: &ContainerId, c: &Container, log_dir: &str) -> api::ContainerStatus {
    let exited = c.state == api::ContainerState::ContainerExited;
    api::ContainerStatus {
        id: id.to_string(),
        metadata: c.config.metadata.clone(),
        state: c.state as i32,
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at,
        exit_code: c.exit_code,
        image: c.config.image.clone(),
        image_ref: c
            .config
            .image
            .as_ref()
            .map(|i| format!("sha256:{}", i.image))
            .unwrap_or_default(),
        reason: match (exited, c.exit_code) {
            (false, _) => String::new(),
            (true, 0) => "Completed".into(),
            (true, _) => "Error".into(),
        },
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
        log_path: format!("{log_dir}/{}", c.config.log_path),
        ..Default::default()
    }
}

impl Runtime for FakeRuntime {
    async fn version(&self) -> Result<api::VersionResponse, CriError> {
        self.lock().injected("Version")?;
        Ok(api::VersionResponse {
            version: super::CRI_API_VERSION.into(),
            runtime_name: "fake".into(),
            runtime_version: "0".into(),
            runtime_api_version: super::CRI_API_VERSION.into(),
        })
    }

    async fn status(&self) -> Result<api::StatusResponse, CriError> {
        self.lock().injected("Status")?;
        let ready = |t: &str| api::RuntimeCondition {
            r#type: t.into(),
            status: true,
            ..Default::default()
        };
        Ok(api::StatusResponse {
            status: Some(api::RuntimeStatus {
                conditions: vec![ready("RuntimeReady"), ready("NetworkReady")],
            }),
            ..Default::default()
        })
    }

    async fn run_pod_sandbox(&self, config: api::PodSandboxConfig) -> Result<SandboxId, CriError> {
        let mut s = self.lock();
        let meta = config.metadata.clone().unwrap_or_default();
        s.calls.push(Call::RunPodSandbox {
            uid: meta.uid,
            attempt: meta.attempt,
        });
        s.injected("RunPodSandbox")?;
        let id = SandboxId::new(s.id("sandbox-"));
        let ip = format!("10.88.0.{}", s.next % 250 + 2);
        s.sandboxes.insert(
            id.clone(),
            Sandbox {
                config,
                ready: true,
                created_at: now(),
                ip,
            },
        );
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &SandboxId) -> Result<(), CriError> {
        let mut s = self.lock();
        s.calls.push(Call::StopPodSandbox(id.clone()));
        s.injected("StopPodSandbox")?;
        let sandbox = s
            .sandboxes
            .get_mut(id)
            .ok_or_else(|| not_found("StopPodSandbox", id.as_str()))?;
        sandbox.ready = false;
        let t = now();
        for c in s.containers.values_mut().filter(|c| c.sandbox == *id) {
            if c.state == api::ContainerState::ContainerRunning {
                c.state = api::ContainerState::ContainerExited;
                c.exit_code = STOPPED_EXIT_CODE;
                c.finished_at = t;
            }
        }
        Ok(())
    }

    /// Idempotent, as the CRI requires: removing a sandbox that is gone succeeds.
    async fn remove_pod_sandbox(&self, id: &SandboxId) -> Result<(), CriError> {
        let mut s = self.lock();
        s.calls.push(Call::RemovePodSandbox(id.clone()));
        s.injected("RemovePodSandbox")?;
        if s.sandboxes.get(id).is_some_and(|x| x.ready) {
            return Err(refused(
                "RemovePodSandbox",
                format!("sandbox {id} is still ready"),
            ));
        }
        s.sandboxes.remove(id);
        s.containers.retain(|_, c| c.sandbox != *id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &SandboxId) -> Result<api::PodSandboxStatus, CriError> {
        let mut s = self.lock();
        s.injected("PodSandboxStatus")?;
        let x = s
            .sandboxes
            .get(id)
            .ok_or_else(|| not_found("PodSandboxStatus", id.as_str()))?;
        Ok(api::PodSandboxStatus {
            id: id.to_string(),
            metadata: x.config.metadata.clone(),
            state: sandbox_state(x.ready) as i32,
            created_at: x.created_at,
            network: x.ready.then(|| api::PodSandboxNetworkStatus {
                ip: x.ip.clone(),
                additional_ips: Vec::new(),
            }),
            labels: x.config.labels.clone(),
            annotations: x.config.annotations.clone(),
            ..Default::default()
        })
    }

    async fn list_pod_sandbox(&self) -> Result<Vec<api::PodSandbox>, CriError> {
        let mut s = self.lock();
        s.injected("ListPodSandbox")?;
        Ok(s.sandboxes
            .iter()
            .map(|(id, x)| api::PodSandbox {
                id: id.to_string(),
                metadata: x.config.metadata.clone(),
                state: sandbox_state(x.ready) as i32,
                created_at: x.created_at,
                labels: x.config.labels.clone(),
                annotations: x.config.annotations.clone(),
                runtime_handler: String::new(),
            })
            .collect())
    }

    async fn create_container(
        &self,
        sandbox: &SandboxId,
        config: api::ContainerConfig,
        _sandbox_config: api::PodSandboxConfig,
    ) -> Result<ContainerId, CriError> {
        let mut s = self.lock();
        let meta = config.metadata.clone().unwrap_or_default();
        s.calls.push(Call::CreateContainer {
            name: meta.name,
            attempt: meta.attempt,
        });
        s.injected("CreateContainer")?;
        if !s.sandboxes.get(sandbox).is_some_and(|x| x.ready) {
            return Err(refused(
                "CreateContainer",
                format!("sandbox {sandbox} is not ready"),
            ));
        }
        let image = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if !s.images.contains(&image) {
            return Err(not_found("CreateContainer", &image));
        }
        let id = ContainerId::new(s.id("container-"));
        s.containers.insert(
            id.clone(),
            Container {
                sandbox: sandbox.clone(),
                config,
                state: api::ContainerState::ContainerCreated,
                created_at: now(),
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &ContainerId) -> Result<(), CriError> {
        let mut s = self.lock();
        s.calls.push(Call::StartContainer(id.clone()));
        s.injected("StartContainer")?;
        let exits = {
            let c = s.container("StartContainer", id)?;
            c.config.metadata.as_ref().map(|m| m.name.clone())
        };
        let exit = exits.and_then(|n| s.exit_on_start.get(&n).copied());
        let c = s.container("StartContainer", id)?;
        if c.state != api::ContainerState::ContainerCreated {
            return Err(refused(
                "StartContainer",
                format!("container {id} is not in the created state"),
            ));
        }
        let t = now();
        c.started_at = t;
        match exit {
            Some(code) => {
                c.state = api::ContainerState::ContainerExited;
                c.exit_code = code;
                c.finished_at = t;
            }
            None => c.state = api::ContainerState::ContainerRunning,
        }
        Ok(())
    }

    async fn stop_container(&self, id: &ContainerId, grace: Duration) -> Result<(), CriError> {
        let mut s = self.lock();
        s.calls.push(Call::StopContainer(id.clone(), grace));
        s.injected("StopContainer")?;
        let c = s.container("StopContainer", id)?;
        if c.state == api::ContainerState::ContainerRunning {
            c.state = api::ContainerState::ContainerExited;
            c.exit_code = STOPPED_EXIT_CODE;
            c.finished_at = now();
        }
        Ok(())
    }

    /// Idempotent, as the CRI requires; a running container is refused.
    async fn remove_container(&self, id: &ContainerId) -> Result<(), CriError> {
        let mut s = self.lock();
        s.calls.push(Call::RemoveContainer(id.clone()));
        s.injected("RemoveContainer")?;
        if s.containers
            .get(id)
            .is_some_and(|c| c.state == api::ContainerState::ContainerRunning)
        {
            return Err(refused(
                "RemoveContainer",
                format!("container {id} is running"),
            ));
        }
        s.containers.remove(id);
        Ok(())
    }

    async fn list_containers(&self) -> Result<Vec<api::Container>, CriError> {
        let mut s = self.lock();
        s.injected("ListContainers")?;
        Ok(s.containers
            .iter()
            .map(|(id, c)| api::Container {
                id: id.to_string(),
                pod_sandbox_id: c.sandbox.to_string(),
                metadata: c.config.metadata.clone(),
                image: c.config.image.clone(),
                state: c.state as i32,
                created_at: c.created_at,
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
                ..Default::default()
            })
            .collect())
    }

    async fn container_status(&self, id: &ContainerId) -> Result<api::ContainerStatus, CriError> {
        let mut s = self.lock();
        s.injected("ContainerStatus")?;
        let c = s
            .containers
            .get(id)
            .ok_or_else(|| not_found("ContainerStatus", id.as_str()))?;
        let log_dir = s
            .sandboxes
            .get(&c.sandbox)
            .map(|x| x.config.log_directory.clone())
            .unwrap_or_default();
        Ok(container_status(id, c, &log_dir))
    }

    async fn exec_sync(
        &self,
        id: &ContainerId,
        cmd: Vec<String>,
        _timeout: Duration,
    ) -> Result<api::ExecSyncResponse, CriError> {
        let mut s = self.lock();
        s.calls.push(Call::ExecSync(id.clone(), cmd));
        s.injected("ExecSync")?;
        if s.container("ExecSync", id)?.state != api::ContainerState::ContainerRunning {
            return Err(refused(
                "ExecSync",
                format!("container {id} is not running"),
            ));
        }
        Ok(api::ExecSyncResponse::default())
    }

    async fn exec(&self, _req: api::ExecRequest) -> Result<String, CriError> {
        Err(unimplemented("Exec"))
    }

    async fn attach(&self, _req: api::AttachRequest) -> Result<String, CriError> {
        Err(unimplemented("Attach"))
    }

    async fn port_forward(&self, _req: api::PortForwardRequest) -> Result<String, CriError> {
        Err(unimplemented("PortForward"))
    }

    async fn reopen_container_log(&self, id: &ContainerId) -> Result<(), CriError> {
        let mut s = self.lock();
        s.injected("ReopenContainerLog")?;
        s.container("ReopenContainerLog", id).map(drop)
    }

    async fn image_status(&self, image: &str) -> Result<Option<api::Image>, CriError> {
        let mut s = self.lock();
        s.injected("ImageStatus")?;
        Ok(s.images.contains(image).then(|| api::Image {
            id: format!("sha256:{image}"),
            repo_tags: vec![image.to_string()],
            ..Default::default()
        }))
    }

    async fn pull_image(
        &self,
        image: &str,
        _sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String, CriError> {
        let mut s = self.lock();
        s.calls.push(Call::PullImage(image.to_string()));
        s.injected("PullImage")?;
        s.images.insert(image.to_string());
        Ok(format!("sha256:{image}"))
    }
}

fn sandbox_state(ready: bool) -> api::PodSandboxState {
    if ready {
        api::PodSandboxState::SandboxReady
    } else {
        api::PodSandboxState::SandboxNotready
    }
}

fn unimplemented(op: &'static str) -> CriError {
    CriError::Status {
        op,
        code: tonic::Code::Unimplemented,
        message: "the fake runtime has no streaming server".into(),
    }
}
