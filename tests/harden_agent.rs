//! Hardening round two (issue 15) against the real agent binary, confined as it ships, on a
//! real containerd, in cluster mode against the fake API server (real HTTPS, real
//! TokenReview and SubjectAccessReview): exec as `create` (finding 2), uid carried into the
//! SubjectAccessReview (3), the config.source annotation (7), the policy file composed with
//! SubjectAccessReview (8) and kubeconfig credential plugins (10). Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

#[path = "api_support/mod.rs"]
mod api_support;
mod support;

use std::time::Duration;

use api_support::{Ca, client, exchange, parse_answer};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::Value;
use support::fakeapi::{AccessRule, FakeApi, Identity, UserInfo};
use support::{BUSYBOX, NODE, Node, free_port, wait_for};

const POD: &str = "talker-testnode";
const T: Duration = Duration::from_secs(120);

/// The node's local policy: it names who may do what on this node at most; the cluster's
/// SubjectAccessReview must allow too.
const LOCAL_POLICY: &str = "apiVersion: ironlet.dev/v1alpha1
kind: StandaloneAuthorizationPolicy
rules:
- name: sre
  reason: SREs debug this node
  users: [sre]
  verbs: [get, create]
  subresources: [proxy, pods, metrics, healthz]
- name: monitoring
  reason: the monitoring agent (its cluster grant is read-only)
  users: [monitoring]
  verbs: [get, create]
  subresources: [proxy, pods, metrics, healthz]
- name: narrow
  reason: this node lets the scraper read metrics only, whatever the cluster grants
  users: [narrow]
  verbs: [get]
  subresources: [metrics]
";

const WS: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n";

