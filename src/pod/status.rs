//! Pod status as upstream computes it: per-container state, phase, conditions, QoS class.
//! Pure: (desired pod, observed runtime state, what the worker knows) -> v1 PodStatus.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState as K8sState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, PodCondition, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::DesiredPod;
use super::lifecycle::Waiting;
use super::observed::{ContainerState, ObservedContainer, ObservedPod, SandboxState};

/// Inputs beyond the runtime state.
#[derive(Debug, Clone, Default)]
pub struct StatusContext<'a> {
    /// Per container (ready, started) from its probes; a running container without probes
    /// is both.
    pub readiness: Option<&'a BTreeMap<String, (bool, bool)>>,
    /// Waiting reasons the worker decided (back-off, pull errors, create errors).
    pub waiting: Option<&'a BTreeMap<String, Waiting>>,
    /// The runtime's name for container IDs (`containerd://...`).
    pub runtime_name: &'a str,
    pub host_ip: Option<&'a str>,
    /// When the agent first acknowledged the pod (unix ns).
    pub start_time: i64,
    /// The previous status, whose condition transition times are kept when unchanged.
    pub previous: Option<&'a PodStatus>,
}

pub fn time_from_nanos(ns: i64) -> Option<Time> {
    if ns <= 0 {
        return None;
    }
    Timestamp::from_nanosecond(i128::from(ns)).ok().map(Time)
}

pub fn compute(
    pod: &DesiredPod,
    observed: Option<&ObservedPod>,
    ctx: &StatusContext<'_>,
) -> PodStatus {
    let spec = pod.spec();
    let empty = ObservedPod::default();
    let observed = observed.unwrap_or(&empty);
    let runtime = if ctx.runtime_name.is_empty() {
        "containerd"
    } else {
        ctx.runtime_name
    };
    let has_init = spec.init_containers.as_ref().is_some_and(|v| !v.is_empty());

    let statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| {
            let latest = observed.latest_container(&c.name);
            let previous = observed.previous_container(&c.name);
            let waiting = ctx.waiting.and_then(|w| w.get(&c.name));
            let mut st = container_status(c, latest, previous, waiting, has_init, runtime);
            if let Some((ready, started)) = ctx.readiness.and_then(|r| r.get(&c.name)) {
                st.ready = st.ready && *ready;
                st.started = st.started.map(|s| s && *started);
            }
            st
        })
        .collect();

    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let init_statuses: Vec<ContainerStatus> = inits
        .iter()
        .map(|c| {
            let latest = observed.latest_container(&c.name);
            let previous = observed.previous_container(&c.name);
            let waiting = ctx.waiting.and_then(|w| w.get(&c.name));
            let mut st = container_status(c, latest, previous, waiting, false, runtime);
            // An init container is "ready" once it has completed successfully.
            st.ready =
                latest.is_some_and(|o| o.state == ContainerState::Exited && o.exit_code == 0);
            st.started = Some(latest.is_some_and(|o| o.state == ContainerState::Running));
            st
        })
        .collect();
    let app_started = spec
        .containers
        .iter()
        .any(|c| observed.latest_container(&c.name).is_some());
    let initialized = app_started || init_statuses.iter().all(|s| s.ready);
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let init_failed = !initialized
        && policy == "Never"
        && inits.iter().any(|c| {
            observed
                .latest_container(&c.name)
                .is_some_and(|o| o.state == ContainerState::Exited && o.exit_code != 0)
        });

    let sandbox = observed
        .latest_sandbox()
        .filter(|s| s.state == SandboxState::Ready);
    let phase = if init_failed {
        "Failed"
    } else if !initialized {
        "Pending"
    } else {
        phase(spec, &statuses)
    };
    let all_ready = statuses.iter().all(|s| s.ready);
    let now = Time(jiff::Timestamp::now());
    let prev_conditions = ctx.previous.and_then(|p| p.conditions.as_ref());
    let cond = |type_: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        let kept = prev_conditions
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == status))
            .and_then(|c| c.last_transition_time.clone());
        PodCondition {
            type_: type_.into(),
            status: status.into(),
            reason: if ok { None } else { reason.map(str::to_string) },
            last_transition_time: Some(kept.unwrap_or_else(|| now.clone())),
            ..Default::default()
        }
    };
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let conditions = vec![
        cond("PodReadyToStartContainers", sandbox.is_some(), None),
        cond("Initialized", initialized, Some("ContainersNotInitialized")),
        cond(
            "Ready",
            all_ready && !terminal,
            Some(if terminal {
                "PodCompleted"
            } else {
                "ContainersNotReady"
            }),
        ),
        cond(
            "ContainersReady",
            all_ready && !terminal,
            Some(if terminal {
                "PodCompleted"
            } else {
                "ContainersNotReady"
            }),
        ),
        cond("PodScheduled", true, None),
    ];

    let pod_ip = sandbox.and_then(|s| s.ip.clone());
    let host_ip = ctx.host_ip.map(str::to_string);
    let pod_ip = if spec.host_network.unwrap_or(false) {
        host_ip.clone()
    } else {
        pod_ip
    };
    let pod_ips = pod_ip.as_ref().map(|ip| {
        let mut ips = vec![PodIP { ip: ip.clone() }];
        if let Some(s) = sandbox.filter(|_| !spec.host_network.unwrap_or(false)) {
            ips.extend(s.additional_ips.iter().map(|ip| PodIP { ip: ip.clone() }));
        }
        ips
    });

    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        host_ip: host_ip.clone(),
        host_ips: host_ip.map(|ip| vec![k8s_openapi::api::core::v1::HostIP { ip }]),
        pod_ip,
        pod_ips,
        qos_class: Some(qos_class(spec).into()),
        start_time: time_from_nanos(ctx.start_time),
        ..Default::default()
    }
}

