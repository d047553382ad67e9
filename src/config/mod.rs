//! Validated agent configuration: a KubeletConfiguration v1beta1 file plus upstream-named flags
//! become one [`Config`] in which insecure states cannot be represented. Owns reading the
//! configuration file and the machine hostname; must not touch anything else on the node (no
//! sockets, listeners or directories are opened or created here).
//!
//! Deliberate differences from upstream kubelet:
//! - Without `--config` the secure v1beta1 file defaults apply. Upstream's flags-only mode keeps
//!   insecure legacy defaults (anonymous auth on, authorization AlwaysAllow, read-only port
//!   10255, token webhook off); ironlet has no such mode.
//! - Anonymous authentication (CIS 4.2.1), `AlwaysAllow` (CIS 4.2.2) and a read-only port
//!   (CIS 4.2.4) are refused at startup, naming the field, instead of being honoured.
//! - Unknown fields are errors, not warnings (see [`file`]).
//! - `port: 0` is an error (upstream silently substitutes 10250); paths must be absolute; a
//!   TLS certificate needs its key; `clusterDomain` must be a DNS-1123 subdomain.
//!
//! Kept as upstream: a zero duration and `maxPods: 0` mean "use the default" (kubeadm writes
//! `0s` for many durations), and empty strings mean "unset" (`resolvConf: ""` therefore
//! means no host resolver file for pods).

pub mod certs;
pub mod cluster;
mod duration;
mod error;
pub mod fields;
pub mod file;
pub mod flags;
mod names;
pub mod node;
pub mod workload;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use duration::{DurationError, parse_duration};
pub use error::ConfigError;
pub use flags::{DEFAULT_ROOT_DIR, RunArgs, RunFlags};
pub use names::{validate_dns1123_label, validate_dns1123_subdomain};
pub use node::{LogFormat, NodeAllocatableEnforcement, NodeSettings};

use error::Source;
use file::KubeletConfiguration;

const DEFAULT_RUNTIME_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";
const DEFAULT_POD_LOGS_DIR: &str = "/var/log/pods";
const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";
const DEFAULT_MAX_PODS: u32 = 110;
/// Upstream: containerLogMaxSize 10Mi, containerLogMaxFiles 5.
const DEFAULT_CONTAINER_LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
const DEFAULT_CONTAINER_LOG_MAX_FILES: usize = 5;
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The validated configuration of `ironlet run`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub config_file: Option<PathBuf>,
    /// Lower-cased DNS-1123 subdomain: --hostname-override, else the machine hostname.
    pub node_name: String,
    pub node_ip: Option<IpAddr>,
    pub root_dir: PathBuf,
    /// The CRI unix socket (ironlet speaks to no other transport).
    pub runtime_endpoint: PathBuf,
    /// Directory of static pod manifests, or a single manifest file; `None` disables the source.
    pub static_pod_path: Option<PathBuf>,
    pub file_check_frequency: Duration,
    pub pod_logs_dir: PathBuf,
    pub runtime_request_timeout: Duration,
    pub sync_frequency: Duration,
    pub address: IpAddr,
    pub port: u16,
    pub healthz_bind_address: IpAddr,
    /// 0 disables the healthz listener.
    pub healthz_port: u16,
    pub authentication: Authentication,
    pub authorization: Authorization,
    pub tls: ServingTls,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: Option<String>,
    /// Host resolver file that pod DNS is based on; `None` when the file sets `resolvConf: ""`
    /// (upstream: no host DNS for pods).
    pub resolv_conf: Option<PathBuf>,
    pub max_pods: u32,
    /// Rotate a container's log past this size (bytes).
    pub container_log_max_size: u64,
    /// Log files kept per container, the live one included.
    pub container_log_max_files: usize,
    /// Parent of the kubepods hierarchy (cgroupfs names); "/" by default.
    pub cgroup_root: String,
    pub cgroups_per_qos: bool,
    /// pids.max of every pod cgroup; -1 = unlimited (upstream default).
    pub pod_pids_limit: i64,
    pub cpu_cfs_quota: bool,
    pub verbosity: u8,
    /// How long an exec/attach/portForward stream or a followed log may sit idle (default
    /// 4h; 0 is refused, CIS 4.2.5).
    pub streaming_connection_idle_timeout: Duration,
    /// exec, attach, portForward, run, containerLogs and runningpods on the kubelet API
    /// (upstream default true); when false they answer 405.
    pub enable_debugging_handlers: bool,
    /// `/logs/` node log files on the kubelet API. Off by default here (upstream: on).
    pub enable_system_log_handler: bool,
    /// The standalone authorization policy (`--authorization-policy-file`), used when there
    /// is no API server to send SubjectAccessReviews to.
    pub authorization_policy_file: Option<PathBuf>,
    /// The kubelet API audit log (`--audit-log-path`; stderr when none) and its rotation size.
    pub audit_log_path: Option<PathBuf>,
    pub audit_log_max_bytes: u64,
    /// Cluster mode (API server) settings and node reservations.
    pub cluster: cluster::Cluster,
    /// enableServer, the startup host checks, podsPerCore, enforceNodeAllocatable, TLS
    /// groups and the log format.
    pub node: NodeSettings,
    /// Certificate bootstrap and rotation.
    pub certificates: certs::Certificates,
    /// seccompDefault, allowedUnsafeSysctls and the node's Pod Security policy.
    pub workload: workload::Workload,
}

/// Client authentication on the kubelet API. There is no anonymous option to represent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    pub x509_client_ca_file: Option<PathBuf>,
    /// Bearer tokens checked with TokenReview.
    pub webhook_enabled: bool,
    pub webhook_cache_ttl: Duration,
}

/// Authorization on the kubelet API. `AlwaysAllow` is not representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationMode {
    /// SubjectAccessReview against the API server.
    Webhook,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub mode: AuthorizationMode,
    pub cache_authorized_ttl: Duration,
    pub cache_unauthorized_ttl: Duration,
}

/// Serving TLS settings as given. Certificate and key are both set or both unset. Version and
/// suite names are kept as strings (Go constant names) for the tls module to map and enforce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServingTls {
    pub cert_file: Option<PathBuf>,
    pub private_key_file: Option<PathBuf>,
    pub min_version: Option<String>,
    pub cipher_suites: Vec<String>,
}

