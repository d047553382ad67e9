//! Where pod cgroups live (cgroupfs driver names), as pure path logic.
//!
//! With `cgroupsPerQOS` (the default):
//! `<cgroupRoot>/kubepods/pod<uid>` (Guaranteed), `<cgroupRoot>/kubepods/burstable/pod<uid>`,
//! `<cgroupRoot>/kubepods/besteffort/pod<uid>`.
//! Without it, every pod is `<cgroupRoot>/pod<uid>`. (Upstream then creates no pod cgroups
//! at all and gives the runtime an empty parent; ironlet still gives each pod its own cgroup
//! so pod-level limits and cleanup work the same way.)

use std::fmt;
use std::path::{Path, PathBuf};

use crate::pod::PodUid;
use crate::resources::qos::QosClass;

use super::CgroupError;

pub const KUBEPODS: &str = "kubepods";
pub const BURSTABLE: &str = "burstable";
pub const BESTEFFORT: &str = "besteffort";
pub const POD_PREFIX: &str = "pod";

/// A cgroup's path from the root of its hierarchy: `/kubepods/burstable/pod<uid>`. Every
/// component is a checked name (no `.`, `..`, `/` or control characters).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CgroupPath(Vec<String>);

impl CgroupPath {
    /// The root of the hierarchy, `/`.
    pub fn root() -> Self {
        CgroupPath(Vec::new())
    }

    /// Parses an absolute cgroupfs path such as `/ironlet` (`""` and `/` are the root).
    pub fn parse(path: &str) -> Result<Self, CgroupError> {
        let invalid = |why| CgroupError::InvalidPath {
            path: path.chars().take(256).collect(),
            why,
        };
        if path.is_empty() || path == "/" {
            return Ok(Self::root());
        }
        let rest = path
            .strip_prefix('/')
            .ok_or_else(|| invalid("must be absolute"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let mut parts = Vec::new();
        for part in rest.split('/') {
            check_name(part).map_err(invalid)?;
            parts.push(part.to_owned());
        }
        Ok(CgroupPath(parts))
    }

    /// This path with one more (already checked) component.
    pub(super) fn child(&self, name: &str) -> CgroupPath {
        let mut parts = self.0.clone();
        parts.push(name.to_owned());
        CgroupPath(parts)
    }

    pub fn components(&self) -> &[String] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// This path and each ancestor, root first: `/`, `/a`, `/a/b`.
    pub fn ancestors_and_self(&self) -> impl Iterator<Item = CgroupPath> + '_ {
        (0..=self.0.len()).map(|n| CgroupPath(self.0[..n].to_vec()))
    }

    /// The directory of this cgroup in a hierarchy mounted at `mount`.
    pub fn under(&self, mount: &Path) -> PathBuf {
        let mut p = mount.to_path_buf();
        p.extend(&self.0);
        p
    }
}

impl fmt::Display for CgroupPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for part in &self.0 {
            write!(f, "/{part}")?;
        }
        Ok(())
    }
}

/// A name the kernel and every runtime accept as one path component.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty path component");
    }
    if name == "." || name == ".." {
        return Err("'.' and '..' are not allowed");
    }
    if name.len() > 255 {
        return Err("a component is longer than 255 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-:@+".contains(&b))
    {
        return Err("only ASCII letters, digits and ._-:@+ are allowed");
    }
    Ok(())
}

/// `pod<uid>`, refusing UIDs that could escape or confuse the hierarchy. API server UIDs
/// (RFC 4122) and ironlet's hex static UIDs pass.
pub fn pod_cgroup_name(uid: &PodUid) -> Result<String, CgroupError> {
    let ok = !uid.0.is_empty()
        && uid.0.len() <= 128
        && uid
            .0
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(CgroupError::InvalidUid(uid.0.chars().take(128).collect()));
    }
    Ok(format!("{POD_PREFIX}{}", uid.0))
}

/// The cgroup layout of pods on this node: `cgroupRoot` and `cgroupsPerQOS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupLayout {
    root: CgroupPath,
    per_qos: bool,
}

impl CgroupLayout {
    /// `cgroup_root` is the KubeletConfiguration `cgroupRoot` (`""` means `/`).
    pub fn new(cgroup_root: &str, cgroups_per_qos: bool) -> Result<Self, CgroupError> {
        Ok(CgroupLayout {
            root: CgroupPath::parse(cgroup_root)?,
            per_qos: cgroups_per_qos,
        })
    }

    pub fn root(&self) -> &CgroupPath {
        &self.root
    }

    pub fn cgroups_per_qos(&self) -> bool {
        self.per_qos
    }

    /// The node-allocatable cgroup (`<root>/kubepods`), if there is one.
    pub fn kubepods(&self) -> Option<CgroupPath> {
        self.per_qos.then(|| self.root.child(KUBEPODS))
    }

