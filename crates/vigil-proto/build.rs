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

    // Go's protojson writes fields in declaration order; pbjson writes
    // oneofs after all plain fields. Where a oneof is declared first, move
    // its serialisation to the front so the JSON key order matches Tetragon.
    let serde_path = out_dir.join("tetragon.serde.rs");
    let mut serde_src = std::fs::read_to_string(&serde_path)?;
    for (message, oneof) in ONEOF_FIRST {
        hoist_oneof(&mut serde_src, message, oneof)?;
    }
    std::fs::write(&serde_path, serde_src)?;

    compile_vigil_services(&out_dir)?;
    Ok(())
}

/// vigil's own services, in packages of their own (`vigil.*`). Compiled apart from the
/// Tetragon protos, into their own directory, so that `FILE_DESCRIPTOR_SET` stays Tetragon's
/// API; the Tetragon messages they use are the ones generated above.
fn compile_vigil_services(out_dir: &std::path::Path) -> Result<(), Box<dyn Error>> {
    const VIGIL_PROTOS: &[&str] = &["proto/vigil/history/v1/history.proto"];
    for proto in VIGIL_PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let dir = out_dir.join("vigil");
    std::fs::create_dir_all(&dir)?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .out_dir(&dir)
        // As above: our Timestamp, and no default mapping to prost-types.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf.Timestamp", "crate::wkt::Timestamp")
        .extern_path(".google.protobuf", "::pbjson_types")
        .extern_path(".tetragon", "crate::tetragon")
        .compile_protos(VIGIL_PROTOS, &["proto"])?;
    Ok(())
}

/// (message, oneof field) pairs whose oneof is declared before plain fields.
const ONEOF_FIRST: &[(&str, &str)] = &[("GetEventsResponse", "event"), ("KprobeArgument", "arg")];

fn hoist_oneof(src: &mut String, message: &str, oneof: &str) -> Result<(), Box<dyn Error>> {
    let missing = |what: &str| format!("pbjson output for {message}: {what} not found");
    let impl_start = src
        .find(&format!("impl serde::Serialize for {message} {{"))
        .ok_or_else(|| missing("Serialize impl"))?;
    let impl_end = src[impl_start..]
        .find("\nimpl")
        .map_or(src.len(), |i| impl_start + i);
    let body = &src[impl_start..impl_end];
    let ser_decl = body
        .find("let mut struct_ser = ")
        .ok_or_else(|| missing("struct_ser"))?;
    let insert_at = impl_start
        + ser_decl
        + body[ser_decl..]
            .find('\n')
            .ok_or_else(|| missing("line end"))?
        + 1;
    let block_rel = body
        .find(&format!(
            "        if let Some(v) = self.{oneof}.as_ref() {{"
        ))
        .ok_or_else(|| missing("oneof block"))?;
    let end_rel = body[block_rel..]
        .find("        struct_ser.end()")
        .ok_or_else(|| missing("struct_ser.end()"))?
        + block_rel;
    let block = body[block_rel..end_rel].to_string();
    src.replace_range(impl_start + block_rel..impl_start + end_rel, "");
    src.insert_str(insert_at, &block);
    Ok(())
}
