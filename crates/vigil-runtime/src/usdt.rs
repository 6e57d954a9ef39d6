//! USDT probes: SystemTap SDT notes (`.note.stapsdt`, owner `stapsdt`, type 3) and their
//! argument specifications (`-4@%eax`, `8@-16(%rbp)`, `4@$5`). Pure, and total: the notes
//! are a workload's bytes, so a malformed one is an error, never a panic.

use crate::elf::{Elf, ElfError};

/// One probe as the note describes it, addresses already turned into file offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub provider: String,
    pub name: String,
    /// File offset of the probe's instruction (where the uprobe goes).
    pub offset: u64,
    /// File offset of the semaphore (uprobe reference counter), 0 if none.
    pub semaphore: u64,
    pub args: Vec<Arg>,
}

/// Where one argument lives when the probe fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Const(i64),
    /// A register, as its byte offset in the kernel's `struct pt_regs`.
    Reg(u32),
    /// User memory at register + displacement.
    Mem {
        reg: u32,
        disp: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arg {
    /// Bytes (1, 2, 4, 8).
    pub size: u8,
    pub signed: bool,
    pub location: Location,
}

/// x86_64 `struct pt_regs` offsets, by every name the SDT assembler may use.
fn register(name: &str) -> Option<u32> {
    const REGS: &[(&[&str], u32)] = &[
        (&["r15", "r15d", "r15w", "r15b"], 0),
        (&["r14", "r14d", "r14w", "r14b"], 8),
        (&["r13", "r13d", "r13w", "r13b"], 16),
        (&["r12", "r12d", "r12w", "r12b"], 24),
        (&["rbp", "ebp", "bp", "bpl"], 32),
        (&["rbx", "ebx", "bx", "bl", "bh"], 40),
        (&["r11", "r11d", "r11w", "r11b"], 48),
        (&["r10", "r10d", "r10w", "r10b"], 56),
        (&["r9", "r9d", "r9w", "r9b"], 64),
        (&["r8", "r8d", "r8w", "r8b"], 72),
        (&["rax", "eax", "ax", "al", "ah"], 80),
        (&["rcx", "ecx", "cx", "cl", "ch"], 88),
        (&["rdx", "edx", "dx", "dl", "dh"], 96),
        (&["rsi", "esi", "si", "sil"], 104),
        (&["rdi", "edi", "di", "dil"], 112),
        (&["rip", "eip", "ip"], 128),
        (&["rsp", "esp", "sp", "spl"], 152),
    ];
    REGS.iter()
        .find(|(names, _)| names.contains(&name))
        .map(|(_, off)| *off)
}

/// x86_64 pt_regs offset of integer parameter `index` (System V: rdi, rsi, rdx, rcx, r8, r9).
pub fn parameter_register(index: u32) -> Option<u32> {
    ["rdi", "rsi", "rdx", "rcx", "r8", "r9"]
        .get(index as usize)
        .and_then(|r| register(r))
}

fn int(text: &str) -> Option<i64> {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let v = match digits.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<i64>().ok()?,
    };
    // `-0x-8000000000000000` would negate i64::MIN.
    if neg { v.checked_neg() } else { Some(v) }
}

/// Parses one argument specification (`[-]SIZE@OPERAND`).
pub fn parse_arg(spec: &str) -> Result<Arg, String> {
    let err = |why: &str| format!("USDT argument `{spec}`: {why}");
    let (size, operand) = spec.split_once('@').ok_or_else(|| err("no `@`"))?;
    let size_n = int(size).ok_or_else(|| err("bad size"))?;
    let signed = size_n < 0;
    let size = size_n.unsigned_abs();
    if !matches!(size, 1 | 2 | 4 | 8) {
        return Err(err("size must be 1, 2, 4 or 8"));
    }
    let location = if let Some(c) = operand.strip_prefix('$') {
        Location::Const(int(c).ok_or_else(|| err("bad constant"))?)
    } else if let Some(r) = operand.strip_prefix('%') {
        Location::Reg(register(r).ok_or_else(|| err("unknown register"))?)
    } else if let Some((disp, rest)) = operand.split_once("(%") {
        let reg = rest
            .strip_suffix(')')
            .ok_or_else(|| err("unclosed memory operand"))?;
        if reg.contains(',') {
            return Err(err("indexed memory operands are not supported"));
        }
        let reg = register(reg).ok_or_else(|| err("unknown register"))?;
        if reg == 128 {
            return Err(err("rip-relative operands are not supported"));
        }
        let disp = if disp.is_empty() {
            0
        } else {
            int(disp)
                .ok_or_else(|| err("bad displacement (symbolic displacements are not supported)"))?
        };
        Location::Mem { reg, disp }
    } else {
        return Err(err("unknown operand"));
    };
    Ok(Arg {
        size: size as u8,
        signed,
        location,
    })
}

