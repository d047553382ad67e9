//! The images every test and the dev node use, built locally from Debian's static
//! binaries (no registry is reachable) and imported with `ctr images import`.
//!
//! Archives are docker-save style (`manifest.json` with `RepoTags`), which ctr 1.6 names
//! exactly as tagged; OCI layouts need `--base-name` games. Layers are plain tar, so each
//! layer's digest equals its diff_id. Archives are cached under a name derived from their
//! inputs and rebuilt only when a source binary changes.

use crate::prereqs;
use crate::run::{self, step};
use crate::workspace;
use anyhow::{Context, Result, bail, ensure};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The sandbox ("pause") image: a single static `/catatonit`, run as `catatonit -P`.
pub const PAUSE_IMAGE: &str = "localhost/ironlet/pause:1";
/// A tiny userland: static busybox with an applet symlink in `/bin` for every applet.
pub const BUSYBOX_IMAGE: &str = "localhost/ironlet/busybox:1";

/// The same busybox whose image config sets `User: 1000:1000`, for runAsNonRoot: the CRI's
/// ImageStatus then reports uid 1000, and a container runs as that user with no runAsUser.
pub const BUSYBOX_NONROOT_IMAGE: &str = "localhost/ironlet/busybox-nonroot:1";

/// The containerd namespace the CRI plugin serves.
pub const K8S_NAMESPACE: &str = "k8s.io";

/// Bump when the image layout changes, so cached archives are rebuilt.
const FORMAT: &str = "ironlet-images-3";
/// A fixed timestamp for every tar entry and `created`, so archives are reproducible.
const EPOCH: u64 = 1_700_000_000;
const CREATED: &str = "2023-11-14T22:13:20Z";

/// Built image archives, one per image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePaths {
    pub pause: PathBuf,
    pub busybox: PathBuf,
    pub busybox_nonroot: PathBuf,
}

impl ImagePaths {
    /// `(reference, archive)` pairs.
    pub fn iter(&self) -> [(&'static str, &Path); 3] {
        [
            (PAUSE_IMAGE, &self.pause),
            (BUSYBOX_IMAGE, &self.busybox),
            (BUSYBOX_NONROOT_IMAGE, &self.busybox_nonroot),
        ]
    }
}

/// `<workspace>/.state/images`.
pub fn default_dir() -> PathBuf {
    workspace::state_dir().join("images")
}

/// Builds both archives into `dir` unless an archive built from the same binaries is there.
pub fn ensure_built(dir: &Path) -> Result<ImagePaths> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let catatonit = static_binary("catatonit")?;
    let busybox = static_binary("busybox")?;

    let pause_bin =
        fs::read(&catatonit).with_context(|| format!("reading {}", catatonit.display()))?;
    let pause = dir.join(format!("pause-{}.tar", input_key(&[b"pause", &pause_bin])));
    if !pause.exists() {
        step(format!(
            "building {PAUSE_IMAGE} from {}",
            catatonit.display()
        ));
        let layer = pause_layer(&pause_bin)?;
        let config = image_config(
            json!({
                "Entrypoint": ["/catatonit", "-P"],
                "WorkingDir": "/",
                // As upstream's pause image: the sandbox holder needs no privileges.
                "User": "65535:65535",
            }),
            &layer,
        );
        write_archive(&pause, PAUSE_IMAGE, &config, &layer)?;
    }

