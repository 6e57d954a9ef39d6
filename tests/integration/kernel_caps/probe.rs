//! Probes: minimal eBPF programs loaded (and where cheap attached) through bpf(2), to tell
//! whether the running kernel offers a mechanism. Only std: the syscall is made directly.

mod sys {
    unsafe extern "C" {
        pub fn syscall(num: i64, ...) -> i64;
        pub fn close(fd: i32) -> i32;
        pub fn __errno_location() -> *mut i32;
    }
}

const SYS_BPF: i64 = 321; // x86_64
const BPF_MAP_CREATE: i64 = 0;
const BPF_PROG_LOAD: i64 = 5;
const BPF_RAW_TRACEPOINT_OPEN: i64 = 17;
const BPF_LINK_CREATE: i64 = 28;

const PROG_KPROBE: u32 = 2;
const PROG_TRACEPOINT: u32 = 5;
const PROG_RAW_TRACEPOINT: u32 = 17;
const PROG_TRACING: u32 = 26;
const PROG_LSM: u32 = 29;

const ATTACH_TRACE_RAW_TP: u32 = 23;
const ATTACH_TRACE_FENTRY: u32 = 24;
const ATTACH_MODIFY_RETURN: u32 = 26;
const ATTACH_LSM_MAC: u32 = 27;
const ATTACH_TRACE_ITER: u32 = 28;
const ATTACH_TRACE_KPROBE_MULTI: u32 = 42;

struct Fd(i32);
impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own this descriptor.
        unsafe { sys::close(self.0) };
    }
}

fn bpf(cmd: i64, attr: &mut [u8; 128]) -> Result<Fd, String> {
    // SAFETY: attr is a valid, zero-tailed union bpf_attr buffer of the size passed.
    let r = unsafe { sys::syscall(SYS_BPF, cmd, attr.as_mut_ptr(), attr.len() as u32) };
    if r < 0 {
        // SAFETY: errno is thread-local and always valid.
        let errno = unsafe { *sys::__errno_location() };
        return Err(format!(
            "bpf cmd {cmd}: {}",
            std::io::Error::from_raw_os_error(errno)
        ));
    }
    Ok(Fd(r as i32))
}

fn put32(a: &mut [u8; 128], off: usize, v: u32) {
    a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}
fn put64(a: &mut [u8; 128], off: usize, v: u64) {
    a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// One eBPF instruction.
const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    (code as u64)
        | ((dst as u64) << 8)
        | ((src as u64) << 12)
        | (((off as u16) as u64) << 16)
        | (((imm as u32) as u64) << 32)
}
const RET0: [u64; 2] = [insn(0xb7, 0, 0, 0, 0), insn(0x95, 0, 0, 0, 0)]; // r0 = 0; exit

fn prog_load(
    prog_type: u32,
    attach_type: u32,
    attach_btf_id: u32,
    insns: &[u64],
) -> Result<Fd, String> {
    let license = b"GPL\0";
    let mut log = vec![0u8; 4096];
    let mut a = [0u8; 128];
    put32(&mut a, 0, prog_type);
    put32(&mut a, 4, insns.len() as u32);
    put64(&mut a, 8, insns.as_ptr() as u64);
    put64(&mut a, 16, license.as_ptr() as u64);
    put32(&mut a, 24, 1); // log_level
    put32(&mut a, 28, log.len() as u32);
    put64(&mut a, 32, log.as_mut_ptr() as u64);
    put32(&mut a, 68, attach_type);
    put32(&mut a, 108, attach_btf_id);
    bpf(BPF_PROG_LOAD, &mut a).map_err(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(0);
        let text = String::from_utf8_lossy(&log[..end]);
        // The last line is the statistics line, printed even when verification failed.
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with("processed "))
            .unwrap_or("");
        format!(
            "{e}{}",
            if last.is_empty() {
                String::new()
            } else {
                format!(" (verifier: {last})")
            }
        )
    })
}

fn raw_tp_open(name: Option<&std::ffi::CStr>, prog: &Fd) -> Result<Fd, String> {
    let mut a = [0u8; 128];
    put64(&mut a, 0, name.map_or(0, |n| n.as_ptr() as u64));
    put32(&mut a, 8, prog.0 as u32);
    bpf(BPF_RAW_TRACEPOINT_OPEN, &mut a)
}

