//! The workload boundary: what a pod may ask of the node. Owns the security-context mapping
//! and refusals (`context`), pod sysctls (`sysctl`), the node-side Pod Security Standards
//! (`pss`) and the policy that picks their level (`policy`). Pure; the manager calls
//! [`admit`] before anything is created for a pod, `cri_config` calls the mappings, and the
//! worker checks runAsNonRoot once it knows the image's user. Must not do I/O beyond
//! [`host_apparmor_enabled`], which runs once before confinement.

pub mod context;
pub mod policy;
pub mod pss;
pub mod sysctl;

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;

use crate::resources::Rejection;

pub use policy::PodSecurityPolicy;
pub use sysctl::SysctlPattern;

/// What the node contributes to every pod's security decisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSecurity {
    /// seccompDefault: RuntimeDefault for containers that choose no profile.
    pub seccomp_default: bool,
    /// `<root-dir>/seccomp`: where Localhost profiles live.
    pub seccomp_root: PathBuf,
    /// allowedUnsafeSysctls, validated at config load.
    pub allowed_unsafe_sysctls: Vec<SysctlPattern>,
    pub pod_security: PodSecurityPolicy,
    /// The host kernel enforces AppArmor (and so can the runtime).
    pub host_apparmor: bool,
    /// The runtime's name and version, for messages ("containerd 1.6.20").
    pub runtime: String,
    /// A runtime handler reports the user_namespaces feature.
    pub runtime_user_namespaces: bool,
    /// The runtime reports the supplemental_groups_policy feature.
    pub runtime_supplemental_groups_policy: bool,
}

impl Default for NodeSecurity {
    fn default() -> Self {
        NodeSecurity {
            seccomp_default: true,
            seccomp_root: PathBuf::from("/var/lib/kubelet/seccomp"),
            allowed_unsafe_sysctls: Vec::new(),
            pod_security: PodSecurityPolicy::builtin(),
            host_apparmor: false,
            runtime: String::from("the runtime"),
            runtime_user_namespaces: false,
            runtime_supplemental_groups_policy: false,
        }
    }
}

/// Whether the kernel has AppArmor enabled. Read once, before self-confinement (landlock
/// does not grant /sys/module afterwards).
pub fn host_apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// Node-side admission of a pod's security, in upstream's order of concerns: fields the
/// node cannot honour, then sysctls, then Pod Security. The first failure decides.
pub fn admit(pod: &Pod, source: policy::Source, node: &NodeSecurity) -> Result<(), Rejection> {
    context::refuse_unsupported(pod, node).map_err(|r| match r {
        // Upstream's AppArmor admission reason.
        context::Refusal::AppArmor(message) => Rejection {
            reason: "AppArmor",
            message,
        },
        context::Refusal::Unsupported(message) => Rejection {
            reason: "UnsupportedPodSpec",
            message,
        },
    })?;
    admit_sysctls(pod, node)?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let level = node.pod_security.level(source, namespace);
    let violations = pss::evaluate(level, pod);
    if !violations.is_empty() {
        return Err(Rejection {
            reason: pss::REASON,
            message: format!(
                "{} (level {} for {} in namespace {namespace:?})",
                pss::message(level, &violations),
                level.as_str(),
                source.as_str(),
            ),
        });
    }
    Ok(())
}

fn admit_sysctls(pod: &Pod, node: &NodeSecurity) -> Result<(), Rejection> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    let host_network = spec.host_network.unwrap_or(false);
    let host_ipc = spec.host_ipc.unwrap_or(false);
    for s in spec
        .security_context
        .as_ref()
        .and_then(|s| s.sysctls.as_ref())
        .into_iter()
        .flatten()
    {
        sysctl::check(
            &s.name,
            &node.allowed_unsafe_sysctls,
            host_network,
            host_ipc,
        )
        .map_err(|e| Rejection {
            reason: sysctl::FORBIDDEN_REASON,
            message: format!("forbidden sysctl: {e}"),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, spec: &str) -> Pod {
        serde_saphyr::from_str(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: {ns}\nspec:\n{spec}"
        ))
        .unwrap()
    }

    #[test]
    fn admission_order_and_reasons() {
        let node = NodeSecurity::default();
        let ok = pod("default", "  containers:\n  - {name: a, image: i}\n");
        assert_eq!(admit(&ok, policy::Source::File, &node), Ok(()));

        let p = pod(
            "default",
            "  securityContext: {sysctls: [{name: kernel.msgmax, value: '65536'}]}\n  containers:\n  - {name: a, image: i}\n",
        );
        let r = admit(&p, policy::Source::File, &node).unwrap_err();
        assert_eq!(r.reason, "SysctlForbidden");
        assert_eq!(
            r.message,
            "forbidden sysctl: \"kernel.msgmax\" not allowlisted"
        );
        let allowing = NodeSecurity {
            allowed_unsafe_sysctls: vec![SysctlPattern::parse("kernel.msg*").unwrap()],
            ..NodeSecurity::default()
        };
        // Allowed on the node, still not baseline: Pod Security names it.
        let r = admit(&p, policy::Source::File, &allowing).unwrap_err();
        assert_eq!(r.reason, "PodSecurity");
        assert!(
            r.message
                .contains("sysctls (forbidden sysctls \"kernel.msgmax\")"),
            "{}",
            r.message
        );

        let p = pod(
            "default",
            "  containers:\n  - name: a\n    image: i\n    securityContext: {privileged: true}\n",
        );
        let r = admit(&p, policy::Source::Api, &node).unwrap_err();
        assert_eq!(r.reason, "PodSecurity");
        assert!(
            r.message.contains("privileged (container \"a\""),
            "{}",
            r.message
        );
        assert!(
            r.message
                .contains("level baseline for API pods in namespace \"default\""),
            "{}",
            r.message
        );
        // kube-system API pods are privileged by the compiled-in policy; static ones are not.
        let p = pod(
            "kube-system",
            "  containers:\n  - name: a\n    image: i\n    securityContext: {privileged: true}\n",
        );
        assert_eq!(admit(&p, policy::Source::Api, &node), Ok(()));
        assert!(admit(&p, policy::Source::File, &node).is_err());

        let p = pod(
            "default",
            "  hostUsers: false\n  containers:\n  - {name: a, image: i}\n",
        );
        assert_eq!(
            admit(&p, policy::Source::File, &node).unwrap_err().reason,
            "UnsupportedPodSpec"
        );
        let p = pod(
            "default",
            "  containers:\n  - name: a\n    image: i\n    securityContext: {appArmorProfile: {type: RuntimeDefault}}\n",
        );
        assert_eq!(
            admit(&p, policy::Source::File, &node).unwrap_err().reason,
            "AppArmor"
        );
    }
}
