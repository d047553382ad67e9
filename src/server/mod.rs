//! The agent's HTTP listeners: the plain-HTTP healthz listener (loopback by default) and
//! the secure kubelet API on `address:port` (10250).
//!
//! The secure API fails closed: without a serving certificate or without an authorizer
//! (no API server and no standalone policy file) the port is not opened at all, and the
//! log says why. It never serves anything unauthenticated or unauthorised.

pub mod api;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod endpoints;
pub mod healthz;
pub mod listener;
pub mod logs;
pub mod metrics;
pub mod query;
pub mod routes;
pub mod stream;
pub mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;

/// Concurrent exec/attach/portForward streams and followed logs.
pub const MAX_STREAMS: usize = 64;

/// Why the secure API could not start: each names the setting or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The TLS policy refuses a setting (tlsMinVersion, tlsCipherSuites, curves).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("tlsCertFile: {0}")]
    CertFile(crate::tls::TlsError),
    #[error("tlsPrivateKeyFile: {0}")]
    KeyFile(crate::tls::TlsError),
    #[error("tlsCertFile/tlsPrivateKeyFile: {0}")]
    ServingPair(crate::tls::TlsError),
    #[error("authentication.x509.clientCAFile: {0}")]
    ClientCa(crate::tls::TlsError),
    #[error("--authorization-policy-file: {0}")]
    Policy(#[from] authz::PolicyError),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    #[error("address/port {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The running secure listener.
pub struct Secure {
    pub local_addr: SocketAddr,
    pub task: tokio::task::JoinHandle<()>,
}

/// The rustls configuration of the secure port: the TLS policy, the serving certificate
/// (from `serving` when rotation manages it, else from tlsCertFile/tlsPrivateKeyFile, which
/// are then reloaded when they change), and the client CA when x509 authentication is
/// configured (reloaded when it changes). The reloader must run for the files to be watched.
pub fn tls_config(
    config: &Config,
    serving: Option<crate::tls::serving::ServingRx>,
) -> Result<Option<(rustls::ServerConfig, crate::tls::serving::FileReloader)>, ServerError> {
    use crate::tls::serving;
    let policy = crate::tls::TlsPolicy::from_config(
        config.tls.min_version.as_deref(),
        &config.tls.cipher_suites,
    )?
    .with_kx_groups(&config.node.tls_curve_preferences)?;
    let (rx, files) = match (serving, &config.tls.cert_file, &config.tls.private_key_file) {
        (Some(rx), _, _) => (rx, None),
        (None, Some(cert), Some(key)) => {
            crate::tls::load_certs(cert).map_err(ServerError::CertFile)?;
            crate::tls::load_key(key).map_err(ServerError::KeyFile)?;
            let ck = serving::certified_from_files(&policy, cert, key)
                .map_err(ServerError::ServingPair)?;
            let (tx, rx) = tokio::sync::watch::channel(Some(ck));
            (rx, Some((cert.clone(), key.clone(), tx)))
        }
        _ => return Ok(None),
    };
    let client_ca = match &config.authentication.x509_client_ca_file {
        Some(p) => Some((
            p.clone(),
            serving::client_ca(&policy, p).map_err(ServerError::ClientCa)?,
        )),
        None => None,
    };
    let cfg = serving::server_config(&policy, rx, client_ca.as_ref().map(|(_, v)| v.clone()))?;
    Ok(Some((
        cfg,
        serving::FileReloader {
            policy,
            serving: files,
            client_ca,
        },
    )))
}

/// `/configz`: the running configuration under upstream's field names.
pub fn configz(config: &Config) -> serde_json::Value {
    let d = |d: Duration| format!("{}s", d.as_secs());
    let p = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    serde_json::json!({ "kubeletconfig": {
        "address": config.address.to_string(),
        "port": config.port,
        "readOnlyPort": 0,
        "healthzBindAddress": config.healthz_bind_address.to_string(),
        "healthzPort": config.healthz_port,
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"enabled": config.authentication.webhook_enabled,
                        "cacheTTL": d(config.authentication.webhook_cache_ttl)},
            "x509": {"clientCAFile": p(&config.authentication.x509_client_ca_file)},
        },
        "authorization": {
            "mode": "Webhook",
            "webhook": {"cacheAuthorizedTTL": d(config.authorization.cache_authorized_ttl),
                        "cacheUnauthorizedTTL": d(config.authorization.cache_unauthorized_ttl)},
        },
        "tlsCertFile": p(&config.tls.cert_file),
        "tlsPrivateKeyFile": p(&config.tls.private_key_file),
        "tlsMinVersion": config.tls.min_version.clone().unwrap_or_else(|| "VersionTLS12".into()),
        "tlsCipherSuites": config.tls.cipher_suites,
        "staticPodPath": p(&config.static_pod_path),
        "podLogsDir": config.pod_logs_dir.display().to_string(),
        "fileCheckFrequency": d(config.file_check_frequency),
        "syncFrequency": d(config.sync_frequency),
        "runtimeRequestTimeout": d(config.runtime_request_timeout),
        "streamingConnectionIdleTimeout": d(config.streaming_connection_idle_timeout),
        "enableDebuggingHandlers": config.enable_debugging_handlers,
        "enableSystemLogHandler": config.enable_system_log_handler,
        "containerRuntimeEndpoint": format!("unix://{}", config.runtime_endpoint.display()),
        "maxPods": config.max_pods,
        "cgroupRoot": config.cgroup_root,
        "cgroupsPerQOS": config.cgroups_per_qos,
        "podPidsLimit": config.pod_pids_limit,
        "cpuCFSQuota": config.cpu_cfs_quota,
        "containerLogMaxSize": config.container_log_max_size,
        "containerLogMaxFiles": config.container_log_max_files,
    }})
}

