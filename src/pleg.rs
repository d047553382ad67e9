//! The pod lifecycle event generator: relists the runtime every second, keeps the observed
//! state of every pod (the cache the workers read), and turns differences between relists
//! into events that wake the affected pod's worker.
//!
//! Cost stays flat as pods grow: each relist is two list calls; per-container status calls
//! are made only for containers whose listed state changed since the previous relist.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::cri::{ContainerId, Cri, Runtime, SandboxId, api};
use crate::pod::PodUid;
use crate::pod::labels;
use crate::pod::observed::{
    ContainerState, ObservedContainer, ObservedPod, ObservedSandbox, SandboxState,
};

/// Upstream's relist period and health threshold.
pub const RELIST_PERIOD: Duration = Duration::from_secs(1);
pub const UNHEALTHY_AFTER: Duration = Duration::from_secs(180);
/// Upstream's event channel capacity; events beyond it are dropped and counted.
pub const EVENT_CAPACITY: usize = 1000;

/// The observed state of all pods as of one relist.
#[derive(Debug)]
pub struct Snapshot {
    /// 0 before the first relist, then counting relists.
    pub generation: u64,
    /// When the relist that produced this began: anything done before it is reflected.
    pub relist_started: Instant,
    pub pods: HashMap<PodUid, Arc<ObservedPod>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlegEventKind {
    ContainerStarted(String),
    ContainerDied(String),
    ContainerRemoved(String),
    SandboxChanged,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlegEvent {
    pub uid: PodUid,
    pub kind: PlegEventKind,
}

/// Relist latency and liveness, shared with whoever reports health.
#[derive(Debug, Default)]
pub struct PlegHealth {
    inner: Mutex<HealthInner>,
}

#[derive(Debug, Default, Clone)]
struct HealthInner {
    last_relist: Option<(Instant, SystemTime)>,
    durations: crate::metrics::Histogram,
    discarded_events: u64,
}

/// A point-in-time view of PLEG health for reports.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PlegReport {
    pub healthy: bool,
    pub last_relist_unix: Option<f64>,
    pub relists: u64,
    pub relist_p50_seconds: f64,
    pub relist_p99_seconds: f64,
    pub discarded_events: u64,
}

impl PlegHealth {
    /// Healthy while a relist completed within the last three minutes (upstream's rule),
    /// and during the first three minutes before any relist has completed.
    pub fn healthy(&self, started: Instant) -> bool {
        let inner = self.lock();
        let last = inner.last_relist.map(|(i, _)| i).unwrap_or(started);
        last.elapsed() < UNHEALTHY_AFTER
    }

    pub fn report(&self, started: Instant) -> PlegReport {
        let healthy = self.healthy(started);
        let inner = self.lock();
        PlegReport {
            healthy,
            last_relist_unix: inner.last_relist.and_then(|(_, t)| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs_f64())
            }),
            relists: inner.durations.count(),
            relist_p50_seconds: inner.durations.quantile(0.5),
            relist_p99_seconds: inner.durations.quantile(0.99),
            discarded_events: inner.discarded_events,
        }
    }

    /// The relist latency histogram (for `kubelet_pleg_relist_duration_seconds`).
    pub fn relist_durations(&self) -> crate::metrics::Histogram {
        self.lock().durations.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, took: Duration) {
        let mut inner = self.lock();
        inner.durations.observe(took.as_secs_f64());
        inner.last_relist = Some((Instant::now(), SystemTime::now()));
    }

    fn discarded(&self, n: u64) {
        self.lock().discarded_events += n;
    }
}

/// Per-container list-level facts that decide whether details must be fetched again.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Listed {
    state: i32,
    sandbox_id: String,
    uid: PodUid,
}

pub struct Pleg<R = Cri> {
    cri: R,
    snapshot: watch::Sender<Arc<Snapshot>>,
    events: mpsc::Sender<PlegEvent>,
    health: Arc<PlegHealth>,
    /// Last relist's listing and details, by container id.
    containers: HashMap<String, (Listed, ObservedContainer)>,
    sandboxes: HashMap<String, (i32, PodUid, ObservedSandbox)>,
}

