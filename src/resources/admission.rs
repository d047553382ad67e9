//! Admission by resources: does a new pod fit beside the pods already running? Pure.
//!
//! Upstream: the kubelet's predicate admit handler (KK `pkg/kubelet/lifecycle/predicate.go`)
//! runs the scheduler's `NodeResourcesFit` check (`fitsRequest`) against allocatable:
//! - pods: running + 1 must not exceed allocatable pods;
//! - then, only for resources the pod requests (> 0): request <= allocatable - sum of the
//!   running pods' requests, for cpu, memory and ephemeral-storage, in that order.
//!
//! Requests are `PodRequests`: max(sum of app containers and sidecars, each init container
//! with the sidecars before it) plus overhead ([`PodResources::requests`]). The first failure
//! is the one reported, as the kubelet reports only `reasons[0]`, with upstream's reason
//! (`OutOfcpu`, `OutOfmemory`, `OutOfephemeral-storage`, `OutOfpods`) and message.
//!
//! Not here: the other admit checks (node name/selector/affinity, taints, host ports,
//! eviction pressure, sysctls, AppArmor).

use super::allocatable::Allocatable;
use super::requirements::PodResources;

pub const OUT_OF_CPU: &str = "OutOfcpu";
pub const OUT_OF_MEMORY: &str = "OutOfmemory";
pub const OUT_OF_EPHEMERAL_STORAGE: &str = "OutOfephemeral-storage";
pub const OUT_OF_PODS: &str = "OutOfpods";

/// Why a pod was not admitted: `status.reason` and `status.message` of the Failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub message: String,
}

impl Rejection {
    /// Upstream `InsufficientResourceError.Error()`.
    fn insufficient(
        reason: &'static str,
        resource: &str,
        requested: i64,
        used: i64,
        capacity: i64,
    ) -> Self {
        Rejection {
            reason,
            message: format!(
                "Node didn't have enough resource: {resource}, requested: {requested}, used: {used}, capacity: {capacity}"
            ),
        }
    }
}

