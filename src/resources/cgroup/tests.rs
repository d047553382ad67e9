//! Pod cgroups on the real v1 cgroupfs of the test machine, on an emulated v2 tree, and a
//! check of the emulation against the running kernel's cgroup2.
//!
//! The real-host tests need root and a v1 (or hybrid) host; elsewhere they report
//! themselves skipped (`xtask::skipped!`) and return, and `cargo xtask test` fails unless
//! the skip is listed in `xtask/expected-skips.txt`. Each works under its own `/ironlet-test-<pid>-<name>` root and removes it,
//! also when an assertion fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fixture::{CORE_FILES, V2Fixture};
use super::*;
use crate::resources::cpu::pod_cgroup_limits;
use crate::resources::requirements::tests::pod;

fn uid(s: &str) -> PodUid {
    PodUid(s.into())
}

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

fn read_trim(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(s) => s.trim().to_owned(),
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Removes a test cgroupRoot from every hierarchy when dropped.
struct Cleanup {
    dirs: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            if let Err(e) = remove_tree(&HostIo, dir) {
                eprintln!("cleanup {}: {e}", dir.display());
            }
        }
    }
}

/// Why a real-cgroupfs test cannot run on this host. The reasons are fixed sentences: a
/// skip is judged by `cargo xtask test` against `xtask/expected-skips.txt`.
const NOT_ROOT: &str = "needs root for the real cgroupfs";
const V2_HOST: &str = "the host is cgroup v2 (covered by the v2 fixture tests)";
const V1_CONTROLLERS: &str = "the v1 hierarchy lacks a controller the agent needs";
const NO_CGROUP2: &str = "needs root and a cgroup2 mount";

/// The host's v1 hierarchy and a unique test root, or why this host cannot run the
/// real-cgroupfs tests (the caller reports the skip under its own name).
fn real_v1(name: &str) -> Result<(V1Hierarchy, String, Cleanup), &'static str> {
    if !is_root() {
        return Err(NOT_ROOT);
    }
    let Hierarchy::V1(h) = Hierarchy::detect() else {
        return Err(V2_HOST);
    };
    if let Err(e) = h.check_controllers() {
        eprintln!("{name}: {e}");
        return Err(V1_CONTROLLERS);
    }
    let root = format!("/ironlet-test-{}-{name}", std::process::id());
    let dirs = h
        .mounts()
        .iter()
        .map(|m| m.dir.join(root.trim_start_matches('/')))
        .collect();
    Ok((h, root, Cleanup { dirs }))
}

fn burstable_pod() -> crate::resources::PodResources {
    pod(
        serde_json::json!({"containers": [{"name": "a", "resources": {
        "requests": {"cpu": "250m", "memory": "32Mi"},
        "limits": {"cpu": "500m", "memory": "64Mi"}}}]}),
    )
}

