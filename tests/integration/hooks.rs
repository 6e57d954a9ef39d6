//! Tracepoint, raw tracepoint, uprobe and usdt hooks on this kernel: arguments as the
//! kernel sees them, selectors in the kernel, Tetragon's event shapes. Expected values are
//! written here by hand (or computed by an independent tool, e.g. sha256sum).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(15);
const COMPAT: &str = "/work/shared/compat";

const EXEC_TP: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: exec-marker
spec:
  tracepoints:
  - subsystem: "sched"
    event: "sched_process_exec"
    message: "marker executed"
    tags: ["hooks-test"]
    args:
    - index: 4
      type: "data_loc"
    - index: 5
    selectors:
    - matchArgs:
      - index: 4
        operator: "Postfix"
        values: ["/vigil-tp-marker"]
"#;

#[test]
fn tracepoint_fields_are_read_by_format_and_filtered_in_the_kernel() {
    let _g = serial();
    let input = scratch_dir("hooks-tp-input");
    let marker = input.join("vigil-tp-marker");
    std::fs::copy("/usr/bin/true", &marker).unwrap();
    let policy = write_policy(&input, "exec-marker", EXEC_TP);
    let agent = Agent::start("hooks-tp", &["--tracing-policy", &policy]);
    let other = run(&mut Command::new("/usr/bin/true"));
    let hit = run(&mut Command::new(&marker));
    let events = agent.wait_for("the marker's tracepoint event", WAIT, |ev| {
        of_policy(ev, "process_tracepoint", "exec-marker")
            .iter()
            .any(|e| pid_of(e) == u64::from(hit))
    });
    let mine = of_policy(&events, "process_tracepoint", "exec-marker");
    let e = mine.iter().find(|e| pid_of(e) == u64::from(hit)).unwrap();
    assert_eq!(e["subsys"], "sched");
    assert_eq!(e["event"], "sched_process_exec");
    assert_eq!(
        e["args"][0]["string_arg"],
        marker.display().to_string(),
        "the data_loc filename"
    );
    assert_eq!(e["args"][1]["int_arg"], u64::from(hit), "the pid field");
    assert_eq!(e["message"], "marker executed");
    assert_eq!(e["tags"], serde_json::json!(["hooks-test"]));
    assert_eq!(e["action"], "KPROBE_ACTION_POST");
    assert!(
        mine.iter().all(|e| pid_of(e) != u64::from(other)),
        "/usr/bin/true does not end with /vigil-tp-marker"
    );
    assert_eq!(mine.len(), 1, "only the marker: {mine:?}");
}

const RAW_DUP2: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: raw-dups
spec:
  lists:
  - name: "dups"
    type: "syscalls"
    values: ["sys_dup", "sys_dup2"]
  tracepoints:
  - subsystem: "raw_syscalls"
    event: "sys_enter"
    args:
    - index: 4
      type: "syscall64"
    - index: 5
      type: "uint64"
    selectors:
    - matchArgs:
      - index: 4
        operator: "InMap"
        values: ["list:dups"]
"#;

