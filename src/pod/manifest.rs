//! Static pod manifests: bytes from an operator's file -> a validated, defaulted v1 Pod.
//!
//! Everything here is pure (no file system access) so it can be fuzzed: `parse` takes the
//! file name only for error messages and for the UID hash. What it accepts is a subset of
//! what the API server would accept; anything it cannot run correctly is rejected with a
//! message that names the problem, never half-applied.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod, Toleration};
use sha2::{Digest, Sha256};

use super::{DesiredPod, PodFullName, PodSource, PodUid};
use crate::config::{validate_dns1123_label, validate_dns1123_subdomain};

/// Manifests larger than this are refused before parsing (hardening: an operator's typo
/// such as a log file in the manifest directory must not cost the agent its memory).
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

/// Annotation keys upstream uses for static pods.
pub const ANNOTATION_CONFIG_HASH: &str = "kubernetes.io/config.hash";
pub const ANNOTATION_CONFIG_SOURCE: &str = "kubernetes.io/config.source";
pub const ANNOTATION_CONFIG_SEEN: &str = "kubernetes.io/config.seen";

/// Why a manifest was refused. The file name is added by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("file is {0} bytes, larger than the {MAX_MANIFEST_BYTES} byte limit")]
    TooLarge(usize),
    #[error("file is empty")]
    Empty,
    #[error("not valid YAML or JSON: {0}")]
    Syntax(String),
    #[error("not a v1 Pod: {0}")]
    NotAPod(String),
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Parses and validates one manifest file's content into the pod this node should run.
/// `node_name` is already validated; `seen` is the RFC 3339 time the agent first saw it.
pub fn parse(
    path: &Path,
    content: &[u8],
    node_name: &str,
    seen: &str,
) -> Result<DesiredPod, ManifestError> {
    if content.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge(content.len()));
    }
    if content.iter().all(u8::is_ascii_whitespace) {
        return Err(ManifestError::Empty);
    }
    let value = decode(path, content)?;
    check_type(&value)?;
    let mut pod: Pod =
        serde_json::from_value(value).map_err(|e| ManifestError::NotAPod(e.to_string()))?;
    apply_defaults(&mut pod);
    validate(&pod)?;

    let original_name = pod.metadata.name.clone().unwrap_or_default();
    let name = format!("{original_name}-{node_name}");
    validate_dns1123_subdomain(&name)
        .map_err(|p| invalid("metadata.name", format!("{name:?} (name-node): {p}")))?;
    pod.metadata.name = Some(name.clone());
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();

    let uid = static_pod_uid(&pod, node_name, path);
    pod.metadata.uid = Some(uid.0.clone());
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(ANNOTATION_CONFIG_HASH.into(), uid.0.clone());
    annotations.insert(ANNOTATION_CONFIG_SOURCE.into(), "file".into());
    annotations.insert(ANNOTATION_CONFIG_SEEN.into(), seen.into());
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node_name.to_string());
    }

    Ok(DesiredPod {
        uid,
        full_name: PodFullName { namespace, name },
        source: PodSource::File(path.to_path_buf()),
        pod: Arc::new(pod),
        api: None,
    })
}

fn decode(path: &Path, content: &[u8]) -> Result<serde_json::Value, ManifestError> {
    let is_json = path.extension().is_some_and(|e| e == "json");
    let text = std::str::from_utf8(content)
        .map_err(|e| ManifestError::Syntax(format!("not UTF-8: {e}")))?;
    if is_json {
        serde_json::from_str(text).map_err(|e| ManifestError::Syntax(e.to_string()))
    } else {
        serde_saphyr::from_str(text).map_err(|e| ManifestError::Syntax(first_lines(&e.to_string())))
    }
}

/// YAML errors carry a source snippet; keep the message to a few lines for the log.
fn first_lines(s: &str) -> String {
    s.lines().take(4).collect::<Vec<_>>().join(" | ")
}

