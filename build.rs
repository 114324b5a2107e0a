//! Compiles the hand-written Hubble .proto subset with `protox` (pure Rust, no system protoc),
//! then generates prost messages, the tonic client and server, and pbjson serde impls (for
//! `-o json`, which must match `hubble observe -o json`: proto field names, enum names).
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/flow/flow.proto", "proto/relay/relay.proto", "proto/observer/observer.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out.join("hubble_descriptor.bin");
    fs::write(&descriptor_path, prost::Message::encode_to_vec(&fds))?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;

    let descriptors = fs::read(&descriptor_path)?;
    pbjson_build::Builder::new().register_descriptors(&descriptors)?.preserve_proto_field_names().build(&[
        ".flow",
        ".relay",
        ".observer",
    ])?;
    Ok(())
}
