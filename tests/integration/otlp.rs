//! OTLP export (`--export-otlp-endpoint`) against a real OTLP/gRPC receiver started on
//! loopback (tests/integration/python/otlp_receiver.py, the OpenTelemetry proto package with
//! grpcio): records and attributes, a stalled receiver, a receiver that restarts, partial
//! rejections, TLS, a bad endpoint.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Agent, free_port, of_kind, read_events, scratch_dir, serial, vigil_bin};

/// Only the burst's execs, on both sinks (the export filters apply to both).
const TRUE_EXECS: &str = r#"{"event_set":["PROCESS_EXEC"],"binary_regex":["^/usr/bin/true$"]}"#;

struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
    /// The receiver's options, kept for a restart.
    args: Vec<String>,
}

/// Starts the receiver script with `args`, appending to `out`; returns it and its port.
fn spawn_receiver(out: &Path, args: &[String]) -> (Child, u16) {
    let venv = std::env::var("VIGIL_VENV").unwrap_or_else(|_| "/var/cache/vigil/venv".into());
    let python = format!("{venv}/bin/python");
    assert!(
        Path::new(&python).exists(),
        "{python} missing: run crates/vigil-proto/tools/setup-venv.sh"
    );
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/python/otlp_receiver.py");
    let mut child = Command::new(python)
        .arg(&script)
        .arg(out)
        .args(args)
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
    (child, port)
}

impl Receiver {
    fn start(dir: &Path, stall_secs: u32) -> Receiver {
        Receiver::start_with(dir, &[format!("--stall-first={stall_secs}")])
    }

    fn start_with(dir: &Path, args: &[String]) -> Receiver {
        let out = dir.join("received.jsonl");
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(rejected_path(&out));
        let (child, port) = spawn_receiver(&out, args);
        Receiver {
            child,
            port,
            out,
            args: args.to_vec(),
        }
    }

    /// Kills the receiver (SIGKILL: no goodbye to the client).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, appending to the same file.
    fn restart(&mut self) {
        let mut args = self.args.clone();
        args.push(format!("--port={}", self.port));
        let (child, port) = spawn_receiver(&self.out, &args);
        assert_eq!(port, self.port);
        self.child = child;
    }

    /// Records rejected so far (the receiver's own count, one line per Export call).
    fn rejected(&self) -> u64 {
        std::fs::read_to_string(rejected_path(&self.out))
            .unwrap_or_default()
            .lines()
            .map(|l| l.parse::<u64>().unwrap())
            .sum()
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn records(&self) -> Vec<Value> {
        read_events(&self.out)
    }
}

fn rejected_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".rejected");
    PathBuf::from(p)
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

/// The agent's /metrics on `port`.
pub(crate) fn scrape_metrics(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of the series `series` (name and labels, as written) in a scrape.
pub(crate) fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .parse()
        .unwrap()
}

/// The exec ids of the records, each once (a record sent twice would show here).
fn exec_ids(records: &[Value]) -> std::collections::HashSet<String> {
    records
        .iter()
        .map(|r| {
            r["attributes"]["vigil.exec_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Polls until the receiver's record count has not moved for 1.5 s (or 30 s passed).
fn settled_records(rx: &Receiver) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut last, mut still) = (usize::MAX, 0);
    while Instant::now() < deadline && still < 3 {
        std::thread::sleep(Duration::from_millis(500));
        let n = rx.records().len();
        still = if n == last && n > 0 { still + 1 } else { 0 };
        last = n;
    }
    last
}

/// 1,000 execs delivered (or counted lost), the receiver killed, 2,000 more execs during the outage, the
/// receiver started again on the same port 3 s later: what arrives plus what the agent
/// counted lost is what it produced. Returns (received, lost).
fn restart_run(name: &str, queue_bytes: &str) -> (usize, u64) {
    let mut rx = Receiver::start(&scratch_dir(&format!("{name}-rx")), 0);
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
        ],
    );
    burst(1000);
    // Delivered up to here (a small queue drops some of the burst already): the receiver is
    // idle when it is killed.
    let before = settled_records(&rx);
    assert!(before > 0, "nothing delivered before the restart");
    rx.kill();
    burst(2000);
    agent.wait_for(
        "3000 execs in the JSON export",
        Duration::from_secs(30),
        |e| true_execs(e).len() >= 3000,
    );
    agent.wait_log("OTLP export failing", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    rx.restart();
    // Delivered, or given up on: the queue drains either way within the backoff's reach.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = usize::MAX;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        let n = rx.records().len();
        if n >= 3000 || (n > before && n == last) {
            break;
        }
        last = n;
    }
    let (events, log) = agent.stop();
    assert_eq!(true_execs(&events).len(), 3000, "JSON export");
    let records = rx.records();
    let unique = exec_ids(&records).len();
    // The receiver was idle when it was killed: no batch was both written and unanswered.
    assert_eq!(unique, records.len(), "records delivered twice");
    let lost = log_field(&log, "OTLP export closed", "lost");
    eprintln!("{name}: produced 3000, received {unique}, lost {lost}");
    assert_eq!(unique as u64 + lost, 3000, "{log}");
    assert!(
        unique > before,
        "nothing delivered after the restart:\n{log}"
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("OTLP export failing"))
            .count(),
        1,
        "one error for the outage: {log}"
    );
    assert!(log.contains("OTLP export resumed"), "{log}");
    (unique, lost)
}