fn container_status(
    c: &k8s_openapi::api::core::v1::Container,
    latest: Option<&ObservedContainer>,
    previous: Option<&ObservedContainer>,
    waiting: Option<&Waiting>,
    has_init: bool,
    runtime: &str,
) -> ContainerStatus {
    let default_wait = if has_init {
        "PodInitializing"
    } else {
        "ContainerCreating"
    };
    let waiting_state = |w: Option<&Waiting>| K8sState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(w.map_or(default_wait.to_string(), |w| w.reason.clone())),
            message: w.map(|w| w.message.clone()).filter(|m| !m.is_empty()),
        }),
        ..Default::default()
    };
    let (state, running) = match latest {
        Some(o) if o.state == ContainerState::Running => (
            K8sState {
                running: Some(ContainerStateRunning {
                    started_at: time_from_nanos(o.started_at),
                }),
                ..Default::default()
            },
            true,
        ),
        // An exited container that is held back (back-off) shows as waiting, with the
        // exit in lastState, exactly as upstream does.
        Some(o) if o.state == ContainerState::Exited && waiting.is_none() => {
            (terminated_state(o, runtime), false)
        }
        Some(o) if o.state == ContainerState::Unknown => (
            K8sState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 137,
                    reason: Some("ContainerStatusUnknown".into()),
                    container_id: Some(format!("{runtime}://{}", o.id)),
                    ..Default::default()
                }),
                ..Default::default()
            },
            false,
        ),
        _ => (waiting_state(waiting), false),
    };
    let last_from = match latest {
        Some(o) if o.state == ContainerState::Exited && waiting.is_some() => Some(o),
        _ => previous.filter(|p| p.state == ContainerState::Exited),
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: latest.map(|o| o.image_ref.clone()).unwrap_or_default(),
        container_id: latest.map(|o| format!("{runtime}://{}", o.id)),
        ready: running,
        started: Some(running),
        restart_count: latest.map_or(0, |o| o.attempt as i32),
        state: Some(state),
        last_state: Some(
            last_from.map_or_else(K8sState::default, |o| terminated_state(o, runtime)),
        ),
        ..Default::default()
    }
}

