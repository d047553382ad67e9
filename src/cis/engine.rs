//! Judging one check over the gathered evidence. Every rule kind of `cis/*.json` is one arm
//! here. A verdict is Pass only on evidence that shows the requirement met; a field that
//! ironlet accepts but does not honour (`config::fields`, the single
//! source of truth) never passes; a probe that cannot run is Unknown with the reason.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::data::{Check, FileRole, Rule};
use super::evidence::{Effective, Evidence};
use super::live;
use crate::config::fields::{self, Disposition};
use crate::config::{Config, ConfigError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Could not be judged (WARN).
    Unknown,
}

/// Which kind of evidence a result rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EvidenceKind {
    /// The effective configuration, loaded as `ironlet run` loads it.
    Configuration,
    /// Files on the node (stat, certificates).
    File,
    /// Probes of the running node (sockets, handshakes, /proc).
    Live,
}

impl EvidenceKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Configuration => "configuration",
            Self::File => "file",
            Self::Live => "live",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    pub evidence: Vec<EvidenceKind>,
    /// What was looked at (commands, files, addresses).
    pub audit: String,
    pub actual: String,
    pub expected: String,
    pub reason: String,
}

impl Outcome {
    fn new(
        verdict: Verdict,
        evidence: &[EvidenceKind],
        audit: impl Into<String>,
        actual: impl Into<String>,
        expected: impl Into<String>,
        reason: impl Into<String>,
    ) -> Outcome {
        Outcome {
            verdict,
            evidence: evidence.to_vec(),
            audit: audit.into(),
            actual: actual.into(),
            expected: expected.into(),
            reason: reason.into(),
        }
    }
}

use EvidenceKind::{Configuration as C, File as F, Live as L};
use Verdict::{Fail, Pass, Unknown};

/// Whether ironlet honours a KubeletConfiguration field (it does unless it is listed as
/// accepted-but-not-implemented).
pub fn honoured(field: &str) -> bool {
    fields::disposition(field).is_none_or(|f| f.disposition == Disposition::Implemented)
}

/// Judges `check` over `ev`.
pub fn judge(check: &Check, ev: &Evidence) -> Outcome {
    match &check.rule {
        Rule::FileMode { file, mask } => file_mode(*file, mask, ev),
        Rule::FileOwner { file } => file_owner(*file, ev),
        Rule::AnonymousAuth => with_config(check, ev, |_| {
            cfg(
                Pass,
                "false",
                "'authentication.anonymous.enabled' is equal to 'false'",
                "ironlet refuses anonymous authentication at startup; the loaded configuration has none",
            )
        }),
        Rule::AuthorizationMode => with_config(check, ev, |c| {
            cfg(
                Pass,
                format!("{:?}", c.authorization.mode),
                "'authorization.mode' does not have 'AlwaysAllow'",
                "",
            )
        }),
        Rule::ClientCaFile => {
            with_config(check, ev, |c| match &c.authentication.x509_client_ca_file {
                Some(p) => cfg(
                    Pass,
                    p.display().to_string(),
                    "'authentication.x509.clientCAFile' is present",
                    "",
                ),
                None => cfg(
                    Fail,
                    "",
                    "'authentication.x509.clientCAFile' is present",
                    "no client CA: the API server's kubelet client certificates cannot be verified",
                ),
            })
        }
        Rule::ReadOnlyPort => with_config(check, ev, |_| {
            cfg(
                Pass,
                "0",
                "'readOnlyPort' is equal to '0'",
                "ironlet refuses any other value at startup",
            )
        }),
        Rule::StreamingIdleTimeout => with_config(check, ev, |c| {
            cfg(
                Pass,
                format!("{:?}", c.streaming_connection_idle_timeout),
                "'streamingConnectionIdleTimeout' is not equal to '0'",
                "",
            )
        }),
        Rule::IptablesUtilChains => not_honoured_bool(
            check,
            ev,
            "makeIPTablesUtilChains",
            true,
            "ironlet accepts makeIPTablesUtilChains but does not create the iptables utility chains",
        ),
        Rule::HostnameOverride => with_flags(check, ev, |flags| match &flags.hostname_override {
            Some(h) => cfg(
                Unknown,
                format!("--hostname-override={h}"),
                "'--hostname-override' is not present",
                "the node name is overridden on the command line; keep it only if the environment needs it",
            ),
            None => cfg(Pass, "", "'--hostname-override' is not present", ""),
        }),
        Rule::EventQps => with_config(check, ev, |c| {
            let q = c.cluster.event_record_qps;
            let v = if q > 0.0 { Pass } else { Fail };
            cfg(
                v,
                format!("{q}"),
                "'eventRecordQPS' is greater than 0",
                if q > 0.0 {
                    ""
                } else {
                    "events are not recorded"
                },
            )
        }),
        Rule::ServingCertFiles => with_config(check, ev, |c| {
            match (&c.tls.cert_file, &c.tls.private_key_file) {
                (Some(cert), Some(key)) => cfg(
                    Pass,
                    format!("{} {}", cert.display(), key.display()),
                    "'tlsCertFile' is present AND 'tlsPrivateKeyFile' is present",
                    "",
                ),
                _ => cfg(
                    Fail,
                    "",
                    "'tlsCertFile' is present AND 'tlsPrivateKeyFile' is present",
                    "no serving certificate: ironlet keeps port 10250 closed",
                ),
            }
        }),
        Rule::RotateCertificates => not_honoured_bool(
            check,
            ev,
            "rotateCertificates",
            false,
            "ironlet accepts rotateCertificates but does not rotate its client certificate yet",
        ),
        Rule::ServerCertRotation => server_cert_rotation(check, ev),
        Rule::TlsCipherSuites { allowed } => tls_cipher_suites(check, ev, allowed),
        Rule::PodPidsLimit => with_config(check, ev, |c| {
            let n = c.pod_pids_limit;
            if n > 0 {
                cfg(Pass, n.to_string(), "'podPidsLimit' is greater than 0", "")
            } else {
                cfg(
                    Fail,
                    n.to_string(),
                    "'podPidsLimit' is greater than 0",
                    "pods may create processes without limit",
                )
            }
        }),
        Rule::SeccompDefault => not_honoured_bool(
            check,
            ev,
            "seccompDefault",
            true,
            "ironlet accepts seccompDefault but does not apply RuntimeDefault to pods yet",
        ),
        Rule::ProxyMetricsBind { port } => proxy_metrics(*port),
        Rule::Confinement => confinement(ev),
        Rule::InsecureFlags => insecure_flags(ev),
        Rule::LiveTls => live_tls(ev),
        Rule::AnonymousRejected => anonymous(ev),
        Rule::ReadOnlyPortClosed { port } => read_only_closed(*port),
        Rule::HealthzLoopback => healthz(check, ev),
        Rule::CertificateValidity { warn_percent_left } => certificates(ev, *warn_percent_left),
        Rule::KeyFiles => key_files(ev),
        Rule::StaticPodPathTrust => static_pods(ev),
        Rule::RuntimeEndpointSocket => runtime_socket(ev),
        Rule::KernelDefaults => kernel_defaults(ev),
        Rule::PodsSeccomp => pods_seccomp(ev),
    }
}

