//! `ironlet check`: the built-in CIS self-audit. The benchmark is data (`cis/`, see
//! [`data`]); [`evidence`] gathers what to judge (the running agent's real command line and
//! effective configuration, files, live probes in [`live`]); [`engine`] judges each check;
//! [`report`] prints kube-bench's text, JSON and JUnit shapes.
//!
//! Owns reading the node (files, /proc, /proc/sys) and connecting to the agent's own ports;
//! must not change anything on the node.

pub mod data;
pub mod engine;
pub mod evidence;
pub mod live;
pub mod report;
pub mod unit;

use data::Benchmark;
use engine::Verdict;
use report::{CheckResult, ControlsResult, GroupResult, Report, Status};

/// Which checks to run.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these check ids (empty: all).
    pub checks: Vec<String>,
    /// These check or group ids are reported as INFO without running.
    pub skip: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error("--check {0}: no such check in {1}")]
    UnknownCheck(String, String),
}

/// Runs the selected checks of `benchmark` over `ev`.
pub fn run(
    benchmark: &Benchmark,
    ev: &evidence::Evidence,
    sel: &Selection,
) -> Result<Report, CheckError> {
    for id in &sel.checks {
        if !benchmark.checks().any(|(_, _, k)| &k.id == id) {
            return Err(CheckError::UnknownCheck(id.clone(), benchmark.name.clone()));
        }
    }
    let mut report = Report {
        controls: Vec::new(),
        totals: report::Summary::default(),
    };
    for file in &benchmark.files {
        for c in &file.controls {
            let mut groups = Vec::new();
            for g in &c.groups {
                let mut results = Vec::new();
                for k in &g.checks {
                    if !sel.checks.is_empty() && !sel.checks.contains(&k.id) {
                        continue;
                    }
                    let skipped = sel.skip.iter().any(|s| s == &k.id || s == &g.id);
                    results.push(result(k, ev, skipped));
                }
                if !results.is_empty() {
                    groups.push(GroupResult {
                        section: g.id.clone(),
                        kind: String::new(),
                        pass: 0,
                        fail: 0,
                        warn: 0,
                        info: 0,
                        desc: g.text.clone(),
                        results,
                    });
                }
            }
            if !groups.is_empty() {
                report.controls.push(ControlsResult {
                    id: c.id.clone(),
                    version: benchmark.name.clone(),
                    detected_version: "none".into(),
                    text: c.text.clone(),
                    node_type: c.node_type.clone(),
                    tests: groups,
                    summary: report::Summary::default(),
                });
            }
        }
    }
    report.recount();
    Ok(report)
}

fn result(k: &data::Check, ev: &evidence::Evidence, skipped: bool) -> CheckResult {
    let mut info = vec![k.remediation.clone()];
    if let Some(r) = &k.reason {
        info.insert(0, r.clone());
    }
    let base = CheckResult {
        test_number: k.id.clone(),
        test_desc: k.text.clone(),
        audit: String::new(),
        audit_env: String::new(),
        audit_config: [k.audit.as_str(), k.audit_config.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ; "),
        kind: String::new(),
        remediation: k.remediation.clone(),
        test_info: info,
        status: Status::Info,
        actual_value: String::new(),
        scored: k.scored,
        is_multiple: false,
        expected_result: String::new(),
        reason: String::new(),
    };
    if skipped {
        return CheckResult {
            kind: "skip".into(),
            reason: "Test marked as skip".into(),
            ..base
        };
    }
    let o = engine::judge(k, ev);
    let kinds: Vec<&str> = o.evidence.iter().map(|e| e.name()).collect();
    CheckResult {
        audit: format!("[{}] {}", kinds.join("+"), o.audit),
        status: match o.verdict {
            Verdict::Pass => Status::Pass,
            Verdict::Fail => Status::Fail,
            Verdict::Unknown => Status::Warn,
        },
        actual_value: o.actual,
        expected_result: o.expected,
        reason: o.reason,
        ..base
    }
}

/// The exit code: `exit_code` when any check FAILs, else 0; by default (None) 1 when a
/// scored check FAILs (stricter than kube-bench, which exits 0 unless told otherwise).
pub fn exit_code(report: &Report, exit_code: Option<i32>) -> i32 {
    match exit_code {
        Some(n) => {
            if report.results().any(|r| r.status == Status::Fail) {
                n
            } else {
                0
            }
        }
        None => i32::from(
            report
                .results()
                .any(|r| r.status == Status::Fail && r.scored),
        ),
    }
}
