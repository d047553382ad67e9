//! Certificate signing requests from a profile: the PKCS#10 request (subject, SANs, key)
//! and the certificates.k8s.io/v1 object around it (signer, usages), with upstream's
//! deterministic name so that a restarted agent finds the request it already made.

use std::net::IpAddr;

use base64::Engine;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData, SanType};
use sha2::Digest;

use super::profile::{IdentityKind, Profile};

/// A subject alternative name the request carries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
}

impl std::fmt::Display for San {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            San::Dns(d) => write!(f, "DNS:{d}"),
            San::Ip(i) => write!(f, "IP:{i}"),
        }
    }
}

/// The SANs of a serving certificate from the node's addresses, as upstream: the hostname
/// (an IP SAN when it parses as one) and the InternalIP; sorted, deduplicated.
pub fn node_sans(profile: &Profile, hostname: &str, internal_ip: Option<IpAddr>) -> Vec<San> {
    use super::profile::SanSource;
    let mut out = Vec::new();
    for src in &profile.sans {
        match src {
            SanSource::Hostname => out.push(match hostname.parse::<IpAddr>() {
                Ok(ip) => San::Ip(ip),
                Err(_) => San::Dns(hostname.to_owned()),
            }),
            SanSource::InternalIp => out.extend(internal_ip.map(San::Ip)),
        }
    }
    out.sort();
    out.dedup();
    out
}

#[derive(Debug, thiserror::Error)]
#[error("certificate request: {0}")]
pub struct CsrError(String);

/// A request ready to submit.
#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    pub object: CertificateSigningRequest,
}

/// Builds the CSR object for `profile` and `key`.
pub fn build(
    profile: &Profile,
    node_name: &str,
    sans: &[San],
    key: &KeyPair,
) -> Result<Request, CsrError> {
    let cn = profile.common_name(node_name);
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| CsrError(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn.clone());
    for o in &profile.organization {
        dn.push(DnType::OrganizationName, o.clone());
    }
    params.distinguished_name = dn;
    for s in sans {
        params.subject_alt_names.push(match s {
            San::Dns(d) => SanType::DnsName(
                d.clone()
                    .try_into()
                    .map_err(|e| CsrError(format!("DNS SAN {d:?}: {e}")))?,
            ),
            San::Ip(ip) => SanType::IpAddress(*ip),
        });
    }
    let pem = params
        .serialize_request(key)
        .and_then(|r| r.pem())
        .map_err(|e| CsrError(e.to_string()))?;
    let usages: Vec<String> = profile
        .usages
        .iter()
        .map(|u| u.as_str().to_owned())
        .collect();
    let name = request_name(profile, &key.subject_public_key_info(), &cn, sans, &usages);
    let object = CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(pem.into_bytes()),
            signer_name: profile.signer.clone(),
            usages: Some(usages),
            ..Default::default()
        },
        status: None,
    };
    Ok(Request { name, object })
}

/// `node-csr-` (client) or `csr-` (serving) and base64url of SHA-512/256 over the public
/// key, subject, SANs, usages and signer: the same inputs give the same name.
fn request_name(
    profile: &Profile,
    spki: &[u8],
    cn: &str,
    sans: &[San],
    usages: &[String],
) -> String {
    let mut h = sha2::Sha512_256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    field(spki);
    field(cn.as_bytes());
    for o in &profile.organization {
        field(o.as_bytes());
    }
    for s in sans {
        field(s.to_string().as_bytes());
    }
    for u in usages {
        field(u.as_bytes());
    }
    field(profile.signer.as_bytes());
    let digest = h.finalize();
    let prefix = match profile.identity {
        IdentityKind::Client => "node-csr-",
        IdentityKind::Serving => "csr-",
    };
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::profile::{self, IdentityKind};

    #[test]
    fn the_request_has_upstreams_shape_and_a_stable_name() {
        let p = profile::profile(IdentityKind::Serving);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let sans = node_sans(p, "node-1", Some("198.18.0.5".parse().unwrap()));
        assert_eq!(
            sans,
            vec![
                San::Dns("node-1".into()),
                San::Ip("198.18.0.5".parse().unwrap())
            ]
        );
        let r = build(p, "node-1", &sans, &key).unwrap();
        let again = build(p, "node-1", &sans, &key).unwrap();
        assert_eq!(r.name, again.name);
        assert!(r.name.starts_with("csr-"));
        assert_eq!(r.object.spec.signer_name, "kubernetes.io/kubelet-serving");
        assert_eq!(
            r.object.spec.usages.as_deref().unwrap(),
            ["digital signature", "server auth"]
        );
        let pem = String::from_utf8(r.object.spec.request.0.clone()).unwrap();
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&pem).unwrap();
        let sub = format!("{:?}", parsed.params.distinguished_name);
        assert!(
            sub.contains("system:node:node-1") && sub.contains("system:nodes"),
            "{sub}"
        );
        assert_eq!(parsed.params.subject_alt_names.len(), 2);
        let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        assert_ne!(build(p, "node-1", &sans, &other).unwrap().name, r.name);
        let c = build(profile::profile(IdentityKind::Client), "node-1", &[], &key).unwrap();
        assert!(c.name.starts_with("node-csr-"));
    }
}
