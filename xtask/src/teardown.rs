//! Tearing an instance down completely, whether it is ours, a crashed test's, or the dev node
//! from an earlier `cargo xtask up`. Best effort throughout: every step runs even if an
//! earlier one failed, and nothing here panics.

use crate::containerd::ContainerdOpts;
use crate::images;
use crate::prereqs;
use crate::procs::{self, ProcId};
use crate::run;
use anyhow::{Result, bail};
use rustix::process::Signal;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

/// Stops and removes the instance described by `opts`:
/// 1. asks containerd to SIGKILL and delete every task (namespace k8s.io),
/// 2. stops containerd, then SIGKILLs whatever its shims still run, and the shims,
/// 3. lazily unmounts everything under the base dir (rootfs, shm, netns), deepest first,
/// 4. deletes the bridge, portmap's iptables rules and CNI's result cache for the network,
/// 5. removes emptied container cgroups and the base dir.
pub fn teardown(opts: &ContainerdOpts) -> Result<()> {
    let mut problems: Vec<String> = Vec::new();
    let sock = opts.socket();
    let daemons = find_containerd(opts);
    let shims = find_shims(&sock);
    let inits: Vec<ProcId> = shims.iter().flat_map(|s| procs::children(s.pid)).collect();
    let cgroups: BTreeSet<PathBuf> = inits.iter().flat_map(|p| cgroup_dirs(p.pid)).collect();

    let mut container_ids = Vec::new();
    if !daemons.is_empty() && UnixStream::connect(&sock).is_ok() {
        container_ids = kill_tasks(&sock);
    }
    for d in &daemons {
        if !procs::terminate(*d, Duration::from_secs(10)) {
            problems.push(format!("containerd pid {} survived SIGKILL", d.pid));
        }
    }
    // Shims outlive containerd by design; their children are the containers' init
    // processes (pid 1 of each container's pid namespace, so killing it ends the rest).
    let shims = union(shims, find_shims(&sock));
    let mut leftovers: Vec<ProcId> = shims.iter().flat_map(|s| procs::children(s.pid)).collect();
    leftovers.extend(inits.iter().copied());
    for p in &leftovers {
        p.signal(Signal::KILL);
    }
    for s in &shims {
        s.signal(Signal::KILL);
    }
    let all: Vec<ProcId> = leftovers.iter().chain(shims.iter()).copied().collect();
    if !procs::wait_gone(&all, Duration::from_secs(10)) {
        problems.push("container or shim processes survived SIGKILL".into());
    }

    if let Err(e) = unmount_under(&opts.base_dir) {
        problems.push(format!("{e:#}"));
    }
    clean_network(opts.net_index, &mut problems);
    // The CRI's loopback network caches a result per sandbox under a shared name.
    for id in &container_ids {
        let _ = fs::remove_file(format!("/var/lib/cni/results/cni-loopback-{id}-lo"));
    }
    for dir in cgroups.iter().rev() {
        let _ = fs::remove_dir(dir);
    }
    if let Err(e) = remove_dir_retrying(&opts.base_dir) {
        problems.push(format!("removing {}: {e}", opts.base_dir.display()));
    }
    let _ = fs::remove_file(opts.pid_file());
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}", problems.join("; "))
    }
}

/// Test instances of network index `n` other than ours are stale once we hold the claim for
/// `n` (a claim outlives only a process that crashed): tear them down, and whatever network
/// state a crash left without a base dir.
pub fn reap_stale_test_instances(root: &Path, n: u8) {
    let prefix = format!("{n}-");
    if let Ok(rd) = fs::read_dir(root) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix(&prefix) else {
                continue;
            };
            if pid.parse::<u32>().is_err() {
                continue;
            }
            let opts = ContainerdOpts {
                base_dir: e.path(),
                net_index: n,
            };
            eprintln!("==> removing stale test instance {}", e.path().display());
            if let Err(err) = teardown(&opts) {
                eprintln!("warning: stale instance {}: {err:#}", e.path().display());
            }
        }
    }
    let mut problems = Vec::new();
    clean_network(n, &mut problems);
    for p in problems {
        eprintln!("warning: stale network {n}: {p}");
    }
}

/// Tears down every test instance under [`crate::containerd::TEST_ROOT`] whose network index
/// nobody holds (its test process died without cleaning up). Run before a test suite.
pub fn reap_all_stale_test_instances() {
    let root = Path::new(crate::containerd::TEST_ROOT);
    let Ok(rd) = fs::read_dir(root) else {
        return;
    };
    let indexes: BTreeSet<u8> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (n, pid) = name.split_once('-')?;
            pid.parse::<u32>().ok()?;
            n.parse::<u8>().ok()
        })
        .filter(|n| crate::netclaim::TEST_RANGE.contains(n))
        .collect();
    for n in indexes {
        let nets = Path::new(crate::netclaim::TEST_NETS_DIR);
        // Holding the claim proves no live test uses index n.
        if let Ok(_claim) = crate::netclaim::claim_in(nets, n..=n) {
            reap_stale_test_instances(root, n);
        }
    }
}