/// Kernel BTF: the id of a type of `kind` (12 FUNC, 8 TYPEDEF) named `name`.
pub fn btf_type_id(kind: u32, name: &str) -> Result<u32, String> {
    static BTF: std::sync::OnceLock<Result<Vec<u8>, String>> = std::sync::OnceLock::new();
    let data = BTF
        .get_or_init(|| {
            std::fs::read("/sys/kernel/btf/vmlinux")
                .map_err(|e| format!("/sys/kernel/btf/vmlinux: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)?;
    btf_find(data, kind, name)
}

fn btf_find(data: &[u8], kind: u32, name: &str) -> Result<u32, String> {
    let u32_at = |o: usize| {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .ok_or("truncated BTF")
    };
    if data.len() < 24 || data[0..2] != [0x9f, 0xeb] {
        return Err("not little-endian BTF".into());
    }
    let hdr = u32_at(4)? as usize;
    let (type_off, type_len, str_off) = (
        u32_at(8)? as usize,
        u32_at(12)? as usize,
        u32_at(16)? as usize,
    );
    let types = hdr + type_off;
    let strs = hdr + str_off;
    let mut off = types;
    let mut id = 1u32;
    while off < types + type_len {
        let name_off = u32_at(off)? as usize;
        let info = u32_at(off + 4)?;
        let vlen = (info & 0xffff) as usize;
        let k = (info >> 24) & 0x1f;
        if k == kind {
            let s = &data[strs + name_off..];
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            if &s[..end] == name.as_bytes() {
                return Ok(id);
            }
        }
        off += 12
            + match k {
                1 | 14 | 17 => 4,
                3 => 12,
                4 | 5 | 15 | 19 => vlen * 12,
                6 | 13 => vlen * 8,
                _ => 0,
            };
        id += 1;
    }
    Err(format!("no BTF type {name} (kind {kind})"))
}

const BTF_FUNC: u32 = 12;
const BTF_TYPEDEF: u32 = 8;

fn tracing_attach(prog_type: u32, attach_type: u32, func: &str) -> Result<(), String> {
    let id = btf_type_id(BTF_FUNC, func)?;
    let prog = prog_load(prog_type, attach_type, id, &RET0)?;
    raw_tp_open(None, &prog).map(drop)
}

fn pmu_exists(name: &str) -> Result<(), String> {
    let p = format!("/sys/bus/event_source/devices/{name}/type");
    std::fs::metadata(&p)
        .map(drop)
        .map_err(|e| format!("{p}: {e}"))
}

/// Probe one mechanism of the matrix for real. `Ok(())`: present.
pub fn probe(mechanism: &str) -> Result<(), String> {
    match mechanism {
        "tracepoint" => prog_load(PROG_TRACEPOINT, 0, 0, &RET0).map(drop),
        "raw_tp" => raw_tp_open(
            Some(c"sched_process_exec"),
            &prog_load(PROG_RAW_TRACEPOINT, 0, 0, &RET0)?,
        )
        .map(drop),
        "tp_btf" => {
            let id = btf_type_id(BTF_TYPEDEF, "btf_trace_sched_process_exec")?;
            raw_tp_open(
                None,
                &prog_load(PROG_TRACING, ATTACH_TRACE_RAW_TP, id, &RET0)?,
            )
            .map(drop)
        }
        "btf" => btf_type_id(BTF_FUNC, "security_file_open").map(drop),
        "uprobe" => pmu_exists("uprobe"),
        "ringbuf" => {
            let mut a = [0u8; 128];
            put32(&mut a, 0, 27); // BPF_MAP_TYPE_RINGBUF
            put32(&mut a, 12, 4096);
            bpf(BPF_MAP_CREATE, &mut a).map(drop)
        }
        "bpf_loop" => btf_type_id(BTF_FUNC, "bpf_loop").map(drop),
        "dynptr" => btf_type_id(BTF_FUNC, "bpf_dynptr_from_mem").map(drop),
        "iterator" => prog_load(
            PROG_TRACING,
            ATTACH_TRACE_ITER,
            btf_type_id(BTF_FUNC, "bpf_iter_task")?,
            &RET0,
        )
        .map(drop),
        "kprobe" => {
            pmu_exists("kprobe")?;
            prog_load(PROG_KPROBE, 0, 0, &RET0).map(drop)
        }
        "kprobe_multi" => {
            let prog = prog_load(PROG_KPROBE, ATTACH_TRACE_KPROBE_MULTI, 0, &RET0)?;
            let sym = c"security_file_open";
            let syms = [sym.as_ptr() as u64];
            let mut a = [0u8; 128];
            put32(&mut a, 0, prog.0 as u32);
            put32(&mut a, 8, ATTACH_TRACE_KPROBE_MULTI);
            put32(&mut a, 20, 1); // kprobe_multi.cnt
            put64(&mut a, 24, syms.as_ptr() as u64);
            bpf(BPF_LINK_CREATE, &mut a).map(drop)
        }
        "fentry" => tracing_attach(PROG_TRACING, ATTACH_TRACE_FENTRY, "security_file_open"),
        "fmod_ret" => tracing_attach(PROG_TRACING, ATTACH_MODIFY_RETURN, "security_file_open"),
        "lsm" => tracing_attach(PROG_LSM, ATTACH_LSM_MAC, "bpf_lsm_file_open"),
        "probe_write_user" => {
            // *(u64 *)(r10 - 8) = 0; r1 = 0; r2 = r10 - 8; r3 = 8; call bpf_probe_write_user; r0 = 0; exit
            let p = [
                insn(0x7a, 10, 0, -8, 0),
                insn(0xb7, 1, 0, 0, 0),
                insn(0xbf, 2, 10, 0, 0),
                insn(0x07, 2, 0, 0, -8),
                insn(0xb7, 3, 0, 0, 8),
                insn(0x85, 0, 0, 0, 36),
                RET0[0],
                RET0[1],
            ];
            prog_load(PROG_TRACEPOINT, 0, 0, &p).map(drop)
        }
        "override_return" => {
            // r2 = 0; call bpf_override_return (r1 = ctx); r0 = 0; exit
            let p = [
                insn(0xb7, 2, 0, 0, 0),
                insn(0x85, 0, 0, 0, 58),
                RET0[0],
                RET0[1],
            ];
            prog_load(PROG_KPROBE, 0, 0, &p).map(drop)
        }
        other => Err(format!("kernel_caps has no probe for mechanism {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn btf_walk_rejects_garbage() {
        assert!(btf_find(&[0u8; 8], BTF_FUNC, "x").is_err());
    }
}
