//! User stack addresses (Post `userStackTrace`) to Tetragon's `user_stack_trace` entries:
//! the mapping of each address from `/proc/PID/maps` gives the module and the offset in it;
//! the module's ELF symbols (`.symtab`, `.dynsym`) give the function. As in Tetragon this runs
//! when the event arrives: a process that has already exited yields addresses only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::elf::Elf;
use crate::mapped_file::{self, FileKey, Limits};

/// One symbolised frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    pub address: u64,
    /// Offset of the address in its module's file.
    pub offset: u64,
    /// Function name; empty when the module has no symbol there (stripped).
    pub symbol: String,
    /// Path of the mapped file; empty for anonymous memory.
    pub module: String,
}

/// One line of /proc/PID/maps: (start, end, file offset, path). Lines that do not parse, or
/// whose range is reversed or would overflow `offset + (end - start)`, are left out, so a
/// caller may compute `address - start + offset` for any address in the range.
pub fn parse_maps(text: &str) -> Vec<(u64, u64, u64, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (range, _perms, off) = (f.next()?, f.next()?, f.next()?);
            let (_dev, _ino) = (f.next()?, f.next()?);
            let path = f.collect::<Vec<_>>().join(" ");
            let (a, b) = range.split_once('-')?;
            let (start, end) = (hex(a)?, hex(b)?);
            let off = hex(off)?;
            off.checked_add(end.checked_sub(start)?)?;
            Some((start, end, off, path))
        })
        .collect()
}

/// A hex field of a maps line; `from_str_radix` alone would also take a sign.
fn hex(field: &str) -> Option<u64> {
    if field.bytes().all(|b| b.is_ascii_hexdigit()) {
        u64::from_str_radix(field, 16).ok()
    } else {
        None
    }
}

/// Function symbols of a module, with what turns file offsets into their addresses.
struct Symbols {
    /// (file offset start, file offset end, address) of each allocated section.
    segments: Vec<(u64, u64, u64)>,
    functions: Vec<(u64, u64, String)>,
}

impl Symbols {
    fn parse(data: &[u8]) -> Option<Symbols> {
        let elf = Elf::parse(data).ok()?;
        let functions = elf.functions().ok()?;
        // Allocated sections place file bytes at their addresses.
        let segments = elf
            .sections
            .iter()
            .filter(|s| s.addr != 0 && s.size != 0)
            .filter_map(|s| Some((s.offset, s.offset.checked_add(s.size)?, s.addr)))
            .collect();
        Some(Symbols {
            segments,
            functions,
        })
    }

    fn symbol_at_offset(&self, offset: u64) -> Option<&str> {
        let &(start, _, vaddr) = self
            .segments
            .iter()
            .find(|(s, e, _)| offset >= *s && offset < *e)?;
        let addr = offset - start + vaddr;
        let i = self.functions.partition_point(|f| f.0 <= addr);
        let f = self.functions.get(i.checked_sub(1)?)?;
        (addr < f.0 + f.1).then_some(f.2.as_str())
    }
}

/// Parsed modules, by file identity: most stacks go through the same few files.
type SymbolCache = Mutex<HashMap<FileKey, Option<Arc<Symbols>>>>;

fn cache() -> &'static SymbolCache {
    static CACHE: OnceLock<SymbolCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The symbols of the file process `pid` maps at `[start, end)` (see [`crate::mapped_file`]:
/// the mapped file itself, regular, size-capped, read off this thread with a deadline).
fn symbols_of(
    proc_root: &str,
    pid: u32,
    (start, end): (u64, u64),
    path: &str,
    limits: Limits,
) -> Option<Arc<Symbols>> {
    let root = proc_root.to_string();
    mapped_file::with_deadline(path, limits.timeout, move || {
        let (mut f, key) = mapped_file::open_mapping(&root, pid, start, end, limits.max_bytes)?;
        if let Some(s) = cache().lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(s.clone());
        }
        let s = Symbols::parse(&mapped_file::read_file(&mut f, limits.max_bytes)?).map(Arc::new);
        let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
        if c.len() >= 64 {
            // A bound, not a policy: start over rather than grow without end.
            c.clear();
        }
        c.insert(key, s.clone());
        Ok(s)
    })
    .ok()
    .flatten()
}

