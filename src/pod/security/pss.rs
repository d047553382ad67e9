//! The Pod Security Standards, checked on the node. Static pods never pass the API server's
//! admission, and an API server may run without PodSecurity or with exemptions; the node is
//! the last place a pod can be stopped before it runs. The checks are upstream's
//! (k8s.io/pod-security-admission/policy, version v1.33), one function each, applied to the
//! typed pod; the violation names follow the Pod Security Standards. Pure.

use k8s_openapi::api::core::v1::{ContainerPort, Pod, PodSpec, SecurityContext};
use serde::Deserialize;

use super::context::{
    APPARMOR_CONTAINER_ANNOTATION_PREFIX, SECCOMP_CONTAINER_ANNOTATION_PREFIX,
    SECCOMP_POD_ANNOTATION,
};
use super::sysctl::SAFE_SYSCTLS;

/// The version of the standards these checks implement.
pub const VERSION: &str = "v1.33";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// One failed check: its Pod Security Standards name and what exactly is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub check: &'static str,
    pub detail: String,
}

/// The reason of a pod refused by the node's Pod Security.
pub const REASON: &str = "PodSecurity";

/// All violations of `pod` at `level`, in a fixed order (baseline checks first).
pub fn evaluate(level: Level, pod: &Pod) -> Vec<Violation> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if level == Level::Privileged {
        return out;
    }
    let cs = containers(spec);
    let baseline: &[(&str, Check)] = &[
        ("hostProcess", host_process),
        ("host namespaces", host_namespaces),
        ("privileged", privileged),
        ("capabilities", capabilities_baseline),
        ("hostPath volumes", host_path_volumes),
        ("host ports", host_ports),
        ("AppArmor", app_armor),
        ("SELinux", se_linux),
        ("procMount", proc_mount),
        ("seccompProfile", seccomp_baseline),
        ("sysctls", sysctls),
    ];
    for (name, check) in baseline {
        if level == Level::Restricted && (*name == "capabilities" || *name == "seccompProfile") {
            // Restricted replaces these two with its stricter forms (upstream overrides).
            continue;
        }
        if let Some(detail) = check(pod, spec, &cs) {
            out.push(Violation {
                check: name,
                detail,
            });
        }
    }
    if level == Level::Restricted {
        let checks: &[(&str, Check)] = &[
            ("volume types", volume_types),
            ("allowPrivilegeEscalation", allow_privilege_escalation),
            ("runAsNonRoot", run_as_non_root),
            ("runAsUser", run_as_user),
            ("seccompProfile", seccomp_restricted),
            ("capabilities", capabilities_restricted),
        ];
        for (name, check) in checks {
            if let Some(detail) = check(pod, spec, &cs) {
                out.push(Violation {
                    check: name,
                    detail,
                });
            }
        }
    }
    out
}

/// Upstream's message shape: `violates PodSecurity "baseline:v1.33": privileged (...), ...`.
pub fn message(level: Level, violations: &[Violation]) -> String {
    let list: Vec<String> = violations
        .iter()
        .map(|v| format!("{} ({})", v.check, v.detail))
        .collect();
    format!(
        "violates PodSecurity \"{}:{VERSION}\": {}",
        level.as_str(),
        list.join(", ")
    )
}

/// One check: the pod, its spec and all its containers to what is wrong, if anything.
type Check = fn(&Pod, &PodSpec, &[C<'_>]) -> Option<String>;

/// A container of any kind, as the checks see it.
struct C<'a> {
    name: &'a str,
    sc: Option<&'a SecurityContext>,
    ports: &'a [ContainerPort],
}

fn containers(spec: &PodSpec) -> Vec<C<'_>> {
    let mut v: Vec<C<'_>> = Vec::new();
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        v.push(C {
            name: &c.name,
            sc: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
        });
    }
    for c in spec.ephemeral_containers.iter().flatten() {
        v.push(C {
            name: &c.name,
            sc: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
        });
    }
    v
}

fn quoted(names: &[&str]) -> String {
    let q: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    q.join(", ")
}

