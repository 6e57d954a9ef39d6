//! Just enough ELF (64-bit, little-endian: x86_64) to place uprobes: function symbols from
//! `.symtab` and `.dynsym` turned into file offsets, and the SystemTap SDT notes
//! (`.note.stapsdt`) that USDT probes are. Pure: works on bytes.

/// An ELF file that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ElfError(pub String);

fn bad(reason: impl Into<String>) -> ElfError {
    ElfError(reason.into())
}

#[derive(Debug, Clone)]
pub struct Section {
    pub name: String,
    pub kind: u32,
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
    pub link: u32,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// One ELF note: (owner, type, descriptor).
pub type Note<'a> = (String, u32, &'a [u8]);

/// A parsed ELF image borrowing the file's bytes.
pub struct Elf<'a> {
    data: &'a [u8],
    pub sections: Vec<Section>,
    segments: Vec<Segment>,
}

const SHT_SYMTAB: u32 = 2;
const SHT_NOTE: u32 = 7;
const SHT_DYNSYM: u32 = 11;
const PT_LOAD: u32 = 1;
const STT_FUNC: u8 = 2;
const STT_GNU_IFUNC: u8 = 10;

fn u16_at(d: &[u8], off: usize) -> Result<u16, ElfError> {
    d.get(off..off + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| bad("truncated ELF file"))
}

