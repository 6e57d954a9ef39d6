//! Process lifecycle, end to end: real processes, the real agent, its JSON lines. Expected
//! values are written here by hand. Tests named `portable_*` also run in the qemu kernel tier.

use std::os::unix::ffi::OsStrExt;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(15);

#[test]
fn portable_exec_arguments_binary_and_parent() {
    let _g = serial();
    let agent = Agent::start("echo", &[]);
    let sh = run(Command::new("/bin/sh").args(["-c", "/bin/echo \"a b\" 'c\"d' '' x; true"]));
    let weird = run(Command::new("/bin/echo")
        .arg(std::ffi::OsStr::from_bytes(b"bad\xff\xfeutf8"))
        .arg("line1\nline2"));
    let events = agent.wait_for("echo execs", WAIT, |ev| {
        of_kind(ev, "process_exec")
            .iter()
            .filter(|e| e["process"]["binary"] == "/usr/bin/echo")
            .count()
            >= 2
    });
    let (all, _) = agent.stop();
    let echo = of_kind(&events, "process_exec")
        .into_iter()
        .find(|e| e["process"]["binary"] == "/usr/bin/echo" && e["parent"]["pid"] == sh)
        .expect("exec of echo under our shell");
    let p = &echo["process"];
    assert_eq!(p["arguments"], "\"a b\" c\"d  x");
    assert_eq!(
        argv_of(p),
        vec![
            b"/bin/echo".to_vec(),
            b"a b".to_vec(),
            b"c\"d".to_vec(),
            vec![],
            b"x".to_vec()
        ]
    );
    let sh_exec = execs_of_pid(&events, sh);
    assert_eq!(sh_exec.len(), 1, "one exec for the shell");
    assert_eq!(p["parent_exec_id"], sh_exec[0]["process"]["exec_id"]);
    assert_eq!(echo["parent"]["exec_id"], sh_exec[0]["process"]["exec_id"]);
    assert!(
        p["flags"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|f| f == "execve")
    );

    let w = &execs_of_pid(&events, weird)[0]["process"];
    assert_eq!(w["arguments"], "bad\u{FFFD}utf8 line1\nline2");
    assert_eq!(
        argv_of(w),
        vec![
            b"/bin/echo".to_vec(),
            b"bad\xff\xfeutf8".to_vec(),
            b"line1\nline2".to_vec()
        ]
    );
    assert!(!all.is_empty());
}

/// Every kind of line the agent writes, with every optional field on, parses with Google's
/// protobuf JSON parser against our .proto (host only: the check needs Python).
#[test]
fn exported_lines_parse_with_protobuf() {
    let _g = serial();
    let agent = Agent::start(
        "protobuf",
        &[
            "--enable-process-cred",
            "--enable-process-ns",
            "--enable-ancestors",
            "base",
            "--username-metadata",
            "unix",
            "--enable-process-environment-variables",
            "--cluster-name",
            "test-cluster",
            "--rb-size-total",
            "16K",
        ],
    );
    let helper = helper_bin();
    run(Command::new("/bin/sh").args(["-c", "/bin/echo \"a b\" x; exit 3"]));
    run(Command::new("/bin/echo").arg(std::ffi::OsStr::from_bytes(b"bad\xffutf8")));
    run(Command::new(&helper).args(["memfd-exec", "/usr/bin/true"]));
    run(Command::new(&helper).args(["fork-no-exec", "10"]));
    // A stalled reader overflows the 16 KiB ring: loss events are lines too.
    agent.signal(libc::SIGSTOP);
    run(Command::new(&helper).args(["spawn-loop", "300", "/usr/bin/true"]));
    agent.signal(libc::SIGCONT);
    std::thread::sleep(Duration::from_secs(1));
    let (events, _) = agent.stop();
    for kind in ["process_exec", "process_exit", "events_lost"] {
        assert!(
            !of_kind(&events, kind).is_empty(),
            "no {kind} line to check"
        );
    }
    crate::proto_check::assert_lines_parse_with_protobuf(&events);
}

