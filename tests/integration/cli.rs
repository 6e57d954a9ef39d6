//! Bad input gets one clear line naming the problem.

use std::process::Command;

use crate::harness::vigil_bin;

fn agent_error(args: &[&str], as_nobody: bool) -> (i32, String) {
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(vigil_bin());
        c
    } else {
        Command::new(vigil_bin())
    };
    let out = cmd.arg("agent").args(args).output().expect("run vigil");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected exactly one line, got:\n{stderr}");
    lines[0]
}

#[test]
fn unprivileged_agent_says_it_needs_root() {
    let (code, err) = agent_error(&[], true);
    assert_eq!(code, 1);
    let line = one_line(&err);
    assert!(
        line.contains("must run as root") && line.contains("65534"),
        "{line}"
    );
}

#[test]
fn missing_btf_is_named() {
    let (code, err) = agent_error(&["--btf", "/nonexistent"], false);
    assert_eq!(code, 1);
    let line = one_line(&err);
    assert!(
        line.contains("BTF not found at /nonexistent") && line.contains("--btf"),
        "{line}"
    );
}

#[test]
fn bad_flag_values_name_the_flag() {
    for (args, needle) in [
        (&["--rb-size", "12Q"][..], "--rb-size"),
        (&["--username-metadata", "ldap"][..], "--username-metadata"),
        (
            &["--process-cache-gc-interval", "soon"][..],
            "--process-cache-gc-interval",
        ),
        (&["--export-file-perm", "rw"][..], "--export-file-perm"),
        (&["--cgroup-rate", "10"][..], "--cgroup-rate"),
        (&["--cgroup-rate", "10,fast"][..], "--cgroup-rate"),
    ] {
        let (code, err) = agent_error(args, false);
        assert_eq!(code, 1, "{args:?}");
        assert!(one_line(&err).contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn unknown_flag_is_refused_by_name() {
    let out = Command::new(vigil_bin())
        .args(["agent", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

#[test]
fn version_prints_the_version() {
    let out = Command::new(vigil_bin()).arg("version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("vigil {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn tracingpolicy_validate_accepts_tetragon_examples_and_names_faults() {
    let dir = "/work/shared/compat/tetragon-policies/tracingpolicy";
    let dir = std::env::var("VIGIL_COMPAT_POLICIES").unwrap_or_else(|_| dir.to_string());
    let ok = Command::new(vigil_bin())
        .args(["tracingpolicy", "validate", "--no-kernel"])
        .arg(format!("{dir}/sys_setuid.yaml"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("OK"));
    let bad = std::env::temp_dir().join(format!("vigil-bad-{}.yaml", std::process::id()));
    std::fs::write(
        &bad,
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: x\nspec:\n  kprobes:\n  - call: sys_write\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equals\n        values: [\"1\"]\n",
    )
    .unwrap();
    let out = Command::new(vigil_bin())
        .args(["tracingpolicy", "validate", "--no-kernel"])
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("spec.kprobes[0].selectors[0].matchArgs[0].operator")
            && text.contains("11:19"),
        "{text}"
    );
    std::fs::remove_file(bad).unwrap();
}
