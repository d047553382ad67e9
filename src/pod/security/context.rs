//! Pod and container security contexts: every field of `PodSecurityContext` and
//! `SecurityContext` (k8s-openapi v1_33) is mapped to the CRI, refused with a message naming
//! it, or ignored because it cannot weaken anything here ([`FIELD_AUDIT`]). The structs are
//! destructured without `..` below, so a field added by a k8s-openapi upgrade fails to
//! compile until it is classified. Also the legacy seccomp and AppArmor annotations, which
//! the API server turns into fields for API pods and which static pods would otherwise
//! carry unread. Pure.

use std::path::{Component, Path};

use k8s_openapi::api::core::v1::{
    AppArmorProfile, Container, Pod, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext,
};

use super::NodeSecurity;
use crate::cri::api;

/// How ironlet treats one security-context field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Treatment {
    /// Passed to the runtime (or enforced by the agent itself).
    Mapped,
    /// Refused: the pod fails, naming the field (some values only; see the note).
    Refused,
    /// Read and validated, then not acted on, because acting on it could not add
    /// protection on this node (the note says why).
    Ignored,
}

/// `(struct, field, treatment, note)`, the README's support table.
pub const FIELD_AUDIT: &[(&str, &str, Treatment, &str)] = &[
    (
        "PodSecurityContext",
        "appArmorProfile",
        Treatment::Refused,
        "anything but Unconfined is refused when the host has no AppArmor; mapped to the CRI when it has",
    ),
    (
        "PodSecurityContext",
        "fsGroup",
        Treatment::Mapped,
        "added to the supplemental groups of every container, as upstream; volume ownership is not changed (emptyDir is 0777)",
    ),
    (
        "PodSecurityContext",
        "fsGroupChangePolicy",
        Treatment::Ignored,
        "ironlet changes no volume ownership, so there is nothing to skip; values are validated",
    ),
    (
        "PodSecurityContext",
        "runAsGroup",
        Treatment::Mapped,
        "sandbox and containers",
    ),
    (
        "PodSecurityContext",
        "runAsNonRoot",
        Treatment::Mapped,
        "enforced by the agent against runAsUser or the image's user (ImageStatus)",
    ),
    (
        "PodSecurityContext",
        "runAsUser",
        Treatment::Mapped,
        "sandbox and containers",
    ),
    (
        "PodSecurityContext",
        "seLinuxChangePolicy",
        Treatment::Ignored,
        "only affects SELinux relabelling, and seLinuxOptions are refused; values are validated",
    ),
    (
        "PodSecurityContext",
        "seLinuxOptions",
        Treatment::Refused,
        "this node has no SELinux",
    ),
    (
        "PodSecurityContext",
        "seccompProfile",
        Treatment::Mapped,
        "RuntimeDefault, Unconfined, Localhost beneath <root-dir>/seccomp",
    ),
    (
        "PodSecurityContext",
        "supplementalGroups",
        Treatment::Mapped,
        "sandbox and containers",
    ),
    (
        "PodSecurityContext",
        "supplementalGroupsPolicy",
        Treatment::Mapped,
        "Merge always; Strict only when the runtime reports support, else refused",
    ),
    (
        "PodSecurityContext",
        "sysctls",
        Treatment::Mapped,
        "after the sysctl admission (safe set, allowedUnsafeSysctls, namespaced only)",
    ),
    (
        "PodSecurityContext",
        "windowsOptions",
        Treatment::Refused,
        "Windows identity and HostProcess cannot be given on a Linux node",
    ),
    (
        "SecurityContext",
        "allowPrivilegeEscalation",
        Treatment::Mapped,
        "false sets no_new_privs",
    ),
    (
        "SecurityContext",
        "appArmorProfile",
        Treatment::Refused,
        "as the pod field",
    ),
    (
        "SecurityContext",
        "capabilities",
        Treatment::Mapped,
        "add and drop",
    ),
    (
        "SecurityContext",
        "privileged",
        Treatment::Mapped,
        "the sandbox is made privileged too, as the CRI requires",
    ),
    (
        "SecurityContext",
        "procMount",
        Treatment::Refused,
        "Default is mapped; Unmasked needs hostUsers: false, which this runtime cannot give",
    ),
    (
        "SecurityContext",
        "readOnlyRootFilesystem",
        Treatment::Mapped,
        "",
    ),
    (
        "SecurityContext",
        "runAsGroup",
        Treatment::Mapped,
        "wins over the pod field",
    ),
    (
        "SecurityContext",
        "runAsNonRoot",
        Treatment::Mapped,
        "enforced by the agent; wins over the pod field",
    ),
    (
        "SecurityContext",
        "runAsUser",
        Treatment::Mapped,
        "wins over the pod field",
    ),
    (
        "SecurityContext",
        "seLinuxOptions",
        Treatment::Refused,
        "this node has no SELinux",
    ),
    (
        "SecurityContext",
        "seccompProfile",
        Treatment::Mapped,
        "wins over the pod field",
    ),
    (
        "SecurityContext",
        "windowsOptions",
        Treatment::Refused,
        "as the pod field",
    ),
];

