//! The kubeconfig of cluster mode (an operator's file): `apiclient::parse_kubeconfig`, which
//! the agent runs on the capped file content before anything else reads it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ironlet::apiclient::parse_kubeconfig(text);
});
