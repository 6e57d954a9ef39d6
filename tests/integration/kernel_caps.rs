//! Kernel capability gating for integration tests, driven by the committed matrix
//! `tests/kernel-matrix/capabilities.toml` (embedded at compile time; `VIGIL_KERNEL_MATRIX`
//! names another file).
//!
//! ```ignore
//! if !kernel_caps::require("fentry") { return; }
//! ```
//!
//! * The running kernel's column is `VIGIL_KERNEL_COLUMN` (set by the kernel-matrix guest
//!   /init) or the first column whose `release` glob matches `uname -r`. A kernel that is no
//!   column of the matrix is an error, not a skip.
//! * Matrix says present: `require` probes the mechanism for real (load, and where cheap attach,
//!   a minimal BPF program) and returns `true`; a failed probe panics, naming the kernel.
//! * Matrix says absent: prints `not applicable: <mechanism> absent on <column> per matrix`
//!   and returns `false`. If the probe finds the mechanism after all, it panics: the matrix is
//!   stale, and marking a test not applicable where the kernel offers its mechanism fails.
//!
//! Only std is used: the probes issue the bpf(2) syscall directly.
#![allow(dead_code)]

use std::collections::BTreeMap;

/// The committed matrix.
pub const MATRIX_TOML: &str = include_str!("../kernel-matrix/capabilities.toml");
pub const MATRIX_ENV: &str = "VIGIL_KERNEL_MATRIX";
pub const COLUMN_ENV: &str = "VIGIL_KERNEL_COLUMN";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub description: String,
    /// Globs (`*` only) matched against `uname -r`.
    pub release: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mechanism {
    pub name: String,
    pub description: String,
    /// column name -> present
    pub present: BTreeMap<String, bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    pub columns: Vec<Column>,
    pub mechanisms: BTreeMap<String, Mechanism>,
}

// ------------------------------------------------------------------------------------------
// Parsing: a strict TOML subset (see the header of capabilities.toml).

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Bool(bool),
    Int(i64),
    Array(Vec<String>),
}

/// Splits `a."b.c".d` into its keys.
fn split_key(s: &str, line: usize) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let mut rest = s.trim();
    loop {
        let (key, after) = if let Some(r) = rest.strip_prefix('"') {
            let end = r
                .find('"')
                .ok_or_else(|| format!("line {line}: unterminated quoted key"))?;
            (r[..end].to_string(), r[end + 1..].trim_start())
        } else {
            let end = rest
                .find(|c: char| c == '.' || c.is_whitespace())
                .unwrap_or(rest.len());
            let k = &rest[..end];
            if k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!("line {line}: bad key {k:?}"));
            }
            (k.to_string(), rest[end..].trim_start())
        };
        keys.push(key);
        if after.is_empty() {
            return Ok(keys);
        }
        rest = after
            .strip_prefix('.')
            .ok_or_else(|| format!("line {line}: junk after key: {after:?}"))?
            .trim_start();
    }
}

fn parse_string(s: &str, line: usize) -> Result<(String, &str), String> {
    let r = s
        .strip_prefix('"')
        .ok_or_else(|| format!("line {line}: expected a string"))?;
    let mut out = String::new();
    let mut chars = r.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &r[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                other => return Err(format!("line {line}: unsupported escape {other:?}")),
            },
            c => out.push(c),
        }
    }
    Err(format!("line {line}: unterminated string"))
}

fn strip_comment(s: &str, line: usize) -> Result<(), String> {
    let s = s.trim();
    if s.is_empty() || s.starts_with('#') {
        Ok(())
    } else {
        Err(format!("line {line}: junk after value: {s:?}"))
    }
}

fn parse_value(s: &str, line: usize) -> Result<Value, String> {
    let s = s.trim();
    if s.starts_with('"') {
        let (v, rest) = parse_string(s, line)?;
        strip_comment(rest, line)?;
        return Ok(Value::Str(v));
    }
    if let Some(mut r) = s.strip_prefix('[') {
        let mut items = Vec::new();
        loop {
            r = r.trim_start();
            if let Some(rest) = r.strip_prefix(']') {
                strip_comment(rest, line)?;
                return Ok(Value::Array(items));
            }
            let (v, rest) = parse_string(r, line)?;
            items.push(v);
            r = rest.trim_start();
            r = r.strip_prefix(',').unwrap_or(r);
        }
    }
    let word = s.split('#').next().unwrap_or("").trim();
    match word {
        "true" => Ok(Value::Bool(true)),
        "false" => Ok(Value::Bool(false)),
        w => w.parse().map(Value::Int).map_err(|_| {
            format!(
                "line {line}: unsupported value {w:?} (strings, booleans, integers, string arrays)"
            )
        }),
    }
}

