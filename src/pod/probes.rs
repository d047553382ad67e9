//! A worker's view of its containers' probes: registers them with the shared scheduler when
//! a container starts running (again when it is replaced), keeps the debounced results, and
//! says what they mean: readiness and started for the status, a kill for a failed liveness
//! or startup probe. The scheduler itself (src/probe) decides nothing about containers.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Container, Probe};

use super::lifecycle::FailedProbe;
use super::observed::{ContainerState, ObservedPod};
use crate::cri::{ContainerId, Cri, Runtime};
use crate::probe::{
    Exec, ExecResult, ProbeKey, ProbeKind, ProbeManager, ProbeResult, ProbeUpdate, Target,
};

/// ExecSync for probes and hooks, over any runtime.
pub struct CriExec<R = Cri>(pub R);

impl<R: Runtime> Exec for CriExec<R> {
    fn exec_sync(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> BoxFuture<'_, ExecResult> {
        let id = ContainerId::new(container_id);
        Box::pin(async move {
            Runtime::exec_sync(&self.0, &id, cmd, timeout)
                .await
                .map(|r| (r.exit_code, r.stdout, r.stderr))
                .map_err(|e| crate::probe::ExecError(e.to_string()))
        })
    }
}

fn probe_of(c: &Container, kind: ProbeKind) -> Option<&Probe> {
    match kind {
        ProbeKind::Liveness => c.liveness_probe.as_ref(),
        ProbeKind::Readiness => c.readiness_probe.as_ref(),
        ProbeKind::Startup => c.startup_probe.as_ref(),
    }
}

const KINDS: [ProbeKind; 3] = [
    ProbeKind::Liveness,
    ProbeKind::Readiness,
    ProbeKind::Startup,
];

#[derive(Default)]
pub struct PodProbes {
    /// Container name → the container id whose probes are registered.
    registered: HashMap<String, ContainerId>,
    results: HashMap<(String, ProbeKind), ProbeResult>,
}

impl PodProbes {
    /// Registers probes of containers that run now and unregisters those that stopped.
    pub fn sync(
        &mut self,
        mgr: &ProbeManager,
        uid: &str,
        containers: &[Container],
        observed: Option<&ObservedPod>,
        pod_ip: &str,
    ) {
        for c in containers {
            let running = observed
                .and_then(|o| o.latest_container(&c.name))
                .filter(|o| o.state == ContainerState::Running);
            let current = self.registered.get(&c.name);
            match running {
                Some(o) if current != Some(&o.id) => {
                    let started_at = instant_of(o.started_at);
                    for kind in KINDS {
                        let key = ProbeKey {
                            pod_uid: uid.to_string(),
                            container: c.name.clone(),
                            kind,
                        };
                        self.results.remove(&(c.name.clone(), kind));
                        mgr.remove(key.clone());
                        if let Some(p) = probe_of(c, kind) {
                            let target = Target {
                                pod_ip: pod_ip.to_string(),
                                container_id: o.id.to_string(),
                                container: c.clone(),
                            };
                            if let Err(e) = mgr.add(key, p.clone(), target, started_at) {
                                tracing::warn!(container = %c.name, error = %e, "probe not registered");
                            }
                        }
                    }
                    self.registered.insert(c.name.clone(), o.id.clone());
                }
                Some(_) => {}
                None => {
                    if self.registered.remove(&c.name).is_some() {
                        for kind in KINDS {
                            self.results.remove(&(c.name.clone(), kind));
                            mgr.remove(ProbeKey {
                                pod_uid: uid.to_string(),
                                container: c.name.clone(),
                                kind,
                            });
                        }
                    }
                }
            }
        }
    }

    /// Takes a result; returns the verdict for the plan when a liveness or startup probe
    /// failed.
    pub fn update(&mut self, u: ProbeUpdate, pod: &str) -> Option<FailedProbe> {
        if self.registered.get(&u.key.container).map(|id| id.as_str())
            != Some(u.container_id.as_str())
        {
            return None; // about a container already replaced
        }
        let kind = u.key.kind;
        self.results
            .insert((u.key.container.clone(), kind), u.result);
        if u.result.is_success() {
            return None;
        }
        let what = match kind {
            ProbeKind::Liveness => "liveness",
            ProbeKind::Startup => "startup",
            ProbeKind::Readiness => {
                tracing::info!(pod, container = %u.key.container, message = %u.message, "Unhealthy: readiness probe failed");
                return None;
            }
        };
        tracing::warn!(pod, container = %u.key.container, message = %u.message, "Unhealthy: {what} probe failed, the container will be restarted");
        Some(FailedProbe {
            container_id: ContainerId::new(u.container_id),
            container: u.key.container,
            reason: format!("container failed {what} probe, will be restarted"),
        })
    }

    /// Per container: (ready, started) as the probes say, for running containers.
    pub fn readiness(&self, containers: &[Container]) -> BTreeMap<String, (bool, bool)> {
        containers
            .iter()
            .map(|c| {
                let ok = |kind| {
                    probe_of(c, kind).is_none()
                        || self
                            .results
                            .get(&(c.name.clone(), kind))
                            .is_some_and(|r| r.is_success())
                };
                let started = ok(ProbeKind::Startup);
                (
                    c.name.clone(),
                    (started && ok(ProbeKind::Readiness), started),
                )
            })
            .collect()
    }

    pub fn clear(&mut self, mgr: &ProbeManager, uid: &str) {
        mgr.remove_pod(uid);
        self.registered.clear();
        self.results.clear();
    }
}

/// The monotonic instant of a CRI (unix ns) timestamp.
fn instant_of(unix_ns: i64) -> Instant {
    let now_unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let ago = Duration::from_nanos(now_unix.saturating_sub(unix_ns).max(0) as u64);
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}