fn sar(v: &Value) -> (String, String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let ra = &v["spec"]["resourceAttributes"];
    (
        s(&v["spec"]["user"]),
        s(&ra["verb"]),
        s(&ra["subresource"]),
        s(&v["spec"]["uid"]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_agent_authorizes_commands_as_create_composes_the_policy_and_owns_the_source() {
    let api = FakeApi::start();
    let user = |name: &str, uid: &str| UserInfo {
        username: name.into(),
        uid: uid.into(),
        ..Default::default()
    };
    api.add_token_with("sre-token", user("sre", "uid-sre"));
    api.add_token_with("mon-token", user("monitoring", "uid-mon"));
    api.add_token_with("narrow-token", user("narrow", "uid-narrow"));
    api.add_token_with("outsider-token", user("outsider", "uid-out"));
    api.set_access_rules(vec![
        AccessRule::allow("SREs debug nodes")
            .user("sre")
            .resource("nodes"),
        AccessRule::allow("monitoring may read nodes/*, RBAC's usual read-only grant")
            .user("monitoring")
            .resource("nodes")
            .verb("get"),
        AccessRule::allow("the cluster grants the scraper everything on nodes")
            .user("narrow")
            .resource("nodes"),
        AccessRule::allow("the cluster grants the outsider everything on nodes")
            .user("outsider")
            .resource("nodes"),
    ]);
    let serving = Ca::new("serving-ca");
    let (cert_pem, key_pem) = serving.leaf_pem("node", None, &["127.0.0.1"], false);
    let pki_dir = tempfile::tempdir().unwrap();
    let p = |n: &str| pki_dir.path().join(n).display().to_string();
    std::fs::write(p("server.crt"), cert_pem).unwrap();
    std::fs::write(p("server.key"), key_pem).unwrap();
    std::fs::write(p("policy.yaml"), LOCAL_POLICY).unwrap();
    let port = free_port();
    let mut node = Node::with_config(&format!(
        "healthzPort: 0\nruntimeRequestTimeout: 30s\naddress: 127.0.0.1\nport: {port}\n\
         tlsCertFile: {}\ntlsPrivateKeyFile: {}\nnodeStatusUpdateFrequency: 1s\n",
        p("server.crt"),
        p("server.key")
    ));
    let kubeconfig = node.dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig, &Identity::node(NODE));
    let audit_dir = node.dir.path().join("audit");
    std::fs::create_dir(&audit_dir).unwrap();
    let audit_log = audit_dir.join("audit.log");
    node.extra_args = vec![
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--authorization-policy-file".into(),
        p("policy.yaml"),
        "--audit-log-path".into(),
        audit_log.display().to_string(),
    ];
    node.write_manifest(
        "talker.yaml",
        &support::pod_manifest("talker", "while true; do sleep 1; done", ""),
    );
    node.start_agent();
    node.wait_running("talker", &["main"], Duration::from_secs(90))
        .await;
    let call = |token: &'static str, method: &'static str, path: String, extra: &'static str| async move {
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        exchange(port, client(None), raw.as_bytes())
            .await
            .ok()
            .and_then(|o| parse_answer(&o))
    };
    wait_for(
        "the API answers /runningpods with the pod",
        Duration::from_secs(30),
        || async {
            let a = call("sre-token", "GET", "/runningpods/".into(), "").await?;
            (a.status == 200 && String::from_utf8_lossy(&a.body).contains(POD)).then_some(())
        },
    )
    .await;

    // Finding 2: `get` on nodes/proxy (the monitoring grant) opens no exec, attach or
    // portForward, by GET upgrade or otherwise; the review asked is `create`.
    for path in [
        format!("/exec/default/{POD}/main?command=id&stdout=1"),
        format!("/attach/default/{POD}/main?stdout=1"),
        format!("/portForward/default/{POD}?port=80"),
    ] {
        let a = call("mon-token", "GET", path.clone(), WS).await.unwrap();
        assert_eq!(
            (a.status, a.body.as_slice()),
            (403, &b"Forbidden\n"[..]),
            "{path}"
        );
    }
    let a = call(
        "mon-token",
        "POST",
        format!("/run/default/{POD}/main?cmd=id"),
        "",
    )
    .await
    .unwrap();
    assert_eq!(a.status, 403);
    // Good cases: monitoring still reads pods; the SRE (create) still runs commands.
    assert_eq!(
        call("mon-token", "GET", "/pods".into(), "")
            .await
            .unwrap()
            .status,
        200
    );
    let a = call(
        "sre-token",
        "POST",
        format!("/run/default/{POD}/main?cmd=echo%20via-sre"),
        "",
    )
    .await
    .unwrap();
    assert_eq!(
        (a.status, String::from_utf8_lossy(&a.body).trim()),
        (200, "via-sre")
    );

    // Finding 8: both must allow. The cluster grants `narrow` everything, the node's
    // policy only metrics; `outsider` is not in the policy at all.
    assert_eq!(
        call("narrow-token", "GET", "/metrics".into(), "")
            .await
            .unwrap()
            .status,
        200
    );
    for path in ["/pods", "/configz", "/healthz"] {
        let a = call("narrow-token", "GET", path.into(), "").await.unwrap();
        assert_eq!(a.status, 403, "narrow {path}");
    }
    assert_eq!(
        call("outsider-token", "GET", "/metrics".into(), "")
            .await
            .unwrap()
            .status,
        403
    );

    let sars: Vec<_> = api.access_reviews().iter().map(sar).collect();
    // Finding 2: the monitoring identity was asked `create` (and denied by the cluster).
    assert!(
        sars.iter()
            .any(|s| s.0 == "monitoring" && s.1 == "create" && s.2 == "proxy"),
        "{sars:#?}"
    );
    // Finding 8: what the local policy denies never becomes a SubjectAccessReview.
    assert!(
        !sars.iter().any(|s| s.0 == "outsider"),
        "outsider asked: {sars:#?}"
    );
    assert!(
        sars.iter()
            .filter(|s| s.0 == "narrow")
            .all(|s| s.2 == "metrics"),
        "{sars:#?}"
    );
    // Finding 3: each review carries the TokenReview's uid.
    for (u, uid) in [
        ("sre", "uid-sre"),
        ("monitoring", "uid-mon"),
        ("narrow", "uid-narrow"),
    ] {
        let mine: Vec<_> = sars.iter().filter(|s| s.0 == u).collect();
        assert!(!mine.is_empty(), "{u}");
        assert!(mine.iter().all(|s| s.3 == uid), "{u}: {mine:?}");
    }

    // Finding 7: an API pod that claims the static source is still an API pod: its
    // status is reported, and no mirror pod is made for it.
    let admin = api.client(&Identity::admin()).await;
    let pods: Api<Pod> = Api::namespaced(admin, "default");
    let claimer: Pod = serde_saphyr::from_str(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: claimer\n  namespace: default\n  \
         annotations: {{kubernetes.io/config.source: file}}\nspec:\n  nodeName: {NODE}\n  \
         restartPolicy: Always\n  dnsPolicy: ClusterFirst\n  terminationGracePeriodSeconds: 5\n  \
         containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: IfNotPresent\n    \
         command: [sh, -c, 'while true; do sleep 1; done']\n"
    ))
    .unwrap();
    pods.create(&PostParams::default(), &claimer).await.unwrap();
    api.wait_for("the claiming pod's status reported Running", T, |a| {
        let p = a.pod("default", "claimer")?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    let mirrors: Vec<String> = api
        .list::<Pod>(Some("default"))
        .into_iter()
        .filter(|p| {
            p.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
        })
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(mirrors, [POD], "mirror pods");
    assert!(node.agent_running(), "{}", node.agent_log(1));

    // Finding 4: the audit log. A TokenReview user name with a newline cannot forge a
    // line; /run with a form body and a refused exec are recorded with target and command;
    // unauthenticated noise is budgeted; the hash chain verifies, across a restart too,
    // and an edit is caught.
    api.add_token("forger-token", "eve\n{\"seq\":0,\"forged\":true}", &[]);
    assert_eq!(
        call("forger-token", "GET", "/pods".into(), "")
            .await
            .unwrap()
            .status,
        403
    );
    let raw = format!(
        "POST /run/default/{POD}/main HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sre-token\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 18\r\nConnection: close\r\n\r\ncmd=echo+form-body"
    );
    let a = parse_answer(&exchange(port, client(None), raw.as_bytes()).await.unwrap()).unwrap();
    assert_eq!(
        (a.status, String::from_utf8_lossy(&a.body).trim()),
        (200, "form-body")
    );
    let flood = 200;
    let flood_started = std::time::Instant::now();
    for i in 0..flood {
        let raw = format!(
            "GET /pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer flood-{i}\r\nConnection: close\r\n\r\n"
        );
        let a = parse_answer(&exchange(port, client(None), raw.as_bytes()).await.unwrap()).unwrap();
        // 401, or 503 once the review budget is spent: unauthenticated either way.
        assert!(matches!(a.status, 401 | 503), "{}", a.status);
    }
    let windows = flood_started.elapsed().as_secs() / 10 + 2;
    let records = |text: &str| -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    // Each noise window (10 s) closes and its count is written: wait until the written and
    // the suppressed records account for the whole flood (it may span two windows).
    let counted = |text: &str| -> u64 {
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|r| {
                if r["event"]["decision"] == "unauthenticated" {
                    1
                } else if r["event"]["kind"] == "suppressed" {
                    r["event"]["count"].as_u64().unwrap_or(0)
                } else {
                    0
                }
            })
            .sum()
    };
    let text = wait_for("the suppressed summaries", Duration::from_secs(40), || {
        let text = std::fs::read_to_string(&audit_log).unwrap_or_default();
        let done = text.contains("\"kind\":\"suppressed\"") && counted(&text) >= flood;
        async move { done.then_some(text) }
    })
    .await;
    let recs = records(&text);
    let ev = |r: &Value| r["event"].clone();
    let unauth = recs
        .iter()
        .filter(|r| r["event"]["decision"] == "unauthenticated")
        .count() as u64;
    let suppressed: u64 = recs
        .iter()
        .filter(|r| r["event"]["kind"] == "suppressed")
        .filter_map(|r| r["event"]["count"].as_u64())
        .sum();
    assert!(
        unauth <= windows * ironlet::server::audit::NOISE_BUDGET,
        "{unauth} unauthenticated records written"
    );
    assert_eq!(
        unauth + suppressed,
        flood,
        "every unauthenticated request counted"
    );
    let forged = recs
        .iter()
        .find(|r| {
            r["event"]["user"]
                .as_str()
                .is_some_and(|u| u.starts_with("eve"))
        })
        .expect("the forger's record");
    assert_eq!(forged["event"]["user"], "eve\n{\"seq\":0,\"forged\":true}");
    assert!(!recs.iter().any(|r| r.get("forged").is_some()));
    let find = |kind: &str, user: &str, decision: &str| {
        recs.iter()
            .map(ev)
            .find(|e| e["target"]["kind"] == kind && e["user"] == user && e["decision"] == decision)
            .unwrap_or_else(|| panic!("no {kind} record for {user} ({decision}): {text}"))
    };
    let run = recs
        .iter()
        .map(ev)
        .find(|e| e["command"] == serde_json::json!(["echo", "form-body"]))
        .unwrap_or_else(|| panic!("the form-body /run: {text}"));
    assert_eq!(
        (
            &run["target"]["pod"],
            &run["target"]["container"],
            &run["user"]
        ),
        (&POD.into(), &"main".into(), &"sre".into())
    );
    let exec = find("exec", "monitoring", "forbidden");
    assert_eq!(exec["command"], serde_json::json!(["id"]));
    assert_eq!(exec["target"]["namespace"], "default");
    find("portForward", "monitoring", "forbidden");
    assert!(
        !text.contains("sre-token") && !text.contains("flood-1"),
        "a token in the audit log"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&audit_log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let verify = |files: &[&std::path::Path]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ironlet"))
            .args(["audit", "verify"])
            .args(files)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = verify(&[&audit_log]);
    assert_eq!(code, Some(0), "{out}");
    // A restart continues the chain.
    node.stop_agent();
    node.start_agent();
    wait_for("the API answers again", Duration::from_secs(60), || async {
        let a = call("sre-token", "GET", "/pods".into(), "").await?;
        (a.status == 200).then_some(())
    })
    .await;
    let text = std::fs::read_to_string(&audit_log).unwrap();
    assert_eq!(text.matches("\"kind\":\"start\"").count(), 2, "{text}");
    let (code, out) = verify(&[&audit_log]);
    assert_eq!(code, Some(0), "{out}");
    // An edited record (a 403 made a 200) breaks the chain at the next line.
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("\"status\":403"))
        .unwrap();
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[at] = edited[at].replacen("\"status\":403", "\"status\":200", 1);
    let copy = node.dir.path().join("edited.log");
    std::fs::write(&copy, edited.join("\n") + "\n").unwrap();
    let (code, out) = verify(&[&copy]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("edited.log:{}", at + 2)), "{out}");
    // A removed record is a gap.
    let mut removed: Vec<&str> = lines.clone();
    removed.remove(at);
    std::fs::write(&copy, removed.join("\n") + "\n").unwrap();
    let (code, out) = verify(&[&copy]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("gap"), "{out}");
    node.cleanup().await;
}