impl Matrix {
    pub fn parse(text: &str) -> Result<Matrix, String> {
        let mut columns: Vec<Column> = Vec::new();
        let mut mechanisms: BTreeMap<String, Mechanism> = BTreeMap::new();
        let mut table: Vec<String> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if let Some(h) = l.strip_prefix('[') {
                let end = h
                    .rfind(']')
                    .ok_or_else(|| format!("line {line}: unterminated table header"))?;
                strip_comment(&h[end + 1..], line)?;
                table = split_key(&h[..end], line)?;
                match table
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .as_slice()
                {
                    ["column", name] => {
                        if columns.iter().any(|c| &c.name == name) {
                            return Err(format!("line {line}: column {name} defined twice"));
                        }
                        columns.push(Column {
                            name: (*name).to_string(),
                            description: String::new(),
                            release: Vec::new(),
                        });
                    }
                    ["mechanism", name] => {
                        if mechanisms.contains_key(*name) {
                            return Err(format!("line {line}: mechanism {name} defined twice"));
                        }
                        mechanisms.insert(
                            (*name).to_string(),
                            Mechanism {
                                name: (*name).to_string(),
                                description: String::new(),
                                present: BTreeMap::new(),
                            },
                        );
                    }
                    _ => {
                        return Err(format!(
                            "line {line}: unknown table [{}] (expected [column.NAME] or [mechanism.NAME])",
                            table.join(".")
                        ));
                    }
                }
                continue;
            }
            let eq = find_eq(l).ok_or_else(|| format!("line {line}: expected key = value"))?;
            let key = split_key(&l[..eq], line)?;
            let [key] = key.as_slice() else {
                return Err(format!("line {line}: dotted keys are not supported here"));
            };
            let value = parse_value(&l[eq + 1..], line)?;
            match (table.first().map(String::as_str), value) {
                (None, Value::Int(1)) if key == "schema" => {}
                (None, v) => {
                    return Err(format!(
                        "line {line}: unexpected top-level {key} = {v:?} (schema = 1 only)"
                    ));
                }
                (Some("column"), v) => {
                    let col = columns.last_mut().expect("column table");
                    match (key.as_str(), v) {
                        ("description", Value::Str(s)) => col.description = s,
                        ("release", Value::Array(a)) => col.release = a,
                        (k, v) => {
                            return Err(format!(
                                "line {line}: column {}: unexpected {k} = {v:?}",
                                col.name
                            ));
                        }
                    }
                }
                (Some(_), v) => {
                    let mech = mechanisms.get_mut(&table[1]).expect("mechanism table");
                    match (key.as_str(), v) {
                        ("description", Value::Str(s)) => mech.description = s,
                        (col, Value::Bool(b)) => {
                            if mech.present.insert(col.to_string(), b).is_some() {
                                return Err(format!(
                                    "line {line}: mechanism {}: column {col} given twice",
                                    mech.name
                                ));
                            }
                        }
                        (k, v) => {
                            return Err(format!(
                                "line {line}: mechanism {}: unexpected {k} = {v:?}",
                                mech.name
                            ));
                        }
                    }
                }
            }
        }
        if columns.is_empty() {
            return Err("no [column.NAME] table".into());
        }
        for m in mechanisms.values() {
            for c in &columns {
                if !m.present.contains_key(&c.name) {
                    return Err(format!(
                        "mechanism {} has no value for column {}",
                        m.name, c.name
                    ));
                }
            }
            for k in m.present.keys() {
                if !columns.iter().any(|c| &c.name == k) {
                    return Err(format!("mechanism {} names unknown column {k}", m.name));
                }
            }
        }
        Ok(Matrix {
            columns,
            mechanisms,
        })
    }

    /// The column whose release globs match `release` (first match in file order).
    pub fn column_for_release(&self, release: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.release.iter().any(|g| glob_match(g, release)))
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Whether the matrix says `mechanism` exists on `column`.
    pub fn expects(&self, column: &str, mechanism: &str) -> Result<bool, String> {
        let m = self.mechanisms.get(mechanism).ok_or_else(|| {
            format!(
                "unknown mechanism {mechanism:?}; the matrix has: {}",
                self.mechanisms
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        m.present
            .get(column)
            .copied()
            .ok_or_else(|| format!("unknown column {column:?}"))
    }
}

/// The `=` of `key = value`, outside a quoted key.
fn find_eq(l: &str) -> Option<usize> {
    let mut quoted = false;
    for (i, c) in l.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '=' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// Glob with `*` (any run of characters) only.
pub fn glob_match(glob: &str, s: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    if parts.len() == 1 {
        return glob == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

// ------------------------------------------------------------------------------------------
// The running kernel.

pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| panic!("reading /proc/sys/kernel/osrelease: {e}"))
}

pub fn matrix() -> &'static Matrix {
    static M: std::sync::OnceLock<Matrix> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        let (text, origin) = match std::env::var(MATRIX_ENV) {
            Ok(p) => (
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{MATRIX_ENV}={p}: {e}")),
                p,
            ),
            Err(_) => (
                MATRIX_TOML.to_string(),
                "tests/kernel-matrix/capabilities.toml".to_string(),
            ),
        };
        Matrix::parse(&text).unwrap_or_else(|e| panic!("{origin}: {e}"))
    })
}

