//! Kernel-function and LSM hooks. Tests named `kfunc_*` run in the kernel-matrix guests
//! (Debian 6.1 / 6.12, which have fentry, fmod_ret and BPF LSM); on this host's kernel they
//! are not applicable (`kernel_caps::require`). The host test checks the refusal instead.
//! Expected values are written here by hand.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::kernel_caps;

/// Guests are emulated (tens of times slower).
const WAIT: Duration = Duration::from_secs(60);

fn file_path(e: &Value) -> &str {
    e["args"][0]["file_arg"]["path"].as_str().unwrap_or("")
}

/// Like `Agent::wait_for`, but a timeout shows the agent's log (load errors, mechanisms).
pub(crate) fn wait_or_log(
    agent: &Agent,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let events = agent.events();
        if pred(&events) {
            return events;
        }
        if std::time::Instant::now() > deadline {
            let log = std::fs::read_to_string(&agent.stderr_path).unwrap_or_default();
            panic!("timed out waiting for {what}; agent log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The mechanism the agent reports for a hook on `function` ("kernel hook attached").
pub(crate) fn mechanism(log: &str, function: &str) -> Option<String> {
    log.lines()
        .filter(|l| l.contains("kernel hook attached") && l.contains(function))
        .find_map(|l| {
            let rest = &l[l.find("mechanism=")? + "mechanism=".len()..];
            Some(
                rest.trim_start_matches('"')
                    .split(['"', ' '])
                    .next()?
                    .to_string(),
            )
        })
}

const FILE_OPEN: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: hostname-open
spec:
  kprobes:
  - call: "security_file_open"
    syscall: false
    message: "hostname opened"
    args:
    - index: 0
      type: "file"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Prefix"
        values: ["/etc/hostname"]
"#;

#[test]
fn kfunc_security_file_open_prefix_reports_the_path() {
    if !kernel_caps::require("fentry") {
        return;
    }
    let _g = serial();
    let dir = scratch_dir("kfunc-file-open-files");
    if !std::path::Path::new("/etc/hostname").exists() {
        std::fs::write("/etc/hostname", "vigil-guest\n").unwrap();
    }
    let policy = write_policy(&dir, "hostname-open", FILE_OPEN);
    let agent = Agent::start("kfunc-file-open", &["--tracing-policy", &policy]);
    let other = run(Command::new("/usr/bin/cat").arg("/etc/passwd"));
    let cat = run(Command::new("/usr/bin/cat").arg("/etc/hostname"));
    let events = wait_or_log(&agent, "cat /etc/hostname", |ev| {
        of_policy(ev, "process_kprobe", "hostname-open")
            .iter()
            .any(|e| pid_of(e) == u64::from(cat))
    });
    let (_, log) = agent.stop();
    let mine = of_policy(&events, "process_kprobe", "hostname-open");
    let hit = mine
        .iter()
        .find(|e| pid_of(e) == u64::from(cat))
        .expect("cat /etc/hostname is posted");
    assert_eq!(hit["function_name"], "security_file_open");
    assert_eq!(file_path(hit), "/etc/hostname");
    assert_eq!(hit["args"][0]["file_arg"]["permission"], "-rw-r--r--");
    assert_eq!(hit["action"], "KPROBE_ACTION_POST");
    assert_eq!(hit["message"], "hostname opened");
    assert_eq!(hit["process"]["binary"], "/usr/bin/cat");
    assert!(
        mine.iter().all(|e| file_path(e) == "/etc/hostname"),
        "only /etc/hostname is posted: {mine:?}"
    );
    assert!(
        mine.iter().all(|e| pid_of(e) != u64::from(other)),
        "cat /etc/passwd is not posted"
    );
    assert_eq!(
        mechanism(&log, "security_file_open").as_deref(),
        Some("fentry"),
        "one kernel function on a kernel with fentry attaches by fentry:\n{log}"
    );
}

/// Opens `path` for writing and appends; the error kind if refused.
pub(crate) fn try_write(path: &std::path::Path) -> Result<(), std::io::Error> {
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(b"tampered\n")
}

pub(crate) fn protect_policy(name: &str, file: &str, lsm: bool) -> String {
    let hook = if lsm {
        "  lsmhooks:\n  - hook: \"file_open\"\n".to_string()
    } else {
        "  kprobes:\n  - call: \"security_file_open\"\n    syscall: false\n".to_string()
    };
    format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: {name}
spec:
{hook}    args:
    - index: 0
      type: "file"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Equal"
        values: ["{file}"]
      matchActions:
      - action: Override
        argError: -1
"#
    )
}

/// A write to the protected file is refused with EPERM; the file is unchanged; the event
/// (kind `kind`) says Override; another file of the same directory is writable.
fn denies_write(name: &str, lsm: bool) {
    let _g = serial();
    let dir = scratch_dir(&format!("{name}-files"));
    let protected = dir.join("protected.txt");
    let free = dir.join("free.txt");
    std::fs::write(&protected, "original\n").unwrap();
    std::fs::write(&free, "original\n").unwrap();
    let policy = write_policy(
        &dir,
        name,
        &protect_policy(name, &protected.display().to_string(), lsm),
    );
    let agent = Agent::start(name, &["--tracing-policy", &policy]);
    let Err(err) = try_write(&protected) else {
        let log = std::fs::read_to_string(&agent.stderr_path).unwrap_or_default();
        panic!("the write to the protected file was not refused; agent log:\n{log}");
    };
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    // The hook sees the file the kernel opened: a symbolic link to it is refused too.
    let link = dir.join("link.txt");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&protected, &link).unwrap();
    let err = try_write(&link).expect_err("a write through a symbolic link is refused");
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    try_write(&free).expect("another file stays writable");
    let kind = if lsm { "process_lsm" } else { "process_kprobe" };
    let me = u64::from(std::process::id());
    let events = wait_or_log(&agent, "the Override event", |ev| {
        of_policy(ev, kind, name).iter().any(|e| pid_of(e) == me)
    });
    let (_, log) = agent.stop();
    let hit = of_policy(&events, kind, name)
        .into_iter()
        .find(|e| pid_of(e) == me)
        .unwrap();
    assert_eq!(hit["action"], "KPROBE_ACTION_OVERRIDE");
    assert_eq!(file_path(hit), protected.display().to_string());
    let function = if lsm {
        "file_open"
    } else {
        "security_file_open"
    };
    assert_eq!(hit["function_name"], function);
    assert_eq!(
        mechanism(&log, function).as_deref(),
        Some(if lsm { "lsm" } else { "fmod_ret" })
    );
    // After the agent stopped (detached), the file is readable and unchanged.
    assert_eq!(std::fs::read_to_string(&protected).unwrap(), "original\n");
    assert_eq!(
        std::fs::read_to_string(&free).unwrap(),
        "original\ntampered\n"
    );
}

#[test]
fn kfunc_override_on_security_file_open_denies_a_write() {
    if !kernel_caps::require("fmod_ret") {
        return;
    }
    denies_write("kfunc-fmodret", false);
}

#[test]
fn kfunc_lsm_file_open_denies_a_write() {
    if !kernel_caps::require("lsm") {
        return;
    }
    denies_write("kfunc-lsm", true);
}

/// `return: true` attaches by fexit and reports the return value, here the error another
/// policy's Override (fmod_ret) made security_file_open return.
#[test]
fn kfunc_return_probe_reports_the_return_value() {
    if !kernel_caps::require("fentry") {
        return;
    }
    let _g = serial();
    let dir = scratch_dir("kfunc-return-files");
    let protected = dir.join("protected.txt");
    let free = dir.join("free.txt");
    std::fs::write(&protected, "original\n").unwrap();
    std::fs::write(&free, "original\n").unwrap();
    let deny = protect_policy("deny-eacces", &protected.display().to_string(), false)
        .replace("argError: -1", "argError: -13");
    let ret = format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: open-return
spec:
  kprobes:
  - call: "security_file_open"
    syscall: false
    return: true
    args:
    - index: 0
      type: "file"
    returnArg:
      index: 0
      type: "int"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Prefix"
        values: ["{}/"]
"#,
        dir.display()
    );
    let deny = write_policy(&dir, "deny-eacces", &deny);
    let ret = write_policy(&dir, "open-return", &ret);
    let agent = Agent::start(
        "kfunc-return",
        &["--tracing-policy", &deny, "--tracing-policy", &ret],
    );
    let err = try_write(&protected).expect_err("refused by the Override policy");
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
    try_write(&free).expect("another file stays writable");
    let path_of = |e: &Value| file_path(e).to_string();
    let events = wait_or_log(&agent, "both return events", |ev| {
        let mine = of_policy(ev, "process_kprobe", "open-return");
        [&protected, &free]
            .iter()
            .all(|p| mine.iter().any(|e| path_of(e) == p.display().to_string()))
    });
    let (_, log) = agent.stop();
    let mine = of_policy(&events, "process_kprobe", "open-return");
    let ret_of = |p: &std::path::Path| {
        mine.iter()
            .find(|e| path_of(e) == p.display().to_string())
            .map(|e| e["return"]["int_arg"].clone())
            .unwrap()
    };
    assert_eq!(ret_of(&protected), -13);
    assert_eq!(ret_of(&free), 0);
    assert_eq!(
        mine[0]["args"].as_array().map(Vec::len),
        Some(1),
        "the return value is not an argument"
    );
    assert_eq!(mine[0]["return_action"], "KPROBE_ACTION_POST");
    let attached = log
        .lines()
        .find(|l| l.contains("kernel hook attached") && l.contains("open-return"))
        .unwrap_or_else(|| panic!("no mechanism logged for open-return:\n{log}"));
    assert!(attached.contains("fexit"), "{attached}");
}

