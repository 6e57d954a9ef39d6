//! Plan -> kernel tables for `tracepoints`, raw tracepoints, `uprobes` and `usdts`.
//!
//! Each hook's arguments are first placed (a tracepoint field, a raw argument, a register,
//! user memory at a register plus a displacement) into the engine's raw argument slots,
//! one per reported argument ([`vigil_hook_prep`]); selectors and actions are then built by
//! the same code as syscall hooks, so every hook kind filters and acts alike.
//!
//! What the machine is asked (tracepoint formats, target files) goes through [`HookEnv`],
//! so the translation is testable without a kernel.

use std::path::PathBuf;

use vigil_bpf::abi::*;
use vigil_bpf::hooks::{Attach, PreparedHook};
use vigil_policy::compile::{ArgOrigin, ArgReader, Filter, HookPlan, Mechanism, Plan};
use vigil_policy::types::{ArgType, Operator};

use crate::elf::{Elf, sha256_hex};
use crate::tables::{HookArg, HookEvent, Ids, PolicyTables, Target, Unsupported, build_hook};
use crate::tracefs::{self, Source};
use crate::usdt::{self, Location};

include!(concat!(env!("OUT_DIR"), "/x64.rs"));

mod env;
pub use env::{HookEnv, SystemEnv};

/// The name of x86_64 syscall `nr`.
pub fn x64_name(nr: u32) -> Option<&'static str> {
    X64_SYSCALLS
        .iter()
        .find(|(_, n)| *n == nr)
        .map(|(name, _)| *name)
}

/// The x86_64 number of a syscall name (`sys_dup`, `__x64_sys_dup`, `dup`).
pub fn x64_number(name: &str) -> Option<u32> {
    let name = crate::tables::syscall_name(name);
    X64_SYSCALLS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, nr)| *nr)
}

