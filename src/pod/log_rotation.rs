//! Container log rotation (containerLogMaxSize, containerLogMaxFiles), as upstream's
//! container log manager does it: every 10 s, a running container whose log has grown past
//! the limit has its file renamed to `<log>.<YYYYMMDD-hhmmss>`, the runtime is asked to
//! reopen the log (ReopenContainerLog), and the oldest rotated files beyond the limit are
//! deleted. Deliberate difference: rotated files are not gzip-compressed (no compression
//! code reachable from container output).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::observed::ContainerState;
use crate::cri::Cri;
use crate::pleg::Snapshot;

/// Upstream's monitor interval.
pub const PERIOD: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    pub max_size: u64,
    /// Files kept per container, the live one included (upstream requires at least 2).
    pub max_files: usize,
}

/// Rotated siblings of `log`, oldest first (their suffix is a sortable timestamp).
pub fn rotated_files(log: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix) && !n.ends_with(".tmp"))
        })
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// The rotated files to delete so that at most `max_files - 1` remain besides the live log.
pub fn excess(rotated: &[PathBuf], max_files: usize) -> &[PathBuf] {
    let keep = max_files.saturating_sub(1);
    &rotated[..rotated.len().saturating_sub(keep)]
}

fn stamp() -> String {
    jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .strftime("%Y%m%d-%H%M%S")
        .to_string()
}

/// Rotates one container's log if needed. Returns true when it rotated.
pub async fn rotate_one(cri: &Cri, container_id: &str, log: &Path, policy: RotationPolicy) -> bool {
    let size = match tokio::fs::metadata(log).await {
        Ok(m) => m.len(),
        Err(_) => return false,
    };
    if size <= policy.max_size {
        return false;
    }
    let mut target = log.with_file_name(format!(
        "{}.{}",
        log.file_name().and_then(|n| n.to_str()).unwrap_or("log"),
        stamp()
    ));
    // Two rotations within one second get distinct names.
    let mut n = 1;
    while target.exists() {
        target = target.with_extension(format!("{}", n));
        n += 1;
    }
    if let Err(e) = tokio::fs::rename(log, &target).await {
        tracing::warn!(log = %log.display(), error = %e, "log rotation: rename");
        return false;
    }
    if let Err(e) = cri.reopen_container_log(container_id).await {
        // Put it back so the runtime keeps writing where we expect.
        tracing::warn!(container = %container_id, error = %e, "log rotation: reopen failed");
        let _ = tokio::fs::rename(&target, log).await;
        return false;
    }
    for old in excess(&rotated_files(log), policy.max_files) {
        if let Err(e) = tokio::fs::remove_file(old).await {
            tracing::warn!(file = %old.display(), error = %e, "log rotation: remove");
        }
    }
    true
}

/// Watches every running container's log, forever.
pub async fn run(cri: Cri, snapshots: watch::Receiver<Arc<Snapshot>>, policy: RotationPolicy) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let snapshot = Arc::clone(&snapshots.borrow());
        for pod in snapshot.pods.values() {
            for c in pod
                .containers
                .iter()
                .filter(|c| c.state == ContainerState::Running)
            {
                if !c.log_path.is_empty() {
                    rotate_one(&cri, &c.id, Path::new(&c.log_path), policy).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        std::fs::write(&log, "live").unwrap();
        for s in ["20260101-000003", "20260101-000001", "20260101-000002"] {
            std::fs::write(dir.path().join(format!("0.log.{s}")), s).unwrap();
        }
        std::fs::write(dir.path().join("1.log.20260101-000000"), "other container").unwrap();
        let rotated = rotated_files(&log);
        assert_eq!(rotated.len(), 3);
        assert!(rotated[0].ends_with("0.log.20260101-000001"));
        let gone = excess(&rotated, 3);
        assert_eq!(gone.len(), 1);
        assert!(gone[0].ends_with("0.log.20260101-000001"));
        assert!(excess(&rotated, 10).is_empty());
    }
}