/// A seccomp choice, from a field, a legacy annotation, or seccompDefault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seccomp {
    RuntimeDefault,
    Unconfined,
    /// A validated relative path beneath `<root-dir>/seccomp`.
    Localhost(String),
}

/// An AppArmor choice, from a field or the legacy annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppArmor {
    RuntimeDefault,
    Unconfined,
    Localhost(String),
}

pub const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
pub const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str =
    "container.seccomp.security.alpha.kubernetes.io/";
pub const APPARMOR_CONTAINER_ANNOTATION_PREFIX: &str =
    "container.apparmor.security.beta.kubernetes.io/";

/// Upstream's rule for a localhost profile: a relative path with no `..` element.
fn local_descending_path(field: &str, p: &str) -> Result<String, String> {
    let path = Path::new(p);
    let ok = !p.is_empty()
        && !p.contains('\0')
        && path.is_relative()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(p.to_string())
    } else {
        Err(format!(
            "{field}: {p:?} must be a relative path beneath the node's seccomp directory, without '..'"
        ))
    }
}

fn seccomp_from_field(field: &str, p: &SeccompProfile) -> Result<Seccomp, String> {
    match (p.type_.as_str(), p.localhost_profile.as_deref()) {
        ("RuntimeDefault", None) => Ok(Seccomp::RuntimeDefault),
        ("Unconfined", None) => Ok(Seccomp::Unconfined),
        ("Localhost", Some(lp)) => {
            local_descending_path(&format!("{field}.localhostProfile"), lp).map(Seccomp::Localhost)
        }
        ("Localhost", None) => Err(format!(
            "{field}.localhostProfile: required with type Localhost"
        )),
        ("RuntimeDefault" | "Unconfined", Some(_)) => Err(format!(
            "{field}.localhostProfile: only allowed with type Localhost"
        )),
        (other, _) => Err(format!(
            "{field}.type: unknown seccomp profile type {other:?} (RuntimeDefault, Unconfined or Localhost)"
        )),
    }
}

fn seccomp_from_annotation(key: &str, v: &str) -> Result<Seccomp, String> {
    match v {
        "runtime/default" | "docker/default" => Ok(Seccomp::RuntimeDefault),
        "unconfined" => Ok(Seccomp::Unconfined),
        _ => match v.strip_prefix("localhost/") {
            Some(p) => {
                local_descending_path(&format!("annotation {key}"), p).map(Seccomp::Localhost)
            }
            None => Err(format!(
                "annotation {key}: unknown seccomp profile {v:?} (runtime/default, unconfined or localhost/<path>)"
            )),
        },
    }
}

fn apparmor_from_field(field: &str, p: &AppArmorProfile) -> Result<AppArmor, String> {
    match (p.type_.as_str(), p.localhost_profile.as_deref()) {
        ("RuntimeDefault", None) => Ok(AppArmor::RuntimeDefault),
        ("Unconfined", None) => Ok(AppArmor::Unconfined),
        ("Localhost", Some(lp)) if !lp.trim().is_empty() => Ok(AppArmor::Localhost(lp.into())),
        ("Localhost", _) => Err(format!(
            "{field}.localhostProfile: required with type Localhost"
        )),
        ("RuntimeDefault" | "Unconfined", Some(_)) => Err(format!(
            "{field}.localhostProfile: only allowed with type Localhost"
        )),
        (other, _) => Err(format!(
            "{field}.type: unknown AppArmor profile type {other:?} (RuntimeDefault, Unconfined or Localhost)"
        )),
    }
}

fn apparmor_from_annotation(key: &str, v: &str) -> Result<AppArmor, String> {
    match v {
        "runtime/default" => Ok(AppArmor::RuntimeDefault),
        "unconfined" => Ok(AppArmor::Unconfined),
        _ => match v.strip_prefix("localhost/") {
            Some(p) if !p.is_empty() => Ok(AppArmor::Localhost(p.into())),
            _ => Err(format!(
                "annotation {key}: unknown AppArmor profile {v:?} (runtime/default, unconfined or localhost/<name>)"
            )),
        },
    }
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Field and annotation must agree when both are set (upstream validation).
fn agree<T: PartialEq + std::fmt::Debug>(
    field: Option<T>,
    annotation: Option<T>,
    what: &str,
) -> Result<Option<T>, String> {
    match (field, annotation) {
        (Some(f), Some(a)) if f != a => Err(format!(
            "{what}: the field ({f:?}) and the legacy annotation ({a:?}) disagree"
        )),
        (Some(f), _) => Ok(Some(f)),
        (None, a) => Ok(a),
    }
}

/// The pod-level seccomp choice from the field or the pod annotation (no default).
pub fn pod_seccomp(pod: &Pod) -> Result<Option<Seccomp>, String> {
    let field = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.seccomp_profile.as_ref())
        .map(|p| seccomp_from_field("spec.securityContext.seccompProfile", p))
        .transpose()?;
    let ann = annotation(pod, SECCOMP_POD_ANNOTATION)
        .map(|v| seccomp_from_annotation(SECCOMP_POD_ANNOTATION, v))
        .transpose()?;
    agree(field, ann, "spec.securityContext.seccompProfile")
}