impl<R: Runtime> Pleg<R> {
    pub fn new(
        cri: R,
        events: mpsc::Sender<PlegEvent>,
        health: Arc<PlegHealth>,
    ) -> (Self, watch::Receiver<Arc<Snapshot>>) {
        let (tx, rx) = watch::channel(Arc::new(Snapshot {
            generation: 0,
            relist_started: Instant::now(),
            pods: HashMap::new(),
        }));
        let pleg = Pleg {
            cri,
            snapshot: tx,
            events,
            health,
            containers: HashMap::new(),
            sandboxes: HashMap::new(),
        };
        (pleg, rx)
    }

    /// Relists forever, one relist per period (a slow relist delays the next, never overlaps).
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(RELIST_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u64;
        loop {
            tick.tick().await;
            match self.relist().await {
                Ok(()) if failures > 0 => {
                    tracing::info!(failed_relists = failures, "PLEG relist recovered");
                    failures = 0;
                }
                Ok(()) => {}
                Err(e) => {
                    // Once a second is too loud for a runtime that is down for a while.
                    if failures.is_multiple_of(30) {
                        tracing::warn!(error = %e, failed_relists = failures + 1, "PLEG relist failed");
                    }
                    failures += 1;
                }
            }
        }
    }

    /// One relist: list, fetch details of what changed, publish the snapshot, emit events.
    pub async fn relist(&mut self) -> Result<(), crate::cri::CriError> {
        let started = Instant::now();
        let (sandboxes, containers) =
            tokio::try_join!(self.cri.list_pod_sandbox(), self.cri.list_containers())?;

        // Containers whose listing changed need a ContainerStatus call.
        let mut next_containers = HashMap::with_capacity(containers.len());
        let mut to_fetch = Vec::new();
        for c in &containers {
            let Some(uid) = c.labels.get(labels::POD_UID) else {
                continue;
            };
            let listed = Listed {
                state: c.state,
                sandbox_id: c.pod_sandbox_id.clone(),
                uid: PodUid(uid.clone()),
            };
            match self.containers.get(&c.id) {
                Some((prev, details)) if *prev == listed => {
                    next_containers.insert(c.id.clone(), (listed, details.clone()));
                }
                _ => to_fetch.push((c.id.clone(), listed)),
            }
        }
        let cri = &self.cri;
        let fetched: Vec<_> = futures::stream::iter(to_fetch)
            .map(|(id, listed)| async move {
                let status = cri.container_status(&ContainerId::new(id.as_str())).await;
                (id, listed, status)
            })
            .buffer_unordered(16)
            .collect()
            .await;
        for (id, listed, status) in fetched {
            match status {
                Ok(s) => {
                    let details = ObservedContainer::from_cri(&listed.sandbox_id, &s);
                    next_containers.insert(id, (listed, details));
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!(pod_uid = %listed.uid, container = %id, error = %e, "container status")
                }
            }
        }

        let mut next_sandboxes = HashMap::with_capacity(sandboxes.len());
        for s in &sandboxes {
            let Some(uid) = s.labels.get(labels::POD_UID) else {
                continue;
            };
            let details = match self.sandboxes.get(&s.id) {
                Some((state, _, details)) if *state == s.state => details.clone(),
                _ => self.sandbox_details(s).await,
            };
            next_sandboxes.insert(s.id.clone(), (s.state, PodUid(uid.clone()), details));
        }

        let events = self.diff(&next_sandboxes, &next_containers);
        let pods = build_pods(&sandboxes, &next_sandboxes, &containers, &next_containers);
        self.containers = next_containers;
        self.sandboxes = next_sandboxes;
        let generation = self.snapshot.borrow().generation + 1;
        self.snapshot.send_replace(Arc::new(Snapshot {
            generation,
            relist_started: started,
            pods,
        }));
        let mut discarded = 0;
        for e in events {
            if self.events.try_send(e).is_err() {
                discarded += 1;
            }
        }
        if discarded > 0 {
            self.health.discarded(discarded);
        }
        self.health.record(started.elapsed());
        Ok(())
    }

