//! Tracepoint, uprobe and usdt plans -> tables, against real format files (test data) and
//! real binaries of this machine.

use super::*;
use vigil_policy::compile::Capabilities;

struct FakeEnv {
    files: Vec<(&'static str, Vec<u8>)>,
}

impl HookEnv for FakeEnv {
    fn tracepoint_format(&self, subsystem: &str, event: &str) -> Result<String, String> {
        Ok(match (subsystem, event) {
            ("sched", "sched_process_exec") => {
                include_str!("../testdata/tracefs/sched_sched_process_exec.format")
            }
            ("raw_syscalls", "sys_enter") => {
                include_str!("../testdata/tracefs/raw_syscalls_sys_enter.format")
            }
            _ => return Err(format!("tracepoint {subsystem}/{event} does not exist")),
        }
        .to_string())
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, String> {
        self.files
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| format!("cannot read {path}"))
    }
}

fn env() -> FakeEnv {
    FakeEnv { files: Vec::new() }
}

fn tables(yaml: &str, env: &dyn HookEnv) -> Result<PolicyTables, Unsupported> {
    let policy = vigil_policy::parse_policy(yaml, "t.yaml").expect("valid policy");
    let plan = vigil_policy::compile(
        &policy,
        &Capabilities {
            check_files: false,
            ..Capabilities::TRACEPOINTS_ONLY
        },
    );
    assert!(plan.is_loadable(), "{:?}", plan.refusals);
    crate::tables::build_in(&plan, &mut Ids::default(), &|_| None, env)
}

const EXEC_TP: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: exec-tp
spec:
  tracepoints:
  - subsystem: sched
    event: sched_process_exec
    message: "exec seen"
    args:
    - index: 4
      type: data_loc
    - index: 5
    selectors:
    - matchArgs:
      - index: 4
        operator: Prefix
        values: ["/usr/bin/"]
"#;

#[test]
fn tracepoint_fields_by_format_offset() {
    let t = tables(EXEC_TP, &env()).unwrap();
    assert!(t.tables.hooks.is_empty(), "no syscall hook");
    let hook = &t.others.hooks[0];
    assert_eq!(
        hook.attach,
        Attach::Tracepoint {
            subsystem: "sched".into(),
            event: "sched_process_exec".into()
        }
    );
    // filename: __data_loc at offset 8; pid: int at offset 12.
    assert_eq!(u32::from(hook.prep.args[0].src), VIGIL_SRC_DATA_LOC);
    assert_eq!(hook.prep.args[0].off, 8);
    assert_eq!(u32::from(hook.prep.args[1].src), VIGIL_SRC_RECORD);
    assert_eq!((hook.prep.args[1].off, hook.prep.args[1].size), (12, 4));
    assert_eq!(hook.prep.args[1].sign, 1);
    assert_eq!(u32::from(hook.config.arg_kind[0]), VIGIL_ARG_KSTRING);
    assert_eq!(hook.config.arg_index[..2], [0, 1]);
    // matchArgs index 4 (the field) is the first argument.
    let f = &hook.selectors[0].filters[0];
    assert_eq!((f.slot, u32::from(f.op)), (0, VIGIL_OP_PREFIX));
    assert!(
        t.tables.str_prefix.is_empty(),
        "the value set goes to the hooks object"
    );
    assert_eq!(&t.others.str_prefix[0].data[..9], b"/usr/bin/");
    assert_eq!(t.others.str_prefix[0].set_id, f.set_id);
    let info = &t.hooks[0];
    assert_eq!(
        info.event,
        HookEvent::Tracepoint {
            subsys: "sched".into(),
            event: "sched_process_exec".into()
        }
    );
    assert_eq!(info.args[0].0, HookArg::String);
    assert_eq!(info.args[1].0, HookArg::Int);
    assert_eq!(info.message.as_deref(), Some("exec seen"));
}

#[test]
fn tracepoint_errors_name_the_argument() {
    let past = EXEC_TP.replace("index: 5\n", "index: 9\n");
    let err = tables(&past, &env()).unwrap_err();
    assert_eq!(err.path, "spec.tracepoints[0].args[1]");
    assert!(err.reason.contains("7 fields; index 9"), "{err}");
    let missing = EXEC_TP.replace("sched_process_exec", "no_such_event");
    let err = tables(&missing, &env()).unwrap_err();
    assert!(err.reason.contains("does not exist"), "{err}");
}

#[test]
fn raw_syscalls_syscall64_with_a_syscall_list() {
    let yaml = std::fs::read_to_string(
        "/work/shared/compat/tetragon-policies/tracingpolicy/list-syscalls-tracepoint.yaml",
    )
    .unwrap()
    .replace("type: \"uint64\"", "type: \"syscall64\"");
    let t = tables(&yaml, &env()).unwrap();
    let hook = &t.others.hooks[0];
    assert_eq!(u32::from(hook.prep.args[0].post), VIGIL_POST_SYSCALL64);
    assert_eq!((hook.prep.args[0].off, hook.prep.args[0].size), (8, 8));
    let f = &hook.selectors[0].filters[0];
    assert_eq!(u32::from(f.op), VIGIL_OP_EQ);
    // dup and dup2 on x86_64.
    assert_eq!(&f.values[..usize::from(f.nvalues)], &[32, 33]);
    assert_eq!(t.hooks[0].args[0].0, HookArg::SyscallId);
}

#[test]
fn raw_tracepoint_linux_binprm() {
    let yaml =
        std::fs::read_to_string("/work/shared/compat/tetragon-policies/tracingpolicy/rawtp.yaml")
            .unwrap();
    let t = tables(&yaml, &env()).unwrap();
    let hook = &t.others.hooks[0];
    assert_eq!(
        hook.attach,
        Attach::RawTracepoint {
            event: "sched_process_exec".into()
        }
    );
    let a = hook.prep.args[0];
    assert_eq!(
        (u32::from(a.src), a.off, u32::from(a.post)),
        (VIGIL_SRC_RAW_ARG, 2, VIGIL_POST_BINPRM)
    );
    assert_eq!(u32::from(hook.config.arg_kind[0]), VIGIL_ARG_KSTRING);
    assert_eq!(t.hooks[0].args[0].0, HookArg::LinuxBinprm);
}

fn uprobe_yaml(target: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: up
spec:
  uprobes:
  - path: "/test/bin"
    {target}
    args:
    - index: 0
      type: int32
    - index: 1
      type: string
{extra}"#
    )
}

