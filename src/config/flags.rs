//! Command-line flags of `ironlet run` (and of the binary invoked as `kubelet`), spelled and
//! valued as upstream kubelet 1.33 spells them. Owns parsing only; [`super::Config::load`]
//! lays the config-field flags over the file (flags win) and validates the result exactly
//! as it validates the file, so an insecure flag is refused like the insecure field, naming
//! the flag and the CIS id.
//!
//! Two kinds of flags:
//! - [`RunFlags`]' own fields (clap derive): the non-config flags the agent uses directly.
//! - [`UPSTREAM_FLAGS`]: every other upstream flag, as data. Each maps onto a
//!   KubeletConfiguration field (a dotted path), or is accepted with upstream's warning, or
//!   refused with a reason, or is a removed flag that gets upstream's "unknown flag" message
//!   and when it was removed. A name that [`RunFlags`] already defines (for example a flag
//!   another module implements natively) is left to it: the table never defines it twice.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::duration::parse_duration;

/// Upstream default for --root-dir; ironlet keeps its state there too.
pub const DEFAULT_ROOT_DIR: &str = "/var/lib/kubelet";

#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct RunFlags {
    /// KubeletConfiguration (kubelet.config.k8s.io/v1beta1) file, YAML or JSON. Without it the
    /// secure v1beta1 defaults apply (not upstream's flags-only legacy defaults).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// CRI runtime endpoint: unix:///path/to.sock or an absolute socket path; overrides
    /// containerRuntimeEndpoint [default: unix:///run/containerd/containerd.sock]
    #[arg(long, value_name = "ENDPOINT")]
    pub container_runtime_endpoint: Option<String>,

    /// Directory for pod, volume and plugin state [default: /var/lib/kubelet]
    #[arg(long, value_name = "DIR")]
    pub root_dir: Option<PathBuf>,

    /// Node name to use instead of the machine hostname (lower-cased; a DNS-1123 subdomain)
    #[arg(long, value_name = "NAME")]
    pub hostname_override: Option<String>,

    /// kubeconfig file for the API server; without it the node runs standalone
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// IP address to report for the node
    #[arg(long, value_name = "IP")]
    pub node_ip: Option<IpAddr>,

    /// Standalone authorization policy for the kubelet API (format in policy/README.md).
    /// Used when there is no API server for SubjectAccessReviews; without either, port
    /// 10250 stays closed. ironlet's own flag (upstream has no standalone authorizer).
    #[arg(long, value_name = "PATH")]
    pub authorization_policy_file: Option<PathBuf>,

    /// The node's Pod Security policy (format in policy/README.md), replacing the
    /// compiled-in policy/pod-security.json: the Pod Security Standards level per pod source
    /// and namespace, static pods included. ironlet's own flag.
    #[arg(long, value_name = "PATH")]
    pub pod_security_policy_file: Option<PathBuf>,

    /// Log verbosity, as upstream's klog level
    #[arg(short = 'v', long = "v", value_name = "LEVEL", default_value_t = 0)]
    pub v: u8,

    /// INSECURE, for debugging only: run without self-confinement (no capability
    /// reduction, landlock or seccomp). Logged as a warning at start and recorded for the
    /// self-audit, which reports it as FAIL.
    #[arg(long)]
    pub insecure_disable_confinement: bool,

    /// INSECURE, for tests only: read the kernel tunables (protectKernelDefaults) and the
    /// swap list (failSwapOn) from DIR/sys and DIR/swaps instead of /proc. Logged as a warning.
    #[arg(long, value_name = "DIR", hide = true)]
    pub insecure_proc_root: Option<PathBuf>,

    /// Audit log of the kubelet API: JSON lines, hash-chained, mode 0600, rotated by size
    /// (`ironlet audit verify` checks it). Without it, audit records go to stderr.
    /// ironlet's own flag (upstream kubelet has no audit log).
    #[arg(long, value_name = "PATH")]
    pub audit_log_path: Option<PathBuf>,

    /// Size in MiB at which the audit log is rotated; 5 rotated files are kept [default: 100]
    #[arg(long, value_name = "MIB")]
    pub audit_log_maxsize: Option<u64>,

    /// kubeconfig whose credentials (typically a bootstrap token) request the node's client
    /// certificate when --kubeconfig has none that is valid; --kubeconfig is then written
    #[arg(long, value_name = "PATH")]
    pub bootstrap_kubeconfig: Option<PathBuf>,

    /// Directory of the node's certificates and keys [default: <root-dir>/pki]
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,

    /// Rotate the client certificate before it expires; overrides rotateCertificates
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub rotate_certificates: Option<bool>,

    /// Request the serving certificate from the API server and rotate it; overrides
    /// serverTLSBootstrap
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub rotate_server_certificates: Option<bool>,

    /// The upstream flags of [`UPSTREAM_FLAGS`] as given; filled by [`RunArgs`].
    #[arg(skip)]
    pub upstream: UpstreamFlags,
}

/// The command line of `ironlet run` and of `kubelet`: [`RunFlags`], then the upstream flag
/// table, which skips any name [`RunFlags`] already defines.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct RunArgs {
    #[command(flatten)]
    pub flags: RunFlags,
    #[command(flatten)]
    pub upstream: UpstreamFlags,
}

impl RunArgs {
    pub fn into_flags(self) -> RunFlags {
        RunFlags {
            upstream: self.upstream,
            ..self.flags
        }
    }
}

