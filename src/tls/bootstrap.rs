//! TLS bootstrap (upstream's order): when `--kubeconfig` exists with a client certificate
//! that is still valid (or with no certificate at all, e.g. a token), nothing happens. Else
//! a valid `kubelet-client-current.pem` in the cert dir is reused. Else the node asks for
//! one: an ECDSA P-256 key (0600 at creation, kept across restarts until the CSR succeeds),
//! a CSR for system:node:<name> sent with the bootstrap kubeconfig's credentials (typically
//! a bootstrap token), watched until issued; the pair is validated, stored, and
//! `--kubeconfig` written (0600) pointing at kubelet-client-current.pem.

use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::Api;
use rand::Rng;
use rcgen::PublicKeyData;
use rustls::pki_types::CertificateDer;

use super::control::{RotationRecord, Shared, now_f64};
use super::profile::{self, IdentityKind};
use super::store::Store;
use super::validate::{self, Expect};
use super::{csr, metrics, rotation};
use crate::apiclient;
use crate::config::Config;

/// How long a bootstrap CSR may wait for approval per attempt (upstream: one hour).
const BOOTSTRAP_WAIT: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("--bootstrap-kubeconfig {0}")]
    Kubeconfig(#[from] apiclient::ApiClientError),
    #[error("--cert-dir: {0}")]
    Store(#[from] super::store::StoreError),
    #[error("--kubeconfig {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: super::store::StoreError,
    },
}

fn leaf_valid(chain: &[CertificateDer<'static>]) -> bool {
    chain
        .first()
        .and_then(|c| validate::inspect(c).ok())
        .is_some_and(|i| i.remaining(SystemTime::now()) > 0)
}

fn pem_of(ders: &[CertificateDer<'static>]) -> String {
    let mut out = String::new();
    for d in ders {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(d.as_ref());
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// Writes `--kubeconfig` (0600, atomically) for the cluster of `facts`, with the client
/// certificate and key both at `current` (upstream's layout).
pub fn write_kubeconfig(
    path: &Path,
    facts: &apiclient::KubeconfigFacts,
    current: &Path,
) -> Result<(), BootstrapError> {
    let ca = base64::engine::general_purpose::STANDARD.encode(pem_of(&facts.roots));
    let server_name = facts
        .tls_server_name
        .as_ref()
        .map(|n| format!("    tls-server-name: {n}\n"))
        .unwrap_or_default();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: default-cluster\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\n{server_name}contexts:\n- name: default-context\n  context:\n    cluster: default-cluster\n    namespace: default\n    user: default-auth\ncurrent-context: default-context\nusers:\n- name: default-auth\n  user:\n    client-certificate: {cur}\n    client-key: {cur}\n",
        facts.server.trim_end_matches('/'),
        cur = current.display()
    );
    super::store::replace_private(path, text.as_bytes()).map_err(|source| BootstrapError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// Makes sure `--kubeconfig` holds usable client credentials, bootstrapping them if needed.
/// Retries with back-off until it succeeds (the caller races it against shutdown).
pub async fn ensure_client_credentials(
    config: &Config,
    status: &Shared,
) -> Result<(), BootstrapError> {
    let (Some(bootstrap), Some(kubeconfig)) = (
        config.certificates.bootstrap_kubeconfig.as_deref(),
        config.cluster.kubeconfig.as_deref(),
    ) else {
        return Ok(());
    };
    if kubeconfig.exists() {
        match apiclient::inspect(kubeconfig).await {
            Ok(f) => match &f.client_chain {
                None => return Ok(()),
                Some(chain) if leaf_valid(chain) => return Ok(()),
                Some(_) => {
                    tracing::warn!(kubeconfig = %kubeconfig.display(), "the kubeconfig's client certificate has expired: bootstrapping")
                }
            },
            Err(e) => tracing::warn!(error = %e, "the kubeconfig cannot be used: bootstrapping"),
        }
    }
    let facts = apiclient::inspect(bootstrap).await?;
    let profile = profile::profile(IdentityKind::Client);
    let store = Store::new(&config.certificates.cert_dir, &profile.file_prefix);
    if let Some(pair) = store.load_current()?
        && leaf_valid(&pair.chain)
    {
        tracing::info!(file = %store.current_path().display(), "reusing the stored client certificate; writing the kubeconfig");
        return write_kubeconfig(kubeconfig, &facts, &store.current_path());
    }
    let mut backoff = Duration::from_secs(2);
    let mut failed = 0u32;
    loop {
        match attempt(config, bootstrap, &facts, &store, status, failed).await {
            Ok(()) => return write_kubeconfig(kubeconfig, &facts, &store.current_path()),
            Err(e) => {
                failed += 1;
                metrics::renew_error(IdentityKind::Client);
                if matches!(
                    e,
                    rotation::RotationError::Refused { .. } | rotation::RotationError::Rejected(_)
                ) {
                    store.clear_pending_key();
                }
                tracing::warn!(error = %e, retry_in = ?backoff, "TLS bootstrap failed; retrying");
                let msg = e.to_string();
                status.identity(IdentityKind::Client, |s| s.last_error = Some(msg));
                tokio::time::sleep(backoff.mul_f64(rand::rng().random_range(1.0..1.1))).await;
                backoff = (backoff * 2).min(Duration::from_secs(32));
            }
        }
    }
}

async fn attempt(
    config: &Config,
    bootstrap: &Path,
    facts: &apiclient::KubeconfigFacts,
    store: &Store,
    status: &Shared,
    failed: u32,
) -> Result<(), rotation::RotationError> {
    let profile = profile::profile(IdentityKind::Client);
    let client = apiclient::connect(
        bootstrap,
        config.cluster.kube_api_qps,
        config.cluster.kube_api_burst,
    )
    .await
    .map_err(|e| rotation::RotationError::Api(e.to_string()))?;
    let key = store.pending_key()?;
    let req = csr::build(profile, &config.node_name, &[], &key)?;
    let requested_at = now_f64();
    let api: Api<CertificateSigningRequest> = Api::all(client.client);
    rotation::submit(&api, &req).await?;
    tracing::info!(csr = %req.name, signer = %profile.signer, "TLS bootstrap: certificate signing request submitted; waiting for approval");
    let pem = rotation::wait_issued(&api, &req.name, BOOTSTRAP_WAIT).await?;
    let issued_at = now_f64();
    let chain = validate::parse_chain(pem.as_bytes())?;
    let spki = key.subject_public_key_info();
    let info = validate::validate(
        &chain,
        &Expect {
            profile,
            node_name: &config.node_name,
            sans: &[],
            spki: &spki,
            roots: &facts.roots,
        },
        SystemTime::now(),
    )?;
    store.write(&pem, &key.serialize_pem())?;
    store.clear_pending_key();
    metrics::set_not_after(IdentityKind::Client, info.not_after);
    tracing::info!(csr = %req.name, serial = %info.serial, "TLS bootstrap: client certificate issued and stored");
    let record = RotationRecord {
        identity: IdentityKind::Client,
        trigger: "bootstrap".into(),
        request_id: None,
        old_serial: None,
        new_serial: info.serial.clone(),
        csr_name: req.name.clone(),
        requested_at,
        issued_at,
        published_at: now_f64(),
        failed_attempts: failed,
    };
    status.update(|s| s.rotations.push(record));
    Ok(())
}