#[test]
fn portable_exit_status_and_signal() {
    let _g = serial();
    let agent = Agent::start("exit", &[]);
    let three = run(Command::new("/bin/sh").args(["-c", "exit 3"]));
    let mut sleeper = Command::new("/usr/bin/sleep").arg("30").spawn().unwrap();
    let killed = sleeper.id();
    std::thread::sleep(Duration::from_millis(200));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let clean = run(&mut Command::new("/usr/bin/true"));
    let events = agent.wait_for("three exits", WAIT, |ev| {
        [three, killed, clean]
            .iter()
            .all(|p| exits_of_pid(ev, *p).len() == 1)
    });
    let e3 = exits_of_pid(&events, three)[0];
    assert_eq!(e3["status"], 3);
    assert!(
        e3.get("signal").is_none(),
        "no signal on a normal exit: {e3}"
    );
    let ek = exits_of_pid(&events, killed)[0];
    assert_eq!(ek["signal"], "SIGKILL");
    assert!(
        ek.get("status").is_none(),
        "a killed process has no status: {ek}"
    );
    let ec = exits_of_pid(&events, clean)[0];
    assert!(
        ec.get("status").is_none() && ec.get("signal").is_none(),
        "clean exit omits both: {ec}"
    );
    // Exec precedes exit for the same exec_id.
    for pid in [three, killed, clean] {
        let exec_id = &execs_of_pid(&events, pid)[0]["process"]["exec_id"];
        let exec_at = events
            .iter()
            .position(|e| e["process_exec"]["process"]["exec_id"] == *exec_id);
        let exit_at = events
            .iter()
            .position(|e| e["process_exit"]["process"]["exec_id"] == *exec_id);
        assert!(
            exec_at.unwrap() < exit_at.unwrap(),
            "exec before exit for pid {pid}"
        );
    }
    agent.stop();
}

