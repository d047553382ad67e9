//! `cargo xtask seccomp-learn`: earns the seccomp allow-lists of policy/seccomp.json.
//!
//! It runs the integration suites with `IRONLET_STRACE_DIR` set, so every agent the tests
//! start runs under `strace -f` (tests/support/mod.rs), then reads the traces. Only calls
//! made after a process installed its last seccomp filter count: what runs before
//! confinement (exec, loading, landlock and seccomp setup) is not the confined process's
//! business. The report lists, for the agent and for the mount helper:
//! - `used_not_listed`: calls the confined process made that the policy does not list
//!   (each one would kill it: the list must grow, with a reason);
//! - `listed_unused`: rules no run needed (candidates for removal, or kept with a reason
//!   such as an error path the suites do not reach);
//! - the call counts.
//!
//! It writes `.state/seccomp-learn/report.json` and prints the two lists.

use crate::prereqs;
use crate::run::step;
use crate::workspace;
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The suites whose agents are traced.
pub const SUITES: &[&str] = &["standalone", "lifecycle", "probes", "confinement"];

/// Calls made by one kind of process after it was confined.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Usage {
    pub agent: BTreeMap<String, u64>,
    pub helper: BTreeMap<String, u64>,
}

/// The call name at the start of a strace line (`PID name(...`), if any.
fn call_of(line: &str) -> Option<(u32, &str)> {
    let (pid, rest) = line.split_once(' ')?;
    let pid: u32 = pid.parse().ok()?;
    let rest = rest.trim_start();
    let end = rest.find('(')?;
    let name = &rest[..end];
    (!name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
    .then_some((pid, name))
}

/// Reads one `strace -f` trace of an agent (and the helper it started).
pub fn parse_trace(text: &str) -> Usage {
    let lines: Vec<&str> = text.lines().collect();
    // The helper's pid: the process that executed `mount-helper`.
    let helpers: BTreeSet<u32> = lines
        .iter()
        .filter(|l| l.contains("execve(") && l.contains("\"mount-helper\""))
        .filter_map(|l| call_of(l).map(|(p, _)| p))
        .collect();
    // Where each process installed its last filter.
    let mut last_filter: BTreeMap<bool, usize> = BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        if let Some((pid, "seccomp")) = call_of(l)
            && l.contains("SECCOMP_SET_MODE_FILTER")
        {
            last_filter.insert(helpers.contains(&pid), i);
        }
    }
    let mut usage = Usage::default();
    for (i, l) in lines.iter().enumerate() {
        let Some((pid, name)) = call_of(l) else {
            continue;
        };
        let helper = helpers.contains(&pid);
        if last_filter.get(&helper).is_none_or(|at| i <= *at) {
            continue;
        }
        let map = if helper {
            &mut usage.helper
        } else {
            &mut usage.agent
        };
        *map.entry(name.to_string()).or_default() += 1;
    }
    usage
}

/// The names a filter of policy/seccomp.json lists (allowed and denied).
pub fn listed(policy: &serde_json::Value, process: &str) -> Result<BTreeSet<String>> {
    let f = &policy[process];
    let mut out = BTreeSet::new();
    for key in ["allow", "deny"] {
        for r in f[key].as_array().into_iter().flatten() {
            out.insert(
                r["syscall"]
                    .as_str()
                    .context("a rule without a syscall")?
                    .to_string(),
            );
        }
    }
    if out.is_empty() {
        bail!("policy/seccomp.json has no rules for {process}");
    }
    Ok(out)
}

/// The report for one process kind.
pub fn compare(used: &BTreeMap<String, u64>, listed: &BTreeSet<String>) -> serde_json::Value {
    let used_names: BTreeSet<String> = used.keys().cloned().collect();
    serde_json::json!({
        "used_not_listed": used_names.difference(listed).collect::<Vec<_>>(),
        "listed_unused": listed.difference(&used_names).collect::<Vec<_>>(),
        "counts": used,
    })
}

