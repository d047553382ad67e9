//! Translation of a v1 Pod into CRI sandbox and container configurations. Pure.
//!
//! What a pod asks for that ironlet cannot give yet is refused here with a reason the
//! status shows (CreateContainerConfigError), never silently dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};

use super::DesiredPod;
use super::dns::{NodeDns, pod_dns};
use super::labels;
use super::lifecycle::container_hash;
use crate::cri::api;

/// What the node contributes to every pod's configuration.
#[derive(Clone, Debug, Default)]
pub struct NodeContext {
    pub node_name: String,
    pub node_ip: Option<String>,
    pub pod_logs_dir: PathBuf,
    /// `<root-dir>/pods`: per-pod state such as emptyDir volumes.
    pub pods_dir: PathBuf,
    pub dns: NodeDns,
    /// For Burstable oom_score_adj (upstream's formula needs node memory capacity).
    pub memory_capacity: i64,
    pub cpu_cfs_quota: bool,
    /// seccompDefault, the seccomp root, sysctl allow-list, Pod Security policy, host and
    /// runtime security features.
    pub security: std::sync::Arc<super::security::NodeSecurity>,
}

/// A container configuration that cannot be built: the waiting reason and message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub message: String,
}

fn unsupported(what: impl Into<String>) -> ConfigError {
    ConfigError {
        message: format!("{} is not supported by this ironlet version", what.into()),
    }
}

/// Upstream's pod log directory: `<podLogsDir>/<namespace>_<name>_<uid>`.
pub fn pod_log_dir(pod_logs_dir: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    pod_logs_dir.join(format!("{namespace}_{name}_{uid}"))
}

/// A container's log path relative to the pod log directory: `<container>/<restart>.log`.
pub fn container_log_path(container: &str, attempt: u32) -> String {
    format!("{container}/{attempt}.log")
}

fn pod_labels(pod: &DesiredPod) -> HashMap<String, String> {
    let mut l: HashMap<String, String> = pod
        .pod
        .metadata
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    l.insert(labels::POD_NAME.into(), pod.full_name.name.clone());
    l.insert(
        labels::POD_NAMESPACE.into(),
        pod.full_name.namespace.clone(),
    );
    l.insert(labels::POD_UID.into(), pod.uid.0.clone());
    l
}

fn namespace_options(spec: &PodSpec) -> api::NamespaceOption {
    let mode = |host: Option<bool>, otherwise: api::NamespaceMode| {
        if host.unwrap_or(false) {
            api::NamespaceMode::Node
        } else {
            otherwise
        }
    };
    let pid_default = if spec.share_process_namespace.unwrap_or(false) {
        api::NamespaceMode::Pod
    } else {
        api::NamespaceMode::Container
    };
    api::NamespaceOption {
        network: mode(spec.host_network, api::NamespaceMode::Pod) as i32,
        pid: mode(spec.host_pid, pid_default) as i32,
        ipc: mode(spec.host_ipc, api::NamespaceMode::Pod) as i32,
        ..Default::default()
    }
}

/// The sandbox hostname: spec.hostname, else the pod name cut to a DNS label.
fn hostname(pod: &DesiredPod) -> String {
    if let Some(h) = pod.spec().hostname.as_deref().filter(|h| !h.is_empty()) {
        return h.to_string();
    }
    let mut h: String = pod.full_name.name.chars().take(63).collect();
    while h.ends_with(['-', '.']) {
        h.pop();
    }
    h
}