    let bb_bin = fs::read(&busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let bb = dir.join(format!("busybox-{}.tar", input_key(&[b"busybox", &bb_bin])));
    if !bb.exists() {
        step(format!(
            "building {BUSYBOX_IMAGE} from {}",
            busybox.display()
        ));
        let applets = busybox_applets(&busybox)?;
        let layer = busybox_layer(&bb_bin, &applets)?;
        let config = image_config(
            json!({
                "Env": ["PATH=/bin:/usr/bin"],
                "Cmd": ["sh"],
                "WorkingDir": "/",
            }),
            &layer,
        );
        write_archive(&bb, BUSYBOX_IMAGE, &config, &layer)?;
    }

    let nonroot = dir.join(format!(
        "busybox_nonroot-{}.tar",
        input_key(&[b"busybox-nonroot", &bb_bin])
    ));
    if !nonroot.exists() {
        step(format!(
            "building {BUSYBOX_NONROOT_IMAGE} from {}",
            busybox.display()
        ));
        let applets = busybox_applets(&busybox)?;
        let layer = busybox_layer(&bb_bin, &applets)?;
        let config = image_config(
            json!({
                "Env": ["PATH=/bin:/usr/bin"],
                "Cmd": ["sh"],
                "WorkingDir": "/",
                "User": "1000:1000",
            }),
            &layer,
        );
        write_archive(&nonroot, BUSYBOX_NONROOT_IMAGE, &config, &layer)?;
    }

    remove_stale(dir, "pause-", &pause);
    remove_stale(dir, "busybox-", &bb);
    remove_stale(dir, "busybox_nonroot-", &nonroot);
    Ok(ImagePaths {
        pause,
        busybox: bb,
        busybox_nonroot: nonroot,
    })
}

/// Imports both archives into the containerd at `socket` (namespace `k8s.io`, unpacked for
/// overlayfs), then checks that both references are there and unpacked.
pub fn import(socket: &Path, paths: &ImagePaths) -> Result<()> {
    for (reference, archive) in paths.iter() {
        step(format!("importing {reference}"));
        run::output(
            ctr(socket)
                .args(["images", "import", "--snapshotter", "overlayfs"])
                .arg(archive),
        )?;
    }
    let names = run::output(ctr(socket).args(["images", "ls", "-q"]))?;
    // `check -q` lists only images whose content is complete and unpacked.
    let ready =
        run::output(ctr(socket).args(["images", "check", "-q", "--snapshotter", "overlayfs"]))?;
    for (reference, _) in paths.iter() {
        ensure!(
            names.lines().any(|l| l.trim() == reference),
            "{reference} missing after import; `ctr images ls -q` shows:\n{names}"
        );
        ensure!(
            ready.lines().any(|l| l.trim() == reference),
            "{reference} is not unpacked for overlayfs; `ctr images check -q` shows:\n{ready}"
        );
    }
    Ok(())
}

/// `ctr --address SOCKET -n k8s.io`.
pub fn ctr(socket: &Path) -> Command {
    let mut c = Command::new("ctr");
    c.arg("--address").arg(socket).args(["-n", K8S_NAMESPACE]);
    c
}

fn static_binary(name: &str) -> Result<PathBuf> {
    let p = prereqs::require(name)?;
    // Follow symlinks: the file we copy must itself be the static binary.
    let p = fs::canonicalize(&p).with_context(|| format!("resolving {}", p.display()))?;
    if !prereqs::is_static_elf(&p)? {
        bail!(
            "{} is not statically linked; install busybox-static / catatonit",
            p.display()
        );
    }
    Ok(p)
}

/// First 16 hex digits of sha256 over the format version, the architecture and the inputs.
fn input_key(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    h.update(goarch().as_bytes());
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())[..16].to_string()
}

fn remove_stale(dir: &Path, prefix: &str, keep: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".tar") && p != keep {
            let _ = fs::remove_file(&p);
        }
    }
}

/// The architecture in OCI/Go spelling.
pub fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let out = run::output(Command::new(busybox).arg("--list"))?;
    let mut applets: Vec<String> = out
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(String::from)
        .collect();
    applets.sort();
    applets.dedup();
    ensure!(
        applets.iter().any(|a| a == "sh"),
        "busybox --list has no `sh`"
    );
    Ok(applets)
}

/// A layer being written: a tar of fixed owners and timestamps.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(EPOCH);
        h.set_size(size);
        h
    }

    fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.0.append_data(&mut h, path, std::io::empty())?;
        Ok(())
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.0.append_data(&mut h, path, data)?;
        Ok(())
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, path, target)?;
        Ok(())
    }

    fn finish(self) -> Result<Vec<u8>> {
        Ok(self.0.into_inner()?)
    }
}

fn pause_layer(catatonit: &[u8]) -> Result<Vec<u8>> {
    let mut l = Layer::new();
    l.file("catatonit", 0o755, catatonit)?;
    l.finish()
}

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\n";

