//! Which return probes a kernel-function hook can run, by how it attaches.

use vigil_bpf::kfuncs::KfuncAttach;
use vigil_policy::compile::{ArgOrigin, Filter, HookPlan};
use vigil_policy::types::Action;

use super::{Unsupported, unsupported};

/// Refuses a `return: true` hook the attachment cannot run; returns whether the hook reports
/// its Override value as its return (fmod_ret).
pub(super) fn check(
    path: &str,
    hook: &HookPlan,
    attach: Option<KfuncAttach>,
) -> Result<bool, Unsupported> {
    // `return: true` with Override on fmod_ret: the function is skipped when a selector
    // matches, so what it returns is the Override value; other selectors would need the
    // real return value, which fmod_ret does not see.
    let override_return = attach == Some(KfuncAttach::FmodRet) && hook.on_return;
    if override_return {
        let every_override = hook.selectors.iter().all(|t| {
            t.actions.iter().any(|a| a.action == Action::Override)
                && !t.filters.iter().any(|f| {
                    matches!(
                        f,
                        Filter::Arg {
                            origin: ArgOrigin::Return,
                            ..
                        }
                    )
                })
        });
        if !every_override {
            return Err(unsupported(
                path,
                "return: true with Override reports the Override value (the function is                  skipped): every selector needs Override and no matchReturnArgs",
            ));
        }
    }
    let kernel_return = matches!(attach, Some(KfuncAttach::Fexit | KfuncAttach::KprobeRet));
    if hook.on_return && attach.is_some() && !kernel_return && !override_return {
        return Err(unsupported(
            path,
            "return probes on kernel functions run only through fexit: one function per hook on a kernel with fentry (kretprobes are not implemented yet)",
        ));
    }
    Ok(override_return)
}
