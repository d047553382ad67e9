//! Keeps exactly one worker per pod: starts workers for new desired pods, tells workers of
//! pods no longer desired to terminate, forwards PLEG events, and terminates pods the
//! runtime has that nobody wants (found at start, or left by a crash).
//!
//! A new version of a static pod (same name, new UID) starts only after the old version
//! has fully terminated, as upstream does, so two never run at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::worker::{self, WorkerContext, WorkerHandle, WorkerMsg};
use super::{DesiredPod, DesiredSet, PodFullName, PodUid};
use crate::cri::{Cri, Runtime};
use crate::pleg::PlegEvent;
use crate::resources::{Allocatable, PodResources, Rejection, admit};

struct Entry {
    handle: WorkerHandle,
    full_name: Option<PodFullName>,
    terminating: bool,
    /// What the pod requests, while it counts against allocatable (admitted, not ending).
    admitted: Option<PodResources>,
}

pub struct Manager<R = Cri> {
    ctx: Arc<WorkerContext<R>>,
    /// What pods may request in total; None when the node could not be measured (then only
    /// the pod count is not checked either, and the agent said so at start).
    allocatable: Option<Allocatable>,
    workers: HashMap<PodUid, Entry>,
    finished_tx: mpsc::UnboundedSender<PodUid>,
    finished_rx: mpsc::UnboundedReceiver<PodUid>,
    /// Every source has reported once and the orphan sweep has run.
    swept: bool,
}

impl<R: Runtime> Manager<R> {
    pub fn new(ctx: Arc<WorkerContext<R>>, allocatable: Option<Allocatable>) -> Self {
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        Manager {
            ctx,
            allocatable,
            workers: HashMap::new(),
            finished_tx,
            finished_rx,
            swept: false,
        }
    }

    /// Runs until the desired-state channel closes. Orphans are judged only after every
    /// source has sent its first set and the first relist is in, so a restart adopts rather
    /// than kills.
    pub async fn run(
        mut self,
        mut desired: mpsc::Receiver<DesiredSet>,
        mut events: mpsc::Receiver<PlegEvent>,
        mut probe_updates: mpsc::UnboundedReceiver<crate::probe::ProbeUpdate>,
    ) {
        let Some(first) = desired.recv().await else {
            return;
        };
        let mut snapshots = self.ctx.snapshots.clone();
        if snapshots.wait_for(|s| s.generation > 0).await.is_err() {
            return;
        }
        self.take(first);
        loop {
            tokio::select! {
                set = desired.recv() => match set {
                    Some(set) => self.take(set),
                    None => return,
                },
                Some(ev) = events.recv() => self.on_event(ev),
                Some(u) = probe_updates.recv() => {
                    if let Some(e) = self.workers.get(&PodUid(u.key.pod_uid.clone())) {
                        let _ = e.handle.tx.send(WorkerMsg::Probe(u));
                    }
                }
                Some(uid) = self.finished_rx.recv() => {
                    self.workers.remove(&uid);
                }
            }
        }
    }

    /// Sweeps orphans the first time all sources are ready, then follows the set.
    fn take(&mut self, set: DesiredSet) {
        if set.sources_ready && !self.swept {
            let wanted: HashSet<PodUid> = set.pods.iter().map(|d| d.uid.clone()).collect();
            self.sweep_orphans(&wanted);
            self.swept = true;
        }
        self.apply(set.pods);
    }

    /// Makes the workers follow a complete desired set.
    fn apply(&mut self, set: Vec<DesiredPod>) {
        let wanted: HashSet<PodUid> = set.iter().map(|d| d.uid.clone()).collect();
        for (uid, entry) in &mut self.workers {
            if !wanted.contains(uid) && !entry.terminating {
                entry.terminating = true;
                entry.admitted = None;
                let _ = entry.handle.tx.send(WorkerMsg::Terminate(None));
            }
        }
        for d in set {
            let deletion = d.api.as_ref().and_then(|a| a.deletion_grace);
            if let Some(entry) = self.workers.get_mut(&d.uid) {
                if entry.terminating {
                    continue;
                }
                if let Some(grace) = deletion {
                    // Graceful deletion through the API: stop within the pod's grace.
                    tracing::info!(pod = %d.full_name, pod_uid = %d.uid, grace = ?grace, "pod deleted in the API; terminating");
                    entry.terminating = true;
                    entry.admitted = None;
                    let _ = entry.handle.tx.send(WorkerMsg::Terminate(Some(grace)));
                } else {
                    let _ = entry.handle.tx.send(WorkerMsg::Update(d));
                }
                continue;
            }
            let terminal = d.api.as_ref().is_some_and(|a| a.terminal);
            if deletion.is_some() || terminal {
                // Nothing runs for it here: tell the status manager it is fully stopped,
                // so a deleted pod's API object can be removed.
                if deletion.is_some() {
                    let _ = self
                        .ctx
                        .status
                        .send(super::worker::StatusUpdate::Remove(d.uid.clone()));
                }
                continue;
            }
            let after: Vec<_> = self
                .workers
                .values()
                .filter(|e| e.full_name.as_ref() == Some(&d.full_name))
                .map(|e| e.handle.done.clone())
                .collect();
            let uid = d.uid.clone();
            let full_name = d.full_name.clone();
            let (admitted, rejected) = match self.admit(&d) {
                Ok(r) => (Some(r), None),
                Err(rej) => {
                    tracing::warn!(pod = %full_name, pod_uid = %uid, reason = rej.reason, message = %rej.message, "pod rejected at admission");
                    (None, Some(rej))
                }
            };
            tracing::info!(pod = %full_name, pod_uid = %uid, waits_for = after.len(), "adding pod");
            let handle = worker::spawn(
                Arc::clone(&self.ctx),
                uid.clone(),
                Some(d),
                after,
                self.finished_tx.clone(),
                rejected,
            );
            self.workers.insert(
                uid,
                Entry {
                    handle,
                    full_name: Some(full_name),
                    terminating: false,
                    admitted,
                },
            );
        }
    }

