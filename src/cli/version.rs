//! `ironlet version [-o json]` and `kubelet --version[=raw]`: ironlet's version, the
//! Kubernetes version it implements, the git commit it was built from and the build profile.
//! kube-bench and node tooling find the kubelet by running `kubelet --version` and reading
//! `Kubernetes v<version>`, so that line has upstream's shape.

use serde::Serialize;

/// The Kubernetes release whose kubelet API and configuration ironlet implements.
pub const KUBERNETES_VERSION: &str = "v1.33.0";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub ironlet_version: &'static str,
    pub kubernetes_version: &'static str,
    /// What the Node reports as kubeletVersion: `v1.33.0-ironlet.<version>`.
    pub kubelet_version: String,
    pub git_commit: &'static str,
    pub build_profile: &'static str,
}

pub fn info() -> VersionInfo {
    VersionInfo {
        ironlet_version: env!("CARGO_PKG_VERSION"),
        kubernetes_version: KUBERNETES_VERSION,
        kubelet_version: crate::node::info::kubelet_version(),
        // build.rs: `git rev-parse HEAD`, or "unknown" outside a git checkout.
        git_commit: env!("IRONLET_GIT_COMMIT"),
        build_profile: env!("IRONLET_BUILD_PROFILE"),
    }
}

#[derive(clap::Args, Debug)]
pub struct VersionArgs {
    /// table or json
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
}

pub fn run(args: VersionArgs) -> anyhow::Result<()> {
    let v = info();
    match args.output.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&v)?),
        "table" => {
            println!("ironlet version:    {}", v.ironlet_version);
            println!("kubernetes version: {}", v.kubernetes_version);
            println!("kubelet version:    {}", v.kubelet_version);
            println!("git commit:         {}", v.git_commit);
            println!("build profile:      {}", v.build_profile);
        }
        other => anyhow::bail!("--output {other:?}: expected table or json"),
    }
    Ok(())
}

/// `kubelet --version` prints upstream's line; `--version=raw` the whole record (upstream
/// prints its version.Info struct there). Returns false for `--version=false`.
pub fn print_kubelet_version(form: &str) -> anyhow::Result<bool> {
    let v = info();
    match form {
        "raw" => println!("{}", serde_json::to_string(&v)?),
        f if crate::config::flags::parse_bool(f) == Some(true) => {
            println!("Kubernetes {}", v.kubelet_version)
        }
        f if crate::config::flags::parse_bool(f) == Some(false) => return Ok(false),
        other => anyhow::bail!("--version: invalid value {other:?} (true, false or raw)"),
    }
    Ok(true)
}
