use super::*;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn known(flag: &str) -> Option<Known> {
    match flag {
        "export-filename" | "log-level" | "enable-ancestors" => Some(Known::Value),
        "enable-process-cred" => Some(Known::Bool),
        _ => None,
    }
}

#[test]
fn precedence_lib_yaml_etc_configdir() {
    let root = dir("prec");
    let lib = root.join("lib");
    let etc = root.join("etc");
    let cfg = root.join("cfg");
    for d in [&lib, &etc, &cfg] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(lib.join("log-level"), "debug\n").unwrap();
    std::fs::write(lib.join("export-filename"), "/lib").unwrap();
    std::fs::write(lib.join("enable-ancestors"), "base").unwrap();
    std::fs::write(
        root.join("t.yaml"),
        "export-filename: /yaml\nenable-process-cred: true\nenable-ancestors: [base, kprobe]\n",
    )
    .unwrap();
    std::fs::write(etc.join("export-filename"), "/etc").unwrap();
    std::fs::write(cfg.join("log-level"), "warn").unwrap();
    std::fs::create_dir_all(cfg.join("..data")).unwrap();
    let sys = SystemPaths {
        lib_dropins: vec![lib],
        yaml: root.join("t.yaml"),
        etc_dropins: etc,
    };
    let all = collect(&sys, None, Some(&cfg)).unwrap();
    let v = |k: &str| all[k].value.clone();
    assert_eq!(v("log-level"), "warn");
    assert_eq!(v("export-filename"), "/etc");
    assert_eq!(v("enable-ancestors"), "base,kprobe");
    assert_eq!(v("enable-process-cred"), "true");
    let (args, warnings) = to_args(&all, known).unwrap();
    assert!(args.contains(&"--log-level=warn".to_string()), "{args:?}");
    assert!(warnings.is_empty());
    // A missing --config-dir is an error; missing system paths are not.
    assert!(collect(&sys, None, Some(&root.join("nope"))).is_err());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn unimplemented_flags_warn_or_refuse_by_name() {
    let args: Vec<String> = [
        "--bpf-lib",
        "/x",
        "--export-filename",
        "f",
        "--enable-cri",
        "--gops-address=:1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (rest, warnings) = strip_unimplemented(&args, known).unwrap();
    assert_eq!(rest, vec!["--export-filename", "f"]);
    assert_eq!(warnings.len(), 3);
    assert!(warnings[0].contains("--bpf-lib"), "{warnings:?}");
    let err = strip_unimplemented(&["--execve-map-size".into(), "64M".into()], known).unwrap_err();
    assert!(err.to_string().contains("--execve-map-size"), "{err}");
    let mut s = BTreeMap::new();
    s.insert(
        "bogus-flag".to_string(),
        Setting {
            value: "1".into(),
            origin: "/d/bogus-flag".into(),
        },
    );
    let err = to_args(&s, known).unwrap_err().to_string();
    assert!(
        err.contains("/d/bogus-flag") && err.contains("--bogus-flag"),
        "{err}"
    );
}

#[test]
fn yaml_errors_and_find_value() {
    assert!(yaml::flat_map("a: {b: c}").is_err());
    assert!(yaml::flat_map("- a\n- b").is_err());
    assert_eq!(
        find_value(&["--config-dir".into(), "/x".into()], "config-dir"),
        Some("/x".into())
    );
    assert_eq!(
        find_value(&["--config-dir=/y".into()], "config-dir"),
        Some("/y".into())
    );
}

#[test]
fn table_has_no_duplicates() {
    let mut names: Vec<&str> = UNIMPLEMENTED.iter().map(|(n, _, _)| *n).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len());
}

/// docs/reference/flags.md's table of unimplemented Tetragon flags, one row per flag: flag, what vigil
/// does, why.
fn reference_unimplemented_rows() -> Vec<(String, String, String)> {
    let reference = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/reference/flags.md");
    let text = std::fs::read_to_string(reference).unwrap();
    let section = text
        .split("\n## Tetragon flags vigil does not implement\n")
        .nth(1)
        .expect("docs/reference/flags.md has no section `Tetragon flags vigil does not implement`");
    section
        .lines()
        .skip_while(|l| !l.starts_with("| Flag |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 3, "docs/reference/flags.md row {row}");
            (cells[0].into(), cells[1].into(), cells[2].into())
        })
        .collect()
}

#[test]
fn flags_reference_lists_every_unimplemented_flag_with_its_reason() {
    let expected: Vec<(String, String, String)> = UNIMPLEMENTED
        .iter()
        .map(|(flag, _, disposition)| {
            let (what, why) = match disposition {
                Disposition::Warn(why) => ("accepted, warning", why),
                Disposition::Refuse(why) => ("**refused**", why),
            };
            (format!("`--{flag}`"), what.to_string(), why.to_string())
        })
        .collect();
    let rows = reference_unimplemented_rows();
    let as_markdown = |rows: &[(String, String, String)]| {
        rows.iter()
            .map(|(a, b, c)| format!("| {a} | {b} | {c} |\n"))
            .collect::<String>()
    };
    assert!(
        rows == expected,
        "docs/reference/flags.md's table of unimplemented flags differs from crates/vigil-config/src/table.rs; \
         the table says:\n{}",
        as_markdown(&expected)
    );
}
