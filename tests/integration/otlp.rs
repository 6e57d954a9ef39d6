//! OTLP export (`--export-otlp-endpoint`) against a real OTLP/gRPC receiver started on
//! loopback (tests/integration/python/otlp_receiver.py, the OpenTelemetry proto package with
//! grpcio): records and attributes, a stalled receiver, a bad endpoint.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Agent, of_kind, read_events, scratch_dir, serial, vigil_bin};

/// Only the burst's execs, on both sinks (the export filters apply to both).
const TRUE_EXECS: &str = r#"{"event_set":["PROCESS_EXEC"],"binary_regex":["^/usr/bin/true$"]}"#;

struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Receiver {
    fn start(dir: &Path, stall_secs: u32) -> Receiver {
        let venv = std::env::var("VIGIL_VENV").unwrap_or_else(|_| "/var/cache/vigil/venv".into());
        let python = format!("{venv}/bin/python");
        assert!(
            Path::new(&python).exists(),
            "{python} missing: run crates/vigil-proto/tools/setup-venv.sh"
        );
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/python/otlp_receiver.py");
        let out = dir.join("received.jsonl");
        let _ = std::fs::remove_file(&out);
        let mut child = Command::new(python)
            .arg(&script)
            .arg(&out)
            .arg(format!("--stall-first={stall_secs}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the OTLP receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!("OTLP receiver did not start (opentelemetry-proto missing? run setup-venv.sh): {line:?}")
            });
        Receiver { child, port, out }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn records(&self) -> Vec<Value> {
        read_events(&self.out)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs /usr/bin/true `n` times, one after another.
fn burst(n: usize) {
    for _ in 0..n {
        Command::new("/usr/bin/true").status().unwrap();
    }
}

/// The execs of /usr/bin/true in the agent's own JSON export.
fn true_execs(events: &[Value]) -> Vec<&Value> {
    of_kind(events, "process_exec")
        .into_iter()
        .filter(|e| e["process"]["binary"] == "/usr/bin/true")
        .collect()
}

/// A `key=value` field of the agent log's line holding `message`.
fn log_field(log: &str, message: &str, key: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains(message))
        .unwrap_or_else(|| panic!("no {message:?} line in the agent's log:\n{log}"));
    let at = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"));
    line[at + key.len() + 1..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}

/// Polls until the receiver holds `n` records (or `timeout`); returns what it holds.
fn wait_records(rx: &Receiver, n: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = rx.records();
        if r.len() >= n || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn otlp_exec_burst_arrives_as_log_records_with_attributes() {
    let _s = serial();
    // Not the agent's directory: Agent::start empties that.
    let rx = Receiver::start(&scratch_dir("otlp-burst-rx"), 0);
    let endpoint = rx.endpoint();
    let agent = Agent::start(
        "otlp-burst",
        &[
            "--export-otlp-endpoint",
            &endpoint,
            "--export-allowlist",
            TRUE_EXECS,
        ],
    );
    let started = Instant::now();
    burst(10_000);
    eprintln!("10,000 execs in {:?}", started.elapsed());
    agent.wait_for(
        "10,000 execs in the JSON export",
        Duration::from_secs(30),
        |e| true_execs(e).len() >= 10_000,
    );
    let records = wait_records(&rx, 10_000, Duration::from_secs(20));
    let (events, log) = agent.stop();
    let execs = true_execs(&events);
    assert_eq!(execs.len(), 10_000, "JSON export");
    assert_eq!(log_field(&log, "OTLP export closed", "lost"), 0, "{log}");
    let records = if records.len() < 10_000 {
        rx.records()
    } else {
        records
    };
    assert_eq!(records.len(), 10_000, "records at the receiver");

    let by_exec_id: HashMap<&str, &Value> = records
        .iter()
        .map(|r| (r["attributes"]["vigil.exec_id"].as_str().unwrap(), r))
        .collect();
    assert_eq!(by_exec_id.len(), 10_000, "one record per exec");
    let node = events[0]["node_name"].as_str().unwrap();
    let instance = events[0]["vigil_instance"].as_str().unwrap();
    for full in of_kind_full(&events) {
        let exec = &full["process_exec"];
        let exec_id = exec["process"]["exec_id"].as_str().unwrap();
        let r = by_exec_id
            .get(exec_id)
            .unwrap_or_else(|| panic!("no record for exec {exec_id}"));
        let a = &r["attributes"];
        assert_eq!(a["process.pid"], exec["process"]["pid"], "{r}");
        assert_eq!(a["process.executable.path"], "/usr/bin/true", "{r}");
        assert_eq!(a["process.parent_pid"], exec["parent"]["pid"], "{r}");
        assert_eq!(
            a["process.command_args"],
            serde_json::json!(["/usr/bin/true"]),
            "{r}"
        );
        assert_eq!(a["vigil.event_type"], "process_exec", "{r}");
        assert_eq!(r["severity_text"], "INFO");
        assert_eq!(r["resource"]["service.name"], "vigil");
        assert_eq!(r["resource"]["host.name"], node);
        assert_eq!(r["resource"]["service.instance.id"], instance);
        let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["process_exec"], *exec, "the body is the event's JSON");
        assert_eq!(body["time"], full["time"]);
        assert!(r["time_unix_nano"].as_u64().unwrap() > 0);
    }
}

/// The whole lines (not just the payload) of the /usr/bin/true execs.
fn of_kind_full(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["process_exec"]["process"]["binary"] == "/usr/bin/true")
        .collect()
}

/// A burst while the receiver stalls 10 s: what arrives plus what the agent counted lost is
/// exactly what it produced. Returns (produced, received, lost).
fn stalled_run(name: &str, queue_bytes: &str) -> (usize, usize, u64) {
    let rx = Receiver::start(&scratch_dir(&format!("{name}-rx")), 10);
    let endpoint = rx.endpoint();
    let agent = Agent::start(
        name,
        &[
            "--export-otlp-endpoint",
            &endpoint,
            "--export-allowlist",
            TRUE_EXECS,
            "--export-otlp-queue-bytes",
            queue_bytes,
            // Longer than the stall: the stalled call is answered, not abandoned.
            "--export-otlp-timeout=20s",
        ],
    );
    burst(3000);
    agent.wait_for(
        "3000 execs in the JSON export",
        Duration::from_secs(30),
        |e| true_execs(e).len() >= 3000,
    );
    // The stall is over 10 s after the first batch; let the queue drain.
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut last = usize::MAX;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        let n = rx.records().len();
        if n >= 3000 || (n > 0 && n == last) {
            break;
        }
        last = n;
    }
    let (events, log) = agent.stop();
    let produced = true_execs(&events).len();
    let lost = log_field(&log, "OTLP export closed", "lost");
    let received = rx.records().len();
    eprintln!("{name}: produced {produced}, received {received}, lost {lost}");
    assert_eq!(received as u64 + lost, produced as u64, "{log}");
    (produced, received, lost)
}

#[test]
fn otlp_stalled_receiver_loses_nothing_silently() {
    let _s = serial();
    // A queue of 64 KiB holds a few dozen execs: the stall overflows it.
    let (produced, received, lost) = stalled_run("otlp-stall-small", "65536");
    assert_eq!(produced, 3000);
    assert!(lost > 0 && received > 0, "received {received}, lost {lost}");
    // The default queue (64 MiB) holds the whole burst: nothing is lost.
    let (produced, received, lost) = stalled_run("otlp-stall-large", "67108864");
    assert_eq!((produced, received, lost), (3000, 3000, 0));
}

#[test]
fn otlp_bad_endpoint_is_one_clear_error_at_start() {
    for (value, expect) in [
        (
            "collector",
            "--export-otlp-endpoint \"collector\": expected host:port",
        ),
        (
            "grpc://h:4317",
            "--export-otlp-endpoint \"grpc://h:4317\": expected host:port",
        ),
        ("h:99999", "--export-otlp-endpoint \"h:99999\""),
    ] {
        let out = Command::new(vigil_bin())
            .args(["agent", "--check-config", "--export-otlp-endpoint", value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{value}: {stderr}");
        assert!(stderr.contains(expect), "{value}: {stderr}");
        assert_eq!(
            stderr.lines().filter(|l| l.contains("export-otlp")).count(),
            1,
            "one error line: {stderr}"
        );
    }
}
