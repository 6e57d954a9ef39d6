//! The policy runtime on this kernel: syscall hooks through tracepoints, selectors evaluated
//! in the kernel, Sigkill. Expected values are written here by hand.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(15);

fn path_arg(e: &Value) -> &str {
    e["args"][1]["string_arg"].as_str().unwrap_or("")
}

fn counters(agent: &Agent) -> Vec<Value> {
    let path = agent.events_path.with_file_name("policy-counters.json");
    let _ = std::fs::remove_file(&path);
    agent.signal(libc::SIGUSR1);
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(&path)
            && !text.is_empty()
        {
            return text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no policy counters after SIGUSR1");
}

const ETC_CAT: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: etc-cat
spec:
  kprobes:
  - call: "sys_openat"
    syscall: true
    message: "cat reads /etc"
    tags: ["test"]
    args:
    - index: 0
      type: "int"
    - index: 1
      type: "string"
    - index: 2
      type: "int"
    selectors:
    - matchArgs:
      - index: 1
        operator: "Prefix"
        values: ["/etc/"]
      matchBinaries:
      - operator: "In"
        values: ["/usr/bin/cat"]
"#;

#[test]
fn openat_prefix_and_binary_are_filtered_in_the_kernel() {
    let _g = serial();
    let dir = scratch_dir("policy-etc-files");
    let other = dir.join("not-etc.txt");
    std::fs::write(&other, "x").unwrap();
    let policy = write_policy(&dir, "etc-cat", ETC_CAT);
    let agent = Agent::start("policy-etc", &["--tracing-policy", &policy]);
    let cat = run(Command::new("/usr/bin/cat").arg("/etc/hostname"));
    let head = run(Command::new("/usr/bin/head").arg("/etc/hostname"));
    let cat_other = run(Command::new("/usr/bin/cat").arg(&other));
    let sentinel = run(Command::new("/usr/bin/cat").arg("/etc/os-release"));
    let events = agent.wait_for("sentinel", WAIT, |ev| {
        kprobes(ev, "etc-cat")
            .iter()
            .any(|e| pid_of(e) == u64::from(sentinel) && path_arg(e) == "/etc/os-release")
    });
    let mine = kprobes(&events, "etc-cat");
    let hit = mine
        .iter()
        .find(|e| pid_of(e) == u64::from(cat) && path_arg(e) == "/etc/hostname")
        .expect("cat /etc/hostname is posted");
    assert_eq!(hit["function_name"], "__x64_sys_openat");
    assert_eq!(hit["action"], "KPROBE_ACTION_POST");
    assert_eq!(hit["message"], "cat reads /etc");
    assert_eq!(hit["tags"], serde_json::json!(["test"]));
    assert_eq!(hit["process"]["binary"], "/usr/bin/cat");
    assert_eq!(hit["args"][0]["int_arg"], -100, "AT_FDCWD");
    assert_eq!(
        hit["process"]["exec_id"],
        execs_of_pid(&events, cat)[0]["process"]["exec_id"]
    );
    assert!(
        mine.iter().all(|e| pid_of(e) != u64::from(head)),
        "head is not /usr/bin/cat"
    );
    // A path matches on the user string or on the path the kernel opened (resolved from the
    // returned fd: /usr/share/locale/locale.alias is a symlink into /etc).
    let etc = |e: &&&Value| {
        path_arg(e).starts_with("/etc/")
            || e["args"].as_array().unwrap().iter().any(|a| {
                a["label"] == "resolved_path"
                    && a["file_arg"]["path"].as_str().unwrap().starts_with("/etc/")
            })
    };
    assert!(
        mine.iter()
            .all(|e| pid_of(e) != u64::from(cat_other) || !path_arg(e).starts_with("/tmp/")),
        "no /tmp path"
    );
    assert!(mine.iter().all(|e| etc(&e)), "only /etc/ paths are posted");
    assert!(
        mine.iter()
            .all(|e| e["process"]["binary"] == "/usr/bin/cat"),
        "only cat is posted"
    );
    // The kernel counted exactly what it posted (every posted event reached the file).
    let c = counters(&agent);
    let (events, _) = agent.stop();
    let posted = kprobes(&events, "etc-cat").len() as u64;
    let row = c
        .iter()
        .find(|r| r["policy"] == "etc-cat")
        .expect("counter row");
    assert!(
        row["posted"].as_u64().unwrap() <= posted,
        "posted counter {row} vs {posted} events"
    );
    assert!(
        row["posted"].as_u64().unwrap() >= 4,
        "cat, cat-other's libc opens and the sentinel: {row}"
    );
    assert_eq!(row["matched"], row["posted"], "{row}");
    assert_eq!(row["dropped"], 0);
}

#[test]
fn sigkill_on_a_syscall_kills_the_process() {
    let _g = serial();
    let dir = scratch_dir("policy-kill-files");
    let target = dir.join("forbidden.txt");
    std::fs::write(&target, "secret\n").unwrap();
    let yaml = OpenatPolicy::new("kill-forbidden")
        .dirfd()
        .path("Equal", &[&target.display().to_string()])
        .action("Sigkill", &[])
        .yaml();
    let policy = write_policy(&dir, "kill", &yaml);
    let agent = Agent::start("policy-kill", &["--tracing-policy", &policy]);
    let out = Command::new("/usr/bin/cat").arg(&target).output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "cat is killed");
    // The open itself ran (a tracepoint cannot stop it); the kill lands before cat reads.
    assert!(
        out.stdout.is_empty(),
        "nothing was printed: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let events = agent.wait_for("kill event and exit", WAIT, |ev| {
        !kprobes(ev, "kill-forbidden").is_empty()
            && of_kind(ev, "process_exit")
                .iter()
                .any(|e| e["signal"] == "SIGKILL" && e["process"]["binary"] == "/usr/bin/cat")
    });
    let k = kprobes(&events, "kill-forbidden")[0];
    assert_eq!(k["action"], "KPROBE_ACTION_SIGKILL");
    assert_eq!(path_arg(k), target.to_str().unwrap());
    let c = counters(&agent);
    agent.stop();
    let row = c.iter().find(|r| r["policy"] == "kill-forbidden").unwrap();
    assert_eq!(row["enforced"], 1, "{row}");
}

