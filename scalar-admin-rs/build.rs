//! Generates the gRPC client and server for `proto/admin.proto`.
//!
//! `protox` parses the proto in pure Rust, so a fresh machine builds with cargo alone
//! (no system `protoc`). The proto lives at the workspace root; a copy inside the crate
//! would be one more file to keep in sync.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");
    let proto = format!("{proto_dir}/admin.proto");
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([&proto], [proto_dir])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Small buffers for tiny messages: see src/codec.rs.
        .codec_path("crate::codec::SmallCodec")
        .compile_fds(fds)?;
    Ok(())
}