/// A loaded configuration and the warnings to log once (recognised but unimplemented fields).
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads `--config` (if any), lays the upstream flags over it (flags win), applies
    /// defaults and validates. An error about a value a flag set names the flag.
    pub fn load(flags: &RunFlags) -> Result<Loaded, ConfigError> {
        let overlay = flags::overlay(&flags.upstream).map_err(|e| ConfigError::Invalid {
            file: None,
            field: format!("--{}", e.flag),
            problem: e.problem,
        })?;
        let mut doc = match &flags.config {
            Some(path) => file::read_document(path)?,
            None => serde_json::Map::new(),
        };
        for (_, path, value) in &overlay.fields {
            file::set_path(&mut doc, path, value.clone());
        }
        let src = Source {
            file: flags.config.as_deref(),
        };
        let attribute = |e: ConfigError| attribute_to_flag(&overlay, e);
        let parsed = file::decode(src, doc, &|f| overlay.flag_for(f)).map_err(attribute)?;
        let mut config = Self::build(flags, &parsed.config, read_hostname).map_err(attribute)?;
        config.cluster.node_labels = overlay.node_labels.clone();
        let mut warnings = overlay.warnings;
        warnings.extend(parsed.warnings);
        if let Some(l) = &parsed.config.logging {
            for (name, set) in [
                ("flushFrequency", l.flush_frequency.is_some()),
                ("vmodule", l.vmodule.is_some()),
                ("options", l.options.is_some()),
            ] {
                if set {
                    warnings.push(format!(
                        "logging.{name}: not implemented by ironlet (logs are written as they happen); ignored"
                    ));
                }
            }
        }
        Ok(Loaded { config, warnings })
    }

    fn build(
        flags: &RunFlags,
        raw: &KubeletConfiguration,
        hostname: impl FnOnce() -> Result<String, ConfigError>,
    ) -> Result<Config, ConfigError> {
        let src = Source {
            file: flags.config.as_deref(),
        };

        if let Some(p) = raw.read_only_port.filter(|p| *p != 0) {
            let problem = format!(
                "{p}: the read-only port serves pod and node data without authentication or authorization; set 0 or remove the field"
            );
            return Err(src.insecure("readOnlyPort", problem, "4.2.4"));
        }

        let (endpoint_src, endpoint_field, endpoint) =
            match flags.container_runtime_endpoint.as_deref() {
                Some(e) => (Source::FLAGS, "--container-runtime-endpoint", e),
                None => (
                    src,
                    "containerRuntimeEndpoint",
                    non_empty(&raw.container_runtime_endpoint).unwrap_or(DEFAULT_RUNTIME_ENDPOINT),
                ),
            };
        let runtime_endpoint =
            unix_socket_path(endpoint).map_err(|p| endpoint_src.invalid(endpoint_field, p))?;

        let root_dir = flags
            .root_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_ROOT_DIR.into());
        if !root_dir.is_absolute() {
            return Err(Source::FLAGS.invalid(
                "--root-dir",
                format!("{root_dir:?} must be an absolute path"),
            ));
        }

        let cluster_dns = raw
            .cluster_dns
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, s)| ip(src, &format!("clusterDNS[{i}]"), s))
            .collect::<Result<_, _>>()?;
        let cluster_domain = non_empty(&raw.cluster_domain)
            .map(|d| {
                validate_dns1123_subdomain(d)
                    .map(|()| d.to_owned())
                    .map_err(|p| src.invalid("clusterDomain", format!("{d:?} {p}")))
            })
            .transpose()?;
        let resolv_conf = match raw.resolv_conf.as_deref() {
            None => Some(DEFAULT_RESOLV_CONF.into()),
            Some(_) => abs_path(src, "resolvConf", &raw.resolv_conf)?,
        };
        let max_pods = match raw.max_pods {
            None | Some(0) => DEFAULT_MAX_PODS,
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| i32::try_from(*n).is_ok())
                .ok_or_else(|| {
                    src.invalid("maxPods", format!("{n} must be between 0 and {}", i32::MAX))
                })?,
        };

        let container_log_max_size = match non_empty(&raw.container_log_max_size) {
            None => DEFAULT_CONTAINER_LOG_MAX_SIZE,
            Some(q) => crate::resources::quantity::parse_units(q)
                .ok()
                .and_then(|n| u64::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    src.invalid(
                        "containerLogMaxSize",
                        format!("{q:?} must be a positive quantity such as 10Mi"),
                    )
                })?,
        };
        let container_log_max_files = match raw.container_log_max_files {
            None => DEFAULT_CONTAINER_LOG_MAX_FILES,
            Some(n) if (2..=1000).contains(&n) => n as usize,
            Some(n) => {
                return Err(src.invalid(
                    "containerLogMaxFiles",
                    format!("{n} must be between 2 and 1000 (the live file counts)"),
                ));
            }
        };

        let tls = serving_tls(src, raw)?;
        let certificates = certs::build(
            src,
            raw,
            flags,
            &root_dir,
            flags.kubeconfig.as_deref(),
            &tls,
        )?;
        Ok(Config {
            config_file: flags.config.clone(),
            node_name: node_name(flags.hostname_override.as_deref(), hostname)?,
            node_ip: flags.node_ip,
            root_dir,
            runtime_endpoint,
            static_pod_path: abs_path(src, "staticPodPath", &raw.static_pod_path)?,
            file_check_frequency: duration(
                src,
                "fileCheckFrequency",
                &raw.file_check_frequency,
                secs(20),
            )?,
            pod_logs_dir: abs_path(src, "podLogsDir", &raw.pod_logs_dir)?
                .unwrap_or_else(|| DEFAULT_POD_LOGS_DIR.into()),
            runtime_request_timeout: duration(
                src,
                "runtimeRequestTimeout",
                &raw.runtime_request_timeout,
                secs(120),
            )?,
            sync_frequency: duration(src, "syncFrequency", &raw.sync_frequency, secs(60))?,
            address: ip_or(src, "address", &raw.address, Ipv4Addr::UNSPECIFIED.into())?,
            port: port_or(src, "port", raw.port, 10250, 1)?,
            healthz_bind_address: match ip_or(
                src,
                "healthzBindAddress",
                &raw.healthz_bind_address,
                Ipv4Addr::LOCALHOST.into(),
            )? {
                // healthz is plain HTTP without authentication: loopback only (issue 15).
                ip if !ip.is_loopback() && raw.healthz_port != Some(0) => {
                    return Err(src.insecure(
                        "healthzBindAddress",
                        format!(
                            "{ip} is not a loopback address: healthz is plain HTTP without authentication; \
                             use 127.0.0.1 or ::1 (or healthzPort: 0)"
                        ),
                        "ironlet.2.4",
                    ));
                }
                ip => ip,
            },
            // 0 disables the healthz listener, as upstream.
            healthz_port: port_or(src, "healthzPort", raw.healthz_port, 10248, 0)?,
            authentication: authentication(src, raw)?,
            authorization: authorization(src, raw)?,
            tls,
            cluster_dns,
            cluster_domain,
            resolv_conf,
            max_pods,
            container_log_max_size,
            container_log_max_files,
            cgroup_root: match non_empty(&raw.cgroup_root) {
                None => "/".into(),
                Some(r) if r.starts_with('/') && !r.split('/').any(|c| c == "..") => r.to_owned(),
                Some(r) => {
                    return Err(src.invalid(
                        "cgroupRoot",
                        format!("{r:?} must be an absolute cgroup path without '..'"),
                    ));
                }
            },
            cgroups_per_qos: raw.cgroups_per_qos.unwrap_or(true),
            pod_pids_limit: match raw.pod_pids_limit {
                None => -1,
                Some(n) if n < 0 => -1,
                Some(n) => n,
            },
            cpu_cfs_quota: raw.cpu_cfs_quota.unwrap_or(true),
            // --v wins over logging.verbosity, as flags over the file.
            verbosity: match raw.logging.as_ref().and_then(|l| l.verbosity) {
                Some(v) if flags.v == 0 => u8::try_from(v).map_err(|_| {
                    src.invalid("logging.verbosity", format!("{v} must be at most 255"))
                })?,
                _ => flags.v,
            },
            streaming_connection_idle_timeout: streaming_idle_timeout(src, raw)?,
            enable_debugging_handlers: raw.enable_debugging_handlers.unwrap_or(true),
            enable_system_log_handler: raw.enable_system_log_handler.unwrap_or(false),
            authorization_policy_file: match &flags.authorization_policy_file {
                Some(p) if !p.is_absolute() => {
                    return Err(Source::FLAGS.invalid(
                        "--authorization-policy-file",
                        format!("{p:?} must be an absolute path"),
                    ));
                }
                other => other.clone(),
            },
            audit_log_path: match &flags.audit_log_path {
                Some(p) if !p.is_absolute() || p.file_name().is_none() => {
                    return Err(Source::FLAGS.invalid(
                        "--audit-log-path",
                        format!("{p:?} must be an absolute file path"),
                    ));
                }
                other => other.clone(),
            },
            audit_log_max_bytes: match flags
                .audit_log_maxsize
                .unwrap_or(crate::server::audit::DEFAULT_MAX_MB)
            {
                0 => {
                    return Err(Source::FLAGS.invalid(
                        "--audit-log-maxsize",
                        "0: the audit log must rotate at some size (MiB)",
                    ));
                }
                mb => mb.saturating_mul(1024 * 1024),
            },
            cluster: cluster::build(src, raw, flags.kubeconfig.clone())?,
            node: node::build(src, raw, raw.cgroups_per_qos.unwrap_or(true))?,
            certificates,
            workload: workload::build(src, raw, flags.pod_security_policy_file.as_deref())?,
        })
    }
}

