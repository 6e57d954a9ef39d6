//! Every line the agent writes must parse with Google's protobuf JSON parser against our
//! .proto files, unknown fields rejected (crates/vigil-proto/tools/check_json.py).

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

pub fn assert_lines_parse_with_protobuf(events: &[Value]) {
    let root = env!("CARGO_MANIFEST_DIR");
    let venv = std::env::var("VIGIL_VENV").unwrap_or_else(|_| "/var/cache/vigil/venv".into());
    let python = format!("{venv}/bin/python");
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} missing: run crates/vigil-proto/tools/setup-venv.sh (the README test command does)"
    );
    let mut child = Command::new(&python)
        .arg(format!("{root}/crates/vigil-proto/tools/check_json.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run check_json.py");
    {
        let mut stdin = child.stdin.take().unwrap();
        for e in events {
            writeln!(stdin, "{e}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "protobuf's JSON parser refused an agent line: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!events.is_empty());
}
