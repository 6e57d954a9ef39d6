//! CEL in the export allow list (issue 19), against the real agent: the export file keeps
//! exactly the events the expressions select. The reference selection is computed here,
//! from the unfiltered gRPC stream of the same agent, with plain Rust predicates.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{
    Agent, OpenatPolicy, read_events, run, scratch_dir, serial, vigil_bin, write_policy,
};

const WAIT: Duration = Duration::from_secs(20);

fn copy_of(dir: &Path, from: &str, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy(from, &p).unwrap();
    p
}

/// The event's kind (`process_exec`, ...) and body.
fn kind_of(e: &Value) -> Option<(&str, &Value)> {
    e.as_object()?
        .iter()
        .find(|(k, _)| k.starts_with("process_"))
        .map(|(k, v)| (k.as_str(), v))
}

/// What identifies one event in both streams.
fn key(e: &Value) -> String {
    let (kind, body) = kind_of(e).unwrap();
    format!(
        "{kind} {} {} {}",
        body["process"]["exec_id"], e["time"], body["args"]
    )
}

/// Events of the workload (its binaries live in `dir`), by key.
fn ours(events: &[Value], dir: &Path, pred: impl Fn(&str, &Value) -> bool) -> BTreeSet<String> {
    let dir = dir.to_str().unwrap();
    events
        .iter()
        .filter(|e| {
            kind_of(e).is_some_and(|(kind, body)| {
                body["process"]["binary"]
                    .as_str()
                    .is_some_and(|b| b.starts_with(dir) && !b.ends_with("/cel-ready"))
                    && pred(kind, body)
            })
        })
        .map(key)
        .collect()
}

const EXPRESSIONS: [&str; 3] = [
    "process_exec.process.binary.endsWith('/cel-alpha')",
    "process_exec.process.binary.endsWith('/cel-beta') && process_exec.process.arguments.contains('keep')",
    "process_kprobe.function_name.endsWith('sys_openat') && process_kprobe.args[1].string_arg.contains('secret')",
];

/// The three expressions, as the test reads them on the JSON of an event.
fn reference(kind: &str, body: &Value) -> bool {
    let binary = body["process"]["binary"].as_str().unwrap_or("");
    let arguments = body["process"]["arguments"].as_str().unwrap_or("");
    match kind {
        "process_exec" => {
            binary.ends_with("/cel-alpha")
                || (binary.ends_with("/cel-beta") && arguments.contains("keep"))
        }
        "process_kprobe" => {
            body["function_name"]
                .as_str()
                .is_some_and(|f| f.ends_with("sys_openat"))
                && body["args"][1]["string_arg"]
                    .as_str()
                    .is_some_and(|s| s.contains("secret"))
        }
        _ => false,
    }
}

/// An unfiltered `vigil getevents -o json` on the agent's socket, writing to a file.
struct Stream {
    child: std::process::Child,
    path: PathBuf,
}