/// The container's own seccomp choice (field or its annotation), without the pod's.
pub fn container_seccomp(pod: &Pod, c: &Container) -> Result<Option<Seccomp>, String> {
    let field = c
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
        .map(|p| {
            seccomp_from_field(
                &format!("container {:?}: securityContext.seccompProfile", c.name),
                p,
            )
        })
        .transpose()?;
    let key = format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}", c.name);
    let ann = annotation(pod, &key)
        .map(|v| seccomp_from_annotation(&key, v))
        .transpose()?;
    agree(
        field,
        ann,
        &format!("container {:?}: securityContext.seccompProfile", c.name),
    )
}

/// What the container runs with: its own choice, else the pod's, else RuntimeDefault when
/// seccompDefault is on, else Unconfined (upstream's order).
pub fn effective_seccomp(
    pod: &Pod,
    c: &Container,
    seccomp_default: bool,
) -> Result<Seccomp, String> {
    Ok(match (container_seccomp(pod, c)?, pod_seccomp(pod)?) {
        (Some(s), _) | (None, Some(s)) => s,
        (None, None) if seccomp_default => Seccomp::RuntimeDefault,
        (None, None) => Seccomp::Unconfined,
    })
}

/// The container's AppArmor choice: its field or annotation, else the pod field.
pub fn effective_apparmor(pod: &Pod, c: &Container) -> Result<Option<AppArmor>, String> {
    let what = format!("container {:?}: securityContext.appArmorProfile", c.name);
    let field = c
        .security_context
        .as_ref()
        .and_then(|s| s.app_armor_profile.as_ref())
        .map(|p| apparmor_from_field(&what, p))
        .transpose()?;
    let key = format!("{APPARMOR_CONTAINER_ANNOTATION_PREFIX}{}", c.name);
    let ann = annotation(pod, &key)
        .map(|v| apparmor_from_annotation(&key, v))
        .transpose()?;
    if let Some(own) = agree(field, ann, &what)? {
        return Ok(Some(own));
    }
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.app_armor_profile.as_ref())
        .map(|p| apparmor_from_field("spec.securityContext.appArmorProfile", p))
        .transpose()
}

/// Every container the pod declares, with the path prefix of its fields.
pub fn all_containers(spec: &PodSpec) -> impl Iterator<Item = (String, &Container)> {
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| (format!("spec.initContainers[{i}]"), c));
    let app = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.containers[{i}]"), c));
    init.chain(app)
}

/// Checks everything ironlet cannot honour, before anything is created for the pod.
/// The error names the field and says why; the caller fails the pod with it.
/// Why a pod cannot run here, sorted by the admission reason it gets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// An AppArmor profile the host cannot enforce (upstream's reason `AppArmor`).
    #[error("{0}")]
    AppArmor(String),
    /// Any other field the node cannot honour, or an invalid value.
    #[error("{0}")]
    Unsupported(String),
}

impl From<String> for Refusal {
    fn from(s: String) -> Self {
        Refusal::Unsupported(s)
    }
}

pub fn refuse_unsupported(pod: &Pod, node: &NodeSecurity) -> Result<(), Refusal> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    if spec.host_users == Some(false) {
        let why = if node.runtime_user_namespaces {
            "ironlet does not create user-namespaced sandboxes yet".to_string()
        } else {
            format!(
                "the runtime {} does not support user namespaces (no runtime handler reports the user_namespaces feature)",
                node.runtime
            )
        };
        return Err(
            format!("spec.hostUsers: false (user namespaces) cannot be honoured: {why}").into(),
        );
    }
    if let Some(psc) = &spec.security_context {
        pod_context(psc, node)?;
    }
    pod_seccomp(pod)?;
    for (path, c) in all_containers(spec) {
        if let Some(sc) = &c.security_context {
            container_context(&path, sc)?;
        }
        container_seccomp(pod, c)?;
        if let Some(a) = effective_apparmor(pod, c)? {
            apparmor_supported(&path, &a, node)?;
        }
    }
    // Legacy annotations naming containers the pod does not have are typos, not choices.
    for key in pod.metadata.annotations.iter().flatten().map(|(k, _)| k) {
        for prefix in [
            SECCOMP_CONTAINER_ANNOTATION_PREFIX,
            APPARMOR_CONTAINER_ANNOTATION_PREFIX,
        ] {
            if let Some(name) = key.strip_prefix(prefix)
                && !all_containers(spec).any(|(_, c)| c.name == name)
            {
                return Err(format!("annotation {key}: the pod has no container {name:?}").into());
            }
        }
    }
    Ok(())
}

