//! A project-owned containerd: its own root, state, sockets, CNI network (198.18.N.0/24 on
//! bridge `ilbrN`) and runc root, all under one base directory, so that several instances
//! (the dev node and concurrent tests) run side by side without touching the host's
//! containerd or each other.
//!
//! Owns: everything under `base_dir`, the bridge `ilbrN`, portmap rules tagged `ironlet-N`.
//! Must not touch: other instances, `/run/containerd`, `/etc/cni`, `/var/run/netns`
//! (netns files live under the instance's state dir: `netns_mounts_under_state_dir`).

use crate::images::{self, PAUSE_IMAGE};
use crate::netclaim::{self, NetClaim};
use crate::procs::ProcId;
use crate::run::{self, log_tail};
use crate::teardown;
use anyhow::{Context, Result, bail, ensure};
use serde_json::json;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

pub use crate::netclaim::claim_test_net_index;

/// Where test instances live: on disk (not tmpfs), where overlayfs works.
pub const TEST_ROOT: &str = "/var/tmp/ironlet-test";
/// How long containerd gets to answer on its socket.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// What distinguishes one instance from another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdOpts {
    pub base_dir: PathBuf,
    /// 0 = the dev node (198.18.0.0/24); 1..=254 for tests (198.18.N.0/24).
    pub net_index: u8,
}

impl ContainerdOpts {
    pub fn socket(&self) -> PathBuf {
        self.base_dir.join("containerd.sock")
    }
    pub fn ttrpc_socket(&self) -> PathBuf {
        self.base_dir.join("containerd.sock.ttrpc")
    }
    pub fn config_path(&self) -> PathBuf {
        self.base_dir.join("config.toml")
    }
    pub fn log_path(&self) -> PathBuf {
        self.base_dir.join("containerd.log")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.base_dir.join("containerd.pid")
    }
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.base_dir.join("cni/net.d")
    }
    pub fn cni_conflist_path(&self) -> PathBuf {
        self.cni_conf_dir().join("10-ironlet.conflist")
    }
    /// `ironlet-N`: the CNI network name (also tags portmap's iptables rules).
    pub fn network_name(&self) -> String {
        format!("ironlet-{}", self.net_index)
    }
    /// `ilbrN` (at most 7 characters; link names may have 15).
    pub fn bridge_name(&self) -> String {
        format!("ilbr{}", self.net_index)
    }
    /// `198.18.N.0/24`.
    pub fn subnet(&self) -> String {
        format!("198.18.{}.0/24", self.net_index)
    }
    /// `198.18.N.1`: the bridge's address, the pods' gateway to the host.
    pub fn gateway(&self) -> String {
        format!("198.18.{}.1", self.net_index)
    }

    fn validate(&self) -> Result<()> {
        ensure!(self.net_index != 255, "net_index must be 0..=254");
        ensure!(
            self.base_dir.is_absolute(),
            "base_dir must be absolute: {}",
            self.base_dir.display()
        );
        let len = self.ttrpc_socket().as_os_str().len();
        ensure!(
            len <= MAX_SOCKET_PATH,
            "socket path {} is {len} bytes, over the {MAX_SOCKET_PATH}-byte limit of unix sockets; \
             use a shorter base_dir",
            self.ttrpc_socket().display()
        );
        Ok(())
    }
}

/// A TOML basic string (JSON string escapes are valid TOML).
fn toml_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn toml_path(p: &Path) -> String {
    toml_str(&p.to_string_lossy())
}

/// Plugins that cannot work here or are not used; skipping them also makes start faster.
const DISABLED_PLUGINS: &[&str] = &[
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    // Would create /opt/containerd, outside the base dir.
    "io.containerd.internal.v1.opt",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
];

