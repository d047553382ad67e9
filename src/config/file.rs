//! The KubeletConfiguration (kubelet.config.k8s.io/v1beta1) file as written: raw serde structs,
//! every field optional, plus the field-name policy. Owns reading and decoding only; defaults
//! and validation live in `config/mod.rs`.
//!
//! Field-name policy, a deliberate hardening difference from upstream: upstream decodes
//! strictly but only logs a warning for unknown or duplicate fields and carries on, so a typo
//! such as `anonymous: {enabeld: true}` or `authorisation:` passes silently. Here a name that is
//! not an upstream v1beta1 field is an error naming it. Upstream fields that ironlet does not
//! implement are handled by [`super::fields`]: warned once each, or refused unless they keep
//! upstream's default.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::ConfigError;
use super::error::Source;

pub const API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
pub const KIND: &str = "KubeletConfiguration";

/// Larger files are refused before parsing; real configurations are a few KiB.
const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletConfiguration {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub static_pod_path: Option<String>,
    pub file_check_frequency: Option<String>,
    pub pod_logs_dir: Option<String>,
    pub runtime_request_timeout: Option<String>,
    pub sync_frequency: Option<String>,
    pub address: Option<String>,
    pub port: Option<i64>,
    pub read_only_port: Option<i64>,
    pub healthz_port: Option<i64>,
    pub healthz_bind_address: Option<String>,
    pub authentication: Option<KubeletAuthentication>,
    pub authorization: Option<KubeletAuthorization>,
    pub container_runtime_endpoint: Option<String>,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Option<Vec<String>>,
    pub cluster_domain: Option<String>,
    pub resolv_conf: Option<String>,
    pub max_pods: Option<i64>,
    pub tls_cert_file: Option<String>,
    pub tls_private_key_file: Option<String>,
    pub tls_min_version: Option<String>,
    pub tls_cipher_suites: Option<Vec<String>>,
    pub container_log_max_size: Option<String>,
    pub container_log_max_files: Option<i64>,
    pub cgroup_root: Option<String>,
    #[serde(rename = "cgroupsPerQOS")]
    pub cgroups_per_qos: Option<bool>,
    pub pod_pids_limit: Option<i64>,
    #[serde(rename = "cpuCFSQuota")]
    pub cpu_cfs_quota: Option<bool>,
    pub streaming_connection_idle_timeout: Option<String>,
    pub enable_debugging_handlers: Option<bool>,
    pub enable_system_log_handler: Option<bool>,
    pub node_status_update_frequency: Option<String>,
    pub node_status_report_frequency: Option<String>,
    pub node_lease_duration_seconds: Option<i64>,
    pub register_node: Option<bool>,
    pub register_with_taints: Option<Vec<k8s_openapi::api::core::v1::Taint>>,
    #[serde(rename = "kubeAPIQPS")]
    pub kube_api_qps: Option<f64>,
    #[serde(rename = "kubeAPIBurst")]
    pub kube_api_burst: Option<i64>,
    #[serde(rename = "eventRecordQPS")]
    pub event_record_qps: Option<f64>,
    pub event_burst: Option<i64>,
    pub kube_reserved: Option<std::collections::BTreeMap<String, String>>,
    pub system_reserved: Option<std::collections::BTreeMap<String, String>>,
    pub eviction_hard: Option<std::collections::BTreeMap<String, String>>,
    pub seccomp_default: Option<bool>,
    pub allowed_unsafe_sysctls: Option<Vec<String>>,
    pub rotate_certificates: Option<bool>,
    #[serde(rename = "serverTLSBootstrap")]
    pub server_tls_bootstrap: Option<bool>,
    pub enable_server: Option<bool>,
    pub protect_kernel_defaults: Option<bool>,
    pub fail_swap_on: Option<bool>,
    pub memory_swap: Option<MemorySwapConfiguration>,
    pub pods_per_core: Option<i64>,
    pub enforce_node_allocatable: Option<Vec<String>>,
    pub kube_reserved_cgroup: Option<String>,
    pub system_reserved_cgroup: Option<String>,
    /// Upstream: TLS curve IDs (numbers, as Go's tls.CurveID); names are accepted too.
    #[serde(rename = "tlsCurvePreferences")]
    pub tls_curve_preferences: Option<Vec<Value>>,
    pub logging: Option<LoggingConfiguration>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemorySwapConfiguration {
    pub swap_behavior: Option<String>,
}

/// component-base LoggingConfiguration. `format` and `verbosity` are implemented; the
/// others are decoded so they can be warned by name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggingConfiguration {
    pub format: Option<String>,
    /// A duration string, or nanoseconds as a number (upstream accepts both).
    pub flush_frequency: Option<Value>,
    pub verbosity: Option<u32>,
    pub vmodule: Option<Value>,
    pub options: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletAuthentication {
    pub anonymous: Option<KubeletAnonymousAuthentication>,
    pub webhook: Option<KubeletWebhookAuthentication>,
    pub x509: Option<KubeletX509Authentication>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletAnonymousAuthentication {
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletWebhookAuthentication {
    pub enabled: Option<bool>,
    #[serde(rename = "cacheTTL")]
    pub cache_ttl: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletX509Authentication {
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletAuthorization {
    pub mode: Option<String>,
    pub webhook: Option<KubeletWebhookAuthorization>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletWebhookAuthorization {
    #[serde(rename = "cacheAuthorizedTTL")]
    pub cache_authorized_ttl: Option<String>,
    #[serde(rename = "cacheUnauthorizedTTL")]
    pub cache_unauthorized_ttl: Option<String>,
}

/// Field names the structs above decode, by dotted parent path ("" is the top level).
/// Keep in step with the structs; a test checks each name decodes.
const IMPLEMENTED_FIELDS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "apiVersion",
            "kind",
            "staticPodPath",
            "fileCheckFrequency",
            "podLogsDir",
            "runtimeRequestTimeout",
            "syncFrequency",
            "address",
            "port",
            "readOnlyPort",
            "healthzPort",
            "healthzBindAddress",
            "authentication",
            "authorization",
            "containerRuntimeEndpoint",
            "clusterDNS",
            "clusterDomain",
            "resolvConf",
            "maxPods",
            "containerLogMaxSize",
            "containerLogMaxFiles",
            "cgroupRoot",
            "cgroupsPerQOS",
            "podPidsLimit",
            "cpuCFSQuota",
            "tlsCertFile",
            "tlsPrivateKeyFile",
            "tlsMinVersion",
            "tlsCipherSuites",
            "streamingConnectionIdleTimeout",
            "enableDebuggingHandlers",
            "enableSystemLogHandler",
            "nodeStatusUpdateFrequency",
            "nodeStatusReportFrequency",
            "nodeLeaseDurationSeconds",
            "registerNode",
            "registerWithTaints",
            "kubeAPIQPS",
            "kubeAPIBurst",
            "eventRecordQPS",
            "eventBurst",
            "kubeReserved",
            "systemReserved",
            "evictionHard",
            "enableServer",
            "protectKernelDefaults",
            "failSwapOn",
            "memorySwap",
            "podsPerCore",
            "enforceNodeAllocatable",
            "kubeReservedCgroup",
            "systemReservedCgroup",
            "tlsCurvePreferences",
            "logging",
            "rotateCertificates",
            "serverTLSBootstrap",
            "seccompDefault",
            "allowedUnsafeSysctls",
        ],
    ),
    ("memorySwap", &["swapBehavior"]),
    (
        "logging",
        &[
            "format",
            "flushFrequency",
            "verbosity",
            "vmodule",
            "options",
        ],
    ),
    ("authentication", &["anonymous", "webhook", "x509"]),
    ("authentication.anonymous", &["enabled"]),
    ("authentication.webhook", &["enabled", "cacheTTL"]),
    ("authentication.x509", &["clientCAFile"]),
    ("authorization", &["mode", "webhook"]),
    (
        "authorization.webhook",
        &["cacheAuthorizedTTL", "cacheUnauthorizedTTL"],
    ),
];

/// Whether `name` is a top-level upstream field (decoded here, or in [`super::fields`]).
pub fn is_known_field(name: &str) -> bool {
    top_level_implemented().contains(&name) || super::fields::disposition(name).is_some()
}

fn top_level_implemented() -> &'static [&'static str] {
    IMPLEMENTED_FIELDS
        .iter()
        .find(|(p, _)| p.is_empty())
        .map_or(&[][..], |(_, names)| *names)
}

/// Top-level upstream fields this module does not decode: their fate is [`super::fields`].
fn not_implemented(name: &str) -> bool {
    !top_level_implemented().contains(&name) && super::fields::disposition(name).is_some()
}

/// A decoded file and one warning per recognised-but-unimplemented field it sets.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedFile {
    pub config: KubeletConfiguration,
    pub warnings: Vec<String>,
}

/// Reads and decodes `path` (YAML or JSON).
pub fn read(path: &Path) -> Result<ParsedFile, ConfigError> {
    let doc = read_document(path)?;
    decode(Source { file: Some(path) }, doc, &|_| None)
}

/// Decodes file contents; `path` is used in messages only.
pub fn parse(path: &Path, text: &str) -> Result<ParsedFile, ConfigError> {
    let doc = parse_document(path, text)?;
    decode(Source { file: Some(path) }, doc, &|_| None)
}

/// The file as a checked document: YAML or JSON, the type header, and only upstream field
/// names (unknown names are errors).
pub fn parse_document(path: &Path, text: &str) -> Result<Map<String, Value>, ConfigError> {
    let src = Source { file: Some(path) };
    let malformed = |message: String| ConfigError::Malformed {
        path: path.to_path_buf(),
        message,
    };
    // JSON is YAML, so one parser serves both; it also rejects duplicate keys, which a JSON
    // parser into a map would silently let the last one win.
    let doc: Value = serde_saphyr::from_str(text).map_err(|e| malformed(yaml_message(&e)))?;
    let Value::Object(top) = doc else {
        return Err(malformed(format!(
            "expected a {KIND} mapping at the top level"
        )));
    };
    check_type_meta(src, &top)?;
    check_field_names(src, "", &top)?;
    Ok(top)
}

/// Reads and checks `path` as a document (see [`parse_document`]).
pub fn read_document(path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(read_err)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(read_err(std::io::Error::other(format!(
            "larger than {MAX_FILE_BYTES} bytes"
        ))));
    }
    parse_document(path, &text)
}

