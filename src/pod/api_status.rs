//! The status manager of cluster mode: carries each pod's latest status to the API server,
//! keeps mirror pods for static pods, and finishes graceful deletions.
//!
//! - **Latest wins, nothing is lost.** Workers send every status change; this task keeps
//!   the latest per pod and a record of what the API last accepted. A pod is patched only
//!   when the two differ. A failed patch (outage, 5xx) leaves the pod dirty and it is
//!   retried every second, so after an outage the API converges on the current status.
//! - **Mirror pods.** For every static pod there is one mirror pod in the API: same name,
//!   annotations `kubernetes.io/config.mirror` (= the static pod's hash), an owner
//!   reference to the Node, and the static pod's status. A deleted mirror pod is recreated;
//!   a stale one (other hash) is replaced; one without a static pod is removed.
//! - **Graceful deletion.** When the worker of a pod the API is deleting has finished, the
//!   final status goes first, then a delete with grace 0 and a UID precondition (so a new
//!   pod of the same name is never touched).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use tokio::sync::{Notify, mpsc};

use super::PodUid;
use super::manifest::{ANNOTATION_CONFIG_HASH, ANNOTATION_CONFIG_SOURCE};
use super::source::api::{ANNOTATION_CONFIG_MIRROR, ApiPods, is_mirror};
use super::worker::StatusUpdate;

const RETRY_EVERY: Duration = Duration::from_secs(1);

pub struct ApiStatusManager {
    pub client: kube::Client,
    pub node_name: String,
    pub node_uid: String,
    pub api_pods: ApiPods,
    pub changed: Arc<Notify>,
}

#[derive(Default)]
struct State {
    /// The latest status of every pod with a worker, by UID.
    latest: BTreeMap<PodUid, Arc<Pod>>,
    /// What the API accepted last: (the API object's UID it went to, the status).
    sent: BTreeMap<PodUid, (String, PodStatus)>,
    /// API pods whose worker finished while the API is deleting them.
    finished: BTreeSet<PodUid>,
}

fn source_of(pod: &Pod) -> &str {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_CONFIG_SOURCE))
        .map_or("", String::as_str)
}

