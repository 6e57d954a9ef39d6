//! What the running kernel offers vigil: the facts the agent decides its attach mechanisms
//! from (`KernelFacts`, the one place they are read; policy compilation and the io_uring
//! mode use `capabilities()`), and `vigil probe`, which reports those facts together with
//! the helpers and map kinds the eBPF objects need, each present or absent with the reason.
//!
//! Rows carry the names of `tests/kernel-matrix/capabilities.toml` where the matrix has the
//! mechanism, and Tetragon's `tetra probe` name where it has one.

use std::path::Path;

use libbpf_rs::{MapType, ProgramType};
use serde_json::json;
use vigil_policy::compile::Capabilities;

const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";
const UPROBE_PMU: &str = "/sys/bus/event_source/devices/uprobe";
const UPROBE_REF_CTR: &str = "/sys/bus/event_source/devices/uprobe/format/ref_ctr_offset";
const LOCKDOWN: &str = "/sys/kernel/security/lockdown";
const LSM_LIST: &str = "/sys/kernel/security/lsm";
const FILTER_FUNCTIONS: &str = "/sys/kernel/tracing/available_filter_functions";

/// What the kernel advertises without loading anything: read once, decides the agent's
/// attach mechanisms (KERNEL.md).
#[derive(Debug, Clone)]
pub struct KernelFacts {
    /// The kprobe PMU exists only with CONFIG_KPROBES.
    pub kprobe_pmu: bool,
    /// The active lockdown mode (`none`, `integrity`, `confidentiality`), if readable.
    pub lockdown: Option<String>,
    /// The active LSMs, in order.
    pub lsms: Vec<String>,
    /// Why the kernel BTF is unusable (None: it parsed).
    pub btf_error: Option<String>,
    /// kprobe.multi links (CONFIG_FPROBE): `bpf_kprobe_multi_link` in BTF.
    pub fprobe: bool,
    /// uprobe.multi links (6.6): `bpf_uprobe_multi_link` in BTF.
    pub uprobe_multi: bool,
    /// raw_tp attach cookies (6.10): a `cookie` in `bpf_raw_tp_link`.
    pub raw_tp_cookie: bool,
    /// The BPF task iterator target (`bpf_iter_task` in BTF).
    pub task_iterator: bool,
    pub filter_functions_readable: bool,
}

