//! The pod lifecycle step: a pure function from (desired pod, observed runtime state, time,
//! back-off memory, failed probes) to the actions that move the runtime toward the desired
//! state.
//!
//! No I/O happens here; the worker executes the plan. Keeping the decision pure is what lets
//! the whole restart and termination policy be unit-tested without a runtime.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use sha2::{Digest, Sha256};

use super::DesiredPod;
use super::observed::{ContainerState, ObservedContainer, ObservedPod, SandboxState};
use crate::cri::ids::{ContainerId, SandboxId};

/// Upstream's CrashLoopBackOff and image pull back-off: 10 s doubling to 300 s.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting starts its back-off afresh.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);
/// Upstream's floor for the time a container is given to stop.
pub const MIN_STOP_GRACE: Duration = Duration::from_secs(2);

/// What the node should do with a pod.
#[derive(Clone, Copy, Debug)]
pub enum Desire<'a> {
    Run(&'a DesiredPod),
    /// Stop and remove everything the pod has, giving containers `grace` to exit.
    Terminate {
        grace: Duration,
    },
}

/// Back-off memory a worker keeps between steps (by container name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    /// Delay to apply before the next restart after a crash.
    pub crash: HashMap<String, Duration>,
    /// Image pull failures: delay and the unix-ns time it counts from.
    pub pull: HashMap<String, (Duration, i64)>,
}

/// The next back-off delay after `current` (0 means none yet).
pub fn next_delay(current: Duration) -> Duration {
    if current.is_zero() {
        BACKOFF_INITIAL
    } else {
        (current * 2).min(BACKOFF_MAX)
    }
}

/// Why a container is not running, as upstream reports it in `state.waiting`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KillContainer {
    pub id: ContainerId,
    pub name: String,
    pub reason: String,
}

/// A liveness or startup probe of this container instance failed: it is killed, then
/// restarted as the restart policy says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedProbe {
    pub container_id: ContainerId,
    pub container: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartContainer {
    /// Index into `spec.containers`, or `spec.initContainers` when `init`.
    pub index: usize,
    pub name: String,
    pub attempt: u32,
    pub init: bool,
}

/// The actions of one step, executed in field order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Terminate everything: stop all containers with this grace, stop and remove sandboxes.
    pub kill_pod: Option<Duration>,
    pub kill_containers: Vec<KillContainer>,
    /// Sandboxes to stop (their network is released).
    pub stop_sandboxes: Vec<SandboxId>,
    /// Containers to remove (old exited instances, or ones created but never started).
    pub remove_containers: Vec<ContainerId>,
    /// Create a new sandbox with this attempt number; starts then go into it.
    pub create_sandbox: Option<u32>,
    pub start_containers: Vec<StartContainer>,
    /// Back-off delays to remember for containers started in this step.
    pub crash_backoff: BTreeMap<String, Duration>,
    /// Containers held back, and why.
    pub waiting: BTreeMap<String, Waiting>,
    /// Step again after this long even if nothing happens (a back-off expiring).
    pub wake_after: Option<Duration>,
}

impl Plan {
    /// True when the plan changes nothing in the runtime.
    pub fn is_idle(&self) -> bool {
        self.kill_pod.is_none()
            && self.kill_containers.is_empty()
            && self.stop_sandboxes.is_empty()
            && self.remove_containers.is_empty()
            && self.create_sandbox.is_none()
            && self.start_containers.is_empty()
    }
}

