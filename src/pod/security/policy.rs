//! The node's Pod Security policy: which Pod Security Standards level applies to a pod,
//! by where it came from (static file or API server) and its namespace. The default is
//! `policy/pod-security.json`, compiled in; `--pod-security-policy-file` replaces it as a
//! whole. Both go through the same strict parser: unknown fields, a missing reason, an
//! unknown level or source, a source without a default, and duplicates are refused. Pure
//! (the caller reads the file).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::pss::Level;
use crate::pod::PodSource;

/// The compiled-in policy.
pub const DEFAULT_POLICY: &str = include_str!("../../../policy/pod-security.json");

/// A policy file larger than this is refused before parsing.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

const API_VERSION: &str = "ironlet.dev/v1alpha1";
const KIND: &str = "NodePodSecurity";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Static pods from staticPodPath.
    File,
    /// Pods bound to this node through the API server.
    Api,
}

impl Source {
    pub fn of(s: &PodSource) -> Source {
        match s {
            PodSource::File(_) => Source::File,
            PodSource::Api => Source::Api,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "static pods",
            Source::Api => "API pods",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPolicy {
    api_version: String,
    kind: String,
    reason: String,
    sources: Vec<RawSource>,
    #[serde(default)]
    namespaces: Vec<RawNamespace>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    source: Source,
    level: Level,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamespace {
    source: Source,
    namespace: String,
    level: Level,
    reason: String,
}

/// A validated policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSecurityPolicy {
    defaults: BTreeMap<Source, Level>,
    namespaces: BTreeMap<(Source, String), Level>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

impl PodSecurityPolicy {
    /// The compiled-in policy. Its test proves it parses, so this cannot fail at run time;
    /// should it ever, every pod gets `restricted`, never less.
    pub fn builtin() -> PodSecurityPolicy {
        Self::parse(DEFAULT_POLICY.as_bytes()).unwrap_or_else(|_| PodSecurityPolicy {
            defaults: [
                (Source::File, Level::Restricted),
                (Source::Api, Level::Restricted),
            ]
            .into_iter()
            .collect(),
            namespaces: BTreeMap::new(),
        })
    }

    pub fn parse(bytes: &[u8]) -> Result<PodSecurityPolicy, PolicyError> {
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(PolicyError(format!("larger than {MAX_POLICY_BYTES} bytes")));
        }
        let raw: RawPolicy =
            serde_json::from_slice(bytes).map_err(|e| PolicyError(e.to_string()))?;
        if raw.api_version != API_VERSION || raw.kind != KIND {
            return Err(PolicyError(format!(
                "apiVersion/kind must be {API_VERSION}/{KIND}, found {:?}/{:?}",
                raw.api_version, raw.kind
            )));
        }
        if raw.reason.trim().is_empty() {
            return Err(PolicyError(
                "reason: must say why this policy exists".into(),
            ));
        }
        let mut defaults = BTreeMap::new();
        for (i, s) in raw.sources.iter().enumerate() {
            if s.reason.trim().is_empty() {
                return Err(PolicyError(format!("sources[{i}].reason: empty")));
            }
            if defaults.insert(s.source, s.level).is_some() {
                return Err(PolicyError(format!(
                    "sources[{i}]: a second entry for {}",
                    s.source.as_str()
                )));
            }
        }
        for s in [Source::File, Source::Api] {
            if !defaults.contains_key(&s) {
                return Err(PolicyError(format!(
                    "sources: no level for {}: every source needs one, so no pod goes unchecked by omission",
                    s.as_str()
                )));
            }
        }
        let mut namespaces = BTreeMap::new();
        for (i, n) in raw.namespaces.iter().enumerate() {
            if n.reason.trim().is_empty() {
                return Err(PolicyError(format!("namespaces[{i}].reason: empty")));
            }
            if !dns1123_label(&n.namespace) {
                return Err(PolicyError(format!(
                    "namespaces[{i}].namespace: {:?} is not a namespace name (a DNS-1123 label)",
                    n.namespace
                )));
            }
            if namespaces
                .insert((n.source, n.namespace.clone()), n.level)
                .is_some()
            {
                return Err(PolicyError(format!(
                    "namespaces[{i}]: a second entry for {} in {:?}",
                    n.source.as_str(),
                    n.namespace
                )));
            }
        }
        Ok(PodSecurityPolicy {
            defaults,
            namespaces,
        })
    }

    /// The level for a pod from `source` in `namespace`.
    pub fn level(&self, source: Source, namespace: &str) -> Level {
        self.namespaces
            .get(&(source, namespace.to_string()))
            .or_else(|| self.defaults.get(&source))
            .copied()
            .unwrap_or(Level::Restricted)
    }
}

fn dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&b.len())
        && ok(&b[0])
        && ok(&b[b.len() - 1])
        && b.iter().all(|c| ok(c) || *c == b'-')
}

impl Default for PodSecurityPolicy {
    fn default() -> Self {
        Self::builtin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_policy_parses_and_says_what_the_docs_say() {
        let p = PodSecurityPolicy::parse(DEFAULT_POLICY.as_bytes()).unwrap();
        assert_eq!(p, PodSecurityPolicy::builtin());
        assert_eq!(p.level(Source::Api, "default"), Level::Baseline);
        assert_eq!(p.level(Source::Api, "kube-system"), Level::Privileged);
        assert_eq!(p.level(Source::File, "kube-system"), Level::Baseline);
        assert_eq!(p.level(Source::File, "default"), Level::Baseline);
    }

    fn policy(sources: &str, namespaces: &str) -> Result<PodSecurityPolicy, PolicyError> {
        PodSecurityPolicy::parse(
            format!(
                r#"{{"apiVersion":"ironlet.dev/v1alpha1","kind":"NodePodSecurity","reason":"r","sources":[{sources}],"namespaces":[{namespaces}]}}"#
            )
            .as_bytes(),
        )
    }

    const BOTH: &str = r#"{"source":"file","level":"restricted","reason":"r"},{"source":"api","level":"baseline","reason":"r"}"#;

    #[test]
    fn namespace_entries_win_over_the_source_default() {
        let p = policy(
            BOTH,
            r#"{"source":"file","namespace":"infra","level":"privileged","reason":"r"}"#,
        )
        .unwrap();
        assert_eq!(p.level(Source::File, "infra"), Level::Privileged);
        assert_eq!(p.level(Source::Api, "infra"), Level::Baseline);
        assert_eq!(p.level(Source::File, "other"), Level::Restricted);
    }

    #[test]
    fn bad_policies_are_refused_naming_the_problem() {
        let cases = [
            (
                policy(r#"{"source":"file","level":"baseline","reason":"r"}"#, ""),
                "no level for API pods",
            ),
            (
                policy(
                    &format!(
                        "{BOTH},{}",
                        r#"{"source":"api","level":"privileged","reason":"r"}"#
                    ),
                    "",
                ),
                "second entry",
            ),
            (
                policy(
                    r#"{"source":"file","level":"baseline","reason":" "},{"source":"api","level":"baseline","reason":"r"}"#,
                    "",
                ),
                "reason",
            ),
            (
                policy(
                    r#"{"source":"file","level":"lenient","reason":"r"},{"source":"api","level":"baseline","reason":"r"}"#,
                    "",
                ),
                "unknown variant",
            ),
            (
                policy(r#"{"source":"url","level":"baseline","reason":"r"}"#, ""),
                "unknown variant",
            ),
            (
                policy(
                    BOTH,
                    r#"{"source":"api","namespace":"Bad_NS","level":"privileged","reason":"r"}"#,
                ),
                "namespaces[0].namespace",
            ),
            (
                policy(
                    BOTH,
                    r#"{"source":"api","namespace":"a","level":"privileged"}"#,
                ),
                "missing field `reason`",
            ),
            (
                policy(
                    BOTH,
                    r#"{"source":"api","namespace":"a","level":"privileged","reason":"r","exempt":true}"#,
                ),
                "unknown field",
            ),
            (
                policy(
                    BOTH,
                    r#"{"source":"api","namespace":"a","level":"privileged","reason":"r"},{"source":"api","namespace":"a","level":"baseline","reason":"r"}"#,
                ),
                "second entry",
            ),
        ];
        for (r, want) in cases {
            let e = r.unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        assert!(PodSecurityPolicy::parse(b"{}").is_err());
        assert!(PodSecurityPolicy::parse(&vec![b' '; MAX_POLICY_BYTES + 1]).is_err());
    }
}
