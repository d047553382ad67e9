//! A pod's compute resources, parsed once, validated and defaulted as the API server would.
//!
//! Owns: turning `resources.requests`/`limits` (and `spec.overhead`) into exact values, the
//! API server's defaulting (a missing request takes its limit) and validation (no negative
//! quantity, request <= limit), and the pod-level sums upstream calls `PodRequests` and
//! `PodLimits` (init containers and sidecars included). Must not do I/O.
//!
//! Only `cpu`, `memory` and `ephemeral-storage` are read. Other names (hugepages, extended
//! resources) are ignored here, as the kubelet ignores extended resources the node lacks.
//! Pod-level `spec.resources` (alpha/beta `PodLevelResources`) is not supported yet.

use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

use super::qos::{self, QosClass};
use super::quantity::{QuantityError, QuantityErrorKind, QuantityValue};

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";

/// Pods with this priority class are "node critical" when they are also critical (static,
/// mirror, or priority >= [`SYSTEM_CRITICAL_PRIORITY`]).
pub const SYSTEM_NODE_CRITICAL: &str = "system-node-critical";
/// Upstream `scheduling.SystemCriticalPriority`.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// A resource in a manifest that cannot be used, with the field path the API server would
/// name (`spec.containers[0].resources.requests[cpu]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("{field}: {source}")]
    Quantity {
        field: String,
        #[source]
        source: QuantityError,
    },
    #[error("{field}: invalid value {value:?}: must be greater than or equal to 0")]
    Negative { field: String, value: String },
    #[error(
        "{field}: invalid value {request:?}: must be less than or equal to {resource} limit of {limit:?}"
    )]
    RequestAboveLimit {
        field: String,
        resource: &'static str,
        request: String,
        limit: String,
    },
}

/// The cpu, memory and ephemeral-storage entries of one `ResourceList`, exact.
/// `None` is an absent entry; an explicit `"0"` is `Some(ZERO)` (upstream tells them apart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceList {
    pub cpu: Option<QuantityValue>,
    pub memory: Option<QuantityValue>,
    pub ephemeral_storage: Option<QuantityValue>,
}

impl ResourceList {
    /// Upstream `addResourceList`: an entry is present if it is present on either side.
    pub fn add(&self, other: &ResourceList) -> ResourceList {
        fn add(a: Option<QuantityValue>, b: Option<QuantityValue>) -> Option<QuantityValue> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.saturating_add(b)),
                (a, b) => a.or(b),
            }
        }
        ResourceList {
            cpu: add(self.cpu, other.cpu),
            memory: add(self.memory, other.memory),
            ephemeral_storage: add(self.ephemeral_storage, other.ephemeral_storage),
        }
    }

    /// Upstream `maxResourceList`, entry by entry.
    pub fn max(&self, other: &ResourceList) -> ResourceList {
        fn max(a: Option<QuantityValue>, b: Option<QuantityValue>) -> Option<QuantityValue> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            }
        }
        ResourceList {
            cpu: max(self.cpu, other.cpu),
            memory: max(self.memory, other.memory),
            ephemeral_storage: max(self.ephemeral_storage, other.ephemeral_storage),
        }
    }

    /// cpu in thousandths (0 when absent), rounded up; saturates past `i64`.
    pub fn cpu_milli(&self) -> i64 {
        self.cpu
            .map_or(0, |q| q.milli_value().unwrap_or(saturate(q)))
    }

    /// memory in bytes (0 when absent), rounded up; saturates past `i64`.
    pub fn memory_bytes(&self) -> i64 {
        self.memory.map_or(0, |q| q.value().unwrap_or(saturate(q)))
    }

    /// ephemeral-storage in bytes (0 when absent), rounded up; saturates past `i64`.
    pub fn ephemeral_storage_bytes(&self) -> i64 {
        self.ephemeral_storage
            .map_or(0, |q| q.value().unwrap_or(saturate(q)))
    }
}

/// Sums of many pods can pass `i64`; they are only ever compared with capacities.
fn saturate(q: QuantityValue) -> i64 {
    if q.is_negative() { i64::MIN } else { i64::MAX }
}

/// What an entry of `spec.initContainers` or `spec.containers` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    /// `spec.containers`.
    Regular,
    /// `spec.initContainers` that run to completion before the next one starts.
    Init,
    /// `spec.initContainers` with `restartPolicy: Always`: they keep running beside the
    /// regular containers.
    Sidecar,
}

