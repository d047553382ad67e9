//! One worker per pod: a task that serialises everything done to that pod. Each step reads
//! the newest observed state, asks the pure lifecycle step for a plan, carries it out over
//! the CRI, and reports the pod's status. It never reads another pod's state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tokio::sync::{mpsc, watch};

use super::cri_config::{self, NodeContext};
use super::lifecycle::{self, Backoff, Desire, Plan, StartContainer, Waiting};
use super::observed::{ObservedPod, SandboxState};
use super::status::{self, StatusContext};
use super::{DesiredPod, PodUid};
use crate::cri::{Cri, CriError};
use crate::pleg::Snapshot;
use crate::resources::Rejection;

/// Upstream's back-off after a failed pod sync (sandbox creation).
const SYNC_ERROR_BACKOFF: Duration = Duration::from_secs(10);
/// Default grace for pods whose spec is unknown (orphans found at start).
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Shared by all workers; read-only.
pub struct WorkerContext {
    pub cri: Cri,
    /// Pod cgroups (kubepods hierarchy), created before and removed after each sandbox.
    pub cgroups: Arc<crate::resources::PodCgroups>,
    /// The one probe scheduler of the node.
    pub probes: crate::probe::ProbeManager,
    pub pod_pids_limit: i64,
    pub node: NodeContext,
    /// The runtime's name, used in container IDs (`containerd://...`).
    pub runtime_name: String,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub status: mpsc::UnboundedSender<StatusUpdate>,
    pub sync_frequency: Duration,
    /// Kubernetes Events (cluster mode; disabled standalone).
    pub events: crate::events::Recorder,
}

/// What workers tell the status manager.
#[derive(Debug, Clone)]
pub enum StatusUpdate {
    Set(PodUid, Arc<Pod>),
    Remove(PodUid),
}

/// What the manager tells a worker.
#[derive(Debug)]
pub enum WorkerMsg {
    Update(DesiredPod),
    /// Stop the pod; `None` uses the pod's own terminationGracePeriodSeconds.
    Terminate(Option<Duration>),
    /// The PLEG saw something change.
    Wake,
    /// A probe's debounced result changed.
    Probe(crate::probe::ProbeUpdate),
}

pub struct WorkerHandle {
    pub tx: mpsc::UnboundedSender<WorkerMsg>,
    /// Becomes true when the pod is fully terminated and its worker has ended.
    pub done: watch::Receiver<bool>,
}

/// Starts a worker. `desired` is None for a pod found in the runtime that nobody wants
/// (it is terminated). `after` are workers that must finish first (an earlier version of
/// the same static pod). `finished` is told the UID when the worker ends.
pub fn spawn(
    ctx: Arc<WorkerContext>,
    uid: PodUid,
    desired: Option<DesiredPod>,
    after: Vec<watch::Receiver<bool>>,
    finished: mpsc::UnboundedSender<PodUid>,
    rejected: Option<Rejection>,
) -> WorkerHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = watch::channel(false);
    let terminate = desired.is_none().then_some(None);
    let worker = Worker {
        ctx,
        uid: uid.clone(),
        desired,
        terminate,
        backoff: Backoff::default(),
        waiting: BTreeMap::new(),
        last_action: None,
        last_status: None,
        start_time: now_nanos(),
        retry_after: None,
        rejected,
        probes: super::probes::PodProbes::default(),
        probe_kills: Vec::new(),
        exec_waiting: BTreeMap::new(),
        seen_at: Instant::now(),
        start_recorded: false,
    };
    tokio::spawn(async move {
        let ended = worker.run(rx, after).await;
        if ended {
            let _ = done_tx.send(true);
            let _ = finished.send(uid);
        }
    });
    WorkerHandle { tx, done: done_rx }
}