/// How an upstream flag's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--flag`, `--flag=true`, `--flag=false` (Go's strconv.ParseBool spellings).
    Bool,
    String,
    /// An absolute path or empty.
    Path,
    Int,
    Ip,
    /// A Go duration (`20s`, `1h30m`).
    Duration,
    /// `a,b,c`; repeated flags append.
    List,
    /// `k=v,k=v`; repeated flags merge.
    Map,
    /// `k=true,l=false` (feature gates).
    BoolMap,
    /// `signal<quantity,...` (eviction thresholds).
    LangleMap,
    /// `Header:value,...`; repeated names collect values in order.
    ColonMultimap,
    /// `key=value:Effect,key:Effect`.
    Taints,
    /// `numa:resource=quantity,...`; one flag per NUMA node.
    ReservedMemory,
}

/// What an upstream flag does here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Sets this KubeletConfiguration field (dotted path), over the file.
    Field(&'static str),
    /// A node label map applied at registration (`--node-labels`).
    NodeLabels,
    /// `--version[=raw]`: print the version and exit.
    Version,
    /// Accepted and ignored, with this warning (upstream's own words where it has them).
    Warn(&'static str),
    /// Refused with this reason whenever it is given with a value other than off/empty.
    Refuse(&'static str),
    /// Removed upstream: refused with upstream's "unknown flag" and this note.
    Removed(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub target: Target,
}

impl FlagSpec {
    /// Upstream marks every KubeletConfiguration flag deprecated with this message, except
    /// the logging flags it keeps and --provider-id.
    pub fn deprecation(&self) -> Option<&'static str> {
        const NOT_DEPRECATED: &[&str] = &["v", "vmodule", "log-flush-frequency", "provider-id"];
        match self.target {
            Target::Field(_) if self.name == "seccomp-default" => None,
            Target::Field(_) if !NOT_DEPRECATED.contains(&self.name) => {
                Some(DEPRECATED_CONFIG_FLAG)
            }
            _ => DEPRECATED_OTHER
                .iter()
                .find(|(n, _)| *n == self.name)
                .map(|(_, m)| *m),
        }
    }
}

/// Upstream's deprecation text for every KubeletConfiguration flag.
pub const DEPRECATED_CONFIG_FLAG: &str = "This parameter should be set via the config file specified by the Kubelet's --config flag. See https://kubernetes.io/docs/tasks/administer-cluster/kubelet-config-file/ for more information.";

const DEPRECATED_OTHER: &[(&str, &str)] = &[
    (
        "pod-infra-container-image",
        "will be removed in 1.35. Image garbage collector will get sandbox image information from CRI.",
    ),
    (
        "minimum-container-ttl-duration",
        "Use --eviction-hard or --eviction-soft instead. Will be removed in a future version.",
    ),
    (
        "maximum-dead-containers-per-container",
        "Use --eviction-hard or --eviction-soft instead. Will be removed in a future version.",
    ),
    (
        "maximum-dead-containers",
        "Use --eviction-hard or --eviction-soft instead. Will be removed in a future version.",
    ),
    (
        "register-schedulable",
        "will be removed in a future version",
    ),
    (
        "keep-terminated-pod-volumes",
        "will be removed in a future version",
    ),
    (
        "experimental-mounter-path",
        "will be removed in 1.25 or later. in favor of using CSI.",
    ),
    (
        "cloud-config",
        "will be removed in 1.25 or later, in favor of removing cloud provider code from Kubelet.",
    ),
    (
        "experimental-allocatable-ignore-eviction",
        "will be removed in 1.25 or later.",
    ),
];

const fn fl(name: &'static str, kind: Kind, target: Target) -> FlagSpec {
    FlagSpec { name, kind, target }
}

use Kind as K;
use Target::{Field as F, Refuse, Removed, Warn};

/// Every upstream kubelet 1.33 flag (cmd/kubelet/app/options, pkg/kubelet/config/flags.go,
/// component-base logs), except those [`RunFlags`] defines itself (--config,
/// --container-runtime-endpoint, --root-dir, --hostname-override, --kubeconfig, --node-ip,
/// --v, --bootstrap-kubeconfig, --cert-dir), plus flags removed in recent releases.
pub const UPSTREAM_FLAGS: &[FlagSpec] = &[
    // Non-config flags (KubeletFlags, ContainerRuntimeOptions).
    fl("version", K::String, Target::Version),
    fl(
        "config-dir",
        K::Path,
        Refuse(
            "drop-in configuration directories are not implemented; merge the drop-ins into --config",
        ),
    ),
    fl(
        "cloud-provider",
        K::String,
        Refuse("cloud provider integration is not implemented"),
    ),
    fl("seccomp-default", K::Bool, F("seccompDefault")),
    fl("node-labels", K::Map, Target::NodeLabels),
    fl(
        "lock-file",
        K::Path,
        Refuse("the lock file protocol is not implemented"),
    ),
    fl(
        "exit-on-lock-contention",
        K::Bool,
        Refuse("the lock file protocol is not implemented"),
    ),
    fl(
        "runtime-cgroups",
        K::String,
        Warn("the runtime stays in the cgroup its service manager gives it; ignored"),
    ),
    fl(
        "pod-infra-container-image",
        K::String,
        Warn("ignored: the sandbox image is the runtime's own setting"),
    ),
    fl(
        "image-credential-provider-config",
        K::Path,
        Warn(
            "credential provider plugins are not implemented; images are pulled without credentials",
        ),
    ),
    fl(
        "image-credential-provider-bin-dir",
        K::Path,
        Warn(
            "credential provider plugins are not implemented; images are pulled without credentials",
        ),
    ),
    fl(
        "minimum-container-ttl-duration",
        K::Duration,
        Warn("ignored"),
    ),
    fl(
        "maximum-dead-containers-per-container",
        K::Int,
        Warn("ignored"),
    ),
    fl("maximum-dead-containers", K::Int, Warn("ignored")),
    fl(
        "register-schedulable",
        K::Bool,
        Warn("ignored; use --register-with-taints"),
    ),
    fl("keep-terminated-pod-volumes", K::Bool, Warn("ignored")),
    fl("experimental-mounter-path", K::Path, Warn("ignored")),
    fl("cloud-config", K::Path, Warn("ignored")),
    fl(
        "experimental-allocatable-ignore-eviction",
        K::Bool,
        Refuse("allocatable always subtracts the hard eviction thresholds"),
    ),
    fl(
        "vmodule",
        K::String,
        Warn("per-file verbosity is not implemented; --v applies everywhere"),
    ),
    // KubeletConfiguration flags (AddKubeletConfigFlags).
    fl("enable-server", K::Bool, F("enableServer")),
    fl("fail-swap-on", K::Bool, F("failSwapOn")),
    fl("pod-manifest-path", K::Path, F("staticPodPath")),
    fl("sync-frequency", K::Duration, F("syncFrequency")),
    fl("file-check-frequency", K::Duration, F("fileCheckFrequency")),
    fl("http-check-frequency", K::Duration, F("httpCheckFrequency")),
    fl("manifest-url", K::String, F("staticPodURL")),
    fl(
        "manifest-url-header",
        K::ColonMultimap,
        F("staticPodURLHeader"),
    ),
    fl("address", K::Ip, F("address")),
    fl("port", K::Int, F("port")),
    fl("read-only-port", K::Int, F("readOnlyPort")),
    fl(
        "image-service-endpoint",
        K::String,
        F("imageServiceEndpoint"),
    ),
    fl(
        "anonymous-auth",
        K::Bool,
        F("authentication.anonymous.enabled"),
    ),
    fl(
        "authentication-token-webhook",
        K::Bool,
        F("authentication.webhook.enabled"),
    ),
    fl(
        "authentication-token-webhook-cache-ttl",
        K::Duration,
        F("authentication.webhook.cacheTTL"),
    ),
    fl(
        "client-ca-file",
        K::Path,
        F("authentication.x509.clientCAFile"),
    ),
    fl("authorization-mode", K::String, F("authorization.mode")),
    fl(
        "authorization-webhook-cache-authorized-ttl",
        K::Duration,
        F("authorization.webhook.cacheAuthorizedTTL"),
    ),
    fl(
        "authorization-webhook-cache-unauthorized-ttl",
        K::Duration,
        F("authorization.webhook.cacheUnauthorizedTTL"),
    ),
    fl("tls-cert-file", K::Path, F("tlsCertFile")),
    fl("tls-private-key-file", K::Path, F("tlsPrivateKeyFile")),
    fl(
        "rotate-server-certificates",
        K::Bool,
        F("serverTLSBootstrap"),
    ),
    fl("tls-cipher-suites", K::List, F("tlsCipherSuites")),
    fl("tls-min-version", K::String, F("tlsMinVersion")),
    fl("rotate-certificates", K::Bool, F("rotateCertificates")),
    fl("registry-qps", K::Int, F("registryPullQPS")),
    fl("registry-burst", K::Int, F("registryBurst")),
    fl("event-qps", K::Int, F("eventRecordQPS")),
    fl("event-burst", K::Int, F("eventBurst")),
    fl(
        "enable-debugging-handlers",
        K::Bool,
        F("enableDebuggingHandlers"),
    ),
    fl(
        "contention-profiling",
        K::Bool,
        F("enableContentionProfiling"),
    ),
    fl("healthz-port", K::Int, F("healthzPort")),
    fl("healthz-bind-address", K::Ip, F("healthzBindAddress")),
    fl("oom-score-adj", K::Int, F("oomScoreAdj")),
    fl("cluster-domain", K::String, F("clusterDomain")),
    fl("volume-plugin-dir", K::Path, F("volumePluginDir")),
    fl("cluster-dns", K::List, F("clusterDNS")),
    fl(
        "streaming-connection-idle-timeout",
        K::Duration,
        F("streamingConnectionIdleTimeout"),
    ),
    fl(
        "node-status-update-frequency",
        K::Duration,
        F("nodeStatusUpdateFrequency"),
    ),
    fl(
        "minimum-image-ttl-duration",
        K::Duration,
        F("imageMinimumGCAge"),
    ),
    fl(
        "image-gc-high-threshold",
        K::Int,
        F("imageGCHighThresholdPercent"),
    ),
    fl(
        "image-gc-low-threshold",
        K::Int,
        F("imageGCLowThresholdPercent"),
    ),
    fl(
        "volume-stats-agg-period",
        K::Duration,
        F("volumeStatsAggPeriod"),
    ),
    fl("feature-gates", K::BoolMap, F("featureGates")),
    fl("kubelet-cgroups", K::String, F("kubeletCgroups")),
    fl("system-cgroups", K::String, F("systemCgroups")),
    fl("provider-id", K::String, F("providerID")),
    fl("cgroups-per-qos", K::Bool, F("cgroupsPerQOS")),
    fl("cgroup-driver", K::String, F("cgroupDriver")),
    fl("cgroup-root", K::String, F("cgroupRoot")),
    fl("cpu-manager-policy", K::String, F("cpuManagerPolicy")),
    fl(
        "cpu-manager-policy-options",
        K::Map,
        F("cpuManagerPolicyOptions"),
    ),
    fl(
        "cpu-manager-reconcile-period",
        K::Duration,
        F("cpuManagerReconcilePeriod"),
    ),
    fl("qos-reserved", K::Map, F("qosReserved")),
    fl(
        "topology-manager-policy",
        K::String,
        F("topologyManagerPolicy"),
    ),
    fl(
        "runtime-request-timeout",
        K::Duration,
        F("runtimeRequestTimeout"),
    ),
    fl("hairpin-mode", K::String, F("hairpinMode")),
    fl("max-pods", K::Int, F("maxPods")),
    fl("pod-cidr", K::String, F("podCIDR")),
    fl("pod-max-pids", K::Int, F("podPidsLimit")),
    fl("resolv-conf", K::String, F("resolvConf")),
    fl("runonce", K::Bool, F("runOnce")),
    fl("cpu-cfs-quota", K::Bool, F("cpuCFSQuota")),
    fl("cpu-cfs-quota-period", K::Duration, F("cpuCFSQuotaPeriod")),
    fl(
        "enable-controller-attach-detach",
        K::Bool,
        F("enableControllerAttachDetach"),
    ),
    fl(
        "make-iptables-util-chains",
        K::Bool,
        F("makeIPTablesUtilChains"),
    ),
    fl(
        "iptables-masquerade-bit",
        K::Int,
        F("iptablesMasqueradeBit"),
    ),
    fl("iptables-drop-bit", K::Int, F("iptablesDropBit")),
    fl(
        "container-log-max-size",
        K::String,
        F("containerLogMaxSize"),
    ),
    fl("container-log-max-files", K::Int, F("containerLogMaxFiles")),
    fl("allowed-unsafe-sysctls", K::List, F("allowedUnsafeSysctls")),
    fl("node-status-max-images", K::Int, F("nodeStatusMaxImages")),
    fl(
        "kernel-memcg-notification",
        K::Bool,
        F("kernelMemcgNotification"),
    ),
    fl(
        "local-storage-capacity-isolation",
        K::Bool,
        F("localStorageCapacityIsolation"),
    ),
    fl("max-open-files", K::Int, F("maxOpenFiles")),
    fl("kube-api-content-type", K::String, F("contentType")),
    fl("kube-api-qps", K::Int, F("kubeAPIQPS")),
    fl("kube-api-burst", K::Int, F("kubeAPIBurst")),
    fl("serialize-image-pulls", K::Bool, F("serializeImagePulls")),
    fl("eviction-hard", K::LangleMap, F("evictionHard")),
    fl("eviction-soft", K::LangleMap, F("evictionSoft")),
    fl(
        "eviction-soft-grace-period",
        K::Map,
        F("evictionSoftGracePeriod"),
    ),
    fl(
        "eviction-pressure-transition-period",
        K::Duration,
        F("evictionPressureTransitionPeriod"),
    ),
    fl(
        "eviction-max-pod-grace-period",
        K::Int,
        F("evictionMaxPodGracePeriod"),
    ),
    fl(
        "eviction-minimum-reclaim",
        K::Map,
        F("evictionMinimumReclaim"),
    ),
    fl("pods-per-core", K::Int, F("podsPerCore")),
    fl(
        "protect-kernel-defaults",
        K::Bool,
        F("protectKernelDefaults"),
    ),
    fl("reserved-cpus", K::String, F("reservedSystemCPUs")),
    fl(
        "topology-manager-scope",
        K::String,
        F("topologyManagerScope"),
    ),
    fl(
        "topology-manager-policy-options",
        K::Map,
        F("topologyManagerPolicyOptions"),
    ),
    fl("system-reserved", K::Map, F("systemReserved")),
    fl("kube-reserved", K::Map, F("kubeReserved")),
    fl(
        "enforce-node-allocatable",
        K::List,
        F("enforceNodeAllocatable"),
    ),
    fl(
        "system-reserved-cgroup",
        K::String,
        F("systemReservedCgroup"),
    ),
    fl("kube-reserved-cgroup", K::String, F("kubeReservedCgroup")),
    fl("memory-manager-policy", K::String, F("memoryManagerPolicy")),
    fl("reserved-memory", K::ReservedMemory, F("reservedMemory")),
    fl("register-node", K::Bool, F("registerNode")),
    fl("register-with-taints", K::Taints, F("registerWithTaints")),
    // component-base logging flags (logsapi.AddFlags).
    fl("logging-format", K::String, F("logging.format")),
    fl(
        "log-flush-frequency",
        K::Duration,
        F("logging.flushFrequency"),
    ),
    fl(
        "log-json-split-stream",
        K::Bool,
        F("logging.options.json.splitStream"),
    ),
    fl(
        "log-json-info-buffer-size",
        K::String,
        F("logging.options.json.infoBufferSize"),
    ),
    fl(
        "log-text-split-stream",
        K::Bool,
        F("logging.options.text.splitStream"),
    ),
    fl(
        "log-text-info-buffer-size",
        K::String,
        F("logging.options.text.infoBufferSize"),
    ),
    // Removed upstream; an old unit that still passes one gets a clear message.
    fl(
        "container-runtime",
        K::String,
        Removed("removed in 1.27; the CRI endpoint is --container-runtime-endpoint"),
    ),
    fl(
        "network-plugin",
        K::String,
        Removed("removed in 1.24 with dockershim; networking is the runtime's CNI configuration"),
    ),
    fl(
        "network-plugin-mtu",
        K::Int,
        Removed("removed in 1.24 with dockershim"),
    ),
    fl(
        "cni-bin-dir",
        K::String,
        Removed("removed in 1.24 with dockershim; set it in the runtime's CNI configuration"),
    ),
    fl(
        "cni-conf-dir",
        K::String,
        Removed("removed in 1.24 with dockershim; set it in the runtime's CNI configuration"),
    ),
    fl(
        "cni-cache-dir",
        K::String,
        Removed("removed in 1.24 with dockershim"),
    ),
    fl(
        "docker-endpoint",
        K::String,
        Removed("removed in 1.24 with dockershim"),
    ),
    fl(
        "image-pull-progress-deadline",
        K::Duration,
        Removed("removed in 1.24 with dockershim"),
    ),
    fl(
        "experimental-dockershim-root-directory",
        K::String,
        Removed("removed in 1.24 with dockershim"),
    ),
    fl("non-masquerade-cidr", K::String, Removed("removed in 1.24")),
    fl(
        "dynamic-config-dir",
        K::String,
        Removed("removed in 1.24 with dynamic kubelet configuration"),
    ),
    fl(
        "master-service-namespace",
        K::String,
        Removed("removed in 1.27"),
    ),
    fl(
        "azure-container-registry-config",
        K::String,
        Removed("removed in 1.30; use a credential provider"),
    ),
    fl(
        "allow-privileged",
        K::Bool,
        Removed("removed in 1.15; use Pod Security admission"),
    ),
    fl("cadvisor-port", K::Int, Removed("removed in 1.12")),
];

/// The upstream flags given on the command line, in order, with their raw values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamFlags {
    pub given: Vec<(&'static FlagSpec, Vec<String>)>,
}

impl UpstreamFlags {
    /// From `(name, values)` pairs, as tests and other callers build them.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self, FlagError> {
        let mut out = UpstreamFlags::default();
        for (name, value) in pairs {
            let spec = spec(name).ok_or_else(|| FlagError::new(name, "unknown flag"))?;
            match out.given.iter_mut().find(|(s, _)| s.name == spec.name) {
                Some((_, v)) => v.push((*value).to_owned()),
                None => out.given.push((spec, vec![(*value).to_owned()])),
            }
        }
        Ok(out)
    }

    /// `--version` as given: `Some("true")`, `Some("raw")`, or `None` / `Some("false")`.
    pub fn version(&self) -> Option<&str> {
        self.given
            .iter()
            .find(|(s, _)| s.target == Target::Version)
            .and_then(|(_, v)| v.last())
            .map(String::as_str)
    }
}

/// The table entry for `name` (without the dashes).
pub fn spec(name: &str) -> Option<&'static FlagSpec> {
    UPSTREAM_FLAGS.iter().find(|s| s.name == name)
}

