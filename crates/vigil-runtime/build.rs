//! Generates the ia32 syscall-number table from the kernel's UAPI header (linux-libc-dev):
//! 32-bit calls are matched by number on raw_syscalls, so the runtime needs the numbers
//! without a kernel header at run time.

use std::env;
use std::fmt::Write;
use std::path::PathBuf;

const HEADERS: &[&str] = &[
    "/usr/include/x86_64-linux-gnu/asm/unistd_32.h",
    "/usr/include/asm/unistd_32.h",
];

fn main() {
    let mut table = String::from(
        "/// (name, ia32 number), from unistd_32.h.\npub const IA32_SYSCALLS: &[(&str, u32)] = &[\n",
    );
    let mut found = false;
    for h in HEADERS {
        println!("cargo:rerun-if-changed={h}");
        let Ok(text) = std::fs::read_to_string(h) else {
            continue;
        };
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            if let (Some("#define"), Some(name), Some(nr)) =
                (parts.next(), parts.next(), parts.next())
                && let (Some(name), Ok(nr)) = (name.strip_prefix("__NR_"), nr.parse::<u32>())
            {
                let _ = writeln!(table, "    ({name:?}, {nr}),");
            }
        }
        found = true;
        break;
    }
    assert!(
        found,
        "unistd_32.h not found (install linux-libc-dev): {HEADERS:?}"
    );
    table.push_str("];\n");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("ia32.rs");
    std::fs::write(out, table).unwrap();
    x64_table();
}

/// (name, x86_64 number), from unistd_64.h: `list:` values of integer arguments
/// (`InMap` over a syscall list on raw_syscalls) name syscalls by name.
fn x64_table() {
    const X64: &[&str] = &[
        "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
        "/usr/include/asm/unistd_64.h",
    ];
    let mut table = String::from(
        "/// (name, x86_64 number), from unistd_64.h.\npub const X64_SYSCALLS: &[(&str, u32)] = &[\n",
    );
    let text = X64
        .iter()
        .inspect(|h| println!("cargo:rerun-if-changed={h}"))
        .find_map(|h| std::fs::read_to_string(h).ok())
        .unwrap_or_else(|| panic!("unistd_64.h not found (install linux-libc-dev): {X64:?}"));
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if let (Some("#define"), Some(name), Some(nr)) = (parts.next(), parts.next(), parts.next())
            && let (Some(name), Ok(nr)) = (name.strip_prefix("__NR_"), nr.parse::<u32>())
        {
            let _ = writeln!(table, "    ({name:?}, {nr}),");
        }
    }
    table.push_str("];\n");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("x64.rs");
    std::fs::write(out, table).unwrap();
}
