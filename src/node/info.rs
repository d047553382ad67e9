//! Facts about the machine that go into the Node object: identity (machine and boot IDs,
//! kernel, OS image), addresses, and the pressure signals (available memory, node file
//! system space, process ids). Reading is kept here; the arithmetic that turns readings into
//! conditions is pure and lives in `status`.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;

/// Upstream's label values for the architecture (GOARCH names).
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

/// The version ironlet reports as kubeletVersion: the Kubernetes API it implements, with
/// ironlet's own version as a pre-release tag so version-skew tooling still parses it.
pub fn kubelet_version() -> String {
    format!("v1.33.0-ironlet.{}", env!("CARGO_PKG_VERSION"))
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `PRETTY_NAME` of os-release, as upstream reports osImage.
pub fn os_image() -> String {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    pretty_name(&text).unwrap_or_else(|| "Unknown".into())
}

fn pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        l.strip_prefix("PRETTY_NAME=")
            .map(|v| v.trim().trim_matches('"').to_owned())
    })
}

/// Machine identity as upstream reads it (cAdvisor): machine-id, product UUID, boot id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachineIds {
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
}

pub fn machine_ids() -> MachineIds {
    let machine_id = Some(read_trimmed("/etc/machine-id"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| read_trimmed("/var/lib/dbus/machine-id"));
    MachineIds {
        machine_id,
        system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        kernel_version: rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned(),
    }
}

/// The node's InternalIP when --node-ip is not given: the source address the kernel picks
/// to reach the API server. A UDP "connect" only consults the routing table; no packet is
/// sent.
pub fn detect_node_ip(api_server: Option<SocketAddr>) -> Option<IpAddr> {
    let target = api_server?;
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(target).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// What the pressure conditions are computed from. Each reading is `None` when the source
/// could not be read; a missing reading never raises pressure.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Signals {
    pub memory_capacity: Option<i64>,
    pub memory_available: Option<i64>,
    pub nodefs_capacity: Option<i64>,
    pub nodefs_available: Option<i64>,
    pub pid_max: Option<i64>,
    pub pids_in_use: Option<i64>,
}

/// Reads the signals. memory.available is MemTotal minus the working set, with the working
/// set taken as MemTotal - MemAvailable (upstream subtracts inactive file pages from the
/// root cgroup's usage; MemAvailable counts those pages as available too). nodefs is the
/// file system holding `root_dir`.
pub fn signals(root_dir: &Path) -> Signals {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> Option<i64> {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kib: i64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            kib.checked_mul(1024)
        })
    };
    let (nodefs_capacity, nodefs_available) = match rustix::fs::statvfs(root_dir) {
        Ok(s) => {
            let frsize = s.f_frsize as i64;
            (
                (s.f_blocks as i64).checked_mul(frsize),
                (s.f_bavail as i64).checked_mul(frsize),
            )
        }
        Err(_) => (None, None),
    };
    Signals {
        memory_capacity: field("MemTotal"),
        memory_available: field("MemAvailable"),
        nodefs_capacity,
        nodefs_available,
        pid_max: read_trimmed("/proc/sys/kernel/pid_max").parse().ok(),
        pids_in_use: pids_in_use(&read_trimmed("/proc/loadavg")),
    }
}

/// The fourth field of /proc/loadavg is "runnable/total" scheduling entities (threads),
/// which is what consumes pids.
fn pids_in_use(loadavg: &str) -> Option<i64> {
    loadavg
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// The size of the file system holding `path`, for ephemeral-storage capacity.
pub fn filesystem_size(path: &Path) -> Option<i64> {
    let s = rustix::fs::statvfs(path).ok()?;
    (s.f_blocks as i64).checked_mul(s.f_frsize as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_and_loadavg_parsing() {
        assert_eq!(
            pretty_name("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
                .as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(pretty_name("NAME=x\n"), None);
        assert_eq!(pids_in_use("0.10 0.20 0.30 3/412 9999"), Some(412));
        assert_eq!(pids_in_use("garbage"), None);
    }

    #[test]
    fn real_machine_readings() {
        let s = signals(Path::new("/"));
        let (cap, avail) = (s.memory_capacity.unwrap(), s.memory_available.unwrap());
        assert!(cap > 0 && avail > 0 && avail <= cap, "{s:?}");
        assert!(s.nodefs_available.unwrap() <= s.nodefs_capacity.unwrap());
        assert!(s.pids_in_use.unwrap() > 0 && s.pid_max.unwrap() > s.pids_in_use.unwrap());
        let ids = machine_ids();
        assert!(!ids.boot_id.is_empty() && !ids.kernel_version.is_empty());
        assert_eq!(
            detect_node_ip("127.0.0.1:6443".parse().ok()),
            Some("127.0.0.1".parse().unwrap())
        );
        assert!(kubelet_version().starts_with("v1.33.0-ironlet."));
    }
}
