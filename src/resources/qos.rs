//! Pod QoS class by upstream's rules (KK `pkg/apis/core/v1/helper/qos/qos.go`
//! `ComputePodQOS`). Pure.
//!
//! - Only cpu and memory count; quantities that are zero are ignored.
//! - Init containers (and sidecars) count; ephemeral containers do not.
//! - BestEffort: no non-zero cpu or memory request or limit anywhere.
//! - Guaranteed: every container has non-zero cpu *and* memory limits, and the pod's summed
//!   requests equal its summed limits for each of them (requests are defaulted from limits
//!   before this runs, as the API server does).
//! - Otherwise Burstable.

use super::quantity::QuantityValue;
use super::requirements::ContainerResources;

/// `v1.PodQOSClass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The API value (`status.qosClass`).
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

impl std::fmt::Display for QosClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sum of the positive values seen, `None` if there were none (upstream's map entry).
#[derive(Default)]
struct Sum(Option<QuantityValue>);

impl Sum {
    /// Adds `q` if it is positive; says whether it was.
    fn add(&mut self, q: Option<QuantityValue>) -> bool {
        match q.filter(|q| q.is_positive()) {
            Some(q) => {
                self.0 = Some(self.0.map_or(q, |s| s.saturating_add(q)));
                true
            }
            None => false,
        }
    }
}

/// The QoS class of a pod whose (defaulted) containers are `containers`.
pub fn compute<'a>(containers: impl IntoIterator<Item = &'a ContainerResources>) -> QosClass {
    let (mut req_cpu, mut req_mem) = (Sum::default(), Sum::default());
    let (mut lim_cpu, mut lim_mem) = (Sum::default(), Sum::default());
    let mut guaranteed = true;
    for c in containers {
        req_cpu.add(c.requests.cpu);
        req_mem.add(c.requests.memory);
        let has_cpu_limit = lim_cpu.add(c.limits.cpu);
        let has_mem_limit = lim_mem.add(c.limits.memory);
        if !(has_cpu_limit && has_mem_limit) {
            guaranteed = false;
        }
    }
    let requests = [req_cpu.0, req_mem.0];
    let limits = [lim_cpu.0, lim_mem.0];
    if requests.iter().chain(&limits).all(Option::is_none) {
        return QosClass::BestEffort;
    }
    // Every request present must have an equal limit, and there must be as many limits as
    // requests (upstream compares the two maps).
    let matched = requests
        .iter()
        .zip(&limits)
        .all(|(r, l)| r.is_none() || r == l);
    let same_len = requests.iter().flatten().count() == limits.iter().flatten().count();
    if guaranteed && matched && same_len {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

#[cfg(test)]
mod tests {
    use super::super::requirements::tests::pod;
    use super::*;
    use serde_json::json;

    fn class(containers: serde_json::Value, init: serde_json::Value) -> QosClass {
        pod(json!({"containers": containers, "initContainers": init})).qos
    }

    fn res(requests: serde_json::Value, limits: serde_json::Value) -> serde_json::Value {
        json!({"requests": requests, "limits": limits})
    }

    /// Cases from upstream `qos_test.go` (`TestGetPodQOS`).
    #[test]
    fn upstream_cases() {
        let none = json!({});
        let g = |cpu: &str, mem: &str| {
            res(
                json!({"cpu": cpu, "memory": mem}),
                json!({"cpu": cpu, "memory": mem}),
            )
        };
        let cases: Vec<(serde_json::Value, serde_json::Value, QosClass)> = vec![
            // best-effort: nothing, or only zeros, or only other resources
            (json!([{"name": "a"}]), json!([]), QosClass::BestEffort),
            (
                json!([{"name": "a", "resources": res(json!({"cpu": "0", "memory": "0"}), none.clone())}]),
                json!([]),
                QosClass::BestEffort,
            ),
            (
                json!([{"name": "a", "resources": res(json!({"nvidia.com/gpu": "1"}), json!({"nvidia.com/gpu": "1"}))}]),
                json!([]),
                QosClass::BestEffort,
            ),
            // guaranteed
            (
                json!([{"name": "a", "resources": g("100m", "100Mi")}]),
                json!([]),
                QosClass::Guaranteed,
            ),
            (
                json!([{"name": "a", "resources": g("100m", "100Mi")}, {"name": "b", "resources": g("1", "1Gi")}]),
                json!([]),
                QosClass::Guaranteed,
            ),
            // guaranteed by defaulting: limits only
            (
                json!([{"name": "a", "resources": res(none.clone(), json!({"cpu": "100m", "memory": "100Mi"}))}]),
                json!([]),
                QosClass::Guaranteed,
            ),
            // the same value written differently is equal
            (
                json!([{"name": "a", "resources": res(json!({"cpu": "0.1", "memory": "100Mi"}), json!({"cpu": "100m", "memory": "104857600"}))}]),
                json!([]),
                QosClass::Guaranteed,
            ),
            // burstable: one container best-effort
            (
                json!([{"name": "a", "resources": g("100m", "100Mi")}, {"name": "b"}]),
                json!([]),
                QosClass::Burstable,
            ),
            // burstable: requests below limits
            (
                json!([{"name": "a", "resources": res(json!({"cpu": "100m", "memory": "100Mi"}), json!({"cpu": "200m", "memory": "100Mi"}))}]),
                json!([]),
                QosClass::Burstable,
            ),
            // burstable: only cpu
            (
                json!([{"name": "a", "resources": g("100m", "0")}]),
                json!([]),
                QosClass::Burstable,
            ),
            (
                json!([{"name": "a", "resources": res(json!({"cpu": "100m"}), none.clone())}]),
                json!([]),
                QosClass::Burstable,
            ),
            // burstable: memory request zero but limit set (zero request is not defaulted)
            (
                json!([{"name": "a", "resources": res(json!({"cpu": "1", "memory": "0"}), json!({"cpu": "1", "memory": "1Gi"}))}]),
                json!([]),
                QosClass::Burstable,
            ),
            // init containers count
            (
                json!([{"name": "a", "resources": g("100m", "100Mi")}]),
                json!([{"name": "i"}]),
                QosClass::Burstable,
            ),
            (
                json!([{"name": "a", "resources": g("100m", "100Mi")}]),
                json!([{"name": "i", "resources": g("1", "1Gi")}]),
                QosClass::Guaranteed,
            ),
            (
                json!([{"name": "a"}]),
                json!([{"name": "i", "resources": res(json!({"memory": "1Mi"}), none.clone())}]),
                QosClass::Burstable,
            ),
        ];
        for (i, (containers, init, want)) in cases.into_iter().enumerate() {
            assert_eq!(class(containers, init), want, "case {i}");
        }
    }

    /// Upstream compares pod-level sums, not each container: requests that differ from their
    /// limits in opposite directions still sum to equal totals. The API server refuses
    /// request > limit, so the containers are built by hand; this only pins the summing.
    #[test]
    fn guaranteed_compares_sums() {
        use super::super::requirements::{ContainerKind, ResourceList};
        let list = |cpu: i64| ResourceList {
            cpu: Some(QuantityValue::from_milli(cpu)),
            memory: Some(QuantityValue::from_units(1 << 30)),
            ephemeral_storage: None,
        };
        let c = |name: &str, req: i64, lim: i64| ContainerResources {
            name: name.into(),
            kind: ContainerKind::Regular,
            requests: list(req),
            limits: list(lim),
        };
        assert_eq!(
            compute(&[c("a", 1000, 2000), c("b", 2000, 1000)]),
            QosClass::Guaranteed
        );
        assert_eq!(
            compute(&[c("a", 1000, 2000), c("b", 1000, 1000)]),
            QosClass::Burstable
        );
    }

    #[test]
    fn names() {
        assert_eq!(QosClass::Guaranteed.to_string(), "Guaranteed");
        assert_eq!(QosClass::Burstable.as_str(), "Burstable");
        assert_eq!(QosClass::BestEffort.as_str(), "BestEffort");
    }
}
