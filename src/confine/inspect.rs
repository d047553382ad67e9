//! `ironlet confinement`: what the running agent and its helper actually run with, read
//! from /proc (never from the agent's own claims alone) next to the agent's record.

use std::path::Path;

use serde::Serialize;

use super::Record;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TaskStatus {
    pub tid: u32,
    pub no_new_privs: Option<u32>,
    /// 0 none, 1 strict, 2 filter.
    pub seccomp: Option<u32>,
    pub seccomp_filters: Option<u32>,
    pub cap_eff: Vec<String>,
    pub cap_prm: Vec<String>,
    pub cap_inh: Vec<String>,
    pub cap_bnd: Vec<String>,
    pub cap_amb: Vec<String>,
}

/// Parses a /proc/<pid>/status text.
pub fn parse_status(tid: u32, text: &str) -> TaskStatus {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
    };
    let num = |name: &str| field(name).and_then(|v| v.parse().ok());
    let caps = |name: &str| {
        field(name)
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .map(super::caps::decode_mask)
            .unwrap_or_default()
    };
    TaskStatus {
        tid,
        no_new_privs: num("NoNewPrivs"),
        seccomp: num("Seccomp"),
        seccomp_filters: num("Seccomp_filters"),
        cap_eff: caps("CapEff"),
        cap_prm: caps("CapPrm"),
        cap_inh: caps("CapInh"),
        cap_bnd: caps("CapBnd"),
        cap_amb: caps("CapAmb"),
    }
}

/// The status of every thread of `pid`.
pub fn tasks(pid: u32) -> std::io::Result<Vec<TaskStatus>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let e = e?;
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Ok(text) = std::fs::read_to_string(e.path().join("status")) {
            out.push(parse_status(tid, &text));
        }
    }
    out.sort_by_key(|t| t.tid);
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessReport {
    pub pid: u32,
    pub running: bool,
    pub threads: Vec<TaskStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub agent: ProcessReport,
    pub helper: Option<ProcessReport>,
    pub record: Record,
    /// Every agent thread has no_new_privs 1, seccomp 2 and only the kept capabilities.
    pub agent_confined: bool,
    /// Every helper thread has no_new_privs 1, seccomp 2 and only CAP_SYS_ADMIN.
    pub helper_confined: bool,
    pub problems: Vec<String>,
}

/// The process `pid`, if it is still the ironlet process whose first argument is
/// `subcommand` (a recorded pid may have been reused by an unrelated process).
fn process(pid: u32, subcommand: &str) -> ProcessReport {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let same = cmdline.split(|b| *b == 0).nth(1) == Some(subcommand.as_bytes());
    let threads = if same {
        tasks(pid).unwrap_or_default()
    } else {
        Vec::new()
    };
    ProcessReport {
        pid,
        running: !threads.is_empty(),
        threads,
    }
}

fn check(name: &str, p: &ProcessReport, keep: &[String], problems: &mut Vec<String>) -> bool {
    let before = problems.len();
    if !p.running {
        problems.push(format!("{name} (pid {}) is not running", p.pid));
    }
    for t in &p.threads {
        if t.no_new_privs != Some(1) {
            problems.push(format!("{name} thread {}: NoNewPrivs is not 1", t.tid));
        }
        if t.seccomp != Some(2) {
            problems.push(format!(
                "{name} thread {}: Seccomp is not 2 (filter)",
                t.tid
            ));
        }
        for set in [&t.cap_eff, &t.cap_prm, &t.cap_bnd] {
            if let Some(extra) = set.iter().find(|c| !keep.contains(c)) {
                problems.push(format!("{name} thread {}: holds {extra}", t.tid));
                break;
            }
        }
        if !t.cap_inh.is_empty() || !t.cap_amb.is_empty() {
            problems.push(format!(
                "{name} thread {}: inheritable or ambient capabilities are set",
                t.tid
            ));
        }
    }
    problems.len() == before
}

/// What the agent's record says landlock enforced, as a problem when it enforced nothing
/// (ruleset `none`, or no landlock at all) outside the insecure mode, which reports itself.
pub fn landlock_problem(record: &super::Record) -> Option<String> {
    if record.insecure {
        return None;
    }
    match record.landlock.as_ref().and_then(|l| l["ruleset"].as_str()) {
        Some("full") | Some("partial") => None,
        Some(other) => Some(format!(
            "landlock enforced nothing (ruleset {other}): file access is not confined"
        )),
        None => Some("landlock was not applied: file access is not confined".into()),
    }
}

/// Builds the report for the agent whose root dir is `root_dir`.
pub fn report(root_dir: &Path) -> Result<Report, super::ConfineError> {
    let record = super::read_record(root_dir)?;
    let policies = super::policy::Policies::load()?;
    let agent = process(record.pid, "run");
    let helper = record.helper_pid.map(|p| process(p, "mount-helper"));
    let mut problems = Vec::new();
    if record.insecure {
        problems.push("confinement is disabled (--insecure-disable-confinement)".into());
    }
    let keep: Vec<String> = policies
        .agent_caps()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let landlock = landlock_problem(&record);
    let agent_confined =
        check("agent", &agent, &keep, &mut problems) && !record.insecure && landlock.is_none();
    problems.extend(landlock);
    let helper_keep: Vec<String> = policies
        .helper_caps()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let helper_confined = match &helper {
        Some(h) => check("mount helper", h, &helper_keep, &mut problems),
        None => {
            problems.push("no mount helper recorded".into());
            false
        }
    };
    Ok(Report {
        agent,
        helper,
        record,
        agent_confined,
        helper_confined,
        problems,
    })
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(",")
    }
}