/// The containerd config (version 2) for an instance.
pub fn render_config(opts: &ContainerdOpts) -> String {
    let b = &opts.base_dir;
    let disabled = DISABLED_PLUGINS
        .iter()
        .map(|p| toml_str(p))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"# Written by `cargo xtask`; regenerated on every start.
version = 2
root = {root}
state = {state}
disabled_plugins = [{disabled}]

[grpc]
  address = {sock}

[ttrpc]
  address = {ttrpc}

# No debug or metrics listeners.
[debug]
  address = ""

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = {sandbox}
    restrict_oom_score_adj = true
    # Exec/attach/port-forward streams on a random loopback port.
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_tls_streaming = false
    # Keep pod netns files under this instance's state dir, not /var/run/netns.
    netns_mounts_under_state_dir = true

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = {cni_conf}
      max_conf_num = 1

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          # runc's state per instance, not the shared /run/containerd/runc.
          Root = {runc_root}
"#,
        root = toml_path(&b.join("root")),
        state = toml_path(&b.join("state")),
        sock = toml_path(&opts.socket()),
        ttrpc = toml_path(&opts.ttrpc_socket()),
        sandbox = toml_str(PAUSE_IMAGE),
        cni_conf = toml_path(&opts.cni_conf_dir()),
        runc_root = toml_path(&b.join("runc")),
    )
}

/// The CNI network of an instance: a bridge with host-local IPAM and portmap.
///
/// No `routes` are configured: the on-link route of the /24 is the only route a pod gets,
/// so pods reach each other and the host (the gateway, 198.18.N.1) and nothing beyond. An
/// explicit route for the /24 would shadow the on-link one and send pod-to-pod traffic
/// through the host.
pub fn render_cni_conflist(opts: &ContainerdOpts) -> String {
    let doc = json!({
        "cniVersion": "1.0.0",
        "name": opts.network_name(),
        "plugins": [
            {
                "type": "bridge",
                "bridge": opts.bridge_name(),
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": opts.subnet(), "gateway": opts.gateway() }]],
                    "dataDir": opts.base_dir.join("cni/ipam").to_string_lossy(),
                },
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    });
    // Pretty, for the people who read it; serde_json cannot fail on a Value.
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string())
}

