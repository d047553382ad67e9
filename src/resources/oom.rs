//! `oom_score_adj` for a container, as upstream computes it (KK `pkg/kubelet/qos/policy.go`
//! `GetContainerOOMScoreAdjust`). Pure.
//!
//! - Node-critical pods (critical *and* priority class `system-node-critical`): -997,
//!   whatever their QoS.
//! - Guaranteed: -997. BestEffort: 1000.
//! - Burstable: `1000 - 1000 * memoryRequest / nodeMemoryCapacity` (integer division),
//!   then raised to 3 (`1000 + guaranteedOOMScoreAdj`) if below, and lowered to 999 if it
//!   is exactly 1000, so a burstable container always ranks strictly between the other two.
//!   (The upstream docs say the minimum is 2; the code gives 3.)
//! - A sidecar (restartable init container) gets at most the value of the regular container
//!   with the smallest memory request, so it is not killed before the app it serves. This is
//!   the rule of Kubernetes 1.29–1.32; newer releases also default missing requests to
//!   200Mi in that minimum and add 1 when the sidecar requests at least as much. ironlet
//!   keeps the older, simpler rule.
//!
//! The kubelet itself runs at -999 ([`KUBELET_OOM_SCORE_ADJ`]); containerd gives every pause
//! (sandbox) container -998.
//!
//! # containerd's `restrict_oom_score_adj`
//!
//! The value computed here is a *request*: the CRI runtime writes it into the OCI spec. With
//! `restrict_oom_score_adj = true` in containerd's CRI plugin config (default `false`; meant
//! for running containerd unprivileged, since only CAP_SYS_RESOURCE may lower a score),
//! containerd reads its own `/proc/self/oom_score_adj` when it builds each spec, and if the
//! requested value is **lower** than its own it uses its own value instead; values equal to
//! or higher than its own pass unchanged (containerd `pkg/cri/opts/spec_linux.go`
//! `restrictOOMScoreAdj`, applied by `WithOOMScoreAdj` to containers and by
//! `WithPodOOMScoreAdj` to the sandbox's -998). If it cannot read that file, creating the
//! container fails. So under a containerd running at, say, -500, Guaranteed containers get
//! -500 rather than -997, BestEffort still 1000; ironlet cannot detect this from the CRI.

use super::qos::QosClass;
use super::requirements::{ContainerKind, ContainerResources, PodResources};

/// The kubelet process (and kube-proxy).
pub const KUBELET_OOM_SCORE_ADJ: i64 = -999;
/// Guaranteed and node-critical containers.
pub const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
/// BestEffort containers: first to go.
pub const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;

/// The `oom_score_adj` for `container` of `pod` on a node with `node_memory_capacity` bytes.
///
/// `node_memory_capacity` should be the measured capacity (not allocatable). A capacity of 0
/// or less, which upstream would divide by, is treated as "request is 0% of the node".
pub fn container_oom_score_adj(
    pod: &PodResources,
    container: &ContainerResources,
    node_memory_capacity: i64,
) -> i64 {
    if pod.node_critical {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match pod.qos {
        QosClass::Guaranteed => return GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => return BEST_EFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {}
    }
    let mut adj = burstable_adj(container.requests.memory_bytes(), node_memory_capacity);
    if container.kind == ContainerKind::Sidecar {
        let smallest = pod
            .containers
            .iter()
            .map(|c| c.requests.memory_bytes())
            .min();
        if let Some(smallest) = smallest {
            adj = adj.min(burstable_adj(smallest, node_memory_capacity));
        }
    }
    // A guaranteed pod using 100% of memory can have an OOM score of 10; burstable must stay
    // above guaranteed and below best-effort.
    if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ {
        return 1000 + GUARANTEED_OOM_SCORE_ADJ;
    }
    if adj == BEST_EFFORT_OOM_SCORE_ADJ {
        return adj - 1;
    }
    adj
}

/// `1000 - 1000*request/capacity` in 128 bits (upstream's int64 product can overflow).
fn burstable_adj(request: i64, capacity: i64) -> i64 {
    if capacity <= 0 {
        return 1000;
    }
    let adj = 1000 - (1000 * i128::from(request)) / i128::from(capacity);
    i64::try_from(adj).unwrap_or(i64::MIN)
}

#[cfg(test)]
mod tests {
    use super::super::requirements::tests::pod;
    use super::*;
    use serde_json::json;

    const GI: i64 = 1 << 30;

    fn adj(spec: serde_json::Value, container: &str, capacity: i64) -> i64 {
        let p = pod(spec);
        match p.container(container) {
            Some(c) => container_oom_score_adj(&p, c, capacity),
            None => panic!("no container {container}"),
        }
    }

    fn burstable(memory: &str) -> serde_json::Value {
        json!({"name": "a", "resources": {"requests": {"memory": memory}, "limits": {"memory": "8Gi"}}})
    }

    /// Upstream `policy_test.go` shapes, on a 4 GiB node.
    #[test]
    fn by_qos() {
        let cap = 4 * GI;
        let g = json!({"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(adj(g, "a", cap), -997);
        let be = json!({"containers": [{"name": "a"}]});
        assert_eq!(adj(be, "a", cap), 1000);
        // 1 GiB of 4 GiB: 1000 - 250.
        assert_eq!(
            adj(json!({"containers": [burstable("1Gi")]}), "a", cap),
            750
        );
        // Integer division truncates: 1000 - 1000*1/3 = 1000 - 333.
        assert_eq!(
            adj(json!({"containers": [burstable("1Gi")]}), "a", 3 * GI),
            667
        );
    }

    #[test]
    fn burstable_clamps() {
        let cap = 4 * GI;
        // Requests everything (or more): clamped up to 3, not 0 or negative.
        assert_eq!(adj(json!({"containers": [burstable("4Gi")]}), "a", cap), 3);
        assert_eq!(adj(json!({"containers": [burstable("8Gi")]}), "a", cap), 3);
        // 998/1000 of the node: 1000 - 998 = 2, raised to 3.
        assert_eq!(adj(json!({"containers": [burstable("998")]}), "a", 1000), 3);
        // A request too small to register would give 1000: lowered to 999.
        assert_eq!(adj(json!({"containers": [burstable("1")]}), "a", cap), 999);
        // No memory request at all (burstable through cpu): 999.
        let cpu_only =
            json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]});
        assert_eq!(adj(cpu_only, "a", cap), 999);
        // Unknown capacity does not divide by zero.
        assert_eq!(adj(json!({"containers": [burstable("1Gi")]}), "a", 0), 999);
    }

    #[test]
    fn node_critical_wins_over_qos() {
        let s = json!({"priorityClassName": "system-node-critical", "containers": [{"name": "a"}]});
        assert_eq!(adj(s, "a", 4 * GI), -997);
    }

    #[test]
    fn sidecar_gets_at_most_the_smallest_regular_value() {
        let s = json!({
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"memory": "100Mi"}}},
                {"name": "init", "resources": {"requests": {"memory": "100Mi"}}}],
            "containers": [burstable("1Gi"), {"name": "b", "resources": {"requests": {"memory": "2Gi"}}}]});
        // The sidecar alone would be 1000 - 24 = 976; the smallest regular request (1Gi) is 750.
        assert_eq!(adj(s.clone(), "side", 4 * GI), 750);
        // An ordinary init container keeps its own value.
        assert_eq!(adj(s, "init", 4 * GI), 976);
    }
}