#[test]
fn real_v1_qos_hierarchy_and_pod_lifecycle() {
    let (h, root, _cleanup) = match real_v1("lifecycle") {
        Ok(v) => v,
        Err(reason) => return xtask::skipped!("real_v1_qos_hierarchy_and_pod_lifecycle", reason),
    };
    let mounts = h.mounts().to_vec();
    let cpu_mount = ok(h.mount_of("cpu")).to_path_buf();
    let mem_mount = ok(h.mount_of("memory")).to_path_buf();
    let pids_mount = ok(h.mount_of("pids")).to_path_buf();
    let cpuset_mount = h.mount_of("cpuset").ok().map(Path::to_path_buf);
    let pods = PodCgroups::new(Hierarchy::V1(h), ok(CgroupLayout::new(&root, true)));
    assert_eq!(pods.hierarchy().version(), CgroupVersion::V1);

    let allocatable = PodLimits {
        cpu_shares: Some(2048),
        memory_limit: Some(1 << 30),
        ..PodLimits::default()
    };
    ok(pods.ensure_qos_hierarchy(Some(&allocatable)));
    // Idempotent.
    ok(pods.ensure_qos_hierarchy(Some(&allocatable)));
    let rel = |p: &str| format!("{}/{p}", root.trim_start_matches('/'));
    for m in &mounts {
        for qos in ["kubepods/burstable", "kubepods/besteffort"] {
            assert!(
                m.dir.join(rel(qos)).is_dir(),
                "{} in {}",
                qos,
                m.dir.display()
            );
        }
    }
    assert_eq!(
        read_trim(&cpu_mount.join(rel("kubepods/cpu.shares"))),
        "2048"
    );
    assert_eq!(
        read_trim(&mem_mount.join(rel("kubepods/memory.limit_in_bytes"))),
        "1073741824"
    );
    assert_eq!(
        read_trim(&cpu_mount.join(rel("kubepods/besteffort/cpu.shares"))),
        "2"
    );
    if let Some(cpuset) = &cpuset_mount {
        // New cpuset cgroups inherit their parent's cpus and mems instead of staying empty.
        let host_cpus = read_trim(&cpuset.join("cpuset.cpus"));
        assert!(!host_cpus.is_empty());
        assert_eq!(
            read_trim(&cpuset.join(rel("kubepods/burstable/cpuset.cpus"))),
            host_cpus
        );
        assert_eq!(
            read_trim(&cpuset.join(rel("kubepods/burstable/cpuset.mems"))),
            read_trim(&cpuset.join("cpuset.mems"))
        );
    }
    ok(pods.update_burstable_shares(1500));
    assert_eq!(
        read_trim(&cpu_mount.join(rel("kubepods/burstable/cpu.shares"))),
        "1536"
    );

    // A burstable pod with cpu and memory limits on every container.
    let p = burstable_pod();
    let limits = pod_cgroup_limits(&p, true, 100);
    let b = uid("0b1e7c2d-5a6f-4e3d-9c8b-7a6f5e4d3c2b");
    ok(pods.create_pod_cgroup(&b, p.qos, &limits));
    assert_eq!(
        ok(pods.pod_cgroup_parent(&b, p.qos)),
        format!("{root}/kubepods/burstable/pod0b1e7c2d-5a6f-4e3d-9c8b-7a6f5e4d3c2b")
    );
    let pod_dir = rel("kubepods/burstable/pod0b1e7c2d-5a6f-4e3d-9c8b-7a6f5e4d3c2b");
    assert_eq!(
        read_trim(&cpu_mount.join(&pod_dir).join("cpu.shares")),
        "256"
    );
    assert_eq!(
        read_trim(&cpu_mount.join(&pod_dir).join("cpu.cfs_period_us")),
        "100000"
    );
    assert_eq!(
        read_trim(&cpu_mount.join(&pod_dir).join("cpu.cfs_quota_us")),
        "50000"
    );
    assert_eq!(
        read_trim(&mem_mount.join(&pod_dir).join("memory.limit_in_bytes")),
        "67108864"
    );
    assert_eq!(
        read_trim(&pids_mount.join(&pod_dir).join("pids.max")),
        "100"
    );
    for m in &mounts {
        assert!(
            m.dir.join(&pod_dir).is_dir(),
            "pod cgroup missing in {}",
            m.dir.display()
        );
    }

    // A guaranteed pod sits directly under kubepods; a best-effort one gets shares 2 only.
    let g = uid("guaranteed-1");
    ok(pods.create_pod_cgroup(
        &g,
        QosClass::Guaranteed,
        &PodLimits {
            cpu_shares: Some(1024),
            cpu_quota: Some(100_000),
            cpu_period: Some(100_000),
            memory_limit: Some(128 << 20),
            pids_limit: None,
        },
    ));
    assert!(cpu_mount.join(rel("kubepods/podguaranteed-1")).is_dir());
    assert_eq!(
        read_trim(&pids_mount.join(rel("kubepods/podguaranteed-1/pids.max"))),
        "max"
    );
    let e = uid("besteffort-1");
    let be = pod(serde_json::json!({"containers": [{"name": "a"}]}));
    ok(pods.create_pod_cgroup(&e, be.qos, &pod_cgroup_limits(&be, true, -1)));
    assert_eq!(
        read_trim(&cpu_mount.join(rel("kubepods/besteffort/podbesteffort-1/cpu.shares"))),
        "2"
    );
    assert_eq!(
        read_trim(&cpu_mount.join(rel("kubepods/besteffort/podbesteffort-1/cpu.cfs_quota_us"))),
        "-1"
    );

    let mut listed = ok(pods.list_pod_cgroups());
    listed.sort_by(|a, b| a.uid.cmp(&b.uid));
    let summary: Vec<(String, Option<QosClass>)> =
        listed.iter().map(|c| (c.uid.0.clone(), c.qos)).collect();
    assert_eq!(
        summary,
        [
            (b.0.clone(), Some(QosClass::Burstable)),
            (e.0.clone(), Some(QosClass::BestEffort)),
            (g.0.clone(), Some(QosClass::Guaranteed)),
        ]
    );

    // A process left in the pod cgroup keeps it: Busy, and the other hierarchies are still
    // cleaned. Once the process is gone the retry succeeds.
    let mut child = ok(std::process::Command::new("sleep").arg("60").spawn());
    let procs = pids_mount.join(&pod_dir).join("cgroup.procs");
    ok(HostIo.write(&procs, &child.id().to_string()));
    // A leftover child cgroup (as a crashed runtime might leave) is removed depth-first.
    ok(std::fs::create_dir(
        cpu_mount.join(&pod_dir).join("leftover"),
    ));
    let busy = pods.remove_pod_cgroup(&b);
    assert!(busy.as_ref().is_err_and(CgroupError::is_busy), "{busy:?}");
    assert!(!cpu_mount.join(&pod_dir).exists());
    assert!(pids_mount.join(&pod_dir).exists());
    ok(child.kill());
    ok(child.wait());
    let mut removed = pods.remove_pod_cgroup(&b);
    for _ in 0..50 {
        if !removed.as_ref().is_err_and(CgroupError::is_busy) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        removed = pods.remove_pod_cgroup(&b);
    }
    ok(removed);
    for m in &mounts {
        assert!(
            !m.dir.join(&pod_dir).exists(),
            "left in {}",
            m.dir.display()
        );
    }
    ok(pods.remove_pod_cgroup(&g));
    ok(pods.remove_pod_cgroup(&e));
    // Removing what is already gone is fine.
    ok(pods.remove_pod_cgroup(&g));
    assert!(ok(pods.list_pod_cgroups()).is_empty());
}

