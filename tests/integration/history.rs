//! The flight recorder (`--history-dir`) and `vigil history`: what the database holds
//! against the JSON stream of the same agent, the byte budget while it writes, a crash in
//! the middle of a write, a full disk, file modes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::otlp::{metric, scrape_metrics};

/// `vigil history ARGS --history-dir DIR`: (exit code, stdout, stderr).
pub(crate) fn history(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(vigil_bin())
        .arg("history")
        .args(args)
        .arg("--history-dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The recorded events as JSON lines (`-o json`), parsed.
pub(crate) fn recorded(dir: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = args.to_vec();
    all.extend_from_slice(&["-o", "json"]);
    let (code, out, err) = history(dir, &all);
    assert_eq!(code, Some(0), "vigil history {args:?}: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// An event without the export sink's own numbering (`vigil_seq`, `vigil_instance`), which
/// the recorder, another sink, does not have: the rest must be the same, field for field.
fn canonical(ev: &Value) -> String {
    let mut ev = ev.clone();
    if let Some(m) = ev.as_object_mut() {
        m.remove("vigil_seq");
        m.remove("vigil_instance");
    }
    ev.to_string()
}

fn digest(ev: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    canonical(ev).hash(&mut h);
    h.finish()
}

/// Bytes of every file in `dir` (the recorder's databases, WALs, shared memory).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Samples `dir_bytes` every 10 ms until dropped; the largest sample.
struct Sampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(dir: &Path) -> Self {
        let stop: Arc<AtomicBool> = Arc::default();
        let (max, samples): (Arc<AtomicU64>, Arc<AtomicU64>) = (Arc::default(), Arc::default());
        let (s, m, n, d) = (
            Arc::clone(&stop),
            Arc::clone(&max),
            Arc::clone(&samples),
            dir.to_path_buf(),
        );
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                m.fetch_max(dir_bytes(&d), Ordering::Relaxed);
                n.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            stop,
            max,
            samples,
            thread: Some(thread),
        }
    }

    /// (largest size seen, samples taken)
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (
            self.max.load(Ordering::Relaxed),
            self.samples.load(Ordering::Relaxed),
        )
    }
}

/// fork+exec+wait of /usr/bin/true, `each` times in each of `loops` parallel loops.
fn burst(loops: usize, each: usize) {
    let children: Vec<_> = (0..loops)
        .map(|_| {
            Command::new(helper_bin())
                .args(["spawn-loop", &each.to_string(), "/usr/bin/true"])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
}

fn history_dir(scratch: &str) -> PathBuf {
    std::env::temp_dir().join(format!("vigil-it-{}-{scratch}-history", std::process::id()))
}

fn assert_private(dir: &Path) {
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    let mut files = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let mode = e.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", e.path().display());
        files += 1;
    }
    assert!(files > 0, "no file in {}", dir.display());
}

#[test]
fn every_event_of_100000_is_recorded_within_the_byte_budget() {
    let _g = serial();
    let dir = history_dir("volume");
    let _ = std::fs::remove_dir_all(&dir);
    // About twice what the run needs (30 MiB here): tight enough that the check means something.
    let budget: u64 = 64 << 20;
    let metrics_port = free_port();
    let agent = Agent::start(
        "history-volume",
        &[
            "--history-dir",
            dir.to_str().unwrap(),
            &format!("--history-max-bytes={budget}"),
            "--metrics-server",
            &format!("127.0.0.1:{metrics_port}"),
        ],
    );
    let sampler = Sampler::start(&dir);
    // 50,000 processes: an exec and an exit each.
    burst(2, 25_000);
    std::thread::sleep(Duration::from_secs(1));
    // What an operator watches: the recorder's metrics say every event got in, none lost.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let scrape = loop {
        let text = scrape_metrics(metrics_port);
        if metric(&text, "vigil_history_events_recorded_total") >= 100_000
            || std::time::Instant::now() > deadline
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let recorded_metric = metric(&scrape, "vigil_history_events_recorded_total");
    assert!(recorded_metric >= 100_000, "{scrape}");
    for reason in ["queue_full", "write_failed"] {
        let series = format!("vigil_history_events_lost_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&scrape, &series), 0, "{series}");
    }
    // Files are private while the agent writes (the WAL and shared memory too).
    assert_private(&dir);
    let (events, log) = agent.stop();
    let (max_bytes, samples) = sampler.finish();
    assert!(events.len() >= 100_000, "{} events exported", events.len());
    assert!(
        max_bytes <= budget,
        "history dir reached {max_bytes} bytes, budget {budget}"
    );
    assert!(
        samples > 100,
        "only {samples} samples of the directory size"
    );
    assert!(!log.contains("history write failed"), "{log}");
    let stream: Vec<u64> = events.iter().map(digest).collect();
    drop(events);
    let db: Vec<u64> = recorded(&dir, &["events"]).iter().map(digest).collect();
    assert!(
        recorded_metric <= db.len() as u64,
        "the metric said {recorded_metric} recorded; the database has {}",
        db.len()
    );
    if db != stream {
        let (a, b): (HashSet<u64>, HashSet<u64>) = (
            stream.iter().copied().collect(),
            db.iter().copied().collect(),
        );
        panic!(
            "stream {} events, history {}; {} of the stream's missing from the history, {} extra",
            stream.len(),
            db.len(),
            a.difference(&b).count(),
            b.difference(&a).count()
        );
    }
    eprintln!(
        "{} events recorded; the history dir peaked at {:.1} MiB (budget {} MiB), now {:.1} MiB",
        db.len(),
        max_bytes as f64 / 1048576.0,
        budget >> 20,
        dir_bytes(&dir) as f64 / 1048576.0
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_small_budget_holds_while_the_oldest_slices_go() {
    let _g = serial();
    let dir = history_dir("budget");
    let _ = std::fs::remove_dir_all(&dir);
    let budget: u64 = 4 << 20;
    let agent = Agent::start(
        "history-budget",
        &[
            "--history-dir",
            dir.to_str().unwrap(),
            "--history-max-bytes=4M",
        ],
    );
    let sampler = Sampler::start(&dir);
    burst(2, 10_000);
    let (events, log) = agent.stop();
    let (max_bytes, _) = sampler.finish();
    assert!(
        max_bytes <= budget,
        "history dir reached {max_bytes} bytes, budget {budget}"
    );
    assert!(log.contains("history slice dropped by retention"), "{log}");
    // What is kept is the newest: the stream's last events are the history's last.
    let db = recorded(&dir, &["events"]);
    assert!(
        db.len() > 1000 && db.len() < events.len(),
        "{} kept",
        db.len()
    );
    let tail: Vec<String> = events[events.len() - 100..].iter().map(canonical).collect();
    let db_tail: Vec<String> = db[db.len() - 100..].iter().map(canonical).collect();
    assert_eq!(tail, db_tail);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The tree of `root` computed from the JSON stream alone: ancestors, siblings, descendants
/// among the processes the stream names (as `process` or `parent`), and their events.
/// The event's payload (`process_exec`, `process_kprobe`...).
fn payload(e: &Value) -> &Value {
    e.as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("process_"))
        .map_or(&Value::Null, |(_, v)| v)
}

fn stream_tree(events: &[Value], root: &str) -> (HashSet<String>, Vec<String>) {
    let mut parent_of: HashMap<String, String> = HashMap::new();
    for e in events {
        for key in ["process", "parent"] {
            let p = &payload(e)[key];
            if let Some(id) = p["exec_id"].as_str() {
                let parent = p["parent_exec_id"].as_str().unwrap_or("").to_string();
                parent_of.entry(id.to_string()).or_insert(parent);
            }
        }
    }
    let mut members = HashSet::from([root.to_string()]);
    let mut up = parent_of[root].clone();
    while parent_of.contains_key(&up) && members.insert(up.clone()) {
        up = parent_of[&up].clone();
    }
    let root_parent = &parent_of[root];
    for (id, parent) in &parent_of {
        if parent == root_parent && !root_parent.is_empty() {
            members.insert(id.clone());
        }
    }
    let mut queue = VecDeque::from([root.to_string()]);
    while let Some(id) = queue.pop_front() {
        for (child, parent) in &parent_of {
            if *parent == id && members.insert(child.clone()) {
                queue.push_back(child.clone());
            }
        }
    }
    let mine = events
        .iter()
        .filter(|e| {
            payload(e)["process"]["exec_id"]
                .as_str()
                .is_some_and(|id| members.contains(id))
        })
        .map(canonical)
        .collect();
    (members, mine)
}

#[test]
fn the_tree_of_a_shell_pipeline_is_what_the_stream_had() {
    let _g = serial();
    let dir = history_dir("tree");
    let _ = std::fs::remove_dir_all(&dir);
    let agent = Agent::start("history-tree", &["--history-dir", dir.to_str().unwrap()]);
    let status = Command::new("sh")
        .args(["-c", "sh -c \"cat /etc/hostname | wc -c\""])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let me = u64::from(std::process::id());
    agent.wait_for("the pipeline's exits", Duration::from_secs(10), |evs| {
        of_kind(evs, "process_exit")
            .iter()
            .filter(|e| {
                e["process"]["binary"]
                    .as_str()
                    .is_some_and(|b| b.ends_with("/wc"))
            })
            .count()
            >= 1
    });
    let (events, _) = agent.stop();
    let outer = of_kind(&events, "process_exec")
        .into_iter()
        .find(|e| {
            e["parent"]["pid"].as_u64() == Some(me)
                && e["process"]["arguments"]
                    .as_str()
                    .is_some_and(|a| a.contains("cat /etc/hostname"))
        })
        .unwrap_or_else(|| panic!("no exec of the outer sh (parent pid {me})"));
    let outer_id = outer["process"]["exec_id"].as_str().unwrap().to_string();
    let (members, expected) = stream_tree(&events, &outer_id);
    // The three levels: outer sh, inner sh, cat and wc, each with an exec and an exit.
    let binaries: Vec<&str> = events
        .iter()
        .filter(|e| e.get("process_exec").is_some())
        .filter(|e| members.contains(e["process_exec"]["process"]["exec_id"].as_str().unwrap()))
        .map(|e| e["process_exec"]["process"]["binary"].as_str().unwrap())
        .collect();
    assert!(
        binaries.iter().any(|b| b.ends_with("/cat")) && binaries.iter().any(|b| b.ends_with("/wc")),
        "{binaries:?}"
    );
    let got: Vec<String> = recorded(&dir, &["tree", "--exec-id", &outer_id])
        .iter()
        .map(canonical)
        .collect();
    assert_eq!(got, expected);
    // The tree rendering names each member once, the asked one marked.
    let (code, text, err) = history(&dir, &["tree", "--exec-id", &outer_id, "-o", "tree"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        text.lines()
            .filter(|l| l.trim_start().starts_with("* "))
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains(&format!("exec_id={outer_id}")), "{text}");
    // Unknown exec id: one clear error.
    let (code, _, err) = history(&dir, &["tree", "--exec-id", "bm9wZQ=="]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no process with exec id \"bm9wZQ==\""),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_crash_mid_write_leaves_a_database_that_reopens_intact() {
    let _g = serial();
    let dir = history_dir("crash");
    let _ = std::fs::remove_dir_all(&dir);
    let agent = Agent::start("history-crash", &["--history-dir", dir.to_str().unwrap()]);
    let loops: Vec<_> = (0..2)
        .map(|_| {
            Command::new(helper_bin())
                .args(["spawn-loop", "20000", "/usr/bin/true"])
                .spawn()
                .unwrap()
        })
        .collect();
    // Kill it while events pour in (the writer commits every few milliseconds).
    agent.wait_for("a few thousand events", Duration::from_secs(30), |e| {
        e.len() > 5000
    });
    agent.signal(libc::SIGKILL);
    drop(agent);
    for mut l in loops {
        let _ = l.wait();
    }
    let wal_left = std::fs::read_dir(&dir)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().ends_with("-wal"));
    // Opened by the CLI (read-only) while the WAL of the crash is still there.
    let db = recorded(&dir, &["events"]);
    assert!(
        db.len() > 1000,
        "{} events readable after the crash",
        db.len()
    );
    // SQLite's own check, by another SQLite than ours.
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "db") {
            let out = Command::new("python3")
                .args([
                    "-c",
                    "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])",
                ])
                .arg(&path)
                .output()
                .unwrap();
            let verdict = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                verdict.trim(),
                "ok",
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // The next agent takes the slices over and goes on recording.
    let agent = Agent::start("history-crash2", &["--history-dir", dir.to_str().unwrap()]);
    run(&mut Command::new("/usr/bin/true"));
    let (events, _) = agent.stop();
    let after = recorded(&dir, &["events"]);
    let last_exec = of_kind(&events, "process_exec")
        .into_iter()
        .rfind(|e| e["process"]["binary"] == "/usr/bin/true")
        .unwrap()
        .clone();
    let id = &last_exec["process"]["exec_id"];
    assert!(
        after
            .iter()
            .any(|e| e["process_exec"]["process"]["exec_id"] == *id),
        "the second agent's exec of /usr/bin/true is not recorded"
    );
    assert!(after.len() > db.len());
    assert_private(&dir);
    eprintln!(
        "WAL left by the crash: {wal_left}; {} events readable after it",
        db.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Unmounts on drop.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_full_disk_is_a_counted_loss_and_the_agent_goes_on() {
    let _g = serial();
    let dir = history_dir("full");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs on {}", dir.display());
    let _mount = Tmpfs(dir.clone());
    let agent = Agent::start(
        "history-full",
        &[
            "--history-dir",
            dir.to_str().unwrap(),
            "--history-max-bytes=64M",
        ],
    );
    burst(2, 5_000);
    agent.wait_log("history write failed", Duration::from_secs(20));
    // Still running, still exporting: a process after the failure is exported.
    let pid = run(&mut Command::new("/usr/bin/true"));
    agent.wait_for(
        "the exec after the full disk",
        Duration::from_secs(10),
        |e| !execs_of_pid(e, pid).is_empty(),
    );
    let (events, log) = agent.stop();
    let lost = lost(&events, "LOSS_STAGE_SINK", "ANY");
    assert!(lost > 0, "no events_lost for the recorder's drops");
    // Each burst of failures is one log line, not one per event.
    let lines = log.matches("history write failed").count();
    assert!(lines < 10, "{lines} failure lines for {lost} lost events");
    // The JSON export did not lose anything to the recorder's trouble.
    let exported = of_kind(&events, "process_exec")
        .iter()
        .filter(|e| e["process"]["binary"] == "/usr/bin/true")
        .count();
    assert!(
        exported > 10_000,
        "{exported} execs of /usr/bin/true exported"
    );
}

#[test]
fn a_history_dir_that_is_a_symlink_is_refused() {
    let _g = serial();
    let base = scratch_dir("history-link");
    let real = base.join("real");
    std::fs::create_dir(&real).unwrap();
    let link = base.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = Command::new(vigil_bin())
        .args(["agent", "--history-dir"])
        .arg(&link)
        .arg(format!(
            "--server-address=unix://{}/vigil.sock",
            base.display()
        ))
        .arg("--health-server-address=")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("{}: is a symbolic link", link.display())),
        "{err}"
    );
    let (code, _, err) = history(&base.join("nope"), &["events"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("does not exist"), "{err}");
}
