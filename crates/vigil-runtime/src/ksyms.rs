//! Kernel stack addresses (Post `kernelStackTrace`) to Tetragon's `kernel_stack_trace`
//! entries through `/proc/kallsyms`. The table is read on the first kernel stack (not at
//! start: it is megabytes, and most agents never need it) and kept.

use std::sync::OnceLock;

use crate::symbolize::Frame;

/// Text symbols sorted by address: (address, name, module or "").
struct Table(Vec<(u64, String, String)>);

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        Table(parse(
            &std::fs::read_to_string("/proc/kallsyms").unwrap_or_default(),
        ))
    })
}

/// `/proc/kallsyms` lines (`addr type name [module]`), text symbols only, sorted.
fn parse(text: &str) -> Vec<(u64, String, String)> {
    let mut out: Vec<_> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let addr = u64::from_str_radix(f.next()?, 16).ok()?;
            let kind = f.next()?;
            let name = f.next()?;
            let module = f.next().map_or("", |m| m.trim_matches(['[', ']']));
            (addr != 0 && matches!(kind, "t" | "T"))
                .then(|| (addr, name.to_string(), module.to_string()))
        })
        .collect();
    out.sort_by_key(|(a, _, _)| *a);
    out
}

fn lookup(t: &[(u64, String, String)], address: u64) -> Frame {
    let i = t.partition_point(|(a, _, _)| *a <= address);
    match i.checked_sub(1).map(|i| &t[i]) {
        Some((start, name, module)) => Frame {
            address,
            offset: address - start,
            symbol: name.clone(),
            module: module.clone(),
        },
        None => Frame {
            address,
            ..Frame::default()
        },
    }
}

/// The symbol and offset of each kernel address.
pub fn symbolize(addresses: &[u64]) -> Vec<Frame> {
    let t = &table().0;
    addresses.iter().map(|&a| lookup(t, a)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_resolve_to_the_preceding_text_symbol() {
        let t = parse(
            "ffffffff81000000 T _stext\n\
             ffffffff81200000 t security_file_open\n\
             ffffffff81200400 D some_data\n\
             ffffffffc0001000 t vfat_lookup\t[vfat]\n\
             0000000000000000 T hidden\n",
        );
        assert_eq!(t.len(), 3);
        let f = lookup(&t, 0xffffffff81200010);
        assert_eq!((f.symbol.as_str(), f.offset), ("security_file_open", 0x10));
        assert_eq!(lookup(&t, 0xffffffffc0001004).module, "vfat");
        assert_eq!(lookup(&t, 0x10).symbol, "");
    }
}