fn apparmor_supported(path: &str, a: &AppArmor, node: &NodeSecurity) -> Result<(), Refusal> {
    if *a == AppArmor::Unconfined || node.host_apparmor {
        return Ok(());
    }
    Err(Refusal::AppArmor(format!(
        "{path}: AppArmor profile {a:?} (securityContext.appArmorProfile or its annotation) cannot be enforced: AppArmor is not enabled on this host"
    )))
}

fn pod_context(psc: &PodSecurityContext, node: &NodeSecurity) -> Result<(), String> {
    let PodSecurityContext {
        app_armor_profile: _, // per container, in effective_apparmor
        fs_group: _,
        fs_group_change_policy,
        run_as_group: _,
        run_as_non_root: _,
        run_as_user: _,
        se_linux_change_policy,
        se_linux_options,
        seccomp_profile: _, // pod_seccomp
        supplemental_groups: _,
        supplemental_groups_policy,
        sysctls: _, // sysctl admission
        windows_options,
    } = psc;
    if let Some(p) = fs_group_change_policy.as_deref()
        && !matches!(p, "OnRootMismatch" | "Always")
    {
        return Err(format!(
            "spec.securityContext.fsGroupChangePolicy: unknown value {p:?} (OnRootMismatch or Always)"
        ));
    }
    if let Some(p) = se_linux_change_policy.as_deref()
        && !matches!(p, "MountOption" | "Recursive")
    {
        return Err(format!(
            "spec.securityContext.seLinuxChangePolicy: unknown value {p:?} (MountOption or Recursive)"
        ));
    }
    if se_linux_options.is_some() {
        return Err(
            "spec.securityContext.seLinuxOptions: cannot be honoured: this node has no SELinux"
                .into(),
        );
    }
    match supplemental_groups_policy.as_deref() {
        None | Some("Merge") => {}
        Some("Strict") if node.runtime_supplemental_groups_policy => {}
        Some("Strict") => {
            return Err(format!(
                "spec.securityContext.supplementalGroupsPolicy: Strict cannot be honoured: the runtime {} does not support it",
                node.runtime
            ));
        }
        Some(other) => {
            return Err(format!(
                "spec.securityContext.supplementalGroupsPolicy: unknown value {other:?} (Merge or Strict)"
            ));
        }
    }
    if windows_options.is_some() {
        return Err(
            "spec.securityContext.windowsOptions: cannot be honoured on a Linux node".into(),
        );
    }
    Ok(())
}

fn container_context(path: &str, sc: &SecurityContext) -> Result<(), String> {
    let SecurityContext {
        allow_privilege_escalation,
        app_armor_profile: _, // effective_apparmor
        capabilities,
        privileged,
        proc_mount,
        read_only_root_filesystem: _,
        run_as_group: _,
        run_as_non_root: _,
        run_as_user: _,
        se_linux_options,
        seccomp_profile: _, // container_seccomp
        windows_options,
    } = sc;
    if *allow_privilege_escalation == Some(false) {
        if *privileged == Some(true) {
            return Err(format!(
                "{path}.securityContext: cannot set allowPrivilegeEscalation to false and privileged to true"
            ));
        }
        if capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .is_some_and(|a| a.iter().any(|c| c == "SYS_ADMIN" || c == "CAP_SYS_ADMIN"))
        {
            return Err(format!(
                "{path}.securityContext: cannot set allowPrivilegeEscalation to false and capabilities.add CAP_SYS_ADMIN"
            ));
        }
    }
    match proc_mount.as_deref() {
        None | Some("Default") => {}
        Some("Unmasked") => {
            return Err(format!(
                "{path}.securityContext.procMount: Unmasked cannot be honoured: it needs hostUsers: false, which this node cannot give"
            ));
        }
        Some(other) => {
            return Err(format!(
                "{path}.securityContext.procMount: unknown value {other:?} (Default or Unmasked)"
            ));
        }
    }
    if se_linux_options.is_some() {
        return Err(format!(
            "{path}.securityContext.seLinuxOptions: cannot be honoured: this node has no SELinux"
        ));
    }
    if windows_options.is_some() {
        return Err(format!(
            "{path}.securityContext.windowsOptions: cannot be honoured on a Linux node"
        ));
    }
    Ok(())
}

