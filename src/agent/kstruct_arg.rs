//! Kernel-structure arguments (rows filled by `bpf/include/vigil_kobj_struct.h`) and the
//! integer arguments reported under a name, turned into Tetragon's argument messages.

use vigil_bpf::abi::{vigil_bpf_info, vigil_cred_info, vigil_module_info, vigil_perf_info};
use vigil_proto::pbjson_types::{BoolValue, Int32Value};
use vigil_proto::tetragon;
use vigil_proto::tetragon::kprobe_argument::Arg;
use vigil_runtime::tables::{CapSetKind, HookArg};

/// Host namespace identity, to mark a user namespace as the host's.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostUserNs(pub u32);

/// The argument for `kind` from its row and integer, or None when `kind` is not one of
/// this module's.
pub fn kstruct_arg(kind: HookArg, row: &[u8], int: i64, host: HostUserNs) -> Option<Arg> {
    Some(match kind {
        HookArg::Cred => {
            let c: vigil_cred_info = read_row(row)?;
            Arg::ProcessCredentialsArg(crate::agent::encode::credentials(
                &crate::agent::convert::creds(&c.creds),
                c.user_ns_inum,
                host.0,
            ))
        }
        HookArg::UserNs => {
            let u: vigil_bpf::abi::vigil_userns_info = read_row(row)?;
            Arg::UserNsArg(crate::agent::encode::user_namespace(
                u.level, u.uid, u.gid, u.inum, host.0,
            ))
        }
        HookArg::BpfAttr | HookArg::BpfProg => {
            let b: vigil_bpf_info = read_row(row)?;
            let (prog_type, insn_cnt, prog_name) =
                (prog_type_name(b.type_), b.insn_cnt, c_string(&b.name));
            if kind == HookArg::BpfAttr {
                Arg::BpfAttrArg(tetragon::KprobeBpfAttr {
                    prog_type,
                    insn_cnt,
                    prog_name,
                })
            } else {
                Arg::BpfProgArg(tetragon::KprobeBpfProg {
                    prog_type,
                    insn_cnt,
                    prog_name,
                })
            }
        }
        HookArg::BpfMap => {
            let b: vigil_bpf_info = read_row(row)?;
            Arg::BpfMapArg(tetragon::KprobeBpfMap {
                map_type: map_type_name(b.type_),
                key_size: b.key_size,
                value_size: b.value_size,
                max_entries: b.max_entries,
                map_name: c_string(&b.name),
            })
        }
        HookArg::PerfEvent => {
            let p: vigil_perf_info = read_row(row)?;
            Arg::PerfEventArg(tetragon::KprobePerfEvent {
                kprobe_func: c_string(&p.func),
                r#type: perf_type_name(p.type_),
                config: p.config,
                probe_offset: p.probe_offset,
            })
        }
        HookArg::Module => {
            let m: vigil_module_info = read_row(row)?;
            Arg::ModuleArg(tetragon::KernelModule {
                name: c_string(&m.name),
                signature_ok: (m.has_sig != 0).then_some(BoolValue::from(m.sig_ok != 0)),
                tainted: taint_list(m.taints),
            })
        }
        HookArg::CapSet(which) => {
            let text = format!("{:#018x}", int as u64);
            match which {
                CapSetKind::KernelCapT => Arg::KernelCapTArg(text),
                CapSetKind::Inheritable => Arg::CapInheritableArg(text),
                CapSetKind::Permitted => Arg::CapPermittedArg(text),
                CapSetKind::Effective => Arg::CapEffectiveArg(text),
            }
        }
        HookArg::NetDevice => Arg::NetDevArg(tetragon::KprobeNetDev {
            name: vigil_process::text::valid_utf8(row),
        }),
        HookArg::Capability => Arg::CapabilityArg(tetragon::KprobeCapability {
            value: Some(Int32Value::from(int as i32)),
            name: usize::try_from(int)
                .ok()
                .and_then(|i| vigil_policy::types::CAPABILITIES.get(i))
                .map_or_else(|| format!("CAP_{int}"), |n| (*n).to_string()),
        }),
        HookArg::BpfCmd => Arg::BpfCmdArg(int as i32),
        _ => return None,
    })
}

