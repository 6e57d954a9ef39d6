//! Compiles `proto/tetragon/*.proto` into prost messages, tonic client and
//! server code, and pbjson serde impls that keep the proto field names
//! (Tetragon's JSON export uses snake_case proto names).

use std::env;
use std::error::Error;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/tetragon/bpf.proto",
    "proto/tetragon/capabilities.proto",
    "proto/tetragon/vigil.proto",
    "proto/tetragon/tetragon.proto",
    "proto/tetragon/stack.proto",
    "proto/tetragon/events.proto",
    "proto/tetragon/sensors.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    if env::var_os("PROTOC").is_none() {
        let debian = PathBuf::from("/usr/bin/protoc");
        if debian.exists() {
            // SAFETY: build scripts are single-threaded at this point.
            unsafe { env::set_var("PROTOC", debian) };
        }
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("tetragon_descriptor.bin");

    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .file_descriptor_set_path(&descriptor_path)
        .compile_well_known_types(true)
        // Our own Timestamp gives Go-protojson formatting ("Z" suffix).
        .extern_path(".google.protobuf.Timestamp", "crate::wkt::Timestamp")
        .extern_path(".google.protobuf", "::pbjson_types")
        // Sorted maps: deterministic JSON, like Go's protojson.
        .btree_map(".")
        .compile_protos(PROTOS, &["proto"])?;

    let descriptor_set = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_set)?
        .preserve_proto_field_names()
        .btree_map(["."])
        .build(&[".tetragon"])?;

    Ok(())
}
