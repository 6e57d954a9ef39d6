//! Syscall argument readers a user writes in a TracingPolicy: `fd` (the descriptor's path
//! through the task's file table, filtered with string operators), `char_iovec`,
//! `const_buf`, `char_buf` with `returnCopy`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(15);

fn decode(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_else(|| panic!("not base64 text: {v}")))
        .unwrap()
}

/// Starts an agent with `policy`, runs python3 `script` (its argv[1] is `dir`), waits until
/// `want` process_kprobe events of that python process arrived, and returns them all.
fn run_policy(name: &str, policy: &str, script: &str, want: usize) -> Vec<Value> {
    let dir = scratch_dir(&format!("{name}-files"));
    let file = dir.join("policy.yaml");
    std::fs::write(&file, policy.replace("@DIR@", dir.to_str().unwrap())).unwrap();
    let agent = Agent::start(name, &["--tracing-policy", file.to_str().unwrap()]);
    let py = run(Command::new("python3").args(["-c", script, dir.to_str().unwrap()]));
    let mine = |evs: &[Value]| -> Vec<Value> {
        of_kind(evs, "process_kprobe")
            .into_iter()
            .filter(|e| pid_of(e) == u64::from(py))
            .cloned()
            .collect()
    };
    agent.wait_for(&format!("{want} events of python ({name})"), WAIT, |evs| {
        mine(evs).len() >= want
    });
    // Let anything that should not come have its chance to arrive.
    std::thread::sleep(Duration::from_millis(300));
    let (events, _) = agent.stop();
    mine(&events)
}

const FD_POLICY: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: write-by-path
spec:
  kprobes:
  - call: "sys_write"
    syscall: true
    args:
    - index: 0
      type: "fd"
    - index: 2
      type: "size_t"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Prefix"
        values: ["@DIR@/watched"]
  - call: "sys_close"
    syscall: true
    args:
    - index: 0
      type: "fd"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Postfix"
        values: ["watched-file.log"]
"#;

// Writes to a file outside the prefix first, then to one inside it, then closes both.
const FD_SCRIPT: &str = "import os, sys\n\
d = sys.argv[1]\n\
other = os.open(d + '/other.log', os.O_WRONLY | os.O_CREAT, 0o640)\n\
os.write(other, b'not watched')\n\
w = os.open(d + '/watched-file.log', os.O_WRONLY | os.O_CREAT, 0o640)\n\
os.write(w, b'watched!')\n\
os.close(other)\n\
os.close(w)\n";

#[test]
fn fd_arguments_filter_on_the_descriptors_path() {
    let _g = serial();
    let evs = run_policy("args-fd", FD_POLICY, FD_SCRIPT, 2);
    let dir = std::env::temp_dir().join(format!("vigil-it-{}-args-fd-files", std::process::id()));
    let watched = dir.join("watched-file.log");
    let watched = watched.to_str().unwrap();
    assert_eq!(
        evs.len(),
        2,
        "only the watched file's write and close: {evs:#?}"
    );
    assert_eq!(evs[0]["function_name"], "__x64_sys_write", "{}", evs[0]);
    assert_eq!(evs[0]["args"][0]["file_arg"]["path"], watched, "{}", evs[0]);
    assert_eq!(
        evs[0]["args"][0]["file_arg"]["permission"], "-rw-r-----",
        "{}",
        evs[0]
    );
    assert_eq!(evs[0]["args"][1]["size_arg"], "8", "{}", evs[0]);
    assert_eq!(evs[1]["function_name"], "__x64_sys_close", "{}", evs[1]);
    assert_eq!(evs[1]["args"][0]["file_arg"]["path"], watched, "{}", evs[1]);
    assert!(Path::new(watched).exists());
}
