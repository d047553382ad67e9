//! ironlet as a drop-in for the upstream kubelet, judged from outside: the real binary
//! invoked as `kubelet` (a symlink) with a kubeadm-shaped command line and the CIS drill's
//! hardening flags runs a static pod on a real containerd; `enableServer: false` leaves no
//! listener on the port (a TCP connect from the host is refused); podsPerCore caps the pods
//! the runtime is asked to run; enforceNodeAllocatable is read back from the kernel's cgroup
//! files; tlsCurvePreferences is checked with `openssl s_client`; `--logging-format=json`
//! gives one JSON object per line. Each insecure flag form is refused naming the flag and
//! its CIS id; protectKernelDefaults refuses a differing sysctl (a fixture, and this
//! machine's real /proc/sys); failSwapOn refuses active swap; `kubelet --version` answers as
//! upstream; and the README's flag and field tables are the code's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

#[path = "api_support/mod.rs"]
mod api_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api_support::{Ca, Pki};
use ironlet::node::host::KERNEL_DEFAULTS;
use support::{NODE, Node, free_port, wait_for};

/// A directory holding `kubelet`, a symlink to the ironlet binary under test.
fn kubelet_bin() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("kubelet");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ironlet"), &link).unwrap();
    (dir, link)
}

/// A fake /proc with the six kernel tunables (upstream's values, `overrides` applied) and
/// a swap list (`swap` devices active).
fn proc_fixture(overrides: &[(&str, i64)], swap: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, want) in KERNEL_DEFAULTS {
        let v = overrides
            .iter()
            .find(|(n, _)| n == name)
            .map_or(*want, |(_, v)| *v);
        let p = dir.path().join("sys").join(name.replace('.', "/"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("{v}\n")).unwrap();
    }
    let mut swaps = String::from("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n");
    for d in swap {
        swaps.push_str(&format!(
            "{d}                               file\t\t1048572\t\t0\t\t-2\n"
        ));
    }
    std::fs::write(dir.path().join("swaps"), swaps).unwrap();
    dir
}

