//! The one table that says what ironlet does with every upstream KubeletConfiguration
//! v1beta1 top-level field it does not decode into a typed setting of its own: implemented
//! here, harmless to ignore (warned), refused unless it keeps upstream's default or the secure
//! value, refused whenever it is set (the operations issue owns it), or owned by another
//! branch. Other modules ask [`disposition`]; the README's field table is checked against
//! [`FIELDS`] by `tests/dropin.rs`, which reads both.
//!
//! Owns the decisions only: reading the file is `file.rs`, validating values is `mod.rs`.

use serde_json::Value;

use super::duration::parse_duration;

/// What a set value must be for a field ironlet does not implement to be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// `null`, `false`, `0`, `""`, `[]`, `{}`, or a zero duration: upstream's "off".
    Unset,
    /// One of these JSON values (written as JSON text), or [`Accept::Unset`].
    OneOf(&'static [&'static str]),
}

impl Accept {
    pub fn accepts(self, value: &Value) -> bool {
        if is_unset(value) {
            return true;
        }
        match self {
            Accept::Unset => false,
            Accept::OneOf(list) => list
                .iter()
                .any(|lit| serde_json::from_str::<Value>(lit).is_ok_and(|v| &v == value)),
        }
    }
}

fn is_unset(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || parse_duration(s).is_ok_and(|d| d.is_zero()),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// What ironlet does with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Decoded and enforced (see the README's configuration table).
    Implemented,
    /// Accepted with one warning naming it; ignoring it weakens nothing.
    Ignored,
    /// Security- or isolation-relevant and not implemented: a value other than the default
    /// or the secure one is a startup error naming the field.
    Refused(Accept),
    /// Belongs to the operations issue (manifest URL, graceful shutdown, systemd cgroups):
    /// refused when set to anything but upstream's "off" until that lands.
    Operations(Accept),
    /// Implemented on another branch; until it merges, `fallback` applies.
    Pending {
        branch: &'static str,
        fallback: Fallback,
    },
}

/// What a [`Disposition::Pending`] field does on this branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    Warn,
    Refuse(Accept),
}

impl Disposition {
    /// The word the README's table uses.
    pub fn label(self) -> &'static str {
        match self {
            Disposition::Implemented => "implemented",
            Disposition::Ignored => "ignored (warned)",
            Disposition::Refused(_) => "refused unless default",
            Disposition::Operations(_) => "refused when set (operations)",
            Disposition::Pending { .. } => "pending",
        }
    }

    /// The accept rule that applies on this branch, if the field can be refused.
    pub fn refusal(self) -> Option<Accept> {
        match self {
            Disposition::Refused(a)
            | Disposition::Operations(a)
            | Disposition::Pending {
                fallback: Fallback::Refuse(a),
                ..
            } => Some(a),
            _ => None,
        }
    }
}

/// One upstream field and what ironlet does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub disposition: Disposition,
    /// Why, in a few words; shown in warnings, errors and the README.
    pub why: &'static str,
}

use Accept::{OneOf, Unset};
use Disposition::{Ignored, Implemented, Operations, Pending, Refused};

const fn f(name: &'static str, disposition: Disposition, why: &'static str) -> Field {
    Field {
        name,
        disposition,
        why,
    }
}