fn union(mut a: Vec<ProcId>, b: Vec<ProcId>) -> Vec<ProcId> {
    for p in b {
        if !a.contains(&p) {
            a.push(p);
        }
    }
    a
}

/// The instance's containerd: the pid file's process if it is still containerd with our
/// config, plus any other containerd started with our config (a lost pid file).
fn find_containerd(opts: &ContainerdOpts) -> Vec<ProcId> {
    let config = opts.config_path().to_string_lossy().into_owned();
    let is_ours = |argv: &[String]| {
        argv.first()
            .is_some_and(|a0| Path::new(a0).file_name().is_some_and(|f| f == "containerd"))
            && argv
                .windows(2)
                .any(|w| (w[0] == "--config" || w[0] == "-c") && w[1] == config)
    };
    let mut found = procs::find(is_ours);
    if let Some(p) = ProcId::read_pid_file(&opts.pid_file())
        && p.alive()
        && is_ours(&procs::cmdline(p.pid))
        && !found.contains(&p)
    {
        found.push(p);
    }
    found
}

/// Shims of the containerd at `sock`: `containerd-shim-runc-v2 ... -address SOCK ...`.
pub fn find_shims(sock: &Path) -> Vec<ProcId> {
    let sock = sock.to_string_lossy().into_owned();
    procs::find(|argv| {
        argv.first().is_some_and(|a0| {
            Path::new(a0)
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("containerd-shim"))
        }) && argv.windows(2).any(|w| w[0] == "-address" && w[1] == sock)
    })
}

/// SIGKILL and delete every task through containerd, so runc removes its cgroups and
/// rootfs mounts itself. Time-limited: a wedged containerd must not hang cleanup. Returns
/// the ids of all containers (CRI sandboxes included).
fn kill_tasks(sock: &Path) -> Vec<String> {
    let t = Duration::from_secs(10);
    let containers = run::output_timeout(images::ctr(sock).args(["containers", "ls", "-q"]), t)
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let Ok(list) = run::output_timeout(images::ctr(sock).args(["tasks", "ls", "-q"]), t) else {
        return containers;
    };
    let ids: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    for id in &ids {
        let _ = run::output_timeout(
            images::ctr(sock).args(["tasks", "kill", "--all", "--signal", "SIGKILL", id]),
            t,
        );
    }
    for id in &ids {
        let _ = run::output_timeout(
            images::ctr(sock).args(["tasks", "delete", "--force", id]),
            t,
        );
    }
    containers
}

/// Cgroup directories a process is in (v1: one per hierarchy; v2: the unified one), never
/// a root or a cgroup this process itself is in.
fn cgroup_dirs(pid: i32) -> Vec<PathBuf> {
    let mine = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mine: BTreeSet<PathBuf> = parse_cgroup_file(&mine).into_iter().collect();
    let theirs = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    parse_cgroup_file(&theirs)
        .into_iter()
        .filter(|d| !mine.contains(d) && d.join("cgroup.procs").exists())
        .collect()
}

/// Maps `/proc/<pid>/cgroup` lines to directories under `/sys/fs/cgroup`, skipping roots.
fn parse_cgroup_file(text: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if rel.is_empty() || rel.split('/').any(|c| c == "..") {
            continue;
        }
        if ctrls.is_empty() {
            out.push(Path::new("/sys/fs/cgroup/unified").join(rel));
            out.push(Path::new("/sys/fs/cgroup").join(rel));
        } else {
            let mount = ctrls.strip_prefix("name=").unwrap_or(ctrls);
            out.push(Path::new("/sys/fs/cgroup").join(mount).join(rel));
        }
    }
    out
}

