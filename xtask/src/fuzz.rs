//! `cargo xtask fuzz [SECONDS] [TARGET...]`: runs each fuzz target in `fuzz/` for a fixed time
//! and records what libFuzzer reports in `.state/fuzz/report.json`, as evidence for users.
//!
//! Works on stable: `--sanitizer none`, because the parsers are safe Rust and what we look
//! for is a panic, an out-of-memory or a hang (reference/crates.md §4).
//! Owns: `fuzz/corpus/` (inputs libFuzzer found), `fuzz/artifacts/` (crashing inputs), the
//! fuzz build's target directory and `.state/fuzz/`. Must not touch: the main build's target
//! directory (the fuzz build uses other flags and would rebuild everything both ways) and the
//! committed seeds in `fuzz/seeds/` (libFuzzer writes new inputs to the first corpus
//! directory only, which is `fuzz/corpus/<target>`).

use crate::run::{self, describe, step};
use crate::workspace;
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The fuzz targets, one per parser an attacker or an operator's file can reach; each is a
/// `[[bin]]` in `fuzz/Cargo.toml` with its seeds in `fuzz/seeds/<target>/`.
pub const TARGETS: &[&str] = &[
    "manifest",
    "kubelet_config",
    "resolv_conf",
    "crilog",
    "api_attributes",
    "api_queries",
    "api_router",
    "helper_proto",
    "kubeconfig",
    "kubelet_flags",
    "audit_record",
    "rotation_request",
    "issued_certificate",
    "pod_security",
    "systemd_unit",
];

/// Seconds per target when none are given: the CI figure in reference/crates.md §4.
pub const DEFAULT_SECONDS: u64 = 60;

/// The cargo-fuzz installed when none is: the version checked on stable.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// libFuzzer's memory limit for the whole process; exceeding it is an out-of-memory finding.
const RSS_LIMIT_MB: u64 = 2048;

/// One input running this long is a hang. libFuzzer's default (1200 s) would outlast any run
/// we make, so a hang would show up as a stuck job instead of a finding.
const INPUT_TIMEOUT_SECS: u64 = 10;

/// What one target's run found, from libFuzzer's own statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FuzzReport {
    pub target: String,
    /// Inputs executed.
    pub runs: u64,
    /// Seconds libFuzzer spent fuzzing (`Done N runs in S second(s)`); after a crash, which
    /// has no such line, runs divided by executions per second.
    pub seconds: u64,
    pub exec_per_sec: u64,
    /// Coverage counters (`cov:`, edges) and features (`ft:`) reached.
    pub coverage: u64,
    pub features: u64,
    /// Inputs in the in-memory corpus at the end (seeds plus what was found, minimised).
    pub corpus_entries: u64,
    pub peak_rss_mb: Option<u64>,
    pub crashed: bool,
    /// libFuzzer's error and, for a panic, where and what.
    pub failure: Option<String>,
    /// The input that crashed, as libFuzzer saved it, and in base64 if libFuzzer printed it
    /// (it does for small inputs).
    pub artifact: Option<PathBuf>,
    pub input_base64: Option<String>,
    /// Wall time of the target's step, from starting `cargo fuzz run` to its exit.
    pub wall_seconds: u64,
}

/// `cargo xtask fuzz [SECONDS] [TARGET...]`: every target, or the ones named.
pub fn command(args: &[String]) -> Result<i32> {
    let mut seconds = DEFAULT_SECONDS;
    let mut targets: Vec<&str> = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if let Some(t) = TARGETS.iter().find(|t| **t == a.as_str()) {
            targets.push(t);
        } else if i == 0 {
            seconds = a.parse().ok().filter(|s| *s > 0).with_context(|| {
                format!(
                    "{a:?} is neither a positive number of seconds nor a target ({})",
                    TARGETS.join(", ")
                )
            })?;
        } else {
            bail!("unknown fuzz target {a:?}; targets: {}", TARGETS.join(", "));
        }
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    run_targets(seconds, &targets)?;
    Ok(0)
}

/// Runs every target for `seconds_per_target`; fails if any crashed.
pub fn run(seconds_per_target: u64) -> Result<Vec<FuzzReport>> {
    run_targets(seconds_per_target, TARGETS)
}