#[test]
fn real_v1_flat_layout() {
    let (h, root, _cleanup) = match real_v1("flat") {
        Ok(v) => v,
        Err(reason) => return xtask::skipped!("real_v1_flat_layout", reason),
    };
    let cpu_mount = ok(h.mount_of("cpu")).to_path_buf();
    let pods = PodCgroups::new(Hierarchy::V1(h), ok(CgroupLayout::new(&root, false)));
    ok(pods.ensure_qos_hierarchy(None));
    let rel = root.trim_start_matches('/');
    assert!(cpu_mount.join(rel).is_dir());
    assert!(!cpu_mount.join(rel).join("kubepods").exists());
    let u = uid("flat-1");
    ok(pods.create_pod_cgroup(
        &u,
        QosClass::Burstable,
        &PodLimits {
            cpu_shares: Some(512),
            ..PodLimits::default()
        },
    ));
    assert_eq!(
        ok(pods.pod_cgroup_parent(&u, QosClass::Burstable)),
        format!("{root}/podflat-1")
    );
    assert_eq!(
        read_trim(&cpu_mount.join(rel).join("podflat-1/cpu.shares")),
        "512"
    );
    let listed = ok(pods.list_pod_cgroups());
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].uid.clone(), listed[0].qos), (u.clone(), None));
    ok(pods.remove_pod_cgroup(&u));
    assert!(!cpu_mount.join(rel).join("podflat-1").exists());
}

