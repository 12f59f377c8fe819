//! Generates the tonic/prost code for `proto/kedge/link/v1/link.proto` with protoc
//! (scripts/setup.sh installs protobuf-compiler; `PROTOC` may point elsewhere).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/kedge/link/v1/link.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/kedge/link/v1/link.proto"], &["proto"])?;
    Ok(())
}