/// vigil's BPF programs for kernel functions currently loaded (bpftool's view).
fn kfunc_programs() -> Vec<String> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "-j"])
        .output()
        .expect("bpftool");
    let progs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    progs
        .iter()
        .filter_map(|p| p["name"].as_str())
        .filter(|n| {
            [
                "vigil_kprobe",
                "vigil_fentry",
                "vigil_fmod_ret",
                "vigil_lsm",
            ]
            .contains(n)
        })
        .map(str::to_string)
        .collect()
}

/// This host's kernel has no kprobes, fentry or BPF LSM: such policies are refused naming
/// the missing feature, the agent runs on, and nothing of them stays attached.
#[test]
fn kernel_function_policies_are_refused_where_the_kernel_lacks_them() {
    let m = kernel_caps::matrix();
    let column = kernel_caps::current_column();
    if ["kprobe", "fentry", "lsm"]
        .iter()
        .any(|k| m.expects(&column, k).unwrap_or(true))
    {
        eprintln!("not applicable: {column} has kprobes, fentry or BPF LSM");
        return;
    }
    let _g = serial();
    let dir = scratch_dir("kfunc-refused-files");
    let probe = write_policy(&dir, "hostname-open", FILE_OPEN);
    let lsm = write_policy(
        &dir,
        "lsm-protect",
        &protect_policy("lsm-protect", "/etc/hostname", true),
    );
    let agent = Agent::start(
        "kfunc-refused",
        &["--tracing-policy", &probe, "--tracing-policy", &lsm],
    );
    assert!(
        kfunc_programs().is_empty(),
        "no kernel-function program is loaded"
    );
    // The agent still runs and reports processes.
    let pid = run(&mut Command::new("/usr/bin/true"));
    agent.wait_for(
        "an exec after the refusals",
        Duration::from_secs(15),
        |ev| !execs_of_pid(ev, pid).is_empty(),
    );
    let (events, log) = agent.stop();
    for (policy, path) in [
        ("hostname-open.yaml", "spec.kprobes[0]"),
        ("lsm-protect.yaml", "spec.lsmhooks[0]"),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains("tracing policy not loaded") && l.contains(policy))
            .unwrap_or_else(|| panic!("no refusal logged for {policy}:\n{log}"));
        assert!(line.contains(path), "{line}");
        assert!(
            line.contains("kprobes, fentry or BPF LSM, none available"),
            "the refusal names the missing feature: {line}"
        );
    }
    assert!(of_kind(&events, "process_kprobe").is_empty());
    assert!(of_kind(&events, "process_lsm").is_empty());
}

