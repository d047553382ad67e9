//! A certificate as the API server returns it in a CSR's status.certificate, through the
//! code that decides whether the node publishes it (`tls::validate::parse_chain`,
//! `inspect` and `validate`). Invariants: no panic; nothing chained to no trusted root is
//! ever accepted.

#![no_main]

use ironlet::tls::profile::{self, IdentityKind};
use ironlet::tls::validate::{self, Expect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Raw bytes as DER, and as the PEM the API server sends.
    let _ = validate::inspect(data);
    let Ok(chain) = validate::parse_chain(data) else { return };
    for kind in [IdentityKind::Client, IdentityKind::Serving] {
        let want = Expect {
            profile: profile::profile(kind),
            node_name: "n1",
            sans: &[],
            spki: &[],
            roots: &[],
        };
        // No roots: nothing may pass.
        assert!(validate::validate(&chain, &want, std::time::SystemTime::now()).is_err());
    }
});
