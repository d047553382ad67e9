//! TLS for the kubelet API: the policy (versions, cipher suites, key exchange groups) from
//! policy/tls.json, and rustls server configurations built from it.
//!
//! There is no way to build a configuration outside the policy: a weak or unknown suite or
//! version is an error naming it and CIS 4.2.12, and TLS below 1.2 does not exist in rustls.
//! Client certificates are requested but optional at the handshake, so bearer-token callers
//! can connect; authentication decides later (as upstream's RequestClientCert does).
//!
//! Also the node's certificates (issue 13): [`profile`] (certs/ data), [`store`] (the
//! --cert-dir layout), [`csr`], [`validate`], [`bootstrap`], [`rotation`] (one loop per
//! identity), [`serving`] (the hot-swapping resolver and client CA), [`control`] (status
//! file and rotation requests), [`metrics`], and [`manager`], which starts them.

pub mod bootstrap;
pub mod control;
pub mod csr;
pub mod manager;
pub mod metrics;
pub mod profile;
pub mod rotation;
pub mod serving;
pub mod signatures;
pub mod store;
pub mod validate;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::crypto::{CryptoProvider, SupportedKxGroup, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use serde::Deserialize;

const POLICY_JSON: &str = include_str!("../../policy/tls.json");

#[derive(Debug, Deserialize)]
struct PolicyFile {
    min_version: MinVersionPolicy,
    cipher_suites: BTreeMap<String, String>,
    refused_cipher_suites: BTreeMap<String, String>,
    key_exchange_groups: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct MinVersionPolicy {
    default: String,
    allowed: BTreeMap<String, String>,
    refused: BTreeMap<String, String>,
}

#[expect(
    clippy::expect_used,
    reason = "compiled-in data: policy_file_is_valid proves it parses, so a failure is a build defect"
)]
fn policy() -> &'static PolicyFile {
    static P: OnceLock<PolicyFile> = OnceLock::new();
    // The policy is compiled in; `policy_file_is_valid` proves it parses.
    P.get_or_init(|| serde_json::from_str(POLICY_JSON).expect("policy/tls.json is valid"))
}

/// A TLS setting the policy refuses, or a file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{field}: {value:?} is refused: {reason} (CIS 4.2.12)")]
    Refused {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("{field}: {value:?} is not a known name; allowed: {allowed}")]
    Unknown {
        field: &'static str,
        value: String,
        allowed: String,
    },
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Upstream (Go) suite names mapped to the implementation.
fn suite_by_name(name: &str) -> Option<SupportedCipherSuite> {
    use ring::cipher_suite as cs;
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_AES_128_GCM_SHA256" => cs::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => cs::TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => cs::TLS13_CHACHA20_POLY1305_SHA256,
        _ => return None,
    })
}

fn kx_by_name(name: &str) -> Option<&'static dyn SupportedKxGroup> {
    use ring::kx_group;
    Some(match name {
        "X25519" => kx_group::X25519,
        "secp256r1" => kx_group::SECP256R1,
        "secp384r1" => kx_group::SECP384R1,
        _ => return None,
    })
}

fn is_tls13(s: &SupportedCipherSuite) -> bool {
    matches!(s, SupportedCipherSuite::Tls13(_))
}

/// The validated TLS policy of one listener.
#[derive(Debug, Clone)]
pub struct TlsPolicy {
    tls13_only: bool,
    suites: Vec<SupportedCipherSuite>,
    /// tlsCurvePreferences: policy group names in preference order; empty = all of them.
    kx_groups: Vec<String>,
}