/// The `vigil_*_info` at the start of `row` (the kernel wrote it whole, or the row is short
/// because the read failed: then None).
fn read_row<T: Copy>(row: &[u8]) -> Option<T> {
    if row.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: T is a plain C struct of integers and byte arrays (bindgen from vigil_abi.h),
    // valid for any bytes; the length was checked and read_unaligned needs no alignment.
    Some(unsafe { std::ptr::read_unaligned(row.as_ptr().cast::<T>()) })
}

fn c_string(bytes: &[std::os::raw::c_char]) -> String {
    let bytes: Vec<u8> = bytes
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    vigil_process::text::valid_utf8(&bytes)
}

/// Module taint bits as Tetragon's TaintedBitsType values (each value is the bit's mask).
fn taint_list(taints: u64) -> Vec<i32> {
    use tetragon::TaintedBitsType as T;
    [
        T::TaintProprietaryModule,
        T::TaintForcedModule,
        T::TaintForcedUnloadModule,
        T::TaintStagedModule,
        T::TaintOutOfTreeModule,
        T::TaintUnsignedModule,
        T::TaintKernelLivePatchModule,
        T::TaintTestModule,
    ]
    .into_iter()
    .map(|t| t as i32)
    .filter(|&mask| taints & mask as u64 != 0)
    .collect()
}

/// `enum bpf_prog_type` of the kernel UAPI, in order.
const PROG_TYPES: &[&str] = &[
    "UNSPEC",
    "SOCKET_FILTER",
    "KPROBE",
    "SCHED_CLS",
    "SCHED_ACT",
    "TRACEPOINT",
    "XDP",
    "PERF_EVENT",
    "CGROUP_SKB",
    "CGROUP_SOCK",
    "LWT_IN",
    "LWT_OUT",
    "LWT_XMIT",
    "SOCK_OPS",
    "SK_SKB",
    "CGROUP_DEVICE",
    "SK_MSG",
    "RAW_TRACEPOINT",
    "CGROUP_SOCK_ADDR",
    "LWT_SEG6LOCAL",
    "LIRC_MODE2",
    "SK_REUSEPORT",
    "FLOW_DISSECTOR",
    "CGROUP_SYSCTL",
    "RAW_TRACEPOINT_WRITABLE",
    "CGROUP_SOCKOPT",
    "TRACING",
    "STRUCT_OPS",
    "EXT",
    "LSM",
    "SK_LOOKUP",
    "SYSCALL",
    "NETFILTER",
];

/// `enum bpf_map_type` of the kernel UAPI, in order.
const MAP_TYPES: &[&str] = &[
    "UNSPEC",
    "HASH",
    "ARRAY",
    "PROG_ARRAY",
    "PERF_EVENT_ARRAY",
    "PERCPU_HASH",
    "PERCPU_ARRAY",
    "STACK_TRACE",
    "CGROUP_ARRAY",
    "LRU_HASH",
    "LRU_PERCPU_HASH",
    "LPM_TRIE",
    "ARRAY_OF_MAPS",
    "HASH_OF_MAPS",
    "DEVMAP",
    "SOCKMAP",
    "CPUMAP",
    "XSKMAP",
    "SOCKHASH",
    "CGROUP_STORAGE",
    "REUSEPORT_SOCKARRAY",
    "PERCPU_CGROUP_STORAGE",
    "QUEUE",
    "STACK",
    "SK_STORAGE",
    "DEVMAP_HASH",
    "STRUCT_OPS",
    "RINGBUF",
    "INODE_STORAGE",
    "TASK_STORAGE",
    "BLOOM_FILTER",
    "USER_RINGBUF",
    "CGRP_STORAGE",
    "ARENA",
];

fn prog_type_name(t: u32) -> String {
    PROG_TYPES
        .get(t as usize)
        .map_or_else(|| t.to_string(), |n| format!("BPF_PROG_TYPE_{n}"))
}

fn map_type_name(t: u32) -> String {
    MAP_TYPES
        .get(t as usize)
        .map_or_else(|| t.to_string(), |n| format!("BPF_MAP_TYPE_{n}"))
}

