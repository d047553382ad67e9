//! A pod's DNS configuration, by upstream's rules for dnsPolicy and dnsConfig, and the
//! parser for the node's resolv.conf (an operator's file: fuzzed).

use k8s_openapi::api::core::v1::PodSpec;

use crate::cri::api::DnsConfig;

/// Upstream's limits: the resolver reads at most 3 servers; search paths are capped.
pub const MAX_NAMESERVERS: usize = 3;
pub const MAX_SEARCHES: usize = 32;
pub const MAX_SEARCH_CHARS: usize = 2048;
/// resolv.conf files larger than this are ignored (they are a few lines in practice).
pub const MAX_RESOLV_CONF_BYTES: usize = 64 * 1024;

/// The node's resolver settings, from its resolv.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostDns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// Parses resolv.conf content. Unknown lines are ignored, as the libc resolver does.
pub fn parse_resolv_conf(content: &str) -> HostDns {
    let mut dns = HostDns::default();
    for line in content.lines().take(4096) {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.servers.extend(words.next().map(str::to_string)),
            // The last search/domain line wins, as in libc.
            Some("search") | Some("domain") => dns.searches = words.map(str::to_string).collect(),
            Some("options") => dns.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    dns
}

/// What the node contributes to pod DNS.
#[derive(Clone, Debug, Default)]
pub struct NodeDns {
    pub host: HostDns,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: Option<String>,
}

/// The CRI DNS config for a pod, or None for a host-network pod that uses the host's
/// resolver as it is.
pub fn pod_dns(spec: &PodSpec, namespace: &str, node: &NodeDns) -> DnsConfig {
    let host_network = spec.host_network.unwrap_or(false);
    let mut policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    if policy == "ClusterFirst" && host_network {
        policy = "Default";
    }
    if matches!(policy, "ClusterFirst" | "ClusterFirstWithHostNet") && node.cluster_dns.is_empty() {
        // Upstream falls back to the node's resolver when no cluster DNS is configured.
        policy = "Default";
    }
    let mut cfg = match policy {
        "ClusterFirst" | "ClusterFirstWithHostNet" => {
            let mut searches = Vec::new();
            if let Some(d) = node.cluster_domain.as_deref().filter(|d| !d.is_empty()) {
                searches.push(format!("{namespace}.svc.{d}"));
                searches.push(format!("svc.{d}"));
                searches.push(d.to_string());
            }
            searches.extend(node.host.searches.iter().cloned());
            DnsConfig {
                servers: node.cluster_dns.clone(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        "None" => DnsConfig::default(),
        _ => DnsConfig {
            servers: node.host.servers.clone(),
            searches: node.host.searches.clone(),
            options: node.host.options.clone(),
        },
    };
    if let Some(pc) = spec.dns_config.as_ref() {
        cfg.servers.extend(pc.nameservers.iter().flatten().cloned());
        cfg.searches.extend(pc.searches.iter().flatten().cloned());
        for o in pc.options.iter().flatten() {
            let name = o.name.clone().unwrap_or_default();
            cfg.options
                .retain(|x| x.split(':').next() != Some(name.as_str()));
            cfg.options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    dedup(&mut cfg.servers);
    dedup(&mut cfg.searches);
    cfg.servers.truncate(MAX_NAMESERVERS);
    cfg.searches.truncate(MAX_SEARCHES);
    let mut total = 0;
    cfg.searches.retain(|s| {
        total += s.len() + 1;
        total <= MAX_SEARCH_CHARS
    });
    cfg
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(x.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption};

    fn node(cluster: bool) -> NodeDns {
        NodeDns {
            host: parse_resolv_conf(
                "# comment\nnameserver 198.18.255.53\nsearch example.test\noptions edns0\nbogus line\n",
            ),
            cluster_dns: if cluster {
                vec!["198.18.255.10".into()]
            } else {
                vec![]
            },
            cluster_domain: Some("cluster.local".into()),
        }
    }

    #[test]
    fn resolv_conf_parses() {
        let h = node(false).host;
        assert_eq!(h.servers, ["198.18.255.53"]);
        assert_eq!(h.searches, ["example.test"]);
        assert_eq!(h.options, ["edns0"]);
        assert_eq!(
            parse_resolv_conf("search a\nsearch b c\n").searches,
            ["b", "c"]
        );
    }

    #[test]
    fn cluster_first_uses_cluster_dns_and_search_path() {
        let spec = PodSpec::default();
        let c = pod_dns(&spec, "ns1", &node(true));
        assert_eq!(c.servers, ["198.18.255.10"]);
        assert_eq!(
            c.searches,
            [
                "ns1.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "example.test"
            ]
        );
        assert_eq!(c.options, ["ndots:5"]);
    }

    #[test]
    fn without_cluster_dns_or_on_host_network_the_host_resolver_is_used() {
        let spec = PodSpec::default();
        assert_eq!(pod_dns(&spec, "d", &node(false)).servers, ["198.18.255.53"]);
        let host = PodSpec {
            host_network: Some(true),
            ..Default::default()
        };
        assert_eq!(pod_dns(&host, "d", &node(true)).servers, ["198.18.255.53"]);
    }

    #[test]
    fn none_policy_takes_dns_config_only_and_options_merge() {
        let spec = PodSpec {
            dns_policy: Some("None".into()),
            dns_config: Some(PodDNSConfig {
                nameservers: Some(vec!["198.18.1.1".into(), "198.18.1.1".into()]),
                searches: Some(vec!["x.test".into()]),
                options: Some(vec![PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                }]),
            }),
            ..Default::default()
        };
        let c = pod_dns(&spec, "d", &node(true));
        assert_eq!(c.servers, ["198.18.1.1"]);
        assert_eq!(c.searches, ["x.test"]);
        assert_eq!(c.options, ["ndots:2"]);
    }
}
