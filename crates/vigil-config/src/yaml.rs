//! A flat YAML mapping `flag: value` (scalars, or sequences of scalars joined by commas).

use saphyr_parser::{Event, Parser};

pub fn flat_map(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut depth = 0usize; // 1: top mapping; 2: inside a value sequence
    let mut key: Option<String> = None;
    let mut list: Vec<String> = Vec::new();
    for item in Parser::new_from_str(text) {
        let (event, span) =
            item.map_err(|e| format!("line {}: {}", e.marker().line(), e.info()))?;
        let line = span.start.line();
        match event {
            Event::MappingStart(..) if depth == 0 => depth = 1,
            Event::MappingEnd if depth == 1 => depth = 0,
            Event::SequenceStart(..) if depth == 1 && key.is_some() => depth = 2,
            Event::SequenceEnd if depth == 2 => {
                depth = 1;
                out.push((key.take().unwrap_or_default(), list.join(",")));
                list.clear();
            }
            Event::Scalar(v, ..) => match depth {
                1 => match key.take() {
                    None => key = Some(v.into_owned()),
                    Some(k) => out.push((k, v.into_owned())),
                },
                2 => list.push(v.into_owned()),
                _ => return Err(format!("line {line}: expected a mapping of flag: value")),
            },
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => {}
            _ => {
                return Err(format!(
                    "line {line}: expected flag: value (a scalar or a list of scalars)"
                ));
            }
        }
    }
    Ok(out)
}