/// Fixed perf types by name; dynamic PMU types (kprobe, uprobe, ...) by the PMU's name in
/// /sys/bus/event_source/devices, else the number.
fn perf_type_name(t: u32) -> String {
    const FIXED: &[&str] = &[
        "hardware",
        "software",
        "tracepoint",
        "hw_cache",
        "raw",
        "breakpoint",
    ];
    if let Some(n) = FIXED.get(t as usize) {
        return (*n).to_string();
    }
    std::fs::read_dir("/sys/bus/event_source/devices")
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| {
            std::fs::read_to_string(e.path().join("type"))
                .is_ok_and(|v| v.trim().parse::<u32>() == Ok(t))
        })
        .map_or_else(
            || t.to_string(),
            |e| e.file_name().to_string_lossy().into_owned(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain C struct.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    #[test]
    fn credentials_row_becomes_process_credentials_arg() {
        let mut c = vigil_cred_info::default();
        (c.creds.uid, c.creds.euid, c.creds.cap_effective) = (1000, 0, 1 << 21);
        c.user_ns_inum = 4026531837;
        let Some(Arg::ProcessCredentialsArg(p)) =
            kstruct_arg(HookArg::Cred, &row_of(&c), 0, HostUserNs(4026531837))
        else {
            panic!("not a credentials argument");
        };
        assert_eq!(p.uid.unwrap().value, 1000);
        assert_eq!(p.euid.unwrap().value, 0);
        assert_eq!(p.caps.unwrap().effective, vec![21]);
        assert!(p.user_ns.unwrap().ns.unwrap().is_host);
    }

    #[test]
    fn short_row_is_not_decoded() {
        assert!(kstruct_arg(HookArg::Cred, &[0u8; 8], 0, HostUserNs(0)).is_none());
    }

    #[test]
    fn bpf_and_module_rows_use_kernel_names() {
        let mut b = vigil_bpf_info {
            type_: 2,
            insn_cnt: 12,
            ..Default::default()
        };
        for (d, s) in b.name.iter_mut().zip(b"probe\0") {
            *d = *s as _;
        }
        let Some(Arg::BpfAttrArg(a)) = kstruct_arg(HookArg::BpfAttr, &row_of(&b), 0, HostUserNs(0))
        else {
            panic!("not bpf_attr");
        };
        assert_eq!(
            (a.prog_type.as_str(), a.insn_cnt, a.prog_name.as_str()),
            ("BPF_PROG_TYPE_KPROBE", 12, "probe")
        );
        b.type_ = 27;
        let Some(Arg::BpfMapArg(m)) = kstruct_arg(HookArg::BpfMap, &row_of(&b), 0, HostUserNs(0))
        else {
            panic!("not bpf_map");
        };
        assert_eq!(m.map_type, "BPF_MAP_TYPE_RINGBUF");
        let m = vigil_module_info {
            taints: (1 << 12) | (1 << 13),
            has_sig: 1,
            sig_ok: 0,
            ..Default::default()
        };
        let Some(Arg::ModuleArg(k)) = kstruct_arg(HookArg::Module, &row_of(&m), 0, HostUserNs(0))
        else {
            panic!("not module");
        };
        assert_eq!(k.signature_ok.map(|v| v.value), Some(false));
        assert_eq!(
            k.tainted,
            vec![
                tetragon::TaintedBitsType::TaintOutOfTreeModule as i32,
                tetragon::TaintedBitsType::TaintUnsignedModule as i32
            ]
        );
    }

    #[test]
    fn capability_and_capability_sets() {
        let Some(Arg::CapabilityArg(c)) = kstruct_arg(HookArg::Capability, &[], 21, HostUserNs(0))
        else {
            panic!("not capability");
        };
        assert_eq!(c.name, "CAP_SYS_ADMIN");
        assert_eq!(
            kstruct_arg(
                HookArg::CapSet(CapSetKind::Effective),
                &[],
                1 << 21,
                HostUserNs(0)
            ),
            Some(Arg::CapEffectiveArg("0x0000000000200000".into()))
        );
    }
}