/// Runs `kubelet ARGS` to completion (it must exit by itself within 30 s).
fn kubelet_exits(args: &[String]) -> (i32, String, String) {
    let (_d, bin) = kubelet_bin();
    let mut child = Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kubelet {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Flags that keep a refused start away from this machine's kubelet paths.
fn isolated(root: &Path) -> Vec<String> {
    vec![
        format!("--root-dir={}", root.display()),
        "--hostname-override=dropin-node".into(),
        "--container-runtime-endpoint=unix:///nonexistent/ironlet-dropin.sock".into(),
    ]
}

#[test]
fn each_insecure_flag_form_is_refused_naming_the_flag_and_the_cis_id() {
    let root = tempfile::tempdir().unwrap();
    // A secure file: every refusal below comes from the flag alone.
    let cfg = root.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nreadOnlyPort: 0\n\
         authentication: {anonymous: {enabled: false}}\nauthorization: {mode: Webhook}\n",
    )
    .unwrap();
    for (args, flag, cis) in [
        (s(&["--anonymous-auth=true"]), "--anonymous-auth", "4.2.1"),
        (s(&["--anonymous-auth"]), "--anonymous-auth", "4.2.1"),
        (
            s(&["--authorization-mode=AlwaysAllow"]),
            "--authorization-mode",
            "4.2.2",
        ),
        (
            s(&["--authorization-mode", "AlwaysAllow"]),
            "--authorization-mode",
            "4.2.2",
        ),
        (s(&["--read-only-port=10255"]), "--read-only-port", "4.2.4"),
        (
            s(&["--read-only-port", "10255"]),
            "--read-only-port",
            "4.2.4",
        ),
        (
            s(&["--streaming-connection-idle-timeout=0"]),
            "--streaming-connection-idle-timeout",
            "4.2.5",
        ),
        (
            s(&["--tls-min-version=VersionTLS10"]),
            "--tls-min-version",
            "4.2.12",
        ),
        (
            s(&["--tls-min-version=VersionTLS11"]),
            "--tls-min-version",
            "4.2.12",
        ),
        (
            s(&[
                "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_3DES_EDE_CBC_SHA",
            ]),
            "--tls-cipher-suites",
            "4.2.12",
        ),
    ] {
        let mut all = vec![format!("--config={}", cfg.display())];
        all.extend(isolated(root.path()));
        all.extend(args.clone());
        let (code, _, err) = kubelet_exits(&all);
        assert_eq!(code, 1, "{args:?} was not refused:\n{err}");
        assert!(
            err.contains(&format!("{flag}: "))
                && err.contains(&format!("CIS Kubernetes Benchmark {cis}")),
            "{args:?}: the refusal does not name {flag} and CIS {cis}:\n{err}"
        );
        assert!(err.contains("refused"), "{err}");
    }
    // Removed and not-implemented flags say so instead of being dropped.
    for (arg, needle) in [
        ("--network-plugin=cni", "unknown flag: --network-plugin"),
        ("--cgroup-driver=systemd", "--cgroup-driver: cgroupDriver:"),
        (
            "--config-dir=/etc/kubernetes/kubelet.conf.d",
            "--config-dir:",
        ),
    ] {
        let mut all = isolated(root.path());
        all.push(arg.into());
        let (code, _, err) = kubelet_exits(&all);
        assert_eq!(code, 1, "{arg} accepted:\n{err}");
        assert!(err.contains(needle), "{arg}:\n{err}");
    }
}

#[test]
fn protect_kernel_defaults_and_fail_swap_on_refuse_the_host() {
    let root = tempfile::tempdir().unwrap();
    let fixture = proc_fixture(&[("kernel.panic", 0), ("vm.overcommit_memory", 0)], &[]);
    let mut args = isolated(root.path());
    args.push("--protect-kernel-defaults=true".into());
    args.push(format!("--insecure-proc-root={}", fixture.path().display()));
    let (code, _, err) = kubelet_exits(&args);
    assert_eq!(code, 1, "{err}");
    for line in [
        "invalid kernel flag: vm.overcommit_memory, expected value: 1, actual value: 0",
        "invalid kernel flag: kernel.panic, expected value: 10, actual value: 0",
    ] {
        assert!(err.contains(line), "missing {line:?}:\n{err}");
    }
    assert!(
        !err.contains("kernel.panic_on_oops"),
        "an equal value was reported:\n{err}"
    );

    // This machine's real kernel: each tunable that differs is named, read by the test
    // itself from /proc/sys.
    let differing: Vec<String> = KERNEL_DEFAULTS
        .iter()
        .filter_map(|(name, want)| {
            let got: i64 = std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/")))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            (got != *want).then(|| {
                format!("invalid kernel flag: {name}, expected value: {want}, actual value: {got}")
            })
        })
        .collect();
    if !differing.is_empty() {
        let mut real = isolated(root.path());
        real.push("--protect-kernel-defaults".into());
        let (code, _, err) = kubelet_exits(&real);
        assert_eq!(code, 1, "{err}");
        for line in &differing {
            assert!(err.contains(line), "missing {line:?}:\n{err}");
        }
    }

    // failSwapOn (upstream default true) with active swap.
    let swapping = proc_fixture(&[], &["/swapfile"]);
    let mut args = isolated(root.path());
    args.push(format!(
        "--insecure-proc-root={}",
        swapping.path().display()
    ));
    let (code, _, err) = kubelet_exits(&args);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("failSwapOn") && err.contains("/swapfile"),
        "{err}"
    );
}

#[test]
fn kubelet_version_and_ironlet_version() {
    let (code, out, err) = kubelet_exits(&s(&["--version"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("Kubernetes v1.33.0-ironlet.{}\n", env!("CARGO_PKG_VERSION"))
    );
    // kube-bench reads the version with this pattern.
    let v = out.trim().strip_prefix("Kubernetes v").unwrap();
    let mut parts = v.split('.');
    assert_eq!(parts.next(), Some("1"));
    assert_eq!(parts.next(), Some("33"));
    let (code, out, _) = kubelet_exits(&s(&["--version=raw"]));
    assert_eq!(code, 0);
    let raw: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(raw["kubernetesVersion"], "v1.33.0");

    let out = Command::new(env!("CARGO_BIN_EXE_ironlet"))
        .args(["version", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ironletVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["kubernetesVersion"], "v1.33.0");
    assert_eq!(
        v["buildProfile"], "release",
        "the suites run the release build"
    );
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match head {
        Some(h) => assert_eq!(v["gitCommit"], h.as_str()),
        None => assert_eq!(v["gitCommit"], "unknown"),
    }
}

/// The README block between `<!-- BEGIN name -->` and `<!-- END name -->`.
fn readme_block(readme: &str, name: &str) -> String {
    let begin = format!("<!-- BEGIN {name} -->\n");
    let end = format!("<!-- END {name} -->");
    let a = readme
        .find(&begin)
        .unwrap_or_else(|| panic!("README has no {begin:?}"))
        + begin.len();
    let b = readme[a..]
        .find(&end)
        .unwrap_or_else(|| panic!("README has no {end:?}"))
        + a;
    readme[a..b].to_owned()
}

#[test]
fn the_readme_tables_are_the_codes() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let fields = ironlet::config::fields::markdown_table();
    assert_eq!(
        readme_block(&readme, "field table"),
        fields,
        "README's field table differs from src/config/fields.rs; paste this:\n{fields}"
    );
    let flags = ironlet::config::flags::markdown_table();
    assert_eq!(
        readme_block(&readme, "flag table"),
        flags,
        "README's flag table differs from src/config/flags.rs; paste this:\n{flags}"
    );
}

/// Listening TCP ports of `pid` (its socket inodes in /proc/net/tcp{,6}).
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let s = l.to_string_lossy().into_owned();
                    s.strip_prefix("socket:[")?
                        .strip_suffix(']')
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                out.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    out
}

fn cpus() -> usize {
    // As the agent measures: the online CPU list.
    let list = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    list.trim()
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
            None => 1,
        })
        .sum()
}

