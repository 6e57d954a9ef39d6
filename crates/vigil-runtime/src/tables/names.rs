//! Syscall names: ia32 numbers (generated from the UAPI at build time) and `call:` values.

include!(concat!(env!("OUT_DIR"), "/ia32.rs"));

/// The name of ia32 syscall `nr`.
pub fn ia32_name(nr: u32) -> Option<&'static str> {
    IA32_SYSCALLS
        .iter()
        .find(|(_, n)| *n == nr)
        .map(|(name, _)| *name)
}

/// The ia32 number of a syscall, for 32-bit (`int 0x80`) calls.
pub fn ia32_number(name: &str) -> Option<u32> {
    IA32_SYSCALLS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, nr)| *nr)
}

/// The syscall name of a `call:` value: `sys_openat`, `__x64_sys_openat`, `openat`.
pub fn syscall_name(call: &str) -> &str {
    for prefix in [
        "__x64_sys_",
        "__ia32_sys_",
        "__arm64_sys_",
        "__se_sys_",
        "sys_",
    ] {
        if let Some(rest) = call.strip_prefix(prefix) {
            return rest;
        }
    }
    call
}