/// Admits `pod` if it fits beside `running` (the pods already admitted and not terminated)
/// within `allocatable`.
pub fn admit<'a>(
    pod: &PodResources,
    running: impl IntoIterator<Item = &'a PodResources>,
    allocatable: &Allocatable,
) -> Result<(), Rejection> {
    let mut count: i64 = 0;
    let (mut cpu, mut memory, mut storage) = (0i64, 0i64, 0i64);
    for p in running {
        let r = p.requests();
        count += 1;
        cpu = cpu.saturating_add(r.cpu_milli());
        memory = memory.saturating_add(r.memory_bytes());
        storage = storage.saturating_add(r.ephemeral_storage_bytes());
    }
    if count + 1 > allocatable.pods {
        return Err(Rejection::insufficient(
            OUT_OF_PODS,
            "pods",
            1,
            count,
            allocatable.pods,
        ));
    }
    let want = pod.requests();
    let fits = |request: i64, used: i64, capacity: i64| {
        request <= 0 || request <= capacity.saturating_sub(used)
    };
    if !fits(want.cpu_milli(), cpu, allocatable.cpu_milli) {
        return Err(Rejection::insufficient(
            OUT_OF_CPU,
            "cpu",
            want.cpu_milli(),
            cpu,
            allocatable.cpu_milli,
        ));
    }
    if !fits(want.memory_bytes(), memory, allocatable.memory_bytes) {
        return Err(Rejection::insufficient(
            OUT_OF_MEMORY,
            "memory",
            want.memory_bytes(),
            memory,
            allocatable.memory_bytes,
        ));
    }
    if let Some(capacity) = allocatable.ephemeral_storage_bytes
        && !fits(want.ephemeral_storage_bytes(), storage, capacity)
    {
        return Err(Rejection::insufficient(
            OUT_OF_EPHEMERAL_STORAGE,
            "ephemeral-storage",
            want.ephemeral_storage_bytes(),
            storage,
            capacity,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::requirements::tests::pod;
    use super::*;
    use serde_json::json;

    const MI: i64 = 1 << 20;

    fn node(cpu_milli: i64, memory_bytes: i64, pods: i64) -> Allocatable {
        Allocatable {
            cpu_milli,
            memory_bytes,
            ephemeral_storage_bytes: Some(10 * 1024 * MI),
            pods,
        }
    }

    fn requesting(cpu: &str, memory: &str) -> PodResources {
        pod(
            json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}),
        )
    }

    #[test]
    fn fits_and_exact_fit() {
        let running = [requesting("1", "1Gi")];
        assert_eq!(
            admit(
                &requesting("1", "1Gi"),
                &running,
                &node(2000, 2048 * MI, 110)
            ),
            Ok(())
        );
        let none: [PodResources; 0] = [];
        assert_eq!(
            admit(&requesting("2", "2Gi"), &none, &node(2000, 2048 * MI, 110)),
            Ok(())
        );
    }

    #[test]
    fn out_of_cpu_with_upstream_message() {
        let running = [requesting("1500m", "100Mi"), requesting("300m", "100Mi")];
        let got = admit(
            &requesting("500m", "100Mi"),
            &running,
            &node(2000, 2048 * MI, 110),
        );
        assert_eq!(
            got,
            Err(Rejection {
                reason: "OutOfcpu",
                message: "Node didn't have enough resource: cpu, requested: 500, used: 1800, capacity: 2000".into(),
            })
        );
    }

    #[test]
    fn out_of_memory_and_storage() {
        let running = [requesting("100m", "1Gi")];
        let got = admit(
            &requesting("100m", "1025Mi"),
            &running,
            &node(2000, 2048 * MI, 110),
        );
        assert_eq!(got.map_err(|r| r.reason), Err(OUT_OF_MEMORY));
        let big = pod(
            json!({"containers": [{"name": "a", "resources": {"requests": {"ephemeral-storage": "11Gi"}}}]}),
        );
        assert_eq!(
            admit(&big, &running, &node(2000, 2048 * MI, 110)).map_err(|r| r.reason),
            Err(OUT_OF_EPHEMERAL_STORAGE)
        );
        // Without a known storage capacity there is nothing to check against.
        let mut unknown = node(2000, 2048 * MI, 110);
        unknown.ephemeral_storage_bytes = None;
        assert_eq!(admit(&big, &running, &unknown), Ok(()));
    }

    #[test]
    fn out_of_pods_comes_first_and_counts_best_effort() {
        let be = pod(json!({"containers": [{"name": "a"}]}));
        let running = [be.clone(), be.clone()];
        let got = admit(
            &requesting("100", "100Gi"),
            &running,
            &node(2000, 2048 * MI, 2),
        );
        assert_eq!(
            got,
            Err(Rejection {
                reason: "OutOfpods",
                message:
                    "Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2"
                        .into(),
            })
        );
        // A pod requesting nothing fits even on an overcommitted node.
        let over = [requesting("3", "3Gi")];
        assert_eq!(admit(&be, &over, &node(2000, 2048 * MI, 110)), Ok(()));
    }

    #[test]
    fn init_containers_use_the_max_rule() {
        // Regular containers ask 200m in all; the init container 1500m: effective 1500m.
        let p = pod(json!({
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1500m"}}}],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "100m"}}}]}));
        let running = [requesting("600m", "0")];
        assert_eq!(
            admit(&p, &running, &node(2000, 2048 * MI, 110)).map_err(|r| r.message),
            Err(
                "Node didn't have enough resource: cpu, requested: 1500, used: 600, capacity: 2000"
                    .into()
            )
        );
        let lighter = [requesting("500m", "0")];
        assert_eq!(admit(&p, &lighter, &node(2000, 2048 * MI, 110)), Ok(()));
    }
}
