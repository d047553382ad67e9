//! The confinement policy files, compiled in: `policy/capabilities.json` and
//! `policy/seccomp.json`. Every entry carries a reason; [`Policies::load`] refuses an entry
//! without one, an unknown capability or system call name, and duplicates.

use std::collections::BTreeSet;
use std::str::FromStr;

use serde::Deserialize;

pub const CAPABILITIES_JSON: &str = include_str!("../../policy/capabilities.json");
pub const SECCOMP_JSON: &str = include_str!("../../policy/seccomp.json");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapEntry {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityPolicy {
    pub version: u32,
    pub about: String,
    pub agent: Vec<CapEntry>,
    pub mount_helper: Vec<CapEntry>,
    pub never: Vec<CapEntry>,
}

/// What happens to a system call that no rule lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultAction {
    KillProcess,
    Errno,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultRule {
    pub action: DefaultAction,
    /// For `errno`: the errno name (e.g. "EPERM").
    #[serde(default)]
    pub errno: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    pub syscall: String,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyRule {
    pub syscall: String,
    pub errno: String,
    pub reason: String,
}

/// An argument filter on an allowed call: when the arguments match, the call answers
/// `errno` instead of running.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgRule {
    pub syscall: String,
    pub errno: String,
    pub when: ArgMatch,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum ArgMatch {
    /// Any of these flags (names, see [`constant`]) is set in argument `arg`.
    AnyFlag { arg: u8, flags: Vec<String> },
    /// Argument `arg` (a 32-bit int) is none of these values (names, see [`constant`]).
    NoneOf { arg: u8, values: Vec<String> },
}

/// The constants an argument filter may name.
pub fn constant(name: &str) -> Option<u64> {
    Some(match name {
        "CLONE_NEWUSER" => libc::CLONE_NEWUSER as u64,
        "CLONE_NEWNET" => libc::CLONE_NEWNET as u64,
        "CLONE_NEWNS" => libc::CLONE_NEWNS as u64,
        "CLONE_NEWPID" => libc::CLONE_NEWPID as u64,
        "AF_UNIX" => libc::AF_UNIX as u64,
        "AF_INET" => libc::AF_INET as u64,
        "AF_INET6" => libc::AF_INET6 as u64,
        "AF_NETLINK" => libc::AF_NETLINK as u64,
        _ => return None,
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyscallFilter {
    pub default: DefaultRule,
    pub allow: Vec<AllowRule>,
    #[serde(default)]
    pub deny: Vec<DenyRule>,
    /// Argument filters on allowed calls (answered with their errno when they match).
    #[serde(default)]
    pub deny_args: Vec<ArgRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeccompPolicy {
    pub version: u32,
    pub about: String,
    pub agent: SyscallFilter,
    pub mount_helper: SyscallFilter,
}

#[derive(Debug, Clone)]
pub struct Policies {
    pub capabilities: CapabilityPolicy,
    pub seccomp: SeccompPolicy,
}

/// The errno numbers a deny rule may name.
pub fn errno_number(name: &str) -> Option<u32> {
    Some(match name {
        "EPERM" => libc::EPERM,
        "EACCES" => libc::EACCES,
        "ENOSYS" => libc::ENOSYS,
        "EAFNOSUPPORT" => libc::EAFNOSUPPORT,
        _ => return None,
    } as u32)
}

/// Why a compiled-in policy file was refused (a build with such a file fails its tests).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: {source}")]
    Json {
        file: &'static str,
        source: serde_json::Error,
    },
    #[error("policy files: unsupported version (expected 1)")]
    Version,
    /// `entry` names the filter or set and the entry.
    #[error("{entry}: the reason is missing or too short")]
    NoReason { entry: String },
    #[error("seccomp {filter}.default: action errno needs a known errno, got {errno:?}")]
    DefaultErrno {
        filter: String,
        errno: Option<String>,
    },
    #[error("seccomp {0}.default: kill_process takes no errno")]
    KillWithErrno(String),
    #[error("seccomp {filter}: {syscall} is listed twice")]
    SyscallTwice { filter: String, syscall: String },
    #[error("seccomp {filter}: {syscall:?} is not a system call on this architecture")]
    NotASyscall { filter: String, syscall: String },
    #[error("seccomp {filter}: {syscall}: unknown errno {errno:?}")]
    DenyErrno {
        filter: String,
        syscall: String,
        errno: String,
    },
    /// `at` is `seccomp <filter>.deny_args: <syscall>`.
    #[error("{at}: an argument filter narrows an allowed call; {syscall} is not allowed")]
    ArgsOnUnallowed { at: String, syscall: String },
    #[error("{at}: unknown errno {errno:?}")]
    ArgsErrno { at: String, errno: String },
    #[error("{0}: argument index 0..=5 and at least one name")]
    ArgsShape(String),
    #[error("{at}: unknown constant {name:?}")]
    UnknownConstant { at: String, name: String },
    #[error("capabilities {set}: unknown capability {name:?}")]
    UnknownCapability { set: String, name: String },
    #[error("capabilities {set}: {name} is listed twice")]
    CapabilityTwice { set: String, name: String },
    #[error("capabilities: {0} is both kept by the agent and listed under never")]
    KeptAndNever(String),
}

fn check_reason(what: &str, reason: &str) -> Result<(), PolicyError> {
    if reason.trim().len() < 10 {
        return Err(PolicyError::NoReason {
            entry: what.to_owned(),
        });
    }
    Ok(())
}

fn check_filter(name: &str, f: &SyscallFilter) -> Result<(), PolicyError> {
    check_reason(&format!("seccomp {name}.default"), &f.default.reason)?;
    match (f.default.action, f.default.errno.as_deref()) {
        (DefaultAction::Errno, Some(e)) if errno_number(e).is_some() => {}
        (DefaultAction::Errno, e) => {
            return Err(PolicyError::DefaultErrno {
                filter: name.to_owned(),
                errno: e.map(str::to_owned),
            });
        }
        (DefaultAction::KillProcess, None) => {}
        (DefaultAction::KillProcess, Some(_)) => {
            return Err(PolicyError::KillWithErrno(name.to_owned()));
        }
    }
    let mut seen = BTreeSet::new();
    let names = f
        .allow
        .iter()
        .map(|r| (&r.syscall, &r.reason))
        .chain(f.deny.iter().map(|r| (&r.syscall, &r.reason)));
    for (sc, reason) in names {
        if !seen.insert(sc.as_str()) {
            return Err(PolicyError::SyscallTwice {
                filter: name.to_owned(),
                syscall: sc.clone(),
            });
        }
        if super::seccomp::syscall_number(sc).is_none() {
            return Err(PolicyError::NotASyscall {
                filter: name.to_owned(),
                syscall: sc.clone(),
            });
        }
        check_reason(&format!("seccomp {name}: {sc}"), reason)?;
    }
    for d in &f.deny {
        if errno_number(&d.errno).is_none() {
            return Err(PolicyError::DenyErrno {
                filter: name.to_owned(),
                syscall: d.syscall.clone(),
                errno: d.errno.clone(),
            });
        }
    }
    for a in &f.deny_args {
        let at = format!("seccomp {name}.deny_args: {}", a.syscall);
        check_reason(&at, &a.reason)?;
        if !f.allow.iter().any(|r| r.syscall == a.syscall) {
            return Err(PolicyError::ArgsOnUnallowed {
                at,
                syscall: a.syscall.clone(),
            });
        }
        if errno_number(&a.errno).is_none() {
            return Err(PolicyError::ArgsErrno {
                at,
                errno: a.errno.clone(),
            });
        }
        let (arg, names) = match &a.when {
            ArgMatch::AnyFlag { arg, flags } => (*arg, flags),
            ArgMatch::NoneOf { arg, values } => (*arg, values),
        };
        if arg > 5 || names.is_empty() {
            return Err(PolicyError::ArgsShape(at));
        }
        if let Some(bad) = names.iter().find(|n| constant(n).is_none()) {
            return Err(PolicyError::UnknownConstant {
                at,
                name: bad.clone(),
            });
        }
    }
    Ok(())
}

fn check_caps(name: &str, entries: &[CapEntry]) -> Result<(), PolicyError> {
    let mut seen = BTreeSet::new();
    for e in entries {
        caps::Capability::from_str(&e.name).map_err(|_| PolicyError::UnknownCapability {
            set: name.to_owned(),
            name: e.name.clone(),
        })?;
        if !seen.insert(e.name.as_str()) {
            return Err(PolicyError::CapabilityTwice {
                set: name.to_owned(),
                name: e.name.clone(),
            });
        }
        check_reason(&format!("capabilities {name}: {}", e.name), &e.reason)?;
    }
    Ok(())
}

impl Policies {
    /// Parses and checks the compiled-in policy files.
    pub fn load() -> Result<Policies, PolicyError> {
        Self::parse(CAPABILITIES_JSON, SECCOMP_JSON)
    }

    pub fn parse(capabilities: &str, seccomp: &str) -> Result<Policies, PolicyError> {
        let capabilities: CapabilityPolicy =
            serde_json::from_str(capabilities).map_err(|source| PolicyError::Json {
                file: "policy/capabilities.json",
                source,
            })?;
        let seccomp: SeccompPolicy =
            serde_json::from_str(seccomp).map_err(|source| PolicyError::Json {
                file: "policy/seccomp.json",
                source,
            })?;
        if capabilities.version != 1 || seccomp.version != 1 {
            return Err(PolicyError::Version);
        }
        check_caps("agent", &capabilities.agent)?;
        check_caps("mount_helper", &capabilities.mount_helper)?;
        check_caps("never", &capabilities.never)?;
        for kept in &capabilities.agent {
            if capabilities.never.iter().any(|n| n.name == kept.name) {
                return Err(PolicyError::KeptAndNever(kept.name.clone()));
            }
        }
        check_filter("agent", &seccomp.agent)?;
        check_filter("mount_helper", &seccomp.mount_helper)?;
        Ok(Policies {
            capabilities,
            seccomp,
        })
    }

    pub fn agent_caps(&self) -> Vec<caps::Capability> {
        to_caps(&self.capabilities.agent)
    }

    pub fn helper_caps(&self) -> Vec<caps::Capability> {
        to_caps(&self.capabilities.mount_helper)
    }
}

fn to_caps(entries: &[CapEntry]) -> Vec<caps::Capability> {
    entries
        .iter()
        .filter_map(|e| caps::Capability::from_str(&e.name).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_policies_are_valid() {
        let p = Policies::load().unwrap();
        assert!(!p.seccomp.agent.allow.is_empty());
        assert!(
            p.agent_caps()
                .iter()
                .all(|c| *c != caps::Capability::CAP_SYS_ADMIN)
        );
        assert_eq!(p.helper_caps(), vec![caps::Capability::CAP_SYS_ADMIN]);
    }

    #[test]
    fn the_agent_filters_namespaces_and_socket_families_and_answers_clone3_enosys() {
        let p = Policies::load().unwrap();
        let a = &p.seccomp.agent;
        assert!(
            a.deny
                .iter()
                .any(|d| d.syscall == "clone3" && d.errno == "ENOSYS")
        );
        assert!(!a.allow.iter().any(|r| r.syscall == "clone3"));
        let when = |sc: &str| {
            a.deny_args
                .iter()
                .find(|r| r.syscall == sc)
                .map(|r| r.when.clone())
        };
        let Some(ArgMatch::AnyFlag { arg: 0, flags }) = when("clone") else {
            panic!("clone")
        };
        assert!(flags.contains(&"CLONE_NEWUSER".into()) && flags.contains(&"CLONE_NEWNET".into()));
        let Some(ArgMatch::NoneOf { arg: 0, values }) = when("socket") else {
            panic!("socket")
        };
        assert_eq!(values, ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"]);
        let bad = SECCOMP_JSON.replacen("\"CLONE_NEWUSER\"", "\"CLONE_NEWUSR\"", 1);
        assert!(
            Policies::parse(CAPABILITIES_JSON, &bad)
                .unwrap_err()
                .to_string()
                .contains("CLONE_NEWUSR")
        );
    }

    #[test]
    fn the_forbidden_calls_are_never_allowed() {
        let p = Policies::load().unwrap();
        for f in [&p.seccomp.agent, &p.seccomp.mount_helper] {
            for sc in ["ptrace", "kexec_load", "init_module", "finit_module", "bpf"] {
                assert!(!f.allow.iter().any(|r| r.syscall == sc), "{sc} allowed");
            }
        }
        // chmod by path: landlock does not mediate it (issue 15, finding 9).
        for sc in ["mount", "umount2", "chmod", "fchmodat", "fchmodat2"] {
            assert!(
                !p.seccomp.agent.allow.iter().any(|r| r.syscall == sc),
                "{sc}"
            );
            assert!(p.seccomp.agent.deny.iter().any(|r| r.syscall == sc), "{sc}");
        }
    }

    #[test]
    fn entries_without_reasons_unknown_names_and_duplicates_are_refused() {
        let caps_ok = CAPABILITIES_JSON;
        let bad_caps = caps_ok.replacen("\"CAP_DAC_OVERRIDE\"", "\"CAP_DAC_OVERRIDDEN\"", 1);
        assert!(
            Policies::parse(&bad_caps, SECCOMP_JSON)
                .unwrap_err()
                .to_string()
                .contains("CAP_DAC_OVERRIDDEN")
        );
        let no_reason = SECCOMP_JSON.replacen(
            "{\"syscall\": \"read\", \"reason\": \"",
            "{\"syscall\": \"read\", \"reason\": \"\", \"x\": \"",
            1,
        );
        assert!(Policies::parse(caps_ok, &no_reason).is_err());
        let unknown = SECCOMP_JSON.replacen("\"syscall\": \"read\"", "\"syscall\": \"raed\"", 1);
        assert!(
            Policies::parse(caps_ok, &unknown)
                .unwrap_err()
                .to_string()
                .contains("raed")
        );
        let dup = SECCOMP_JSON.replacen("\"syscall\": \"write\"", "\"syscall\": \"read\"", 1);
        assert!(
            Policies::parse(caps_ok, &dup)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }
}