    async fn sandbox_details(&self, s: &api::PodSandbox) -> ObservedSandbox {
        let state = if s.state == api::PodSandboxState::SandboxReady as i32 {
            SandboxState::Ready
        } else {
            SandboxState::NotReady
        };
        let id = SandboxId::new(s.id.as_str());
        let mut sandbox = ObservedSandbox {
            id: id.clone(),
            attempt: s.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
            state,
            created_at: s.created_at,
            ip: None,
            additional_ips: Vec::new(),
        };
        if state == SandboxState::Ready {
            match self.cri.pod_sandbox_status(&id).await {
                Ok(st) => {
                    if let Some(net) = st.network {
                        sandbox.ip = Some(net.ip).filter(|ip| !ip.is_empty());
                        sandbox.additional_ips =
                            net.additional_ips.into_iter().map(|p| p.ip).collect();
                    }
                }
                Err(e) => tracing::warn!(sandbox = %s.id, error = %e, "sandbox status"),
            }
        }
        sandbox
    }

    fn diff(
        &self,
        next_sandboxes: &HashMap<String, (i32, PodUid, ObservedSandbox)>,
        next_containers: &HashMap<String, (Listed, ObservedContainer)>,
    ) -> Vec<PlegEvent> {
        let mut events = Vec::new();
        let mut push = |uid: &PodUid, kind| {
            events.push(PlegEvent {
                uid: uid.clone(),
                kind,
            })
        };
        for (id, (listed, new)) in next_containers {
            let old = self.containers.get(id).map(|(_, d)| d.state);
            match (old, new.state) {
                (o, ContainerState::Running) if o != Some(ContainerState::Running) => {
                    push(&listed.uid, PlegEventKind::ContainerStarted(id.clone()))
                }
                (o, ContainerState::Exited) if o != Some(ContainerState::Exited) => {
                    push(&listed.uid, PlegEventKind::ContainerDied(id.clone()))
                }
                (None, _) => push(&listed.uid, PlegEventKind::SandboxChanged),
                _ => {}
            }
        }
        for (id, (listed, _)) in &self.containers {
            if !next_containers.contains_key(id) {
                push(&listed.uid, PlegEventKind::ContainerRemoved(id.clone()));
            }
        }
        for (id, (state, uid, _)) in next_sandboxes {
            if self.sandboxes.get(id).is_none_or(|(s, _, _)| s != state) {
                push(uid, PlegEventKind::SandboxChanged);
            }
        }
        for (id, (_, uid, _)) in &self.sandboxes {
            if !next_sandboxes.contains_key(id) {
                push(uid, PlegEventKind::SandboxChanged);
            }
        }
        events
    }
}

fn build_pods(
    listed_sandboxes: &[api::PodSandbox],
    sandboxes: &HashMap<String, (i32, PodUid, ObservedSandbox)>,
    listed_containers: &[api::Container],
    containers: &HashMap<String, (Listed, ObservedContainer)>,
) -> HashMap<PodUid, Arc<ObservedPod>> {
    let mut pods: HashMap<PodUid, ObservedPod> = HashMap::new();
    for s in listed_sandboxes {
        let (Some(uid), Some((_, _, details))) =
            (s.labels.get(labels::POD_UID), sandboxes.get(&s.id))
        else {
            continue;
        };
        let pod = pods.entry(PodUid(uid.clone())).or_default();
        if pod.sandboxes.iter().all(|x| x.created_at < s.created_at) {
            pod.name = s.labels.get(labels::POD_NAME).cloned().unwrap_or_default();
            pod.namespace = s
                .labels
                .get(labels::POD_NAMESPACE)
                .cloned()
                .unwrap_or_default();
            pod.annotations = s
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>();
        }
        pod.sandboxes.push(details.clone());
    }
    for c in listed_containers {
        let (Some(uid), Some((_, details))) =
            (c.labels.get(labels::POD_UID), containers.get(&c.id))
        else {
            continue;
        };
        let pod = pods.entry(PodUid(uid.clone())).or_default();
        if pod.name.is_empty() {
            pod.name = c.labels.get(labels::POD_NAME).cloned().unwrap_or_default();
            pod.namespace = c
                .labels
                .get(labels::POD_NAMESPACE)
                .cloned()
                .unwrap_or_default();
        }
        pod.containers.push(details.clone());
    }
    pods.into_iter()
        .map(|(uid, mut p)| {
            p.sandboxes
                .sort_by_key(|s| std::cmp::Reverse((s.created_at, s.attempt)));
            p.containers
                .sort_by_key(|c| std::cmp::Reverse((c.attempt, c.created_at)));
            (uid, Arc::new(p))
        })
        .collect()
}
