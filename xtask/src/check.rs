//! `cargo xtask test`: what CI runs (through `.ci/run`) and what the README tells people to
//! run: prerequisites, images, rustfmt, clippy, then the whole workspace's tests.

use crate::images;
use crate::prereqs;
use crate::run::step;
use crate::teardown;
use crate::workspace;
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// One step's outcome.
#[derive(Debug)]
pub struct Outcome {
    pub name: &'static str,
    pub status: Option<ExitStatus>,
    pub took: Duration,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs every step (a failing fmt or clippy does not hide test results), prints a summary
/// and returns the exit code to leave with: 0, or the first failing step's code.
/// Seconds each fuzz target runs in the test pipeline (long campaigns: `cargo xtask fuzz`).
pub const FUZZ_SECONDS: u64 = 20;

pub fn run() -> Result<i32> {
    prereqs::ensure()?;
    step("removing test instances left by killed test runs");
    teardown::reap_all_stale_test_instances();
    step("building images");
    images::ensure_built(&images::default_dir())?;

    let steps: [(&'static str, &[&str]); 3] = [
        ("fmt", &["fmt", "--all", "--", "--check"]),
        (
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        // Release: the integration suites run the agent binary that ships, confined, so a
        // system call that only the optimised build makes fails here and not in production.
        // Costs about 4 minutes more on a clean cache (7.5 instead of 3.5 min), none after;
        // `cargo xtask bench` shares the release artifacts.
        (
            "test",
            &["test", "--workspace", "--release", "--", "--test-threads=2"],
        ),
    ];
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut outcomes = Vec::new();
    let mut counts = (0u64, 0u64);
    for (name, args) in steps {
        step(format!("cargo {}", args.join(" ")));
        let start = Instant::now();
        let mut child = Command::new(&cargo)
            .current_dir(workspace::root())
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("running cargo {name}"))?;
        // Pass the output through, adding up libtest's result lines for the closing line.
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                println!("{line}");
                if let Some((p, f)) = test_result_counts(&line) {
                    counts.0 += p;
                    counts.1 += f;
                }
            }
        }
        let status = child
            .wait()
            .with_context(|| format!("running cargo {name}"))?;
        outcomes.push(Outcome {
            name,
            status: Some(status),
            took: start.elapsed(),
        });
    }

    // Every parser an operator's files or a workload can reach, briefly on the seeds.
    if std::env::var_os("IRONLET_SKIP_FUZZ").is_none() {
        step(format!(
            "fuzz: {} s per target ({})",
            FUZZ_SECONDS,
            crate::fuzz::TARGETS.join(", ")
        ));
        let start = Instant::now();
        let ok = match crate::fuzz::run(FUZZ_SECONDS) {
            Ok(_) => true,
            Err(e) => {
                eprintln!("fuzz: {e:#}");
                false
            }
        };
        outcomes.push(Outcome {
            name: "fuzz",
            status: Some(std::os::unix::process::ExitStatusExt::from_raw(if ok {
                0
            } else {
                1 << 8
            })),
            took: start.elapsed(),
        });
    }

    let summary = outcomes
        .iter()
        .map(|o| {
            format!(
                "{} {} ({:.0?})",
                o.name,
                if o.ok() { "ok" } else { "FAILED" },
                o.took
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    step(format!("xtask test summary: {summary}"));
    println!("tests: {} passed, {} failed", counts.0, counts.1);
    Ok(exit_code(&outcomes))
}

/// (passed, failed) from a libtest line such as
/// `test result: ok. 9 passed; 0 failed; 0 ignored; ...`.
fn test_result_counts(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let number_before = |word: &str| {
        rest.split(';')
            .find_map(|part| {
                part.trim()
                    .trim_start_matches("ok. ")
                    .trim_start_matches("FAILED. ")
                    .strip_suffix(word)
            })
            .and_then(|n| n.trim().parse::<u64>().ok())
    };
    Some((number_before(" passed")?, number_before(" failed")?))
}

fn exit_code(outcomes: &[Outcome]) -> i32 {
    outcomes.iter().find(|o| !o.ok()).map_or(0, |o| {
        o.status
            .and_then(|s| s.code())
            .filter(|c| *c != 0)
            .unwrap_or(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn o(code: i32) -> Outcome {
        Outcome {
            name: "x",
            status: Some(ExitStatus::from_raw(code << 8)),
            took: Duration::ZERO,
        }
    }

    #[test]
    fn first_failure_sets_the_exit_code() {
        assert_eq!(exit_code(&[o(0), o(0)]), 0);
        assert_eq!(exit_code(&[o(0), o(101), o(2)]), 101);
        let killed = Outcome {
            name: "x",
            status: Some(ExitStatus::from_raw(9)),
            took: Duration::ZERO,
        };
        assert_eq!(exit_code(&[killed]), 1);
    }
}

#[cfg(test)]
mod counting_tests {
    use super::test_result_counts;

    #[test]
    fn libtest_result_lines_are_counted() {
        let ok = "test result: ok. 186 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 13.79s";
        assert_eq!(test_result_counts(ok), Some((186, 0)));
        let bad = "test result: FAILED. 5 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 28.95s";
        assert_eq!(test_result_counts(bad), Some((5, 1)));
        assert_eq!(test_result_counts("running 9 tests"), None);
    }
}