fn check_type(value: &serde_json::Value) -> Result<(), ManifestError> {
    let obj = value
        .as_object()
        .ok_or_else(|| ManifestError::NotAPod("the document is not a mapping".into()))?;
    let api_version = obj.get("apiVersion").and_then(|v| v.as_str());
    let kind = obj.get("kind").and_then(|v| v.as_str());
    match (api_version, kind) {
        (Some("v1"), Some("Pod")) => Ok(()),
        (None, _) => Err(ManifestError::NotAPod("apiVersion is missing".into())),
        (_, None) => Err(ManifestError::NotAPod("kind is missing".into())),
        (Some(a), Some(k)) => Err(ManifestError::NotAPod(format!(
            "apiVersion {a:?}, kind {k:?}; expected apiVersion \"v1\", kind \"Pod\""
        ))),
    }
}

/// The API server's defaults that matter to the node, applied as upstream's defaulting does.
fn apply_defaults(pod: &mut Pod) {
    if pod.metadata.namespace.as_deref().unwrap_or("").is_empty() {
        pod.metadata.namespace = Some("default".into());
    }
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        default_container(c);
    }
    // Upstream gives file pods a toleration of every NoExecute taint.
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let all_no_execute = Toleration {
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        ..Default::default()
    };
    if !tolerations.contains(&all_no_execute) {
        tolerations.push(all_no_execute);
    }
}

fn default_container(c: &mut Container) {
    if c.image_pull_policy.is_none() {
        c.image_pull_policy = Some(default_pull_policy(c.image.as_deref().unwrap_or("")).into());
    }
    c.termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".into());
    c.termination_message_policy
        .get_or_insert_with(|| "File".into());
    for p in c.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
    }
}

/// Upstream: `Always` when the tag is `latest` or absent (and no digest), else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