impl KernelFacts {
    pub fn read() -> KernelFacts {
        let lockdown = std::fs::read_to_string(LOCKDOWN).ok().and_then(|s| {
            let (_, rest) = s.split_once('[')?;
            Some(rest.split_once(']')?.0.to_string())
        });
        let lsms = std::fs::read_to_string(LSM_LIST)
            .unwrap_or_default()
            .split(',')
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect();
        // Parsed here and dropped: the agent keeps no copy of the kernel's BTF.
        let btf = vigil_policy::btf::Btf::from_file(vigil_bpf::preflight::KERNEL_BTF);
        let (btf, btf_error) = match btf {
            Ok(b) => (Some(b), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let has_struct = |name: &str| btf.as_ref().is_some_and(|b| b.struct_id(name).is_some());
        KernelFacts {
            kprobe_pmu: Path::new(KPROBE_PMU).exists(),
            lockdown,
            lsms,
            fprobe: has_struct("bpf_kprobe_multi_link"),
            uprobe_multi: has_struct("bpf_uprobe_multi_link"),
            // Without BTF the agent cannot run at all; assume the modern layout.
            raw_tp_cookie: btf.as_ref().is_none_or(|b| {
                b.resolve_members("bpf_raw_tp_link", &["cookie".to_string()])
                    .is_ok()
            }),
            task_iterator: btf
                .as_ref()
                .is_some_and(|b| b.has_function("bpf_iter_task")),
            btf_error,
            filter_functions_readable: std::fs::File::open(FILTER_FUNCTIONS).is_ok(),
        }
    }

    fn locked_down(&self) -> bool {
        matches!(
            self.lockdown.as_deref(),
            Some("integrity" | "confidentiality")
        )
    }

    /// fentry/fexit/fmod_ret/LSM programs need BPF trampolines: the kernel refuses them
    /// under lockdown, and kernels built without kprobes lack the ftrace they patch through.
    fn trampolines(&self) -> Result<(), String> {
        match (self.kprobe_pmu, self.lockdown.as_deref()) {
            (_, Some(mode @ ("integrity" | "confidentiality"))) => Err(format!(
                "kernel lockdown={mode} refuses BPF tracing programs (program load fails with EPERM)"
            )),
            (false, _) => Err(format!(
                "no kprobe PMU ({KPROBE_PMU}): the kernel lacks CONFIG_KPROBES and the function \
                 tracing its trampolines patch through"
            )),
            (true, _) => Ok(()),
        }
    }

    /// What policy compilation may use on this kernel.
    pub fn capabilities(&self) -> Capabilities {
        let trampolines = self.trampolines().is_ok();
        Capabilities {
            kprobes: self.kprobe_pmu,
            kprobe_multi: trampolines && self.fprobe,
            raw_tp_cookie: self.raw_tp_cookie,
            fentry: trampolines,
            bpf_lsm: trampolines && self.lsms.iter().any(|m| m == "bpf"),
            ima: [
                "/sys/kernel/security/ima",
                "/sys/kernel/security/integrity/ima",
            ]
            .iter()
            .any(|p| Path::new(p).is_dir()),
            // Override goes through fmod_ret and LSM programs; vigil never emits
            // bpf_override_return (its `override_return` row only reports the helper).
            error_injection: false,
            ftrace_function_list: self.filter_functions_readable,
            check_files: true,
        }
    }
}

/// One row of `vigil probe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    /// hook, helper, map or kernel.
    pub kind: &'static str,
    /// The row of `tetra probe` that says the same, if any.
    pub tetragon: Option<&'static str>,
    /// What vigil does with it.
    pub used_for: &'static str,
    /// Ok: present (with a detail, possibly empty); Err: absent, and why.
    pub status: Result<String, String>,
}

fn row(
    name: &'static str,
    kind: &'static str,
    tetragon: Option<&'static str>,
    used_for: &'static str,
    status: Result<String, String>,
) -> Feature {
    Feature {
        name,
        kind,
        tetragon,
        used_for,
        status,
    }
}

fn yes() -> Result<String, String> {
    Ok(String::new())
}

fn prog_type(ty: ProgramType, what: &str) -> Result<String, String> {
    match ty.is_supported() {
        Ok(true) => yes(),
        Ok(false) => Err(format!("the kernel refuses to load a {what} program")),
        Err(e) => Err(format!("loading a {what} program failed: {e}")),
    }
}

fn helper(
    ty: ProgramType,
    id: libbpf_rs::libbpf_sys::bpf_func_id,
    what: &str,
) -> Result<String, String> {
    match ty.is_helper_supported(id) {
        Ok(true) => yes(),
        Ok(false) => Err(format!(
            "the verifier does not offer {what} to {ty:?} programs"
        )),
        Err(e) => Err(format!("probing {what} failed: {e}")),
    }
}

fn map_type(ty: MapType) -> Result<String, String> {
    match ty.is_supported() {
        Ok(true) => yes(),
        Ok(false) => Err(format!("the kernel refuses to create a {ty:?} map")),
        Err(e) => Err(format!("creating a {ty:?} map failed: {e}")),
    }
}

fn path_exists(path: &str, why_absent: &str) -> Result<String, String> {
    if Path::new(path).exists() {
        yes()
    } else {
        Err(format!("no {path}: {why_absent}"))
    }
}

/// A program of `insns` plain instructions (BPF_MAXINSNS is 4096 before 5.2).
fn large_program() -> Result<String, String> {
    use libbpf_rs::libbpf_sys as sys;
    const COUNT: usize = 4097;
    // r0 = 0, repeated; exit.
    let mut insns = vec![
        sys::bpf_insn {
            code: 0xb7,
            ..Default::default()
        };
        COUNT
    ];
    insns[COUNT - 1].code = 0x95;
    // SAFETY: a valid instruction array of the length passed; the returned fd is closed.
    let fd = unsafe {
        sys::bpf_prog_load(
            sys::BPF_PROG_TYPE_TRACEPOINT,
            std::ptr::null(),
            c"GPL".as_ptr(),
            insns.as_ptr(),
            COUNT as _,
            std::ptr::null_mut(),
        )
    };
    if fd < 0 {
        return Err(format!(
            "a program of {COUNT} instructions is refused: {}",
            std::io::Error::from_raw_os_error(-fd)
        ));
    }
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    yes()
}

/// Every row, probed now (loads and unloads tiny programs and maps: needs root).
pub fn probe_all(facts: &KernelFacts) -> Vec<Feature> {
    use libbpf_rs::libbpf_sys as sys;
    let caps = facts.capabilities();
    let trampolines = facts.trampolines();
    let kprobe = if facts.kprobe_pmu {
        yes()
    } else {
        Err(format!(
            "no kprobe PMU ({KPROBE_PMU}): the kernel lacks CONFIG_KPROBES, so kprobe programs load \
             but cannot attach"
        ))
    };
    let kprobe_multi = match (&trampolines, facts.fprobe) {
        (Err(why), _) => Err(why.clone()),
        (Ok(()), false) => {
            Err("no bpf_kprobe_multi_link in the kernel BTF: the kernel lacks CONFIG_FPROBE".into())
        }
        (Ok(()), true) => yes(),
    };
    let lsm = match (&trampolines, facts.lsms.iter().any(|m| m == "bpf")) {
        (Err(why), _) => Err(why.clone()),
        (Ok(()), false) => Err(format!(
            "bpf is not among the active LSMs ({LSM_LIST}: {})",
            facts.lsms.join(",")
        )),
        (Ok(()), true) => yes(),
    };
    let btf_check = vigil_bpf::preflight::check_btf(Path::new(vigil_bpf::preflight::KERNEL_BTF));
    let btf = match &facts.btf_error {
        Some(e) => Err(format!("{}: {e}", vigil_bpf::preflight::KERNEL_BTF)),
        None => Ok(vigil_bpf::preflight::KERNEL_BTF.to_string()),
    };
    let tp_btf = match (&btf, btf_check) {
        (Err(e), _) => Err(e.clone()),
        (Ok(_), Err(e)) => Err(e.to_string()),
        (Ok(_), Ok(())) => yes(),
    };
    let tramp = |detail: &str| trampolines.clone().map(|()| detail.to_string());
    let tp = ProgramType::Tracepoint;
    vec![
        row(
            "tracepoint",
            "hook",
            None,
            "syscall and sched hooks, policy tracepoints",
            prog_type(tp, "tracepoint"),
        ),
        row(
            "raw_tp",
            "hook",
            None,
            "raw tracepoint hooks (raw_syscalls, ia32 calls)",
            prog_type(ProgramType::RawTracepoint, "raw tracepoint"),
        ),
        row(
            "raw_tp_cookie",
            "hook",
            None,
            "raw tracepoint hooks learn their hook id from the attach cookie",
            if caps.raw_tp_cookie {
                yes()
            } else {
                Err("no cookie in bpf_raw_tp_link (kernel older than 6.10)".into())
            },
        ),
        row(
            "tp_btf",
            "hook",
            None,
            "process lifecycle (sched_process_exec/fork/exit)",
            tp_btf,
        ),
        row(
            "btf",
            "kernel",
            None,
            "CO-RE relocations, policy argument types",
            btf,
        ),
        row(
            "uprobe",
            "hook",
            None,
            "uprobes and USDT hooks",
            path_exists(UPROBE_PMU, "the kernel lacks CONFIG_UPROBE_EVENTS"),
        ),
        row(
            "uprobe_refctroff",
            "hook",
            Some("uprobe_refctroff"),
            "USDT semaphores",
            path_exists(UPROBE_REF_CTR, "the kernel cannot maintain USDT semaphores"),
        ),
        row(
            "uprobe_multi",
            "hook",
            Some("uprobe_multi"),
            "not used (one link per uprobe)",
            if facts.uprobe_multi {
                yes()
            } else {
                Err("no bpf_uprobe_multi_link in the kernel BTF (kernel older than 6.6)".into())
            },
        ),
        row(
            "kprobe",
            "hook",
            None,
            "kprobes/kretprobes on kernel functions",
            kprobe,
        ),
        row(
            "kprobe_multi",
            "hook",
            Some("kprobe_multi"),
            "one link for many kernel functions",
            kprobe_multi,
        ),
        row(
            "fentry",
            "hook",
            None,
            "fentry/fexit hooks, preferred over kprobes",
            tramp(""),
        ),
        row(
            "fmod_ret",
            "hook",
            Some("fmodret"),
            "Override on security_* functions",
            tramp(""),
        ),
        row(
            "lsm",
            "hook",
            Some("lsm"),
            "lsmhooks and Override through LSM programs",
            lsm,
        ),
        row(
            "iterator",
            "hook",
            None,
            "not used (start-up scan reads procfs)",
            if facts.task_iterator {
                yes()
            } else {
                Err("no bpf_iter_task in the kernel BTF".into())
            },
        ),
        row(
            "cgroup_sock_addr",
            "hook",
            None,
            "network enforcement without kernel-function hooks",
            prog_type(ProgramType::CgroupSockAddr, "cgroup/connect4"),
        ),
        row(
            "available_filter_functions",
            "kernel",
            None,
            "generated_ftrace hook lists",
            if caps.ftrace_function_list {
                yes()
            } else {
                Err(format!(
                    "{FILTER_FUNCTIONS} is not readable (lockdown or no tracefs)"
                ))
            },
        ),
        row(
            "large",
            "kernel",
            Some("large"),
            "policy programs above 4096 instructions",
            large_program(),
        ),
        row(
            "ringbuf",
            "map",
            None,
            "every event to user space",
            map_type(MapType::RingBuf),
        ),
        row(
            "hash",
            "map",
            None,
            "process table, selector values",
            map_type(MapType::Hash),
        ),
        row(
            "lru_hash",
            "map",
            None,
            "per-process state",
            map_type(MapType::LruHash),
        ),
        row(
            "percpu_array",
            "map",
            None,
            "scratch buffers, counters",
            map_type(MapType::PercpuArray),
        ),
        row(
            "lpm_trie",
            "map",
            None,
            "CIDR and prefix matches",
            map_type(MapType::LpmTrie),
        ),
        row(
            "task_storage",
            "map",
            None,
            "per-task state",
            map_type(MapType::TaskStorage),
        ),
        row(
            "bpf_loop",
            "helper",
            None,
            "bounded loops over arguments and paths",
            helper(tp, sys::BPF_FUNC_loop, "bpf_loop"),
        ),
        row(
            "dynptr",
            "helper",
            None,
            "variable-size ring buffer records",
            helper(tp, sys::BPF_FUNC_dynptr_from_mem, "bpf_dynptr_from_mem"),
        ),
        row(
            "send_signal",
            "helper",
            Some("signal"),
            "Sigkill and Signal actions",
            helper(tp, sys::BPF_FUNC_send_signal, "bpf_send_signal"),
        ),
        row(
            "probe_write_user",
            "helper",
            None,
            "Set action",
            helper(tp, sys::BPF_FUNC_probe_write_user, "bpf_probe_write_user").map_err(|e| {
                match facts.locked_down() {
                    true => format!(
                        "{e} (lockdown={} forbids it)",
                        facts.lockdown.as_deref().unwrap_or_default()
                    ),
                    false => e,
                }
            }),
        ),
        row(
            "override_return",
            "helper",
            Some("override_return"),
            "not used (Override goes through fmod_ret and LSM)",
            helper(
                ProgramType::Kprobe,
                sys::BPF_FUNC_override_return,
                "bpf_override_return",
            )
            .map_err(|e| format!("{e} (needs CONFIG_BPF_KPROBE_OVERRIDE)")),
        ),
    ]
}

/// `vigil probe`'s whole answer as JSON (also a part of `vigil bugtool`'s archive).
pub fn report_json(facts: &KernelFacts, features: &[Feature]) -> serde_json::Value {
    let rows: Vec<_> = features
        .iter()
        .map(|f| {
            let mut o = json!({
                "name": f.name,
                "kind": f.kind,
                "present": f.status.is_ok(),
                "used_for": f.used_for,
            });
            match &f.status {
                Ok(d) if !d.is_empty() => o["detail"] = json!(d),
                Ok(_) => {}
                Err(why) => o["reason"] = json!(why),
            }
            if let Some(t) = f.tetragon {
                o["tetragon"] = json!(t);
            }
            o
        })
        .collect();
    json!({
        "kernel": {
            "release": kernel_release(),
            "lockdown": facts.lockdown,
            "lsm": facts.lsms,
        },
        "features": rows,
    })
}

/// The readable table: one line per row, absent rows with their reason.
pub fn report_text(facts: &KernelFacts, features: &[Feature]) -> String {
    let mut out = format!(
        "kernel {} (lockdown: {}; LSMs: {})\n",
        kernel_release(),
        facts
            .lockdown
            .as_deref()
            .unwrap_or("unknown: securityfs is not mounted at /sys/kernel/security"),
        facts.lsms.join(",")
    );
    let header = ["FEATURE", "KIND", "TETRA", "USED FOR", "STATUS"].map(String::from);
    let mut rows = vec![header.to_vec()];
    for f in features {
        rows.push(vec![
            f.name.to_string(),
            f.kind.to_string(),
            f.tetragon.unwrap_or("-").to_string(),
            f.used_for.to_string(),
            match &f.status {
                Ok(d) if d.is_empty() => "present".to_string(),
                Ok(d) => format!("present ({d})"),
                Err(why) => format!("absent \u{2014} {why}"),
            },
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// text (a table) or json.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: crate::remote::debug::Format,
}

/// `vigil probe`.
pub fn run(args: &ProbeArgs) -> std::process::ExitCode {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "vigil probe: warning: not root: loading the probe programs needs CAP_BPF and \
             CAP_PERFMON, so rows may read absent that the agent (root) has"
        );
    }
    let facts = KernelFacts::read();
    let features = probe_all(&facts);
    match args.output {
        crate::remote::debug::Format::Json => {
            println!("{}", report_json(&facts, &features));
        }
        crate::remote::debug::Format::Text => print!("{}", report_text(&facts, &features)),
    }
    std::process::ExitCode::SUCCESS
}