/// Column for the running kernel: `VIGIL_KERNEL_COLUMN`, else by `uname -r`.
pub fn detect_column(
    m: &Matrix,
    env_column: Option<&str>,
    release: &str,
) -> Result<String, String> {
    if let Some(name) = env_column.filter(|s| !s.is_empty()) {
        return m.column(name).map(|c| c.name.clone()).ok_or_else(|| {
            format!("{COLUMN_ENV}={name} is no column of the kernel capability matrix")
        });
    }
    m.column_for_release(release).map(|c| c.name.clone()).ok_or_else(|| {
        format!(
            "kernel {release} matches no column of tests/kernel-matrix/capabilities.toml ({}); add a column for it or set {COLUMN_ENV}",
            m.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        )
    })
}

pub fn current_column() -> String {
    let env = std::env::var(COLUMN_ENV).ok();
    detect_column(matrix(), env.as_deref(), &kernel_release()).unwrap_or_else(|e| panic!("{e}"))
}

/// Gate a test on a mechanism. `true`: run the test (the mechanism is there, probed).
/// `false`: not applicable on this kernel per the matrix (a line says so). Panics when the
/// probe contradicts the matrix in either direction.
pub fn require(mechanism: &str) -> bool {
    let m = matrix();
    let column = current_column();
    let release = kernel_release();
    let expected = m
        .expects(&column, mechanism)
        .unwrap_or_else(|e| panic!("kernel_caps::require: {e}"));
    let probed = probe(mechanism);
    match (expected, probed) {
        (true, Ok(())) => true,
        (true, Err(why)) => panic!(
            "kernel capability matrix says {mechanism} exists on {column} (kernel {release}), but the probe failed: {why}"
        ),
        (false, Err(_)) => {
            eprintln!("not applicable: {mechanism} absent on {column} per matrix");
            false
        }
        (false, Ok(())) => panic!(
            "kernel capability matrix says {mechanism} is absent on {column}, but kernel {release} offers it: \
             fix tests/kernel-matrix/capabilities.toml (a test may only be not applicable where the mechanism is absent)"
        ),
    }
}

mod probe;

