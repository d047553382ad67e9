//! The benchmark as data: `cis/<benchmark>.json` (one file per CIS version) and
//! `cis/ironlet.json` (ironlet's own checks), compiled in and validated before use: unique
//! ids, every check inside its group's id, a remediation everywhere, a reason for every
//! ironlet check, and a `rule` the engine knows (serde refuses unknown kinds).

use std::collections::BTreeSet;

use serde::Deserialize;

/// Embedded benchmark files, oldest first. Add a version by adding its file here.
const BENCHMARKS: &[(&str, &str)] = &[("cis-1.12", include_str!("../../cis/cis-1.12.json"))];
const IRONLET: &str = include_str!("../../cis/ironlet.json");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkFile {
    pub benchmark: String,
    pub about: String,
    pub controls: Vec<Controls>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Controls {
    pub id: String,
    pub text: String,
    pub node_type: String,
    pub groups: Vec<Group>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub id: String,
    pub text: String,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub id: String,
    pub text: String,
    pub scored: bool,
    /// The command kube-bench runs for this check (its `audit`), with kube-bench's variables.
    #[serde(default)]
    pub audit: String,
    /// kube-bench's `audit_config` command, if it has one.
    #[serde(default)]
    pub audit_config: String,
    /// The upstream flag kube-bench looks for; used to name a refused flag on a command line.
    #[serde(default)]
    pub flag: Option<String>,
    /// The KubeletConfiguration field (dotted) the check reads.
    #[serde(default)]
    pub config_path: Option<String>,
    pub rule: Rule,
    pub remediation: String,
    /// Why an ironlet check exists (required in ironlet.json).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The files CIS 4.1 judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileRole {
    Service,
    ProxyKubeconfig,
    Kubeconfig,
    ClientCa,
    Config,
}

/// How the engine judges a check; each kind is one function in the engine.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// The file's mode has no bit outside `mask` (octal).
    FileMode {
        file: FileRole,
        mask: String,
    },
    /// The file is owned by root:root.
    FileOwner {
        file: FileRole,
    },
    AnonymousAuth,
    AuthorizationMode,
    ClientCaFile,
    ReadOnlyPort,
    StreamingIdleTimeout,
    IptablesUtilChains,
    HostnameOverride,
    EventQps,
    ServingCertFiles,
    RotateCertificates,
    ServerCertRotation,
    TlsCipherSuites {
        allowed: Vec<String>,
    },
    PodPidsLimit,
    SeccompDefault,
    ProxyMetricsBind {
        port: u16,
    },
    Confinement,
    InsecureFlags,
    LiveTls,
    AnonymousRejected,
    ReadOnlyPortClosed {
        port: u16,
    },
    HealthzLoopback,
    CertificateValidity {
        /// WARN when less than this share (percent) of the validity is left.
        warn_percent_left: u32,
    },
    KeyFiles,
    StaticPodPathTrust,
    RuntimeEndpointSocket,
    KernelDefaults,
    PodsSeccomp,
}

/// A selected benchmark: its CIS file and ironlet's own checks.
#[derive(Debug, Clone)]
pub struct Benchmark {
    pub name: String,
    pub files: Vec<BenchmarkFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cis/{file}: {problem}")]
    Invalid { file: String, problem: String },
    #[error("unknown benchmark {0:?}; known: {1}")]
    Unknown(String, String),
}

/// The names of the embedded benchmarks, oldest first.
pub fn benchmark_names() -> Vec<&'static str> {
    BENCHMARKS.iter().map(|(n, _)| *n).collect()
}

/// The newest embedded benchmark.
pub fn newest() -> &'static str {
    BENCHMARKS.last().map_or("cis-1.12", |(n, _)| n)
}

impl Benchmark {
    /// Loads and validates `name` (None: the newest) together with ironlet's checks.
    pub fn load(name: Option<&str>) -> Result<Benchmark, DataError> {
        let name: &str = match name {
            Some(n) => n,
            None => newest(),
        };
        let Some((_, text)) = BENCHMARKS.iter().find(|(n, _)| *n == name) else {
            return Err(DataError::Unknown(
                name.to_owned(),
                benchmark_names().join(", "),
            ));
        };
        let cis = parse(&format!("{name}.json"), text, false)?;
        if cis.benchmark != name {
            return Err(invalid(
                &format!("{name}.json"),
                format!("benchmark is {:?}", cis.benchmark),
            ));
        }
        let own = parse("ironlet.json", IRONLET, true)?;
        let mut ids = BTreeSet::new();
        for f in [&cis, &own] {
            for c in f
                .controls
                .iter()
                .flat_map(|c| &c.groups)
                .flat_map(|g| &g.checks)
            {
                if !ids.insert(c.id.clone()) {
                    return Err(invalid("ironlet.json", format!("duplicate id {}", c.id)));
                }
            }
        }
        Ok(Benchmark {
            name: name.to_owned(),
            files: vec![cis, own],
        })
    }