/// The pod IP of the newest ready sandbox ("" when none).
fn pod_ip_of(observed: &ObservedPod) -> String {
    observed
        .latest_sandbox()
        .filter(|s| s.state == SandboxState::Ready)
        .and_then(|s| s.ip.clone())
        .unwrap_or_default()
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

struct Worker {
    ctx: Arc<WorkerContext>,
    uid: PodUid,
    desired: Option<DesiredPod>,
    /// Some once the pod is to be terminated (with an optional grace override).
    terminate: Option<Option<Duration>>,
    backoff: Backoff,
    waiting: BTreeMap<String, Waiting>,
    /// When the last action finished: later steps need a relist that began after it.
    last_action: Option<Instant>,
    last_status: Option<PodStatus>,
    start_time: i64,
    /// No new sandbox attempt before this (after a failed one).
    retry_after: Option<Instant>,
    /// Refused at admission: the pod is Failed and nothing is ever created for it.
    rejected: Option<Rejection>,
    probes: super::probes::PodProbes,
    /// Containers whose liveness or startup probe failed, to be killed next step.
    probe_kills: Vec<super::probes::ProbeKill>,
    /// Why the last attempt to start a container failed (until it starts).
    exec_waiting: BTreeMap<String, Waiting>,
    /// When this worker first saw the pod, and whether its start has been measured
    /// (`kubelet_pod_start_duration_seconds`).
    seen_at: Instant,
    start_recorded: bool,
}

impl Worker {
    /// Records the time from first sight to every app container running, once. A pod whose
    /// containers already run at the first look was adopted, not started: not measured.
    fn measure_start(&mut self, observed: Option<&ObservedPod>) {
        if self.start_recorded {
            return;
        }
        let (Some(d), Some(o)) = (&self.desired, observed) else {
            return;
        };
        let all_running = d.spec().containers.iter().all(|c| {
            o.latest_container(&c.name)
                .is_some_and(|x| x.state == crate::pod::observed::ContainerState::Running)
        });
        if all_running {
            if self.last_action.is_some() {
                crate::metrics::record_pod_start(self.seen_at.elapsed());
            }
            self.start_recorded = true;
        }
    }

    fn name(&self) -> String {
        match &self.desired {
            Some(d) => d.full_name.to_string(),
            None => format!("(orphan {})", self.uid),
        }
    }

    /// Returns true when the pod was fully terminated, false when the agent is stopping.
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<WorkerMsg>,
        after: Vec<watch::Receiver<bool>>,
    ) -> bool {
        if self.rejected.is_some() {
            return self.run_rejected(rx).await;
        }
        for mut prev in after {
            self.report(None);
            loop {
                tokio::select! {
                    r = prev.wait_for(|done| *done) => { let _ = r; break; }
                    msg = rx.recv() => match msg {
                        Some(m) => self.apply(m),
                        None => return false,
                    },
                }
            }
        }
        let mut snapshots = self.ctx.snapshots.clone();
        loop {
            // Act only on a relist that began after our last action, so an action is never
            // repeated because the state we read predates it.
            let snapshot = {
                let last = self.last_action;
                match snapshots
                    .wait_for(|s| s.generation > 0 && last.is_none_or(|t| s.relist_started > t))
                    .await
                {
                    Ok(s) => Arc::clone(&s),
                    Err(_) => return false,
                }
            };
            let observed = snapshot.pods.get(&self.uid).cloned();
            self.measure_start(observed.as_deref());
            let now = now_nanos();
            // Adopted pods keep the age of their oldest sandbox.
            if let Some(first) = observed.as_ref().and_then(|o| o.sandboxes.last())
                && first.created_at > 0
            {
                self.start_time = self.start_time.min(first.created_at);
            }
            // Probes follow the containers that run now; failed ones are killed first.
            if self.terminate.is_none() {
                if let Some(d) = &self.desired {
                    let pod_ip = observed
                        .as_ref()
                        .and_then(|o| o.latest_sandbox())
                        .and_then(|s| s.ip.clone())
                        .or_else(|| self.ctx.node.node_ip.clone())
                        .unwrap_or_default();
                    self.probes.sync(
                        &self.ctx.probes,
                        &self.uid.0,
                        &d.spec().containers,
                        observed.as_deref(),
                        &pod_ip,
                    );
                }
            } else {
                self.probes.clear(&self.ctx.probes, &self.uid.0);
                self.probe_kills.clear();
            }
            if !self.probe_kills.is_empty() {
                let grace = self
                    .grace(observed.as_deref())
                    .max(lifecycle::MIN_STOP_GRACE);
                let ip = observed.as_deref().map(pod_ip_of).unwrap_or_default();
                for k in std::mem::take(&mut self.probe_kills) {
                    tracing::info!(pod = %self.name(), container = %k.container, reason = %k.reason, "killing container");
                    let stopped = stop_container(
                        &self.ctx.cri,
                        self.desired.as_ref(),
                        &k.container,
                        &k.container_id,
                        &ip,
                        grace,
                    )
                    .await;
                    if let Err(e) = stopped {
                        tracing::warn!(pod = %self.name(), container = %k.container, error = %e, "stop container");
                    }
                }
                self.last_action = Some(Instant::now());
                continue;
            }
            let grace = self.grace(observed.as_deref());
            let desire = match (&self.terminate, &self.desired) {
                (None, Some(d)) => Desire::Run(d),
                _ => Desire::Terminate { grace },
            };
            let plan = lifecycle::plan(desire, observed.as_deref(), now, &self.backoff);
            if self.terminate.is_none() {
                // Back-off reasons from the plan win over the last execution error.
                let mut w = self.exec_waiting.clone();
                w.extend(plan.waiting.clone());
                self.waiting = w;
            }
            self.report(observed.as_deref());

            if self.terminate.is_some() && observed.as_ref().is_none_or(|o| o.is_empty()) {
                tracing::info!(pod = %self.name(), pod_uid = %self.uid, "pod terminated");
                let _ = self.ctx.status.send(StatusUpdate::Remove(self.uid.clone()));
                return true;
            }

            let held = (plan.create_sandbox.is_some() || !plan.start_containers.is_empty())
                && self.retry_after.is_some_and(|t| Instant::now() < t);
            if !plan.is_idle() && !held {
                self.execute(&plan, observed.as_deref()).await;
                self.last_action = Some(Instant::now());
                while let Ok(m) = rx.try_recv() {
                    self.apply(m);
                }
                continue;
            }

            let mut wait = plan.wake_after.unwrap_or(self.ctx.sync_frequency);
            if let Some(t) = self.retry_after.filter(|_| held) {
                wait = wait.min(t.saturating_duration_since(Instant::now()));
            }
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => self.apply(m),
                    None => return false,
                },
                _ = tokio::time::sleep(wait.min(self.ctx.sync_frequency)) => {}
            }
            while let Ok(m) = rx.try_recv() {
                self.apply(m);
            }
        }
    }

    /// A rejected pod: report Failed with the admission reason until it is removed.
    async fn run_rejected(mut self, mut rx: mpsc::UnboundedReceiver<WorkerMsg>) -> bool {
        if let (Some(d), Some(r)) = (&self.desired, &self.rejected) {
            let mut pod = (*d.pod).clone();
            pod.status = Some(PodStatus {
                phase: Some("Failed".into()),
                reason: Some(r.reason.to_string()),
                message: Some(r.message.clone()),
                qos_class: Some(status::qos_class(d.spec()).into()),
                start_time: status::time_from_nanos(self.start_time),
                ..Default::default()
            });
            let _ = self
                .ctx
                .status
                .send(StatusUpdate::Set(self.uid.clone(), Arc::new(pod)));
        }
        loop {
            match rx.recv().await {
                Some(WorkerMsg::Terminate(_)) => {
                    let _ = self.ctx.status.send(StatusUpdate::Remove(self.uid.clone()));
                    return true;
                }
                Some(m) => self.apply(m),
                None => return false,
            }
        }
    }

    fn apply(&mut self, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Update(d) => {
                if self.terminate.is_none() {
                    self.desired = Some(d);
                }
            }
            WorkerMsg::Terminate(grace) => {
                if self.terminate.is_none() {
                    tracing::info!(pod = %self.name(), pod_uid = %self.uid, "terminating pod");
                }
                self.terminate = Some(grace);
            }
            WorkerMsg::Wake => {}
            WorkerMsg::Probe(u) => {
                let name = self.name();
                if u.result == crate::probe::ProbeResult::Failure
                    && let Some(d) = &self.desired
                {
                    self.ctx.events.pod(
                        &d.pod,
                        crate::events::WARNING,
                        "Unhealthy",
                        format!("{} probe failed: {}", u.key.kind.as_str(), u.message),
                    );
                }
                if let Some(kill) = self.probes.update(u, &name)
                    && self.terminate.is_none()
                {
                    self.probe_kills.push(kill);
                }
            }
        }
    }

    fn grace(&self, observed: Option<&ObservedPod>) -> Duration {
        if let Some(Some(g)) = self.terminate {
            return g;
        }
        if let Some(d) = &self.desired {
            let secs = d.spec().termination_grace_period_seconds.unwrap_or(30);
            return Duration::from_secs(secs.max(0) as u64);
        }
        observed
            .and_then(|o| o.containers.iter().filter_map(|c| c.grace_seconds).max())
            .map_or(DEFAULT_GRACE, |s| Duration::from_secs(s.max(0) as u64))
    }

    /// Sends the pod's status to the status manager when it changed.
    fn report(&mut self, observed: Option<&ObservedPod>) {
        let Some(desired) = &self.desired else {
            return;
        };
        let readiness = self.probes.readiness(&desired.spec().containers);
        let ctx = StatusContext {
            readiness: Some(&readiness),
            waiting: Some(&self.waiting),
            runtime_name: &self.ctx.runtime_name,
            host_ip: self.ctx.node.node_ip.as_deref(),
            start_time: self.start_time,
            previous: self.last_status.as_ref(),
        };
        let status = status::compute(desired, observed, &ctx);
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let mut pod = (*desired.pod).clone();
        pod.status = Some(status.clone());
        self.last_status = Some(status);
        let _ = self
            .ctx
            .status
            .send(StatusUpdate::Set(self.uid.clone(), Arc::new(pod)));
    }

    async fn execute(&mut self, plan: &Plan, observed: Option<&ObservedPod>) {
        let cri = &self.ctx.cri;
        let name = self.name();
        let empty = ObservedPod::default();
        let observed = observed.unwrap_or(&empty);

        if let Some(grace) = plan.kill_pod {
            self.kill_pod(observed, grace).await;
            return;
        }

        let grace = self.grace(Some(observed)).max(lifecycle::MIN_STOP_GRACE);
        let name = &name;
        let desired = self.desired.as_ref();
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
        let Some(desired) = self.desired.clone() else {
            return;
        };
        let node = &self.ctx.node;
        let sandbox_attempt = plan
            .create_sandbox
            .or_else(|| observed.latest_sandbox().map(|s| s.attempt))
            .unwrap_or(0);
        let resources = match crate::resources::PodResources::from_spec(desired.spec(), true) {
            Ok(r) => r,
            Err(e) => {
                for s in &plan.start_containers {
                    self.exec_waiting.insert(
                        s.name.clone(),
                        waiting("CreateContainerConfigError", e.to_string()),
                    );
                }
                return;
            }
        };
        let cgroup_parent = match self.ctx.cgroups.pod_cgroup_parent(&self.uid, resources.qos) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(pod = %name, error = %e, "pod cgroup");
                return;
            }
        };
        let sandbox_config =
            match cri_config::sandbox_config(&desired, sandbox_attempt, node, &cgroup_parent) {
                Ok(c) => c,
                Err(e) => {
                    for s in &plan.start_containers {
                        self.exec_waiting.insert(
                            s.name.clone(),
                            waiting("CreateContainerConfigError", e.message.clone()),
                        );
                    }
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
                self.retry_after = Some(Instant::now() + SYNC_ERROR_BACKOFF);
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
                    self.retry_after = Some(Instant::now() + SYNC_ERROR_BACKOFF);
                    return;
                }
            },
            None => match observed
                .latest_sandbox()
                .filter(|s| s.state == SandboxState::Ready)
            {
                Some(s) => (s.id.to_string(), s.ip.clone().unwrap_or_default()),
                None => return,
            },
        };
        self.retry_after = None;
        let prepared = {
            let (pod, pods_dir) = (Arc::clone(&desired.pod), node.pods_dir.clone());
            let uid = desired.uid.0.clone();
            tokio::task::spawn_blocking(move || match pod.spec.as_ref() {
                Some(spec) => crate::volume::prepare(spec, &pods_dir, &uid),
                None => Ok(()),
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        if let Err(e) = prepared {
            tracing::warn!(pod = %name, error = %e, "cannot prepare volumes");
            for s in &plan.start_containers {
                self.exec_waiting.insert(
                    s.name.clone(),
                    waiting(
                        "CreateContainerConfigError",
                        format!("preparing volumes: {e}"),
                    ),
                );
            }
            return;
        }

        let results = join_all(plan.start_containers.iter().map(|s| {
            start_container(
                cri,
                &desired,
                s,
                node,
                &sandbox_id,
                &sandbox_config,
                &pod_ip,
            )
        }))
        .await;
        let now = now_nanos();
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
                    self.exec_waiting.remove(&s.name);
                    self.backoff.pull.remove(&s.name);
                    if let Some(d) = plan.crash_backoff.get(&s.name) {
                        self.backoff.crash.insert(s.name.clone(), *d);
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
                        let delay = self
                            .backoff
                            .pull
                            .get(&s.name)
                            .map_or(Duration::ZERO, |(d, _)| *d);
                        self.backoff
                            .pull
                            .insert(s.name.clone(), (lifecycle::next_delay(delay), now));
                    }
                    self.exec_waiting.insert(s.name.clone(), w);
                    self.retry_after = Some(Instant::now() + SYNC_ERROR_BACKOFF);
                }
                Err(StartError::Other(w)) => {
                    tracing::warn!(pod = %name, container = %s.name, reason = %w.reason, message = %w.message, "container not started");
                    self.exec_waiting.insert(s.name.clone(), w);
                    self.retry_after = Some(Instant::now() + SYNC_ERROR_BACKOFF);
                }
            }
        }
    }

    async fn create_sandbox(
        &self,
        config: &crate::cri::api::PodSandboxConfig,
    ) -> Result<(String, String), CriError> {
        let cri = &self.ctx.cri;
        if let Err(e) = tokio::fs::create_dir_all(&config.log_directory).await {
            tracing::warn!(pod = %self.name(), dir = %config.log_directory, error = %e, "pod log directory");
        }
        let id = cri.run_pod_sandbox(config.clone()).await?;
        tracing::info!(pod = %self.name(), pod_uid = %self.uid, sandbox = %id, "created pod sandbox");
        let ip = match cri.pod_sandbox_status(&id).await {
            Ok(s) => s.network.map(|n| n.ip).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(pod = %self.name(), sandbox = %id, error = %e, "sandbox status");
                String::new()
            }
        };
        Ok((id, ip))
    }

    /// Terminates everything the pod has: containers in parallel within the grace period
    /// (SIGTERM, then SIGKILL by the runtime when it expires), then the sandboxes.
    async fn kill_pod(&self, observed: &ObservedPod, grace: Duration) {
        let cri = &self.ctx.cri;
        let name = self.name();
        let started = Instant::now();
        let desired = self.desired.as_ref();
        let ip = pod_ip_of(observed);
        join_all(observed.running_containers().map(|c| {
            let name = &name;
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
        let removed =
            tokio::task::spawn_blocking(move || crate::volume::remove_pod_dir(&pods_dir, &uid))
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
async fn start_container(
    cri: &Cri,
    pod: &DesiredPod,
    s: &StartContainer,
    node: &NodeContext,
    sandbox_id: &str,
    sandbox_config: &crate::cri::api::PodSandboxConfig,
    pod_ip: &str,
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
        let pods_dir = node.pods_dir.clone();
        let bound = tokio::task::spawn_blocking(move || {
            crate::volume::subpath::bind_all(&pods_dir, &binds)
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
async fn run_hook(
    cri: &Cri,
    hook: &k8s_openapi::api::core::v1::LifecycleHandler,
    c: &k8s_openapi::api::core::v1::Container,
    container_id: &str,
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
async fn stop_container(
    cri: &Cri,
    pod: Option<&DesiredPod>,
    container: &str,
    container_id: &str,
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