pub fn sandbox_config(
    pod: &DesiredPod,
    attempt: u32,
    node: &NodeContext,
    cgroup_parent: &str,
) -> Result<api::PodSandboxConfig, ConfigError> {
    let spec = pod.spec();
    let psc = spec.security_context.as_ref();
    // Admission already refused what cannot be honoured; this is the same pure check.
    let security_context = super::security::context::sandbox_security(
        &pod.pod,
        &node.security,
        namespace_options(spec),
    )
    .map_err(|message| ConfigError { message })?;
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| api::PortMapping {
            protocol: protocol(p.protocol.as_deref()) as i32,
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let sysctls = psc
        .and_then(|s| s.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| (super::security::sysctl::normalize(&s.name), s.value.clone()))
        .collect();
    Ok(api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: pod.full_name.name.clone(),
            uid: pod.uid.0.clone(),
            namespace: pod.full_name.namespace.clone(),
            attempt,
        }),
        hostname: if spec.host_network.unwrap_or(false) {
            String::new()
        } else {
            hostname(pod)
        },
        log_directory: pod_log_dir(
            &node.pod_logs_dir,
            &pod.full_name.namespace,
            &pod.full_name.name,
            &pod.uid.0,
        )
        .to_string_lossy()
        .into_owned(),
        dns_config: Some(pod_dns(spec, &pod.full_name.namespace, &node.dns)),
        port_mappings,
        labels: pod_labels(pod),
        annotations: pod
            .pod
            .metadata
            .annotations
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.to_string(),
            security_context: Some(security_context),
            sysctls,
            ..Default::default()
        }),
        windows: None,
    })
}

fn protocol(p: Option<&str>) -> api::Protocol {
    match p {
        Some("UDP") => api::Protocol::Udp,
        Some("SCTP") => api::Protocol::Sctp,
        _ => api::Protocol::Tcp,
    }
}

/// The container's environment: literal values and the downward-API fields a node knows.
fn environment(
    c: &Container,
    pod: &DesiredPod,
    node: &NodeContext,
    pod_ip: &str,
) -> Result<Vec<(String, String)>, ConfigError> {
    if c.env_from.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(unsupported(format!("container {:?}: envFrom", c.name)));
    }
    let mut env: Vec<(String, String)> = Vec::new();
    for EnvVar {
        name,
        value,
        value_from,
    } in c.env.iter().flatten()
    {
        let v = match (value, value_from) {
            (_, Some(from)) => {
                let field = from.field_ref.as_ref().map(|f| f.field_path.as_str());
                match field {
                    Some("metadata.name") => pod.full_name.name.clone(),
                    Some("metadata.namespace") => pod.full_name.namespace.clone(),
                    Some("metadata.uid") => pod.uid.0.clone(),
                    Some("spec.nodeName") => node.node_name.clone(),
                    Some("status.podIP") => pod_ip.to_string(),
                    Some("status.hostIP") => node.node_ip.clone().unwrap_or_default(),
                    Some(other) => {
                        return Err(unsupported(format!("env {name:?}: fieldRef {other:?}")));
                    }
                    None => {
                        return Err(unsupported(format!(
                            "env {name:?}: valueFrom other than fieldRef"
                        )));
                    }
                }
            }
            (Some(v), None) => expand(v, &env),
            (None, None) => String::new(),
        };
        env.retain(|(k, _)| k != name);
        env.push((name.clone(), v));
    }
    Ok(env)
}

/// Upstream's `$(VAR)` expansion: defined references are replaced, `$$` escapes a `$`,
/// anything else is left as written.
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The subPath binds the container needs before it is created, with subPathExpr expanded
/// from the same environment the container gets.
pub fn sub_path_binds(
    pod: &DesiredPod,
    c: &Container,
    node: &NodeContext,
    pod_ip: &str,
) -> Result<Vec<crate::volume::SubPathBind>, ConfigError> {
    let env = environment(c, pod, node, pod_ip)?;
    crate::volume::sub_path_binds(pod.spec(), c, &pod.uid.0, &env).map_err(|e| ConfigError {
        message: format!("container {:?}: {}", c.name, e.0),
    })
}

