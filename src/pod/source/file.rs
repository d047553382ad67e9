//! The static pod source: one pod per manifest file in staticPodPath, watched with inotify
//! and rescanned every fileCheckFrequency (a missed inotify event costs at most a period).
//!
//! A broken manifest yields one error naming the file and the problem, logged once per
//! content, and contributes no pod; every other file is unaffected.

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
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_str().is_some_and(is_manifest_name))
            .map(|e| e.path())
            .filter(|p| p.is_file())
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

/// Reads a file, refusing anything larger than the manifest limit before reading it all.
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
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

    #[test]
    fn missing_directory_is_an_empty_set() {
        let mut src = FileSource::new("/nonexistent/ironlet-test".into(), "n".into());
        assert!(src.scan().is_empty());
    }
}
