//! Selector values and actions: strings to set keys, integer and string filters, action bits,
//! rate limits. Plan values -> kernel table fields.

use vigil_bpf::abi::*;
use vigil_policy::compile::{ArgOrigin, Filter};
use vigil_policy::model::ActionSelector;
use vigil_policy::types::{Action, Operator};

use super::{Ids, PolicyTables, Unsupported, unsupported};

pub(super) fn string_key(set_id: u32, value: &[u8], lpm: bool) -> Option<vigil_str_key> {
    if value.len() > VIGIL_STR_MATCH as usize {
        return None;
    }
    let mut key = vigil_str_key {
        prefixlen: 0,
        set_id,
        data: [0; VIGIL_STR_MATCH as usize],
    };
    key.data[..value.len()].copy_from_slice(value);
    if lpm {
        key.prefixlen = 32 + 8 * value.len() as u32;
    }
    Some(key)
}

/// The bytes every value starts with (at most 8), packed little-endian as the kernel reads
/// the first 8 bytes of a string, and their count: the kernel's quick reject before a lookup.
pub fn common_start(values: &[String]) -> (i64, u8) {
    let Some(first) = values.first() else {
        return (0, 0);
    };
    let mut n = first.len().min(8);
    for v in values {
        n = n.min(
            first
                .bytes()
                .zip(v.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    let mut buf = [0u8; 8];
    buf[..n].copy_from_slice(&first.as_bytes()[..n]);
    (u64::from_le_bytes(buf) as i64, n as u8)
}

pub(super) fn parse_int(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|u| u as i64);
    }
    v.parse::<i64>()
        .ok()
        .or_else(|| v.parse::<u64>().ok().map(|u| u as i64))
}

/// Open-like syscalls and the argument that names the file: at exit, the returned fd's path
/// (resolved by the kernel) is offered to that argument's string filters.
pub fn open_like_path_arg(syscall: &str) -> Option<u32> {
    match syscall {
        "open" | "creat" => Some(0),
        "openat" | "openat2" => Some(1),
        _ => None,
    }
}

/// A Post `rateLimit` value as nanoseconds: a number with an optional unit (`ms`, `s`, `m`,
/// `h`; seconds without one), as Tetragon writes them (`1m`, `30s`).
pub fn parse_rate_limit(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let scale: u64 = match unit.trim() {
        "" | "s" => 1_000_000_000,
        "ms" => 1_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    };
    n.checked_mul(scale).filter(|&ns| ns > 0)
}

/// Post rateLimit of a selector's actions: (interval ns, VIGIL_SEL_RATE_* scope bits).
pub(super) fn rate_limit(path: &str, list: &[ActionSelector]) -> Result<(u64, u32), Unsupported> {
    for a in list {
        let Some(limit) = &a.rate_limit else { continue };
        let ns = parse_rate_limit(limit).ok_or_else(|| {
            unsupported(
                path,
                format!("rateLimit {limit:?}: expected a number with unit ms, s, m or h"),
            )
        })?;
        let scope = match a.rate_limit_scope.as_deref() {
            None | Some("thread") => 0,
            Some("process") => VIGIL_SEL_RATE_PROCESS,
            Some("global") => VIGIL_SEL_RATE_GLOBAL,
            Some(other) => {
                return Err(unsupported(
                    path,
                    format!("rateLimitScope {other:?}: expected thread, process or global"),
                ));
            }
        };
        return Ok((ns, scope));
    }
    Ok((0, 0))
}

/// A selector's action bits, signal and Override value. `can_override`: the hook is an
/// fmod_ret or LSM program, whose return value the kernel uses.
pub(super) fn actions(
    path: &str,
    list: &[ActionSelector],
    can_override: bool,
) -> Result<(u32, u32, i32), Unsupported> {
    if list.is_empty() {
        return Ok((VIGIL_ACT_POST, 0, 0));
    }
    let (mut bits, mut post, mut signal, mut rc) = (0, true, 0, 0);
    for a in list {
        match a.action {
            Action::Post => {}
            Action::Override if can_override => {
                bits |= VIGIL_ACT_OVERRIDE;
                // Tetragon's default argError is -1 (-EPERM).
                let v = a.arg_error.unwrap_or(-1);
                rc = i32::try_from(v).map_err(|_| {
                    unsupported(path, format!("argError {v} does not fit a kernel int"))
                })?;
            }
            Action::NoPost => post = false,
            // User space acts on the posted event (tables/user_actions.rs).
            Action::GetUrl | Action::DnsLookup => {}
            Action::Sigkill => bits |= VIGIL_ACT_SIGKILL,
            // The socket's slot is checked by the caller (it knows the arguments).
            Action::TrackSock => bits |= VIGIL_ACT_TRACK_SOCK,
            Action::UntrackSock => bits |= VIGIL_ACT_UNTRACK_SOCK,
            Action::Signal => {
                bits |= VIGIL_ACT_SIGNAL;
                signal = a.arg_sig.unwrap_or(9);
            }
            other => {
                return Err(unsupported(
                    path,
                    format!("action {other} is not supported by this runtime yet"),
                ));
            }
        }
    }
    if post {
        bits |= VIGIL_ACT_POST;
    }
    Ok((bits, signal, rc))
}

pub(super) fn filter_name(f: &Filter) -> &'static str {
    match f {
        Filter::Arg {
            origin: ArgOrigin::Return,
            ..
        } => "matchReturnArgs",
        Filter::Arg {
            origin: ArgOrigin::Data,
            ..
        } => "matchData",
        Filter::Arg { .. } => "matchArgs",
        Filter::Pids(_) => "matchPIDs",
        Filter::Binaries { parent: true, .. } => "matchParentBinaries",
        Filter::Binaries { .. } => "matchBinaries followChildren",
        Filter::Namespaces(_) => "matchNamespaces",
        Filter::NamespaceChanges(_) => "matchNamespaceChanges",
        Filter::Capabilities { changes: true, .. } => "matchCapabilityChanges",
        Filter::Capabilities { .. } => "matchCapabilities",
        Filter::Workloads(_) => "matchWorkloads",
    }
}

