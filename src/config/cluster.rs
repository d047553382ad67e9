//! The settings of cluster mode: where the API server is, how the node registers and
//! heartbeats, how fast the agent may talk to the API, and the reservations that turn
//! capacity into allocatable. Pure validation of the raw file fields; nothing is read here
//! but the numbers (the kubeconfig itself is read when the agent starts).

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;

use super::error::Source;
use super::file::KubeletConfiguration;
use super::{ConfigError, duration, secs};
use crate::resources::{HardEviction, Reserved};

/// Cluster-mode settings; also the reservations, which standalone admission uses too.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// `--kubeconfig`: None runs the node standalone.
    pub kubeconfig: Option<PathBuf>,
    pub register_node: bool,
    pub register_with_taints: Vec<Taint>,
    pub node_status_update_frequency: Duration,
    pub node_status_report_frequency: Duration,
    pub node_lease_duration: Duration,
    pub kube_api_qps: f64,
    pub kube_api_burst: u32,
    pub event_record_qps: f64,
    pub event_burst: u32,
    pub kube_reserved: Reserved,
    pub system_reserved: Reserved,
    pub eviction_hard: HardEviction,
    /// `--node-labels`, validated as upstream (kubelet-settable keys only); set at
    /// registration next to the labels the agent owns.
    pub node_labels: std::collections::BTreeMap<String, String>,
}

/// Upstream defaults (KubeletConfiguration v1beta1).
const DEFAULT_UPDATE: Duration = secs(10);
const DEFAULT_REPORT: Duration = secs(300);
const DEFAULT_LEASE_SECONDS: i64 = 40;

