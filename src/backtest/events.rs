//! Recorded JSON events (Tetragon's shape, docs/reference/events.md) as the calls the
//! evaluator reads: which hook fired, the process, and the arguments keyed by the hook
//! parameter the recording policy read them from.

use std::collections::BTreeMap;

use serde_json::Value;
use vigil_policy::backtest::{RecordedCall, RecordedProcess, RecordedValue, STR_REPORTED};
use vigil_policy::compile::{ArgOrigin, EVERY_SYSCALL, HookPlan, Mechanism};
use vigil_policy::kernel::syscall_name;
use vigil_policy::types::NamespaceKind;

/// What a recorded policy event says about the hook that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired<'a> {
    /// `process_kprobe`, `process_tracepoint`...
    pub kind: &'static str,
    pub body: &'a Value,
    pub policy: &'a str,
}

const POLICY_EVENTS: [&str; 5] = [
    "process_kprobe",
    "process_tracepoint",
    "process_uprobe",
    "process_lsm",
    "process_usdt",
];

/// The policy event of a recorded line, if it is one.
pub fn fired(event: &Value) -> Option<Fired<'_>> {
    POLICY_EVENTS.iter().find_map(|&kind| {
        let body = event.get(kind)?;
        Some(Fired {
            kind,
            body,
            policy: body
                .get("policy_name")
                .and_then(Value::as_str)
                .unwrap_or(""),
        })
    })
}

/// The count of a loss report of the recorder itself (`events_lost`, stage
/// `LOSS_STAGE_SINK`): events the history does not hold.
pub fn recorder_loss(event: &Value) -> Option<u64> {
    let lost = event.get("events_lost")?;
    (text(lost, "stage") == "LOSS_STAGE_SINK")
        .then(|| lost.get("count").and_then(int_of).unwrap_or(0).max(0) as u64)
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Whether the event is a call of `hook` (one of its targets).
pub fn is_call_of(hook: &HookPlan, f: &Fired<'_>) -> bool {
    let function = text(f.body, "function_name");
    hook.targets.iter().any(|target| match hook.mechanism {
        Mechanism::SyscallTracepoint => {
            f.kind == "process_kprobe"
                && (syscall_name(function) == syscall_name(target)
                    || (target == EVERY_SYSCALL && syscall_name(function) != function))
        }
        Mechanism::Tracepoint | Mechanism::RawTracepoint => {
            f.kind == "process_tracepoint"
                && format!("{}/{}", text(f.body, "subsys"), text(f.body, "event")) == *target
        }
        Mechanism::Uprobe => {
            f.kind == "process_uprobe"
                && format!("{}:{}", text(f.body, "path"), text(f.body, "symbol")) == *target
        }
        Mechanism::Usdt => {
            f.kind == "process_usdt"
                && format!(
                    "{}:{}:{}",
                    text(f.body, "path"),
                    text(f.body, "provider"),
                    text(f.body, "name")
                ) == *target
        }
        Mechanism::Lsm => {
            f.kind == "process_lsm"
                && (function == target
                    || function.strip_prefix("security_") == Some(target.as_str()))
        }
        Mechanism::Kprobe
        | Mechanism::KprobeMulti
        | Mechanism::Fentry
        | Mechanism::CgroupSockAddr => f.kind == "process_kprobe" && function == target,
    })
}

/// The call an event records. `recorder`: the recording policy's hook for this target,
/// whose readers say which parameter each recorded argument is (`None`: unknown).
pub fn call_of(f: &Fired<'_>, recorder: Option<&HookPlan>) -> RecordedCall {
    let process = f.body.get("process").unwrap_or(&Value::Null);
    let parent = f.body.get("parent");
    let args = recorder.map(|hook| {
        let indices = hook
            .arguments
            .iter()
            .filter(|a| a.origin == ArgOrigin::Argument)
            .map(|a| a.index);
        let recorded = f
            .body
            .get("args")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        indices
            .zip(recorded.iter())
            .map(|(index, v)| (index, value_of(v)))
            .collect::<BTreeMap<_, _>>()
    });
    RecordedCall {
        process: RecordedProcess {
            binary: text(process, "binary").to_string(),
            pid: process.get("pid").and_then(Value::as_u64).unwrap_or(0) as u32,
            exec_id: text(process, "exec_id").to_string(),
            parent_binary: parent
                .map(|p| text(p, "binary").to_string())
                .filter(|b| !b.is_empty()),
            namespaces: process.get("ns").map(namespaces),
        },
        args,
        return_value: f.body.get("return").map(value_of).and_then(|v| match v {
            RecordedValue::Int(i) => Some(i),
            _ => None,
        }),
    }
}

fn namespaces(ns: &Value) -> BTreeMap<NamespaceKind, u64> {
    NamespaceKind::ALL
        .iter()
        .filter_map(|&kind| {
            let inum = ns.get(snake(kind.name()))?.get("inum")?.as_u64()?;
            Some((kind, inum))
        })
        .collect()
}

/// `PidForChildren` -> `pid_for_children` (the JSON keys of `process.ns`).
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_u64().map(|u| u as i64)),
        // proto3 JSON writes 64-bit integers as strings.
        Value::String(s) => s
            .parse::<i64>()
            .ok()
            .or_else(|| s.parse::<u64>().ok().map(|u| u as i64)),
        _ => None,
    }
}

