//! The workload boundary's parsers: the node Pod Security policy file (an operator's file,
//! `PodSecurityPolicy::parse`), and a pod as decoded from the API or a manifest run through
//! the whole security admission (`pod::security::admit`: field refusals, seccomp/AppArmor
//! annotations, sysctl names, the Pod Security checks at every level) and the CRI mapping.
//! The first byte picks the target.

#![no_main]

use libfuzzer_sys::fuzz_target;

use ironlet::pod::security::{self, NodeSecurity, PodSecurityPolicy, SysctlPattern, policy, pss};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            let _ = PodSecurityPolicy::parse(rest);
        }
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = SysctlPattern::parse(text);
                let _ = security::sysctl::check(text, &[], false, false);
            }
        }
        _ => {
            let Ok(pod) = serde_json::from_slice::<k8s_openapi::api::core::v1::Pod>(rest) else {
                return;
            };
            let node = NodeSecurity::default();
            for source in [policy::Source::File, policy::Source::Api] {
                let _ = security::admit(&pod, source, &node);
            }
            for level in [pss::Level::Baseline, pss::Level::Restricted] {
                let _ = pss::evaluate(level, &pod);
            }
            if let Some(spec) = pod.spec.as_ref() {
                let _ = security::context::sandbox_security(&pod, &node, Default::default());
                for (_, c) in security::context::all_containers(spec) {
                    let _ =
                        security::context::container_security(&pod, c, &node, Default::default());
                }
            }
        }
    }
});
