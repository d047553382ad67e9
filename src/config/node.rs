//! The node-level settings of the drop-in work, validated from the raw file fields: whether
//! the kubelet API listens at all (enableServer), the host checks at startup
//! (protectKernelDefaults, failSwapOn, memorySwap), the pods capacity (podsPerCore), which
//! cgroups node allocatable is enforced on (enforceNodeAllocatable with the reserved
//! cgroups), the TLS key exchange groups (tlsCurvePreferences) and the log format.
//! Pure validation; the checks themselves run in `node::host` before confinement.

use serde_json::Value;

use super::ConfigError;
use super::error::Source;
use super::file::KubeletConfiguration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// false: no listener on `port` (10250) at all (upstream default true).
    pub enable_server: bool,
    /// Refuse to start when the kernel tunables differ from upstream's expected values.
    pub protect_kernel_defaults: bool,
    /// Refuse to start while swap is on (upstream default true).
    pub fail_swap_on: bool,
    /// pods capacity = min(maxPods, podsPerCore x cores) when > 0.
    pub pods_per_core: u32,
    pub node_allocatable: NodeAllocatableEnforcement,
    /// TLS key exchange group names for 10250 in preference order; empty = the policy's.
    pub tls_curve_preferences: Vec<String>,
    pub log_format: LogFormat,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            enable_server: true,
            protect_kernel_defaults: false,
            fail_swap_on: true,
            pods_per_core: 0,
            node_allocatable: NodeAllocatableEnforcement::default(),
            tls_curve_preferences: Vec::new(),
            log_format: LogFormat::Text,
        }
    }
}

/// enforceNodeAllocatable: which cgroups get the node allocatable limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAllocatableEnforcement {
    /// `pods`: the kubepods cgroup is limited to capacity minus the reservations.
    pub pods: bool,
    /// `kube-reserved`: this existing cgroup is limited to kubeReserved.
    pub kube_reserved_cgroup: Option<String>,
    /// `system-reserved`: this existing cgroup is limited to systemReserved.
    pub system_reserved_cgroup: Option<String>,
}

impl Default for NodeAllocatableEnforcement {
    fn default() -> Self {
        NodeAllocatableEnforcement {
            pods: true,
            kube_reserved_cgroup: None,
            system_reserved_cgroup: None,
        }
    }
}

/// The log format this process chose at startup, so processes it starts (the mount
/// helper) log the same way on the shared stderr.
static PROCESS_LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

pub fn set_process_log_format(f: LogFormat) {
    let _ = PROCESS_LOG_FORMAT.set(f);
}

pub fn process_log_format() -> LogFormat {
    PROCESS_LOG_FORMAT.get().copied().unwrap_or(LogFormat::Text)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    /// One JSON object per line (upstream's `--logging-format=json`).
    Json,
}

/// TLS curve IDs (IANA TLS Supported Groups, as Go's tls.CurveID) and the names ironlet's
/// TLS policy uses for them.
const CURVES: &[(u64, &str)] = &[(23, "secp256r1"), (24, "secp384r1"), (29, "X25519")];

/// Group ids upstream accepts that rustls with ring cannot offer.
const UNSUPPORTED_CURVES: &[(u64, &str)] = &[
    (25, "secp521r1"),
    (4588, "X25519MLKEM768"),
    (4587, "SecP256r1MLKEM768"),
    (4589, "SecP384r1MLKEM1024"),
];

pub(super) fn build(
    src: Source,
    raw: &KubeletConfiguration,
    cgroups_per_qos: bool,
) -> Result<NodeSettings, ConfigError> {
    if let Some(b) = raw
        .memory_swap
        .as_ref()
        .and_then(|m| m.swap_behavior.as_deref())
        .filter(|b| !b.is_empty() && *b != "NoSwap")
    {
        return Err(src.invalid(
            "memorySwap.swapBehavior",
            format!(
                "{b:?}: only NoSwap is implemented (pods never get swap); LimitedSwap is refused"
            ),
        ));
    }
    let pods_per_core = match raw.pods_per_core {
        None => 0,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| i32::try_from(*n).is_ok())
            .ok_or_else(|| src.invalid("podsPerCore", format!("{n} must be 0 or more")))?,
    };
    Ok(NodeSettings {
        enable_server: raw.enable_server.unwrap_or(true),
        protect_kernel_defaults: raw.protect_kernel_defaults.unwrap_or(false),
        fail_swap_on: raw.fail_swap_on.unwrap_or(true),
        pods_per_core,
        node_allocatable: node_allocatable(src, raw, cgroups_per_qos)?,
        tls_curve_preferences: curves(src, raw.tls_curve_preferences.as_deref())?,
        log_format: match raw.logging.as_ref().and_then(|l| l.format.as_deref()) {
            None | Some("") | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(src.invalid(
                    "logging.format",
                    format!("{other:?}: the supported formats are \"text\" and \"json\""),
                ));
            }
        },
    })
}