fn seccomp_to_cri(s: &Seccomp, root: &Path) -> api::SecurityProfile {
    match s {
        Seccomp::RuntimeDefault => api::SecurityProfile {
            profile_type: api::security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        },
        Seccomp::Unconfined => api::SecurityProfile {
            profile_type: api::security_profile::ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        },
        Seccomp::Localhost(p) => api::SecurityProfile {
            profile_type: api::security_profile::ProfileType::Localhost as i32,
            localhost_ref: root.join(p).to_string_lossy().into_owned(),
        },
    }
}

fn apparmor_to_cri(a: &AppArmor) -> api::SecurityProfile {
    match a {
        AppArmor::RuntimeDefault => api::SecurityProfile {
            profile_type: api::security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        },
        AppArmor::Unconfined => api::SecurityProfile {
            profile_type: api::security_profile::ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        },
        AppArmor::Localhost(p) => api::SecurityProfile {
            profile_type: api::security_profile::ProfileType::Localhost as i32,
            localhost_ref: p.clone(),
        },
    }
}

/// Supplemental groups of the pod: supplementalGroups then fsGroup, as upstream.
fn supplemental_groups(psc: Option<&PodSecurityContext>) -> Vec<i64> {
    let mut g: Vec<i64> = psc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default();
    if let Some(fs) = psc.and_then(|s| s.fs_group)
        && !g.contains(&fs)
    {
        g.push(fs);
    }
    g
}

fn groups_policy(psc: Option<&PodSecurityContext>) -> i32 {
    match psc.and_then(|s| s.supplemental_groups_policy.as_deref()) {
        Some("Strict") => api::SupplementalGroupsPolicy::Strict as i32,
        _ => api::SupplementalGroupsPolicy::Merge as i32,
    }
}

/// The sandbox's security context (namespaces are the caller's).
pub fn sandbox_security(
    pod: &Pod,
    node: &NodeSecurity,
    namespace_options: api::NamespaceOption,
) -> Result<api::LinuxSandboxSecurityContext, String> {
    let spec = pod.spec.as_ref();
    let psc = spec.and_then(|s| s.security_context.as_ref());
    let privileged = spec.is_some_and(|s| {
        all_containers(s).any(|(_, c)| {
            c.security_context
                .as_ref()
                .and_then(|sc| sc.privileged)
                .unwrap_or(false)
        })
    });
    let seccomp = match pod_seccomp(pod)? {
        Some(s) => s,
        None if node.seccomp_default => Seccomp::RuntimeDefault,
        None => Seccomp::Unconfined,
    };
    Ok(api::LinuxSandboxSecurityContext {
        namespace_options: Some(namespace_options),
        run_as_user: psc
            .and_then(|s| s.run_as_user)
            .map(|value| api::Int64Value { value }),
        run_as_group: psc
            .and_then(|s| s.run_as_group)
            .map(|value| api::Int64Value { value }),
        supplemental_groups: supplemental_groups(psc),
        supplemental_groups_policy: groups_policy(psc),
        privileged,
        seccomp: Some(seccomp_to_cri(&seccomp, &node.seccomp_root)),
        ..Default::default()
    })
}

/// A container's security context for the CRI.
pub fn container_security(
    pod: &Pod,
    c: &Container,
    node: &NodeSecurity,
    namespace_options: api::NamespaceOption,
) -> Result<api::LinuxContainerSecurityContext, String> {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let capabilities = sc
        .and_then(|s| s.capabilities.as_ref())
        .map(|caps| api::Capability {
            add_capabilities: caps.add.clone().unwrap_or_default(),
            drop_capabilities: caps.drop.clone().unwrap_or_default(),
            ..Default::default()
        });
    let seccomp = effective_seccomp(pod, c, node.seccomp_default)?;
    let apparmor = match effective_apparmor(pod, c)? {
        Some(a) if node.host_apparmor => Some(apparmor_to_cri(&a)),
        Some(AppArmor::Unconfined) | None => None,
        Some(a) => {
            return Err(format!(
                "container {:?}: AppArmor profile {a:?} cannot be enforced: AppArmor is not enabled on this host",
                c.name
            ));
        }
    };
    Ok(api::LinuxContainerSecurityContext {
        capabilities,
        privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
        namespace_options: Some(namespace_options),
        run_as_user: sc
            .and_then(|s| s.run_as_user)
            .or(psc.and_then(|s| s.run_as_user))
            .map(|value| api::Int64Value { value }),
        run_as_group: sc
            .and_then(|s| s.run_as_group)
            .or(psc.and_then(|s| s.run_as_group))
            .map(|value| api::Int64Value { value }),
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        supplemental_groups: supplemental_groups(psc),
        supplemental_groups_policy: groups_policy(psc),
        no_new_privs: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        seccomp: Some(seccomp_to_cri(&seccomp, &node.seccomp_root)),
        apparmor,
        ..Default::default()
    })
}