#[test]
fn a_policy_that_cannot_load_is_reported_and_the_agent_runs() {
    let _g = serial();
    let dir = scratch_dir("policy-bad-files");
    let lsm = write_policy(
        &dir,
        "lsm",
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: lsm-open\nspec:\n  lsmhooks:\n  - hook: \"file_open\"\n    args:\n    - index: 0\n      type: \"file\"\n",
    );
    let broken = write_policy(
        &dir,
        "broken",
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: b\nspec:\n  kprobes:\n  - call: sys_write\n    syscall: true\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equals\n",
    );
    let good = write_policy(&dir, "good", ETC_CAT);
    let agent = Agent::start(
        "policy-bad",
        &[
            "--tracing-policy",
            &lsm,
            "--tracing-policy",
            &broken,
            "--tracing-policy",
            &good,
        ],
    );
    let cat = run(Command::new("/usr/bin/cat").arg("/etc/hostname"));
    agent.wait_for("the good policy still works", WAIT, |ev| {
        kprobes(ev, "etc-cat")
            .iter()
            .any(|e| pid_of(e) == u64::from(cat))
    });
    let (_, log) = agent.stop();
    let line = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no log line with {needle}:\n{log}"))
            .to_string()
    };
    assert!(
        line("lsm.yaml").contains("BPF LSM"),
        "the refusal names the missing mechanism"
    );
    let b = line("broken.yaml");
    assert!(
        b.contains("spec.kprobes[0].selectors[0].matchArgs[0].operator") && b.contains("12:19"),
        "{b}"
    );
    assert!(
        log.contains("policies=1"),
        "only the good policy is loaded:\n{log}"
    );
}