/// Finding 10: a kubeconfig whose user runs an exec credential plugin is refused at load,
/// naming the field, instead of starting and dying under seccomp at the first API call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_exec_plugins_are_refused_at_startup_naming_the_field() {
    use base64::Engine;
    let api = FakeApi::start();
    let mut node = Node::new();
    let marker = node.dir.path().join("plugin-ran");
    let kubeconfig = node.dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    \
             certificate-authority-data: {}\ncontexts:\n- name: x\n  context: {{cluster: c, user: node}}\n\
             current-context: x\nusers:\n- name: node\n  user:\n    exec:\n      \
             apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n      \
             args: [-c, 'touch {}']\n      interactiveMode: Never\n",
            api.url(),
            base64::engine::general_purpose::STANDARD.encode(api.ca_pem()),
            marker.display()
        ),
    )
    .unwrap();
    node.extra_args = vec!["--kubeconfig".into(), kubeconfig.display().to_string()];
    node.start_agent();
    wait_for("the agent exits", Duration::from_secs(30), || {
        let running = node.agent_running();
        async move { (!running).then_some(()) }
    })
    .await;
    let log = node.agent_log(1);
    assert!(
        log.contains("users[0] (\"node\").user.exec") && log.contains("credential plugins"),
        "{log}"
    );
    assert!(!marker.exists(), "the plugin ran");
    assert!(
        api.requests().is_empty(),
        "the agent reached the API server"
    );
    node.cleanup().await;
}

