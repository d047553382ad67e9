//! Pod lifecycle against a real containerd: init containers, restart back-off, and what the
//! operator sees. Needs root (it runs containerd).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod support;

use std::time::Duration;

use ironlet::cri::api;
use support::*;

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_strictly_in_order_before_the_app() {
    let mut node = Node::new();
    node.write_manifest(
        "ordered.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ordered\nspec:\n  initContainers:\n  - name: first\n    image: {BUSYBOX}\n    command: [sh, -c, 'sleep 1; echo first']\n  - name: second\n    image: {BUSYBOX}\n    command: [sh, -c, 'sleep 1; echo second']\n  containers:\n  - name: app\n    image: {BUSYBOX}\n    command: [sh, -c, 'while true; do sleep 1; done']\n"
        ),
    );
    node.start_agent();
    let sb = node.wait_running("ordered", &["app"], T).await;
    let mut times = std::collections::HashMap::new();
    for c in node.containers_in(&sb.id).await {
        let st = node.cri.container_status(&c.id).await.unwrap();
        let name = st.metadata.as_ref().unwrap().name.clone();
        times.insert(
            name,
            (st.started_at, st.finished_at, st.exit_code, st.state),
        );
    }
    let (f_start, f_end, f_code, _) = times["first"];
    let (s_start, s_end, s_code, _) = times["second"];
    let (a_start, _, _, a_state) = times["app"];
    assert_eq!((f_code, s_code), (0, 0));
    assert!(
        f_end > f_start && s_start >= f_end,
        "second started before first ended"
    );
    assert!(
        a_start >= s_end,
        "app started before the init containers completed"
    );
    assert_eq!(a_state, api::ContainerState::ContainerRunning as i32);

    let pod = wait_for("Initialized in the view", T, || async {
        let p = node.view_pods()?.first()?.clone();
        (p["status"]["phase"] == "Running").then_some(p)
    })
    .await;
    let init = pod["status"]["initContainerStatuses"].as_array().unwrap();
    assert_eq!(init.len(), 2);
    assert!(
        init.iter()
            .all(|s| s["ready"] == true && s["state"]["terminated"]["reason"] == "Completed")
    );
    let initialized = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Initialized")
        .unwrap()
        .clone();
    assert_eq!(initialized["status"], "True");
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_init_container_fails_a_never_pod_and_blocks_the_app() {
    let mut node = Node::new();
    node.write_manifest(
        "broken-init.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: brokeninit\nspec:\n  restartPolicy: Never\n  initContainers:\n  - name: setup\n    image: {BUSYBOX}\n    command: [sh, -c, 'exit 7']\n  containers:\n  - name: app\n    image: {BUSYBOX}\n    command: [sh, -c, 'sleep 100']\n"
        ),
    );
    node.start_agent();
    let pod = wait_for("the pod Failed", T, || async {
        let p = node.view_pods()?.first()?.clone();
        (p["status"]["phase"] == "Failed").then_some(p)
    })
    .await;
    assert_eq!(
        pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
        7
    );
    let table = node.cli(&["pods"]);
    assert!(table.contains("Init:Error"), "{table}");
    // The app container was never created.
    let cs = node.cri.list_containers().await.unwrap();
    assert!(
        cs.iter()
            .all(|c| c.metadata.as_ref().unwrap().name != "app"),
        "{cs:?}"
    );
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_pod_share_files_through_an_empty_dir() {
    let mut node = Node::new();
    node.write_manifest(
        "share.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: share\nspec:\n  terminationGracePeriodSeconds: 2\n  volumes:\n  - name: scratch\n    emptyDir: {{}}\n  initContainers:\n  - name: seed\n    image: {BUSYBOX}\n    command: [sh, -c, 'echo seeded > /work/seed']\n    volumeMounts:\n    - {{name: scratch, mountPath: /work}}\n  containers:\n  - name: writer\n    image: {BUSYBOX}\n    command: [sh, -c, 'echo from-writer > /out/msg; while true; do sleep 1; done']\n    volumeMounts:\n    - {{name: scratch, mountPath: /out}}\n  - name: reader\n    image: {BUSYBOX}\n    command: [sh, -c, 'while true; do cat /in/seed /in/msg 2>/dev/null; sleep 1; done']\n    volumeMounts:\n    - {{name: scratch, mountPath: /in, readOnly: true}}\n"
        ),
    );
    node.start_agent();
    let sb = node.wait_running("share", &["writer", "reader"], T).await;
    let uid = sb.metadata.as_ref().unwrap().uid.clone();
    let log = node
        .logs()
        .join(format!("default_share-{NODE}_{uid}/reader/0.log"));
    wait_for(
        "reader sees the init container's and the writer's files",
        T,
        || {
            let log = log.clone();
            async move {
                let l = read_file(&log);
                (l.contains("seeded") && l.contains("from-writer")).then_some(())
            }
        },
    )
    .await;
    let dir = node.root().join(format!(
        "pods/{uid}/volumes/kubernetes.io~empty-dir/scratch"
    ));
    assert_eq!(read_file(&dir.join("msg")), "from-writer\n");

    // Removing the pod removes its volume directory too.
    node.remove_manifest("share.yaml");
    wait_for("pod directory removed", T, || {
        let p = node.root().join(format!("pods/{uid}"));
        async move { (!p.exists()).then_some(()) }
    })
    .await;
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_restart_gaps_grow_zero_ten_twenty_forty() {
    let mut node = Node::new();
    node.write_manifest("crashy.yaml", &pod_manifest("crashy", "exit 1", ""));
    node.start_agent();
    // Record each attempt's start and finish as the runtime reports them (older instances
    // are garbage-collected, so they are sampled while they exist).
    let mut seen: std::collections::BTreeMap<u32, (i64, i64)> = Default::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    while seen.get(&4).is_none_or(|(s, _)| *s == 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "attempt 4 never started: {seen:?}"
        );
        for c in node.cri.list_containers().await.unwrap() {
            if let Ok(st) = node.cri.container_status(&c.id).await {
                let attempt = st.metadata.as_ref().unwrap().attempt;
                let e = seen.entry(attempt).or_default();
                e.0 = e.0.max(st.started_at);
                e.1 = e.1.max(st.finished_at);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gap = |n: u32| (seen[&(n + 1)].0 - seen[&n].1) as f64 / 1e9;
    let gaps: Vec<f64> = (0..4).map(gap).collect();
    eprintln!("restart gaps (s): {gaps:?}");
    assert!(gaps[0] < 4.0, "first restart not immediate: {gaps:?}");
    assert!(
        (9.0..15.0).contains(&gaps[1]),
        "second gap not ~10 s: {gaps:?}"
    );
    assert!(
        (19.0..26.0).contains(&gaps[2]),
        "third gap not ~20 s: {gaps:?}"
    );
    assert!(
        (39.0..47.0).contains(&gaps[3]),
        "fourth gap not ~40 s: {gaps:?}"
    );
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_logs_rotate_and_keep_at_most_max_files() {
    let mut node = Node::with_config(
        "healthzPort: 0\nruntimeRequestTimeout: 30s\ncontainerLogMaxSize: 4Ki\ncontainerLogMaxFiles: 3\n",
    );
    // About 2 KiB of output per second.
    node.write_manifest(
        "chatty.yaml",
        &pod_manifest("chatty", "while true; do i=0; while [ $i -lt 20 ]; do echo 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123; i=$((i+1)); done; sleep 1; done", ""),
    );
    node.start_agent();
    let sb = node.wait_running("chatty", &["main"], T).await;
    let uid = sb.metadata.as_ref().unwrap().uid.clone();
    let dir = node
        .logs()
        .join(format!("default_chatty-{NODE}_{uid}/main"));
    let files = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .map(|r| {
                r.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    // Three rotation periods (10 s each) at ~2 KiB/s past a 4 KiB limit.
    let rotated = wait_for("two rotations", Duration::from_secs(60), || {
        let d = dir.clone();
        async move {
            let f = files(&d);
            (f.iter().filter(|n| n.starts_with("0.log.")).count() >= 2).then_some(f)
        }
    })
    .await;
    assert!(rotated.contains(&"0.log".to_string()), "{rotated:?}");
    tokio::time::sleep(Duration::from_secs(12)).await;
    let f = files(&dir);
    assert!(f.len() <= 3, "more than containerLogMaxFiles files: {f:?}");
    // The live file keeps receiving output after rotation.
    let live = read_file(&dir.join("0.log"));
    assert!(live.contains("0123456789"), "live log empty after rotation");
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_do_not_fit_are_rejected_never_half_started() {
    let mut node = Node::new();
    let huge = |name: &str, res: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sh, -c, 'sleep 100']\n    resources:\n      requests: {{{res}}}\n"
        )
    };
    node.write_manifest("mem.yaml", &huge("bigmem", "memory: 100Ti"));
    node.write_manifest("cpu.yaml", &huge("bigcpu", "cpu: '5000'"));
    node.write_manifest("ok.yaml", &huge("fits", "cpu: 10m, memory: 8Mi"));
    node.start_agent();
    node.wait_running("fits", &["main"], T).await;
    let pods = wait_for("both rejections in the view", T, || async {
        let pods = node.view_pods()?;
        let failed = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Failed")
            .count();
        (failed == 2).then_some(pods)
    })
    .await;
    let get = |n: &str| {
        pods.iter()
            .find(|p| p["metadata"]["name"] == format!("{n}-{NODE}"))
            .unwrap()
            .clone()
    };
    assert_eq!(get("bigmem")["status"]["reason"], "OutOfmemory");
    assert!(
        get("bigmem")["status"]["message"]
            .as_str()
            .unwrap()
            .contains("memory")
    );
    assert_eq!(get("bigcpu")["status"]["reason"], "OutOfcpu");
    assert_eq!(get("fits")["status"]["qosClass"], "Burstable");
    let table = node.cli(&["pods"]);
    assert!(
        table.contains("OutOfmemory") && table.contains("OutOfcpu"),
        "{table}"
    );
    // Nothing was created for the rejected pods.
    let sandboxes = node.cri.list_pod_sandbox().await.unwrap();
    assert_eq!(sandboxes.len(), 1, "{sandboxes:?}");
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_cgroups_follow_qos_and_carry_the_limits() {
    let mut node = Node::new();
    node.write_manifest(
        "gold.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: gold\nspec:\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sh, -c, 'while true; do sleep 1; done']\n    resources:\n      limits: {{cpu: 250m, memory: 64Mi}}\n"
        ),
    );
    node.write_manifest(
        "plain.yaml",
        &pod_manifest("plain", "while true; do sleep 1; done", ""),
    );
    node.start_agent();
    let gold = node.wait_running("gold", &["main"], T).await;
    let plain = node.wait_running("plain", &["main"], T).await;
    let gold_uid = gold.metadata.as_ref().unwrap().uid.clone();
    let plain_uid = plain.metadata.as_ref().unwrap().uid.clone();

    // Guaranteed: directly under kubepods, with the pod's limits written by ironlet.
    let mem = node.cgroup_dir("memory", &format!("kubepods/pod{gold_uid}"));
    assert_eq!(
        read_file(&mem.join("memory.limit_in_bytes")).trim(),
        "67108864"
    );
    let cpu = node.cgroup_dir("cpu,cpuacct", &format!("kubepods/pod{gold_uid}"));
    let cpu = if cpu.exists() {
        cpu
    } else {
        node.cgroup_dir("cpu", &format!("kubepods/pod{gold_uid}"))
    };
    assert_eq!(read_file(&cpu.join("cpu.cfs_quota_us")).trim(), "25000");
    assert_eq!(read_file(&cpu.join("cpu.cfs_period_us")).trim(), "100000");
    assert!(
        !node
            .cgroup_dir("memory", &format!("kubepods/burstable/pod{gold_uid}"))
            .exists()
    );
    assert!(
        !node
            .cgroup_dir("memory", &format!("kubepods/besteffort/pod{gold_uid}"))
            .exists()
    );
    // The container itself got the limit through the CRI.
    let c = node.containers_in(&gold.id).await.remove(0);
    let container_mem = mem.join(&c.id).join("memory.limit_in_bytes");
    assert_eq!(
        read_file(&container_mem).trim(),
        "67108864",
        "{}",
        container_mem.display()
    );

    // BestEffort: under kubepods/besteffort.
    assert!(
        node.cgroup_dir("memory", &format!("kubepods/besteffort/pod{plain_uid}"))
            .is_dir()
    );
    let pods = node.view_pods().unwrap();
    let qos = |n: &str| {
        pods.iter()
            .find(|p| p["metadata"]["name"] == format!("{n}-{NODE}"))
            .unwrap()["status"]["qosClass"]
            .clone()
    };
    assert_eq!(qos("gold"), "Guaranteed");
    assert_eq!(qos("plain"), "BestEffort");

    // Removing the pod removes its cgroup.
    node.remove_manifest("plain.yaml");
    wait_for("pod cgroup removed", T, || {
        let d = node.cgroup_dir("memory", &format!("kubepods/besteffort/pod{plain_uid}"));
        async move { (!d.exists()).then_some(()) }
    })
    .await;
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let mut node = Node::new();
    node.write_manifest(
        "hog.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hog\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sh, -c, 'tail /dev/zero']\n    resources:\n      limits: {{memory: 24Mi}}\n"
        ),
    );
    node.start_agent();
    let pod = wait_for("OOMKilled in the view", T, || async {
        let p = node.view_pods()?.first()?.clone();
        (p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "OOMKilled")
            .then_some(p)
    })
    .await;
    assert_eq!(pod["status"]["phase"], "Failed");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        137
    );
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_images_report_upstream_reasons_and_back_off() {
    let mut node = Node::new();
    let img = |name: &str, image: &str, policy: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: {policy}\n    command: [sh, -c, 'sleep 100']\n"
        )
    };
    node.write_manifest(
        "never.yaml",
        &img("never", "localhost/ironlet/absent:1", "Never"),
    );
    node.write_manifest(
        "pull.yaml",
        &img("pull", "localhost/ironlet/absent:1", "IfNotPresent"),
    );
    node.write_manifest("here.yaml", &img("here", BUSYBOX, "Never"));
    node.start_agent();
    node.wait_running("here", &["main"], T).await;
    let reason = |pods: &[serde_json::Value], n: &str| {
        pods.iter()
            .find(|p| p["metadata"]["name"] == format!("{n}-{NODE}"))
            .and_then(|p| {
                p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                    .as_str()
                    .map(str::to_string)
            })
    };
    wait_for("ErrImageNeverPull", T, || async {
        let pods = node.view_pods()?;
        (reason(&pods, "never")? == "ErrImageNeverPull").then_some(())
    })
    .await;
    // A failed pull is ErrImagePull, then ImagePullBackOff while the back-off runs.
    let mut seen = std::collections::BTreeSet::new();
    wait_for("ErrImagePull then ImagePullBackOff", T, || {
        let pods = node.view_pods();
        let r = pods.and_then(|p| reason(&p, "pull"));
        if let Some(r) = r {
            seen.insert(r);
        }
        let done = seen.contains("ErrImagePull") && seen.contains("ImagePullBackOff");
        async move { done.then_some(()) }
    })
    .await;
    let table = node.cli(&["pods"]);
    assert!(table.contains("ErrImageNeverPull"), "{table}");
    // Neither pod got a container.
    let cs = node.cri.list_containers().await.unwrap();
    assert_eq!(cs.len(), 1, "{cs:?}");
    node.cleanup().await;
}