/// Sets the dotted `path` in `doc` to `value`, creating the objects on the way (a flag over
/// the file: the flag wins).
pub fn set_path(doc: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts = path.split('.').peekable();
    let mut current = doc;
    while let Some(key) = parts.next() {
        if parts.peek().is_none() {
            current.insert(key.to_owned(), value);
            return;
        }
        let entry = current
            .entry(key.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else { return };
        current = next;
    }
}

/// Applies [`super::fields`] to the fields this module does not decode (warn, or refuse a
/// value that is not upstream's default), then decodes the rest. `flag_of` says which flag
/// set a field, so messages name it.
pub(crate) fn decode(
    src: Source,
    mut top: Map<String, Value>,
    flag_of: &dyn Fn(&str) -> Option<&'static str>,
) -> Result<ParsedFile, ConfigError> {
    let mut warnings = Vec::new();
    let names: Vec<String> = top.keys().filter(|k| not_implemented(k)).cloned().collect();
    for name in names {
        let Some(value) = top.remove(&name) else {
            continue;
        };
        let Some(field) = super::fields::disposition(&name) else {
            continue;
        };
        let at = match flag_of(&name) {
            Some(flag) => format!("--{flag} ({name})"),
            None => match src.file {
                Some(p) => format!("{}: {name}", p.display()),
                None => name.clone(),
            },
        };
        match field.disposition.refusal() {
            Some(accept) if !accept.accepts(&value) => {
                return Err(src.invalid(
                    name.as_str(),
                    format!(
                        "{value}: not implemented by ironlet ({}), so only upstream's default is accepted; remove it",
                        field.why
                    ),
                ));
            }
            Some(_) => {}
            None => warnings.push(format!(
                "{at}: recognised {KIND} field is not implemented by ironlet yet ({}); ignored",
                field.why
            )),
        }
    }
    let doc = Value::Object(top);
    let config = serde_json::from_value(doc.clone())
        .map_err(|e| src.invalid(locate_error::<KubeletConfiguration>(&doc), e.to_string()))?;
    Ok(ParsedFile { config, warnings })
}

/// The operator-facing wording with "at line L, column C", without a multi-line snippet.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    e.render_with_options(serde_saphyr::render_options! {
        formatter: &serde_saphyr::UserMessageFormatter,
        snippets: serde_saphyr::SnippetMode::Off,
    })
}

