//! The 10250 TLS configuration with hot-swappable parts:
//!
//! - [`ServingResolver`]: the certificate served on every handshake is whatever the serving
//!   watch channel holds at that moment (rotation publishes there; static
//!   `tlsCertFile`/`tlsPrivateKeyFile` are reloaded into it when they change). No
//!   certificate, no handshake: the port fails closed.
//! - [`ClientCaVerifier`]: client certificates are verified against the
//!   `authentication.x509.clientCAFile` loaded most recently (CA rotation without restart).
//!
//! Both are built from the same TLS policy as before; a change to a file that does not load
//! (half written, key not matching) is logged and the previous value keeps serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::DistinguishedName;
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use super::signatures::HandshakeSignatures;
use super::{TlsError, TlsPolicy};

/// How often static files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The serving certificate channel: rotation or the file reloader write, the resolver reads.
pub type ServingTx = watch::Sender<Option<Arc<CertifiedKey>>>;
pub type ServingRx = watch::Receiver<Option<Arc<CertifiedKey>>>;

#[derive(Debug)]
pub struct ServingResolver(pub ServingRx);

impl ResolvesServerCert for ServingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.0.borrow().clone();
        if current.is_none() {
            tracing::warn!("no serving certificate available for the kubelet; handshake refused");
        }
        current
    }
}

/// Verifies client certificates against the current client CA bundle.
#[derive(Debug)]
pub struct ClientCaVerifier {
    inner: RwLock<Arc<dyn ClientCertVerifier>>,
    /// The CA names sent to clients (Go clients pick their certificate by them). rustls
    /// borrows them from the verifier, so each bundle's names are leaked once when it is
    /// loaded: a few hundred bytes per clientCAFile change.
    hints: RwLock<&'static [DistinguishedName]>,
    /// The handshake signatures are checked with the policy's algorithms, the same ones
    /// every bundle's WebPKI verifier is built with.
    signatures: HandshakeSignatures,
}

impl ClientCaVerifier {
    fn new(policy: &TlsPolicy, v: Arc<dyn ClientCertVerifier>) -> ClientCaVerifier {
        let hints = Box::leak(v.root_hint_subjects().to_vec().into_boxed_slice());
        ClientCaVerifier {
            inner: RwLock::new(v),
            hints: RwLock::new(hints),
            signatures: HandshakeSignatures::of(&policy.provider()),
        }
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, v: Arc<dyn ClientCertVerifier>) {
        let hints = Box::leak(v.root_hint_subjects().to_vec().into_boxed_slice());
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = v;
        *self.hints.write().unwrap_or_else(|p| p.into_inner()) = hints;
    }
}

/// A WebPKI verifier over `cas`: certificates optional at the handshake (bearer tokens),
/// verified when presented.
pub fn ca_verifier(
    policy: &TlsPolicy,
    cas: &[CertificateDer<'static>],
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(ca.clone())?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(policy.provider()))
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))
}

impl ClientCertVerifier for ClientCaVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        let hints: &'static [DistinguishedName] =
            *self.hints.read().unwrap_or_else(|p| p.into_inner());
        hints
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }
    super::signatures::delegate_handshake_signatures!(signatures);
}

/// A server configuration that reads the serving certificate from `serving` on every
/// handshake and verifies client certificates against `client_ca` when given.
pub fn server_config(
    policy: &TlsPolicy,
    serving: ServingRx,
    client_ca: Option<Arc<ClientCaVerifier>>,
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(policy.provider());
    let builder =
        ServerConfig::builder_with_provider(provider).with_protocol_versions(policy.versions())?;
    let builder = match client_ca {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(ServingResolver(serving)));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Resumed sessions skip the certificate; a session ticket must not outlive a rotation's
    // point: every new connection shows the current certificate.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(cfg)
}

/// A certified key from PEM files; the key must match the certificate.
pub fn certified_from_files(
    policy: &TlsPolicy,
    cert: &Path,
    key: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = super::load_certs(cert)?;
    let key_der = super::load_key(key)?;
    certified(policy, chain, key_der)
}

pub fn certified(
    policy: &TlsPolicy,
    chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    CertifiedKey::from_der(chain, key, &policy.provider())
        .map(Arc::new)
        .map_err(TlsError::Rustls)
}

/// A fingerprint of files' contents, to notice replacement (rename, rewrite, symlink swap).
fn fingerprint(paths: &[&Path]) -> Option<Vec<u8>> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in paths {
        h.update(std::fs::read(p).ok()?);
    }
    Some(h.finalize().to_vec())
}

/// Watches the static serving files and the client CA file; publishes every change that
/// loads. Runs until dropped.
pub struct FileReloader {
    pub policy: TlsPolicy,
    /// tlsCertFile and tlsPrivateKeyFile, with the channel they feed.
    pub serving: Option<(PathBuf, PathBuf, ServingTx)>,
    /// clientCAFile and the verifier it feeds.
    pub client_ca: Option<(PathBuf, Arc<ClientCaVerifier>)>,
}

