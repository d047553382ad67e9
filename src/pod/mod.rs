//! Pods: where desired pods come from (`source`), how a pod's next actions are decided
//! (`lifecycle`, pure), who carries them out (`worker`, one task per pod), how the set of
//! workers follows the desired set (`manager`) and how the operator sees the result
//! (`status`). This module owns the desired state; observed state comes from the PLEG.

pub mod api_status;
pub mod cri_config;
pub mod dns;
pub mod executor;
pub mod labels;
pub mod lifecycle;
pub mod log_rotation;
pub mod manager;
pub mod manifest;
pub mod observed;
pub mod probes;
pub mod security;
pub mod source;
pub mod status;
pub mod worker;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

/// A pod's UID as the API server (or, for static pods, the manifest hash) assigns it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodUid(pub String);

impl fmt::Display for PodUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Namespace and name: what a pod is called, independent of its UID.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodFullName {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PodFullName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where a desired pod came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodSource {
    /// A static pod manifest file.
    File(PathBuf),
    /// The API server (a pod bound to this node).
    Api,
}

/// What the API server says about a pod beyond its spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiPodState {
    /// Set once the pod has a deletionTimestamp: the grace period to stop it with.
    pub deletion_grace: Option<std::time::Duration>,
    /// The API already records the pod as Succeeded or Failed: never start it again.
    pub terminal: bool,
    /// Why ironlet cannot run this pod (a feature it does not support), if it cannot.
    pub refused: Option<String>,
}

/// The merged desired state of all sources.
#[derive(Clone, Debug, Default)]
pub struct DesiredSet {
    pub pods: Vec<DesiredPod>,
    /// Every source has delivered its first complete set, so a pod the runtime has and no
    /// source wants is truly an orphan.
    pub sources_ready: bool,
}

/// One pod the node should run: a validated, defaulted v1 Pod plus its identity.
#[derive(Clone, Debug)]
pub struct DesiredPod {
    pub uid: PodUid,
    pub full_name: PodFullName,
    pub source: PodSource,
    pub pod: Arc<Pod>,
    /// `Some` for pods from the API server.
    pub api: Option<ApiPodState>,
}

impl DesiredPod {
    /// The pod spec. Validation guarantees it exists.
    pub fn spec(&self) -> &k8s_openapi::api::core::v1::PodSpec {
        static EMPTY: std::sync::OnceLock<k8s_openapi::api::core::v1::PodSpec> =
            std::sync::OnceLock::new();
        self.pod
            .spec
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }
}
