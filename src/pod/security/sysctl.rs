//! Pod sysctls as upstream admits them (pkg/kubelet/sysctl, component-helpers
//! node/util/sysctl): only namespaced sysctls, the safe set plus the operator's
//! `allowedUnsafeSysctls`, network sysctls never with hostNetwork, IPC ones never with
//! hostIPC. Pure; used at config load (the allow-list) and at pod admission.

use std::fmt;

/// Upstream's safe set for 1.33 (`SafeSysctlAllowlist`): namespaced and isolated between
/// pods, so any pod may set them. The same names are what Pod Security `baseline` allows.
pub const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// Longest sysctl name or pattern upstream accepts.
const MAX_LEN: usize = 253;

/// The kernel namespace a sysctl belongs to. Anything else is node-level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysctlNamespace {
    Ipc,
    Net,
}

impl fmt::Display for SysctlNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SysctlNamespace::Ipc => "IPC",
            SysctlNamespace::Net => "network",
        })
    }
}

/// Upstream's `NormalizeName`: a name written with `/` separators (`net/ipv4/conf/eth0.1/x`)
/// becomes the dotted form, with dots inside segments turned into slashes.
pub fn normalize(name: &str) -> String {
    let first_sep = name.find(['.', '/']);
    match first_sep.map(|i| &name[i..=i]) {
        Some("/") => name
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => name.to_string(),
    }
}

/// The namespace of a (normalized) sysctl name or pattern prefix; None for node-level ones.
pub fn namespace_of(name: &str) -> Option<SysctlNamespace> {
    if name == "kernel.sem" {
        return Some(SysctlNamespace::Ipc);
    }
    if name.starts_with("kernel.shm") || name.starts_with("kernel.msg") {
        return Some(SysctlNamespace::Ipc);
    }
    if name == "fs.mqueue" || name.starts_with("fs.mqueue.") {
        return Some(SysctlNamespace::Ipc);
    }
    if name == "net" || name.starts_with("net.") {
        return Some(SysctlNamespace::Net);
    }
    None
}

fn valid_segment(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter()
            .all(|&c| alnum(c) || c == b'-' || c == b'_' || c == b'/')
}

/// A sysctl name as upstream validates it: dotted segments of `[a-z0-9]([-_a-z0-9/]*[a-z0-9])?`.
pub fn valid_name(name: &str) -> bool {
    name.len() <= MAX_LEN && name.split('.').all(valid_segment)
}

/// One `allowedUnsafeSysctls` entry: an exact name, or a prefix ending in `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SysctlPattern {
    Exact(String),
    Prefix(String),
}

/// Why an `allowedUnsafeSysctls` entry is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error(
        "{0:?} is not a sysctl name or a prefix ending in '*' (segments of [a-z0-9]([-_a-z0-9]*[a-z0-9])?, at most {MAX_LEN} characters)"
    )]
    Malformed(String),
    #[error(
        "{0:?} is not known to be namespaced: only kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.* and net.* can be set per pod; a node-level sysctl would change the whole node"
    )]
    NodeLevel(String),
}

