//! Results and their three forms, in kube-bench's shapes so tools that ingest kube-bench
//! ingest ours: text (`[PASS] 4.2.1 ...`, remediations, `== Summary node ==`), JSON
//! (`{"Controls":[...],"Totals":{...}}` with kube-bench's field names) and JUnit.

use std::fmt::Write;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "FAIL")]
    Fail,
    #[serde(rename = "WARN")]
    Warn,
    #[serde(rename = "INFO")]
    Info,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Warn => "WARN",
            Self::Info => "INFO",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub total_pass: u32,
    pub total_fail: u32,
    pub total_warn: u32,
    pub total_info: u32,
}

impl Summary {
    fn add(&mut self, s: Status) {
        match s {
            Status::Pass => self.total_pass += 1,
            Status::Fail => self.total_fail += 1,
            Status::Warn => self.total_warn += 1,
            Status::Info => self.total_info += 1,
        }
    }
}

/// One check's result (kube-bench's `Check`).
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub test_number: String,
    pub test_desc: String,
    /// `[evidence kinds] what was looked at`.
    pub audit: String,
    #[serde(rename = "AuditEnv")]
    pub audit_env: String,
    /// The command kube-bench would run for the same check (from cis/*.json).
    #[serde(rename = "AuditConfig")]
    pub audit_config: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub remediation: String,
    pub test_info: Vec<String>,
    pub status: Status,
    pub actual_value: String,
    pub scored: bool,
    #[serde(rename = "IsMultiple")]
    pub is_multiple: bool,
    pub expected_result: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// kube-bench's `Group`.
#[derive(Debug, Clone, Serialize)]
pub struct GroupResult {
    pub section: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub pass: u32,
    pub fail: u32,
    pub warn: u32,
    pub info: u32,
    pub desc: String,
    pub results: Vec<CheckResult>,
}

/// kube-bench's `Controls`.
#[derive(Debug, Clone, Serialize)]
pub struct ControlsResult {
    pub id: String,
    pub version: String,
    pub detected_version: String,
    pub text: String,
    pub node_type: String,
    pub tests: Vec<GroupResult>,
    #[serde(flatten)]
    pub summary: Summary,
}

/// kube-bench's `OverallControls`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(rename = "Controls")]
    pub controls: Vec<ControlsResult>,
    #[serde(rename = "Totals")]
    pub totals: Summary,
}

impl Report {
    /// Recomputes group, controls and total counts from the results.
    pub fn recount(&mut self) {
        self.totals = Summary::default();
        for c in &mut self.controls {
            c.summary = Summary::default();
            for g in &mut c.tests {
                let mut s = Summary::default();
                for r in &g.results {
                    s.add(r.status);
                    c.summary.add(r.status);
                    self.totals.add(r.status);
                }
                (g.pass, g.fail, g.warn, g.info) =
                    (s.total_pass, s.total_fail, s.total_warn, s.total_info);
            }
        }
    }

    pub fn results(&self) -> impl Iterator<Item = &CheckResult> {
        self.controls
            .iter()
            .flat_map(|c| &c.tests)
            .flat_map(|g| &g.results)
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        for c in &self.controls {
            let _ = writeln!(s, "[INFO] {} {}", c.id, c.text);
            for g in &c.tests {
                let _ = writeln!(s, "[INFO] {} {}", g.section, g.desc);
                for r in &g.results {
                    let _ = writeln!(s, "[{}] {} {}", r.status.name(), r.test_number, r.test_desc);
                    if matches!(r.status, Status::Fail | Status::Warn) && !r.actual_value.is_empty()
                    {
                        let _ = writeln!(s, "\t{}", r.actual_value);
                    }
                }
            }
            let _ = writeln!(s);
            if c.summary.total_fail + c.summary.total_warn > 0 {
                let _ = writeln!(s, "== Remediations {} ==", c.node_type);
                for r in c
                    .tests
                    .iter()
                    .flat_map(|g| &g.results)
                    .filter(|r| matches!(r.status, Status::Fail | Status::Warn))
                {
                    let _ = writeln!(s, "{} {}", r.test_number, r.remediation);
                    if !r.reason.is_empty() {
                        let _ = writeln!(s, "\treason: {}", r.reason);
                    }
                    let _ = writeln!(s, "\tevidence: {}", r.audit);
                }
                let _ = writeln!(s);
            }
            let _ = writeln!(s, "== Summary {} ==", c.node_type);
            summary_lines(&mut s, &c.summary);
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "== Summary total ==");
        summary_lines(&mut s, &self.totals);
        s
    }

    pub fn junit(&self) -> String {
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
        for c in &self.controls {
            let sm = &c.summary;
            let tests = sm.total_pass + sm.total_fail + sm.total_warn + sm.total_info;
            let _ = writeln!(
                s,
                "<testsuite name=\"{}\" tests=\"{tests}\" failures=\"{}\" errors=\"0\" time=\"0\">",
                xml(&c.text),
                sm.total_fail
            );
            for g in &c.tests {
                for r in &g.results {
                    let _ = writeln!(
                        s,
                        "    <testcase name=\"{}\" classname=\"{}\" time=\"0\">",
                        xml(&format!("{} {}", r.test_number, r.test_desc)),
                        xml(&g.desc)
                    );
                    match r.status {
                        Status::Fail => {
                            let _ = writeln!(
                                s,
                                "        <failure type=\"\">{}</failure>",
                                xml(&r.remediation)
                            );
                        }
                        Status::Warn | Status::Info => s.push_str("        <skipped></skipped>\n"),
                        Status::Pass => {}
                    }
                    let _ = writeln!(
                        s,
                        "        <system-out>{}</system-out>",
                        xml(&serde_json::to_string(r).unwrap_or_default())
                    );
                    s.push_str("    </testcase>\n");
                }
            }
            s.push_str("</testsuite>\n");
        }
        s.push_str("</testsuites>\n");
        s
    }
}

fn summary_lines(s: &mut String, sm: &Summary) {
    let _ = writeln!(
        s,
        "{} checks PASS\n{} checks FAIL\n{} checks WARN\n{} checks INFO",
        sm.total_pass, sm.total_fail, sm.total_warn, sm.total_info
    );
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup_and_drops_control_characters() {
        assert_eq!(xml("a<b>&\"'\u{1}"), "a&lt;b&gt;&amp;&quot;&apos;");
    }
}