fn busybox_layer(busybox: &[u8], applets: &[String]) -> Result<Vec<u8>> {
    let mut l = Layer::new();
    l.dir("bin", 0o755)?;
    l.file("bin/busybox", 0o755, busybox)?;
    for a in applets {
        l.symlink(&format!("bin/{a}"), "busybox")?;
    }
    l.dir("etc", 0o755)?;
    l.file("etc/passwd", 0o644, PASSWD.as_bytes())?;
    l.file("etc/group", 0o644, GROUP.as_bytes())?;
    l.dir("root", 0o700)?;
    l.dir("tmp", 0o1777)?;
    l.dir("usr", 0o755)?;
    l.dir("usr/bin", 0o755)?;
    l.dir("var", 0o755)?;
    l.dir("var/www", 0o755)?;
    l.finish()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The image config (the JSON whose digest is the image ID) for a single-layer image.
fn image_config(config: serde_json::Value, layer: &[u8]) -> Vec<u8> {
    let doc = json!({
        "architecture": goarch(),
        "os": "linux",
        "created": CREATED,
        "config": config,
        "rootfs": {
            "type": "layers",
            "diff_ids": [format!("sha256:{}", sha256_hex(layer))],
        },
        "history": [{ "created": CREATED, "created_by": "cargo xtask images" }],
    });
    // serde_json's output of a Value is deterministic (sorted keys), so is the digest.
    doc.to_string().into_bytes()
}

/// Writes a docker-save archive holding one image, atomically (temp file, then rename) so
/// concurrent test processes never see half an archive.
fn write_archive(dest: &Path, reference: &str, config: &[u8], layer: &[u8]) -> Result<()> {
    let layer_id = sha256_hex(layer);
    let config_name = format!("{}.json", sha256_hex(config));
    let layer_name = format!("{layer_id}/layer.tar");
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": [reference],
        "Layers": [layer_name],
    }])
    .to_string();

    let mut outer = tar::Builder::new(Vec::new());
    let mut dir = Layer::header(tar::EntryType::Directory, 0o755, 0);
    outer.append_data(&mut dir, format!("{layer_id}/"), std::io::empty())?;
    for (name, data) in [
        (layer_name.as_str(), layer),
        (config_name.as_str(), config),
        ("manifest.json", manifest.as_bytes()),
    ] {
        let mut h = Layer::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        outer.append_data(&mut h, name, data)?;
    }
    let bytes = outer.into_inner()?;
    let tmp = dest.with_extension(format!("tmp-{}", std::process::id()));
    fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, dest).with_context(|| format!("writing {}", dest.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType, u32, Vec<u8>)> {
        let mut a = tar::Archive::new(tar_bytes);
        let mut out = Vec::new();
        for e in a.entries().expect("entries") {
            let mut e = e.expect("entry");
            let path = e.path().expect("path").to_string_lossy().into_owned();
            let kind = e.header().entry_type();
            let mode = e.header().mode().expect("mode");
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read");
            out.push((path, kind, mode, data));
        }
        out
    }

    #[test]
    fn busybox_layer_has_applets_tmp_and_users() {
        let layer = busybox_layer(b"BB", &["sh".into(), "ls".into()]).expect("layer");
        let e = entries(&layer);
        let find = |p: &str| {
            e.iter()
                .find(|x| x.0 == p)
                .unwrap_or_else(|| panic!("{p} missing"))
        };
        assert_eq!(find("bin/busybox").3, b"BB");
        assert_eq!(find("bin/sh").1, tar::EntryType::Symlink);
        assert_eq!(find("tmp").2, 0o1777);
        assert!(String::from_utf8_lossy(&find("etc/passwd").3).contains("nobody:x:65534"));
        assert!(String::from_utf8_lossy(&find("etc/group").3).contains("root:x:0:"));
        find("var/www");
    }

    #[test]
    fn archive_manifest_points_at_config_and_layer_with_matching_digests() {
        let dir = std::env::temp_dir().join(format!("xtask-images-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let layer = pause_layer(b"CATATONIT").expect("layer");
        let config = image_config(json!({"Entrypoint": ["/catatonit", "-P"]}), &layer);
        let dest = dir.join("p.tar");
        write_archive(&dest, PAUSE_IMAGE, &config, &layer).expect("archive");
        let bytes = fs::read(&dest).expect("read");
        let _ = fs::remove_dir_all(&dir);

        let e = entries(&bytes);
        let get = |p: &str| {
            e.iter()
                .find(|x| x.0 == p)
                .map(|x| x.3.clone())
                .expect("entry")
        };
        let manifest: serde_json::Value =
            serde_json::from_slice(&get("manifest.json")).expect("json");
        assert_eq!(manifest[0]["RepoTags"][0], PAUSE_IMAGE);
        let config_name = manifest[0]["Config"].as_str().expect("config name");
        let config_bytes = get(config_name);
        assert_eq!(format!("{}.json", sha256_hex(&config_bytes)), config_name);
        let layer_name = manifest[0]["Layers"][0].as_str().expect("layer name");
        let layer_bytes = get(layer_name);
        let cfg: serde_json::Value = serde_json::from_slice(&config_bytes).expect("json");
        assert_eq!(
            cfg["rootfs"]["diff_ids"][0],
            format!("sha256:{}", sha256_hex(&layer_bytes))
        );
        assert_eq!(cfg["architecture"], goarch());
    }

    #[test]
    fn key_changes_with_input() {
        assert_ne!(input_key(&[b"a"]), input_key(&[b"b"]));
        assert_eq!(input_key(&[b"a"]), input_key(&[b"a"]));
    }
}