#[test]
fn raw_syscalls_and_raw_tracepoints() {
    let _g = serial();
    let input = scratch_dir("hooks-raw-input");
    let dups = write_policy(&input, "raw-dups", RAW_DUP2);
    let rawtp = format!("{COMPAT}/tetragon-policies/tracingpolicy/rawtp.yaml");
    let agent = Agent::start(
        "hooks-raw",
        &["--tracing-policy", &dups, "--tracing-policy", &rawtp],
    );
    // dup2(1, 9) from a known process; /usr/bin/true for the raw exec tracepoint.
    let py = run(Command::new("/usr/bin/python3").args(["-c", "import os; os.dup2(1, 9)"]));
    let tru = run(&mut Command::new("/usr/bin/true"));
    let events = agent.wait_for("dup2 and exec events", WAIT, |ev| {
        let d = of_policy(ev, "process_tracepoint", "raw-dups");
        let r = of_policy(ev, "process_tracepoint", "rawtp");
        d.iter()
            .any(|e| pid_of(e) == u64::from(py) && e["args"][1]["size_arg"] == "1")
            && r.iter().any(|e| pid_of(e) == u64::from(tru))
    });
    let dup2 = of_policy(&events, "process_tracepoint", "raw-dups")
        .into_iter()
        .find(|e| pid_of(e) == u64::from(py) && e["args"][1]["size_arg"] == "1")
        .unwrap();
    assert_eq!(dup2["subsys"], "raw_syscalls");
    assert_eq!(dup2["event"], "sys_enter");
    assert_eq!(
        dup2["args"][0]["syscall_id"],
        serde_json::json!({"id": 33, "abi": "x64"}),
        "dup2 is x86_64 syscall 33"
    );
    assert!(
        of_policy(&events, "process_tracepoint", "raw-dups")
            .iter()
            .all(|e| matches!(e["args"][0]["syscall_id"]["id"].as_u64(), Some(32 | 33))),
        "only dup and dup2 pass the InMap list"
    );
    let exec = of_policy(&events, "process_tracepoint", "rawtp")
        .into_iter()
        .find(|e| pid_of(e) == u64::from(tru))
        .unwrap();
    assert_eq!(exec["event"], "sched_process_exec");
    assert_eq!(exec["args"][0]["linux_binprm_arg"]["path"], "/usr/bin/true");
}

fn uprobe_policy(helper: &Path, extra: &str) -> String {
    format!(
        r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: helper-uprobe
spec:
  uprobes:
  - path: "{}"
    symbols: ["vigil_uprobe_target"]
    message: "helper called"
    args:
    - index: 0
      type: "int32"
    - index: 1
      type: "string"
    - index: 2
      type: "int64"
    selectors:
    - matchArgs:
      - index: 1
        operator: "Equal"
        values: ["vigil-uprobe"]
{extra}"#,
        helper.display()
    )
}

#[test]
fn uprobe_reports_the_arguments_of_a_function() {
    let _g = serial();
    let input = scratch_dir("hooks-uprobe-input");
    let helper = helper_bin();
    let policy = write_policy(&input, "helper-uprobe", &uprobe_policy(&helper, ""));
    let agent = Agent::start("hooks-uprobe", &["--tracing-policy", &policy]);
    let other = run(Command::new(&helper).args(["uprobe-call", "5", "other"]));
    let hit = run(Command::new(&helper).args(["uprobe-call", "42", "vigil-uprobe"]));
    let events = agent.wait_for("the uprobe event", WAIT, |ev| {
        of_policy(ev, "process_uprobe", "helper-uprobe")
            .iter()
            .any(|e| pid_of(e) == u64::from(hit))
    });
    let mine = of_policy(&events, "process_uprobe", "helper-uprobe");
    let e = mine.iter().find(|e| pid_of(e) == u64::from(hit)).unwrap();
    assert_eq!(e["path"], helper.display().to_string());
    assert_eq!(e["symbol"], "vigil_uprobe_target");
    assert_eq!(e["message"], "helper called");
    assert_eq!(
        e["args"],
        serde_json::json!([
            {"int_arg": 42},
            {"string_arg": "vigil-uprobe"},
            {"long_arg": "42000"}
        ])
    );
    assert!(
        mine.iter().all(|e| pid_of(e) != u64::from(other)),
        "the call with \"other\" is filtered in the kernel"
    );
}

