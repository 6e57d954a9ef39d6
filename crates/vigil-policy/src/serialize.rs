//! Policy -> YAML. Aliases are written in their canonical spelling and defaults explicitly,
//! so the output parses back to a policy with the same meaning.

use std::collections::BTreeMap;

use crate::TracingPolicy;
use crate::decode::API_VERSION;
use crate::model::*;
use crate::yaml::{Node, emit, mapping, plain, sequence, text};

/// Serialises a policy as YAML text.
pub fn to_yaml(policy: &TracingPolicy) -> String {
    emit(&policy_node(policy))
}

fn policy_node(p: &TracingPolicy) -> Node {
    let mut meta = vec![("name", text(&p.metadata.name))];
    if let Some(ns) = &p.metadata.namespace {
        meta.push(("namespace", text(ns)));
    }
    if !p.metadata.labels.is_empty() {
        meta.push(("labels", string_map(&p.metadata.labels)));
    }
    if !p.metadata.annotations.is_empty() {
        meta.push(("annotations", string_map(&p.metadata.annotations)));
    }
    mapping(vec![
        ("apiVersion", text(API_VERSION)),
        ("kind", text(p.kind.name())),
        ("metadata", mapping(meta)),
        ("spec", spec_node(&p.spec)),
    ])
}

fn string_map(map: &BTreeMap<String, String>) -> Node {
    let entries = map.iter().map(|(k, v)| (text(k), text(v))).collect();
    Node {
        pos: Default::default(),
        value: crate::yaml::NodeValue::Mapping(entries),
    }
}

fn strings(values: &[String]) -> Node {
    sequence(values.iter().map(text).collect())
}

fn list<T>(items: &[T], f: impl Fn(&T) -> Node) -> Node {
    sequence(items.iter().map(f).collect())
}

/// Pushes a field only when it carries information.
struct Out<'a>(Vec<(&'a str, Node)>);

impl<'a> Out<'a> {
    fn opt_text(&mut self, key: &'a str, v: &Option<String>) {
        if let Some(v) = v {
            self.0.push((key, text(v)));
        }
    }
    fn opt_plain(&mut self, key: &'a str, v: Option<impl ToString>) {
        if let Some(v) = v {
            self.0.push((key, plain(&v)));
        }
    }
    fn flag(&mut self, key: &'a str, v: bool) {
        if v {
            self.0.push((key, plain(&true)));
        }
    }
    fn nonempty(&mut self, key: &'a str, len: usize, node: impl FnOnce() -> Node) {
        if len > 0 {
            self.0.push((key, node()));
        }
    }
    fn node(self) -> Node {
        mapping(self.0)
    }
}

fn spec_node(s: &Spec) -> Node {
    let mut o = Out(Vec::new());
    o.nonempty("kprobes", s.kprobes.len(), || list(&s.kprobes, kprobe_node));
    o.nonempty("fentries", s.fentries.len(), || {
        list(&s.fentries, kprobe_node)
    });
    o.nonempty("tracepoints", s.tracepoints.len(), || {
        list(&s.tracepoints, tracepoint_node)
    });
    o.nonempty("uprobes", s.uprobes.len(), || list(&s.uprobes, uprobe_node));
    o.nonempty("usdts", s.usdts.len(), || list(&s.usdts, usdt_node));
    o.nonempty("lsmhooks", s.lsmhooks.len(), || list(&s.lsmhooks, lsm_node));
    o.flag("loader", s.loader);
    o.nonempty("lists", s.lists.len(), || {
        list(&s.lists, |l| {
            let mut o = Out(vec![("name", text(&l.name))]);
            if let Some(t) = l.list_type {
                o.0.push(("type", text(t.name())));
            }
            o.nonempty("values", l.values.len(), || strings(&l.values));
            o.opt_text("pattern", &l.pattern);
            o.node()
        })
    });
    o.nonempty("enforcers", s.enforcers.len(), || {
        list(&s.enforcers, |e| {
            mapping(vec![("calls", strings(&e.calls))])
        })
    });
    o.nonempty("options", s.options.len(), || {
        list(&s.options, |opt| {
            mapping(vec![("name", text(&opt.name)), ("value", text(&opt.value))])
        })
    });
    o.nonempty("selectorsMacros", s.selectors_macros.len(), || {
        let entries = s
            .selectors_macros
            .iter()
            .map(|(k, v)| (text(k), selector_node(v)))
            .collect();
        Node {
            pos: Default::default(),
            value: crate::yaml::NodeValue::Mapping(entries),
        }
    });
    for (key, sel) in [
        ("podSelector", &s.pod_selector),
        ("containerSelector", &s.container_selector),
        ("hostSelector", &s.host_selector),
        ("nodeSelector", &s.node_selector),
    ] {
        if let Some(sel) = sel {
            o.0.push((key, label_selector_node(sel)));
        }
    }
    o.node()
}

