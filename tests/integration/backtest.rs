//! `vigil tracingpolicy backtest` against the live engine: a workload recorded with
//! `--history-dir`, backtested, then run again with the policy loaded; the backtest's
//! would-be matches and kills must be what the live policy did, or be named as not judged.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const COMPAT: &str = "/work/shared/compat";

/// `vigil tracingpolicy backtest ARGS -o json`: the report, or a panic naming the error.
fn backtest(policy: &str, history: &Path, args: &[&str]) -> Value {
    let out = Command::new(vigil_bin())
        .args(["tracingpolicy", "backtest", policy, "--history-dir"])
        .arg(history)
        .args(args)
        .args(["-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "backtest {policy}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn history_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

const OBSERVE_MKDIR: &str = "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: observe-mkdir
spec:
  kprobes:
  - call: sys_mkdir
    syscall: true
    args:
    - index: 0
      type: string
    - index: 1
      type: int
";

const KILL_MKDIR: &str = "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: kill-mkdir
spec:
  kprobes:
  - call: sys_mkdir
    syscall: true
    args:
    - index: 0
      type: string
    selectors:
    - matchArgs:
      - index: 0
        operator: Postfix
        values:
        - /forbidden
      matchActions:
      - action: Sigkill
    - matchArgs:
      - index: 0
        operator: Equal
        values:
        - BASE/exact-name
      matchActions:
      - action: Sigkill
";

/// The workload: one `mkdir` process per directory; returns (path, killed by SIGKILL).
fn mkdir_workload(base: &Path) -> Vec<(String, bool)> {
    let _ = std::fs::remove_dir_all(base);
    std::fs::create_dir_all(base.join("sub")).unwrap();
    [
        "keep",
        "forbidden",
        "sub/forbidden",
        "forbidden-not",
        "exact-name",
        "exact-name-2",
        "not-forbidden/x",
    ]
    .iter()
    .map(|d| {
        let path = base.join(d).display().to_string();
        let status = Command::new("/usr/bin/mkdir")
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        (path, status.signal() == Some(libc::SIGKILL))
    })
    .collect()
}

#[test]
fn a_backtested_sigkill_policy_kills_live_exactly_what_it_predicted() {
    let _g = serial();
    let dir = scratch_dir("backtest-mkdir");
    let base = dir.join("work");
    let history = history_dir("backtest-mkdir-history");
    let observe = write_policy(&dir, "observe-mkdir", OBSERVE_MKDIR);
    let kill_yaml = KILL_MKDIR.replace("BASE", &base.display().to_string());
    let kill = write_policy(&dir, "kill-mkdir", &kill_yaml);

    // 1. Record with an observing policy (every mkdir posted, nothing killed).
    let agent = Agent::start(
        "backtest-mkdir-record",
        &[
            "--history-dir",
            history.to_str().unwrap(),
            "--tracing-policy",
            &observe,
        ],
    );
    let recorded = mkdir_workload(&base);
    assert!(recorded.iter().all(|(_, killed)| !killed), "{recorded:?}");
    let n = recorded.len();
    agent.wait_for(
        "the workload's mkdir calls",
        Duration::from_secs(10),
        |evs| {
            kprobes(evs, "observe-mkdir")
                .iter()
                .filter(|e| {
                    e["args"][0]["string_arg"]
                        .as_str()
                        .is_some_and(|p| p.starts_with(base.to_str().unwrap()))
                })
                .count()
                >= n
        },
    );
    let (events, _) = agent.stop();
    // exec_id -> the directory that process asked for (the recording says it).
    let path_of: BTreeMap<String, String> = kprobes(&events, "observe-mkdir")
        .iter()
        .filter_map(|e| {
            Some((
                e["process"]["exec_id"].as_str()?.to_string(),
                e["args"][0]["string_arg"].as_str()?.to_string(),
            ))
        })
        .collect();

    // 2. Backtest the Sigkill policy against that recording.
    let report = backtest(
        &kill,
        &history,
        &["--since", "1h", "--recorded-with", &observe],
    );
    let hook = &report["hooks"][0];
    assert_eq!(hook["used"], "observe-mkdir", "{report:#}");
    assert!(
        hook["coverage"]
            .as_str()
            .unwrap()
            .contains("posts every call"),
        "{report:#}"
    );
    let mut predicted = BTreeSet::new();
    for sel in hook["selectors"].as_array().unwrap() {
        assert_eq!(sel["cannot_judge"], 0, "{report:#}");
        for p in sel["processes"].as_array().unwrap() {
            assert_eq!(p["binary"], "/usr/bin/mkdir", "{report:#}");
            let exec_id = p["exec_id"].as_str().unwrap();
            predicted.insert(path_of[exec_id].clone());
        }
        assert_eq!(sel["killed"], sel["matched"], "{report:#}");
    }
    let predicted: BTreeSet<String> = predicted
        .into_iter()
        .filter(|p| p.starts_with(base.to_str().unwrap()))
        .collect();

    // 3. The same workload with the Sigkill policy live.
    let agent = Agent::start("backtest-mkdir-live", &["--tracing-policy", &kill]);
    let live = mkdir_workload(&base);
    agent.stop();
    let killed: BTreeSet<String> = live
        .iter()
        .filter(|(_, k)| *k)
        .map(|(p, _)| p.clone())
        .collect();
    eprintln!("backtest predicted kills {predicted:?}; live killed {killed:?}");
    assert_eq!(predicted, killed);
    assert_eq!(killed.len(), 3, "{killed:?}");
    let _ = std::fs::remove_dir_all(&history);
}

/// A small workload touching the corpus's hooks here: files, links, dups, exec, setuid,
/// sockets.
fn generic_workload(dir: &Path) {
    let script = format!(
        "cd {d} && mkdir -p w && echo data > w/f && cat w/f > /dev/null && ln -f w/f w/hard \
         && ln -sf w/f w/soft && sh -c 'echo x 2>&1 >/dev/null' && \
         python3 -c 'import os,socket; os.dup(1); os.dup2(1, 5); os.setuid(0); \
         s=socket.socket(); s.settimeout(0.2); s.connect_ex((\"127.0.0.1\", 9)); \
         u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b\"x\", (\"127.0.0.1\", 9))'",
        d = dir.display()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

fn corpus_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            corpus_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn event_time(e: &Value) -> i64 {
    e["time"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or(0)
}

/// Per exec id, how many calls a report says its policy posted, and how many it could not
/// judge.
fn predicted_posts(report: &Value) -> (BTreeMap<String, u64>, u64, Vec<String>) {
    let mut posts = BTreeMap::new();
    let mut unjudged = 0;
    let mut reasons = Vec::new();
    for hook in report["hooks"].as_array().unwrap() {
        for sel in hook["selectors"].as_array().unwrap() {
            for p in sel["processes"].as_array().unwrap() {
                if sel["posted"].as_u64() > Some(0) {
                    *posts
                        .entry(p["exec_id"].as_str().unwrap().to_string())
                        .or_default() += p["count"].as_u64().unwrap();
                }
            }
            unjudged += sel["cannot_judge"].as_u64().unwrap();
            for r in sel["cannot_judge_reasons"].as_array().unwrap() {
                reasons.push(r["reason"].as_str().unwrap().to_string());
            }
        }
    }
    (posts, unjudged, reasons)
}

#[test]
fn the_compat_corpus_backtested_matches_what_it_posted_live() {
    let _g = serial();
    let dir = scratch_dir("backtest-corpus");
    let history = history_dir("backtest-corpus-history");
    let root = Path::new(COMPAT).join("tetragon-policies");
    let mut files = Vec::new();
    corpus_files(&root, &mut files);
    files.sort();
    assert!(files.len() > 50, "corpus at {}", root.display());
    // One agent; each policy is added, the workload run, the policy deleted (several files
    // share a metadata.name): its events are those of its window.
    let agent = Agent::start(
        "backtest-corpus",
        &["--history-dir", history.to_str().unwrap()],
    );
    let mut windows = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap().display().to_string();
        let name = crate::hooks::metadata_name(f);
        let path = f.display().to_string();
        let mut add = vec!["tracingpolicy", "add", &path];
        // Enforcing network policies run on the cgroup fallback here: monitor mode, so that
        // loading them denies nothing on the machine.
        let monitor = crate::netfallback::runs_on_cgroup_fallback(f);
        if monitor {
            add.extend(["--mode", "monitor"]);
        }
        let from = now_ns();
        let (code, _, _) = agent.cli(&add);
        if code != Some(0) {
            continue; // does not load here (hooks.rs checks why, against the oracle)
        }
        std::thread::sleep(Duration::from_millis(200));
        generic_workload(&dir);
        std::thread::sleep(Duration::from_millis(500));
        let (code, _, err) = agent.cli(&["tracingpolicy", "delete", &name]);
        assert_eq!(code, Some(0), "delete {name}: {err}");
        std::thread::sleep(Duration::from_millis(200));
        windows.push((rel, name, path, from, now_ns(), monitor));
    }
    let (events, log) = agent.stop();
    assert!(!log.contains("history write failed"), "{log}");
    assert!(
        windows.len() >= 10,
        "only {} policies loaded",
        windows.len()
    );
    let mut table = Vec::new();
    let mut wrong = Vec::new();
    for (rel, name, path, from, until, monitor) in &windows {
        let live: Vec<&Value> = events
            .iter()
            .filter(|e| {
                crate::backtest::policy_event(e).is_some_and(|b| b["policy_name"] == *name)
                    && (*from..=*until).contains(&event_time(e))
            })
            .collect();
        let mut live_posts: BTreeMap<String, u64> = BTreeMap::new();
        for e in &live {
            let b = crate::backtest::policy_event(e).unwrap();
            *live_posts
                .entry(b["process"]["exec_id"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
        }
        let report = backtest(
            path,
            &history,
            &["--since", &rfc3339(*from), "--until", &rfc3339(*until)],
        );
        let (posts, unjudged, reasons) = predicted_posts(&report);
        let unrecorded: Vec<&str> = report["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["judged"] == false)
            .filter_map(|h| h["path"].as_str())
            .collect();
        let unrecorded = if unrecorded.is_empty() {
            String::new()
        } else {
            format!(
                " (hooks without a recorded call, not judged: {})",
                unrecorded.join(", ")
            )
        };
        let live_total: u64 = live_posts.values().sum();
        let predicted_total: u64 = posts.values().sum();
        let subset = posts
            .iter()
            .all(|(id, n)| live_posts.get(id).is_some_and(|l| l >= n));
        let lost = report["recorder_lost_events"].as_u64().unwrap();
        let outcome = if unjudged == 0 && posts == live_posts {
            format!("same: {live_total} events{unrecorded}")
        } else if unjudged > 0 && subset && predicted_total + unjudged == live_total {
            format!(
                "{predicted_total} of {live_total} events matched, {unjudged} not judged: {}",
                reasons.join("; ")
            )
        } else if lost > 0 && subset && predicted_total + unjudged + lost >= live_total {
            // The history lacks what its writer dropped; the report says how many.
            format!(
                "{predicted_total} of {live_total} events matched, {unjudged} not judged, the \
                 rest among the {lost} events the recorder reported lost"
            )
        } else {
            wrong.push(rel.clone());
            format!(
                "MISMATCH: live {live_total} events {live_posts:?}, backtest {predicted_total} \
                 {posts:?}, {unjudged} not judged {reasons:?}"
            )
        };
        let mode = if *monitor { " (monitor)" } else { "" };
        table.push(format!("{rel}{mode}: {outcome}"));
    }
    eprintln!(
        "backtest vs live, per policy loaded here:\n{}",
        table.join("\n")
    );
    assert!(
        wrong.is_empty(),
        "mismatches: {wrong:?}\n{}",
        table.join("\n")
    );
    let _ = std::fs::remove_dir_all(&history);
}

/// Now, in ns since the epoch.
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The body of a policy event (`process_kprobe`, `process_tracepoint`, ...).
pub fn policy_event(e: &Value) -> Option<&Value> {
    [
        "process_kprobe",
        "process_tracepoint",
        "process_uprobe",
        "process_lsm",
        "process_usdt",
    ]
    .iter()
    .find_map(|k| e.get(*k))
}
