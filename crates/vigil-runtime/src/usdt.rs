//! USDT probes: SystemTap SDT notes (`.note.stapsdt`, owner `stapsdt`, type 3) and their
//! argument specifications (`-4@%eax`, `8@-16(%rbp)`, `4@$5`). Pure.

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
    Some(if neg { -v } else { v })
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
        let word = |i: usize| u64::from_le_bytes(desc[i * 8..i * 8 + 8].try_into().unwrap());
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
        let mut strings = desc[24..].split(|&b| b == 0);
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
                .find(|s| s.addr != 0 && sem >= s.addr && sem < s.addr + s.size.max(1))
                .map(|s| sem - s.addr + s.offset)
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
    fn parameters_follow_the_system_v_order() {
        assert_eq!(parameter_register(0), Some(112)); // rdi
        assert_eq!(parameter_register(1), Some(104)); // rsi
        assert_eq!(parameter_register(5), Some(64)); // r9
        assert_eq!(parameter_register(6), None);
    }
}