/// The checks a pod must pass before the node runs it, whatever its source: required
/// fields, names, and the features ironlet supports.
pub fn validate(pod: &Pod) -> Result<(), ManifestError> {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    if name.is_empty() {
        return Err(invalid("metadata.name", "is required"));
    }
    validate_dns1123_subdomain(name).map_err(|p| invalid("metadata.name", p))?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    validate_dns1123_label(namespace).map_err(|p| invalid("metadata.namespace", p))?;
    // The UID names the pod's directory (`<root-dir>/pods/<uid>`) and its log directory.
    // Static pods get theirs after validation; API pods bring one.
    if let Some(uid) = pod.metadata.uid.as_deref()
        && !crate::confine::helper::proto::is_pod_uid(uid)
    {
        return Err(invalid(
            "metadata.uid",
            format!(
                "{:?} is not a valid UID (1 to 64 ASCII letters, digits or '-')",
                uid.chars().take(80).collect::<String>()
            ),
        ));
    }
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| invalid("spec", "is required"))?;
    if spec.containers.is_empty() {
        return Err(invalid(
            "spec.containers",
            "at least one container is required",
        ));
    }
    let mut names = BTreeSet::new();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| ("initContainers", i, c));
    let app = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| ("containers", i, c));
    for (list, i, c) in init.chain(app) {
        let field = format!("spec.{list}[{i}]");
        validate_dns1123_label(&c.name).map_err(|p| invalid(format!("{field}.name"), p))?;
        if !names.insert(c.name.as_str()) {
            return Err(invalid(
                format!("{field}.name"),
                format!("duplicate container name {:?}", c.name),
            ));
        }
        if list == "initContainers" && c.restart_policy.is_some() {
            return Err(invalid(
                format!("{field}.restartPolicy"),
                "sidecar init containers (restartPolicy on an init container) are not supported yet",
            ));
        }
        let image = c.image.as_deref().unwrap_or("");
        if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
            return Err(invalid(
                format!("{field}.image"),
                "is required and must not contain whitespace",
            ));
        }
        let policy = c.image_pull_policy.as_deref().unwrap_or("");
        if !matches!(policy, "Always" | "IfNotPresent" | "Never") {
            return Err(invalid(
                format!("{field}.imagePullPolicy"),
                format!("unsupported value {policy:?}: Always, IfNotPresent or Never"),
            ));
        }
        let mut ports = BTreeSet::new();
        for (j, p) in c.ports.iter().flatten().enumerate() {
            let pf = format!("{field}.ports[{j}]");
            if !(1..=65535).contains(&p.container_port) {
                return Err(invalid(
                    format!("{pf}.containerPort"),
                    "must be between 1 and 65535",
                ));
            }
            if let Some(hp) = p.host_port
                && !(0..=65535).contains(&hp)
            {
                return Err(invalid(
                    format!("{pf}.hostPort"),
                    "must be between 0 and 65535",
                ));
            }
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            if !matches!(proto, "TCP" | "UDP" | "SCTP") {
                return Err(invalid(
                    format!("{pf}.protocol"),
                    format!("unsupported value {proto:?}"),
                ));
            }
            if !ports.insert((p.container_port, proto)) {
                return Err(invalid(pf, "duplicate containerPort and protocol"));
            }
        }
        for (j, e) in c.env.iter().flatten().enumerate() {
            if e.name.is_empty() || e.name.contains('=') {
                return Err(invalid(
                    format!("{field}.env[{j}].name"),
                    "must be non-empty and must not contain '='",
                ));
            }
        }
    }
    let restart = spec.restart_policy.as_deref().unwrap_or("");
    if !matches!(restart, "Always" | "OnFailure" | "Never") {
        return Err(invalid(
            "spec.restartPolicy",
            format!("unsupported value {restart:?}: Always, OnFailure or Never"),
        ));
    }
    let dns = spec.dns_policy.as_deref().unwrap_or("");
    if !matches!(
        dns,
        "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" | "None"
    ) {
        return Err(invalid(
            "spec.dnsPolicy",
            format!("unsupported value {dns:?}"),
        ));
    }
    if dns == "None" && spec.dns_config.is_none() {
        return Err(invalid(
            "spec.dnsConfig",
            "is required when dnsPolicy is None",
        ));
    }
    if let Some(g) = spec.termination_grace_period_seconds
        && g < 0
    {
        return Err(invalid(
            "spec.terminationGracePeriodSeconds",
            "must not be negative",
        ));
    }
    if let Some(h) = spec.hostname.as_deref() {
        validate_dns1123_label(h).map_err(|p| invalid("spec.hostname", p))?;
    }
    // Volume names become host path components; subPaths must stay inside the volume.
    crate::volume::validate::validate_spec(spec).map_err(|e| invalid(e.field, e.problem))?;
    Ok(())
}