/// A flag whose value is malformed or which is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{flag}: {problem}")]
pub struct FlagError {
    pub flag: String,
    pub problem: String,
}

impl FlagError {
    fn new(flag: &str, problem: impl Into<String>) -> Self {
        FlagError {
            flag: flag.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Go's strconv.ParseBool, which pflag uses.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Splits `a,b,c` as pflag's string slices do (an empty value is an empty list).
fn split_list(s: &str) -> Vec<&str> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split(',').collect()
    }
}

/// `k<sep>v` pairs separated by commas, keys and values trimmed, as component-base's map
/// flags parse them; a pair without the separator is an error.
fn split_pairs(s: &str, sep: char) -> Result<Vec<(&str, &str)>, String> {
    split_list(s)
        .into_iter()
        .map(|pair| {
            let (k, v) = pair
                .split_once(sep)
                .ok_or_else(|| format!("{pair:?} is not of the form key{sep}value"))?;
            let k = k.trim();
            if k.is_empty() {
                return Err(format!("{pair:?} has an empty key"));
            }
            Ok((k, v.trim()))
        })
        .collect()
}

/// One occurrence of a flag's value as JSON, in the shape of the configuration field.
/// `previous` is the value of earlier occurrences of the same flag: lists and maps
/// accumulate across repetitions, scalars take the last value, as upstream's pflag types.
pub fn parse_value(kind: Kind, raw: &str, previous: Option<Value>) -> Result<Value, String> {
    let obj = |prev: Option<Value>| match prev {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let arr = |prev: Option<Value>| match prev {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    Ok(match kind {
        Kind::Bool => Value::Bool(
            parse_bool(raw).ok_or_else(|| format!("invalid boolean {raw:?} (true or false)"))?,
        ),
        Kind::String => Value::String(raw.to_owned()),
        Kind::Path => {
            if !raw.is_empty() && !raw.starts_with('/') {
                return Err(format!("{raw:?} must be an absolute path"));
            }
            Value::String(raw.to_owned())
        }
        Kind::Int => Value::from(
            raw.parse::<i64>()
                .map_err(|_| format!("invalid integer {raw:?}"))?,
        ),
        Kind::Ip => {
            raw.parse::<IpAddr>()
                .map_err(|_| format!("{raw:?} is not an IP address"))?;
            Value::String(raw.to_owned())
        }
        Kind::Duration => {
            parse_duration(raw).map_err(|e| format!("invalid duration {raw:?}: {e}"))?;
            Value::String(raw.to_owned())
        }
        Kind::List => {
            let mut a = arr(previous);
            a.extend(
                split_list(raw)
                    .into_iter()
                    .map(|s| Value::String(s.to_owned())),
            );
            Value::Array(a)
        }
        Kind::Map | Kind::LangleMap => {
            let sep = if kind == Kind::Map { '=' } else { '<' };
            let mut m = obj(previous);
            for (k, v) in split_pairs(raw, sep)? {
                m.insert(k.to_owned(), Value::String(v.to_owned()));
            }
            Value::Object(m)
        }
        Kind::BoolMap => {
            let mut m = obj(previous);
            for (k, v) in split_pairs(raw, '=')? {
                let b = parse_bool(v).ok_or_else(|| format!("{k}: invalid boolean {v:?}"))?;
                m.insert(k.to_owned(), Value::Bool(b));
            }
            Value::Object(m)
        }
        Kind::ColonMultimap => {
            let mut m = obj(previous);
            for (k, v) in split_pairs(raw, ':')? {
                match m
                    .entry(k.to_owned())
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    Value::Array(a) => a.push(Value::String(v.to_owned())),
                    other => *other = Value::Array(vec![Value::String(v.to_owned())]),
                }
            }
            Value::Object(m)
        }
        Kind::Taints => {
            let mut a = arr(previous);
            for t in split_list(raw) {
                let (kv, effect) = t
                    .rsplit_once(':')
                    .ok_or_else(|| format!("taint {t:?} is not of the form key=value:Effect"))?;
                let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
                if key.is_empty() {
                    return Err(format!("taint {t:?} has an empty key"));
                }
                let mut taint = Map::new();
                taint.insert("key".into(), Value::String(key.to_owned()));
                if !value.is_empty() {
                    taint.insert("value".into(), Value::String(value.to_owned()));
                }
                taint.insert("effect".into(), Value::String(effect.to_owned()));
                a.push(Value::Object(taint));
            }
            Value::Array(a)
        }
        Kind::ReservedMemory => {
            let mut a = arr(previous);
            let (numa, limits) = raw
                .split_once(':')
                .ok_or_else(|| format!("{raw:?} is not of the form numa:resource=quantity,..."))?;
            let numa: i64 = numa
                .trim()
                .parse()
                .map_err(|_| format!("NUMA node {numa:?} is not a number"))?;
            let mut l = Map::new();
            for (k, v) in split_pairs(limits, '=')? {
                l.insert(k.to_owned(), Value::String(v.to_owned()));
            }
            let mut entry = Map::new();
            entry.insert("numaNode".into(), Value::from(numa));
            entry.insert("limits".into(), Value::Object(l));
            a.push(Value::Object(entry));
            Value::Array(a)
        }
    })
}

/// The outcome of the upstream flags: field values to lay over the file, node labels, and
/// the warnings to log once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    /// (flag name, dotted field path, value), in table order (no two flags set one field).
    pub fields: Vec<(&'static str, &'static str, Value)>,
    pub node_labels: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

impl Overlay {
    /// The flag that set `field` or a field containing it or contained in it.
    pub fn flag_for(&self, field: &str) -> Option<&'static str> {
        self.fields.iter().rev().find_map(|(flag, path, _)| {
            let inside = |outer: &str, inner: &str| {
                inner == outer
                    || inner
                        .strip_prefix(outer)
                        .is_some_and(|rest| rest.starts_with(['.', '[']))
            };
            (inside(path, field) || inside(field, path)).then_some(*flag)
        })
    }
}

/// Turns the given upstream flags into an [`Overlay`], or the first refusal.
pub fn overlay(flags: &UpstreamFlags) -> Result<Overlay, FlagError> {
    let mut out = Overlay::default();
    for (spec, values) in &flags.given {
        if let Some(msg) = spec.deprecation() {
            out.warnings
                .push(format!("Flag --{} has been deprecated, {msg}", spec.name));
        }
        match spec.target {
            Target::Version => {}
            Target::Removed(note) => {
                return Err(FlagError::new(
                    spec.name,
                    format!("unknown flag: --{} ({note})", spec.name),
                ));
            }
            Target::Refuse(reason) => {
                let off = values.iter().all(|v| {
                    v.is_empty() || (spec.kind == Kind::Bool && parse_bool(v) == Some(false))
                });
                if !off {
                    return Err(FlagError::new(spec.name, format!("{reason}: refused")));
                }
            }
            Target::Warn(note) => {
                let mut prev = None;
                for v in values {
                    prev = Some(
                        parse_value(spec.kind, v, prev)
                            .map_err(|p| FlagError::new(spec.name, p))?,
                    );
                }
                out.warnings.push(format!("--{}: {note}", spec.name));
            }
            Target::NodeLabels => {
                let mut prev = None;
                for v in values {
                    prev = Some(
                        parse_value(spec.kind, v, prev)
                            .map_err(|p| FlagError::new(spec.name, p))?,
                    );
                }
                if let Some(Value::Object(m)) = prev {
                    for (k, v) in m {
                        let v = v.as_str().unwrap_or_default().to_owned();
                        super::names::validate_node_label(&k, &v)
                            .map_err(|p| FlagError::new(spec.name, p))?;
                        out.node_labels.insert(k, v);
                    }
                }
            }
            Target::Field(path) => {
                let mut prev = None;
                for v in values {
                    prev = Some(
                        parse_value(spec.kind, v, prev)
                            .map_err(|p| FlagError::new(spec.name, p))?,
                    );
                }
                if let Some(value) = prev {
                    out.fields.push((spec.name, path, value));
                }
            }
        }
    }
    Ok(out)
}

/// The README's flag table: one row per upstream flag of [`UPSTREAM_FLAGS`].
pub fn markdown_table() -> String {
    let mut out = String::from("| flag | what ironlet does |\n|---|---|\n");
    for s in UPSTREAM_FLAGS {
        let what = match s.target {
            Target::Field(f) => format!("sets `{f}`"),
            Target::NodeLabels => {
                "node labels at registration (kubelet-settable keys only, as NodeRestriction)"
                    .to_owned()
            }
            Target::Version => "prints `Kubernetes v<version>` and exits".to_owned(),
            Target::Warn(n) => format!("accepted, warned: {n}"),
            Target::Refuse(r) => format!("refused unless empty/false: {r}"),
            Target::Removed(r) => format!("unknown flag: {r}"),
        };
        let dep = if s.deprecation().is_some() {
            " (deprecated upstream)"
        } else {
            ""
        };
        out.push_str(&format!("| `--{}` | {what}{dep} |\n", s.name));
    }
    out
}

impl clap::FromArgMatches for UpstreamFlags {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut s = Self::default();
        s.update_from_arg_matches(m)?;
        Ok(s)
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        for spec in UPSTREAM_FLAGS {
            // Names defined by RunFlags were not added (see `augment_args`): skip them.
            if let Ok(Some(values)) = m.try_get_many::<String>(spec.name) {
                self.given.push((spec, values.cloned().collect()));
            }
        }
        Ok(())
    }
}