fn exe_env() -> (FakeEnv, Vec<u8>) {
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    (
        FakeEnv {
            files: vec![("/test/bin", exe.clone())],
        },
        exe,
    )
}

#[test]
fn uprobe_symbols_become_file_offsets_and_registers() {
    let (env, exe) = exe_env();
    let t = tables(&uprobe_yaml("symbols: [\"main\"]", ""), &env).unwrap();
    let hook = &t.others.hooks[0];
    let elf = Elf::parse(&exe).unwrap();
    let want = elf
        .file_offset(elf.function("main").unwrap().unwrap())
        .unwrap();
    assert_eq!(
        hook.attach,
        Attach::Uprobe {
            path: "/test/bin".into(),
            offset: want,
            ref_ctr_offset: 0,
            retprobe: false
        }
    );
    // rdi, then rsi (struct pt_regs offsets 112 and 104).
    assert_eq!(
        (u32::from(hook.prep.args[0].src), hook.prep.args[0].off),
        (VIGIL_SRC_REG, 112)
    );
    assert_eq!(hook.prep.args[0].size, 4);
    assert_eq!(hook.prep.args[1].off, 104);
    assert_eq!(u32::from(hook.config.arg_kind[1]), VIGIL_ARG_STRING);
    match &t.hooks[0].event {
        HookEvent::Uprobe { path, symbol, .. } => {
            assert_eq!((path.as_str(), symbol.as_str()), ("/test/bin", "main"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn uprobe_missing_symbol_and_digests() {
    let (env, exe) = exe_env();
    let err = tables(&uprobe_yaml("symbols: [\"no_such_symbol_here\"]", ""), &env).unwrap_err();
    assert!(
        err.reason
            .contains("symbol `no_such_symbol_here` not found in /test/bin"),
        "{err}"
    );
    let good = sha256_hex(&exe);
    let digest = |d: &str| format!("    binaryDigests: [\"sha256:{d}\"]\n");
    let t = tables(&uprobe_yaml("symbols: [\"main\"]", &digest(&good)), &env).unwrap();
    assert_eq!(t.others.hooks.len(), 1);
    let bad = "0".repeat(64);
    let err = tables(&uprobe_yaml("symbols: [\"main\"]", &digest(&bad)), &env).unwrap_err();
    assert_eq!(err.path, "spec.uprobes[0].binaryDigests");
    assert!(err.reason.contains(&good), "names the real digest: {err}");
    let ignored = format!(
        "{}    ignore:\n      digestVerificationFailure: true\n",
        digest(&bad)
    );
    let t = tables(&uprobe_yaml("symbols: [\"main\"]", &ignored), &env).unwrap();
    assert!(t.others.hooks.is_empty(), "hook skipped, policy loads");
}

#[test]
fn usdt_probe_arguments_and_semaphore() {
    let python = std::fs::read("/usr/bin/python3").expect("python3");
    let env = FakeEnv {
        files: vec![("/usr/bin/python3", python.clone())],
    };
    let yaml = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: py
spec:
  usdts:
  - path: "/usr/bin/python3"
    provider: "python"
    name: "audit"
    args:
    - index: 0
      type: string
"#;
    let t = tables(yaml, &env).unwrap();
    let elf = Elf::parse(&python).unwrap();
    let probe = usdt::probes(&elf)
        .unwrap()
        .into_iter()
        .find(|(p, _)| p.provider == "python" && p.name == "audit")
        .unwrap()
        .0;
    let hook = &t.others.hooks[0];
    assert_eq!(
        hook.attach,
        Attach::Uprobe {
            path: "/usr/bin/python3".into(),
            offset: probe.offset,
            ref_ctr_offset: probe.semaphore,
            retprobe: false
        }
    );
    assert!(matches!(
        t.hooks[0].event,
        HookEvent::Usdt { ref provider, ref name, .. } if provider == "python" && name == "audit"
    ));
    let set = format!(
        "{yaml}    selectors:\n    - matchActions:\n      - action: Set\n        argIndex: 0\n        argValue: 1\n"
    );
    let err = tables(&set, &env).unwrap_err();
    assert!(err.reason.contains("bpf_probe_write_user"), "{err}");
    let missing = yaml.replace("\"audit\"", "\"no_such_probe\"");
    let err = tables(&missing, &env).unwrap_err();
    assert!(
        err.reason.contains("python:no_such_probe not found"),
        "{err}"
    );
}

#[test]
fn every_syscall_rides_raw_syscalls_with_the_id_in_a_hidden_slot() {
    let yaml = std::fs::read_to_string(
        "/work/shared/compat/tetragon-policies/tracingpolicy/list-syscalls-generated.yaml",
    )
    .unwrap();
    let t = tables(&yaml, &env()).unwrap();
    assert!(t.tables.hooks.is_empty(), "no per-syscall tracepoint");
    let hook = &t.others.hooks[0];
    assert_eq!(
        hook.attach,
        Attach::Tracepoint {
            subsystem: "raw_syscalls".into(),
            event: "sys_enter".into()
        }
    );
    // `long id` at offset 8, with the ia32 bit.
    let id = hook.prep.args[0];
    assert_eq!(
        (u32::from(id.src), id.off, id.size),
        (VIGIL_SRC_RECORD, 8, 8)
    );
    assert_eq!(u32::from(id.post), VIGIL_POST_SYSCALL64);
    assert_eq!(hook.config.nargs, 1);
    assert_eq!(hook.selectors[0].bin_op, VIGIL_OP_IN);
    assert_eq!(t.hooks[0].event, HookEvent::EverySyscall { id_slot: 0 });
    assert!(
        t.hooks[0].args.is_empty(),
        "the id is not reported as an argument"
    );
}