    /// Every check with its controls and group, in file order.
    pub fn checks(&self) -> impl Iterator<Item = (&Controls, &Group, &Check)> {
        self.files.iter().flat_map(|f| {
            f.controls.iter().flat_map(|c| {
                c.groups
                    .iter()
                    .flat_map(move |g| g.checks.iter().map(move |k| (c, g, k)))
            })
        })
    }
}

fn invalid(file: &str, problem: impl Into<String>) -> DataError {
    DataError::Invalid {
        file: file.to_owned(),
        problem: problem.into(),
    }
}

/// Parses and validates one file; `own` files need a reason per check.
pub fn parse(file: &str, text: &str, own: bool) -> Result<BenchmarkFile, DataError> {
    let f: BenchmarkFile = serde_json::from_str(text).map_err(|e| invalid(file, e.to_string()))?;
    let mut ids = BTreeSet::new();
    if f.about.trim().is_empty() {
        return Err(invalid(file, "about is empty"));
    }
    for c in &f.controls {
        if c.text.trim().is_empty() || !ids.insert(c.id.clone()) {
            return Err(invalid(
                file,
                format!("controls {}: empty text or duplicate id", c.id),
            ));
        }
        for g in &c.groups {
            if !g.id.starts_with(&format!("{}.", c.id)) || !ids.insert(g.id.clone()) {
                return Err(invalid(
                    file,
                    format!("group {} is not inside {} or is a duplicate", g.id, c.id),
                ));
            }
            for k in &g.checks {
                let at = |p: &str| invalid(file, format!("check {}: {p}", k.id));
                if !k.id.starts_with(&format!("{}.", g.id)) || !ids.insert(k.id.clone()) {
                    return Err(at(&format!("not inside group {} or a duplicate", g.id)));
                }
                if k.text.trim().is_empty() || k.remediation.trim().is_empty() {
                    return Err(at("text and remediation are required"));
                }
                let manual = k.text.ends_with("(Manual)");
                let automated = k.text.ends_with("(Automated)");
                if manual == automated || automated != k.scored {
                    return Err(at("the title must end in (Automated) exactly when scored"));
                }
                if own && k.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                    return Err(at("an ironlet check needs its reason"));
                }
                if let Rule::FileMode { mask, .. } = &k.rule
                    && u32::from_str_radix(mask, 8).map_or(true, |m| m > 0o777)
                {
                    return Err(at(&format!("mask {mask:?} is not an octal mode")));
                }
            }
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_files_are_valid() {
        for name in benchmark_names() {
            let b = Benchmark::load(Some(name)).unwrap();
            assert!(b.checks().count() > 30, "{name}");
        }
        assert_eq!(Benchmark::load(None).unwrap().name, newest());
    }

    #[test]
    fn cis_1_12_has_the_benchmark_node_checks() {
        let b = Benchmark::load(Some("cis-1.12")).unwrap();
        let cis: Vec<_> = b
            .checks()
            .filter(|(c, _, _)| c.id == "4")
            .map(|(_, _, k)| k)
            .collect();
        assert_eq!(cis.len(), 25);
        let scored: Vec<&str> = cis
            .iter()
            .filter(|k| k.scored)
            .map(|k| k.id.as_str())
            .collect();
        assert_eq!(
            scored,
            [
                "4.1.1", "4.1.2", "4.1.5", "4.1.6", "4.1.9", "4.1.10", "4.2.1", "4.2.2", "4.2.3",
                "4.2.6", "4.2.10", "4.3.1"
            ]
        );
    }

    #[test]
    fn invalid_files_are_refused() {
        let good = r#"{"benchmark":"x","about":"a","controls":[{"id":"9","text":"t","node_type":"node","groups":[{"id":"9.1","text":"g","checks":[
            {"id":"9.1.1","text":"c (Automated)","scored":true,"rule":{"kind":"confinement"},"remediation":"r","reason":"why"}]}]}]}"#;
        parse("x.json", good, true).unwrap();
        for (from, to, needle) in [
            (r#","reason":"why""#, "", "reason"),
            (
                r#""kind":"confinement""#,
                r#""kind":"always_pass""#,
                "unknown variant",
            ),
            (r#""id":"9.1.1""#, r#""id":"8.1.1""#, "not inside"),
            (
                r#""remediation":"r""#,
                r#""remediation":" ""#,
                "remediation",
            ),
            ("(Automated)", "(Manual)", "(Automated)"),
            (
                r#"{"kind":"confinement"}"#,
                r#"{"kind":"file_mode","file":"config","mask":"999"}"#,
                "octal",
            ),
        ] {
            let bad = good.replace(from, to);
            let e = parse("x.json", &bad, true).unwrap_err().to_string();
            assert!(e.contains(needle), "{from} -> {to}: {e}");
        }
        assert!(Benchmark::load(Some("cis-0.1")).is_err());
    }
}
