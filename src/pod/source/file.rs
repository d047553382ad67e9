//! The static pod source: one pod per manifest file in staticPodPath, watched with inotify
//! and rescanned every fileCheckFrequency (a missed inotify event costs at most a period).
//!
//! A broken manifest yields one error naming the file and the problem, logged once per
//! content, and contributes no pod; every other file is unaffected.
//!
//! Trust: a manifest can ask for anything a pod can (privileged containers, host
//! namespaces), so only root may author one. A file is read only when it is a regular
//! file (opened with O_NOFOLLOW | O_NONBLOCK and checked with fstat: no symlink, FIFO,
//! device or socket, and no open that could block the agent), owned by root and neither
//! group- nor world-writable, in a directory that is root-owned and neither group- nor
//! world-writable. Anything else is that file's single error (or, for the directory, the
//! directory's), and no pod. There is no switch to relax this.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::pod::DesiredPod;
use crate::pod::manifest::{self, MAX_MANIFEST_BYTES};

/// Settles bursts of inotify events (an editor's write-rename-chmod) into one rescan.
const SETTLE: Duration = Duration::from_millis(20);

/// What became of one file at the last scan.
#[derive(Clone, Debug)]
struct Scanned {
    content_hash: [u8; 32],
    result: Result<DesiredPod, String>,
}

/// The scan state: the last result per file, so unchanged files are neither re-parsed nor
/// re-reported, and a pod's first-seen time survives rescans.
pub struct FileSource {
    dir: PathBuf,
    node_name: String,
    files: BTreeMap<PathBuf, Scanned>,
    missing_dir_reported: bool,
    /// The last directory-level refusal logged, so it is logged once.
    dir_problem_reported: Option<String>,
}

/// The only owner a manifest or its directory may have.
const TRUSTED_OWNER: u32 = 0;

fn kind_name(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_symlink() {
        "a symlink"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Owner and mode rules shared by manifests and their directory.
fn owner_and_mode_problem(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if meta.uid() != TRUSTED_OWNER {
        return Some(format!("is owned by uid {}, not root", meta.uid()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "group- and world-writable",
            (true, false) => "group-writable",
            _ => "world-writable",
        };
        return Some(format!("is {who} (mode {mode:04o})"));
    }
    None
}

/// Why the manifest directory itself is not trusted, if it is not.
fn dir_problem(dir: &Path) -> Option<String> {
    // The configured path may itself be a symlink the operator chose: the directory it
    // names is what must be root's.
    let meta = std::fs::metadata(dir).ok()?;
    if !meta.is_dir() {
        return Some("is not a directory".into());
    }
    owner_and_mode_problem(&meta)
}

/// Whether a directory entry is a manifest candidate: .yaml, .yml or .json, not a dotfile.
pub fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.')
        && (name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json"))
}

impl FileSource {
    pub fn new(dir: PathBuf, node_name: String) -> Self {
        FileSource {
            dir,
            node_name,
            files: BTreeMap::new(),
            missing_dir_reported: false,
            dir_problem_reported: None,
        }
    }

    /// Reads the directory and returns the complete desired set.
    pub fn scan(&mut self) -> Vec<DesiredPod> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => {
                self.missing_dir_reported = false;
                e
            }
            Err(e) => {
                if !self.missing_dir_reported {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "static pod path unreadable; no static pods");
                    self.missing_dir_reported = true;
                }
                self.files.clear();
                return Vec::new();
            }
        };
        if let Some(problem) = dir_problem(&self.dir) {
            if self.dir_problem_reported.as_deref() != Some(problem.as_str()) {
                tracing::error!(
                    dir = %self.dir.display(),
                    "static pod directory not trusted: {} {problem}; manifests are read only \
                     from a root-owned directory that is not group- or world-writable: no static pods",
                    self.dir.display()
                );
                self.dir_problem_reported = Some(problem);
            }
            self.files.clear();
            return Vec::new();
        }
        self.dir_problem_reported = None;
        // Every entry with a manifest name is judged, whatever its type: a FIFO, a symlink
        // or a directory is reported, not silently skipped.
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_str().is_some_and(is_manifest_name))
            .map(|e| e.path())
            .collect();
        paths.sort();

        let mut next = BTreeMap::new();
        for path in paths {
            let scanned = self.scan_file(&path);
            next.insert(path, scanned);
        }
        self.files = next;

        // The same pod name from two files: the first file (by name) wins, as a set cannot
        // hold two pods with one name.
        let mut by_name: HashMap<String, PathBuf> = HashMap::new();
        let mut pods = Vec::new();
        for (path, s) in &self.files {
            let Ok(pod) = &s.result else { continue };
            let key = pod.full_name.to_string();
            if let Some(first) = by_name.get(&key) {
                tracing::error!(
                    file = %path.display(),
                    "static pod manifest rejected: pod {key} is already defined by {}",
                    first.display()
                );
                continue;
            }
            by_name.insert(key, path.clone());
            pods.push(pod.clone());
        }
        pods
    }

    fn scan_file(&self, path: &Path) -> Scanned {
        let content = match read_bounded(path) {
            Ok(c) => c,
            Err(problem) => {
                let hash = Sha256::digest(problem.as_bytes()).into();
                return self.report(path, hash, Err(problem));
            }
        };
        let hash: [u8; 32] = Sha256::digest(&content).into();
        if let Some(prev) = self.files.get(path)
            && prev.content_hash == hash
        {
            return prev.clone();
        }
        let seen = jiff::Timestamp::now().to_string();
        let result =
            manifest::parse(path, &content, &self.node_name, &seen).map_err(|e| e.to_string());
        self.report(path, hash, result)
    }

    /// Logs a new outcome for a file once.
    fn report(&self, path: &Path, hash: [u8; 32], result: Result<DesiredPod, String>) -> Scanned {
        let unchanged = self.files.get(path).is_some_and(|p| p.content_hash == hash);
        if !unchanged {
            match &result {
                Ok(p) => {
                    tracing::info!(file = %path.display(), pod = %p.full_name, pod_uid = %p.uid, "static pod manifest loaded")
                }
                Err(problem) => {
                    tracing::error!(file = %path.display(), "static pod manifest rejected: {problem}")
                }
            }
        }
        Scanned {
            content_hash: hash,
            result,
        }
    }

    /// Scans now, then on every change in the directory and every `period`, sending the
    /// desired set whenever it differs from the last one sent. Ends when `tx` closes.
    pub async fn run(mut self, period: Duration, tx: mpsc::Sender<Vec<DesiredPod>>) {
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<()>();
        let mut watcher = None;
        let mut last: Option<Vec<(String, String)>> = None;
        loop {
            if watcher.is_none() {
                watcher = self.watch(ev_tx.clone());
            }
            let set = self.scan();
            let key: Vec<(String, String)> = set
                .iter()
                .map(|p| (p.full_name.to_string(), p.uid.0.clone()))
                .collect();
            if last.as_ref() != Some(&key) {
                last = Some(key);
                if tx.send(set).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                ev = ev_rx.recv() => {
                    if ev.is_none() {
                        watcher = None;
                    }
                    tokio::time::sleep(SETTLE).await;
                    while ev_rx.try_recv().is_ok() {}
                }
                _ = tx.closed() => return,
            }
        }
    }

    fn watch(&self, ev_tx: mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
        // Only changes matter. Access events must be ignored: the scan itself opens every
        // manifest, and reacting to that would rescan forever.
        let handler = move |res: notify::Result<notify::Event>| {
            if res.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
                let _ = ev_tx.send(());
            }
        };
        let mut w = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "inotify unavailable; relying on periodic rescans");
                return None;
            }
        };
        match w.watch(&self.dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(_) => None, // the directory may not exist yet; periodic rescans retry
        }
    }
}