/// Ids of every eBPF program, map and link on the host.
pub(crate) fn prog_ids() -> std::collections::BTreeSet<String> {
    let mut ids = std::collections::BTreeSet::new();
    for kind in ["prog", "map", "link"] {
        let out = Command::new("bpftool")
            .args([kind, "show", "--json"])
            .output()
            .expect("bpftool");
        let objs: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(Vec::new()));
        for o in objs.as_array().unwrap() {
            if let Some(id) = o["id"].as_u64() {
                ids.insert(format!("{kind}:{id}"));
            }
        }
    }
    ids
}

#[test]
fn policies_added_over_grpc_run_in_the_kernel_and_deleting_them_leaves_nothing() {
    let _g = serial();
    let dir = scratch_dir("policy-grpc-files");
    let policy = write_policy(&dir, "etc-cat", ETC_CAT);
    let agent = Agent::start("policy-grpc", &[]);
    let cli = |args: &[&str]| agent.cli(args);
    // Programs of this agent are loaded; take the set before the first add.
    let before = prog_ids();
    let (code, _, err) = cli(&["tracingpolicy", "add", &policy]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        prog_ids().len() > before.len(),
        "the policy's program is loaded"
    );
    let (_, list, _) = cli(&["tracingpolicy", "list"]);
    assert!(
        list.contains("etc-cat") && list.contains("enabled"),
        "{list}"
    );
    let cat = run(Command::new("/usr/bin/cat").arg("/etc/hostname"));
    agent.wait_for("event from the gRPC policy", WAIT, |ev| {
        kprobes(ev, "etc-cat")
            .iter()
            .any(|e| pid_of(e) == u64::from(cat) && path_arg(e) == "/etc/hostname")
    });
    // Disable detaches: no event; enable loads again.
    let (code, _, err) = cli(&["tracingpolicy", "disable", "etc-cat"]);
    assert_eq!(code, Some(0), "{err}");
    let quiet = run(Command::new("/usr/bin/cat").arg("/etc/hostname"));
    let (code, _, err) = cli(&["tracingpolicy", "enable", "etc-cat"]);
    assert_eq!(code, Some(0), "{err}");
    let again = run(Command::new("/usr/bin/cat").arg("/etc/hostname"));
    let events = agent.wait_for("event after enable", WAIT, |ev| {
        kprobes(ev, "etc-cat")
            .iter()
            .any(|e| pid_of(e) == u64::from(again))
    });
    assert!(
        kprobes(&events, "etc-cat")
            .iter()
            .all(|e| pid_of(e) != u64::from(quiet)),
        "disabled policy posted"
    );
    let (code, _, err) = cli(&["tracingpolicy", "delete", "etc-cat"]);
    assert_eq!(code, Some(0), "{err}");
    // Programs are freed after an RCU grace period.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while prog_ids() != before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        prog_ids(),
        before,
        "after delete the program, map and link ids are those before the add"
    );
    agent.stop();
}

#[test]
fn an_ia32_int80_open_is_seen() {
    let _g = serial();
    let dir = scratch_dir("policy-ia32-files");
    let policy = write_policy(
        &dir,
        "ia32",
        &OpenatPolicy::new("hostname-open")
            .dirfd()
            .path("Equal", &["/etc/hostname"])
            .yaml(),
    );
    let agent = Agent::start("policy-ia32", &["--tracing-policy", &policy]);
    let helper = helper_bin();
    // A clean call, then one with garbage in the upper half of the path register: the kernel
    // takes 32 bits and opens the file, so the policy must see that open too.
    for mode in ["clean", "dirty"] {
        let out = Command::new(&helper)
            .args(["ia32-open", "/etc/hostname", mode])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the {mode} int 0x80 openat succeeded: {out:?}"
        );
        let argv = format!("ia32-open /etc/hostname {mode}");
        let pid = {
            // The helper's pid: its exec (binary = the helper) with this argv.
            let events = agent.wait_for("helper exec", WAIT, |ev| {
                of_kind(ev, "process_exec")
                    .iter()
                    .any(|e| e["process"]["arguments"] == argv.as_str())
            });
            pid_of(
                of_kind(&events, "process_exec")
                    .into_iter()
                    .find(|e| e["process"]["arguments"] == argv.as_str())
                    .unwrap(),
            )
        };
        let events = agent.wait_for("ia32 openat event", WAIT, |ev| {
            kprobes(ev, "hostname-open")
                .iter()
                .any(|e| pid_of(e) == pid)
        });
        let hits: Vec<_> = kprobes(&events, "hostname-open")
            .into_iter()
            .filter(|e| pid_of(e) == pid)
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "exactly the one {mode} 32-bit open: {hits:?}"
        );
        assert_eq!(hits[0]["function_name"], "__ia32_sys_openat");
        assert_eq!(path_arg(hits[0]), "/etc/hostname");
        assert_eq!(hits[0]["args"][0]["int_arg"], -100);
    }
    agent.stop();
}

