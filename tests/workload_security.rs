//! The workload boundary against a real containerd and the real kernel: what a pod author
//! asks for in securityContext, sysctls and Pod Security is either what the container gets,
//! judged from the host (`/proc/<pid>/status`, the pod's network namespace through
//! nsenter, the runtime's sandbox list), or a refusal that names the field and creates
//! nothing in the runtime. Needs root (it runs containerd).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::*;

const T: Duration = Duration::from_secs(60);
const NONROOT: &str = xtask::images::BUSYBOX_NONROOT_IMAGE;

/// A policy with one namespace per level for static pods; the default stays baseline.
const POLICY: &str = r#"{
  "apiVersion": "ironlet.dev/v1alpha1", "kind": "NodePodSecurity",
  "reason": "test node: one namespace per level",
  "sources": [
    {"source": "file", "level": "baseline", "reason": "the default for static pods"},
    {"source": "api", "level": "baseline", "reason": "the default for API pods"}
  ],
  "namespaces": [
    {"source": "file", "namespace": "lab", "level": "privileged", "reason": "pods that must opt out"},
    {"source": "file", "namespace": "tenant", "level": "restricted", "reason": "untrusted workloads"}
  ]
}"#;

fn node_with_policy() -> Node {
    let mut node = Node::new();
    let policy = node.dir.path().join("pod-security.json");
    std::fs::write(&policy, POLICY).unwrap();
    node.extra_args = vec![
        "--pod-security-policy-file".into(),
        policy.display().to_string(),
    ];
    node
}

/// A one-container pod: `pod_spec` goes under `spec:` (2-space indented lines), `container`
/// under the container (4-space indented lines).
fn manifest(name: &str, ns: &str, image: &str, pod_spec: &str, container: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  terminationGracePeriodSeconds: 1\n{pod_spec}  containers:\n  - name: main\n    image: {image}\n    command: [sleep, '3600']\n{container}"
    )
}

/// The pod as the agent reports it (static pods are named `<name>-<node>`).
fn view_pod(node: &Node, name: &str) -> Option<Value> {
    let full = format!("{name}-{NODE}");
    node.view_pods()?
        .into_iter()
        .find(|p| p["metadata"]["name"] == full.as_str())
}

async fn wait_failed(node: &Node, name: &str) -> Value {
    wait_for(&format!("{name} Failed"), T, || async {
        view_pod(node, name).filter(|p| p["status"]["phase"] == "Failed")
    })
    .await
}

/// The pid of the container's process on the host, found by its container ID in
/// `/proc/<pid>/cgroup` (cgroup v1 or v2), not from ironlet.
async fn container_pid(node: &Node, pod: &str) -> u32 {
    let sb = node.wait_running(pod, &["main"], T).await;
    let id = node
        .containers_in(&sb.id)
        .await
        .into_iter()
        .find(|c| c.metadata.as_ref().is_some_and(|m| m.name == "main"))
        .expect("main container")
        .id;
    wait_for(&format!("the process of {pod}"), T, || async {
        let mut pids: Vec<u32> = std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|pid: &u32| read_file(Path::new(&format!("/proc/{pid}/cgroup"))).contains(&id))
            .collect();
        pids.sort();
        pids.first().copied()
    })
    .await
}

fn status_field(pid: u32, field: &str) -> String {
    read_file(Path::new(&format!("/proc/{pid}/status")))
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Nothing of the pod reached the runtime: no sandbox, after a few relists.
async fn assert_never_created(node: &Node, name: &str) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sbs = node.sandboxes(&format!("{name}-{NODE}")).await;
    assert!(
        sbs.is_empty(),
        "{name} has sandboxes in the runtime: {sbs:?}"
    );
}

