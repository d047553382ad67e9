//! Kubelet API request path and method → route, authorization attributes and decision:
//! `server::routes::route`, `server::authz::attributes` and `server::authz::decide`, the
//! functions the request pipeline (`server::api`) calls. Invariants: no panic; every path
//! maps to at least one subresource; a routed path never carries a dot segment or an
//! escape; the mapping is a function of its input (deterministic); the decider allows only
//! what the policy names, on a subresource of the request, and never allows a command to a
//! read-only identity.
//!
//! Input: byte 0 picks the method (modulo 9) and the caller (a read-only monitoring user,
//! or one the policy does not name); the rest is the request target.

#![no_main]

use std::sync::OnceLock;

use ironlet::server::authz::{self, Decision, StandalonePolicy, User};
use ironlet::server::routes::{self, Route};
use libfuzzer_sys::fuzz_target;

const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "X"];

/// `mon` may `get` every subresource and nothing else.
const POLICY: &str = "apiVersion: ironlet.dev/v1alpha1
kind: StandaloneAuthorizationPolicy
rules:
- name: monitoring
  reason: fuzzing a read-only identity
  users: [mon]
  verbs: [get]
  subresources: [stats, metrics, log, checkpoint, pods, healthz, configz, proxy]
";

fn policy() -> &'static StandalonePolicy {
    static P: OnceLock<StandalonePolicy> = OnceLock::new();
    P.get_or_init(|| StandalonePolicy::parse(POLICY).expect("the fuzz policy parses"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else { return };
    let Ok(target) = std::str::from_utf8(rest) else { return };
    let method = METHODS[m as usize % METHODS.len()];
    let known = (m as usize / METHODS.len()) % 2 == 0;
    let path = target.split('?').next().unwrap_or("");
    let subs = authz::subresources(path);
    assert!(!subs.is_empty());
    assert!(subs.last() == Some(&"proxy") || subs.len() == 1, "{subs:?}");
    let attrs = authz::attributes(method, path);
    match &attrs {
        Some(a) => {
            assert!(["get", "create", "update", "patch", "delete"].contains(&a.verb));
            assert_eq!(a.subresources, subs);
        }
        None => assert!(["OPTIONS", "TRACE", "X"].contains(&method)),
    }
    let r = routes::route(path);
    assert_eq!(r, routes::route(path));
    assert!(routes::TEMPLATES.contains(&r.template()));
    let command = matches!(r, Route::Exec(_) | Route::Attach(_) | Route::PortForward(_) | Route::Run(_));
    if r != Route::NotFound {
        for seg in path.split('/') {
            assert!(seg != "." && seg != ".." && !seg.contains('%'), "{path}");
        }
        // The route's authorization never falls outside upstream's mapping.
        if let Route::Logs(_) = r {
            assert_eq!(subs, ["log"]);
        }
        // Commands are `create` whatever the method (the exec-as-create departure).
        if command && let Some(a) = &attrs {
            assert_eq!(a.verb, "create", "{method} {path}");
        }
    }
    // The decision, as the pipeline makes it.
    let Some(a) = attrs else { return };
    let user = User { name: if known { "mon" } else { "nobody" }.into(), ..Default::default() };
    let d = futures::executor::block_on(authz::decide(policy(), &user, &a));
    assert!(subs.contains(&d.subresource()), "{d:?} for {subs:?}");
    match d {
        Decision::Allow { by, subresource } => {
            assert!(known && a.verb == "get", "{method} {path} allowed for {}", user.name);
            assert!(!command, "a read-only identity may run a command: {method} {path}");
            assert_eq!(by, "monitoring");
            // Every subresource is granted, so the first (fine-grained) one allows.
            assert_eq!(subresource, subs[0]);
        }
        Decision::Deny { subresource } => {
            assert!(!known || a.verb != "get", "{method} {path} denied to mon");
            assert_eq!(Some(&subresource), subs.last(), "the walk stopped early");
        }
        Decision::Busy { .. } | Decision::Failed { .. } => panic!("the standalone policy cannot fail: {d:?}"),
    }
});
