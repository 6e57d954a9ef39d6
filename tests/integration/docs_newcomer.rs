//! The newcomer's path, end to end: a fresh clone, the README's agent command started in the
//! background until ready, then the commands of the "watch a file" guide, copied from the
//! clone's docs and run against that agent.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::docs::{ExampleEnv, readme_commands, run_page};
use crate::docs_md::{blocks, pages};
use crate::harness::{scratch_dir, serial, vigil_bin};

/// A fresh clone builds its own workspace crates (cargo keys them by path); the crates.io
/// dependencies come from the test build's cache. Measured here: see docs/testing.md.
const BUILD_AND_READY: Duration = Duration::from_secs(30 * 60);

#[test]
fn docs_newcomer_path() {
    let _g = serial();
    let dir = scratch_dir("newcomer");
    let clone = dir.join("vigil");
    let source = crate::docs_md::repo_root();
    let status = Command::new("git")
        .args(["clone", "--quiet"])
        .arg(&source)
        .arg(&clone)
        .status()
        .expect("git clone");
    assert!(status.success(), "git clone {}", source.display());
    let head = Command::new("git")
        .args([
            "-C",
            &clone.to_string_lossy(),
            "log",
            "-1",
            "--format=%h %s",
        ])
        .output()
        .unwrap();
    println!(
        "newcomer: fresh clone at {}",
        String::from_utf8_lossy(&head.stdout).trim()
    );

    // The README's first block: the agent command, then the test command.
    let readme = std::fs::read_to_string(clone.join("README.md")).unwrap();
    let commands = readme_commands(&blocks(Path::new("README.md"), &readme)[0]);
    // The tests run as root; sudo is not installed on every test machine.
    let run_agent = commands[0].strip_prefix("sudo ").unwrap_or(&commands[0]);
    assert_eq!(run_agent, "./scripts/run-agent", "README's agent command");

    // The cache of this test build: .../target/debug/vigil -> .../target.
    let target_dir = vigil_bin()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let events = dir.join("events.json");
    let log = dir.join("agent.log");
    let started = Instant::now();
    // Its own socket, state and policy directory, no health port: the agent must not meet
    // the other agents of this machine (the README's extra arguments go to `vigil agent`).
    let mut agent = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{run_agent} --server-address=unix://{d}/vigil.sock --health-server-address= \
             --state-dir={d} --tracing-policy-dir={d}/tp.d",
            d = dir.display()
        ))
        .current_dir(&clone)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("VIGIL_BUILD_PROFILE", "dev")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&events).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let stop = |agent: &mut std::process::Child| {
        // SAFETY: kill(2) on the process group this test created.
        unsafe { libc::kill(-(agent.id() as i32), libc::SIGTERM) };
        agent.wait().unwrap()
    };
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("vigil agent ready") {
            break;
        }
        if let Some(s) = agent.try_wait().unwrap() {
            panic!("{run_agent} exited ({s}) before ready:\n{text}");
        }
        if started.elapsed() > BUILD_AND_READY {
            stop(&mut agent);
            panic!("{run_agent}: not ready after {BUILD_AND_READY:?}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "newcomer: build and start took {} s",
        started.elapsed().as_secs()
    );

    // "JSON events on stdout": an execution of ours is one of them.
    let marker = dir.join("newcomer-marker");
    std::fs::copy("/usr/bin/true", &marker).unwrap();
    Command::new(&marker).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(&events)
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("{\"process_exec\"") && l.contains("newcomer-marker"))
    {
        assert!(
            Instant::now() < deadline,
            "no process_exec of {marker:?} on stdout"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let guide = pages(&clone)
        .into_iter()
        .find(|p| p.path == Path::new("docs/guides/file-monitoring.md"))
        .expect("the clone has docs/guides/file-monitoring.md");
    let workdir = dir.join("work");
    std::fs::create_dir_all(&workdir).unwrap();
    let env = ExampleEnv {
        workdir,
        bin_dir: target_dir.join("debug"),
        server: format!("unix://{}/vigil.sock", dir.display()),
        events,
    };
    let ran = run_page(&guide, &env);
    assert!(ran >= 5, "only {ran} of the guide's commands ran");
    let status = stop(&mut agent);
    assert!(
        status.success(),
        "the agent's exit status on SIGTERM: {status}"
    );
}