fn message(p: &Value) -> String {
    p["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seccomp_and_sysctls_are_what_the_kernel_shows() {
    let mut node = node_with_policy();
    let profiles = node.root().join("seccomp/profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(
        profiles.join("deny-mkdir.json"),
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let m = |file: &str, body: String| node.write_manifest(file, &body);
    // seccompDefault is on by default here: no profile still means RuntimeDefault.
    m("plain.yaml", manifest("plain", "default", BUSYBOX, "", ""));
    m(
        "rtdefault.yaml",
        manifest(
            "rtdefault",
            "default",
            BUSYBOX,
            "  securityContext: {seccompProfile: {type: RuntimeDefault}}\n",
            "",
        ),
    );
    // Unconfined is below baseline: only the privileged namespace may run it.
    m(
        "unconfined.yaml",
        manifest(
            "unconfined",
            "lab",
            BUSYBOX,
            "",
            "    securityContext: {seccompProfile: {type: Unconfined}}\n",
        ),
    );
    m(
        "local.yaml",
        manifest(
            "local",
            "default",
            BUSYBOX,
            "",
            "    securityContext: {seccompProfile: {type: Localhost, localhostProfile: profiles/deny-mkdir.json}}\n",
        ),
    );
    for (name, path) in [
        ("escape", "../../../../etc/x.json"),
        ("absolute", "/etc/x.json"),
    ] {
        m(
            &format!("{name}.yaml"),
            manifest(
                name,
                "default",
                BUSYBOX,
                "",
                &format!(
                    "    securityContext: {{seccompProfile: {{type: Localhost, localhostProfile: {path:?}}}}}\n"
                ),
            ),
        );
    }
    // A safe sysctl is applied in the pod's network namespace; an unsafe one fails the pod.
    m(
        "safesysctl.yaml",
        manifest(
            "safesysctl",
            "default",
            BUSYBOX,
            "  securityContext: {sysctls: [{name: net.ipv4.ip_unprivileged_port_start, value: '77'}]}\n",
            "",
        ),
    );
    m(
        "msgmax.yaml",
        manifest(
            "msgmax",
            "default",
            BUSYBOX,
            "  securityContext: {sysctls: [{name: kernel.msgmax, value: '65536'}]}\n",
            "",
        ),
    );
    let host_msgmax = read_file(Path::new("/proc/sys/kernel/msgmax"));
    node.start_agent();

    for (pod, want) in [
        ("plain", "2"),
        ("rtdefault", "2"),
        ("local", "2"),
        ("unconfined", "0"),
    ] {
        let pid = container_pid(&node, pod).await;
        assert_eq!(
            status_field(pid, "Seccomp"),
            want,
            "{pod}: Seccomp in /proc/{pid}/status"
        );
    }
    // The Localhost profile is the one loaded: mkdir fails inside, from the container's view.
    let sb = node.wait_running("local", &["main"], T).await;
    let id = node.containers_in(&sb.id).await[0].id.clone();
    let out = node
        .cri
        .exec_sync(
            &id,
            vec![
                "sh".into(),
                "-c".into(),
                "mkdir /tmp/x && echo made || echo refused".into(),
            ],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "refused");

    for name in ["escape", "absolute"] {
        let p = wait_failed(&node, name).await;
        assert_eq!(p["status"]["reason"], "UnsupportedPodSpec", "{p}");
        assert!(
            message(&p).contains("securityContext.seccompProfile.localhostProfile")
                && message(&p).contains("without '..'"),
            "{p}"
        );
        assert_never_created(&node, name).await;
    }

    let pid = container_pid(&node, "safesysctl").await;
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "77", "{out:?}");

    let p = wait_failed(&node, "msgmax").await;
    assert_eq!(p["status"]["reason"], "SysctlForbidden", "{p}");
    assert_eq!(
        message(&p),
        "forbidden sysctl: \"kernel.msgmax\" not allowlisted"
    );
    assert_never_created(&node, "msgmax").await;
    assert_eq!(read_file(Path::new("/proc/sys/kernel/msgmax")), host_msgmax);
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_as_non_root_is_enforced_against_the_image_user() {
    let mut node = Node::new();
    let nonroot = "    securityContext: {runAsNonRoot: true}\n";
    node.write_manifest(
        "rootimage.yaml",
        &manifest("rootimage", "default", BUSYBOX, "", nonroot),
    );
    node.write_manifest(
        "uid1000.yaml",
        &manifest(
            "uid1000",
            "default",
            BUSYBOX,
            "  securityContext: {runAsNonRoot: true, runAsUser: 1000}\n",
            "",
        ),
    );
    node.write_manifest(
        "nonrootimage.yaml",
        &manifest("nonrootimage", "default", NONROOT, "", nonroot),
    );
    node.write_manifest(
        "uid0.yaml",
        &manifest(
            "uid0",
            "default",
            NONROOT,
            "",
            "    securityContext: {runAsNonRoot: true, runAsUser: 0}\n",
        ),
    );
    node.start_agent();

    for (pod, want) in [
        (
            "rootimage",
            "container has runAsNonRoot and image will run as root (pod: \"rootimage-testnode_default(",
        ),
        (
            "uid0",
            "container's runAsUser breaks non-root policy (pod: \"uid0-testnode_default(",
        ),
    ] {
        let p = wait_for(&format!("{pod} waiting"), T, || async {
            let p = view_pod(&node, pod)?;
            let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
            (w["reason"] == "CreateContainerConfigError").then_some(w)
        })
        .await;
        let msg = p["message"].as_str().unwrap_or_default();
        assert!(
            msg.starts_with(want) && msg.ends_with(", container: main)"),
            "{msg}"
        );
        // The sandbox exists, but no container was ever created in it.
        let sb = node.sandboxes(&format!("{pod}-{NODE}")).await;
        assert_eq!(sb.len(), 1);
        assert!(node.containers_in(&sb[0].id).await.is_empty(), "{pod}");
    }
    for pod in ["uid1000", "nonrootimage"] {
        let pid = container_pid(&node, pod).await;
        let uid = status_field(pid, "Uid");
        assert!(
            uid.split_whitespace().all(|u| u == "1000"),
            "{pod}: Uid {uid}"
        );
    }
    node.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_security_and_unsupported_fields_refuse_by_name() {
    let mut node = node_with_policy();
    let restricted_ok = "    securityContext: {runAsNonRoot: true, allowPrivilegeEscalation: false, seccompProfile: {type: RuntimeDefault}, capabilities: {drop: [ALL]}}\n";
    let privileged = "    securityContext: {privileged: true}\n";
    let pods: Vec<(&str, String)> = vec![
        ("priv", manifest("priv", "default", BUSYBOX, "", privileged)),
        (
            "hostpath",
            manifest(
                "hostpath",
                "default",
                BUSYBOX,
                "  volumes:\n  - {name: etc, hostPath: {path: /etc}}\n",
                "    volumeMounts: [{name: etc, mountPath: /host-etc}]\n",
            ),
        ),
        ("bare", manifest("bare", "tenant", BUSYBOX, "", "")),
        (
            "tenantok",
            manifest("tenantok", "tenant", NONROOT, "", restricted_ok),
        ),
        (
            "labpriv",
            manifest("labpriv", "lab", BUSYBOX, "", privileged),
        ),
        (
            "userns",
            manifest("userns", "default", BUSYBOX, "  hostUsers: false\n", ""),
        ),
        (
            "selinux",
            manifest(
                "selinux",
                "lab",
                BUSYBOX,
                "",
                "    securityContext: {seLinuxOptions: {type: spc_t}}\n",
            ),
        ),
        (
            "apparmor",
            manifest(
                "apparmor",
                "default",
                BUSYBOX,
                "",
                "    securityContext: {appArmorProfile: {type: Localhost, localhostProfile: my-profile}}\n",
            ),
        ),
    ];
    for (name, body) in &pods {
        node.write_manifest(&format!("{name}.yaml"), body);
    }
    node.start_agent();

    // Pods the policy allows run, in every level.
    node.wait_running("tenantok", &["main"], T).await;
    let pid = container_pid(&node, "labpriv").await;
    // Privileged really is privileged: the full capability set, from the host's view.
    assert_eq!(
        status_field(pid, "CapEff"),
        status_field(std::process::id(), "CapBnd")
    );

    let cases: &[(&str, &str, &[&str])] = &[
        (
            "priv",
            "PodSecurity",
            &[
                "violates PodSecurity \"baseline:v1.33\"",
                "privileged (container \"main\"",
            ],
        ),
        (
            "hostpath",
            "PodSecurity",
            &["hostPath volumes (volume \"etc\" uses hostPath)"],
        ),
        (
            "bare",
            "PodSecurity",
            &[
                "\"restricted:v1.33\"",
                "allowPrivilegeEscalation (",
                "runAsNonRoot (",
                "seccompProfile (",
                "capabilities (container \"main\" must set securityContext.capabilities.drop=[\"ALL\"]",
                "for static pods in namespace \"tenant\"",
            ],
        ),
        (
            "userns",
            "UnsupportedPodSpec",
            &["spec.hostUsers: false", "containerd"],
        ),
        (
            "selinux",
            "UnsupportedPodSpec",
            &[
                "spec.containers[0].securityContext.seLinuxOptions",
                "no SELinux",
            ],
        ),
        (
            "apparmor",
            "AppArmor",
            &["appArmorProfile", "AppArmor is not enabled on this host"],
        ),
    ];
    for (name, reason, parts) in cases {
        let p = wait_failed(&node, name).await;
        assert_eq!(p["status"]["reason"], *reason, "{name}: {p}");
        for part in *parts {
            assert!(
                message(&p).contains(part),
                "{name}: {part:?} not in {:?}",
                message(&p)
            );
        }
        assert_never_created(&node, name).await;
    }
    node.cleanup().await;
}

/// API pods pass the same node-side admission: a privileged pod in `default` is Failed in
/// the API with the check named; in `kube-system` (privileged by the compiled-in policy)
/// the same pod runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_pods_get_the_node_pod_security_too() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::Api;
    use kube::api::PostParams;
    use support::fakeapi::{FakeApi, Identity};

    let api = FakeApi::start();
    let mut node = Node::with_config(
        "healthzPort: 0\nruntimeRequestTimeout: 30s\nnodeStatusUpdateFrequency: 1s\n",
    );
    let kubeconfig = node.dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig, &Identity::node(NODE));
    node.extra_args = vec!["--kubeconfig".into(), kubeconfig.display().to_string()];
    node.start_agent();
    let client = api.client(&Identity::admin()).await;
    let pod = |ns: &str| -> Pod {
        serde_saphyr::from_str(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: priv\n  namespace: {ns}\nspec:\n  nodeName: {NODE}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n    securityContext: {{privileged: true}}\n"
        ))
        .unwrap()
    };
    for ns in ["default", "kube-system"] {
        Api::<Pod>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &pod(ns))
            .await
            .unwrap();
    }
    let default: Api<Pod> = Api::namespaced(client.clone(), "default");
    let failed = wait_for("the default pod Failed in the API", T, || async {
        let p = default.get("priv").await.ok()?;
        let s = p.status?;
        (s.phase.as_deref() == Some("Failed")).then_some(s)
    })
    .await;
    assert_eq!(failed.reason.as_deref(), Some("PodSecurity"));
    let msg = failed.message.unwrap_or_default();
    assert!(
        msg.contains("privileged (container \"main\"")
            && msg.contains("for API pods in namespace \"default\""),
        "{msg}"
    );
    // Judged in the runtime: only the kube-system pod has a sandbox, and it runs.
    wait_for("the kube-system pod running", T, || async {
        let sbs = node.cri.list_pod_sandbox().await.ok()?;
        let mine: Vec<_> = sbs
            .iter()
            .filter_map(|s| s.metadata.as_ref())
            .filter(|m| m.name == "priv")
            .collect();
        assert!(
            mine.iter().all(|m| m.namespace == "kube-system"),
            "{mine:?}"
        );
        (!mine.is_empty()).then_some(())
    })
    .await;
    node.wait_running_full("priv", &["main"], T).await;
    node.cleanup().await;
}