fn mem_total() -> i64 {
    let m = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: i64 = m
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

fn read_i64(p: &Path) -> i64 {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .parse()
        .unwrap()
}

async fn s_client_ok(port: u16, groups: &str) -> bool {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-groups",
                groups,
            ])
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("openssl s_client hung")
    .expect("openssl is installed (xtask prerequisites)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.contains("Cipher is ") && !text.contains("Cipher is (NONE)")
}

/// The agent child; killed if a failing assertion unwinds past it.
struct Agent(Option<Child>);

impl Agent {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn_kubelet(bin: &Path, args: &[String], log: &Path) -> Agent {
    Agent(Some(
        Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    ))
}

/// SIGTERM (pods stay running) and wait.
fn stop(mut a: Agent) {
    if let Some(mut c) = a.0.take() {
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let _ = c.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeadm_command_line_runs_static_pods_and_each_field_acts() {
    // The file carries what has no upstream flag (staticPodPath has one, but kubeadm puts it
    // in the file) and tlsCurvePreferences: [24] (secp384r1 only).
    let port = free_port();
    let node = Node::with_config(
        "healthzPort: 0\nruntimeRequestTimeout: 30s\ntlsCurvePreferences: [24]\n",
    );
    let pki = Pki::new();
    let serving = Ca::new("serving-ca");
    let (cert, key) = serving.leaf_pem("node", None, &["localhost", "127.0.0.1"], false);
    let d = |n: &str| node.dir.path().join(n);
    std::fs::write(d("server.crt"), cert).unwrap();
    std::fs::write(d("server.key"), key).unwrap();
    std::fs::write(d("ca.crt"), pki.ca.pem()).unwrap();
    std::fs::write(d("policy.yaml"), api_support::POLICY).unwrap();
    let proc_ok = proc_fixture(&[], &[]);
    // A reserved cgroup for enforceNodeAllocatable kube-reserved, inside this node's
    // cgroupRoot (removed with it).
    let reserved = format!("{}/kube-reserved", node.cgroup_root);
    for h in ["memory", "cpu"] {
        std::fs::create_dir_all(node.cgroup_dir(h, "kube-reserved")).unwrap();
    }
    let (_bindir, bin) = kubelet_bin();
    let endpoint = node.containerd.as_ref().unwrap().endpoint();
    let base = |extra: &[String]| -> Vec<String> {
        let mut a = vec![
            // kubeadm's unit and kubeadm-flags.env, in `=` form.
            format!("--config={}", d("config.yaml").display()),
            format!("--container-runtime-endpoint={endpoint}"),
            "--pod-infra-container-image=registry.k8s.io/pause:3.10".into(),
            format!("--root-dir={}", node.root().display()),
            format!("--hostname-override={NODE}"),
            "--node-labels=node.kubernetes.io/pool=edge".into(),
            "--v=2".into(),
            // The CIS drill's hardening flags.
            "--read-only-port=0".into(),
            "--anonymous-auth=false".into(),
            "--authorization-mode=Webhook".into(),
            "--protect-kernel-defaults=true".into(),
            "--make-iptables-util-chains=true".into(),
            "--tls-min-version=VersionTLS12".into(),
            // The secure port, as flags.
            "--address=127.0.0.1".into(),
            format!("--port={port}"),
            format!("--tls-cert-file={}", d("server.crt").display()),
            format!("--tls-private-key-file={}", d("server.key").display()),
            format!("--client-ca-file={}", d("ca.crt").display()),
            format!("--authorization-policy-file={}", d("policy.yaml").display()),
            // The machine's kernel tunables differ from upstream's; a fixture stands in.
            format!("--insecure-proc-root={}", proc_ok.path().display()),
            "--pods-per-core=1".into(),
            "--kube-reserved=cpu=100m,memory=256Mi".into(),
        ];
        a.extend(extra.iter().cloned());
        a
    };

    // Run 1: the default server, no node allocatable enforcement on kubepods, the
    // kube-reserved cgroup enforced.
    let run1 = base(&[
        "--enforce-node-allocatable=kube-reserved".into(),
        format!("--kube-reserved-cgroup={reserved}"),
    ]);
    let n = cpus();
    for i in 0..=n {
        node.write_manifest(
            &format!("p{i}.yaml"),
            &support::pod_manifest(&format!("p{i}"), "sleep 3600", ""),
        );
    }
    let agent = spawn_kubelet(&bin, &run1, &d("kubelet-1.log"));
    let pid = agent.id();
    wait_for(
        "the secure port to listen",
        Duration::from_secs(60),
        || async { listening_ports(pid).contains(&port).then_some(()) },
    )
    .await;
    // podsPerCore=1: exactly `cores` of the cores+1 pods get a sandbox; the last one
    // admitted over capacity gets none.
    wait_for(
        &format!("{n} pods running"),
        Duration::from_secs(120),
        || async {
            let sandboxes = node.sandboxes("").await;
            (sandboxes.len() >= n).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sandboxes = node.sandboxes("").await;
    assert_eq!(
        sandboxes.len(),
        n,
        "podsPerCore=1 on {n} cores let {} pods start",
        sandboxes.len()
    );
    // tlsCurvePreferences [24]: an X25519-only client is refused, a P-384 client served.
    assert!(
        !s_client_ok(port, "X25519").await,
        "X25519 accepted despite tlsCurvePreferences [24]"
    );
    assert!(s_client_ok(port, "P-384").await, "P-384 refused");
    // enforceNodeAllocatable without `pods`: kubepods has no memory limit; the
    // kube-reserved cgroup is limited to the reservation (from the kernel's files).
    let kubepods_limit = read_i64(&node.cgroup_dir("memory", "kubepods/memory.limit_in_bytes"));
    assert!(
        kubepods_limit > mem_total(),
        "kubepods limited without `pods`: {kubepods_limit}"
    );
    assert_eq!(
        read_i64(&node.cgroup_dir("memory", "kube-reserved/memory.limit_in_bytes")),
        256 << 20
    );
    assert_eq!(
        read_i64(&node.cgroup_dir("cpu", "kube-reserved/cpu.shares")),
        102
    );
    let log1 = std::fs::read_to_string(d("kubelet-1.log")).unwrap();
    assert!(
        log1.contains(
            "Flag --pod-infra-container-image has been deprecated, will be removed in 1.35."
        ),
        "{log1}"
    );
    assert!(
        log1.contains("Flag --read-only-port has been deprecated"),
        "{log1}"
    );
    stop(agent);

    // Run 2: enableServer false, default enforcement (pods), JSON logs.
    let run2 = base(&[
        "--enable-server=false".into(),
        "--logging-format=json".into(),
    ]);
    let agent = spawn_kubelet(&bin, &run2, &d("kubelet-2.log"));
    let pid = agent.id();
    wait_for("the agent to run", Duration::from_secs(60), || async {
        std::fs::read_to_string(d("kubelet-2.log"))
            .ok()
            .filter(|l| l.contains("ironlet running"))
    })
    .await;
    // The pods of run 1 are adopted: the same sandboxes, still ready.
    let ready = |sbs: Vec<ironlet::cri::api::PodSandbox>| {
        sbs.iter()
            .filter(|s| s.state == ironlet::cri::api::PodSandboxState::SandboxReady as i32)
            .count()
    };
    assert_eq!(ready(node.sandboxes("").await), n);
    // No listener: judged from the host's connect and the kernel's socket table.
    assert!(
        !listening_ports(pid).contains(&port),
        "port {port} listens with enableServer false"
    );
    let refused = std::net::TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(2),
    );
    assert!(
        refused.is_err(),
        "connected to {port} with enableServer false"
    );
    // enforceNodeAllocatable pods: kubepods = capacity - kubeReserved (the kernel rounds
    // the limit to a page).
    let want = mem_total() - (256 << 20);
    let got = read_i64(&node.cgroup_dir("memory", "kubepods/memory.limit_in_bytes"));
    assert!(
        (want - got).abs() < 4096,
        "kubepods memory limit {got}, want {want}"
    );
    // JSON logs: every line an object with a level and a message.
    let log2 = std::fs::read_to_string(d("kubelet-2.log")).unwrap();
    let mut lines = 0;
    for line in log2.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        lines += 1;
    }
    assert!(
        lines > 0 && log2.contains(r#""message":"ironlet running""#),
        "{log2}"
    );
    stop(agent);
    node.cleanup().await;
}
