//! Generates the CRI runtime.v1 client and server from proto/ (see src/cri/generated.rs),
//! and the grpc.health.v1 client (and a server for tests) used by gRPC probes
//! (see src/probe/grpc.rs).
//!
//! protox parses the .proto in pure Rust, so building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");
    version_facts();

    let fds = protox::compile(["proto/runtime/v1/api.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        // The server side lets unit tests run a fake CRI runtime.
        .build_server(true)
        // AuthConfig carries registry secrets: src/cri/generated.rs gives it a
        // Debug that redacts them, so it cannot leak through `{:?}` logging.
        .skip_debug([".runtime.v1.AuthConfig"])
        .compile_fds(fds)?;

    let health = protox::compile(["proto/grpc/health/v1/health.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        // The server side lets the probe tests run a real Health service.
        .build_server(true)
        .compile_fds(health)?;
    Ok(())
}

/// The git commit and build profile for `ironlet version`; "unknown" outside a git checkout
/// (for example a source tarball), never a build failure.
fn version_facts() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=IRONLET_GIT_COMMIT={commit}");
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=IRONLET_BUILD_PROFILE={profile}");
    // A new commit changes HEAD (or the ref it points at); rebuild the fact then.
    for (arg, watch) in [("--git-dir", "HEAD"), ("--git-common-dir", "refs/heads")] {
        if let Ok(out) = std::process::Command::new("git")
            .args(["rev-parse", arg])
            .output()
        {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() && !dir.is_empty() {
                println!("cargo:rerun-if-changed={dir}/{watch}");
            }
        }
    }
}
