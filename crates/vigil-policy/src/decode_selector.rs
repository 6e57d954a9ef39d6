//! Selector decoding: matchArgs, matchPIDs, matchBinaries, namespaces, capabilities,
//! workloads and actions.

use crate::decode::{Decoder, Fields, opt_label_selector, parse_int, scalar};
use crate::error::ErrorCode;
use crate::model::*;
use crate::types::{Action, CAPABILITIES, CapabilitySet, NamespaceKind, Operator};
use crate::yaml::Node;

pub(crate) fn decode_selector(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Selector> {
    let mut f = d.mapping(node, path)?;
    let selector = Selector {
        label: d.opt_string(&mut f, "label"),
        match_args: d.items(&mut f, "matchArgs", decode_arg_selector).0,
        match_data: d.items(&mut f, "matchData", decode_arg_selector).0,
        match_return_args: d.items(&mut f, "matchReturnArgs", decode_arg_selector).0,
        match_pids: d.items(&mut f, "matchPIDs", decode_pids).0,
        match_binaries: d.items(&mut f, "matchBinaries", decode_binaries).0,
        match_parent_binaries: d.items(&mut f, "matchParentBinaries", decode_binaries).0,
        match_namespaces: d.items(&mut f, "matchNamespaces", decode_namespaces).0,
        match_namespace_changes: d
            .items(&mut f, "matchNamespaceChanges", decode_namespace_changes)
            .0,
        match_capabilities: d.items(&mut f, "matchCapabilities", decode_capabilities).0,
        match_capability_changes: d
            .items(&mut f, "matchCapabilityChanges", decode_capabilities)
            .0,
        match_workloads: decode_workloads(d, &mut f),
        match_actions: d.items(&mut f, "matchActions", decode_action).0,
        match_return_actions: d.items(&mut f, "matchReturnActions", decode_action).0,
        macros: d.string_list(&mut f, "macros"),
    };
    d.finish(&f);
    Some(selector)
}

/// Reads `operator`, which must be one of `allowed` (all operators when empty).
fn operator(d: &mut Decoder<'_>, f: &mut Fields<'_>, allowed: &[Operator]) -> Option<Operator> {
    let path = f.child("operator");
    let Some(node) = d.take(f, "operator") else {
        d.error(
            &path,
            f.pos,
            ErrorCode::MissingField,
            "`operator` is required",
        );
        return None;
    };
    let text = d.string(node, &path)?;
    let Some(op) = Operator::from_spelling(&text) else {
        d.error(
            &path,
            node.pos,
            ErrorCode::UnknownOperator,
            format!("unknown operator `{text}`"),
        );
        return None;
    };
    if !allowed.is_empty() && !allowed.contains(&op) {
        let names: Vec<_> = allowed.iter().map(|o| o.name()).collect();
        d.error(
            &path,
            node.pos,
            ErrorCode::OperatorNotAllowed,
            format!(
                "operator `{text}` is not allowed here; use one of {}",
                names.join(", ")
            ),
        );
        return None;
    }
    Some(op)
}

fn decode_arg_selector(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<ArgSelector> {
    let mut f = d.mapping(node, path)?;
    let index = d.opt_unsigned(&mut f, "index");
    let args = d.unsigned_list(&mut f, "args");
    let operator = operator(d, &mut f, &[]);
    let values = d.string_list(&mut f, "values");
    d.finish(&f);
    Some(ArgSelector {
        index,
        args,
        operator: operator?,
        values,
    })
}

fn decode_pids(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<PidSelector> {
    let mut f = d.mapping(node, path)?;
    let operator = operator(d, &mut f, &[Operator::In, Operator::NotIn]);
    let mut values = Vec::new();
    if let Some(list) = d.take(&mut f, "values") {
        let list_path = f.child("values");
        for (i, item) in d.list(list, &list_path).iter().enumerate() {
            match scalar(item)
                .and_then(parse_int)
                .and_then(|v| u32::try_from(v).ok())
            {
                Some(pid) => values.push(pid),
                None => d.error(
                    &format!("{list_path}[{i}]"),
                    item.pos,
                    ErrorCode::InvalidValue,
                    "a PID is an unsigned 32-bit integer",
                ),
            }
        }
    }
    let selector = PidSelector {
        operator: operator?,
        values,
        is_namespace_pid: d.flag(&mut f, "isNamespacePID"),
        follow_forks: d.flag(&mut f, "followForks"),
    };
    d.finish(&f);
    Some(selector)
}

fn decode_binaries(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<BinarySelector> {
    use Operator::*;
    let mut f = d.mapping(node, path)?;
    let operator = operator(
        d,
        &mut f,
        &[In, NotIn, Prefix, NotPrefix, Postfix, NotPostfix],
    );
    let values = d.string_list(&mut f, "values");
    let follow_children = d.flag(&mut f, "followChildren");
    d.finish(&f);
    Some(BinarySelector {
        operator: operator?,
        values,
        follow_children,
    })
}

fn namespace_kind(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<NamespaceKind> {
    let text = d.string(node, path)?;
    let found = NamespaceKind::ALL
        .iter()
        .copied()
        .find(|k| k.name().eq_ignore_ascii_case(&text));
    if found.is_none() {
        d.error(path, node.pos, ErrorCode::InvalidValue, format!("unknown namespace `{text}` (Uts, Ipc, Mnt, Pid, PidForChildren, Net, Time, TimeForChildren, Cgroup, User)"));
    }
    found
}

fn decode_namespaces(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<NamespaceSelector> {
    let mut f = d.mapping(node, path)?;
    let namespace = match d.take(&mut f, "namespace") {
        Some(n) => namespace_kind(d, n, &f.child("namespace")),
        None => {
            d.error(
                &f.child("namespace"),
                f.pos,
                ErrorCode::MissingField,
                "`namespace` is required",
            );
            None
        }
    };
    let operator = operator(d, &mut f, &[Operator::In, Operator::NotIn]);
    let values = d.string_list(&mut f, "values");
    d.finish(&f);
    let values_path = format!("{path}.values");
    for (i, value) in values.iter().enumerate() {
        if value != "host_ns" && parse_int(value).is_none_or(|v| u32::try_from(v).is_err()) {
            let item = format!("{values_path}[{i}]");
            let pos = d.source.value_pos(&item);
            d.error(
                &item,
                pos,
                ErrorCode::InvalidValue,
                format!("`{value}` is neither a namespace inode number nor host_ns"),
            );
        }
    }
    Some(NamespaceSelector {
        namespace: namespace?,
        operator: operator?,
        values,
    })
}

fn decode_namespace_changes(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
) -> Option<NamespaceChangesSelector> {
    let mut f = d.mapping(node, path)?;
    let operator = operator(d, &mut f, &[Operator::In, Operator::NotIn]);
    let mut values = Vec::new();
    if let Some(list) = d.take(&mut f, "values") {
        let list_path = f.child("values");
        for (i, item) in d.list(list, &list_path).iter().enumerate() {
            values.extend(namespace_kind(d, item, &format!("{list_path}[{i}]")));
        }
    }
    d.finish(&f);
    Some(NamespaceChangesSelector {
        operator: operator?,
        values,
    })
}

fn decode_capabilities(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
) -> Option<CapabilitiesSelector> {
    let mut f = d.mapping(node, path)?;
    let set = match d.take(&mut f, "type") {
        Some(n) => {
            let child = f.child("type");
            let text = d.string(n, &child)?;
            let found = CapabilitySet::ALL
                .iter()
                .copied()
                .find(|s| s.name().eq_ignore_ascii_case(&text));
            if found.is_none() {
                d.error(
                    &child,
                    n.pos,
                    ErrorCode::InvalidValue,
                    format!("unknown capability set `{text}` (Effective, Inheritable, Permitted)"),
                );
            }
            found
        }
        None => Some(CapabilitySet::Effective),
    };
    let operator = operator(d, &mut f, &[Operator::In, Operator::NotIn]);
    let is_namespace_capability = d.flag(&mut f, "isNamespaceCapability");
    let mut values = Vec::new();
    if let Some(list) = d.take(&mut f, "values") {
        let list_path = f.child("values");
        for (i, item) in d.list(list, &list_path).iter().enumerate() {
            let item_path = format!("{list_path}[{i}]");
            let Some(text) = d.string(item, &item_path) else {
                continue;
            };
            if CAPABILITIES.iter().any(|c| c.eq_ignore_ascii_case(&text)) {
                values.push(text);
            } else {
                d.error(
                    &item_path,
                    item.pos,
                    ErrorCode::InvalidValue,
                    format!("unknown capability `{text}`"),
                );
            }
        }
    }
    d.finish(&f);
    Some(CapabilitiesSelector {
        set: set?,
        operator: operator?,
        is_namespace_capability,
        values,
    })
}

fn decode_workloads(d: &mut Decoder<'_>, f: &mut Fields<'_>) -> Vec<WorkloadSelector> {
    d.items(f, "matchWorkloads", |d, n, p| {
        let mut w = d.mapping(n, p)?;
        let selector = WorkloadSelector {
            host_selector: opt_label_selector(d, &mut w, "hostSelector"),
            pod_selector: opt_label_selector(d, &mut w, "podSelector"),
            container_selector: opt_label_selector(d, &mut w, "containerSelector"),
        };
        d.finish(&w);
        Some(selector)
    })
    .0
}

fn decode_action(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<ActionSelector> {
    let mut f = d.mapping(node, path)?;
    let action = match d.take(&mut f, "action") {
        Some(n) => {
            let child = f.child("action");
            let text = d.string(n, &child)?;
            let parsed = Action::parse(&text);
            if parsed.is_none() {
                let hint = if ["followfd", "unfollowfd", "copyfd"]
                    .contains(&text.to_ascii_lowercase().as_str())
                {
                    " (removed from Tetragon)"
                } else {
                    ""
                };
                d.error(
                    &child,
                    n.pos,
                    ErrorCode::UnknownAction,
                    format!("unknown action `{text}`{hint}"),
                );
            }
            parsed
        }
        // The CRD default.
        None => Some(Action::Post),
    };
    let mut a = ActionSelector::new(action.unwrap_or(Action::Post));
    a.arg_error = d.opt_signed(&mut f, "argError");
    a.arg_sig = d.opt_unsigned(&mut f, "argSig");
    a.arg_url = d.opt_string(&mut f, "argUrl");
    a.arg_fqdn = d.opt_string(&mut f, "argFqdn");
    a.arg_sock = d.opt_unsigned(&mut f, "argSock");
    a.arg_fd = d.opt_unsigned(&mut f, "argFd");
    a.arg_name = d.opt_unsigned(&mut f, "argName");
    a.rate_limit = d.opt_string(&mut f, "rateLimit");
    a.rate_limit_scope = d.opt_string(&mut f, "rateLimitScope");
    a.kernel_stack_trace = d.flag(&mut f, "kernelStackTrace");
    a.user_stack_trace = d.flag(&mut f, "userStackTrace");
    a.ima_hash = d.flag(&mut f, "imaHash");
    a.arg_regs = d.string_list(&mut f, "argRegs");
    a.arg_new_symbol = d.opt_string(&mut f, "argNewSymbol");
    a.arg_new_addr = d.opt_unsigned(&mut f, "argNewAddr");
    a.arg_new_offset = d.opt_unsigned(&mut f, "argNewOffset");
    a.arg_index = d.opt_unsigned(&mut f, "argIndex");
    a.arg_value = d.opt_signed(&mut f, "argValue");
    d.finish(&f);
    action?;
    Some(a)
}
