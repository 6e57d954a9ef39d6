//! YAML tree -> policy model. Schema faults (unknown or missing fields, wrong shapes,
//! unknown names) are reported here, all of them; cross-field meaning is checked in
//! `validate`.

use std::collections::BTreeMap;

use crate::decode_hooks::{
    decode_kprobe, decode_lsm, decode_tracepoint, decode_uprobe, decode_usdt,
};
use crate::error::{Collector, ErrorCode};
use crate::model::*;
use crate::source::SourceMap;
use crate::types::{ArgType, ListType};
use crate::yaml::{Node, NodeValue, Pos};

pub(crate) const API_VERSION: &str = "cilium.io/v1alpha1";

/// A mapping being read field by field; fields never taken are reported as unknown.
pub(crate) struct Fields<'n> {
    pub path: String,
    pub pos: Pos,
    entries: &'n [(Node, Node)],
    used: Vec<bool>,
}

impl Fields<'_> {
    pub fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

pub(crate) struct Decoder<'c> {
    pub errors: &'c mut Collector,
    pub source: SourceMap,
}

impl<'c> Decoder<'c> {
    pub fn new(errors: &'c mut Collector, file: &str) -> Self {
        let source = SourceMap {
            file: file.to_string(),
            ..SourceMap::default()
        };
        Self { errors, source }
    }

    pub fn error(&mut self, path: &str, pos: Pos, code: ErrorCode, message: impl Into<String>) {
        self.errors.push(path, pos, code, message);
    }

    pub fn error_count(&self) -> usize {
        self.errors.errors.len()
    }

