//! `--cgroup-rate`: a burst of execs in one runc container is throttled in the kernel, with
//! process_throttle THROTTLE_START and, 5 s after it calms down, THROTTLE_STOP for that
//! container's cgroup; another container's execs at the same time all arrive; a process
//! whose exec was withheld keeps its identity and ancestry on its later events.
//!
//! The second cgroup is a container rather than the host's: on a shared machine the host
//! cgroup holds other people's builds, which may be throttled themselves.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::containers::{Container, utc_seconds};
use crate::harness::*;

const BURST: usize = 200;
const RATE: usize = 10;

/// Whole events (with their envelope: `time`) of `kind` that match `pred` on the payload.
fn envelopes<'a>(events: &'a [Value], kind: &str, pred: impl Fn(&Value) -> bool) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e.get(kind).is_some_and(&pred))
        .collect()
}

fn throttles<'a>(events: &'a [Value], cgroup: &str) -> Vec<&'a Value> {
    envelopes(events, "process_throttle", |t| t["cgroup"] == cgroup)
}

fn in_container<'a>(events: &'a [Value], kind: &str, docker: &str) -> Vec<&'a Value> {
    envelopes(events, kind, |e| e["process"]["docker"] == docker)
}

fn execs_with_args<'a>(events: &'a [Value], docker: &str, args: &str) -> Vec<&'a Value> {
    in_container(events, "process_exec", docker)
        .into_iter()
        .filter(|e| e["process_exec"]["process"]["arguments"] == args)
        .collect()
}