#[test]
fn uprobe_binary_digests_are_checked_before_attach() {
    let _g = serial();
    let input = scratch_dir("hooks-digest-input");
    let helper = helper_bin();
    let out = Command::new("sha256sum").arg(&helper).output().unwrap();
    let real = String::from_utf8(out.stdout).unwrap();
    let real = real.split_whitespace().next().unwrap().to_string();
    let digests = |d: &str| format!("    binaryDigests: [\"sha256:{d}\"]\n");
    let wrong = write_policy(
        &input,
        "wrong",
        &uprobe_policy(&helper, &digests(&"0".repeat(64))),
    );
    let right = write_policy(
        &input,
        "right",
        &uprobe_policy(&helper, &digests(&real)).replace("helper-uprobe", "helper-digest-ok"),
    );
    let agent = Agent::start(
        "hooks-digest",
        &["--tracing-policy", &wrong, "--tracing-policy", &right],
    );
    let hit = run(Command::new(&helper).args(["uprobe-call", "1", "vigil-uprobe"]));
    let events = agent.wait_for("the digest-checked uprobe", WAIT, |ev| {
        of_policy(ev, "process_uprobe", "helper-digest-ok")
            .iter()
            .any(|e| pid_of(e) == u64::from(hit))
    });
    assert!(
        of_policy(&events, "process_uprobe", "helper-uprobe").is_empty(),
        "the mismatching policy attached nothing"
    );
    let (_, log) = agent.stop();
    let refusal = log
        .lines()
        .find(|l| l.contains("not loaded") && l.contains("wrong.yaml"))
        .unwrap_or_else(|| panic!("no refusal in the log:\n{log}"));
    assert!(refusal.contains("binaryDigests"), "{refusal}");
    assert!(
        refusal.contains(&real),
        "names the file's digest: {refusal}"
    );
}

const PY_AUDIT: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: py-audit
spec:
  usdts:
  - path: "/usr/bin/python3"
    provider: "python"
    name: "audit"
    args:
    - index: 0
      type: "string"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Prefix"
        values: ["vigil."]
"#;

#[test]
fn usdt_reports_its_arguments() {
    let _g = serial();
    let input = scratch_dir("hooks-usdt-input");
    let policy = write_policy(&input, "py-audit", PY_AUDIT);
    let agent = Agent::start("hooks-usdt", &["--tracing-policy", &policy]);
    // CPython's `python:audit` probe (with a semaphore) fires for sys.audit().
    let py = run(Command::new("/usr/bin/python3").args([
        "-c",
        "import sys; sys.audit('other.event', 1); sys.audit('vigil.usdt', 2)",
    ]));
    let events = agent.wait_for("the usdt event", WAIT, |ev| {
        of_policy(ev, "process_usdt", "py-audit")
            .iter()
            .any(|e| pid_of(e) == u64::from(py))
    });
    let mine: Vec<_> = of_policy(&events, "process_usdt", "py-audit")
        .into_iter()
        .filter(|e| pid_of(e) == u64::from(py))
        .collect();
    assert_eq!(
        mine.len(),
        1,
        "other.event is filtered in the kernel: {mine:?}"
    );
    let e = mine[0];
    assert_eq!(e["path"], "/usr/bin/python3");
    assert_eq!(e["provider"], "python");
    assert_eq!(e["name"], "audit");
    assert_eq!(e["args"][0]["string_arg"], "vigil.usdt");
}

/// The compat corpus's expected outcome on this kernel, from `expected-outcomes.md`.
#[derive(Debug, Clone)]
enum Outcome {
    Load,
    Refuse(String),
}

/// The "This machine's kernel" table: (file relative to tetragon-policies/, outcome), and
/// the outcome of every file the table does not name.
fn expected_outcomes() -> (Vec<(String, Outcome)>, Outcome) {
    let text = std::fs::read_to_string(format!("{COMPAT}/expected-outcomes.md")).unwrap();
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("This machine's kernel"))
        .expect("a \"This machine's kernel\" section");
    let mut rows = Vec::new();
    let mut default = None;
    for line in section.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (files, outcome) = (cells[1], cells[2]);
        let outcome = if outcome.starts_with("load") {
            Outcome::Load
        } else if let Some(reason) = outcome.strip_prefix("refuse:") {
            Outcome::Refuse(reason.trim().to_string())
        } else {
            continue; // the header row
        };
        if files.starts_with("every other file") {
            default = Some(outcome);
            continue;
        }
        let mut dir = "";
        for f in files.split(", ") {
            let f = f.trim();
            // "tracingpolicy/usdt.yaml, usdt-set.yaml": later names share the first's folder.
            let full = match f.rsplit_once('/') {
                Some((d, _)) => {
                    dir = d;
                    f.to_string()
                }
                None => format!("{dir}/{f}"),
            };
            rows.push((full, outcome.clone()));
        }
    }
    (rows, default.expect("an \"every other file\" row"))
}