    /// Upstream's resource admission: the pod must fit beside the pods already admitted.
    fn admit(&self, d: &DesiredPod) -> Result<PodResources, Rejection> {
        if let Some(why) = d.api.as_ref().and_then(|a| a.refused.clone()) {
            return Err(Rejection {
                reason: "UnsupportedPodSpec",
                message: why,
            });
        }
        // Security before resources: a pod the node must refuse never counts against them.
        super::security::admit(
            &d.pod,
            super::security::policy::Source::of(&d.source),
            &self.ctx.node.security,
        )?;
        let resources = PodResources::from_spec(d.spec(), true).map_err(|e| Rejection {
            reason: "UnexpectedAdmissionError",
            message: e.to_string(),
        })?;
        if let Some(alloc) = &self.allocatable {
            let running = self.workers.values().filter_map(|e| e.admitted.as_ref());
            admit(&resources, running, alloc)?;
        }
        Ok(resources)
    }

    fn on_event(&mut self, ev: PlegEvent) {
        if let Some(entry) = self.workers.get(&ev.uid) {
            let _ = entry.handle.tx.send(WorkerMsg::Wake);
            return;
        }
        if !self.swept {
            return;
        }
        let has_state = self
            .ctx
            .snapshots
            .borrow()
            .pods
            .get(&ev.uid)
            .is_some_and(|p| !p.is_empty());
        if has_state {
            self.spawn_orphan(ev.uid);
        }
    }

    /// Pods the runtime has that are neither wanted nor already handled.
    fn sweep_orphans(&mut self, wanted: &HashSet<PodUid>) {
        let orphans: Vec<PodUid> = self
            .ctx
            .snapshots
            .borrow()
            .pods
            .iter()
            .filter(|(uid, p)| {
                !p.is_empty() && !wanted.contains(*uid) && !self.workers.contains_key(*uid)
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in orphans {
            self.spawn_orphan(uid);
        }
        // Pod directories nobody knows any more (no source, no runtime state): their
        // subPath binds and tmpfs volumes are unmounted and the directories removed.
        let mut keep: HashSet<String> = wanted.iter().map(|u| u.0.clone()).collect();
        keep.extend(self.workers.keys().map(|u| u.0.clone()));
        keep.extend(self.ctx.snapshots.borrow().pods.keys().map(|u| u.0.clone()));
        let (pods_dir, helper) = (self.ctx.node.pods_dir.clone(), self.ctx.helper.clone());
        tokio::task::spawn_blocking(move || {
            for (uid, e) in
                crate::volume::remove_orphaned_pod_dirs(&pods_dir, &keep, helper.as_deref())
            {
                tracing::warn!(pod_uid = %uid, error = %e, "cannot remove an orphaned pod directory");
            }
        });
    }

    /// Terminates a pod nobody wants. It keeps its name so a wanted pod of the same name
    /// waits for it to be gone.
    fn spawn_orphan(&mut self, uid: PodUid) {
        let full_name = self
            .ctx
            .snapshots
            .borrow()
            .pods
            .get(&uid)
            .map(|p| PodFullName {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
            });
        tracing::info!(pod_uid = %uid, "runtime has a pod no source wants: terminating it");
        let handle = worker::spawn(
            Arc::clone(&self.ctx),
            uid.clone(),
            None,
            Vec::new(),
            self.finished_tx.clone(),
            None,
        );
        self.workers.insert(
            uid,
            Entry {
                handle,
                full_name,
                terminating: true,
                admitted: None,
            },
        );
    }
}
