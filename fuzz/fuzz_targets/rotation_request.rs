//! The certificate rotation request file an operator (or `ironlet drill`) writes into the
//! cert dir (`tls::control::parse_request`). Invariants: no panic; an accepted request has
//! a bounded id of safe characters and at least one identity, none twice; parsing is
//! deterministic.

#![no_main]

use ironlet::tls::control;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let r = control::parse_request(data);
    assert_eq!(r, control::parse_request(data));
    if let Ok(req) = r {
        assert!(data.len() as u64 <= control::MAX_REQUEST_BYTES);
        assert!(!req.id.is_empty() && req.id.len() <= 64);
        assert!(req.id.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)));
        assert!(!req.identities.is_empty() && req.identities.len() <= 2);
    }
});
