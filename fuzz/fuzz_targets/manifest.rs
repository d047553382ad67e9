//! Static pod manifests (an operator's files): `pod::manifest::parse`.
//!
//! The first input byte picks the format by its low bit (0: `.yaml`, 1: `.json`) and is not
//! part of the document, so YAML that starts with any byte (`%YAML`, `---`, `{`) is reached
//! too. Seeds therefore start with `\n` (YAML) or `\t` (JSON).

#![no_main]

use std::path::Path;

use ironlet::pod::manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((selector, content)) = data.split_first() else {
        return;
    };
    let path = if selector & 1 == 0 {
        "/m/x.yaml"
    } else {
        "/m/x.json"
    };
    let Ok(pod) = manifest::parse(Path::new(path), content, "n", "t") else {
        return;
    };
    // Static pods are named `<name>-<node>`, and their UID is a 128-bit hash in hex.
    assert!(
        pod.full_name.name.ends_with("-n"),
        "name {:?} does not end with the node name",
        pod.full_name.name
    );
    assert_eq!(
        pod.pod.metadata.name.as_deref(),
        Some(pod.full_name.name.as_str())
    );
    let uid = &pod.uid.0;
    assert!(
        uid.len() == 32 && uid.bytes().all(|b| b.is_ascii_hexdigit()),
        "uid {uid:?} is not 32 hex digits"
    );
    assert_eq!(pod.pod.metadata.uid.as_deref(), Some(uid.as_str()));
});
