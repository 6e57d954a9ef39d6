//! Our compiled .proto against Tetragon's published API: message, field and enum names,
//! numbers and types, oneofs and the FineGuidanceSensors RPCs. The expected side is the
//! hand-written table `tetragon_api.table` (from the upstream files); the actual side is the
//! `FileDescriptorSet` protoc produced from `proto/tetragon/*.proto`.
//!
//! A field or enum value of ours below 50000 (vigil's range) that the table does not have
//! is an error unless it is in `NEWER_THAN_TABLE`: fields of Tetragon's HEAD that the
//! snapshots behind the table predate, whose numbers are inferred (marked so in the .proto).

use std::collections::BTreeMap;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

const TABLE: &str = include_str!("tetragon_api.table");

/// (message or enum, field or value): in our .proto, newer than the table's snapshots.
const NEWER_THAN_TABLE: &[(&str, &str)] = &[
    ("tetragon.Filter", "container_name_regex"),
    ("tetragon.Filter", "namespace_regex"),
    ("tetragon.KprobeArgument", "error_arg"),
    ("tetragon.KprobeArgument", "sockaddrun_arg"),
    ("tetragon.TracingPolicyState", "TP_STATE_SKIPPED"),
    ("tetragon.TracingPolicyState", "TP_STATE_PARTIALLY_ENABLED"),
    ("tetragon.TracingPolicySelectorActionCounters", "hook_index"),
    (
        "tetragon.TracingPolicySelectorActionCounters",
        "selector_label",
    ),
    ("tetragon.TracingPolicyStatus", "hook_statuses"),
];

#[derive(Debug, Default)]
struct Expected {
    /// message -> field -> "number type [oneof=x]"
    messages: BTreeMap<String, BTreeMap<String, String>>,
    enums: BTreeMap<String, BTreeMap<String, i32>>,
    /// service -> method -> "input [stream] output"
    services: BTreeMap<String, BTreeMap<String, String>>,
}

fn parse_table() -> Expected {
    let mut e = Expected::default();
    let mut current: Option<(String, String)> = None;
    for (n, line) in TABLE.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("  ") {
            let (kind, name) = current.as_ref().unwrap_or_else(|| panic!("line {}", n + 1));
            let (key, value) = rest.split_once(' ').expect("name and value");
            let dup = match kind.as_str() {
                "message" => e
                    .messages
                    .get_mut(name)
                    .unwrap()
                    .insert(key.into(), value.into()),
                "enum" => e
                    .enums
                    .get_mut(name)
                    .unwrap()
                    .insert(key.into(), value.parse().expect("enum number"))
                    .map(|v| v.to_string()),
                _ => e
                    .services
                    .get_mut(name)
                    .unwrap()
                    .insert(key.into(), value.into()),
            };
            assert!(dup.is_none(), "table line {}: {key} twice", n + 1);
        } else {
            let (kind, name) = line.split_once(' ').expect("kind and name");
            let full = format!("tetragon.{name}");
            match kind {
                "message" => e.messages.entry(full.clone()).or_default(),
                "enum" => {
                    e.enums.entry(full.clone()).or_default();
                    e.messages.entry(String::new()).or_default()
                }
                "service" => {
                    e.services.entry(full.clone()).or_default();
                    e.messages.entry(String::new()).or_default()
                }
                other => panic!("table line {}: unknown kind {other}", n + 1),
            };
            current = Some((kind.to_string(), full));
        }
    }
    e.messages.remove("");
    e
}

#[derive(Debug, Default)]
struct Actual {
    messages: BTreeMap<String, BTreeMap<String, (i32, String)>>,
    enums: BTreeMap<String, BTreeMap<String, i32>>,
    services: BTreeMap<String, BTreeMap<String, String>>,
}

fn collect_message(
    prefix: &str,
    m: &DescriptorProto,
    all: &mut BTreeMap<String, DescriptorProto>,
    enums: &mut BTreeMap<String, BTreeMap<String, i32>>,
) {
    let full = format!("{prefix}.{}", m.name());
    for nested in &m.nested_type {
        collect_message(&full, nested, all, enums);
    }
    for en in &m.enum_type {
        enums.insert(
            format!("{full}.{}", en.name()),
            en.value
                .iter()
                .map(|v| (v.name().to_string(), v.number()))
                .collect(),
        );
    }
    all.insert(full, m.clone());
}