impl TlsPolicy {
    /// From `tlsMinVersion` and `tlsCipherSuites` (upstream names). An empty list means the
    /// whole allow-list. TLS 1.3 suites are always on (they are all AEAD), as in upstream.
    pub fn from_config(min_version: Option<&str>, suites: &[String]) -> Result<Self, TlsError> {
        let p = policy();
        let min = min_version
            .filter(|v| !v.is_empty())
            .unwrap_or(&p.min_version.default);
        if let Some(reason) = p.min_version.refused.get(min) {
            return Err(TlsError::Refused {
                field: "tlsMinVersion",
                value: min.into(),
                reason: reason.clone(),
            });
        }
        if !p.min_version.allowed.contains_key(min) {
            return Err(TlsError::Unknown {
                field: "tlsMinVersion",
                value: min.into(),
                allowed: p
                    .min_version
                    .allowed
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
        let names: Vec<&str> = if suites.is_empty() {
            p.cipher_suites.keys().map(String::as_str).collect()
        } else {
            suites.iter().map(String::as_str).collect()
        };
        for name in names {
            if let Some(reason) = p.refused_cipher_suites.get(name) {
                return Err(TlsError::Refused {
                    field: "tlsCipherSuites",
                    value: name.into(),
                    reason: reason.clone(),
                });
            }
            let suite = p
                .cipher_suites
                .contains_key(name)
                .then(|| suite_by_name(name))
                .flatten()
                .ok_or_else(|| TlsError::Unknown {
                    field: "tlsCipherSuites",
                    value: name.into(),
                    allowed: p
                        .cipher_suites
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            if !chosen.iter().any(|c| c.suite() == suite.suite()) {
                chosen.push(suite);
            }
        }
        for name in [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256",
        ] {
            if let Some(s) = suite_by_name(name)
                && !chosen.iter().any(|c| c.suite() == s.suite())
            {
                chosen.push(s);
            }
        }
        // rustls prefers suites in list order: TLS 1.3 first.
        chosen.sort_by_key(|s| !is_tls13(s));
        Ok(TlsPolicy {
            tls13_only: min == "VersionTLS13",
            suites: chosen,
            kx_groups: Vec::new(),
        })
    }

    /// Restricts and orders the key exchange groups (tlsCurvePreferences); each must be one
    /// of the policy's. An empty list keeps all of them.
    pub fn with_kx_groups(mut self, names: &[String]) -> Result<Self, TlsError> {
        let p = policy();
        for n in names {
            if !p.key_exchange_groups.contains_key(n) || kx_by_name(n).is_none() {
                return Err(TlsError::Unknown {
                    field: "tlsCurvePreferences",
                    value: n.clone(),
                    allowed: p
                        .key_exchange_groups
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        self.kx_groups = names.to_vec();
        Ok(self)
    }

    pub fn provider(&self) -> CryptoProvider {
        let kx_groups = if self.kx_groups.is_empty() {
            policy()
                .key_exchange_groups
                .keys()
                .filter_map(|n| kx_by_name(n))
                .collect()
        } else {
            self.kx_groups
                .iter()
                .filter_map(|n| kx_by_name(n))
                .collect()
        };
        CryptoProvider {
            cipher_suites: self.suites.clone(),
            kx_groups,
            ..ring::default_provider()
        }
    }

    pub fn versions(&self) -> &'static [&'static SupportedProtocolVersion] {
        static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        static TLS12_AND_13: [&SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        if self.tls13_only {
            &TLS13_ONLY
        } else {
            &TLS12_AND_13
        }
    }

    pub fn suite_names(&self) -> Vec<String> {
        self.suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect()
    }

    /// A server configuration: this policy, this identity, and client certificates
    /// verified against `client_ca` when given (requested, not required).
    pub fn server_config(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        client_ca: Option<&[CertificateDer<'static>]>,
    ) -> Result<ServerConfig, TlsError> {
        let provider = Arc::new(self.provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(self.versions())?;
        let builder = match client_ca {
            Some(cas) => {
                let mut roots = rustls::RootCertStore::empty();
                for ca in cas {
                    roots.add(ca.clone())?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder.with_single_cert(chain, key)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// Reads a PEM certificate chain.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |problem: String| TlsError::File {
        path: path.display().to_string(),
        problem,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate found".into()));
    }
    Ok(certs)
}

/// Reads a PEM private key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        path: path.display().to_string(),
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_file_is_valid_and_every_entry_is_implemented() {
        let p = policy();
        for name in p.cipher_suites.keys() {
            assert!(
                suite_by_name(name).is_some(),
                "{name} in policy but not implemented"
            );
        }
        for name in p.key_exchange_groups.keys() {
            assert!(
                kx_by_name(name).is_some(),
                "{name} in policy but not implemented"
            );
        }
        for name in p.refused_cipher_suites.keys() {
            assert!(
                !p.cipher_suites.contains_key(name),
                "{name} both allowed and refused"
            );
        }
        assert!(p.min_version.allowed.contains_key(&p.min_version.default));
    }

    #[test]
    fn defaults_allow_tls12_and_13_with_aead_only() {
        let t = TlsPolicy::from_config(None, &[]).unwrap();
        assert_eq!(t.versions().len(), 2);
        let names = t.suite_names().join(" ");
        assert!(names.contains("TLS13_AES_128_GCM_SHA256"));
        assert!(names.contains("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"));
        assert!(!names.contains("CBC") && !names.contains("TLS_RSA_"));
    }

    #[test]
    fn weak_and_unknown_settings_are_refused_by_name() {
        let e = TlsPolicy::from_config(Some("VersionTLS11"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tlsMinVersion") && e.contains("VersionTLS11") && e.contains("4.2.12"),
            "{e}"
        );
        let e = TlsPolicy::from_config(None, &["TLS_RSA_WITH_AES_128_GCM_SHA256".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tlsCipherSuites") && e.contains("no forward secrecy"),
            "{e}"
        );
        let e = TlsPolicy::from_config(None, &["TLS_MADE_UP".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a known name"), "{e}");
        let e = TlsPolicy::from_config(Some("VersionTLS99"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("VersionTLS99"), "{e}");
    }

    #[test]
    fn a_subset_keeps_tls13_suites_and_drops_the_rest() {
        let t = TlsPolicy::from_config(
            Some("VersionTLS13"),
            &["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()],
        )
        .unwrap();
        assert_eq!(t.versions().len(), 1);
        let names = t.suite_names();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(!names.iter().any(|n| n.contains("RSA")));
    }
}