fn label_selector_node(s: &LabelSelector) -> Node {
    let mut o = Out(Vec::new());
    o.nonempty("matchLabels", s.match_labels.len(), || {
        string_map(&s.match_labels)
    });
    o.nonempty("matchExpressions", s.match_expressions.len(), || {
        list(&s.match_expressions, |r| {
            mapping(vec![
                ("key", text(&r.key)),
                ("operator", text(&r.operator)),
                ("values", strings(&r.values)),
            ])
        })
    });
    o.node()
}

fn common<'a>(
    o: &mut Out<'a>,
    selectors: &'a [Selector],
    message: &Option<String>,
    tags: &[String],
) {
    o.nonempty("selectors", selectors.len(), || {
        list(selectors, selector_node)
    });
    o.opt_text("message", message);
    o.nonempty("tags", tags.len(), || strings(tags));
}

fn ignore_node(o: &mut Out<'_>, i: Ignore) {
    if i != Ignore::default() {
        let mut inner = Out(Vec::new());
        inner.flag("callNotFound", i.call_not_found);
        inner.flag("digestVerificationFailure", i.digest_verification_failure);
        o.0.push(("ignore", inner.node()));
    }
}

fn kprobe_node(k: &KProbeSpec) -> Node {
    let mut o = Out(vec![
        ("call", text(&k.call)),
        ("syscall", plain(&k.syscall)),
    ]);
    o.flag("return", k.r#return);
    o.nonempty("args", k.args.len(), || list(&k.args, arg_node));
    o.nonempty("data", k.data.len(), || list(&k.data, arg_node));
    if let Some(r) = &k.return_arg {
        o.0.push(("returnArg", arg_node(r)));
    }
    if let Some(a) = k.return_arg_action {
        o.0.push(("returnArgAction", text(a.name())));
    }
    common(&mut o, &k.selectors, &k.message, &k.tags);
    ignore_node(&mut o, k.ignore);
    o.node()
}

fn tracepoint_node(t: &TracepointSpec) -> Node {
    let mut o = Out(vec![
        ("subsystem", text(&t.subsystem)),
        ("event", text(&t.event)),
    ]);
    o.flag("raw", t.raw);
    o.nonempty("args", t.args.len(), || list(&t.args, arg_node));
    common(&mut o, &t.selectors, &t.message, &t.tags);
    o.node()
}

fn uprobe_node(u: &UProbeSpec) -> Node {
    let mut o = Out(vec![("path", text(&u.path))]);
    o.opt_text("btfPath", &u.btf_path);
    o.nonempty("symbols", u.symbols.len(), || strings(&u.symbols));
    let numbers = |v: &[u64]| sequence(v.iter().map(plain).collect());
    o.nonempty("offsets", u.offsets.len(), || numbers(&u.offsets));
    o.nonempty("addrs", u.addrs.len(), || numbers(&u.addrs));
    o.nonempty("refCtrOffsets", u.ref_ctr_offsets.len(), || {
        numbers(&u.ref_ctr_offsets)
    });
    o.flag("return", u.r#return);
    if let Some(r) = &u.return_arg {
        o.0.push(("returnArg", arg_node(r)));
    }
    o.nonempty("args", u.args.len(), || list(&u.args, arg_node));
    o.nonempty("data", u.data.len(), || list(&u.data, arg_node));
    common(&mut o, &u.selectors, &u.message, &u.tags);
    o.nonempty("binaryDigests", u.binary_digests.len(), || {
        strings(&u.binary_digests)
    });
    ignore_node(&mut o, u.ignore);
    o.node()
}

fn usdt_node(u: &UsdtSpec) -> Node {
    let mut o = Out(vec![
        ("path", text(&u.path)),
        ("provider", text(&u.provider)),
        ("name", text(&u.name)),
    ]);
    o.opt_text("btfPath", &u.btf_path);
    o.nonempty("args", u.args.len(), || list(&u.args, arg_node));
    common(&mut o, &u.selectors, &u.message, &u.tags);
    o.node()
}

fn lsm_node(l: &LsmHookSpec) -> Node {
    let mut o = Out(vec![("hook", text(&l.hook))]);
    o.nonempty("args", l.args.len(), || list(&l.args, arg_node));
    common(&mut o, &l.selectors, &l.message, &l.tags);
    o.node()
}

fn arg_node(a: &ArgSpec) -> Node {
    let mut o = Out(vec![
        ("index", plain(&a.index)),
        ("type", text(a.arg_type.name())),
    ]);
    o.opt_text("label", &a.label);
    o.opt_plain("sizeArgIndex", a.size_arg_index);
    o.flag("returnCopy", a.return_copy);
    o.flag("maxData", a.max_data);
    o.opt_text("resolve", &a.resolve);
    o.opt_text("btfType", &a.btf_type);
    o.opt_text("btfTypeModule", &a.btf_type_module);
    o.opt_text("source", &a.source);
    o.opt_plain("size", a.size);
    o.node()
}

fn arg_selector_node(a: &ArgSelector) -> Node {
    let mut o = Out(Vec::new());
    o.opt_plain("index", a.index);
    o.nonempty("args", a.args.len(), || {
        sequence(a.args.iter().map(plain).collect())
    });
    o.0.push(("operator", text(a.operator.name())));
    o.nonempty("values", a.values.len(), || strings(&a.values));
    o.node()
}

fn binary_node(b: &BinarySelector) -> Node {
    let mut o = Out(vec![
        ("operator", text(b.operator.name())),
        ("values", strings(&b.values)),
    ]);
    o.flag("followChildren", b.follow_children);
    o.node()
}

fn capabilities_node(c: &CapabilitiesSelector) -> Node {
    let mut o = Out(vec![
        ("type", text(c.set.name())),
        ("operator", text(c.operator.name())),
    ]);
    o.flag("isNamespaceCapability", c.is_namespace_capability);
    o.0.push(("values", strings(&c.values)));
    o.node()
}

fn action_node(a: &ActionSelector) -> Node {
    let mut o = Out(vec![("action", text(a.action.name()))]);
    o.opt_plain("argError", a.arg_error);
    o.opt_plain("argSig", a.arg_sig);
    o.opt_text("argUrl", &a.arg_url);
    o.opt_text("argFqdn", &a.arg_fqdn);
    o.opt_plain("argSock", a.arg_sock);
    o.opt_plain("argFd", a.arg_fd);
    o.opt_plain("argName", a.arg_name);
    o.opt_text("rateLimit", &a.rate_limit);
    o.opt_text("rateLimitScope", &a.rate_limit_scope);
    o.flag("kernelStackTrace", a.kernel_stack_trace);
    o.flag("userStackTrace", a.user_stack_trace);
    o.flag("imaHash", a.ima_hash);
    o.nonempty("argRegs", a.arg_regs.len(), || strings(&a.arg_regs));
    o.opt_text("argNewSymbol", &a.arg_new_symbol);
    o.opt_plain("argNewAddr", a.arg_new_addr);
    o.opt_plain("argNewOffset", a.arg_new_offset);
    o.opt_plain("argIndex", a.arg_index);
    o.opt_plain("argValue", a.arg_value);
    o.node()
}

fn selector_node(s: &Selector) -> Node {
    let mut o = Out(Vec::new());
    o.opt_text("label", &s.label);
    o.nonempty("matchArgs", s.match_args.len(), || {
        list(&s.match_args, arg_selector_node)
    });
    o.nonempty("matchData", s.match_data.len(), || {
        list(&s.match_data, arg_selector_node)
    });
    o.nonempty("matchReturnArgs", s.match_return_args.len(), || {
        list(&s.match_return_args, arg_selector_node)
    });
    o.nonempty("matchPIDs", s.match_pids.len(), || {
        list(&s.match_pids, |p| {
            let mut o = Out(vec![
                ("operator", text(p.operator.name())),
                ("values", sequence(p.values.iter().map(plain).collect())),
            ]);
            o.flag("isNamespacePID", p.is_namespace_pid);
            o.flag("followForks", p.follow_forks);
            o.node()
        })
    });
    o.nonempty("matchBinaries", s.match_binaries.len(), || {
        list(&s.match_binaries, binary_node)
    });
    o.nonempty("matchParentBinaries", s.match_parent_binaries.len(), || {
        list(&s.match_parent_binaries, binary_node)
    });
    o.nonempty("matchNamespaces", s.match_namespaces.len(), || {
        list(&s.match_namespaces, |n| {
            mapping(vec![
                ("namespace", text(n.namespace.name())),
                ("operator", text(n.operator.name())),
                ("values", strings(&n.values)),
            ])
        })
    });
    o.nonempty(
        "matchNamespaceChanges",
        s.match_namespace_changes.len(),
        || {
            list(&s.match_namespace_changes, |n| {
                mapping(vec![
                    ("operator", text(n.operator.name())),
                    (
                        "values",
                        sequence(n.values.iter().map(|v| text(v.name())).collect()),
                    ),
                ])
            })
        },
    );
    o.nonempty("matchCapabilities", s.match_capabilities.len(), || {
        list(&s.match_capabilities, capabilities_node)
    });
    o.nonempty(
        "matchCapabilityChanges",
        s.match_capability_changes.len(),
        || list(&s.match_capability_changes, capabilities_node),
    );
    o.nonempty("matchWorkloads", s.match_workloads.len(), || {
        list(&s.match_workloads, |w| {
            let mut o = Out(Vec::new());
            for (key, sel) in [
                ("hostSelector", &w.host_selector),
                ("podSelector", &w.pod_selector),
                ("containerSelector", &w.container_selector),
            ] {
                if let Some(sel) = sel {
                    o.0.push((key, label_selector_node(sel)));
                }
            }
            o.node()
        })
    });
    o.nonempty("matchActions", s.match_actions.len(), || {
        list(&s.match_actions, action_node)
    });
    o.nonempty("matchReturnActions", s.match_return_actions.len(), || {
        list(&s.match_return_actions, action_node)
    });
    o.nonempty("macros", s.macros.len(), || strings(&s.macros));
    o.node()
}