fn check_type_meta(src: Source, top: &Map<String, Value>) -> Result<(), ConfigError> {
    for (field, want) in [("apiVersion", API_VERSION), ("kind", KIND)] {
        match top.get(field) {
            Some(Value::String(got)) if got == want => {}
            Some(Value::String(got)) => {
                return Err(src.invalid(field, format!("expected {want:?}, found {got:?}")));
            }
            Some(other) => {
                return Err(src.invalid(field, format!("expected {want:?}, found {other}")));
            }
            None => return Err(src.invalid(field, format!("missing; expected {want:?}"))),
        }
    }
    Ok(())
}

/// Rejects any name that is neither implemented nor a recognised upstream field, recursing
/// into the nested objects ironlet implements.
fn check_field_names(
    src: Source,
    parent: &str,
    obj: &Map<String, Value>,
) -> Result<(), ConfigError> {
    let known = IMPLEMENTED_FIELDS
        .iter()
        .find(|(p, _)| *p == parent)
        .map_or(&[][..], |(_, names)| *names);
    // Only the top level carries fields ironlet recognises without implementing.
    let unimplemented: Vec<&str> = if parent.is_empty() {
        super::fields::FIELDS.iter().map(|f| f.name).collect()
    } else {
        Vec::new()
    };
    for (key, value) in obj {
        let path = if parent.is_empty() {
            key.clone()
        } else {
            format!("{parent}.{key}")
        };
        if !known.contains(&key.as_str()) && !unimplemented.contains(&key.as_str()) {
            let hint = known
                .iter()
                .chain(unimplemented.iter())
                .find(|k| k.eq_ignore_ascii_case(key))
                .map(|k| format!(" (did you mean {k:?}?)"))
                .unwrap_or_default();
            return Err(ConfigError::UnknownField {
                file: src.file.map(Path::to_path_buf),
                field: path,
                hint,
            });
        }
        if let Value::Object(inner) = value
            && IMPLEMENTED_FIELDS.iter().any(|(p, _)| *p == path)
        {
            check_field_names(src, &path, inner)?;
        }
    }
    Ok(())
}

