//! Pod volumes. Today: emptyDir on disk and in memory, at upstream's layout
//! `<root-dir>/pods/<uid>/volumes/kubernetes.io~empty-dir/<name>`. A memory-medium emptyDir
//! is a tmpfs (size = sizeLimit, else the kernel default), which the confined agent cannot
//! mount itself: the privileged mount helper ([`crate::confine::helper`]) mounts it and
//! unmounts it before the pod directory is removed. Other volume types come later.
//! Anything unsupported is refused by name, never silently dropped.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, PodSpec, Volume, VolumeMount};

use crate::confine::helper::proto::VolumePath;
use crate::cri::api;

pub const EMPTY_DIR_PLUGIN: &str = "kubernetes.io~empty-dir";

/// `<pods_dir>/<uid>`: everything the node keeps for one pod.
pub fn pod_dir(pods_dir: &Path, uid: &str) -> PathBuf {
    pods_dir.join(uid)
}

pub fn empty_dir_path(pods_dir: &Path, uid: &str, volume: &str) -> PathBuf {
    pod_dir(pods_dir, uid)
        .join("volumes")
        .join(EMPTY_DIR_PLUGIN)
        .join(volume)
}

fn volume_kind(v: &Volume) -> &'static str {
    macro_rules! kinds {
        ($($field:ident => $name:literal),* $(,)?) => {
            $(if v.$field.is_some() { return $name; })*
        };
    }
    kinds!(
        empty_dir => "emptyDir", host_path => "hostPath", config_map => "configMap",
        secret => "secret", projected => "projected", downward_api => "downwardAPI",
        persistent_volume_claim => "persistentVolumeClaim", csi => "csi",
        ephemeral => "ephemeral", nfs => "nfs", image => "image",
    );
    "unknown"
}

/// Why a volume cannot be provided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VolumeError(pub String);

/// Checks that every volume the pod declares can be provided.
pub fn check_supported(spec: &PodSpec) -> Result<(), VolumeError> {
    for v in spec.volumes.iter().flatten() {
        match (volume_kind(v), v.empty_dir.as_ref()) {
            ("emptyDir", Some(e)) if matches!(e.medium.as_deref().unwrap_or(""), "" | "Memory") => {
            }
            ("emptyDir", Some(e)) => {
                return Err(VolumeError(format!(
                    "volume {:?}: emptyDir with medium {:?} is not supported by this ironlet version",
                    v.name,
                    e.medium.as_deref().unwrap_or("")
                )));
            }
            (kind, _) => {
                return Err(VolumeError(format!(
                    "volume {:?}: {kind} volumes are not supported by this ironlet version",
                    v.name
                )));
            }
        }
    }
    Ok(())
}

/// A subPath must stay inside its volume: relative, no `..`.
fn check_sub_path(sub: &str) -> Result<(), String> {
    let p = Path::new(sub);
    if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!(
            "subPath {sub:?} must be relative and must not contain '..'"
        ));
    }
    Ok(())
}

/// The CRI mounts for a container's volumeMounts.
pub fn mounts(
    spec: &PodSpec,
    c: &Container,
    pods_dir: &Path,
    uid: &str,
) -> Result<Vec<api::Mount>, VolumeError> {
    let mut out = Vec::new();
    for VolumeMount {
        name,
        mount_path,
        read_only,
        sub_path,
        ..
    } in c.volume_mounts.iter().flatten()
    {
        let v = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| &v.name == name)
            .ok_or_else(|| {
                VolumeError(format!("volumeMount {name:?}: no such volume in the pod"))
            })?;
        if volume_kind(v) != "emptyDir" {
            return Err(VolumeError(format!(
                "volumeMount {name:?}: {} volumes are not supported by this ironlet version",
                volume_kind(v)
            )));
        }
        let mut host = empty_dir_path(pods_dir, uid, name);
        if let Some(sub) = sub_path.as_deref().filter(|s| !s.is_empty()) {
            check_sub_path(sub).map_err(|p| VolumeError(format!("volumeMount {name:?}: {p}")))?;
            host = host.join(sub);
        }
        out.push(api::Mount {
            container_path: mount_path.clone(),
            host_path: host.to_string_lossy().into_owned(),
            readonly: read_only.unwrap_or(false),
            ..Default::default()
        });
    }
    Ok(out)
}

/// Creates the pod's emptyDir directories (mode 0777, as upstream, so any container user
/// can write) and the subPath directories its containers mount.
pub fn prepare(spec: &PodSpec, pods_dir: &Path, uid: &str) -> std::io::Result<()> {
    for v in spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.empty_dir.is_some())
    {
        let dir = empty_dir_path(pods_dir, uid, &v.name);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
        let memory = v.empty_dir.as_ref().and_then(|e| e.medium.as_deref()) == Some("Memory");
        if memory && !is_mount_point(&dir)? {
            let size = v
                .empty_dir
                .as_ref()
                .and_then(|e| e.size_limit.as_ref())
                .and_then(|q| crate::resources::QuantityValue::parse(&q.0).ok())
                .and_then(|q| q.value())
                .filter(|b| *b > 0)
                .map_or(0, |b| b as u64);
            let helper = crate::confine::helper::client().ok_or_else(|| {
                std::io::Error::other(format!(
                    "volume {:?}: medium Memory needs the mount helper, which is not running",
                    v.name
                ))
            })?;
            let path = VolumePath::new(uid, EMPTY_DIR_PLUGIN, &v.name)
                .map_err(|e| std::io::Error::other(format!("volume {:?}: {e}", v.name)))?;
            helper
                .mount_tmpfs(path, size)
                .map_err(|e| std::io::Error::other(format!("volume {:?}: {e}", v.name)))?;
        }
    }
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for m in all.flat_map(|c| c.volume_mounts.iter().flatten()) {
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty())
            && check_sub_path(sub).is_ok()
        {
            std::fs::create_dir_all(empty_dir_path(pods_dir, uid, &m.name).join(sub))?;
        }
    }
    Ok(())
}

