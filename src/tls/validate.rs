//! What a certificate says (for status and reports) and whether an issued certificate may
//! be published: chain to the cluster CA (webpki, with the profile's extended key usage and
//! the time), the node's name in the subject, the key we hold, the validity window, the
//! key usage and the SANs asked for. Nothing is published that fails one of these.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;

use super::csr::San;
use super::profile::{Profile, Usage};

/// The facts of one certificate.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertInfo {
    pub subject: String,
    pub common_name: String,
    pub organization: Vec<String>,
    pub sans: Vec<String>,
    pub issuer: String,
    /// Hex, as openssl prints it.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub key_type: String,
}

impl CertInfo {
    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.not_after - self.not_before).unwrap_or(0))
    }

    /// Seconds left at `now` (negative once expired).
    pub fn remaining(&self, now: SystemTime) -> i64 {
        self.not_after - unix(now)
    }
}

pub fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Rejected {
    #[error("certificate unreadable: {0}")]
    Unreadable(String),
    #[error("does not chain to the cluster CA (or is outside its validity or usage): {0}")]
    Chain(String),
    #[error("wrong node name: the certificate is for {got:?}, this node is {want:?}")]
    NodeName { got: String, want: String },
    #[error("wrong organization: {got:?}, expected {want:?}")]
    Organization { got: Vec<String>, want: Vec<String> },
    #[error("the certificate is for another key than the one this node generated")]
    KeyMismatch,
    #[error("validity window: {0}")]
    Validity(String),
    #[error("key usage: {0}")]
    Usage(String),
    #[error("subject alternative names: {0}")]
    Sans(String),
}

/// The certificate chain of a CSR's status.certificate (PEM, leaf first).
pub fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Rejected> {
    use rustls::pki_types::pem::PemObject;
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Rejected::Unreadable(e.to_string()))?;
    if chain.is_empty() {
        return Err(Rejected::Unreadable(
            "no certificate in the PEM data".into(),
        ));
    }
    Ok(chain)
}

/// Reads the facts of a DER certificate.
pub fn inspect(der: &[u8]) -> Result<CertInfo, Rejected> {
    let (_, x) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Rejected::Unreadable(e.to_string()))?;
    let subject = x.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let organization = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_owned))
        .collect();
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = x.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => sans.push(format!("DNS:{d}")),
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    let ip: Option<std::net::IpAddr> = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(Into::into),
                        16 => <[u8; 16]>::try_from(*b).ok().map(Into::into),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        sans.push(format!("IP:{ip}"));
                    }
                }
                _ => {}
            }
        }
    }
    let key_type = match x.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::EC(p)) => format!("ECDSA P-{}", p.key_size()),
        Ok(x509_parser::public_key::PublicKey::RSA(r)) => format!("RSA {}", r.key_size()),
        Ok(_) => "other".into(),
        Err(_) => "unknown".into(),
    };
    Ok(CertInfo {
        subject: subject.to_string(),
        common_name: cn,
        organization,
        sans,
        issuer: x.issuer().to_string(),
        serial: x.raw_serial_as_string().replace(':', ""),
        not_before: x.validity().not_before.timestamp(),
        not_after: x.validity().not_after.timestamp(),
        key_type,
    })
}

/// What an issued certificate must match.
pub struct Expect<'a> {
    pub profile: &'a Profile,
    pub node_name: &'a str,
    pub sans: &'a [San],
    /// SubjectPublicKeyInfo DER of the key this node holds.
    pub spki: &'a [u8],
    pub roots: &'a [CertificateDer<'static>],
}