/// An error about a field that a flag set is reported against the flag (and the field).
fn attribute_to_flag(overlay: &flags::Overlay, e: ConfigError) -> ConfigError {
    let Some(flag) = e.field().and_then(|f| overlay.flag_for(f)) else {
        return e;
    };
    match e {
        ConfigError::Invalid { field, problem, .. } => ConfigError::Invalid {
            file: None,
            field: format!("--{flag}"),
            problem: format!("{field}: {problem}"),
        },
        ConfigError::Insecure {
            field,
            problem,
            cis,
            ..
        } => ConfigError::Insecure {
            file: None,
            field: format!("--{flag}"),
            problem: format!("{field}: {problem}"),
            cis,
        },
        other => other,
    }
}

fn authentication(src: Source, raw: &KubeletConfiguration) -> Result<Authentication, ConfigError> {
    let authn = raw.authentication.clone().unwrap_or_default();
    if authn.anonymous.and_then(|a| a.enabled) == Some(true) {
        let problem =
            "anonymous requests to the kubelet API are not allowed; set false or remove the field";
        return Err(src.insecure("authentication.anonymous.enabled", problem, "4.2.1"));
    }
    let webhook = authn.webhook.unwrap_or_default();
    let authn = Authentication {
        x509_client_ca_file: abs_path(
            src,
            "authentication.x509.clientCAFile",
            &authn.x509.and_then(|x| x.client_ca_file),
        )?,
        webhook_enabled: webhook.enabled.unwrap_or(true),
        webhook_cache_ttl: duration(
            src,
            "authentication.webhook.cacheTTL",
            &webhook.cache_ttl,
            secs(120),
        )?,
    };
    if authn.x509_client_ca_file.is_none() && !authn.webhook_enabled {
        return Err(src.invalid(
            "authentication",
            "no authentication method configured: set authentication.x509.clientCAFile or enable authentication.webhook",
        ));
    }
    Ok(authn)
}

fn authorization(src: Source, raw: &KubeletConfiguration) -> Result<Authorization, ConfigError> {
    let authz = raw.authorization.clone().unwrap_or_default();
    let mode = match authz.mode.as_deref().unwrap_or_default() {
        "" | "Webhook" => AuthorizationMode::Webhook,
        "AlwaysAllow" => {
            let problem =
                "AlwaysAllow would let any authenticated client use every kubelet API; use Webhook";
            return Err(src.insecure("authorization.mode", problem, "4.2.2"));
        }
        other => {
            return Err(src.invalid(
                "authorization.mode",
                format!("unknown mode {other:?}; the supported mode is \"Webhook\""),
            ));
        }
    };
    let webhook = authz.webhook.unwrap_or_default();
    Ok(Authorization {
        mode,
        cache_authorized_ttl: duration(
            src,
            "authorization.webhook.cacheAuthorizedTTL",
            &webhook.cache_authorized_ttl,
            secs(300),
        )?,
        cache_unauthorized_ttl: duration(
            src,
            "authorization.webhook.cacheUnauthorizedTTL",
            &webhook.cache_unauthorized_ttl,
            secs(30),
        )?,
    })
}