/// Whether a refusal names the expected reason: every significant word of the table's
/// reason (before any parenthesis) appears in the agent's message.
fn names_reason(actual: &str, expected: &str) -> bool {
    let key = expected.split('(').next().unwrap_or(expected);
    key.split_whitespace()
        .map(|w| w.trim_matches(|c: char| c == ',' || c == '`'))
        .filter(|w| w.len() >= 4 && !matches!(*w, "under" | "here"))
        .all(|w| actual.contains(w))
}

fn corpus_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            corpus_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn compat_corpus_loads_for_real_as_expected() {
    let _g = serial();
    let root = Path::new(COMPAT).join("tetragon-policies");
    let mut files = Vec::new();
    corpus_files(&root, &mut files);
    files.sort();
    assert!(files.len() > 50, "corpus at {}", root.display());
    let (mut rows, default) = expected_outcomes();
    correct_the_oracle(&mut rows);
    for (f, _) in &rows {
        assert!(
            root.join(f).exists(),
            "the table names {f}, which is not in the corpus"
        );
    }
    // One agent; each policy is added over gRPC, checked, and deleted (several corpus files
    // share a metadata.name). The export is off: raw_syscalls policies post every call.
    let agent = Agent::start("hooks-compat", &["--export-rate-limit=0"]);
    let cli = |args: &[&str]| agent.cli(args);
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap().display().to_string();
        let expected = rows
            .iter()
            .find(|(r, _)| *r == rel)
            .map_or(&default, |(_, o)| o);
        // Issue 8: enforcing network policies run on the cgroup socket fallback here (rule
        // and reason in netfallback::runs_on_cgroup_fallback). They are added in monitor
        // mode: loading the corpus must not deny or kill anything on the machine.
        let fallback = crate::netfallback::runs_on_cgroup_fallback(f);
        let expected = if fallback {
            eprintln!(
                "expected-outcomes.md: {rel}: an enforcing network policy the cgroup fallback runs: expecting load"
            );
            &Outcome::Load
        } else {
            expected
        };
        let name = metadata_name(f);
        let path = f.display().to_string();
        let mut add = vec!["tracingpolicy", "add", &path];
        if fallback {
            add.extend(["--mode", "monitor"]);
        }
        let (code, _, err) = cli(&add);
        let loaded = code == Some(0);
        let enabled = loaded && {
            let (_, list, _) = cli(&["tracingpolicy", "list"]);
            list.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.get(1) == Some(&name.as_str()) && cols.get(3) == Some(&"enabled")
            })
        };
        if loaded {
            let (code, _, err) = cli(&["tracingpolicy", "delete", &name]);
            assert_eq!(code, Some(0), "{rel}: delete {name}: {err}");
        }
        match expected {
            Outcome::Load if !(loaded && enabled) => {
                wrong.push(format!("{rel}: expected load, got {}", err.trim()));
            }
            Outcome::Refuse(reason)
                if loaded || err.trim().lines().count() != 1 || !names_reason(&err, reason) =>
            {
                wrong.push(format!(
                    "{rel}: expected refuse ({reason}), got {}",
                    if loaded {
                        "loaded".into()
                    } else {
                        err.trim().to_string()
                    }
                ));
            }
            _ => {}
        }
    }
    agent.stop();
    assert!(
        wrong.is_empty(),
        "{} of {} files differ from expected-outcomes.md:\n{}",
        wrong.len(),
        files.len(),
        wrong.join("\n")
    );
}