fn cfg(
    v: Verdict,
    actual: impl Into<String>,
    expected: impl Into<String>,
    reason: impl Into<String>,
) -> Outcome {
    Outcome::new(v, &[C], "", actual, expected, reason)
}

fn flag_in(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .find(|a| {
            *a == flag
                || a.starts_with(&format!("{flag}="))
                || (!flag.starts_with('-') && a.contains(flag))
        })
        .cloned()
}

/// Runs `f` on the flags, or says why they cannot be judged.
fn with_flags(
    check: &Check,
    ev: &Evidence,
    f: impl FnOnce(&crate::config::RunFlags) -> Outcome,
) -> Outcome {
    let mut o = match &ev.flags {
        Some(flags) => f(flags),
        None => refused_or_unknown(check, ev),
    };
    o.audit = ev.config_source();
    o
}

/// Runs `f` on the effective configuration, or turns the loader's refusal into the verdict.
fn with_config(check: &Check, ev: &Evidence, f: impl FnOnce(&Config) -> Outcome) -> Outcome {
    let mut o = match ev.config() {
        Some(c) => f(c),
        None => refused_or_unknown(check, ev),
    };
    o.audit = ev.config_source();
    o
}

fn refused_or_unknown(check: &Check, ev: &Evidence) -> Outcome {
    let expected = "the configuration loads";
    match &ev.effective {
        Effective::Refused(e @ ConfigError::Insecure { cis, .. }) if *cis == check.id => cfg(
            Fail,
            e.field().unwrap_or(""),
            expected,
            format!("ironlet refuses this setting: {e}"),
        ),
        Effective::BadFlags(e) => match check.flag.as_deref().and_then(|f| flag_in(&ev.args, f)) {
            Some(arg) => cfg(
                Fail,
                arg,
                expected,
                format!(
                    "the command line sets {}, which ironlet refuses: {e}",
                    check.flag.as_deref().unwrap_or("")
                ),
            ),
            None => cfg(
                Unknown,
                "",
                expected,
                ev.config_problem().unwrap_or_default(),
            ),
        },
        _ => cfg(
            Unknown,
            "",
            expected,
            ev.config_problem().unwrap_or_default(),
        ),
    }
}

/// A boolean upstream field ironlet accepts but may not honour. While not honoured, an
/// explicit "insecure" value fails and anything else is Unknown; once honoured, the value
/// (or `default` when unset) decides.
fn not_honoured_bool(
    check: &Check,
    ev: &Evidence,
    field: &'static str,
    default_when_honoured: bool,
    why: &'static str,
) -> Outcome {
    with_config(check, ev, |_| {
        let raw = ev.raw_field(field).and_then(|v| v.as_bool());
        let actual = raw.map_or("unset".to_owned(), |b| b.to_string());
        let expected = format!("'{field}' is equal to 'true' and honoured by ironlet");
        if raw == Some(false) {
            return cfg(Fail, actual, expected, format!("{field} is set to false"));
        }
        if !honoured(field) {
            return cfg(
                Unknown,
                actual,
                expected,
                format!(
                    "{why} (config::fields); a value here would pass kube-bench but is not in effect"
                ),
            );
        }
        match raw.unwrap_or(default_when_honoured) {
            true => cfg(Pass, actual, expected, ""),
            false => cfg(
                Unknown,
                actual,
                expected,
                format!("{field} is not set explicitly"),
            ),
        }
    })
}