/// The hash recorded on a container at creation; a mismatch means the spec changed in a way
/// that needs a restart. As upstream since 1.31, only name and image count: other mutable
/// fields are either immutable in the API or resized in place.
pub fn container_hash(c: &Container) -> String {
    let mut h = Sha256::new();
    h.update(c.name.as_bytes());
    h.update(b"\0");
    h.update(c.image.as_deref().unwrap_or("").as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// Computes the next actions. `now` is unix nanoseconds (the CRI's clock). A container
/// whose probe failed is killed first, alone in its step, and the pod is planned again on
/// the state that follows (where it has exited and restarts as policy says).
pub fn plan(
    desire: Desire<'_>,
    observed: Option<&ObservedPod>,
    now: i64,
    backoff: &Backoff,
    failed_probes: &[FailedProbe],
) -> Plan {
    let empty = ObservedPod::default();
    let observed = observed.unwrap_or(&empty);
    match desire {
        Desire::Terminate { grace } => {
            let mut plan = Plan::default();
            if !observed.is_empty() {
                plan.kill_pod = Some(grace.max(MIN_STOP_GRACE));
            }
            plan
        }
        Desire::Run(pod) => {
            let kill_containers = probe_kills(observed, failed_probes);
            if kill_containers.is_empty() {
                plan_run(pod, observed, now, backoff)
            } else {
                Plan {
                    kill_containers,
                    ..Plan::default()
                }
            }
        }
    }
}

/// Kills for failed probes of containers that still run (a verdict about an instance that
/// has exited or been replaced meanwhile is moot), one per container.
fn probe_kills(observed: &ObservedPod, failed: &[FailedProbe]) -> Vec<KillContainer> {
    let mut kills: Vec<KillContainer> = Vec::new();
    for f in failed {
        let runs = observed
            .running_containers()
            .any(|c| c.id == f.container_id);
        if runs && !kills.iter().any(|k| k.id == f.container_id) {
            kills.push(KillContainer {
                id: f.container_id.clone(),
                name: f.container.clone(),
                reason: f.reason.clone(),
            });
        }
    }
    kills
}

/// Whether a container that exited with `exit_code` should run again under `policy`.
fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Always" => true,
        "OnFailure" => exit_code != 0,
        _ => false,
    }
}

