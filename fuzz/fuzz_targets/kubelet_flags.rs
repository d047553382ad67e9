//! Upstream kubelet flags (an operator's unit file): each input line is `name=value`; the
//! values go through the production path, `config::flags::parse_value` for every kind
//! (durations, quantities, `key=value` maps, taints, lists) and then `Config::load`, which
//! lays them over the defaults and validates them as the file is validated.

#![no_main]

use ironlet::config::flags::{Kind, UpstreamFlags, parse_value};
use ironlet::config::{Config, RunFlags};
use libfuzzer_sys::fuzz_target;

const KINDS: &[Kind] = &[
    Kind::Bool,
    Kind::String,
    Kind::Path,
    Kind::Int,
    Kind::Ip,
    Kind::Duration,
    Kind::List,
    Kind::Map,
    Kind::BoolMap,
    Kind::LangleMap,
    Kind::ColonMultimap,
    Kind::Taints,
    Kind::ReservedMemory,
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut pairs = Vec::new();
    for line in text.lines().take(64) {
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        for kind in KINDS {
            let _ = parse_value(*kind, value, None);
        }
        pairs.push((name, value));
    }
    let Ok(upstream) = UpstreamFlags::from_pairs(&pairs) else {
        return;
    };
    let flags = RunFlags {
        hostname_override: Some("fuzz-node".into()),
        upstream,
        ..RunFlags::default()
    };
    let _ = Config::load(&flags);
});
