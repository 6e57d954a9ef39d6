//! `--enable-process-exec-sha256`: the SHA-256 on process_exec against `sha256sum` of the
//! binary (coreutils computes the expected values, never the agent's code), for short-lived
//! processes and for binaries replaced in place between two execs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(60);

/// `sha256sum FILE`'s digest.
fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// A copy of /usr/bin/true with `tail` appended: the same program, other content.
fn write_true(path: &Path, tail: &[u8]) {
    let mut bytes = std::fs::read("/usr/bin/true").unwrap();
    bytes.extend_from_slice(tail);
    std::fs::write(path, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn exec_of(events: &[Value], pid: u32) -> Option<&Value> {
    execs_of_pid(events, pid).into_iter().next()
}

/// A number from the agent's `process_exec sha256 summary` log line.
fn summary_figure(log: &str, name: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains("process_exec sha256 summary"))
        .unwrap_or_else(|| panic!("no sha256 summary in the agent's log:\n{log}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in {line}"))
}

#[test]
fn exec_sha256_matches_sha256sum_for_short_lived_and_replaced_binaries() {
    let _g = serial();
    let dir = scratch_dir("exec-sha256-bins");
    let bins: Vec<PathBuf> = (0..10)
        .map(|i| {
            let p = dir.join(format!("true{i}"));
            write_true(&p, format!("vigil exec hash {i}\n").as_bytes());
            p
        })
        .collect();
    let expected: Vec<String> = bins.iter().map(|b| sha256sum(b)).collect();
    let distinct: std::collections::HashSet<_> = expected.iter().collect();
    assert_eq!(distinct.len(), 10, "the ten binaries differ");

    let agent = Agent::start("exec-sha256", &["--enable-process-exec-sha256"]);

    // 1,000 short-lived processes: each has exited before the next starts.
    let mut runs: Vec<(u32, usize)> = Vec::with_capacity(1000);
    for _ in 0..100 {
        for (i, b) in bins.iter().enumerate() {
            runs.push((run(&mut Command::new(b)), i));
        }
    }

    // One binary replaced in place between two execs: truncated and rewritten (same
    // inode), then replaced by rename (new inode).
    let replaced = dir.join("replaced");
    write_true(&replaced, b"first content\n");
    let first_sha = sha256sum(&replaced);
    let first = run(&mut Command::new(&replaced));
    agent.wait_for("the first exec of the replaced binary", WAIT, |ev| {
        exec_of(ev, first).is_some()
    });
    write_true(&replaced, b"second content, rewritten in place\n");
    let second_sha = sha256sum(&replaced);
    let second = run(&mut Command::new(&replaced));
    let staged = dir.join("staged");
    write_true(&staged, b"third content, renamed over\n");
    let third_sha = sha256sum(&staged);
    std::fs::rename(&staged, &replaced).unwrap();
    let third = run(&mut Command::new(&replaced));

    let mut pids: Vec<u32> = runs.iter().map(|r| r.0).collect();
    pids.extend([first, second, third]);
    let events = agent.wait_for("every exec of the test", WAIT, |ev| {
        let seen: std::collections::HashSet<u64> = of_kind(ev, "process_exec")
            .iter()
            .map(|e| pid_of(e))
            .collect();
        pids.iter().all(|p| seen.contains(&u64::from(*p)))
    });
    let (_, log) = agent.stop();

    let mut right = 0;
    let mut wrong = Vec::new();
    let mut missing: HashMap<String, u32> = HashMap::new();
    for (pid, i) in &runs {
        let e = exec_of(&events, *pid).unwrap();
        let p = &e["process"];
        assert_eq!(p["binary"], bins[*i].display().to_string());
        match p["binary_sha256"].as_str() {
            Some(h) if h == expected[*i] => right += 1,
            Some(h) => wrong.push((*pid, h.to_string())),
            None => {
                *missing
                    .entry(
                        p["binary_sha256_missing"]
                            .as_str()
                            .unwrap_or("?")
                            .to_string(),
                    )
                    .or_default() += 1
            }
        }
    }
    let sha_of = |pid: u32| {
        let p = &exec_of(&events, pid).unwrap()["process"];
        (
            p["binary_sha256"].as_str().unwrap_or("").to_string(),
            p["binary_sha256_missing"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    };
    let (cache_hits, files_hashed) = (
        summary_figure(&log, "cache_hits"),
        summary_figure(&log, "files_hashed"),
    );
    let (waited, waited_total_us, waited_max_us) = (
        summary_figure(&log, "waited"),
        summary_figure(&log, "waited_total_us"),
        summary_figure(&log, "waited_max_us"),
    );
    println!(
        "exec sha256: {right}/1000 execs carry sha256sum's digest ({:.1}%), wrong {}, missing {missing:?}; \
         agent-wide (every exec on the host): cache hits {cache_hits}, files hashed {files_hashed}, \
         execs that waited {waited}, waited {:.2} ms in total, {:.2} ms at most",
        f64::from(right) / 10.0,
        wrong.len(),
        waited_total_us as f64 / 1000.0,
        waited_max_us as f64 / 1000.0,
    );
    assert!(
        wrong.is_empty(),
        "execs with another file's digest: {wrong:?}"
    );
    assert!(right >= 990, "only {right} of 1000 execs hashed");
    // Ten files for a thousand execs: the cache answers nearly all of them.
    assert!(cache_hits >= 950, "cache hits {cache_hits}");

    assert_eq!(sha_of(first), (first_sha, String::new()), "first exec");
    assert_eq!(
        sha_of(second),
        (second_sha, String::new()),
        "exec after the rewrite in place"
    );
    assert_eq!(
        sha_of(third),
        (third_sha, String::new()),
        "exec after the rename over"
    );
    crate::proto_check::assert_lines_parse_with_protobuf(&events);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without the option no event carries the fields; a file over the size limit says so; a
/// process older than the agent (its procFS exec) carries its binary's digest.
#[test]
fn exec_sha256_is_off_by_default_says_too_large_and_covers_procfs_execs() {
    let _g = serial();
    let dir = scratch_dir("exec-sha256-large");
    let big = dir.join("big");
    write_true(&big, &vec![0u8; 200 << 10]);

    let plain = Agent::start("exec-sha256-off", &[]);
    let pid = run(&mut Command::new(&big));
    let events = plain.wait_for("the exec", WAIT, |ev| exec_of(ev, pid).is_some());
    plain.stop();
    let p = &exec_of(&events, pid).unwrap()["process"];
    assert!(p.get("binary_sha256").is_none() && p.get("binary_sha256_missing").is_none());

    let old_sleep = dir.join("sleep-before-agent");
    std::fs::copy("/usr/bin/sleep", &old_sleep).unwrap();
    let mut older = Command::new(&old_sleep).arg("60").spawn().unwrap();
    let capped = Agent::start(
        "exec-sha256-capped",
        &[
            "--enable-process-exec-sha256",
            "--process-exec-sha256-max-size=100K",
        ],
    );
    let small = run(&mut Command::new("/usr/bin/true"));
    let pid = run(&mut Command::new(&big));
    let events = capped.wait_for("the execs", WAIT, |ev| {
        exec_of(ev, pid).is_some() && exec_of(ev, small).is_some()
    });
    capped.stop();
    let _ = older.kill();
    let _ = older.wait();
    let scanned = &exec_of(&events, older.id()).expect("procFS exec")["process"];
    assert!(
        scanned["flags"].as_str().unwrap().contains("procFS"),
        "{scanned}"
    );
    assert_eq!(
        scanned["binary_sha256"].as_str(),
        Some(sha256sum(&old_sleep).as_str()),
        "{scanned}"
    );
    let p = &exec_of(&events, pid).unwrap()["process"];
    assert!(p.get("binary_sha256").is_none(), "{p}");
    assert_eq!(p["binary_sha256_missing"], "BINARY_HASH_MISSING_TOO_LARGE");
    let p = &exec_of(&events, small).unwrap()["process"];
    assert_eq!(
        p["binary_sha256"].as_str(),
        Some(sha256sum(Path::new("/usr/bin/true")).as_str())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Short-lived processes in another mount namespace, started from outside it (as `nsenter`
/// and container runtimes' exec do): the binaries exist only on a tmpfs mounted in that
/// namespace, so once a process has exited its file is reached only through another
/// process of the namespace. Every one carries sha256sum's digest.
#[test]
fn exec_sha256_for_short_lived_processes_entering_another_mount_namespace() {
    let _g = serial();
    let dir = scratch_dir("exec-sha256-ns-files");
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mut expected = Vec::new();
    let mut script = format!("mount -t tmpfs vigil-exec-sha256 {}", mnt.display());
    for i in 0..20 {
        let src = dir.join(format!("src{i}"));
        write_true(&src, format!("namespace copy {i}\n").as_bytes());
        expected.push(sha256sum(&src));
        script.push_str(&format!(
            " && cp -p {} {}/bin{i}",
            src.display(),
            mnt.display()
        ));
    }
    script.push_str(" && exec sleep 120");

    let agent = Agent::start("exec-sha256-ns", &["--enable-process-exec-sha256"]);
    let mut holder = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .spawn()
        .unwrap();
    let holder_pid = holder.id();
    agent.wait_for("the namespace's sleep", WAIT, |ev| {
        execs_of_pid(ev, holder_pid)
            .iter()
            .any(|e| e["process"]["binary"] == "/usr/bin/sleep")
    });
    assert!(
        !mnt.join("bin0").exists(),
        "the binaries must not be visible outside the namespace"
    );
    let target = holder_pid.to_string();
    let pids: Vec<u32> = (0..20)
        .map(|i| {
            let bin = mnt.join(format!("bin{i}"));
            run(Command::new("nsenter")
                .args(["-t", &target, "-m", "--"])
                .arg(&bin))
        })
        .collect();
    let events = agent.wait_for("the nsenter execs", WAIT, |ev| {
        pids.iter().all(|p| {
            execs_of_pid(ev, *p).iter().any(|e| {
                e["process"]["binary"]
                    .as_str()
                    .unwrap_or("")
                    .contains("/mnt/bin")
            })
        })
    });
    let _ = holder.kill();
    let _ = holder.wait();
    agent.stop();
    for (i, pid) in pids.iter().enumerate() {
        let exec = execs_of_pid(&events, *pid)
            .into_iter()
            .find(|e| {
                e["process"]["binary"]
                    .as_str()
                    .unwrap_or("")
                    .contains("/mnt/bin")
            })
            .unwrap();
        let p = &exec["process"];
        assert_eq!(
            p["binary_sha256"].as_str(),
            Some(expected[i].as_str()),
            "bin{i}: {p}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
