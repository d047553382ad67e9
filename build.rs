//! Generates the CRI runtime.v1 client and server from proto/ (see src/cri/generated.rs),
//! and the grpc.health.v1 client (and a server for tests) used by gRPC probes
//! (see src/probe/grpc.rs).
//!
//! protox parses the .proto in pure Rust, so building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");

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
