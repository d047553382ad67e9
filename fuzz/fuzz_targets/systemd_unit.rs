//! A kubelet systemd unit or drop-in and its environment files (operator files):
//! `cis::unit`'s parsers and ExecStart expansion, as `ironlet check --service-file` runs them.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let section = ironlet::cis::unit::parse_service(text);
    let env = ironlet::cis::unit::parse_env_file(text);
    let map = env.into_iter().collect();
    let _ = ironlet::cis::unit::split_words(text, &map, true);
    // The same text also serves as every environment file the unit names.
    let parts = vec![(std::path::PathBuf::from("kubelet.service"), section)];
    let _ = ironlet::cis::unit::resolve(&parts, &mut |_| Ok(Some(text.to_owned())));
});