pub use probe::probe;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_matrix_parses_with_expected_columns() {
        let m = Matrix::parse(MATRIX_TOML).unwrap();
        let names: Vec<_> = m.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["host-6.18", "debian-6.1", "debian-6.12"]);
        assert!(m.mechanisms.len() >= 15);
        // Facts from ../shared/KERNEL.md.
        for mech in [
            "kprobe",
            "fentry",
            "fmod_ret",
            "lsm",
            "probe_write_user",
            "override_return",
            "kprobe_multi",
        ] {
            assert!(!m.expects("host-6.18", mech).unwrap(), "{mech} on host");
        }
        for mech in [
            "tracepoint",
            "raw_tp",
            "tp_btf",
            "uprobe",
            "ringbuf",
            "bpf_loop",
            "dynptr",
            "iterator",
        ] {
            for col in ["host-6.18", "debian-6.1", "debian-6.12"] {
                assert!(m.expects(col, mech).unwrap(), "{mech} on {col}");
            }
        }
        for mech in ["kprobe", "fentry", "fmod_ret", "lsm"] {
            assert!(
                m.expects("debian-6.1", mech).unwrap() && m.expects("debian-6.12", mech).unwrap(),
                "{mech}"
            );
        }
        assert!(!m.expects("debian-6.1", "kprobe_multi").unwrap());
        assert!(m.expects("debian-6.12", "kprobe_multi").unwrap());
        assert!(
            !m.expects("debian-6.1", "override_return").unwrap()
                && !m.expects("debian-6.12", "override_return").unwrap()
        );
        // Every mechanism in the matrix has a probe (an unknown name is an Err naming it).
        for mech in m.mechanisms.keys() {
            if let Err(e) = probe(mech) {
                assert!(!e.contains("has no probe"), "{e}");
            }
        }
    }

    #[test]
    fn column_detection_by_release_and_env() {
        let m = Matrix::parse(MATRIX_TOML).unwrap();
        let col = |r: &str| m.column_for_release(r).map(|c| c.name.as_str());
        assert_eq!(col("6.18.44-fc-v595"), Some("host-6.18"));
        assert_eq!(col("6.1.0-57-cloud-amd64"), Some("debian-6.1"));
        assert_eq!(col("6.12.117+deb12-cloud-amd64"), Some("debian-6.12"));
        assert_eq!(col("6.12.117+deb13-cloud-amd64"), Some("debian-6.12"));
        assert_eq!(col("6.1.0-57-amd64"), None);
        assert_eq!(col("5.10.0-30-cloud-amd64"), None);
        assert_eq!(
            detect_column(&m, Some("debian-6.1"), "6.18.44").unwrap(),
            "debian-6.1"
        );
        assert_eq!(detect_column(&m, Some(""), "6.18.44").unwrap(), "host-6.18");
        assert!(
            detect_column(&m, Some("debian-5.10"), "6.18.44")
                .unwrap_err()
                .contains("no column")
        );
        assert!(
            detect_column(&m, None, "4.19.0")
                .unwrap_err()
                .contains("matches no column")
        );
    }

    #[test]
    fn glob() {
        assert!(glob_match("6.18.*", "6.18.44-fc"));
        assert!(!glob_match("6.18.*", "6.1.8"));
        assert!(glob_match(
            "6.12.*+deb*-cloud-amd64",
            "6.12.117+deb12-cloud-amd64"
        ));
        assert!(!glob_match(
            "6.12.*+deb*-cloud-amd64",
            "6.12.117+deb12-amd64"
        ));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("a*a", "a"));
    }

    #[test]
    fn parser_accepts_the_subset_and_rejects_the_rest() {
        let ok = r#"
schema = 1 # comment
[column."k-1.0"]
description = "with \"quotes\""
release = ["1.0.*", "1.0"]
[column.k2]
release = []
[mechanism.m]
"k-1.0" = true
k2 = false # trailing
"#;
        let m = Matrix::parse(ok).unwrap();
        assert_eq!(m.columns[0].description, "with \"quotes\"");
        assert_eq!(m.columns[0].release, ["1.0.*", "1.0"]);
        assert!(m.expects("k-1.0", "m").unwrap());
        assert!(!m.expects("k2", "m").unwrap());
        assert!(
            m.expects("k2", "nope")
                .unwrap_err()
                .contains("unknown mechanism")
        );
        let bad = |s: &str| Matrix::parse(s).unwrap_err();
        assert!(
            bad("[column.a]\nrelease=[\"x\"]\n[mechanism.m]\n").contains("no value for column a")
        );
        assert!(
            bad("[column.a]\n[mechanism.m]\na = true\nb = true\n").contains("unknown column b")
        );
        assert!(bad("[column.a]\n[mechanism.m]\na = true\na = false\n").contains("given twice"));
        assert!(bad("[column.a]\n[mechanism.m]\na = yes\n").contains("unsupported value"));
        assert!(bad("[table]\n").contains("unknown table"));
        assert!(bad("schema = 2\n").contains("top-level"));
        assert!(bad("[column.a]\nrelease = [\"x\n").contains("unterminated"));
        assert!(bad("").contains("no [column"));
    }

    /// Needs fentry and BPF LSM: runs (and attaches both) on the Debian kernels, not applicable
    /// on the host per the matrix.
    #[test]
    fn portable_gate_fentry_and_lsm() {
        if !require("fentry") || !require("lsm") {
            return;
        }
        probe("fentry").unwrap();
        probe("lsm").unwrap();
    }

    /// Needs kprobe.multi: runs on debian-6.12 only.
    #[test]
    fn portable_gate_kprobe_multi() {
        if !require("kprobe_multi") {
            return;
        }
        probe("kprobe_multi").unwrap();
    }

    /// Runs everywhere, including the kernel-matrix guests (`portable_` prefix): every
    /// mechanism's probe must agree with the running kernel's column.
    #[test]
    fn portable_matrix_matches_running_kernel() {
        let m = matrix();
        let column = current_column();
        let mut wrong = Vec::new();
        for (name, mech) in &m.mechanisms {
            let expected = mech.present[&column];
            let got = probe(name);
            eprintln!("kernel_caps: {column}: {name}: matrix {expected}, probe {got:?}");
            if expected != got.is_ok() {
                wrong.push(format!("{name}: matrix says {expected}, probe {got:?}"));
            }
        }
        assert!(
            wrong.is_empty(),
            "capability matrix column {column} disagrees with kernel {}:\n{}",
            kernel_release(),
            wrong.join("\n")
        );
    }
}
