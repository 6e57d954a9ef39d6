//! Selector checks: fields that may be set together, argument filters and their values,
//! actions for the hook kind.

use std::collections::BTreeSet;

use super::{Checker, HookView};
use crate::error::ErrorCode;
use crate::limits;
use crate::model::*;
use crate::types::{Action, ArgType, IMA_HASH_HOOKS, Operator, TypeClass};
use crate::values::{check_value, parse_rate_limit};

impl Checker<'_> {
    pub(super) fn selector(&mut self, hook: &HookView<'_>, selector: &Selector, path: &str) {
        // Macros are spliced in; a field set both by the selector and a macro (or by two
        // macros) is refused, as Tetragon does.
        let mut parts: Vec<(&Selector, String)> = vec![(selector, path.to_string())];
        let mut already_set: BTreeSet<&'static str> = set_fields(selector).into_iter().collect();
        for (i, name) in selector.macros.iter().enumerate() {
            let macro_path = format!("{path}.macros[{i}]");
            match self.spec.selectors_macros.get(name) {
                Some(body) => {
                    for field in set_fields(body) {
                        if !already_set.insert(field) {
                            self.at_value(&macro_path, ErrorCode::MacroConflict, format!("macro `{name}` sets `{field}`, which the selector or another macro already sets"));
                        }
                    }
                    parts.push((body, format!("spec.selectorsMacros.{name}")));
                }
                None if self.source.broken_names.contains(&format!("macro:{name}")) => {}
                None => self.at_value(
                    &macro_path,
                    ErrorCode::UnknownMacro,
                    format!("macro `{name}` is not defined in spec.selectorsMacros"),
                ),
            }
        }
        let total = |f: fn(&Selector) -> usize| parts.iter().map(|(s, _)| f(s)).sum::<usize>();
        let actions = total(|s| s.match_actions.len());
        if actions > limits::MAX_ACTIONS.max {
            self.limit(
                &format!("{path}.matchActions[{}]", limits::MAX_ACTIONS.max),
                limits::MAX_ACTIONS,
                "actions per selector",
            );
        }
        for (part, base) in &parts {
            self.selector_fields(hook, part, base);
        }
    }

    fn selector_fields(&mut self, hook: &HookView<'_>, s: &Selector, path: &str) {
        let positional = hook.kind == HookKind::Tracepoint;
        self.arg_filters(
            &s.match_args,
            hook.args,
            &format!("{path}.matchArgs"),
            "args",
            positional,
        );
        self.arg_filters(
            &s.match_data,
            hook.data,
            &format!("{path}.matchData"),
            "data",
            positional,
        );
        if !s.match_return_args.is_empty() {
            let returns: Vec<ArgSpec> = hook.return_arg.cloned().into_iter().collect();
            if returns.is_empty() {
                self.at_key(
                    &format!("{path}.matchReturnArgs"),
                    ErrorCode::MissingField,
                    "matchReturnArgs needs the hook's `returnArg`",
                );
            }
        }
        for (i, pids) in s.match_pids.iter().enumerate() {
            self.count(
                &format!("{path}.matchPIDs[{i}].values"),
                pids.values.len(),
                limits::MAX_PID_VALUES,
                "PID values",
            );
        }
        for (field, list) in [
            ("matchBinaries", &s.match_binaries),
            ("matchParentBinaries", &s.match_parent_binaries),
        ] {
            self.count(
                &format!("{path}.{field}"),
                list.len(),
                limits::MAX_BINARY_SELECTORS,
                field,
            );
            for (i, b) in list.iter().enumerate() {
                if b.follow_children {
                    self.follow_children_sections += 1;
                    if !matches!(b.operator, Operator::In | Operator::NotIn) {
                        self.at_key(
                            &format!("{path}.{field}[{i}].followChildren"),
                            ErrorCode::Conflict,
                            "followChildren works only with In or NotIn",
                        );
                    }
                }
            }
        }
        self.count(
            &format!("{path}.matchNamespaces"),
            s.match_namespaces.len(),
            limits::MAX_NAMESPACES,
            "namespaces",
        );
        for (i, ns) in s.match_namespaces.iter().enumerate() {
            self.count(
                &format!("{path}.matchNamespaces[{i}].values"),
                ns.values.len(),
                limits::MAX_NAMESPACE_VALUES,
                "namespace values",
            );
        }
        for (field, list) in [
            ("matchActions", &s.match_actions),
            ("matchReturnActions", &s.match_return_actions),
        ] {
            for (i, action) in list.iter().enumerate() {
                self.action(hook, action, &format!("{path}.{field}[{i}]"));
            }
        }
    }

    fn arg_filters(
        &mut self,
        filters: &[ArgSelector],
        specs: &[ArgSpec],
        path: &str,
        what: &str,
        positional: bool,
    ) {
        self.count(
            path,
            filters.len(),
            limits::MAX_MATCH_ARGS,
            "argument filters per selector",
        );
        self.cel_exprs(filters, path);
        for (i, filter) in filters.iter().enumerate() {
            let fp = format!("{path}[{i}]");
            let mut types = Vec::new();
            if !filter.args.is_empty() {
                for (j, &pos) in filter.args.iter().enumerate() {
                    match specs.get(pos as usize) {
                        Some(spec) => types.push(spec.arg_type),
                        None => self.at_value(
                            &format!("{fp}.args[{j}]"),
                            ErrorCode::IndexOutOfRange,
                            format!(
                                "position {pos} is past the hook's {} {what} entries",
                                specs.len()
                            ),
                        ),
                    }
                }
            } else if let Some(index) = filter.index {
                // Filters name an argument's index; on tracepoints, an index no argument
                // has is a position in `args` (Tetragon rewrites field indices to positions
                // and leaves the others as they are).
                let found = specs
                    .iter()
                    .find(|s| s.index == index)
                    .or_else(|| positional.then(|| specs.get(index as usize)).flatten());
                match found {
                    Some(spec) => types.push(spec.arg_type),
                    None => {
                        let known: Vec<String> =
                            specs.iter().map(|s| s.index.to_string()).collect();
                        self.at_value(
                            &format!("{fp}.index"),
                            ErrorCode::IndexOutOfRange,
                            format!(
                                "no entry of `{what}` has index {index} (defined: [{}])",
                                known.join(", ")
                            ),
                        );
                    }
                }
            } else {
                self.at_value(
                    &format!("{fp}.index"),
                    ErrorCode::MissingField,
                    "an argument filter needs `index` or `args`",
                );
                continue;
            }
            for arg_type in types {
                if !filter.operator.applies_to(arg_type.class()) {
                    self.at_value(
                        &format!("{fp}.operator"),
                        ErrorCode::OperatorNotAllowed,
                        format!(
                            "operator {} cannot filter an argument of type {arg_type}",
                            filter.operator
                        ),
                    );
                    break;
                }
                self.filter_values(filter, arg_type, &fp);
            }
        }
    }

    /// `CelExpr` filters: each must lower to engine comparisons (see [`crate::celexpr`]),
    /// and what they lower to counts against the selector's argument filters.
    fn cel_exprs(&mut self, filters: &[ArgSelector], path: &str) {
        let mut total = 0;
        let mut first_cel = None;
        for (i, filter) in filters.iter().enumerate() {
            if filter.operator != Operator::CelExpr {
                total += 1;
                continue;
            }
            let fp = format!("{path}[{i}]");
            first_cel.get_or_insert_with(|| fp.clone());
            total += 1;
            if filter.args.is_empty() {
                self.at_value(
                    &format!("{fp}.operator"),
                    ErrorCode::MissingField,
                    "CelExpr names its arguments with `args` (arg0 is the argument at args[0])",
                );
                continue;
            }
            if filter.values.len() != 1 {
                self.at_value(
                    &format!("{fp}.values"),
                    ErrorCode::InvalidValue,
                    format!(
                        "CelExpr takes exactly one expression, not {}",
                        filter.values.len()
                    ),
                );
                continue;
            }
            match crate::celexpr::lower(&filter.values[0], filter.args.len()) {
                Ok(comparisons) => total += comparisons.len().saturating_sub(1),
                Err(reason) => {
                    self.at_value(&format!("{fp}.values[0]"), ErrorCode::InvalidValue, reason)
                }
            }
        }
        let max = limits::MAX_MATCH_ARGS.max;
        if let Some(fp) = first_cel
            && filters.len() <= max
            && total > max
        {
            self.at_value(
                &format!("{fp}.values[0]"),
                ErrorCode::Limit,
                format!(
                    "CelExpr: with its comparisons the selector has {total} argument filters, \
                     more than {max}"
                ),
            );
        }
    }

    fn filter_values(&mut self, filter: &ArgSelector, arg_type: ArgType, path: &str) {
        use Operator::*;
        let op = filter.operator;
        let values_path = format!("{path}.values");
        if filter.values.is_empty() {
            if !op.takes_no_values() && op != CapabilitiesGained {
                self.at_value(
                    &values_path,
                    ErrorCode::MissingField,
                    format!("operator {op} needs `values`"),
                );
            }
            return;
        }
        let class = arg_type.class();
        let count_limit = match op {
            SubString | SubStringIgnCase => Some(limits::MAX_SUBSTRING_VALUES),
            Equal | NotEqual | GreaterThan | LessThan | Mask if class == TypeClass::Integer => {
                Some(limits::MAX_MATCH_VALUES)
            }
            _ => None,
        };
        if let Some(limit) = count_limit {
            self.count(
                &values_path,
                filter.values.len(),
                limit,
                "values of one filter",
            );
        }
        for (i, value) in filter.values.iter().enumerate() {
            let vp = format!("{values_path}[{i}]");
            if let Err(reason) = check_value(op, class, value, |name| self.list_exists(name)) {
                let code = if reason.starts_with("list") {
                    ErrorCode::UnknownList
                } else {
                    ErrorCode::InvalidValue
                };
                self.at_value(&vp, code, reason);
                continue;
            }
            let length_limit = match op {
                Prefix | NotPrefix => Some(limits::MAX_PREFIX_LENGTH),
                Postfix | NotPostfix => Some(limits::MAX_POSTFIX_LENGTH),
                Equal | NotEqual if class != TypeClass::Integer => {
                    Some(limits::MAX_STRING_VALUE_LENGTH)
                }
                _ => None,
            };
            if let Some(limit) = length_limit
                && value.len() > limit.max
            {
                self.limit(&vp, limit, "value length");
            }
        }
    }

    fn action(&mut self, hook: &HookView<'_>, a: &ActionSelector, path: &str) {
        let action_path = format!("{path}.action");
        let kind = hook.kind;
        let refuse = |c: &mut Self, why: &str| {
            c.at_value(
                &action_path,
                ErrorCode::ActionNotAllowed,
                format!("{} is not possible on {}: {why}", a.action, kind.field()),
            );
        };
        if kind == HookKind::Fentry && a.action.is_enforcement() {
            refuse(
                self,
                "enforcement is not supported for fentry (as in Tetragon); use kprobes or lsmhooks",
            );
        } else {
            match a.action {
                Action::Override
                    if !matches!(kind, HookKind::Kprobe | HookKind::Lsm | HookKind::Uprobe) =>
                {
                    refuse(
                        self,
                        "only kprobes, lsmhooks and uprobes can override a return value",
                    )
                }
                Action::Set if kind != HookKind::Usdt => {
                    refuse(self, "Set writes a USDT argument; it exists only for usdts")
                }
                Action::TrackSock | Action::UntrackSock
                    if !matches!(kind, HookKind::Kprobe | HookKind::Fentry) =>
                {
                    refuse(self, "socket tracking is done from kernel function probes")
                }
                _ => {}
            }
        }
        let missing = |c: &mut Self, field: &str| {
            c.at_value(
                &format!("{path}.{field}"),
                ErrorCode::MissingField,
                format!("{} needs `{field}`", a.action),
            );
        };
        match a.action {
            Action::Signal if a.arg_sig.is_none() => missing(self, "argSig"),
            Action::GetUrl if a.arg_url.is_none() => missing(self, "argUrl"),
            Action::DnsLookup if a.arg_fqdn.is_none() => missing(self, "argFqdn"),
            Action::Set if a.arg_index.is_none() => missing(self, "argIndex"),
            Action::Set if a.arg_value.is_none() => missing(self, "argValue"),
            Action::NotifyEnforcer if self.spec.enforcers.is_empty() => {
                self.at_value(
                    &action_path,
                    ErrorCode::MissingEnforcer,
                    "NotifyEnforcer needs an enforcer in spec.enforcers",
                );
            }
            _ => {}
        }
        let redirects = [
            a.arg_new_symbol.is_some(),
            a.arg_new_addr.is_some(),
            a.arg_new_offset.is_some(),
        ];
        if redirects.iter().filter(|x| **x).count() > 1 {
            self.at_value(
                path,
                ErrorCode::Conflict,
                "give at most one of argNewSymbol, argNewAddr, argNewOffset",
            );
        }
        if let Some(rate) = &a.rate_limit
            && parse_rate_limit(rate).is_none()
        {
            self.at_value(
                &format!("{path}.rateLimit"),
                ErrorCode::InvalidValue,
                format!(
                    "rateLimit `{rate}`: a number with optional unit s, m or h (e.g. 30, 5m, 1h)"
                ),
            );
        }
        if let Some(scope) = &a.rate_limit_scope
            && !matches!(scope.as_str(), "thread" | "process" | "global")
        {
            self.at_value(
                &format!("{path}.rateLimitScope"),
                ErrorCode::InvalidValue,
                "rateLimitScope is thread, process or global",
            );
        }
        if a.ima_hash && !hook.lsm_hook.is_some_and(|h| IMA_HASH_HOOKS.contains(&h)) {
            self.at_key(
                &format!("{path}.imaHash"),
                ErrorCode::ActionNotAllowed,
                format!(
                    "imaHash works only on the LSM hooks {}",
                    IMA_HASH_HOOKS.join(", ")
                ),
            );
        }
    }
}

/// The selector fields that are set (for macro conflicts).
fn set_fields(s: &Selector) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut add = |name, set: bool| {
        if set {
            out.push(name);
        }
    };
    add("matchArgs", !s.match_args.is_empty());
    add("matchData", !s.match_data.is_empty());
    add("matchReturnArgs", !s.match_return_args.is_empty());
    add("matchPIDs", !s.match_pids.is_empty());
    add("matchBinaries", !s.match_binaries.is_empty());
    add("matchParentBinaries", !s.match_parent_binaries.is_empty());
    add("matchNamespaces", !s.match_namespaces.is_empty());
    add(
        "matchNamespaceChanges",
        !s.match_namespace_changes.is_empty(),
    );
    add("matchCapabilities", !s.match_capabilities.is_empty());
    add(
        "matchCapabilityChanges",
        !s.match_capability_changes.is_empty(),
    );
    add("matchWorkloads", !s.match_workloads.is_empty());
    add("matchActions", !s.match_actions.is_empty());
    add("matchReturnActions", !s.match_return_actions.is_empty());
    out
}
