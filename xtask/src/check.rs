//! `cargo xtask test`: what CI runs (through `.ci/run`) and what the README tells people to
//! run: prerequisites, images, rustfmt, clippy, `cargo deny`, the whole workspace's tests, a
//! short fuzz run, then the skip reports judged against `xtask/expected-skips.txt`.

use crate::deny;
use crate::images;
use crate::prereqs;
use crate::run::step;
use crate::skip;
use crate::teardown;
use crate::workspace;
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
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

/// Seconds each fuzz target runs in the test pipeline (long campaigns: `cargo xtask fuzz`).
pub const FUZZ_SECONDS: u64 = 20;

/// The cargo steps: every build is `--locked`, so a Cargo.toml edit without its lock file
/// (or a lock file that needs rewriting) fails here instead of leaving the tree dirty.
const STEPS: [(&str, &[&str]); 3] = [
    ("fmt", &["fmt", "--all", "--", "--check"]),
    (
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
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
        &[
            "test",
            "--workspace",
            "--release",
            "--locked",
            "--",
            "--test-threads=2",
        ],
    ),
];

/// Runs every step (a failing fmt or clippy does not hide test results), prints a summary
/// and returns the exit code to leave with: 0, or the first failing step's code.
pub fn run() -> Result<i32> {
    prereqs::ensure()?;
    step("removing test instances left by killed test runs");
    teardown::reap_all_stale_test_instances();
    step("building images");
    images::ensure_built(&images::default_dir())?;

    let root = workspace::root();
    let expected = skip::parse_expected(
        &std::fs::read_to_string(root.join(skip::EXPECTED_FILE))
            .with_context(|| format!("reading {}", skip::EXPECTED_FILE))?,
    )?;
    // Every test that cannot judge on this machine appends its report here.
    let skip_log = workspace::state_dir().join("test-skips.log");
    std::fs::create_dir_all(workspace::state_dir()).context("creating .state")?;
    std::fs::write(&skip_log, b"").with_context(|| format!("clearing {}", skip_log.display()))?;

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut outcomes = Vec::new();
    let mut skips: Vec<skip::Skip> = Vec::new();
    let mut counts = (0u64, 0u64);
    for (name, args) in STEPS {
        if name == "test" {
            // After clippy, before the long test step: a banned licence or source fails fast.
            let start = Instant::now();
            let (ok, skipped) = supply_chain();
            skips.extend(skipped);
            outcomes.push(Outcome {
                name: "deny",
                status: Some(verdict(ok)),
                took: start.elapsed(),
            });
        }
        step(format!("cargo {}", args.join(" ")));
        let start = Instant::now();
        let mut child = Command::new(&cargo)
            .current_dir(&root)
            .args(args)
            .env(skip::LOG_ENV, &skip_log)
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
            status: Some(verdict(ok)),
            took: start.elapsed(),
        });
    }

    // Skips: each one reported, and any that the expected list does not name fails the run.
    let start = Instant::now();
    let ok = match std::fs::read_to_string(&skip_log)
        .with_context(|| format!("reading {}", skip_log.display()))
        .and_then(|text| skip::parse_log(&text))
    {
        Ok(from_tests) => {
            skips.extend(from_tests);
            judge_skips(&skips, &expected)
        }
        Err(e) => {
            eprintln!("skips: {e:#}");
            false
        }
    };
    outcomes.push(Outcome {
        name: "skips",
        status: Some(verdict(ok)),
        took: start.elapsed(),
    });

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
    println!(
        "tests: {} passed, {} failed, {} skipped",
        counts.0,
        counts.1,
        skips.len()
    );
    Ok(exit_code(&outcomes))
}

/// Prints every skip, marking the unexpected ones; true when there are none of those.
fn judge_skips(skips: &[skip::Skip], expected: &[skip::Skip]) -> bool {
    let unexpected = skip::unexpected(skips, expected);
    step(format!(
        "skips: {} reported, {} not in {}",
        skips.len(),
        unexpected.len(),
        skip::EXPECTED_FILE
    ));
    for s in skips {
        let mark = if unexpected.contains(&s) {
            "UNEXPECTED"
        } else {
            "expected"
        };
        println!("    {mark}: {s}");
    }
    unexpected.is_empty()
}

/// `cargo deny`: licenses, bans and sources always; advisories when the RustSec database
/// can be fetched, else a skip (judged with the others). Returns (passed, skips).
fn supply_chain() -> (bool, Vec<skip::Skip>) {
    step("cargo deny check licenses bans sources; advisories");
    match deny::run() {
        Ok(r) => (r.passed, r.skips),
        Err(e) => {
            eprintln!("deny: {e:#}");
            (false, Vec::new())
        }
    }
}

fn verdict(ok: bool) -> ExitStatus {
    ExitStatus::from_raw(if ok { 0 } else { 1 << 8 })
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
