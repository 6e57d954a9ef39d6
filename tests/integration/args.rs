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

const IOVEC_POLICY: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: writev-iovecs
spec:
  kprobes:
  - call: "sys_writev"
    syscall: true
    args:
    - index: 0
      type: "fd"
    - index: 1
      type: "char_iovec"
      sizeArgIndex: 3
    selectors:
    - matchArgs:
      - index: 0
        operator: "Prefix"
        values: ["@DIR@/"]
"#;

// Three short iovecs, then two long ones whose total is past the engine's buffer.
const IOVEC_SCRIPT: &str = "import os, sys\n\
fd = os.open(sys.argv[1] + '/out.bin', os.O_WRONLY | os.O_CREAT, 0o600)\n\
os.writev(fd, [b'hello ', b'\\x00\\x01iovec ', b'world'])\n\
os.writev(fd, [b'A' * 200, b'B' * 200])\n";

#[test]
fn char_iovec_concatenates_the_buffers_and_states_a_cut() {
    let _g = serial();
    let evs = run_policy("args-iovec", IOVEC_POLICY, IOVEC_SCRIPT, 2);
    assert_eq!(evs.len(), 2, "{evs:#?}");
    assert_eq!(
        decode(&evs[0]["args"][1]["bytes_arg"]),
        b"hello \x00\x01iovec world",
        "{}",
        evs[0]
    );
    let long = &evs[1]["args"][1]["truncated_bytes_arg"];
    assert_eq!(long["orig_size"], "400", "{}", evs[1]);
    let mut want = vec![b'A'; 200];
    want.extend(vec![b'B'; 55]);
    assert_eq!(decode(&long["bytes_arg"]), want, "{}", evs[1]);
}

const CONST_BUF_POLICY: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: bind-sockaddr-bytes
spec:
  kprobes:
  - call: "sys_bind"
    syscall: true
    args:
    - index: 1
      type: "const_buf"
      sizeArgIndex: 16
    - index: 2
      type: "int"
"#;

const CONST_BUF_SCRIPT: &str = "import socket\n\
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
s.bind(('127.0.0.1', 0x1234))\n";

#[test]
fn const_buf_reports_its_fixed_size() {
    let _g = serial();
    let evs = run_policy("args-constbuf", CONST_BUF_POLICY, CONST_BUF_SCRIPT, 1);
    assert_eq!(evs.len(), 1, "{evs:#?}");
    // struct sockaddr_in: family AF_INET (2, little endian), port 0x1234 (network order),
    // 127.0.0.1, 8 bytes of zero padding.
    let mut want = vec![2, 0, 0x12, 0x34, 127, 0, 0, 1];
    want.extend([0; 8]);
    assert_eq!(decode(&evs[0]["args"][0]["bytes_arg"]), want, "{}", evs[0]);
    assert_eq!(evs[0]["args"][1]["int_arg"], 16, "{}", evs[0]);
}

const RETURN_COPY_POLICY: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: read-data
spec:
  kprobes:
  - call: "sys_read"
    syscall: true
    return: true
    args:
    - index: 0
      type: "fd"
    - index: 1
      type: "char_buf"
      returnCopy: true
    - index: 2
      type: "size_t"
    returnArg:
      index: 0
      type: "int"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Equal"
        values: ["@DIR@/secret.txt"]
"#;

// The buffer holds garbage before the call: what the event shows is what read(2) produced.
const RETURN_COPY_SCRIPT: &str = "import os, sys\n\
p = sys.argv[1] + '/secret.txt'\n\
open(p, 'w').write('the data read(2) returned')\n\
fd = os.open(p, os.O_RDONLY)\n\
os.read(fd, 4096)\n\
os.read(fd, 4096)\n";

