//! CPU math and the resource settings derived from requests and limits: the CRI
//! `LinuxContainerResources` of each container and the [`PodLimits`] of the pod cgroup.
//! Pure.
//!
//! Upstream: KK `pkg/kubelet/cm/helpers_linux.go` (`MilliCPUToShares`, `MilliCPUToQuota`,
//! `ResourceConfigForPod`) and `pkg/kubelet/kuberuntime/kuberuntime_container_linux.go`
//! (`calculateLinuxResources`).
//!
//! - shares = milliCPU × 1024 / 1000, at least 2 (also for a zero request), at most 262144.
//! - quota = milliCPU × period / 1000 µs, at least 1000 µs; period 100000 µs. With
//!   `cpuCFSQuota: false` no quota is set, in containers or pod cgroups.
//! - cgroup v2: `cpu.weight = 1 + (shares - 2) × 9999 / 262142` (runc/libcontainer's linear
//!   mapping, which kubelet uses through it).
//!
//! Upstream computes `milliCPU × period` in int64 and can overflow for absurd limits; here
//! the products are done in 128 bits and saturate.

use crate::cri::api;

use super::cgroup::PodLimits;
use super::oom::container_oom_score_adj;
use super::qos::QosClass;
use super::requirements::{ContainerResources, PodResources};

pub const MIN_SHARES: u64 = 2;
pub const MAX_SHARES: u64 = 262_144;
pub const SHARES_PER_CPU: i64 = 1024;
pub const MILLI_CPU_TO_CPU: i64 = 1000;
/// The default CFS period (`cpuCFSQuotaPeriod: 100ms`), in µs.
pub const QUOTA_PERIOD_US: i64 = 100_000;
/// The smallest quota the kernel accepts, in µs.
pub const MIN_QUOTA_PERIOD_US: i64 = 1000;

/// Upstream `MilliCPUToShares`.
pub fn milli_cpu_to_shares(milli_cpu: i64) -> u64 {
    if milli_cpu <= 0 {
        return MIN_SHARES;
    }
    let shares = i128::from(milli_cpu) * i128::from(SHARES_PER_CPU) / i128::from(MILLI_CPU_TO_CPU);
    u64::try_from(shares)
        .unwrap_or(MAX_SHARES)
        .clamp(MIN_SHARES, MAX_SHARES)
}

/// Upstream `MilliCPUToQuota`: 0 (no quota) for 0 milliCPU, else at least 1000 µs.
pub fn milli_cpu_to_quota(milli_cpu: i64, period_us: i64) -> i64 {
    if milli_cpu == 0 {
        return 0;
    }
    let quota = i128::from(milli_cpu) * i128::from(period_us) / i128::from(MILLI_CPU_TO_CPU);
    i64::try_from(quota)
        .unwrap_or(i64::MAX)
        .max(MIN_QUOTA_PERIOD_US)
}

/// cgroup v2 `cpu.weight` for v1 `cpu.shares` (libcontainer `ConvertCPUSharesToCgroupV2Value`);
/// 0 stays 0 ("unset").
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(MIN_SHARES, MAX_SHARES);
    1 + (shares - 2) * 9999 / 262_142
}

/// The CRI resources of one container (`calculateLinuxResources` plus the oom score):
/// `cpu_shares`, `cpu_period`/`cpu_quota` (only with `cpu_cfs_quota`), `memory_limit_in_bytes`
/// (0 = none), `oom_score_adj`. Everything else is left at its default.
pub fn container_resources(
    pod: &PodResources,
    container: &ContainerResources,
    node_memory_capacity: i64,
    cpu_cfs_quota: bool,
) -> api::LinuxContainerResources {
    // Requests were defaulted from limits already, so a missing request with a limit is
    // handled as upstream does.
    let cpu_shares = milli_cpu_to_shares(container.requests.cpu_milli());
    let (cpu_period, cpu_quota) = if cpu_cfs_quota {
        (
            QUOTA_PERIOD_US,
            milli_cpu_to_quota(container.limits.cpu_milli(), QUOTA_PERIOD_US),
        )
    } else {
        (0, 0)
    };
    api::LinuxContainerResources {
        cpu_period,
        cpu_quota,
        cpu_shares: i64::try_from(cpu_shares).unwrap_or(i64::MAX),
        memory_limit_in_bytes: container.limits.memory_bytes(),
        oom_score_adj: container_oom_score_adj(pod, container, node_memory_capacity),
        ..Default::default()
    }
}

/// The pod cgroup's settings (`ResourceConfigForPod`): shares from the pod's requests; quota
/// and period only if every container declares a cpu limit; a memory limit only if every
/// container declares one; BestEffort pods get shares 2 and nothing else. `pod_pids_limit`
/// > 0 sets `pids.max` (upstream `podPidsLimit`, where -1 means unlimited).
pub fn pod_cgroup_limits(
    pod: &PodResources,
    cpu_cfs_quota: bool,
    pod_pids_limit: i64,
) -> PodLimits {
    let pids_limit = (pod_pids_limit > 0).then_some(pod_pids_limit);
    if pod.qos == QosClass::BestEffort {
        return PodLimits {
            cpu_shares: Some(MIN_SHARES),
            pids_limit,
            ..PodLimits::default()
        };
    }
    let requests = pod.requests();
    let declared = pod.limits();
    let guaranteed = pod.qos == QosClass::Guaranteed;
    let cpu_shares = Some(milli_cpu_to_shares(requests.cpu_milli()));
    let (cpu_quota, cpu_period) = if guaranteed || declared.cpu_declared {
        let quota = milli_cpu_to_quota(declared.limits.cpu_milli(), QUOTA_PERIOD_US);
        // Upstream writes quota -1 (unlimited) when cpuCFSQuota is off; not writing it
        // leaves a new cgroup at the same "max".
        let quota = (cpu_cfs_quota && quota > 0).then_some(quota);
        (quota, Some(QUOTA_PERIOD_US as u64))
    } else {
        (None, None)
    };
    let memory_limit = (guaranteed || declared.memory_declared)
        .then(|| declared.limits.memory_bytes())
        .filter(|&m| m > 0);
    PodLimits {
        cpu_shares,
        cpu_quota,
        cpu_period,
        memory_limit,
        pids_limit,
    }
}