pub fn container_config(
    pod: &DesiredPod,
    c: &Container,
    attempt: u32,
    node: &NodeContext,
    pod_ip: &str,
) -> Result<api::ContainerConfig, ConfigError> {
    let spec = pod.spec();
    crate::volume::check_supported(spec).map_err(|e| ConfigError { message: e.0 })?;
    let env = environment(c, pod, node, pod_ip)?;
    let mounts = crate::volume::mounts(spec, c, &node.pods_dir, &pod.uid.0, &env).map_err(|e| {
        ConfigError {
            message: format!("container {:?}: {}", c.name, e.0),
        }
    })?;
    if c.volume_devices.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(unsupported(format!(
            "container {:?}: volumeDevices",
            c.name
        )));
    }
    let pod_resources =
        crate::resources::PodResources::from_spec(spec, true).map_err(|e| ConfigError {
            message: e.to_string(),
        })?;
    let resources = pod_resources.container(&c.name).map(|cr| {
        crate::resources::container_resources(
            &pod_resources,
            cr,
            node.memory_capacity,
            node.cpu_cfs_quota,
        )
    });
    let command = c
        .command
        .iter()
        .flatten()
        .map(|s| expand(s, &env))
        .collect();
    let args = c.args.iter().flatten().map(|s| expand(s, &env)).collect();

    let mut container_labels = pod_labels(pod)
        .into_iter()
        .filter(|(k, _)| k.starts_with("io.kubernetes."))
        .collect::<HashMap<_, _>>();
    container_labels.insert(labels::CONTAINER_NAME.into(), c.name.clone());

    let mut annotations = HashMap::new();
    annotations.insert(labels::CONTAINER_HASH.into(), container_hash(c));
    annotations.insert(labels::CONTAINER_RESTART_COUNT.into(), attempt.to_string());
    annotations.insert(
        labels::TERMINATION_MESSAGE_PATH.into(),
        c.termination_message_path.clone().unwrap_or_default(),
    );
    annotations.insert(
        labels::TERMINATION_MESSAGE_POLICY.into(),
        c.termination_message_policy.clone().unwrap_or_default(),
    );
    annotations.insert(
        labels::POD_TERMINATION_GRACE_PERIOD.into(),
        spec.termination_grace_period_seconds
            .unwrap_or(30)
            .to_string(),
    );
    if let Some(ports) = c.ports.as_ref().filter(|p| !p.is_empty())
        && let Ok(json) = serde_json::to_string(ports)
    {
        annotations.insert(labels::CONTAINER_PORTS.into(), json);
    }

    let security_context = super::security::context::container_security(
        &pod.pod,
        c,
        &node.security,
        namespace_options(spec),
    )
    .map_err(|message| ConfigError { message })?;

    Ok(api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: c.name.clone(),
            attempt,
        }),
        image: Some(api::ImageSpec {
            image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: env
            .into_iter()
            .map(|(key, value)| api::KeyValue { key, value })
            .collect(),
        mounts,
        labels: container_labels,
        annotations,
        log_path: container_log_path(&c.name, attempt),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(api::LinuxContainerConfig {
            resources,
            security_context: Some(security_context),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::manifest;

    fn pod(spec: &str) -> DesiredPod {
        let y = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: ns1\n  labels: {{app: web}}\nspec:\n{spec}"
        );
        manifest::parse(Path::new("/m/web.yaml"), y.as_bytes(), "node1", "t").unwrap()
    }

    fn node() -> NodeContext {
        NodeContext {
            node_name: "node1".into(),
            node_ip: Some("198.18.0.1".into()),
            pod_logs_dir: "/var/log/pods".into(),
            pods_dir: "/var/lib/kubelet/pods".into(),
            dns: NodeDns::default(),
            memory_capacity: 8 << 30,
            cpu_cfs_quota: true,
            security: Default::default(),
        }
    }

    #[test]
    fn sandbox_carries_upstream_labels_log_dir_and_ports() {
        let p = pod(
            "  containers:\n  - name: c\n    image: i:1\n    ports:\n    - containerPort: 80\n      hostPort: 8080\n",
        );
        let s = sandbox_config(&p, 2, &node(), "/kubepods/besteffort/podx").unwrap();
        assert_eq!(
            s.linux.as_ref().unwrap().cgroup_parent,
            "/kubepods/besteffort/podx"
        );
        let m = s.metadata.as_ref().unwrap();
        assert_eq!(
            (m.name.as_str(), m.namespace.as_str(), m.attempt),
            ("web-node1", "ns1", 2)
        );
        assert_eq!(s.labels[labels::POD_UID], p.uid.0);
        assert_eq!(s.labels[labels::POD_NAME], "web-node1");
        assert_eq!(s.labels["app"], "web");
        assert_eq!(
            s.log_directory,
            format!("/var/log/pods/ns1_web-node1_{}", p.uid.0)
        );
        assert_eq!(s.port_mappings.len(), 1);
        assert_eq!(s.port_mappings[0].host_port, 8080);
        assert_eq!(s.hostname, "web-node1");
        assert_eq!(s.annotations["kubernetes.io/config.source"], "file");
        let ns = s
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, api::NamespaceMode::Pod as i32);
    }

    #[test]
    fn container_config_translates_the_spec() {
        let p = pod(
            "  containers:\n  - name: c\n    image: i:1\n    command: [sh, -c]\n    args: ['echo $(GREETING) $$(HOME) $(MISSING)']\n    env:\n    - {name: WHO, value: world}\n    - {name: GREETING, value: 'hello $(WHO)'}\n    - name: POD\n      valueFrom: {fieldRef: {fieldPath: metadata.name}}\n    securityContext: {runAsUser: 1000, allowPrivilegeEscalation: false}\n",
        );
        let c = container_config(&p, &p.spec().containers[0], 3, &node(), "198.18.0.5").unwrap();
        assert_eq!(c.command, ["sh", "-c"]);
        assert_eq!(c.args, ["echo hello world $(HOME) $(MISSING)"]);
        let env: Vec<_> = c
            .envs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("WHO", "world"),
                ("GREETING", "hello world"),
                ("POD", "web-node1")
            ]
        );
        assert_eq!(c.log_path, "c/3.log");
        assert_eq!(c.labels[labels::CONTAINER_NAME], "c");
        assert_eq!(c.labels[labels::POD_UID], p.uid.0);
        assert!(!c.labels.contains_key("app"));
        assert_eq!(c.annotations[labels::CONTAINER_RESTART_COUNT], "3");
        let sc = c.linux.unwrap().security_context.unwrap();
        assert_eq!(sc.run_as_user, Some(api::Int64Value { value: 1000 }));
        assert!(sc.no_new_privs);
    }

    #[test]
    fn unsupported_features_are_refused_by_name() {
        let p = pod(
            "  containers:\n  - name: c\n    image: i:1\n    volumeMounts:\n    - {name: data, mountPath: /data}\n  volumes:\n  - name: data\n    emptyDir: {medium: HugePages}\n",
        );
        let e = container_config(&p, &p.spec().containers[0], 0, &node(), "").unwrap_err();
        assert!(
            e.message
                .contains("volume \"data\": emptyDir with medium \"HugePages\""),
            "{e}"
        );
        let p = pod(
            "  containers:\n  - name: c\n    image: i:1\n    volumeMounts:\n    - {name: data, mountPath: /data}\n  volumes:\n  - name: data\n    emptyDir: {}\n",
        );
        let c = container_config(&p, &p.spec().containers[0], 0, &node(), "").unwrap();
        assert!(
            c.mounts[0]
                .host_path
                .ends_with("/volumes/kubernetes.io~empty-dir/data")
        );
        let p = pod(
            "  containers:\n  - name: c\n    image: i:1\n    env:\n    - name: S\n      valueFrom: {secretKeyRef: {name: s, key: k}}\n",
        );
        let e = container_config(&p, &p.spec().containers[0], 0, &node(), "").unwrap_err();
        assert!(e.message.contains("env \"S\""), "{e}");
    }

    #[test]
    fn expansion_rules() {
        let env = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("$(A)$(B)$$(A)$A$", &env), "1$(B)$(A)$A$");
        assert_eq!(expand("$(A", &env), "$(A");
    }
}
