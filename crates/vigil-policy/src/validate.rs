//! Semantic checks that need no kernel: references resolve, indices exist, operators fit the
//! argument type, values parse, actions fit the hook, limits hold.

use std::collections::{BTreeSet, HashSet};

use crate::decode::parse_int;
use crate::error::{Collector, ErrorCode};
use crate::limits::{self, Limit};
use crate::model::*;
use crate::source::SourceMap;
use crate::types::{Action, ArgType, IMA_HASH_HOOKS, ListType, Operator, TypeClass};

struct Checker<'a> {
    errors: &'a mut Collector,
    source: &'a SourceMap,
    spec: &'a Spec,
    follow_children_sections: usize,
}

/// One hook as the checks see it, whatever its kind.
pub(crate) struct HookView<'a> {
    pub kind: HookKind,
    pub path: String,
    pub args: &'a [ArgSpec],
    pub data: &'a [ArgSpec],
    pub return_arg: Option<&'a ArgSpec>,
    pub selectors: &'a [Selector],
    pub message: Option<&'a str>,
    pub tags: &'a [String],
    /// LSM hook name (for imaHash).
    pub lsm_hook: Option<&'a str>,
}

/// Every hook of a spec, with its YAML path.
pub(crate) fn hooks<'a>(spec: &'a Spec, source: &SourceMap) -> Vec<HookView<'a>> {
    let mut out = Vec::new();
    for (kind, list) in [
        (HookKind::Kprobe, &spec.kprobes),
        (HookKind::Fentry, &spec.fentries),
    ] {
        for (i, k) in list.iter().enumerate() {
            out.push(HookView {
                kind,
                path: source.hook_path(kind.field(), i),
                args: &k.args,
                data: &k.data,
                return_arg: k.return_arg.as_ref(),
                selectors: &k.selectors,
                message: k.message.as_deref(),
                tags: &k.tags,
                lsm_hook: None,
            });
        }
    }
    for (i, t) in spec.tracepoints.iter().enumerate() {
        out.push(HookView {
            kind: HookKind::Tracepoint,
            path: source.hook_path("tracepoints", i),
            args: &t.args,
            data: &[],
            return_arg: None,
            selectors: &t.selectors,
            message: t.message.as_deref(),
            tags: &t.tags,
            lsm_hook: None,
        });
    }
    for (i, u) in spec.uprobes.iter().enumerate() {
        out.push(HookView {
            kind: HookKind::Uprobe,
            path: source.hook_path("uprobes", i),
            args: &u.args,
            data: &u.data,
            return_arg: u.return_arg.as_ref(),
            selectors: &u.selectors,
            message: u.message.as_deref(),
            tags: &u.tags,
            lsm_hook: None,
        });
    }
    for (i, u) in spec.usdts.iter().enumerate() {
        out.push(HookView {
            kind: HookKind::Usdt,
            path: source.hook_path("usdts", i),
            args: &u.args,
            data: &[],
            return_arg: None,
            selectors: &u.selectors,
            message: u.message.as_deref(),
            tags: &u.tags,
            lsm_hook: None,
        });
    }
    for (i, l) in spec.lsmhooks.iter().enumerate() {
        out.push(HookView {
            kind: HookKind::Lsm,
            path: source.hook_path("lsmhooks", i),
            args: &l.args,
            data: &[],
            return_arg: None,
            selectors: &l.selectors,
            message: l.message.as_deref(),
            tags: &l.tags,
            lsm_hook: Some(&l.hook),
        });
    }
    out
}

pub(crate) fn validate(kind: PolicyKind, spec: &Spec, source: &SourceMap, errors: &mut Collector) {
    let mut c = Checker {
        errors,
        source,
        spec,
        follow_children_sections: 0,
    };
    c.spec_level(kind);
    for hook in hooks(spec, source) {
        c.hook(&hook);
    }
    for (i, k) in spec.kprobes.iter().enumerate() {
        c.kprobe(k, &source.hook_path("kprobes", i));
    }
    for (i, k) in spec.fentries.iter().enumerate() {
        c.kprobe(k, &source.hook_path("fentries", i));
    }
    for (i, u) in spec.uprobes.iter().enumerate() {
        c.uprobe(u, &source.hook_path("uprobes", i));
    }
    if c.follow_children_sections > limits::MAX_FOLLOW_CHILDREN_SECTIONS.max {
        c.limit(
            "spec",
            limits::MAX_FOLLOW_CHILDREN_SECTIONS,
            "matchBinaries sections with followChildren",
        );
    }
}