/// A v2 tree in a temp dir offering `controllers`.
fn v2_fixture(controllers: &[&str]) -> (tempfile::TempDir, PathBuf, Arc<V2Fixture>, Hierarchy) {
    let dir = ok(tempfile::tempdir());
    let root = dir.path().to_path_buf();
    let fixture = Arc::new(ok(V2Fixture::new(&root, controllers)));
    let h = Hierarchy::V2(V2Hierarchy::new(fixture.clone(), &root));
    (dir, root, fixture, h)
}

#[test]
fn v2_fixture_qos_hierarchy_and_pod_lifecycle() {
    let (_dir, fs_root, k, h) = v2_fixture(&["cpuset", "cpu", "io", "memory", "pids"]);
    let pods = PodCgroups::new(h, ok(CgroupLayout::new("/ironlet", true)));
    assert_eq!(pods.hierarchy().version(), CgroupVersion::V2);
    ok(pods.ensure_qos_hierarchy(Some(&PodLimits {
        cpu_shares: Some(2048),
        memory_limit: Some(1 << 30),
        ..PodLimits::default()
    })));
    ok(pods.ensure_qos_hierarchy(None));
    let at = |p: &str| fs_root.join(p);
    // Controllers are enabled all the way down to the QoS cgroups.
    for dir in ["", "ironlet", "ironlet/kubepods"] {
        assert_eq!(
            read_trim(&at(dir).join("cgroup.subtree_control")),
            "cpuset cpu io memory pids",
            "{dir}"
        );
    }
    assert_eq!(read_trim(&at("ironlet/kubepods/cpu.weight")), "79");
    assert_eq!(read_trim(&at("ironlet/kubepods/memory.max")), "1073741824");
    assert_eq!(
        read_trim(&at("ironlet/kubepods/besteffort/cpu.weight")),
        "1"
    );
    assert_eq!(
        read_trim(&at("ironlet/kubepods/burstable/cpu.weight")),
        "100"
    );

    let p = burstable_pod();
    let u = uid("b-1");
    ok(pods.create_pod_cgroup(&u, p.qos, &pod_cgroup_limits(&p, true, 100)));
    let pod_dir = at("ironlet/kubepods/burstable/podb-1");
    assert_eq!(
        read_trim(&pod_dir.join("cgroup.controllers")),
        "cpuset cpu io memory pids"
    );
    assert_eq!(read_trim(&pod_dir.join("cgroup.subtree_control")), "");
    assert_eq!(read_trim(&pod_dir.join("cpu.weight")), "10");
    assert_eq!(read_trim(&pod_dir.join("cpu.max")), "50000 100000");
    assert_eq!(read_trim(&pod_dir.join("memory.max")), "67108864");
    assert_eq!(read_trim(&pod_dir.join("pids.max")), "100");

    // A limit that is not page-aligned reads back rounded down, as on the kernel.
    let g = uid("g-1");
    ok(pods.create_pod_cgroup(
        &g,
        QosClass::Guaranteed,
        &PodLimits {
            cpu_shares: Some(1024),
            cpu_quota: Some(150_000),
            cpu_period: Some(100_000),
            memory_limit: Some(1_000_000),
            pids_limit: None,
        },
    ));
    assert_eq!(
        read_trim(&at("ironlet/kubepods/podg-1/memory.max")),
        "999424"
    );
    assert_eq!(
        read_trim(&at("ironlet/kubepods/podg-1/cpu.max")),
        "150000 100000"
    );
    assert_eq!(read_trim(&at("ironlet/kubepods/podg-1/pids.max")), "max");
    // The sandbox parent is the cgroupfs path from the hierarchy root.
    assert_eq!(
        ok(pods.pod_cgroup_parent(&g, QosClass::Guaranteed)),
        "/ironlet/kubepods/podg-1"
    );

    let mut uids: Vec<String> = ok(pods.list_pod_cgroups())
        .into_iter()
        .map(|c| c.uid.0)
        .collect();
    uids.sort();
    assert_eq!(uids, ["b-1", "g-1"]);

    // Busy while a process is in it; a leftover container cgroup goes first.
    ok(k.create_dir(&pod_dir.join("leftover")));
    ok(k.write(&pod_dir.join("cgroup.procs"), "4242"));
    let busy = pods.remove_pod_cgroup(&u);
    assert!(busy.as_ref().is_err_and(CgroupError::is_busy), "{busy:?}");
    assert!(!pod_dir.join("leftover").exists());
    // The process exits.
    ok(std::fs::write(pod_dir.join("cgroup.procs"), ""));
    ok(pods.remove_pod_cgroup(&u));
    assert!(!pod_dir.exists());
    ok(pods.remove_pod_cgroup(&g));
    assert!(ok(pods.list_pod_cgroups()).is_empty());
}

