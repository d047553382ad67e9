//! Standalone node against a real containerd: static pods come up, answer, change, go away,
//! survive an agent crash, and broken manifests hurt nobody. Needs root (it runs containerd).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod support;

use std::time::{Duration, Instant};

use ironlet::cri::api;
use support::*;

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pods_run_answer_http_and_show_in_the_view() {
    let mut node = Node::new();
    node.write_manifest(
        "web.yaml",
        &std::fs::read_to_string("examples/static-pods/web.yaml").unwrap(),
    );
    node.write_manifest(
        "duo.yaml",
        &std::fs::read_to_string("examples/static-pods/duo.yaml").unwrap(),
    );
    node.write_manifest(
        "once.yaml",
        &std::fs::read_to_string("examples/static-pods/once.yaml").unwrap(),
    );
    node.start_agent();

    let web = node.wait_running("web", &["httpd"], T).await;
    let duo = node.wait_running("duo", &["server", "client"], T).await;

    // Upstream-compatible labels, so crictl and friends recognise the pod.
    let md = web.metadata.as_ref().unwrap();
    assert_eq!(md.name, format!("web-{NODE}"));
    assert_eq!(md.namespace, "default");
    assert_eq!(web.labels["io.kubernetes.pod.name"], md.name);
    assert_eq!(web.labels["io.kubernetes.pod.namespace"], "default");
    assert_eq!(web.labels["io.kubernetes.pod.uid"], md.uid);
    let cs = node.containers_in(&web.id).await;
    assert_eq!(cs[0].labels["io.kubernetes.container.name"], "httpd");

    // The host reaches the web server on the pod IP, in 198.18.0.0/16.
    let ip = node.pod_ip(&web.id).await;
    assert!(ip.starts_with("198.18."), "pod IP {ip}");
    let body = wait_for("web answers", T, || {
        let ip = ip.clone();
        async move {
            http_get(&ip, 80, "/")
                .ok()
                .filter(|r| r.contains("hello from ironlet"))
        }
    })
    .await;
    assert!(
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
        "{body}"
    );

    // The two containers of duo share localhost: the client's log shows the server's page.
    let duo_uid = duo.metadata.as_ref().unwrap().uid.clone();
    let client_log = node
        .logs()
        .join(format!("default_duo-{NODE}_{duo_uid}/client/0.log"));
    wait_for("duo client fetched from localhost", T, || {
        let p = client_log.clone();
        async move {
            read_file(&p)
                .contains("hello from the duo server")
                .then_some(())
        }
    })
    .await;

    // The run-to-completion pod ends Succeeded and is not restarted.
    let view = wait_for("view shows all three pods settled", T, || async {
        let items = node.view_pods()?;
        let phase = |n: &str| {
            items
                .iter()
                .find(|p| p["metadata"]["name"] == format!("{n}-{NODE}"))
                .and_then(|p| p["status"]["phase"].as_str().map(str::to_string))
        };
        (phase("web")? == "Running" && phase("duo")? == "Running" && phase("once")? == "Succeeded")
            .then_some(items)
    })
    .await;
    assert_eq!(view.len(), 3);
    let once = view
        .iter()
        .find(|p| p["metadata"]["name"] == format!("once-{NODE}"))
        .unwrap();
    assert_eq!(once["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(
        once["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    let web_view = view
        .iter()
        .find(|p| p["metadata"]["name"] == format!("web-{NODE}"))
        .unwrap();
    assert_eq!(web_view["status"]["podIP"], ip.as_str());
    assert_eq!(web_view["status"]["qosClass"], "BestEffort");
    assert_eq!(
        web_view["metadata"]["annotations"]["kubernetes.io/config.source"],
        "file"
    );

    let table = node.cli(&["pods"]);
    let header = table.lines().next().unwrap();
    assert!(
        header
            .split_whitespace()
            .eq(["NAME", "READY", "STATUS", "RESTARTS", "AGE"]),
        "{table}"
    );
    let row = |n: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{n}-{NODE} ")))
            .unwrap()
            .to_string()
    };
    assert!(
        row("duo").split_whitespace().take(3).eq([
            format!("duo-{NODE}").as_str(),
            "2/2",
            "Running"
        ]),
        "{table}"
    );
    assert!(row("once").contains("Completed"), "{table}");

    // `ironlet logs` reads the CRI log at the upstream layout.
    let logs = node.cli(&["logs", "once"]);
    assert!(logs.contains("hello once from once-testnode"), "{logs:?}");
    let once_sb = node.sandboxes(&format!("once-{NODE}")).await;
    assert_eq!(
        once_sb.len(),
        1,
        "a finished Never pod gets no second sandbox"
    );
    wait_for("finished pod releases its sandbox", T, || async {
        let s = node.sandboxes(&format!("once-{NODE}")).await;
        (s[0].state == api::PodSandboxState::SandboxNotready as i32).then_some(())
    })
    .await;

    // The PLEG relists and records its latency.
    let agent: serde_json::Value = wait_for("agent state with relists", T, || async {
        let s = std::fs::read_to_string(node.root().join("status/agent.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&s).ok()?;
        (v["pleg"]["relists"].as_u64()? > 2).then_some(v)
    })
    .await;
    assert_eq!(agent["pleg"]["healthy"], true);
    assert!(agent["pleg"]["relist_p99_seconds"].as_f64().unwrap() > 0.0);
    assert!(node.agent_running());
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_a_manifest_restarts_the_pod_with_the_new_spec() {
    let mut node = Node::new();
    let manifest = |v: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\nspec:\n  terminationGracePeriodSeconds: 3\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    env:\n    - {{name: VERSION, value: '{v}'}}\n    command: [sh, -c, 'echo version=$VERSION; trap \"exit 0\" TERM; while true; do sleep 0.2; done']\n"
        )
    };
    node.write_manifest("app.yaml", &manifest("1"));
    node.start_agent();
    let first = node.wait_running("app", &["main"], T).await;
    let first_uid = first.metadata.as_ref().unwrap().uid.clone();

    node.write_manifest("app.yaml", &manifest("2"));
    let second = wait_for("a new sandbox for the edited pod", T, || async {
        let sb = node.wait_running("app", &["main"], T).await;
        (sb.id != first.id).then_some(sb)
    })
    .await;
    let second_uid = second.metadata.as_ref().unwrap().uid.clone();
    assert_ne!(first_uid, second_uid, "new content, new UID");

    let log = node
        .logs()
        .join(format!("default_app-{NODE}_{second_uid}/main/0.log"));
    wait_for("the new container runs the new spec", T, || {
        let log = log.clone();
        async move { read_file(&log).contains("version=2").then_some(()) }
    })
    .await;
    // The old version is gone entirely, judged through the CRI.
    wait_for("old sandbox removed", T, || async {
        let all = node.sandboxes(&format!("app-{NODE}")).await;
        (all.len() == 1 && all[0].id == second.id).then_some(())
    })
    .await;
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_manifest_stops_the_pod_within_its_grace_and_removes_the_sandbox() {
    let mut node = Node::new();
    // Cooperative: exits on SIGTERM at once, well inside a 30 s grace.
    node.write_manifest(
        "polite.yaml",
        &pod_manifest(
            "polite",
            "trap 'exit 0' TERM; while true; do sleep 0.2; done",
            "  terminationGracePeriodSeconds: 30\n",
        ),
    );
    // Stubborn: ignores SIGTERM, so only SIGKILL after the 4 s grace ends it.
    node.write_manifest(
        "stubborn.yaml",
        &pod_manifest(
            "stubborn",
            "trap '' TERM; while true; do sleep 0.2; done",
            "  terminationGracePeriodSeconds: 4\n",
        ),
    );
    node.start_agent();
    let polite = node.wait_running("polite", &["main"], T).await;
    let stubborn = node.wait_running("stubborn", &["main"], T).await;
    let stubborn_c = node.containers_in(&stubborn.id).await.remove(0);
    // Let the shells install their traps.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let removed_at = Instant::now();
    node.remove_manifest("polite.yaml");
    node.remove_manifest("stubborn.yaml");
    // The stubborn container is looked at 2 s after the removal, at least 2 s before its
    // grace is over (which starts when the agent sees the removal), while the polite pod is
    // being removed: it must still be running then.
    let polite_gone = async {
        wait_for(
            "polite pod fully removed",
            Duration::from_secs(20),
            || async {
                node.sandboxes(&format!("polite-{NODE}"))
                    .await
                    .is_empty()
                    .then_some(())
            },
        )
        .await;
        removed_at.elapsed()
    };
    let stubborn_before_grace = async {
        tokio::time::sleep_until((removed_at + Duration::from_secs(2)).into()).await;
        let st = node.cri.container_status(&stubborn_c.id).await;
        (st, removed_at.elapsed())
    };
    let (polite_took, (st, looked_at)) = tokio::join!(polite_gone, stubborn_before_grace);
    assert!(
        polite_took < Duration::from_secs(15),
        "polite pod took {polite_took:?}"
    );
    let _ = polite;
    // The answer must come from inside the grace, or it would prove nothing.
    assert!(
        looked_at < Duration::from_secs(4),
        "the stubborn container's status came {looked_at:?} after the removal, past its 4 s grace"
    );
    let st = st.unwrap();
    assert_eq!(
        st.state,
        api::ContainerState::ContainerRunning as i32,
        "killed before its grace ({looked_at:?} after the removal)"
    );
    // ...and be gone within grace + slack, its sandbox removed.
    wait_for("stubborn pod removed", Duration::from_secs(20), || async {
        node.sandboxes(&format!("stubborn-{NODE}"))
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    let took = removed_at.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "SIGKILL came before the 4 s grace: {took:?}"
    );
    assert!(took < Duration::from_secs(14), "stubborn pod took {took:?}");
    let agent_log = node.agent_log(1);
    assert!(agent_log.contains("grace_seconds=4"), "{agent_log}");
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_adopts_twenty_pods_without_restarting_any() {
    let mut node = Node::new();
    for i in 0..20 {
        node.write_manifest(
            &format!("p{i:02}.yaml"),
            &pod_manifest(
                &format!("p{i:02}"),
                "trap 'exit 0' TERM; while true; do sleep 1; done",
                "  terminationGracePeriodSeconds: 5\n",
            ),
        );
    }
    node.start_agent();
    let before = wait_for("20 pods running", Duration::from_secs(180), || async {
        let sbs = node.sandboxes("p").await;
        let cs = node.cri.list_containers().await.ok()?;
        let running = cs
            .iter()
            .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
            .count();
        (sbs.len() == 20 && running == 20).then_some((sbs, cs))
    })
    .await;

    node.kill_agent();
    // While the agent is down, one manifest disappears: that pod must be terminated.
    node.remove_manifest("p19.yaml");
    node.start_agent();

    wait_for("p19 terminated after restart", T, || async {
        node.sandboxes(&format!("p19-{NODE}"))
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    wait_for("the view lists 19 running pods", T, || async {
        let running = node
            .view_pods()?
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        (running == 19).then_some(())
    })
    .await;
    // Give the agent a few relists to do anything it would wrongly do.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let after_sbs = node.sandboxes("p").await;
    let after_cs = node.cri.list_containers().await.unwrap();
    assert_eq!(after_sbs.len(), 19, "no new sandboxes");
    for s in &after_sbs {
        assert!(
            before.0.iter().any(|b| b.id == s.id),
            "sandbox {} is new",
            s.id
        );
    }
    assert_eq!(after_cs.len(), 19);
    for c in &after_cs {
        assert!(
            before.1.iter().any(|b| b.id == c.id),
            "container {} is new",
            c.id
        );
        assert_eq!(c.state, api::ContainerState::ContainerRunning as i32);
        assert_eq!(c.metadata.as_ref().unwrap().attempt, 0, "restarted");
    }

    // SIGTERM leaves the pods running.
    assert!(node.stop_agent().success());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = node.cri.list_containers().await.unwrap();
    assert_eq!(
        still
            .iter()
            .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
            .count(),
        19
    );
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_manifests_get_one_clear_error_each_and_hurt_nobody() {
    let mut node = Node::new();
    node.write_manifest(
        "good.yaml",
        &pod_manifest("good", "while true; do sleep 1; done", ""),
    );
    let broken = [
        ("bad-yaml.yaml", "apiVersion: v1\nkind: Pod\nmetadata: [unclosed\n".to_string(), "not valid YAML"),
        ("not-pod.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n".to_string(), "not a v1 Pod"),
        (
            "no-containers.json",
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"empty"},"spec":{"containers":[]}}"#.to_string(),
            "at least one container",
        ),
        ("bad-name.yml", pod_manifest("Bad_Name", "true", ""), "metadata.name"),
    ];
    for (file, content, _) in &broken {
        node.write_manifest(file, content);
    }
    node.write_manifest(".hidden.yaml", "this is ignored");
    node.start_agent();
    node.wait_running("good", &["main"], T).await;
    // Several rescans happen (fileCheckFrequency is 2 s); errors must still be one per file.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let log = node.agent_log(1);
    for (file, _, problem) in &broken {
        let lines: Vec<_> = log
            .lines()
            .filter(|l| l.contains("static pod manifest rejected") && l.contains(file))
            .collect();
        assert_eq!(lines.len(), 1, "{file}: {lines:?}\n{log}");
        assert!(lines[0].contains(problem), "{file}: {}", lines[0]);
    }
    assert!(!log.contains(".hidden.yaml"));
    let sandboxes = node.cri.list_pod_sandbox().await.unwrap();
    assert_eq!(sandboxes.len(), 1, "only the good pod has a sandbox");
    assert!(node.agent_running());
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_container_is_restarted_per_policy() {
    let mut node = Node::new();
    node.write_manifest(
        "crash.yaml",
        &pod_manifest("crash", "echo run; sleep 1; exit 3", ""),
    );
    node.start_agent();
    let sb = node.wait_running("crash", &["main"], T).await;
    // The first restart is immediate: attempt 1 appears soon after the first exit.
    wait_for(
        "the crashed container restarted",
        Duration::from_secs(30),
        || async {
            let cs = node.containers_in(&sb.id).await;
            cs.iter()
                .any(|c| c.metadata.as_ref().is_some_and(|m| m.attempt >= 1))
                .then_some(())
        },
    )
    .await;
    // Then it backs off (10 s): the view shows CrashLoopBackOff with lastState.
    let pod = wait_for(
        "CrashLoopBackOff in the view",
        Duration::from_secs(30),
        || async {
            let p = node.view_pods()?.first()?.clone();
            (p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                == "CrashLoopBackOff")
                .then_some(p)
        },
    )
    .await;
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(cs["lastState"]["terminated"]["reason"], "Error");
    assert!(cs["restartCount"].as_i64().unwrap() >= 1);
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_absent_at_start_or_frozen_later_never_crashes_the_agent() {
    let port = free_port();
    let mut node = Node::with_config(&format!(
        "healthzPort: {port}\nhealthzBindAddress: 127.0.0.1\nruntimeRequestTimeout: 2s\n"
    ));
    // The agent starts pointed at a socket that does not exist yet.
    let link = node.dir.path().join("runtime.sock");
    node.endpoint_override = Some(format!("unix://{}", link.display()));
    node.write_manifest(
        "a.yaml",
        &pod_manifest("a", "while true; do sleep 1; done", ""),
    );
    node.start_agent();

    // healthz answers on loopback while the agent waits for its runtime.
    let health = wait_for("healthz answers", T, || async {
        http_get("127.0.0.1", port, "/healthz").ok()
    })
    .await;
    assert!(
        health.contains(" 200 ") && health.ends_with("ok"),
        "{health}"
    );
    let missing = http_get("127.0.0.1", port, "/pods").unwrap();
    assert!(
        missing.contains(" 404 "),
        "healthz serves nothing else: {missing}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(node.agent_running(), "agent died without a runtime");
    assert!(node.agent_log(1).contains("container runtime not ready"));

    // The runtime appears: the agent connects and runs the pod.
    std::os::unix::fs::symlink(node.containerd.as_ref().unwrap().socket(), &link).unwrap();
    let a = node.wait_running("a", &["main"], T).await;

    // The runtime freezes (calls time out), then thaws: the agent survives, the pod is
    // untouched, and new work goes through.
    let pid = node.containerd_pid();
    signal(pid, "STOP");
    tokio::time::sleep(Duration::from_secs(6)).await;
    signal(pid, "CONT");
    assert!(node.agent_running(), "agent died during the runtime outage");
    node.write_manifest(
        "b.yaml",
        &pod_manifest("b", "while true; do sleep 1; done", ""),
    );
    node.wait_running("b", &["main"], T).await;
    let a_after = node.wait_running("a", &["main"], T).await;
    assert_eq!(a.id, a_after.id, "the outage replaced a's sandbox");
    let cs = node.containers_in(&a.id).await;
    assert_eq!(cs.len(), 1, "the outage restarted a's container: {cs:?}");
    node.cleanup().await;
}
