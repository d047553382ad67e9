//! The seccomp allow-lists of `policy/seccomp.json`, compiled to BPF with seccompiler.
//!
//! A process gets two stacked filters: the allow-list (every listed call, allowed or
//! denied, passes; anything else takes the default action) and one filter per errno that
//! answers the deny rules with that errno. The kernel applies the strictest result, so a
//! denied call returns its errno and an unlisted one takes the default action.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, TargetArch};

use super::ConfineError;
use super::policy::{ArgMatch, ArgRule, DefaultAction, SyscallFilter, constant, errno_number};

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;
#[cfg(target_arch = "riscv64")]
const ARCH: TargetArch = TargetArch::riscv64;

fn action_json(default: &super::policy::DefaultRule) -> serde_json::Value {
    match default.action {
        DefaultAction::KillProcess => serde_json::json!("kill_process"),
        DefaultAction::Errno => serde_json::json!({
            "errno": default.errno.as_deref().and_then(errno_number).unwrap_or(libc::EPERM as u32)
        }),
    }
}

fn compile_one(
    mismatch: serde_json::Value,
    matched: serde_json::Value,
    names: &[&str],
) -> Result<BpfProgram, ConfineError> {
    let filter: Vec<_> = names
        .iter()
        .map(|n| serde_json::json!({ "syscall": n }))
        .collect();
    compile_rules(mismatch, matched, filter)
}

/// seccompiler rules for one argument filter: one rule per flag (any of them matches), or
/// one rule whose conditions all hold (the value is none of those listed).
fn arg_rules(r: &ArgRule) -> Vec<serde_json::Value> {
    let value = |n: &String| constant(n).unwrap_or(u64::MAX);
    match &r.when {
        ArgMatch::AnyFlag { arg, flags } => flags
            .iter()
            .map(|f| {
                let bit = value(f);
                serde_json::json!({ "syscall": r.syscall, "args": [
                    { "index": arg, "type": "qword", "op": { "masked_eq": bit }, "val": bit }
                ]})
            })
            .collect(),
        ArgMatch::NoneOf { arg, values } => vec![serde_json::json!({
            "syscall": r.syscall,
            "args": values.iter().map(|v| serde_json::json!(
                { "index": arg, "type": "dword", "op": "ne", "val": value(v) }
            )).collect::<Vec<_>>()
        })],
    }
}

fn compile_rules(
    mismatch: serde_json::Value,
    matched: serde_json::Value,
    filter: Vec<serde_json::Value>,
) -> Result<BpfProgram, ConfineError> {
    let json = serde_json::json!({
        "f": { "mismatch_action": mismatch, "match_action": matched, "filter": filter }
    });
    let mut map = seccompiler::compile_from_json(json.to_string().as_bytes(), ARCH)
        .map_err(ConfineError::SeccompCompile)?;
    map.remove("f").ok_or(ConfineError::SeccompNoProgram)
}

/// Whether `name` is a system call seccompiler knows on this architecture.
pub fn syscall_number(name: &str) -> Option<()> {
    compile_one(
        serde_json::json!("allow"),
        serde_json::json!("log"),
        &[name],
    )
    .ok()
    .map(|_| ())
}

/// The BPF programs for one process, to be installed in order: the deny filters, then
/// the allow-list.
pub fn compile(filter: &SyscallFilter) -> Result<Vec<BpfProgram>, ConfineError> {
    let mut listed: Vec<&str> = filter.allow.iter().map(|r| r.syscall.as_str()).collect();
    listed.extend(filter.deny.iter().map(|r| r.syscall.as_str()));
    let mut programs = Vec::new();
    let mut by_errno: BTreeMap<u32, Vec<serde_json::Value>> = BTreeMap::new();
    for d in &filter.deny {
        let errno =
            errno_number(&d.errno).ok_or_else(|| ConfineError::UnknownErrno(d.errno.clone()))?;
        by_errno
            .entry(errno)
            .or_default()
            .push(serde_json::json!({ "syscall": d.syscall }));
    }
    for a in &filter.deny_args {
        let errno =
            errno_number(&a.errno).ok_or_else(|| ConfineError::UnknownErrno(a.errno.clone()))?;
        by_errno.entry(errno).or_default().extend(arg_rules(a));
    }
    for (errno, rules) in by_errno {
        programs.push(compile_rules(
            serde_json::json!("allow"),
            serde_json::json!({ "errno": errno }),
            rules,
        )?);
    }
    // The allow-list goes last: once it is in, seccomp(2) itself is no longer allowed.
    programs.push(compile_one(
        action_json(&filter.default),
        serde_json::json!("allow"),
        &listed,
    )?);
    Ok(programs)
}

/// Installs the programs on every thread of the process (TSYNC), which also sets
/// no_new_privs.
pub fn install(programs: &[BpfProgram]) -> Result<(), ConfineError> {
    for p in programs {
        seccompiler::apply_filter_all_threads(p).map_err(ConfineError::SeccompInstall)?;
    }
    Ok(())
}