    /// Opens a mapping; `null` reads as an empty mapping, anything else is a wrong type.
    pub fn mapping<'n>(&mut self, node: &'n Node, path: &str) -> Option<Fields<'n>> {
        let entries: &'n [(Node, Node)] = match &node.value {
            NodeValue::Mapping(entries) => entries,
            _ if node.is_null() => &[],
            _ => {
                let found = node.kind_name();
                self.error(
                    path,
                    node.pos,
                    ErrorCode::WrongType,
                    format!("expected a mapping, found {found}"),
                );
                return None;
            }
        };
        for (i, (key, _)) in entries.iter().enumerate() {
            let name = scalar(key).unwrap_or_default();
            if entries[..i]
                .iter()
                .any(|(earlier, _)| scalar(earlier) == Some(name))
            {
                let child = if path.is_empty() {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                };
                self.error(
                    &child,
                    key.pos,
                    ErrorCode::DuplicateKey,
                    format!("`{name}` is given more than once"),
                );
            }
        }
        Some(Fields {
            path: path.to_string(),
            pos: node.pos,
            entries,
            used: vec![false; entries.len()],
        })
    }

    /// Takes a field (the first, if duplicated); `null` values count as absent.
    pub fn take<'n>(&mut self, fields: &mut Fields<'n>, key: &str) -> Option<&'n Node> {
        let mut found = None;
        for (i, (k, v)) in fields.entries.iter().enumerate() {
            if scalar(k) == Some(key) {
                fields.used[i] = true;
                if found.is_none() {
                    found = Some((k, v));
                }
            }
        }
        let (k, v) = found?;
        self.source.record(&fields.child(key), k.pos, v.pos);
        if v.is_null() { None } else { Some(v) }
    }

    /// Reports fields that no decoder asked for.
    pub fn finish(&mut self, fields: &Fields<'_>) {
        for (i, (key, _)) in fields.entries.iter().enumerate() {
            if !fields.used[i] {
                let name = scalar(key).unwrap_or("?").to_string();
                let path = fields.child(&name);
                self.error(
                    &path,
                    key.pos,
                    ErrorCode::UnknownField,
                    format!("unknown field `{name}`"),
                );
            }
        }
    }

    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match scalar(node) {
            Some(text) => Some(text.to_string()),
            None => {
                let found = node.kind_name();
                self.error(
                    path,
                    node.pos,
                    ErrorCode::WrongType,
                    format!("expected a string, found {found}"),
                );
                None
            }
        }
    }

    pub fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        match scalar(node) {
            Some("true" | "True" | "TRUE") => Some(true),
            Some("false" | "False" | "FALSE") => Some(false),
            _ => {
                self.error(
                    path,
                    node.pos,
                    ErrorCode::InvalidBool,
                    "expected true or false",
                );
                None
            }
        }
    }

    pub fn signed(&mut self, node: &Node, path: &str) -> Option<i64> {
        match scalar(node).and_then(parse_int) {
            Some(value) => Some(value),
            None => {
                self.error(
                    path,
                    node.pos,
                    ErrorCode::InvalidNumber,
                    "expected an integer",
                );
                None
            }
        }
    }

    pub fn unsigned<T: TryFrom<i64>>(&mut self, node: &Node, path: &str) -> Option<T> {
        let parsed = scalar(node)
            .and_then(parse_int)
            .and_then(|v| T::try_from(v).ok());
        if parsed.is_none() {
            let bits = std::mem::size_of::<T>() * 8;
            self.error(
                path,
                node.pos,
                ErrorCode::InvalidNumber,
                format!("expected an unsigned {bits}-bit integer"),
            );
        }
        parsed
    }

    pub fn list<'n>(&mut self, node: &'n Node, path: &str) -> &'n [Node] {
        match &node.value {
            NodeValue::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    self.source.record(&item_path, item.pos, item.pos);
                }
                items
            }
            _ => {
                let found = node.kind_name();
                self.error(
                    path,
                    node.pos,
                    ErrorCode::WrongType,
                    format!("expected a list, found {found}"),
                );
                &[]
            }
        }
    }

    // Field-level conveniences: read `key` of `fields` with the right path.

    pub fn opt_string(&mut self, f: &mut Fields<'_>, key: &str) -> Option<String> {
        let node = self.take(f, key)?;
        self.string(node, &f.child(key))
    }

    pub fn req_string(&mut self, f: &mut Fields<'_>, key: &str) -> Option<String> {
        if self.take(f, key).is_none() {
            self.error(
                &f.child(key),
                f.pos,
                ErrorCode::MissingField,
                format!("`{key}` is required"),
            );
            return None;
        }
        self.opt_string(f, key)
    }

    pub fn opt_bool(&mut self, f: &mut Fields<'_>, key: &str) -> Option<bool> {
        let node = self.take(f, key)?;
        self.boolean(node, &f.child(key))
    }

    pub fn flag(&mut self, f: &mut Fields<'_>, key: &str) -> bool {
        self.opt_bool(f, key).unwrap_or(false)
    }

    pub fn opt_unsigned<T: TryFrom<i64>>(&mut self, f: &mut Fields<'_>, key: &str) -> Option<T> {
        let node = self.take(f, key)?;
        self.unsigned(node, &f.child(key))
    }

    pub fn opt_signed(&mut self, f: &mut Fields<'_>, key: &str) -> Option<i64> {
        let node = self.take(f, key)?;
        self.signed(node, &f.child(key))
    }

    pub fn string_list(&mut self, f: &mut Fields<'_>, key: &str) -> Vec<String> {
        let Some(node) = self.take(f, key) else {
            return Vec::new();
        };
        let path = f.child(key);
        let items = self.list(node, &path);
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.string(item, &format!("{path}[{i}]")))
            .collect()
    }

    pub fn unsigned_list<T: TryFrom<i64>>(&mut self, f: &mut Fields<'_>, key: &str) -> Vec<T> {
        let Some(node) = self.take(f, key) else {
            return Vec::new();
        };
        let path = f.child(key);
        let items = self.list(node, &path);
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.unsigned(item, &format!("{path}[{i}]")))
            .collect()
    }

    /// Decodes each item of list field `key`; items with faults are left out, and the
    /// original index of every kept item is returned alongside.
    pub fn items<T>(
        &mut self,
        f: &mut Fields<'_>,
        key: &str,
        mut decode: impl FnMut(&mut Self, &Node, &str) -> Option<T>,
    ) -> (Vec<T>, Vec<usize>) {
        let Some(node) = self.take(f, key) else {
            return (Vec::new(), Vec::new());
        };
        let path = f.child(key);
        let mut kept = Vec::new();
        let mut origins = Vec::new();
        for (i, item) in self.list(node, &path).iter().enumerate() {
            let before = self.error_count();
            let decoded = decode(self, item, &format!("{path}[{i}]"));
            if let Some(value) = decoded.filter(|_| self.error_count() == before) {
                kept.push(value);
                origins.push(i);
            }
        }
        (kept, origins)
    }
}

