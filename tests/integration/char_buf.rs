//! `char_buf` arguments with `sizeArgIndex`: the bytes a `write` passed, read by the engine,
//! and an explicit cut (`truncated_bytes_arg` with the size asked for) past its buffer.

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(15);

const POLICY: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: write-fd-57
spec:
  kprobes:
  - call: "sys_write"
    syscall: true
    args:
    - index: 0
      type: "int"
    - index: 1
      type: "char_buf"
      sizeArgIndex: 3
    - index: 2
      type: "size_t"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Equal"
        values: ["57"]
"#;

// Writes a short buffer with non-text bytes and a long one to fd 57, and a buffer to fd 58.
const SCRIPT: &str = "import os\n\
fd = os.open('/dev/null', os.O_WRONLY)\n\
os.dup2(fd, 57)\n\
os.dup2(fd, 58)\n\
os.write(58, b'not-this-fd')\n\
os.write(57, b'vigil\\x00\\x01\\xffbuf')\n\
os.write(57, b'A' * 1000)\n";

fn decode(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_else(|| panic!("not base64 text: {v}")))
        .unwrap()
}

#[test]
fn char_buf_reports_the_written_bytes_and_states_a_cut() {
    let _g = serial();
    let dir = scratch_dir("char-buf-files");
    let file = dir.join("write.yaml");
    std::fs::write(&file, POLICY).unwrap();
    let agent = Agent::start("char-buf", &["--tracing-policy", file.to_str().unwrap()]);
    let py = run(Command::new("python3").args(["-c", SCRIPT]));
    let events = agent.wait_for("two writes to fd 57", WAIT, |ev| {
        of_kind(ev, "process_kprobe")
            .iter()
            .filter(|e| pid_of(e) == u64::from(py))
            .count()
            >= 2
    });
    agent.stop();
    let mine: Vec<_> = of_kind(&events, "process_kprobe")
        .into_iter()
        .filter(|e| pid_of(e) == u64::from(py))
        .collect();
    assert_eq!(mine.len(), 2, "fd 58 is not reported: {mine:?}");
    let short = &mine[0]["args"];
    assert_eq!(short[0]["int_arg"], 57, "{short}");
    assert_eq!(
        decode(&short[1]["bytes_arg"]),
        b"vigil\x00\x01\xffbuf",
        "{short}"
    );
    assert_eq!(short[2]["size_arg"], "11", "{short}");
    let long = &mine[1]["args"][1]["truncated_bytes_arg"];
    assert_eq!(long["orig_size"], "1000", "{long}");
    assert_eq!(decode(&long["bytes_arg"]), vec![b'A'; 255], "{long}");
}
