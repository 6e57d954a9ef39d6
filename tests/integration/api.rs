//! The gRPC API and the client commands against the real agent.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_api::client::{ClientTls, connect};
use vigil_proto::tetragon::{
    Filter, GetEventsRequest, GetEventsResponse, get_events_response::Event,
};

use crate::grpc_authority::grpcio_stubs;
use crate::harness::{Agent, free_port, scratch_dir, serial, vigil_bin};

/// A socket path for the test, and the flags that put the API (and health) there.
fn api_args(name: &str) -> (PathBuf, Vec<String>) {
    let dir = scratch_dir(&format!("{name}-sock"));
    let sock = dir.join("vigil.sock");
    let args = vec![
        "--server-address".into(),
        format!("unix://{}", sock.display()),
        "--health-server-address".into(),
        format!("127.0.0.1:{}", free_port()),
    ];
    (sock, args)
}

fn start(name: &str, extra: &[&str]) -> (Agent, PathBuf, Vec<String>) {
    let (sock, mut args) = api_args(name);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    (Agent::start(name, &refs), sock, args)
}

fn addr(sock: &Path) -> String {
    format!("unix://{}", sock.display())
}

fn run_true(n: usize) {
    for _ in 0..n {
        Command::new("/usr/bin/true").status().unwrap();
    }
}

