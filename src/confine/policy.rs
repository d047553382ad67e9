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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyscallFilter {
    pub default: DefaultRule,
    pub allow: Vec<AllowRule>,
    #[serde(default)]
    pub deny: Vec<DenyRule>,
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
        _ => return None,
    } as u32)
}

fn check_reason(what: &str, reason: &str) -> Result<(), String> {
    if reason.trim().len() < 10 {
        return Err(format!("{what}: the reason is missing or too short"));
    }
    Ok(())
}

fn check_filter(name: &str, f: &SyscallFilter) -> Result<(), String> {
    check_reason(&format!("seccomp {name}.default"), &f.default.reason)?;
    match (f.default.action, f.default.errno.as_deref()) {
        (DefaultAction::Errno, Some(e)) if errno_number(e).is_some() => {}
        (DefaultAction::Errno, e) => {
            return Err(format!(
                "seccomp {name}.default: action errno needs a known errno, got {e:?}"
            ));
        }
        (DefaultAction::KillProcess, None) => {}
        (DefaultAction::KillProcess, Some(_)) => {
            return Err(format!(
                "seccomp {name}.default: kill_process takes no errno"
            ));
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
            return Err(format!("seccomp {name}: {sc} is listed twice"));
        }
        if super::seccomp::syscall_number(sc).is_none() {
            return Err(format!(
                "seccomp {name}: {sc:?} is not a system call on this architecture"
            ));
        }
        check_reason(&format!("seccomp {name}: {sc}"), reason)?;
    }
    for d in &f.deny {
        if errno_number(&d.errno).is_none() {
            return Err(format!(
                "seccomp {name}: {}: unknown errno {:?}",
                d.syscall, d.errno
            ));
        }
    }
    Ok(())
}

fn check_caps(name: &str, entries: &[CapEntry]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for e in entries {
        caps::Capability::from_str(&e.name)
            .map_err(|_| format!("capabilities {name}: unknown capability {:?}", e.name))?;
        if !seen.insert(e.name.as_str()) {
            return Err(format!("capabilities {name}: {} is listed twice", e.name));
        }
        check_reason(&format!("capabilities {name}: {}", e.name), &e.reason)?;
    }
    Ok(())
}

impl Policies {
    /// Parses and checks the compiled-in policy files.
    pub fn load() -> Result<Policies, String> {
        Self::parse(CAPABILITIES_JSON, SECCOMP_JSON)
    }

    pub fn parse(capabilities: &str, seccomp: &str) -> Result<Policies, String> {
        let capabilities: CapabilityPolicy = serde_json::from_str(capabilities)
            .map_err(|e| format!("policy/capabilities.json: {e}"))?;
        let seccomp: SeccompPolicy =
            serde_json::from_str(seccomp).map_err(|e| format!("policy/seccomp.json: {e}"))?;
        if capabilities.version != 1 || seccomp.version != 1 {
            return Err("policy files: unsupported version (expected 1)".into());
        }
        check_caps("agent", &capabilities.agent)?;
        check_caps("mount_helper", &capabilities.mount_helper)?;
        check_caps("never", &capabilities.never)?;
        for kept in &capabilities.agent {
            if capabilities.never.iter().any(|n| n.name == kept.name) {
                return Err(format!(
                    "capabilities: {} is both kept by the agent and listed under never",
                    kept.name
                ));
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
    fn the_forbidden_calls_are_never_allowed() {
        let p = Policies::load().unwrap();
        for f in [&p.seccomp.agent, &p.seccomp.mount_helper] {
            for sc in ["ptrace", "kexec_load", "init_module", "finit_module", "bpf"] {
                assert!(!f.allow.iter().any(|r| r.syscall == sc), "{sc} allowed");
            }
        }
        for sc in ["mount", "umount2"] {
            assert!(!p.seccomp.agent.allow.iter().any(|r| r.syscall == sc));
        }
    }

    #[test]
    fn entries_without_reasons_unknown_names_and_duplicates_are_refused() {
        let caps_ok = CAPABILITIES_JSON;
        let bad_caps = caps_ok.replacen("\"CAP_DAC_OVERRIDE\"", "\"CAP_DAC_OVERRIDDEN\"", 1);
        assert!(
            Policies::parse(&bad_caps, SECCOMP_JSON)
                .unwrap_err()
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
                .contains("raed")
        );
        let dup = SECCOMP_JSON.replacen("\"syscall\": \"write\"", "\"syscall\": \"read\"", 1);
        assert!(
            Policies::parse(caps_ok, &dup)
                .unwrap_err()
                .contains("twice")
        );
    }
}
