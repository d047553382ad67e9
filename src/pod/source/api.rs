//! Pods the scheduler bound to this node, from a list+watch on the API server with
//! `fieldSelector=spec.nodeName=<node>`. kube-runtime's watcher does the protocol work:
//! resuming from the last resourceVersion, and relisting on 410 Gone or a broken watch.
//! This module keeps the current set (keyed by UID, so a relist never duplicates a pod),
//! publishes it as a complete set, and shares it with the status manager.
//!
//! Mirror pods (the API's copies of static pods) are never run. Pods that ironlet cannot
//! run are still delivered, marked `refused`, so they are reported instead of ignored.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;

use crate::pod::manifest::ANNOTATION_CONFIG_SOURCE;
use crate::pod::{ApiPodState, DesiredPod, PodFullName, PodSource, PodUid};

/// Annotation that marks a mirror pod; its value is the static pod's hash (UID).
pub const ANNOTATION_CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// The API pods bound to this node as last seen, by UID. Shared read-only with the
/// status manager (it needs names, UIDs and deletion state of API and mirror pods).
pub type ApiPods = Arc<RwLock<BTreeMap<String, Arc<Pod>>>>;

pub struct ApiSource {
    pub client: kube::Client,
    pub node_name: String,
    pub pods: ApiPods,
    /// Woken on every change, for the mirror pod reconciler.
    pub changed: Arc<tokio::sync::Notify>,
}

pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_CONFIG_MIRROR))
}

/// Turns an API pod into the desired pod workers run, or None when it is not ours to run.
pub fn desired(pod: &Arc<Pod>) -> Option<DesiredPod> {
    if is_mirror(pod) {
        return None;
    }
    let uid = pod.metadata.uid.clone()?;
    let name = pod.metadata.name.clone()?;
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let refused = match crate::pod::manifest::validate(pod) {
        Err(e) => Some(e.to_string()),
        Ok(()) => pod
            .spec
            .as_ref()
            .and_then(|s| crate::volume::check_supported(s).err())
            .map(|e| e.to_string()),
    };
    let deletion_grace = pod.metadata.deletion_timestamp.as_ref().map(|_| {
        let secs = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    });
    let terminal = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    // The source is the agent's fact, never the pod's claim: an API pod annotated
    // `kubernetes.io/config.source: file` would otherwise pass for a static pod (its status
    // never reported, a mirror pod attempted in its name).
    let mut with_source = (**pod).clone();
    with_source
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ANNOTATION_CONFIG_SOURCE.into(), "api".into());
    Some(DesiredPod {
        uid: PodUid(uid),
        full_name: PodFullName { namespace, name },
        source: PodSource::Api,
        pod: Arc::new(with_source),
        api: Some(ApiPodState {
            deletion_grace,
            terminal,
            refused,
        }),
    })
}

impl ApiSource {
    fn publish_set(&self) -> Vec<DesiredPod> {
        let pods = self.pods.read().unwrap_or_else(|p| p.into_inner());
        pods.values().filter_map(desired).collect()
    }

