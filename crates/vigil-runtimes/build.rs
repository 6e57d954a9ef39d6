//! Compiles the minimal containerd client protos (only the calls vigil makes).

use std::env;
use std::error::Error;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/containerd/namespaces.proto",
    "proto/containerd/containers.proto",
    "proto/containerd/images.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    if env::var_os("PROTOC").is_none() {
        let debian = PathBuf::from("/usr/bin/protoc");
        if debian.exists() {
            // SAFETY: build scripts are single-threaded at this point.
            unsafe { env::set_var("PROTOC", debian) };
        }
    }
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_protos(PROTOS, &["proto"])?;
    Ok(())
}