fn plan_run(pod: &DesiredPod, observed: &ObservedPod, now: i64, backoff: &Backoff) -> Plan {
    let spec = pod.spec();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let host_network = spec.host_network.unwrap_or(false);
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let mut plan = Plan::default();

    let ready: Vec<_> = observed
        .sandboxes
        .iter()
        .filter(|s| s.state == SandboxState::Ready)
        .collect();
    let latest = observed.latest_sandbox();
    let sandbox_ok = match latest {
        Some(s) => {
            s.state == SandboxState::Ready && ready.len() == 1 && (host_network || s.ip.is_some())
        }
        None => false,
    };
    let current = latest.filter(|_| sandbox_ok).map(|s| s.id.as_str());
    let init = init_progress(inits, spec, observed, current, policy);

    // Which app containers want to run, ignoring back-off for the moment.
    let mut wanted = Vec::new();
    for (index, c) in spec.containers.iter().enumerate() {
        let hash = container_hash(c);
        let current = observed.latest_container(&c.name);
        let want = match current {
            None => Want::Start(0),
            Some(o) => match o.state {
                ContainerState::Running | ContainerState::Unknown if sandbox_ok => {
                    if o.hash.as_deref().is_some_and(|h| h != hash) {
                        Want::Replace(o)
                    } else {
                        Want::Keep
                    }
                }
                // Its sandbox is going away; it restarts in the new one as policy allows.
                ContainerState::Running | ContainerState::Unknown => Want::Start(o.attempt + 1),
                ContainerState::Created => Want::Recreate(o),
                ContainerState::Exited => {
                    if should_restart(policy, o.exit_code) {
                        Want::Restart(o)
                    } else {
                        Want::Done
                    }
                }
            },
        };
        wanted.push((index, c, want));
    }
    let any_to_start = wanted
        .iter()
        .any(|(_, _, w)| !matches!(w, Want::Keep | Want::Done));

    if !sandbox_ok {
        // Upstream: a pod that may not restart and already ran gets no new sandbox.
        let ran_before = !observed.containers.is_empty();
        let init_failed = matches!(init, InitProgress::Failed);
        let may_create = any_to_start && !(policy == "Never" && ran_before) && !init_failed;
        for s in &ready {
            plan.stop_sandboxes.push(s.id.clone());
        }
        for c in observed.running_containers() {
            plan.kill_containers.push(KillContainer {
                id: c.id.clone(),
                name: c.name.clone(),
                reason: "pod sandbox changed, the container will be restarted".into(),
            });
        }
        if !may_create {
            return plan;
        }
        plan.create_sandbox = Some(latest.map(|s| s.attempt + 1).unwrap_or(0));
        // A new sandbox runs the init containers again, from the first.
        if let Some(first) = inits.first() {
            let attempt = observed
                .latest_container(&first.name)
                .map_or(0, |o| o.attempt + 1);
            plan.start_containers.push(StartContainer {
                index: 0,
                name: first.name.clone(),
                attempt,
                init: true,
            });
            return plan;
        }
    } else {
        match init {
            InitProgress::Done => {}
            InitProgress::Running => return plan,
            InitProgress::Failed => {
                // restartPolicy Never and an init container failed: the pod has failed.
                if let Some(s) = latest {
                    plan.stop_sandboxes.push(s.id.clone());
                }
                return plan;
            }
            InitProgress::Start { index, attempt } => {
                let name = inits[index].name.clone();
                if let Some(w) = pull_backoff(&name, backoff, now, &mut plan) {
                    plan.waiting.insert(name, w);
                } else {
                    plan.start_containers.push(StartContainer {
                        index,
                        name,
                        attempt,
                        init: true,
                    });
                }
                return plan;
            }
            InitProgress::Recreate { index, container } => {
                plan.remove_containers.push(container.id.clone());
                plan.start_containers.push(StartContainer {
                    index,
                    name: container.name.clone(),
                    attempt: container.attempt,
                    init: true,
                });
                return plan;
            }
            InitProgress::Restart { index, container } => {
                restart_with_backoff(pod, container, index, true, now, backoff, &mut plan);
                return plan;
            }
        }
        if !any_to_start && !wanted.iter().any(|(_, _, w)| matches!(w, Want::Keep)) {
            // Every container finished for good: release the sandbox's network, keep the
            // exited containers for status and logs.
            if let Some(s) = latest {
                plan.stop_sandboxes.push(s.id.clone());
            }
        }
    }

    for (index, c, want) in wanted {
        let name = c.name.clone();
        let start = |attempt| StartContainer {
            index,
            name: name.clone(),
            attempt,
            init: false,
        };
        match want {
            Want::Keep | Want::Done => {}
            Want::Start(attempt) => {
                if let Some(w) = pull_backoff(&name, backoff, now, &mut plan) {
                    plan.waiting.insert(name.clone(), w);
                } else {
                    plan.start_containers.push(start(attempt));
                }
            }
            Want::Replace(o) => {
                plan.kill_containers.push(KillContainer {
                    id: o.id.clone(),
                    name: name.clone(),
                    reason: "container spec changed, the container will be restarted".into(),
                });
                plan.start_containers.push(start(o.attempt + 1));
            }
            Want::Recreate(o) => {
                plan.remove_containers.push(o.id.clone());
                plan.start_containers.push(start(o.attempt));
            }
            Want::Restart(o) => restart_with_backoff(pod, o, index, false, now, backoff, &mut plan),
        }
    }

    // Containers the spec no longer names are stopped.
    for c in observed.running_containers() {
        let known = spec
            .containers
            .iter()
            .chain(inits)
            .any(|s| s.name == c.name);
        if !known && !plan.kill_containers.iter().any(|k| k.id == c.id) {
            plan.kill_containers.push(KillContainer {
                id: c.id.clone(),
                name: c.name.clone(),
                reason: "container is not in the pod spec".into(),
            });
        }
    }

    // Keep the newest two instances of each container (the current one and the one that
    // gives lastState and `logs --previous`); remove older exited ones.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for c in &observed.containers {
        let n = seen.entry(c.name.as_str()).or_default();
        *n += 1;
        if *n > 2 && c.state == ContainerState::Exited && !plan.remove_containers.contains(&c.id) {
            plan.remove_containers.push(c.id.clone());
        }
    }
    plan
}