fn cgroup_name(
    src: Source,
    field: &str,
    raw: &Option<String>,
) -> Result<Option<String>, ConfigError> {
    match raw.as_deref().filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(c) if c.starts_with('/') && !c.split('/').any(|p| p == "..") => Ok(Some(c.to_owned())),
        Some(c) => Err(src.invalid(
            field,
            format!("{c:?} must be an absolute cgroup name without '..' (e.g. /kube-reserved)"),
        )),
    }
}

/// Upstream's validation: known levels; `none` alone; each reserved level needs its cgroup;
/// enforcement needs cgroupsPerQOS. The `-compressible` levels (cpu only) are not built.
fn node_allocatable(
    src: Source,
    raw: &KubeletConfiguration,
    cgroups_per_qos: bool,
) -> Result<NodeAllocatableEnforcement, ConfigError> {
    const FIELD: &str = "enforceNodeAllocatable";
    let kube_cgroup = cgroup_name(src, "kubeReservedCgroup", &raw.kube_reserved_cgroup)?;
    let system_cgroup = cgroup_name(src, "systemReservedCgroup", &raw.system_reserved_cgroup)?;
    // Upstream defaults only a nil list to [pods]; an empty list enforces nothing.
    let levels: Vec<&str> = match &raw.enforce_node_allocatable {
        None => vec!["pods"],
        Some(l) => l.iter().map(String::as_str).collect(),
    };
    let mut out = NodeAllocatableEnforcement {
        pods: false,
        kube_reserved_cgroup: None,
        system_reserved_cgroup: None,
    };
    for level in &levels {
        match *level {
            "pods" => out.pods = true,
            "kube-reserved" => {
                out.kube_reserved_cgroup = Some(kube_cgroup.clone().ok_or_else(|| {
                    src.invalid(
                        FIELD,
                        "kube-reserved needs kubeReservedCgroup (--kube-reserved-cgroup)",
                    )
                })?);
            }
            "system-reserved" => {
                out.system_reserved_cgroup = Some(system_cgroup.clone().ok_or_else(|| {
                    src.invalid(
                        FIELD,
                        "system-reserved needs systemReservedCgroup (--system-reserved-cgroup)",
                    )
                })?);
            }
            "none" if levels.len() == 1 => {}
            "none" => {
                return Err(src.invalid(FIELD, "none cannot be combined with other levels"));
            }
            "kube-reserved-compressible" | "system-reserved-compressible" => {
                return Err(src.invalid(
                    FIELD,
                    format!(
                        "{level}: cpu-only enforcement is not implemented; use {}",
                        level.trim_end_matches("-compressible")
                    ),
                ));
            }
            other => {
                return Err(src.invalid(
                    FIELD,
                    format!("unknown level {other:?}: expected pods, kube-reserved, system-reserved or none"),
                ));
            }
        }
    }
    let enforces =
        out.pods || out.kube_reserved_cgroup.is_some() || out.system_reserved_cgroup.is_some();
    if enforces && !cgroups_per_qos {
        return Err(src.invalid(
            FIELD,
            "node allocatable is enforced only with cgroupsPerQOS (--cgroups-per-qos); set enforceNodeAllocatable: [] or enable it",
        ));
    }
    Ok(out)
}

fn curves(src: Source, raw: Option<&[Value]>) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for (i, v) in raw.unwrap_or_default().iter().enumerate() {
        let field = format!("tlsCurvePreferences[{i}]");
        let name = match v {
            Value::Number(n) => n.as_u64().and_then(|id| {
                CURVES
                    .iter()
                    .find(|(c, _)| *c == id)
                    .map(|(_, n)| *n)
                    .or_else(|| {
                        UNSUPPORTED_CURVES
                            .iter()
                            .find(|(c, _)| *c == id)
                            .map(|_| "")
                    })
            }),
            Value::String(s) => CURVES
                .iter()
                .find(|(_, n)| n.eq_ignore_ascii_case(s))
                .map(|(_, n)| *n)
                .or(match s.as_str() {
                    "CurveP256" => Some("secp256r1"),
                    "CurveP384" => Some("secp384r1"),
                    _ if UNSUPPORTED_CURVES
                        .iter()
                        .any(|(_, n)| n.eq_ignore_ascii_case(s))
                        || s == "CurveP521" =>
                    {
                        Some("")
                    }
                    _ => None,
                }),
            _ => None,
        };
        match name {
            Some("") => {
                return Err(src.invalid(
                    field,
                    format!("{v}: not offered by this build; the supported groups are X25519 (29), secp256r1 (23) and secp384r1 (24)"),
                ));
            }
            Some(n) => {
                if !out.iter().any(|o| o == n) {
                    out.push(n.to_owned());
                }
            }
            None => {
                return Err(src.invalid(
                    field,
                    format!("{v}: unknown TLS group; use a curve id (29 X25519, 23 secp256r1, 24 secp384r1) or its name"),
                ));
            }
        }
    }
    Ok(out)
}
