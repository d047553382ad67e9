//! Parse-time checks of what a pod says about volumes, for static and API pods alike
//! (called from `pod::manifest::validate`). Pure. Every volume name becomes a host path
//! component (`<pod>/volumes/<plugin>/<name>`, `<pod>/volume-subpaths/<name>/...`), so it
//! must be a DNS-1123 label before anything is created; every subPath must be relative
//! and free of `..` (symlinks are the resolver's job, at each container start).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, PodSpec, VolumeMount};

use crate::confine::helper::proto::{SubPath, is_dns_label};

/// A field that fails, and why: `("spec.volumes[1].name", "\"../x\" is not a DNS-1123 label")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

fn err(field: impl Into<String>, problem: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Upstream's mountPropagation values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    None,
    HostToContainer,
    Bidirectional,
}

impl Propagation {
    pub fn parse(s: Option<&str>) -> Result<Propagation, String> {
        match s.unwrap_or("") {
            "" | "None" => Ok(Propagation::None),
            "HostToContainer" => Ok(Propagation::HostToContainer),
            "Bidirectional" => Ok(Propagation::Bidirectional),
            other => Err(format!(
                "unsupported value {other:?}: None, HostToContainer or Bidirectional"
            )),
        }
    }
}

fn privileged(c: &Container) -> bool {
    c.security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false)
}

/// The checks on `spec.volumes` and every container's `volumeMounts`.
pub fn validate_spec(spec: &PodSpec) -> Result<(), FieldError> {
    let mut volumes = BTreeSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let field = format!("spec.volumes[{i}].name");
        if !is_dns_label(&v.name) {
            return Err(err(field, format!("{:?} is not a DNS-1123 label", v.name)));
        }
        if !volumes.insert(v.name.as_str()) {
            return Err(err(field, format!("duplicate volume name {:?}", v.name)));
        }
    }
    for (cf, c) in crate::pod::security::context::all_containers(spec) {
        let mut paths = BTreeSet::new();
        for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
            let mf = format!("{cf}.volumeMounts[{j}]");
            if !volumes.contains(m.name.as_str()) {
                return Err(err(
                    format!("{mf}.name"),
                    format!("no volume named {:?} in spec.volumes", m.name),
                ));
            }
            if m.mount_path.is_empty() {
                return Err(err(format!("{mf}.mountPath"), "is required"));
            }
            if !paths.insert(m.mount_path.as_str()) {
                return Err(err(
                    format!("{mf}.mountPath"),
                    format!("{:?} is mounted twice in this container", m.mount_path),
                ));
            }
            validate_mount(&mf, m, c)?;
        }
    }
    Ok(())
}

fn validate_mount(mf: &str, m: &VolumeMount, c: &Container) -> Result<(), FieldError> {
    let sub = m.sub_path.as_deref().filter(|s| !s.is_empty());
    let expr = m.sub_path_expr.as_deref().filter(|s| !s.is_empty());
    match (sub, expr) {
        (Some(_), Some(_)) => {
            return Err(err(
                format!("{mf}.subPathExpr"),
                "subPath and subPathExpr are mutually exclusive",
            ));
        }
        (Some(s), None) => {
            SubPath::parse(s).map_err(|e| err(format!("{mf}.subPath"), problem(e)))?;
        }
        // `$(VAR)` is expanded at container start; the written form must already be
        // relative and free of `..`, as upstream checks.
        (None, Some(s)) => {
            SubPath::parse(s).map_err(|e| err(format!("{mf}.subPathExpr"), problem(e)))?;
        }
        (None, None) => {}
    }
    let propagation = Propagation::parse(m.mount_propagation.as_deref())
        .map_err(|p| err(format!("{mf}.mountPropagation"), p))?;
    if propagation == Propagation::Bidirectional && !privileged(c) {
        return Err(err(
            format!("{mf}.mountPropagation"),
            "Bidirectional mount propagation is available only to privileged containers",
        ));
    }
    match m.recursive_read_only.as_deref().unwrap_or("Disabled") {
        "Disabled" | "IfPossible" => {}
        "Enabled" => {
            return Err(err(
                format!("{mf}.recursiveReadOnly"),
                "Enabled is not supported by this ironlet version (the runtime cannot be asked \
                 for recursive read-only mounts yet)",
            ));
        }
        other => {
            return Err(err(
                format!("{mf}.recursiveReadOnly"),
                format!("unsupported value {other:?}: Disabled, IfPossible or Enabled"),
            ));
        }
    }
    Ok(())
}