fn server_cert_rotation(check: &Check, ev: &Evidence) -> Outcome {
    with_config(check, ev, |_| {
        let gate = ev
            .raw_field("featureGates.RotateKubeletServerCertificate")
            .and_then(|v| v.as_bool());
        let bootstrap = ev.raw_field("serverTLSBootstrap").and_then(|v| v.as_bool());
        let actual = format!(
            "featureGates.RotateKubeletServerCertificate={} serverTLSBootstrap={}",
            gate.map_or("unset".into(), |b| b.to_string()),
            bootstrap.map_or("unset".into(), |b| b.to_string())
        );
        let expected = "'RotateKubeletServerCertificate' is not false and serving certificate rotation is honoured by ironlet";
        if gate == Some(false) {
            return cfg(
                Fail,
                actual,
                expected,
                "the RotateKubeletServerCertificate gate is disabled",
            );
        }
        if !honoured("serverTLSBootstrap") {
            return cfg(
                Unknown,
                actual,
                expected,
                "ironlet accepts serverTLSBootstrap but does not request or rotate its serving certificate yet (config::fields); kube-bench passes this on an unset gate",
            );
        }
        match bootstrap {
            Some(true) => cfg(Pass, actual, expected, ""),
            _ if ev.raw_field("tlsCertFile").is_some() => cfg(
                Unknown,
                actual,
                expected,
                "the serving certificate comes from tlsCertFile: ironlet reloads it when the file changes, but its rotation is the operator's, not the node's",
            ),
            _ => cfg(
                Fail,
                actual,
                expected,
                "serverTLSBootstrap is not true: the serving certificate is not rotated",
            ),
        }
    })
}

fn cis_name_allowed(name: &str, allowed: &[String]) -> bool {
    name.starts_with("TLS13_")
        || allowed.iter().any(|a| {
            a == name
                || Some(a.as_str())
                    == name
                        .strip_suffix("_SHA256")
                        .filter(|n| n.ends_with("CHACHA20_POLY1305"))
        })
}

fn tls_cipher_suites(check: &Check, ev: &Evidence, allowed: &[String]) -> Outcome {
    with_config(check, ev, |c| {
        let expected = format!(
            "'tlsCipherSuites' contains valid elements from '{}'",
            allowed.join(",")
        );
        let policy = match crate::tls::TlsPolicy::from_config(
            c.tls.min_version.as_deref(),
            &c.tls.cipher_suites,
        ) {
            Ok(p) => p,
            Err(e) => return cfg(Fail, "", expected, e.to_string()),
        };
        let names = policy.suite_names();
        let bad: Vec<&String> = names
            .iter()
            .filter(|n| !cis_name_allowed(n, allowed))
            .collect();
        let actual = names.join(",");
        let how = if c.tls.cipher_suites.is_empty() {
            "unset: ironlet's policy/tls.json allow-list applies"
        } else {
            "set explicitly"
        };
        if bad.is_empty() {
            cfg(Pass, actual, expected, format!("effective suites ({how})"))
        } else {
            cfg(
                Fail,
                actual,
                expected,
                format!("suites outside the benchmark's list: {bad:?}"),
            )
        }
    })
}

fn owner(uid: u32, gid: u32) -> String {
    let n = |id: u32| {
        if id == 0 {
            "root".to_owned()
        } else {
            id.to_string()
        }
    };
    format!("{}:{}", n(uid), n(gid))
}

fn role_paths(role: FileRole, ev: &Evidence) -> Result<Vec<PathBuf>, String> {
    let flags = ev.flags.as_ref();
    match role {
        FileRole::Service => ev.service.as_ref().map(|c| c.files.clone()).map_err(Clone::clone),
        FileRole::Kubeconfig => flags
            .and_then(|f| f.kubeconfig.clone())
            .map(|p| vec![p])
            .ok_or_else(|| match flags {
                Some(_) => "no --kubeconfig: a standalone node keeps no API credentials in a kubeconfig".into(),
                None => ev.config_problem().unwrap_or_default(),
            }),
        FileRole::Config => flags
            .and_then(|f| f.config.clone())
            .map(|p| vec![p])
            .ok_or_else(|| match flags {
                Some(_) => "no --config: the built-in secure defaults apply and there is no file".into(),
                None => ev.config_problem().unwrap_or_default(),
            }),
        FileRole::ClientCa => match ev.config() {
            Some(c) => c.authentication.x509_client_ca_file.clone().map(|p| vec![p]).ok_or_else(|| "authentication.x509.clientCAFile is not set".into()),
            None => Err(ev.config_problem().unwrap_or_default()),
        },
        FileRole::ProxyKubeconfig => ev.proxy_kubeconfig.clone().map(|p| vec![p]).ok_or_else(|| "no kube-proxy kubeconfig at upstream's paths (kube-proxy does not run with a file here)".into()),
    }
}

fn file_mode(role: FileRole, mask: &str, ev: &Evidence) -> Outcome {
    let mask_bits = u32::from_str_radix(mask, 8).unwrap_or(0);
    let expected =
        format!("permissions has permissions {mask}, expected {mask} or more restrictive");
    stat_each(role, ev, &expected, |p, m| {
        let mode = m.permissions().mode() & 0o7777;
        let actual = format!("{}: permissions={:o}", p.display(), mode);
        (mode & !mask_bits == 0, actual)
    })
}

fn file_owner(role: FileRole, ev: &Evidence) -> Outcome {
    stat_each(role, ev, "'root:root' is present", |p, m| {
        (
            m.uid() == 0 && m.gid() == 0,
            format!("{}: {}", p.display(), owner(m.uid(), m.gid())),
        )
    })
}