impl Checker<'_> {
    fn at_value(&mut self, path: &str, code: ErrorCode, message: impl Into<String>) {
        let pos = self.source.value_pos(path);
        self.errors.push(path, pos, code, message);
    }

    fn at_key(&mut self, path: &str, code: ErrorCode, message: impl Into<String>) {
        let pos = self.source.key_pos(path);
        self.errors.push(path, pos, code, message);
    }

    fn limit(&mut self, path: &str, limit: Limit, what: &str) {
        self.at_value(
            path,
            ErrorCode::Limit,
            format!(
                "{what}: limit {} exceeded (at most {})",
                limit.name, limit.max
            ),
        );
    }

    /// Reports the first item past `limit` of a list.
    fn count(&mut self, list_path: &str, len: usize, limit: Limit, what: &str) {
        if len > limit.max {
            self.limit(&format!("{list_path}[{}]", limit.max), limit, what);
        }
    }

    fn list_exists(&self, name: &str) -> bool {
        self.spec.lists.iter().any(|l| l.name == name)
            || self.source.broken_names.contains(&format!("list:{name}"))
    }

    fn spec_level(&mut self, kind: PolicyKind) {
        let spec = self.spec;
        if let Some(host) = &spec.host_selector {
            if kind == PolicyKind::TracingPolicyNamespaced {
                self.at_key(
                    "spec.hostSelector",
                    ErrorCode::Conflict,
                    "a TracingPolicyNamespaced cannot select host workloads; remove hostSelector",
                );
            } else if host != &LabelSelector::default() {
                self.at_value(
                    "spec.hostSelector",
                    ErrorCode::InvalidValue,
                    "hostSelector may only be null or {} (all host workloads)",
                );
            }
        }
        let mut names = HashSet::new();
        for (i, list) in spec.lists.iter().enumerate() {
            let path = format!("spec.lists[{i}]");
            if !names.insert(list.name.as_str()) {
                self.at_value(
                    &format!("{path}.name"),
                    ErrorCode::Duplicate,
                    format!("list `{}` is defined twice", list.name),
                );
            }
            match list.list_type {
                Some(ListType::GeneratedFtrace) if list.pattern.is_none() => {
                    self.at_value(
                        &format!("{path}.pattern"),
                        ErrorCode::MissingField,
                        "a generated_ftrace list needs `pattern`",
                    );
                }
                Some(ListType::Syscalls) | None if list.values.is_empty() => {
                    self.at_value(
                        &format!("{path}.values"),
                        ErrorCode::MissingField,
                        "a syscalls list needs `values`",
                    );
                }
                _ => {}
            }
        }
        self.count(
            "spec.enforcers",
            spec.enforcers.len(),
            limits::MAX_ENFORCERS,
            "enforcer definitions",
        );
        for (i, enforcer) in spec.enforcers.iter().enumerate() {
            for (j, call) in enforcer.calls.iter().enumerate() {
                self.list_reference(call, &format!("spec.enforcers[{i}].calls[{j}]"));
            }
        }
        for (i, option) in spec.options.iter().enumerate() {
            self.option(option, &format!("spec.options[{i}]"));
        }
    }

    fn list_reference(&mut self, call: &str, path: &str) {
        if let Some(name) = call.strip_prefix("list:")
            && !self.list_exists(name)
        {
            self.at_value(
                path,
                ErrorCode::UnknownList,
                format!("list `{name}` is not defined in spec.lists"),
            );
        }
    }

    fn option(&mut self, option: &OptionSpec, path: &str) {
        let value_path = format!("{path}.value");
        let ok = match option.name.as_str() {
            "disable-kprobe-multi" | "disable-uprobe-multi" => {
                matches!(
                    option.value.to_ascii_lowercase().as_str(),
                    "true" | "false" | "1" | "0" | ""
                )
            }
            "policy-mode" => matches!(option.value.as_str(), "enforce" | "monitor"),
            "override-method" => matches!(option.value.as_str(), "override-return" | "fmod-ret"),
            "sleepable-preload-size" => parse_int(&option.value).is_some_and(|v| v > 0),
            other => {
                self.at_value(&format!("{path}.name"), ErrorCode::UnknownOption, format!("unknown option `{other}` (disable-kprobe-multi, disable-uprobe-multi, policy-mode, override-method, sleepable-preload-size)"));
                return;
            }
        };
        if !ok {
            self.at_value(
                &value_path,
                ErrorCode::InvalidValue,
                format!(
                    "`{}` is not a valid value for option {}",
                    option.value, option.name
                ),
            );
        }
    }

    fn kprobe(&mut self, k: &KProbeSpec, path: &str) {
        self.list_reference(&k.call, &format!("{path}.call"));
        if k.r#return && k.return_arg.is_none() {
            self.at_value(
                &format!("{path}.returnArg"),
                ErrorCode::MissingField,
                "`return: true` needs `returnArg`",
            );
        }
    }

    fn uprobe(&mut self, u: &UProbeSpec, path: &str) {
        let given: Vec<&str> = [
            ("symbols", !u.symbols.is_empty()),
            ("offsets", !u.offsets.is_empty()),
            ("addrs", !u.addrs.is_empty()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect();
        match given.as_slice() {
            [] => self.at_value(
                &format!("{path}.symbols"),
                ErrorCode::MissingField,
                "a uprobe needs one of symbols, offsets or addrs",
            ),
            [_] => {}
            [first, rest @ ..] => {
                for other in rest {
                    self.at_key(&format!("{path}.{other}"), ErrorCode::Conflict, format!("`{other}` cannot be combined with `{first}`: give exactly one of symbols, offsets, addrs"));
                }
            }
        }
        for (i, digest) in u.binary_digests.iter().enumerate() {
            let valid = digest.split_once(':').is_some_and(|(algo, hex)| {
                let len = match algo {
                    "sha1" => 40,
                    "sha256" => 64,
                    "sha384" => 96,
                    "sha512" => 128,
                    "build-id" => hex.len(),
                    _ => return false,
                };
                hex.len() == len && !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit())
            });
            if !valid {
                self.at_value(&format!("{path}.binaryDigests[{i}]"), ErrorCode::InvalidValue, format!("`{digest}` is not sha1:/sha256:/sha384:/sha512:/build-id: followed by hex digits of the right length"));
            }
        }
    }

    fn hook(&mut self, hook: &HookView<'_>) {
        let p = &hook.path;
        if let Some(message) = hook.message
            && message.chars().count() > limits::MAX_MESSAGE_LENGTH.max
        {
            self.limit(
                &format!("{p}.message"),
                limits::MAX_MESSAGE_LENGTH,
                "message length",
            );
        }
        self.count(
            &format!("{p}.tags"),
            hook.tags.len(),
            limits::MAX_TAGS,
            "tags",
        );
        let arg_limit = if hook.kind == HookKind::Usdt {
            limits::MAX_USDT_ARGS
        } else {
            limits::MAX_ARGS
        };
        if hook.args.len() > arg_limit.max {
            self.limit(
                &format!("{p}.args[{}]", arg_limit.max),
                arg_limit,
                "arguments (args + data)",
            );
        } else if hook.args.len() + hook.data.len() > arg_limit.max {
            self.limit(
                &format!("{p}.data[{}]", arg_limit.max - hook.args.len()),
                arg_limit,
                "arguments (args + data)",
            );
        }
        for (list, name) in [(hook.args, "args"), (hook.data, "data")] {
            for (i, arg) in list.iter().enumerate() {
                self.arg(hook, arg, &format!("{p}.{name}[{i}]"));
            }
        }
        if let Some(arg) = hook.return_arg {
            self.arg(hook, arg, &format!("{p}.returnArg"));
        }
        self.count(
            &format!("{p}.selectors"),
            hook.selectors.len(),
            limits::MAX_SELECTORS,
            "selectors",
        );
        for (i, selector) in hook.selectors.iter().enumerate() {
            self.selector(hook, selector, &format!("{p}.selectors[{i}]"));
        }
    }

    fn arg(&mut self, hook: &HookView<'_>, arg: &ArgSpec, path: &str) {
        if arg.arg_type == ArgType::Auto && hook.kind != HookKind::Tracepoint {
            self.at_value(&format!("{path}.type"), ErrorCode::TypeNotAllowed, "type `auto` (from the tracepoint format) exists only for tracepoints; name the type");
        }
        if arg.arg_type == ArgType::Syscall64 && hook.kind != HookKind::Tracepoint {
            self.at_value(
                &format!("{path}.type"),
                ErrorCode::TypeNotAllowed,
                "type `syscall64` exists only for tracepoints (raw_syscalls)",
            );
        }
        if arg.max_data && arg.return_copy {
            self.at_key(
                &format!("{path}.maxData"),
                ErrorCode::Conflict,
                "`maxData` cannot be combined with `returnCopy`",
            );
        }
        if arg.size_arg_index == Some(0) {
            self.at_value(
                &format!("{path}.sizeArgIndex"),
                ErrorCode::InvalidValue,
                "sizeArgIndex is 1-based (argument index + 1); 0 means none, omit it",
            );
        }
        if let Some(resolve) = &arg.resolve
            && resolve.split('.').count() > limits::MAX_RESOLVE_DEPTH.max
        {
            self.limit(
                &format!("{path}.resolve"),
                limits::MAX_RESOLVE_DEPTH,
                "resolve depth",
            );
        }
    }

    fn selector(&mut self, hook: &HookView<'_>, selector: &Selector, path: &str) {
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
                // Tracepoint filters name a position in `args` (Tetragon numbers tracepoint
                // arguments by their order in the spec); other hooks name an argument index.
                let found = if positional {
                    specs.get(index as usize)
                } else {
                    specs.iter().find(|s| s.index == index)
                };
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

use crate::values::{check_value, parse_rate_limit};
