//! An event's JSON line, rendered once per event for every sink that writes it: the JSON
//! file and the flight recorder write the same Tetragon line, and rendering it twice was
//! most of what the recorder added per event on the pipeline thread.

use vigil_proto::tetragon::GetEventsResponse;

use crate::splice::ProcessJson;

enum State {
    NotYet,
    Rendered,
    Failed(String),
}

/// The line of the event being published (`{...}`, no `vigil_seq`, no newline), rendered on
/// the first request, with the processes' JSON reused across events (`ProcessJson`).
pub struct EventLine {
    processes: ProcessJson,
    line: Vec<u8>,
    state: State,
}

impl Default for EventLine {
    fn default() -> Self {
        Self {
            processes: ProcessJson::default(),
            line: Vec::with_capacity(4096),
            state: State::NotYet,
        }
    }
}

impl EventLine {
    /// Forgets the last event's line: the bus calls it before each event.
    pub fn next_event(&mut self) {
        self.state = State::NotYet;
    }

    /// The line of `ev`, the event being published (equal to `serde_json::to_vec(ev)`);
    /// `ev` is left as it was. An error (the event cannot be encoded) is the same for
    /// every sink that asks.
    pub fn get(&mut self, ev: &mut GetEventsResponse) -> Result<&[u8], &str> {
        if matches!(self.state, State::NotYet) {
            self.state = match self.processes.write_event(ev, &mut self.line) {
                Ok(()) => State::Rendered,
                Err(e) => State::Failed(e.to_string()),
            };
        }
        match &self.state {
            State::Failed(e) => Err(e),
            _ => Ok(&self.line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::tetragon::{Process, ProcessExec, get_events_response::Event};

    fn exec(binary: &str) -> GetEventsResponse {
        GetEventsResponse {
            event: Some(Event::ProcessExec(ProcessExec {
                process: Some(Process {
                    exec_id: format!("id-{binary}"),
                    binary: binary.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            node_name: "n".into(),
            ..Default::default()
        }
    }

    #[test]
    fn each_event_gets_its_own_line_equal_to_serde_json() {
        let mut line = EventLine::default();
        for binary in ["/a", "/b", "/a"] {
            let mut ev = exec(binary);
            line.next_event();
            let want = serde_json::to_vec(&ev).unwrap();
            assert_eq!(line.get(&mut ev).unwrap(), want.as_slice());
            // A second sink asking gets the same line, and the event is unchanged.
            assert_eq!(line.get(&mut ev).unwrap(), want.as_slice());
            assert_eq!(serde_json::to_vec(&ev).unwrap(), want);
        }
    }
}
