//! The dev node: `cargo xtask up` runs the project's containerd (network index 0,
//! 198.18.0.0/24) and ironlet with the example static pods; `cargo xtask down` stops both.
//!
//! State lives in `<workspace>/.state/node`: `containerd/` (the instance), `root/` (ironlet's
//! root dir), `logs/` (pod logs), `ironlet.log`, `ironlet.pid`, `kubelet-config.yaml`.

use crate::containerd::{Containerd, ContainerdOpts};
use crate::http;
use crate::images;
use crate::prereqs;
use crate::procs::{self, ProcId};
use crate::run::{self, log_tail, step};
use crate::teardown;
use crate::workspace;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::fs::{self, File};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The node name the dev ironlet registers as (static pods are named `<pod>-<node>`).
pub const HOSTNAME: &str = "ironlet-dev";
/// How long `up` waits for the example pods.
pub const PODS_TIMEOUT: Duration = Duration::from_secs(120);
/// The example pod whose port 80 `up` fetches from the host.
const WEB_POD: &str = "web";

/// The dev node's paths.
#[derive(Debug, Clone)]
pub struct DevNode {
    pub dir: PathBuf,
}

impl Default for DevNode {
    fn default() -> Self {
        DevNode {
            dir: workspace::state_dir().join("node"),
        }
    }
}

impl DevNode {
    pub fn containerd_opts(&self) -> ContainerdOpts {
        ContainerdOpts {
            base_dir: self.dir.join("containerd"),
            net_index: 0,
        }
    }
    pub fn kubelet_config(&self) -> PathBuf {
        self.dir.join("kubelet-config.yaml")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn root_dir(&self) -> PathBuf {
        self.dir.join("root")
    }
    pub fn ironlet_log(&self) -> PathBuf {
        self.dir.join("ironlet.log")
    }
    pub fn ironlet_pid(&self) -> PathBuf {
        self.dir.join("ironlet.pid")
    }
    pub fn static_pods_dir() -> PathBuf {
        workspace::root().join("examples/static-pods")
    }
}

/// The KubeletConfiguration the dev ironlet runs with. Paths are written as JSON strings,
/// which YAML reads as double-quoted scalars.
pub fn render_kubelet_config(static_pod_path: &Path, pod_logs_dir: &Path) -> String {
    let q = |p: &Path| Value::from(p.to_string_lossy().into_owned()).to_string();
    format!(
        "# Written by `cargo xtask up`.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: {static_pods}
podLogsDir: {logs}
fileCheckFrequency: 5s
authentication:
  x509: {{}}
  webhook:
    enabled: true
authorization:
  mode: Webhook
",
        static_pods = q(static_pod_path),
        logs = q(pod_logs_dir),
    )
}

/// `cargo xtask up`.
pub fn up() -> Result<()> {
    prereqs::ensure()?;
    let node = DevNode::default();
    fs::create_dir_all(&node.dir).with_context(|| format!("creating {}", node.dir.display()))?;

    let opts = node.containerd_opts();
    let cd = match Containerd::adopt(opts.clone())? {
        Some(cd) => {
            step(format!("reusing containerd at {}", cd.socket().display()));
            images::import(&cd.socket(), &images::ensure_built(&images::default_dir())?)?;
            cd
        }
        None => {
            step(format!(
                "starting containerd in {}",
                opts.base_dir.display()
            ));
            Containerd::start(opts)?
        }
    };
    let endpoint = cd.endpoint();
    cd.detach();

    step("building ironlet");
    let ironlet = build_ironlet()?;

    for d in [node.logs_dir(), node.root_dir()] {
        fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    }
    let static_pods = DevNode::static_pods_dir();
    fs::write(
        node.kubelet_config(),
        render_kubelet_config(&static_pods, &node.logs_dir()),
    )
    .with_context(|| format!("writing {}", node.kubelet_config().display()))?;

    stop_ironlet(&node);
    step(format!(
        "starting ironlet (log: {})",
        node.ironlet_log().display()
    ));
    // Whole seconds, one back: `config.seen` of pods this ironlet admits is at or after it.
    let since = utc_seconds(SystemTime::now() - Duration::from_secs(1));
    let p = start_ironlet(&node, &ironlet, &endpoint)?;

    let expected = example_pod_names(&static_pods)?;
    step(format!("waiting for pods {}", expected.join(", ")));
    let pods = wait_for_pods(&node, &ironlet, p, &expected, &since)?;

    let web_ip = pod_ip(&pods, WEB_POD).context("the web pod has no IP")?;
    step(format!("GET http://{web_ip}:80/"));
    let resp = get_with_retry(SocketAddr::new(web_ip, 80), Duration::from_secs(15))?;
    println!("    {}", resp.status_line);
    if let Some(line) = resp.body.lines().next() {
        println!("    {line}");
    }

    let table = run::output(&mut pods_cmd(&ironlet, &node))?;
    println!("{table}");
    step(format!(
        "dev node is up: runtime {endpoint}; `cargo xtask down` stops it"
    ));
    Ok(())
}

/// `cargo xtask down`.
pub fn down() -> Result<()> {
    let node = DevNode::default();
    stop_ironlet(&node);
    let opts = node.containerd_opts();
    step(format!(
        "stopping containerd in {}",
        opts.base_dir.display()
    ));
    let res = teardown::teardown(&opts);
    // Whatever ironlet mounted under its root dir.
    let res2 = teardown::unmount_under(&node.dir);
    res.and(res2)?;
    step("dev node is down");
    Ok(())
}

fn build_ironlet() -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace::root())
        .args(["build", "-p", "ironlet", "--bin", "ironlet"])
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let out = cmd.output().context("running cargo build")?;
    if !out.status.success() {
        bail!("`{}` failed: {}", run::describe(&cmd), out.status);
    }
    executable_from_cargo_messages(&String::from_utf8_lossy(&out.stdout), "ironlet")
        .context("cargo build did not report the ironlet executable")
}

