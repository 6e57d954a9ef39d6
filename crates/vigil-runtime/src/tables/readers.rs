//! Argument readers beyond integers and strings (engine kinds `VIGIL_ARG_EXT_*`,
//! bpf/include/vigil_engine_args.h): fd, char_iovec, const_buf, char_buf with returnCopy,
//! sockaddr (and its operators, bpf/include/vigil_engine_sockaddr.h).

use vigil_bpf::abi::*;
use vigil_policy::compile::ArgReader;

use crate::sock::cidr_key;
use std::sync::OnceLock;

use vigil_policy::btf::{Btf, Leaf};
use vigil_policy::types::{ArgType, Operator};

use super::process::char_buf_size;
use super::values::parse_int;
use super::{HookArg, Ids, PolicyTables, Unsupported, unsupported};

/// Tetragon bounds a const_buf to 1023 bytes (`argm & 0x3ff`).
const CONST_BUF_MAX: usize = 1023;

/// Checks argument `a` (engine kind `kind`, from its type) at `slot` and fills what its
/// reader needs in `config`; returns the kind the engine runs (returnCopy changes it).
pub(crate) fn ext_reader(
    path: &str,
    a: &ArgReader,
    kind: u8,
    slot: usize,
    kernel: bool,
    config: &mut vigil_hook_cfg,
) -> Result<u8, Unsupported> {
    let k = u32::from(kind);
    if a.read_at_return && k != VIGIL_ARG_BUF {
        return Err(unsupported(
            path,
            format!(
                "returnCopy applies to char_buf arguments, not {}",
                a.arg_type
            ),
        ));
    }
    match k {
        VIGIL_ARG_BUF if a.read_at_return => {
            if kernel {
                return Err(unsupported(
                    path,
                    "returnCopy runs at the paired syscall exit: kernel-function hooks do not \
                     support it yet",
                ));
            }
            Ok(VIGIL_ARG_BUF_RET as u8)
        }
        // maxData: up to VIGIL_DATA_MAX bytes, sent ahead of the event in chunks.
        VIGIL_ARG_BUF if a.max_bytes > vigil_policy::limits::CHAR_BUF_DEFAULT_BYTES.max => {
            config.size_index[slot] = char_buf_size(path, a)?;
            Ok(VIGIL_ARG_BUF_DATA as u8)
        }
        VIGIL_ARG_BUF | VIGIL_ARG_IOVEC => {
            config.size_index[slot] = char_buf_size(path, a)?;
            Ok(kind)
        }
        VIGIL_ARG_CONST_BUF => match a.max_bytes {
            0 => Err(unsupported(
                path,
                "const_buf needs its size in bytes: `size`, or sizeArgIndex holding the count \
                 (Tetragon's reading)",
            )),
            n if n > CONST_BUF_MAX => Err(unsupported(
                path,
                format!("const_buf of {n} bytes: at most {CONST_BUF_MAX}"),
            )),
            n => {
                config.const_size[slot] = n as u16;
                Ok(kind)
            }
        },
        _ => Ok(kind),
    }
}

/// Address families by Tetragon's names (values of `Family`, names in `sockaddr_arg`).
const FAMILIES: &[(&str, i64)] = &[
    ("AF_UNSPEC", 0),
    ("AF_UNIX", 1),
    ("AF_LOCAL", 1),
    ("AF_INET", 2),
    ("AF_INET6", 10),
    ("AF_NETLINK", 16),
    ("AF_PACKET", 17),
    ("AF_VSOCK", 40),
    ("AF_XDP", 44),
];

/// The name of address family `family` in events (`AF_INET`), or its number.
pub fn family_name(family: u16) -> String {
    FAMILIES
        .iter()
        .find(|(n, v)| *v == i64::from(family) && *n != "AF_LOCAL")
        .map_or_else(|| family.to_string(), |(n, _)| (*n).to_string())
}

/// One matchArgs entry on a sockaddr argument: Family (integer compare on the family),
/// SPort/NotSPort (ports and `lo:hi` ranges), SPortPriv/NotSPortPriv, SAddr/NotSAddr
/// (addresses and CIDRs, as LPM keys tagged with the IP version).
pub(crate) fn sockaddr_filter(
    path: &str,
    mut f: vigil_arg_filter,
    op: Operator,
    values: &[String],
    ids: &mut Ids,
    out: &mut PolicyTables,
) -> Result<vigil_arg_filter, Unsupported> {
    // The engine's sockaddr operator takes two 32-bit values (vigil_sockaddr_op).
    const SOCKADDR_VALUES: usize = 2;
    let too_many = || {
        unsupported(
            path,
            format!("more than {SOCKADDR_VALUES} values for {op} on a sockaddr"),
        )
    };
    match op {
        Operator::Family => {
            f.op = VIGIL_OP_EQ as u8;
            if values.len() > SOCKADDR_VALUES {
                return Err(too_many());
            }
            for (i, v) in values.iter().enumerate() {
                f.values[i] = FAMILIES
                    .iter()
                    .find(|(n, _)| n == v)
                    .map(|(_, n)| *n)
                    .or_else(|| parse_int(v))
                    .ok_or_else(|| unsupported(path, format!("{v:?} is not an address family")))?;
            }
            f.nvalues = values.len() as u8;
        }
        Operator::SPort | Operator::NotSPort => {
            f.op = if op == Operator::SPort {
                VIGIL_OP_PORT
            } else {
                VIGIL_OP_NOT_PORT
            } as u8;
            if values.len() > SOCKADDR_VALUES {
                return Err(too_many());
            }
            for (i, v) in values.iter().enumerate() {
                let (lo, hi) = port_range(v)
                    .ok_or_else(|| unsupported(path, format!("{v:?} is not a port or range")))?;
                f.values[i] = i64::from(lo) << 16 | i64::from(hi);
            }
            f.nvalues = values.len() as u8;
        }
        Operator::SPortPriv => f.op = VIGIL_OP_PORT_PRIV as u8,
        Operator::NotSPortPriv => f.op = VIGIL_OP_NOT_PORT_PRIV as u8,
        Operator::SAddr | Operator::NotSAddr => {
            f.op = if op == Operator::SAddr {
                VIGIL_OP_ADDR
            } else {
                VIGIL_OP_NOT_ADDR
            } as u8;
            f.set_id = ids.next_set;
            ids.next_set += 1;
            for v in values {
                let key = cidr_key(f.set_id, v)
                    .ok_or_else(|| unsupported(path, format!("{v:?} is not an address or CIDR")))?;
                out.tables.str_prefix.push(key);
            }
        }
        other => {
            return Err(unsupported(
                path,
                format!("operator {other} does not apply to sockaddr arguments"),
            ));
        }
    }
    Ok(f)
}