fn serving_tls(src: Source, raw: &KubeletConfiguration) -> Result<ServingTls, ConfigError> {
    let tls = ServingTls {
        cert_file: abs_path(src, "tlsCertFile", &raw.tls_cert_file)?,
        private_key_file: abs_path(src, "tlsPrivateKeyFile", &raw.tls_private_key_file)?,
        min_version: non_empty(&raw.tls_min_version).map(str::to_owned),
        cipher_suites: raw.tls_cipher_suites.clone().unwrap_or_default(),
    };
    // Weak or unknown TLS settings stop startup here, naming the field and the value.
    crate::tls::TlsPolicy::from_config(tls.min_version.as_deref(), &tls.cipher_suites).map_err(
        |e| match e {
            crate::tls::TlsError::Refused {
                field,
                value,
                reason,
            } => src.insecure(field, format!("{value}: {reason}"), "4.2.12"),
            other => src.invalid(
                match &other {
                    crate::tls::TlsError::Unknown { field, .. } => *field,
                    _ => "tlsCipherSuites",
                },
                other.to_string(),
            ),
        },
    )?;
    match (&tls.cert_file, &tls.private_key_file) {
        (Some(_), None) => Err(src.invalid(
            "tlsPrivateKeyFile",
            "missing; tlsCertFile needs its private key",
        )),
        (None, Some(_)) => Err(src.invalid(
            "tlsCertFile",
            "missing; tlsPrivateKeyFile needs its certificate",
        )),
        _ => Ok(tls),
    }
}