/// One container's requests and limits after defaulting and validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerResources {
    pub name: String,
    pub kind: ContainerKind,
    pub requests: ResourceList,
    pub limits: ResourceList,
}

/// The resources of a pod, parsed once so the rest of the module never sees a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodResources {
    /// `spec.initContainers` in order (init and sidecar).
    pub init_containers: Vec<ContainerResources>,
    /// `spec.containers` in order.
    pub containers: Vec<ContainerResources>,
    /// `spec.overhead` (set by RuntimeClass admission).
    pub overhead: ResourceList,
    pub qos: QosClass,
    /// Critical (static, mirror, or priority >= 2e9) with priority class
    /// `system-node-critical`: upstream `IsNodeCriticalPod`.
    pub node_critical: bool,
}

impl PodResources {
    /// Parses, defaults and validates `spec`'s resources. `is_static` says the pod came from
    /// a manifest file (upstream: static pods are critical).
    pub fn from_spec(spec: &PodSpec, is_static: bool) -> Result<Self, ResourceError> {
        let init_containers = spec
            .init_containers
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, c)| {
                let kind = if c.restart_policy.as_deref() == Some("Always") {
                    ContainerKind::Sidecar
                } else {
                    ContainerKind::Init
                };
                container(c, kind, &format!("spec.initContainers[{i}]"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let containers = spec
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| container(c, ContainerKind::Regular, &format!("spec.containers[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let overhead = resource_list(spec.overhead.as_ref(), "spec.overhead")?;
        let qos = qos::compute(init_containers.iter().chain(&containers));
        let critical = is_static || spec.priority.is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY);
        let node_critical =
            critical && spec.priority_class_name.as_deref() == Some(SYSTEM_NODE_CRITICAL);
        Ok(PodResources {
            init_containers,
            containers,
            overhead,
            qos,
            node_critical,
        })
    }

    /// Every container, init containers first.
    pub fn all_containers(&self) -> impl Iterator<Item = &ContainerResources> {
        self.init_containers.iter().chain(&self.containers)
    }

    /// The container of that name (init or regular).
    pub fn container(&self, name: &str) -> Option<&ContainerResources> {
        self.all_containers().find(|c| c.name == name)
    }

    /// Upstream `PodRequests`: max(sum of regular containers and sidecars, each init container
    /// plus the sidecars started before it), plus overhead. This is what admission counts.
    pub fn requests(&self) -> ResourceList {
        self.aggregate(|c| &c.requests, |_| {}).add(&self.overhead)
    }

    /// Upstream `PodLimits`, plus whether every container declared a non-zero cpu and memory
    /// limit (the pod cgroup gets a cpu quota / memory limit only then).
    pub fn limits(&self) -> PodLimitsDeclared {
        let mut cpu_declared = true;
        let mut memory_declared = true;
        let mut limits = self.aggregate(
            |c| &c.limits,
            |l| {
                cpu_declared &= l.cpu.is_some_and(|q| !q.is_zero());
                memory_declared &= l.memory.is_some_and(|q| !q.is_zero());
            },
        );
        // Overhead is added only to limits that exist (upstream `PodLimits`).
        if let (Some(l), Some(o)) = (limits.cpu, self.overhead.cpu) {
            limits.cpu = Some(l.saturating_add(o));
        }
        if let (Some(l), Some(o)) = (limits.memory, self.overhead.memory) {
            limits.memory = Some(l.saturating_add(o));
        }
        if let (Some(l), Some(o)) = (limits.ephemeral_storage, self.overhead.ephemeral_storage) {
            limits.ephemeral_storage = Some(l.saturating_add(o));
        }
        PodLimitsDeclared {
            limits,
            cpu_declared,
            memory_declared,
        }
    }

    /// Upstream `AggregateContainerRequests`/`AggregateContainerLimits`. `each` sees what
    /// each container contributes (for init containers: with the sidecars before it).
    fn aggregate(
        &self,
        pick: impl Fn(&ContainerResources) -> &ResourceList,
        mut each: impl FnMut(&ResourceList),
    ) -> ResourceList {
        let mut total = ResourceList::default();
        for c in &self.containers {
            each(pick(c));
            total = total.add(pick(c));
        }
        let mut sidecars = ResourceList::default();
        let mut init_max = ResourceList::default();
        for c in &self.init_containers {
            let during = if c.kind == ContainerKind::Sidecar {
                total = total.add(pick(c));
                sidecars = sidecars.add(pick(c));
                sidecars
            } else {
                pick(c).add(&sidecars)
            };
            each(&during);
            init_max = init_max.max(&during);
        }
        total.max(&init_max)
    }
}

/// [`PodResources::limits`]' answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodLimitsDeclared {
    pub limits: ResourceList,
    pub cpu_declared: bool,
    pub memory_declared: bool,
}

fn container(
    c: &Container,
    kind: ContainerKind,
    at: &str,
) -> Result<ContainerResources, ResourceError> {
    let res: Option<&ResourceRequirements> = c.resources.as_ref();
    let limits_at = format!("{at}.resources.limits");
    let requests_at = format!("{at}.resources.requests");
    let limits = resource_list(res.and_then(|r| r.limits.as_ref()), &limits_at)?;
    let mut requests = resource_list(res.and_then(|r| r.requests.as_ref()), &requests_at)?;
    // API server defaulting (SetDefaults_Pod): a missing request takes its limit.
    requests.cpu = requests.cpu.or(limits.cpu);
    requests.memory = requests.memory.or(limits.memory);
    requests.ephemeral_storage = requests.ephemeral_storage.or(limits.ephemeral_storage);
    // API server validation: a request may not exceed its limit.
    for (name, req, lim) in [
        (CPU, requests.cpu, limits.cpu),
        (MEMORY, requests.memory, limits.memory),
        (
            EPHEMERAL_STORAGE,
            requests.ephemeral_storage,
            limits.ephemeral_storage,
        ),
    ] {
        if let (Some(r), Some(l)) = (req, lim)
            && r > l
        {
            let text = |m: Option<&BTreeMap<String, Quantity>>| {
                m.and_then(|m| m.get(name))
                    .map(|q| q.0.clone())
                    .unwrap_or_default()
            };
            return Err(ResourceError::RequestAboveLimit {
                field: format!("{requests_at}[{name}]"),
                resource: name,
                request: text(res.and_then(|r| r.requests.as_ref())),
                limit: text(res.and_then(|r| r.limits.as_ref())),
            });
        }
    }
    Ok(ContainerResources {
        name: c.name.clone(),
        kind,
        requests,
        limits,
    })
}

fn resource_list(
    map: Option<&BTreeMap<String, Quantity>>,
    at: &str,
) -> Result<ResourceList, ResourceError> {
    let mut list = ResourceList::default();
    for (name, q) in map.into_iter().flatten() {
        let slot = match name.as_str() {
            CPU => &mut list.cpu,
            MEMORY => &mut list.memory,
            EPHEMERAL_STORAGE => &mut list.ephemeral_storage,
            _ => continue,
        };
        let field = format!("{at}[{name}]");
        let v = QuantityValue::parse(&q.0).map_err(|source| ResourceError::Quantity {
            field: field.clone(),
            source,
        })?;
        if v.is_negative() {
            return Err(ResourceError::Negative {
                field,
                value: q.0.clone(),
            });
        }
        // cpu is used in thousandths everywhere; refuse what cannot be one.
        if name == CPU && v.milli_value().is_none() {
            return Err(ResourceError::Quantity {
                field,
                source: QuantityError {
                    value: q.0.clone(),
                    kind: QuantityErrorKind::Overflow,
                },
            });
        }
        *slot = Some(v);
    }
    Ok(list)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A pod spec from YAML-ish JSON, for tests across the module.
    pub(crate) fn spec(json: serde_json::Value) -> PodSpec {
        match serde_json::from_value(json) {
            Ok(s) => s,
            Err(e) => panic!("bad test spec: {e}"),
        }
    }

    pub(crate) fn pod(json: serde_json::Value) -> PodResources {
        match PodResources::from_spec(&spec(json), true) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    fn q(s: &str) -> Option<QuantityValue> {
        QuantityValue::parse(s).ok()
    }

    #[test]
    fn requests_default_from_limits() {
        let p = pod(serde_json::json!({"containers": [{"name": "a",
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "100m"}}}]}));
        let c = &p.containers[0];
        assert_eq!(c.requests.cpu, q("100m"));
        assert_eq!(c.requests.memory, q("64Mi"));
        assert_eq!(c.requests.ephemeral_storage, None);
    }

    #[test]
    fn invalid_values_name_the_field() {
        let cases = [
            (
                serde_json::json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "1 core"}}}]}),
                "spec.containers[0].resources.requests[cpu]: quantity \"1 core\"",
            ),
            (
                serde_json::json!({"containers": [{"name": "a"}], "initContainers": [{"name": "i",
                    "resources": {"limits": {"memory": "-1Gi"}}}]}),
                "spec.initContainers[0].resources.limits[memory]: invalid value \"-1Gi\": must be greater than or equal to 0",
            ),
            (
                serde_json::json!({"containers": [{"name": "a", "resources": {
                    "requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}),
                "spec.containers[0].resources.requests[cpu]: invalid value \"2\": must be less than or equal to cpu limit of \"1\"",
            ),
            (
                serde_json::json!({"containers": [{"name": "a", "resources": {"limits": {"cpu": "9e18"}}}]}),
                "spec.containers[0].resources.limits[cpu]: quantity \"9e18\": the value does not fit",
            ),
            (
                serde_json::json!({"containers": [{"name": "a"}], "overhead": {"memory": "9Ei"}}),
                "spec.overhead[memory]: quantity \"9Ei\": the magnitude is larger",
            ),
        ];
        for (json, want) in cases {
            let err = PodResources::from_spec(&spec(json), true)
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.starts_with(want)),
                "{err:?} !~ {want}"
            );
        }
    }

    #[test]
    fn other_resource_names_are_ignored() {
        let p = pod(
            serde_json::json!({"containers": [{"name": "a", "resources": {
            "limits": {"nvidia.com/gpu": "not a number", "hugepages-2Mi": "2Mi"}}}]}),
        );
        assert_eq!(p.containers[0].limits, ResourceList::default());
    }

    /// Upstream `TestPodRequests` shapes: init max rule, sidecars, overhead.
    #[test]
    fn pod_requests_follow_the_init_container_rule() {
        // max(sum of regular, largest init) = max(300m, 500m).
        let p = pod(serde_json::json!({
            "initContainers": [
                {"name": "i1", "resources": {"requests": {"cpu": "500m", "memory": "10Mi"}}},
                {"name": "i2", "resources": {"requests": {"cpu": "100m", "memory": "400Mi"}}}],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m", "memory": "100Mi"}}}],
            "overhead": {"cpu": "10m"}}));
        let r = p.requests();
        assert_eq!(r.cpu_milli(), 510);
        assert_eq!(r.memory_bytes(), 400 << 20);

        // A sidecar adds to the regular sum and to every init container after it.
        let p = pod(serde_json::json!({
            "initContainers": [
                {"name": "i1", "resources": {"requests": {"cpu": "1"}}},
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
                {"name": "i2", "resources": {"requests": {"cpu": "900m"}}}],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]}));
        assert_eq!(p.init_containers[1].kind, ContainerKind::Sidecar);
        // regular 100m + sidecar 200m = 300m; i1 alone 1000m; i2 + sidecar = 1100m.
        assert_eq!(p.requests().cpu_milli(), 1100);
    }

    #[test]
    fn pod_limits_track_declared_limits() {
        let p = pod(serde_json::json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "500m"}}}],
            "overhead": {"cpu": "100m", "memory": "10Mi"}}));
        let l = p.limits();
        assert!(l.cpu_declared);
        assert!(!l.memory_declared);
        assert_eq!(l.limits.cpu_milli(), 1600);
        assert_eq!(l.limits.memory_bytes(), (1 << 30) + (10 << 20));

        // An explicit zero limit is not a declared limit.
        let p = pod(serde_json::json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "0", "memory": "1Gi"}}}]}));
        assert!(!p.limits().cpu_declared);
        assert!(p.limits().memory_declared);
    }

    #[test]
    fn node_critical_needs_both_critical_and_the_class() {
        let s = spec(serde_json::json!({"containers": [{"name": "a"}],
            "priorityClassName": "system-node-critical"}));
        assert_eq!(
            PodResources::from_spec(&s, true).map(|p| p.node_critical),
            Ok(true)
        );
        assert_eq!(
            PodResources::from_spec(&s, false).map(|p| p.node_critical),
            Ok(false)
        );
        let s = spec(serde_json::json!({"containers": [{"name": "a"}],
            "priorityClassName": "system-node-critical", "priority": 2_000_001_000}));
        assert_eq!(
            PodResources::from_spec(&s, false).map(|p| p.node_critical),
            Ok(true)
        );
        let s = spec(serde_json::json!({"containers": [{"name": "a"}],
            "priorityClassName": "system-cluster-critical"}));
        assert_eq!(
            PodResources::from_spec(&s, true).map(|p| p.node_critical),
            Ok(false)
        );
    }
}