impl FileReloader {
    pub async fn run(self) {
        let mut last_serving = self
            .serving
            .as_ref()
            .and_then(|(c, k, _)| fingerprint(&[c, k]));
        let mut last_ca = self.client_ca.as_ref().and_then(|(p, _)| fingerprint(&[p]));
        let mut tick = tokio::time::interval(RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some((cert, key, tx)) = &self.serving {
                let now = fingerprint(&[cert, key]);
                if now.is_some() && now != last_serving {
                    match certified_from_files(&self.policy, cert, key) {
                        Ok(ck) => {
                            let serial = ck
                                .end_entity_cert()
                                .ok()
                                .and_then(|c| super::validate::inspect(c).ok())
                                .map(|i| i.serial)
                                .unwrap_or_default();
                            tx.send_replace(Some(ck));
                            last_serving = now;
                            super::metrics::set_ttl_from_chain(
                                super::profile::IdentityKind::Serving,
                                tx.borrow().as_ref().map(|c| c.cert.as_slice()),
                            );
                            tracing::info!(file = %cert.display(), %serial, "tlsCertFile changed: now serving the new certificate");
                        }
                        Err(e) => {
                            tracing::warn!(file = %cert.display(), error = %e, "tlsCertFile/tlsPrivateKeyFile changed but do not load; still serving the previous certificate");
                        }
                    }
                }
            }
            if let Some((path, verifier)) = &self.client_ca {
                let now = fingerprint(&[path]);
                if now.is_some() && now != last_ca {
                    match super::load_certs(path).and_then(|cas| ca_verifier(&self.policy, &cas)) {
                        Ok(v) => {
                            verifier.set(v);
                            last_ca = now;
                            tracing::info!(file = %path.display(), "clientCAFile changed: client certificates are now verified against the new bundle");
                        }
                        Err(e) => {
                            tracing::warn!(file = %path.display(), error = %e, "clientCAFile changed but does not load; keeping the previous bundle")
                        }
                    }
                }
            }
        }
    }
}

/// The client CA verifier for `path`, loaded now.
pub fn client_ca(policy: &TlsPolicy, path: &Path) -> Result<Arc<ClientCaVerifier>, TlsError> {
    let cas = super::load_certs(path)?;
    Ok(Arc::new(ClientCaVerifier::new(
        policy,
        ca_verifier(policy, &cas)?,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use rustls::pki_types::pem::PemObject;

    fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, KeyPair> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        rcgen::CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    }

    fn leaf(ca: &rcgen::CertifiedIssuer<'static, KeyPair>) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write_new(path: &Path, text: &str) {
        // As an operator's tooling: a new file renamed over the old one.
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[tokio::test]
    async fn changed_files_are_reloaded_and_broken_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let (crt, key, cas) = (
            dir.path().join("s.crt"),
            dir.path().join("s.key"),
            dir.path().join("ca.crt"),
        );
        let ca1 = ca("ca-one");
        let (c1, k1) = leaf(&ca1);
        std::fs::write(&crt, &c1).unwrap();
        std::fs::write(&key, &k1).unwrap();
        std::fs::write(&cas, ca1.pem()).unwrap();
        let policy = TlsPolicy::from_config(None, &[]).unwrap();
        let first = certified_from_files(&policy, &crt, &key).unwrap();
        let (tx, mut rx) = watch::channel(Some(first));
        let verifier = client_ca(&policy, &cas).unwrap();
        let hint = |v: &ClientCaVerifier| format!("{:?}", v.root_hint_subjects());
        let hints_before = hint(&verifier);
        let reloader = FileReloader {
            policy,
            serving: Some((crt.clone(), key.clone(), tx)),
            client_ca: Some((cas.clone(), verifier.clone())),
        };
        let task = tokio::spawn(reloader.run());
        // A certificate whose key does not match is not published.
        let (c2, k2) = leaf(&ca1);
        write_new(&crt, &c2);
        tokio::time::sleep(RELOAD_INTERVAL * 2).await;
        assert!(
            !rx.has_changed().unwrap(),
            "a mismatched pair was published"
        );
        // The matching key arrives: the new pair is served.
        write_new(&key, &k2);
        tokio::time::timeout(RELOAD_INTERVAL * 3, rx.changed())
            .await
            .unwrap()
            .unwrap();
        let served = rx.borrow_and_update().clone().unwrap();
        assert_eq!(
            served.cert[0].as_ref(),
            CertificateDer::from_pem_slice(c2.as_bytes())
                .unwrap()
                .as_ref()
        );
        // A new client CA bundle replaces the old one (its name is now hinted).
        let ca2 = ca("ca-two");
        write_new(&cas, &ca2.pem());
        let deadline = tokio::time::Instant::now() + RELOAD_INTERVAL * 3;
        while hint(&verifier) == hints_before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "client CA not reloaded"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        task.abort();
    }
}