/// `vigil <args>` with its stdout lines collected in the background.
struct Streaming {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Streaming {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(vigil_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    /// Runs /usr/bin/true until `pred` holds on the lines (the stream may still be
    /// connecting when the first ones run).
    fn wait(&self, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let lines = self.lines.lock().unwrap().clone();
            if pred(&lines) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "no {what}; got:\n{}",
                lines.join("\n")
            );
            run_true(1);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(vigil_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn api_getevents_json_and_compact_show_an_exec() {
    let _g = serial();
    let (agent, sock, _) = start("api-getevents", &[]);
    let a = addr(&sock);
    let json = Streaming::spawn(&["getevents", "-o", "json", "--server-address", &a]);
    let compact = Streaming::spawn(&[
        "getevents",
        "-o",
        "compact",
        "--color",
        "never",
        "--process",
        "^/usr/bin/true$",
        "--server-address",
        &a,
    ]);
    let lines = json.wait("JSON exec of /usr/bin/true", |l| {
        l.iter()
            .any(|x| x.contains("\"process_exec\"") && x.contains("\"/usr/bin/true\""))
    });
    let ev: Value = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .find(|v| v["process_exec"]["process"]["binary"] == "/usr/bin/true")
        .unwrap();
    let node = ev["node_name"].as_str().unwrap().to_string();
    assert!(ev["process_exec"]["process"]["exec_id"].is_string());
    // Compact lines exactly as tetra prints them for a host process without arguments.
    let exec_line = format!("🚀 process {node} /usr/bin/true ");
    let exit_line = format!("💥 exit    {node} /usr/bin/true  0");
    let lines = compact.wait("compact exec+exit", |l| {
        l.contains(&exec_line) && l.contains(&exit_line)
    });
    assert!(
        lines.iter().all(|l| l == &exec_line || l == &exit_line),
        "--process filtered others in: {lines:?}"
    );
    // The export file got the same events: the gRPC sink does not take from the file.
    assert!(
        agent
            .events()
            .iter()
            .any(|e| e["process_exec"]["process"]["binary"] == "/usr/bin/true")
    );
    // The same rendering from an export file on stdin.
    let export = agent.events_path.clone();
    let out = Command::new(vigil_bin())
        .args([
            "getevents",
            "-o",
            "compact",
            "--color",
            "never",
            "--process",
            "^/usr/bin/true$",
        ])
        .stdin(std::fs::File::open(&export).unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l == exec_line), "{text}");
    assert!(text.lines().any(|l| l == exit_line), "{text}");
    drop((json, compact));
    agent.stop();
}

#[test]
fn api_filters_by_binary_and_pid() {
    let _g = serial();
    let (agent, sock, _) = start("api-filters", &[]);
    rt().block_on(async {
        let mut c = connect(&addr(&sock), &ClientTls::default(), Duration::from_secs(5))
            .await
            .unwrap();
        let mut sleeper = Command::new("/usr/bin/sleep").arg("1").spawn().unwrap();
        let pid = sleeper.id();
        let mut by_pid = c
            .get_events(GetEventsRequest {
                allow_list: vec![Filter {
                    pid: vec![pid],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut by_binary = c
            .get_events(GetEventsRequest {
                allow_list: vec![Filter {
                    binary_regex: vec!["^/usr/bin/true$".into()],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        sleeper.wait().unwrap();
        let pid_of = |e: &GetEventsResponse| -> (String, u32) {
            let p = vigil_api::filters::process(e).unwrap();
            (p.binary.clone(), p.pid.as_ref().unwrap().value)
        };
        // Its exec may or may not come (the stream started while it ran); its exit does.
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), by_pid.message())
                .await
                .expect("exit of the pid")
                .unwrap()
                .unwrap();
            assert_eq!(pid_of(&ev), ("/usr/bin/sleep".to_string(), pid));
            if matches!(ev.event, Some(Event::ProcessExit(_))) {
                break;
            }
        }
        run_true(3);
        for _ in 0..6 {
            let ev = tokio::time::timeout(Duration::from_secs(10), by_binary.message())
                .await
                .expect("events of /usr/bin/true")
                .unwrap()
                .unwrap();
            assert_eq!(pid_of(&ev).0, "/usr/bin/true");
        }
        // Nothing else reached the pid stream.
        let more = tokio::time::timeout(Duration::from_millis(300), by_pid.message()).await;
        assert!(more.is_err(), "unexpected event: {more:?}");
    });
    agent.stop();
}

#[test]
fn api_slow_client_is_disconnected_and_counted_while_another_keeps_receiving() {
    let _g = serial();
    let (agent, sock, _) = start("api-slow", &["--grpc-client-buffer", "256"]);
    let a = addr(&sock);
    rt().block_on(async {
        let tls = ClientTls::default();
        // Separate connections: HTTP/2 flow control is per connection too.
        let mut fast_c = connect(&a, &tls, Duration::from_secs(5)).await.unwrap();
        // A small receive window: the slow client's transport buffers little for it.
        let ch = vigil_api::client::connect_channel(&a, &tls, Duration::from_secs(5), Some(65535))
            .await
            .unwrap();
        let mut slow_c =
            vigil_proto::tetragon::fine_guidance_sensors_client::FineGuidanceSensorsClient::new(ch);
        let req = GetEventsRequest {
            allow_list: vec![Filter {
                binary_regex: vec!["^/usr/bin/true$".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut fast = fast_c.get_events(req.clone()).await.unwrap().into_inner();
        let mut slow = slow_c.get_events(req).await.unwrap().into_inner();
        let n = 1000;
        let runner = std::thread::spawn(move || run_true(n));
        let mut got = 0;
        while got < 2 * n {
            let ev = tokio::time::timeout(Duration::from_secs(20), fast.message())
                .await
                .unwrap_or_else(|_| panic!("fast client stalled after {got} events"))
                .expect("fast client not disconnected");
            assert!(ev.is_some());
            got += 1;
        }
        runner.join().unwrap();
        // The slow client now reads: what was in flight, then the named status.
        let status = loop {
            match tokio::time::timeout(Duration::from_secs(10), slow.message())
                .await
                .expect("slow client never told")
            {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("slow stream ended without a status"),
                Err(s) => break s,
            }
        };
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(
            status.message().contains("too slow"),
            "{}",
            status.message()
        );
    });
    let (_, log) = agent.stop();
    assert!(
        log.contains("gRPC events client too slow") && log.contains("slow_clients_total=1"),
        "{log}"
    );
}

#[test]
fn api_health_liveness_serving_and_status() {
    let _g = serial();
    let (agent, sock, args) = start("api-health", &[]);
    let health = args[3].clone();
    rt().block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{health}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
        let r = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: "liveness".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    });
    let (code, out, err) = cli(&["status", "--server-address", &addr(&sock)]);
    assert_eq!(
        (code, out.as_str()),
        (0, "Health Status: running\n"),
        "{err}"
    );
    let (code, out, _) = cli(&["version", "--server", "--server-address", &addr(&sock)]);
    assert_eq!(code, 0);
    assert!(out.contains("Server version: "), "{out}");
    // The socket is for root only.
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    agent.stop();
    assert!(!sock.exists(), "socket left behind");
}

#[test]
fn api_policy_errors_are_grpc_codes() {
    let _g = serial();
    let (agent, sock, _) = start("api-policy", &[]);
    let a = addr(&sock);
    let dir = scratch_dir("api-policy-files");
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: bad\nspec:\n  kprobes: 3\n",
    )
    .unwrap();
    let (code, _, err) = cli(&[
        "tracingpolicy",
        "add",
        bad.to_str().unwrap(),
        "--server-address",
        &a,
    ]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("InvalidArgument") && err.contains("spec.kprobes"),
        "{err}"
    );
    let (code, _, err) = cli(&["tracingpolicy", "delete", "nope", "--server-address", &a]);
    assert_eq!(code, 1);
    assert!(err.contains("NotFound") && err.contains("nope"), "{err}");
    let hooks = dir.join("hooks.yaml");
    std::fs::write(
        &hooks,
        // Valid, but it cannot load here: /bin/bash has no such symbol.
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: tp\nspec:\n  uprobes:\n  - path: /bin/bash\n    symbols: [vigil_no_such_symbol]\n",
    )
    .unwrap();
    let (code, _, err) = cli(&["tp", "add", hooks.to_str().unwrap(), "--server-address", &a]);
    assert_eq!(code, 1);
    assert!(err.contains("FailedPrecondition"), "{err}");
    let empty = dir.join("empty.yaml");
    std::fs::write(
        &empty,
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: empty\nspec: {}\n",
    )
    .unwrap();
    let (code, _, err) = cli(&["tp", "add", empty.to_str().unwrap(), "--server-address", &a]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&["tp", "add", empty.to_str().unwrap(), "--server-address", &a]);
    assert!(code == 1 && err.contains("AlreadyExists"), "{err}");
    let (_, out, _) = cli(&["tp", "list", "--server-address", &a]);
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.contains("empty") && l.contains("enabled")),
        "{out}"
    );
    let (code, _, err) = cli(&["tp", "disable", "empty", "--server-address", &a]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = cli(&["tp", "list", "-o", "json", "--server-address", &a]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["policies"][0]["state"], "TP_STATE_DISABLED", "{out}");
    let (code, _, _) = cli(&["tp", "delete", "empty", "--server-address", &a]);
    assert_eq!(code, 0);
    agent.stop();
}

#[test]
fn api_no_agent_is_one_line_naming_the_socket() {
    let (code, out, err) = cli(&[
        "getevents",
        "--server-address",
        "unix:///nonexistent/vigil.sock",
    ]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("unix:///nonexistent/vigil.sock") && err.contains("vigil agent"),
        "{err}"
    );
}

#[test]
fn api_tls_with_client_certificates_on_tcp() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let _g = serial();
    let dir = scratch_dir("api-tls-certs");
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let ca_pem = write("ca.pem", ca.pem());
    let srv_key = KeyPair::generate().unwrap();
    let srv = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&srv_key, &issuer)
        .unwrap();
    let srv_pem = write("server.pem", srv.pem());
    let srv_key_pem = write("server.key", srv_key.serialize_pem());
    let cli_key = KeyPair::generate().unwrap();
    let cli_cert = CertificateParams::new(vec!["client".to_string()])
        .unwrap()
        .signed_by(&cli_key, &issuer)
        .unwrap();
    let cli_pem = write("client.pem", cli_cert.pem());
    let cli_key_pem = write("client.key", cli_key.serialize_pem());
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let agent = Agent::start(
        "api-tls",
        &[
            "--server-address",
            &address,
            "--health-server-address",
            "",
            "--server-tls-cert-file",
            &srv_pem,
            "--server-tls-key-file",
            &srv_key_pem,
            "--server-tls-client-ca-files",
            &ca_pem,
            "--server-tls-require-client-cert",
        ],
    );
    let (code, out, err) = cli(&[
        "status",
        "--server-address",
        &address,
        "--tls-ca-cert-files",
        &ca_pem,
        "--tls-cert-file",
        &cli_pem,
        "--tls-key-file",
        &cli_key_pem,
        "--tls-server-name",
        "localhost",
    ]);
    assert_eq!(
        (code, out.as_str()),
        (0, "Health Status: running\n"),
        "{err}"
    );
    // Without a client certificate the handshake or the call is refused.
    let (code, out, err) = cli(&[
        "status",
        "--server-address",
        &address,
        "--tls-ca-cert-files",
        &ca_pem,
        "--tls-server-name",
        "localhost",
    ]);
    assert_eq!(code, 1, "accepted without a client certificate: {out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // Plain text is refused too.
    let (code, _, _) = cli(&["status", "--server-address", &address, "--timeout", "3s"]);
    assert_eq!(code, 1);
    agent.stop();
}

/// Wire compatibility with an independent implementation: Python grpcio with stubs
/// generated by grpc_tools from our .proto files.
#[test]
fn api_python_grpcio_client_streams_and_gets_health() {
    let _g = serial();
    let (python, stubs) = grpcio_stubs("api-python");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (agent, sock, _) = start("api-python", &[]);
    let out = Command::new(&python)
        .arg(root.join("tests/integration/python/api_client.py"))
        .arg(&stubs)
        .arg(&sock)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        vec![
            "health HEALTH_STATUS_RUNNING running",
            "event process_exec /usr/bin/true True",
            "add-bad INVALID_ARGUMENT",
        ]
    );
    agent.stop();
}