/// (prog_id -> (run_time_ns, run_cnt)) of the BPF programs `pid` holds (fdinfo; needs
/// kernel.bpf_stats_enabled).
fn prog_stats(pid: u32) -> std::collections::HashMap<u64, (u64, u64)> {
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return out;
    };
    for e in dir.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok())
        };
        if let (Some(id), Some(ns), Some(cnt)) =
            (field("prog_id:"), field("run_time_ns:"), field("run_cnt:"))
        {
            out.insert(id, (ns, cnt));
        }
    }
    out
}

/// In-kernel ns per invocation of a security_file_open hook whose selector matches
/// nothing (the path is still resolved), by fentry and by kprobe. A measurement, not a
/// gate: run with `tests/kernel-matrix/run --kernel 6.12 --filter bench_kfunc`.
#[test]
fn bench_kfunc_security_file_open_fentry_vs_kprobe() {
    if !kernel_caps::require("fentry") || !kernel_caps::require("kprobe") {
        return;
    }
    let _g = serial();
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").unwrap();
    let dir = scratch_dir("kfunc-bench-files");
    let fentry = FILE_OPEN
        .replace("hostname-open", "bench-fentry")
        .replace("/etc/hostname", "/nonexistent-vigil/");
    // Two functions: one kprobe each (the list form never uses fentry).
    let kprobe = fentry.replace("bench-fentry", "bench-kprobe").replace(
        "  kprobes:\n  - call: \"security_file_open\"",
        "  lists:\n  - name: \"opens\"\n    values: [\"security_file_open\", \"security_sb_pivotroot\"]\n  kprobes:\n  - call: \"list:opens\"",
    );
    const N: u64 = 3000;
    let mut results = Vec::new();
    for (name, yaml) in [("bench-fentry", fentry), ("bench-kprobe", kprobe)] {
        let policy = write_policy(&dir, name, &yaml);
        let agent = Agent::start(name, &["--tracing-policy", &policy]);
        let before = prog_stats(agent.pid());
        for _ in 0..N {
            drop(std::fs::File::open("/etc/hostname").unwrap());
        }
        let after = prog_stats(agent.pid());
        let (_, log) = agent.stop();
        // The hook is the program whose run count grew by at least N.
        let (ns, cnt) = after
            .iter()
            .filter_map(|(id, (ns, cnt))| {
                let (ns0, cnt0) = before.get(id).copied().unwrap_or_default();
                (cnt - cnt0 >= N).then_some((ns - ns0, cnt - cnt0))
            })
            .max_by_key(|&(_, c)| c)
            .unwrap_or_else(|| panic!("{name}: no program ran {N} times:\n{log}"));
        let mechanism = log
            .lines()
            .find(|l| l.contains("kernel hook attached") && l.contains("security_file_open"))
            .and_then(|l| l.split("mechanism=").nth(1))
            .unwrap_or("?")
            .to_string();
        eprintln!(
            "bench {name}: mechanism {mechanism}: {} ns per invocation ({cnt} runs)",
            ns / cnt
        );
        results.push((name, ns as f64 / cnt as f64));
    }
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0").unwrap();
    eprintln!(
        "bench ratio fentry/kprobe: {:.2}",
        results[0].1 / results[1].1
    );
}

