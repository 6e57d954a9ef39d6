//! vigil's SameFile operator: a file named by a policy matches by identity (device + inode),
//! so a hard link or a bind mount of it matches too, and a file replaced under its path is
//! protected again. Expected values are written here by hand.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::kernel_caps;

/// A bind mount of `source` on `target`, unmounted on drop.
struct BindMount(PathBuf);

impl BindMount {
    fn new(source: &Path, target: &Path) -> Self {
        std::fs::write(target, "").unwrap();
        let src = CString::new(source.as_os_str().as_encoded_bytes()).unwrap();
        let dst = CString::new(target.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: two valid NUL-terminated paths; no data argument for MS_BIND.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "bind mount: {}", std::io::Error::last_os_error());
        Self(target.to_path_buf())
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let dst = CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(dst.as_ptr(), libc::MNT_DETACH) };
    }
}

/// protected.txt, a hard link to it, a bind mount of it, and an unrelated file.
struct Files {
    protected: PathBuf,
    hard: PathBuf,
    bound: PathBuf,
    other: PathBuf,
    _mount: BindMount,
}

fn files(dir: &Path) -> Files {
    let protected = dir.join("protected.txt");
    let hard = dir.join("hard.txt");
    let bound = dir.join("bound.txt");
    let other = dir.join("other.txt");
    for p in [&protected, &hard, &other] {
        let _ = std::fs::remove_file(p);
    }
    std::fs::write(&protected, "original\n").unwrap();
    std::fs::write(&other, "original\n").unwrap();
    std::fs::hard_link(&protected, &hard).unwrap();
    let mount = BindMount::new(&protected, &bound);
    Files {
        protected,
        hard,
        bound,
        other,
        _mount: mount,
    }
}

const WRITES: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: same-file-writes
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
        operator: "SameFile"
        values: ["PROTECTED"]
"#;

/// The paths of the writes `pid` was reported for.
fn written(events: &[Value], pid: u32) -> Vec<String> {
    kprobes(events, "same-file-writes")
        .into_iter()
        .filter(|e| pid_of(e) == u64::from(pid))
        .map(|e| {
            e["args"][0]["file_arg"]["path"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// Writes of `sh` (its `echo`) to the protected file through its path, a hard link and a bind
/// mount are reported, each with the path it was reached by; the unrelated file is not. The
/// file is then replaced under its path (a new inode, as an editor saves): the new file is
/// reported, the hard link (still the old inode) no longer is.
#[test]
fn same_file_matches_hard_links_bind_mounts_and_follows_a_replaced_file() {
    let _g = serial();
    let dir = scratch_dir("same-file-files");
    let f = files(&dir);
    let policy = write_policy(
        &dir,
        "same-file-writes",
        &WRITES.replace("PROTECTED", f.protected.to_str().unwrap()),
    );
    let agent = Agent::start("same-file", &["--tracing-policy", &policy]);
    let script = format!(
        "echo a >> {h}; echo b >> {b}; echo c >> {o}; echo d >> {p}",
        h = f.hard.display(),
        b = f.bound.display(),
        o = f.other.display(),
        p = f.protected.display()
    );
    let sh = run(Command::new("sh").args(["-c", &script]));
    agent.wait_for("the write to the protected path", WAIT, |ev| {
        written(ev, sh).contains(&f.protected.display().to_string())
    });
    let first = written(&agent.events(), sh);
    let want: Vec<String> = [&f.hard, &f.bound, &f.protected]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        first, want,
        "hard link, bind mount and path, in order; not other.txt"
    );

    // Replace the file under its path; the agent looks again within a second.
    let new = dir.join("protected.new");
    std::fs::write(&new, "replaced\n").unwrap();
    std::fs::rename(&new, &f.protected).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let script = format!(
        "echo e >> {h}; echo f >> {p}",
        h = f.hard.display(),
        p = f.protected.display()
    );
    let sh2 = run(Command::new("sh").args(["-c", &script]));
    agent.wait_for("the write to the replaced file", WAIT, |ev| {
        !written(ev, sh2).is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));
    let (events, log) = agent.stop();
    assert_eq!(
        written(&events, sh2),
        vec![f.protected.display().to_string()],
        "the new file is protected, the old inode (the hard link) no longer is"
    );
    assert!(
        log.contains("SameFile: the path names another file now"),
        "the refresh is logged:\n{log}"
    );
}

const WAIT: Duration = Duration::from_secs(15);

/// The LSM hook refuses a write to the protected file by identity: through a hard link and a
/// bind mount too (the path differs, the inode does not).
#[test]
fn kfunc_same_file_denies_writes_through_hard_link_and_bind_mount() {
    if !kernel_caps::require("lsm") {
        return;
    }
    let _g = serial();
    let dir = scratch_dir("kfunc-same-file-files");
    let f = files(&dir);
    let yaml = format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: same-file-deny
spec:
  lsmhooks:
  - hook: "file_open"
    args:
    - index: 0
      type: "file"
    selectors:
    - matchArgs:
      - index: 0
        operator: "SameFile"
        values: ["{}"]
      matchActions:
      - action: Override
        argError: -1
"#,
        f.protected.display()
    );
    let policy = write_policy(&dir, "same-file-deny", &yaml);
    let agent = Agent::start("kfunc-same-file", &["--tracing-policy", &policy]);
    let append = |p: &Path| std::fs::OpenOptions::new().append(true).open(p).map(|_| ());
    for p in [&f.protected, &f.hard, &f.bound] {
        let Err(err) = append(p) else {
            let log = std::fs::read_to_string(&agent.stderr_path).unwrap_or_default();
            panic!(
                "opening {} for writing was not refused; agent log:\n{log}",
                p.display()
            );
        };
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EPERM),
            "{}: {err}",
            p.display()
        );
    }
    append(&f.other).expect("an unrelated file stays writable");
    let me = u64::from(std::process::id());
    let mine = |ev: &[Value]| -> Vec<String> {
        of_kind(ev, "process_lsm")
            .into_iter()
            .filter(|e| e["policy_name"] == "same-file-deny" && pid_of(e) == me)
            .map(|e| {
                e["args"][0]["file_arg"]["path"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    agent.wait_for("three refusals", Duration::from_secs(60), |ev| {
        mine(ev).len() >= 3
    });
    let (events, _) = agent.stop();
    let got = mine(&events);
    for p in [&f.protected, &f.hard, &f.bound] {
        assert!(
            got.contains(&p.display().to_string()),
            "{} in {got:?}",
            p.display()
        );
    }
    assert_eq!(std::fs::read_to_string(&f.protected).unwrap(), "original\n");
}