fn stat_each(
    role: FileRole,
    ev: &Evidence,
    expected: &str,
    test: impl Fn(&Path, &std::fs::Metadata) -> (bool, String),
) -> Outcome {
    let paths = match role_paths(role, ev) {
        Ok(p) => p,
        Err(why) => return Outcome::new(Unknown, &[F], "", "", expected, why),
    };
    let mut actual = Vec::new();
    let mut failed = Vec::new();
    for p in &paths {
        match std::fs::metadata(p) {
            Ok(m) => {
                let (ok, a) = test(p, &m);
                if !ok {
                    failed.push(a.clone());
                }
                actual.push(a);
            }
            Err(e) => {
                return Outcome::new(
                    Unknown,
                    &[F],
                    format!("stat {}", p.display()),
                    "",
                    expected,
                    format!("cannot stat {}: {e}", p.display()),
                );
            }
        }
    }
    let audit = format!(
        "stat {}",
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (v, reason) = if failed.is_empty() {
        (Pass, String::new())
    } else {
        (Fail, failed.join("; "))
    };
    Outcome::new(v, &[F], audit, actual.join("; "), expected, reason)
}

fn no_agent(ev: &Evidence) -> String {
    format!(
        "not probed: no running agent ({})",
        ev.no_agent.as_deref().unwrap_or("not found")
    )
}

fn proxy_metrics(port: u16) -> Outcome {
    let expected = format!("nothing listens on port {port} beyond loopback");
    match live::listeners() {
        Ok(ls) => {
            let wide: Vec<String> = ls
                .iter()
                .filter(|l| l.port == port && !l.addr.is_loopback())
                .map(|l| format!("{}:{}", l.addr, l.port))
                .collect();
            let audit = "/proc/net/tcp, /proc/net/tcp6 (LISTEN sockets)";
            if wide.is_empty() {
                Outcome::new(
                    Pass,
                    &[L],
                    audit,
                    format!("no listener on {port} beyond loopback"),
                    expected,
                    "",
                )
            } else {
                Outcome::new(
                    Fail,
                    &[L],
                    audit,
                    wide.join(","),
                    expected,
                    "kube-proxy metrics (or something else) is reachable off the node",
                )
            }
        }
        Err(e) => Outcome::new(Unknown, &[L], "", "", expected, e),
    }
}

fn confinement(ev: &Evidence) -> Outcome {
    let expected = "every agent thread: NoNewPrivs 1, Seccomp 2, only the policy's capabilities; the mount helper likewise";
    let Some(agent) = &ev.agent else {
        if ev
            .flags
            .as_ref()
            .is_some_and(|f| f.insecure_disable_confinement)
        {
            return Outcome::new(
                Fail,
                &[C],
                ev.config_source(),
                "--insecure-disable-confinement",
                expected,
                "the command line starts the agent with --insecure-disable-confinement",
            );
        }
        return Outcome::new(Unknown, &[L], "", "", expected, no_agent(ev));
    };
    let audit = format!(
        "/proc/{}/task/*/status and the mount helper's; {}",
        agent.pid,
        crate::confine::record_path(&agent.root_dir).display()
    );
    match crate::confine::inspect::report(&agent.root_dir) {
        Ok(r) if r.agent.pid != agent.pid => Outcome::new(
            Unknown,
            &[L],
            audit,
            "",
            expected,
            format!(
                "confinement.json is for pid {}, the agent is pid {}",
                r.agent.pid, agent.pid
            ),
        ),
        Ok(r) if r.problems.is_empty() => {
            let t = r.agent.threads.first();
            let actual = format!(
                "{} threads; capabilities {}; landlock {}; seccomp filters {}",
                r.agent.threads.len(),
                t.map_or(String::new(), |t| t.cap_eff.join(",")),
                if r.record.landlock.is_some() {
                    "applied"
                } else {
                    "none"
                },
                r.record.seccomp.as_ref().map_or(0, |s| s.filters)
            );
            if r.record.landlock.is_none() {
                return Outcome::new(
                    Fail,
                    &[L],
                    audit,
                    actual,
                    expected,
                    "landlock was not applied",
                );
            }
            Outcome::new(Pass, &[L], audit, actual, expected, "")
        }
        Ok(r) => Outcome::new(
            Fail,
            &[L],
            audit,
            r.problems.join("; "),
            expected,
            r.problems.join("; "),
        ),
        Err(e) => Outcome::new(Unknown, &[L], audit, "", expected, e.to_string()),
    }
}

fn insecure_flags(ev: &Evidence) -> Outcome {
    let expected = "no --insecure-* flag";
    let mut found: Vec<String> = ev
        .args
        .iter()
        .filter(|a| a.starts_with("--insecure"))
        .map(|a| a.split('=').next().unwrap_or(a).to_owned())
        .collect();
    let mut evidence = vec![C];
    if let Some(a) = &ev.agent
        && crate::confine::read_record(&a.root_dir).is_ok_and(|r| r.insecure)
        && !found.iter().any(|f| f == "--insecure-disable-confinement")
    {
        found.push("--insecure-disable-confinement (recorded by the agent)".into());
        evidence.push(L);
    }
    if ev.args.is_empty()
        && ev.agent.is_none()
        && !matches!(ev.argv_source, super::evidence::ArgvSource::Service { .. })
    {
        return Outcome::new(
            Unknown,
            &[C],
            "",
            "",
            expected,
            "no command line to read: no running agent and no service file",
        );
    }
    let audit = ev.config_source();
    if found.is_empty() {
        Outcome::new(Pass, &evidence, audit, "none", expected, "")
    } else {
        Outcome::new(
            Fail,
            &evidence,
            audit,
            found.join(","),
            expected,
            format!("insecure escape hatch set: {}", found.join(", ")),
        )
    }
}

/// Where to reach the agent's API: its `address` (the loopback of the same family when it
/// binds every address) and `port`, if the agent is listening there.
fn api_addr(ev: &Evidence) -> Result<SocketAddr, String> {
    let Some(agent) = &ev.agent else {
        return Err(no_agent(ev));
    };
    let Some(c) = ev.config() else {
        return Err(ev.config_problem().unwrap_or_default());
    };
    let ip = match c.address {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        a => a,
    };
    let inodes = live::socket_inodes(agent.pid)?;
    let listening = live::listeners()?
        .into_iter()
        .any(|l| l.port == c.port && inodes.contains(&l.inode));
    if !listening {
        return Err(format!(
            "the agent does not listen on port {} (without a serving certificate and an authorizer ironlet keeps it closed)",
            c.port
        ));
    }
    Ok(SocketAddr::new(ip, c.port))
}

fn live_tls(ev: &Evidence) -> Outcome {
    let expected = "TLS 1.3, or TLS 1.2 with the configured ECDHE AEAD suites only; TLS 1.0/1.1, CBC and static RSA refused";
    let addr = match api_addr(ev) {
        Ok(a) => a,
        Err(e) => return Outcome::new(Unknown, &[L], "", "", expected, e),
    };
    let Some(c) = ev.config() else {
        return Outcome::new(Unknown, &[L], "", "", expected, "no configuration");
    };
    let policy = match crate::tls::TlsPolicy::from_config(
        c.tls.min_version.as_deref(),
        &c.tls.cipher_suites,
    ) {
        Ok(p) => p,
        Err(e) => return Outcome::new(Fail, &[C], "", "", expected, e.to_string()),
    };
    let configured = policy.suite_names();
    let tls13_only = policy.versions().len() == 1;
    let mut offered = Vec::new();
    let mut problems = Vec::new();
    match live::handshake(addr, None) {
        Ok(h) => offered.push(h.suite),
        Err(e) => problems.push(format!("TLS 1.3 handshake failed: {e}")),
    }
    for s in live::tls12_suites() {
        if let Ok(h) = live::handshake(addr, Some(s)) {
            if tls13_only {
                problems.push(format!(
                    "TLS 1.2 accepted ({}) although tlsMinVersion is VersionTLS13",
                    h.suite
                ));
            } else if !configured.contains(&h.suite) {
                problems.push(format!("{} offered but not configured", h.suite));
            }
            offered.push(h.suite);
        }
    }
    let mut refused = Vec::new();
    let mut not_probed = Vec::new();
    for (name, args) in live::WEAK_CLIENTS {
        match live::openssl_handshake(addr, args) {
            Ok(false) => refused.push(*name),
            Ok(true) => problems.push(format!("{name} handshake completed")),
            Err(e) => not_probed.push(format!("{name}: {e}")),
        }
    }
    let audit = format!(
        "TLS handshakes to {addr}: rustls (one per TLS 1.2 suite, TLS 1.3) and openssl s_client ({})",
        live::WEAK_CLIENTS
            .iter()
            .map(|w| w.0)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let actual = format!(
        "accepted: {}; refused: {}",
        offered.join(","),
        refused.join(",")
    );
    if !problems.is_empty() {
        Outcome::new(Fail, &[L], audit, actual, expected, problems.join("; "))
    } else if !not_probed.is_empty() {
        Outcome::new(
            Unknown,
            &[L],
            audit,
            actual,
            expected,
            format!("weak clients not probed: {}", not_probed.join("; ")),
        )
    } else {
        Outcome::new(Pass, &[L], audit, actual, expected, "")
    }
}

fn anonymous(ev: &Evidence) -> Outcome {
    let expected = "HTTP 401";
    let addr = match api_addr(ev) {
        Ok(a) => a,
        Err(e) => return Outcome::new(Unknown, &[L], "", "", expected, e),
    };
    let audit = format!("GET https://{addr}/pods without credentials");
    match live::anonymous_status(addr) {
        Ok(401) => Outcome::new(Pass, &[L], audit, "401", expected, ""),
        Ok(code) => Outcome::new(
            Fail,
            &[L],
            audit,
            code.to_string(),
            expected,
            format!("an anonymous request got {code}"),
        ),
        Err(e) => Outcome::new(Unknown, &[L], audit, "", expected, e),
    }
}

fn read_only_closed(port: u16) -> Outcome {
    let expected = format!("no listener on port {port}");
    match live::listeners() {
        Ok(ls) => {
            let on: Vec<String> = ls
                .iter()
                .filter(|l| l.port == port)
                .map(|l| format!("{}:{}", l.addr, l.port))
                .collect();
            let audit = "/proc/net/tcp, /proc/net/tcp6 (LISTEN sockets)";
            if on.is_empty() {
                Outcome::new(Pass, &[L], audit, "none", expected, "")
            } else {
                Outcome::new(
                    Fail,
                    &[L],
                    audit,
                    on.join(","),
                    expected,
                    format!("something listens on the read-only port {port}"),
                )
            }
        }
        Err(e) => Outcome::new(Unknown, &[L], "", "", expected, e),
    }
}

fn healthz(check: &Check, ev: &Evidence) -> Outcome {
    let expected = "healthzBindAddress is loopback (or healthzPort 0) and the agent's healthz socket is bound to loopback";
    let Some(c) = ev.config() else {
        // The loader refuses a non-loopback healthzBindAddress naming this check: FAIL.
        let mut o = refused_or_unknown(check, ev);
        o.audit = ev.config_source();
        return o;
    };
    if c.healthz_port == 0 {
        return Outcome::new(
            Pass,
            &[C],
            ev.config_source(),
            "healthzPort 0 (disabled)",
            expected,
            "",
        );
    }
    let configured = format!(
        "healthzBindAddress {} port {}",
        c.healthz_bind_address, c.healthz_port
    );
    let config_bad = !c.healthz_bind_address.is_loopback();
    let config_reason = format!(
        "healthz is configured on {}, reachable beyond the node",
        c.healthz_bind_address
    );
    let Some(agent) = &ev.agent else {
        return match config_bad {
            true => Outcome::new(
                Fail,
                &[C],
                ev.config_source(),
                configured,
                expected,
                config_reason,
            ),
            false => Outcome::new(
                Unknown,
                &[C],
                ev.config_source(),
                configured,
                expected,
                no_agent(ev),
            ),
        };
    };
    let audit = format!(
        "{}; /proc/{}/fd sockets in /proc/net/tcp{{,6}}",
        ev.config_source(),
        agent.pid
    );
    let bound = live::socket_inodes(agent.pid).and_then(|inodes| {
        Ok(live::listeners()?
            .into_iter()
            .filter(|l| l.port == c.healthz_port && inodes.contains(&l.inode))
            .collect::<Vec<_>>())
    });
    let fail_or_unknown = if config_bad { Fail } else { Unknown };
    match bound {
        Ok(b) if b.is_empty() => Outcome::new(
            fail_or_unknown,
            &[C, L],
            audit,
            configured,
            expected,
            format!("the agent has no listener on {}", c.healthz_port),
        ),
        Ok(b) => {
            let actual = format!(
                "{configured}; bound {}",
                b.iter()
                    .map(|l| format!("{}:{}", l.addr, l.port))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let live_bad = !b.iter().all(|l| l.addr.is_loopback());
            match (config_bad, live_bad) {
                (false, false) => Outcome::new(Pass, &[C, L], audit, actual, expected, ""),
                (_, true) => Outcome::new(
                    Fail,
                    &[C, L],
                    audit,
                    actual,
                    expected,
                    "the agent's healthz socket is bound beyond loopback",
                ),
                (true, false) => {
                    Outcome::new(Fail, &[C, L], audit, actual, expected, config_reason)
                }
            }
        }
        Err(e) => Outcome::new(fail_or_unknown, &[C, L], audit, configured, expected, e),
    }
}

/// The kubeconfig's client certificates and key files (resolved against its directory).
/// (where, PEM) of each client certificate, and the client key files.
type Credentials = (Vec<(String, Vec<u8>)>, Vec<PathBuf>);

fn kubeconfig_credentials(path: &Path) -> Result<Credentials, String> {
    use base64::Engine;
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(crate::apiclient::MAX_KUBECONFIG_BYTES)
                .read_to_string(&mut text)
        })
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let kc = crate::apiclient::parse_kubeconfig(&text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("/"));
    let abs = |p: &str| {
        if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            base.join(p)
        }
    };
    let mut certs = Vec::new();
    let mut keys = Vec::new();
    for a in kc.auth_infos.iter().filter_map(|a| a.auth_info.as_ref()) {
        if let Some(d) = &a.client_certificate_data {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(d.trim())
                .map_err(|e| format!("{}: client-certificate-data: {e}", path.display()))?;
            certs.push((format!("{} client-certificate-data", path.display()), pem));
        }
        if let Some(f) = &a.client_certificate {
            let p = abs(f);
            let pem = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            certs.push((p.display().to_string(), pem));
        }
        if let Some(k) = &a.client_key {
            keys.push(abs(k));
        }
    }
    Ok((certs, keys))
}