pub fn command(args: &[String]) -> Result<i32> {
    prereqs::ensure()?;
    if Command::new("strace").arg("-V").output().is_err() {
        bail!("strace is not installed (apt-get install strace)");
    }
    let root = workspace::root();
    let dir = workspace::state_dir().join("seccomp-learn");
    let traces = dir.join("traces");
    let _ = std::fs::remove_dir_all(&traces);
    std::fs::create_dir_all(&traces)?;
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(&root).arg("test");
    cmd.args(args);
    for s in SUITES {
        cmd.args(["--test", s]);
    }
    cmd.env("IRONLET_STRACE_DIR", &traces);
    step(format!("running {} under strace", SUITES.join(", ")));
    let tests_ok = cmd.status()?.success();
    let report = report_for(&root, &traces)?;
    let path = dir.join("report.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    for p in ["agent", "mount_helper"] {
        println!("{p}: used but not listed: {}", report[p]["used_not_listed"]);
        println!("{p}: listed but unused:  {}", report[p]["listed_unused"]);
    }
    println!("report: {}", path.display());
    let missing = ["agent", "mount_helper"].iter().any(|p| {
        report[p]["used_not_listed"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    Ok(if tests_ok && !missing { 0 } else { 1 })
}

/// Reads every trace under `traces` and compares it with the policy.
pub fn report_for(root: &Path, traces: &Path) -> Result<serde_json::Value> {
    let policy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("policy/seccomp.json"))?)?;
    let mut total = Usage::default();
    let mut files = 0;
    for e in std::fs::read_dir(traces)? {
        let text = std::fs::read_to_string(e?.path())?;
        let u = parse_trace(&text);
        for (k, v) in u.agent {
            *total.agent.entry(k).or_default() += v;
        }
        for (k, v) in u.helper {
            *total.helper.entry(k).or_default() += v;
        }
        files += 1;
    }
    Ok(serde_json::json!({
        "traces": files,
        "agent": compare(&total.agent, &listed(&policy, "agent")?),
        "mount_helper": compare(&total.helper, &listed(&policy, "mount_helper")?),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = r#"100 execve("/x/ironlet", ["/x/ironlet", "run"], 0x7ffd /* 3 vars */) = 0
100 openat(AT_FDCWD, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3
101 execve("/proc/self/exe", ["/proc/self/exe", "mount-helper", "--pods-dir", "/r/pods"], 0x0 /* 0 vars */) = 0
101 seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, {len=10, filter=0x1}) = 0
100 seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, {len=10, filter=0x1}) = 0
100 prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) = 0
100 seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, {len=500, filter=0x2}) = 0
100 clone3({flags=CLONE_VM, ...} => {parent_tid=[102]}, 88) = 102
102 futex(0x1, FUTEX_WAIT_PRIVATE, 0, NULL <unfinished ...>
100 <... clone3 resumed>) = 102
101 recvfrom(0, "\0\0\0\0", 4, 0, NULL, NULL) = 4
102 <... futex resumed>) = 0
102 +++ exited with 0 +++
"#;

    #[test]
    fn only_calls_after_the_last_filter_count_per_process() {
        let u = parse_trace(TRACE);
        assert_eq!(u.agent.keys().collect::<Vec<_>>(), vec!["clone3", "futex"]);
        assert_eq!(u.helper.keys().collect::<Vec<_>>(), vec!["recvfrom"]);
    }

    #[test]
    fn the_report_names_missing_and_unused_rules() {
        let policy = serde_json::json!({"agent": {"allow": [{"syscall": "futex"}, {"syscall": "read"}],
            "deny": [{"syscall": "ptrace"}]}});
        let used = BTreeMap::from([("futex".to_string(), 3), ("clone3".to_string(), 1)]);
        let r = compare(&used, &listed(&policy, "agent").unwrap());
        assert_eq!(r["used_not_listed"], serde_json::json!(["clone3"]));
        assert_eq!(r["listed_unused"], serde_json::json!(["ptrace", "read"]));
    }

    #[test]
    fn the_policy_file_parses() {
        let root = workspace::root();
        let policy: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("policy/seccomp.json")).unwrap(),
        )
        .unwrap();
        assert!(listed(&policy, "agent").unwrap().contains("futex"));
        assert!(listed(&policy, "mount_helper").unwrap().contains("mount"));
    }
}