/// Static pod UID: a hash over the node, the file and the decoded pod, so the same content
/// yields the same UID across agent restarts (adoption) and any change yields a new one.
/// Upstream hashes the same inputs with MD5/FNV; we use SHA-256 truncated to 128 bits.
fn static_pod_uid(pod: &Pod, node_name: &str, path: &Path) -> PodUid {
    let mut h = Sha256::new();
    h.update(b"host:");
    h.update(node_name.as_bytes());
    h.update(b"\nfile:");
    h.update(path.as_os_str().as_encoded_bytes());
    h.update(b"\n");
    // k8s-openapi serialises maps in key order, so this encoding is canonical.
    h.update(serde_json::to_vec(pod).unwrap_or_default());
    let digest = h.finalize();
    PodUid(hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEEN: &str = "2026-01-01T00:00:00Z";

    fn p(content: &str) -> Result<DesiredPod, ManifestError> {
        parse(
            Path::new("/etc/pods/web.yaml"),
            content.as_bytes(),
            "node-a",
            SEEN,
        )
    }

    const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n";

    #[test]
    fn valid_pod_gets_static_identity_and_defaults() {
        let d = p(WEB).unwrap();
        assert_eq!(d.full_name.name, "web-node-a");
        assert_eq!(d.full_name.namespace, "default");
        assert_eq!(d.uid.0.len(), 32);
        let ann = d.pod.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann[ANNOTATION_CONFIG_HASH], d.uid.0);
        assert_eq!(ann[ANNOTATION_CONFIG_SOURCE], "file");
        let spec = d.spec();
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("IfNotPresent")
        );
        assert_eq!(spec.node_name.as_deref(), Some("node-a"));
    }

    #[test]
    fn uid_is_stable_and_follows_content() {
        let a = p(WEB).unwrap();
        let again = parse(
            Path::new("/etc/pods/web.yaml"),
            WEB.as_bytes(),
            "node-a",
            "later",
        )
        .unwrap();
        assert_eq!(a.uid, again.uid, "config.seen must not change the UID");
        let reformatted = WEB.replace("name: web\n", "name:   web\n");
        assert_eq!(
            a.uid,
            p(&reformatted).unwrap().uid,
            "formatting is not content"
        );
        let changed = WEB.replace("busybox:1", "busybox:2");
        assert_ne!(a.uid, p(&changed).unwrap().uid);
        let other_node = parse(
            Path::new("/etc/pods/web.yaml"),
            WEB.as_bytes(),
            "node-b",
            SEEN,
        )
        .unwrap();
        assert_ne!(a.uid, other_node.uid);
    }

    #[test]
    fn json_manifests_parse() {
        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"c","image":"x:1"}]}}"#;
        let d = parse(Path::new("/p/j.json"), json.as_bytes(), "n", SEEN).unwrap();
        assert_eq!(d.full_name.name, "j-n");
    }

    #[test]
    fn default_pull_policy_follows_tag() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(
            default_pull_policy("localhost:5000/busybox:1"),
            "IfNotPresent"
        );
        assert_eq!(default_pull_policy("busybox@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn rejections_name_the_problem() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("a: [", "not valid YAML"),
            ("- 1\n- 2\n", "not a mapping"),
            ("apiVersion: apps/v1\nkind: Deployment\n", "\"apps/v1\""),
            ("kind: Pod\n", "apiVersion is missing"),
            (
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n",
                "spec: is required",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers: []\n",
                "at least one container",
            ),
            (&WEB.replace("name: web", "name: Web_1"), "metadata.name"),
            (
                &WEB.replace("- name: c", "- name: C"),
                "spec.containers[0].name",
            ),
            (
                &WEB.replace("image: busybox:1", "image: ''"),
                "spec.containers[0].image",
            ),
            (
                &format!("{WEB}  restartPolicy: Sometimes\n"),
                "spec.restartPolicy",
            ),
            (
                &format!("{WEB}  - name: c\n    image: y:1\n"),
                "duplicate container name",
            ),
            (
                &format!("{WEB}    ports:\n    - containerPort: 70000\n"),
                "containerPort",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers: 7\n",
                "not a v1 Pod",
            ),
            (
                &format!("{WEB}  volumes:\n  - name: ../x\n    emptyDir: {{}}\n"),
                "spec.volumes[0].name: \"../x\" is not a DNS-1123 label",
            ),
            (
                &format!(
                    "{WEB}    volumeMounts:\n    - {{name: d, mountPath: /d, subPath: ../../etc}}\n  volumes:\n  - name: d\n    emptyDir: {{}}\n"
                ),
                "spec.containers[0].volumeMounts[0].subPath",
            ),
            (
                &WEB.replace("name: web\n", "name: web\n  uid: ../../x\n"),
                "metadata.uid",
            ),
            (
                &WEB.replace("name: web\n", "name: web\n  namespace: ../x\n"),
                "metadata.namespace",
            ),
            (
                &WEB.replace(
                    "spec:\n",
                    "spec:\n  initContainers:\n  - name: i\n    image: b:1\n",
                )
                .replace("- name: c\n", "- name: c/d\n"),
                "spec.containers[0].name",
            ),
        ];
        for (content, needle) in cases {
            let err = p(content).expect_err(content).to_string();
            assert!(
                err.contains(needle),
                "{content:?}: {err:?} lacks {needle:?}"
            );
        }
    }

    #[test]
    fn oversized_manifest_is_refused_before_parsing() {
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            parse(Path::new("x.yaml"), &big, "n", SEEN),
            Err(ManifestError::TooLarge(_))
        ));
    }
}
