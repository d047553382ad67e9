//! Pod volumes. Today: emptyDir on disk and in memory, at upstream's layout
//! `<root-dir>/pods/<uid>/volumes/kubernetes.io~empty-dir/<name>`. A memory-medium emptyDir
//! is a tmpfs (size = sizeLimit, else the kernel default), which the confined agent cannot
//! mount itself: the privileged mount helper ([`crate::confine::helper`]) mounts it and
//! unmounts it before the pod directory is removed. subPath and subPathExpr mounts are
//! resolved without following symlinks and bind-mounted by the helper at every container
//! start ([`subpath`]); names and subPaths are checked at parse time ([`validate`]). Other
//! volume types come later. Anything unsupported is refused by name, never silently
//! dropped.

pub mod subpath;
pub mod validate;

use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, PodSpec, Volume, VolumeMount};

use crate::confine::helper::HelperClient;
use crate::confine::helper::proto::{SubPath, SubPathMount, VolumePath};
use crate::cri::api;
pub use subpath::{SubPathBind, sub_path_target};
use validate::Propagation;

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

/// The subPath a mount asks for, with subPathExpr expanded from the container's
/// environment (upstream's `$(VAR)` rules, the same expansion as command and args). None
/// mounts the whole volume.
fn effective_sub_path(
    m: &VolumeMount,
    env: &[(String, String)],
) -> Result<Option<SubPath>, VolumeError> {
    let name = &m.name;
    let sub = m.sub_path.as_deref().filter(|s| !s.is_empty());
    let expr = m.sub_path_expr.as_deref().filter(|s| !s.is_empty());
    match (sub, expr) {
        (Some(_), Some(_)) => Err(VolumeError(format!(
            "volumeMount {name:?}: subPath and subPathExpr are mutually exclusive"
        ))),
        (Some(s), None) => SubPath::parse(s)
            .map(Some)
            .map_err(|e| VolumeError(format!("volumeMount {name:?}: {e}"))),
        (None, Some(x)) => {
            let expanded = crate::pod::cri_config::expand(x, env);
            if expanded.is_empty() {
                return Ok(None);
            }
            SubPath::parse(&expanded).map(Some).map_err(|e| {
                VolumeError(format!(
                    "volumeMount {name:?}: subPathExpr {x:?} expands to {expanded:?}: {e}"
                ))
            })
        }
        (None, None) => Ok(None),
    }
}

fn privileged(c: &Container) -> bool {
    c.security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false)
}

/// One volumeMount, decided: where the runtime finds it and what must be bound first.
struct Planned {
    cri: api::Mount,
    bind: Option<SubPathBind>,
}

fn plan(
    spec: &PodSpec,
    c: &Container,
    pods_dir: &Path,
    uid: &str,
    env: &[(String, String)],
) -> Result<Vec<Planned>, VolumeError> {
    let mut out = Vec::new();
    for (index, m) in c.volume_mounts.iter().flatten().enumerate() {
        let name = &m.name;
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
        let propagation = match Propagation::parse(m.mount_propagation.as_deref())
            .map_err(|p| VolumeError(format!("volumeMount {name:?}: mountPropagation {p}")))?
        {
            Propagation::None => api::MountPropagation::PropagationPrivate,
            Propagation::HostToContainer => api::MountPropagation::PropagationHostToContainer,
            Propagation::Bidirectional if privileged(c) => {
                api::MountPropagation::PropagationBidirectional
            }
            Propagation::Bidirectional => {
                return Err(VolumeError(format!(
                    "volumeMount {name:?}: mountPropagation Bidirectional is available only to \
                     privileged containers"
                )));
            }
        };
        if m.recursive_read_only.as_deref() == Some("Enabled") {
            return Err(VolumeError(format!(
                "volumeMount {name:?}: recursiveReadOnly Enabled is not supported by this \
                 ironlet version"
            )));
        }
        let index =
            u32::try_from(index).map_err(|_| VolumeError("too many volumeMounts".into()))?;
        let (host, bind) = match effective_sub_path(m, env)? {
            Some(sub_path) => {
                let volume = VolumePath::new(uid, EMPTY_DIR_PLUGIN, name)
                    .map_err(|e| VolumeError(format!("volumeMount {name:?}: {e}")))?;
                let mount = SubPathMount::new(volume, &c.name, index)
                    .map_err(|e| VolumeError(format!("volumeMount {name:?}: {e}")))?;
                (
                    sub_path_target(pods_dir, uid, name, &c.name, index),
                    Some(SubPathBind { mount, sub_path }),
                )
            }
            None => (empty_dir_path(pods_dir, uid, name), None),
        };
        out.push(Planned {
            cri: api::Mount {
                container_path: m.mount_path.clone(),
                host_path: host.to_string_lossy().into_owned(),
                readonly: m.read_only.unwrap_or(false),
                propagation: propagation as i32,
                ..Default::default()
            },
            bind,
        });
    }
    Ok(out)
}

