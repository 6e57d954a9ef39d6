//! A syscall hook on every system call (`generated_syscalls` lists): without kprobes, one
//! attachment on `raw_syscalls:sys_enter` sees every call, 64- and 32-bit alike. The
//! arguments are the record's `args[]`; the syscall id travels in one extra, unreported
//! argument slot so that events can name the call (`__x64_sys_kill`, `__ia32_sys_kill`).

use vigil_bpf::abi::*;
use vigil_bpf::hooks::Attach;
use vigil_policy::compile::{ArgOrigin, ArgReader, HookPlan, Plan};
use vigil_policy::types::ArgType;

use crate::hooks::{
    HookEnv, Placed, check_user_type, finish, prep, report_of, signed, unsupported, width,
};
use crate::tables::{HookEvent, Ids, PolicyTables, Unsupported};
use crate::tracefs;

pub fn build(
    plan: &Plan,
    hook: &HookPlan,
    ids: &mut Ids,
    resolve_binary: &dyn Fn(&str) -> Option<(u64, u64)>,
    env: &dyn HookEnv,
    out: &mut PolicyTables,
) -> Result<(), Unsupported> {
    let path = &hook.path;
    if hook.on_return {
        return Err(unsupported(
            path,
            "return probes on every system call are not supported yet",
        ));
    }
    let text = env
        .tracepoint_format("raw_syscalls", "sys_enter")
        .map_err(|e| unsupported(path, e))?;
    let fields = tracefs::parse_format(&text)
        .map_err(|e| unsupported(path, format!("format of raw_syscalls/sys_enter: {e}")))?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.offset)
            .ok_or_else(|| unsupported(path, format!("raw_syscalls/sys_enter has no `{name}`")))
    };
    let (id_off, args_off) = (field("id")?, field("args")?);
    let readers: Vec<&ArgReader> = hook
        .arguments
        .iter()
        .filter(|a| a.origin == ArgOrigin::Argument)
        .collect();
    if hook.arguments.len() != readers.len() {
        return Err(unsupported(
            path,
            "data and returnArg are not supported here yet",
        ));
    }
    if readers.len() >= VIGIL_MAX_ARGS as usize {
        return Err(unsupported(
            path,
            format!(
                "at most {} arguments on every system call (one slot carries the syscall id)",
                VIGIL_MAX_ARGS - 1
            ),
        ));
    }
    let mut placed = Vec::new();
    for (i, a) in readers.iter().enumerate() {
        let p = format!("{path}.args[{i}]");
        if a.index > 5 {
            return Err(unsupported(&p, "a syscall has at most 6 arguments"));
        }
        check_user_type(&p, a.arg_type)?;
        let size = if crate::hooks::is_text(a.arg_type) {
            8
        } else {
            width(a.arg_type)
        };
        placed.push(Placed {
            prep: prep(
                VIGIL_SRC_RECORD,
                args_off + 8 * a.index,
                size,
                signed(a.arg_type),
            ),
            kernel_string: false,
            report: report_of(a.arg_type),
            chain: None,
        });
    }
    let id_slot = placed.len();
    let mut id = prep(VIGIL_SRC_RECORD, id_off, 8, false);
    id.post = VIGIL_POST_SYSCALL64 as u8;
    placed.push(Placed {
        prep: id,
        kernel_string: false,
        report: report_of(ArgType::Syscall64),
        chain: None,
    });
    let mut with_id = hook.clone();
    with_id.arguments.push(ArgReader {
        origin: ArgOrigin::Argument,
        index: u32::MAX, // no policy index names it
        arg_type: ArgType::Syscall64,
        label: None,
        size_arg: None,
        read_at_return: false,
        max_bytes: 0,
        resolve: Vec::new(),
        btf_type: None,
        source: None,
    });
    let attach = Attach::Tracepoint {
        subsystem: "raw_syscalls".into(),
        event: "sys_enter".into(),
    };
    let ev = HookEvent::EverySyscall { id_slot };
    finish(
        plan,
        &with_id,
        &placed,
        attach,
        ev,
        ids,
        resolve_binary,
        out,
    )?;
    let info = out.hooks.last_mut().expect("finish registers the hook");
    info.args.truncate(id_slot);
    Ok(())
}