/// Checks `chain` (leaf first) against `want` at `now`; the facts of the leaf when it passes.
pub fn validate(
    chain: &[CertificateDer<'static>],
    want: &Expect<'_>,
    now: SystemTime,
) -> Result<CertInfo, Rejected> {
    let leaf = chain
        .first()
        .ok_or_else(|| Rejected::Unreadable("empty chain".into()))?;
    let info = inspect(leaf)?;
    let (_, x) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| Rejected::Unreadable(e.to_string()))?;

    // The key: the certificate must carry our public key.
    if x.tbs_certificate.subject_pki.raw != want.spki {
        return Err(Rejected::KeyMismatch);
    }
    // The subject: exactly the node.
    let cn = want.profile.common_name(want.node_name);
    if info.common_name != cn {
        return Err(Rejected::NodeName {
            got: info.common_name.clone(),
            want: cn,
        });
    }
    if info.organization != want.profile.organization {
        return Err(Rejected::Organization {
            got: info.organization.clone(),
            want: want.profile.organization.clone(),
        });
    }
    // Validity: started (allowing 5 minutes of clock skew), not over, a positive lifetime.
    let now_s = unix(now);
    if info.not_after <= info.not_before {
        return Err(Rejected::Validity(
            "not after is not later than not before".into(),
        ));
    }
    if info.not_after <= now_s {
        return Err(Rejected::Validity("already expired".into()));
    }
    if info.not_before > now_s + 300 {
        return Err(Rejected::Validity(
            "starts more than 5 minutes in the future".into(),
        ));
    }
    // Key usage: digital signature (ECDSA) and not a CA.
    if let Ok(Some(ku)) = x.key_usage()
        && want.profile.needs(Usage::DigitalSignature)
        && !ku.value.digital_signature()
    {
        return Err(Rejected::Usage("digital signature missing".into()));
    }
    if let Ok(Some(bc)) = x.basic_constraints()
        && bc.value.ca
    {
        return Err(Rejected::Usage(
            "a CA certificate cannot be a node identity".into(),
        ));
    }
    // SANs: every one asked for is present.
    for s in want.sans {
        if !info.sans.contains(&s.to_string()) {
            return Err(Rejected::Sans(format!("{s} was requested but is missing")));
        }
    }
    // The chain, validity and extended key usage, by webpki.
    let mut roots = RootCertStore::empty();
    for r in want.roots {
        roots
            .add(r.clone())
            .map_err(|e| Rejected::Chain(e.to_string()))?;
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let at = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
    let intermediates = &chain[1..];
    if want.profile.needs(Usage::ClientAuth) {
        let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| Rejected::Chain(e.to_string()))?;
        v.verify_client_cert(leaf, intermediates, at)
            .map_err(|e| Rejected::Chain(e.to_string()))?;
    }
    if want.profile.needs(Usage::ServerAuth) {
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| Rejected::Chain(e.to_string()))?;
        let name = match want.sans.first() {
            Some(San::Ip(ip)) => ServerName::IpAddress((*ip).into()),
            Some(San::Dns(d)) => {
                ServerName::try_from(d.clone()).map_err(|e| Rejected::Sans(e.to_string()))?
            }
            None => return Err(Rejected::Sans("a serving certificate needs a SAN".into())),
        };
        v.verify_server_cert(leaf, intermediates, &name, &[], at)
            .map_err(|e| Rejected::Chain(e.to_string()))?;
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::profile::{self, IdentityKind};
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose, PublicKeyData,
    };

    struct Ca(rcgen::CertifiedIssuer<'static, KeyPair>);

    impl Ca {
        fn new() -> Ca {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, "test-ca");
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            Ca(rcgen::CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap())
        }
        fn sign(
            &self,
            cn: &str,
            key: &KeyPair,
            eku: ExtendedKeyUsagePurpose,
            sans: Vec<String>,
        ) -> CertificateDer<'static> {
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.distinguished_name
                .push(DnType::OrganizationName, "system:nodes");
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![eku];
            p.signed_by(key, &self.0).unwrap().der().clone()
        }
    }

    #[test]
    fn only_the_right_certificate_passes() {
        let ca = Ca::new();
        let other_ca = Ca::new();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let spki = key.subject_public_key_info();
        let roots = vec![ca.0.der().clone()];
        let client = profile::profile(IdentityKind::Client);
        let want = Expect {
            profile: client,
            node_name: "n1",
            sans: &[],
            spki: &spki,
            roots: &roots,
        };
        let now = SystemTime::now();
        let good = ca.sign(
            "system:node:n1",
            &key,
            ExtendedKeyUsagePurpose::ClientAuth,
            vec![],
        );
        let info = validate(&[good], &want, now).unwrap();
        assert_eq!(info.common_name, "system:node:n1");
        assert_eq!(info.key_type, "ECDSA P-256");

        let wrong_name = ca.sign(
            "system:node:evil",
            &key,
            ExtendedKeyUsagePurpose::ClientAuth,
            vec![],
        );
        assert!(matches!(
            validate(&[wrong_name], &want, now),
            Err(Rejected::NodeName { .. })
        ));
        let other_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let wrong_key = ca.sign(
            "system:node:n1",
            &other_key,
            ExtendedKeyUsagePurpose::ClientAuth,
            vec![],
        );
        assert_eq!(
            validate(&[wrong_key], &want, now),
            Err(Rejected::KeyMismatch)
        );
        let foreign = other_ca.sign(
            "system:node:n1",
            &key,
            ExtendedKeyUsagePurpose::ClientAuth,
            vec![],
        );
        assert!(matches!(
            validate(&[foreign], &want, now),
            Err(Rejected::Chain(_))
        ));
        let server_eku = ca.sign(
            "system:node:n1",
            &key,
            ExtendedKeyUsagePurpose::ServerAuth,
            vec![],
        );
        assert!(matches!(
            validate(&[server_eku], &want, now),
            Err(Rejected::Chain(_))
        ));

        let serving = profile::profile(IdentityKind::Serving);
        let sans = vec![San::Dns("n1".into()), San::Ip("127.0.0.1".parse().unwrap())];
        let want = Expect {
            profile: serving,
            node_name: "n1",
            sans: &sans,
            spki: &spki,
            roots: &roots,
        };
        let good = ca.sign(
            "system:node:n1",
            &key,
            ExtendedKeyUsagePurpose::ServerAuth,
            vec!["n1".into(), "127.0.0.1".into()],
        );
        let info = validate(&[good], &want, now).unwrap();
        assert_eq!(
            info.sans,
            vec!["DNS:n1".to_string(), "IP:127.0.0.1".to_string()]
        );
        let missing = ca.sign(
            "system:node:n1",
            &key,
            ExtendedKeyUsagePurpose::ServerAuth,
            vec!["n1".into()],
        );
        assert!(matches!(
            validate(&[missing], &want, now),
            Err(Rejected::Sans(_))
        ));
    }
}
