//! Skip reports: a test (or a CI step) that cannot judge on this machine says so instead of
//! passing silently, and `cargo xtask test` fails unless every skip it collected is listed,
//! with the same reason, in `xtask/expected-skips.txt`.
//!
//! A test reports with [`skipped!`](crate::skipped) and then returns. The report is one
//! line, `SKIPPED <test>: <reason>`, written to stderr past libtest's capture (so it shows
//! in every run) and, when `IRONLET_SKIP_LOG` names a file (`cargo xtask test` sets it),
//! appended to that file. The reason must be a fixed sentence: it is compared as it is.
//! Details that vary (an error message, a path) go to stderr on a line of their own.

use anyhow::{Context, Result, bail};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

/// The file every skip is appended to, one line each.
pub const LOG_ENV: &str = "IRONLET_SKIP_LOG";

/// Where the expected skips are listed (relative to the workspace root).
pub const EXPECTED_FILE: &str = "xtask/expected-skips.txt";

const PREFIX: &str = "SKIPPED ";

/// Reports the calling test as skipped: `skipped!("fn_name", "reason")`. The test id is
/// the calling module's path and the function name, as libtest names the test (for
/// integration tests, with the crate name in front).
#[macro_export]
macro_rules! skipped {
    ($test:literal, $reason:expr) => {
        $crate::skip::report(concat!(module_path!(), "::", $test), $reason)
    };
}

/// One skip: which test, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Skip {
    pub test: String,
    pub reason: String,
}

impl Skip {
    /// `<test>: <reason>`; the test id has no whitespace and no `": "`, the reason is not
    /// empty.
    fn parse(text: &str) -> Option<Skip> {
        let (test, reason) = text.split_once(": ")?;
        let reason = reason.trim();
        (!test.is_empty() && !test.contains(char::is_whitespace) && !reason.is_empty()).then(|| {
            Skip {
                test: test.to_owned(),
                reason: reason.to_owned(),
            }
        })
    }
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.test, self.reason)
    }
}

/// Writes the report line (see the module docs). Panics when the skip log is set but
/// cannot be written: a skip that CI would not see must not pass as a success.
pub fn report(test: &str, reason: &str) {
    let line = format!("{PREFIX}{test}: {reason}\n");
    // Straight to the stream, not through eprint!: libtest captures that for passing tests.
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os(LOG_ENV) {
        let appended = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            // One write per line: O_APPEND keeps concurrent tests' lines whole.
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            panic!(
                "cannot record the skip of {test} in {}: {e}",
                Path::new(&path).display()
            );
        }
    }
}

/// The skips in a skip log (lines that are not reports are an error: the file is ours).
pub fn parse_log(text: &str) -> Result<Vec<Skip>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            l.strip_prefix(PREFIX)
                .and_then(Skip::parse)
                .with_context(|| format!("skip log line {}: not a skip report: {l:?}", i + 1))
        })
        .collect()
}

/// The expected skips: `<test>: <reason>` per line, `#` comments (each entry is argued in
/// the comment above it). A duplicate entry is an error.
pub fn parse_expected(text: &str) -> Result<Vec<Skip>> {
    let mut out: Vec<Skip> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(skip) = Skip::parse(line) else {
            bail!(
                "{EXPECTED_FILE} line {}: want `<test>: <reason>`, got {line:?}",
                i + 1
            );
        };
        if out.contains(&skip) {
            bail!("{EXPECTED_FILE} line {}: listed twice: {skip}", i + 1);
        }
        out.push(skip);
    }
    Ok(out)
}

/// The reported skips that are not expected (same test and same reason), sorted and
/// deduplicated. A listed skip that did not happen is fine: the list is per kind of host.
pub fn unexpected<'a>(reported: &'a [Skip], expected: &[Skip]) -> Vec<&'a Skip> {
    let mut out: Vec<&Skip> = reported.iter().filter(|s| !expected.contains(s)).collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(test: &str, reason: &str) -> Skip {
        Skip {
            test: test.into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn log_lines_parse_and_strangers_are_refused() {
        let log = "SKIPPED ironlet::a::tests::x: the host is cgroup v2\n\nSKIPPED b::y: no root\n";
        assert_eq!(
            parse_log(log).unwrap(),
            vec![
                s("ironlet::a::tests::x", "the host is cgroup v2"),
                s("b::y", "no root")
            ]
        );
        assert!(parse_log("SKIPPED b::y:\n").is_err());
        assert!(parse_log("b::y: no prefix\n").is_err());
        assert!(parse_log("SKIPPED two words: reason\n").is_err());
    }

    #[test]
    fn expected_file_has_comments_and_refuses_duplicates_and_junk() {
        let text = "# why\nironlet::a::x: the host is cgroup v2\n  \n# more\nb::y: no db\n";
        assert_eq!(
            parse_expected(text).unwrap(),
            vec![
                s("ironlet::a::x", "the host is cgroup v2"),
                s("b::y", "no db")
            ]
        );
        assert!(parse_expected("b::y: no db\nb::y: no db\n").is_err());
        assert!(parse_expected("just words\n").is_err());
    }

    #[test]
    fn only_listed_test_and_reason_pairs_are_expected() {
        let expected = vec![s("a::x", "the host is cgroup v2")];
        let reported = vec![
            s("a::x", "the host is cgroup v2"),
            s("a::x", "needs root"),
            s("b::y", "the host is cgroup v2"),
            s("b::y", "the host is cgroup v2"),
        ];
        assert_eq!(
            unexpected(&reported, &expected),
            vec![
                &s("a::x", "needs root"),
                &s("b::y", "the host is cgroup v2")
            ]
        );
        assert!(unexpected(&reported[..1], &expected).is_empty());
    }

    #[test]
    fn a_report_lands_in_the_log_as_a_parsable_line() {
        let dir = std::env::temp_dir().join(format!("xtask-skip-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("skips.log");
        // A child process gets the variable (set_var would race with the other tests).
        let me = std::env::current_exe().unwrap();
        let out = std::process::Command::new(me)
            .args([
                "--exact",
                "skip::tests::reporter_child",
                "--include-ignored",
                "--nocapture",
            ])
            .env(LOG_ENV, &log)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = std::fs::read_to_string(&log).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            parse_log(&text).unwrap(),
            vec![s(
                "xtask::skip::tests::reporter_child",
                "reported by the child"
            )]
        );
    }

    /// Run by `a_report_lands_in_the_log_as_a_parsable_line` in a child process.
    #[test]
    #[ignore = "run as a child of a_report_lands_in_the_log_as_a_parsable_line"]
    fn reporter_child() {
        crate::skipped!("reporter_child", "reported by the child");
    }
}