/// Restarts an exited container once its crash back-off has passed (immediately after the
/// first crash, then 10 s doubling to 300 s; reset after a 10-minute run).
fn restart_with_backoff(
    pod: &DesiredPod,
    o: &ObservedContainer,
    index: usize,
    init: bool,
    now: i64,
    backoff: &Backoff,
    plan: &mut Plan,
) {
    let name = o.name.clone();
    let ran = Duration::from_nanos(o.finished_at.saturating_sub(o.started_at).max(0) as u64);
    let delay = if ran >= BACKOFF_RESET_AFTER {
        Duration::ZERO
    } else {
        backoff.crash.get(&name).copied().unwrap_or_default()
    };
    let ready_at = o.finished_at.saturating_add(delay.as_nanos() as i64);
    if now < ready_at {
        let left = Duration::from_nanos((ready_at - now) as u64);
        plan.waiting.insert(
            name.clone(),
            Waiting {
                reason: "CrashLoopBackOff".into(),
                message: format!(
                    "back-off {}s restarting failed container={} pod={}",
                    delay.as_secs(),
                    name,
                    pod.full_name.name
                ),
            },
        );
        plan.wake_after = Some(plan.wake_after.map_or(left, |w| w.min(left)));
    } else if let Some(w) = pull_backoff(&name, backoff, now, plan) {
        plan.waiting.insert(name, w);
    } else {
        plan.crash_backoff.insert(name.clone(), next_delay(delay));
        plan.start_containers.push(StartContainer {
            index,
            name,
            attempt: o.attempt + 1,
            init,
        });
    }
}

/// Where a pod's init containers stand in its current sandbox.
enum InitProgress<'a> {
    /// All ran to completion (or app containers already started).
    Done,
    /// One is running: wait for it.
    Running,
    Start {
        index: usize,
        attempt: u32,
    },
    Restart {
        index: usize,
        container: &'a ObservedContainer,
    },
    Recreate {
        index: usize,
        container: &'a ObservedContainer,
    },
    /// One failed and the pod may not restart it.
    Failed,
}

/// Init containers run one at a time, in order, each to exit 0. Only instances in the
/// current sandbox count: a new sandbox runs them all again.
fn init_progress<'a>(
    inits: &[Container],
    spec: &k8s_openapi::api::core::v1::PodSpec,
    observed: &'a ObservedPod,
    sandbox: Option<&str>,
    policy: &str,
) -> InitProgress<'a> {
    let in_sandbox = |name: &str| {
        observed
            .containers
            .iter()
            .find(|c| c.name == name && Some(c.sandbox_id.as_str()) == sandbox)
    };
    // Once an app container has started in this sandbox, initialization is over.
    if inits.is_empty()
        || spec
            .containers
            .iter()
            .any(|c| in_sandbox(&c.name).is_some())
    {
        return InitProgress::Done;
    }
    for (index, c) in inits.iter().enumerate() {
        let Some(o) = in_sandbox(&c.name) else {
            let attempt = observed
                .latest_container(&c.name)
                .map_or(0, |o| o.attempt + 1);
            return InitProgress::Start { index, attempt };
        };
        match o.state {
            ContainerState::Exited if o.exit_code == 0 => continue,
            ContainerState::Exited if policy == "Never" => return InitProgress::Failed,
            ContainerState::Exited => {
                return InitProgress::Restart {
                    index,
                    container: o,
                };
            }
            ContainerState::Created => {
                return InitProgress::Recreate {
                    index,
                    container: o,
                };
            }
            ContainerState::Running | ContainerState::Unknown => return InitProgress::Running,
        }
    }
    InitProgress::Done
}

/// Holds a container back while its image pull is backing off.
fn pull_backoff(name: &str, backoff: &Backoff, now: i64, plan: &mut Plan) -> Option<Waiting> {
    let (delay, since) = backoff.pull.get(name)?;
    let ready_at = since.saturating_add(delay.as_nanos() as i64);
    if now >= ready_at {
        return None;
    }
    let left = Duration::from_nanos((ready_at - now) as u64);
    plan.wake_after = Some(plan.wake_after.map_or(left, |w| w.min(left)));
    Some(Waiting {
        reason: "ImagePullBackOff".into(),
        message: format!("back-off pulling image for container {name}"),
    })
}