fn problem(e: crate::confine::helper::proto::DecodeError) -> String {
    match e {
        crate::confine::helper::proto::DecodeError::BadPath(p) => p,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Result<(), FieldError> {
        validate_spec(&serde_saphyr::from_str(yaml).unwrap())
    }

    const OK: &str = "containers:\n- name: c\n  volumeMounts:\n  - {name: data, mountPath: /d, subPath: a/b}\n  - {name: data, mountPath: /e, subPathExpr: '$(POD)/x', mountPropagation: HostToContainer}\nvolumes:\n- name: data\n  emptyDir: {}\n";

    #[test]
    fn good_volumes_pass() {
        check(OK).unwrap();
        check("containers:\n- name: c\n  securityContext: {privileged: true}\n  volumeMounts:\n  - {name: d, mountPath: /d, mountPropagation: Bidirectional}\nvolumes:\n- name: d\n  emptyDir: {}\n").unwrap();
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "containers:\n- name: c\nvolumes:\n- name: ok\n  emptyDir: {}\n- name: ../x\n  emptyDir: {}\n",
                "spec.volumes[1].name",
                "\"../x\" is not a DNS-1123 label",
            ),
            (
                "containers:\n- name: c\nvolumes:\n- name: Data\n  emptyDir: {}\n",
                "spec.volumes[0].name",
                "DNS-1123",
            ),
            (
                "containers:\n- name: c\nvolumes:\n- name: d\n  emptyDir: {}\n- name: d\n  emptyDir: {}\n",
                "spec.volumes[1].name",
                "duplicate volume name",
            ),
            (
                &OK.replace("name: data, mountPath: /e", "name: nope, mountPath: /e"),
                "spec.containers[0].volumeMounts[1].name",
                "no volume named \"nope\"",
            ),
            (
                &OK.replace("subPath: a/b", "subPath: ../../etc"),
                "spec.containers[0].volumeMounts[0].subPath",
                "'..'",
            ),
            (
                &OK.replace("subPath: a/b", "subPath: /etc"),
                "spec.containers[0].volumeMounts[0].subPath",
                "relative",
            ),
            (
                &OK.replace("'$(POD)/x'", "'$(POD)/../x'"),
                "spec.containers[0].volumeMounts[1].subPathExpr",
                "'..'",
            ),
            (
                &OK.replace("subPath: a/b", "subPath: a/b, subPathExpr: x"),
                "spec.containers[0].volumeMounts[0].subPathExpr",
                "mutually exclusive",
            ),
            (
                &OK.replace("HostToContainer", "Bidirectional"),
                "spec.containers[0].volumeMounts[1].mountPropagation",
                "only to privileged containers",
            ),
            (
                &OK.replace("HostToContainer", "Sideways"),
                "spec.containers[0].volumeMounts[1].mountPropagation",
                "\"Sideways\"",
            ),
            (
                &OK.replace("mountPath: /e", "mountPath: /d"),
                "spec.containers[0].volumeMounts[1].mountPath",
                "mounted twice",
            ),
            (
                &OK.replace(
                    "subPath: a/b",
                    "subPath: a/b, readOnly: true, recursiveReadOnly: Enabled",
                ),
                "spec.containers[0].volumeMounts[0].recursiveReadOnly",
                "not supported",
            ),
            (
                &format!(
                    "initContainers:\n- name: i\n  volumeMounts:\n  - {{name: data, mountPath: /d, subPath: ..}}\n{OK}"
                ),
                "spec.initContainers[0].volumeMounts[0].subPath",
                "'..'",
            ),
        ];
        for (yaml, field, needle) in cases {
            let e = check(yaml).expect_err(yaml);
            assert_eq!(&e.field, field, "{yaml}");
            assert!(e.problem.contains(needle), "{yaml}: {e:?}");
        }
    }
}
