//! Carries out one step's plan over the runtime: kills, sandbox stops and removals, the pod
//! cgroup and sandbox, volumes, image pulls and container starts, and the termination of a
//! whole pod. Generic over the [`Runtime`], so every path is unit-tested against the fake.
//!
//! It decides nothing the plan did not say; what it learns (a failed start, a pull that
//! needs back-off, a sandbox that could not be made) goes into [`ExecMemory`], which the
//! worker keeps and the next plan reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;

use super::cri_config::{self, NodeContext};
use super::lifecycle::{self, Backoff, Plan, StartContainer, Waiting};
use super::observed::{ObservedPod, SandboxState};
use super::worker::WorkerContext;
use super::{DesiredPod, PodUid};
use crate::cri::{ContainerId, CriError, Runtime, SandboxId, api};

/// Upstream's back-off after a failed pod sync (sandbox creation).
pub const SYNC_ERROR_BACKOFF: Duration = Duration::from_secs(10);

/// What execution leaves for the next steps of the same pod.
#[derive(Debug, Default)]
pub struct ExecMemory {
    pub backoff: Backoff,
    /// Why the last attempt to start a container failed (until it starts).
    pub exec_waiting: BTreeMap<String, Waiting>,
    /// No new sandbox attempt or start before this (after a failed one).
    pub retry_after: Option<Instant>,
}

/// One pod's executor for one step.
pub struct Executor<'a, R: Runtime> {
    pub ctx: &'a WorkerContext<R>,
    pub uid: &'a PodUid,
    pub desired: Option<&'a DesiredPod>,
    /// The pod's name for logs.
    pub name: &'a str,
}

/// The pod IP of the newest ready sandbox ("" when none).
pub fn pod_ip_of(observed: &ObservedPod) -> String {
    observed
        .latest_sandbox()
        .filter(|s| s.state == SandboxState::Ready)
        .and_then(|s| s.ip.clone())
        .unwrap_or_default()
}

