//! Field filters (`--field-filters`): Tetragon's `FieldFilter` JSON, one per line. Each
//! applies to the events of its `event_set` (all when empty; the complement with
//! `invert_event_set`) and keeps (`INCLUDE`) or removes (`EXCLUDE`) protobuf field-mask
//! paths of the event payload (`process.binary`, `parent`, ...). Any applicable INCLUDE makes
//! the default "exclude"; EXCLUDE wins over INCLUDE. The envelope (`node_name`, `time`) is
//! never filtered.

use std::collections::HashSet;

use serde_json::{Map, Value};
use vigil_proto::tetragon::{FieldFilter, FieldFilterAction, GetEventsResponse};

use crate::event::{event_type, payload_key};
use crate::filter::FilterError;

#[derive(Debug)]
struct Compiled {
    event_set: HashSet<i32>,
    invert: bool,
    include: bool,
    paths: Vec<Vec<String>>,
}

/// `startTime` -> `start_time` (protojson writes masks in lowerCamelCase).
fn snake(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug, Default)]
pub struct FieldFilters {
    filters: Vec<Compiled>,
}

impl FieldFilters {
    pub fn parse(flag: &str, text: &str) -> Result<Self, FilterError> {
        let mut filters = Vec::new();
        for (line, mut v) in crate::filter::parse_lines::<Value>(flag, text)? {
            let err = |reason: String| FilterError::Json {
                flag: flag.to_string(),
                line,
                reason,
            };
            let fields = match v.as_object_mut().and_then(|o| o.remove("fields")) {
                Some(Value::String(s)) => s,
                Some(Value::Object(o)) => match o.get("paths") {
                    Some(Value::Array(a)) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                    _ => return Err(err("fields: expected \"a.b,c\"".into())),
                },
                None => String::new(),
                Some(_) => return Err(err("fields: expected \"a.b,c\"".into())),
            };
            let f: FieldFilter = serde_json::from_value(v).map_err(|e| err(e.to_string()))?;
            let paths: Vec<Vec<String>> = fields
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| p.split('.').map(snake).collect())
                .collect();
            filters.push(Compiled {
                event_set: f.event_set.iter().copied().collect(),
                invert: f.invert_event_set.is_some_and(|v| v.value),
                include: f.action == FieldFilterAction::Include as i32,
                paths,
            });
        }
        Ok(Self { filters })
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Applies the filters to `json`, the serialised `ev`.
    pub fn apply(&self, ev: &GetEventsResponse, json: &mut Value) {
        let Some(key) = payload_key(ev) else { return };
        let ty = event_type(ev) as i32;
        let applicable = self.filters.iter().filter(|f| {
            let listed = f.event_set.is_empty() || f.event_set.contains(&ty);
            listed != f.invert
        });
        let (mut include, mut exclude, mut any_include) = (Vec::new(), Vec::new(), false);
        for f in applicable {
            if f.include {
                any_include = true;
                include.extend(f.paths.iter());
            } else {
                exclude.extend(f.paths.iter());
            }
        }
        let Some(Value::Object(payload)) = json.get_mut(key) else {
            return;
        };
        if any_include {
            *payload = keep(payload, &include);
        }
        for path in exclude {
            remove(payload, path);
        }
    }
}

/// The parts of `obj` named by `paths` (a path keeps its whole subtree).
fn keep(obj: &Map<String, Value>, paths: &[&Vec<String>]) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in obj {
        let sub: Vec<&Vec<String>> = paths.iter().copied().filter(|p| p[0] == *k).collect();
        if sub.is_empty() {
            continue;
        }
        if sub.iter().any(|p| p.len() == 1) {
            out.insert(k.clone(), v.clone());
        } else if let Value::Object(inner) = v {
            let rest: Vec<Vec<String>> = sub.iter().map(|p| p[1..].to_vec()).collect();
            let rest: Vec<&Vec<String>> = rest.iter().collect();
            out.insert(k.clone(), Value::Object(keep(inner, &rest)));
        }
    }
    out
}

fn remove(obj: &mut Map<String, Value>, path: &[String]) {
    match path {
        [] => {}
        [last] => {
            obj.remove(last);
        }
        [first, rest @ ..] => {
            if let Some(Value::Object(inner)) = obj.get_mut(first) {
                remove(inner, rest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::tetragon::{Process, ProcessExec, ProcessExit, get_events_response::Event};

    fn exec() -> GetEventsResponse {
        let p = Process {
            binary: "/bin/ls".into(),
            arguments: "-l".into(),
            pid: Some(7.into()),
            start_time: None,
            ..Default::default()
        };
        GetEventsResponse {
            event: Some(Event::ProcessExec(ProcessExec {
                process: Some(p.clone()),
                parent: Some(p),
                ancestors: vec![],
            })),
            node_name: "n".into(),
            ..Default::default()
        }
    }

    fn run(filters: &str, ev: &GetEventsResponse) -> Value {
        let f = FieldFilters::parse("--field-filters", filters).unwrap();
        let mut v = serde_json::to_value(ev).unwrap();
        f.apply(ev, &mut v);
        v
    }

    #[test]
    fn include_keeps_only_named_fields() {
        let v = run(
            r#"{"fields":"process.binary,parent","action":"INCLUDE"}"#,
            &exec(),
        );
        assert_eq!(
            v["process_exec"]["process"],
            serde_json::json!({"binary": "/bin/ls"})
        );
        assert_eq!(v["process_exec"]["parent"]["pid"], 7);
        assert_eq!(v["node_name"], "n");
    }

    #[test]
    fn exclude_wins_and_event_set_applies() {
        let v = run(
            "{\"fields\":\"process\",\"action\":\"INCLUDE\"}\n\
             {\"fields\":\"process.arguments\",\"action\":\"EXCLUDE\"}",
            &exec(),
        );
        assert_eq!(v["process_exec"]["process"]["binary"], "/bin/ls");
        assert!(v["process_exec"]["process"].get("arguments").is_none());
        assert!(v["process_exec"].get("parent").is_none());
        // Only for exits: an exec is untouched; inverted, it applies.
        let only_exit = r#"{"fields":"parent","action":"EXCLUDE","event_set":["PROCESS_EXIT"]}"#;
        assert!(
            run(only_exit, &exec())["process_exec"]
                .get("parent")
                .is_some()
        );
        let inverted = r#"{"fields":"parent","action":"EXCLUDE","event_set":["PROCESS_EXIT"],"invert_event_set":true}"#;
        assert!(
            run(inverted, &exec())["process_exec"]
                .get("parent")
                .is_none()
        );
        let exit = GetEventsResponse {
            event: Some(Event::ProcessExit(ProcessExit {
                parent: Some(Process::default()),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert!(
            run(only_exit, &exit)["process_exit"]
                .get("parent")
                .is_none()
        );
    }

    #[test]
    fn camel_case_masks_and_errors() {
        assert_eq!(snake("startTime"), "start_time");
        assert!(FieldFilters::parse("--field-filters", "{\"fields\": 3}").is_err());
        assert!(FieldFilters::parse("--field-filters", "{\"action\":\"KEEP\"}").is_err());
    }
}