/// The 84 top-level fields of k8s.io/kubelet config/v1beta1 (1.33-1.36) that ironlet used to
/// accept with a warning and ignore, each with its decision. Sorted as upstream's types.go.
pub const FIELDS: &[Field] = &[
    f(
        "enableServer",
        Implemented,
        "false: no listener on port (10250)",
    ),
    f(
        "httpCheckFrequency",
        Ignored,
        "tunes the manifest URL source, which is refused",
    ),
    f(
        "staticPodURL",
        Operations(Unset),
        "the manifest URL source is not built yet",
    ),
    f(
        "staticPodURLHeader",
        Operations(Unset),
        "the manifest URL source is not built yet",
    ),
    f(
        "tlsCurvePreferences",
        Implemented,
        "key exchange groups of 10250, within policy/tls.json",
    ),
    f(
        "rotateCertificates",
        Implemented,
        "client certificate rotation at 70-90 % of validity (needs --kubeconfig)",
    ),
    f(
        "serverTLSBootstrap",
        Implemented,
        "serving certificate from a kubelet-serving CSR, rotated; 10250 opens once issued",
    ),
    f(
        "registryPullQPS",
        Ignored,
        "pull pacing only; pulls go through the CRI",
    ),
    f(
        "registryBurst",
        Ignored,
        "pull pacing only; pulls go through the CRI",
    ),
    f(
        "imagePullCredentialsVerificationPolicy",
        Ignored,
        "ironlet passes no pull credentials (alpha gate KubeletEnsureSecretPulledImages upstream)",
    ),
    f(
        "preloadedImagesVerificationAllowlist",
        Ignored,
        "goes with imagePullCredentialsVerificationPolicy",
    ),
    f(
        "enableContentionProfiling",
        Ignored,
        "ironlet has no profiling endpoint",
    ),
    f(
        "oomScoreAdj",
        Ignored,
        "the agent's own score is left to the service manager",
    ),
    f(
        "imageMinimumGCAge",
        Ignored,
        "image garbage collection is not built yet",
    ),
    f(
        "imageMaximumGCAge",
        Ignored,
        "image garbage collection is not built yet",
    ),
    f(
        "imageGCHighThresholdPercent",
        Ignored,
        "image garbage collection is not built yet",
    ),
    f(
        "imageGCLowThresholdPercent",
        Ignored,
        "image garbage collection is not built yet",
    ),
    f(
        "volumeStatsAggPeriod",
        Ignored,
        "no volume stats are reported",
    ),
    f(
        "kubeletCgroups",
        Ignored,
        "the agent stays in the cgroup its service manager gives it",
    ),
    f("systemCgroups", Ignored, "ironlet moves no host process"),
    f(
        "cgroupDriver",
        Operations(OneOf(&["\"cgroupfs\""])),
        "only cgroupfs is built; systemd belongs to the operations issue",
    ),
    f(
        "cpuManagerPolicy",
        Refused(OneOf(&["\"none\""])),
        "exclusive CPUs are an isolation guarantee ironlet does not give",
    ),
    f(
        "singleProcessOOMKill",
        Ignored,
        "the OOM kill scope stays the kernel's default",
    ),
    f(
        "cpuManagerPolicyOptions",
        Refused(Unset),
        "goes with cpuManagerPolicy",
    ),
    f("cpuManagerReconcilePeriod", Ignored, "no CPU manager runs"),
    f("draManagerReconcilePeriod", Ignored, "no DRA manager runs"),
    f(
        "memoryManagerPolicy",
        Refused(OneOf(&["\"None\""])),
        "NUMA memory pinning is an isolation guarantee ironlet does not give",
    ),
    f(
        "topologyManagerPolicy",
        Refused(OneOf(&["\"none\""])),
        "NUMA alignment is an isolation guarantee ironlet does not give",
    ),
    f("topologyManagerScope", Ignored, "no topology manager runs"),
    f(
        "topologyManagerPolicyOptions",
        Refused(Unset),
        "goes with topologyManagerPolicy",
    ),
    f(
        "qosReserved",
        Refused(Unset),
        "QoS-level memory reservation is not built",
    ),
    f("hairpinMode", Ignored, "hairpin NAT is the CNI plugin's"),
    f(
        "podCIDR",
        Ignored,
        "pod addresses come from the CNI configuration",
    ),
    f(
        "runOnce",
        Refused(Unset),
        "ironlet always runs as a long-lived agent",
    ),
    f(
        "cpuCFSQuotaPeriod",
        Refused(OneOf(&["\"100ms\""])),
        "CPU limits are computed with the kernel's 100ms period",
    ),
    f("nodeStatusMaxImages", Ignored, "the Node reports no images"),
    f(
        "maxOpenFiles",
        Ignored,
        "the file limit is the service manager's (LimitNOFILE)",
    ),
    f("contentType", Ignored, "the API client speaks JSON"),
    f("serializeImagePulls", Ignored, "pull pacing only"),
    f("maxParallelImagePulls", Ignored, "pull pacing only"),
    f(
        "evictionSoft",
        Refused(Unset),
        "the eviction manager is not built: soft thresholds would never evict",
    ),
    f(
        "evictionSoftGracePeriod",
        Refused(Unset),
        "goes with evictionSoft",
    ),
    f(
        "evictionPressureTransitionPeriod",
        Ignored,
        "pressure conditions follow the readings directly",
    ),
    f(
        "evictionMaxPodGracePeriod",
        Ignored,
        "no pod is evicted yet",
    ),
    f(
        "evictionMinimumReclaim",
        Refused(Unset),
        "goes with evictionSoft and the eviction manager",
    ),
    f(
        "mergeDefaultEvictionSettings",
        Refused(Unset),
        "evictionHard replaces the defaults, as upstream's default false",
    ),
    f(
        "podsPerCore",
        Implemented,
        "pods capacity = min(maxPods, podsPerCore x cores)",
    ),
    f(
        "enableControllerAttachDetach",
        Ignored,
        "no attachable volume types are supported",
    ),
    f(
        "protectKernelDefaults",
        Implemented,
        "true: refuse to start when kernel sysctls differ",
    ),
    f(
        "makeIPTablesUtilChains",
        Ignored,
        "ironlet writes no iptables rules; port mappings are the CNI plugin's",
    ),
    f(
        "iptablesMasqueradeBit",
        Ignored,
        "no effect upstream either",
    ),
    f("iptablesDropBit", Ignored, "no effect upstream either"),
    f("featureGates", Ignored, "ironlet has no feature gates"),
    f(
        "failSwapOn",
        Implemented,
        "true: refuse to start with swap on",
    ),
    f(
        "memorySwap",
        Implemented,
        "NoSwap only; LimitedSwap is refused",
    ),
    f(
        "containerLogMaxWorkers",
        Ignored,
        "one rotation task checks every 10s",
    ),
    f(
        "containerLogMonitorInterval",
        Ignored,
        "one rotation task checks every 10s",
    ),
    f(
        "configMapAndSecretChangeDetectionStrategy",
        Ignored,
        "configMap and secret volumes are not supported",
    ),
    f(
        "reservedSystemCPUs",
        Refused(Unset),
        "CPU sets are not built; use kubeReserved/systemReserved cpu",
    ),
    f("showHiddenMetricsForVersion", Ignored, "no hidden metrics"),
    f(
        "systemReservedCgroup",
        Implemented,
        "with enforceNodeAllocatable system-reserved",
    ),
    f(
        "kubeReservedCgroup",
        Implemented,
        "with enforceNodeAllocatable kube-reserved",
    ),
    f(
        "enforceNodeAllocatable",
        Implemented,
        "pods, kube-reserved, system-reserved or none",
    ),
    f(
        "allowedUnsafeSysctls",
        Implemented,
        "namespaced sysctls beyond the safe set; node-level entries refused at load",
    ),
    f("volumePluginDir", Ignored, "no flex volume plugins"),
    f("providerID", Ignored, "no cloud provider integration"),
    f(
        "kernelMemcgNotification",
        Ignored,
        "pressure is read by polling",
    ),
    f(
        "logging",
        Implemented,
        "format text or json, verbosity; other options are warned",
    ),
    f(
        "enableSystemLogQuery",
        Ignored,
        "secure either way: /logs/ takes no query",
    ),
    f(
        "shutdownGracePeriod",
        Operations(Unset),
        "graceful node shutdown is not built yet",
    ),
    f(
        "shutdownGracePeriodCriticalPods",
        Operations(Unset),
        "graceful node shutdown is not built yet",
    ),
    f(
        "shutdownGracePeriodByPodPriority",
        Operations(Unset),
        "graceful node shutdown is not built yet",
    ),
    f(
        "crashLoopBackOff",
        Ignored,
        "the back-off stays 10s doubling to 300s",
    ),
    f(
        "reservedMemory",
        Refused(Unset),
        "NUMA memory reservations are not built",
    ),
    f(
        "enableProfilingHandler",
        Ignored,
        "secure either way: /debug/pprof is always 404",
    ),
    f(
        "enableDebugFlagsHandler",
        Ignored,
        "secure either way: /debug/flags is always 404",
    ),
    f(
        "seccompDefault",
        Implemented,
        "RuntimeDefault for every container not asking for Unconfined; default true (upstream: false)",
    ),
    f(
        "memoryThrottlingFactor",
        Ignored,
        "memory.high throttling (alpha MemoryQoS) is not used",
    ),
    f(
        "memoryReservationPolicy",
        Ignored,
        "memory.min reservations (alpha MemoryQoS) are not used",
    ),
    f("tracing", Ignored, "no OpenTelemetry export"),
    f(
        "localStorageCapacityIsolation",
        Ignored,
        "ephemeral-storage limits are not enforced by eviction yet",
    ),
    f(
        "imageServiceEndpoint",
        Refused(Unset),
        "images go to containerRuntimeEndpoint; a second endpoint is a trust decision ironlet does not take",
    ),
    f(
        "failCgroupV1",
        Refused(Unset),
        "the cgroup v1 refusal is not built; cgroup v1 and v2 both work",
    ),
    f(
        "userNamespaces",
        Refused(Unset),
        "user namespace id ranges are not built",
    ),
];

