//! The local view: what the running agent publishes about itself and its pods for the
//! operator's commands (`ironlet pods`, `ironlet logs`). Files under `<root-dir>/status/`,
//! written atomically (through [`crate::atomic_write`]) with mode 0600 in a 0700 directory: no socket, no listener, nothing
//! readable by other users (pod specs may carry sensitive values).

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::List;
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::atomic_write::write_atomic;
use crate::pleg::{PlegHealth, PlegReport};
use crate::pod::PodUid;
use crate::pod::worker::StatusUpdate;

pub const STATUS_DIR: &str = "status";
const PODS_FILE: &str = "pods.json";
const AGENT_FILE: &str = "agent.json";
/// How often the agent file is refreshed (its heartbeat).
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Pod status bursts are coalesced into one write per this interval.
const COALESCE: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("{path}: {cause} (is the agent running with this --root-dir?)")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: not a valid agent status file: {cause}")]
    Decode {
        path: PathBuf,
        cause: serde_json::Error,
    },
}

/// What the agent says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentState {
    pub pid: u32,
    pub version: String,
    pub node_name: String,
    pub pod_logs_dir: PathBuf,
    pub runtime: String,
    pub started_unix: f64,
    pub heartbeat_unix: f64,
    pub pleg: PlegReport,
}

pub fn status_dir(root: &Path) -> PathBuf {
    root.join(STATUS_DIR)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: PathBuf) -> Result<T, ViewError> {
    let bytes = std::fs::read(&path).map_err(|cause| ViewError::Read {
        path: path.clone(),
        cause,
    })?;
    serde_json::from_slice(&bytes).map_err(|cause| ViewError::Decode { path, cause })
}

pub fn read_pods(root: &Path) -> Result<List<Pod>, ViewError> {
    read_json(status_dir(root).join(PODS_FILE))
}

pub fn read_agent(root: &Path) -> Result<AgentState, ViewError> {
    read_json(status_dir(root).join(AGENT_FILE))
}

/// Static facts about the agent for its state file.
#[derive(Debug, Clone)]
pub struct AgentFacts {
    pub node_name: String,
    pub pod_logs_dir: PathBuf,
    pub runtime: String,
    pub started: Instant,
    pub started_unix: f64,
}

/// Owns the latest status of every pod and publishes the view. Ends when every worker
/// and the agent have dropped their senders.
pub async fn run_status_manager(
    root: PathBuf,
    mut rx: mpsc::UnboundedReceiver<StatusUpdate>,
    facts: AgentFacts,
    health: Arc<PlegHealth>,
    forward: Option<mpsc::UnboundedSender<StatusUpdate>>,
) {
    let dir = status_dir(&root);
    if let Err(e) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
    {
        tracing::error!(dir = %dir.display(), error = %e, "cannot create the status directory");
    }
    let mut pods: BTreeMap<PodUid, Arc<Pod>> = BTreeMap::new();
    let mut dirty = true;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            upd = rx.recv() => {
                match upd {
                    Some(u) => {
                        if let Some(f) = &forward {
                            let _ = f.send(u.clone());
                        }
                        apply(&mut pods, u)
                    }
                    None => {
                        write_pods(&dir, &pods).await;
                        return;
                    }
                }
                // Coalesce a burst of updates into one write.
                tokio::time::sleep(COALESCE).await;
                while let Ok(u) = rx.try_recv() {
                    if let Some(f) = &forward {
                        let _ = f.send(u.clone());
                    }
                    apply(&mut pods, u);
                }
                dirty = true;
            }
            _ = heartbeat.tick() => write_agent(&dir, &facts, &health).await,
        }
        if dirty {
            write_pods(&dir, &pods).await;
            dirty = false;
        }
    }
}

fn apply(pods: &mut BTreeMap<PodUid, Arc<Pod>>, u: StatusUpdate) {
    match u {
        StatusUpdate::Set(uid, pod) => {
            pods.insert(uid, pod);
        }
        StatusUpdate::Remove(uid) => {
            pods.remove(&uid);
        }
    }
}

async fn write_pods(dir: &Path, pods: &BTreeMap<PodUid, Arc<Pod>>) {
    let mut items: Vec<Pod> = pods.values().map(|p| (**p).clone()).collect();
    items.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let list = List::<Pod> {
        items,
        metadata: Default::default(),
    };
    match serde_json::to_vec(&list) {
        Ok(bytes) => publish(dir.join(PODS_FILE), bytes, "pod view").await,
        Err(e) => tracing::warn!(error = %e, "cannot encode the pod view"),
    }
}

pub async fn write_agent(dir: &Path, facts: &AgentFacts, health: &PlegHealth) {
    let state = AgentState {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        node_name: facts.node_name.clone(),
        pod_logs_dir: facts.pod_logs_dir.clone(),
        runtime: facts.runtime.clone(),
        started_unix: facts.started_unix,
        heartbeat_unix: unix_now(),
        pleg: health.report(facts.started),
    };
    match serde_json::to_vec_pretty(&state) {
        Ok(bytes) => publish(dir.join(AGENT_FILE), bytes, "agent state").await,
        Err(e) => tracing::warn!(error = %e, "cannot encode the agent state"),
    }
}

/// Replaces one view file on the blocking pool (the write is flushed to disk, which must
/// not stall the runtime's two workers) and logs a failure.
async fn publish(path: PathBuf, bytes: Vec<u8>, what: &'static str) {
    let written = tokio::task::spawn_blocking(move || write_atomic(&path, &bytes))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot write the {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_view_names_the_file() {
        let e = read_pods(Path::new("/nonexistent-root"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent-root/status/pods.json"), "{e}");
    }
}
