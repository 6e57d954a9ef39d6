//! Just enough ELF (64-bit, little-endian: x86_64) to place uprobes: function symbols from
//! `.symtab` and `.dynsym` turned into file offsets, and the SystemTap SDT notes
//! (`.note.stapsdt`) that USDT probes are. Pure: works on bytes.
//!
//! The bytes are a workload's (a uprobe's target, a mapped library, a stack's module), so
//! every offset, size and count read from them is checked before use: a malformed file is an
//! [`ElfError`], never a panic, and nothing is allocated beyond what the file's size can hold.

/// An ELF file that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ElfError(pub String);

fn bad(reason: impl Into<String>) -> ElfError {
    ElfError(reason.into())
}

/// A section header. [`Elf::parse`] refuses headers where `offset + size` or `addr + size`
/// overflows, so callers may add them.
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
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: u64 = 56;
const SHDR_SIZE: u64 = 64;
const SYM_SIZE: usize = 24;
/// Section names are only compared with the few we look up; a longer one is cut so that
/// thousands of headers pointing at one huge unterminated string cannot cost gigabytes.
const MAX_SECTION_NAME: usize = 512;

/// `len` bytes at `off`, or `None` when any of it lies outside `d` (or the sum overflows).
fn slice_at(d: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(off).ok()?;
    let end = usize::try_from(off.checked_add(len)?).ok()?;
    d.get(start..end)
}

fn array_at<const N: usize>(d: &[u8], off: u64) -> Result<[u8; N], ElfError> {
    slice_at(d, off, N as u64)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("truncated ELF file"))
}

fn u16_at(d: &[u8], off: u64) -> Result<u16, ElfError> {
    array_at(d, off).map(u16::from_le_bytes)
}

fn u32_at(d: &[u8], off: u64) -> Result<u32, ElfError> {
    array_at(d, off).map(u32::from_le_bytes)
}

fn u64_at(d: &[u8], off: u64) -> Result<u64, ElfError> {
    array_at(d, off).map(u64::from_le_bytes)
}

/// The NUL-terminated string at `off` (to the end of `d` when unterminated; empty when `off`
/// is past it).
fn cstr(d: &[u8], off: u64) -> &[u8] {
    let tail = usize::try_from(off)
        .ok()
        .and_then(|o| d.get(o..))
        .unwrap_or_default();
    tail.split(|&b| b == 0).next().unwrap_or_default()
}

/// `count` table entries of `entsize` bytes from `off`, checked to lie in the file before
/// anything is allocated for them.
fn table(
    d: &[u8],
    what: &str,
    off: u64,
    count: u16,
    entsize: u16,
    min_entsize: u64,
) -> Result<impl Iterator<Item = u64> + use<>, ElfError> {
    let entsize = u64::from(entsize);
    if count > 0 && entsize < min_entsize {
        return Err(bad(format!(
            "{what} entries of {entsize} bytes are too small"
        )));
    }
    let total = u64::from(count) * entsize;
    slice_at(d, off, total).ok_or_else(|| bad(format!("{what} lie past the end of the file")))?;
    Ok((0..u64::from(count)).map(move |i| off + i * entsize))
}

/// A symbol table's entries and its string table.
type SymbolTable<'a> = (&'a [u8], &'a [u8]);

/// A symbol table entry's fields: (name offset, info, section index, value, size).
fn symbol(sym: &[u8]) -> Option<(u64, u8, u16, u64, u64)> {
    let name = u32_at(sym, 0).ok()?;
    let info = *sym.get(4)?;
    let shndx = u16_at(sym, 6).ok()?;
    let value = u64_at(sym, 8).ok()?;
    let size = u64_at(sym, 16).ok()?;
    Some((u64::from(name), info, shndx, value, size))
}