/// Whether `dir` is the root of a mount (its device differs from its parent's).
fn is_mount_point(dir: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let parent = dir.parent().unwrap_or(dir);
    Ok(std::fs::symlink_metadata(dir)?.dev() != std::fs::symlink_metadata(parent)?.dev())
}

/// Asks the mount helper to unmount every tmpfs emptyDir of the pod.
fn unmount_memory_volumes(pods_dir: &Path, uid: &str) -> std::io::Result<()> {
    let plugin_dir = pod_dir(pods_dir, uid)
        .join("volumes")
        .join(EMPTY_DIR_PLUGIN);
    let entries = match std::fs::read_dir(&plugin_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        if !is_mount_point(&e.path())? {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let helper = crate::confine::helper::client().ok_or_else(|| {
            std::io::Error::other(format!(
                "volume {name:?} is mounted but the mount helper is not running"
            ))
        })?;
        let path = VolumePath::new(uid, EMPTY_DIR_PLUGIN, &name)
            .map_err(|e| std::io::Error::other(format!("volume {name:?}: {e}")))?;
        helper
            .unmount(path)
            .map_err(|e| std::io::Error::other(format!("volume {name:?}: {e}")))?;
    }
    Ok(())
}

/// Removes everything the node kept for a terminated pod, unmounting its tmpfs volumes
/// first.
pub fn remove_pod_dir(pods_dir: &Path, uid: &str) -> std::io::Result<()> {
    unmount_memory_volumes(pods_dir, uid)?;
    let dir = pod_dir(pods_dir, uid);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> PodSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn empty_dir_mounts_use_the_upstream_layout() {
        let s = spec(
            "containers:\n- name: c\n  volumeMounts:\n  - {name: data, mountPath: /data}\n  - {name: data, mountPath: /sub, subPath: a/b, readOnly: true}\nvolumes:\n- name: data\n  emptyDir: {}\n",
        );
        let m = mounts(&s, &s.containers[0], Path::new("/r/pods"), "u1").unwrap();
        assert_eq!(
            m[0].host_path,
            "/r/pods/u1/volumes/kubernetes.io~empty-dir/data"
        );
        assert_eq!(m[0].container_path, "/data");
        assert_eq!(
            m[1].host_path,
            "/r/pods/u1/volumes/kubernetes.io~empty-dir/data/a/b"
        );
        assert!(m[1].readonly);
    }

    #[test]
    fn unsupported_volumes_and_escaping_sub_paths_are_refused() {
        let s = spec("containers:\n- name: c\nvolumes:\n- name: h\n  hostPath: {path: /etc}\n");
        assert!(check_supported(&s).unwrap_err().0.contains("hostPath"));
        let s = spec("containers:\n- name: c\nvolumes:\n- name: m\n  emptyDir: {medium: Memory}\n");
        assert!(check_supported(&s).is_ok());
        let s =
            spec("containers:\n- name: c\nvolumes:\n- name: m\n  emptyDir: {medium: HugePages}\n");
        assert!(check_supported(&s).unwrap_err().0.contains("HugePages"));
        let s = spec(
            "containers:\n- name: c\n  volumeMounts:\n  - {name: d, mountPath: /d, subPath: ../../etc}\nvolumes:\n- name: d\n  emptyDir: {}\n",
        );
        let e = mounts(&s, &s.containers[0], Path::new("/r"), "u").unwrap_err();
        assert!(e.0.contains("'..'"), "{e}");
        let s = spec("containers:\n- name: c\n  volumeMounts:\n  - {name: nope, mountPath: /d}\n");
        assert!(mounts(&s, &s.containers[0], Path::new("/r"), "u").is_err());
    }

    #[test]
    fn prepare_and_remove_real_directories() {
        let root = tempfile::tempdir().unwrap();
        let s = spec(
            "containers:\n- name: c\n  volumeMounts:\n  - {name: d, mountPath: /d, subPath: x}\nvolumes:\n- name: d\n  emptyDir: {}\n",
        );
        prepare(&s, root.path(), "u").unwrap();
        let dir = empty_dir_path(root.path(), "u", "d");
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o777
        );
        assert!(dir.join("x").is_dir());
        remove_pod_dir(root.path(), "u").unwrap();
        assert!(!pod_dir(root.path(), "u").exists());
        remove_pod_dir(root.path(), "u").unwrap();
    }
}
