//! The workload boundary for volumes, on a real containerd and the real kernel, judged from
//! the host: a pod author who plants symlinks behind a subPath (before a restart, from an
//! init container, or racing the restarts) reaches nothing outside the volume: the host
//! canary keeps its content and mtime, and the host mount table never holds a mount below
//! the pods directory whose source is outside a volume. Volume names with `../` are the
//! manifest's error. Legitimate subPaths (file, directory shared between containers,
//! subPathExpr) work, and their mounts are gone with the pod, also when it goes while the
//! agent is down. Untrusted manifests are refused one by one. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod support;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ironlet::confine::helper::proto::{self, Request, Status, SubPath, SubPathMount, VolumePath};
use support::*;

const T: Duration = Duration::from_secs(60);

/// Lazily unmounts everything under a directory when dropped, so a failing assertion
/// leaves no mount behind under /var/tmp.
struct UnmountOnDrop(PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        let _ = xtask::teardown::unmount_under(&self.0);
    }
}

/// (root within its file system, mount point) of every host mount at or below `dir`.
fn mounts_below(dir: &Path) -> Vec<(String, String)> {
    let d = dir.to_string_lossy().into_owned();
    read_file(Path::new("/proc/self/mountinfo"))
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let (root, point) = (f.get(3)?, f.get(4)?);
            (point.starts_with(&format!("{d}/")) || *point == d)
                .then(|| (root.to_string(), point.to_string()))
        })
        .collect()
}

/// Every mount below the pods directory must come from inside an emptyDir volume of the
/// pod it belongs to (a memory emptyDir is a tmpfs whose root is `/`, on its own volume).
fn assert_no_mount_outside_volumes(pods: &Path, canary: &Path) {
    for (root, point) in mounts_below(pods) {
        let inside_volume = root.contains("/volumes/kubernetes.io~empty-dir/")
            || point.contains("/volumes/kubernetes.io~empty-dir/");
        assert!(
            inside_volume,
            "mount {point} comes from {root}, outside any volume"
        );
        let canary = canary.to_string_lossy();
        assert!(
            !root.contains(canary.as_ref()),
            "mount {point} exposes the canary {root}"
        );
    }
}

/// A host directory outside the pods directory, with a file the attacker wants.
struct Canary {
    dir: PathBuf,
    mtime: (i64, i64),
}