#[test]
fn portable_threads_exit_once_and_exec_from_thread() {
    let _g = serial();
    let agent = Agent::start("threads", &[]);
    let helper = helper_bin();
    let threaded = run(Command::new(&helper).args(["threads", "4", "300"]));
    let execer = run(Command::new(&helper).args(["exec-from-thread", "/usr/bin/true"]));
    let events = agent.wait_for("exits", WAIT, |ev| {
        !exits_of_pid(ev, threaded).is_empty() && !exits_of_pid(ev, execer).is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    let (events, _) = {
        let _ = events;
        agent.stop()
    };
    assert_eq!(
        exits_of_pid(&events, threaded).len(),
        1,
        "a 4-thread process exits once"
    );
    let execs = execs_of_pid(&events, execer);
    let true_exec = execs
        .iter()
        .find(|e| e["process"]["binary"] == "/usr/bin/true")
        .expect("exec from a non-leader thread is reported under the thread group id");
    assert_eq!(
        true_exec["process"]["tid"], execer,
        "after exec the thread is the leader"
    );
    let exits = exits_of_pid(&events, execer);
    assert_eq!(exits.len(), 1);
    assert_eq!(
        exits[0]["process"]["exec_id"],
        true_exec["process"]["exec_id"]
    );
}

#[test]
fn portable_fork_without_exec_has_clone_flag() {
    let _g = serial();
    let agent = Agent::start("fork", &[]);
    let helper = helper_bin();
    let parent = run(Command::new(&helper).args(["fork-no-exec", "100"]));
    let events = agent.wait_for("parent exit", WAIT, |ev| {
        !exits_of_pid(ev, parent).is_empty()
    });
    let parent_exec = &execs_of_pid(&events, parent)[0]["process"];
    let child_exit = of_kind(&events, "process_exit")
        .into_iter()
        .find(|e| e["process"]["parent_exec_id"] == parent_exec["exec_id"])
        .expect("exit of the forked child");
    let flags = child_exit["process"]["flags"].as_str().unwrap();
    assert!(flags.split(' ').any(|f| f == "clone"), "flags {flags}");
    assert_ne!(pid_of(child_exit), u64::from(parent));
    assert_eq!(
        child_exit["process"]["binary"], parent_exec["binary"],
        "inherits the parent's image"
    );
    assert!(
        execs_of_pid(&events, pid_of(child_exit) as u32).is_empty(),
        "no exec for a fork"
    );
    agent.stop();
}

#[test]
fn portable_process_started_before_agent_has_parent_and_same_exec_id_at_exit() {
    let _g = serial();
    let mut early = Command::new("/usr/bin/sleep").arg("30").spawn().unwrap();
    let pid = early.id();
    std::thread::sleep(Duration::from_millis(100));
    let agent = Agent::start("procfs", &[]);
    let events = agent.wait_for("procFS exec", WAIT, |ev| !execs_of_pid(ev, pid).is_empty());
    let exec = execs_of_pid(&events, pid)[0];
    assert!(
        exec["process"]["flags"]
            .as_str()
            .unwrap()
            .contains("procFS")
    );
    assert_eq!(exec["process"]["binary"], "/usr/bin/sleep");
    assert_eq!(
        exec["parent"]["pid"],
        std::process::id(),
        "the test process is its parent"
    );
    assert_eq!(exec["process"]["parent_exec_id"], exec["parent"]["exec_id"]);
    early.kill().unwrap();
    early.wait().unwrap();
    let events = agent.wait_for("exit", WAIT, |ev| !exits_of_pid(ev, pid).is_empty());
    assert_eq!(
        exits_of_pid(&events, pid)[0]["process"]["exec_id"],
        exec["process"]["exec_id"]
    );
    agent.stop();
}

#[test]
fn portable_memfd_and_unlinked_binaries_are_flagged() {
    let _g = serial();
    let agent = Agent::start("memfd", &[]);
    let helper = helper_bin();
    let dir = scratch_dir("unlinked-bin");
    let memfd = run(Command::new(&helper).args(["memfd-exec", "/usr/bin/true"]));
    let unlinked = run(Command::new(&helper)
        .args(["unlinked-exec", "/usr/bin/true"])
        .arg(&dir));
    let events = agent.wait_for("both execs", WAIT, |ev| {
        execs_of_pid(ev, memfd).len() >= 2 && execs_of_pid(ev, unlinked).len() >= 2
    });
    let m = execs_of_pid(&events, memfd).into_iter().last().unwrap();
    assert!(
        m["process"]["binary"]
            .as_str()
            .unwrap()
            .starts_with("/memfd:vigil-test"),
        "{m}"
    );
    assert_eq!(m["process"]["binary_location"], "BINARY_LOCATION_MEMFD");
    let u = execs_of_pid(&events, unlinked).into_iter().last().unwrap();
    let bin = u["process"]["binary"].as_str().unwrap();
    assert!(
        bin.starts_with(&format!("{}/vigil-unlinked-", dir.display()))
            && bin.ends_with(" (deleted)"),
        "{bin}"
    );
    assert_eq!(u["process"]["binary_location"], "BINARY_LOCATION_UNLINKED");
    // An ordinary exec carries no location.
    let h = &execs_of_pid(&events, memfd)[0]["process"];
    assert!(h.get("binary_location").is_none(), "{h}");
    agent.stop();
}

#[test]
fn setuid_binary_run_by_unprivileged_user_shows_privilege_raise() {
    let _g = serial();
    let dir = scratch_dir("setuid-bin");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bin = dir.join("id-setuid");
    std::fs::copy("/usr/bin/id", &bin).unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    let agent = Agent::start("setuid", &["--enable-process-cred"]);
    let pid = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin));
    let events = agent.wait_for("setuid exec", WAIT, |ev| {
        execs_of_pid(ev, pid)
            .iter()
            .any(|e| e["process"]["binary"] == bin.to_str().unwrap())
    });
    let e = execs_of_pid(&events, pid)
        .into_iter()
        .find(|e| e["process"]["binary"] == bin.to_str().unwrap())
        .unwrap();
    let p = &e["process"];
    assert_eq!(p["binary_properties"]["setuid"], 0, "{p}");
    assert_eq!(
        p["binary_properties"]["privileges_changed"],
        serde_json::json!(["PRIVILEGES_RAISED_EXEC_FILE_SETUID"])
    );
    assert_eq!(p["process_credentials"]["uid"], 65534);
    assert_eq!(p["process_credentials"]["euid"], 0);
    assert_eq!(p["uid"], 0, "uid is the effective uid");
    // The same binary run by root raises nothing.
    let root_pid = run(&mut Command::new(&bin));
    let events = agent.wait_for("root exec", WAIT, |ev| {
        !execs_of_pid(ev, root_pid).is_empty()
    });
    assert!(
        execs_of_pid(&events, root_pid)[0]["process"]
            .get("binary_properties")
            .is_none()
    );
    agent.stop();
}