pub(crate) fn scalar(node: &Node) -> Option<&str> {
    match &node.value {
        NodeValue::Scalar { text, .. } => Some(text),
        _ => None,
    }
}

/// Integers as YAML and Tetragon write them: decimal, `0x` hex, `0o`/leading-zero octal,
/// optionally signed.
pub(crate) fn parse_int(text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let magnitude = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        u64::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        u64::from_str_radix(oct, 8).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        u64::from_str_radix(&digits[1..], 8).ok()?
    } else {
        digits.parse::<u64>().ok()?
    };
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        // Values above i64::MAX (e.g. 64-bit masks) keep their bit pattern.
        Some(magnitude as i64)
    }
}

/// The top level: apiVersion, kind, metadata, spec.
pub(crate) fn decode_policy(
    d: &mut Decoder<'_>,
    root: &Node,
) -> Option<(PolicyKind, Metadata, Spec)> {
    let mut top = d.mapping(root, "")?;
    match d.req_string(&mut top, "apiVersion") {
        Some(v) if v == API_VERSION => {}
        Some(v) => {
            let pos = d.source.value_pos("apiVersion");
            d.error(
                "apiVersion",
                pos,
                ErrorCode::ApiVersion,
                format!("unsupported apiVersion `{v}`, expected `{API_VERSION}`"),
            );
        }
        None => {}
    }
    let kind = match d.req_string(&mut top, "kind").as_deref() {
        Some("TracingPolicy") => Some(PolicyKind::TracingPolicy),
        Some("TracingPolicyNamespaced") => Some(PolicyKind::TracingPolicyNamespaced),
        Some(other) => {
            let pos = d.source.value_pos("kind");
            d.error(
                "kind",
                pos,
                ErrorCode::Kind,
                format!(
                    "unknown kind `{other}`, expected TracingPolicy or TracingPolicyNamespaced"
                ),
            );
            None
        }
        None => None,
    };
    let metadata = match d.take(&mut top, "metadata") {
        Some(node) => decode_metadata(d, node),
        None => {
            d.error(
                "metadata",
                top.pos,
                ErrorCode::MissingField,
                "`metadata` is required",
            );
            None
        }
    };
    let spec = match d.take(&mut top, "spec") {
        Some(node) => decode_spec(d, node),
        None => Some(Spec::default()),
    };
    // `status` is written by Kubernetes; a policy copied out of a cluster may carry it.
    let _ = d.take(&mut top, "status");
    d.finish(&top);
    Some((kind?, metadata?, spec?))
}

fn decode_metadata(d: &mut Decoder<'_>, node: &Node) -> Option<Metadata> {
    let mut f = d.mapping(node, "metadata")?;
    let name = d.req_string(&mut f, "name");
    let namespace = d.opt_string(&mut f, "namespace");
    let labels = string_map(d, &mut f, "labels");
    let annotations = string_map(d, &mut f, "annotations");
    // Kubernetes bookkeeping that may appear in exported objects; meaningless here.
    for key in [
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "finalizers",
        "generateName",
    ] {
        let _ = d.take(&mut f, key);
    }
    d.finish(&f);
    Some(Metadata {
        name: name?,
        namespace,
        labels,
        annotations,
    })
}

pub(crate) fn string_map(
    d: &mut Decoder<'_>,
    f: &mut Fields<'_>,
    key: &str,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(node) = d.take(f, key) else {
        return out;
    };
    let path = f.child(key);
    if let Some(mut inner) = d.mapping(node, &path) {
        let keys: Vec<String> = inner
            .entries
            .iter()
            .filter_map(|(k, _)| scalar(k).map(str::to_string))
            .collect();
        for k in keys {
            if let Some(v) = d.opt_string(&mut inner, &k) {
                out.insert(k, v);
            }
        }
        d.finish(&inner);
    }
    out
}

