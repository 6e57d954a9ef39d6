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