pub(super) fn build(
    src: Source,
    raw: &KubeletConfiguration,
    kubeconfig: Option<PathBuf>,
) -> Result<Cluster, ConfigError> {
    if let Some(k) = &kubeconfig
        && !k.is_absolute()
    {
        return Err(
            Source::FLAGS.invalid("--kubeconfig", format!("{k:?} must be an absolute path"))
        );
    }
    let update = duration(
        src,
        "nodeStatusUpdateFrequency",
        &raw.node_status_update_frequency,
        DEFAULT_UPDATE,
    )?;
    // Upstream: when only the update frequency is set, the report frequency follows it.
    let report_default = if raw.node_status_update_frequency.is_some()
        && raw.node_status_report_frequency.is_none()
    {
        update
    } else {
        DEFAULT_REPORT
    };
    let report = duration(
        src,
        "nodeStatusReportFrequency",
        &raw.node_status_report_frequency,
        report_default,
    )?;
    let lease_seconds = match raw.node_lease_duration_seconds {
        None | Some(0) => DEFAULT_LEASE_SECONDS,
        Some(n) if (1..=3600).contains(&n) => n,
        Some(n) => {
            return Err(src.invalid(
                "nodeLeaseDurationSeconds",
                format!("{n} must be between 1 and 3600"),
            ));
        }
    };
    let qps = |field: &str, v: Option<f64>, default: f64| -> Result<f64, ConfigError> {
        match v {
            None => Ok(default),
            Some(q) if q.is_finite() && q > 0.0 => Ok(q),
            // Upstream treats 0 as "no limit"; ironlet keeps a limit on every client.
            Some(q) => Err(src.invalid(
                field,
                format!("{q} must be a positive number of requests per second"),
            )),
        }
    };
    let burst = |field: &str, v: Option<i64>, default: u32| -> Result<u32, ConfigError> {
        match v {
            None => Ok(default),
            Some(b) => u32::try_from(b)
                .ok()
                .filter(|b| (1..=100_000).contains(b))
                .ok_or_else(|| src.invalid(field, format!("{b} must be between 1 and 100000"))),
        }
    };
    let reserved = |field: &str, map: &Option<std::collections::BTreeMap<String, String>>| {
        map.as_ref()
            .map(|m| Reserved::from_map(field, m))
            .transpose()
            .map(Option::unwrap_or_default)
            .map_err(|e| src.invalid(field, e.to_string()))
    };
    let eviction_hard = match &raw.eviction_hard {
        None => HardEviction::default(),
        Some(m) => {
            HardEviction::from_map(m).map_err(|e| src.invalid("evictionHard", e.to_string()))?
        }
    };
    let mut taints = raw.register_with_taints.clone().unwrap_or_default();
    for (i, t) in taints.iter_mut().enumerate() {
        if t.key.is_empty() {
            return Err(src.invalid(format!("registerWithTaints[{i}].key"), "must not be empty"));
        }
        if !matches!(
            t.effect.as_str(),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute"
        ) {
            return Err(src.invalid(
                format!("registerWithTaints[{i}].effect"),
                format!(
                    "{:?} must be NoSchedule, PreferNoSchedule or NoExecute",
                    t.effect
                ),
            ));
        }
        // The API server sets timeAdded for NoExecute taints itself.
        t.time_added = None;
    }
    Ok(Cluster {
        kubeconfig,
        register_node: raw.register_node.unwrap_or(true),
        register_with_taints: taints,
        node_status_update_frequency: update,
        node_status_report_frequency: report,
        node_lease_duration: Duration::from_secs(lease_seconds as u64),
        kube_api_qps: qps("kubeAPIQPS", raw.kube_api_qps, 50.0)?,
        kube_api_burst: burst("kubeAPIBurst", raw.kube_api_burst, 100)?,
        event_record_qps: qps("eventRecordQPS", raw.event_record_qps, 50.0)?,
        event_burst: burst("eventBurst", raw.event_burst, 100)?,
        kube_reserved: reserved("kubeReserved", &raw.kube_reserved)?,
        system_reserved: reserved("systemReserved", &raw.system_reserved)?,
        eviction_hard,
        node_labels: std::collections::BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(yaml: &str) -> KubeletConfiguration {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn build_raw(yaml: &str) -> Result<Cluster, ConfigError> {
        build(Source::FLAGS, &raw(yaml), None)
    }

    #[test]
    fn defaults_are_upstreams() {
        let c = build_raw("{}").unwrap();
        assert!(c.register_node);
        assert_eq!(c.node_status_update_frequency, secs(10));
        assert_eq!(c.node_status_report_frequency, secs(300));
        assert_eq!(c.node_lease_duration, secs(40));
        assert_eq!((c.kube_api_qps, c.kube_api_burst), (50.0, 100));
        assert_eq!((c.event_record_qps, c.event_burst), (50.0, 100));
        assert_eq!(c.eviction_hard, HardEviction::default());
        assert_eq!(c.kube_reserved, Reserved::default());
    }

    #[test]
    fn report_follows_update_when_only_update_is_set() {
        let c = build_raw("nodeStatusUpdateFrequency: 4s").unwrap();
        assert_eq!(c.node_status_report_frequency, secs(4));
        let c = build_raw("nodeStatusUpdateFrequency: 4s\nnodeStatusReportFrequency: 1m").unwrap();
        assert_eq!(c.node_status_report_frequency, secs(60));
    }

    #[test]
    fn values_are_parsed_and_bad_ones_named() {
        let c = build_raw(
            "kubeReserved: {cpu: 100m, memory: 1Gi}\nsystemReserved: {memory: 512Mi}\n\
             evictionHard: {memory.available: 200Mi}\nregisterWithTaints:\n\
             - {key: dedicated, value: infra, effect: NoSchedule}\nkubeAPIQPS: 5\nkubeAPIBurst: 10\n",
        )
        .unwrap();
        assert_eq!(c.kube_reserved.cpu_milli, 100);
        assert_eq!(c.kube_reserved.memory_bytes, 1 << 30);
        assert_eq!(c.system_reserved.memory_bytes, 512 << 20);
        assert_eq!(c.register_with_taints[0].key, "dedicated");
        assert_eq!((c.kube_api_qps, c.kube_api_burst), (5.0, 10));
        for (yaml, field) in [
            ("kubeAPIQPS: 0", "kubeAPIQPS"),
            ("eventBurst: -1", "eventBurst"),
            ("nodeLeaseDurationSeconds: -5", "nodeLeaseDurationSeconds"),
            ("kubeReserved: {gpu: 1}", "kubeReserved"),
            ("evictionHard: {memory.available: 150%}", "evictionHard"),
            (
                "registerWithTaints: [{key: a, effect: Sometimes}]",
                "registerWithTaints[0].effect",
            ),
        ] {
            let e = build_raw(yaml).unwrap_err();
            assert_eq!(e.field(), Some(field), "{yaml}: {e}");
        }
        let e = build(Source::FLAGS, &raw("{}"), Some("relative/kc".into())).unwrap_err();
        assert_eq!(e.field(), Some("--kubeconfig"));
    }
}