/// A string as recorded: exact unless it may have been cut or was repaired as UTF-8.
fn recorded_text(s: &str) -> RecordedValue {
    let exact = s.len() < STR_REPORTED - 1 && !s.contains('\u{FFFD}') && !s.starts_with("...");
    RecordedValue::Text {
        text: s.to_string(),
        exact,
    }
}

/// One recorded argument (`{"string_arg": ...}`, `{"int_arg": 3}`, `{"file_arg": {...}}`).
pub fn value_of(arg: &Value) -> RecordedValue {
    let Some(obj) = arg.as_object() else {
        return RecordedValue::Other("not an object".into());
    };
    let Some((key, v)) = obj.iter().find(|(k, _)| k.as_str() != "label") else {
        return RecordedValue::Other("empty".into());
    };
    match key.as_str() {
        "error_arg" => RecordedValue::Unreadable,
        "string_arg" => v.as_str().map_or(RecordedValue::Unreadable, recorded_text),
        "file_arg" | "path_arg" | "linux_binprm_arg" => v
            .get("path")
            .and_then(Value::as_str)
            .map_or(RecordedValue::Other(key.clone()), recorded_text),
        // The engine's syscall64 value: bit 31 marks a 32-bit (ia32) call.
        "syscall_id" => match (v.get("id").and_then(int_of), text(v, "abi")) {
            (Some(id), "i386") => RecordedValue::Int(id | 1 << 31),
            (Some(id), _) => RecordedValue::Int(id),
            (None, _) => RecordedValue::Other(key.clone()),
        },
        k if k.ends_with("_arg") => {
            int_of(v).map_or(RecordedValue::Other(key.clone()), RecordedValue::Int)
        }
        _ => RecordedValue::Other(key.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_read_as_the_engine_compared_them() {
        let v: Value = serde_json::json!([
            {"string_arg": "/tmp/a"},
            {"int_arg": -2},
            {"long_arg": "18446744073709551615"},
            {"error_arg": {"message": "x"}},
            {"file_arg": {"path": "...cut/leaf"}},
            {"sock_arg": {}}
        ]);
        let got: Vec<_> = v.as_array().unwrap().iter().map(value_of).collect();
        assert_eq!(
            got,
            vec![
                RecordedValue::Text {
                    text: "/tmp/a".into(),
                    exact: true
                },
                RecordedValue::Int(-2),
                RecordedValue::Int(-1),
                RecordedValue::Unreadable,
                RecordedValue::Text {
                    text: "...cut/leaf".into(),
                    exact: false
                },
                RecordedValue::Other("sock_arg".into()),
            ]
        );
        assert_eq!(snake("PidForChildren"), "pid_for_children");
    }
}