/// The `executable` of bin target `name` from cargo's JSON messages.
fn executable_from_cargo_messages(stdout: &str, name: &str) -> Option<PathBuf> {
    stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

fn pods_cmd(ironlet: &Path, node: &DevNode) -> Command {
    let mut c = Command::new(ironlet);
    c.arg("pods").arg("--root-dir").arg(node.root_dir());
    c
}

fn start_ironlet(node: &DevNode, ironlet: &Path, endpoint: &str) -> Result<ProcId> {
    let log = File::create(node.ironlet_log())
        .with_context(|| format!("creating {}", node.ironlet_log().display()))?;
    let child = Command::new(ironlet)
        .arg("run")
        .arg("--config")
        .arg(node.kubelet_config())
        .arg("--container-runtime-endpoint")
        .arg(endpoint)
        .arg("--root-dir")
        .arg(node.root_dir())
        .arg("--hostname-override")
        .arg(HOSTNAME)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", ironlet.display()))?;
    let pid = i32::try_from(child.id()).context("pid out of range")?;
    // Not waited for: it outlives us. Until we exit, a dead child shows as a zombie,
    // which ProcId::alive treats as dead.
    drop(child);
    let p = ProcId::of(pid).with_context(|| {
        format!(
            "ironlet exited at once\n--- {} ---\n{}",
            node.ironlet_log().display(),
            log_tail(&node.ironlet_log(), 30)
        )
    })?;
    p.write_pid_file(&node.ironlet_pid())?;
    Ok(p)
}

/// SIGTERM the ironlet named by the pid file (if it still is an ironlet), SIGKILL after 30 s.
fn stop_ironlet(node: &DevNode) {
    if let Some(p) = ProcId::read_pid_file(&node.ironlet_pid())
        && p.alive()
        && procs::cmdline(p.pid)
            .first()
            .is_some_and(|a0| a0.ends_with("ironlet"))
    {
        step(format!("stopping ironlet (pid {})", p.pid));
        if !procs::terminate(p, Duration::from_secs(30)) {
            eprintln!("warning: ironlet pid {} did not exit", p.pid);
        }
    }
    let _ = fs::remove_file(node.ironlet_pid());
}

/// `metadata.name` of each manifest in `dir` (`*.yaml`), sorted.
pub fn example_pod_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            let text =
                fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            names.push(
                manifest_pod_name(&text)
                    .with_context(|| format!("no metadata.name in {}", p.display()))?,
            );
        }
    }
    names.sort();
    Ok(names)
}

/// `metadata.name` of a single-document manifest, read line by line: enough for our own
/// examples (block style, `name:` as a direct child of `metadata:`), no YAML parser needed.
fn manifest_pod_name(text: &str) -> Option<String> {
    let mut in_metadata = false;
    let mut child_indent: Option<usize> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent == 0 {
            in_metadata = trimmed.trim_end() == "metadata:";
            child_indent = None;
            continue;
        }
        if in_metadata {
            let ci = *child_indent.get_or_insert(indent);
            if indent == ci
                && let Some(v) = trimmed.strip_prefix("name:")
            {
                let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
                return (!v.is_empty()).then(|| v.to_string());
            }
        }
    }
    None
}