fn decode_spec(d: &mut Decoder<'_>, node: &Node) -> Option<Spec> {
    let mut f = d.mapping(node, "spec")?;
    let mut spec = Spec::default();
    // Lists and macros first: hooks refer to them.
    let (lists, _) = d.items(&mut f, "lists", decode_list);
    spec.lists = lists;
    spec.selectors_macros = decode_macros(d, &mut f);
    let (kprobes, o) = d.items(&mut f, "kprobes", |d, n, p| {
        decode_kprobe(d, n, p, HookKind::Kprobe)
    });
    spec.kprobes = kprobes;
    d.source.origins.insert("kprobes", o);
    let (fentries, o) = d.items(&mut f, "fentries", |d, n, p| {
        decode_kprobe(d, n, p, HookKind::Fentry)
    });
    spec.fentries = fentries;
    d.source.origins.insert("fentries", o);
    let (tracepoints, o) = d.items(&mut f, "tracepoints", decode_tracepoint);
    spec.tracepoints = tracepoints;
    d.source.origins.insert("tracepoints", o);
    let (uprobes, o) = d.items(&mut f, "uprobes", decode_uprobe);
    spec.uprobes = uprobes;
    d.source.origins.insert("uprobes", o);
    let (usdts, o) = d.items(&mut f, "usdts", decode_usdt);
    spec.usdts = usdts;
    d.source.origins.insert("usdts", o);
    let (lsmhooks, o) = d.items(&mut f, "lsmhooks", decode_lsm);
    spec.lsmhooks = lsmhooks;
    d.source.origins.insert("lsmhooks", o);
    spec.loader = d.flag(&mut f, "loader");
    let (enforcers, _) = d.items(&mut f, "enforcers", |d, n, p| {
        let mut e = d.mapping(n, p)?;
        let calls = d.string_list(&mut e, "calls");
        d.finish(&e);
        Some(EnforcerSpec { calls })
    });
    spec.enforcers = enforcers;
    let (options, _) = d.items(&mut f, "options", |d, n, p| {
        let mut o = d.mapping(n, p)?;
        let name = d.req_string(&mut o, "name");
        let value = d.opt_string(&mut o, "value").unwrap_or_default();
        d.finish(&o);
        Some(OptionSpec { name: name?, value })
    });
    spec.options = options;
    spec.pod_selector = opt_label_selector(d, &mut f, "podSelector");
    spec.container_selector = opt_label_selector(d, &mut f, "containerSelector");
    spec.host_selector = opt_label_selector(d, &mut f, "hostSelector");
    spec.node_selector = opt_label_selector(d, &mut f, "nodeSelector");
    d.finish(&f);
    Some(spec)
}

fn decode_macros(d: &mut Decoder<'_>, f: &mut Fields<'_>) -> BTreeMap<String, Selector> {
    let mut out = BTreeMap::new();
    let Some(node) = d.take(f, "selectorsMacros") else {
        return out;
    };
    let path = f.child("selectorsMacros");
    let Some(mut macros) = d.mapping(node, &path) else {
        return out;
    };
    let names: Vec<String> = macros
        .entries
        .iter()
        .filter_map(|(k, _)| scalar(k).map(str::to_string))
        .collect();
    for name in names {
        let before = d.error_count();
        let child = macros.child(&name);
        let selector = d
            .take(&mut macros, &name)
            .and_then(|n| crate::decode_selector::decode_selector(d, n, &child));
        match selector {
            Some(selector) if d.error_count() == before => {
                out.insert(name, selector);
            }
            _ => {
                d.source.broken_names.insert(format!("macro:{name}"));
            }
        }
    }
    d.finish(&macros);
    out
}

