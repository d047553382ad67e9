//! Startup checks of the host the node runs on, as upstream's container manager makes
//! them: protectKernelDefaults (the kernel tunables a kubelet expects) and failSwapOn (no
//! active swap). They read `<proc>/sys/...` and `<proc>/swaps`, where `<proc>` is /proc
//! except under the tests' `--insecure-proc-root`, and run before confinement.

use std::path::{Path, PathBuf};

/// Upstream's expected kernel tunables (pkg/kubelet/cm container_manager_linux.go,
/// setupKernelTunables): vm.overcommit_memory=1 (always overcommit), vm.panic_on_oom=0
/// (let the OOM killer act), kernel.panic=10 (reboot 10 s after a panic),
/// kernel.panic_on_oops=1, kernel.keys.root_maxkeys=1000000 and
/// kernel.keys.root_maxbytes=25000000 (25 bytes per key).
pub const KERNEL_DEFAULTS: &[(&str, i64)] = &[
    ("vm.overcommit_memory", 1),
    ("vm.panic_on_oom", 0),
    ("kernel.panic", 10),
    ("kernel.panic_on_oops", 1),
    ("kernel.keys.root_maxkeys", 1_000_000),
    ("kernel.keys.root_maxbytes", 25_000_000),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Upstream's wording, one line per tunable that differs.
    #[error("protectKernelDefaults: {}", .0.join("; "))]
    KernelDefaults(Vec<String>),
    #[error(
        "failSwapOn: running with swap on is not supported, please disable swap or set failSwapOn to false (--fail-swap-on=false); active swap in {path}: {devices}"
    )]
    SwapOn { path: String, devices: String },
    #[error("{path}: cannot read: {message}")]
    Read { path: String, message: String },
}

fn read(path: &Path) -> Result<String, HostError> {
    std::fs::read_to_string(path).map_err(|e| HostError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The path of sysctl `name` under `proc_root` (`vm.panic_on_oom` → `sys/vm/panic_on_oom`).
fn sysctl_path(proc_root: &Path, name: &str) -> PathBuf {
    proc_root.join("sys").join(name.replace('.', "/"))
}

/// Every tunable that differs from [`KERNEL_DEFAULTS`], as upstream reports each:
/// `invalid kernel flag: vm.overcommit_memory, expected value: 1, actual value: 0`.
pub fn check_kernel_defaults(proc_root: &Path) -> Result<(), HostError> {
    let mut problems = Vec::new();
    for (name, want) in KERNEL_DEFAULTS {
        let path = sysctl_path(proc_root, name);
        let text = read(&path)?;
        match text.trim().parse::<i64>() {
            Ok(got) if got == *want => {}
            Ok(got) => problems.push(format!(
                "invalid kernel flag: {name}, expected value: {want}, actual value: {got}"
            )),
            Err(_) => problems.push(format!(
                "invalid kernel flag: {name}, expected value: {want}, actual value: {:?} (not a number)",
                text.trim()
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(HostError::KernelDefaults(problems))
    }
}

/// The active swap devices of a /proc/swaps text (its first line is the header).
pub fn active_swaps(swaps: &str) -> Vec<&str> {
    swaps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

/// With failSwapOn, refuse to start while any swap is active (upstream's check).
pub fn check_swap(proc_root: &Path) -> Result<(), HostError> {
    let path = proc_root.join("swaps");
    let text = read(&path)?;
    let devices = active_swaps(&text);
    if devices.is_empty() {
        Ok(())
    } else {
        Err(HostError::SwapOn {
            path: path.display().to_string(),
            devices: devices.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(values: &[(&str, &str)], swaps: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, v) in values {
            let p = sysctl_path(dir.path(), name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, format!("{v}\n")).unwrap();
        }
        std::fs::write(dir.path().join("swaps"), swaps).unwrap();
        dir
    }

    const HEADER: &str = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";

    #[test]
    fn expected_values_pass_and_each_difference_is_named() {
        let good: Vec<(&str, String)> = KERNEL_DEFAULTS
            .iter()
            .map(|(n, v)| (*n, v.to_string()))
            .collect();
        let refs: Vec<(&str, &str)> = good.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(check_kernel_defaults(fixture(&refs, HEADER).path()), Ok(()));

        let mut bad = refs.clone();
        bad[0].1 = "0";
        bad[2].1 = "0";
        let e = check_kernel_defaults(fixture(&bad, HEADER).path()).unwrap_err();
        let HostError::KernelDefaults(lines) = &e else {
            panic!("{e}")
        };
        assert_eq!(
            lines,
            &vec![
                "invalid kernel flag: vm.overcommit_memory, expected value: 1, actual value: 0"
                    .to_owned(),
                "invalid kernel flag: kernel.panic, expected value: 10, actual value: 0".to_owned(),
            ]
        );
        // A missing tunable is an error naming the file, not a pass.
        let e = check_kernel_defaults(fixture(&refs[1..], HEADER).path()).unwrap_err();
        assert!(e.to_string().contains("sys/vm/overcommit_memory"), "{e}");
    }

    #[test]
    fn swap() {
        assert_eq!(check_swap(fixture(&[], HEADER).path()), Ok(()));
        let on =
            format!("{HEADER}/swapfile                               file\t\t1048572\t\t0\t\t-2\n");
        let e = check_swap(fixture(&[], &on).path()).unwrap_err();
        assert!(
            e.to_string().contains("/swapfile") && e.to_string().starts_with("failSwapOn"),
            "{e}"
        );
    }
}
