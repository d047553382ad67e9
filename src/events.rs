//! Kubernetes Events about pods (Pulled, Created, Started, Killing, BackOff, Unhealthy,
//! FailedCreatePodSandBox, ...), as upstream's recorder sends them.
//!
//! Recording never blocks a worker: events go through a bounded queue and are dropped
//! (counted, logged once) when it is full. A sender task spends tokens from an
//! eventRecordQPS / eventBurst bucket, and aggregates repeats: the same reason and message
//! about the same object within ten minutes bumps `count` and `lastTimestamp` of the
//! existing Event instead of creating another. In standalone mode there is no API server;
//! the recorder is disabled and the agent's log carries the same facts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use tokio::sync::mpsc;

use crate::apiclient::TokenBucket;

/// Queue length before events are dropped.
const QUEUE: usize = 1000;
/// Repeats within this window are aggregated into one Event (upstream: 10 minutes).
const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);
/// Aggregation keys kept; the oldest are forgotten beyond this.
const MAX_KEYS: usize = 4096;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

#[derive(Debug, Clone)]
pub struct Record {
    pub object: ObjectReference,
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// Cheap to clone; a disabled recorder drops everything.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    tx: Option<mpsc::Sender<Record>>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    pub fn disabled() -> Self {
        Recorder::default()
    }

    /// Records an event about a pod.
    pub fn pod(&self, pod: &Pod, type_: &'static str, reason: &'static str, message: String) {
        let Some(tx) = &self.tx else { return };
        let object = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        };
        let record = Record {
            object,
            type_,
            reason,
            message,
        };
        if tx.try_send(record).is_err() && self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!("event queue full: events are being dropped");
        }
    }

    /// Records an event about this node (e.g. certificate rotation).
    pub fn node(
        &self,
        node_name: &str,
        type_: &'static str,
        reason: &'static str,
        message: String,
    ) {
        let Some(tx) = &self.tx else { return };
        let object = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node_name.to_owned()),
            uid: Some(node_name.to_owned()),
            ..Default::default()
        };
        let record = Record {
            object,
            type_,
            reason,
            message,
        };
        if tx.try_send(record).is_err() && self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!("event queue full: events are being dropped");
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

struct Seen {
    name: String,
    namespace: String,
    count: i32,
    at: Instant,
}

/// Starts the sender; returns the recorder workers use.
pub fn start(
    client: kube::Client,
    node_name: String,
    qps: f64,
    burst: u32,
) -> (Recorder, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(run(client, node_name, TokenBucket::new(qps, burst), rx));
    (
        Recorder {
            tx: Some(tx),
            dropped: Arc::default(),
        },
        task,
    )
}

type Key = (String, &'static str, String);

async fn run(
    client: kube::Client,
    node_name: String,
    bucket: TokenBucket,
    mut rx: mpsc::Receiver<Record>,
) {
    let mut seen: HashMap<Key, Seen> = HashMap::new();
    let mut serial: u64 = 0;
    while let Some(r) = rx.recv().await {
        bucket.acquire().await;
        let namespace = r
            .object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        let now = Time(jiff::Timestamp::now());
        let key: Key = (
            r.object.uid.clone().unwrap_or_default(),
            r.reason,
            r.message.clone(),
        );
        if let Some(s) = seen.get_mut(&key)
            && s.at.elapsed() < AGGREGATE_WINDOW
        {
            let patch = serde_json::json!({
                "count": s.count + 1,
                "lastTimestamp": now,
            });
            let events: Api<Event> = Api::namespaced(client.clone(), &s.namespace);
            match events
                .patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    s.count += 1;
                    s.at = Instant::now();
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "event aggregation patch failed; creating a new event");
                }
            }
        }
        serial += 1;
        let name = format!(
            "{}.{:x}{:04x}",
            r.object.name.clone().unwrap_or_default(),
            now.0.as_nanosecond(),
            serial & 0xffff
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: r.object.clone(),
            reason: Some(r.reason.into()),
            message: Some(r.message.clone()),
            type_: Some(r.type_.into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now.clone()),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(node_name.clone()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(node_name.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if seen.len() >= MAX_KEYS
                    && let Some(oldest) = seen
                        .iter()
                        .min_by_key(|(_, s)| s.at)
                        .map(|(k, _)| k.clone())
                {
                    seen.remove(&oldest);
                }
                seen.insert(
                    key,
                    Seen {
                        name,
                        namespace,
                        count: 1,
                        at: Instant::now(),
                    },
                );
            }
            Err(e) => tracing::debug!(error = %e, reason = r.reason, "event not recorded"),
        }
    }
}
