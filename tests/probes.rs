//! Probes wired into the pod workers, against a real containerd. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod support;

use std::time::Duration;

use support::*;

const T: Duration = Duration::from_secs(60);

fn pod(name: &str, script: &str, probes: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sh, -c, {script:?}]\n{probes}"
    )
}

fn container_status(node: &Node, name: &str) -> Option<serde_json::Value> {
    let pods = node.view_pods()?;
    let p = pods
        .iter()
        .find(|p| p["metadata"]["name"] == format!("{name}-{NODE}"))?;
    Some(p["status"]["containerStatuses"][0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_liveness_exec_restarts_the_container() {
    let mut node = Node::new();
    node.write_manifest(
        "sick.yaml",
        &pod(
            "sick",
            "touch /tmp/healthy; sleep 3; rm /tmp/healthy; while true; do sleep 1; done",
            "    livenessProbe:\n      exec: {command: [cat, /tmp/healthy]}\n      periodSeconds: 1\n      failureThreshold: 2\n",
        ),
    );
    node.start_agent();
    node.wait_running("sick", &["main"], T).await;
    let cs = wait_for("restartCount 1 after the liveness failure", T, || async {
        let cs = container_status(&node, "sick")?;
        (cs["restartCount"].as_i64()? >= 1).then_some(cs)
    })
    .await;
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 137, "{cs}");
    assert!(node.agent_log(1).contains("liveness probe failed"));
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readiness_http_get_turns_ready_from_false_to_true() {
    let mut node = Node::new();
    node.write_manifest(
        "slow.yaml",
        &pod(
            "slow",
            "sleep 5; echo ok > /var/www/index.html; exec httpd -f -p 8080 -h /var/www",
            "    ports: [{containerPort: 8080}]\n    readinessProbe:\n      httpGet: {path: /, port: 8080}\n      periodSeconds: 1\n",
        ),
    );
    node.start_agent();
    node.wait_running("slow", &["main"], T).await;
    let not_ready = wait_for("running but not ready", T, || async {
        let pods = node.view_pods()?;
        let p = pods.first()?.clone();
        (p["status"]["containerStatuses"][0]["state"]["running"].is_object()).then_some(p)
    })
    .await;
    assert_eq!(
        not_ready["status"]["containerStatuses"][0]["ready"], false,
        "{not_ready}"
    );
    let ready = |p: &serde_json::Value| {
        p["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
            .map(|c| c["status"].clone())
    };
    assert_eq!(ready(&not_ready).unwrap(), "False");
    let now_ready = wait_for("Ready becomes True", T, || async {
        let p = node.view_pods()?.first()?.clone();
        (ready(&p)? == "True").then_some(p)
    })
    .await;
    assert_eq!(now_ready["status"]["containerStatuses"][0]["ready"], true);
    assert_eq!(
        now_ready["status"]["containerStatuses"][0]["restartCount"],
        0
    );
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_startup_probe_holds_liveness_back() {
    let mut node = Node::new();
    // Liveness alone would kill this container within ~2 s; the startup probe allows 20 s.
    node.write_manifest(
        "late.yaml",
        &pod(
            "late",
            "sleep 6; touch /tmp/started; while true; do sleep 1; done",
            "    startupProbe:\n      exec: {command: [cat, /tmp/started]}\n      periodSeconds: 1\n      failureThreshold: 20\n    livenessProbe:\n      exec: {command: [cat, /tmp/started]}\n      periodSeconds: 1\n      failureThreshold: 1\n",
        ),
    );
    node.start_agent();
    node.wait_running("late", &["main"], T).await;
    let cs = wait_for("started after the startup probe passed", T, || async {
        let cs = container_status(&node, "late")?;
        (cs["started"] == true).then_some(cs)
    })
    .await;
    assert_eq!(
        cs["restartCount"], 0,
        "liveness ran before startup succeeded: {cs}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cs = container_status(&node, "late").unwrap();
    assert_eq!(cs["restartCount"], 0, "{cs}");
    assert_eq!(cs["ready"], true);
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_stop_runs_before_sigterm_and_a_failing_post_start_kills() {
    let mut node = Node::new();
    node.write_manifest(
        "hooks.yaml",
        &pod(
            "hooks",
            "trap 'echo got-TERM; exit 0' TERM; echo started; while true; do sleep 0.2; done",
            "    lifecycle:\n      preStop:\n        exec: {command: [sh, -c, 'echo prestop-ran > /proc/1/fd/1']}\n",
        ),
    );
    node.write_manifest(
        "badhook.yaml",
        &pod(
            "badhook",
            "while true; do sleep 1; done",
            "    lifecycle:\n      postStart:\n        exec: {command: [sh, -c, 'exit 3']}\n",
        ),
    );
    node.start_agent();
    let sb = node.wait_running("hooks", &["main"], T).await;
    let uid = sb.metadata.as_ref().unwrap().uid.clone();
    let log = node
        .logs()
        .join(format!("default_hooks-{NODE}_{uid}/main/0.log"));
    wait_for("container started", T, || {
        let log = log.clone();
        async move { read_file(&log).contains("started").then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.remove_manifest("hooks.yaml");
    let text = wait_for("preStop and SIGTERM recorded", T, || {
        let log = log.clone();
        async move {
            let t = read_file(&log);
            t.contains("got-TERM").then_some(t)
        }
    })
    .await;
    let pre = text.find("prestop-ran").expect("preStop output in the log");
    let term = text.find("got-TERM").unwrap();
    assert!(pre < term, "SIGTERM came before preStop:\n{text}");

    // The failing postStart hook kills its container every time it starts.
    wait_for("postStart failure restarts the container", T, || async {
        let pods = node.view_pods()?;
        let p = pods
            .iter()
            .find(|p| p["metadata"]["name"] == format!("badhook-{NODE}"))?;
        (p["status"]["containerStatuses"][0]["restartCount"].as_i64()? >= 1).then_some(())
    })
    .await;
    assert!(node.agent_log(1).contains("FailedPostStartHook"));
    node.cleanup().await;
}