/// Exec of a binary under a denied directory is refused by an LSM `bprm_check_security`
/// policy, also through a symbolic link (the hook sees the file the kernel opened); running it
/// through the dynamic loader (`ld.so BINARY`, no execve of it) is refused by the same
/// policy's `mmap_file` hook, which denies mapping its code executable. A copy outside the
/// directory runs.
#[test]
fn kfunc_exec_under_a_denied_directory_is_refused() {
    if !kernel_caps::require("lsm") {
        return;
    }
    let _g = serial();
    let dir = scratch_dir("kfunc-exec-deny-files");
    let denied = dir.join("denied");
    std::fs::create_dir_all(&denied).unwrap();
    let bin = denied.join("vtrue");
    let free = dir.join("vtrue-free");
    std::fs::copy("/usr/bin/true", &bin).unwrap();
    std::fs::copy("/usr/bin/true", &free).unwrap();
    let link = dir.join("vtrue-link");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&bin, &link).unwrap();
    let yaml = format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: exec-deny
spec:
  lsmhooks:
  - hook: "bprm_check_security"
    args:
    - index: 0
      type: "linux_binprm"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Prefix"
        values: ["{d}/"]
      matchActions:
      - action: Override
        argError: -1
  - hook: "mmap_file"
    args:
    - index: 0
      type: "file"
    - index: 2
      type: "uint64"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Prefix"
        values: ["{d}/"]
      - index: 2
        operator: "Mask"
        values: ["4"]
      matchActions:
      - action: Override
        argError: -1
"#,
        d = denied.display()
    );
    let policy = write_policy(&dir, "exec-deny", &yaml);
    let agent = Agent::start("kfunc-exec-deny", &["--tracing-policy", &policy]);
    for p in [&bin, &link] {
        match Command::new(p).status() {
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{}: {e}", p.display()),
            Ok(st) => {
                let log = std::fs::read_to_string(&agent.stderr_path).unwrap_or_default();
                panic!("{} ran ({st}); agent log:\n{log}", p.display());
            }
        }
    }
    let ld_so = [
        "/lib64/ld-linux-x86-64.so.2",
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("the dynamic loader");
    let out = Command::new(ld_so).arg(&bin).output().unwrap();
    assert!(
        !out.status.success(),
        "ld.so ran the denied binary: {:?}",
        out
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Operation not permitted") || stderr.contains("failed to map"),
        "ld.so names the refused mapping: {stderr}"
    );
    let st = Command::new(&free).status().expect("the copy outside runs");
    assert!(st.success());
    let events = wait_or_log(&agent, "the exec refusals", |ev| {
        of_policy(ev, "process_lsm", "exec-deny")
            .iter()
            .filter(|e| e["function_name"] == "bprm_check_security")
            .count()
            >= 2
    });
    agent.stop();
    let execs: Vec<_> = of_policy(&events, "process_lsm", "exec-deny")
        .into_iter()
        .filter(|e| e["function_name"] == "bprm_check_security")
        .collect();
    assert!(
        execs.iter().all(|e| e["action"] == "KPROBE_ACTION_OVERRIDE"
            && e["args"][0]["linux_binprm_arg"]["path"] == bin.display().to_string()),
        "both refusals name the binary the kernel opened: {execs:#?}"
    );
}