/// Symbolises `addrs` of process `pid` (procfs root `proc_root`, `/proc` on the host);
/// nothing when the process has exited.
pub fn symbolize(proc_root: &str, pid: u32, addrs: &[u64]) -> Vec<Frame> {
    symbolize_within(proc_root, pid, addrs, Limits::default())
}

/// [`symbolize`] with other read limits (a debug test binary is larger than the default cap).
fn symbolize_within(proc_root: &str, pid: u32, addrs: &[u64], limits: Limits) -> Vec<Frame> {
    let Ok(maps) = mapped_file::read_maps(proc_root, pid) else {
        // The process has gone: nothing to say about its addresses.
        return Vec::new();
    };
    let maps = parse_maps(&maps);
    addrs
        .iter()
        .map(|&address| {
            let Some((start, end, off, path)) = maps
                .iter()
                .find(|(s, e, _, _)| address >= *s && address < *e)
            else {
                return Frame {
                    address,
                    ..Default::default()
                };
            };
            let offset = address - start + off;
            let symbol = if path.starts_with('/') {
                symbols_of(proc_root, pid, (*start, *end), path, limits)
                    .and_then(|s| s.symbol_at_offset(offset).map(str::to_string))
                    .unwrap_or_default()
            } else {
                String::new()
            };
            Frame {
                address,
                offset,
                symbol,
                module: path.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_give_range_offset_and_path() {
        let text = "55d0c0a00000-55d0c0a21000 r-xp 00002000 08:01 1234 /usr/bin/my prog\n\
                    7ffd1000-7ffd2000 rw-p 00000000 00:00 0 [stack]\n\
                    7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n";
        let maps = parse_maps(text);
        assert_eq!(
            maps[0],
            (
                0x55d0c0a00000,
                0x55d0c0a21000,
                0x2000,
                "/usr/bin/my prog".into()
            )
        );
        assert_eq!(maps[1].3, "[stack]");
        assert_eq!(maps[2].3, "");
    }

    #[test]
    fn maps_lines_that_would_overflow_are_left_out() {
        let text = "2000-1000 r-xp 0 08:01 1 /reversed\n\
                    0-ffffffffffffffff r-xp 2 08:01 1 /offset-overflows\n\
                    +10-20 r-xp 0 08:01 1 /signed\n\
                    10-20 r-xp -0 08:01 1 /signed-offset\n\
                    -\n\
                    10-20 r-xp 0 08:01\n\
                    10-1f r-xp fffffffffffffff0 08:01 1 /fits\n";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 1, "{maps:?}");
        assert_eq!(maps[0].3, "/fits");
    }

    /// This test's own function, found through its own maps and symbols.
    #[test]
    fn own_function_is_found_by_address() {
        #[inline(never)]
        #[unsafe(no_mangle)]
        extern "C" fn vigil_symbolize_probe() -> u64 {
            std::hint::black_box(7)
        }
        let addr = vigil_symbolize_probe as *const () as usize as u64 + 1;
        // This debug test binary is larger than the agent's 32 MiB cap: read it all.
        let limits = Limits {
            max_bytes: 1 << 30,
            timeout: std::time::Duration::from_secs(30),
        };
        let frames = symbolize_within("/proc", std::process::id(), &[addr, 8], limits);
        assert_eq!(frames[0].symbol, "vigil_symbolize_probe");
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(frames[0].module, exe.display().to_string());
        assert!(frames[0].offset > 0 && frames[0].offset < addr);
        // An address in no mapping keeps only the address.
        assert_eq!(
            frames[1],
            Frame {
                address: 8,
                ..Default::default()
            }
        );
    }
}