impl clap::Args for UpstreamFlags {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for spec in UPSTREAM_FLAGS {
            if cmd.get_arguments().any(|a| a.get_long() == Some(spec.name)) {
                continue;
            }
            let mut arg = clap::Arg::new(spec.name)
                .long(spec.name)
                .action(clap::ArgAction::Append)
                .value_name("VALUE");
            arg = match spec.target {
                Target::Field(field) => arg.help(format!("sets {field}")),
                Target::Version => {
                    arg.help("print Kubernetes v<version> and exit (--version=raw: more)")
                }
                Target::NodeLabels => arg.help("labels to add when registering the node (k=v,...)"),
                Target::Warn(note) => arg.help(note.to_owned()),
                Target::Refuse(reason) => arg.help(format!("refused: {reason}")),
                Target::Removed(_) => arg.hide(true),
            };
            if matches!(spec.kind, Kind::Bool) || spec.target == Target::Version {
                // pflag booleans: `--flag` is true; a value needs `=`.
                arg = arg
                    .num_args(0..=1)
                    .require_equals(true)
                    .default_missing_value("true");
            }
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> Result<RunFlags, clap::Error> {
        Cli::try_parse_from(std::iter::once("ironlet").chain(args.iter().copied()))
            .map(|c| c.run.into_flags())
    }