#[test]
fn cgroup_rate_throttles_one_containers_burst_and_not_its_neighbour() {
    let _g = serial();
    // Written by hand: 64 hex characters, and their first 31 (the `docker` field).
    const BURST_ID: &str = "b0b0b0b0c1c1c1c1d2d2d2d2e3e3e3e3f4f4f4f4a5a5a5a5b6b6b6b6c7c7c7c7";
    const BURST_DOCKER: &str = "b0b0b0b0c1c1c1c1d2d2d2d2e3e3e3e";
    const QUIET_ID: &str = "0a0a0a0a1b1b1b1b2c2c2c2c3d3d3d3d4e4e4e4e5f5f5f5f6a6a6a6a7b7b7b7b";
    const QUIET_DOCKER: &str = "0a0a0a0a1b1b1b1b2c2c2c2c3d3d3d3";
    let agent = Agent::start("cgroup-rate", &["--cgroup-rate", "10,1s"]);
    let dir = scratch_dir("cgroup-rate-bundles");
    let pid = std::process::id();
    let burst = Container::start(
        &dir,
        &format!("vigil-it-rate-burst-{pid}"),
        &format!("/docker/{BURST_ID}"),
        "exec /bin/sleep 1000",
    );
    let quiet = Container::start(
        &dir,
        &format!("vigil-it-rate-quiet-{pid}"),
        &format!("/docker/{QUIET_ID}"),
        "exec /bin/sleep 1000",
    );
    // The containers' own start-up events leave the rate windows.
    std::thread::sleep(Duration::from_secs(2));

    // The burst, pinned to one CPU, ends with a process that outlives the throttle: its
    // exec is withheld, its exit (after THROTTLE_STOP) is not. Meanwhile the neighbour runs
    // 6 execs, 2 events a second.
    // runc exec returns only once `sleep 9` is gone: the loop's end is a file in the
    // container's /dev/shm (a tmpfs; the root is read-only).
    let script = format!(
        "i=0; while [ $i -lt {BURST} ]; do /bin/sleep 0; i=$((i+1)); done; \
         : > /dev/shm/done; /bin/sleep 9 &"
    );
    let done = format!("/proc/{}/root/dev/shm/done", burst.init_pid());
    let burst_end = std::thread::scope(|s| {
        s.spawn(|| {
            quiet.exec(&[
                "/bin/sh",
                "-c",
                "for i in 1 2 3 4 5 6; do /bin/sleep 0.5; done",
            ])
        });
        s.spawn(|| {
            burst.exec(&[
                "/bin/busybox",
                "taskset",
                "-c",
                "0",
                "/bin/sh",
                "-c",
                &script,
            ])
        });
        let deadline = std::time::Instant::now() + WAIT;
        while !std::path::Path::new(&done).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the burst did not end"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        SystemTime::now()
    });
    let events = agent.wait_for("THROTTLE_STOP of the burst's cgroup", WAIT, |ev| {
        throttles(ev, BURST_ID).len() >= 2
    });

    // START, then STOP, for the burst's cgroup (named as Tetragon names it: its leaf).
    let burst_throttles = throttles(&events, BURST_ID);
    let kinds: Vec<&Value> = burst_throttles
        .iter()
        .map(|e| &e["process_throttle"]["type"])
        .collect();
    assert_eq!(
        kinds,
        ["THROTTLE_START", "THROTTLE_STOP"],
        "{burst_throttles:?}"
    );
    // STOP once the cgroup has been quiet for 5 s; the quiet time is measured from the
    // start of the 1 s window of its last event, so between 4 s and 5 s + the 1 s check
    // period (and some scheduling slack) after the burst's end.
    let stop_at = utc_seconds(burst_throttles[1]["time"].as_str().unwrap());
    let end = burst_end.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let calm = stop_at - end;
    assert!(
        (3.9..8.0).contains(&calm),
        "STOP {calm:.2} s after the burst"
    );

    // The burst's execs were cut to the rate: fewer than RATE events of the cgroup pass
    // before the kernel throttles it, none while it is throttled.
    let delivered = execs_with_args(&events, BURST_DOCKER, "0").len();
    assert!(
        delivered < RATE,
        "{delivered} of {BURST} burst execs delivered"
    );
    // Not silent: the withheld execs are counted (at least the burst's; other cgroups of
    // this machine may be throttled too).
    let withheld = lost(&events, "LOSS_STAGE_CGROUP_RATE", "PROCESS_EXEC");
    assert!(
        withheld as usize >= BURST - delivered,
        "{withheld} withheld execs reported, {delivered} delivered"
    );

    eprintln!(
        "cgroup rate: {delivered} of {BURST} burst execs delivered, {withheld} withheld \
         execs reported, STOP {calm:.2} s after the burst"
    );
    // The neighbour: never throttled, all its execs delivered.
    assert!(throttles(&events, QUIET_ID).is_empty());
    assert_eq!(execs_with_args(&events, QUIET_DOCKER, "0.5").len(), 6);

    // After STOP the container's events flow again; the process whose exec was withheld
    // exits with its identity and ancestry from the process cache.
    burst.exec(&["/bin/sleep", "0.077"]);
    let events = agent.wait_for("the withheld process's exit", WAIT, |ev| {
        !execs_with_args(ev, BURST_DOCKER, "0.077").is_empty()
            && withheld_exit(ev, BURST_DOCKER).is_some()
    });
    drop(burst);
    drop(quiet);
    agent.stop();
    let exit = withheld_exit(&events, BURST_DOCKER).unwrap();
    let process = &exit["process_exit"]["process"];
    assert_eq!(process["binary"], "/bin/busybox", "{exit}");
    let flags = process["flags"].as_str().unwrap_or("");
    assert!(!flags.contains("unknown"), "{exit}");
    let parent = &exit["process_exit"]["parent"];
    assert_eq!(parent["binary"], "/bin/busybox", "{exit}");
    assert_eq!(parent["exec_id"], process["parent_exec_id"], "{exit}");
    assert_eq!(parent["docker"], BURST_DOCKER, "{exit}");
    crate::proto_check::assert_lines_parse_with_protobuf(&events);
}

const WAIT: Duration = Duration::from_secs(30);

/// The container's one exit whose exec never arrived: `sleep 9`, exec'd while throttled.
fn withheld_exit<'a>(events: &'a [Value], docker: &str) -> Option<&'a Value> {
    let execs: Vec<&Value> = in_container(events, "process_exec", docker)
        .iter()
        .map(|e| &e["process_exec"]["process"]["exec_id"])
        .collect();
    let mut orphans = in_container(events, "process_exit", docker)
        .into_iter()
        .filter(|e| !execs.contains(&&e["process_exit"]["process"]["exec_id"]));
    let first = orphans.next();
    assert!(
        orphans.next().is_none(),
        "more than one exit without its exec"
    );
    first
}
