//! What the recorder indexes of an event, read from the event itself: the writer and the
//! queries use the same functions, so a filter matches exactly what was indexed.

use vigil_export::event::{event_type, parts};
use vigil_proto::tetragon::{GetEventsResponse, KprobeAction, Process, get_events_response::Event};

/// Nanoseconds since the Unix epoch of a protobuf timestamp.
pub fn timestamp_ns(t: Option<&vigil_proto::wkt::Timestamp>) -> Option<i64> {
    t.map(|t| {
        t.seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(t.nanos))
    })
}

/// The event's time (ns since the epoch), if it has one.
pub fn event_time_ns(ev: &GetEventsResponse) -> Option<i64> {
    timestamp_ns(ev.time.as_ref())
}

/// The event type's name as in `EventType` (`PROCESS_EXEC`, ...).
pub fn type_name(ev: &GetEventsResponse) -> &'static str {
    event_type(ev).as_str_name()
}

/// The process the event is about.
pub fn process(ev: &GetEventsResponse) -> Option<&Process> {
    parts(ev).process
}

/// The policy that produced the event ("" for lifecycle events).
pub fn policy(ev: &GetEventsResponse) -> &str {
    parts(ev).policy_name
}

/// The action the policy took (`KPROBE_ACTION_POST`, ...; "" when the event has none).
pub fn action(ev: &GetEventsResponse) -> &'static str {
    let action = match &ev.event {
        Some(Event::ProcessKprobe(x)) => x.action,
        Some(Event::ProcessTracepoint(x)) => x.action,
        Some(Event::ProcessUprobe(x)) => x.action,
        Some(Event::ProcessLsm(x)) => x.action,
        Some(Event::ProcessUsdt(x)) => x.action,
        _ => return "",
    };
    KprobeAction::try_from(action).map_or("", |a| a.as_str_name())
}

/// `KPROBE_ACTION_SIGKILL` for `sigkill`, `Sigkill` or the full name: what a user types.
pub fn normalise_action(given: &str) -> String {
    let upper = given.trim().to_ascii_uppercase();
    if upper.starts_with("KPROBE_ACTION_") {
        upper
    } else {
        format!("KPROBE_ACTION_{upper}")
    }
}

/// `PROCESS_EXEC` for `process_exec`, `exec` or the full name.
pub fn normalise_type(given: &str) -> String {
    let upper = given.trim().to_ascii_uppercase();
    if upper.starts_with("PROCESS_") || upper == "EVENTS_LOST" || upper == "RATE_LIMIT_INFO" {
        upper
    } else {
        format!("PROCESS_{upper}")
    }
}

/// The process's pod as `namespace/name`, if it has one.
pub fn pod(p: &Process) -> Option<(&str, &str)> {
    p.pod
        .as_ref()
        .filter(|pod| !pod.name.is_empty())
        .map(|pod| (pod.namespace.as_str(), pod.name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::tetragon::{Pod, ProcessKprobe};

    #[test]
    fn action_and_policy_come_from_the_payload() {
        let ev = GetEventsResponse {
            event: Some(Event::ProcessKprobe(ProcessKprobe {
                policy_name: "p".into(),
                action: KprobeAction::Sigkill as i32,
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(policy(&ev), "p");
        assert_eq!(action(&ev), "KPROBE_ACTION_SIGKILL");
        assert_eq!(type_name(&ev), "PROCESS_KPROBE");
        assert_eq!(action(&GetEventsResponse::default()), "");
    }

    #[test]
    fn user_spellings_are_normalised() {
        assert_eq!(normalise_action("sigkill"), "KPROBE_ACTION_SIGKILL");
        assert_eq!(normalise_action("KPROBE_ACTION_POST"), "KPROBE_ACTION_POST");
        assert_eq!(normalise_type("exec"), "PROCESS_EXEC");
        assert_eq!(normalise_type("process_kprobe"), "PROCESS_KPROBE");
        assert_eq!(normalise_type("events_lost"), "EVENTS_LOST");
    }

    #[test]
    fn timestamps_become_nanoseconds() {
        let t = vigil_proto::wkt::Timestamp {
            seconds: 2,
            nanos: 5,
        };
        assert_eq!(timestamp_ns(Some(&t)), Some(2_000_000_005));
        let p = Process {
            pod: Some(Pod {
                namespace: "ns".into(),
                name: "web".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(pod(&p), Some(("ns", "web")));
        assert_eq!(pod(&Process::default()), None);
    }
}