/// Finding 1: a flood of random bearer tokens cannot starve the node. The heartbeat has a
/// budget of its own, so the lease stays fresh and the node Ready; the TokenReviews the
/// flood causes stay within the review budget; callers past it get 503 with
/// `Retry-After` at once. The checks are counts and states; the timings are printed as
/// figures. `IRONLET_FLOOD_SECS` sets the flood's length (default 15; 60 for the report).
/// Also finding 6's fd limit: the agent raises its soft RLIMIT_NOFILE to the hard limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_token_flood_keeps_the_lease_fresh_and_reviews_within_budget() {
    use ironlet::budget::{REVIEW_BURST, REVIEW_QPS};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let secs: u64 = std::env::var("IRONLET_FLOOD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let api = FakeApi::start();
    let serving = Ca::new("serving-ca");
    let (cert_pem, key_pem) = serving.leaf_pem("node", None, &["127.0.0.1"], false);
    let pki_dir = tempfile::tempdir().unwrap();
    let p = |n: &str| pki_dir.path().join(n).display().to_string();
    std::fs::write(p("server.crt"), cert_pem).unwrap();
    std::fs::write(p("server.key"), key_pem).unwrap();
    let port = free_port();
    let lease_secs = 8;
    let mut node = Node::with_config(&format!(
        "healthzPort: 0\nruntimeRequestTimeout: 30s\naddress: 127.0.0.1\nport: {port}\n\
         tlsCertFile: {}\ntlsPrivateKeyFile: {}\nnodeStatusUpdateFrequency: 2s\n\
         nodeLeaseDurationSeconds: {lease_secs}\n",
        p("server.crt"),
        p("server.key")
    ));
    let kubeconfig = node.dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig, &Identity::node(NODE));
    node.extra_args = vec!["--kubeconfig".into(), kubeconfig.display().to_string()];
    // Finding 6: the agent starts with systemd's usual soft fd limit (1024) and raises it
    // to the hard limit itself. The test lowers its own soft limit for the spawn only.
    let me = std::process::id().to_string();
    let nofile = |pid: &str| -> (u64, u64) {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_string();
        let v: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (v[0], v[1])
    };
    let (soft, hard) = nofile(&me);
    let set = |soft: u64| {
        let ok = std::process::Command::new("prlimit")
            .args(["--pid", &me, &format!("--nofile={soft}:{hard}")])
            .status()
            .unwrap()
            .success();
        assert!(ok, "prlimit");
    };
    set(1024.min(hard));
    node.start_agent();
    set(soft);
    let agent = node.agent_pid().to_string();
    wait_for(
        "the agent raised its soft fd limit",
        Duration::from_secs(20),
        || {
            let l = nofile(&agent);
            async move { (l == (hard, hard)).then_some(()) }
        },
    )
    .await;
    let renew_time = |a: &FakeApi| {
        a.lease("kube-node-lease", NODE)
            .and_then(|l| l.spec?.renew_time)
            .map(|t| t.0)
    };
    api.wait_for("lease", T, |a| renew_time(a)).await;
    // The API server is up and the agent's 10250 answers before the flood starts.
    wait_for("10250 answers", Duration::from_secs(30), || async {
        let raw = "GET /pods HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let a = parse_answer(&exchange(port, client(None), raw.as_bytes()).await.ok()?)?;
        (a.status == 401).then_some(())
    })
    .await;
    let reviews_before = api.token_reviews().len() as u64;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (n401, n503, no_retry_after) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut flooders = Vec::new();
    for w in 0..8u64 {
        let (stop, n401, n503, no_retry_after) = (
            stop.clone(),
            n401.clone(),
            n503.clone(),
            no_retry_after.clone(),
        );
        flooders.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let raw = format!(
                    "GET /pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer flood-{w}-{i}-{}\r\nConnection: close\r\n\r\n",
                    rand_suffix(w, i)
                );
                let Ok(out) = exchange(port, client(None), raw.as_bytes()).await else {
                    continue;
                };
                match parse_answer(&out) {
                    Some(a) if a.status == 401 => {
                        n401.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(a) if a.status == 503 => {
                        n503.fetch_add(1, Ordering::Relaxed);
                        if a.header("retry-after") != Some("1") {
                            no_retry_after.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Some(a) => panic!("flood answer {}", a.status),
                    // The connection ended without an answer (counted as neither).
                    None => {}
                }
            }
        }));
    }
    // Watch the heartbeat while the flood runs: the lease's age and the node's Ready.
    let started = std::time::Instant::now();
    let mut max_age = Duration::ZERO;
    let mut renewals = std::collections::BTreeSet::new();
    let mut not_ready = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(t) = renew_time(&api) {
            renewals.insert(t);
            let age = jiff::Timestamp::now().duration_since(t);
            max_age = max_age.max(Duration::try_from(age).unwrap_or(Duration::ZERO));
        }
        let ready = api.node(NODE).is_some_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if !ready {
            not_ready += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.await.unwrap();
    }
    let took = started.elapsed().as_secs_f64();
    let reviews = api.token_reviews().len() as u64 - reviews_before;
    let (r401, r503) = (n401.load(Ordering::Relaxed), n503.load(Ordering::Relaxed));
    eprintln!(
        "flood {took:.1}s: {} requests ({r401} x 401, {r503} x 503), {reviews} TokenReviews \
         ({:.1}/s; budget {REVIEW_QPS}/s + {REVIEW_BURST}), lease renewed {} times, \
         oldest lease seen {:.2}s of {lease_secs}s",
        r401 + r503,
        reviews as f64 / took,
        renewals.len(),
        max_age.as_secs_f64()
    );
    // The reviews the flood caused stay within the budget (its burst plus its rate).
    let bound = f64::from(REVIEW_BURST) + REVIEW_QPS * took;
    assert!(
        (reviews as f64) <= bound,
        "{reviews} TokenReviews > {bound:.0}"
    );
    if (r401 + r503) as f64 > bound {
        assert!(
            r503 > 0,
            "more requests than budget, and nobody was refused"
        );
    }
    assert_eq!(
        no_retry_after.load(Ordering::Relaxed),
        0,
        "503 without Retry-After: 1"
    );
    // The heartbeat: the lease never expired and the node stayed Ready.
    assert!(
        max_age < Duration::from_secs(lease_secs),
        "the lease aged {max_age:?} (duration {lease_secs}s)"
    );
    assert!(renewals.len() >= 2, "{renewals:?}");
    assert_eq!(not_ready, 0, "the node was seen not Ready");
    assert!(node.agent_running(), "{}", node.agent_log(1));
    node.cleanup().await;
}

/// A token suffix that differs per request (no cache hit can absorb the flood).
fn rand_suffix(w: u64, i: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(w);
    h.write_u64(i);
    format!("{:016x}", h.finish())
}