/// Every USDT probe of an ELF file. A probe whose arguments do not parse is still listed;
/// its error is returned in place of the arguments, for the hook that uses it to name.
pub fn probes(elf: &Elf<'_>) -> Result<Vec<(Probe, Option<String>)>, ElfError> {
    let base_addr = elf.section(".stapsdt.base").map(|s| s.addr);
    let mut out = Vec::new();
    for (owner, kind, desc) in elf.notes(".note.stapsdt")? {
        if owner != "stapsdt" || kind != 3 || desc.len() < 24 {
            continue;
        }
        let word = |i: usize| {
            desc.get(i * 8..i * 8 + 8)
                .and_then(|w| w.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        let (mut pc, note_base, mut sem) = (word(0), word(1), word(2));
        // Prelinked or moved images: the note records the base it was written for.
        if let Some(actual) = base_addr
            && note_base != 0
        {
            pc = pc.wrapping_add(actual).wrapping_sub(note_base);
            if sem != 0 {
                sem = sem.wrapping_add(actual).wrapping_sub(note_base);
            }
        }
        let mut strings = desc.get(24..).unwrap_or_default().split(|&b| b == 0);
        let text = |s: Option<&[u8]>| String::from_utf8_lossy(s.unwrap_or_default()).into_owned();
        let provider = text(strings.next());
        let name = text(strings.next());
        let arg_text = text(strings.next());
        let parsed: Result<Vec<Arg>, String> = arg_text.split_whitespace().map(parse_arg).collect();
        let offset = elf.file_offset(pc).ok_or_else(|| {
            ElfError(format!(
                "USDT {provider}:{name}: address {pc:#x} is in no segment"
            ))
        })?;
        let semaphore = if sem == 0 {
            0
        } else {
            // The semaphore is data (`.probes`): its offset comes from its section.
            elf.sections
                .iter()
                .filter(|s| s.addr != 0)
                .find_map(|s| {
                    let delta = sem.checked_sub(s.addr)?;
                    (delta < s.size.max(1)).then(|| delta.checked_add(s.offset))?
                })
                .ok_or_else(|| {
                    ElfError(format!(
                        "USDT {provider}:{name}: semaphore {sem:#x} is in no section"
                    ))
                })?
        };
        let (args, error) = match parsed {
            Ok(a) => (a, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        out.push((
            Probe {
                provider,
                name,
                offset,
                semaphore,
                args,
            },
            error,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_specs() {
        assert_eq!(
            parse_arg("-4@%eax").unwrap(),
            Arg {
                size: 4,
                signed: true,
                location: Location::Reg(80)
            }
        );
        assert_eq!(
            parse_arg("8@-16(%rbp)").unwrap(),
            Arg {
                size: 8,
                signed: false,
                location: Location::Mem { reg: 32, disp: -16 }
            }
        );
        assert_eq!(
            parse_arg("8@(%rdi)").unwrap().location,
            Location::Mem { reg: 112, disp: 0 }
        );
        assert_eq!(parse_arg("4@$5").unwrap().location, Location::Const(5));
        assert_eq!(parse_arg("-1@$-3").unwrap().location, Location::Const(-3));
        assert_eq!(parse_arg("8@%r12").unwrap().location, Location::Reg(24));
        for bad in [
            "4%eax",
            "3@%eax",
            "8@%xyz",
            "8@8(%rax,%rbx,1)",
            "8@x(%rip)",
            "8@foo",
        ] {
            assert!(parse_arg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn notes_agree_with_readelf() {
        // python3 carries SDT probes (with semaphores); readelf is the independent reader.
        let path = "/usr/bin/python3";
        let out = std::process::Command::new("readelf")
            .args(["-n", path])
            .output()
            .expect("readelf (binutils)");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut expected = Vec::new();
        let mut lines = text.lines().map(str::trim);
        while let Some(line) = lines.next() {
            if let Some(provider) = line.strip_prefix("Provider: ") {
                let name = lines.next().unwrap().strip_prefix("Name: ").unwrap();
                let _location = lines.next();
                let args = lines
                    .next()
                    .and_then(|l| l.strip_prefix("Arguments: "))
                    .unwrap_or("");
                expected.push((provider.to_string(), name.to_string(), args.to_string()));
            }
        }
        assert!(
            !expected.is_empty(),
            "readelf lists no SDT probes in {path}"
        );
        let data = std::fs::read(path).unwrap();
        let elf = Elf::parse(&data).unwrap();
        let ours = probes(&elf).unwrap();
        assert_eq!(ours.len(), expected.len());
        for ((probe, err), (provider, name, args)) in ours.iter().zip(&expected) {
            assert_eq!((&probe.provider, &probe.name), (provider, name));
            assert!(err.is_none(), "{err:?}");
            assert_eq!(probe.args.len(), args.split_whitespace().count());
            assert_ne!(probe.semaphore, 0, "python's probes have semaphores");
            // The probe address lies in executable code: a NOP (0x90) is what SDT emits.
            assert_eq!(data[probe.offset as usize], 0x90, "{provider}:{name}");
        }
    }

    #[test]
    fn hostile_argument_specs_are_errors() {
        for bad in [
            "-0x-8000000000000000@%eax",
            "8@$-0x-8000000000000000",
            "8@-0x-8000000000000000(%rax)",
            "-9223372036854775808@%eax",
            "99999999999999999999@%eax",
            "8@$99999999999999999999",
            "@",
            "8@",
            "8@(%",
            "8@(%)",
            "8@%",
            "\u{0}@\u{0}",
        ] {
            assert!(parse_arg(bad).is_err(), "{bad}");
        }
    }

    /// An SDT note as the assembler writes it (pc, base, semaphore, then three strings).
    fn sdt_note(pc: u64, base: u64, sem: u64, strings: &[u8]) -> Vec<u8> {
        let mut desc = Vec::new();
        for w in [pc, base, sem] {
            desc.extend_from_slice(&w.to_le_bytes());
        }
        desc.extend_from_slice(strings);
        let mut n = Vec::new();
        n.extend_from_slice(&8u32.to_le_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&3u32.to_le_bytes());
        n.extend_from_slice(b"stapsdt\0");
        n.extend_from_slice(&desc);
        n.resize(n.len().next_multiple_of(4), 0);
        n
    }

    /// A relocatable-looking file: `.note.stapsdt` (notes), `.text` at 0x1000 and
    /// `.probes` at `probes_addr`, the latter two covering the notes' bytes.
    fn file_with(notes: &[u8], probes_addr: u64) -> Vec<u8> {
        let names = b"\0.note.stapsdt\0.text\0.probes\0.shstrtab\0";
        let notes_at = 64u64;
        let names_at = notes_at + notes.len() as u64;
        let shoff = (names_at + names.len() as u64).next_multiple_of(8);
        let mut d = vec![0u8; 64];
        d[..6].copy_from_slice(b"\x7fELF\x02\x01");
        d[40..48].copy_from_slice(&shoff.to_le_bytes());
        d[58..60].copy_from_slice(&64u16.to_le_bytes());
        d[60..62].copy_from_slice(&5u16.to_le_bytes());
        d[62..64].copy_from_slice(&4u16.to_le_bytes());
        d.extend_from_slice(notes);
        d.extend_from_slice(names);
        d.resize(shoff as usize, 0);
        let len = notes.len() as u64;
        let headers: [(u32, u32, u64, u64, u64); 5] = [
            (0, 0, 0, 0, 0),
            (1, 7, 0, notes_at, len),
            (15, 1, 0x1000, notes_at, len),
            (21, 1, probes_addr, notes_at, len),
            (29, 3, 0, names_at, names.len() as u64),
        ];
        for (name, kind, addr, off, size) in headers {
            let mut h = [0u8; 64];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[16..24].copy_from_slice(&addr.to_le_bytes());
            h[24..32].copy_from_slice(&off.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            d.extend_from_slice(&h);
        }
        d
    }

    #[test]
    fn a_synthetic_probe_is_placed() {
        let notes = sdt_note(0x1004, 0, 0x2000, b"prov\0name\0-4@%eax 8@-8(%rbp)\0");
        let data = file_with(&notes, 0x2000);
        let elf = Elf::parse(&data).unwrap();
        let found = probes(&elf).unwrap();
        assert_eq!(found.len(), 1);
        let (probe, err) = &found[0];
        assert_eq!(err, &None);
        assert_eq!(
            (probe.provider.as_str(), probe.name.as_str()),
            ("prov", "name")
        );
        assert_eq!((probe.offset, probe.semaphore), (64 + 4, 64));
        assert_eq!(probe.args.len(), 2);
    }

    #[test]
    fn hostile_notes_are_errors_not_panics() {
        let cases = [
            // Semaphore near the top of the address space, in a section ending there.
            (sdt_note(0x1000, 0, u64::MAX, b"p\0n\0\0"), u64::MAX - 200),
            // A base that moves the pc to wrap around.
            (sdt_note(0x1000, u64::MAX, 0, b"p\0n\0\0"), 0x2000),
            // Pc in no section; no strings at all; unterminated strings.
            (sdt_note(u64::MAX, 0, 0, b""), 0x2000),
            (sdt_note(0x1000, 0, 0, b"p"), 0x2000),
            (
                sdt_note(0x1000, 0, 0, b"p\0n\0-0x-8000000000000000@%eax"),
                0x2000,
            ),
        ];
        for (notes, probes_addr) in cases {
            let data = file_with(&notes, probes_addr);
            if let Ok(elf) = Elf::parse(&data) {
                let _ = probes(&elf);
            }
        }
        // A note whose descriptor is shorter than the three addresses is skipped.
        let mut short = sdt_note(0, 0, 0, b"");
        short[4..8].copy_from_slice(&8u32.to_le_bytes());
        let data = file_with(&short, 0x2000);
        assert_eq!(probes(&Elf::parse(&data).unwrap()).unwrap(), vec![]);
    }

    #[test]
    fn parameters_follow_the_system_v_order() {
        assert_eq!(parameter_register(0), Some(112)); // rdi
        assert_eq!(parameter_register(1), Some(104)); // rsi
        assert_eq!(parameter_register(5), Some(64)); // r9
        assert_eq!(parameter_register(6), None);
    }
}
