//! io_uring: an open submitted through io_uring reaches `security_file_open` like open(2),
//! inline in the submitter or in an io-wq worker (IOSQE_ASYNC); either way the event names
//! the submitting process. Guest-only (`kfunc_`). Expected values are written by hand.

use std::process::Command;

use crate::harness::*;
use crate::kernel_caps;
use crate::kfuncs::wait_or_log;

fn policy(file: &str) -> String {
    format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: uring-watch
spec:
  kprobes:
  - call: "security_file_open"
    syscall: false
    args:
    - index: 0
      type: "file"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Equal"
        values: ["{file}"]
"#
    )
}

/// Opens `file` through io_uring with the helper (`async`: forced to io-wq); its pid.
fn uring_open(file: &str, mode: Option<&str>) -> u32 {
    let child = Command::new(helper_bin())
        .args(["uring-open", file])
        .args(mode)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("helper runs");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let res: i32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(i32::MIN);
    assert!(
        out.status.success() && res >= 0,
        "the io_uring open succeeds ({mode:?}): {res}, {out:?}"
    );
    pid
}

#[test]
fn kfunc_io_uring_open_inline_and_async_is_attributed_to_the_submitter() {
    if !kernel_caps::require("fentry") {
        return;
    }
    let _g = serial();
    let dir = scratch_dir("kfunc-uring-files");
    let file = dir.join("watched");
    std::fs::write(&file, "x\n").unwrap();
    let file = file.display().to_string();
    let path = write_policy(&dir, "uring-watch", &policy(&file));
    let agent = Agent::start("kfunc-uring", &["--tracing-policy", &path]);
    let helper = helper_bin().display().to_string();

    let cat = run(Command::new("/usr/bin/cat").arg(&file));
    let inline = uring_open(&file, None);
    let worker = uring_open(&file, Some("async"));
    let events = wait_or_log(&agent, "three opens of the watched file", |ev| {
        let pids: Vec<u64> = of_policy(ev, "process_kprobe", "uring-watch")
            .iter()
            .map(|e| pid_of(e))
            .collect();
        [cat, inline, worker]
            .iter()
            .all(|p| pids.contains(&u64::from(*p)))
    });
    agent.stop();
    let mine = of_policy(&events, "process_kprobe", "uring-watch");
    for (pid, binary, what) in [
        (cat, "/usr/bin/cat", "open(2)"),
        (inline, helper.as_str(), "io_uring inline"),
        (
            worker,
            helper.as_str(),
            "io_uring IOSQE_ASYNC (io-wq worker)",
        ),
    ] {
        let of_pid: Vec<_> = mine
            .iter()
            .filter(|e| pid_of(e) == u64::from(pid))
            .collect();
        assert_eq!(
            of_pid.len(),
            1,
            "{what}: one event, for the submitter: {mine:?}"
        );
        let e = of_pid[0];
        assert_eq!(e["function_name"], "security_file_open", "{what}");
        assert_eq!(
            e["args"][0]["file_arg"]["path"],
            file.as_str(),
            "{what}: {e}"
        );
        assert_eq!(e["process"]["binary"], binary, "{what}: {e}");
        let tid = e["process"]["tid"].as_u64().unwrap_or(0);
        eprintln!("{what}: pid {} tid {tid}", pid_of(e));
        if pid == worker {
            // IOSQE_ASYNC ran the open in an io-wq worker: a thread of the submitter, named
            // by its own tid, reported under the submitter's pid and binary.
            assert_ne!(tid, u64::from(pid), "{what}: the worker thread acted: {e}");
        } else {
            assert_eq!(
                tid,
                u64::from(pid),
                "{what}: the submitter's own thread: {e}"
            );
        }
    }
    assert_eq!(mine.len(), 3, "nothing else opened the file: {mine:?}");
}