#[cfg(test)]
mod tests {
    use super::super::requirements::tests::pod;
    use super::*;
    use serde_json::json;

    /// Upstream `TestMilliCPUToShares` and `TestMilliCPUToQuota`.
    #[test]
    fn shares_and_quota() {
        for (milli, shares) in [
            (0, 2),
            (1, 2),
            (2, 2),
            (100, 102),
            (500, 512),
            (1000, 1024),
            (1500, 1536),
            (256_000, 262_144),
            (257_000, 262_144),
            (-5, 2),
            (i64::MAX, 262_144),
        ] {
            assert_eq!(milli_cpu_to_shares(milli), shares, "{milli}m");
        }
        for (milli, period, quota) in [
            (0, 100_000, 0),
            (5, 100_000, 1000),
            (9, 100_000, 1000),
            (10, 100_000, 1000),
            (200, 100_000, 20_000),
            (500, 100_000, 50_000),
            (1000, 100_000, 100_000),
            (1500, 100_000, 150_000),
            (1500, 50_000, 75_000),
            (i64::MAX, 100_000, i64::MAX),
        ] {
            assert_eq!(
                milli_cpu_to_quota(milli, period),
                quota,
                "{milli}m/{period}"
            );
        }
    }

    #[test]
    fn weight_from_shares() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
    }

    fn cri(spec: serde_json::Value, cfs: bool) -> api::LinuxContainerResources {
        let p = pod(spec);
        match p.containers.first() {
            Some(c) => container_resources(&p, c, 4 << 30, cfs),
            None => panic!("no container"),
        }
    }

    #[test]
    fn container_resources_for_each_class() {
        let g = cri(
            json!({"containers": [{"name": "a", "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}]}),
            true,
        );
        assert_eq!(
            (
                g.cpu_shares,
                g.cpu_period,
                g.cpu_quota,
                g.memory_limit_in_bytes,
                g.oom_score_adj
            ),
            (512, 100_000, 50_000, 128 << 20, -997)
        );
        let b = cri(
            json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}}]}),
            true,
        );
        assert_eq!(
            (
                b.cpu_shares,
                b.cpu_period,
                b.cpu_quota,
                b.memory_limit_in_bytes,
                b.oom_score_adj
            ),
            (102, 100_000, 0, 0, 750)
        );
        let be = cri(json!({"containers": [{"name": "a"}]}), true);
        assert_eq!(
            (be.cpu_shares, be.cpu_quota, be.oom_score_adj),
            (2, 0, 1000)
        );
        // cpuCFSQuota=false: no period and no quota at all.
        let nq = cri(
            json!({"containers": [{"name": "a", "resources": {"limits": {"cpu": "2"}}}]}),
            false,
        );
        assert_eq!((nq.cpu_shares, nq.cpu_period, nq.cpu_quota), (2048, 0, 0));
        assert_eq!(nq.cpuset_cpus, "");
    }

    #[test]
    fn pod_cgroup_limits_by_class() {
        // Guaranteed: everything.
        let g = pod(json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1500m", "memory": "128Mi"}}}]}));
        assert_eq!(
            pod_cgroup_limits(&g, true, 1024),
            PodLimits {
                cpu_shares: Some(2048),
                cpu_quota: Some(200_000),
                cpu_period: Some(100_000),
                memory_limit: Some(256 << 20),
                pids_limit: Some(1024),
            }
        );
        // Burstable with cpu limits everywhere but a missing memory limit.
        let b = pod(json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1", "memory": "64Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1"}}}]}));
        assert_eq!(
            pod_cgroup_limits(&b, true, -1),
            PodLimits {
                cpu_shares: Some(1126),
                cpu_quota: Some(200_000),
                cpu_period: Some(100_000),
                memory_limit: None,
                pids_limit: None,
            }
        );
        // Burstable without any cpu limit, and cpuCFSQuota=false.
        let b = pod(json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "64Mi"}}}]}));
        assert_eq!(
            pod_cgroup_limits(&b, false, 0),
            PodLimits {
                cpu_shares: Some(256),
                cpu_quota: None,
                cpu_period: None,
                memory_limit: Some(64 << 20),
                pids_limit: None,
            }
        );
        // BestEffort: shares 2 only (plus pids).
        let be = pod(json!({"containers": [{"name": "a"}]}));
        assert_eq!(
            pod_cgroup_limits(&be, true, 100),
            PodLimits {
                cpu_shares: Some(2),
                pids_limit: Some(100),
                ..PodLimits::default()
            }
        );
        // Guaranteed with cpuCFSQuota=false: period still written, no quota.
        assert_eq!(pod_cgroup_limits(&g, false, -1).cpu_quota, None);
    }
}