#[test]
fn v2_fixture_refuses_a_tree_without_required_controllers() {
    let (_dir, _root, _k, h) = v2_fixture(&["cpu", "memory"]);
    let pods = PodCgroups::new(h, ok(CgroupLayout::new("", true)));
    let err = pods.ensure_qos_hierarchy(None).err().map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.starts_with("cgroup controller \"pids\" is not available")),
        "{err:?}"
    );
}

/// The emulation's own rules, which the tests above rely on.
#[test]
fn v2_fixture_enforces_kernel_rules() {
    let dir = ok(tempfile::tempdir());
    let root = dir.path();
    let k = ok(V2Fixture::new(root, &["cpu", "memory"]));
    let kind = |r: std::io::Result<()>| r.err().map(|e| e.kind());
    ok(k.create_dir(&root.join("a")));
    // Nothing enabled yet: no controller files in the child.
    assert!(!root.join("a/cpu.weight").exists());
    assert_eq!(
        kind(k.write(&root.join("a/cpu.weight"), "5")),
        Some(std::io::ErrorKind::NotFound)
    );
    assert_eq!(
        kind(k.write(&root.join("cgroup.subtree_control"), "+pids")),
        Some(std::io::ErrorKind::NotFound)
    );
    ok(k.write(&root.join("cgroup.subtree_control"), "+memory"));
    ok(k.write(&root.join("cgroup.subtree_control"), "+cpu"));
    assert_eq!(
        read_trim(&root.join("cgroup.subtree_control")),
        "cpu memory"
    );
    // Enabling reaches existing children.
    assert_eq!(read_trim(&root.join("a/cgroup.controllers")), "cpu memory");
    assert_eq!(read_trim(&root.join("a/cpu.weight")), "100");
    assert_eq!(
        kind(k.write(&root.join("a/cpu.weight"), "0")),
        Some(std::io::ErrorKind::InvalidInput)
    );
    assert_eq!(
        kind(k.write(&root.join("a/cpu.max"), "500 100000")),
        Some(std::io::ErrorKind::InvalidInput)
    );
    ok(k.write(&root.join("a/cpu.max"), "20000"));
    assert_eq!(read_trim(&root.join("a/cpu.max")), "20000 100000");
    assert_eq!(
        kind(k.write(&root.join("a/cgroup.controllers"), "cpu")),
        Some(std::io::ErrorKind::PermissionDenied)
    );
    // No internal processes: a cgroup with tasks cannot enable controllers for children.
    ok(k.write(&root.join("a/cgroup.procs"), "7"));
    assert_eq!(
        kind(k.write(&root.join("a/cgroup.subtree_control"), "+cpu")),
        Some(std::io::ErrorKind::ResourceBusy)
    );
    assert_eq!(
        kind(k.remove_dir(&root.join("a"))),
        Some(std::io::ErrorKind::ResourceBusy)
    );
    assert_eq!(
        kind(k.remove_dir(root)),
        Some(std::io::ErrorKind::ResourceBusy)
    );
    assert_eq!(
        kind(k.create_dir(&root.join("missing/b"))),
        Some(std::io::ErrorKind::NotFound)
    );
}