/// "container \"a\" must ..." / "containers \"a\", \"b\" must ...".
fn containers_must(names: &[&str], what: &str) -> Option<String> {
    match names {
        [] => None,
        [one] => Some(format!("container {one:?} {what}")),
        many => Some(format!("containers {} {what}", quoted(many))),
    }
}

fn failing<'a>(cs: &'a [C<'a>], bad: impl Fn(&C<'a>) -> bool) -> Vec<&'a str> {
    cs.iter().filter(|c| bad(c)).map(|c| c.name).collect()
}

fn psc(spec: &PodSpec) -> Option<&k8s_openapi::api::core::v1::PodSecurityContext> {
    spec.security_context.as_ref()
}

fn is_windows(spec: &PodSpec) -> bool {
    spec.os.as_ref().is_some_and(|o| o.name == "windows")
}

fn host_process(_: &Pod, spec: &PodSpec, cs: &[C<'_>]) -> Option<String> {
    let pod = psc(spec)
        .and_then(|s| s.windows_options.as_ref())
        .and_then(|w| w.host_process)
        == Some(true);
    let bad = failing(cs, |c| {
        c.sc.and_then(|s| s.windows_options.as_ref())
            .and_then(|w| w.host_process)
            == Some(true)
    });
    match (
        pod,
        containers_must(
            &bad,
            "must not set securityContext.windowsOptions.hostProcess=true",
        ),
    ) {
        (true, None) => {
            Some("pod must not set securityContext.windowsOptions.hostProcess=true".into())
        }
        (true, Some(c)) => Some(format!("pod and {c}")),
        (false, c) => c,
    }
}

fn host_namespaces(_: &Pod, spec: &PodSpec, _: &[C<'_>]) -> Option<String> {
    let set: Vec<&str> = [
        ("hostNetwork=true", spec.host_network),
        ("hostPID=true", spec.host_pid),
        ("hostIPC=true", spec.host_ipc),
    ]
    .into_iter()
    .filter(|(_, v)| *v == Some(true))
    .map(|(n, _)| n)
    .collect();
    (!set.is_empty()).then(|| format!("{} must not be set", set.join(", ")))
}

fn privileged(_: &Pod, _: &PodSpec, cs: &[C<'_>]) -> Option<String> {
    let bad = failing(cs, |c| c.sc.and_then(|s| s.privileged) == Some(true));
    containers_must(&bad, "must not set securityContext.privileged=true")
}

/// Upstream's baseline list: the capabilities container runtimes grant by default.
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_caps<'a>(c: &C<'a>) -> &'a [String] {
    c.sc.and_then(|s| s.capabilities.as_ref())
        .and_then(|c| c.add.as_deref())
        .unwrap_or_default()
}

fn capabilities_baseline(_: &Pod, _: &PodSpec, cs: &[C<'_>]) -> Option<String> {
    let mut bad_caps: Vec<&str> = Vec::new();
    let bad = failing(cs, |c| {
        added_caps(c)
            .iter()
            .any(|a| !BASELINE_CAPABILITIES.contains(&a.as_str()))
    });
    for c in cs {
        for a in added_caps(c) {
            if !BASELINE_CAPABILITIES.contains(&a.as_str()) && !bad_caps.contains(&a.as_str()) {
                bad_caps.push(a);
            }
        }
    }
    containers_must(
        &bad,
        &format!(
            "must not include {} in securityContext.capabilities.add",
            quoted(&bad_caps)
        ),
    )
}

fn host_path_volumes(_: &Pod, spec: &PodSpec, _: &[C<'_>]) -> Option<String> {
    let names: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.host_path.is_some())
        .map(|v| v.name.as_str())
        .collect();
    match names.as_slice() {
        [] => None,
        [one] => Some(format!("volume {one:?} uses hostPath")),
        many => Some(format!("volumes {} use hostPath", quoted(many))),
    }
}

fn host_ports(_: &Pod, _: &PodSpec, cs: &[C<'_>]) -> Option<String> {
    let bad = failing(cs, |c| {
        c.ports.iter().any(|p| p.host_port.unwrap_or(0) != 0)
    });
    containers_must(&bad, "must not set hostPort")
}

fn annotations(pod: &Pod) -> impl Iterator<Item = (&String, &String)> {
    pod.metadata.annotations.iter().flatten()
}

fn app_armor(pod: &Pod, spec: &PodSpec, cs: &[C<'_>]) -> Option<String> {
    let mut bad: Vec<String> = Vec::new();
    for (k, v) in annotations(pod) {
        if k.starts_with(APPARMOR_CONTAINER_ANNOTATION_PREFIX)
            && v != "runtime/default"
            && !v.starts_with("localhost/")
        {
            bad.push(format!("{k}={v:?}"));
        }
    }
    let field_ok = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    if let Some(p) = psc(spec).and_then(|s| s.app_armor_profile.as_ref())
        && !field_ok(&p.type_)
    {
        bad.push(format!(
            "pod securityContext.appArmorProfile.type={:?}",
            p.type_
        ));
    }
    for c in cs {
        if let Some(p) = c.sc.and_then(|s| s.app_armor_profile.as_ref())
            && !field_ok(&p.type_)
        {
            bad.push(format!(
                "container {:?} securityContext.appArmorProfile.type={:?}",
                c.name, p.type_
            ));
        }
    }
    (!bad.is_empty()).then(|| format!("forbidden AppArmor profiles: {}", bad.join(", ")))
}

const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

fn se_linux(_: &Pod, spec: &PodSpec, cs: &[C<'_>]) -> Option<String> {
    let bad_opts = |o: &k8s_openapi::api::core::v1::SELinuxOptions| {
        !SELINUX_TYPES.contains(&o.type_.as_deref().unwrap_or(""))
            || o.user.as_deref().is_some_and(|u| !u.is_empty())
            || o.role.as_deref().is_some_and(|r| !r.is_empty())
    };
    let pod = psc(spec)
        .and_then(|s| s.se_linux_options.as_ref())
        .is_some_and(bad_opts);
    let bad = failing(cs, |c| {
        c.sc.and_then(|s| s.se_linux_options.as_ref())
            .is_some_and(bad_opts)
    });
    let what = "must not set seLinuxOptions user or role, or a type other than container_t, container_init_t, container_kvm_t or container_engine_t";
    match (pod, containers_must(&bad, what)) {
        (true, None) => Some(format!("pod {what}")),
        (true, Some(c)) => Some(format!("pod and {c}")),
        (false, c) => c,
    }
}

fn proc_mount(_: &Pod, _: &PodSpec, cs: &[C<'_>]) -> Option<String> {
    let bad = failing(cs, |c| {
        c.sc.and_then(|s| s.proc_mount.as_deref())
            .is_some_and(|p| p != "Default")
    });
    containers_must(
        &bad,
        "must not set securityContext.procMount other than Default",
    )
}

fn seccomp_unconfined_annotations(pod: &Pod) -> Vec<String> {
    annotations(pod)
        .filter(|(k, v)| {
            (k.as_str() == SECCOMP_POD_ANNOTATION
                || k.starts_with(SECCOMP_CONTAINER_ANNOTATION_PREFIX))
                && v.as_str() == "unconfined"
        })
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect()
}

fn seccomp_baseline(pod: &Pod, spec: &PodSpec, cs: &[C<'_>]) -> Option<String> {
    let mut bad = seccomp_unconfined_annotations(pod);
    if psc(spec)
        .and_then(|s| s.seccomp_profile.as_ref())
        .is_some_and(|p| p.type_ == "Unconfined")
    {
        bad.push("pod securityContext.seccompProfile.type=\"Unconfined\"".into());
    }
    for c in cs {
        if c.sc
            .and_then(|s| s.seccomp_profile.as_ref())
            .is_some_and(|p| p.type_ == "Unconfined")
        {
            bad.push(format!(
                "container {:?} securityContext.seccompProfile.type=\"Unconfined\"",
                c.name
            ));
        }
    }
    (!bad.is_empty()).then(|| format!("must not set {}", bad.join(", ")))
}

fn sysctls(_: &Pod, spec: &PodSpec, _: &[C<'_>]) -> Option<String> {
    let bad: Vec<&str> = psc(spec)
        .and_then(|s| s.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| s.name.as_str())
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .collect();
    (!bad.is_empty()).then(|| format!("forbidden sysctls {}", quoted(&bad)))
}

/// Upstream's restricted list of volume sources.
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn volume_types(_: &Pod, spec: &PodSpec, _: &[C<'_>]) -> Option<String> {
    let mut bad: Vec<String> = Vec::new();
    for v in spec.volumes.iter().flatten() {
        let Ok(serde_json::Value::Object(m)) = serde_json::to_value(v) else {
            continue;
        };
        for k in m.keys().filter(|k| k.as_str() != "name") {
            if !RESTRICTED_VOLUMES.contains(&k.as_str()) {
                bad.push(format!(
                    "volume {:?} uses restricted volume type {k:?}",
                    v.name
                ));
            }
        }
    }
    (!bad.is_empty()).then(|| bad.join(", "))
}

fn allow_privilege_escalation(_: &Pod, spec: &PodSpec, cs: &[C<'_>]) -> Option<String> {
    if is_windows(spec) {
        return None;
    }
    let bad = failing(cs, |c| {
        c.sc.and_then(|s| s.allow_privilege_escalation) != Some(false)
    });
    containers_must(
        &bad,
        "must set securityContext.allowPrivilegeEscalation=false",
    )
}

fn run_as_non_root(_: &Pod, spec: &PodSpec, cs: &[C<'_>]) -> Option<String> {
    let pod = psc(spec).and_then(|s| s.run_as_non_root);
    if pod == Some(false) {
        return Some("pod must not set securityContext.runAsNonRoot=false".into());
    }
    let explicit_false = failing(cs, |c| c.sc.and_then(|s| s.run_as_non_root) == Some(false));
    if !explicit_false.is_empty() {
        return containers_must(
            &explicit_false,
            "must not set securityContext.runAsNonRoot=false",
        );
    }
    if pod == Some(true) {
        return None;
    }
    let unset = failing(cs, |c| c.sc.and_then(|s| s.run_as_non_root).is_none());
    containers_must(&unset, "must set securityContext.runAsNonRoot=true")
        .map(|m| format!("pod or {m}"))
}

fn run_as_user(_: &Pod, spec: &PodSpec, cs: &[C<'_>]) -> Option<String> {
    let pod = psc(spec).and_then(|s| s.run_as_user) == Some(0);
    let bad = failing(cs, |c| c.sc.and_then(|s| s.run_as_user) == Some(0));
    match (pod, containers_must(&bad, "must not set runAsUser=0")) {
        (true, None) => Some("pod must not set runAsUser=0".into()),
        (true, Some(c)) => Some(format!("pod and {c}")),
        (false, c) => c,
    }
}

fn seccomp_restricted(_: &Pod, spec: &PodSpec, cs: &[C<'_>]) -> Option<String> {
    if is_windows(spec) {
        return None;
    }
    let ok = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let pod = psc(spec).and_then(|s| s.seccomp_profile.as_ref());
    if let Some(p) = pod
        && !ok(&p.type_)
    {
        return Some(format!(
            "pod must not set securityContext.seccompProfile.type to {:?}",
            p.type_
        ));
    }
    fn own<'a>(c: &C<'a>) -> Option<&'a k8s_openapi::api::core::v1::SeccompProfile> {
        c.sc.and_then(|s| s.seccomp_profile.as_ref())
    }
    let wrong = failing(cs, |c| own(c).is_some_and(|p| !ok(&p.type_)));
    if !wrong.is_empty() {
        return containers_must(
            &wrong,
            "must not set securityContext.seccompProfile.type to \"Unconfined\"",
        );
    }
    if pod.is_some() {
        return None;
    }
    let unset = failing(cs, |c| own(c).is_none());
    containers_must(
        &unset,
        "must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
    )
    .map(|m| format!("pod or {m}"))
}

fn capabilities_restricted(_: &Pod, spec: &PodSpec, cs: &[C<'_>]) -> Option<String> {
    if is_windows(spec) {
        return None;
    }
    let mut parts = Vec::new();
    let no_drop_all = failing(cs, |c| {
        !c.sc
            .and_then(|s| s.capabilities.as_ref())
            .and_then(|c| c.drop.as_ref())
            .is_some_and(|d| d.iter().any(|x| x == "ALL"))
    });
    if let Some(m) = containers_must(
        &no_drop_all,
        "must set securityContext.capabilities.drop=[\"ALL\"]",
    ) {
        parts.push(m);
    }
    let adds = failing(cs, |c| {
        added_caps(c).iter().any(|a| a != "NET_BIND_SERVICE")
    });
    if let Some(m) = containers_must(
        &adds,
        "must not include capabilities other than \"NET_BIND_SERVICE\" in securityContext.capabilities.add",
    ) {
        parts.push(m);
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(body: &str) -> Pod {
        serde_saphyr::from_str(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n{body}"
        ))
        .unwrap()
    }

    /// A pod that passes restricted: the good case every other case starts from.
    const RESTRICTED_OK: &str = "spec:\n  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}\n  volumes:\n  - {name: d, emptyDir: {}}\n  containers:\n  - name: a\n    image: i\n    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}\n";

    fn names(level: Level, p: &Pod) -> Vec<&'static str> {
        evaluate(level, p).into_iter().map(|v| v.check).collect()
    }

    /// `(container securityContext or pod spec fragment, baseline names, restricted extra)`.
    fn check_case(spec: &str, want_baseline: &[&str]) {
        let p = pod(spec);
        assert_eq!(names(Level::Baseline, &p), want_baseline, "{spec}");
        assert!(evaluate(Level::Privileged, &p).is_empty());
    }

    #[test]
    fn good_pods_pass_every_level() {
        let p = pod(RESTRICTED_OK);
        for l in [Level::Privileged, Level::Baseline, Level::Restricted] {
            assert!(evaluate(l, &p).is_empty(), "{l:?}: {:?}", evaluate(l, &p));
        }
        let plain = pod("spec:\n  containers:\n  - {name: a, image: i}\n");
        assert!(evaluate(Level::Baseline, &plain).is_empty());
    }

    #[test]
    fn baseline_checks_one_by_one() {
        let c = |sc: &str| {
            format!("spec:\n  containers:\n  - name: a\n    image: i\n    securityContext: {sc}\n")
        };
        check_case(
            &c("{windowsOptions: {hostProcess: true}}"),
            &["hostProcess"],
        );
        check_case(
            "spec:\n  hostNetwork: true\n  hostPID: true\n  containers:\n  - {name: a, image: i}\n",
            &["host namespaces"],
        );
        check_case(
            "spec:\n  hostIPC: true\n  containers:\n  - {name: a, image: i}\n",
            &["host namespaces"],
        );
        check_case(&c("{privileged: true}"), &["privileged"]);
        check_case(&c("{capabilities: {add: [NET_ADMIN]}}"), &["capabilities"]);
        check_case(
            &c("{capabilities: {add: [CHOWN, KILL, NET_BIND_SERVICE]}}"),
            &[],
        );
        check_case(
            "spec:\n  volumes:\n  - {name: h, hostPath: {path: /etc}}\n  containers:\n  - {name: a, image: i}\n",
            &["hostPath volumes"],
        );
        check_case(
            "spec:\n  containers:\n  - name: a\n    image: i\n    ports: [{containerPort: 80, hostPort: 8080}]\n",
            &["host ports"],
        );
        check_case(
            "spec:\n  containers:\n  - name: a\n    image: i\n    ports: [{containerPort: 80}]\n",
            &[],
        );
        check_case(&c("{appArmorProfile: {type: Unconfined}}"), &["AppArmor"]);
        check_case(&c("{appArmorProfile: {type: RuntimeDefault}}"), &[]);
        check_case(
            "  annotations: {container.apparmor.security.beta.kubernetes.io/a: unconfined}\nspec:\n  containers:\n  - {name: a, image: i}\n",
            &["AppArmor"],
        );
        check_case(&c("{seLinuxOptions: {type: spc_t}}"), &["SELinux"]);
        check_case(&c("{seLinuxOptions: {user: root}}"), &["SELinux"]);
        check_case(
            &c("{seLinuxOptions: {type: container_t, level: 's0:c1,c2'}}"),
            &[],
        );
        check_case(&c("{procMount: Unmasked}"), &["procMount"]);
        check_case(
            &c("{seccompProfile: {type: Unconfined}}"),
            &["seccompProfile"],
        );
        check_case(
            "spec:\n  securityContext: {seccompProfile: {type: Unconfined}}\n  containers:\n  - {name: a, image: i}\n",
            &["seccompProfile"],
        );
        check_case(
            "  annotations: {seccomp.security.alpha.kubernetes.io/pod: unconfined}\nspec:\n  containers:\n  - {name: a, image: i}\n",
            &["seccompProfile"],
        );
        check_case(
            "spec:\n  securityContext: {sysctls: [{name: kernel.msgmax, value: '1'}]}\n  containers:\n  - {name: a, image: i}\n",
            &["sysctls"],
        );
        check_case(
            "spec:\n  securityContext: {sysctls: [{name: net.ipv4.ip_unprivileged_port_start, value: '0'}]}\n  containers:\n  - {name: a, image: i}\n",
            &[],
        );
        // Init containers are checked too.
        check_case(
            "spec:\n  initContainers:\n  - name: i\n    image: i\n    securityContext: {privileged: true}\n  containers:\n  - {name: a, image: i}\n",
            &["privileged"],
        );
    }

    #[test]
    fn restricted_checks_one_by_one() {
        let plain = pod("spec:\n  containers:\n  - {name: a, image: i}\n");
        assert_eq!(
            names(Level::Restricted, &plain),
            [
                "allowPrivilegeEscalation",
                "runAsNonRoot",
                "seccompProfile",
                "capabilities"
            ]
        );
        let swap = |from: &str, to: &str| {
            assert!(RESTRICTED_OK.contains(from), "{from}");
            pod(&RESTRICTED_OK.replace(from, to))
        };
        let cases: &[(&str, &str, &str)] = &[
            (
                "{name: d, emptyDir: {}}",
                "{name: d, hostPath: {path: /x}}",
                "volume types",
            ),
            (
                "{name: d, emptyDir: {}}",
                "{name: d, nfs: {server: s, path: /x}}",
                "volume types",
            ),
            (
                "allowPrivilegeEscalation: false",
                "allowPrivilegeEscalation: true",
                "allowPrivilegeEscalation",
            ),
            ("runAsNonRoot: true", "runAsNonRoot: false", "runAsNonRoot"),
            ("runAsNonRoot: true", "runAsUser: 0", "runAsUser"),
            (
                "seccompProfile: {type: RuntimeDefault}",
                "seccompProfile: {type: Unconfined}",
                "seccompProfile",
            ),
            ("drop: [ALL]", "drop: [NET_RAW]", "capabilities"),
            ("add: [NET_BIND_SERVICE]", "add: [CHOWN]", "capabilities"),
        ];
        for (from, to, want) in cases {
            let got = names(Level::Restricted, &swap(from, to));
            assert!(got.contains(want), "{to}: {got:?}");
        }
        // Setting it on every container instead of the pod is as good.
        let p = pod(
            "spec:\n  containers:\n  - name: a\n    image: i\n    securityContext: {runAsNonRoot: true, seccompProfile: {type: Localhost, localhostProfile: p.json}, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n",
        );
        assert!(
            evaluate(Level::Restricted, &p).is_empty(),
            "{:?}",
            evaluate(Level::Restricted, &p)
        );
        // Windows pods are exempt from the Linux-only restricted checks.
        let w = pod(
            "spec:\n  os: {name: windows}\n  securityContext: {runAsNonRoot: true}\n  containers:\n  - {name: a, image: i}\n",
        );
        assert!(evaluate(Level::Restricted, &w).is_empty());
    }

    #[test]
    fn the_message_names_each_check_as_upstream_does() {
        let p = pod(
            "spec:\n  hostPID: true\n  volumes:\n  - {name: h, hostPath: {path: /}}\n  containers:\n  - name: a\n    image: i\n    securityContext: {privileged: true}\n",
        );
        let v = evaluate(Level::Baseline, &p);
        assert_eq!(
            message(Level::Baseline, &v),
            "violates PodSecurity \"baseline:v1.33\": host namespaces (hostPID=true must not be set), privileged (container \"a\" must not set securityContext.privileged=true), hostPath volumes (volume \"h\" uses hostPath)"
        );
    }
}
