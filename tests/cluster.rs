//! Cluster mode against the fake API server (real HTTPS, the real kube client) and a real
//! containerd: registration, heartbeats, API pods, graceful deletion, mirror pods, API
//! outages and watch expiry. Needs root (it runs containerd).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use support::fakeapi::{FakeApi, Identity};
use support::*;

const T: Duration = Duration::from_secs(120);

/// A node whose agent talks to `api` as system:node:testnode, with fast status and lease.
fn cluster_node(api: &FakeApi) -> Node {
    cluster_node_with(
        api,
        "evictionHard: {memory.available: 100Mi, nodefs.available: 1%}\n",
    )
}

fn cluster_node_with(api: &FakeApi, eviction: &str) -> Node {
    let mut node = Node::with_config(&format!(
        "healthzPort: 0\nruntimeRequestTimeout: 30s\nnodeStatusUpdateFrequency: 1s\n\
         nodeStatusReportFrequency: 1m\nnodeLeaseDurationSeconds: 4\n\
         kubeReserved: {{cpu: 100m, memory: 256Mi}}\nsystemReserved: {{memory: 128Mi}}\n{eviction}",
    ));
    let kubeconfig = node.dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig, &Identity::node(NODE));
    node.extra_args = vec!["--kubeconfig".into(), kubeconfig.display().to_string()];
    node
}

fn api_pod(name: &str, script: &str, extra_spec: &str) -> Pod {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  nodeName: {NODE}\n  restartPolicy: Always\n  dnsPolicy: ClusterFirst\n  terminationGracePeriodSeconds: 5\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, '{script}']\n{extra_spec}"
    );
    serde_saphyr::from_str(&yaml).unwrap()
}

/// Starts the agent of a fresh cluster node; returns it and an admin's pod API.
async fn started(api: &FakeApi) -> (Node, Api<Pod>) {
    let mut node = cluster_node(api);
    node.start_agent();
    let client = api.client(&Identity::admin()).await;
    (node, Api::namespaced(client, "default"))
}