impl SysctlPattern {
    /// Parses and validates an entry as upstream's `NewAllowlist` does.
    pub fn parse(entry: &str) -> Result<SysctlPattern, PatternError> {
        let norm = normalize(entry);
        let (body, prefix) = match norm.strip_suffix('*') {
            Some(b) => (b, true),
            None => (norm.as_str(), false),
        };
        // "net.*" leaves "net." whose last segment is empty; "kernel.msg*" leaves "kernel.msg".
        let checked = if prefix {
            body.strip_suffix('.').unwrap_or(body)
        } else {
            body
        };
        if norm.len() > MAX_LEN || checked.is_empty() || !valid_name(checked) {
            return Err(PatternError::Malformed(entry.to_string()));
        }
        if namespace_of(checked).is_none() && namespace_of(body).is_none() {
            return Err(PatternError::NodeLevel(entry.to_string()));
        }
        Ok(if prefix {
            SysctlPattern::Prefix(body.to_string())
        } else {
            SysctlPattern::Exact(body.to_string())
        })
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            SysctlPattern::Exact(n) => n == name,
            SysctlPattern::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

impl fmt::Display for SysctlPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysctlPattern::Exact(n) => f.write_str(n),
            SysctlPattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

/// Why a pod's sysctl is refused (the pod fails with reason `SysctlForbidden`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SysctlRefusal {
    #[error("{0:?} is not a valid sysctl name")]
    Invalid(String),
    #[error("{0:?} is not a namespaced sysctl: it would change the whole node")]
    NodeLevel(String),
    #[error("{name:?} not allowed with host {ns} enabled")]
    HostNamespace { name: String, ns: SysctlNamespace },
    #[error("{0:?} not allowlisted")]
    NotAllowed(String),
}

/// The upstream reason of a pod refused for its sysctls.
pub const FORBIDDEN_REASON: &str = "SysctlForbidden";

/// Checks one pod sysctl against the safe set and the operator's patterns.
pub fn check(
    name: &str,
    allowed_unsafe: &[SysctlPattern],
    host_network: bool,
    host_ipc: bool,
) -> Result<(), SysctlRefusal> {
    let norm = normalize(name);
    if !valid_name(&norm) {
        return Err(SysctlRefusal::Invalid(name.to_string()));
    }
    let Some(ns) = namespace_of(&norm) else {
        return Err(SysctlRefusal::NodeLevel(name.to_string()));
    };
    if (ns == SysctlNamespace::Net && host_network) || (ns == SysctlNamespace::Ipc && host_ipc) {
        return Err(SysctlRefusal::HostNamespace {
            name: name.to_string(),
            ns,
        });
    }
    if SAFE_SYSCTLS.contains(&norm.as_str()) || allowed_unsafe.iter().any(|p| p.matches(&norm)) {
        return Ok(());
    }
    Err(SysctlRefusal::NotAllowed(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_validated_as_upstream() {
        assert_eq!(
            SysctlPattern::parse("kernel.msg*"),
            Ok(SysctlPattern::Prefix("kernel.msg".into()))
        );
        assert_eq!(
            SysctlPattern::parse("net.*"),
            Ok(SysctlPattern::Prefix("net.".into()))
        );
        assert_eq!(
            SysctlPattern::parse("net.core.somaxconn"),
            Ok(SysctlPattern::Exact("net.core.somaxconn".into()))
        );
        assert_eq!(
            SysctlPattern::parse("kernel/msgmax"),
            Ok(SysctlPattern::Exact("kernel.msgmax".into()))
        );
        for node_level in [
            "kernel.panic",
            "vm.*",
            "vm.swappiness",
            "kernel.*",
            "fs.file-max",
        ] {
            assert!(
                matches!(
                    SysctlPattern::parse(node_level),
                    Err(PatternError::NodeLevel(_))
                ),
                "{node_level}"
            );
        }
        for bad in [
            "",
            "*",
            "net..x",
            "Net.core",
            "net.core.*x",
            "a*b",
            ".net",
            "net.-a",
        ] {
            assert!(
                matches!(SysctlPattern::parse(bad), Err(PatternError::Malformed(_))),
                "{bad:?}: {:?}",
                SysctlPattern::parse(bad)
            );
        }
        assert!(SysctlPattern::parse(&format!("net.{}", "a".repeat(260))).is_err());
    }

    #[test]
    fn pod_sysctls_follow_the_safe_set_the_allow_list_and_the_host_namespaces() {
        let none: &[SysctlPattern] = &[];
        assert_eq!(
            check("net.ipv4.ip_unprivileged_port_start", none, false, false),
            Ok(())
        );
        assert_eq!(check("kernel.shm_rmid_forced", none, false, false), Ok(()));
        assert_eq!(
            check("kernel.msgmax", none, false, false),
            Err(SysctlRefusal::NotAllowed("kernel.msgmax".into()))
        );
        assert_eq!(
            check("kernel.panic", none, false, false),
            Err(SysctlRefusal::NodeLevel("kernel.panic".into()))
        );
        let allowed = [SysctlPattern::parse("kernel.msg*").unwrap()];
        assert_eq!(check("kernel.msgmax", &allowed, false, false), Ok(()));
        assert!(matches!(
            check("kernel.msgmax", &allowed, false, true),
            Err(SysctlRefusal::HostNamespace {
                ns: SysctlNamespace::Ipc,
                ..
            })
        ));
        assert!(matches!(
            check("net.ipv4.tcp_syncookies", none, true, false),
            Err(SysctlRefusal::HostNamespace {
                ns: SysctlNamespace::Net,
                ..
            })
        ));
        // An allow-list pattern never reaches node-level names, even by prefix.
        let net = [SysctlPattern::parse("net.*").unwrap()];
        assert_eq!(check("net.core.somaxconn", &net, false, false), Ok(()));
        assert!(check("vm.swappiness", &net, false, false).is_err());
        assert_eq!(
            check("net/ipv4/ip_local_port_range", none, false, false),
            Ok(())
        );
        assert!(matches!(
            check("net.ipv4.$x", none, false, false),
            Err(SysctlRefusal::Invalid(_))
        ));
        assert_eq!(
            check("kernel.msgmax", none, false, false)
                .unwrap_err()
                .to_string(),
            "\"kernel.msgmax\" not allowlisted"
        );
    }

    #[test]
    fn normalization_swaps_separators_only_for_slash_names() {
        assert_eq!(
            normalize("net/ipv4/conf/eth0.1/x"),
            "net.ipv4.conf.eth0/1.x"
        );
        assert_eq!(
            normalize("net.ipv4.conf.eth0/1.x"),
            "net.ipv4.conf.eth0/1.x"
        );
    }
}
