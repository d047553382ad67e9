//! The Node object and its status, as pure functions of the readings: registration builds
//! the whole object, the status loop rebuilds `status` every nodeStatusUpdateFrequency and
//! sends it when it differs from the last one sent (heartbeat times aside) or when
//! nodeStatusReportFrequency has passed. Condition reasons and messages are upstream's
//! (KK `pkg/kubelet/nodestatus/setters.go`), so dashboards and alerts keep working.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::info::{MachineIds, Signals};
use crate::resources::{Allocatable, Capacity, HardEviction, Threshold};

pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_OS: &str = "kubernetes.io/os";
pub const LABEL_ARCH: &str = "kubernetes.io/arch";

/// Everything about the node that does not change while the agent runs.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    pub name: String,
    pub hostname: String,
    pub internal_ip: Option<String>,
    pub taints: Vec<Taint>,
    pub capacity: Capacity,
    pub allocatable: Allocatable,
    pub ids: MachineIds,
    pub os_image: String,
    /// `containerd://1.6.20`
    pub runtime_version: String,
    pub kubelet_version: String,
    pub arch: String,
    pub kubelet_port: u16,
    /// `--node-labels` (validated kubelet-settable keys); the agent's own labels win.
    pub extra_labels: BTreeMap<String, String>,
}

/// Why the node is or is not ready, from the runtime and the PLEG.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    /// Problems that make the node not ready, in upstream's wording.
    pub problems: Vec<String>,
}