impl Stream {
    fn start(agent: &Agent, path: PathBuf) -> Stream {
        let child = Command::new(vigil_bin())
            .args(["getevents", "-o", "json", "--server-address"])
            .arg(format!(
                "unix://{}",
                agent.events_path.with_file_name("vigil.sock").display()
            ))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&path).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Stream { child, path }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn export_cel_allowlist_keeps_exactly_the_selected_events() {
    let _g = serial();
    let name = "export-cel";
    // The agent's own scratch directory is made anew when it starts: the workload has another.
    let dir = scratch_dir("export-cel-files");
    let alpha = copy_of(&dir, "/bin/true", "cel-alpha");
    let beta = copy_of(&dir, "/bin/true", "cel-beta");
    let gamma = copy_of(&dir, "/bin/true", "cel-gamma");
    let ready = copy_of(&dir, "/bin/true", "cel-ready");
    let cat = copy_of(&dir, "/usr/bin/cat", "cel-cat");
    let secret = dir.join("secret.txt");
    let plain = dir.join("plain.txt");
    std::fs::write(&secret, "s").unwrap();
    std::fs::write(&plain, "p").unwrap();
    let policy = write_policy(
        &dir,
        "cel-opens",
        &OpenatPolicy::new("cel-opens")
            .dirfd()
            .path("Prefix", &[&format!("{}/", dir.display())])
            .binary(&cat.display().to_string())
            .yaml(),
    );
    let allow = serde_json::json!({ "cel_expression": EXPRESSIONS }).to_string();
    let agent = Agent::start(
        name,
        &["--tracing-policy", &policy, "--export-allowlist", &allow],
    );
    let stream = Stream::start(&agent, dir.join("grpc.json"));
    // The client is subscribed once it has seen an exec made after it started.
    wait_until("the gRPC stream to carry events", || {
        run(&mut Command::new(&ready));
        std::fs::read_to_string(&stream.path).is_ok_and(|s| s.contains("/cel-ready"))
    });

    for i in 0..3 {
        run(Command::new(&alpha).arg(format!("a{i}")));
        run(Command::new(&beta).arg("keep"));
        run(Command::new(&beta).arg("drop"));
        run(Command::new(&gamma).arg("keep"));
        run(Command::new(&cat).arg(&secret));
        run(Command::new(&cat).arg(&plain));
    }
    let sentinel = run(Command::new(&alpha).arg("sentinel"));
    let seen = |path: &Path| {
        read_events(path).iter().any(|e| {
            e["process_exec"]["process"]["pid"] == sentinel
                && e["process_exec"]["process"]["binary"] == alpha.to_str().unwrap()
        })
    };
    wait_until("the sentinel in the export file", || {
        seen(&agent.events_path)
    });
    wait_until("the sentinel in the gRPC stream", || seen(&stream.path));
    // Events of one stream are ordered; give the other a moment to settle its tail.
    std::thread::sleep(Duration::from_millis(500));
    drop(stream);
    let (exported, log) = agent.stop();
    let unfiltered = read_events(&dir.join("grpc.json"));

    let everything = ours(&unfiltered, &dir, |_, _| true);
    let expected = ours(&unfiltered, &dir, reference);
    let got = ours(&exported, &dir, |_, _| true);
    let count =
        |set: &BTreeSet<String>, prefix: &str| set.iter().filter(|k| k.starts_with(prefix)).count();
    // The workload produced what each expression selects, and what none selects.
    assert_eq!(
        count(&expected, "process_exec"),
        3 + 3 + 1,
        "alpha x3, beta keep x3, sentinel: {expected:#?}"
    );
    assert!(count(&expected, "process_kprobe") >= 3, "{expected:#?}");
    assert!(
        everything.len() > expected.len() + 12,
        "gamma, beta drop, exits and plain opens are in the unfiltered stream: {everything:#?}"
    );
    assert_eq!(
        got, expected,
        "exported (left) vs selected from the unfiltered stream (right)\n{log}"
    );
    assert!(!log.contains("CEL evaluation failed"), "{log}");

    // The client side: `vigil getevents --cel-expression` filters a recorded stream alike.
    let out = Command::new(vigil_bin())
        .args([
            "getevents",
            "-o",
            "json",
            "--cel-expression",
            EXPRESSIONS[2],
        ])
        .stdin(std::fs::File::open(dir.join("grpc.json")).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let filtered: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kprobes_selected = ours(&unfiltered, &dir, |kind, body| {
        kind == "process_kprobe" && reference(kind, body)
    });
    assert_eq!(ours(&filtered, &dir, |_, _| true), kprobes_selected);
    assert_eq!(
        filtered.len(),
        kprobes_selected.len(),
        "only the workload's secret opens"
    );
}

#[test]
fn export_cel_compile_error_names_flag_and_column() {
    let out = Command::new(vigil_bin())
        .args([
            "agent",
            "--check-config",
            "--export-denylist",
            r#"{"cel_expression":["process_exec.process.binary == 'a' && process_exec.proces.pid > 1"]}"#,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "--export-denylist: line 1: cel_expression[0] \"process_exec.process.binary == 'a' && \
             process_exec.proces.pid > 1\": column 52: tetragon.ProcessExec has no field 'proces'"
        ),
        "{err}"
    );
}