    /// Runs until `tx` closes. The first set is sent after the first complete list.
    pub async fn run(self, tx: mpsc::Sender<Vec<DesiredPod>>) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let cfg = watcher::Config::default()
            .fields(&format!("spec.nodeName={}", self.node_name))
            .timeout(290);
        let mut stream = std::pin::pin!(watcher::watcher(api, cfg).default_backoff());
        let mut initial: Option<BTreeMap<String, Arc<Pod>>> = None;
        let mut failing = false;
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                _ = tx.closed() => return,
            };
            let Some(item) = item else { return };
            let event = match item {
                Ok(ev) => {
                    if failing {
                        tracing::info!("pod watch on the API server recovered");
                        failing = false;
                    }
                    ev
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "pod watch on the API server failed; running pods continue, retrying");
                        failing = true;
                    }
                    continue;
                }
            };
            let publish = {
                let mut pods = self.pods.write().unwrap_or_else(|p| p.into_inner());
                match event {
                    watcher::Event::Init => {
                        initial = Some(BTreeMap::new());
                        false
                    }
                    watcher::Event::InitApply(p) => {
                        if let (Some(m), Some(uid)) = (initial.as_mut(), p.metadata.uid.clone()) {
                            m.insert(uid, Arc::new(p));
                        }
                        false
                    }
                    watcher::Event::InitDone => {
                        *pods = initial.take().unwrap_or_default();
                        true
                    }
                    watcher::Event::Apply(p) => {
                        if let Some(uid) = p.metadata.uid.clone() {
                            pods.insert(uid, Arc::new(p));
                        }
                        true
                    }
                    watcher::Event::Delete(p) => {
                        if let Some(uid) = &p.metadata.uid {
                            pods.remove(uid);
                        }
                        true
                    }
                }
            };
            if publish {
                self.changed.notify_one();
                if tx.send(self.publish_set()).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Arc<Pod> {
        Arc::new(serde_saphyr::from_str(yaml).unwrap())
    }

    const BASE: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: ns, uid: u1}\nspec:\n  nodeName: n1\n  restartPolicy: Always\n  dnsPolicy: ClusterFirst\n  containers:\n  - {name: c, image: busybox:1, imagePullPolicy: IfNotPresent}\n";

    #[test]
    fn api_pods_become_desired_pods() {
        let d = desired(&pod(BASE)).unwrap();
        assert_eq!(d.uid.0, "u1");
        assert_eq!(d.full_name.to_string(), "ns/web");
        assert_eq!(d.source, PodSource::Api);
        assert_eq!(d.api, Some(ApiPodState::default()));
        let ann = d.pod.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann[ANNOTATION_CONFIG_SOURCE], "api");
    }

    #[test]
    fn an_api_pod_cannot_claim_another_source() {
        for claim in ["file", "http", "", "api"] {
            let claimed = BASE.replace(
                "uid: u1}",
                &format!("uid: u1, annotations: {{kubernetes.io/config.source: '{claim}'}}}}"),
            );
            let d = desired(&pod(&claimed)).unwrap();
            assert_eq!(d.source, PodSource::Api);
            let ann = d.pod.metadata.annotations.as_ref().unwrap();
            assert_eq!(ann[ANNOTATION_CONFIG_SOURCE], "api", "{claim}");
        }
    }

    #[test]
    fn mirror_pods_are_not_run_and_unsupported_pods_are_refused() {
        let mirror = BASE.replace(
            "uid: u1}",
            "uid: u1, annotations: {kubernetes.io/config.mirror: abc}}",
        );
        assert!(desired(&pod(&mirror)).is_none());
        let nfs = format!("{BASE}  volumes:\n  - name: data\n    nfs: {{server: x, path: /}}\n");
        let d = desired(&pod(&nfs)).unwrap();
        let refused = d.api.unwrap().refused.unwrap();
        assert!(
            refused.contains("nfs volumes are not supported"),
            "{refused}"
        );
        let sidecar = BASE.replace(
            "  containers:\n",
            "  initContainers:\n  - {name: s, image: b:1, imagePullPolicy: IfNotPresent, restartPolicy: Always}\n  containers:\n",
        );
        assert!(
            desired(&pod(&sidecar))
                .unwrap()
                .api
                .unwrap()
                .refused
                .is_some()
        );
    }

    #[test]
    fn names_that_would_become_host_paths_are_checked_as_for_static_pods() {
        let refused = |yaml: &str| desired(&pod(yaml)).unwrap().api.unwrap().refused;
        let vol = format!("{BASE}  volumes:\n  - name: ../../x\n    emptyDir: {{}}\n");
        let why = refused(&vol).unwrap();
        assert!(
            why.contains("spec.volumes[0].name: \"../../x\" is not a DNS-1123 label"),
            "{why}"
        );
        let uid = BASE.replace("uid: u1}", "uid: ../../etc}");
        assert!(refused(&uid).unwrap().contains("metadata.uid"));
        let ns = BASE.replace("namespace: ns", "namespace: ../ns");
        assert!(refused(&ns).unwrap().contains("metadata.namespace"));
        let sub = BASE.replace(
            "imagePullPolicy: IfNotPresent}",
            "imagePullPolicy: IfNotPresent, volumeMounts: [{name: d, mountPath: /d, subPath: /etc}]}",
        ) + "  volumes:\n  - name: d\n    emptyDir: {}\n";
        let why = refused(&sub).unwrap();
        assert!(
            why.contains("spec.containers[0].volumeMounts[0].subPath"),
            "{why}"
        );
        assert!(refused(BASE).is_none());
    }

    #[test]
    fn deletion_and_terminal_phase_are_carried() {
        let deleting = BASE.replace(
            "uid: u1}",
            "uid: u1, deletionTimestamp: '2026-11-22T10:00:00Z', deletionGracePeriodSeconds: 7}",
        );
        let d = desired(&pod(&deleting)).unwrap();
        assert_eq!(d.api.unwrap().deletion_grace, Some(Duration::from_secs(7)));
        let done = format!("{BASE}status: {{phase: Succeeded}}\n");
        assert!(desired(&pod(&done)).unwrap().api.unwrap().terminal);
    }
}