#[test]
fn return_copy_reads_the_buffer_the_call_filled() {
    let _g = serial();
    let evs = run_policy("args-retcopy", RETURN_COPY_POLICY, RETURN_COPY_SCRIPT, 2);
    assert_eq!(evs.len(), 2, "{evs:#?}");
    let first = &evs[0];
    assert_eq!(
        decode(&first["args"][1]["bytes_arg"]),
        b"the data read(2) returned",
        "{first}"
    );
    assert_eq!(first["args"][2]["size_arg"], "4096", "{first}");
    assert_eq!(first["return"]["int_arg"], 25, "{first}");
    // At the end of the file read(2) returns 0: no bytes.
    let second = &evs[1];
    assert_eq!(second["return"]["int_arg"], 0, "{second}");
    assert!(
        second["args"][1]["bytes_arg"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{second}"
    );
}

const SOCKADDR_POLICY: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: connect-loopback
spec:
  kprobes:
  - call: "sys_connect"
    syscall: true
    args:
    - index: 0
      type: "int"
    - index: 1
      type: "sockaddr"
    selectors:
    - matchArgs:
      - index: 1
        operator: "Family"
        values: ["AF_INET"]
      - index: 1
        operator: "SAddr"
        values: ["127.0.0.0/8"]
      - index: 1
        operator: "SPort"
        values: ["47000:47010"]
    - matchArgs:
      - index: 1
        operator: "SAddr"
        values: ["::1"]
      - index: 1
        operator: "NotSPortPriv"
"#;

// UDP connects (no listener needed). Negatives first: a port outside the range, an address
// outside the CIDR, a privileged IPv6 port; then the two positives.
// A connect that fails (no route to 192.0.2.1 here) is still a call the hook sees.
const SOCKADDR_SCRIPT: &str = r#"
import socket
def c(fam, addr):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s.connect(addr)
    except OSError:
        pass
    s.close()
c(socket.AF_INET, ('127.0.0.1', 47011))
c(socket.AF_INET, ('192.0.2.1', 47005))
c(socket.AF_INET6, ('::1', 53))
c(socket.AF_INET, ('127.0.0.2', 47005))
c(socket.AF_INET6, ('::1', 47020))
"#;

#[test]
fn sockaddr_arguments_filter_on_family_address_and_port() {
    let _g = serial();
    let evs = run_policy("args-sockaddr", SOCKADDR_POLICY, SOCKADDR_SCRIPT, 2);
    let seen: Vec<_> = evs
        .iter()
        .map(|e| e["args"][1]["sockaddr_arg"].clone())
        .collect();
    assert_eq!(
        seen,
        vec![
            serde_json::json!({"family": "AF_INET", "addr": "127.0.0.2", "port": 47005}),
            serde_json::json!({"family": "AF_INET6", "addr": "::1", "port": 47020}),
        ],
        "{evs:#?}"
    );
}

const MAX_DATA_POLICY: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: write-max-data
spec:
  kprobes:
  - call: "sys_write"
    syscall: true
    args:
    - index: 0
      type: "fd"
    - index: 1
      type: "char_buf"
      sizeArgIndex: 3
      maxData: true
    selectors:
    - matchArgs:
      - index: 0
        operator: "Prefix"
        values: ["@DIR@/"]
"#;

// 100000 bytes fit maxData's 327360; 400000 do not (os.write may write fewer, but the
// kernel reads what the call passed).
const MAX_DATA_SCRIPT: &str = r#"
import os, sys
fd = os.open(sys.argv[1] + '/big.bin', os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, bytes(i % 251 for i in range(100000)))
os.write(fd, b'Z' * 400000)
"#;

#[test]
fn max_data_reports_up_to_327360_bytes() {
    let _g = serial();
    let evs = run_policy("args-maxdata", MAX_DATA_POLICY, MAX_DATA_SCRIPT, 2);
    assert_eq!(evs.len(), 2, "{evs:#?}");
    let want: Vec<u8> = (0..100000u32).map(|i| (i % 251) as u8).collect();
    assert!(
        decode(&evs[0]["args"][1]["bytes_arg"]) == want,
        "first write: {:.300}",
        evs[0]
    );
    let long = &evs[1]["args"][1]["truncated_bytes_arg"];
    assert_eq!(long["orig_size"], "400000", "{:.300}", evs[1]);
    assert_eq!(decode(&long["bytes_arg"]), vec![b'Z'; 327360]);
}

const DATA_POLICY: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: write-task-data
spec:
  kprobes:
  - call: "sys_write"
    syscall: true
    args:
    - index: 0
      type: "fd"
    data:
    - index: 0
      type: "int"
      source: "current_task"
      resolve: "tgid"
    - index: 1
      type: "string"
      source: "current_task"
      resolve: "comm"
    - index: 2
      type: "int"
      source: "current_task"
      resolve: "real_parent.tgid"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Prefix"
        values: ["@DIR@/"]
      matchData:
      - index: 1
        operator: "Equal"
        values: ["vigil-data-yes"]
"#;

// The same write twice: under another name (filtered out by matchData), then under the
// name the selector wants.
const DATA_SCRIPT: &str = r#"
import os, sys
fd = os.open(sys.argv[1] + '/d.txt', os.O_WRONLY | os.O_CREAT, 0o600)
open('/proc/self/comm', 'w').write('vigil-data-no')
os.write(fd, b'1')
open('/proc/self/comm', 'w').write('vigil-data-yes')
os.write(fd, b'2')
"#;

#[test]
fn data_from_current_task_is_reported_and_filtered_by_match_data() {
    let _g = serial();
    let evs = run_policy("args-data", DATA_POLICY, DATA_SCRIPT, 1);
    assert_eq!(
        evs.len(),
        1,
        "only the write under the selected name: {evs:#?}"
    );
    let ev = &evs[0];
    let data = &ev["data"];
    assert_eq!(data[0]["int_arg"], ev["process"]["pid"], "{ev}");
    assert_eq!(data[1]["string_arg"], "vigil-data-yes", "{ev}");
    // python3 was started by this test process.
    assert_eq!(data[2]["int_arg"], std::process::id(), "{ev}");
    assert_eq!(ev["args"].as_array().map(Vec::len), Some(1), "{ev}");
}

const RAWTP_POLICY: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: exec-btf-resolve
spec:
  tracepoints:
  - subsystem: "sched"
    event: "sched_process_exec"
    raw: true
    args:
    - index: 2
      type: "string"
      resolve: "filename"
    - index: 0
      type: "int"
      resolve: "tgid"
    - index: 0
      type: "int"
      resolve: "real_parent.tgid"
    - index: 0
      type: "string"
      resolve: "fs.pwd.dentry.d_name.name"
    selectors:
    - matchArgs:
      - index: 2
        operator: "Postfix"
        values: ["/vigil-rawtp-true"]
"#;

#[test]
fn raw_tracepoint_arguments_resolve_btf_member_paths() {
    let _g = serial();
    let dir = scratch_dir("args-rawtp-files");
    let cwd = dir.join("cwd-leaf");
    std::fs::create_dir_all(&cwd).unwrap();
    let link = dir.join("vigil-rawtp-true");
    std::os::unix::fs::symlink("/bin/true", &link).unwrap();
    let file = dir.join("policy.yaml");
    std::fs::write(&file, RAWTP_POLICY).unwrap();
    let agent = Agent::start("args-rawtp", &["--tracing-policy", file.to_str().unwrap()]);
    let log = std::fs::read_to_string(&agent.stderr_path).unwrap_or_default();
    assert!(
        !log.contains("not loaded"),
        "the policy did not load:\n{log}"
    );
    let other = run(Command::new("/bin/true").current_dir(&cwd));
    let child = run(Command::new(&link).current_dir(&cwd));
    let mine = |evs: &[Value]| -> Vec<Value> {
        of_kind(evs, "process_tracepoint")
            .into_iter()
            .filter(|e| pid_of(e) == u64::from(child) || pid_of(e) == u64::from(other))
            .cloned()
            .collect()
    };
    agent.wait_for("the exec through the link", WAIT, |evs| {
        !mine(evs).is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));
    let (events, _) = agent.stop();
    let evs = mine(&events);
    assert_eq!(evs.len(), 1, "only the exec through the link: {evs:#?}");
    let args = &evs[0]["args"];
    assert_eq!(args[0]["string_arg"], link.to_str().unwrap(), "{}", evs[0]);
    assert_eq!(args[1]["int_arg"], child, "{}", evs[0]);
    assert_eq!(args[2]["int_arg"], std::process::id(), "{}", evs[0]);
    assert_eq!(args[3]["string_arg"], "cwd-leaf", "{}", evs[0]);
}

const SH_FD_POLICY: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: sh-write-by-path
spec:
  kprobes:
  - call: "sys_write"
    syscall: true
    args:
    - index: 0
      type: "fd"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Postfix"
        values: ["/sh-watched.log"]
"#;

/// The fd reader with nothing but a shell (the qemu tier has no python): `echo` writes to a
/// descriptor its redirection opened.
#[test]
fn portable_fd_argument_of_a_shell_redirection() {
    let _g = serial();
    let dir = scratch_dir("args-shfd-files");
    let file = dir.join("policy.yaml");
    std::fs::write(&file, SH_FD_POLICY).unwrap();
    let agent = Agent::start("args-shfd", &["--tracing-policy", file.to_str().unwrap()]);
    let script = format!(
        "echo no > {d}/sh-other.log; echo yes > {d}/sh-watched.log",
        d = dir.display()
    );
    let sh = run(Command::new("sh").args(["-c", &script]));
    let mine = |evs: &[Value]| -> Vec<Value> {
        of_kind(evs, "process_kprobe")
            .into_iter()
            .filter(|e| pid_of(e) == u64::from(sh))
            .cloned()
            .collect()
    };
    agent.wait_for("the shell's write", WAIT, |evs| !mine(evs).is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let (events, _) = agent.stop();
    let evs = mine(&events);
    assert_eq!(evs.len(), 1, "{evs:#?}");
    let want = dir.join("sh-watched.log");
    assert_eq!(
        evs[0]["args"][0]["file_arg"]["path"],
        want.to_str().unwrap(),
        "{}",
        evs[0]
    );
}
