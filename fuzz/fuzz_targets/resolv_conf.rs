//! The node's resolv.conf (an operator's file): `pod::dns::parse_resolv_conf`, then the pod
//! DNS config built from it, which must respect the resolver's limits whatever the file says.

#![no_main]

use ironlet::pod::dns::{self, HostDns, NodeDns};
use k8s_openapi::api::core::v1::PodSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let host = dns::parse_resolv_conf(text);
    // Never more than the input has: each value is one non-empty word of the input.
    let words = text.split_whitespace().count();
    let HostDns {
        servers,
        searches,
        options,
    } = &host;
    assert!(servers.len() + searches.len() + options.len() <= words);
    for v in servers.iter().chain(searches).chain(options) {
        assert!(!v.is_empty(), "empty value");
        assert!(!v.contains(char::is_whitespace), "{v:?} holds whitespace");
        assert!(!v.contains(['#', ';']), "{v:?} holds a comment");
        assert!(text.contains(v.as_str()), "{v:?} is not in the input");
    }

    let spec = PodSpec::default();
    // The host resolver as it is (no cluster DNS configured: dnsPolicy falls back to Default),
    // then a cluster DNS taken from the same input, which exercises the search-path merge.
    let node_dns = [
        NodeDns {
            host: host.clone(),
            ..Default::default()
        },
        NodeDns {
            cluster_dns: host.servers.clone(),
            cluster_domain: host.searches.first().cloned(),
            host,
        },
    ];
    for node in &node_dns {
        let cfg = dns::pod_dns(&spec, "ns", node);
        assert!(
            cfg.servers.len() <= dns::MAX_NAMESERVERS,
            "{:?}",
            cfg.servers
        );
        assert!(cfg.searches.len() <= dns::MAX_SEARCHES);
        let chars: usize = cfg.searches.iter().map(|s| s.len() + 1).sum();
        assert!(
            chars <= dns::MAX_SEARCH_CHARS,
            "search path is {chars} chars"
        );
    }
});
