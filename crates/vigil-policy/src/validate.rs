//! Semantic checks that need no kernel: references resolve, indices exist, operators fit the
//! argument type, values parse, actions fit the hook, limits hold.

use std::collections::HashSet;

use crate::decode::parse_int;
use crate::error::{Collector, ErrorCode};
use crate::limits::{self, Limit};
use crate::model::*;
use crate::source::SourceMap;
use crate::types::{ArgType, ListType};

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
}

mod selector;