/// Creates a long-running API pod.
async fn create_sleeper(pods: &Api<Pod>, name: &str) {
    pods.create(
        &PostParams::default(),
        &api_pod(name, "while true; do sleep 1; done", ""),
    )
    .await
    .unwrap();
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn restart_counts(p: &Pod) -> Vec<i32> {
    p.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .map(|c| c.restart_count)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_heartbeats_runs_and_gracefully_deletes_an_api_pod() {
    let api = FakeApi::start();
    let mut node = cluster_node(&api);
    node.start_agent();

    // Registration with measured capacity, upstream labels and node info.
    let n = api
        .wait_for("node registered and Ready", T, |a| {
            let n = a.node(NODE)?;
            let ready = n
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(n)
        })
        .await;
    let labels = n.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], NODE);
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(labels.contains_key("kubernetes.io/arch"));
    let status = n.status.clone().unwrap();
    let capacity = status.capacity.clone().unwrap();
    for r in ["cpu", "memory", "pods", "ephemeral-storage"] {
        assert!(capacity.contains_key(r), "capacity lacks {r}: {capacity:?}");
    }
    let mem_cap: i64 = capacity["memory"].0.parse().unwrap();
    let mem_alloc: i64 = status.allocatable.clone().unwrap()["memory"]
        .0
        .parse()
        .unwrap();
    // Allocatable = capacity - kubeReserved - systemReserved - memory.available<100Mi.
    assert_eq!(mem_cap - mem_alloc, (256 + 128 + 100) << 20);
    let milli = |q: &str| -> i64 {
        q.strip_suffix('m')
            .map_or_else(|| q.parse::<i64>().unwrap() * 1000, |m| m.parse().unwrap())
    };
    let cpu_alloc = milli(&status.allocatable.clone().unwrap()["cpu"].0);
    assert_eq!(milli(&capacity["cpu"].0) - cpu_alloc, 100);
    let info = status.node_info.clone().unwrap();
    assert!(info.container_runtime_version.starts_with("containerd://"));
    assert!(info.kubelet_version.starts_with("v1.33"));
    assert!(!info.boot_id.is_empty() && !info.kernel_version.is_empty());
    for c in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert!(
            status
                .conditions
                .iter()
                .flatten()
                .any(|x| x.type_ == c && x.status == "False"),
            "{c}"
        );
    }

    // The lease is held by the node and renewed (every second with a 4 s duration).
    let first = api
        .wait_for("lease", T, |a| {
            a.lease("kube-node-lease", NODE)?.spec?.renew_time
        })
        .await;
    let lease = api.lease("kube-node-lease", NODE).unwrap();
    let spec = lease.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(NODE));
    assert_eq!(spec.lease_duration_seconds, Some(4));
    assert_eq!(
        lease.metadata.owner_references.unwrap()[0].uid,
        n.metadata.uid.clone().unwrap()
    );
    api.wait_for("lease renewal", T, |a| {
        let t = a.lease("kube-node-lease", NODE)?.spec?.renew_time?;
        (t.0 > first.0).then_some(())
    })
    .await;

    // A pod bound to the node runs and its status reaches the API.
    let client = api.client(&Identity::admin()).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(
        &PostParams::default(),
        &api_pod(
            "web",
            "trap \"exit 0\" TERM; while true; do sleep 1; done",
            "",
        ),
    )
    .await
    .unwrap();
    let running = api
        .wait_for("API pod Running with an IP", T, |a| {
            let p = a.pod("default", "web")?;
            let st = p.status.as_ref()?;
            let ip = st.pod_ip.clone()?;
            let ready = st.container_statuses.iter().flatten().any(|c| {
                c.name == "main" && c.ready && c.state.as_ref().is_some_and(|s| s.running.is_some())
            });
            (phase(&p) == "Running" && ready).then_some((p.clone(), ip))
        })
        .await;
    assert!(running.1.starts_with("198.18."), "pod IP {}", running.1);

    // Nothing changes now, so nothing is sent: neither pod nor node status is patched again
    // (the node's 1 s update period recomputes, its 1 m report period is not yet due).
    let patches = |a: &FakeApi, path: &str| {
        a.requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.path == path)
            .count()
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pod_path = "/api/v1/namespaces/default/pods/web/status";
    let node_path = format!("/api/v1/nodes/{NODE}/status");
    let (pod_before, node_before) = (patches(&api, pod_path), patches(&api, &node_path));
    assert!(
        pod_before > 0 && node_before > 0,
        "statuses were sent by PATCH"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        patches(&api, pod_path),
        pod_before,
        "pod status re-sent unchanged"
    );
    assert_eq!(
        patches(&api, &node_path),
        node_before,
        "node status re-sent unchanged"
    );
    let sb = node.sandboxes("web").await;
    assert_eq!(sb.len(), 1, "one sandbox for the API pod");

    // Events were recorded for it.
    api.wait_for("Started event", T, |a| {
        a.events(Some("default"))
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("Started")
                    && e.involved_object.name.as_deref() == Some("web")
            })
            .map(|_| ())
    })
    .await;

    // Graceful delete: deletionTimestamp, termination, final delete with grace 0.
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    api.wait_for("pod removed from the API", T, |a| {
        a.pod("default", "web").is_none().then_some(())
    })
    .await;
    let deletes: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.path.ends_with("/pods/web"))
        .collect();
    assert!(
        deletes.iter().any(|r| r.user.starts_with("system:node:")),
        "the node sent the final delete: {deletes:?}"
    );
    wait_for("sandbox removed", T, || async {
        node.sandboxes("web").await.is_empty().then_some(())
    })
    .await;
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pods_get_mirror_pods_that_are_recreated_and_unsupported_pods_are_reported() {
    let api = FakeApi::start();
    let mut node = cluster_node(&api);
    node.write_manifest(
        "stat.yaml",
        &pod_manifest("stat", "while true; do sleep 1; done", ""),
    );
    node.start_agent();
    let mirror_name = format!("stat-{NODE}");
    let mirror = api
        .wait_for("mirror pod Running", T, |a| {
            let p = a.pod("default", &mirror_name)?;
            (phase(&p) == "Running").then_some(p)
        })
        .await;
    let ann = mirror.metadata.annotations.clone().unwrap();
    assert!(ann.contains_key("kubernetes.io/config.mirror"));
    assert_eq!(ann["kubernetes.io/config.source"], "file");
    assert_eq!(
        ann["kubernetes.io/config.mirror"],
        ann["kubernetes.io/config.hash"]
    );
    let owner = &mirror.metadata.owner_references.clone().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", NODE));
    let old_uid = mirror.metadata.uid.clone().unwrap();

    // Deleting the mirror pod recreates it; the static pod keeps running.
    let client = api.client(&Identity::admin()).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.delete(&mirror_name, &DeleteParams::default())
        .await
        .unwrap();
    api.wait_for("mirror pod recreated", T, |a| {
        let p = a.pod("default", &mirror_name)?;
        (p.metadata.uid.as_deref() != Some(old_uid.as_str())
            && p.metadata.deletion_timestamp.is_none()
            && phase(&p) == "Running")
            .then_some(())
    })
    .await;
    let sb = node.sandboxes(&mirror_name).await;
    assert_eq!(sb.len(), 1, "the static pod was not restarted");

    // A pod using a volume ironlet does not support is reported in its status.
    pods.create(
        &PostParams::default(),
        &api_pod(
            "nfs-user",
            "sleep 3600",
            "  volumes:\n  - name: data\n    nfs: {server: 198.18.255.1, path: /export}\n",
        ),
    )
    .await
    .unwrap();
    let refused = api
        .wait_for("unsupported pod reported", T, |a| {
            let p = a.pod("default", "nfs-user")?;
            (phase(&p) == "Failed").then_some(p)
        })
        .await;
    let st = refused.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("UnsupportedPodSpec"));
    assert!(
        st.message.as_deref().unwrap_or("").contains("nfs"),
        "{:?}",
        st.message
    );
    assert!(node.sandboxes("nfs-user").await.is_empty());

    // A readiness probe that fails every other second: each new failure is an Unhealthy
    // event with the same message, aggregated into one Event whose count grows.
    pods.create(
        &PostParams::default(),
        &api_pod(
            "unready",
            "while true; do sleep 1; done",
            "    readinessProbe:\n      exec: {command: [sh, -c, \"test $(( $(date +%s) % 2 )) -eq 0\"]}\n      periodSeconds: 1\n      failureThreshold: 1\n",
        ),
    )
    .await
    .unwrap();
    let ev = api
        .wait_for("aggregated Unhealthy event", T, |a| {
            let evs: Vec<_> = a
                .events(Some("default"))
                .into_iter()
                .filter(|e| {
                    e.reason.as_deref() == Some("Unhealthy")
                        && e.involved_object.name.as_deref() == Some("unready")
                })
                .collect();
            evs.iter()
                .find(|e| e.count.unwrap_or(0) >= 3)
                .map(|e| (e.clone(), evs.len()))
        })
        .await;
    assert_eq!(ev.1, 1, "repeats are aggregated into one Event");
    assert_eq!(ev.0.type_.as_deref(), Some("Warning"));
    assert!(ev.0.last_timestamp > ev.0.first_timestamp);
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_outage_restarts_nothing_and_statuses_converge() {
    let api = FakeApi::start();
    let (mut node, pods) = started(&api).await;
    create_sleeper(&pods, "steady").await;
    // The second container ends on its own during the outage; restartPolicy OnFailure
    // keeps it ended, so its status must change while the API is away.
    let mut finite = api_pod("finite", "sleep 20; exit 0", "");
    finite.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    pods.create(&PostParams::default(), &finite).await.unwrap();
    api.wait_for("both pods Running", T, |a| {
        let s = a.pod("default", "steady")?;
        let f = a.pod("default", "finite")?;
        (phase(&s) == "Running" && phase(&f) == "Running").then_some(())
    })
    .await;
    let steady_sb = node.wait_running_full("steady", &["main"], T).await;
    let steady_ids: Vec<String> = node
        .containers_in(&steady_sb.id)
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();

    api.set_outage(true);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(node.agent_running(), "the agent survived the outage");
    api.set_outage(false);

    // Within 30 s of recovery the API shows the finished container and the node is Ready.
    api.wait_for(
        "finite pod Succeeded in the API",
        Duration::from_secs(30),
        |a| {
            let f = a.pod("default", "finite")?;
            (phase(&f) == "Succeeded").then_some(())
        },
    )
    .await;
    api.wait_for(
        "node Ready after the outage",
        Duration::from_secs(30),
        |a| {
            let n = a.node(NODE)?;
            let hb = n
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "Ready" && c.status == "True")?
                .last_heartbeat_time?;
            let age = jiff::Timestamp::now().duration_since(hb.0);
            (age < jiff::SignedDuration::from_secs(5)).then_some(())
        },
    )
    .await;
    let steady = api.pod("default", "steady").unwrap();
    assert_eq!(restart_counts(&steady), vec![0]);
    let after: Vec<String> = node
        .containers_in(&steady_sb.id)
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(after, steady_ids, "the outage restarted no container");
    assert_eq!(node.sandboxes("steady").await.len(), 1);
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_expiry_relists_without_duplicate_workers() {
    let api = FakeApi::start();
    let (node, pods) = started(&api).await;
    create_sleeper(&pods, "first").await;
    let sb = node.wait_running_full("first", &["main"], T).await;
    let lists = |a: &FakeApi| {
        a.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == "/api/v1/pods" && !r.query.contains("watch"))
            .count()
    };
    let lists_before = lists(&api);

    // History compacted and every watch dropped: the next watch gets 410 Gone.
    api.compact();
    api.drop_watches();
    create_sleeper(&pods, "second").await;
    node.wait_running_full("second", &["main"], T).await;
    assert!(lists(&api) > lists_before, "the agent relisted");
    // Still one sandbox and one container for the first pod: no duplicate worker.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let first_sbs = node.sandboxes("first").await;
    assert_eq!(first_sbs.len(), 1);
    assert_eq!(first_sbs[0].id, sb.id);
    assert_eq!(node.containers_in(&sb.id).await.len(), 1);
    let first = api.pod("default", "first").unwrap();
    assert_eq!(restart_counts(&first), vec![0]);
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pressure_conditions_follow_real_readings_against_eviction_hard() {
    let api = FakeApi::start();
    // Thresholds no machine meets: every pressure condition must turn True.
    let mut node = cluster_node_with(
        &api,
        "evictionHard: {memory.available: 1Pi, nodefs.available: 99.99%, pid.available: \"1000000000\"}\n",
    );
    node.start_agent();
    let conditions = api
        .wait_for("pressure reported", T, |a| {
            let cs = a.node(NODE)?.status?.conditions?;
            cs.iter()
                .any(|c| c.type_ == "MemoryPressure" && c.status == "True")
                .then_some(cs)
        })
        .await;
    for (ty, reason) in [
        ("MemoryPressure", "KubeletHasInsufficientMemory"),
        ("DiskPressure", "KubeletHasDiskPressure"),
        ("PIDPressure", "KubeletHasInsufficientPID"),
    ] {
        let c = conditions.iter().find(|c| c.type_ == ty).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("True", Some(reason)),
            "{ty}"
        );
    }
    node.cleanup().await;
}
