//! Field filters (`FieldFilter`, tetragon.md §3.3/§4.4): keep or drop fields of the event
//! payload (`process_exec`, `process_exit`, ...) by protobuf FieldMask paths such as
//! `process.binary` or `parent`. Any INCLUDE filter that applies makes the default
//! "drop"; EXCLUDE wins over INCLUDE. The envelope (`node_name`, `time`, ...) is kept.
//!
//! Implemented on the protojson form (field names are the proto names), so it works for
//! every message without per-type code; the cost is paid only by clients that ask for it.

use serde_json::{Map, Value};
use vigil_proto::tetragon::{EventType, FieldFilter, FieldFilterAction, GetEventsResponse};

use crate::filters::event_type;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldFilterError {
    #[error("field filter: unknown event type {0}")]
    EventType(i32),
    #[error("field filter: unknown action {0}")]
    Action(i32),
    #[error("field filter: empty path in {0:?}")]
    EmptyPath(String),
}

#[derive(Debug)]
struct Compiled {
    event_set: Vec<EventType>,
    invert: bool,
    paths: Vec<Vec<String>>,
    include: bool,
}

impl Compiled {
    fn applies(&self, t: EventType) -> bool {
        let listed = self.event_set.is_empty() || self.event_set.contains(&t);
        listed != self.invert
    }
}

#[derive(Debug, Default)]
pub struct FieldFilters {
    filters: Vec<Compiled>,
}

impl FieldFilters {
    pub fn new(filters: &[FieldFilter]) -> Result<Self, FieldFilterError> {
        let mut out = Vec::new();
        for f in filters {
            let event_set = f
                .event_set
                .iter()
                .map(|&n| EventType::try_from(n).map_err(|_| FieldFilterError::EventType(n)))
                .collect::<Result<_, _>>()?;
            let action = FieldFilterAction::try_from(f.action)
                .map_err(|_| FieldFilterError::Action(f.action))?;
            let mut paths = Vec::new();
            for p in f.fields.iter().flat_map(|m| &m.paths) {
                let parts: Vec<String> = p.split('.').map(|s| s.trim().to_string()).collect();
                if parts.iter().any(String::is_empty) {
                    return Err(FieldFilterError::EmptyPath(p.clone()));
                }
                paths.push(parts);
            }
            out.push(Compiled {
                event_set,
                invert: f.invert_event_set.as_ref().is_some_and(|b| b.value),
                paths,
                include: action == FieldFilterAction::Include,
            });
        }
        Ok(Self { filters: out })
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// The event with the filters applied (unchanged when none applies).
    pub fn apply(&self, ev: &GetEventsResponse) -> Result<GetEventsResponse, serde_json::Error> {
        let t = event_type(ev);
        let applying: Vec<&Compiled> = self.filters.iter().filter(|f| f.applies(t)).collect();
        if applying.is_empty() {
            return Ok(ev.clone());
        }
        let mut v = serde_json::to_value(ev)?;
        let Some(obj) = v.as_object_mut() else {
            return Ok(ev.clone());
        };
        // The payload is the one field that is not part of the envelope.
        let Some(payload) = obj
            .iter_mut()
            .find(|(k, _)| k.starts_with("process_") || *k == "events_lost")
            .map(|(_, v)| v)
        else {
            return Ok(ev.clone());
        };
        let includes: Vec<&Vec<String>> = applying
            .iter()
            .filter(|f| f.include)
            .flat_map(|f| &f.paths)
            .collect();
        if !includes.is_empty() {
            *payload = keep(payload, &includes);
        }
        for f in applying.iter().filter(|f| !f.include) {
            for p in &f.paths {
                remove(payload, p);
            }
        }
        serde_json::from_value(v)
    }
}

/// Keeps only the given paths of `v`.
fn keep(v: &Value, paths: &[&Vec<String>]) -> Value {
    let Some(obj) = v.as_object() else {
        return v.clone();
    };
    let mut out = Map::new();
    for (k, child) in obj {
        let here: Vec<&Vec<String>> = paths.iter().copied().filter(|p| &p[0] == k).collect();
        if here.is_empty() {
            continue;
        }
        if here.iter().any(|p| p.len() == 1) {
            out.insert(k.clone(), child.clone());
            continue;
        }
        let rest: Vec<Vec<String>> = here.iter().map(|p| p[1..].to_vec()).collect();
        let rest_refs: Vec<&Vec<String>> = rest.iter().collect();
        out.insert(k.clone(), keep(child, &rest_refs));
    }
    Value::Object(out)
}

fn remove(v: &mut Value, path: &[String]) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    if path.len() == 1 {
        obj.remove(&path[0]);
    } else if let Some(child) = obj.get_mut(&path[0]) {
        remove(child, &path[1..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::pbjson_types::FieldMask;
    use vigil_proto::tetragon::get_events_response::Event;
    use vigil_proto::tetragon::{Process, ProcessExec};

    fn ev() -> GetEventsResponse {
        GetEventsResponse {
            event: Some(Event::ProcessExec(ProcessExec {
                process: Some(Process {
                    pid: Some(5.into()),
                    binary: "/usr/bin/true".into(),
                    arguments: "a b".into(),
                    ..Default::default()
                }),
                parent: Some(Process {
                    binary: "/bin/sh".into(),
                    ..Default::default()
                }),
                ancestors: vec![],
            })),
            node_name: "n".into(),
            ..Default::default()
        }
    }

    fn ff(paths: &str, action: FieldFilterAction) -> FieldFilter {
        FieldFilter {
            fields: Some(FieldMask {
                paths: paths.split(',').map(String::from).collect(),
            }),
            action: action as i32,
            ..Default::default()
        }
    }

    fn exec_of(e: &GetEventsResponse) -> &ProcessExec {
        match &e.event {
            Some(Event::ProcessExec(x)) => x,
            _ => panic!("not an exec"),
        }
    }

    #[test]
    fn include_keeps_only_listed_paths() {
        let f = FieldFilters::new(&[ff("process.binary", FieldFilterAction::Include)]).unwrap();
        let out = f.apply(&ev()).unwrap();
        let x = exec_of(&out);
        assert!(x.parent.is_none());
        let p = x.process.as_ref().unwrap();
        assert_eq!(p.binary, "/usr/bin/true");
        assert!(p.pid.is_none() && p.arguments.is_empty());
        assert_eq!(out.node_name, "n");
    }

    #[test]
    fn exclude_wins() {
        let f = FieldFilters::new(&[
            ff("process", FieldFilterAction::Include),
            ff("process.arguments", FieldFilterAction::Exclude),
        ])
        .unwrap();
        let out = f.apply(&ev()).unwrap();
        let p = exec_of(&out).process.as_ref().unwrap();
        assert_eq!(p.binary, "/usr/bin/true");
        assert!(p.arguments.is_empty());
    }

    #[test]
    fn event_set_selects_where_it_applies() {
        let mut f = ff("parent", FieldFilterAction::Exclude);
        f.event_set = vec![EventType::ProcessExit as i32];
        let out = FieldFilters::new(&[f]).unwrap().apply(&ev()).unwrap();
        assert!(exec_of(&out).parent.is_some());
    }
}
