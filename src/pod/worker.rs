//! One worker per pod: a task that serialises everything done to that pod. Each step reads
//! the newest observed state, asks the pure lifecycle step for a plan, hands it to the
//! [`Executor`](super::executor::Executor), and reports the pod's status. This module is the
//! message loop; it never reads another pod's state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tokio::sync::{mpsc, watch};

use super::cri_config::NodeContext;
use super::executor::{ExecMemory, Executor};
use super::lifecycle::{self, Desire, Waiting};
use super::observed::ObservedPod;
use super::status::{self, StatusContext};
use super::{DesiredPod, PodUid};
use crate::cri::{Cri, Runtime};
use crate::pleg::Snapshot;
use crate::resources::Rejection;

/// Default grace for pods whose spec is unknown (orphans found at start).
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Shared by all workers; read-only.
pub struct WorkerContext<R = Cri> {
    pub cri: R,
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
    /// The mount helper (memory emptyDirs, subPath binds); None in tests without one.
    pub helper: Option<Arc<crate::confine::helper::HelperClient>>,
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
pub fn spawn<R: Runtime>(
    ctx: Arc<WorkerContext<R>>,
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
        mem: ExecMemory::default(),
        waiting: BTreeMap::new(),
        last_action: None,
        last_status: None,
        start_time: now_nanos(),
        rejected,
        probes: super::probes::PodProbes::default(),
        probe_kills: Vec::new(),
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

pub(super) fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

struct Worker<R> {
    ctx: Arc<WorkerContext<R>>,
    uid: PodUid,
    desired: Option<DesiredPod>,
    /// Some once the pod is to be terminated (with an optional grace override).
    terminate: Option<Option<Duration>>,
    /// Back-off, start errors and the sync retry, kept across steps for the executor.
    mem: ExecMemory,
    waiting: BTreeMap<String, Waiting>,
    /// When the last action finished: later steps need a relist that began after it.
    last_action: Option<Instant>,
    last_status: Option<PodStatus>,
    start_time: i64,
    /// Refused at admission: the pod is Failed and nothing is ever created for it.
    rejected: Option<Rejection>,
    probes: super::probes::PodProbes,
    /// Containers whose liveness or startup probe failed, for the next plan.
    probe_kills: Vec<lifecycle::FailedProbe>,
    /// When this worker first saw the pod, and whether its start has been measured
    /// (`kubelet_pod_start_duration_seconds`).
    seen_at: Instant,
    start_recorded: bool,
}

impl<R: Runtime> Worker<R> {
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
            // Probes follow the containers that run now; failed ones go into the plan.
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
            let grace = self.grace(observed.as_deref());
            let desire = match (&self.terminate, &self.desired) {
                (None, Some(d)) => Desire::Run(d),
                _ => Desire::Terminate { grace },
            };
            // Failed probes are the plan's to act on; each verdict is planned once.
            let plan = lifecycle::plan(
                desire,
                observed.as_deref(),
                now,
                &self.mem.backoff,
                &self.probe_kills,
            );
            self.probe_kills.clear();
            if self.terminate.is_none() {
                // Back-off reasons from the plan win over the last execution error.
                let mut w = self.mem.exec_waiting.clone();
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
                && self.mem.retry_after.is_some_and(|t| Instant::now() < t);
            if !plan.is_idle() && !held {
                let name = self.name();
                Executor {
                    ctx: &self.ctx,
                    uid: &self.uid,
                    desired: self.desired.as_ref(),
                    name: &name,
                }
                .execute(&plan, observed.as_deref(), grace, &mut self.mem)
                .await;
                self.last_action = Some(Instant::now());
                while let Ok(m) = rx.try_recv() {
                    self.apply(m);
                }
                continue;
            }

            let mut wait = plan.wake_after.unwrap_or(self.ctx.sync_frequency);
            if let Some(t) = self.mem.retry_after.filter(|_| held) {
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
}