/// The CRI mounts for a container's volumeMounts. A subPath mount points at its bind
/// target under `<pod>/volume-subpaths/`, never into the volume: [`sub_path_binds`] says
/// what must be bound there before the container is created. `env` is the container's
/// environment, for subPathExpr.
pub fn mounts(
    spec: &PodSpec,
    c: &Container,
    pods_dir: &Path,
    uid: &str,
    env: &[(String, String)],
) -> Result<Vec<api::Mount>, VolumeError> {
    Ok(plan(spec, c, pods_dir, uid, env)?
        .into_iter()
        .map(|p| p.cri)
        .collect())
}

/// The subPath binds a container needs, in volumeMount order (run them with
/// [`subpath::bind_all`] on the blocking pool).
pub fn sub_path_binds(
    spec: &PodSpec,
    c: &Container,
    uid: &str,
    env: &[(String, String)],
) -> Result<Vec<SubPathBind>, VolumeError> {
    Ok(plan(spec, c, Path::new(""), uid, env)?
        .into_iter()
        .filter_map(|p| p.bind)
        .collect())
}

/// Gives an emptyDir directory mode 0777 through a descriptor opened beneath the pods
/// directory (no symlink, no `..` out, only the last step may enter a mount: a memory
/// emptyDir is a tmpfs root), never by path: the agent's seccomp filter refuses chmod by
/// path, which landlock does not mediate (issue 15, finding 9).
fn open_to_all(pods_dir: &Path, uid: &str, volume: &str) -> std::io::Result<()> {
    let pods = std::fs::File::open(pods_dir)?;
    let plugin_dir = crate::sys::open_dir_beneath(
        pods.as_fd(),
        &Path::new(uid).join("volumes").join(EMPTY_DIR_PLUGIN),
        subpath::RESOLVE,
    )?;
    let dir = crate::sys::open_dir_readable_beneath(
        plugin_dir.as_fd(),
        Path::new(volume),
        subpath::RESOLVE & !libc::RESOLVE_NO_XDEV,
    )?;
    std::fs::File::from(dir).set_permissions(std::fs::Permissions::from_mode(0o777))
}