pub(crate) fn unsupported(path: &str, reason: impl Into<String>) -> Unsupported {
    Unsupported {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// One argument placed: where it comes from, how the engine reads it, how it is reported.
pub(crate) struct Placed {
    pub(crate) prep: vigil_prep_arg,
    pub(crate) kernel_string: bool,
    pub(crate) report: HookArg,
    /// BTF `resolve`: the engine kind and member path the argument is read with.
    pub(crate) chain: Option<(u8, vigil_btf_chain)>,
}

pub(crate) fn report_of(t: ArgType) -> HookArg {
    match t {
        ArgType::Int8 | ArgType::Int16 | ArgType::Int32 | ArgType::Fd => HookArg::Int,
        ArgType::Uint8 | ArgType::Uint16 | ArgType::Uint32 => HookArg::Uint32,
        ArgType::Int64 => HookArg::Int64,
        ArgType::SizeT => HookArg::SizeT,
        ArgType::Syscall64 => HookArg::SyscallId,
        ArgType::LinuxBinprm => HookArg::LinuxBinprm,
        ArgType::String | ArgType::Filename | ArgType::DataLoc => HookArg::String,
        _ => HookArg::Uint64,
    }
}

pub(crate) fn signed(t: ArgType) -> bool {
    matches!(
        t,
        ArgType::Int8 | ArgType::Int16 | ArgType::Int32 | ArgType::Int64 | ArgType::Fd
    )
}

pub(crate) fn is_text(t: ArgType) -> bool {
    matches!(
        t,
        ArgType::String | ArgType::Filename | ArgType::DataLoc | ArgType::LinuxBinprm
    )
}

/// Width in bytes of an integer type as read (pointers and syscall ids: 8).
pub(crate) fn width(t: ArgType) -> u8 {
    match t {
        ArgType::Fd => 4,
        t => t.integer_width().unwrap_or(8) as u8,
    }
}

pub(crate) fn prep(src: u32, off: u32, size: u8, sign: bool) -> vigil_prep_arg {
    vigil_prep_arg {
        src: src as u8,
        size,
        sign: u8::from(sign),
        off,
        ..Default::default()
    }
}

/// A tracepoint field, per its format.
fn place_field(
    path: &str,
    fields: &[tracefs::Field],
    target: &str,
    a: &ArgReader,
) -> Result<Placed, Unsupported> {
    let field = fields.get(a.index as usize).ok_or_else(|| {
        unsupported(
            path,
            format!(
                "tracepoint {target} has {} fields; index {} is past them",
                fields.len(),
                a.index
            ),
        )
    })?;
    let r = tracefs::reader(field, a.arg_type).map_err(|e| unsupported(path, e))?;
    let mut p = match r.source {
        Source::Value { offset, size } => {
            let read = if is_text(r.arg_type) {
                8
            } else {
                size.min(u32::from(width(r.arg_type))) as u8
            };
            let sign = if a.arg_type == ArgType::Auto {
                field.signed
            } else {
                signed(r.arg_type)
            };
            prep(VIGIL_SRC_RECORD, offset, read, sign)
        }
        Source::Inline { offset } => prep(VIGIL_SRC_RECORD_ADDR, offset, 8, false),
        Source::DataLoc { offset, relative } => prep(
            if relative {
                VIGIL_SRC_REL_LOC
            } else {
                VIGIL_SRC_DATA_LOC
            },
            offset,
            4,
            false,
        ),
    };
    if r.arg_type == ArgType::Syscall64 {
        p.post = VIGIL_POST_SYSCALL64 as u8;
    }
    Ok(Placed {
        prep: p,
        kernel_string: r.kernel_string,
        report: report_of(r.arg_type),
        chain: None,
    })
}

/// A raw tracepoint argument (64-bit values; pointers are kernel pointers).
fn place_raw(path: &str, a: &ArgReader, event: &str) -> Result<Placed, Unsupported> {
    if a.index > 5 {
        return Err(unsupported(
            path,
            format!(
                "a raw tracepoint has at most 6 arguments; index {}",
                a.index
            ),
        ));
    }
    if !a.resolve.is_empty() {
        // BTF-typed: the argument points to a struct the kernel's BTF describes; the engine
        // follows the member path from it (offsets computed here, no code per policy).
        let btf = crate::tables::readers::vmlinux().map_err(|e| unsupported(path, e))?;
        let root = btf
            .raw_tp_arg_struct(event, a.index)
            .map_err(|e| unsupported(path, e))?;
        let (kind, report, chain) = crate::tables::readers::btf_chain(path, a, &root, 0)?;
        return Ok(Placed {
            prep: prep(VIGIL_SRC_RAW_ARG, a.index, 8, false),
            kernel_string: false,
            report,
            chain: Some((kind, chain)),
        });
    }
    let mut p = prep(
        VIGIL_SRC_RAW_ARG,
        a.index,
        width(a.arg_type),
        signed(a.arg_type),
    );
    match a.arg_type {
        ArgType::Auto => {
            return Err(unsupported(
                path,
                "a raw tracepoint has no format file: give the argument a type",
            ));
        }
        ArgType::LinuxBinprm => p.post = VIGIL_POST_BINPRM as u8,
        ArgType::Syscall64 => p.post = VIGIL_POST_SYSCALL64 as u8,
        t if is_text(t) || t.integer_width().is_some() || t == ArgType::Fd => {}
        t => {
            return Err(unsupported(
                path,
                format!("type {t} is not supported on raw tracepoints yet"),
            ));
        }
    }
    Ok(Placed {
        prep: p,
        kernel_string: is_text(a.arg_type),
        report: report_of(a.arg_type),
        chain: None,
    })
}

/// A function parameter of a uprobe (System V registers; strings are user memory).
fn place_param(path: &str, a: &ArgReader) -> Result<Placed, Unsupported> {
    let reg = usdt::parameter_register(a.index).ok_or_else(|| {
        unsupported(
            path,
            format!(
                "uprobe arguments come from the 6 parameter registers; index {}",
                a.index
            ),
        )
    })?;
    check_user_type(path, a.arg_type)?;
    Ok(Placed {
        prep: prep(VIGIL_SRC_REG, reg, width(a.arg_type), signed(a.arg_type)),
        kernel_string: false,
        report: report_of(a.arg_type),
        chain: None,
    })
}

pub(crate) fn check_user_type(path: &str, t: ArgType) -> Result<(), Unsupported> {
    if matches!(t, ArgType::String | ArgType::Filename)
        || t.integer_width().is_some()
        || t == ArgType::Fd
    {
        return Ok(());
    }
    Err(unsupported(
        path,
        format!("type {t} is not supported on uprobe/usdt arguments yet"),
    ))
}

/// A USDT argument, per the probe's argument specification.
fn place_usdt(path: &str, probe: &usdt::Probe, a: &ArgReader) -> Result<Placed, Unsupported> {
    let spec = probe.args.get(a.index as usize).ok_or_else(|| {
        unsupported(
            path,
            format!(
                "USDT {}:{} has {} arguments; index {} is past them",
                probe.provider,
                probe.name,
                probe.args.len(),
                a.index
            ),
        )
    })?;
    check_user_type(path, a.arg_type)?;
    let size = if is_text(a.arg_type) {
        8
    } else {
        spec.size.min(width(a.arg_type))
    };
    let sign = spec.signed || signed(a.arg_type);
    let p = match spec.location {
        Location::Const(v) => vigil_prep_arg {
            src: VIGIL_SRC_CONST as u8,
            imm: v,
            ..Default::default()
        },
        Location::Reg(r) => prep(VIGIL_SRC_REG, r, size, sign),
        // Fewer bytes at the same (little-endian) address are the value's low bytes.
        Location::Mem { reg, disp } => vigil_prep_arg {
            imm: disp,
            ..prep(VIGIL_SRC_REG_DEREF, reg, size, sign)
        },
    };
    Ok(Placed {
        prep: p,
        kernel_string: false,
        report: report_of(a.arg_type),
        chain: None,
    })
}

/// `binaryDigests`: `sha256:<hex>` (also sha1/384/512); any one matching is enough.
fn check_digests(path: &str, file: &str, data: &[u8], digests: &[String]) -> Result<(), String> {
    if digests.is_empty() {
        return Ok(());
    }
    let mut computed = Vec::new();
    for d in digests {
        let (algo, want) = d.split_once(':').unwrap_or(("sha256", d.as_str()));
        let have = match algo {
            "sha256" => sha256_hex(data),
            "sha1" | "sha384" | "sha512" => crate::elf::digest_hex(algo, data),
            other => {
                return Err(format!(
                    "{path}: binaryDigests `{d}`: digest type {other} is not supported"
                ));
            }
        };
        if have.eq_ignore_ascii_case(want.trim()) {
            return Ok(());
        }
        computed.push(format!("{algo}:{have}"));
    }
    Err(format!(
        "binaryDigests: {file} does not match (its digest is {})",
        computed.join(", ")
    ))
}

/// Tetragon's matchArgs index for these hooks names the hook's own index (field number,
/// register number); it is rewritten to the position in `args`. An index naming no
/// argument is taken as a position, as Tetragon does.
fn rewrite_filters(hook: &HookPlan, readers: &[&ArgReader]) -> Result<HookPlan, Unsupported> {
    let mut h = hook.clone();
    for (si, table) in h.selectors.iter_mut().enumerate() {
        for f in &mut table.filters {
            if let Filter::Arg {
                origin: ArgOrigin::Argument,
                positions,
                operator,
                values,
            } = f
            {
                for p in positions.iter_mut() {
                    if let Some(slot) = readers.iter().position(|a| a.index == *p) {
                        *p = slot as u32;
                    }
                }
                if matches!(operator, Operator::InMap | Operator::NotInMap) {
                    // Integer sets: syscall names become their x86_64 numbers.
                    let mut numbers = Vec::new();
                    for v in values.iter() {
                        if v.trim().parse::<i64>().is_ok() {
                            numbers.push(v.trim().to_string());
                        } else if let Some(nr) = x64_number(v) {
                            numbers.push(nr.to_string());
                        } else {
                            return Err(unsupported(
                                &format!("{}.selectors[{si}]", hook.path),
                                format!(
                                    "{operator} value {v:?} is neither a number nor a system call"
                                ),
                            ));
                        }
                    }
                    *values = numbers;
                    *operator = if *operator == Operator::InMap {
                        Operator::Equal
                    } else {
                        Operator::NotEqual
                    };
                }
            }
        }
    }
    // The engine reads every placed argument from its own slot.
    let mut slot = 0;
    for a in h.arguments.iter_mut() {
        if a.origin == ArgOrigin::Argument {
            a.index = slot;
            a.arg_type = if is_text(a.arg_type) {
                ArgType::String
            } else {
                ArgType::Int64
            };
            slot += 1;
        }
    }
    Ok(h)
}

/// Builds one placed hook through the syscall builder (selectors, actions, value sets) and
/// moves it from the syscall tables to `out.others`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish(
    plan: &Plan,
    hook: &HookPlan,
    placed: &[Placed],
    attach: Attach,
    event: HookEvent,
    ids: &mut Ids,
    resolve_binary: &dyn Fn(&str) -> Option<(u64, u64)>,
    out: &mut PolicyTables,
) -> Result<(), Unsupported> {
    let readers: Vec<&ArgReader> = hook
        .arguments
        .iter()
        .filter(|a| a.origin == ArgOrigin::Argument)
        .collect();
    let adapted = rewrite_filters(hook, &readers)?;
    let t = &out.tables;
    let before = (
        t.hooks.len(),
        t.str_eq.len(),
        t.str_prefix.len(),
        t.str_postfix.len(),
        t.binaries.len(),
    );
    // A name no syscall has, so no ia32 entry is made.
    build_hook(
        plan,
        &adapted,
        &Target::Syscall("<hook>"),
        ids,
        resolve_binary,
        out,
    )?;
    let built = out.tables.hooks.remove(before.0);
    // The value sets this hook's selectors use belong to the hooks object.
    let (t, o) = (&mut out.tables, &mut out.others);
    o.str_eq.extend(t.str_eq.drain(before.1..));
    o.str_prefix.extend(t.str_prefix.drain(before.2..));
    o.str_postfix.extend(t.str_postfix.drain(before.3..));
    o.binaries.extend(t.binaries.drain(before.4..));
    let mut info = out.hooks.pop().expect("build_hook registers its hook");
    let mut config = built.config;
    let mut hprep = vigil_hook_prep::default();
    for (slot, p) in placed.iter().enumerate() {
        hprep.args[slot] = p.prep;
        if p.kernel_string {
            config.arg_kind[slot] = VIGIL_ARG_KSTRING as u8;
        }
        if let Some((kind, chain)) = p.chain {
            config.arg_kind[slot] = kind;
            config.chains[slot] = chain;
            // Read at entry: filters may need it (the selector builder saw its plain type).
            config.filter_strs |= 1 << slot;
        }
        info.args[slot].0 = p.report;
    }
    info.function_name = String::new();
    info.event = event;
    out.others.hooks.push(PreparedHook {
        id: built.id,
        attach,
        prep: hprep,
        config,
        selectors: built.selectors,
    });
    out.hooks.push(info);
    Ok(())
}

/// Builds the tables of one tracepoint, uprobe or usdt hook plan into `out`.
pub fn build(
    plan: &Plan,
    hook: &HookPlan,
    ids: &mut Ids,
    resolve_binary: &dyn Fn(&str) -> Option<(u64, u64)>,
    env: &dyn HookEnv,
    out: &mut PolicyTables,
) -> Result<(), Unsupported> {
    let path = &hook.path;
    let readers: Vec<&ArgReader> = hook
        .arguments
        .iter()
        .filter(|a| a.origin == ArgOrigin::Argument)
        .collect();
    // Uprobes with `return: true` pair a uretprobe with their entry (the engine's exit
    // pairing), so they may report a return value; other hooks have no return.
    let returns = hook.mechanism == Mechanism::Uprobe && hook.on_return;
    if let Some(a) = hook.arguments.iter().find(|a| match a.origin {
        ArgOrigin::Argument => false,
        ArgOrigin::Return => !returns,
        ArgOrigin::Data => true,
    }) {
        let what = if a.origin == ArgOrigin::Data {
            "data"
        } else {
            "returnArg"
        };
        return Err(unsupported(
            path,
            format!("{what} is not supported on these hooks yet"),
        ));
    }
    if hook.on_return && !returns {
        return Err(unsupported(path, "return probes are not supported here"));
    }
    let arg_path = |i: usize| format!("{path}.args[{i}]");
    match hook.mechanism {
        Mechanism::Tracepoint | Mechanism::RawTracepoint => {
            let target = hook.targets.first().cloned().unwrap_or_default();
            let (subsystem, event) = target
                .split_once('/')
                .ok_or_else(|| unsupported(path, format!("bad tracepoint name {target:?}")))?;
            let raw = hook.mechanism == Mechanism::RawTracepoint;
            let placed = if raw {
                readers
                    .iter()
                    .enumerate()
                    .map(|(i, a)| place_raw(&arg_path(i), a, event))
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                let text = env
                    .tracepoint_format(subsystem, event)
                    .map_err(|e| unsupported(&format!("{path}.event"), e))?;
                let fields = tracefs::parse_format(&text).map_err(|e| {
                    unsupported(path, format!("format of tracepoint {target}: {e}"))
                })?;
                readers
                    .iter()
                    .enumerate()
                    .map(|(i, a)| place_field(&arg_path(i), &fields, &target, a))
                    .collect::<Result<Vec<_>, _>>()?
            };
            let attach = if raw {
                Attach::RawTracepoint {
                    event: event.to_string(),
                }
            } else {
                Attach::Tracepoint {
                    subsystem: subsystem.to_string(),
                    event: event.to_string(),
                }
            };
            let ev = HookEvent::Tracepoint {
                subsys: subsystem.to_string(),
                event: event.to_string(),
            };
            finish(plan, hook, &placed, attach, ev, ids, resolve_binary, out)
        }
        Mechanism::Uprobe => build_uprobe(plan, hook, &readers, ids, resolve_binary, env, out),
        Mechanism::Usdt => build_usdt(plan, hook, &readers, ids, resolve_binary, env, out),
        other => Err(unsupported(
            path,
            format!("{} hooks are not supported on this kernel", other.name()),
        )),
    }
}

fn split_target(t: &str) -> (&str, &str) {
    t.rsplit_once(':').unwrap_or((t, ""))
}

fn build_uprobe(
    plan: &Plan,
    hook: &HookPlan,
    readers: &[&ArgReader],
    ids: &mut Ids,
    resolve_binary: &dyn Fn(&str) -> Option<(u64, u64)>,
    env: &dyn HookEnv,
    out: &mut PolicyTables,
) -> Result<(), Unsupported> {
    let path = &hook.path;
    let Some(first) = hook.targets.first() else {
        return Err(unsupported(path, "no symbols, offsets or addrs"));
    };
    let file = split_target(first).0;
    let data = env
        .read_file(file)
        .map_err(|e| unsupported(&format!("{path}.path"), e))?;
    if let Err(reason) = check_digests(path, file, &data, &hook.uprobe.binary_digests) {
        if hook.optional {
            // ignore.digestVerificationFailure: the hook is skipped, the policy loads.
            return Ok(());
        }
        return Err(unsupported(&format!("{path}.binaryDigests"), reason));
    }
    let elf = Elf::parse(&data)
        .map_err(|e| unsupported(&format!("{path}.path"), format!("{file}: {e}")))?;
    let placed_args = || {
        readers
            .iter()
            .enumerate()
            .map(|(i, a)| place_param(&format!("{path}.args[{i}]"), a))
            .collect::<Result<Vec<_>, _>>()
    };
    let mut offsets_seen = 0;
    for target in &hook.targets {
        let what = split_target(target).1;
        let (offset, symbol, reported_offset) = if let Some(off) = what.strip_prefix('+') {
            let off =
                parse_hex(off).ok_or_else(|| unsupported(path, format!("bad offset {off}")))?;
            (off, String::new(), off)
        } else if let Some(addr) = what.strip_prefix('@') {
            let addr =
                parse_hex(addr).ok_or_else(|| unsupported(path, format!("bad address {addr}")))?;
            let off = elf.file_offset(addr).ok_or_else(|| {
                unsupported(
                    path,
                    format!("address {addr:#x} is in no segment of {file}"),
                )
            })?;
            (off, String::new(), off)
        } else {
            let addr = elf
                .function(what)
                .map_err(|e| unsupported(path, format!("{file}: {e}")))?
                .ok_or_else(|| {
                    unsupported(
                        &format!("{path}.symbols"),
                        format!(
                            "symbol `{what}` not found in {file} (neither .symtab nor .dynsym)"
                        ),
                    )
                })?;
            let off = elf.file_offset(addr).ok_or_else(|| {
                unsupported(path, format!("symbol `{what}` is in no segment of {file}"))
            })?;
            (off, what.to_string(), 0)
        };
        let ref_ctr_offset = if what.starts_with('+') {
            offsets_seen += 1;
            hook.uprobe
                .ref_ctr_offsets
                .get(offsets_seen - 1)
                .copied()
                .unwrap_or(0)
        } else {
            0
        };
        let attach = Attach::Uprobe {
            path: PathBuf::from(file),
            offset,
            ref_ctr_offset,
            retprobe: hook.on_return,
        };
        let ev = HookEvent::Uprobe {
            path: file.to_string(),
            symbol,
            offset: reported_offset,
            ref_ctr_offset,
        };
        finish(
            plan,
            hook,
            &placed_args()?,
            attach,
            ev,
            ids,
            resolve_binary,
            out,
        )?;
    }
    Ok(())
}

fn parse_hex(v: &str) -> Option<u64> {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

fn build_usdt(
    plan: &Plan,
    hook: &HookPlan,
    readers: &[&ArgReader],
    ids: &mut Ids,
    resolve_binary: &dyn Fn(&str) -> Option<(u64, u64)>,
    env: &dyn HookEnv,
    out: &mut PolicyTables,
) -> Result<(), Unsupported> {
    let path = &hook.path;
    let target = hook.targets.first().cloned().unwrap_or_default();
    let (rest, name) = split_target(&target);
    let (file, provider) = split_target(rest);
    for (si, s) in hook.selectors.iter().enumerate() {
        if s.actions
            .iter()
            .any(|a| a.action == vigil_policy::types::Action::Set)
        {
            return Err(unsupported(
                &format!("{path}.selectors[{si}].matchActions"),
                "Set needs bpf_probe_write_user, which this kernel forbids (lockdown)",
            ));
        }
    }
    let data = env
        .read_file(file)
        .map_err(|e| unsupported(&format!("{path}.path"), e))?;
    let elf = Elf::parse(&data)
        .map_err(|e| unsupported(&format!("{path}.path"), format!("{file}: {e}")))?;
    let probes = usdt::probes(&elf).map_err(|e| unsupported(path, format!("{file}: {e}")))?;
    let matching: Vec<_> = probes
        .iter()
        .filter(|(p, _)| p.provider == provider && p.name == name)
        .collect();
    if matching.is_empty() {
        return Err(unsupported(
            &format!("{path}.name"),
            format!("USDT probe {provider}:{name} not found in {file}"),
        ));
    }
    // A probe may be emitted at several places (inlining): each gets its uprobe.
    for (probe, error) in matching {
        if let Some(e) = error {
            return Err(unsupported(path, e.clone()));
        }
        let placed = readers
            .iter()
            .enumerate()
            .map(|(i, a)| place_usdt(&format!("{path}.args[{i}]"), probe, a))
            .collect::<Result<Vec<_>, _>>()?;
        let attach = Attach::Uprobe {
            path: PathBuf::from(file),
            offset: probe.offset,
            ref_ctr_offset: probe.semaphore,
            retprobe: false,
        };
        let ev = HookEvent::Usdt {
            path: file.to_string(),
            provider: provider.to_string(),
            name: name.to_string(),
        };
        finish(plan, hook, &placed, attach, ev, ids, resolve_binary, out)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "hooks_tests.rs"]
mod tests;
