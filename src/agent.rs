//! The running agent: wires sources, the PLEG, the pod manager and the local view together
//! from a validated `Config`, and runs until told to stop. Stopping leaves pods running.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use crate::config::Config;
use crate::cri::{self, Cri};
use crate::pleg::{EVENT_CAPACITY, Pleg, PlegHealth};
use crate::pod::cri_config::NodeContext;
use crate::pod::dns::{self, HostDns, NodeDns};
use crate::pod::manager::Manager;
use crate::pod::source::file::FileSource;
use crate::pod::worker::WorkerContext;
use crate::view::{self, AgentFacts};

/// Reads the node's resolv.conf for pods that use the host's resolver.
fn host_dns(path: Option<&Path>) -> HostDns {
    let Some(path) = path else {
        return HostDns::default();
    };
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() <= dns::MAX_RESOLV_CONF_BYTES => {
            dns::parse_resolv_conf(&String::from_utf8_lossy(&bytes))
        }
        Ok(_) => {
            tracing::warn!(file = %path.display(), "resolvConf is larger than 64 KiB; ignored");
            HostDns::default()
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "resolvConf unreadable; pods get no host DNS");
            HostDns::default()
        }
    }
}

/// Starts the secure kubelet API (10250) with handles to the agent's state. `None` when it
/// fails closed (the reason is logged).
#[allow(clippy::too_many_arguments)] // the agent's handles, each passed once; a struct would only rename them
async fn start_secure_api(
    config: &Config,
    cri: &Cri,
    snapshots: &tokio::sync::watch::Receiver<Arc<crate::pleg::Snapshot>>,
    health: &Arc<PlegHealth>,
    probes: &crate::probe::ProbeManager,
    started: Instant,
    kube: Option<kube::Client>,
    serving: Option<crate::tls::serving::ServingRx>,
) -> anyhow::Result<Option<crate::server::Secure>> {
    let pods_file = view::status_dir(&config.root_dir).join("pods.json");
    let handles = crate::server::api::Handles {
        pods: Box::new(move || std::fs::read(&pods_file).map_err(|e| e.to_string())),
        snapshots: snapshots.clone(),
        health: Arc::clone(health),
        started,
        cri: cri.clone(),
        probes: Some(probes.clone()),
        configz: crate::server::configz(config),
    };
    // In cluster mode the API server authenticates tokens and authorizes (TokenReview,
    // SubjectAccessReview); standalone, the policy file authorizes.
    Ok(crate::server::start_with(config, handles, kube, serving).await?)
}

/// The node's security inputs: the configuration, the host's AppArmor, and what the
/// runtime says it supports (user namespaces, supplementalGroupsPolicy Strict).
async fn node_security(
    config: &Config,
    cri: &Cri,
    version: &crate::cri::api::VersionResponse,
    host_apparmor: bool,
) -> crate::pod::security::NodeSecurity {
    let (userns, groups_policy) = match cri.status().await {
        Ok(s) => (
            s.runtime_handlers
                .iter()
                .any(|h| h.features.as_ref().is_some_and(|f| f.user_namespaces)),
            s.features
                .as_ref()
                .is_some_and(|f| f.supplemental_groups_policy),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "runtime status: assuming no user namespaces and no Strict supplemental groups");
            (false, false)
        }
    };
    let w = &config.workload;
    tracing::info!(
        seccomp_default = w.seccomp_default,
        allowed_unsafe_sysctls = w.allowed_unsafe_sysctls.len(),
        host_apparmor,
        runtime_user_namespaces = userns,
        "workload security"
    );
    crate::pod::security::NodeSecurity {
        seccomp_default: w.seccomp_default,
        seccomp_root: config.root_dir.join("seccomp"),
        allowed_unsafe_sysctls: w.allowed_unsafe_sysctls.clone(),
        pod_security: w.pod_security.clone(),
        host_apparmor,
        runtime: format!("{} {}", version.runtime_name, version.runtime_version),
        runtime_user_namespaces: userns,
        runtime_supplemental_groups_policy: groups_policy,
    }
}

