//! One event as an OpenTelemetry log record. The body is the event's JSON line, so nothing
//! is lost in translation; the attributes are what a collector filters and routes on, named
//! by OpenTelemetry's semantic conventions where one exists (docs/reference/export.md, "OTLP export").

use std::time::SystemTime;

use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use vigil_proto::tetragon::{GetEventsResponse, KprobeAction, get_events_response::Event};

use crate::event::{parts, payload_key};

/// Actions that change what the workload does (kill, signal, override a return value,
/// deny through an enforcer): their records are WARN, everything else INFO.
fn is_enforcement(action: KprobeAction) -> bool {
    matches!(
        action,
        KprobeAction::Sigkill
            | KprobeAction::Signal
            | KprobeAction::Override
            | KprobeAction::Notifyenforcer
    )
}

fn string(s: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::StringValue(s.into())),
    })
}

fn attr(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value,
        ..Default::default()
    }
}

fn int(n: impl Into<i64>) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::IntValue(n.into())),
    })
}

/// The resource every record shares: this node and this agent instance.
pub fn resource(node_name: &str, instance: &str) -> Resource {
    Resource {
        attributes: vec![
            attr("service.name", string("vigil")),
            attr("service.version", string(env!("CARGO_PKG_VERSION"))),
            attr("service.instance.id", string(instance)),
            attr("host.name", string(node_name)),
        ],
        ..Default::default()
    }
}

