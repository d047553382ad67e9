//! Supply-chain checks with `cargo deny` (configuration: `deny.toml` at the workspace root):
//! licenses, bans (duplicate versions, wildcards) and sources are judged on every run;
//! advisories need the RustSec database, which is fetched from GitHub. Where it cannot be
//! fetched, the advisories check reports itself as skipped (see [`crate::skip`]), so CI
//! passes only if that skip is listed in `xtask/expected-skips.txt` with this reason.

use crate::run::{self, step};
use crate::skip::Skip;
use crate::workspace;
use anyhow::Result;
use std::process::Command;

/// The cargo-deny installed when none is (`cargo install --locked`: 14.6 minutes of wall
/// time on this 2-core machine while other builds ran, 5.5 minutes of CPU; once per machine).
pub const CARGO_DENY_VERSION: &str = "0.20.2";

/// The id the advisories check's skip is reported under.
pub const ADVISORIES_TEST: &str = "xtask::deny::advisories";

/// The reason reported when the database cannot be fetched.
pub const NO_ADVISORY_DB: &str =
    "the RustSec advisory database cannot be fetched from this machine (no route to GitHub)";

/// What the checks found.
#[derive(Debug)]
pub struct Report {
    pub passed: bool,
    pub skips: Vec<Skip>,
}

/// Installs cargo-deny if needed, then runs the checks.
pub fn run() -> Result<Report> {
    ensure_cargo_deny()?;
    let root = workspace::root();
    // --locked: cargo deny resolves the same lock file the builds use, and fails if it
    // would change it.
    let checks = run::status(
        cargo()
            .current_dir(&root)
            .args(["deny", "--locked", "check", "licenses", "bans", "sources"]),
    );
    if let Err(e) = &checks {
        eprintln!("deny: {e:#}");
    }
    let mut skips = Vec::new();
    step("cargo deny fetch db (the RustSec advisory database)");
    let advisories = match run::status(cargo().current_dir(&root).args(["deny", "fetch", "db"])) {
        Ok(()) => run::status(cargo().current_dir(&root).args([
            "deny",
            "--locked",
            "check",
            "advisories",
        ])),
        Err(e) => {
            eprintln!("deny: {e:#}");
            crate::skip::report(ADVISORIES_TEST, NO_ADVISORY_DB);
            skips.push(Skip {
                test: ADVISORIES_TEST.into(),
                reason: NO_ADVISORY_DB.into(),
            });
            Ok(())
        }
    };
    if let Err(e) = &advisories {
        eprintln!("deny: {e:#}");
    }
    Ok(Report {
        passed: checks.is_ok() && advisories.is_ok(),
        skips,
    })
}

/// `cargo deny --version`, installing cargo-deny first if that fails. Nothing installed by
/// hand survives on a fresh machine, so this is how CI gets it.
fn ensure_cargo_deny() -> Result<String> {
    let version = || run::output(cargo().args(["deny", "--version"]));
    if let Ok(v) = version() {
        return Ok(v.trim().to_owned());
    }
    step(format!("installing cargo-deny {CARGO_DENY_VERSION}"));
    run::status(cargo().args([
        "install",
        "cargo-deny",
        "--locked",
        "--version",
        CARGO_DENY_VERSION,
    ]))?;
    Ok(version()?.trim().to_owned())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}
