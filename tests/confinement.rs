//! Self-confinement on this machine's kernel: the running agent's /proc status on every
//! thread, the probe under the agent's real plan while pods keep running, the mount
//! helper (memory emptyDir on a real containerd, and its refusals), and the capabilities
//! the agent keeps. Needs root (it runs containerd and mounts).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod support;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ironlet::confine::helper::proto::{self, Request, Status, VolumePath};
use ironlet::confine::inspect;
use support::*;

const T: Duration = Duration::from_secs(60);

fn status_of(pid: u32) -> Vec<inspect::TaskStatus> {
    inspect::tasks(pid).expect("read /proc/<pid>/task")
}

/// Lazily unmounts everything under a directory when dropped.
struct UnmountOnDrop(std::path::PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        let _ = xtask::teardown::unmount_under(&self.0);
    }
}

fn mounted(path: &Path) -> bool {
    let text = read_file(Path::new("/proc/self/mountinfo"));
    let p = path.to_string_lossy();
    text.lines()
        .any(|l| l.split_whitespace().nth(4) == Some(p.as_ref()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_agent_thread_runs_with_no_new_privs_seccomp_and_the_reduced_capabilities() {
    let mut node = Node::new();
    node.write_manifest("idle.yaml", &pod_manifest("idle", "sleep 3600", ""));
    node.start_agent();
    node.wait_running("idle", &["main"], T).await;
    let threads = status_of(node.agent_pid());
    assert!(threads.len() >= 3, "runtime threads exist: {threads:?}");
    for t in &threads {
        assert_eq!(t.no_new_privs, Some(1), "thread {}", t.tid);
        assert_eq!(t.seccomp, Some(2), "thread {}", t.tid);
        assert_eq!(
            t.cap_eff,
            ["CAP_DAC_OVERRIDE", "CAP_FOWNER"],
            "thread {}",
            t.tid
        );
        assert_eq!(t.cap_prm, t.cap_eff, "thread {}", t.tid);
        assert_eq!(t.cap_bnd, t.cap_eff, "thread {}", t.tid);
        assert!(
            t.cap_inh.is_empty() && t.cap_amb.is_empty(),
            "thread {}",
            t.tid
        );
    }

    // The command reports the same, from /proc, and the helper's state.
    let human = node.cli(&["confinement"]);
    assert!(human.contains("confined: yes"), "{human}");
    assert!(
        human.contains("effective capabilities: CAP_DAC_OVERRIDE,CAP_FOWNER"),
        "{human}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&node.cli(&["confinement", "-o", "json"])).unwrap();
    assert_eq!(json["agent_confined"], true, "{json:#}");
    assert_eq!(json["helper_confined"], true, "{json:#}");
    assert_eq!(json["record"]["insecure"], false);
    assert_eq!(json["record"]["landlock"]["ruleset"], "full", "{json:#}");
    assert!(json["record"]["landlock"]["kernel_abi"].as_i64().unwrap() >= 6);
    let helper_pid = json["helper"]["pid"].as_u64().unwrap() as u32;
    for t in status_of(helper_pid) {
        assert_eq!(t.cap_eff, ["CAP_SYS_ADMIN"]);
        assert_eq!(t.cap_bnd, ["CAP_SYS_ADMIN"]);
        assert_eq!((t.no_new_privs, t.seccomp), (Some(1), Some(2)));
    }

    // The helper goes away with the agent.
    node.kill_agent();
    wait_for("the helper exits with the agent", T, || async move {
        (!Path::new(&format!("/proc/{helper_pid}")).exists()).then_some(())
    })
    .await;
    node.cleanup().await;
}

fn probe(node: &Node, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ironlet"))
        .args(["confinement", "probe", "--config"])
        .arg(node.dir.path().join("config.yaml"))
        .arg("--root-dir")
        .arg(node.root())
        .args(["--hostname-override", NODE])
        .args(extra)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_under_the_real_plan_is_refused_everything_while_pods_keep_running() {
    let mut node = Node::new();
    node.write_manifest("keep.yaml", &pod_manifest("keep", "sleep 3600", ""));
    node.start_agent();
    let sb = node.wait_running("keep", &["main"], T).await;
    let before = node.containers_in(&sb.id).await;
    // Issue 15, finding 9: the target of the probe's mode changes by path, judged here.
    let chmod_target = node.root().join("pods").join(".probe-chmod");
    std::fs::write(&chmod_target, b"").unwrap();
    std::fs::set_permissions(&chmod_target, std::fs::Permissions::from_mode(0o640)).unwrap();

    let out = probe(&node, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got = |check: &str| {
        results
            .iter()
            .find(|r| r["check"].as_str().unwrap().starts_with(check))
            .unwrap_or_else(|| panic!("no {check} in {stdout}"))["got"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(got("read /etc/shadow"), "EACCES");
    assert_eq!(got("write /var/tmp"), "EACCES");
    assert_eq!(got("write /etc"), "EACCES");
    for sc in ["mount tmpfs", "ptrace", "kexec_load", "init_module", "bpf"] {
        assert_eq!(got(sc), "EPERM", "{sc}");
    }
    // Issue 15, finding 9: argument filters.
    assert_eq!(got("clone CLONE_NEWUSER"), "EPERM");
    assert_eq!(got("clone CLONE_NEWNET"), "EPERM");
    assert_eq!(got("clone3"), "ENOSYS");
    assert_eq!(got("socket AF_ALG"), "EAFNOSUPPORT");
    // Landlock does not mediate chmod: the filter refuses every mode change by path, and
    // the file's mode on disk is what it was.
    for sc in ["chmod by path", "fchmodat by path", "fchmodat2 by path"] {
        assert_eq!(got(sc), "EPERM", "{sc}");
    }
    assert_eq!(
        std::fs::metadata(&chmod_target)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o640
    );
    assert_eq!(got("fchmod a file opened under --root-dir"), "succeeded");
    assert_eq!(got("start a thread"), "succeeded");
    assert_eq!(got("write and remove a file under --root-dir"), "succeeded");
    assert!(results.iter().all(|r| r["ok"] == true), "{stdout}");

    // A system call that no policy lists takes the default action: the process is killed.
    let out = probe(&node, &["--unlisted"]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{:?}", out.status);

    // Meanwhile the agent and its pod carried on untouched.
    assert!(node.agent_running());
    let after = node.containers_in(&sb.id).await;
    assert_eq!(
        before.iter().map(|c| &c.id).collect::<Vec<_>>(),
        after.iter().map(|c| &c.id).collect::<Vec<_>>()
    );
    node.wait_running("keep", &["main"], T).await;
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_empty_dir_is_a_tmpfs_from_the_helper_and_is_unmounted_with_the_pod() {
    let mut node = Node::new();
    node.write_manifest(
        "mem.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: mem\nspec:\n  terminationGracePeriodSeconds: 1\n  volumes:\n  - name: cache\n    emptyDir: {{medium: Memory, sizeLimit: 16Mi}}\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sh, -c, 'echo hi > /data/f; grep \" /data \" /proc/mounts; df -k /data | tail -1; sleep 3600']\n    volumeMounts:\n    - {{name: cache, mountPath: /data}}\n"
        ),
    );
    // A failing assertion must not leave the tmpfs behind under /var/tmp.
    let _unmount = UnmountOnDrop(node.dir.path().to_path_buf());
    node.start_agent();
    let sb = node.wait_running("mem", &["main"], T).await;
    let uid = sb.metadata.as_ref().unwrap().uid.clone();
    let host_dir = node
        .root()
        .join(format!("pods/{uid}/volumes/kubernetes.io~empty-dir/cache"));
    let log = node
        .logs()
        .join(format!("default_mem-{NODE}_{uid}/main/0.log"));
    let text = wait_for("the container reports its mounts", T, || {
        let log = log.clone();
        async move {
            let l = read_file(&log);
            l.contains("16384").then_some(l)
        }
    })
    .await;
    assert!(text.contains("tmpfs /data tmpfs"), "{text}");
    assert!(mounted(&host_dir), "tmpfs on {}", host_dir.display());
    assert_eq!(read_file(&host_dir.join("f")), "hi\n");
    assert!(node.agent_log(1).contains("mounted tmpfs (size 16777216)"));

    node.remove_manifest("mem.yaml");
    wait_for("pod directory removed", T, || {
        let p = node.root().join(format!("pods/{uid}"));
        async move { (!p.exists()).then_some(()) }
    })
    .await;
    assert!(!mounted(&host_dir), "still mounted: {}", host_dir.display());
    assert!(
        node.agent_log(1)
            .contains(&format!("unmounted {uid}/volumes/"))
    );
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_other_users_leave_in_volumes_are_removed_with_the_pod() {
    // Why CAP_DAC_OVERRIDE and CAP_FOWNER stay: uid 1000 leaves a 0700 directory and a
    // sticky directory with a file in it; the agent (root, without the rest) removes both.
    let mut node = Node::new();
    node.write_manifest(
        "other.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: other\nspec:\n  terminationGracePeriodSeconds: 1\n  securityContext: {{runAsUser: 1000}}\n  volumes:\n  - name: d\n    emptyDir: {{}}\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sh, -c, 'mkdir -p /d/private/sub && echo x > /d/private/sub/f && chmod 700 /d/private; mkdir -m 1777 /d/sticky && echo y > /d/sticky/f; touch /d/done; sleep 3600']\n    volumeMounts:\n    - {{name: d, mountPath: /d}}\n"
        ),
    );
    node.start_agent();
    let sb = node.wait_running("other", &["main"], T).await;
    let uid = sb.metadata.as_ref().unwrap().uid.clone();
    let vol = node
        .root()
        .join(format!("pods/{uid}/volumes/kubernetes.io~empty-dir/d"));
    wait_for("the container wrote its files", T, || {
        let done = vol.join("done");
        async move { done.exists().then_some(()) }
    })
    .await;
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(vol.join("private")).unwrap().uid(), 1000);
    node.remove_manifest("other.yaml");
    wait_for("pod directory removed", T, || {
        let p = node.root().join(format!("pods/{uid}"));
        async move { (!p.exists()).then_some(()) }
    })
    .await;
    node.cleanup().await;
}

/// A mount helper started by the test, as the agent starts it.
struct Helper {
    child: std::process::Child,
    conn: UnixStream,
}

impl Helper {
    fn start(pods: &Path) -> Helper {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let out = theirs.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ironlet"))
            .args(["mount-helper", "--pods-dir"])
            .arg(pods)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::from(OwnedFd::from(out)))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        ours.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Helper { child, conn: ours }
    }

    fn raw(&mut self, frame: &[u8]) -> (Status, String) {
        self.conn.write_all(frame).unwrap();
        let mut prefix = [0u8; 4];
        self.conn.read_exact(&mut prefix).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
        self.conn.read_exact(&mut body).unwrap();
        proto::decode_response(&body).unwrap()
    }

    fn call(&mut self, req: Request) -> (Status, String) {
        self.raw(&proto::encode_request(&req))
    }
}

fn vp(uid: &str, name: &str) -> VolumePath {
    VolumePath::new(uid, "kubernetes.io~empty-dir", name).unwrap()
}

#[test]
fn the_helper_mounts_only_beneath_the_pods_volume_dirs_symlink_tricks_included() {
    let dir = tempfile::Builder::new()
        .prefix("ironlet-helper-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let _unmount = UnmountOnDrop(dir.path().to_path_buf());
    let pods = dir.path().join("pods");
    let outside = dir.path().join("outside");
    let plugin = |uid: &str| pods.join(uid).join("volumes/kubernetes.io~empty-dir");
    std::fs::create_dir_all(plugin("good").join("vol")).unwrap();
    std::fs::create_dir_all(outside.join("volumes/kubernetes.io~empty-dir/vol")).unwrap();
    // The volume itself is a symlink out.
    std::fs::create_dir_all(plugin("a")).unwrap();
    std::os::unix::fs::symlink(&outside, plugin("a").join("vol")).unwrap();
    // A parent is a symlink out.
    std::os::unix::fs::symlink(&outside, pods.join("b")).unwrap();
    // A relative symlink that climbs out with '..'.
    std::fs::create_dir_all(pods.join("c/volumes")).unwrap();
    std::os::unix::fs::symlink(
        "../../../outside/volumes/kubernetes.io~empty-dir",
        pods.join("c/volumes/kubernetes.io~empty-dir"),
    )
    .unwrap();
    // A symlink that stays inside still counts: no symlinks at all.
    std::fs::create_dir_all(plugin("d")).unwrap();
    std::os::unix::fs::symlink(plugin("good").join("vol"), plugin("d").join("vol")).unwrap();

    let mut h = Helper::start(&pods);
    for uid in ["a", "b", "c", "d"] {
        let (st, msg) = h.call(Request::MountTmpfs {
            path: vp(uid, "vol"),
            size: 1 << 20,
        });
        assert_eq!(st, Status::Refused, "{uid}: {msg}");
    }
    assert!(!mounted(
        &outside.join("volumes/kubernetes.io~empty-dir/vol")
    ));
    assert!(!mounted(&outside));

    // Frames the decoder refuses: a '..' path, an unknown plugin, a bad version.
    let mut frame = proto::encode_request(&Request::Unmount {
        path: vp("good", "vol"),
    });
    let n = frame.len();
    frame[n - 3..].copy_from_slice(b"../");
    let (st, msg) = h.raw(&frame);
    assert_eq!(st, Status::Refused, "{msg}");
    let mut frame = proto::encode_request(&Request::Unmount {
        path: vp("good", "vol"),
    });
    frame[8] = 9;
    let (st, msg) = h.raw(&frame);
    assert_eq!((st, msg.contains("version 9")), (Status::Refused, true));

    // Unmounting something that is not a tmpfs is refused.
    let (st, msg) = h.call(Request::Unmount {
        path: vp("good", "vol"),
    });
    assert_eq!(st, Status::Refused, "{msg}");

    // The one legitimate request works, and is undone.
    let target = plugin("good").join("vol");
    let (st, msg) = h.call(Request::MountTmpfs {
        path: vp("good", "vol"),
        size: 1 << 20,
    });
    assert_eq!(st, Status::Ok, "{msg}");
    assert!(mounted(&target));
    // A second mount on top would cross into the tmpfs: refused (RESOLVE_NO_XDEV).
    let (st, _) = h.call(Request::MountTmpfs {
        path: vp("good", "vol"),
        size: 1 << 20,
    });
    assert_eq!(st, Status::Refused);
    let (st, msg) = h.call(Request::Unmount {
        path: vp("good", "vol"),
    });
    assert_eq!(st, Status::Ok, "{msg}");
    assert!(!mounted(&target));

    // The helper ends when its peer goes away.
    drop(h.conn);
    let status = h.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_insecure_flag_disables_confinement_loudly_and_is_recorded() {
    let node = Node::new();
    // Start by hand with the flag.
    let log = std::fs::File::create(node.dir.path().join("insecure.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ironlet"))
        .args(["run", "--insecure-disable-confinement", "--config"])
        .arg(node.dir.path().join("config.yaml"))
        .arg("--container-runtime-endpoint")
        .arg(node.containerd.as_ref().unwrap().endpoint())
        .arg("--root-dir")
        .arg(node.root())
        .args(["--hostname-override", NODE])
        .stderr(log)
        .spawn()
        .unwrap();
    let root = node.root();
    wait_for("the record", T, || {
        let p = root.join("status/confinement.json");
        async move { p.exists().then_some(()) }
    })
    .await;
    let out = Command::new(env!("CARGO_BIN_EXE_ironlet"))
        .args(["confinement", "-o", "json", "--root-dir"])
        .arg(node.root())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an unconfined agent is reported as a failure"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["record"]["insecure"], true);
    assert_eq!(json["agent_confined"], false);
    let st = status_of(child.id());
    assert_eq!(st[0].seccomp, Some(0));
    let _ = child.kill();
    let _ = child.wait();
    let text = read_file(&node.dir.path().join("insecure.log"));
    assert!(
        text.contains("INSECURE: --insecure-disable-confinement"),
        "{text}"
    );
    node.cleanup().await;
}
