//! `--keep-sensors-on-exit` / `--release-pinned-bpf`: a policy's programs stay attached
//! (pinned in bpffs) while the agent is stopped, and the next agent adopts or releases them.
//! Host test: a syscall-tracepoint Sigkill policy (this kernel's enforcement mechanism).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use crate::harness::*;

const WAIT: std::time::Duration = std::time::Duration::from_secs(15);

const KEPT: &str = "/sys/fs/bpf/vigil/kept";

/// The signal that ended `cat FILE`, if any.
fn cat_signal(file: &Path) -> Option<i32> {
    let out = Command::new("/usr/bin/cat").arg(file).output().unwrap();
    out.status.signal()
}

fn kept_pins() -> usize {
    std::fs::read_dir(KEPT)
        .map(|d| {
            d.flatten()
                .map(|p| std::fs::read_dir(p.path()).map_or(0, |f| f.count()))
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn kept_sensors_enforce_while_the_agent_is_stopped_then_are_adopted_or_released() {
    let _g = serial();
    let dir = scratch_dir("keep-sensors-files");
    let target = dir.join("guarded.txt");
    std::fs::write(&target, "guarded\n").unwrap();
    let policy = write_policy(
        &dir,
        "kept-kill",
        &crate::policy_engine::kill_policy("kept-kill", target.to_str().unwrap(), ""),
    );
    let keep = [
        "--tracing-policy",
        policy.as_str(),
        "--keep-sensors-on-exit",
    ];

    // An agent that keeps its sensors: enforcing while it runs, and after it stopped.
    let agent = Agent::start("keep-sensors-1", &keep);
    assert_eq!(
        cat_signal(&target),
        Some(libc::SIGKILL),
        "enforced while running"
    );
    let (_, log) = agent.stop();
    assert!(log.contains("policies stay attached"), "{log}");
    assert!(kept_pins() > 0, "links pinned under {KEPT}");
    assert_eq!(
        cat_signal(&target),
        Some(libc::SIGKILL),
        "still enforced with no agent running"
    );

    // The next agent with the same policy adopts: the old links go once its own are
    // attached, and enforcement never stops.
    let agent = Agent::start("keep-sensors-2", &["--tracing-policy", &policy]);
    assert_eq!(
        kept_pins(),
        0,
        "adopted: the previous agent's pins are released"
    );
    assert_eq!(
        cat_signal(&target),
        Some(libc::SIGKILL),
        "the new agent enforces"
    );
    let events = agent.wait_for("the new agent's own event", WAIT, |ev| {
        !kprobes(ev, "kept-kill").is_empty()
    });
    assert_eq!(
        kprobes(&events, "kept-kill")[0]["action"],
        "KPROBE_ACTION_SIGKILL"
    );
    let (_, log) = agent.stop();
    assert!(log.contains("adopted"), "{log}");
    assert_eq!(cat_signal(&target), None, "not kept: detached at exit");

    // Kept again, then released by an agent without the policy.
    Agent::start("keep-sensors-3", &keep).stop();
    assert!(kept_pins() > 0);
    let agent = Agent::start("keep-sensors-4", &["--release-pinned-bpf"]);
    assert_eq!(kept_pins(), 0, "released at start");
    assert_eq!(
        cat_signal(&target),
        None,
        "nothing enforces after the release"
    );
    let (_, log) = agent.stop();
    assert!(log.contains("--release-pinned-bpf"), "{log}");
}

/// A crash is not a clean exit: with `--keep-sensors-on-exit` links are pinned at load, so
/// an agent killed by SIGKILL (OOM, a panic) leaves enforcement in place; the lifecycle
/// sensor is kept too, and the next agent delivers what its ring recorded during the outage
/// (an exec that happened while no agent ran), then releases the previous agent's pins.
#[test]
fn kept_sensors_survive_a_crash_and_the_outage_is_delivered() {
    let _g = serial();
    let dir = scratch_dir("keep-crash-files");
    let target = dir.join("guarded.txt");
    std::fs::write(&target, "guarded\n").unwrap();
    let policy = write_policy(
        &dir,
        "kept-crash",
        &crate::policy_engine::kill_policy("kept-crash", target.to_str().unwrap(), ""),
    );
    let agent = Agent::start(
        "keep-crash-1",
        &[
            "--tracing-policy",
            policy.as_str(),
            "--keep-sensors-on-exit",
        ],
    );
    assert_eq!(cat_signal(&target), Some(libc::SIGKILL), "enforced");
    assert!(kept_pins() > 0, "pinned at load, before any exit");
    agent.signal(libc::SIGKILL);
    drop(agent);
    let mut outage_cat = Command::new("/usr/bin/cat").arg(&target).spawn().unwrap();
    let outage_cat_pid = outage_cat.id();
    assert_eq!(
        outage_cat.wait().unwrap().signal(),
        Some(libc::SIGKILL),
        "still enforced after the agent was killed"
    );
    let marker = format!("outage-{}", std::process::id());
    let outage = run(Command::new("/usr/bin/true").arg(&marker));

    let agent = Agent::start("keep-crash-2", &["--tracing-policy", &policy]);
    agent.wait_for("the outage's exec, from the kept ring", WAIT, |ev| {
        execs_of_pid(ev, outage)
            .iter()
            .any(|e| e["process"]["arguments"] == marker.as_str())
    });
    // The kept policy's enforcement during the outage, attributed to its policy through the
    // hooks the crashed agent wrote down.
    let events = agent.wait_for("the outage's Sigkill event", WAIT, |ev| {
        kprobes(ev, "kept-crash")
            .iter()
            .any(|e| pid_of(e) == u64::from(outage_cat_pid))
    });
    let kill = kprobes(&events, "kept-crash")
        .into_iter()
        .find(|e| pid_of(e) == u64::from(outage_cat_pid))
        .unwrap();
    assert_eq!(kill["action"], "KPROBE_ACTION_SIGKILL");
    assert_eq!(
        lost(&events, "LOSS_STAGE_POLICY_STATE", "PROCESS_KPROBE"),
        0
    );
    let exec = execs_of_pid(&events, outage)[0];
    assert_eq!(exec["process"]["binary"], "/usr/bin/true");
    assert!(
        exits_of_pid(&events, outage).len() == 1,
        "its exit too: {events:?}"
    );
    // Adopted once this agent's policies run: the crashed agent's pins go.
    let deadline = std::time::Instant::now() + WAIT;
    while kept_pins() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the crashed agent's pins stay"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        cat_signal(&target),
        Some(libc::SIGKILL),
        "the new agent enforces"
    );
    let (_, log) = agent.stop();
    assert!(
        log.contains("kept ring") && log.contains("adopted"),
        "{log}"
    );
    assert_eq!(cat_signal(&target), None, "not kept: detached at exit");
}

/// The same on the Debian kernels with an LSM `file_open` deny: writes to the protected
/// file are refused with EPERM while no agent runs; released, they succeed.
#[test]
fn kfunc_kept_lsm_deny_holds_while_the_agent_is_stopped() {
    if !crate::kernel_caps::require("lsm") {
        return;
    }
    let _g = serial();
    let dir = scratch_dir("keep-lsm-files");
    let target = dir.join("protected.txt");
    std::fs::write(&target, "original\n").unwrap();
    let policy = write_policy(
        &dir,
        "kept-deny",
        &crate::kfuncs::protect_policy("kept-deny", target.to_str().unwrap(), true),
    );
    let agent = Agent::start(
        "keep-lsm-1",
        &["--tracing-policy", &policy, "--keep-sensors-on-exit"],
    );
    let denied = |what: &str| {
        let err = crate::kfuncs::try_write(&target).expect_err(what);
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{what}: {err}");
    };
    denied("denied while the agent runs");
    agent.stop();
    denied("denied with no agent running");
    Agent::start("keep-lsm-2", &["--release-pinned-bpf"]).stop();
    // (The policy refuses every open of the file, reads too: look only after the release.)
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "original\n");
    crate::kfuncs::try_write(&target).expect("released: the write goes through");
}