    /// The cgroup pods of `qos` are created in.
    pub fn qos_parent(&self, qos: QosClass) -> CgroupPath {
        let Some(kubepods) = self.kubepods() else {
            return self.root.clone();
        };
        match qos {
            QosClass::Guaranteed => kubepods,
            QosClass::Burstable => kubepods.child(BURSTABLE),
            QosClass::BestEffort => kubepods.child(BESTEFFORT),
        }
    }

    /// `<qos parent>/pod<uid>`.
    pub fn pod(&self, uid: &PodUid, qos: QosClass) -> Result<CgroupPath, CgroupError> {
        Ok(self.qos_parent(qos).child(&pod_cgroup_name(uid)?))
    }

    /// Every cgroup that holds pod cgroups, with the QoS class its pods have (`None` when
    /// `cgroupsPerQOS` is off and all pods share the root).
    pub fn pod_parents(&self) -> Vec<(CgroupPath, Option<QosClass>)> {
        if !self.per_qos {
            return vec![(self.root.clone(), None)];
        }
        [
            QosClass::Guaranteed,
            QosClass::Burstable,
            QosClass::BestEffort,
        ]
        .into_iter()
        .map(|q| (self.qos_parent(q), Some(q)))
        .collect()
    }

    /// The pod UID of a cgroup directory named `name`, if it is a pod cgroup.
    pub fn uid_of(name: &str) -> Option<PodUid> {
        let uid = PodUid(name.strip_prefix(POD_PREFIX)?.to_owned());
        pod_cgroup_name(&uid).ok().map(|_| uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> PodUid {
        PodUid(s.into())
    }

    fn layout(root: &str, per_qos: bool) -> CgroupLayout {
        match CgroupLayout::new(root, per_qos) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn upstream_cgroupfs_names() {
        let l = layout("", true);
        let u = uid("8f2e6c1a-0000-4000-8000-1234567890ab");
        let path = |q| l.pod(&u, q).map(|p| p.to_string()).unwrap_or_default();
        assert_eq!(
            path(QosClass::Guaranteed),
            "/kubepods/pod8f2e6c1a-0000-4000-8000-1234567890ab"
        );
        assert_eq!(
            path(QosClass::Burstable),
            "/kubepods/burstable/pod8f2e6c1a-0000-4000-8000-1234567890ab"
        );
        assert_eq!(
            path(QosClass::BestEffort),
            "/kubepods/besteffort/pod8f2e6c1a-0000-4000-8000-1234567890ab"
        );
        assert_eq!(
            l.kubepods().map(|p| p.to_string()).as_deref(),
            Some("/kubepods")
        );
    }

    #[test]
    fn custom_root_and_flat_layout() {
        let l = layout("/ironlet/", true);
        assert_eq!(
            l.qos_parent(QosClass::Burstable).to_string(),
            "/ironlet/kubepods/burstable"
        );
        let flat = layout("/ironlet", false);
        assert_eq!(flat.kubepods(), None);
        assert_eq!(
            flat.pod(&uid("abc"), QosClass::Burstable)
                .map(|p| p.to_string())
                .ok()
                .as_deref(),
            Some("/ironlet/podabc")
        );
        assert_eq!(flat.pod_parents(), vec![(flat.root().clone(), None)]);
        assert_eq!(layout("/", true).root(), &CgroupPath::root());
        assert_eq!(CgroupPath::root().to_string(), "/");
    }

    #[test]
    fn bad_roots_and_uids_are_refused() {
        for root in [
            "relative",
            "/a//b",
            "/a/../b",
            "/./a",
            "/a b",
            "/a\nb",
            "/a/\u{e9}",
        ] {
            assert!(CgroupLayout::new(root, true).is_err(), "{root:?}");
        }
        for bad in ["", "../x", "a/b", "a.b", "x\0", &"a".repeat(129)] {
            assert!(pod_cgroup_name(&uid(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(CgroupLayout::uid_of("podabc-1"), Some(uid("abc-1")));
        assert_eq!(CgroupLayout::uid_of("pod"), None);
        assert_eq!(CgroupLayout::uid_of("burstable"), None);
        assert_eq!(CgroupLayout::uid_of("pod.."), None);
    }

    #[test]
    fn paths_join_under_a_mount() {
        let p = layout("/r", true).qos_parent(QosClass::BestEffort);
        assert_eq!(
            p.under(Path::new("/sys/fs/cgroup/cpu")),
            PathBuf::from("/sys/fs/cgroup/cpu/r/kubepods/besteffort")
        );
        let all: Vec<String> = p.ancestors_and_self().map(|a| a.to_string()).collect();
        assert_eq!(all, ["/", "/r", "/r/kubepods", "/r/kubepods/besteffort"]);
    }
}
