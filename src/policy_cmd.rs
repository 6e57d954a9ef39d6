//! `vigil tracingpolicy validate|explain`.

use std::process::ExitCode;

use std::path::Path;

use vigil_policy::cli;
use vigil_policy::compile::Capabilities;
use vigil_policy::kernel::SystemKernel;

use crate::cli::PolicyCommand;

pub fn run(cmd: PolicyCommand) -> ExitCode {
    use crate::remote::{PolicyOp, policy, run as remote};
    let out = match cmd {
        PolicyCommand::Add {
            file,
            mode,
            domain,
            client,
        } => {
            let op = PolicyOp::Add { file, mode };
            return remote(
                "tracingpolicy",
                policy(client, op, None, String::new(), domain),
            );
        }
        PolicyCommand::Delete(t) => return remote_target(t, PolicyOp::Delete),
        PolicyCommand::Enable(t) => return remote_target(t, PolicyOp::Enable),
        PolicyCommand::Disable(t) => return remote_target(t, PolicyOp::Disable),
        PolicyCommand::SetMode { target, mode } => {
            return remote_target(target, PolicyOp::SetMode(mode));
        }
        PolicyCommand::List {
            output,
            domain,
            client,
        } => {
            let op = PolicyOp::List(output);
            return remote(
                "tracingpolicy",
                policy(client, op, None, String::new(), domain),
            );
        }
        PolicyCommand::Domains { output, client } => {
            let op = PolicyOp::Domains(output);
            return remote(
                "tracingpolicy",
                policy(client, op, None, String::new(), String::new()),
            );
        }
        PolicyCommand::Validate {
            files,
            btf,
            no_kernel,
        } => {
            let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            let kernel = kernel_info(btf.as_deref());
            cli::validate(&files, if no_kernel { None } else { Some(&kernel) })
        }
        PolicyCommand::Explain { file, btf } => {
            let kernel = kernel_info(btf.as_deref());
            let caps = detect_capabilities();
            cli::explain(&file.display().to_string(), Some(&kernel), &caps)
        }
    };
    print!("{}", out.text);
    ExitCode::from(u8::try_from(out.status).unwrap_or(1))
}

fn remote_target(t: crate::cli::PolicyTarget, op: crate::remote::PolicyOp) -> ExitCode {
    crate::remote::run(
        "tracingpolicy",
        crate::remote::policy(t.client, op, Some(t.name), t.namespace, t.domain),
    )
}

fn kernel_info(btf: Option<&std::path::Path>) -> SystemKernel {
    match btf {
        Some(p) => SystemKernel::with_btf_path(&p.display().to_string()),
        None => SystemKernel::running(),
    }
}

/// What the running kernel offers (also what the agent's policy manager compiles for), from what it advertises without loading anything: the
/// kprobe PMU exists only with CONFIG_KPROBES; a kernel locked down to `integrity` or
/// `confidentiality` refuses fentry and LSM programs (KERNEL.md).
pub fn detect_capabilities() -> Capabilities {
    let kprobes = Path::new("/sys/bus/event_source/devices/kprobe").exists();
    let lockdown = std::fs::read_to_string("/sys/kernel/security/lockdown").unwrap_or_default();
    let locked = lockdown.contains("[integrity]") || lockdown.contains("[confidentiality]");
    let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    let trampolines = kprobes && !locked;
    // Facts the kernel's BTF states (parsed here and dropped: the agent keeps no copy).
    let btf = vigil_policy::btf::Btf::from_file("/sys/kernel/btf/vmlinux").ok();
    // kprobe.multi links exist with CONFIG_FPROBE only (Debian's 6.1 lacks it).
    let fprobe = btf
        .as_ref()
        .is_some_and(|b| b.struct_id("bpf_kprobe_multi_link").is_some());
    // raw_tp attach cookies came with Linux 6.10 (a `cookie` in the raw tracepoint link).
    let raw_tp_cookie = btf.as_ref().is_none_or(|b| {
        b.resolve_members("bpf_raw_tp_link", &["cookie".to_string()])
            .is_ok()
    });
    Capabilities {
        kprobes,
        kprobe_multi: trampolines && fprobe,
        raw_tp_cookie,
        fentry: trampolines,
        bpf_lsm: trampolines && lsm.split(',').any(|m| m.trim() == "bpf"),
        error_injection: false,
        ftrace_function_list: std::fs::File::open("/sys/kernel/tracing/available_filter_functions")
            .is_ok(),
        check_files: true,
    }
}
