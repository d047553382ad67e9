//! The certificate profiles of certs/profiles.json, compiled in and parsed once into types:
//! key type, signer, subject, usages, SAN sources, rotation window and the minimum remaining
//! validity, each with its reason. A profile that does not validate is a build-time test
//! failure, never a silent default.

use std::sync::OnceLock;

use serde::Deserialize;

const PROFILES_JSON: &str = include_str!("../../certs/profiles.json");

/// Which of the node's identities a profile describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityKind {
    /// The API client certificate (system:node:NAME towards the API server).
    Client,
    /// The 10250 serving certificate.
    Serving,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Client => "client",
            IdentityKind::Serving => "serving",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    EcdsaP256,
}

/// certificates.k8s.io/v1 key usages the profiles may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Usage {
    #[serde(rename = "digital signature")]
    DigitalSignature,
    #[serde(rename = "client auth")]
    ClientAuth,
    #[serde(rename = "server auth")]
    ServerAuth,
}

impl Usage {
    /// The spelling of CertificateSigningRequest spec.usages.
    pub fn as_str(self) -> &'static str {
        match self {
            Usage::DigitalSignature => "digital signature",
            Usage::ClientAuth => "client auth",
            Usage::ServerAuth => "server auth",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SanSource {
    /// The node's Hostname address (a DNS SAN, or an IP SAN when it parses as one).
    Hostname,
    /// The node's InternalIP address.
    InternalIp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[allow(dead_code)]
    about: String,
    profiles: Vec<RawProfile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    identity: IdentityKind,
    reason: String,
    key: KeyField,
    signer: SignerField,
    subject: SubjectField,
    usages: Vec<UsageField>,
    sans: SansField,
    rotation: RotationField,
    minimum_remaining: MinimumField,
    file_prefix: PrefixField,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyField {
    reason: String,
    #[serde(rename = "type")]
    key_type: KeyType,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignerField {
    reason: String,
    name: String,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectField {
    reason: String,
    common_name: String,
    organization: Vec<String>,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageField {
    reason: String,
    usage: Usage,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SansField {
    reason: String,
    from: Vec<SanSource>,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotationField {
    reason: String,
    window_start: f64,
    window_end: f64,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MinimumField {
    reason: String,
    fraction: f64,
}
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixField {
    reason: String,
    name: String,
}

/// One validated profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub identity: IdentityKind,
    pub key_type: KeyType,
    pub signer: String,
    /// With `{nodeName}` in place of the node's name.
    pub common_name_template: String,
    pub organization: Vec<String>,
    pub usages: Vec<Usage>,
    pub sans: Vec<SanSource>,
    pub window_start: f64,
    pub window_end: f64,
    pub minimum_remaining_fraction: f64,
    pub file_prefix: String,
}

impl Profile {
    pub fn common_name(&self, node_name: &str) -> String {
        self.common_name_template.replace("{nodeName}", node_name)
    }

    /// The EKU the identity needs, for validation of an issued certificate.
    pub fn needs(&self, u: Usage) -> bool {
        self.usages.contains(&u)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProfileError {
    #[error("certs/profiles.json: {0}")]
    Parse(String),
    #[error("certs/profiles.json: profile {identity}: {field}: {problem}")]
    Invalid {
        identity: &'static str,
        field: &'static str,
        problem: String,
    },
}

/// Parses and validates profile text (the compiled-in file; tests feed variants).
pub fn parse(text: &str) -> Result<Vec<Profile>, ProfileError> {
    let file: File = serde_json::from_str(text).map_err(|e| ProfileError::Parse(e.to_string()))?;
    let mut out: Vec<Profile> = Vec::new();
    for p in file.profiles {
        let id = p.identity.as_str();
        let bad = |field, problem: &str| ProfileError::Invalid {
            identity: id,
            field,
            problem: problem.to_owned(),
        };
        let reasons = [
            ("reason", &p.reason),
            ("key.reason", &p.key.reason),
            ("signer.reason", &p.signer.reason),
            ("subject.reason", &p.subject.reason),
            ("sans.reason", &p.sans.reason),
            ("rotation.reason", &p.rotation.reason),
            ("minimum_remaining.reason", &p.minimum_remaining.reason),
            ("file_prefix.reason", &p.file_prefix.reason),
        ];
        for (field, r) in reasons {
            if r.trim().is_empty() {
                return Err(bad(field, "every entry needs a reason"));
            }
        }
        if p.usages.iter().any(|u| u.reason.trim().is_empty()) {
            return Err(bad("usages", "every usage needs a reason"));
        }
        if out.iter().any(|o| o.identity == p.identity) {
            return Err(bad("identity", "profile listed twice"));
        }
        let usages: Vec<Usage> = p.usages.iter().map(|u| u.usage).collect();
        let (eku, wrong) = match p.identity {
            IdentityKind::Client => (Usage::ClientAuth, Usage::ServerAuth),
            IdentityKind::Serving => (Usage::ServerAuth, Usage::ClientAuth),
        };
        if !usages.contains(&eku) || usages.contains(&wrong) {
            return Err(bad(
                "usages",
                &format!(
                    "the {id} identity needs {:?} and must not have {:?}",
                    eku.as_str(),
                    wrong.as_str()
                ),
            ));
        }
        if !usages.contains(&Usage::DigitalSignature) {
            return Err(bad("usages", "ECDSA keys need \"digital signature\""));
        }
        let r = &p.rotation;
        if !(r.window_start > 0.0 && r.window_start < r.window_end && r.window_end < 1.0) {
            return Err(bad(
                "rotation",
                "need 0 < window_start < window_end < 1 (fractions of the validity)",
            ));
        }
        let m = p.minimum_remaining.fraction;
        if !(m > 0.0 && m <= 1.0 - r.window_end + 1e-9) {
            return Err(bad(
                "minimum_remaining",
                "the fraction must be positive and leave the rotation window before it",
            ));
        }
        if p.signer.name.is_empty() || !p.signer.name.contains('/') {
            return Err(bad("signer", "a signer name is domain/path"));
        }
        if !p.subject.common_name.contains("{nodeName}") {
            return Err(bad("subject", "the common name must name the node"));
        }
        let prefix = &p.file_prefix.name;
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(bad("file_prefix", "letters, digits and '-' only"));
        }
        if p.identity == IdentityKind::Client && !p.sans.from.is_empty() {
            return Err(bad("sans", "client certificates carry no SANs"));
        }
        if p.identity == IdentityKind::Serving && p.sans.from.is_empty() {
            return Err(bad(
                "sans",
                "a serving certificate needs the node's addresses",
            ));
        }
        out.push(Profile {
            identity: p.identity,
            key_type: p.key.key_type,
            signer: p.signer.name,
            common_name_template: p.subject.common_name,
            organization: p.subject.organization,
            usages,
            sans: p.sans.from,
            window_start: r.window_start,
            window_end: r.window_end,
            minimum_remaining_fraction: m,
            file_prefix: prefix.clone(),
        });
    }
    for kind in [IdentityKind::Client, IdentityKind::Serving] {
        if !out.iter().any(|p| p.identity == kind) {
            return Err(ProfileError::Invalid {
                identity: kind.as_str(),
                field: "identity",
                problem: "missing".into(),
            });
        }
    }
    Ok(out)
}

#[expect(
    clippy::expect_used,
    reason = "compiled-in data: compiled_profiles_are_valid proves it parses"
)]
fn all() -> &'static [Profile] {
    static P: OnceLock<Vec<Profile>> = OnceLock::new();
    // Compiled in; `compiled_profiles_are_valid` proves this parses.
    P.get_or_init(|| parse(PROFILES_JSON).expect("certs/profiles.json is valid"))
}

/// The compiled-in profile of an identity.
#[expect(
    clippy::expect_used,
    reason = "parse refuses a profiles file without both identities, and the file is compiled in"
)]
pub fn profile(kind: IdentityKind) -> &'static Profile {
    all()
        .iter()
        .find(|p| p.identity == kind)
        .expect("certs/profiles.json has both identities (tested)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_profiles_are_valid_and_upstream_shaped() {
        let ps = parse(PROFILES_JSON).unwrap();
        let c = profile(IdentityKind::Client);
        assert_eq!(c.signer, "kubernetes.io/kube-apiserver-client-kubelet");
        assert_eq!(c.common_name("n1"), "system:node:n1");
        assert_eq!(c.organization, vec!["system:nodes".to_string()]);
        assert_eq!(c.usages, vec![Usage::DigitalSignature, Usage::ClientAuth]);
        assert_eq!(c.file_prefix, "kubelet-client");
        let s = profile(IdentityKind::Serving);
        assert_eq!(s.signer, "kubernetes.io/kubelet-serving");
        assert_eq!(s.usages, vec![Usage::DigitalSignature, Usage::ServerAuth]);
        assert_eq!(s.sans, vec![SanSource::Hostname, SanSource::InternalIp]);
        assert_eq!((s.window_start, s.window_end), (0.7, 0.9));
        assert_eq!(ps.len(), 2);
    }

    fn variant(from: &str, to: &str) -> Result<Vec<Profile>, ProfileError> {
        assert!(PROFILES_JSON.contains(from), "{from}");
        parse(&PROFILES_JSON.replacen(from, to, 1))
    }

    #[test]
    fn broken_profiles_are_refused_naming_the_field() {
        let cases = [
            (
                r#""reason": "ECDSA keys sign"#,
                r#""reason": "", "x": "ECDSA keys sign"#,
            ),
            (r#""window_start": 0.7"#, r#""window_start": 0.95"#),
            (r#""type": "ecdsa-p256""#, r#""type": "rsa-1024""#),
            (r#""usage": "client auth""#, r#""usage": "server auth""#),
            (r#""from": []"#, r#""from": ["hostname"]"#),
            (r#""fraction": 0.1"#, r#""fraction": 0.5"#),
            (r#""identity": "serving""#, r#""identity": "client""#),
            (r#""name": "kubelet-client""#, r#""name": "../etc""#),
        ];
        for (from, to) in cases {
            let e = variant(from, to);
            assert!(e.is_err(), "{to} was accepted");
        }
        let e = variant(r#""window_start": 0.7"#, r#""window_start": 0.95"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("rotation"), "{e}");
        let e = variant(r#""from": []"#, r#""from": [], "extra": 1"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("extra") || e.contains("unknown"), "{e}");
    }
}