fn u32_at(d: &[u8], off: usize) -> Result<u32, ElfError> {
    d.get(off..off + 4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
        .ok_or_else(|| bad("truncated ELF file"))
}

fn u64_at(d: &[u8], off: usize) -> Result<u64, ElfError> {
    d.get(off..off + 8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .ok_or_else(|| bad("truncated ELF file"))
}

fn cstr(d: &[u8], off: usize) -> &[u8] {
    let tail = d.get(off..).unwrap_or_default();
    &tail[..tail.iter().position(|&b| b == 0).unwrap_or(tail.len())]
}

impl<'a> Elf<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, ElfError> {
        if data.get(..4) != Some(b"\x7fELF") {
            return Err(bad("not an ELF file"));
        }
        if data[4] != 2 || data[5] != 1 {
            return Err(bad("not a 64-bit little-endian ELF file"));
        }
        let phoff = u64_at(data, 32)? as usize;
        let shoff = u64_at(data, 40)? as usize;
        let phentsize = u16_at(data, 54)? as usize;
        let phnum = u16_at(data, 56)? as usize;
        let shentsize = u16_at(data, 58)? as usize;
        let shnum = u16_at(data, 60)? as usize;
        let shstrndx = u16_at(data, 62)? as usize;
        let mut segments = Vec::with_capacity(phnum);
        for i in 0..phnum {
            let p = phoff + i * phentsize;
            segments.push(Segment {
                kind: u32_at(data, p)?,
                offset: u64_at(data, p + 8)?,
                vaddr: u64_at(data, p + 16)?,
                filesz: u64_at(data, p + 32)?,
            });
        }
        let mut raw = Vec::with_capacity(shnum);
        for i in 0..shnum {
            let s = shoff + i * shentsize;
            raw.push((
                u32_at(data, s)?,
                Section {
                    name: String::new(),
                    kind: u32_at(data, s + 4)?,
                    addr: u64_at(data, s + 16)?,
                    offset: u64_at(data, s + 24)?,
                    size: u64_at(data, s + 32)?,
                    link: u32_at(data, s + 40)?,
                },
            ));
        }
        let names_at = raw.get(shstrndx).map(|(_, s)| s.offset as usize);
        let sections = raw
            .into_iter()
            .map(|(name, mut s)| {
                if let Some(base) = names_at {
                    s.name = String::from_utf8_lossy(cstr(data, base + name as usize)).into();
                }
                s
            })
            .collect();
        Ok(Self {
            data,
            sections,
            segments,
        })
    }

    fn section_bytes(&self, s: &Section) -> Result<&'a [u8], ElfError> {
        self.data
            .get(s.offset as usize..(s.offset + s.size) as usize)
            .ok_or_else(|| bad(format!("section {} lies past the end of the file", s.name)))
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The file offset of a virtual address, through the loadable segments.
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        self.segments
            .iter()
            .filter(|p| p.kind == PT_LOAD)
            .find(|p| vaddr >= p.vaddr && vaddr < p.vaddr + p.filesz)
            .map(|p| vaddr - p.vaddr + p.offset)
            .or_else(|| {
                // Relocatable objects have no segments; sections place the code.
                self.sections
                    .iter()
                    .find(|s| s.addr != 0 && vaddr >= s.addr && vaddr < s.addr + s.size)
                    .map(|s| vaddr - s.addr + s.offset)
            })
    }

    /// The address of function `name` from `.symtab`, else `.dynsym` (defined symbols only).
    pub fn function(&self, name: &str) -> Result<Option<u64>, ElfError> {
        for kind in [SHT_SYMTAB, SHT_DYNSYM] {
            for table in self.sections.iter().filter(|s| s.kind == kind) {
                let strings = self
                    .sections
                    .get(table.link as usize)
                    .ok_or_else(|| bad(format!("{} has no string table", table.name)))?;
                let strings = self.section_bytes(strings)?;
                let syms = self.section_bytes(table)?;
                for sym in syms.chunks_exact(24) {
                    let info = sym[4];
                    let shndx = u16::from_le_bytes([sym[6], sym[7]]);
                    let value = u64::from_le_bytes(sym[8..16].try_into().unwrap());
                    if shndx == 0 || value == 0 || !matches!(info & 0xf, STT_FUNC | STT_GNU_IFUNC) {
                        continue;
                    }
                    let at = u32::from_le_bytes(sym[0..4].try_into().unwrap()) as usize;
                    if cstr(strings, at) == name.as_bytes() {
                        return Ok(Some(value));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Every defined function symbol with a size, from `.symtab` and `.dynsym`:
    /// (address, size, name), sorted by address (stack symbolisation).
    pub fn functions(&self) -> Result<Vec<(u64, u64, String)>, ElfError> {
        let mut out = Vec::new();
        for kind in [SHT_SYMTAB, SHT_DYNSYM] {
            for table in self.sections.iter().filter(|s| s.kind == kind) {
                let strings = self
                    .sections
                    .get(table.link as usize)
                    .ok_or_else(|| bad(format!("{} has no string table", table.name)))?;
                let strings = self.section_bytes(strings)?;
                for sym in self.section_bytes(table)?.chunks_exact(24) {
                    let shndx = u16::from_le_bytes([sym[6], sym[7]]);
                    let value = u64::from_le_bytes(sym[8..16].try_into().unwrap());
                    let size = u64::from_le_bytes(sym[16..24].try_into().unwrap());
                    if shndx == 0 || value == 0 || size == 0 {
                        continue;
                    }
                    if !matches!(sym[4] & 0xf, STT_FUNC | STT_GNU_IFUNC) {
                        continue;
                    }
                    let at = u32::from_le_bytes(sym[0..4].try_into().unwrap()) as usize;
                    let name = String::from_utf8_lossy(cstr(strings, at)).into_owned();
                    out.push((value, size, name));
                }
            }
        }
        out.sort();
        out.dedup_by_key(|f| f.0);
        Ok(out)
    }

    /// Every note in `SHT_NOTE` sections named `section`.
    pub fn notes(&self, section: &str) -> Result<Vec<Note<'a>>, ElfError> {
        let mut out = Vec::new();
        for s in self
            .sections
            .iter()
            .filter(|s| s.kind == SHT_NOTE && s.name == section)
        {
            let d = self.section_bytes(s)?;
            let mut at = 0;
            while at + 12 <= d.len() {
                let namesz = u32_at(d, at)? as usize;
                let descsz = u32_at(d, at + 4)? as usize;
                let kind = u32_at(d, at + 8)?;
                let name_at = at + 12;
                let desc_at = name_at + namesz.div_ceil(4) * 4;
                let end = desc_at + descsz.div_ceil(4) * 4;
                let desc = d
                    .get(desc_at..desc_at + descsz)
                    .ok_or_else(|| bad(format!("note in {section} runs past its section")))?;
                let owner = String::from_utf8_lossy(cstr(d, name_at).get(..).unwrap_or_default());
                out.push((owner.into_owned(), kind, desc));
                at = end;
            }
        }
        Ok(out)
    }
}

/// The GNU build ID of an ELF image (`.note.gnu.build-id`, NT_GNU_BUILD_ID), if it has one.
pub fn build_id(data: &[u8]) -> Option<Vec<u8>> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let elf = Elf::parse(data).ok()?;
    elf.notes(".note.gnu.build-id")
        .ok()?
        .into_iter()
        .find(|(owner, kind, _)| owner == "GNU" && *kind == NT_GNU_BUILD_ID)
        .map(|(_, _, desc)| desc.to_vec())
}

/// `sha256` of the bytes as lowercase hex (binaryDigests).
pub fn sha256_hex(data: &[u8]) -> String {
    digest_hex("sha256", data)
}

/// `sha1`, `sha384` or `sha512` of the bytes as lowercase hex.
pub fn digest_hex(algorithm: &str, data: &[u8]) -> String {
    use std::fmt::Write;
    let algo = match algorithm {
        "sha1" => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        "sha384" => &ring::digest::SHA384,
        "sha512" => &ring::digest::SHA512,
        _ => &ring::digest::SHA256,
    };
    let digest = ring::digest::digest(algo, data);
    digest.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_test_binary_has_its_symbols() {
        // The unit-test executable is an ELF file with a .symtab: `main` is in it.
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let elf = Elf::parse(&exe).unwrap();
        let main = elf.function("main").unwrap().expect("main in .symtab");
        let off = elf
            .file_offset(main)
            .expect("main lies in a loadable segment");
        assert!(off < exe.len() as u64);
        assert_eq!(elf.function("no_such_function_anywhere").unwrap(), None);
    }

    #[test]
    fn libc_dynamic_symbols_resolve() {
        // Debian's libc is stripped of .symtab: its functions come from .dynsym.
        let path = [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("libc.so.6");
        let data = std::fs::read(path).unwrap();
        let elf = Elf::parse(&data).unwrap();
        assert!(elf.section(".dynsym").is_some());
        let getpid = elf.function("getpid").unwrap().expect("getpid in .dynsym");
        assert!(elf.file_offset(getpid).is_some());
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Elf::parse(b"#!/bin/sh\n").is_err());
        assert!(Elf::parse(b"\x7fELF\x02\x01").is_err());
    }

    #[test]
    fn sha256_of_known_text() {
        // `printf abc | sha256sum`
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
