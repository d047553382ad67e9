//! `ironlet check` against a real node: the confined release binary as a cluster-mode agent
//! (fake API server) on a real containerd, with a real serving certificate, client CA,
//! kubeconfig, unit file and modes set as a hardened node has them. Each broken fixture
//! changes one thing on the node (a file mode, a config edit, a restart with one setting
//! changed) and must flip exactly the expected ids to FAIL. The verdicts are judged from
//! outside: the `ironlet check` binary's output, and for the 4.1 file checks also kube-bench's
//! own audit commands (from cis/cis-1.12.json) run through /bin/sh.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

#[path = "api_support/mod.rs"]
mod api_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use api_support::{Ca, Pki};
use serde_json::Value;
use support::fakeapi::{FakeApi, Identity};
use support::{NODE, Node, free_port};

struct Fixture {
    node: Node,
    pki: PathBuf,
    service: PathBuf,
    kubeconfig: PathBuf,
    port: u16,
    healthz: u16,
}

impl Fixture {
    fn p(&self, n: &str) -> PathBuf {
        self.pki.join(n)
    }
    fn config(&self) -> PathBuf {
        self.node.dir.path().join("config.yaml")
    }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs `ironlet check ARGS`; returns (exit code, stdout).
fn check(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ironlet"))
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn json_report(f: &Fixture, extra: &[&str]) -> (i32, Value) {
    let root = f.node.root().display().to_string();
    let svc = f.service.display().to_string();
    let mut args = vec!["--root-dir", &root, "--service-file", &svc, "--json"];
    args.extend_from_slice(extra);
    let (code, out) = check(&args);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    (code, v)
}

/// id → (status, result) of every check in a JSON report.
fn statuses(v: &Value) -> BTreeMap<String, (String, Value)> {
    let mut out = BTreeMap::new();
    for c in v["Controls"].as_array().unwrap() {
        for g in c["tests"].as_array().unwrap() {
            for r in g["results"].as_array().unwrap() {
                out.insert(
                    r["test_number"].as_str().unwrap().to_owned(),
                    (r["status"].as_str().unwrap().to_owned(), r.clone()),
                );
            }
        }
    }
    out
}

fn fails(v: &Value) -> BTreeSet<String> {
    statuses(v)
        .into_iter()
        .filter(|(_, (s, _))| s == "FAIL")
        .map(|(id, _)| id)
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Asserts the set of FAIL ids; prints the failing results otherwise.
fn assert_fails(what: &str, v: &Value, want: &[&str]) {
    let got = fails(v);
    if got != set(want) {
        let detail: Vec<String> = statuses(v)
            .into_iter()
            .filter(|(id, (s, _))| s == "FAIL" || want.contains(&id.as_str()))
            .map(|(id, (s, r))| format!("{id} {s}: {} | {}", r["reason"], r["actual_value"]))
            .collect();
        panic!(
            "{what}: FAIL ids {got:?}, want {want:?}\n{}",
            detail.join("\n")
        );
    }
}

/// Waits until the agent started `n`-th time has written its pid and opened 10250.
fn wait_agent_ready(f: &mut Fixture) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = f.node.agent_pid();
    loop {
        let state: Option<Value> = std::fs::read(f.node.root().join("status/agent.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let pid_ok = state.is_some_and(|s| s["pid"].as_u64() == Some(u64::from(pid)));
        let open = std::net::TcpStream::connect(("127.0.0.1", f.port)).is_ok();
        let healthz = std::net::TcpStream::connect(("127.0.0.1", f.healthz)).is_ok();
        if pid_ok && open && healthz {
            return;
        }
        assert!(
            f.node.agent_running(),
            "agent exited:\n{}",
            f.node.agent_log(1)
        );
        assert!(Instant::now() < deadline, "agent not ready");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn restart(f: &mut Fixture) {
    f.node.stop_agent();
    f.node.start_agent();
    wait_agent_ready(f);
}

/// A minimal XML well-formedness check: balanced, properly nested tags, quoted attributes,
/// and no raw `<` or bare `&` in text.
fn well_formed(xml: &str) -> Result<usize, String> {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = xml;
    let mut elements = 0;
    let text_ok = |t: &str| -> Result<(), String> {
        let mut s = t;
        while let Some(i) = s.find('&') {
            let after = &s[i + 1..];
            let end = after.find(';').ok_or("bare &")?;
            if !["amp", "lt", "gt", "quot", "apos"].contains(&&after[..end]) {
                return Err(format!("unknown entity &{};", &after[..end]));
            }
            s = &after[end + 1..];
        }
        Ok(())
    };
    while let Some(i) = rest.find('<') {
        text_ok(&rest[..i])?;
        let end = rest[i..].find('>').ok_or("unclosed tag")? + i;
        let tag = &rest[i + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack
                .pop()
                .ok_or(format!("</{name}> without an open tag"))?;
            if open != name.trim() {
                return Err(format!("</{name}> closes <{open}>"));
            }
            continue;
        }
        if tag.contains('<') {
            return Err(format!("'<' inside tag {tag}"));
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name = body
            .split_whitespace()
            .next()
            .ok_or("empty tag")?
            .to_owned();
        let attrs = &body[name.len()..];
        if !attrs.matches('"').count().is_multiple_of(2)
            || (attrs.contains('=') && !attrs.contains('"'))
        {
            return Err(format!("unquoted attribute in <{tag}>"));
        }
        text_ok(attrs)?;
        elements += 1;
        if !self_closing {
            stack.push(name);
        }
    }
    text_ok(rest)?;
    if stack.is_empty() {
        Ok(elements)
    } else {
        Err(format!("unclosed: {stack:?}"))
    }
}

/// Field names and JSON types of kube-bench's Controls/Group/Check/Totals.
fn assert_kube_bench_shape(v: &Value) {
    use Value::*;
    let keys = |o: &Value| {
        o.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(keys(v), set(&["Controls", "Totals"]));
    let summary = ["total_pass", "total_fail", "total_warn", "total_info"];
    for k in summary {
        assert!(v["Totals"][k].is_u64(), "Totals.{k}");
    }
    for c in v["Controls"].as_array().unwrap() {
        let mut want = set(&[
            "id",
            "version",
            "detected_version",
            "text",
            "node_type",
            "tests",
        ]);
        want.extend(set(&summary));
        assert_eq!(keys(c), want);
        for k in ["id", "version", "detected_version", "text", "node_type"] {
            assert!(matches!(c[k], String(_)), "Controls.{k}");
        }
        for g in c["tests"].as_array().unwrap() {
            assert_eq!(
                keys(g),
                set(&[
                    "section", "type", "pass", "fail", "warn", "info", "desc", "results"
                ])
            );
            for k in ["pass", "fail", "warn", "info"] {
                assert!(g[k].is_u64(), "Group.{k}");
            }
            for r in g["results"].as_array().unwrap() {
                let mut want = set(&[
                    "test_number",
                    "test_desc",
                    "audit",
                    "AuditEnv",
                    "AuditConfig",
                    "type",
                    "remediation",
                    "test_info",
                    "status",
                    "actual_value",
                    "scored",
                    "IsMultiple",
                    "expected_result",
                ]);
                let k = keys(r);
                if k.contains("reason") {
                    want.insert("reason".into());
                    assert!(matches!(r["reason"], String(_)));
                }
                assert_eq!(k, want, "{r}");
                for s in [
                    "test_number",
                    "test_desc",
                    "audit",
                    "AuditEnv",
                    "AuditConfig",
                    "type",
                    "remediation",
                    "actual_value",
                    "expected_result",
                ] {
                    assert!(matches!(r[s], String(_)), "Check.{s}");
                }
                assert!(
                    r["test_info"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(Value::is_string)
                );
                assert!(r["scored"].is_boolean() && r["IsMultiple"].is_boolean());
                assert!(["PASS", "FAIL", "WARN", "INFO"].contains(&r["status"].as_str().unwrap()));
            }
        }
    }
}

/// kube-bench's own 4.1 audit commands (the `audit` strings of cis/cis-1.12.json) with its
/// variables bound to this node's files, run through /bin/sh and judged as kube-bench judges
/// them (bitmask over `permissions=`, `root:root` present). Returns id → pass.
fn kube_bench_file_verdicts(v: &Value, vars: &[(&str, &Path)]) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    for (id, (_, r)) in statuses(v) {
        if !id.starts_with("4.1.") {
            continue;
        }
        let mut audit = r["AuditConfig"].as_str().unwrap().to_owned();
        if !vars.iter().any(|(name, _)| audit.contains(name)) {
            continue;
        }
        for (name, path) in vars {
            audit = audit.replace(name, &path.display().to_string());
        }
        let out_text = Command::new("/bin/sh")
            .arg("-c")
            .arg(&audit)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out_text.stdout).into_owned();
        let mask = r["expected_result"]
            .as_str()
            .unwrap()
            .strip_prefix("permissions has permissions ")
            .and_then(|s| s.split(',').next())
            .and_then(|m| u32::from_str_radix(m, 8).ok());
        let pass = match mask {
            Some(mask) => text
                .trim()
                .strip_prefix("permissions=")
                .and_then(|m| u32::from_str_radix(m, 8).ok())
                .is_some_and(|m| m & mask == m),
            None => text.contains("root:root"),
        };
        out.insert(id, pass);
    }
    out
}

/// Seccomp modes of the processes in this node's pod cgroups, read by the test itself.
fn pod_seccomp(cgroup_root: &str) -> Vec<(String, String)> {
    let prefix = format!("{cgroup_root}/kubepods/");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cg = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
        if !cg.lines().any(|l| l.contains(&prefix)) {
            continue;
        }
        let st = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let mode = st
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default();
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        out.push((format!("{pid} {}", comm.trim()), mode));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardened_node_passes_and_each_broken_thing_flips_exactly_its_checks() {
    let api = FakeApi::start();
    let client_ca = Pki::new();
    let serving = Ca::new("serving-ca");
    let (cert_pem, key_pem) =
        serving.leaf_pem("testnode", None, &["localhost", "127.0.0.1"], false);
    let (expired_pem, _) = serving.leaf_pem("testnode", None, &["127.0.0.1"], true);
    let port = free_port();
    let healthz = free_port();
    let pki = tempfile::Builder::new()
        .prefix("ironlet-cis-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let p = |n: &str| pki.path().join(n);
    std::fs::write(p("server.crt"), &cert_pem).unwrap();
    std::fs::write(p("server.key"), &key_pem).unwrap();
    chmod(&p("server.key"), 0o600);
    std::fs::write(p("ca.crt"), client_ca.ca.pem()).unwrap();
    chmod(&p("ca.crt"), 0o644);
    let config_body = format!(
        "runtimeRequestTimeout: 30s\naddress: 127.0.0.1\nport: {port}\nhealthzPort: {healthz}\n\
         tlsCertFile: {}\ntlsPrivateKeyFile: {}\nauthentication:\n  anonymous:\n    enabled: false\n  x509:\n    clientCAFile: {}\n\
         authorization:\n  mode: Webhook\npodPidsLimit: 1024\n\
         tlsCipherSuites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n",
        p("server.crt").display(),
        p("server.key").display(),
        p("ca.crt").display()
    );
    let mut node = Node::with_config(&config_body);
    let kubeconfig = node.dir.path().join("kubelet.conf");
    api.write_kubeconfig(&kubeconfig, &Identity::node(NODE));
    node.extra_args = vec!["--kubeconfig".into(), kubeconfig.display().to_string()];
    let config = node.dir.path().join("config.yaml");
    chmod(&config, 0o600);
    let service = node.dir.path().join("kubelet.service");
    std::fs::write(
        &service,
        format!(
            "[Unit]\nDescription=ironlet\n[Service]\nExecStart={} run --config={} --kubeconfig={}\n",
            env!("CARGO_BIN_EXE_ironlet"),
            config.display(),
            kubeconfig.display()
        ),
    )
    .unwrap();
    chmod(&service, 0o600);
    node.start_agent();
    let mut f = Fixture {
        node,
        pki: pki.path().to_path_buf(),
        service,
        kubeconfig,
        port,
        healthz,
    };
    wait_agent_ready(&mut f);
    // One running pod, so the seccomp probe of pod processes has something to judge. The
    // expected verdict comes from the test's own reading of /proc.
    f.node.write_manifest(
        "sleeper.yaml",
        &support::pod_manifest("sleeper", "sleep 3600", ""),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let pods = loop {
        let p = pod_seccomp(&f.node.cgroup_root);
        if p.iter().any(|(c, _)| c.ends_with(" sleep")) {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the sleeper pod did not start: {p:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let pods_ok = pods.iter().all(|(_, m)| m == "2");
    // The baseline FAIL set of a node whose configuration loads.
    let base: &[&'static str] = if pods_ok { &[] } else { &["ironlet.4.2"] };
    let with_base = |ids: &[&'static str]| -> Vec<&'static str> {
        base.iter().copied().chain(ids.iter().copied()).collect()
    };

    // The hardened node: nothing FAILs; every scored check PASSes except the two whose fields
    // ironlet accepts but does not honour yet, which WARN naming that.
    let (code, v) = json_report(&f, &[]);
    assert_kube_bench_shape(&v);
    assert_fails("hardened", &v, &with_base(&[]));
    assert_eq!(code, 0);
    let st = statuses(&v);
    for (id, (s, r)) in &st {
        let want = match id.as_str() {
            "4.1.3" | "4.1.4" | "4.2.6" | "4.2.7" | "4.2.10" | "4.2.11" => "WARN",
            "ironlet.4.2" if !pods_ok => "FAIL",
            "ironlet.4.1" => s.as_str(), // this machine's sysctls decide
            _ => "PASS",
        };
        assert_eq!(s, want, "{id}: {r}");
        if ["4.2.6", "4.2.10", "4.2.11"].contains(&id.as_str()) {
            // WARN says why: not set explicitly, or a static serving certificate.
            assert!(!r["reason"].as_str().unwrap().is_empty(), "{r}");
        }
    }
    assert_ne!(st["ironlet.4.1"].0, "FAIL");
    // Each result says what evidence it rests on.
    for (id, kind) in [
        ("4.2.1", "[configuration]"),
        ("4.1.5", "[file]"),
        ("ironlet.2.1", "[live]"),
        ("ironlet.2.4", "[configuration+live]"),
        ("ironlet.1.1", "[live]"),
    ] {
        let audit = st[id].1["audit"].as_str().unwrap().to_owned();
        assert!(audit.starts_with(kind), "{id}: {audit}");
    }
    assert!(
        st["4.2.1"].1["audit"]
            .as_str()
            .unwrap()
            .contains(&format!("/proc/{}/cmdline", f.node.agent_pid()))
    );
    let tls = st["ironlet.2.1"].1["actual_value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        tls.contains("TLS13_") && tls.contains("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
        "{tls}"
    );
    assert!(
        tls.contains("refused: TLS 1.0,TLS 1.1,TLS 1.2 CBC,TLS 1.2 static RSA"),
        "{tls}"
    );
    assert!(
        !tls.contains("CHACHA20"),
        "a suite outside tlsCipherSuites was accepted: {tls}"
    );

    // kube-bench's own file audits agree with ironlet on 4.1.x.
    let vars = [
        ("$kubeletsvc", f.service.as_path()),
        ("$kubeletkubeconfig", f.kubeconfig.as_path()),
        ("$kubeletconf", config.as_path()),
    ];
    let kb = kube_bench_file_verdicts(&v, &vars);
    assert_eq!(kb.len(), 6, "{kb:?}");
    for (id, pass) in &kb {
        assert_eq!(
            *pass,
            st[id].0 == "PASS",
            "kube-bench and ironlet disagree on {id}"
        );
    }

    // Text and JUnit of the same node.
    let root = f.node.root().display().to_string();
    let svc = f.service.display().to_string();
    let (code, text) = check(&["--root-dir", &root, "--service-file", &svc]);
    assert_eq!(code, 0);
    // Shown with --nocapture (the README's sample run comes from here).
    println!("--- ironlet check (hardened node) ---\n{text}");
    assert!(text.starts_with("[INFO] 4 Worker Node Security Configuration\n[INFO] 4.1 Worker Node Configuration Files\n[PASS] 4.1.1 "), "{text}");
    assert!(
        text.contains("== Summary node ==")
            && text.contains("== Summary total ==")
            && text.contains("0 checks FAIL"),
        "{text}"
    );
    let (_, junit) = check(&["--root-dir", &root, "--service-file", &svc, "--junit"]);
    let elements =
        well_formed(&junit).unwrap_or_else(|e| panic!("JUnit not well-formed: {e}\n{junit}"));
    assert!(
        junit.contains(
            "<testsuite name=\"Worker Node Security Configuration\" tests=\"25\" failures=\"0\""
        ),
        "{junit}"
    );
    assert!(elements > 2 * st.len(), "{elements}");

    // --check, --skip.
    let (_, v1) = json_report(&f, &["--check", "4.1.5,ironlet.2.2"]);
    println!("--- ironlet check --check 4.1.5,ironlet.2.2 --json ---\n{v1:#}");
    assert_eq!(
        statuses(&v1).keys().cloned().collect::<BTreeSet<_>>(),
        set(&["4.1.5", "ironlet.2.2"])
    );
    let (_, v2) = json_report(&f, &["--skip", "4.1,4.2.1"]);
    let st2 = statuses(&v2);
    assert!(
        st2.iter()
            .filter(|(id, _)| id.starts_with("4.1.") || *id == "4.2.1")
            .all(|(_, (s, _))| s == "INFO")
    );
    assert_eq!(v2["Totals"]["total_info"], 11);

    // a. World-readable kubeconfig (scored: exit 1; kube-bench's audit agrees).
    chmod(&f.kubeconfig, 0o644);
    let (code, v) = json_report(&f, &[]);
    assert_fails("world-readable kubeconfig", &v, &with_base(&["4.1.5"]));
    assert_eq!(code, 1);
    assert!(!kube_bench_file_verdicts(&v, &vars)["4.1.5"]);
    let (code, junit) = check(&[
        "--root-dir",
        &root,
        "--service-file",
        &svc,
        "--junit",
        "--check",
        "4.1.5",
    ]);
    assert_eq!(code, 1);
    well_formed(&junit).unwrap_or_else(|e| panic!("JUnit not well-formed: {e}\n{junit}"));
    assert!(junit.contains("<failure type=\"\">"), "{junit}");
    println!("--- ironlet check --check 4.1.5 --junit (kubeconfig 0644) ---\n{junit}");
    chmod(&f.kubeconfig, 0o600);

    // b. Serving key with mode 0644.
    chmod(&f.p("server.key"), 0o644);
    let (_, v) = json_report(&f, &[]);
    assert_fails("key 0644", &v, &with_base(&["ironlet.3.2"]));
    chmod(&f.p("server.key"), 0o600);

    // c. TLS policy widened by hand-editing the running agent's config: the reload refuses it.
    let good = std::fs::read_to_string(f.config()).unwrap();
    std::fs::write(
        f.config(),
        good.replace(
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_RSA_WITH_AES_128_CBC_SHA]",
        ),
    )
    .unwrap();
    let (code, v) = json_report(&f, &[]);
    assert_fails("widened TLS", &v, &["4.2.12"]);
    assert_eq!(
        code, 0,
        "4.2.12 is not scored: the default exit code stays 0"
    );
    assert!(
        statuses(&v)["4.2.12"].1["reason"]
            .as_str()
            .unwrap()
            .contains("TLS_RSA_WITH_AES_128_CBC_SHA")
    );
    let (code, _) = json_report(&f, &["--exit-code", "3"]);
    assert_eq!(code, 3, "--exit-code N applies to any FAIL");
    std::fs::write(f.config(), &good).unwrap();

    // d. An expired serving certificate on disk.
    std::fs::write(f.p("server.crt"), &expired_pem).unwrap();
    let (_, v) = json_report(&f, &[]);
    assert_fails("expired certificate", &v, &with_base(&["ironlet.3.1"]));
    std::fs::write(f.p("server.crt"), &cert_pem).unwrap();

    // e. A group-writable static pod directory.
    chmod(&f.node.manifests(), 0o775);
    let (_, v) = json_report(&f, &[]);
    assert_fails("group-writable manifests", &v, &with_base(&["ironlet.3.3"]));
    chmod(&f.node.manifests(), 0o755);

    // f. An insecure upstream flag in the unit file, judged without a running agent.
    let bad_unit = f.node.dir.path().join("bad.service");
    std::fs::write(
        &bad_unit,
        format!(
            "[Service]\nExecStart=/usr/bin/kubelet --config={} --read-only-port=10255\n",
            f.config().display()
        ),
    )
    .unwrap();
    chmod(&bad_unit, 0o600);
    let empty = tempfile::tempdir().unwrap();
    let (code, out) = check(&[
        "--root-dir",
        &empty.path().display().to_string(),
        "--service-file",
        &bad_unit.display().to_string(),
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_fails("--read-only-port in the unit", &v, &["4.2.4"]);
    assert_eq!(code, 0);
    assert!(
        statuses(&v)["ironlet.2.1"].1["reason"]
            .as_str()
            .unwrap()
            .contains("no running agent")
    );

    // g. Confinement disabled: the agent restarted with the escape hatch.
    f.node
        .extra_args
        .push("--insecure-disable-confinement".into());
    restart(&mut f);
    let (code, v) = json_report(&f, &[]);
    assert_fails(
        "confinement disabled",
        &v,
        &with_base(&["ironlet.1.1", "ironlet.1.2"]),
    );
    assert_eq!(code, 1);
    assert!(
        statuses(&v)["ironlet.1.2"].1["actual_value"]
            .as_str()
            .unwrap()
            .contains("--insecure-disable-confinement")
    );
    f.node.extra_args.pop();

    // h. healthz on 0.0.0.0. The agent refuses to start with it (issue 15), so this is a
    // configuration-only judgement of a file the operator is about to deploy: the loader's
    // refusal names ironlet.2.4, which FAILs, and nothing else flips.
    let open_healthz = f.node.dir.path().join("healthz-open.yaml");
    std::fs::write(
        &open_healthz,
        format!(
            "{}healthzBindAddress: 0.0.0.0\n",
            std::fs::read_to_string(f.config()).unwrap()
        ),
    )
    .unwrap();
    chmod(&open_healthz, 0o600);
    let (code, out) = check(&[
        "--root-dir",
        &empty.path().display().to_string(),
        "--config",
        &open_healthz.display().to_string(),
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_fails("healthz on 0.0.0.0 in --config", &v, &["ironlet.2.4"]);
    let r = &statuses(&v)["ironlet.2.4"].1;
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("0.0.0.0 is not a loopback address"),
        "{r}"
    );
    assert_eq!(code, 1, "ironlet.2.4 is scored: a FAIL exits 1");
    // The same file with healthz disabled passes the check.
    std::fs::write(
        &open_healthz,
        format!(
            "{}healthzBindAddress: 0.0.0.0\n",
            std::fs::read_to_string(f.config())
                .unwrap()
                .replace(&format!("healthzPort: {}", f.healthz), "healthzPort: 0")
        ),
    )
    .unwrap();
    let (_, out) = check(&[
        "--root-dir",
        &empty.path().display().to_string(),
        "--config",
        &open_healthz.display().to_string(),
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        statuses(&v)["ironlet.2.4"].0,
        "PASS",
        "healthzPort 0 disables healthz"
    );

    f.node.cleanup().await;
}
