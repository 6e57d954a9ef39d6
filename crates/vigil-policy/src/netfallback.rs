//! vigil's own extension: network enforcement without kernel-function hooks. Where the
//! kernel has no kprobes, fentry or BPF LSM, a hook on `security_socket_connect`,
//! `tcp_connect` or `security_socket_bind` whose selectors enforce is run by cgroup
//! sock_addr programs (connect4/6, bind4/6) on the root cgroup v2 instead: they see every
//! connect()/bind() before it happens, with the destination (or bound) address and the
//! socket's family, type and protocol, nothing more.
//!
//! A hook is accepted only when the cgroup context decides every filter exactly as the
//! kernel function would; [`check`] names the first construct it cannot.

use std::net::IpAddr;

use crate::compile::{ArgOrigin, Filter, HookPlan};
use crate::types::{Action, ArgType, Operator};

/// The kernel functions the fallback stands in for.
pub const FUNCTIONS: &[&str] = &[
    "security_socket_connect",
    "tcp_connect",
    "security_socket_bind",
];

/// Whether every target is one of [`FUNCTIONS`].
pub fn covers(targets: &[String]) -> bool {
    !targets.is_empty() && targets.iter().all(|t| FUNCTIONS.contains(&t.as_str()))
}

fn is_enforcing(a: Action) -> bool {
    matches!(a, Action::Override | Action::Sigkill | Action::Signal)
}

/// Ok when the fallback runs `hook` exactly; else why not.
pub fn check(hook: &HookPlan) -> Result<(), String> {
    if hook.on_return {
        return Err("return probes need the kernel function".into());
    }
    let tcp_connect = hook.targets.iter().any(|t| t == "tcp_connect");
    for a in &hook.arguments {
        if a.origin != ArgOrigin::Argument {
            return Err("data and return readers need the kernel function".into());
        }
        let ok = match (a.index, a.arg_type) {
            (0, ArgType::Sock | ArgType::Socket) => true,
            (1, ArgType::Sockaddr) => !tcp_connect,
            (2, t) => !tcp_connect && t.integer_width().is_some(),
            _ => false,
        };
        if !ok || !a.resolve.is_empty() || a.btf_type.is_some() {
            return Err(format!(
                "argument {} of type {} is not in the socket hook's context (index 0 the \
                 socket, 1 the sockaddr, 2 its length)",
                a.index, a.arg_type
            ));
        }
    }
    let mut enforcing = false;
    for (si, sel) in hook.selectors.iter().enumerate() {
        if !sel.return_actions.is_empty() {
            return Err(format!(
                "selectors[{si}]: matchReturnActions need the kernel function"
            ));
        }
        for a in &sel.actions {
            if is_enforcing(a.action) {
                enforcing = true;
            } else if !matches!(a.action, Action::Post | Action::NoPost) {
                return Err(format!(
                    "selectors[{si}]: action {} is not supported there",
                    a.action
                ));
            }
            if matches!(a.action, Action::Sigkill | Action::Signal)
                && sel.actions.iter().any(|b| b.action == Action::NoPost)
            {
                // The signal is sent by the agent on the event (no bpf_send_signal there).
                return Err(format!(
                    "selectors[{si}]: Sigkill/Signal with NoPost (the agent signals on the event)"
                ));
            }
            if a.rate_limit.is_some() {
                return Err(format!("selectors[{si}]: rateLimit is not supported there"));
            }
        }
        for f in &sel.filters {
            match f {
                Filter::Arg {
                    origin: ArgOrigin::Argument,
                    positions,
                    operator,
                    values,
                } => {
                    for &pos in positions {
                        let reader = hook
                            .arguments
                            .iter()
                            .find(|a| a.index == pos)
                            .or_else(|| hook.arguments.get(pos as usize))
                            .ok_or_else(|| {
                                format!("selectors[{si}]: matchArgs index {pos} names no argument")
                            })?;
                        arg_filter(
                            si,
                            reader.index,
                            reader.arg_type,
                            *operator,
                            values,
                            tcp_connect,
                        )?;
                    }
                }
                Filter::Pids(_) => {}
                Filter::Binaries { parent: false, .. } => {}
                other => {
                    return Err(format!(
                        "selectors[{si}]: {} cannot be evaluated in the socket hook",
                        filter_name(other)
                    ));
                }
            }
        }
    }
    if !enforcing {
        return Err(
            "no selector enforces (Override, Sigkill or Signal); observing needs the kernel function"
                .into(),
        );
    }
    Ok(())
}

fn filter_name(f: &Filter) -> &'static str {
    match f {
        Filter::Arg {
            origin: ArgOrigin::Return,
            ..
        } => "matchReturnArgs",
        Filter::Arg { .. } => "matchData",
        Filter::Pids(_) => "matchPIDs",
        Filter::Binaries { parent: true, .. } => "matchParentBinaries",
        Filter::Binaries { .. } => "matchBinaries",
        Filter::Namespaces(_) => "matchNamespaces",
        Filter::NamespaceChanges(_) => "matchNamespaceChanges",
        Filter::Capabilities { .. } => "matchCapabilities",
        Filter::Workloads(_) => "matchWorkloads",
    }
}

/// The operators the socket context decides for an argument: the socket's family and
/// protocol (and, for tcp_connect, its peer); the sockaddr's address, port and family.
fn arg_filter(
    si: usize,
    index: u32,
    t: ArgType,
    op: Operator,
    values: &[String],
    tcp_connect: bool,
) -> Result<(), String> {
    use Operator::*;
    let sockaddr = t == ArgType::Sockaddr;
    let ok = match op {
        Family => t != ArgType::Skb,
        Protocol => !sockaddr,
        DAddr | NotDAddr | DPort | NotDPort | DPortPriv | NotDPortPriv => tcp_connect && !sockaddr,
        SAddr | NotSAddr | SPort | NotSPort | SPortPriv | NotSPortPriv => sockaddr,
        _ => false,
    };
    if !ok {
        return Err(format!(
            "selectors[{si}]: operator {op} on argument {index} ({t}) is not known before the \
             socket operation runs"
        ));
    }
    if matches!(op, SAddr | NotSAddr | DAddr | NotDAddr) {
        for v in values {
            let ip = v.split_once('/').map_or(v.as_str(), |(ip, _)| ip);
            if ip.parse::<IpAddr>().is_err() {
                return Err(format!(
                    "selectors[{si}]: {v:?} is not a literal address or CIDR (placeholders must be \
                     filled before loading)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "netfallback_tests.rs"]
mod tests;
