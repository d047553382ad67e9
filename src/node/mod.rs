//! The node's presence in the cluster: registration, the status loop and the lease.
//! Each runs as its own task over the shared API client and keeps going through API
//! outages (a failed request is retried on the next tick; nothing here touches pods).

pub mod host;
pub mod info;
pub mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use crate::apiclient::ApiClient;
use crate::cri::Cri;
use crate::pleg::PlegHealth;
use crate::resources::HardEviction;
use status::{Health, NodeFacts};

pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Back-off between registration attempts (upstream: 100 ms doubling to 7 s).
const REGISTER_BACKOFF_MAX: Duration = Duration::from_secs(7);

pub struct NodeAgent {
    pub api: ApiClient,
    pub facts: NodeFacts,
    pub eviction: HardEviction,
    pub update_frequency: Duration,
    pub report_frequency: Duration,
    pub lease_duration: Duration,
    pub cri: Cri,
    pub pleg: Arc<PlegHealth>,
    pub started: Instant,
    pub root_dir: std::path::PathBuf,
}

pub fn now() -> Time {
    Time(jiff::Timestamp::now())
}

impl NodeAgent {
    fn nodes(&self) -> Api<Node> {
        Api::all(self.api.client.clone())
    }

    /// Creates the Node, or adopts the existing one (refreshing the labels the agent owns).
    /// Retries until it succeeds; returns the Node's UID.
    pub async fn register(&self) -> String {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.try_register().await {
                Ok(uid) => {
                    tracing::info!(node = %self.facts.name, uid = %uid, "node registered");
                    return uid;
                }
                Err(e) => {
                    tracing::warn!(node = %self.facts.name, error = %e, retry_in = ?backoff, "node registration failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(REGISTER_BACKOFF_MAX);
                }
            }
        }
    }

    async fn try_register(&self) -> Result<String, kube::Error> {
        let conditions = self.conditions(&[]).await;
        let node = status::node_object(&self.facts, conditions);
        match self.nodes().create(&PostParams::default(), &node).await {
            Ok(created) => Ok(created.metadata.uid.unwrap_or_default()),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // An existing Node: keep what others set, refresh our labels.
                let patch = serde_json::json!({"metadata": {"labels": node.metadata.labels}});
                let existing = self
                    .nodes()
                    .patch(
                        &self.facts.name,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                Ok(existing.metadata.uid.unwrap_or_default())
            }
            Err(e) => Err(e),
        }
    }

    /// What stops the node being ready, in upstream's words.
    async fn health(&self) -> Health {
        let mut problems = Vec::new();
        match self.cri.status().await {
            Ok(resp) => {
                let conds = resp.status.map(|s| s.conditions).unwrap_or_default();
                for (ty, words) in [
                    ("RuntimeReady", "container runtime not ready"),
                    ("NetworkReady", "container runtime network not ready"),
                ] {
                    match conds.iter().find(|c| c.r#type == ty) {
                        Some(c) if c.status => {}
                        Some(c) => problems.push(format!(
                            "{words}: {ty}=false reason:{} message:{}",
                            c.reason, c.message
                        )),
                        None => problems.push(format!("{words}: {ty} not reported")),
                    }
                }
            }
            Err(e) => problems.push(format!("container runtime is down: {e}")),
        }
        if !self.pleg.healthy(self.started) {
            problems.push("PLEG is not healthy: no relist in the last 3m0s".into());
        }
        Health { problems }
    }

    async fn conditions(&self, previous: &[NodeCondition]) -> Vec<NodeCondition> {
        let health = self.health().await;
        let signals = info::signals(&self.root_dir);
        status::conditions(&health, &signals, &self.eviction, &now(), previous)
    }

    /// Recomputes the status every update frequency and sends it when it changed or the
    /// report frequency has passed. A failed send is retried on the next tick.
    pub async fn run_status(self: Arc<Self>) {
        let mut last_sent: Option<(NodeStatus, Instant)> = None;
        let mut tick = tokio::time::interval(self.update_frequency);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let previous = last_sent
                .as_ref()
                .and_then(|(s, _)| s.conditions.clone())
                .unwrap_or_default();
            let status = status::node_status(&self.facts, self.conditions(&previous).await);
            let due = match &last_sent {
                None => true,
                Some((sent, at)) => {
                    status::without_heartbeats(sent) != status::without_heartbeats(&status)
                        || at.elapsed() >= self.report_frequency
                }
            };
            if !due {
                continue;
            }
            let patch = serde_json::json!({ "status": status });
            match self
                .nodes()
                .patch_status(
                    &self.facts.name,
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await
            {
                Ok(_) => {
                    tracing::debug!(node = %self.facts.name, "node status sent");
                    last_sent = Some((status, Instant::now()));
                }
                Err(e) => {
                    tracing::warn!(node = %self.facts.name, error = %e, "node status update failed; retrying next tick");
                }
            }
        }
    }

    /// Keeps the node's Lease renewed every quarter of its duration. Updates use the
    /// last-known object; a conflict or a missing lease leads to a fresh get-or-create.
    pub async fn run_lease(self: Arc<Self>, node_uid: String) {
        let leases: Api<Lease> = Api::namespaced(self.api.client.clone(), LEASE_NAMESPACE);
        let interval = self.lease_duration / 4;
        let mut current: Option<Lease> = None;
        loop {
            let result = match current.take() {
                Some(mut lease) => {
                    if let Some(spec) = lease.spec.as_mut() {
                        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
                    }
                    leases
                        .replace(&self.facts.name, &PostParams::default(), &lease)
                        .await
                }
                None => self.get_or_create_lease(&leases, &node_uid).await,
            };
            match result {
                Ok(l) => current = Some(l),
                Err(e) => {
                    tracing::warn!(node = %self.facts.name, error = %e, "lease renewal failed");
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    async fn get_or_create_lease(
        &self,
        leases: &Api<Lease>,
        node_uid: &str,
    ) -> Result<Lease, kube::Error> {
        if let Some(mut l) = leases.get_opt(&self.facts.name).await? {
            let spec = l.spec.get_or_insert_with(Default::default);
            spec.holder_identity = Some(self.facts.name.clone());
            spec.lease_duration_seconds = Some(self.lease_duration.as_secs() as i32);
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
            return leases
                .replace(&self.facts.name, &PostParams::default(), &l)
                .await;
        }
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.facts.name.clone()),
                namespace: Some(LEASE_NAMESPACE.into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: self.facts.name.clone(),
                    uid: node_uid.to_owned(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.facts.name.clone()),
                lease_duration_seconds: Some(self.lease_duration.as_secs() as i32),
                renew_time: Some(MicroTime(jiff::Timestamp::now())),
                ..Default::default()
            }),
        };
        leases.create(&PostParams::default(), &lease).await
    }
}
