//! Seeds made at run time: synthetic files that reach deep into each parser (a small ELF with
//! every part the parsers read, ring records of every kind) and real inputs of this machine
//! (small binaries, this process's /proc files), so the committed corpus stays tiny.

use vigil_bpf::abi::{
    VIGIL_MSG_CLONE, VIGIL_MSG_DATA, VIGIL_MSG_EXEC, VIGIL_MSG_EXIT, VIGIL_MSG_SYSCALL,
    VIGIL_SYSMSG_PATH, vigil_clone_msg, vigil_data_msg, vigil_exec_msg, vigil_exit_msg,
    vigil_syscall_msg,
};

/// Seeds for `target` beside its `corpus/` directory.
pub fn generated(target: &str) -> Vec<Vec<u8>> {
    match target {
        "elf" | "usdt" => {
            let mut out = vec![small_elf()];
            // Real binaries, when small enough to mutate quickly.
            for path in ["/bin/true", "/usr/bin/true"] {
                if let Ok(data) = std::fs::read(path)
                    && data.len() <= 128 * 1024
                {
                    out.push(data);
                    break;
                }
            }
            out
        }
        "records" => records(),
        "procfs" => ["stat", "status", "cgroup"]
            .iter()
            .filter_map(|f| std::fs::read(format!("/proc/self/{f}")).ok())
            .collect(),
        "maps" => std::fs::read("/proc/self/maps")
            .ok()
            .filter(|m| m.len() <= 64 * 1024)
            .into_iter()
            .collect(),
        "policy" => policies(),
        _ => Vec::new(),
    }
}

fn bytes_of<T>(v: &T) -> Vec<u8> {
    // SAFETY: the ABI structs are plain old data; viewing one as bytes is what the kernel's
    // ring buffer hands over.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

/// One record of each kind, with its sections.
fn records() -> Vec<Vec<u8>> {
    let mut exec = vigil_exec_msg::default();
    exec.hdr.kind = VIGIL_MSG_EXEC as u8;
    (exec.path_len, exec.cwd_len, exec.cgroup_len) = (9, 4, 3);
    (exec.args_len, exec.env_len) = (8, 4);
    let mut exec = bytes_of(&exec);
    exec.extend_from_slice(b"\x04true\x03bin\x03tmp\x00cgtrue\0-x\0\0A=1\0");
    let mut sys = vigil_syscall_msg::default();
    sys.hdr.kind = VIGIL_MSG_SYSCALL as u8;
    sys.str_len = [4, 0, 2, 0, 0];
    sys.flags = VIGIL_SYSMSG_PATH as u16;
    sys.path_len = 5;
    (sys.ustack_len, sys.kstack_len) = (16, 8);
    let mut sys = bytes_of(&sys);
    sys.extend_from_slice(b"abcdxy\x04file");
    sys.extend((1u64..=3).flat_map(u64::to_le_bytes));
    let mut data = vigil_data_msg::default();
    data.hdr.kind = VIGIL_MSG_DATA as u8;
    data.len = 6;
    let mut data = bytes_of(&data);
    data.extend_from_slice(b"chunk!");
    let mut clone = vigil_clone_msg::default();
    clone.hdr.kind = VIGIL_MSG_CLONE as u8;
    let mut exit = vigil_exit_msg::default();
    exit.hdr.kind = VIGIL_MSG_EXIT as u8;
    vec![exec, sys, data, bytes_of(&clone), bytes_of(&exit)]
}

/// The repository's policies: the malformed corpus with its expected errors, the benches.
fn policies() -> Vec<Vec<u8>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    for dir in ["tests/policy-corpus/malformed", "bench/policies"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .into_iter()
            .flatten()
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        out.extend(files.iter().filter_map(|p| std::fs::read(p).ok()));
    }
    out
}

const SHT_PROGBITS: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHT_NOTE: u32 = 7;
const SHT_DYNSYM: u32 = 11;

fn note(owner: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
    let mut n = Vec::new();
    n.extend_from_slice(&(owner.len() as u32 + 1).to_le_bytes());
    n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    n.extend_from_slice(&kind.to_le_bytes());
    n.extend_from_slice(owner);
    n.push(0);
    n.resize(n.len().next_multiple_of(4), 0);
    n.extend_from_slice(desc);
    n.resize(n.len().next_multiple_of(4), 0);
    n
}

fn symbol(name: u32, value: u64, size: u64) -> [u8; 24] {
    let mut s = [0u8; 24];
    s[0..4].copy_from_slice(&name.to_le_bytes());
    s[4] = 0x12; // global function
    s[6] = 1; // defined, in section 1
    s[8..16].copy_from_slice(&value.to_le_bytes());
    s[16..24].copy_from_slice(&size.to_le_bytes());
    s
}