    fn fields(args: &[&str]) -> Result<Vec<(&'static str, Value)>, String> {
        let f = parse(args).map_err(|e| e.to_string())?;
        let mut v: Vec<_> = overlay(&f.upstream)
            .map(|o| o.fields.into_iter().map(|(_, p, v)| (p, v)).collect())
            .map_err(|e| e.to_string())?;
        v.sort_by(|a, b| a.0.cmp(b.0));
        Ok(v)
    }

    #[test]
    fn upstream_flag_names() {
        let f = parse(&[
            "--config=/etc/ironlet/config.yaml",
            "--container-runtime-endpoint",
            "unix:///run/containerd/containerd.sock",
            "--root-dir=/srv/kubelet",
            "--hostname-override=Node-1",
            "--node-ip=10.0.0.2",
        ])
        .unwrap();
        assert_eq!(f.config, Some(PathBuf::from("/etc/ironlet/config.yaml")));
        assert_eq!(
            f.container_runtime_endpoint.as_deref(),
            Some("unix:///run/containerd/containerd.sock")
        );
        assert_eq!(f.root_dir, Some(PathBuf::from("/srv/kubelet")));
        assert_eq!(f.hostname_override.as_deref(), Some("Node-1"));
        assert_eq!(f.node_ip, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(f.v, 0);
    }

    #[test]
    fn verbosity_spellings() {
        for args in [
            &["-v=4"][..],
            &["--v=4"],
            &["-v", "4"],
            &["--v", "4"],
            &["-v4"],
        ] {
            assert_eq!(parse(args).map(|f| f.v).ok(), Some(4), "{args:?}");
        }
    }

    #[test]
    fn both_value_forms_and_pflag_booleans() {
        let mut want = vec![
            ("readOnlyPort", Value::from(0)),
            ("syncFrequency", Value::from("30s")),
            ("authentication.anonymous.enabled", Value::Bool(false)),
            ("protectKernelDefaults", Value::Bool(true)),
            ("makeIPTablesUtilChains", Value::Bool(true)),
        ];
        want.sort_by(|a, b| a.0.cmp(b.0));
        let eq = fields(&[
            "--read-only-port=0",
            "--sync-frequency=30s",
            "--anonymous-auth=false",
            "--protect-kernel-defaults",
            "--make-iptables-util-chains=true",
        ])
        .unwrap();
        assert_eq!(eq, want);
        let space = fields(&[
            "--read-only-port",
            "0",
            "--sync-frequency",
            "30s",
            "--anonymous-auth=False",
            "--protect-kernel-defaults=t",
            "--make-iptables-util-chains=1",
        ])
        .unwrap();
        assert_eq!(space, want);
        // A boolean never takes the next word as its value (pflag): `false` is a stray
        // argument and the command line is refused.
        assert!(parse(&["--anonymous-auth", "false"]).is_err());
        assert!(
            fields(&["--anonymous-auth=maybe"])
                .unwrap_err()
                .contains("--anonymous-auth")
        );
    }

    #[test]
    fn last_scalar_wins_and_collections_accumulate() {
        let got = fields(&[
            "--max-pods=10",
            "--max-pods=20",
            "--cluster-dns=10.96.0.10,10.96.0.11",
            "--cluster-dns=fd00::a",
            "--kube-reserved=cpu=100m, memory=1Gi",
            "--kube-reserved=memory=2Gi",
            "--eviction-hard=memory.available<200Mi,nodefs.available<10%",
            "--feature-gates=A=true,B=false",
            "--register-with-taints=dedicated=infra:NoSchedule,gpu:NoExecute",
            "--manifest-url-header=a:x,b:y",
            "--manifest-url-header=a:z",
        ])
        .unwrap();
        let get = |p: &str| got.iter().find(|(q, _)| *q == p).unwrap().1.clone();
        assert_eq!(get("maxPods"), Value::from(20));
        assert_eq!(
            get("clusterDNS"),
            serde_json::json!(["10.96.0.10", "10.96.0.11", "fd00::a"])
        );
        assert_eq!(
            get("kubeReserved"),
            serde_json::json!({"cpu": "100m", "memory": "2Gi"})
        );
        assert_eq!(
            get("evictionHard"),
            serde_json::json!({"memory.available": "200Mi", "nodefs.available": "10%"})
        );
        assert_eq!(
            get("featureGates"),
            serde_json::json!({"A": true, "B": false})
        );
        assert_eq!(
            get("registerWithTaints"),
            serde_json::json!([
                {"key": "dedicated", "value": "infra", "effect": "NoSchedule"},
                {"key": "gpu", "effect": "NoExecute"}
            ])
        );
        assert_eq!(
            get("staticPodURLHeader"),
            serde_json::json!({"a": ["x", "z"], "b": ["y"]})
        );
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (arg, needle) in [
            ("--sync-frequency=20x", "--sync-frequency: invalid duration"),
            ("--port=abc", "--port: invalid integer"),
            (
                "--address=localhost",
                "--address: \"localhost\" is not an IP address",
            ),
            (
                "--kube-reserved=cpu",
                "--kube-reserved: \"cpu\" is not of the form key=value",
            ),
            (
                "--register-with-taints=novalue",
                "--register-with-taints: taint",
            ),
            (
                "--client-ca-file=ca.crt",
                "--client-ca-file: \"ca.crt\" must be an absolute path",
            ),
        ] {
            let e = fields(&[arg]).unwrap_err();
            assert!(e.contains(needle), "{arg}: {e}");
        }
        assert!(parse(&["--node-ip=not-an-ip"]).is_err());
        assert!(parse(&["--v=300"]).is_err());
    }

    #[test]
    fn removed_and_refused_flags_and_upstream_warnings() {
        let e = fields(&["--network-plugin=cni"]).unwrap_err();
        assert!(
            e.starts_with("--network-plugin: unknown flag: --network-plugin (removed in 1.24"),
            "{e}"
        );
        let e = fields(&["--config-dir=/etc/kubelet.conf.d"]).unwrap_err();
        assert!(e.contains("--config-dir") && e.contains("refused"), "{e}");
        assert!(fields(&["--config-dir="]).is_ok());
        let f = parse(&[
            "--pod-infra-container-image=registry.k8s.io/pause:3.10",
            "--read-only-port=0",
        ])
        .unwrap();
        let o = overlay(&f.upstream).unwrap();
        assert!(o.warnings.contains(&"Flag --pod-infra-container-image has been deprecated, will be removed in 1.35. Image garbage collector will get sandbox image information from CRI.".to_owned()), "{:?}", o.warnings);
        assert!(o.warnings.contains(&format!(
            "Flag --read-only-port has been deprecated, {DEPRECATED_CONFIG_FLAG}"
        )));
        // Flags upstream keeps undeprecated say nothing.
        let f = parse(&["--provider-id=x", "--seccomp-default"]).unwrap();
        assert!(overlay(&f.upstream).unwrap().warnings.is_empty());
    }

    #[test]
    fn node_labels_are_validated_as_upstream() {
        let f = parse(&["--node-labels=node-role.kubernetes.io/worker=,team=infra"]);
        let e = overlay(&f.unwrap().upstream).unwrap_err().to_string();
        assert!(e.contains("node-role.kubernetes.io/worker"), "{e}");
        let f = parse(&["--node-labels=node.kubernetes.io/pool=a,team=infra"]).unwrap();
        let o = overlay(&f.upstream).unwrap();
        assert_eq!(o.node_labels.get("team").map(String::as_str), Some("infra"));
        let f = parse(&["--node-labels=team=in fra"]).unwrap();
        assert!(overlay(&f.upstream).is_err());
    }

    #[test]
    fn version_forms() {
        assert_eq!(
            parse(&["--version"]).unwrap().upstream.version(),
            Some("true")
        );
        assert_eq!(
            parse(&["--version=raw"]).unwrap().upstream.version(),
            Some("raw")
        );
        assert_eq!(parse(&[]).unwrap().upstream.version(), None);
    }

    /// A flag that RunFlags (or any flattened struct before the table) defines natively is
    /// not defined twice: the table entry steps aside.
    #[test]
    fn native_definitions_win() {
        #[derive(clap::Args, Debug)]
        struct Native {
            #[arg(long)]
            cert_dir: Option<PathBuf>,
        }
        #[derive(Parser, Debug)]
        struct Cli2 {
            #[command(flatten)]
            native: Native,
            #[command(flatten)]
            upstream: UpstreamFlags,
        }
        let c =
            Cli2::try_parse_from(["x", "--cert-dir=/var/lib/kubelet/pki", "--read-only-port=0"])
                .unwrap();
        assert_eq!(
            c.native.cert_dir,
            Some(PathBuf::from("/var/lib/kubelet/pki"))
        );
        assert_eq!(c.upstream.given.len(), 1);
    }

    #[test]
    fn table_names_are_unique_and_fields_exist() {
        let mut names: Vec<_> = UPSTREAM_FLAGS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate flag");
        for s in UPSTREAM_FLAGS {
            if let Target::Field(path) = s.target {
                let top = path.split('.').next().unwrap();
                assert!(
                    super::super::file::is_known_field(top),
                    "--{} maps onto {path}, not a KubeletConfiguration field",
                    s.name
                );
            }
        }
    }

    #[test]
    fn defaults_are_unset() {
        assert_eq!(parse(&[]).unwrap(), RunFlags::default());
    }
}
