//! Uniform access to the parts of an event that filters look at.

use vigil_proto::tetragon::{EventType, GetEventsResponse, Process, get_events_response::Event};

/// The type of an event, as in `EventType` (and `tetragon_events_total{type}`).
pub fn event_type(ev: &GetEventsResponse) -> EventType {
    match &ev.event {
        Some(Event::ProcessExec(_)) => EventType::ProcessExec,
        Some(Event::ProcessExit(_)) => EventType::ProcessExit,
        Some(Event::ProcessKprobe(_)) => EventType::ProcessKprobe,
        Some(Event::ProcessTracepoint(_)) => EventType::ProcessTracepoint,
        Some(Event::ProcessLoader(_)) => EventType::ProcessLoader,
        Some(Event::ProcessUprobe(_)) => EventType::ProcessUprobe,
        Some(Event::ProcessThrottle(_)) => EventType::ProcessThrottle,
        Some(Event::ProcessLsm(_)) => EventType::ProcessLsm,
        Some(Event::ProcessUsdt(_)) => EventType::ProcessUsdt,
        Some(Event::Test(_)) => EventType::Test,
        Some(Event::RateLimitInfo(_)) => EventType::RateLimitInfo,
        Some(Event::EventsLost(_)) => EventType::EventsLost,
        None => EventType::Undef,
    }
}

/// The JSON key of the event payload (`process_exec`, ...), for field filters.
pub fn payload_key(ev: &GetEventsResponse) -> Option<&'static str> {
    Some(match &ev.event {
        Some(Event::ProcessExec(_)) => "process_exec",
        Some(Event::ProcessExit(_)) => "process_exit",
        Some(Event::ProcessKprobe(_)) => "process_kprobe",
        Some(Event::ProcessTracepoint(_)) => "process_tracepoint",
        Some(Event::ProcessLoader(_)) => "process_loader",
        Some(Event::ProcessUprobe(_)) => "process_uprobe",
        Some(Event::ProcessThrottle(_)) => "process_throttle",
        Some(Event::ProcessLsm(_)) => "process_lsm",
        Some(Event::ProcessUsdt(_)) => "process_usdt",
        Some(Event::Test(_)) => "test",
        Some(Event::RateLimitInfo(_)) => "rate_limit_info",
        Some(Event::EventsLost(_)) => "events_lost",
        None => return None,
    })
}

/// Process, parent, ancestors and policy name of an event (absent parts are `None`/empty).
pub struct Parts<'a> {
    pub process: Option<&'a Process>,
    pub parent: Option<&'a Process>,
    pub ancestors: &'a [Process],
    pub policy_name: &'a str,
}

pub fn parts(ev: &GetEventsResponse) -> Parts<'_> {
    let none = Parts {
        process: None,
        parent: None,
        ancestors: &[],
        policy_name: "",
    };
    let Some(e) = &ev.event else { return none };
    match e {
        Event::ProcessExec(x) => Parts {
            process: x.process.as_ref(),
            parent: x.parent.as_ref(),
            ancestors: &x.ancestors,
            policy_name: "",
        },
        Event::ProcessExit(x) => Parts {
            process: x.process.as_ref(),
            parent: x.parent.as_ref(),
            ancestors: &x.ancestors,
            policy_name: "",
        },
        Event::ProcessKprobe(x) => Parts {
            process: x.process.as_ref(),
            parent: x.parent.as_ref(),
            ancestors: &x.ancestors,
            policy_name: &x.policy_name,
        },
        Event::ProcessTracepoint(x) => Parts {
            process: x.process.as_ref(),
            parent: x.parent.as_ref(),
            ancestors: &x.ancestors,
            policy_name: &x.policy_name,
        },
        Event::ProcessUprobe(x) => Parts {
            process: x.process.as_ref(),
            parent: x.parent.as_ref(),
            ancestors: &x.ancestors,
            policy_name: &x.policy_name,
        },
        Event::ProcessLsm(x) => Parts {
            process: x.process.as_ref(),
            parent: x.parent.as_ref(),
            ancestors: &x.ancestors,
            policy_name: &x.policy_name,
        },
        Event::ProcessUsdt(x) => Parts {
            process: x.process.as_ref(),
            parent: x.parent.as_ref(),
            ancestors: &x.ancestors,
            policy_name: &x.policy_name,
        },
        Event::ProcessLoader(x) => Parts {
            process: x.process.as_ref(),
            parent: x.parent.as_ref(),
            ancestors: &x.ancestors,
            policy_name: "",
        },
        _ => none,
    }
}

/// Mutable processes of an event (process, parent, ancestors), for redaction.
pub fn processes_mut(ev: &mut GetEventsResponse) -> Vec<&mut Process> {
    let mut out = Vec::new();
    macro_rules! collect {
        ($x:expr) => {{
            out.extend($x.process.as_mut());
            out.extend($x.parent.as_mut());
            out.extend($x.ancestors.iter_mut());
        }};
    }
    match &mut ev.event {
        Some(Event::ProcessExec(x)) => collect!(x),
        Some(Event::ProcessExit(x)) => collect!(x),
        Some(Event::ProcessKprobe(x)) => collect!(x),
        Some(Event::ProcessTracepoint(x)) => collect!(x),
        Some(Event::ProcessUprobe(x)) => collect!(x),
        Some(Event::ProcessLsm(x)) => collect!(x),
        Some(Event::ProcessUsdt(x)) => collect!(x),
        Some(Event::ProcessLoader(x)) => collect!(x),
        _ => {}
    }
    out
}