/// Rows of the table that this machine contradicts, each checked with an independent tool
/// here: the table says uprobe.yaml is refused because /bin/bash is stripped of `main`, but
/// Debian's bash exports `main` in .dynsym (for loadable builtins), where Tetragon's symbol
/// lookup finds it too. If readelf lists it, the policy must load.
fn correct_the_oracle(rows: &mut [(String, Outcome)]) {
    let out = Command::new("readelf")
        .args(["--dyn-syms", "-W", "/bin/bash"])
        .output()
        .expect("readelf (binutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    let exports_main = text
        .lines()
        .any(|l| l.contains(" FUNC ") && l.split_whitespace().last() == Some("main"));
    for (file, outcome) in rows.iter_mut() {
        if file == "tracingpolicy/uprobe.yaml" && exports_main {
            eprintln!(
                "expected-outcomes.md: {file}: /bin/bash exports `main` (readelf --dyn-syms): expecting load"
            );
            *outcome = Outcome::Load;
        }
    }
}

/// `metadata.name` of a policy file (the name gRPC knows it by).
pub(crate) fn metadata_name(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let meta = text.split("metadata:").nth(1).unwrap_or_default();
    meta.lines()
        .find_map(|l| l.trim().strip_prefix("name:"))
        .map(|n| n.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("{}: no metadata.name", file.display()))
}

#[test]
fn hooks_added_over_grpc_run_and_deleting_them_leaves_nothing() {
    let _g = serial();
    let input = scratch_dir("hooks-grpc-input");
    let marker = input.join("vigil-tp-marker");
    std::fs::copy("/usr/bin/true", &marker).unwrap();
    let helper = helper_bin();
    // One policy, three hook kinds: a tracepoint, a uprobe and a usdt.
    let both = format!(
        "{}\n  uprobes:{}\n  usdts:{}",
        EXEC_TP.trim_end(),
        uprobe_policy(&helper, "")
            .split("  uprobes:")
            .nth(1)
            .unwrap()
            .trim_end(),
        PY_AUDIT.split("  usdts:").nth(1).unwrap().trim_end()
    );
    let policy = write_policy(&input, "three-kinds", &both);
    let agent = Agent::start("hooks-grpc", &[]);
    let cli = |args: &[&str]| agent.cli(args);
    let before = crate::policy::prog_ids();
    let (code, _, err) = cli(&["tracingpolicy", "add", &policy]);
    assert_eq!(code, Some(0), "{err}");
    let (_, list, _) = cli(&["tracingpolicy", "list"]);
    assert!(
        list.contains("exec-marker") && list.contains("enabled"),
        "{list}"
    );
    let tp = run(&mut Command::new(&marker));
    let up = run(Command::new(&helper).args(["uprobe-call", "3", "vigil-uprobe"]));
    let py =
        run(Command::new("/usr/bin/python3").args(["-c", "import sys; sys.audit('vigil.grpc')"]));
    agent.wait_for("one event of each kind", WAIT, |ev| {
        let has = |kind: &str, pid: u32| {
            of_policy(ev, kind, "exec-marker")
                .iter()
                .any(|e| pid_of(e) == u64::from(pid))
        };
        has("process_tracepoint", tp) && has("process_uprobe", up) && has("process_usdt", py)
    });
    let (code, _, err) = cli(&["tracingpolicy", "delete", "exec-marker"]);
    assert_eq!(code, Some(0), "{err}");
    // Programs are freed after an RCU grace period.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while crate::policy::prog_ids() != before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        crate::policy::prog_ids(),
        before,
        "after delete the program, map and link ids are those before the add"
    );
    agent.stop();
}

#[test]
fn every_syscall_of_a_binary_is_named_64_and_32_bit() {
    let _g = serial();
    let input = scratch_dir("hooks-allsys-input");
    let helper = helper_bin();
    let yaml = format!(
        r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: helper-syscalls
spec:
  lists:
  - name: "all"
    type: "generated_syscalls"
  kprobes:
  - call: "list:all"
    selectors:
    - matchBinaries:
      - operator: "In"
        values: ["{}"]
"#,
        helper.display()
    );
    let policy = write_policy(&input, "helper-syscalls", &yaml);
    let agent = Agent::start("hooks-allsys", &["--tracing-policy", &policy]);
    let pid = run(Command::new(&helper).args(["ia32-open", "/etc/hostname"]));
    let other = run(&mut Command::new("/usr/bin/true"));
    let events = agent.wait_for("the helper's exit_group", WAIT, |ev| {
        of_policy(ev, "process_kprobe", "helper-syscalls")
            .iter()
            .any(|e| pid_of(e) == u64::from(pid) && e["function_name"] == "__x64_sys_exit_group")
    });
    let mine = of_policy(&events, "process_kprobe", "helper-syscalls");
    let names: Vec<&str> = mine
        .iter()
        .filter(|e| pid_of(e) == u64::from(pid))
        .filter_map(|e| e["function_name"].as_str())
        .collect();
    assert!(
        names.contains(&"__ia32_sys_openat"),
        "the int 0x80 openat is named as Tetragon names it: {names:?}"
    );
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("__x64_sys_") || n.starts_with("__ia32_sys_"))
    );
    assert!(
        mine.iter().all(|e| pid_of(e) != u64::from(other)),
        "only the helper binary matches"
    );
}