/// The human-readable form.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "agent pid {} ({})",
        r.agent.pid,
        if r.agent.running {
            "running"
        } else {
            "not running"
        }
    );
    if r.record.insecure {
        let _ = writeln!(
            s,
            "  INSECURE: confinement disabled by --insecure-disable-confinement"
        );
    }
    if let Some(t) = r.agent.threads.first() {
        let _ = writeln!(s, "  effective capabilities: {}", list(&t.cap_eff));
        let _ = writeln!(s, "  permitted capabilities: {}", list(&t.cap_prm));
        let _ = writeln!(s, "  bounding capabilities:  {}", list(&t.cap_bnd));
        let _ = writeln!(
            s,
            "  inheritable/ambient:    {} / {}",
            list(&t.cap_inh),
            list(&t.cap_amb)
        );
    }
    let nnp = r
        .agent
        .threads
        .iter()
        .filter(|t| t.no_new_privs == Some(1))
        .count();
    let filt = r
        .agent
        .threads
        .iter()
        .filter(|t| t.seccomp == Some(2))
        .count();
    let n = r.agent.threads.len();
    let _ = writeln!(
        s,
        "  NoNewPrivs 1 on {nnp}/{n} threads; Seccomp 2 (filter) on {filt}/{n} threads"
    );
    if let Some(sc) = &r.record.seccomp {
        let _ = writeln!(
            s,
            "  seccomp: {} filters, {} allowed and {} denied system calls, default {}",
            sc.filters, sc.allowed, sc.denied, sc.default_action
        );
    }
    match &r.record.landlock {
        Some(l) => {
            let _ = writeln!(
                s,
                "  landlock: kernel ABI {}, ruleset {} ({} path rules, bind ports {})",
                l["kernel_abi"],
                l["ruleset"].as_str().unwrap_or("?"),
                l["rules"].as_array().map_or(0, |a| a.len()),
                l["bind_ports"]
            );
        }
        None => {
            let _ = writeln!(s, "  landlock: not applied");
        }
    }
    match &r.helper {
        Some(h) => {
            let _ = writeln!(
                s,
                "mount helper pid {} ({})",
                h.pid,
                if h.running { "running" } else { "not running" }
            );
            if let Some(t) = h.threads.first() {
                let _ = writeln!(
                    s,
                    "  effective capabilities: {}; NoNewPrivs {}; Seccomp {}",
                    list(&t.cap_eff),
                    t.no_new_privs.unwrap_or(0),
                    t.seccomp.unwrap_or(0)
                );
            }
        }
        None => {
            let _ = writeln!(s, "mount helper: none");
        }
    }
    for n in &r.record.notes {
        let _ = writeln!(s, "note: {n}");
    }
    if r.problems.is_empty() {
        let _ = writeln!(s, "confined: yes");
    } else {
        let _ = writeln!(s, "confined: NO");
        for p in &r.problems {
            let _ = writeln!(s, "  - {p}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_and_decoded() {
        let text = "Name:\tironlet\nCapInh:\t0000000000000000\nCapPrm:\t000000000000000a\n\
                    CapEff:\t000000000000000a\nCapBnd:\t000000000000000a\nCapAmb:\t0000000000000000\n\
                    NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t2\n";
        let t = parse_status(7, text);
        assert_eq!(t.no_new_privs, Some(1));
        assert_eq!(t.seccomp, Some(2));
        assert_eq!(t.seccomp_filters, Some(2));
        assert_eq!(t.cap_eff, vec!["CAP_DAC_OVERRIDE", "CAP_FOWNER"]);
        assert!(t.cap_amb.is_empty());
    }

    #[test]
    fn a_landlock_that_enforced_nothing_is_a_problem() {
        let record = |ruleset: Option<&str>, insecure: bool| super::super::Record {
            pid: 1,
            insecure,
            applied_unix: 0.0,
            capabilities_kept: vec![],
            no_new_privs: true,
            landlock: ruleset.map(|r| serde_json::json!({"kernel_abi": 0, "ruleset": r})),
            seccomp: None,
            helper_pid: None,
            notes: vec![],
        };
        assert_eq!(landlock_problem(&record(Some("full"), false)), None);
        assert_eq!(landlock_problem(&record(Some("partial"), false)), None);
        let none = landlock_problem(&record(Some("none"), false)).unwrap();
        assert!(none.contains("enforced nothing"), "{none}");
        assert!(landlock_problem(&record(None, false)).is_some());
        // The insecure mode is reported on its own.
        assert_eq!(landlock_problem(&record(None, true)), None);
    }
}