impl Canary {
    fn plant(node: &Node) -> Canary {
        let dir = node.dir.path().join("canary");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret"), "canary\n").unwrap();
        let m = std::fs::metadata(dir.join("secret")).unwrap();
        Canary {
            dir,
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }

    fn assert_untouched(&self) {
        let secret = self.dir.join("secret");
        assert_eq!(read_file(&secret), "canary\n", "the canary was written");
        let m = std::fs::metadata(&secret).unwrap();
        assert_eq!(
            (m.mtime(), m.mtime_nsec()),
            self.mtime,
            "the canary changed"
        );
        let names: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"], "something was created in the canary dir");
        assert!(
            mounts_below(&self.dir).is_empty()
                && !read_file(Path::new("/proc/self/mountinfo"))
                    .contains(&*self.dir.to_string_lossy()),
            "the canary dir appears in the host mount table"
        );
    }
}

/// The waiting reason and message of container `name` (init or app) of a static pod.
fn waiting(node: &Node, pod: &str, name: &str) -> Option<(String, String)> {
    let pods = node.view_pods()?;
    let p = pods
        .iter()
        .find(|p| p["metadata"]["name"] == format!("{pod}-{NODE}"))?;
    let all = p["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            p["status"]["initContainerStatuses"]
                .as_array()
                .into_iter()
                .flatten(),
        );
    for c in all {
        if c["name"] == name {
            let w = &c["state"]["waiting"];
            return Some((
                w["reason"].as_str()?.to_string(),
                w["message"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    None
}

async fn wait_config_error(node: &Node, pod: &str, container: &str, needle: &str) -> String {
    wait_for(
        &format!("{pod}/{container}: CreateContainerConfigError naming {needle}"),
        T,
        || async {
            let (reason, message) = waiting(node, pod, container)?;
            (reason == "CreateContainerConfigError" && message.contains(needle)).then_some(message)
        },
    )
    .await
}

fn pod_uid(sb: &ironlet::cri::api::PodSandbox) -> String {
    sb.metadata.as_ref().unwrap().uid.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_symlinks_and_races_behind_a_sub_path_never_reach_the_host() {
    let mut node = Node::new();
    let _unmount = UnmountOnDrop(node.dir.path().to_path_buf());
    let canary = Canary::plant(&node);
    let c = canary.dir.display();
    // 1. Before a restart: the first start is legitimate; the container then swaps its
    //    subPath directory for a link to the canary and exits. If the next start followed
    //    the link, it would overwrite the canary.
    let plant = format!(
        "if [ -e /vol/planted ]; then echo pwned > /sub/secret; sleep 3600; fi; \
         touch /vol/planted; rm -rf /vol/sub; ln -s {c} /vol/sub; exit 1"
    );
    node.write_manifest(
        "plant.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: plant\nspec:\n  terminationGracePeriodSeconds: 1\n  volumes:\n  - name: data\n    emptyDir: {{}}\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sh, -c, {plant:?}]\n    volumeMounts:\n    - {{name: data, mountPath: /vol}}\n    - {{name: data, mountPath: /sub, subPath: sub}}\n"
        ),
    );
    // 2. From an init container, with a link to the host's `/`.
    node.write_manifest(
        "init.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: init\nspec:\n  terminationGracePeriodSeconds: 1\n  volumes:\n  - name: data\n    emptyDir: {{}}\n  initContainers:\n  - name: plant\n    image: {BUSYBOX}\n    command: [sh, -c, 'ln -s / /vol/root && ln -s {c} /vol/canary']\n    volumeMounts:\n    - {{name: data, mountPath: /vol}}\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sh, -c, 'echo pwned > /r/etc/ironlet-pwned; echo pwned > /c/secret; sleep 3600']\n    volumeMounts:\n    - {{name: data, mountPath: /r, subPath: root}}\n    - {{name: data, mountPath: /c, subPath: canary/}}\n"
        ),
    );
    // 3. A race: `racer` swaps `sub` between a directory and a link to the canary as fast
    //    as it can, while four victims keep restarting, each start resolving `sub` anew.
    let race = format!(
        "cd /vol && mkdir -p dir && ln -sfn {c} link; \
         while :; do mv dir sub; mv sub dir; mv link sub; mv sub link; done"
    );
    let victims: String = (1..=4)
        .map(|i| {
            format!(
                "  - name: v{i}\n    image: {BUSYBOX}\n    command: [sh, -c, 'echo pwned > /sub/secret; exit 1']\n    volumeMounts:\n    - {{name: data, mountPath: /sub, subPath: sub}}\n"
            )
        })
        .collect();
    node.write_manifest(
        "race.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: race\nspec:\n  terminationGracePeriodSeconds: 1\n  volumes:\n  - name: data\n    emptyDir: {{}}\n  containers:\n  - name: racer\n    image: {BUSYBOX}\n    command: [sh, -c, {race:?}]\n    volumeMounts:\n    - {{name: data, mountPath: /vol}}\n{victims}"
        ),
    );
    // 4. A volume named to climb out of the pod directory: the manifest's error.
    node.write_manifest(
        "escape.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: escape\nspec:\n  volumes:\n  - name: ok\n    emptyDir: {{}}\n  - name: ../../../escaped\n    emptyDir: {{}}\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sleep, '3600']\n    volumeMounts:\n    - {{name: ../../../escaped, mountPath: /e}}\n"
        ),
    );
    node.start_agent();
    let pods = node.root().join("pods");

    let m = wait_config_error(&node, "plant", "main", "volume \"data\" subPath \"sub\"").await;
    assert!(m.contains("symlink"), "{m}");
    let m = wait_config_error(&node, "init", "main", "volume \"data\" subPath \"root\"").await;
    assert!(m.contains("symlink"), "{m}");
    assert!(!Path::new("/etc/ironlet-pwned").exists());
    canary.assert_untouched();
    assert_no_mount_outside_volumes(&pods, &canary.dir);

    // The race, for a bounded time, sampling the host mount table throughout.
    let race = node.wait_running("race", &["racer"], T).await;
    let started = Instant::now();
    let mut samples = 0;
    while started.elapsed() < Duration::from_secs(35) {
        assert_no_mount_outside_volumes(&pods, &canary.dir);
        samples += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    canary.assert_untouched();
    let log = node.agent_log(1);
    let refused = log.matches("subPath refused").count();
    let starts = node
        .cri
        .list_containers()
        .await
        .unwrap()
        .iter()
        .filter(|c| {
            c.pod_sandbox_id == race.id
                && c.metadata.as_ref().is_some_and(|m| m.name.starts_with('v'))
        })
        .count();
    eprintln!(
        "race: {samples} mount table samples, {refused} starts refused, {starts} victim \
         containers created (each bound a directory that resolved inside the volume)"
    );
    assert!(refused + starts >= 4, "the race ran: {refused} + {starts}");

    // The escaping volume name: one error naming the field, no sandbox, nothing outside.
    assert!(
        log.contains("spec.volumes[1].name: \"../../../escaped\" is not a DNS-1123 label"),
        "{log}"
    );
    assert!(node.sandboxes("escape").await.is_empty());
    for p in [
        node.dir.path().join("escaped"),
        node.root().join("escaped"),
        pods.join("escaped"),
    ] {
        assert!(!p.exists(), "{} was created", p.display());
    }

    // Every subPath mount is gone with the pods.
    for f in ["plant.yaml", "init.yaml", "race.yaml"] {
        node.remove_manifest(f);
    }
    wait_for("pod directories removed", T, || {
        let pods = pods.clone();
        async move {
            let left = std::fs::read_dir(&pods).map(|d| d.count()).unwrap_or(0);
            (left == 0).then_some(())
        }
    })
    .await;
    assert_eq!(mounts_below(&pods), Vec::new());
    canary.assert_untouched();
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legitimate_sub_paths_work_and_their_mounts_go_with_the_pod() {
    let mut node = Node::new();
    let _unmount = UnmountOnDrop(node.dir.path().to_path_buf());
    // An init container writes a config file; `writer` mounts that file and a directory;
    // `reader` mounts the same directory and a subPathExpr directory of its own.
    let pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n  volumes:\n  - name: data\n    emptyDir: {{}}\n  - name: mem\n    emptyDir: {{medium: Memory}}\n  initContainers:\n  - name: setup\n    image: {BUSYBOX}\n    command: [sh, -c, 'mkdir -p /vol/conf && echo k=v > /vol/conf/app.conf']\n    volumeMounts:\n    - {{name: data, mountPath: /vol}}\n  containers:\n  - name: writer\n    image: {BUSYBOX}\n    command: [sh, -c, 'cat /etc/app.conf; echo hello > /out/hello; echo m > /m/f; sleep 3600']\n    volumeMounts:\n    - {{name: data, mountPath: /etc/app.conf, subPath: conf/app.conf, readOnly: true}}\n    - {{name: data, mountPath: /out, subPath: shared/dir}}\n    - {{name: mem, mountPath: /m, subPath: in-memory}}\n  - name: reader\n    image: {BUSYBOX}\n    command: [sh, -c, 'until [ -e /in/hello ]; do sleep 0.2; done; echo read $(cat /in/hello); echo mine > /mine/x; echo ro > /etc/app.conf || echo conf is read-only; sleep 3600']\n    env:\n    - name: POD_NAME\n      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}\n    volumeMounts:\n    - {{name: data, mountPath: /in, subPath: shared/dir}}\n    - {{name: data, mountPath: /mine, subPathExpr: 'per-pod/$(POD_NAME)'}}\n    - {{name: data, mountPath: /etc/app.conf, subPath: conf/app.conf, readOnly: true}}\n"
        )
    };
    node.write_manifest("good.yaml", &pod("good"));
    node.write_manifest("later.yaml", &pod("later"));
    node.write_manifest(
        "gone.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: gone\nspec:\n  terminationGracePeriodSeconds: 1\n  volumes:\n  - name: data\n    emptyDir: {{}}\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sleep, '3600']\n    volumeMounts:\n    - {{name: data, mountPath: /d, subPath: d}}\n"
        ),
    );
    node.start_agent();
    let sb = node.wait_running("good", &["writer", "reader"], T).await;
    let other = node.wait_running("later", &["writer", "reader"], T).await;
    let gone = node.wait_running("gone", &["main"], T).await;
    let uid = pod_uid(&sb);
    let vol = node
        .root()
        .join(format!("pods/{uid}/volumes/kubernetes.io~empty-dir/data"));
    let log_of = |c: &str| {
        node.logs()
            .join(format!("default_good-{NODE}_{uid}/{c}/0.log"))
    };
    wait_for("the reader read what the writer wrote", T, || {
        let (r, w) = (log_of("reader"), log_of("writer"));
        async move {
            (read_file(&r).contains("read hello") && read_file(&w).contains("k=v")).then_some(())
        }
    })
    .await;
    // Judged from the host: the files are where the subPaths say, inside the volume.
    assert_eq!(read_file(&vol.join("shared/dir/hello")), "hello\n");
    wait_for("subPathExpr file", T, || {
        let f = vol.join(format!("per-pod/good-{NODE}/x"));
        async move { (read_file(&f) == "mine\n").then_some(()) }
    })
    .await;
    assert!(read_file(&log_of("reader")).contains("conf is read-only"));
    assert_eq!(read_file(&vol.join("conf/app.conf")), "k=v\n");
    let mem = node
        .root()
        .join(format!("pods/{uid}/volumes/kubernetes.io~empty-dir/mem"));
    assert_eq!(read_file(&mem.join("in-memory/f")), "m\n");
    // Upstream's layout, one bind per container and volumeMount, visible on the host.
    let pod_dir = node.root().join(format!("pods/{uid}"));
    let points: Vec<String> = mounts_below(&pod_dir).into_iter().map(|m| m.1).collect();
    for t in [
        "volume-subpaths/data/writer/0",
        "volume-subpaths/data/writer/1",
        "volume-subpaths/mem/writer/2",
        "volume-subpaths/data/reader/0",
        "volume-subpaths/data/reader/1",
        "volume-subpaths/data/reader/2",
    ] {
        let p = pod_dir.join(t).to_string_lossy().into_owned();
        assert!(points.contains(&p), "{p} not in {points:?}");
    }

    // Deleted normally: every mount of the pod is gone, then its directory.
    node.remove_manifest("good.yaml");
    wait_for("pod directory removed", T, || {
        let p = pod_dir.clone();
        async move { (!p.exists()).then_some(()) }
    })
    .await;
    assert_eq!(mounts_below(&pod_dir), Vec::new());

    // Deleted while the agent is down: the restarted agent finds the orphan in the
    // runtime and unmounts its subPaths before removing its directory. The other one's
    // sandbox is gone as well, so only its directory is left: it is found there.
    let other_dir = node.root().join(format!("pods/{}", pod_uid(&other)));
    let gone_dir = node.root().join(format!("pods/{}", pod_uid(&gone)));
    assert!(!mounts_below(&other_dir).is_empty());
    assert_eq!(mounts_below(&gone_dir).len(), 1);
    node.kill_agent();
    node.remove_manifest("later.yaml");
    node.remove_manifest("gone.yaml");
    node.cri.stop_pod_sandbox(&gone.id).await.unwrap();
    node.cri.remove_pod_sandbox(&gone.id).await.unwrap();
    node.start_agent();
    for dir in [&other_dir, &gone_dir] {
        wait_for("orphan pod directory removed", T, || {
            let p = dir.clone();
            async move { (!p.exists()).then_some(()) }
        })
        .await;
        assert_eq!(mounts_below(dir), Vec::new());
    }
    assert_eq!(mounts_below(&node.root()), Vec::new());
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_manifests_are_refused_one_by_one_and_a_fifo_does_not_hang_the_agent() {
    use std::os::unix::fs::PermissionsExt;
    let mut node = Node::new();
    let dir = node.manifests();
    let write = |name: &str, mode: u32| {
        let p = dir.join(name);
        std::fs::write(
            &p,
            pod_manifest(name.trim_end_matches(".yaml"), "sleep 3600", ""),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    };
    write("gw.yaml", 0o664);
    let other = write("owned.yaml", 0o644);
    std::os::unix::fs::chown(&other, Some(65534), Some(65534)).unwrap();
    let outside = node.dir.path().join("linked.yaml");
    std::fs::write(&outside, pod_manifest("linked", "sleep 3600", "")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("linked.yaml")).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(dir.join("fifo.yaml"))
            .status()
            .unwrap()
            .success()
    );
    node.start_agent();
    // Written after the FIFO: if reading the FIFO blocked, this pod would never start.
    node.write_manifest(
        "good.yaml",
        &pod_manifest("good", "sleep 3600", "  terminationGracePeriodSeconds: 1\n"),
    );
    node.wait_running("good", &["main"], T).await;
    let log = wait_for("one error per untrusted file", T, || {
        let log = node.agent_log(1);
        async move { (log.matches("not trusted").count() >= 4).then_some(log) }
    })
    .await;
    for (f, why) in [
        ("gw.yaml", "is group-writable (mode 0664)"),
        ("owned.yaml", "is owned by uid 65534, not root"),
        ("linked.yaml", "is a symlink"),
        ("fifo.yaml", "is a FIFO"),
    ] {
        let needle = format!("{} {why}", dir.join(f).display());
        assert_eq!(log.matches(&needle).count(), 1, "{needle}\n{log}");
    }
    for p in ["gw", "owned", "linked", "fifo"] {
        assert!(node.sandboxes(p).await.is_empty(), "{p} got a sandbox");
    }
    // A world-writable directory: nothing in it is trusted, so no static pod runs.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    wait_for("the good pod is stopped", T, || async {
        node.sandboxes("good")
            .await
            .iter()
            .all(|s| s.state != ironlet::cri::api::PodSandboxState::SandboxReady as i32)
            .then_some(())
    })
    .await;
    let log = node.agent_log(1);
    assert!(
        log.contains(&format!(
            "static pod directory not trusted: {} is group- and world-writable (mode 0777)",
            dir.display()
        )),
        "{log}"
    );
    // Trusted again: static pods run from it again.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    node.write_manifest(
        "again.yaml",
        &pod_manifest(
            "again",
            "sleep 3600",
            "  terminationGracePeriodSeconds: 1\n",
        ),
    );
    node.wait_running("again", &["main"], T).await;
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

    fn call(&mut self, req: Request) -> (Status, String) {
        self.conn.write_all(&proto::encode_request(&req)).unwrap();
        let mut prefix = [0u8; 4];
        self.conn.read_exact(&mut prefix).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
        self.conn.read_exact(&mut body).unwrap();
        proto::decode_response(&body).unwrap()
    }
}