/// The effective runAsNonRoot and runAsUser of a container (its own win over the pod's).
fn non_root_and_user(pod: &Pod, c: &Container) -> (bool, Option<i64>) {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or(psc.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    let user = sc
        .and_then(|s| s.run_as_user)
        .or(psc.and_then(|s| s.run_as_user));
    (non_root, user)
}

/// Whether runAsNonRoot applies to the container (its own setting, else the pod's).
pub fn requires_non_root(pod: &Pod, c: &Container) -> bool {
    non_root_and_user(pod, c).0
}

/// Whether the image's user must be known before the container can be created.
pub fn needs_image_user(pod: &Pod, c: &Container) -> bool {
    let (non_root, user) = non_root_and_user(pod, c);
    non_root && user.is_none()
}

/// Upstream's `verifyRunAsNonRoot`. `uid`/`username` are the image's user from ImageStatus;
/// an image with neither runs as root. The messages are upstream's, word for word; the
/// caller reports them as CreateContainerConfigError.
pub fn verify_run_as_non_root(
    pod: &Pod,
    pod_display: &str,
    c: &Container,
    uid: Option<i64>,
    username: &str,
) -> Result<(), String> {
    let (non_root, user) = non_root_and_user(pod, c);
    if !non_root {
        return Ok(());
    }
    if let Some(u) = user {
        if u == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: {pod_display:?}, container: {})",
                c.name
            ));
        }
        return Ok(());
    }
    let uid = match (uid, username) {
        (Some(u), _) => Some(u),
        (None, "") => Some(0),
        (None, _) => None,
    };
    match uid {
        Some(0) => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod_display:?}, container: {})",
            c.name
        )),
        None => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({username}), cannot verify user is non-root (pod: {pod_display:?}, container: {})",
            c.name
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn pod(yaml: &str) -> Pod {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn node() -> NodeSecurity {
        NodeSecurity {
            seccomp_root: "/var/lib/kubelet/seccomp".into(),
            runtime: "containerd 1.6.20".into(),
            seccomp_default: false,
            ..NodeSecurity::default()
        }
    }

    const HEAD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n";

    fn one(spec_and_meta: &str) -> Pod {
        pod(&format!("{HEAD}{spec_and_meta}"))
    }

    fn keys(v: serde_json::Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    /// Every field of both structs is in the table, and nothing else: a k8s-openapi upgrade
    /// with a new field fails here (and in the destructuring above).
    #[test]
    fn every_security_context_field_is_classified() {
        let full_sc = SecurityContext {
            allow_privilege_escalation: Some(true),
            app_armor_profile: Some(Default::default()),
            capabilities: Some(Default::default()),
            privileged: Some(true),
            proc_mount: Some(String::new()),
            read_only_root_filesystem: Some(true),
            run_as_group: Some(1),
            run_as_non_root: Some(true),
            run_as_user: Some(1),
            se_linux_options: Some(Default::default()),
            seccomp_profile: Some(Default::default()),
            windows_options: Some(Default::default()),
        };
        let full_psc = PodSecurityContext {
            app_armor_profile: Some(Default::default()),
            fs_group: Some(1),
            fs_group_change_policy: Some(String::new()),
            run_as_group: Some(1),
            run_as_non_root: Some(true),
            run_as_user: Some(1),
            se_linux_change_policy: Some(String::new()),
            se_linux_options: Some(Default::default()),
            seccomp_profile: Some(Default::default()),
            supplemental_groups: Some(vec![1]),
            supplemental_groups_policy: Some(String::new()),
            sysctls: Some(vec![]),
            windows_options: Some(Default::default()),
        };
        for (name, json) in [
            ("SecurityContext", serde_json::to_value(&full_sc).unwrap()),
            (
                "PodSecurityContext",
                serde_json::to_value(&full_psc).unwrap(),
            ),
        ] {
            let table: BTreeSet<String> = FIELD_AUDIT
                .iter()
                .filter(|(s, ..)| *s == name)
                .map(|(_, f, ..)| f.to_string())
                .collect();
            assert_eq!(keys(json), table, "{name}");
        }
        // Every row says why, except plain mappings.
        for (s, f, t, note) in FIELD_AUDIT {
            assert!(
                *t == Treatment::Mapped || !note.is_empty(),
                "{s}.{f} needs a note"
            );
        }
    }

    #[test]
    fn seccomp_precedence_and_default() {
        let p = one(
            "spec:\n  securityContext: {seccompProfile: {type: Unconfined}}\n  containers:\n  - {name: a, image: i}\n  - name: b\n    image: i\n    securityContext: {seccompProfile: {type: RuntimeDefault}}\n",
        );
        let c = &p.spec.as_ref().unwrap().containers;
        assert_eq!(effective_seccomp(&p, &c[0], true), Ok(Seccomp::Unconfined));
        assert_eq!(
            effective_seccomp(&p, &c[1], false),
            Ok(Seccomp::RuntimeDefault)
        );
        let p = one("spec:\n  containers:\n  - {name: a, image: i}\n");
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(effective_seccomp(&p, c, true), Ok(Seccomp::RuntimeDefault));
        assert_eq!(effective_seccomp(&p, c, false), Ok(Seccomp::Unconfined));
        let sc = container_security(&p, c, &node(), Default::default()).unwrap();
        assert_eq!(
            sc.seccomp.unwrap().profile_type,
            api::security_profile::ProfileType::Unconfined as i32
        );
        let n = NodeSecurity {
            seccomp_default: true,
            ..node()
        };
        let sc = container_security(&p, c, &n, Default::default()).unwrap();
        assert_eq!(
            sc.seccomp.unwrap().profile_type,
            api::security_profile::ProfileType::RuntimeDefault as i32
        );
    }

    #[test]
    fn localhost_profiles_stay_beneath_the_seccomp_root() {
        let p = one(
            "spec:\n  containers:\n  - name: a\n    image: i\n    securityContext: {seccompProfile: {type: Localhost, localhostProfile: profiles/audit.json}}\n",
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        let sc = container_security(&p, c, &node(), Default::default()).unwrap();
        assert_eq!(
            sc.seccomp.unwrap().localhost_ref,
            "/var/lib/kubelet/seccomp/profiles/audit.json"
        );
        for bad in ["../x.json", "/etc/x.json", "a/../../x", ""] {
            let p = one(&format!(
                "spec:\n  containers:\n  - name: a\n    image: i\n    securityContext: {{seccompProfile: {{type: Localhost, localhostProfile: {bad:?}}}}}\n"
            ));
            let e = refuse_unsupported(&p, &node()).unwrap_err().to_string();
            assert!(
                e.contains("securityContext.seccompProfile.localhostProfile"),
                "{bad}: {e}"
            );
        }
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {seccomp.security.alpha.kubernetes.io/pod: localhost/../../etc/x}\nspec:\n  containers:\n  - {name: a, image: i}\n",
        );
        let e = refuse_unsupported(&p, &node()).unwrap_err().to_string();
        assert!(e.contains(SECCOMP_POD_ANNOTATION), "{e}");
    }

    #[test]
    fn legacy_annotations_become_choices_and_must_agree_with_fields() {
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    seccomp.security.alpha.kubernetes.io/pod: runtime/default\n    container.seccomp.security.alpha.kubernetes.io/b: unconfined\nspec:\n  containers:\n  - {name: a, image: i}\n  - {name: b, image: i}\n",
        );
        let c = &p.spec.as_ref().unwrap().containers;
        assert_eq!(
            effective_seccomp(&p, &c[0], false),
            Ok(Seccomp::RuntimeDefault)
        );
        assert_eq!(effective_seccomp(&p, &c[1], true), Ok(Seccomp::Unconfined));
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    seccomp.security.alpha.kubernetes.io/pod: unconfined\nspec:\n  securityContext: {seccompProfile: {type: RuntimeDefault}}\n  containers:\n  - {name: a, image: i}\n",
        );
        assert!(
            refuse_unsupported(&p, &node())
                .unwrap_err()
                .to_string()
                .contains("disagree")
        );
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    container.apparmor.security.beta.kubernetes.io/a: localhost/my-profile\nspec:\n  containers:\n  - {name: a, image: i}\n",
        );
        let e = refuse_unsupported(&p, &node()).unwrap_err().to_string();
        assert!(
            e.contains("AppArmor") && e.contains("not enabled on this host"),
            "{e}"
        );
        let with = NodeSecurity {
            host_apparmor: true,
            ..node()
        };
        assert_eq!(refuse_unsupported(&p, &with), Ok(()));
        let sc = container_security(
            &p,
            &p.spec.as_ref().unwrap().containers[0],
            &with,
            Default::default(),
        )
        .unwrap();
        assert_eq!(sc.apparmor.unwrap().localhost_ref, "my-profile");
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    container.apparmor.security.beta.kubernetes.io/typo: unconfined\nspec:\n  containers:\n  - {name: a, image: i}\n",
        );
        assert!(
            refuse_unsupported(&p, &node())
                .unwrap_err()
                .to_string()
                .contains("no container \"typo\"")
        );
    }

    #[test]
    fn unsupported_fields_are_refused_by_name() {
        let cases = [
            (
                "  hostUsers: false\n",
                "",
                "spec.hostUsers: false",
                "containerd 1.6.20",
            ),
            (
                "  securityContext: {seLinuxOptions: {type: spc_t}}\n",
                "",
                "spec.securityContext.seLinuxOptions",
                "no SELinux",
            ),
            (
                "",
                "    securityContext: {seLinuxOptions: {level: 's0:c1'}}\n",
                "spec.containers[0].securityContext.seLinuxOptions",
                "no SELinux",
            ),
            (
                "",
                "    securityContext: {appArmorProfile: {type: Localhost, localhostProfile: x}}\n",
                "appArmorProfile",
                "AppArmor is not enabled",
            ),
            (
                "  securityContext: {appArmorProfile: {type: RuntimeDefault}}\n",
                "",
                "appArmorProfile",
                "AppArmor is not enabled",
            ),
            (
                "",
                "    securityContext: {procMount: Unmasked}\n",
                "spec.containers[0].securityContext.procMount",
                "hostUsers: false",
            ),
            (
                "",
                "    securityContext: {windowsOptions: {hostProcess: true}}\n",
                "spec.containers[0].securityContext.windowsOptions",
                "Linux",
            ),
            (
                "  securityContext: {supplementalGroupsPolicy: Strict}\n",
                "",
                "supplementalGroupsPolicy",
                "containerd 1.6.20",
            ),
            (
                "",
                "    securityContext: {privileged: true, allowPrivilegeEscalation: false}\n",
                "allowPrivilegeEscalation to false and privileged",
                "",
            ),
        ];
        for (pod_part, container_part, field, why) in cases {
            let p = one(&format!(
                "spec:\n{pod_part}  containers:\n  - name: a\n    image: i\n{container_part}"
            ));
            let e = refuse_unsupported(&p, &node()).unwrap_err().to_string();
            assert!(e.contains(field) && e.contains(why), "{field}: {e}");
        }
        // Good cases pass.
        let p = one(
            "spec:\n  hostUsers: true\n  securityContext: {runAsUser: 1000, fsGroup: 2000, supplementalGroupsPolicy: Merge, appArmorProfile: {type: Unconfined}}\n  containers:\n  - name: a\n    image: i\n    securityContext: {procMount: Default, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}\n",
        );
        assert_eq!(refuse_unsupported(&p, &node()), Ok(()));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let sc = container_security(&p, c, &node(), Default::default()).unwrap();
        assert!(sc.no_new_privs && sc.readonly_rootfs);
        assert_eq!(sc.supplemental_groups, [2000]);
        assert_eq!(sc.run_as_user, Some(api::Int64Value { value: 1000 }));
        assert_eq!(sc.capabilities.unwrap().drop_capabilities, ["ALL"]);
        assert!(sc.apparmor.is_none());
    }

    #[test]
    fn a_privileged_container_makes_the_sandbox_privileged() {
        let p = one(
            "spec:\n  initContainers:\n  - name: i\n    image: i\n    securityContext: {privileged: true}\n  containers:\n  - {name: a, image: i}\n",
        );
        let s = sandbox_security(&p, &node(), Default::default()).unwrap();
        assert!(s.privileged);
        let p = one("spec:\n  containers:\n  - {name: a, image: i}\n");
        assert!(
            !sandbox_security(&p, &node(), Default::default())
                .unwrap()
                .privileged
        );
    }

    #[test]
    fn run_as_non_root_as_upstream() {
        let p = one(
            "spec:\n  securityContext: {runAsNonRoot: true}\n  containers:\n  - {name: a, image: i}\n  - name: b\n    image: i\n    securityContext: {runAsUser: 0}\n  - name: c\n    image: i\n    securityContext: {runAsUser: 1000}\n  - name: d\n    image: i\n    securityContext: {runAsNonRoot: false}\n",
        );
        let c = &p.spec.as_ref().unwrap().containers;
        let d = "p_default(u)";
        assert!(needs_image_user(&p, &c[0]));
        assert!(requires_non_root(&p, &c[1]) && !needs_image_user(&p, &c[1]));
        assert!(!requires_non_root(&p, &c[3]));
        assert!(!needs_image_user(&p, &c[2]));
        assert_eq!(
            verify_run_as_non_root(&p, d, &c[0], None, ""),
            Err("container has runAsNonRoot and image will run as root (pod: \"p_default(u)\", container: a)".into())
        );
        assert!(verify_run_as_non_root(&p, d, &c[0], Some(0), "").is_err());
        assert_eq!(verify_run_as_non_root(&p, d, &c[0], Some(1000), ""), Ok(()));
        assert_eq!(
            verify_run_as_non_root(&p, d, &c[0], None, "app"),
            Err("container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root (pod: \"p_default(u)\", container: a)".into())
        );
        assert_eq!(
            verify_run_as_non_root(&p, d, &c[1], Some(1000), ""),
            Err("container's runAsUser breaks non-root policy (pod: \"p_default(u)\", container: b)".into())
        );
        assert_eq!(verify_run_as_non_root(&p, d, &c[2], None, ""), Ok(()));
        assert_eq!(verify_run_as_non_root(&p, d, &c[3], Some(0), ""), Ok(()));
    }
}