/// serde_json's type errors do not say where they are. Narrow the document down, key by key,
/// to the deepest field whose value alone still fails to decode, and return its dotted path.
fn locate_error<T: DeserializeOwned>(doc: &Value) -> String {
    // `value` nested under `path`, alone.
    let probe = |path: &[&str], value: Value| {
        let wrapped = path.iter().rev().fold(value, |inner, key| {
            Value::Object(Map::from_iter([((*key).to_owned(), inner)]))
        });
        serde_json::from_value::<T>(wrapped).is_ok()
    };
    let mut path: Vec<&str> = Vec::new();
    let mut current = doc;
    while let Value::Object(map) = current {
        // An object where an object belongs: the fault is inside it; otherwise it is here.
        if !path.is_empty() && !probe(&path, Value::Object(Map::new())) {
            break;
        }
        let failing = map.iter().find(|(key, value)| {
            let mut inner = path.clone();
            inner.push(key);
            !probe(&inner, (*value).clone())
        });
        let Some((key, value)) = failing else { break };
        path.push(key);
        current = value;
    }
    if path.is_empty() {
        "(document)".to_owned()
    } else {
        path.join(".")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<ParsedFile, ConfigError> {
        parse(Path::new("/etc/ironlet/config.yaml"), text)
    }

    const HEAD: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

    #[test]
    fn implemented_and_not_implemented_lists_are_consistent() {
        for (parent, names) in IMPLEMENTED_FIELDS {
            for name in *names {
                if parent.is_empty() {
                    let d = super::super::fields::disposition(name).map(|f| f.disposition);
                    assert!(
                        d.is_none() || d == Some(super::super::fields::Disposition::Implemented),
                        "{name} is decoded here but the fields table does not say implemented"
                    );
                }
                let mut probe = serde_json::json!({ *name: null });
                for p in parent.split('.').filter(|p| !p.is_empty()).rev() {
                    probe = serde_json::json!({ p: probe });
                }
                let decoded = serde_json::from_value::<KubeletConfiguration>(probe);
                assert!(decoded.is_ok(), "{parent}.{name}: {decoded:?}");
            }
        }
        // Every field the table calls implemented is decoded here.
        for name in super::super::fields::implemented() {
            assert!(
                top_level_implemented().contains(&name),
                "{name} is not decoded"
            );
        }
    }

    #[test]
    fn decodes_every_implemented_field_from_yaml() {
        let text = format!(
            "{HEAD}staticPodPath: /etc/kubernetes/manifests
fileCheckFrequency: 10s
podLogsDir: /var/log/pods
runtimeRequestTimeout: 5m
syncFrequency: 30s
address: 10.0.0.2
port: 10250
readOnlyPort: 0
healthzPort: 10248
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true, cacheTTL: 1m}}
  x509: {{clientCAFile: /etc/kubernetes/pki/ca.crt}}
authorization:
  mode: Webhook
  webhook: {{cacheAuthorizedTTL: 5m, cacheUnauthorizedTTL: 30s}}
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
clusterDNS: [10.96.0.10]
clusterDomain: cluster.local
resolvConf: /run/systemd/resolve/resolv.conf
maxPods: 50
tlsCertFile: /var/lib/kubelet/pki/kubelet.crt
tlsPrivateKeyFile: /var/lib/kubelet/pki/kubelet.key
tlsMinVersion: VersionTLS13
tlsCipherSuites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
"
        );
        let parsed = parse_str(&text).unwrap();
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let c = parsed.config;
        assert_eq!(c.cluster_dns, Some(vec!["10.96.0.10".to_owned()]));
        assert_eq!(c.port, Some(10250));
        assert_eq!(c.tls_min_version.as_deref(), Some("VersionTLS13"));
        let authn = c.authentication.unwrap();
        assert_eq!(authn.anonymous.unwrap().enabled, Some(false));
        assert_eq!(authn.webhook.unwrap().cache_ttl.as_deref(), Some("1m"));
        assert_eq!(
            authn.x509.unwrap().client_ca_file.as_deref(),
            Some("/etc/kubernetes/pki/ca.crt")
        );
        let authz = c.authorization.unwrap();
        assert_eq!(
            authz.webhook.unwrap().cache_unauthorized_ttl.as_deref(),
            Some("30s")
        );
    }

    #[test]
    fn decodes_json() {
        let text = r#"{"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "clusterDNS": ["10.96.0.10", "fd00::a"], "maxPods": 20}"#;
        let c = parse_str(text).unwrap().config;
        assert_eq!(c.max_pods, Some(20));
        assert_eq!(c.cluster_dns.map(|d| d.len()), Some(2));
    }

    #[test]
    fn unknown_fields_are_errors_with_their_path() {
        for (body, field) in [
            ("stativPodPath: /x\n", "stativPodPath"),
            (
                "authentication:\n  anonymous:\n    enabeld: true\n",
                "authentication.anonymous.enabeld",
            ),
            (
                "authorization:\n  webhook:\n    cacheTTL: 1m\n",
                "authorization.webhook.cacheTTL",
            ),
        ] {
            let err = parse_str(&format!("{HEAD}{body}")).unwrap_err();
            assert!(
                matches!(&err, ConfigError::UnknownField { field: f, .. } if f == field),
                "{err}"
            );
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("/etc/ironlet/config.yaml: {field}: unknown field")),
                "{msg}"
            );
        }
    }

    #[test]
    fn unknown_field_suggests_the_spelling_that_differs_only_in_case() {
        let err = parse_str(&format!("{HEAD}clusterDns: [10.96.0.10]\n")).unwrap_err();
        assert!(
            err.to_string().contains(r#"did you mean "clusterDNS"?"#),
            "{err}"
        );
    }

    #[test]
    fn not_implemented_fields_warn_exactly_once_each() {
        let text = format!(
            "{HEAD}featureGates: {{Foo: true}}\nimageGCHighThresholdPercent: 80\nregistryBurst: 20\nmaxPods: 10\n"
        );
        let parsed = parse_str(&text).unwrap();
        assert_eq!(parsed.warnings.len(), 3, "{:?}", parsed.warnings);
        for name in [
            "featureGates",
            "imageGCHighThresholdPercent",
            "registryBurst",
        ] {
            let hits = parsed
                .warnings
                .iter()
                .filter(|w| w.contains(&format!(": {name}: ")))
                .count();
            assert_eq!(hits, 1, "{name}: {:?}", parsed.warnings);
        }
        assert_eq!(parsed.config.max_pods, Some(10));
    }

    #[test]
    fn wrong_type_meta_is_named() {
        let err = parse_str("apiVersion: v1\nkind: KubeletConfiguration\n").unwrap_err();
        assert_eq!(err.field(), Some("apiVersion"));
        assert!(err.to_string().contains(r#"found "v1""#), "{err}");
        let err = parse_str("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: Pod\n").unwrap_err();
        assert_eq!(err.field(), Some("kind"));
        assert!(err.to_string().contains(r#"found "Pod""#), "{err}");
        let err = parse_str("kind: KubeletConfiguration\n").unwrap_err();
        assert!(err.to_string().contains("apiVersion: missing"), "{err}");
    }

    #[test]
    fn wrong_types_name_the_field() {
        for (body, field) in [
            ("port: \"10250\"\n", "port"),
            (
                "authentication:\n  anonymous:\n    enabled: maybe\n",
                "authentication.anonymous.enabled",
            ),
            ("clusterDNS: 10.96.0.10\n", "clusterDNS"),
            ("syncFrequency: 60\n", "syncFrequency"),
            ("port: {number: 1}\n", "port"),
        ] {
            let err = parse_str(&format!("{HEAD}{body}")).unwrap_err();
            assert_eq!(err.field(), Some(field), "{err}");
            assert!(
                err.to_string()
                    .starts_with(&format!("/etc/ironlet/config.yaml: {field}: ")),
                "{err}"
            );
        }
    }

    #[test]
    fn malformed_input_reports_the_position() {
        let err = parse_str(&format!("{HEAD}port: [1\n")).unwrap_err();
        assert!(matches!(err, ConfigError::Malformed { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("/etc/ironlet/config.yaml: malformed YAML/JSON: "),
            "{err}"
        );
        assert!(err.to_string().contains('3'), "no line number: {err}");

        let err = parse_str("{\"apiVersion\": \"x\",\n \"kind\" \"y\"}").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");

        let err = parse_str("{\"apiVersion\": \"x\", \"apiVersion\": \"y\"}").unwrap_err();
        assert!(err.to_string().contains("duplicate"), "{err}");

        let err = parse_str("- a\n- b\n").unwrap_err();
        assert!(err.to_string().contains("mapping"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let err = parse_str(&format!("{HEAD}maxPods: 1\nmaxPods: 2\n")).unwrap_err();
        assert!(matches!(err, ConfigError::Malformed { .. }), "{err}");
    }

    #[test]
    fn read_names_a_missing_file() {
        let err = read(Path::new("/nonexistent/ironlet/config.yaml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(
            err.to_string()
                .starts_with("/nonexistent/ironlet/config.yaml: cannot read"),
            "{err}"
        );
    }
}
