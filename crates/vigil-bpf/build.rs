//! Compiles the C eBPF programs under `bpf/` with clang (CO-RE, BTF) and generates the Rust
//! view of `bpf/include/vigil_abi.h`, the one header shared by both sides.
//!
//! `VIGIL_CLANG` (or `CLANG`) overrides the compiler; the default is `clang-19`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAMS: &[&str] = &[
    "lifecycle",
    "syscalls",
    "hooks",
    "kfuncs",
    "kfuncs_net",
    "sockaddr_cgroup",
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let bpf_dir = manifest
        .join("../../bpf")
        .canonicalize()
        .expect("bpf/ directory");
    let include = bpf_dir.join("include");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let libbpf_include = PathBuf::from(
        env::var("DEP_BPF_INCLUDE").expect("libbpf-sys exports its headers as DEP_BPF_INCLUDE"),
    );
    let clang = env::var("VIGIL_CLANG")
        .or_else(|_| env::var("CLANG"))
        .unwrap_or_else(|_| "clang-19".to_string());

    println!("cargo:rerun-if-env-changed=VIGIL_CLANG");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed={}", include.display());
    // Each header too: an edit inside the directory was seen to leave the objects stale.
    for entry in std::fs::read_dir(&include).expect("bpf/include").flatten() {
        println!("cargo:rerun-if-changed={}", entry.path().display());
    }
    for program in PROGRAMS {
        let source = bpf_dir.join(format!("{program}.bpf.c"));
        println!("cargo:rerun-if-changed={}", source.display());
        compile(
            &clang,
            &source,
            &include,
            &libbpf_include,
            &out.join(format!("{program}.bpf.o")),
        );
    }
    generate_abi(&include, &out.join("abi.rs"));
}

fn compile(clang: &str, source: &Path, include: &Path, libbpf_include: &Path, object: &Path) {
    let status = Command::new(clang)
        .args([
            "-target",
            "bpf",
            "-g",
            "-O2",
            "-D__TARGET_ARCH_x86",
            "-Wall",
            "-Werror",
        ])
        .arg("-Wno-unused-function")
        .arg(format!("-I{}", include.display()))
        .arg(format!("-I{}", libbpf_include.display()))
        .arg("-c")
        .arg(source)
        .arg("-o")
        .arg(object)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run {clang} (install clang-19 or set VIGIL_CLANG): {e}")
        });
    assert!(status.success(), "{clang} failed on {}", source.display());
    // Strip DWARF but keep BTF/BTF.ext (needed for CO-RE): halves the embedded size.
    let llvm_strip = clang.replace("clang", "llvm-strip");
    let _ = Command::new(&llvm_strip).arg("-g").arg(object).status();
}

fn generate_abi(include: &Path, out: &Path) {
    let header = include.join("vigil_abi.h");
    let bindings = bindgen::Builder::default()
        .header_contents(
            "wrapper.h",
            "#include <linux/types.h>\n#include \"vigil_abi.h\"\n",
        )
        .clang_arg(format!("-I{}", include.display()))
        .allowlist_file(header.to_str().unwrap())
        .derive_default(true)
        .derive_debug(true)
        .derive_copy(true)
        .derive_eq(true)
        .derive_partialeq(true)
        .layout_tests(true)
        .prepend_enum_name(false)
        .generate()
        .expect("bindgen on vigil_abi.h");
    bindings.write_to_file(out).expect("write abi.rs");
}