impl<R: Runtime> Executor<'_, R> {
    /// Executes `plan` against `observed`. `grace` is the pod's grace period, which bounds
    /// the stop of every container the plan kills.
    pub async fn execute(
        &self,
        plan: &Plan,
        observed: Option<&ObservedPod>,
        grace: Duration,
        mem: &mut ExecMemory,
    ) {
        let empty = ObservedPod::default();
        let observed = observed.unwrap_or(&empty);

        if let Some(grace) = plan.kill_pod {
            self.kill_pod(observed, grace).await;
            return;
        }

        let cri = &self.ctx.cri;
        let name = self.name;
        let grace = grace.max(lifecycle::MIN_STOP_GRACE);
        let desired = self.desired;
        let ip = pod_ip_of(observed);
        let ip = &ip;
        if let Some(d) = desired {
            for k in &plan.kill_containers {
                self.ctx.events.pod(
                    &d.pod,
                    crate::events::NORMAL,
                    "Killing",
                    format!("Stopping container {}", k.name),
                );
            }
        }
        join_all(plan.kill_containers.iter().map(|k| async move {
            tracing::info!(pod = %name, container = %k.name, reason = %k.reason, "killing container");
            if let Err(e) = stop_container(cri, desired, &k.name, &k.id, ip, grace).await {
                tracing::warn!(pod = %name, container = %k.name, error = %e, "stop container");
            }
        }))
        .await;
        for id in &plan.stop_sandboxes {
            if let Err(e) = cri.stop_pod_sandbox(id).await {
                tracing::warn!(pod = %name, sandbox = %id, error = %e, "stop sandbox");
            }
        }
        for id in &plan.remove_containers {
            if let Err(e) = cri.remove_container(id).await
                && !e.is_not_found()
            {
                tracing::warn!(pod = %name, container = %id, error = %e, "remove container");
            }
        }
        if plan.start_containers.is_empty() {
            return;
        }
        let Some(desired) = desired else {
            return;
        };
        self.start(plan, observed, desired, mem).await;
    }

    /// The pod cgroup and sandbox when the plan creates one, the volumes, then the starts.
    async fn start(
        &self,
        plan: &Plan,
        observed: &ObservedPod,
        desired: &DesiredPod,
        mem: &mut ExecMemory,
    ) {
        let name = self.name;
        let node = &self.ctx.node;
        let hold_all = |mem: &mut ExecMemory, reason: &str, message: &str| {
            for s in &plan.start_containers {
                mem.exec_waiting
                    .insert(s.name.clone(), waiting(reason, message));
            }
        };
        let sandbox_attempt = plan
            .create_sandbox
            .or_else(|| observed.latest_sandbox().map(|s| s.attempt))
            .unwrap_or(0);
        let resources = match crate::resources::PodResources::from_spec(desired.spec(), true) {
            Ok(r) => r,
            Err(e) => {
                hold_all(mem, "CreateContainerConfigError", &e.to_string());
                return;
            }
        };
        let cgroup_parent = match self.ctx.cgroups.pod_cgroup_parent(self.uid, resources.qos) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(pod = %name, error = %e, "pod cgroup");
                return;
            }
        };
        let sandbox_config =
            match cri_config::sandbox_config(desired, sandbox_attempt, node, &cgroup_parent) {
                Ok(c) => c,
                Err(e) => {
                    hold_all(mem, "CreateContainerConfigError", &e.message);
                    return;
                }
            };
        if plan.create_sandbox.is_some() {
            let limits = crate::resources::pod_cgroup_limits(
                &resources,
                node.cpu_cfs_quota,
                self.ctx.pod_pids_limit,
            );
            let cgroups = Arc::clone(&self.ctx.cgroups);
            let (uid, qos) = (self.uid.clone(), resources.qos);
            let created =
                tokio::task::spawn_blocking(move || cgroups.create_pod_cgroup(&uid, qos, &limits))
                    .await;
            let problem = match created {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(e) = problem {
                tracing::warn!(pod = %name, error = %e, "cannot create the pod cgroup");
                mem.retry_after = Some(Instant::now() + SYNC_ERROR_BACKOFF);
                return;
            }
        }
        let (sandbox_id, pod_ip) = match plan.create_sandbox {
            Some(_) => match self.create_sandbox(&sandbox_config).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(pod = %name, pod_uid = %self.uid, error = %e, "FailedCreatePodSandBox");
                    self.ctx.events.pod(
                        &desired.pod,
                        crate::events::WARNING,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {e}"),
                    );
                    mem.retry_after = Some(Instant::now() + SYNC_ERROR_BACKOFF);
                    return;
                }
            },
            None => match observed
                .latest_sandbox()
                .filter(|s| s.state == SandboxState::Ready)
            {
                Some(s) => (s.id.clone(), s.ip.clone().unwrap_or_default()),
                None => return,
            },
        };
        mem.retry_after = None;
        let prepared = {
            let (pod, pods_dir) = (Arc::clone(&desired.pod), node.pods_dir.clone());
            let (uid, helper) = (desired.uid.0.clone(), self.ctx.helper.clone());
            tokio::task::spawn_blocking(move || match pod.spec.as_ref() {
                Some(spec) => crate::volume::prepare(spec, &pods_dir, &uid, helper.as_deref()),
                None => Ok(()),
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        if let Err(e) = prepared {
            tracing::warn!(pod = %name, error = %e, "cannot prepare volumes");
            hold_all(
                mem,
                "CreateContainerConfigError",
                &format!("preparing volumes: {e}"),
            );
            return;
        }

        let cri = &self.ctx.cri;
        let helper = self.ctx.helper.as_ref();
        let results = join_all(plan.start_containers.iter().map(|s| {
            start_container(
                cri,
                desired,
                s,
                node,
                &sandbox_id,
                &sandbox_config,
                &pod_ip,
                helper,
            )
        }))
        .await;
        let now = super::worker::now_nanos();
        for (s, result) in plan.start_containers.iter().zip(results) {
            match result {
                Ok(()) => {
                    tracing::info!(pod = %name, container = %s.name, attempt = s.attempt, "started container");
                    let ev = &self.ctx.events;
                    ev.pod(
                        &desired.pod,
                        crate::events::NORMAL,
                        "Created",
                        format!("Created container {}", s.name),
                    );
                    ev.pod(
                        &desired.pod,
                        crate::events::NORMAL,
                        "Started",
                        format!("Started container {}", s.name),
                    );
                    mem.exec_waiting.remove(&s.name);
                    mem.backoff.pull.remove(&s.name);
                    if let Some(d) = plan.crash_backoff.get(&s.name) {
                        mem.backoff.crash.insert(s.name.clone(), *d);
                    }
                }
                Err(StartError::Pull(w)) => {
                    tracing::warn!(pod = %name, container = %s.name, reason = %w.reason, message = %w.message, "image");
                    let (reason, message) = if w.reason == "ErrImagePull" {
                        ("Failed", w.message.clone())
                    } else {
                        ("BackOff", format!("Back-off pulling image: {}", w.message))
                    };
                    self.ctx
                        .events
                        .pod(&desired.pod, crate::events::WARNING, reason, message);
                    if w.reason == "ErrImagePull" {
                        let delay = mem
                            .backoff
                            .pull
                            .get(&s.name)
                            .map_or(Duration::ZERO, |(d, _)| *d);
                        mem.backoff
                            .pull
                            .insert(s.name.clone(), (lifecycle::next_delay(delay), now));
                    }
                    mem.exec_waiting.insert(s.name.clone(), w);
                    mem.retry_after = Some(Instant::now() + SYNC_ERROR_BACKOFF);
                }
                Err(StartError::Other(w)) => {
                    tracing::warn!(pod = %name, container = %s.name, reason = %w.reason, message = %w.message, "container not started");
                    mem.exec_waiting.insert(s.name.clone(), w);
                    mem.retry_after = Some(Instant::now() + SYNC_ERROR_BACKOFF);
                }
            }
        }
    }

    async fn create_sandbox(
        &self,
        config: &api::PodSandboxConfig,
    ) -> Result<(SandboxId, String), CriError> {
        let cri = &self.ctx.cri;
        if let Err(e) = tokio::fs::create_dir_all(&config.log_directory).await {
            tracing::warn!(pod = %self.name, dir = %config.log_directory, error = %e, "pod log directory");
        }
        let id = cri.run_pod_sandbox(config.clone()).await?;
        tracing::info!(pod = %self.name, pod_uid = %self.uid, sandbox = %id, "created pod sandbox");
        let ip = match cri.pod_sandbox_status(&id).await {
            Ok(s) => s.network.map(|n| n.ip).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(pod = %self.name, sandbox = %id, error = %e, "sandbox status");
                String::new()
            }
        };
        Ok((id, ip))
    }

    /// Terminates everything the pod has: containers in parallel within the grace period
    /// (SIGTERM, then SIGKILL by the runtime when it expires), then the sandboxes.
    async fn kill_pod(&self, observed: &ObservedPod, grace: Duration) {
        let cri = &self.ctx.cri;
        let name = self.name;
        let started = Instant::now();
        let desired = self.desired;
        let ip = pod_ip_of(observed);
        join_all(observed.running_containers().map(|c| {
            let ip = &ip;
            async move {
                tracing::info!(pod = %name, container = %c.name, grace_seconds = grace.as_secs(), "killing container");
                if let Err(e) = stop_container(cri, desired, &c.name, &c.id, ip, grace).await
                    && !e.is_not_found()
                {
                    tracing::warn!(pod = %name, container = %c.name, error = %e, "stop container");
                }
            }
        }))
        .await;
        for s in &observed.sandboxes {
            if let Err(e) = cri.stop_pod_sandbox(&s.id).await
                && !e.is_not_found()
            {
                tracing::warn!(pod = %name, sandbox = %s.id, error = %e, "stop sandbox");
                continue;
            }
            if let Err(e) = cri.remove_pod_sandbox(&s.id).await
                && !e.is_not_found()
            {
                tracing::warn!(pod = %name, sandbox = %s.id, error = %e, "remove sandbox");
            }
        }
        // Containers whose sandbox was already gone.
        for c in &observed.containers {
            if !observed.sandboxes.iter().any(|s| s.id == c.sandbox_id)
                && let Err(e) = cri.remove_container(&c.id).await
                && !e.is_not_found()
            {
                tracing::warn!(pod = %name, container = %c.name, error = %e, "remove container");
            }
        }
        let cgroups = Arc::clone(&self.ctx.cgroups);
        let uid = self.uid.clone();
        match tokio::task::spawn_blocking(move || cgroups.remove_pod_cgroup(&uid)).await {
            Ok(Err(e)) => tracing::warn!(pod = %name, error = %e, "cannot remove the pod cgroup"),
            Err(e) => tracing::warn!(pod = %name, error = %e, "cannot remove the pod cgroup"),
            Ok(Ok(())) => {}
        }
        let (pods_dir, uid) = (self.ctx.node.pods_dir.clone(), self.uid.0.clone());
        let helper = self.ctx.helper.clone();
        let removed = tokio::task::spawn_blocking(move || {
            crate::volume::remove_pod_dir(&pods_dir, &uid, helper.as_deref())
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = removed {
            tracing::warn!(pod = %name, error = %e, "cannot remove the pod's volume directory");
        }
        tracing::info!(pod = %name, took_ms = started.elapsed().as_millis() as u64, "pod stopped and removed");
    }
}

enum StartError {
    Pull(Waiting),
    Other(Waiting),
}

fn waiting(reason: &str, message: impl Into<String>) -> Waiting {
    Waiting {
        reason: reason.into(),
        message: message.into(),
    }
}

/// Image per pull policy, then create and start. Each failure maps to upstream's reason.
#[allow(clippy::too_many_arguments)]
async fn start_container<R: Runtime>(
    cri: &R,
    pod: &DesiredPod,
    s: &StartContainer,
    node: &NodeContext,
    sandbox_id: &SandboxId,
    sandbox_config: &api::PodSandboxConfig,
    pod_ip: &str,
    helper: Option<&Arc<crate::confine::helper::HelperClient>>,
) -> Result<(), StartError> {
    let spec = pod.spec();
    let list = if s.init {
        spec.init_containers.as_deref().unwrap_or_default()
    } else {
        &spec.containers
    };
    let Some(c) = list.get(s.index) else {
        return Err(StartError::Other(waiting(
            "CreateContainerConfigError",
            "no such container",
        )));
    };
    let image = c.image.as_deref().unwrap_or("");
    let policy = c.image_pull_policy.as_deref().unwrap_or("IfNotPresent");
    let present = match policy {
        "Always" => false,
        _ => match cri.image_status(image).await {
            Ok(i) => i.is_some(),
            Err(e) => {
                return Err(StartError::Pull(waiting(
                    "ImageInspectError",
                    e.to_string(),
                )));
            }
        },
    };
    if !present {
        if policy == "Never" {
            return Err(StartError::Pull(waiting(
                "ErrImageNeverPull",
                format!("container image {image:?} is not present with pull policy of Never"),
            )));
        }
        if let Err(e) = cri.pull_image(image, Some(sandbox_config.clone())).await {
            return Err(StartError::Pull(waiting(
                "ErrImagePull",
                format!("failed to pull image {image:?}: {e}"),
            )));
        }
    }
    // runAsNonRoot: the CRI has no such field, so the agent is the only enforcer. With no
    // runAsUser the image's user decides, as ImageStatus reports it.
    if super::security::context::requires_non_root(&pod.pod, c) {
        let image_user = if super::security::context::needs_image_user(&pod.pod, c) {
            match cri.image_status(image).await {
                Ok(Some(i)) => (i.uid.map(|u| u.value), i.username),
                Ok(None) => (None, String::new()),
                Err(e) => {
                    return Err(StartError::Other(waiting(
                        "CreateContainerConfigError",
                        format!("cannot read the image's user to verify runAsNonRoot: {e}"),
                    )));
                }
            }
        } else {
            (None, String::new())
        };
        let display = format!(
            "{}_{}({})",
            pod.full_name.name, pod.full_name.namespace, pod.uid
        );
        super::security::context::verify_run_as_non_root(
            &pod.pod,
            &display,
            c,
            image_user.0,
            &image_user.1,
        )
        .map_err(|m| StartError::Other(waiting("CreateContainerConfigError", m)))?;
    }
    let config = cri_config::container_config(pod, c, s.attempt, node, pod_ip)
        .map_err(|e| StartError::Other(waiting("CreateContainerConfigError", e.message)))?;
    // subPaths are resolved anew at every start, beneath their volume and following no
    // symlink, and bound by the helper onto the targets the config names.
    let binds = cri_config::sub_path_binds(pod, c, node, pod_ip)
        .map_err(|e| StartError::Other(waiting("CreateContainerConfigError", e.message)))?;
    if !binds.is_empty() {
        let (pods_dir, helper) = (node.pods_dir.clone(), helper.cloned());
        let bound = tokio::task::spawn_blocking(move || {
            crate::volume::subpath::bind_all(&pods_dir, &binds, helper.as_deref())
        })
        .await
        .unwrap_or_else(|e| Err(crate::volume::VolumeError(e.to_string())));
        if let Err(e) = bound {
            tracing::warn!(pod = %pod.full_name, container = %c.name, error = %e, "subPath refused");
            return Err(StartError::Other(waiting(
                "CreateContainerConfigError",
                format!("container {:?}: {e}", c.name),
            )));
        }
    }
    let log_dir = std::path::Path::new(&sandbox_config.log_directory).join(&c.name);
    if let Err(e) = tokio::fs::create_dir_all(&log_dir).await {
        return Err(StartError::Other(waiting(
            "CreateContainerError",
            format!("log directory {}: {e}", log_dir.display()),
        )));
    }
    let id = cri
        .create_container(sandbox_id, config, sandbox_config.clone())
        .await
        .map_err(|e| StartError::Other(waiting("CreateContainerError", e.to_string())))?;
    cri.start_container(&id)
        .await
        .map_err(|e| StartError::Other(waiting("RunContainerError", e.to_string())))?;
    // postStart runs right after the start; if it fails the container is killed, as upstream.
    if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
        let grace = hook_grace(pod);
        let outcome = run_hook(cri, hook, c, &id, pod_ip, grace).await;
        if let Err(message) = outcome {
            tracing::warn!(pod = %pod.full_name, container = %c.name, message = %message, "FailedPostStartHook");
            if let Err(e) = cri.stop_container(&id, grace).await {
                tracing::warn!(pod = %pod.full_name, container = %c.name, error = %e, "stop container");
            }
            return Err(StartError::Other(waiting(
                "PostStartHookError",
                format!("postStart hook failed: {message}"),
            )));
        }
    }
    Ok(())
}

/// The pod's grace period, which also bounds its hooks (upstream bounds preStop by it).
fn hook_grace(pod: &DesiredPod) -> Duration {
    let secs = pod
        .spec()
        .termination_grace_period_seconds
        .unwrap_or(30)
        .max(0) as u64;
    Duration::from_secs(secs).max(lifecycle::MIN_STOP_GRACE)
}

/// Runs a lifecycle hook (exec, httpGet or sleep) against a running container.
async fn run_hook<R: Runtime>(
    cri: &R,
    hook: &k8s_openapi::api::core::v1::LifecycleHandler,
    c: &k8s_openapi::api::core::v1::Container,
    container_id: &ContainerId,
    pod_ip: &str,
    timeout: Duration,
) -> Result<(), String> {
    let handler = crate::probe::Handler::from_lifecycle(hook).map_err(|e| e.to_string())?;
    let target = crate::probe::Target {
        pod_ip: pod_ip.to_string(),
        container_id: container_id.to_string(),
        container: c.clone(),
    };
    let exec = super::probes::CriExec(cri.clone());
    let outcome = crate::probe::run_handler(&handler, &target, &exec, timeout).await;
    if outcome.result.is_success() {
        Ok(())
    } else {
        Err(outcome.message)
    }
}

/// Stops a container: its preStop hook first (within the grace period), then SIGTERM via
/// StopContainer with what is left of the grace (at least 2 s), then SIGKILL by the runtime.
async fn stop_container<R: Runtime>(
    cri: &R,
    pod: Option<&DesiredPod>,
    container: &str,
    container_id: &ContainerId,
    pod_ip: &str,
    grace: Duration,
) -> Result<(), CriError> {
    let spec_container = pod.and_then(|p| p.spec().containers.iter().find(|c| c.name == container));
    let mut left = grace;
    if let Some(c) = spec_container
        && let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
    {
        let started = Instant::now();
        if let Err(message) = run_hook(cri, hook, c, container_id, pod_ip, grace).await {
            tracing::warn!(container, message = %message, "FailedPreStopHook");
        }
        left = grace.saturating_sub(started.elapsed());
    }
    cri.stop_container(container_id, left.max(lifecycle::MIN_STOP_GRACE))
        .await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use tokio::sync::mpsc;

    use super::*;
    use crate::cri::fake::{Call, FakeRuntime};
    use crate::pleg::{Pleg, PlegHealth, Snapshot};
    use crate::pod::lifecycle::Desire;
    use crate::pod::manifest;
    use crate::resources::cgroup::{CgroupIo, V2Hierarchy};
    use crate::resources::{CgroupLayout, Hierarchy, PodCgroups};

    /// Cgroup directories in memory, every controller available, every write accepted:
    /// the executor's tests are about the runtime calls, not the cgroup files.
    #[derive(Debug, Default)]
    struct MemCgroups(Mutex<BTreeSet<PathBuf>>);

    impl CgroupIo for MemCgroups {
        fn create_dir(&self, path: &Path) -> io::Result<()> {
            let mut dirs = self.0.lock().unwrap();
            if !dirs.insert(path.to_path_buf()) {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            Ok(())
        }
        fn remove_dir(&self, path: &Path) -> io::Result<()> {
            self.0.lock().unwrap().remove(path);
            Ok(())
        }
        fn read(&self, path: &Path) -> io::Result<String> {
            Ok(if path.ends_with("cgroup.controllers") {
                "cpu memory pids\n".into()
            } else {
                String::new()
            })
        }
        fn write(&self, _path: &Path, _value: &str) -> io::Result<()> {
            Ok(())
        }
        fn is_dir(&self, path: &Path) -> bool {
            path == Path::new("/cg") || self.0.lock().unwrap().contains(path)
        }
        fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
            let dirs = self.0.lock().unwrap();
            Ok(dirs
                .iter()
                .filter(|d| d.parent() == Some(path))
                .filter_map(|d| d.file_name()?.to_str().map(String::from))
                .collect())
        }
    }

    /// One pod on the fake runtime: the executor's context, a PLEG over the same fake (so
    /// each step plans on what the runtime now says), and the memory a worker would keep.
    struct Rig {
        ctx: WorkerContext<FakeRuntime>,
        pleg: Pleg<FakeRuntime>,
        pod: DesiredPod,
        mem: ExecMemory,
        _events: mpsc::Receiver<crate::pleg::PlegEvent>,
        _status: mpsc::UnboundedReceiver<super::super::worker::StatusUpdate>,
        _dir: tempfile::TempDir,
    }

    const IMAGE: &str = "registry.test/app:1";

    fn desired(spec: &str) -> DesiredPod {
        let y = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: ns1\nspec:\n{spec}"
        );
        manifest::parse(Path::new("/m/web.yaml"), y.as_bytes(), "node1", "t").unwrap()
    }

    fn containers(names: &[&str]) -> String {
        let mut s = String::from("  containers:\n");
        for n in names {
            s.push_str(&format!("  - name: {n}\n    image: {IMAGE}\n"));
        }
        s
    }

    impl Rig {
        fn new(fake: FakeRuntime, spec: &str) -> Rig {
            let dir = tempfile::tempdir().unwrap();
            let (event_tx, events) = mpsc::channel(64);
            let (pleg, snapshots) =
                Pleg::new(fake.clone(), event_tx, Arc::new(PlegHealth::default()));
            let (status_tx, status) = mpsc::unbounded_channel();
            let (probes, _) = crate::probe::ProbeManager::new(Arc::new(
                super::super::probes::CriExec(fake.clone()),
            ));
            let cgroups = PodCgroups::new(
                Hierarchy::V2(V2Hierarchy::new(Arc::new(MemCgroups::default()), "/cg")),
                CgroupLayout::new("/", true).unwrap(),
            );
            let ctx = WorkerContext {
                cri: fake,
                cgroups: Arc::new(cgroups),
                probes,
                pod_pids_limit: -1,
                node: NodeContext {
                    node_name: "node1".into(),
                    node_ip: Some("198.18.0.1".into()),
                    pod_logs_dir: dir.path().join("logs"),
                    pods_dir: dir.path().join("pods"),
                    dns: Default::default(),
                    memory_capacity: 8 << 30,
                    cpu_cfs_quota: true,
                    security: Default::default(),
                },
                runtime_name: "fake".into(),
                snapshots,
                status: status_tx,
                sync_frequency: Duration::from_secs(60),
                events: crate::events::Recorder::disabled(),
                helper: None,
            };
            Rig {
                ctx,
                pleg,
                pod: desired(spec),
                mem: ExecMemory::default(),
                _events: events,
                _status: status,
                _dir: dir,
            }
        }

        /// What the runtime has for the pod, after a relist.
        async fn observe(&mut self) -> Option<Arc<ObservedPod>> {
            self.pleg.relist().await.unwrap();
            let snapshot: Arc<Snapshot> = Arc::clone(&self.ctx.snapshots.borrow());
            snapshot.pods.get(&self.pod.uid).cloned()
        }

        /// One worker step for `desire` (None: run the pod): relist, plan, execute.
        async fn step_with(
            &mut self,
            desire: Option<Desire<'_>>,
            failed: &[lifecycle::FailedProbe],
        ) -> Plan {
            let observed = self.observe().await;
            let pod = self.pod.clone();
            let desire = desire.unwrap_or(Desire::Run(&pod));
            let now = crate::pod::worker::now_nanos();
            let plan = lifecycle::plan(desire, observed.as_deref(), now, &self.mem.backoff, failed);
            let grace = Duration::from_secs(
                pod.spec().termination_grace_period_seconds.unwrap_or(30) as u64,
            );
            Executor {
                ctx: &self.ctx,
                uid: &pod.uid,
                desired: Some(&pod),
                name: "web",
            }
            .execute(&plan, observed.as_deref(), grace, &mut self.mem)
            .await;
            plan
        }

        async fn step(&mut self) -> Plan {
            self.step_with(None, &[]).await
        }
    }

    fn position(calls: &[Call], wanted: impl Fn(&Call) -> bool) -> usize {
        calls.iter().position(wanted).expect("call not made")
    }

    fn created(calls: &[Call]) -> Vec<(String, u32)> {
        calls
            .iter()
            .filter_map(|c| match c {
                Call::CreateContainer { name, attempt } => Some((name.clone(), *attempt)),
                _ => None,
            })
            .collect()
    }

    fn running(o: &ObservedPod) -> Vec<&str> {
        let mut names: Vec<_> = o.running_containers().map(|c| c.name.as_str()).collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_new_pod_gets_its_sandbox_first_then_every_container() {
        let fake = FakeRuntime::new();
        fake.add_image(IMAGE);
        let mut rig = Rig::new(fake.clone(), &containers(&["a", "b"]));
        rig.step().await;

        let calls = fake.calls();
        let sandbox = position(&calls, |c| {
            matches!(c, Call::RunPodSandbox { attempt: 0, .. })
        });
        assert_eq!(sandbox, 0, "{calls:?}");
        let mut made = created(&calls);
        made.sort();
        assert_eq!(made, [("a".into(), 0), ("b".into(), 0)]);
        assert_eq!(
            calls
                .iter()
                .filter(|c| matches!(c, Call::StartContainer(_)))
                .count(),
            2
        );
        assert!(
            !calls.iter().any(|c| matches!(c, Call::PullImage(_))),
            "{calls:?}"
        );

        let o = rig.observe().await.unwrap();
        assert_eq!(running(&o), ["a", "b"]);
        assert_eq!(o.sandboxes.len(), 1);
        assert!(
            o.containers
                .iter()
                .all(|c| c.sandbox_id == o.sandboxes[0].id)
        );
        assert!(
            rig.step().await.is_idle(),
            "a running pod needs nothing more"
        );
    }

    #[tokio::test]
    async fn init_containers_run_to_completion_before_the_app_starts() {
        let fake = FakeRuntime::new();
        fake.add_image(IMAGE);
        let spec = format!(
            "  initContainers:\n  - name: init\n    image: {IMAGE}\n{}",
            containers(&["app"])
        );
        let mut rig = Rig::new(fake.clone(), &spec);
        rig.step().await;
        assert_eq!(created(&fake.calls()), [("init".into(), 0)]);

        // Still running: nothing else starts.
        assert!(rig.step().await.is_idle());
        let init = fake.containers_named("init");
        fake.exit(&init[0], 0, Duration::from_secs(1));
        fake.clear_calls();
        rig.step().await;
        let calls = fake.calls();
        assert_eq!(created(&calls), [("app".into(), 0)]);
        assert!(
            !calls
                .iter()
                .any(|c| matches!(c, Call::RunPodSandbox { .. })),
            "{calls:?}"
        );
    }

    #[tokio::test]
    async fn an_exited_container_restarts_at_once_then_waits_out_its_back_off() {
        let fake = FakeRuntime::new();
        fake.add_image(IMAGE);
        fake.exit_on_start("a", 1);
        let mut rig = Rig::new(fake.clone(), &containers(&["a"]));
        rig.step().await;
        assert_eq!(created(&fake.calls()), [("a".into(), 0)]);

        // First crash: restarted in the same sandbox, and the next delay is remembered.
        fake.clear_calls();
        let restart = rig.step().await;
        assert_eq!(restart.start_containers.len(), 1);
        assert_eq!(created(&fake.calls()), [("a".into(), 1)]);
        assert_eq!(
            rig.mem.backoff.crash.get("a"),
            Some(&lifecycle::BACKOFF_INITIAL)
        );

        // Second crash: held in CrashLoopBackOff, nothing created.
        fake.clear_calls();
        let held = rig.step().await;
        assert!(created(&fake.calls()).is_empty(), "{:?}", fake.calls());
        assert_eq!(held.waiting["a"].reason, "CrashLoopBackOff");
        let wake = held.wake_after.unwrap();
        assert!(
            wake <= lifecycle::BACKOFF_INITIAL && wake > Duration::from_secs(8),
            "{wake:?}"
        );
    }

    #[tokio::test]
    async fn termination_stops_every_container_with_the_pods_grace_then_the_sandbox() {
        let fake = FakeRuntime::new();
        fake.add_image(IMAGE);
        let spec = format!(
            "  terminationGracePeriodSeconds: 7\n{}",
            containers(&["a", "b"])
        );
        let mut rig = Rig::new(fake.clone(), &spec);
        rig.step().await;
        let sandbox = fake.sandbox_ids().remove(0);
        fake.clear_calls();

        let grace = Duration::from_secs(7);
        let plan = rig.step_with(Some(Desire::Terminate { grace }), &[]).await;
        assert_eq!(plan.kill_pod, Some(grace));
        let calls = fake.calls();
        let stops: Vec<_> = calls
            .iter()
            .filter_map(|c| match c {
                Call::StopContainer(_, g) => Some(*g),
                _ => None,
            })
            .collect();
        assert_eq!(stops, [grace, grace]);
        let stop_sandbox = position(&calls, |c| *c == Call::StopPodSandbox(sandbox.clone()));
        let remove_sandbox = position(&calls, |c| *c == Call::RemovePodSandbox(sandbox.clone()));
        let last_stop = calls
            .iter()
            .rposition(|c| matches!(c, Call::StopContainer(..)))
            .unwrap();
        assert!(
            last_stop < stop_sandbox && stop_sandbox < remove_sandbox,
            "{calls:?}"
        );
        assert!(rig.observe().await.is_none(), "nothing is left of the pod");
        assert!(fake.sandbox_ids().is_empty());
    }

    #[tokio::test]
    async fn a_restarted_agent_adopts_the_running_pod_without_a_second_sandbox() {
        let fake = FakeRuntime::new();
        fake.add_image(IMAGE);
        let spec = containers(&["a"]);
        let mut first = Rig::new(fake.clone(), &spec);
        first.step().await;
        drop(first);
        fake.clear_calls();

        // A new agent: fresh PLEG cache, fresh worker memory, same runtime.
        let mut again = Rig::new(fake.clone(), &spec);
        for _ in 0..3 {
            assert!(again.step().await.is_idle());
        }
        assert!(fake.calls().is_empty(), "{:?}", fake.calls());
        assert_eq!(fake.sandbox_ids().len(), 1);
        let o = again.observe().await.unwrap();
        assert_eq!(running(&o), ["a"]);
    }

    #[tokio::test]
    async fn a_failed_sandbox_creation_is_retried_only_after_the_sync_back_off() {
        let fake = FakeRuntime::new();
        fake.add_image(IMAGE);
        fake.fail("RunPodSandbox", 1, tonic::Code::Internal);
        let mut rig = Rig::new(fake.clone(), &containers(&["a"]));
        rig.step().await;
        let calls = fake.calls();
        assert!(created(&calls).is_empty(), "{calls:?}");
        let retry = rig.mem.retry_after.expect("a retry time");
        assert!(retry > Instant::now() + SYNC_ERROR_BACKOFF - Duration::from_secs(1));
        assert!(fake.sandbox_ids().is_empty());
    }

    #[tokio::test]
    async fn images_follow_the_pull_policy_and_failures_become_waiting_reasons() {
        // Absent and Never: not pulled, the container waits with upstream's reason.
        let fake = FakeRuntime::new();
        let spec =
            format!("  containers:\n  - name: a\n    image: {IMAGE}\n    imagePullPolicy: Never\n");
        let mut rig = Rig::new(fake.clone(), &spec);
        rig.step().await;
        assert_eq!(rig.mem.exec_waiting["a"].reason, "ErrImageNeverPull");
        assert!(!fake.calls().iter().any(|c| matches!(c, Call::PullImage(_))));

        // Absent and IfNotPresent: pulled; a failed pull starts the pull back-off.
        let fake = FakeRuntime::new();
        fake.fail("PullImage", 1, tonic::Code::Unavailable);
        let mut rig = Rig::new(fake.clone(), &containers(&["a"]));
        rig.step().await;
        assert_eq!(rig.mem.exec_waiting["a"].reason, "ErrImagePull");
        assert_eq!(rig.mem.backoff.pull["a"].0, lifecycle::BACKOFF_INITIAL);
        assert!(!fake.has_image(IMAGE));
    }

    #[tokio::test]
    async fn a_failed_liveness_probe_stops_that_container_with_the_pods_grace_and_it_restarts() {
        let fake = FakeRuntime::new();
        fake.add_image(IMAGE);
        let spec = format!(
            "  terminationGracePeriodSeconds: 5\n{}",
            containers(&["a", "b"])
        );
        let mut rig = Rig::new(fake.clone(), &spec);
        rig.step().await;
        let a0 = fake.containers_named("a").remove(0);
        let b0 = fake.containers_named("b").remove(0);
        fake.clear_calls();

        let verdict = lifecycle::FailedProbe {
            container_id: a0.clone(),
            container: "a".into(),
            reason: "container failed liveness probe, will be restarted".into(),
        };
        rig.step_with(None, &[verdict]).await;
        assert_eq!(
            fake.calls(),
            [Call::StopContainer(a0.clone(), Duration::from_secs(5))]
        );
        let exited = fake.container_state(&a0).unwrap();
        assert_eq!(
            (exited.0, exited.1),
            (api::ContainerState::ContainerExited, 137)
        );
        assert_eq!(
            fake.container_state(&b0).unwrap().0,
            api::ContainerState::ContainerRunning
        );

        fake.clear_calls();
        rig.step().await;
        let calls = fake.calls();
        assert_eq!(created(&calls), [("a".into(), 1)]);
        assert!(
            !calls
                .iter()
                .any(|c| matches!(c, Call::RunPodSandbox { .. })),
            "{calls:?}"
        );
    }
}