/// One pod's progress, from `ironlet pods -o json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProgress {
    pub name: String,
    pub phase: String,
    pub ip: Option<String>,
    pub ready: usize,
    pub containers: Vec<String>,
    /// Admitted by the ironlet we started, not left in its status by an earlier one.
    pub fresh: bool,
}

impl PodProgress {
    fn done(&self) -> bool {
        self.fresh && (self.phase == "Succeeded" || (self.phase == "Running" && self.ip.is_some()))
    }

    fn line(&self) -> String {
        if !self.fresh {
            return format!("{} (status from an earlier ironlet)", self.name);
        }
        let mut s = format!("{} {}", self.name, self.phase);
        if let Some(ip) = &self.ip {
            s.push_str(&format!(" {ip}"));
        }
        s.push_str(&format!(" ready {}/{}", self.ready, self.containers.len()));
        if !self.containers.is_empty() {
            s.push_str(&format!(" [{}]", self.containers.join(", ")));
        }
        s
    }
}

/// The pod for manifest name `want` in a PodList: named `want` or, as a static pod, `want-<node>`.
fn find_pod<'a>(list: &'a Value, want: &str) -> Option<&'a Value> {
    let mirror = format!("{want}-{HOSTNAME}");
    list["items"].as_array()?.iter().find(|p| {
        p["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n == want || n == mirror)
    })
}