/// Runs `targets` one after the other (a crash does not hide the others' results), writes
/// `.state/fuzz/report.json` and prints a table; fails if any crashed.
pub fn run_targets(seconds_per_target: u64, targets: &[&str]) -> Result<Vec<FuzzReport>> {
    if seconds_per_target == 0 {
        // libFuzzer reads -max_total_time=0 as "no limit".
        bail!("seconds per target must be positive");
    }
    let cargo_fuzz_version = ensure_cargo_fuzz()?;
    let root = workspace::root();
    let fuzz_dir = root.join("fuzz");
    let target_dir = fuzz_target_dir(&root);
    let out_dir = workspace::state_dir().join("fuzz");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    // cargo-fuzz has no --locked of its own: check the lock file first, so that a stale
    // fuzz/Cargo.lock fails here instead of being rewritten by the build below.
    step("checking fuzz/Cargo.lock (--locked)");
    // `cargo metadata --locked` resolves the fuzz workspace as the build will, and fails
    // instead of writing the lock file when that file is out of date.
    run::output(
        cargo()
            .current_dir(&root)
            .args([
                "metadata",
                "--locked",
                "--format-version",
                "1",
                "--manifest-path",
            ])
            .arg(fuzz_dir.join("Cargo.toml")),
    )
    .context("fuzz/Cargo.lock is out of date with fuzz/Cargo.toml or ../Cargo.toml")?;
    // All targets in one build, so the time it takes is not charged to the first target.
    step("building the fuzz targets (release, coverage-instrumented)");
    let start = Instant::now();
    run::status(cargo_fuzz("build", &fuzz_dir, &target_dir).current_dir(&root))?;
    let build_seconds = start.elapsed().as_secs();

    let mut reports = Vec::new();
    for target in targets {
        step(format!("fuzzing {target} for {seconds_per_target} s"));
        let log = out_dir.join(format!("{target}.log"));
        reports.push(run_target(
            &root,
            &fuzz_dir,
            &target_dir,
            target,
            seconds_per_target,
            &log,
        )?);
    }

    let report_path = out_dir.join("report.json");
    let doc = report_json(
        &reports,
        seconds_per_target,
        build_seconds,
        &cargo_fuzz_version,
    );
    let text = serde_json::to_string_pretty(&doc)?;
    fs::write(&report_path, text + "\n")
        .with_context(|| format!("writing {}", report_path.display()))?;
    println!("{}", table(&reports));
    step(format!("fuzz report: {}", report_path.display()));

    let crashes: Vec<String> = reports
        .iter()
        .filter(|r| r.crashed)
        .map(|r| crash_message(r, &root, &fuzz_dir))
        .collect();
    if !crashes.is_empty() {
        bail!("{}", crashes.join("\n"));
    }
    Ok(reports)
}

/// `cargo fuzz --version`, installing cargo-fuzz first if that fails.
fn ensure_cargo_fuzz() -> Result<String> {
    let version = || run::output(cargo().args(["fuzz", "--version"]));
    if let Ok(v) = version() {
        return Ok(v.trim().to_owned());
    }
    step(format!("installing cargo-fuzz {CARGO_FUZZ_VERSION}"));
    run::status(cargo().args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))?;
    Ok(version()?.trim().to_owned())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// `$CARGO_TARGET_DIR/fuzz` when the caller moved the target directory, else
/// `<root>/fuzz/target`: never the main build's directory itself.
fn fuzz_target_dir(root: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| root.to_path_buf());
    target_dir_for(root, &cwd, std::env::var_os("CARGO_TARGET_DIR"))
}

/// Cargo reads a relative `CARGO_TARGET_DIR` against its working directory, `cwd`.
fn target_dir_for(root: &Path, cwd: &Path, cargo_target_dir: Option<OsString>) -> PathBuf {
    match cargo_target_dir.filter(|d| !d.is_empty()) {
        Some(d) => cwd.join(d).join("fuzz"),
        None => root.join("fuzz").join("target"),
    }
}

