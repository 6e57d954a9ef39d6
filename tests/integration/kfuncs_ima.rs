//! Post `imaHash` on LSM hooks: the digest the kernel's IMA computes for the file an LSM hook
//! sees, on `process_lsm` as Tetragon's `ima_hash` (`sha256:<hex>`). Runs in the kernel-matrix
//! guests (Debian 6.1 / 6.12: BPF LSM and IMA active); on this host's kernel the hook is
//! refused by name (unit test in vigil-policy) and this test is not applicable. Expected
//! digests come from `sha256sum`, not from the agent.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::harness::*;
use crate::kernel_caps;
use crate::kfuncs::wait_or_log;

/// `sha256sum FILE` (busybox's in the guests) as `sha256:<hex>`.
fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .or_else(|_| Command::new("busybox").arg("sha256sum").arg(path).output())
        .expect("sha256sum or busybox");
    assert!(
        out.status.success(),
        "sha256sum {}: {} {}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}

fn hashes<'a>(events: &'a [Value], function: &str) -> Vec<&'a str> {
    of_policy(events, "process_lsm", "ima")
        .into_iter()
        .filter(|e| e["function_name"] == function)
        .map(|e| e["ima_hash"].as_str().unwrap_or(""))
        .collect()
}

/// The digests of this process's file_lock events.
fn locks(events: &[Value]) -> Vec<&str> {
    of_policy(events, "process_lsm", "ima")
        .into_iter()
        .filter(|e| e["function_name"] == "file_lock")
        .filter(|e| e["process"]["pid"] == std::process::id())
        .map(|e| e["ima_hash"].as_str().unwrap_or(""))
        .collect()
}

#[test]
fn kfunc_ima_hash_is_the_sha256_of_the_executed_and_locked_file() {
    if !kernel_caps::require("lsm") {
        return;
    }
    let _g = serial();
    let dir = scratch_dir("kfunc-ima-files");
    let bin = dir.join("vtrue");
    let data = dir.join("data.txt");
    std::fs::copy("/usr/bin/true", &bin).unwrap();
    std::fs::write(&data, "first version\n").unwrap();
    let yaml = format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: ima
spec:
  lsmhooks:
  - hook: "bprm_check_security"
    args:
    - index: 0
      type: "linux_binprm"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Equal"
        values: ["{bin}"]
      matchActions:
      - action: Post
        imaHash: true
  - hook: "file_lock"
    args:
    - index: 0
      type: "file"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Equal"
        values: ["{data}"]
      matchActions:
      - action: Post
        imaHash: true
"#,
        bin = bin.display(),
        data = data.display()
    );
    let policy = write_policy(&dir, "ima", &yaml);
    let agent = Agent::start("kfunc-ima", &["--tracing-policy", &policy]);
    let (bin_v1, data_v1) = (sha256(&bin), sha256(&data));
    assert!(Command::new(&bin).status().unwrap().success());
    // file_lock: the file is open and readable when the hook runs. (On file_open it is not
    // yet: the kernel makes it readable after the LSM check, so IMA cannot read it there.)
    let read = |path: &Path| {
        let file = std::fs::File::open(path).unwrap();
        // SAFETY: flock on a descriptor this closure owns.
        assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH) }, 0);
    };
    read(&data);
    wait_or_log(&agent, "the first exec and open", |ev| {
        hashes(ev, "bprm_check_security").len() == 1 && locks(ev).len() == 1
    });
    // Replaced in place (same inode, new content): the next events carry the new digests.
    std::fs::write(&bin, std::fs::read("/usr/bin/false").unwrap()).unwrap();
    std::fs::write(&data, "second version, longer\n").unwrap();
    let (bin_v2, data_v2) = (sha256(&bin), sha256(&data));
    assert_ne!(bin_v1, bin_v2);
    assert!(!Command::new(&bin).status().unwrap().success(), "false ran");
    read(&data);
    let events = wait_or_log(&agent, "the second exec and open", |ev| {
        hashes(ev, "bprm_check_security").len() == 2 && locks(ev).len() == 2
    });
    assert_eq!(
        hashes(&events, "bprm_check_security"),
        [bin_v1.as_str(), bin_v2.as_str()],
        "the executed file's digest, before and after it was replaced"
    );
    assert_eq!(
        locks(&events),
        [data_v1.as_str(), data_v2.as_str()],
        "the locked file's digest, before and after it was rewritten"
    );
    agent.stop();
}