/// The helper's own resolution under a tight race (no containerd: thousands of attempts
/// in seconds). A thread swaps `sub` between a directory holding `inside` and a link to
/// the canary; every bind the helper reports as done must show the volume's file.
#[test]
fn the_helper_binds_only_what_resolves_inside_the_volume_even_under_a_race() {
    let dir = tempfile::Builder::new()
        .prefix("ironlet-subpath-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let _unmount = UnmountOnDrop(dir.path().to_path_buf());
    let pods = dir.path().join("pods");
    let vol = pods.join("u1/volumes/kubernetes.io~empty-dir/data");
    let canary = dir.path().join("canary");
    std::fs::create_dir_all(vol.join("dir")).unwrap();
    std::fs::write(vol.join("dir/which"), "inside\n").unwrap();
    std::fs::create_dir_all(&canary).unwrap();
    std::fs::write(canary.join("which"), "canary\n").unwrap();
    std::os::unix::fs::symlink(&canary, vol.join("link")).unwrap();
    let target = pods.join("u1/volume-subpaths/data/c/0");
    std::fs::create_dir_all(&target).unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racer = {
        let (stop, vol) = (stop.clone(), vol.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::rename(vol.join("dir"), vol.join("sub"));
                let _ = std::fs::rename(vol.join("sub"), vol.join("dir"));
                let _ = std::fs::rename(vol.join("link"), vol.join("sub"));
                let _ = std::fs::rename(vol.join("sub"), vol.join("link"));
                swaps += 1;
            }
            swaps
        })
    };
    let mut h = Helper::start(&pods);
    let mount = SubPathMount::new(
        VolumePath::new("u1", "kubernetes.io~empty-dir", "data").unwrap(),
        "c",
        0,
    )
    .unwrap();
    let (mut bound, mut refused) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let (st, msg) = h.call(Request::BindSubPath {
            mount: mount.clone(),
            sub_path: SubPath::parse("sub").unwrap(),
        });
        match st {
            Status::Ok => {
                bound += 1;
                assert_eq!(read_file(&target.join("which")), "inside\n", "{msg}");
                let (st, msg) = h.call(Request::UnmountSubPath {
                    mount: mount.clone(),
                });
                assert_eq!(st, Status::Ok, "{msg}");
            }
            Status::Refused => refused += 1,
            Status::Failed => panic!("bind failed: {msg}"),
        }
        assert!(mounts_below(&canary).is_empty());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = racer.join().unwrap();
    eprintln!("helper race: {bound} binds (all inside), {refused} refused, {swaps} swap rounds");
    assert!(bound + refused > 100, "{bound} + {refused}");
    assert!(refused > 0, "the race never hit the resolver");
    assert_eq!(read_file(&canary.join("which")), "canary\n");

    // A target that is still mounted is refused; the unmount peels it; a file subPath
    // needs a file target; a symlinked target directory is refused.
    // Wherever the racer stopped: put the link away and the directory at `sub`.
    if let Ok(m) = std::fs::symlink_metadata(vol.join("sub")) {
        let name = if m.file_type().is_symlink() {
            "link"
        } else {
            "dir"
        };
        std::fs::rename(vol.join("sub"), vol.join(name)).unwrap();
    }
    std::fs::remove_file(vol.join("link")).unwrap();
    std::fs::rename(vol.join("dir"), vol.join("sub")).unwrap();
    let bind = |h: &mut Helper, sub: &str| {
        h.call(Request::BindSubPath {
            mount: mount.clone(),
            sub_path: SubPath::parse(sub).unwrap(),
        })
    };
    assert_eq!(bind(&mut h, "sub").0, Status::Ok);
    assert_eq!(bind(&mut h, "sub").0, Status::Refused, "bound twice");
    assert_eq!(mounts_below(&target).len(), 1);
    let (st, msg) = h.call(Request::UnmountSubPath {
        mount: mount.clone(),
    });
    assert!(st == Status::Ok && msg.contains("1 mount"), "{msg}");
    let (st, msg) = bind(&mut h, "sub/which");
    assert!(st == Status::Refused && msg.contains("not a File"), "{msg}");
    std::fs::remove_dir(&target).unwrap();
    std::os::unix::fs::symlink(&canary, &target).unwrap();
    assert_eq!(bind(&mut h, "sub").0, Status::Refused);
    assert!(mounts_below(&canary).is_empty());
    assert!(mounts_below(&pods).is_empty());
    drop(h.conn);
    assert!(h.child.wait().unwrap().success());
}
