//! The event bus: the enrichment stage publishes each event once; every sink (JSON file,
//! gRPC clients, metrics) gets it in the same order. Sinks must not block: a sink that
//! cannot keep up counts what it drops (`lost`), and the pipeline reports it.

use std::sync::Arc;

use vigil_proto::tetragon::GetEventsResponse;

use crate::EventLine;

/// An event as sinks see it: shared, immutable.
pub type Event = Arc<GetEventsResponse>;

pub trait Sink: Send {
    /// Name for logs and loss reports.
    fn name(&self) -> &str;
    /// Takes one event before it is shared with the other sinks, for a sink that writes its
    /// JSON line: `line` renders it once for all of them. A sink may take parts of the event
    /// out but leaves it as it found it. Must not block for long, as `publish`.
    fn publish_first(&mut self, _event: &mut GetEventsResponse, _line: &mut EventLine) {}
    /// Takes one event. Must not block for long: drop and count instead.
    fn publish(&mut self, event: &Event);
    /// Called when the pipeline is idle and at shutdown.
    fn flush(&mut self) {}
    /// Called once at shutdown: report what is pending, then flush.
    fn close(&mut self) {
        self.flush();
    }
    /// Events this sink dropped so far.
    fn lost(&self) -> u64 {
        0
    }
}

#[derive(Default)]
pub struct Bus {
    sinks: Vec<Box<dyn Sink>>,
    redactor: Option<crate::Redactor>,
    line: EventLine,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.sinks.iter().map(|s| s.name()).collect();
        f.debug_struct("Bus").field("sinks", &names).finish()
    }
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
    }

    /// Redaction applies to every sink (as Tetragon's, before any export or listener).
    pub fn set_redactor(&mut self, redactor: crate::Redactor) {
        self.redactor = (!redactor.is_empty()).then_some(redactor);
    }

    pub fn publish(&mut self, mut event: GetEventsResponse) {
        if let Some(r) = &self.redactor {
            r.apply(&mut event);
        }
        self.line.next_event();
        for sink in &mut self.sinks {
            sink.publish_first(&mut event, &mut self.line);
        }
        let event = Arc::new(event);
        for sink in &mut self.sinks {
            sink.publish(&event);
        }
    }

    pub fn flush(&mut self) {
        for sink in &mut self.sinks {
            sink.flush();
        }
    }

    /// Shutdown: every sink reports what is pending and flushes.
    pub fn close(&mut self) {
        for sink in &mut self.sinks {
            sink.close();
        }
    }

    /// Events dropped by all sinks together.
    pub fn lost(&self) -> u64 {
        self.sinks.iter().map(|s| s.lost()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder(Arc<std::sync::Mutex<Vec<String>>>);

    impl Sink for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }
        fn publish(&mut self, event: &Event) {
            self.0.lock().unwrap().push(event.node_name.clone());
        }
    }

    #[test]
    fn every_sink_sees_every_event_in_order() {
        let (a, b) = (Arc::default(), Arc::default());
        let mut bus = Bus::new();
        bus.add(Box::new(Recorder(Arc::clone(&a))));
        bus.add(Box::new(Recorder(Arc::clone(&b))));
        for n in ["1", "2", "3"] {
            bus.publish(GetEventsResponse {
                node_name: n.into(),
                ..Default::default()
            });
        }
        assert_eq!(*a.lock().unwrap(), vec!["1", "2", "3"]);
        assert_eq!(*b.lock().unwrap(), vec!["1", "2", "3"]);
    }
}