/// A small x86_64 ELF with one loadable segment, `.symtab` and `.dynsym`, a GNU build ID and
/// two SDT probes (one with a semaphore, one relocated by `.stapsdt.base`).
pub fn small_elf() -> Vec<u8> {
    const TEXT: u64 = 0x40_1000;
    let strtab = b"\0main\0helper\0".to_vec();
    let mut syms = vec![0u8; 24];
    syms.extend_from_slice(&symbol(1, TEXT, 16));
    syms.extend_from_slice(&symbol(6, TEXT + 16, 16));
    let mut sdt = Vec::new();
    for (pc, base, sem, args) in [
        (
            TEXT + 4,
            0x40_2000,
            0x40_3000,
            &b"-4@%eax 8@-16(%rbp) 4@$5"[..],
        ),
        (TEXT + 0x1008, 0x40_3000, 0, &b"8@(%rdi) -1@%cl"[..]),
    ] {
        let mut desc = Vec::new();
        for w in [pc, base, sem] {
            desc.extend_from_slice(&w.to_le_bytes());
        }
        desc.extend_from_slice(b"prov\0probe\0");
        desc.extend_from_slice(args);
        desc.push(0);
        sdt.extend(note(b"stapsdt", 3, &desc));
    }
    let sections: Vec<(&str, u32, u64, Vec<u8>, u32)> = vec![
        (".text", SHT_PROGBITS, TEXT, vec![0x90; 32], 0),
        (".symtab", SHT_SYMTAB, 0, syms.clone(), 3),
        (".strtab", SHT_STRTAB, 0, strtab, 0),
        (".dynsym", SHT_DYNSYM, 0, syms, 3),
        (
            ".note.gnu.build-id",
            SHT_NOTE,
            0,
            note(b"GNU", 3, &[0xab; 20]),
            0,
        ),
        (".note.stapsdt", SHT_NOTE, 0, sdt, 0),
        (".stapsdt.base", SHT_PROGBITS, 0x40_2000, vec![0], 0),
        (".probes", SHT_PROGBITS, 0x40_3000, vec![0, 0], 0),
    ];
    let mut names = vec![0u8];
    let mut name_at = Vec::new();
    for name in sections.iter().map(|s| s.0).chain([".shstrtab"]) {
        name_at.push(names.len() as u32);
        names.extend_from_slice(name.as_bytes());
        names.push(0);
    }
    let mut out = vec![0u8; 64 + 56];
    let mut placed = Vec::new();
    for (_, _, _, content, _) in &sections {
        out.resize(out.len().next_multiple_of(8), 0);
        placed.push(out.len() as u64);
        out.extend_from_slice(content);
    }
    let names_at = out.len() as u64;
    out.extend_from_slice(&names);
    out.resize(out.len().next_multiple_of(8), 0);
    let shoff = out.len() as u64;
    let header = |out: &mut Vec<u8>, name, kind: u32, addr: u64, off: u64, size: u64, link: u32| {
        let mut h = [0u8; 64];
        h[0..4].copy_from_slice(&u32::to_le_bytes(name));
        h[4..8].copy_from_slice(&kind.to_le_bytes());
        h[16..24].copy_from_slice(&addr.to_le_bytes());
        h[24..32].copy_from_slice(&off.to_le_bytes());
        h[32..40].copy_from_slice(&size.to_le_bytes());
        h[40..44].copy_from_slice(&link.to_le_bytes());
        out.extend_from_slice(&h);
    };
    header(&mut out, 0, 0, 0, 0, 0, 0);
    for (i, (_, kind, addr, content, link)) in sections.iter().enumerate() {
        header(
            &mut out,
            name_at[i],
            *kind,
            *addr,
            placed[i],
            content.len() as u64,
            *link,
        );
    }
    let n = sections.len();
    header(
        &mut out,
        name_at[n],
        SHT_STRTAB,
        0,
        names_at,
        names.len() as u64,
        0,
    );
    // ELF header, then one PT_LOAD for .text.
    out[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\0");
    out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86_64
    out[32..40].copy_from_slice(&64u64.to_le_bytes());
    out[40..48].copy_from_slice(&shoff.to_le_bytes());
    out[52..54].copy_from_slice(&64u16.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[56..58].copy_from_slice(&1u16.to_le_bytes());
    out[58..60].copy_from_slice(&64u16.to_le_bytes());
    out[60..62].copy_from_slice(&(n as u16 + 2).to_le_bytes());
    out[62..64].copy_from_slice(&(n as u16 + 1).to_le_bytes());
    let mut ph = [0u8; 56];
    ph[0..4].copy_from_slice(&1u32.to_le_bytes());
    ph[8..16].copy_from_slice(&placed[0].to_le_bytes());
    ph[16..24].copy_from_slice(&TEXT.to_le_bytes());
    ph[32..40].copy_from_slice(&0x2000u64.to_le_bytes());
    out[64..120].copy_from_slice(&ph);
    out
}