/// `cargo fuzz <subcommand>` with the options `build` and `run` must share, or `run` would
/// rebuild everything.
fn cargo_fuzz(subcommand: &str, fuzz_dir: &Path, target_dir: &Path) -> Command {
    let mut cmd = cargo();
    cmd.args(["fuzz", subcommand, "--fuzz-dir"])
        .arg(fuzz_dir)
        .args(["--sanitizer", "none", "--target-dir"])
        .arg(target_dir);
    cmd
}

fn fuzz_command(fuzz_dir: &Path, target_dir: &Path, target: &str, inputs: &[&Path]) -> Command {
    let mut cmd = cargo_fuzz("run", fuzz_dir, target_dir);
    cmd.arg(target).args(inputs);
    cmd
}

fn run_target(
    root: &Path,
    fuzz_dir: &Path,
    target_dir: &Path,
    target: &str,
    seconds: u64,
    log_path: &Path,
) -> Result<FuzzReport> {
    let corpus = fuzz_dir.join("corpus").join(target);
    let seeds = fuzz_dir.join("seeds").join(target);
    // libFuzzer refuses a corpus directory that does not exist.
    fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    if !seeds.is_dir() {
        bail!("no seeds for fuzz target {target} in {}", seeds.display());
    }
    let mut cmd = fuzz_command(fuzz_dir, target_dir, target, &[&corpus, &seeds]);
    cmd.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg("-print_final_stats=1")
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());

    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{}`", describe(&cmd)))?;
    let captured = tee_stderr(&mut child, log_path);
    if captured.is_err() {
        // Do not leave a fuzzer running unseen.
        let _ = child.kill();
    }
    let status = child.wait()?;
    let captured = captured?;
    let mut report = parse_stats(target, &captured);
    report.wall_seconds = start.elapsed().as_secs();
    if !status.success() && !report.crashed {
        bail!(
            "`{}` failed: {status} (log: {}):\n{}",
            describe(&cmd),
            log_path.display(),
            run::log_tail(log_path, 20)
        );
    }
    if report.crashed {
        // Not the log's tail: cargo-fuzz ends it with the input's bytes as one long line.
        step(format!(
            "{target} crashed; its output is in {}",
            log_path.display()
        ));
    }
    Ok(report)
}

/// Copies the child's stderr to `log_path` and returns it. The build's progress is shown;
/// libFuzzer's chatter goes to the log only, and what matters of it (statistics, a crash) is
/// in the table and the error afterwards.
fn tee_stderr(child: &mut Child, log_path: &Path) -> Result<String> {
    let mut log =
        File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut captured = String::new();
    let Some(stderr) = child.stderr.take() else {
        return Ok(captured);
    };
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    let mut fuzzing = false;
    while reader.read_until(b'\n', &mut buf)? > 0 {
        log.write_all(&buf)?;
        let line = String::from_utf8_lossy(&buf);
        if !fuzzing {
            eprint!("{line}");
            fuzzing = line.trim_start().starts_with("Running `");
        }
        captured.push_str(&line);
        buf.clear();
    }
    Ok(captured)
}