fn decode_list(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<ListSpec> {
    let mut f = d.mapping(node, path)?;
    let name = d.req_string(&mut f, "name");
    let list_type = match d.take(&mut f, "type") {
        Some(n) => {
            let child = f.child("type");
            let text = d.string(n, &child)?;
            let parsed = ListType::from_spelling(&text);
            if parsed.is_none() {
                d.error(&child, n.pos, ErrorCode::InvalidValue, format!("unknown list type `{text}` (syscalls, generated_syscalls, generated_ftrace)"));
                if let Some(name) = &name {
                    d.source.broken_names.insert(format!("list:{name}"));
                }
            }
            parsed
        }
        None => None,
    };
    let values = d.string_list(&mut f, "values");
    let pattern = d.opt_string(&mut f, "pattern");
    d.finish(&f);
    Some(ListSpec {
        name: name?,
        list_type,
        values,
        pattern,
    })
}

pub(crate) fn decode_arg(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<ArgSpec> {
    let mut f = d.mapping(node, path)?;
    let index = match d.take(&mut f, "index") {
        Some(n) => d.unsigned::<u32>(n, &f.child("index")),
        None => {
            d.error(
                &f.child("index"),
                f.pos,
                ErrorCode::MissingField,
                "`index` is required",
            );
            None
        }
    };
    let arg_type = match d.take(&mut f, "type") {
        Some(n) => {
            let child = f.child("type");
            let text = d.string(n, &child)?;
            let parsed = ArgType::from_spelling(&text);
            if parsed.is_none() {
                d.error(
                    &child,
                    n.pos,
                    ErrorCode::UnknownArgType,
                    format!("unknown argument type `{text}`"),
                );
            }
            parsed
        }
        // The CRD default.
        None => Some(ArgType::Auto),
    };
    let arg = ArgSpec {
        index: index.unwrap_or(0),
        arg_type: arg_type.unwrap_or(ArgType::Auto),
        label: d.opt_string(&mut f, "label"),
        size_arg_index: d.opt_unsigned(&mut f, "sizeArgIndex"),
        return_copy: d.flag(&mut f, "returnCopy"),
        max_data: d.flag(&mut f, "maxData"),
        resolve: d.opt_string(&mut f, "resolve"),
        btf_type: d.opt_string(&mut f, "btfType"),
        btf_type_module: d.opt_string(&mut f, "btfTypeModule"),
        source: d.opt_string(&mut f, "source"),
        size: d.opt_unsigned(&mut f, "size"),
    };
    d.finish(&f);
    index?;
    arg_type?;
    Some(arg)
}

pub(crate) fn opt_label_selector(
    d: &mut Decoder<'_>,
    f: &mut Fields<'_>,
    key: &str,
) -> Option<LabelSelector> {
    let node = d.take(f, key);
    let path = f.child(key);
    // `hostSelector: {}` means "all hosts" and differs from absent, so an empty or null
    // mapping that is present still yields Some.
    let present = f.entries.iter().any(|(k, _)| scalar(k) == Some(key));
    let Some(node) = node else {
        return present.then(LabelSelector::default);
    };
    let mut s = d.mapping(node, &path)?;
    let match_labels = string_map(d, &mut s, "matchLabels");
    let (match_expressions, _) = d.items(&mut s, "matchExpressions", |d, n, p| {
        let mut e = d.mapping(n, p)?;
        let key = d.req_string(&mut e, "key");
        let operator = d.req_string(&mut e, "operator");
        let values = d.string_list(&mut e, "values");
        d.finish(&e);
        if let Some(op) = &operator
            && !matches!(op.as_str(), "In" | "NotIn" | "Exists" | "DoesNotExist")
        {
            let child = format!("{p}.operator");
            let pos = d.source.value_pos(&child);
            d.error(
                &child,
                pos,
                ErrorCode::InvalidValue,
                format!("label operator `{op}`: In, NotIn, Exists or DoesNotExist"),
            );
            return None;
        }
        Some(LabelRequirement {
            key: key?,
            operator: operator?,
            values,
        })
    });
    d.finish(&s);
    Some(LabelSelector {
        match_labels,
        match_expressions,
    })
}
