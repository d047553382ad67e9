//! One rotation loop per identity (linkerd2-proxy's shape): wait until a deadline drawn
//! uniformly from the profile's window (70–90 % of the validity) or an operator's request;
//! make a key (0600 at creation) and a CSR; submit it; watch it until it is issued, denied
//! or the wait times out; validate the certificate; store it; publish it (the API client's
//! identity or the 10250 resolver's channel). Any failure backs off (2 s doubling to 32 s)
//! and retries; the old certificate keeps serving meanwhile. A client certificate that
//! expired is renewed through the bootstrap kubeconfig when one is configured.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::Api;
use kube::api::{PostParams, WatchEvent, WatchParams};
use rand::Rng;
use rcgen::PublicKeyData;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::mpsc;

use super::control::{RotationRecord, Shared, now_f64};
use super::csr::{self, San};
use super::profile::{IdentityKind, Profile};
use super::store::Store;
use super::validate::{self, CertInfo, Expect};
use super::{TlsPolicy, metrics, serving};
use crate::apiclient::{self, ApiClient};

/// How long one attempt waits for a CSR to be issued (upstream: 15 minutes).
pub const ISSUE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const BACKOFF_START: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(32);

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("{0}")]
    Key(#[from] super::store::StoreError),
    #[error("{0}")]
    Csr(#[from] csr::CsrError),
    #[error("API server: {0}")]
    Api(String),
    #[error("CSR {name} {how}")]
    Refused { name: String, how: String },
    #[error("CSR {0} was not issued in time")]
    Timeout(String),
    #[error("issued certificate rejected: {0}")]
    Rejected(#[from] validate::Rejected),
    #[error("publish: {0}")]
    Publish(String),
}

impl RotationError {
    /// Failures after which the pending key is dropped, so the retry asks with a new key
    /// (and so a new CSR) instead of fetching the same refused or bad answer again.
    fn is_final(&self) -> bool {
        matches!(
            self,
            RotationError::Refused { .. } | RotationError::Rejected(_)
        )
    }
}

/// Where a new certificate goes.
pub enum Output {
    Client(Arc<apiclient::Identity>),
    Serving(serving::ServingTx),
}

/// The current certificate of an identity and its planned rotation.
#[derive(Debug, Clone)]
pub struct Current {
    pub info: CertInfo,
    pub deadline: SystemTime,
}

/// The random point in the profile's window of `info`'s validity.
pub fn deadline(profile: &Profile, info: &CertInfo) -> SystemTime {
    let f = rand::rng().random_range(profile.window_start..profile.window_end);
    deadline_at(info, f)
}

pub fn deadline_at(info: &CertInfo, fraction: f64) -> SystemTime {
    let total = info.lifetime().as_secs_f64();
    let start = UNIX_EPOCH + Duration::from_secs(u64::try_from(info.not_before).unwrap_or(0));
    start + Duration::from_secs_f64((total * fraction).max(0.0))
}

pub struct Rotator {
    pub profile: &'static Profile,
    pub node_name: String,
    pub store: Store,
    /// The cluster CA, which issued certificates must chain to.
    pub roots: Vec<CertificateDer<'static>>,
    pub sans: Vec<San>,
    pub policy: TlsPolicy,
    /// Sends the CSRs (the node's own identity).
    pub api: ApiClient,
    /// For renewing an expired client certificate: (bootstrap kubeconfig, qps, burst).
    pub bootstrap: Option<(PathBuf, f64, u32)>,
    pub output: Output,
    pub requests: mpsc::UnboundedReceiver<String>,
    pub status: Shared,
    pub events: crate::events::Recorder,
    pub current: Option<CertInfo>,
    pub issue_timeout: Duration,
}

fn kind_of(p: &Profile) -> IdentityKind {
    p.identity
}

impl Rotator {
    pub async fn run(mut self) {
        let kind = kind_of(self.profile);
        let mut planned: Option<SystemTime> =
            self.current.as_ref().map(|c| deadline(self.profile, c));
        loop {
            let now = SystemTime::now();
            let (trigger, request_id) = match (&self.current, planned) {
                (Some(c), Some(at)) if c.remaining(now) > 0 => {
                    self.status
                        .identity(kind, |s| s.next_rotation = Some(validate::unix(at)));
                    let wait = at.duration_since(now).unwrap_or_default();
                    let requests = &mut self.requests;
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => ("deadline", None),
                        Some(id) = requests.recv() => ("request", Some(id)),
                    }
                }
                (Some(_), _) => ("expired", None),
                (None, _) => ("missing", None),
            };
            tracing::info!(identity = kind.as_str(), trigger, request = ?request_id, "certificate rotation starting");
            let mut backoff = BACKOFF_START;
            let mut failed = 0u32;
            loop {
                match self.rotate_once(trigger, request_id.clone(), failed).await {
                    Ok(info) => {
                        planned = Some(deadline(self.profile, &info));
                        self.current = Some(info);
                        break;
                    }
                    Err(e) => {
                        failed += 1;
                        metrics::renew_error(kind);
                        if e.is_final() {
                            self.store.clear_pending_key();
                        }
                        tracing::warn!(identity = kind.as_str(), error = %e, retry_in = ?backoff, "certificate rotation failed; the current certificate stays in use");
                        self.events.node(
                            &self.node_name,
                            crate::events::WARNING,
                            "CertificateRotationFailed",
                            format!("{} certificate: {e}", kind.as_str()),
                        );
                        let msg = e.to_string();
                        self.status.identity(kind, |s| {
                            s.last_error = Some(msg);
                            s.renew_errors = metrics::renew_errors(kind);
                        });
                        let jitter = rand::rng().random_range(1.0..1.1);
                        tokio::time::sleep(backoff.mul_f64(jitter)).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
        }
    }

    /// The client the CSR goes through: the node's own, or, for a client certificate that
    /// has expired, one from the bootstrap kubeconfig.
    async fn signer_client(&self) -> Result<kube::Client, RotationError> {
        let expired = self
            .current
            .as_ref()
            .is_none_or(|c| c.remaining(SystemTime::now()) <= 0);
        if self.profile.identity == IdentityKind::Client
            && expired
            && let Some((path, qps, burst)) = &self.bootstrap
        {
            tracing::warn!(kubeconfig = %path.display(), "client certificate expired or missing: renewing through the bootstrap kubeconfig");
            let c = apiclient::connect(path, *qps, *burst)
                .await
                .map_err(|e| RotationError::Api(format!("bootstrap kubeconfig: {e}")))?;
            return Ok(c.client);
        }
        Ok(self.api.client.clone())
    }

    async fn rotate_once(
        &mut self,
        trigger: &str,
        request_id: Option<String>,
        failed: u32,
    ) -> Result<CertInfo, RotationError> {
        let kind = self.profile.identity;
        let key = self.store.pending_key()?;
        let req = csr::build(self.profile, &self.node_name, &self.sans, &key)?;
        let requested_at = now_f64();
        let client = self.signer_client().await?;
        let api: Api<CertificateSigningRequest> = Api::all(client);
        submit(&api, &req).await?;
        tracing::info!(identity = kind.as_str(), csr = %req.name, signer = %self.profile.signer, "certificate signing request submitted");
        let pem = wait_issued(&api, &req.name, self.issue_timeout).await?;
        let issued_at = now_f64();
        let chain = validate::parse_chain(pem.as_bytes())?;
        let spki = key.subject_public_key_info();
        let want = Expect {
            profile: self.profile,
            node_name: &self.node_name,
            sans: &self.sans,
            spki: &spki,
            roots: &self.roots,
        };
        let info = match validate::validate(&chain, &want, SystemTime::now()) {
            Ok(i) => i,
            Err(r) => {
                tracing::warn!(identity = kind.as_str(), csr = %req.name, reason = %r, "issued certificate rejected; not published");
                return Err(r.into());
            }
        };
        let key_pem = key.serialize_pem();
        let file = self.store.write(&pem, &key_pem)?;
        self.store.clear_pending_key();
        match &self.output {
            Output::Client(identity) => identity
                .set_pem(pem.as_bytes(), key_pem.as_bytes())
                .map_err(|e| RotationError::Publish(e.to_string()))?,
            Output::Serving(tx) => {
                let der = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                    .map_err(|e| RotationError::Publish(e.to_string()))?;
                let ck = serving::certified(&self.policy, chain.clone(), der)
                    .map_err(|e| RotationError::Publish(e.to_string()))?;
                tx.send_replace(Some(ck));
            }
        }
        let published_at = now_f64();
        metrics::set_not_after(kind, info.not_after);
        let old = self.current.clone();
        if kind == IdentityKind::Serving
            && let Some(o) = &old
        {
            metrics::server_rotated(
                (validate::unix(SystemTime::now()) - o.not_before).max(0) as f64
            );
        }
        let old_serial = old.as_ref().map(|o| o.serial.clone());
        tracing::info!(
            identity = kind.as_str(),
            trigger,
            request = ?request_id,
            csr = %req.name,
            old_serial = ?old_serial,
            new_serial = %info.serial,
            not_after = info.not_after,
            file = %file.display(),
            "certificate rotated and published"
        );
        self.events.node(
            &self.node_name,
            crate::events::NORMAL,
            "CertificateRotated",
            format!(
                "{} certificate rotated: serial {} (CSR {}), valid until {}",
                kind.as_str(),
                info.serial,
                req.name,
                info.not_after
            ),
        );
        let record = RotationRecord {
            identity: kind,
            trigger: trigger.to_owned(),
            request_id,
            old_serial,
            new_serial: info.serial.clone(),
            csr_name: req.name.clone(),
            requested_at,
            issued_at,
            published_at,
            failed_attempts: failed,
        };
        let file_s = self.store.current_path().display().to_string();
        let info_c = info.clone();
        self.status.update(|s| {
            s.rotations.push(record);
            let id = s.identities.entry(kind.as_str().to_owned()).or_default();
            id.source = "rotation".into();
            id.file = Some(file_s);
            id.certificate = Some(info_c);
            id.last_error = None;
        });
        Ok(info)
    }
}

/// Creates the CSR, or finds the one a previous attempt made with the same key.
pub async fn submit(
    api: &Api<CertificateSigningRequest>,
    req: &csr::Request,
) -> Result<(), RotationError> {
    match api.create(&PostParams::default(), &req.object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_already_exists() => {
            tracing::info!(csr = %req.name, "certificate signing request already exists (same key): waiting for it");
            Ok(())
        }
        Err(e) => Err(RotationError::Api(format!("create CSR {}: {e}", req.name))),
    }
}

/// Some(certificate PEM) once issued; an error once denied or failed.
fn issued(csr: &CertificateSigningRequest, name: &str) -> Result<Option<String>, RotationError> {
    let status = csr.status.as_ref();
    for c in status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
    {
        if (c.type_ == "Denied" || c.type_ == "Failed") && c.status != "False" {
            return Err(RotationError::Refused {
                name: name.to_owned(),
                how: format!(
                    "{}: {} {}",
                    c.type_.to_lowercase(),
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default()
                ),
            });
        }
    }
    match status.and_then(|s| s.certificate.as_ref()) {
        Some(b) if !b.0.is_empty() => String::from_utf8(b.0.clone()).map(Some).map_err(|_| {
            validate::Rejected::Unreadable("status.certificate is not PEM text".into()).into()
        }),
        _ => Ok(None),
    }
}

/// Watches the CSR until it is issued, refused, or `timeout` passes.
pub async fn wait_issued(
    api: &Api<CertificateSigningRequest>,
    name: &str,
    timeout: Duration,
) -> Result<String, RotationError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let api_err = |e: kube::Error| RotationError::Api(format!("CSR {name}: {e}"));
    loop {
        let csr = api.get(name).await.map_err(api_err)?;
        if let Some(pem) = issued(&csr, name)? {
            return Ok(pem);
        }
        let rv = csr.metadata.resource_version.clone().unwrap_or_default();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(RotationError::Timeout(name.to_owned()));
        }
        let secs = u32::try_from(left.as_secs().clamp(1, 290)).unwrap_or(290);
        let wp = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(secs);
        let stream = api.watch(&wp, &rv).await.map_err(api_err)?;
        let mut stream = stream.boxed();
        loop {
            let next = tokio::time::timeout_at(deadline, stream.try_next()).await;
            match next {
                Err(_) => return Err(RotationError::Timeout(name.to_owned())),
                Ok(Err(e)) => {
                    tracing::debug!(csr = name, error = %e, "CSR watch ended; watching again");
                    break;
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(WatchEvent::Added(c) | WatchEvent::Modified(c)))) => {
                    if let Some(pem) = issued(&c, name)? {
                        return Ok(pem);
                    }
                }
                Ok(Ok(Some(WatchEvent::Deleted(_)))) => {
                    return Err(RotationError::Refused {
                        name: name.to_owned(),
                        how: "was deleted before it was issued".into(),
                    });
                }
                Ok(Ok(Some(WatchEvent::Bookmark(_)))) => {}
                Ok(Ok(Some(WatchEvent::Error(e)))) => {
                    tracing::debug!(csr = name, error = ?e, "CSR watch error; watching again");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_fall_in_the_window() {
        let info = CertInfo {
            subject: String::new(),
            common_name: String::new(),
            organization: vec![],
            sans: vec![],
            issuer: String::new(),
            serial: String::new(),
            not_before: 1_000_000,
            not_after: 1_000_000 + 1000,
            key_type: String::new(),
        };
        let p = super::super::profile::profile(IdentityKind::Client);
        for _ in 0..1000 {
            let d = validate::unix(deadline(p, &info)) - 1_000_000;
            assert!((700..=900).contains(&d), "{d}");
        }
        assert_eq!(validate::unix(deadline_at(&info, 0.7)), 1_000_700);
    }
}