/// The enforcement-relevant action of an event, if it has one.
fn action(ev: &GetEventsResponse) -> Option<KprobeAction> {
    let raw = match ev.event.as_ref()? {
        Event::ProcessKprobe(x) => x.action,
        Event::ProcessTracepoint(x) => x.action,
        Event::ProcessUprobe(x) => x.action,
        Event::ProcessUsdt(x) => x.action,
        Event::ProcessLsm(x) => x.action,
        _ => return None,
    };
    KprobeAction::try_from(raw)
        .ok()
        .filter(|a| *a != KprobeAction::Unknown)
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The log record of `ev`, whose JSON line is `body`.
pub fn log_record(ev: &GetEventsResponse, body: String, observed: SystemTime) -> LogRecord {
    let mut attributes = Vec::with_capacity(12);
    let type_name = payload_key(ev).unwrap_or("unknown");
    attributes.push(attr("vigil.event_type", string(type_name)));
    let p = parts(ev);
    if !p.policy_name.is_empty() {
        attributes.push(attr("vigil.policy_name", string(p.policy_name)));
    }
    let action = action(ev);
    if let Some(a) = action {
        attributes.push(attr("vigil.action", string(a.as_str_name())));
    }
    if let Some(proc) = p.process {
        if let Some(pid) = &proc.pid {
            attributes.push(attr("process.pid", int(pid.value)));
        }
        if !proc.binary.is_empty() {
            attributes.push(attr("process.executable.path", string(&*proc.binary)));
        }
        if !proc.argv.is_empty() {
            // argv is byte-exact; attributes are UTF-8, so invalid bytes become U+FFFD.
            let values = proc
                .argv
                .iter()
                .map(|a| AnyValue {
                    value: Some(Value::StringValue(String::from_utf8_lossy(a).into_owned())),
                })
                .collect();
            attributes.push(attr(
                "process.command_args",
                Some(AnyValue {
                    value: Some(Value::ArrayValue(ArrayValue { values })),
                }),
            ));
        } else if !proc.binary.is_empty() {
            let line = if proc.arguments.is_empty() {
                proc.binary.clone()
            } else {
                format!("{} {}", proc.binary, proc.arguments)
            };
            attributes.push(attr("process.command_line", string(line)));
        }
        if !proc.exec_id.is_empty() {
            attributes.push(attr("vigil.exec_id", string(&*proc.exec_id)));
        }
        if let Some(pod) = &proc.pod {
            if !pod.name.is_empty() {
                attributes.push(attr("k8s.pod.name", string(&*pod.name)));
            }
            if !pod.namespace.is_empty() {
                attributes.push(attr("k8s.namespace.name", string(&*pod.namespace)));
            }
        }
        if !proc.docker.is_empty() {
            attributes.push(attr("container.id", string(&*proc.docker)));
        }
    }
    if let Some(ppid) = p.parent.and_then(|x| x.pid.as_ref()) {
        attributes.push(attr("process.parent_pid", int(ppid.value)));
    }
    let (severity, text) = if action.is_some_and(is_enforcement) {
        (SeverityNumber::Warn, "WARN")
    } else {
        (SeverityNumber::Info, "INFO")
    };
    let time_unix_nano = ev
        .time
        .map(|t| {
            (t.seconds.max(0) as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(t.nanos.max(0) as u64)
        })
        .unwrap_or(0);
    LogRecord {
        time_unix_nano,
        observed_time_unix_nano: unix_nanos(observed),
        severity_number: severity as i32,
        severity_text: text.to_string(),
        body: string(body),
        attributes,
        event_name: format!("vigil.{type_name}"),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::tetragon::{Pod, Process, ProcessExec, ProcessKprobe};

    fn get<'a>(r: &'a LogRecord, key: &str) -> Option<&'a Value> {
        r.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn process(pid: u32, binary: &str) -> Process {
        Process {
            pid: Some(pid.into()),
            binary: binary.into(),
            arguments: "-l /tmp".into(),
            exec_id: format!("id{pid}"),
            pod: Some(Pod {
                name: "web-1".into(),
                namespace: "shop".into(),
                ..Default::default()
            }),
            docker: "abc123".into(),
            ..Default::default()
        }
    }

    #[test]
    fn exec_carries_process_identity_at_info() {
        let ev = GetEventsResponse {
            event: Some(Event::ProcessExec(ProcessExec {
                process: Some(process(42, "/usr/bin/ls")),
                parent: Some(process(7, "/bin/sh")),
                ..Default::default()
            })),
            time: Some(vigil_proto::wkt::Timestamp::new(2, 5)),
            ..Default::default()
        };
        let r = log_record(&ev, "{}".into(), SystemTime::now());
        assert_eq!(get(&r, "process.pid"), Some(&Value::IntValue(42)));
        assert_eq!(get(&r, "process.parent_pid"), Some(&Value::IntValue(7)));
        assert_eq!(
            get(&r, "process.command_line"),
            Some(&Value::StringValue("/usr/bin/ls -l /tmp".into()))
        );
        assert_eq!(
            get(&r, "k8s.namespace.name"),
            Some(&Value::StringValue("shop".into()))
        );
        assert_eq!(
            get(&r, "vigil.event_type"),
            Some(&Value::StringValue("process_exec".into()))
        );
        assert_eq!(get(&r, "vigil.action"), None);
        assert_eq!(r.time_unix_nano, 2_000_000_005);
        assert_eq!(r.severity_number, SeverityNumber::Info as i32);
    }

    #[test]
    fn sigkill_is_warn_with_policy_and_action() {
        let ev = GetEventsResponse {
            event: Some(Event::ProcessKprobe(ProcessKprobe {
                process: Some(process(42, "/usr/bin/cat")),
                policy_name: "no-shadow".into(),
                action: KprobeAction::Sigkill as i32,
                ..Default::default()
            })),
            ..Default::default()
        };
        let r = log_record(&ev, "{}".into(), SystemTime::now());
        assert_eq!(r.severity_number, SeverityNumber::Warn as i32);
        assert_eq!(
            get(&r, "vigil.policy_name"),
            Some(&Value::StringValue("no-shadow".into()))
        );
        assert_eq!(
            get(&r, "vigil.action"),
            Some(&Value::StringValue("KPROBE_ACTION_SIGKILL".into()))
        );
    }
}