/// Starts the secure API. `Ok(None)` when it fails closed (reason logged); `Err` for a
/// configuration that names unusable files or an address that cannot be bound.
pub async fn start(
    config: &Config,
    handles: api::Handles,
    kube: Option<kube::Client>,
) -> Result<Option<Secure>, ServerError> {
    start_with(config, handles, kube, None).await
}

/// `start`, with the serving certificate from a rotation channel instead of files.
pub async fn start_with(
    config: &Config,
    handles: api::Handles,
    kube: Option<kube::Client>,
    serving: Option<crate::tls::serving::ServingRx>,
) -> Result<Option<Secure>, ServerError> {
    // One budget for the TokenReviews and SubjectAccessReviews made for 10250's callers.
    let reviews = Arc::new(crate::budget::ReviewBudget::default());
    let authorizer: Arc<dyn authz::Authorizer> = match (&kube, &config.authorization_policy_file) {
        (Some(client), policy) => {
            let sar: Arc<dyn authz::Authorizer> = Arc::new(
                webhook::WebhookAuthorizer::new(
                    client.clone(),
                    config.node_name.clone(),
                    config.authorization.cache_authorized_ttl,
                    config.authorization.cache_unauthorized_ttl,
                )
                .with_budget(Arc::clone(&reviews)),
            );
            match policy {
                // Both must allow: the policy narrows what the cluster grants.
                Some(p) => {
                    let local = authz::StandalonePolicy::load(p)?;
                    tracing::info!(file = %p.display(), "kubelet API: requests must be allowed by --authorization-policy-file and by a SubjectAccessReview");
                    Arc::new(authz::Both { local, remote: sar })
                }
                None => sar,
            }
        }
        (None, Some(p)) => Arc::new(authz::StandalonePolicy::load(p)?),
        (None, None) => {
            tracing::error!(
                "kubelet API (port {}) not opened: no authorizer. Without an API server for SubjectAccessReviews, \
                 set --authorization-policy-file to a standalone policy (policy/README.md); ironlet never serves unauthorised",
                config.port
            );
            return Ok(None);
        }
    };
    let tokens: Option<Arc<dyn authn::TokenAuthenticator>> =
        match (&kube, config.authentication.webhook_enabled) {
            (Some(client), true) => Some(Arc::new(
                webhook::WebhookAuthenticator::new(
                    client.clone(),
                    config.authentication.webhook_cache_ttl,
                )
                .with_budget(Arc::clone(&reviews)),
            )),
            (None, true) => {
                tracing::info!("bearer tokens are refused (401): no API server for TokenReview");
                None
            }
            (_, false) => None,
        };
    if tokens.is_none() && config.authentication.x509_client_ca_file.is_none() {
        tracing::warn!(
            "kubelet API: no authentication method can succeed (no clientCAFile, no TokenReview); every request gets 401"
        );
    }
    let Some((tls, reloader)) = tls_config(config, serving)? else {
        tracing::error!(
            "kubelet API (port {}) not opened: tlsCertFile and tlsPrivateKeyFile are not set (ironlet does not self-sign)",
            config.port
        );
        return Ok(None);
    };
    let options = api::Options {
        node_name: config.node_name.clone(),
        enable_debugging_handlers: config.enable_debugging_handlers,
        enable_system_log_handler: config.enable_system_log_handler,
        system_log_root: PathBuf::from("/var/log"),
        streaming_idle_timeout: config.streaming_connection_idle_timeout,
        max_streams: MAX_STREAMS,
    };
    let audit = match &config.audit_log_path {
        Some(p) => {
            let log = audit::AuditLog::open(p, config.audit_log_max_bytes)?;
            tracing::info!(file = %p.display(), "kubelet API audit log (hash-chained JSON lines)");
            log
        }
        None => {
            let log = audit::AuditLog::stderr();
            log.start();
            log
        }
    };
    let api =
        Arc::new(api::Api::new(options, tokens, authorizer, handles).with_audit(Arc::new(audit)));
    let addr = SocketAddr::new(config.address, config.port);
    let bound = |source| ServerError::Bind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(bound)?;
    let local_addr = listener.local_addr().map_err(bound)?;
    tracing::info!(address = %local_addr, "kubelet API listening (TLS, authenticated, authorized)");
    let serve = listener::serve(listener, Arc::new(tls), api, listener::Limits::default());
    // The file reloader lives and dies with the listener.
    let task = tokio::spawn(async move {
        tokio::select! {
            _ = serve => {}
            _ = reloader.run() => {}
        }
    });
    Ok(Some(Secure { local_addr, task }))
}