/// Reads libFuzzer's stderr: the last progress line (`#N DONE cov: C ft: F corp: E/Bb ...
/// exec/s: X rss: RMb`), `Done N runs in S second(s)`, the `-print_final_stats` lines, and,
/// after a crash, `ERROR: libFuzzer: ...`, the panic and `Test unit written to PATH`.
pub fn parse_stats(target: &str, stderr: &str) -> FuzzReport {
    let mut r = FuzzReport {
        target: target.to_owned(),
        ..Default::default()
    };
    let mut seconds = None;
    let mut error = None;
    let mut panic = None;
    let mut lines = stderr.lines().peekable();
    while let Some(line) = lines.next() {
        let line = line.trim_end();
        if let Some(progress) = line.strip_prefix('#') {
            let mut words = progress.split_whitespace();
            if let Some(n) = words.next().and_then(|n| n.parse().ok()) {
                r.runs = n;
            }
            // The event (INITED, NEW, pulse, DONE ...) then `key: value` pairs.
            while let Some(word) = words.next() {
                let field = match word {
                    "cov:" => &mut r.coverage,
                    "ft:" => &mut r.features,
                    "corp:" => &mut r.corpus_entries,
                    "exec/s:" => &mut r.exec_per_sec,
                    _ => continue,
                };
                if let Some(v) = words.next().and_then(leading_number) {
                    *field = v;
                }
            }
        } else if let Some(rest) = line.strip_prefix("Done ") {
            // "Done 123 runs in 20 second(s)"
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let [n, "runs", "in", s, ..] = words[..] {
                r.runs = n.parse().unwrap_or(r.runs);
                seconds = s.parse().ok();
            }
        } else if let Some((key, value)) = line
            .split_once(": ")
            .filter(|(k, _)| k.starts_with("stat::"))
        {
            let value = value.trim().parse().ok();
            match key {
                "stat::number_of_executed_units" => r.runs = value.unwrap_or(r.runs),
                "stat::average_exec_per_sec" => r.exec_per_sec = value.unwrap_or(r.exec_per_sec),
                "stat::peak_rss_mb" => r.peak_rss_mb = value,
                _ => {}
            }
        } else if let Some((_, what)) = line.split_once("ERROR: libFuzzer: ") {
            error.get_or_insert_with(|| what.trim().to_owned());
        } else if let Some((_, at)) = line.split_once(" panicked at ") {
            // "thread '<unnamed>' (123) panicked at src/x.rs:1:2:" then the message.
            let at = at.trim_end_matches(':');
            let message = lines.next_if(|l| !l.starts_with("note:")).unwrap_or("");
            panic.get_or_insert_with(|| format!("panicked at {at}: {}", message.trim()));
        } else if let Some((_, path)) = line.split_once("Test unit written to ") {
            r.artifact = Some(PathBuf::from(path.trim()));
        } else if let Some(b64) = line.strip_prefix("Base64: ") {
            r.input_base64 = Some(b64.trim().to_owned());
        }
    }
    r.crashed = error.is_some() || r.artifact.is_some();
    r.failure = match (error, panic) {
        (Some(e), Some(p)) => Some(format!("{e}: {p}")),
        (e, p) => e.or(p),
    };
    r.seconds = seconds.unwrap_or_else(|| r.runs.checked_div(r.exec_per_sec).unwrap_or(0));
    r
}

/// `123` from `123`, `123/4567b` or `45Mb`.
fn leading_number(s: &str) -> Option<u64> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

fn report_json(
    reports: &[FuzzReport],
    seconds_per_target: u64,
    build_seconds: u64,
    cargo_fuzz_version: &str,
) -> serde_json::Value {
    let generated = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let targets: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            json!({
                "target": r.target,
                "runs": r.runs,
                "seconds": r.seconds,
                "exec_per_sec": r.exec_per_sec,
                "coverage": r.coverage,
                "features": r.features,
                "corpus_entries": r.corpus_entries,
                "peak_rss_mb": r.peak_rss_mb,
                "crashed": r.crashed,
                "failure": r.failure,
                "artifact": r.artifact.as_ref().map(|a| a.display().to_string()),
                "input_base64": r.input_base64,
                "wall_seconds": r.wall_seconds,
            })
        })
        .collect();
    json!({
        "generated_unix": generated,
        "seconds_per_target": seconds_per_target,
        "build_seconds": build_seconds,
        "sanitizer": "none",
        "rss_limit_mb": RSS_LIMIT_MB,
        "input_timeout_seconds": INPUT_TIMEOUT_SECS,
        "cargo_fuzz": cargo_fuzz_version,
        "targets": targets,
    })
}

fn table(reports: &[FuzzReport]) -> String {
    let mut s = format!(
        "{:<16} {:>12} {:>5} {:>10} {:>7} {:>6} {:>7}  result",
        "target", "runs", "secs", "exec/s", "corpus", "cov", "rss MB"
    );
    for r in reports {
        let result = match (&r.failure, r.crashed) {
            (Some(f), true) => format!("CRASHED: {f}"),
            (None, true) => "CRASHED".to_owned(),
            _ => "ok".to_owned(),
        };
        s.push_str(&format!(
            "\n{:<16} {:>12} {:>5} {:>10} {:>7} {:>6} {:>7}  {result}",
            r.target,
            r.runs,
            r.seconds,
            r.exec_per_sec,
            r.corpus_entries,
            r.coverage,
            r.peak_rss_mb
                .map_or_else(|| "-".to_owned(), |m| m.to_string()),
        ));
    }
    s
}