enum Want<'a> {
    Keep,
    Done,
    Start(u32),
    Replace(&'a ObservedContainer),
    Recreate(&'a ObservedContainer),
    Restart(&'a ObservedContainer),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::manifest;
    use crate::pod::observed::ObservedSandbox;
    use std::path::Path;

    const S: i64 = 1_000_000_000;

    fn pod(policy: &str, containers: &[&str]) -> DesiredPod {
        let mut y = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  restartPolicy: {policy}\n  containers:\n"
        );
        for c in containers {
            y.push_str(&format!("  - name: {c}\n    image: img:1\n"));
        }
        manifest::parse(Path::new("/m/p.yaml"), y.as_bytes(), "n", "t").unwrap()
    }

    fn sandbox(id: &str, attempt: u32, ready: bool) -> ObservedSandbox {
        ObservedSandbox {
            id: id.into(),
            attempt,
            state: if ready {
                SandboxState::Ready
            } else {
                SandboxState::NotReady
            },
            created_at: attempt as i64,
            ip: ready.then(|| "198.18.0.2".into()),
            additional_ips: vec![],
        }
    }

    fn container(
        p: &DesiredPod,
        name: &str,
        attempt: u32,
        state: ContainerState,
    ) -> ObservedContainer {
        let spec = p.spec().containers.iter().find(|c| c.name == name);
        ObservedContainer {
            id: format!("{name}-{attempt}").into(),
            sandbox_id: "s0".into(),
            name: name.into(),
            attempt,
            state,
            created_at: 10 * S,
            started_at: 10 * S,
            finished_at: if state == ContainerState::Exited {
                20 * S
            } else {
                0
            },
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image: "img:1".into(),
            image_ref: "sha256:x".into(),
            hash: spec.map(container_hash),
            grace_seconds: None,
            log_path: String::new(),
        }
    }

    fn observed(
        sandboxes: Vec<ObservedSandbox>,
        containers: Vec<ObservedContainer>,
    ) -> ObservedPod {
        ObservedPod {
            name: "p-n".into(),
            namespace: "default".into(),
            sandboxes,
            containers,
            annotations: Default::default(),
        }
    }

    #[test]
    fn new_pod_gets_a_sandbox_and_all_containers() {
        let p = pod("Always", &["a", "b"]);
        let plan = plan(Desire::Run(&p), None, 0, &Backoff::default(), &[]);
        assert_eq!(plan.create_sandbox, Some(0));
        let names: Vec<_> = plan
            .start_containers
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(plan.start_containers.iter().all(|s| s.attempt == 0));
    }

    #[test]
    fn healthy_pod_is_left_alone_which_is_what_adoption_relies_on() {
        let p = pod("Always", &["a", "b"]);
        let o = observed(
            vec![sandbox("s0", 0, true)],
            vec![
                container(&p, "a", 0, ContainerState::Running),
                container(&p, "b", 3, ContainerState::Running),
            ],
        );
        let plan = plan(Desire::Run(&p), Some(&o), 100 * S, &Backoff::default(), &[]);
        assert!(plan.is_idle(), "{plan:?}");
    }

    #[test]
    fn crashed_container_restarts_immediately_then_backs_off() {
        let p = pod("Always", &["a"]);
        let mut c = container(&p, "a", 0, ContainerState::Exited);
        c.exit_code = 1;
        let o = observed(vec![sandbox("s0", 0, true)], vec![c.clone()]);
        let first = plan(Desire::Run(&p), Some(&o), 21 * S, &Backoff::default(), &[]);
        assert_eq!(first.start_containers[0].attempt, 1);
        assert_eq!(first.crash_backoff["a"], BACKOFF_INITIAL);

        let mut backoff = Backoff::default();
        backoff.crash.insert("a".into(), BACKOFF_INITIAL);
        let held = plan(Desire::Run(&p), Some(&o), 25 * S, &backoff, &[]);
        assert!(held.start_containers.is_empty());
        assert_eq!(held.waiting["a"].reason, "CrashLoopBackOff");
        assert_eq!(held.wake_after, Some(Duration::from_secs(5)));

        let after = plan(Desire::Run(&p), Some(&o), 30 * S, &backoff, &[]);
        assert_eq!(after.start_containers.len(), 1);
        assert_eq!(after.crash_backoff["a"], Duration::from_secs(20));
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_resets_after_a_long_run() {
        assert_eq!(next_delay(Duration::ZERO), BACKOFF_INITIAL);
        assert_eq!(next_delay(Duration::from_secs(160)), BACKOFF_MAX);
        assert_eq!(next_delay(BACKOFF_MAX), BACKOFF_MAX);
        let p = pod("Always", &["a"]);
        let mut c = container(&p, "a", 4, ContainerState::Exited);
        c.exit_code = 2;
        c.started_at = 0;
        c.finished_at = 700 * S;
        let o = observed(vec![sandbox("s0", 0, true)], vec![c]);
        let mut backoff = Backoff::default();
        backoff.crash.insert("a".into(), BACKOFF_MAX);
        let plan = plan(Desire::Run(&p), Some(&o), 701 * S, &backoff, &[]);
        assert_eq!(plan.start_containers.len(), 1, "ran 700 s: back-off resets");
        assert_eq!(plan.crash_backoff["a"], BACKOFF_INITIAL);
    }

    #[test]
    fn restart_policy_decides_what_runs_again() {
        for (policy, code, restarts) in [
            ("Always", 0, true),
            ("Always", 1, true),
            ("OnFailure", 0, false),
            ("OnFailure", 1, true),
            ("Never", 0, false),
            ("Never", 1, false),
        ] {
            let p = pod(policy, &["a"]);
            let mut c = container(&p, "a", 0, ContainerState::Exited);
            c.exit_code = code;
            let o = observed(vec![sandbox("s0", 0, true)], vec![c]);
            let plan = plan(Desire::Run(&p), Some(&o), 100 * S, &Backoff::default(), &[]);
            assert_eq!(
                !plan.start_containers.is_empty(),
                restarts,
                "{policy} exit {code}"
            );
            if !restarts {
                assert_eq!(
                    plan.stop_sandboxes,
                    ["s0"],
                    "finished pod releases its sandbox"
                );
            }
        }
    }

    #[test]
    fn finished_never_pod_gets_no_new_sandbox() {
        let p = pod("Never", &["a"]);
        let o = observed(
            vec![sandbox("s0", 0, false)],
            vec![container(&p, "a", 0, ContainerState::Exited)],
        );
        let plan = plan(Desire::Run(&p), Some(&o), 100 * S, &Backoff::default(), &[]);
        assert!(plan.is_idle(), "{plan:?}");
    }

    #[test]
    fn dead_sandbox_is_replaced_and_containers_follow() {
        let p = pod("Always", &["a"]);
        let o = observed(
            vec![sandbox("s0", 0, false)],
            vec![container(&p, "a", 2, ContainerState::Running)],
        );
        let plan = plan(Desire::Run(&p), Some(&o), 100 * S, &Backoff::default(), &[]);
        assert_eq!(plan.create_sandbox, Some(1));
        assert_eq!(plan.kill_containers.len(), 1);
        assert_eq!(plan.start_containers[0].attempt, 3);
    }

    #[test]
    fn changed_image_replaces_the_container() {
        let p = pod("Always", &["a"]);
        let mut c = container(&p, "a", 0, ContainerState::Running);
        c.hash = Some("0000".into());
        let o = observed(vec![sandbox("s0", 0, true)], vec![c]);
        let plan = plan(Desire::Run(&p), Some(&o), 100 * S, &Backoff::default(), &[]);
        assert_eq!(plan.kill_containers[0].id, "a-0");
        assert_eq!(plan.start_containers[0].attempt, 1);
        assert_eq!(plan.create_sandbox, None);
    }

    #[test]
    fn unknown_running_containers_are_stopped_and_old_instances_removed() {
        let p = pod("Always", &["a"]);
        let o = observed(
            vec![sandbox("s0", 0, true)],
            vec![
                container(&p, "a", 3, ContainerState::Running),
                container(&p, "a", 2, ContainerState::Exited),
                container(&p, "a", 1, ContainerState::Exited),
                container(&p, "gone", 0, ContainerState::Running),
            ],
        );
        let plan = plan(Desire::Run(&p), Some(&o), 100 * S, &Backoff::default(), &[]);
        assert_eq!(plan.kill_containers.len(), 1);
        assert_eq!(plan.kill_containers[0].name, "gone");
        assert_eq!(plan.remove_containers, ["a-1"]);
    }

    #[test]
    fn image_pull_backoff_holds_the_start() {
        let p = pod("Always", &["a"]);
        let mut backoff = Backoff::default();
        backoff.pull.insert("a".into(), (BACKOFF_INITIAL, 50 * S));
        let o = observed(vec![sandbox("s0", 0, true)], vec![]);
        let held = plan(Desire::Run(&p), Some(&o), 55 * S, &backoff, &[]);
        assert_eq!(held.waiting["a"].reason, "ImagePullBackOff");
        assert!(held.start_containers.is_empty());
        let later = plan(Desire::Run(&p), Some(&o), 61 * S, &backoff, &[]);
        assert_eq!(later.start_containers.len(), 1);
    }

    #[test]
    fn termination_kills_with_floored_grace_until_nothing_is_left() {
        let p = pod("Always", &["a"]);
        let o = observed(
            vec![sandbox("s0", 0, true)],
            vec![container(&p, "a", 0, ContainerState::Running)],
        );
        let t = plan(
            Desire::Terminate {
                grace: Duration::from_secs(0),
            },
            Some(&o),
            0,
            &Backoff::default(),
            &[],
        );
        assert_eq!(t.kill_pod, Some(MIN_STOP_GRACE));
        let done = plan(
            Desire::Terminate {
                grace: Duration::from_secs(5),
            },
            None,
            0,
            &Backoff::default(),
            &[],
        );
        assert!(done.is_idle());
    }

    fn with_inits(policy: &str) -> DesiredPod {
        let y = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  restartPolicy: {policy}\n  initContainers:\n  - name: i1\n    image: img:1\n  - name: i2\n    image: img:1\n  containers:\n  - name: a\n    image: img:1\n"
        );
        manifest::parse(Path::new("/m/p.yaml"), y.as_bytes(), "n", "t").unwrap()
    }

    fn in_sandbox(mut c: ObservedContainer, sandbox: &str) -> ObservedContainer {
        c.sandbox_id = sandbox.into();
        c
    }

    #[test]
    fn init_containers_run_one_at_a_time_in_order() {
        let p = with_inits("Always");
        let fresh = plan(Desire::Run(&p), None, 0, &Backoff::default(), &[]);
        assert_eq!(fresh.create_sandbox, Some(0));
        let names: Vec<_> = fresh
            .start_containers
            .iter()
            .map(|s| (s.name.as_str(), s.init))
            .collect();
        assert_eq!(names, [("i1", true)]);

        let sb = vec![sandbox("s0", 0, true)];
        let running = observed(
            sb.clone(),
            vec![in_sandbox(
                container(&p, "i1", 0, ContainerState::Running),
                "s0",
            )],
        );
        assert!(plan(Desire::Run(&p), Some(&running), S, &Backoff::default(), &[]).is_idle());

        let first_done = observed(
            sb.clone(),
            vec![in_sandbox(
                container(&p, "i1", 0, ContainerState::Exited),
                "s0",
            )],
        );
        let next = plan(
            Desire::Run(&p),
            Some(&first_done),
            30 * S,
            &Backoff::default(),
            &[],
        );
        assert_eq!(
            next.start_containers
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["i2"]
        );

        let all_done = observed(
            sb.clone(),
            vec![
                in_sandbox(container(&p, "i2", 0, ContainerState::Exited), "s0"),
                in_sandbox(container(&p, "i1", 0, ContainerState::Exited), "s0"),
            ],
        );
        let apps = plan(
            Desire::Run(&p),
            Some(&all_done),
            30 * S,
            &Backoff::default(),
            &[],
        );
        assert_eq!(
            apps.start_containers
                .iter()
                .map(|s| (s.name.as_str(), s.init))
                .collect::<Vec<_>>(),
            [("a", false)]
        );
    }

    #[test]
    fn failed_init_container_retries_or_fails_the_pod() {
        let sb = vec![sandbox("s0", 0, true)];
        let p = with_inits("OnFailure");
        let mut failed = in_sandbox(container(&p, "i1", 0, ContainerState::Exited), "s0");
        failed.exit_code = 1;
        let o = observed(sb.clone(), vec![failed.clone()]);
        let retry = plan(Desire::Run(&p), Some(&o), 30 * S, &Backoff::default(), &[]);
        assert_eq!(retry.start_containers[0].name, "i1");
        assert_eq!(retry.start_containers[0].attempt, 1);

        let never = with_inits("Never");
        let o = observed(sb, vec![failed]);
        let stop = plan(
            Desire::Run(&never),
            Some(&o),
            30 * S,
            &Backoff::default(),
            &[],
        );
        assert!(stop.start_containers.is_empty());
        assert_eq!(stop.stop_sandboxes, ["s0"]);
    }

    #[test]
    fn container_hash_covers_name_and_image_only() {
        let p = pod("Always", &["a"]);
        let mut c = p.spec().containers[0].clone();
        let h = container_hash(&c);
        c.args = Some(vec!["x".into()]);
        assert_eq!(container_hash(&c), h);
        c.image = Some("img:2".into());
        assert_ne!(container_hash(&c), h);
    }

    fn failed(id: &str, container: &str) -> FailedProbe {
        FailedProbe {
            container_id: id.into(),
            container: container.into(),
            reason: "container failed liveness probe, will be restarted".into(),
        }
    }

    #[test]
    fn a_failed_probe_kills_that_container_alone_then_it_restarts_by_policy() {
        let p = pod("Always", &["a", "b"]);
        let o = observed(
            vec![sandbox("s0", 0, true)],
            vec![
                container(&p, "a", 0, ContainerState::Running),
                container(&p, "b", 0, ContainerState::Running),
            ],
        );
        let kill = plan(
            Desire::Run(&p),
            Some(&o),
            100 * S,
            &Backoff::default(),
            &[failed("a-0", "a")],
        );
        assert_eq!(
            kill,
            Plan {
                kill_containers: vec![KillContainer {
                    id: "a-0".into(),
                    name: "a".into(),
                    reason: "container failed liveness probe, will be restarted".into(),
                }],
                ..Plan::default()
            }
        );
        // Liveness and startup failing together still kill once.
        let both = [failed("a-0", "a"), failed("a-0", "a")];
        let once = plan(
            Desire::Run(&p),
            Some(&o),
            100 * S,
            &Backoff::default(),
            &both,
        );
        assert_eq!(once.kill_containers.len(), 1);

        // On the next state the killed instance has exited and is restarted.
        let exited = observed(
            vec![sandbox("s0", 0, true)],
            vec![
                container(&p, "a", 0, ContainerState::Exited),
                container(&p, "b", 0, ContainerState::Running),
            ],
        );
        let next = plan(
            Desire::Run(&p),
            Some(&exited),
            100 * S,
            &Backoff::default(),
            &[],
        );
        assert_eq!(next.start_containers.len(), 1);
        assert_eq!(
            (
                next.start_containers[0].name.as_str(),
                next.start_containers[0].attempt
            ),
            ("a", 1)
        );
    }

    #[test]
    fn a_verdict_about_an_instance_that_no_longer_runs_changes_nothing() {
        let p = pod("Always", &["a"]);
        let o = observed(
            vec![sandbox("s0", 0, true)],
            vec![
                container(&p, "a", 1, ContainerState::Running),
                container(&p, "a", 0, ContainerState::Exited),
            ],
        );
        let stale = plan(
            Desire::Run(&p),
            Some(&o),
            100 * S,
            &Backoff::default(),
            &[failed("a-0", "a")],
        );
        assert!(stale.is_idle(), "{stale:?}");
        let current = plan(
            Desire::Run(&p),
            Some(&o),
            100 * S,
            &Backoff::default(),
            &[failed("a-1", "a")],
        );
        assert_eq!(current.kill_containers.len(), 1);
        assert_eq!(current.kill_containers[0].id, "a-1");
    }

    #[test]
    fn termination_ignores_failed_probes() {
        let p = pod("Always", &["a"]);
        let o = observed(
            vec![sandbox("s0", 0, true)],
            vec![container(&p, "a", 0, ContainerState::Running)],
        );
        let grace = Duration::from_secs(9);
        let t = plan(
            Desire::Terminate { grace },
            Some(&o),
            0,
            &Backoff::default(),
            &[failed("a-0", "a")],
        );
        assert_eq!(t.kill_pod, Some(grace));
        assert!(t.kill_containers.is_empty());
    }
}