/// Creates the pod's emptyDir directories (mode 0777, as upstream, so any container user
/// can write) and has `helper` mount the memory ones. subPath directories are made at each
/// container start, beneath the volume ([`subpath::bind_all`]), never here through a path.
/// Blocking: run it on the blocking pool.
pub fn prepare(
    spec: &PodSpec,
    pods_dir: &Path,
    uid: &str,
    helper: Option<&HelperClient>,
) -> std::io::Result<()> {
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
        open_to_all(pods_dir, uid, &v.name)
            .map_err(|e| std::io::Error::other(format!("volume {:?}: mode 0777: {e}", v.name)))?;
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
            let helper = helper.ok_or_else(|| {
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
    Ok(())
}

/// Whether `dir` is the root of a mount (its device differs from its parent's).
fn is_mount_point(dir: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let parent = dir.parent().unwrap_or(dir);
    Ok(std::fs::symlink_metadata(dir)?.dev() != std::fs::symlink_metadata(parent)?.dev())
}

/// Asks the mount helper to unmount every tmpfs emptyDir of the pod.
fn unmount_memory_volumes(
    pods_dir: &Path,
    uid: &str,
    helper: Option<&HelperClient>,
) -> std::io::Result<()> {
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
        let helper = helper.ok_or_else(|| {
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

/// Removes everything the node kept for a terminated pod: its subPath binds and tmpfs
/// volumes are unmounted first, and nothing is removed while anything is still mounted
/// below the pod directory (a recursive removal must never reach through a mount).
/// Blocking.
pub fn remove_pod_dir(
    pods_dir: &Path,
    uid: &str,
    helper: Option<&HelperClient>,
) -> std::io::Result<()> {
    subpath::unmount_all(pods_dir, uid, helper)?;
    unmount_memory_volumes(pods_dir, uid, helper)?;
    let dir = pod_dir(pods_dir, uid);
    let left = subpath::mounts_below(&dir)?;
    if !left.is_empty() {
        return Err(std::io::Error::other(format!(
            "{} is not removed: still mounted below it: {}",
            dir.display(),
            left.join(", ")
        )));
    }
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Removes the directories of pods that neither a source nor the runtime knows any more
/// (left by an agent that stopped before it could clean up), unmounting their subPath binds
/// and tmpfs volumes first. Directories that are not pod UIDs are left alone. Blocking;
/// returns what failed.
pub fn remove_orphaned_pod_dirs(
    pods_dir: &Path,
    keep: &std::collections::HashSet<String>,
    helper: Option<&HelperClient>,
) -> Vec<(String, std::io::Error)> {
    let Ok(entries) = std::fs::read_dir(pods_dir) else {
        return Vec::new();
    };
    let mut failed = Vec::new();
    for e in entries.flatten() {
        let uid = e.file_name().to_string_lossy().into_owned();
        if keep.contains(&uid) || !crate::confine::helper::proto::is_pod_uid(&uid) {
            continue;
        }
        match remove_pod_dir(pods_dir, &uid, helper) {
            Ok(()) => tracing::info!(pod_uid = %uid, "removed the directory of an orphaned pod"),
            Err(e) => failed.push((uid, e)),
        }
    }
    failed
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
        let m = mounts(&s, &s.containers[0], Path::new("/r/pods"), "u1", &[]).unwrap();
        assert_eq!(
            m[0].host_path,
            "/r/pods/u1/volumes/kubernetes.io~empty-dir/data"
        );
        assert_eq!(m[0].container_path, "/data");
        assert_eq!(
            m[0].propagation,
            api::MountPropagation::PropagationPrivate as i32
        );
        // The runtime gets the bind target, never a path into the volume.
        assert_eq!(m[1].host_path, "/r/pods/u1/volume-subpaths/data/c/1");
        assert!(m[1].readonly);
        let b = sub_path_binds(&s, &s.containers[0], "u1", &[]).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].mount.target(), "u1/volume-subpaths/data/c/1");
        assert_eq!(b[0].sub_path.as_str(), "a/b");
    }

    #[test]
    fn sub_path_expr_expands_the_container_environment() {
        let s = spec(
            "containers:\n- name: c\n  volumeMounts:\n  - {name: data, mountPath: /d, subPathExpr: 'logs/$(POD)/$(NOPE)'}\n  - {name: data, mountPath: /e, subPathExpr: '$(EMPTY)'}\n  - {name: data, mountPath: /f, subPathExpr: '$(UP)'}\nvolumes:\n- name: data\n  emptyDir: {}\n",
        );
        let env = [("POD".to_string(), "web-1".to_string())];
        // Undefined references stay as written: plain names, not a way out.
        let b = sub_path_binds(&s, &s.containers[0], "u1", &env).unwrap();
        let subs: Vec<_> = b.iter().map(|b| b.sub_path.as_str()).collect();
        assert_eq!(subs, ["logs/web-1/$(NOPE)", "$(EMPTY)", "$(UP)"]);
        let env = [
            ("POD".to_string(), "web-1".to_string()),
            ("EMPTY".to_string(), String::new()),
            ("UP".to_string(), "../../etc".to_string()),
        ];
        let e = sub_path_binds(&s, &s.containers[0], "u1", &env).unwrap_err();
        assert!(e.0.contains("expands to \"../../etc\""), "{e}");
        let env = [
            ("POD".to_string(), "web-1".to_string()),
            ("EMPTY".to_string(), String::new()),
            ("UP".to_string(), "x".to_string()),
        ];
        let m = mounts(&s, &s.containers[0], Path::new("/r"), "u1", &env).unwrap();
        assert_eq!(m[0].host_path, "/r/u1/volume-subpaths/data/c/0");
        // An empty expansion mounts the whole volume, as upstream.
        assert_eq!(m[1].host_path, "/r/u1/volumes/kubernetes.io~empty-dir/data");
        let b = sub_path_binds(&s, &s.containers[0], "u1", &env).unwrap();
        assert_eq!(b[0].sub_path.as_str(), "logs/web-1/$(NOPE)");
        assert_eq!(b[1].sub_path.as_str(), "x");
    }

    #[test]
    fn propagation_maps_to_the_cri_and_bidirectional_needs_privileged() {
        let yaml = "containers:\n- name: c\n  PRIV\n  volumeMounts:\n  - {name: d, mountPath: /a, mountPropagation: HostToContainer}\n  - {name: d, mountPath: /b, mountPropagation: Bidirectional}\nvolumes:\n- name: d\n  emptyDir: {}\n";
        let s = spec(&yaml.replace("PRIV", "securityContext: {privileged: true}"));
        let m = mounts(&s, &s.containers[0], Path::new("/r"), "u", &[]).unwrap();
        assert_eq!(
            m[0].propagation,
            api::MountPropagation::PropagationHostToContainer as i32
        );
        assert_eq!(
            m[1].propagation,
            api::MountPropagation::PropagationBidirectional as i32
        );
        let s = spec(&yaml.replace("PRIV", "securityContext: {privileged: false}"));
        let e = mounts(&s, &s.containers[0], Path::new("/r"), "u", &[]).unwrap_err();
        assert!(e.0.contains("mountPropagation Bidirectional"), "{e}");
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
        let e = mounts(&s, &s.containers[0], Path::new("/r"), "u", &[]).unwrap_err();
        assert!(e.0.contains("'..'"), "{e}");
        let s = spec("containers:\n- name: c\n  volumeMounts:\n  - {name: nope, mountPath: /d}\n");
        assert!(mounts(&s, &s.containers[0], Path::new("/r"), "u", &[]).is_err());
    }

    #[test]
    fn prepare_and_remove_real_directories() {
        let root = tempfile::tempdir().unwrap();
        let s = spec(
            "containers:\n- name: c\n  volumeMounts:\n  - {name: d, mountPath: /d, subPath: x}\nvolumes:\n- name: d\n  emptyDir: {}\n",
        );
        prepare(&s, root.path(), "u", None).unwrap();
        let dir = empty_dir_path(root.path(), "u", "d");
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o777
        );
        // subPath directories are not made through a path here any more.
        assert!(!dir.join("x").exists());
        remove_pod_dir(root.path(), "u", None).unwrap();
        assert!(!pod_dir(root.path(), "u").exists());
        remove_pod_dir(root.path(), "u", None).unwrap();
    }

    #[test]
    fn orphaned_pod_dirs_go_and_kept_ones_stay() {
        let root = tempfile::tempdir().unwrap();
        let s = spec("containers:\n- name: c\nvolumes:\n- name: d\n  emptyDir: {}\n");
        for uid in ["kept", "orphan"] {
            prepare(&s, root.path(), uid, None).unwrap();
        }
        std::fs::create_dir(root.path().join("not.a.uid")).unwrap();
        let keep = std::collections::HashSet::from(["kept".to_string()]);
        assert!(remove_orphaned_pod_dirs(root.path(), &keep, None).is_empty());
        assert!(pod_dir(root.path(), "kept").exists());
        assert!(!pod_dir(root.path(), "orphan").exists());
        assert!(root.path().join("not.a.uid").exists());
    }

    #[test]
    fn an_empty_dir_swapped_for_a_symlink_is_refused_and_its_target_keeps_its_mode() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let dir = empty_dir_path(root.path(), "u", "d");
        std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(outside.path(), &dir).unwrap();
        let s = spec("containers:\n- name: c\nvolumes:\n- name: d\n  emptyDir: {}\n");
        let e = prepare(&s, root.path(), "u", None).unwrap_err().to_string();
        assert!(e.contains("volume \"d\": mode 0777"), "{e}");
        assert_eq!(
            std::fs::metadata(outside.path())
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o700
        );
    }

    /// Serves one request on `theirs` as the helper would and answers Ok; returns it.
    fn fake_helper(
        mut theirs: std::os::unix::net::UnixStream,
    ) -> std::thread::JoinHandle<crate::confine::helper::proto::Request> {
        use crate::confine::helper::proto;
        use std::io::{Read, Write};
        std::thread::spawn(move || {
            let mut prefix = [0u8; 4];
            theirs.read_exact(&mut prefix).unwrap();
            let mut body = vec![0u8; proto::body_length(prefix).unwrap()];
            theirs.read_exact(&mut body).unwrap();
            theirs
                .write_all(&proto::encode_response(proto::Status::Ok, "ok"))
                .unwrap();
            proto::decode_request(&body).unwrap()
        })
    }

    #[test]
    fn a_memory_empty_dir_is_mounted_by_the_helper_it_is_given() {
        let root = tempfile::tempdir().unwrap();
        let s = spec(
            "containers:\n- name: c\nvolumes:\n- name: m\n  emptyDir: {medium: Memory, sizeLimit: 1Mi}\n",
        );
        let e = prepare(&s, root.path(), "u1", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs the mount helper"), "{e}");

        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let served = fake_helper(theirs);
        let helper = HelperClient::over(ours);
        prepare(&s, root.path(), "u1", Some(&helper)).unwrap();
        assert_eq!(
            served.join().unwrap(),
            crate::confine::helper::proto::Request::MountTmpfs {
                path: VolumePath::new("u1", EMPTY_DIR_PLUGIN, "m").unwrap(),
                size: 1024 * 1024,
            }
        );
        let dir = empty_dir_path(root.path(), "u1", "m");
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o777
        );
    }
}