#[test]
fn otlp_receiver_restart_loses_nothing_silently() {
    let _s = serial();
    // The default queue holds the outage's events: all are delivered after the restart.
    let (received, lost) = restart_run("otlp-restart-large", "67108864");
    assert_eq!((received, lost), (3000, 0));
    // 64 KiB holds a few dozen: most of the bursts' events are counted lost (restart_run
    // checked that some arrived after the restart, and that the sum is exact).
    let (received, lost) = restart_run("otlp-restart-small", "65536");
    assert!(lost > 0, "received {received}, lost {lost}");
}

#[test]
fn otlp_partial_success_rejections_are_counted_lost() {
    let _s = serial();
    let rx = Receiver::start_with(&scratch_dir("otlp-reject-rx"), &["--reject=7".into()]);
    let endpoint = rx.endpoint();
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let agent = Agent::start(
        "otlp-reject",
        &[
            "--export-otlp-endpoint",
            &endpoint,
            "--export-allowlist",
            TRUE_EXECS,
            "--metrics-server",
            &metrics_addr,
        ],
    );
    burst(1000);
    let deadline = Instant::now() + Duration::from_secs(30);
    while rx.records().len() as u64 + rx.rejected() < 1000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (received, rejected) = (rx.records().len() as u64, rx.rejected());
    let text = scrape_metrics(metrics_port);
    let (events, log) = agent.stop();
    assert_eq!(true_execs(&events).len(), 1000, "JSON export");
    eprintln!("produced 1000, received {received}, rejected {rejected}");
    assert_eq!(received + rejected, 1000);
    // 7 per call: at least one call, and the receiver's own count is a multiple of 7.
    assert!(rejected >= 7 && rejected % 7 == 0, "rejected {rejected}");
    assert_eq!(
        metric(
            &text,
            "vigil_otlp_log_records_lost_total{reason=\"rejected\"}"
        ),
        rejected,
        "{text}"
    );
    assert_eq!(
        metric(&text, "vigil_otlp_log_records_exported_total"),
        received
    );
    let logged: u64 = log
        .lines()
        .filter(|l| l.contains("OTLP receiver rejected log records"))
        .map(|l| log_field(l, "OTLP receiver rejected", "rejected"))
        .sum();
    assert_eq!(logged, rejected, "{log}");
    assert_eq!(log_field(&log, "OTLP export closed", "lost"), rejected);
}

/// A test CA; a server certificate for 127.0.0.1 and localhost and a client certificate,
/// both signed by it; and a second, unrelated CA. Returns the PEM files' paths:
/// (ca, server cert, server key, client cert, client key, other ca).
fn tls_files(dir: &Path) -> [String; 6] {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let ca_params = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params
    };
    let (ca_key, other_key) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let params = ca_params("vigil test CA");
    let ca_pem = write("ca.pem", params.self_signed(&ca_key).unwrap().pem());
    let other_ca_pem = write(
        "other-ca.pem",
        ca_params("unrelated CA")
            .self_signed(&other_key)
            .unwrap()
            .pem(),
    );
    let issuer = Issuer::from_params(&params, &ca_key);
    let leaf = |names: Vec<String>, cert: &str, key_file: &str| {
        let key = KeyPair::generate().unwrap();
        let c = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (write(cert, c.pem()), write(key_file, key.serialize_pem()))
    };
    let (srv, srv_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        "server.pem",
        "server.key",
    );
    let (cli, cli_key) = leaf(vec!["vigil-agent".into()], "client.pem", "client.key");
    [ca_pem, srv, srv_key, cli, cli_key, other_ca_pem]
}

#[test]
fn otlp_tls_with_ca_and_client_certificate() {
    let _s = serial();
    let dir = scratch_dir("otlp-tls-rx");
    let [ca, srv, srv_key, cli, cli_key, other_ca] = tls_files(&dir);
    // The receiver requires a client certificate from the test CA (mutual TLS).
    let rx = Receiver::start_with(
        &dir,
        &[
            format!("--tls-cert={srv}"),
            format!("--tls-key={srv_key}"),
            format!("--tls-client-ca={ca}"),
        ],
    );
    let endpoint = format!("https://127.0.0.1:{}", rx.port);
    let agent = Agent::start(
        "otlp-tls",
        &[
            "--export-otlp-endpoint",
            &endpoint,
            "--export-otlp-ca-file",
            &ca,
            "--export-otlp-cert-file",
            &cli,
            "--export-otlp-key-file",
            &cli_key,
            "--export-allowlist",
            TRUE_EXECS,
        ],
    );
    burst(100);
    let records = wait_records(&rx, 100, Duration::from_secs(20));
    let (_, log) = agent.stop();
    assert_eq!(records.len(), 100, "records over TLS:\n{log}");
    assert_eq!(log_field(&log, "OTLP export closed", "lost"), 0, "{log}");

    // A CA that did not sign the receiver's certificate: one error naming the endpoint and
    // the certificate problem, and the events counted lost at shutdown.
    let agent = Agent::start(
        "otlp-tls-wrong-ca",
        &[
            "--export-otlp-endpoint",
            &endpoint,
            "--export-otlp-ca-file",
            &other_ca,
            "--export-otlp-cert-file",
            &cli,
            "--export-otlp-key-file",
            &cli_key,
            "--export-allowlist",
            TRUE_EXECS,
        ],
    );
    burst(10);
    agent.wait_log("OTLP export failing", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    let (_, log) = agent.stop();
    let failing: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("OTLP export failing"))
        .collect();
    assert_eq!(failing.len(), 1, "{log}");
    assert!(
        failing[0].contains(&endpoint) && failing[0].to_lowercase().contains("certificate"),
        "the error names the endpoint and the certificate: {}",
        failing[0]
    );
    assert_eq!(records.len(), rx.records().len(), "nothing more arrived");
    assert_eq!(log_field(&log, "OTLP export closed", "lost"), 10, "{log}");
}
