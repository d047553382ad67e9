//! `cargo xtask test`: what CI runs (through `.ci/run`) and what the README tells people to
//! run: prerequisites, images, rustfmt, clippy, then the whole workspace's tests.

use crate::images;
use crate::prereqs;
use crate::run::step;
use crate::teardown;
use crate::workspace;
use anyhow::{Context, Result};
use std::process::{Command, ExitStatus};
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
        ("test", &["test", "--workspace", "--", "--test-threads=2"]),
    ];
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut outcomes = Vec::new();
    for (name, args) in steps {
        step(format!("cargo {}", args.join(" ")));
        let start = Instant::now();
        let status = Command::new(&cargo)
            .current_dir(workspace::root())
            .args(args)
            .status()
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
    Ok(exit_code(&outcomes))
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
