//! Both corpora through the exact entry point the agent uses (`parse_policy`).

use std::path::{Path, PathBuf};

use vigil_policy::{TracingPolicy, parse_policy, serialize::to_yaml};

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The compat corpus lives outside the repository (shared test data); the path can be
/// overridden for other machines.
fn compat_dir() -> PathBuf {
    std::env::var_os("VIGIL_COMPAT_POLICIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/compat/tetragon-policies"))
}

fn parse_file(path: &Path) -> Result<TracingPolicy, vigil_policy::PolicyErrors> {
    let source = std::fs::read_to_string(path).unwrap();
    parse_policy(&source, &path.display().to_string())
}

#[test]
fn every_compat_policy_parses_and_validates() {
    let files = yaml_files(&compat_dir());
    assert!(
        files.len() >= 70,
        "compat corpus missing: {} files",
        files.len()
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| parse_file(f).err().map(|e| e.to_string()))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn compat_policies_round_trip_with_same_meaning() {
    for file in yaml_files(&compat_dir()) {
        let first = parse_file(&file).unwrap();
        let text = to_yaml(&first);
        let second = parse_policy(&text, "round-trip").unwrap_or_else(|e| {
            panic!(
                "{}: serialised form does not parse:\n{e}\n{text}",
                file.display()
            )
        });
        assert!(
            first.same_meaning(&second),
            "{}: meaning changed\n{text}",
            file.display()
        );
        // Serialising is stable: a second trip gives the same text.
        assert_eq!(text, to_yaml(&second), "{}", file.display());
    }
}

/// `# expect: PATH LINE:COL REASON` header lines of a malformed-corpus file.
fn expectations(source: &str) -> Vec<(String, String, String)> {
    source
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(parts.len(), 3, "bad header line: {l}");
            let path = if parts[0] == "-" {
                String::new()
            } else {
                parts[0].to_string()
            };
            (path, parts[1].to_string(), parts[2].to_string())
        })
        .collect()
}

#[test]
fn malformed_corpus_matches_headers() {
    let files = yaml_files(&repo_root().join("tests/policy-corpus/malformed"));
    assert!(files.len() >= 40, "only {} malformed files", files.len());
    let mut mismatches = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        let mut expected = expectations(&source);
        assert!(!expected.is_empty(), "{}: no expect header", file.display());
        let mut actual: Vec<(String, String, String)> =
            match parse_policy(&source, &file.display().to_string()) {
                Ok(_) => Vec::new(),
                Err(errors) => errors
                    .iter()
                    .map(|e| {
                        (
                            e.path.clone(),
                            e.pos.to_string(),
                            e.code.as_str().to_string(),
                        )
                    })
                    .collect(),
            };
        expected.sort();
        actual.sort();
        if expected != actual {
            mismatches.push(format!(
                "{}\n  expected {expected:?}\n  actual   {actual:?}",
                file.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} files differ:\n{}",
        mismatches.len(),
        files.len(),
        mismatches.join("\n")
    );
}

#[test]
fn errors_carry_file_path_position_and_reason() {
    let file = repo_root().join("tests/policy-corpus/malformed/operator-unknown.yaml");
    let err = parse_file(&file).unwrap_err().to_string();
    assert!(err.contains("operator-unknown.yaml:"), "{err}");
    assert!(
        err.contains("spec.kprobes[0].selectors[0].matchArgs[0].operator"),
        "{err}"
    );
    assert!(err.contains("unknown operator `Equals`"), "{err}");
    assert!(err.contains("[unknown-operator]"), "{err}");
}

/// A stable stand-in for the fuzz target: every prefix of every corpus file (cut on a
/// char boundary every few bytes) and a few byte-level corruptions go through the entry
/// point without panicking; what parses also round-trips.
#[test]
fn truncated_and_corrupted_corpus_files_never_panic() {
    let mut files = yaml_files(&compat_dir());
    files.extend(yaml_files(
        &repo_root().join("tests/policy-corpus/malformed"),
    ));
    let mut inputs = 0usize;
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let mut check = |text: &str| {
            inputs += 1;
            if let Ok(policy) = parse_policy(text, "cut.yaml") {
                let again =
                    parse_policy(&to_yaml(&policy), "again.yaml").expect("serialised form parses");
                assert!(
                    policy.same_meaning(&again),
                    "{}: round trip of a cut changed meaning",
                    file.display()
                );
            }
        };
        for cut in (0..source.len())
            .step_by(5)
            .filter(|&i| source.is_char_boundary(i))
        {
            check(&source[..cut]);
        }
        for (from, to) in [
            (": ", ":"),
            ("- ", "-"),
            ("\n  ", "\n"),
            ("\"", ""),
            ("0", "-1"),
            ("true", "2"),
        ] {
            check(&source.replacen(from, to, 1));
        }
    }
    assert!(inputs > 10_000, "only {inputs} inputs");
}