/// Reads a trusted manifest (see the module doc), refusing anything larger than the
/// manifest limit before reading it all.
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let untrusted = |why: &str| {
        format!(
            "not trusted: {} {why}; a manifest must be a regular file owned by root and not \
             group- or world-writable",
            path.display()
        )
    };
    // lstat first, so nothing but a regular file is even opened (opening a device can
    // have effects of its own); the fstat below is what decides.
    let lmeta = std::fs::symlink_metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !lmeta.file_type().is_file() {
        return Err(untrusted(&format!("is {}", kind_name(lmeta.file_type()))));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => untrusted("is a symlink"),
            _ => format!("cannot read: {e}"),
        })?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.file_type().is_file() {
        return Err(untrusted(&format!("is {}", kind_name(meta.file_type()))));
    }
    if let Some(why) = owner_and_mode_problem(&meta) {
        return Err(untrusted(&why));
    }
    let mut content = Vec::new();
    file.take(MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut content)
        .map_err(|e| format!("cannot read: {e}"))?;
    if content.len() > MAX_MANIFEST_BYTES {
        return Err(manifest::ManifestError::TooLarge(content.len()).to_string());
    }
    Ok(content)
}

/// Unix seconds, for tests and reports.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: NAME\nspec:\n  containers:\n  - name: c\n    image: i:1\n";

    #[test]
    fn names_that_count_as_manifests() {
        assert!(is_manifest_name("a.yaml"));
        assert!(is_manifest_name("a.yml"));
        assert!(is_manifest_name("a.json"));
        assert!(!is_manifest_name(".a.yaml"));
        assert!(!is_manifest_name("a.yaml.swp"));
        assert!(!is_manifest_name("a.txt"));
    }

    #[test]
    fn scan_keeps_valid_pods_and_skips_broken_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), POD.replace("NAME", "a")).unwrap();
        std::fs::write(dir.path().join("b.yaml"), "not: [valid").unwrap();
        std::fs::write(dir.path().join("c.json"), "{}").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), POD.replace("NAME", "h")).unwrap();
        std::fs::write(dir.path().join("dup.yaml"), POD.replace("NAME", "a")).unwrap();
        let mut src = FileSource::new(dir.path().to_path_buf(), "n".into());
        let set = src.scan();
        let names: Vec<_> = set.iter().map(|p| p.full_name.name.as_str()).collect();
        assert_eq!(names, ["a-n"]);
        assert!(src.files[&dir.path().join("b.yaml")].result.is_err());
        assert!(
            src.files[&dir.path().join("c.json")]
                .result
                .as_ref()
                .unwrap_err()
                .contains("apiVersion")
        );
    }

    #[test]
    fn unchanged_content_keeps_identity_and_seen_time() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.yaml");
        std::fs::write(&f, POD.replace("NAME", "a")).unwrap();
        let mut src = FileSource::new(dir.path().to_path_buf(), "n".into());
        let first = src.scan();
        std::thread::sleep(Duration::from_millis(10));
        let again = src.scan();
        assert_eq!(first[0].uid, again[0].uid);
        assert_eq!(
            first[0].pod.metadata.annotations,
            again[0].pod.metadata.annotations
        );
        std::fs::write(&f, POD.replace("NAME", "a").replace("i:1", "i:2")).unwrap();
        assert_ne!(src.scan()[0].uid, first[0].uid);
        std::fs::remove_file(&f).unwrap();
        assert!(src.scan().is_empty());
    }

    #[test]
    fn oversized_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("big.yaml"),
            vec![b'#'; MAX_MANIFEST_BYTES + 10],
        )
        .unwrap();
        let mut src = FileSource::new(dir.path().to_path_buf(), "n".into());
        assert!(src.scan().is_empty());
        let err = src
            .files
            .values()
            .next()
            .unwrap()
            .result
            .as_ref()
            .unwrap_err();
        assert!(err.contains("larger than"), "{err}");
    }

    /// Every untrusted file gets its own error naming it and the reason; the trusted pod
    /// beside them still loads. (Runs as root, as the suite does.)
    #[test]
    fn untrusted_files_are_refused_one_by_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let write = |name: &str, mode: u32| {
            let p = d.join(name);
            std::fs::write(&p, POD.replace("NAME", name.trim_end_matches(".yaml"))).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        write("good.yaml", 0o644);
        write("gw.yaml", 0o664);
        write("ww.yaml", 0o646);
        let other = write("other.yaml", 0o644);
        std::os::unix::fs::chown(&other, Some(1000), Some(1000)).unwrap();
        let target = write(".target.yaml", 0o644);
        std::os::unix::fs::symlink(&target, d.join("link.yaml")).unwrap();
        let fifo = d.join("fifo.yaml");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        std::fs::create_dir(d.join("dir.yaml")).unwrap();
        let mut src = FileSource::new(d.to_path_buf(), "n".into());
        let set = src.scan();
        let names: Vec<_> = set.iter().map(|p| p.full_name.name.as_str()).collect();
        assert_eq!(names, ["good-n"]);
        let err = |f: &str| src.files[&d.join(f)].result.clone().unwrap_err();
        for (f, why) in [
            ("gw.yaml", "is group-writable (mode 0664)"),
            ("ww.yaml", "is world-writable (mode 0646)"),
            ("other.yaml", "is owned by uid 1000, not root"),
            ("link.yaml", "is a symlink"),
            ("fifo.yaml", "is a FIFO"),
            ("dir.yaml", "is a directory"),
        ] {
            let e = err(f);
            assert!(e.contains(&d.join(f).display().to_string()), "{f}: {e}");
            assert!(e.contains(why), "{f}: {e}");
        }
    }

    #[test]
    fn an_untrusted_directory_yields_no_pods() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), POD.replace("NAME", "a")).unwrap();
        let mut src = FileSource::new(dir.path().to_path_buf(), "n".into());
        assert_eq!(src.scan().len(), 1);
        for mode in [0o777, 0o775, 0o1777] {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(src.scan().is_empty(), "{mode:o}");
            assert!(
                src.dir_problem_reported
                    .as_deref()
                    .unwrap()
                    .contains("writable")
            );
        }
        std::os::unix::fs::chown(dir.path(), Some(1000), None).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(src.scan().is_empty());
        assert!(
            src.dir_problem_reported
                .as_deref()
                .unwrap()
                .contains("uid 1000")
        );
        std::os::unix::fs::chown(dir.path(), Some(0), None).unwrap();
        assert_eq!(src.scan().len(), 1);
    }

    #[test]
    fn missing_directory_is_an_empty_set() {
        let mut src = FileSource::new("/nonexistent/ironlet-test".into(), "n".into());
        assert!(src.scan().is_empty());
    }
}
