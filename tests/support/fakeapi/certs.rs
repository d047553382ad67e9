//! The fixture's own PKI: a CA made at start, the serving certificate for 127.0.0.1 and
//! localhost, client certificates (user = CN, groups = O, as the real API server reads them)
//! and CSR signing for certificates.k8s.io.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    pub serving_chain: Vec<CertificateDer<'static>>,
    pub serving_key_der: Vec<u8>,
}

fn validity(p: &mut CertificateParams, lifetime: Duration) {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    // Back-date a minute like real signers do, so clock skew does not make a fresh cert "not yet valid".
    p.not_before = epoch + since_epoch.saturating_sub(Duration::from_secs(60));
    p.not_after = epoch + since_epoch + lifetime;
}

impl Pki {
    pub fn new() -> Pki {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "fakeapi-ca");
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut p, Duration::from_secs(24 * 3600));
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().expect("ca key"))
            .expect("self-signed ca");

        let mut s = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("serving params");
        s.distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        s.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut s, Duration::from_secs(24 * 3600));
        let key = KeyPair::generate().expect("serving key");
        let cert = s.signed_by(&key, &ca).expect("serving cert");
        Pki {
            serving_chain: vec![cert.der().clone()],
            serving_key_der: key.serialize_der(),
            ca,
        }
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    pub fn serving_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.serving_key_der.clone()))
    }

    /// A client certificate: CN = user, one O per group. Returns (cert PEM, key PEM).
    pub fn client_cert(&self, cn: &str, groups: &[&str], lifetime: Duration) -> (String, String) {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("client params");
        p.distinguished_name.push(DnType::CommonName, cn);
        for g in groups {
            p.distinguished_name.push(DnType::OrganizationName, *g);
        }
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut p, lifetime);
        let key = KeyPair::generate().expect("client key");
        let cert = p.signed_by(&key, &self.ca).expect("client cert");
        (cert.pem(), key.serialize_pem())
    }

    /// Signs a PEM CSR as the cluster's signer would: subject and SANs from the request,
    /// usages from the CSR object's spec.usages, lifetime as given. `misbehave` makes a
    /// broken signer: another node's name, or another key than the request's.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        usages: &[String],
        lifetime: Duration,
        misbehave: Option<super::CsrMisbehavior>,
    ) -> Result<String, String> {
        let mut req = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| format!("cannot parse CSR: {e}"))?;
        let p = &mut req.params;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages.clear();
        p.extended_key_usages.clear();
        for u in usages {
            match u.as_str() {
                "digital signature" => p.key_usages.push(KeyUsagePurpose::DigitalSignature),
                "key encipherment" => p.key_usages.push(KeyUsagePurpose::KeyEncipherment),
                "client auth" => p
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ClientAuth),
                "server auth" => p
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ServerAuth),
                other => return Err(format!("unsupported usage {other:?}")),
            }
        }
        validity(p, lifetime);
        let cert = match misbehave {
            None => req.signed_by(&self.ca),
            Some(super::CsrMisbehavior::WrongCommonName) => {
                let mut dn = DistinguishedName::new();
                dn.push(DnType::CommonName, "system:node:intruder");
                dn.push(DnType::OrganizationName, "system:nodes");
                req.params.distinguished_name = dn;
                req.signed_by(&self.ca)
            }
            Some(super::CsrMisbehavior::WrongKey) => {
                let other = KeyPair::generate().map_err(|e| e.to_string())?;
                req.params.signed_by(&other, &self.ca)
            }
        }
        .map_err(|e| format!("cannot sign CSR: {e}"))?;
        Ok(cert.pem())
    }
}

/// rustls server config: TLS 1.2/1.3 with ring, client certificates from the fixture CA
/// optional at the handshake (bearer tokens are the other way in; anonymous is refused per
/// request with 401).
pub fn server_config(pki: &Pki) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der()).expect("ca into root store");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .expect("client verifier");
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(pki.serving_chain.clone(), pki.serving_key())
        .expect("serving cert");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// User name (CN) and groups (O) of a verified client certificate.
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<(String, Vec<String>)> {
    let (_, x) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = x.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    Some((cn, groups))
}