/// `80` or `1000:2000`.
fn port_range(v: &str) -> Option<(u16, u16)> {
    let one = |t: &str| parse_int(t.trim()).and_then(|p| u16::try_from(p).ok());
    match v.split_once(':') {
        Some((lo, hi)) => Some((one(lo)?, one(hi)?)).filter(|(lo, hi)| lo <= hi),
        None => one(v).map(|p| (p, p)),
    }
}

/// The running kernel's BTF, read once (`resolve` paths are turned into offsets with it).
pub(crate) fn vmlinux() -> Result<&'static Btf, String> {
    static BTF: OnceLock<Result<Btf, String>> = OnceLock::new();
    BTF.get_or_init(|| {
        Btf::from_file("/sys/kernel/btf/vmlinux").map_err(|e| format!("kernel BTF: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// A member path from `root` (a task_struct, or the struct a raw tracepoint argument points
/// to) as the engine follows it, with the event type it is reported as.
pub(crate) fn btf_chain(
    path: &str,
    a: &ArgReader,
    root: &str,
    flags: u32,
) -> Result<(u8, HookArg, vigil_btf_chain), Unsupported> {
    if a.resolve.len() > VIGIL_BTF_DEPTH as usize {
        return Err(unsupported(
            path,
            format!("resolve is deeper than {VIGIL_BTF_DEPTH} members"),
        ));
    }
    let btf = vmlinux().map_err(|e| unsupported(path, e))?;
    let m = btf
        .resolve_members(root, &a.resolve)
        .map_err(|e| unsupported(path, format!("resolve `{}`: {e}", a.resolve.join("."))))?;
    let mut chain = vigil_btf_chain {
        nsteps: m.offsets.len() as u8,
        deref: m.deref as u16,
        flags: flags as u8,
        ..Default::default()
    };
    chain.off[..m.offsets.len()].copy_from_slice(&m.offsets);
    let declared = a.arg_type;
    let (kind, report) = match m.leaf {
        Leaf::CharPtr | Leaf::CharArray => {
            chain.leaf = if m.leaf == Leaf::CharPtr {
                VIGIL_LEAF_CHAR_PTR
            } else {
                VIGIL_LEAF_CHAR_ARR
            } as u8;
            if declared != ArgType::String {
                return Err(unsupported(
                    path,
                    format!("resolve ends on a string: declare type string, not {declared}"),
                ));
            }
            (VIGIL_ARG_BTF_STR, HookArg::String)
        }
        Leaf::Int { bytes, signed } => {
            chain.leaf = VIGIL_LEAF_INT as u8;
            chain.size = bytes as u8;
            if signed {
                chain.flags |= VIGIL_CHAIN_SIGNED as u8;
            }
            (VIGIL_ARG_BTF, int_report(path, declared)?)
        }
        Leaf::Pointer => {
            chain.leaf = VIGIL_LEAF_PTR as u8;
            chain.size = 8;
            (VIGIL_ARG_BTF, int_report(path, declared)?)
        }
    };
    Ok((kind as u8, report, chain))
}

fn int_report(path: &str, declared: ArgType) -> Result<HookArg, Unsupported> {
    Ok(match declared {
        ArgType::Int8 | ArgType::Int16 | ArgType::Int32 => HookArg::Int,
        ArgType::Uint8 | ArgType::Uint16 | ArgType::Uint32 => HookArg::Uint32,
        ArgType::Int64 => HookArg::Int64,
        ArgType::Uint64 => HookArg::Uint64,
        ArgType::SizeT => HookArg::SizeT,
        other => {
            return Err(unsupported(
                path,
                format!("resolve ends on an integer: type {other} cannot report it"),
            ));
        }
    })
}

/// A `data` entry: `source: current_task` with `resolve` (a task_struct member path).
pub(crate) fn data_reader(
    path: &str,
    d: &ArgReader,
) -> Result<(u8, HookArg, vigil_btf_chain), Unsupported> {
    match d.source.as_deref() {
        Some("current_task") => {}
        Some(other) => {
            return Err(unsupported(
                path,
                format!(
                    "data source {other} is not supported by this runtime yet (current_task is)"
                ),
            ));
        }
        None => {
            return Err(unsupported(
                path,
                "a data entry needs `source: current_task` here",
            ));
        }
    }
    if d.resolve.is_empty() {
        return Err(unsupported(
            path,
            "data from current_task needs `resolve` (a task_struct member path, e.g. `pid`)",
        ));
    }
    btf_chain(path, d, "task_struct", VIGIL_CHAIN_TASK)
}

#[cfg(test)]
#[path = "readers_tests.rs"]
mod tests;