/// Lazily unmounts every mount at or below `dir`, deepest first, until none is left.
pub fn unmount_under(dir: &Path) -> Result<()> {
    use rustix::mount::{UnmountFlags, unmount};
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    for _ in 0..5 {
        let mut points = mounts_under(&dir);
        if points.is_empty() {
            return Ok(());
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in points {
            // EINVAL/ENOENT: already gone with a parent; that is fine.
            let _ = unmount(&p, UnmountFlags::DETACH);
        }
    }
    let left = mounts_under(&dir);
    if left.is_empty() {
        Ok(())
    } else {
        bail!("mounts left under {}: {left:?}", dir.display())
    }
}

/// Mount points at or below `dir`, from `/proc/self/mountinfo`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The bridge, portmap's rules and the CNI result cache of network `n`.
fn clean_network(n: u8, problems: &mut Vec<String>) {
    let bridge = format!("ilbr{n}");
    if Path::new("/sys/class/net").join(&bridge).exists() {
        let r = run::output_timeout(
            Command::new("ip").args(["link", "delete", &bridge]),
            Duration::from_secs(10),
        );
        if let Err(e) = r {
            problems.push(format!("{e:#}"));
        }
    }
    if let Err(e) = remove_portmap_rules(&format!("ironlet-{n}")) {
        problems.push(format!("{e:#}"));
    }
    // libcni caches results as /var/lib/cni/results/<network>-<container id>-<ifname>.
    let prefix = format!("ironlet-{n}-");
    if let Ok(rd) = fs::read_dir("/var/lib/cni/results") {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// Deletes portmap's NAT rules whose comment names `network`, and the per-container chains
/// they jump to. Rules of other networks are left alone.
fn remove_portmap_rules(network: &str) -> Result<()> {
    if prereqs::which("iptables").is_none() {
        return Ok(());
    }
    let t = Duration::from_secs(20);
    let rules = run::output_timeout(
        Command::new("iptables").args(["-w", "5", "-t", "nat", "-S"]),
        t,
    )?;
    let (deletes, chains) = portmap_cleanup_plan(&rules, network);
    for args in deletes {
        let _ = run::output_timeout(
            Command::new("iptables")
                .args(["-w", "5", "-t", "nat"])
                .args(&args),
            t,
        );
    }
    for chain in chains {
        for op in ["-F", "-X"] {
            let _ = run::output_timeout(
                Command::new("iptables").args(["-w", "5", "-t", "nat", op, &chain]),
                t,
            );
        }
    }
    Ok(())
}

/// From `iptables -S` output: the `-D ...` argument lists deleting `network`'s rules, and the
/// per-container chains (`CNI-DN-*`, ...) those rules jump to.
fn portmap_cleanup_plan(rules: &str, network: &str) -> (Vec<Vec<String>>, Vec<String>) {
    let tag = format!("name: \"{network}\"");
    let mut deletes = Vec::new();
    let mut chains = Vec::new();
    for line in rules.lines() {
        let words = shell_words(line);
        if words.first().map(String::as_str) != Some("-A") {
            continue;
        }
        if !words.iter().any(|w| w.contains(&tag)) {
            continue;
        }
        if let Some(pos) = words.iter().position(|w| w == "-j")
            && let Some(target) = words.get(pos + 1)
            && target.starts_with("CNI-")
            && !target.starts_with("CNI-HOSTPORT-")
            && !chains.contains(target)
        {
            chains.push(target.clone());
        }
        let mut d = words;
        d[0] = "-D".into();
        deletes.push(d);
    }
    (deletes, chains)
}

/// Splits a line as iptables-save quotes it: whitespace-separated, `"..."` with `\"` inside.
fn shell_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

fn remove_dir_retrying(dir: &Path) -> std::io::Result<()> {
    let mut last = Ok(());
    for _ in 0..10 {
        match fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Err(e),
        }
        // A lazily detached mount or a dying process may still pin something.
        let _ = unmount_under(dir);
        thread::sleep(Duration::from_millis(200));
    }
    last
}

/// Removes a cgroup subtree in every mounted hierarchy, deepest first (best effort).
pub fn remove_cgroup_tree(root: &str) {
    fn rm(dir: &std::path::Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let rel = root.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    // v1: one directory per hierarchy; v2: the unified tree itself.
    let mut dirs = vec![std::path::Path::new("/sys/fs/cgroup").join(rel)];
    if let Ok(hiers) = std::fs::read_dir("/sys/fs/cgroup") {
        dirs.extend(hiers.flatten().map(|h| h.path().join(rel)));
    }
    for d in dirs.into_iter().filter(|d| d.is_dir()) {
        rm(&d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mount_path(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape_mount_path(r"/plain"), "/plain");
        assert_eq!(unescape_mount_path(r"/end\04"), r"/end\04");
    }

    #[test]
    fn portmap_plan_only_touches_our_network() {
        let rules = r#"-P PREROUTING ACCEPT
-N CNI-HOSTPORT-DNAT
-N CNI-DN-aaa
-N CNI-DN-bbb
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"ironlet-3\" id: \"abc\"" -m multiport --dports 8080 -j CNI-DN-aaa
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"ironlet-31\" id: \"def\"" -m multiport --dports 8081 -j CNI-DN-bbb
-A CNI-DN-aaa -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.3.2:80"#;
        let (deletes, chains) = portmap_cleanup_plan(rules, "ironlet-3");
        assert_eq!(chains, vec!["CNI-DN-aaa".to_string()]);
        assert_eq!(deletes.len(), 1);
        assert_eq!(deletes[0][0], "-D");
        assert_eq!(deletes[0][1], "CNI-HOSTPORT-DNAT");
        assert!(deletes[0].contains(&"dnat name: \"ironlet-3\" id: \"abc\"".to_string()));
    }

    #[test]
    fn cgroup_lines_map_to_dirs_and_skip_roots() {
        let text = "12:pids:/k8s.io/t1\n1:name=systemd:/k8s.io/t1\n3:cpu,cpuacct:/\n0::/x\n";
        let dirs = parse_cgroup_file(text);
        assert!(dirs.contains(&PathBuf::from("/sys/fs/cgroup/pids/k8s.io/t1")));
        assert!(dirs.contains(&PathBuf::from("/sys/fs/cgroup/systemd/k8s.io/t1")));
        assert!(dirs.contains(&PathBuf::from("/sys/fs/cgroup/unified/x")));
        assert!(!dirs.iter().any(|d| d.ends_with("cpu,cpuacct")));
        assert!(parse_cgroup_file("1:pids:/../etc").is_empty());
    }
}