#[test]
fn sigterm_detaches_every_program() {
    let _g = serial();
    let agent = Agent::start("detach", &[]);
    let log = std::fs::read_to_string(&agent.stderr_path).unwrap();
    // The ready line names the kernel ids of the agent's programs (other agents may run).
    let ids: Vec<String> = log
        .split("program_ids=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("ready line lists program_ids")
        .trim_matches('"')
        .split(',')
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 3, "three lifecycle programs: {ids:?}");
    let loaded = || {
        let out = Command::new("bpftool")
            .args(["prog", "show", "--json"])
            .output()
            .expect("bpftool");
        let progs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        progs
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| ids.contains(&p["id"].to_string()))
            .count()
    };
    assert_eq!(loaded(), 3, "programs loaded while running");
    let (_, log) = agent.stop();
    assert!(log.contains("detached"), "{log}");
    // The kernel frees programs after an RCU grace period: give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while loaded() != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(loaded(), 0, "nothing left behind after SIGTERM");
}

#[test]
fn portable_optional_fields_ancestors_namespaces_user_environment() {
    let _g = serial();
    let agent = Agent::start(
        "optional",
        &[
            "--enable-ancestors",
            "base",
            "--enable-process-ns",
            "--username-metadata",
            "unix",
            "--enable-process-environment-variables",
        ],
    );
    let sh = run(Command::new("/bin/sh")
        .args(["-c", "/usr/bin/env -i VIGIL_TEST=a=b /usr/bin/true; true"])
        .env_clear());
    let events = agent.wait_for("true under env", WAIT, |ev| {
        of_kind(ev, "process_exec")
            .iter()
            .any(|e| e["process"]["binary"] == "/usr/bin/true" && e["ancestors"][0]["pid"] == sh)
    });
    agent.stop();
    let e = of_kind(&events, "process_exec")
        .into_iter()
        .find(|e| e["process"]["binary"] == "/usr/bin/true" && e["ancestors"][0]["pid"] == sh)
        .unwrap();
    // env execs true in place: its parent is env's image (same pid), then sh, then us.
    assert_eq!(e["parent"]["binary"], "/usr/bin/env");
    assert_eq!(e["ancestors"][1]["pid"], std::process::id());
    let p = &e["process"];
    assert_eq!(
        p["environment_variables"],
        serde_json::json!([{"Key": "VIGIL_TEST", "Value": "a=b"}])
    );
    assert_eq!(p["ns"]["pid"]["is_host"], true, "{p}");
    assert_eq!(p["ns"]["mnt"]["is_host"], true);
    assert!(p["ns"]["net"]["inum"].as_u64().unwrap() > 0);
    assert_eq!(p["user"]["name"], "root");
}
