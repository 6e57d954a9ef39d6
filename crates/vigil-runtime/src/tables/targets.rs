//! Kernel-function targets: lists and generated_ftrace patterns expanded, absent functions
//! refused by name, and `resolve` member paths from a function's arguments.

use super::{HookArg, Unsupported, readers, unsupported};
use vigil_bpf::abi::*;
use vigil_bpf::kfuncs::KfuncAttach;
use vigil_policy::compile::HookPlan;

/// The kernel functions (or LSM hooks) of `hook`, generated_ftrace patterns expanded; a
/// function this kernel does not have is refused by name (before anything is attached).
pub(super) fn kernel_targets(
    hook: &HookPlan,
    attach: KfuncAttach,
    env: &dyn crate::hooks::HookEnv,
) -> Result<Vec<String>, Unsupported> {
    let mut out = Vec::new();
    // LSM programs attach to the kernel's bpf_lsm_<hook> stubs.
    let function_of = |t: &String| {
        if attach == KfuncAttach::Lsm {
            format!("bpf_lsm_{t}")
        } else {
            t.clone()
        }
    };
    let named: Vec<String> = hook
        .targets
        .iter()
        .filter(|t| vigil_policy::compile::ftrace_pattern(t).is_none())
        .map(function_of)
        .collect();
    if let Some(function) = env.missing_functions(&named).first() {
        return Err(unsupported(
            &hook.path,
            format!(
                "kernel function {function} not found in this kernel (not among its traceable functions)"
            ),
        ));
    }
    for target in &hook.targets {
        if let Some(pattern) = vigil_policy::compile::ftrace_pattern(target) {
            let re = regex::Regex::new(pattern).map_err(|e| {
                unsupported(
                    &hook.path,
                    format!("generated_ftrace pattern {pattern:?}: {e}"),
                )
            })?;
            let found: Vec<String> = env
                .ftrace_functions()
                .map_err(|e| unsupported(&hook.path, e))?
                .into_iter()
                .filter(|f| re.is_match(f))
                .collect();
            if found.is_empty() {
                return Err(unsupported(
                    &hook.path,
                    format!("no traceable function matches {pattern:?} on this kernel"),
                ));
            }
            out.extend(found);
            continue;
        }
        out.push(target.clone());
    }
    Ok(out)
}

/// `resolve` on a kernel-function argument: the member path from the struct the argument
/// points to (`btfType`, else the function's prototype in the kernel's BTF).
pub(super) fn kernel_resolve(
    path: &str,
    function: &str,
    a: &vigil_policy::compile::ArgReader,
) -> Result<(u8, HookArg, vigil_btf_chain), Unsupported> {
    let root = match &a.btf_type {
        Some(t) => t.trim_start_matches("struct ").to_string(),
        None => {
            let btf = readers::vmlinux().map_err(|e| unsupported(path, e))?;
            // LSM hooks are typed by their bpf_lsm_<hook> stubs.
            let params = btf
                .function_params(function)
                .or_else(|| btf.function_params(&format!("bpf_lsm_{function}")))
                .ok_or_else(|| {
                    unsupported(
                        path,
                        format!(
                            "{function} is not in the kernel's BTF: name its type with btfType"
                        ),
                    )
                })?;
            match params.get(a.index as usize).map(|p| &p.shape) {
                Some(vigil_policy::btf::ParamShape::Pointer(name)) if !name.is_empty() => {
                    name.clone()
                }
                _ => {
                    return Err(unsupported(
                        path,
                        format!(
                            "argument {} of {function} is not a pointer to a struct: resolve needs one (or btfType)",
                            a.index
                        ),
                    ));
                }
            }
        }
    };
    readers::btf_chain(path, a, &root, 0)
}