fn crash_message(r: &FuzzReport, root: &Path, fuzz_dir: &Path) -> String {
    let failure = r.failure.as_deref().unwrap_or("crashed");
    match &r.artifact {
        Some(a) => {
            let repro = fuzz_command(fuzz_dir, &fuzz_target_dir(root), &r.target, &[a]);
            format!(
                "fuzz target {} found a bug ({failure}); input: {}\n  reproduce: cd {} && {}",
                r.target,
                a.display(),
                root.display(),
                describe(&repro)
            )
        }
        None => format!(
            "fuzz target {} found a bug ({failure}); no input was saved",
            r.target
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from `cargo fuzz run --sanitizer none crilog ... -- -max_total_time=20
    /// -rss_limit_mb=2048 -timeout=10 -print_final_stats=1` (progress lines cut short).
    const DONE: &str = include_str!("../../fuzz/testdata/libfuzzer-done.log");
    /// Captured from the same command on a target with a planted panic.
    const CRASH: &str = include_str!("../../fuzz/testdata/libfuzzer-crash.log");

    #[test]
    fn a_finished_run_reports_libfuzzers_statistics() {
        let r = parse_stats("crilog", DONE);
        assert_eq!(
            r,
            FuzzReport {
                target: "crilog".into(),
                runs: 743_703,
                seconds: 21,
                exec_per_sec: 35_414,
                coverage: 153,
                features: 671,
                corpus_entries: 221,
                peak_rss_mb: Some(79),
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_crash_reports_the_panic_and_the_saved_input() {
        let r = parse_stats("fuzz_target_1", CRASH);
        assert!(r.crashed);
        assert_eq!(
            r.failure.as_deref(),
            Some(
                "deadly signal: panicked at fuzz_targets/fuzz_target_1.rs:5:9: \
                 planted bug: input starts with [98, 117, 103]"
            )
        );
        assert_eq!(
            r.artifact.as_deref(),
            Some(Path::new(
                "/tmp/plant/fuzz/artifacts/fuzz_target_1/\
                 crash-6885858486f31043e5839c735d99457f045affd0"
            ))
        );
        assert_eq!(r.input_base64.as_deref(), Some("YnVn"));
        // The final statistics count every run, past the last progress line (#62).
        assert_eq!(r.runs, 28_248);
        assert_eq!(r.corpus_entries, 4);
        assert_eq!(r.peak_rss_mb, Some(74));
        // No `Done` line and an average of 0 exec/s: the time is unknown, not a division by 0.
        assert_eq!(r.seconds, 0);
    }

    #[test]
    fn output_without_libfuzzer_is_no_crash() {
        let r = parse_stats(
            "t",
            "error[E0425]: cannot find value `x`\nerror: could not compile\n",
        );
        assert!(!r.crashed);
        assert_eq!((r.runs, r.failure, r.artifact), (0, None, None));
    }

    #[test]
    fn target_dir_stays_apart_from_the_main_build() {
        let (root, cwd) = (Path::new("/w"), Path::new("/w/src"));
        let dir = |env: Option<&str>| target_dir_for(root, cwd, env.map(OsString::from));
        assert_eq!(dir(None), Path::new("/w/fuzz/target"));
        assert_eq!(dir(Some("")), Path::new("/w/fuzz/target"));
        assert_eq!(dir(Some("/t")), Path::new("/t/fuzz"));
        assert_eq!(dir(Some("tgt")), Path::new("/w/src/tgt/fuzz"));
    }

    #[test]
    fn every_target_has_seeds_and_a_source() {
        let fuzz = workspace::root().join("fuzz");
        let manifest = fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
        for t in TARGETS {
            assert!(
                fuzz.join("fuzz_targets").join(format!("{t}.rs")).is_file(),
                "{t}"
            );
            assert!(
                manifest.contains(&format!("name = \"{t}\"")),
                "{t} is not a [[bin]]"
            );
            let seeds = fs::read_dir(fuzz.join("seeds").join(t)).unwrap().count();
            assert!(seeds > 0, "{t} has no seeds");
        }
    }
}
