//! Starts the certificate machinery of a running node from its `Config`: the client and
//! serving rotation loops (when enabled), the request-file watcher and the status file.
//! What it hands back: the serving channel 10250 resolves from, and the tasks to stop.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use rustls::pki_types::CertificateDer;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::control::Shared;
use super::profile::{self, IdentityKind};
use super::rotation::{ISSUE_TIMEOUT, Output, Rotator};
use super::store::Store;
use super::{TlsPolicy, csr, metrics, serving, validate};
use crate::apiclient::ApiClient;
use crate::config::Config;

pub struct NodeCerts {
    /// The serving channel, when serverTLSBootstrap manages the 10250 certificate.
    pub serving: Option<serving::ServingRx>,
    pub tasks: Vec<JoinHandle<()>>,
}

fn leaf_info(chain: &[CertificateDer<'static>]) -> Option<validate::CertInfo> {
    validate::inspect(chain.first()?).ok()
}

/// Starts rotation for the identities the config enables. `internal_ip` is the node's
/// InternalIP for the serving SANs.
pub async fn start(
    config: &Config,
    api: &ApiClient,
    internal_ip: Option<IpAddr>,
    events: crate::events::Recorder,
    status: Shared,
) -> anyhow::Result<NodeCerts> {
    let mut out = NodeCerts {
        serving: None,
        tasks: Vec::new(),
    };
    let c = &config.certificates;
    let policy =
        TlsPolicy::from_config(config.tls.min_version.as_deref(), &config.tls.cipher_suites)?;
    let Some(kubeconfig) = &config.cluster.kubeconfig else {
        return Ok(out);
    };
    let facts = crate::apiclient::inspect(kubeconfig).await?;
    if facts.roots.is_empty() {
        anyhow::bail!(
            "{}: no cluster CA to validate issued certificates against",
            kubeconfig.display()
        );
    }
    let mut targets: BTreeMap<&'static str, mpsc::UnboundedSender<String>> = BTreeMap::new();
    let now = SystemTime::now();

    // The client identity: the stored rotated certificate wins over the kubeconfig's own
    // (upstream's load order), so a restart keeps the newest one.
    let client_profile = profile::profile(IdentityKind::Client);
    let client_store = Store::new(&c.cert_dir, &client_profile.file_prefix);
    let mut client_current = api.identity.certificate().as_deref().and_then(leaf_info);
    let mut client_source = "kubeconfig";
    if c.rotate_certificates || c.bootstrap_kubeconfig.is_some() {
        if let Some(pair) = client_store.load_current()?
            && let Some(info) = leaf_info(&pair.chain)
            && info.remaining(now) > 0
            && client_current
                .as_ref()
                .is_none_or(|k| k.serial != info.serial)
        {
            match api
                .identity
                .set_pem(pair.chain_pem.as_bytes(), pair.key_pem.as_bytes())
            {
                Ok(()) => {
                    tracing::info!(serial = %info.serial, file = %pair.file.display(), "client identity: using the stored certificate");
                    client_current = Some(info);
                    client_source = "rotation";
                }
                Err(e) => tracing::warn!(error = %e, "stored client certificate unusable"),
            }
        } else if client_current.is_some() && kubeconfig_points_into(kubeconfig, &client_store) {
            client_source = "rotation";
        }
    }
    if let Some(info) = &client_current {
        metrics::set_not_after(IdentityKind::Client, info.not_after);
    }
    let cs = client_source.to_owned();
    let ci = client_current.clone();
    let cf = client_store.current_path().display().to_string();
    status.identity(IdentityKind::Client, |s| {
        s.source = cs;
        s.certificate = ci;
        s.file = Some(cf);
    });
    if c.rotate_certificates {
        let (tx, rx) = mpsc::unbounded_channel();
        targets.insert("client", tx);
        let r = Rotator {
            profile: client_profile,
            node_name: config.node_name.clone(),
            store: client_store,
            roots: facts.roots.clone(),
            sans: Vec::new(),
            policy: policy.clone(),
            api: api.clone(),
            bootstrap: c.bootstrap_kubeconfig.clone().map(|p| {
                (
                    p,
                    config.cluster.kube_api_qps,
                    config.cluster.kube_api_burst,
                )
            }),
            output: Output::Client(api.identity.clone()),
            requests: rx,
            status: status.clone(),
            events: events.clone(),
            current: client_current,
            issue_timeout: ISSUE_TIMEOUT,
        };
        out.tasks.push(tokio::spawn(r.run()));
        tracing::info!("client certificate rotation on (rotateCertificates)");
    }

    if c.server_tls_bootstrap {
        let p = profile::profile(IdentityKind::Serving);
        let store = Store::new(&c.cert_dir, &p.file_prefix);
        let sans = csr::node_sans(p, &config.node_name, internal_ip);
        let (tx, rx) = watch::channel(None);
        let mut current = None;
        if let Some(pair) = store.load_current()?
            && let Some(info) = leaf_info(&pair.chain)
            && info.remaining(now) > 0
            && sans.iter().all(|s| info.sans.contains(&s.to_string()))
        {
            use rustls::pki_types::pem::PemObject;
            match rustls::pki_types::PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes())
                .map_err(|e| e.to_string())
                .and_then(|k| {
                    serving::certified(&policy, pair.chain.clone(), k).map_err(|e| e.to_string())
                }) {
                Ok(ck) => {
                    tracing::info!(serial = %info.serial, "serving certificate: using the stored one");
                    tx.send_replace(Some(ck));
                    metrics::set_not_after(IdentityKind::Serving, info.not_after);
                    current = Some(info);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "stored serving certificate unusable; requesting a new one")
                }
            }
        }
        let ci = current.clone();
        let file = store.current_path().display().to_string();
        status.identity(IdentityKind::Serving, |s| {
            s.source = "rotation".into();
            s.certificate = ci;
            s.file = Some(file);
        });
        let (rtx, rrx) = mpsc::unbounded_channel();
        targets.insert("serving", rtx);
        let r = Rotator {
            profile: p,
            node_name: config.node_name.clone(),
            store,
            roots: facts.roots.clone(),
            sans,
            policy: policy.clone(),
            api: api.clone(),
            bootstrap: None,
            output: Output::Serving(tx),
            requests: rrx,
            status: status.clone(),
            events,
            current,
            issue_timeout: ISSUE_TIMEOUT,
        };
        out.tasks.push(tokio::spawn(r.run()));
        out.serving = Some(rx);
        tracing::info!(
            "serving certificate from the API server (serverTLSBootstrap); 10250 opens once it is issued"
        );
    }
    out.tasks.push(tokio::spawn(super::control::watch_requests(
        c.cert_dir.clone(),
        status.clone(),
        targets,
    )));
    out.tasks.push(tokio::spawn(status.refresh()));
    Ok(out)
}

fn kubeconfig_points_into(kubeconfig: &std::path::Path, store: &Store) -> bool {
    crate::apiclient::referenced_files(kubeconfig)
        .iter()
        .any(|f| f == &store.current_path())
}

/// Keeps the serving status entry of static files current (for `certs status`).
pub fn record_static(
    status: &Shared,
    cert_file: &std::path::Path,
    chain: Option<&[CertificateDer<'static>]>,
) {
    let info = chain.and_then(leaf_info);
    if let Some(i) = &info {
        metrics::set_not_after(IdentityKind::Serving, i.not_after);
    }
    let f = cert_file.display().to_string();
    status.identity(IdentityKind::Serving, |s| {
        s.source = "file".into();
        s.file = Some(f);
        s.certificate = info;
    });
}