impl<'a> Elf<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, ElfError> {
        if data.get(..4) != Some(b"\x7fELF") {
            return Err(bad("not an ELF file"));
        }
        if data.len() < EHDR_SIZE {
            return Err(bad("truncated ELF header"));
        }
        if data.get(4..6) != Some(&[2, 1]) {
            return Err(bad("not a 64-bit little-endian ELF file"));
        }
        let phoff = u64_at(data, 32)?;
        let shoff = u64_at(data, 40)?;
        let phentsize = u16_at(data, 54)?;
        let phnum = u16_at(data, 56)?;
        let shentsize = u16_at(data, 58)?;
        let shnum = u16_at(data, 60)?;
        let shstrndx = u16_at(data, 62)?;
        let segments = table(data, "program headers", phoff, phnum, phentsize, PHDR_SIZE)?
            .map(|p| {
                Ok(Segment {
                    kind: u32_at(data, p)?,
                    offset: u64_at(data, p + 8)?,
                    vaddr: u64_at(data, p + 16)?,
                    filesz: u64_at(data, p + 32)?,
                })
            })
            .collect::<Result<Vec<_>, ElfError>>()?;
        let raw = table(data, "section headers", shoff, shnum, shentsize, SHDR_SIZE)?
            .enumerate()
            .map(|(i, s)| {
                let section = Section {
                    name: String::new(),
                    kind: u32_at(data, s + 4)?,
                    addr: u64_at(data, s + 16)?,
                    offset: u64_at(data, s + 24)?,
                    size: u64_at(data, s + 32)?,
                    link: u32_at(data, s + 40)?,
                };
                if section.offset.checked_add(section.size).is_none()
                    || section.addr.checked_add(section.size).is_none()
                {
                    return Err(bad(format!(
                        "section header {i}: its size overflows its offset or address"
                    )));
                }
                Ok((u32_at(data, s)?, section))
            })
            .collect::<Result<Vec<_>, ElfError>>()?;
        // Names outside the file (or a missing table) leave sections unnamed, as tools do.
        let names = raw
            .get(usize::from(shstrndx))
            .and_then(|(_, s)| slice_at(data, s.offset, s.size))
            .unwrap_or_default();
        let sections = raw
            .into_iter()
            .map(|(name, mut s)| {
                let name = cstr(names, u64::from(name));
                let name = name.get(..MAX_SECTION_NAME).unwrap_or(name);
                s.name = String::from_utf8_lossy(name).into_owned();
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
        slice_at(self.data, s.offset, s.size)
            .ok_or_else(|| bad(format!("section {} lies past the end of the file", s.name)))
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The file offset of a virtual address, through the loadable segments.
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        let within = |start: u64, size: u64, offset: u64| {
            let delta = vaddr.checked_sub(start)?;
            if delta < size {
                delta.checked_add(offset)
            } else {
                None
            }
        };
        self.segments
            .iter()
            .filter(|p| p.kind == PT_LOAD)
            .find_map(|p| within(p.vaddr, p.filesz, p.offset))
            .or_else(|| {
                // Relocatable objects have no segments; sections place the code.
                self.sections
                    .iter()
                    .filter(|s| s.addr != 0)
                    .find_map(|s| within(s.addr, s.size, s.offset))
            })
    }

    /// Each symbol table (`.symtab` first, then `.dynsym`) with its string table. Headers
    /// may all point at the same bytes: the tables together may not be larger than the file,
    /// which bounds the work of a walk to the file's size.
    fn symbol_tables(&self) -> Result<Vec<SymbolTable<'a>>, ElfError> {
        let mut out = Vec::new();
        let mut total = 0u64;
        for kind in [SHT_SYMTAB, SHT_DYNSYM] {
            for table in self.sections.iter().filter(|s| s.kind == kind) {
                let strings = usize::try_from(table.link)
                    .ok()
                    .and_then(|i| self.sections.get(i))
                    .ok_or_else(|| bad(format!("{} has no string table", table.name)))?;
                total = total.saturating_add(table.size);
                if total > self.data.len() as u64 {
                    return Err(bad("symbol tables are larger than the file"));
                }
                out.push((self.section_bytes(table)?, self.section_bytes(strings)?));
            }
        }
        Ok(out)
    }

    /// The address of function `name` from `.symtab`, else `.dynsym` (defined symbols only).
    pub fn function(&self, name: &str) -> Result<Option<u64>, ElfError> {
        for (syms, strings) in self.symbol_tables()? {
            for sym in syms.chunks_exact(SYM_SIZE) {
                let Some((at, info, shndx, value, _)) = symbol(sym) else {
                    continue;
                };
                if shndx == 0 || value == 0 || !matches!(info & 0xf, STT_FUNC | STT_GNU_IFUNC) {
                    continue;
                }
                if cstr(strings, at) == name.as_bytes() {
                    return Ok(Some(value));
                }
            }
        }
        Ok(None)
    }

    /// Every defined function symbol with a size, from `.symtab` and `.dynsym`:
    /// (address, size, name), sorted by address (stack symbolisation). `address + size`
    /// never overflows (symbols where it would are left out).
    pub fn functions(&self) -> Result<Vec<(u64, u64, String)>, ElfError> {
        let mut out = Vec::new();
        for (syms, strings) in self.symbol_tables()? {
            for sym in syms.chunks_exact(SYM_SIZE) {
                let Some((at, info, shndx, value, size)) = symbol(sym) else {
                    continue;
                };
                if shndx == 0 || value == 0 || size == 0 || value.checked_add(size).is_none() {
                    continue;
                }
                if !matches!(info & 0xf, STT_FUNC | STT_GNU_IFUNC) {
                    continue;
                }
                let name = String::from_utf8_lossy(cstr(strings, at)).into_owned();
                out.push((value, size, name));
            }
        }
        out.sort();
        out.dedup_by_key(|f| f.0);
        Ok(out)
    }

    /// Every note in `SHT_NOTE` sections named `section`.
    pub fn notes(&self, section: &str) -> Result<Vec<Note<'a>>, ElfError> {
        let past = || bad(format!("note in {section} runs past its section"));
        let mut out = Vec::new();
        let mut total = 0u64;
        for s in self
            .sections
            .iter()
            .filter(|s| s.kind == SHT_NOTE && s.name == section)
        {
            // As for symbol tables: sections sharing bytes must not multiply the notes.
            total = total.saturating_add(s.size);
            if total > self.data.len() as u64 {
                return Err(bad(format!("{section} sections are larger than the file")));
            }
            let d = self.section_bytes(s)?;
            let mut at = 0u64;
            while at + 12 <= d.len() as u64 {
                let namesz = u64::from(u32_at(d, at)?);
                let descsz = u64::from(u32_at(d, at + 4)?);
                let kind = u32_at(d, at + 8)?;
                let name_at = at + 12;
                // Sizes are u32 and offsets within a slice: these sums cannot overflow u64.
                let desc_at = name_at + namesz.div_ceil(4) * 4;
                let end = desc_at + descsz.div_ceil(4) * 4;
                let name = slice_at(d, name_at, namesz).ok_or_else(past)?;
                let desc = slice_at(d, desc_at, descsz).ok_or_else(past)?;
                let owner = String::from_utf8_lossy(cstr(name, 0));
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
    let algo = match algorithm {
        "sha1" => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        "sha384" => &ring::digest::SHA384,
        "sha512" => &ring::digest::SHA512,
        _ => &ring::digest::SHA256,
    };
    let digest = ring::digest::digest(algo, data);
    vigil_hex::encode(digest.as_ref())
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
    fn a_four_byte_file_is_an_error_not_a_panic() {
        // A uprobe `path` holding just the magic once panicked the agent (index 4 of 4).
        assert_eq!(
            Elf::parse(b"\x7fELF").err(),
            Some(bad("truncated ELF header"))
        );
        assert_eq!(build_id(b"\x7fELF"), None);
    }

    const BODY_AT: u64 = EHDR_SIZE as u64;

    /// A minimal ELF64 image: the header, `body` at offset 64, `.shstrtab`, then the section
    /// headers (a null one, `sections` as (name, kind, addr, offset, size, link), the names).
    fn image(body: &[u8], sections: &[(&str, u32, u64, u64, u64, u32)]) -> Vec<u8> {
        let mut names = vec![0u8];
        let mut name_at = Vec::new();
        for (name, ..) in sections.iter().chain([&(".shstrtab", 3, 0, 0, 0, 0)]) {
            name_at.push(names.len() as u32);
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        let names_off = BODY_AT + body.len() as u64;
        let shoff = (names_off + names.len() as u64).next_multiple_of(8);
        let mut out = vec![0u8; EHDR_SIZE];
        out[..6].copy_from_slice(b"\x7fELF\x02\x01");
        out[40..48].copy_from_slice(&shoff.to_le_bytes());
        out[58..60].copy_from_slice(&64u16.to_le_bytes());
        out[60..62].copy_from_slice(&(sections.len() as u16 + 2).to_le_bytes());
        out[62..64].copy_from_slice(&(sections.len() as u16 + 1).to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&names);
        out.resize(shoff as usize, 0);
        let header =
            |out: &mut Vec<u8>, name: u32, kind: u32, addr: u64, off: u64, size: u64, link: u32| {
                let mut h = [0u8; 64];
                h[0..4].copy_from_slice(&name.to_le_bytes());
                h[4..8].copy_from_slice(&kind.to_le_bytes());
                h[16..24].copy_from_slice(&addr.to_le_bytes());
                h[24..32].copy_from_slice(&off.to_le_bytes());
                h[32..40].copy_from_slice(&size.to_le_bytes());
                h[40..44].copy_from_slice(&link.to_le_bytes());
                out.extend_from_slice(&h);
            };
        header(&mut out, 0, 0, 0, 0, 0, 0);
        for (i, &(_, kind, addr, off, size, link)) in sections.iter().enumerate() {
            header(&mut out, name_at[i], kind, addr, off, size, link);
        }
        let last = name_at[sections.len()];
        header(&mut out, last, 3, 0, names_off, names.len() as u64, 0);
        out
    }

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

    #[test]
    fn the_builder_makes_a_file_we_read() {
        let body = note(b"GNU", 3, &[1, 2, 3, 4, 5]);
        let len = body.len() as u64;
        let data = image(
            &body,
            &[(".note.gnu.build-id", SHT_NOTE, 0, BODY_AT, len, 0)],
        );
        assert_eq!(build_id(&data), Some(vec![1, 2, 3, 4, 5]));
        let elf = Elf::parse(&data).unwrap();
        assert_eq!(elf.sections.len(), 3);
        assert_eq!(elf.sections[2].name, ".shstrtab");
    }

    #[test]
    fn every_truncation_of_a_valid_file_is_an_error_or_fine() {
        let body = note(b"GNU", 3, &[7; 20]);
        let len = body.len() as u64;
        let data = image(
            &body,
            &[(".note.gnu.build-id", SHT_NOTE, 0, BODY_AT, len, 0)],
        );
        for cut in 0..data.len() {
            assert!(Elf::parse(&data[..cut]).is_err(), "cut at {cut}");
            assert_eq!(build_id(&data[..cut]), None);
        }
    }

    fn set(data: &mut [u8], at: usize, bytes: &[u8]) {
        data[at..at + bytes.len()].copy_from_slice(bytes);
    }

    #[test]
    fn absurd_header_tables_are_refused_before_allocating() {
        let base = image(b"", &[]);
        // 65535 section headers claimed by a file of a hundred bytes.
        let mut many = base[..100].to_vec();
        set(&mut many, 40, &64u64.to_le_bytes());
        set(&mut many, 60, &u16::MAX.to_le_bytes());
        assert!(Elf::parse(&many).is_err());
        // Offsets at the end of the address space: offset + size overflows.
        for field in [32, 40] {
            let mut d = base.clone();
            set(&mut d, field, &u64::MAX.to_le_bytes());
            set(&mut d, 56, &1u16.to_le_bytes());
            set(&mut d, 54, &56u16.to_le_bytes());
            assert!(Elf::parse(&d).is_err(), "field {field}");
        }
        // Entries too small to hold what is read from them.
        let mut small = base;
        set(&mut small, 58, &8u16.to_le_bytes());
        assert!(Elf::parse(&small).is_err());
    }

    #[test]
    fn section_sizes_that_overflow_are_refused() {
        let overflowing = image(b"", &[("x", 1, 0, u64::MAX, 2, 0)]);
        assert!(Elf::parse(&overflowing).is_err());
        let high = image(b"", &[("x", 1, u64::MAX - 1, BODY_AT, 8, 0)]);
        assert!(Elf::parse(&high).is_err());
        // In range but past the end: parsed, refused when read.
        let past = image(b"", &[(".note.x", SHT_NOTE, 0, 1 << 40, 1 << 20, 0)]);
        let elf = Elf::parse(&past).unwrap();
        assert!(elf.notes(".note.x").is_err());
        assert_eq!(elf.file_offset(u64::MAX), None);
    }

    #[test]
    fn a_missing_name_table_leaves_sections_unnamed() {
        let mut d = image(b"", &[("x", 1, 0, 0, 0, 0)]);
        set(&mut d, 62, &500u16.to_le_bytes());
        assert!(
            Elf::parse(&d)
                .unwrap()
                .sections
                .iter()
                .all(|s| s.name.is_empty())
        );
        // A name offset far past its table.
        let mut d = image(b"", &[("x", 1, 0, 0, 0, 0)]);
        let shoff = u64_at(&d, 40).unwrap() as usize;
        set(&mut d, shoff + 64, &u32::MAX.to_le_bytes());
        assert_eq!(Elf::parse(&d).unwrap().sections[1].name, "");
    }

    #[test]
    fn notes_running_past_their_section_are_errors() {
        for (namesz, descsz) in [(u32::MAX, 0), (4, u32::MAX), (4, 100), (u32::MAX - 2, 4)] {
            let mut body = Vec::new();
            body.extend_from_slice(&namesz.to_le_bytes());
            body.extend_from_slice(&descsz.to_le_bytes());
            body.extend_from_slice(&3u32.to_le_bytes());
            body.extend_from_slice(b"GNU\0");
            let len = body.len() as u64;
            let data = image(
                &body,
                &[(".note.gnu.build-id", SHT_NOTE, 0, BODY_AT, len, 0)],
            );
            let elf = Elf::parse(&data).unwrap();
            assert!(
                elf.notes(".note.gnu.build-id").is_err(),
                "{namesz} {descsz}"
            );
            assert_eq!(build_id(&data), None);
        }
    }

    #[test]
    fn headers_sharing_one_table_cannot_multiply_the_work() {
        let mut body = vec![0u8; 24 * 40];
        body[4] = STT_FUNC;
        body[6] = 1;
        body[8] = 1;
        let len = body.len() as u64;
        let one = ("s", SHT_SYMTAB, 0, BODY_AT, len, 0);
        let shared: Vec<_> = std::iter::repeat_n(one, 50).collect();
        let data = image(&body, &shared);
        let elf = Elf::parse(&data).unwrap();
        assert!(elf.functions().is_err());
        assert!(elf.function("f").is_err());
        let notes = vec![(".n", SHT_NOTE, 0, BODY_AT, len, 0); 50];
        let data = image(&body, &notes);
        assert!(Elf::parse(&data).unwrap().notes(".n").is_err());
    }

    #[test]
    fn symbols_whose_end_overflows_are_left_out() {
        let mut body = vec![0u8; 48];
        for (i, value) in [(0, u64::MAX - 1), (1, 0x1000)] {
            let s = &mut body[i * 24..i * 24 + 24];
            s[4] = STT_FUNC;
            s[6] = 1;
            s[8..16].copy_from_slice(&value.to_le_bytes());
            s[16..24].copy_from_slice(&16u64.to_le_bytes());
        }
        let data = image(&body, &[("s", SHT_SYMTAB, 0, BODY_AT, 48, 0)]);
        let functions = Elf::parse(&data).unwrap().functions().unwrap();
        assert_eq!(functions.len(), 1);
        assert_eq!(functions[0].0, 0x1000);
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
