//! Redaction filters (`--redaction-filters`): Tetragon's `RedactionFilter` JSON, one per
//! line. Every capture group of a `redact` RE2 expression that matches the arguments or an
//! environment variable (`KEY=VALUE`) is replaced by `*****`, in the process, its parent and
//! its ancestors, optionally only for binaries matching `binary_regex`. vigil's byte-exact
//! `argv` is redacted at the same positions, so the secret leaks through neither.

use regex::Regex;
use vigil_proto::tetragon::{EnvVar, GetEventsResponse, Process, RedactionFilter};

use crate::event::processes_mut;
use crate::filter::{FilterError, FilterList};

pub const REDACTED: &str = "*****";

#[derive(Debug)]
struct Compiled {
    matching: FilterList,
    redact: Vec<(Regex, regex::bytes::Regex)>,
    binary: Vec<Regex>,
}

#[derive(Debug, Default)]
pub struct Redactor {
    filters: Vec<Compiled>,
}

/// Replaces the capture groups of every match of `re` in `s`; None when nothing matched.
fn redact_str(re: &Regex, s: &str) -> Option<String> {
    let mut ranges = Vec::new();
    for caps in re.captures_iter(s) {
        ranges.extend(caps.iter().skip(1).flatten().map(|m| m.range()));
    }
    if ranges.is_empty() {
        return None;
    }
    Some(replace_ranges(s.as_bytes(), &ranges, 0).0)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Rebuilds `bytes[offset..offset+len]` with every (absolute) range replaced by REDACTED;
/// returns the bytes and whether anything changed.
fn replace_ranges(
    bytes: &[u8],
    ranges: &[std::ops::Range<usize>],
    offset: usize,
) -> (Vec<u8>, bool) {
    let mut sorted: Vec<_> = ranges.to_vec();
    sorted.sort_by_key(|r| r.start);
    let (mut out, mut pos, mut changed) = (Vec::with_capacity(bytes.len()), 0usize, false);
    for r in sorted {
        let s = r.start.saturating_sub(offset).min(bytes.len());
        let e = r.end.saturating_sub(offset).min(bytes.len());
        if e <= pos || s >= e {
            continue;
        }
        let s = s.max(pos);
        out.extend_from_slice(&bytes[pos..s]);
        out.extend_from_slice(REDACTED.as_bytes());
        pos = e;
        changed = true;
    }
    out.extend_from_slice(&bytes[pos..]);
    (out, changed)
}

/// Redacts argv[1..] as if joined by spaces (as `arguments` is), element by element.
fn redact_argv(re: &regex::bytes::Regex, argv: &mut [Vec<u8>]) {
    if argv.len() < 2 {
        return;
    }
    let joined = argv[1..].join(&b' ');
    let mut ranges = Vec::new();
    for caps in re.captures_iter(&joined) {
        ranges.extend(caps.iter().skip(1).flatten().map(|m| m.range()));
    }
    if ranges.is_empty() {
        return;
    }
    let mut offset = 0;
    for arg in &mut argv[1..] {
        let len = arg.len();
        let (new, changed) = replace_ranges(arg, &ranges, offset);
        if changed {
            *arg = new;
        }
        offset += len + 1;
    }
}

impl Redactor {
    pub fn parse(flag: &str, text: &str) -> Result<Self, FilterError> {
        let mut filters = Vec::new();
        for (line, f) in crate::filter::parse_lines::<RedactionFilter>(flag, text)? {
            let bad = |field: &'static str, expr: &str, reason: String| FilterError::Regex {
                flag: flag.to_string(),
                line,
                field,
                expr: expr.to_string(),
                reason,
            };
            let mut redact = Vec::new();
            for e in &f.redact {
                let re =
                    Regex::new(e).map_err(|err| bad("redact", e, crate::filter::one_line(&err)))?;
                if re.captures_len() < 2 {
                    return Err(bad(
                        "redact",
                        e,
                        "no capture group: put what to hide in (...)".into(),
                    ));
                }
                let bre = regex::bytes::Regex::new(e)
                    .map_err(|err| bad("redact", e, crate::filter::one_line(&err)))?;
                redact.push((re, bre));
            }
            let binary = f
                .binary_regex
                .iter()
                .map(|e| {
                    Regex::new(e)
                        .map_err(|err| bad("binary_regex", e, crate::filter::one_line(&err)))
                })
                .collect::<Result<_, _>>()?;
            filters.push(Compiled {
                #[allow(deprecated)]
                matching: FilterList::from_filters(flag, &f.r#match)?,
                redact,
                binary,
            });
        }
        Ok(Self { filters })
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Redacts `ev` in place.
    pub fn apply(&self, ev: &mut GetEventsResponse) {
        let applicable: Vec<&Compiled> = self
            .filters
            .iter()
            .filter(|f| f.matching.is_empty() || f.matching.any(ev))
            .collect();
        if applicable.is_empty() {
            return;
        }
        for p in processes_mut(ev) {
            for f in &applicable {
                if f.binary.is_empty() || f.binary.iter().any(|r| r.is_match(&p.binary)) {
                    redact_process(f, p);
                }
            }
        }
    }
}

fn redact_process(f: &Compiled, p: &mut Process) {
    for (re, bre) in &f.redact {
        if let Some(new) = redact_str(re, &p.arguments) {
            p.arguments = new;
        }
        redact_argv(bre, &mut p.argv);
        for env in &mut p.environment_variables {
            let joined = format!("{}={}", env.key, env.value);
            if let Some(new) = redact_str(re, &joined) {
                let (k, v) = new.split_once('=').unwrap_or((&new, ""));
                *env = EnvVar {
                    key: k.to_string(),
                    value: v.to_string(),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_proto::tetragon::{ProcessExec, get_events_response::Event};

    fn ev(binary: &str, args: &[&str]) -> GetEventsResponse {
        let argv: Vec<Vec<u8>> = std::iter::once(binary)
            .chain(args.iter().copied())
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let p = Process {
            binary: binary.into(),
            arguments: args.join(" "),
            argv,
            environment_variables: vec![EnvVar {
                key: "TOKEN".into(),
                value: "abc".into(),
            }],
            ..Default::default()
        };
        GetEventsResponse {
            event: Some(Event::ProcessExec(ProcessExec {
                process: Some(p.clone()),
                parent: Some(p),
                ancestors: vec![],
            })),
            ..Default::default()
        }
    }

    fn process(ev: &GetEventsResponse) -> &Process {
        match &ev.event {
            Some(Event::ProcessExec(e)) => e.process.as_ref().unwrap(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn arguments_argv_and_env_are_redacted() {
        let r = Redactor::parse(
            "--redaction-filters",
            r#"{"redact":["--password[= ](\\S+)", "TOKEN=(.*)"]}"#,
        )
        .unwrap();
        let mut e = ev("/bin/app", &["-u", "me", "--password", "s3cret", "x"]);
        r.apply(&mut e);
        let p = process(&e);
        assert_eq!(p.arguments, "-u me --password ***** x");
        assert_eq!(p.argv[4], b"*****");
        assert_eq!(p.argv[3], b"--password");
        assert_eq!(p.environment_variables[0].value, "*****");
        let serialized = serde_json::to_string(&e).unwrap();
        assert!(!serialized.contains("s3cret") && !serialized.contains("abc"));
    }

    #[test]
    fn binary_regex_restricts_and_groups_are_required() {
        let r = Redactor::parse(
            "--redaction-filters",
            r#"{"redact":["(s3cret)"],"binary_regex":["curl$"]}"#,
        )
        .unwrap();
        let mut e = ev("/bin/app", &["s3cret"]);
        r.apply(&mut e);
        assert_eq!(process(&e).arguments, "s3cret");
        let mut e = ev("/usr/bin/curl", &["s3cret"]);
        r.apply(&mut e);
        assert_eq!(process(&e).arguments, "*****");
        let err = Redactor::parse("--redaction-filters", r#"{"redact":["s3cret"]}"#).unwrap_err();
        assert!(err.to_string().contains("capture group"), "{err}");
    }
}
