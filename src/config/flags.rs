//! Command-line flags of `ironlet run`, spelled as upstream kubelet spells them. Owns parsing
//! only; [`super::Config::load`] merges them over the file (flags win) and validates.
//! There is deliberately no flag that weakens authentication, authorization or TLS.

use std::net::IpAddr;
use std::path::PathBuf;

/// Upstream default for --root-dir; ironlet keeps its state there too.
pub const DEFAULT_ROOT_DIR: &str = "/var/lib/kubelet";

#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct RunFlags {
    /// KubeletConfiguration (kubelet.config.k8s.io/v1beta1) file, YAML or JSON. Without it the
    /// secure v1beta1 defaults apply (not upstream's flags-only legacy defaults).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// CRI runtime endpoint: unix:///path/to.sock or an absolute socket path; overrides
    /// containerRuntimeEndpoint [default: unix:///run/containerd/containerd.sock]
    #[arg(long, value_name = "ENDPOINT")]
    pub container_runtime_endpoint: Option<String>,

    /// Directory for pod, volume and plugin state [default: /var/lib/kubelet]
    #[arg(long, value_name = "DIR")]
    pub root_dir: Option<PathBuf>,

    /// Node name to use instead of the machine hostname (lower-cased; a DNS-1123 subdomain)
    #[arg(long, value_name = "NAME")]
    pub hostname_override: Option<String>,

    /// kubeconfig file for the API server; without it the node runs standalone
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// IP address to report for the node
    #[arg(long, value_name = "IP")]
    pub node_ip: Option<IpAddr>,

    /// Standalone authorization policy for the kubelet API (format in policy/README.md).
    /// Used when there is no API server for SubjectAccessReviews; without either, port
    /// 10250 stays closed. ironlet's own flag (upstream has no standalone authorizer).
    #[arg(long, value_name = "PATH")]
    pub authorization_policy_file: Option<PathBuf>,

    /// The node's Pod Security policy (format in policy/README.md), replacing the
    /// compiled-in policy/pod-security.json: the Pod Security Standards level per pod source
    /// and namespace, static pods included. ironlet's own flag.
    #[arg(long, value_name = "PATH")]
    pub pod_security_policy_file: Option<PathBuf>,

    /// Log verbosity, as upstream's klog level
    #[arg(short = 'v', long = "v", value_name = "LEVEL", default_value_t = 0)]
    pub v: u8,

    /// INSECURE, for debugging only: run without self-confinement (no capability
    /// reduction, landlock or seccomp). Logged as a warning at start and recorded for the
    /// self-audit, which reports it as FAIL.
    #[arg(long)]
    pub insecure_disable_confinement: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        run: RunFlags,
    }

    fn parse(args: &[&str]) -> Result<RunFlags, clap::Error> {
        Cli::try_parse_from(std::iter::once("ironlet").chain(args.iter().copied())).map(|c| c.run)
    }

    #[test]
    fn upstream_flag_names() {
        let f = parse(&[
            "--config=/etc/ironlet/config.yaml",
            "--container-runtime-endpoint",
            "unix:///run/containerd/containerd.sock",
            "--root-dir=/srv/kubelet",
            "--hostname-override=Node-1",
            "--node-ip=10.0.0.2",
        ])
        .unwrap();
        assert_eq!(f.config, Some(PathBuf::from("/etc/ironlet/config.yaml")));
        assert_eq!(
            f.container_runtime_endpoint.as_deref(),
            Some("unix:///run/containerd/containerd.sock")
        );
        assert_eq!(f.root_dir, Some(PathBuf::from("/srv/kubelet")));
        assert_eq!(f.hostname_override.as_deref(), Some("Node-1"));
        assert_eq!(f.node_ip, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(f.v, 0);
    }

    #[test]
    fn verbosity_spellings() {
        for args in [
            &["-v=4"][..],
            &["--v=4"],
            &["-v", "4"],
            &["--v", "4"],
            &["-v4"],
        ] {
            assert_eq!(parse(args).map(|f| f.v).ok(), Some(4), "{args:?}");
        }
    }

    #[test]
    fn rejects_bad_values_and_insecure_flags() {
        assert!(parse(&["--node-ip=not-an-ip"]).is_err());
        assert!(parse(&["--v=300"]).is_err());
        assert!(parse(&["--anonymous-auth=true"]).is_err());
        assert!(parse(&["--read-only-port=10255"]).is_err());
    }

    #[test]
    fn defaults_are_unset() {
        assert_eq!(parse(&[]).unwrap(), RunFlags::default());
    }
}