#[test]
fn uprobe_sigkill_kills_the_caller_before_the_function_runs() {
    let _g = serial();
    let input = scratch_dir("hooks-kill-input");
    let helper = helper_bin();
    let yaml = uprobe_policy(&helper, "")
        .replace("helper-uprobe", "helper-kill")
        .replace("[\"vigil-uprobe\"]", "[\"vigil-kill\"]")
        + "      matchActions:\n      - action: Sigkill\n";
    let policy = write_policy(&input, "helper-kill", &yaml);
    let agent = Agent::start("hooks-kill", &["--tracing-policy", &policy]);
    let spared = Command::new(&helper)
        .args(["uprobe-call", "2", "spared"])
        .output()
        .unwrap();
    assert!(spared.status.success());
    assert_eq!(String::from_utf8_lossy(&spared.stdout).trim(), "2008");
    let child = Command::new(&helper)
        .args(["uprobe-call", "1", "vigil-kill"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{:?}", out.status);
    assert!(
        out.stdout.is_empty(),
        "killed at the call: the result was never printed"
    );
    let events = agent.wait_for("the Sigkill uprobe event", WAIT, |ev| {
        of_policy(ev, "process_uprobe", "helper-kill")
            .iter()
            .any(|e| pid_of(e) == u64::from(pid))
    });
    let e = of_policy(&events, "process_uprobe", "helper-kill")
        .into_iter()
        .find(|e| pid_of(e) == u64::from(pid))
        .unwrap();
    assert_eq!(e["action"], "KPROBE_ACTION_SIGKILL");
}

#[test]
fn uprobe_return_values_are_filtered_at_the_return() {
    let _g = serial();
    let input = scratch_dir("hooks-uret-input");
    let helper = helper_bin();
    let yaml = format!(
        r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: helper-return
spec:
  uprobes:
  - path: "{}"
    symbols: ["vigil_uprobe_target"]
    return: true
    args:
    - index: 0
      type: "int32"
    returnArg:
      index: 0
      type: "int64"
    selectors:
    - matchReturnArgs:
      - index: 0
        operator: "GT"
        values: ["40000"]
"#,
        helper.display()
    );
    let policy = write_policy(&input, "helper-return", &yaml);
    let agent = Agent::start("hooks-uret", &["--tracing-policy", &policy]);
    // vigil_uprobe_target(n, text, n * 1000) returns n + strlen(text) + n * 1000.
    let small = run(Command::new(&helper).args(["uprobe-call", "5", "other"]));
    let big = run(Command::new(&helper).args(["uprobe-call", "42", "vigil-uprobe"]));
    let events = agent.wait_for("the return-filtered uprobe event", WAIT, |ev| {
        of_policy(ev, "process_uprobe", "helper-return")
            .iter()
            .any(|e| pid_of(e) == u64::from(big))
    });
    let mine = of_policy(&events, "process_uprobe", "helper-return");
    let e = mine.iter().find(|e| pid_of(e) == u64::from(big)).unwrap();
    assert_eq!(
        e["args"][0]["int_arg"], 42,
        "entry arguments travel to the return"
    );
    assert!(
        mine.iter().all(|e| pid_of(e) != u64::from(small)),
        "5010 is not > 40000: filtered at the return"
    );
    assert_eq!(
        mine.iter().filter(|e| pid_of(e) == u64::from(big)).count(),
        1,
        "one event per call, at the return"
    );
}