fn terminated_state(o: &ObservedContainer, runtime: &str) -> K8sState {
    let reason = if !o.reason.is_empty() {
        o.reason.clone()
    } else if o.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    K8sState {
        terminated: Some(ContainerStateTerminated {
            exit_code: o.exit_code,
            reason: Some(reason),
            message: Some(o.message.clone()).filter(|m| !m.is_empty()),
            started_at: time_from_nanos(o.started_at),
            finished_at: time_from_nanos(o.finished_at),
            container_id: Some(format!("{runtime}://{}", o.id)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Upstream's getPhase for a pod without init containers (those come with the lifecycle
/// issue).
pub fn phase(spec: &PodSpec, statuses: &[ContainerStatus]) -> &'static str {
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        let st = s.state.as_ref();
        if st.and_then(|s| s.running.as_ref()).is_some() {
            running += 1;
        } else if let Some(t) = st.and_then(|s| s.terminated.as_ref()) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else {
            // Waiting: a container that ran before counts as stopped, otherwise as waiting.
            match s.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
                Some(t) => {
                    stopped += 1;
                    if t.exit_code == 0 {
                        succeeded += 1;
                    }
                }
                None => waiting += 1,
            }
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == statuses.len() && stopped > 0 {
        return match policy {
            "Always" => "Running",
            "OnFailure" if succeeded == stopped => "Succeeded",
            "OnFailure" => "Running",
            _ if succeeded == stopped => "Succeeded",
            _ => "Failed",
        };
    }
    "Pending"
}

/// QoS class by upstream's rules (computed in `resources`, where the quantities are parsed).
pub fn qos_class(spec: &PodSpec) -> &'static str {
    crate::resources::PodResources::from_spec(spec, true)
        .map(|r| r.qos.as_str())
        .unwrap_or("BestEffort")
}

/// How a terminated or waiting pod reads in `kubectl get pods`' STATUS column.
pub fn display_status(status: &PodStatus) -> String {
    if let Some(r) = status.reason.as_ref().filter(|r| !r.is_empty()) {
        return r.clone();
    }
    let mut reason = status.phase.clone().unwrap_or_else(|| "Unknown".into());
    let inits = status
        .init_container_statuses
        .as_deref()
        .unwrap_or_default();
    let initialized = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Initialized" && c.status == "True");
    if !inits.is_empty() && !initialized {
        let done = inits.iter().filter(|s| s.ready).count();
        for s in inits {
            let st = s.state.as_ref();
            if let Some(t) = st
                .and_then(|s| s.terminated.as_ref())
                .filter(|t| t.exit_code != 0)
            {
                return format!(
                    "Init:{}",
                    t.reason.clone().unwrap_or_else(|| "Error".into())
                );
            }
            if let Some(r) = st
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_ref())
                .filter(|r| *r != "PodInitializing" && *r != "ContainerCreating")
            {
                return format!("Init:{r}");
            }
        }
        return format!("Init:{done}/{}", inits.len());
    }
    for cs in status.container_statuses.iter().flatten() {
        let st = cs.state.as_ref();
        if let Some(w) = st.and_then(|s| s.waiting.as_ref())
            && let Some(r) = w.reason.as_ref()
            && r != "ContainerCreating"
        {
            reason = r.clone();
        } else if let Some(t) = st.and_then(|s| s.terminated.as_ref()) {
            reason = t
                .reason
                .clone()
                .unwrap_or_else(|| format!("ExitCode:{}", t.exit_code));
        }
    }
    if reason == "Pending"
        && status
            .container_statuses
            .iter()
            .flatten()
            .any(|c| c.state.as_ref().and_then(|s| s.waiting.as_ref()).is_some())
    {
        reason = "ContainerCreating".into();
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::manifest;
    use crate::pod::observed::ObservedSandbox;
    use std::path::Path;

    fn pod(yaml_spec: &str) -> DesiredPod {
        let y = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n{yaml_spec}");
        manifest::parse(Path::new("/m/p.yaml"), y.as_bytes(), "n", "t").unwrap()
    }

    fn running(name: &str, attempt: u32) -> ObservedContainer {
        ObservedContainer {
            id: format!("{name}{attempt}").into(),
            sandbox_id: "s".into(),
            name: name.into(),
            attempt,
            state: ContainerState::Running,
            created_at: 1,
            started_at: 1_700_000_000_000_000_000,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image: "i:1".into(),
            image_ref: "sha256:abc".into(),
            hash: None,
            grace_seconds: None,
            log_path: String::new(),
        }
    }

    fn exited(name: &str, attempt: u32, code: i32) -> ObservedContainer {
        ObservedContainer {
            state: ContainerState::Exited,
            exit_code: code,
            finished_at: 1_700_000_001_000_000_000,
            ..running(name, attempt)
        }
    }

    fn observed(containers: Vec<ObservedContainer>) -> ObservedPod {
        ObservedPod {
            sandboxes: vec![ObservedSandbox {
                id: "s".into(),
                attempt: 0,
                state: SandboxState::Ready,
                created_at: 1,
                ip: Some("198.18.0.9".into()),
                additional_ips: vec![],
            }],
            containers,
            ..Default::default()
        }
    }

    const TWO: &str = "  containers:\n  - name: a\n    image: i:1\n  - name: b\n    image: i:1\n";

    fn ctx() -> StatusContext<'static> {
        StatusContext {
            runtime_name: "containerd",
            ..Default::default()
        }
    }

    #[test]
    fn running_pod_is_running_and_ready() {
        let p = pod(TWO);
        let o = observed(vec![running("a", 0), running("b", 2)]);
        let s = compute(&p, Some(&o), &ctx());
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("198.18.0.9"));
        let cs = s.container_statuses.unwrap();
        assert!(cs.iter().all(|c| c.ready));
        assert_eq!(cs[1].restart_count, 2);
        assert_eq!(cs[0].container_id.as_deref(), Some("containerd://a0"));
        let ready = s
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    }

    #[test]
    fn nothing_yet_is_pending_container_creating() {
        let p = pod(TWO);
        let s = compute(&p, None, &ctx());
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let w = s.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .waiting
            .unwrap();
        assert_eq!(w.reason.as_deref(), Some("ContainerCreating"));
    }

    #[test]
    fn crash_loop_shows_waiting_with_last_state() {
        let p = pod("  containers:\n  - name: a\n    image: i:1\n");
        let o = observed(vec![exited("a", 3, 2)]);
        let mut waiting = BTreeMap::new();
        waiting.insert(
            "a".to_string(),
            Waiting {
                reason: "CrashLoopBackOff".into(),
                message: "back-off".into(),
            },
        );
        let c = StatusContext {
            waiting: Some(&waiting),
            ..ctx()
        };
        let s = compute(&p, Some(&o), &c);
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("CrashLoopBackOff")
        );
        let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (2, Some("Error")));
        assert_eq!(
            s.phase.as_deref(),
            Some("Running"),
            "Always + stopped = Running"
        );
        assert_eq!(display_status(&s), "CrashLoopBackOff");
    }

    #[test]
    fn phases_follow_restart_policy() {
        let one = |policy: &str| {
            pod(&format!(
                "  restartPolicy: {policy}\n  containers:\n  - name: a\n    image: i:1\n"
            ))
        };
        let cases = [
            ("Never", 0, "Succeeded"),
            ("Never", 1, "Failed"),
            ("OnFailure", 0, "Succeeded"),
            ("Always", 0, "Running"),
        ];
        for (policy, code, want) in cases {
            let s = compute(
                &one(policy),
                Some(&observed(vec![exited("a", 0, code)])),
                &ctx(),
            );
            assert_eq!(s.phase.as_deref(), Some(want), "{policy} exit {code}");
        }
        let done = compute(
            &one("Never"),
            Some(&observed(vec![exited("a", 0, 0)])),
            &ctx(),
        );
        assert_eq!(display_status(&done), "Completed");
    }

    #[test]
    fn init_containers_gate_the_pod() {
        let p = pod(
            "  initContainers:\n  - name: i1\n    image: i:1\n  - name: i2\n    image: i:1\n  containers:\n  - name: a\n    image: i:1\n",
        );
        let o = observed(vec![exited("i1", 0, 0)]);
        let s = compute(&p, Some(&o), &ctx());
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(display_status(&s), "Init:1/2");
        let init = s.init_container_statuses.as_ref().unwrap();
        assert!(init[0].ready && !init[1].ready);
        let cond = |s: &PodStatus| {
            s.conditions
                .clone()
                .unwrap()
                .into_iter()
                .find(|c| c.type_ == "Initialized")
                .unwrap()
        };
        assert_eq!(cond(&s).status, "False");
        let app = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            app.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("PodInitializing")
        );

        let done = compute(
            &p,
            Some(&observed(vec![
                running("a", 0),
                exited("i2", 0, 0),
                exited("i1", 0, 0),
            ])),
            &ctx(),
        );
        assert_eq!(cond(&done).status, "True");
        assert_eq!(done.phase.as_deref(), Some("Running"));

        let never = pod(
            "  restartPolicy: Never\n  initContainers:\n  - name: i1\n    image: i:1\n  containers:\n  - name: a\n    image: i:1\n",
        );
        let failed = compute(&never, Some(&observed(vec![exited("i1", 0, 2)])), &ctx());
        assert_eq!(failed.phase.as_deref(), Some("Failed"));
        assert_eq!(display_status(&failed), "Init:Error");
    }

    #[test]
    fn qos_classes() {
        let be = pod("  containers:\n  - name: a\n    image: i:1\n");
        assert_eq!(qos_class(be.spec()), "BestEffort");
        let g = pod(
            "  containers:\n  - name: a\n    image: i:1\n    resources:\n      limits: {cpu: 100m, memory: 64Mi}\n      requests: {cpu: 100m, memory: 64Mi}\n",
        );
        assert_eq!(qos_class(g.spec()), "Guaranteed");
        let b = pod(
            "  containers:\n  - name: a\n    image: i:1\n    resources:\n      requests: {cpu: 100m}\n",
        );
        assert_eq!(qos_class(b.spec()), "Burstable");
        let zero = pod(
            "  containers:\n  - name: a\n    image: i:1\n    resources:\n      requests: {cpu: '0'}\n",
        );
        assert_eq!(qos_class(zero.spec()), "BestEffort");
    }

    #[test]
    fn transition_times_are_kept_when_unchanged() {
        let p = pod(TWO);
        let o = observed(vec![running("a", 0), running("b", 0)]);
        let first = compute(&p, Some(&o), &ctx());
        std::thread::sleep(std::time::Duration::from_millis(5));
        let c = StatusContext {
            previous: Some(&first),
            ..ctx()
        };
        let second = compute(&p, Some(&o), &c);
        assert_eq!(first.conditions, second.conditions);
    }
}
