//! What the runtime says a pod has: its sandboxes and containers as of one PLEG relist.
//! Plain data built by the PLEG from CRI answers; read by the lifecycle step and the
//! status computation. Nothing here talks to the runtime.

use std::collections::BTreeMap;

use super::labels;
use crate::cri::{ContainerId, SandboxId, api};

/// A sandbox's state as the CRI reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxState {
    Ready,
    NotReady,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedSandbox {
    pub id: SandboxId,
    pub attempt: u32,
    pub state: SandboxState,
    /// Unix nanoseconds.
    pub created_at: i64,
    /// The pod IP, when the sandbox is ready and has a network.
    pub ip: Option<String>,
    pub additional_ips: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

impl ContainerState {
    pub fn from_cri(state: i32) -> Self {
        match api::ContainerState::try_from(state) {
            Ok(api::ContainerState::ContainerCreated) => ContainerState::Created,
            Ok(api::ContainerState::ContainerRunning) => ContainerState::Running,
            Ok(api::ContainerState::ContainerExited) => ContainerState::Exited,
            _ => ContainerState::Unknown,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedContainer {
    pub id: ContainerId,
    pub sandbox_id: SandboxId,
    pub name: String,
    /// The CRI attempt number: ironlet's restart count for this container.
    pub attempt: u32,
    pub state: ContainerState,
    /// Unix nanoseconds; 0 when not (yet) known.
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub image: String,
    pub image_ref: String,
    /// The spec hash recorded when ironlet created it (None if created by someone else).
    pub hash: Option<String>,
    /// The pod's terminationGracePeriodSeconds recorded at creation (for orphans).
    pub grace_seconds: Option<i64>,
    /// Absolute path of the container's log file.
    pub log_path: String,
}

impl ObservedContainer {
    pub fn from_cri(sandbox_id: &str, s: &api::ContainerStatus) -> Self {
        let meta = s.metadata.clone().unwrap_or_default();
        ObservedContainer {
            id: ContainerId::new(s.id.clone()),
            sandbox_id: SandboxId::new(sandbox_id),
            name: meta.name,
            attempt: meta.attempt,
            state: ContainerState::from_cri(s.state),
            created_at: s.created_at,
            started_at: s.started_at,
            finished_at: s.finished_at,
            exit_code: s.exit_code,
            reason: s.reason.clone(),
            message: s.message.clone(),
            image: s
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            image_ref: s.image_ref.clone(),
            hash: s.annotations.get(labels::CONTAINER_HASH).cloned(),
            grace_seconds: s
                .annotations
                .get(labels::POD_TERMINATION_GRACE_PERIOD)
                .and_then(|g| g.parse().ok()),
            log_path: s.log_path.clone(),
        }
    }
}

/// Everything the runtime has for one pod UID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedPod {
    pub name: String,
    pub namespace: String,
    /// Newest first.
    pub sandboxes: Vec<ObservedSandbox>,
    /// Newest first (by creation time).
    pub containers: Vec<ObservedContainer>,
    /// Sandbox annotations of the newest sandbox (the pod's annotations when created).
    pub annotations: BTreeMap<String, String>,
}

impl ObservedPod {
    /// The newest sandbox, if any.
    pub fn latest_sandbox(&self) -> Option<&ObservedSandbox> {
        self.sandboxes.first()
    }

    /// The newest container of this name, if any.
    pub fn latest_container(&self, name: &str) -> Option<&ObservedContainer> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The instance before the newest one of this name (for lastState).
    pub fn previous_container(&self, name: &str) -> Option<&ObservedContainer> {
        self.containers.iter().filter(|c| c.name == name).nth(1)
    }

    pub fn running_containers(&self) -> impl Iterator<Item = &ObservedContainer> {
        self.containers
            .iter()
            .filter(|c| matches!(c.state, ContainerState::Running | ContainerState::Unknown))
    }

    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.containers.is_empty()
    }
}
