//! Kubelet API request path and method → route and authorization attributes
//! (`server::routes::route`, `server::authz::attributes`). Invariants: no panic; every
//! path maps to at least one subresource; a routed path never carries a dot segment or an
//! escape; the mapping is a function of its input (deterministic).

#![no_main]

use ironlet::server::authz;
use ironlet::server::routes::{self, Route};
use libfuzzer_sys::fuzz_target;

const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "X"];

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else { return };
    let Ok(target) = std::str::from_utf8(rest) else { return };
    let method = METHODS[m as usize % METHODS.len()];
    let path = target.split('?').next().unwrap_or("");
    let subs = authz::subresources(path);
    assert!(!subs.is_empty());
    assert!(subs.last() == Some(&"proxy") || subs.len() == 1, "{subs:?}");
    match authz::attributes(method, path) {
        Some(a) => assert!(["get", "create", "update", "patch", "delete"].contains(&a.verb)),
        None => assert!(["OPTIONS", "TRACE", "X"].contains(&method)),
    }
    let r = routes::route(path);
    assert_eq!(r, routes::route(path));
    assert!(routes::TEMPLATES.contains(&r.template()));
    if r != Route::NotFound {
        for seg in path.split('/') {
            assert!(seg != "." && seg != ".." && !seg.contains('%'), "{path}");
        }
        // The route's authorization never falls outside upstream's mapping.
        if let Route::Logs(_) = r {
            assert_eq!(subs, ["log"]);
        }
        // Commands are `create` whatever the method (the exec-as-create departure).
        if matches!(r, Route::Exec(_) | Route::Attach(_) | Route::PortForward(_) | Route::Run(_))
            && let Some(a) = authz::attributes(method, path)
        {
            assert_eq!(a.verb, "create", "{method} {path}");
        }
    }
});