/// Upstream default 4h. Unlike other durations, an explicit zero is refused: it means "no
/// idle timeout" upstream, which CIS 4.2.5 fails.
fn streaming_idle_timeout(
    src: Source,
    raw: &KubeletConfiguration,
) -> Result<Duration, ConfigError> {
    const FIELD: &str = "streamingConnectionIdleTimeout";
    if let Some(s) = raw.streaming_connection_idle_timeout.as_deref()
        && parse_duration(s).is_ok_and(|d| d.is_zero())
    {
        let problem = format!(
            "{s:?}: a zero idle timeout keeps idle exec, attach and port-forward streams open forever; set a duration such as 4h or remove the field"
        );
        return Err(src.insecure(FIELD, problem, "4.2.5"));
    }
    duration(
        src,
        FIELD,
        &raw.streaming_connection_idle_timeout,
        secs(4 * 3600),
    )
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// A duration field. Absent or zero means the default, as upstream's defaulting does.
fn duration(
    src: Source,
    field: &str,
    raw: &Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(s) = raw.as_deref() else {
        return Ok(default);
    };
    let d = parse_duration(s)
        .map_err(|e| src.invalid(field, format!("invalid duration {s:?}: {e}")))?;
    Ok(if d.is_zero() { default } else { d })
}

fn ip(src: Source, field: &str, s: &str) -> Result<IpAddr, ConfigError> {
    s.parse()
        .map_err(|_| src.invalid(field, format!("{s:?} is not an IP address")))
}

/// An IP address field; absent or empty means the default.
fn ip_or(
    src: Source,
    field: &str,
    raw: &Option<String>,
    default: IpAddr,
) -> Result<IpAddr, ConfigError> {
    non_empty(raw).map_or(Ok(default), |s| ip(src, field, s))
}

/// A port field in `min..=65535`; absent means the default.
fn port_or(
    src: Source,
    field: &str,
    raw: Option<i64>,
    default: u16,
    min: u16,
) -> Result<u16, ConfigError> {
    let Some(p) = raw else { return Ok(default) };
    u16::try_from(p)
        .ok()
        .filter(|p| *p >= min)
        .ok_or_else(|| src.invalid(field, format!("{p} must be between {min} and 65535")))
}

/// An optional path field: empty means unset; anything else must be absolute.
fn abs_path(
    src: Source,
    field: &str,
    raw: &Option<String>,
) -> Result<Option<PathBuf>, ConfigError> {
    match non_empty(raw) {
        None => Ok(None),
        Some(p) if Path::new(p).is_absolute() => Ok(Some(p.into())),
        Some(p) => Err(src.invalid(field, format!("{p:?} must be an absolute path"))),
    }
}

/// `unix:///path` or a bare absolute path (which upstream still accepts) to the socket path.
fn unix_socket_path(endpoint: &str) -> Result<PathBuf, String> {
    let path = match endpoint.split_once("://") {
        Some(("unix", path)) => path,
        Some((scheme, _)) => {
            return Err(format!(
                "{endpoint:?}: scheme {scheme:?} is not supported; the CRI endpoint must be a unix socket (unix:///path/to.sock)"
            ));
        }
        None => endpoint,
    };
    if path.starts_with('/') {
        Ok(path.into())
    } else {
        Err(format!(
            "{endpoint:?}: the socket path must be absolute (unix:///path/to.sock)"
        ))
    }
}

/// As upstream: the override if non-blank, else the hostname; trimmed and lower-cased.
fn node_name(
    hostname_override: Option<&str>,
    hostname: impl FnOnce() -> Result<String, ConfigError>,
) -> Result<String, ConfigError> {
    let (raw, field) = match hostname_override.filter(|s| !s.trim().is_empty()) {
        Some(name) => (name.to_owned(), "--hostname-override"),
        None => (hostname()?, "hostname"),
    };
    let name = raw.trim().to_lowercase();
    validate_dns1123_subdomain(&name).map_err(|p| {
        let origin = if field == "hostname" {
            format!(" (from {HOSTNAME_FILE}; set --hostname-override)")
        } else {
            String::new()
        };
        Source::FLAGS.invalid(field, format!("node name {name:?}{origin} {p}"))
    })?;
    Ok(name)
}

fn read_hostname() -> Result<String, ConfigError> {
    std::fs::read_to_string(HOSTNAME_FILE).map_err(|source| ConfigError::Hostname {
        path: HOSTNAME_FILE.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const HEAD: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

    fn temp_file(suffix: &str, contents: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new()
            .prefix("ironlet-config-")
            .suffix(suffix)
            .tempfile()
            .unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        f
    }

    fn flags(config: Option<&Path>) -> RunFlags {
        RunFlags {
            config: config.map(Path::to_path_buf),
            hostname_override: Some("node-1".into()),
            ..RunFlags::default()
        }
    }

    /// Loads `body` (after the type header) from a real YAML file.
    fn load_yaml(body: &str) -> (tempfile::NamedTempFile, Result<Loaded, ConfigError>) {
        let f = temp_file(".yaml", &format!("{HEAD}{body}"));
        let loaded = Config::load(&flags(Some(f.path())));
        (f, loaded)
    }

    fn load_err(body: &str) -> (String, ConfigError) {
        let (f, loaded) = load_yaml(body);
        (f.path().display().to_string(), loaded.unwrap_err())
    }

    #[test]
    fn without_a_file_the_secure_v1beta1_defaults_apply() {
        let loaded = Config::load(&flags(None)).unwrap();
        assert!(loaded.warnings.is_empty());
        let want = Config {
            config_file: None,
            node_name: "node-1".into(),
            node_ip: None,
            root_dir: "/var/lib/kubelet".into(),
            runtime_endpoint: "/run/containerd/containerd.sock".into(),
            static_pod_path: None,
            file_check_frequency: secs(20),
            pod_logs_dir: "/var/log/pods".into(),
            runtime_request_timeout: secs(120),
            sync_frequency: secs(60),
            address: "0.0.0.0".parse().unwrap(),
            port: 10250,
            healthz_bind_address: "127.0.0.1".parse().unwrap(),
            healthz_port: 10248,
            authentication: Authentication {
                x509_client_ca_file: None,
                webhook_enabled: true,
                webhook_cache_ttl: secs(120),
            },
            authorization: Authorization {
                mode: AuthorizationMode::Webhook,
                cache_authorized_ttl: secs(300),
                cache_unauthorized_ttl: secs(30),
            },
            tls: ServingTls::default(),
            cluster_dns: vec![],
            cluster_domain: None,
            resolv_conf: Some("/etc/resolv.conf".into()),
            max_pods: 110,
            container_log_max_size: 10 * 1024 * 1024,
            container_log_max_files: 5,
            cgroup_root: "/".into(),
            cgroups_per_qos: true,
            pod_pids_limit: -1,
            cpu_cfs_quota: true,
            verbosity: 0,
            streaming_connection_idle_timeout: secs(4 * 3600),
            enable_debugging_handlers: true,
            enable_system_log_handler: false,
            authorization_policy_file: None,
            audit_log_path: None,
            audit_log_max_bytes: crate::server::audit::DEFAULT_MAX_MB * 1024 * 1024,
            cluster: cluster::build(Source::FLAGS, &KubeletConfiguration::default(), None).unwrap(),
            node: NodeSettings::default(),
            certificates: certs::Certificates {
                bootstrap_kubeconfig: None,
                cert_dir: "/var/lib/kubelet/pki".into(),
                rotate_certificates: false,
                server_tls_bootstrap: false,
            },
            workload: workload::Workload::default(),
        };
        assert_eq!(loaded.config, want);
        // A file with only the type header yields the same defaults.
        let (f, loaded) = load_yaml("");
        assert_eq!(
            loaded.unwrap().config,
            Config {
                config_file: Some(f.path().into()),
                ..want
            }
        );
    }

    #[test]
    fn yaml_file_values_are_applied() {
        let (_f, loaded) = load_yaml(
            "staticPodPath: /etc/kubernetes/manifests
fileCheckFrequency: 5s
podLogsDir: /srv/pod-logs
runtimeRequestTimeout: 1m30s
syncFrequency: 10s
address: 10.0.0.2
port: 11250
healthzBindAddress: ::1
healthzPort: 0
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
    cacheTTL: 10s
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 1m
    cacheUnauthorizedTTL: 5s
containerRuntimeEndpoint: unix:///run/crio/crio.sock
clusterDNS: [10.96.0.10, 'fd00::a']
clusterDomain: cluster.local
resolvConf: \"\"
maxPods: 30
tlsCertFile: /var/lib/kubelet/pki/kubelet.crt
tlsPrivateKeyFile: /var/lib/kubelet/pki/kubelet.key
tlsMinVersion: VersionTLS12
tlsCipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
",
        );
        let c = loaded.unwrap().config;
        assert_eq!(c.static_pod_path, Some("/etc/kubernetes/manifests".into()));
        assert_eq!(c.file_check_frequency, secs(5));
        assert_eq!(c.pod_logs_dir, PathBuf::from("/srv/pod-logs"));
        assert_eq!(c.runtime_request_timeout, secs(90));
        assert_eq!(c.sync_frequency, secs(10));
        assert_eq!(c.address, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((c.port, c.healthz_port), (11250, 0));
        assert_eq!(c.healthz_bind_address, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(
            c.authentication,
            Authentication {
                x509_client_ca_file: Some("/etc/kubernetes/pki/ca.crt".into()),
                webhook_enabled: false,
                webhook_cache_ttl: secs(10),
            }
        );
        assert_eq!(
            (
                c.authorization.cache_authorized_ttl,
                c.authorization.cache_unauthorized_ttl
            ),
            (secs(60), secs(5))
        );
        assert_eq!(c.runtime_endpoint, PathBuf::from("/run/crio/crio.sock"));
        assert_eq!(
            c.cluster_dns,
            vec![
                "10.96.0.10".parse::<IpAddr>().unwrap(),
                "fd00::a".parse().unwrap()
            ]
        );
        assert_eq!(c.cluster_domain.as_deref(), Some("cluster.local"));
        assert_eq!(c.resolv_conf, None);
        assert_eq!(c.max_pods, 30);
        assert_eq!(
            c.tls.cert_file,
            Some("/var/lib/kubelet/pki/kubelet.crt".into())
        );
        assert_eq!(c.tls.min_version.as_deref(), Some("VersionTLS12"));
        assert_eq!(
            c.tls.cipher_suites,
            vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_owned()]
        );
    }

    #[test]
    fn json_file_is_accepted() {
        let f = temp_file(
            ".json",
            r#"{
  "apiVersion": "kubelet.config.k8s.io/v1beta1",
  "kind": "KubeletConfiguration",
  "port": 10260,
  "authentication": {"x509": {"clientCAFile": "/etc/ca.crt"}},
  "clusterDNS": ["10.96.0.10"]
}"#,
        );
        let c = Config::load(&flags(Some(f.path()))).unwrap().config;
        assert_eq!(c.port, 10260);
        assert_eq!(
            c.authentication.x509_client_ca_file,
            Some("/etc/ca.crt".into())
        );
        assert_eq!(c.cluster_dns.len(), 1);
    }

    #[test]
    fn flags_override_the_file() {
        let f = temp_file(
            ".yaml",
            &format!("{HEAD}containerRuntimeEndpoint: unix:///run/crio/crio.sock\n"),
        );
        let run = RunFlags {
            container_runtime_endpoint: Some("/run/k3s/containerd.sock".into()),
            root_dir: Some("/srv/ironlet".into()),
            hostname_override: Some("  Node-A.Example.COM ".into()),
            node_ip: Some("192.0.2.7".parse().unwrap()),
            v: 4,
            ..flags(Some(f.path()))
        };
        let c = Config::load(&run).unwrap().config;
        assert_eq!(
            c.runtime_endpoint,
            PathBuf::from("/run/k3s/containerd.sock")
        );
        assert_eq!(c.root_dir, PathBuf::from("/srv/ironlet"));
        assert_eq!(c.node_name, "node-a.example.com");
        assert_eq!(c.node_ip, Some("192.0.2.7".parse().unwrap()));
        assert_eq!(c.verbosity, 4);
    }

    #[test]
    fn zero_durations_and_max_pods_mean_default_as_upstream() {
        let (_f, loaded) = load_yaml(
            "syncFrequency: 0s\nfileCheckFrequency: \"0\"\nruntimeRequestTimeout: 0s\nmaxPods: 0\n\
             authentication: {webhook: {cacheTTL: 0s}}\n\
             authorization: {webhook: {cacheAuthorizedTTL: 0s, cacheUnauthorizedTTL: 0s}}\n",
        );
        let c = loaded.unwrap().config;
        assert_eq!(
            (
                c.sync_frequency,
                c.file_check_frequency,
                c.runtime_request_timeout
            ),
            (secs(60), secs(20), secs(120))
        );
        assert_eq!(c.max_pods, 110);
        assert_eq!(c.authentication.webhook_cache_ttl, secs(120));
        assert_eq!(
            (
                c.authorization.cache_authorized_ttl,
                c.authorization.cache_unauthorized_ttl
            ),
            (secs(300), secs(30))
        );
    }

    #[test]
    fn insecure_settings_are_refused_naming_field_and_cis_id() {
        for (body, field, cis) in [
            (
                "authentication:\n  anonymous:\n    enabled: true\n",
                "authentication.anonymous.enabled",
                "4.2.1",
            ),
            (
                "authorization:\n  mode: AlwaysAllow\n",
                "authorization.mode",
                "4.2.2",
            ),
            ("readOnlyPort: 10255\n", "readOnlyPort", "4.2.4"),
            (
                "streamingConnectionIdleTimeout: 0s\n",
                "streamingConnectionIdleTimeout",
                "4.2.5",
            ),
        ] {
            let (path, err) = load_err(body);
            assert!(
                matches!(&err, ConfigError::Insecure { cis: c, .. } if *c == cis),
                "{err}"
            );
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("{path}: {field}: ")), "{msg}");
            assert!(
                msg.contains(&format!("CIS Kubernetes Benchmark {cis}")),
                "{msg}"
            );
        }
    }

    #[test]
    fn healthz_beyond_loopback_is_refused_naming_the_self_audit_check() {
        for addr in ["0.0.0.0", "198.18.0.7", "::"] {
            let (path, err) = load_err(&format!("healthzBindAddress: \"{addr}\"\n"));
            assert!(
                matches!(
                    &err,
                    ConfigError::Insecure {
                        cis: "ironlet.2.4",
                        ..
                    }
                ),
                "{addr}: {err}"
            );
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!(
                    "{path}: healthzBindAddress: {addr} is not a loopback address"
                )),
                "{msg}"
            );
            assert!(
                msg.ends_with("refused (ironlet check ironlet.2.4)"),
                "{msg}"
            );
        }
        // Disabled healthz may name any address: nothing listens.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(
            &f,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nhealthzBindAddress: 0.0.0.0\nhealthzPort: 0\n",
        )
        .unwrap();
        assert!(Config::load(&flags(Some(&f))).is_ok());
    }

    #[test]
    fn weak_tls_is_refused_with_cis_4_2_12() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(
            &f,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ntlsCipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_128_CBC_SHA]\n",
        )
        .unwrap();
        let flags = RunFlags {
            config: Some(f.clone()),
            hostname_override: Some("n".into()),
            ..Default::default()
        };
        let e = Config::load(&flags).unwrap_err().to_string();
        assert!(e.contains(&f.display().to_string()), "{e}");
        assert!(
            e.contains("tlsCipherSuites") && e.contains("TLS_RSA_WITH_AES_128_CBC_SHA"),
            "{e}"
        );
        assert!(e.contains("4.2.12"), "{e}");
        std::fs::write(
            &f,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ntlsMinVersion: VersionTLS10\n",
        )
        .unwrap();
        let e = Config::load(&flags).unwrap_err().to_string();
        assert!(
            e.contains("tlsMinVersion") && e.contains("VersionTLS10"),
            "{e}"
        );
    }

    #[test]
    fn invalid_values_are_named() {
        for (body, field, needle) in [
            (
                "authorization:\n  mode: Node\n",
                "authorization.mode",
                "unknown mode \"Node\"",
            ),
            ("port: 0\n", "port", "0 must be between 1 and 65535"),
            ("port: 70000\n", "port", "70000 must be between 1 and 65535"),
            (
                "healthzPort: -1\n",
                "healthzPort",
                "-1 must be between 0 and 65535",
            ),
            (
                "fileCheckFrequency: 20x\n",
                "fileCheckFrequency",
                r#"invalid duration "20x": unknown unit "x""#,
            ),
            (
                "syncFrequency: -1m\n",
                "syncFrequency",
                r#"invalid duration "-1m": a sign is not allowed"#,
            ),
            ("address: localhost\n", "address", "not an IP address"),
            (
                "clusterDNS: [10.96.0.10, dns]\n",
                "clusterDNS[1]",
                "not an IP address",
            ),
            (
                "clusterDomain: Cluster_Local\n",
                "clusterDomain",
                "RFC 1123 subdomain",
            ),
            (
                "staticPodPath: manifests\n",
                "staticPodPath",
                "absolute path",
            ),
            ("maxPods: -5\n", "maxPods", "-5 must be between 0"),
            (
                "containerRuntimeEndpoint: tcp://10.0.0.1:2375\n",
                "containerRuntimeEndpoint",
                "scheme \"tcp\" is not supported",
            ),
            (
                "containerRuntimeEndpoint: unix://run/x.sock\n",
                "containerRuntimeEndpoint",
                "must be absolute",
            ),
            (
                "tlsCertFile: /etc/kubelet.crt\n",
                "tlsPrivateKeyFile",
                "missing",
            ),
            (
                "authentication:\n  webhook:\n    enabled: false\n",
                "authentication",
                "no authentication method",
            ),
        ] {
            let (path, err) = load_err(body);
            assert!(matches!(err, ConfigError::Invalid { .. }), "{body}: {err}");
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("{path}: {field}: ")), "{msg}");
            assert!(msg.contains(needle), "{msg}");
        }
    }

    #[test]
    fn duration_error_message_has_the_documented_shape() {
        let (path, err) = load_err("fileCheckFrequency: 20x\n");
        assert!(
            err.to_string().starts_with(&format!(
                r#"{path}: fileCheckFrequency: invalid duration "20x": unknown unit "x""#
            )),
            "{err}"
        );
    }

    #[test]
    fn flag_errors_name_the_flag() {
        let bad = |run: RunFlags| Config::load(&run).unwrap_err().to_string();
        let msg = bad(RunFlags {
            container_runtime_endpoint: Some("npipe:////./pipe/x".into()),
            ..flags(None)
        });
        assert!(
            msg.starts_with("--container-runtime-endpoint: ") && msg.contains("unix socket"),
            "{msg}"
        );
        let msg = bad(RunFlags {
            root_dir: Some("var/lib/kubelet".into()),
            ..flags(None)
        });
        assert!(msg.starts_with("--root-dir: "), "{msg}");
        let msg = bad(RunFlags {
            hostname_override: Some("bad_name".into()),
            ..flags(None)
        });
        assert!(
            msg.starts_with("--hostname-override: node name \"bad_name\""),
            "{msg}"
        );
    }

    #[test]
    fn unknown_and_unimplemented_fields_through_load() {
        let (path, err) = load_err("authorisation:\n  mode: Webhook\n");
        assert!(
            err.to_string()
                .starts_with(&format!("{path}: authorisation: unknown field")),
            "{err}"
        );

        let (_f, loaded) =
            load_yaml("registryPullQPS: 5\nserializeImagePulls: true\nport: 10250\n");
        let warnings = loaded.unwrap().warnings;
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("serializeImagePulls") || warnings[0].contains("registryPullQPS"),
            "{warnings:?}"
        );
    }

    #[test]
    fn certificate_settings_need_an_api_server_and_do_not_mix_with_files() {
        // Without --kubeconfig there is nobody to ask: refused, naming the field.
        let (_f, err) = load_err("rotateCertificates: true\n");
        assert!(err.to_string().contains("rotateCertificates"), "{err}");
        let (_f, err) = load_err("serverTLSBootstrap: true\n");
        assert!(err.to_string().contains("serverTLSBootstrap"), "{err}");
        let f = temp_file(
            ".yaml",
            &format!("{HEAD}serverTLSBootstrap: true\nrotateCertificates: true\n"),
        );
        let ok = Config::load(&RunFlags {
            kubeconfig: Some("/etc/ironlet/kubeconfig".into()),
            bootstrap_kubeconfig: Some("/etc/ironlet/bootstrap".into()),
            root_dir: Some("/srv/k".into()),
            ..flags(Some(f.path()))
        })
        .unwrap()
        .config;
        assert!(ok.certificates.rotate_certificates && ok.certificates.server_tls_bootstrap);
        assert_eq!(ok.certificates.cert_dir, Path::new("/srv/k/pki"));
        let f = temp_file(
            ".yaml",
            &format!(
                "{HEAD}serverTLSBootstrap: true\ntlsCertFile: /a.crt\ntlsPrivateKeyFile: /a.key\n"
            ),
        );
        let err = Config::load(&RunFlags {
            kubeconfig: Some("/etc/ironlet/kubeconfig".into()),
            ..flags(Some(f.path()))
        })
        .unwrap_err();
        assert!(err.to_string().contains("tlsCertFile"), "{err}");
        let err = Config::load(&RunFlags {
            bootstrap_kubeconfig: Some("/etc/ironlet/bootstrap".into()),
            ..flags(None)
        })
        .unwrap_err();
        assert!(err.to_string().contains("--bootstrap-kubeconfig"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let err =
            Config::load(&flags(Some(Path::new("/nonexistent/kubelet-config.yaml")))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/kubelet-config.yaml: cannot read"),
            "{err}"
        );
    }

    #[test]
    fn node_name_from_hostname() {
        assert_eq!(
            node_name(None, || Ok("Worker-7\n".into())).unwrap(),
            "worker-7"
        );
        assert_eq!(node_name(Some("  "), || Ok("host".into())).unwrap(), "host");
        let err = node_name(None, || Ok("under_score".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("hostname: node name \"under_score\" (from /proc/sys/kernel/hostname"),
            "{err}"
        );
        let err = node_name(None, || Ok(String::new())).unwrap_err();
        assert_eq!(err.field(), Some("hostname"));
        // The real machine hostname, whatever it is, either validates or is reported by name.
        match Config::load(&RunFlags::default()) {
            Ok(l) => assert!(validate_dns1123_subdomain(&l.config.node_name).is_ok()),
            Err(e) => assert!(
                e.to_string().starts_with("hostname") || e.to_string().contains(HOSTNAME_FILE),
                "{e}"
            ),
        }
    }

    #[test]
    fn runtime_endpoint_forms() {
        assert_eq!(
            unix_socket_path("unix:///run/a.sock"),
            Ok(PathBuf::from("/run/a.sock"))
        );
        assert_eq!(
            unix_socket_path("/run/a.sock"),
            Ok(PathBuf::from("/run/a.sock"))
        );
        for bad in [
            "tcp://127.0.0.1:1",
            "npipe:////./pipe/x",
            "unix://",
            "run/a.sock",
            "",
            "unix:/run/a.sock",
        ] {
            assert!(unix_socket_path(bad).is_err(), "{bad}");
        }
    }

    fn with_upstream(config: Option<&Path>, pairs: &[(&str, &str)]) -> RunFlags {
        RunFlags {
            upstream: flags::UpstreamFlags::from_pairs(pairs).unwrap(),
            ..flags(config)
        }
    }

    #[test]
    fn upstream_flags_override_the_file() {
        let f = temp_file(
            ".yaml",
            &format!(
                "{HEAD}maxPods: 30
syncFrequency: 5s
enableServer: true
"
            ),
        );
        let run = with_upstream(
            Some(f.path()),
            &[
                ("max-pods", "40"),
                ("enable-server", "false"),
                ("pods-per-core", "4"),
                ("kube-reserved", "cpu=100m,memory=1Gi"),
                ("tls-min-version", "VersionTLS13"),
                ("logging-format", "json"),
            ],
        );
        let loaded = Config::load(&run).unwrap();
        let c = loaded.config;
        assert_eq!(c.max_pods, 40);
        assert_eq!(
            c.sync_frequency,
            secs(5),
            "the file still applies where no flag is given"
        );
        assert!(!c.node.enable_server);
        assert_eq!(c.node.pods_per_core, 4);
        assert_eq!(c.cluster.kube_reserved.memory_bytes, 1 << 30);
        assert_eq!(c.tls.min_version.as_deref(), Some("VersionTLS13"));
        assert_eq!(c.node.log_format, LogFormat::Json);
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.starts_with("Flag --max-pods has been deprecated")),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn insecure_flags_are_refused_naming_the_flag_and_cis_id() {
        // The file is secure; each flag alone makes it insecure.
        let f = temp_file(
            ".yaml",
            &format!(
                "{HEAD}readOnlyPort: 0
authentication: {{anonymous: {{enabled: false}}}}
"
            ),
        );
        for (flag, value, cis) in [
            ("anonymous-auth", "true", "4.2.1"),
            ("authorization-mode", "AlwaysAllow", "4.2.2"),
            ("read-only-port", "10255", "4.2.4"),
            ("streaming-connection-idle-timeout", "0s", "4.2.5"),
            ("tls-min-version", "VersionTLS10", "4.2.12"),
            (
                "tls-cipher-suites",
                "TLS_RSA_WITH_AES_128_CBC_SHA",
                "4.2.12",
            ),
        ] {
            let err = Config::load(&with_upstream(Some(f.path()), &[(flag, value)])).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Insecure { cis: c, .. } if *c == cis),
                "{flag}: {err}"
            );
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("--{flag}: ")), "{msg}");
            assert!(
                msg.contains(&format!("CIS Kubernetes Benchmark {cis}")),
                "{msg}"
            );
        }
        // And the secure forms pass.
        let ok = with_upstream(
            Some(f.path()),
            &[
                ("anonymous-auth", "false"),
                ("authorization-mode", "Webhook"),
                ("read-only-port", "0"),
                ("protect-kernel-defaults", "true"),
                ("make-iptables-util-chains", "true"),
                ("tls-min-version", "VersionTLS12"),
            ],
        );
        let c = Config::load(&ok).unwrap().config;
        assert!(c.node.protect_kernel_defaults);
    }

    #[test]
    fn not_implemented_fields_are_refused_unless_default() {
        for (body, field) in [
            ("cpuManagerPolicy: static\n", "cpuManagerPolicy"),
            ("staticPodURL: http://example.com/pods\n", "staticPodURL"),
            ("shutdownGracePeriod: 30s\n", "shutdownGracePeriod"),
            ("cgroupDriver: systemd\n", "cgroupDriver"),
            ("evictionSoft: {memory.available: 1Gi}\n", "evictionSoft"),
        ] {
            let (path, err) = load_err(body);
            assert!(
                err.to_string().starts_with(&format!("{path}: {field}: ")),
                "{err}"
            );
            assert!(err.to_string().contains("not implemented"), "{err}");
        }
        // Upstream's defaults pass, and harmless fields warn.
        let (_f, loaded) = load_yaml(
            "cpuManagerPolicy: none\ncgroupDriver: cgroupfs\n\
             shutdownGracePeriod: 0s\nstaticPodURL: \"\"\nimageGCHighThresholdPercent: 90\n",
        );
        let warnings = loaded.unwrap().warnings;
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("imageGCHighThresholdPercent"));
        // A flag that sets a refused field is named.
        let e = Config::load(&with_upstream(None, &[("cgroup-driver", "systemd")])).unwrap_err();
        assert!(
            e.to_string().starts_with("--cgroup-driver: cgroupDriver: "),
            "{e}"
        );
    }

    #[test]
    fn node_settings_are_validated() {
        let c = load_yaml(
            "enforceNodeAllocatable: [pods, kube-reserved]\nkubeReservedCgroup: /kube.slice\n\
             tlsCurvePreferences: [29, secp256r1]\nfailSwapOn: false\nmemorySwap: {swapBehavior: NoSwap}\n",
        )
        .1
        .unwrap()
        .config;
        assert_eq!(
            c.node.node_allocatable,
            NodeAllocatableEnforcement {
                pods: true,
                kube_reserved_cgroup: Some("/kube.slice".into()),
                system_reserved_cgroup: None,
            }
        );
        assert_eq!(c.node.tls_curve_preferences, vec!["X25519", "secp256r1"]);
        assert!(!c.node.fail_swap_on);
        let none = load_yaml("enforceNodeAllocatable: []\n").1.unwrap().config;
        assert!(!none.node.node_allocatable.pods);
        for (body, field) in [
            (
                "enforceNodeAllocatable: [kube-reserved]\n",
                "enforceNodeAllocatable",
            ),
            (
                "enforceNodeAllocatable: [none, pods]\n",
                "enforceNodeAllocatable",
            ),
            (
                "enforceNodeAllocatable: [everything]\n",
                "enforceNodeAllocatable",
            ),
            ("cgroupsPerQOS: false\n", "enforceNodeAllocatable"),
            ("kubeReservedCgroup: kube\n", "kubeReservedCgroup"),
            ("tlsCurvePreferences: [4588]\n", "tlsCurvePreferences[0]"),
            ("tlsCurvePreferences: [7]\n", "tlsCurvePreferences[0]"),
            (
                "memorySwap: {swapBehavior: LimitedSwap}\n",
                "memorySwap.swapBehavior",
            ),
            ("podsPerCore: -1\n", "podsPerCore"),
            ("logging: {format: xml}\n", "logging.format"),
        ] {
            let (_, err) = load_err(body);
            assert_eq!(err.field(), Some(field), "{body}: {err}");
        }
    }
}