/// Progress of each expected pod (`None`: not listed yet). A pod whose
/// `kubernetes.io/config.seen` annotation (RFC 3339, UTC) is before `since`
/// (`YYYY-MM-DDTHH:MM:SS`) is not fresh; one without the annotation is.
pub fn progress(
    list: &Value,
    expected: &[String],
    since: &str,
) -> Vec<(String, Option<PodProgress>)> {
    expected
        .iter()
        .map(|want| {
            let p = find_pod(list, want).map(|pod| {
                let st = &pod["status"];
                let statuses = st["containerStatuses"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                PodProgress {
                    name: want.clone(),
                    phase: st["phase"].as_str().unwrap_or("Unknown").to_string(),
                    ip: st["podIP"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                    ready: statuses.iter().filter(|c| c["ready"] == true).count(),
                    containers: statuses.iter().map(container_state).collect(),
                    fresh: pod["metadata"]["annotations"]["kubernetes.io/config.seen"]
                        .as_str()
                        .is_none_or(|seen| seen.get(..19).unwrap_or(seen) >= since),
                }
            });
            (want.clone(), p)
        })
        .collect()
}

fn container_state(c: &Value) -> String {
    let name = c["name"].as_str().unwrap_or("?");
    let state = &c["state"];
    if state.get("running").is_some() {
        format!("{name}: running")
    } else if let Some(t) = state.get("terminated") {
        format!(
            "{name}: terminated {} (exit {})",
            t["reason"].as_str().unwrap_or(""),
            t["exitCode"]
        )
    } else if let Some(w) = state.get("waiting") {
        format!("{name}: waiting {}", w["reason"].as_str().unwrap_or(""))
    } else {
        format!("{name}: unknown")
    }
}

fn wait_for_pods(
    node: &DevNode,
    ironlet: &Path,
    p: ProcId,
    expected: &[String],
    since: &str,
) -> Result<Value> {
    let deadline = Instant::now() + PODS_TIMEOUT;
    let fail = |why: String| -> anyhow::Error {
        anyhow::anyhow!(
            "{why}\n--- {} (tail) ---\n{}",
            node.ironlet_log().display(),
            log_tail(&node.ironlet_log(), 40)
        )
    };
    loop {
        if !p.alive() {
            return Err(fail("ironlet exited".into()));
        }
        match run::output_timeout(
            pods_cmd(ironlet, node).args(["-o", "json"]),
            Duration::from_secs(10),
        )
        .and_then(|s| serde_json::from_str::<Value>(&s).context("parsing `ironlet pods -o json`"))
        {
            Ok(list) => {
                let prog = progress(&list, expected, since);
                let line = prog
                    .iter()
                    .map(|(n, p)| {
                        p.as_ref()
                            .map_or(format!("{n} (not listed)"), PodProgress::line)
                    })
                    .collect::<Vec<_>>()
                    .join(" | ");
                println!("    {line}");
                if prog
                    .iter()
                    .all(|(_, p)| p.as_ref().is_some_and(PodProgress::done))
                {
                    return Ok(list);
                }
            }
            Err(e) => println!("    (pods: {e:#})"),
        }
        if Instant::now() >= deadline {
            return Err(fail(format!(
                "pods not Running/Succeeded within {PODS_TIMEOUT:?}"
            )));
        }
        thread::sleep(Duration::from_secs(1));
    }
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC (the civil-from-days algorithm of H. Hinnant).
pub fn utc_seconds(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn pod_ip(list: &Value, want: &str) -> Option<IpAddr> {
    find_pod(list, want)?["status"]["podIP"]
        .as_str()?
        .parse()
        .ok()
}

fn get_with_retry(addr: SocketAddr, total: Duration) -> Result<http::Response> {
    let deadline = Instant::now() + total;
    loop {
        match http::get(addr, "/", Duration::from_secs(3)) {
            Ok(r) => return Ok(r),
            Err(e) if Instant::now() < deadline => {
                println!("    ({e:#}; retrying)");
                thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubelet_config_has_the_settings() {
        let c = render_kubelet_config(Path::new("/w/examples/static-pods"), Path::new("/w/logs"));
        for want in [
            "apiVersion: kubelet.config.k8s.io/v1beta1",
            "kind: KubeletConfiguration",
            "staticPodPath: \"/w/examples/static-pods\"",
            "podLogsDir: \"/w/logs\"",
            "fileCheckFrequency: 5s",
            "  webhook:\n    enabled: true",
            "authorization:\n  mode: Webhook",
        ] {
            assert!(c.contains(want), "missing {want:?} in\n{c}");
        }
        assert!(!c.contains("clientCAFile"));
    }

    #[test]
    fn pod_names_from_manifests() {
        let m = "apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    name: nope\n  name: web\nspec:\n  containers:\n  - name: httpd\n";
        assert_eq!(manifest_pod_name(m).as_deref(), Some("web"));
        assert_eq!(manifest_pod_name("kind: Pod\nspec: {}\n"), None);
        let names = example_pod_names(&DevNode::static_pods_dir()).expect("examples");
        assert_eq!(names, vec!["duo", "once", "web"]);
    }

    #[test]
    fn progress_matches_static_pod_names_and_judges_done() {
        let list = json!({"apiVersion": "v1", "kind": "PodList", "items": [
            {"metadata": {"name": "web-ironlet-dev"}, "status": {"phase": "Running", "podIP": "198.18.0.2",
              "containerStatuses": [{"name": "httpd", "ready": true, "state": {"running": {}}}]}},
            {"metadata": {"name": "once-ironlet-dev"}, "status": {"phase": "Succeeded",
              "containerStatuses": [{"name": "hello", "ready": false,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}},
            {"metadata": {"name": "duo-ironlet-dev"}, "status": {"phase": "Pending"}},
        ]});
        let want: Vec<String> = ["web", "once", "duo", "absent"].map(String::from).to_vec();
        let p = progress(&list, &want, "2026-01-01T00:00:00");
        let web = p[0].1.as_ref().expect("web");
        assert!(web.done());
        assert_eq!(
            web.line(),
            "web Running 198.18.0.2 ready 1/1 [httpd: running]"
        );
        assert!(p[1].1.as_ref().expect("once").done());
        assert!(!p[2].1.as_ref().expect("duo").done());
        assert!(p[3].1.is_none());
        assert_eq!(
            pod_ip(&list, "web"),
            Some("198.18.0.2".parse().expect("ip"))
        );
    }

    #[test]
    fn pods_seen_before_this_ironlet_started_are_stale() {
        let pod = |seen: &str| {
            json!({"items": [{"metadata": {"name": "web-ironlet-dev",
                "annotations": {"kubernetes.io/config.seen": seen}},
                "status": {"phase": "Running", "podIP": "198.18.0.2"}}]})
        };
        let want = vec!["web".to_string()];
        let since = "2026-11-22T20:09:30";
        let fresh = progress(&pod("2026-11-22T20:09:30.322745239Z"), &want, since);
        assert!(fresh[0].1.as_ref().expect("listed").done());
        let stale = progress(&pod("2026-11-22T20:09:29.999Z"), &want, since);
        assert!(!stale[0].1.as_ref().expect("listed").done());
    }

    #[test]
    fn utc_seconds_formats_civil_time() {
        assert_eq!(utc_seconds(UNIX_EPOCH), "1970-01-01T00:00:00");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_378_170);
        assert_eq!(utc_seconds(t), "2026-11-22T20:09:30");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_seconds(leap), "2000-02-29T00:00:00");
    }

    #[test]
    fn cargo_messages_name_the_executable() {
        let out = r#"{"reason":"compiler-artifact","target":{"name":"ironlet","kind":["lib"]},"executable":null}
{"reason":"compiler-artifact","target":{"name":"ironlet","kind":["bin"]},"executable":"/t/debug/ironlet"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable_from_cargo_messages(out, "ironlet"),
            Some(PathBuf::from("/t/debug/ironlet"))
        );
    }
}