/// A 32-bit open of a watched file meets the Sigkill as a 64-bit one does: the open-like
/// hook is judged whole at the ia32 exit (no ia32 entry program is attached for it), and the
/// kill lands when the call returns, before the process prints the descriptor.
#[test]
fn an_ia32_int80_open_meets_the_sigkill() {
    let _g = serial();
    let dir = scratch_dir("policy-ia32-kill-files");
    let target = dir.join("forbidden32.txt");
    std::fs::write(&target, "secret\n").unwrap();
    let yaml = OpenatPolicy::new("kill-ia32")
        .dirfd()
        .path("Equal", &[&target.display().to_string()])
        .action("Sigkill", &[])
        .yaml();
    let policy = write_policy(&dir, "kill32", &yaml);
    let agent = Agent::start("policy-ia32-kill", &["--tracing-policy", &policy]);
    let out = Command::new(helper_bin())
        .args(["ia32-open", target.to_str().unwrap()])
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{out:?}");
    assert!(
        out.stdout.is_empty(),
        "the helper printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let events = agent.wait_for("ia32 kill event", WAIT, |ev| {
        !kprobes(ev, "kill-ia32").is_empty()
    });
    let k = kprobes(&events, "kill-ia32")[0];
    assert_eq!(k["function_name"], "__ia32_sys_openat");
    assert_eq!(k["action"], "KPROBE_ACTION_SIGKILL");
    assert_eq!(path_arg(k), target.to_str().unwrap());
    // An ia32 open of another file is left alone.
    let other = Command::new(helper_bin())
        .args(["ia32-open", "/etc/hostname"])
        .output()
        .unwrap();
    assert!(other.status.success(), "{other:?}");
    let c = counters(&agent);
    agent.stop();
    let row = c.iter().find(|r| r["policy"] == "kill-ia32").unwrap();
    assert_eq!(row["enforced"], 1, "{row}");
}

#[test]
fn kprobe_events_carry_ancestors_when_enabled() {
    let _g = serial();
    let dir = scratch_dir("policy-anc-files");
    let policy = write_policy(&dir, "etc-cat", ETC_CAT);
    let agent = Agent::start(
        "policy-anc",
        &[
            "--tracing-policy",
            &policy,
            "--enable-ancestors",
            "base,kprobe",
        ],
    );
    let sh = run(Command::new("/bin/sh").args(["-c", "/usr/bin/cat /etc/hostname; true"]));
    let events = agent.wait_for("cat under sh", WAIT, |ev| {
        kprobes(ev, "etc-cat")
            .iter()
            .any(|e| e["parent"]["pid"] == sh && path_arg(e) == "/etc/hostname")
    });
    agent.stop();
    let e = kprobes(&events, "etc-cat")
        .into_iter()
        .find(|e| e["parent"]["pid"] == sh && path_arg(e) == "/etc/hostname")
        .unwrap();
    // Ancestors are beyond the parent: the shell's parent is this test process.
    assert_eq!(e["ancestors"][0]["pid"], std::process::id(), "{e}");
    assert_eq!(e["ancestors"][0]["exec_id"], e["parent"]["parent_exec_id"]);
}