/// Builds the Node that registration creates.
pub fn node_object(facts: &NodeFacts, conditions: Vec<NodeCondition>) -> Node {
    let mut labels = facts.extra_labels.clone();
    labels.extend([
        (LABEL_HOSTNAME.to_owned(), facts.hostname.clone()),
        (LABEL_OS.to_owned(), "linux".to_owned()),
        (LABEL_ARCH.to_owned(), facts.arch.clone()),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(facts.name.clone()),
            labels: Some(labels),
            // Upstream marks nodes whose volumes the controller attaches.
            annotations: Some(BTreeMap::from([(
                "volumes.kubernetes.io/controller-managed-attach-detach".to_owned(),
                "true".to_owned(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!facts.taints.is_empty()).then(|| facts.taints.clone()),
            ..Default::default()
        }),
        status: Some(node_status(facts, conditions)),
    }
}

fn resources(
    cpu_milli: i64,
    memory: i64,
    storage: Option<i64>,
    pods: i64,
) -> BTreeMap<String, Quantity> {
    let mut m = BTreeMap::new();
    let cpu = if cpu_milli % 1000 == 0 {
        (cpu_milli / 1000).to_string()
    } else {
        format!("{cpu_milli}m")
    };
    m.insert("cpu".into(), Quantity(cpu));
    m.insert("memory".into(), Quantity(memory.to_string()));
    m.insert("pods".into(), Quantity(pods.to_string()));
    if let Some(s) = storage {
        m.insert("ephemeral-storage".into(), Quantity(s.to_string()));
    }
    m
}

/// The whole status the agent owns.
pub fn node_status(facts: &NodeFacts, conditions: Vec<NodeCondition>) -> NodeStatus {
    let c = &facts.capacity;
    let a = &facts.allocatable;
    let mut addresses = Vec::new();
    if let Some(ip) = &facts.internal_ip {
        addresses.push(NodeAddress {
            type_: "InternalIP".into(),
            address: ip.clone(),
        });
    }
    addresses.push(NodeAddress {
        type_: "Hostname".into(),
        address: facts.hostname.clone(),
    });
    NodeStatus {
        capacity: Some(resources(
            c.cpu_milli,
            c.memory_bytes,
            c.ephemeral_storage_bytes,
            c.pods,
        )),
        allocatable: Some(resources(
            a.cpu_milli,
            a.memory_bytes,
            a.ephemeral_storage_bytes,
            a.pods,
        )),
        addresses: Some(addresses),
        conditions: Some(conditions),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(facts.kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: facts.arch.clone(),
            boot_id: facts.ids.boot_id.clone(),
            container_runtime_version: facts.runtime_version.clone(),
            kernel_version: facts.ids.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: facts.kubelet_version.clone(),
            machine_id: facts.ids.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: facts.os_image.clone(),
            system_uuid: facts.ids.system_uuid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn threshold_bytes(t: Threshold, capacity: i64) -> i64 {
    match t {
        Threshold::Bytes(b) => b,
        Threshold::Percentage(f) => (f64::from(f) * capacity as f64) as i64,
    }
}

/// True when the signal is below its threshold. Missing readings never raise pressure.
fn under(available: Option<i64>, capacity: Option<i64>, threshold: Option<Threshold>) -> bool {
    match (available, capacity, threshold) {
        (Some(avail), Some(cap), Some(t)) => avail < threshold_bytes(t, cap),
        _ => false,
    }
}

/// The four conditions the agent owns, with transition times carried over from `previous`
/// when a condition's status did not change.
pub fn conditions(
    health: &Health,
    signals: &Signals,
    eviction: &HardEviction,
    now: &Time,
    previous: &[NodeCondition],
) -> Vec<NodeCondition> {
    let memory = under(
        signals.memory_available,
        signals.memory_capacity,
        eviction.memory_available,
    );
    let disk = under(
        signals.nodefs_available,
        signals.nodefs_capacity,
        eviction.nodefs_available,
    );
    let pid_available = match (signals.pid_max, signals.pids_in_use) {
        (Some(max), Some(used)) => Some(max - used),
        _ => None,
    };
    let pid = under(pid_available, signals.pid_max, eviction.pid_available);
    let ready = health.problems.is_empty();
    let mk = |type_: &str, status: bool, reason: &str, message: String| {
        let status = if status { "True" } else { "False" }.to_owned();
        let transition = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        NodeCondition {
            type_: type_.to_owned(),
            status,
            reason: Some(reason.to_owned()),
            message: Some(message),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(transition),
        }
    };
    vec![
        if memory {
            mk(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available".into(),
            )
        } else {
            mk(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available".into(),
            )
        },
        if disk {
            mk(
                "DiskPressure",
                true,
                "KubeletHasDiskPressure",
                "kubelet has disk pressure".into(),
            )
        } else {
            mk(
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure".into(),
            )
        },
        if pid {
            mk(
                "PIDPressure",
                true,
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available".into(),
            )
        } else {
            mk(
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available".into(),
            )
        },
        if ready {
            mk(
                "Ready",
                true,
                "KubeletReady",
                "kubelet is posting ready status".into(),
            )
        } else {
            mk(
                "Ready",
                false,
                "KubeletNotReady",
                health.problems.join(", "),
            )
        },
    ]
}

/// The status with heartbeat times blanked, for "did anything change" comparisons.
pub fn without_heartbeats(status: &NodeStatus) -> NodeStatus {
    let mut s = status.clone();
    for c in s.conditions.iter_mut().flatten() {
        c.last_heartbeat_time = None;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn signals() -> Signals {
        Signals {
            memory_capacity: Some(8 << 30),
            memory_available: Some(4 << 30),
            nodefs_capacity: Some(100 << 30),
            nodefs_available: Some(50 << 30),
            pid_max: Some(4_194_304),
            pids_in_use: Some(500),
        }
    }

    fn by_type<'a>(cs: &'a [NodeCondition], ty: &str) -> &'a NodeCondition {
        cs.iter().find(|c| c.type_ == ty).unwrap()
    }

    #[test]
    fn healthy_node_is_ready_without_pressure() {
        let now = t("2026-11-22T10:00:00Z");
        let cs = conditions(
            &Health::default(),
            &signals(),
            &HardEviction::default(),
            &now,
            &[],
        );
        assert_eq!(cs.len(), 4);
        assert_eq!(by_type(&cs, "Ready").status, "True");
        assert_eq!(
            by_type(&cs, "Ready").reason.as_deref(),
            Some("KubeletReady")
        );
        for ty in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            assert_eq!(by_type(&cs, ty).status, "False", "{ty}");
        }
    }

    #[test]
    fn pressure_follows_thresholds_and_transitions_are_kept() {
        let t0 = t("2026-11-22T10:00:00Z");
        let t1 = t("2026-11-22T10:00:10Z");
        let mut s = signals();
        let first = conditions(&Health::default(), &s, &HardEviction::default(), &t0, &[]);
        // Memory drops below 100Mi, disk below 10 %, pids configured at 1000 available.
        s.memory_available = Some(50 << 20);
        s.nodefs_available = Some(5 << 30);
        s.pids_in_use = Some(4_194_304 - 10);
        let eviction = HardEviction {
            pid_available: Some(Threshold::Bytes(1000)),
            ..HardEviction::default()
        };
        let health = Health {
            problems: vec!["container runtime is down".into()],
        };
        let second = conditions(&health, &s, &eviction, &t1, &first);
        assert_eq!(by_type(&second, "MemoryPressure").status, "True");
        assert_eq!(by_type(&second, "DiskPressure").status, "True");
        assert_eq!(by_type(&second, "PIDPressure").status, "True");
        let ready = by_type(&second, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.message.as_deref(), Some("container runtime is down"));
        assert_eq!(ready.last_transition_time, Some(t1.clone()));
        // Unchanged conditions keep their transition time; heartbeats move.
        let third = conditions(&health, &s, &eviction, &t("2026-11-22T10:00:20Z"), &second);
        assert_eq!(by_type(&third, "Ready").last_transition_time, Some(t1));
        assert_ne!(
            by_type(&third, "Ready").last_heartbeat_time,
            by_type(&second, "Ready").last_heartbeat_time
        );
        // Missing readings never raise pressure.
        let blind = conditions(&Health::default(), &Signals::default(), &eviction, &t0, &[]);
        assert!(
            blind
                .iter()
                .filter(|c| c.type_ != "Ready")
                .all(|c| c.status == "False")
        );
    }

    #[test]
    fn node_object_has_upstream_labels_and_resources() {
        let facts = NodeFacts {
            name: "node-a".into(),
            hostname: "node-a".into(),
            internal_ip: Some("198.18.0.5".into()),
            taints: vec![Taint {
                key: "dedicated".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }],
            capacity: Capacity {
                cpu_milli: 2000,
                memory_bytes: 8 << 30,
                ephemeral_storage_bytes: Some(100 << 30),
                pods: 110,
            },
            allocatable: Allocatable {
                cpu_milli: 1900,
                memory_bytes: 7 << 30,
                ephemeral_storage_bytes: Some(90 << 30),
                pods: 110,
            },
            ids: MachineIds::default(),
            os_image: "Debian".into(),
            runtime_version: "containerd://1.6.20".into(),
            kubelet_version: "v1.33.0-ironlet.0.1.0".into(),
            arch: "amd64".into(),
            kubelet_port: 10250,
            extra_labels: BTreeMap::new(),
        };
        let node = node_object(&facts, Vec::new());
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels[LABEL_HOSTNAME], "node-a");
        assert_eq!(labels[LABEL_OS], "linux");
        assert_eq!(labels[LABEL_ARCH], "amd64");
        let status = node.status.unwrap();
        assert_eq!(status.capacity.as_ref().unwrap()["cpu"].0, "2");
        assert_eq!(status.allocatable.as_ref().unwrap()["cpu"].0, "1900m");
        assert_eq!(status.addresses.as_ref().unwrap()[0].type_, "InternalIP");
        assert_eq!(node.spec.unwrap().taints.unwrap()[0].key, "dedicated");
    }
}