/// What ironlet does with `name` (a top-level field), if it is in the table.
pub fn disposition(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.name == name)
}

/// Names of the fields whose value the typed configuration decodes.
pub fn implemented() -> impl Iterator<Item = &'static str> {
    FIELDS
        .iter()
        .filter(|f| f.disposition == Implemented)
        .map(|f| f.name)
}

/// The README table, one row per field (`| field | disposition | why |`).
pub fn markdown_table() -> String {
    let mut out = String::from("| field | disposition | why |\n|---|---|---|\n");
    for field in FIELDS {
        let label = match field.disposition {
            Pending { branch, fallback } => format!(
                "pending (branch {branch}); until then {}",
                match fallback {
                    Fallback::Warn => "ignored (warned)",
                    Fallback::Refuse(_) => "refused unless default",
                }
            ),
            d => d.label().to_owned(),
        };
        out.push_str(&format!("| {} | {label} | {} |\n", field.name, field.why));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eighty_four_unique_fields() {
        assert_eq!(FIELDS.len(), 84);
        let mut names: Vec<_> = FIELDS.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 84, "duplicate names");
    }

    #[test]
    fn accept_rules() {
        let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        for unset in ["null", "false", "0", "\"\"", "[]", "{}", "\"0s\"", "\"0\""] {
            assert!(Unset.accepts(&v(unset)), "{unset}");
        }
        for set in ["true", "1", "\"1m\"", "[\"a\"]", "{\"a\":1}", "\"x\""] {
            assert!(!Unset.accepts(&v(set)), "{set}");
        }
        let cgroupfs = OneOf(&["\"cgroupfs\""]);
        assert!(cgroupfs.accepts(&v("\"cgroupfs\"")) && cgroupfs.accepts(&v("\"\"")));
        assert!(!cgroupfs.accepts(&v("\"systemd\"")));
    }

    #[test]
    fn operations_fields_are_refused_when_set() {
        for name in [
            "staticPodURL",
            "shutdownGracePeriod",
            "shutdownGracePeriodCriticalPods",
            "cgroupDriver",
        ] {
            let d = disposition(name).unwrap().disposition;
            assert!(matches!(d, Operations(_)), "{name}");
        }
        let systemd = Value::String("systemd".into());
        assert!(
            !disposition("cgroupDriver")
                .unwrap()
                .disposition
                .refusal()
                .unwrap()
                .accepts(&systemd)
        );
    }
}