fn key(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

impl ApiStatusManager {
    fn pods(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// The API object a local pod's status goes to: the pod itself, or a static pod's
    /// mirror (found by name).
    fn target(&self, uid: &PodUid, pod: &Pod) -> Option<Arc<Pod>> {
        let api = self.api_pods.read().unwrap_or_else(|p| p.into_inner());
        if source_of(pod) == "file" {
            let want = key(pod);
            api.values()
                .find(|m| is_mirror(m) && key(m) == want && m.metadata.deletion_timestamp.is_none())
                .cloned()
        } else {
            api.get(&uid.0).cloned()
        }
    }

    pub async fn run(self, mut rx: mpsc::UnboundedReceiver<StatusUpdate>) {
        let mut st = State::default();
        let mut tick = tokio::time::interval(RETRY_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                upd = rx.recv() => {
                    let Some(u) = upd else { return };
                    self.apply(&mut st, u);
                    while let Ok(u) = rx.try_recv() {
                        self.apply(&mut st, u);
                    }
                }
                _ = tick.tick() => {}
                _ = self.changed.notified() => {}
            }
            self.sync_statuses(&mut st).await;
            self.finish_deletions(&mut st).await;
            self.reconcile_mirrors(&st).await;
        }
    }

    fn apply(&self, st: &mut State, u: StatusUpdate) {
        match u {
            StatusUpdate::Set(uid, pod) => {
                st.latest.insert(uid, pod);
            }
            StatusUpdate::Remove(uid) => {
                st.latest.remove(&uid);
                st.sent.remove(&uid);
                let api = self.api_pods.read().unwrap_or_else(|p| p.into_inner());
                if api
                    .get(&uid.0)
                    .is_some_and(|p| p.metadata.deletion_timestamp.is_some())
                {
                    st.finished.insert(uid);
                }
            }
        }
    }

    async fn sync_statuses(&self, st: &mut State) {
        let dirty: Vec<(PodUid, Arc<Pod>)> = st
            .latest
            .iter()
            .filter(|(uid, pod)| {
                let Some(status) = pod.status.as_ref() else {
                    return false;
                };
                match (self.target(uid, pod), st.sent.get(*uid)) {
                    (None, _) => false,
                    (Some(t), Some((to, sent))) => {
                        t.metadata.uid.as_deref() != Some(to.as_str()) || sent != status
                    }
                    (Some(_), None) => true,
                }
            })
            .map(|(u, p)| (u.clone(), p.clone()))
            .collect();
        for (uid, pod) in dirty {
            let Some(target) = self.target(&uid, &pod) else {
                continue;
            };
            let Some(target_uid) = target.metadata.uid.clone() else {
                continue;
            };
            let status = pod.status.clone().unwrap_or_default();
            let (ns, name) = key(&target);
            let patch = serde_json::json!({
                "metadata": { "uid": target_uid },
                "status": status,
            });
            match self
                .pods(&ns)
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => {
                    tracing::debug!(pod = %format!("{ns}/{name}"), "pod status sent");
                    st.sent.insert(uid, (target_uid, status));
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    // Gone from the API; the watch will tell the source.
                }
                Err(e) => {
                    tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "pod status update failed; will retry");
                    // Stop this round at the first transport failure: the API is likely down.
                    if !matches!(e, kube::Error::Api(_)) {
                        return;
                    }
                }
            }
        }
    }

    async fn finish_deletions(&self, st: &mut State) {
        let finished: Vec<PodUid> = st.finished.iter().cloned().collect();
        for uid in finished {
            let target = self
                .api_pods
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&uid.0)
                .cloned();
            let Some(target) = target else {
                st.finished.remove(&uid);
                continue;
            };
            let (ns, name) = key(&target);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.0.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match self.pods(&ns).delete(&name, &params).await {
                Ok(_) => {
                    tracing::info!(pod = %format!("{ns}/{name}"), pod_uid = %uid, "pod terminated and removed from the API");
                    st.finished.remove(&uid);
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                    st.finished.remove(&uid);
                }
                Err(e) => {
                    tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "final delete failed; will retry");
                    return;
                }
            }
        }
    }

    fn mirror_of(&self, static_pod: &Pod) -> Pod {
        let mut m = static_pod.clone();
        m.status = None;
        m.metadata.uid = None;
        m.metadata.resource_version = None;
        m.metadata.creation_timestamp = None;
        m.metadata.managed_fields = None;
        let hash = static_pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_CONFIG_HASH))
            .cloned()
            .unwrap_or_default();
        m.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ANNOTATION_CONFIG_MIRROR.into(), hash);
        m.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: self.node_name.clone(),
            uid: self.node_uid.clone(),
            controller: Some(true),
            ..Default::default()
        }]);
        m
    }

    async fn reconcile_mirrors(&self, st: &State) {
        let statics: BTreeMap<(String, String), &Arc<Pod>> = st
            .latest
            .values()
            .filter(|p| source_of(p) == "file")
            .map(|p| (key(p), p))
            .collect();
        let mirrors: Vec<Arc<Pod>> = self
            .api_pods
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|p| is_mirror(p))
            .cloned()
            .collect();
        let mirror_hash = |m: &Pod| {
            m.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_CONFIG_MIRROR))
                .cloned()
                .unwrap_or_default()
        };
        // Remove mirrors with no static pod or a stale hash, and finish deleting mirrors
        // someone deleted through the API (they are recreated below).
        for m in &mirrors {
            let wanted = m.metadata.deletion_timestamp.is_none()
                && statics.get(&key(m)).is_some_and(|s| {
                    s.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(ANNOTATION_CONFIG_HASH))
                        == Some(&mirror_hash(m))
                });
            if wanted {
                continue;
            }
            let (ns, name) = key(m);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: m.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match self.pods(&ns).delete(&name, &params).await {
                Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), "stale mirror pod deleted"),
                Err(e) => {
                    tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "mirror pod delete failed")
                }
            }
        }
        // Create missing mirrors.
        for ((ns, name), s) in &statics {
            let exists = mirrors.iter().any(|m| {
                key(m) == (ns.clone(), name.clone()) && m.metadata.deletion_timestamp.is_none()
            });
            if exists {
                continue;
            }
            let mirror = self.mirror_of(s);
            match self.pods(ns).create(&PostParams::default(), &mirror).await {
                Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), "mirror pod created"),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => {
                    tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "mirror pod create failed; will retry");
                    return;
                }
            }
        }
    }
}