fn actual() -> Actual {
    let set = FileDescriptorSet::decode(vigil_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut descs = BTreeMap::new();
    let mut a = Actual::default();
    for f in &set.file {
        let pkg = f.package();
        for m in &f.message_type {
            collect_message(pkg, m, &mut descs, &mut a.enums);
        }
        for en in &f.enum_type {
            a.enums.insert(
                format!("{pkg}.{}", en.name()),
                en.value
                    .iter()
                    .map(|v| (v.name().to_string(), v.number()))
                    .collect(),
            );
        }
        for s in &f.service {
            a.services.insert(
                format!("{pkg}.{}", s.name()),
                s.method
                    .iter()
                    .map(|m| {
                        let stream = if m.server_streaming() { "stream " } else { "" };
                        let t = |s: &str| s.trim_start_matches('.').to_string();
                        (
                            m.name().to_string(),
                            format!("{} {stream}{}", t(m.input_type()), t(m.output_type())),
                        )
                    })
                    .collect(),
            );
        }
    }
    let type_of = |f: &prost_types::FieldDescriptorProto| -> String {
        let base = match f.r#type() {
            Type::Message | Type::Enum => f.type_name().trim_start_matches('.').to_string(),
            Type::Double => "double".into(),
            Type::Float => "float".into(),
            Type::Int64 => "int64".into(),
            Type::Uint64 => "uint64".into(),
            Type::Int32 => "int32".into(),
            Type::Uint32 => "uint32".into(),
            Type::Bool => "bool".into(),
            Type::String => "string".into(),
            Type::Bytes => "bytes".into(),
            other => format!("{other:?}"),
        };
        if f.label() == Label::Repeated {
            // A map is a repeated entry message marked map_entry.
            if let Some(entry) = descs.get(&base)
                && entry.options.as_ref().is_some_and(|o| o.map_entry())
            {
                let kv: Vec<String> = entry
                    .field
                    .iter()
                    .map(|f| match f.r#type() {
                        Type::String => "string".to_string(),
                        Type::Int32 => "int32".to_string(),
                        _ => f.type_name().trim_start_matches('.').to_string(),
                    })
                    .collect();
                return format!("map<{}>", kv.join(","));
            }
            return format!("[]{base}");
        }
        if f.proto3_optional() {
            return format!("optional {base}");
        }
        base
    };
    for (name, m) in &descs {
        let fields = m
            .field
            .iter()
            .map(|f| {
                let mut t = type_of(f);
                // Real oneofs only: proto3 `optional` makes a synthetic one.
                if let Some(i) = f.oneof_index
                    && !f.proto3_optional()
                {
                    t = format!("{t} oneof={}", m.oneof_decl[i as usize].name());
                }
                (f.name().to_string(), (f.number(), t))
            })
            .collect();
        a.messages.insert(name.clone(), fields);
    }
    a
}

fn newer(owner: &str, name: &str) -> bool {
    NEWER_THAN_TABLE.contains(&(owner, name))
}

#[test]
fn our_proto_has_tetragons_names_numbers_and_types() {
    let want = parse_table();
    let have = actual();
    let mut errors = Vec::new();
    for (msg, fields) in &want.messages {
        let Some(ours) = have.messages.get(msg) else {
            errors.push(format!("message {msg} missing"));
            continue;
        };
        for (field, spec) in fields {
            let (number, rest) = spec.split_once(' ').unwrap_or((spec, ""));
            match ours.get(field) {
                None => errors.push(format!("{msg}.{field} missing")),
                Some((n, t)) => {
                    if n.to_string() != number || t != rest {
                        errors.push(format!(
                            "{msg}.{field}: Tetragon {number} {rest}, ours {n} {t}"
                        ));
                    }
                }
            }
        }
        for (field, (n, _)) in ours {
            if *n < 50000 && !fields.contains_key(field) && !newer(msg, field) {
                errors.push(format!("{msg}.{field} = {n}: not in Tetragon's API"));
            }
        }
    }
    for (en, values) in &want.enums {
        let Some(ours) = have.enums.get(en) else {
            errors.push(format!("enum {en} missing"));
            continue;
        };
        for (v, n) in values {
            if ours.get(v) != Some(n) {
                errors.push(format!("{en}.{v}: Tetragon {n}, ours {:?}", ours.get(v)));
            }
        }
        for (v, n) in ours {
            if *n < 50000 && !values.contains_key(v) && !newer(en, v) {
                errors.push(format!("{en}.{v} = {n}: not in Tetragon's API"));
            }
        }
    }
    for (svc, methods) in &want.services {
        let ours = have.services.get(svc).cloned().unwrap_or_default();
        if ours != *methods {
            for (m, sig) in methods {
                if ours.get(m) != Some(sig) {
                    errors.push(format!("{svc}.{m}: Tetragon {sig}, ours {:?}", ours.get(m)));
                }
            }
            for m in ours.keys().filter(|m| !methods.contains_key(*m)) {
                errors.push(format!("{svc}.{m}: not in Tetragon's API"));
            }
        }
    }
    // Every exception must still be needed, or it hides nothing and should go.
    for (owner, name) in NEWER_THAN_TABLE {
        let in_table = want
            .messages
            .get(*owner)
            .is_some_and(|f| f.contains_key(*name))
            || want
                .enums
                .get(*owner)
                .is_some_and(|v| v.contains_key(*name));
        let in_ours = have
            .messages
            .get(*owner)
            .is_some_and(|f| f.contains_key(*name))
            || have
                .enums
                .get(*owner)
                .is_some_and(|v| v.contains_key(*name));
        if in_table || !in_ours {
            errors.push(format!("NEWER_THAN_TABLE entry {owner}.{name} is stale"));
        }
    }
    assert!(
        errors.is_empty(),
        "{} mismatches:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

#[test]
fn the_table_covers_what_the_issue_names() {
    let want = parse_table();
    for m in [
        "GetEventsRequest",
        "GetEventsResponse",
        "Process",
        "ProcessExec",
        "ProcessExit",
        "ProcessKprobe",
        "ProcessTracepoint",
        "ProcessUprobe",
        "KprobeArgument",
        "Pod",
        "Container",
        "Image",
        "Capabilities",
        "Namespaces",
        "TracingPolicyStatus",
        "ListTracingPoliciesResponse",
    ] {
        assert!(want.messages.contains_key(&format!("tetragon.{m}")), "{m}");
    }
    for e in [
        "EventType",
        "TracingPolicyState",
        "TracingPolicyMode",
        "KprobeAction",
    ] {
        assert!(want.enums.contains_key(&format!("tetragon.{e}")), "{e}");
    }
    assert!(want.services.contains_key("tetragon.FineGuidanceSensors"));
}