pub(super) fn in_or_not(path: &str, op: Operator) -> Result<u32, Unsupported> {
    match op {
        Operator::In => Ok(VIGIL_OP_IN),
        Operator::NotIn => Ok(VIGIL_OP_NOT_IN),
        other => Err(unsupported(
            path,
            format!("operator {other} is not supported here"),
        )),
    }
}

pub(super) fn arg_filter(
    path: &str,
    slot: usize,
    op: Operator,
    values: &[String],
    kind: u8,
    ids: &mut Ids,
    out: &mut PolicyTables,
) -> Result<vigil_arg_filter, Unsupported> {
    if crate::sock::is_net_kind(kind) {
        // Network objects: CIDR sets go to the prefix trie (crate::sock::cidr_key).
        let set_id = ids.next_set;
        ids.next_set += 1;
        let mut f = crate::sock::sock_filter(op, values, kind, set_id, &mut out.tables.str_prefix)
            .map_err(|e| unsupported(path, e))?;
        f.slot = slot as u8;
        return Ok(f);
    }
    let mut f = vigil_arg_filter {
        slot: slot as u8,
        ..Default::default()
    };
    let kind = u32::from(kind);
    if kind == VIGIL_ARG_SOCKADDR || kind == VIGIL_ARG_KSOCKADDR {
        return super::sockaddr_filter(path, f, op, values, ids, out);
    }
    if kind == VIGIL_ARG_STRING
        || kind == VIGIL_ARG_KSTRING
        || kind == VIGIL_ARG_FD
        || kind == VIGIL_ARG_BTF_STR
        || (VIGIL_ARG_KOBJ_FIRST..=VIGIL_ARG_KOBJ_LAST).contains(&kind)
    {
        f.op = match op {
            Operator::Equal => VIGIL_OP_EQ,
            Operator::NotEqual => VIGIL_OP_NEQ,
            Operator::Prefix => VIGIL_OP_PREFIX,
            Operator::NotPrefix => VIGIL_OP_NOT_PREFIX,
            Operator::Postfix => VIGIL_OP_POSTFIX,
            Operator::NotPostfix => VIGIL_OP_NOT_POSTFIX,
            other => {
                return Err(unsupported(
                    path,
                    format!("operator {other} on strings is not supported by this runtime yet"),
                ));
            }
        } as u8;
        f.set_id = ids.next_set;
        ids.next_set += 1;
        for v in values {
            let bytes = v.as_bytes();
            let key = match u32::from(f.op) {
                VIGIL_OP_EQ | VIGIL_OP_NEQ => string_key(f.set_id, bytes, false).map(|k| (0, k)),
                VIGIL_OP_PREFIX | VIGIL_OP_NOT_PREFIX => {
                    string_key(f.set_id, bytes, true).map(|k| (1, k))
                }
                _ => {
                    let reversed: Vec<u8> = bytes.iter().rev().copied().collect();
                    string_key(f.set_id, &reversed, true).map(|k| (2, k))
                }
            };
            let Some((table, key)) = key else {
                return Err(unsupported(
                    path,
                    format!("value {v:?} is longer than {VIGIL_STR_MATCH} bytes (VIGIL_STR_MATCH)"),
                ));
            };
            match table {
                0 => out.tables.str_eq.push(key),
                1 => out.tables.str_prefix.push(key),
                _ => out.tables.str_postfix.push(key),
            }
        }
        if !matches!(u32::from(f.op), VIGIL_OP_POSTFIX | VIGIL_OP_NOT_POSTFIX) {
            let (packed, n) = common_start(values);
            f.values[0] = packed;
            f.nvalues = n;
        }
        return Ok(f);
    }
    f.op = match op {
        Operator::Equal => VIGIL_OP_EQ,
        Operator::NotEqual => VIGIL_OP_NEQ,
        Operator::GreaterThan => VIGIL_OP_GT,
        Operator::LessThan => VIGIL_OP_LT,
        Operator::Mask => VIGIL_OP_MASK,
        other => {
            return Err(unsupported(
                path,
                format!("operator {other} on integers is not supported by this runtime yet"),
            ));
        }
    } as u8;
    if values.len() > VIGIL_MAX_INT_VALUES as usize {
        return Err(unsupported(
            path,
            format!("more than {VIGIL_MAX_INT_VALUES} integer values"),
        ));
    }
    for (i, v) in values.iter().enumerate() {
        f.values[i] =
            parse_int(v).ok_or_else(|| unsupported(path, format!("{v:?} is not an integer")))?;
    }
    f.nvalues = values.len() as u8;
    Ok(f)
}
