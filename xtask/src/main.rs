//! `cargo xtask <command>`: thin dispatch; the work is in the library.

use anyhow::Result;
use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  images   build the local image archives (.state/images)
  up       install prerequisites, start containerd and ironlet with examples/static-pods
  down     stop the dev ironlet and containerd and clean up after them
  test     prerequisites, images, fmt, clippy, the workspace tests and a short fuzz run (what CI runs)
  bench [ARGS...]
           pod start latency against direct CRI calls, footprint, PLEG, restart
           (cargo bench --bench node -- ARGS; --quick for a short run); needs root
  fuzz [SECONDS] [TARGET...]
           run the fuzz targets (default: all, 60 s each); report in .state/fuzz
  seccomp-learn [CARGO TEST ARGS...]
           run the integration suites with the agent under strace and compare its system
           calls with policy/seccomp.json; report in .state/seccomp-learn";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result: Result<i32> = match args.first().map(String::as_str) {
        Some("images") => xtask::images::ensure_built(&xtask::images::default_dir()).map(|p| {
            for (reference, archive) in p.iter() {
                println!("{reference}\t{}", archive.display());
            }
            0
        }),
        Some("up") => xtask::dev::up().map(|()| 0),
        Some("down") => xtask::dev::down().map(|()| 0),
        Some("test") => xtask::check::run(),
        Some("fuzz") => xtask::fuzz::command(&args[1..]),
        Some("seccomp-learn") => xtask::seccomp::command(&args[1..]),
        Some("bench") => {
            std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .current_dir(xtask::workspace::root())
                .args(["bench", "-p", "ironlet", "--bench", "node", "--"])
                .args(&args[1..])
                .status()
                .map(|s| s.code().unwrap_or(1))
                .map_err(anyhow::Error::from)
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(0)
        }
        _ => {
            eprintln!("{USAGE}");
            Ok(2)
        }
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
