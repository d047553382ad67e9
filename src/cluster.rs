//! Cluster mode wiring: with `--kubeconfig`, the agent connects to the API server, starts
//! the API pod source, registers the node, and runs the node status loop, the lease and
//! the API status manager. Every task here survives API outages on its own; none of them
//! can stop or restart a pod (only the pod manager acts on the runtime).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::apiclient::{self, ApiClient};
use crate::config::Config;
use crate::cri::Cri;
use crate::node::status::NodeFacts;
use crate::node::{NodeAgent, info};
use crate::pleg::PlegHealth;
use crate::pod::DesiredPod;
use crate::pod::api_status::ApiStatusManager;
use crate::pod::source::api::{ApiPods, ApiSource};
use crate::pod::worker::StatusUpdate;
use crate::resources::{Allocatable, Capacity};

/// Connects the client (no request is sent yet). Errors name the kubeconfig problem.
/// With `--bootstrap-kubeconfig`, TLS bootstrap runs first when the kubeconfig has no
/// valid client certificate (it waits for the CSR to be issued).
pub async fn connect(
    config: &Config,
    certs: &crate::tls::control::Shared,
) -> anyhow::Result<Option<ApiClient>> {
    let Some(path) = &config.cluster.kubeconfig else {
        return Ok(None);
    };
    crate::tls::bootstrap::ensure_client_credentials(config, certs).await?;
    let client = apiclient::connect(
        path,
        config.cluster.kube_api_qps,
        config.cluster.kube_api_burst,
    )
    .await?;
    tracing::info!(server = %client.server, "cluster mode: using the API server");
    Ok(Some(client))
}

/// Starts certificate rotation (rotateCertificates, serverTLSBootstrap) for the node's
/// identities; the serving SANs use the same InternalIP the node reports.
pub async fn start_certificates(
    config: &Config,
    api: &ApiClient,
    events: crate::events::Recorder,
    status: &crate::tls::control::Shared,
) -> anyhow::Result<crate::tls::manager::NodeCerts> {
    let internal_ip = match config.node_ip {
        Some(ip) => Some(ip),
        None if config.certificates.server_tls_bootstrap => {
            info::detect_node_ip(server_addr(&api.server).await)
        }
        None => None,
    };
    crate::tls::manager::start(config, api, internal_ip, events, status.clone()).await
}

/// The API server's address, for picking the node's InternalIP.
async fn server_addr(server: &str) -> Option<SocketAddr> {
    let uri: http::Uri = server.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(443);
    tokio::net::lookup_host((host, port)).await.ok()?.next()
}

pub struct Inputs {
    pub api: ApiClient,
    pub cri: Cri,
    pub pleg: Arc<PlegHealth>,
    pub started: Instant,
    pub capacity: Capacity,
    pub allocatable: Allocatable,
    pub runtime_version: String,
}

/// What the API pod source hands to the rest: its desired sets, the shared cache of API
/// pods, the change signal, and its task.
pub type SourceParts = (
    mpsc::Receiver<Vec<DesiredPod>>,
    ApiPods,
    Arc<Notify>,
    JoinHandle<()>,
);

/// Starts the API pod source.
pub fn start_source(api: &ApiClient, node_name: &str) -> SourceParts {
    let (tx, rx) = mpsc::channel(16);
    let pods = ApiPods::default();
    let changed = Arc::new(Notify::new());
    let source = ApiSource {
        client: api.client.clone(),
        node_name: node_name.to_owned(),
        pods: pods.clone(),
        changed: changed.clone(),
    };
    (rx, pods, changed, tokio::spawn(source.run(tx)))
}

/// Registers the node, then runs the status loop, the lease and the status manager.
pub fn start_node(
    config: &Config,
    inputs: Inputs,
    api_pods: ApiPods,
    changed: Arc<Notify>,
    statuses: mpsc::UnboundedReceiver<StatusUpdate>,
) -> JoinHandle<()> {
    let config = config.clone();
    tokio::spawn(async move {
        let internal_ip = match config.node_ip {
            Some(ip) => Some(ip),
            None => info::detect_node_ip(server_addr(&inputs.api.server).await),
        };
        let facts = NodeFacts {
            name: config.node_name.clone(),
            hostname: config.node_name.clone(),
            internal_ip: internal_ip.map(|ip| ip.to_string()),
            taints: config.cluster.register_with_taints.clone(),
            capacity: inputs.capacity,
            allocatable: inputs.allocatable,
            ids: info::machine_ids(),
            os_image: info::os_image(),
            runtime_version: inputs.runtime_version.clone(),
            kubelet_version: info::kubelet_version(),
            arch: info::arch().to_owned(),
            kubelet_port: config.port,
            extra_labels: config.cluster.node_labels.clone(),
        };
        let agent = Arc::new(NodeAgent {
            api: inputs.api.clone(),
            facts,
            eviction: config.cluster.eviction_hard,
            update_frequency: config.cluster.node_status_update_frequency,
            report_frequency: config.cluster.node_status_report_frequency,
            lease_duration: config.cluster.node_lease_duration,
            cri: inputs.cri,
            pleg: inputs.pleg,
            started: inputs.started,
            root_dir: config.root_dir.clone(),
        });
        let node_uid = if config.cluster.register_node {
            agent.register().await
        } else {
            String::new()
        };
        let status = ApiStatusManager {
            client: inputs.api.client.clone(),
            node_name: config.node_name.clone(),
            node_uid: node_uid.clone(),
            api_pods,
            changed,
        };
        // Joined, not spawned: aborting this task stops all three.
        tokio::join!(
            status.run(statuses),
            Arc::clone(&agent).run_lease(node_uid),
            agent.run_status()
        );
    })
}
