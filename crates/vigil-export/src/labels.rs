//! Kubernetes label selectors (`app=x,tier!=db,env in (a,b),!legacy`) over pod labels.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::Eq(k, v) => labels.get(k) == Some(v),
            Self::NotEq(k, v) => labels.get(k) != Some(v),
            Self::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Self::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Self::Exists(k) => labels.contains_key(k),
            Self::NotExists(k) => !labels.contains_key(k),
        }
    }
}

/// Splits at commas outside parentheses.
fn split_top(sel: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in sel.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&sel[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&sel[start..]);
    out
}

fn key(k: &str) -> Result<String, String> {
    let k = k.trim();
    if k.is_empty() || k.contains(char::is_whitespace) {
        return Err(format!("bad label key {k:?}"));
    }
    Ok(k.to_string())
}

fn values(v: &str) -> Result<Vec<String>, String> {
    let v = v.trim();
    let inner = v
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| format!("expected (v1,v2,...), got {v:?}"))?;
    Ok(inner.split(',').map(|s| s.trim().to_string()).collect())
}

/// Parses one selector into requirements (all must hold).
pub fn parse(sel: &str) -> Result<Vec<Requirement>, String> {
    let mut out = Vec::new();
    for part in split_top(sel) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let r = if let Some((k, v)) = part.split_once("!=") {
            Requirement::NotEq(key(k)?, v.trim().to_string())
        } else if let Some((k, v)) = part.split_once("==") {
            Requirement::Eq(key(k)?, v.trim().to_string())
        } else if let Some((k, v)) = part.split_once('=') {
            Requirement::Eq(key(k)?, v.trim().to_string())
        } else if let Some((k, v)) = part.split_once(" notin ") {
            Requirement::NotIn(key(k)?, values(v)?)
        } else if let Some((k, v)) = part.split_once(" in ") {
            Requirement::In(key(k)?, values(v)?)
        } else if let Some(k) = part.strip_prefix('!') {
            Requirement::NotExists(key(k)?)
        } else {
            Requirement::Exists(key(part)?)
        };
        out.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let labels: BTreeMap<String, String> = [("app", "web"), ("env", "prod")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let ok = |s: &str| parse(s).unwrap().iter().all(|r| r.matches(&labels));
        assert!(ok("app=web"));
        assert!(ok("app==web,env in (prod, dev)"));
        assert!(!ok("app!=web"));
        assert!(ok("env notin (dev),!legacy,app"));
        assert!(!ok("env in (dev)"));
        assert!(!ok("missing"));
        assert!(parse("env in prod").is_err());
    }
}
