//! The configuration of the workload boundary: `seccompDefault` and `allowedUnsafeSysctls`
//! (KubeletConfiguration fields) and the node's Pod Security policy
//! (`--pod-security-policy-file`, ironlet's own flag). Validated here, at load: a
//! malformed or node-level sysctl pattern, or a policy file that does not parse, stops
//! startup naming the field or file.

use std::path::{Path, PathBuf};

use super::ConfigError;
use super::error::Source;
use super::file::KubeletConfiguration;
use crate::pod::security::{PodSecurityPolicy, SysctlPattern};

/// What pods may ask of this node, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Default **true** (upstream: false): every container that does not ask for
    /// Unconfined runs with the runtime's default seccomp profile.
    pub seccomp_default: bool,
    pub allowed_unsafe_sysctls: Vec<SysctlPattern>,
    pub pod_security: PodSecurityPolicy,
    pub pod_security_policy_file: Option<PathBuf>,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            seccomp_default: true,
            allowed_unsafe_sysctls: Vec::new(),
            pod_security: PodSecurityPolicy::builtin(),
            pod_security_policy_file: None,
        }
    }
}

pub(crate) fn build(
    src: Source,
    raw: &KubeletConfiguration,
    policy_file: Option<&Path>,
) -> Result<Workload, ConfigError> {
    let allowed_unsafe_sysctls = raw
        .allowed_unsafe_sysctls
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, s)| {
            SysctlPattern::parse(s)
                .map_err(|e| src.invalid(format!("allowedUnsafeSysctls[{i}]"), e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let pod_security = match policy_file {
        None => PodSecurityPolicy::builtin(),
        Some(p) => {
            let field = "--pod-security-policy-file";
            if !p.is_absolute() {
                return Err(Source::FLAGS.invalid(field, format!("{p:?} must be an absolute path")));
            }
            let bytes = std::fs::read(p)
                .map_err(|e| Source::FLAGS.invalid(field, format!("{}: {e}", p.display())))?;
            PodSecurityPolicy::parse(&bytes)
                .map_err(|e| Source::FLAGS.invalid(field, format!("{}: {e}", p.display())))?
        }
    };
    Ok(Workload {
        seccomp_default: raw.seccomp_default.unwrap_or(true),
        allowed_unsafe_sysctls,
        pod_security,
        pod_security_policy_file: policy_file.map(Path::to_path_buf),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(yaml: &str) -> KubeletConfiguration {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn seccomp_default_is_on_unless_turned_off() {
        let w = build(Source::FLAGS, &KubeletConfiguration::default(), None).unwrap();
        assert_eq!(w, Workload::default());
        assert!(w.seccomp_default);
        let w = build(Source::FLAGS, &raw("seccompDefault: false\n"), None).unwrap();
        assert!(!w.seccomp_default);
    }

    #[test]
    fn unsafe_sysctl_patterns_are_validated_at_load() {
        let w = build(
            Source::FLAGS,
            &raw("allowedUnsafeSysctls: ['kernel.msg*', net.core.somaxconn]\n"),
            None,
        )
        .unwrap();
        assert_eq!(w.allowed_unsafe_sysctls.len(), 2);
        for (bad, why) in [
            ("kernel.panic", "not known to be namespaced"),
            ("vm.*", "not known to be namespaced"),
            ("net.*.x", "not a sysctl name"),
        ] {
            let e = build(
                Source::FLAGS,
                &raw(&format!(
                    "allowedUnsafeSysctls: [net.core.somaxconn, {bad:?}]\n"
                )),
                None,
            )
            .unwrap_err();
            assert_eq!(e.field(), Some("allowedUnsafeSysctls[1]"), "{e}");
            assert!(e.to_string().contains(why), "{e}");
        }
    }

    #[test]
    fn the_policy_file_replaces_the_builtin_or_stops_startup() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("pss.json");
        std::fs::write(
            &good,
            r#"{"apiVersion":"ironlet.dev/v1alpha1","kind":"NodePodSecurity","reason":"r","sources":[{"source":"file","level":"privileged","reason":"control plane"},{"source":"api","level":"restricted","reason":"tenants"}]}"#,
        )
        .unwrap();
        let w = build(Source::FLAGS, &KubeletConfiguration::default(), Some(&good)).unwrap();
        use crate::pod::security::policy::Source as S;
        use crate::pod::security::pss::Level;
        assert_eq!(w.pod_security.level(S::File, "x"), Level::Privileged);
        assert_eq!(
            w.pod_security.level(S::Api, "kube-system"),
            Level::Restricted
        );
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{}").unwrap();
        let e = build(Source::FLAGS, &KubeletConfiguration::default(), Some(&bad)).unwrap_err();
        assert_eq!(e.field(), Some("--pod-security-policy-file"));
        assert!(e.to_string().contains("bad.json"), "{e}");
        let e = build(
            Source::FLAGS,
            &KubeletConfiguration::default(),
            Some(Path::new("rel.json")),
        )
        .unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
    }
}