/// Writes `<base>/config.toml` and the CNI conflist; returns the config path.
pub fn write_config(opts: &ContainerdOpts) -> Result<PathBuf> {
    opts.validate()?;
    fs::create_dir_all(opts.cni_conf_dir())
        .with_context(|| format!("creating {}", opts.cni_conf_dir().display()))?;
    fs::write(opts.cni_conflist_path(), render_cni_conflist(opts))
        .with_context(|| format!("writing {}", opts.cni_conflist_path().display()))?;
    let path = opts.config_path();
    fs::write(&path, render_config(opts)).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A running instance. Dropping it (or [`Containerd::stop`]) kills its containers, shims and
/// containerd, unmounts everything under its base dir, deletes its bridge and removes the
/// base dir. [`Containerd::detach`] leaves it running (the dev node).
#[derive(Debug)]
pub struct Containerd {
    opts: ContainerdOpts,
    child: Option<Child>,
    // Released after teardown (fields drop after `Drop::drop`).
    _claim: Option<NetClaim>,
    active: bool,
}

impl Containerd {
    /// Writes the config, starts containerd, waits until it answers (at most
    /// [`START_TIMEOUT`]) and imports both images. Leftovers of an earlier instance with the
    /// same base dir are torn down first.
    pub fn start(opts: ContainerdOpts) -> Result<Containerd> {
        Self::launch(opts, None)
    }

    fn launch(opts: ContainerdOpts, claim: Option<NetClaim>) -> Result<Containerd> {
        opts.validate()?;
        if opts.base_dir.exists() {
            teardown::teardown(&opts)?;
        }
        fs::create_dir_all(&opts.base_dir)
            .with_context(|| format!("creating {}", opts.base_dir.display()))?;
        fs::set_permissions(&opts.base_dir, fs::Permissions::from_mode(0o711))?;
        let config = write_config(&opts)?;
        let log = File::create(opts.log_path())
            .with_context(|| format!("creating {}", opts.log_path().display()))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C meant for cargo must not kill the node
            // half-way; teardown stops it in order instead.
            .process_group(0)
            .spawn()
            .context("cannot start containerd (run `cargo xtask up` once to install it)")?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        let mut me = Containerd {
            opts,
            child: Some(child),
            _claim: claim,
            active: true,
        };
        // From here on, any error drops `me`, which tears the instance down.
        if let Some(p) = ProcId::of(pid) {
            p.write_pid_file(&me.opts.pid_file())?;
        }
        me.wait_ready(START_TIMEOUT)?;
        let paths = images::ensure_built(&images::default_dir())?;
        images::import(&me.socket(), &paths)?;
        Ok(me)
    }

    /// Adopts an instance started earlier (by another process) if its pid file names a live
    /// containerd and its socket answers.
    pub fn adopt(opts: ContainerdOpts) -> Result<Option<Containerd>> {
        opts.validate()?;
        let alive = ProcId::read_pid_file(&opts.pid_file()).is_some_and(|p| p.alive());
        if !alive || !answers(&opts.socket()) {
            return Ok(None);
        }
        Ok(Some(Containerd {
            opts,
            child: None,
            _claim: None,
            active: true,
        }))
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(st) = child.try_wait()?
            {
                bail!(
                    "containerd exited during start: {st}\n--- {} ---\n{}",
                    self.opts.log_path().display(),
                    log_tail(&self.opts.log_path(), 30)
                );
            }
            if answers(&self.opts.socket()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "containerd did not answer on {} within {timeout:?}\n--- {} ---\n{}",
                    self.opts.socket().display(),
                    self.opts.log_path().display(),
                    log_tail(&self.opts.log_path(), 30)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn opts(&self) -> &ContainerdOpts {
        &self.opts
    }
    pub fn socket(&self) -> PathBuf {
        self.opts.socket()
    }
    /// `unix:///.../containerd.sock`, for `--container-runtime-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.opts.socket().display())
    }
    pub fn base_dir(&self) -> &Path {
        &self.opts.base_dir
    }
    pub fn net_index(&self) -> u8 {
        self.opts.net_index
    }
    /// `ctr --address SOCK -n k8s.io`, ready for more arguments.
    pub fn ctr(&self) -> Command {
        images::ctr(&self.socket())
    }

    /// Tears the instance down now, reporting what could not be cleaned.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    /// Leaves containerd running (for the dev node); `cargo xtask down` stops it later.
    pub fn detach(mut self) {
        self.active = false;
    }

    fn shutdown(&mut self) -> Result<()> {
        if !std::mem::replace(&mut self.active, false) {
            return Ok(());
        }
        let res = teardown::teardown(&self.opts);
        if let Some(mut child) = self.child.take() {
            // Reap it; teardown has already killed it (or it had exited).
            let _ = child.kill();
            let _ = child.wait();
        }
        res
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!(
                "warning: cleaning up containerd at {}: {e:#}",
                self.opts.base_dir.display()
            );
        }
    }
}

/// True if containerd serves requests on `socket` (connect, then `ctr version`).
pub fn answers(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
        && run::output_timeout(
            Command::new("ctr")
                .arg("--address")
                .arg(socket)
                .arg("version"),
            Duration::from_secs(5),
        )
        .is_ok()
}

/// A fresh instance for one test: claims a network index, clears what a crashed earlier
/// holder of that index left behind, and starts under `/var/tmp/ironlet-test/<N>-<pid>`.
pub fn test_instance() -> Result<Containerd> {
    let claim = netclaim::claim_test_net_index()?;
    let n = claim.index();
    let root = Path::new(TEST_ROOT);
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    check_overlayfs(root)?;
    teardown::reap_stale_test_instances(root, n);
    let opts = ContainerdOpts {
        base_dir: root.join(format!("{n}-{}", std::process::id())),
        net_index: n,
    };
    Containerd::launch(opts, Some(claim))
}

/// Mounts a scratch overlay under `dir` once per process, so a filesystem that cannot host
/// the overlayfs snapshotter fails with a clear message rather than a failed image unpack.
fn check_overlayfs(dir: &Path) -> Result<()> {
    static RESULT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let r = RESULT.get_or_init(|| probe_overlayfs(dir).map_err(|e| format!("{e:#}")));
    match r {
        Ok(()) => Ok(()),
        Err(e) => bail!("overlayfs does not work under {}: {e}", dir.display()),
    }
}

fn probe_overlayfs(dir: &Path) -> Result<()> {
    use rustix::mount::{MountFlags, UnmountFlags, mount, unmount};
    let scratch = dir.join(format!(".overlay-probe-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    for d in ["lower", "upper", "work", "merged"] {
        fs::create_dir_all(scratch.join(d))?;
    }
    fs::write(scratch.join("lower/probe"), b"ok")?;
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        scratch.join("lower").display(),
        scratch.join("upper").display(),
        scratch.join("work").display()
    );
    let data = std::ffi::CString::new(data)?;
    let merged = scratch.join("merged");
    let mounted = mount(
        "overlay",
        &merged,
        "overlay",
        MountFlags::empty(),
        data.as_c_str(),
    );
    let seen = mounted.is_ok() && fs::read(merged.join("probe")).is_ok_and(|b| b == b"ok");
    if mounted.is_ok() {
        let _ = unmount(&merged, UnmountFlags::DETACH);
    }
    let _ = fs::remove_dir_all(&scratch);
    mounted.context("mount -t overlay")?;
    ensure!(seen, "overlay mounted but the lower file is not visible");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(n: u8) -> ContainerdOpts {
        ContainerdOpts {
            base_dir: PathBuf::from(format!("/var/tmp/ironlet-test/{n}-1")),
            net_index: n,
        }
    }

    #[test]
    fn config_has_the_settings_we_rely_on() {
        let c = render_config(&opts(7));
        for want in [
            "version = 2",
            r#"root = "/var/tmp/ironlet-test/7-1/root""#,
            r#"state = "/var/tmp/ironlet-test/7-1/state""#,
            r#"address = "/var/tmp/ironlet-test/7-1/containerd.sock""#,
            r#"address = "/var/tmp/ironlet-test/7-1/containerd.sock.ttrpc""#,
            r#"sandbox_image = "localhost/ironlet/pause:1""#,
            "restrict_oom_score_adj = true",
            r#"stream_server_address = "127.0.0.1""#,
            r#"stream_server_port = "0""#,
            "netns_mounts_under_state_dir = true",
            r#"bin_dir = "/usr/lib/cni""#,
            r#"conf_dir = "/var/tmp/ironlet-test/7-1/cni/net.d""#,
            "max_conf_num = 1",
            r#"snapshotter = "overlayfs""#,
            r#"runtime_type = "io.containerd.runc.v2""#,
            "SystemdCgroup = false",
            r#""io.containerd.snapshotter.v1.btrfs""#,
            r#""io.containerd.snapshotter.v1.zfs""#,
            r#""io.containerd.snapshotter.v1.devmapper""#,
            r#""io.containerd.snapshotter.v1.aufs""#,
        ] {
            assert!(c.contains(want), "config lacks {want:?}:\n{c}");
        }
        // No debug or metrics listeners.
        assert!(c.contains("[debug]\n  address = \"\""));
        assert!(c.contains("[metrics]\n  address = \"\""));
    }

    #[test]
    fn config_escapes_paths() {
        let o = ContainerdOpts {
            base_dir: PathBuf::from("/tmp/a \"b\""),
            net_index: 1,
        };
        assert!(render_config(&o).contains(r#"root = "/tmp/a \"b\"/root""#));
    }

    #[test]
    fn conflist_is_an_isolated_bridge_network() {
        let c: serde_json::Value =
            serde_json::from_str(&render_cni_conflist(&opts(42))).expect("json");
        assert_eq!(c["name"], "ironlet-42");
        assert_eq!(c["cniVersion"], "1.0.0");
        let bridge = &c["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "ilbr42");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["hairpinMode"], true);
        assert!(bridge.get("isDefaultGateway").is_none());
        let ipam = &bridge["ipam"];
        assert_eq!(ipam["type"], "host-local");
        assert_eq!(ipam["ranges"][0][0]["subnet"], "198.18.42.0/24");
        assert_eq!(ipam["ranges"][0][0]["gateway"], "198.18.42.1");
        assert_eq!(ipam["dataDir"], "/var/tmp/ironlet-test/42-1/cni/ipam");
        assert!(
            ipam.get("routes").is_none(),
            "no routes beyond the on-link /24"
        );
        assert_eq!(c["plugins"][1]["type"], "portmap");
        assert_eq!(c["plugins"][1]["capabilities"]["portMappings"], true);
    }

    #[test]
    fn names_fit_kernel_limits() {
        let o = opts(254);
        assert!(o.bridge_name().len() <= 15);
        assert_eq!(o.subnet(), "198.18.254.0/24");
        assert!(o.validate().is_ok());
        assert!(opts(255).validate().is_err());
        let long = ContainerdOpts {
            base_dir: PathBuf::from(format!("/{}", "x".repeat(100))),
            net_index: 1,
        };
        assert!(
            long.validate().is_err(),
            "socket path too long for sun_path"
        );
    }
}