/// Checks the emulation against the running kernel, on a hybrid host's `unified` cgroup2
/// tree: the core files of a new cgroup, `cgroup.controllers` inheritance, `ENOENT` for an
/// unavailable controller, `EBUSY` for a cgroup with children. Also checks that the real v2
/// code refuses that tree, which lacks cpu/memory/pids.
#[test]
fn fixture_matches_the_running_kernel() {
    let unified = Path::new("/sys/fs/cgroup/unified");
    let real_root = if cgroups_rs::fs::hierarchies::is_cgroup2_unified_mode() {
        Path::new("/sys/fs/cgroup")
    } else {
        unified
    };
    if !is_root() || !real_root.join("cgroup.controllers").is_file() {
        return xtask::skipped!("fixture_matches_the_running_kernel", NO_CGROUP2);
    }
    let real = real_root.join(format!("ironlet-fixture-check-{}", std::process::id()));
    let _cleanup = Cleanup {
        dirs: vec![real.clone()],
    };
    ok(HostIo.create_dir(&real));
    for (file, _) in CORE_FILES {
        assert!(real.join(file).is_file(), "the kernel has no {file}");
    }
    assert_eq!(
        read_trim(&real.join("cgroup.controllers")),
        read_trim(&real_root.join("cgroup.subtree_control"))
    );
    assert_eq!(read_trim(&real.join("cgroup.subtree_control")), "");
    assert_eq!(read_trim(&real.join("cgroup.type")), "domain");
    assert_eq!(read_trim(&real.join("cgroup.procs")), "");

    let available = read_trim(&real.join("cgroup.controllers"));
    let absent = ["cpu", "memory", "pids", "io"]
        .into_iter()
        .find(|c| !available.split_whitespace().any(|a| a == *c));
    let dir = ok(tempfile::tempdir());
    let k = ok(V2Fixture::new(dir.path(), &[]));
    ok(k.create_dir(&dir.path().join("a")));
    if let Some(absent) = absent {
        let real_err = HostIo.write(&real.join("cgroup.subtree_control"), &format!("+{absent}"));
        let fake_err = k.write(
            &dir.path().join("a/cgroup.subtree_control"),
            &format!("+{absent}"),
        );
        assert_eq!(
            real_err.err().map(|e| e.kind()),
            fake_err.err().map(|e| e.kind())
        );
    }
    let real_write = HostIo
        .write(&real.join("cgroup.controllers"), "x")
        .err()
        .map(|e| e.kind());
    assert!(
        real_write.is_some(),
        "the kernel accepted a write to cgroup.controllers"
    );
    assert_eq!(
        HostIo
            .write(&real.join("no.such.file"), "1")
            .err()
            .map(|e| e.kind()),
        k.write(&dir.path().join("a/no.such.file"), "1")
            .err()
            .map(|e| e.kind())
    );
    ok(HostIo.create_dir(&real.join("child")));
    ok(k.create_dir(&dir.path().join("a/child")));
    assert_eq!(
        HostIo.remove_dir(&real).err().map(|e| e.kind()),
        k.remove_dir(&dir.path().join("a")).err().map(|e| e.kind())
    );
    ok(HostIo.remove_dir(&real.join("child")));
    ok(HostIo.remove_dir(&real));

    if real_root == unified {
        let h = V2Hierarchy::new(Arc::new(HostIo), unified);
        let err = h.check_controllers().err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("is not available at /sys/fs/cgroup/unified")),
            "{err:?}"
        );
    }
}