/// Runs the agent until `shutdown` resolves. `helper` is the mount helper `confine::apply`
/// started.
pub async fn run(
    config: Config,
    host_apparmor: bool,
    helper: Arc<crate::confine::helper::HelperClient>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    std::fs::create_dir_all(&config.root_dir)
        .map_err(|e| anyhow::anyhow!("--root-dir {}: {e}", config.root_dir.display()))?;
    std::fs::create_dir_all(&config.pod_logs_dir)
        .map_err(|e| anyhow::anyhow!("podLogsDir {}: {e}", config.pod_logs_dir.display()))?;

    let health = Arc::new(PlegHealth::default());
    let healthz_task = if config.healthz_port == 0 {
        None
    } else {
        let addr = std::net::SocketAddr::new(config.healthz_bind_address, config.healthz_port);
        let serve = crate::server::healthz::bind(addr, Arc::clone(&health), started)
            .await
            .map_err(|e| anyhow::anyhow!("healthzBindAddress/healthzPort {addr}: {e}"))?;
        Some(tokio::spawn(serve))
    };

    tokio::pin!(shutdown);
    let cri = Cri::new(&config.runtime_endpoint, config.runtime_request_timeout);
    let version = tokio::select! {
        v = cri::handshake(&cri) => v,
        _ = &mut shutdown => {
            tracing::info!("stopped before the runtime answered");
            return Ok(());
        }
    };

    let security = node_security(&config, &cri, &version, host_apparmor).await;
    let cert_status =
        crate::tls::control::Shared::new(&config.root_dir, &config.certificates.cert_dir);
    // TLS bootstrap may wait for an approval; a stop request ends the wait.
    let api = tokio::select! {
        a = crate::cluster::connect(&config, &cert_status) => a?,
        _ = &mut shutdown => {
            tracing::info!("stopped before the API client was ready");
            return Ok(());
        }
    };
    let (api_status_tx, api_status_rx) = mpsc::unbounded_channel();
    let (status_tx, status_rx) = mpsc::unbounded_channel();
    let facts = AgentFacts {
        node_name: config.node_name.clone(),
        pod_logs_dir: config.pod_logs_dir.clone(),
        runtime: format!("{} {}", version.runtime_name, version.runtime_version),
        started,
        started_unix,
    };
    let view_task = tokio::spawn(view::run_status_manager(
        config.root_dir.clone(),
        status_rx,
        facts,
        Arc::clone(&health),
        api.is_some().then_some(api_status_tx),
    ));

    let (event_tx, event_rx) = mpsc::channel(EVENT_CAPACITY);
    let (pleg, snapshots) = Pleg::new(cri.clone(), event_tx, Arc::clone(&health));
    let pleg_task = tokio::spawn(pleg.run());

    let cgroups = Arc::new(crate::resources::PodCgroups::new(
        crate::resources::Hierarchy::detect(),
        crate::resources::CgroupLayout::new(&config.cgroup_root, config.cgroups_per_qos)
            .map_err(|e| anyhow::anyhow!("cgroupRoot {:?}: {e}", config.cgroup_root))?,
    ));
    let capacity = crate::resources::Capacity::measure(
        config.max_pods,
        config.node.pods_per_core,
        crate::node::info::filesystem_size(&config.root_dir),
    );
    let allocatable = match &capacity {
        Ok(cap) => {
            let a = crate::resources::allocatable(
                cap,
                &config.cluster.kube_reserved,
                &config.cluster.system_reserved,
                &config.cluster.eviction_hard,
            );
            tracing::info!(
                cpu_milli = a.cpu_milli,
                memory_bytes = a.memory_bytes,
                pods = a.pods,
                "node allocatable"
            );
            Some(a)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot measure node capacity; resource admission is off");
            None
        }
    };
    // enforceNodeAllocatable `pods`: the kubepods cgroup is limited; without it, not.
    let enforce_pods = config.node.node_allocatable.pods;
    let node_limits = capacity.as_ref().ok().filter(|_| enforce_pods).map(|cap| {
        crate::resources::node_allocatable_limits(
            cap,
            &config.cluster.kube_reserved,
            &config.cluster.system_reserved,
        )
    });
    cgroups
        .ensure_qos_hierarchy(node_limits.as_ref())
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot set up the kubepods cgroups under {:?}: {e}",
                config.cgroup_root
            )
        })?;
    let node = NodeContext {
        node_name: config.node_name.clone(),
        node_ip: config.node_ip.map(|ip| ip.to_string()),
        pod_logs_dir: config.pod_logs_dir.clone(),
        pods_dir: config.root_dir.join("pods"),
        memory_capacity: capacity.as_ref().map_or(0, |c| c.memory_bytes),
        cpu_cfs_quota: config.cpu_cfs_quota,
        dns: NodeDns {
            host: host_dns(config.resolv_conf.as_deref()),
            cluster_dns: config.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
            cluster_domain: config.cluster_domain.clone(),
        },
        security: Arc::new(security),
    };
    let rotation_task = tokio::spawn(crate::pod::log_rotation::run(
        cri.clone(),
        snapshots.clone(),
        crate::pod::log_rotation::RotationPolicy {
            max_size: config.container_log_max_size,
            max_files: config.container_log_max_files,
        },
    ));
    let (events, events_task) = match &api {
        Some(api) => {
            let (r, t) = crate::events::start(
                api.client.clone(),
                config.node_name.clone(),
                config.cluster.event_record_qps,
                config.cluster.event_burst,
            );
            (r, Some(t))
        }
        None => (crate::events::Recorder::disabled(), None),
    };
    let node_certs = match &api {
        Some(api) => Some(
            crate::cluster::start_certificates(&config, api, events.clone(), &cert_status).await?,
        ),
        None => None,
    };
    if let Some(cert) = &config.tls.cert_file {
        let chain = crate::tls::load_certs(cert).ok();
        crate::tls::manager::record_static(&cert_status, cert, chain.as_deref());
    }
    let (probes, probe_updates) =
        crate::probe::ProbeManager::new(Arc::new(crate::pod::probes::CriExec(cri.clone())));
    let kube = api.as_ref().map(|a| a.client.clone());
    let serving = node_certs.as_ref().and_then(|c| c.serving.clone());
    let mut secure = None;
    let mut secure_later = None;
    match serving {
        _ if !config.node.enable_server => {
            tracing::info!(
                port = config.port,
                "enableServer is false: the kubelet API is not served"
            );
        }
        None => {
            secure = start_secure_api(
                &config, &cri, &snapshots, &health, &probes, started, kube, None,
            )
            .await?;
        }
        // serverTLSBootstrap: 10250 opens once the first serving certificate is issued.
        Some(mut rx) => {
            let (config, cri, snapshots, health, probes) = (
                config.clone(),
                cri.clone(),
                snapshots.clone(),
                Arc::clone(&health),
                probes.clone(),
            );
            secure_later = Some(tokio::spawn(async move {
                if rx.wait_for(Option::is_some).await.is_err() {
                    return;
                }
                match start_secure_api(
                    &config,
                    &cri,
                    &snapshots,
                    &health,
                    &probes,
                    started,
                    kube,
                    Some(rx),
                )
                .await
                {
                    Ok(Some(s)) => {
                        struct AbortOnDrop(tokio::task::JoinHandle<()>);
                        impl Drop for AbortOnDrop {
                            fn drop(&mut self) {
                                self.0.abort();
                            }
                        }
                        let guard = AbortOnDrop(s.task);
                        std::future::pending::<()>().await;
                        drop(guard);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %format!("{e:#}"), "kubelet API not opened"),
                }
            }));
        }
    }
    let ctx = Arc::new(WorkerContext {
        probes,
        cri,
        cgroups: Arc::clone(&cgroups),
        pod_pids_limit: config.pod_pids_limit,
        node,
        runtime_name: version.runtime_name.clone(),
        snapshots: snapshots.clone(),
        status: status_tx,
        sync_frequency: config.sync_frequency,
        events,
        helper: Some(helper),
    });

    let mut sources = Vec::new();
    let (file_tx, file_rx) = mpsc::channel(16);
    sources.push(file_rx);
    let source_task = match &config.static_pod_path {
        Some(dir) => {
            let source = FileSource::new(dir.clone(), config.node_name.clone());
            tokio::spawn(source.run(config.file_check_frequency, file_tx))
        }
        None => {
            tracing::info!("no staticPodPath: no static pods");
            // An empty set, so orphans are still found and terminated.
            tokio::spawn(async move {
                if file_tx.send(Vec::new()).await.is_ok() {
                    file_tx.closed().await;
                }
            })
        }
    };
    let mut cluster_tasks = Vec::new();
    if let Some(api) = &api {
        let (api_rx, api_pods, changed, task) =
            crate::cluster::start_source(api, &config.node_name);
        sources.push(api_rx);
        cluster_tasks.push(task);
        match (&capacity, allocatable) {
            (Ok(cap), Some(alloc)) => cluster_tasks.push(crate::cluster::start_node(
                &config,
                crate::cluster::Inputs {
                    api: api.clone(),
                    cri: ctx.cri.clone(),
                    pleg: Arc::clone(&health),
                    started,
                    capacity: *cap,
                    allocatable: alloc,
                    runtime_version: format!(
                        "{}://{}",
                        version.runtime_name, version.runtime_version
                    ),
                },
                api_pods,
                changed,
                api_status_rx,
            )),
            _ => {
                anyhow::bail!("cluster mode needs the node's capacity, which could not be measured")
            }
        }
    }
    let (desired_tx, desired_rx) = mpsc::channel(16);
    let merge_task = tokio::spawn(crate::pod::source::merge(sources, desired_tx));
    let manager_task =
        tokio::spawn(Manager::new(ctx, allocatable).run(desired_rx, event_rx, probe_updates));

    tracing::info!(node = %config.node_name, "ironlet running");
    shutdown.await;
    tracing::info!("stopping; running pods are left running");
    source_task.abort();
    merge_task.abort();
    for t in cluster_tasks.into_iter().chain(events_task) {
        t.abort();
    }
    manager_task.abort();
    pleg_task.abort();
    rotation_task.abort();
    if let Some(t) = healthz_task {
        t.abort();
    }
    if let Some(s) = secure {
        s.task.abort();
    }
    if let Some(t) = secure_later {
        t.abort();
    }
    for t in node_certs.into_iter().flat_map(|c| c.tasks) {
        t.abort();
    }
    // Let the view write its last state.
    let _ = tokio::time::timeout(Duration::from_secs(2), view_task).await;
    Ok(())
}