fn certificates(ev: &Evidence, warn_percent_left: u32) -> Outcome {
    let expected = format!(
        "every certificate is within its validity, with more than {warn_percent_left}% of it left"
    );
    let Some(c) = ev.config() else {
        return Outcome::new(
            Unknown,
            &[F],
            "",
            "",
            expected,
            ev.config_problem().unwrap_or_default(),
        );
    };
    let mut certs: Vec<(String, Result<live::CertValidity, String>)> = Vec::new();
    let mut evidence = vec![F];
    if let Some(p) = &c.tls.cert_file {
        certs.push((
            p.display().to_string(),
            std::fs::read(p)
                .map_err(|e| e.to_string())
                .and_then(|b| live::cert_validity_pem(&b)),
        ));
    }
    if let Some(k) = &c.cluster.kubeconfig {
        match kubeconfig_credentials(k) {
            Ok((list, _)) => certs.extend(
                list.into_iter()
                    .map(|(n, pem)| (n, live::cert_validity_pem(&pem))),
            ),
            Err(e) => certs.push((k.display().to_string(), Err(e))),
        }
    }
    if let Ok(addr) = api_addr(ev)
        && let Ok(h) = live::handshake(addr, None)
        && let Some(der) = h.peer_cert
    {
        certs.push((format!("served on {addr}"), live::cert_validity_der(&der)));
        evidence.push(L);
    }
    if certs.is_empty() {
        return Outcome::new(
            Unknown,
            &[F],
            "",
            "",
            expected,
            "no serving certificate (tlsCertFile) and no kubeconfig client certificate to check",
        );
    }
    let now = jiff::Timestamp::now().as_second();
    let mut actual = Vec::new();
    let (mut fail, mut warn) = (Vec::new(), Vec::new());
    for (name, v) in &certs {
        match v {
            Ok(v) => {
                let days = (v.not_after - now) / 86_400;
                actual.push(format!("{name}: {days} days left"));
                if v.not_after <= now {
                    fail.push(format!("{name} ({}) expired", v.subject));
                } else if v.not_before > now {
                    fail.push(format!("{name} ({}) is not valid yet", v.subject));
                } else if (v.not_after - now) * 100
                    < (v.not_after - v.not_before) * i64::from(warn_percent_left)
                {
                    warn.push(format!(
                        "{name} expires in {days} days, past the rotation window"
                    ));
                }
            }
            Err(e) => warn.push(format!("{name}: {e}")),
        }
    }
    let audit = format!(
        "x509 validity of {}",
        certs
            .iter()
            .map(|c| c.0.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (v, reason) = if !fail.is_empty() {
        (Fail, fail.join("; "))
    } else if !warn.is_empty() {
        (Unknown, warn.join("; "))
    } else {
        (Pass, String::new())
    };
    Outcome::new(v, &evidence, audit, actual.join("; "), expected, reason)
}

fn key_files(ev: &Evidence) -> Outcome {
    let expected = "owner root, permissions 600 or more restrictive";
    let Some(c) = ev.config() else {
        return Outcome::new(
            Unknown,
            &[F],
            "",
            "",
            expected,
            ev.config_problem().unwrap_or_default(),
        );
    };
    let mut keys: Vec<PathBuf> = c.tls.private_key_file.iter().cloned().collect();
    if let Some(k) = &c.cluster.kubeconfig {
        match kubeconfig_credentials(k) {
            Ok((_, list)) => keys.extend(list),
            Err(e) => return Outcome::new(Unknown, &[F], "", "", expected, e),
        }
    }
    if keys.is_empty() {
        return Outcome::new(
            Unknown,
            &[F],
            "",
            "",
            expected,
            "no private key file is configured (tlsPrivateKeyFile, kubeconfig client-key)",
        );
    }
    let mut actual = Vec::new();
    let mut bad = Vec::new();
    for k in &keys {
        match std::fs::metadata(k) {
            Ok(m) => {
                let mode = m.permissions().mode() & 0o7777;
                let a = format!(
                    "{}: permissions={mode:o} {}",
                    k.display(),
                    owner(m.uid(), m.gid())
                );
                if mode & 0o077 != 0 || m.uid() != 0 {
                    bad.push(a.clone());
                }
                actual.push(a);
            }
            Err(e) => bad.push(format!("{}: {e}", k.display())),
        }
    }
    let audit = format!(
        "stat {}",
        keys.iter()
            .map(|k| k.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (v, reason) = if bad.is_empty() {
        (Pass, String::new())
    } else {
        (Fail, bad.join("; "))
    };
    Outcome::new(v, &[F], audit, actual.join("; "), expected, reason)
}

/// A path nobody but root can replace: owned by root, not group/other-writable; a directory
/// above it may be world-writable only with the sticky bit (as /tmp and /var/tmp).
fn trusted(m: &std::fs::Metadata, ancestor: bool) -> bool {
    let mode = m.permissions().mode();
    m.uid() == 0 && (mode & 0o022 == 0 || (ancestor && m.is_dir() && mode & 0o1000 != 0))
}

fn static_pods(ev: &Evidence) -> Outcome {
    let expected = "staticPodPath, its parents and its manifests owned by root and not writable by group or others";
    let Some(c) = ev.config() else {
        return Outcome::new(
            Unknown,
            &[C],
            "",
            "",
            expected,
            ev.config_problem().unwrap_or_default(),
        );
    };
    let Some(dir) = &c.static_pod_path else {
        return Outcome::new(
            Pass,
            &[C],
            ev.config_source(),
            "staticPodPath unset: no static pod source",
            expected,
            "",
        );
    };
    let mut bad = Vec::new();
    let mut checked = 0;
    let mut check = |p: &Path, ancestor: bool, bad: &mut Vec<String>| match std::fs::metadata(p) {
        Ok(m) => {
            checked += 1;
            if !trusted(&m, ancestor) {
                bad.push(format!(
                    "{}: permissions={:o} {}",
                    p.display(),
                    m.permissions().mode() & 0o7777,
                    owner(m.uid(), m.gid())
                ));
            }
        }
        Err(e) => bad.push(format!("{}: {e}", p.display())),
    };
    check(dir, false, &mut bad);
    for a in dir.ancestors().skip(1) {
        check(a, true, &mut bad);
    }
    if dir.is_dir()
        && let Ok(rd) = std::fs::read_dir(dir)
    {
        for e in rd.flatten() {
            check(&e.path(), false, &mut bad);
        }
    }
    let audit = format!("stat {} (its parents and entries)", dir.display());
    if bad.is_empty() {
        Outcome::new(
            Pass,
            &[C, F],
            audit,
            format!("{checked} paths trusted"),
            expected,
            "",
        )
    } else {
        Outcome::new(
            Fail,
            &[C, F],
            audit,
            bad.join("; "),
            expected,
            format!("writable by others than root: {}", bad.join("; ")),
        )
    }
}

fn runtime_socket(ev: &Evidence) -> Outcome {
    let expected = "a unix socket owned by root, not writable by others";
    let Some(c) = ev.config() else {
        return Outcome::new(
            Unknown,
            &[C],
            "",
            "",
            expected,
            ev.config_problem().unwrap_or_default(),
        );
    };
    let p = &c.runtime_endpoint;
    let audit = format!("stat {}", p.display());
    match std::fs::metadata(p) {
        Ok(m) => {
            let mode = m.permissions().mode() & 0o7777;
            let actual = format!(
                "{} permissions={mode:o} {}",
                if m.file_type().is_socket() {
                    "socket"
                } else {
                    "not a socket"
                },
                owner(m.uid(), m.gid())
            );
            if m.file_type().is_socket() && m.uid() == 0 && mode & 0o002 == 0 {
                Outcome::new(Pass, &[C, F], audit, actual, expected, "")
            } else {
                Outcome::new(
                    Fail,
                    &[C, F],
                    audit,
                    actual.clone(),
                    expected,
                    format!("{}: {actual}", p.display()),
                )
            }
        }
        Err(e) => Outcome::new(
            Unknown,
            &[C, F],
            audit,
            "",
            expected,
            format!("{}: {e}", p.display()),
        ),
    }
}

fn kernel_defaults(ev: &Evidence) -> Outcome {
    let expected = live::KERNEL_DEFAULTS
        .iter()
        .map(|(k, v)| format!("{}={v}", k.replace('/', ".")))
        .collect::<Vec<_>>()
        .join(" ");
    let got = live::kernel_defaults(Path::new("/proc/sys"));
    let mut actual = Vec::new();
    let mut differ = Vec::new();
    for (k, want, v) in &got {
        match v {
            Ok(v) => {
                actual.push(format!("{k}={v}"));
                if v != want {
                    differ.push(format!("{k}={v} (want {want})"));
                }
            }
            Err(e) => return Outcome::new(Unknown, &[L], "/proc/sys", "", expected, e.clone()),
        }
    }
    let protect = ev
        .raw_field("protectKernelDefaults")
        .and_then(|v| v.as_bool())
        == Some(true);
    let audit = "/proc/sys";
    if differ.is_empty() {
        Outcome::new(Pass, &[L], audit, actual.join(" "), expected, "")
    } else if protect && !honoured("protectKernelDefaults") {
        Outcome::new(
            Fail,
            &[C, L],
            audit,
            actual.join(" "),
            expected,
            format!(
                "protectKernelDefaults: true is set but ironlet does not honour it, and the kernel differs: {}",
                differ.join(", ")
            ),
        )
    } else {
        Outcome::new(
            Unknown,
            &[L],
            audit,
            actual.join(" "),
            expected,
            format!(
                "the kernel differs from what upstream's kubelet sets or enforces: {}",
                differ.join(", ")
            ),
        )
    }
}

fn pods_seccomp(ev: &Evidence) -> Outcome {
    let expected = "Seccomp 2 (filter) on every process in the pod cgroups";
    let Some(c) = ev.config() else {
        return Outcome::new(
            Unknown,
            &[L],
            "",
            "",
            expected,
            ev.config_problem().unwrap_or_default(),
        );
    };
    let root = c.cgroup_root.trim_end_matches('/');
    let prefix = if c.cgroups_per_qos {
        format!("{root}/kubepods")
    } else {
        root.to_owned()
    };
    let audit = format!("/proc/*/cgroup below {prefix}, /proc/<pid>/status Seccomp");
    match live::pod_processes(&prefix) {
        Ok(ps) if ps.is_empty() => Outcome::new(
            Unknown,
            &[L],
            audit,
            "",
            expected,
            "no pod processes are running",
        ),
        Ok(ps) => {
            let without: Vec<String> = ps
                .iter()
                .filter(|(_, s)| *s != Some(2))
                .map(|(p, _)| p.to_string())
                .collect();
            let actual = format!(
                "{} pod processes, {} without a seccomp filter",
                ps.len(),
                without.len()
            );
            if without.is_empty() {
                Outcome::new(Pass, &[L], audit, actual, expected, "")
            } else {
                Outcome::new(
                    Fail,
                    &[L],
                    audit,
                    actual,
                    expected,
                    format!("pids without a seccomp filter: {}", without.join(",")),
                )
            }
        }
        Err(e) => Outcome::new(Unknown, &[L], audit, "", expected, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unimplemented_fields_are_not_honoured() {
        for f in [
            "rotateCertificates",
            "serverTLSBootstrap",
            "seccompDefault",
            "makeIPTablesUtilChains",
            "protectKernelDefaults",
        ] {
            let implemented =
                fields::disposition(f).is_none_or(|d| d.disposition == Disposition::Implemented);
            assert_eq!(honoured(f), implemented, "{f}");
        }
        assert!(honoured("podPidsLimit"));
    }

    #[test]
    fn cis_cipher_names() {
        let allowed: Vec<String> = [
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ]
        .map(String::from)
        .to_vec();
        assert!(cis_name_allowed(
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            &allowed
        ));
        assert!(cis_name_allowed(
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            &allowed
        ));
        assert!(cis_name_allowed("TLS13_AES_128_GCM_SHA256", &allowed));
        assert!(!cis_name_allowed(
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            &allowed
        ));
    }

    #[test]
    fn trust_of_paths() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m");
        std::fs::create_dir(&p).unwrap();
        for (mode, ancestor, want) in [
            (0o755, false, true),
            (0o775, false, false),
            (0o1777, true, true),
            (0o1777, false, false),
            (0o777, true, false),
        ] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let m = std::fs::metadata(&p).unwrap();
            assert_eq!(
                trusted(&m, ancestor),
                want && m.uid() == 0,
                "{mode:o} {ancestor}"
            );
        }
    }
}
